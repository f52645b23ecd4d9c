//! Peak resident memory of evaluating LeNet (`LeNet::forward`, f32, seeded initialisation)
//! over the 10,000 MNIST test images in batches, in a fresh process:
//!
//! * `infer` — each batch through [`autograd::infer`] (an inference tape, dropped per batch);
//! * `no_grad_batch` — each batch on a new recording tape inside `Tape::no_grad` (what the
//!   `train` command's evaluation did before `infer`);
//! * `no_grad_pass` — one recording tape for the whole pass inside `Tape::no_grad` (it holds
//!   every batch's values until the pass ends).
//!
//! The dataset is opened and the model built first; the high-water mark is then reset
//! (`echo 5 > /proc/self/clear_refs`) and `VmHWM` (`/proc/self/status`) read after the pass.
//! Prints the number of predictions of each class's count checksum so modes can be compared.
//!
//! `cargo run --release -p sparsegrad-models --example lenet_eval_memory -- [infer|no_grad_batch|no_grad_pass]
//! [batch] [threads] [DIR]` (defaults `infer`, 500, 1, `$SPARSEGRAD_DATA/mnist` or
//! `../shared/data/mnist`).

use std::path::PathBuf;

use autograd::{infer, Tape, Var};
use datasets::{Loader, LoaderConfig, Mnist};
use engine::{Rng, Tensor};
use sparsegrad_models::LeNet;

/// A field of `/proc/self/status` in MiB.
fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map_or("infer", |s| s.as_str()).to_string();
    let batch: usize = args.get(1).map_or(500, |s| s.parse().expect("batch size"));
    let threads: usize = args.get(2).map_or(1, |s| s.parse().expect("thread count"));
    let dir = args.get(3).map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("SPARSEGRAD_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data")))
            .join("mnist")
    });
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().expect("thread pool");
    let split = Mnist::open(&dir).unwrap_or_else(|e| panic!("MNIST in {}: {e}", dir.display()));
    let net = LeNet::<f32>::new(&mut Rng::new(0));
    let weights: &[Tensor<f32>] = net.params.values();

    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = status_mib("VmRSS:");
    let loader = Loader::new(&split.test, LoaderConfig::new(batch).shuffle(false));
    let mut counts = [0usize; 10];
    let mut images = 0;
    let pass_tape = Tape::<f32>::new();
    for b in loader.epoch(0) {
        images += b.y.len();
        let logits = match mode.as_str() {
            "infer" => infer(|t| {
                let p: Vec<Var<f32>> = weights.iter().map(|w| t.constant(w.clone())).collect();
                LeNet::forward(&p, &t.constant(b.x.clone()))
            }),
            "no_grad_batch" => {
                let tape = Tape::new();
                tape.no_grad(|| {
                    let p: Vec<Var<f32>> = weights.iter().map(|w| tape.constant(w.clone())).collect();
                    LeNet::forward(&p, &tape.constant(b.x.clone())).value()
                })
            }
            "no_grad_pass" => pass_tape.no_grad(|| {
                let p: Vec<Var<f32>> = weights.iter().map(|w| pass_tape.constant(w.clone())).collect();
                LeNet::forward(&p, &pass_tape.constant(b.x.clone())).value()
            }),
            other => panic!("mode must be infer, no_grad_batch or no_grad_pass, got {other}"),
        };
        logits.argmax(1).into_iter().for_each(|c| counts[c] += 1);
    }
    let peak = status_mib("VmHWM:");
    println!(
        "lenet_eval_memory mode {mode} batch {batch} threads {threads}: {images} images, peak RSS {peak:.0} MiB \
         (RSS before the pass {before:.0} MiB; {}); predicted class counts {counts:?}",
        if reset { "high-water mark reset after opening the data" } else { "could NOT reset the high-water mark" }
    );
}
