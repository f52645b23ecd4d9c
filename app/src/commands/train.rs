//! `sparsegrad train`, `eval` and `inspect`, and the program's default run (no command).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use autograd::optim::{Adam, Optimizer, Sgd};
use autograd::{Reduction, Tape};
use datasets::{
    embedded, Cifar10, Cifar100, Dataset, FashionMnist, ImageSet, Loader, LoaderConfig, Mnist, Split, Svhn,
};
use engine::Rng;
use models::layers::Mode;
use models::nets::{self, Model, NetConfig};

use super::{fail, set_threads};
use clap::ValueEnum;

use crate::cli::{DatasetName, EvalArgs, InspectArgs, OptimizerName, TrainArgs, USAGE};
use crate::progress::Progress;
use crate::{ckpt, out, outln};

/// Set by the Ctrl-C handler: the training loop finishes its step, writes a checkpoint and
/// stops.
static STOP: AtomicBool = AtomicBool::new(false);

/// Exit status after an interrupted run (128 + SIGINT, as a shell reports it).
pub const INTERRUPTED: i32 = 130;

/// Installs the Ctrl-C handler once (a second Ctrl-C while stopping ends the process).
fn install_stop_handler() {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return;
    }
    let r = ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: exiting without a checkpoint");
            std::process::exit(INTERRUPTED);
        }
        eprintln!("\ninterrupt: finishing the current step (Ctrl-C again to exit at once)");
    });
    if let Err(e) = r {
        eprintln!("warning: no Ctrl-C handler ({e}); an interrupt ends the run without a checkpoint");
    }
}

/// The data set `name`: from `dir`; without it mnist is the embedded subset (the README's
/// main job stays small and needs no files) and the others are read from
/// `../shared/data/<name>` when it exists. Returns the split and where it came from.
pub fn load_dataset(name: DatasetName, dir: Option<&Path>) -> Result<(Split, String), String> {
    let dir: Option<PathBuf> = dir.map(Path::to_path_buf).or_else(|| {
        if name == DatasetName::Mnist {
            return None;
        }
        name.dir_names().iter().map(|n| Path::new("../shared/data").join(n)).find(|p| p.is_dir())
    });
    let Some(dir) = dir else {
        return match name {
            DatasetName::Mnist => Ok((embedded::mnist_subset(), "the embedded MNIST subset".to_string())),
            _ => Err(format!(
                "no data directory for {} (pass --data-dir DIR; ../shared/data/{} does not exist{})",
                name.as_str(),
                name.dir_names()[0],
                if name.as_str().starts_with("mnist-") { "; `sparsegrad data make-variations` writes it" } else { "" }
            )),
        };
    };
    let d = dir.as_path();
    let split = match name {
        DatasetName::Mnist
        | DatasetName::MnistRot
        | DatasetName::MnistBackRand
        | DatasetName::MnistBackImage
        | DatasetName::MnistRotBackImage => Mnist::open(d),
        DatasetName::FashionMnist => FashionMnist::open(d),
        DatasetName::Cifar10 => Cifar10::open(d),
        DatasetName::Cifar100 => Cifar100::open(d),
        DatasetName::Svhn => Svhn::open(d),
        DatasetName::Denoise => {
            return Err(format!(
                "denoise holds unlabelled PGM images for the DCEA denoising experiments, not a classification \
                 data set; `sparsegrad data info --dir {}` lists them",
                d.display()
            ))
        }
    }
    .map_err(|e| e.to_string())?;
    Ok((split, format!("{} in {}", name.as_str(), d.display())))
}

/// The network list of `--model list`: name, parameter count at the default configuration, about.
pub fn model_list() -> Result<String, String> {
    let mut s = format!("{:<16} {:>12}  {}\n", "network", "parameters", "about");
    for spec in nets::registry() {
        let cfg = NetConfig::new(spec.name)?;
        let m = Model::<f32>::new(&cfg, &mut Rng::new(0))?;
        let _ = writeln!(s, "{:<16} {:>12}  {}", spec.name, m.store.count(), spec.about);
    }
    Ok(s)
}

/// Correct predictions of `model` on `data` (eval mode, batches of `batch`).
pub fn accuracy<D: Dataset>(model: &Model<f32>, data: &D, batch: usize) -> Result<(usize, usize), String> {
    let loader = Loader::new(data, LoaderConfig::new(batch).shuffle(false));
    let mut correct = 0;
    for b in loader.epoch(0) {
        let pred = model.predict(&b.x).map_err(|e| e.to_string())?.argmax(1);
        correct += pred.iter().zip(&b.y).filter(|(p, &y)| **p == y as usize).count();
    }
    Ok((correct, data.len()))
}

fn pct((c, n): (usize, usize)) -> f64 {
    100.0 * c as f64 / n.max(1) as f64
}

/// One optimisation step: forward in train mode, mean cross-entropy, backward, update, then
/// the layers' post-steps. Returns the loss before the step and the predictions.
fn step(
    model: &mut Model<f32>,
    opt: &mut dyn Optimizer<f32>,
    x: &engine::Tensor<f32>,
    labels: &[usize],
    seed: u64,
) -> Result<(f64, Vec<usize>), String> {
    // The tape (and every reference to the parameters' storage) is dropped before the update,
    // so the optimiser updates the parameters in place.
    let (loss, pred, grads) = {
        let tape = Tape::new();
        let cx = model.store.bind(&tape, Mode::Train, seed);
        let logits = model.forward(&cx, &tape.constant(x.clone())).map_err(|e| e.to_string())?;
        let loss = logits.cross_entropy(labels, Reduction::Mean);
        let g = tape.backward(&loss).map_err(|e| e.to_string())?;
        let grads = cx.grads(&g);
        let out = (loss.item(), logits.value().argmax(1), grads);
        cx.finish(&mut model.store);
        out
    };
    model.store.step(opt, &grads);
    Ok((loss, pred))
}

/// What one run trains, as recorded in its log and checkpoints.
struct Run {
    model: String,
    dataset: DatasetName,
    source: String,
    epochs: usize,
    batch: usize,
    optimizer: OptimizerName,
    lr: f64,
    momentum: f64,
    weight_decay: f64,
    seed: u64,
    limit: Option<usize>,
    labels_per_class: Option<usize>,
    unlabelled_weight: f64,
    data_dir: Option<PathBuf>,
    out: Option<PathBuf>,
    /// Print the per-epoch lines (the default run prints only the summary).
    verbose: bool,
    /// Continue from `out/last.safetensors`.
    resume: bool,
}

impl Run {
    /// The run's settings as checkpoint metadata (`run.*`), beside the network's configuration.
    fn metadata(&self, cfg: &NetConfig, state: &State) -> BTreeMap<String, String> {
        let mut m = cfg.to_map();
        let mut put = |k: &str, v: String| {
            m.insert(format!("run.{k}"), v);
        };
        put("model", self.model.clone());
        put("dataset", self.dataset.as_str().to_string());
        put("source", self.source.clone());
        if let Some(d) = &self.data_dir {
            put("data_dir", d.display().to_string());
        }
        put("epochs", self.epochs.to_string());
        put("batch", self.batch.to_string());
        put("optimizer", format!("{:?}", self.optimizer).to_lowercase());
        put("lr", self.lr.to_string());
        put("momentum", self.momentum.to_string());
        put("weight_decay", self.weight_decay.to_string());
        put("seed", self.seed.to_string());
        if let Some(l) = self.limit {
            put("limit", l.to_string());
        }
        if let Some(k) = self.labels_per_class {
            put("labels_per_class", k.to_string());
        }
        put("unlabelled_weight", self.unlabelled_weight.to_string());
        put("epochs_done", state.epochs_done.to_string());
        put("batches_done", state.batches_done.to_string());
        put("test_acc", state.test_acc.to_string());
        put("best_test_acc", state.best.to_string());
        m
    }
}

/// Where a run stands: complete epochs, batches of the next epoch, accuracies (percent).
#[derive(Clone, Copy, Debug, Default)]
struct State {
    epochs_done: usize,
    batches_done: usize,
    test_acc: f64,
    best: f64,
}

impl State {
    fn from_metadata(m: &BTreeMap<String, String>) -> State {
        let get = |k: &str| m.get(&format!("run.{k}")).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        State {
            epochs_done: get("epochs_done") as usize,
            batches_done: get("batches_done") as usize,
            test_acc: get("test_acc"),
            best: get("best_test_acc"),
        }
    }
}

/// Writes the model and the run's state to `dir/name`.
fn save_checkpoint(dir: &Path, name: &str, r: &Run, model: &Model<f32>, state: &State) -> Result<(), String> {
    let tensors = model.store.params().chain(model.store.buffers());
    ckpt::save(&dir.join(name), tensors, &r.metadata(&model.config, state))
}

/// Loads a checkpoint's network: its configuration from the metadata, its tensors by name.
fn load_model(path: &Path) -> Result<(Model<f32>, ckpt::Checkpoint), String> {
    let c = ckpt::load(path)?;
    let cfg = NetConfig::from_map(&c.metadata).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut model = Model::<f32>::new(&cfg, &mut Rng::new(0))?;
    for (name, t) in &c.tensors {
        model.store.set(name, t.clone()).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let n = model.store.params().count() + model.store.buffers().count();
    if n != c.tensors.len() {
        return Err(format!("{}: {} tensors for a network of {n}", path.display(), c.tensors.len()));
    }
    Ok((model, c))
}

/// Result of a run: the final test accuracy (percent), and whether it was interrupted.
struct Outcome {
    test_acc: f64,
    interrupted: bool,
}

fn optimizer(r: &Run) -> Box<dyn Optimizer<f32>> {
    match r.optimizer {
        OptimizerName::Sgd => Box::new(Sgd::new(r.lr).momentum(r.momentum).weight_decay(r.weight_decay)),
        OptimizerName::Adam => Box::new(Adam::new(r.lr).weight_decay(r.weight_decay)),
    }
}

fn log_line(r: &Run, epoch: usize, loss: f64, train_acc: f64, test_acc: f64, seconds: f64, ips: f64) -> String {
    format!(
        "{{\"epoch\":{epoch},\"epochs\":{},\"model\":{},\"dataset\":{},\"loss\":{loss},\"train_acc\":{train_acc},\
         \"test_acc\":{test_acc},\"seconds\":{seconds:.3},\"images_per_s\":{ips:.1},\"lr\":{}}}",
        r.epochs,
        autograd::audit::json_str(&r.model),
        autograd::audit::json_str(r.dataset.as_str()),
        r.lr
    )
}

fn train_run(r: &Run, split: &Split) -> Result<Outcome, String> {
    let mut train_set: ImageSet = split.train.clone();
    if let Some(k) = r.labels_per_class {
        let ls = train_set.limited(k, r.seed).map_err(|e| e.to_string())?;
        if r.unlabelled_weight > 0.0 {
            return Err(format!(
                "--unlabelled-weight {}: network '{}' has no unsupervised loss",
                r.unlabelled_weight, r.model
            ));
        }
        train_set = ls.labelled;
    }
    if let Some(n) = r.limit {
        if n < train_set.len() {
            train_set = train_set.subset(&(0..n).collect::<Vec<_>>());
        }
    }
    let test_set = &split.test;
    let cfg = NetConfig::new(&r.model)?.input(train_set.image_shape()).classes(train_set.num_classes());
    let mut rng = Rng::new(r.seed);
    let mut model = Model::<f32>::new(&cfg, &mut rng)?;
    let mut state = State::default();
    if r.resume {
        let dir = r.out.as_deref().ok_or("--resume needs --out")?;
        let (m, c) = load_model(&dir.join("last.safetensors"))?;
        if m.config != cfg {
            return Err(format!(
                "{}: the checkpoint's network ({:?}) is not the one of this run ({:?})",
                dir.join("last.safetensors").display(),
                m.config.to_map(),
                cfg.to_map()
            ));
        }
        model = m;
        state = State::from_metadata(&c.metadata);
        if r.verbose {
            outln!(
                "resuming from {} after {} epoch(s) and {} batch(es); the optimiser's state starts afresh",
                dir.join("last.safetensors").display(),
                state.epochs_done,
                state.batches_done
            );
        }
    }
    let mut opt = optimizer(r);
    if r.verbose {
        outln!("data: {} ({} training, {} test images)", r.source, train_set.len(), test_set.len());
        outln!(
            "model: {}, {} parameters; {:?} lr {}{}; batch {}; {} threads",
            r.model,
            model.store.count(),
            r.optimizer,
            r.lr,
            if r.optimizer == OptimizerName::Sgd { format!(" momentum {}", r.momentum) } else { String::new() },
            r.batch,
            rayon::current_num_threads()
        );
    }
    let mut log = match &r.out {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let p = dir.join("log.jsonl");
            Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&p)
                    .map_err(|e| format!("{}: {e}", p.display()))?,
            )
        }
        None => None,
    };
    let loader = Loader::new(&train_set, LoaderConfig::new(r.batch).seed(r.seed));
    let n_batches = loader.num_batches();
    let mut progress = Progress::new(r.epochs);
    for epoch in state.epochs_done + 1..=r.epochs {
        progress.start_epoch(epoch, n_batches);
        let skip = std::mem::take(&mut state.batches_done);
        let (mut loss_sum, mut seen, mut correct) = (0.0, 0usize, 0usize);
        for (k, b) in loader.epoch(epoch as u64 - 1).enumerate().skip(skip) {
            let labels: Vec<usize> = b.y.iter().map(|&y| y as usize).collect();
            let seed = r.seed ^ ((epoch as u64) << 32 | k as u64);
            let (loss, pred) = step(&mut model, opt.as_mut(), &b.x, &labels, seed)?;
            if !loss.is_finite() {
                progress.finish_epoch();
                return Err(format!("the loss became {loss} in epoch {epoch} (try a smaller --lr)"));
            }
            loss_sum += loss * labels.len() as f64;
            seen += labels.len();
            correct += pred.iter().zip(&labels).filter(|(p, y)| p == y).count();
            progress.batch(k + 1, labels.len(), loss_sum / seen as f64, correct as f64 / seen as f64);
            if STOP.load(Ordering::SeqCst) {
                progress.finish_epoch();
                state.batches_done = k + 1;
                eprint!("stopped in epoch {epoch} after batch {}/{n_batches}", k + 1);
                match &r.out {
                    Some(dir) => {
                        save_checkpoint(dir, "last.safetensors", r, &model, &state)?;
                        eprintln!("; wrote {} (`--resume` continues)", dir.join("last.safetensors").display());
                    }
                    None => eprintln!("; no --out, no checkpoint"),
                }
                return Ok(Outcome { test_acc: state.test_acc, interrupted: true });
            }
        }
        progress.finish_epoch();
        let (seconds, ips) = (progress.epoch_seconds(), progress.images_per_second());
        state.test_acc = pct(accuracy(&model, test_set, 500)?);
        state.epochs_done = epoch;
        let (loss, train_acc, test_acc) = (loss_sum / seen.max(1) as f64, pct((correct, seen)), state.test_acc);
        if r.verbose {
            outln!(
                "epoch {epoch:>2}/{}  loss {loss:.4}  train acc {train_acc:5.1}%  test acc {test_acc:5.1}%  ({seconds:.1} s)",
                r.epochs
            );
        }
        if let Some(f) = log.as_mut() {
            let line = log_line(r, epoch, loss, train_acc, test_acc, seconds, ips);
            writeln!(f, "{line}").map_err(|e| format!("log.jsonl: {e}"))?;
        }
        if let Some(dir) = &r.out {
            let better = test_acc > state.best || epoch == 1;
            state.best = state.best.max(test_acc);
            save_checkpoint(dir, "last.safetensors", r, &model, &state)?;
            if better {
                save_checkpoint(dir, "best.safetensors", r, &model, &state)?;
            }
        }
    }
    let (c, n) = accuracy(&model, test_set, 500)?;
    if r.verbose {
        outln!("final test accuracy {:.2}% ({c}/{n})", pct((c, n)));
    }
    Ok(Outcome { test_acc: pct((c, n)), interrupted: false })
}

/// Runs `sparsegrad train`; returns the exit status.
pub fn run(a: &TrainArgs) -> i32 {
    if a.model == "list" {
        return match model_list() {
            Ok(s) => {
                out!("{s}");
                0
            }
            Err(e) => fail("train", e, 1),
        };
    }
    if let Err(e) = nets::find(&a.model) {
        return fail("train", format!("{e}; `--model list` lists them"), USAGE);
    }
    if a.unlabelled_weight > 0.0 && a.labels_per_class.is_none() {
        return fail("train", "--unlabelled-weight needs --labels-per-class (the rest is the unlabelled part)", USAGE);
    }
    if let Err(e) = set_threads(a.threads) {
        return fail("train", e, 1);
    }
    let (split, source) = match load_dataset(a.data.dataset, a.data.data_dir.as_deref()) {
        Ok(v) => v,
        Err(e) => return fail("train", e, 1),
    };
    let r = Run {
        model: a.model.clone(),
        dataset: a.data.dataset,
        source,
        epochs: a.epochs as usize,
        batch: a.batch as usize,
        optimizer: a.optimizer,
        lr: a.lr.unwrap_or(match a.optimizer {
            OptimizerName::Sgd => 0.01,
            OptimizerName::Adam => 0.001,
        }),
        momentum: a.momentum,
        weight_decay: a.weight_decay,
        seed: a.seed,
        limit: a.limit.map(|l| l as usize),
        labels_per_class: a.labels_per_class.map(|k| k as usize),
        unlabelled_weight: a.unlabelled_weight,
        data_dir: a.data.data_dir.clone(),
        out: a.out.clone(),
        verbose: true,
        resume: a.resume,
    };
    install_stop_handler();
    // On a pool thread the kernels' parallel loops start without waking a worker and putting
    // this thread to sleep each time (~25% of a LeNet step on 2 threads; bench/README.md).
    match rayon::scope(|_| train_run(&r, &split)) {
        Ok(o) if o.interrupted => INTERRUPTED,
        Ok(_) => 0,
        Err(e) => fail("train", e, 1),
    }
}

/// The networks the program trains when run without a command, in order: LeNet, and the
/// sparse LeNet beside it once the registry has it.
pub fn demo_models() -> Vec<&'static str> {
    ["lenet", "sf-lenet"].into_iter().filter(|m| nets::find(m).is_ok()).collect()
}

/// `sparsegrad` without a command: trains the demonstration networks briefly on the embedded
/// MNIST subset and prints their test accuracies.
pub fn demo() -> i32 {
    let split = embedded::mnist_subset();
    install_stop_handler();
    outln!("sparsegrad: training {} on the embedded MNIST subset (1,000 + 1,000 images); `sparsegrad --help` lists the commands", demo_models().join(" and "));
    for m in demo_models() {
        let r = Run {
            model: m.to_string(),
            dataset: DatasetName::Mnist,
            source: "the embedded MNIST subset".to_string(),
            epochs: 3,
            batch: 32,
            optimizer: OptimizerName::Sgd,
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 0.0,
            seed: 0,
            limit: None,
            labels_per_class: None,
            unlabelled_weight: 0.0,
            data_dir: None,
            out: None,
            verbose: false,
            resume: false,
        };
        match rayon::scope(|_| train_run(&r, &split)) {
            Ok(o) if o.interrupted => return INTERRUPTED,
            Ok(o) => outln!("{m:<10} test accuracy {:.1}% after {} epochs", o.test_acc, r.epochs),
            Err(e) => return fail(m, e, 1),
        }
    }
    0
}

/// Runs `sparsegrad eval`: the checkpoint's network on a data set's test split.
pub fn eval(a: &EvalArgs) -> i32 {
    if let Err(e) = set_threads(a.threads) {
        return fail("eval", e, 1);
    }
    let (model, c) = match load_model(&a.checkpoint) {
        Ok(v) => v,
        Err(e) => return fail("eval", e, 1),
    };
    let trained_on = c.metadata.get("run.dataset").and_then(|d| DatasetName::from_str(d, false).ok());
    let Some(dataset) = a.dataset.or(trained_on) else {
        return fail("eval", "the checkpoint does not say which data set it was trained on; pass --dataset", USAGE);
    };
    let data_dir = a
        .data_dir
        .clone()
        .or_else(|| (Some(dataset) == trained_on).then(|| c.metadata.get("run.data_dir").map(PathBuf::from)).flatten());
    let (split, source) = match load_dataset(dataset, data_dir.as_deref()) {
        Ok(v) => v,
        Err(e) => return fail("eval", e, 1),
    };
    let test = &split.test;
    if test.image_shape() != model.config.input || test.num_classes() != model.config.classes {
        return fail(
            "eval",
            format!(
                "{source} has {} classes of {:?} images; the network takes {} classes of {:?}",
                test.num_classes(),
                test.image_shape(),
                model.config.classes,
                model.config.input
            ),
            1,
        );
    }
    match rayon::scope(|_| accuracy(&model, test, a.batch as usize)) {
        Ok((k, n)) => {
            outln!(
                "{}: {} on {source} (test split): accuracy {:.2}% ({k}/{n})",
                a.checkpoint.display(),
                model.config.name,
                pct((k, n))
            );
            0
        }
        Err(e) => fail("eval", e, 1),
    }
}

/// Runs `sparsegrad inspect`: every tensor with its shape and fraction of exact zeros, then the
/// run's configuration.
pub fn inspect(a: &InspectArgs) -> i32 {
    let c = match ckpt::load(&a.checkpoint) {
        Ok(c) => c,
        Err(e) => return fail("inspect", e, 1),
    };
    let zeros = |t: &engine::Tensor<f32>| {
        let v = t.to_vec();
        v.iter().filter(|x| **x == 0.0).count() as f64 / v.len().max(1) as f64
    };
    if a.json {
        let tensors: Vec<serde_json::Value> = c
            .tensors
            .iter()
            .map(|(n, t)| serde_json::json!({"name": n, "shape": t.shape(), "sparsity": zeros(t)}))
            .collect();
        outln!("{}", serde_json::json!({"tensors": tensors, "metadata": c.metadata}));
        return 0;
    }
    let mut s =
        format!("{}\n{:<32} {:<20} {:>10} {:>9}\n", a.checkpoint.display(), "tensor", "shape", "elements", "zeros");
    let mut total = (0usize, 0.0f64);
    for (n, t) in &c.tensors {
        let z = zeros(t);
        total.0 += t.numel();
        total.1 += z * t.numel() as f64;
        let _ = writeln!(s, "{n:<32} {:<20} {:>10} {:>8.2}%", format!("{:?}", t.shape()), t.numel(), 100.0 * z);
    }
    let _ = writeln!(
        s,
        "{} tensors, {} elements, {:.2}% exact zeros\nconfiguration:",
        c.tensors.len(),
        total.0,
        100.0 * total.1 / total.0.max(1) as f64
    );
    for (k, v) in &c.metadata {
        let _ = writeln!(s, "  {k} = {v}");
    }
    out!("{s}");
    0
}
