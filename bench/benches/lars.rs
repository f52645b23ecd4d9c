//! LARS-EN sparse coding (docs/math.md §1) on the workload of `../shared/peers/lars.py`, and the
//! SF / CSF tape ops built on it.
//!
//! Group `lars_t{threads}` (f64, as SPAMS computes in double; m = 800, k = 500, N = 256
//! unit-norm signals `x = D·a0 + 0.05·e/√m` with 20-sparse `a0`, λ1 = 0.1·mean_n max_j |d_jᵀx_n|,
//! λ2 ∈ {0, 0.01}; the Gaussian and the correlated dictionary, see
//! [`sparsegrad_bench::lars_workload`]). Throughput is in signals, so time / 256 is the
//! ms-per-signal figure of lars.py.
//! * `forward/{dict}_l2_{λ2}`: `sparse::lars_en` from D and X, the Gram matrix `DᵀD + λ2·I`
//!   and the correlations `X·D` included (`spams.lasso` computes both too).
//! * `path_only/..`: `lars_en_gram` with G and C given (what `lars_path_gram` is handed).
//! * `sf_backward/..`: Mairal's rule alone: `tape.backward_with` from the SF op's output with a
//!   fixed random N(0, 1) cotangent, D and X both leaves (∂D and ∂X), after the forward; the
//!   graph is retained and the leaves' gradients cleared between iterations (not timed).
//!
//! Group `csf_t{threads}` (f32, as training runs): the CSF-LeNet first layer, batch 64,
//! input `[64, 1, 28, 28]` N(0, 1), 20 atoms of 5×5, stride 1, no padding (36,864 patches of
//! 25 values), against the `conv2d` + bias layer it replaces (20 filters 5×5). Each iteration
//! is a fresh tape, the forward and `backward_with` a fixed random cotangent of the output;
//! the parameters (D; W and b) are leaves, the images a constant, as in a first layer.
//! * `csf_forward_backward/lenet1_64x1x28x28_20x5x5_l1frac{f}`: λ1 = f·mean_p max_j |d_jᵀp|
//!   over the patches p, f ∈ {0.25, 0.5} (9.3 and 4.5 of 20 atoms active), λ2 = 0.01;
//!   `conv2d_forward_backward/lenet1_64x1x28x28_20x5x5`.
//!
//! With `LARS_STATS=path` the bench writes the mean active-set size of every case (and the
//! CSF's λ1) to that JSON file, which `bench/report.py` puts beside the times: the work has
//! to match the peers' `active_mean` for the times to be comparable.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use autograd::{BackwardOptions, Tape};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine::{Conv2dParams, Rng, Tensor};
use sparse::sf::{csf, sf, Patches};
use sparse::{lars_en, lars_en_gram, LarsConfig};
use sparsegrad_bench::group_name;
use sparsegrad_bench::lars_workload::{problems, K, N};

/// λ1 of the CSF layer as fractions of the patches' mean largest correlation
/// `mean_p max_j |d_jᵀp|` (the rule of lars.py's λ1 = 0.1·…): on N(0, 1) images, 0.25 leaves
/// 9.3 of the 20 atoms active per patch (46%, about as dense as the ReLU output of the conv2d
/// it replaces) and 0.5 leaves 4.5 (22%, a sparse code); the stats file records both.
const CSF_LAMBDA_FRACTIONS: [f64; 2] = [0.25, 0.5];
/// λ2 of the CSF layer.
const CSF_LAMBDA2: f64 = 0.01;

fn gram(d: &Tensor<f64>, l2: f64) -> Tensor<f64> {
    let mut g = d.t().matmul(d).to_vec();
    for i in 0..K {
        g[i * K + i] += l2;
        for j in 0..i {
            g[j * K + i] = g[i * K + j];
        }
    }
    Tensor::from_vec(g, &[K, K])
}

fn lars(c: &mut Criterion, stats: &mut Vec<String>) {
    let mut g = c.benchmark_group(group_name("lars"));
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(20);
    for (kind, d, x, l1) in problems() {
        for l2 in [0.0, 0.01] {
            let label = format!("{kind}_l2_{l2}");
            let cfg = LarsConfig::new(l1, l2);
            let sol = lars_en(&d, &x, &cfg).expect("lars_en");
            let active = sol.paths.iter().map(|p| p.active.len()).sum::<usize>() as f64 / N as f64;
            let steps = sol.paths.iter().map(|p| p.steps).sum::<usize>() as f64 / N as f64;
            eprintln!("lars {label}: λ1 = {l1:.5}, mean |Λ| = {active:.2}, mean steps = {steps:.1}");
            stats.push(format!(
                "\"{label}\": {{\"lambda1\": {l1}, \"lambda2\": {l2}, \"active_mean\": {active}, \"steps_mean\": {steps}}}"
            ));
            g.bench_function(BenchmarkId::new("forward", &label), |b| b.iter(|| lars_en(&d, &x, &cfg).unwrap()));
            let (gm, cm) = (gram(&d, l2), x.matmul(&d));
            assert!(lars_en_gram(&gm, &cm, &cfg).unwrap().codes.to_vec() == sol.codes.to_vec());
            g.bench_function(BenchmarkId::new("path_only", &label), |b| {
                b.iter(|| lars_en_gram(&gm, &cm, &cfg).unwrap())
            });

            let tape = Tape::<f64>::new();
            let (dv, xv) = (tape.leaf(d.clone()), tape.leaf(x.clone()));
            let (codes, _) = sf(&dv, &xv, &cfg).expect("sf");
            let cot = Tensor::<f64>::randn(codes.value().shape(), &mut Rng::new(7));
            let keep = BackwardOptions { retain_graph: true };
            g.bench_function(BenchmarkId::new("sf_backward", &label), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        tape.zero_grad();
                        let t0 = Instant::now();
                        let grads = tape.backward_with(&codes, Some(cot.clone()), keep).unwrap();
                        total += t0.elapsed();
                        black_box(grads);
                    }
                    total
                })
            });
        }
    }
    g.finish();
}

fn unit_atoms(m: usize, k: usize, rng: &mut Rng) -> Tensor<f32> {
    let mut d = Tensor::<f64>::randn(&[m, k], rng).to_vec();
    for j in 0..k {
        let n = (0..m).map(|i| d[i * k + j].powi(2)).sum::<f64>().sqrt();
        (0..m).for_each(|i| d[i * k + j] /= n);
    }
    Tensor::from_vec(d, &[m, k]).cast::<f32>()
}

fn csf_vs_conv(c: &mut Criterion, stats: &mut Vec<String>) {
    let mut g = c.benchmark_group(group_name("csf"));
    let label = "lenet1_64x1x28x28_20x5x5";
    let (batch, atoms) = (64usize, 20usize);
    g.throughput(Throughput::Elements(batch as u64));
    g.sample_size(10);
    let mut rng = Rng::new(11);
    let x = Tensor::<f32>::randn(&[batch, 1, 28, 28], &mut rng);
    let d = unit_atoms(25, atoms, &mut rng);
    let geo = Patches::new(5);
    // λ1 from the patches as lars.py sets it from its signals.
    let patches = x.im2col([5, 5], Conv2dParams::new()).transpose(1, 2).contiguous().reshape(&[batch * 576, 25]);
    let corr = patches.matmul(&d).to_vec();
    let max_corr = corr.chunks(atoms).map(|r| r.iter().fold(0.0f64, |m, &v| m.max((v as f64).abs()))).sum::<f64>()
        / (batch * 576) as f64;
    let cot = Tensor::<f32>::randn(&[batch, atoms, 24, 24], &mut rng);
    for fraction in CSF_LAMBDA_FRACTIONS {
        let l1 = fraction * max_corr;
        let cfg = LarsConfig::new(l1, CSF_LAMBDA2);
        let case = format!("{label}_l1frac{fraction}");
        {
            let tape = Tape::<f32>::new();
            let (y, st) = csf(&tape.leaf(d.clone()), &tape.constant(x.clone()), geo, &cfg).expect("csf");
            assert_eq!(y.shape(), cot.shape());
            let active = st.mean_active();
            eprintln!("csf {case}: λ1 = {l1:.4} ({fraction}·mean max|c|), λ2 = {CSF_LAMBDA2}, mean |Λ| = {active:.2} of {atoms}");
            stats.push(format!(
                "\"csf_{case}\": {{\"lambda1\": {l1}, \"lambda2\": {CSF_LAMBDA2}, \"lambda1_fraction\": {fraction}, \"active_mean\": {active}, \"atoms\": {atoms}}}"
            ));
        }
        g.bench_function(BenchmarkId::new("csf_forward_backward", &case), |b| {
            b.iter(|| {
                let tape = Tape::<f32>::new();
                let dv = tape.leaf(d.clone());
                let (y, _) = csf(&dv, &tape.constant(x.clone()), geo, &cfg).unwrap();
                let grads = tape.backward_with(&y, Some(cot.clone()), BackwardOptions::default()).unwrap();
                black_box(grads.wrt(&dv))
            })
        });
    }
    let w = Tensor::<f32>::randn(&[atoms, 1, 5, 5], &mut rng);
    let bias = Tensor::<f32>::randn(&[atoms], &mut rng);
    g.bench_function(BenchmarkId::new("conv2d_forward_backward", label), |b| {
        b.iter(|| {
            let tape = Tape::<f32>::new();
            let (wv, bv) = (tape.leaf(w.clone()), tape.leaf(bias.clone()));
            let y = tape.constant(x.clone()).conv2d(&wv, Some(&bv), Conv2dParams::new());
            let grads = tape.backward_with(&y, Some(cot.clone()), BackwardOptions::default()).unwrap();
            black_box((grads.wrt(&wv), grads.wrt(&bv)))
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let mut stats = Vec::new();
    lars(c, &mut stats);
    csf_vs_conv(c, &mut stats);
    if let Some(path) = std::env::var_os("LARS_STATS") {
        let mut s = format!("{{\"threads\": {}, ", sparsegrad_bench::threads());
        let _ = write!(s, "{}}}", stats.join(", "));
        std::fs::write(&path, s + "\n").expect("LARS_STATS: cannot write the file");
    }
}

criterion_group!(lars_benches, benches);
criterion_main!(lars_benches);
