//! Poisson denoising: the authors' data scaling, the noisy observations, the estimate, the
//! tape-free [`denoise`] and PSNR; and the jittered observations of the gradient checks.

use autograd::Var;
use engine::{Element, Rng, Tensor};

use super::config::Family;
use super::forward::dcea_forward;
use super::params::Dcea;
use crate::error::SparseError;

/// The authors' scaling of an image in `[0, 1]` for peak `P`: `Q = max(image)/P`.
pub fn poisson_scale<T: Element>(image: &Tensor<T>, peak: f64) -> f64 {
    image.to_f64_vec().iter().fold(0.0f64, |m, &v| m.max(v)) / peak
}

/// Counts `y ~ Poisson(image/Q)`, element by element, from `rng`.
///
/// **Panics** if `q` is not positive or a rate is negative or not finite.
#[track_caller]
pub fn poisson_observation<T: Element>(image: &Tensor<T>, q: f64, rng: &mut Rng) -> Tensor<T> {
    assert!(q > 0.0, "poisson_observation: Q must be positive, got {q}");
    let rates = image.contiguous().into_vec();
    let counts = rates
        .iter()
        .map(|&r| {
            let l = r.as_f64() / q;
            assert!(l.is_finite() && l >= 0.0, "poisson_observation: rate {l} is not a finite non-negative number");
            T::of(rng.poisson(l) as f64)
        })
        .collect();
    Tensor::from_vec(counts, image.shape())
}

/// The denoised estimate `Q·exp(η̂)`.
pub fn poisson_estimate<'t, T: Element>(eta: &Var<'t, T>, q: f64) -> Var<'t, T> {
    eta.exp().mul_scalar(q)
}

/// DCEA's denoised estimate from its weights and noisy observations `noisy` `[N, C, H, W]`,
/// with no tape to manage: the mean `f⁻¹(η̂)` of the observations that [`dcea_forward`] gives
/// (the average over the shifts included), computed on an inference tape
/// ([`autograd::infer`]) that records nothing and frees each iterate once the next is
/// computed. Bit for bit `model.config.family.mean(&dcea_forward(..).eta)` on a recording
/// tape. For the authors' Poisson denoising, the image estimate is `Q·` this
/// ([`poisson_estimate`], `Q` from [`poisson_scale`]).
///
/// # Errors
/// [`SparseError::NonFinite`] if an observation is NaN or ±∞ (`row` its flat index).
/// **Panics** as [`dcea_forward`] if the shape does not fit the configuration.
///
/// ```
/// use engine::{Rng, Tensor};
/// use sparsegrad_sparse::dcea::{denoise, poisson_estimate, poisson_observation, Dcea, DceaConfig, Family, PowerFold};
/// let cfg = DceaConfig::new(Family::Poisson, 4, [3, 3])
///     .fold(Some(PowerFold { iters: 10, image: [12, 12], ..PowerFold::default() }));
/// let mut rng = Rng::new(1);
/// let model = Dcea::<f32>::new(cfg, &mut rng).unwrap();
/// let image = Tensor::<f32>::full(&[1, 1, 12, 12], 0.5);
/// let q = 0.125; // peak 4
/// let noisy = poisson_observation(&image, q, &mut rng);
/// let mean = denoise(&model, &noisy).unwrap();
/// assert_eq!(mean.shape(), &[1, 1, 12, 12]);
/// let estimate = mean.mul_scalar(q); // Q·exp(η̂)
/// assert!(estimate.to_vec().iter().all(|v| v.is_finite() && *v > 0.0));
/// ```
pub fn denoise<T: Element>(model: &Dcea<T>, noisy: &Tensor<T>) -> Result<Tensor<T>, SparseError> {
    if let Some((i, v)) = noisy.to_f64_vec().iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(SparseError::NonFinite { op: "dcea::denoise", what: "observation", row: i, col: 0, value: *v });
    }
    Ok(autograd::infer(|tape| {
        let p = model.bind(tape);
        let out = dcea_forward(&p, &tape.constant(noisy.clone()), &model.config);
        model.config.family.mean(&out.eta)
    }))
}

/// Observations of `family` for gradient checks: reals (Gaussian), or counts (Poisson with
/// mean 1.5, Binomial with its `trials`) plus a jitter in (0.1, 0.9), so that the ELU argument
/// of the first step, `y − f⁻¹(0)`, is never on its kink and `y` itself can be checked.
pub fn jittered_observations(family: Family, shape: &[usize], rng: &mut Rng) -> Tensor<f64> {
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|_| match family {
            Family::Gaussian => rng.normal(),
            Family::Binomial { trials } => rng.below(trials as u64 + 1) as f64 + rng.uniform_in(0.1, 0.9),
            Family::Poisson => rng.poisson(1.5) as f64 + rng.uniform_in(0.1, 0.9),
        })
        .collect();
    Tensor::from_vec(v, shape)
}

/// PSNR as the authors compute it: `20·log10(max(image)) − 10·log10(mse(image, estimate))`.
///
/// **Panics** if the shapes differ.
#[track_caller]
pub fn psnr<T: Element>(image: &Tensor<T>, estimate: &Tensor<T>) -> f64 {
    assert_eq!(image.shape(), estimate.shape(), "psnr: shapes differ");
    let (a, b) = (image.to_f64_vec(), estimate.to_f64_vec());
    let mse = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>() / a.len().max(1) as f64;
    let max = a.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
    20.0 * max.log10() - 10.0 * mse.log10()
}
