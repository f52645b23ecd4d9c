//! The deep convolutional exponential auto-encoder (docs/math.md §4, `sparse::dcea`) as a layer:
//! `T` unfolded proximal-gradient steps on the observations `y`, the decoder `η̂ = Wd x_T`
//! (averaged over the stride's shifts), and the family's negative log-likelihood of `y` as
//! the unsupervised (dictionary-learning) loss.
//!
//! Parameters, named as the authors' `DEA2Dtied` / `DEA2Dfree` modules (`src/model.py`):
//! `{prefix}.H [K, C, kh, kw]`, untied also `{prefix}.We` and `{prefix}.Wd` (initialised
//! equal to `H`), and the thresholds: `{prefix}.b [1, K, 1, 1]` shared by the iterations
//! (`single_bias`, the authors' Poisson configuration) or `{prefix}.b0 … b{T−1}`, one per
//! iteration. The initial values are `sparse::dcea::Dcea::new`'s (unit Frobenius-norm
//! filters, the step folded in by the power iteration of [`DceaConfig::fold`]).
//!
//! The per-iteration thresholds are implemented here on `sparse::dcea`'s fused step rules:
//! step `t` computes `v_{t+1} = P_{b_{t−1}}(v_t) + α·Weᵀρ(y − f⁻¹(H P_{b_{t−1}}(v_t)))`, so
//! the threshold of the code `x_t = P_{b_{t−1}}(v_t)` is passed to the step that reads it,
//! and the decoder uses `b_{T−1}`. With one bias this is exactly `sparse::dcea::dcea_forward`.

use autograd::{Reduction, Var};
use engine::{Conv2dParams, ConvTranspose2dParams, Element};
use sparse::dcea::{dcea_decode, dcea_iteration, nll, shift_batch, shift_mean, Dcea, DceaConfig, StepSpec};

use super::{Ctx, Error, Layer, ParamBuilder, ParamId, Result};

/// The DCEA layer: `y [N, C, H, W] → f⁻¹(η̂) [N, C, H, W]`, the denoised mean in the units of
/// `y` (for Poisson denoising the image estimate is `Q·exp(η̂)`, i.e. `Q ×` the output).
#[derive(Clone, Debug)]
pub struct DceaLayer {
    pub config: DceaConfig,
    pub h: ParamId,
    /// `(We, Wd)` when untied.
    pub untied: Option<(ParamId, ParamId)>,
    /// One threshold vector (shared) or one per iteration.
    pub b: Vec<ParamId>,
    /// `L` (factor included) of the step folded into the filters at initialisation.
    pub lipschitz: Option<f64>,
}

/// The decoder's output and the code of one forward.
pub struct DceaForward<'t, T: Element> {
    /// `η̂ [N, C, H, W]` (the average over the shifts when they are used).
    pub eta: Var<'t, T>,
    /// The pre-threshold code `v_T` of the last step (`x_T = P_b(v_T)`).
    pub v: Var<'t, T>,
}

impl DceaLayer {
    /// Builds the layer with the initial values of `Dcea::new(config, rng)` and `single_bias`
    /// (one `b` shared by the iterations) or one `b{t}` per iteration.
    ///
    /// # Errors
    /// Those of `Dcea::new` (a power iteration that did not give a finite positive `L`).
    pub fn new<T: Element>(pb: &mut ParamBuilder<'_, T>, config: DceaConfig, single_bias: bool) -> Result<Self> {
        let init = Dcea::<T>::new(config.clone(), pb.rng())?;
        let h = pb.param("H", init.h.clone());
        let untied = match (&init.we, &init.wd) {
            (Some(we), Some(wd)) => Some((pb.param("We", we.clone()), pb.param("Wd", wd.clone()))),
            _ => None,
        };
        let k = config.filters;
        let b0 = init.b.reshape(&[1, k, 1, 1]);
        let b = if single_bias {
            vec![pb.param("b", b0)]
        } else {
            (0..config.iters).map(|t| pb.param(&format!("b{t}"), b0.deep_clone())).collect()
        };
        Ok(DceaLayer { config, h, untied, b, lipschitz: init.lipschitz })
    }

    /// The encoder and decoder: `η̂` and the last pre-threshold code.
    pub fn encode<'t, T: Element>(&self, cx: &Ctx<'t, T>, y: &Var<'t, T>) -> Result<DceaForward<'t, T>> {
        let cfg = &self.config;
        let s = y.shape();
        let [kh, kw] = cfg.kernel;
        if s.len() != 4 || s[1] != cfg.channels || s[2] < kh || s[3] < kw {
            return Err(Error::Shape(format!(
                "Dcea({} filters {kh}×{kw}): expected y [N, {}, H ≥ {kh}, W ≥ {kw}], got {s:?}",
                cfg.filters, cfg.channels
            )));
        }
        let st = cfg.stride;
        if cfg.uses_shifts() {
            // The reflect padding of the shifts must be smaller than the image (as PyTorch).
            let need = |n: usize, k: usize| {
                let rem = (n + st - k) % st;
                let after = if rem == 0 { 0 } else { st - rem };
                after + 2 * st - 1
            };
            if need(s[2], kh) >= s[2] || need(s[3], kw) >= s[3] {
                return Err(Error::Shape(format!(
                    "Dcea: the reflect padding of the {st}×{st} shifts needs a larger image than {s:?}"
                )));
            }
        }
        let input = if cfg.uses_shifts() { shift_batch(y, cfg.kernel, st) } else { *y };
        let is = input.shape();
        let op = [(is[2] - kh) % st, (is[3] - kw) % st];
        let conv = Conv2dParams::new().stride(st);
        let convt = ConvTranspose2dParams::new().stride(st).output_padding2(op);
        let spec =
            StepSpec { family: cfg.family, elu: cfg.elu_alpha, step: cfg.step, threshold: cfg.threshold, conv, convt };
        let h = cx.param(self.h);
        let (we, wd) = match self.untied {
            Some((we, wd)) => (cx.param(we), cx.param(wd)),
            None => (h, h),
        };
        let k = cfg.filters;
        let b: Vec<Var<'t, T>> = self.b.iter().map(|&id| cx.param(id).reshape(&[k])).collect();
        let bias = |t: usize| b[t.min(b.len() - 1)];
        let mut v: Option<Var<'t, T>> = None;
        for t in 0..cfg.iters {
            // Step t thresholds x_t = P_{b_{t−1}}(v_t) (no code at t = 0).
            let (next, _) = dcea_iteration(v.as_ref(), &input, &h, &we, &bias(t.saturating_sub(1)), spec, false);
            v = Some(next);
        }
        let v = v.expect("iters ≥ 1");
        let eta = dcea_decode(&v, &wd, &bias(cfg.iters - 1), cfg.threshold, convt);
        let eta = if cfg.uses_shifts() { shift_mean(&eta, [s[2], s[3]], cfg.kernel, st) } else { eta };
        Ok(DceaForward { eta, v })
    }

    /// The unsupervised loss: the family's negative log-likelihood of `y` at `η̂`
    /// (docs/math.md §4's table, up to constants), averaged over every element of `y`. The
    /// authors' dictionary learning has no ℓ1 term (the threshold plays its part).
    pub fn unsupervised_loss<'t, T: Element>(&self, cx: &Ctx<'t, T>, y: &Var<'t, T>) -> Result<Var<'t, T>> {
        let out = self.encode(cx, y)?;
        Ok(nll(self.config.family, &out.eta, y, Reduction::Mean))
    }
}

impl<T: Element> Layer<T> for DceaLayer {
    fn forward<'t>(&self, cx: &Ctx<'t, T>, x: &Var<'t, T>) -> Result<Var<'t, T>> {
        let out = self.encode(cx, x)?;
        Ok(self.config.family.mean(&out.eta))
    }
}
