//! Times DCEA in the authors' Poisson denoising configuration on one 256×256 image, the
//! workload of `peers/dcea.py`: tied, 169 filters of 11×11 (unit Frobenius norm, step folded
//! by 200 power iterations on a 512×512 input, L = 5× the estimate), stride 7 with the 49
//! reflect-padded shifts as one batch, T = 15, `x ← ReLU(x + Hᵀ·ELU₄(y − exp(Hx)) − b)`,
//! `b = 0.1`, decoder outputs averaged over the shifts, estimate `Q·exp(mean η̂)`. The image is
//! a smooth random texture in [0, 1] (a 9×9 box filter of uniform noise, rescaled), peak 4,
//! `y ~ Poisson(image/Q)`.
//!
//! Timed, in f32, per image: `fwd` — the forward pass inside `Tape::no_grad` (each iterate
//! released once replaced; `dcea_memory` measures its memory), `fwd_bwd` — forward and backward of the supervised loss
//! `mse(image, Q·exp(η̂))` with respect to H and b, and on request `composite` — the forward
//! of `dcea_forward_composite` (elementary ops only, no fused rules). Median wall time of
//! `reps` runs after one warm-up, for each thread count, the median CPU time of the process
//! per run (steadier on a shared machine) and the peak resident memory after each mode.
//!
//! `cargo run --release -p sparsegrad-sparse --features timing --example dcea_timing -- [reps] [threads,…] [--quick]
//! [--modes=fwd,composite,fwd_bwd]` (defaults 3, `1,2`, `fwd,fwd_bwd`; `--quick`: 20 power
//! iterations instead of 200).

use std::time::Instant;

mod timing;
use timing::median_ms;

use autograd::Tape;
use engine::{Rng, Tensor};
use sparsegrad_sparse::dcea::{
    dcea_forward, dcea_forward_composite, dcea_forward_traced, poisson_estimate, poisson_observation, poisson_scale,
    Dcea, DceaConfig, PowerFold,
};

const SIZE: usize = 256;
const PEAK: f64 = 4.0;

/// A smooth random texture `[1, 1, SIZE, SIZE]` in [0, 1]: 9×9 means of uniform noise.
fn texture(rng: &mut Rng) -> Tensor<f32> {
    let big = SIZE + 8;
    let noise: Vec<f64> = (0..big * big).map(|_| rng.uniform()).collect();
    let mut img = vec![0.0f64; SIZE * SIZE];
    for r in 0..SIZE {
        for c in 0..SIZE {
            let mut s = 0.0;
            for i in 0..9 {
                for j in 0..9 {
                    s += noise[(r + i) * big + c + j];
                }
            }
            img[r * SIZE + c] = s / 81.0;
        }
    }
    let (lo, hi) = img.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    Tensor::from_vec(img.iter().map(|v| ((v - lo) / (hi - lo)) as f32).collect(), &[1, 1, SIZE, SIZE])
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    // --modes=fwd,composite,fwd_bwd (default fwd,fwd_bwd)
    let modes: Vec<String> = args
        .iter()
        .find_map(|a| a.strip_prefix("--modes="))
        .map_or(vec!["fwd".into(), "fwd_bwd".into()], |m| m.split(',').map(String::from).collect());
    let want = |m: &str| modes.iter().any(|x| x == m);
    let pos: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let reps: usize = pos.first().map_or(3, |s| s.parse().expect("reps"));
    let threads: Vec<usize> =
        pos.get(1).map_or(vec![1, 2], |s| s.split(',').map(|t| t.parse().expect("thread count")).collect());

    let mut rng = Rng::new(0);
    let img = texture(&mut rng);
    let q = poisson_scale(&img, PEAK);
    let y = poisson_observation(&img, q, &mut rng);
    let fold = PowerFold { iters: if quick { 20 } else { 200 }, ..PowerFold::default() };
    let cfg = DceaConfig::poisson_denoising(PEAK, true).fold(Some(fold));
    let t0 = Instant::now();
    let model = Dcea::<f32>::new(cfg.clone(), &mut rng).expect("init");
    println!(
        "init (power iteration, {} iterations on 512×512): {:.0} ms, L = {:.3}; Q = {q:.4}, Σy = {}",
        fold.iters,
        t0.elapsed().as_secs_f64() * 1e3,
        model.lipschitz.unwrap(),
        y.to_f64_vec().iter().sum::<f64>()
    );

    {
        // How sparse the codes are (the fraction of nonzero entries after each step).
        let tape = Tape::<f32>::new();
        let out = tape.no_grad(|| dcea_forward_traced(&model.bind(&tape), &tape.constant(y.clone()), &cfg));
        let active = out.stats.expect("traced").active;
        let pct: Vec<String> = active.iter().map(|a| format!("{:.3}", 100.0 * a)).collect();
        println!("codes: nonzero % after each step: {}", pct.join(" "));
    }
    for &t in &threads {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
        pool.install(|| {
            let fwd = || {
                let tape = Tape::<f32>::new();
                tape.no_grad(|| {
                    let p = model.bind(&tape);
                    let out = dcea_forward(&p, &tape.constant(y.clone()), &cfg);
                    poisson_estimate(&out.eta, q).value()
                })
            };
            if want("fwd") {
                let (m, lo, hi, c) = median_ms(reps, || {
                    std::hint::black_box(fwd());
                });
                println!("threads {t}  fwd      {m:9.1} ms (min {lo:.1}, max {hi:.1}; CPU {c:.0} ms)  peak RSS {:.0} MiB", peak_rss_mib());
            }
            if want("composite") {
                let (m, lo, hi, c) = median_ms(reps, || {
                    let tape = Tape::<f32>::new();
                    std::hint::black_box(tape.no_grad(|| {
                        let p = model.bind(&tape);
                        dcea_forward_composite(&p, &tape.constant(y.clone()), &cfg).eta.value()
                    }));
                });
                println!("threads {t}  fwd composite {m:9.1} ms (min {lo:.1}, max {hi:.1}; CPU {c:.0} ms)  peak RSS {:.0} MiB", peak_rss_mib());
            }
            if !want("fwd_bwd") {
                return;
            }
            let mut loss = 0.0;
            let (m, lo, hi, c) = median_ms(reps, || {
                let tape = Tape::<f32>::new();
                let p = model.bind(&tape);
                let out = dcea_forward(&p, &tape.constant(y.clone()), &cfg);
                let l = poisson_estimate(&out.eta, q).sub(&tape.constant(img.clone())).square().mean_all();
                let g = tape.backward(&l).unwrap();
                std::hint::black_box(p.grads(&g));
                loss = l.item();
            });
            println!(
                "threads {t}  fwd_bwd  {m:9.1} ms (min {lo:.1}, max {hi:.1}; CPU {c:.0} ms)  peak RSS {:.0} MiB  loss {loss:.5}",
                peak_rss_mib()
            );
        });
    }
}
