//! Single calls of the element-wise and reduction kernels of `benches/elementwise.rs` and
//! `benches/reduce.rs` at 1M `f32`, timed one call at a time from a plain program's main
//! thread, the way `bench/peers/kernel_calls.py` times torch. `bench/kernel_rounds.sh`
//! alternates the two so that both sides see the same moments of a noisy machine.
//!
//! Run: `RAYON_NUM_THREADS=t kernel_calls [SECONDS_PER_CASE] [CASE,CASE…]`. Prints one JSON line:
//! per case the median and mean µs per call over calls made for about SECONDS_PER_CASE
//! (default 0.3) after 20 warm-up calls.

use engine::{Rng, Tensor};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn time(budget: Duration, mut f: impl FnMut()) -> (f64, f64, usize) {
    for _ in 0..20 {
        f();
    }
    let mut ts = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget || ts.len() < 20 {
        let t = Instant::now();
        f();
        ts.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let mean = ts.iter().sum::<f64>() / ts.len() as f64;
    ts.sort_by(|a, b| a.total_cmp(b));
    (ts[ts.len() / 2], mean, ts.len())
}

fn main() {
    let secs: f64 = match std::env::args().nth(1).map(|s| s.parse::<f64>()) {
        None => 0.3,
        Some(Ok(x)) if x.is_finite() && x > 0.0 => x,
        Some(_) => {
            eprintln!("usage: kernel_calls [SECONDS_PER_CASE > 0] [CASE,CASE…]");
            std::process::exit(2);
        }
    };
    let budget = Duration::from_secs_f64(secs);
    let mut rng = Rng::new(1);
    let (rows, cols) = (1024, 1024);
    let x = Tensor::<f32>::randn(&[rows, cols], &mut rng);
    let y = Tensor::<f32>::randn(&[rows, cols], &mut rng);
    let row = Tensor::<f32>::randn(&[cols], &mut rng);
    let col = Tensor::<f32>::randn(&[rows, 1], &mut rng);
    let xa = x.abs();
    type Case<'a> = (&'a str, Box<dyn Fn() + 'a>);
    let cases: Vec<Case> = vec![
        ("add", Box::new(|| drop(black_box(x.add(&y))))),
        ("add_bcast_row", Box::new(|| drop(black_box(x.add(&row))))),
        ("add_bcast_col", Box::new(|| drop(black_box(x.add(&col))))),
        ("relu", Box::new(|| drop(black_box(x.relu())))),
        ("sigmoid", Box::new(|| drop(black_box(x.sigmoid())))),
        ("exp", Box::new(|| drop(black_box(x.exp())))),
        ("log", Box::new(|| drop(black_box(xa.log())))),
        ("sum_all", Box::new(|| drop(black_box(x.sum_all())))),
        ("sum_last_axis", Box::new(|| drop(black_box(x.sum(&[1], false))))),
        ("softmax_last_axis", Box::new(|| drop(black_box(x.softmax(1))))),
    ];
    let only: Option<Vec<String>> = std::env::args().nth(2).map(|s| s.split(',').map(String::from).collect());
    if let Some(unknown) = only.iter().flatten().find(|c| !cases.iter().any(|(n, _)| n == c)) {
        let names: Vec<&str> = cases.iter().map(|(n, _)| *n).collect();
        eprintln!("kernel_calls: unknown case {unknown:?}; cases: {}", names.join(","));
        std::process::exit(2);
    }
    let mut out = Vec::new();
    for (name, f) in &cases {
        if only.as_ref().is_some_and(|o| !o.iter().any(|c| c == name)) {
            continue;
        }
        let (med, mean, n) = time(budget, f);
        out.push(format!("{{\"case\": \"{name}\", \"us_median\": {med:.2}, \"us_mean\": {mean:.2}, \"calls\": {n}}}"));
    }
    println!(
        "{{\"lib\": \"sparsegrad\", \"threads\": {}, \"results\": [{}]}}",
        rayon::current_num_threads(),
        out.join(", ")
    );
}
