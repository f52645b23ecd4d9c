//! One SGD-momentum training step (forward, mean cross-entropy, backward, update) of the
//! papers' networks on random data: the workload of `../shared/peers/networks.py`, timed the
//! way a user's program calls the library (from the main thread, no special allocator).
//!
//! Run: `cargo run --release -p sparsegrad-bench --features timing --example networks_step -- [NETS] [BATCH] [SECONDS]`
//! (`RAYON_NUM_THREADS=1` or `2` for the thread count; NETS comma-separated, default
//! `lenet,resnet20,sdnet20,nin,ds-nin`). Prints one JSON line per network: ms per step
//! (median, min, max after 2 warm-up steps), images/s, parameter count.

use std::time::Instant;

use autograd::optim::Sgd;
use autograd::{Reduction, Tape};
use engine::{Rng, Tensor};
use models::layers::Mode;
use models::nets::{Model, NetConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let nets = args.first().map(String::as_str).unwrap_or("lenet,resnet20,sdnet20,nin,ds-nin");
    let batch: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(64);
    let budget: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1.5);
    for name in nets.split(',') {
        let cfg = NetConfig::new(name).unwrap_or_else(|e| panic!("{e}"));
        let mut model = Model::<f32>::new(&cfg, &mut Rng::new(0)).unwrap();
        let [c, h, w] = cfg.input;
        let mut rng = Rng::new(1);
        let x = Tensor::<f32>::randn(&[batch, c, h, w], &mut rng);
        let labels: Vec<usize> = (0..batch).map(|_| rng.below(cfg.classes as u64) as usize).collect();
        let mut opt = Sgd::new(0.01).momentum(0.9);
        let mut last = 0.0;
        let mut step = |model: &mut Model<f32>| {
            let g = {
                let tape = Tape::new();
                let cx = model.store.bind(&tape, Mode::Train, 0);
                let loss =
                    model.forward(&cx, &tape.constant(x.clone())).unwrap().cross_entropy(&labels, Reduction::Mean);
                last = loss.item();
                let g = cx.grads(&tape.backward(&loss).unwrap());
                cx.finish(&mut model.store);
                g
            };
            model.store.step(&mut opt, &g);
        };
        for _ in 0..2 {
            step(&mut model);
        }
        let mut ts = vec![];
        let t_all = Instant::now();
        while ts.len() < 3 || (t_all.elapsed().as_secs_f64() < budget && ts.len() < 60) {
            let t0 = Instant::now();
            step(&mut model);
            ts.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        ts.sort_by(f64::total_cmp);
        let n = ts.len();
        let med = if n % 2 == 1 { ts[n / 2] } else { 0.5 * (ts[n / 2 - 1] + ts[n / 2]) };
        println!(
            "{{\"lib\": \"sparsegrad\", \"net\": \"{name}\", \"batch\": {batch}, \"threads\": {}, \"ms_median\": {med:.3}, \"ms_min\": {:.3}, \"ms_max\": {:.3}, \"reps\": {n}, \"img_per_s\": {:.1}, \"params\": {}, \"loss_after\": {last:.4}}}",
            rayon::current_num_threads(),
            ts[0],
            ts[n - 1],
            batch as f64 / med * 1e3,
            model.store.count()
        );
    }
}
