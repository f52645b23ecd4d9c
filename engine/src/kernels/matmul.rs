//! Matrix products through `matrixmultiply`, which takes a row and a column stride for every
//! operand: transposed and sliced views are multiplied in place, never copied.
//!
//! Parallelism: batches are spread over rayon; a single large product is split into column
//! blocks, one per rayon thread (at most four, and none for small products). The result is
//! bit-identical for any number of blocks, hence any number of threads: `matrixmultiply`
//! computes every element of C from the same packed k-panels in the same order (its k blocking
//! does not depend on n, and partial tiles go through the same micro-kernel), so splitting the
//! columns of B and C only changes which call computes an element, not how.

use rayon::prelude::*;

use crate::layout::broadcast_shape;
use crate::{Element, Tensor};

/// A read-only strided matrix inside a slice: element `(i, j)` is `data[offset + i·rs + j·cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    pub data: &'a [T],
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub rs: isize,
    pub cs: isize,
}

impl<'a, T: Element> MatRef<'a, T> {
    /// A row-major `rows × cols` matrix starting at `offset`.
    pub fn row_major(data: &'a [T], offset: usize, rows: usize, cols: usize) -> Self {
        MatRef { data, offset, rows, cols, rs: cols as isize, cs: 1 }
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        MatRef { rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs, ..self }
    }

    /// The matrix view of a rank-2 tensor.
    #[track_caller]
    pub fn of(t: &'a Tensor<T>) -> Self {
        assert_eq!(t.rank(), 2, "MatRef::of: expected a matrix, got shape {:?}", t.shape());
        MatRef {
            data: t.storage(),
            offset: t.offset(),
            rows: t.dim(0),
            cols: t.dim(1),
            rs: t.strides()[0],
            cs: t.strides()[1],
        }
    }

    #[track_caller]
    fn check(&self, what: &str) {
        if self.rows == 0 || self.cols == 0 {
            return;
        }
        let mut lo = self.offset as isize;
        let mut hi = self.offset as isize;
        for (n, s) in [(self.rows, self.rs), (self.cols, self.cs)] {
            let e = (n as isize - 1) * s;
            if e < 0 {
                lo += e
            } else {
                hi += e
            }
        }
        assert!(
            lo >= 0 && (hi as usize) < self.data.len(),
            "gemm: {what} ({}×{}, strides {}, {}, offset {}) reaches outside its buffer of {}",
            self.rows,
            self.cols,
            self.rs,
            self.cs,
            self.offset,
            self.data.len()
        );
    }
}

/// Checks `C` (row-major `m × n`, row stride `ldc`, at `c_offset`) against its buffer.
#[track_caller]
fn check_c(m: usize, n: usize, c_len: usize, c_offset: usize, ldc: usize) {
    assert!(ldc >= n, "gemm: ldc {ldc} is smaller than n {n}");
    assert!(
        m == 0 || n == 0 || c_offset + (m - 1) * ldc + n <= c_len,
        "gemm: C ({m}×{n}, ldc {ldc}, offset {c_offset}) exceeds its buffer of {c_len}"
    );
}

/// The raw call. Callers have checked A, B and C against their buffers.
unsafe fn gemm_unchecked<T: Element>(alpha: T, a: MatRef<T>, b: MatRef<T>, beta: T, c: *mut T, ldc: usize) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for i in 0..m {
            for j in 0..n {
                let p = c.add(i * ldc + j);
                *p = if beta == T::zero() { T::zero() } else { beta * *p };
            }
        }
        return;
    }
    T::gemm(
        m,
        k,
        n,
        alpha,
        a.data.as_ptr().add(a.offset),
        a.rs,
        a.cs,
        b.data.as_ptr().add(b.offset),
        b.rs,
        b.cs,
        beta,
        c,
        ldc as isize,
        1,
    )
}

/// `C ← α·A·B + β·C` on one thread, with `C` row-major `m × n` at `c[c_offset..]` with row
/// stride `ldc`. Bounds are checked, so the function is safe.
/// **Panics** on inconsistent dimensions or out-of-bounds views.
#[track_caller]
pub fn gemm<T: Element>(alpha: T, a: MatRef<T>, b: MatRef<T>, beta: T, c: &mut [T], c_offset: usize, ldc: usize) {
    assert_eq!(a.cols, b.rows, "gemm: inner dimensions differ: {}×{} · {}×{}", a.rows, a.cols, b.rows, b.cols);
    check_c(a.rows, b.cols, c.len(), c_offset, ldc);
    if a.rows == 0 || b.cols == 0 {
        return;
    }
    a.check("A");
    b.check("B");
    // SAFETY: A, B and C were bounds-checked above; C is a distinct mutable slice, so it
    // cannot alias A or B.
    unsafe { gemm_unchecked(alpha, a, b, beta, c.as_mut_ptr().add(c_offset), ldc) }
}

/// Number of column blocks a product of this size is split into on `threads` threads.
///
/// One block per thread: every block packs all of A again, so extra blocks on one thread only
/// cost time (at n = 1024 on one thread, four blocks were 29% slower than one call). The
/// count may depend on the thread count because column blocks never change the bits (see the
/// module docs and `any_column_split_gives_the_same_bits`).
fn column_blocks(m: usize, k: usize, n: usize, threads: usize) -> usize {
    let flops = m.saturating_mul(k).saturating_mul(n);
    if n < 128 {
        return 1;
    }
    (flops >> 24).clamp(1, 4).min(n / 64).min(threads.max(1))
}

/// A pointer that may be sent to other threads; each user writes a disjoint region.
#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    // A method (rather than `.0`) so closures capture the whole `Send` wrapper.
    fn get(self) -> *mut T {
        self.0
    }
}

/// Like [`gemm`] but splits large products into column blocks run on rayon.
#[track_caller]
pub fn par_gemm<T: Element>(alpha: T, a: MatRef<T>, b: MatRef<T>, beta: T, c: &mut [T], c_offset: usize, ldc: usize) {
    assert_eq!(a.cols, b.rows, "gemm: inner dimensions differ: {}×{} · {}×{}", a.rows, a.cols, b.rows, b.cols);
    let (m, k, n) = (a.rows, a.cols, b.cols);
    gemm_in_blocks(column_blocks(m, k, n, rayon::current_num_threads()), alpha, a, b, beta, c, c_offset, ldc);
}

/// [`gemm`] computed as `blocks` column blocks on rayon.
#[allow(clippy::too_many_arguments)]
#[track_caller]
fn gemm_in_blocks<T: Element>(
    blocks: usize,
    alpha: T,
    a: MatRef<T>,
    b: MatRef<T>,
    beta: T,
    c: &mut [T],
    c_offset: usize,
    ldc: usize,
) {
    let (m, n) = (a.rows, b.cols);
    if blocks <= 1 || m == 0 {
        return gemm(alpha, a, b, beta, c, c_offset, ldc);
    }
    check_c(m, n, c.len(), c_offset, ldc);
    a.check("A");
    b.check("B");
    // Block width: a multiple of 64 so block edges fall on micro-kernel tile edges.
    let width = n.div_ceil(blocks).div_ceil(64) * 64;
    let starts: Vec<usize> = (0..n).step_by(width).collect();
    // SAFETY: offset checked by `check_c`.
    let c0 = SendPtr(unsafe { c.as_mut_ptr().add(c_offset) });
    starts.par_iter().for_each(|&j0| {
        let j1 = (j0 + width).min(n);
        let bj = MatRef { offset: (b.offset as isize + j0 as isize * b.cs) as usize, cols: j1 - j0, ..b };
        // SAFETY: the blocks write disjoint column ranges j0..j1 of C, all inside the buffer
        // checked above; A and B are within theirs.
        unsafe { gemm_unchecked(alpha, a, bj, beta, c0.get().add(j0), ldc) };
    });
}

impl<T: Element> Tensor<T> {
    /// Matrix product with PyTorch's `matmul` semantics: 1-D operands are promoted to a row
    /// (left) or column (right) vector and the added axis removed afterwards; leading (batch)
    /// axes broadcast. `[.., m, k] × [.., k, n] → [.., m, n]`. Transposed and sliced views are
    /// multiplied without copying.
    /// **Panics** if the inner dimensions differ or the batch shapes cannot broadcast.
    #[track_caller]
    pub fn matmul(&self, other: &Tensor<T>) -> Tensor<T> {
        assert!(
            self.rank() >= 1 && other.rank() >= 1,
            "matmul: operands must have at least one axis: {:?} × {:?}",
            self.shape(),
            other.shape()
        );
        let a = if self.rank() == 1 { self.unsqueeze(0) } else { self.clone() };
        let b = if other.rank() == 1 { other.unsqueeze(1) } else { other.clone() };
        let (ra, rb) = (a.rank(), b.rank());
        let (m, k) = (a.dim(ra - 2), a.dim(ra - 1));
        let (k2, n) = (b.dim(rb - 2), b.dim(rb - 1));
        assert_eq!(k, k2, "matmul: inner dimensions differ: {:?} × {:?}", self.shape(), other.shape());
        let batch = broadcast_shape(&a.shape()[..ra - 2], &b.shape()[..rb - 2]).unwrap_or_else(|| {
            panic!("matmul: batch shapes of {:?} and {:?} cannot be broadcast", self.shape(), other.shape())
        });
        let mut full_a = batch.clone();
        full_a.extend([m, k]);
        let mut full_b = batch.clone();
        full_b.extend([k, n]);
        let a = a.broadcast_to(&full_a);
        let b = b.broadcast_to(&full_b);
        let nb: usize = batch.iter().product();
        let mut out = vec![T::zero(); nb * m * n];
        let br = batch.len();
        let a_offs: Vec<usize> =
            crate::Layout { shape: batch.clone(), strides: a.strides()[..br].to_vec(), offset: a.offset() }
                .offsets()
                .collect();
        let b_offs: Vec<usize> =
            crate::Layout { shape: batch.clone(), strides: b.strides()[..br].to_vec(), offset: b.offset() }
                .offsets()
                .collect();
        fn mat<T: Element>(t: &Tensor<T>, br: usize, off: usize, rows: usize, cols: usize) -> MatRef<'_, T> {
            MatRef { data: t.storage(), offset: off, rows, cols, rs: t.strides()[br], cs: t.strides()[br + 1] }
        }
        if nb == 1 {
            par_gemm(T::one(), mat(&a, br, a_offs[0], m, k), mat(&b, br, b_offs[0], k, n), T::zero(), &mut out, 0, n);
        } else if m * n > 0 {
            let one = |(i, c): (usize, &mut [T])| {
                gemm(T::one(), mat(&a, br, a_offs[i], m, k), mat(&b, br, b_offs[i], k, n), T::zero(), c, 0, n)
            };
            // On one thread, stay on the caller: handing the batch to the pool only adds latency.
            if rayon::current_num_threads() > 1 {
                out.par_chunks_mut(m * n).enumerate().for_each(one);
            } else {
                out.chunks_mut(m * n).enumerate().for_each(one);
            }
        }
        let mut shape = batch;
        if self.rank() > 1 {
            shape.push(m);
        }
        if other.rank() > 1 {
            shape.push(n);
        }
        Tensor::from_vec(out, &shape)
    }
}

/// Naive triple loop in `f64` (reference for tests and benches); 2-D operands only.
pub mod naive {
    use crate::{Element, Tensor};

    pub fn matmul<T: Element>(a: &Tensor<T>, b: &Tensor<T>) -> Tensor<T> {
        let (m, k, n) = (a.dim(0), a.dim(1), b.dim(1));
        assert_eq!(k, b.dim(0));
        Tensor::from_fn(&[m, n], |ix| {
            let mut s = 0f64;
            for p in 0..k {
                s += a.get(&[ix[0], p]).as_f64() * b.get(&[p, ix[1]]).as_f64();
            }
            T::of(s)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;

    #[test]
    fn matmul_matches_naive_on_strided_views() {
        let mut rng = Rng::new(1);
        for &(m, k, n) in &[(0, 3, 2), (1, 1, 1), (3, 0, 4), (5, 7, 3), (17, 9, 33), (8, 0, 10), (64, 40, 300)] {
            let a = Tensor::<f64>::randn(&[k, m], &mut rng).t(); // transposed view
            let b = Tensor::<f64>::randn(&[k, 2 * n], &mut rng).slice(1, 0, 2 * n, 2); // strided
            let got = a.matmul(&b);
            let want = naive::matmul(&a, &b);
            assert_eq!(got.shape(), &[m, n]);
            assert!(got.allclose(&want, 1e-12, 1e-12), "({m}, {k}, {n})");
        }
    }

    #[test]
    fn batched_broadcast_and_vectors() {
        let mut rng = Rng::new(2);
        let a = Tensor::<f64>::randn(&[2, 1, 3, 4], &mut rng);
        let b = Tensor::<f64>::randn(&[5, 4, 2], &mut rng);
        let c = a.matmul(&b);
        assert_eq!(c.shape(), &[2, 5, 3, 2]);
        let want = naive::matmul(&a.select(0, 1).select(0, 0), &b.select(0, 3));
        assert!(c.select(0, 1).select(0, 3).allclose(&want, 1e-12, 0.0));
        let v = Tensor::<f64>::randn(&[4], &mut rng);
        assert_eq!(a.select(0, 0).select(0, 0).matmul(&v).shape(), &[3]);
        assert_eq!(v.matmul(&b).shape(), &[5, 2]);
        assert_eq!(v.matmul(&v).shape(), &[] as &[usize]);
    }

    #[test]
    fn column_blocks_do_not_change_bits() {
        let mut rng = Rng::new(5);
        let a = Tensor::<f32>::randn(&[300, 200], &mut rng);
        let b = Tensor::<f32>::randn(&[200, 700], &mut rng);
        let mut whole = vec![0f32; 300 * 700];
        gemm(1.0, MatRef::of(&a), MatRef::of(&b), 0.0, &mut whole, 0, 700);
        assert!(column_blocks(300, 200, 700, 2) > 1);
        assert_eq!(a.matmul(&b).to_vec(), whole);
    }

    /// Every block count gives the bits of one call, including k > 256 (several k-panels, so
    /// C is accumulated with β = 1 after the first), transposed A, odd sizes and β ≠ 0.
    #[test]
    fn any_column_split_gives_the_same_bits() {
        let mut rng = Rng::new(6);
        for &(m, k, n) in &[(129, 600, 515), (64, 1000, 300), (7, 257, 1024), (300, 33, 130)] {
            let a = Tensor::<f32>::randn(&[k, m], &mut rng).t();
            let b = Tensor::<f32>::randn(&[k, n], &mut rng);
            let c0: Vec<f32> = Tensor::<f32>::randn(&[m, n], &mut rng).to_vec();
            for beta in [0.0, 0.5] {
                let mut whole = c0.clone();
                gemm(1.5, MatRef::of(&a), MatRef::of(&b), beta, &mut whole, 0, n);
                for blocks in 2..=4 {
                    let mut split = c0.clone();
                    gemm_in_blocks(blocks, 1.5, MatRef::of(&a), MatRef::of(&b), beta, &mut split, 0, n);
                    assert!(split == whole, "({m}, {k}, {n}), β = {beta}, {blocks} blocks");
                }
            }
        }
    }

    #[test]
    fn one_and_two_threads_give_the_same_bits() {
        let mut rng = Rng::new(7);
        let a = Tensor::<f32>::randn(&[384, 520], &mut rng);
        let b = Tensor::<f32>::randn(&[520, 700], &mut rng);
        let run = |t: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
            pool.install(|| (column_blocks(384, 520, 700, rayon::current_num_threads()), a.matmul(&b).to_vec()))
        };
        let ((b1, one), (b2, two)) = (run(1), run(2));
        assert_eq!((b1, b2), (1, 2));
        assert!(one == two);
    }

    #[test]
    #[should_panic(expected = "matmul: inner dimensions differ: [3, 4] × [5, 2]")]
    fn mismatch_names_shapes() {
        let _ = Tensor::<f32>::zeros(&[3, 4]).matmul(&Tensor::zeros(&[5, 2]));
    }
}
