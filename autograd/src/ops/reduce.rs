//! Reductions. Gradients of sums broadcast `g` back over the reduced axes (a stride-0 view,
//! no copy); max/min send `g` to the first extreme element of each block (the engine's
//! `max_with_indices` picks it); logsumexp's gradient is the softmax.

use engine::{Element, Tensor};

use crate::anomaly::unravel;
use crate::backward::FnRule;
use crate::tape::Var;

/// Shape with the reduced axes kept as length 1.
fn keep_shape(shape: &[usize], axes: &[usize]) -> Vec<usize> {
    shape.iter().enumerate().map(|(i, &d)| if axes.contains(&i) { 1 } else { d }).collect()
}

/// `g` (reduced, with or without keepdim) broadcast back to `shape`.
fn expand_back<T: Element>(g: &Tensor<T>, shape: &[usize], axes: &[usize]) -> Tensor<T> {
    g.reshape(&keep_shape(shape, axes)).broadcast_to(shape)
}

impl<'t, T: Element> Var<'t, T> {
    /// `y = Σ_axes x`; `∂x = g` broadcast over the reduced axes.
    #[track_caller]
    pub fn sum(&self, axes: &[usize], keepdim: bool) -> Var<'t, T> {
        let ax = axes.to_vec();
        let y = self.value().sum(axes, keepdim);
        let rule = FnRule {
            name: "sum",
            df: move |g: &Tensor<T>, x: &[&Tensor<T>], _: &Tensor<T>, _: &[bool]| {
                Ok(vec![Some(expand_back(g, x[0].shape(), &ax))])
            },
        };
        self.tape().push_op(y, &[*self], rule)
    }

    /// Sum of all elements (rank 0).
    pub fn sum_all(&self) -> Var<'t, T> {
        let axes: Vec<usize> = (0..self.rank()).collect();
        self.sum(&axes, false)
    }

    /// `y = mean_axes x`; `∂x = g / count` broadcast over the reduced axes.
    #[track_caller]
    pub fn mean(&self, axes: &[usize], keepdim: bool) -> Var<'t, T> {
        let count: usize = axes.iter().map(|&a| self.dim(a)).product();
        self.sum(axes, keepdim).div_scalar(count as f64)
    }

    /// Mean of all elements (rank 0).
    pub fn mean_all(&self) -> Var<'t, T> {
        let n: usize = self.shape().iter().product();
        self.sum_all().div_scalar(n as f64)
    }

    /// `y = max_axes x`; `∂x = g` at the first maximal element of each block, 0 elsewhere.
    #[track_caller]
    pub fn max(&self, axes: &[usize], keepdim: bool) -> Var<'t, T> {
        self.extreme(axes, keepdim, "max")
    }

    /// `y = min_axes x`; `∂x = g` at the first minimal element of each block, 0 elsewhere.
    #[track_caller]
    pub fn min(&self, axes: &[usize], keepdim: bool) -> Var<'t, T> {
        self.extreme(axes, keepdim, "min")
    }

    #[track_caller]
    fn extreme(&self, axes: &[usize], keepdim: bool, name: &'static str) -> Var<'t, T> {
        let x = self.value();
        let (y, idx) =
            if name == "max" { x.max_with_indices(axes, keepdim) } else { x.min_with_indices(axes, keepdim) };
        let ax = axes.to_vec();
        let rule = FnRule {
            name,
            df: move |g: &Tensor<T>, x: &[&Tensor<T>], _: &Tensor<T>, _: &[bool]| {
                let shape = x[0].shape();
                let kept: Vec<usize> = (0..shape.len()).filter(|a| !ax.contains(a)).collect();
                let red: Vec<usize> = (0..shape.len()).filter(|a| ax.contains(a)).collect();
                let kept_shape: Vec<usize> = kept.iter().map(|&a| shape[a]).collect();
                let red_shape: Vec<usize> = red.iter().map(|&a| shape[a]).collect();
                let gv = g.to_vec();
                let mut out = Tensor::zeros(shape);
                let data = out.make_mut();
                let strides = engine::layout::contiguous_strides(shape);
                for (o, (&p, &gv)) in idx.iter().zip(&gv).enumerate() {
                    let ko = unravel(o, &kept_shape);
                    let rp = unravel(p, &red_shape);
                    let mut flat = 0isize;
                    for (k, &a) in kept.iter().enumerate() {
                        flat += ko[k] as isize * strides[a];
                    }
                    for (k, &a) in red.iter().enumerate() {
                        flat += rp[k] as isize * strides[a];
                    }
                    data[flat as usize] += gv;
                }
                Ok(vec![Some(out)])
            },
        };
        self.tape().push_op(y, &[*self], rule)
    }

    /// `y = log Σ_axes eˣ`; `∂x = g·e^{x − y}` (the softmax over the reduced axes).
    #[track_caller]
    pub fn logsumexp(&self, axes: &[usize], keepdim: bool) -> Var<'t, T> {
        let ax = axes.to_vec();
        let y = self.value().logsumexp(axes, keepdim);
        let rule = FnRule {
            name: "logsumexp",
            df: move |g: &Tensor<T>, x: &[&Tensor<T>], y: &Tensor<T>, _: &[bool]| {
                let shape = x[0].shape();
                let p = x[0].sub(&expand_back(y, shape, &ax)).exp();
                Ok(vec![Some(p.mul(&expand_back(g, shape, &ax)))])
            },
        };
        self.tape().push_op(y, &[*self], rule)
    }

    /// `y = Σ_axes |x|`; `∂x = g·sign(x)`.
    #[track_caller]
    pub fn norm_l1(&self, axes: &[usize], keepdim: bool) -> Var<'t, T> {
        self.abs().sum(axes, keepdim)
    }

    /// `y = (Σ_axes x²)^½`; `∂x = g·x / y` (0 where y = 0).
    #[track_caller]
    pub fn norm_l2(&self, axes: &[usize], keepdim: bool) -> Var<'t, T> {
        let ax = axes.to_vec();
        let y = self.value().norm_l2(axes, keepdim);
        let rule = FnRule {
            name: "norm_l2",
            df: move |g: &Tensor<T>, x: &[&Tensor<T>], y: &Tensor<T>, _: &[bool]| {
                let shape = x[0].shape();
                let ratio = g.zip_map(y, "norm_l2", |g, y| if y > T::zero() { g / y } else { T::zero() });
                Ok(vec![Some(x[0].mul(&expand_back(&ratio, shape, &ax)))])
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
    fn max_routes_to_first_maximum() {
        // x = [[1, 5, 5], [-1, 0, 2]]; y = Σ_rows max_j x_ij → ∂x is 1 at (0, 1) and (1, 2).
        let tape = Tape::new();
        let x = tape.leaf(Tensor::<f64>::from_vec(vec![1.0, 5.0, 5.0, -1.0, 0.0, 2.0], &[2, 3]));
        let g = tape.backward(&x.max(&[1], false).sum_all()).unwrap();
        assert_eq!(g.get(&x).unwrap().to_vec(), vec![0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn mean_over_two_axes() {
        // y = mean over axes {0, 2} of a [2, 3, 4] tensor, summed: ∂x = 1/8 everywhere.
        let tape = Tape::new();
        let x = tape.leaf(Tensor::<f64>::zeros(&[2, 3, 4]));
        let g = tape.backward(&x.mean(&[0, 2], false).sum_all()).unwrap();
        assert_eq!(g.get(&x).unwrap().to_vec(), vec![0.125; 24]);
    }
}
