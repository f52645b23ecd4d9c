//! Overhead of the tape itself: a graph of 10,000 scalar (rank-0) ops, `x ← x·a + b`
//! repeated 5,000 times, where every op moves one number, so the time is all bookkeeping
//! (node push, rule boxing, value allocation, the reverse sweep, gradient accumulation).
//!
//! * `record`: a fresh tape, three leaves and the 10,000 ops (then the tape is dropped).
//! * `record_backward`: the same plus `tape.backward` from the final value.
//!
//! Throughput is in ops, so 1e9 / (criterion's "elem/s") is ns per op. The PyTorch equivalent
//! (same graph, `loss.backward()`) is `bench/peers/tape_overhead.py`.
//! Groups: `tape_t{threads}`.

use autograd::{Tape, Var};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use engine::{Element, Tensor};
use sparsegrad_bench::group_name;

const OPS: usize = 10_000;

/// Records `x ← x·a + b` `OPS / 2` times on `tape`; returns the result and the leaves.
fn record<T: Element>(tape: &Tape<T>) -> (Var<'_, T>, [Var<'_, T>; 3]) {
    let x0 = tape.leaf(Tensor::scalar(T::of(0.5)));
    let a = tape.leaf(Tensor::scalar(T::of(0.999)));
    let b = tape.leaf(Tensor::scalar(T::of(0.001)));
    let mut x = x0;
    for _ in 0..OPS / 2 {
        x = x.mul(&a).add(&b);
    }
    (x, [x0, a, b])
}

fn tape(c: &mut Criterion) {
    let mut g = c.benchmark_group(group_name("tape"));
    g.throughput(Throughput::Elements(OPS as u64));
    g.bench_function("record", |bn| {
        bn.iter(|| {
            let tape = Tape::<f32>::new();
            let (x, _) = record(&tape);
            black_box(x.item())
        })
    });
    g.bench_function("record_backward", |bn| {
        bn.iter(|| {
            let tape = Tape::<f32>::new();
            let (x, [x0, a, b]) = record(&tape);
            let grads = tape.backward(&x).unwrap();
            black_box((grads.wrt(&x0).item(), grads.wrt(&a).item(), grads.wrt(&b).item()))
        })
    });
    g.finish();

    // Sanity: x_n = a^n x_0 + b (1 − a^n)/(1 − a), so ∂x_n/∂x_0 = a^n.
    let tape = Tape::<f64>::new();
    let (x, [x0, _, _]) = record(&tape);
    assert_eq!(tape.len(), OPS + 3);
    let gx0 = tape.backward(&x).unwrap().wrt(&x0).item();
    assert!((gx0 - 0.999f64.powi((OPS / 2) as i32)).abs() < 1e-12);
}

criterion_group!(benches, tape);
criterion_main!(benches);
