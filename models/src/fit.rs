//! One training loop for every network and loss: [`Fit::run`].
//!
//! A step draws a labelled batch from the [`Loader`], runs the network in train mode, takes
//! the [`Loss`] (mean cross-entropy, or any closure: a reconstruction NLL), adds
//! `γ × term(unlabelled batch)` when the run is semi-supervised ([`Unsupervised`]), runs
//! backward, writes the context's buffers back ([`Ctx::finish`]: BatchNorm's running
//! statistics) and makes one optimiser step ([`Store::step`](crate::layers::Store::step),
//! post-steps included). After every epoch the model is evaluated on the validation set in
//! eval mode without gradients ([`evaluate`]) and the [`Callback`]s hear of it; they also
//! hear of every step (loss, images/s), which is where progress bars and checkpoints live.
//!
//! **Determinism.** Everything random in a step is a function of `(seed, epoch, batch)`:
//! the loader's order and augmentation (`Loader::order(epoch)`, see `datasets::loader`), the
//! context's stream (Dropout masks; [`step_seed`]) and the unlabelled batch ([`Unsupervised`]).
//! Nothing depends on the number of threads (the kernels' results do not either), so the same
//! seed gives bit-identical weights, and a run resumed from a [`Progress`] (with the weights,
//! buffers and optimiser state saved at that point) continues bit-identically.
//!
//! **Stopping.** A stop flag ([`Fit::stop_flag`]) is checked after every step; when it is set
//! the step in progress finishes, [`Fit::run`] returns with [`Outcome::stopped`] and the
//! caller saves a checkpoint at [`Outcome::progress`].
//!
//! ```
//! use autograd::optim::Sgd;
//! use datasets::{embedded, LoaderConfig};
//! use engine::Rng;
//! use sparsegrad_models::fit::{Fit, FitConfig, Progress};
//! use sparsegrad_models::nets::{Model, NetConfig};
//! let mnist = embedded::mnist_subset();
//! let train = mnist.train.subset(&(0..16).collect::<Vec<_>>());
//! let mut model = Model::<f32>::new(&NetConfig::new("lenet").unwrap(), &mut Rng::new(0)).unwrap();
//! let mut opt = Sgd::new(0.01).momentum(0.9);
//! let cfg = FitConfig { epochs: 1, ..FitConfig::new(LoaderConfig::new(8), 0) };
//! let out = Fit::new(&train, cfg).run(&mut model, &mut opt, Progress::default(), &mut ()).unwrap();
//! assert_eq!((out.progress.epoch, out.progress.step), (1, 2));
//! ```

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use autograd::optim::{LrSchedule, Optimizer};
use autograd::{Reduction, Tape, Var};
use datasets::{Augment, Batch, Dataset, Loader, LoaderConfig};
use engine::Rng;

use crate::layers::{self, Ctx, Mode};
use crate::nets::Model;

/// Mixed into the seed of the per-step context streams (Dropout), so they differ from the
/// loader's streams.
pub const STEP_SALT: u64 = 0x5354_4550_5345_4544; // "STEPSEED"
/// Mixed into the seed of the unlabelled loader.
pub const UNLABELLED_SALT: u64 = 0x554e_4c41_4245_4c44; // "UNLABELD"

/// The seed of the context (Dropout masks) of step `batch` of `epoch`: a function of
/// `(seed, epoch, batch)` only.
pub fn step_seed(seed: u64, epoch: usize, batch: usize) -> u64 {
    Rng::stream(seed ^ STEP_SALT, ((epoch as u64) << 32) | batch as u64).next_u64()
}

/// A loss of the network on a batch: `(model, context, input x, batch) → scalar`.
pub type LossFn<'a> =
    dyn for<'t> Fn(&Model<f32>, &Ctx<'t, f32>, &Var<'t, f32>, &Batch) -> layers::Result<Var<'t, f32>> + 'a;

/// An unsupervised term on an unlabelled input: `(model, context, x) → scalar`.
pub type TermFn<'a> = dyn for<'t> Fn(&Model<f32>, &Ctx<'t, f32>, &Var<'t, f32>) -> layers::Result<Var<'t, f32>> + 'a;

/// What a step minimises on a labelled batch (and what evaluation reports).
pub enum Loss<'a> {
    /// Mean cross-entropy of the network's output (logits `[N, classes]`) against the labels;
    /// accuracy is counted.
    CrossEntropy,
    /// Any scalar loss (a reconstruction NLL, …); no accuracy.
    Custom(Box<LossFn<'a>>),
}

impl<'a> Loss<'a> {
    /// A [`Loss::Custom`] from a closure.
    pub fn custom(
        f: impl for<'t> Fn(&Model<f32>, &Ctx<'t, f32>, &Var<'t, f32>, &Batch) -> layers::Result<Var<'t, f32>> + 'a,
    ) -> Loss<'a> {
        Loss::Custom(Box::new(f))
    }

    /// The loss and (for cross-entropy) the number of correct predictions.
    fn apply<'t>(
        &self,
        model: &Model<f32>,
        cx: &Ctx<'t, f32>,
        x: &Var<'t, f32>,
        b: &Batch,
    ) -> Result<(Var<'t, f32>, Option<usize>), FitError> {
        match self {
            Loss::CrossEntropy => {
                let logits = model.forward(cx, x)?;
                let classes = model.config.classes;
                if logits.shape() != [b.len(), classes] {
                    return Err(FitError::Shape(format!(
                        "{}: cross-entropy needs logits [{}, {classes}], the network gives {:?}",
                        model.config.name,
                        b.len(),
                        logits.shape()
                    )));
                }
                let labels: Vec<usize> = b.y.iter().map(|&y| y as usize).collect();
                if let Some(&y) = labels.iter().find(|&&y| y >= classes) {
                    return Err(FitError::Shape(format!(
                        "{}: label {y} in a batch, the network has {classes} classes",
                        model.config.name
                    )));
                }
                let pred = logits.value().argmax(1);
                let correct = pred.iter().zip(&labels).filter(|(p, y)| p == y).count();
                Ok((logits.cross_entropy(&labels, Reduction::Mean), Some(correct)))
            }
            Loss::Custom(f) => Ok((f(model, cx, x, b)?, None)),
        }
    }
}

/// The unsupervised part of a semi-supervised run: every step adds `gamma × term(u)` for an
/// unlabelled batch `u`. Step `k` of epoch `e` takes batch `k mod n` of the unlabelled
/// loader's epoch `(e << 20) + k / n` (`n` batches per unlabelled epoch; seed
/// `seed ^ UNLABELLED_SALT`), so the unlabelled batch is a function of `(seed, e, k)` too.
pub struct Unsupervised<'a> {
    /// The unlabelled examples (their labels are never read).
    pub data: &'a dyn Dataset,
    /// Unlabelled samples per step (> 0).
    pub batch_size: usize,
    /// Weight of the term.
    pub gamma: f64,
    pub term: Box<TermFn<'a>>,
}

/// A learning-rate schedule evaluated at the start of every epoch: `rule.lr_at(base_lr, epoch)`.
pub struct Schedule {
    pub base_lr: f64,
    pub rule: Box<dyn LrSchedule + Send + Sync>,
}

/// Settings of a run.
pub struct FitConfig {
    /// Epochs in all (a resumed run stops at the same total).
    pub epochs: usize,
    /// Seed of everything random in a step (the loader's seed is set to it).
    pub seed: u64,
    /// Batch size, augmentation, noise, normalisation of the training batches. Evaluation
    /// uses the same normalisation and noise (epoch 0 of the noise streams), no augmentation,
    /// no shuffling, batches of `eval_batch`.
    pub loader: LoaderConfig,
    /// Batch size of evaluation (> 0).
    pub eval_batch: usize,
    /// Learning rate per epoch; `None` keeps the optimiser's rate.
    pub schedule: Option<Schedule>,
    /// Stop after this many optimiser steps in all (mid-epoch, without that epoch's
    /// evaluation), whatever `epochs` says; `None`: run every epoch. For budgets counted in
    /// steps (few labelled images make an epoch one or two batches).
    pub max_steps: Option<u64>,
}

impl FitConfig {
    /// One epoch, batches as `loader` says, evaluation batches of 500, no schedule.
    pub fn new(loader: LoaderConfig, seed: u64) -> FitConfig {
        FitConfig { epochs: 1, seed, loader: loader.seed(seed), eval_batch: 500, schedule: None, max_steps: None }
    }
}

/// Where a run stands: what a checkpoint records so a resumed run continues there.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Progress {
    /// The epoch in progress (0-based); equal to the number of finished epochs when `batch` is 0.
    pub epoch: usize,
    /// Batches of `epoch` already done.
    pub batch: usize,
    /// Optimiser steps done in all.
    pub step: u64,
    /// The best validation accuracy seen at the end of an epoch.
    pub best_val_acc: Option<f64>,
}

/// Loss and accuracy on a data set ([`evaluate`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Eval {
    /// Mean loss per sample.
    pub loss: f64,
    /// Fraction correct, for [`Loss::CrossEntropy`].
    pub accuracy: Option<f64>,
    /// Samples evaluated.
    pub n: usize,
}

/// What a callback hears after every step.
#[derive(Clone, Copy, Debug)]
pub struct StepReport {
    pub epoch: usize,
    /// Index of the batch in its epoch.
    pub batch: usize,
    /// Batches per epoch.
    pub batches: usize,
    /// Steps done in all, this one included.
    pub step: u64,
    /// The step's loss (before the update; the semi-supervised term included).
    pub loss: f64,
    pub lr: f64,
    /// Labelled images per second of this step.
    pub images_per_s: f64,
}

/// What a callback hears after every epoch.
#[derive(Clone, Copy, Debug)]
pub struct EpochReport {
    pub epoch: usize,
    pub epochs: usize,
    /// Mean training loss over the epoch's steps run in this call (NaN if none).
    pub train_loss: f64,
    /// Training accuracy over the same steps, for [`Loss::CrossEntropy`].
    pub train_acc: Option<f64>,
    /// Evaluation on the validation set, if any.
    pub val: Option<Eval>,
    pub lr: f64,
    /// Seconds the epoch took (training and evaluation).
    pub seconds: f64,
    /// The validation accuracy is the best so far (a "best" checkpoint is due).
    pub best: bool,
}

/// The run as a callback sees it at the end of an epoch: enough to save a checkpoint.
pub struct State<'m> {
    pub model: &'m Model<f32>,
    pub opt: &'m dyn Optimizer<f32>,
    /// Where a run resumed from this point starts.
    pub progress: Progress,
    pub seed: u64,
}

/// Hears of a run's steps and epochs: progress output, logs, checkpoints.
pub trait Callback {
    /// After every step.
    fn on_step(&mut self, _report: &StepReport) {}

    /// After every epoch (after evaluation).
    ///
    /// # Errors
    /// An error (a checkpoint could not be written) ends the run with [`FitError::Callback`].
    fn on_epoch(&mut self, _report: &EpochReport, _state: &State<'_>) -> Result<(), String> {
        Ok(())
    }
}

impl Callback for () {}

impl<C: Callback + ?Sized> Callback for &mut C {
    fn on_step(&mut self, r: &StepReport) {
        (**self).on_step(r)
    }
    fn on_epoch(&mut self, r: &EpochReport, s: &State<'_>) -> Result<(), String> {
        (**self).on_epoch(r, s)
    }
}

impl<A: Callback, B: Callback> Callback for (A, B) {
    fn on_step(&mut self, r: &StepReport) {
        self.0.on_step(r);
        self.1.on_step(r);
    }
    fn on_epoch(&mut self, r: &EpochReport, s: &State<'_>) -> Result<(), String> {
        self.0.on_epoch(r, s)?;
        self.1.on_epoch(r, s)
    }
}

/// Closures as a [`Callback`]: `Hooks::new().step(|r| …).epoch(|r, s| …)`.
#[derive(Default)]
pub struct Hooks<'a> {
    #[allow(clippy::type_complexity)]
    step: Option<Box<dyn FnMut(&StepReport) + 'a>>,
    #[allow(clippy::type_complexity)]
    epoch: Option<Box<dyn FnMut(&EpochReport, &State<'_>) -> Result<(), String> + 'a>>,
}

impl<'a> Hooks<'a> {
    pub fn new() -> Self {
        Hooks { step: None, epoch: None }
    }
    /// Runs `f` after every step.
    pub fn step(mut self, f: impl FnMut(&StepReport) + 'a) -> Self {
        self.step = Some(Box::new(f));
        self
    }
    /// Runs `f` after every epoch.
    pub fn epoch(mut self, f: impl FnMut(&EpochReport, &State<'_>) -> Result<(), String> + 'a) -> Self {
        self.epoch = Some(Box::new(f));
        self
    }
}

impl Callback for Hooks<'_> {
    fn on_step(&mut self, r: &StepReport) {
        if let Some(f) = &mut self.step {
            f(r)
        }
    }
    fn on_epoch(&mut self, r: &EpochReport, s: &State<'_>) -> Result<(), String> {
        match &mut self.epoch {
            Some(f) => f(r, s),
            None => Ok(()),
        }
    }
}

/// How [`Fit::run`] ended (errors aside).
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// Where a resumed run would start.
    pub progress: Progress,
    /// The stop flag ended the run after a step (otherwise all epochs ran).
    pub stopped: bool,
    /// The last finished epoch's report.
    pub last: Option<EpochReport>,
}

/// An error that ends a run.
#[derive(Debug, Clone)]
pub enum FitError {
    /// The forward of a layer failed.
    Layer(layers::Error),
    /// A shape or label that does not fit the network.
    Shape(String),
    /// The loss was not finite (NaN or infinite) at this step.
    Diverged { epoch: usize, batch: usize, loss: f64 },
    /// A callback failed (a checkpoint could not be written).
    Callback(String),
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FitError::Layer(e) => write!(f, "{e}"),
            FitError::Shape(s) | FitError::Callback(s) => f.write_str(s),
            FitError::Diverged { epoch, batch, loss } => {
                write!(
                    f,
                    "the loss became {loss} at epoch {}, batch {} (try a smaller learning rate)",
                    epoch + 1,
                    batch
                )
            }
        }
    }
}

impl std::error::Error for FitError {}

impl From<layers::Error> for FitError {
    fn from(e: layers::Error) -> Self {
        FitError::Layer(e)
    }
}

impl From<autograd::Error> for FitError {
    fn from(e: autograd::Error) -> Self {
        FitError::Layer(layers::Error::Autograd(e))
    }
}

/// A training run: data, loss, settings. Build with [`Fit::new`] and the setters, then
/// [`Fit::run`].
pub struct Fit<'a> {
    pub train: &'a dyn Dataset,
    pub val: Option<&'a dyn Dataset>,
    pub loss: Loss<'a>,
    pub unsupervised: Option<Unsupervised<'a>>,
    pub config: FitConfig,
    pub stop: Option<Arc<AtomicBool>>,
}

impl<'a> Fit<'a> {
    /// Cross-entropy on `train`, no validation set, no stop flag.
    pub fn new(train: &'a dyn Dataset, config: FitConfig) -> Fit<'a> {
        Fit { train, val: None, loss: Loss::CrossEntropy, unsupervised: None, config, stop: None }
    }

    /// Evaluates on `val` after every epoch.
    pub fn validate_on(mut self, val: &'a dyn Dataset) -> Self {
        self.val = Some(val);
        self
    }

    pub fn loss(mut self, loss: Loss<'a>) -> Self {
        self.loss = loss;
        self
    }

    /// Adds `gamma × term` on unlabelled batches to every step.
    pub fn semi_supervised(mut self, u: Unsupervised<'a>) -> Self {
        self.unsupervised = Some(u);
        self
    }

    /// Ends the run after the step during which `flag` becomes true.
    pub fn stop_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.stop = Some(flag);
        self
    }

    fn loader(&self) -> Loader<'a, dyn Dataset + 'a> {
        Loader::new(self.train, self.config.loader.clone().seed(self.config.seed))
    }

    /// Batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.loader().num_batches()
    }

    /// Trains `model` with `opt` from `from` (`Progress::default()` for a fresh run; a
    /// checkpoint's progress to resume) to the end of `config.epochs`, or until the stop flag.
    ///
    /// # Errors
    /// [`FitError`]: a forward that fails, logits that do not fit the labels, a loss that is
    /// not finite, a callback's error. The model holds the weights of the last step made.
    pub fn run(
        &self,
        model: &mut Model<f32>,
        opt: &mut dyn Optimizer<f32>,
        from: Progress,
        callbacks: &mut dyn Callback,
    ) -> Result<Outcome, FitError> {
        let cfg = &self.config;
        let loader = self.loader();
        let batches = loader.num_batches();
        let ulo = self.unsupervised.as_ref().map(|u| {
            let c = LoaderConfig { batch_size: u.batch_size, ..cfg.loader.clone() }
                .seed(cfg.seed ^ UNLABELLED_SALT)
                .drop_last(false);
            Loader::new(u.data, c)
        });
        let mut progress = from;
        let mut last = None;
        if batches == 0 && cfg.epochs > 0 {
            return Err(FitError::Shape(format!(
                "fit: no training batch (the training set has {} images, batch size {})",
                self.train.len(),
                cfg.loader.batch_size
            )));
        }
        while progress.epoch < cfg.epochs {
            let epoch = progress.epoch;
            let start = Instant::now();
            if let Some(s) = &cfg.schedule {
                opt.set_lr(s.rule.lr_at(s.base_lr, epoch));
            }
            let (mut loss_sum, mut seen, mut correct, mut counted) = (0.0, 0usize, 0usize, false);
            let mut it = loader.epoch(epoch as u64);
            let mut next = if progress.batch > 0 { it.nth(progress.batch) } else { it.next() };
            while let Some(b) = next {
                let t0 = Instant::now();
                let k = progress.batch;
                let ub = match (&ulo, &self.unsupervised) {
                    (Some(ul), Some(_)) => {
                        let n = ul.num_batches().max(1);
                        ul.epoch(((epoch as u64) << 20) + (k / n) as u64).nth(k % n)
                    }
                    _ => None,
                };
                let (loss, c) = self.step(model, opt, &b, ub.as_ref(), step_seed(cfg.seed, epoch, k))?;
                if !loss.is_finite() {
                    return Err(FitError::Diverged { epoch, batch: k, loss });
                }
                loss_sum += loss * b.len() as f64;
                seen += b.len();
                if let Some(c) = c {
                    correct += c;
                    counted = true;
                }
                progress.batch += 1;
                progress.step += 1;
                let secs = t0.elapsed().as_secs_f64();
                callbacks.on_step(&StepReport {
                    epoch,
                    batch: k,
                    batches,
                    step: progress.step,
                    loss,
                    lr: opt.lr(),
                    images_per_s: b.len() as f64 / secs.max(1e-9),
                });
                drop(b);
                if self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst)) {
                    return Ok(Outcome { progress, stopped: true, last });
                }
                if cfg.max_steps.is_some_and(|m| progress.step >= m) {
                    return Ok(Outcome { progress, stopped: false, last });
                }
                next = it.next();
            }
            let val = match self.val {
                Some(v) => Some(self.evaluate(model, v)?),
                None => None,
            };
            let val_acc = val.and_then(|v| v.accuracy);
            let best = match (val_acc, progress.best_val_acc) {
                (Some(a), Some(b)) => a > b,
                (Some(_), None) => true,
                _ => false,
            };
            if best {
                progress.best_val_acc = val_acc;
            }
            progress.epoch += 1;
            progress.batch = 0;
            let report = EpochReport {
                epoch,
                epochs: cfg.epochs,
                train_loss: if seen > 0 { loss_sum / seen as f64 } else { f64::NAN },
                train_acc: (counted && seen > 0).then(|| correct as f64 / seen as f64),
                val,
                lr: opt.lr(),
                seconds: start.elapsed().as_secs_f64(),
                best,
            };
            let state = State { model, opt: &*opt, progress, seed: cfg.seed };
            callbacks.on_epoch(&report, &state).map_err(FitError::Callback)?;
            last = Some(report);
        }
        Ok(Outcome { progress, stopped: false, last })
    }

    /// One step: forward, loss (+ γ·term), backward, buffers back, optimiser step. Returns
    /// the loss and the correct predictions (cross-entropy).
    fn step(
        &self,
        model: &mut Model<f32>,
        opt: &mut dyn Optimizer<f32>,
        b: &Batch,
        ub: Option<&Batch>,
        seed: u64,
    ) -> Result<(f64, Option<usize>), FitError> {
        // The tape (and every reference to the parameters' storage) is dropped before the
        // update, so the optimiser updates the parameters in place instead of copying them.
        let (loss, correct, grads) = {
            let tape = Tape::new();
            let cx = model.store.bind(&tape, Mode::Train, seed);
            let (mut loss, correct) = self.loss.apply(model, &cx, &tape.constant(b.x.clone()), b)?;
            if let (Some(u), Some(ub)) = (&self.unsupervised, ub) {
                let term = (u.term)(model, &cx, &tape.constant(ub.x.clone()))?;
                loss = loss.add(&term.mul_scalar(u.gamma));
            }
            let g = tape.backward(&loss)?;
            let grads = cx.grads(&g);
            let value = loss.item();
            cx.finish(&mut model.store);
            (value, correct, grads)
        };
        model.store.step(opt, &grads);
        Ok((loss, correct))
    }

    /// [`evaluate`] with this run's loss and loader settings.
    ///
    /// # Errors
    /// As [`evaluate`].
    pub fn evaluate(&self, model: &Model<f32>, data: &dyn Dataset) -> Result<Eval, FitError> {
        evaluate(model, data, &self.loss, &self.config.loader, self.config.eval_batch)
    }
}

/// The mean loss (and accuracy, for cross-entropy) of `model` on `data`, in eval mode without
/// gradients; batches of `batch` in dataset order with `loader`'s normalisation and noise
/// (epoch 0), no augmentation. Buffers are not changed.
///
/// # Errors
/// As [`Fit::run`].
pub fn evaluate(
    model: &Model<f32>,
    data: &dyn Dataset,
    loss: &Loss<'_>,
    loader: &LoaderConfig,
    batch: usize,
) -> Result<Eval, FitError> {
    let cfg =
        LoaderConfig { batch_size: batch, ..loader.clone() }.shuffle(false).drop_last(false).augment(Augment::none());
    let lo = Loader::new(data, cfg);
    let (mut sum, mut n, mut correct, mut counted) = (0.0, 0usize, 0usize, false);
    for b in lo.epoch(0) {
        // An inference tape: nothing recorded, each layer's values freed as the forward
        // goes (the same bits as a recorded forward).
        let tape = Tape::inference();
        let (l, c) = {
            let cx = model.store.bind(&tape, Mode::Eval, 0);
            let (l, c) = loss.apply(model, &cx, &tape.constant(b.x.clone()), &b)?;
            (l.item(), c)
        };
        sum += l * b.len() as f64;
        n += b.len();
        if let Some(c) = c {
            correct += c;
            counted = true;
        }
    }
    Ok(Eval {
        loss: if n > 0 { sum / n as f64 } else { f64::NAN },
        accuracy: (counted && n > 0).then(|| correct as f64 / n as f64),
        n,
    })
}
