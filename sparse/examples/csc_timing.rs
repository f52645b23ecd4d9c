//! Times the unrolled CSC layer on SDNet's CIFAR stem workload (`csc_memory`'s: batch 64,
//! 3 → 64 channels, 3×3 atoms of unit norm, padding 1, 32×32, f32, λ = 0.1): the forward
//! recorded on a tape (as in training; T iterates kept) and forward + backward of
//! `½‖A(z_T) − x‖² + λ‖z_T‖₁` with respect to x and W. Median wall time per call over `reps`
//! calls after a warm-up, with the median CPU time of the process per call.
//!
//! `cargo run --release -p sparsegrad-sparse --features timing --example csc_timing -- [T] [reps] [threads]
//! [--no-reuse]` (defaults 20, 5, rayon's default). The calls are made from the main thread,
//! as a user's program makes them; `threads` sizes rayon's global pool (`build_global`).
//!
//! A plain program: no global allocator, no environment variables. `--no-reuse` turns the
//! engine's buffer reuse off (`engine::recycle::set_budget(0)`), so every large output is
//! fresh pages from glibc, as before the engine kept them.

use autograd::Tape;
use engine::{Conv2dParams, Rng, Tensor};
use sparsegrad_sparse::csc::{csc, transpose_params, unit_atoms, Csc, CscConfig, Gradient};
use sparsegrad_sparse::fista::FistaConfig;

mod timing;
use timing::median_ms;

fn call(x: &Tensor<f32>, w: &Tensor<f32>, l: f64, cfg: &CscConfig, backward: bool) {
    let tape = Tape::new();
    let (xv, wv) = (tape.leaf(x.clone()), tape.leaf(w.clone()));
    let (z, _) = csc(&xv, &wv, None, l, cfg).expect("forward");
    if backward {
        let az = z.conv_transpose2d(&wv, None, transpose_params(cfg.conv, [32, 32], [3, 3]));
        let loss = az.sub(&xv).square().sum_all().mul_scalar(0.5).add(&z.abs().sum_all().mul_scalar(cfg.fista.lambda));
        let g = tape.backward(&loss).expect("backward");
        std::hint::black_box(g.wrt(&wv));
    } else {
        std::hint::black_box(z.value());
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let reuse = !args.iter().any(|a| a == "--no-reuse");
    args.retain(|a| a != "--no-reuse");
    if !reuse {
        engine::recycle::set_budget(0);
    }
    let iters: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(20);
    let reps: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    if let Some(t) = args.get(2) {
        let t: usize = t.parse().expect("thread count");
        rayon::ThreadPoolBuilder::new().num_threads(t).build_global().expect("global pool");
    }
    let mut rng = Rng::new(0);
    let conv = Conv2dParams::new().padding(1);
    let x = Tensor::<f32>::randn(&[64, 3, 32, 32], &mut rng);
    let mut w = unit_atoms(&Tensor::<f32>::randn(&[64, 3, 3, 3], &mut rng));
    let l = Csc::new().refresh(&mut w, conv, [32, 32]).expect("L");
    let cfg = CscConfig { fista: FistaConfig::new(0.1, iters), conv, gradient: Gradient::Unrolled };
    println!("CSC unrolled, T = {iters}, engine buffer reuse {}", if reuse { "on" } else { "off" });
    let t = rayon::current_num_threads();
    for (name, backward) in [("forward", false), ("fwd_bwd", true)] {
        let (med, min, max, cpu) = median_ms(reps, || call(&x, &w, l, &cfg, backward));
        println!("threads {t}  {name:8} {med:8.1} ms (min {min:.1}, max {max:.1}; CPU {cpu:.0} ms)");
    }
}
