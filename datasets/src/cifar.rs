//! CIFAR-10 and CIFAR-100 binary record files (Krizhevsky 2009).
//!
//! CIFAR-10 records are 3073 bytes: one label byte (0–9), then 3072 bytes of 32×32 planar
//! RGB (the R plane row-major, then G, then B). CIFAR-100 records are 3074 bytes: a coarse
//! label (0–19), a fine label (0–99), then the same 3072 bytes. The pixels are never copied:
//! each image is a view into the mapped file. Labels are read at open time with ordinary
//! buffered reads of the record headers, not through the mapping, so opening a file does not
//! fault its pages in (opening the 77 MB CIFAR-100 training file leaves the resident set
//! almost unchanged; see the README).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::blob::{map_file, OpenOptions};
use crate::dataset::{ImageSet, Labels, Part, Split};
use crate::error::{DataError, Result};

/// Bytes of image data per record (3 × 32 × 32).
pub const CIFAR_IMAGE_BYTES: usize = 3072;

/// The standard CIFAR-10 class names in label order.
pub const CIFAR10_CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// The standard CIFAR-100 fine class names in label order.
pub const CIFAR100_FINE_CLASSES: [&str; 100] = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
];

/// The standard CIFAR-100 coarse (super-class) names in label order.
pub const CIFAR100_COARSE_CLASSES: [&str; 20] = [
    "aquatic_mammals",
    "fish",
    "flowers",
    "food_containers",
    "fruit_and_vegetables",
    "household_electrical_devices",
    "household_furniture",
    "insects",
    "large_carnivores",
    "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores",
    "medium_mammals",
    "non-insect_invertebrates",
    "people",
    "reptiles",
    "small_mammals",
    "trees",
    "vehicles_1",
    "vehicles_2",
];

/// Which record format a file uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CifarKind {
    /// 3073-byte records: label, pixels.
    Cifar10,
    /// 3074-byte records: coarse label, fine label, pixels.
    Cifar100,
}

impl CifarKind {
    /// Bytes per record: 3073 or 3074.
    pub fn record_bytes(self) -> usize {
        self.label_bytes() + CIFAR_IMAGE_BYTES
    }

    fn label_bytes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 1,
            CifarKind::Cifar100 => 2,
        }
    }

    /// Class counts of each label byte: `[10]` or `[20, 100]` (coarse, fine).
    fn classes(self) -> &'static [usize] {
        match self {
            CifarKind::Cifar10 => &[10],
            CifarKind::Cifar100 => &[20, 100],
        }
    }
}

/// Reads class names, one per line, from `path` (blank lines and surrounding whitespace are
/// ignored), or returns `default` when the file does not exist.
///
/// # Errors
/// [`DataError::Format`] if the file does not hold exactly `default.len()` names or is not
/// UTF-8; [`DataError::Io`] if it exists but cannot be read.
pub fn read_class_names(path: &Path, default: &[&str]) -> Result<Vec<String>> {
    if !path.is_file() {
        return Ok(default.iter().map(|s| s.to_string()).collect());
    }
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, "read", e))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| DataError::format(path, e.valid_up_to() as u64, "UTF-8 text (one class name per line)"))?;
    let names: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    if names.len() != default.len() {
        return Err(DataError::format(
            path,
            bytes.len() as u64,
            format!("{} class names (one per line), found {}", default.len(), names.len()),
        ));
    }
    Ok(names)
}

/// Validates the length of a record file and extracts its label bytes (one `Vec` per label
/// byte of the record), reading the headers with buffered reads rather than through a mapping.
fn read_labels(path: &Path, kind: CifarKind) -> Result<Vec<Vec<u8>>> {
    let rec = kind.record_bytes();
    let mut file = File::open(path).map_err(|e| DataError::io(path, "open", e))?;
    let len = file.metadata().map_err(|e| DataError::io(path, "stat", e))?.len() as usize;
    if len == 0 || len % rec != 0 {
        return Err(DataError::format(
            path,
            (len - len % rec) as u64,
            format!(
                "a whole, nonzero number of {rec}-byte records, found {len} bytes = {} records + {} bytes",
                len / rec,
                len % rec
            ),
        ));
    }
    let n = len / rec;
    let lb = kind.label_bytes();
    let mut out = vec![Vec::with_capacity(n); lb];
    let per_read = 256;
    let mut buf = vec![0u8; per_read * rec];
    let mut i = 0;
    while i < n {
        let m = per_read.min(n - i);
        file.read_exact(&mut buf[..m * rec]).map_err(|e| DataError::io(path, "read", e))?;
        for r in 0..m {
            for (k, labels) in out.iter_mut().enumerate() {
                let y = buf[r * rec + k];
                let classes = kind.classes()[k];
                if y as usize >= classes {
                    let what = match (kind, k) {
                        (CifarKind::Cifar10, _) => "label",
                        (_, 0) => "coarse label",
                        _ => "fine label",
                    };
                    return Err(DataError::format(
                        path,
                        ((i + r) * rec + k) as u64,
                        format!("a {what} below {classes} (record {}), found {y}", i + r),
                    ));
                }
                labels.push(y);
            }
        }
        i += m;
    }
    Ok(out)
}

/// Opens several record files of one kind as one [`ImageSet`] named `name` (images in file
/// order), with class names from the names files in `names_dir` when present.
fn open_records(name: &str, files: &[PathBuf], kind: CifarKind, names_dir: &Path) -> Result<ImageSet> {
    let (label_names, coarse_names) = match kind {
        CifarKind::Cifar10 => (read_class_names(&names_dir.join("batches.meta.txt"), &CIFAR10_CLASSES)?, None),
        CifarKind::Cifar100 => (
            read_class_names(&names_dir.join("fine_label_names.txt"), &CIFAR100_FINE_CLASSES)?,
            Some(read_class_names(&names_dir.join("coarse_label_names.txt"), &CIFAR100_COARSE_CLASSES)?),
        ),
    };
    let rec = kind.record_bytes();
    let mut parts = Vec::new();
    let mut per_byte: Vec<Vec<u8>> = vec![Vec::new(); kind.label_bytes()];
    for f in files {
        let labels = read_labels(f, kind)?;
        let blob = Arc::new(map_file(f)?);
        if blob.bytes().len() != labels[0].len() * rec {
            return Err(DataError::format(
                f,
                blob.bytes().len() as u64,
                format!(
                    "{} bytes, as when its labels were read (the file changed while it was opened)",
                    labels[0].len() * rec
                ),
            ));
        }
        parts.push(Part { blob, base: kind.label_bytes(), stride: rec, count: labels[0].len() });
        for (acc, l) in per_byte.iter_mut().zip(labels) {
            acc.extend(l);
        }
    }
    let (labels, coarse) = match kind {
        CifarKind::Cifar10 => (Labels { labels: per_byte.remove(0), names: label_names }, None),
        CifarKind::Cifar100 => {
            let fine = per_byte.remove(1);
            let coarse = per_byte.remove(0);
            (
                Labels { labels: fine, names: label_names },
                Some(Labels { labels: coarse, names: coarse_names.expect("CIFAR-100 has coarse names") }),
            )
        }
    };
    Ok(ImageSet::from_parts(name.to_string(), files.to_vec(), parts, [3, 32, 32], [1024, 32, 1], labels, coarse))
}

/// Guesses the record format of `path` from sibling names files, its name, then its length.
fn guess_kind(path: &Path) -> Option<CifarKind> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if dir.join("fine_label_names.txt").is_file() || dir.join("coarse_label_names.txt").is_file() {
        return Some(CifarKind::Cifar100);
    }
    if dir.join("batches.meta.txt").is_file() || name.starts_with("data_batch") || name.starts_with("test_batch") {
        return Some(CifarKind::Cifar10);
    }
    if name == "train.bin" || name == "test.bin" {
        return Some(CifarKind::Cifar100);
    }
    let len = std::fs::metadata(path).ok()?.len() as usize;
    match (len % 3073 == 0, len % 3074 == 0) {
        (true, false) => Some(CifarKind::Cifar10),
        (false, true) => Some(CifarKind::Cifar100),
        _ => None,
    }
}

/// Opens one CIFAR record file by path, whatever its name, as an [`ImageSet`] named after the
/// file. `kind` gives the record format; `None` guesses it from a names file beside it
/// (`fine_label_names.txt` → CIFAR-100, `batches.meta.txt` → CIFAR-10), the standard file
/// names, then the length. Class names come from the names files beside it when present.
/// The set is its own training split for normalisation; see [`ImageSet::with_stats_from`].
///
/// # Errors
/// [`DataError::Format`] for a length that is not a whole number of records, a label out of
/// range (with the record number), a format that cannot be guessed, or a names file with the
/// wrong number of names; [`DataError::Io`] from opening and reading.
pub fn open_cifar_file(path: impl AsRef<Path>, kind: Option<CifarKind>) -> Result<ImageSet> {
    let path = path.as_ref();
    let kind = match kind.or_else(|| guess_kind(path)) {
        Some(k) => k,
        None => {
            let len = std::fs::metadata(path).map_err(|e| DataError::io(path, "stat", e))?.len();
            return Err(DataError::format(
                path,
                0,
                format!("CIFAR-10 (3073-byte) or CIFAR-100 (3074-byte) records; {len} bytes fits neither or both"),
            ));
        }
    };
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    open_records(&name, &[path.to_path_buf()], kind, dir)
}

/// Opens a directory with the standard file names of `kind`: the training files (all must
/// exist) and the test file.
fn open_standard_dir(dir: &Path, kind: CifarKind) -> Result<Split> {
    let (label, train_names, test_name): (&str, Vec<String>, &str) = match kind {
        CifarKind::Cifar10 => ("cifar-10", (1..=5).map(|k| format!("data_batch_{k}.bin")).collect(), "test_batch.bin"),
        CifarKind::Cifar100 => ("cifar-100", vec!["train.bin".to_string()], "test.bin"),
    };
    let mut names = train_names;
    names.push(test_name.to_string());
    let mut paths: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
    if !paths.iter().all(|p| p.is_file()) {
        let what =
            if kind == CifarKind::Cifar10 { "complete CIFAR-10 binary set" } else { "complete CIFAR-100 binary set" };
        return Err(DataError::NotFound { dir: dir.to_path_buf(), what, tried: names });
    }
    let test = paths.split_off(paths.len() - 1);
    Ok(Split::new(
        open_records(&format!("{label}/train"), &paths, kind, dir)?,
        open_records(&format!("{label}/test"), &test, kind, dir)?,
        None,
    ))
}

/// CIFAR-10: 50,000 training and 10,000 test images of 3×32×32 in ten classes.
pub struct Cifar10;

impl Cifar10 {
    /// Opens a `cifar-10-batches-bin` directory: `data_batch_1.bin` … `data_batch_5.bin` as
    /// the training split and `test_batch.bin` as the test split; class names from
    /// `batches.meta.txt` when present. `_opts` is accepted for symmetry (CIFAR files are never
    /// compressed).
    ///
    /// # Errors
    /// [`DataError::NotFound`] if a standard file is missing; otherwise as [`open_cifar_file`].
    pub fn open_with(dir: impl AsRef<Path>, _opts: &OpenOptions) -> Result<Split> {
        open_standard_dir(dir.as_ref(), CifarKind::Cifar10)
    }

    /// [`Cifar10::open_with`] with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<Split> {
        Cifar10::open_with(dir, &OpenOptions::default())
    }
}

/// CIFAR-100: 50,000 training and 10,000 test images of 3×32×32, 100 fine and 20 coarse
/// classes. Labels are the fine labels; [`ImageSet::with_coarse_labels`] switches to coarse.
pub struct Cifar100;

impl Cifar100 {
    /// Opens a `cifar-100-binary` directory: `train.bin` and `test.bin`, names from
    /// `fine_label_names.txt` / `coarse_label_names.txt` when present.
    ///
    /// # Errors
    /// As [`Cifar10::open_with`].
    pub fn open_with(dir: impl AsRef<Path>, _opts: &OpenOptions) -> Result<Split> {
        open_standard_dir(dir.as_ref(), CifarKind::Cifar100)
    }

    /// [`Cifar100::open_with`] with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<Split> {
        Cifar100::open_with(dir, &OpenOptions::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::tests::scratch;
    use crate::Dataset;

    /// `n` CIFAR-100 records: record r has coarse r % 20, fine r % 100, pixel p = (r + p) % 256.
    fn records100(n: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for r in 0..n {
            v.push((r % 20) as u8);
            v.push((r % 100) as u8);
            v.extend((0..3072).map(|p| ((r + p) % 256) as u8));
        }
        v
    }

    #[test]
    fn cifar100_file_reads_labels_and_planar_pixels() {
        let d = scratch("c100");
        let f = d.join("odd_name.bin");
        std::fs::write(&f, records100(3)).unwrap();
        let s = open_cifar_file(&f, Some(CifarKind::Cifar100)).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s.labels(), vec![0, 1, 2]);
        assert_eq!(s.coarse_label(2), Some(2));
        assert_eq!(s.class_names()[1], "aquarium_fish");
        let v = s.image_u8(2);
        // channel 1 (G), row 3, column 4 is pixel p = 1024 + 3·32 + 4 = 1124 → (2 + 1124) % 256 = 102
        assert_eq!(v.get(1, 3, 4), 102);
        assert!(v.as_contiguous().is_some());
        let c = s.with_coarse_labels().unwrap();
        assert_eq!(c.class_names().len(), 20);
        assert_eq!(c.label(1), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn corrupt_records_are_reported() {
        let d = scratch("c-bad");
        let f = d.join("x.bin");
        let mut v = records100(2);
        v.pop();
        std::fs::write(&f, &v).unwrap();
        let e = open_cifar_file(&f, Some(CifarKind::Cifar100)).unwrap_err().to_string();
        assert!(e.contains("x.bin: byte 3074: expected a whole, nonzero number of 3074-byte records, found 6147 bytes = 1 records + 3073 bytes"), "{e}");
        let mut v = records100(2);
        v[3074 + 1] = 100;
        std::fs::write(&f, &v).unwrap();
        let e = open_cifar_file(&f, Some(CifarKind::Cifar100)).unwrap_err().to_string();
        assert!(e.contains("byte 3075: expected a fine label below 100 (record 1), found 100"), "{e}");
        let mut v = vec![0u8; 3073 * 2];
        v[3073] = 10;
        std::fs::write(&f, &v).unwrap();
        let e = open_cifar_file(&f, Some(CifarKind::Cifar10)).unwrap_err().to_string();
        assert!(e.contains("byte 3073: expected a label below 10 (record 1), found 10"), "{e}");
        std::fs::write(&f, b"").unwrap();
        assert!(open_cifar_file(&f, Some(CifarKind::Cifar10)).is_err());
        // A names file with the wrong count.
        std::fs::write(d.join("batches.meta.txt"), "a\nb\n").unwrap();
        std::fs::write(&f, vec![0u8; 3073]).unwrap();
        let e = open_cifar_file(&f, None).unwrap_err().to_string();
        assert!(e.contains("batches.meta.txt: byte 4: expected 10 class names (one per line), found 2"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn cifar10_directory_opens_as_a_whole() {
        let d = scratch("c10dir");
        for (k, name) in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
            .iter()
            .enumerate()
        {
            let mut v = vec![0u8; 3073 * 2];
            v[0] = k as u8;
            v[3073] = 9;
            v[1] = 100 + k as u8;
            std::fs::write(d.join(format!("{name}.bin")), v).unwrap();
        }
        let s = Cifar10::open(&d).unwrap();
        assert_eq!(s.train.len(), 10);
        assert_eq!(s.test.len(), 2);
        assert_eq!(s.train.labels(), vec![0, 9, 1, 9, 2, 9, 3, 9, 4, 9]);
        assert_eq!(s.train.image_u8(6).get(0, 0, 0), 103, "image 6 is record 0 of data_batch_4");
        assert_eq!(s.test.label(0), 5);
        std::fs::remove_file(d.join("data_batch_3.bin")).unwrap();
        let e = Cifar10::open(&d).unwrap_err().to_string();
        assert!(e.contains("no complete CIFAR-10 binary set found (looked for data_batch_1.bin"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
