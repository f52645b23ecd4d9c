//! Checkpoints: a LeNet run stopped, saved, loaded into a fresh model and optimiser and
//! resumed equals the uninterrupted run bit for bit; a PyTorch-style file (state_dict names,
//! no metadata, F64 and I64 tensors) loads; every invalid file is an error naming the file
//! (and the tensor), never a panic: truncation at every offset, header bytes flipped, wrong
//! header lengths, dtype and shape changes, missing, extra and foreign tensors.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use autograd::optim::{Optimizer, Sgd, StepLr};
use datasets::{embedded, LoaderConfig};
use engine::{Conv2dParams, Rng, Tensor};
use models::fit::{Fit, FitConfig, Hooks, Progress, Schedule};
use models::layers::{BatchNorm2d, Conv2d, Flatten, Linear, Sequential, Store};
use models::nets::{Model, NetConfig};
use safetensors::tensor::{Dtype, TensorView};
use sparsegrad::checkpoint::{load, read_config, save, RunInfo};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sparsegrad-ckpt-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn bits(m: &Model<f32>) -> Vec<(String, Vec<u32>)> {
    (m.store.params().chain(m.store.buffers()))
        .map(|(n, t)| (n.to_string(), t.to_vec().iter().map(|v| v.to_bits()).collect()))
        .collect()
}

fn sgd() -> Sgd<f32> {
    Sgd::new(0.02).momentum(0.9).nesterov(true).weight_decay(1e-4)
}

fn fit_config() -> FitConfig {
    FitConfig {
        epochs: 2,
        schedule: Some(Schedule { base_lr: 0.02, rule: Box::new(StepLr { step_size: 1, gamma: 0.5 }) }),
        ..FitConfig::new(LoaderConfig::new(8), 5)
    }
}

#[test]
fn lenet_resumed_from_a_checkpoint_is_bit_identical() {
    let mnist = embedded::mnist_subset();
    let train = mnist.train.subset(&(0..24).collect::<Vec<_>>()); // 3 steps per epoch, 6 in all
    let cfg = NetConfig::new("lenet").unwrap();
    let full = {
        let mut m = Model::<f32>::new(&cfg, &mut Rng::new(1)).unwrap();
        let mut opt = sgd();
        let out = Fit::new(&train, fit_config()).run(&mut m, &mut opt, Progress::default(), &mut ()).unwrap();
        assert_eq!(out.progress.step, 6);
        bits(&m)
    };
    let path = scratch("resume").join("lenet.safetensors");
    {
        let mut rng = Rng::new(1);
        let mut m = Model::<f32>::new(&cfg, &mut rng).unwrap();
        let mut opt = sgd();
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        let mut hooks = Hooks::new().step(move |r| f.store(r.step == 4, Ordering::SeqCst));
        let out = Fit::new(&train, fit_config())
            .stop_flag(flag)
            .run(&mut m, &mut opt, Progress::default(), &mut hooks)
            .unwrap();
        assert!(out.stopped);
        assert_eq!(out.progress, Progress { epoch: 1, batch: 1, step: 4, best_val_acc: None });
        let run =
            RunInfo { progress: out.progress, seed: 5, dataset: "embedded[0..24]".into(), rng: Some(rng.clone()) };
        save(&path, &m, Some(&opt), &run).unwrap();
        assert_ne!(bits(&m), full);
    }
    // a fresh process: the configuration from the file, another initialisation, a new optimiser
    let cfg2 = read_config(&path).unwrap().unwrap();
    assert_eq!(cfg2, cfg);
    let mut m = Model::<f32>::new(&cfg2, &mut Rng::new(77)).unwrap();
    let mut opt = sgd();
    let loaded = load(&path, &mut m, Some(&mut opt)).unwrap();
    assert!(loaded.optimizer_loaded);
    assert_eq!(
        (loaded.seed, loaded.optimizer.as_deref(), loaded.dataset.as_deref()),
        (Some(5), Some("sgd"), Some("embedded[0..24]"))
    );
    assert_eq!(opt.state().step, 4);
    assert_eq!(loaded.metadata["optimizer.momentum"], "0.9");
    let mut rng = Rng::new(1);
    let _ = Model::<f32>::new(&cfg, &mut rng).unwrap();
    assert_eq!(loaded.rng.unwrap().state(), rng.state());
    let out = Fit::new(&train, fit_config()).run(&mut m, &mut opt, loaded.progress, &mut ()).unwrap();
    assert_eq!(out.progress.step, 6);
    assert_eq!(bits(&m), full);
}

/// conv 3×3 1→2 on 4×4, BatchNorm (with num_batches_tracked), linear 8→3: 19 + 7 values.
fn tiny(seed: u64) -> Model<f32> {
    let config = NetConfig { name: "tiny".into(), classes: 3, input: [1, 4, 4], options: BTreeMap::new() };
    let mut store = Store::new();
    let mut rng = Rng::new(seed);
    let net = {
        let mut pb = store.builder(&mut rng);
        Sequential::new()
            .add(Conv2d::new(&mut pb.pp(0), 1, 2, 3, Conv2dParams::new(), true))
            .add(BatchNorm2d::new(&mut pb.pp(1), 2))
            .add(Flatten)
            .add(Linear::new(&mut pb.pp(3), 8, 3, true))
    };
    let mut m = Model { config, store, net: Box::new(net) };
    // non-trivial buffers
    m.store.set("1.running_mean", Tensor::from([0.25, -0.5])).unwrap();
    m.store.set("1.num_batches_tracked", Tensor::from_vec(vec![7.0], &[])).unwrap();
    m
}

/// A saved tiny checkpoint with optimiser state, and its bytes.
fn tiny_file(dir: &Path) -> (PathBuf, Vec<u8>) {
    let m = tiny(0);
    let mut opt = Sgd::new(0.1).momentum(0.9);
    let n = m.store.names().len();
    let mut vals: Vec<Tensor<f32>> = m.store.params().map(|(_, t)| t.clone()).collect();
    let grads: Vec<Option<Tensor<f32>>> = vals.iter().map(|t| Some(t.map(|v| v + 1.0))).collect();
    opt.step(&mut vals.iter_mut().collect::<Vec<_>>(), &grads);
    assert_eq!(opt.state().slots.len(), n);
    let path = dir.join("tiny.safetensors");
    let run = RunInfo {
        progress: Progress { epoch: 2, batch: 1, step: 9, best_val_acc: Some(0.75) },
        seed: 3,
        dataset: "d".into(),
        rng: Some(Rng::new(4)),
    };
    save(&path, &m, Some(&opt), &run).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

/// Loads `bytes` (written to `path`) into a fresh tiny model with an SGD optimiser; the
/// error's text, or `None` when it loaded. A panic fails the test with the case named.
fn try_load(path: &Path, bytes: &[u8], case: &str) -> Result<Model<f32>, String> {
    std::fs::write(path, bytes).unwrap();
    let r = std::panic::catch_unwind(|| {
        let mut m = tiny(1);
        let mut opt = Sgd::new(0.1).momentum(0.9);
        load(path, &mut m, Some(&mut opt)).map(|_| m).map_err(|e| e.to_string())
    });
    r.unwrap_or_else(|_| panic!("load panicked: {case}"))
}

fn header(bytes: &[u8]) -> (String, &[u8]) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (String::from_utf8(bytes[8..8 + n].to_vec()).unwrap(), &bytes[8 + n..])
}

fn with_header(h: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h.as_bytes());
    out.extend(data);
    out
}

#[test]
fn round_trip_keeps_every_tensor_and_the_run() {
    let dir = scratch("roundtrip");
    let (path, bytes) = tiny_file(&dir);
    let m = try_load(&path, &bytes, "as saved").unwrap();
    assert_eq!(bits(&m), bits(&tiny(0)));
    let mut m = tiny(1);
    let mut opt = Sgd::new(0.1).momentum(0.9);
    let l = load(&path, &mut m, Some(&mut opt)).unwrap();
    assert_eq!(l.progress, Progress { epoch: 2, batch: 1, step: 9, best_val_acc: Some(0.75) });
    assert_eq!(l.rng.unwrap(), Rng::new(4));
    assert_eq!(opt.state().step, 1);
    let (h, _) = header(&bytes);
    assert!(h.contains(r#""1.num_batches_tracked":{"dtype":"I64","shape":[]"#), "{h}");
    assert!(h.contains(r#""optim.0.weight.momentum_buffer":{"dtype":"F32","shape":[2,1,3,3]"#), "{h}");
    // no optimiser given: the weights load, the state is ignored
    let mut m = tiny(1);
    assert!(!load(&path, &mut m, None).unwrap().optimizer_loaded);
    // another optimiser kind is refused
    let mut adam = autograd::optim::Adam::<f32>::new(0.1);
    let e = load(&path, &mut tiny(1), Some(&mut adam)).unwrap_err().to_string();
    assert!(e.contains("tiny.safetensors") && e.contains("sgd's, this run uses adam"), "{e}");
    // no file left behind by the atomic write
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

#[test]
fn a_pytorch_state_dict_loads_and_converts_f64_and_i64() {
    let dir = scratch("torch");
    let src = tiny(0);
    // what safetensors.torch.save_file(model.state_dict(), path) writes: no metadata, one
    // tensor per state_dict entry; here fc.bias as F64 (a double model) and the count as I64
    let mut raw: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = vec![];
    for (n, t) in src.store.params().chain(src.store.buffers()) {
        let v = t.to_vec();
        let (d, b): (Dtype, Vec<u8>) = if n.ends_with("num_batches_tracked") {
            (Dtype::I64, v.iter().flat_map(|&x| (x as i64).to_le_bytes()).collect())
        } else if n == "3.bias" {
            (Dtype::F64, v.iter().flat_map(|&x| (x as f64).to_le_bytes()).collect())
        } else {
            (Dtype::F32, v.iter().flat_map(|&x| x.to_le_bytes()).collect())
        };
        raw.push((n.to_string(), d, t.shape().to_vec(), b));
    }
    let views: Vec<(String, TensorView<'_>)> =
        raw.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    let bytes = safetensors::tensor::serialize(views, None::<HashMap<String, String>>).unwrap();
    let path = dir.join("w.safetensors");
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(read_config(&path).unwrap(), None);
    let mut m = tiny(1);
    let mut opt = Sgd::new(0.1).momentum(0.9);
    let l = load(&path, &mut m, Some(&mut opt)).unwrap();
    assert!(!l.optimizer_loaded && l.config.is_none());
    assert_eq!(l.progress, Progress::default());
    assert_eq!(bits(&m), bits(&src));
}

fn assert_err(r: Result<Model<f32>, String>, case: &str, tensor: Option<&str>) {
    let e = match r {
        Ok(_) => panic!("{case}: loaded"),
        Err(e) => e,
    };
    assert!(e.contains("tiny.safetensors"), "{case}: the error does not name the file: {e}");
    if let Some(t) = tensor {
        assert!(e.contains(&format!("tensor '{t}'")), "{case}: the error does not name '{t}': {e}");
    }
}

#[test]
fn mutations_are_errors_naming_the_file_and_tensor() {
    let dir = scratch("mutation");
    let (path, bytes) = tiny_file(&dir);
    let good = bits(&tiny(0));
    // truncated at every offset
    for cut in 0..bytes.len() {
        assert_err(try_load(&path, &bytes[..cut], &format!("cut {cut}")), &format!("cut {cut}"), None);
    }
    // one byte appended
    let mut longer = bytes.clone();
    longer.push(0);
    assert_err(try_load(&path, &longer, "appended"), "appended", None);
    // wrong header lengths
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    for bad in [0, 1, n - 1, n + 1, n + 8, bytes.len() as u64, u64::MAX, 1 << 40] {
        let mut b = bytes.clone();
        b[..8].copy_from_slice(&bad.to_le_bytes());
        assert_err(try_load(&path, &b, &format!("header length {bad}")), &format!("header length {bad}"), None);
    }
    // every header byte flipped to a non-ASCII byte, a digit, a quote, a brace: an error, or
    // (a flip inside a metadata value that does not matter, e.g. `dataset`) the same weights
    let (h, _) = header(&bytes);
    let mut loaded_anyway = 0;
    for pos in 8..8 + h.len() {
        for with in [bytes[pos] ^ 0x80, b'7', b'"', b'}', b','] {
            if with == bytes[pos] {
                continue;
            }
            let mut b = bytes.clone();
            b[pos] = with;
            let case = format!("header byte {pos} -> {with:#x}");
            match try_load(&path, &b, &case) {
                Ok(m) => {
                    assert_eq!(bits(&m), good, "{case}: loaded different weights");
                    loaded_anyway += 1;
                }
                Err(e) => assert!(e.contains("tiny.safetensors"), "{case}: {e}"),
            }
        }
    }
    assert!(loaded_anyway < h.len(), "most header flips must be errors ({loaded_anyway})");
    // dtype and shape changes that keep the byte count (so only our checks can catch them)
    let (h, data) = header(&bytes);
    let cases = [
        (
            r#""0.weight":{"dtype":"F32","shape":[2,1,3,3]"#,
            r#""0.weight":{"dtype":"I32","shape":[2,1,3,3]"#,
            "0.weight",
        ),
        (
            r#""0.weight":{"dtype":"F32","shape":[2,1,3,3]"#,
            r#""0.weight":{"dtype":"U8","shape":[2,1,3,12]"#,
            "0.weight",
        ),
        (
            r#""0.weight":{"dtype":"F32","shape":[2,1,3,3]"#,
            r#""0.weight":{"dtype":"F32","shape":[1,2,3,3]"#,
            "0.weight",
        ),
        (r#""0.weight":{"dtype":"F32","shape":[2,1,3,3]"#, r#""0.weight":{"dtype":"F32","shape":[18]"#, "0.weight"),
        (r#""3.bias":{"dtype":"F32","shape":[3]"#, r#""3.bias":{"dtype":"I32","shape":[3]"#, "3.bias"),
        (r#""1.weight":{"dtype":"F32","shape":[2]"#, r#""1.weight":{"dtype":"I64","shape":[1]"#, "1.weight"),
        (r#""1.weight":{"dtype":"F32","shape":[2]"#, r#""1.weight":{"dtype":"F64","shape":[1]"#, "1.weight"),
        (r#""1.weight":{"dtype":"F32","shape":[2]"#, r#""1.weight":{"dtype":"F16","shape":[4]"#, "1.weight"),
        (
            r#""1.num_batches_tracked":{"dtype":"I64","shape":[]"#,
            r#""1.num_batches_tracked":{"dtype":"U64","shape":[]"#,
            "1.num_batches_tracked",
        ),
        (
            r#""1.num_batches_tracked":{"dtype":"I64","shape":[]"#,
            r#""1.num_batches_tracked":{"dtype":"I64","shape":[1]"#,
            "1.num_batches_tracked",
        ),
        (
            r#""optim.0.weight.momentum_buffer":{"dtype":"F32","shape":[2,1,3,3]"#,
            r#""optim.0.weight.momentum_buffer":{"dtype":"F32","shape":[18]"#,
            "optim.0.weight.momentum_buffer",
        ),
        (
            r#""optim.0.weight.momentum_buffer":{"dtype":"F32","shape":[2,1,3,3]"#,
            r#""optim.0.weight.exp_avg":{"dtype":"F32","shape":[2,1,3,3]"#,
            "",
        ),
        (
            r#""optim.0.weight.momentum_buffer":{"dtype":"F32","shape":[2,1,3,3]"#,
            r#""optim.9.weight.momentum_buffer":{"dtype":"F32","shape":[2,1,3,3]"#,
            "optim.9.weight.momentum_buffer",
        ),
        (r#""rng.state":{"dtype":"U64","shape":[4]"#, r#""rng.state":{"dtype":"I64","shape":[4]"#, "rng.state"),
        // a renamed tensor: the network's is missing (reported first), the other is extra
        (r#""3.weight":{"#, r#""3.wieght":{"#, "3.weight"),
        (r#""0.bias":{"#, r#""0.bias_":{"#, "0.bias"),
        // another network, another configuration
        (r#""net":"tiny""#, r#""net":"lenet""#, ""),
        (r#""classes":"3""#, r#""classes":"4""#, ""),
        (r#""input":"1x4x4""#, r#""input":"1x4""#, ""),
        (r#""epoch":"2""#, r#""epoch":"x""#, ""),
        (r#""optim.step":"1""#, r#""optim.step":"-1""#, ""),
    ];
    for (from, to, tensor) in cases {
        assert!(h.contains(from), "the header has no {from}: {h}");
        let b = with_header(&h.replace(from, to), data);
        let t = (!tensor.is_empty()).then_some(tensor);
        assert_err(try_load(&path, &b, to), to, t);
    }
    // an extra tensor that is neither the network's, optim.* nor rng.state; a missing one
    let extra_path = dir.join("extra.safetensors");
    let mut big = tiny(0);
    let _ = Linear::new(&mut big.store.builder(&mut Rng::new(0)).pp("9"), 1, 1, false);
    save(&extra_path, &big, None, &RunInfo::default()).unwrap();
    let e = load(&extra_path, &mut tiny(1), None).unwrap_err().to_string();
    assert!(e.contains("extra.safetensors") && e.contains("tensor '9.weight'") && e.contains("not a tensor"), "{e}");
    let e = load(&path, &mut big, None).unwrap_err().to_string();
    assert!(e.contains("tiny.safetensors") && e.contains("tensor '9.weight'") && e.contains("missing"), "{e}");
    // a missing file
    let e = load(&dir.join("absent.safetensors"), &mut tiny(1), None).unwrap_err().to_string();
    assert!(e.contains("absent.safetensors") && e.contains("cannot read"), "{e}");
}

#[test]
fn saver_writes_last_every_epoch_and_best_on_improvement() {
    let mnist = embedded::mnist_subset();
    let train = mnist.train.subset(&(0..16).collect::<Vec<_>>());
    let val = mnist.test.subset(&(0..16).collect::<Vec<_>>());
    let dir = scratch("saver");
    let (last, best) = (dir.join("last.safetensors"), dir.join("best.safetensors"));
    let mut saver =
        sparsegrad::checkpoint::Saver { last: last.clone(), best: Some(best.clone()), dataset: "embedded".into() };
    let mut m = Model::<f32>::new(&NetConfig::new("lenet").unwrap(), &mut Rng::new(2)).unwrap();
    let mut opt = sgd();
    let out = Fit::new(&train, fit_config())
        .validate_on(&val)
        .run(&mut m, &mut opt, Progress::default(), &mut saver)
        .unwrap();
    let mut fresh = Model::<f32>::new(&NetConfig::new("lenet").unwrap(), &mut Rng::new(3)).unwrap();
    let l = load(&last, &mut fresh, Some(&mut sgd())).unwrap();
    assert_eq!(l.progress, out.progress);
    assert_eq!(bits(&fresh), bits(&m));
    let b = load(&best, &mut fresh, None).unwrap();
    assert_eq!(b.progress.best_val_acc, out.progress.best_val_acc);
    assert!(b.progress.epoch >= 1);
}
