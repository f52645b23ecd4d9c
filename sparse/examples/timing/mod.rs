//! Timing helpers shared by the timing examples (`dcea_timing`, `csc_timing`).

use std::time::Instant;

/// CPU time of the process (user + system, all threads), in ms (10 ms resolution).
pub fn cpu_ms() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<&str> = s.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (ticks(11) + ticks(12)) * 10.0
}

/// Median, min and max wall time in ms over `reps` runs after one warm-up, and the median CPU
/// time per run (on a shared machine the CPU time is the steadier figure).
pub fn median_ms(reps: usize, mut f: impl FnMut()) -> (f64, f64, f64, f64) {
    f(); // warm-up
    let mut t: Vec<(f64, f64)> = (0..reps)
        .map(|_| {
            let (s, c) = (Instant::now(), cpu_ms());
            f();
            (s.elapsed().as_secs_f64() * 1e3, cpu_ms() - c)
        })
        .collect();
    t.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut cpu: Vec<f64> = t.iter().map(|x| x.1).collect();
    cpu.sort_by(f64::total_cmp);
    (t[t.len() / 2].0, t[0].0, t[t.len() - 1].0, cpu[cpu.len() / 2])
}
