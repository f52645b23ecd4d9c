//! Parallel scaling of the tensor `matmul` (f32, n × n): calls on a 1-thread and a 2-thread
//! rayon pool, alternated call by call so that a shared machine's drifts hit both alike.
//! Prints per n the best and median wall time of each pool and the speed-up (1-thread time /
//! 2-thread time, from the best and from the median calls), the median CPU time of the
//! process per call (both threads of the 2-thread pool: equal to the 1-thread figure when no
//! work is duplicated and no thread waits), and checks that both pools give the same bits.
//! `cargo run --profile bench -p sparsegrad-bench --features timing --example gemm_scaling -- [reps] [n ...]`

use std::time::Instant;

use engine::{Rng, Tensor};
use sparsegrad_bench::cpu_ms;

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|x, y| x.partial_cmp(y).unwrap());
    v
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("a number")).collect();
    let reps = args.first().copied().unwrap_or(20);
    let sizes = if args.len() > 1 { args[1..].to_vec() } else { vec![256, 512, 1024] };
    let pools: Vec<rayon::ThreadPool> =
        [1, 2].iter().map(|&t| rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap()).collect();
    println!("{reps} alternating calls per pool; load {}", std::fs::read_to_string("/proc/loadavg").unwrap().trim());
    let mut rng = Rng::new(0);
    for n in sizes {
        let a = Tensor::<f32>::randn(&[n, n], &mut rng);
        let b = Tensor::<f32>::randn(&[n, n], &mut rng);
        let bits: Vec<Vec<f32>> = pools.iter().map(|p| p.install(|| a.matmul(&b).to_vec())).collect();
        assert!(bits[0] == bits[1], "n = {n}: 1 and 2 threads differ");
        let (mut wall, mut cpu) = (vec![vec![]; 2], vec![vec![]; 2]);
        for _ in 0..reps {
            for (i, p) in pools.iter().enumerate() {
                p.install(|| {
                    let (t0, c0) = (Instant::now(), cpu_ms(false));
                    std::hint::black_box(a.matmul(&b));
                    wall[i].push(t0.elapsed().as_secs_f64() * 1e3);
                    cpu[i].push(cpu_ms(false) - c0);
                });
            }
        }
        let flop = 2.0 * (n as f64).powi(3);
        let gf = |ms: f64| flop / ms / 1e6;
        let w: Vec<Vec<f64>> = wall.into_iter().map(sorted).collect();
        let c: Vec<Vec<f64>> = cpu.into_iter().map(sorted).collect();
        let med = |v: &Vec<f64>| v[v.len() / 2];
        println!(
            "n = {n:4}  1 thread: best {:.3} ms ({:.0} GFLOP/s), median {:.3}, cpu {:.3} | 2 threads: best {:.3} ({:.0}), median {:.3}, cpu {:.3} | speed-up best {:.2}, median {:.2}",
            w[0][0],
            gf(w[0][0]),
            med(&w[0]),
            med(&c[0]),
            w[1][0],
            gf(w[1][0]),
            med(&w[1]),
            med(&c[1]),
            w[0][0] / w[1][0],
            med(&w[0]) / med(&w[1])
        );
    }
}
