//! Checkpoints: one safetensors file holding a network's parameters and buffers under their
//! PyTorch `state_dict` names, the optimiser's state (`optim.<parameter>.<slot>`, e.g.
//! `optim.0.weight.momentum_buffer`), the state of a random generator (`rng.state`, four
//! U64), and text metadata: the network's configuration ([`NetConfig::to_map`]) and the run
//! (`format`, `epoch`, `batch`, `step`, `seed`, `best_val_acc`, `dataset`, `optimizer`,
//! `optim.step`, `optimizer.<hyper-parameter>`).
//!
//! [`save`] writes atomically: a temporary file in the same directory, written and fsynced,
//! renamed over the target, then the directory fsynced, so a crash leaves the old checkpoint
//! or the new one, never half of one.
//!
//! [`load`] reads and validates everything before changing the model: a truncated or corrupt
//! file, a checkpoint of another network, a missing, extra or misshapen tensor or one of a
//! dtype other than F32/F64 (I64 for `num_batches_tracked`) is a [`CheckpointError`] naming
//! the file and the tensor. A file written by PyTorch with
//! `safetensors.torch.save_file(model.state_dict(), path)` has no metadata; its tensors load
//! into the network the caller built (optimiser state and progress stay fresh).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use autograd::optim::{OptimState, Optimizer};
use engine::{Rng, Tensor};
use models::fit::{Callback, EpochReport, Progress, State};
use models::nets::{Model, NetConfig};
use safetensors::tensor::{Dtype, SafeTensors, View};

/// The value of the `format` metadata key of the checkpoints this version writes.
pub const FORMAT: &str = "sparsegrad-checkpoint-1";
/// The tensor holding the random generator's state.
pub const RNG_TENSOR: &str = "rng.state";
/// The prefix of the optimiser's tensors.
pub const OPTIM_PREFIX: &str = "optim.";

/// A checkpoint that cannot be written or read: the file, the tensor or metadata key
/// concerned (if any), and what is wrong.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointError {
    pub file: PathBuf,
    pub tensor: Option<String>,
    pub msg: String,
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tensor {
            Some(t) => write!(f, "checkpoint {}: tensor '{t}': {}", self.file.display(), self.msg),
            None => write!(f, "checkpoint {}: {}", self.file.display(), self.msg),
        }
    }
}

impl std::error::Error for CheckpointError {}

fn err(file: &Path, tensor: Option<&str>, msg: impl Into<String>) -> CheckpointError {
    CheckpointError { file: file.to_path_buf(), tensor: tensor.map(str::to_string), msg: msg.into() }
}

/// What a run records beside the weights.
#[derive(Clone, Debug, Default)]
pub struct RunInfo {
    pub progress: Progress,
    pub seed: u64,
    /// The data set trained on (free text: `mnist:/data/mnist`, `embedded`).
    pub dataset: String,
    /// A generator to continue after a resume (the caller's; `fit` itself derives its random
    /// streams from the seed and the progress).
    pub rng: Option<Rng>,
}

/// What [`load`] found besides the weights it loaded into the model.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    /// The network's configuration, `None` for a file without metadata (PyTorch's).
    pub config: Option<NetConfig>,
    /// Where the run stood (default for a file without run metadata).
    pub progress: Progress,
    pub seed: Option<u64>,
    pub dataset: Option<String>,
    /// The optimiser's kind recorded in the file (`sgd`, `adam`).
    pub optimizer: Option<String>,
    /// The optimiser state was loaded into the optimiser passed to [`load`].
    pub optimizer_loaded: bool,
    pub rng: Option<Rng>,
    /// All metadata, as written.
    pub metadata: BTreeMap<String, String>,
}

/// A tensor as safetensors bytes.
struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &Raw {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        (&self.bytes[..]).into()
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn raw_f32(t: &Tensor<f32>, shape: &[usize]) -> Raw {
    let bytes = t.contiguous().to_vec().iter().flat_map(|v| v.to_le_bytes()).collect();
    Raw { dtype: Dtype::F32, shape: shape.to_vec(), bytes }
}

/// `num_batches_tracked` is an integer count in PyTorch (I64); saved as such.
fn is_count(name: &str) -> bool {
    name == "num_batches_tracked" || name.ends_with(".num_batches_tracked")
}

/// Writes the checkpoint of `model` (and `opt`'s state, if given) with `run`'s information
/// to `path`, atomically.
///
/// # Errors
/// The file cannot be written (the message names it), or the optimiser's state does not fit
/// the parameters.
pub fn save(
    path: &Path,
    model: &Model<f32>,
    opt: Option<&dyn Optimizer<f32>>,
    run: &RunInfo,
) -> Result<(), CheckpointError> {
    let mut tensors: Vec<(String, Raw)> = vec![];
    for (name, t) in model.store.params().chain(model.store.buffers()) {
        let raw = if is_count(name) {
            let bytes = t.to_vec().iter().flat_map(|&v| (v as i64).to_le_bytes()).collect();
            Raw { dtype: Dtype::I64, shape: t.shape().to_vec(), bytes }
        } else {
            raw_f32(t, t.shape())
        };
        tensors.push((name.to_string(), raw));
    }
    let mut meta = model.config.to_map();
    meta.insert("format".into(), FORMAT.into());
    meta.insert("epoch".into(), run.progress.epoch.to_string());
    meta.insert("batch".into(), run.progress.batch.to_string());
    meta.insert("step".into(), run.progress.step.to_string());
    meta.insert("seed".into(), run.seed.to_string());
    if let Some(a) = run.progress.best_val_acc {
        meta.insert("best_val_acc".into(), a.to_string());
    }
    meta.insert("dataset".into(), run.dataset.clone());
    if let Some(opt) = opt {
        let names = model.store.names();
        let state = opt.state();
        meta.insert("optimizer".into(), opt.kind().to_string());
        meta.insert("optim.step".into(), state.step.to_string());
        for (k, v) in opt.hyperparameters() {
            meta.insert(format!("optimizer.{k}"), v);
        }
        for (i, slot, t) in &state.slots {
            let pname = names.get(*i).ok_or_else(|| {
                err(path, None, format!("the optimiser has state for parameter {i}, the network has {}", names.len()))
            })?;
            let key = format!("{OPTIM_PREFIX}{pname}.{slot}");
            let shape = model.store.get(pname).expect("a parameter's name").shape().to_vec();
            if t.numel() != shape.iter().product::<usize>() {
                return Err(err(path, Some(&key), format!("{} values for a parameter of shape {shape:?}", t.numel())));
            }
            tensors.push((key, raw_f32(t, &shape)));
        }
    }
    if let Some(rng) = &run.rng {
        let bytes = rng.state().iter().flat_map(|w| w.to_le_bytes()).collect();
        tensors.push((RNG_TENSOR.into(), Raw { dtype: Dtype::U64, shape: vec![4], bytes }));
    }
    let meta: HashMap<String, String> = meta.into_iter().collect();
    let bytes = safetensors::tensor::serialize(tensors.iter().map(|(n, r)| (n.as_str(), r)), Some(meta))
        .map_err(|e| err(path, None, format!("cannot serialise: {e}")))?;
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` through a temporary file in the same directory (fsynced, renamed,
/// directory fsynced).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let io = |what: &str, e: std::io::Error| err(path, None, format!("{what}: {e}"));
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| err(path, None, "not a file name"))?;
    let tmp = dir.join(format!(".{}.tmp.{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp).map_err(|e| io("cannot create a temporary file", e))?;
        f.write_all(bytes).map_err(|e| io("cannot write", e))?;
        f.sync_all().map_err(|e| io("cannot sync", e))?;
        drop(f);
        fs::rename(&tmp, path).map_err(|e| io("cannot rename the temporary file over it", e))?;
        // The rename is durable once the directory is synced (not possible on every platform).
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn read(path: &Path) -> Result<Vec<u8>, CheckpointError> {
    fs::read(path).map_err(|e| err(path, None, format!("cannot read: {e}")))
}

fn parse<'b>(path: &Path, bytes: &'b [u8]) -> Result<(SafeTensors<'b>, BTreeMap<String, String>), CheckpointError> {
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| err(path, None, format!("not a valid safetensors file ({} bytes): {e}", bytes.len())))?;
    let meta: BTreeMap<String, String> =
        header.metadata().as_ref().map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default();
    let st =
        SafeTensors::deserialize(bytes).map_err(|e| err(path, None, format!("not a valid safetensors file: {e}")))?;
    Ok((st, meta))
}

/// The metadata of the checkpoint at `path` (empty for PyTorch's files).
///
/// # Errors
/// The file cannot be read or is not a valid safetensors file.
pub fn read_metadata(path: &Path) -> Result<BTreeMap<String, String>, CheckpointError> {
    let bytes = read(path)?;
    Ok(parse(path, &bytes)?.1)
}

/// The network configuration recorded in the checkpoint at `path` (to build the model that
/// [`load`] fills), `None` for a file without one (PyTorch's: the caller names the network).
///
/// # Errors
/// As [`read_metadata`], and metadata that names a network but is not a valid configuration.
pub fn read_config(path: &Path) -> Result<Option<NetConfig>, CheckpointError> {
    config_of(path, &read_metadata(path)?)
}

fn config_of(path: &Path, meta: &BTreeMap<String, String>) -> Result<Option<NetConfig>, CheckpointError> {
    if !meta.contains_key("net") {
        return Ok(None);
    }
    NetConfig::from_map(meta).map(Some).map_err(|e| err(path, None, format!("invalid network metadata: {e}")))
}

/// The values of tensor `name` as f32, accepting F32 and F64 (and I64 for a count).
fn values(path: &Path, name: &str, st: &SafeTensors<'_>) -> Result<(Vec<usize>, Vec<f32>), CheckpointError> {
    let v = st.tensor(name).map_err(|e| err(path, Some(name), e.to_string()))?;
    let n: usize = v.shape().iter().product();
    let data = v.data();
    let width = match v.dtype() {
        Dtype::F32 => 4,
        Dtype::F64 | Dtype::I64 => 8,
        d => return Err(err(path, Some(name), format!("dtype {d}, expected F32 or F64"))),
    };
    if v.dtype() == Dtype::I64 && !is_count(name) {
        return Err(err(path, Some(name), "dtype I64, expected F32 or F64 (I64 only for num_batches_tracked)"));
    }
    if data.len() != n * width {
        return Err(err(path, Some(name), format!("{} bytes for shape {:?} of {}", data.len(), v.shape(), v.dtype())));
    }
    let out = match v.dtype() {
        Dtype::F32 => data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
        Dtype::F64 => data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
        _ => data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
    };
    Ok((v.shape().to_vec(), out))
}

fn meta_num<V: std::str::FromStr>(
    path: &Path,
    meta: &BTreeMap<String, String>,
    key: &str,
) -> Result<Option<V>, CheckpointError> {
    match meta.get(key) {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| err(path, None, format!("invalid metadata '{key}' = '{s}'"))),
    }
}

/// Reads the checkpoint at `path` into `model` (parameters and buffers) and, if `opt` is
/// given and the file has optimiser state, into `opt`. Nothing is changed unless everything
/// is valid.
///
/// # Errors
/// A [`CheckpointError`] naming the file (and the tensor): unreadable or corrupt file;
/// metadata of another network or configuration than `model.config`; a tensor of the network
/// missing; a tensor the network does not have; a shape that differs; a dtype other than F32
/// or F64 (I64 for `num_batches_tracked`); optimiser state of another kind than `opt` or for
/// an unknown parameter; an invalid `rng.state`.
pub fn load(
    path: &Path,
    model: &mut Model<f32>,
    opt: Option<&mut dyn Optimizer<f32>>,
) -> Result<Loaded, CheckpointError> {
    let bytes = read(path)?;
    let (st, meta) = parse(path, &bytes)?;
    let config = config_of(path, &meta)?;
    if let Some(c) = &config {
        if c.name != model.config.name {
            return Err(err(
                path,
                None,
                format!("saved from network '{}', cannot load into '{}'", c.name, model.config.name),
            ));
        }
        if *c != model.config {
            return Err(err(
                path,
                None,
                format!("saved from {:?}, the network here is {:?}", c.to_map(), model.config.to_map()),
            ));
        }
    }
    // The network's tensors.
    let mut staged: Vec<(String, Tensor<f32>)> = vec![];
    let wanted: Vec<(String, Vec<usize>)> =
        (model.store.params().chain(model.store.buffers())).map(|(n, t)| (n.to_string(), t.shape().to_vec())).collect();
    let present: std::collections::HashSet<&str> = st.names().into_iter().collect();
    for (name, shape) in &wanted {
        if !present.contains(name.as_str()) {
            return Err(err(path, Some(name), format!("missing (network '{}' needs it)", model.config.name)));
        }
        let (s, v) = values(path, name, &st)?;
        if s != *shape {
            return Err(err(path, Some(name), format!("shape {s:?}, the network expects {shape:?}")));
        }
        staged.push((name.clone(), Tensor::from_vec(v, shape)));
    }
    // Everything else must be optimiser state or the generator.
    let mut extra: Vec<&str> = present.iter().copied().filter(|n| !wanted.iter().any(|(w, _)| w == n)).collect();
    extra.sort_unstable();
    let mut optim_slots: Vec<(usize, String, Tensor<f32>)> = vec![];
    let mut rng = None;
    for name in extra {
        if name == RNG_TENSOR {
            let v = st.tensor(name).map_err(|e| err(path, Some(name), e.to_string()))?;
            if v.dtype() != Dtype::U64 || v.shape() != [4] || v.data().len() != 32 {
                return Err(err(path, Some(name), format!("{} {:?}, expected U64 [4]", v.dtype(), v.shape())));
            }
            let mut s = [0u64; 4];
            for (w, c) in s.iter_mut().zip(v.data().chunks_exact(8)) {
                *w = u64::from_le_bytes(c.try_into().unwrap());
            }
            rng = Some(Rng::from_state(s).ok_or_else(|| err(path, Some(name), "the all-zero state"))?);
        } else if let Some(rest) = name.strip_prefix(OPTIM_PREFIX) {
            let (pname, slot) =
                rest.rsplit_once('.').ok_or_else(|| err(path, Some(name), "expected optim.<parameter>.<slot>"))?;
            let i = model.store.names().iter().position(|n| *n == pname).ok_or_else(|| {
                err(path, Some(name), format!("optimiser state for '{pname}', which is not a parameter of the network"))
            })?;
            let want = model.store.get(pname).expect("a parameter").shape().to_vec();
            let (s, v) = values(path, name, &st)?;
            if s != want {
                return Err(err(path, Some(name), format!("shape {s:?}, the parameter '{pname}' has {want:?}")));
            }
            let n = v.len();
            optim_slots.push((i, slot.to_string(), Tensor::from_vec(v, &[n])));
        } else {
            return Err(err(
                path,
                Some(name),
                format!("not a tensor of network '{}' (nor optim.* or {RNG_TENSOR})", model.config.name),
            ));
        }
    }
    optim_slots.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let progress = Progress {
        epoch: meta_num(path, &meta, "epoch")?.unwrap_or(0),
        batch: meta_num(path, &meta, "batch")?.unwrap_or(0),
        step: meta_num(path, &meta, "step")?.unwrap_or(0),
        best_val_acc: meta_num(path, &meta, "best_val_acc")?,
    };
    let seed = meta_num(path, &meta, "seed")?;
    let kind = meta.get("optimizer").cloned();
    let optim_step: Option<u64> = meta_num(path, &meta, "optim.step")?;
    if !optim_slots.is_empty() && kind.is_none() {
        return Err(err(path, Some(&format!("{OPTIM_PREFIX}…")), "optimiser state without the 'optimizer' metadata"));
    }
    let mut optimizer_loaded = false;
    if let Some(opt) = opt {
        if let Some(k) = &kind {
            if k != opt.kind() {
                return Err(err(path, None, format!("the optimiser state is {k}'s, this run uses {}", opt.kind())));
            }
            let state = OptimState { step: optim_step.unwrap_or(0), slots: optim_slots };
            // The optimisers leave their state unchanged on error; the model is set after.
            opt.load_state(state).map_err(|e| err(path, None, format!("optimiser state: {e}")))?;
            optimizer_loaded = true;
        }
    }
    for (name, t) in staged {
        model.store.set(&name, t).map_err(|e| err(path, Some(&name), e))?;
    }
    Ok(Loaded {
        config,
        progress,
        seed,
        dataset: meta.get("dataset").cloned(),
        optimizer: kind,
        optimizer_loaded,
        rng,
        metadata: meta,
    })
}

/// A [`Callback`] for `fit` that saves a checkpoint after every epoch to `last`, and to
/// `best` when the validation accuracy is the best so far.
pub struct Saver {
    pub last: PathBuf,
    pub best: Option<PathBuf>,
    pub dataset: String,
}

impl Callback for Saver {
    fn on_epoch(&mut self, report: &EpochReport, s: &State<'_>) -> Result<(), String> {
        let run = RunInfo { progress: s.progress, seed: s.seed, dataset: self.dataset.clone(), rng: None };
        save(&self.last, s.model, Some(s.opt), &run).map_err(|e| e.to_string())?;
        if let (true, Some(best)) = (report.best, &self.best) {
            save(best, s.model, Some(s.opt), &run).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
