//! The CNNs of the sparse-coding papers (issue 19 §1): parameter counts and `state_dict` names
//! against `../shared/peers/networks.py` (lists generated once from torch 2.15), output shapes,
//! one SGD step on a fixed tiny batch per network, forwards against torch on identical
//! weights (`data/nets_cnn_torch.py` wrote `data/nets_cnn_torch.txt`), and f64 gradient checks
//! of the CSC and DCT layers and of a reduced-width SDNet block.

use autograd::check::CheckOptions;
use autograd::optim::Sgd;
use autograd::{Reduction, Tape};
use engine::{Conv2dParams, Element, Rng, Tensor};
use sparse::csc::{CscConfig, Gradient, Implicit};
use sparse::fista::{FistaConfig, Momentum, Prox};
use sparsegrad_models::layers::{
    check_layer, BatchNorm2d, Conv2d, CscLayer, DctConv2d, Lambda, Layer, Mode, Relu, Residual, Sequential, Store,
};
use sparsegrad_models::nets::{registry, Model, NetConfig};

/// `resnet20`: `named_parameters()` of networks.py, then the other `state_dict` entries (buffers).
const RESNET20_PARAMS: &[&str] = &[
    "stem.weight",
    "bn.weight",
    "bn.bias",
    "blocks.0.c1.weight",
    "blocks.0.b1.weight",
    "blocks.0.b1.bias",
    "blocks.0.c2.weight",
    "blocks.0.b2.weight",
    "blocks.0.b2.bias",
    "blocks.1.c1.weight",
    "blocks.1.b1.weight",
    "blocks.1.b1.bias",
    "blocks.1.c2.weight",
    "blocks.1.b2.weight",
    "blocks.1.b2.bias",
    "blocks.2.c1.weight",
    "blocks.2.b1.weight",
    "blocks.2.b1.bias",
    "blocks.2.c2.weight",
    "blocks.2.b2.weight",
    "blocks.2.b2.bias",
    "blocks.3.c1.weight",
    "blocks.3.b1.weight",
    "blocks.3.b1.bias",
    "blocks.3.c2.weight",
    "blocks.3.b2.weight",
    "blocks.3.b2.bias",
    "blocks.3.sc.0.weight",
    "blocks.3.sc.1.weight",
    "blocks.3.sc.1.bias",
    "blocks.4.c1.weight",
    "blocks.4.b1.weight",
    "blocks.4.b1.bias",
    "blocks.4.c2.weight",
    "blocks.4.b2.weight",
    "blocks.4.b2.bias",
    "blocks.5.c1.weight",
    "blocks.5.b1.weight",
    "blocks.5.b1.bias",
    "blocks.5.c2.weight",
    "blocks.5.b2.weight",
    "blocks.5.b2.bias",
    "blocks.6.c1.weight",
    "blocks.6.b1.weight",
    "blocks.6.b1.bias",
    "blocks.6.c2.weight",
    "blocks.6.b2.weight",
    "blocks.6.b2.bias",
    "blocks.6.sc.0.weight",
    "blocks.6.sc.1.weight",
    "blocks.6.sc.1.bias",
    "blocks.7.c1.weight",
    "blocks.7.b1.weight",
    "blocks.7.b1.bias",
    "blocks.7.c2.weight",
    "blocks.7.b2.weight",
    "blocks.7.b2.bias",
    "blocks.8.c1.weight",
    "blocks.8.b1.weight",
    "blocks.8.b1.bias",
    "blocks.8.c2.weight",
    "blocks.8.b2.weight",
    "blocks.8.b2.bias",
    "fc.weight",
    "fc.bias",
];
const RESNET20_BUFFERS: &[&str] = &[
    "bn.running_mean",
    "bn.running_var",
    "bn.num_batches_tracked",
    "blocks.0.b1.running_mean",
    "blocks.0.b1.running_var",
    "blocks.0.b1.num_batches_tracked",
    "blocks.0.b2.running_mean",
    "blocks.0.b2.running_var",
    "blocks.0.b2.num_batches_tracked",
    "blocks.1.b1.running_mean",
    "blocks.1.b1.running_var",
    "blocks.1.b1.num_batches_tracked",
    "blocks.1.b2.running_mean",
    "blocks.1.b2.running_var",
    "blocks.1.b2.num_batches_tracked",
    "blocks.2.b1.running_mean",
    "blocks.2.b1.running_var",
    "blocks.2.b1.num_batches_tracked",
    "blocks.2.b2.running_mean",
    "blocks.2.b2.running_var",
    "blocks.2.b2.num_batches_tracked",
    "blocks.3.b1.running_mean",
    "blocks.3.b1.running_var",
    "blocks.3.b1.num_batches_tracked",
    "blocks.3.b2.running_mean",
    "blocks.3.b2.running_var",
    "blocks.3.b2.num_batches_tracked",
    "blocks.3.sc.1.running_mean",
    "blocks.3.sc.1.running_var",
    "blocks.3.sc.1.num_batches_tracked",
    "blocks.4.b1.running_mean",
    "blocks.4.b1.running_var",
    "blocks.4.b1.num_batches_tracked",
    "blocks.4.b2.running_mean",
    "blocks.4.b2.running_var",
    "blocks.4.b2.num_batches_tracked",
    "blocks.5.b1.running_mean",
    "blocks.5.b1.running_var",
    "blocks.5.b1.num_batches_tracked",
    "blocks.5.b2.running_mean",
    "blocks.5.b2.running_var",
    "blocks.5.b2.num_batches_tracked",
    "blocks.6.b1.running_mean",
    "blocks.6.b1.running_var",
    "blocks.6.b1.num_batches_tracked",
    "blocks.6.b2.running_mean",
    "blocks.6.b2.running_var",
    "blocks.6.b2.num_batches_tracked",
    "blocks.6.sc.1.running_mean",
    "blocks.6.sc.1.running_var",
    "blocks.6.sc.1.num_batches_tracked",
    "blocks.7.b1.running_mean",
    "blocks.7.b1.running_var",
    "blocks.7.b1.num_batches_tracked",
    "blocks.7.b2.running_mean",
    "blocks.7.b2.running_var",
    "blocks.7.b2.num_batches_tracked",
    "blocks.8.b1.running_mean",
    "blocks.8.b1.running_var",
    "blocks.8.b1.num_batches_tracked",
    "blocks.8.b2.running_mean",
    "blocks.8.b2.running_var",
    "blocks.8.b2.num_batches_tracked",
];
/// `sdnet20`: `named_parameters()` of networks.py, then the other `state_dict` entries (buffers).
const SDNET20_PARAMS: &[&str] = &[
    "stem.w",
    "bn.weight",
    "bn.bias",
    "blocks.0.c1.weight",
    "blocks.0.b1.weight",
    "blocks.0.b1.bias",
    "blocks.0.c2.weight",
    "blocks.0.b2.weight",
    "blocks.0.b2.bias",
    "blocks.1.c1.weight",
    "blocks.1.b1.weight",
    "blocks.1.b1.bias",
    "blocks.1.c2.weight",
    "blocks.1.b2.weight",
    "blocks.1.b2.bias",
    "blocks.2.c1.weight",
    "blocks.2.b1.weight",
    "blocks.2.b1.bias",
    "blocks.2.c2.weight",
    "blocks.2.b2.weight",
    "blocks.2.b2.bias",
    "blocks.3.c1.weight",
    "blocks.3.b1.weight",
    "blocks.3.b1.bias",
    "blocks.3.c2.weight",
    "blocks.3.b2.weight",
    "blocks.3.b2.bias",
    "blocks.3.sc.0.weight",
    "blocks.3.sc.1.weight",
    "blocks.3.sc.1.bias",
    "blocks.4.c1.weight",
    "blocks.4.b1.weight",
    "blocks.4.b1.bias",
    "blocks.4.c2.weight",
    "blocks.4.b2.weight",
    "blocks.4.b2.bias",
    "blocks.5.c1.weight",
    "blocks.5.b1.weight",
    "blocks.5.b1.bias",
    "blocks.5.c2.weight",
    "blocks.5.b2.weight",
    "blocks.5.b2.bias",
    "blocks.6.c1.weight",
    "blocks.6.b1.weight",
    "blocks.6.b1.bias",
    "blocks.6.c2.weight",
    "blocks.6.b2.weight",
    "blocks.6.b2.bias",
    "blocks.6.sc.0.weight",
    "blocks.6.sc.1.weight",
    "blocks.6.sc.1.bias",
    "blocks.7.c1.weight",
    "blocks.7.b1.weight",
    "blocks.7.b1.bias",
    "blocks.7.c2.weight",
    "blocks.7.b2.weight",
    "blocks.7.b2.bias",
    "blocks.8.c1.weight",
    "blocks.8.b1.weight",
    "blocks.8.b1.bias",
    "blocks.8.c2.weight",
    "blocks.8.b2.weight",
    "blocks.8.b2.bias",
    "fc.weight",
    "fc.bias",
];
const SDNET20_BUFFERS: &[&str] = &[
    "bn.running_mean",
    "bn.running_var",
    "bn.num_batches_tracked",
    "blocks.0.b1.running_mean",
    "blocks.0.b1.running_var",
    "blocks.0.b1.num_batches_tracked",
    "blocks.0.b2.running_mean",
    "blocks.0.b2.running_var",
    "blocks.0.b2.num_batches_tracked",
    "blocks.1.b1.running_mean",
    "blocks.1.b1.running_var",
    "blocks.1.b1.num_batches_tracked",
    "blocks.1.b2.running_mean",
    "blocks.1.b2.running_var",
    "blocks.1.b2.num_batches_tracked",
    "blocks.2.b1.running_mean",
    "blocks.2.b1.running_var",
    "blocks.2.b1.num_batches_tracked",
    "blocks.2.b2.running_mean",
    "blocks.2.b2.running_var",
    "blocks.2.b2.num_batches_tracked",
    "blocks.3.b1.running_mean",
    "blocks.3.b1.running_var",
    "blocks.3.b1.num_batches_tracked",
    "blocks.3.b2.running_mean",
    "blocks.3.b2.running_var",
    "blocks.3.b2.num_batches_tracked",
    "blocks.3.sc.1.running_mean",
    "blocks.3.sc.1.running_var",
    "blocks.3.sc.1.num_batches_tracked",
    "blocks.4.b1.running_mean",
    "blocks.4.b1.running_var",
    "blocks.4.b1.num_batches_tracked",
    "blocks.4.b2.running_mean",
    "blocks.4.b2.running_var",
    "blocks.4.b2.num_batches_tracked",
    "blocks.5.b1.running_mean",
    "blocks.5.b1.running_var",
    "blocks.5.b1.num_batches_tracked",
    "blocks.5.b2.running_mean",
    "blocks.5.b2.running_var",
    "blocks.5.b2.num_batches_tracked",
    "blocks.6.b1.running_mean",
    "blocks.6.b1.running_var",
    "blocks.6.b1.num_batches_tracked",
    "blocks.6.b2.running_mean",
    "blocks.6.b2.running_var",
    "blocks.6.b2.num_batches_tracked",
    "blocks.6.sc.1.running_mean",
    "blocks.6.sc.1.running_var",
    "blocks.6.sc.1.num_batches_tracked",
    "blocks.7.b1.running_mean",
    "blocks.7.b1.running_var",
    "blocks.7.b1.num_batches_tracked",
    "blocks.7.b2.running_mean",
    "blocks.7.b2.running_var",
    "blocks.7.b2.num_batches_tracked",
    "blocks.8.b1.running_mean",
    "blocks.8.b1.running_var",
    "blocks.8.b1.num_batches_tracked",
    "blocks.8.b2.running_mean",
    "blocks.8.b2.running_var",
    "blocks.8.b2.num_batches_tracked",
];
/// `nin`: `named_parameters()` of networks.py, then the other `state_dict` entries (buffers).
const NIN_PARAMS: &[&str] = &[
    "0.weight",
    "0.bias",
    "2.weight",
    "2.bias",
    "4.weight",
    "4.bias",
    "8.weight",
    "8.bias",
    "10.weight",
    "10.bias",
    "12.weight",
    "12.bias",
    "16.weight",
    "16.bias",
    "18.weight",
    "18.bias",
    "20.weight",
    "20.bias",
];
const NIN_BUFFERS: &[&str] = &[];
/// `ds-nin`: `named_parameters()` of networks.py, then the other `state_dict` entries (buffers).
const DS_NIN_PARAMS: &[&str] = &[
    "0.bias",
    "2.weight",
    "2.bias",
    "4.weight",
    "4.bias",
    "8.bias",
    "10.weight",
    "10.bias",
    "12.weight",
    "12.bias",
    "16.bias",
    "18.weight",
    "18.bias",
    "20.weight",
    "20.bias",
];
const DS_NIN_BUFFERS: &[&str] = &["0.phi", "8.phi", "16.phi"];

fn model(name: &str, input: [usize; 3], classes: usize) -> Model<f32> {
    let cfg = NetConfig::new(name).unwrap().input(input).classes(classes);
    Model::new(&cfg, &mut Rng::new(0)).unwrap()
}

#[test]
fn parameter_counts_match_pytorch() {
    // (name, trainable at C = 10, at C = 100, buffer elements at C = 10). Torch's counts:
    // networks.py's `build` (resnet20, sdnet20, nin, ds-nin); ResNet-18 is the SDNet code's
    // CIFAR ResNet-18 (11,173,962, the authors' published size).
    let bn = |c: usize| 2 * c + 1;
    let resnet20_bn: usize = bn(16) * 7 + bn(32) * 7 + bn(64) * 7;
    let resnet18_bn: usize = bn(64) * 5 + bn(128) * 5 + bn(256) * 5 + bn(512) * 5;
    let phi = 192 * 3 * 25 + 192 * 96 * 25 + 192 * 192 * 9;
    assert_eq!(phi, 806_976);
    let cases = [
        ("resnet20", 272_474, 278_324, resnet20_bn),
        ("sdnet20", 272_474, 278_324, resnet20_bn + 16 * 32 * 32),
        ("sdnet20-all", 272_474, 278_324, resnet20_bn + 16 * 32 * 32 * 7 + 32 * 16 * 16 * 6 + 64 * 8 * 8 * 6),
        ("nin", 966_986, 984_356, 0),
        ("ds-nin", 160_010, 177_380, phi),
        ("resnet18", 11_173_962, 11_220_132, resnet18_bn),
        ("sdnet18", 11_173_962, 11_220_132, resnet18_bn + 64 * 32 * 32),
    ];
    for (name, c10, c100, buffers) in cases {
        let m = model(name, [3, 32, 32], 10);
        assert_eq!(m.store.count(), c10, "{name}: trainable parameters at C = 10");
        let nb: usize = m.store.buffers().map(|(_, t)| t.numel()).sum();
        assert_eq!(nb, buffers, "{name}: buffer elements");
        assert_eq!(model(name, [3, 32, 32], 100).store.count(), c100, "{name}: at C = 100");
    }
    // sdnet18-all has the same trainable count (the atoms replace the conv weights).
    let m = model("sdnet18-all", [3, 8, 8], 10);
    assert_eq!(m.store.count(), 11_173_962);
    let names: Vec<&str> = registry().iter().map(|s| s.name).collect();
    for n in ["nin", "ds-nin", "resnet20", "sdnet20", "sdnet20-all", "resnet18", "sdnet18", "sdnet18-all"] {
        assert!(names.contains(&n), "{n} is not registered: {names:?}");
    }
}

#[test]
fn names_equal_the_state_dict_of_networks_py() {
    for (name, params, buffers, extra) in [
        ("resnet20", RESNET20_PARAMS, RESNET20_BUFFERS, &[][..]),
        ("sdnet20", SDNET20_PARAMS, SDNET20_BUFFERS, &["stem.v"][..]),
        ("nin", NIN_PARAMS, NIN_BUFFERS, &[][..]),
        ("ds-nin", DS_NIN_PARAMS, DS_NIN_BUFFERS, &[][..]),
    ] {
        let m = model(name, [3, 32, 32], 10);
        assert_eq!(m.store.names(), params, "{name}: parameters");
        // Our buffers: torch's, and the CSC warm-start vector (an attribute outside torch's
        // state_dict), first since the stem is built first.
        let want: Vec<&str> = extra.iter().chain(buffers).copied().collect();
        assert_eq!(m.store.buffer_names(), want, "{name}: buffers");
    }
    // The deeper and all-CSC variants follow the same scheme.
    let m = model("sdnet20-all", [3, 32, 32], 10);
    assert!(m.store.names().contains(&"blocks.3.c1.w") && m.store.names().contains(&"blocks.3.sc.0.weight"));
    assert!(m.store.buffer_names().contains(&"blocks.8.c2.v"));
    let m = model("resnet18", [3, 8, 8], 10);
    assert_eq!(m.store.names()[..4], ["stem.weight", "bn.weight", "bn.bias", "blocks.0.c1.weight"]);
    assert!(m.store.names().contains(&"blocks.7.c2.weight") && m.store.get("blocks.2.sc.0.weight").is_some());
    assert_eq!(m.store.get("fc.weight").unwrap().shape(), [10, 512]);
}

/// The loss on `(x, labels)` in train mode with the context seed `seed`, and the gradients.
fn loss_and_grads(m: &mut Model<f32>, x: &Tensor<f32>, labels: &[usize], seed: u64) -> (f64, Vec<Option<Tensor<f32>>>) {
    let tape = Tape::new();
    let cx = m.store.bind(&tape, Mode::Train, seed);
    let logits = m.forward(&cx, &tape.constant(x.clone())).unwrap();
    assert_eq!(logits.shape(), [x.dim(0), 10], "{}: logits", m.config.name);
    let loss = logits.cross_entropy(labels, Reduction::Mean);
    let g = cx.grads(&tape.backward(&loss).unwrap());
    cx.finish(&mut m.store);
    (loss.item(), g)
}

#[test]
fn one_sgd_step_reduces_the_loss_of_every_network() {
    // Tiny batches (4 images 8×8; the deep 512-channel nets on 2) keep this fast; the same
    // context seed gives the same dropout mask before and after the step.
    for (name, n, lr) in [
        ("resnet20", 4, 0.05),
        ("sdnet20", 4, 0.05),
        ("sdnet20-all", 4, 0.05),
        ("nin", 4, 0.05),
        ("ds-nin", 4, 0.05),
        ("resnet18", 2, 0.01),
        ("sdnet18", 2, 0.01),
        ("sdnet18-all", 2, 0.01),
    ] {
        let mut m = model(name, [3, 8, 8], 10);
        let mut rng = Rng::new(11);
        let x = Tensor::<f32>::randn(&[n, 3, 8, 8], &mut rng);
        let labels: Vec<usize> = (0..n).map(|i| (3 * i + 1) % 10).collect();
        let (before, g) = loss_and_grads(&mut m, &x, &labels, 5);
        assert!(g.iter().all(|g| g.is_some()), "{name}: a parameter got no gradient");
        m.store.step(&mut Sgd::new(lr), &g);
        let (after, _) = loss_and_grads(&mut m, &x, &labels, 5);
        assert!(after < before, "{name}: loss {before} → {after} after one SGD step");
        // Eval mode gives the same shape.
        assert_eq!(m.predict(&x).unwrap().shape(), [n, 10], "{name}: eval output");
    }
}

/// The parameters of `data/nets_cnn_torch.py`: closed formulas of the position `p` of the
/// parameter and the element index, computed in f64 and rounded to f32 as numpy does.
fn fill_like_torch(m: &mut Model<f32>) {
    let params: Vec<(String, Vec<usize>)> =
        m.store.params().map(|(n, t)| (n.to_string(), t.shape().to_vec())).collect();
    for (p, (name, shape)) in params.into_iter().enumerate() {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| {
                let s = (0.7 * i as f64 + 1.3 * p as f64 + 0.1).sin();
                let v = if shape.len() >= 2 {
                    (3.0 * shape[0] as f64 / n as f64).sqrt() * s
                } else if name.ends_with("weight") {
                    1.0 + 0.1 * s
                } else {
                    0.1 * s
                };
                v as f32
            })
            .collect();
        m.store.set(&name, Tensor::from_vec(v, &shape)).unwrap();
    }
}

#[test]
fn forwards_match_torch_on_identical_weights() {
    let want = include_str!("data/nets_cnn_torch.txt");
    let x: Vec<f32> = (0..2 * 3 * 32 * 32).map(|i| (0.37 * i as f64 + 0.2).sin() as f32).collect();
    let x = Tensor::from_vec(x, &[2, 3, 32, 32]);
    let mut seen = 0;
    for line in want.lines() {
        let mut it = line.split_whitespace();
        let (name, mode) = (it.next().unwrap(), it.next().unwrap());
        let want: Vec<f64> = it.map(|v| v.parse().unwrap()).collect();
        let mut m = model(name, [3, 32, 32], 10);
        fill_like_torch(&mut m);
        let got = if mode == "eval" {
            m.predict(&x).unwrap()
        } else {
            let tape = Tape::new();
            let cx = m.store.bind(&tape, Mode::Train, 0);
            m.forward(&cx, &tape.constant(x.clone())).unwrap().value()
        };
        let got = got.to_vec();
        assert_eq!(got.len(), want.len(), "{name} {mode}");
        let scale = want.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        let err = got.iter().zip(&want).fold(0.0f64, |a, (g, w)| a.max((g.as_f64() - w).abs()));
        // f32 on both sides; the CSC stem's L comes from a power iteration with another start
        // and stopping rule than networks.py's (each stops within ~1e-5 of the top eigenvalue).
        let tol = if name.starts_with("sdnet") { 1e-3 } else { 1e-4 };
        eprintln!("{name} {mode}: max |Δ| / max |y| = {:.2e}", err / scale);
        assert!(err <= tol * scale, "{name} {mode}: max |Δ| {err:e} against max |y| {scale:e}\n{got:?}\n{want:?}");
        seen += 1;
    }
    assert_eq!(seen, 6);
}

fn opts() -> CheckOptions {
    CheckOptions::default().atol(1e-6).rtol(1e-5)
}

fn assert_passes(what: &str, r: autograd::check::GradReport) {
    assert!(r.passed(), "{what}: gradient check failed: max abs {:e}, rel {:e}", r.max_abs_err(), r.max_rel_err());
}

/// A CSC layer `cin → cout` (3×3, padding 1, `stride`) for `hw` inputs.
fn csc_layer(
    pb: &mut sparsegrad_models::layers::ParamBuilder<'_, f64>,
    cin: usize,
    cout: usize,
    hw: [usize; 2],
    fista: FistaConfig,
    stride: usize,
    gradient: Gradient,
) -> CscLayer {
    let cfg = CscConfig { fista, conv: Conv2dParams::new().padding(1).stride(stride), gradient };
    CscLayer::new(pb, cin, cout, 3, hw, cfg)
}

/// `L` held fixed at the value the layer's power iteration gives (gradient checks hold `L`
/// fixed; without this the checks fail, as they should: `L` depends on the atoms).
fn fix_l(mut layer: CscLayer, store: &Store<f64>, hw: [usize; 2]) -> CscLayer {
    layer.fixed_lipschitz = Some(layer.estimate_lipschitz(store, hw).unwrap());
    layer
}

#[test]
fn csc_layer_gradients_in_every_configuration() {
    let sdnet = FistaConfig::sdnet(0.1, 3);
    let bt = FistaConfig::new(0.1, 3);
    // (what, FISTA configuration, stride, learned λ)
    let cases = [
        ("sdnet: >= 0, 0.9/L, sdnet momentum", sdnet.clone(), 1, false),
        ("signed, 1/L, Beck-Teboulle", bt.clone(), 1, false),
        ("signed, 0.9/L, sdnet momentum, stride 2", bt.clone().step_scale(0.9).momentum(Momentum::Sdnet), 2, false),
        (">= 0, 1/L, Beck-Teboulle, learned lambda", bt.clone().prox(Prox::NonNegative), 1, true),
        ("signed, learned lambda, stride 2", bt.clone(), 2, true),
    ];
    for (i, (what, fista, stride, learn)) in cases.into_iter().enumerate() {
        let mut rng = Rng::new(20 + i as u64);
        let mut store = Store::<f64>::new();
        let layer = {
            let mut pb = store.builder(&mut rng);
            let mut pb = pb.pp("csc");
            let l = csc_layer(&mut pb, 2, 3, [5, 5], fista, stride, Gradient::Unrolled);
            if learn {
                l.learned_lambda(&mut pb)
            } else {
                l
            }
        };
        let layer = fix_l(layer, &store, [5, 5]);
        let want: &[&str] = if learn { &["csc.w", "csc.lam"] } else { &["csc.w"] };
        assert_eq!(store.names(), want);
        assert_eq!(store.buffer_names(), ["csc.v"]);
        let x = Tensor::<f64>::randn(&[2, 2, 5, 5], &mut rng);
        assert_passes(what, check_layer(&layer, &store, &x, Mode::Train, &opts()).unwrap());
        let xt = Tensor::<f64>::randn(&[2, 2, 5, 5], &mut rng).transpose(2, 3);
        assert!(!xt.is_contiguous());
        let r = check_layer(&layer, &store, &xt, Mode::Train, &opts()).unwrap();
        assert_passes(&format!("{what}, non-contiguous input"), r);
    }
}

#[test]
fn csc_layer_implicit_gradient_at_the_solution() {
    // The implicit rule is exact at the minimiser: many iterations, then the polish.
    let mut rng = Rng::new(31);
    let mut store = Store::<f64>::new();
    let imp = Implicit { cg_tol: 1e-12, cg_max_iter: 500, polish: true };
    let layer = {
        let mut pb = store.builder(&mut rng);
        csc_layer(&mut pb.pp("stem"), 2, 3, [4, 4], FistaConfig::new(0.2, 300), 1, Gradient::Implicit(imp))
    };
    let layer = fix_l(layer, &store, [4, 4]);
    let x = Tensor::<f64>::randn(&[1, 2, 4, 4], &mut rng);
    assert_passes("implicit", check_layer(&layer, &store, &x, Mode::Train, &opts()).unwrap());
}

#[test]
fn dct_conv_gradients_and_fixed_filters() {
    let mut rng = Rng::new(40);
    let mut store = Store::<f64>::new();
    let layer = DctConv2d::new(&mut store.builder(&mut rng).pp("0"), 3, 10, 3, Conv2dParams::new().padding(1));
    assert_eq!(store.names(), ["0.bias"]);
    assert_eq!(store.buffer_names(), ["0.phi"]);
    assert_eq!(store.get("0.phi").unwrap().to_vec(), sparse::dct::dct_filters::<f64>(3, 3, 10).to_vec());
    let x = Tensor::<f64>::randn(&[2, 3, 5, 5], &mut rng);
    assert_passes("dct conv", check_layer(&layer, &store, &x, Mode::Train, &opts()).unwrap());
    let xt = Tensor::<f64>::randn(&[2, 3, 5, 5], &mut rng).transpose(2, 3);
    assert_passes("dct conv, non-contiguous", check_layer(&layer, &store, &xt, Mode::Train, &opts()).unwrap());
}

#[test]
fn reduced_sdnet_block_gradients() {
    // An SDNet-20-all-like stem and block at reduced width: CSC stem 3 → 4, BN, ReLU, then a
    // stride-2 block whose first 3×3 conv is a CSC layer 4 → 6, with a 1×1 projection.
    let mut rng = Rng::new(50);
    let mut store = Store::<f64>::new();
    let (stem, c1) = {
        let mut pb = store.builder(&mut rng);
        let stem = csc_layer(&mut pb.pp("stem"), 3, 4, [6, 6], FistaConfig::sdnet(0.1, 2), 1, Gradient::Unrolled);
        let c1 = csc_layer(&mut pb.pp("c1"), 4, 6, [6, 6], FistaConfig::sdnet(0.1, 2), 2, Gradient::Unrolled);
        (stem, c1)
    };
    let (stem, c1) = (fix_l(stem, &store, [6, 6]), fix_l(c1, &store, [6, 6]));
    let net = {
        let mut pb = store.builder(&mut rng);
        let body = Sequential::new()
            .add(c1)
            .add(BatchNorm2d::new(&mut pb.pp("b1"), 6))
            .add(Relu)
            .add(Conv2d::new(&mut pb.pp("c2"), 6, 6, 3, Conv2dParams::new().padding(1), false))
            .add(BatchNorm2d::new(&mut pb.pp("b2"), 6));
        let sc = Sequential::new()
            .add(Conv2d::new(&mut pb.pp("sc").pp(0), 4, 6, 1, Conv2dParams::new().stride(2), false))
            .add(BatchNorm2d::new(&mut pb.pp("sc").pp(1), 6));
        Sequential::new().add(stem).add(BatchNorm2d::new(&mut pb.pp("bn"), 4)).add(Relu).add(Residual {
            body: Box::new(body),
            shortcut: Some(Box::new(sc)),
            post: Some(Box::new(Relu)),
        })
    };
    let x = Tensor::<f64>::randn(&[2, 3, 6, 6], &mut rng);
    assert_passes("sdnet block", check_layer(&net, &store, &x, Mode::Train, &opts()).unwrap());
    let xt = Tensor::<f64>::randn(&[2, 3, 6, 6], &mut rng).transpose(2, 3);
    assert_passes("sdnet block, non-contiguous", check_layer(&net, &store, &xt, Mode::Train, &opts()).unwrap());
}

#[test]
fn csc_layer_renormalises_keeps_its_warm_start_and_takes_lambda_at_test_time() {
    let mut rng = Rng::new(60);
    let mut store = Store::<f64>::new();
    let mut layer = CscLayer::new(&mut store.builder(&mut rng).pp("stem"), 3, 8, 3, [6, 6], CscConfig::sdnet());
    // Atoms away from unit norm, as an optimiser step leaves them.
    let w3 = store.get("stem.w").unwrap().mul_scalar(3.0);
    store.set("stem.w", w3).unwrap();
    let v0 = store.get("stem.v").unwrap().clone();
    let x = Tensor::<f64>::randn(&[2, 3, 6, 6], &mut rng).relu();
    let tape = Tape::new();
    let cx = store.bind(&tape, Mode::Train, 0);
    let z = layer.forward(&cx, &tape.constant(x.clone())).unwrap().value();
    cx.finish(&mut store);
    // The store keeps the renormalised atoms and the power iteration's new vector.
    let w = store.get("stem.w").unwrap().clone();
    let norms = w.norm_l2(&[1, 2, 3], false).to_vec();
    assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-12), "{norms:?}");
    let v = store.get("stem.v").unwrap();
    assert_ne!(v.to_vec(), v0.to_vec());
    assert!((v.to_vec().iter().map(|a| a * a).sum::<f64>() - 1.0).abs() < 1e-9);
    // The output is the sparse crate's CSC with those atoms and the L of the warm start.
    let op = sparse::csc::Conv::new(w.clone(), Conv2dParams::new().padding(1), [6, 6]);
    let l = sparse::fista::lipschitz(&op, &[1, 8, 6, 6], Some(&v0), &Default::default()).unwrap().value;
    let t2 = Tape::new();
    let (want, _) = sparse::csc::csc(&t2.constant(x.clone()), &t2.constant(w), None, l, &CscConfig::sdnet()).unwrap();
    assert_eq!(z.to_vec(), want.value().to_vec());
    // Raising λ at test time (robust inference) makes the code sparser.
    let density = |layer: &CscLayer, store: &Store<f64>| {
        let tape = Tape::new();
        let cx = store.bind(&tape, Mode::Eval, 0);
        let z = layer.forward(&cx, &tape.constant(x.clone())).unwrap().value().to_vec();
        z.iter().filter(|v| **v != 0.0).count() as f64 / z.len() as f64
    };
    let d1 = density(&layer, &store);
    layer.set_lambda(1.0).unwrap();
    assert_eq!(layer.lambda, Lambda::Fixed(1.0));
    let d2 = density(&layer, &store);
    assert!(d2 < d1, "density {d1} at λ = 0.1, {d2} at λ = 1");
    assert!(layer.set_lambda(-1.0).is_err());
    let mut learned = {
        let mut pb = store.builder(&mut rng);
        let mut pb = pb.pp("c");
        CscLayer::new(&mut pb, 3, 8, 3, [6, 6], CscConfig::sdnet()).learned_lambda(&mut pb)
    };
    assert!(learned.set_lambda(0.5).unwrap_err().contains("c.lam"));
    assert_eq!(learned.lambda_value(&store), 0.1);
}

#[test]
fn sdnet_stem_lambda_option_and_a_state_dict_load_by_name() {
    let trained = model("sdnet20", [3, 8, 8], 10);
    let x = Tensor::<f32>::randn(&[2, 3, 8, 8], &mut Rng::new(70));
    let y = trained.predict(&x).unwrap().to_vec();
    // Rebuilt with λ raised on the stem only and the same tensors (loaded by name).
    for (lam, same) in [(0.1, true), (0.5, false)] {
        let cfg = NetConfig::new("sdnet20").unwrap().input([3, 8, 8]).option("stem_lambda", lam);
        let mut m = Model::<f32>::new(&cfg, &mut Rng::new(1)).unwrap();
        for (n, t) in trained.store.params().chain(trained.store.buffers()) {
            m.store.set(n, t.clone()).unwrap();
        }
        assert_eq!(m.predict(&x).unwrap().to_vec() == y, same, "stem_lambda {lam}");
    }
    // networks.py's Csc weight has our name and shape.
    assert_eq!(trained.store.get("stem.w").unwrap().shape(), [16, 3, 3, 3]);
    let bad = NetConfig::new("sdnet20").unwrap().option("prox", "nope");
    assert!(Model::<f32>::new(&bad, &mut Rng::new(0)).err().unwrap().contains("prox"));
}

#[test]
fn ds_nin_shrinks_the_coefficients_after_each_dct_conv() {
    let cfg = NetConfig::new("ds-nin").unwrap().input([3, 8, 8]).option("zeta", 1e-3);
    let mut m = Model::<f32>::new(&cfg, &mut Rng::new(0)).unwrap();
    let hooks: Vec<(String, String)> =
        ["2.weight", "10.weight", "18.weight"].iter().map(|n| (n.to_string(), "shrink".to_string())).collect();
    assert_eq!(m.store.post_steps(), hooks);
    let phi = m.store.get("8.phi").unwrap().clone();
    let x = Tensor::<f32>::randn(&[2, 3, 8, 8], &mut Rng::new(80));
    let (_, g) = loss_and_grads(&mut m, &x, &[1, 2], 3);
    m.store.step(&mut Sgd::new(0.01), &g);
    for n in ["2.weight", "10.weight", "18.weight"] {
        let z = sparse::dct::zero_fraction(m.store.get(n).unwrap());
        assert!(z > 0.0, "{n}: no exact zeros after the shrink");
    }
    assert_eq!(sparse::dct::zero_fraction(m.store.get("4.weight").unwrap()), 0.0);
    assert_eq!(m.store.get("8.phi").unwrap().to_vec(), phi.to_vec());
    let prox = NetConfig::new("ds-nin").unwrap().option("zeta", 1e-5).option("shrink", "proximal");
    let m = Model::<f32>::new(&prox, &mut Rng::new(0)).unwrap();
    assert_eq!(m.store.post_steps()[0].1, "shrink (l1_prox)");
    let nin = Model::<f32>::new(&NetConfig::new("nin").unwrap().option("zeta", 1e-3), &mut Rng::new(0)).unwrap();
    assert!(nin.store.post_steps().is_empty());
}

/// `init = kaiming` gives every trained conv weight `N(0, 2/fan_in)` and a zero bias (the
/// sample std within 5% of √(2/fan_in) on the 30,720-weight 1×1 layer and the 14,400-weight
/// first conv), leaves `ds-nin`'s fixed DCT filters alone, keeps the parameter names and
/// count, and the default (`pytorch`) is unchanged by the option's existence.
#[test]
fn nin_kaiming_init_has_the_he_scale_and_zero_biases() {
    let std = |t: &Tensor<f32>| {
        let v = t.to_vec();
        let m = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        (v.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
    };
    let base = Model::<f32>::new(&NetConfig::new("nin").unwrap(), &mut Rng::new(0)).unwrap();
    let same = Model::<f32>::new(&NetConfig::new("nin").unwrap().option("init", "pytorch"), &mut Rng::new(0)).unwrap();
    let he = Model::<f32>::new(&NetConfig::new("nin").unwrap().option("init", "kaiming"), &mut Rng::new(0)).unwrap();
    assert_eq!(base.store.names(), he.store.names());
    for ((n, a), (_, b)) in base.store.params().zip(same.store.params()) {
        assert_eq!(a.to_vec(), b.to_vec(), "{n}");
    }
    for (name, fan_in) in [("0.weight", 3 * 25), ("2.weight", 192), ("8.weight", 96 * 25), ("20.weight", 192)] {
        let w = he.store.get(name).unwrap();
        let (got, want) = (std(w), (2.0 / fan_in as f64).sqrt());
        if w.numel() >= 10_000 {
            assert!((got / want - 1.0).abs() < 0.05, "{name}: std {got} for √(2/{fan_in}) = {want}");
        }
        // PyTorch's default bound 1/√fan_in gives std 1/√(3·fan_in): √6 smaller.
        let d = std(base.store.get(name).unwrap());
        assert!(got > 2.0 * d, "{name}: kaiming std {got} vs default {d}");
    }
    for (n, b) in he.store.params().filter(|(n, _)| n.ends_with(".bias")) {
        assert!(b.to_vec().iter().all(|&v| v == 0.0), "{n}");
    }
    let ds = Model::<f32>::new(&NetConfig::new("ds-nin").unwrap().option("init", "kaiming"), &mut Rng::new(0)).unwrap();
    let ds0 = Model::<f32>::new(&NetConfig::new("ds-nin").unwrap(), &mut Rng::new(0)).unwrap();
    assert_eq!(ds.store.get("0.phi").unwrap().to_vec(), ds0.store.get("0.phi").unwrap().to_vec());
    assert!(std(ds.store.get("2.weight").unwrap()) > 2.0 * std(ds0.store.get("2.weight").unwrap()));
    let bad = NetConfig::new("nin").unwrap().option("init", "xavier");
    assert!(Model::<f32>::new(&bad, &mut Rng::new(0)).err().unwrap().contains("init must be pytorch or kaiming"));
}
