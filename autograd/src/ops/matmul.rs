//! Matrix product (PyTorch `matmul` semantics, batched with broadcasting).
//! `Y = A·B`: `∂A = G·Bᵀ`, `∂B = Aᵀ·G` (transposes of the last two axes, as views), then
//! summed over broadcast batch axes. 1-D operands are promoted with `unsqueeze` on the tape.

use engine::{Element, Tensor};

use crate::backward::FnRule;
use crate::ops::sum_to;
use crate::tape::Var;

fn mt<T: Element>(t: &Tensor<T>) -> Tensor<T> {
    t.transpose(t.rank() - 2, t.rank() - 1)
}

impl<'t, T: Element> Var<'t, T> {
    /// Matrix product; see [`engine::Tensor::matmul`] for the shape rules.
    #[track_caller]
    pub fn matmul(&self, other: &Var<'t, T>) -> Var<'t, T> {
        let (ra, rb) = (self.rank(), other.rank());
        assert!(
            ra >= 1 && rb >= 1,
            "matmul: operands must have at least one axis: {:?} × {:?}",
            self.shape(),
            other.shape()
        );
        if ra == 1 {
            let y = self.unsqueeze(0).matmul(other);
            return y.squeeze(y.rank() - if rb == 1 { 1 } else { 2 });
        }
        if rb == 1 {
            let y = self.matmul(&other.unsqueeze(1));
            return y.squeeze(y.rank() - 1);
        }
        let y = self.value().matmul(&other.value());
        let rule = FnRule {
            name: "matmul",
            df: |g: &Tensor<T>, x: &[&Tensor<T>], _: &Tensor<T>, needed: &[bool]| {
                let ga = needed[0].then(|| sum_to(&g.matmul(&mt(x[1])), x[0].shape()));
                let gb = needed[1].then(|| sum_to(&mt(x[0]).matmul(g), x[1].shape()));
                Ok(vec![ga, gb])
            },
        };
        self.tape().push_op(y, &[*self, *other], rule)
    }
}

#[cfg(test)]
mod tests {
    use crate::Tape;
    use engine::Tensor;

    #[test]
    fn matrix_vector_gradients() {
        // y = Σ (A·v) with A = [[1, 2], [3, 4]], v = [5, 6]
        // ∂A_ij = v_j → [[5, 6], [5, 6]];  ∂v_j = Σ_i A_ij → [4, 6]
        let tape = Tape::new();
        let a = tape.leaf(Tensor::<f64>::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]));
        let v = tape.leaf(Tensor::<f64>::from([5.0, 6.0]));
        let g = tape.backward(&a.matmul(&v).sum_all()).unwrap();
        assert_eq!(g.get(&a).unwrap().to_vec(), vec![5.0, 6.0, 5.0, 6.0]);
        assert_eq!(g.get(&v).unwrap().to_vec(), vec![4.0, 6.0]);
    }
}
