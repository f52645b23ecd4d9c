//! The audit cases of the `index` op family (`autograd::ops::index`).

use autograd::audit::families::*;
use autograd::audit::inputs::*;
use autograd::audit::AuditCase;
use autograd::Var;

pub(crate) fn all(out: &mut Vec<AuditCase>) {
    let mut rng = rng_for("index", 0);
    let s2 = dims(&mut rng, 2, 2, 5);
    let s4 = dims(&mut rng, 4, 2, 3);
    single(out, "pad", layouts(&ALL2, &s2, Dom::Any, &mut rng, "pads (1, 2), (0, 3), value 0.5"), |x| {
        x.pad(&[(1, 2), (0, 3)], 0.5)
    });
    single(
        out,
        "pad",
        layouts(&[View::Contiguous, View::Permuted], &s4, Dom::Any, &mut rng, "spatial pads (2, 1), (1, 1)"),
        |x| x.pad(&[(0, 0), (0, 0), (2, 1), (1, 1)], 0.0),
    );

    let (r, c) = (s2[0], s2[1]);
    let any = Dom::Any;
    let parts = vec![
        input(View::Contiguous, &[r, c], any, &mut rng, ""),
        input(View::Transposed, &[r, c + 1], any, &mut rng, ""),
        input(View::Sliced, &[r, 2], any, &mut rng, ""),
        input(View::Broadcast, &[r, 3], any, &mut rng, ""),
    ];
    multi(out, "concat", "axis 1", parts, |v| Var::concat(v, 1));
    let parts = vec![
        input(View::Sliced, &[2, c], any, &mut rng, ""),
        input(View::Broadcast, &[3, c], any, &mut rng, ""),
        input(View::Contiguous, &[r, c], any, &mut rng, ""),
        input(View::Transposed, &[1, c], any, &mut rng, ""),
    ];
    multi(out, "concat", "axis 0", parts, |v| Var::concat(v, 0));
    let x = tensor(any, &[1, c], &mut rng);
    out.push(AuditCase::gradcheck(
        "concat",
        format!("axis 0: a broadcast [1, {c}]→[{r}, {c}] and itself"),
        vec![x],
        default(),
        move |_, v| {
            let b = v[0].broadcast_to(&[r, c]);
            Var::concat(&[b, v[0]], 0)
        },
    ));
    for axis in [0, 1, 2] {
        let parts = layouts(&ALL2, &s2, any, &mut rng, "");
        multi(out, "stack", &format!("axis {axis}"), parts, move |v| Var::stack(v, axis));
    }

    let idx = vec![r - 1, 0, r - 1, 1];
    let i2 = idx.clone();
    single(
        out,
        "index_select",
        layouts(&ALL2, &s2, Dom::Any, &mut rng, &format!("axis 0, indices {idx:?} (repeats)")),
        move |x| x.index_select(0, &i2),
    );
    let cidx = vec![c - 1, c - 1, 0];
    let c2 = cidx.clone();
    single(
        out,
        "index_select",
        layouts(&ALL3, &[2, 3, c], Dom::Any, &mut rng, &format!("axis 2, indices {cidx:?}")),
        move |x| x.index_select(2, &c2),
    );

    // gather along axis 1 with an index of shape [r, 3] (repeats allowed) and along axis 0.
    let g1: Vec<usize> = (0..r * 3).map(|i| (i * 5 + 1) % c).collect();
    let g1b = g1.clone();
    single(
        out,
        "gather",
        layouts(&ALL2, &s2, Dom::Any, &mut rng, &format!("axis 1, index {g1:?} of shape [{r}, 3]")),
        move |x| x.gather(1, &g1b, &[r, 3]),
    );
    let g0: Vec<usize> = (0..2 * c).map(|i| (i * 3 + 2) % r).collect();
    let g0b = g0.clone();
    single(
        out,
        "gather",
        layouts(&ALL2, &s2, Dom::Any, &mut rng, &format!("axis 0, index {g0:?} of shape [2, {c}]")),
        move |x| x.gather(0, &g0b, &[2, c]),
    );
}
