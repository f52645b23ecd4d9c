//! The MatConvNet MNIST LeNet: conv 5×5 1→20, max-pool 2/2, conv 5×5 20→50, max-pool 2/2,
//! conv 4×4 50→500 (a fully connected layer on the 4×4 maps), ReLU, linear 500→C.
//! 431,080 parameters at C = 10. Names follow the `nn.Sequential` of
//! `../shared/peers/networks.py` (`0.weight`, `2.weight`, `4.weight`, `7.weight`).
//!
//! Its sparse factorization variants ([`SparseLeNet`], docs/math.md §1; the paper's Fig. 2 and
//! Sec. 4: "CSF replaces the first convolution layer; SF replaces the first linear layer and
//! removes the ReLU; CSF+SF makes both modifications", all else equal). The dictionaries have
//! the replaced weights' sizes and no bias, so at C = 10: `sf-lenet` 431,080 − 500 (the 4×4
//! conv's bias) = 430,580; `csf-lenet` 431,080 − 20 (the first conv's bias) = 431,060;
//! `csf-sf-lenet` 430,560 (+2 with learned λ1, λ2).

use autograd::Var;
use engine::{Conv2dParams, Element};
use sparse::sf::Patches;
use sparse::LarsConfig;

use super::unsupervised::Unsupervised;
use super::{NetConfig, NetSpec};
use crate::layers::{
    Conv2d, Csf, Ctx, Flatten, Layer, Linear, MaxPool2d, ParamBuilder, Relu, Result as LayerResult, Sequential, Sf,
};

pub fn spec() -> NetSpec {
    NetSpec {
        name: "lenet",
        about: "MatConvNet MNIST LeNet (conv5-pool-conv5-pool-conv4-relu-linear)",
        classes: 10,
        input: [1, 28, 28],
    }
}

/// Builds LeNet for `cfg.input = [C, 28, 28]` and `cfg.classes` outputs.
pub fn build<T: Element>(cfg: &NetConfig, pb: &mut ParamBuilder<'_, T>) -> Result<Sequential<T>, String> {
    let [c, h, w] = cfg.input;
    if h != 28 || w != 28 {
        return Err(format!("lenet takes 28×28 images, the configuration says {h}×{w}"));
    }
    let conv = Conv2dParams::new();
    Ok(Sequential::new()
        .add(Conv2d::new(&mut pb.pp(0), c, 20, 5, conv, true))
        .add(MaxPool2d::new(2, 2))
        .add(Conv2d::new(&mut pb.pp(2), 20, 50, 5, conv, true))
        .add(MaxPool2d::new(2, 2))
        .add(Conv2d::new(&mut pb.pp(4), 50, 500, 4, conv, true))
        .add(Relu)
        .add(Flatten)
        .add(Linear::new(&mut pb.pp(7), 500, cfg.classes, true)))
}

// ---------------------------------------------------------------------------------------------
// The sparse factorization variants (docs/math.md §1, `sparse-factorization-layers.txt`, Fig. 2)

/// Which LeNet layers a sparse variant replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// `sf-lenet`: the first fully-connected layer (here the 4×4 convolution 50→500 on the
    /// 4×4 maps, i.e. a linear 800→500) *and* its ReLU become an SF layer, `D [800, 500]`.
    Sf,
    /// `csf-lenet`: the first convolution (5×5, 1→20) becomes a CSF layer, `D [25, 20]`.
    Csf,
    /// `csf-sf-lenet`: both.
    CsfSf,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Sf => "sf-lenet",
            Variant::Csf => "csf-lenet",
            Variant::CsfSf => "csf-sf-lenet",
        }
    }
    fn has_csf(self) -> bool {
        matches!(self, Variant::Csf | Variant::CsfSf)
    }
    fn has_sf(self) -> bool {
        matches!(self, Variant::Sf | Variant::CsfSf)
    }
}

pub fn sf_spec() -> NetSpec {
    NetSpec {
        name: "sf-lenet",
        about: "LeNet with its first fully-connected layer and ReLU replaced by an SF layer (Sf+ReLU → SF, k = 500)",
        classes: 10,
        input: [1, 28, 28],
    }
}

pub fn csf_spec() -> NetSpec {
    NetSpec {
        name: "csf-lenet",
        about: "LeNet with its first convolution replaced by a CSF layer (5×5 patches, k = 20)",
        classes: 10,
        input: [1, 28, 28],
    }
}

pub fn csf_sf_spec() -> NetSpec {
    NetSpec {
        name: "csf-sf-lenet",
        about: "LeNet with both the CSF first layer and the SF fully-connected layer",
        classes: 10,
        input: [1, 28, 28],
    }
}

/// The first layer of a sparse LeNet.
#[derive(Clone, Debug)]
pub enum First {
    Conv(Conv2d),
    Csf(Csf),
}

/// The third layer (the first fully-connected one) of a sparse LeNet.
#[derive(Clone, Debug)]
pub enum Third {
    /// The 4×4 convolution 50→500 followed by ReLU and Flatten.
    Conv(Conv2d),
    /// Flatten, then SF 800→500 (no ReLU).
    Sf(Sf),
}

/// LeNet with SF and/or CSF layers. Parameters keep the `nn.Sequential` indices of the LeNet
/// layers they replace: `0.weight`, `0.bias` (or `0.dictionary [25, 20]`), `2.weight`,
/// `2.bias`, `4.weight`, `4.bias` (or `4.dictionary [800, 500]`, and `4.lambda1`,
/// `4.lambda2` when learned), `7.weight`, `7.bias`.
///
/// Options (`NetConfig::option`): `lambda1` (default 0.1) and `lambda2` (default 0.01), the
/// elastic-net weights of both sparse layers (the paper does not state its values). The
/// codes these give are not very sparse, and grow denser as training scales up the layer's
/// input: measured 2026-12-07 on MNIST (`train --model sf-lenet --limit 640`), the SF layer's
/// λ_max = max_j |d_jᵀx| rose from 1.7 to 5.6 over the first 640 images and its codes had
/// 330–460 of the 500 atoms active (on `networks_step`'s random inputs, 350–380), which makes
/// each code an O(k·|Λ|²) LARS path and the SF step ~20–30× LeNet's; the CSF codes have about
/// half of their 20 atoms active. A larger `lambda1` gives sparser and much cheaper codes;
/// `max_active` caps them. `learn_lambdas` (default false: λ fixed;
/// true: the SF layer learns λ1, λ2, docs/math.md §1's optional gradients; the CSF op has no λ
/// inputs, so its λ stay fixed); `max_active` (default none), a cap on active atoms per code;
/// `c1`, `c2`, `hidden` (default 20, 50, 500), the widths of the three hidden layers, for
/// reduced versions (gradient checks).
#[derive(Clone, Debug)]
pub struct SparseLeNet {
    pub variant: Variant,
    pub first: First,
    pub conv2: Conv2d,
    pub third: Third,
    pub fc: Linear,
}

/// Builds the sparse LeNet `variant` for `cfg.input = [C, 28, 28]` and `cfg.classes` outputs.
pub fn build_sparse<T: Element>(
    variant: Variant,
    cfg: &NetConfig,
    pb: &mut ParamBuilder<'_, T>,
) -> Result<SparseLeNet, String> {
    let [c, h, w] = cfg.input;
    if h != 28 || w != 28 {
        return Err(format!("{} takes 28×28 images, the configuration says {h}×{w}", variant.name()));
    }
    let mut lars = LarsConfig::new(cfg.get("lambda1", 0.1)?, cfg.get("lambda2", 0.01)?);
    if let Some(n) = cfg.options.get("max_active") {
        lars = lars.max_active(n.parse().map_err(|_| format!("{}: invalid max_active '{n}'", variant.name()))?);
    }
    let learn = cfg.get("learn_lambdas", false)?;
    let (c1, c2, hidden): (usize, usize, usize) = (cfg.get("c1", 20)?, cfg.get("c2", 50)?, cfg.get("hidden", 500)?);
    if c1 == 0 || c2 == 0 || hidden == 0 {
        return Err(format!("{}: c1, c2 and hidden must be positive", variant.name()));
    }
    let conv = Conv2dParams::new();
    let first = if variant.has_csf() {
        First::Csf(Csf::new(&mut pb.pp(0), c, c1, Patches::new(5), lars.clone()))
    } else {
        First::Conv(Conv2d::new(&mut pb.pp(0), c, c1, 5, conv, true))
    };
    let conv2 = Conv2d::new(&mut pb.pp(2), c1, c2, 5, conv, true);
    let third = if variant.has_sf() {
        Third::Sf(Sf::new(&mut pb.pp(4), c2 * 4 * 4, hidden, lars, learn))
    } else {
        Third::Conv(Conv2d::new(&mut pb.pp(4), c2, hidden, 4, conv, true))
    };
    let fc = Linear::new(&mut pb.pp(7), hidden, cfg.classes, true);
    Ok(SparseLeNet { variant, first, conv2, third, fc })
}

impl SparseLeNet {
    /// The input of the third layer, `[N, 50, 4, 4]`, and the CSF layer's unsupervised loss
    /// `[N]` when `unsupervised` and the first layer is CSF.
    fn trunk<'t, T: Element>(
        &self,
        cx: &Ctx<'t, T>,
        x: &Var<'t, T>,
        unsupervised: bool,
    ) -> LayerResult<(Var<'t, T>, Option<Var<'t, T>>)> {
        let pool = MaxPool2d::new(2, 2);
        let (h, lu) = match &self.first {
            First::Conv(c) => (c.forward(cx, x)?, None),
            First::Csf(c) => (c.forward(cx, x)?, if unsupervised { Some(c.unsupervised_loss(cx, x)?) } else { None }),
        };
        let h = pool.forward(cx, &h)?;
        let h = pool.forward(cx, &self.conv2.forward(cx, &h)?)?;
        Ok((h, lu))
    }

    /// The logits `[N, classes]` and, when `unsupervised`, the mean over the batch of the sum
    /// of the sparse layers' unsupervised losses (a scalar), from one pass.
    pub fn forward_with_unsupervised<'t, T: Element>(
        &self,
        cx: &Ctx<'t, T>,
        x: &Var<'t, T>,
        unsupervised: bool,
    ) -> LayerResult<(Var<'t, T>, Option<Var<'t, T>>)> {
        let (h, mut lu) = self.trunk(cx, x, unsupervised)?;
        let h = match &self.third {
            Third::Conv(c) => Flatten.forward(cx, &Relu.forward(cx, &c.forward(cx, &h)?)?)?,
            Third::Sf(sf) => {
                let a = Flatten.forward(cx, &h)?;
                if unsupervised {
                    let l = sf.unsupervised_loss(cx, &a)?;
                    lu = Some(match lu {
                        Some(prev) => prev.add(&l),
                        None => l,
                    });
                }
                sf.forward(cx, &a)?
            }
        };
        let logits = self.fc.forward(cx, &h)?;
        Ok((logits, lu.map(|l| l.mean_all())))
    }
}

impl<T: Element> Layer<T> for SparseLeNet {
    fn forward<'t>(&self, cx: &Ctx<'t, T>, x: &Var<'t, T>) -> LayerResult<Var<'t, T>> {
        Ok(self.forward_with_unsupervised(cx, x, false)?.0)
    }
}

impl<T: Element> Unsupervised<T> for SparseLeNet {
    /// `(1/N) Σ_n Σ_layers L_u`: the CSF layer's on the image, the SF layer's on its input.
    /// The paper's training loss `Σ_labelled L_s + γ Σ_all L_u` is, per batch, the mean
    /// cross-entropy of the labelled samples plus `γ ×` this (the 1/N folded into γ).
    fn unsupervised_loss<'t>(&self, cx: &Ctx<'t, T>, x: &Var<'t, T>) -> LayerResult<Var<'t, T>> {
        if !self.variant.has_sf() {
            let (_, lu) = self.trunk(cx, x, true)?;
            return Ok(lu.expect("a CSF variant").mean_all());
        }
        Ok(self.forward_with_unsupervised(cx, x, true)?.1.expect("an SF variant"))
    }

    fn into_layer(self: Box<Self>) -> Box<dyn Layer<T>> {
        self
    }
}
