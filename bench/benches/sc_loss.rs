//! The spatial-contrasting loss (MATH.md §5), the workload of `../shared/peers/sc_loss.py`
//! (PyTorch eager, JAX jit): anchors `a ~ N(0, 1/d)` and positives `p = a + ½·N(0, 1/d)`,
//! `[N, d]` f32 with N = 128 and 512, d = 256; the squared distance; the value alone (`fwd`)
//! and the value with both gradients (`fwd_bwd`). The peers compute the one-sided loss
//! (`cross_entropy(−dist, arange(N))`); the symmetric one (the paper's, two softmaxes, the
//! same three GEMMs) is measured beside it.
//!
//! Functions: `fused_*` is `sparse::scl::sc_loss` (one op, analytic rule), `composed_*` is
//! `sc_loss_composed` (square, sum, matmul, log_softmax, diagonal, mean on the tape).
//! `fwd` runs on constants (no rule is kept, like `torch.no_grad`), `fwd_bwd` on leaves, then
//! `backward`. Each `*_in_pool` variant runs the same calls from a thread of a rayon pool
//! (`pool.install`), where the rule's `rayon::join`s start without waking the pool from
//! outside. Run with `RAYON_NUM_THREADS=1` and `=2`; groups are `sc_loss_f32_t{threads}`.

/// As in the `sparsegrad` binary: freed large buffers are kept for the next iteration instead
/// of being faulted in again (`engine::alloc`); `SPARSEGRAD_ALLOC_CACHE_MB=0` measures
/// with glibc alone.
#[global_allocator]
static ALLOC: engine::alloc::CachingAlloc = engine::alloc::CachingAlloc::new();

use std::time::Instant;

use autograd::Tape;
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

/// One evaluation: the loss (and with `grad`, both gradients, returned to keep them alive).
fn eval(fused: bool, grad: bool, a: &Tensor<f32>, p: &Tensor<f32>, cfg: ScConfig) -> f64 {
    let tape = Tape::new();
    let (va, vp) = if grad {
        (tape.leaf(a.clone()), tape.leaf(p.clone()))
    } else {
        (tape.constant(a.clone()), tape.constant(p.clone()))
    };
    let loss = if fused { sc_loss(&va, &vp, cfg) } else { sc_loss_composed(&va, &vp, cfg) };
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
            // Fused and composed agree (f32 rounding only) before anything is timed.
            let (f, c) = (eval(true, true, &a, &p, cfg), eval(false, true, &a, &p, cfg));
            assert!((f - c).abs() <= 1e-5 * c.abs(), "{}: fused {f} vs composed {c}", cfg.describe());
            for (fused, which) in [(true, "fused"), (false, "composed")] {
                for (grad, mode) in [(false, "fwd"), (true, "fwd_bwd")] {
                    let name = format!("{which}_{mode}{side}");
                    g.bench_function(BenchmarkId::new(name.as_str(), n), |b| b.iter(|| eval(fused, grad, &a, &p, cfg)));
                    if fused {
                        g.bench_function(BenchmarkId::new(format!("{name}_in_pool"), n), |b| {
                            b.iter_custom(|iters| {
                                pool.install(|| {
                                    let t0 = Instant::now();
                                    for _ in 0..iters {
                                        black_box(eval(fused, grad, &a, &p, cfg));
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
