//! One MNIST LeNet training step, exactly the workload of `../shared/peers/lenet_step.py`
//! (PyTorch / JAX) and the candle and burn peers: conv 5×5 1→20, max-pool 2/2, conv 5×5
//! 20→50, max-pool 2/2, conv 4×4 50→500, ReLU, linear 500→10, mean softmax cross-entropy,
//! backward, SGD with lr 0.01 and momentum 0.9. Input N(0, 1) `[B, 1, 28, 28]`, random
//! labels, batches 64 and 256. The network is `models::LeNet` (PyTorch's default init).
//!
//! Each iteration is one full step, `models::train::classifier_step`: a fresh tape, the
//! parameters bound as leaves, forward, loss, backward, the tape dropped, then the optimiser
//! updates the parameters in place.
//! Two variants: `sgd_momentum` calls the step from the main thread (what a plain program
//! does); `sgd_momentum_in_pool` runs the same steps inside `rayon::ThreadPool::install`.
//! Run with `RAYON_NUM_THREADS=2` (the target) and `=1`. Groups: `lenet_step_t{threads}`;
//! throughput is in images.

use autograd::optim::Sgd;
use std::time::Instant;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine::{Rng, Tensor};
use models::train::classifier_step;
use models::LeNet;
use sparsegrad_bench::group_name;

/// One step (`models::train::classifier_step`, what `sparsegrad train` runs); returns the
/// loss before the update.
fn step(net: &mut LeNet<f32>, opt: &mut Sgd<f32>, x: &Tensor<f32>, labels: &[usize]) -> f64 {
    classifier_step(&mut net.params, opt, LeNet::forward, x, labels).expect("LeNet step").0
}

fn lenet_step(c: &mut Criterion) {
    let mut g = c.benchmark_group(group_name("lenet_step"));
    g.sample_size(20);
    for batch in [64usize, 256] {
        let mut rng = Rng::new(0);
        let mut net = LeNet::<f32>::new(&mut rng);
        let mut opt = Sgd::new(0.01).momentum(0.9);
        let x = Tensor::<f32>::randn(&[batch, 1, 28, 28], &mut rng);
        let labels: Vec<usize> = (0..batch).map(|_| rng.below(10) as usize).collect();
        g.throughput(Throughput::Elements(batch as u64));
        let first = step(&mut net, &mut opt, &x, &labels);
        assert!(first.is_finite() && (first - 10f64.ln()).abs() < 0.5, "initial loss {first}");
        g.bench_function(BenchmarkId::new("sgd_momentum", batch), |b| b.iter(|| step(&mut net, &mut opt, &x, &labels)));
        // The same steps run from a thread of the rayon pool (as `pool.install(|| train())`
        // would): the kernels' parallel loops then start without waking a pool thread and
        // putting the caller to sleep, which costs ~0.1 ms per kernel call on this VM.
        let pool = rayon::ThreadPoolBuilder::new().build().expect("a rayon pool");
        g.bench_function(BenchmarkId::new("sgd_momentum_in_pool", batch), |b| {
            b.iter_custom(|iters| {
                pool.install(|| {
                    let t0 = Instant::now();
                    for _ in 0..iters {
                        black_box(step(&mut net, &mut opt, &x, &labels));
                    }
                    t0.elapsed()
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, lenet_step);
criterion_main!(benches);
