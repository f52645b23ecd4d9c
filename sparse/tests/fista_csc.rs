//! FISTA and the CSC layer (docs/math.md §2): the adjoint identity of the convolutional operator,
//! FISTA against the exact LARS solution and the O(1/k²) bound, the SDNet momentum variant,
//! the power iteration, the unrolled gradient converging to the implicit one, and the implicit
//! gradient of the dense case against Mairal's rule. Finite-difference checks of both layer
//! gradients are in the audit (`sparsegrad gradcheck --op csc_unrolled`, `--op csc_implicit`).

use autograd::{BackwardOptions, Tape};
use engine::linalg::naive;
use engine::{Conv2dParams, Rng, Tensor};
use sparsegrad_sparse::csc::{csc, transpose_params, unit_atoms, Conv, Csc, CscConfig, Gradient, Implicit};
use sparsegrad_sparse::fista::{
    fista, lipschitz, objective, Dense, FistaConfig, LinearOperator, Momentum, PowerConfig, Prox,
};
use sparsegrad_sparse::lars::{lars_en, LarsConfig};
use sparsegrad_sparse::sf::sf;

fn dot(a: &Tensor<f64>, b: &Tensor<f64>) -> f64 {
    a.to_vec().iter().zip(b.to_vec()).map(|(x, y)| x * y).sum()
}

#[test]
fn conv_operator_is_the_exact_adjoint_for_every_stride_padding_and_kernel() {
    // ⟨A z, x⟩ = ⟨z, Aᵀ x⟩ for stride and padding up to 3, kernels 1–5, odd and even sizes,
    // and A(z) has exactly x's shape (the output padding is chosen for that).
    let mut rng = Rng::new(1);
    let mut checked = 0;
    for s in 1..=3 {
        for p in 0..=3 {
            for k in 1..=5 {
                for hw in [[7, 8], [9, 6]] {
                    let conv = Conv2dParams::new().stride(s).padding(p);
                    if conv.output_hw(hw, [k, k]).is_none() {
                        continue;
                    }
                    let w = Tensor::<f64>::randn(&[3, 2, k, k], &mut rng);
                    let op = Conv::new(w, conv, hw);
                    let x = Tensor::randn(&[2, 2, hw[0], hw[1]], &mut rng);
                    let z = Tensor::randn(&op.code_shape(x.shape()), &mut rng);
                    let az = op.apply(&z);
                    assert_eq!(az.shape(), x.shape(), "s {s} p {p} k {k} {hw:?}");
                    let (l, r) = (dot(&az, &x), dot(&z, &op.adjoint(&x)));
                    assert!((l - r).abs() <= 1e-12 * l.abs().max(1.0), "s {s} p {p} k {k} {hw:?}: {l} vs {r}");
                    let tp = transpose_params(conv, hw, [k, k]);
                    assert!(tp.output_padding.iter().all(|&o| o < s), "{tp:?}");
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 100, "only {checked} geometries");
}

/// A dense lasso problem and its exact solution by LARS (λ2 = 0).
fn dense_problem(seed: u64, positive: bool) -> (Dense<f64>, Tensor<f64>, f64, Tensor<f64>) {
    let mut rng = Rng::new(seed);
    let (m, k, n) = (20, 30, 3);
    let d = Tensor::<f64>::randn(&[m, k], &mut rng).div_scalar((m as f64).sqrt());
    let x = Tensor::randn(&[n, m], &mut rng);
    let lambda = 0.2;
    let exact = lars_en(&d, &x, &LarsConfig::new(lambda, 0.0).positive(positive)).unwrap().codes;
    (Dense { d }, x, lambda, exact)
}

/// ‖DᵀD‖₂ exactly (Jacobi eigenvalues of the Gram matrix).
fn exact_lipschitz(op: &Dense<f64>) -> f64 {
    let g = op.d.t().matmul(&op.d).contiguous().into_vec();
    naive::top_eigenvalue(&g, op.d.dim(1))
}

#[test]
fn fista_reaches_the_lars_solution_and_beats_the_one_over_k_squared_bound() {
    for positive in [false, true] {
        let (op, x, lambda, exact) = dense_problem(2, positive);
        let l = exact_lipschitz(&op);
        let prox = if positive { Prox::NonNegative } else { Prox::Signed };
        let cfg = FistaConfig::new(lambda, 20000).prox(prox).trace(true);
        let (z, trace) = fista(&op, &x, l, &cfg).unwrap();
        let err = z.sub(&exact).to_vec().iter().fold(0.0f64, |a, v| a.max(v.abs()));
        assert!(err < 1e-8, "positive {positive}: codes differ from LARS by {err:e}");
        let f_star = objective(&op, &x, &exact, lambda);
        let f_end = objective(&op, &x, &z, lambda);
        assert!((f_end - f_star).abs() <= 1e-8 * f_star, "objective {f_end} vs {f_star}");
        // Beck & Teboulle, Thm 4.4: F(z_k) − F* ≤ 2L‖z_0 − z*‖² / (k + 1)², with z_0 = 0.
        let r0 = dot(&exact, &exact);
        for (i, f) in trace.objective.iter().enumerate() {
            let k = (i + 1) as f64;
            let bound = 2.0 * l * r0 / ((k + 1.0) * (k + 1.0));
            assert!(f - f_star <= bound + 1e-12, "iteration {k}: gap {} above the bound {bound}", f - f_star);
        }
    }
}

#[test]
fn sdnet_momentum_equals_beck_teboulle_up_to_two_iterations_only() {
    let (op, x, lambda, _) = dense_problem(3, true);
    let l = exact_lipschitz(&op);
    let run = |iters, m| fista(&op, &x, l, &FistaConfig::sdnet(lambda, iters).momentum(m)).unwrap().0;
    for t in [1, 2] {
        assert_eq!(run(t, Momentum::Sdnet).to_vec(), run(t, Momentum::BeckTeboulle).to_vec(), "T = {t}");
    }
    let diff = run(3, Momentum::Sdnet).sub(&run(3, Momentum::BeckTeboulle));
    assert!(diff.to_vec().iter().any(|v| v.abs() > 1e-6), "T = 3 should differ");
}

#[test]
fn power_iteration_estimates_the_top_eigenvalue_and_warm_starts() {
    let (op, _, _, _) = dense_problem(4, false);
    let exact = exact_lipschitz(&op);
    let cold = lipschitz(&op, &[1, 30], None, &PowerConfig { max_iter: 500, tol: 1e-14, seed: 1 }).unwrap();
    assert!((cold.value - exact).abs() < 1e-8 * exact, "{} vs {exact}", cold.value);
    // The SDNet stopping rule (50 iterations, ‖Δv‖² ≤ 1e-5) gives an estimate below L by at
    // most a fraction of a percent here, and a warm start converges at once.
    let sd = lipschitz(&op, &[1, 30], None, &PowerConfig::default()).unwrap();
    assert!(sd.value <= exact * (1.0 + 1e-12) && sd.value > 0.99 * exact, "{} vs {exact}", sd.value);
    let warm = lipschitz(&op, &[1, 30], Some(&cold.vector), &PowerConfig::default()).unwrap();
    assert!(warm.iterations < sd.iterations, "warm {} vs cold {}", warm.iterations, sd.iterations);
}

/// `∂⟨R, z⟩/∂(x, W)` of the CSC layer.
fn csc_grads(x: &Tensor<f64>, w: &Tensor<f64>, l: f64, cfg: &CscConfig, r: &Tensor<f64>) -> (Tensor<f64>, Tensor<f64>) {
    let tape = Tape::new();
    let (xv, wv) = (tape.leaf(x.clone()), tape.leaf(w.clone()));
    let (z, _) = csc(&xv, &wv, None, l, cfg).unwrap();
    let g = tape.backward_with(&z, Some(r.clone()), BackwardOptions::default()).unwrap();
    (g.wrt(&xv), g.wrt(&wv))
}

fn rel(a: &Tensor<f64>, b: &Tensor<f64>) -> f64 {
    let scale = b.to_vec().iter().fold(0.0f64, |m, v| m.max(v.abs()));
    a.sub(b).to_vec().iter().fold(0.0f64, |m, v| m.max(v.abs())) / scale
}

#[test]
fn unrolled_gradient_converges_to_the_implicit_gradient() {
    let mut rng = Rng::new(5);
    let conv = Conv2dParams::new().padding(1);
    let w = unit_atoms(&Tensor::<f64>::randn(&[4, 1, 3, 3], &mut rng));
    let x = Tensor::<f64>::randn(&[1, 1, 6, 6], &mut rng);
    let l = Csc::new().refresh(&mut w.clone(), conv, [6, 6]).unwrap() * 1.0001;
    let fcfg = FistaConfig::new(0.3, 1).prox(Prox::NonNegative);
    let implicit = CscConfig {
        fista: FistaConfig { iters: 4000, ..fcfg.clone() },
        conv,
        gradient: Gradient::Implicit(Implicit { polish: true, cg_tol: 1e-12, ..Implicit::default() }),
    };
    let r = Tensor::randn(&[1, 4, 6, 6], &mut rng);
    let (gx_i, gw_i) = csc_grads(&x, &w, l, &implicit, &r);
    let mut gaps = vec![];
    for t in [2, 5, 20, 100, 400, 2000, 10000] {
        let cfg = CscConfig { fista: FistaConfig { iters: t, ..fcfg.clone() }, conv, gradient: Gradient::Unrolled };
        let (gx, gw) = csc_grads(&x, &w, l, &cfg, &r);
        gaps.push((t, rel(&gx, &gx_i), rel(&gw, &gw_i)));
    }
    eprintln!("T, relative gap of ∂x, of ∂W (unrolled vs implicit):");
    for (t, a, b) in &gaps {
        eprintln!("  {t:>5}  {a:.3e}  {b:.3e}");
    }
    // Measured (2026-12-02): T = 2: 0.96 / 0.97, T = 400: 1.3e-3 / 8.9e-3, T = 10000:
    // 1.8e-9 / 1.6e-7. The gap must shrink with every step of T and end below 1e-6.
    assert!(gaps.windows(2).all(|w| w[1].1 < w[0].1 && w[1].2 < w[0].2), "{gaps:?}");
    let last = gaps[gaps.len() - 1];
    assert!(last.1 < 1e-6 && last.2 < 1e-6, "T = 10000 still far: {last:?}");
}

#[test]
fn implicit_gradient_of_the_dense_case_equals_mairals_rule() {
    // 1×1 spatial size and a 1×1 kernel: A z = Σ_c z_c·W[c, :], the dense dictionary
    // D = W[:, :, 0, 0]ᵀ [M, C]. The implicit CSC gradient must equal the SF op's (λ2 = 0).
    let mut rng = Rng::new(6);
    let (n, m, c) = (3, 8, 12);
    let w = Tensor::<f64>::randn(&[c, m, 1, 1], &mut rng).div_scalar((m as f64).sqrt());
    let x = Tensor::<f64>::randn(&[n, m, 1, 1], &mut rng);
    let lambda = 0.25;
    let d = w.reshape(&[c, m]).t().contiguous();
    let l = naive::top_eigenvalue(&d.t().matmul(&d).contiguous().into_vec(), c) * 1.0001;
    let cfg = CscConfig {
        fista: FistaConfig::new(lambda, 3000),
        conv: Conv2dParams::new(),
        gradient: Gradient::Implicit(Implicit { polish: true, cg_tol: 1e-13, ..Implicit::default() }),
    };
    let r = Tensor::randn(&[n, c, 1, 1], &mut rng);
    let (gx, gw) = csc_grads(&x, &w, l, &cfg, &r);

    let tape = Tape::new();
    let (dv, xv) = (tape.leaf(d.clone()), tape.leaf(x.reshape(&[n, m])));
    let (a, _) = sf(&dv, &xv, &LarsConfig::new(lambda, 0.0)).unwrap();
    let g = tape.backward_with(&a, Some(r.reshape(&[n, c])), BackwardOptions::default()).unwrap();
    let (gx_sf, gd_sf) = (g.wrt(&xv), g.wrt(&dv));
    assert!(rel(&gx.reshape(&[n, m]), &gx_sf) < 1e-9, "∂x: {}", rel(&gx.reshape(&[n, m]), &gx_sf));
    let gw_as_d = gw.reshape(&[c, m]).t().contiguous();
    assert!(rel(&gw_as_d, &gd_sf) < 1e-9, "∂D: {}", rel(&gw_as_d, &gd_sf));
}

#[test]
fn implicit_backward_reports_conjugate_gradients_that_do_not_converge() {
    let mut rng = Rng::new(7);
    let w = unit_atoms(&Tensor::<f64>::randn(&[6, 1, 3, 3], &mut rng));
    let x = Tensor::<f64>::randn(&[1, 1, 5, 5], &mut rng);
    let cfg = CscConfig {
        fista: FistaConfig::new(0.05, 50),
        conv: Conv2dParams::new().padding(1),
        gradient: Gradient::Implicit(Implicit { cg_max_iter: 2, cg_tol: 1e-14, polish: false }),
    };
    let tape = Tape::new();
    let (xv, wv) = (tape.leaf(x), tape.leaf(w));
    let (z, _) = csc(&xv, &wv, None, 20.0, &cfg).unwrap();
    let err = tape.backward(&z.sum_all()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("csc_implicit") && text.contains("did not converge") && text.contains("2 iterations"),
        "{text}"
    );
    let autograd::Error::Rule { source, .. } = &err else { panic!("{err:?}") };
    assert!(source.downcast_ref::<sparsegrad_sparse::SparseError>().is_some());
}

#[test]
fn the_layer_is_a_drop_in_for_conv2d_shapes_and_checks_its_inputs() {
    let mut rng = Rng::new(8);
    for (s, p) in [(1, 1), (2, 1), (2, 0), (3, 2)] {
        let conv = Conv2dParams::new().stride(s).padding(p);
        let w = Tensor::<f32>::randn(&[5, 3, 3, 3], &mut rng);
        let x = Tensor::<f32>::randn(&[2, 3, 9, 8], &mut rng);
        let tape = Tape::new();
        let (xv, wv) = (tape.leaf(x.clone()), tape.leaf(w.clone()));
        let cfg = CscConfig { fista: FistaConfig::sdnet(0.1, 2), conv, gradient: Gradient::Unrolled };
        let (z, stats) = csc(&xv, &wv, None, 10.0, &cfg).unwrap();
        assert_eq!(z.shape(), x.conv2d(&w, None, conv).shape().to_vec());
        assert!(z.value().to_vec().iter().all(|v| *v >= 0.0), "non-negative codes");
        assert!(stats.density > 0.0 && stats.density < 1.0, "{stats:?}");
    }
    let tape = Tape::<f64>::new();
    let (xv, wv) = (tape.leaf(Tensor::zeros(&[1, 1, 4, 4])), tape.leaf(Tensor::zeros(&[2, 1, 3, 3])));
    let bad = csc(&xv, &wv, None, 0.0, &CscConfig::sdnet()).unwrap_err();
    assert!(bad.to_string().contains("Lipschitz"), "{bad}");
    let mut nan = Tensor::<f64>::zeros(&[1, 1, 4, 4]);
    nan.make_mut()[5] = f64::NAN;
    let err = csc(&tape.leaf(nan), &wv, None, 1.0, &CscConfig::sdnet()).unwrap_err();
    assert!(err.to_string().contains("NaN"), "{err}");
}

#[test]
fn refresh_renormalises_atoms_and_estimates_l() {
    let mut rng = Rng::new(9);
    let mut w = Tensor::<f64>::randn(&[4, 2, 3, 3], &mut rng).mul_scalar(3.0);
    let mut state = Csc::new();
    let l = state.refresh(&mut w, Conv2dParams::new().padding(1), [8, 8]).unwrap();
    let norms = w.norm_l2(&[1, 2, 3], false).to_vec();
    assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-12), "{norms:?}");
    let op = Conv::new(w.clone(), Conv2dParams::new().padding(1), [8, 8]);
    let exact = lipschitz(&op, &[1, 4, 8, 8], None, &PowerConfig { max_iter: 2000, tol: 1e-16, seed: 3 }).unwrap();
    assert!(l <= exact.value * (1.0 + 1e-9) && l > 0.95 * exact.value, "{l} vs {}", exact.value);
    // Warm-started from the last vector, the next estimate continues the same iteration: the
    // Rayleigh quotient of a PSD operator never decreases along it.
    let again = state.refresh(&mut w, Conv2dParams::new().padding(1), [8, 8]).unwrap();
    assert!(again >= l * (1.0 - 1e-12) && exact.value - again <= exact.value - l + 1e-12, "{l} → {again}");
}

/// With nothing to differentiate (constants, or inside `Tape::no_grad`) the unrolled layer runs
/// its T iterations off the tape: the same codes as the recorded iterations to rounding, for
/// every prox and momentum, strides and T = 1, 2, 5; one node on the tape instead of T's.
#[test]
fn forward_without_gradients_equals_the_recorded_iterations() {
    let mut rng = Rng::new(12);
    for (s, p) in [(1, 1), (2, 1)] {
        let conv = Conv2dParams::new().stride(s).padding(p);
        let w = unit_atoms(&Tensor::<f64>::randn(&[6, 2, 3, 3], &mut rng));
        let x = Tensor::<f64>::randn(&[3, 2, 9, 8], &mut rng);
        let l = Csc::new().refresh(&mut w.clone(), conv, [9, 8]).unwrap();
        for fista in
            [FistaConfig::new(0.2, 1), FistaConfig::new(0.2, 2), FistaConfig::new(0.1, 5), FistaConfig::sdnet(0.1, 5)]
        {
            let cfg = CscConfig { fista, conv, gradient: Gradient::Unrolled };
            let tape = Tape::new();
            let (xv, wv) = (tape.leaf(x.clone()), tape.leaf(w.clone()));
            let recorded = csc(&xv, &wv, None, l, &cfg).unwrap().0.value();
            let before = tape.len();
            let (z_ng, _) = tape.no_grad(|| csc(&xv, &wv, None, l, &cfg).unwrap());
            assert_eq!(tape.len(), before + 1, "no_grad: one node");
            let (xc, wc) = (tape.constant(x.clone()), tape.constant(w.clone()));
            let before = tape.len();
            let (z_c, _) = csc(&xc, &wc, None, l, &cfg).unwrap();
            assert_eq!(tape.len(), before + 1, "constants: one node");
            for z in [z_ng.value(), z_c.value()] {
                let err = rel(&z, &recorded);
                assert!(err < 1e-12, "stride {s}, T = {}: off-tape codes differ by {err:e}", cfg.fista.iters);
            }
        }
    }
}
