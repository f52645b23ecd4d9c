//! MNIST variations in the style of Larochelle et al. (2007), "An empirical evaluation of deep
//! architectures on problems with many factors of variation", generated from MNIST with a
//! seed and written as IDX files so they can be reused.
//!
//! * `rot`: the digit rotated by an angle uniform in `[0, 2π)` about the image centre
//!   (`((H−1)/2, (W−1)/2)`), bilinear interpolation, zero outside the source image.
//! * `back-rand`: every pixel where the digit is absent (value 0) gets uniform noise in
//!   `[0, 1]`, stored as `round(255·u)`.
//! * `back-image`: every pixel where the digit is absent shows a random H×W patch of a random
//!   grayscale natural image (CIFAR; gray = (299 R + 587 G + 114 B + 500) / 1000).
//! * `rot-back-image`: the rotation, then the image background.
//!
//! Image `i` of a split draws everything from `Rng::stream(seed ^ salt(variation), base + i)`
//! (angle first, then background choices), so generation is parallel and reproducible.

use std::path::{Path, PathBuf};

use engine::Rng;
use rayon::prelude::*;

use crate::dataset::{Dataset, ImageView, Split};
use crate::error::Result;
use crate::idx::{write_idx_images, write_idx_labels};

/// One of the four MNIST variations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variation {
    /// Rotated digits.
    Rot,
    /// Uniform-noise background.
    BackRand,
    /// Natural-image background.
    BackImage,
    /// Rotated digits on a natural-image background.
    RotBackImage,
}

/// Stream offset of the test split (the training split starts at 0).
pub const TEST_STREAM_BASE: u64 = 1 << 40;

impl Variation {
    /// All four, in the order above.
    pub const ALL: [Variation; 4] =
        [Variation::Rot, Variation::BackRand, Variation::BackImage, Variation::RotBackImage];

    /// Directory name: `mnist-rot`, `mnist-back-rand`, `mnist-back-image`, `mnist-rot-back-image`.
    pub fn name(self) -> &'static str {
        match self {
            Variation::Rot => "mnist-rot",
            Variation::BackRand => "mnist-back-rand",
            Variation::BackImage => "mnist-back-image",
            Variation::RotBackImage => "mnist-rot-back-image",
        }
    }

    /// Parses `rot`, `back-rand`, `back-image`, `rot-back-image`, with or without `mnist-`.
    pub fn parse(s: &str) -> Option<Variation> {
        let s = s.strip_prefix("mnist-").unwrap_or(s);
        Variation::ALL.into_iter().find(|v| &v.name()[6..] == s)
    }

    /// True for the variations that need background images.
    pub fn needs_backgrounds(self) -> bool {
        matches!(self, Variation::BackImage | Variation::RotBackImage)
    }

    fn rotates(self) -> bool {
        matches!(self, Variation::Rot | Variation::RotBackImage)
    }

    fn salt(self) -> u64 {
        match self {
            Variation::Rot => 0x524f_5400,
            Variation::BackRand => 0x4252_4e44,
            Variation::BackImage => 0x4249_4d47,
            Variation::RotBackImage => 0x5242_494d,
        }
    }
}

/// Rotates the single-channel `src` (`h×w`, row-major) by `theta` radians about its centre
/// into `out`, with bilinear interpolation and zeros outside the source.
pub fn rotate_bilinear(src: &[u8], h: usize, w: usize, theta: f64, out: &mut [u8]) {
    let (cy, cx) = ((h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0);
    let (s, c) = theta.sin_cos();
    let px = |y: isize, x: isize| -> f64 {
        if y >= 0 && x >= 0 && (y as usize) < h && (x as usize) < w {
            src[y as usize * w + x as usize] as f64
        } else {
            0.0
        }
    };
    for y in 0..h {
        for x in 0..w {
            let (dy, dx) = (y as f64 - cy, x as f64 - cx);
            // inverse map: output position rotated by −θ gives the source position
            let sx = c * dx + s * dy + cx;
            let sy = -s * dx + c * dy + cy;
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as isize, y0 as isize);
            let v = (1.0 - fy) * ((1.0 - fx) * px(y0, x0) + fx * px(y0, x0 + 1))
                + fy * ((1.0 - fx) * px(y0 + 1, x0) + fx * px(y0 + 1, x0 + 1));
            out[y * w + x] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
}

/// Gray value of pixel `(y, x)` of a 1- or 3-channel image.
fn gray(v: &ImageView<'_>, y: usize, x: usize) -> u8 {
    if v.shape()[0] >= 3 {
        let (r, g, b) = (v.get(0, y, x) as u32, v.get(1, y, x) as u32, v.get(2, y, x) as u32);
        ((299 * r + 587 * g + 114 * b + 500) / 1000) as u8
    } else {
        v.get(0, y, x)
    }
}

/// Generates `kind` for the first `limit` (or all) images of `digits`, returning the new
/// pixels (`n·H·W` bytes, single channel) in image order. Image `i` uses stream `base + i`
/// (use 0 for a training split and [`TEST_STREAM_BASE`] for a test split).
///
/// **Panics** if `digits` is not single-channel, or if `kind` needs backgrounds and
/// `backgrounds` is `None`, empty, or has images smaller than the digits.
#[track_caller]
pub fn generate<D: Dataset + ?Sized, B: Dataset + ?Sized>(
    kind: Variation,
    digits: &D,
    backgrounds: Option<&B>,
    seed: u64,
    base: u64,
    limit: Option<usize>,
) -> Vec<u8> {
    let [c, h, w] = digits.image_shape();
    assert_eq!(c, 1, "variations::generate: digits must have one channel, shape is {:?}", digits.image_shape());
    let bg = if kind.needs_backgrounds() {
        let b = backgrounds.unwrap_or_else(|| panic!("variations::generate: {} needs background images", kind.name()));
        let [_, bh, bw] = b.image_shape();
        assert!(
            !b.is_empty() && bh >= h && bw >= w,
            "variations::generate: backgrounds {:?} × {} cannot hold {h}×{w} patches",
            b.image_shape(),
            b.len()
        );
        Some(b)
    } else {
        None
    };
    let n = limit.map_or(digits.len(), |l| l.min(digits.len()));
    let mut out = vec![0u8; n * h * w];
    out.par_chunks_mut(h * w).enumerate().with_min_len(64).for_each_init(
        || vec![0u8; 2 * h * w],
        |scratch, (i, o)| {
            let mut rng = Rng::stream(seed ^ kind.salt(), base.wrapping_add(i as u64));
            let (src, rot) = scratch.split_at_mut(h * w);
            digits.image_u8(i).copy_to(src);
            let digit: &[u8] = if kind.rotates() {
                let theta = rng.uniform() * std::f64::consts::TAU;
                rotate_bilinear(src, h, w, theta, rot);
                rot
            } else {
                src
            };
            match kind {
                Variation::Rot => o.copy_from_slice(digit),
                Variation::BackRand => {
                    for (k, v) in o.iter_mut().enumerate() {
                        let noise = (rng.uniform() * 255.0).round() as u8;
                        *v = if digit[k] == 0 { noise } else { digit[k] };
                    }
                }
                Variation::BackImage | Variation::RotBackImage => {
                    let b = bg.expect("checked above");
                    let [_, bh, bw] = b.image_shape();
                    let j = rng.below(b.len() as u64) as usize;
                    let (oy, ox) = (rng.below((bh - h + 1) as u64) as usize, rng.below((bw - w + 1) as u64) as usize);
                    let view = b.image_u8(j);
                    for y in 0..h {
                        for x in 0..w {
                            let k = y * w + x;
                            o[k] = if digit[k] == 0 { gray(&view, oy + y, ox + x) } else { digit[k] };
                        }
                    }
                }
            }
        },
    );
    out
}

/// Writes `kinds` of MNIST variations of `mnist` (train and test) under `out/<name>/` as
/// `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
/// `t10k-labels-idx1-ubyte`, plus a `README.txt` recording how they were made. Returns the
/// files written.
///
/// # Errors
/// [`DataError::Io`](crate::DataError::Io) if a directory or file cannot be written.
/// **Panics** as [`generate`] (a background-needing kind without backgrounds).
pub fn write_variations<B: Dataset + ?Sized>(
    mnist: &Split,
    backgrounds: Option<&B>,
    background_source: &str,
    out: &Path,
    kinds: &[Variation],
    seed: u64,
    limit: Option<usize>,
) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for &kind in kinds {
        let dir = out.join(kind.name());
        std::fs::create_dir_all(&dir).map_err(|e| crate::DataError::io(&dir, "create directory", e))?;
        for (prefix, set, base) in [("train", &mnist.train, 0), ("t10k", &mnist.test, TEST_STREAM_BASE)] {
            let [_, h, w] = set.image_shape();
            let px = generate(kind, set, backgrounds, seed, base, limit);
            let n = px.len() / (h * w);
            let labels: Vec<u8> = (0..n).map(|i| set.label(i) as u8).collect();
            let ip = dir.join(format!("{prefix}-images-idx3-ubyte"));
            let lp = dir.join(format!("{prefix}-labels-idx1-ubyte"));
            write_idx_images(&ip, &px, h, w)?;
            write_idx_labels(&lp, &labels)?;
            written.push(ip);
            written.push(lp);
        }
        let readme = dir.join("README.txt");
        let text = format!(
            "{} generated by sparsegrad-datasets (variations.rs) from {} (train) and {} (test).\n\
             seed {seed}, limit {}, stream bases 0 (train) and {TEST_STREAM_BASE} (test).\n\
             backgrounds: {}\n",
            kind.name(),
            mnist.train.name(),
            mnist.test.name(),
            limit.map_or("none".to_string(), |l| l.to_string()),
            if kind.needs_backgrounds() { background_source } else { "not used" },
        );
        std::fs::write(&readme, text).map_err(|e| crate::DataError::io(&readme, "write", e))?;
        written.push(readme);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ImageSet;

    fn digits() -> ImageSet {
        // 3 images of 1×5×5, each a centred plus sign of value 200 (9 pixels, mass 1800)
        let mut px = vec![0u8; 3 * 25];
        for i in 0..3 {
            for k in 0..5 {
                px[i * 25 + 2 * 5 + k] = 200;
                px[i * 25 + k * 5 + 2] = 200;
            }
        }
        ImageSet::from_vec("d", px, [1, 5, 5], vec![1, 2, 3], (0..10).map(|d| d.to_string()).collect())
    }

    #[test]
    fn rotation_by_quarter_turns_is_exact() {
        // 3×3 with a single bright pixel at (0, 1) (top middle).
        let mut src = [0u8; 9];
        src[1] = 100;
        let mut out = [0u8; 9];
        rotate_bilinear(&src, 3, 3, 0.0, &mut out);
        assert_eq!(out, src);
        rotate_bilinear(&src, 3, 3, std::f64::consts::PI, &mut out);
        assert_eq!(out[7], 100, "half turn moves top-middle to bottom-middle: {out:?}");
        rotate_bilinear(&src, 3, 3, std::f64::consts::FRAC_PI_2, &mut out);
        assert_eq!(out.iter().filter(|&&v| v == 100).count(), 1);
        assert!(out[3] == 100 || out[5] == 100, "quarter turn moves it to the middle of a side: {out:?}");
        // Half a pixel between two source pixels: bilinear average.
        let src2 = [0u8, 100, 200, 0];
        let mut o2 = [0u8; 4];
        rotate_bilinear(&src2, 1, 4, std::f64::consts::PI, &mut o2);
        assert_eq!(o2, [0, 200, 100, 0]);
    }

    #[test]
    fn variations_keep_the_digit_and_fill_only_the_background() {
        let d = digits();
        let bg = ImageSet::from_vec(
            "bg",
            (0..2 * 3 * 36).map(|i| (i % 251) as u8).collect(),
            [3, 6, 6],
            vec![0, 0],
            vec!["x".into()],
        );
        let br = generate(Variation::BackRand, &d, None::<&ImageSet>, 1, 0, None);
        let bi = generate(Variation::BackImage, &d, Some(&bg), 1, 0, None);
        for i in 0..3 {
            let orig = d.image_u8(i).to_vec();
            for k in 0..25 {
                if orig[k] != 0 {
                    assert_eq!(br[i * 25 + k], orig[k]);
                    assert_eq!(bi[i * 25 + k], orig[k]);
                }
            }
        }
        assert!(br.iter().filter(|&&v| v != 0 && v != 200).count() > 30, "noise present");
        // Deterministic and seed-dependent, and independent of limit.
        assert_eq!(br, generate(Variation::BackRand, &d, None::<&ImageSet>, 1, 0, None));
        assert_ne!(br, generate(Variation::BackRand, &d, None::<&ImageSet>, 2, 0, None));
        assert_eq!(br[..50], generate(Variation::BackRand, &d, None::<&ImageSet>, 1, 0, Some(2))[..]);
        // Rotation preserves most of the mass of a centred plus sign.
        let r = generate(Variation::Rot, &d, None::<&ImageSet>, 3, 0, None);
        let mass: u32 = r[..25].iter().map(|&v| v as u32).sum();
        assert!(mass > 1200 && mass < 2000, "mass {mass} vs 1800 before rotation");
    }

    #[test]
    fn names_round_trip() {
        for v in Variation::ALL {
            assert_eq!(Variation::parse(v.name()), Some(v));
            assert_eq!(Variation::parse(&v.name()[6..]), Some(v));
        }
        assert_eq!(Variation::parse("rotten"), None);
    }
}
