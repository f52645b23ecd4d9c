//! One-thread f32 GEMM across sizes: the tensor `matmul` (the engine's packed GEMM where the
//! CPU has AVX2/AVX-512) against one raw `matrixmultiply::sgemm` call, for A row-major and
//! for A a transposed view, calls alternated so that drifts of a shared machine hit both.
//! Prints per n the median and best wall time of each and the ratio of medians.
//! `cargo run --profile bench -p sparsegrad-bench --features timing --example gemm_sizes -- [reps] [n ...]`

use std::time::Instant;

use engine::{Rng, Tensor};
use sparsegrad_bench::raw_sgemm;

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("a number")).collect();
    let reps = args.first().copied().unwrap_or(30);
    let sizes = if args.len() > 1 { args[1..].to_vec() } else { vec![128, 192, 256, 384, 512, 768, 1024] };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    println!("{reps} alternating calls, 1 thread; load {}", std::fs::read_to_string("/proc/loadavg").unwrap().trim());
    let mut rng = Rng::new(0);
    for n in sizes {
        let a = Tensor::<f32>::randn(&[n, n], &mut rng);
        let b = Tensor::<f32>::randn(&[n, n], &mut rng);
        let (av, bv) = (a.to_vec(), b.to_vec());
        let mut c = vec![0f32; n * n];
        let at = a.t();
        let mut t = vec![vec![]; 4];
        pool.install(|| {
            for _ in 0..reps {
                let t0 = Instant::now();
                std::hint::black_box(a.matmul(&b));
                t[0].push(t0.elapsed().as_secs_f64() * 1e3);
                let t0 = Instant::now();
                raw_sgemm(n, &av, (n as isize, 1), &bv, &mut c);
                t[1].push(t0.elapsed().as_secs_f64() * 1e3);
                let t0 = Instant::now();
                std::hint::black_box(at.matmul(&b));
                t[2].push(t0.elapsed().as_secs_f64() * 1e3);
                let t0 = Instant::now();
                raw_sgemm(n, &av, (1, n as isize), &bv, &mut c);
                t[3].push(t0.elapsed().as_secs_f64() * 1e3);
            }
        });
        for v in &mut t {
            v.sort_by(|x, y| x.partial_cmp(y).unwrap());
        }
        let med = |v: &Vec<f64>| v[v.len() / 2];
        let gf = |ms: f64| 2.0 * (n as f64).powi(3) / ms / 1e6;
        println!(
            "n = {n:4}  A: tensor {:.3} ms ({:.0} GFLOP/s) raw {:.3} ({:.0}) ratio {:.2} | A = view.t(): tensor {:.3} ({:.0}) raw {:.3} ({:.0}) ratio {:.2}",
            med(&t[0]),
            gf(med(&t[0])),
            med(&t[1]),
            gf(med(&t[1])),
            med(&t[0]) / med(&t[1]),
            med(&t[2]),
            gf(med(&t[2])),
            med(&t[3]),
            gf(med(&t[3])),
            med(&t[2]) / med(&t[3]),
        );
    }
}
