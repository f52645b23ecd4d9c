//! The audit cases of the `shape` op family (`autograd::ops::shape`).

use autograd::audit::families::*;
use autograd::audit::inputs::*;
use autograd::audit::AuditCase;

pub(crate) fn all(out: &mut Vec<AuditCase>) {
    let mut rng = rng_for("shape", 0);
    let s3 = dims(&mut rng, 3, 2, 4);
    let s2 = dims(&mut rng, 2, 2, 5);
    let (a, b, c) = (s3[0], s3[1], s3[2]);

    let to = vec![b, a * c];
    single(out, "reshape", layouts(&ALL3, &s3, Dom::Any, &mut rng, &format!("to {to:?}")), move |x| x.reshape(&to));
    single(out, "permute", layouts(&ALL3, &s3, Dom::Any, &mut rng, "perm [2, 0, 1]"), |x| x.permute(&[2, 0, 1]));
    single(out, "transpose", layouts(&ALL3, &s3, Dom::Any, &mut rng, "axes 0, 2"), |x| x.transpose(0, 2));
    single(out, "t", layouts(&ALL2, &s2, Dom::Any, &mut rng, ""), |x| x.t());
    single(
        out,
        "narrow",
        layouts(&ALL3, &[a, b + 2, c], Dom::Any, &mut rng, &format!("axis 1, start 1, len {b}")),
        move |x| x.narrow(1, 1, b),
    );
    single(
        out,
        "slice",
        layouts(&ALL3, &[a, 2 * b + 1, c], Dom::Any, &mut rng, &format!("axis 1, 1..{}, step 2", 2 * b + 1)),
        move |x| x.slice(1, 1, 2 * b + 1, 2),
    );
    single(
        out,
        "slice",
        layouts(&ALL2, &[3 * a + 2, c], Dom::Any, &mut rng, &format!("axis 0, 0..{}, step 3", 3 * a + 2)),
        move |x| x.slice(0, 0, 3 * a + 2, 3),
    );
    single(out, "select", layouts(&ALL3, &s3, Dom::Any, &mut rng, "axis 1, index 1"), |x| x.select(1, 1));
    let target = vec![a, b, c];
    let tb = target.clone();
    let p = format!("to {target:?}");
    single(out, "broadcast_to", layouts(&ALL2, &[b, 1], Dom::Any, &mut rng, &p), move |x| x.broadcast_to(&tb));
    let tb = target.clone();
    single(out, "broadcast_to", layouts(&[View::Transposed], &[b, c], Dom::Any, &mut rng, &p), move |x| {
        x.broadcast_to(&tb)
    });
    let tb = target.clone();
    single(out, "expand", layouts(&ALL3, &[a, 1, c], Dom::Any, &mut rng, &p), move |x| x.expand(&tb));
    single(out, "expand", layouts(&[View::Sliced], &[1, c], Dom::Any, &mut rng, &p), move |x| x.expand(&target));
    single(out, "unsqueeze", layouts(&ALL2, &s2, Dom::Any, &mut rng, "axis 1"), |x| x.unsqueeze(1));
    single(out, "squeeze", layouts(&ALL3, &[a, 1, c], Dom::Any, &mut rng, "axis 1"), |x| x.squeeze(1));
    single(out, "flatten", layouts(&ALL3, &s3, Dom::Any, &mut rng, "axes 1..=2"), |x| x.flatten(1, 2));
    single(out, "contiguous", layouts(&ALL3, &s3, Dom::Any, &mut rng, ""), |x| x.contiguous());
    single(out, "diagonal", layouts(&ALL2, &[b + 1, b + 1], Dom::Any, &mut rng, ""), |x| x.diagonal());
    single(out, "diagonal", layouts(&[View::Contiguous, View::Sliced], &[b + 1, b + 3], Dom::Any, &mut rng, ""), |x| {
        x.diagonal()
    });
    single(out, "diagonal", layouts(&[View::Transposed], &[b + 3, b + 1], Dom::Any, &mut rng, ""), |x| x.diagonal());
}
