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
mod pool;
mod reduce;
mod shape;
mod softmax;
mod unary;

pub use softmax::Reduction;

use engine::{Element, Tensor};

use crate::backward::Backward;
use crate::error::Result;
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

/// A rule given by a closure: `df(g, inputs, output) → gradients`.
pub(crate) struct FnRule<F> {
    pub name: &'static str,
    pub df: F,
}

impl<T: Element, F> Backward<T> for FnRule<F>
where
    F: Fn(&Tensor<T>, &[&Tensor<T>], &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>>,
{
    fn name(&self) -> &str {
        self.name
    }
    fn backward(&self, g: &Tensor<T>, inputs: &[&Tensor<T>], output: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        (self.df)(g, inputs, output)
    }
}

impl<'t, T: Element> Var<'t, T> {
    /// Records `y = f(x)` with the rule `∂L/∂x = df(g, x, y)`.
    pub fn unary(
        &self,
        name: &'static str,
        f: impl FnOnce(&Tensor<T>) -> Tensor<T>,
        df: impl Fn(&Tensor<T>, &Tensor<T>, &Tensor<T>) -> Tensor<T> + 'static,
    ) -> Var<'t, T> {
        let y = f(&self.value());
        let rule =
            FnRule { name, df: move |g: &Tensor<T>, x: &[&Tensor<T>], y: &Tensor<T>| Ok(vec![Some(df(g, x[0], y))]) };
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
            df: move |g: &Tensor<T>, x: &[&Tensor<T>], y: &Tensor<T>| {
                let (ga, gb) = df(g, x[0], x[1], y);
                Ok(vec![Some(sum_to(&ga, x[0].shape())), Some(sum_to(&gb, x[1].shape()))])
            },
        };
        self.tape().push_op(y, &[*self, *other], rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_to_reduces_broadcast_axes() {
        let g = Tensor::<f64>::ones(&[2, 3, 4]);
        assert_eq!(sum_to(&g, &[3, 1]).to_vec(), vec![8.0; 3]);
        assert_eq!(sum_to(&g, &[4]).to_vec(), vec![6.0; 4]);
        assert_eq!(sum_to(&g, &[]).item(), 24.0);
    }
}
