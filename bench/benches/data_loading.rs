//! One shuffled epoch of MNIST into normalised f32 batches of 256 (`[256, 1, 28, 28]`),
//! through `datasets::Loader` (parallel fill of one reused buffer). Target: under 0.2 s for
//! the 60,000 training images on 2 cores.
//!
//! ```text
//! cargo bench -p sparsegrad-bench --bench data_loading --features datasets/gzip
//! ```
//! The real training set is read from `$SPARSEGRAD_DATA/mnist` or `../shared/data/mnist` when
//! present (the `.gz` files need the `gzip` feature, hence `--features datasets/gzip`).
//! Otherwise the 60k case tiles the embedded 1,000-image subset 60 times: the same number of
//! bytes to convert, so the timing is comparable. The embedded subset's own epoch is
//! measured too.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use datasets::{embedded, Augment, Dataset, ImageSet, Loader, LoaderConfig, Mnist, DATA_ENV};

/// The 60,000 MNIST training images, and where they came from.
fn mnist_60k() -> (ImageSet, String) {
    let root = std::env::var_os(DATA_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data")));
    match Mnist::open(root.join("mnist")) {
        Ok(s) => (s.train, format!("real MNIST from {}", root.join("mnist").display())),
        Err(e) => {
            let sub = embedded::mnist_subset().train;
            let mut px = Vec::with_capacity(60 * sub.len() * 784);
            let mut labels = Vec::with_capacity(60 * sub.len());
            for _ in 0..60 {
                for i in 0..sub.len() {
                    px.extend_from_slice(sub.image_u8(i).as_contiguous().expect("IDX images are contiguous"));
                    labels.push(sub.label(i) as u8);
                }
            }
            let set = ImageSet::from_vec("mnist-subset×60", px, [1, 28, 28], labels, sub.class_names().to_vec());
            (set, format!("embedded subset tiled 60× (real MNIST not usable: {e})"))
        }
    }
}

fn epoch(loader: &Loader<'_, ImageSet>, e: u64) -> f32 {
    let mut acc = 0.0f32;
    for b in loader.epoch(e) {
        acc += b.x.storage()[0];
    }
    acc
}

fn bench(c: &mut Criterion) {
    let (train, source) = mnist_60k();
    eprintln!("data_loading: {} images, {source}", train.len());
    let _ = train.channel_stats(); // computed once, outside the timing
    let loader = Loader::new(&train, LoaderConfig::new(256).seed(1));
    let mut g = c.benchmark_group("data_loading");
    g.sample_size(20);
    let mut e = 0;
    g.bench_function("mnist_60k_epoch_b256", |b| {
        b.iter(|| {
            e += 1;
            epoch(&loader, e)
        })
    });
    let aug = Loader::new(&train, LoaderConfig::new(256).seed(1).augment(Augment::crop_flip(2)));
    g.bench_function("mnist_60k_epoch_b256_crop_flip", |b| {
        b.iter(|| {
            e += 1;
            epoch(&aug, e)
        })
    });
    let sub = embedded::mnist_subset().train;
    let sl = Loader::new(&sub, LoaderConfig::new(256).seed(1));
    g.bench_function("mnist_subset_1k_epoch_b256", |b| {
        b.iter(|| {
            e += 1;
            epoch(&sl, e)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
