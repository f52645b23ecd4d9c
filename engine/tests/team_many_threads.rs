//! `engine::par`'s teams (parallel loops called from a thread outside rayon's pool) with more
//! threads than the machine's cores: one segment of the indices per thread, each index run
//! exactly once whatever the segment boundaries, helpers that start late or never, nesting
//! and back-to-back loops from several callers. Its own test binary, because the team size
//! is the global pool's, which can be set once per process.

use std::sync::atomic::{AtomicUsize, Ordering};

#[test]
fn a_team_of_five_runs_every_index_once() {
    rayon::ThreadPoolBuilder::new().num_threads(5).build_global().expect("the first global pool of this binary");
    assert_eq!(rayon::current_num_threads(), 5);
    for n in [0, 1, 2, 3, 4, 5, 6, 7, 11, 40, 41, 99, 1000, 4097] {
        let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
        sparsegrad_engine::par::range(n, &|i| {
            hits[i].fetch_add(1, Ordering::Relaxed);
        });
        let bad: Vec<usize> = (0..n).filter(|&i| hits[i].load(Ordering::Relaxed) != 1).collect();
        assert!(bad.is_empty(), "n = {n}: indices run other than once: {bad:?}");
    }
    // Uneven work (early indices slow) and nesting: the threads that finish their segment
    // take over the others.
    let total = AtomicUsize::new(0);
    sparsegrad_engine::par::range(23, &|i| {
        if i < 3 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        sparsegrad_engine::par::range(9, &|j| {
            total.fetch_add(i * 9 + j, Ordering::Relaxed);
        });
    });
    assert_eq!(total.load(Ordering::Relaxed), (0..23 * 9).sum::<usize>());
    // Several callers at once, back to back.
    std::thread::scope(|sc| {
        for t in 0..4usize {
            sc.spawn(move || {
                for n in [1usize, 5, 64, 333] {
                    for _ in 0..20 {
                        let sum = AtomicUsize::new(0);
                        sparsegrad_engine::par::range(n, &|i| {
                            sum.fetch_add(i + t, Ordering::Relaxed);
                        });
                        assert_eq!(
                            sum.load(Ordering::Relaxed),
                            n * n.saturating_sub(1) / 2 + n * t,
                            "caller {t}, n = {n}"
                        );
                    }
                }
            });
        }
    });
}
