//! The fused rules of the unfolded model: one encoder step ([`dcea_iteration`]), the decoder
//! ([`dcea_decode`]) and the code of the output ([`dcea_threshold`]), each recorded as one node
//! whose gradient in the pre-threshold codes is computed on the support of the code only.

use autograd::{Backward, Var};
use engine::{Conv2dParams, ConvTranspose2dParams, Element, Tensor};

use super::code::{prox, thresholds, Code};
use super::config::{DceaConfig, Family, Threshold};

/// `min |u|` over the entries where `eta ≠ 0` and `min |u|` over all entries, for the ELU
/// arguments `u` of one step, in parallel.
fn elu_margins<T: Element>(u: &[T], eta: &[T]) -> (f64, f64) {
    // Minima are exact, so the order the pieces are combined in does not matter.
    const PIECE: usize = 1 << 15;
    let len = u.len().min(eta.len());
    engine::par::map(len.div_ceil(PIECE), &|c| {
        let r = c * PIECE..len.min((c + 1) * PIECE);
        u[r.clone()].iter().zip(&eta[r]).fold((f64::INFINITY, f64::INFINITY), |(m, all), (&u, &e)| {
            let a = u.as_f64().abs();
            (if e != T::zero() { m.min(a) } else { m }, all.min(a))
        })
    })
    .into_iter()
    .fold((f64::INFINITY, f64::INFINITY), |a, b| (a.0.min(b.0), a.1.min(b.1)))
}

/// The fixed settings of one unfolded step ([`dcea_iteration`], [`dcea_decode`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepSpec {
    /// The observation family (`f⁻¹` and its derivative).
    pub family: Family,
    /// The ELU's `a` on the residual, if any.
    pub elu: Option<f64>,
    /// `α`.
    pub step: f64,
    /// `P_b`, one- or two-sided.
    pub threshold: Threshold,
    /// The convolution of `Weᵀ·` (the stride).
    pub conv: Conv2dParams,
    /// The transposed convolution of `H·` (stride and output padding).
    pub convt: ConvTranspose2dParams,
}

impl StepSpec {
    /// The settings of `cfg` with the convolutions of [`prepare`].
    pub(super) fn of(cfg: &DceaConfig, conv: Conv2dParams, convt: ConvTranspose2dParams) -> StepSpec {
        StepSpec { family: cfg.family, elu: cfg.elu_alpha, step: cfg.step, threshold: cfg.threshold, conv, convt }
    }
}

/// `∂u = g·ρ'(u)` from the output `r = ρ(u)`: `ρ'(u) = 1` (no ELU, or `u > 0`, i.e. `r > 0`)
/// and `r + a` (`= a·eᵘ`, the ELU's own backward) for `u ≤ 0`.
fn residual_grad<T: Element>(g: Tensor<T>, r: &Tensor<T>, elu: Option<f64>) -> Tensor<T> {
    match elu {
        None => g,
        Some(a) => {
            let a = T::of(a);
            g.zip_map(r, "dcea_iteration", move |g, r| if r > T::zero() { g } else { g * (r + a) })
        }
    }
}

/// `∂η = −g·f⁻¹'(η)` for `u = y − f⁻¹(η)`, from the mean `μ = f⁻¹(η)`: `f⁻¹' = 1`,
/// `M·σ(1 − σ) = μ·(1 − μ/M)`, `e^η = μ`.
fn mean_grad<T: Element>(g: &Tensor<T>, mu: &Tensor<T>, family: Family) -> Tensor<T> {
    match family {
        Family::Gaussian => g.neg(),
        Family::Binomial { trials } => {
            let m = T::of(trials);
            g.zip_map(mu, "dcea_iteration", move |g, mu| -g * (mu * (T::one() - mu / m)))
        }
        Family::Poisson => g.zip_map(mu, "dcea_iteration", |g, mu| -g * mu),
    }
}

/// The rule of [`dcea_iteration`]: inputs `(v, y, H, We, b)` (or `(y, We)` at the first
/// step), output `v⁺ = x + α·conv2d(r, We)` with `x = P_b(v)`, `η = H x`, `r = ρ(y − f⁻¹(η))`.
/// With `gc = α·g`: `∂We = conv2d_backward_weight(gc, r)`, `∂r = conv2d_backward_input(gc,
/// We)`, `∂y = ∂r·ρ'(u)`, `∂η = −∂y·f⁻¹'(η)`, `∂H = conv_transpose2d_backward_weight(x, ∂η)`,
/// `∂x = g + Hᵀ∂η`, needed on the support of `x` only (`∂v = [x ≠ 0]·∂x`), where it is
/// computed (`conv_transpose2d_backward_input_where`), and `∂b` from `∂v` ([`Code::grads`]).
struct IterationBackward<T: Element> {
    /// Whether `v` (and `H`, `b`) are inputs; absent at the first step, where `x₀ = 0`.
    has_v: bool,
    spec: StepSpec,
    /// `μ = f⁻¹(η)`, `η = H x` (`f⁻¹(0)` at the first step).
    mu: Tensor<T>,
    /// The code `x = P_b(v)` when it is sparse enough to keep ([`Code::worth_keeping`]).
    code: Option<Code<T>>,
    /// `r = ρ(y − f⁻¹(η))`.
    r: Tensor<T>,
}

impl<T: Element> Backward<T> for IterationBackward<T> {
    fn name(&self) -> &str {
        "dcea_iteration"
    }
    fn backward(
        &self,
        g: &Tensor<T>,
        inputs: &[&Tensor<T>],
        _output: &Tensor<T>,
        needed: &[bool],
    ) -> autograd::Result<Vec<Option<Tensor<T>>>> {
        let s = &self.spec;
        let (iy, iwe) = if self.has_v { (1, 3) } else { (0, 1) };
        let (y, we) = (inputs[iy], inputs[iwe]);
        let through_v = self.has_v && (needed[0] || needed[2] || needed[4]);
        let gc = if s.step == 1.0 { g.clone() } else { g.mul_scalar(s.step) };
        let d_we = needed[iwe].then(|| Tensor::conv2d_backward_weight(&gc, &self.r, [we.dim(2), we.dim(3)], s.conv));
        let d_u = (needed[iy] || through_v).then(|| {
            let d_r = Tensor::conv2d_backward_input(&gc, we, [y.dim(2), y.dim(3)], s.conv);
            residual_grad(d_r, &self.r, s.elu)
        });
        let mut out = vec![None; inputs.len()];
        if through_v {
            let (v, h, b) = (inputs[0], inputs[2], inputs[4]);
            let d_eta = mean_grad(d_u.as_ref().expect("computed when v is needed"), &self.mu, s.family);
            let code = Code::kept_or(&self.code, v, b, s.threshold, "dcea_iteration");
            let x = code.dense();
            out[2] =
                needed[2].then(|| Tensor::conv_transpose2d_backward_weight(&x, &d_eta, [h.dim(2), h.dim(3)], s.convt));
            if needed[0] || needed[4] {
                let c = Tensor::conv_transpose2d_backward_input_where(&d_eta, h, &x, s.convt);
                let (dv, db) = code.grads(Some(g), Some(c), b.numel());
                out[0] = needed[0].then_some(dv);
                out[4] = needed[4].then(|| db.reshape(b.shape()));
            }
        }
        out[iwe] = d_we;
        if needed[iy] {
            out[iy] = d_u;
        }
        Ok(out)
    }
}

/// What [`dcea_iteration`] measured with `trace`: the ELU margins `(min |u| where η ≠ 0,
/// min |u|)` (∞ without an ELU), the threshold margin of its output `min |v⁺ − b|` (one-sided)
/// or `min ||v⁺| − b|` (two-sided), and the number of nonzero entries of `P_b(v⁺)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IterationStats {
    pub elu_margin: f64,
    pub elu_margin_all: f64,
    pub threshold_margin: f64,
    pub active: usize,
}

/// One encoder step on the pre-threshold codes, `v⁺ = P_b(v) + α·Weᵀ ρ(y − f⁻¹(H P_b(v)))`
/// (`v = None` is `x₀ = 0`, `v⁺ = α·Weᵀ ρ(y − f⁻¹(0))`), as one fused rule (`dcea_iteration`).
/// The encoder's `x_t = P_b(v_t)`; carrying `v` instead of `x` from step to step is what lets
/// the rule compute the gradient of `H x` in `x` only where `x ≠ 0` (a sparse gather instead
/// of a dense convolution: every other entry is zeroed by `P_b`'s derivative), exactly. The
/// convolutions are the engine's (sparse kernels for the sparse `x` and the sparse gradients),
/// the rest is applied in place on the conv2d's output, with the composite's arithmetic. The
/// rule keeps `η` and `r` (image-sized); `x` is recomputed from `v` in the backward.
///
/// `H`, `We` `[K, C, kh, kw]`, `b` `[K]` (used only for the trace at the first step), `y`
/// `[N, C, H, W]`, `v` the conv2d's output shape. With `trace`, also returns the
/// [`IterationStats`] (a few extra passes).
///
/// **Panics** if the shapes do not fit.
#[track_caller]
#[allow(clippy::too_many_arguments)]
pub fn dcea_iteration<'t, T: Element>(
    v: Option<&Var<'t, T>>,
    y: &Var<'t, T>,
    h: &Var<'t, T>,
    we: &Var<'t, T>,
    b: &Var<'t, T>,
    spec: StepSpec,
    trace: bool,
) -> (Var<'t, T>, IterationStats) {
    const OP: &str = "dcea_iteration";
    let yv = y.value();
    let (code, eta) = match v {
        None => (None, Tensor::zeros(yv.shape())),
        Some(v) => {
            let vv = v.value();
            let code = Code::of(&vv, &thresholds(OP, &b.value(), &vv), spec.threshold);
            let eta = code.dense().conv_transpose2d(&h.value(), None, spec.convt);
            assert_eq!(
                eta.shape(),
                yv.shape(),
                "{OP}: H·P_b(v) {:?} must have y's shape {:?}",
                eta.shape(),
                yv.shape()
            );
            (Some(code), eta)
        }
    };
    let mu = spec.family.mean_tensor(&eta);
    let u = yv.sub(&mu);
    let (mut elu_margin, mut elu_margin_all) = (f64::INFINITY, f64::INFINITY);
    if trace && spec.elu.is_some() {
        let uc = u.contiguous();
        (elu_margin, elu_margin_all) =
            elu_margins(uc.as_slice().expect("contiguous"), eta.as_slice().expect("contiguous"));
    }
    let r = match spec.elu {
        Some(a) => u.elu(a),
        None => u,
    };
    let mut c = r.conv2d(&we.value(), None, spec.conv);
    if let Some(code) = &code {
        assert_eq!(code.shape, c.shape(), "{OP}: v {:?} must have the code shape {:?}", code.shape, c.shape());
    }
    let bv = thresholds(OP, &b.value(), &c);
    let (k, plane) = (c.dim(1), c.dim(2) * c.dim(3));
    let out = c.make_mut();
    if spec.step != 1.0 {
        let alpha = T::of(spec.step);
        engine::par::chunks_mut(out, 1 << 15, &|_, o| o.iter_mut().for_each(|e| *e *= alpha));
    }
    if let Some(code) = &code {
        code.add_to(out);
    }
    let (threshold_margin, active) = if !trace || plane == 0 {
        (f64::INFINITY, 0)
    } else {
        let out = &*out;
        engine::par::map(out.len() / plane, &|p| {
            let vp = &out[p * plane..(p + 1) * plane];
            vp.iter().fold((f64::INFINITY, 0usize), |(m, active), &e| {
                let (arg, val) = prox(e, bv[p % k], spec.threshold);
                (m.min(arg.as_f64().abs()), active + (val != T::zero()) as usize)
            })
        })
        .into_iter()
        .fold((f64::INFINITY, 0), |a, b| (a.0.min(b.0), a.1 + b.1))
    };
    let inputs: Vec<Var<'t, T>> = match v {
        Some(v) => vec![*v, *y, *h, *we, *b],
        None => vec![*y, *we],
    };
    let code = code.filter(Code::worth_keeping);
    let rule = IterationBackward { has_v: v.is_some(), spec, mu, code, r };
    let stats = IterationStats { elu_margin, elu_margin_all, threshold_margin, active };
    (y.tape().push_op(c, &inputs, rule), stats)
}

/// The rule of [`dcea_decode`]: inputs `(v, Wd, b)`, output `η̂ = conv_transpose2d(P_b(v),
/// Wd)`. `∂Wd = conv_transpose2d_backward_weight(x, g)`, `∂v = [x ≠ 0]·Wdᵀg` computed on the
/// support of `x` only, `∂b` from `∂v` ([`Code::grads`]).
struct DecodeBackward<T> {
    threshold: Threshold,
    convt: ConvTranspose2dParams,
    /// `P_b(v)` if kept ([`Code::worth_keeping`]).
    code: Option<Code<T>>,
}

impl<T: Element> Backward<T> for DecodeBackward<T> {
    fn name(&self) -> &str {
        "dcea_decode"
    }
    fn backward(
        &self,
        g: &Tensor<T>,
        inputs: &[&Tensor<T>],
        _output: &Tensor<T>,
        needed: &[bool],
    ) -> autograd::Result<Vec<Option<Tensor<T>>>> {
        let (v, wd, b) = (inputs[0], inputs[1], inputs[2]);
        let code = Code::kept_or(&self.code, v, b, self.threshold, "dcea_decode");
        let x = code.dense();
        let mut out = vec![None, None, None];
        out[1] = needed[1].then(|| Tensor::conv_transpose2d_backward_weight(&x, g, [wd.dim(2), wd.dim(3)], self.convt));
        if needed[0] || needed[2] {
            let c = Tensor::conv_transpose2d_backward_input_where(g, wd, &x, self.convt);
            let (dv, db) = code.grads(None, Some(c), b.numel());
            out[0] = needed[0].then_some(dv);
            out[2] = needed[2].then(|| db.reshape(b.shape()));
        }
        Ok(out)
    }
}

/// The decoder on the pre-threshold codes, `η̂ = conv_transpose2d(P_b(v), Wd)`, as one fused
/// rule (`dcea_decode`) whose gradient in `v` is computed on the support of `P_b(v)` only
/// (see [`dcea_iteration`]).
///
/// **Panics** if the shapes do not fit (`v` `[N, K, h, w]`, `Wd` `[K, C, kh, kw]`, `b` `[K]`).
#[track_caller]
pub fn dcea_decode<'t, T: Element>(
    v: &Var<'t, T>,
    wd: &Var<'t, T>,
    b: &Var<'t, T>,
    threshold: Threshold,
    convt: ConvTranspose2dParams,
) -> Var<'t, T> {
    let vv = v.value();
    let code = Code::of(&vv, &thresholds("dcea_decode", &b.value(), &vv), threshold);
    let eta = code.dense().conv_transpose2d(&wd.value(), None, convt);
    let code = Some(code).filter(Code::worth_keeping);
    v.tape().push_op(eta, &[*v, *wd, *b], DecodeBackward { threshold, convt, code })
}

/// The rule of [`dcea_threshold`]: inputs `(v, b)`, `∂v = [x ≠ 0]·g`, `∂b` ([`Code::grads`]).
struct ThresholdBackward<T>(Threshold, Option<Code<T>>);

impl<T: Element> Backward<T> for ThresholdBackward<T> {
    fn name(&self) -> &str {
        "dcea_threshold"
    }
    fn backward(
        &self,
        g: &Tensor<T>,
        inputs: &[&Tensor<T>],
        _output: &Tensor<T>,
        needed: &[bool],
    ) -> autograd::Result<Vec<Option<Tensor<T>>>> {
        let (v, b) = (inputs[0], inputs[1]);
        let code = Code::kept_or(&self.1, v, b, self.0, "dcea_threshold");
        let (dv, db) = code.grads(Some(g), None, b.numel());
        Ok(vec![needed[0].then_some(dv), needed[1].then(|| db.reshape(b.shape()))])
    }
}

/// The codes `x = P_b(v)` of pre-threshold codes `v` `[N, K, h, w]` with `b` `[K]`, one rule
/// (`dcea_threshold`; the kinks count as inactive).
///
/// **Panics** if `b` does not have one entry per filter.
#[track_caller]
pub fn dcea_threshold<'t, T: Element>(v: &Var<'t, T>, b: &Var<'t, T>, threshold: Threshold) -> Var<'t, T> {
    let vv = v.value();
    let code = Code::of(&vv, &thresholds("dcea_threshold", &b.value(), &vv), threshold);
    let x = code.dense();
    v.tape().push_op(x, &[*v, *b], ThresholdBackward(threshold, Some(code).filter(Code::worth_keeping)))
}
