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

/// The audit cases of this family (collected by [`crate::audit::cases`]).
pub(crate) mod cases {
    use crate::audit_case::inputs::*;
    use crate::audit_case::AuditCase;
    use engine::Tensor;

    use crate::check::CheckOptions;

    pub(crate) fn all(out: &mut Vec<AuditCase>) {
        let mut rng = rng_for("matmul", 0);
        let d = dims(&mut rng, 4, 2, 5);
        let (m, k, n, b) = (d[0], d[1], d[2], d[3]);
        let mut push = |input: String, x: Tensor<f64>, y: Tensor<f64>, opts: CheckOptions| {
            out.push(AuditCase::gradcheck("matmul", input, vec![x, y], opts, |_, v| v[0].matmul(&v[1])));
        };
        let any = Dom::Any;
        let views = [
            (View::Contiguous, View::Contiguous),
            (View::Transposed, View::Contiguous),
            (View::Contiguous, View::Transposed),
            (View::Transposed, View::Transposed),
            (View::Sliced, View::Sliced),
        ];
        for (va, vb) in views {
            push(
                format!("{} · {}", describe(va, &[m, k]), describe(vb, &[k, n])),
                make(va, &[m, k], any, &mut rng),
                make(vb, &[k, n], any, &mut rng),
                default(),
            );
        }
        push(
            format!("batched contiguous [{b}, {m}, {k}] · [{b}, {k}, {n}]"),
            tensor(any, &[b, m, k], &mut rng),
            tensor(any, &[b, k, n], &mut rng),
            default(),
        );
        push(
            format!("batched permuted view [{b}, {m}, {k}] · [{k}, {n}] (broadcast)"),
            make(View::Permuted, &[b, m, k], any, &mut rng),
            tensor(any, &[k, n], &mut rng),
            default(),
        );
        push(
            format!("broadcast batch [2, 1, {m}, {k}] · [3, {k}, {n}]"),
            tensor(any, &[2, 1, m, k], &mut rng),
            tensor(any, &[3, k, n], &mut rng),
            default(),
        );
        push(
            format!("vector [{k}] · matrix [{k}, {n}]"),
            tensor(any, &[k], &mut rng),
            tensor(any, &[k, n], &mut rng),
            default(),
        );
        push(
            format!("transposed view [{m}, {k}] · vector [{k}]"),
            make(View::Transposed, &[m, k], any, &mut rng),
            tensor(any, &[k], &mut rng),
            default(),
        );
        push(
            format!("vector [{k}] · vector [{k}]"),
            tensor(any, &[k], &mut rng),
            tensor(any, &[k], &mut rng),
            default(),
        );
        push(
            format!("vector [{k}] · batched [{b}, {k}, {n}]"),
            tensor(any, &[k], &mut rng),
            tensor(any, &[b, k, n], &mut rng),
            default(),
        );
        // 64·256·2048 = 2²⁵ multiply-adds: the engine splits the columns into parallel blocks.
        push(
            "contiguous [64, 256] · transposed view [256, 2048] (column blocks); 10 sampled elements".to_string(),
            tensor(Dom::Range(-1.0, 1.0), &[64, 256], &mut rng),
            make(View::Transposed, &[256, 2048], Dom::Range(-1.0, 1.0), &mut rng),
            default().max_elements(10),
        );
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
