//! A small genuine MNIST subset compiled into the crate: 1,000 training and 1,000 test images
//! (100 per class), the default data when no data directory is given.
//!
//! The files are `datasets/data/mnist-subset/{train,t10k}-{images-idx3,labels-idx1}-ubyte`,
//! uncompressed IDX, so the subset works without the `gzip` feature. They were made by
//! [`write_subset`] from the original MNIST files; the selection rule is
//! [`stratified_indices`] with `k = 100` and seed [`SUBSET_SEED`] on each split, images kept in
//! their original order. See `datasets/data/mnist-subset/README.md` for provenance, citation
//! and licence.

use std::path::Path;
use std::sync::OnceLock;

use crate::dataset::{Dataset, Split};
use crate::error::Result;
use crate::idx::{image_set_from_static, write_idx_images, write_idx_labels, Mnist};
use crate::supervision::stratified_indices;

/// Seed of the stratified selection.
pub const SUBSET_SEED: u64 = 20_261_123;

/// Images per class in each split.
pub const PER_CLASS: usize = 100;

static TRAIN_IMAGES: &[u8] = include_bytes!("../data/mnist-subset/train-images-idx3-ubyte");
static TRAIN_LABELS: &[u8] = include_bytes!("../data/mnist-subset/train-labels-idx1-ubyte");
static TEST_IMAGES: &[u8] = include_bytes!("../data/mnist-subset/t10k-images-idx3-ubyte");
static TEST_LABELS: &[u8] = include_bytes!("../data/mnist-subset/t10k-labels-idx1-ubyte");

/// The embedded subset: `train` and `test` of 1,000 images each (1×28×28, 100 per digit).
/// The bytes are parsed once; later calls return cheap clones sharing the pixels and the
/// normalisation statistics (computed from the 1,000 training images).
pub fn mnist_subset() -> Split {
    static SUBSET: OnceLock<Split> = OnceLock::new();
    SUBSET
        .get_or_init(|| {
            // The files are validated by this crate's tests; failing here means the crate was
            // built from a corrupted checkout.
            let train = image_set_from_static("mnist-subset/train", TRAIN_IMAGES, TRAIN_LABELS, Mnist::class_names())
                .expect("embedded MNIST subset (train) is a valid IDX pair");
            let test = image_set_from_static("mnist-subset/test", TEST_IMAGES, TEST_LABELS, Mnist::class_names())
                .expect("embedded MNIST subset (test) is a valid IDX pair");
            Split::new(train, test, None)
        })
        .clone()
}

/// The raw embedded files as `(name, bytes)`, in the order train images, train labels, test
/// images, test labels.
pub fn files() -> [(&'static str, &'static [u8]); 4] {
    [
        ("train-images-idx3-ubyte", TRAIN_IMAGES),
        ("train-labels-idx1-ubyte", TRAIN_LABELS),
        ("t10k-images-idx3-ubyte", TEST_IMAGES),
        ("t10k-labels-idx1-ubyte", TEST_LABELS),
    ]
}

/// Indices chosen from the full MNIST `train` and `test` splits:
/// [`stratified_indices`]`(split, PER_CLASS, SUBSET_SEED)` for each.
///
/// # Errors
/// [`DataError::Insufficient`](crate::DataError::Insufficient) if a class has fewer than 100
/// images.
pub fn select(mnist: &Split) -> Result<(Vec<usize>, Vec<usize>)> {
    Ok((
        stratified_indices(&mnist.train, PER_CLASS, SUBSET_SEED)?.0,
        stratified_indices(&mnist.test, PER_CLASS, SUBSET_SEED)?.0,
    ))
}

/// Writes the subset of `mnist` chosen by [`select`] to `out` as four uncompressed IDX files
/// with the standard names (this is how the embedded files were made).
///
/// # Errors
/// As [`select`], and [`DataError::Io`](crate::DataError::Io) when writing fails.
pub fn write_subset(mnist: &Split, out: &Path) -> Result<()> {
    let (tr, te) = select(mnist)?;
    for (prefix, set, idx) in [("train", &mnist.train, tr), ("t10k", &mnist.test, te)] {
        let [_, h, w] = set.image_shape();
        let mut px = Vec::with_capacity(idx.len() * h * w);
        for &i in &idx {
            px.extend_from_slice(&set.image_u8(i).to_vec());
        }
        let labels: Vec<u8> = idx.iter().map(|&i| set.label(i) as u8).collect();
        write_idx_images(&out.join(format!("{prefix}-images-idx3-ubyte")), &px, h, w)?;
        write_idx_labels(&out.join(format!("{prefix}-labels-idx1-ubyte")), &labels)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_has_100_per_class_in_each_split() {
        let s = mnist_subset();
        for set in [&s.train, &s.test] {
            assert_eq!(set.len(), 1000);
            assert_eq!(set.image_shape(), [1, 28, 28]);
            assert_eq!(set.class_counts(), vec![100; 10]);
        }
        // MNIST's mean intensity is about 0.13; a 1,000-image sample is close to it.
        let m = s.train.channel_stats().mean[0];
        assert!((m - 0.13).abs() < 0.01, "mean {m}");
        assert_eq!(s.test.channel_stats(), s.train.channel_stats());
    }
}
