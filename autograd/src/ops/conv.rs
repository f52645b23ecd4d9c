//! Convolutions and patch extraction. With `y = conv2d(x, W) + b`:
//! `∂x = conv2d_backward_input(g, W)` (the adjoint in x), `∂W = conv2d_backward_weight(g, x)`
//! (the adjoint in W), `∂b = Σ_{n,h,w} g`. `conv_transpose2d` is the adjoint of `conv2d`, so
//! its input gradient is a `conv2d` of `g` with the same weight (cropped to the input's size
//! when `output_padding ≥ stride`). `im2col` and `col2im` are each other's adjoints.

use engine::{Conv2dParams, ConvTranspose2dParams, Element, Tensor};

use crate::backward::FnRule;
use crate::tape::Var;

fn bias_grad<T: Element>(g: &Tensor<T>) -> Tensor<T> {
    g.sum(&[0, 2, 3], false)
}

fn kernel_hw<T: Element>(w: &Tensor<T>) -> [usize; 2] {
    [w.dim(2), w.dim(3)]
}

impl<'t, T: Element> Var<'t, T> {
    /// `conv2d(x, W) + b` (PyTorch conventions; see [`engine::Tensor::conv2d`]).
    #[track_caller]
    pub fn conv2d(&self, weight: &Var<'t, T>, bias: Option<&Var<'t, T>>, p: Conv2dParams) -> Var<'t, T> {
        let y = self.value().conv2d(&weight.value(), bias.map(|b| b.value()).as_ref(), p);
        let mut inputs = vec![*self, *weight];
        inputs.extend(bias.copied());
        let rule = FnRule {
            name: "conv2d",
            // Only the gradients that are needed: the first layer's images need none.
            df: move |g: &Tensor<T>, x: &[&Tensor<T>], _: &Tensor<T>, needed: &[bool]| {
                let hw = [x[0].dim(2), x[0].dim(3)];
                let mut out = vec![
                    needed[0].then(|| Tensor::conv2d_backward_input(g, x[1], hw, p)),
                    needed[1].then(|| Tensor::conv2d_backward_weight(g, x[0], kernel_hw(x[1]), p)),
                ];
                if x.len() == 3 {
                    out.push(needed[2].then(|| bias_grad(g)));
                }
                Ok(out)
            },
        };
        self.tape().push_op(y, &inputs, rule)
    }

    /// `conv_transpose2d(x, W) + b`, the adjoint of `conv2d` (see
    /// [`engine::Tensor::conv_transpose2d`]).
    #[track_caller]
    pub fn conv_transpose2d(
        &self,
        weight: &Var<'t, T>,
        bias: Option<&Var<'t, T>>,
        p: ConvTranspose2dParams,
    ) -> Var<'t, T> {
        let y = self.value().conv_transpose2d(&weight.value(), bias.map(|b| b.value()).as_ref(), p);
        let mut inputs = vec![*self, *weight];
        inputs.extend(bias.copied());
        let rule = FnRule {
            name: "conv_transpose2d",
            df: move |g: &Tensor<T>, x: &[&Tensor<T>], _: &Tensor<T>, needed: &[bool]| {
                // ∂z = conv2d(g, W) cropped to z's spatial size: the crop matters when
                // output_padding ≥ stride (possible with dilation > stride), where the
                // convolution of g is larger than z.
                let hw = [x[0].dim(2), x[0].dim(3)];
                let mut out = vec![
                    needed[0].then(|| Tensor::conv_transpose2d_backward_input(g, x[1], hw, p)),
                    needed[1].then(|| Tensor::conv_transpose2d_backward_weight(x[0], g, kernel_hw(x[1]), p)),
                ];
                if x.len() == 3 {
                    out.push(needed[2].then(|| bias_grad(g)));
                }
                Ok(out)
            },
        };
        self.tape().push_op(y, &inputs, rule)
    }

    /// Patches `[N, C, H, W] → [N, C·kh·kw, OH·OW]`; `∂x = col2im(g)`.
    #[track_caller]
    pub fn im2col(&self, kernel: [usize; 2], p: Conv2dParams) -> Var<'t, T> {
        self.unary(
            "im2col",
            |x| x.im2col(kernel, p),
            move |g, x, _| {
                let s = x.shape();
                Tensor::col2im(g, [s[0], s[1], s[2], s[3]], kernel, p)
            },
        )
    }

    /// Adds patches `[N, C·kh·kw, OH·OW]` back into an image of `shape`; `∂cols = im2col(g)`.
    #[track_caller]
    pub fn col2im(&self, shape: [usize; 4], kernel: [usize; 2], p: Conv2dParams) -> Var<'t, T> {
        self.unary("col2im", |c| Tensor::col2im(c, shape, kernel, p), move |g, _, _| g.im2col(kernel, p))
    }
}

/// The audit cases of this family (collected by [`crate::audit::cases`]).
pub(crate) mod cases {
    use crate::audit_case::families::*;
    use crate::audit_case::inputs::*;
    use crate::audit_case::AuditCase;
    use std::sync::Arc;

    use engine::{Conv2dParams, ConvTranspose2dParams};

    use crate::tape::Var;

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
            (
                [1, 3, 3, 3],
                Contiguous,
                [3, 2, 3, 2],
                true,
                ct().stride2([2, 3]).padding2([1, 0]).output_padding2([1, 2]),
            ),
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
}
