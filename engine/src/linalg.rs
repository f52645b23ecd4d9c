//! Small dense linear algebra for the solvers: an updatable Cholesky factor, triangular solves
//! on row-major slices, and power iteration for the spectral norm of an operator.
//!
//! Everything is generic over [`Element`] (`f32`, `f64`) and computes in that type. Every
//! routine has a plainly written reference in [`naive`] (computing in `f64`), which the tests
//! compare against.
//!
//! Error policy (as in the rest of the engine): wrong slice lengths are misuse and **panic**
//! at the caller with both lengths; a matrix that is not positive definite, a zero on a
//! triangular diagonal or an operator returning NaN is data, and returns
//! [`Error::Numerical`].

use crate::{Element, Error, Result, Rng};

// ------------------------------------------------------------------------------------------
// Cholesky

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
        Cholesky { data: vec![T::zero(); cap * cap], n: 0, cap, work: vec![T::zero(); cap], floor: DEFAULT_PIVOT_FLOOR }
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
    /// (for the free functions [`solve_lower_triangular`] and [`solve_upper_triangular`]).
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
        let mut ss = T::zero();
        for i in 0..n {
            let li = &done[i * ld..i * ld + i + 1];
            let mut s = col[i];
            for (l, yj) in li[..i].iter().zip(&y[..i]) {
                s -= *l * *yj;
            }
            let yi = s / li[i];
            y[i] = yi;
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

/// `b ← L⁻¹ b` for lower-triangular row-major `L` (leading dimension `ld`) with a nonzero
/// diagonal: row dot products, contiguous.
fn forward_rows<T: Element>(l: &[T], ld: usize, b: &mut [T]) {
    for i in 0..b.len() {
        let row = &l[i * ld..i * ld + i + 1];
        let mut s = b[i];
        for (a, x) in row[..i].iter().zip(&b[..i]) {
            s -= *a * *x;
        }
        b[i] = s / row[i];
    }
}

/// `b ← L⁻ᵀ b` for lower-triangular row-major `L`: for i = n−1 … 0, `x_i = b_i / L_ii`, then
/// `b_j −= L_ij·x_i` for j < i (an axpy with row i, contiguous).
fn backward_rows_transposed<T: Element>(l: &[T], ld: usize, b: &mut [T]) {
    for i in (0..b.len()).rev() {
        let row = &l[i * ld..i * ld + i + 1];
        let xi = b[i] / row[i];
        b[i] = xi;
        for (bj, a) in b[..i].iter_mut().zip(&row[..i]) {
            *bj -= *a * xi;
        }
    }
}

/// `b ← U⁻¹ b` for upper-triangular row-major `U` (row i holds `U[i, i..n]` at `i·ld + i..`).
fn backward_rows<T: Element>(u: &[T], ld: usize, b: &mut [T]) {
    let n = b.len();
    for i in (0..n).rev() {
        let row = &u[i * ld + i..i * ld + n];
        let mut s = b[i];
        for (a, x) in row[1..].iter().zip(&b[i + 1..]) {
            s -= *a * *x;
        }
        b[i] = s / row[0];
    }
}

/// `b ← U⁻ᵀ b` for upper-triangular row-major `U`: for i = 0 … n−1, `x_i = b_i / U_ii`, then
/// `b_j −= U_ij·x_i` for j > i.
fn forward_rows_transposed<T: Element>(u: &[T], ld: usize, b: &mut [T]) {
    let n = b.len();
    for i in 0..n {
        let row = &u[i * ld + i..i * ld + n];
        let xi = b[i] / row[0];
        b[i] = xi;
        for (bj, a) in b[i + 1..].iter_mut().zip(&row[1..]) {
            *bj -= *a * xi;
        }
    }
}

// ------------------------------------------------------------------------------------------
// Free triangular solves

/// Whether a triangular solve uses the matrix or its transpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trans {
    /// Solve with the matrix as stored.
    No,
    /// Solve with its transpose.
    Yes,
}

#[track_caller]
fn check_triangular<T>(op: &str, a: &[T], ld: usize, n: usize, b: &[T]) {
    assert!(ld >= n, "{op}: leading dimension {ld} is smaller than n = {n}");
    let need = if n == 0 { 0 } else { (n - 1) * ld + n };
    assert!(a.len() >= need, "{op}: the matrix slice has {} elements but n = {n}, ld = {ld} needs {need}", a.len());
    assert_eq!(b.len(), n, "{op}: b has {} elements but the matrix is {n}×{n}", b.len());
}

fn check_diagonal<T: Element>(op: &'static str, a: &[T], ld: usize, n: usize) -> Result<()> {
    for i in 0..n {
        let d = a[i * ld + i];
        if d == T::zero() || !d.is_finite() {
            return Err(Error::Numerical {
                op,
                msg: format!("diagonal entry {i} is {d:e} (singular triangular matrix)"),
            });
        }
    }
    Ok(())
}

/// Solves `L·x = b` (`trans = No`) or `Lᵀ·x = b` (`trans = Yes`) in place for a
/// lower-triangular `n × n` matrix stored row-major in `l` with leading dimension `ld`
/// (`L[i, j] = l[i·ld + j]`, j ≤ i; entries above the diagonal are not read). `O(n²)`; both
/// variants read rows of `l` contiguously.
///
/// # Errors
/// `Error::Numerical` if a diagonal entry is zero or not finite (checked before `b` is touched).
/// **Panics** if `ld < n`, `l` is too short for `n` rows of stride `ld`, or `b.len() != n`.
#[track_caller]
pub fn solve_lower_triangular<T: Element>(l: &[T], ld: usize, n: usize, b: &mut [T], trans: Trans) -> Result<()> {
    check_triangular("solve_lower_triangular", l, ld, n, b);
    check_diagonal("solve_lower_triangular", l, ld, n)?;
    match trans {
        Trans::No => forward_rows(l, ld, b),
        Trans::Yes => backward_rows_transposed(l, ld, b),
    }
    Ok(())
}

/// Solves `U·x = b` (`trans = No`) or `Uᵀ·x = b` (`trans = Yes`) in place for an
/// upper-triangular `n × n` matrix stored row-major in `u` with leading dimension `ld`
/// (`U[i, j] = u[i·ld + j]`, j ≥ i; entries below the diagonal are not read). For a Cholesky
/// factor stored as lower `L`, use [`solve_lower_triangular`] with `Trans::Yes` for `Lᵀ·x = b`.
///
/// # Errors
/// `Error::Numerical` if a diagonal entry is zero or not finite (checked before `b` is touched).
/// **Panics** if `ld < n`, `u` is too short, or `b.len() != n`.
#[track_caller]
pub fn solve_upper_triangular<T: Element>(u: &[T], ld: usize, n: usize, b: &mut [T], trans: Trans) -> Result<()> {
    check_triangular("solve_upper_triangular", u, ld, n, b);
    check_diagonal("solve_upper_triangular", u, ld, n)?;
    match trans {
        Trans::No => backward_rows(u, ld, b),
        Trans::Yes => forward_rows_transposed(u, ld, b),
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Power iteration

/// Options of [`power_iteration`].
#[derive(Clone, Debug)]
pub struct PowerOptions<'a, T> {
    /// Most operator applications (default 50, the SDNet code's).
    pub max_iter: usize,
    /// Stop when the relative change of the estimate, `|ρ_k − ρ_{k−1}| / |ρ_k|`, is below this
    /// (default 1e-5).
    pub tol: f64,
    /// Start vector (any nonzero scale; normalised), typically the previous call's
    /// [`PowerResult::vector`]. `None`, or a zero vector: a random start drawn from `seed`.
    pub init: Option<&'a [T]>,
    /// Seed of the random (standard normal) start vector.
    pub seed: u64,
}

impl<T> Default for PowerOptions<'_, T> {
    fn default() -> Self {
        PowerOptions { max_iter: 50, tol: 1e-5, init: None, seed: 0 }
    }
}

/// What [`power_iteration`] found.
#[derive(Clone, Debug, PartialEq)]
pub struct PowerResult<T> {
    /// The estimate of ‖M‖₂: the Rayleigh quotient `vᵀ·M·v` at the last unit iterate `v`.
    pub value: T,
    /// `M·v / ‖M·v‖` from the last iteration: a unit vector, one step further than the `v`
    /// behind `value`, ready as the next call's warm start.
    pub vector: Vec<T>,
    /// Operator applications made.
    pub iterations: usize,
    /// Relative change of the estimate in the last iteration (∞ after a single one).
    pub rel_change: f64,
    /// Whether `rel_change < tol` was reached within `max_iter`.
    pub converged: bool,
}

/// Power iteration for the largest eigenvalue of a symmetric positive semidefinite operator
/// `M` on `Rⁿ`, given as a closure `apply(v, w)` that writes `w = M·v` — which for PSD `M`
/// equals its spectral norm ‖M‖₂. For `M = AᵀA` (pass `v ↦ Aᵀ(A·v)`) that is `‖A‖₂²`, the
/// Lipschitz constant of FISTA.
///
/// Iteration (the SDNet convention, docs/math.md §2): `v` unit, `w = M·v`, estimate
/// `ρ = vᵀ·w = vᵀ·M·v` — for `M = AᵀA` this is `‖A·v‖²` —, then `v ← w / ‖w‖`. Stops when
/// `|ρ_k − ρ_{k−1}| / |ρ_k| < tol` or after `max_iter` applications. `ρ` is a lower bound of
/// ‖M‖₂ for PSD `M` (no safety factor is applied) and converges like `(λ₂/λ₁)^{2k}`.
///
/// If `M·v = 0` (M = 0, or a start vector in the null space of M) the estimate is 0 and the
/// iteration stops as converged; `vector` is then the start vector. `n = 0` gives value 0
/// after no iterations.
///
/// # Errors
/// `Error::Numerical` if the operator writes a non-finite value (naming the entry and the
/// iteration), or if `init` contains one.
/// **Panics** if `init` is given with a length other than `n`.
#[track_caller]
pub fn power_iteration<T: Element>(
    n: usize,
    mut apply: impl FnMut(&[T], &mut [T]),
    opts: PowerOptions<'_, T>,
) -> Result<PowerResult<T>> {
    const OP: &str = "power_iteration";
    let mut v: Vec<T> = match opts.init {
        Some(init) => {
            assert_eq!(init.len(), n, "power_iteration: init has {} elements but n = {n}", init.len());
            if let Some(i) = init.iter().position(|x| !x.is_finite()) {
                return Err(Error::Numerical { op: OP, msg: format!("init[{i}] is {:e}", init[i]) });
            }
            init.to_vec()
        }
        None => Vec::new(),
    };
    if n == 0 {
        return Ok(PowerResult { value: T::zero(), vector: v, iterations: 0, rel_change: 0.0, converged: true });
    }
    if norm(&v) == T::zero() {
        let mut rng = Rng::new(opts.seed);
        v = (0..n).map(|_| T::of(rng.normal())).collect();
    }
    let nv = norm(&v);
    v.iter_mut().for_each(|x| *x /= nv);
    let mut w = vec![T::zero(); n];
    let mut prev: Option<f64> = None;
    let mut result = PowerResult {
        value: T::zero(),
        vector: Vec::new(),
        iterations: 0,
        rel_change: f64::INFINITY,
        converged: false,
    };
    for it in 1..=opts.max_iter {
        apply(&v, &mut w);
        if let Some(i) = w.iter().position(|x| !x.is_finite()) {
            return Err(Error::Numerical {
                op: OP,
                msg: format!("the operator returned {:e} at entry {i} in iteration {it}", w[i]),
            });
        }
        let rho: T = v.iter().zip(&w).map(|(a, b)| *a * *b).sum();
        let nw = norm(&w);
        result.value = rho;
        result.iterations = it;
        if nw == T::zero() {
            result.rel_change = 0.0;
            result.converged = true;
            break;
        }
        let r = rho.as_f64();
        result.rel_change = match prev {
            None => f64::INFINITY,
            Some(p) if r == p => 0.0,
            Some(p) => (r - p).abs() / r.abs(),
        };
        prev = Some(r);
        for (vi, wi) in v.iter_mut().zip(&w) {
            *vi = *wi / nw;
        }
        if result.rel_change < opts.tol {
            result.converged = true;
            break;
        }
    }
    result.vector = v;
    Ok(result)
}

/// Euclidean norm, scaled against overflow for large entries.
fn norm<T: Element>(v: &[T]) -> T {
    let amax = v.iter().fold(T::zero(), |m, x| m.max(x.abs()));
    if amax == T::zero() || !amax.is_finite() {
        return amax;
    }
    let s: T = v.iter().map(|x| (*x / amax) * (*x / amax)).sum();
    amax * s.sqrt()
}

// ------------------------------------------------------------------------------------------
// Naive references

/// Plainly written references in `f64` for tests and benches: no updates, no tricks.
pub mod naive {
    use crate::Element;

    /// Cholesky–Banachiewicz of a full row-major `n × n` matrix (lower triangle read), in f64:
    /// `L[i][j] = (a_ij − Σ_{p<j} L[i][p]·L[j][p]) / L[j][j]`, `L[j][j] = sqrt(a_jj − Σ L[j][p]²)`.
    /// `None` if a pivot² is not positive (no floor). Returns `L` dense row-major.
    pub fn cholesky<T: Element>(a: &[T], n: usize) -> Option<Vec<f64>> {
        let mut l = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..=i {
                let mut s = a[i * n + j].as_f64();
                for p in 0..j {
                    s -= l[i * n + p] * l[j * n + p];
                }
                if i == j {
                    if s.is_nan() || s <= 0.0 {
                        return None;
                    }
                    l[i * n + i] = s.sqrt();
                } else {
                    l[i * n + j] = s / l[j * n + j];
                }
            }
        }
        Some(l)
    }

    /// `L·Lᵀ` of a dense row-major `n × n` matrix (upper entries of `l` ignored).
    pub fn llt<T: Element>(l: &[T], n: usize) -> Vec<f64> {
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                let mut s = 0.0;
                for p in 0..=i.min(j) {
                    s += l[i * n + p].as_f64() * l[j * n + p].as_f64();
                }
                a[i * n + j] = s;
            }
        }
        a
    }

    /// The `(n−1) × (n−1)` matrix `a` without row and column `i`.
    pub fn delete_row_col<T: Element>(a: &[T], n: usize, i: usize) -> Vec<T> {
        let mut out = Vec::with_capacity((n - 1) * (n - 1));
        for r in (0..n).filter(|&r| r != i) {
            for c in (0..n).filter(|&c| c != i) {
                out.push(a[r * n + c]);
            }
        }
        out
    }

    /// `x = A⁻¹·b` by Gaussian elimination with partial pivoting, in f64 (`None` if singular).
    pub fn solve<T: Element>(a: &[T], n: usize, b: &[T]) -> Option<Vec<f64>> {
        let mut m: Vec<f64> = a.iter().map(|x| x.as_f64()).collect();
        let mut x: Vec<f64> = b.iter().map(|x| x.as_f64()).collect();
        for k in 0..n {
            let p = (k..n).max_by(|&i, &j| m[i * n + k].abs().total_cmp(&m[j * n + k].abs()))?;
            if m[p * n + k] == 0.0 {
                return None;
            }
            for c in 0..n {
                m.swap(k * n + c, p * n + c);
            }
            x.swap(k, p);
            for i in k + 1..n {
                let f = m[i * n + k] / m[k * n + k];
                for c in k..n {
                    m[i * n + c] -= f * m[k * n + c];
                }
                x[i] -= f * x[k];
            }
        }
        for i in (0..n).rev() {
            let mut s = x[i];
            for c in i + 1..n {
                s -= m[i * n + c] * x[c];
            }
            x[i] = s / m[i * n + i];
        }
        Some(x)
    }

    /// `x` with `T·x = b` for a dense row-major triangular `t` (`lower` selects which triangle
    /// is read), by plain substitution in f64.
    pub fn solve_triangular<T: Element>(t: &[T], ld: usize, n: usize, b: &[T], lower: bool) -> Vec<f64> {
        let mut x = vec![0.0; n];
        let at = |i: usize, j: usize| t[i * ld + j].as_f64();
        if lower {
            for i in 0..n {
                let s: f64 = (0..i).map(|j| at(i, j) * x[j]).sum();
                x[i] = (b[i].as_f64() - s) / at(i, i);
            }
        } else {
            for i in (0..n).rev() {
                let s: f64 = (i + 1..n).map(|j| at(i, j) * x[j]).sum();
                x[i] = (b[i].as_f64() - s) / at(i, i);
            }
        }
        x
    }

    /// Largest eigenvalue of a symmetric row-major `n × n` matrix by the cyclic Jacobi
    /// eigenvalue method in f64 (sweeps until the off-diagonal mass is below 1e-30 relative).
    pub fn top_eigenvalue<T: Element>(a: &[T], n: usize) -> f64 {
        let mut m: Vec<f64> = a.iter().map(|x| x.as_f64()).collect();
        let total: f64 = m.iter().map(|x| x * x).sum();
        for _ in 0..100 {
            let off: f64 = (0..n)
                .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
                .map(|(i, j)| m[i * n + j].powi(2))
                .sum();
            if off <= 1e-30 * total {
                break;
            }
            for p in 0..n {
                for q in p + 1..n {
                    let apq = m[p * n + q];
                    if apq == 0.0 {
                        continue;
                    }
                    let theta = (m[q * n + q] - m[p * n + p]) / (2.0 * apq);
                    // The smaller root of t² + 2θt − 1 = 0 (signum(0) = 1, so θ = 0 gives t = 1).
                    let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                    let c = 1.0 / (t * t + 1.0).sqrt();
                    let s = t * c;
                    for k in 0..n {
                        let (akp, akq) = (m[k * n + p], m[k * n + q]);
                        m[k * n + p] = c * akp - s * akq;
                        m[k * n + q] = s * akp + c * akq;
                    }
                    for k in 0..n {
                        let (apk, aqk) = (m[p * n + k], m[q * n + k]);
                        m[p * n + k] = c * apk - s * aqk;
                        m[q * n + k] = s * apk + c * aqk;
                    }
                }
            }
        }
        (0..n).map(|i| m[i * n + i]).fold(f64::NEG_INFINITY, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZES: [usize; 10] = [0, 1, 2, 3, 5, 7, 13, 31, 64, 100];

    /// A well-conditioned SPD matrix `A = BᵀB/m + 0.05·I`, `B` standard normal `m × n` with
    /// `m = 2n + 3` (eigenvalues within about [0.05 + 0.09, 0.05 + 2.9]), row-major.
    fn spd<T: Element>(n: usize, rng: &mut Rng) -> Vec<T> {
        let m = 2 * n + 3;
        let b: Vec<f64> = (0..m * n).map(|_| rng.normal()).collect();
        let mut a = vec![T::zero(); n * n];
        for i in 0..n {
            for j in 0..n {
                let s: f64 = (0..m).map(|p| b[p * n + i] * b[p * n + j]).sum();
                a[i * n + j] = T::of(s / m as f64 + if i == j { 0.05 } else { 0.0 });
            }
        }
        a
    }

    /// max |x − y| / max(max |y|, tiny).
    fn rel_err<T: Element>(x: &[T], y: &[f64]) -> f64 {
        assert_eq!(x.len(), y.len());
        let scale = y.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-300);
        x.iter().zip(y).fold(0.0f64, |m, (a, b)| m.max((a.as_f64() - b).abs())) / scale
    }

    /// Tolerance (relative to the largest entry) for these well-conditioned matrices in type T:
    /// 1e-12 in f64 and 1e-5 in f32, i.e. about 4500 and 80 units of roundoff for n up to 100.
    /// Seen over every test here: 1.0e-15 in f64, 4.8e-7 in f32.
    fn tol<T: Element>() -> f64 {
        if T::DTYPE == "f64" {
            1e-12
        } else {
            1e-5
        }
    }

    fn factor_reconstructs<T: Element>() {
        let mut rng = Rng::new(1);
        for &n in &SIZES {
            let a = spd::<T>(n, &mut rng);
            let ch = Cholesky::factor(&a, n).unwrap();
            assert_eq!(ch.dim(), n);
            let l = ch.to_dense();
            for i in 0..n {
                for j in i + 1..n {
                    assert_eq!(l[i * n + j], T::zero(), "upper entry ({i}, {j})");
                }
                assert!(ch.l(i, i) > T::zero());
            }
            let a64: Vec<f64> = a.iter().map(|x| x.as_f64()).collect();
            let e = rel_err(&l, &naive::cholesky(&a, n).unwrap());
            assert!(e < tol::<T>(), "{} n = {n}: L vs naive {e:e}", T::DTYPE);
            let e = rel_err(&naive::llt(&l, n).iter().map(|&x| T::of(x)).collect::<Vec<_>>(), &a64);
            assert!(e < tol::<T>(), "{} n = {n}: L·Lᵀ vs A {e:e}", T::DTYPE);
        }
    }

    #[test]
    fn factor_reconstructs_and_matches_naive() {
        factor_reconstructs::<f64>();
        factor_reconstructs::<f32>();
    }

    fn appends_equal_factor<T: Element>() {
        let mut rng = Rng::new(2);
        for &n in &SIZES {
            let a = spd::<T>(n, &mut rng);
            let full = Cholesky::factor(&a, n).unwrap();
            // Within the capacity: no reallocation.
            let mut ch = Cholesky::<T>::with_capacity(n);
            let ptr = ch.storage().0.as_ptr();
            // Starting small: the buffer grows (and its rows are copied) on the way.
            let mut grown = Cholesky::<T>::with_capacity(1);
            for i in 0..n {
                ch.append(&a[i * n..i * n + i], a[i * n + i]).unwrap();
                grown.append(&a[i * n..i * n + i], a[i * n + i]).unwrap();
            }
            assert_eq!(ch.storage().0.as_ptr(), ptr, "append within the capacity reallocated");
            assert_eq!(ch.capacity(), n);
            // Same arithmetic in the same order: the same bits.
            assert!(ch.to_dense() == full.to_dense(), "n = {n}");
            assert!(grown.to_dense() == full.to_dense(), "n = {n} (grown)");
            let e = rel_err(&ch.to_dense(), &naive::cholesky(&a, n).unwrap());
            assert!(e < tol::<T>(), "n = {n}: {e:e}");
            assert!(ch.to_compact().to_dense() == full.to_dense());
            assert_eq!(ch.to_compact().capacity(), n);
        }
    }

    #[test]
    fn append_sequence_equals_factor_of_the_full_matrix() {
        appends_equal_factor::<f64>();
        appends_equal_factor::<f32>();
    }

    fn removal_equals_factor_of_the_reduced_matrix<T: Element>() {
        let mut rng = Rng::new(3);
        for &n in &SIZES[1..] {
            let a = spd::<T>(n, &mut rng);
            let full = Cholesky::factor(&a, n).unwrap();
            let idx: Vec<usize> = if n <= 13 { (0..n).collect() } else { vec![0, 1, n / 2, n - 2, n - 1] };
            for &i in &idx {
                let mut ch = full.clone();
                ch.remove(i);
                assert_eq!(ch.dim(), n - 1);
                let reduced = naive::delete_row_col(&a, n, i);
                let want = naive::cholesky(&reduced, n - 1).unwrap();
                let e = rel_err(&ch.to_dense(), &want);
                assert!(e < tol::<T>(), "{} n = {n}, remove {i}: {e:e}", T::DTYPE);
                // Upper triangle stays zero, pivots positive.
                for r in 0..n - 1 {
                    assert!(ch.l(r, r) > T::zero());
                }
                // The downdated factor keeps working: append the removed row/column back at the end.
                let mut col: Vec<T> = (0..n).filter(|&c| c != i).map(|c| a[i * n + c]).collect();
                ch.append(&col, a[i * n + i]).unwrap();
                let mut perm: Vec<usize> = (0..n).filter(|&c| c != i).collect();
                perm.push(i);
                let pa: Vec<T> = (0..n * n).map(|p| a[perm[p / n] * n + perm[p % n]]).collect();
                let e = rel_err(&ch.to_dense(), &naive::cholesky(&pa, n).unwrap());
                assert!(e < tol::<T>(), "{} n = {n}, remove {i} then append: {e:e}", T::DTYPE);
                col.clear();
            }
        }
    }

    #[test]
    fn removing_any_index_equals_factor_without_it() {
        removal_equals_factor_of_the_reduced_matrix::<f64>();
        removal_equals_factor_of_the_reduced_matrix::<f32>();
    }

    /// A long random sequence of appends and removes (as a LARS path does) stays within
    /// rounding of a fresh factor of the current index set.
    #[test]
    fn long_update_sequences_do_not_drift() {
        let mut rng = Rng::new(4);
        let big = 60;
        let a = spd::<f64>(big, &mut rng);
        let mut ch = Cholesky::<f64>::with_capacity(8);
        let mut set: Vec<usize> = Vec::new();
        for step in 0..400 {
            let add = set.is_empty() || (set.len() < big && rng.uniform() < 0.6);
            if add {
                let j = loop {
                    let j = rng.below(big as u64) as usize;
                    if !set.contains(&j) {
                        break j;
                    }
                };
                let col: Vec<f64> = set.iter().map(|&s| a[j * big + s]).collect();
                ch.append(&col, a[j * big + j]).unwrap();
                set.push(j);
            } else {
                let p = rng.below(set.len() as u64) as usize;
                ch.remove(p);
                set.remove(p);
            }
            if step % 50 == 49 {
                let n = set.len();
                let sub: Vec<f64> = (0..n * n).map(|p| a[set[p / n] * big + set[p % n]]).collect();
                let e = rel_err(&ch.to_dense(), &naive::cholesky(&sub, n).unwrap());
                assert!(e < 1e-12, "step {step}, |set| = {n}: {e:e}");
            }
        }
    }

    fn solves_match_naive<T: Element>() {
        let mut rng = Rng::new(5);
        for &n in &SIZES {
            let a = spd::<T>(n, &mut rng);
            let ch = Cholesky::factor(&a, n).unwrap();
            let b: Vec<T> = (0..n).map(|_| T::of(rng.normal())).collect();
            let mut x = b.clone();
            ch.solve_in_place(&mut x);
            let e = rel_err(&x, &naive::solve(&a, n, &b).unwrap());
            assert!(e < 10.0 * tol::<T>(), "{} n = {n}: solve {e:e}", T::DTYPE);
            let l = ch.to_dense();
            let mut y = b.clone();
            ch.solve_lower(&mut y);
            assert!(rel_err(&y, &naive::solve_triangular(&l, n, n, &b, true)) < tol::<T>());
            let lt: Vec<T> = (0..n * n).map(|p| l[(p % n) * n + p / n]).collect();
            let mut z = b.clone();
            ch.solve_upper(&mut z);
            assert!(rel_err(&z, &naive::solve_triangular(&lt, n, n, &b, false)) < tol::<T>());
        }
    }

    #[test]
    fn cholesky_solves_match_naive() {
        solves_match_naive::<f64>();
        solves_match_naive::<f32>();
    }

    fn free_triangular_solves<T: Element>() {
        let mut rng = Rng::new(6);
        for &n in &SIZES {
            let ld = n + 3;
            // Lower-triangular L with a dominant diagonal; padding and the upper triangle are NaN
            // to show they are never read.
            let mut l = vec![T::nan(); n.saturating_sub(1) * ld + n];
            let mut u = vec![T::nan(); n.saturating_sub(1) * ld + n];
            for i in 0..n {
                for j in 0..=i {
                    let v = if i == j { 2.0 + rng.uniform() } else { rng.normal() / (n as f64).sqrt() };
                    l[i * ld + j] = T::of(v);
                    u[j * ld + i] = T::of(v); // U = Lᵀ
                }
            }
            let dense = |m: &[T], lower: bool, transpose: bool| -> Vec<T> {
                (0..n * n)
                    .map(|p| {
                        let (i, j) = if transpose { (p % n, p / n) } else { (p / n, p % n) };
                        let inside = if lower { j <= i } else { j >= i };
                        if inside {
                            m[i * ld + j]
                        } else {
                            T::zero()
                        }
                    })
                    .collect()
            };
            let b: Vec<T> = (0..n).map(|_| T::of(rng.normal())).collect();
            for (mat, lower) in [(&l, true), (&u, false)] {
                for trans in [Trans::No, Trans::Yes] {
                    let mut x = b.clone();
                    if lower {
                        solve_lower_triangular(mat, ld, n, &mut x, trans).unwrap();
                    } else {
                        solve_upper_triangular(mat, ld, n, &mut x, trans).unwrap();
                    }
                    let t = trans == Trans::Yes;
                    let want = naive::solve_triangular(&dense(mat, lower, t), n, n, &b, lower != t);
                    let e = rel_err(&x, &want);
                    assert!(e < tol::<T>(), "{} n = {n}, lower {lower}, {trans:?}: {e:e}", T::DTYPE);
                }
            }
        }
    }

    #[test]
    fn free_triangular_solves_match_naive_with_padding() {
        free_triangular_solves::<f64>();
        free_triangular_solves::<f32>();
    }

    #[test]
    fn singular_triangular_matrix_is_an_error_and_b_is_untouched() {
        // L = [[1, 0, 0], [2, 3, 0], [4, 5, 0]]: the last diagonal entry is zero.
        let l = [1.0, 0.0, 0.0, 2.0, 3.0, 0.0, 4.0, 5.0, 0.0];
        let mut b = [1.0, 2.0, 3.0];
        let e = solve_lower_triangular(&l, 3, 3, &mut b, Trans::No).unwrap_err();
        assert!(e.to_string().contains("diagonal entry 2 is 0e0"), "{e}");
        assert_eq!(b, [1.0, 2.0, 3.0]);
        let e = solve_upper_triangular(&l, 3, 3, &mut b, Trans::Yes).unwrap_err();
        assert!(e.to_string().contains("diagonal entry 2"), "{e}");
    }

    #[test]
    fn not_positive_definite_names_the_pivot() {
        // [[1, 2], [2, 1]]: pivot² of row 1 is 1 − 2² = −3.
        let e = Cholesky::factor(&[1.0, 2.0, 2.0, 1.0], 2).unwrap_err();
        assert!(matches!(e, Error::Numerical { op: "cholesky", .. }));
        assert!(e.to_string().contains("pivot 1 is -3e0 (not positive definite"), "{e}");
        // [[1, 1], [1, 1]]: pivot² of row 1 is exactly 0.
        let e = Cholesky::factor(&[1.0, 1.0, 1.0, 1.0], 2).unwrap_err();
        assert!(e.to_string().contains("pivot 1 is 0e0"), "{e}");
        // [[0]]: the first pivot.
        assert!(Cholesky::factor(&[0.0f32], 1).unwrap_err().to_string().contains("pivot 0 is 0e0"));
        assert!(Cholesky::factor(&[-2.0f32], 1).unwrap_err().to_string().contains("pivot 0 is -2e0"));
        // A Gram matrix whose column 4 duplicates column 1 (B has two equal columns).
        let mut rng = Rng::new(7);
        for n in [5usize, 13, 31] {
            let m = 2 * n;
            let mut b: Vec<f64> = (0..m * n).map(|_| rng.normal()).collect();
            for r in 0..m {
                b[r * n + 4] = b[r * n + 1];
            }
            let a: Vec<f64> =
                (0..n * n).map(|p| (0..m).map(|r| b[r * n + p / n] * b[r * n + p % n]).sum::<f64>()).collect();
            let e = Cholesky::factor(&a, n).unwrap_err();
            assert!(e.to_string().contains("pivot 4 is"), "n = {n}: {e}");
        }
        // A NaN in the lower triangle at (4, 2) reaches pivot 4; no NaN is stored.
        let mut a = spd::<f64>(7, &mut rng);
        a[4 * 7 + 2] = f64::NAN;
        let e = Cholesky::factor(&a, 7).unwrap_err();
        assert!(e.to_string().contains("pivot 4 is NaN"), "{e}");
        let mut a = spd::<f32>(3, &mut rng);
        a[2 * 3 + 2] = f32::INFINITY;
        assert!(Cholesky::factor(&a, 3).unwrap_err().to_string().contains("pivot 2 is"));
    }

    #[test]
    fn failed_append_leaves_the_factor_unchanged() {
        let mut rng = Rng::new(8);
        let n = 7;
        let a = spd::<f64>(n, &mut rng);
        let mut ch = Cholesky::factor(&a[..], n).unwrap();
        ch.reserve(n + 1);
        let before = ch.to_dense();
        let good: Vec<f64> = (0..n).map(|j| a[3 * n + j]).collect();
        for (col, diag, what) in [
            (vec![f64::NAN; n], 1.0, "NaN column"),
            (good.clone(), f64::NAN, "NaN diagonal"),
            (good.clone(), a[3 * n + 3], "duplicate of row 3"),
            (good.clone(), -1.0, "negative diagonal"),
            (good.clone(), f64::INFINITY, "infinite diagonal"),
        ] {
            let e = ch.append(&col, diag).unwrap_err();
            assert!(e.to_string().contains("pivot 7 is"), "{what}: {e}");
            assert_eq!(ch.dim(), n, "{what}");
            assert!(ch.to_dense() == before, "{what}: factor changed");
        }
        // And it still accepts a valid row: the result equals the 8 × 8 factor.
        let b = spd::<f64>(n + 1, &mut rng);
        let mut ch = Cholesky::factor(&naive_leading(&b, n + 1, n), n).unwrap();
        let _ = ch.append(&[f64::NAN; 7], 1.0);
        ch.append(&b[n * (n + 1)..n * (n + 1) + n], b[n * (n + 1) + n]).unwrap();
        assert!(ch.to_dense() == Cholesky::factor(&b, n + 1).unwrap().to_dense());
    }

    /// Leading `k × k` block of a row-major `n × n` matrix.
    fn naive_leading(a: &[f64], n: usize, k: usize) -> Vec<f64> {
        (0..k * k).map(|p| a[(p / k) * n + p % k]).collect()
    }

    /// The noise of the Schur complement of an exactly dependent column, relative to its
    /// diagonal, stays far below the default floor (this measures the claim in
    /// `DEFAULT_PIVOT_FLOOR`'s docs), and a column at distance 1e-3·‖col‖ from the span is
    /// accepted while one at 1e-8 is rejected.
    #[test]
    fn pivot_floor_separates_dependent_from_independent_columns() {
        let mut rng = Rng::new(9);
        let mut worst = 0.0f64;
        for n in [1usize, 5, 13, 31, 100, 200] {
            let m = n + 20;
            let b: Vec<f64> = (0..m * n).map(|_| rng.normal()).collect();
            let gram = |u: &[f64], v: &[f64]| -> f64 { u.iter().zip(v).map(|(x, y)| x * y).sum() };
            let cols: Vec<Vec<f64>> = (0..n).map(|j| (0..m).map(|r| b[r * n + j]).collect()).collect();
            let a: Vec<f64> = (0..n * n).map(|p| gram(&cols[p / n], &cols[p % n])).collect();
            let ch = Cholesky::factor(&a, n).unwrap();
            for trial in 0..20 {
                // new = B·w (a duplicate when w is a unit vector), possibly plus an orthogonal-ish
                // perturbation of relative size `eps`.
                let w: Vec<f64> = if trial < 3 {
                    (0..n).map(|j| if j == trial % n { 1.0 } else { 0.0 }).collect()
                } else {
                    (0..n).map(|_| rng.normal()).collect()
                };
                let new: Vec<f64> = (0..m).map(|r| (0..n).map(|j| b[r * n + j] * w[j]).sum()).collect();
                let col: Vec<f64> = cols.iter().map(|c| gram(c, &new)).collect();
                let diag = gram(&new, &new);
                let mut t = ch.clone();
                t.set_pivot_floor(0.0);
                let rel = match t.try_append(&col, diag) {
                    Ok(()) => t.l(n, n).powi(2) / diag,
                    Err(e) => e.pivot_sq.abs() / diag,
                };
                worst = worst.max(rel / f64::EPSILON);
                assert!(ch.clone().append(&col, diag).is_err(), "n = {n}, trial {trial}: dependent column accepted");
                for (eps, accept) in [(1e-3, true), (1e-8, false)] {
                    let noise: Vec<f64> = (0..m).map(|_| rng.normal()).collect();
                    let scale = eps * gram(&new, &new).sqrt() / gram(&noise, &noise).sqrt();
                    let v: Vec<f64> = new.iter().zip(&noise).map(|(x, z)| x + scale * z).collect();
                    let col: Vec<f64> = cols.iter().map(|c| gram(c, &v)).collect();
                    let got = ch.clone().append(&col, gram(&v, &v)).is_ok();
                    assert_eq!(got, accept, "n = {n}, trial {trial}, distance {eps:e}");
                }
            }
        }
        eprintln!("worst |Schur complement| of a dependent column: {worst:.1}·ε·a_jj");
        assert!(worst < DEFAULT_PIVOT_FLOOR / 4.0, "noise {worst}·ε is too close to the floor");
    }

    #[test]
    #[should_panic(expected = "Cholesky::solve_in_place: b has 4 elements but the factor is 3×3")]
    fn solve_with_wrong_length_names_both() {
        let ch = Cholesky::factor(&[4.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 4.0], 3).unwrap();
        ch.solve_in_place(&mut [1.0; 4]);
    }

    #[test]
    #[should_panic(expected = "Cholesky::append: col has 2 elements but the factor is 3×3")]
    fn append_with_wrong_length_names_both() {
        let mut ch = Cholesky::factor(&[4.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 4.0], 3).unwrap();
        let _ = ch.append(&[1.0, 1.0], 3.0);
    }

    #[test]
    #[should_panic(expected = "Cholesky::factor: a has 5 elements but n·n = 2·2 = 4")]
    fn factor_with_wrong_length_names_both() {
        let _ = Cholesky::factor(&[1.0; 5], 2);
    }

    #[test]
    #[should_panic(expected = "solve_lower_triangular: b has 2 elements but the matrix is 3×3")]
    fn triangular_solve_with_wrong_length_names_both() {
        let _ = solve_lower_triangular(&[1.0; 9], 3, 3, &mut [1.0; 2], Trans::No);
    }

    #[test]
    #[should_panic(expected = "Cholesky::remove: index 3 out of range for a 3×3 factor")]
    fn remove_out_of_range_panics() {
        let mut ch = Cholesky::factor(&[4.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 4.0], 3).unwrap();
        ch.remove(3);
    }

    // ---------------------------------------------------------------- power iteration

    /// `M = H₂·H₁·diag(λ)·H₁·H₂` with Householder reflections `H = I − 2vvᵀ/‖v‖²` (orthogonal
    /// and symmetric), so the eigenvalues of M are exactly `λ`.
    fn psd_with_spectrum(lams: &[f64], rng: &mut Rng) -> Vec<f64> {
        let n = lams.len();
        let mut m: Vec<f64> = (0..n * n).map(|p| if p / n == p % n { lams[p / n] } else { 0.0 }).collect();
        for _ in 0..2 {
            let v: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
            let vv: f64 = v.iter().map(|x| x * x).sum();
            let h: Vec<f64> =
                (0..n * n).map(|p| if p / n == p % n { 1.0 } else { 0.0 } - 2.0 * v[p / n] * v[p % n] / vv).collect();
            let mul = |a: &[f64], b: &[f64]| -> Vec<f64> {
                (0..n * n).map(|p| (0..n).map(|q| a[(p / n) * n + q] * b[q * n + p % n]).sum()).collect()
            };
            m = mul(&mul(&h, &m), &h);
        }
        m
    }

    fn apply_dense<T: Element>(m: &[T], n: usize) -> impl FnMut(&[T], &mut [T]) + '_ {
        move |v, w| {
            for i in 0..n {
                w[i] = m[i * n..i * n + n].iter().zip(v).map(|(a, b)| *a * *b).sum();
            }
        }
    }

    #[test]
    fn power_iteration_on_diagonal_and_random_psd_matrices() {
        let mut rng = Rng::new(10);
        let tight = |init| PowerOptions { max_iter: 2000, tol: 1e-13, init, seed: 3 };
        // Diagonal: the top eigenvalue is the largest entry, 7; the next is 4 (ratio 4/7).
        for n in [1usize, 2, 3, 5, 13, 31] {
            let d: Vec<f64> = (0..n).map(|i| if i == n / 2 { 7.0 } else { 4.0 * rng.uniform() }).collect();
            let r =
                power_iteration(n, |v, w| w.iter_mut().zip(v).zip(&d).for_each(|((w, v), d)| *w = v * d), tight(None))
                    .unwrap();
            assert!(r.converged, "n = {n}");
            assert!((r.value - 7.0).abs() < 1e-10, "n = {n}: {}", r.value);
            assert!((r.vector[n / 2].abs() - 1.0).abs() < 1e-5, "n = {n}: eigenvector");
            let nv: f64 = r.vector.iter().map(|x| x * x).sum();
            assert!((nv - 1.0).abs() < 1e-12);
        }
        // Dense PSD with a known spectrum, cross-checked with the Jacobi reference.
        for n in [2usize, 3, 5, 7, 13, 31] {
            let lams: Vec<f64> = (0..n).map(|i| if i == 0 { 5.0 } else { 3.5 * rng.uniform() }).collect();
            let m = psd_with_spectrum(&lams, &mut rng);
            assert!((naive::top_eigenvalue(&m, n) - 5.0).abs() < 1e-10, "n = {n}: Jacobi reference");
            let r = power_iteration(n, apply_dense(&m, n), tight(None)).unwrap();
            assert!(r.converged && (r.value - 5.0).abs() < 1e-9, "n = {n}: {:?}", r.value);
            let m32: Vec<f32> = m.iter().map(|&x| x as f32).collect();
            let r = power_iteration(
                n,
                apply_dense(&m32, n),
                PowerOptions { max_iter: 2000, tol: 1e-6, init: None, seed: 3 },
            )
            .unwrap();
            assert!((r.value as f64 - 5.0).abs() < 1e-4, "n = {n}: f32 {}", r.value);
        }
        // M = AᵀA given as v ↦ Aᵀ(A v): the estimate vᵀMv = ‖Av‖², compared with Jacobi on AᵀA.
        let (rows, n) = (40, 25);
        let a: Vec<f64> = (0..rows * n).map(|_| rng.normal()).collect();
        let ata: Vec<f64> = (0..n * n).map(|p| (0..rows).map(|r| a[r * n + p / n] * a[r * n + p % n]).sum()).collect();
        let want = naive::top_eigenvalue(&ata, n);
        let mut av = vec![0.0; rows];
        let r = power_iteration(
            n,
            |v, w| {
                for (r, x) in av.iter_mut().enumerate() {
                    *x = (0..n).map(|j| a[r * n + j] * v[j]).sum();
                }
                for (j, x) in w.iter_mut().enumerate() {
                    *x = (0..rows).map(|r| a[r * n + j] * av[r]).sum();
                }
            },
            tight(None),
        )
        .unwrap();
        assert!((r.value - want).abs() < 1e-9 * want, "AᵀA: {} vs {want}", r.value);
    }

    #[test]
    fn warm_start_converges_in_fewer_iterations() {
        let mut rng = Rng::new(11);
        let n = 31;
        let lams: Vec<f64> = (0..n).map(|i| if i == 0 { 2.0 } else { 1.6 * rng.uniform() }).collect();
        let m = psd_with_spectrum(&lams, &mut rng);
        let cold = power_iteration(n, apply_dense(&m, n), PowerOptions::default()).unwrap();
        assert!(cold.converged, "{cold:?}");
        // A slightly changed operator (as after renormalising atoms): warm start from the last vector.
        let m2: Vec<f64> = m.iter().map(|x| x * 1.001).collect();
        let warm = power_iteration(
            n,
            apply_dense(&m2, n),
            PowerOptions { init: Some(&cold.vector), ..PowerOptions::default() },
        )
        .unwrap();
        assert!(warm.converged);
        assert!(warm.iterations < cold.iterations, "warm {} vs cold {}", warm.iterations, cold.iterations);
        assert!((warm.value - 2.002).abs() < 1e-4 * 2.0, "{}", warm.value);
        // Defaults are the SDNet ones.
        let d = PowerOptions::<f64>::default();
        assert_eq!((d.max_iter, d.tol), (50, 1e-5));
    }

    #[test]
    fn power_iteration_edge_cases() {
        // n = 0.
        let r = power_iteration::<f64>(0, |_, _| {}, PowerOptions::default()).unwrap();
        assert_eq!((r.value, r.iterations, r.converged), (0.0, 0, true));
        // M = 0: the estimate is 0.
        let r = power_iteration::<f32>(4, |_, w| w.fill(0.0), PowerOptions::default()).unwrap();
        assert_eq!((r.value, r.converged), (0.0, true));
        // A zero warm start falls back to the random start.
        let r = power_iteration::<f64>(
            3,
            |v, w| w.copy_from_slice(v),
            PowerOptions { init: Some(&[0.0; 3]), ..PowerOptions::default() },
        )
        .unwrap();
        assert!((r.value - 1.0).abs() < 1e-12);
        // Not converged within max_iter: reported, not an error.
        let r = power_iteration::<f64>(
            2,
            |v, w| {
                w[0] = v[0];
                w[1] = 0.999 * v[1];
            },
            PowerOptions { max_iter: 3, tol: 1e-15, init: Some(&[1.0, 1.0]), seed: 0 },
        )
        .unwrap();
        assert!(!r.converged && r.iterations == 3 && r.rel_change > 0.0);
        // The operator returns NaN: an error naming the entry and the iteration.
        let mut calls = 0;
        let e = power_iteration::<f64>(
            3,
            |v, w| {
                calls += 1;
                w.copy_from_slice(v);
                if calls == 2 {
                    w[1] = f64::NAN;
                }
            },
            PowerOptions { tol: 0.0, ..PowerOptions::default() },
        )
        .unwrap_err();
        assert!(e.to_string().contains("returned NaN at entry 1 in iteration 2"), "{e}");
        let e = power_iteration::<f64>(
            2,
            |v, w| w.copy_from_slice(v),
            PowerOptions { init: Some(&[1.0, f64::INFINITY]), ..PowerOptions::default() },
        )
        .unwrap_err();
        assert!(e.to_string().contains("init[1] is inf"), "{e}");
    }

    #[test]
    #[should_panic(expected = "power_iteration: init has 2 elements but n = 3")]
    fn power_iteration_init_length_is_checked() {
        let _ =
            power_iteration::<f64>(3, |_, _| {}, PowerOptions { init: Some(&[1.0, 2.0]), ..PowerOptions::default() });
    }
}
