//! Runs LeNet training steps in a loop for profiling (`perf record`, callgrind), printing the
//! time of each phase: `cargo run --release -p sparsegrad-bench --features timing --example lenet_profile -- [batch] [steps]`.

use std::time::Instant;

use autograd::optim::{Optimizer, Sgd};
use autograd::{Reduction, Tape};
use engine::{Rng, Tensor};
use models::LeNet;

fn main() {
    // IN_POOL=1: the whole loop on a pool thread, so kernels' parallel regions start on a worker.
    sparsegrad_bench::maybe_in_pool(run)
}

fn run() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("a number")).collect();
    let batch = args.first().copied().unwrap_or(64);
    let steps = args.get(1).copied().unwrap_or(20);
    let mut rng = Rng::new(0);
    let mut net = LeNet::<f32>::new(&mut rng);
    let mut opt = Sgd::new(0.01).momentum(0.9);
    let x = Tensor::<f32>::randn(&[batch, 1, 28, 28], &mut rng);
    let labels: Vec<usize> = (0..batch).map(|_| rng.below(10) as usize).collect();
    let (mut fwd, mut bwd, mut upd) = (vec![], vec![], vec![]);
    for _ in 0..steps {
        let t0 = Instant::now();
        let (t1, t2, grads) = {
            let tape = Tape::new();
            let p = net.params.bind(&tape);
            let logits = LeNet::forward(&p, &tape.constant(x.clone()));
            let loss = logits.cross_entropy(&labels, Reduction::Mean);
            let t1 = Instant::now();
            let grads = tape.backward(&loss).expect("backward");
            let g = net.params.grads(&grads, &p);
            (t1, Instant::now(), g)
        };
        opt.step(&mut net.params.values_mut(), &grads);
        let t3 = Instant::now();
        fwd.push((t1 - t0).as_secs_f64() * 1e3);
        bwd.push((t2 - t1).as_secs_f64() * 1e3);
        upd.push((t3 - t2).as_secs_f64() * 1e3);
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    println!(
        "batch {batch}, {} threads, median of {steps} steps: forward {:.2} ms, backward {:.2} ms, update {:.2} ms",
        rayon::current_num_threads(),
        med(&mut fwd),
        med(&mut bwd),
        med(&mut upd)
    );
}
