//! The layer abstraction: names, binding, gradient checks of every built-in layer in f64
//! (contiguous and non-contiguous inputs), BatchNorm's running statistics against values
//! worked out by hand and its fused rule against the composed formula, pooling's ceil mode, Dropout's train/eval behaviour.

use autograd::check::CheckOptions;
use autograd::optim::{Sgd, UnitNormAtoms};
use autograd::{Tape, Var};
use engine::{Conv2dParams, ConvTranspose2dParams, Rng, Tensor};
use sparsegrad_models::layers::{
    self, check_layer, AvgPool2d, BatchNorm2d, Conv2d, ConvTranspose2d, Ctx, Dropout, Flatten, GlobalAvgPool, Layer,
    Linear, MaxPool2d, Mode, Relu, Residual, Sequential, Store,
};

fn opts() -> CheckOptions {
    CheckOptions::default().atol(1e-6).rtol(1e-5)
}

fn assert_passes(what: &str, r: autograd::check::GradReport) {
    assert!(r.passed(), "{what}: gradient check failed: max abs {:e}, rel {:e}", r.max_abs_err(), r.max_rel_err());
}

#[test]
fn names_follow_where_layers_sit() {
    let mut rng = Rng::new(0);
    let mut store = Store::<f32>::new();
    {
        let mut pb = store.builder(&mut rng);
        let mut blocks = pb.pp("blocks");
        let _ = Conv2d::new(&mut blocks.pp(2).pp("c1"), 3, 4, 3, Conv2dParams::new(), false);
        let _ = BatchNorm2d::new(&mut blocks.pp(2).pp("b1"), 4);
    }
    assert_eq!(store.names(), ["blocks.2.c1.weight", "blocks.2.b1.weight", "blocks.2.b1.bias"]);
    assert_eq!(
        store.buffer_names(),
        ["blocks.2.b1.running_mean", "blocks.2.b1.running_var", "blocks.2.b1.num_batches_tracked"]
    );
    assert_eq!(store.count(), 4 * 3 * 9 + 8);
}

#[test]
#[should_panic(expected = "already exists")]
fn a_repeated_name_panics() {
    let mut rng = Rng::new(0);
    let mut store = Store::<f32>::new();
    let mut pb = store.builder(&mut rng);
    let _ = Linear::new(&mut pb.pp("fc"), 2, 2, true);
    let _ = Linear::new(&mut pb.pp("fc"), 2, 2, true);
}

#[test]
fn linear_and_conv_gradients() {
    let mut rng = Rng::new(1);
    let mut store = Store::<f64>::new();
    let net = {
        let mut pb = store.builder(&mut rng);
        Sequential::new()
            .add(Conv2d::new(&mut pb.pp(0), 2, 3, 3, Conv2dParams::new().padding(1).stride(2), true))
            .add(Relu)
            .add(ConvTranspose2d::new(&mut pb.pp(2), 3, 2, 2, ConvTranspose2dParams::new().stride(2), true))
            .add(Flatten)
            .add(Linear::new(&mut pb.pp(4), 2 * 6 * 6, 3, true))
    };
    let x = Tensor::<f64>::randn(&[2, 2, 6, 6], &mut rng);
    assert_passes("conv-relu-convT-linear", check_layer(&net, &store, &x, Mode::Train, &opts()).unwrap());
    // A non-contiguous input (a transposed view) gives the same check.
    let xt = Tensor::<f64>::randn(&[2, 2, 6, 6], &mut rng).transpose(2, 3);
    assert!(!xt.is_contiguous());
    assert_passes("non-contiguous input", check_layer(&net, &store, &xt, Mode::Train, &opts()).unwrap());
}

#[test]
fn batchnorm_gradients_in_both_modes_and_running_statistics() {
    let mut rng = Rng::new(2);
    let mut store = Store::<f64>::new();
    let bn = BatchNorm2d::new(&mut store.builder(&mut rng).pp("bn"), 2);
    // γ, β away from their defaults so the check sees them.
    store.set("bn.weight", Tensor::from_vec(vec![1.5, -0.5], &[2])).unwrap();
    store.set("bn.bias", Tensor::from_vec(vec![0.25, 1.0], &[2])).unwrap();
    let x = Tensor::<f64>::randn(&[3, 2, 2, 2], &mut rng);
    assert_passes("batchnorm train", check_layer(&bn, &store, &x, Mode::Train, &opts()).unwrap());
    assert_passes("batchnorm eval", check_layer(&bn, &store, &x, Mode::Eval, &opts()).unwrap());

    // One train step updates the running statistics as PyTorch does.
    let v = x.to_vec();
    let vr = &v;
    let chan = |c: usize| -> Vec<f64> { (0..3).flat_map(|n| (0..4).map(move |i| vr[n * 8 + c * 4 + i])).collect() };
    let tape = Tape::new();
    let cx = store.bind(&tape, Mode::Train, 0);
    let y = bn.forward(&cx, &tape.constant(x.clone())).unwrap().value().to_vec();
    cx.finish(&mut store);
    for c in 0..2 {
        let xs = chan(c);
        let m = xs.iter().sum::<f64>() / 12.0;
        let var_b = xs.iter().map(|a| (a - m).powi(2)).sum::<f64>() / 12.0;
        let var_u = var_b * 12.0 / 11.0;
        let rm = store.get("bn.running_mean").unwrap().to_vec()[c];
        let rv = store.get("bn.running_var").unwrap().to_vec()[c];
        assert!((rm - 0.1 * m).abs() < 1e-12, "running mean {rm} vs {}", 0.1 * m);
        assert!((rv - (0.9 + 0.1 * var_u)).abs() < 1e-12, "running var {rv}");
        // y = γ (x − m)/√(var + eps) + β at the first entry of the channel.
        let g = [1.5, -0.5][c];
        let b = [0.25, 1.0][c];
        let want = g * (v[c * 4] - m) / (var_b + 1e-5).sqrt() + b;
        assert!((y[c * 4] - want).abs() < 1e-12, "y {} vs {want}", y[c * 4]);
    }
    assert_eq!(store.get("bn.num_batches_tracked").unwrap().to_vec(), vec![1.0]);
}

/// The fused training rule against the composed formula the layer used before it (output,
/// gradients of x, γ, β, running statistics after two steps), in f64 to 1e-12, on a
/// non-contiguous input (a permuted view).
#[test]
fn batchnorm_fused_rule_matches_the_composed_formula() {
    let mut rng = Rng::new(4);
    let mut store = Store::<f64>::new();
    let bn = BatchNorm2d::new(&mut store.builder(&mut rng).pp("bn"), 3);
    store.set("bn.weight", Tensor::from_vec(vec![1.5, -0.5, 0.75], &[3])).unwrap();
    store.set("bn.bias", Tensor::from_vec(vec![0.25, 1.0, -2.0], &[3])).unwrap();
    let (mut rm, mut rv) = (Tensor::<f64>::zeros(&[3]), Tensor::<f64>::ones(&[3]));
    let close = |what: &str, a: &Tensor<f64>, b: &Tensor<f64>| {
        for (i, (x, y)) in a.to_vec().iter().zip(b.to_vec()).enumerate() {
            assert!((x - y).abs() <= 1e-12 * (1.0 + y.abs()), "{what}[{i}]: {x} vs {y}");
        }
    };
    for step in 0..2 {
        let x = Tensor::<f64>::randn(&[4, 3, 6, 5], &mut rng).add_scalar(3.0).permute(&[0, 1, 3, 2]);
        assert!(!x.is_contiguous());
        let cot = Tensor::<f64>::randn(x.shape(), &mut rng);
        // Fused: the layer.
        let tape = Tape::new();
        let cx = store.bind(&tape, Mode::Train, 0);
        let xv = tape.leaf(x.clone());
        let y = bn.forward(&cx, &xv).unwrap();
        let g = tape.backward(&y.mul(&tape.constant(cot.clone())).sum_all()).unwrap();
        let pg = cx.grads(&g);
        let (fy, fx) = (y.value(), g.wrt(&xv));
        cx.finish(&mut store);
        // Composed: (x − μ)/√(σ² + ε)·γ + β, σ² biased; running variance with σ²·m/(m − 1).
        let tape = Tape::new();
        let (xv, gamma, beta) = (
            tape.leaf(x.clone()),
            tape.leaf(store.get("bn.weight").unwrap().clone()),
            tape.leaf(store.get("bn.bias").unwrap().clone()),
        );
        let mean = xv.mean(&[0, 2, 3], true);
        let centred = xv.sub(&mean);
        let var = centred.square().mean(&[0, 2, 3], true);
        let y = centred
            .div(&var.add_scalar(1e-5).sqrt())
            .mul(&gamma.reshape(&[1, 3, 1, 1]))
            .add(&beta.reshape(&[1, 3, 1, 1]));
        let g = tape.backward(&y.mul(&tape.constant(cot)).sum_all()).unwrap();
        let m = (4 * 6 * 5) as f64;
        rm = rm.mul_scalar(0.9).add(&mean.value().reshape(&[3]).mul_scalar(0.1));
        rv = rv.mul_scalar(0.9).add(&var.value().reshape(&[3]).mul_scalar(0.1 * m / (m - 1.0)));
        let what = format!("step {step}");
        close(&format!("{what} y"), &fy, &y.value());
        close(&format!("{what} ∂x"), &fx, &g.wrt(&xv));
        close(&format!("{what} ∂γ"), pg[0].as_ref().unwrap(), &g.wrt(&gamma));
        close(&format!("{what} ∂β"), pg[1].as_ref().unwrap(), &g.wrt(&beta));
        close(&format!("{what} running mean"), store.get("bn.running_mean").unwrap(), &rm);
        close(&format!("{what} running var"), store.get("bn.running_var").unwrap(), &rv);
    }
}

#[test]
fn pooling_ceil_mode_shapes_values_and_gradients() {
    let mut rng = Rng::new(3);
    let store = Store::<f64>::new();
    let x = Tensor::<f64>::randn(&[1, 2, 5, 5], &mut rng);
    let tape = Tape::new();
    let cx = store.bind(&tape, Mode::Eval, 0);
    let xv = tape.constant(x.clone());
    let m = MaxPool2d::new(3, 2).ceil_mode(true).forward(&cx, &xv).unwrap();
    let a = AvgPool2d::new(2, 2).ceil_mode(true).forward(&cx, &xv).unwrap();
    assert_eq!(m.shape(), [1, 2, 2, 2]);
    assert_eq!(a.shape(), [1, 2, 3, 3]);
    let xs = x.to_vec();
    // The bottom-right window of the average covers the single entry (4, 4): divisor 1.
    assert_eq!(a.value().to_vec()[8], xs[24]);
    // The right window of row 0 covers (0..2, 4): the mean of two entries.
    assert!((a.value().to_vec()[2] - (xs[4] + xs[9]) / 2.0).abs() < 1e-15);
    // The last max window covers rows/cols 2..5 (inside the input).
    let xr = &xs;
    let want = (2..5).flat_map(|r| (2..5).map(move |c| xr[r * 5 + c])).fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(m.value().to_vec()[3], want);
    for (name, layer) in [
        ("max ceil", Box::new(MaxPool2d::new(3, 2).ceil_mode(true)) as Box<dyn Layer<f64>>),
        ("avg ceil", Box::new(AvgPool2d::new(2, 2).ceil_mode(true))),
        ("avg floor", Box::new(AvgPool2d::new(2, 2))),
        ("global", Box::new(GlobalAvgPool)),
    ] {
        assert_passes(name, check_layer(&layer, &store, &x, Mode::Train, &opts()).unwrap());
    }
}

#[test]
fn dropout_is_the_identity_in_eval_and_inverted_in_train() {
    let store = Store::<f64>::new();
    let x = Tensor::<f64>::ones(&[4, 1000]);
    let tape = Tape::new();
    let d = Dropout::new(0.5);
    let cx = store.bind(&tape, Mode::Eval, 1);
    assert_eq!(d.forward(&cx, &tape.constant(x.clone())).unwrap().value().to_vec(), x.to_vec());
    let cx = store.bind(&tape, Mode::Train, 1);
    let y = d.forward(&cx, &tape.constant(x.clone())).unwrap().value().to_vec();
    assert!(y.iter().all(|&v| v == 0.0 || v == 2.0));
    let kept = y.iter().filter(|&&v| v == 2.0).count();
    assert!((1800..2200).contains(&kept), "kept {kept} of 4000");
    // The same seed gives the same mask.
    let cx2 = store.bind(&tape, Mode::Train, 1);
    assert_eq!(d.forward(&cx2, &tape.constant(x.clone())).unwrap().value().to_vec(), y);
    let r = check_layer(&d, &store, &Tensor::<f64>::randn(&[2, 6], &mut Rng::new(0)), Mode::Train, &opts()).unwrap();
    assert_passes("dropout", r);
}

#[test]
fn residual_block_gradients_and_shape_errors() {
    let mut rng = Rng::new(4);
    let mut store = Store::<f64>::new();
    let block = {
        let mut pb = store.builder(&mut rng);
        Residual {
            body: Box::new(
                Sequential::new()
                    .add(Conv2d::new(&mut pb.pp("c1"), 2, 3, 3, Conv2dParams::new().padding(1).stride(2), false))
                    .add(BatchNorm2d::new(&mut pb.pp("b1"), 3)),
            ),
            shortcut: Some(Box::new(Conv2d::new(&mut pb.pp("sc"), 2, 3, 1, Conv2dParams::new().stride(2), false))),
            post: Some(Box::new(Relu)),
        }
    };
    let x = Tensor::<f64>::randn(&[2, 2, 4, 4], &mut rng);
    assert_passes("residual", check_layer(&block, &store, &x, Mode::Train, &opts()).unwrap());
    // A wrong channel count is an error naming the layer, not a panic in a kernel.
    let tape = Tape::new();
    let cx = store.bind(&tape, Mode::Train, 0);
    let e = block.forward(&cx, &tape.constant(Tensor::zeros(&[1, 5, 4, 4]))).unwrap_err().to_string();
    assert!(e.contains("Conv2d(2 → 3, 3×3)") && e.contains("[1, 5, 4, 4]"), "{e}");
}

#[test]
fn a_step_updates_params_and_runs_the_layers_post_steps() {
    let mut rng = Rng::new(5);
    let mut store = Store::<f64>::new();
    let fc = {
        let mut pb = store.builder(&mut rng);
        let mut pb = pb.pp("fc");
        let fc = Linear::new(&mut pb, 3, 2, false);
        pb.post_step(fc.w, UnitNormAtoms { atom_axes: vec![1], exact: true });
        fc
    };
    assert_eq!(store.post_steps(), [("fc.weight".to_string(), "unit_norm_atoms".to_string())]);
    let tape = Tape::new();
    let cx = store.bind(&tape, Mode::Train, 0);
    let loss = fc.forward(&cx, &tape.constant(Tensor::ones(&[1, 3]))).unwrap().sum_all();
    let g = cx.grads(&tape.backward(&loss).unwrap());
    assert!(g[0].is_some());
    let mut opt = Sgd::new(0.1);
    store.step(&mut opt, &g);
    let w = store.get("fc.weight").unwrap().to_vec();
    for r in 0..2 {
        let n: f64 = w[r * 3..r * 3 + 3].iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((n - 1.0).abs() < 1e-12, "row {r} norm {n}");
    }
}

#[test]
fn lenet_from_the_registry_matches_the_count_and_runs() {
    let cfg = sparsegrad_models::nets::NetConfig::new("lenet").unwrap();
    let m = sparsegrad_models::nets::Model::<f32>::new(&cfg, &mut Rng::new(0)).unwrap();
    assert_eq!(m.store.count(), 431_080);
    assert_eq!(m.store.names()[..2], ["0.weight", "0.bias"]);
    let y = m.predict(&Tensor::zeros(&[2, 1, 28, 28])).unwrap();
    assert_eq!(y.shape(), [2, 10]);
    let back = sparsegrad_models::nets::NetConfig::from_map(&cfg.to_map()).unwrap();
    assert_eq!(back, cfg);
    assert!(sparsegrad_models::nets::NetConfig::new("nope").unwrap_err().contains("known: lenet"));
}

/// Records how many elements the tape holds each time the forward passes it.
#[derive(Clone, Default)]
struct LiveProbe(std::sync::Arc<std::sync::Mutex<Vec<usize>>>);

impl Layer<f32> for LiveProbe {
    fn forward<'t>(&self, cx: &Ctx<'t, f32>, x: &Var<'t, f32>) -> layers::Result<Var<'t, f32>> {
        self.0.lock().unwrap().push(cx.tape().live_elements());
        Ok(*x)
    }
}

#[test]
fn sequential_frees_each_activation_on_an_inference_tape_and_keeps_them_for_backward() {
    // 8 Linear(32 → 32) + ReLU layers on a batch of 16: an activation is 512 elements, a
    // weight with its bias 1,056.
    let (batch, width, depth) = (16, 32, 8);
    let mut rng = Rng::new(3);
    let mut store = Store::<f32>::new();
    let probe = LiveProbe::default();
    let net = {
        let mut pb = store.builder(&mut rng);
        let mut net = Sequential::new();
        for i in 0..depth {
            net.push(Linear::new(&mut pb.pp(3 * i), width, width, true));
            net.push(Relu);
            net.push(probe.clone());
        }
        net
    };
    let x = Tensor::<f32>::randn(&[batch, width], &mut rng);
    let act = batch * width;
    let weight = width * width + width;

    // Inference: at every probe the tape holds the input, the current activation and at most
    // one more (the one being released) — the same at layer 8 as at layer 1.
    let tape = Tape::<f32>::inference();
    let cx = store.bind(&tape, Mode::Eval, 0);
    let xin = tape.constant(x.clone());
    let y = net.forward(&cx, &xin).unwrap();
    let seen = std::mem::take(&mut *probe.0.lock().unwrap());
    assert_eq!(seen.len(), depth);
    for (i, &n) in seen.iter().enumerate() {
        assert!(n <= act + 2 * act + weight, "probe {i}: {n} elements live on the inference tape ({seen:?})");
    }
    assert_eq!(seen[depth - 1], seen[1], "the live set grows with depth: {seen:?}");

    // The same forward recording gradients keeps every activation a rule needs: the live set
    // grows by at least one activation per layer, and the backward still works.
    let tape = Tape::<f32>::new();
    let cx = store.bind(&tape, Mode::Train, 0);
    let xin = tape.constant(x);
    let yr = net.forward(&cx, &xin).unwrap();
    let seen = std::mem::take(&mut *probe.0.lock().unwrap());
    assert!(seen[depth - 1] >= seen[0] + (depth - 1) * act, "recording tape released values: {seen:?}");
    assert_eq!(yr.value().to_vec(), y.value().to_vec(), "inference and recorded forwards differ");
    tape.backward(&yr.sum_all()).unwrap();
}
