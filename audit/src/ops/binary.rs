//! The audit cases of the `binary` op family (`autograd::ops::binary`).

use autograd::audit::families::*;
use autograd::audit::inputs::*;
use autograd::audit::AuditCase;
use engine::Tensor;

use autograd::Var;

pub(crate) fn all(out: &mut Vec<AuditCase>) {
    binary(out, "add", Dom::Any, Dom::Any, |a, b| a.add(b));
    binary(out, "sub", Dom::Any, Dom::Any, |a, b| a.sub(b));
    binary(out, "mul", Dom::Any, Dom::Any, |a, b| a.mul(b));
    binary(out, "div", Dom::Any, Dom::Range(0.5, 2.0), |a, b| a.div(b));
    binary(out, "div", Dom::Any, Dom::Range(-2.0, -0.5), |a, b| a.div(b));
    binary(out, "maximum", Dom::Grid(0.0), Dom::Grid(0.05), |a, b| a.maximum(b));
    binary(out, "minimum", Dom::Grid(0.0), Dom::Grid(0.05), |a, b| a.minimum(b));

    // where: the mask is a constant; a and b broadcast against it.
    let mut rng = rng_for("where", 0);
    let s2 = dims(&mut rng, 2, 2, 5);
    let (r, c) = (s2[0], s2[1]);
    let mask = Tensor::from_vec((0..r * c).map(|i| (i % 3 == 0) as u8 as f64).collect(), &s2);
    for (input, a, b) in [
        (
            format!("mask {s2:?}; contiguous {s2:?}, transposed view {s2:?}"),
            tensor(Dom::Any, &s2, &mut rng),
            make(View::Transposed, &s2, Dom::Any, &mut rng),
        ),
        (
            format!("mask {s2:?}; sliced view {s2:?}, broadcast [{r}, 1]"),
            make(View::Sliced, &s2, Dom::Any, &mut rng),
            tensor(Dom::Any, &[r, 1], &mut rng),
        ),
        (
            format!("mask {s2:?}; broadcast [{c}], broadcast [1]"),
            tensor(Dom::Any, &[c], &mut rng),
            tensor(Dom::Any, &[1], &mut rng),
        ),
    ] {
        let m = mask.clone();
        out.push(AuditCase::gradcheck("where", input, vec![a, b], default(), move |_, v| {
            Var::where_(&m, &v[0], &v[1])
        }));
    }
}
