//! conv2d forward and its two adjoints (input gradient, weight gradient) at the LeNet shapes
//! (batch 64: `[64,1,28,28] * [20,1,5,5]`, `[64,20,12,12] * [50,20,5,5]`, and the 4×4 "FC"
//! layer `[64,50,4,4] * [500,50,4,4]`) and a CIFAR shape (`[64,64,32,32] * [64,64,3,3]`,
//! padding 1). The naive reference `engine::kernels::conv::naive::conv2d` (f64, one term at a
//! time) runs on the first LeNet shape only.
//!
//! Throughput is in FLOP (2·N·O·C·kh·kw·OH·OW per pass, the same for all three), so criterion's
//! "Gelem/s" reads as GFLOP/s. The PyTorch counterpart is `bench/peers/kernels.py conv`.
//! Groups: `conv_t{threads}`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine::kernels::conv::naive;
use engine::{Conv2dParams, Rng, Tensor};
use sparsegrad_bench::group_name;

/// (label, input shape, weight shape, padding)
const SHAPES: [(&str, [usize; 4], [usize; 4], usize); 4] = [
    ("lenet1_64x1x28x28_20x5x5", [64, 1, 28, 28], [20, 1, 5, 5], 0),
    ("lenet2_64x20x12x12_50x5x5", [64, 20, 12, 12], [50, 20, 5, 5], 0),
    ("lenet3_64x50x4x4_500x4x4", [64, 50, 4, 4], [500, 50, 4, 4], 0),
    ("cifar_64x64x32x32_64x3x3_p1", [64, 64, 32, 32], [64, 64, 3, 3], 1),
];

fn conv(c: &mut Criterion) {
    let mut g = c.benchmark_group(group_name("conv"));
    let mut rng = Rng::new(3);
    for (label, xs, ws, pad) in SHAPES {
        let p = Conv2dParams::new().padding(pad);
        let x = Tensor::<f32>::randn(&xs, &mut rng);
        let w = Tensor::<f32>::randn(&ws, &mut rng);
        let b = Tensor::<f32>::randn(&[ws[0]], &mut rng);
        let y = x.conv2d(&w, Some(&b), p);
        let (oh, ow) = (y.dim(2), y.dim(3));
        let gy = Tensor::<f32>::randn(y.shape(), &mut rng);
        let flops = 2 * xs[0] * ws[0] * ws[1] * ws[2] * ws[3] * oh * ow;
        g.throughput(Throughput::Elements(flops as u64));
        g.sample_size(if flops > 1 << 30 { 10 } else { 30 });

        g.bench_function(BenchmarkId::new("forward", label), |bn| bn.iter(|| x.conv2d(&w, Some(&b), p)));
        g.bench_function(BenchmarkId::new("backward_input", label), |bn| {
            bn.iter(|| Tensor::conv2d_backward_input(&gy, &w, [xs[2], xs[3]], p))
        });
        g.bench_function(BenchmarkId::new("backward_weight", label), |bn| {
            bn.iter(|| Tensor::conv2d_backward_weight(&gy, &x, [ws[2], ws[3]], p))
        });
        if label.starts_with("lenet1") {
            g.sample_size(10);
            g.bench_function(BenchmarkId::new("forward_naive", label), |bn| {
                bn.iter(|| naive::conv2d(&x, &w, Some(&b), p))
            });
            assert!(y.allclose(&naive::conv2d(&x, &w, Some(&b), p), 1e-4, 1e-4));
        }
    }
    g.finish();
}

criterion_group!(benches, conv);
criterion_main!(benches);
