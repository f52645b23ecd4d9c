//! Softmax, log-softmax and cross-entropy, each with a fused rule (checked against the
//! composite `x − logsumexp(x)` by the gradient-check suite).
//!
//! * softmax `y = eˣ/Σeˣ`: `∂x = y ⊙ (g − Σ_axis g ⊙ y)`
//! * log-softmax `y = x − logsumexp(x)`: `∂x = g − eʸ ⊙ Σ_axis g`
//! * cross-entropy `L = −(1/N)Σ_i log_softmax(x)_{i,yᵢ}` (Mean) or without `1/N` (Sum):
//!   `∂x = g·(softmax(x) − onehot(y)) / N` (Mean) or without `/N` (Sum)

pub use engine::kernels::softmax::Reduction;
use engine::{Element, Tensor};

use crate::backward::FnRule;
use crate::tape::Var;

impl<'t, T: Element> Var<'t, T> {
    /// Softmax along `axis`.
    #[track_caller]
    pub fn softmax(&self, axis: usize) -> Var<'t, T> {
        let y = self.value().softmax(axis);
        let rule = FnRule {
            name: "softmax",
            df: move |g: &Tensor<T>, _: &[&Tensor<T>], y: &Tensor<T>, _: &[bool]| {
                let s = g.mul(y).sum(&[axis], true);
                Ok(vec![Some(y.mul(&g.sub(&s)))])
            },
        };
        self.tape().push_op(y, &[*self], rule)
    }

    /// Log-softmax along `axis`.
    #[track_caller]
    pub fn log_softmax(&self, axis: usize) -> Var<'t, T> {
        let y = self.value().log_softmax(axis);
        let rule = FnRule {
            name: "log_softmax",
            df: move |g: &Tensor<T>, _: &[&Tensor<T>], y: &Tensor<T>, _: &[bool]| {
                let s = g.sum(&[axis], true);
                Ok(vec![Some(g.sub(&y.exp().mul(&s)))])
            },
        };
        self.tape().push_op(y, &[*self], rule)
    }

    /// Cross-entropy of `[N, C]` logits with integer labels (a rank-0 loss).
    /// **Panics** on a label out of range, naming the row.
    #[track_caller]
    pub fn cross_entropy(&self, labels: &[usize], reduction: Reduction) -> Var<'t, T> {
        let (loss, log_sm) = self.value().cross_entropy_with_log_softmax(labels, reduction);
        let labels = labels.to_vec();
        let rule = FnRule {
            name: "cross_entropy",
            // Saved: the log-softmax (so the rule does not recompute it) and the labels.
            df: move |g: &Tensor<T>, _: &[&Tensor<T>], _: &Tensor<T>, _: &[bool]| {
                let c = log_sm.dim(1);
                let scale = g.item()
                    / match reduction {
                        Reduction::Mean => T::of(labels.len().max(1) as f64),
                        Reduction::Sum => T::one(),
                    };
                let mut d = log_sm.exp().into_vec();
                for (i, &y) in labels.iter().enumerate() {
                    d[i * c + y] -= T::one();
                }
                d.iter_mut().for_each(|v| *v *= scale);
                Ok(vec![Some(Tensor::from_vec(d, log_sm.shape()))])
            },
        };
        self.tape().push_op(loss, &[*self], rule)
    }
}

#[cfg(test)]
mod tests {
    use super::Reduction;
    use crate::Tape;
    use engine::Tensor;

    #[test]
    fn cross_entropy_gradient_is_softmax_minus_onehot() {
        // Zero logits, 2 classes: softmax = [½, ½]; label 1 → ∂x = ([½, ½] − [0, 1]) / N, N = 1.
        let tape = Tape::new();
        let x = tape.leaf(Tensor::<f64>::zeros(&[1, 2]));
        let g = tape.backward(&x.cross_entropy(&[1], Reduction::Mean)).unwrap();
        assert_eq!(g.get(&x).unwrap().to_vec(), vec![0.5, -0.5]);
    }
}
