//! DCEA (deep convolutional exponential-family auto-encoder, Poisson) denoising: a small
//! `dcea` trained for a few steps on grey MNIST digits with Poisson noise at peak 4 (the
//! supervised loss ‖Q·η̂(y) − x‖² of the paper), then a test image denoised on an inference
//! tape — the first of the DCEA paper's test images when `shared/data/denoise` is present, a
//! held-out digit otherwise — with the PSNR of the noisy and the denoised image.
//!
//! `cargo run --release -p sparsegrad-models --example dcea`

use autograd::optim::{Adam, Optimizer};
use autograd::Tape;
use datasets::{embedded, Dataset, ImageSet, Mnist};
use engine::{Rng, Tensor};
use sparse::dcea::{poisson_observation, poisson_scale};
use sparsegrad_models::layers::Mode;
use sparsegrad_models::nets::{Model, NetConfig};

const PEAK: f64 = 4.0;

fn main() -> Result<(), String> {
    let dir = datasets::data_root(env!("CARGO_MANIFEST_DIR"));
    let split = Mnist::open(dir.join("mnist")).unwrap_or_else(|_| embedded::mnist_subset());
    // A small DCEA (the paper's is 169 filters 11×11, stride 7, 15 iterations).
    let cfg = NetConfig::new("dcea")?
        .option("peak", PEAK)
        .option("tied", true)
        .option("filters", 32)
        .option("kernel", 7)
        .option("stride", 4)
        .option("iters", 5)
        .option("fold_image", 64)
        .input([1, 28, 28]);
    let mut rng = Rng::new(0);
    let mut model = Model::<f32>::new(&cfg, &mut rng)?;
    let mut opt = Adam::new(1e-3);
    for step in 0..60u64 {
        // A batch of 8 digits, their Poisson counts and the scale Q of each.
        let (mut x, mut y, mut q) = (vec![], vec![], vec![]);
        for _ in 0..8 {
            let img = grey(&split.train, rng.below(split.train.len() as u64) as usize);
            let qi = poisson_scale(&img, PEAK).max(1e-6);
            y.extend(poisson_observation(&img, qi, &mut rng).to_vec());
            x.extend(img.to_vec());
            q.extend(std::iter::repeat_n(qi as f32, 28 * 28));
        }
        let shape = [8, 1, 28, 28];
        let tape = Tape::new();
        let cx = model.store.bind(&tape, Mode::Train, step);
        let rate = model.forward(&cx, &tape.constant(Tensor::from_vec(y, &shape))).map_err(|e| e.to_string())?;
        let est = rate.mul(&tape.constant(Tensor::from_vec(q, &shape)));
        let loss = est.sub(&tape.constant(Tensor::from_vec(x, &shape))).square().mean_all();
        if step % 20 == 0 {
            println!("step {step:3}: loss {:.5}", loss.item());
        }
        let g = cx.grads(&tape.backward(&loss).map_err(|e| e.to_string())?);
        cx.finish(&mut model.store);
        drop(tape);
        model.store.step(&mut opt as &mut dyn Optimizer<f32>, &g);
    }

    // Denoise one test image: no tape is kept (`Model::predict` runs an inference tape).
    let (clean, what) = match datasets::open_pgm(dir.join("denoise/house.pgm")) {
        Ok(t) => (centre(&t, 64), "house.pgm (centre 64×64)"),
        Err(_) => (grey(&split.test, 0), "a test digit"),
    };
    let q = poisson_scale(&clean, PEAK).max(1e-6);
    let noisy = poisson_observation(&clean, q, &mut Rng::new(1));
    let denoised = model.predict(&noisy).map_err(|e| e.to_string())?.mul_scalar(q);
    let noisy_est = noisy.mul_scalar(q);
    println!(
        "{what}, peak {PEAK}: noisy {:.2} dB, denoised {:.2} dB ({} parameters)",
        psnr(&noisy_est, &clean),
        psnr(&denoised, &clean),
        model.store.count()
    );
    Ok(())
}

/// Image `i` of `set` in grey `[0, 1]` as `[1, 1, H, W]`.
fn grey(set: &ImageSet, i: usize) -> Tensor<f32> {
    let v = set.image_u8(i);
    let [_, h, w] = v.shape();
    let px = (0..h * w).map(|p| v.get(0, p / w, p % w) as f32 / 255.0).collect();
    Tensor::from_vec(px, &[1, 1, h, w])
}

/// The centre `side × side` crop of a `[1, 1, H, W]` image.
fn centre(t: &Tensor<f32>, side: usize) -> Tensor<f32> {
    let (h, w) = (t.shape()[2], t.shape()[3]);
    let (s, (y0, x0)) = (side.min(h).min(w), ((h - side.min(h)) / 2, (w - side.min(w)) / 2));
    let v = t.to_vec();
    let px = (0..s * s).map(|p| v[(y0 + p / s) * w + x0 + p % s]).collect();
    Tensor::from_vec(px, &[1, 1, s, s])
}

/// PSNR in dB of `est` against `clean` (peak 1), the estimate clipped to `[0, 1]`.
fn psnr(est: &Tensor<f32>, clean: &Tensor<f32>) -> f64 {
    let (a, b) = (est.to_vec(), clean.to_vec());
    let mse =
        a.iter().zip(&b).map(|(&e, &c)| (e.clamp(0.0, 1.0) as f64 - c as f64).powi(2)).sum::<f64>() / a.len() as f64;
    10.0 * (1.0 / mse).log10()
}
