//! `sparsegrad train`: trains the MNIST LeNet and reports test accuracy per epoch.

use std::io::Write as _;
use std::time::Instant;

use autograd::optim::{Optimizer, Sgd};
use autograd::Var;
use datasets::{embedded, Dataset, ImageSet, Loader, LoaderConfig, Mnist, Split};
use engine::{Rng, Tensor};

use super::{set_threads, usage_error};
use crate::cli::Args;
use models::train::classifier_step;
use models::LeNet;

const HELP: &str = "\
sparsegrad train: train the MNIST LeNet (MatConvNet layout: conv5×5 20, max-pool, conv5×5 50,
max-pool, conv4×4 500, ReLU, linear 10) with SGD and momentum, reporting test accuracy after
every epoch.

USAGE:
    sparsegrad train [--dir DIR] [--epochs N] [--batch N] [--lr X] [--momentum X]
                     [--seed N] [--limit N] [--threads N]

OPTIONS:
    --dir DIR       an MNIST or Fashion-MNIST directory (IDX files, plain or .gz);
                    default: the MNIST subset embedded in the program (1,000 training and
                    1,000 test images)
    --epochs N      passes over the training set (default 10)
    --batch N       mini-batch size (default 32)
    --lr X          learning rate (default 0.01)
    --momentum X    momentum (default 0.9)
    --seed N        seed of the initialisation and of the shuffling (default 0)
    --limit N       use only the first N training images (default: all)
    --threads N     worker threads (default: all cores)
    -h, --help      print this help
";

/// Training settings.
struct Config {
    epochs: usize,
    batch: usize,
    lr: f64,
    momentum: f64,
    seed: u64,
    limit: Option<usize>,
}

/// Runs `sparsegrad train <args>`; returns the exit status.
pub fn run(args: &[String]) -> i32 {
    let a =
        match Args::parse(args, &["help"], &["dir", "epochs", "batch", "lr", "momentum", "seed", "limit", "threads"]) {
            Ok(a) => a,
            Err(e) => return usage_error("train", &e.0, HELP),
        };
    if a.flag("help") {
        print!("{HELP}");
        return 0;
    }
    if let Some(p) = a.positional.first() {
        return usage_error("train", &format!("unexpected argument `{p}`"), HELP);
    }
    let parsed = (|| {
        let cfg = Config {
            epochs: a.get("epochs", 10usize)?,
            batch: a.get("batch", 32usize)?,
            lr: a.get("lr", 0.01f64)?,
            momentum: a.get("momentum", 0.9f64)?,
            seed: a.get("seed", 0u64)?,
            limit: a.value("limit").map(|_| a.get("limit", 0usize)).transpose()?,
        };
        Ok::<_, crate::cli::UsageError>((cfg, a.get("threads", 0usize)?))
    })();
    let (cfg, threads) = match parsed {
        Ok(v) => v,
        Err(e) => return usage_error("train", &e.0, HELP),
    };
    if cfg.batch == 0 || !(cfg.lr > 0.0 && cfg.lr.is_finite()) || !(0.0..1.0).contains(&cfg.momentum) {
        return usage_error("train", "--batch must be positive, --lr positive, --momentum in [0, 1)", HELP);
    }
    if let Err(e) = set_threads(threads) {
        eprintln!("error: train: {e}");
        return 1;
    }
    let (split, source) = match a.value("dir") {
        None => (embedded::mnist_subset(), "embedded MNIST subset".to_string()),
        Some(dir) => match Mnist::open(dir) {
            Ok(s) => (s, format!("MNIST-format data in {dir}")),
            Err(e) => {
                eprintln!("error: train: {e}");
                return 1;
            }
        },
    };
    // On a pool thread the kernels' parallel loops start without waking a worker and putting
    // this thread to sleep each time (~25% of a LeNet step on 2 threads; bench/README.md).
    match rayon::scope(|_| train(&split, &source, &cfg)) {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("error: train: {e}");
            1
        }
    }
}

/// Predicted classes of `x` (an inference tape: nothing recorded, the batch's values freed
/// on return).
fn predict(net: &LeNet<f32>, x: &Tensor<f32>) -> Vec<usize> {
    autograd::infer(|tape| {
        let p: Vec<Var<'_, f32>> = net.params.values().iter().map(|v| tape.constant(v.clone())).collect();
        LeNet::forward(&p, &tape.constant(x.clone()))
    })
    .argmax(1)
}

/// Fraction of correctly classified images of `data`.
fn accuracy<D: Dataset>(net: &LeNet<f32>, data: &D) -> (usize, usize) {
    let loader = Loader::new(data, LoaderConfig::new(500).shuffle(false));
    let mut correct = 0;
    for b in loader.epoch(0) {
        let pred = predict(net, &b.x);
        correct += pred.iter().zip(&b.y).filter(|(p, &y)| **p == y as usize).count();
    }
    (correct, data.len())
}

fn pct((c, n): (usize, usize)) -> f64 {
    100.0 * c as f64 / n.max(1) as f64
}

fn train(split: &Split, source: &str, cfg: &Config) -> Result<f64, String> {
    let train_set: ImageSet = match cfg.limit {
        Some(n) if n < split.train.len() => split.train.subset(&(0..n).collect::<Vec<_>>()),
        _ => split.train.clone(),
    };
    let test_set = &split.test;
    if train_set.image_shape() != [1, 28, 28] {
        return Err(format!("LeNet needs 1×28×28 images, the data has {:?}", train_set.image_shape()));
    }
    let mut rng = Rng::new(cfg.seed);
    let mut net = LeNet::<f32>::new(&mut rng);
    let mut opt = Sgd::new(cfg.lr).momentum(cfg.momentum);
    println!("data: {source} ({} training, {} test images)", train_set.len(), test_set.len());
    println!(
        "model: LeNet, {} parameters; SGD lr {} momentum {}; batch {}; {} threads",
        net.params.count(),
        opt.lr(),
        cfg.momentum,
        cfg.batch,
        rayon::current_num_threads()
    );
    let loader = Loader::new(&train_set, LoaderConfig::new(cfg.batch).seed(cfg.seed));
    let n_batches = loader.num_batches();
    let mut last_acc = 0.0;
    for epoch in 0..cfg.epochs {
        let start = Instant::now();
        let (mut loss_sum, mut seen, mut correct) = (0.0, 0usize, 0usize);
        for (k, b) in loader.epoch(epoch as u64).enumerate() {
            let labels: Vec<usize> = b.y.iter().map(|&y| y as usize).collect();
            let (loss, pred) =
                classifier_step(&mut net.params, &mut opt, LeNet::forward, &b.x, &labels).map_err(|e| e.to_string())?;
            if !loss.is_finite() {
                return Err(format!("the loss became {loss} in epoch {} (try a smaller --lr)", epoch + 1));
            }
            loss_sum += loss * labels.len() as f64;
            seen += labels.len();
            correct += pred.iter().zip(&labels).filter(|(p, y)| p == y).count();
            if n_batches >= 100 && (k + 1) % (n_batches / 10) == 0 {
                eprint!(
                    "\r  epoch {}: {}/{} images, loss {:.4}   ",
                    epoch + 1,
                    seen,
                    train_set.len(),
                    loss_sum / seen as f64
                );
                let _ = std::io::stderr().flush();
            }
        }
        if n_batches >= 100 {
            eprint!("\r{:60}\r", "");
        }
        let test = accuracy(&net, test_set);
        last_acc = pct(test);
        println!(
            "epoch {:>2}/{}  loss {:.4}  train acc {:5.1}%  test acc {:5.1}%  ({:.1} s)",
            epoch + 1,
            cfg.epochs,
            loss_sum / seen.max(1) as f64,
            pct((correct, seen)),
            last_acc,
            start.elapsed().as_secs_f64()
        );
        let _ = std::io::stdout().flush();
    }
    let (c, n) = accuracy(&net, test_set);
    println!("final test accuracy {:.2}% ({c}/{n})", pct((c, n)));
    Ok(last_acc)
}
