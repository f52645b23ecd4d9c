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
