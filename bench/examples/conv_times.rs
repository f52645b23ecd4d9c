//! Times the convolution kernels at the shapes of `benches/conv.rs` on a 1-thread and a
//! 2-thread rayon pool, call by call in turn (so that a shared machine's drifts hit both
//! alike). Prints per case the best and median wall time of each pool, the 2-thread speed-up,
//! and the median CPU time of the 1-thread calls (`CLOCK_THREAD_CPUTIME_ID`, which does not
//! count time spent waiting for a CPU: the figure to compare kernel variants with
//! when the machine is busy). Checks that both pools give the same bits.
//! `cargo run --profile bench -p sparsegrad-bench --features timing --example conv_times -- [reps] [filter]`

use std::time::Instant;

use engine::{Conv2dParams, ConvTranspose2dParams, Rng, Tensor};

type Kernel<'a> = Box<dyn Fn() -> Tensor<f32> + Sync + 'a>;

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

fn time(name: &str, reps: usize, pools: &[rayon::ThreadPool], f: &(dyn Fn() -> Tensor<f32> + Sync)) {
    let bits: Vec<Vec<u32>> =
        pools.iter().map(|p| p.install(|| f().to_vec().into_iter().map(f32::to_bits).collect())).collect();
    assert!(bits[0] == bits[1], "{name}: 1 and 2 threads differ");
    let (mut wall, mut cpu) = (vec![vec![]; 2], vec![]);
    for _ in 0..reps {
        for (i, p) in pools.iter().enumerate() {
            p.install(|| {
                let (t0, c0) = (Instant::now(), sparsegrad_bench::cpu_ms(true));
                std::hint::black_box(f());
                wall[i].push(t0.elapsed().as_secs_f64() * 1e3);
                if i == 0 {
                    cpu.push(sparsegrad_bench::cpu_ms(true) - c0);
                }
            });
        }
    }
    let (w1, w2, c1) = (sorted(wall[0].clone()), sorted(wall[1].clone()), sorted(cpu));
    println!(
        "{name:44} 1 thread: best {:8.3} median {:8.3} ms, cpu {:8.3} | 2 threads: best {:8.3} median {:8.3} | speed-up {:.2}",
        w1[0],
        w1[reps / 2],
        c1[reps / 2],
        w2[0],
        w2[reps / 2],
        w1[0] / w2[0]
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let reps: usize = args.first().map(|a| a.parse().expect("a number")).unwrap_or(20);
    let filter = args.get(1).cloned().unwrap_or_default();
    let pools: Vec<rayon::ThreadPool> =
        [1, 2].iter().map(|&t| rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap()).collect();
    println!("{reps} alternating calls per pool; load {}", std::fs::read_to_string("/proc/loadavg").unwrap().trim());
    let mut rng = Rng::new(3);
    let wanted = |name: &str| name.contains(&filter);
    for (label, xs, ws, pad) in sparsegrad_bench::CONV_SHAPES {
        if !["forward", "backward_input", "backward_weight"].iter().any(|c| wanted(&format!("{label} {c}"))) {
            continue;
        }
        let p = Conv2dParams::new().padding(pad);
        let x = Tensor::<f32>::randn(&xs, &mut rng);
        let w = Tensor::<f32>::randn(&ws, &mut rng);
        let b = Tensor::<f32>::randn(&[ws[0]], &mut rng);
        let gy = Tensor::<f32>::randn(x.conv2d(&w, None, p).shape(), &mut rng);
        let cases: [(&str, Kernel); 3] = [
            ("forward", Box::new(|| x.conv2d(&w, Some(&b), p))),
            ("backward_input", Box::new(|| Tensor::conv2d_backward_input(&gy, &w, [xs[2], xs[3]], p))),
            ("backward_weight", Box::new(|| Tensor::conv2d_backward_weight(&gy, &x, [ws[2], ws[3]], p))),
        ];
        for (c, f) in &cases {
            let name = format!("{label} {c}");
            if wanted(&name) {
                time(&name, reps, &pools, f.as_ref());
            }
        }
    }
    // The CSC layer's transposed convolution 64 → 3 (weight [64, 3, 3, 3], padding 1).
    let label = sparsegrad_bench::CONV_TRANSPOSE_SHAPE.0;
    if ["forward", "backward_input", "backward_weight"].iter().any(|c| wanted(&format!("{label} {c}"))) {
        let (_, zs, ws, pad) = sparsegrad_bench::CONV_TRANSPOSE_SHAPE;
        let tp = ConvTranspose2dParams::new().padding(pad);
        let z = Tensor::<f32>::randn(&zs, &mut rng);
        let w = Tensor::<f32>::randn(&ws, &mut rng);
        let gy = Tensor::<f32>::randn(z.conv_transpose2d(&w, None, tp).shape(), &mut rng);
        let cases: [(&str, Kernel); 3] = [
            ("forward", Box::new(|| z.conv_transpose2d(&w, None, tp))),
            ("backward_input", Box::new(|| Tensor::conv_transpose2d_backward_input(&gy, &w, [zs[2], zs[3]], tp))),
            ("backward_weight", Box::new(|| Tensor::conv_transpose2d_backward_weight(&z, &gy, [ws[2], ws[3]], tp))),
        ];
        for (c, f) in &cases {
            let name = format!("{label} {c}");
            if wanted(&name) {
                time(&name, reps, &pools, f.as_ref());
            }
        }
    }
}
