//! Element-wise throughput on 1M and 16M f32 (4 MB and 64 MB per operand): the
//! transcendentals `exp`, `log` (of `|x|`), `sigmoid` and `tanh`, `relu`, `add` of equal shapes, `add` with broadcasting (a row vector `[C]` and a column `[R, 1]`
//! against `[R, C]`), and `exp` of a transposed (strided) view. Each is shown beside a plain
//! single-threaded slice loop (what a hand-written Rust loop gives; for memory-bound maps
//! this is the bandwidth roofline of one core) and, at 1M, the naive index-based reference
//! `engine::kernels::elementwise::naive`.
//!
//! Throughput is in elements of the output (criterion's "Gelem/s"); bytes moved per element
//! are 8 (unary) or 12 (binary, equal shapes). Groups: `elementwise_t{threads}`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine::kernels::elementwise::naive;
use engine::{Rng, Tensor};
use sparsegrad_bench::group_name;

fn plain_map(x: &[f32], f: impl Fn(f32) -> f32) -> Vec<f32> {
    x.iter().map(|&v| f(v)).collect()
}

fn plain_zip(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> Vec<f32> {
    a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect()
}

/// `[R, C] + [C]` as nested loops over rows.
fn plain_add_row(a: &[f32], row: &[f32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(a.len());
    for r in a.chunks_exact(row.len()) {
        out.extend(r.iter().zip(row).map(|(&x, &y)| x + y));
    }
    out
}

/// `[R, C] + [R, 1]` as nested loops over rows.
fn plain_add_col(a: &[f32], col: &[f32]) -> Vec<f32> {
    let c = a.len() / col.len();
    let mut out = Vec::with_capacity(a.len());
    for (r, &y) in a.chunks_exact(c).zip(col) {
        out.extend(r.iter().map(|&x| x + y));
    }
    out
}

fn relu(x: f32) -> f32 {
    if x > 0.0 || x.is_nan() {
        x
    } else {
        0.0
    }
}

fn elementwise(c: &mut Criterion) {
    let mut g = c.benchmark_group(group_name("elementwise"));
    let mut rng = Rng::new(1);
    for (n, label) in [(1usize << 20, "1M"), (1 << 24, "16M")] {
        let (rows, cols) = (n >> 10, 1024);
        g.throughput(Throughput::Elements(n as u64));
        g.sample_size(if n > 1 << 20 { 20 } else { 50 });
        let x = Tensor::<f32>::randn(&[rows, cols], &mut rng);
        let y = Tensor::<f32>::randn(&[rows, cols], &mut rng);
        let row = Tensor::<f32>::randn(&[cols], &mut rng);
        let col = Tensor::<f32>::randn(&[rows, 1], &mut rng);
        let xt = Tensor::<f32>::randn(&[cols, rows], &mut rng).t(); // strided view
        let xa = x.abs(); // the input of `log`: half-normal, as `np.abs(x)` in the peers
        let (xs, ys, xas) = (x.as_slice().unwrap(), y.as_slice().unwrap(), xa.as_slice().unwrap());
        let (rs, cs) = (row.as_slice().unwrap(), col.as_slice().unwrap());

        g.bench_function(BenchmarkId::new("exp", label), |b| b.iter(|| x.exp()));
        g.bench_function(BenchmarkId::new("exp_plain_loop", label), |b| b.iter(|| plain_map(xs, f32::exp)));
        g.bench_function(BenchmarkId::new("exp_transposed_view", label), |b| b.iter(|| xt.exp()));
        g.bench_function(BenchmarkId::new("log", label), |b| b.iter(|| xa.log()));
        g.bench_function(BenchmarkId::new("log_plain_loop", label), |b| b.iter(|| plain_map(xas, f32::ln)));
        g.bench_function(BenchmarkId::new("sigmoid", label), |b| b.iter(|| x.sigmoid()));
        g.bench_function(BenchmarkId::new("sigmoid_plain_loop", label), |b| {
            b.iter(|| plain_map(xs, |v| 1.0 / (1.0 + (-v).exp())))
        });
        g.bench_function(BenchmarkId::new("tanh", label), |b| b.iter(|| x.tanh()));
        g.bench_function(BenchmarkId::new("tanh_plain_loop", label), |b| b.iter(|| plain_map(xs, f32::tanh)));
        g.bench_function(BenchmarkId::new("relu", label), |b| b.iter(|| x.relu()));
        g.bench_function(BenchmarkId::new("relu_plain_loop", label), |b| b.iter(|| plain_map(xs, relu)));
        g.bench_function(BenchmarkId::new("add", label), |b| b.iter(|| x.add(&y)));
        g.bench_function(BenchmarkId::new("add_plain_loop", label), |b| b.iter(|| plain_zip(xs, ys, |a, b| a + b)));
        g.bench_function(BenchmarkId::new("add_bcast_row", label), |b| b.iter(|| x.add(&row)));
        g.bench_function(BenchmarkId::new("add_bcast_row_plain_loop", label), |b| b.iter(|| plain_add_row(xs, rs)));
        g.bench_function(BenchmarkId::new("add_bcast_col", label), |b| b.iter(|| x.add(&col)));
        g.bench_function(BenchmarkId::new("add_bcast_col_plain_loop", label), |b| b.iter(|| plain_add_col(xs, cs)));
        if n == 1 << 20 {
            g.sample_size(10);
            g.bench_function(BenchmarkId::new("exp_naive", label), |b| b.iter(|| naive::map(&x, f32::exp)));
            g.bench_function(BenchmarkId::new("add_bcast_row_naive", label), |b| {
                b.iter(|| naive::zip_map(&x, &row, |a, b| a + b))
            });
        }
        // The fast paths agree with the references (`exp` within its 1-ulp bound of libm).
        let within_1_ulp = |a: f32, b: f32| a == b || (a.to_bits() as i64 - b.to_bits() as i64).abs() <= 1;
        assert!(x.exp().to_vec().iter().zip(plain_map(xs, f32::exp)).all(|(&a, b)| within_1_ulp(a, b)));
        assert_eq!(x.add(&row).to_vec(), plain_add_row(xs, rs));
        assert_eq!(x.add(&col).to_vec(), plain_add_col(xs, cs));
        black_box(&xt);
    }
    g.finish();
}

criterion_group!(benches, elementwise);
criterion_main!(benches);
