//! Softmax, log-softmax and cross-entropy with integer labels, all shifted by the maximum so
//! they cannot overflow.

use crate::{Element, Tensor};

/// How a per-sample loss is reduced over the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    Mean,
    Sum,
}

impl<T: Element> Tensor<T> {
    /// `x − max(x)` along `axis` (with `−∞` rows left at `−∞ − 0`), the shift that makes
    /// `exp` safe.
    fn shifted(&self, axis: usize, op: &str) -> Tensor<T> {
        assert!(axis < self.rank(), "{op}: axis {axis} out of range for shape {:?}", self.shape());
        let m = self.max(&[axis], true).map(|v| if v.is_finite() { v } else { T::zero() });
        self.sub(&m)
    }

    /// `exp(x − m) / Σ exp(x − m)` along `axis`, with `m` the maximum.
    #[track_caller]
    pub fn softmax(&self, axis: usize) -> Tensor<T> {
        let e = self.shifted(axis, "softmax").exp();
        let s = e.sum(&[axis], true);
        e.div(&s)
    }

    /// `(x − m) − log Σ exp(x − m)` along `axis`, with `m` the maximum (PyTorch's order of
    /// operations, which keeps full relative precision in each entry).
    #[track_caller]
    pub fn log_softmax(&self, axis: usize) -> Tensor<T> {
        let z = self.shifted(axis, "log_softmax");
        let lse = z.exp().sum(&[axis], true).log();
        z.sub(&lse)
    }

    /// Cross-entropy of `[N, C]` logits against integer labels in `0..C`:
    /// `−log_softmax(x)[i, y_i]`, averaged (`Mean`) or summed over the batch. Returns the
    /// rank-0 loss and the log-softmax (which the backward rule reuses). The mean over an empty
    /// batch is NaN (as in PyTorch); the sum is 0.
    /// **Panics** on a shape mismatch or a label out of range (naming the row).
    #[track_caller]
    pub fn cross_entropy_with_log_softmax(&self, labels: &[usize], reduction: Reduction) -> (Tensor<T>, Tensor<T>) {
        assert_eq!(self.rank(), 2, "cross_entropy: logits must be [N, C], got {:?}", self.shape());
        let (n, c) = (self.dim(0), self.dim(1));
        assert_eq!(labels.len(), n, "cross_entropy: {} labels for logits of shape {:?}", labels.len(), self.shape());
        if let Some((i, &y)) = labels.iter().enumerate().find(|(_, &y)| y >= c) {
            panic!("cross_entropy: label {y} of row {i} is out of range for {c} classes");
        }
        let ls = self.log_softmax(1);
        let mut total = T::zero();
        for (i, &y) in labels.iter().enumerate() {
            total -= ls.get(&[i, y]);
        }
        if reduction == Reduction::Mean {
            // An empty batch gives 0/0 = NaN, as in PyTorch.
            total /= T::of(n as f64);
        }
        (Tensor::scalar(total), ls)
    }

    /// Cross-entropy loss (see [`Tensor::cross_entropy_with_log_softmax`]).
    #[track_caller]
    pub fn cross_entropy(&self, labels: &[usize], reduction: Reduction) -> Tensor<T> {
        self.cross_entropy_with_log_softmax(labels, reduction).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_rows_sum_to_one_and_are_shift_invariant() {
        let x = Tensor::<f64>::from_vec(vec![1.0, 2.0, 3.0, 1000.0, 1001.0, 1002.0], &[2, 3]);
        let s = x.softmax(1);
        let sums = s.sum(&[1], false).to_vec();
        assert!(sums.iter().all(|v| (v - 1.0).abs() < 4.0 * f64::EPSILON));
        assert!(s.select(0, 0).allclose(&s.select(0, 1), 1e-12, 0.0));
    }

    #[test]
    fn cross_entropy_of_uniform_logits_is_log_c() {
        let x = Tensor::<f64>::zeros(&[4, 10]);
        let l = x.cross_entropy(&[0, 3, 9, 1], Reduction::Mean).item();
        assert!((l - 10f64.ln()).abs() < 1e-14);
        let s = x.cross_entropy(&[0, 3, 9, 1], Reduction::Sum).item();
        assert!((s - 4.0 * 10f64.ln()).abs() < 1e-13);
    }

    #[test]
    #[should_panic(expected = "cross_entropy: label 10 of row 1 is out of range for 10 classes")]
    fn label_out_of_range() {
        let _ = Tensor::<f32>::zeros(&[2, 10]).cross_entropy(&[0, 10], Reduction::Mean);
    }
}
