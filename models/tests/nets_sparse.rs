//! The sparse-coding layers and networks (issue 19 §1): parameter counts, output shapes, one
//! SGD step that lowers the loss on a tiny fixed batch (f32), the unit-ball projection of the
//! dictionaries, and f64 gradient checks of the layers and of reduced networks (non-contiguous
//! inputs).

use autograd::check::CheckOptions;
use autograd::optim::Sgd;
use autograd::{Reduction, Tape, Var};
use engine::{Rng, Tensor};
use sparse::dcea::{dcea_forward, jittered_observations, DceaConfig, DceaParams, Family, PowerFold};
use sparse::scl::ScConfig;
use sparse::sf::Patches;
use sparse::LarsConfig;
use sparsegrad_models::layers::{check_layer, Csf, Ctx, DceaLayer, Layer, Mode, Result, Sf, SpatialContrasting, Store};
use sparsegrad_models::nets::unsupervised::{build_unsupervised, Unsupervised};
use sparsegrad_models::nets::{Model, NetConfig};

fn opts() -> CheckOptions {
    CheckOptions::default().atol(1e-6).rtol(1e-5)
}

#[track_caller]
fn assert_passes(what: &str, r: autograd::check::GradReport) {
    for i in &r.inputs {
        assert!(
            i.passed,
            "{what}: input {} {:?} failed: abs {:e} rel {:e}, worst {:?}",
            i.input, i.shape, i.max_abs_err, i.max_rel_err, i.worst
        );
    }
}

/// The DCEA network with a cheap step fold (the counts do not depend on it).
fn dcea_cfg() -> NetConfig {
    NetConfig::new("dcea").unwrap().option("fold_iters", 3).option("fold_image", 48)
}

// ---------------------------------------------------------------------------------------------
// Counts and shapes

#[test]
fn parameter_counts() {
    // LeNet at C = 10: conv1 20·25 + 20 = 520, conv2 50·20·25 + 50 = 25,050, conv3 (the first
    // fully-connected layer) 500·50·16 + 500 = 400,500, fc 10·500 + 10 = 5,010: 431,080.
    // SF replaces conv3 + ReLU by D [800, 500] (no bias): 431,080 − 500 = 430,580.
    // CSF replaces conv1 by D [25, 20] (no bias): 431,080 − 20 = 431,060. Both: 430,560.
    // Learned λ1, λ2 add 2.
    // DCEA (169 filters 11×11): tied H 169·121 = 20,449 + b 169 = 20,618; untied adds We, Wd:
    // 3·20,449 + 169 = 61,516; one b per iteration (T = 15) adds 14·169 = 2,366.
    // sc-convnet (w = 32, CIFAR): 3·32·9+32 = 896, 32·32·9+32 = 9,248, 32·64·9+64 = 18,496,
    // 64·64·9+64 = 36,928, 64·128·9+128 = 73,856, 128·10+10 = 1,290: 140,714; MNIST input
    // (1 channel): conv1 1·32·9+32 = 320, 140,138.
    let cases = [
        (NetConfig::new("lenet").unwrap(), 431_080),
        (NetConfig::new("sf-lenet").unwrap(), 430_580),
        (NetConfig::new("sf-lenet").unwrap().option("learn_lambdas", true), 430_582),
        (NetConfig::new("csf-lenet").unwrap(), 431_060),
        (NetConfig::new("csf-sf-lenet").unwrap(), 430_560),
        (dcea_cfg(), 20_618),
        (dcea_cfg().option("tied", false), 61_516),
        (dcea_cfg().option("single_bias", false), 20_618 + 14 * 169),
        (NetConfig::new("sc-convnet").unwrap(), 140_714),
        (NetConfig::new("sc-convnet").unwrap().input([1, 28, 28]), 140_138),
    ];
    for (cfg, want) in cases {
        let m = Model::<f32>::new(&cfg, &mut Rng::new(0)).unwrap();
        assert_eq!(m.store.count(), want, "{:?}", cfg);
    }
    let m = Model::<f32>::new(&dcea_cfg().option("tied", false), &mut Rng::new(0)).unwrap();
    assert_eq!(m.store.names(), ["H", "We", "Wd", "b"]);
    assert_eq!(m.store.get("b").unwrap().shape(), [1, 169, 1, 1]);
    let m = Model::<f32>::new(&NetConfig::new("csf-sf-lenet").unwrap(), &mut Rng::new(0)).unwrap();
    assert_eq!(m.store.names(), ["0.dictionary", "2.weight", "2.bias", "4.dictionary", "7.weight", "7.bias"]);
    assert_eq!(
        m.store.post_steps(),
        [
            ("0.dictionary".to_string(), "unit_norm_atoms".to_string()),
            ("4.dictionary".to_string(), "unit_norm_atoms".to_string())
        ]
    );
}

#[test]
fn output_shapes() {
    let mut rng = Rng::new(3);
    let mnist = Tensor::<f32>::rand_uniform(&[2, 1, 28, 28], 0.0, 1.0, &mut rng);
    for name in ["sf-lenet", "csf-lenet", "csf-sf-lenet"] {
        let m = Model::<f32>::new(&NetConfig::new(name).unwrap(), &mut rng).unwrap();
        assert_eq!(m.predict(&mnist).unwrap().shape(), [2, 10], "{name}");
    }
    let m = Model::<f32>::new(&NetConfig::new("sc-convnet").unwrap().input([1, 28, 28]), &mut rng).unwrap();
    assert_eq!(m.predict(&mnist).unwrap().shape(), [2, 10]);
    let cifar = Tensor::<f32>::rand_uniform(&[2, 3, 32, 32], 0.0, 1.0, &mut rng);
    let m = Model::<f32>::new(&NetConfig::new("sc-convnet").unwrap(), &mut rng).unwrap();
    assert_eq!(m.predict(&cifar).unwrap().shape(), [2, 10]);
    // DCEA: the denoised mean has the image's shape; counts in, positive values out.
    let m = Model::<f32>::new(&dcea_cfg(), &mut rng).unwrap();
    let y = Tensor::<f32>::from_vec((0..2 * 30 * 30).map(|i| (i % 5) as f32).collect(), &[2, 1, 30, 30]);
    let out = m.predict(&y).unwrap();
    assert_eq!(out.shape(), [2, 1, 30, 30]);
    assert!(out.to_f64_vec().iter().all(|v| *v > 0.0 && v.is_finite()));
    // The unsupervised terms are scalars.
    for cfg in [NetConfig::new("csf-sf-lenet").unwrap(), NetConfig::new("sc-convnet").unwrap().input([1, 28, 28])] {
        let mut store = Store::<f32>::new();
        let net = build_unsupervised(&cfg, &mut store.builder(&mut rng)).unwrap();
        let tape = Tape::new();
        let cx = store.bind(&tape, Mode::Train, 0);
        let lu = net.unsupervised_loss(&cx, &tape.constant(mnist.clone())).unwrap();
        assert!(lu.shape().is_empty() && lu.item().is_finite() && lu.item() > 0.0, "{}", cfg.name);
    }
}

// ---------------------------------------------------------------------------------------------
// One SGD step lowers the loss (f32)

/// `loss(net, cx, x)` before and after one SGD step at `lr` (same context seed, so the same
/// patches and dropout masks), returning both and the store after the step.
fn step_once(
    cfg: &NetConfig,
    x: &Tensor<f32>,
    lr: f64,
    loss: impl for<'t> Fn(&dyn Unsupervised<f32>, &Ctx<'t, f32>, &Var<'t, f32>) -> Result<Var<'t, f32>>,
) -> (f64, f64, Store<f32>) {
    let mut store = Store::<f32>::new();
    let net = build_unsupervised(cfg, &mut store.builder(&mut Rng::new(11))).unwrap();
    let eval = |store: &Store<f32>| {
        let tape = Tape::new();
        let cx = store.bind(&tape, Mode::Train, 5);
        let l = loss(net.as_ref(), &cx, &tape.constant(x.clone())).unwrap();
        let g = cx.grads(&tape.backward(&l).unwrap());
        (l.item(), g)
    };
    let (before, g) = eval(&store);
    store.step(&mut Sgd::new(lr), &g);
    let (after, _) = eval(&store);
    (before, after, store)
}

fn labels() -> Vec<usize> {
    vec![3, 7]
}

#[test]
fn one_sgd_step_lowers_the_loss() {
    let mut rng = Rng::new(21);
    let mnist = Tensor::<f32>::rand_uniform(&[2, 1, 28, 28], 0.0, 1.0, &mut rng);
    // Supervised (cross-entropy) plus γ = 0.1 times the unsupervised term, as a training loop
    // would on a labelled batch.
    for name in ["sf-lenet", "csf-lenet", "csf-sf-lenet"] {
        let (b, a, store) = step_once(&NetConfig::new(name).unwrap(), &mnist, 0.01, |net, cx, x| {
            let ce = net.forward(cx, x)?.cross_entropy(&labels(), Reduction::Mean);
            Ok(ce.add(&net.unsupervised_loss(cx, x)?.mul_scalar(0.1)))
        });
        assert!(a < b, "{name}: {b} → {a}");
        // The projection keeps every atom in the unit ball, and those the step pushed out are
        // back on the sphere.
        for d in ["0.dictionary", "4.dictionary"] {
            if let Some(t) = store.get(d) {
                let norms = t.norm_l2(&[0], false).to_f64_vec();
                assert!(norms.iter().all(|n| *n <= 1.0 + 1e-6), "{name} {d}: {norms:?}");
                assert!(norms.iter().any(|n| (n - 1.0).abs() < 1e-6), "{name} {d}: {norms:?}");
            }
        }
    }
    // The SC convnet: its SC loss (unsupervised pretraining), then its classifier. Four
    // images of different contrast, so that the patches of one image resemble each other.
    let cfg = NetConfig::new("sc-convnet").unwrap().input([1, 28, 28]).option("width", 8);
    let pattern = Tensor::<f32>::rand_uniform(&[1, 1, 28, 28], 0.0, 1.0, &mut rng);
    let images: Vec<Tensor<f32>> = (0..4).map(|n| pattern.mul_scalar(4.0 * n as f64 + 1.0)).collect();
    let sc_batch = Tensor::concat(&images.iter().collect::<Vec<_>>(), 0);
    let (b, a, _) = step_once(&cfg, &sc_batch, 0.05, |net, cx, x| net.unsupervised_loss(cx, x));
    assert!(a < b, "sc-convnet SC: {b} → {a}");
    let (b, a, _) =
        step_once(&cfg, &mnist, 0.05, |net, cx, x| Ok(net.forward(cx, x)?.cross_entropy(&labels(), Reduction::Mean)));
    assert!(a < b, "sc-convnet CE: {b} → {a}");
    // DCEA, the authors' configuration (fold shortened): the Poisson NLL of the counts.
    let counts: Vec<f32> = (0..2 * 28 * 28).map(|_| rng.poisson(2.0) as f32).collect();
    let y = Tensor::from_vec(counts, &[2, 1, 28, 28]);
    for tied in [true, false] {
        let (b, a, _) =
            step_once(&dcea_cfg().option("tied", tied), &y, 0.01, |net, cx, x| net.unsupervised_loss(cx, x));
        assert!(a < b, "dcea tied={tied}: {b} → {a}");
    }
}

// ---------------------------------------------------------------------------------------------
// Gradient checks (f64)

/// Returns a layer's unsupervised loss as its output, for `check_layer`.
struct Lu<'a, L>(&'a L);

impl Layer<f64> for Lu<'_, Sf> {
    fn forward<'t>(&self, cx: &Ctx<'t, f64>, x: &Var<'t, f64>) -> Result<Var<'t, f64>> {
        self.0.unsupervised_loss(cx, x)
    }
}

impl Layer<f64> for Lu<'_, Csf> {
    fn forward<'t>(&self, cx: &Ctx<'t, f64>, x: &Var<'t, f64>) -> Result<Var<'t, f64>> {
        self.0.unsupervised_loss(cx, x)
    }
}

impl Layer<f64> for Lu<'_, DceaLayer> {
    fn forward<'t>(&self, cx: &Ctx<'t, f64>, x: &Var<'t, f64>) -> Result<Var<'t, f64>> {
        self.0.unsupervised_loss(cx, x)
    }
}

impl Layer<f64> for Lu<'_, Box<dyn Unsupervised<f64>>> {
    fn forward<'t>(&self, cx: &Ctx<'t, f64>, x: &Var<'t, f64>) -> Result<Var<'t, f64>> {
        self.0.unsupervised_loss(cx, x)
    }
}

/// The supervised forward of a network built by `build_unsupervised`, for `check_layer`.
struct Fwd<'a>(&'a dyn Unsupervised<f64>);

impl Layer<f64> for Fwd<'_> {
    fn forward<'t>(&self, cx: &Ctx<'t, f64>, x: &Var<'t, f64>) -> Result<Var<'t, f64>> {
        self.0.forward(cx, x)
    }
}

/// λ1 as `frac` of the largest correlation of `x [N, m]` with the atoms of `d [m, k]`.
fn lambda_for(d: &Tensor<f64>, x: &Tensor<f64>, frac: f64) -> f64 {
    frac * x.matmul(d).to_f64_vec().iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

#[test]
fn sf_layer_gradients() {
    for learn in [false, true] {
        let mut rng = Rng::new(if learn { 31 } else { 32 });
        // x [N, m] = [3, 6] as the transpose of a [6, 3] tensor (non-contiguous).
        let x = Tensor::<f64>::randn(&[6, 3], &mut rng).t();
        assert!(!x.is_contiguous());
        let mut store = Store::<f64>::new();
        let mut pb = store.builder(&mut rng);
        let d0 = sparsegrad_models::layers::init::unit_atoms::<f64>(&[6, 4], &[0], pb.rng());
        let cfg = LarsConfig::new(lambda_for(&d0, &x, 0.3), 0.05);
        let sf = Sf::new(&mut pb.pp("sf"), 6, 4, cfg.clone(), learn);
        store.set("sf.dictionary", d0.clone()).unwrap();
        let margin = sparse::audit::kink_margin(&d0, &x.contiguous(), &cfg).unwrap();
        assert!(margin > sparse::audit::KINK_MARGIN, "margin {margin}");
        assert_passes("sf", check_layer(&sf, &store, &x, Mode::Train, &opts()).unwrap());
        // L_u takes learned λ as constants (documented on Sf::unsupervised_loss): checked with
        // respect to x and D only (inputs 0 and 1; λ1, λ2 are inputs 2 and 3).
        assert_passes("sf_loss", check_layer(&Lu(&sf), &store, &x, Mode::Train, &opts().wrt(&[0, 1])).unwrap());
    }
}

#[test]
fn csf_layer_gradients() {
    let mut rng = Rng::new(41);
    // x [2, 2, 5, 5] as a view with the last two axes swapped.
    let x = Tensor::<f64>::randn(&[2, 2, 5, 5], &mut rng).transpose(2, 3);
    let patches = Patches::new(3).padding(1).stride(2);
    let mut store = Store::<f64>::new();
    let mut pb = store.builder(&mut rng);
    let d0 = sparsegrad_models::layers::init::unit_atoms::<f64>(&[18, 5], &[0], pb.rng());
    // The patch matrix [N·H'·W', 18] for λ1 and the margin.
    let cols = x.im2col(patches.kernel, patches.conv);
    let (n, m, l) = (cols.dim(0), cols.dim(1), cols.dim(2));
    let rows = cols.transpose(1, 2).contiguous().reshape(&[n * l, m]);
    let cfg = LarsConfig::new(lambda_for(&d0, &rows, 0.4), 0.02);
    let csf = Csf::new(&mut pb.pp("csf"), 2, 5, patches, cfg.clone());
    store.set("csf.dictionary", d0.clone()).unwrap();
    let margin = sparse::audit::kink_margin(&d0, &rows, &cfg).unwrap();
    assert!(margin > sparse::audit::KINK_MARGIN, "margin {margin}");
    assert_passes("csf", check_layer(&csf, &store, &x, Mode::Train, &opts()).unwrap());
    assert_passes("csf_loss", check_layer(&Lu(&csf), &store, &x, Mode::Train, &opts()).unwrap());
}

/// A small DCEA: 3 filters 3×3, stride 2 with the shifts, 3 steps, ELU, step folded.
fn small_dcea(family: Family, tied: bool) -> DceaConfig {
    DceaConfig::new(family, 3, [3, 3])
        .stride(2)
        .shifts(true)
        .iters(3)
        .tied(tied)
        .threshold(sparse::dcea::Threshold::OneSided, 0.05)
        .elu(Some(2.0))
        .fold(Some(PowerFold { iters: 10, image: [8, 8], factor: 1.0, seed: 1 }))
}

#[test]
fn dcea_layer_gradients_and_the_fused_forward() {
    for (family, tied, single) in
        [(Family::Poisson, true, true), (Family::Poisson, false, false), (Family::Gaussian, false, true)]
    {
        let mut rng = Rng::new(51);
        let cfg = small_dcea(family, tied);
        let mut store = Store::<f64>::new();
        let layer = DceaLayer::new(&mut store.builder(&mut rng).pp("dcea"), cfg.clone(), single).unwrap();
        // Distinct thresholds per iteration, so the check sees each.
        for (t, name) in store.names().iter().map(|s| s.to_string()).collect::<Vec<_>>().iter().enumerate() {
            if name.contains(".b") {
                let v = Tensor::rand_uniform(&[1, 3, 1, 1], 0.02, 0.1, &mut rng).add_scalar(0.001 * t as f64);
                store.set(name, v).unwrap();
            }
        }
        let y = jittered_observations(family, &[2, 1, 9, 9], &mut rng).transpose(2, 3);
        assert!(!y.is_contiguous());
        let what = format!("dcea {family:?} tied={tied} single_bias={single}");
        assert_passes(&what, check_layer(&layer, &store, &y, Mode::Train, &opts()).unwrap());
        assert_passes(&what, check_layer(&Lu(&layer), &store, &y, Mode::Train, &opts()).unwrap());
        {
            // With every threshold equal (one shared b, or b0 = … = b{T−1}), the same η̂ as
            // the sparse crate's dcea_forward.
            let common = Tensor::rand_uniform(&[1, 3, 1, 1], 0.02, 0.1, &mut rng);
            for name in store.names().iter().map(|s| s.to_string()).collect::<Vec<_>>() {
                if name.contains(".b") {
                    store.set(&name, common.clone()).unwrap();
                }
            }
            let tape = Tape::new();
            let cx = store.bind(&tape, Mode::Eval, 0);
            let yv = tape.constant(y.clone());
            let mine = layer.encode(&cx, &yv).unwrap().eta.value();
            let p = |n: &str| tape.constant(store.get(&format!("dcea.{n}")).unwrap().clone());
            let h = p("H");
            let (we, wd) = if tied { (h, h) } else { (p("We"), p("Wd")) };
            let params = DceaParams { h, we, wd, b: tape.constant(common.reshape(&[3])), tied };
            let theirs = dcea_forward(&params, &yv, &cfg).eta.value();
            let diff = mine.sub(&theirs).to_f64_vec().iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(diff == 0.0, "{what}: η̂ differs from dcea_forward by {diff:e}");
        }
    }
}

#[test]
fn sc_head_gradients_and_patches() {
    // The reduced SC convnet (width 2, 8×8 inputs, 4×4 patches, no dropout): SC loss and
    // classifier, with respect to the input and every parameter.
    let cfg = NetConfig::new("sc-convnet")
        .unwrap()
        .input([1, 8, 8])
        .classes(3)
        .option("width", 2)
        .option("patch", 4)
        .option("dropout", 0);
    let mut rng = Rng::new(61);
    let mut store = Store::<f64>::new();
    let net = build_unsupervised(&cfg, &mut store.builder(&mut rng)).unwrap();
    let x = Tensor::<f64>::randn(&[3, 1, 8, 8], &mut rng).transpose(2, 3);
    assert_passes("sc-convnet SC", check_layer(&Lu(&net), &store, &x, Mode::Train, &opts()).unwrap());
    assert_passes("sc-convnet logits", check_layer(&Fwd(net.as_ref()), &store, &x, Mode::Train, &opts()).unwrap());
    // The patches: two per image, each a window of its own image.
    let head = SpatialContrasting::new(3, ScConfig::new());
    let x = Tensor::<f64>::from_vec((0..2 * 5 * 5).map(|v| v as f64).collect(), &[2, 1, 5, 5]);
    let tape = Tape::new();
    let cx = Store::<f64>::new().bind(&tape, Mode::Train, 9);
    let (a, p) = head.sample(&cx, &tape.constant(x)).unwrap();
    assert_eq!(a.shape(), [2, 1, 3, 3]);
    for (n, v) in a.value().to_f64_vec().chunks(9).chain(p.value().to_f64_vec().chunks(9)).enumerate() {
        let img = (n % 2) as f64 * 25.0;
        assert!(v.iter().all(|e| (img..img + 25.0).contains(e)), "patch {n} {v:?}");
        assert_eq!(v[1] - v[0], 1.0);
        assert_eq!(v[3] - v[0], 5.0);
    }
}

#[test]
fn reduced_sparse_lenets_gradients() {
    // c1 = 2, c2 = 3, hidden = 6: D [25, 2], conv 2→3, D [48, 6], fc 6→3, on one 28×28 image;
    // λ1 = 0.05 keeps some atoms active in both sparse layers.
    for name in ["csf-sf-lenet", "sf-lenet"] {
        let cfg = NetConfig::new(name)
            .unwrap()
            .classes(3)
            .option("c1", 2)
            .option("c2", 3)
            .option("hidden", 6)
            .option("lambda1", 0.05)
            .option("learn_lambdas", name == "sf-lenet");
        let mut rng = Rng::new(71);
        let mut store = Store::<f64>::new();
        let net = build_unsupervised(&cfg, &mut store.builder(&mut rng)).unwrap();
        let x = Tensor::<f64>::rand_uniform(&[1, 1, 28, 28], 0.0, 1.0, &mut rng).transpose(2, 3);
        let o = opts().max_elements(40);
        assert_passes(name, check_layer(&Fwd(net.as_ref()), &store, &x, Mode::Train, &o).unwrap());
        // With learned λ (sf-lenet: inputs 6 and 7 are 4.lambda1, 4.lambda2, after x and
        // 0.weight … 4.dictionary), L_u takes them as constants: not checked for L_u.
        let lu = if name == "sf-lenet" { o.wrt(&[0, 1, 2, 3, 4, 5, 8, 9]) } else { o };
        assert_passes(&format!("{name} L_u"), check_layer(&Lu(&net), &store, &x, Mode::Train, &lu).unwrap());
    }
}

#[test]
fn dcea_per_iteration_thresholds_follow_the_authors_loop() {
    // The authors' DEA2Dfree loop with single_bias = False, written out with elementary ops:
    // x ← ReLU(x + We ⋆ ELU_a(y − exp(H ⋆ᵀ x)) − b_t), t = 0 … T−1; η̂ = Wd ⋆ᵀ x (stride 1).
    let cfg = DceaConfig::new(Family::Poisson, 3, [3, 3]).iters(4).tied(false).elu(Some(2.0)).fold(Some(PowerFold {
        iters: 10,
        image: [8, 8],
        factor: 1.0,
        seed: 1,
    }));
    let mut rng = Rng::new(81);
    let mut store = Store::<f64>::new();
    let layer = DceaLayer::new(&mut store.builder(&mut rng), cfg, false).unwrap();
    for t in 0..4 {
        store.set(&format!("b{t}"), Tensor::rand_uniform(&[1, 3, 1, 1], 0.0, 0.2, &mut rng)).unwrap();
    }
    // Untied banks that differ, so that a swapped bank shows.
    for n in ["We", "Wd"] {
        let w = store.get(n).unwrap().add(&Tensor::randn(&[3, 1, 3, 3], &mut rng).mul_scalar(0.05));
        store.set(n, w).unwrap();
    }
    let y = jittered_observations(Family::Poisson, &[2, 1, 7, 7], &mut rng);
    let tape = Tape::new();
    let cx = store.bind(&tape, Mode::Eval, 0);
    let yv = tape.constant(y);
    let mine = layer.encode(&cx, &yv).unwrap().eta.value();
    let p = |n: &str| tape.constant(store.get(n).unwrap().clone());
    let (h, we, wd) = (p("H"), p("We"), p("Wd"));
    let (conv, convt) = (engine::Conv2dParams::new(), engine::ConvTranspose2dParams::new());
    let mut x = tape.constant(Tensor::zeros(&[2, 3, 5, 5]));
    for t in 0..4 {
        let r = yv.sub(&x.conv_transpose2d(&h, None, convt).exp()).elu(2.0);
        x = x.add(&r.conv2d(&we, None, conv)).sub(&p(&format!("b{t}"))).relu();
    }
    let theirs = x.conv_transpose2d(&wd, None, convt).value();
    let diff = mine.sub(&theirs).to_f64_vec().iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(diff < 1e-12, "η̂ differs from the authors' loop by {diff:e}");
}
