//! The audit cases of the spatial-contrasting loss (`sparse::scl`).

use sparse::scl::{sc_loss, sq_diff, Distance, ScConfig};

/// The gradient audit of `sc_loss` (collected by [`crate::audit::cases`]): anchors and
/// positives in every layout (contiguous, transposed, sliced, and broadcast `[N, 1] → [N, d]`:
/// broadcasting `[1, d]` would make every anchor, or every positive, the same row, where the
/// loss is the constant `log N`), both distances, symmetric and one-sided; default checker
/// options. The Euclidean distance has a kink where a pair coincides: its inputs keep every pair
/// at least [`autograd::audit::inputs::MARGIN`] apart (redrawn from the same generator
/// otherwise).
pub(crate) fn cases(out: &mut Vec<autograd::audit::AuditCase>) {
    use autograd::audit::inputs::{bcast, input, rng_for, tensor, Dom, Input, View, MARGIN};
    use autograd::audit::AuditCase;
    use autograd::CheckOptions;

    let op = "sc_loss";
    let mut rng = rng_for(op, 0);
    let (n, d) = (3 + rng.below(3) as usize, 3 + rng.below(3) as usize);
    let mut draw = |view: View| {
        if view == View::Broadcast {
            let desc = format!("broadcast [{n}, 1]→[{n}, {d}]");
            Input { desc, value: tensor(Dom::Any, &[n, 1], &mut rng), target: Some(vec![n, d]) }
        } else {
            input(view, &[n, d], Dom::Any, &mut rng, "")
        }
    };
    let sq = ScConfig::new();
    let eu = ScConfig::new().distance(Distance::Euclidean);
    let specs = [
        (View::Contiguous, View::Contiguous, sq),
        (View::Contiguous, View::Contiguous, eu.one_sided()),
        (View::Transposed, View::Sliced, sq.one_sided()),
        (View::Sliced, View::Transposed, eu),
        (View::Broadcast, View::Contiguous, sq),
        (View::Contiguous, View::Broadcast, eu.one_sided()),
        (View::Transposed, View::Contiguous, eu),
        (View::Sliced, View::Broadcast, sq.one_sided()),
    ];
    let full = |x: &Input| match &x.target {
        Some(t) => x.value.broadcast_to(t).contiguous().into_vec(),
        None => x.value.contiguous().into_vec(),
    };
    for (va, vp, cfg) in specs {
        let (a, p) = (0..200)
            .map(|_| (draw(va), draw(vp)))
            .find(|(a, p)| {
                let (av, pv) = (full(a), full(p));
                let dist = |i: usize, j: usize| sq_diff(&av[i * d..(i + 1) * d], &pv[j * d..(j + 1) * d]).sqrt();
                cfg.distance == Distance::Squared || (0..n).all(|i| (0..n).all(|j| dist(i, j) >= MARGIN))
            })
            .expect("sc_loss audit: no Euclidean input with separated pairs in 200 draws");
        let desc = format!("anchors {}, positives {}; {}", a.desc, p.desc, cfg.describe());
        let (ta, tp) = (a.target, p.target);
        out.push(AuditCase::gradcheck(op, desc, vec![a.value, p.value], CheckOptions::default(), move |_, v| {
            sc_loss(&bcast(&v[0], &ta), &bcast(&v[1], &tp), cfg)
        }));
    }
}
