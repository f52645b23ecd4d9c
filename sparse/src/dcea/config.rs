//! What defines a DCEA, as plain data: the observation [`Family`], the [`Threshold`], the
//! step fold ([`PowerFold`]) and the [`DceaConfig`] holding them.

use autograd::Var;
use engine::kernels::elementwise::sigmoid;
use engine::{Element, Tensor};

/// The observation family: `y`'s domain, inverse link `f⁻¹` and negative log-likelihood.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Family {
    /// `y` real, `f⁻¹(η) = η`, NLL `½‖y − η‖²`.
    Gaussian,
    /// `y ∈ 0..=M` successes of `M = trials`, `f⁻¹(η) = M·σ(η)`, NLL `Σ M·log(1 + e^η) − y·η`.
    Binomial {
        /// `M`, the number of trials (positive; need not be an integer for the map itself).
        trials: f64,
    },
    /// `y ∈ {0, 1, 2, …}`, `f⁻¹(η) = e^η`, NLL `Σ e^η − y·η`.
    Poisson,
}

impl Family {
    /// `"gaussian"`, `"binomial"` or `"poisson"`.
    pub fn name(&self) -> &'static str {
        match self {
            Family::Gaussian => "gaussian",
            Family::Binomial { .. } => "binomial",
            Family::Poisson => "poisson",
        }
    }

    /// The mean `f⁻¹(η)` on the tape (`η` itself for the Gaussian: no node is recorded).
    pub fn mean<'t, T: Element>(&self, eta: &Var<'t, T>) -> Var<'t, T> {
        match *self {
            Family::Gaussian => *eta,
            Family::Binomial { trials: 1.0 } => eta.sigmoid(),
            Family::Binomial { trials } => eta.sigmoid().mul_scalar(trials),
            Family::Poisson => eta.exp(),
        }
    }

    /// `f⁻¹(η)` of a tensor (off the tape).
    pub fn mean_tensor<T: Element>(&self, eta: &Tensor<T>) -> Tensor<T> {
        match *self {
            Family::Gaussian => eta.clone(),
            Family::Binomial { trials } => {
                let m = T::of(trials);
                eta.map(move |v| m * sigmoid(v))
            }
            Family::Poisson => eta.exp(),
        }
    }

    /// `f⁻¹(0)`, the mean of a zero natural parameter (the residual of the first step).
    pub(super) fn mean_at_zero(&self) -> f64 {
        match *self {
            Family::Gaussian => 0.0,
            Family::Binomial { trials } => trials / 2.0,
            Family::Poisson => 1.0,
        }
    }
}

/// The proximal map `P_b` of the encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threshold {
    /// `ReLU(v − b)`: non-negative codes (the authors' `twosided: False`).
    /// Kink at `v = b`; the gradient there is 0 (relu'(0) = 0).
    OneSided,
    /// `S_b(v) = ReLU(v − b) − ReLU(−v − b)`, soft-thresholding for `b ≥ 0`.
    /// Kinks at `v = ±b`, where the gradient is 0.
    TwoSided,
}

/// How [`Dcea::new`](super::Dcea::new) folds the step into the filters: `H ← H/√L` with `L = factor × ‖M(u)‖`
/// from `iters` power iterations on `M(v) = Hᵀ f⁻¹(H v)` over the codes of an `image`-sized
/// input (see the module docs for the exact definition).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PowerFold {
    /// Iterations (the authors': 200).
    pub iters: usize,
    /// `[height, width]` of the input whose codes the iteration runs on (the authors':
    /// `[512, 512]`).
    pub image: [usize; 2],
    /// Safety factor on the estimate (the authors': 5).
    pub factor: f64,
    /// Seed of the standard-normal start vector.
    pub seed: u64,
}

impl Default for PowerFold {
    fn default() -> Self {
        PowerFold { iters: 200, image: [512, 512], factor: 5.0, seed: 0 }
    }
}

/// Everything that defines a DCEA, as plain data.
#[derive(Clone, Debug, PartialEq)]
pub struct DceaConfig {
    pub family: Family,
    /// `K`, the number of filters.
    pub filters: usize,
    /// Channels of the input (1 for grayscale images and 1-D signals).
    pub channels: usize,
    /// `[kh, kw]` of every filter (`[1, k]` for 1-D signals stored as `[N, C, 1, L]`).
    pub kernel: [usize; 2],
    /// Stride `s` of `H x` (conv_transpose2d) and `Hᵀ r` (conv2d), both axes.
    pub stride: usize,
    /// `T`, the number of unfolded steps.
    pub iters: usize,
    /// One bank `H` (true) or three banks `H`, `We`, `Wd` (false).
    pub tied: bool,
    /// The proximal map `P_b`.
    pub threshold: Threshold,
    /// Initial value of every entry of `b`.
    pub b_init: f64,
    /// The step `α` (1 when the step is folded into the filters).
    pub step: f64,
    /// `Some(a)`: the residual passes through `ELU_a` before `Weᵀ` (the authors use `a = peak`
    /// for Poisson).
    pub elu_alpha: Option<f64>,
    /// Evaluate all `s²` reflect-padded shifts and average their decoder outputs (the authors'
    /// handling of a stride `s > 1`; ignored for `s = 1`).
    pub shifts: bool,
    /// Fold the step into the filters at initialisation (`None`: unit-norm filters, the step
    /// is [`DceaConfig::step`]).
    pub fold: Option<PowerFold>,
    /// The Poisson peak `P` of the denoising experiment (data scaling `Q = max/P`), if any.
    pub peak: Option<f64>,
}

impl DceaConfig {
    /// A DCEA with `filters` filters of `kernel`, one channel, stride 1, `T = 15`, tied,
    /// one-sided threshold with `b = 0.1`, step 1 folded by the default [`PowerFold`], no ELU.
    pub fn new(family: Family, filters: usize, kernel: [usize; 2]) -> DceaConfig {
        DceaConfig {
            family,
            filters,
            channels: 1,
            kernel,
            stride: 1,
            iters: 15,
            tied: true,
            threshold: Threshold::OneSided,
            b_init: 0.1,
            step: 1.0,
            elu_alpha: None,
            shifts: false,
            fold: Some(PowerFold::default()),
            peak: None,
        }
    }

    /// The authors' Poisson denoising configuration (`conf.py`,
    /// `poisson_ista15_stride7_peak{P}_11x11_169_onesided_{tied,free}_random_elu`): 169
    /// filters of 11×11, stride 7 with the 49 shifts, `T = 15` ISTA steps, one-sided threshold,
    /// `ELU_P` on the residual, `b = 0.1` at peak 4 and 0.01 at peaks 1 and 2 (0.1 for peaks
    /// ≥ 4 and 0.01 below, for other peaks), step folded by 200 power iterations on a 512×512
    /// input with `L = 5×` the estimate.
    ///
    /// **Panics** unless `peak` is finite and positive.
    #[track_caller]
    pub fn poisson_denoising(peak: f64, tied: bool) -> DceaConfig {
        assert!(peak.is_finite() && peak > 0.0, "DceaConfig::poisson_denoising: peak must be positive, got {peak}");
        DceaConfig {
            family: Family::Poisson,
            filters: 169,
            channels: 1,
            kernel: [11, 11],
            stride: 7,
            iters: 15,
            tied,
            threshold: Threshold::OneSided,
            b_init: if peak >= 4.0 { 0.1 } else { 0.01 },
            step: 1.0,
            elu_alpha: Some(peak),
            shifts: true,
            fold: Some(PowerFold::default()),
            peak: Some(peak),
        }
    }

    pub fn stride(self, stride: usize) -> Self {
        DceaConfig { stride, ..self }
    }
    pub fn iters(self, iters: usize) -> Self {
        DceaConfig { iters, ..self }
    }
    pub fn tied(self, tied: bool) -> Self {
        DceaConfig { tied, ..self }
    }
    pub fn channels(self, channels: usize) -> Self {
        DceaConfig { channels, ..self }
    }
    pub fn threshold(self, threshold: Threshold, b_init: f64) -> Self {
        DceaConfig { threshold, b_init, ..self }
    }
    pub fn step(self, step: f64) -> Self {
        DceaConfig { step, ..self }
    }
    pub fn elu(self, alpha: Option<f64>) -> Self {
        DceaConfig { elu_alpha: alpha, ..self }
    }
    pub fn shifts(self, shifts: bool) -> Self {
        DceaConfig { shifts, ..self }
    }
    pub fn fold(self, fold: Option<PowerFold>) -> Self {
        DceaConfig { fold, ..self }
    }

    /// True when the input is evaluated at the `s²` shifts.
    pub fn uses_shifts(&self) -> bool {
        self.shifts && self.stride > 1
    }

    /// Shape of the filter banks, `[K, C, kh, kw]` (a conv2d weight, and the conv_transpose2d
    /// weight of the decoder).
    pub fn filter_shape(&self) -> [usize; 4] {
        [self.filters, self.channels, self.kernel[0], self.kernel[1]]
    }

    /// **Panics** (naming the field) if a size is 0, the step, `b_init` or a fold factor is
    /// not finite and positive (non-negative for `b_init`), `M ≤ 0`, or the ELU's `a ≤ 0`.
    #[track_caller]
    pub fn validate(&self) {
        let c = self;
        assert!(
            c.filters > 0 && c.channels > 0 && c.kernel[0] > 0 && c.kernel[1] > 0,
            "DceaConfig: filters, channels and kernel must be positive, got {} filters, {} channels, kernel {:?}",
            c.filters,
            c.channels,
            c.kernel
        );
        assert!(
            c.stride > 0 && c.iters > 0,
            "DceaConfig: stride and iters must be positive, got {} and {}",
            c.stride,
            c.iters
        );
        assert!(c.step.is_finite() && c.step > 0.0, "DceaConfig: step must be positive, got {}", c.step);
        assert!(c.b_init.is_finite() && c.b_init >= 0.0, "DceaConfig: b_init must be non-negative, got {}", c.b_init);
        if let Family::Binomial { trials } = c.family {
            assert!(trials.is_finite() && trials > 0.0, "DceaConfig: Binomial trials must be positive, got {trials}");
        }
        if let Some(a) = c.elu_alpha {
            assert!(a.is_finite() && a > 0.0, "DceaConfig: the ELU's alpha must be positive, got {a}");
        }
        if let Some(f) = c.fold {
            assert!(
                f.iters > 0 && f.factor.is_finite() && f.factor > 0.0,
                "DceaConfig: fold needs iters > 0 and a positive factor, got {f:?}"
            );
        }
    }
}
