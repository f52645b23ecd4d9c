//! Spatial contrasting (SC): the `sc-convnet` pre-trained with the SC loss on unlabelled
//! MNIST digits (two patches of the same image should be closer in feature space than
//! patches of different images), then fine-tuned with 10 labels per class, against the same
//! network trained from scratch on the same labels. Both phases go through `fit`: the
//! pre-training with a custom loss (the network's unsupervised term), the fine-tuning with
//! cross-entropy. Real MNIST when present, the embedded subset otherwise.
//!
//! `cargo run --release -p sparsegrad-models --example spatial_contrasting`

use autograd::optim::Adam;
use datasets::{embedded, Dataset, ImageSet, LoaderConfig, Mnist};
use engine::Rng;
use sparsegrad_models::fit::{evaluate, Fit, FitConfig, Loss, Progress};
use sparsegrad_models::nets::{Model, NetConfig};

fn main() -> Result<(), String> {
    let dir = datasets::data_root(env!("CARGO_MANIFEST_DIR")).join("mnist");
    let split = Mnist::open(&dir).unwrap_or_else(|_| embedded::mnist_subset());
    let ls = split.train.limited(10, 0).map_err(|e| e.to_string())?;
    let unlabelled = ls.unlabelled.subset(&(0..ls.unlabelled.len().min(2000)).collect::<Vec<_>>());
    let test = split.test.subset(&(0..500).collect::<Vec<_>>());
    let cfg = NetConfig::new("sc-convnet")?.input([1, 28, 28]).classes(10).option("width", 16);

    // Pre-training: the SC loss on unlabelled batches of 32 (labels are never read).
    let mut pretrained = Model::<f32>::new(&cfg, &mut Rng::new(0))?;
    let term = pretrained.unsupervised().ok_or("sc-convnet has an SC term")??;
    let pre_cfg = FitConfig { epochs: 2, ..FitConfig::new(LoaderConfig::new(32).drop_last(true), 0) };
    let out = Fit::new(&unlabelled, pre_cfg)
        .loss(Loss::custom(|_model, cx, x, _batch| term.unsupervised_loss(cx, x)))
        .run(&mut pretrained, &mut Adam::new(1e-3), Progress::default(), &mut ())
        .map_err(|e| e.to_string())?;
    println!("SC pre-training: {} steps on {} unlabelled images", out.progress.step, unlabelled.len());

    // Fine-tuning from the pre-trained weights vs training from scratch, same labels.
    let scratch = Model::<f32>::new(&cfg, &mut Rng::new(0))?;
    for (name, model) in [("from scratch", scratch), ("SC pre-trained", pretrained)] {
        let acc = fine_tune(model, &ls.labelled, &test)?;
        println!("{name:>15}: {:.1}% on {} test images ({} labels)", 100.0 * acc, test.len(), ls.labelled.len());
    }
    Ok(())
}

/// Forty epochs of cross-entropy on `labelled` (batches of 20), then the test accuracy.
fn fine_tune(mut model: Model<f32>, labelled: &ImageSet, test: &ImageSet) -> Result<f64, String> {
    let cfg = FitConfig { epochs: 40, ..FitConfig::new(LoaderConfig::new(20), 1) };
    Fit::new(labelled, cfg)
        .run(&mut model, &mut Adam::new(1e-3), Progress::default(), &mut ())
        .map_err(|e| e.to_string())?;
    let ev = evaluate(&model, test, &Loss::CrossEntropy, &LoaderConfig::new(100), 100).map_err(|e| e.to_string())?;
    Ok(ev.accuracy.unwrap_or(f64::NAN))
}
