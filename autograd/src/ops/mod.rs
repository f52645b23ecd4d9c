//! Built-in differentiable ops. Each file holds forward methods on [`Var`] with their
//! backward rule right beside them; the math of every rule is written next to it.
//!
//! Two small adapters keep the common cases on one line each:
//! [`Var::unary`] (`∂L/∂x` from `g`, `x`, `y`) and [`Var::binary`] (`∂L/∂a`, `∂L/∂b` from
//! `g`, `a`, `b`, `y`, reduced back over broadcast axes automatically).

mod binary;
mod conv;
mod index;
mod matmul;
mod norm;
mod pool;
mod reduce;
mod shape;
mod softmax;
mod unary;

pub use softmax::Reduction;

use engine::{Element, Tensor};

use crate::backward::FnRule;
use crate::tape::Var;

/// Sums `g` over the axes along which a tensor of `shape` was broadcast to `g`'s shape
/// (leading axes, and axes of length 1), giving a gradient of `shape`.
pub fn sum_to<T: Element>(g: &Tensor<T>, shape: &[usize]) -> Tensor<T> {
    if g.shape() == shape {
        return g.clone();
    }
    let lead = g.rank() - shape.len();
    let mut axes: Vec<usize> = (0..lead).collect();
    for (i, &d) in shape.iter().enumerate() {
        if d == 1 && g.dim(lead + i) != 1 {
            axes.push(lead + i);
        }
    }
    g.sum(&axes, true).reshape(shape)
}

/// The name of every rule the built-in ops record on the tape. The audit's coverage test
/// checks that its cases record exactly these, each with cases of its own in every layout.
pub const RULES: &[&str] = &[
    // unary.rs
    "neg",
    "exp",
    "log",
    "sqrt",
    "abs",
    "sign",
    "square",
    "recip",
    "relu",
    "sigmoid",
    "tanh",
    "softplus",
    "elu",
    "powf",
    "clamp",
    "soft_threshold",
    "add_scalar",
    "sub_scalar",
    "rsub_scalar",
    "mul_scalar",
    "div_scalar",
    // binary.rs
    "add",
    "sub",
    "mul",
    "div",
    "maximum",
    "minimum",
    "where",
    // reduce.rs
    "sum",
    "max",
    "min",
    "logsumexp",
    "norm_l2",
    // shape.rs
    "reshape",
    "permute",
    "transpose",
    "slice",
    "broadcast_to",
    "unsqueeze",
    "squeeze",
    "flatten",
    "contiguous",
    "diagonal",
    // matmul.rs
    "matmul",
    // softmax.rs
    "softmax",
    "log_softmax",
    "cross_entropy",
    // index.rs
    "pad",
    "concat",
    "index_select",
    "gather",
    // conv.rs
    "conv2d",
    "conv_transpose2d",
    "im2col",
    "col2im",
    // pool.rs
    "max_pool2d",
    "avg_pool2d",
    // norm.rs
    "batch_norm",
];

impl<'t, T: Element> Var<'t, T> {
    /// Records `y = f(x)` with the rule `∂L/∂x = df(g, x, y)`.
    pub fn unary(
        &self,
        name: &'static str,
        f: impl FnOnce(&Tensor<T>) -> Tensor<T>,
        df: impl Fn(&Tensor<T>, &Tensor<T>, &Tensor<T>) -> Tensor<T> + 'static,
    ) -> Var<'t, T> {
        let y = f(&self.value());
        let rule = FnRule {
            name,
            df: move |g: &Tensor<T>, x: &[&Tensor<T>], y: &Tensor<T>, _: &[bool]| Ok(vec![Some(df(g, x[0], y))]),
        };
        self.tape().push_op(y, &[*self], rule)
    }

    /// Records `y = f(a, b)` (broadcasting) with the rule `(∂L/∂a, ∂L/∂b) = df(g, a, b, y)`;
    /// each gradient is summed back to its input's shape over broadcast axes.
    #[track_caller]
    pub fn binary(
        &self,
        other: &Var<'t, T>,
        name: &'static str,
        f: impl FnOnce(&Tensor<T>, &Tensor<T>) -> Tensor<T>,
        df: impl Fn(&Tensor<T>, &Tensor<T>, &Tensor<T>, &Tensor<T>) -> (Tensor<T>, Tensor<T>) + 'static,
    ) -> Var<'t, T> {
        let y = f(&self.value(), &other.value());
        let rule = FnRule {
            name,
            df: move |g: &Tensor<T>, x: &[&Tensor<T>], y: &Tensor<T>, needed: &[bool]| {
                let (ga, gb) = df(g, x[0], x[1], y);
                Ok(vec![needed[0].then(|| sum_to(&ga, x[0].shape())), needed[1].then(|| sum_to(&gb, x[1].shape()))])
            },
        };
        self.tape().push_op(y, &[*self, *other], rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sweep tells a rule which inputs need a gradient: a constant input does not, and a
    /// masked rule (conv2d, matmul) then skips computing its gradient.
    #[test]
    fn rules_are_told_which_inputs_need_gradients() {
        use std::cell::RefCell;
        use std::rc::Rc;
        let seen = Rc::new(RefCell::new(vec![]));
        let tape = crate::Tape::<f64>::new();
        let (x, w) = (tape.constant(Tensor::ones(&[2])), tape.leaf(Tensor::ones(&[2])));
        let log = Rc::clone(&seen);
        let rule = FnRule {
            name: "probe",
            df: move |g: &Tensor<f64>, _: &[&Tensor<f64>], _: &Tensor<f64>, needed: &[bool]| {
                log.borrow_mut().push(needed.to_vec());
                Ok(vec![needed[0].then(|| g.clone()), needed[1].then(|| g.clone())])
            },
        };
        let y = tape.push_op(x.value().mul(&w.value()), &[x, w], rule);
        let grads = tape.backward(&y.sum_all()).unwrap();
        assert_eq!(*seen.borrow(), vec![vec![false, true]]);
        assert_eq!(grads.wrt(&w).to_vec(), vec![1.0, 1.0]);
        assert!(grads.get(&x).is_none());

        // conv2d on constant images: only the weight and bias gradients are returned.
        let tape = crate::Tape::<f64>::new();
        let img = tape.constant(Tensor::ones(&[1, 1, 3, 3]));
        let (k, b) = (tape.leaf(Tensor::ones(&[1, 1, 2, 2])), tape.leaf(Tensor::zeros(&[1])));
        let y = img.conv2d(&k, Some(&b), engine::Conv2dParams::new()).sum_all();
        let g = tape.backward(&y).unwrap();
        // y = Σ over the 4 windows of Σ k·1 → ∂k = 4 everywhere, ∂b = 4
        assert_eq!(g.wrt(&k).to_vec(), vec![4.0; 4]);
        assert_eq!(g.wrt(&b).to_vec(), vec![4.0]);
    }

    #[test]
    fn sum_to_reduces_broadcast_axes() {
        let g = Tensor::<f64>::ones(&[2, 3, 4]);
        assert_eq!(sum_to(&g, &[3, 1]).to_vec(), vec![8.0; 3]);
        assert_eq!(sum_to(&g, &[4]).to_vec(), vec![6.0; 4]);
        assert_eq!(sum_to(&g, &[]).item(), 24.0);
    }
}
