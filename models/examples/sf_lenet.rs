//! SF/CSF LeNet (sparse filtering / convolutional sparse filtering layers) trained with K
//! labels per class plus `γ ×` its unsupervised term (the reconstruction loss of its sparse
//! layers) on the unlabelled rest, through `fit`.
//!
//! `cargo run --release -p sparsegrad-models --example sf_lenet [-- csf-lenet]`

use autograd::optim::Adam;
use datasets::{embedded, Dataset, LoaderConfig, Mnist};
use engine::Rng;
use sparsegrad_models::fit::{Fit, FitConfig, Progress, Unsupervised};
use sparsegrad_models::nets::{Model, NetConfig};

fn main() -> Result<(), String> {
    let name = std::env::args().nth(1).unwrap_or_else(|| "sf-lenet".to_string());
    // Real MNIST when present, the embedded subset otherwise.
    let dir = datasets::data_root(env!("CARGO_MANIFEST_DIR")).join("mnist");
    let split = Mnist::open(&dir).unwrap_or_else(|_| embedded::mnist_subset());
    // 5 labels per class; the rest of the training split is unlabelled.
    let ls = split.train.limited(5, 0).map_err(|e| e.to_string())?;
    let test = split.test.subset(&(0..200).collect::<Vec<_>>());

    let cfg = NetConfig::new(&name)?.input(ls.labelled.image_shape()).classes(ls.labelled.num_classes());
    let mut model = Model::<f32>::new(&cfg, &mut Rng::new(0))?;
    // The same network with its unsupervised term, reading the model's parameters.
    let term_net = model.unsupervised().ok_or("no unsupervised term")??;
    let mut opt = Adam::new(1e-3);
    let fit_cfg = FitConfig { epochs: 2, ..FitConfig::new(LoaderConfig::new(25), 0) };
    let fit = Fit::new(&ls.labelled, fit_cfg).validate_on(&test).semi_supervised(Unsupervised {
        data: &ls.unlabelled,
        batch_size: 25,
        gamma: 0.1,
        term: Box::new(|_model, cx, x| term_net.unsupervised_loss(cx, x)),
    });
    let mut log = sparsegrad_models::fit::Hooks::new().epoch(|e, _| {
        let acc = e.val.and_then(|v| v.accuracy).unwrap_or(f64::NAN);
        println!("epoch {}: loss {:.4}, test accuracy {:.1}%", e.epoch + 1, e.train_loss, 100.0 * acc);
        Ok(())
    });
    fit.run(&mut model, &mut opt, Progress::default(), &mut log).map_err(|e| e.to_string())?;
    println!(
        "{name}: {} labelled + {} unlabelled images, γ = 0.1, {} parameters",
        ls.labelled.len(),
        ls.unlabelled.len(),
        model.store.count()
    );
    Ok(())
}
