//! The audit cases of the `norm` op family (`autograd::ops::norm`).

use autograd::audit::families::*;
use autograd::audit::inputs::*;
use autograd::audit::AuditCase;

pub(crate) fn all(out: &mut Vec<AuditCase>) {
    let mut rng = rng_for("batch_norm", 0);
    let d = dims(&mut rng, 4, 2, 4);
    let mut push = |x: Input, rng: &mut engine::Rng| {
        let c = x.value.dim(1);
        let w = input(View::Contiguous, &[c], Dom::Range(0.5, 1.5), rng, "");
        let b = input(View::Contiguous, &[c], Dom::Any, rng, "");
        multi(out, "batch_norm", "eps 1e-5", vec![x, w, b], |v| v[0].batch_norm(&v[1], &v[2], 1e-5).0);
    };
    // [N, C, H, W] in every layout (a broadcast input repeats the batch along N).
    for view in ALL3 {
        let x = input(view, &d, Dom::Any, &mut rng, "");
        push(x, &mut rng);
    }
    // [N, C] and [N, C, L]; one value per channel (σ² = 0: the output is β).
    let x = input(View::Transposed, &[d[0] + 2, d[1]], Dom::Any, &mut rng, "");
    push(x, &mut rng);
    let x = input(View::Permuted, &d[..3], Dom::Any, &mut rng, "");
    push(x, &mut rng);
    let x = input(View::Contiguous, &[1, d[1], 1, 1], Dom::Any, &mut rng, "one value per channel");
    push(x, &mut rng);
}
