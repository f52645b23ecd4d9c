//! The audit cases of the `softmax` op family (`autograd::ops::softmax`).

use autograd::audit::families::*;
use autograd::audit::inputs::*;
use autograd::audit::AuditCase;
use autograd::Reduction;
use autograd::Var;

/// Softmax (`log = false`) or log-softmax along `axis`.
fn softmax_along<'t>(x: &Var<'t, f64>, axis: usize, log: bool) -> Var<'t, f64> {
    if log {
        x.log_softmax(axis)
    } else {
        x.softmax(axis)
    }
}

pub(crate) fn all(out: &mut Vec<AuditCase>) {
    for (op, log) in [("softmax", false), ("log_softmax", true)] {
        let mut rng = rng_for(op, 0);
        let s3 = dims(&mut rng, 3, 2, 5);
        for axis in 0..3 {
            let inputs = layouts(&[View::Contiguous, View::Permuted], &s3, Dom::Any, &mut rng, &format!("axis {axis}"));
            single(out, op, inputs, move |x| softmax_along(x, axis, log));
        }
        let s2 = [s3[0], s3[1]];
        let inputs = layouts(&[View::Transposed, View::Sliced, View::Broadcast], &s2, Dom::Any, &mut rng, "axis 1");
        single(out, op, inputs, move |x| softmax_along(x, 1, log));
    }

    let mut rng = rng_for("cross_entropy", 0);
    let d = dims(&mut rng, 2, 2, 6);
    let (n, c) = (d[0] + 1, d[1] + 1);
    let labels: Vec<usize> = (0..n).map(|_| rng.below(c as u64) as usize).collect();
    for (reduction, name) in [(Reduction::Mean, "mean"), (Reduction::Sum, "sum")] {
        let inputs = layouts(&ALL2, &[n, c], Dom::Any, &mut rng, &format!("labels {labels:?}, reduction {name}"));
        let l = labels.clone();
        single(out, "cross_entropy", inputs, move |x| x.cross_entropy(&l, reduction));
    }
}
