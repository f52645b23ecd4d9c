//! The checkpoint round trip with PyTorch, both directions, for the MNIST LeNet of
//! `../shared/peers/networks.py`: a `state_dict` saved by `safetensors.torch.save_file` loads
//! here and gives PyTorch's logits; a sparsegrad checkpoint (with optimiser state and
//! `rng.state`) opens in PyTorch with `load_state_dict(..., strict=False)` and gives ours.
//!
//! Needs Python with torch and the safetensors package, so it is ignored by default:
//! `SPARSEGRAD_PEERS_PYTHON=~/.cache/sparsegrad-peers/bin/python PEERS_DIR=../shared/peers
//!  cargo test -p sparsegrad --test peers_checkpoint -- --ignored`
//! (PYTHONPATH may point at a directory holding safetensors if the venv lacks it).

use std::path::Path;
use std::process::Command;

use autograd::optim::Sgd;
use engine::{Rng, Tensor};
use models::nets::{Model, NetConfig};
use sparsegrad::checkpoint::{load, save, RunInfo};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/peers_extra/lenet_safetensors.py");

/// x[i] = f32(sin(0.37 i)), [2, 1, 28, 28]: the script's fixed input.
fn fixed_input() -> Tensor<f32> {
    Tensor::from_vec((0..2 * 784).map(|i| (i as f64 * 0.37).sin() as f32).collect(), &[2, 1, 28, 28])
}

/// Runs the script; its JSON line's `logits` and `unexpected` keys.
fn python(mode: &str, path: &Path) -> (Vec<f64>, Vec<String>) {
    let py = std::env::var("SPARSEGRAD_PEERS_PYTHON").expect("set SPARSEGRAD_PEERS_PYTHON");
    let out = Command::new(py).arg(SCRIPT).arg(mode).arg(path).output().expect("python runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let list = |key: &str| -> Vec<String> {
        let Some(start) = text.find(&format!("\"{key}\": [")) else { return vec![] };
        let rest = &text[start + key.len() + 5..];
        let body = &rest[..rest.find(']').unwrap()];
        body.split(',').map(|s| s.trim().trim_matches('"').to_string()).filter(|s| !s.is_empty()).collect()
    };
    (list("logits").iter().map(|s| s.parse().unwrap()).collect(), list("unexpected"))
}

fn max_diff(a: &[f64], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - *y as f64).abs()).fold(0.0, f64::max)
}

#[test]
#[ignore = "needs Python with torch and safetensors (SPARSEGRAD_PEERS_PYTHON)"]
fn lenet_state_dicts_cross_between_pytorch_and_sparsegrad() {
    let dir = std::env::temp_dir().join(format!("sparsegrad-peers-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = NetConfig::new("lenet").unwrap();
    // PyTorch → sparsegrad
    let theirs = dir.join("torch.safetensors");
    let (torch_logits, _) = python("save", &theirs);
    let mut m = Model::<f32>::new(&cfg, &mut Rng::new(9)).unwrap();
    let l = load(&theirs, &mut m, None).unwrap();
    assert!(l.config.is_none());
    let ours = m.predict(&fixed_input()).unwrap().to_vec();
    let d = max_diff(&torch_logits, &ours);
    eprintln!("PyTorch state_dict loaded here: max |logit difference| {d:.3e}");
    assert!(d < 1e-5, "{d}");
    // sparsegrad → PyTorch: other weights, with momentum buffers and an rng state
    let mut m = Model::<f32>::new(&cfg, &mut Rng::new(21)).unwrap();
    let mut opt = Sgd::new(0.01).momentum(0.9);
    let grads: Vec<Option<Tensor<f32>>> = m.store.params().map(|(_, t)| Some(t.map(|v| v * 0.5))).collect();
    m.store.step(&mut opt, &grads);
    let path = dir.join("ours.safetensors");
    save(&path, &m, Some(&opt), &RunInfo { rng: Some(Rng::new(3)), ..RunInfo::default() }).unwrap();
    let (torch_logits, unexpected) = python("logits", &path);
    let ours = m.predict(&fixed_input()).unwrap().to_vec();
    let d = max_diff(&torch_logits, &ours);
    eprintln!("sparsegrad checkpoint loaded in PyTorch: max |logit difference| {d:.3e}; extra keys {unexpected:?}");
    assert!(d < 1e-5, "{d}");
    let mut want: Vec<String> = m.store.names().iter().map(|n| format!("optim.{n}.momentum_buffer")).collect();
    want.push("rng.state".into());
    want.sort();
    assert_eq!(unexpected, want);
}
