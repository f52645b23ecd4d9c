//! The batch [`Loader`]: seeded shuffling, fixed-size batches as `[N, C, H, W]` f32 tensors
//! filled in parallel into one reused buffer, optional augmentation and noise.
//!
//! Per sample, in this order: read the `u8` pixels; augment (random crop from the image padded
//! with `p` zero pixels on every side, then a horizontal flip with probability ½); scale to
//! `u = x/255`; corrupt with noise; normalise `(u − mean_c)/std_c` with the training split's
//! [`ChannelStats`](crate::ChannelStats) (or leave `u` as is when normalisation is off).
//!
//! Randomness: the order of epoch `e` comes from `Rng::stream(seed ^ SHUFFLE_SALT, e)`; sample
//! `i` of epoch `e` draws its crop offsets, flip and noise from
//! `Rng::stream(seed, e·len + i)`, in that order. Results therefore do not depend on the
//! number of threads, the batch size or the order samples are visited in.

use std::sync::Arc;

use engine::{Layout, Rng, Tensor};

use crate::dataset::{Dataset, ImageView};

/// Mixed into the seed of the shuffling stream so it differs from the per-sample streams.
pub const SHUFFLE_SALT: u64 = 0x5348_5546_464c_4531; // "SHUFFLE1"

/// Random crop and flip, as commonly used for CIFAR and SVHN.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Augment {
    /// Zero pixels added on each side before a random crop back to the original size
    /// (0 = no crop). The offset is uniform in `0..=2p` on each axis.
    pub crop_padding: usize,
    /// Mirror left–right with probability ½.
    pub hflip: bool,
}

impl Augment {
    /// No augmentation.
    pub fn none() -> Augment {
        Augment::default()
    }

    /// The usual CIFAR recipe: 4-pixel padding, random crop, horizontal flip.
    pub fn crop_flip(padding: usize) -> Augment {
        Augment { crop_padding: padding, hflip: true }
    }

    fn is_none(&self) -> bool {
        self.crop_padding == 0 && !self.hflip
    }
}

/// Noise added to intensities `u ∈ [0, 1]` before normalisation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Noise {
    /// No corruption.
    #[default]
    None,
    /// `u + σ·n`, `n ~ N(0, 1)`, clipped to `[0, 1]` when `clip`.
    Gaussian {
        /// Standard deviation σ ≥ 0, in units of the intensity range `[0, 1]`.
        sigma: f32,
        /// Clip the result to `[0, 1]`.
        clip: bool,
    },
    /// Shot noise: `Poisson(peak·u) / peak` (smaller `peak` is noisier).
    Poisson {
        /// Expected photon count at intensity 1 (> 0).
        peak: f32,
    },
}

impl Noise {
    /// Applies the noise to one intensity, drawing from `rng`.
    #[inline]
    pub fn apply(&self, u: f32, rng: &mut Rng) -> f32 {
        match *self {
            Noise::None => u,
            Noise::Gaussian { sigma, clip } => {
                let v = u + sigma * rng.normal() as f32;
                if clip {
                    v.clamp(0.0, 1.0)
                } else {
                    v
                }
            }
            Noise::Poisson { peak } => (rng.poisson((peak * u) as f64) as f64 / peak as f64) as f32,
        }
    }

    #[track_caller]
    fn validate(&self) {
        match *self {
            Noise::None => {}
            Noise::Gaussian { sigma, .. } => {
                assert!(
                    sigma.is_finite() && sigma >= 0.0,
                    "Loader: Gaussian noise needs a finite sigma >= 0, got {sigma}"
                )
            }
            Noise::Poisson { peak } => {
                assert!(peak.is_finite() && peak > 0.0, "Loader: Poisson noise needs a finite peak > 0, got {peak}")
            }
        }
    }
}

/// Settings of a [`Loader`]. Build with [`LoaderConfig::new`] and the chained setters.
#[derive(Clone, Debug, PartialEq)]
pub struct LoaderConfig {
    /// Samples per batch (> 0).
    pub batch_size: usize,
    /// Shuffle every epoch (otherwise dataset order).
    pub shuffle: bool,
    /// Drop a last batch smaller than `batch_size`.
    pub drop_last: bool,
    /// Seed of every random choice.
    pub seed: u64,
    /// Crop / flip augmentation.
    pub augment: Augment,
    /// Noise corruption.
    pub noise: Noise,
    /// Normalise with the training split's per-channel statistics (otherwise `x/255`).
    pub normalise: bool,
    /// Also return the noise-free (but augmented) batch as [`Batch::clean`].
    pub keep_clean: bool,
}

impl LoaderConfig {
    /// Shuffled, normalised batches of `batch_size`, seed 0, keeping the last partial batch,
    /// no augmentation or noise.
    pub fn new(batch_size: usize) -> LoaderConfig {
        LoaderConfig {
            batch_size,
            shuffle: true,
            drop_last: false,
            seed: 0,
            augment: Augment::none(),
            noise: Noise::None,
            normalise: true,
            keep_clean: false,
        }
    }

    /// Sets the seed.
    pub fn seed(mut self, seed: u64) -> LoaderConfig {
        self.seed = seed;
        self
    }

    /// Turns shuffling on or off.
    pub fn shuffle(mut self, on: bool) -> LoaderConfig {
        self.shuffle = on;
        self
    }

    /// Drops (or keeps) a smaller last batch.
    pub fn drop_last(mut self, on: bool) -> LoaderConfig {
        self.drop_last = on;
        self
    }

    /// Sets the augmentation.
    pub fn augment(mut self, a: Augment) -> LoaderConfig {
        self.augment = a;
        self
    }

    /// Sets the noise.
    pub fn noise(mut self, n: Noise) -> LoaderConfig {
        self.noise = n;
        self
    }

    /// Turns normalisation on or off.
    pub fn normalise(mut self, on: bool) -> LoaderConfig {
        self.normalise = on;
        self
    }

    /// Also returns the noise-free batch.
    pub fn keep_clean(mut self, on: bool) -> LoaderConfig {
        self.keep_clean = on;
        self
    }
}

/// One batch: `x` of shape `[n, C, H, W]`, the labels, and the dataset indices of the samples.
#[derive(Clone, Debug)]
pub struct Batch {
    /// The (augmented, noisy, normalised) images.
    pub x: Tensor<f32>,
    /// Labels, `y[k] = label(indices[k])`.
    pub y: Vec<u8>,
    /// Dataset index of each sample.
    pub indices: Vec<usize>,
    /// The same samples without noise (same augmentation), when `keep_clean` is set.
    pub clean: Option<Tensor<f32>>,
}

impl Batch {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// True for an empty batch (never produced by the loader).
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

/// Produces batches of a [`Dataset`]. See the module docs for the order of operations and how
/// randomness is derived.
pub struct Loader<'d, D: Dataset + ?Sized> {
    data: &'d D,
    cfg: LoaderConfig,
}

impl<D: Dataset + ?Sized> Clone for Loader<'_, D> {
    fn clone(&self) -> Self {
        Loader { data: self.data, cfg: self.cfg.clone() }
    }
}

impl<'d, D: Dataset + ?Sized> Loader<'d, D> {
    /// A loader over `data`. **Panics** if `batch_size` is 0, if a noise parameter is invalid,
    /// or if labels do not fit in a byte (more than 256 classes).
    #[track_caller]
    pub fn new(data: &'d D, cfg: LoaderConfig) -> Loader<'d, D> {
        assert!(cfg.batch_size > 0, "Loader: batch_size must be positive");
        assert!(
            data.num_classes() <= 256,
            "Loader: {} classes do not fit the u8 labels of a Batch",
            data.num_classes()
        );
        cfg.noise.validate();
        Loader { data, cfg }
    }

    /// The settings.
    pub fn config(&self) -> &LoaderConfig {
        &self.cfg
    }

    /// Batches per epoch.
    pub fn num_batches(&self) -> usize {
        let (n, b) = (self.data.len(), self.cfg.batch_size);
        if self.cfg.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// The order samples are visited in during `epoch` (a permutation of `0..len`).
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.data.len()).collect();
        if self.cfg.shuffle {
            Rng::stream(self.cfg.seed ^ SHUFFLE_SALT, epoch).shuffle(&mut order);
        }
        order
    }

    /// Fills `x` (and `clean`, if given) with samples `indices` of `epoch`, in parallel, in
    /// `[n, C, H, W]` order. No allocation happens per sample.
    /// **Panics** if a buffer's length is not `indices.len()·C·H·W` or an index is out of range.
    #[track_caller]
    pub fn fill(&self, epoch: u64, indices: &[usize], x: &mut [f32], clean: Option<&mut [f32]>) {
        let shape = self.data.image_shape();
        let sample: usize = shape.iter().product();
        let want = indices.len() * sample;
        assert_eq!(
            x.len(),
            want,
            "Loader::fill: buffer of {} values for {} samples of {shape:?}",
            x.len(),
            indices.len()
        );
        let (c, len) = (shape[0], self.data.len() as u64);
        // (scale, bias) per channel: normalised = byte · scale + bias
        let affine: Vec<(f32, f32)> = if self.cfg.normalise {
            let st = self.data.channel_stats();
            (0..c).map(|k| st.affine(k)).collect()
        } else {
            vec![(1.0 / 255.0, 0.0); c]
        };
        let plain = self.cfg.augment.is_none() && self.cfg.noise == Noise::None;
        let one = |k: usize, xo: &mut [f32], co: Option<&mut [f32]>| {
            let i = indices[k];
            let view = self.data.image_u8(i);
            if plain {
                plain_fill(&view, &affine, xo);
                if let Some(co) = co {
                    co.copy_from_slice(xo);
                }
            } else {
                let mut rng = Rng::stream(self.cfg.seed, epoch.wrapping_mul(len).wrapping_add(i as u64));
                self.augmented(&view, &affine, &mut rng, xo, co);
            }
        };
        const MIN: usize = 16;
        match clean {
            Some(cb) => {
                assert_eq!(
                    cb.len(),
                    want,
                    "Loader::fill: clean buffer of {} values for {} samples",
                    cb.len(),
                    indices.len()
                );
                // Groups of MIN samples per task.
                engine::par::chunks2_mut(x, sample * MIN, cb, sample * MIN, &|g, xs, cs| {
                    for (j, (xo, co)) in xs.chunks_mut(sample).zip(cs.chunks_mut(sample)).enumerate() {
                        one(g * MIN + j, xo, Some(co));
                    }
                });
            }
            None => engine::par::chunks_mut(x, sample * MIN, &|g, xs| {
                for (j, xo) in xs.chunks_mut(sample).enumerate() {
                    one(g * MIN + j, xo, None);
                }
            }),
        }
    }

    /// Crop, flip and noise for one sample (see the module docs for the order of draws).
    fn augmented(
        &self,
        v: &ImageView<'_>,
        affine: &[(f32, f32)],
        rng: &mut Rng,
        xo: &mut [f32],
        co: Option<&mut [f32]>,
    ) {
        let [cn, hn, wn] = v.shape();
        let [s0, s1, s2] = v.strides();
        let data = v.bytes();
        let p = self.cfg.augment.crop_padding;
        let (dy, dx) =
            if p > 0 { (rng.below(2 * p as u64 + 1) as usize, rng.below(2 * p as u64 + 1) as usize) } else { (p, p) };
        let flip = self.cfg.augment.hflip && rng.uniform() < 0.5;
        // Pass 1: the cropped, flipped bytes as f32 (padding reads 0).
        // Output (h, w) reads source row h + dy − p, column (w, mirrored if flipped) + dx − p.
        for (c, plane) in xo.chunks_exact_mut(hn * wn).enumerate().take(cn) {
            for (h, row) in plane.chunks_exact_mut(wn).enumerate() {
                let Some(r) = (h + dy).checked_sub(p).filter(|&r| r < hn) else {
                    row.fill(0.0);
                    continue;
                };
                let base = c * s0 + r * s1;
                for (w, o) in row.iter_mut().enumerate() {
                    let ww = if flip { wn - 1 - w } else { w };
                    *o = match (ww + dx).checked_sub(p).filter(|&q| q < wn) {
                        Some(q) => data[base + q * s2] as f32,
                        None => 0.0,
                    };
                }
            }
        }
        // Pass 2: the clean copy, then noise on u = byte/255, then normalisation.
        let noise = self.cfg.noise;
        let mut co = co;
        for (c, plane) in xo.chunks_exact_mut(hn * wn).enumerate().take(cn) {
            let (s, b) = affine[c];
            if let Some(co) = co.as_deref_mut() {
                for (o, &x) in co[c * hn * wn..(c + 1) * hn * wn].iter_mut().zip(plane.iter()) {
                    *o = x * s + b;
                }
            }
            if noise == Noise::None {
                plane.iter_mut().for_each(|x| *x = *x * s + b);
            } else {
                plane.iter_mut().for_each(|x| *x = noise.apply(*x / 255.0, rng) * (255.0 * s) + b);
            }
        }
    }

    /// The batches of `epoch`, in order. One buffer is allocated for the epoch and reused for
    /// every batch, provided the previous batch's tensors have been dropped before the next
    /// one is requested (as in a `for` loop); otherwise a fresh buffer is allocated.
    pub fn epoch(&self, epoch: u64) -> Batches<'d, D> {
        let sample: usize = self.data.image_shape().iter().product();
        let cap = self.cfg.batch_size.min(self.data.len()) * sample;
        Batches {
            loader: self.clone(),
            epoch,
            order: self.order(epoch),
            pos: 0,
            remaining: self.num_batches(),
            x: Arc::new(vec![0.0; cap]),
            clean: self.cfg.keep_clean.then(|| Arc::new(vec![0.0; cap])),
        }
    }
}

/// `out = byte · scale_c + bias_c` in CHW order, without augmentation or noise.
fn plain_fill(v: &ImageView<'_>, affine: &[(f32, f32)], out: &mut [f32]) {
    let [_, hn, wn] = v.shape();
    let plane = hn * wn;
    match v.as_contiguous() {
        Some(px) => {
            for ((o, p), &(s, b)) in out.chunks_exact_mut(plane).zip(px.chunks_exact(plane)).zip(affine) {
                for (o, &x) in o.iter_mut().zip(p) {
                    *o = x as f32 * s + b;
                }
            }
        }
        None => {
            let [s0, s1, s2] = v.strides();
            let data = v.bytes();
            for (c, (o, &(s, b))) in out.chunks_exact_mut(plane).zip(affine).enumerate() {
                for (h, row) in o.chunks_exact_mut(wn).enumerate() {
                    for (w, o) in row.iter_mut().enumerate() {
                        *o = data[c * s0 + h * s1 + w * s2] as f32 * s + b;
                    }
                }
            }
        }
    }
}

/// Iterator over the batches of one epoch; see [`Loader::epoch`].
pub struct Batches<'d, D: Dataset + ?Sized> {
    loader: Loader<'d, D>,
    epoch: u64,
    order: Vec<usize>,
    pos: usize,
    remaining: usize,
    x: Arc<Vec<f32>>,
    clean: Option<Arc<Vec<f32>>>,
}

/// `buf` itself when no batch still holds it, else a fresh buffer of the same size.
fn reuse(buf: &mut Arc<Vec<f32>>) -> &mut Vec<f32> {
    if Arc::get_mut(buf).is_none() {
        *buf = Arc::new(vec![0.0; buf.len()]);
    }
    Arc::get_mut(buf).expect("buffer is unique")
}

impl<D: Dataset + ?Sized> Iterator for Batches<'_, D> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let b = self.loader.cfg.batch_size.min(self.order.len() - self.pos);
        let indices = self.order[self.pos..self.pos + b].to_vec();
        self.pos += b;
        let shape = self.loader.data.image_shape();
        let n = b * shape.iter().product::<usize>();
        let x = &mut reuse(&mut self.x)[..n];
        let clean = self.clean.as_mut().map(|c| &mut reuse(c)[..n]);
        self.loader.fill(self.epoch, &indices, x, clean);
        let layout = Layout::contiguous(&[b, shape[0], shape[1], shape[2]]);
        let y = indices.iter().map(|&i| self.loader.data.label(i) as u8).collect();
        Some(Batch {
            x: Tensor::from_storage(Arc::clone(&self.x), layout.clone()),
            y,
            indices,
            clean: self.clean.as_ref().map(|c| Tensor::from_storage(Arc::clone(c), layout)),
        })
    }

    /// Skips `n` batches without filling them (every batch but the last is full), so a
    /// resumed run starts mid-epoch at no cost.
    fn nth(&mut self, n: usize) -> Option<Batch> {
        let skip = n.min(self.remaining);
        self.remaining -= skip;
        self.pos = (self.pos + skip * self.loader.cfg.batch_size).min(self.order.len());
        if skip < n {
            return None;
        }
        self.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<D: Dataset + ?Sized> ExactSizeIterator for Batches<'_, D> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ImageSet;

    /// 10 images of 1×2×3 with pixel p of image i = 10i + p, labels i % 3.
    fn tiny() -> ImageSet {
        let px: Vec<u8> = (0..10).flat_map(|i| (0..6).map(move |p| (10 * i + p) as u8)).collect();
        ImageSet::from_vec(
            "tiny",
            px,
            [1, 2, 3],
            (0..10).map(|i| (i % 3) as u8).collect(),
            vec!["a".into(), "b".into(), "c".into()],
        )
    }

    #[test]
    fn epoch_covers_every_sample_once_with_the_right_shapes() {
        let d = tiny();
        let l = Loader::new(&d, LoaderConfig::new(4).seed(3).normalise(false));
        let batches: Vec<Batch> = l.epoch(0).collect();
        assert_eq!(batches.iter().map(|b| b.len()).collect::<Vec<_>>(), vec![4, 4, 2]);
        assert_eq!(batches[2].x.shape(), &[2, 1, 2, 3]);
        let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
        assert_ne!(seen, (0..10).collect::<Vec<_>>(), "shuffled");
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        for b in &batches {
            let xs = b.x.to_vec();
            for (k, &i) in b.indices.iter().enumerate() {
                assert_eq!(b.y[k] as usize, i % 3);
                // pixel 4 of image i is 10i + 4, scaled by 1/255
                assert!((xs[k * 6 + 4] - (10 * i + 4) as f32 / 255.0).abs() < 1e-7);
            }
        }
        let dl = Loader::new(&d, LoaderConfig::new(4).drop_last(true));
        assert_eq!(dl.epoch(0).count(), 2);
        assert_ne!(l.order(0), l.order(1), "each epoch has its own order");
    }

    #[test]
    fn nth_skips_batches_without_changing_them() {
        let d = tiny();
        let l = Loader::new(&d, LoaderConfig::new(4).seed(5).augment(Augment::crop_flip(1)));
        let all: Vec<Batch> = l.epoch(2).collect();
        for (k, a) in all.iter().enumerate() {
            let b = l.epoch(2).nth(k).unwrap();
            assert_eq!((&b.indices, b.x.to_vec()), (&a.indices, a.x.to_vec()), "batch {k}");
        }
        let mut it = l.epoch(2);
        assert_eq!(it.nth(1).unwrap().indices, all[1].indices);
        assert_eq!(it.next().unwrap().indices, all[2].indices);
        assert!(it.next().is_none());
        assert!(l.epoch(2).nth(3).is_none());
        assert!(l.epoch(2).nth(9).is_none());
    }

    #[test]
    fn buffer_is_reused_when_the_previous_batch_was_dropped() {
        let d = tiny();
        let l = Loader::new(&d, LoaderConfig::new(3));
        let mut it = l.epoch(0);
        let a = it.next().unwrap();
        let p = a.x.storage().as_ptr();
        drop(a);
        let b = it.next().unwrap();
        assert_eq!(b.x.storage().as_ptr(), p, "same buffer");
        let c = it.next().unwrap();
        assert_ne!(c.x.storage().as_ptr(), b.x.storage().as_ptr(), "b still alive: new buffer");
        assert_ne!(b.x.to_vec(), c.x.to_vec());
    }

    #[test]
    fn normalisation_uses_training_stats() {
        let d = tiny();
        let st = d.channel_stats().clone();
        let l = Loader::new(&d, LoaderConfig::new(10).shuffle(false));
        let b = l.epoch(0).next().unwrap();
        let want = ((11.0 / 255.0) - st.mean[0]) / st.std[0]; // image 1, pixel 1 = 10·1 + 1
        assert!((b.x.to_vec()[6 + 1] as f64 - want).abs() < 1e-5);
        assert_eq!(b.x.to_vec()[..6], d.image_f32(0).to_vec()[..]);
    }

    #[test]
    fn crop_and_flip_move_pixels_as_stated_and_do_not_depend_on_threads() {
        let d = tiny();
        let cfg = LoaderConfig::new(4).seed(9).normalise(false).augment(Augment::crop_flip(1));
        let l = Loader::new(&d, cfg.clone());
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let a: Vec<Vec<f32>> = one.install(|| l.epoch(2).map(|b| b.x.to_vec()).collect());
        let b: Vec<Vec<f32>> = l.epoch(2).map(|b| b.x.to_vec()).collect();
        assert_eq!(a, b);
        // Re-derive sample i's draws and compare the whole image.
        let batches: Vec<Batch> = Loader::new(&d, cfg.clone().batch_size_for_test(1)).epoch(2).collect();
        let mut saw_shift = false;
        for bt in batches {
            let i = bt.indices[0];
            let mut rng = Rng::stream(9, 2 * 10 + i as u64);
            let (dy, dx) = (rng.below(3) as isize, rng.below(3) as isize);
            let flip = rng.uniform() < 0.5;
            let xs = bt.x.to_vec();
            for h in 0..2isize {
                for w in 0..3isize {
                    let ww = if flip { 2 - w } else { w };
                    let (r, q) = (h + dy - 1, ww + dx - 1);
                    let want = if (0..2).contains(&r) && (0..3).contains(&q) {
                        (10 * i as isize + 3 * r + q) as f32 / 255.0
                    } else {
                        0.0
                    };
                    assert!((xs[(3 * h + w) as usize] - want).abs() < 1e-7, "sample {i} at ({h}, {w})");
                }
            }
            saw_shift |= (dy, dx) != (1, 1);
        }
        assert!(saw_shift);
    }

    #[test]
    fn noise_has_the_stated_moments_and_clean_copy_is_noise_free() {
        // A constant mid-grey set: u = 0.4 everywhere.
        let n = 200;
        let d = ImageSet::from_vec("grey", vec![102; n * 64], [1, 8, 8], vec![0; n], vec!["g".into()]);
        let cfg =
            LoaderConfig::new(n).normalise(false).keep_clean(true).noise(Noise::Gaussian { sigma: 0.1, clip: false });
        let b = Loader::new(&d, cfg).epoch(0).next().unwrap();
        let x = b.x.to_vec();
        let m = x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64;
        let var = x.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / x.len() as f64;
        assert!((m - 0.4).abs() < 0.005, "mean {m}");
        assert!((var.sqrt() - 0.1).abs() < 0.005, "std {}", var.sqrt());
        assert!(b.clean.unwrap().to_vec().iter().all(|&v| (v - 0.4).abs() < 1e-7));
        // Poisson: mean u, variance u / peak.
        let cfg = LoaderConfig::new(n).normalise(false).noise(Noise::Poisson { peak: 10.0 });
        let x = Loader::new(&d, cfg).epoch(0).next().unwrap().x.to_vec();
        let m = x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64;
        let var = x.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / x.len() as f64;
        assert!((m - 0.4).abs() < 0.01, "mean {m}");
        assert!((var - 0.04).abs() < 0.004, "var {var}");
        assert!(x.iter().all(|&v| (v * 10.0 - (v * 10.0).round()).abs() < 1e-5), "multiples of 1/peak");
    }

    impl LoaderConfig {
        fn batch_size_for_test(mut self, b: usize) -> LoaderConfig {
            self.batch_size = b;
            self
        }
    }

    #[test]
    #[should_panic(expected = "batch_size must be positive")]
    fn zero_batch_size_panics() {
        let d = tiny();
        let _ = Loader::new(&d, LoaderConfig::new(0));
    }
}
