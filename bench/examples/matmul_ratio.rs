//! The matmul target as a paired measurement: tensor-level `matmul` and one raw
//! `matrixmultiply::sgemm` call (one thread, preallocated output) on the same data, alternated
//! call by call so that drifts of a shared machine hit both alike. Prints, per n, the median of
//! the per-pair ratios and its interquartile range.
//! `RAYON_NUM_THREADS=1 cargo run --profile bench -p sparsegrad-bench --features timing --example matmul_ratio -- [pairs]`

use std::time::Instant;

use engine::{Rng, Tensor};
use sparsegrad_bench::raw_sgemm;

fn quartiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    (q(0.25), q(0.5), q(0.75))
}

fn main() {
    let pairs: usize = std::env::args().nth(1).map(|a| a.parse().expect("a number")).unwrap_or(40);
    println!("rayon threads: {}; {pairs} pairs per case; ratio = tensor / raw sgemm", rayon::current_num_threads());
    let mut rng = Rng::new(0);
    for n in [256usize, 512, 1024] {
        let a = Tensor::<f32>::randn(&[n, n], &mut rng);
        let b = Tensor::<f32>::randn(&[n, n], &mut rng);
        let at = a.t();
        let (sa, sb) = (a.as_slice().unwrap(), b.as_slice().unwrap());
        let mut c = vec![0f32; n * n];
        for (label, lhs, strides) in [("a·b", &a, (n as isize, 1)), ("aᵀ·b (view)", &at, (1, n as isize))] {
            let mut ratios = Vec::with_capacity(pairs);
            for i in 0..pairs + 3 {
                let t0 = Instant::now();
                std::hint::black_box(lhs.matmul(&b));
                let t1 = Instant::now();
                raw_sgemm(n, sa, strides, sb, &mut c);
                let t2 = Instant::now();
                if i >= 3 {
                    ratios.push((t1 - t0).as_secs_f64() / (t2 - t1).as_secs_f64());
                }
            }
            let (q1, med, q3) = quartiles(ratios);
            println!("n = {n:4} {label:12} tensor/raw median {med:.3}  (IQR {q1:.3} – {q3:.3})");
        }
    }
}
