//! The audit cases of the `reduce` op family (`autograd::ops::reduce`).

use autograd::audit::families::*;
use autograd::audit::inputs::*;
use autograd::audit::AuditCase;

pub(crate) fn all(out: &mut Vec<AuditCase>) {
    reduction(out, "sum", Dom::Any, |x, a, k| x.sum(a, k));
    reduction(out, "mean", Dom::Any, |x, a, k| x.mean(a, k));
    reduction(out, "max", Dom::Distinct, |x, a, k| x.max(a, k));
    reduction(out, "min", Dom::Distinct, |x, a, k| x.min(a, k));
    reduction(out, "logsumexp", Dom::Any, |x, a, k| x.logsumexp(a, k));
    reduction(out, "norm_l1", Dom::Away(&[0.0]), |x, a, k| x.norm_l1(a, k));
    reduction(out, "norm_l2", Dom::Any, |x, a, k| x.norm_l2(a, k));
    total(out, "sum_all", Dom::Any, |x| x.sum_all());
    total(out, "mean_all", Dom::Any, |x| x.mean_all());
}
