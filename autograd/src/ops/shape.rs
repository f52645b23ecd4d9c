//! View and shape ops. Forward passes are views (no copy, except `reshape` when the layout
//! forces one); backward passes undo the view: reshape back, inverse permutation, sum over
//! broadcast axes, or embed `g` into zeros at the viewed positions.

use engine::{Element, Layout, Tensor};

use crate::backward::FnRule;
use crate::ops::sum_to;
use crate::tape::Var;

/// Zeros of `shape` with `g` added at the positions a view (`view` applied to the contiguous
/// layout of `shape`) addresses: the adjoint of taking that view.
pub(crate) fn embed<T: Element>(shape: &[usize], view: impl Fn(&Layout) -> Layout, g: &Tensor<T>) -> Tensor<T> {
    let mut out = Tensor::zeros(shape);
    let l = view(out.layout());
    let vals = g.to_vec();
    let data = out.make_mut();
    for (o, v) in l.offsets().zip(vals) {
        data[o] += v;
    }
    out
}

impl<'t, T: Element> Var<'t, T> {
    /// New shape, same row-major elements; `∂x = g` reshaped back.
    #[track_caller]
    pub fn reshape(&self, shape: &[usize]) -> Var<'t, T> {
        self.unary("reshape", |x| x.reshape(shape), |g, x, _| g.reshape(x.shape()))
    }

    /// Axis `k` of `y` is axis `perm[k]` of `x`; `∂x = g` permuted by the inverse.
    #[track_caller]
    pub fn permute(&self, perm: &[usize]) -> Var<'t, T> {
        let mut inv = vec![0; perm.len()];
        for (k, &p) in perm.iter().enumerate() {
            if p < inv.len() {
                inv[p] = k;
            }
        }
        self.unary("permute", |x| x.permute(perm), move |g, _, _| g.permute(&inv))
    }

    /// Swaps axes `a` and `b`; `∂x = g` with the same axes swapped.
    #[track_caller]
    pub fn transpose(&self, a: usize, b: usize) -> Var<'t, T> {
        self.unary("transpose", |x| x.transpose(a, b), move |g, _, _| g.transpose(a, b))
    }

    /// Matrix transpose.
    #[track_caller]
    pub fn t(&self) -> Var<'t, T> {
        assert_eq!(self.rank(), 2, "t: expected a matrix, got shape {:?}", self.shape());
        self.transpose(0, 1)
    }

    /// Indices `start..start + len` of `axis`; `∂x` is `g` embedded in zeros.
    #[track_caller]
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Var<'t, T> {
        self.slice(axis, start, start + len, 1)
    }

    /// Indices `start, start + step, …` below `end` of `axis`; `∂x` is `g` embedded in zeros.
    #[track_caller]
    pub fn slice(&self, axis: usize, start: usize, end: usize, step: usize) -> Var<'t, T> {
        self.unary(
            "slice",
            |x| x.slice(axis, start, end, step),
            move |g, x, _| embed(x.shape(), |l| l.slice(axis, start, end, step), g),
        )
    }

    /// Index `i` of `axis`, removing the axis.
    #[track_caller]
    pub fn select(&self, axis: usize, i: usize) -> Var<'t, T> {
        self.narrow(axis, i, 1).squeeze(axis)
    }

    /// Broadcast to `shape` (stride 0); `∂x = g` summed over the broadcast axes.
    #[track_caller]
    pub fn broadcast_to(&self, shape: &[usize]) -> Var<'t, T> {
        self.unary("broadcast_to", |x| x.broadcast_to(shape), |g, x, _| sum_to(g, x.shape()))
    }

    /// Same as [`Var::broadcast_to`].
    #[track_caller]
    pub fn expand(&self, shape: &[usize]) -> Var<'t, T> {
        self.broadcast_to(shape)
    }

    /// Inserts an axis of length 1.
    #[track_caller]
    pub fn unsqueeze(&self, axis: usize) -> Var<'t, T> {
        self.unary("unsqueeze", |x| x.unsqueeze(axis), |g, x, _| g.reshape(x.shape()))
    }

    /// Removes an axis of length 1.
    #[track_caller]
    pub fn squeeze(&self, axis: usize) -> Var<'t, T> {
        self.unary("squeeze", |x| x.squeeze(axis), |g, x, _| g.reshape(x.shape()))
    }

    /// Merges axes `start..=end`.
    #[track_caller]
    pub fn flatten(&self, start: usize, end: usize) -> Var<'t, T> {
        self.unary("flatten", |x| x.flatten(start, end), |g, x, _| g.reshape(x.shape()))
    }

    /// A row-major copy; `∂x = g`.
    pub fn contiguous(&self) -> Var<'t, T> {
        self.unary("contiguous", |x| x.contiguous(), |g, _, _| g.clone())
    }

    /// Main diagonal of a matrix; `∂x` is `g` on the diagonal, 0 elsewhere.
    #[track_caller]
    pub fn diagonal(&self) -> Var<'t, T> {
        let y = self.value().diagonal();
        let rule = FnRule {
            name: "diagonal",
            df: |g: &Tensor<T>, x: &[&Tensor<T>], _: &Tensor<T>, _: &[bool]| {
                let n = g.numel();
                let cols = x[0].dim(1) as isize;
                let l = |base: &Layout| Layout { shape: vec![n], strides: vec![cols + 1], offset: base.offset };
                Ok(vec![Some(embed(x[0].shape(), l, g))])
            },
        };
        self.tape().push_op(y, &[*self], rule)
    }
}

#[cfg(test)]
mod tests {
    use crate::Tape;
    use engine::Tensor;

    #[test]
    fn slice_gradient_is_embedded() {
        // y = Σ 2·x[1::2] over a [5] vector → ∂x = [0, 2, 0, 2, 0]
        let tape = Tape::new();
        let x = tape.leaf(Tensor::<f64>::arange(5));
        let y = x.slice(0, 1, 5, 2).mul_scalar(2.0).sum_all();
        assert_eq!(tape.backward(&y).unwrap().wrt(&x).to_vec(), vec![0.0, 2.0, 0.0, 2.0, 0.0]);
    }

    #[test]
    fn permute_gradient_is_inverse_permuted() {
        // y = Σ w ⊙ permute(x, [2, 0, 1]) → ∂x = permute(w, inverse [1, 2, 0])
        let tape = Tape::new();
        let x = tape.leaf(Tensor::<f64>::zeros(&[2, 3, 4]));
        let w = Tensor::<f64>::arange(24).reshape(&[4, 2, 3]);
        let y = x.permute(&[2, 0, 1]).mul(&tape.constant(w.clone())).sum_all();
        let g = tape.backward(&y).unwrap().wrt(&x);
        assert_eq!(g.to_vec(), w.permute(&[1, 2, 0]).to_vec());
    }
}
