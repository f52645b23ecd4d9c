//! Plainly written references in `f64` for tests and benches: no updates, no tricks.

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
