//! The command line of `sparsegrad`, declared with clap's derive API: subcommands, `--help`
//! for each, suggestions for mistyped commands and options, usage errors with exit status 2.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Exit status of a usage error (as clap's own errors).
pub const USAGE: i32 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "sparsegrad",
    version,
    about = "sparsegrad: auditable gradients on a from-scratch tensor engine",
    long_about = "sparsegrad: auditable gradients on a from-scratch tensor engine.\n\n\
        Without a command: train LeNet briefly on the embedded MNIST subset (and the other \
        demonstration networks of the registry beside it) and print their test accuracies.",
    after_help = "Exit status: 0 success, 1 a failed run or audit, 2 a usage error, 141 when stdout was closed \
        by its reader (`sparsegrad gradcheck | head -1`).",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a network of the registry (`--model list` lists them)
    Train(TrainArgs),
    /// Evaluate a checkpoint on a data set's test split
    Eval(EvalArgs),
    /// Print a checkpoint's tensors (name, shape, fraction of exact zeros) and its run's configuration
    Inspect(InspectArgs),
    /// Audit every registered gradient rule against central differences in f64
    #[command(long_about = GRADCHECK_ABOUT)]
    Gradcheck(GradcheckArgs),
    /// Inspect data sets, write MNIST variations
    Data(DataArgs),
    /// Test a paper's claim: one experiment, a table, CSV/JSON and SVG figures under --out
    #[command(long_about = EXPERIMENT_ABOUT)]
    Experiment(ExperimentArgs),
}

const EXPERIMENT_ABOUT: &str = "\
Test a paper's claim with one command: the experiment trains and evaluates its grid of cells
(networks × label counts × trials × λ × σ …), prints its tables and writes them as CSV and
JSON, with SVG figures, under --out.

Experiments and their default budgets, each under 60 minutes on 2 cores (the CPU time of
each run on 2026-12-06/07, Zen 4; the budget is written out in app/src/experiments/<name>.rs):
  limited-supervision  LeNet vs the SF/CSF LeNets with few labels per class (MNIST)
                       4 nets × {1,5,10,50,100,all} labels × 3 trials, 150 SGD steps of 32,
                       2,000 test images (2,681 CPU-s, 24 min on 2 quiet cores);
                       --unlabelled-weight γ: semi-supervised; --dataset mnist-rot etc.: the
                       MNIST variations (`data make-variations`)
  csc-robustness       ResNet-20 vs SDNet-20 under Gaussian noise, stem λ swept at test time
                       CIFAR-100 coarse, 3,000 SGD steps of 16, σ ∈ {0,…,0.2} × λ ∈ {0.1,…,1.4}
                       on 20 test images per class (563 CPU-s, 6 min on 2 quiet cores)
  double-sparsity      NiN vs DS-NiN: parameters, accuracy, exact zeros, effective kernels
                       CIFAR-100 coarse, nin + ds-nin (Shrink, proximal), Kaiming init, 3,000
                       Adam steps (lr 1e-4) of 16 (2,306 CPU-s, 23 min on 2 quiet cores)
  dcea-denoise         DCEA Poisson denoising at peaks 1, 2, 4, tied vs untied: PSNR on 7 images
                       400 steps of 4 grayscale CIFAR-100 images per cell, 6 cells (4,604 CPU-s,
                       46 min on 2 quiet cores)
  spatial-contrasting  SC pre-training on unlabelled images, then few labels, vs from scratch
                       MNIST and CIFAR-100 coarse, {10,50} labels, 3 trials, 1,000 SC steps
                       of 64 then 400 of 32 (1,779 CPU-s, 18 min on 2 quiet cores)
  merge                assemble the tables and figures of an experiment from shard outputs

To scale up: --budget X multiplies every training step count (e.g. --budget 10 on a
workstation), --set FIELD=VALUE changes any field of the configuration (--set trials=5,
--set labels=1,5,all, --set lr=1e-3; a wrong FIELD lists them all with their values), and
--shard i/n with --emit-slurm spreads the grid over a cluster. The configuration of a run is
kept in --out/config.txt; a run with another one refuses that --out.

Every finished cell is saved at once (--out/cells/), so an interrupted run resumes where it
stopped and a rerun recomputes nothing. --shard i/n runs every n-th cell (a deterministic
split); `sparsegrad experiment merge --experiment NAME --out DIR SHARD_DIR…` assembles them,
and --emit-slurm N prints a SLURM job-array script that runs N shards and the merge.
The same command gives the same table, bit for bit, whatever the thread count.";

/// The data sets `train` and `eval` read.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatasetName {
    /// MNIST (IDX files; without a data directory the embedded 1,000 + 1,000 subset)
    Mnist,
    /// Fashion-MNIST (IDX files)
    FashionMnist,
    /// MNIST with rotated digits (written by `data make-variations`)
    MnistRot,
    /// MNIST on uniform noise (`data make-variations`)
    MnistBackRand,
    /// MNIST on CIFAR image patches (`data make-variations`)
    MnistBackImage,
    /// rotated MNIST on CIFAR image patches (`data make-variations`)
    MnistRotBackImage,
    /// CIFAR-10 (binary record files)
    Cifar10,
    /// CIFAR-100, fine labels (binary record files)
    Cifar100,
    /// SVHN cropped digits (train_32x32.mat, test_32x32.mat)
    Svhn,
    /// grayscale PGM test images (the DCEA denoising experiments)
    Denoise,
}

impl DatasetName {
    /// The name as typed on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetName::Mnist => "mnist",
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::MnistRot => "mnist-rot",
            DatasetName::MnistBackRand => "mnist-back-rand",
            DatasetName::MnistBackImage => "mnist-back-image",
            DatasetName::MnistRotBackImage => "mnist-rot-back-image",
            DatasetName::Cifar10 => "cifar10",
            DatasetName::Cifar100 => "cifar100",
            DatasetName::Svhn => "svhn",
            DatasetName::Denoise => "denoise",
        }
    }

    /// Directory names under `../shared/data` tried, in order, when `--data-dir` is absent.
    pub fn dir_names(self) -> &'static [&'static str] {
        match self {
            DatasetName::Cifar10 => &["cifar10", "cifar-10", "cifar-10-batches-bin"],
            DatasetName::Cifar100 => &["cifar100", "cifar-100", "cifar-100-binary"],
            DatasetName::Svhn => &["svhn"],
            d => std::slice::from_ref(match d {
                DatasetName::Mnist => &"mnist",
                DatasetName::FashionMnist => &"fashion-mnist",
                DatasetName::MnistRot => &"mnist-rot",
                DatasetName::MnistBackRand => &"mnist-back-rand",
                DatasetName::MnistBackImage => &"mnist-back-image",
                DatasetName::MnistRotBackImage => &"mnist-rot-back-image",
                _ => &"denoise",
            }),
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimizerName {
    /// SGD with momentum (and weight decay)
    Sgd,
    /// Adam (with L2 weight decay)
    Adam,
}

/// Where the data comes from.
#[derive(Args, Debug, Clone)]
pub struct DataOpts {
    /// Data set
    #[arg(long, value_enum, default_value = "mnist")]
    pub dataset: DatasetName,
    /// Directory of the data set's files [default: mnist: the embedded 1,000 + 1,000 subset;
    /// the others: ../shared/data/<dataset> if it exists]
    #[arg(long, value_name = "DIR", alias = "dir")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Progress goes to stderr: a bar on a terminal, else a line every 10% of an epoch, at most one per 2 s \
    (epoch, batch, loss, accuracy, images/s, ETA). With --out DIR every epoch is appended to DIR/log.jsonl \
    and checkpoints go to DIR/last.safetensors and DIR/best.safetensors. Ctrl-C finishes the current \
    step, writes DIR/last.safetensors and exits with status 130; --resume continues from it."
)]
pub struct TrainArgs {
    /// Network to train; `list` prints every network with its parameter count
    #[arg(long, value_name = "M", default_value = "lenet")]
    pub model: String,
    #[command(flatten)]
    pub data: DataOpts,
    /// Labelled images per class (stratified, seeded); the rest of the training split is unlabelled
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    pub labels_per_class: Option<u64>,
    /// Weight γ of the unsupervised loss on unlabelled images (networks with one)
    #[arg(long, value_name = "γ", default_value_t = 0.0, value_parser = non_negative)]
    pub unlabelled_weight: f64,
    /// Passes over the training set
    #[arg(long, value_name = "E", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub epochs: u64,
    /// Mini-batch size
    #[arg(long, value_name = "B", default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: u64,
    /// Optimiser
    #[arg(long, value_enum, default_value = "sgd")]
    pub optimizer: OptimizerName,
    /// Learning rate [default: 0.01 for sgd, 0.001 for adam]
    #[arg(long, value_parser = positive)]
    pub lr: Option<f64>,
    /// SGD momentum, in [0, 1)
    #[arg(long, default_value_t = 0.9, value_parser = momentum)]
    pub momentum: f64,
    /// L2 weight decay
    #[arg(long, default_value_t = 0.0, value_parser = non_negative)]
    pub weight_decay: f64,
    /// Seed of the initialisation, the shuffling and the labelled subset
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub threads: ThreadsOpt,
    /// Use only the first N training images
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Run directory: log.jsonl, last.safetensors, best.safetensors
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue from DIR/last.safetensors (needs --out)
    #[arg(long, requires = "out")]
    pub resume: bool,
}

#[derive(Args, Debug, Clone, Copy)]
pub struct ThreadsOpt {
    /// Worker threads, at most 4 × the available cores [default: all cores]
    #[arg(long, value_name = "N", value_parser = threads)]
    pub threads: Option<usize>,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Checkpoint written by `train` (safetensors)
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// Data set [default: the one the checkpoint was trained on]
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetName>,
    /// Directory of the data set's files [default: the training run's, else ../shared/data/<dataset>]
    #[arg(long, value_name = "DIR", alias = "dir")]
    pub data_dir: Option<PathBuf>,
    /// Mini-batch size of the evaluation
    #[arg(long, value_name = "B", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: u64,
    #[command(flatten)]
    pub threads: ThreadsOpt,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Checkpoint (safetensors)
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// The exit statuses of `gradcheck`.
pub const GRADCHECK_EXIT: &str =
    "Exit status: 0 when every case passes, 1 when any fails, 2 on a usage error or an unknown op.";

pub const GRADCHECK_ABOUT: &str = "\
Audit every registered gradient rule.

Each case builds the op on f64 inputs (contiguous tensors and transposed, sliced and broadcast views), \
computes its gradient on the tape, and compares it element by element with central differences \
(f(x + eps) − f(x − eps)) / 2eps, passing when |analytic − numeric| ≤ atol + rtol·|numeric| \
(eps 1e-6, atol 1e-7, rtol 1e-5 unless a case documents otherwise). Ops with several outputs are \
projected on a fixed random cotangent. The sparse-coding rules' inputs keep a margin of 1e-4 from \
every change of an active set.";

#[derive(Args, Debug)]
#[command(after_help = GRADCHECK_EXIT)]
pub struct GradcheckArgs {
    /// Audit only the cases of op NAME (see --list)
    #[arg(long, value_name = "NAME")]
    pub op: Option<String>,
    /// Print machine-readable JSON (with --list too)
    #[arg(long)]
    pub json: bool,
    /// List the audited ops and their number of cases, and exit
    #[arg(long)]
    pub list: bool,
    #[command(flatten)]
    pub threads: ThreadsOpt,
}

#[derive(Args, Debug)]
pub struct ExperimentArgs {
    /// limited-supervision, csc-robustness, double-sparsity, dcea-denoise, spatial-contrasting, or merge
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Where the cells, tables and figures go (default: results/<NAME>)
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The smoke-test budget (minutes; what CI runs)
    #[arg(long)]
    pub quick: bool,
    /// Run only the cells with index ≡ i (mod n), e.g. 0/3
    #[arg(long, value_name = "i/n")]
    pub shard: Option<String>,
    /// Seed of every cell (each cell derives its own from it and its parameters)
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The root of the data sets (default: $SPARSEGRAD_DATA, else the nearest shared/data)
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print a SLURM job-array script running the grid as N shards, then the merge, and exit
    #[arg(long, value_name = "N")]
    pub emit_slurm: Option<usize>,
    /// With dcea-denoise: evaluate this `dcea` checkpoint (same noise draws) instead of training
    /// (default --out: results/dcea-denoise-<file stem>)
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// With `merge`: the experiment whose shard outputs are merged
    #[arg(long, value_name = "NAME")]
    pub experiment: Option<String>,
    /// Another data set than the experiment's (mnist, fashion-mnist, mnist-rot,
    /// mnist-back-rand, mnist-back-image, mnist-rot-back-image, cifar10, cifar100,
    /// cifar100-coarse; for dcea-denoise: the training images); adds -NAME to the default --out
    #[arg(long, value_name = "NAME")]
    pub dataset: Option<String>,
    /// With limited-supervision: train the networks that have an unsupervised term on
    /// labelled + γ × unsupervised(unlabelled rest) (LeNet stays supervised, the baseline);
    /// adds -semi to the default --out
    #[arg(long, value_name = "γ")]
    pub unlabelled_weight: Option<f64>,
    /// Multiply every training step count of the default budget by X (e.g. 4 on a
    /// workstation, or with --shard on a cluster); adds -xX to the default --out
    #[arg(long, value_name = "X")]
    pub budget: Option<f64>,
    /// Change one field of the experiment's configuration, e.g. --set trials=5, --set
    /// labels=1,10,all, --set lr=3e-4 (repeatable; an unknown FIELD lists every field with its
    /// value; counts are ≥ 1, reals ≥ 0, a learning rate or a peak above 0); --budget then
    /// scales the step counts; adds -FIELDVALUE to the default --out
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub set: Vec<String>,
    /// With `merge`: the shard output directories
    #[arg(value_name = "SHARD_DIR")]
    pub dirs: Vec<PathBuf>,
    #[command(flatten)]
    pub threads: ThreadsOpt,
}

#[derive(Args, Debug)]
#[command(subcommand_required = true, arg_required_else_help = true)]
pub struct DataArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Which data sets are in DIR and its sub-directories, with counts per split and per class,
    /// sizes and SHA-256 of every file; PGM images with their size
    #[command(after_help = INFO_AFTER)]
    Info(InfoArgs),
    /// Write MNIST variations (rot, back-rand, back-image, rot-back-image) as IDX files
    #[command(after_help = VARIATIONS_AFTER)]
    MakeVariations(VariationsArgs),
}

const INFO_AFTER: &str = "\
Recognised: MNIST / Fashion-MNIST IDX files (plain or .gz; a directory whose name contains \
\"fashion\" gets the Fashion-MNIST class names), CIFAR-10 / CIFAR-100 binary record files (*.bin), \
SVHN-style MAT files (*.mat), PGM images (*.pgm). Files that fail to open are listed as problems \
with the reader's error (file, byte offset, what was expected).

Exit status: 0 when everything found opened, 1 when a problem is reported or nothing is found, \
2 on a usage error.";

const VARIATIONS_AFTER: &str = "\
Variations: rot = rotation by a uniform angle in [0, 2pi) with bilinear interpolation; \
back-rand = uniform noise where the digit is absent; back-image = random patches of grayscale \
CIFAR images behind the digit; rot-back-image = both. Without background images the back-image \
variations are skipped (an error if requested with --only).

Exit status: 0 success, 1 a data error, 2 a usage error.";

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Directory to scan (DIR and its immediate sub-directories) [default: describe the
    /// embedded MNIST subset]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
    /// Skip the SHA-256 of each file
    #[arg(long)]
    pub no_hash: bool,
    /// Where inflated copies of compressed files go [default: $SPARSEGRAD_CACHE, else beside
    /// the data if writable, else ~/.cache/sparsegrad]
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct VariationsArgs {
    /// MNIST directory, or a data root containing mnist/ (and cifar-100/ or cifar-10/ for
    /// backgrounds) [default: the embedded MNIST subset]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Output root; each variation goes to OUT/mnist-<name>/ as train-/t10k- images and labels
    /// IDX files plus README.txt
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Seed; the same seed gives byte-identical files
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// Only the first N images of each split
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Comma-separated subset of rot,back-rand,back-image,rot-back-image
    #[arg(long, value_name = "LIST")]
    pub only: Option<String>,
    /// CIFAR record file or directory for the back-image variations [default: a training file
    /// under DIR/cifar-100 or DIR/cifar-10]
    #[arg(long, value_name = "PATH")]
    pub backgrounds: Option<PathBuf>,
    /// Where inflated copies of compressed files go
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

/// The largest `--threads`: 4 × the available cores (at least 8).
pub fn max_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (4 * cores).max(8)
}

fn threads(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|_| format!("'{s}' is not a number of threads"))?;
    let max = max_threads();
    if n == 0 || n > max {
        return Err(format!("{n} threads: expected 1 to {max} (4 × the available cores)"));
    }
    Ok(n)
}

fn number(s: &str) -> Result<f64, String> {
    let x: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if !x.is_finite() {
        return Err(format!("'{s}' is not finite"));
    }
    Ok(x)
}

fn positive(s: &str) -> Result<f64, String> {
    let x = number(s)?;
    if x > 0.0 {
        Ok(x)
    } else {
        Err(format!("{s} is not positive"))
    }
}

fn non_negative(s: &str) -> Result<f64, String> {
    let x = number(s)?;
    if x >= 0.0 {
        Ok(x)
    } else {
        Err(format!("{s} is negative"))
    }
}

fn momentum(s: &str) -> Result<f64, String> {
    let x = number(s)?;
    if (0.0..1.0).contains(&x) {
        Ok(x)
    } else {
        Err(format!("{s} is not in [0, 1)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_train_options() {
        let c =
            Cli::try_parse_from(["sparsegrad", "train", "--epochs", "3", "--dir", "x", "--optimizer", "adam"]).unwrap();
        let Some(Command::Train(t)) = c.command else { panic!("{c:?}") };
        assert_eq!((t.epochs, t.batch, t.optimizer), (3, 32, OptimizerName::Adam));
        assert_eq!(t.data.data_dir, Some(PathBuf::from("x")));
        for bad in
            [&["--epochs", "0"][..], &["--limit", "0"], &["--threads", "100000"], &["--momentum", "1"], &["--resume"]]
        {
            let e = Cli::try_parse_from(["sparsegrad", "train"].iter().chain(bad)).unwrap_err();
            assert_eq!(e.exit_code(), USAGE, "{bad:?}: {e}");
        }
    }
}
