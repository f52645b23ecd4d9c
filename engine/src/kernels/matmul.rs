//! Matrix products. Every operand may have any row and column stride: transposed and sliced
//! views are multiplied in place, never copied.
//!
//! Two backends compute `C ← α·A·B + β·C`: the packed GEMM of `matmul/packed.rs` (SIMD
//! micro-kernels, AVX-512 or AVX2 + FMA, chosen at run time) and, on CPUs without those,
//! `matrixmultiply`.
//!
//! Parallelism: batches are spread over rayon; a single large product is cut by the packed
//! GEMM into tasks that share its packed operands (each operand packed once, whatever the
//! number of threads), or, with `matrixmultiply`, into column blocks, one per rayon thread.
//! Either way the result is bit-identical for any number of threads: every element of C is
//! computed from the same packed k-panels in the same order (the k blocking does not depend on
//! how M and N are cut, and edge tiles go through the same micro-kernel), so cutting M and N
//! only changes which task computes an element, not how.

use crate::kernels::simd::Isa;
use crate::kernels::SendPtr;
use crate::layout::broadcast_shape;
use crate::{Element, Tensor};

mod packed;

/// Which kernels compute a product: the public functions use the packed GEMM when the CPU has
/// an instruction set for it and `matrixmultiply` otherwise; tests pin each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Packed(Isa),
    MatrixMultiply,
}

impl Backend {
    /// The backend of this CPU (detected once).
    pub(crate) fn detect() -> Backend {
        Isa::vectors().map_or(Backend::MatrixMultiply, Backend::Packed)
    }

    /// Every backend this machine can run (tests compare them).
    #[cfg(test)]
    fn all() -> Vec<Backend> {
        Isa::with_vectors().into_iter().map(Backend::Packed).chain([Backend::MatrixMultiply]).collect()
    }
}

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

/// The raw call on `backend`, on rayon if `parallel` (the packed GEMM only; `matrixmultiply`
/// is split by [`gemm_in_blocks`]). Callers have checked A, B and C against their buffers.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_unchecked<T: Element>(
    backend: Backend,
    parallel: bool,
    alpha: T,
    a: MatRef<T>,
    b: MatRef<T>,
    beta: T,
    c: *mut T,
    ldc: usize,
) {
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
    let (pa, pb) = (a.data.as_ptr().add(a.offset), b.data.as_ptr().add(b.offset));
    match backend {
        Backend::Packed(isa) => packed::gemm(
            isa.checked(),
            parallel,
            (m, k, n),
            alpha,
            packed::Operand { ptr: pa, rs: a.rs, cs: a.cs },
            packed::Operand { ptr: pb, rs: b.rs, cs: b.cs },
            beta,
            c,
            ldc,
        ),
        Backend::MatrixMultiply => T::gemm(m, k, n, alpha, pa, a.rs, a.cs, pb, b.rs, b.cs, beta, c, ldc as isize, 1),
    }
}

/// `C ← α·A·B + β·C` on one thread, with `C` row-major `m × n` at `c[c_offset..]` with row
/// stride `ldc`. Bounds are checked, so the function is safe.
/// **Panics** on inconsistent dimensions or out-of-bounds views.
#[track_caller]
pub fn gemm<T: Element>(alpha: T, a: MatRef<T>, b: MatRef<T>, beta: T, c: &mut [T], c_offset: usize, ldc: usize) {
    gemm_on(Backend::detect(), false, alpha, a, b, beta, c, c_offset, ldc)
}

/// [`gemm`] on `backend`, on rayon when `parallel` (packed backend).
#[allow(clippy::too_many_arguments)]
#[track_caller]
pub(crate) fn gemm_on<T: Element>(
    backend: Backend,
    parallel: bool,
    alpha: T,
    a: MatRef<T>,
    b: MatRef<T>,
    beta: T,
    c: &mut [T],
    c_offset: usize,
    ldc: usize,
) {
    assert_eq!(a.cols, b.rows, "gemm: inner dimensions differ: {}×{} · {}×{}", a.rows, a.cols, b.rows, b.cols);
    check_c(a.rows, b.cols, c.len(), c_offset, ldc);
    if a.rows == 0 || b.cols == 0 {
        return;
    }
    a.check("A");
    b.check("B");
    // SAFETY: A, B and C were bounds-checked above; C is a distinct mutable slice, so it
    // cannot alias A or B.
    unsafe { gemm_unchecked(backend, parallel, alpha, a, b, beta, c.as_mut_ptr().add(c_offset), ldc) }
}

/// Number of column blocks a product of this size is split into on `threads` threads, on the
/// `matrixmultiply` backend.
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

/// Like [`gemm`] but runs large products on rayon (bit-identical to [`gemm`]).
#[track_caller]
pub fn par_gemm<T: Element>(alpha: T, a: MatRef<T>, b: MatRef<T>, beta: T, c: &mut [T], c_offset: usize, ldc: usize) {
    par_gemm_on(Backend::detect(), alpha, a, b, beta, c, c_offset, ldc)
}

/// [`par_gemm`] on `backend`.
#[allow(clippy::too_many_arguments)]
#[track_caller]
fn par_gemm_on<T: Element>(
    backend: Backend,
    alpha: T,
    a: MatRef<T>,
    b: MatRef<T>,
    beta: T,
    c: &mut [T],
    c_offset: usize,
    ldc: usize,
) {
    assert_eq!(a.cols, b.rows, "gemm: inner dimensions differ: {}×{} · {}×{}", a.rows, a.cols, b.rows, b.cols);
    let (m, k, n) = (a.rows, a.cols, b.cols);
    match backend {
        Backend::Packed(_) => gemm_on(backend, true, alpha, a, b, beta, c, c_offset, ldc),
        Backend::MatrixMultiply => {
            gemm_in_blocks(column_blocks(m, k, n, rayon::current_num_threads()), alpha, a, b, beta, c, c_offset, ldc)
        }
    }
}

/// [`gemm`] on `matrixmultiply` computed as `blocks` column blocks on rayon.
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
        return gemm_on(Backend::MatrixMultiply, false, alpha, a, b, beta, c, c_offset, ldc);
    }
    check_c(m, n, c.len(), c_offset, ldc);
    a.check("A");
    b.check("B");
    // Block width: a multiple of 64 so block edges fall on micro-kernel tile edges.
    let width = n.div_ceil(blocks).div_ceil(64) * 64;
    let starts: Vec<usize> = (0..n).step_by(width).collect();
    // SAFETY: offset checked by `check_c`.
    let c0 = SendPtr(unsafe { c.as_mut_ptr().add(c_offset) });
    crate::par::range(starts.len(), &|s| {
        let j0 = starts[s];
        let j1 = (j0 + width).min(n);
        let bj = MatRef { offset: (b.offset as isize + j0 as isize * b.cs) as usize, cols: j1 - j0, ..b };
        // SAFETY: the blocks write disjoint column ranges j0..j1 of C, all inside the buffer
        // checked above; A and B are within theirs.
        unsafe { gemm_unchecked(Backend::MatrixMultiply, false, alpha, a, bj, beta, c0.get().add(j0), ldc) };
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
        let mut out = crate::filled(nb * m * n, T::zero());
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
                crate::par::chunks_mut(&mut out, m * n, &|i, c| one((i, c)));
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
                gemm_on(Backend::MatrixMultiply, false, 1.5, MatRef::of(&a), MatRef::of(&b), beta, &mut whole, 0, n);
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

    /// `got` against the f64 product `want` within the rounding bound of a sum of `k` products,
    /// `|got − want| ≤ (k + 2)·ε·(|α|·Σ|a||b| + |β||c|)` (`scale` holds the bracket).
    #[track_caller]
    fn assert_within<T: Element>(got: &[T], want: &[f64], scale: &[f64], k: usize, what: &str) {
        let eps = if T::DTYPE == "f32" { f32::EPSILON as f64 } else { f64::EPSILON };
        for (i, ((g, w), s)) in got.iter().zip(want).zip(scale).enumerate() {
            let g = g.as_f64();
            assert!((g - w).abs() <= (k + 2) as f64 * eps * s + f64::MIN_POSITIVE, "{what}: element {i}: {g} vs {w}");
        }
    }

    /// A `rows × cols` view of random values: row-major, a transposed view, or one with
    /// column stride 2 (every other column of a wider matrix).
    fn view<T: Element>(rows: usize, cols: usize, layout: usize, rng: &mut Rng) -> Tensor<T> {
        match layout {
            0 => Tensor::<T>::randn(&[rows, cols], rng),
            1 => Tensor::<T>::randn(&[cols, rows], rng).t(),
            _ => Tensor::<T>::randn(&[rows, 2 * cols + 1], rng).slice(1, 0, 2 * cols, 2),
        }
    }

    /// Every backend, one thread and split, against the f64 definition: odd sizes (every `m`,
    /// `n` below 20 with a few `k`), sizes crossing the packed GEMM's blocks (KC = 256, MC = 96,
    /// NC = 1024, MS = 1536 and the micro-kernel's 12 × 32 / 6 × 16 tiles), zero sizes,
    /// row-major, transposed and strided operands, and α, β ∈ {(1, 0), (1.5, 0.5), (1, 1)}
    /// (with β = 0, C starts as NaN: it must not be read).
    fn gemm_sweep<T: Element>(seed: u64) {
        let mut rng = Rng::new(seed);
        let mut shapes: Vec<(usize, usize, usize)> = vec![];
        for m in 0..20 {
            for n in 0..20 {
                shapes.push((m, [0, 1, 2, 7, 16, 33][(m + n) % 6], n));
            }
        }
        shapes.extend([(7, 7, 7), (14, 21, 28), (35, 49, 63), (97, 257, 33), (13, 513, 65), (193, 40, 1025)]);
        shapes.extend([(1537, 3, 17), (25, 600, 70), (1, 300, 1), (12, 256, 32), (6, 255, 16), (24, 1, 64)]);
        // Several blocks in a row: row blocks × k panels, column blocks × k panels (the packed
        // GEMM packs the next block into the other slot while multiplying the current one).
        shapes.extend([(1540, 260, 40), (40, 260, 1030)]);
        for (si, &(m, k, n)) in shapes.iter().enumerate() {
            let (a, b) = (view::<T>(m, k, si % 3, &mut rng), view::<T>(k, n, (si / 3) % 3, &mut rng));
            let c0 = Tensor::<T>::randn(&[m, n], &mut rng).to_vec();
            let (af, bf) = (a.cast::<f64>(), b.cast::<f64>());
            let ab = naive::matmul(&af, &bf).to_vec();
            let abs = naive::matmul(&af.abs(), &bf.abs()).to_vec();
            for (alpha, beta) in [(1.0, 0.0), (1.5, 0.5), (1.0, 1.0)] {
                let want: Vec<f64> = ab.iter().zip(&c0).map(|(x, c)| alpha * x + beta * c.as_f64()).collect();
                let scale: Vec<f64> = abs.iter().zip(&c0).map(|(x, c)| alpha * x + beta * c.as_f64().abs()).collect();
                let start: Vec<T> = if beta == 0.0 { vec![T::nan(); m * n] } else { c0.clone() };
                for backend in Backend::all() {
                    for parallel in [false, true] {
                        let mut c = start.clone();
                        let (al, be) = (T::of(alpha), T::of(beta));
                        if parallel {
                            par_gemm_on(backend, al, MatRef::of(&a), MatRef::of(&b), be, &mut c, 0, n);
                        } else {
                            gemm_on(backend, false, al, MatRef::of(&a), MatRef::of(&b), be, &mut c, 0, n);
                        }
                        let what = format!("{backend:?} parallel {parallel}: ({m}, {k}, {n}) α {alpha} β {beta}");
                        assert_within(&c, &want, &scale, k, &what);
                    }
                }
            }
        }
    }

    #[test]
    fn every_backend_matches_naive_f32() {
        gemm_sweep::<f32>(8);
    }

    #[test]
    fn every_backend_matches_naive_f64() {
        gemm_sweep::<f64>(9);
    }

    /// The packed GEMM gives the same bits on 1, 2 and 3 threads, and for `gemm` and
    /// `par_gemm`, on odd sizes, transposed and strided operands and β ≠ 0, f32 and f64.
    fn packed_bits_do_not_depend_on_threads<T: Element>(seed: u64) {
        let Some(isa) = Isa::vectors() else { return };
        let mut rng = Rng::new(seed);
        let pools: Vec<_> =
            [1, 2, 3].iter().map(|&t| rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap()).collect();
        for (si, &(m, k, n)) in [
            (129, 600, 515),
            (64, 1000, 300),
            (7, 257, 1100),
            (300, 33, 130),
            (1600, 40, 70),
            (97, 97, 97),
            (1540, 300, 70),
        ]
        .iter()
        .enumerate()
        {
            let (a, b) = (view::<T>(m, k, si % 3, &mut rng), view::<T>(k, n, (si + 1) % 3, &mut rng));
            let c0 = Tensor::<T>::randn(&[m, n], &mut rng).to_vec();
            for beta in [0.0, 0.5] {
                let mut one = c0.clone();
                gemm_on(
                    Backend::Packed(isa),
                    false,
                    T::of(1.5),
                    MatRef::of(&a),
                    MatRef::of(&b),
                    T::of(beta),
                    &mut one,
                    0,
                    n,
                );
                for pool in &pools {
                    let mut split = c0.clone();
                    pool.install(|| {
                        par_gemm(T::of(1.5), MatRef::of(&a), MatRef::of(&b), T::of(beta), &mut split, 0, n)
                    });
                    let same = bytemuck::cast_slice::<T, u8>(&one) == bytemuck::cast_slice::<T, u8>(&split);
                    assert!(
                        same,
                        "({m}, {k}, {n}) β {beta}: {} threads differ from one call",
                        pool.current_num_threads()
                    );
                }
            }
        }
    }

    #[test]
    fn packed_bits_do_not_depend_on_threads_f32() {
        packed_bits_do_not_depend_on_threads::<f32>(10);
    }

    #[test]
    fn packed_bits_do_not_depend_on_threads_f64() {
        packed_bits_do_not_depend_on_threads::<f64>(11);
    }

    #[test]
    #[should_panic(expected = "matmul: inner dimensions differ: [3, 4] × [5, 2]")]
    fn mismatch_names_shapes() {
        let _ = Tensor::<f32>::zeros(&[3, 4]).matmul(&Tensor::zeros(&[5, 2]));
    }
}
