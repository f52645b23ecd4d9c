//! Times the spatial-contrasting loss on the peers' workload (`../shared/peers/sc_loss.py`:
//! `a ~ N(0, 1/d)`, `p = a + ½·N(0, 1/d)`, f32, d = 256), fused and composed, one-sided and
//! symmetric, value alone and value with both gradients, and prints the median and the minimum
//! over single calls (the minimum is what a call costs when nothing else takes the core).
//!
//! `cargo run --release -p sparsegrad-sparse --features timing --example sc_timing -- [N] [calls] [filter]`
//! (default 128, 400; `filter` keeps the rows whose label contains it, e.g. `"fused fwd+bwd"`);
//! the thread count is rayon's (`RAYON_NUM_THREADS`). The calls are made from the main thread,
//! or from a thread of the rayon pool when the environment variable `IN_POOL` is set (the
//! rule's `rayon::join`s then start without waking the pool from outside). Every statistic is
//! per call, as the peers' `ms_median` and `ms_min`.

use std::time::Instant;

use autograd::Tape;
use engine::{Rng, Tensor};
use sparsegrad_sparse::scl::{sc_loss, sc_loss_composed, ScConfig};

fn eval(fused: bool, grad: bool, a: &Tensor<f32>, p: &Tensor<f32>, cfg: ScConfig) -> f64 {
    let tape = Tape::new();
    let (va, vp) = if grad {
        (tape.leaf(a.clone()), tape.leaf(p.clone()))
    } else {
        (tape.constant(a.clone()), tape.constant(p.clone()))
    };
    let loss = if fused { sc_loss(&va, &vp, cfg) } else { sc_loss_composed(&va, &vp, cfg) };
    if grad {
        let g = tape.backward(&loss).expect("backward");
        std::hint::black_box((g.wrt(&va), g.wrt(&vp)));
    }
    loss.item()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: usize| args.get(i).map_or(default, |s| s.parse().expect("a number"));
    let (n, calls, filter) = (num(0, 128), num(1, 400), args.get(2).cloned().unwrap_or_default());
    let d = 256;
    let mut rng = Rng::new(0);
    let s = 1.0 / (d as f64).sqrt();
    let a = Tensor::<f32>::randn(&[n, d], &mut rng).mul_scalar(s);
    let p = a.add(&Tensor::<f32>::randn(&[n, d], &mut rng).mul_scalar(0.5 * s));
    let pool = rayon::ThreadPoolBuilder::new().build().expect("a rayon pool");
    let in_pool = std::env::var_os("IN_POOL").is_some();
    println!(
        "N = {n}, d = {d}, f32, {} rayon thread(s), {calls} calls each from {} (µs)",
        pool.current_num_threads(),
        if in_pool { "a pool thread" } else { "the main thread" }
    );
    println!("{:<40} {:>9} {:>9}", "", "median", "min");
    let run = || {
        for cfg in [ScConfig::new().one_sided(), ScConfig::new()] {
            for fused in [true, false] {
                for grad in [false, true] {
                    let what = format!(
                        "{} {} ({})",
                        if fused { "fused" } else { "composed" },
                        if grad { "fwd+bwd" } else { "fwd" },
                        cfg.describe()
                    );
                    if !what.contains(filter.as_str()) {
                        continue;
                    }
                    let mut t: Vec<f64> = (0..calls)
                        .map(|_| {
                            let t0 = Instant::now();
                            std::hint::black_box(eval(fused, grad, &a, &p, cfg));
                            t0.elapsed().as_secs_f64() * 1e6
                        })
                        .collect();
                    t.sort_by(f64::total_cmp);
                    println!("{what:<40} {:>9.1} {:>9.1}", t[t.len() / 2], t[0]);
                }
            }
        }
    };
    if in_pool {
        pool.install(run)
    } else {
        run()
    }
}
