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
//! [`Tensor::conv_transpose2d_backward_input_where`](engine::Tensor::conv_transpose2d_backward_input_where),
//! instead of a dense convolution), exactly.
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
//!
//! ## Files
//! `config.rs` (the family, threshold and [`DceaConfig`]), `params.rs` ([`Dcea`] and its
//! tape binding; the step fold of `fold.rs` at initialisation), `code.rs` (a sparse code as the
//! list of its nonzeros, shared by the rules), `rules.rs` (the fused rules [`dcea_iteration`],
//! [`dcea_decode`], [`dcea_threshold`]), `forward.rs` (the shifts and the whole model, fused and
//! composite), `nll.rs`, `denoise.rs` (Poisson denoising and PSNR), `audit.rs` (gradcheck cases).
//! Dependencies point one way: `config` ← `fold` ← `params`, `config` ← `code` ← `rules` ←
//! `forward` ← `denoise`; `audit` reads them all.

mod code;
mod config;
mod denoise;
mod fold;
mod forward;
mod nll;
mod params;
mod rules;

pub use code::prox;
pub use config::{DceaConfig, Family, PowerFold, Threshold};
pub use denoise::{denoise, jittered_observations, poisson_estimate, poisson_observation, poisson_scale, psnr};
pub use fold::power_estimate;
pub use forward::{
    dcea_forward, dcea_forward_composite, dcea_forward_traced, shift_batch, shift_mean, DceaOutput, DceaStats,
};
pub use nll::{nll, nll_name};
pub use params::{Dcea, DceaParams};
pub use rules::{dcea_decode, dcea_iteration, dcea_threshold, IterationStats, StepSpec};
