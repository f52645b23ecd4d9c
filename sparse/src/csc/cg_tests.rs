//! Conjugate gradients of the implicit CSC gradient ([`super::cg_on_support`]).

use engine::Tensor;

use super::{cg_on_support, CG_DIVERGED_AFTER};
use crate::error::SparseError;
use crate::fista::LinearOperator;

/// `A = I` and a wrong "adjoint" `x ↦ x·Mᵀ`, so CG runs on `M = [[1, 1], [−1, 1]]`: not
/// symmetric, yet `pᵀMp = ‖p‖² > 0` (the skew part cancels), so only the residual shows that
/// the iteration has gone wrong — it grows at every step.
struct Skewed;

impl LinearOperator<f64> for Skewed {
    fn apply(&self, z: &Tensor<f64>) -> Tensor<f64> {
        z.clone()
    }
    fn adjoint(&self, x: &Tensor<f64>) -> Tensor<f64> {
        x.matmul(&Tensor::from_vec(vec![1.0, -1.0, 1.0, 1.0], &[2, 2]))
    }
    fn code_shape(&self, x_shape: &[usize]) -> Vec<usize> {
        x_shape.to_vec()
    }
}

#[test]
fn cg_stops_as_soon_as_the_residual_has_grown_for_the_stated_run() {
    let support = Tensor::from_vec(vec![1.0, 1.0], &[1, 2]);
    let b = Tensor::from_vec(vec![1.0, 0.5], &[1, 2]);
    let err = cg_on_support(&Skewed, &support, b, 1e-8, 100_000, "CG on a skewed matrix").unwrap_err();
    let SparseError::Diverged { sample, iters, rel_residual, grew_for, .. } = err else {
        panic!("expected Diverged, got {err}")
    };
    assert_eq!((sample, grew_for), (0, CG_DIVERGED_AFTER));
    // The residual grows from the first step on, so CG stops after CG_DIVERGED_AFTER steps
    // (allowing a few for a first step that does not grow), not after max_iter.
    assert!((CG_DIVERGED_AFTER..=CG_DIVERGED_AFTER + 3).contains(&iters), "stopped at iteration {iters}");
    assert!(rel_residual > 1.0, "{rel_residual}");
    let msg = err.to_string();
    for part in ["diverged", &format!("iteration {iters}"), &format!("{rel_residual:e}")] {
        assert!(msg.contains(part), "{msg:?} lacks {part:?}");
    }
}

#[test]
fn cg_still_converges_on_a_positive_definite_system() {
    // A = I, Aᵀ = I: β = b in one step.
    struct Identity;
    impl LinearOperator<f64> for Identity {
        fn apply(&self, z: &Tensor<f64>) -> Tensor<f64> {
            z.clone()
        }
        fn adjoint(&self, x: &Tensor<f64>) -> Tensor<f64> {
            x.clone()
        }
        fn code_shape(&self, x_shape: &[usize]) -> Vec<usize> {
            x_shape.to_vec()
        }
    }
    let support = Tensor::from_vec(vec![1.0, 0.0, 1.0], &[1, 3]);
    let b = Tensor::from_vec(vec![2.0, 7.0, -1.0], &[1, 3]);
    let (beta, iters) = cg_on_support(&Identity, &support, b, 1e-12, 10, "CG on I").unwrap();
    assert_eq!((beta.to_vec(), iters), (vec![2.0, 0.0, -1.0], 1));
}
