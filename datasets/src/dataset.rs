//! The [`Dataset`] trait, the zero-copy [`ImageView`], per-channel [`ChannelStats`], and
//! [`ImageSet`], the one concrete data-set type every reader returns.
//!
//! An `ImageSet` is a list of images stored somewhere in one or more byte buffers (usually
//! read-only file mappings), each image at `base + j·stride` with its own element strides, plus
//! a label per image. Subsets (limited supervision, validation splits) share the buffers and
//! only hold a list of indices.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use engine::Tensor;
use rayon::prelude::*;

use crate::blob::Blob;

/// A read-only view of one image of shape `[C, H, W]` (channels, rows, columns) stored as
/// bytes: element `(c, h, w)` is `data[c·strides[0] + h·strides[1] + w·strides[2]]`.
/// For MNIST and CIFAR the view is contiguous (`strides = [H·W, W, 1]`); for SVHN MAT files,
/// which store images column-major, it is `[H·W, 1, H]`.
#[derive(Clone, Copy, Debug)]
pub struct ImageView<'a> {
    data: &'a [u8],
    shape: [usize; 3],
    strides: [usize; 3],
}

impl<'a> ImageView<'a> {
    /// A view of `data` with the given shape and element strides.
    /// **Panics** if the view would address a byte beyond `data`.
    #[track_caller]
    pub fn new(data: &'a [u8], shape: [usize; 3], strides: [usize; 3]) -> ImageView<'a> {
        let extent = extent(shape, strides);
        assert!(
            extent <= data.len(),
            "ImageView::new: shape {shape:?} with strides {strides:?} needs {extent} bytes, slice has {}",
            data.len()
        );
        ImageView { data: &data[..extent], shape, strides }
    }

    /// `[C, H, W]`.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Element strides `[c, h, w]` in bytes.
    pub fn strides(&self) -> [usize; 3] {
        self.strides
    }

    /// The bytes the view addresses, starting at pixel `(0, 0, 0)`; pixel `(c, h, w)` is at
    /// `c·strides[0] + h·strides[1] + w·strides[2]`.
    pub fn bytes(&self) -> &'a [u8] {
        self.data
    }

    /// Number of pixels `C·H·W`.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The byte at `(c, h, w)`. **Panics** when out of range.
    #[inline]
    #[track_caller]
    pub fn get(&self, c: usize, h: usize, w: usize) -> u8 {
        assert!(
            c < self.shape[0] && h < self.shape[1] && w < self.shape[2],
            "ImageView::get: ({c}, {h}, {w}) out of range for shape {:?}",
            self.shape
        );
        self.data[c * self.strides[0] + h * self.strides[1] + w * self.strides[2]]
    }

    /// The pixels as one `C·H·W` slice in CHW order, when they are stored that way (no copy).
    pub fn as_contiguous(&self) -> Option<&'a [u8]> {
        let [c, h, w] = self.shape;
        let chw = self.strides == [h * w, w, 1] || c * h * w <= 1;
        chw.then_some(self.data)
    }

    /// Copies the pixels in CHW order into `out`. **Panics** unless `out.len() == C·H·W`.
    #[track_caller]
    pub fn copy_to(&self, out: &mut [u8]) {
        assert_eq!(
            out.len(),
            self.numel(),
            "ImageView::copy_to: output has {} bytes for shape {:?}",
            out.len(),
            self.shape
        );
        if let Some(s) = self.as_contiguous() {
            out.copy_from_slice(s);
            return;
        }
        let [cn, hn, wn] = self.shape;
        let mut k = 0;
        for c in 0..cn {
            for h in 0..hn {
                for w in 0..wn {
                    out[k] = self.data[c * self.strides[0] + h * self.strides[1] + w * self.strides[2]];
                    k += 1;
                }
            }
        }
    }

    /// The pixels in CHW order (a copy).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.numel()];
        self.copy_to(&mut v);
        v
    }

    /// Sum of all pixel values.
    pub fn sum(&self) -> u64 {
        match self.as_contiguous() {
            Some(s) => s.iter().map(|&b| b as u64).sum(),
            None => self.to_vec().iter().map(|&b| b as u64).sum(),
        }
    }
}

/// Bytes spanned by a view: `1 + Σ (shape_k − 1)·stride_k` (0 for an empty shape).
fn extent(shape: [usize; 3], strides: [usize; 3]) -> usize {
    if shape.contains(&0) {
        return 0;
    }
    1 + (0..3).map(|k| (shape[k] - 1) * strides[k]).sum::<usize>()
}

/// Per-channel mean and standard deviation of pixel intensities scaled to `[0, 1]`
/// (`x / 255`), over every pixel of every image of a training split.
/// Normalisation maps `x ↦ (x/255 − mean_c) / std_c`.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelStats {
    /// Mean of `x/255` per channel.
    pub mean: Vec<f64>,
    /// Population standard deviation of `x/255` per channel (1 where the channel is constant,
    /// so that normalisation never divides by zero).
    pub std: Vec<f64>,
}

impl ChannelStats {
    /// Stats that leave intensities as `x / 255` (mean 0, std 1 per channel).
    pub fn identity(channels: usize) -> ChannelStats {
        ChannelStats { mean: vec![0.0; channels], std: vec![1.0; channels] }
    }

    /// Computes the stats over every image of `data`. Exact integer sums are combined, so the
    /// result does not depend on the number of threads.
    pub fn compute<D: Dataset + ?Sized>(data: &D) -> ChannelStats {
        let [cn, _, _] = data.image_shape();
        let chunk = 256;
        let n = data.len();
        let sums: Vec<(Vec<u64>, Vec<u64>)> = (0..n.div_ceil(chunk))
            .into_par_iter()
            .map(|k| {
                let (mut s, mut q) = (vec![0u64; cn], vec![0u64; cn]);
                for i in k * chunk..((k + 1) * chunk).min(n) {
                    accumulate(&data.image_u8(i), &mut s, &mut q);
                }
                (s, q)
            })
            .collect();
        let (mut s, mut q) = (vec![0u64; cn], vec![0u64; cn]);
        for (ps, pq) in sums {
            for c in 0..cn {
                s[c] += ps[c];
                q[c] += pq[c];
            }
        }
        let [_, h, w] = data.image_shape();
        let count = (n * h * w) as f64;
        let mut stats = ChannelStats::identity(cn);
        if count > 0.0 {
            for c in 0..cn {
                let mean = s[c] as f64 / count / 255.0;
                let var = q[c] as f64 / count / (255.0 * 255.0) - mean * mean;
                let std = var.max(0.0).sqrt();
                stats.mean[c] = mean;
                stats.std[c] = if std > 0.0 { std } else { 1.0 };
            }
        }
        stats
    }

    /// `(scale, bias)` with `normalised = byte · scale + bias` for channel `c`.
    /// **Panics** if `c` is not a channel of these stats.
    #[inline]
    #[track_caller]
    pub fn affine(&self, c: usize) -> (f32, f32) {
        assert!(c < self.mean.len(), "ChannelStats::affine: channel {c} of {}", self.mean.len());
        let (m, s) = (self.mean[c], self.std[c]);
        ((1.0 / (255.0 * s)) as f32, (-m / s) as f32)
    }
}

fn accumulate(v: &ImageView<'_>, s: &mut [u64], q: &mut [u64]) {
    let [cn, hn, wn] = v.shape();
    if let Some(px) = v.as_contiguous() {
        for (c, plane) in px.chunks_exact(hn * wn).enumerate().take(cn) {
            let (mut a, mut b) = (0u64, 0u64);
            for &x in plane {
                a += x as u64;
                b += (x as u64) * (x as u64);
            }
            s[c] += a;
            q[c] += b;
        }
        return;
    }
    for c in 0..cn {
        for h in 0..hn {
            for w in 0..wn {
                let x = v.get(c, h, w) as u64;
                s[c] += x;
                q[c] += x * x;
            }
        }
    }
}

/// A labelled image classification data set.
///
/// Indices run over `0..len()`; every accessor **panics** for an index out of range (a bug in
/// the caller, like slice indexing).
pub trait Dataset: Sync {
    /// Number of images.
    fn len(&self) -> usize;

    /// True when there are no images.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `[C, H, W]` of every image.
    fn image_shape(&self) -> [usize; 3];

    /// Class names; labels are indices into this list.
    fn class_names(&self) -> &[String];

    /// Number of classes.
    fn num_classes(&self) -> usize {
        self.class_names().len()
    }

    /// Image `i` as bytes, without copying (a view into the memory-mapped file when the file
    /// is uncompressed).
    fn image_u8(&self, i: usize) -> ImageView<'_>;

    /// Label of image `i`, in `0..num_classes()`.
    fn label(&self, i: usize) -> usize;

    /// Per-channel statistics used for normalisation: those of the training split this set
    /// belongs to, computed once on first use and cached.
    fn channel_stats(&self) -> &ChannelStats;

    /// Writes image `i` normalised with [`Dataset::channel_stats`] into `out` in CHW order.
    /// **Panics** unless `out.len() == C·H·W`.
    fn write_normalised(&self, i: usize, out: &mut [f32]) {
        let v = self.image_u8(i);
        let [cn, hn, wn] = v.shape();
        assert_eq!(
            out.len(),
            cn * hn * wn,
            "write_normalised: output has {} values for shape {:?}",
            out.len(),
            v.shape()
        );
        let st = self.channel_stats();
        let mut k = 0;
        for c in 0..cn {
            let (scale, bias) = st.affine(c);
            for h in 0..hn {
                for w in 0..wn {
                    out[k] = v.get(c, h, w) as f32 * scale + bias;
                    k += 1;
                }
            }
        }
    }

    /// Image `i` normalised as a tensor of shape `[C, H, W]`.
    fn image_f32(&self, i: usize) -> Tensor<f32> {
        let shape = self.image_shape();
        let mut v = vec![0.0f32; shape.iter().product()];
        self.write_normalised(i, &mut v);
        Tensor::from_vec(v, &shape)
    }

    /// Number of images per class (length `num_classes()`).
    fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes()];
        for i in 0..self.len() {
            counts[self.label(i)] += 1;
        }
        counts
    }
}

/// A run of images in one buffer: image `j` starts at `base + j·stride`.
pub(crate) struct Part {
    pub blob: Arc<Blob>,
    pub base: usize,
    pub stride: usize,
    pub count: usize,
}

/// The shared, immutable storage behind an [`ImageSet`].
pub(crate) struct Images {
    name: String,
    files: Vec<PathBuf>,
    parts: Vec<Part>,
    ends: Vec<usize>,
    shape: [usize; 3],
    strides: [usize; 3],
    labels: Vec<u8>,
    class_names: Vec<String>,
    coarse: Option<(Vec<u8>, Vec<String>)>,
}

/// Labels and their class names.
pub(crate) struct Labels {
    pub labels: Vec<u8>,
    pub names: Vec<String>,
}

impl Images {
    fn len(&self) -> usize {
        self.ends.last().copied().unwrap_or(0)
    }

    fn view(&self, i: usize) -> ImageView<'_> {
        let p = if self.parts.len() == 1 { 0 } else { self.ends.partition_point(|&e| e <= i) };
        let part = &self.parts[p];
        let j = i - if p == 0 { 0 } else { self.ends[p - 1] };
        let start = part.base + j * part.stride;
        ImageView::new(&part.blob.bytes()[start..], self.shape, self.strides)
    }
}

/// Computes a set's statistics on first use from the images in `from`, or holds fixed ones.
struct StatsCell {
    cell: OnceLock<ChannelStats>,
    from: Option<Arc<Images>>,
}

/// A labelled set of images: one split of a data set (or a subset of one).
///
/// Cloning is cheap (the pixels are shared). Images are `u8`; [`Dataset::image_f32`] and the
/// [`Loader`](crate::Loader) normalise them with the statistics of the training split the set
/// came from ([`Split`] arranges this; for a file opened on its own the file itself is the
/// training split unless [`ImageSet::with_stats_from`] says otherwise).
#[derive(Clone)]
pub struct ImageSet {
    images: Arc<Images>,
    index: Option<Arc<[usize]>>,
    coarse: bool,
    stats: Arc<StatsCell>,
}

impl ImageSet {
    /// Assembles a set from parsed parts. **Panics** if the parts do not fit their buffers,
    /// the label count differs from the image count or a label is out of range: the parsers
    /// check all of these against the file first, so a panic here is a bug in a parser.
    #[track_caller]
    pub(crate) fn from_parts(
        name: String,
        files: Vec<PathBuf>,
        parts: Vec<Part>,
        shape: [usize; 3],
        strides: [usize; 3],
        labels: Labels,
        coarse: Option<Labels>,
    ) -> ImageSet {
        let ext = extent(shape, strides);
        let mut ends = Vec::with_capacity(parts.len());
        let mut total = 0;
        for p in &parts {
            if p.count > 0 {
                let last = p.base + (p.count - 1) * p.stride + ext;
                assert!(
                    last <= p.blob.bytes().len(),
                    "ImageSet {name}: part needs {last} bytes, has {}",
                    p.blob.bytes().len()
                );
            }
            total += p.count;
            ends.push(total);
        }
        for l in std::iter::once(&labels).chain(coarse.as_ref()) {
            assert_eq!(l.labels.len(), total, "ImageSet {name}: {} labels for {total} images", l.labels.len());
            assert!(l.labels.iter().all(|&y| (y as usize) < l.names.len()), "ImageSet {name}: label out of range");
        }
        let images = Arc::new(Images {
            name,
            files,
            parts,
            ends,
            shape,
            strides,
            labels: labels.labels,
            class_names: labels.names,
            coarse: coarse.map(|c| (c.labels, c.names)),
        });
        let stats = Arc::new(StatsCell { cell: OnceLock::new(), from: Some(Arc::clone(&images)) });
        ImageSet { images, index: None, coarse: false, stats }
    }

    /// An in-memory set: `pixels` holds `n` images of `shape = [C, H, W]` in CHW order, one
    /// after another, with `labels[i] < class_names.len()`.
    /// **Panics** if `pixels.len() != n·C·H·W` with `n = labels.len()`, if a dimension is 0 or
    /// a label is out of range.
    #[track_caller]
    pub fn from_vec(
        name: &str,
        pixels: Vec<u8>,
        shape: [usize; 3],
        labels: Vec<u8>,
        class_names: Vec<String>,
    ) -> ImageSet {
        let size: usize = shape.iter().product();
        assert!(size > 0, "ImageSet::from_vec: empty image shape {shape:?}");
        assert_eq!(
            pixels.len(),
            labels.len() * size,
            "ImageSet::from_vec: {} bytes for {} images of shape {shape:?}",
            pixels.len(),
            labels.len()
        );
        if let Some(&y) = labels.iter().find(|&&y| y as usize >= class_names.len()) {
            panic!("ImageSet::from_vec: label {y} out of range for {} classes", class_names.len());
        }
        let count = labels.len();
        let part = Part { blob: Arc::new(Blob::Owned(pixels)), base: 0, stride: size, count };
        let strides = [shape[1] * shape[2], shape[2], 1];
        ImageSet::from_parts(
            name.to_string(),
            Vec::new(),
            vec![part],
            shape,
            strides,
            Labels { labels, names: class_names },
            None,
        )
    }

    /// A short name such as `mnist/train` or the file name it came from.
    pub fn name(&self) -> &str {
        &self.images.name
    }

    /// The files this set was read from (empty for in-memory and embedded sets).
    pub fn files(&self) -> &[PathBuf] {
        &self.images.files
    }

    /// Index of image `i` in the full split this set is a subset of (`i` itself for a whole
    /// split). **Panics** if `i >= len()`.
    #[track_caller]
    pub fn source_index(&self, i: usize) -> usize {
        let n = self.len();
        assert!(i < n, "ImageSet {}: index {i} out of range for {n} images", self.images.name);
        match &self.index {
            Some(ix) => ix[i],
            None => i,
        }
    }

    /// A subset holding images `indices` (in that order) of this set; it shares the pixels and
    /// the normalisation statistics. **Panics** if an index is out of range.
    #[track_caller]
    pub fn subset(&self, indices: &[usize]) -> ImageSet {
        let ix: Vec<usize> = indices.iter().map(|&i| self.source_index(i)).collect();
        ImageSet { index: Some(ix.into()), ..self.clone() }
    }

    /// The same images labelled with their coarse (super-class) labels, for CIFAR-100;
    /// `None` for sets without coarse labels.
    pub fn with_coarse_labels(&self) -> Option<ImageSet> {
        self.images.coarse.as_ref().map(|_| ImageSet { coarse: true, ..self.clone() })
    }

    /// Coarse label of image `i` (CIFAR-100), or `None`. **Panics** if `i >= len()`.
    #[track_caller]
    pub fn coarse_label(&self, i: usize) -> Option<usize> {
        let j = self.source_index(i);
        self.images.coarse.as_ref().map(|(l, _)| l[j] as usize)
    }

    /// Names of the coarse classes (CIFAR-100), or `None`.
    pub fn coarse_class_names(&self) -> Option<&[String]> {
        self.images.coarse.as_ref().map(|(_, n)| n.as_slice())
    }

    /// The same images, normalised with the statistics of `train` (shared, computed once).
    pub fn with_stats_from(&self, train: &ImageSet) -> ImageSet {
        ImageSet { stats: Arc::clone(&train.stats), ..self.clone() }
    }

    /// The same images, normalised with fixed statistics. **Panics** if `stats` does not have
    /// one entry per channel.
    #[track_caller]
    pub fn with_stats(&self, stats: ChannelStats) -> ImageSet {
        let c = self.images.shape[0];
        assert!(
            stats.mean.len() == c && stats.std.len() == c,
            "ImageSet::with_stats: stats for {} channels, images have {c}",
            stats.mean.len()
        );
        let cell = OnceLock::new();
        let _ = cell.set(stats);
        ImageSet { stats: Arc::new(StatsCell { cell, from: None }), ..self.clone() }
    }

    /// All labels in order.
    pub fn labels(&self) -> Vec<usize> {
        (0..self.len()).map(|i| self.label(i)).collect()
    }
}

/// A read-only `Dataset` view of [`Images`], used to compute statistics over a whole split.
struct WholeSplit<'a>(&'a Images);

impl Dataset for WholeSplit<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn image_shape(&self) -> [usize; 3] {
        self.0.shape
    }
    fn class_names(&self) -> &[String] {
        &self.0.class_names
    }
    fn image_u8(&self, i: usize) -> ImageView<'_> {
        self.0.view(i)
    }
    fn label(&self, i: usize) -> usize {
        self.0.labels[i] as usize
    }
    fn channel_stats(&self) -> &ChannelStats {
        unreachable!("WholeSplit is only used to compute statistics")
    }
}

impl Dataset for ImageSet {
    fn len(&self) -> usize {
        match &self.index {
            Some(ix) => ix.len(),
            None => self.images.len(),
        }
    }

    fn image_shape(&self) -> [usize; 3] {
        self.images.shape
    }

    fn class_names(&self) -> &[String] {
        match (&self.images.coarse, self.coarse) {
            (Some((_, names)), true) => names,
            _ => &self.images.class_names,
        }
    }

    fn image_u8(&self, i: usize) -> ImageView<'_> {
        self.images.view(self.source_index(i))
    }

    fn label(&self, i: usize) -> usize {
        let j = self.source_index(i);
        match (&self.images.coarse, self.coarse) {
            (Some((l, _)), true) => l[j] as usize,
            _ => self.images.labels[j] as usize,
        }
    }

    fn channel_stats(&self) -> &ChannelStats {
        self.stats.cell.get_or_init(|| {
            let from = self.stats.from.as_ref().expect("fixed stats are set at construction");
            ChannelStats::compute(&WholeSplit(from))
        })
    }
}

impl std::fmt::Debug for ImageSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ImageSet({}, {} images of {:?}, {} classes)",
            self.name(),
            self.len(),
            self.image_shape(),
            self.num_classes()
        )
    }
}

/// The splits of a data set. `test` and `extra` are normalised with `train`'s statistics.
#[derive(Clone, Debug)]
pub struct Split {
    /// The training split.
    pub train: ImageSet,
    /// The test split.
    pub test: ImageSet,
    /// SVHN's `extra` split, when present.
    pub extra: Option<ImageSet>,
}

impl Split {
    /// Pairs `train` and `test`, making `test` (and `extra`) use `train`'s statistics.
    pub fn new(train: ImageSet, test: ImageSet, extra: Option<ImageSet>) -> Split {
        let test = test.with_stats_from(&train);
        let extra = extra.map(|e| e.with_stats_from(&train));
        Split { train, test, extra }
    }

    /// The training split.
    pub fn train(&self) -> &ImageSet {
        &self.train
    }

    /// The test split.
    pub fn test(&self) -> &ImageSet {
        &self.test
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| i.to_string()).collect()
    }

    #[test]
    fn strided_view_reads_column_major_storage() {
        // 2 channels of a 2×3 image stored column-major per channel: (c, h, w) at c·6 + h + 2w.
        let data: Vec<u8> = (0..12).collect();
        let v = ImageView::new(&data, [2, 2, 3], [6, 1, 2]);
        assert!(v.as_contiguous().is_none());
        assert_eq!(v.get(0, 1, 2), 5);
        assert_eq!(v.get(1, 0, 1), 8);
        assert_eq!(v.to_vec(), vec![0, 2, 4, 1, 3, 5, 6, 8, 10, 7, 9, 11]);
        assert_eq!(v.sum(), 66);
    }

    #[test]
    fn stats_are_exact_for_a_hand_computed_set() {
        // Two 1×1×2 images: pixels {0, 255} and {255, 255}. x/255 values: 0, 1, 1, 1.
        // mean = 3/4, E[x²] = 3/4, var = 3/4 − 9/16 = 3/16, std = √3/4.
        let s = ImageSet::from_vec("t", vec![0, 255, 255, 255], [1, 1, 2], vec![0, 1], names(2));
        let st = s.channel_stats();
        assert_eq!(st.mean, vec![0.75]);
        assert!((st.std[0] - 3f64.sqrt() / 4.0).abs() < 1e-15);
        let t = s.image_f32(0).to_vec();
        let z = |x: f64| ((x - 0.75) / (3f64.sqrt() / 4.0)) as f32;
        assert!((t[0] - z(0.0)).abs() < 1e-6 && (t[1] - z(1.0)).abs() < 1e-6, "{t:?}");
    }

    #[test]
    fn subset_maps_indices_and_shares_stats() {
        let px: Vec<u8> = (0..6).collect();
        let s = ImageSet::from_vec("t", px, [1, 1, 2], vec![0, 1, 2], names(3));
        let sub = s.subset(&[2, 0]);
        assert_eq!(sub.len(), 2);
        assert_eq!(sub.label(0), 2);
        assert_eq!(sub.image_u8(0).to_vec(), vec![4, 5]);
        assert_eq!(sub.subset(&[1]).source_index(0), 0);
        assert_eq!(sub.channel_stats(), s.channel_stats(), "subset must use the full split's stats");
        assert_eq!(s.class_counts(), vec![1, 1, 1]);
    }

    #[test]
    fn split_shares_train_stats_with_test() {
        let train = ImageSet::from_vec("a", vec![0, 255], [1, 1, 1], vec![0, 0], names(1));
        let test = ImageSet::from_vec("b", vec![10], [1, 1, 1], vec![0], names(1));
        let sp = Split::new(train, test, None);
        assert_eq!(sp.test.channel_stats().mean, vec![0.5]);
    }

    #[test]
    #[should_panic(expected = "index 3 out of range for 3 images")]
    fn out_of_range_index_panics_with_message() {
        let s = ImageSet::from_vec("t", vec![0; 3], [1, 1, 1], vec![0; 3], names(1));
        let _ = s.label(3);
    }
}
