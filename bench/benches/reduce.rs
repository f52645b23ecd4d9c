//! Reduction throughput on 1M and 16M f32: sum over all elements, over the last axis
//! (`[R, C] → [R]`, contiguous runs) and over the first axis (`[R, C] → [C]`, strided), each
//! beside a plain single-threaded slice loop and, at 1M, the naive reference
//! `engine::kernels::reduce::naive::sum` (f64 accumulation, index arithmetic per element).
//! Also, over the last axis: `max` (beside a plain NaN-propagating fold per row), `argmax`,
//! `logsumexp`, `softmax` and `log_softmax`.
//!
//! Throughput is in input elements (4 bytes each). Groups: `reduce_t{threads}`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine::kernels::reduce::naive;
use engine::{Rng, Tensor};
use sparsegrad_bench::group_name;

fn plain_sum(x: &[f32]) -> f32 {
    x.iter().sum()
}

fn plain_sum_rows(x: &[f32], cols: usize) -> Vec<f32> {
    x.chunks_exact(cols).map(plain_sum).collect()
}

fn plain_sum_cols(x: &[f32], cols: usize) -> Vec<f32> {
    let mut acc = vec![0f32; cols];
    for r in x.chunks_exact(cols) {
        acc.iter_mut().zip(r).for_each(|(a, &v)| *a += v);
    }
    acc
}

/// Maximum of every row, NaN propagating, as one fold per row.
fn plain_max_rows(x: &[f32], cols: usize) -> Vec<f32> {
    x.chunks_exact(cols).map(|r| r.iter().fold(r[0], |m, &v| if v.is_nan() || v > m { v } else { m })).collect()
}

fn reduce(c: &mut Criterion) {
    let mut g = c.benchmark_group(group_name("reduce"));
    let mut rng = Rng::new(2);
    for (n, label) in [(1usize << 20, "1M"), (1 << 24, "16M")] {
        let (rows, cols) = (n >> 10, 1024);
        g.throughput(Throughput::Elements(n as u64));
        g.sample_size(if n > 1 << 20 { 20 } else { 50 });
        let x = Tensor::<f32>::randn(&[rows, cols], &mut rng);
        let xs = x.as_slice().unwrap();

        g.bench_function(BenchmarkId::new("sum_all", label), |b| b.iter(|| x.sum_all()));
        g.bench_function(BenchmarkId::new("sum_all_plain_loop", label), |b| b.iter(|| plain_sum(xs)));
        g.bench_function(BenchmarkId::new("sum_last_axis", label), |b| b.iter(|| x.sum(&[1], false)));
        g.bench_function(BenchmarkId::new("sum_last_axis_plain_loop", label), |b| b.iter(|| plain_sum_rows(xs, cols)));
        g.bench_function(BenchmarkId::new("sum_first_axis", label), |b| b.iter(|| x.sum(&[0], false)));
        g.bench_function(BenchmarkId::new("sum_first_axis_plain_loop", label), |b| b.iter(|| plain_sum_cols(xs, cols)));
        g.bench_function(BenchmarkId::new("max_last_axis", label), |b| b.iter(|| x.max(&[1], false)));
        g.bench_function(BenchmarkId::new("max_last_axis_plain_loop", label), |b| b.iter(|| plain_max_rows(xs, cols)));
        g.bench_function(BenchmarkId::new("argmax_last_axis", label), |b| b.iter(|| x.argmax(1)));
        g.bench_function(BenchmarkId::new("logsumexp_last_axis", label), |b| b.iter(|| x.logsumexp(&[1], false)));
        g.bench_function(BenchmarkId::new("softmax_last_axis", label), |b| b.iter(|| x.softmax(1)));
        g.bench_function(BenchmarkId::new("log_softmax_last_axis", label), |b| b.iter(|| x.log_softmax(1)));
        if n == 1 << 20 {
            g.sample_size(10);
            g.bench_function(BenchmarkId::new("sum_all_naive", label), |b| b.iter(|| naive::sum(&x, &[0, 1])));
            g.bench_function(BenchmarkId::new("sum_first_axis_naive", label), |b| b.iter(|| naive::sum(&x, &[0])));
        }
    }
    g.finish();
}

criterion_group!(benches, reduce);
criterion_main!(benches);
