//! Pooling. Max pooling sends `g` to the selected input element of each window (indices saved
//! by the forward pass); average pooling spreads `g` evenly over each window (the engine's
//! adjoint kernel); global average pooling is a mean over the spatial axes.

use engine::{Element, Pool2dParams, Tensor};

use crate::backward::FnRule;
use crate::tape::Var;

fn shape4<T: Element>(t: &Tensor<T>) -> [usize; 4] {
    let s = t.shape();
    [s[0], s[1], s[2], s[3]]
}

impl<'t, T: Element> Var<'t, T> {
    /// Max pooling; `∂x` scatters `g` to the argmax of each window.
    #[track_caller]
    pub fn max_pool2d(&self, p: Pool2dParams) -> Var<'t, T> {
        let (y, idx) = self.value().max_pool2d(p);
        let rule = FnRule {
            name: "max_pool2d",
            // Saved: for every output, the flat h·W + w index of its input element.
            df: move |g: &Tensor<T>, x: &[&Tensor<T>], _: &Tensor<T>, _: &[bool]| {
                Ok(vec![Some(Tensor::max_pool2d_backward(g, &idx, shape4(x[0])))])
            },
        };
        self.tape().push_op(y, &[*self], rule)
    }

    /// Average pooling; `∂x` is the adjoint (each window's share of `g`).
    #[track_caller]
    pub fn avg_pool2d(&self, p: Pool2dParams) -> Var<'t, T> {
        self.unary("avg_pool2d", |x| x.avg_pool2d(p), move |g, x, _| Tensor::avg_pool2d_backward(g, shape4(x), p))
    }

    /// `[N, C, H, W] → [N, C]`, the mean over H and W.
    #[track_caller]
    pub fn global_avg_pool2d(&self) -> Var<'t, T> {
        assert_eq!(self.rank(), 4, "global_avg_pool2d: expected [N, C, H, W], got {:?}", self.shape());
        self.mean(&[2, 3], false)
    }
}
