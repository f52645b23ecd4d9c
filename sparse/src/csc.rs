//! The convolutional sparse coding (CSC) layer of SDNet, docs/math.md §2: a drop-in for
//! `conv2d(x, W)` that outputs `z_T` after T FISTA steps on
//! `min_z λ‖z‖₁ + ½‖x − A(z)‖²`, `A(z) = conv_transpose2d(z, W)`, `Aᵀ(x) = conv2d(x, W)`
//! (same weight `W [C, M, k, k]`, same stride and padding; the transposed convolution gets
//! the output padding that makes `A(z)` the shape of `x`).
//!
//! Two gradients, selected by [`Gradient`]:
//! * **Unrolled**: the T iterations are recorded on the tape from audited ops (conv2d,
//!   conv_transpose2d, soft-threshold or `relu(v − τ)`, scalar products), so the gradient is
//!   that of the unrolled map. The tape keeps every iterate.
//! * **Implicit** (`csc_implicit` on the tape): the forward runs [`fista`] off the tape and
//!   keeps only `z`; the backward assumes `z` solves the lasso and differentiates its
//!   optimality conditions: on the support `Λ` of `z`, `(AᵀA)_ΛΛ·β_Λ = g_Λ` by conjugate
//!   gradients with the conv operators (`β = 0` off `Λ`), then
//!   `∂L/∂x = A(β)`, `∂L/∂W = ∇_W⟨x − A_W(z), A_W(β)⟩` with `z, β, x` held constant (the
//!   convolutional form of Mairal's rule), `∂L/∂λ = −βᵀsign(z)`. Exact at the solution only:
//!   run enough iterations (or [`Implicit::polish`]); CG that does not reach its tolerance is
//!   an error that says so.
//!
//! The step `s = step_scale / L` uses `L` from [`Csc::refresh`] (the SDNet power iteration,
//! warm-started, recomputed before every batch after the atoms are renormalised); it is a
//! constant: no gradient flows through it, and gradient checks hold it fixed.
//!
//! SDNet's configuration (`FistaConfig::sdnet`): λ = 0.1, T = 2, non-negative prox
//! `max(v − λs, 0)`, step 0.9/L, SDNet momentum, every atom `W[c]` renormalised to unit norm
//! before each forward pass. (The SDNet code computes L *before* renormalising, from the
//! weights the optimiser left; docs/math.md asks for it after, which this layer does.)

use autograd::{Backward, Var};
use engine::{Conv2dParams, ConvTranspose2dParams, Element, Tensor};

use crate::error::SparseError;
use crate::fista::{check_finite, fista, lipschitz, FistaConfig, LinearOperator, Momentum, PowerConfig, Prox};

/// The convolutional operator `A(z) = conv_transpose2d(z, W)` for signals of spatial size
/// `x_hw`, and its adjoint `Aᵀ(x) = conv2d(x, W)`. `W` is `[C, M, kh, kw]`: C code channels,
/// M signal channels.
pub struct Conv<T: Element> {
    pub w: Tensor<T>,
    pub conv: Conv2dParams,
    pub x_hw: [usize; 2],
}

impl<T: Element> Conv<T> {
    /// The operator. **Panics** if `w` is not rank 4, the convolution has a dilation or
    /// groups, or the window does not fit `x_hw`.
    #[track_caller]
    pub fn new(w: Tensor<T>, conv: Conv2dParams, x_hw: [usize; 2]) -> Conv<T> {
        assert!(w.rank() == 4, "csc: the weight must be [C, M, kh, kw], got {:?}", w.shape());
        assert!(
            conv.dilation == [1, 1] && conv.groups == 1,
            "csc: dilation {:?} and groups {} are not supported",
            conv.dilation,
            conv.groups
        );
        let k = [w.dim(2), w.dim(3)];
        assert!(
            conv.output_hw(x_hw, k).is_some(),
            "csc: a {k:?} kernel with padding {:?} does not fit a {x_hw:?} input",
            conv.padding
        );
        Conv { w, conv, x_hw }
    }

    /// The code's spatial size.
    pub fn z_hw(&self) -> [usize; 2] {
        self.conv.output_hw(self.x_hw, [self.w.dim(2), self.w.dim(3)]).expect("checked in new")
    }

    /// The transposed convolution that is the exact adjoint of `conv2d` *and* maps codes back to
    /// `x_hw`: its output padding is `x_hw − ((h' − 1)·s − 2p + k)`, in `[0, s)`.
    pub fn transpose_params(&self) -> ConvTranspose2dParams {
        transpose_params(self.conv, self.x_hw, [self.w.dim(2), self.w.dim(3)])
    }
}

/// See [`Conv::transpose_params`].
pub fn transpose_params(conv: Conv2dParams, x_hw: [usize; 2], k: [usize; 2]) -> ConvTranspose2dParams {
    let z = conv.output_hw(x_hw, k).expect("the window fits");
    let op = |a: usize| x_hw[a] + 2 * conv.padding[a] - ((z[a] - 1) * conv.stride[a] + k[a]);
    ConvTranspose2dParams::new().stride2(conv.stride).padding2(conv.padding).output_padding2([op(0), op(1)])
}

impl<T: Element> LinearOperator<T> for Conv<T> {
    fn apply(&self, z: &Tensor<T>) -> Tensor<T> {
        z.conv_transpose2d(&self.w, None, self.transpose_params())
    }
    fn adjoint(&self, x: &Tensor<T>) -> Tensor<T> {
        x.conv2d(&self.w, None, self.conv)
    }
    fn code_shape(&self, x_shape: &[usize]) -> Vec<usize> {
        let z = self.z_hw();
        vec![x_shape[0], self.w.dim(0), z[0], z[1]]
    }
}

/// Options of the implicit gradient.
#[derive(Clone, Debug, PartialEq)]
pub struct Implicit {
    /// Conjugate gradients stop when every sample's `‖r‖ ≤ tol·‖g_Λ‖`.
    pub cg_tol: f64,
    /// ... or fail with `NotConverged` after this many iterations (with `Diverged` sooner, once
    /// a residual has grown for [`CG_DIVERGED_AFTER`] consecutive iterations).
    pub cg_max_iter: usize,
    /// After FISTA, solve the optimality equations on the support found,
    /// `(AᵀA)_ΛΛ z_Λ = (Aᵀx)_Λ − λ·sign(z_Λ)`, exactly (a Cholesky factor per sample), and
    /// keep the result if its signs agree with the support's (otherwise FISTA's `z`). Costs
    /// one transposed convolution per support entry: for tests and gradient checks, which
    /// need the exact minimiser.
    pub polish: bool,
}

impl Default for Implicit {
    fn default() -> Self {
        Implicit { cg_tol: 1e-8, cg_max_iter: 500, polish: false }
    }
}

/// Which gradient the CSC layer records.
#[derive(Clone, Debug, PartialEq)]
pub enum Gradient {
    Unrolled,
    Implicit(Implicit),
}

/// Configuration of the CSC layer: the FISTA iterations, the convolution geometry, the
/// gradient.
#[derive(Clone, Debug, PartialEq)]
pub struct CscConfig {
    pub fista: FistaConfig,
    /// Stride and padding (shared by `A` and `Aᵀ`).
    pub conv: Conv2dParams,
    pub gradient: Gradient,
}

impl CscConfig {
    /// SDNet's stem configuration: λ = 0.1, T = 2, non-negative, 0.9/L, SDNet momentum,
    /// stride 1, padding 1, unrolled.
    pub fn sdnet() -> CscConfig {
        CscConfig {
            fista: FistaConfig::sdnet(0.1, 2),
            conv: Conv2dParams::new().padding(1),
            gradient: Gradient::Unrolled,
        }
    }
}

/// What a forward pass of the layer did.
#[derive(Clone, Debug, PartialEq)]
pub struct CscStats {
    /// The `L` used and the step `s = step_scale / L`.
    pub lipschitz: f64,
    pub step: f64,
    pub iterations: usize,
    /// `‖z_T − z_{T−1}‖ / ‖z_T‖` from FISTA off the tape (implicit, or unrolled with nothing to
    /// differentiate); NaN when the iterations are recorded on the tape (not computed).
    pub last_rel_change: f64,
    /// Fraction of nonzero code entries.
    pub density: f64,
}

/// Holds no variable: a scope returning `(z, stats)` keeps `z` only ([`autograd::Tape::scope`]).
impl autograd::Retain for CscStats {
    fn retained(&self, _: &mut Vec<autograd::NodeId>) {}
}

fn density<T: Element>(z: &Tensor<T>) -> f64 {
    let v = z.to_vec();
    if v.is_empty() {
        return 0.0;
    }
    v.iter().filter(|x| **x != T::zero()).count() as f64 / v.len() as f64
}

/// The CSC layer's state across batches: the power iteration's vector (warm start) and the
/// current `L`.
#[derive(Clone, Debug, Default)]
pub struct Csc<T: Element> {
    /// The unit vector of the last power iteration (code shape, batch 1).
    pub vector: Option<Tensor<T>>,
    /// `L` from the last [`Csc::refresh`].
    pub lipschitz: Option<f64>,
    /// Options of the power iteration.
    pub power: PowerConfig,
}

impl<T: Element> Csc<T> {
    pub fn new() -> Self {
        Csc { vector: None, lipschitz: None, power: PowerConfig::default() }
    }

    /// Renormalises every atom `W[c]` (`[M, kh, kw]`) to unit ℓ2 norm in place (zero atoms
    /// stay zero), then recomputes `L` for signals of spatial size `x_hw` by the warm-started
    /// power iteration. Call before every batch, as SDNet does. Returns `L`.
    ///
    /// # Errors
    /// Those of [`lipschitz`].
    pub fn refresh(&mut self, w: &mut Tensor<T>, conv: Conv2dParams, x_hw: [usize; 2]) -> Result<f64, SparseError> {
        *w = unit_atoms(w);
        let op = Conv::new(w.clone(), conv, x_hw);
        let z = op.z_hw();
        let est = lipschitz(&op, &[1, w.dim(0), z[0], z[1]], self.vector.as_ref(), &self.power)?;
        self.vector = Some(est.vector);
        self.lipschitz = Some(est.value);
        Ok(est.value)
    }
}

/// Every atom `w[c]` divided by its ℓ2 norm (zero atoms left at zero).
pub fn unit_atoms<T: Element>(w: &Tensor<T>) -> Tensor<T> {
    let axes: Vec<usize> = (1..w.rank()).collect();
    let n = w.norm_l2(&axes, true).map(|v| if v > T::zero() { v } else { T::one() });
    w.div(&n)
}

/// The CSC layer: `z_T` for the signals `x [N, M, H, W]` and weight `w [C, M, kh, kw]`,
/// shape `[N, C, H', W']` as `conv2d(x, w)` with the same stride and padding. `lambda`, when
/// given, is a one-element variable replacing `cfg.fista.lambda` and receives a gradient;
/// `lipschitz` is `L` (from [`Csc::refresh`]), a constant.
///
/// # Errors
/// Invalid λ, step scale or `L`; non-finite `x`. (The implicit rule's CG errors come from
/// the backward pass, as `autograd::Error::Rule` holding the `SparseError`.)
/// **Panics** if the shapes do not fit (naming them).
#[track_caller]
pub fn csc<'t, T: Element>(
    x: &Var<'t, T>,
    w: &Var<'t, T>,
    lambda: Option<&Var<'t, T>>,
    lipschitz: f64,
    cfg: &CscConfig,
) -> Result<(Var<'t, T>, CscStats), SparseError> {
    let (xs, ws) = (x.shape(), w.shape());
    assert!(
        xs.len() == 4 && ws.len() == 4 && xs[1] == ws[1],
        "csc: x must be [N, M, H, W] and the weight [C, M, kh, kw] with the same M, got {xs:?} and {ws:?}"
    );
    let mut fcfg = cfg.fista.clone();
    if let Some(l) = lambda {
        let s = l.shape();
        assert!(s.iter().product::<usize>() == 1, "csc: lambda must have one element, got shape {s:?}");
        fcfg.lambda = l.item();
    }
    fcfg.validate("csc", lipschitz)?;
    check_finite("csc", "x", &x.value())?;
    // Panics with the shapes if the window does not fit.
    let op = Conv::new(w.value(), cfg.conv, [xs[2], xs[3]]);
    let wanted = x.tape().grad_enabled()
        && (x.requires_grad() || w.requires_grad() || lambda.is_some_and(|l| l.requires_grad()));
    match &cfg.gradient {
        // Nothing to differentiate (`Tape::no_grad`, constant inputs): the same T iterations
        // off the tape, so that the tape does not hold every iterate. An inference tape runs
        // the recorded iterations instead (the same bits as with a gradient), each freed once
        // dead ([`unrolled`]).
        Gradient::Unrolled if !wanted && !x.tape().is_inference() => forward_only(x, lipschitz, &fcfg, &op),
        Gradient::Unrolled => Ok(unrolled(x, w, lambda, lipschitz, &fcfg, &op)),
        Gradient::Implicit(imp) => implicit(x, w, lambda, lipschitz, &fcfg, op, imp),
    }
}

/// The prox on the tape, with a constant threshold or one proportional to a λ variable.
fn prox_on_tape<'t, T: Element>(
    prox: Prox,
    v: &Var<'t, T>,
    tau: f64,
    lambda: Option<(&Var<'t, T>, f64)>,
) -> Var<'t, T> {
    match (prox, lambda) {
        (Prox::Signed, None) => v.soft_threshold(tau),
        (Prox::NonNegative, None) => v.sub_scalar(tau).relu(),
        (prox, Some((l, s))) => {
            // τ = s·λ as a variable: S_τ(v) = relu(v − τ) − relu(−v − τ), whose derivative in
            // τ is −sign(v) where |v| > τ (docs/math.md §2).
            let t = l.reshape(&[]).mul_scalar(s);
            let up = v.sub(&t).relu();
            match prox {
                Prox::NonNegative => up,
                Prox::Signed => up.sub(&v.neg().sub(&t).relu()),
            }
        }
    }
}

/// The unrolled layer's forward when no gradient is wanted: [`fista`] in place (the same
/// iterations and momentum as [`unrolled`], equal to rounding), the result a constant.
fn forward_only<'t, T: Element>(
    x: &Var<'t, T>,
    lipschitz: f64,
    cfg: &FistaConfig,
    op: &Conv<T>,
) -> Result<(Var<'t, T>, CscStats), SparseError> {
    let (z, trace) = fista(op, &x.value(), lipschitz, cfg)?;
    let stats = CscStats {
        lipschitz,
        step: cfg.step_scale / lipschitz,
        iterations: cfg.iters,
        last_rel_change: trace.rel_change.last().copied().unwrap_or(f64::NAN),
        density: density(&z),
    };
    Ok((x.tape().constant(z), stats))
}

fn unrolled<'t, T: Element>(
    x: &Var<'t, T>,
    w: &Var<'t, T>,
    lambda: Option<&Var<'t, T>>,
    lipschitz: f64,
    cfg: &FistaConfig,
    op: &Conv<T>,
) -> (Var<'t, T>, CscStats) {
    let s = cfg.step_scale / lipschitz;
    let tau = s * cfg.lambda;
    let lam = lambda.map(|l| (l, s));
    let tp = op.transpose_params();
    let a = |z: &Var<'t, T>| z.conv_transpose2d(w, None, tp);
    let at = |r: &Var<'t, T>| r.conv2d(w, None, op.conv);
    let tape = x.tape();
    // Each step runs in a scope and the iterate two steps back is released: on an inference
    // tape (or wherever no rule needs them) the intermediates are freed as they die.
    // z_1 = prox(s·Aᵀx) (y_1 = z_0 = 0).
    let mut z = tape.scope(|| prox_on_tape(cfg.prox, &at(x).mul_scalar(s), tau, lam));
    let mut z_prev: Option<Var<'t, T>> = None;
    let mut t = 1.0f64;
    let mut t_next = (1.0 + 5.0f64.sqrt()) / 2.0;
    for k in 2..=cfg.iters {
        let z_new = tape.scope(|| {
            // y_k = z_{k−1} + ((t_{k−1} − 1)/t_k)(z_{k−1} − z_{k−2}); the coefficient is 0 at k = 2.
            let y = match &z_prev {
                Some(zp) => z.add(&z.sub(zp).mul_scalar((t - 1.0) / t_next)),
                None => z,
            };
            let at_point = match cfg.momentum {
                Momentum::Sdnet if k >= 3 => z,
                _ => y,
            };
            let grad = at(&x.sub(&a(&at_point))); // Aᵀ(x − A·point) = −∇f
            prox_on_tape(cfg.prox, &y.add(&grad.mul_scalar(s)), tau, lam)
        });
        if let Some(zp) = z_prev {
            tape.release(&zp);
        }
        z_prev = Some(z);
        z = z_new;
        t = t_next;
        t_next = (1.0 + (1.0 + 4.0 * t * t).sqrt()) / 2.0;
    }
    if let Some(zp) = z_prev {
        tape.release(&zp);
    }
    let stats =
        CscStats { lipschitz, step: s, iterations: cfg.iters, last_rel_change: f64::NAN, density: density(&z.value()) };
    (z, stats)
}

// ---------------------------------------------------------------------------------------------
// Implicit

/// `Σ_j a_j·b_j` over every axis but the first, per sample, for row-major buffers of `n`
/// samples.
fn per_sample_dot<T: Element>(a: &[T], b: &[T], n: usize) -> Vec<f64> {
    let len = a.len().checked_div(n).unwrap_or(0);
    (0..n)
        .map(|i| {
            a[i * len..(i + 1) * len].iter().zip(&b[i * len..(i + 1) * len]).map(|(x, y)| x.as_f64() * y.as_f64()).sum()
        })
        .collect()
}

/// Conjugate gradients give up on a sample whose residual `‖r‖` has grown for this many
/// consecutive iterations ([`SparseError::Diverged`]) instead of running to `cg_max_iter`. On a
/// symmetric positive definite matrix the residual may rise for a few iterations, but not for
/// this many in a row; when rounding makes `(AᵀA)_ΛΛ` numerically indefinite or non-symmetric
/// (linearly dependent atoms), it grows steadily, to 1e9 and beyond by `cg_max_iter`.
pub const CG_DIVERGED_AFTER: usize = 20;

/// Solves `(AᵀA)_ΛΛ·β = b` (`b` zero off `Λ`; `Λ` = the nonzeros of `support`) by conjugate
/// gradients, independently for every sample (per-sample step lengths), until every
/// sample's `‖r‖ ≤ tol·‖b‖`; fails with `Diverged` as soon as one sample's residual has grown
/// for [`CG_DIVERGED_AFTER`] consecutive iterations, with `NotConverged` after `max_iter`. In
/// place: `β`, `r`, `p` and `A^T A p` are the only code-sized buffers kept across iterations.
fn cg_on_support<T: Element>(
    op: &impl LinearOperator<T>,
    support: &Tensor<T>,
    b: Tensor<T>,
    tol: f64,
    max_iter: usize,
    what: &'static str,
) -> Result<(Tensor<T>, usize), SparseError> {
    let n = b.dim(0);
    let shape = b.shape().to_vec();
    let len = b.numel().checked_div(n).unwrap_or(0);
    let on: Vec<bool> = support.contiguous().as_slice().expect("contiguous").iter().map(|v| *v != T::zero()).collect();
    let mut r = b.contiguous();
    r.make_mut().iter_mut().zip(&on).for_each(|(v, &o)| {
        if !o {
            *v = T::zero()
        }
    });
    let b_norm: Vec<f64> = {
        let rs = r.as_slice().expect("contiguous");
        per_sample_dot(rs, rs, n).iter().map(|v| v.sqrt()).collect()
    };
    let mut beta = vec![T::zero(); r.numel()];
    let mut p = r.clone().into_vec();
    let mut rs = per_sample_dot(r.as_slice().expect("contiguous"), r.as_slice().expect("contiguous"), n);
    let converged = |r2: f64, s: usize| r2.sqrt() <= tol * b_norm[s];
    let mut it = 0;
    let mut grown = vec![0usize; n]; // consecutive iterations in which ‖r‖ grew, per sample
    while !rs.iter().enumerate().all(|(s, &r2)| converged(r2, s)) {
        if it == max_iter {
            let worst = rs
                .iter()
                .zip(&b_norm)
                .map(|(&r2, &bn)| if bn > 0.0 { r2.sqrt() / bn } else { 0.0 })
                .fold(0.0, f64::max);
            return Err(SparseError::NotConverged { op: "csc_implicit", what, iters: it, rel_residual: worst, tol });
        }
        let pt = Tensor::from_vec(p, &shape);
        let mut q = op.adjoint(&op.apply(&pt));
        p = pt.into_vec();
        let qs = q.make_mut();
        qs.iter_mut().zip(&on).for_each(|(v, &o)| {
            if !o {
                *v = T::zero()
            }
        });
        let pap = per_sample_dot(&p, qs, n);
        let rm = r.make_mut();
        for s in 0..n {
            if converged(rs[s], s) {
                continue; // this sample has converged: keep its iterate
            }
            let c = pap[s];
            if c <= 0.0 || !c.is_finite() {
                return Err(SparseError::NotPositiveDefinite { op: "csc_implicit", what, sample: s, curvature: c });
            }
            let alpha = T::of(rs[s] / c);
            let span = s * len..(s + 1) * len;
            beta[span.clone()].iter_mut().zip(&p[span.clone()]).for_each(|(bv, &pv)| *bv += alpha * pv);
            rm[span.clone()].iter_mut().zip(&qs[span.clone()]).for_each(|(rv, &qv)| *rv -= alpha * qv);
            let new: f64 = rm[span.clone()].iter().map(|v| v.as_f64() * v.as_f64()).sum();
            let ratio = T::of(new / rs[s]);
            p[span.clone()].iter_mut().zip(&rm[span]).for_each(|(pv, &rv)| *pv = rv + ratio * *pv);
            grown[s] = if new > rs[s] { grown[s] + 1 } else { 0 };
            rs[s] = new;
            if grown[s] == CG_DIVERGED_AFTER {
                let rel_residual = new.sqrt() / b_norm[s];
                let (op, iters, grew_for) = ("csc_implicit", it + 1, CG_DIVERGED_AFTER);
                return Err(SparseError::Diverged { op, what, sample: s, iters, rel_residual, grew_for });
            }
        }
        it += 1;
    }
    Ok((Tensor::from_vec(beta, &shape), it))
}

/// `sign(z)` (0 off the support) and the support mask.
fn sign_and_mask<T: Element>(z: &Tensor<T>) -> (Tensor<T>, Tensor<T>) {
    (z.sign(), z.map(|v| if v != T::zero() { T::one() } else { T::zero() }))
}

/// The rule of the implicit CSC layer (inputs `x`, `W`, optionally `λ`).
struct CscImplicitBackward<T: Element> {
    /// Geometry of `A` and `Aᵀ`.
    conv: Conv2dParams,
    /// Prox of the forward (the non-negative problem has sign +1 on its support).
    prox: Prox,
    /// CG options.
    implicit: Implicit,
    /// Marker for the element type.
    _t: std::marker::PhantomData<T>,
}

impl<T: Element> Backward<T> for CscImplicitBackward<T> {
    fn name(&self) -> &str {
        "csc_implicit"
    }
    fn backward(
        &self,
        g: &Tensor<T>,
        inputs: &[&Tensor<T>],
        z: &Tensor<T>,
        needed: &[bool],
    ) -> autograd::Result<Vec<Option<Tensor<T>>>> {
        let (x, w) = (inputs[0], inputs[1]);
        let op = Conv::new(w.clone(), self.conv, [x.dim(2), x.dim(3)]);
        let (beta, _) = cg_on_support(
            &op,
            z,
            g.clone(),
            self.implicit.cg_tol,
            self.implicit.cg_max_iter,
            "conjugate gradients on (AᵀA)_ΛΛ·β = g_Λ",
        )
        .map_err(|e| autograd::Error::rule("csc_implicit", e))?;
        let a_beta = op.apply(&beta);
        let gx = needed[0].then(|| a_beta.clone());
        let gw = needed[1].then(|| {
            // ∇_W⟨x − A_W z, A_W β⟩ = ∇_W⟨A_W β, r⟩ − ∇_W⟨A_W z, A β⟩ with r = x − A z.
            let tp = op.transpose_params();
            let r = x.sub(&op.apply(z));
            let kw = [w.dim(2), w.dim(3)];
            Tensor::conv_transpose2d_backward_weight(&beta, &r, kw, tp)
                .sub(&Tensor::conv_transpose2d_backward_weight(z, &a_beta, kw, tp))
        });
        let mut out = vec![gx, gw];
        if inputs.len() == 3 {
            let (sign, mask) = sign_and_mask(z);
            let s = match self.prox {
                Prox::Signed => sign,
                Prox::NonNegative => mask,
            };
            let (bv, sv) = (beta.contiguous(), s.contiguous());
            let gl: f64 = -per_sample_dot(bv.as_slice().expect("contiguous"), sv.as_slice().expect("contiguous"), 1)[0];
            out.push(needed[2].then(|| Tensor::full(inputs[2].shape(), T::of(gl))));
        }
        Ok(out)
    }
}

fn implicit<'t, T: Element>(
    x: &Var<'t, T>,
    w: &Var<'t, T>,
    lambda: Option<&Var<'t, T>>,
    lipschitz: f64,
    cfg: &FistaConfig,
    op: Conv<T>,
    imp: &Implicit,
) -> Result<(Var<'t, T>, CscStats), SparseError> {
    let xv = x.value();
    let (mut z, trace) = fista(&op, &xv, lipschitz, cfg)?;
    if imp.polish {
        z = polish(&op, &xv, z, cfg)?;
    }
    let stats = CscStats {
        lipschitz,
        step: cfg.step_scale / lipschitz,
        iterations: cfg.iters,
        last_rel_change: trace.rel_change.last().copied().unwrap_or(f64::NAN),
        density: density(&z),
    };
    let mut inputs = vec![*x, *w];
    inputs.extend(lambda.copied());
    let rule =
        CscImplicitBackward { conv: op.conv, prox: cfg.prox, implicit: imp.clone(), _t: std::marker::PhantomData };
    Ok((x.tape().push_op(z, &inputs, rule), stats))
}

/// Solves the optimality equations on the support of `z` (see [`Implicit::polish`]) exactly:
/// for every sample, the Gram matrix of the support's atoms `G_ij = ⟨A e_i, A e_j⟩` is built
/// from one transposed convolution per support entry and factored by Cholesky
/// ([`engine::linalg::Cholesky`]), so the result is accurate to rounding (conjugate gradients
/// would stop at their tolerance). `O(|Λ|)` operator applications per sample: meant for the
/// small problems of tests and gradient checks. A support whose Gram matrix is not positive
/// definite, or a solution whose signs disagree with the support's, leaves `z` as it was.
fn polish<T: Element>(op: &Conv<T>, x: &Tensor<T>, z: Tensor<T>, cfg: &FistaConfig) -> Result<Tensor<T>, SparseError> {
    use engine::linalg::Cholesky;
    let n = z.dim(0);
    let per = z.numel() / n.max(1);
    let zv = z.contiguous().into_vec();
    let atx = op.adjoint(x).contiguous().into_vec();
    let mut out = zv.clone();
    for s in 0..n {
        let support: Vec<usize> = (0..per).filter(|&j| zv[s * per + j] != T::zero()).collect();
        if support.is_empty() {
            continue;
        }
        // The support's atoms A e_j (as signals of one sample), one per column.
        let atoms: Vec<Vec<f64>> = support
            .iter()
            .map(|&j| {
                let mut e = vec![T::zero(); per];
                e[j] = T::one();
                let shape: Vec<usize> = std::iter::once(1).chain(z.shape()[1..].iter().copied()).collect();
                op.apply(&Tensor::from_vec(e, &shape)).to_vec().iter().map(|v| v.as_f64()).collect()
            })
            .collect();
        let k = support.len();
        let mut g = vec![0.0f64; k * k];
        for i in 0..k {
            for j in 0..=i {
                let v: f64 = atoms[i].iter().zip(&atoms[j]).map(|(a, b)| a * b).sum();
                g[i * k + j] = v;
                g[j * k + i] = v;
            }
        }
        let Ok(chol) = Cholesky::<f64>::factor(&g, k) else { return Ok(z) };
        let sign = |v: T| if v > T::zero() { 1.0 } else { -1.0 };
        let mut b: Vec<f64> = support
            .iter()
            .map(|&j| {
                let sj = match cfg.prox {
                    Prox::Signed => sign(zv[s * per + j]),
                    Prox::NonNegative => 1.0,
                };
                atx[s * per + j].as_f64() - cfg.lambda * sj
            })
            .collect();
        chol.solve_in_place(&mut b);
        for (&j, &v) in support.iter().zip(&b) {
            if (v > 0.0) != (zv[s * per + j] > T::zero()) || v == 0.0 {
                return Ok(z);
            }
            out[s * per + j] = T::of(v);
        }
    }
    Ok(Tensor::from_vec(out, z.shape()))
}

/// How far the implicit CSC map is from a change of support at `(x, w)`: the minimum of
/// `|z_j|` on the support and of `λ − |Aᵀ(x − Az)|_j` off it (the correlation itself for the
/// non-negative prox), with `z` from FISTA + polish. Gradient checks of the implicit layer
/// need this margin; the audit regenerates inputs until it is large enough.
pub fn implicit_margin<T: Element>(
    x: &Tensor<T>,
    w: &Tensor<T>,
    lipschitz: f64,
    cfg: &CscConfig,
) -> Result<f64, SparseError> {
    let op = Conv::new(w.clone(), cfg.conv, [x.dim(2), x.dim(3)]);
    let (z, _) = fista(&op, x, lipschitz, &cfg.fista)?;
    let z = polish(&op, x, z, &cfg.fista)?;
    let corr = op.adjoint(&x.sub(&op.apply(&z))).to_vec();
    let lam = cfg.fista.lambda;
    Ok(z.to_vec().iter().zip(corr).fold(f64::INFINITY, |m, (&zj, cj)| {
        let (zj, cj) = (zj.as_f64(), cj.as_f64());
        m.min(if zj != 0.0 {
            zj.abs()
        } else if cfg.fista.prox == Prox::NonNegative {
            lam - cj
        } else {
            lam - cj.abs()
        })
    }))
}

#[cfg(test)]
mod cg_tests;
