//! Runs one piece of the LARS-EN batch on the lars.py workload `reps` times, for profilers
//! (`perf record`, `valgrind --tool=callgrind`) and for timing by CPU time, which other jobs on
//! a shared machine disturb less than wall-clock time.
//!
//! `cargo run --release -p sparsegrad-sparse --features timing --example lars_profile -- PIECE DICT L2 [REPS]`
//! with PIECE one of `whole` (`lars_en`), `path` (`lars_en_gram`, G and C given), `gram`
//! (`G = DᵀD + λ2·I` as `lars_en` builds it: `lars_en` on an empty batch), `backward` (the SF
//! op's rule alone: `backward_with` a random cotangent, D and X leaves, graph retained),
//! DICT `gaussian` or `correlated`, L2 `0` or `0.01`; or `lars_profile csf
//! forward|backward|both [REPS]` for the CSF-LeNet first layer of `bench/benches/lars.rs` (f32).
//!
//! Prints the mean wall time per call and the mean CPU time of the process's threads per call
//! (Linux: the scheduler's `sum_exec_runtime` from `/proc/self/task/*/schedstat`, in ns; 0
//! where it is not available). With one thread the CPU time stays close to the unloaded wall
//! time, though cache traffic from other jobs still inflates it.

use std::time::Instant;

use autograd::{BackwardOptions, Tape};
use engine::{Rng, Tensor};
use sparsegrad_sparse::sf::{csf, sf, Patches};
use sparsegrad_sparse::{lars_en, lars_en_gram, LarsConfig};

mod common;
use common::{problems, K, N};

/// CPU time of all threads of this process so far, in seconds (0 if unknown).
fn cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0.0 };
    let ns: u64 = tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    ns as f64 * 1e-9
}

/// `lars_profile csf forward|backward|both [REPS]`: the CSF op on the CSF-LeNet first layer
/// (`common::csf_problem`, f32): its forward (patches and codes), its rule alone (graph
/// retained, `∂D` only: the images are a constant), or both on a fresh tape.
fn csf_main(piece: &str, reps: usize) {
    let (x, d, l1, l2) = common::csf_problem();
    let cfg = LarsConfig::new(l1, l2);
    let geo = Patches::new(5);
    let tape = Tape::<f32>::new();
    let dv = tape.leaf(d.clone());
    let (y, stats) = csf(&dv, &tape.constant(x.clone()), geo, &cfg).unwrap();
    let cot = Tensor::<f32>::randn(y.value().shape(), &mut Rng::new(12));
    let (t, cpu0) = (Instant::now(), cpu_seconds());
    for _ in 0..reps {
        match piece {
            "forward" => {
                let t = Tape::<f32>::new();
                drop(csf(&t.leaf(d.clone()), &t.constant(x.clone()), geo, &cfg).unwrap());
            }
            "backward" => {
                tape.zero_grad();
                drop(tape.backward_with(&y, Some(cot.clone()), BackwardOptions { retain_graph: true }).unwrap());
            }
            "both" => {
                let t = Tape::<f32>::new();
                let (y, _) = csf(&t.leaf(d.clone()), &t.constant(x.clone()), geo, &cfg).unwrap();
                drop(t.backward_with(&y, Some(cot.clone()), BackwardOptions::default()).unwrap());
            }
            _ => panic!("lars_profile csf forward|backward|both [REPS]"),
        }
    }
    let per = t.elapsed().as_secs_f64() / reps as f64;
    let cpu = (cpu_seconds() - cpu0) / reps as f64;
    println!(
        "csf {piece} (mean |Λ| {:.2}): wall {:.3} ms per call, CPU {:.3} ms per call, {} threads",
        stats.mean_active(),
        per * 1e3,
        cpu * 1e3,
        rayon::current_num_threads()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("csf") {
        let piece = args.get(1).map(String::as_str).unwrap_or("both");
        return csf_main(piece, args.get(2).map(|r| r.parse().expect("REPS: a number")).unwrap_or(10));
    }
    let usage = "lars_profile whole|path|gram|backward gaussian|correlated L2 [REPS]";
    let piece = args.first().expect(usage).clone();
    let kind = args.get(1).expect(usage).clone();
    let l2: f64 = args.get(2).expect(usage).parse().expect(usage);
    let reps: usize = args.get(3).map(|r| r.parse().expect(usage)).unwrap_or(20);
    let (_, d, x, l1) = problems().into_iter().find(|p| p.0 == kind).expect("gaussian or correlated");
    let cfg = LarsConfig::new(l1, l2);
    let mut g = d.t().matmul(&d).to_vec();
    for i in 0..K {
        g[i * K + i] += l2;
        for j in 0..i {
            g[j * K + i] = g[i * K + j];
        }
    }
    let (gram, corr) = (Tensor::from_vec(g, &[K, K]), x.matmul(&d));
    // The Gram matrix alone: `lars_en` on an empty batch computes G (and the empty C) only.
    let empty = Tensor::<f64>::zeros(&[0, d.dim(0)]);
    let tape = Tape::<f64>::new();
    let (dv, xv) = (tape.leaf(d.clone()), tape.leaf(x.clone()));
    let (codes, _) = sf(&dv, &xv, &cfg).unwrap();
    let cot = Tensor::<f64>::randn(codes.value().shape(), &mut Rng::new(7));
    let (t, cpu0) = (Instant::now(), cpu_seconds());
    for _ in 0..reps {
        match piece.as_str() {
            "whole" => drop(lars_en(&d, &x, &cfg).unwrap()),
            "path" => drop(lars_en_gram(&gram, &corr, &cfg).unwrap()),
            "gram" => drop(lars_en(&d, &empty, &cfg).unwrap()),
            "backward" => {
                tape.zero_grad();
                let keep = BackwardOptions { retain_graph: true };
                drop(tape.backward_with(&codes, Some(cot.clone()), keep).unwrap())
            }
            _ => panic!("{usage}"),
        }
    }
    let per = t.elapsed().as_secs_f64() / reps as f64;
    let cpu = (cpu_seconds() - cpu0) / reps as f64;
    println!(
        "{piece} {kind} λ2={l2}: wall {:.3} ms per call ({:.4} ms/signal), CPU {:.3} ms per call ({:.4} ms/signal), {} threads",
        per * 1e3,
        per * 1e3 / N as f64,
        cpu * 1e3,
        cpu * 1e3 / N as f64,
        rayon::current_num_threads()
    );
}
