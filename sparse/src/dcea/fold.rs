//! Folding the step into the filters: the authors' power iteration on `M(v) = Hᵀ f⁻¹(H v)`
//! (module docs of [`super`]).

use engine::linalg::{power_iteration, PowerOptions};
use engine::{Conv2dParams, ConvTranspose2dParams, Element, Tensor};

use super::config::{DceaConfig, PowerFold};
use crate::error::SparseError;

/// `L = factor × ‖M(u)‖` ([`power_estimate`] from the fold's seeded start).
pub(super) fn fold_lipschitz<T: Element>(
    h: &Tensor<T>,
    cfg: &DceaConfig,
    fold: &PowerFold,
) -> Result<f64, SparseError> {
    let l = fold.factor * power_estimate(h, cfg, fold, None)?;
    if !(l.is_finite() && l > 0.0) {
        return Err(SparseError::BadStep { op: "dcea", lipschitz: l });
    }
    Ok(l)
}

/// The authors' power iteration on the nonlinear map `M(v) = Hᵀ f⁻¹(H v)` (module docs):
/// `fold.iters` times `v ← v/‖v‖, v ← M(v)`, returning the final `‖v‖` = `‖M(u)‖` at the last
/// unit iterate `u` (no factor applied). The codes are `[1, K, ⌊(image − k)/s⌋ + 1, …]`;
/// `init` (that many entries, any nonzero scale) replaces the standard-normal start drawn from
/// `fold.seed`.
///
/// # Errors
/// The power iteration's (an operator value that is not finite, naming the entry and the
/// iteration), as [`SparseError::Engine`].
/// **Panics** if `fold.image` is smaller than the kernel or `init` has the wrong length.
#[track_caller]
pub fn power_estimate<T: Element>(
    h: &Tensor<T>,
    cfg: &DceaConfig,
    fold: &PowerFold,
    init: Option<&[T]>,
) -> Result<f64, SparseError> {
    let s = cfg.stride;
    let [kh, kw] = cfg.kernel;
    assert!(
        fold.image[0] >= kh && fold.image[1] >= kw,
        "dcea: the power iteration's image {:?} is smaller than the kernel {:?}",
        fold.image,
        cfg.kernel
    );
    // The authors' int((size − k)/s + 1): the floor.
    let code = [(fold.image[0] - kh) / s + 1, (fold.image[1] - kw) / s + 1];
    let shape = [1, cfg.filters, code[0], code[1]];
    let n = shape.iter().product();
    let family = cfg.family;
    let mut last_norm = 0.0f64;
    let apply = |v: &[T], w: &mut [T]| {
        let x = Tensor::from_vec(v.to_vec(), &shape);
        let eta = x.conv_transpose2d(h, None, ConvTranspose2dParams::new().stride(s));
        let out = family.mean_tensor(&eta).conv2d(h, None, Conv2dParams::new().stride(s)).contiguous();
        w.copy_from_slice(out.as_slice().expect("contiguous"));
        last_norm = w.iter().map(|x| x.as_f64() * x.as_f64()).sum::<f64>().sqrt();
    };
    // tol = 0: the relative change is never below 0, so exactly `iters` applications.
    let opts = PowerOptions { max_iter: fold.iters, tol: 0.0, init, seed: fold.seed };
    power_iteration(n, apply, opts)?;
    Ok(last_norm)
}
