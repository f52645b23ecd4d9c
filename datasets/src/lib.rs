//! # sparsegrad-datasets
//!
//! Memory-mapped, validated readers for the image data sets sparsegrad trains on, and the
//! tools to use them: a parallel batch loader with augmentation and noise, limited-supervision
//! subsets, MNIST variations, and a small genuine MNIST subset compiled into the crate.
//!
//! | data set | opener | files |
//! | --- | --- | --- |
//! | MNIST / Fashion-MNIST | [`Mnist::open`], [`FashionMnist::open`], [`open_idx_pair`] | IDX, plain or `.gz` |
//! | CIFAR-10 / CIFAR-100 | [`Cifar10::open`], [`Cifar100::open`], [`open_cifar_file`] | binary records |
//! | SVHN cropped digits | [`Svhn::open`], [`open_svhn_mat`] | MATLAB level-5 MAT |
//! | MNIST subset (1,000 + 1,000) | [`embedded::mnist_subset`] | compiled in |
//! | grayscale test images (DCEA denoising) | [`read_pgm`], [`open_pgm`] | PGM (`P5` 8/16-bit, `P2`) |
//!
//! Every reader returns [`ImageSet`]s (grouped in a [`Split`]), which implement [`Dataset`]:
//! images as zero-copy `u8` [`ImageView`]s into the mapped file, or normalised `f32`
//! tensors `[C, H, W]`. Single PGM images are read whole into a [`Pgm`] (or a `[1, 1, H, W]`
//! tensor in `[0, 1]`).
//!
//! ## Errors
//! Misuse (an index out of range, a batch size of 0) panics with a message naming the
//! operation. Anything that comes from a file is a [`DataError`] naming the file, the byte
//! offset and what was expected there; no input makes a reader panic or read out of bounds.
//!
//! ## Compressed files
//! `.gz` files and zlib-compressed MAT elements are inflated once into a cache file (written
//! atomically, re-validated by checksum whenever it is reused) and the cache is mapped; see
//! [`OpenOptions`] and [`CacheMode`]. Without the default `gzip` feature they are reported as
//! [`DataError::Compressed`].
//!
//! ```
//! use sparsegrad_datasets::{embedded, Dataset, Loader, LoaderConfig};
//! let mnist = embedded::mnist_subset();
//! assert_eq!((mnist.train.len(), mnist.test.len()), (1000, 1000));
//! let loader = Loader::new(&mnist.train, LoaderConfig::new(128).seed(7));
//! for batch in loader.epoch(0) {
//!     assert_eq!(&batch.x.shape()[1..], &[1, 28, 28]);
//!     assert_eq!(batch.y.len(), batch.x.shape()[0]);
//! }
//! ```

#![warn(missing_docs)]

pub mod blob;
pub mod checksum;
pub mod cifar;
pub mod dataset;
pub mod embedded;
pub mod error;
pub mod idx;
pub mod info;
pub mod loader;
pub mod mat;
pub mod pgm;
pub mod supervision;
pub mod variations;

pub use blob::{CacheMode, OpenOptions, CACHE_ENV};
pub use cifar::{open_cifar_file, Cifar10, Cifar100, CifarKind};
pub use dataset::{ChannelStats, Dataset, ImageSet, ImageView, Split};
pub use error::{DataError, Result};
pub use idx::{open_idx_pair, FashionMnist, Mnist};
pub use loader::{Augment, Batch, Batches, Loader, LoaderConfig, Noise};
pub use mat::{open_svhn_mat, Svhn};
pub use pgm::{open_pgm, parse_pgm, read_pgm, Pgm};
pub use supervision::{stratified_indices, validation_indices, LimitedSupervision};
pub use variations::Variation;

/// Environment variable naming the root of the real data (`../shared/data` layout) for the
/// integration tests and examples.
pub const DATA_ENV: &str = "SPARSEGRAD_DATA";

/// Environment variable that turns a data-dependent test's skip into a failure: set it to `1`
/// where the real data is always present (`.ci/run` does), so a missing or moved data
/// directory fails the run instead of passing it vacuously.
pub const REQUIRE_DATA_ENV: &str = "SPARSEGRAD_REQUIRE_DATA";

/// The root of the real data for tests and examples: `$SPARSEGRAD_DATA`, else the nearest
/// `shared/data` above `manifest_dir` (the calling crate's `CARGO_MANIFEST_DIR`), where the
/// project's machines stage it beside the repository.
pub fn data_root(manifest_dir: &str) -> std::path::PathBuf {
    if let Some(root) = std::env::var_os(DATA_ENV) {
        return std::path::PathBuf::from(root);
    }
    let dir = std::path::Path::new(manifest_dir);
    dir.ancestors().map(|a| a.join("shared/data")).find(|d| d.is_dir()).unwrap_or_else(|| dir.join("../../shared/data"))
}

/// True when `SPARSEGRAD_REQUIRE_DATA` is set to anything but `0` or the empty string.
pub fn data_required() -> bool {
    std::env::var(REQUIRE_DATA_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Reports that `test` skips because `why` (e.g. "cifar-100/test.bin not found"): prints the
/// reason, or **panics** with it when [`data_required`], so the skip becomes a failure.
#[track_caller]
pub fn skip_test(test: &str, why: &str) {
    if data_required() {
        panic!("{test}: the real data is required ({REQUIRE_DATA_ENV} is set) but {why} (set {DATA_ENV} or stage ../shared/data)");
    }
    eprintln!(
        "{test}: skipped: {why} (set {DATA_ENV} or stage ../shared/data; {REQUIRE_DATA_ENV}=1 makes this a failure)"
    );
}
