//! The linear algebra checked against the plainly written references of [`super::naive`].

use super::*;
use crate::{Element, Error, Rng};

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
        let r = power_iteration(n, |v, w| w.iter_mut().zip(v).zip(&d).for_each(|((w, v), d)| *w = v * d), tight(None))
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
        let r =
            power_iteration(n, apply_dense(&m32, n), PowerOptions { max_iter: 2000, tol: 1e-6, init: None, seed: 3 })
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
    let warm =
        power_iteration(n, apply_dense(&m2, n), PowerOptions { init: Some(&cold.vector), ..PowerOptions::default() })
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
    let _ = power_iteration::<f64>(3, |_, _| {}, PowerOptions { init: Some(&[1.0, 2.0]), ..PowerOptions::default() });
}

/// The reference forward substitution: rows `start..` of `L·y = b`, each row's sum sequential.
fn row_loop<T: Element>(l: &[T], row: &dyn Fn(usize) -> usize, b: &mut [T], start: usize) {
    for i in start..b.len() {
        let mut s = b[i];
        for j in 0..i {
            s -= l[row(i) + j] * b[j];
        }
        b[i] = s / l[row(i) + i];
    }
}

/// The blocked forward substitution gives the bits of the plain row loop (each row's sum
/// sequential), from any starting row, for a leading dimension and for rows packed one after
/// another, across the block edges (8 rows) and for NaN/∞ in `L` and `b`.
fn forward_substitute_is_the_row_loop<T: Element>(rng: &mut Rng) {
    for n in [0, 1, 7, 8, 9, 16, 17, 23, 40, 67] {
        let ld = n + 3;
        let mut l: Vec<T> = (0..ld * ld).map(|_| T::of(0.5 * rng.normal())).collect();
        for i in 0..n {
            l[i * ld + i] = T::of(1.0 + rng.uniform());
        }
        let packed: Vec<T> = (0..n).flat_map(|i| l[i * ld..i * ld + i + 1].to_vec()).collect();
        for start in [0, 1, 5, n / 2, n] {
            if start > n {
                continue;
            }
            for poison in [false, true] {
                let mut b: Vec<T> = (0..n).map(|_| T::of(rng.normal())).collect();
                let mut l = l.clone();
                if poison && n > 10 {
                    b[3] = T::of(f64::NAN);
                    l[9 * ld + 2] = T::of(f64::INFINITY);
                }
                let mut want = b.clone();
                row_loop(&l, &|i| i * ld, &mut want, start);
                let mut got = b.clone();
                forward_substitute(&l, |i| i * ld, &mut got, start);
                let bits = |v: &[T]| v.iter().map(|x| x.as_f64().to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{} n={n} start={start} poison={poison}", T::DTYPE);
                if !poison {
                    let mut got = b.clone();
                    forward_substitute(&packed, |i| i * (i + 1) / 2, &mut got, start);
                    assert_eq!(bits(&got), bits(&want), "{} packed n={n} start={start}", T::DTYPE);
                }
            }
        }
    }
}

#[test]
fn forward_substitute_has_the_bits_of_the_row_loop() {
    let mut rng = Rng::new(11);
    forward_substitute_is_the_row_loop::<f64>(&mut rng);
    forward_substitute_is_the_row_loop::<f32>(&mut rng);
}

/// The column-mirror forward substitution gives the bits of the plain row loop on every
/// instruction set, across its block (16) and group (64) edges, with NaN/∞ in `L` and `b`, and
/// whatever lies in the mirror past the last row.
#[test]
fn forward_substitute_mirror_has_the_bits_of_the_row_loop() {
    use super::triangular::{forward_substitute_mirror, MIRROR_PAD};
    use crate::kernels::simd::Isa;
    fn check<T: Element>(rng: &mut Rng) {
        for n in [0, 1, 5, 15, 16, 17, 63, 64, 65, 100, 130, 203] {
            let ld = n + 2;
            let mut l: Vec<T> = (0..ld * ld).map(|_| T::of(0.3 * rng.normal())).collect();
            for i in 0..n {
                l[i * ld + i] = T::of(1.0 + rng.uniform());
            }
            let ldm = n + MIRROR_PAD + 1;
            // Junk past the factor's rows: it must not reach any result.
            let mut ut: Vec<T> = (0..ldm * (n + 1)).map(|_| T::of(1e30 * rng.normal())).collect();
            for i in 0..n {
                for j in 0..=i {
                    ut[j * ldm + i] = l[i * ld + j];
                }
            }
            for poison in [false, true] {
                let mut b: Vec<T> = (0..n).map(|_| T::of(rng.normal())).collect();
                let (mut l, mut ut) = (l.clone(), ut.clone());
                if poison && n > 70 {
                    b[3] = T::of(f64::NAN);
                    l[69 * ld + 2] = T::of(f64::INFINITY);
                    ut[2 * ldm + 69] = T::of(f64::INFINITY);
                    b[40] = T::of(f64::NEG_INFINITY);
                }
                let mut want = b.clone();
                row_loop(&l, &|i| i * ld, &mut want, 0);
                let bits = |v: &[T]| v.iter().map(|x| x.as_f64().to_bits()).collect::<Vec<_>>();
                for level in Isa::available() {
                    let mut got = b.clone();
                    forward_substitute_mirror(level, &l, ld, &ut, ldm, &mut got);
                    assert_eq!(bits(&got), bits(&want), "{} n={n} poison={poison} {}", T::DTYPE, level.name());
                }
            }
        }
    }
    let mut rng = Rng::new(12);
    check::<f64>(&mut rng);
    check::<f32>(&mut rng);
}

/// A factor that keeps the column mirror goes through appends (across its growth), removals
/// and a rejected pivot with the bits of one that does not.
#[test]
fn the_column_mirror_changes_no_bit_of_the_factor() {
    fn check<T: Element>(rng: &mut Rng) {
        let (n, m) = (150, 170);
        let a: Vec<f64> = (0..n * m).map(|_| rng.normal()).collect();
        let g = |i: usize, j: usize| T::of((0..m).map(|t| a[i * m + t] * a[j * m + t]).sum::<f64>());
        let mut plain = Cholesky::<T>::with_capacity(3);
        let mut mirrored = Cholesky::<T>::with_capacity(3);
        mirrored.set_column_mirror(true);
        let mut rows: Vec<usize> = vec![];
        for step in 0..n + 40 {
            if step % 7 == 6 && !rows.is_empty() {
                let q = (step * 31) % rows.len();
                rows.remove(q);
                plain.remove(q);
                mirrored.remove(q);
            } else {
                let j = (0..n).find(|j| !rows.contains(j)).unwrap_or(0);
                let col: Vec<T> = rows.iter().map(|&i| g(i, j)).collect();
                let (x, y) = (plain.try_append(&col, g(j, j)), mirrored.try_append(&col, g(j, j)));
                assert_eq!(x.is_ok(), y.is_ok());
                if x.is_ok() {
                    rows.push(j);
                }
            }
            let bits = |c: &Cholesky<T>| c.to_dense().iter().map(|x| x.as_f64().to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&plain), bits(&mirrored), "{} step {step}", T::DTYPE);
        }
        assert!(plain.dim() > 100, "{}", plain.dim());
        // A dependent column (a repeated one) is rejected by both, and both stay unchanged.
        let j = rows[5];
        let col: Vec<T> = rows.iter().map(|&i| g(i, j)).collect();
        assert!(plain.try_append(&col, g(j, j)).is_err());
        assert!(mirrored.try_append(&col, g(j, j)).is_err());
        assert_eq!(plain.to_dense().len(), mirrored.to_dense().len());
    }
    let mut rng = Rng::new(13);
    check::<f64>(&mut rng);
    check::<f32>(&mut rng);
}
