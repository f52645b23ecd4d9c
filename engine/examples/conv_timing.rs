//! Rough timings of the convolution and pooling kernels on the LeNet (batch 64) and CIFAR
//! shapes, in f32 (the criterion benches live in `bench/`; this is a quick look while tuning).
//!
//! `RAYON_NUM_THREADS=2 cargo run --release -p sparsegrad-engine --example conv_timing [-- MODE]`:
//! * no mode: every layer's forward, input and weight gradients, im2col and col2im; pooling;
//! * `lenet`: the conv and pool kernels of one LeNet training step;
//! * `gemm`: `matrixmultiply` alone on the GEMM shapes of those layers (the ceiling);
//! * `pool`, `im2col=conv2|conv3|cifar`: one kernel in a loop, for a profiler
//!   (`SKIP_IM2COL=1` leaves the im2col timing out of the latter).
//!
//! `MIN=1` reports the fastest repetition instead of the median, `CPU=1` the CPU time of all
//! threads divided by their number instead of wall time (both help on a busy machine).

use std::time::Instant;

use sparsegrad_engine::{Conv2dParams, Pool2dParams, Rng, Tensor};

/// CPU time consumed so far by all threads of this process, in ns (`clock_gettime` with
/// `CLOCK_PROCESS_CPUTIME_ID`, Linux). Unlike wall time it does not count waiting for the
/// cores of a busy machine.
fn cpu_ns() -> u64 {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the call only writes it.
    let rc = unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime failed");
    ts.sec as u64 * 1_000_000_000 + ts.nsec as u64
}

/// Median wall time of `f` in milliseconds after one warm-up call, or with `CPU=1` in the
/// environment the CPU time of all threads (divided by the thread count); with `MIN=1` the
/// fastest repetition instead of the median (steadier on a busy machine).
fn time_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    let cpu = std::env::var_os("CPU").is_some();
    let threads = rayon::current_num_threads() as f64;
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let (start, c0) = (Instant::now(), cpu_ns());
            f();
            if cpu {
                (cpu_ns() - c0) as f64 / 1e6 / threads
            } else {
                start.elapsed().as_secs_f64() * 1e3
            }
        })
        .collect();
    t.sort_by(f64::total_cmp);
    if std::env::var_os("MIN").is_some() {
        t[0]
    } else {
        t[reps / 2]
    }
}

fn main() {
    if std::env::args().any(|a| a == "gemm") {
        return gemm_probe();
    }
    if std::env::args().any(|a| a == "lenet") {
        return lenet_kernels();
    }
    if std::env::args().any(|a| a == "pool") {
        // Profiling aid: max pooling of LeNet's first feature map in a loop.
        let x = Tensor::<f32>::randn(&[64, 20, 24, 24], &mut Rng::new(0));
        let t = time_ms(200, || drop(x.max_pool2d(Pool2dParams::new(2))));
        let a = time_ms(200, || drop(x.avg_pool2d(Pool2dParams::new(2))));
        return println!("max_pool2d {t:.3} ms, avg_pool2d {a:.3} ms");
    }
    if let Some(layer) = std::env::args().nth(1).and_then(|a| a.strip_prefix("im2col=").map(str::to_string)) {
        // Profiling aid: im2col of one layer in a loop.
        let (xs, k) = match layer.as_str() {
            "conv2" => ([64, 20, 12, 12], 5),
            "conv3" => ([64, 50, 4, 4], 4),
            _ => ([64, 64, 32, 32], 3),
        };
        let x = Tensor::<f32>::randn(&xs, &mut Rng::new(0));
        let p = Conv2dParams::new().padding(if layer == "cifar" { 1 } else { 0 });
        let t = if std::env::var_os("SKIP_IM2COL").is_some() { 0.0 } else { time_ms(20, || drop(x.im2col([k, k], p))) };
        let w = Tensor::<f32>::randn(&[xs[1], xs[1], k, k], &mut Rng::new(1));
        let f = time_ms(20, || drop(x.conv2d(&w, None, p)));
        return println!("im2col {layer}: {t:.3} ms, conv2d forward with {} channels: {f:.3} ms", xs[1]);
    }
    let mut rng = Rng::new(0);
    let convs: [(&str, [usize; 4], [usize; 4], usize); 4] = [
        ("lenet conv1", [64, 1, 28, 28], [20, 1, 5, 5], 0),
        ("lenet conv2", [64, 20, 12, 12], [50, 20, 5, 5], 0),
        ("lenet conv3", [64, 50, 4, 4], [500, 50, 4, 4], 0),
        ("cifar 3x3", [64, 64, 32, 32], [64, 64, 3, 3], 1),
    ];
    println!("{:<12} {:>9} {:>9} {:>9}   (ms; GFLOP/s in brackets)", "f32", "forward", "bwd in", "bwd w");
    for (name, xs, ws, pad) in convs {
        let p = Conv2dParams::new().padding(pad);
        let x = Tensor::<f32>::randn(&xs, &mut rng);
        let w = Tensor::<f32>::randn(&ws, &mut rng);
        let b = Tensor::<f32>::randn(&[ws[0]], &mut rng);
        let y = x.conv2d(&w, Some(&b), p);
        let gy = Tensor::<f32>::randn(y.shape(), &mut rng);
        let flop = 2.0 * (y.numel() * ws[1] * ws[2] * ws[3]) as f64;
        let reps = if flop > 1e9 { 5 } else { 40 };
        let f = time_ms(reps, || drop(x.conv2d(&w, Some(&b), p)));
        let bi = time_ms(reps, || drop(Tensor::conv2d_backward_input(&gy, &w, [xs[2], xs[3]], p)));
        let bw = time_ms(reps, || drop(Tensor::conv2d_backward_weight(&gy, &x, [ws[2], ws[3]], p)));
        let ic = time_ms(reps, || drop(x.im2col([ws[2], ws[3]], p)));
        let cols = x.im2col([ws[2], ws[3]], p);
        let ci = time_ms(reps, || drop(Tensor::col2im(&cols, xs, [ws[2], ws[3]], p)));
        println!("{name:<12} im2col {ic:.3} ms, col2im {ci:.3} ms ({} columns entries)", cols.numel());
        let rate = |ms: f64| flop / ms / 1e6;
        println!("{name:<12} {f:>9.3} {bi:>9.3} {bw:>9.3}   [{:.0} {:.0} {:.0}]", rate(f), rate(bi), rate(bw));
    }
    for (name, xs) in [("maxpool 1", [64, 20, 24, 24]), ("maxpool 2", [64, 50, 8, 8])] {
        let p = Pool2dParams::new(2);
        let x = Tensor::<f32>::randn(&xs, &mut rng);
        let (y, idx) = x.max_pool2d(p);
        let f = time_ms(30, || drop(x.max_pool2d(p)));
        let b = time_ms(30, || drop(Tensor::max_pool2d_backward(&y, &idx, xs)));
        let a = time_ms(30, || drop(x.avg_pool2d(p)));
        println!("{name:<12} max {f:.3} ms, max backward {b:.3} ms, avg {a:.3} ms");
    }
}

/// `matrixmultiply` alone, on the GEMM shapes of the layers above and n = 1024.
fn gemm_probe() {
    let mut rng = Rng::new(1);
    for (m, k, n) in [(64, 576, 1024), (50, 500, 256), (20, 25, 576), (500, 800, 64), (1024, 1024, 1024)] {
        let a = Tensor::<f32>::randn(&[m, k], &mut rng);
        let b = Tensor::<f32>::randn(&[k, n], &mut rng);
        let mut c = vec![0f32; m * n];
        let t = time_ms(20, || {
            sparsegrad_engine::kernels::matmul::gemm(
                1.0,
                sparsegrad_engine::kernels::matmul::MatRef::of(&a),
                sparsegrad_engine::kernels::matmul::MatRef::of(&b),
                0.0,
                &mut c,
                0,
                n,
            )
        });
        println!("gemm {m}x{k}x{n}: {t:.3} ms, {:.0} GFLOP/s", 2.0 * (m * k * n) as f64 / t / 1e6);
    }
}

/// The convolution and pooling kernels of one LeNet training step at batch 64 (what the
/// autograd tape calls; the ReLU, linear layer and loss are left out).
fn lenet_kernels() {
    let mut rng = Rng::new(2);
    let p = Conv2dParams::new();
    let pool = Pool2dParams::new(2);
    let x = Tensor::<f32>::randn(&[64, 1, 28, 28], &mut rng);
    let w: Vec<Tensor<f32>> =
        [[20, 1, 5, 5], [50, 20, 5, 5], [500, 50, 4, 4]].iter().map(|s| Tensor::randn(s, &mut rng)).collect();
    let b: Vec<Tensor<f32>> = [20, 50, 500].iter().map(|&o| Tensor::randn(&[o], &mut rng)).collect();
    let step = || {
        let y1 = x.conv2d(&w[0], Some(&b[0]), p);
        let (p1, i1) = y1.max_pool2d(pool);
        let y2 = p1.conv2d(&w[1], Some(&b[1]), p);
        let (p2, i2) = y2.max_pool2d(pool);
        let y3 = p2.conv2d(&w[2], Some(&b[2]), p);
        // Backward, with the output itself standing in for its gradient.
        let _ = Tensor::conv2d_backward_weight(&y3, &p2, [4, 4], p);
        let g2 = Tensor::conv2d_backward_input(&y3, &w[2], [4, 4], p);
        let g2 = Tensor::max_pool2d_backward(&g2, &i2, [64, 50, 8, 8]);
        let _ = Tensor::conv2d_backward_weight(&g2, &p1, [5, 5], p);
        let g1 = Tensor::conv2d_backward_input(&g2, &w[1], [12, 12], p);
        let g1 = Tensor::max_pool2d_backward(&g1, &i1, [64, 20, 24, 24]);
        let _ = Tensor::conv2d_backward_weight(&g1, &x, [5, 5], p);
    };
    let t = time_ms(40, step);
    println!("LeNet batch 64, conv + pool kernels of one training step: {t:.3} ms");
}
