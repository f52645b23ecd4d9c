//! The audit cases of the `pool` op family (`autograd::ops::pool`).

use autograd::audit::families::*;
use autograd::audit::inputs::*;
use autograd::audit::AuditCase;
use engine::Pool2dParams;

pub(crate) fn all(out: &mut Vec<AuditCase>) {
    let mut rng = rng_for("pool", 0);
    let pools = [
        ("2×2, stride 2", [2, 3, 6, 5], View::Contiguous, Pool2dParams::new(2)),
        ("3×3, stride 2, padding 1", [2, 2, 7, 6], View::Permuted, Pool2dParams::new(3).stride(2).padding(1)),
        (
            "3×2, stride (1, 2), padding (1, 0)",
            [1, 3, 6, 6],
            View::Sliced,
            Pool2dParams::new2([3, 2]).stride2([1, 2]).padding2([1, 0]),
        ),
        (
            "3×3, stride 1 (overlapping windows), padding 1",
            [1, 2, 5, 5],
            View::Contiguous,
            Pool2dParams::new(3).stride(1).padding(1),
        ),
        ("2×2, stride 1", [3, 2, 4, 4], View::Broadcast, Pool2dParams::new(2).stride(1)),
    ];
    for (what, xs, view, p) in pools {
        single(out, "max_pool2d", layouts(&[view], &xs, Dom::Distinct, &mut rng, what), move |x| x.max_pool2d(p));
        for include in [true, false] {
            let p = p.count_include_pad(include);
            let inputs = layouts(&[view], &xs, Dom::Any, &mut rng, &format!("{what}, count_include_pad {include}"));
            single(out, "avg_pool2d", inputs, move |x| x.avg_pool2d(p));
        }
    }
    let xs = [2, 3, 4, 5];
    let inputs =
        layouts(&[View::Contiguous, View::Permuted, View::Sliced, View::Broadcast], &xs, Dom::Any, &mut rng, "");
    single(out, "global_avg_pool2d", inputs, |x| x.global_avg_pool2d());
    let x = tensor(Dom::Any, &[2, 3, 1, 1], &mut rng);
    out.push(AuditCase::gradcheck(
        "global_avg_pool2d",
        "broadcast [2, 3, 1, 1]→[2, 3, 4, 5]",
        vec![x],
        default(),
        |_, v| v[0].broadcast_to(&[2, 3, 4, 5]).global_avg_pool2d(),
    ));
}
