//! Softmax, log-softmax and cross-entropy with integer labels, all shifted by the maximum so
//! they cannot overflow.
//!
//! Over the last axis (or any axis followed only by axes of length 1) each row is one call of
//! the vectorised row kernel [`vmath::softmax_rows`](crate::kernels::vmath): maximum, `exp`
//! and sum fused per row, with the same shift, the same `exp` and the same order of additions
//! as the composed kernels, so both paths give the same bits.

use std::mem::MaybeUninit;

use crate::kernels::elementwise::fresh;
use crate::kernels::vmath;
use crate::{Element, Tensor, PAR_CHUNK};

/// How a per-sample loss is reduced over the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    Mean,
    Sum,
}

impl<T: Element> Tensor<T> {
    /// The fused path of softmax and log-softmax: when every axis after `axis` has length 1
    /// (the usual last axis), the contiguous input is a stack of rows of `n = dim(axis)` and
    /// `f(rows, out_rows, n)` fills whole output rows, in parallel in fixed pieces of rows.
    /// Each row is computed exactly as the composed kernels would (same shift, same summation
    /// order), so both paths give the same bits. `None` for the other layouts, an empty axis
    /// (which the composed path reports) or an empty tensor.
    fn by_rows(&self, axis: usize, f: impl Fn(&[T], &mut [MaybeUninit<T>], usize) + Sync + Send) -> Option<Tensor<T>> {
        if axis >= self.rank() || self.shape()[axis + 1..].iter().any(|&d| d != 1) || self.numel() == 0 {
            return None;
        }
        let n = self.dim(axis);
        let x = self.contiguous();
        let xs = x.as_slice().expect("contiguous");
        // A kept buffer (`recycle`) or fresh pages, not zeroed: `f` writes every element
        // (before reading it back).
        let out = fresh(xs.len(), |out| {
            let rows_per_piece = (PAR_CHUNK / n).max(1);
            if xs.len() >= 2 * PAR_CHUNK && rayon::current_num_threads() > 1 {
                crate::par::chunks_mut(out, rows_per_piece * n, &|c, op| {
                    let lo = c * rows_per_piece * n;
                    f(&xs[lo..lo + op.len()], op, n)
                });
            } else {
                f(xs, out, n);
            }
        });
        Some(Tensor::from_vec(out, self.shape()))
    }

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
        if let Some(out) = self.by_rows(axis, |x, out, n| vmath::softmax_rows(x, out, n, false)) {
            return out;
        }
        let e = self.shifted(axis, "softmax").exp();
        let s = e.sum(&[axis], true);
        e.div(&s)
    }

    /// `(x − m) − log Σ exp(x − m)` along `axis`, with `m` the maximum (PyTorch's order of
    /// operations, which keeps full relative precision in each entry).
    #[track_caller]
    pub fn log_softmax(&self, axis: usize) -> Tensor<T> {
        if let Some(out) = self.by_rows(axis, |x, out, n| vmath::softmax_rows(x, out, n, true)) {
            return out;
        }
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

    /// The composed definition the fused row path must reproduce bit for bit.
    fn composed<T: Element>(x: &Tensor<T>, axis: usize, log: bool) -> Tensor<T> {
        let m = x.max(&[axis], true).map(|v| if v.is_finite() { v } else { T::zero() });
        let z = x.sub(&m);
        let s = z.exp().sum(&[axis], true);
        if log {
            z.sub(&s.log())
        } else {
            z.exp().div(&s)
        }
    }

    fn same_bits<T: Element>(a: &Tensor<T>, b: &Tensor<T>, what: &str) {
        assert_eq!(a.shape(), b.shape(), "{what}");
        for (i, (x, y)) in a.to_vec().iter().zip(b.to_vec()).enumerate() {
            assert!(x == &y || (x.is_nan() && y.is_nan()), "{what}: element {i}: {x:?} vs {y:?}");
        }
    }

    #[test]
    fn fused_rows_match_the_composed_kernels_bit_for_bit() {
        let mut rng = crate::Rng::new(7);
        let mut x = Tensor::<f64>::randn(&[6, 9], &mut rng).mul_scalar(30.0).to_vec();
        x[9] = f64::NAN; // row 1
        x[18..27].fill(f64::NEG_INFINITY); // row 2: all −∞
        x[27] = f64::INFINITY; // row 3
        x[37] = x[36]; // a tie in row 4
        let x = Tensor::from_vec(x, &[6, 9]);
        let wide = Tensor::<f32>::randn(&[3, 3 * PAR_CHUNK + 17], &mut rng); // rows cut in pieces
        let many = Tensor::<f32>::randn(&[4 * PAR_CHUNK / 8 + 3, 8], &mut rng); // parallel pieces
        for log in [false, true] {
            let op = |t: &Tensor<f64>, a: usize| if log { t.log_softmax(a) } else { t.softmax(a) };
            let op32 = |t: &Tensor<f32>, a: usize| if log { t.log_softmax(a) } else { t.softmax(a) };
            same_bits(&op(&x, 1), &composed(&x, 1, log), "rows with NaN, −∞, +∞, ties");
            same_bits(&op(&x.t(), 1), &composed(&x.t(), 1, log), "transposed view");
            same_bits(&op(&x.unsqueeze(2), 1), &composed(&x.unsqueeze(2), 1, log), "trailing axis of 1");
            same_bits(&op(&x, 0), &composed(&x, 0, log), "first axis (composed path)");
            same_bits(&op32(&wide, 1), &composed(&wide, 1, log), "rows longer than PAR_CHUNK");
            same_bits(&op32(&many, 1), &composed(&many, 1, log), "many rows");
        }
    }

    /// Rows of every length around the 32-lane blocks of the row kernel, with NaN, ±∞, an
    /// all-−∞ row and ties, in f32 and f64: the fused rows give the composed bits.
    #[test]
    fn fused_rows_of_odd_lengths_match_the_composed_kernels() {
        let mut rng = crate::Rng::new(8);
        for n in [1usize, 2, 3, 7, 15, 16, 17, 31, 32, 33, 1000] {
            let rows = 6;
            let mut x = Tensor::<f64>::randn(&[rows, n], &mut rng).mul_scalar(10.0).to_vec();
            x[n + n / 2] = f64::NAN; // row 1
            x[2 * n..3 * n].fill(f64::NEG_INFINITY); // row 2
            x[3 * n + n - 1] = f64::INFINITY; // row 3
            x[4 * n] = f64::NEG_INFINITY; // row 4
            x[5 * n..6 * n].fill(0.5); // row 5: all tied
            let x = Tensor::from_vec(x, &[rows, n]);
            let x32 = Tensor::from_vec(x.to_vec().iter().map(|&v| v as f32).collect(), &[rows, n]);
            for log in [false, true] {
                let got = if log { x.log_softmax(1) } else { x.softmax(1) };
                same_bits(&got, &composed(&x, 1, log), &format!("f64 n = {n}, log = {log}"));
                let got = if log { x32.log_softmax(1) } else { x32.softmax(1) };
                same_bits(&got, &composed(&x32, 1, log), &format!("f32 n = {n}, log = {log}"));
            }
        }
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
