//! f32 GEMM at n = 256, 512, 1024: the tensor-level `matmul` (contiguous operands, and a
//! transposed view `a.t()` that is not copied; the engine's packed GEMM where the CPU has
//! AVX-512 or AVX2) against one raw `matrixmultiply::sgemm` call on the same data (one thread,
//! output preallocated), the engine's backend before the packed GEMM and on other CPUs.
//! The naive reference (`engine::kernels::matmul::naive`, an f64 triple loop) runs at n = 128.
//!
//! Run with `RAYON_NUM_THREADS=1` and `=2`; groups are named `matmul_f32_t{threads}`.
//! Throughput is in FLOP (2n³), so criterion's "Gelem/s" reads as GFLOP/s.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine::kernels::matmul::{gemm, naive, MatRef};
use engine::{Rng, Tensor};
use sparsegrad_bench::{group_name, raw_sgemm};

fn matmul(c: &mut Criterion) {
    let mut g = c.benchmark_group(group_name("matmul_f32"));
    let mut rng = Rng::new(0);
    for n in [256usize, 512, 1024] {
        g.throughput(Throughput::Elements(2 * (n as u64).pow(3)));
        g.sample_size(if n >= 1024 { 20 } else { 50 });
        let a = Tensor::<f32>::randn(&[n, n], &mut rng);
        let b = Tensor::<f32>::randn(&[n, n], &mut rng);
        let at = a.t(); // a view with strides (1, n): not copied
        assert!(!at.is_contiguous() && at.shares_storage(&a));
        let (sa, sb) = (a.as_slice().unwrap(), b.as_slice().unwrap());
        let mut out = vec![0f32; n * n];

        g.bench_function(BenchmarkId::new("tensor", n), |bn| bn.iter(|| a.matmul(&b)));
        g.bench_function(BenchmarkId::new("tensor_at", n), |bn| bn.iter(|| at.matmul(&b)));
        g.bench_function(BenchmarkId::new("raw_sgemm", n), |bn| {
            bn.iter(|| raw_sgemm(n, sa, (n as isize, 1), sb, &mut out))
        });
        g.bench_function(BenchmarkId::new("raw_sgemm_at", n), |bn| {
            bn.iter(|| raw_sgemm(n, sa, (1, n as isize), sb, &mut out))
        });
        // Same bits as one single-threaded `gemm` call (splitting the product only changes who
        // computes which tile), and the raw call's values up to rounding.
        gemm(1.0, MatRef::of(&a), MatRef::of(&b), 0.0, &mut out, 0, n);
        assert_eq!(a.matmul(&b).to_vec(), out);
        raw_sgemm(n, sa, (n as isize, 1), sb, &mut out);
        assert!(a.matmul(&b).allclose(&Tensor::from_vec(out.clone(), &[n, n]), 1e-4, 1e-3));
    }
    let n = 128;
    g.throughput(Throughput::Elements(2 * (n as u64).pow(3)));
    g.sample_size(10);
    let a = Tensor::<f32>::randn(&[n, n], &mut rng);
    let b = Tensor::<f32>::randn(&[n, n], &mut rng);
    g.bench_function(BenchmarkId::new("naive", n), |bn| bn.iter(|| naive::matmul(&a, &b)));
    g.bench_function(BenchmarkId::new("tensor", n), |bn| bn.iter(|| a.matmul(&b)));
    g.finish();
}

criterion_group!(benches, matmul);
criterion_main!(benches);
