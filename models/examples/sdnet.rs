//! SDNet-20 (ResNet-20 with a convolutional-sparse-coding stem) on CIFAR-100's 20 coarse
//! classes, or on random images when CIFAR-100 is absent; then the test accuracy with the
//! stem's λ changed at test time (the network rebuilt with `stem_lambda`, the trained tensors
//! copied in).
//!
//! `cargo run --release -p sparsegrad-models --example sdnet`

use autograd::optim::Sgd;
use datasets::{Dataset, ImageSet, LoaderConfig};
use engine::{Rng, Tensor};
use sparsegrad_models::fit::{evaluate, Fit, FitConfig, Loss, Progress};
use sparsegrad_models::nets::{Model, NetConfig};

fn main() -> Result<(), String> {
    let dir = datasets::data_root(env!("CARGO_MANIFEST_DIR")).join("cifar-100");
    let (train, test) = match datasets::Cifar100::open(&dir) {
        Ok(s) => {
            let coarse = |set: &ImageSet| set.with_coarse_labels().expect("CIFAR-100 has coarse labels");
            (
                coarse(&s.train.subset(&(0..64).collect::<Vec<_>>())),
                coarse(&s.test.subset(&(0..100).collect::<Vec<_>>())),
            )
        }
        Err(_) => (random_images(64, 1), random_images(100, 2)),
    };
    let cfg = NetConfig::new("sdnet20")?.classes(20).option("stem_lambda", 0.1);
    let mut model = Model::<f32>::new(&cfg, &mut Rng::new(0))?;
    let mut opt = Sgd::new(0.05).momentum(0.9);
    let fit_cfg = FitConfig { epochs: 1, ..FitConfig::new(LoaderConfig::new(16), 0) };
    let out =
        Fit::new(&train, fit_cfg).run(&mut model, &mut opt, Progress::default(), &mut ()).map_err(|e| e.to_string())?;
    println!("sdnet20: {} steps on {} images, {} parameters", out.progress.step, train.len(), model.store.count());
    for lambda in [0.1, 0.3, 0.5] {
        // The same tensors in the network rebuilt with another stem λ.
        let mut m = Model::<f32>::new(&cfg.clone().option("stem_lambda", lambda), &mut Rng::new(0))?;
        for (n, t) in model.store.params().chain(model.store.buffers()) {
            m.store.set(n, t.clone())?;
        }
        let ev = evaluate(&m, &test, &Loss::CrossEntropy, &LoaderConfig::new(50), 50).map_err(|e| e.to_string())?;
        println!("  test λ = {lambda}: accuracy {:.1}%", 100.0 * ev.accuracy.unwrap_or(f64::NAN));
    }
    Ok(())
}

fn random_images(n: usize, seed: u64) -> ImageSet {
    let x = Tensor::<f32>::rand_uniform(&[n * 3 * 32 * 32], 0.0, 255.0, &mut Rng::new(seed));
    let pixels: Vec<u8> = x.to_vec().iter().map(|&v| v as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 20) as u8).collect();
    ImageSet::from_vec("random", pixels, [3, 32, 32], labels, (0..20).map(|c| c.to_string()).collect())
}
