//! Regenerates the embedded MNIST subset from the original MNIST files:
//!
//! ```text
//! cargo run --release -p sparsegrad-datasets --example make_mnist_subset -- ../shared/data/mnist datasets/data/mnist-subset
//! ```
//!
//! The selection rule is `sparsegrad_datasets::embedded::select` (100 images per class per
//! split, seed `embedded::SUBSET_SEED`); the output is four uncompressed IDX files.

use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (src, out) = match &args[..] {
        [s, o] => (PathBuf::from(s), PathBuf::from(o)),
        _ => {
            eprintln!("usage: make_mnist_subset MNIST_DIR OUT_DIR");
            std::process::exit(2);
        }
    };
    let run = || -> sparsegrad_datasets::Result<()> {
        let mnist = sparsegrad_datasets::Mnist::open(&src)?;
        std::fs::create_dir_all(&out).map_err(|e| sparsegrad_datasets::DataError::io(&out, "create directory", e))?;
        sparsegrad_datasets::embedded::write_subset(&mnist, &out)
    };
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    println!("wrote the MNIST subset to {}", out.display());
}
