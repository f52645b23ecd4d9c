//! The convolutional sparse coding layer of SDNet (docs/math.md §2), wrapping [`sparse::csc::csc`].
//!
//! `CscLayer` is a drop-in for a `k × k` convolution `in → out` (same stride, padding and
//! output shape): its output is the code `z_T` after T FISTA steps on
//! `min_z λ‖z‖₁ + ½‖x − conv_transpose2d(z, W)‖²`. Before every forward the atoms `W[c]` are
//! renormalised to unit ℓ2 norm ([`Ctx::update_param`], so the store keeps the renormalised
//! atoms, as the authors renormalise in place) and `L` is re-estimated by the power
//! iteration warm-started from the buffer `{prefix}.v` (saved in checkpoints; the vector of
//! the input size the layer was built for).
//!
//! Names: parameter `{prefix}.w [out, in, k, k]` (the `Csc` module of
//! `../shared/peers/networks.py` names its weight `w`, so its `state_dict` loads), optional
//! parameter `{prefix}.lam [1]` when λ is learned, buffer `{prefix}.v [1, out, H', W']`
//! (PyTorch keeps that vector outside its `state_dict`; a loader leaves ours as built).

use autograd::Var;
use engine::{Element, Rng, Tensor};
use sparse::csc::{csc, unit_atoms, Conv, CscConfig};
use sparse::fista::{lipschitz, PowerConfig};

use super::conv::check_input;
use super::{BufferId, Ctx, Layer, ParamBuilder, ParamId, Result, Store};

/// λ of a CSC layer: a fixed number or a one-element parameter (`{prefix}.lam`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Lambda {
    Fixed(f64),
    Learned(ParamId),
}

/// The CSC layer (SDNet). Shapes: `x [N, in, H, W] → z [N, out, H', W']`, `H', W'` as
/// `conv2d` with the configuration's stride and padding. The configuration
/// ([`CscConfig`]) chooses the prox (signed or non-negative), the step (`step_scale / L`:
/// 1/L or SDNet's 0.9/L), the momentum (Beck–Teboulle or SDNet's), T, and the gradient
/// (unrolled or implicit).
#[derive(Clone, Debug)]
pub struct CscLayer {
    pub w: ParamId,
    pub lambda: Lambda,
    /// The power iteration's warm-start vector.
    pub v: BufferId,
    pub cfg: CscConfig,
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    /// The input size `{prefix}.v` is for; another size starts the power iteration cold
    /// (seeded) and leaves the buffer as it is.
    pub x_hw: [usize; 2],
    pub power: PowerConfig,
    /// Renormalise the atoms before every forward (SDNet: yes).
    pub renormalise: bool,
    /// A fixed `L` instead of the power iteration (gradient checks hold `L` fixed this way).
    pub fixed_lipschitz: Option<f64>,
    /// `{prefix}.w`: the layer skips the renormalisation when the weight is already on the
    /// tape (a gradient check's leaves).
    w_name: String,
}

impl CscLayer {
    /// A CSC layer `in_channels → out_channels` with `kernel × kernel` atoms for inputs of
    /// spatial size `x_hw`, fixed λ = `cfg.fista.lambda`. Atoms are Gaussian, renormalised to
    /// unit norm (networks.py draws `0.1·randn`, which the first forward renormalises).
    ///
    /// **Panics** if the window does not fit `x_hw` or the geometry has a dilation or groups.
    #[track_caller]
    pub fn new<T: Element>(
        pb: &mut ParamBuilder<'_, T>,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        x_hw: [usize; 2],
        cfg: CscConfig,
    ) -> Self {
        let w0 = unit_atoms(&Tensor::<T>::randn(&[out_channels, in_channels, kernel, kernel], pb.rng()));
        let power = PowerConfig::default();
        let z = Conv::new(w0.clone(), cfg.conv, x_hw).z_hw();
        let v0 = cold_start::<T>(&[1, out_channels, z[0], z[1]], &power);
        let w_name = pb.name("w");
        let w = pb.param("w", w0);
        let v = pb.buffer("v", v0);
        CscLayer {
            w,
            lambda: Lambda::Fixed(cfg.fista.lambda),
            v,
            cfg,
            in_channels,
            out_channels,
            kernel,
            x_hw,
            power,
            renormalise: true,
            fixed_lipschitz: None,
            w_name,
        }
    }

    /// Makes λ a trained one-element parameter `{prefix}.lam`, initialised to the current λ.
    /// **Panics** if λ is already learned.
    #[track_caller]
    pub fn learned_lambda<T: Element>(mut self, pb: &mut ParamBuilder<'_, T>) -> Self {
        let Lambda::Fixed(l) = self.lambda else { panic!("CscLayer: λ is already learned") };
        self.lambda = Lambda::Learned(pb.param("lam", Tensor::from_vec(vec![T::of(l)], &[1])));
        self
    }

    /// Sets a fixed λ (robust inference raises it at test time). A learned λ is a parameter:
    /// set `{prefix}.lam` in the store instead (an error says so).
    pub fn set_lambda(&mut self, lambda: f64) -> std::result::Result<(), String> {
        match self.lambda {
            Lambda::Fixed(_) if lambda >= 0.0 && lambda.is_finite() => {
                self.lambda = Lambda::Fixed(lambda);
                self.cfg.fista.lambda = lambda;
                Ok(())
            }
            Lambda::Fixed(_) => Err(format!("CscLayer: λ must be finite and ≥ 0, got {lambda}")),
            Lambda::Learned(_) => Err(format!(
                "CscLayer: λ is the parameter '{}'; set it in the store",
                self.w_name.strip_suffix('w').map(|p| format!("{p}lam")).unwrap_or_default()
            )),
        }
    }

    /// The λ used by the next forward (the store's value when learned).
    pub fn lambda_value<T: Element>(&self, store: &Store<T>) -> f64 {
        match self.lambda {
            Lambda::Fixed(l) => l,
            Lambda::Learned(id) => store.param(id).to_vec()[0].as_f64(),
        }
    }

    /// `L` as the next forward on an input of spatial size `x_hw` computes it from `store`
    /// (renormalised atoms, warm start from `{prefix}.v` when it fits): for gradient checks,
    /// which hold `L` fixed ([`CscLayer::fixed_lipschitz`]).
    pub fn estimate_lipschitz<T: Element>(&self, store: &Store<T>, x_hw: [usize; 2]) -> Result<f64> {
        let w = store.param(self.w);
        let w = if self.renormalise { unit_atoms(w) } else { w.clone() };
        Ok(self.power_iteration(w, x_hw, store.buffer(self.v).clone())?.0)
    }

    /// `(L, the new warm-start vector if it is for the buffer's size)`.
    fn power_iteration<T: Element>(
        &self,
        w: Tensor<T>,
        x_hw: [usize; 2],
        warm: Tensor<T>,
    ) -> Result<(f64, Option<Tensor<T>>)> {
        let op = Conv::new(w, self.cfg.conv, x_hw);
        let z = op.z_hw();
        let shape = [1, self.out_channels, z[0], z[1]];
        let fits = warm.shape() == shape;
        let est = lipschitz(&op, &shape, fits.then_some(&warm), &self.power)?;
        Ok((est.value, fits.then_some(est.vector)))
    }

    fn describe(&self) -> String {
        format!("CscLayer({} → {}, {}×{})", self.in_channels, self.out_channels, self.kernel, self.kernel)
    }
}

/// The power iteration's seeded start (what [`lipschitz`] draws without a warm start).
fn cold_start<T: Element>(shape: &[usize], power: &PowerConfig) -> Tensor<T> {
    let v = Tensor::<T>::randn(shape, &mut Rng::new(power.seed));
    let n: f64 = v.to_vec().iter().map(|a| a.as_f64() * a.as_f64()).sum::<f64>().sqrt();
    if n > 0.0 {
        v.div_scalar(n)
    } else {
        v
    }
}

impl<T: Element> Layer<T> for CscLayer {
    fn forward<'t>(&self, cx: &Ctx<'t, T>, x: &Var<'t, T>) -> Result<Var<'t, T>> {
        let s = x.shape();
        check_input(&self.describe(), &s, self.in_channels, [self.kernel; 2], self.cfg.conv.padding)?;
        let hw = [s[2], s[3]];
        let bound = cx.used_params().iter().any(|(n, _)| *n == self.w_name);
        if self.renormalise && !bound {
            cx.update_param(self.w, unit_atoms);
        }
        let l = match self.fixed_lipschitz {
            Some(l) => l,
            None => {
                let (l, v) = self.power_iteration(cx.param_value(self.w), hw, cx.buffer(self.v))?;
                if let Some(v) = v {
                    cx.set_buffer(self.v, v);
                }
                l
            }
        };
        let w = cx.param(self.w);
        let mut cfg = self.cfg.clone();
        let lam = match self.lambda {
            Lambda::Fixed(l) => {
                cfg.fista.lambda = l;
                None
            }
            Lambda::Learned(id) => Some(cx.param(id)),
        };
        let (z, _stats) = csc(x, &w, lam.as_ref(), l, &cfg)?;
        Ok(z)
    }
}
