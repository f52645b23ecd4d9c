//! The audit cases of the fixed-DCT convolution (`sparse::dct`).

use engine::Conv2dParams;
use sparse::dct::DctConv;

/// The gradient audit of the DCT convolution (collected by [`crate::audit::cases`]), labelled
/// `dct_conv`: `relu(conv2d(x, Φ) + b)` with the DCT filters a constant, checked with respect
/// to the input (contiguous, permuted, sliced, broadcast) and the bias. It records `conv2d` and
/// `relu`, both audited rules of their own; these cases audit the layer as it is used, with no
/// weight gradient. ReLU has a kink at 0: every input keeps each pre-activation at least
/// [`sparse::audit::KINK_MARGIN`] from it (redrawn from the same generator otherwise).
pub(crate) fn cases(out: &mut Vec<autograd::audit::AuditCase>) {
    use autograd::audit::inputs::{bcast, input, rng_for, tensor, Dom, View};
    use autograd::audit::AuditCase;
    use autograd::CheckOptions;

    let op = "dct_conv";
    let mut rng = rng_for(op, 0);
    let c = Conv2dParams::new;
    // (input shape, layout, F, k, conv)
    let specs = [
        ([2, 2, 5, 5], View::Contiguous, 10, 3, c().padding(1)),
        ([1, 1, 6, 6], View::Contiguous, 5, 3, c()),
        ([2, 3, 6, 5], View::Permuted, 12, 3, c().stride(2).padding(1)),
        ([1, 2, 7, 6], View::Sliced, 9, 2, c().padding(1)),
        ([2, 2, 5, 5], View::Broadcast, 7, 3, c().padding(1)),
    ];
    for (xs, view, f, k, conv) in specs {
        let layer = DctConv::<f64>::new(xs[1], f, k, conv);
        let (x, b) = (0..200)
            .map(|_| (input(view, &xs, Dom::Any, &mut rng, ""), tensor(Dom::Any, &[f], &mut rng)))
            .find(|(x, b)| {
                let full = match &x.target {
                    Some(t) => x.value.broadcast_to(t),
                    None => x.value.clone(),
                };
                let z = full.conv2d(layer.filters(), Some(b), conv);
                z.to_vec().iter().all(|v| v.abs() >= sparse::audit::KINK_MARGIN)
            })
            .expect("dct_conv audit: no input with pre-activations away from 0 in 200 draws");
        let factors = layer.factors.iter().map(|&(d, n)| format!("odct({d}, {n})")).collect::<Vec<_>>().join(" ⊗ ");
        let desc = format!(
            "{}, bias [{f}]; {}→{f}, {k}×{k} atoms of {factors}, stride {:?}, padding {:?}",
            x.desc, xs[1], conv.stride, conv.padding
        );
        let target = x.target;
        out.push(AuditCase::gradcheck(op, desc, vec![x.value, b], CheckOptions::default(), move |_, v| {
            layer.forward(&bcast(&v[0], &target), &v[1])
        }));
    }
}
