//! FISTA (Beck & Teboulle 2009) for the lasso `min_z λ‖z‖₁ + ½‖x − A z‖²` (or with `z ≥ 0`)
//! on a linear operator `A`, docs/math.md §2. This module is the solver on plain tensors (no
//! tape): the CSC layer ([`crate::csc`]) records the same iterations on the tape when it is
//! unrolled, and calls this solver when its gradient is implicit.
//!
//! ```text
//! z_0 = 0, y_1 = z_0, t_1 = 1
//! z_k     = prox_{sλ}( y_k − s·Aᵀ(A y_k − x) )          s = step_scale / L
//! t_{k+1} = (1 + √(1 + 4 t_k²)) / 2
//! y_{k+1} = z_k + ((t_k − 1)/t_{k+1})·(z_k − z_{k−1})
//! ```
//!
//! `prox` is soft-thresholding `S_τ` ([`Prox::Signed`]) or `max(v − τ, 0)`
//! ([`Prox::NonNegative`], the SDNet configuration: soft-threshold followed by ReLU). The
//! SDNet code's momentum ([`Momentum::Sdnet`]) takes the gradient at `z_k` instead of `y_k`
//! from the third iteration on: `z_{k+1} = prox(y_{k+1} + s·Aᵀ(x − A z_k))`; at T = 2 both
//! coincide. `L ≈ ‖AᵀA‖₂` comes from [`lipschitz`], the SDNet power iteration, and is a
//! constant of the solve (no gradient flows through it).
//!
//! Every tensor here is a batch: the first axis indexes independent problems (signals), so a
//! batch of N problems is solved at once with batched operators; objectives are per batch.

use engine::{Element, Rng, Tensor};

use crate::error::SparseError;

/// A linear operator `A` from code space to signal space and its adjoint `Aᵀ`, on batches
/// (axis 0). `⟨A z, x⟩ = ⟨z, Aᵀ x⟩` for every `z` and `x` of the right shapes.
pub trait LinearOperator<T: Element> {
    /// `A z`.
    fn apply(&self, z: &Tensor<T>) -> Tensor<T>;
    /// `Aᵀ x`.
    fn adjoint(&self, x: &Tensor<T>) -> Tensor<T>;
    /// The code shape for a signal batch of shape `x_shape`.
    fn code_shape(&self, x_shape: &[usize]) -> Vec<usize>;
}

/// A dense dictionary `D [m, k]` (atoms as columns) on row batches: `z [N, k] ↦ z·Dᵀ [N, m]`,
/// `x [N, m] ↦ x·D [N, k]`.
pub struct Dense<T: Element> {
    pub d: Tensor<T>,
}

impl<T: Element> LinearOperator<T> for Dense<T> {
    fn apply(&self, z: &Tensor<T>) -> Tensor<T> {
        z.matmul(&self.d.t())
    }
    fn adjoint(&self, x: &Tensor<T>) -> Tensor<T> {
        x.matmul(&self.d)
    }
    fn code_shape(&self, x_shape: &[usize]) -> Vec<usize> {
        vec![x_shape[0], self.d.dim(1)]
    }
}

/// The proximal step of the ℓ1 penalty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prox {
    /// `S_τ(v) = sign(v)·max(|v| − τ, 0)`.
    Signed,
    /// `max(v − τ, 0)`: the prox of `λ‖z‖₁ + ι(z ≥ 0)` (SDNet's soft-threshold then ReLU).
    NonNegative,
}

impl Prox {
    /// The prox applied to a tensor with threshold `tau`.
    pub fn apply<T: Element>(self, v: &Tensor<T>, tau: f64) -> Tensor<T> {
        match self {
            Prox::Signed => v.soft_threshold(tau),
            Prox::NonNegative => v.sub_scalar(tau).relu(),
        }
    }
}

/// Which momentum sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Momentum {
    /// Beck & Teboulle's FISTA (the gradient at the extrapolated point `y_k`).
    BeckTeboulle,
    /// The SDNet code's variant (`csc_layer.py`): the gradient at `z_k`, the momentum term
    /// added afterwards. Identical to Beck–Teboulle for T ≤ 2.
    Sdnet,
}

/// Options of [`fista`].
#[derive(Clone, Debug, PartialEq)]
pub struct FistaConfig {
    /// The ℓ1 weight λ (≥ 0).
    pub lambda: f64,
    /// Iterations T.
    pub iters: usize,
    /// The step is `step_scale / L`: 1 (Beck–Teboulle) or 0.9 (SDNet).
    pub step_scale: f64,
    pub prox: Prox,
    pub momentum: Momentum,
    /// Record the objective of every iterate in the trace (one extra `A z` per iteration).
    pub trace: bool,
}

impl FistaConfig {
    /// λ, T iterations, step 1/L, signed prox, Beck–Teboulle momentum, no trace.
    pub fn new(lambda: f64, iters: usize) -> FistaConfig {
        FistaConfig {
            lambda,
            iters,
            step_scale: 1.0,
            prox: Prox::Signed,
            momentum: Momentum::BeckTeboulle,
            trace: false,
        }
    }
    /// The SDNet configuration: non-negative prox, step 0.9/L, SDNet momentum.
    pub fn sdnet(lambda: f64, iters: usize) -> FistaConfig {
        FistaConfig {
            step_scale: 0.9,
            prox: Prox::NonNegative,
            momentum: Momentum::Sdnet,
            ..FistaConfig::new(lambda, iters)
        }
    }
    pub fn step_scale(self, s: f64) -> Self {
        FistaConfig { step_scale: s, ..self }
    }
    pub fn prox(self, prox: Prox) -> Self {
        FistaConfig { prox, ..self }
    }
    pub fn momentum(self, momentum: Momentum) -> Self {
        FistaConfig { momentum, ..self }
    }
    pub fn trace(self, on: bool) -> Self {
        FistaConfig { trace: on, ..self }
    }

    /// Checks λ, the step scale and the Lipschitz constant.
    pub(crate) fn validate(&self, op: &'static str, lipschitz: f64) -> Result<(), SparseError> {
        if !(self.lambda >= 0.0 && self.lambda.is_finite()) {
            return Err(SparseError::InvalidConfig { op, what: "lambda", value: self.lambda });
        }
        if !(self.step_scale > 0.0 && self.step_scale.is_finite()) {
            return Err(SparseError::InvalidConfig { op, what: "step_scale", value: self.step_scale });
        }
        if !(lipschitz > 0.0 && lipschitz.is_finite()) {
            return Err(SparseError::BadStep { op, lipschitz });
        }
        Ok(())
    }
}

/// What a FISTA run did: the objective `λ‖z_k‖₁ + ½‖x − A z_k‖²` (summed over the batch) of
/// every iterate and the kink margin when traced, and `‖z_k − z_{k−1}‖ / max(‖z_k‖, tiny)` of
/// every iteration.
#[derive(Clone, Debug, PartialEq)]
pub struct FistaTrace {
    pub objective: Vec<f64>,
    pub rel_change: Vec<f64>,
    /// When traced: the smallest distance of any prox argument to the prox's kink (`|v| = τ`,
    /// or `v = τ` for the non-negative prox) over all iterations. The unrolled map is smooth
    /// within this distance, which gradient checks need.
    pub kink_margin: f64,
}

impl Default for FistaTrace {
    fn default() -> Self {
        FistaTrace { objective: vec![], rel_change: vec![], kink_margin: f64::INFINITY }
    }
}

/// The distance of the entries of `v` to the kink of `prox` at threshold `tau`.
fn kink_distance<T: Element>(prox: Prox, v: &Tensor<T>, tau: f64) -> f64 {
    v.to_vec().iter().fold(f64::INFINITY, |m, &x| {
        let x = x.as_f64();
        m.min(match prox {
            Prox::Signed => (x.abs() - tau).abs(),
            Prox::NonNegative => (x - tau).abs(),
        })
    })
}

/// The lasso objective `λ‖z‖₁ + ½‖x − A z‖²`, summed over the batch.
pub fn objective<T: Element>(op: &impl LinearOperator<T>, x: &Tensor<T>, z: &Tensor<T>, lambda: f64) -> f64 {
    let r = x.sub(&op.apply(z));
    let fit: f64 = r.to_vec().iter().map(|v| v.as_f64() * v.as_f64()).sum();
    let l1: f64 = z.to_vec().iter().map(|v| v.as_f64().abs()).sum();
    0.5 * fit + lambda * l1
}

fn norm<T: Element>(t: &Tensor<T>) -> f64 {
    t.to_vec().iter().map(|v| v.as_f64() * v.as_f64()).sum::<f64>().sqrt()
}

/// `T = cfg.iters` FISTA iterations from `z_0 = 0` with step `cfg.step_scale / lipschitz`.
///
/// Works in place: three code-sized buffers (`z_k`, `y_k` and the new iterate) besides what
/// the operator allocates for `A y` and `Aᵀr`.
///
/// # Errors
/// `SparseError::InvalidConfig` for a negative or non-finite λ or step scale,
/// `SparseError::BadStep` if `lipschitz` is not finite and positive,
/// `SparseError::NonFinite` naming the first non-finite entry of `x`.
pub fn fista<T: Element>(
    op: &impl LinearOperator<T>,
    x: &Tensor<T>,
    lipschitz: f64,
    cfg: &FistaConfig,
) -> Result<(Tensor<T>, FistaTrace), SparseError> {
    cfg.validate("fista", lipschitz)?;
    check_finite("fista", "x", x)?;
    let x = x.contiguous();
    let xs = x.as_slice().expect("contiguous");
    let s = cfg.step_scale / lipschitz;
    let tau = s * cfg.lambda;
    let (st, tt) = (T::of(s), T::of(tau));
    let mut trace = FistaTrace::default();
    let mut z = Tensor::zeros(&op.code_shape(x.shape()));
    let mut y = z.clone();
    let mut t = 1.0f64;
    for k in 1..=cfg.iters {
        // The point the gradient is taken at: y_k (Beck–Teboulle), or z_{k−1} (SDNet, k ≥ 3).
        let at = match cfg.momentum {
            Momentum::Sdnet if k >= 3 => &z,
            _ => &y,
        };
        let mut r = op.apply(at);
        r.make_mut().iter_mut().zip(xs).for_each(|(a, &b)| *a -= b); // A·at − x
                                                                     // v = y − s·Aᵀ(A·at − x), then the prox, in the gradient's buffer.
        let mut v = op.adjoint(&r);
        drop(r);
        let vs = v.make_mut();
        vs.iter_mut().zip(y.as_slice().expect("contiguous")).for_each(|(g, &yv)| *g = yv - st * *g);
        if cfg.trace {
            trace.kink_margin = trace.kink_margin.min(kink_distance(cfg.prox, &v, tau));
        }
        let vs = v.make_mut();
        match cfg.prox {
            Prox::Signed => vs.iter_mut().for_each(|a| *a = engine::kernels::elementwise::soft_threshold(*a, tt)),
            Prox::NonNegative => vs.iter_mut().for_each(|a| *a = (*a - tt).max(T::zero())),
        }
        let z_new = v;
        let t_next = (1.0 + (1.0 + 4.0 * t * t).sqrt()) / 2.0;
        let c = T::of((t - 1.0) / t_next);
        // ‖z_k − z_{k−1}‖ and y_{k+1} = z_k + c·(z_k − z_{k−1}), written over z_{k−1}.
        let (mut dd, mut nn) = (0.0f64, 0.0f64);
        let zn = z_new.as_slice().expect("contiguous");
        for (o, &n) in z.make_mut().iter_mut().zip(zn) {
            let d = n - *o;
            dd += d.as_f64() * d.as_f64();
            nn += n.as_f64() * n.as_f64();
            *o = n + c * d;
        }
        trace.rel_change.push(dd.sqrt() / nn.sqrt().max(f64::MIN_POSITIVE));
        y = std::mem::replace(&mut z, z_new);
        t = t_next;
        if cfg.trace {
            trace.objective.push(objective(op, &x, &z, cfg.lambda));
        }
    }
    Ok((z, trace))
}

/// The first non-finite entry of `t`, as an error naming `what` and the flat index.
pub(crate) fn check_finite<T: Element>(op: &'static str, what: &'static str, t: &Tensor<T>) -> Result<(), SparseError> {
    let v = t.to_vec();
    match v.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(i) => {
            let cols = t.shape().last().copied().unwrap_or(1).max(1);
            Err(SparseError::NonFinite { op, what, row: i / cols, col: i % cols, value: v[i].as_f64() })
        }
    }
}

/// Options of [`lipschitz`] (the SDNet code's power iteration).
#[derive(Clone, Debug)]
pub struct PowerConfig {
    /// At most this many iterations (SDNet: 50).
    pub max_iter: usize,
    /// Stop when `‖v_{k+1} − v_k‖² ≤ tol` for the unit iterates (SDNet: 1e-5).
    pub tol: f64,
    /// Seed of the random start when there is no warm start.
    pub seed: u64,
}

impl Default for PowerConfig {
    fn default() -> Self {
        PowerConfig { max_iter: 50, tol: 1e-5, seed: 0x001f_157a }
    }
}

/// The estimate of `L = ‖AᵀA‖₂` and the unit vector it was taken at.
#[derive(Clone, Debug)]
pub struct Lipschitz<T: Element> {
    /// `‖A v‖²` at the final unit vector `v` (no safety factor).
    pub value: f64,
    /// The final unit vector `v` (code shape with batch 1): the warm start of the next call.
    pub vector: Tensor<T>,
    pub iterations: usize,
    /// `‖v_{k+1} − v_k‖²` of the last iteration.
    pub change: f64,
}

/// `L ≈ ‖AᵀA‖₂` by the SDNet code's power iteration on `v ↦ Aᵀ(A v)` over one code of shape
/// `code_shape` (batch 1): `v ← normalize(Aᵀ(A v))` until `‖v_new − v‖² ≤ tol` or `max_iter`
/// iterations, then `L = ‖A v‖²` (`vᵀAᵀAv`, v unit). `warm` is the previous call's vector
/// (SDNet recomputes L before every batch from the last vector); otherwise a seeded normal
/// start.
///
/// # Errors
/// `SparseError::NonFinite` if the operator produces a non-finite value, `BadStep` if the
/// estimate is zero (a zero dictionary).
pub fn lipschitz<T: Element>(
    op: &impl LinearOperator<T>,
    code_shape: &[usize],
    warm: Option<&Tensor<T>>,
    cfg: &PowerConfig,
) -> Result<Lipschitz<T>, SparseError> {
    let unit = |t: &Tensor<T>| {
        let n = norm(t);
        if n > 0.0 {
            t.div_scalar(n)
        } else {
            t.clone()
        }
    };
    let mut v = match warm {
        Some(w) if w.shape() == code_shape => w.clone(),
        _ => unit(&Tensor::randn(code_shape, &mut Rng::new(cfg.seed))),
    };
    let (mut change, mut k) = (f64::INFINITY, 0);
    while k < cfg.max_iter && change > cfg.tol {
        let w = unit(&op.adjoint(&op.apply(&v)));
        check_finite("lipschitz", "power iterate", &w)?;
        change = w.sub(&v).to_vec().iter().map(|d| d.as_f64() * d.as_f64()).sum();
        v = w;
        k += 1;
    }
    let av = op.apply(&v);
    let value: f64 = av.to_vec().iter().map(|d| d.as_f64() * d.as_f64()).sum();
    if !value.is_finite() {
        return Err(SparseError::NonFinite { op: "lipschitz", what: "estimate", row: 0, col: 0, value });
    }
    if value <= 0.0 {
        return Err(SparseError::BadStep { op: "lipschitz", lipschitz: value });
    }
    Ok(Lipschitz { value, vector: v, iterations: k, change })
}
