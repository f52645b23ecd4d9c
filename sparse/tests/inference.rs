//! Inference without a tape (issue 18 §1): every sparse layer, run on an inference tape
//! ([`Tape::inference`], [`infer`]), gives the recorded forward's values bit for bit, and the
//! recorded forward still back-propagates (the layers' scopes and releases free only what no
//! rule needs). [`denoise`] is DCEA's recorded mean, bit for bit. A value freed by an
//! inference scope panics clearly when used.

use autograd::{infer, try_infer, Tape, Var};
use engine::{Conv2dParams, Element, Rng, Tensor};
use sparsegrad_sparse::csc::{csc, unit_atoms, Csc, CscConfig, Gradient, Implicit};
use sparsegrad_sparse::dcea::{
    dcea_forward, dcea_forward_composite, denoise, jittered_observations, Dcea, DceaConfig, DceaParams, Family,
    PowerFold, Threshold,
};
use sparsegrad_sparse::dct::DctConv;
use sparsegrad_sparse::fista::FistaConfig;
use sparsegrad_sparse::lars::LarsConfig;
use sparsegrad_sparse::scl::{sc_loss, Distance, ScConfig};
use sparsegrad_sparse::sf::{csf, sf, Patches};

fn bits<T: Element>(t: &Tensor<T>) -> Vec<u64> {
    t.to_f64_vec().iter().map(|v| v.to_bits()).collect()
}

/// Runs `f` on leaves of a recording tape (then back-propagates from the sum of its outputs)
/// and on constants of an inference tape, and asserts the outputs are the same bits.
fn same_bits<T: Element>(what: &str, inputs: &[Tensor<T>], f: impl for<'t> Fn(&[Var<'t, T>]) -> Vec<Var<'t, T>>) {
    same_bits_then(what, inputs, true, f)
}

/// [`same_bits`], with the backward of the recorded forward run only when `backward`.
fn same_bits_then<T: Element>(
    what: &str,
    inputs: &[Tensor<T>],
    backward: bool,
    f: impl for<'t> Fn(&[Var<'t, T>]) -> Vec<Var<'t, T>>,
) {
    let tape = Tape::new();
    let vars: Vec<Var<T>> = inputs.iter().map(|t| tape.leaf(t.clone())).collect();
    let recorded = f(&vars);
    assert!(recorded.iter().any(|v| v.requires_grad()), "{what}: the recorded forward requires a gradient");
    let loss = recorded.iter().map(|v| v.sum_all()).reduce(|a, b| a.add(&b)).expect("an output");
    if let (true, Err(e)) = (backward, tape.backward(&loss)) {
        panic!("{what}: the recorded forward no longer back-propagates: {e}");
    }
    let inf = Tape::<T>::inference();
    let cvars: Vec<Var<T>> = inputs.iter().map(|t| inf.constant(t.clone())).collect();
    let inferred = inf.scope(|| f(&cvars));
    assert_eq!(recorded.len(), inferred.len());
    for (k, (r, i)) in recorded.iter().zip(&inferred).enumerate() {
        assert_eq!(r.shape(), i.shape(), "{what}: output {k} shape");
        assert!(bits(&r.value()) == bits(&i.value()), "{what}: output {k} differs from the recorded forward");
    }
    assert!(
        inf.graph().lines().all(|l| !l.contains("(#")),
        "{what}: an inference tape records no inputs\n{}",
        inf.graph()
    );
}

#[test]
fn sf_and_csf_infer_the_recorded_bits() {
    let mut rng = Rng::new(3);
    let d = Tensor::<f64>::randn(&[8, 12], &mut rng);
    let x = Tensor::<f64>::randn(&[5, 8], &mut rng);
    let cfg = LarsConfig::new(0.3, 0.01);
    same_bits("sf", &[d, x], |v| vec![sf(&v[0], &v[1], &cfg).unwrap().0]);
    let geo = Patches::new(3).stride(2).padding(1);
    let d = Tensor::<f32>::randn(&[18, 10], &mut rng);
    let x = Tensor::<f32>::randn(&[2, 2, 7, 6], &mut rng);
    let cfg = LarsConfig::new(1.5, 0.01);
    same_bits("csf", &[d, x], |v| vec![csf(&v[0], &v[1], geo, &cfg).unwrap().0.relu()]);
}

#[test]
fn csc_unrolled_and_implicit_infer_the_recorded_bits() {
    let mut rng = Rng::new(12);
    for (s, p) in [(1, 1), (2, 1)] {
        let conv = Conv2dParams::new().stride(s).padding(p);
        let w = unit_atoms(&Tensor::<f64>::randn(&[6, 2, 3, 3], &mut rng));
        let x = Tensor::<f64>::randn(&[3, 2, 9, 8], &mut rng);
        let l = Csc::new().refresh(&mut w.clone(), conv, [9, 8]).unwrap();
        for fista in
            [FistaConfig::new(0.2, 1), FistaConfig::new(0.2, 2), FistaConfig::new(0.1, 5), FistaConfig::sdnet(0.1, 5)]
        {
            for gradient in [Gradient::Unrolled, Gradient::Implicit(Implicit::default())] {
                // The implicit rule needs FISTA's fixed point (its CG may fail after a few
                // steps): only the unrolled forward is back-propagated here.
                let backward = gradient == Gradient::Unrolled;
                let cfg = CscConfig { fista: fista.clone(), conv, gradient };
                let what = format!("csc {:?} stride {s} T = {}", cfg.gradient, fista.iters);
                same_bits_then(&what, &[x.clone(), w.clone()], backward, |v| {
                    vec![csc(&v[0], &v[1], None, l, &cfg).unwrap().0]
                });
                // λ as an input of the layer.
                let inputs = [x.clone(), w.clone(), Tensor::from([0.15])];
                same_bits_then(&format!("{what}, λ a variable"), &inputs, backward, |v| {
                    vec![csc(&v[0], &v[1], Some(&v[2]), l, &cfg).unwrap().0]
                });
            }
        }
    }
}

#[test]
fn the_unrolled_csc_frees_its_iterates_on_an_inference_tape() {
    let mut rng = Rng::new(5);
    let conv = Conv2dParams::new().padding(1);
    let w = unit_atoms(&Tensor::<f32>::randn(&[6, 2, 3, 3], &mut rng));
    let x = Tensor::<f32>::randn(&[3, 2, 9, 8], &mut rng);
    let l = Csc::new().refresh(&mut w.clone(), conv, [9, 8]).unwrap();
    let cfg = CscConfig { fista: FistaConfig::sdnet(0.1, 8), conv, gradient: Gradient::Unrolled };
    let tape = Tape::<f32>::inference();
    let (xv, wv) = (tape.constant(x), tape.constant(w));
    let (z, _) = csc(&xv, &wv, None, l, &cfg).unwrap();
    let graph = tape.graph();
    let live = graph.lines().skip(1).filter(|l| !l.contains("released")).count();
    // x, w and z: every iterate and temporary of the 8 steps was freed.
    assert_eq!(live, 3, "{graph}");
    assert!(z.is_live() && xv.is_live() && wv.is_live());
}

#[test]
fn dct_conv_and_sc_loss_infer_the_recorded_bits() {
    let mut rng = Rng::new(4);
    let layer = DctConv::<f32>::new(2, 7, 3, Conv2dParams::new().padding(1));
    let x = Tensor::<f32>::randn(&[2, 2, 8, 8], &mut rng);
    let b = layer.bias_init(&mut rng);
    same_bits("dct conv", &[x, b], |v| vec![layer.forward(&v[0], &v[1])]);
    let a = Tensor::<f64>::randn(&[6, 4], &mut rng);
    let p = Tensor::<f64>::randn(&[6, 4], &mut rng);
    let eu = ScConfig::new().distance(Distance::Euclidean);
    for cfg in [ScConfig::new(), ScConfig::new().one_sided(), eu, eu.one_sided()] {
        same_bits(&format!("sc_loss {}", cfg.describe()), &[a.clone(), p.clone()], |v| {
            vec![sc_loss(&v[0], &v[1], cfg)]
        });
    }
}

fn small(family: Family, tied: bool, stride: usize) -> DceaConfig {
    DceaConfig::new(family, 3, [3, 3])
        .stride(stride)
        .shifts(stride > 1)
        .tied(tied)
        .iters(4)
        .threshold(Threshold::OneSided, 0.05)
        .elu((family == Family::Poisson).then_some(4.0))
        .fold(Some(PowerFold { iters: 25, image: [10, 10], factor: 5.0, seed: 2 }))
}

fn params_of<'t, T: Element>(cfg: &DceaConfig, v: &[Var<'t, T>]) -> DceaParams<'t, T> {
    if cfg.tied {
        DceaParams { h: v[0], we: v[0], wd: v[0], b: v[1], tied: true }
    } else {
        DceaParams { h: v[0], we: v[1], wd: v[2], b: v[3], tied: false }
    }
}

#[test]
fn dcea_infers_the_recorded_bits_and_denoise_is_its_mean() {
    let mut rng = Rng::new(9);
    for family in [Family::Gaussian, Family::Poisson, Family::Binomial { trials: 3.0 }] {
        for tied in [true, false] {
            for stride in [1, 2] {
                let cfg = small(family, tied, stride);
                let model = Dcea::<f64>::new(cfg.clone(), &mut rng).unwrap();
                let y = jittered_observations(family, &[2, 1, 10, 9], &mut rng);
                let mut inputs: Vec<Tensor<f64>> = model.params().into_iter().cloned().collect();
                inputs.push(y.clone());
                let n = inputs.len() - 1;
                let what = format!("dcea {} tied {tied} stride {stride}", family.name());
                same_bits(&what, &inputs, |v| {
                    let out = dcea_forward(&params_of(&cfg, &v[..n]), &v[n], &cfg);
                    vec![out.eta, out.code]
                });
                same_bits(&format!("{what} composite"), &inputs, |v| {
                    let out = dcea_forward_composite(&params_of(&cfg, &v[..n]), &v[n], &cfg);
                    vec![out.eta, out.code]
                });
                // denoise: the recorded mean, bit for bit.
                let tape = Tape::new();
                let out = dcea_forward(&model.bind(&tape), &tape.constant(y.clone()), &cfg);
                let recorded = family.mean(&out.eta).value();
                assert!(bits(&denoise(&model, &y).unwrap()) == bits(&recorded), "{what}: denoise");
            }
        }
    }
}

#[test]
fn dcea_in_f32_on_the_authors_geometry_infers_the_recorded_bits() {
    // The authors' configuration, shrunk: 11×11 filters, stride 7 with the 49 shifts, ELU₄.
    let cfg = DceaConfig::poisson_denoising(4.0, true).iters(3).fold(Some(PowerFold {
        iters: 5,
        image: [40, 40],
        ..PowerFold::default()
    }));
    let cfg = DceaConfig { filters: 8, ..cfg };
    let mut rng = Rng::new(2);
    let model = Dcea::<f32>::new(cfg.clone(), &mut rng).unwrap();
    let counts = jittered_observations(Family::Poisson, &[1, 1, 30, 30], &mut rng);
    let y = Tensor::<f32>::from_vec(counts.to_vec().iter().map(|v| v.floor() as f32).collect(), &[1, 1, 30, 30]);
    let tape = Tape::new();
    let p = model.bind(&tape);
    let out = dcea_forward(&p, &tape.constant(y.clone()), &cfg);
    let recorded = out.eta.exp().value();
    let g = tape.backward(&out.eta.exp().sum_all()).unwrap();
    assert!(p.grads(&g).iter().all(Option::is_some));
    assert!(bits(&denoise(&model, &y).unwrap()) == bits(&recorded));
    // Under no_grad on a recording tape, the iterates are released too.
    let tape = Tape::new();
    let eta = tape.no_grad(|| dcea_forward(&model.bind(&tape), &tape.constant(y.clone()), &cfg).eta);
    assert!(bits(&eta.exp().value()) == bits(&recorded));
    let released = tape.graph().lines().filter(|l| l.contains("released")).count();
    assert!(released >= cfg.iters, "no_grad keeps the iterates:\n{}", tape.graph());
}

#[test]
fn denoise_reports_non_finite_observations() {
    let cfg = small(Family::Poisson, true, 1);
    let model = Dcea::<f64>::new(cfg, &mut Rng::new(1)).unwrap();
    let mut y = vec![1.0; 90];
    y[17] = f64::NAN;
    let err = denoise(&model, &Tensor::from_vec(y, &[1, 1, 10, 9])).unwrap_err();
    assert!(format!("{err}").contains("denoise"), "{err}");
}

#[test]
#[should_panic(expected = "was freed by an inference scope")]
fn a_layer_given_a_freed_value_panics_clearly() {
    let mut rng = Rng::new(3);
    let d = Tensor::<f64>::randn(&[8, 12], &mut rng);
    let x = Tensor::<f64>::randn(&[5, 8], &mut rng);
    let tape = Tape::<f64>::inference();
    let dv = tape.constant(d);
    let mut hidden = None;
    let codes = tape.scope(|| {
        let h = tape.constant(x.clone()).tanh();
        hidden = Some(h);
        sf(&dv, &h, &LarsConfig::new(0.3, 0.0))
    });
    assert!(codes.is_ok());
    let _ = sf(&dv, &hidden.unwrap(), &LarsConfig::new(0.3, 0.0));
}

#[test]
fn try_infer_runs_a_fallible_layer() {
    let mut rng = Rng::new(3);
    let d = Tensor::<f64>::randn(&[8, 12], &mut rng);
    let x = Tensor::<f64>::randn(&[5, 8], &mut rng);
    let cfg = LarsConfig::new(0.3, 0.01);
    let codes = try_infer(|t| {
        Ok::<_, sparsegrad_sparse::SparseError>(sf(&t.constant(d.clone()), &t.constant(x.clone()), &cfg)?.0)
    });
    let tape = Tape::new();
    let recorded = sf(&tape.leaf(d.clone()), &tape.leaf(x.clone()), &cfg).unwrap().0.value();
    assert!(bits(&codes.unwrap()) == bits(&recorded));
    let bad: Result<Tensor<f64>, sparsegrad_sparse::SparseError> =
        try_infer(|t| Ok(sf(&t.constant(d.clone()), &t.constant(x.map(|_| f64::NAN)), &cfg)?.0));
    assert!(bad.is_err());
    let _ = infer(|t| t.constant(d.clone()).sum_all());
}
