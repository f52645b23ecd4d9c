//! Times `lars_en_compact` (16 paths at a time, one per vector lane) against the per-sample
//! path on one batch of random problems, and prints the paths' statistics (events, joins,
//! leaves and active atoms per sample). The defaults are the CSF layer of `csf-lenet` on a
//! batch of 64 images: 36,864 patches of 25 values, a dictionary of 20 unit-norm atoms,
//! λ1 = 0.1, λ2 = 0.01; `64 500 800` is the SF layer of `sf-lenet` (the lanes are meant for
//! small dictionaries only: `SmallK::Auto` sends that one to the per-sample path).
//!
//! Run: `RAYON_NUM_THREADS=1 cargo run --release -p sparsegrad-bench --features timing --example lars_paths --
//! [SAMPLES] [ATOMS] [DIM] [REPS]`. Prints the milliseconds of each repetition.

use std::time::Instant;

use engine::{Rng, Tensor};
use sparse::lars::{lars_en_compact, lars_en_compact_serial, LarsConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: usize| -> usize {
        args.get(i).map_or(default, |s| {
            s.parse().ok().filter(|&v| v > 0).unwrap_or_else(|| {
                eprintln!("usage: lars_paths [SAMPLES] [ATOMS] [DIM] [REPS] (positive integers), got '{s}'");
                std::process::exit(2)
            })
        })
    };
    let (n, k, m, reps) = (arg(0, 36_864), arg(1, 20), arg(2, 25), arg(3, 5));
    let mut rng = Rng::new(0);
    let d = Tensor::<f32>::randn(&[m, k], &mut rng);
    let norms = d.norm_l2(&[0], true);
    let d = d.div(&norms);
    let x = Tensor::<f32>::randn(&[n, m], &mut rng);
    let cfg = LarsConfig::new(0.1, 0.01);
    let (_, p) = lars_en_compact(&d, &x, &cfg).expect("lars");
    let per = |v: usize| v as f64 / n as f64;
    println!(
        "{n} samples, {k} atoms of {m}: per sample {:.2} events, {:.2} joins, {:.2} leaves, {:.2} active at the end",
        per(p.steps),
        per(p.joins),
        per(p.leaves),
        per((0..p.len()).map(|s| p.active(s).len()).sum())
    );
    for _ in 0..reps {
        let t = Instant::now();
        let _ = lars_en_compact(&d, &x, &cfg).expect("lars");
        let lanes = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let _ = lars_en_compact_serial(&d, &x, &cfg).expect("lars");
        let serial = t.elapsed().as_secs_f64() * 1e3;
        println!("lanes {lanes:.1} ms, per-sample path {serial:.1} ms");
    }
}
