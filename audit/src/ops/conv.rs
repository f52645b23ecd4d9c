//! The audit cases of the `conv` op family (`autograd::ops::conv`).

use autograd::audit::families::*;
use autograd::audit::inputs::*;
use autograd::audit::AuditCase;
use std::sync::Arc;

use engine::{Conv2dParams, ConvTranspose2dParams};

use autograd::Var;

/// A convolution case: input shape, input layout, weight shape (the weight is passed as a
/// transposed view), whether there is a bias, parameters.
type ConvSpec<P> = ([usize; 4], View, [usize; 4], bool, P);

fn conv_desc(p: &Conv2dParams) -> String {
    format!("stride {:?}, padding {:?}, dilation {:?}, groups {}", p.stride, p.padding, p.dilation, p.groups)
}

/// A convolution-like op `f(x, W, b, p)` on each spec; `bias_len` gives the bias length.
fn conv_family<P, F>(
    out: &mut Vec<AuditCase>,
    op: &'static str,
    specs: Vec<ConvSpec<P>>,
    bias_len: impl Fn([usize; 4], P) -> usize,
    desc: impl Fn(&P) -> String,
    f: F,
) where
    P: Copy + Send + Sync + 'static,
    F: for<'t> Fn(&Var<'t, f64>, &Var<'t, f64>, Option<&Var<'t, f64>>, P) -> Var<'t, f64> + Send + Sync + 'static,
{
    let f = Arc::new(f);
    let mut rng = rng_for(op, 0);
    for (xs, view, ws, bias, p) in specs {
        let x = input(view, &xs, Dom::Any, &mut rng, "");
        let mut inputs = vec![x.value, make(View::Transposed, &ws, Dom::Any, &mut rng)];
        if bias {
            inputs.push(tensor(Dom::Any, &[bias_len(ws, p)], &mut rng));
        }
        let b = if bias { "" } else { ", no bias" };
        let desc = format!("{}, weight transposed view {ws:?}{b}; {}", x.desc, desc(&p));
        let (g, target) = (Arc::clone(&f), x.target);
        out.push(AuditCase::gradcheck(op, desc, inputs, default(), move |_, v| {
            g(&bcast(&v[0], &target), &v[1], v.get(2), p)
        }));
    }
}

pub(crate) fn all(out: &mut Vec<AuditCase>) {
    use View::{Broadcast, Contiguous, Permuted, Sliced, Transposed};
    let c = Conv2dParams::new;
    let specs = vec![
        ([2, 3, 5, 6], Contiguous, [4, 3, 3, 3], true, c().padding(1)),
        ([1, 4, 7, 7], Contiguous, [6, 2, 3, 2], true, c().stride(2).padding2([1, 0]).groups(2)),
        ([2, 2, 7, 6], Contiguous, [3, 2, 3, 3], false, c().dilation(2).padding(2)),
        // depthwise, and depthwise with two filters per channel
        ([2, 4, 5, 5], Contiguous, [4, 1, 3, 3], true, c().padding(1).groups(4)),
        ([1, 3, 5, 5], Contiguous, [6, 1, 3, 3], true, c().groups(3)),
        ([1, 3, 9, 8], Contiguous, [2, 3, 3, 2], true, c().stride2([2, 3]).padding2([2, 1]).dilation2([1, 2])),
        // 1×1 kernel (the engine reads the input in place)
        ([2, 3, 4, 4], Contiguous, [5, 3, 1, 1], true, c()),
        ([2, 3, 6, 5], Permuted, [4, 3, 3, 3], true, c().stride(2).padding(1)),
        ([1, 4, 5, 4], Sliced, [2, 2, 2, 3], true, c().padding(1).groups(2)),
        ([3, 2, 5, 5], Broadcast, [2, 2, 3, 3], true, c().padding(1)),
    ];
    conv_family(out, "conv2d", specs, |ws, _| ws[0], conv_desc, |x, w, b, p| x.conv2d(w, b, p));
    // A bias that is itself a broadcast view of one value.
    let mut rng = rng_for("conv2d", 1);
    let (x, w, b) = (
        tensor(Dom::Any, &[1, 2, 4, 4], &mut rng),
        tensor(Dom::Any, &[3, 2, 2, 2], &mut rng),
        tensor(Dom::Any, &[1], &mut rng),
    );
    out.push(AuditCase::gradcheck(
        "conv2d",
        "contiguous [1, 2, 4, 4], weight [3, 2, 2, 2], bias broadcast [1]→[3]",
        vec![x, w, b],
        default(),
        |_, v| v[0].conv2d(&v[1], Some(&v[2].broadcast_to(&[3])), Conv2dParams::new()),
    ));

    let ct = ConvTranspose2dParams::new;
    let specs = vec![
        ([2, 4, 4, 4], Contiguous, [4, 3, 3, 3], true, ct().padding(1)),
        ([1, 4, 3, 4], Contiguous, [4, 1, 3, 3], true, ct().stride(2).padding(1).output_padding(1).groups(2)),
        ([2, 2, 3, 3], Permuted, [2, 3, 4, 4], true, ct().stride(2).padding(1)),
        ([1, 3, 3, 3], Contiguous, [3, 2, 3, 2], true, ct().stride2([2, 3]).padding2([1, 0]).output_padding2([1, 2])),
        ([1, 2, 4, 4], Sliced, [2, 2, 3, 3], false, ct().dilation(2).padding(2)),
        // output_padding ≥ stride (allowed because dilation > stride): the input gradient is
        // the convolution of g cropped to the input's size
        ([1, 2, 4, 3], Contiguous, [2, 3, 3, 3], true, ct().dilation(2).output_padding(1)),
        ([2, 3, 3, 3], Contiguous, [3, 1, 3, 3], true, ct().stride(2).groups(3)),
        ([2, 2, 3, 3], Broadcast, [2, 2, 3, 3], true, ct().stride(2)),
    ];
    let ct_desc =
        |p: &ConvTranspose2dParams| format!("{}, output_padding {:?}", conv_desc(&p.as_conv()), p.output_padding);
    conv_family(
        out,
        "conv_transpose2d",
        specs,
        |ws, p| ws[1] * p.groups,
        ct_desc,
        |x, w, b, p| x.conv_transpose2d(w, b, p),
    );

    // A sparse input (3 nonzeros in 864, under the engine's 1/32): the forward and the
    // weight gradient run on the engine's sparse kernels, the input gradient on the dense.
    let mut rng = rng_for("conv_transpose2d", 1);
    let dense = tensor(Dom::Any, &[2, 3, 12, 12], &mut rng);
    let kept = dense.to_vec().into_iter().enumerate().map(|(i, v)| if i % 300 == 7 { v } else { 0.0 }).collect();
    let z = engine::Tensor::from_vec(kept, dense.shape());
    let (w, b) = (tensor(Dom::Any, &[3, 2, 3, 3], &mut rng), tensor(Dom::Any, &[2], &mut rng));
    out.push(AuditCase::gradcheck(
        "conv_transpose2d",
        "sparse contiguous [2, 3, 12, 12] (3 nonzeros), weight [3, 2, 3, 3], bias [2]; stride [2, 2], padding [1, 1]",
        vec![z, w, b],
        default(),
        |_, v| v[0].conv_transpose2d(&v[1], Some(&v[2]), ConvTranspose2dParams::new().stride(2).padding(1)),
    ));

    let mut rng = rng_for("im2col", 0);
    for (xs, k, p) in [
        ([2, 2, 5, 5], [3, 3], c().padding(1)),
        ([1, 3, 7, 6], [2, 3], c().stride2([2, 1]).dilation2([2, 1]).padding2([0, 1])),
    ] {
        let what = format!("kernel {k:?}, {}", conv_desc(&p));
        let inputs = layouts(&[Contiguous, Permuted, Sliced, Broadcast], &xs, Dom::Any, &mut rng, &what);
        single(out, "im2col", inputs, move |x| x.im2col(k, p));
        let oh = p.output_hw([xs[2], xs[3]], k).expect("valid geometry");
        let cs = [xs[0], xs[1] * k[0] * k[1], oh[0] * oh[1]];
        let inputs = layouts(&[Contiguous, Transposed, Sliced, Broadcast], &cs, Dom::Any, &mut rng, &what);
        single(out, "col2im", inputs, move |x| x.col2im(xs, k, p));
    }
}
