//! What the gradient audit of this crate's rules needs from the crate: the kink margin of its
//! inputs and the names of the rules it records. The cases themselves live in the
//! `sparsegrad-audit` crate, which `sparsegrad gradcheck` and the test suite run.
//!
//! The coding maps are piecewise linear in their inputs (the active set of every coded vector
//! is fixed on each piece), so a central difference is only valid away from the pieces'
//! boundaries. Every case is therefore built on inputs whose [`kink_margin`] is at least
//! [`KINK_MARGIN`] = 1e-4 (docs/math.md §1: no inactive correlation within 1e-4 of λ1, no active
//! coefficient within 1e-4 of zero); an input that falls short is *regenerated* from the next
//! draw of the same seeded generator, never checked with looser tolerances. Every case uses
//! the default checker options (eps 1e-6, atol 1e-7, rtol 1e-5).

use engine::Tensor;

use crate::lars::{lars_en, LarsConfig};

/// The smallest distance to a kink of the inputs of a coding case.
pub const KINK_MARGIN: f64 = 1e-4;

/// Draws inputs with `draw` until `margin_of` them is at least [`KINK_MARGIN`].
/// **Panics** after 200 draws (the generator, not the rule, would be broken).
pub fn regenerate<I>(op: &str, mut draw: impl FnMut() -> I, margin_of: impl Fn(&I) -> f64) -> I {
    for _ in 0..200 {
        let candidate = draw();
        if margin_of(&candidate) >= KINK_MARGIN {
            return candidate;
        }
    }
    panic!("{op}: no input with a kink margin of {KINK_MARGIN} in 200 draws");
}

/// How far the coding problem `(d, x)` is from a change of any active set: the minimum over
/// the coded rows of `x` of `min_{j ∈ Λ} |α*_j|` and `min_{j ∉ Λ} (λ1 − |d_jᵀr − λ2·α*_j|)`
/// (with `r = x − Dα*`; for non-negative codes the correlation itself, not its magnitude).
/// A path stopped by the cap on active atoms, or with atoms skipped as dependent, has margin 0.
///
/// # Errors
/// Those of [`lars_en`].
pub fn kink_margin(d: &Tensor<f64>, x: &Tensor<f64>, cfg: &LarsConfig) -> Result<f64, crate::SparseError> {
    let sol = lars_en(d, x, cfg)?;
    let a = &sol.codes;
    let r = x.sub(&a.matmul(&d.t()));
    let c = r.matmul(d).sub(&a.mul_scalar(cfg.lambda2));
    let (n, k) = (a.dim(0), a.dim(1));
    let (av, cv) = (a.contiguous().into_vec(), c.contiguous().into_vec());
    let mut margin = f64::INFINITY;
    for (s, path) in sol.paths.iter().enumerate().take(n) {
        if path.hit_cap || !path.skipped.is_empty() {
            return Ok(0.0);
        }
        for j in 0..k {
            let (aj, cj) = (av[s * k + j], cv[s * k + j]);
            let m = if path.active.contains(&j) {
                aj.abs()
            } else if cfg.positive {
                cfg.lambda1 - cj
            } else {
                cfg.lambda1 - cj.abs()
            };
            margin = margin.min(m);
        }
    }
    Ok(margin)
}

/// The names of the rules this crate records on the tape (the coverage test checks the audit
/// against them, as `autograd::ops::RULES` for the built-ins). The `dct_conv` cases are a
/// composite label: the layer records `conv2d` and `relu`, no rule of its own.
pub const RULES: &[&str] = &[
    "sf",
    "sf_loss",
    "csf",
    "csf_loss",
    "csc_implicit",
    "gaussian_nll",
    "binomial_nll",
    "poisson_nll",
    "dcea_iteration",
    "dcea_decode",
    "dcea_threshold",
    "sc_loss",
];
