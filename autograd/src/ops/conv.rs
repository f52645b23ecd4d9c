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
