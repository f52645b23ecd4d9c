//! Times the CSF op against the `conv2d` + bias layer it replaces, in f32 (as training runs),
//! on the two LeNet geometries of docs/math.md §1, interleaved in one process so that both see the
//! same machine load:
//!
//! * `conv1`: batch 64, images `[64, 1, 28, 28]` N(0, 1), 20 unit-norm atoms of 1·5·5 = 25
//!   rows, stride 1, no padding: 36,864 patches, output `[64, 20, 24, 24]`;
//! * `conv2`: batch 64, maps `[64, 20, 12, 12]` (ReLU of N(0, 1): non-negative and half zero,
//!   like the codes of a first CSF layer), 50 unit-norm atoms of 20·5·5 = 500 rows: 4,096
//!   patches, output `[64, 50, 8, 8]`.
//!
//! λ2 = 0.01 and λ1 = 0.25·mean over the patches of `max_j |d_jᵀp|` (the rule of the `lars`
//! bench: 46% of the atoms active on conv1, about the density of the ReLU output it replaces).
//! Each timed call is a fresh tape; `fwd` is the op alone, `fwd+bwd` adds `backward_with` a
//! fixed N(0, 1) cotangent of the output, the dictionary (weights and bias) a leaf and the
//! input a leaf too (`∂X` is computed, as in a layer that is not the first), like the conv2d.
//! Per round every case runs once, in order; the tables give the median over the rounds and
//! the ratio of the medians, by wall clock and by the process's CPU time
//! (`CLOCK_PROCESS_CPUTIME_ID`, all threads; steadier than the wall clock on a loaded machine,
//! at one thread the work itself).
//!
//! With `--per-patch` the CSF op is also timed with the per-patch solver
//! ([`SmallK::Off`]), interleaved in the same rounds, so before/after is measured in one run.
//! With `--only=csf1` (or `csf2`) only that CSF forward+backward runs, for `perf record`.
//! With `--lambda1=V` both layers use λ1 = V instead (the LeNets' default is 0.1: on N(0, 1)
//! images about 17 of conv1's 20 atoms are active, against 9 with the fraction above).
//!
//! `cargo run --release -p sparsegrad-sparse --features timing --example csf_timing -- [rounds] [--per-patch]
//! [--only=csf1|csf2]` (default 15 rounds; `RAYON_NUM_THREADS=1` for one thread).

use std::time::Instant;

use autograd::{BackwardOptions, Tape};
use engine::{Conv2dParams, Rng, Tensor};
use sparsegrad_sparse::sf::{csf_with, Patches, SmallK};
use sparsegrad_sparse::LarsConfig;

const LAMBDA2: f64 = 0.01;
const LAMBDA1_FRACTION: f64 = 0.25;

fn unit_atoms(m: usize, k: usize, rng: &mut Rng) -> Tensor<f32> {
    let mut d = Tensor::<f64>::randn(&[m, k], rng).to_vec();
    for j in 0..k {
        let n = (0..m).map(|i| d[i * k + j].powi(2)).sum::<f64>().sqrt();
        (0..m).for_each(|i| d[i * k + j] /= n);
    }
    Tensor::from_vec(d, &[m, k]).cast::<f32>()
}

struct Layer {
    name: &'static str,
    x: Tensor<f32>,
    d: Tensor<f32>,
    w: Tensor<f32>,
    bias: Tensor<f32>,
    cot: Tensor<f32>,
    cfg: LarsConfig,
}

fn layer(
    name: &'static str,
    shape: [usize; 4],
    atoms: usize,
    relu: bool,
    lambda1: Option<f64>,
    rng: &mut Rng,
) -> Layer {
    let [n, c, h, w] = shape;
    let mut x = Tensor::<f32>::randn(&shape, rng);
    if relu {
        x = Tensor::from_vec(x.to_vec().into_iter().map(|v| v.max(0.0)).collect(), &shape);
    }
    let m = c * 25;
    let d = unit_atoms(m, atoms, rng);
    let (oh, ow) = (h - 4, w - 4);
    let patches = x.im2col([5, 5], Conv2dParams::new()).transpose(1, 2).contiguous().reshape(&[n * oh * ow, m]);
    let corr = patches.matmul(&d).to_vec();
    let max_corr = corr.chunks(atoms).map(|r| r.iter().fold(0.0f64, |a, &v| a.max((v as f64).abs()))).sum::<f64>()
        / (n * oh * ow) as f64;
    let cfg = LarsConfig::new(lambda1.unwrap_or(LAMBDA1_FRACTION * max_corr), LAMBDA2);
    let wt = Tensor::<f32>::randn(&[atoms, c, 5, 5], rng);
    let bias = Tensor::<f32>::randn(&[atoms], rng);
    let cot = Tensor::<f32>::randn(&[n, atoms, oh, ow], rng);
    Layer { name, x, d, w: wt, bias, cot, cfg }
}

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

extern "C" {
    fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
}

/// CPU time of the process (every thread), in ms.
fn cpu_ms() -> f64 {
    const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
    let mut t = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `t` is a valid, writable timespec (two C longs on x86-64 Linux).
    let rc = unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime failed");
    t.sec as f64 * 1e3 + t.nsec as f64 * 1e-6
}

/// (wall ms, CPU ms) of `f`.
fn timed(f: impl FnOnce()) -> (f64, f64) {
    let (t, c) = (Instant::now(), cpu_ms());
    f();
    (t.elapsed().as_secs_f64() * 1e3, cpu_ms() - c)
}

fn csf_once(l: &Layer, backward: bool, small: SmallK) -> (f64, f64) {
    timed(|| csf_run(l, backward, small))
}

fn conv_once(l: &Layer, backward: bool) -> (f64, f64) {
    timed(|| conv_run(l, backward))
}

fn csf_run(l: &Layer, backward: bool, small: SmallK) {
    let tape = Tape::<f32>::new();
    let (dv, xv) = (tape.leaf(l.d.clone()), tape.leaf(l.x.clone()));
    let (y, _) = csf_with(&dv, &xv, Patches::new(5), &l.cfg, small).expect("csf");
    if backward {
        let g = tape.backward_with(&y, Some(l.cot.clone()), BackwardOptions::default()).unwrap();
        std::hint::black_box((g.wrt(&dv), g.wrt(&xv)));
    } else {
        std::hint::black_box(y.value());
    }
}

fn conv_run(l: &Layer, backward: bool) {
    let tape = Tape::<f32>::new();
    let (wv, bv, xv) = (tape.leaf(l.w.clone()), tape.leaf(l.bias.clone()), tape.leaf(l.x.clone()));
    let y = xv.conv2d(&wv, Some(&bv), Conv2dParams::new());
    if backward {
        let g = tape.backward_with(&y, Some(l.cot.clone()), BackwardOptions::default()).unwrap();
        std::hint::black_box((g.wrt(&wv), g.wrt(&bv), g.wrt(&xv)));
    } else {
        std::hint::black_box(y.value());
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(15);
    let per_patch = args.iter().any(|a| a == "--per-patch");
    let only = args.iter().find_map(|a| a.strip_prefix("--only=")).map(str::to_string);
    let lambda1 = args.iter().find_map(|a| a.strip_prefix("--lambda1=")).map(|v| match v.parse::<f64>() {
        Ok(l) if l.is_finite() && l >= 0.0 => l,
        _ => {
            eprintln!("csf_timing: --lambda1 needs a finite number ≥ 0, got {v:?}");
            std::process::exit(2);
        }
    });
    let mut rng = Rng::new(11);
    let layers = [
        layer("conv1", [64, 1, 28, 28], 20, false, lambda1, &mut rng),
        layer("conv2", [64, 20, 12, 12], 50, true, lambda1, &mut rng),
    ];
    if let Some(which) = only {
        let l = if which == "csf2" { &layers[1] } else { &layers[0] };
        let small = if per_patch { SmallK::Off } else { SmallK::Auto };
        let ts: Vec<(f64, f64)> = (0..rounds).map(|_| csf_once(l, true, small)).collect();
        let (wall, cpu) = (median(ts.iter().map(|t| t.0).collect()), median(ts.iter().map(|t| t.1).collect()));
        println!("{} csf fwd+bwd ({small:?}): median {wall:.3} ms wall, {cpu:.3} ms CPU over {rounds}", l.name);
        return;
    }
    let threads = rayon::current_num_threads();
    println!("threads {threads}, rounds {rounds}");
    for l in &layers {
        let tape = Tape::<f32>::new();
        let (_, st) = csf_with(&tape.leaf(l.d.clone()), &tape.leaf(l.x.clone()), Patches::new(5), &l.cfg, SmallK::Auto)
            .expect("csf");
        println!(
            "{}: x {:?}, D {:?}, λ1 = {:.4}, λ2 = {LAMBDA2}, mean |Λ| = {:.2}, steps/patch = {:.2}",
            l.name,
            l.x.shape(),
            l.d.shape(),
            l.cfg.lambda1,
            st.mean_active(),
            st.steps as f64 / st.active.len() as f64
        );
    }
    // [layer][case] times; cases: csf fwd, csf fwd+bwd, conv fwd, conv fwd+bwd, per-patch fwd, fwd+bwd.
    let mut t = vec![vec![Vec::new(); 6]; layers.len()];
    for l in &layers {
        // Warm-up.
        csf_once(l, true, SmallK::Auto);
        conv_once(l, true);
        if per_patch {
            csf_once(l, true, SmallK::Off);
        }
    }
    for _ in 0..rounds {
        for (li, l) in layers.iter().enumerate() {
            t[li][0].push(csf_once(l, false, SmallK::Auto));
            t[li][1].push(csf_once(l, true, SmallK::Auto));
            t[li][2].push(conv_once(l, false));
            t[li][3].push(conv_once(l, true));
            if per_patch {
                t[li][4].push(csf_once(l, false, SmallK::Off));
                t[li][5].push(csf_once(l, true, SmallK::Off));
            }
        }
    }
    for (clock, which) in [("wall", 0usize), ("CPU", 1)] {
        println!(
            "| layer | threads | clock | CSF fwd ms | CSF fwd+bwd ms | conv2d fwd ms | conv2d fwd+bwd ms | CSF / conv2d fwd | CSF / conv2d fwd+bwd |{}",
            if per_patch { " per-patch CSF fwd ms | per-patch fwd+bwd ms | per-patch / conv2d fwd+bwd | per-patch / batched fwd+bwd |" } else { "" }
        );
        for (li, l) in layers.iter().enumerate() {
            let m: Vec<f64> = t[li]
                .iter()
                .map(|v| {
                    if v.is_empty() {
                        f64::NAN
                    } else {
                        median(v.iter().map(|p: &(f64, f64)| if which == 0 { p.0 } else { p.1 }).collect())
                    }
                })
                .collect();
            let mut line = format!(
                "| {} | {threads} | {clock} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1} | {:.1} |",
                l.name,
                m[0],
                m[1],
                m[2],
                m[3],
                m[0] / m[2],
                m[1] / m[3]
            );
            if per_patch {
                line += &format!(" {:.3} | {:.3} | {:.1} | {:.2} |", m[4], m[5], m[5] / m[3], m[5] / m[1]);
            }
            println!("{line}");
        }
    }
}
