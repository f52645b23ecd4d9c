//! The updatable Cholesky factor `A = L·Lᵀ` (append a row/column, remove one) with its pivot
//! floor, and its solves.

use super::triangular::{
    backward_rows_transposed, forward_rows, forward_substitute, forward_substitute_mirror, MIRROR_PAD,
};
use crate::kernels::simd::Isa;
use crate::{Element, Error, Result};

/// Default pivot-floor constant `c` of [`Cholesky`]: a pivot is rejected when
/// `pivot² ≤ c·ε·a_jj` (ε the machine epsilon of `T`).
///
/// Why 100: when a column is an exact linear combination of the previous ones, the Schur
/// complement `a_jj − ‖l_j‖²` computed in floating point is not zero but rounding noise of
/// order `ε·a_jj` (measured up to 4.6·ε·a_jj for duplicates and random combinations of up to
/// 200 columns in the tests). 100 stays above that noise while rejecting only matrices whose
/// condition number is beyond about `1/(100·ε)` (≈ 4.5e13 in f64, ≈ 8.4e4 in f32) — matrices
/// whose factor would not carry a correct digit in that precision anyway. Callers whose matrix
/// itself carries a larger error (a Gram matrix `DᵀD` from a long GEMM) set a larger floor
/// with [`Cholesky::set_pivot_floor`].
pub const DEFAULT_PIVOT_FLOOR: f64 = 100.0;

/// Why a pivot was rejected: the Schur complement `d = a_jj − ‖l_j‖²` (the square of the pivot
/// that `L` would get) of row/column `index` is not above the floor `c·ε·max(a_jj, 0)`, or is
/// not finite (NaN or ±∞ in the input).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NotPositiveDefinite {
    /// Row/column of the matrix whose pivot failed.
    pub index: usize,
    /// The Schur complement `a_jj − ‖l_j‖²` (pivot²), converted to `f64`.
    pub pivot_sq: f64,
    /// The diagonal entry `a_jj`.
    pub diag: f64,
    /// The floor `c·ε·max(a_jj, 0)` the pivot² had to exceed.
    pub floor: f64,
}

impl std::fmt::Display for NotPositiveDefinite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pivot {} is {:e} (not positive definite: pivot² = a_jj − ‖l_j‖² must exceed c·ε·a_jj = {:e}, a_jj = {:e})",
            self.index, self.pivot_sq, self.floor, self.diag
        )
    }
}

impl From<NotPositiveDefinite> for Error {
    fn from(e: NotPositiveDefinite) -> Error {
        Error::Numerical { op: "cholesky", msg: e.to_string() }
    }
}

/// Lower Cholesky factor `L` of a symmetric positive definite `n × n` matrix, `A = L·Lᵀ`,
/// updatable by one row/column at a time.
///
/// Storage: row-major in a buffer of `capacity × capacity` elements with leading dimension
/// `capacity`; `L[i, j]` (j ≤ i) is at `i·capacity + j`, entries above the diagonal are never
/// read. [`append`](Cholesky::append) up to the capacity does not allocate;
/// past it the buffer grows (doubling) and the rows are copied once.
///
/// * [`factor`](Cholesky::factor): `A` given in full, `O(n³/3)`.
/// * [`append`](Cholesky::append): `A ← [[A, b], [bᵀ, δ]]` in `O(n²)`: one forward substitution
///   `L·y = b`, then the new pivot `sqrt(δ − ‖y‖²)`.
/// * [`remove`](Cholesky::remove): deletes row and column `i` of `A` in `O(n²)` without
///   refactoring: the rows below `i` lose their entry in column `i` — a vector `v` — and the
///   trailing block is restored by Givens rotations, i.e. the rank-one *update*
///   `L₃₃'·L₃₃'ᵀ = L₃₃·L₃₃ᵀ + v·vᵀ`, which is unconditionally stable (no hyperbolic rotations).
/// * [`solve_in_place`](Cholesky::solve_in_place): `A·x = b` as `L·y = b`, `Lᵀ·x = y`.
///
/// Positive definiteness is checked at every pivot with a *relative floor*: the pivot² (Schur
/// complement) `d_j = a_jj − ‖l_j‖²` must satisfy `d_j > c·ε·a_jj` with `c` =
/// [`DEFAULT_PIVOT_FLOOR`] unless changed by [`set_pivot_floor`](Cholesky::set_pivot_floor).
/// So a column that is numerically a combination of the previous ones is reported as not
/// positive definite, not factored with a pivot made of rounding noise (LARS relies on this to
/// skip dependent atoms). A NaN or ±∞ reaching a pivot is rejected the same way: no NaN is
/// ever stored in the factor.
#[derive(Clone, Debug)]
pub struct Cholesky<T> {
    /// Row-major rows of `L`, leading dimension `cap`.
    data: Vec<T>,
    /// Current dimension `n ≤ cap`.
    n: usize,
    /// Leading dimension and capacity in rows.
    cap: usize,
    /// Work vector of `cap` elements (the rotated column in `remove`).
    work: Vec<T>,
    /// The pivot-floor constant `c`.
    floor: f64,
    /// With [`set_column_mirror`](Cholesky::set_column_mirror): `L`'s columns, `L[i, j]` at
    /// `j·mld + i`; empty otherwise.
    mirror: Vec<T>,
    /// Leading dimension of `mirror` (`cap` + the kernel's padding), 0 without it.
    mld: usize,
}

impl<T: Element> Default for Cholesky<T> {
    fn default() -> Self {
        Cholesky::with_capacity(0)
    }
}

impl<T: Element> Cholesky<T> {
    /// The factor of the empty (0 × 0) matrix.
    pub fn new() -> Self {
        Cholesky::with_capacity(0)
    }

    /// An empty factor with room for `cap` rows before any allocation.
    pub fn with_capacity(cap: usize) -> Self {
        Cholesky {
            data: vec![T::zero(); cap * cap],
            n: 0,
            cap,
            work: vec![T::zero(); cap],
            floor: DEFAULT_PIVOT_FLOOR,
            mirror: Vec::new(),
            mld: 0,
        }
    }

    /// The factor of a full symmetric `n × n` matrix `a` (row-major, `a.len() == n²`). Only
    /// the lower triangle (`j ≤ i`) is read, as LAPACK's `uplo = 'L'`.
    ///
    /// # Errors
    /// `Error::Numerical` naming the first pivot that fails the floor (see the type docs),
    /// e.g. `cholesky: numerical failure: pivot 3 is -1.2e-17 (not positive definite: …)`.
    /// **Panics** if `a.len() != n·n`.
    #[track_caller]
    pub fn factor(a: &[T], n: usize) -> Result<Self> {
        Self::factor_with_floor(a, n, DEFAULT_PIVOT_FLOOR)
    }

    /// [`factor`](Cholesky::factor) with pivot-floor constant `c` (see
    /// [`set_pivot_floor`](Cholesky::set_pivot_floor)).
    #[track_caller]
    pub fn factor_with_floor(a: &[T], n: usize, c: f64) -> Result<Self> {
        assert_eq!(a.len(), n * n, "Cholesky::factor: a has {} elements but n·n = {}·{} = {}", a.len(), n, n, n * n);
        let mut ch = Cholesky::with_capacity(n);
        ch.set_pivot_floor(c);
        for i in 0..n {
            let row = &a[i * n..i * n + i + 1];
            ch.try_append(&row[..i], row[i])?;
        }
        Ok(ch)
    }

    /// Sets the pivot-floor constant `c`: a pivot is rejected when `pivot² ≤ c·ε·a_jj`.
    /// `c = 0` accepts every positive pivot. Applies to later `append`s.
    /// **Panics** if `c` is negative or not finite.
    #[track_caller]
    pub fn set_pivot_floor(&mut self, c: f64) {
        assert!(c.is_finite() && c >= 0.0, "Cholesky::set_pivot_floor: c must be finite and ≥ 0, got {c}");
        self.floor = c;
    }

    /// The pivot-floor constant `c`.
    pub fn pivot_floor(&self) -> f64 {
        self.floor
    }

    /// Keeps a second copy of `L` by columns, so that [`append`](Cholesky::append)'s forward
    /// substitution runs in vectors across rows (same bits: each row's sum stays sequential).
    /// Measured in the SF layer's LARS paths (f32, up to ~440 rows; `networks_step sf-lenet`,
    /// quiet 2-vCPU Zen 4, 2026-12-07): the appends took 1.4× less time (perf: 36% → 26% of the
    /// step; what remains is mostly the chain of divisions of the diagonal blocks), but the
    /// second copy crowds the Gram matrix out of the 1 MiB L2, so its reads got slower and the
    /// whole step gained only 2% on 1 thread and 5% on 2. It doubles the memory and adds a copy
    /// of the changed rows to every [`remove`](Cholesky::remove).
    pub fn set_column_mirror(&mut self, on: bool) {
        if on {
            self.mld = self.cap + MIRROR_PAD;
            self.mirror = vec![T::zero(); self.cap * self.mld];
            self.mirror_rows(0);
        } else {
            self.mld = 0;
            self.mirror = Vec::new();
        }
    }

    /// Copies rows `from..n` of `L` into the column mirror (if kept).
    fn mirror_rows(&mut self, from: usize) {
        if self.mld == 0 {
            return;
        }
        let (ld, mld) = (self.cap, self.mld);
        for p in from..self.n {
            for (c, &v) in self.data[p * ld..p * ld + p + 1].iter().enumerate() {
                self.mirror[c * mld + p] = v;
            }
        }
    }

    /// Dimension `n` of the factored matrix.
    pub fn dim(&self) -> usize {
        self.n
    }

    /// Rows that fit without reallocating.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Forgets the factor (dimension 0) and keeps the buffer.
    pub fn clear(&mut self) {
        self.n = 0;
    }

    /// `L[i, j]`, zero above the diagonal. **Panics** if `i` or `j` is not below `dim()`.
    #[track_caller]
    pub fn l(&self, i: usize, j: usize) -> T {
        assert!(i < self.n && j < self.n, "Cholesky::l: index ({i}, {j}) out of range for a {0}×{0} factor", self.n);
        if j > i {
            T::zero()
        } else {
            self.data[i * self.cap + j]
        }
    }

    /// Row `i` of `L` up to the diagonal: `L[i, 0..=i]`. **Panics** if `i ≥ dim()`.
    #[track_caller]
    pub fn row(&self, i: usize) -> &[T] {
        assert!(i < self.n, "Cholesky::row: row {i} out of range for a {0}×{0} factor", self.n);
        &self.data[i * self.cap..i * self.cap + i + 1]
    }

    /// The buffer and its leading dimension: `L[i, j]` is `buf[i·ld + j]` for `j ≤ i < dim()`
    /// (for the free functions [`solve_lower_triangular`](super::solve_lower_triangular) and
    /// [`solve_upper_triangular`](super::solve_upper_triangular)).
    pub fn storage(&self) -> (&[T], usize) {
        (&self.data, self.cap)
    }

    /// `L` as a dense row-major `n × n` matrix (zeros above the diagonal).
    pub fn to_dense(&self) -> Vec<T> {
        let n = self.n;
        let mut out = vec![T::zero(); n * n];
        for i in 0..n {
            out[i * n..i * n + i + 1].copy_from_slice(self.row(i));
        }
        out
    }

    /// A copy whose capacity equals its dimension (for keeping many factors).
    pub fn to_compact(&self) -> Self {
        let n = self.n;
        let mut out = Cholesky::with_capacity(n);
        out.floor = self.floor;
        for i in 0..n {
            out.data[i * n..i * n + i + 1].copy_from_slice(self.row(i));
        }
        out.n = n;
        out
    }

    /// Makes room for `rows` rows in total (no-op if the capacity suffices).
    pub fn reserve(&mut self, rows: usize) {
        if rows <= self.cap {
            return;
        }
        let cap = rows.max(2 * self.cap).max(4);
        let mut data = vec![T::zero(); cap * cap];
        for i in 0..self.n {
            data[i * cap..i * cap + i + 1].copy_from_slice(&self.data[i * self.cap..i * self.cap + i + 1]);
        }
        self.data = data;
        self.cap = cap;
        self.work = vec![T::zero(); cap];
        if self.mld != 0 {
            self.set_column_mirror(true);
        }
    }

    /// Adds one row and column to `A`: `A ← [[A, col], [colᵀ, diag]]` with `col = A[n, 0..n]`,
    /// `diag = A[n, n]`. One forward substitution `L·y = col`, pivot `sqrt(diag − ‖y‖²)`:
    /// `O(n²)`, no allocation within the capacity.
    ///
    /// # Errors
    /// `Error::Numerical` naming the pivot (index `n`, its value pivot² and the floor) when
    /// `diag − ‖y‖² ≤ c·ε·diag` or is not finite. The factor is then **unchanged**.
    /// **Panics** if `col.len() != dim()`.
    #[track_caller]
    pub fn append(&mut self, col: &[T], diag: T) -> Result<()> {
        self.try_append(col, diag).map_err(Error::from)
    }

    /// [`append`](Cholesky::append) with the failure as a plain value (no message formatted),
    /// for callers that treat a dependent column as an expected event.
    #[track_caller]
    pub fn try_append(&mut self, col: &[T], diag: T) -> std::result::Result<(), NotPositiveDefinite> {
        let n = self.n;
        assert_eq!(col.len(), n, "Cholesky::append: col has {} elements but the factor is {n}×{n}", col.len());
        if n == self.cap {
            self.reserve(n + 1);
        }
        let ld = self.cap;
        // Rows 0..n are read, row n (beyond the factor until it succeeds) is written.
        let (done, new) = self.data.split_at_mut(n * ld);
        let y = &mut new[..n + 1];
        y[..n].copy_from_slice(col);
        if self.mld != 0 {
            forward_substitute_mirror(Isa::best(), done, ld, &self.mirror, self.mld, &mut y[..n]);
        } else {
            forward_substitute(done, |i| i * ld, &mut y[..n], 0);
        }
        let mut ss = T::zero();
        for &yi in &y[..n] {
            ss += yi * yi;
        }
        let d = diag - ss;
        let floor = self.floor * T::epsilon().as_f64() * diag.as_f64().max(0.0);
        let d64 = d.as_f64();
        if !(d64.is_finite() && d64 > floor) {
            return Err(NotPositiveDefinite { index: n, pivot_sq: d64, diag: diag.as_f64(), floor });
        }
        y[n] = d.sqrt();
        self.n = n + 1;
        self.mirror_rows(n);
        Ok(())
    }

    /// Deletes row and column `i` of `A` (`0 ≤ i < n`), keeping `L` lower triangular, in
    /// `O(n²)` without refactoring and without allocating.
    ///
    /// Rows `0..i` are unchanged. Deleting row `i` of `L` leaves the rows below it with an
    /// extra entry in column `i`; those entries form `v`, and the trailing block becomes
    /// `L₃₃'` with `L₃₃'·L₃₃'ᵀ = L₃₃·L₃₃ᵀ + v·vᵀ`, computed by one Givens rotation per row
    /// (LINPACK `dchud`). Every pivot only grows, so the update cannot fail.
    /// **Panics** if `i ≥ dim()`.
    #[track_caller]
    pub fn remove(&mut self, i: usize) {
        let n = self.n;
        assert!(i < n, "Cholesky::remove: index {i} out of range for a {n}×{n} factor");
        let ld = self.cap;
        // Shift rows i+1..n up by one, dropping their column i into `work`.
        for p in i + 1..n {
            let src = p * ld;
            let dst = (p - 1) * ld;
            self.work[p - 1 - i] = self.data[src + i];
            self.data.copy_within(src..src + i, dst);
            self.data.copy_within(src + i + 1..src + p + 1, dst + i);
        }
        let m = n - 1;
        // Rank-one update of the trailing block (rows/columns i..m) with v = work[0..m−i].
        let v = &mut self.work[..m - i];
        for k in i..m {
            let lkk = self.data[k * ld + k];
            let xk = v[k - i];
            let r = lkk.hypot(xk);
            let c = r / lkk;
            let s = xk / lkk;
            self.data[k * ld + k] = r;
            for j in k + 1..m {
                let ljk = (self.data[j * ld + k] + s * v[j - i]) / c;
                self.data[j * ld + k] = ljk;
                v[j - i] = c * v[j - i] - s * ljk;
            }
        }
        self.n = m;
        self.mirror_rows(i);
    }

    /// Solves `L·y = b` in place (`b ← L⁻¹·b`). **Panics** if `b.len() != dim()`.
    #[track_caller]
    pub fn solve_lower(&self, b: &mut [T]) {
        assert_eq!(
            b.len(),
            self.n,
            "Cholesky::solve_lower: b has {} elements but the factor is {1}×{1}",
            b.len(),
            self.n
        );
        forward_rows(&self.data, self.cap, b);
    }

    /// Solves `Lᵀ·x = y` in place (`b ← L⁻ᵀ·b`). **Panics** if `b.len() != dim()`.
    #[track_caller]
    pub fn solve_upper(&self, b: &mut [T]) {
        assert_eq!(
            b.len(),
            self.n,
            "Cholesky::solve_upper: b has {} elements but the factor is {1}×{1}",
            b.len(),
            self.n
        );
        backward_rows_transposed(&self.data, self.cap, b);
    }

    /// Solves `A·x = b` in place (`b ← A⁻¹·b = L⁻ᵀ·L⁻¹·b`), `O(n²)`, no allocation.
    /// **Panics** if `b.len() != dim()`.
    #[track_caller]
    pub fn solve_in_place(&self, b: &mut [T]) {
        assert_eq!(
            b.len(),
            self.n,
            "Cholesky::solve_in_place: b has {} elements but the factor is {1}×{1}",
            b.len(),
            self.n
        );
        forward_rows(&self.data, self.cap, b);
        backward_rows_transposed(&self.data, self.cap, b);
    }
}
