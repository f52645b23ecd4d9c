//! LARS-EN (docs/math.md §1): KKT conditions, agreement with a plainly written coordinate-descent
//! reference, the lasso modification, the positive variant, the cap, hard inputs and
//! determinism across thread counts.

use engine::{Element, Rng, Tensor};
use sparsegrad_sparse::{lars_en, lars_en_gram, LarsConfig, LarsSolution, SparseError};

// ------------------------------------------------------------------------------ fixtures

/// Normalises every column of a row-major `m × k` buffer to unit ℓ2 norm (zero columns stay).
fn unit_columns(mut d: Vec<f64>, m: usize, k: usize) -> Vec<f64> {
    for j in 0..k {
        let n = (0..m).map(|i| d[i * k + j].powi(2)).sum::<f64>().sqrt();
        if n > 0.0 {
            (0..m).for_each(|i| d[i * k + j] /= n);
        }
    }
    d
}

/// i.i.d. Gaussian dictionary with unit-norm atoms, `[m, k]`.
fn gaussian_dict(m: usize, k: usize, rng: &mut Rng) -> Tensor<f64> {
    let d = (0..m * k).map(|_| rng.normal()).collect();
    Tensor::from_vec(unit_columns(d, m, k), &[m, k])
}

/// The correlated dictionary of `peers/lars.py`: `D = A·B/√20 + 0.5·E` with A `[m, 20]`,
/// B `[20, k]`, E `[m, k]` standard normal (a rank-20 common part plus noise, high mutual
/// coherence), then unit-norm columns.
fn correlated_dict(m: usize, k: usize, rng: &mut Rng) -> Tensor<f64> {
    let r = 20;
    let a: Vec<f64> = (0..m * r).map(|_| rng.normal()).collect();
    let b: Vec<f64> = (0..r * k).map(|_| rng.normal()).collect();
    let mut d = vec![0.0; m * k];
    for i in 0..m {
        for j in 0..k {
            let common: f64 = (0..r).map(|p| a[i * r + p] * b[p * k + j]).sum();
            d[i * k + j] = common / (r as f64).sqrt() + 0.5 * rng.normal();
        }
    }
    Tensor::from_vec(unit_columns(d, m, k), &[m, k])
}

/// `N` unit-norm signals `x = D·a0 + 0.05·e/√m` with `s`-sparse Gaussian `a0` (lars.py), `[N, m]`.
fn signals(d: &Tensor<f64>, n: usize, s: usize, rng: &mut Rng) -> Tensor<f64> {
    let (m, k) = (d.dim(0), d.dim(1));
    let dv = d.to_vec();
    let mut x = vec![0.0; n * m];
    for row in 0..n {
        let mut idx: Vec<usize> = (0..k).collect();
        rng.shuffle(&mut idx);
        let coef: Vec<(usize, f64)> = idx[..s.min(k)].iter().map(|&j| (j, rng.normal())).collect();
        for i in 0..m {
            let v: f64 = coef.iter().map(|&(j, c)| dv[i * k + j] * c).sum();
            x[row * m + i] = v + 0.05 * rng.normal() / (m as f64).sqrt();
        }
        let nrm = (0..m).map(|i| x[row * m + i].powi(2)).sum::<f64>().sqrt();
        (0..m).for_each(|i| x[row * m + i] /= nrm);
    }
    Tensor::from_vec(x, &[n, m])
}

/// λ1 = 0.1·mean_i max_j |d_jᵀx_i| (lars.py).
fn lambda1_for(d: &Tensor<f64>, x: &Tensor<f64>) -> f64 {
    let c = x.matmul(d).to_vec();
    let k = d.dim(1);
    let n = x.dim(0);
    0.1 * (0..n).map(|i| c[i * k..(i + 1) * k].iter().fold(0.0f64, |m, v| m.max(v.abs()))).sum::<f64>() / n as f64
}

/// `d_jᵀ(x − Dα) − λ2·α_j` for every atom, in f64 with plain loops.
fn kkt_correlations(d: &[f64], m: usize, k: usize, x: &[f64], alpha: &[f64], lambda2: f64) -> Vec<f64> {
    let r: Vec<f64> = (0..m).map(|i| x[i] - (0..k).map(|j| d[i * k + j] * alpha[j]).sum::<f64>()).collect();
    (0..k).map(|j| (0..m).map(|i| d[i * k + j] * r[i]).sum::<f64>() - lambda2 * alpha[j]).collect()
}

/// Worst violation of the KKT conditions of docs/math.md §1 over a batch (signed problem), or of
/// the non-negative problem when `positive`, at penalty `lambda1s[n]` for sample n. Also checks
/// that every nonzero is in the path's active set. Returns (violation, sample, atom).
fn kkt_violation<T: Element>(
    d: &Tensor<f64>,
    x: &Tensor<f64>,
    sol: &LarsSolution<T>,
    lambda1s: &[f64],
    lambda2: f64,
    positive: bool,
) -> (f64, usize, usize) {
    let (m, k, n) = (d.dim(0), d.dim(1), x.dim(0));
    let dv = d.to_vec();
    let xv = x.to_vec();
    let codes = sol.codes.to_f64_vec();
    let mut worst = (0.0, 0, 0);
    for s in 0..n {
        let alpha = &codes[s * k..(s + 1) * k];
        let c = kkt_correlations(&dv, m, k, &xv[s * m..(s + 1) * m], alpha, lambda2);
        let l1 = lambda1s[s];
        for j in 0..k {
            let v = if alpha[j] != 0.0 {
                assert!(sol.paths[s].active.contains(&j), "sample {s}: atom {j} is nonzero but not active");
                if positive {
                    assert!(alpha[j] > 0.0, "sample {s}: α_{j} = {} < 0 in the positive problem", alpha[j]);
                }
                (c[j] - l1 * alpha[j].signum()).abs()
            } else if positive {
                (c[j] - l1).max(0.0)
            } else {
                (c[j].abs() - l1).max(0.0)
            };
            if v > worst.0 {
                worst = (v, s, j);
            }
        }
    }
    worst
}

/// Cyclic coordinate descent on the elastic net, the slow plain reference:
/// `α_j ← S_{λ1}(c_j − Σ_{l≠j} G_jl·α_l) / (G_jj + λ2)` with `G = DᵀD`, `c = Dᵀx`
/// (`max(·, 0)` instead of `S` when `positive`), sweeping until the largest change in a sweep
/// is below 1e-14 (at most 500 000 sweeps).
fn cd_reference(d: &Tensor<f64>, x: &[f64], lambda1: f64, lambda2: f64, positive: bool) -> Vec<f64> {
    let (m, k) = (d.dim(0), d.dim(1));
    let dv = d.to_vec();
    let g: Vec<f64> = (0..k * k).map(|p| (0..m).map(|i| dv[i * k + p / k] * dv[i * k + p % k]).sum()).collect();
    let c: Vec<f64> = (0..k).map(|j| (0..m).map(|i| dv[i * k + j] * x[i]).sum()).collect();
    let mut alpha = vec![0.0; k];
    // q = G·α, kept up to date.
    let mut q = vec![0.0; k];
    for _sweep in 0..500_000 {
        let mut change = 0.0f64;
        for j in 0..k {
            if g[j * k + j] + lambda2 == 0.0 {
                continue;
            }
            let rho = c[j] - (q[j] - g[j * k + j] * alpha[j]);
            let soft = if positive { (rho - lambda1).max(0.0) } else { rho.signum() * (rho.abs() - lambda1).max(0.0) };
            let new = soft / (g[j * k + j] + lambda2);
            let delta = new - alpha[j];
            if delta != 0.0 {
                for (l, ql) in q.iter_mut().enumerate() {
                    *ql += g[l * k + j] * delta;
                }
                alpha[j] = new;
                change = change.max(delta.abs());
            }
        }
        if change < 1e-14 {
            return alpha;
        }
    }
    panic!("coordinate descent did not converge");
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
}

const KKT_TOL: f64 = 1e-9;

// ------------------------------------------------------------------------------ KKT

#[test]
fn kkt_holds_on_gaussian_dictionaries() {
    let mut rng = Rng::new(1);
    for &(m, k, n, s) in &[(5, 7, 3, 2), (13, 31, 5, 3), (31, 13, 5, 3), (64, 128, 16, 8), (800, 500, 16, 20)] {
        let d = gaussian_dict(m, k, &mut rng);
        let x = signals(&d, n, s, &mut rng);
        let l1 = lambda1_for(&d, &x);
        for l2 in [0.0, 0.01] {
            let sol = lars_en(&d, &x, &LarsConfig::new(l1, l2)).unwrap();
            assert_eq!(sol.codes.shape(), &[n, k]);
            let (v, si, j) = kkt_violation(&d, &x, &sol, &vec![l1; n], l2, false);
            assert!(v < KKT_TOL, "({m}, {k}) λ2 = {l2}: KKT violated by {v:e} at sample {si}, atom {j}");
            assert!(sol.paths.iter().all(|p| !p.hit_cap && p.lambda_reached == l1 && p.skipped.is_empty()));
        }
    }
}

#[test]
fn kkt_holds_on_the_correlated_dictionary_of_lars_py() {
    let mut rng = Rng::new(2);
    let (m, k, n) = (800, 500, 24);
    let d = correlated_dict(m, k, &mut rng);
    let x = signals(&d, n, 20, &mut rng);
    let l1 = lambda1_for(&d, &x);
    for l2 in [0.0, 0.01] {
        let sol = lars_en(&d, &x, &LarsConfig::new(l1, l2)).unwrap();
        let (v, si, j) = kkt_violation(&d, &x, &sol, &vec![l1; n], l2, false);
        assert!(v < KKT_TOL, "λ2 = {l2}: KKT violated by {v:e} at sample {si}, atom {j}");
        let mean_active = sol.paths.iter().map(|p| p.active.len()).sum::<usize>() as f64 / n as f64;
        assert!(mean_active > 5.0, "mean |Λ| = {mean_active}: the test would not exercise much");
    }
}

// ------------------------------------------------------------------------------ reference

#[test]
fn codes_match_coordinate_descent() {
    let mut rng = Rng::new(3);
    let cases: Vec<(&str, Tensor<f64>)> = vec![
        ("gaussian 30×50", gaussian_dict(30, 50, &mut rng)),
        ("gaussian 50×30", gaussian_dict(50, 30, &mut rng)),
        ("correlated 60×80", correlated_dict(60, 80, &mut rng)),
        ("correlated 800×500", correlated_dict(800, 500, &mut rng)),
    ];
    for (name, d) in &cases {
        let n = if d.dim(0) > 100 { 3 } else { 6 };
        let x = signals(d, n, 6, &mut rng);
        let l1 = lambda1_for(d, &x);
        for l2 in [0.0, 0.01] {
            let sol = lars_en(d, &x, &LarsConfig::new(l1, l2)).unwrap();
            for s in 0..n {
                let xs = x.select(0, s).to_vec();
                let want = cd_reference(d, &xs, l1, l2, false);
                let got = sol.codes.select(0, s).to_vec();
                let e = max_abs_diff(&got, &want);
                assert!(e < 1e-7, "{name}, λ2 = {l2}, sample {s}: |LARS − CD| = {e:e}");
            }
        }
    }
}

/// An atom leaves the path. In R³ take d2 = e1, d3 = e2 and d1 = (e1 + e2 + δ·e3)/‖·‖ with
/// δ = 0.3, so g = d1ᵀd2 = d1ᵀd3 = 1/√(2 + δ²) ≈ 0.69, and x = e1 + 0.8·e2 − 0.15·e3.
/// * d1 joins first: c1 = (1.8 − 0.045)/1.446 ≈ 1.21 > c2 = 1 > c3 = 0.8.
/// * Once all three are active with signs (+, +, +), the direction is u = G⁻¹·1 and by the
///   symmetry of G, u1 = (1 − 2g)/(1 − 2g²) < 0 because 0.5 < g < 1/√2: α1 decreases.
/// * The least-squares solution (λ → 0) has α1 = −0.15·‖·‖/δ < 0 (only d1 has an e3
///   component), so α1 must cross zero on the way: d1 leaves (and later rejoins with a
///   negative sign). λ1 = 1e-3 is past that point.
#[test]
fn an_atom_leaves_the_path_and_the_result_is_still_optimal() {
    let delta = 0.3f64;
    let nrm = (2.0 + delta * delta).sqrt();
    // Columns d1, d2, d3 (row-major [3, 3]).
    let d = Tensor::from_vec(vec![1.0 / nrm, 1.0, 0.0, 1.0 / nrm, 0.0, 1.0, delta / nrm, 0.0, 0.0], &[3, 3]);
    let x = Tensor::from_vec(vec![1.0, 0.8, -0.15], &[1, 3]);
    for l2 in [0.0, 0.01] {
        let l1 = 1e-3;
        let sol = lars_en(&d, &x, &LarsConfig::new(l1, l2)).unwrap();
        let path = &sol.paths[0];
        assert!(path.leaves > 0, "λ2 = {l2}: no leave event: {path:?}");
        assert_eq!(path.joins, 3 + path.leaves);
        let (v, _, _) = kkt_violation(&d, &x, &sol, &[l1], l2, false);
        assert!(v < KKT_TOL, "λ2 = {l2}: KKT violated by {v:e}");
        let want = cd_reference(&d, &x.to_vec(), l1, l2, false);
        let e = max_abs_diff(&sol.codes.to_vec(), &want);
        assert!(e < 1e-7, "λ2 = {l2}: |LARS − CD| = {e:e}");
        assert!(sol.codes.get(&[0, 0]) < 0.0, "d1 rejoined with a negative coefficient");
    }
    // Stopping between the leave and the rejoin: α1 = 0 exactly, d1 is inactive.
    let l1 = 0.15;
    let sol = lars_en(&d, &x, &LarsConfig::new(l1, 0.0)).unwrap();
    if sol.paths[0].leaves > 0 && !sol.paths[0].active.contains(&0) {
        assert_eq!(sol.codes.get(&[0, 0]), 0.0);
    }
    let (v, _, _) = kkt_violation(&d, &x, &sol, &[l1], 0.0, false);
    assert!(v < KKT_TOL, "λ1 = {l1}: KKT violated by {v:e}");
    let e = max_abs_diff(&sol.codes.to_vec(), &cd_reference(&d, &x.to_vec(), l1, 0.0, false));
    assert!(e < 1e-7, "λ1 = {l1}: |LARS − CD| = {e:e}");
}

/// Many random small problems: leave events happen, and KKT and the CD reference hold
/// through them.
#[test]
fn leaves_on_random_coherent_problems_keep_kkt() {
    let mut rng = Rng::new(4);
    let mut leaves = 0;
    for _ in 0..40 {
        let d = correlated_dict(12, 18, &mut rng);
        let x = signals(&d, 4, 5, &mut rng);
        let l1 = 0.2 * lambda1_for(&d, &x);
        for l2 in [0.0, 0.01] {
            let sol = lars_en(&d, &x, &LarsConfig::new(l1, l2)).unwrap();
            leaves += sol.paths.iter().map(|p| p.leaves).sum::<usize>();
            let (v, s, j) = kkt_violation(&d, &x, &sol, &[l1; 4], l2, false);
            assert!(v < KKT_TOL, "λ2 = {l2}: KKT violated by {v:e} at sample {s}, atom {j}");
            if l2 > 0.0 {
                for s in 0..4 {
                    let want = cd_reference(&d, &x.select(0, s).to_vec(), l1, l2, false);
                    let e = max_abs_diff(&sol.codes.select(0, s).to_vec(), &want);
                    assert!(e < 1e-7, "sample {s}: |LARS − CD| = {e:e}");
                }
            }
        }
    }
    assert!(leaves > 0, "no leave event in 320 paths");
}

// ------------------------------------------------------------------------------ precision

/// f32 against f64 on the same problem. Tolerance 1e-5 (absolute, on codes of size 0.1–1, and
/// on the KKT quantities evaluated in f64): rounding D and x to f32 perturbs the problem by
/// u₃₂ ≈ 6e-8 relative, G and C add about √m·u₃₂ from the GEMMs, and the codes move by that
/// times cond(G_ΛΛ) (≈ 2–10 for 10–20 active Gaussian atoms); the final solve on Λ (see the
/// module docs) keeps path rounding out. Seen: ≤ 2.8e-7 for both, so 1e-5 has a margin of 30
/// and still fails for any real loss of f32 accuracy (a wrong active set moves codes by ≫ 1e-5).
#[test]
fn f32_agrees_with_f64() {
    let mut rng = Rng::new(5);
    for (m, k) in [(64, 128), (800, 500)] {
        let d = gaussian_dict(m, k, &mut rng);
        let x = signals(&d, 16, 10, &mut rng);
        let l1 = lambda1_for(&d, &x);
        for l2 in [0.0, 0.01] {
            let cfg = LarsConfig::new(l1, l2);
            let s64 = lars_en(&d, &x, &cfg).unwrap();
            let s32 = lars_en(&d.cast::<f32>(), &x.cast::<f32>(), &cfg).unwrap();
            let e = max_abs_diff(&s32.codes.to_f64_vec(), &s64.codes.to_vec());
            assert!(e < 1e-5, "({m}, {k}) λ2 = {l2}: |f32 − f64| = {e:e}");
            // KKT of the f32 codes, evaluated in f64, to f32 accuracy.
            let (v, _, _) = kkt_violation(&d, &x, &s32, &[l1; 16], l2, false);
            assert!(v < 1e-5, "({m}, {k}) λ2 = {l2}: f32 KKT violated by {v:e}");
        }
    }
}

// ------------------------------------------------------------------------------ options

#[test]
fn max_active_caps_the_path_at_an_exact_solution() {
    let mut rng = Rng::new(6);
    let d = gaussian_dict(40, 60, &mut rng);
    let x = signals(&d, 8, 10, &mut rng);
    let l1 = 0.05 * lambda1_for(&d, &x);
    for l2 in [0.0, 0.01] {
        let full = lars_en(&d, &x, &LarsConfig::new(l1, l2)).unwrap();
        for cap in [0usize, 1, 3, 7] {
            let sol = lars_en(&d, &x, &LarsConfig::new(l1, l2).max_active(cap)).unwrap();
            let lams: Vec<f64> = sol.paths.iter().map(|p| p.lambda_reached).collect();
            for (s, p) in sol.paths.iter().enumerate() {
                assert!(p.active.len() <= cap, "cap {cap}: |Λ| = {}", p.active.len());
                let nnz = sol.codes.select(0, s).to_vec().iter().filter(|v| **v != 0.0).count();
                assert!(nnz <= cap);
                if full.paths[s].active.len() > cap {
                    assert!(p.hit_cap && p.lambda_reached > l1, "cap {cap}, sample {s}: {p:?}");
                }
            }
            // The capped codes are the exact solution at λ = lambda_reached.
            let (v, s, j) = kkt_violation(&d, &x, &sol, &lams, l2, false);
            assert!(v < KKT_TOL, "cap {cap}: KKT at lambda_reached violated by {v:e} (sample {s}, atom {j})");
            for (s, &lam) in lams.iter().enumerate().take(2) {
                let want = cd_reference(&d, &x.select(0, s).to_vec(), lam, l2, false);
                let e = max_abs_diff(&sol.codes.select(0, s).to_vec(), &want);
                assert!(e < 1e-7, "cap {cap}, sample {s}: |LARS − CD| = {e:e}");
            }
        }
    }
}

#[test]
fn positive_codes_satisfy_the_kkt_of_the_non_negative_problem() {
    let mut rng = Rng::new(7);
    for (m, k) in [(7usize, 13usize), (30, 50), (50, 30), (200, 300)] {
        for dict in ["gaussian", "correlated"] {
            let d = if dict == "gaussian" { gaussian_dict(m, k, &mut rng) } else { correlated_dict(m, k, &mut rng) };
            let x = signals(&d, 6, 6.min(k), &mut rng);
            let l1 = 0.5 * lambda1_for(&d, &x);
            for l2 in [0.0, 0.01] {
                let sol = lars_en(&d, &x, &LarsConfig::new(l1, l2).positive(true)).unwrap();
                assert!(sol.codes.to_vec().iter().all(|v| *v >= 0.0));
                let (v, s, j) = kkt_violation(&d, &x, &sol, &[l1; 6], l2, true);
                assert!(v < KKT_TOL, "{dict} ({m}, {k}) λ2 = {l2}: KKT violated by {v:e} (sample {s}, atom {j})");
                if m <= 50 || l2 > 0.0 {
                    for s in 0..3 {
                        let want = cd_reference(&d, &x.select(0, s).to_vec(), l1, l2, true);
                        let e = max_abs_diff(&sol.codes.select(0, s).to_vec(), &want);
                        assert!(e < 1e-7, "{dict} ({m}, {k}) λ2 = {l2}, sample {s}: |LARS − projected CD| = {e:e}");
                    }
                }
            }
        }
    }
    // All correlations negative: the non-negative solution is 0 (the signed one is not).
    let d = Tensor::from_vec(vec![1.0, 0.0, 0.0, 1.0], &[2, 2]);
    let x = Tensor::from_vec(vec![-1.0, -0.5], &[1, 2]);
    let sol = lars_en(&d, &x, &LarsConfig::new(0.1, 0.0).positive(true)).unwrap();
    assert_eq!(sol.codes.to_vec(), vec![0.0, 0.0]);
    assert_eq!(lars_en(&d, &x, &LarsConfig::new(0.1, 0.0)).unwrap().codes.to_vec(), vec![-0.9, -0.4]);
}

#[test]
fn codes_are_bit_identical_for_one_and_two_threads() {
    let mut rng = Rng::new(8);
    let d = correlated_dict(100, 150, &mut rng);
    let x = signals(&d, 37, 8, &mut rng); // not a multiple of the chunk size
    let l1 = lambda1_for(&d, &x);
    for cfg in [LarsConfig::new(l1, 0.0), LarsConfig::new(l1, 0.01), LarsConfig::new(l1, 0.0).positive(true)] {
        let run = |t: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
            pool.install(|| {
                let sol = lars_en(&d, &x, &cfg).unwrap();
                let bits: Vec<u64> = sol.codes.to_vec().iter().map(|v| v.to_bits()).collect();
                let actives: Vec<Vec<usize>> = sol.paths.iter().map(|p| p.active.clone()).collect();
                (bits, actives)
            })
        };
        let one = run(1);
        assert!(one == run(2), "{cfg:?}");
        assert!(one == run(3), "{cfg:?}");
    }
}

// ------------------------------------------------------------------------------ edge cases

#[test]
fn empty_batch_and_tiny_dictionaries() {
    let mut rng = Rng::new(9);
    // N = 0.
    let d = gaussian_dict(5, 4, &mut rng);
    let sol = lars_en(&d, &Tensor::zeros(&[0, 5]), &LarsConfig::new(0.1, 0.0)).unwrap();
    assert_eq!(sol.codes.shape(), &[0, 4]);
    assert!(sol.paths.is_empty());
    // k = 1: α = S_λ1(dᵀx) / (‖d‖² + λ2).
    let d1 = Tensor::from_vec(vec![3.0, 4.0], &[2, 1]); // ‖d‖² = 25
    let x = Tensor::from_vec(vec![1.0, 1.0, -2.0, 0.0, 0.01, 0.01], &[3, 2]); // dᵀx = 7, −6, 0.07
    let sol = lars_en(&d1, &x, &LarsConfig::new(0.5, 0.5)).unwrap();
    let want = [6.5 / 25.5, -5.5 / 25.5, 0.0];
    assert!(max_abs_diff(&sol.codes.to_vec(), &want) < 1e-15, "{:?}", sol.codes.to_vec());
    assert_eq!(sol.paths[2].steps, 0);
    // k = 0 and m = 0.
    let sol = lars_en(&Tensor::<f64>::zeros(&[3, 0]), &Tensor::ones(&[2, 3]), &LarsConfig::new(0.1, 0.0)).unwrap();
    assert_eq!((sol.codes.shape(), sol.paths.len()), (&[2usize, 0][..], 2));
    let sol = lars_en(&Tensor::<f64>::zeros(&[0, 3]), &Tensor::zeros(&[2, 0]), &LarsConfig::new(0.1, 0.0)).unwrap();
    assert_eq!(sol.codes.to_vec(), vec![0.0; 6]);
}

#[test]
fn lambda1_above_the_largest_correlation_gives_exact_zeros() {
    let mut rng = Rng::new(10);
    let d = gaussian_dict(20, 30, &mut rng);
    let x = signals(&d, 5, 4, &mut rng);
    let cmax = x.matmul(&d).to_vec().iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for l1 in [cmax, 1.5 * cmax] {
        let sol = lars_en(&d, &x, &LarsConfig::new(l1, 0.01)).unwrap();
        assert!(sol.codes.to_vec().iter().all(|v| *v == 0.0));
        assert!(sol.paths.iter().all(|p| p.active.is_empty() && p.steps == 0 && p.chol.dim() == 0));
    }
}

/// λ1 = 0 on a full-rank problem (m ≥ k): the path runs to λ = 0 and the codes are the
/// least-squares (λ2 = 0) or ridge solution `(DᵀD + λ2·I)⁻¹·Dᵀx`.
#[test]
fn lambda1_zero_gives_least_squares_and_ridge() {
    let mut rng = Rng::new(11);
    for (m, k) in [(3usize, 2usize), (7, 5), (13, 13), (40, 31)] {
        let d = gaussian_dict(m, k, &mut rng);
        let x = signals(&d, 4, 2, &mut rng);
        for l2 in [0.0, 0.01] {
            let sol = lars_en(&d, &x, &LarsConfig::new(0.0, l2)).unwrap();
            let dv = d.to_vec();
            let g: Vec<f64> = (0..k * k)
                .map(|p| {
                    (0..m).map(|i| dv[i * k + p / k] * dv[i * k + p % k]).sum::<f64>()
                        + if p / k == p % k { l2 } else { 0.0 }
                })
                .collect();
            for s in 0..4 {
                let xs = x.select(0, s).to_vec();
                let c: Vec<f64> = (0..k).map(|j| (0..m).map(|i| dv[i * k + j] * xs[i]).sum()).collect();
                let want = engine::linalg::naive::solve(&g, k, &c).unwrap();
                let e = max_abs_diff(&sol.codes.select(0, s).to_vec(), &want);
                let scale = want.iter().fold(1.0f64, |a, v| a.max(v.abs()));
                assert!(e < 1e-9 * scale, "({m}, {k}) λ2 = {l2}: |LARS − LS| = {e:e}");
                assert_eq!(sol.paths[s].active.len(), k);
            }
        }
    }
}

/// Exact duplicates, a collinear triple and a zero atom. With λ2 = 0 the Gram matrix is
/// singular: the dependent atoms that reach λ are skipped, and the KKT conditions hold (the
/// skipped atoms' correlations are combinations of active ones). With λ2 > 0 nothing is
/// dependent: nothing is skipped, duplicates share their weight equally, and CD agrees.
#[test]
fn dependent_and_zero_atoms_are_skipped_and_kkt_holds() {
    let mut rng = Rng::new(12);
    let (m, k) = (30, 40);
    let mut dv = gaussian_dict(m, k, &mut rng).to_vec();
    for i in 0..m {
        dv[i * k + 1] = dv[i * k]; // atom 1 duplicates atom 0
        dv[i * k + 4] = 0.6 * dv[i * k + 2] - 0.8 * dv[i * k + 3]; // 2, 3, 4 collinear
        dv[i * k + 7] = 0.0; // atom 7 is zero
    }
    let dv = unit_columns(dv, m, k);
    let d = Tensor::from_vec(dv.clone(), &[m, k]);
    // Signals built on the dependent atoms so that they reach λ on the path.
    let mut xs = Vec::new();
    for s in 0..6 {
        let w = [1.0, 0.7, -0.5, 0.3, 0.2];
        let idx = [0usize, 2, 3, 10 + s, 20 + s];
        let mut v: Vec<f64> = (0..m).map(|i| idx.iter().zip(&w).map(|(&j, c)| dv[i * k + j] * c).sum()).collect();
        v.iter_mut().for_each(|e| *e += 0.01 * rng.normal());
        xs.extend(v);
    }
    let x = Tensor::from_vec(xs, &[6, m]);
    let mut skipped = 0;
    for (l1, l2) in [(0.02, 0.0), (0.001, 0.0), (0.0, 0.0), (0.02, 0.01), (0.0, 0.01)] {
        let sol = lars_en(&d, &x, &LarsConfig::new(l1, l2)).unwrap();
        let (v, s, j) = kkt_violation(&d, &x, &sol, &[l1; 6], l2, false);
        assert!(v < KKT_TOL, "λ1 = {l1}, λ2 = {l2}: KKT violated by {v:e} (sample {s}, atom {j})");
        let codes = sol.codes.to_vec();
        for (s, p) in sol.paths.iter().enumerate() {
            assert_eq!(codes[s * k + 7], 0.0, "the zero atom got a coefficient");
            if l2 == 0.0 {
                skipped += p.skipped.len();
                // Never both duplicates, never all three collinear atoms.
                assert!(!(p.active.contains(&0) && p.active.contains(&1)), "{p:?}");
                assert!(![2, 3, 4].iter().all(|j| p.active.contains(j)), "{p:?}");
            } else {
                assert!(p.skipped.is_empty() || p.skipped == [7], "λ2 > 0 skipped {:?}", p.skipped);
                // Duplicates share their weight: the solution is unique and symmetric.
                assert!((codes[s * k] - codes[s * k + 1]).abs() < 1e-12, "{} vs {}", codes[s * k], codes[s * k + 1]);
                let want = cd_reference(&d, &x.select(0, s).to_vec(), l1, l2, false);
                let e = max_abs_diff(&codes[s * k..(s + 1) * k], &want);
                assert!(e < 1e-7, "λ1 = {l1}, λ2 = {l2}, sample {s}: |LARS − CD| = {e:e}");
            }
        }
    }
    assert!(skipped > 0, "no dependent atom was ever skipped: the test does not test the rule");
}

/// For λ2 = 0 and m < k with λ1 = 0 the path must stop at rank m: every further atom is
/// dependent. The fit is then exact (x in the span) and KKT holds (all correlations 0).
#[test]
fn more_atoms_than_dimensions_with_lambda1_zero() {
    let mut rng = Rng::new(13);
    let d = gaussian_dict(6, 15, &mut rng);
    let x = signals(&d, 3, 4, &mut rng);
    let sol = lars_en(&d, &x, &LarsConfig::new(0.0, 0.0)).unwrap();
    for p in &sol.paths {
        assert!(p.active.len() <= 6, "{p:?}");
    }
    let (v, _, _) = kkt_violation(&d, &x, &sol, &[0.0; 3], 0.0, false);
    assert!(v < KKT_TOL, "KKT violated by {v:e}");
}

#[test]
fn non_finite_inputs_and_bad_lambdas_are_errors() {
    let mut rng = Rng::new(14);
    let d = gaussian_dict(6, 5, &mut rng);
    let x = signals(&d, 4, 2, &mut rng);
    let cfg = LarsConfig::new(0.1, 0.0);
    let mut dv = d.to_vec();
    dv[2 * 5 + 3] = f64::NAN; // entry 2 of atom 3
    let e = lars_en(&Tensor::from_vec(dv, &[6, 5]), &x, &cfg).unwrap_err();
    assert!(
        matches!(e, SparseError::NonFinite { op: "lars_en", what: "dictionary", row: 2, col: 3, value } if value.is_nan()),
        "{e:?}"
    );
    assert!(e.to_string().contains("atom 3, entry 2"), "{e}");
    let mut xv = x.to_vec();
    xv[2 * 6 + 5] = f64::NEG_INFINITY; // sample 2, entry 5
    let e = lars_en(&d, &Tensor::from_vec(xv, &[4, 6]), &cfg).unwrap_err();
    assert!(matches!(e, SparseError::NonFinite { what: "x", row: 2, col: 5, .. }), "{e:?}");
    assert!(e.to_string().contains("sample 2"), "{e}");
    // A non-finite entry inside a strided view is found at its logical position.
    let mut xt = x.to_vec();
    xt[5] = f64::INFINITY; // x[0, 5]
    let xt = Tensor::from_vec(xt, &[4, 6]).t().contiguous().t(); // same values, column-major
    assert!(matches!(lars_en(&d, &xt, &cfg).unwrap_err(), SparseError::NonFinite { what: "x", row: 0, col: 5, .. }));
    // Overflow in DᵀD.
    let big = Tensor::from_vec(vec![1e200; 6 * 5], &[6, 5]);
    assert!(matches!(lars_en(&big, &x, &cfg).unwrap_err(), SparseError::NonFinite { what: "gram", .. }));
    for (l1, l2, what) in
        [(-0.1, 0.0, "lambda1"), (f64::NAN, 0.0, "lambda1"), (0.1, -1e-9, "lambda2"), (0.1, f64::INFINITY, "lambda2")]
    {
        let e = lars_en(&d, &x, &LarsConfig::new(l1, l2)).unwrap_err();
        assert!(matches!(e, SparseError::InvalidConfig { what: w, .. } if w == what), "{e:?}");
    }
    assert!(matches!(
        lars_en(&d, &x, &cfg.clone().pivot_floor(-1.0)).unwrap_err(),
        SparseError::InvalidConfig { what: "pivot_floor", .. }
    ));
}

#[test]
#[should_panic(expected = "lars_en: x is [N, m] = [4, 7] but the dictionary is [m, k] = [8, 5]")]
fn mismatched_shapes_panic_with_both() {
    let _ = lars_en(&Tensor::<f64>::zeros(&[8, 5]), &Tensor::zeros(&[4, 7]), &LarsConfig::new(0.1, 0.0));
}

#[test]
#[should_panic(expected = "lars_en_gram: corr is [N, k] = [4, 7] but the Gram matrix is [k, k] = [5, 5]")]
fn mismatched_gram_shapes_panic_with_both() {
    let _ = lars_en_gram(&Tensor::<f64>::zeros(&[5, 5]), &Tensor::zeros(&[4, 7]), &LarsConfig::new(0.1, 0.0));
}

#[test]
#[should_panic(expected = "lars_en: the dictionary must be a matrix [m, k], got shape [8]")]
fn a_vector_dictionary_panics() {
    let _ = lars_en(&Tensor::<f64>::zeros(&[8]), &Tensor::zeros(&[4, 8]), &LarsConfig::new(0.1, 0.0));
}

// ------------------------------------------------------------------------------ Gram entry

#[test]
fn gram_entry_point_matches_and_checks_its_gram() {
    let mut rng = Rng::new(15);
    let (m, k) = (40, 60);
    let d = correlated_dict(m, k, &mut rng);
    let x = signals(&d, 10, 5, &mut rng);
    let l1 = lambda1_for(&d, &x);
    let l2 = 0.01;
    let cfg = LarsConfig::new(l1, l2);
    let sol = lars_en(&d, &x, &cfg).unwrap();
    // The same G and C as lars_en computes (GEMM, symmetrised, + λ2·I): the same bits.
    let mut g = d.t().matmul(&d).to_vec();
    for i in 0..k {
        g[i * k + i] += l2;
        for j in 0..i {
            g[j * k + i] = g[i * k + j];
        }
    }
    let gram = Tensor::from_vec(g.clone(), &[k, k]);
    let corr = x.matmul(&d);
    let sol2 = lars_en_gram(&gram, &corr, &cfg).unwrap();
    assert!(sol.codes.to_vec() == sol2.codes.to_vec());
    // Transposed (strided) views give the same result.
    let sol3 = lars_en(&d.t().contiguous().t(), &x.t().contiguous().t(), &cfg).unwrap();
    assert!(sol3.codes.allclose(&sol.codes, 1e-12, 1e-12));
    // The path's factor is the factor of G_ΛΛ in the order of `active`.
    for p in &sol.paths {
        let n = p.active.len();
        let sub: Vec<f64> = (0..n * n).map(|q| g[p.active[q / n] * k + p.active[q % n]]).collect();
        let want = engine::linalg::naive::cholesky(&sub, n).unwrap();
        assert!(max_abs_diff(&p.chol.to_dense(), &want) < 1e-12);
    }
    // An asymmetric Gram matrix, a negative diagonal, a NaN.
    let mut bad = g.clone();
    bad[3 * k + 5] += 1e-3;
    let e = lars_en_gram(&Tensor::from_vec(bad, &[k, k]), &corr, &cfg).unwrap_err();
    assert!(matches!(e, SparseError::InvalidGram { row: 3, col: 5, .. }), "{e:?}");
    assert!(e.to_string().contains("not symmetric"), "{e}");
    let mut bad = g.clone();
    bad[4 * k + 4] = -1.0;
    let e = lars_en_gram(&Tensor::from_vec(bad, &[k, k]), &corr, &cfg).unwrap_err();
    assert!(matches!(e, SparseError::InvalidGram { row: 4, col: 4, .. }), "{e:?}");
    let mut bad = g.clone();
    bad[k + 2] = f64::NAN;
    let e = lars_en_gram(&Tensor::from_vec(bad, &[k, k]), &corr, &cfg).unwrap_err();
    assert!(matches!(e, SparseError::NonFinite { what: "gram", row: 1, col: 2, .. }), "{e:?}");
    // A symmetric but indefinite "Gram" matrix: [[1, 2], [2, 1]] with correlations reaching both.
    let e = lars_en_gram(
        &Tensor::from_vec(vec![1.0, 2.0, 2.0, 1.0], &[2, 2]),
        &Tensor::from_vec(vec![1.0, 0.9], &[1, 2]),
        &LarsConfig::new(0.0, 0.0),
    )
    .unwrap_err();
    assert!(matches!(e, SparseError::GramNotPsd { sample: 0, atom: 1, active: 1, .. }), "{e:?}");
}

/// The Schur complement (pivot²) of an exactly dependent atom, computed from a Gram matrix
/// made by GEMM as `lars_en` does, is rounding noise far below the default floor
/// `DEFAULT_LARS_PIVOT_FLOOR·ε·G_jj` — in f64 and f32, at the lars.py size m = 800 — while
/// the independent atoms of the lars.py dictionaries are far above it.
#[test]
fn dependent_atom_pivots_are_far_below_the_floor_and_independent_ones_far_above() {
    use engine::linalg::Cholesky;
    use sparsegrad_sparse::lars::DEFAULT_LARS_PIVOT_FLOOR;
    fn measure<T: Element>(d: &Tensor<f64>, groups: &[Vec<usize>], dependent: &[usize]) -> (f64, f64) {
        let k = d.dim(1);
        let dt = d.cast::<T>();
        let g = dt.t().matmul(&dt).to_vec();
        let (mut noise, mut independent) = (0.0f64, f64::INFINITY);
        for (group, &dep) in groups.iter().zip(dependent) {
            // Factor the group (independent atoms plus 10 others), then try the dependent atom.
            let mut set: Vec<usize> = group.clone();
            set.extend((0..k).filter(|j| !group.contains(j) && !dependent.contains(j)).take(10));
            let mut ch = Cholesky::<T>::with_capacity(set.len() + 1);
            ch.set_pivot_floor(0.0);
            for (p, &j) in set.iter().enumerate() {
                let col: Vec<T> = set[..p].iter().map(|&i| g[j * k + i]).collect();
                ch.append(&col, g[j * k + j]).unwrap();
                let piv = ch.l(p, p).as_f64().powi(2) / g[j * k + j].as_f64();
                independent = independent.min(piv / T::epsilon().as_f64());
            }
            let col: Vec<T> = set.iter().map(|&i| g[dep * k + i]).collect();
            let diag = g[dep * k + dep];
            let mut t = ch.clone();
            let pivot_sq = match t.try_append(&col, diag) {
                Ok(()) => t.l(set.len(), set.len()).as_f64().powi(2),
                Err(e) => e.pivot_sq.abs(),
            };
            let rel = pivot_sq / diag.as_f64();
            noise = noise.max(rel / T::epsilon().as_f64());
        }
        (noise, independent)
    }
    let mut rng = Rng::new(16);
    let (m, k) = (800, 500);
    for kind in ["gaussian", "correlated"] {
        let d0 = if kind == "gaussian" { gaussian_dict(m, k, &mut rng) } else { correlated_dict(m, k, &mut rng) };
        let mut dv = d0.to_vec();
        // Atoms 0..10 are duplicates of 100..110; atoms 10..30 are random combinations of two or
        // three others (200 + 3q, …), renormalised.
        let mut groups = Vec::new();
        let mut dependent = Vec::new();
        for q in 0..30 {
            let src: Vec<usize> =
                if q < 10 { vec![100 + q] } else { (0..2 + q % 2).map(|t| 200 + 3 * q + t).collect() };
            let w: Vec<f64> = src.iter().map(|_| rng.normal()).collect();
            let col: Vec<f64> = (0..m).map(|i| src.iter().zip(&w).map(|(&j, c)| dv[i * k + j] * c).sum()).collect();
            let n = col.iter().map(|v| v * v).sum::<f64>().sqrt();
            (0..m).for_each(|i| dv[i * k + q] = col[i] / n);
            groups.push(src);
            dependent.push(q);
        }
        let d = Tensor::from_vec(dv, &[m, k]);
        let (n64, i64_) = measure::<f64>(&d, &groups, &dependent);
        let (n32, i32_) = measure::<f32>(&d, &groups, &dependent);
        eprintln!(
            "{kind}: dependent pivot² up to {n64:.1}·ε·G_jj (f64), {n32:.1}·ε·G_jj (f32); \
             independent pivot² at least {i64_:.3e}·ε (f64), {i32_:.3e}·ε (f32)"
        );
        for (noise, indep) in [(n64, i64_), (n32, i32_)] {
            assert!(noise < DEFAULT_LARS_PIVOT_FLOOR / 10.0, "{kind}: noise {noise}·ε");
            assert!(indep > DEFAULT_LARS_PIVOT_FLOOR * 100.0, "{kind}: independent pivot² {indep}·ε");
        }
    }
}

/// Many small coherent dictionaries salted with duplicates, collinear triples and zero atoms,
/// λ2 = 0, signed and positive, several λ1: leaves and skips interleave (a skipped atom is
/// re-admitted after a leave), and the KKT conditions hold on every path.
#[test]
fn stress_dependent_atoms_with_leaves() {
    let mut rng = Rng::new(17);
    let (mut leaves, mut skips) = (0, 0);
    for trial in 0..60 {
        let (m, k) = (10 + trial % 7, 24);
        let mut dv = correlated_dict(m, k, &mut rng).to_vec();
        for i in 0..m {
            dv[i * k + 1] = dv[i * k];
            dv[i * k + 5] = dv[i * k + 3] - 0.5 * dv[i * k + 4];
            dv[i * k + 9] = 0.0;
            dv[i * k + 12] = -dv[i * k + 2];
        }
        let d = Tensor::from_vec(unit_columns(dv, m, k), &[m, k]);
        let x = signals(&d, 4, 6, &mut rng);
        for frac in [0.3, 0.05] {
            let l1 = frac * lambda1_for(&d, &x);
            for positive in [false, true] {
                let sol = lars_en(&d, &x, &LarsConfig::new(l1, 0.0).positive(positive)).unwrap();
                leaves += sol.paths.iter().map(|p| p.leaves).sum::<usize>();
                skips += sol.paths.iter().map(|p| p.skipped.len()).sum::<usize>();
                let (v, s, j) = kkt_violation(&d, &x, &sol, &[l1; 4], 0.0, positive);
                assert!(v < KKT_TOL, "trial {trial}, λ1 = {l1}, positive {positive}: {v:e} at sample {s}, atom {j}");
            }
        }
    }
    eprintln!("{leaves} leaves, {skips} atoms skipped at the end of a path");
    assert!(leaves > 0 && skips > 0);
}

// ------------------------------------------------------------------------------ compact paths

/// `lars_en_compact` (the CSF layer's solver: flat paths, nothing allocated per sample) gives
/// the bits of `lars_en`: the codes, every active set in factor order, every factor entry, the
/// cap flags and the summed counters, and Mairal's rule from either form gives the same bits.
/// Over the hard cases of this file: Gaussian and correlated dictionaries (leaves), duplicate,
/// collinear, negated and zero atoms with λ2 = 0 (skips), positive codes, caps, λ1 above every
/// correlation, f32, and the patches of smooth images (the CSF layer's data: many ties near 0).
#[test]
fn compact_paths_are_the_bits_of_the_per_sample_paths() {
    use sparsegrad_sparse::lars::backward::{mairal_backward, Wanted};
    use sparsegrad_sparse::lars::lars_en_compact;

    fn check<T: Element>(d: &Tensor<T>, x: &Tensor<T>, cfg: &LarsConfig, what: &str) -> (usize, usize) {
        let sol = lars_en(d, x, cfg).unwrap();
        let (codes, cp) = lars_en_compact(d, x, cfg).unwrap();
        let bits = |v: Vec<T>| v.iter().map(|e| e.as_f64().to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(codes.to_vec()), bits(sol.codes.to_vec()), "{what}: codes");
        assert_eq!(cp.len(), sol.paths.len(), "{what}");
        for (s, p) in sol.paths.iter().enumerate() {
            assert_eq!(cp.active(s), &p.active[..], "{what}: sample {s}: active set");
            let n = p.active.len();
            let f = cp.factor(s);
            assert_eq!(f.len(), n * (n + 1) / 2, "{what}: sample {s}");
            for i in 0..n {
                for j in 0..=i {
                    assert_eq!(
                        f[i * (i + 1) / 2 + j].as_f64().to_bits(),
                        p.chol.l(i, j).as_f64().to_bits(),
                        "{what}: L[{i},{j}]"
                    );
                }
            }
            assert_eq!(cp.hit_cap(s), p.hit_cap, "{what}: sample {s}");
        }
        assert_eq!(cp.steps, sol.paths.iter().map(|p| p.steps).sum::<usize>(), "{what}");
        assert_eq!(cp.joins, sol.paths.iter().map(|p| p.joins).sum::<usize>(), "{what}");
        assert_eq!(cp.leaves, sol.paths.iter().map(|p| p.leaves).sum::<usize>(), "{what}");
        assert_eq!(cp.skipped, sol.paths.iter().map(|p| p.skipped.len()).sum::<usize>(), "{what}");
        // Mairal's rule from both forms.
        let (m, k, n) = (d.dim(0), d.dim(1), x.dim(0));
        let mut rng = Rng::new(99);
        let g: Vec<T> = Tensor::<f64>::randn(&[n, k], &mut rng).cast::<T>().to_vec();
        let (dv, xv, av) = (d.contiguous().to_vec(), x.contiguous().to_vec(), codes.to_vec());
        let want = Wanted { dictionary: true, input: true, lambda1: true, lambda2: true };
        let a = mairal_backward(&sol.paths, &dv, &xv, &av, &g, m, k, want);
        let b = mairal_backward(&cp, &dv, &xv, &av, &g, m, k, want);
        let tb = |t: Option<Tensor<T>>| bits(t.unwrap().to_vec());
        assert_eq!(tb(a.dictionary), tb(b.dictionary), "{what}: ∂D");
        assert_eq!(tb(a.input), tb(b.input), "{what}: ∂X");
        assert_eq!(a.lambda1.map(|v| v.as_f64().to_bits()), b.lambda1.map(|v| v.as_f64().to_bits()), "{what}: ∂λ1");
        assert_eq!(a.lambda2.map(|v| v.as_f64().to_bits()), b.lambda2.map(|v| v.as_f64().to_bits()), "{what}: ∂λ2");
        (cp.leaves, cp.skipped)
    }

    let mut rng = Rng::new(31);
    let (mut leaves, mut skips) = (0, 0);
    // Random: Gaussian and correlated, several λ, signed and positive, capped, f32.
    for (m, k, n) in [(25, 20, 700), (12, 18, 300), (40, 60, 40), (5, 3, 30)] {
        for dict in 0..2 {
            let d = if dict == 0 { gaussian_dict(m, k, &mut rng) } else { correlated_dict(m, k, &mut rng) };
            let x = signals(&d, n, 5.min(k), &mut rng);
            let l1 = lambda1_for(&d, &x);
            for (frac, l2, positive, cap) in
                [(2.5, 0.01, false, None), (0.2, 0.0, false, None), (1.0, 0.01, true, None), (0.5, 0.0, false, Some(3))]
            {
                let mut cfg = LarsConfig::new(frac * l1, l2).positive(positive);
                cfg.max_active = cap;
                let what = format!("m={m} k={k} dict={dict} λ1={frac}·λ λ2={l2} positive={positive} cap={cap:?}");
                let (l, s) = check(&d, &x, &cfg, &what);
                leaves += l;
                skips += s;
                check(&d.cast::<f32>(), &x.cast::<f32>(), &cfg, &format!("f32 {what}"));
            }
        }
    }
    // λ1 above every correlation: empty paths.
    let d = gaussian_dict(10, 8, &mut rng);
    let x = signals(&d, 20, 3, &mut rng);
    check(&d, &x, &LarsConfig::new(10.0, 0.0), "λ1 above every correlation");
    // Dependent atoms with λ2 = 0: skips and leaves.
    for trial in 0..20 {
        let (m, k) = (10 + trial % 7, 24);
        let mut dv = correlated_dict(m, k, &mut rng).to_vec();
        for i in 0..m {
            dv[i * k + 1] = dv[i * k];
            dv[i * k + 5] = dv[i * k + 3] - 0.5 * dv[i * k + 4];
            dv[i * k + 9] = 0.0;
            dv[i * k + 12] = -dv[i * k + 2];
        }
        let d = Tensor::from_vec(unit_columns(dv, m, k), &[m, k]);
        let x = signals(&d, 16, 6, &mut rng);
        for frac in [0.3, 0.05] {
            for positive in [false, true] {
                let cfg = LarsConfig::new(frac * lambda1_for(&d, &x), 0.0).positive(positive);
                let (l, s) = check(&d, &x, &cfg, &format!("dependent trial {trial} frac {frac} positive {positive}"));
                leaves += l;
                skips += s;
            }
        }
    }
    // Real-like: 5×5 patches of smooth images (running means of uniform noise, flat regions
    // give near-equal correlations), a random unit dictionary of 20 atoms.
    let (h, w) = (20, 20);
    let mut img = vec![0.0; 3 * h * w];
    for c in 0..3 {
        let mut acc = 0.0;
        for i in 0..h * w {
            acc = 0.8 * acc + 0.2 * rng.uniform();
            img[c * h * w + i] = if (i / w) % 7 < 2 { 0.5 } else { acc };
        }
    }
    let img = Tensor::from_vec(img, &[3, 1, h, w]);
    let patches = img.im2col([5, 5], engine::Conv2dParams::new()).transpose(1, 2).contiguous().reshape(&[3 * 256, 25]);
    let d = gaussian_dict(25, 20, &mut rng);
    for (l1, l2) in [(0.05, 0.01), (0.3, 0.0), (0.0, 0.01)] {
        check(&d, &patches, &LarsConfig::new(l1, l2), &format!("patches λ1={l1} λ2={l2}"));
        check(&d.cast::<f32>(), &patches.cast::<f32>(), &LarsConfig::new(l1, l2), &format!("f32 patches λ1={l1}"));
    }
    assert!(leaves > 0 && skips > 0, "leaves {leaves}, skips {skips}: the hard cases were not reached");
}
