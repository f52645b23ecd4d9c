//! Shared helpers for the criterion benchmarks in `benches/`.
//!
//! Every bench labels its groups with the number of rayon threads it ran with
//! (`RAYON_NUM_THREADS`), so one binary run twice (1 and 2 threads) keeps both results apart
//! under `target/criterion/`. `bench/report.py` turns those results and the peers' JSON into the
//! ratio tables of `bench/README.md`.

/// The rayon pool size this process runs with (printed once, so logs show it).
pub fn threads() -> usize {
    let t = rayon::current_num_threads();
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| eprintln!("sparsegrad-bench: rayon::current_num_threads() = {t}"));
    t
}

/// `"{name}_t{threads}"`: a criterion group name that carries the thread count.
pub fn group_name(name: &str) -> String {
    format!("{name}_t{}", threads())
}

/// Runs `f` on a thread of a fresh rayon pool when the environment variable `IN_POOL` is set
/// (kernels' parallel loops then start from a pool thread), on the calling thread otherwise.
pub fn maybe_in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if std::env::var_os("IN_POOL").is_some() {
        rayon::ThreadPoolBuilder::new().build().expect("a rayon pool").install(f)
    } else {
        f()
    }
}

/// `C ← A·B` for `n × n` f32 matrices through one `matrixmultiply::sgemm` call on the calling
/// thread: the raw baseline of the matmul target. `(rs, cs)` are A's row and column strides
/// (`(n, 1)` row-major, `(1, n)` for the transposed view); B and C are row-major.
pub fn raw_sgemm(n: usize, a: &[f32], (rs, cs): (isize, isize), b: &[f32], c: &mut [f32]) {
    assert!(a.len() >= n * n && b.len() >= n * n && c.len() >= n * n);
    // SAFETY: all three buffers hold n×n elements and the strides address inside them; C is a
    // distinct mutable slice.
    unsafe {
        matrixmultiply::sgemm(
            n,
            n,
            n,
            1.0,
            a.as_ptr(),
            rs,
            cs,
            b.as_ptr(),
            n as isize,
            1,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        )
    }
}

/// The sparse-coding workload of `../shared/peers/lars.py` (and of
/// `sparse/examples/lars_timing.rs`, which generates the same data from the same seed).
pub mod lars_workload {
    use engine::{Rng, Tensor};

    /// Signal dimension m.
    pub const M: usize = 800;
    /// Atoms k.
    pub const K: usize = 500;
    /// Signals per batch N.
    pub const N: usize = 256;
    /// Non-zeros of the generating codes.
    pub const S: usize = 20;

    fn unit_columns(d: &mut [f64], m: usize, k: usize) {
        for j in 0..k {
            let n = (0..m).map(|i| d[i * k + j].powi(2)).sum::<f64>().sqrt();
            (0..m).for_each(|i| d[i * k + j] /= n);
        }
    }

    /// `[m, k]` with unit-norm columns: i.i.d. N(0, 1) (`"gaussian"`), or a rank-20 common
    /// part `/√20` plus 0.5·N(0, 1) noise (`"correlated"`, high mutual coherence).
    pub fn dictionary(kind: &str, rng: &mut Rng) -> Tensor<f64> {
        let mut d = vec![0.0; M * K];
        if kind == "gaussian" {
            d.iter_mut().for_each(|v| *v = rng.normal());
        } else {
            let a = Tensor::<f64>::randn(&[M, 20], rng);
            let b = Tensor::<f64>::randn(&[20, K], rng);
            let common = a.matmul(&b).to_vec();
            for (v, c) in d.iter_mut().zip(common) {
                *v = c / 20f64.sqrt() + 0.5 * rng.normal();
            }
        }
        unit_columns(&mut d, M, K);
        Tensor::from_vec(d, &[M, K])
    }

    /// `[N, m]` unit-norm signals `x = D·a0 + 0.05·e/√m`, `a0` 20-sparse Gaussian.
    pub fn signals(d: &Tensor<f64>, rng: &mut Rng) -> Tensor<f64> {
        let dv = d.to_vec();
        let mut x = vec![0.0; N * M];
        for row in x.chunks_mut(M) {
            let mut idx: Vec<usize> = (0..K).collect();
            rng.shuffle(&mut idx);
            let coef: Vec<(usize, f64)> = idx[..S].iter().map(|&j| (j, rng.normal())).collect();
            for (i, v) in row.iter_mut().enumerate() {
                *v =
                    coef.iter().map(|&(j, c)| dv[i * K + j] * c).sum::<f64>() + 0.05 * rng.normal() / (M as f64).sqrt();
            }
            let n = row.iter().map(|v| v * v).sum::<f64>().sqrt();
            row.iter_mut().for_each(|v| *v /= n);
        }
        Tensor::from_vec(x, &[N, M])
    }

    /// λ1 = 0.1·mean_n max_j |d_jᵀx_n|.
    pub fn lambda1(d: &Tensor<f64>, x: &Tensor<f64>) -> f64 {
        let c = x.matmul(d).to_vec();
        0.1 * c.chunks(K).map(|r| r.iter().fold(0.0f64, |m, v| m.max(v.abs()))).sum::<f64>() / N as f64
    }

    /// The two problems in lars.py's order (Gaussian, then correlated, from one `Rng::new(0)`
    /// stream, as `lars_timing` draws them): `(kind, D, X, λ1)`.
    pub fn problems() -> Vec<(&'static str, Tensor<f64>, Tensor<f64>, f64)> {
        let mut rng = Rng::new(0);
        ["gaussian", "correlated"]
            .into_iter()
            .map(|kind| {
                let d = dictionary(kind, &mut rng);
                let x = signals(&d, &mut rng);
                let l1 = lambda1(&d, &x);
                (kind, d, x, l1)
            })
            .collect()
    }
}

/// The convolution shapes of `benches/conv.rs` and `examples/conv_times.rs`, as
/// (label, input shape, weight shape, padding): LeNet's three layers at batch 64, the CIFAR
/// 64→64 3×3 layer, and the CSC layer's analysis convolution 3→64 (its transposed
/// convolution 64→3 is benched separately).
pub const CONV_SHAPES: [(&str, [usize; 4], [usize; 4], usize); 5] = [
    ("lenet1_64x1x28x28_20x5x5", [64, 1, 28, 28], [20, 1, 5, 5], 0),
    ("lenet2_64x20x12x12_50x5x5", [64, 20, 12, 12], [50, 20, 5, 5], 0),
    ("lenet3_64x50x4x4_500x4x4", [64, 50, 4, 4], [500, 50, 4, 4], 0),
    ("cifar_64x64x32x32_64x3x3_p1", [64, 64, 32, 32], [64, 64, 3, 3], 1),
    ("csc_64x3x32x32_64x3x3_p1", [64, 3, 32, 32], [64, 3, 3, 3], 1),
];

/// The CSC layer's synthesis operator, `conv_transpose2d` 64 → 3 channels, as (label, input
/// shape, weight shape `[C_in, C_out, kh, kw]`, padding).
pub const CONV_TRANSPOSE_SHAPE: (&str, [usize; 4], [usize; 4], usize) =
    ("csc_t_64x64x32x32_64x3x3_p1", [64, 64, 32, 32], [64, 3, 3, 3], 1);

/// CPU time consumed so far, in milliseconds, by the calling thread (`thread = true`,
/// `CLOCK_THREAD_CPUTIME_ID`) or by the whole process (`CLOCK_PROCESS_CPUTIME_ID`). Unlike
/// wall time it does not grow while the thread waits for a CPU, so on a busy machine it is
/// the figure to compare kernel variants with. Linux only (0 elsewhere).
pub fn cpu_ms(thread: bool) -> f64 {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    let clock = if thread { 3 } else { 2 };
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `ts` is a valid timespec; 2 and 3 are Linux's process and thread CPU clocks.
    let rc = if cfg!(target_os = "linux") { unsafe { clock_gettime(clock, &mut ts) } } else { -1 };
    if rc == 0 {
        ts.sec as f64 * 1e3 + ts.nsec as f64 / 1e6
    } else {
        0.0
    }
}
