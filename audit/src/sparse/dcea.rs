//! The audit cases of the DCEA rules (`sparse::dcea`).

use std::sync::Arc;

use autograd::audit::inputs::{bcast, default, input, make, rng_for, Dom, Input, View};
use autograd::audit::AuditCase;
use autograd::{Reduction, Tape, Var};
use engine::{Conv2dParams, ConvTranspose2dParams, Rng, Tensor};

use sparse::audit::KINK_MARGIN;
use sparse::dcea::*;

/// The audit cases of this module: the three NLL rules on every layout and both reductions,
/// `dcea_iteration`, `dcea_decode` and `dcea_threshold` on every layout, and the whole
/// unfolded DCEA (encoder,
/// decoder, shifts, loss; labelled `dcea`) for every family, tied and untied, all on inputs
/// whose every kink argument is at least [`sparse::audit::KINK_MARGIN`] away (regenerated
/// otherwise).
pub(crate) fn cases(out: &mut Vec<autograd::audit::AuditCase>) {
    nll_cases(out);
    iteration_cases(out);
    code_cases(out);
    dcea_cases(out);
}

/// Observations of `family` for an NLL check: reals (Gaussian), `0..=M` (Binomial, M = 5),
/// counts (Poisson), as plain values (the NLL is smooth in `y` too).
fn observations(family: Family, shape: &[usize], rng: &mut Rng) -> Tensor<f64> {
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|_| match family {
            Family::Gaussian => rng.normal(),
            Family::Binomial { trials } => rng.below(trials as u64 + 1) as f64,
            Family::Poisson => rng.poisson(1.5) as f64,
        })
        .collect();
    Tensor::from_vec(v, shape)
}

fn nll_cases(out: &mut Vec<AuditCase>) {
    let families = [Family::Gaussian, Family::Binomial { trials: 5.0 }, Family::Poisson];
    for family in families {
        let op = nll_name(family);
        let mut rng = rng_for(op, 0);
        let shape = [2, 1, 3, 4];
        let views = [View::Contiguous, View::Transposed, View::Permuted, View::Sliced, View::Broadcast];
        for (i, view) in views.into_iter().enumerate() {
            let reduction = if i % 2 == 0 { Reduction::Sum } else { Reduction::Mean };
            let eta: Input = input(view, &shape, Dom::Range(-3.0, 3.0), &mut rng, "");
            let y = observations(family, &shape, &mut rng);
            let desc = format!("η {}, y contiguous {shape:?}; {reduction:?}", eta.desc);
            let target = eta.target.clone();
            out.push(AuditCase::gradcheck(op, desc, vec![eta.value, y], default(), move |_, v| {
                nll(family, &bcast(&v[0], &target), &v[1], reduction)
            }));
        }
        // Large |η| (softplus and exp far from 0), y in a sliced view.
        let eta = Tensor::from_vec(vec![-8.0, -2.5, 0.3, 4.0, 7.5, -0.7], &[2, 3]);
        let y = make(View::Sliced, &[2, 3], Dom::Range(0.0, 3.0), &mut rng);
        out.push(AuditCase::gradcheck(
            op,
            "η contiguous [2, 3] with |η| up to 8, y sliced view [2, 3] (step 2, offset); Sum",
            vec![eta, y],
            default(),
            move |_, v| nll(family, &v[0], &v[1], Reduction::Sum),
        ));
    }
}

/// `min |arg|` over the threshold's arguments (`v − b`, or `|v| − b`) of codes `v`.
fn prox_margin(v: &Tensor<f64>, b: &Tensor<f64>, threshold: Threshold) -> f64 {
    let (bv, plane) = (b.to_vec(), v.dim(2) * v.dim(3));
    v.to_vec()
        .iter()
        .enumerate()
        .fold(f64::INFINITY, |m, (i, &e)| m.min(prox(e, bv[(i / plane) % bv.len()], threshold).0.abs()))
}

/// Thresholds `b` `[k]` in `[0.1, 0.6)`.
fn thresholds_draw(k: usize, rng: &mut Rng) -> Tensor<f64> {
    Tensor::from_vec((0..k).map(|_| rng.uniform_in(0.1, 0.6)).collect(), &[k])
}

/// `dcea_iteration` with and without `v`, every family, with and without the ELU, one-
/// and two-sided, several strides and steps, inputs in every layout; regenerated until
/// every threshold argument of `v` and every ELU argument is at least [`KINK_MARGIN`] from
/// its kink.
fn iteration_cases(out: &mut Vec<AuditCase>) {
    use View::{Broadcast, Contiguous, Permuted, Sliced, Transposed};
    let b3 = Family::Binomial { trials: 3.0 };
    // (v layout or no v, y layout, H and We layouts, family, ELU, threshold, stride, step)
    type Spec = (Option<View>, View, View, View, Family, Option<f64>, Threshold, usize, f64);
    let specs: [Spec; 7] = [
        (Some(Contiguous), Contiguous, Contiguous, Transposed, Family::Poisson, Some(2.0), Threshold::OneSided, 2, 1.0),
        (None, Sliced, Contiguous, Contiguous, Family::Poisson, Some(4.0), Threshold::OneSided, 2, 1.0),
        (Some(Permuted), Transposed, Sliced, Contiguous, b3, Some(1.5), Threshold::TwoSided, 1, 0.7),
        (Some(Sliced), Contiguous, Permuted, Sliced, b3, None, Threshold::OneSided, 3, 1.0),
        (Some(Broadcast), Permuted, Contiguous, Contiguous, Family::Gaussian, None, Threshold::TwoSided, 2, 0.5),
        (None, Contiguous, Transposed, Permuted, Family::Gaussian, Some(0.7), Threshold::TwoSided, 1, 1.3),
        (Some(Transposed), Sliced, Contiguous, Contiguous, Family::Poisson, None, Threshold::TwoSided, 3, 1.0),
    ];
    let (k, y_shape, w_shape) = (3, [2, 2, 7, 8], [3, 2, 3, 3]);
    let mut rng = rng_for("dcea_iteration", 0);
    for (v_view, y_view, h_view, we_view, family, elu, threshold, stride, step) in specs {
        let conv = Conv2dParams::new().stride(stride);
        let code = conv.output_hw([7, 8], [3, 3]).expect("geometry");
        let convt = ConvTranspose2dParams::new().stride(stride).output_padding2([(7 - 3) % stride, (8 - 3) % stride]);
        let spec = StepSpec { family, elu, step, threshold, conv, convt };
        let v_shape = [2, k, code[0], code[1]];
        let (v, y, h, we, b) = regenerate_with(
            "dcea_iteration",
            || {
                let v = v_view.map(|view| input(view, &v_shape, Dom::Range(-1.0, 1.0), &mut rng, ""));
                let y = input(y_view, &y_shape, Dom::Range(-0.5, 2.5), &mut rng, "");
                let h = make(h_view, &w_shape, Dom::Range(-0.5, 0.5), &mut rng);
                let we = make(we_view, &w_shape, Dom::Any, &mut rng);
                (v, y, h, we, thresholds_draw(k, &mut rng))
            },
            |(v, y, h, we, b)| {
                let tape = Tape::new();
                let vv = v.as_ref().map(|v| tape.constant(logical(v)));
                let (yv, hv, wv, bv) = (
                    tape.constant(logical(y)),
                    tape.constant(h.clone()),
                    tape.constant(we.clone()),
                    tape.constant(b.clone()),
                );
                let st = dcea_iteration(vv.as_ref(), &yv, &hv, &wv, &bv, spec, true).1;
                let vm = v.as_ref().map_or(f64::INFINITY, |v| prox_margin(&logical(v), b, threshold));
                vm.min(st.elu_margin_all)
            },
        );
        let desc = format!(
            "{} {}, {threshold:?}, stride {stride}, step {step}; v {}; y {}; H {}; We {}; b contiguous [{k}]",
            family.name(),
            elu.map_or("no ELU".to_string(), |a| format!("ELU a = {a}")),
            v.as_ref().map_or("absent (x₀ = 0)".to_string(), |v| v.desc.clone()),
            y.desc,
            autograd::audit::inputs::describe(h_view, &w_shape),
            autograd::audit::inputs::describe(we_view, &w_shape)
        );
        let has_v = v.is_some();
        let (v_target, y_target) = (v.as_ref().and_then(|v| v.target.clone()), y.target.clone());
        let mut inputs: Vec<Tensor<f64>> = v.map(|v| v.value).into_iter().collect();
        inputs.push(y.value);
        // Without v, H and b are not inputs of the rule (they are only read by the trace).
        inputs.extend(if has_v { vec![h, we, b] } else { vec![we] });
        out.push(AuditCase::gradcheck("dcea_iteration", desc, inputs, default(), move |t, v| {
            if has_v {
                let vv = bcast(&v[0], &v_target);
                dcea_iteration(Some(&vv), &bcast(&v[1], &y_target), &v[2], &v[3], &v[4], spec, false).0
            } else {
                let (h, b) = (t.constant(Tensor::zeros(&w_shape)), t.constant(Tensor::zeros(&[k])));
                dcea_iteration(None, &bcast(&v[0], &y_target), &h, &v[1], &b, spec, false).0
            }
        }));
    }
}

/// `dcea_decode` and `dcea_threshold`, one- and two-sided, several strides, inputs in every
/// layout; regenerated until every threshold argument is at least [`KINK_MARGIN`] from
/// its kink.
fn code_cases(out: &mut Vec<AuditCase>) {
    use View::{Broadcast, Contiguous, Permuted, Sliced, Transposed};
    let specs: [(View, View, Threshold, usize); 4] = [
        (Contiguous, Contiguous, Threshold::OneSided, 2),
        (Permuted, Sliced, Threshold::TwoSided, 1),
        (Sliced, Transposed, Threshold::OneSided, 3),
        (Broadcast, Contiguous, Threshold::TwoSided, 2),
    ];
    let (k, w_shape) = (3, [3, 2, 3, 3]);
    let mut rng = rng_for("dcea_decode", 0);
    for (v_view, w_view, threshold, stride) in specs {
        let code = Conv2dParams::new().stride(stride).output_hw([7, 8], [3, 3]).expect("geometry");
        let convt = ConvTranspose2dParams::new().stride(stride).output_padding2([(7 - 3) % stride, (8 - 3) % stride]);
        let v_shape = [2, k, code[0], code[1]];
        let (v, b) = regenerate_with(
            "dcea_decode",
            || (input(v_view, &v_shape, Dom::Range(-1.0, 1.0), &mut rng, ""), thresholds_draw(k, &mut rng)),
            |(v, b)| prox_margin(&logical(v), b, threshold),
        );
        let wd = make(w_view, &w_shape, Dom::Any, &mut rng);
        let what = format!("{threshold:?}; v {}; b contiguous [{k}]", v.desc);
        let target = v.target.clone();
        let desc = format!("{what}; stride {stride}; Wd {}", autograd::audit::inputs::describe(w_view, &w_shape));
        let inputs = vec![v.value.clone(), wd, b.clone()];
        let t2 = target.clone();
        out.push(AuditCase::gradcheck("dcea_decode", desc, inputs, default(), move |_, v| {
            dcea_decode(&bcast(&v[0], &t2), &v[1], &v[2], threshold, convt)
        }));
        out.push(AuditCase::gradcheck("dcea_threshold", what, vec![v.value, b], default(), move |_, v| {
            dcea_threshold(&bcast(&v[0], &target), &v[1], threshold)
        }));
    }
}

/// The logical value of an input (broadcast to its target).
fn logical(x: &Input) -> Tensor<f64> {
    match &x.target {
        Some(t) => x.value.broadcast_to(t).contiguous(),
        None => x.value.contiguous(),
    }
}

/// Draws with `draw` until `margin_of` is at least [`KINK_MARGIN`]; **panics** after 200.
fn regenerate_with<I>(op: &str, mut draw: impl FnMut() -> I, margin_of: impl Fn(&I) -> f64) -> I {
    for _ in 0..200 {
        let c = draw();
        if margin_of(&c) >= KINK_MARGIN {
            return c;
        }
    }
    panic!("{op} audit: no input with a kink margin of {KINK_MARGIN} in 200 draws");
}

/// One whole-model case: the family, tied or not, and the layouts of H and y.
struct Spec {
    family: Family,
    tied: bool,
    h_view: View,
    y_view: View,
    threshold: Threshold,
    stride: usize,
    iters: usize,
}

/// A small configuration of `spec` (3 filters of 3×3 on 7×8 images, step folded by 30
/// power iterations on a 12×12 input) and the ELU on the Poisson residual, as the authors.
fn small_config(family: Family, tied: bool, threshold: Threshold, stride: usize, iters: usize) -> DceaConfig {
    let elu = matches!(family, Family::Poisson).then_some(2.0);
    DceaConfig::new(family, 3, [3, 3])
        .stride(stride)
        .iters(iters)
        .tied(tied)
        .threshold(threshold, 0.05)
        .elu(elu)
        .shifts(stride > 1)
        .fold(Some(PowerFold { iters: 30, image: [12, 12], factor: 5.0, seed: 1 }))
}

/// The margin of the whole model at `inputs` (`[H, (We, Wd,) b, y]` as logical tensors).
fn model_margin(cfg: &DceaConfig, inputs: &[Tensor<f64>]) -> f64 {
    let tape = Tape::new();
    let p = params_of(&tape, cfg, inputs);
    let y = tape.constant(inputs[inputs.len() - 1].clone());
    dcea_forward_traced(&p, &y, cfg).stats.expect("traced").kink_margin()
}

/// The parameters of a case on `tape` from `inputs` (`[H, (We, Wd,) b, …]`).
fn params_of<'t>(tape: &'t Tape<f64>, cfg: &DceaConfig, inputs: &[Tensor<f64>]) -> DceaParams<'t, f64> {
    let v: Vec<Var<'t, f64>> = inputs.iter().map(|t| tape.leaf(t.clone())).collect();
    params_from_vars(cfg, &v)
}

/// `[H, b]` (tied) or `[H, We, Wd, b]` (untied) as parameters.
fn params_from_vars<'t>(cfg: &DceaConfig, v: &[Var<'t, f64>]) -> DceaParams<'t, f64> {
    if cfg.tied {
        DceaParams { h: v[0], we: v[0], wd: v[0], b: v[1], tied: true }
    } else {
        DceaParams { h: v[0], we: v[1], wd: v[2], b: v[3], tied: false }
    }
}

fn dcea_cases(out: &mut Vec<AuditCase>) {
    use Threshold::{OneSided, TwoSided};
    use View::{Broadcast, Contiguous, Permuted, Sliced};
    let b4 = Family::Binomial { trials: 4.0 };
    let specs = [
        Spec {
            family: Family::Poisson,
            tied: true,
            h_view: Contiguous,
            y_view: Contiguous,
            threshold: OneSided,
            stride: 2,
            iters: 15,
        },
        Spec {
            family: Family::Poisson,
            tied: false,
            h_view: Permuted,
            y_view: Sliced,
            threshold: OneSided,
            stride: 2,
            iters: 6,
        },
        Spec { family: b4, tied: true, h_view: Sliced, y_view: Broadcast, threshold: OneSided, stride: 2, iters: 6 },
        Spec {
            family: b4,
            tied: false,
            h_view: Contiguous,
            y_view: Contiguous,
            threshold: TwoSided,
            stride: 1,
            iters: 15,
        },
        Spec {
            family: Family::Gaussian,
            tied: true,
            h_view: Permuted,
            y_view: Contiguous,
            threshold: TwoSided,
            stride: 2,
            iters: 15,
        },
        Spec {
            family: Family::Gaussian,
            tied: false,
            h_view: Contiguous,
            y_view: Broadcast,
            threshold: OneSided,
            stride: 1,
            iters: 6,
        },
    ];
    for spec in specs {
        let cfg = small_config(spec.family, spec.tied, spec.threshold, spec.stride, spec.iters);
        let mut rng = rng_for("dcea", out.len() as u64);
        // One 7×8 image (two, equal, when y is a broadcast view): few enough code entries
        // that a draw with every kink argument 1e-4 away from its kink is common.
        let y_shape = [if spec.y_view == View::Broadcast { 2 } else { 1 }, 1, 7, 8];
        let (inputs, y_target, desc_y) = regenerate(&cfg, spec.y_view, &y_shape, &mut rng);
        // The filters in the requested layout (same values).
        let mut inputs = inputs;
        inputs[0] = relayout(&inputs[0], spec.h_view);
        let fam = spec.family;
        let desc = format!(
            "{} {}, {:?} threshold, stride {}{}, T = {}; H {}; y {desc_y}; loss {}",
            fam.name(),
            if spec.tied { "tied" } else { "untied" },
            spec.threshold,
            spec.stride,
            if cfg.uses_shifts() { " with its 4 shifts" } else { "" },
            spec.iters,
            autograd::audit::inputs::describe(spec.h_view, &cfg.filter_shape()),
            nll_name(fam)
        );
        let cfg = Arc::new(cfg);
        out.push(AuditCase::gradcheck("dcea", desc, inputs, default(), move |_, v| {
            let p = params_from_vars(&cfg, v);
            let y = bcast(&v[v.len() - 1], &y_target);
            let eta = dcea_forward(&p, &y, &cfg).eta;
            nll(fam, &eta, &y, Reduction::Sum)
        }));
    }
}

/// The same values as `t` in layout `view` (not broadcast).
fn relayout(t: &Tensor<f64>, view: View) -> Tensor<f64> {
    let shape = t.shape().to_vec();
    let r = make(view, &shape, Dom::Any, &mut Rng::new(0));
    // The values written through the view's offsets into a copy of its storage.
    let mut store = r.storage().to_vec();
    for (o, v) in r.layout().offsets().zip(t.contiguous().into_vec()) {
        store[o] = v;
    }
    Tensor::from_storage(std::sync::Arc::new(store), r.layout().clone())
}

/// Draws `[H, (We, Wd,) b, y]` until the model's kink margin is at least [`KINK_MARGIN`].
/// `y` is a broadcast leaf (with its target) when `y_view` is `Broadcast`.
/// **Panics** after 200 draws.
fn regenerate(
    cfg: &DceaConfig,
    y_view: View,
    y_shape: &[usize],
    rng: &mut Rng,
) -> (Vec<Tensor<f64>>, Option<Vec<usize>>, String) {
    for _ in 0..200 {
        let model = Dcea::<f64>::new(cfg.clone(), rng).expect("dcea init");
        let mut inputs: Vec<Tensor<f64>> = model.params().into_iter().cloned().collect();
        // Untied banks perturbed apart, thresholds spread around b_init.
        let h = inputs[0].to_f64_vec();
        let rms = (h.iter().map(|v| v * v).sum::<f64>() / h.len() as f64).sqrt();
        for t in inputs.iter_mut().skip(1).take(if cfg.tied { 0 } else { 2 }) {
            *t = t.add(&Tensor::<f64>::randn(t.shape(), rng).mul_scalar(0.2 * rms));
        }
        let k = cfg.filters;
        let b: Vec<f64> = (0..k).map(|_| cfg.b_init * rng.uniform_in(0.5, 1.5)).collect();
        let last = inputs.len() - 1;
        inputs[last] = Tensor::from_vec(b, &[k]);
        let (y_leaf, y_logical, target, desc) = if y_view == View::Broadcast {
            let mut small = y_shape.to_vec();
            small[0] = 1;
            let leaf = jittered_observations(cfg.family, &small, rng);
            let logical = leaf.broadcast_to(y_shape).contiguous();
            (leaf, logical, Some(y_shape.to_vec()), autograd::audit::inputs::describe(View::Broadcast, y_shape))
        } else {
            let logical = jittered_observations(cfg.family, y_shape, rng);
            (relayout(&logical, y_view), logical, None, autograd::audit::inputs::describe(y_view, y_shape))
        };
        let mut probe = inputs.clone();
        probe.push(y_logical);
        let m = model_margin(cfg, &probe);
        if m >= KINK_MARGIN {
            inputs.push(y_leaf);
            return (inputs, target, desc);
        }
    }
    panic!("dcea audit: no input with a kink margin of {KINK_MARGIN} in 200 draws");
}
