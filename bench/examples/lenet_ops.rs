//! Times every engine kernel a LeNet training step runs, in the order the tape runs them, to
//! show where the step's time goes: `cargo run --profile bench -p sparsegrad-bench --example
//! lenet_ops -- [batch] [reps]` (`IN_POOL=1` to run on a rayon pool thread). Prints one line per
//! kernel (median ms) and the share of the total.

use std::time::Instant;

use engine::kernels::softmax::Reduction;
use engine::{Conv2dParams, Pool2dParams, Rng, Tensor};

fn main() {
    // IN_POOL=1: everything on a pool thread, so kernels' parallel regions start on a worker.
    sparsegrad_bench::maybe_in_pool(run)
}

fn run() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("a number")).collect();
    let batch = args.first().copied().unwrap_or(64);
    let reps = args.get(1).copied().unwrap_or(10);
    let mut rng = Rng::new(0);
    let t = |s: &[usize], rng: &mut Rng| Tensor::<f32>::randn(s, rng).mul_scalar(0.1);
    let (w1, b1, w2, b2) =
        (t(&[20, 1, 5, 5], &mut rng), t(&[20], &mut rng), t(&[50, 20, 5, 5], &mut rng), t(&[50], &mut rng));
    let (w3, b3, w4, b4) =
        (t(&[500, 50, 4, 4], &mut rng), t(&[500], &mut rng), t(&[10, 500], &mut rng), t(&[10], &mut rng));
    let x = Tensor::<f32>::randn(&[batch, 1, 28, 28], &mut rng);
    let labels: Vec<usize> = (0..batch).map(|_| rng.below(10) as usize).collect();
    let (cp, pp) = (Conv2dParams::new(), Pool2dParams::new(2));

    let mut times: Vec<(&'static str, Vec<f64>)> = vec![];
    let mut rec = |name: &'static str, f: &mut dyn FnMut()| {
        let t0 = Instant::now();
        f();
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        match times.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => v.push(ms),
            None => times.push((name, vec![ms])),
        }
    };
    for _ in 0..reps {
        // forward
        let mut h1 = Tensor::zeros(&[0]);
        rec("fwd conv1", &mut || h1 = x.conv2d(&w1, Some(&b1), cp));
        let mut p1 = (Tensor::zeros(&[0]), vec![]);
        rec("fwd pool1", &mut || p1 = h1.max_pool2d(pp));
        let mut h2 = Tensor::zeros(&[0]);
        rec("fwd conv2", &mut || h2 = p1.0.conv2d(&w2, Some(&b2), cp));
        let mut p2 = (Tensor::zeros(&[0]), vec![]);
        rec("fwd pool2", &mut || p2 = h2.max_pool2d(pp));
        let mut h3 = Tensor::zeros(&[0]);
        rec("fwd conv3", &mut || h3 = p2.0.conv2d(&w3, Some(&b3), cp));
        let mut r3 = Tensor::zeros(&[0]);
        rec("fwd relu", &mut || r3 = h3.relu());
        let f = r3.reshape(&[batch, 500]);
        let mut logits = Tensor::zeros(&[0]);
        rec("fwd fc matmul+add", &mut || logits = f.matmul(&w4.t()).add(&b4));
        let mut ce = (Tensor::zeros(&[0]), Tensor::zeros(&[0]));
        rec("fwd cross_entropy", &mut || ce = logits.cross_entropy_with_log_softmax(&labels, Reduction::Mean));
        // backward
        let mut gl = Tensor::zeros(&[0]);
        rec("bwd cross_entropy", &mut || {
            gl = ce.1.exp().sub(&Tensor::zeros(&[batch, 10])).mul_scalar(1.0 / batch as f64)
        });
        let mut gb4 = Tensor::zeros(&[0]);
        rec("bwd fc bias sum_to", &mut || gb4 = gl.sum(&[0], false));
        let mut gf = Tensor::zeros(&[0]);
        rec("bwd fc matmul dX", &mut || gf = gl.matmul(&w4));
        let mut gw4 = Tensor::zeros(&[0]);
        rec("bwd fc matmul dW", &mut || gw4 = f.t().matmul(&gl).t().contiguous());
        let g3 = gf.reshape(&[batch, 500, 1, 1]);
        let mut gr = Tensor::zeros(&[0]);
        rec("bwd relu", &mut || gr = g3.zip_map(&h3, "relu", |g, x| if x > 0.0 { g } else { 0.0 }));
        let mut gb3 = Tensor::zeros(&[0]);
        rec("bwd conv3 bias", &mut || gb3 = gr.sum(&[0, 2, 3], false));
        let mut gw3 = Tensor::zeros(&[0]);
        rec("bwd conv3 weight", &mut || gw3 = Tensor::conv2d_backward_weight(&gr, &p2.0, [4, 4], cp));
        let mut gx3 = Tensor::zeros(&[0]);
        rec("bwd conv3 input", &mut || gx3 = Tensor::conv2d_backward_input(&gr, &w3, [4, 4], cp));
        let mut gp2 = Tensor::zeros(&[0]);
        rec("bwd pool2", &mut || gp2 = Tensor::max_pool2d_backward(&gx3, &p2.1, [batch, 50, 8, 8]));
        let mut gb2 = Tensor::zeros(&[0]);
        rec("bwd conv2 bias", &mut || gb2 = gp2.sum(&[0, 2, 3], false));
        let mut gw2 = Tensor::zeros(&[0]);
        rec("bwd conv2 weight", &mut || gw2 = Tensor::conv2d_backward_weight(&gp2, &p1.0, [5, 5], cp));
        let mut gx2 = Tensor::zeros(&[0]);
        rec("bwd conv2 input", &mut || gx2 = Tensor::conv2d_backward_input(&gp2, &w2, [12, 12], cp));
        let mut gp1 = Tensor::zeros(&[0]);
        rec("bwd pool1", &mut || gp1 = Tensor::max_pool2d_backward(&gx2, &p1.1, [batch, 20, 24, 24]));
        let mut gb1 = Tensor::zeros(&[0]);
        rec("bwd conv1 bias", &mut || gb1 = gp1.sum(&[0, 2, 3], false));
        let mut gw1 = Tensor::zeros(&[0]);
        rec("bwd conv1 weight", &mut || gw1 = Tensor::conv2d_backward_weight(&gp1, &x, [5, 5], cp));
        let mut gx1 = Tensor::zeros(&[0]);
        rec("bwd conv1 input (unneeded)", &mut || gx1 = Tensor::conv2d_backward_input(&gp1, &w1, [28, 28], cp));
        std::hint::black_box((gb4, gw4, gb3, gw3, gb2, gw2, gb1, gw1, gx1));
    }
    let med = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let total: f64 = times.iter().map(|(_, v)| med(v)).sum();
    println!("batch {batch}, {} threads; medians of {reps} reps; total {total:.2} ms", rayon::current_num_threads());
    for (name, v) in &times {
        println!("  {name:<28} {:>8.3} ms  {:>5.1}%", med(v), 100.0 * med(v) / total);
    }
}
