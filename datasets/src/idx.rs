//! IDX files (the MNIST and Fashion-MNIST format) and the [`Mnist`] / [`FashionMnist`] openers.
//!
//! An IDX file is a 4-byte big-endian magic `0x0000 08 d` (unsigned bytes, `d` dimensions),
//! `d` big-endian `u32` dimensions, then the row-major data. Images use `d = 3`
//! (`0x00000803`: count, rows, columns) and labels `d = 1` (`0x00000801`: count). A file must
//! be exactly `4 + 4·d + Π dims` bytes long. `.gz` files are inflated once into the cache (see
//! [`OpenOptions`]) and the cache is mapped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use byteorder::{BigEndian, ByteOrder};

use crate::blob::{load, write_atomic, Blob, OpenOptions};
use crate::dataset::{ImageSet, Labels, Part, Split};
use crate::error::{DataError, Result};

/// Magic number of an IDX file of unsigned bytes with `dims` dimensions.
pub const fn idx_magic(dims: u8) -> u32 {
    0x0800 | dims as u32
}

/// Validates an IDX header of unsigned bytes with `want` dimensions and the exact file length.
/// Returns the dimensions; the data starts at byte `4 + 4·want`.
pub(crate) fn parse_header(path: &Path, bytes: &[u8], want: u8) -> Result<Vec<usize>> {
    let len = bytes.len();
    let magic_name =
        |d: u8| format!("{:#010x} (unsigned bytes, {d} dimension{})", idx_magic(d), if d == 1 { "" } else { "s" });
    if len < 4 {
        return Err(DataError::format(
            path,
            len as u64,
            format!("IDX magic {}, but the file has only {len} bytes", magic_name(want)),
        ));
    }
    let magic = BigEndian::read_u32(bytes);
    if magic != idx_magic(want) {
        let hint = match magic {
            0x0801 => " (this looks like a labels file)",
            0x0803 => " (this looks like an images file)",
            _ if bytes[0] == 0x1f && bytes[1] == 0x8b => " (gzip data)",
            _ => "",
        };
        return Err(DataError::format(path, 0, format!("IDX magic {}, found {magic:#010x}{hint}", magic_name(want))));
    }
    let header = 4 + 4 * want as usize;
    if len < header {
        return Err(DataError::format(
            path,
            len as u64,
            format!("{want} four-byte dimensions (a {header}-byte header), but the file ends after {len} bytes"),
        ));
    }
    let dims: Vec<usize> = (0..want as usize).map(|k| BigEndian::read_u32(&bytes[4 + 4 * k..]) as usize).collect();
    let shown = dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×");
    let total = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).and_then(|p| p.checked_add(header));
    let Some(total) = total else {
        return Err(DataError::format(
            path,
            4,
            format!("dimensions whose product fits in memory, found {shown} (overflows)"),
        ));
    };
    if len != total {
        let (offset, what) = if len < total {
            (len, format!("the file ends after {len} bytes (truncated)"))
        } else {
            (total, format!("the file has {len} bytes ({} extra)", len - total))
        };
        return Err(DataError::format(
            path,
            offset as u64,
            format!(
                "{total} bytes ({header}-byte header + {} data bytes for dimensions {shown}), but {what}",
                total - header
            ),
        ));
    }
    Ok(dims)
}

/// Validates an IDX label file's values: every byte after the header must be below
/// `classes`.
pub(crate) fn check_labels(path: &Path, bytes: &[u8], classes: usize) -> Result<()> {
    if let Some(k) = bytes[8..].iter().position(|&y| y as usize >= classes) {
        return Err(DataError::format(
            path,
            8 + k as u64,
            format!("a label below {classes} (label of image {k}), found {}", bytes[8 + k]),
        ));
    }
    Ok(())
}

/// Parses an images blob and a labels blob into an [`ImageSet`] with the given class names.
/// The blobs must already be inflated; `images_path` / `labels_path` are used in errors.
pub(crate) fn image_set_from_blobs(
    name: String,
    images_path: &Path,
    images: Arc<Blob>,
    labels_path: &Path,
    labels: Arc<Blob>,
    class_names: Vec<String>,
) -> Result<ImageSet> {
    let dims = parse_header(images_path, images.bytes(), 3)?;
    let (n, rows, cols) = (dims[0], dims[1], dims[2]);
    if rows == 0 || cols == 0 {
        return Err(DataError::format(images_path, 8, format!("nonzero image dimensions, found {rows}×{cols}")));
    }
    let ldims = parse_header(labels_path, labels.bytes(), 1)?;
    if ldims[0] != n {
        return Err(DataError::format(
            labels_path,
            4,
            format!("{n} labels, one per image of {}, found {}", images_path.display(), ldims[0]),
        ));
    }
    check_labels(labels_path, labels.bytes(), class_names.len())?;
    let label_vec = labels.bytes()[8..].to_vec();
    let part = Part { blob: images, base: 16, stride: rows * cols, count: n };
    let files = vec![images_path.to_path_buf(), labels_path.to_path_buf()];
    Ok(ImageSet::from_parts(
        name,
        files,
        vec![part],
        [1, rows, cols],
        [rows * cols, cols, 1],
        Labels { labels: label_vec, names: class_names },
        None,
    ))
}

/// Opens one IDX images file and its labels file (each plain or `.gz`) as an [`ImageSet`]
/// named `name`, with labels checked against `class_names`.
///
/// # Errors
/// [`DataError::Format`] for a wrong magic number, a length that does not match the
/// dimensions (truncated or with trailing bytes), dimensions that overflow, a label count
/// different from the image count or a label `>= class_names.len()`; [`DataError::Io`] and
/// compression errors from opening and inflating.
pub fn open_idx_pair(
    name: &str,
    images: &Path,
    labels: &Path,
    class_names: Vec<String>,
    opts: &OpenOptions,
) -> Result<ImageSet> {
    let ib = load(images, opts)?;
    let lb = load(labels, opts)?;
    image_set_from_blobs(name.to_string(), images, ib, labels, lb, class_names)
}

/// File names tried for split `prefix` (`train` or `t10k`) and `kind` (`images` or `labels`):
/// `train-images-idx3-ubyte`, `train-images.idx3-ubyte`, each also with `.gz`. Uncompressed
/// names come first so an inflated copy next to the archive is preferred.
pub fn idx_candidates(prefix: &str, kind: &str) -> Vec<String> {
    let d = if kind == "images" { 3 } else { 1 };
    let plain = [format!("{prefix}-{kind}-idx{d}-ubyte"), format!("{prefix}-{kind}.idx{d}-ubyte")];
    let gz = plain.iter().map(|p| format!("{p}.gz")).collect::<Vec<_>>();
    plain.into_iter().chain(gz).collect()
}

/// The first existing file among [`idx_candidates`] in `dir`.
///
/// # Errors
/// [`DataError::NotFound`] listing the names tried.
pub fn find_idx(dir: &Path, prefix: &str, kind: &'static str) -> Result<PathBuf> {
    let names = idx_candidates(prefix, kind);
    names.iter().map(|n| dir.join(n)).find(|p| p.is_file()).ok_or_else(|| DataError::NotFound {
        dir: dir.to_path_buf(),
        what: if kind == "images" { "IDX images file" } else { "IDX labels file" },
        tried: names,
    })
}

/// Opens the `train` and `t10k` splits of an MNIST-format directory.
fn open_idx_dir(dir: &Path, label: &str, class_names: Vec<String>, opts: &OpenOptions) -> Result<Split> {
    let split = |prefix: &str, sname: &str| -> Result<ImageSet> {
        let images = find_idx(dir, prefix, "images")?;
        let labels = find_idx(dir, prefix, "labels")?;
        open_idx_pair(&format!("{label}/{sname}"), &images, &labels, class_names.clone(), opts)
    };
    Ok(Split::new(split("train", "train")?, split("t10k", "test")?, None))
}

/// MNIST handwritten digits (LeCun et al. 1998): 60,000 training and 10,000 test images of
/// 1×28×28, classes `0`–`9`.
pub struct Mnist;

impl Mnist {
    /// Class names `"0"` … `"9"`.
    pub fn class_names() -> Vec<String> {
        (0..10).map(|d| d.to_string()).collect()
    }

    /// Opens `dir/train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
    /// `t10k-images-idx3-ubyte[.gz]` and `t10k-labels-idx1-ubyte[.gz]` (the dotted
    /// `train-images.idx3-ubyte` spelling is accepted too) with default [`OpenOptions`].
    ///
    /// # Errors
    /// [`DataError::NotFound`] when a file is missing; see [`open_idx_pair`] for the rest.
    pub fn open(dir: impl AsRef<Path>) -> Result<Split> {
        Mnist::open_with(dir, &OpenOptions::default())
    }

    /// [`Mnist::open`] with explicit options (e.g. the cache directory).
    pub fn open_with(dir: impl AsRef<Path>, opts: &OpenOptions) -> Result<Split> {
        open_idx_dir(dir.as_ref(), "mnist", Mnist::class_names(), opts)
    }
}

/// Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): the MNIST file format and sizes, ten clothing
/// classes.
pub struct FashionMnist;

impl FashionMnist {
    /// The ten class names in label order.
    pub fn class_names() -> Vec<String> {
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// Opens a Fashion-MNIST directory; same file names and errors as [`Mnist::open`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Split> {
        FashionMnist::open_with(dir, &OpenOptions::default())
    }

    /// [`FashionMnist::open`] with explicit options.
    pub fn open_with(dir: impl AsRef<Path>, opts: &OpenOptions) -> Result<Split> {
        open_idx_dir(dir.as_ref(), "fashion-mnist", FashionMnist::class_names(), opts)
    }
}

/// The bytes of an IDX images file: magic `0x00000803`, `n = pixels.len() / (rows·cols)`,
/// `rows`, `cols`, then `pixels`. **Panics** if `pixels.len()` is not a multiple of
/// `rows·cols` or a dimension does not fit in `u32`.
#[track_caller]
pub fn idx_images_bytes(pixels: &[u8], rows: usize, cols: usize) -> Vec<u8> {
    let size = rows * cols;
    assert!(
        size > 0 && pixels.len() % size == 0,
        "idx_images_bytes: {} bytes are not whole {rows}×{cols} images",
        pixels.len()
    );
    let mut out = Vec::with_capacity(16 + pixels.len());
    for v in [idx_magic(3) as usize, pixels.len() / size, rows, cols] {
        out.extend_from_slice(&u32::try_from(v).expect("idx_images_bytes: dimension exceeds u32").to_be_bytes());
    }
    out.extend_from_slice(pixels);
    out
}

/// The bytes of an IDX labels file: magic `0x00000801`, `n`, then the labels.
/// **Panics** if there are more than `u32::MAX` labels.
#[track_caller]
pub fn idx_labels_bytes(labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + labels.len());
    out.extend_from_slice(&idx_magic(1).to_be_bytes());
    out.extend_from_slice(&u32::try_from(labels.len()).expect("idx_labels_bytes: too many labels").to_be_bytes());
    out.extend_from_slice(labels);
    out
}

/// Writes `pixels` (n images of rows×cols) as an IDX images file, atomically.
///
/// # Errors
/// [`DataError::Io`] when the file cannot be written. **Panics** as [`idx_images_bytes`].
pub fn write_idx_images(path: &Path, pixels: &[u8], rows: usize, cols: usize) -> Result<()> {
    let bytes = idx_images_bytes(pixels, rows, cols);
    write_atomic(path, |w| std::io::Write::write_all(w, &bytes).map_err(|e| DataError::io(path, "write", e)))
}

/// Writes `labels` as an IDX labels file, atomically.
///
/// # Errors
/// [`DataError::Io`] when the file cannot be written.
pub fn write_idx_labels(path: &Path, labels: &[u8]) -> Result<()> {
    let bytes = idx_labels_bytes(labels);
    write_atomic(path, |w| std::io::Write::write_all(w, &bytes).map_err(|e| DataError::io(path, "write", e)))
}

/// Reads an in-memory IDX pair (used for the embedded subset and by tests).
pub(crate) fn image_set_from_static(
    name: &str,
    images: &'static [u8],
    labels: &'static [u8],
    classes: Vec<String>,
) -> Result<ImageSet> {
    let ip = PathBuf::from(format!("<embedded>/{name}-images"));
    let lp = PathBuf::from(format!("<embedded>/{name}-labels"));
    image_set_from_blobs(
        name.to_string(),
        &ip,
        Arc::new(Blob::Static(images)),
        &lp,
        Arc::new(Blob::Static(labels)),
        classes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::tests::scratch;
    use crate::Dataset;

    fn pair(dir: &Path, n: usize, labels: &[u8]) -> (PathBuf, PathBuf) {
        let px: Vec<u8> = (0..n * 6).map(|i| (i * 5 % 256) as u8).collect();
        let (ip, lp) = (dir.join("train-images-idx3-ubyte"), dir.join("train-labels-idx1-ubyte"));
        write_idx_images(&ip, &px, 2, 3).unwrap();
        write_idx_labels(&lp, labels).unwrap();
        (ip, lp)
    }

    fn open(ip: &Path, lp: &Path) -> Result<ImageSet> {
        open_idx_pair("t", ip, lp, Mnist::class_names(), &OpenOptions::new().in_memory())
    }

    fn err_text(r: Result<ImageSet>) -> String {
        r.expect_err("expected an error").to_string()
    }

    #[test]
    fn valid_pair_reads_back() {
        let d = scratch("idx-ok");
        let (ip, lp) = pair(&d, 3, &[7, 0, 9]);
        let s = open(&ip, &lp).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s.image_shape(), [1, 2, 3]);
        assert_eq!(s.labels(), vec![7, 0, 9]);
        // image 1 holds bytes 6..12 of (i·5 mod 256): 30, 35, 40, 45, 50, 55
        assert_eq!(s.image_u8(1).as_contiguous().unwrap(), &[30, 35, 40, 45, 50, 55]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn each_corrupt_kind_names_file_offset_and_expectation() {
        let d = scratch("idx-bad");
        let (ip, lp) = pair(&d, 3, &[1, 2, 3]);
        let good = std::fs::read(&ip).unwrap();
        let bad = d.join("bad-images");

        // wrong magic: a labels file given as images
        std::fs::copy(&lp, &bad).unwrap();
        let e = err_text(open(&bad, &lp));
        assert!(e.contains("bad-images: byte 0: expected IDX magic 0x00000803"), "{e}");
        assert!(e.contains("found 0x00000801 (this looks like a labels file)"), "{e}");

        // truncated
        std::fs::write(&bad, &good[..good.len() - 1]).unwrap();
        let e = err_text(open(&bad, &lp));
        assert!(e.contains(&format!("byte {}: expected {} bytes", good.len() - 1, good.len())), "{e}");
        assert!(e.contains("truncated"), "{e}");

        // header itself truncated
        std::fs::write(&bad, &good[..10]).unwrap();
        let e = err_text(open(&bad, &lp));
        assert!(e.contains("byte 10: expected 3 four-byte dimensions (a 16-byte header)"), "{e}");

        // dimensions inconsistent with the length (count says 4 images, data holds 3)
        let mut m = good.clone();
        m[7] = 4;
        std::fs::write(&bad, &m).unwrap();
        let e = err_text(open(&bad, &lp));
        assert!(
            e.contains(&format!(
                "byte {}: expected {} bytes (16-byte header + 24 data bytes for dimensions 4×2×3)",
                good.len(),
                good.len() + 6
            )),
            "{e}"
        );

        // trailing bytes
        let mut m = good.clone();
        m.push(0);
        std::fs::write(&bad, &m).unwrap();
        let e = err_text(open(&bad, &lp));
        assert!(e.contains("(1 extra)"), "{e}");

        // overflowing dimension product
        let mut m = good.clone();
        m[4..16].copy_from_slice(&[0xff; 12]);
        std::fs::write(&bad, &m).unwrap();
        let e = err_text(open(&bad, &lp));
        assert!(
            e.contains(
                "byte 4: expected dimensions whose product fits in memory, found 4294967295×4294967295×4294967295"
            ),
            "{e}"
        );

        // label out of range
        let badl = d.join("bad-labels");
        write_idx_labels(&badl, &[1, 10, 3]).unwrap();
        let e = err_text(open(&ip, &badl));
        assert!(e.contains("bad-labels: byte 9: expected a label below 10 (label of image 1), found 10"), "{e}");

        // label count differs from image count
        write_idx_labels(&badl, &[1, 2]).unwrap();
        let e = err_text(open(&ip, &badl));
        assert!(e.contains("bad-labels: byte 4: expected 3 labels, one per image"), "{e}");

        // zero-sized images
        let mut z = good[..16].to_vec();
        z[8..12].copy_from_slice(&0u32.to_be_bytes()); // 3 images of 0×3: 16 bytes in all
        std::fs::write(&bad, &z).unwrap();
        let e = err_text(open(&bad, &lp));
        assert!(e.contains("bad-images: byte 8: expected nonzero image dimensions, found 0×3"), "{e}");

        // empty file
        std::fs::write(&bad, b"").unwrap();
        let e = err_text(open(&bad, &lp));
        assert!(
            e.contains(
                "byte 0: expected IDX magic 0x00000803 (unsigned bytes, 3 dimensions), but the file has only 0 bytes"
            ),
            "{e}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn missing_directory_files_are_reported_with_names_tried() {
        let d = scratch("idx-missing");
        let e = Mnist::open_with(&d, &OpenOptions::new().in_memory()).unwrap_err().to_string();
        assert!(
            e.contains("no IDX images file found (looked for train-images-idx3-ubyte, train-images.idx3-ubyte"),
            "{e}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[cfg(feature = "gzip")]
    #[test]
    fn gzip_is_inflated_once_into_the_cache_and_revalidated() {
        use flate2::{write::GzEncoder, Compression};
        use std::io::Write;
        let d = scratch("idx-gz");
        let (ip, lp) = pair(&d, 4, &[1, 2, 3, 4]);
        let plain = std::fs::read(&ip).unwrap();
        let gz = d.join("train-images-idx3-ubyte.gz");
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(&plain).unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        let cache = d.join("cache");
        let opts = OpenOptions::new().cache_dir(&cache);
        let a = open_idx_pair("t", &gz, &lp, Mnist::class_names(), &opts).unwrap();
        assert_eq!(a.image_u8(3).to_vec(), plain[16 + 18..16 + 24].to_vec());
        let files: Vec<_> = std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(std::fs::read(&files[0]).unwrap(), plain);
        assert!(files[0].file_name().unwrap().to_string_lossy().starts_with("train-images-idx3-ubyte-"));
        // Corrupt the cache in place (same length): reuse must notice (CRC) and rebuild it.
        let mut c = plain.clone();
        c[20] ^= 0xff;
        std::fs::write(&files[0], &c).unwrap();
        let b = open_idx_pair("t", &gz, &lp, Mnist::class_names(), &opts).unwrap();
        assert_eq!(b.image_u8(0).to_vec(), plain[16..22].to_vec());
        assert_eq!(std::fs::read(&files[0]).unwrap(), plain, "corrupt cache was not rebuilt");
        // Corrupt gzip stream: clean error naming the file.
        let mut g = std::fs::read(&gz).unwrap();
        let mid = g.len() / 2;
        g[mid] ^= 0x55;
        g[mid + 1] ^= 0xaa;
        let badgz = d.join("bad.gz");
        std::fs::write(&badgz, &g).unwrap();
        let e = open_idx_pair("t", &badgz, &lp, Mnist::class_names(), &OpenOptions::new().in_memory())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(&format!("{}: byte ", badgz.display())), "{e}");
        assert!(e.contains("expected"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[cfg(not(feature = "gzip"))]
    #[test]
    fn gzip_without_feature_is_a_clear_error() {
        let d = scratch("idx-nogz");
        let (_, lp) = pair(&d, 1, &[1]);
        let gz = d.join("x.gz");
        std::fs::write(&gz, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap();
        let e = open_idx_pair("t", &gz, &lp, Mnist::class_names(), &OpenOptions::new()).unwrap_err().to_string();
        assert!(
            e.contains("gzip-compressed data, but sparsegrad-datasets was built without its `gzip` feature"),
            "{e}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
