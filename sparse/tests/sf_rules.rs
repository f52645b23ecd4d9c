//! The SF, CSF and unsupervised-loss rules (docs/math.md §1) against hand-derived values, against
//! the same maps differentiated by a different route (engine ops on the tape, no LARS rule),
//! across precisions and thread counts. The finite-difference audit of every rule is in
//! `sparse::audit` (run by `tests/tests/gradcheck_sparse.rs` and `sparsegrad gradcheck`).

use autograd::{BackwardOptions, Tape, Var};
use engine::{Rng, Tensor};
use sparsegrad_sparse::lars::{lars_en, LarsConfig};
use sparsegrad_sparse::sf::{csf, csf_loss, csf_loss_with, csf_with, sf, sf_loss, sf_with_lambdas, Patches, SmallK};

/// `∂⟨R, f⟩/∂inputs` for every input (all leaves) and the output.
fn vjp<F>(f: F, inputs: &[Tensor<f64>], r: &Tensor<f64>) -> (Tensor<f64>, Vec<Tensor<f64>>)
where
    F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Var<'t, f64>,
{
    let tape = Tape::new();
    let vars: Vec<Var<'_, f64>> = inputs.iter().map(|t| tape.leaf(t.clone())).collect();
    let out = f(&tape, &vars);
    let g = tape.backward_with(&out, Some(r.clone()), BackwardOptions::default()).unwrap();
    (out.value(), vars.iter().map(|v| g.wrt(v)).collect())
}

/// Largest `|a − b| / max(1, |b|)`.
fn rel_err(a: &Tensor<f64>, b: &Tensor<f64>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.to_vec().iter().zip(b.to_vec()).map(|(x, y)| (x - y).abs() / y.abs().max(1.0)).fold(0.0, f64::max)
}

#[test]
fn sf_gradients_match_a_hand_derived_case() {
    // D = I₃ (orthonormal atoms), x = [3, −0.5, 1.2], λ1 = 1, λ2 = 0: the elastic net is
    // separable, α* = S₁(x) = [2, 0, 0.2] and Λ = {0, 2}, G_ΛΛ = I.
    // L = Σ α*  →  g = [1, 1, 1], β = [1, 0, 1] (zero off Λ).
    //   ∂x = D·β = [1, 0, 1]
    //   ∂D = −D·β·α*ᵀ + r·βᵀ with r = x − Dα* = [1, −0.5, 1]:
    //        −βα*ᵀ = [[−2, 0, −0.2], [0, 0, 0], [−2, 0, −0.2]]
    //        rβᵀ   = [[1, 0, 1], [−0.5, 0, −0.5], [1, 0, 1]]
    //        ∂D    = [[−1, 0, 0.8], [−0.5, 0, −0.5], [−1, 0, 0.8]]
    //   ∂λ1 = −βᵀ·sign(α*) = −2,  ∂λ2 = −βᵀα* = −2.2
    let tape = Tape::<f64>::new();
    let d = tape.leaf(Tensor::from_vec(vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0], &[3, 3]));
    let x = tape.leaf(Tensor::from_vec(vec![3.0, -0.5, 1.2], &[1, 3]));
    let (l1, l2) = (tape.leaf(Tensor::from([1.0])), tape.leaf(Tensor::from([0.0])));
    let (a, stats) = sf_with_lambdas(&d, &x, &l1, &l2, &LarsConfig::new(1.0, 0.0)).unwrap();
    assert_eq!(stats.active, vec![2]);
    let av = a.value().to_vec();
    assert!((av[0] - 2.0).abs() < 1e-15 && av[1] == 0.0 && (av[2] - 0.2).abs() < 1e-15, "{av:?}");
    let g = tape.backward(&a.sum_all()).unwrap();
    let close = |got: Vec<f64>, want: &[f64]| {
        assert_eq!(got.len(), want.len());
        assert!(got.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-14), "{got:?} vs {want:?}");
    };
    close(g.wrt(&x).to_vec(), &[1.0, 0.0, 1.0]);
    close(g.wrt(&d).to_vec(), &[-1.0, 0.0, 0.8, -0.5, 0.0, -0.5, -1.0, 0.0, 0.8]);
    close(g.wrt(&l1).to_vec(), &[-2.0]);
    close(g.wrt(&l2).to_vec(), &[-2.2]);
}

/// `A·z = b` for a small SPD `a` `[n, n]` and `b` `[n]` by Gaussian elimination written with
/// tape ops (select, mul, sub, div, concat, stack): no solve rule is involved, so its gradient
/// comes from the elementary rules alone.
fn solve_on_tape<'t>(a: &Var<'t, f64>, b: &Var<'t, f64>) -> Var<'t, f64> {
    let n = b.dim(0);
    let mut rows: Vec<Var<'t, f64>> =
        (0..n).map(|i| Var::concat(&[a.select(0, i), b.select(0, i).unsqueeze(0)], 0)).collect();
    for k in 0..n {
        let pivot = rows[k].select(0, k);
        for i in k + 1..n {
            let f = rows[i].select(0, k).div(&pivot);
            rows[i] = rows[i].sub(&rows[k].mul(&f));
        }
    }
    let mut z: Vec<Option<Var<'t, f64>>> = vec![None; n];
    for i in (0..n).rev() {
        let mut s = rows[i].select(0, n);
        for (j, zj) in z.iter().enumerate().skip(i + 1) {
            s = s.sub(&rows[i].select(0, j).mul(zj.as_ref().unwrap()));
        }
        z[i] = Some(s.div(&rows[i].select(0, i)));
    }
    Var::stack(&z.into_iter().map(|v| v.unwrap()).collect::<Vec<_>>(), 0)
}

/// The SF map restricted to each sample's final active set with its signs, from engine ops:
/// `α_Λ = (D_ΛᵀD_Λ + λ2·I)⁻¹·(D_Λᵀx − λ1·s)`, `α = E·α_Λ` with `E` the constant selection
/// matrix `[k, |Λ|]` and `D_Λ = D·E`.
fn sf_by_another_route<'t>(
    d: &Var<'t, f64>,
    x: &Var<'t, f64>,
    l1: &Var<'t, f64>,
    l2: &Var<'t, f64>,
    active: &[Vec<usize>],
    signs: &[Vec<f64>],
) -> Var<'t, f64> {
    let tape = d.tape();
    let k = d.dim(1);
    let mut rows = Vec::new();
    for (s, (act, sg)) in active.iter().zip(signs).enumerate() {
        let na = act.len();
        let e = Tensor::from_fn(&[k, na], |ix| if act[ix[1]] == ix[0] { 1.0 } else { 0.0 });
        let e = tape.constant(e);
        let d_act = d.matmul(&e);
        let eye = tape.constant(Tensor::from_fn(&[na, na], |ix| if ix[0] == ix[1] { 1.0 } else { 0.0 }));
        let gram = d_act.t().matmul(&d_act).add(&eye.mul(&l2.reshape(&[])));
        let xs = x.select(0, s);
        let rhs = d_act.t().matmul(&xs).sub(&tape.constant(Tensor::from_vec(sg.clone(), &[na])).mul(&l1.reshape(&[])));
        rows.push(e.matmul(&solve_on_tape(&gram, &rhs)));
    }
    Var::stack(&rows, 0)
}

/// A random problem with some atoms active in every sample.
fn problem(m: usize, k: usize, n: usize, seed: u64) -> (Tensor<f64>, Tensor<f64>, f64) {
    let mut rng = Rng::new(seed);
    let d = Tensor::<f64>::randn(&[m, k], &mut rng);
    let x = Tensor::randn(&[n, m], &mut rng);
    let c = x.matmul(&d).to_vec();
    let lambda1 = 0.3 * c.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    (d, x, lambda1)
}

#[test]
fn sf_gradient_equals_the_gradient_of_the_restricted_solve_built_from_engine_ops() {
    for (seed, lambda2, positive) in [(1, 0.0, false), (2, 0.05, false), (3, 0.01, true)] {
        let (d, x, lambda1) = problem(7, 11, 4, seed);
        let cfg = LarsConfig::new(lambda1, lambda2).positive(positive);
        let sol = lars_en(&d, &x, &cfg).unwrap();
        let a = sol.codes.to_vec();
        let active: Vec<Vec<usize>> = sol.paths.iter().map(|p| p.active.clone()).collect();
        let signs: Vec<Vec<f64>> =
            active.iter().enumerate().map(|(s, act)| act.iter().map(|&j| a[s * 11 + j].signum()).collect()).collect();
        assert!(active.iter().all(|a| !a.is_empty()), "{active:?}");
        let r = Tensor::randn(&[4, 11], &mut Rng::new(seed + 100));
        let inputs = [d.clone(), x.clone(), Tensor::from([lambda1]), Tensor::from([lambda2])];
        let (y1, g1) = vjp(|_, v| sf_with_lambdas(&v[0], &v[1], &v[2], &v[3], &cfg).unwrap().0, &inputs, &r);
        let (y2, g2) = vjp(|_, v| sf_by_another_route(&v[0], &v[1], &v[2], &v[3], &active, &signs), &inputs, &r);
        assert!(rel_err(&y1, &y2) < 1e-12, "seed {seed}: codes differ by {}", rel_err(&y1, &y2));
        for (i, what) in ["D", "X", "λ1", "λ2"].iter().enumerate() {
            let e = rel_err(&g1[i], &g2[i]);
            assert!(e < 1e-10, "seed {seed}: ∂{what} differs from the other route by {e:e}");
        }
    }
}

#[test]
fn sf_loss_gradient_equals_the_composite_through_the_sf_rule() {
    // L_u = ½‖x − Dα*‖² + λ1‖α*‖₁ + (λ2/2)‖α*‖² composed from engine ops and the SF op: its
    // gradient goes through Mairal's rule, and the terms through α* cancel (envelope theorem),
    // so it must equal the fused rule's −r·α*ᵀ and r.
    let (d, x, lambda1) = problem(6, 9, 5, 7);
    let lambda2 = 0.02;
    let cfg = LarsConfig::new(lambda1, lambda2);
    let r = Tensor::randn(&[5], &mut Rng::new(8));
    let (y1, g1) = vjp(|_, v| sf_loss(&v[0], &v[1], &cfg).unwrap().0, &[d.clone(), x.clone()], &r);
    let (y2, g2) = vjp(
        |_, v| {
            let a = sf(&v[0], &v[1], &cfg).unwrap().0;
            let res = v[1].sub(&a.matmul(&v[0].t()));
            let fit = res.square().sum(&[1], false).mul_scalar(0.5);
            let l1 = a.abs().sum(&[1], false).mul_scalar(lambda1);
            let l2 = a.square().sum(&[1], false).mul_scalar(0.5 * lambda2);
            fit.add(&l1).add(&l2)
        },
        &[d, x],
        &r,
    );
    assert!(rel_err(&y1, &y2) < 1e-12);
    assert!(rel_err(&g1[0], &g2[0]) < 1e-10, "∂D: {}", rel_err(&g1[0], &g2[0]));
    assert!(rel_err(&g1[1], &g2[1]) < 1e-10, "∂X: {}", rel_err(&g1[1], &g2[1]));
}

#[test]
fn csf_equals_sf_on_the_patch_matrix() {
    // The CSF op is the SF op on the im2col patches, rearranged: check the forward and both
    // gradients against that composite (im2col, transpose, reshape and SF on the tape).
    let mut rng = Rng::new(11);
    let geo = Patches::new(3).stride(2).padding(1);
    let x = Tensor::<f64>::randn(&[2, 2, 7, 6], &mut rng);
    let d = Tensor::<f64>::randn(&[18, 10], &mut rng);
    let cfg = LarsConfig::new(1.5, 0.01);
    let oh = geo.conv.output_hw([7, 6], geo.kernel).unwrap();
    let l = oh[0] * oh[1];
    let r = Tensor::randn(&[2, 10, oh[0], oh[1]], &mut rng);
    let (y1, g1) = vjp(|_, v| csf(&v[0], &v[1], geo, &cfg).unwrap().0, &[d.clone(), x.clone()], &r);
    let (y2, g2) = vjp(
        |_, v| {
            let p = v[1].im2col(geo.kernel, geo.conv).transpose(1, 2).reshape(&[2 * l, 18]);
            let a = sf(&v[0], &p, &cfg).unwrap().0;
            a.reshape(&[2, l, 10]).transpose(1, 2).reshape(&[2, 10, oh[0], oh[1]])
        },
        &[d.clone(), x.clone()],
        &r,
    );
    assert_eq!(y1.to_vec(), y2.to_vec());
    assert!(rel_err(&g1[0], &g2[0]) < 1e-12, "∂D: {}", rel_err(&g1[0], &g2[0]));
    assert!(rel_err(&g1[1], &g2[1]) < 1e-12, "∂X: {}", rel_err(&g1[1], &g2[1]));

    // csf_loss is the per-image sum of sf_loss over the patches.
    let rl = Tensor::randn(&[2], &mut rng);
    let (z1, h1) = vjp(|_, v| csf_loss(&v[0], &v[1], geo, &cfg).unwrap().0, &[d.clone(), x.clone()], &rl);
    let (z2, h2) = vjp(
        |_, v| {
            let p = v[1].im2col(geo.kernel, geo.conv).transpose(1, 2).reshape(&[2 * l, 18]);
            sf_loss(&v[0], &p, &cfg).unwrap().0.reshape(&[2, l]).sum(&[1], false)
        },
        &[d, x],
        &rl,
    );
    assert!(rel_err(&z1, &z2) < 1e-12);
    assert!(rel_err(&h1[0], &h2[0]) < 1e-12, "∂D: {}", rel_err(&h1[0], &h2[0]));
    assert!(rel_err(&h1[1], &h2[1]) < 1e-12, "∂X: {}", rel_err(&h1[1], &h2[1]));
}

#[test]
fn f32_rules_agree_with_f64_to_f32_accuracy() {
    // Same problem in both precisions. The codes solve a linear system with the active Gram
    // matrix (condition number of a few tens here), so f32 results carry about
    // cond·ε₃₂ ≈ 1e-5 relative error; 1e-4 leaves a margin and still fails for a rule that
    // is wrong (or computed in f64 only by accident, which would not show here at all).
    let (d, x, lambda1) = problem(8, 12, 6, 21);
    let cfg = LarsConfig::new(lambda1, 0.01);
    let r = Tensor::randn(&[6, 12], &mut Rng::new(22));
    let (y64, g64) = vjp(|_, v| sf(&v[0], &v[1], &cfg).unwrap().0, &[d.clone(), x.clone()], &r);
    let tape = Tape::<f32>::new();
    let (d32, x32) = (tape.leaf(d.cast::<f32>()), tape.leaf(x.cast::<f32>()));
    let (y32, _) = sf(&d32, &x32, &cfg).unwrap();
    let g = tape.backward_with(&y32, Some(r.cast::<f32>()), BackwardOptions::default()).unwrap();
    let scale = |t: &Tensor<f64>| t.to_vec().iter().fold(0.0f64, |a, v| a.max(v.abs()));
    for (what, got, want) in [
        ("codes", y32.value().cast::<f64>(), y64),
        ("∂D", g.wrt(&d32).cast::<f64>(), g64[0].clone()),
        ("∂X", g.wrt(&x32).cast::<f64>(), g64[1].clone()),
    ] {
        let err = got.sub(&want).to_vec().iter().fold(0.0f64, |a, v| a.max(v.abs())) / scale(&want);
        assert!(err < 1e-4, "{what}: f32 differs from f64 by {err:e} (relative to the largest entry)");
    }
}

#[test]
fn sf_backward_is_bit_identical_for_one_and_two_threads() {
    let (d, x, lambda1) = problem(20, 30, 300, 31);
    let cfg = LarsConfig::new(lambda1, 0.01);
    let r = Tensor::randn(&[300, 30], &mut Rng::new(32));
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| vjp(|_, v| sf(&v[0], &v[1], &cfg).unwrap().0, &[d.clone(), x.clone()], &r))
    };
    let (a, b) = (run(1), run(2));
    assert_eq!(a.0.to_vec(), b.0.to_vec());
    assert_eq!(a.1[0].to_vec(), b.1[0].to_vec());
    assert_eq!(a.1[1].to_vec(), b.1[1].to_vec());
}

#[test]
fn constant_inputs_get_no_gradient_and_cost_nothing() {
    // A fixed dictionary: only ∂X is computed (the rule is told ∂D is not needed).
    let (d, x, lambda1) = problem(6, 8, 3, 41);
    let tape = Tape::<f64>::new();
    let (dv, xv) = (tape.constant(d), tape.leaf(x));
    let (a, _) = sf(&dv, &xv, &LarsConfig::new(lambda1, 0.0)).unwrap();
    let g = tape.backward(&a.sum_all()).unwrap();
    assert!(g.get(&dv).is_none());
    assert_eq!(g.wrt(&xv).shape(), &[3, 6]);
}

#[test]
#[should_panic(expected = "sf: x must be [N, m] with m = 6 rows of the dictionary [6, 8], got [3, 5]")]
fn mismatched_shapes_panic_naming_both() {
    let tape = Tape::<f64>::new();
    let d = tape.leaf(Tensor::zeros(&[6, 8]));
    let x = tape.leaf(Tensor::zeros(&[3, 5]));
    let _ = sf(&d, &x, &LarsConfig::new(0.1, 0.0));
}

#[test]
fn a_non_finite_input_is_an_error_naming_the_sample() {
    let (d, mut x, lambda1) = problem(6, 8, 3, 51);
    x.make_mut()[2 * 6 + 4] = f64::NAN;
    let tape = Tape::<f64>::new();
    let err = sf(&tape.leaf(d), &tape.leaf(x), &LarsConfig::new(lambda1, 0.0)).unwrap_err();
    assert!(err.to_string().contains("sample 2"), "{err}");
}

/// The CSF op's batched small-k solver (`SmallK::Auto`) and the per-patch one (`SmallK::Off`)
/// give the same bits: output, stats, `∂D` and `∂X`, in f64 and f32, with stride and padding.
#[test]
fn csf_small_k_solver_gives_the_bits_of_the_per_patch_solver() {
    let mut rng = Rng::new(23);
    for (geo, shape, k, l1) in [
        (Patches::new(5), [4, 1, 14, 14], 20, 0.5),
        (Patches::new(3).stride(2).padding(1), [2, 3, 9, 8], 12, 0.8),
        (Patches::new(2), [3, 2, 6, 6], 40, 0.1),
    ] {
        let x = Tensor::<f64>::randn(&shape, &mut rng);
        let d = Tensor::<f64>::randn(&[shape[1] * geo.kernel[0] * geo.kernel[1], k], &mut rng);
        let cfg = LarsConfig::new(l1, 0.01);
        fn run<T: engine::Element>(
            d: &Tensor<T>,
            x: &Tensor<T>,
            geo: Patches,
            cfg: &LarsConfig,
            solver: SmallK,
        ) -> (Vec<u64>, Vec<u64>, Vec<u64>, sparsegrad_sparse::sf::CodingStats) {
            let tape = Tape::<T>::new();
            let (dv, xv) = (tape.leaf(d.clone()), tape.leaf(x.clone()));
            let (y, st) = csf_with(&dv, &xv, geo, cfg, solver).unwrap();
            let r = Tensor::<f64>::randn(&y.shape(), &mut Rng::new(5)).cast::<T>();
            let g = tape.backward_with(&y, Some(r), BackwardOptions::default()).unwrap();
            let bits = |t: Tensor<T>| t.to_vec().iter().map(|v| v.as_f64().to_bits()).collect::<Vec<_>>();
            (bits(y.value()), bits(g.wrt(&dv)), bits(g.wrt(&xv)), st)
        }
        let a = run(&d, &x, geo, &cfg, SmallK::Auto);
        let b = run(&d, &x, geo, &cfg, SmallK::Off);
        assert!(a.3.mean_active() > 1.0, "{shape:?}: too sparse to test anything");
        assert_eq!(a, b, "{shape:?} k = {k}");
        let (d32, x32) = (d.cast::<f32>(), x.cast::<f32>());
        assert_eq!(run(&d32, &x32, geo, &cfg, SmallK::Auto), run(&d32, &x32, geo, &cfg, SmallK::Off), "f32 {shape:?}");
        // The unsupervised loss too.
        let loss = |solver: SmallK| {
            let tape = Tape::<f64>::new();
            let (dv, xv) = (tape.leaf(d.clone()), tape.leaf(x.clone()));
            let (y, st) = csf_loss_with(&dv, &xv, geo, &cfg, solver).unwrap();
            let r = Tensor::<f64>::randn(&y.shape(), &mut Rng::new(6));
            let g = tape.backward_with(&y, Some(r), BackwardOptions::default()).unwrap();
            let bits = |t: Tensor<f64>| t.to_vec().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            (bits(y.value()), bits(g.wrt(&dv)), bits(g.wrt(&xv)), st)
        };
        assert_eq!(loss(SmallK::Auto), loss(SmallK::Off), "csf_loss {shape:?}");
    }
}
