//! The spatial-contrasting loss built from tape ops only (see the module docs of [`super`]).

use autograd::Var;
use engine::Element;

use super::{check_features, Distance, ScConfig};

/// `q_ij = ‖a_i − p_j‖²` `[N, N]` from tape ops, in the Gram form
/// `Σ_k a_ik² + Σ_k p_jk² − 2·(A·Pᵀ)_ij` (what PyTorch and JAX users write).
/// **Panics** unless `a` and `p` are matrices with the same number of columns.
#[track_caller]
pub fn pairwise_sq_dist<'t, T: Element>(a: &Var<'t, T>, p: &Var<'t, T>) -> Var<'t, T> {
    let (sa, sp) = (a.shape(), p.shape());
    assert!(
        sa.len() == 2 && sp.len() == 2 && sa[1] == sp[1],
        "pairwise_sq_dist: features must be [N, d] and [M, d], got {sa:?} and {sp:?}"
    );
    let na = a.square().sum(&[1], true); // [N, 1]
    let np = p.square().sum(&[1], false); // [M], broadcast over the rows
    na.add(&np).sub(&a.matmul(&p.t()).mul_scalar(2.0))
}

/// The spatial-contrasting loss built from tape ops only (see the module docs): the distances
/// of [`pairwise_sq_dist`] (clamped at 0 and square-rooted for [`Distance::Euclidean`]), then
/// `−mean(diagonal(log_softmax(−dist, 1)))`, averaged with the same down the columns when
/// symmetric. Rank-0 output. It needs no rule of its own; [`sc_loss`] is checked against it.
///
/// **Panics** unless `a` and `p` are both `[N, d]` with `N ≥ 1`.
#[track_caller]
pub fn sc_loss_composed<'t, T: Element>(a: &Var<'t, T>, p: &Var<'t, T>, cfg: ScConfig) -> Var<'t, T> {
    check_features("sc_loss_composed", &a.shape(), &p.shape());
    let q = pairwise_sq_dist(a, p);
    let dist = match cfg.distance {
        Distance::Squared => q,
        Distance::Euclidean => q.clamp(0.0, f64::INFINITY).sqrt(),
    };
    let logits = dist.neg();
    let rows = logits.log_softmax(1).diagonal().mean_all().neg();
    if !cfg.symmetric {
        return rows;
    }
    let cols = logits.log_softmax(0).diagonal().mean_all().neg();
    rows.add(&cols).mul_scalar(0.5)
}
