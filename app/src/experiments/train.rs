//! Training a network of the registry for an experiment's cell and scoring it.

use autograd::optim::{Adam, Optimizer, Sgd};
use datasets::{Dataset, ImageSet, Loader, LoaderConfig};
use engine::{Rng, Tensor};
use models::fit::{Fit, FitConfig, Hooks, Progress, Unsupervised};
use models::nets::{Model, NetConfig};

/// What to train and how long.
#[derive(Clone, Debug)]
pub struct ClassifySpec {
    pub net: NetConfig,
    /// Optimiser steps (each one batch of labelled images, cycling over them).
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub adam: bool,
    pub seed: u64,
}

/// The result of one training run.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Test accuracy in [0, 1].
    pub accuracy: f64,
    pub final_loss: f64,
    pub params: usize,
    pub seconds: f64,
}

/// Trains `spec.net` on `labelled` for `spec.steps` optimiser steps with the shared
/// training loop ([`models::fit`]: cross-entropy, batches cycling over `labelled`, every
/// random choice derived from `spec.seed`) and returns it with its accuracy on `test`
/// (batches of 500, eval mode).
pub fn classify(spec: &ClassifySpec, labelled: &ImageSet, test: &ImageSet) -> Result<(Model<f32>, Outcome), String> {
    let mut rng = Rng::new(spec.seed);
    let model = Model::<f32>::new(&spec.net, &mut rng)?;
    classify_model(spec, model, labelled, test)
}

/// As [`classify`], from `model` as it is (e.g. pretrained) instead of a fresh initialisation
/// (`spec.net` is not read).
pub fn classify_model(
    spec: &ClassifySpec,
    model: Model<f32>,
    labelled: &ImageSet,
    test: &ImageSet,
) -> Result<(Model<f32>, Outcome), String> {
    classify_with(spec, model, labelled, None, test)
}

/// As [`classify`], semi-supervised: every step adds `gamma ×` the network's unsupervised
/// term ([`Model::unsupervised`]) on a batch (of `spec.batch`) of `unlabelled`, as
/// `sparsegrad train --unlabelled-weight` does. An error for a network without such a term.
pub fn classify_semi(
    spec: &ClassifySpec,
    gamma: f64,
    labelled: &ImageSet,
    unlabelled: &ImageSet,
    test: &ImageSet,
) -> Result<(Model<f32>, Outcome), String> {
    let mut rng = Rng::new(spec.seed);
    let model = Model::<f32>::new(&spec.net, &mut rng)?;
    classify_with(spec, model, labelled, Some((unlabelled, gamma)), test)
}

fn classify_with(
    spec: &ClassifySpec,
    mut model: Model<f32>,
    labelled: &ImageSet,
    unlabelled: Option<(&ImageSet, f64)>,
    test: &ImageSet,
) -> Result<(Model<f32>, Outcome), String> {
    let start = std::time::Instant::now();
    let mut opt: Box<dyn Optimizer<f32>> =
        if spec.adam { Box::new(Adam::new(spec.lr)) } else { Box::new(Sgd::new(spec.lr).momentum(0.9)) };
    let batch = spec.batch.min(labelled.len()).max(1);
    let loader = LoaderConfig::new(batch).drop_last(labelled.len() >= batch);
    let cfg = FitConfig { epochs: usize::MAX, max_steps: Some(spec.steps as u64), ..FitConfig::new(loader, spec.seed) };
    let mut last = f64::NAN;
    let mut hooks = Hooks::new().step(|r| last = r.loss);
    let term_net = match unlabelled {
        Some(_) => Some(
            model
                .unsupervised()
                .ok_or_else(|| format!("network '{}' has no unsupervised term", model.config.name))??,
        ),
        None => None,
    };
    let mut fit = Fit::new(labelled, cfg);
    if let (Some((data, gamma)), Some(net)) = (unlabelled, &term_net) {
        if data.len() > 0 {
            fit = fit.semi_supervised(Unsupervised {
                data,
                batch_size: spec.batch.min(data.len()).max(1),
                gamma,
                term: Box::new(move |_model, cx, x| net.unsupervised_loss(cx, x)),
            });
        }
    }
    fit.run(&mut model, opt.as_mut(), Progress::default(), &mut hooks).map_err(|e| e.to_string())?;
    drop(hooks);
    let accuracy = accuracy(&model, test)?;
    let params = model.store.count();
    Ok((model, Outcome { accuracy, final_loss: last, params, seconds: start.elapsed().as_secs_f64() }))
}

/// Fraction of `test` the model classifies correctly (eval mode, batches of 500).
pub fn accuracy(model: &Model<f32>, test: &ImageSet) -> Result<f64, String> {
    let loader = Loader::new(test, LoaderConfig::new(500).shuffle(false));
    let mut correct = 0usize;
    for b in loader.epoch(0) {
        let logits: Tensor<f32> = model.predict(&b.x).map_err(|e| e.to_string())?;
        correct += logits.argmax(1).iter().zip(&b.y).filter(|(p, y)| **p == **y as usize).count();
    }
    Ok(correct as f64 / test.len().max(1) as f64)
}

/// Fraction of `test` the model classifies correctly when every image is corrupted by
/// `noise` (applied to the `[0, 1]` intensities before normalisation, drawn from `seed` and
/// the image's index, so the same `seed` gives the same corrupted images to every model).
pub fn accuracy_under(model: &Model<f32>, test: &ImageSet, noise: datasets::Noise, seed: u64) -> Result<f64, String> {
    let loader = Loader::new(test, LoaderConfig::new(500).shuffle(false).noise(noise).seed(seed));
    let mut correct = 0usize;
    for b in loader.epoch(0) {
        let logits: Tensor<f32> = model.predict(&b.x).map_err(|e| e.to_string())?;
        correct += logits.argmax(1).iter().zip(&b.y).filter(|(p, y)| **p == **y as usize).count();
    }
    Ok(correct as f64 / test.len().max(1) as f64)
}

/// `model` rebuilt with the options `options` added to its configuration (e.g. the stem's
/// `stem_lambda` at test time) and every trained parameter and buffer copied by name.
pub fn with_options(model: &Model<f32>, options: &[(&str, String)]) -> Result<Model<f32>, String> {
    let mut cfg = model.config.clone();
    for (k, v) in options {
        cfg = cfg.option(k, v);
    }
    let mut m = Model::<f32>::new(&cfg, &mut Rng::new(0))?;
    for (n, t) in model.store.params().chain(model.store.buffers()) {
        m.store.set(n, t.clone())?;
    }
    Ok(m)
}
