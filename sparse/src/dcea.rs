//! The deep convolutional exponential auto-encoder (DCEA) of docs/math.md §4 (Tolooshams, Song,
//! Temereanca & Ba, ICML 2020), for Gaussian, Binomial and Poisson observations, tied and
//! untied, with the authors' Poisson denoising configuration ([`DceaConfig::poisson_denoising`]).
//!
//! Generative model: `y ~ p(y | μ)` with natural parameter `η = H x` (`H` a bank of `K`
//! convolutional filters applied as `conv_transpose2d` with stride `s`, `x` sparse) and mean
//! `μ = f⁻¹(η)` ([`Family`]). The encoder unfolds `T` proximal-gradient steps,
//!
//! ```text
//! x₀ = 0,   x_t = P_b( x_{t−1} + α·Weᵀ ρ( y − f⁻¹(H x_{t−1}) ) )
//! ```
//!
//! with `P_b` the threshold ([`Threshold`]: `ReLU(v − b)` one-sided, `S_b(v)` two-sided), `b`
//! a learned vector of `K` thresholds shared by the iterations, `ρ` the identity or `ELU_a`
//! ([`DceaConfig::elu_alpha`]), `α` the step ([`DceaConfig::step`]). The decoder is
//! `η̂ = Wd x_T`, the mean `f⁻¹(η̂)`. Tied: `We = Wd = H`; untied: three banks, initialised
//! equal ([`Dcea::new`]).
//!
//! Everything is recorded on the tape, one fused rule per step: [`dcea_iteration`] carries the
//! pre-threshold codes `v_t` (`x_t = P_b(v_t)`) from step to step, `v_t = x_{t−1} + α·Weᵀ
//! ρ(y − f⁻¹(H x_{t−1}))`, and [`dcea_decode`] gives `Wd P_b(v_T)` ([`dcea_threshold`] the code
//! `x_T` of the output). Carrying `v` rather than `x` puts the threshold inside the rule that
//! also applies `H`, so the gradient of `H x` in `x`, which `P_b`'s derivative zeroes outside
//! the support of `x`, is computed on that support only (a sparse gather,
//! [`Tensor::conv_transpose2d_backward_input_where`], instead of a dense convolution), exactly.
//! The rules keep a sparse code as the list of its nonzeros (dense only where an engine
//! convolution takes it). Each rule is audited by central differences ([`crate::audit`]) and
//! checked, as the whole model, against [`dcea_forward_composite`], the same map built from
//! elementary audited ops only (`tests/dcea.rs`, to 1e-12). The gradient is exact wherever no
//! threshold or ELU argument sits on its kink; [`dcea_forward_traced`] reports, in
//! [`DceaStats`], how far every such argument was from its kink. The three negative
//! log-likelihoods are fused rules too ([`nll`]), audited and checked against their
//! composites.
//!
//! ## Stride: the shifts of the authors' code
//! With stride `s > 1` and [`DceaConfig::shifts`], the image is evaluated at all `s²` shifts
//! as one batch, exactly as the authors' `split_image`: padding `s` on the top and left,
//! `s + ((s − (H + s − k) mod s) mod s)` on the bottom and right (so that `(Hp − k)` is a
//! multiple of `s`), shift `(r, c)` (row-major, `r, c < s`) reflect-padded by `s − r` on top,
//! `pad_bottom + r` at the bottom, `s − c` left, `pad_right + c` right. The decoder output
//! `η̂` of each shift is cropped to the pixels of the image and the `s²` crops are averaged
//! (before `f⁻¹`). The batch is shift-major here (entry `k·N + n` is shift `k` of image `n`;
//! the authors' is image-major, which changes nothing but the order).
//!
//! ## Step: folded into H by a power iteration (the authors' `conv_power_method`)
//! With [`DceaConfig::fold`], [`Dcea::new`] normalises each filter to unit Frobenius norm and
//! then divides the bank by `√L`, with `L = factor ×` the estimate of a power iteration on the
//! nonlinear map `M(v) = Hᵀ f⁻¹(H v)` over the codes of one `image`-sized input. The
//! authors' code (`src/utils.py`, `conv_power_method`) defines the iteration of a nonlinear
//! map this way, which is followed here exactly: start from a standard-normal `v`, repeat
//! `iters` times `v ← v / ‖v‖, v ← M(v)` (no convergence test), and return `‖v‖`, i.e. `‖M(u)‖`
//! at the last unit iterate `u` (not a Rayleigh quotient; for a nonlinear `M` the two differ).
//! The codes have `⌊(image − k)/s⌋ + 1` rows and columns, and `H v` is a `conv_transpose2d`
//! without output padding, as there. [`engine::linalg::power_iteration`] runs the loop
//! (with `tol = 0`, so it makes exactly `iters` applications); the norm of its last
//! application is the estimate.

use autograd::{Backward, Grads, Reduction, Retain, Tape, Var};
use engine::kernels::elementwise::{sigmoid, softplus};
use engine::linalg::{power_iteration, PowerOptions};
use engine::{Conv2dParams, ConvTranspose2dParams, Element, Rng, Tensor};
use rayon::prelude::*;

use crate::error::SparseError;

// ---------------------------------------------------------------------------------------------
// Configuration

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
    fn mean_at_zero(&self) -> f64 {
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

/// How [`Dcea::new`] folds the step into the filters: `H ← H/√L` with `L = factor × ‖M(u)‖`
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

// ---------------------------------------------------------------------------------------------
// Parameters

/// A DCEA's parameters, by name: `dcea.H` `[K, C, kh, kw]`, and when untied `dcea.We` and
/// `dcea.Wd` of the same shape; `dcea.b` `[K]`.
#[derive(Clone, Debug)]
pub struct Dcea<T: Element> {
    pub config: DceaConfig,
    /// `dcea.H`: the dictionary of the loop's `f⁻¹(H x)` (and of every product when tied).
    pub h: Tensor<T>,
    /// `dcea.We`: the encoder bank of the `Weᵀ` step (untied only).
    pub we: Option<Tensor<T>>,
    /// `dcea.Wd`: the decoder bank of `η̂ = Wd x_T` (untied only).
    pub wd: Option<Tensor<T>>,
    /// `dcea.b`: one threshold per filter, shared by the iterations.
    pub b: Tensor<T>,
    /// `L` (factor included) when the step was folded into the filters.
    pub lipschitz: Option<f64>,
}

impl<T: Element> Dcea<T> {
    /// A DCEA with standard-normal filters drawn from `rng`, then as [`Dcea::from_filters`].
    ///
    /// # Errors
    /// Those of [`Dcea::from_filters`].
    /// **Panics** if the configuration is invalid ([`DceaConfig::validate`]).
    #[track_caller]
    pub fn new(config: DceaConfig, rng: &mut Rng) -> Result<Dcea<T>, SparseError> {
        config.validate();
        let h = Tensor::randn(&config.filter_shape(), rng);
        Dcea::from_filters(config, h)
    }

    /// A DCEA initialised from the filters `h` `[K, C, kh, kw]`: each filter is scaled to unit
    /// Frobenius norm (as the authors do with random or given filters), then, with
    /// [`DceaConfig::fold`], the bank is divided by `√L` (module docs). `We` and `Wd` start
    /// equal to `H`; every entry of `b` is `b_init`.
    ///
    /// # Errors
    /// [`SparseError::NonFinite`] if a filter is zero or not finite, [`SparseError::BadStep`] if
    /// the power iteration's `L` is not finite and positive, and the power iteration's own
    /// errors (an operator value that overflowed).
    /// **Panics** if the configuration is invalid or `h` does not have the filter shape.
    #[track_caller]
    pub fn from_filters(config: DceaConfig, h: Tensor<T>) -> Result<Dcea<T>, SparseError> {
        config.validate();
        let shape = config.filter_shape();
        assert_eq!(h.shape(), &shape, "Dcea::from_filters: filters must be {shape:?}");
        let per = shape[1] * shape[2] * shape[3];
        let mut data = h.contiguous().into_vec();
        for (k, f) in data.chunks_mut(per).enumerate() {
            let n = f.iter().map(|v| v.as_f64() * v.as_f64()).sum::<f64>().sqrt();
            if !(n.is_finite() && n > 0.0) {
                return Err(SparseError::NonFinite { op: "dcea", what: "filter norm", row: k, col: 0, value: n });
            }
            f.iter_mut().for_each(|v| *v = T::of(v.as_f64() / n));
        }
        let mut h = Tensor::from_vec(data, &shape);
        let mut lipschitz = None;
        if let Some(fold) = config.fold {
            let l = fold_lipschitz(&h, &config, &fold)?;
            h = h.div_scalar(l.sqrt());
            lipschitz = Some(l);
        }
        let (we, wd) = if config.tied { (None, None) } else { (Some(h.deep_clone()), Some(h.deep_clone())) };
        let b = Tensor::full(&[config.filters], T::of(config.b_init));
        Ok(Dcea { config, h, we, wd, b, lipschitz })
    }

    /// The parameter names, in the order of [`Dcea::params`]: `dcea.H`, (`dcea.We`,
    /// `dcea.Wd` when untied), `dcea.b`.
    pub fn names(&self) -> Vec<String> {
        let mut n = vec!["dcea.H".to_string()];
        if !self.config.tied {
            n.extend(["dcea.We".to_string(), "dcea.Wd".to_string()]);
        }
        n.push("dcea.b".to_string());
        n
    }

    /// The parameters in the order of [`Dcea::names`].
    pub fn params(&self) -> Vec<&Tensor<T>> {
        let mut p = vec![&self.h];
        p.extend(self.we.iter().chain(&self.wd));
        p.push(&self.b);
        p
    }

    /// The parameters, mutably, in the order of [`Dcea::names`] (for an optimiser step).
    pub fn params_mut(&mut self) -> Vec<&mut Tensor<T>> {
        let mut p = vec![&mut self.h];
        p.extend(self.we.iter_mut().chain(self.wd.iter_mut()));
        p.push(&mut self.b);
        p
    }

    /// The parameters as named leaves of `tape`.
    pub fn bind<'t>(&self, tape: &'t Tape<T>) -> DceaParams<'t, T> {
        let h = tape.leaf_named(self.h.clone(), "dcea.H");
        let (we, wd) = match (&self.we, &self.wd) {
            (Some(we), Some(wd)) => (tape.leaf_named(we.clone(), "dcea.We"), tape.leaf_named(wd.clone(), "dcea.Wd")),
            _ => (h, h),
        };
        let b = tape.leaf_named(self.b.clone(), "dcea.b");
        DceaParams { h, we, wd, b, tied: self.config.tied }
    }
}

/// A DCEA's parameters on a tape. Tied: `we` and `wd` are `h` itself.
#[derive(Clone, Copy, Debug)]
pub struct DceaParams<'t, T: Element> {
    pub h: Var<'t, T>,
    pub we: Var<'t, T>,
    pub wd: Var<'t, T>,
    pub b: Var<'t, T>,
    pub tied: bool,
}

impl<'t, T: Element> DceaParams<'t, T> {
    /// The variables in the order of [`Dcea::names`].
    pub fn vars(&self) -> Vec<Var<'t, T>> {
        if self.tied {
            vec![self.h, self.b]
        } else {
            vec![self.h, self.we, self.wd, self.b]
        }
    }

    /// Their gradients in the order of [`Dcea::names`] (for [`autograd::optim::Optimizer`]).
    pub fn grads(&self, g: &Grads<T>) -> Vec<Option<Tensor<T>>> {
        self.vars().iter().map(|v| g.get(v).cloned()).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Forward

/// What the encoder did, beside its output. The margins are the distances of the kink
/// arguments from their kinks, so a gradient check can tell whether central differences are
/// valid (every margin well above the perturbation).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DceaStats {
    /// Per iteration, the fraction of code entries that are nonzero after the threshold.
    pub active: Vec<f64>,
    /// Per iteration, `min |arg|` over the threshold's arguments: `v − b` (one-sided) or
    /// `|v| − b` (two-sided), `v = x + α·Weᵀ r`.
    pub threshold_margin: Vec<f64>,
    /// Per iteration, `min |arg|` over the ELU's arguments `y − f⁻¹(H x_{t−1})` where
    /// `H x_{t−1} ≠ 0` (empty without an ELU; ∞ at `t = 0`, where `H x₀ = 0`). Where
    /// `H x_{t−1} = 0` exactly, every code reaching the pixel is 0 and stays 0 under a small
    /// change of the parameters, so the argument `y − f⁻¹(0)` moves with `y` only: see
    /// [`DceaStats::elu_margin_at_zero`].
    pub elu_margin: Vec<f64>,
    /// `min |y − f⁻¹(0)|` over the (shifted) input: the ELU arguments where `H x = 0` (∞
    /// without an ELU). Integer counts with `f⁻¹(0) = 1` (Poisson) make it 0.
    pub elu_margin_at_zero: f64,
}

impl DceaStats {
    /// The smallest margin over every kink, for a check of the gradients with respect to
    /// the parameters and `y`.
    pub fn kink_margin(&self) -> f64 {
        self.parameter_kink_margin().min(self.elu_margin_at_zero)
    }

    /// The smallest margin over the kinks whose arguments move with the parameters (`H`,
    /// `We`, `Wd`, `b`) when `y` is fixed.
    pub fn parameter_kink_margin(&self) -> f64 {
        self.threshold_margin.iter().chain(&self.elu_margin).fold(f64::INFINITY, |m, &v| m.min(v))
    }
}

/// The output of [`dcea_forward`].
#[derive(Clone, Debug)]
pub struct DceaOutput<'t, T: Element> {
    /// `η̂` `[N, C, H, W]` (the average over the shifts when they are used).
    pub eta: Var<'t, T>,
    /// The code `x_T` `[N', K, h', w']` (`N' = s²·N` with shifts, shift-major).
    pub code: Var<'t, T>,
    /// The diagnostics, from [`dcea_forward_traced`] only.
    pub stats: Option<DceaStats>,
}

/// A scope returning the output keeps `eta` and `code` ([`Tape::scope`]).
impl<T: Element> Retain for DceaOutput<'_, T> {
    fn retained(&self, ids: &mut Vec<autograd::NodeId>) {
        self.eta.retained(ids);
        self.code.retained(ids);
    }
}

/// Paddings of the shifts: `(top, bottom)` for the rows and `(left, right)` for the columns of
/// shift `(0, 0)`; shift `(r, c)` uses `(top − r, bottom + r)` and `(left − c, right + c)`.
fn shift_pads(size: usize, k: usize, s: usize) -> (usize, usize) {
    let rem = (size + s - k) % s;
    let after = if rem == 0 { 0 } else { s - rem };
    (s, after + s)
}

/// Reflect index (PyTorch `mode="reflect"`, the edge not repeated) of padded position `p` for
/// an axis of length `n` padded by `before`.
fn reflect(p: usize, before: usize, n: usize) -> usize {
    let i = p as isize - before as isize;
    let last = n as isize - 1;
    let j = if i < 0 {
        -i
    } else if i > last {
        2 * last - i
    } else {
        i
    };
    j as usize
}

/// The `s²` reflect-padded shifts of `y` `[N, C, H, W]` as one batch `[s²·N, C, Hp, Wp]`
/// (shift-major), on the tape: one `index_select` per axis builds the widest padding, each
/// shift is a window of it, and the windows are concatenated.
///
/// **Panics** if a reflect padding is not smaller than the image (as PyTorch).
#[track_caller]
pub fn shift_batch<'t, T: Element>(y: &Var<'t, T>, kernel: [usize; 2], s: usize) -> Var<'t, T> {
    let sh = y.shape();
    let (h, w) = (sh[2], sh[3]);
    let (top, bottom) = shift_pads(h, kernel[0], s);
    let (left, right) = shift_pads(w, kernel[1], s);
    assert!(
        bottom + s - 1 < h && right + s - 1 < w,
        "dcea shifts: reflect padding up to {} rows and {} columns needs an image larger than that, got {h}×{w}",
        bottom + s - 1,
        right + s - 1
    );
    let (hp, wp) = (top + h + bottom, left + w + right);
    let rows: Vec<usize> = (0..hp + s - 1).map(|p| reflect(p, top, h)).collect();
    let cols: Vec<usize> = (0..wp + s - 1).map(|p| reflect(p, left, w)).collect();
    // The padded image and its windows are freed once concatenated (where no rule needs them).
    y.tape().scope(|| {
        let wide = y.index_select(2, &rows).index_select(3, &cols);
        let windows: Vec<Var<'t, T>> = (0..s * s).map(|k| wide.narrow(2, k / s, hp).narrow(3, k % s, wp)).collect();
        Var::concat(&windows, 0)
    })
}

/// The average over the `s²` shifts of the decoder outputs `eta` `[s²·N, C, Hp, Wp]`, each
/// cropped to the pixels of the `[H, W]` image (the inverse placement of [`shift_batch`]):
/// `[N, C, H, W]`.
#[track_caller]
pub fn shift_mean<'t, T: Element>(eta: &Var<'t, T>, image: [usize; 2], kernel: [usize; 2], s: usize) -> Var<'t, T> {
    let (top, _) = shift_pads(image[0], kernel[0], s);
    let (left, _) = shift_pads(image[1], kernel[1], s);
    let n = eta.dim(0) / (s * s);
    // The crops and partial sums are freed at the end (where no rule needs them).
    eta.tape().scope(|| {
        let mut sum: Option<Var<'t, T>> = None;
        for k in 0..s * s {
            let (r, c) = (k / s, k % s);
            let crop = eta.narrow(0, k * n, n).narrow(2, top - r, image[0]).narrow(3, left - c, image[1]);
            sum = Some(match sum {
                None => crop,
                Some(acc) => acc.add(&crop),
            });
        }
        sum.expect("s ≥ 1").div_scalar((s * s) as f64)
    })
}

/// `min |u|` over the entries where `eta ≠ 0` and `min |u|` over all entries, for the ELU
/// arguments `u` of one step, in parallel.
fn elu_margins<T: Element>(u: &[T], eta: &[T]) -> (f64, f64) {
    u.par_chunks(1 << 15)
        .zip(eta.par_chunks(1 << 15))
        .map(|(u, e)| {
            u.iter().zip(e).fold((f64::INFINITY, f64::INFINITY), |(m, all), (&u, &e)| {
                let a = u.as_f64().abs();
                (if e != T::zero() { m.min(a) } else { m }, all.min(a))
            })
        })
        .reduce(|| (f64::INFINITY, f64::INFINITY), |a, b| (a.0.min(b.0), a.1.min(b.1)))
}

/// The fixed settings of one unfolded step ([`dcea_iteration`], [`dcea_decode`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepSpec {
    /// The observation family (`f⁻¹` and its derivative).
    pub family: Family,
    /// The ELU's `a` on the residual, if any.
    pub elu: Option<f64>,
    /// `α`.
    pub step: f64,
    /// `P_b`, one- or two-sided.
    pub threshold: Threshold,
    /// The convolution of `Weᵀ·` (the stride).
    pub conv: Conv2dParams,
    /// The transposed convolution of `H·` (stride and output padding).
    pub convt: ConvTranspose2dParams,
}

impl StepSpec {
    /// The settings of `cfg` with the convolutions of [`prepare`].
    fn of(cfg: &DceaConfig, conv: Conv2dParams, convt: ConvTranspose2dParams) -> StepSpec {
        StepSpec { family: cfg.family, elu: cfg.elu_alpha, step: cfg.step, threshold: cfg.threshold, conv, convt }
    }
}

/// `∂u = g·ρ'(u)` from the output `r = ρ(u)`: `ρ'(u) = 1` (no ELU, or `u > 0`, i.e. `r > 0`)
/// and `r + a` (`= a·eᵘ`, the ELU's own backward) for `u ≤ 0`.
fn residual_grad<T: Element>(g: Tensor<T>, r: &Tensor<T>, elu: Option<f64>) -> Tensor<T> {
    match elu {
        None => g,
        Some(a) => {
            let a = T::of(a);
            g.zip_map(r, "dcea_iteration", move |g, r| if r > T::zero() { g } else { g * (r + a) })
        }
    }
}

/// `∂η = −g·f⁻¹'(η)` for `u = y − f⁻¹(η)`, from the mean `μ = f⁻¹(η)`: `f⁻¹' = 1`,
/// `M·σ(1 − σ) = μ·(1 − μ/M)`, `e^η = μ`.
fn mean_grad<T: Element>(g: &Tensor<T>, mu: &Tensor<T>, family: Family) -> Tensor<T> {
    match family {
        Family::Gaussian => g.neg(),
        Family::Binomial { trials } => {
            let m = T::of(trials);
            g.zip_map(mu, "dcea_iteration", move |g, mu| -g * (mu * (T::one() - mu / m)))
        }
        Family::Poisson => g.zip_map(mu, "dcea_iteration", |g, mu| -g * mu),
    }
}

/// `P_b(v)` of one entry of filter `bk`, with the threshold's argument (`v − b`, or `|v| − b`).
#[inline]
fn prox<T: Element>(v: T, bk: T, threshold: Threshold) -> (T, T) {
    match threshold {
        Threshold::OneSided => {
            let up = v - bk;
            (up, if up > T::zero() { up } else { T::zero() })
        }
        Threshold::TwoSided => {
            let up = v.abs() - bk;
            (up, if up > T::zero() { engine::kernels::elementwise::sign(v) * up } else { T::zero() })
        }
    }
}

/// The thresholds `b` `[K]` as values, checked against the `K` filters of `code` `[N, K, h, w]`.
#[track_caller]
fn thresholds<T: Element>(op: &str, b: &Tensor<T>, code: &Tensor<T>) -> Vec<T> {
    let bv = b.contiguous().into_vec();
    assert!(
        code.rank() == 4 && bv.len() == code.dim(1),
        "{op}: b has {} entries for codes {:?} (one per filter, dimension 1)",
        bv.len(),
        code.shape()
    );
    bv
}

/// The nonzero entries of a code `x = P_b(v)` `[N, K, h, w]`, plane by plane (plane `p` has
/// filter `p mod K`): DCEA's codes are sparse, so the rules read and write these lists instead
/// of making dense passes over the codes.
#[derive(Clone)]
struct Code<T> {
    shape: Vec<usize>,
    plane: usize,
    /// Per plane, `(position in the plane, x)` for every `x ≠ 0`, in order.
    nonzeros: Vec<Vec<(usize, T)>>,
}

impl<T: Element> Code<T> {
    /// `P_b(v)`, one threshold per filter (`b` checked by [`thresholds`]); one pass over `v`.
    fn of(v: &Tensor<T>, b: &[T], threshold: Threshold) -> Code<T> {
        let vc = v.contiguous();
        let (k, plane) = (b.len(), v.dim(2) * v.dim(3));
        let nonzeros = if plane == 0 {
            Vec::new()
        } else {
            vc.as_slice()
                .expect("contiguous")
                .par_chunks(plane)
                .enumerate()
                .map(|(p, vp)| {
                    let bk = b[p % k];
                    let mut nz = Vec::new();
                    // A run of 16 is skipped with one branch-free test: `v − b > 0` exactly when
                    // `v > b` (and `|v| − b > 0` when `|v| > b`), NaN included.
                    for (r, run) in vp.chunks(16).enumerate() {
                        let any = match threshold {
                            Threshold::OneSided => run.iter().fold(false, |a, &e| a | (e > bk)),
                            Threshold::TwoSided => run.iter().fold(false, |a, &e| a | (e.abs() > bk)),
                        };
                        if any {
                            for (t, &e) in run.iter().enumerate() {
                                let x = prox(e, bk, threshold).1;
                                if x != T::zero() {
                                    nz.push((r * 16 + t, x));
                                }
                            }
                        }
                    }
                    nz
                })
                .collect()
        };
        Code { shape: v.shape().to_vec(), plane, nonzeros }
    }

    /// Whether the list is small enough to be kept by a rule for its backward (at most one
    /// entry in 16 nonzero; else the backward recomputes it from `v`).
    fn worth_keeping(&self) -> bool {
        self.nonzeros.iter().map(Vec::len).sum::<usize>() * 16 <= self.shape.iter().product::<usize>()
    }

    /// This list if it was kept, else `P_b(v)` computed again.
    fn kept_or<'a>(
        kept: &'a Option<Code<T>>,
        v: &Tensor<T>,
        b: &Tensor<T>,
        threshold: Threshold,
        op: &str,
    ) -> std::borrow::Cow<'a, Code<T>> {
        match kept {
            Some(c) => std::borrow::Cow::Borrowed(c),
            None => std::borrow::Cow::Owned(Code::of(v, &thresholds(op, b, v), threshold)),
        }
    }

    /// `x` as a dense tensor.
    fn dense(&self) -> Tensor<T> {
        let mut x = engine::filled(self.shape.iter().product(), T::zero());
        self.add_to(&mut x);
        Tensor::from_vec(x, &self.shape)
    }

    /// `out += x` for a contiguous code-shaped `out`.
    fn add_to(&self, out: &mut [T]) {
        if self.plane > 0 {
            out.par_chunks_mut(self.plane).zip(&self.nonzeros).for_each(|(o, nz)| {
                nz.iter().for_each(|&(i, x)| o[i] += x);
            });
        }
    }

    /// The gradients of `x = P_b(v)` from `∂x = g + c`, both code-shaped, `c` (when given)
    /// exactly zero outside the support of `x` (it becomes `∂v`): `∂v = [x ≠ 0]·∂x` and
    /// `∂b_k = −Σ ∂v·sign(x)` over the planes of filter `k` (the kinks count as inactive, as
    /// relu'(0) = 0), visiting the support only.
    fn grads(&self, g: Option<&Tensor<T>>, c: Option<Tensor<T>>, k: usize) -> (Tensor<T>, Tensor<T>) {
        let gc = g.map(|g| g.contiguous());
        let gs = gc.as_ref().map(|g| g.as_slice().expect("contiguous"));
        let mut dv = c.map(|c| c.contiguous()).unwrap_or_else(|| Tensor::zeros(&self.shape));
        let per_plane: Vec<T> = if self.plane == 0 {
            Vec::new()
        } else {
            let plane = self.plane;
            dv.make_mut()
                .par_chunks_mut(plane)
                .zip(&self.nonzeros)
                .enumerate()
                .map(|(p, (d, nz))| {
                    nz.iter().fold(T::zero(), |db, &(i, x)| {
                        if let Some(gs) = gs {
                            d[i] += gs[p * plane + i];
                        }
                        if x < T::zero() {
                            db + d[i]
                        } else {
                            db - d[i]
                        }
                    })
                })
                .collect()
        };
        let mut db = vec![T::zero(); k];
        for (p, v) in per_plane.into_iter().enumerate() {
            db[p % k] += v;
        }
        (dv, Tensor::from_vec(db, &[k]))
    }
}

/// The rule of [`dcea_iteration`]: inputs `(v, y, H, We, b)` (or `(y, We)` at the first
/// step), output `v⁺ = x + α·conv2d(r, We)` with `x = P_b(v)`, `η = H x`, `r = ρ(y − f⁻¹(η))`.
/// With `gc = α·g`: `∂We = conv2d_backward_weight(gc, r)`, `∂r = conv2d_backward_input(gc,
/// We)`, `∂y = ∂r·ρ'(u)`, `∂η = −∂y·f⁻¹'(η)`, `∂H = conv_transpose2d_backward_weight(x, ∂η)`,
/// `∂x = g + Hᵀ∂η`, needed on the support of `x` only (`∂v = [x ≠ 0]·∂x`), where it is
/// computed (`conv_transpose2d_backward_input_where`), and `∂b` from `∂v` ([`Code::grads`]).
struct IterationBackward<T: Element> {
    /// Whether `v` (and `H`, `b`) are inputs; absent at the first step, where `x₀ = 0`.
    has_v: bool,
    spec: StepSpec,
    /// `μ = f⁻¹(η)`, `η = H x` (`f⁻¹(0)` at the first step).
    mu: Tensor<T>,
    /// The code `x = P_b(v)` when it is sparse enough to keep ([`Code::worth_keeping`]).
    code: Option<Code<T>>,
    /// `r = ρ(y − f⁻¹(η))`.
    r: Tensor<T>,
}

impl<T: Element> Backward<T> for IterationBackward<T> {
    fn name(&self) -> &str {
        "dcea_iteration"
    }
    fn backward(
        &self,
        g: &Tensor<T>,
        inputs: &[&Tensor<T>],
        _output: &Tensor<T>,
        needed: &[bool],
    ) -> autograd::Result<Vec<Option<Tensor<T>>>> {
        let s = &self.spec;
        let (iy, iwe) = if self.has_v { (1, 3) } else { (0, 1) };
        let (y, we) = (inputs[iy], inputs[iwe]);
        let through_v = self.has_v && (needed[0] || needed[2] || needed[4]);
        let gc = if s.step == 1.0 { g.clone() } else { g.mul_scalar(s.step) };
        let d_we = needed[iwe].then(|| Tensor::conv2d_backward_weight(&gc, &self.r, [we.dim(2), we.dim(3)], s.conv));
        let d_u = (needed[iy] || through_v).then(|| {
            let d_r = Tensor::conv2d_backward_input(&gc, we, [y.dim(2), y.dim(3)], s.conv);
            residual_grad(d_r, &self.r, s.elu)
        });
        let mut out = vec![None; inputs.len()];
        if through_v {
            let (v, h, b) = (inputs[0], inputs[2], inputs[4]);
            let d_eta = mean_grad(d_u.as_ref().expect("computed when v is needed"), &self.mu, s.family);
            let code = Code::kept_or(&self.code, v, b, s.threshold, "dcea_iteration");
            let x = code.dense();
            out[2] =
                needed[2].then(|| Tensor::conv_transpose2d_backward_weight(&x, &d_eta, [h.dim(2), h.dim(3)], s.convt));
            if needed[0] || needed[4] {
                let c = Tensor::conv_transpose2d_backward_input_where(&d_eta, h, &x, s.convt);
                let (dv, db) = code.grads(Some(g), Some(c), b.numel());
                out[0] = needed[0].then_some(dv);
                out[4] = needed[4].then(|| db.reshape(b.shape()));
            }
        }
        out[iwe] = d_we;
        if needed[iy] {
            out[iy] = d_u;
        }
        Ok(out)
    }
}

/// What [`dcea_iteration`] measured with `trace`: the ELU margins `(min |u| where η ≠ 0,
/// min |u|)` (∞ without an ELU), the threshold margin of its output `min |v⁺ − b|` (one-sided)
/// or `min ||v⁺| − b|` (two-sided), and the number of nonzero entries of `P_b(v⁺)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IterationStats {
    pub elu_margin: f64,
    pub elu_margin_all: f64,
    pub threshold_margin: f64,
    pub active: usize,
}

/// One encoder step on the pre-threshold codes, `v⁺ = P_b(v) + α·Weᵀ ρ(y − f⁻¹(H P_b(v)))`
/// (`v = None` is `x₀ = 0`, `v⁺ = α·Weᵀ ρ(y − f⁻¹(0))`), as one fused rule (`dcea_iteration`).
/// The encoder's `x_t = P_b(v_t)`; carrying `v` instead of `x` from step to step is what lets
/// the rule compute the gradient of `H x` in `x` only where `x ≠ 0` (a sparse gather instead
/// of a dense convolution: every other entry is zeroed by `P_b`'s derivative), exactly. The
/// convolutions are the engine's (sparse kernels for the sparse `x` and the sparse gradients),
/// the rest is applied in place on the conv2d's output, with the composite's arithmetic. The
/// rule keeps `η` and `r` (image-sized); `x` is recomputed from `v` in the backward.
///
/// `H`, `We` `[K, C, kh, kw]`, `b` `[K]` (used only for the trace at the first step), `y`
/// `[N, C, H, W]`, `v` the conv2d's output shape. With `trace`, also returns the
/// [`IterationStats`] (a few extra passes).
///
/// **Panics** if the shapes do not fit.
#[track_caller]
#[allow(clippy::too_many_arguments)]
pub fn dcea_iteration<'t, T: Element>(
    v: Option<&Var<'t, T>>,
    y: &Var<'t, T>,
    h: &Var<'t, T>,
    we: &Var<'t, T>,
    b: &Var<'t, T>,
    spec: StepSpec,
    trace: bool,
) -> (Var<'t, T>, IterationStats) {
    const OP: &str = "dcea_iteration";
    let yv = y.value();
    let (code, eta) = match v {
        None => (None, Tensor::zeros(yv.shape())),
        Some(v) => {
            let vv = v.value();
            let code = Code::of(&vv, &thresholds(OP, &b.value(), &vv), spec.threshold);
            let eta = code.dense().conv_transpose2d(&h.value(), None, spec.convt);
            assert_eq!(
                eta.shape(),
                yv.shape(),
                "{OP}: H·P_b(v) {:?} must have y's shape {:?}",
                eta.shape(),
                yv.shape()
            );
            (Some(code), eta)
        }
    };
    let mu = spec.family.mean_tensor(&eta);
    let u = yv.sub(&mu);
    let (mut elu_margin, mut elu_margin_all) = (f64::INFINITY, f64::INFINITY);
    if trace && spec.elu.is_some() {
        let uc = u.contiguous();
        (elu_margin, elu_margin_all) =
            elu_margins(uc.as_slice().expect("contiguous"), eta.as_slice().expect("contiguous"));
    }
    let r = match spec.elu {
        Some(a) => u.elu(a),
        None => u,
    };
    let mut c = r.conv2d(&we.value(), None, spec.conv);
    if let Some(code) = &code {
        assert_eq!(code.shape, c.shape(), "{OP}: v {:?} must have the code shape {:?}", code.shape, c.shape());
    }
    let bv = thresholds(OP, &b.value(), &c);
    let (k, plane) = (c.dim(1), c.dim(2) * c.dim(3));
    let out = c.make_mut();
    if spec.step != 1.0 {
        let alpha = T::of(spec.step);
        out.par_chunks_mut(1 << 15).for_each(|o| o.iter_mut().for_each(|e| *e *= alpha));
    }
    if let Some(code) = &code {
        code.add_to(out);
    }
    let (threshold_margin, active) = if !trace || plane == 0 {
        (f64::INFINITY, 0)
    } else {
        out.par_chunks(plane)
            .enumerate()
            .map(|(p, vp)| {
                vp.iter().fold((f64::INFINITY, 0usize), |(m, active), &e| {
                    let (arg, val) = prox(e, bv[p % k], spec.threshold);
                    (m.min(arg.as_f64().abs()), active + (val != T::zero()) as usize)
                })
            })
            .reduce(|| (f64::INFINITY, 0), |a, b| (a.0.min(b.0), a.1 + b.1))
    };
    let inputs: Vec<Var<'t, T>> = match v {
        Some(v) => vec![*v, *y, *h, *we, *b],
        None => vec![*y, *we],
    };
    let code = code.filter(Code::worth_keeping);
    let rule = IterationBackward { has_v: v.is_some(), spec, mu, code, r };
    let stats = IterationStats { elu_margin, elu_margin_all, threshold_margin, active };
    (y.tape().push_op(c, &inputs, rule), stats)
}

/// The rule of [`dcea_decode`]: inputs `(v, Wd, b)`, output `η̂ = conv_transpose2d(P_b(v),
/// Wd)`. `∂Wd = conv_transpose2d_backward_weight(x, g)`, `∂v = [x ≠ 0]·Wdᵀg` computed on the
/// support of `x` only, `∂b` from `∂v` ([`Code::grads`]).
struct DecodeBackward<T> {
    threshold: Threshold,
    convt: ConvTranspose2dParams,
    /// `P_b(v)` if kept ([`Code::worth_keeping`]).
    code: Option<Code<T>>,
}

impl<T: Element> Backward<T> for DecodeBackward<T> {
    fn name(&self) -> &str {
        "dcea_decode"
    }
    fn backward(
        &self,
        g: &Tensor<T>,
        inputs: &[&Tensor<T>],
        _output: &Tensor<T>,
        needed: &[bool],
    ) -> autograd::Result<Vec<Option<Tensor<T>>>> {
        let (v, wd, b) = (inputs[0], inputs[1], inputs[2]);
        let code = Code::kept_or(&self.code, v, b, self.threshold, "dcea_decode");
        let x = code.dense();
        let mut out = vec![None, None, None];
        out[1] = needed[1].then(|| Tensor::conv_transpose2d_backward_weight(&x, g, [wd.dim(2), wd.dim(3)], self.convt));
        if needed[0] || needed[2] {
            let c = Tensor::conv_transpose2d_backward_input_where(g, wd, &x, self.convt);
            let (dv, db) = code.grads(None, Some(c), b.numel());
            out[0] = needed[0].then_some(dv);
            out[2] = needed[2].then(|| db.reshape(b.shape()));
        }
        Ok(out)
    }
}

/// The decoder on the pre-threshold codes, `η̂ = conv_transpose2d(P_b(v), Wd)`, as one fused
/// rule (`dcea_decode`) whose gradient in `v` is computed on the support of `P_b(v)` only
/// (see [`dcea_iteration`]).
///
/// **Panics** if the shapes do not fit (`v` `[N, K, h, w]`, `Wd` `[K, C, kh, kw]`, `b` `[K]`).
#[track_caller]
pub fn dcea_decode<'t, T: Element>(
    v: &Var<'t, T>,
    wd: &Var<'t, T>,
    b: &Var<'t, T>,
    threshold: Threshold,
    convt: ConvTranspose2dParams,
) -> Var<'t, T> {
    let vv = v.value();
    let code = Code::of(&vv, &thresholds("dcea_decode", &b.value(), &vv), threshold);
    let eta = code.dense().conv_transpose2d(&wd.value(), None, convt);
    let code = Some(code).filter(Code::worth_keeping);
    v.tape().push_op(eta, &[*v, *wd, *b], DecodeBackward { threshold, convt, code })
}

/// The rule of [`dcea_threshold`]: inputs `(v, b)`, `∂v = [x ≠ 0]·g`, `∂b` ([`Code::grads`]).
struct ThresholdBackward<T>(Threshold, Option<Code<T>>);

impl<T: Element> Backward<T> for ThresholdBackward<T> {
    fn name(&self) -> &str {
        "dcea_threshold"
    }
    fn backward(
        &self,
        g: &Tensor<T>,
        inputs: &[&Tensor<T>],
        _output: &Tensor<T>,
        needed: &[bool],
    ) -> autograd::Result<Vec<Option<Tensor<T>>>> {
        let (v, b) = (inputs[0], inputs[1]);
        let code = Code::kept_or(&self.1, v, b, self.0, "dcea_threshold");
        let (dv, db) = code.grads(Some(g), None, b.numel());
        Ok(vec![needed[0].then_some(dv), needed[1].then(|| db.reshape(b.shape()))])
    }
}

/// The codes `x = P_b(v)` of pre-threshold codes `v` `[N, K, h, w]` with `b` `[K]`, one rule
/// (`dcea_threshold`; the kinks count as inactive).
///
/// **Panics** if `b` does not have one entry per filter.
#[track_caller]
pub fn dcea_threshold<'t, T: Element>(v: &Var<'t, T>, b: &Var<'t, T>, threshold: Threshold) -> Var<'t, T> {
    let vv = v.value();
    let code = Code::of(&vv, &thresholds("dcea_threshold", &b.value(), &vv), threshold);
    let x = code.dense();
    v.tape().push_op(x, &[*v, *b], ThresholdBackward(threshold, Some(code).filter(Code::worth_keeping)))
}

/// Checks `y`'s shape against the configuration and returns the encoder's input (the shift
/// batch with shifts), the conv2d and the conv_transpose2d parameters.
#[track_caller]
fn prepare<'t, T: Element>(y: &Var<'t, T>, cfg: &DceaConfig) -> (Var<'t, T>, Conv2dParams, ConvTranspose2dParams) {
    cfg.validate();
    let ys = y.shape();
    assert!(
        ys.len() == 4 && ys[1] == cfg.channels && ys[2] >= cfg.kernel[0] && ys[3] >= cfg.kernel[1],
        "dcea_forward: y must be [N, {}, H ≥ {}, W ≥ {}], got {ys:?}",
        cfg.channels,
        cfg.kernel[0],
        cfg.kernel[1]
    );
    let s = cfg.stride;
    let input = if cfg.uses_shifts() { shift_batch(y, cfg.kernel, s) } else { *y };
    let is = input.shape();
    // conv_transpose2d of the codes must give back the input's size: (h' − 1)·s + k + op.
    let op = [(is[2] - cfg.kernel[0]) % s, (is[3] - cfg.kernel[1]) % s];
    (input, Conv2dParams::new().stride(s), ConvTranspose2dParams::new().stride(s).output_padding2(op))
}

/// With shifts, the average of the decoder outputs `η` over them (the crop of each to the image).
fn unshift<'t, T: Element>(eta: Var<'t, T>, y: &Var<'t, T>, cfg: &DceaConfig) -> Var<'t, T> {
    if cfg.uses_shifts() {
        shift_mean(&eta, [y.dim(2), y.dim(3)], cfg.kernel, cfg.stride)
    } else {
        eta
    }
}

/// The unfolded encoder, the decoder and the shift average (module docs) on the tape, for the
/// observations `y` `[N, C, H, W]`: one [`dcea_iteration`] per step on the pre-threshold codes
/// `v_t` (`x_t = P_b(v_t)`), then [`dcea_decode`] (`Wd P_b(v_T)`) and [`dcea_threshold`]
/// (the code `x_T` of the output). `stats` is `None`; see [`dcea_forward_traced`].
///
/// Each iterate is released ([`Tape::release`]) once the next one is computed, and the shift
/// batch once decoded, wherever no recorded rule needs them: on an inference tape
/// ([`Tape::inference`]) or under [`Tape::no_grad`] the forward holds two iterates at a time,
/// not `T` ([`denoise`] is the tensor-level entry point).
///
/// **Panics** if `y`'s channels differ from the configuration's, the image is smaller than a
/// filter, or (with shifts) than the reflect padding.
#[track_caller]
pub fn dcea_forward<'t, T: Element>(p: &DceaParams<'t, T>, y: &Var<'t, T>, cfg: &DceaConfig) -> DceaOutput<'t, T> {
    forward(p, y, cfg, false)
}

/// [`dcea_forward`] with the [`DceaStats`] of every step (margins and active fractions; a
/// few extra passes over the codes).
#[track_caller]
pub fn dcea_forward_traced<'t, T: Element>(
    p: &DceaParams<'t, T>,
    y: &Var<'t, T>,
    cfg: &DceaConfig,
) -> DceaOutput<'t, T> {
    forward(p, y, cfg, true)
}

#[track_caller]
fn forward<'t, T: Element>(p: &DceaParams<'t, T>, y: &Var<'t, T>, cfg: &DceaConfig, trace: bool) -> DceaOutput<'t, T> {
    let (input, conv, convt) = prepare(y, cfg);
    let spec = StepSpec::of(cfg, conv, convt);
    let mut stats = DceaStats { elu_margin_at_zero: f64::INFINITY, ..DceaStats::default() };
    let tape = y.tape();
    let mut v: Option<Var<'t, T>> = None; // x₀ = 0
    for _ in 0..cfg.iters {
        let (next, st) = dcea_iteration(v.as_ref(), &input, &p.h, &p.we, &p.b, spec, trace);
        // Freed where no rule needs it (inference, no_grad): the next step replaces it.
        if let Some(prev) = v {
            tape.release(&prev);
        }
        if trace {
            if cfg.elu_alpha.is_some() {
                if v.is_none() {
                    stats.elu_margin_at_zero = st.elu_margin_all;
                }
                stats.elu_margin.push(st.elu_margin);
            }
            stats.threshold_margin.push(st.threshold_margin);
            stats.active.push(st.active as f64 / next.value().numel() as f64);
        }
        v = Some(next);
    }
    let v = v.expect("iters ≥ 1");
    if cfg.uses_shifts() {
        tape.release(&input); // the shift batch (`y` itself otherwise)
    }
    let decoded = dcea_decode(&v, &p.wd, &p.b, cfg.threshold, convt);
    let code = dcea_threshold(&v, &p.b, cfg.threshold);
    tape.release(&v);
    let eta = unshift(decoded, y, cfg);
    if cfg.uses_shifts() {
        tape.release(&decoded);
    }
    DceaOutput { eta, code, stats: trace.then_some(stats) }
}

/// The same map as [`dcea_forward`] built from elementary ops only (conv2d, conv_transpose2d,
/// exp/sigmoid, sub, elu, mul_scalar, add, relu, abs, sign, mul): the reference the fused
/// [`dcea_iteration`], [`dcea_decode`] and [`dcea_threshold`] rules are checked against. It
/// records 5–9 nodes per step instead of 1 (about twice the memory).
#[track_caller]
pub fn dcea_forward_composite<'t, T: Element>(
    p: &DceaParams<'t, T>,
    y: &Var<'t, T>,
    cfg: &DceaConfig,
) -> DceaOutput<'t, T> {
    let (input, conv, convt) = prepare(y, cfg);
    let tape = y.tape();
    let b = p.b.reshape(&[1, cfg.filters, 1, 1]);
    let mut x: Option<Var<'t, T>> = None;
    for _ in 0..cfg.iters {
        // One step in a scope (its intermediates freed where no rule needs them), the previous
        // code released once replaced.
        let next = tape.scope(|| {
            let resid = match &x {
                None if cfg.family.mean_at_zero() == 0.0 => input,
                None => input.sub_scalar(cfg.family.mean_at_zero()),
                Some(x) => input.sub(&cfg.family.mean(&x.conv_transpose2d(&p.h, None, convt))),
            };
            let resid = match cfg.elu_alpha {
                Some(a) => resid.elu(a),
                None => resid,
            };
            let mut c = resid.conv2d(&p.we, None, conv);
            if cfg.step != 1.0 {
                c = c.mul_scalar(cfg.step);
            }
            let v = match &x {
                None => c,
                Some(x) => x.add(&c),
            };
            match cfg.threshold {
                Threshold::OneSided => v.sub(&b).relu(),
                Threshold::TwoSided => v.abs().sub(&b).relu().mul(&v.sign()),
            }
        });
        if let Some(prev) = x {
            tape.release(&prev);
        }
        x = Some(next);
    }
    let code = x.expect("iters ≥ 1");
    if cfg.uses_shifts() {
        tape.release(&input);
    }
    let eta = tape.scope(|| unshift(code.conv_transpose2d(&p.wd, None, convt), y, cfg));
    DceaOutput { eta, code, stats: None }
}

// ---------------------------------------------------------------------------------------------
// Step folding

/// `L = factor × ‖M(u)‖` ([`power_estimate`] from the fold's seeded start).
fn fold_lipschitz<T: Element>(h: &Tensor<T>, cfg: &DceaConfig, fold: &PowerFold) -> Result<f64, SparseError> {
    let l = fold.factor * power_estimate(h, cfg, fold, None)?;
    if !(l.is_finite() && l > 0.0) {
        return Err(SparseError::BadStep { op: "dcea", lipschitz: l });
    }
    Ok(l)
}

/// The authors' power iteration on the nonlinear map `M(v) = Hᵀ f⁻¹(H v)` (module docs):
/// `fold.iters` times `v ← v/‖v‖, v ← M(v)`, returning the final `‖v‖` = `‖M(u)‖` at the last
/// unit iterate `u` (no factor applied). The codes are `[1, K, ⌊(image − k)/s⌋ + 1, …]`;
/// `init` (that many entries, any nonzero scale) replaces the standard-normal start drawn from
/// `fold.seed`.
///
/// # Errors
/// The power iteration's (an operator value that is not finite, naming the entry and the
/// iteration), as [`SparseError::Engine`].
/// **Panics** if `fold.image` is smaller than the kernel or `init` has the wrong length.
#[track_caller]
pub fn power_estimate<T: Element>(
    h: &Tensor<T>,
    cfg: &DceaConfig,
    fold: &PowerFold,
    init: Option<&[T]>,
) -> Result<f64, SparseError> {
    let s = cfg.stride;
    let [kh, kw] = cfg.kernel;
    assert!(
        fold.image[0] >= kh && fold.image[1] >= kw,
        "dcea: the power iteration's image {:?} is smaller than the kernel {:?}",
        fold.image,
        cfg.kernel
    );
    // The authors' int((size − k)/s + 1): the floor.
    let code = [(fold.image[0] - kh) / s + 1, (fold.image[1] - kw) / s + 1];
    let shape = [1, cfg.filters, code[0], code[1]];
    let n = shape.iter().product();
    let family = cfg.family;
    let mut last_norm = 0.0f64;
    let apply = |v: &[T], w: &mut [T]| {
        let x = Tensor::from_vec(v.to_vec(), &shape);
        let eta = x.conv_transpose2d(h, None, ConvTranspose2dParams::new().stride(s));
        let out = family.mean_tensor(&eta).conv2d(h, None, Conv2dParams::new().stride(s)).contiguous();
        w.copy_from_slice(out.as_slice().expect("contiguous"));
        last_norm = w.iter().map(|x| x.as_f64() * x.as_f64()).sum::<f64>().sqrt();
    };
    // tol = 0: the relative change is never below 0, so exactly `iters` applications.
    let opts = PowerOptions { max_iter: fold.iters, tol: 0.0, init, seed: fold.seed };
    power_iteration(n, apply, opts)?;
    Ok(last_norm)
}

// ---------------------------------------------------------------------------------------------
// Negative log-likelihoods

/// The rule of the three NLLs: inputs `(η, y)`, scalar output.
/// `∂η = g·c·(f⁻¹(η) − y)` (the canonical-link identity), `∂y = g·c·(y − η)` (Gaussian) or
/// `−g·c·η` (Binomial, Poisson), with `c = 1` (sum) or `1/n` (mean).
struct NllBackward {
    /// The family (its `M` for the Binomial).
    family: Family,
    /// `c`: 1 for a sum, `1/n` for a mean.
    scale: f64,
}

impl<T: Element> Backward<T> for NllBackward {
    fn name(&self) -> &str {
        nll_name(self.family)
    }
    fn backward(
        &self,
        g: &Tensor<T>,
        inputs: &[&Tensor<T>],
        _output: &Tensor<T>,
        needed: &[bool],
    ) -> autograd::Result<Vec<Option<Tensor<T>>>> {
        let (eta, y) = (inputs[0], inputs[1]);
        let c = T::of(g.item().as_f64() * self.scale);
        let family = self.family;
        let d_eta = needed[0].then(|| match family {
            Family::Gaussian => eta.zip_map(y, "gaussian_nll", move |e, y| c * (e - y)),
            Family::Binomial { trials } => {
                let m = T::of(trials);
                eta.zip_map(y, "binomial_nll", move |e, y| c * (m * sigmoid(e) - y))
            }
            Family::Poisson => eta.zip_map(y, "poisson_nll", move |e, y| c * (e.exp() - y)),
        });
        let d_y = needed[1].then(|| match family {
            Family::Gaussian => y.zip_map(eta, "gaussian_nll", move |y, e| c * (y - e)),
            _ => eta.map(move |e| -c * e),
        });
        Ok(vec![d_eta, d_y])
    }
}

fn nll_name(f: Family) -> &'static str {
    match f {
        Family::Gaussian => "gaussian_nll",
        Family::Binomial { .. } => "binomial_nll",
        Family::Poisson => "poisson_nll",
    }
}

/// The negative log-likelihood of `y` under natural parameter `eta` (same shape), up to
/// constants, summed or averaged over every element:
///
/// | family | per element | `∂η` |
/// | --- | --- | --- |
/// | Gaussian | `½(y − η)²` | `η − y` |
/// | Binomial (`M`) | `M·log(1 + e^η) − y·η` (softplus evaluated without overflow) | `M·σ(η) − y` |
/// | Poisson | `e^η − y·η` | `e^η − y` |
///
/// One fused rule per family (`gaussian_nll`, `binomial_nll`, `poisson_nll`) instead of the
/// composite of 3–4 recorded image-sized ops: the gradient is the canonical-link identity
/// `f⁻¹(η) − y` in one pass, the Binomial's softplus is the engine's stable one, and the tape
/// keeps no intermediate. Each is audited by central differences (`crate::audit`) and checked
/// against its composite (`tests/dcea.rs`).
///
/// **Panics** if the shapes differ (naming both) or the Binomial's `M` is not positive.
#[track_caller]
pub fn nll<'t, T: Element>(family: Family, eta: &Var<'t, T>, y: &Var<'t, T>, reduction: Reduction) -> Var<'t, T> {
    let name = nll_name(family);
    let (e, yv) = (eta.value(), y.value());
    assert_eq!(e.shape(), yv.shape(), "{name}: η {:?} and y {:?} must have the same shape", e.shape(), yv.shape());
    let per = match family {
        Family::Gaussian => e.zip_map(&yv, name, |e, y| {
            let d = y - e;
            T::of(0.5) * d * d
        }),
        Family::Binomial { trials } => {
            assert!(trials > 0.0, "{name}: M must be positive, got {trials}");
            let m = T::of(trials);
            e.zip_map(&yv, name, move |e, y| m * softplus(e) - y * e)
        }
        Family::Poisson => e.zip_map(&yv, name, |e, y| e.exp() - y * e),
    };
    let scale = match reduction {
        Reduction::Sum => 1.0,
        Reduction::Mean => 1.0 / (e.numel().max(1) as f64),
    };
    let total = per.sum_all();
    let out = if scale == 1.0 { total } else { total.mul_scalar(scale) };
    eta.tape().push_op(out, &[*eta, *y], NllBackward { family, scale })
}

// ---------------------------------------------------------------------------------------------
// Poisson denoising: data scaling and the estimate

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

// ---------------------------------------------------------------------------------------------
// Audit

/// The audit cases of this module: the three NLL rules on every layout and both reductions,
/// `dcea_iteration`, `dcea_decode` and `dcea_threshold` on every layout, and the whole
/// unfolded DCEA (encoder,
/// decoder, shifts, loss; labelled `dcea`) for every family, tied and untied, all on inputs
/// whose every kink argument is at least [`crate::audit::KINK_MARGIN`] away (regenerated
/// otherwise).
pub(crate) fn cases(out: &mut Vec<autograd::audit::AuditCase>) {
    audit_cases::nll_cases(out);
    audit_cases::iteration_cases(out);
    audit_cases::code_cases(out);
    audit_cases::dcea_cases(out);
}

mod audit_cases {
    use std::sync::Arc;

    use autograd::audit::inputs::{bcast, default, input, make, rng_for, Dom, Input, View};
    use autograd::audit::AuditCase;
    use autograd::{Reduction, Tape};
    use engine::{Rng, Tensor};

    use super::*;
    use crate::margin::KINK_MARGIN;

    /// Observations of `family` for an NLL check: reals (Gaussian), `0..=M` (Binomial, M = 5),
    /// counts (Poisson), as plain values (the NLL is smooth in `y` too).
    fn observations(family: Family, shape: &[usize], rng: &mut Rng) -> Tensor<f64> {
        let n: usize = shape.iter().product();
        let v = (0..n)
            .map(|_| match family {
                Family::Gaussian => rng.normal(),
                Family::Binomial { trials } => rng.below(trials as u64 + 1) as f64,
                Family::Poisson => rng.poisson(1.5) as f64,
            })
            .collect();
        Tensor::from_vec(v, shape)
    }

    pub(super) fn nll_cases(out: &mut Vec<AuditCase>) {
        let families = [Family::Gaussian, Family::Binomial { trials: 5.0 }, Family::Poisson];
        for family in families {
            let op = nll_name(family);
            let mut rng = rng_for(op, 0);
            let shape = [2, 1, 3, 4];
            let views = [View::Contiguous, View::Transposed, View::Permuted, View::Sliced, View::Broadcast];
            for (i, view) in views.into_iter().enumerate() {
                let reduction = if i % 2 == 0 { Reduction::Sum } else { Reduction::Mean };
                let eta: Input = input(view, &shape, Dom::Range(-3.0, 3.0), &mut rng, "");
                let y = observations(family, &shape, &mut rng);
                let desc = format!("η {}, y contiguous {shape:?}; {reduction:?}", eta.desc);
                let target = eta.target.clone();
                out.push(AuditCase::gradcheck(op, desc, vec![eta.value, y], default(), move |_, v| {
                    nll(family, &bcast(&v[0], &target), &v[1], reduction)
                }));
            }
            // Large |η| (softplus and exp far from 0), y in a sliced view.
            let eta = Tensor::from_vec(vec![-8.0, -2.5, 0.3, 4.0, 7.5, -0.7], &[2, 3]);
            let y = make(View::Sliced, &[2, 3], Dom::Range(0.0, 3.0), &mut rng);
            out.push(AuditCase::gradcheck(
                op,
                "η contiguous [2, 3] with |η| up to 8, y sliced view [2, 3] (step 2, offset); Sum",
                vec![eta, y],
                default(),
                move |_, v| nll(family, &v[0], &v[1], Reduction::Sum),
            ));
        }
    }

    /// `min |arg|` over the threshold's arguments (`v − b`, or `|v| − b`) of codes `v`.
    fn prox_margin(v: &Tensor<f64>, b: &Tensor<f64>, threshold: Threshold) -> f64 {
        let (bv, plane) = (b.to_vec(), v.dim(2) * v.dim(3));
        v.to_vec()
            .iter()
            .enumerate()
            .fold(f64::INFINITY, |m, (i, &e)| m.min(prox(e, bv[(i / plane) % bv.len()], threshold).0.abs()))
    }

    /// Thresholds `b` `[k]` in `[0.1, 0.6)`.
    fn thresholds_draw(k: usize, rng: &mut Rng) -> Tensor<f64> {
        Tensor::from_vec((0..k).map(|_| rng.uniform_in(0.1, 0.6)).collect(), &[k])
    }

    /// `dcea_iteration` with and without `v`, every family, with and without the ELU, one-
    /// and two-sided, several strides and steps, inputs in every layout; regenerated until
    /// every threshold argument of `v` and every ELU argument is at least [`KINK_MARGIN`] from
    /// its kink.
    pub(super) fn iteration_cases(out: &mut Vec<AuditCase>) {
        use View::{Broadcast, Contiguous, Permuted, Sliced, Transposed};
        let b3 = Family::Binomial { trials: 3.0 };
        // (v layout or no v, y layout, H and We layouts, family, ELU, threshold, stride, step)
        type Spec = (Option<View>, View, View, View, Family, Option<f64>, Threshold, usize, f64);
        let specs: [Spec; 7] = [
            (
                Some(Contiguous),
                Contiguous,
                Contiguous,
                Transposed,
                Family::Poisson,
                Some(2.0),
                Threshold::OneSided,
                2,
                1.0,
            ),
            (None, Sliced, Contiguous, Contiguous, Family::Poisson, Some(4.0), Threshold::OneSided, 2, 1.0),
            (Some(Permuted), Transposed, Sliced, Contiguous, b3, Some(1.5), Threshold::TwoSided, 1, 0.7),
            (Some(Sliced), Contiguous, Permuted, Sliced, b3, None, Threshold::OneSided, 3, 1.0),
            (Some(Broadcast), Permuted, Contiguous, Contiguous, Family::Gaussian, None, Threshold::TwoSided, 2, 0.5),
            (None, Contiguous, Transposed, Permuted, Family::Gaussian, Some(0.7), Threshold::TwoSided, 1, 1.3),
            (Some(Transposed), Sliced, Contiguous, Contiguous, Family::Poisson, None, Threshold::TwoSided, 3, 1.0),
        ];
        let (k, y_shape, w_shape) = (3, [2, 2, 7, 8], [3, 2, 3, 3]);
        let mut rng = rng_for("dcea_iteration", 0);
        for (v_view, y_view, h_view, we_view, family, elu, threshold, stride, step) in specs {
            let conv = Conv2dParams::new().stride(stride);
            let code = conv.output_hw([7, 8], [3, 3]).expect("geometry");
            let convt =
                ConvTranspose2dParams::new().stride(stride).output_padding2([(7 - 3) % stride, (8 - 3) % stride]);
            let spec = StepSpec { family, elu, step, threshold, conv, convt };
            let v_shape = [2, k, code[0], code[1]];
            let (v, y, h, we, b) = regenerate_with(
                "dcea_iteration",
                || {
                    let v = v_view.map(|view| input(view, &v_shape, Dom::Range(-1.0, 1.0), &mut rng, ""));
                    let y = input(y_view, &y_shape, Dom::Range(-0.5, 2.5), &mut rng, "");
                    let h = make(h_view, &w_shape, Dom::Range(-0.5, 0.5), &mut rng);
                    let we = make(we_view, &w_shape, Dom::Any, &mut rng);
                    (v, y, h, we, thresholds_draw(k, &mut rng))
                },
                |(v, y, h, we, b)| {
                    let tape = Tape::new();
                    let vv = v.as_ref().map(|v| tape.constant(logical(v)));
                    let (yv, hv, wv, bv) = (
                        tape.constant(logical(y)),
                        tape.constant(h.clone()),
                        tape.constant(we.clone()),
                        tape.constant(b.clone()),
                    );
                    let st = dcea_iteration(vv.as_ref(), &yv, &hv, &wv, &bv, spec, true).1;
                    let vm = v.as_ref().map_or(f64::INFINITY, |v| prox_margin(&logical(v), b, threshold));
                    vm.min(st.elu_margin_all)
                },
            );
            let desc = format!(
                "{} {}, {threshold:?}, stride {stride}, step {step}; v {}; y {}; H {}; We {}; b contiguous [{k}]",
                family.name(),
                elu.map_or("no ELU".to_string(), |a| format!("ELU a = {a}")),
                v.as_ref().map_or("absent (x₀ = 0)".to_string(), |v| v.desc.clone()),
                y.desc,
                autograd::audit::inputs::describe(h_view, &w_shape),
                autograd::audit::inputs::describe(we_view, &w_shape)
            );
            let has_v = v.is_some();
            let (v_target, y_target) = (v.as_ref().and_then(|v| v.target.clone()), y.target.clone());
            let mut inputs: Vec<Tensor<f64>> = v.map(|v| v.value).into_iter().collect();
            inputs.push(y.value);
            // Without v, H and b are not inputs of the rule (they are only read by the trace).
            inputs.extend(if has_v { vec![h, we, b] } else { vec![we] });
            out.push(AuditCase::gradcheck("dcea_iteration", desc, inputs, default(), move |t, v| {
                if has_v {
                    let vv = bcast(&v[0], &v_target);
                    dcea_iteration(Some(&vv), &bcast(&v[1], &y_target), &v[2], &v[3], &v[4], spec, false).0
                } else {
                    let (h, b) = (t.constant(Tensor::zeros(&w_shape)), t.constant(Tensor::zeros(&[k])));
                    dcea_iteration(None, &bcast(&v[0], &y_target), &h, &v[1], &b, spec, false).0
                }
            }));
        }
    }

    /// `dcea_decode` and `dcea_threshold`, one- and two-sided, several strides, inputs in every
    /// layout; regenerated until every threshold argument is at least [`KINK_MARGIN`] from
    /// its kink.
    pub(super) fn code_cases(out: &mut Vec<AuditCase>) {
        use View::{Broadcast, Contiguous, Permuted, Sliced, Transposed};
        let specs: [(View, View, Threshold, usize); 4] = [
            (Contiguous, Contiguous, Threshold::OneSided, 2),
            (Permuted, Sliced, Threshold::TwoSided, 1),
            (Sliced, Transposed, Threshold::OneSided, 3),
            (Broadcast, Contiguous, Threshold::TwoSided, 2),
        ];
        let (k, w_shape) = (3, [3, 2, 3, 3]);
        let mut rng = rng_for("dcea_decode", 0);
        for (v_view, w_view, threshold, stride) in specs {
            let code = Conv2dParams::new().stride(stride).output_hw([7, 8], [3, 3]).expect("geometry");
            let convt =
                ConvTranspose2dParams::new().stride(stride).output_padding2([(7 - 3) % stride, (8 - 3) % stride]);
            let v_shape = [2, k, code[0], code[1]];
            let (v, b) = regenerate_with(
                "dcea_decode",
                || (input(v_view, &v_shape, Dom::Range(-1.0, 1.0), &mut rng, ""), thresholds_draw(k, &mut rng)),
                |(v, b)| prox_margin(&logical(v), b, threshold),
            );
            let wd = make(w_view, &w_shape, Dom::Any, &mut rng);
            let what = format!("{threshold:?}; v {}; b contiguous [{k}]", v.desc);
            let target = v.target.clone();
            let desc = format!("{what}; stride {stride}; Wd {}", autograd::audit::inputs::describe(w_view, &w_shape));
            let inputs = vec![v.value.clone(), wd, b.clone()];
            let t2 = target.clone();
            out.push(AuditCase::gradcheck("dcea_decode", desc, inputs, default(), move |_, v| {
                dcea_decode(&bcast(&v[0], &t2), &v[1], &v[2], threshold, convt)
            }));
            out.push(AuditCase::gradcheck("dcea_threshold", what, vec![v.value, b], default(), move |_, v| {
                dcea_threshold(&bcast(&v[0], &target), &v[1], threshold)
            }));
        }
    }

    /// The logical value of an input (broadcast to its target).
    fn logical(x: &Input) -> Tensor<f64> {
        match &x.target {
            Some(t) => x.value.broadcast_to(t).contiguous(),
            None => x.value.contiguous(),
        }
    }

    /// Draws with `draw` until `margin_of` is at least [`KINK_MARGIN`]; **panics** after 200.
    fn regenerate_with<I>(op: &str, mut draw: impl FnMut() -> I, margin_of: impl Fn(&I) -> f64) -> I {
        for _ in 0..200 {
            let c = draw();
            if margin_of(&c) >= KINK_MARGIN {
                return c;
            }
        }
        panic!("{op} audit: no input with a kink margin of {KINK_MARGIN} in 200 draws");
    }

    /// One whole-model case: the family, tied or not, and the layouts of H and y.
    struct Spec {
        family: Family,
        tied: bool,
        h_view: View,
        y_view: View,
        threshold: Threshold,
        stride: usize,
        iters: usize,
    }

    /// A small configuration of `spec` (3 filters of 3×3 on 7×8 images, step folded by 30
    /// power iterations on a 12×12 input) and the ELU on the Poisson residual, as the authors.
    fn small_config(family: Family, tied: bool, threshold: Threshold, stride: usize, iters: usize) -> DceaConfig {
        let elu = matches!(family, Family::Poisson).then_some(2.0);
        DceaConfig::new(family, 3, [3, 3])
            .stride(stride)
            .iters(iters)
            .tied(tied)
            .threshold(threshold, 0.05)
            .elu(elu)
            .shifts(stride > 1)
            .fold(Some(PowerFold { iters: 30, image: [12, 12], factor: 5.0, seed: 1 }))
    }

    /// The margin of the whole model at `inputs` (`[H, (We, Wd,) b, y]` as logical tensors).
    fn model_margin(cfg: &DceaConfig, inputs: &[Tensor<f64>]) -> f64 {
        let tape = Tape::new();
        let p = params_of(&tape, cfg, inputs);
        let y = tape.constant(inputs[inputs.len() - 1].clone());
        dcea_forward_traced(&p, &y, cfg).stats.expect("traced").kink_margin()
    }

    /// The parameters of a case on `tape` from `inputs` (`[H, (We, Wd,) b, …]`).
    fn params_of<'t>(tape: &'t Tape<f64>, cfg: &DceaConfig, inputs: &[Tensor<f64>]) -> DceaParams<'t, f64> {
        let v: Vec<Var<'t, f64>> = inputs.iter().map(|t| tape.leaf(t.clone())).collect();
        params_from_vars(cfg, &v)
    }

    /// `[H, b]` (tied) or `[H, We, Wd, b]` (untied) as parameters.
    fn params_from_vars<'t>(cfg: &DceaConfig, v: &[Var<'t, f64>]) -> DceaParams<'t, f64> {
        if cfg.tied {
            DceaParams { h: v[0], we: v[0], wd: v[0], b: v[1], tied: true }
        } else {
            DceaParams { h: v[0], we: v[1], wd: v[2], b: v[3], tied: false }
        }
    }

    pub(super) fn dcea_cases(out: &mut Vec<AuditCase>) {
        use Threshold::{OneSided, TwoSided};
        use View::{Broadcast, Contiguous, Permuted, Sliced};
        let b4 = Family::Binomial { trials: 4.0 };
        let specs = [
            Spec {
                family: Family::Poisson,
                tied: true,
                h_view: Contiguous,
                y_view: Contiguous,
                threshold: OneSided,
                stride: 2,
                iters: 15,
            },
            Spec {
                family: Family::Poisson,
                tied: false,
                h_view: Permuted,
                y_view: Sliced,
                threshold: OneSided,
                stride: 2,
                iters: 6,
            },
            Spec {
                family: b4,
                tied: true,
                h_view: Sliced,
                y_view: Broadcast,
                threshold: OneSided,
                stride: 2,
                iters: 6,
            },
            Spec {
                family: b4,
                tied: false,
                h_view: Contiguous,
                y_view: Contiguous,
                threshold: TwoSided,
                stride: 1,
                iters: 15,
            },
            Spec {
                family: Family::Gaussian,
                tied: true,
                h_view: Permuted,
                y_view: Contiguous,
                threshold: TwoSided,
                stride: 2,
                iters: 15,
            },
            Spec {
                family: Family::Gaussian,
                tied: false,
                h_view: Contiguous,
                y_view: Broadcast,
                threshold: OneSided,
                stride: 1,
                iters: 6,
            },
        ];
        for spec in specs {
            let cfg = small_config(spec.family, spec.tied, spec.threshold, spec.stride, spec.iters);
            let mut rng = rng_for("dcea", out.len() as u64);
            // One 7×8 image (two, equal, when y is a broadcast view): few enough code entries
            // that a draw with every kink argument 1e-4 away from its kink is common.
            let y_shape = [if spec.y_view == View::Broadcast { 2 } else { 1 }, 1, 7, 8];
            let (inputs, y_target, desc_y) = regenerate(&cfg, spec.y_view, &y_shape, &mut rng);
            // The filters in the requested layout (same values).
            let mut inputs = inputs;
            inputs[0] = relayout(&inputs[0], spec.h_view);
            let fam = spec.family;
            let desc = format!(
                "{} {}, {:?} threshold, stride {}{}, T = {}; H {}; y {desc_y}; loss {}",
                fam.name(),
                if spec.tied { "tied" } else { "untied" },
                spec.threshold,
                spec.stride,
                if cfg.uses_shifts() { " with its 4 shifts" } else { "" },
                spec.iters,
                autograd::audit::inputs::describe(spec.h_view, &cfg.filter_shape()),
                nll_name(fam)
            );
            let cfg = Arc::new(cfg);
            out.push(AuditCase::gradcheck("dcea", desc, inputs, default(), move |_, v| {
                let p = params_from_vars(&cfg, v);
                let y = bcast(&v[v.len() - 1], &y_target);
                let eta = dcea_forward(&p, &y, &cfg).eta;
                nll(fam, &eta, &y, Reduction::Sum)
            }));
        }
    }

    /// The same values as `t` in layout `view` (not broadcast).
    fn relayout(t: &Tensor<f64>, view: View) -> Tensor<f64> {
        let shape = t.shape().to_vec();
        let r = make(view, &shape, Dom::Any, &mut Rng::new(0));
        // The values written through the view's offsets into a copy of its storage.
        let mut store = r.storage().to_vec();
        for (o, v) in r.layout().offsets().zip(t.contiguous().into_vec()) {
            store[o] = v;
        }
        Tensor::from_storage(std::sync::Arc::new(store), r.layout().clone())
    }

    /// Draws `[H, (We, Wd,) b, y]` until the model's kink margin is at least [`KINK_MARGIN`].
    /// `y` is a broadcast leaf (with its target) when `y_view` is `Broadcast`.
    /// **Panics** after 200 draws.
    fn regenerate(
        cfg: &DceaConfig,
        y_view: View,
        y_shape: &[usize],
        rng: &mut Rng,
    ) -> (Vec<Tensor<f64>>, Option<Vec<usize>>, String) {
        for _ in 0..200 {
            let model = Dcea::<f64>::new(cfg.clone(), rng).expect("dcea init");
            let mut inputs: Vec<Tensor<f64>> = model.params().into_iter().cloned().collect();
            // Untied banks perturbed apart, thresholds spread around b_init.
            let h = inputs[0].to_f64_vec();
            let rms = (h.iter().map(|v| v * v).sum::<f64>() / h.len() as f64).sqrt();
            for t in inputs.iter_mut().skip(1).take(if cfg.tied { 0 } else { 2 }) {
                *t = t.add(&Tensor::<f64>::randn(t.shape(), rng).mul_scalar(0.2 * rms));
            }
            let k = cfg.filters;
            let b: Vec<f64> = (0..k).map(|_| cfg.b_init * rng.uniform_in(0.5, 1.5)).collect();
            let last = inputs.len() - 1;
            inputs[last] = Tensor::from_vec(b, &[k]);
            let (y_leaf, y_logical, target, desc) = if y_view == View::Broadcast {
                let mut small = y_shape.to_vec();
                small[0] = 1;
                let leaf = jittered_observations(cfg.family, &small, rng);
                let logical = leaf.broadcast_to(y_shape).contiguous();
                (leaf, logical, Some(y_shape.to_vec()), autograd::audit::inputs::describe(View::Broadcast, y_shape))
            } else {
                let logical = jittered_observations(cfg.family, y_shape, rng);
                (relayout(&logical, y_view), logical, None, autograd::audit::inputs::describe(y_view, y_shape))
            };
            let mut probe = inputs.clone();
            probe.push(y_logical);
            let m = model_margin(cfg, &probe);
            if m >= KINK_MARGIN {
                inputs.push(y_leaf);
                return (inputs, target, desc);
            }
        }
        panic!("dcea audit: no input with a kink margin of {KINK_MARGIN} in 200 draws");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_pads_match_the_authors_calc_pad_sizes() {
        // utils.calc_pad_sizes for a 256-wide image, 11-wide filters, stride 7:
        // left = 7; (256 + 7 − 11) % 7 = 0 → right = 0 + 7 = 7 → 270 = 11 + 7·37.
        assert_eq!(shift_pads(256, 11, 7), (7, 7));
        // 128 (the training crops): (128 + 7 − 11) % 7 = 5 → right = 2 + 7 = 9 → 144 = 11 + 7·19.
        assert_eq!(shift_pads(128, 11, 7), (7, 9));
        // 512: (512 + 7 − 11) % 7 = 4 → right = 3 + 7 = 10 → 529 = 11 + 7·74.
        assert_eq!(shift_pads(512, 11, 7), (7, 10));
    }

    #[test]
    fn reflect_does_not_repeat_the_edge() {
        // [a b c d] reflect-padded by 2: c b | a b c d | c b
        let idx: Vec<usize> = (0..8).map(|p| reflect(p, 2, 4)).collect();
        assert_eq!(idx, vec![2, 1, 0, 1, 2, 3, 2, 1]);
    }
}
