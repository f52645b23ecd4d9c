//! Times `lars_en` on the workload of `peers/lars.py`: m = 800, k = 500, N = 256 unit-norm
//! signals `x = D·a0 + 0.05·e/√m` with 20-sparse Gaussian `a0`, for the Gaussian and the
//! correlated dictionary (rank-20 common part + 0.5·noise, unit-norm atoms),
//! λ1 = 0.1·mean_i max_j |d_jᵀx_i|, λ2 ∈ {0, 0.01}, in f64 and f32.
//!
//! Prints, per case, milliseconds per signal for the whole call (GEMMs for G = DᵀD + λ2·I
//! and C = X·D included, as `spams.lasso` computes both too), for the path alone
//! (`lars_en_gram` with G and C given), and the mean active-set size, so the work can be
//! compared with SPAMS at the same |Λ|, and the worst violation of the KKT conditions over
//! the batch (evaluated in f64 against the f64 problem). Median of `REPS` runs (default 7, or
//! the first argument).
//!
//! `cargo run --release -p sparsegrad-sparse --features timing --example lars_timing [reps]`
//! (`RAYON_NUM_THREADS=1` for one thread).

use std::time::Instant;

use engine::{Element, Tensor};
use sparsegrad_sparse::{lars_en, lars_en_gram, LarsConfig};

mod common;
use common::{problems, K, M, N, S};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Worst KKT violation of docs/math.md §1 over the batch: with `c = (X − A·Dᵀ)·D − λ2·A`,
/// `|c_nj − λ1·sign(a_nj)|` where `a_nj ≠ 0`, `max(|c_nj| − λ1, 0)` elsewhere.
fn kkt(d: &Tensor<f64>, x: &Tensor<f64>, codes: &Tensor<f64>, cfg: &LarsConfig) -> f64 {
    let r = x.to_vec().iter().zip(codes.matmul(&d.t()).to_vec()).map(|(a, b)| a - b).collect::<Vec<_>>();
    let c = Tensor::from_vec(r, x.shape()).matmul(d).to_vec();
    let a = codes.to_vec();
    c.iter().zip(&a).fold(0.0f64, |worst, (&cj, &aj)| {
        let cj = cj - cfg.lambda2 * aj;
        let v = if aj != 0.0 { (cj - cfg.lambda1 * aj.signum()).abs() } else { (cj.abs() - cfg.lambda1).max(0.0) };
        worst.max(v)
    })
}

fn run<T: Element>(d64: &Tensor<f64>, x64: &Tensor<f64>, cfg: &LarsConfig, reps: usize) -> (f64, f64, f64, f64, f64) {
    let (d, x) = (d64.cast::<T>(), x64.cast::<T>());
    let mut g = d.t().matmul(&d).to_vec();
    for i in 0..K {
        g[i * K + i] += T::of(cfg.lambda2);
        for j in 0..i {
            g[j * K + i] = g[i * K + j];
        }
    }
    let gram = Tensor::from_vec(g, &[K, K]);
    let corr = x.matmul(&d);
    let _ = lars_en(&d, &x, cfg).unwrap(); // warm-up
    let mut whole = Vec::new();
    let mut path = Vec::new();
    let mut active = 0.0;
    let mut steps = 0.0;
    let mut worst = 0.0;
    for _ in 0..reps {
        let t = Instant::now();
        let sol = lars_en(&d, &x, cfg).unwrap();
        whole.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let _ = lars_en_gram(&gram, &corr, cfg).unwrap();
        path.push(t.elapsed().as_secs_f64());
        active = sol.paths.iter().map(|p| p.active.len()).sum::<usize>() as f64 / N as f64;
        steps = sol.paths.iter().map(|p| p.steps).sum::<usize>() as f64 / N as f64;
        worst = kkt(d64, x64, &sol.codes.cast::<f64>(), cfg);
    }
    let ms = |v: Vec<f64>| median(v) * 1e3 / N as f64;
    (ms(whole), ms(path), active, steps, worst)
}

fn main() {
    let reps: usize = std::env::args().nth(1).map(|a| a.parse().expect("reps: a number")).unwrap_or(7);
    println!(
        "lars_en, m = {M}, k = {K}, N = {N}, {S}-sparse signals, {} rayon threads, median of {reps}",
        rayon::current_num_threads()
    );
    println!(
        "{:<11} {:>5} {:>8} {:>4} {:>11} {:>11} {:>9} {:>7} {:>9}",
        "dict", "λ2", "λ1", "type", "ms/signal", "path only", "mean |Λ|", "steps", "max KKT"
    );
    for (kind, d, x, l1) in problems() {
        for l2 in [0.0, 0.01] {
            let cfg = LarsConfig::new(l1, l2);
            for ty in ["f64", "f32"] {
                let (whole, path, active, steps, worst) =
                    if ty == "f64" { run::<f64>(&d, &x, &cfg, reps) } else { run::<f32>(&d, &x, &cfg, reps) };
                println!("{kind:<11} {l2:>5} {l1:>8.5} {ty:>4} {whole:>11.4} {path:>11.4} {active:>9.2} {steps:>7.1} {worst:>9.1e}");
            }
        }
    }
}
