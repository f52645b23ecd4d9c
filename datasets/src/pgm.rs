//! PGM grayscale images (Netpbm): binary `P5` with 8- or 16-bit samples and plain (ASCII)
//! `P2`, the format of the DCEA test images in `data/denoise/`.
//!
//! A PGM file is the magic `P5` (or `P2`), then the width, the height and the maxval as ASCII
//! decimal numbers, each preceded by whitespace (blank, TAB, CR, LF, VT, FF) in which
//! comments may appear (`#` up to the next CR or LF). In `P5` exactly one whitespace byte
//! follows the maxval and the raster starts after it: `width·height` samples, row-major, one
//! byte each when `maxval < 256`, otherwise two bytes, most significant first. In `P2` the
//! samples are decimal numbers separated by whitespace (comments are skipped there too, as
//! libnetpbm does).
//!
//! What is accepted, and what is an error (a [`DataError::Format`] naming the file and the
//! byte offset where the problem was found):
//! * width and height must be at least 1, `1 ≤ maxval ≤ 65535`, and every sample `≤ maxval`;
//! * a number with something other than whitespace or `#` right after it (`25x`) is an
//!   error, as is a `#` right after the maxval of a `P5` file (the single whitespace byte that
//!   ends the header would then be ambiguous);
//! * **trailing data**: a `P5` file must end exactly after its raster (any extra byte, even a
//!   newline, is reported at its offset: Netpbm allows several images in one file, this
//!   reader reads one); a `P2` file may end with whitespace and comments, nothing else.

use std::path::Path;

use engine::{Element, Tensor};

use crate::error::{DataError, Result};

/// A decoded PGM image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pgm {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// The largest sample value the file declares (1..=65535).
    pub maxval: u16,
    /// True for a plain (ASCII, `P2`) file.
    pub plain: bool,
    /// `width·height` samples, row-major, each `≤ maxval`.
    pub pixels: Vec<u16>,
}

impl Pgm {
    /// The image as a tensor `[1, 1, height, width]` with values `pixel / maxval` in `[0, 1]`
    /// (computed in `f64`, then rounded once to `T`).
    pub fn to_tensor<T: Element>(&self) -> Tensor<T> {
        let m = self.maxval as f64;
        let data = self.pixels.iter().map(|&p| T::of(p as f64 / m)).collect();
        Tensor::from_vec(data, &[1, 1, self.height, self.width])
    }
}

/// Reads and decodes the PGM file at `path`.
///
/// # Errors
/// [`DataError::Io`] if the file cannot be read; [`DataError::Format`] (file and byte offset)
/// for anything the module docs list as an error.
pub fn read_pgm(path: impl AsRef<Path>) -> Result<Pgm> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, "read", e))?;
    parse_pgm(path, &bytes)
}

/// Reads the PGM file at `path` as a `[1, 1, H, W]` tensor in `[0, 1]` ([`Pgm::to_tensor`]).
///
/// # Errors
/// Those of [`read_pgm`].
pub fn open_pgm(path: impl AsRef<Path>) -> Result<Tensor<f32>> {
    Ok(read_pgm(path)?.to_tensor())
}

/// Decodes the bytes of a PGM file; `path` is only used in errors.
///
/// # Errors
/// [`DataError::Format`] naming `path` and the byte offset, as listed in the module docs.
pub fn parse_pgm(path: &Path, bytes: &[u8]) -> Result<Pgm> {
    let mut c = Cursor { path, bytes, pos: 0 };
    let plain = c.magic()?;
    let (width, width_at) = c.number_at("the width", u32::MAX as u64, 1)?;
    let width = width as usize;
    let height = c.number("the height", u32::MAX as u64, 1)? as usize;
    let maxval = c.number("the maxval", 65535, 1)? as u16;
    let count = width.checked_mul(height).filter(|n| n.checked_mul(2).is_some()).ok_or_else(|| {
        DataError::format(path, width_at as u64, format!("a width·height that fits in memory, found {width}×{height}"))
    })?;
    let pixels = if plain { c.plain_raster(count, maxval)? } else { c.binary_raster(count, maxval)? };
    Ok(Pgm { width, height, maxval, plain, pixels })
}

/// The bytes of a binary (`P5`) PGM file: the header `P5\n<width> <height>\n<maxval>\n`, then
/// the samples (one byte each when `maxval < 256`, else two, big-endian).
///
/// **Panics** if `pixels.len() != width·height`, `maxval` is 0, or a sample exceeds `maxval`.
#[track_caller]
pub fn pgm_bytes(width: usize, height: usize, maxval: u16, pixels: &[u16]) -> Vec<u8> {
    check_samples("pgm_bytes", width, height, maxval, pixels);
    let mut out = format!("P5\n{width} {height}\n{maxval}\n").into_bytes();
    for &p in pixels {
        if maxval < 256 {
            out.push(p as u8);
        } else {
            out.extend_from_slice(&p.to_be_bytes());
        }
    }
    out
}

/// The text of a plain (`P2`) PGM file, at most 17 samples a line (Netpbm keeps lines
/// under 70 characters).
///
/// **Panics** as [`pgm_bytes`].
#[track_caller]
pub fn pgm_plain_bytes(width: usize, height: usize, maxval: u16, pixels: &[u16]) -> Vec<u8> {
    check_samples("pgm_plain_bytes", width, height, maxval, pixels);
    let mut out = format!("P2\n{width} {height}\n{maxval}\n");
    for line in pixels.chunks(17) {
        let words: Vec<String> = line.iter().map(|p| p.to_string()).collect();
        out += &words.join(" ");
        out.push('\n');
    }
    out.into_bytes()
}

#[track_caller]
fn check_samples(op: &str, width: usize, height: usize, maxval: u16, pixels: &[u16]) {
    assert!(maxval > 0, "{op}: maxval must be at least 1");
    assert_eq!(pixels.len(), width * height, "{op}: {} samples for a {width}×{height} image", pixels.len());
    if let Some(i) = pixels.iter().position(|&p| p > maxval) {
        panic!("{op}: sample {i} is {} > maxval {maxval}", pixels[i]);
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// `b` for an error message: the character when printable ASCII, with its value.
fn show(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("byte {b:#04x} ('{}')", b as char)
    } else {
        format!("byte {b:#04x}")
    }
}

struct Cursor<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn err(&self, offset: usize, expected: String) -> DataError {
        DataError::format(self.path, offset as u64, expected)
    }

    fn end(&self, what: &str) -> DataError {
        let n = self.bytes.len();
        self.err(n, format!("{what}, but the file ends after {n} bytes"))
    }

    /// The magic number: true for `P2`, false for `P5`.
    fn magic(&mut self) -> Result<bool> {
        let b = self.bytes;
        if b.len() < 2 {
            return Err(self.end("the PGM magic \"P5\" or \"P2\""));
        }
        let plain = match &b[..2] {
            b"P5" => false,
            b"P2" => true,
            m => {
                let hint = match m {
                    b"P1" | b"P4" => " (a PBM bitmap, not a PGM graymap)",
                    b"P3" | b"P6" => " (a PPM colour image, not a PGM graymap)",
                    b"P7" => " (a PAM file, not a PGM graymap)",
                    [0x89, b'P'] => " (a PNG file)",
                    _ => "",
                };
                let found = String::from_utf8_lossy(m).escape_debug().to_string();
                return Err(self.err(0, format!("the PGM magic \"P5\" or \"P2\", found \"{found}\"{hint}")));
            }
        };
        self.pos = 2;
        Ok(plain)
    }

    /// Skips whitespace and comments; returns whether anything was skipped.
    fn skip_blank(&mut self) -> bool {
        let start = self.pos;
        while let Some(&b) = self.bytes.get(self.pos) {
            if is_space(b) {
                self.pos += 1;
            } else if b == b'#' {
                while let Some(&c) = self.bytes.get(self.pos) {
                    self.pos += 1;
                    if c == b'\n' || c == b'\r' {
                        break;
                    }
                }
            } else {
                break;
            }
        }
        self.pos > start
    }

    /// A decimal number in `min..=max` preceded by whitespace or comments, and followed by
    /// whitespace, a comment or the end of the file (checked by whoever reads on).
    fn number(&mut self, what: &str, max: u64, min: u64) -> Result<u64> {
        Ok(self.number_at(what, max, min)?.0)
    }

    /// [`Cursor::number`] and the offset of its first digit.
    fn number_at(&mut self, what: &str, max: u64, min: u64) -> Result<(u64, usize)> {
        let before = self.pos;
        if !self.skip_blank() {
            return Err(match self.bytes.get(before) {
                None => self.end(&format!("whitespace and {what}")),
                Some(&b) => self.err(before, format!("whitespace before {what}, found {}", show(b))),
            });
        }
        let start = self.pos;
        let mut v: u64 = 0;
        while let Some(&b) = self.bytes.get(self.pos) {
            if !b.is_ascii_digit() {
                break;
            }
            v = v.saturating_mul(10).saturating_add((b - b'0') as u64);
            self.pos += 1;
        }
        if self.pos == start {
            return Err(match self.bytes.get(start) {
                None => self.end(&format!("{what} (a decimal number)")),
                Some(&b) => self.err(start, format!("{what} as a decimal number, found {}", show(b))),
            });
        }
        let digits = String::from_utf8_lossy(&self.bytes[start..self.pos.min(start + 24)]).to_string();
        if v > max || v < min {
            return Err(self.err(start, format!("{what} in {min}..={max}, found {digits}")));
        }
        if let Some(&b) = self.bytes.get(self.pos) {
            if !is_space(b) && b != b'#' {
                return Err(self.err(self.pos, format!("whitespace after {what} {digits}, found {}", show(b))));
            }
        }
        Ok((v, start))
    }

    fn binary_raster(&mut self, count: usize, maxval: u16) -> Result<Vec<u16>> {
        // Exactly one whitespace byte ends the header.
        match self.bytes.get(self.pos) {
            None => return Err(self.end("one whitespace byte after the maxval, then the raster")),
            Some(&b) if is_space(b) => self.pos += 1,
            Some(&b) => {
                return Err(self.err(
                    self.pos,
                    format!(
                        "one whitespace byte after the maxval (a comment there is not supported), found {}",
                        show(b)
                    ),
                ))
            }
        }
        let per = if maxval < 256 { 1 } else { 2 };
        let need = count * per;
        let start = self.pos;
        let have = self.bytes.len() - start;
        if have < need {
            let n = self.bytes.len();
            return Err(self.err(
                n,
                format!(
                    "{count} samples of {per} byte{} ({need} bytes from byte {start}), but the file ends after {n} \
                     bytes ({} complete samples, truncated)",
                    if per == 1 { "" } else { "s" },
                    have / per
                ),
            ));
        }
        if have > need {
            return Err(self.err(
                start + need,
                format!(
                    "the end of the file after the {need}-byte raster, found {} more bytes (trailing data is \
                     rejected; this reader reads one image per file)",
                    have - need
                ),
            ));
        }
        let raster = &self.bytes[start..];
        let pixels: Vec<u16> = if per == 1 {
            raster.iter().map(|&b| b as u16).collect()
        } else {
            raster.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect()
        };
        if let Some(i) = pixels.iter().position(|&p| p > maxval) {
            return Err(
                self.err(start + i * per, format!("sample {i} at most the maxval {maxval}, found {}", pixels[i]))
            );
        }
        Ok(pixels)
    }

    fn plain_raster(&mut self, count: usize, maxval: u16) -> Result<Vec<u16>> {
        let mut pixels = Vec::with_capacity(count.min(self.bytes.len()));
        for i in 0..count {
            let (p, at) = self.number_at(&format!("sample {i} of {count}"), u64::MAX, 0)?;
            if p > maxval as u64 {
                return Err(self.err(at, format!("sample {i} at most the maxval {maxval}, found {p}")));
            }
            pixels.push(p as u16);
        }
        self.skip_blank();
        if let Some(&b) = self.bytes.get(self.pos) {
            return Err(self.err(
                self.pos,
                format!(
                    "only whitespace and comments after the {count} samples, found {} (trailing data is rejected)",
                    show(b)
                ),
            ));
        }
        Ok(pixels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(b: &[u8]) -> Result<Pgm> {
        parse_pgm(Path::new("t.pgm"), b)
    }

    #[test]
    fn binary_plain_and_sixteen_bit_round_trip() {
        let px = [0u16, 1, 2, 250, 251, 255];
        let p = parse(&pgm_bytes(3, 2, 255, &px)).unwrap();
        assert_eq!((p.width, p.height, p.maxval, p.plain), (3, 2, 255, false));
        assert_eq!(p.pixels, px);
        let q = parse(&pgm_plain_bytes(3, 2, 255, &px)).unwrap();
        assert_eq!((q.pixels.as_slice(), q.plain), (&px[..], true));
        let wide = [0u16, 256, 65535, 4660];
        let w = parse(&pgm_bytes(2, 2, 65535, &wide)).unwrap();
        assert_eq!(w.pixels, wide);
        // header "P5\n2 2\n65535\n" is 13 bytes; 4660 = 0x1234 is stored most significant byte first
        assert_eq!(&pgm_bytes(2, 2, 65535, &wide)[13..], &[0, 0, 1, 0, 255, 255, 0x12, 0x34]);
    }

    #[test]
    fn comments_and_odd_whitespace_in_the_header() {
        let mut b = b"P5 # made by hand\n#another\r3\t# w\n 1\x0b\x0c7\n".to_vec();
        b.extend([0, 7, 3]);
        let p = parse(&b).unwrap();
        assert_eq!((p.width, p.height, p.maxval, p.pixels.clone()), (3, 1, 7, vec![0, 7, 3]));
        // to_tensor divides by the maxval: [0, 1, 3/7]
        let t = p.to_tensor::<f64>();
        assert_eq!(t.shape(), &[1, 1, 1, 3]);
        assert_eq!(t.to_vec(), vec![0.0, 1.0, 3.0 / 7.0]);
    }

    #[test]
    fn errors_name_the_file_and_the_offset() {
        let e = parse(b"P6\n1 1\n255\n\0").unwrap_err();
        assert_eq!(e.offset(), Some(0));
        assert!(e.to_string().starts_with("t.pgm: byte 0: expected the PGM magic"), "{e}");
        assert!(e.to_string().contains("PPM"), "{e}");
        // maxval 0 at byte 7, 65536 at byte 7
        assert_eq!(parse(b"P5\n1 1\n0\n\0").unwrap_err().offset(), Some(7));
        let e = parse(b"P5\n1 1\n65536\n\0\0").unwrap_err();
        assert_eq!(e.offset(), Some(7));
        assert!(e.to_string().contains("the maxval in 1..=65535, found 65536"), "{e}");
        // garbage after the width
        let e = parse(b"P5\n25x 2\n255\n").unwrap_err();
        assert_eq!(e.offset(), Some(5), "{e}");
        // sample above the maxval: the header "P5\n2 1\n7\n" is 9 bytes, byte 10 holds 9 > 7
        let e = parse(b"P5\n2 1\n7\n\x01\x09").unwrap_err();
        assert_eq!(e.offset(), Some(10), "{e}");
        assert!(e.to_string().contains("sample 1 at most the maxval 7, found 9"), "{e}");
    }
}
