//! Power iteration for the largest eigenvalue (spectral norm) of an operator given as a closure.

use crate::{Element, Error, Result, Rng};

/// Options of [`power_iteration`].
#[derive(Clone, Debug)]
pub struct PowerOptions<'a, T> {
    /// Most operator applications (default 50, the SDNet code's).
    pub max_iter: usize,
    /// Stop when the relative change of the estimate, `|ρ_k − ρ_{k−1}| / |ρ_k|`, is below this
    /// (default 1e-5).
    pub tol: f64,
    /// Start vector (any nonzero scale; normalised), typically the previous call's
    /// [`PowerResult::vector`]. `None`, or a zero vector: a random start drawn from `seed`.
    pub init: Option<&'a [T]>,
    /// Seed of the random (standard normal) start vector.
    pub seed: u64,
}

impl<T> Default for PowerOptions<'_, T> {
    fn default() -> Self {
        PowerOptions { max_iter: 50, tol: 1e-5, init: None, seed: 0 }
    }
}

/// What [`power_iteration`] found.
#[derive(Clone, Debug, PartialEq)]
pub struct PowerResult<T> {
    /// The estimate of ‖M‖₂: the Rayleigh quotient `vᵀ·M·v` at the last unit iterate `v`.
    pub value: T,
    /// `M·v / ‖M·v‖` from the last iteration: a unit vector, one step further than the `v`
    /// behind `value`, ready as the next call's warm start.
    pub vector: Vec<T>,
    /// Operator applications made.
    pub iterations: usize,
    /// Relative change of the estimate in the last iteration (∞ after a single one).
    pub rel_change: f64,
    /// Whether `rel_change < tol` was reached within `max_iter`.
    pub converged: bool,
}

/// Power iteration for the largest eigenvalue of a symmetric positive semidefinite operator
/// `M` on `Rⁿ`, given as a closure `apply(v, w)` that writes `w = M·v` — which for PSD `M`
/// equals its spectral norm ‖M‖₂. For `M = AᵀA` (pass `v ↦ Aᵀ(A·v)`) that is `‖A‖₂²`, the
/// Lipschitz constant of FISTA.
///
/// Iteration (the SDNet convention, docs/math.md §2): `v` unit, `w = M·v`, estimate
/// `ρ = vᵀ·w = vᵀ·M·v` — for `M = AᵀA` this is `‖A·v‖²` —, then `v ← w / ‖w‖`. Stops when
/// `|ρ_k − ρ_{k−1}| / |ρ_k| < tol` or after `max_iter` applications. `ρ` is a lower bound of
/// ‖M‖₂ for PSD `M` (no safety factor is applied) and converges like `(λ₂/λ₁)^{2k}`.
///
/// If `M·v = 0` (M = 0, or a start vector in the null space of M) the estimate is 0 and the
/// iteration stops as converged; `vector` is then the start vector. `n = 0` gives value 0
/// after no iterations.
///
/// # Errors
/// `Error::Numerical` if the operator writes a non-finite value (naming the entry and the
/// iteration), or if `init` contains one.
/// **Panics** if `init` is given with a length other than `n`.
#[track_caller]
pub fn power_iteration<T: Element>(
    n: usize,
    mut apply: impl FnMut(&[T], &mut [T]),
    opts: PowerOptions<'_, T>,
) -> Result<PowerResult<T>> {
    const OP: &str = "power_iteration";
    let mut v: Vec<T> = match opts.init {
        Some(init) => {
            assert_eq!(init.len(), n, "power_iteration: init has {} elements but n = {n}", init.len());
            if let Some(i) = init.iter().position(|x| !x.is_finite()) {
                return Err(Error::Numerical { op: OP, msg: format!("init[{i}] is {:e}", init[i]) });
            }
            init.to_vec()
        }
        None => Vec::new(),
    };
    if n == 0 {
        return Ok(PowerResult { value: T::zero(), vector: v, iterations: 0, rel_change: 0.0, converged: true });
    }
    if norm(&v) == T::zero() {
        let mut rng = Rng::new(opts.seed);
        v = (0..n).map(|_| T::of(rng.normal())).collect();
    }
    let nv = norm(&v);
    v.iter_mut().for_each(|x| *x /= nv);
    let mut w = vec![T::zero(); n];
    let mut prev: Option<f64> = None;
    let mut result = PowerResult {
        value: T::zero(),
        vector: Vec::new(),
        iterations: 0,
        rel_change: f64::INFINITY,
        converged: false,
    };
    for it in 1..=opts.max_iter {
        apply(&v, &mut w);
        if let Some(i) = w.iter().position(|x| !x.is_finite()) {
            return Err(Error::Numerical {
                op: OP,
                msg: format!("the operator returned {:e} at entry {i} in iteration {it}", w[i]),
            });
        }
        let rho: T = v.iter().zip(&w).map(|(a, b)| *a * *b).sum();
        let nw = norm(&w);
        result.value = rho;
        result.iterations = it;
        if nw == T::zero() {
            result.rel_change = 0.0;
            result.converged = true;
            break;
        }
        let r = rho.as_f64();
        result.rel_change = match prev {
            None => f64::INFINITY,
            Some(p) if r == p => 0.0,
            Some(p) => (r - p).abs() / r.abs(),
        };
        prev = Some(r);
        for (vi, wi) in v.iter_mut().zip(&w) {
            *vi = *wi / nw;
        }
        if result.rel_change < opts.tol {
            result.converged = true;
            break;
        }
    }
    result.vector = v;
    Ok(result)
}

/// Euclidean norm, scaled against overflow for large entries.
fn norm<T: Element>(v: &[T]) -> T {
    let amax = v.iter().fold(T::zero(), |m, x| m.max(x.abs()));
    if amax == T::zero() || !amax.is_finite() {
        return amax;
    }
    let s: T = v.iter().map(|x| (*x / amax) * (*x / amax)).sum();
    amax * s.sqrt()
}
