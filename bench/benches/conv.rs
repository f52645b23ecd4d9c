//! conv2d forward and its two adjoints (input gradient, weight gradient) at the LeNet shapes
//! (batch 64: `[64,1,28,28] * [20,1,5,5]`, `[64,20,12,12] * [50,20,5,5]`, and the 4×4 "FC"
//! layer `[64,50,4,4] * [500,50,4,4]`), a CIFAR shape (`[64,64,32,32] * [64,64,3,3]` with
//! padding 1) and the CSC layer's analysis convolution 3 → 64 (`[64,3,32,32] * [64,3,3,3]` with
//! padding 1), all from `sparsegrad_bench::CONV_SHAPES`; and the CSC layer's synthesis operator,
//! `conv_transpose2d` 64 → 3 (`[64,64,32,32]` with weight `[64,3,3,3]`, padding 1), with its
//! input and weight gradients. The naive reference `engine::kernels::conv::naive::conv2d` (f64,
//! one term at a time) runs on the first LeNet shape only.
//!
//! Throughput is in FLOP (2·N·O·C·kh·kw·OH·OW per pass, the same for all three; for the
//! transposed convolution the same count over its input), so criterion's "Gelem/s" reads as
//! GFLOP/s. The PyTorch counterpart is `bench/peers/kernels.py --what conv`.
//! Groups: `conv_t{threads}`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine::kernels::conv::naive;
use engine::{Conv2dParams, ConvTranspose2dParams, Rng, Tensor};
use sparsegrad_bench::{group_name, CONV_SHAPES, CONV_TRANSPOSE_SHAPE};

fn conv(c: &mut Criterion) {
    let mut g = c.benchmark_group(group_name("conv"));
    let mut rng = Rng::new(3);
    for (label, xs, ws, pad) in CONV_SHAPES {
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
    let (label, zs, ws, pad) = CONV_TRANSPOSE_SHAPE;
    let p = ConvTranspose2dParams::new().padding(pad);
    let z = Tensor::<f32>::randn(&zs, &mut rng);
    let w = Tensor::<f32>::randn(&ws, &mut rng);
    let y = z.conv_transpose2d(&w, None, p);
    let gy = Tensor::<f32>::randn(y.shape(), &mut rng);
    let flops = 2 * zs[0] * ws[0] * ws[1] * ws[2] * ws[3] * zs[2] * zs[3];
    g.throughput(Throughput::Elements(flops as u64));
    g.sample_size(30);
    g.bench_function(BenchmarkId::new("forward", label), |bn| bn.iter(|| z.conv_transpose2d(&w, None, p)));
    g.bench_function(BenchmarkId::new("backward_input", label), |bn| {
        bn.iter(|| Tensor::conv_transpose2d_backward_input(&gy, &w, [zs[2], zs[3]], p))
    });
    g.bench_function(BenchmarkId::new("backward_weight", label), |bn| {
        bn.iter(|| Tensor::conv_transpose2d_backward_weight(&z, &gy, [ws[2], ws[3]], p))
    });
    g.finish();
}

criterion_group!(benches, conv);
criterion_main!(benches);
