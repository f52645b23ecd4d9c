//! The spatial-contrasting loss (docs/math.md §5), the workload of `../shared/peers/sc_loss.py`
//! (PyTorch eager, JAX jit): anchors `a ~ N(0, 1/d)` and positives `p = a + ½·N(0, 1/d)`,
//! `[N, d]` f32 with N = 128 and 512, d = 256; the squared distance; the value alone (`fwd`)
//! and the value with both gradients (`fwd_bwd`). The peers compute the one-sided loss
//! (`cross_entropy(−dist, arange(N))`); the symmetric one (the paper's, two softmaxes, the
//! same three GEMMs) is measured beside it.
//!
//! Functions: `fused_*` is `sparse::scl::sc_loss` (one op, analytic rule), `composed_*` is
//! `sc_loss_composed` (square, sum, matmul, log_softmax, diagonal, mean on the tape: the
//! distances rewritten as `‖a‖² + ‖p‖² − 2·a pᵀ`, as the peers write them, so it runs the same
//! three GEMMs as the fused rule), `literal_*` is docs/math.md's formula composed as it is written:
//! `d_ij = Σ_k (a_ik − p_jk)²` through a broadcast `[N, N, d]` difference, then the same
//! log-softmax (one-sided, squared, N = 128 only).
//! `fwd` runs on constants (no rule is kept, like `torch.no_grad`), `fwd_bwd` on leaves, then
//! `backward`. Each `*_in_pool` variant runs the same calls from a thread of a rayon pool
//! (`pool.install`), where the rule's `rayon::join`s start without waking the pool from
//! outside. Run with `RAYON_NUM_THREADS=1` and `=2`; groups are `sc_loss_f32_t{threads}`.

use std::time::Instant;

use autograd::{Tape, Var};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use engine::{Rng, Tensor};
use sparse::scl::{sc_loss, sc_loss_composed, ScConfig};
use sparsegrad_bench::group_name;

/// The peers' features (`feats` in sc_loss.py, same distribution, not the same draws).
fn features(n: usize, d: usize) -> (Tensor<f32>, Tensor<f32>) {
    let mut rng = Rng::new(0);
    let s = 1.0 / (d as f64).sqrt();
    let a = Tensor::<f32>::randn(&[n, d], &mut rng).mul_scalar(s);
    let p = a.add(&Tensor::<f32>::randn(&[n, d], &mut rng).mul_scalar(0.5 * s));
    (a, p)
}

/// The three versions of the loss that are timed.
#[derive(Clone, Copy, PartialEq)]
enum Version {
    Fused,
    Composed,
    Literal,
}

/// The one-sided squared-distance loss composed from docs/math.md §5 as written: the `[N, N, d]`
/// differences `a_i − p_j` by broadcasting, squared and summed over `d`.
fn sc_loss_literal<'t>(a: &Var<'t, f32>, p: &Var<'t, f32>) -> Var<'t, f32> {
    let (n, d) = (a.shape()[0], a.shape()[1]);
    let diff = a.reshape(&[n, 1, d]).sub(&p.reshape(&[1, n, d]));
    let dist = diff.square().sum(&[2], false);
    dist.neg().log_softmax(1).diagonal().mean_all().neg()
}

/// One evaluation: the loss (and with `grad`, both gradients, returned to keep them alive).
fn eval(version: Version, grad: bool, a: &Tensor<f32>, p: &Tensor<f32>, cfg: ScConfig) -> f64 {
    let tape = Tape::new();
    let (va, vp) = if grad {
        (tape.leaf(a.clone()), tape.leaf(p.clone()))
    } else {
        (tape.constant(a.clone()), tape.constant(p.clone()))
    };
    let loss = match version {
        Version::Fused => sc_loss(&va, &vp, cfg),
        Version::Composed => sc_loss_composed(&va, &vp, cfg),
        Version::Literal => sc_loss_literal(&va, &vp),
    };
    if grad {
        let g = tape.backward(&loss).expect("sc_loss backward");
        black_box((g.wrt(&va), g.wrt(&vp)));
    }
    loss.item()
}

fn sc_loss_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group(group_name("sc_loss_f32"));
    let pool = rayon::ThreadPoolBuilder::new().build().expect("a rayon pool");
    for n in [128usize, 512] {
        let (a, p) = features(n, 256);
        g.sample_size(if n == 128 { 100 } else { 30 });
        for (cfg, side) in [(ScConfig::new().one_sided(), ""), (ScConfig::new(), "_sym")] {
            let mut versions = vec![(Version::Fused, "fused"), (Version::Composed, "composed")];
            if side.is_empty() && n == 128 {
                // At N = 512 the [N, N, d] differences are 256 MiB each, and no one would.
                versions.push((Version::Literal, "literal"));
            }
            // All versions agree (f32 rounding only) before anything is timed.
            let f = eval(Version::Fused, true, &a, &p, cfg);
            for &(version, which) in &versions[1..] {
                let c = eval(version, true, &a, &p, cfg);
                assert!((f - c).abs() <= 1e-5 * c.abs(), "{}: fused {f} vs {which} {c}", cfg.describe());
            }
            for &(version, which) in &versions {
                for (grad, mode) in [(false, "fwd"), (true, "fwd_bwd")] {
                    let name = format!("{which}_{mode}{side}");
                    g.bench_function(BenchmarkId::new(name.as_str(), n), |b| {
                        b.iter(|| eval(version, grad, &a, &p, cfg))
                    });
                    if version == Version::Fused {
                        g.bench_function(BenchmarkId::new(format!("{name}_in_pool"), n), |b| {
                            b.iter_custom(|iters| {
                                pool.install(|| {
                                    let t0 = Instant::now();
                                    for _ in 0..iters {
                                        black_box(eval(version, grad, &a, &p, cfg));
                                    }
                                    t0.elapsed()
                                })
                            })
                        });
                    }
                }
            }
        }
    }
    g.finish();
}

criterion_group!(benches, sc_loss_bench);
criterion_main!(benches);
