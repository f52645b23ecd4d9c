//! DS-NiN (double sparsity: DCT-based k×k convolutions and 1×1 coefficient layers shrunk
//! towards zero by a post-step after every optimiser step) for a few steps, then the
//! fraction of exact zeros in each coefficient layer.
//!
//! `cargo run --release -p sparsegrad-models --example ds_nin`

use autograd::optim::Sgd;
use datasets::{ImageSet, LoaderConfig};
use engine::{Rng, Tensor};
use sparsegrad_models::fit::{Fit, FitConfig, Progress};
use sparsegrad_models::nets::{Model, NetConfig};

fn main() -> Result<(), String> {
    // CIFAR-10 when present, 64 random 32×32 images otherwise.
    let dir = datasets::data_root(env!("CARGO_MANIFEST_DIR")).join("cifar-10");
    let train = match datasets::Cifar10::open(&dir) {
        Ok(s) => s.train.subset(&(0..64).collect::<Vec<_>>()),
        Err(_) => random_images(64),
    };
    // ζ: the threshold of the ℓ1 shrinkage (`shrink = paper`: Shrink_ζ after every step).
    let cfg = NetConfig::new("ds-nin")?.option("zeta", 1e-3).option("shrink", "paper");
    let mut model = Model::<f32>::new(&cfg, &mut Rng::new(0))?;
    let mut opt = Sgd::new(0.05).momentum(0.9);
    let fit_cfg = FitConfig { epochs: 1, ..FitConfig::new(LoaderConfig::new(16), 0) };
    let out =
        Fit::new(&train, fit_cfg).run(&mut model, &mut opt, Progress::default(), &mut ()).map_err(|e| e.to_string())?;
    println!("ds-nin: {} steps, {} parameters", out.progress.step, model.store.count());
    for n in ["2.weight", "10.weight", "18.weight"] {
        let w = model.store.get(n).ok_or(format!("no tensor {n}"))?;
        println!("  {n}: {:.2}% exact zeros", 100.0 * sparse::dct::zero_fraction(w));
    }
    Ok(())
}

fn random_images(n: usize) -> ImageSet {
    let mut rng = Rng::new(1);
    let x = Tensor::<f32>::rand_uniform(&[n * 3 * 32 * 32], 0.0, 255.0, &mut rng);
    let pixels: Vec<u8> = x.to_vec().iter().map(|&v| v as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    ImageSet::from_vec("random", pixels, [3, 32, 32], labels, (0..10).map(|c| c.to_string()).collect())
}
