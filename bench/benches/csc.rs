//! The CSC layer of SDNet on the workload of `../shared/peers/fista_csc.py`: x `[64, 3, 32, 32]`
//! f32 (standard normal), 64 unit-norm atoms `3×3` over 3 channels, padding 1, λ = 0.1, step
//! 1/L, signed soft-threshold, Beck–Teboulle momentum, T = 2 and 10; "forward" records the
//! iterations with no gradient, "fwd_bwd" is the forward and the backward of the loss
//! `½‖A(z_T) − x‖² + λ‖z_T‖₁` with respect to W and x (through the unrolled iterations), as
//! the peer times it. `implicit_fwd_bwd` is the same loss with the implicit gradient at λ = 0.5
//! (where the solution is sparse enough for it: see bench/README.md), T = 200 FISTA steps and
//! conjugate gradients to a relative residual of 1e-4.
//!
//! Groups: `csc_t{threads}`.

use autograd::Tape;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use engine::{Conv2dParams, Rng, Tensor};
use sparse::csc::{csc, transpose_params, unit_atoms, Csc, CscConfig, Gradient, Implicit};
use sparse::fista::FistaConfig;
use sparsegrad_bench::{group_name, maybe_in_pool};

fn loss_step(x: &Tensor<f32>, w: &Tensor<f32>, l: f64, cfg: &CscConfig, backward: bool) -> f64 {
    let tape = Tape::new();
    let (xv, wv) = if backward {
        (tape.leaf(x.clone()), tape.leaf(w.clone()))
    } else {
        (tape.constant(x.clone()), tape.constant(w.clone()))
    };
    let (z, _) = csc(&xv, &wv, None, l, cfg).expect("csc");
    if !backward {
        return z.value().storage()[0] as f64;
    }
    let az = z.conv_transpose2d(&wv, None, transpose_params(cfg.conv, [32, 32], [3, 3]));
    let loss = az.sub(&xv).square().sum_all().mul_scalar(0.5).add(&z.abs().sum_all().mul_scalar(cfg.fista.lambda));
    let g = tape.backward(&loss).expect("backward");
    g.wrt(&wv).storage()[0] as f64
}

fn bench_csc(c: &mut Criterion) {
    let mut g = c.benchmark_group(group_name("csc"));
    g.sample_size(10);
    let mut rng = Rng::new(0);
    let conv = Conv2dParams::new().padding(1);
    let x = Tensor::<f32>::randn(&[64, 3, 32, 32], &mut rng);
    let mut w = unit_atoms(&Tensor::<f32>::randn(&[64, 3, 3, 3], &mut rng));
    let l = Csc::new().refresh(&mut w, conv, [32, 32]).expect("L");
    for t in [2, 10] {
        let cfg = CscConfig { fista: FistaConfig::new(0.1, t), conv, gradient: Gradient::Unrolled };
        g.bench_function(BenchmarkId::new("forward", format!("T{t}")), |b| {
            b.iter(|| maybe_in_pool(|| loss_step(&x, &w, l, &cfg, false)))
        });
        g.bench_function(BenchmarkId::new("fwd_bwd", format!("T{t}")), |b| {
            b.iter(|| maybe_in_pool(|| loss_step(&x, &w, l, &cfg, true)))
        });
    }
    let imp = CscConfig {
        fista: FistaConfig::new(0.5, 200),
        conv,
        gradient: Gradient::Implicit(Implicit { cg_tol: 1e-4, cg_max_iter: 500, polish: false }),
    };
    g.bench_function(BenchmarkId::new("implicit_fwd_bwd", "T200_lambda0.5"), |b| {
        b.iter(|| maybe_in_pool(|| loss_step(&x, &w, l, &imp, true)))
    });
    g.finish();
}

criterion_group!(benches, bench_csc);
criterion_main!(benches);
