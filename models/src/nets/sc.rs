//! The spatial-contrasting convnet (docs/math.md §5, `spatial-contrasting.txt`; Hoffer, Hubara &
//! Ailon 2016) with its classifier head, at a size practical on a CPU.
//!
//! The paper's networks (its appendix, numbers lost in the seed) are the deep all-3×3
//! convnets of Rasmus et al. (CIFAR: three stages of 3×3 conv + ReLU with max-pooling, dropout,
//! a last convolution, dropout, a fully-connected classifier). Here the same shape, narrower:
//!
//! ```text
//! features:   0 conv3×3 C→w, ReLU, 2 conv3×3 w→w, ReLU, max-pool 2/2,
//!             5 conv3×3 w→2w, ReLU, 7 conv3×3 2w→2w, ReLU, max-pool 2/2,
//!             10 conv3×3 2w→4w, ReLU                           (padding 1 throughout)
//! classifier: global average pool, 0 dropout(p), 1 linear 4w→classes
//! ```
//!
//! with `w = width` (default 32: 140,714 parameters for CIFAR-10, 140,138 for MNIST).
//! Parameters `features.{0,2,5,7,10}.{weight,bias}`, `classifier.1.{weight,bias}`.
//!
//! The unsupervised term is the SC loss (symmetric, squared distances) of the spatially
//! averaged output of `features` (the layer the classifier reads, so pretraining initialises
//! everything but the last linear layer) on two random `patch × patch` crops of every image
//! of the batch, the batch's other images supplying the contrasting patches.
//!
//! Options: `width` (32), `dropout` (0.5), `patch` (default half the image side, rounded up:
//! 16 for CIFAR, 14 for MNIST), `distance` (`squared` or `euclidean`), `symmetric` (true).

use autograd::Var;
use engine::{Conv2dParams, Element};
use sparse::scl::{Distance, ScConfig};

use super::unsupervised::Unsupervised;
use super::{NetConfig, NetSpec};
use crate::layers::{
    Conv2d, Ctx, Dropout, GlobalAvgPool, Layer, Linear, MaxPool2d, ParamBuilder, Relu, Result, Sequential,
    SpatialContrasting,
};

pub fn spec() -> NetSpec {
    NetSpec {
        name: "sc-convnet",
        about: "Spatial-contrasting convnet (five 3×3 convs, two pools, GAP, dropout, linear; SC loss on patch pairs)",
        classes: 10,
        input: [3, 32, 32],
    }
}

/// The convnet: `features` (what the SC loss trains), the classifier head, the SC head.
pub struct ScConvNet<T: Element> {
    pub features: Sequential<T>,
    pub classifier: Sequential<T>,
    pub head: SpatialContrasting,
}

pub fn build<T: Element>(cfg: &NetConfig, pb: &mut ParamBuilder<'_, T>) -> std::result::Result<ScConvNet<T>, String> {
    let [c, h, w] = cfg.input;
    let width: usize = cfg.get("width", 32)?;
    let p: f64 = cfg.get("dropout", 0.5)?;
    if !(0.0..1.0).contains(&p) || width == 0 {
        return Err(format!("sc-convnet: dropout must be in [0, 1) and width positive, got {p} and {width}"));
    }
    let patch: usize = cfg.get("patch", h.min(w).div_ceil(2))?;
    // Two 2×2 pools: the patches and the images must be at least 4×4.
    if patch < 4 || h < patch || w < patch {
        return Err(format!("sc-convnet: patch {patch} must be at least 4 and fit the {h}×{w} input"));
    }
    let distance = match cfg.get("distance", "squared".to_string())?.as_str() {
        "squared" => Distance::Squared,
        "euclidean" => Distance::Euclidean,
        d => return Err(format!("sc-convnet: distance must be squared or euclidean, got {d}")),
    };
    let sc = ScConfig::new().distance(distance).symmetric(cfg.get("symmetric", true)?);
    let conv = Conv2dParams::new().padding(1);
    let mut f = pb.pp("features");
    let features = Sequential::new()
        .add(Conv2d::new(&mut f.pp(0), c, width, 3, conv, true))
        .add(Relu)
        .add(Conv2d::new(&mut f.pp(2), width, width, 3, conv, true))
        .add(Relu)
        .add(MaxPool2d::new(2, 2))
        .add(Conv2d::new(&mut f.pp(5), width, 2 * width, 3, conv, true))
        .add(Relu)
        .add(Conv2d::new(&mut f.pp(7), 2 * width, 2 * width, 3, conv, true))
        .add(Relu)
        .add(MaxPool2d::new(2, 2))
        .add(Conv2d::new(&mut f.pp(10), 2 * width, 4 * width, 3, conv, true))
        .add(Relu);
    let classifier = Sequential::new().add(Dropout::new(p)).add(Linear::new(
        &mut pb.pp("classifier").pp(1),
        4 * width,
        cfg.classes,
        true,
    ));
    Ok(ScConvNet { features, classifier, head: SpatialContrasting::new(patch, sc) })
}

impl<T: Element> Layer<T> for ScConvNet<T> {
    fn forward<'t>(&self, cx: &Ctx<'t, T>, x: &Var<'t, T>) -> Result<Var<'t, T>> {
        let h = GlobalAvgPool.forward(cx, &self.features.forward(cx, x)?)?;
        self.classifier.forward(cx, &h)
    }
}

impl<T: Element> Unsupervised<T> for ScConvNet<T> {
    /// The SC loss of `features` on two random patches of every image of `x` (positions from
    /// the context's random stream).
    fn unsupervised_loss<'t>(&self, cx: &Ctx<'t, T>, x: &Var<'t, T>) -> Result<Var<'t, T>> {
        self.head.loss(cx, &self.features, x)
    }

    fn into_layer(self: Box<Self>) -> Box<dyn Layer<T>> {
        self
    }
}
