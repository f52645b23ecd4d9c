//! DCEA (docs/math.md §4) against PyTorch, against hand-derived values, against its own
//! composites, by central differences, in f32 against f64, and on its configuration.
//! The planted-dictionary recovery test is in `tests/dcea_recovery.rs`.

use autograd::{check_gradients, BackwardOptions, CheckOptions, Reduction, Tape, Var};
use engine::{Rng, Tensor};
use sparsegrad_sparse::dcea::{
    dcea_forward, dcea_forward_composite, dcea_forward_traced, jittered_observations, nll, poisson_estimate,
    poisson_observation, poisson_scale, power_estimate, psnr, shift_batch, shift_mean, Dcea, DceaConfig, DceaParams,
    Family, PowerFold, Threshold,
};
use sparsegrad_sparse::SparseError;

#[path = "dcea_torch/reference.rs"]
mod reference;

/// Largest `|a − b| / max(1, |b|)`, with its index.
fn worst(got: &[f64], want: &[f64]) -> (usize, f64) {
    assert_eq!(got.len(), want.len(), "lengths differ");
    got.iter().zip(want).enumerate().fold((0, 0.0), |w, (i, (a, b))| {
        let e = (a - b).abs() / b.abs().max(1.0);
        if e > w.1 || e.is_nan() {
            (i, e)
        } else {
            w
        }
    })
}

#[track_caller]
fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    let (i, e) = worst(got, want);
    assert!(e <= tol, "{what}: element {i} is {:e}, expected {:e} (relative error {e:.2e} > {tol:e})", got[i], want[i]);
}

// ---------------------------------------------------------------------------------------------
// PyTorch: the authors' forward (split_image, reflect shifts, masked mean) in float64

/// The inputs of `dcea_torch/make_reference.py`, from the same closed-form formulas.
fn torch_filters() -> (Tensor<f64>, Tensor<f64>, Tensor<f64>, Tensor<f64>) {
    let n = 3 * 3 * 3;
    let h: Vec<f64> = (0..n).map(|i| 0.35 * 0.5 * (1.7 * i as f64 + 0.3).sin()).collect();
    let we: Vec<f64> = (0..n).map(|i| h[i] + 0.05 * (2.1 * i as f64).cos()).collect();
    let wd: Vec<f64> = (0..n).map(|i| h[i] - 0.04 * (0.9 * i as f64 + 1.0).sin()).collect();
    let b: Vec<f64> = (0..3).map(|k| 0.05 + 0.02 * k as f64).collect();
    let s = [3, 1, 3, 3];
    (Tensor::from_vec(h, &s), Tensor::from_vec(we, &s), Tensor::from_vec(wd, &s), Tensor::from_vec(b, &[3]))
}

fn torch_observations(family: &str) -> Tensor<f64> {
    let y: Vec<f64> = (0..56)
        .map(|i| {
            let i = i as f64;
            match family {
                "poisson" => (2.5 * (1.0 + (0.37 * i + 0.1).sin())).floor(),
                "binomial" => ((0.53 * i).sin() > 0.0) as u8 as f64,
                _ => (0.41 * i).sin() + 0.3 * (1.3 * i).cos(),
            }
        })
        .collect();
    Tensor::from_vec(y, &[1, 1, 7, 8])
}

fn family_of(name: &str) -> Family {
    match name {
        "poisson" => Family::Poisson,
        "binomial" => Family::Binomial { trials: 1.0 },
        _ => Family::Gaussian,
    }
}

#[test]
fn forward_and_gradients_match_pytorch_on_the_authors_model() {
    // 3 filters of 3×3, stride 2 with its 4 reflect-padded shifts, one 7×8 image, one-sided
    // threshold, ELU_2 on the Poisson residual, loss = the family's NLL summed. Tolerance
    // 1e-10 relative (both sides are float64; the reference's kink margin is ≥ 1e-5).
    for case in reference::CASES {
        let family = family_of(case.family);
        let cfg = DceaConfig::new(family, 3, [3, 3])
            .stride(2)
            .shifts(true)
            .iters(case.iters)
            .tied(case.tied)
            .threshold(Threshold::OneSided, 0.0)
            .elu((family == Family::Poisson).then_some(reference::ALPHA))
            .fold(None);
        let (h, we, wd, b) = torch_filters();
        let y = torch_observations(case.family);
        let tape = Tape::<f64>::new();
        let hv = tape.leaf(h);
        let (wev, wdv) = if case.tied { (hv, hv) } else { (tape.leaf(we), tape.leaf(wd)) };
        let p = DceaParams { h: hv, we: wev, wd: wdv, b: tape.leaf(b), tied: case.tied };
        let yv = tape.constant(y);
        let out = dcea_forward_traced(&p, &yv, &cfg);
        let stats = out.stats.as_ref().unwrap();
        assert!(case.margin > 1e-6, "{}: the reference sits near a kink", case.family);
        assert!(stats.parameter_kink_margin() > 1e-6, "{}: margin {stats:?}", case.family);
        let loss = nll(family, &out.eta, &yv, Reduction::Sum);
        let what = format!("{} {}", case.family, if case.tied { "tied" } else { "untied" });
        assert_close(&format!("{what}: eta"), &out.eta.value().to_vec(), case.eta, 1e-10);
        assert_close(&format!("{what}: loss"), &[loss.item()], &[case.loss], 1e-10);
        let g = tape.backward(&loss).unwrap();
        assert_close(&format!("{what}: ∂H"), &g.wrt(&p.h).to_vec(), case.grad_h, 1e-10);
        assert_close(&format!("{what}: ∂b"), &g.wrt(&p.b).to_vec(), case.grad_b, 1e-10);
        if !case.tied {
            assert_close(&format!("{what}: ∂We"), &g.wrt(&p.we).to_vec(), case.grad_we, 1e-10);
            assert_close(&format!("{what}: ∂Wd"), &g.wrt(&p.wd).to_vec(), case.grad_wd, 1e-10);
        }
    }
}

#[test]
fn power_estimate_matches_the_authors_conv_power_method() {
    // 30 iterations of v ← v/‖v‖, v ← Hᵀexp(Hv) on the codes of a 12×12 input ([1, 3, 5, 5]),
    // from v₀ = cos(0.77 i + 0.2), H the reference filters normalised per filter.
    let (h, ..) = torch_filters();
    let hn: Vec<f64> = h
        .to_vec()
        .chunks(9)
        .flat_map(|f| {
            let n = f.iter().map(|v| v * v).sum::<f64>().sqrt();
            f.iter().map(move |v| v / n).collect::<Vec<_>>()
        })
        .collect();
    let hn = Tensor::from_vec(hn, &[3, 1, 3, 3]);
    let cfg = DceaConfig::new(Family::Poisson, 3, [3, 3]).stride(2);
    let fold = PowerFold { iters: 30, image: [12, 12], factor: 5.0, seed: 0 };
    let init: Vec<f64> = (0..75).map(|i| (0.77 * i as f64 + 0.2).cos()).collect();
    let est = power_estimate(&hn, &cfg, &fold, Some(&init)).unwrap();
    assert_close("power estimate", &[est], &[reference::POWER], 1e-10);
    // Dcea::from_filters folds 5× that estimate (here from its own seeded start: compare the
    // folded filters' scale, H/√L, with the estimate from that start).
    let cfg = cfg.fold(Some(fold));
    let d = Dcea::<f64>::from_filters(cfg.clone(), h).unwrap();
    let l = d.lipschitz.unwrap();
    assert_close("L", &[l], &[5.0 * power_estimate(&hn, &cfg, &fold, None).unwrap()], 1e-12);
    assert_close("H/√L", &d.h.to_vec(), &hn.div_scalar(l.sqrt()).to_vec(), 1e-14);
}

// ---------------------------------------------------------------------------------------------
// Hand-derived values

#[test]
fn one_step_gaussian_dcea_by_hand() {
    // One 1×1 filter h, stride 1, T = 1, step α = 0.5, b = 0.25, y = [2] (a 1×1 image):
    //   x₁ = relu(x₀ + α·h·(y − h·x₀) − b) = relu(0.5·1·2 − 0.25) = 0.75,  η̂ = h·x₁ = 0.75
    //   L = ½(y − η̂)² = ½·1.25² = 0.78125
    //   ∂L/∂η̂ = η̂ − y = −1.25
    //   ∂η̂/∂h = x₁ + h·∂x₁/∂h = 0.75 + 1·(α·y) = 1.75  → ∂L/∂h = −2.1875
    //   ∂η̂/∂b = h·(−1) = −1                           → ∂L/∂b = 1.25
    let cfg = DceaConfig::new(Family::Gaussian, 1, [1, 1]).iters(1).step(0.5).fold(None);
    let tape = Tape::<f64>::new();
    let h = tape.leaf(Tensor::from_vec(vec![1.0], &[1, 1, 1, 1]));
    let b = tape.leaf(Tensor::from([0.25]));
    let p = DceaParams { h, we: h, wd: h, b, tied: true };
    let y = tape.constant(Tensor::from_vec(vec![2.0], &[1, 1, 1, 1]));
    let out = dcea_forward_traced(&p, &y, &cfg);
    assert_eq!(out.code.value().to_vec(), vec![0.75]);
    assert_eq!(out.stats.as_ref().unwrap().active, vec![1.0]);
    let loss = nll(Family::Gaussian, &out.eta, &y, Reduction::Sum);
    assert_eq!(loss.item(), 0.78125);
    let g = tape.backward(&loss).unwrap();
    assert_eq!(g.wrt(&h).to_vec(), vec![-2.1875]);
    assert_eq!(g.wrt(&b).to_vec(), vec![1.25]);
}

#[test]
fn two_sided_threshold_and_poisson_first_step_by_hand() {
    // Poisson, one 1×1 filter h = 1, T = 1, step 1, ELU_2, two-sided threshold b = 0.5:
    //   y = [3, 0]: residual y − e⁰ = [2, −1] → ELU₂ = [2, 2(e⁻¹ − 1)] = [2, −1.2642…]
    //   x₁ = S_0.5([2, −1.2642…]) = [1.5, −0.7642…]; η̂ = x₁.
    let cfg = DceaConfig::new(Family::Poisson, 1, [1, 1])
        .iters(1)
        .threshold(Threshold::TwoSided, 0.5)
        .elu(Some(2.0))
        .fold(None);
    let tape = Tape::<f64>::new();
    let h = tape.leaf(Tensor::from_vec(vec![1.0], &[1, 1, 1, 1]));
    let p = DceaParams { h, we: h, wd: h, b: tape.leaf(Tensor::from([0.5])), tied: true };
    let y = tape.constant(Tensor::from_vec(vec![3.0, 0.0], &[1, 1, 1, 2]));
    let out = dcea_forward_traced(&p, &y, &cfg);
    let want = [1.5, 2.0 * ((-1.0f64).exp() - 1.0) + 0.5];
    assert_close("x₁", &out.code.value().to_vec(), &want, 1e-15);
    let stats = out.stats.unwrap();
    assert_eq!(stats.elu_margin_at_zero, 1.0);
    assert_eq!(stats.elu_margin, vec![f64::INFINITY]);
    // |v| − b = [1.5, 0.7642…]: the threshold margin is the smaller
    assert_close("margin", &stats.threshold_margin, &[-want[1]], 1e-15);
}

#[test]
fn nll_values_by_hand() {
    // η = [0, ln 2], y = [1, 3]:
    //   Gaussian ½[(1 − 0)² + (3 − ln 2)²]
    //   Binomial M = 4: 4·[ln 2 + ln 3] − 3 ln 2      (softplus(0) = ln 2, softplus(ln 2) = ln 3)
    //   Poisson: [1 + 2] − 3 ln 2
    let tape = Tape::<f64>::new();
    let l2 = 2f64.ln();
    let eta = tape.leaf(Tensor::from([0.0, l2]));
    let y = tape.constant(Tensor::from([1.0, 3.0]));
    let g = nll(Family::Gaussian, &eta, &y, Reduction::Sum).item();
    assert_close("gaussian", &[g], &[0.5 * (1.0 + (3.0 - l2).powi(2))], 1e-15);
    let b = nll(Family::Binomial { trials: 4.0 }, &eta, &y, Reduction::Sum).item();
    assert_close("binomial", &[b], &[4.0 * (l2 + 3f64.ln()) - 3.0 * l2], 1e-15);
    let p = nll(Family::Poisson, &eta, &y, Reduction::Mean);
    assert_close("poisson mean", &[p.item()], &[(3.0 - 3.0 * l2) / 2.0], 1e-15);
    // ∂η = (e^η − y)/2 = [(1 − 1)/2, (2 − 3)/2]
    assert_eq!(tape.backward(&p).unwrap().wrt(&eta).to_vec(), vec![0.0, -0.5]);
}

#[test]
fn binomial_nll_does_not_overflow_in_f32() {
    // softplus(±1000) = 1000 / 0: M·softplus(η) − yη with M = 1, y = [1, 0]: 0 + 0.
    let tape = Tape::<f32>::new();
    let eta = tape.leaf(Tensor::from([1000.0f32, -1000.0]));
    let y = tape.constant(Tensor::from([1.0f32, 0.0]));
    let l = nll(Family::Binomial { trials: 1.0 }, &eta, &y, Reduction::Sum);
    assert_eq!(l.item(), 0.0);
    // ∂η = σ(η) − y = [0, 0]
    assert_eq!(tape.backward(&l).unwrap().wrt(&eta).to_vec(), vec![0.0, 0.0]);
}

// ---------------------------------------------------------------------------------------------
// Fused NLL rules against their composites

#[test]
fn fused_nll_rules_match_their_composites() {
    let mut rng = Rng::new(3);
    let eta = Tensor::<f64>::rand_uniform(&[2, 1, 4, 5], -4.0, 4.0, &mut rng);
    let y_counts = Tensor::from_vec((0..40).map(|_| rng.below(6) as f64).collect(), &[2, 1, 4, 5]);
    let y_real = Tensor::<f64>::randn(&[2, 1, 4, 5], &mut rng);
    for (family, y) in [
        (Family::Gaussian, &y_real),
        (Family::Binomial { trials: 5.0 }, &y_counts),
        (Family::Binomial { trials: 1.0 }, &y_counts.div_scalar(5.0)),
        (Family::Poisson, &y_counts),
    ] {
        for reduction in [Reduction::Sum, Reduction::Mean] {
            let run = |fused: bool| {
                let tape = Tape::<f64>::new();
                let (e, yv) = (tape.leaf(eta.clone()), tape.leaf(y.clone()));
                let l = if fused {
                    nll(family, &e, &yv, reduction)
                } else {
                    let per = match family {
                        // ½(y − η)²
                        Family::Gaussian => yv.sub(&e).square().mul_scalar(0.5),
                        // M·softplus(η) − y·η
                        Family::Binomial { trials } => e.softplus().mul_scalar(trials).sub(&yv.mul(&e)),
                        // e^η − y·η
                        Family::Poisson => e.exp().sub(&yv.mul(&e)),
                    };
                    match reduction {
                        Reduction::Sum => per.sum_all(),
                        Reduction::Mean => per.mean_all(),
                    }
                };
                let g = tape.backward(&l).unwrap();
                (l.item(), g.wrt(&e).to_vec(), g.wrt(&yv).to_vec())
            };
            let (a, b) = (run(true), run(false));
            let what = format!("{} {reduction:?}", family.name());
            assert_close(&format!("{what}: value"), &[a.0], &[b.0], 1e-12);
            assert_close(&format!("{what}: ∂η"), &a.1, &b.1, 1e-12);
            assert_close(&format!("{what}: ∂y"), &a.2, &b.2, 1e-12);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shifts

/// PyTorch's reflect padding of one `[H, W]` plane by `(top, bottom, left, right)`, by loops.
fn reflect_pad(x: &[f64], h: usize, w: usize, pads: [usize; 4]) -> Vec<f64> {
    let [top, bottom, left, right] = pads;
    let fold = |i: isize, n: usize| -> usize {
        let last = n as isize - 1;
        (if i < 0 {
            -i
        } else if i > last {
            2 * last - i
        } else {
            i
        }) as usize
    };
    let mut out = Vec::new();
    for r in 0..top + h + bottom {
        for c in 0..left + w + right {
            out.push(x[fold(r as isize - top as isize, h) * w + fold(c as isize - left as isize, w)]);
        }
    }
    out
}

#[test]
fn shift_batch_is_the_authors_reflect_padded_shifts() {
    // 2 images of 1×9×10, kernel 3, stride 3: calc_pad_sizes gives top = left = 3,
    // bottom: (9 + 3 − 3) % 3 = 0 → 3; right: (10 + 3 − 3) % 3 = 1 → 3 − 1 + 3 = 5.
    // Shift (r, c) is padded (3 − r, 3 + r) rows and (3 − c, 5 + c) columns.
    let (n, h, w, s) = (2, 9, 10, 3);
    let y = Tensor::<f64>::randn(&[n, 1, h, w], &mut Rng::new(5));
    let tape = Tape::<f64>::new();
    let b = shift_batch(&tape.constant(y.clone()), [3, 3], s);
    let (hp, wp) = (3 + h + 3, 3 + w + 5);
    assert_eq!(b.shape(), vec![s * s * n, 1, hp, wp]);
    let bv = b.value();
    for k in 0..s * s {
        let (r, c) = (k / s, k % s);
        for img in 0..n {
            let plane = y.select(0, img).select(0, 0).contiguous().into_vec();
            let want = reflect_pad(&plane, h, w, [3 - r, 3 + r, 3 - c, 5 + c]);
            let got = bv.select(0, k * n + img).select(0, 0).contiguous().into_vec();
            assert_eq!(got, want, "shift ({r}, {c}) of image {img}");
        }
    }
}

#[test]
fn shift_mean_undoes_shift_batch_and_its_gradient_is_the_adjoint() {
    // Each shift's crop of its own padded image is the image, so the mean of the crops of
    // shift_batch(y) is y — for the authors' geometry (kernel 11, stride 7) too.
    for (shape, k, s) in [([2, 1, 30, 27], 11, 7), ([1, 2, 9, 10], 3, 3), ([3, 1, 6, 7], 2, 2)] {
        let y = Tensor::<f64>::randn(&shape, &mut Rng::new(6));
        let tape = Tape::<f64>::new();
        let yv = tape.leaf(y.clone());
        let back = shift_mean(&shift_batch(&yv, [k, k], s), [shape[2], shape[3]], [k, k], s);
        // s² equal values summed in turn, then divided by s²: each addition rounds once, so the
        // error is at most s²·ε relative.
        let tol = (s * s) as f64 * f64::EPSILON;
        assert_close(&format!("{shape:?}, kernel {k}, stride {s}"), &back.value().to_vec(), &y.to_vec(), tol);
        // The composite is the identity, so its gradient is the cotangent itself.
        let r = Tensor::<f64>::randn(&shape, &mut Rng::new(7));
        let g = tape.backward_with(&back, Some(r.clone()), BackwardOptions::default()).unwrap();
        assert_close("∂y", &g.wrt(&yv).to_vec(), &r.to_vec(), tol);
    }
}

#[test]
#[should_panic(expected = "reflect padding")]
fn shifts_need_an_image_larger_than_the_padding() {
    let tape = Tape::<f64>::new();
    shift_batch(&tape.constant(Tensor::zeros(&[1, 1, 8, 8])), [3, 3], 7);
}

// ---------------------------------------------------------------------------------------------
// Gradient checks of the whole model

fn small(family: Family, tied: bool, stride: usize) -> DceaConfig {
    DceaConfig::new(family, 2, [3, 3])
        .stride(stride)
        .shifts(stride > 1)
        .tied(tied)
        .threshold(Threshold::OneSided, 0.05)
        .elu((family == Family::Poisson).then_some(4.0))
        .fold(Some(PowerFold { iters: 25, image: [10, 10], factor: 5.0, seed: 2 }))
}

fn params_of<'t>(cfg: &DceaConfig, v: &[Var<'t, f64>]) -> DceaParams<'t, f64> {
    if cfg.tied {
        DceaParams { h: v[0], we: v[0], wd: v[0], b: v[1], tied: true }
    } else {
        DceaParams { h: v[0], we: v[1], wd: v[2], b: v[3], tied: false }
    }
}

/// The margin of the model at `params` and `y`: over every kink when `y` is checked, else
/// over those that move with the parameters.
fn margin(cfg: &DceaConfig, params: &[Tensor<f64>], y: &Tensor<f64>, with_y: bool) -> f64 {
    let tape = Tape::<f64>::new();
    let v: Vec<Var<'_, f64>> = params.iter().map(|t| tape.leaf(t.clone())).collect();
    let st = dcea_forward_traced(&params_of(cfg, &v), &tape.constant(y.clone()), cfg).stats.unwrap();
    if with_y {
        st.kink_margin()
    } else {
        st.parameter_kink_margin()
    }
}

#[test]
fn whole_model_gradients_match_central_differences_for_every_family() {
    // T = 15 (the authors'), stride 2 with its 4 shifts and stride 1, tied and untied, on one
    // 7×8 image. Inputs are regenerated until every kink argument is ≥ 1e-4 from its kink
    // (sparse::audit's KINK_MARGIN), never checked with looser tolerances. Poisson also with
    // integer counts, checked with respect to the parameters only (y's t = 0 ELU argument
    // y − 1 is then exactly on its kink, and does not move with the parameters).
    let mut rng = Rng::new(11);
    let mut checked = 0;
    for family in [Family::Gaussian, Family::Binomial { trials: 3.0 }, Family::Poisson] {
        for tied in [true, false] {
            for stride in [2, 1] {
                for integer_counts in [false, true] {
                    if integer_counts && family != Family::Poisson {
                        continue;
                    }
                    let cfg = small(family, tied, stride);
                    let mut found = None;
                    for _ in 0..100 {
                        let d = Dcea::<f64>::new(cfg.clone(), &mut rng).unwrap();
                        let mut params: Vec<Tensor<f64>> = d.params().into_iter().cloned().collect();
                        for t in params.iter_mut().skip(1).take(if tied { 0 } else { 2 }) {
                            *t = t.add(&Tensor::randn(t.shape(), &mut rng).mul_scalar(0.03));
                        }
                        let y = if integer_counts {
                            Tensor::from_vec((0..56).map(|_| rng.poisson(1.5) as f64).collect(), &[1, 1, 7, 8])
                        } else {
                            jittered_observations(family, &[1, 1, 7, 8], &mut rng)
                        };
                        if margin(&cfg, &params, &y, !integer_counts) >= 1e-4 {
                            found = Some((params, y));
                            break;
                        }
                    }
                    let (params, y) = found.expect("an input with kink margin 1e-4 in 100 draws");
                    let np = params.len();
                    let mut inputs = params;
                    inputs.push(y);
                    let opts = if integer_counts {
                        CheckOptions::default().wrt(&(0..np).collect::<Vec<_>>())
                    } else {
                        CheckOptions::default()
                    };
                    let c = cfg.clone();
                    let report = check_gradients(
                        move |_, v| {
                            let p = params_of(&c, &v[..np]);
                            let eta = dcea_forward(&p, &v[np], &c).eta;
                            nll(c.family, &eta, &v[np], Reduction::Sum)
                        },
                        &inputs,
                        &opts,
                    )
                    .unwrap();
                    let what = format!("{} tied={tied} stride={stride} counts={integer_counts}", family.name());
                    assert!(report.passed(), "{what}: {report}");
                    // Not vacuous: the filters receive a gradient.
                    assert!(report.inputs[0].checked == 18 && report.max_abs_err().is_finite(), "{what}");
                    checked += 1;
                }
            }
        }
    }
    // 3 families × tied/untied × stride 2/1, and the 4 Poisson ones again with integer counts
    assert_eq!(checked, 16);
}

#[test]
fn the_fused_rules_match_the_composite_model() {
    // dcea_forward (dcea_iteration, dcea_decode, dcea_threshold) against dcea_forward_composite (elementary ops
    // only): the same forward values and gradients, for every family, both thresholds, tied
    // and untied, with and without shifts and a step ≠ 1.
    let mut rng = Rng::new(31);
    for (family, threshold, tied, stride, step) in [
        (Family::Poisson, Threshold::OneSided, true, 2, 1.0),
        (Family::Poisson, Threshold::TwoSided, false, 1, 0.8),
        (Family::Binomial { trials: 3.0 }, Threshold::OneSided, false, 2, 1.0),
        (Family::Binomial { trials: 1.0 }, Threshold::TwoSided, true, 3, 1.2),
        (Family::Gaussian, Threshold::TwoSided, true, 2, 1.0),
        (Family::Gaussian, Threshold::OneSided, false, 1, 0.5),
    ] {
        let cfg = small(family, tied, stride).threshold(threshold, 0.05).step(step);
        let d = Dcea::<f64>::new(cfg.clone(), &mut rng).unwrap();
        let y = jittered_observations(family, &[2, 1, 10, 11], &mut rng);
        let r = Tensor::<f64>::randn(&[2, 1, 10, 11], &mut rng);
        let run = |fused: bool| {
            let tape = Tape::<f64>::new();
            let p = d.bind(&tape);
            let yv = tape.leaf(y.clone());
            let out = if fused { dcea_forward(&p, &yv, &cfg) } else { dcea_forward_composite(&p, &yv, &cfg) };
            let code = out.code.value().to_vec();
            let g = tape.backward_with(&out.eta, Some(r.clone()), BackwardOptions::default()).unwrap();
            let mut grads: Vec<Vec<f64>> = p.grads(&g).into_iter().map(|t| t.unwrap().to_vec()).collect();
            grads.push(g.wrt(&yv).to_vec());
            (out.eta.value().to_vec(), code, grads, tape.recorded_ops())
        };
        let (fused, comp) = (run(true), run(false));
        let what = format!("{} {threshold:?} tied={tied} stride={stride} step={step}", family.name());
        assert_close(&format!("{what}: η̂"), &fused.0, &comp.0, 1e-12);
        assert_close(&format!("{what}: x_T"), &fused.1, &comp.1, 1e-12);
        for (i, (a, b)) in fused.2.iter().zip(&comp.2).enumerate() {
            assert_close(&format!("{what}: gradient {i}"), a, b, 1e-12);
        }
        assert!(fused.3.iter().any(|n| n == "dcea_iteration") && !comp.3.iter().any(|n| n == "dcea_iteration"));
        assert!(comp.3.iter().any(|n| n == "relu"), "{:?}", comp.3);
    }
}

// ---------------------------------------------------------------------------------------------
// Precision, configuration, parameters

#[test]
fn f32_forward_and_gradients_agree_with_f64() {
    let cfg = small(Family::Poisson, false, 2);
    let d64 = Dcea::<f64>::new(cfg.clone(), &mut Rng::new(21)).unwrap();
    let y64 = Tensor::from_vec((0..2 * 56).map(|i| ((i * 7) % 5) as f64).collect(), &[2, 1, 7, 8]);
    let run64 = {
        let tape = Tape::<f64>::new();
        let p = d64.bind(&tape);
        let y = tape.constant(y64.clone());
        let out = dcea_forward(&p, &y, &cfg);
        let l = nll(cfg.family, &out.eta, &y, Reduction::Sum);
        let g = tape.backward(&l).unwrap();
        (out.eta.value().to_vec(), p.grads(&g))
    };
    let tape = Tape::<f32>::new();
    let p = DceaParams {
        h: tape.leaf(d64.h.cast()),
        we: tape.leaf(d64.we.as_ref().unwrap().cast()),
        wd: tape.leaf(d64.wd.as_ref().unwrap().cast()),
        b: tape.leaf(d64.b.cast()),
        tied: false,
    };
    let y = tape.constant(y64.cast::<f32>());
    let out = dcea_forward(&p, &y, &cfg);
    let l = nll(cfg.family, &out.eta, &y, Reduction::Sum);
    let g = tape.backward(&l).unwrap();
    let eta: Vec<f64> = out.eta.value().to_f64_vec();
    assert_close("f32 eta", &eta, &run64.0, 1e-5);
    for (name, (a, b)) in d64.names().iter().zip(p.grads(&g).iter().zip(&run64.1)) {
        let (a, b) = (a.as_ref().unwrap().to_f64_vec(), b.as_ref().unwrap().to_f64_vec());
        let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let err = a.iter().zip(&b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
        assert!(err <= 1e-4 * scale.max(1.0), "{name}: f32 gradient off by {err:e} (scale {scale:e})");
    }
}

#[test]
fn the_authors_configuration_and_initialisation() {
    let cfg = DceaConfig::poisson_denoising(4.0, false);
    assert_eq!(cfg.filter_shape(), [169, 1, 11, 11]);
    assert_eq!(
        (cfg.stride, cfg.iters, cfg.threshold, cfg.elu_alpha, cfg.b_init),
        (7, 15, Threshold::OneSided, Some(4.0), 0.1)
    );
    assert!(cfg.uses_shifts() && !cfg.tied && cfg.family == Family::Poisson);
    assert_eq!(cfg.fold, Some(PowerFold { iters: 200, image: [512, 512], factor: 5.0, seed: 0 }));
    assert_eq!(DceaConfig::poisson_denoising(2.0, true).b_init, 0.01);
    assert_eq!(DceaConfig::poisson_denoising(1.0, true).elu_alpha, Some(1.0));
    // The full fold (200 iterations on 512×512) is measured by examples/dcea_timing.rs; here
    // 3 iterations on a 64×64 input check the initialisation's structure.
    let cfg = cfg.fold(Some(PowerFold { iters: 3, image: [64, 64], factor: 5.0, seed: 0 }));
    let d = Dcea::<f32>::new(cfg, &mut Rng::new(1)).unwrap();
    assert_eq!(d.names(), ["dcea.H", "dcea.We", "dcea.Wd", "dcea.b"]);
    let l = d.lipschitz.unwrap();
    assert!(l.is_finite() && l > 0.0);
    // Unit Frobenius norm per filter before the fold: ‖h_k‖·√L = 1.
    for f in d.h.to_f64_vec().chunks(121) {
        let n = f.iter().map(|v| v * v).sum::<f64>().sqrt() * l.sqrt();
        assert!((n - 1.0).abs() < 1e-5, "filter norm × √L = {n}");
    }
    assert_eq!(d.we.as_ref().unwrap().to_vec(), d.h.to_vec());
    assert_eq!(d.wd.as_ref().unwrap().to_vec(), d.h.to_vec());
    assert!(!d.we.as_ref().unwrap().shares_storage(&d.h), "untied banks are separate tensors");
    assert_eq!(d.b.to_vec(), vec![0.1f32; 169]);
    let tied = Dcea::<f32>::new(DceaConfig::poisson_denoising(4.0, true).fold(None), &mut Rng::new(1)).unwrap();
    assert_eq!(tied.names(), ["dcea.H", "dcea.b"]);
    assert_eq!(tied.params().len(), 2);
}

#[test]
fn zero_filters_and_overflowing_folds_are_errors() {
    let cfg = DceaConfig::new(Family::Poisson, 2, [2, 2]).fold(None);
    let mut h = vec![1.0; 8];
    h[4..].iter_mut().for_each(|v| *v = 0.0);
    match Dcea::<f64>::from_filters(cfg.clone(), Tensor::from_vec(h, &[2, 1, 2, 2])) {
        Err(SparseError::NonFinite { what: "filter norm", row: 1, .. }) => {}
        other => panic!("expected a zero-filter error, got {other:?}"),
    }
    // exp overflows in f32 with a large 1×1 filter (the iterate is a unit vector, so H v
    // reaches 100 at its largest entry and e¹⁰⁰ > f32::MAX): an error naming the iteration.
    let cfg = DceaConfig::new(Family::Poisson, 1, [1, 1]).fold(Some(PowerFold {
        iters: 50,
        image: [1, 1],
        factor: 5.0,
        seed: 0,
    }));
    let e = power_estimate(&Tensor::<f32>::full(&[1, 1, 1, 1], 100.0), &cfg, &cfg.fold.unwrap(), None).unwrap_err();
    assert!(e.to_string().contains("power_iteration"), "{e}");
}

#[test]
fn poisson_denoising_helpers() {
    // Q = max/peak; counts are non-negative integers with mean image/Q; PSNR by the formula.
    let img = Tensor::<f64>::from_vec((0..400).map(|i| (i % 20) as f64 / 19.0).collect(), &[1, 1, 20, 20]);
    let q = poisson_scale(&img, 4.0);
    assert_eq!(q, 0.25);
    let y = poisson_observation(&img, q, &mut Rng::new(8));
    let yv = y.to_vec();
    assert!(yv.iter().all(|v| *v >= 0.0 && v.fract() == 0.0));
    let mean = yv.iter().sum::<f64>() / 400.0;
    // E[y] = mean(img)/Q = 0.5·4 = 2; the sample mean of 400 counts is within ±0.3 (4σ).
    assert!((mean - 2.0).abs() < 0.3, "mean count {mean}");
    let tape = Tape::<f64>::new();
    let eta = tape.constant(Tensor::from_vec(vec![0.0, 2f64.ln()], &[1, 2]));
    assert_close("Q·exp(η)", &poisson_estimate(&eta, 0.5).value().to_vec(), &[0.5, 1.0], 1e-15);
    // image [1, 0.5], estimate [0.9, 0.5]: mse = 0.005 → PSNR = 0 − 10·log10(0.005) = 23.0103
    let p = psnr(&Tensor::from([1.0, 0.5]), &Tensor::from([0.9, 0.5]));
    assert_close("psnr", &[p], &[-10.0 * 0.005f64.log10()], 1e-12);
}
