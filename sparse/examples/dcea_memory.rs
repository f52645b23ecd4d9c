//! Peak resident memory of DCEA's forward on one 256×256 image in the authors' Poisson
//! denoising configuration (the workload of `dcea_timing` and `peers/dcea.py`: tied, 169
//! filters of 11×11, stride 7 with the 49 shifts, T = 15, ELU₄, peak 4), f32, one fresh
//! process per mode:
//!
//! * `infer` — [`denoise`] (an inference tape: nothing recorded, each iterate freed once the
//!   next one is computed), then `Q·`;
//! * `no_grad` — `Tape::no_grad` on a recording tape, as `dcea_timing`'s `fwd`;
//! * `recorded` — the forward recorded for a backward (gradients on; no backward run).
//!
//! The model's initialisation (the power iteration on a 512×512 input) has its own peak, so
//! the peak of the forward alone is measured by resetting the high-water mark after it
//! (`echo 5 > /proc/self/clear_refs`) and reading `VmHWM` from `/proc/self/status` after the
//! forward; the resident memory before the forward (weights, observation, the program) is
//! printed beside it. The output's sum checks that the modes compute the same thing.
//!
//! `cargo run --release -p sparsegrad-sparse --features timing --example dcea_memory -- [infer|no_grad|recorded]
//! [threads] [--quick]` (defaults `infer`, 1 thread; `--quick`: 20 power iterations instead
//! of 200). A plain program: no global allocator is installed (the engine reuses large
//! buffers itself, `engine::recycle`).

use autograd::Tape;
use engine::{Rng, Tensor};
use sparsegrad_sparse::dcea::{
    dcea_forward, denoise, poisson_estimate, poisson_observation, poisson_scale, Dcea, DceaConfig, PowerFold,
};

const SIZE: usize = 256;
const PEAK: f64 = 4.0;

/// The texture of `dcea_timing`: `[1, 1, SIZE, SIZE]` in [0, 1], 9×9 means of uniform noise.
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

/// A field of `/proc/self/status` in MiB.
fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let pos: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let mode = pos.first().map_or("infer", |s| s.as_str());
    let threads: usize = pos.get(1).map_or(1, |s| s.parse().expect("thread count"));
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().expect("thread pool");

    let mut rng = Rng::new(0);
    let img = texture(&mut rng);
    let q = poisson_scale(&img, PEAK);
    let y = poisson_observation(&img, q, &mut rng);
    let fold = PowerFold { iters: if quick { 20 } else { 200 }, ..PowerFold::default() };
    let cfg = DceaConfig::poisson_denoising(PEAK, true).fold(Some(fold));
    let model = Dcea::<f32>::new(cfg.clone(), &mut rng).expect("init");
    let init_peak = status_mib("VmHWM:");

    // Reset the high-water mark to the current resident set (Linux ≥ 4.0).
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = status_mib("VmRSS:");
    let estimate = match mode {
        "infer" => denoise(&model, &y).expect("finite observations").mul_scalar(q),
        "no_grad" => {
            let tape = Tape::<f32>::new();
            tape.no_grad(|| {
                let out = dcea_forward(&model.bind(&tape), &tape.constant(y.clone()), &cfg);
                poisson_estimate(&out.eta, q).value()
            })
        }
        "recorded" => {
            let tape = Tape::<f32>::new();
            let out = dcea_forward(&model.bind(&tape), &tape.constant(y.clone()), &cfg);
            poisson_estimate(&out.eta, q).value()
        }
        other => panic!("mode must be infer, no_grad or recorded, got {other}"),
    };
    let peak = status_mib("VmHWM:");
    let sum: f64 = estimate.to_f64_vec().iter().sum();
    println!(
        "dcea_memory mode {mode} threads {threads}: forward peak RSS {peak:.0} MiB (RSS before the forward \
         {before:.0} MiB; {}) ; init peak {init_peak:.0} MiB; Σ estimate {sum:.6}",
        if reset { "high-water mark reset after init" } else { "could NOT reset the high-water mark" }
    );
}
