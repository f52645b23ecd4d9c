//! The workload of `../shared/peers/lars.py`, shared by the LARS examples: m = 800, k = 500,
//! N = 256 unit-norm signals `x = D·a0 + 0.05·e/√m` with 20-sparse Gaussian `a0`, over the
//! Gaussian or the correlated dictionary (rank-20 common part + 0.5·noise, unit-norm atoms).
//! `bench::lars_workload` generates the same data from the same seed.

use engine::{Rng, Tensor};

pub const M: usize = 800;
pub const K: usize = 500;
pub const N: usize = 256;
pub const S: usize = 20;

fn unit_columns(d: &mut [f64], m: usize, k: usize) {
    for j in 0..k {
        let n = (0..m).map(|i| d[i * k + j].powi(2)).sum::<f64>().sqrt();
        (0..m).for_each(|i| d[i * k + j] /= n);
    }
}

pub fn dictionary(kind: &str, rng: &mut Rng) -> Tensor<f64> {
    let mut d = vec![0.0; M * K];
    if kind == "gaussian" {
        d.iter_mut().for_each(|v| *v = rng.normal());
    } else {
        let a = Tensor::<f64>::randn(&[M, 20], rng);
        let b = Tensor::<f64>::randn(&[20, K], rng);
        let common = a.matmul(&b).to_vec();
        for (v, c) in d.iter_mut().zip(common) {
            *v = c / 20f64.sqrt() + 0.5 * rng.normal();
        }
    }
    unit_columns(&mut d, M, K);
    Tensor::from_vec(d, &[M, K])
}

pub fn signals(d: &Tensor<f64>, rng: &mut Rng) -> Tensor<f64> {
    let dv = d.to_vec();
    let mut x = vec![0.0; N * M];
    for row in x.chunks_mut(M) {
        let mut idx: Vec<usize> = (0..K).collect();
        rng.shuffle(&mut idx);
        let coef: Vec<(usize, f64)> = idx[..S].iter().map(|&j| (j, rng.normal())).collect();
        for (i, v) in row.iter_mut().enumerate() {
            *v = coef.iter().map(|&(j, c)| dv[i * K + j] * c).sum::<f64>() + 0.05 * rng.normal() / (M as f64).sqrt();
        }
        let n = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        row.iter_mut().for_each(|v| *v /= n);
    }
    Tensor::from_vec(x, &[N, M])
}

/// The two problems in order (Gaussian, then correlated, from one `Rng::new(0)` stream):
/// `(kind, D, X, λ1)` with λ1 = 0.1·mean_i max_j |d_jᵀx_i|.
pub fn problems() -> Vec<(&'static str, Tensor<f64>, Tensor<f64>, f64)> {
    let mut rng = Rng::new(0);
    ["gaussian", "correlated"]
        .into_iter()
        .map(|kind| {
            let d = dictionary(kind, &mut rng);
            let x = signals(&d, &mut rng);
            let c = x.matmul(&d).to_vec();
            let l1 = 0.1 * c.chunks(K).map(|r| r.iter().fold(0.0f64, |m, v| m.max(v.abs()))).sum::<f64>() / N as f64;
            (kind, d, x, l1)
        })
        .collect()
}

/// The CSF-LeNet first layer of `bench/benches/lars.rs` (the same data from the same seed):
/// N(0, 1) images `[64, 1, 28, 28]` in f32, 20 unit-norm random atoms of 5×5 (`[25, 20]`),
/// λ1 = 0.25·mean over the patches of max_j |d_jᵀp|, λ2 = 0.01: `(x, D, λ1, λ2)`.
#[allow(dead_code)] // not every example codes patches
pub fn csf_problem() -> (Tensor<f32>, Tensor<f32>, f64, f64) {
    let (batch, m, k) = (64, 25, 20);
    let mut rng = Rng::new(11);
    let x = Tensor::<f32>::randn(&[batch, 1, 28, 28], &mut rng);
    let mut d = Tensor::<f64>::randn(&[m, k], &mut rng).to_vec();
    unit_columns(&mut d, m, k);
    let d = Tensor::from_vec(d, &[m, k]).cast::<f32>();
    let patches = x.im2col([5, 5], engine::Conv2dParams::new()).transpose(1, 2).contiguous().reshape(&[batch * 576, m]);
    let corr = patches.matmul(&d).to_vec();
    let l1 = 0.25 * corr.chunks(k).map(|r| r.iter().fold(0.0f64, |a, &v| a.max((v as f64).abs()))).sum::<f64>()
        / (batch * 576) as f64;
    (x, d, l1, 0.01)
}
