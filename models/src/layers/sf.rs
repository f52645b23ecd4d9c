//! The sparse factorization layers of docs/math.md §1 (`sparse-factorization-layers.txt`): [`Sf`]
//! (elastic-net codes of each row, a drop-in for a fully-connected layer *and* its ReLU) and
//! [`Csf`] (the code of every patch, "convolutional in spirit", a drop-in for a convolution),
//! wrapping `sparse::sf`'s ops, with their unsupervised losses for semi-supervised training.
//!
//! Both keep a dictionary `D [m, k]` (atoms as columns) initialised with random unit-norm
//! atoms and projected onto the unit ball after every optimiser step (`d_j ← d_j /
//! max(1, ‖d_j‖)`, docs/math.md §1, attached as the post-step [`UnitNormAtoms`] on
//! `{prefix}.dictionary`).

use autograd::optim::{PostStep, UnitNormAtoms};
use autograd::Var;
use engine::{Element, Tensor};
use sparse::sf::{csf, csf_loss, sf, sf_loss, sf_with_lambdas, Patches};
use sparse::LarsConfig;

use super::{init, Ctx, Error, Layer, ParamBuilder, ParamId, Result};

/// Keeps a parameter non-negative after every step (`λ ← max(λ, 0)`): a learned λ1 or λ2
/// must stay a valid elastic-net weight.
#[derive(Clone, Copy, Debug, Default)]
pub struct NonNegative;

impl<T: Element> PostStep<T> for NonNegative {
    fn name(&self) -> &str {
        "non_negative"
    }
    fn apply(&self, param: &mut Tensor<T>, _lr: f64) {
        *param = param.map(|v| if v > T::zero() { v } else { T::zero() });
    }
}

/// A dictionary `{prefix}.dictionary [m, k]` of random unit-norm atoms with the unit-ball
/// projection attached.
fn dictionary<T: Element>(pb: &mut ParamBuilder<'_, T>, m: usize, k: usize) -> ParamId {
    let d = init::unit_atoms::<T>(&[m, k], &[0], pb.rng());
    let id = pb.param("dictionary", d);
    pb.post_step(id, UnitNormAtoms { atom_axes: vec![0], exact: false });
    id
}

/// The sparse factorization (SF) layer: `a [N, m] → α*(a, D) [N, k]`, the elastic-net code
/// `argmin_α ½‖a − Dα‖² + λ1‖α‖₁ + (λ2/2)‖α‖²` of each row, solved exactly by LARS-EN, with
/// Mairal's gradient. Parameters: `{prefix}.dictionary [m, k]` (m·k, as the linear layer it
/// replaces without its bias), and with learned λ also `{prefix}.lambda1 [1]`,
/// `{prefix}.lambda2 [1]` (kept ≥ 0 by a post-step; `∂L/∂λ1 = −βᵀsign(α*)`,
/// `∂L/∂λ2 = −βᵀα*`).
#[derive(Clone, Debug)]
pub struct Sf {
    pub d: ParamId,
    /// `(λ1, λ2)` as parameters when learned; `None`: the config's values, fixed.
    pub lambdas: Option<(ParamId, ParamId)>,
    /// The solver's settings; `lambda1`/`lambda2` are the fixed (or initial) values.
    pub cfg: LarsConfig,
    pub in_features: usize,
    pub atoms: usize,
}

impl Sf {
    /// `m → k` with the solver settings `cfg` (λ1, λ2, cap, sign); λ learned when
    /// `learn_lambdas` (initialised from `cfg`).
    pub fn new<T: Element>(
        pb: &mut ParamBuilder<'_, T>,
        in_features: usize,
        atoms: usize,
        cfg: LarsConfig,
        learn_lambdas: bool,
    ) -> Self {
        let d = dictionary(pb, in_features, atoms);
        let lambdas = learn_lambdas.then(|| {
            let l1 = pb.param("lambda1", Tensor::full(&[1], T::of(cfg.lambda1)));
            let l2 = pb.param("lambda2", Tensor::full(&[1], T::of(cfg.lambda2)));
            pb.post_step(l1, NonNegative);
            pb.post_step(l2, NonNegative);
            (l1, l2)
        });
        Sf { d, lambdas, cfg, in_features, atoms }
    }

    fn check(&self, s: &[usize]) -> Result<()> {
        if s.len() != 2 || s[1] != self.in_features {
            return Err(Error::Shape(format!(
                "Sf({} → {}): expected an input [N, {}], got {s:?}",
                self.in_features, self.atoms, self.in_features
            )));
        }
        Ok(())
    }

    /// The solver settings with the current λ (learned values if any).
    fn current_cfg<T: Element>(&self, cx: &Ctx<'_, T>) -> LarsConfig {
        let mut cfg = self.cfg.clone();
        if let Some((l1, l2)) = self.lambdas {
            cfg.lambda1 = cx.param_value(l1).to_f64_vec()[0];
            cfg.lambda2 = cx.param_value(l2).to_f64_vec()[0];
        }
        cfg
    }

    /// The unsupervised loss of every row, `L_u(a_n, D) = ½‖a_n − Dα*‖² + λ1‖α*‖₁ +
    /// (λ2/2)‖α*‖²` `[N]` (docs/math.md §1; envelope-theorem gradients in `a` and `D`). Learned λ
    /// enter as constants at their current values (the loss would only drive them to 0).
    pub fn unsupervised_loss<'t, T: Element>(&self, cx: &Ctx<'t, T>, x: &Var<'t, T>) -> Result<Var<'t, T>> {
        self.check(&x.shape())?;
        let cfg = self.current_cfg(cx);
        Ok(sf_loss(&cx.param(self.d), x, &cfg)?.0)
    }
}

impl<T: Element> Layer<T> for Sf {
    fn forward<'t>(&self, cx: &Ctx<'t, T>, x: &Var<'t, T>) -> Result<Var<'t, T>> {
        self.check(&x.shape())?;
        let d = cx.param(self.d);
        let (codes, _) = match self.lambdas {
            Some((l1, l2)) => sf_with_lambdas(&d, x, &cx.param(l1), &cx.param(l2), &self.cfg)?,
            None => sf(&d, x, &self.cfg)?,
        };
        Ok(codes)
    }
}

/// The convolutional sparse factorization (CSF) layer: the elastic-net code of every
/// `C×kh×kw` patch of `x [N, C, H, W]` (taken as `conv2d` would, stride and padding) over one
/// dictionary `{prefix}.dictionary [C·kh·kw, k]`, arranged `[N, k, H', W']`. λ1, λ2 fixed
/// (`sparse::sf::csf` has no λ inputs).
#[derive(Clone, Debug)]
pub struct Csf {
    pub d: ParamId,
    pub cfg: LarsConfig,
    pub patches: Patches,
    pub in_channels: usize,
    pub atoms: usize,
}

impl Csf {
    /// `in_channels → atoms` over the windows of `patches`, solver settings `cfg`.
    pub fn new<T: Element>(
        pb: &mut ParamBuilder<'_, T>,
        in_channels: usize,
        atoms: usize,
        patches: Patches,
        cfg: LarsConfig,
    ) -> Self {
        let m = in_channels * patches.kernel[0] * patches.kernel[1];
        let d = dictionary(pb, m, atoms);
        Csf { d, cfg, patches, in_channels, atoms }
    }

    fn check(&self, s: &[usize]) -> Result<()> {
        let name = format!("Csf({} → {}, {:?})", self.in_channels, self.atoms, self.patches.kernel);
        super::conv::check_input(&name, s, self.in_channels, self.patches.kernel, self.patches.conv.padding)
    }

    /// The unsupervised loss of every image, the sum of `L_u` over its patches `[N]`.
    pub fn unsupervised_loss<'t, T: Element>(&self, cx: &Ctx<'t, T>, x: &Var<'t, T>) -> Result<Var<'t, T>> {
        self.check(&x.shape())?;
        Ok(csf_loss(&cx.param(self.d), x, self.patches, &self.cfg)?.0)
    }
}

impl<T: Element> Layer<T> for Csf {
    fn forward<'t>(&self, cx: &Ctx<'t, T>, x: &Var<'t, T>) -> Result<Var<'t, T>> {
        self.check(&x.shape())?;
        Ok(csf(&cx.param(self.d), x, self.patches, &self.cfg)?.0)
    }
}
