//! `sparsegrad train`, `eval` and `inspect`, and the program's default run (no command).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use autograd::optim::{Adam, Optimizer, Sgd};
use datasets::{embedded, Cifar10, Dataset, FashionMnist, ImageSet, LoaderConfig, Mnist, Split, Svhn};
use engine::Rng;
use models::fit::{
    self, Callback, EpochReport, Fit, FitConfig, Loss, Progress as FitProgress, State as FitState, StepReport,
};
use models::nets::{self, Model, NetConfig};
use safetensors::tensor::{Dtype, SafeTensors};

use super::{fail, set_threads};
use clap::ValueEnum;

use crate::checkpoint::{self, RunInfo};
use crate::cli::{DatasetName, EvalArgs, InspectArgs, OptimizerName, TrainArgs, USAGE};
use crate::experiments::{self, limited_supervision::LimitedSupervision, Common};
use crate::progress::Progress;
use crate::report::grid::Shard;
use crate::{out, outln};

/// Set by the Ctrl-C handler: the training loop (`models::fit`) finishes its step, the
/// program writes a checkpoint and stops.
fn stop_flag() -> Arc<AtomicBool> {
    static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    STOP.get_or_init(|| Arc::new(AtomicBool::new(false))).clone()
}

/// Exit status after an interrupted run (128 + SIGINT, as a shell reports it).
pub const INTERRUPTED: i32 = 130;

/// Installs the Ctrl-C handler once (a second Ctrl-C while stopping ends the process).
fn install_stop_handler() {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return;
    }
    let stop = stop_flag();
    let r = ctrlc::set_handler(move || {
        if stop.swap(true, Ordering::SeqCst) {
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
        // The standard files, else the ones staged on this project's machines.
        DatasetName::Cifar100 => {
            return experiments::common::open_cifar100(d).map(|s| (s, format!("cifar100 in {}", d.display())))
        }
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

/// What one run trains.
struct Run {
    model: String,
    dataset: DatasetName,
    data_dir: Option<PathBuf>,
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
    out: Option<PathBuf>,
    /// Print the per-epoch lines (the default run prints only the summary).
    verbose: bool,
    /// Continue from `out/last.safetensors`.
    resume: bool,
}

impl Run {
    /// The data set as recorded in a checkpoint: `name`, or `name:dir`.
    fn dataset_tag(&self) -> String {
        match &self.data_dir {
            Some(d) => format!("{}:{}", self.dataset.as_str(), d.display()),
            None => self.dataset.as_str().to_string(),
        }
    }
}

/// Result of a run: whether it was interrupted.
struct Outcome {
    interrupted: bool,
}

fn optimizer(r: &Run) -> Box<dyn Optimizer<f32>> {
    match r.optimizer {
        OptimizerName::Sgd => Box::new(Sgd::new(r.lr).momentum(r.momentum).weight_decay(r.weight_decay)),
        OptimizerName::Adam => Box::new(Adam::new(r.lr).weight_decay(r.weight_decay)),
    }
}

/// The run's callbacks: progress on stderr, the epoch lines on stdout, `log.jsonl`, and the
/// checkpoints (`checkpoint::Saver`).
struct Reporter<'r> {
    run: &'r Run,
    /// Images in the training set (the last batch may be short).
    train_len: usize,
    progress: Progress,
    epoch: Option<usize>,
    loss_sum: f64,
    steps: usize,
    last_test_acc: Option<f64>,
    log: Option<std::fs::File>,
    saver: Option<checkpoint::Saver>,
}

impl Callback for Reporter<'_> {
    fn on_step(&mut self, s: &StepReport) {
        if self.epoch != Some(s.epoch) {
            self.epoch = Some(s.epoch);
            // Heard after the epoch's first step: start the clock that step's time ago.
            let first = self.run.batch.min(self.train_len);
            let ago = std::time::Duration::from_secs_f64(first as f64 / s.images_per_s.max(1e-9));
            self.progress.start_epoch_since(s.epoch + 1, s.batches, ago);
            (self.loss_sum, self.steps) = (0.0, 0);
        }
        self.loss_sum += s.loss;
        self.steps += 1;
        let images =
            if s.batch + 1 == s.batches { self.train_len - (s.batches - 1) * self.run.batch } else { self.run.batch };
        self.progress.batch(s.batch + 1, images, self.loss_sum / self.steps as f64, self.last_test_acc);
    }

    fn on_epoch(&mut self, e: &EpochReport, state: &FitState<'_>) -> Result<(), String> {
        self.progress.finish_epoch();
        self.epoch = None;
        let test_acc = e.val.and_then(|v| v.accuracy).map(|a| 100.0 * a);
        self.last_test_acc = test_acc;
        let train_acc = e.train_acc.map(|a| 100.0 * a);
        let ips = self.progress.images_per_second();
        if self.run.verbose {
            outln!(
                "epoch {:>2}/{}  loss {:.4}  train acc {:5.1}%  test acc {:5.1}%  ({:.1} s)",
                e.epoch + 1,
                e.epochs,
                e.train_loss,
                train_acc.unwrap_or(f64::NAN),
                test_acc.unwrap_or(f64::NAN),
                e.seconds
            );
        }
        if let Some(f) = self.log.as_mut() {
            let line = serde_json::json!({
                "epoch": e.epoch + 1,
                "epochs": e.epochs,
                "model": self.run.model,
                "dataset": self.run.dataset.as_str(),
                "loss": e.train_loss,
                "train_acc": train_acc,
                "test_acc": test_acc,
                "test_loss": e.val.map(|v| v.loss),
                "lr": e.lr,
                "seconds": e.seconds,
                "images_per_s": ips,
                "best": e.best,
            });
            writeln!(f, "{line}").map_err(|err| format!("log.jsonl: {err}"))?;
        }
        match self.saver.as_mut() {
            Some(s) => s.on_epoch(e, state),
            None => Ok(()),
        }
    }
}

fn train_run(r: &Run, split: &Split) -> Result<Outcome, String> {
    let mut train_set: ImageSet = split.train.clone();
    // The unlabelled rest of the split, when the run is semi-supervised (`run` has checked
    // that the network has an unsupervised term).
    let mut unlabelled: Option<ImageSet> = None;
    if let Some(k) = r.labels_per_class {
        let ls = train_set.limited(k, r.seed).map_err(|e| e.to_string())?;
        if r.unlabelled_weight > 0.0 {
            unlabelled = Some(ls.unlabelled);
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
    let mut model = Model::<f32>::new(&cfg, &mut Rng::new(r.seed))?;
    let mut opt = optimizer(r);
    let mut from = FitProgress::default();
    let last = r.out.as_ref().map(|d| d.join("last.safetensors"));
    if r.resume {
        let last = last.as_deref().ok_or("--resume needs --out")?;
        let loaded = checkpoint::load(last, &mut model, Some(opt.as_mut())).map_err(|e| e.to_string())?;
        from = loaded.progress;
        if r.verbose {
            outln!(
                "resuming from {} at epoch {}, batch {} ({} steps done; optimiser state {})",
                last.display(),
                from.epoch + 1,
                from.batch,
                from.step,
                if loaded.optimizer_loaded { "restored" } else { "fresh" }
            );
        }
    }
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
    let log = match &r.out {
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
    let saver = r.out.as_ref().map(|d| checkpoint::Saver {
        last: d.join("last.safetensors"),
        best: Some(d.join("best.safetensors")),
        dataset: r.dataset_tag(),
    });
    let fit_cfg = FitConfig { epochs: r.epochs, ..FitConfig::new(LoaderConfig::new(r.batch), r.seed) };
    // Semi-supervised: every step adds γ × the network's unsupervised term on a batch of the
    // unlabelled part. `Model::unsupervised` rebuilds the same network with its term; it reads
    // the parameters of the context the fit binds to `model.store`.
    let term_net = match &unlabelled {
        Some(_) => Some(model.unsupervised().ok_or_else(|| no_term(r.unlabelled_weight, &r.model))??),
        None => None,
    };
    let mut fit = Fit::new(&train_set, fit_cfg).validate_on(test_set).stop_flag(stop_flag());
    if let (Some(data), Some(net)) = (&unlabelled, &term_net) {
        if r.verbose {
            outln!("semi-supervised: {} unlabelled images, weight {}", data.len(), r.unlabelled_weight);
        }
        fit = fit.semi_supervised(fit::Unsupervised {
            data,
            batch_size: r.batch,
            gamma: r.unlabelled_weight,
            term: Box::new(move |_model, cx, x| net.unsupervised_loss(cx, x)),
        });
    }
    let mut reporter = Reporter {
        run: r,
        train_len: train_set.len(),
        progress: Progress::new(r.epochs),
        epoch: None,
        loss_sum: 0.0,
        steps: 0,
        last_test_acc: None,
        log,
        saver,
    };
    let out = fit.run(&mut model, opt.as_mut(), from, &mut reporter).map_err(|e| e.to_string())?;
    reporter.progress.finish_epoch();
    if out.stopped {
        let p = out.progress;
        eprint!("stopped at epoch {}, batch {}", p.epoch + 1, p.batch);
        match &last {
            Some(last) => {
                let info = RunInfo { progress: p, seed: r.seed, dataset: r.dataset_tag(), rng: None };
                checkpoint::save(last, &model, Some(opt.as_ref()), &info).map_err(|e| e.to_string())?;
                eprintln!("; wrote {} (`--resume` continues)", last.display());
            }
            None => eprintln!("; no --out, no checkpoint"),
        }
        return Ok(Outcome { interrupted: true });
    }
    let test_acc = match out.last.and_then(|e| e.val).and_then(|v| v.accuracy) {
        Some(a) => 100.0 * a,
        None => {
            // Nothing left to train (a resumed run that was complete): evaluate now.
            let e = fit.evaluate(&model, test_set).map_err(|e| e.to_string())?;
            100.0 * e.accuracy.unwrap_or(f64::NAN)
        }
    };
    if r.verbose {
        let n = test_set.len();
        outln!("final test accuracy {test_acc:.2}% ({}/{n})", (test_acc / 100.0 * n as f64).round() as usize);
    }
    Ok(Outcome { interrupted: false })
}

/// The usage error of `--unlabelled-weight γ > 0` on a network without an unsupervised term.
fn no_term(gamma: f64, model: &str) -> String {
    format!(
        "--unlabelled-weight {gamma}: network '{model}' has no unsupervised loss (those that do: {})",
        nets::unsupervised::NAMES.join(", ")
    )
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
    if a.unlabelled_weight > 0.0 && !nets::unsupervised::has_unsupervised(&a.model) {
        return fail("train", no_term(a.unlabelled_weight, &a.model), USAGE);
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
        data_dir: a.data.data_dir.clone(),
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

/// The reduced limited-supervision experiment the program runs without a command: LeNet
/// beside the SF LeNet on the embedded MNIST subset (1,000 + 1,000 images, so it needs no
/// files), 5 / 20 / all 100 labels per class, 2 trials of 40 SGD steps of 32, scored on the
/// 1,000 embedded test images. About two minutes on 2 cores.
pub fn demo_experiment() -> LimitedSupervision {
    LimitedSupervision {
        dataset: "mnist-embedded".into(),
        nets: vec!["lenet".into(), "sf-lenet".into()],
        labels: vec![Some(5), Some(20), None],
        trials: 2,
        steps: 40,
        batch: 32,
        lr: 0.01,
        test_images: 1000,
        unlabelled_weight: 0.0,
    }
}

/// `sparsegrad` without a command: runs [`demo_experiment`] afresh and prints its table; its
/// cells, table and figure go to `sparsegrad-demo` in the temporary directory (emptied first).
pub fn demo() -> i32 {
    let e = demo_experiment();
    outln!(
        "sparsegrad: LeNet vs the sparse-factorization LeNet with few labels, on the embedded MNIST subset \
         (a reduced `sparsegrad experiment limited-supervision`; `sparsegrad --help` lists the commands)"
    );
    let out = std::env::temp_dir().join("sparsegrad-demo");
    let _ = std::fs::remove_dir_all(&out);
    let common =
        Common { out: out.clone(), quick: false, shard: Shard::default(), seed: 0, data_dir: None, quiet: false };
    if let Err(err) = ctrlc::set_handler(|| {
        if experiments::interrupted() {
            std::process::exit(INTERRUPTED);
        }
        experiments::request_stop();
    }) {
        eprintln!("warning: no Ctrl-C handler ({err})");
    }
    match rayon::scope(|_| experiments::run(&e, &common)) {
        Ok(()) => 0,
        Err(_) if experiments::interrupted() => INTERRUPTED,
        Err(msg) => fail("sparsegrad", msg, 1),
    }
}

/// Runs `sparsegrad eval`: the checkpoint's network on a data set's test split.
pub fn eval(a: &EvalArgs) -> i32 {
    if let Err(e) = set_threads(a.threads) {
        return fail("eval", e, 1);
    }
    let path = &a.checkpoint;
    let cfg = match checkpoint::read_config(path) {
        Ok(Some(c)) => c,
        Ok(None) => return fail("eval", format!("{}: no network configuration in its metadata", path.display()), 1),
        Err(e) => return fail("eval", e, 1),
    };
    let mut model = match Model::<f32>::new(&cfg, &mut Rng::new(0)) {
        Ok(m) => m,
        Err(e) => return fail("eval", e, 1),
    };
    let loaded = match checkpoint::load(path, &mut model, None) {
        Ok(l) => l,
        Err(e) => return fail("eval", e, 1),
    };
    // The training run's data set: `name` or `name:dir`.
    let tag = loaded.dataset.unwrap_or_default();
    let (name, dir) = match tag.split_once(':') {
        Some((n, d)) => (n, Some(PathBuf::from(d))),
        None => (tag.as_str(), None),
    };
    let trained_on = DatasetName::from_str(name, false).ok();
    let Some(dataset) = a.dataset.or(trained_on) else {
        return fail("eval", "the checkpoint does not say which data set it was trained on; pass --dataset", USAGE);
    };
    let data_dir = a.data_dir.clone().or(if Some(dataset) == trained_on { dir } else { None });
    let (split, source) = match load_dataset(dataset, data_dir.as_deref()) {
        Ok(v) => v,
        Err(e) => return fail("eval", e, 1),
    };
    let test = &split.test;
    if test.image_shape() != cfg.input || test.num_classes() != cfg.classes {
        return fail(
            "eval",
            format!(
                "{source} has {} classes of {:?} images; the network takes {} classes of {:?}",
                test.num_classes(),
                test.image_shape(),
                cfg.classes,
                cfg.input
            ),
            1,
        );
    }
    let batch = a.batch as usize;
    let res = rayon::scope(|_| fit::evaluate(&model, test, &Loss::CrossEntropy, &LoaderConfig::new(batch), batch));
    match res {
        Ok(e) => {
            let acc = e.accuracy.unwrap_or(f64::NAN);
            outln!(
                "{}: {} on {source} (test split): accuracy {:.2}% ({}/{}), loss {:.4}",
                path.display(),
                cfg.name,
                100.0 * acc,
                (acc * e.n as f64).round() as usize,
                e.n,
                e.loss
            );
            0
        }
        Err(e) => fail("eval", e, 1),
    }
}

/// Runs `sparsegrad inspect`: every tensor with its dtype, shape and fraction of exact zeros,
/// then the metadata (the network's configuration and the run's).
pub fn inspect(a: &InspectArgs) -> i32 {
    let p = a.checkpoint.display();
    let bytes = match std::fs::read(&a.checkpoint) {
        Ok(b) => b,
        Err(e) => return fail("inspect", format!("{p}: {e}"), 1),
    };
    let parsed = SafeTensors::read_metadata(&bytes).and_then(|(_, h)| Ok((h, SafeTensors::deserialize(&bytes)?)));
    let (header, st) = match parsed {
        Ok(v) => v,
        Err(e) => return fail("inspect", format!("{p}: not a valid safetensors file: {e}"), 1),
    };
    let metadata: BTreeMap<String, String> =
        header.metadata().as_ref().map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default();
    let mut tensors = st.tensors();
    tensors.sort_by_key(|(_, v)| v.data().as_ptr() as usize);
    // Fraction of elements that are exactly zero (any sign), by dtype.
    let zeros = |v: &safetensors::tensor::TensorView<'_>| -> Option<f64> {
        let d = v.data();
        let z = match v.dtype() {
            Dtype::F32 => d.chunks_exact(4).filter(|c| f32::from_le_bytes((*c).try_into().unwrap()) == 0.0).count(),
            Dtype::F64 => d.chunks_exact(8).filter(|c| f64::from_le_bytes((*c).try_into().unwrap()) == 0.0).count(),
            Dtype::I64 | Dtype::U64 => d.chunks_exact(8).filter(|c| c.iter().all(|&b| b == 0)).count(),
            _ => return None,
        };
        let n: usize = v.shape().iter().product();
        Some(if n == 0 { 0.0 } else { z as f64 / n as f64 })
    };
    if a.json {
        let list: Vec<serde_json::Value> = tensors
            .iter()
            .map(|(n, v)| {
                serde_json::json!({"name": n, "dtype": v.dtype().to_string(), "shape": v.shape(), "sparsity": zeros(v)})
            })
            .collect();
        outln!("{}", serde_json::json!({"tensors": list, "metadata": metadata}));
        return 0;
    }
    let mut s = format!("{p}\n{:<40} {:<5} {:<20} {:>10} {:>9}\n", "tensor", "dtype", "shape", "elements", "zeros");
    let (mut total, mut total_zeros) = (0usize, 0.0f64);
    for (n, v) in &tensors {
        let numel: usize = v.shape().iter().product();
        let z = zeros(v);
        total += numel;
        total_zeros += z.unwrap_or(0.0) * numel as f64;
        let zs = z.map_or("-".to_string(), |z| format!("{:.2}%", 100.0 * z));
        let _ =
            writeln!(s, "{n:<40} {:<5} {:<20} {numel:>10} {zs:>9}", v.dtype().to_string(), format!("{:?}", v.shape()));
    }
    let _ = writeln!(
        s,
        "{} tensors, {total} elements, {:.2}% exact zeros\nconfiguration:",
        tensors.len(),
        100.0 * total_zeros / total.max(1) as f64
    );
    for (k, v) in &metadata {
        let _ = writeln!(s, "  {k} = {v}");
    }
    out!("{s}");
    0
}
