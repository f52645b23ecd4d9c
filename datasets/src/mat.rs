//! MATLAB level-5 MAT files, as used by SVHN's cropped digits (`train_32x32.mat`,
//! `test_32x32.mat`, `extra_32x32.mat`), and the [`Svhn`] opener.
//!
//! Format (MathWorks, "MAT-File Format", level 5): a 128-byte header (116 bytes of text, an
//! 8-byte subsystem offset, a 2-byte version 0x0100 and the endian indicator `IM` or `MI`),
//! then data elements. Each element has an 8-byte tag (`u32` type, `u32` byte count) followed
//! by its data padded to a multiple of 8 bytes, or — when the byte count is at most 4 — the
//! *small element* format: one `u32` holding the count in its upper and the type in its lower
//! 16 bits, then 4 data bytes. A variable is an `miMATRIX` element (type 14) holding, in
//! order, array flags (`miUINT32`, class in the low byte), dimensions (`miINT32`), the name
//! (`miINT8`) and the real part (any numeric type). An `miCOMPRESSED` element (type 15, not
//! padded) holds a zlib stream whose inflated bytes are one more element; it is inflated once
//! into the cache (see [`OpenOptions`]) and the cache is mapped.
//!
//! SVHN stores `X` as `uint8` with dimensions 32×32×3×N in MATLAB's column-major order, so
//! element `(row r, column c, channel k, image n)` is at `r + 32c + 1024k + 3072n`. Images come
//! out as `[3, 32, 32]` views (strides `[1024, 1, 32]`) without copying. `y` (any numeric
//! type; SciPy writes `uint8` or `double`) holds labels 1–10 where 10 means digit 0; they
//! become 0–9.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use byteorder::{BigEndian, ByteOrder, LittleEndian};

use crate::blob::{inflate_zlib, load, Blob, OpenOptions};
use crate::dataset::{ImageSet, Labels, Part, Split};
use crate::error::{DataError, Result};

/// Data element types (MAT-file format, table 1-1).
const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MI_UTF32: u32 = 18;

/// Array classes (table 1-3) that this reader can hold as numbers.
const MX_DOUBLE: u8 = 6;
const MX_UINT64: u8 = 15;
const MX_UINT8: u8 = 9;

/// Size in bytes of a numeric element type, or `None` for a non-numeric or unknown type.
fn numeric_size(ty: u32) -> Option<usize> {
    match ty {
        MI_INT8 | MI_UINT8 => Some(1),
        MI_INT16 | MI_UINT16 => Some(2),
        MI_INT32 | MI_UINT32 | MI_SINGLE => Some(4),
        MI_DOUBLE | MI_INT64 | MI_UINT64 => Some(8),
        _ => None,
    }
}

fn known_type(ty: u32) -> bool {
    numeric_size(ty).is_some() || (MI_MATRIX..=MI_UTF32).contains(&ty)
}

const KNOWN_TYPES: &str = "1–7, 9 or 12–18";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endian {
    Little,
    Big,
}

/// One data element tag: `ty`, and the data at `data..data + len`; the next element starts
/// at `next`.
#[derive(Debug)]
struct Tag {
    ty: u32,
    data: usize,
    len: usize,
    next: usize,
}

/// Reads elements from one buffer: the mapped file, or the inflated contents of one
/// compressed element (then `zlib_at` is that element's offset in the file, for errors).
struct Reader<'a> {
    path: &'a Path,
    blob: &'a Arc<Blob>,
    endian: Endian,
    zlib_at: Option<u64>,
}

/// A parsed numeric variable: where its real part lives and how it is stored.
struct Var {
    name: String,
    class: u8,
    complex: bool,
    dims: Vec<usize>,
    /// Offset of the element tag (for errors), the buffer and the data range.
    at: usize,
    zlib_at: Option<u64>,
    blob: Arc<Blob>,
    ty: u32,
    data: usize,
    len: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.blob.bytes()
    }

    fn err(&self, offset: usize, expected: impl Into<String>) -> DataError {
        match self.zlib_at {
            None => DataError::format(self.path, offset as u64, expected),
            Some(z) => DataError::format(
                self.path,
                z,
                format!(
                    "{} (at byte {offset} of the data inflated from the compressed element at byte {z})",
                    expected.into()
                ),
            ),
        }
    }

    fn u32_at(&self, off: usize) -> u32 {
        let b = &self.bytes()[off..off + 4];
        match self.endian {
            Endian::Little => LittleEndian::read_u32(b),
            Endian::Big => BigEndian::read_u32(b),
        }
    }

    /// The tag at `off`; its data must end by `end`.
    fn tag(&self, off: usize, end: usize) -> Result<Tag> {
        if end < off || end - off < 8 {
            return Err(
                self.err(off, format!("an 8-byte data element tag, but only {} bytes remain", end.saturating_sub(off)))
            );
        }
        let first = self.u32_at(off);
        if first >> 16 != 0 {
            let (ty, len) = (first & 0xffff, (first >> 16) as usize);
            if len > 4 {
                return Err(self.err(off, format!("a small data element of at most 4 bytes, found {len}")));
            }
            return Ok(Tag { ty, data: off + 4, len, next: off + 8 });
        }
        let len = self.u32_at(off + 4) as usize;
        let data = off + 8;
        if len > end - data {
            return Err(self.err(
                off + 4,
                format!("a data element of {len} bytes, but only {} bytes remain (truncated)", end - data),
            ));
        }
        let data_end = data + len;
        let next = if first == MI_COMPRESSED { data_end } else { data_end.div_ceil(8).saturating_mul(8).min(end) };
        Ok(Tag { ty: first, data, len, next })
    }

    /// Parses the `miMATRIX` element whose tag is at `at` with contents `tag`; numeric arrays
    /// give `Some`, other classes (cell, struct, char, sparse, …) `None`.
    fn matrix(&self, at: usize, tag: &Tag) -> Result<Option<Var>> {
        let end = tag.data + tag.len;
        let flags = self.tag(tag.data, end)?;
        if flags.ty != MI_UINT32 || flags.len != 8 {
            return Err(self.err(
                tag.data,
                format!("array flags (miUINT32, 8 bytes), found element type {} of {} bytes", flags.ty, flags.len),
            ));
        }
        let word = self.u32_at(flags.data);
        let class = (word & 0xff) as u8;
        let complex = word & 0x0800 != 0;
        if class == 0 || class > 17 {
            return Err(self.err(flags.data, format!("a MATLAB array class 1–17, found {class}")));
        }
        if class >= 16 {
            return Ok(None); // function handles and opaque objects have another layout
        }
        let dtag = self.tag(flags.next, end)?;
        if dtag.ty != MI_INT32 || dtag.len % 4 != 0 || dtag.len < 8 {
            return Err(self.err(
                flags.next,
                format!("array dimensions (miINT32, at least 2), found element type {} of {} bytes", dtag.ty, dtag.len),
            ));
        }
        let mut dims = Vec::with_capacity(dtag.len / 4);
        for k in 0..dtag.len / 4 {
            let d = self.u32_at(dtag.data + 4 * k) as i32;
            if d < 0 {
                return Err(self.err(dtag.data + 4 * k, format!("a non-negative dimension, found {d}")));
            }
            dims.push(d as usize);
        }
        let ntag = self.tag(dtag.next, end)?;
        if ntag.ty != MI_INT8 {
            return Err(self.err(dtag.next, format!("the array name (miINT8), found element type {}", ntag.ty)));
        }
        let name = String::from_utf8_lossy(&self.bytes()[ntag.data..ntag.data + ntag.len]).into_owned();
        if !(MX_DOUBLE..=MX_UINT64).contains(&class) {
            return Ok(None);
        }
        let rtag = self.tag(ntag.next, end)?;
        let Some(size) = numeric_size(rtag.ty) else {
            let what = if known_type(rtag.ty) { "a numeric data type" } else { "a known numeric data type" };
            return Err(
                self.err(ntag.next, format!("{what} (1–7, 9, 12 or 13) for the data of `{name}`, found {}", rtag.ty))
            );
        };
        let shown = dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×");
        let Some(want) = dims.iter().try_fold(size, |a, &d| a.checked_mul(d)) else {
            return Err(
                self.err(dtag.data, format!("dimensions whose product fits in memory for `{name}`, found {shown}"))
            );
        };
        if want != rtag.len {
            return Err(self.err(
                ntag.next + 4,
                format!("{want} data bytes for `{name}` ({shown} elements of {size} bytes), found {}", rtag.len),
            ));
        }
        Ok(Some(Var {
            name,
            class,
            complex,
            dims,
            at,
            zlib_at: self.zlib_at,
            blob: Arc::clone(self.blob),
            ty: rtag.ty,
            data: rtag.data,
            len: rtag.len,
        }))
    }
}

/// Reads every numeric variable of a MAT file held in `blob`, and the file's byte order.
fn variables(path: &Path, blob: &Arc<Blob>, opts: &OpenOptions) -> Result<(Endian, Vec<Var>)> {
    let bytes = blob.bytes();
    if bytes.len() < 128 {
        return Err(DataError::format(
            path,
            bytes.len() as u64,
            format!("a 128-byte MAT-file header, found {} bytes", bytes.len()),
        ));
    }
    if bytes.starts_with(b"MATLAB 7.3") || bytes.starts_with(b"\x89HDF") {
        return Err(DataError::format(
            path,
            0,
            "a level-5 MAT file; this is MATLAB 7.3 (HDF5), save it with -v7 instead",
        ));
    }
    if !bytes.starts_with(b"MATLAB") {
        return Err(DataError::format(path, 0, "header text starting with \"MATLAB\" (a level-5 MAT file)"));
    }
    let endian = match &bytes[126..128] {
        b"IM" => Endian::Little,
        b"MI" => Endian::Big,
        other => {
            return Err(DataError::format(path, 126, format!("endian indicator \"IM\" or \"MI\", found {other:02x?}")));
        }
    };
    let version = match endian {
        Endian::Little => LittleEndian::read_u16(&bytes[124..]),
        Endian::Big => BigEndian::read_u16(&bytes[124..]),
    };
    if version != 0x0100 {
        return Err(DataError::format(path, 124, format!("MAT-file version 0x0100, found {version:#06x}")));
    }
    let top = Reader { path, blob, endian, zlib_at: None };
    let mut vars = Vec::new();
    let mut off = 128;
    while off < bytes.len() {
        let tag = top.tag(off, bytes.len())?;
        match tag.ty {
            MI_MATRIX => vars.extend(top.matrix(off, &tag)?),
            MI_COMPRESSED => {
                let inner = inflate_zlib(path, &bytes[tag.data..tag.data + tag.len], off as u64, opts)?;
                let r = Reader { path, blob: &inner, endian, zlib_at: Some(off as u64) };
                let itag = r.tag(0, inner.bytes().len())?;
                if itag.ty != MI_MATRIX {
                    return Err(r.err(
                        0,
                        format!("an miMATRIX element (type 14) inside the compressed element, found {}", itag.ty),
                    ));
                }
                vars.extend(r.matrix(0, &itag)?);
            }
            t if known_type(t) => {}
            t => return Err(top.err(off, format!("a MAT data element type ({KNOWN_TYPES}), found {t}"))),
        }
        off = tag.next;
    }
    Ok((endian, vars))
}

impl Var {
    fn err(&self, path: &Path, offset: usize, expected: String) -> DataError {
        match self.zlib_at {
            None => DataError::format(path, offset as u64, expected),
            Some(z) => DataError::format(
                path,
                z,
                format!("{expected} (at byte {offset} of the data inflated from the compressed element at byte {z})"),
            ),
        }
    }

    /// Element `k` of the real part as `f64`.
    fn value(&self, endian: Endian, k: usize) -> f64 {
        let size = numeric_size(self.ty).expect("numeric");
        let b = &self.blob.bytes()[self.data + k * size..self.data + (k + 1) * size];
        match endian {
            Endian::Little => numeric_value::<LittleEndian>(self.ty, b),
            Endian::Big => numeric_value::<BigEndian>(self.ty, b),
        }
    }
}

/// The number stored in `b` as numeric element type `ty` with byte order `B`.
fn numeric_value<B: ByteOrder>(ty: u32, b: &[u8]) -> f64 {
    match ty {
        MI_INT8 => b[0] as i8 as f64,
        MI_UINT8 => b[0] as f64,
        MI_INT16 => B::read_i16(b) as f64,
        MI_UINT16 => B::read_u16(b) as f64,
        MI_INT32 => B::read_i32(b) as f64,
        MI_UINT32 => B::read_u32(b) as f64,
        MI_SINGLE => B::read_f32(b) as f64,
        MI_DOUBLE => B::read_f64(b),
        MI_INT64 => B::read_i64(b) as f64,
        _ => B::read_u64(b) as f64,
    }
}

/// Opens one SVHN-style MAT file (`X`: uint8 H×W×C×N, `y`: N labels 1–10 or 0–10, 10 → 0) as
/// an [`ImageSet`] of `[C, H, W]` images named after the file.
///
/// # Errors
/// [`DataError::Format`] for a bad header (not level 5, unknown endian indicator, wrong
/// version), a truncated element, an unknown element type, a missing `X` or `y`, an `X` that is
/// not real `uint8` with 3 or 4 dimensions, a `y` whose length differs from N, or a label that
/// is not an integer in 0–10; [`DataError::Format`] for a corrupt zlib stream (or
/// [`DataError::Compressed`] without the `gzip` feature); [`DataError::Io`] from the file
/// system.
pub fn open_svhn_mat(path: impl AsRef<Path>, opts: &OpenOptions) -> Result<ImageSet> {
    let path = path.as_ref();
    let blob = load(path, opts)?;
    let (endian, vars) = variables(path, &blob, opts)?;
    let names = || vars.iter().map(|v| format!("`{}`", v.name)).collect::<Vec<_>>().join(", ");
    let find = |n: &str| vars.iter().find(|v| v.name == n);
    let (Some(x), Some(y)) = (find("X"), find("y")) else {
        return Err(DataError::format(
            path,
            128,
            format!("numeric variables `X` and `y`, found {}", if vars.is_empty() { "none".into() } else { names() }),
        ));
    };
    if x.class != MX_UINT8 || x.ty != MI_UINT8 || x.complex {
        return Err(x.err(
            path,
            x.at,
            format!("`X` as a real uint8 array stored as miUINT8, found class {} stored as type {}", x.class, x.ty),
        ));
    }
    let (h, w, c, n) = match x.dims[..] {
        [h, w, c] => (h, w, c, 1),
        [h, w, c, n] => (h, w, c, n),
        _ => {
            return Err(x.err(path, x.at, format!("`X` with 3 or 4 dimensions (H×W×C×N), found {:?}", x.dims)));
        }
    };
    if h == 0 || w == 0 || c == 0 {
        return Err(x.err(path, x.at, format!("nonzero image dimensions in `X`, found {h}×{w}×{c}")));
    }
    let y_numel: usize = y.dims.iter().product();
    if y.complex || y_numel != n {
        return Err(y.err(
            path,
            y.at,
            format!("`y` as a real array of {n} labels (one per image of `X`), found dims {:?}", y.dims),
        ));
    }
    let size = numeric_size(y.ty).expect("numeric");
    let mut labels = Vec::with_capacity(n);
    for k in 0..n {
        let v = y.value(endian, k);
        if !(v.fract() == 0.0 && (0.0..=10.0).contains(&v)) {
            return Err(y.err(
                path,
                y.data + k * size,
                format!("a label that is an integer 0–10 (label of image {k}), found {v}"),
            ));
        }
        labels.push((v as u8) % 10);
    }
    let plane = h * w;
    let part = Part { blob: Arc::clone(&x.blob), base: x.data, stride: plane * c, count: n };
    debug_assert_eq!(x.len, plane * c * n);
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(ImageSet::from_parts(
        name,
        vec![path.to_path_buf()],
        vec![part],
        [c, h, w],
        [plane, 1, h],
        Labels { labels, names: (0..10).map(|d| d.to_string()).collect() },
        None,
    ))
}

/// SVHN cropped digits (Netzer et al. 2011): 73,257 training, 26,032 test and 531,131 extra
/// images of 3×32×32, digits 0–9.
pub struct Svhn;

impl Svhn {
    /// Opens `train_32x32.mat` and `test_32x32.mat` in `dir`, and `extra_32x32.mat` when present.
    ///
    /// # Errors
    /// [`DataError::NotFound`] if the train or test file is missing; otherwise as
    /// [`open_svhn_mat`].
    pub fn open_with(dir: impl AsRef<Path>, opts: &OpenOptions) -> Result<Split> {
        let dir = dir.as_ref();
        let file = |n: &str| -> Result<PathBuf> {
            let p = dir.join(n);
            if p.is_file() {
                Ok(p)
            } else {
                Err(DataError::NotFound { dir: dir.to_path_buf(), what: "SVHN MAT file", tried: vec![n.to_string()] })
            }
        };
        let train = open_svhn_mat(file("train_32x32.mat")?, opts)?;
        let test = open_svhn_mat(file("test_32x32.mat")?, opts)?;
        let extra = match file("extra_32x32.mat") {
            Ok(p) => Some(open_svhn_mat(p, opts)?),
            Err(_) => None,
        };
        Ok(Split::new(train, test, extra))
    }

    /// [`Svhn::open_with`] with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<Split> {
        Svhn::open_with(dir, &OpenOptions::default())
    }
}

/// Writing MAT files, for tests of the reader (the format SciPy's `savemat` produces).
#[cfg(test)]
pub(crate) mod write {
    use super::*;

    fn pad8(v: &mut Vec<u8>) {
        while v.len() % 8 != 0 {
            v.push(0);
        }
    }

    /// One element with a full tag, padded.
    pub fn element(ty: u32, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&ty.to_le_bytes());
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
        pad8(&mut v);
        v
    }

    /// A numeric matrix variable `name` of `class` with data stored as `ty`.
    pub fn matrix(name: &str, class: u8, dims: &[i32], ty: u32, data: &[u8]) -> Vec<u8> {
        let mut body = element(MI_UINT32, &[class, 0, 0, 0, 0, 0, 0, 0]);
        let d: Vec<u8> = dims.iter().flat_map(|x| x.to_le_bytes()).collect();
        body.extend(element(MI_INT32, &d));
        // names of up to 4 bytes use the small element format, as MATLAB and SciPy do
        if name.len() <= 4 {
            let mut small = ((name.len() as u32) << 16 | MI_INT8).to_le_bytes().to_vec();
            let mut n = name.as_bytes().to_vec();
            n.resize(4, 0);
            small.extend(n);
            body.extend(small);
        } else {
            body.extend(element(MI_INT8, name.as_bytes()));
        }
        body.extend(element(ty, data));
        element(MI_MATRIX, &body)
    }

    /// A 128-byte little-endian level-5 header.
    pub fn header() -> Vec<u8> {
        let mut h = b"MATLAB 5.0 MAT-file, written by sparsegrad-datasets tests".to_vec();
        h.resize(116, b' ');
        h.extend_from_slice(&[0; 8]);
        h.extend_from_slice(&0x0100u16.to_le_bytes());
        h.extend_from_slice(b"IM");
        h
    }

    /// zlib-compresses `element` into an miCOMPRESSED element (not padded).
    #[cfg(feature = "gzip")]
    pub fn compressed(element: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(element).unwrap();
        let z = enc.finish().unwrap();
        let mut v = Vec::new();
        v.extend_from_slice(&MI_COMPRESSED.to_le_bytes());
        v.extend_from_slice(&(z.len() as u32).to_le_bytes());
        v.extend(z);
        v
    }

    /// A file with `n` images of `h×w×3` (pixel (r, c, k, i) = r + 2c + 5k + 7i mod 256) and
    /// labels `y` as doubles.
    pub fn svhn_like(h: usize, w: usize, y: &[f64]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let n = y.len();
        let mut x = Vec::with_capacity(h * w * 3 * n);
        for i in 0..n {
            for k in 0..3 {
                for c in 0..w {
                    for r in 0..h {
                        x.push(((r + 2 * c + 5 * k + 7 * i) % 256) as u8);
                    }
                }
            }
        }
        let xm = matrix("X", MX_UINT8, &[h as i32, w as i32, 3, n as i32], MI_UINT8, &x);
        let yd: Vec<u8> = y.iter().flat_map(|v| v.to_le_bytes()).collect();
        let ym = matrix("y", MX_DOUBLE, &[n as i32, 1], MI_DOUBLE, &yd);
        (header(), xm, ym)
    }
}

#[cfg(test)]
mod tests {
    use super::write::*;
    use super::*;
    use crate::blob::tests::scratch;
    use crate::Dataset;

    fn open_bytes(d: &Path, bytes: &[u8]) -> Result<ImageSet> {
        let f = d.join("t.mat");
        std::fs::write(&f, bytes).unwrap();
        open_svhn_mat(&f, &OpenOptions::new().in_memory())
    }

    #[test]
    fn plain_file_reads_column_major_images_and_maps_ten_to_zero() {
        let d = scratch("mat-ok");
        let (h, x, y) = svhn_like(4, 5, &[10.0, 3.0]);
        let s = open_bytes(&d, &[h, x, y].concat()).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.image_shape(), [3, 4, 5]);
        assert_eq!(s.labels(), vec![0, 3]);
        let v = s.image_u8(1);
        // (k=2, r=3, c=4) of image 1: 3 + 8 + 10 + 7 = 28
        assert_eq!(v.get(2, 3, 4), 28);
        assert_eq!(v.get(0, 1, 0), 1 + 7);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[cfg(feature = "gzip")]
    #[test]
    fn compressed_elements_are_inflated_and_cached() {
        let d = scratch("mat-z");
        let (h, x, y) = svhn_like(3, 3, &[1.0, 10.0, 5.0]);
        let bytes = [h.clone(), compressed(&x), compressed(&y)].concat();
        let f = d.join("z.mat");
        std::fs::write(&f, &bytes).unwrap();
        let cache = d.join("cache");
        let s = open_svhn_mat(&f, &OpenOptions::new().cache_dir(&cache)).unwrap();
        assert_eq!(s.labels(), vec![1, 0, 5]);
        assert_eq!(s.image_u8(2).get(1, 2, 1), (2 + 2 + 5 + 14) as u8);
        let n_cached = std::fs::read_dir(&cache).unwrap().count();
        assert_eq!(n_cached, 2, "one cache file per compressed element");
        let again = open_svhn_mat(&f, &OpenOptions::new().cache_dir(&cache)).unwrap();
        assert_eq!(again.image_u8(2).to_vec(), s.image_u8(2).to_vec());
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 2);
        // corrupt zlib data
        let mut bad = bytes.clone();
        bad[128 + 8 + 10] ^= 0xff;
        bad[128 + 8 + 11] ^= 0x0f;
        let e = open_bytes(&d, &bad).unwrap_err().to_string();
        assert!(e.contains("t.mat: byte 1"), "{e}");
        assert!(e.contains("zlib"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn each_corrupt_kind_is_reported() {
        let d = scratch("mat-bad");
        let (h, x, y) = svhn_like(2, 2, &[1.0, 2.0]);
        let good = [h.clone(), x.clone(), y.clone()].concat();
        let check = |bytes: &[u8], want: &str| {
            let e = open_bytes(&d, bytes).unwrap_err().to_string();
            assert!(e.contains(want), "wanted {want:?} in {e}");
            assert!(e.starts_with(&format!("{}: byte ", d.join("t.mat").display())), "{e}");
        };
        check(&good[..100], "byte 100: expected a 128-byte MAT-file header, found 100 bytes");
        let mut m = good.clone();
        m[126..128].copy_from_slice(b"XX");
        check(&m, "byte 126: expected endian indicator");
        let mut m = good.clone();
        m[124] = 2;
        check(&m, "byte 124: expected MAT-file version 0x0100, found 0x0102");
        check(&good[..good.len() - 9], "expected a data element of 64 bytes, but only 55 bytes remain (truncated)");
        let mut m = good.clone();
        m[128] = 99; // unknown element type
        check(&m, "byte 128: expected a MAT data element type (1–7, 9 or 12–18), found 99");
        // unknown data type for X's real part: the real part tag sits after flags, dims and name
        let real_tag = 128 + 8 + 16 + 24 + 8;
        let mut m = good.clone();
        m[real_tag] = 11;
        check(&m, "expected a known numeric data type (1–7, 9, 12 or 13) for the data of `X`, found 11");
        // dims inconsistent with the data length: N = 3 in X
        let mut m = good.clone();
        m[128 + 8 + 16 + 8 + 12] = 3;
        check(&m, "expected 36 data bytes for `X` (2×2×3×3 elements of 1 bytes), found 24");
        // overflowing dims
        let mut m = good.clone();
        for k in 0..4 {
            m[128 + 8 + 16 + 8 + 4 * k..128 + 8 + 16 + 8 + 4 * k + 4].copy_from_slice(&0x7fff_ffffi32.to_le_bytes());
        }
        check(&m, "expected dimensions whose product fits in memory for `X`");
        // labels out of range and non-integer
        let (h2, x2, _) = svhn_like(2, 2, &[1.0, 2.0]);
        let yd: Vec<u8> = [1.0f64, 11.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let ym = matrix("y", MX_DOUBLE, &[2, 1], MI_DOUBLE, &yd);
        let ydata = 128 + x2.len() + 8 + 16 + 16 + 8 + 8;
        check(
            &[h2.clone(), x2.clone(), ym].concat(),
            &format!("byte {}: expected a label that is an integer 0–10 (label of image 1), found 11", ydata + 8),
        );
        let yd: Vec<u8> = [1.5f64, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let ym = matrix("y", MX_DOUBLE, &[2, 1], MI_DOUBLE, &yd);
        check(&[h2.clone(), x2.clone(), ym].concat(), "found 1.5");
        // y length differs from N
        let ym = matrix("y", MX_UINT8, &[3, 1], MI_UINT8, &[1, 2, 3]);
        check(&[h2.clone(), x2.clone(), ym].concat(), "expected `y` as a real array of 2 labels");
        // missing y
        check(&[h2.clone(), x2.clone()].concat(), "byte 128: expected numeric variables `X` and `y`, found `X`");
        // X not uint8
        let xm = matrix("X", MX_DOUBLE, &[1, 1, 1, 2], MI_DOUBLE, &[0u8; 16]);
        let ym = matrix("y", MX_UINT8, &[2, 1], MI_UINT8, &[1, 2]);
        check(&[h2.clone(), xm, ym].concat(), "expected `X` as a real uint8 array stored as miUINT8, found class 6");
        // v7.3
        let mut m = good.clone();
        m[..10].copy_from_slice(b"MATLAB 7.3");
        check(&m, "this is MATLAB 7.3 (HDF5)");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn loader_reads_column_major_images_in_chw_order() {
        let d = scratch("mat-loader");
        let (h, x, y) = svhn_like(4, 5, &[10.0, 3.0, 7.0]);
        let s = open_bytes(&d, &[h, x, y].concat()).unwrap();
        let cfg = crate::LoaderConfig::new(3).shuffle(false).normalise(false);
        let b = crate::Loader::new(&s, cfg).epoch(0).next().unwrap();
        assert_eq!(b.x.shape(), &[3, 3, 4, 5]);
        assert_eq!(b.y, vec![0, 3, 7]);
        let xs = b.x.to_vec();
        // (image 2, channel 1, row 3, column 4): r + 2c + 5k + 7i = 3 + 8 + 5 + 14 = 30
        assert!((xs[2 * 60 + 20 + 3 * 5 + 4] - 30.0 / 255.0).abs() < 1e-7);
        let want: Vec<f32> = s.image_u8(1).to_vec().iter().map(|&v| v as f32 / 255.0).collect();
        assert!(xs[60..120].iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-7));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn uint8_labels_and_small_y_work() {
        let d = scratch("mat-u8");
        let (h, x, _) = svhn_like(2, 2, &[1.0, 2.0]);
        let ym = matrix("y", MX_UINT8, &[2, 1], MI_UINT8, &[10, 9]);
        let s = open_bytes(&d, &[h, x, ym].concat()).unwrap();
        assert_eq!(s.labels(), vec![0, 9]);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
