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
