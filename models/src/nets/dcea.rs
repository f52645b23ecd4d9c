//! The DCEA Poisson denoiser (docs/math.md §4, `dcea-exponential-autoencoder.txt`; Tolooshams et
//! al. 2020) in the authors' configuration, `sparse::dcea::DceaConfig::poisson_denoising`:
//! 169 filters 11×11, stride 7 with the 49 shifts, 15 unfolded ISTA steps, one-sided
//! threshold, `ELU_peak` on the residual, the step folded in by 200 power iterations on a
//! 512×512 input (`L = 5×` the estimate). Input: Poisson counts `y [N, 1, H, W]`; output:
//! `exp(η̂)`, the denoised image in count units (the image estimate is `Q·exp(η̂)`,
//! `Q = max(image)/peak`, `sparse::dcea::poisson_scale`). Supervised training minimises
//! `mse(image, Q·output)`; the unsupervised term is the Poisson negative log-likelihood of `y`.
//!
//! Parameters as the authors' `state_dict`: `H [169, 1, 11, 11]`, untied also `We`, `Wd`, and
//! `b [1, 169, 1, 1]` (or `b0 … b14` without `single_bias`). Tied: 169·121 + 169 = 20,618;
//! untied: 3·169·121 + 169 = 61,516.
//!
//! Options: `peak` (default 4; `b` starts at 0.1 for peaks ≥ 4, 0.01 below, as the authors),
//! `tied` (default true), `single_bias` (default true: one `b` shared by the iterations, as
//! docs/math.md §4 states the authors' configuration; false: one per iteration, the authors'
//! `single_bias: False`), and, to build small versions quickly (tests), `filters`, `kernel`,
//! `stride`, `iters`, `fold_iters` (default 200) and `fold_image` (default 512, the side of the
//! power iteration's input).

use autograd::Var;
use engine::Element;
use sparse::dcea::{DceaConfig, PowerFold};

use super::unsupervised::Unsupervised;
use super::{NetConfig, NetSpec};
use crate::layers::{Ctx, DceaLayer, Layer, ParamBuilder, Result};

pub fn spec() -> NetSpec {
    NetSpec {
        name: "dcea",
        about: "DCEA Poisson denoiser (169 11×11 filters, stride 7 with shifts, 15 ISTA steps; options peak, tied)",
        classes: 1,
        input: [1, 128, 128],
    }
}

/// The DCEA network: the layer at the root of the store (names `H`, `b`, … as the authors').
#[derive(Clone, Debug)]
pub struct DceaNet {
    pub dcea: DceaLayer,
}

/// The configuration of `cfg`'s options (module docs).
pub fn config(cfg: &NetConfig) -> std::result::Result<DceaConfig, String> {
    let peak: f64 = cfg.get("peak", 4.0)?;
    if !(peak.is_finite() && peak > 0.0) {
        return Err(format!("dcea: peak must be positive, got {peak}"));
    }
    let mut c = DceaConfig::poisson_denoising(peak, cfg.get("tied", true)?);
    c.filters = cfg.get("filters", c.filters)?;
    let k: usize = cfg.get("kernel", c.kernel[0])?;
    c.kernel = [k, k];
    c.stride = cfg.get("stride", c.stride)?;
    c.iters = cfg.get("iters", c.iters)?;
    c.channels = cfg.input[0];
    let side: usize = cfg.get("fold_image", 512)?;
    c.fold = Some(PowerFold { iters: cfg.get("fold_iters", 200)?, image: [side, side], ..PowerFold::default() });
    if c.filters == 0 || k == 0 || c.stride == 0 || c.iters == 0 || side < k {
        return Err(format!("dcea: invalid sizes {c:?}"));
    }
    Ok(c)
}

pub fn build<T: Element>(cfg: &NetConfig, pb: &mut ParamBuilder<'_, T>) -> std::result::Result<DceaNet, String> {
    let c = config(cfg)?;
    let dcea = DceaLayer::new(pb, c, cfg.get("single_bias", true)?).map_err(|e| format!("dcea: {e}"))?;
    Ok(DceaNet { dcea })
}

impl<T: Element> Layer<T> for DceaNet {
    fn forward<'t>(&self, cx: &Ctx<'t, T>, x: &Var<'t, T>) -> Result<Var<'t, T>> {
        self.dcea.forward(cx, x)
    }
}

impl<T: Element> Unsupervised<T> for DceaNet {
    /// The Poisson negative log-likelihood of the counts `x` at `η̂`, averaged over pixels.
    fn unsupervised_loss<'t>(&self, cx: &Ctx<'t, T>, x: &Var<'t, T>) -> Result<Var<'t, T>> {
        self.dcea.unsupervised_loss(cx, x)
    }

    fn into_layer(self: Box<Self>) -> Box<dyn Layer<T>> {
        self
    }
}
