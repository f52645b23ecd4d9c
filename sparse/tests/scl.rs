//! The spatial-contrasting loss (docs/math.md §5): the fused op `sc_loss` against the composite of
//! tape ops and against a naive reference written with plain loops over direct differences,
//! hand-derived values, translation invariance, large distances, coinciding pairs, precisions
//! and thread counts. The finite-difference audit of the rule is `sparse::audit` (`sc_loss`
//! cases, run by `tests/tests/gradcheck_ops.rs` and `sparsegrad gradcheck`).

use autograd::{BackwardOptions, Tape, Var};
use engine::{Element, Rng, Tensor};
use sparsegrad_sparse::scl::{sc_loss, sc_loss_composed, sc_loss_value, Distance, ScConfig};

/// The four options.
fn configs() -> [ScConfig; 4] {
    let eu = ScConfig::new().distance(Distance::Euclidean);
    [ScConfig::new(), ScConfig::new().one_sided(), eu, eu.one_sided()]
}

/// The loss `f(a, p)` and `g·∂f/∂a`, `g·∂f/∂p` (both inputs leaves, output cotangent `g`).
fn run<T, F>(f: F, a: &Tensor<T>, p: &Tensor<T>, g: f64) -> (f64, Tensor<T>, Tensor<T>)
where
    T: Element,
    F: for<'t> Fn(&Var<'t, T>, &Var<'t, T>) -> Var<'t, T>,
{
    let tape = Tape::new();
    let (va, vp) = (tape.leaf(a.clone()), tape.leaf(p.clone()));
    let out = f(&va, &vp);
    assert_eq!(out.shape(), Vec::<usize>::new(), "the loss is rank 0");
    let grads = tape.backward_with(&out, Some(Tensor::scalar(T::of(g))), BackwardOptions::default()).unwrap();
    (out.item(), grads.wrt(&va), grads.wrt(&vp))
}

/// The loss and its gradients by plain loops over the definitions (f64, direct differences,
/// the softmaxes shifted by their minimum): a route that shares nothing with either op.
fn naive(a: &Tensor<f64>, p: &Tensor<f64>, cfg: ScConfig) -> (f64, Vec<f64>, Vec<f64>) {
    let (n, d) = (a.dim(0), a.dim(1));
    let (a, p) = (a.contiguous().into_vec(), p.contiguous().into_vec());
    let diff = |i: usize, j: usize, k: usize| a[i * d + k] - p[j * d + k];
    let mut dist = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            let q: f64 = (0..d).map(|k| diff(i, j, k).powi(2)).sum();
            dist[i * n + j] = if cfg.distance == Distance::Squared { q } else { q.sqrt() };
        }
    }
    // Along line `l` (a row or a column, `at(t)` its t-th entry, `l` its diagonal position):
    // the softmax of −dist, with 1 − S_ll summed from the other entries, and
    // L_l = −log S_ll = log Σ_t exp(dist_ll − dist_t), as log1p(Σ_{t≠l} …) when dist_ll is the
    // line's minimum (every exponent ≤ 0), else shifted by the minimum.
    let softmax = |at: &dyn Fn(usize) -> usize, l: usize| {
        let m = (0..n).map(|t| dist[at(t)]).fold(f64::INFINITY, f64::min);
        let z: f64 = (0..n).map(|t| (m - dist[at(t)]).exp()).sum();
        let mut s: Vec<f64> = (0..n).map(|t| (m - dist[at(t)]).exp() / z).collect();
        s[l] = -(0..n).filter(|&t| t != l).map(|t| s[t]).sum::<f64>(); // S_ll − 1
        let dll = dist[at(l)];
        let loss = if dll == m {
            (0..n).filter(|&t| t != l).map(|t| (dll - dist[at(t)]).exp()).sum::<f64>().ln_1p()
        } else {
            dll - m + z.ln()
        };
        (s, loss)
    };
    let mut m = vec![0.0; n * n];
    let mut loss = 0.0;
    let w = if cfg.symmetric { 0.5 } else { 1.0 };
    for i in 0..n {
        let (s, li) = softmax(&|j| i * n + j, i);
        loss += w * li / n as f64;
        for j in 0..n {
            m[i * n + j] -= w * s[j] / n as f64; // (δ_ij − S_ij)/N
        }
    }
    if cfg.symmetric {
        for j in 0..n {
            let (s, lj) = softmax(&|i| i * n + j, j);
            loss += w * lj / n as f64;
            for i in 0..n {
                m[i * n + j] -= w * s[i] / n as f64;
            }
        }
    }
    let (mut ga, mut gp) = (vec![0.0; n * d], vec![0.0; n * d]);
    for i in 0..n {
        for j in 0..n {
            let k = match cfg.distance {
                Distance::Squared => 2.0 * m[i * n + j],
                Distance::Euclidean if dist[i * n + j] > 0.0 => m[i * n + j] / dist[i * n + j],
                Distance::Euclidean => 0.0,
            };
            for c in 0..d {
                ga[i * d + c] += k * diff(i, j, c);
                gp[j * d + c] -= k * diff(i, j, c);
            }
        }
    }
    (loss, ga, gp)
}

/// Largest `|x − y| / max(1, |y|)`, with its index (NaN counts as infinitely wrong).
fn rel_err(x: &[f64], y: &[f64]) -> (usize, f64) {
    assert_eq!(x.len(), y.len());
    let mut worst = (0, 0.0);
    for (i, (a, b)) in x.iter().zip(y).enumerate() {
        let e = (a - b).abs() / b.abs().max(1.0);
        let e = if e.is_nan() { f64::INFINITY } else { e };
        if e > worst.1 {
            worst = (i, e);
        }
    }
    worst
}

#[track_caller]
fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    let (i, e) = rel_err(got, want);
    assert!(e <= tol, "{what}: element {i} is {:e}, expected {:e} (error {e:.2e} > {tol:e})", got[i], want[i]);
}

fn randn(shape: &[usize], seed: u64) -> Tensor<f64> {
    Tensor::randn(shape, &mut Rng::new(seed))
}

/// `[n, d]` as a transposed view of a `[d, n]` tensor (not contiguous).
fn transposed(n: usize, d: usize, seed: u64) -> Tensor<f64> {
    randn(&[d, n], seed).t()
}

/// Runs `f` on a rayon pool of `threads` threads.
fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
}

#[test]
fn fused_equals_composed_and_naive_in_f64_for_all_four_options() {
    // Shapes: one pair, a 1-D feature, odd sizes, and 260 × 250 (260²·250 ≥ 2²⁴: on two
    // threads the forward GEMM is split at row 192 and the backward GEMMs run side by side).
    // Inputs: contiguous anchors, transposed-view positives, and the reverse; cotangent 1.7 (a
    // rule that ignored g would fail).
    for &(n, d) in &[(1, 3), (2, 1), (7, 5), (70, 9), (260, 250)] {
        for (a, p) in [(randn(&[n, d], 1), transposed(n, d, 2)), (transposed(n, d, 3), randn(&[n, d], 4))] {
            for cfg in configs() {
                for threads in [1, 2] {
                    let what = format!("[{n}, {d}], {}, {threads} thread(s)", cfg.describe());
                    let (lf, gaf, gpf) = on_threads(threads, || run(|a, p| sc_loss(a, p, cfg), &a, &p, 1.7));
                    let (lc, gac, gpc) = run(|a, p| sc_loss_composed(a, p, cfg), &a, &p, 1.7);
                    assert_close(&format!("value vs composed, {what}"), &[lf], &[lc], 1e-12);
                    assert_close(&format!("∂a vs composed, {what}"), &gaf.to_vec(), &gac.to_vec(), 1e-12);
                    assert_close(&format!("∂p vs composed, {what}"), &gpf.to_vec(), &gpc.to_vec(), 1e-12);
                    let (ln, gan, gpn) = naive(&a, &p, cfg);
                    let scale = |g: Vec<f64>| g.iter().map(|x| 1.7 * x).collect::<Vec<_>>();
                    assert_close(&format!("value vs naive, {what}"), &[lf], &[ln], 1e-12);
                    assert_close(&format!("∂a vs naive, {what}"), &gaf.to_vec(), &scale(gan), 1e-12);
                    assert_close(&format!("∂p vs naive, {what}"), &gpf.to_vec(), &scale(gpn), 1e-12);
                }
            }
        }
    }
}

#[test]
fn hand_derived_two_pairs_of_one_dimensional_features() {
    // a = [0, 1], p = [0, 2] (N = 2, d = 1); σ(x) = 1/(1 + e^−x), so 1 − σ(x) = σ(−x).
    let s = |x: f64| 1.0 / (1.0 + (-x).exp());
    let (a, p) = (Tensor::from_vec(vec![0.0, 1.0], &[2, 1]), Tensor::from_vec(vec![0.0, 2.0], &[2, 1]));
    let check = |cfg: ScConfig, want: (f64, [f64; 2], [f64; 2])| {
        let (l, ga, gp) = run(|a, p| sc_loss(a, p, cfg), &a, &p, 1.0);
        let what = cfg.describe();
        assert_close(&format!("value, {what}"), &[l], &[want.0], 1e-15);
        assert_close(&format!("∂a, {what}"), &ga.to_vec(), &want.1, 1e-15);
        assert_close(&format!("∂p, {what}"), &gp.to_vec(), &want.2, 1e-15);
    };

    // Squared, one-sided. dist = [[0, 4], [1, 1]] (dist_ij = (a_i − p_j)²).
    // Row softmaxes of −dist: row 1 [1, e⁻⁴]/(1 + e⁻⁴) = [σ(4), σ(−4)], row 2 [½, ½].
    //   L = ½[(0 + log(1 + e⁻⁴)) + (1 + log(2e⁻¹))] = ½[log(1 + e⁻⁴) + log 2]
    // M = (I − S)/N = ½[[σ(−4), −σ(−4)], [−½, ½]], K = 2M, ∂a_i = Σ_j K_ij(a_i − p_j),
    // ∂p_j = −Σ_i K_ij(a_i − p_j):
    //   ∂a_1 = σ(−4)·0 − σ(−4)·(0 − 2) = 2σ(−4)     ∂a_2 = −½·(1 − 0) + ½·(1 − 2) = −1
    //   ∂p_1 = −[σ(−4)·0 − ½·(1 − 0)] = ½            ∂p_2 = −[−σ(−4)·(0 − 2) + ½·(1 − 2)] = ½ − 2σ(−4)
    // (the four sum to 0: the loss is invariant to a common translation).
    let l_ap = 0.5 * ((1.0 + (-4f64).exp()).ln() + 2f64.ln());
    check(ScConfig::new().one_sided(), (l_ap, [2.0 * s(-4.0), -1.0], [0.5, 0.5 - 2.0 * s(-4.0)]));

    // Squared, symmetric. Column softmaxes of −dist: column 1 [1, e⁻¹]/(1 + e⁻¹) = [σ(1), σ(−1)],
    // column 2 [e⁻⁴, e⁻¹]/(e⁻⁴ + e⁻¹) = [σ(−3), σ(3)].
    //   L(p, a) = ½[(0 + log(1 + e⁻¹)) + (1 + log(e⁻⁴ + e⁻¹))] = ½[log(1 + e⁻¹) + log(1 + e⁻³)]
    // M = (2I − S^r − S^c)/(2N) = ¼[[α, −β], [−γ, δ]] with α = σ(−4) + σ(−1), β = σ(−4) + σ(−3),
    // γ = ½ + σ(−1), δ = ½ + σ(−3); K = 2M:
    //   ∂a_1 = ½[α·0 − β·(0 − 2)] = β               ∂a_2 = ½[−γ·(1 − 0) + δ·(1 − 2)] = −(γ + δ)/2
    //   ∂p_1 = −½[α·0 − γ·(1 − 0)] = γ/2             ∂p_2 = −½[−β·(0 − 2) + δ·(1 − 2)] = δ/2 − β
    let l_pa = 0.5 * ((1.0 + (-1f64).exp()).ln() + (1.0 + (-3f64).exp()).ln());
    let (beta, gamma, delta) = (s(-4.0) + s(-3.0), 0.5 + s(-1.0), 0.5 + s(-3.0));
    check(ScConfig::new(), (0.5 * (l_ap + l_pa), [beta, -(gamma + delta) / 2.0], [gamma / 2.0, delta / 2.0 - beta]));

    // Euclidean, one-sided: dist = |a_i − p_j| = [[0, 2], [1, 1]]; dist_11 = 0 is the kink,
    // where the rule uses the subgradient 0. Rows: [σ(2), σ(−2)] and [½, ½].
    //   L = ½[(0 + log(1 + e⁻²)) + (1 + log(2e⁻¹))] = ½[log(1 + e⁻²) + log 2]
    // M = ½[[σ(−2), −σ(−2)], [−½, ½]]; ∂dist_ij/∂a_i = sign(a_i − p_j) (0 at 0) = −∂dist_ij/∂p_j:
    //   ∂a_1 = M_11·0 + M_12·sign(0 − 2) = ½σ(−2)     ∂a_2 = M_21·1 + M_22·(−1) = −½
    //   ∂p_1 = −[M_11·0 + M_21·1] = ¼                 ∂p_2 = −[M_12·(−1) + M_22·(−1)] = ¼ − ½σ(−2)
    let l_eu = 0.5 * ((1.0 + (-2f64).exp()).ln() + 2f64.ln());
    let eu = ScConfig::new().distance(Distance::Euclidean).one_sided();
    check(eu, (l_eu, [0.5 * s(-2.0), -0.5], [0.25, 0.25 - 0.5 * s(-2.0)]));
}

#[test]
fn adding_one_vector_to_every_feature_changes_nothing() {
    // L depends on a_i − p_j only. In f64 the fused op keeps value and gradients to 1e-12 under
    // an offset of norm ≈ 12 (its centring removes the offset before the Gram form).
    let (n, d) = (9, 6);
    let (a, p) = (randn(&[n, d], 5), randn(&[n, d], 6));
    let c = randn(&[1, d], 7).mul_scalar(5.0);
    let (a2, p2) = (a.add(&c), p.add(&c));
    for cfg in configs() {
        let what = cfg.describe();
        let (l, ga, gp) = run(|a, p| sc_loss(a, p, cfg), &a, &p, 1.0);
        let (l2, ga2, gp2) = run(|a, p| sc_loss(a, p, cfg), &a2, &p2, 1.0);
        assert_close(&format!("value, {what}"), &[l2], &[l], 1e-12);
        assert_close(&format!("∂a, {what}"), &ga2.to_vec(), &ga.to_vec(), 1e-12);
        assert_close(&format!("∂p, {what}"), &gp2.to_vec(), &gp.to_vec(), 1e-12);
        // The gradients of a translation-invariant function sum to zero over all features.
        let total: f64 = ga.to_vec().iter().chain(&gp.to_vec()).sum();
        assert!(total.abs() < 1e-13, "{what}: Σ∂a + Σ∂p = {total:e}");
    }
    // In f32, an offset of 100 in every coordinate (features after a ReLU share a large mean)
    // costs the fused op about one f32 rounding of a + c: value and gradients stay within 1e-4
    // of the f64 loss without the offset.
    let big = Tensor::full(&[1, d], 100.0);
    let (a32, p32) = (a.add(&big).cast::<f32>(), p.add(&big).cast::<f32>());
    for cfg in configs() {
        let what = cfg.describe();
        let (l, ga, gp) = run(|a, p| sc_loss(a, p, cfg), &a, &p, 1.0);
        let (l32, ga32, gp32) = run(|a, p| sc_loss(a, p, cfg), &a32, &p32, 1.0);
        assert_close(&format!("f32 value, offset 100, {what}"), &[l32], &[l], 1e-4);
        assert_close(&format!("f32 ∂a, offset 100, {what}"), &ga32.to_f64_vec(), &ga.to_vec(), 1e-4);
        assert_close(&format!("f32 ∂p, offset 100, {what}"), &gp32.to_f64_vec(), &gp.to_vec(), 1e-4);
    }
}

#[test]
fn features_scaled_by_100_give_finite_exact_values() {
    // Distances of order 10⁵: exp(−dist) underflows to 0 for every pair, so a softmax without
    // the shift would be 0/0. With it, value and gradients are finite and equal the f64
    // references; the f32 op equals them to f32 precision.
    let (n, d) = (16, 8);
    let (a, p) = (randn(&[n, d], 8).mul_scalar(100.0), randn(&[n, d], 9).mul_scalar(100.0));
    // The Gram form |ã|² + |p̃|² − 2ã·p̃ carries an absolute error of about ε(|ã_i|² + |p̃_j|²)
    // in each distance: ≈ 2e-16·1e5 here, an error in the softmax's logits that moves the
    // gradients by about as much relative to their size (the naive loops use the differences
    // and are exact to ε·dist). The bound allows 16 times that.
    let norm2 = |t: &Tensor<f64>| t.square().sum(&[1], false).to_vec().into_iter().fold(0.0, f64::max);
    let gram_tol = 16.0 * f64::EPSILON * (norm2(&a) + norm2(&p));
    assert!(gram_tol < 1e-8, "{gram_tol:e}");
    for cfg in configs() {
        let what = cfg.describe();
        let (l, ga, gp) = run(|a, p| sc_loss(a, p, cfg), &a, &p, 1.0);
        assert!(l.is_finite() && l > 10.0, "{what}: loss {l}");
        assert!(ga.to_vec().iter().chain(&gp.to_vec()).all(|g| g.is_finite()), "{what}");
        let (ln, gan, gpn) = naive(&a, &p, cfg);
        let (lc, gac, gpc) = run(|a, p| sc_loss_composed(a, p, cfg), &a, &p, 1.0);
        assert_close(&format!("value vs naive, {what}"), &[l], &[ln], 1e-12);
        assert_close(&format!("value vs composed, {what}"), &[l], &[lc], 1e-12);
        assert_close(&format!("∂a vs naive, {what}"), &ga.to_vec(), &gan, gram_tol);
        assert_close(&format!("∂p vs naive, {what}"), &gp.to_vec(), &gpn, gram_tol);
        assert_close(&format!("∂a vs composed, {what}"), &ga.to_vec(), &gac.to_vec(), gram_tol);
        assert_close(&format!("∂p vs composed, {what}"), &gp.to_vec(), &gpc.to_vec(), gram_tol);
        // f32 (the inputs rounded to f32, compared with the f64 loss of the rounded inputs).
        // The value is dist_ii − min_j dist_ij + log1p(…): f32 precision relative to it. The
        // gradients hold softmax weights, which an error δ in a distance changes by up to a
        // factor e^δ; no f32 method knows a distance of 1e5 better than ε₃₂·1e5 ≈ 1e-2, so rows
        // whose two nearest positives are within a few units of each other (there are some here) have weights
        // known to about a percent: the bound is that resolution, 4·ε₃₂·max dist.
        let (a32, p32) = (a.cast::<f32>(), p.cast::<f32>());
        let (l32, ga32, gp32) = run(|a, p| sc_loss(a, p, cfg), &a32, &p32, 1.0);
        let (ln32, gan32, gpn32) = naive(&a32.cast(), &p32.cast(), cfg);
        assert!(ga32.to_vec().iter().chain(&gp32.to_vec()).all(|g| g.is_finite()), "{what}");
        assert_close(&format!("f32 value, {what}"), &[l32], &[ln32], 1e-5);
        let max_dist = match cfg.distance {
            Distance::Squared => 2.0 * (norm2(&a) + norm2(&p)),
            Distance::Euclidean => (2.0 * (norm2(&a) + norm2(&p))).sqrt(),
        };
        let f32_tol = 4.0 * f32::EPSILON as f64 * max_dist;
        assert_close(&format!("f32 ∂a, {what}"), &ga32.to_f64_vec(), &gan32, f32_tol);
        assert_close(&format!("f32 ∂p, {what}"), &gp32.to_f64_vec(), &gpn32, f32_tol);
    }
}

#[test]
fn a_tiny_loss_keeps_its_relative_precision() {
    // Positives 0.1·N(0, 1) from their anchors, negatives far away (features ×3 for the squared
    // distance, ×20 for the Euclidean one): L_i = log Σ_j e^(dist_ii − dist_ij) is about
    // Σ_{j≠i} e^(−gap) with gaps of 35 and more, L ≈ 1e-15. Written as dist_ii + log Σ_j
    // e^(−dist_ij), it is a difference of two numbers near dist_ii, whose rounding is larger
    // than L's last digits (the composite is 3.5e-3 off, relatively, for the squared distance
    // here); the op forms log1p(Σ_{j≠i} …) and keeps every digit in f64, and f32 precision in
    // f32.
    let (n, d) = (16, 8);
    for cfg in configs() {
        let scale = if cfg.distance == Distance::Squared { 3.0 } else { 20.0 };
        let a = randn(&[n, d], 10).mul_scalar(scale);
        let p = a.add(&randn(&[n, d], 11).mul_scalar(0.1));
        let what = cfg.describe();
        let (ln, gan, gpn) = naive(&a, &p, cfg);
        assert!(ln > 1e-30 && ln < 1e-12, "{what}: the regime is meant to give a tiny loss, got {ln:e}");
        let gmax = gan.iter().chain(&gpn).fold(0.0f64, |m, g| m.max(g.abs()));
        let scaled = |g: &[f64]| g.iter().map(|x| x / gmax).collect::<Vec<_>>();
        let (l, ga, gp) = run(|a, p| sc_loss(a, p, cfg), &a, &p, 1.0);
        assert!((l - ln).abs() <= 1e-12 * ln, "{what}: {l:e} vs naive {ln:e}");
        assert_close(&format!("∂a, {what}"), &scaled(&ga.to_vec()), &scaled(&gan), 1e-12);
        assert_close(&format!("∂p, {what}"), &scaled(&gp.to_vec()), &scaled(&gpn), 1e-12);
        // f32: each gap carries the f32 Gram form's absolute error ε₃₂·(|ã|² + |p̃|²), a
        // relative error of at most a few 1e-5 in each e^(−gap) at these norms.
        let (a32, p32) = (a.cast::<f32>(), p.cast::<f32>());
        let (ln32, gan32, gpn32) = naive(&a32.cast(), &p32.cast(), cfg);
        let (l32, ga32, gp32) = run(|a, p| sc_loss(a, p, cfg), &a32, &p32, 1.0);
        assert!((l32 - ln32).abs() <= 1e-3 * ln32, "{what}: f32 {l32:e} vs {ln32:e}");
        assert_close(&format!("f32 ∂a, {what}"), &scaled(&ga32.to_f64_vec()), &scaled(&gan32), 1e-3);
        assert_close(&format!("f32 ∂p, {what}"), &scaled(&gp32.to_f64_vec()), &scaled(&gpn32), 1e-3);
    }
}

#[test]
fn coinciding_pairs_have_finite_gradients_with_the_euclidean_distance() {
    // p = a exactly, and one off-diagonal coincidence (p_2 = a_0): dist = 0 at those pairs,
    // where the rule takes the subgradient 0 (the composite's √ gives 0·∞ = NaN there). The
    // fused op equals the naive loops with the same convention; the squared distance is smooth
    // there and equals the composite too.
    let (n, d) = (5, 4);
    let a = randn(&[n, d], 11);
    let mut pv = a.to_vec();
    let a0: Vec<f64> = pv[..d].to_vec();
    pv[2 * d..3 * d].copy_from_slice(&a0);
    let p = Tensor::from_vec(pv, &[n, d]);
    for cfg in configs() {
        let what = cfg.describe();
        let (l, ga, gp) = run(|a, p| sc_loss(a, p, cfg), &a, &p, 1.0);
        let (ln, gan, gpn) = naive(&a, &p, cfg);
        assert_close(&format!("value, {what}"), &[l], &[ln], 1e-12);
        assert_close(&format!("∂a, {what}"), &ga.to_vec(), &gan, 1e-12);
        assert_close(&format!("∂p, {what}"), &gp.to_vec(), &gpn, 1e-12);
        if cfg.distance == Distance::Squared {
            let (lc, gac, _) = run(|a, p| sc_loss_composed(a, p, cfg), &a, &p, 1.0);
            assert_close(&format!("value vs composed, {what}"), &[l], &[lc], 1e-12);
            assert_close(&format!("∂a vs composed, {what}"), &ga.to_vec(), &gac.to_vec(), 1e-12);
        }
    }
    // Nearly coinciding (1e-9 apart, far below the Gram form's resolution √ε·|a| ≈ 1e-8):
    // recomputed from the differences, the distance and its gradient term stay exact.
    let p = a.add(&randn(&[n, d], 12).mul_scalar(1e-9));
    for cfg in
        [ScConfig::new().distance(Distance::Euclidean), ScConfig::new().distance(Distance::Euclidean).one_sided()]
    {
        let (l, ga, gp) = run(|a, p| sc_loss(a, p, cfg), &a, &p, 1.0);
        let (ln, gan, gpn) = naive(&a, &p, cfg);
        let what = cfg.describe();
        assert_close(&format!("near value, {what}"), &[l], &[ln], 1e-12);
        assert_close(&format!("near ∂a, {what}"), &ga.to_vec(), &gan, 1e-12);
        assert_close(&format!("near ∂p, {what}"), &gp.to_vec(), &gpn, 1e-12);
    }
}

#[test]
fn f32_matches_the_f64_reference_on_the_benchmark_workload() {
    // The peers' workload (sc_loss.py): N = 128, d = 256, a ~ N(0, 1/d), p = a + ½·N(0, 1/d).
    let (n, d) = (128, 256);
    let s = 1.0 / (d as f64).sqrt();
    let a = randn(&[n, d], 13).mul_scalar(s);
    let p = a.add(&randn(&[n, d], 14).mul_scalar(0.5 * s));
    let (a32, p32) = (a.cast::<f32>(), p.cast::<f32>());
    let (a, p) = (a32.cast::<f64>(), p32.cast::<f64>());
    for cfg in configs() {
        let what = cfg.describe();
        let (l, ga, gp) = run(|a, p| sc_loss(a, p, cfg), &a, &p, 1.0);
        let (l32, ga32, gp32) = run(|a, p| sc_loss(a, p, cfg), &a32, &p32, 1.0);
        assert_close(&format!("value, {what}"), &[l32], &[l], 1e-6);
        let gmax = ga.to_vec().iter().chain(&gp.to_vec()).fold(0.0f64, |m, g| m.max(g.abs()));
        let scaled = |g: &[f64]| g.iter().map(|x| x / gmax).collect::<Vec<_>>();
        assert_close(&format!("∂a, {what}"), &scaled(&ga32.to_f64_vec()), &scaled(&ga.to_vec()), 1e-5);
        assert_close(&format!("∂p, {what}"), &scaled(&gp32.to_f64_vec()), &scaled(&gp.to_vec()), 1e-5);
        // The value without a tape is the same number.
        assert_eq!(sc_loss_value(&a32, &p32, cfg).to_bits(), (l32 as f32).to_bits(), "{what}");
    }
}

#[test]
fn the_thread_count_does_not_change_a_bit() {
    // 260 × 250 (260²·250 ≥ 2²⁴): the forward GEMM splits at row 192 on two threads, the
    // backward GEMMs run side by side; every reduction keeps its order.
    let (n, d) = (260, 250);
    let a = randn(&[n, d], 15).cast::<f32>();
    let p = randn(&[n, d], 16).cast::<f32>();
    for cfg in configs() {
        let one = on_threads(1, || run(|a, p| sc_loss(a, p, cfg), &a, &p, 1.0));
        let two = on_threads(2, || run(|a, p| sc_loss(a, p, cfg), &a, &p, 1.0));
        assert_eq!(one.0.to_bits(), two.0.to_bits(), "{}", cfg.describe());
        assert_eq!(one.1.to_vec(), two.1.to_vec(), "{}", cfg.describe());
        assert_eq!(one.2.to_vec(), two.2.to_vec(), "{}", cfg.describe());
    }
}

#[test]
fn one_input_needing_a_gradient_gets_it_and_constants_get_none() {
    let (a, p) = (randn(&[6, 3], 17), randn(&[6, 3], 18));
    let (_, ga, gp) = run(|a, p| sc_loss(a, p, ScConfig::new()), &a, &p, 1.0);
    let tape = Tape::new();
    let (va, vp) = (tape.leaf(a.clone()), tape.constant(p.clone()));
    let grads = tape.backward(&sc_loss(&va, &vp, ScConfig::new())).unwrap();
    assert_eq!(grads.wrt(&va).to_vec(), ga.to_vec());
    assert!(grads.get(&vp).is_none());
    let tape = Tape::new();
    let (va, vp) = (tape.constant(a), tape.leaf(p));
    let grads = tape.backward(&sc_loss(&va, &vp, ScConfig::new())).unwrap();
    assert_eq!(grads.wrt(&vp).to_vec(), gp.to_vec());
    // On constants only, the op is recorded without a rule and has the same value.
    let tape = Tape::new();
    let (va, vp) = (tape.constant(randn(&[6, 3], 17)), tape.constant(randn(&[6, 3], 18)));
    let l = sc_loss(&va, &vp, ScConfig::new());
    assert!(!l.requires_grad());
    assert!(tape.recorded_ops().contains(&"sc_loss".to_string()));
}

#[test]
#[should_panic(expected = "sc_loss: anchors and positives must both be [N, d], got [4, 3] and [4, 2]")]
fn mismatched_features_panic_with_both_shapes() {
    let tape = Tape::<f64>::new();
    let (a, p) = (tape.leaf(Tensor::zeros(&[4, 3])), tape.leaf(Tensor::zeros(&[4, 2])));
    sc_loss(&a, &p, ScConfig::new());
}

#[test]
fn edge_cases_nan_features_and_empty_features() {
    // NaN in one feature makes the loss NaN (as documented), in f32 and f64.
    let mut a = randn(&[5, 4], 19);
    let p = randn(&[5, 4], 20);
    a = Tensor::from_fn(&[5, 4], |i| if i == [2, 1] { f64::NAN } else { a.get(i) });
    for cfg in configs() {
        assert!(sc_loss_value(&a, &p, cfg).is_nan(), "{}", cfg.describe());
        assert!(sc_loss_value(&a.cast::<f32>(), &p.cast::<f32>(), cfg).is_nan(), "{}", cfg.describe());
    }
    // d = 0: every distance is 0, every softmax uniform: L = log N, no gradient entries.
    let (a, p) = (Tensor::<f64>::zeros(&[6, 0]), Tensor::<f64>::zeros(&[6, 0]));
    for cfg in configs() {
        let (l, ga, gp) = run(|a, p| sc_loss(a, p, cfg), &a, &p, 1.0);
        assert!((l - 6f64.ln()).abs() < 1e-15, "{}: {l}", cfg.describe());
        assert_eq!((ga.shape(), gp.shape()), (&[6, 0][..], &[6, 0][..]));
    }
}
