//! Triangular solves on row-major slices: the row kernels (shared with [`super::Cholesky`]) and
//! the free solves with their checks.

use crate::dispatched;
use crate::kernels::simd::Isa;
use crate::{Element, Error, Result};

/// `b ← L⁻¹ b` for lower-triangular row-major `L` (leading dimension `ld`) with a nonzero
/// diagonal: row dot products, contiguous.
pub(super) fn forward_rows<T: Element>(l: &[T], ld: usize, b: &mut [T]) {
    forward_substitute(l, |i| i * ld, b, 0);
}

/// Rows per block of [`forward_substitute`]: independent sums that hide the latency of the
/// additions (one scalar chain per row).
const FORWARD_BLOCK: usize = 8;

/// Forward substitution from row `start` on: for `i = start..b.len()`,
/// `b_i ← (b_i − Σ_{j<i} L_ij·b_j) / L_ii`, given `b_0..b_{start−1}` already solved. Row `i` of
/// `L` starts at `l[row(i)]` (`i·ld` for a matrix with leading dimension `ld`, `i·(i+1)/2` for
/// one packed by rows).
///
/// Each row's sum is the sequential one, `((b_i − L_i0·b_0) − L_i1·b_1) − …`, so the result
/// has the bits of the plain row loop; the rows run in blocks of [`FORWARD_BLOCK`] whose sums
/// advance together over the columns they share, so the additions of one row do not wait on
/// each other. **Panics** if `l` is too short for a row.
#[inline]
pub fn forward_substitute<T: Element>(l: &[T], row: impl Fn(usize) -> usize, b: &mut [T], start: usize) {
    const R: usize = FORWARD_BLOCK;
    let n = b.len();
    let mut i = start;
    while i + R <= n {
        let rows: [&[T]; R] = std::array::from_fn(|r| &l[row(i + r)..row(i + r) + i + r + 1]);
        let mut s: [T; R] = std::array::from_fn(|r| b[i + r]);
        let (done, rest) = b.split_at_mut(i);
        let heads: [&[T]; R] = std::array::from_fn(|r| &rows[r][..i]);
        for (j, &x) in done.iter().enumerate() {
            for r in 0..R {
                s[r] -= heads[r][j] * x;
            }
        }
        // The triangle of the block, row by row.
        for r in 0..R {
            let row = rows[r];
            for (q, &x) in rest[..r].iter().enumerate() {
                s[r] -= row[i + q] * x;
            }
            rest[r] = s[r] / row[i + r];
        }
        i += R;
    }
    for i in i..n {
        let row = &l[row(i)..row(i) + i + 1];
        let mut s = b[i];
        for (a, x) in row[..i].iter().zip(&b[..i]) {
            s -= *a * *x;
        }
        b[i] = s / row[i];
    }
}

/// Rows per vector block of [`forward_substitute_mirror`] (one AVX-512 register of `f32`).
const MIRROR_BLOCK: usize = 16;
/// Blocks whose sums advance together (independent chains that hide the additions' latency).
const MIRROR_BLOCKS: usize = 4;
/// Rows of one group of [`forward_substitute_mirror`]: a mirror row must have this many
/// readable entries past its last column in use.
pub(crate) const MIRROR_PAD: usize = MIRROR_BLOCK * MIRROR_BLOCKS;

/// [`forward_substitute`] from row 0 with the columns of `L` at hand: `ut[j·ldm + i] = L[i, j]`
/// (the mirror of `L`, row `j` of `Lᵀ` contiguous), `L`'s rows at `l[i·ld..]` for the
/// diagonal blocks. Same bits: each row's sum is the sequential one; the vectors run across
/// rows (16 at a time, 4 such blocks together), so the sums no longer wait on each other or on
/// a horizontal reduction. Every mirror row read needs [`MIRROR_PAD`] entries past column
/// `b.len()` (their values, whatever they are, only reach sums of rows past the end).
/// **Panics** if `l` or `ut` is too short.
#[track_caller]
pub(crate) fn forward_substitute_mirror<T: Element>(level: Isa, l: &[T], ld: usize, ut: &[T], ldm: usize, b: &mut [T]) {
    let n = b.len();
    assert!(n == 0 || (n - 1) * ld + n <= l.len(), "forward_substitute_mirror: L is too short");
    assert!(n == 0 || (n - 1) * ldm + n + MIRROR_PAD <= ut.len(), "forward_substitute_mirror: the mirror is too short");
    assert!(ldm >= n + MIRROR_PAD, "forward_substitute_mirror: the mirror's rows are too short");
    mirror_at(level, l, ld, ut, ldm, b)
}

dispatched!(fn mirror_at<T>(l: &[T], ld: usize, ut: &[T], ldm: usize, b: &mut [T]) = mirror_imp);

#[inline(always)]
fn mirror_imp<T: Element>(l: &[T], ld: usize, ut: &[T], ldm: usize, b: &mut [T]) {
    const B: usize = MIRROR_BLOCK;
    const G: usize = MIRROR_BLOCKS;
    let n = b.len();
    let mut i = 0;
    while i < n {
        let rows = (n - i).min(B * G);
        let mut s = [[T::zero(); B]; G];
        for r in 0..rows {
            s[r / B][r % B] = b[i + r];
        }
        // Columns 0..i (solved before this group), in order, for all the group's rows.
        for (j, &x) in b[..i].iter().enumerate() {
            let col: &[T; B * G] = ut[j * ldm + i..j * ldm + i + B * G].try_into().expect("a group of columns");
            for g in 0..G {
                for t in 0..B {
                    s[g][t] -= col[g * B + t] * x;
                }
            }
        }
        // The group's own columns, block by block: a block's rows are finished row by row
        // (its triangle), then its columns go into the sums of the later blocks.
        for g in 0..rows.div_ceil(B) {
            let r0 = g * B;
            for t in 0..B.min(rows - r0) {
                let r = i + r0 + t;
                let row = &l[r * ld + i + r0..r * ld + r + 1];
                let mut acc = s[g][t];
                for (q, &a) in row[..t].iter().enumerate() {
                    acc -= a * b[i + r0 + q];
                }
                b[r] = acc / row[t];
            }
            for j in i + r0..(i + r0 + B).min(i + rows) {
                let x = b[j];
                let col: &[T; B * G] = ut[j * ldm + i..j * ldm + i + B * G].try_into().expect("a group of columns");
                for (h, sh) in s.iter_mut().enumerate().skip(g + 1) {
                    for t in 0..B {
                        sh[t] -= col[h * B + t] * x;
                    }
                }
            }
        }
        i += rows;
    }
}

/// `b ← L⁻ᵀ b` for lower-triangular row-major `L`: for i = n−1 … 0, `x_i = b_i / L_ii`, then
/// `b_j −= L_ij·x_i` for j < i (an axpy with row i, contiguous).
pub(super) fn backward_rows_transposed<T: Element>(l: &[T], ld: usize, b: &mut [T]) {
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
