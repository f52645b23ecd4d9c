//! The spatial-contrasting head (docs/math.md §5; Hoffer, Hubara & Ailon 2016): two patches of
//! every image of the batch, the features of each from the same network, and the SC loss
//! (`sparse::scl::sc_loss`) that makes the two patches of an image closer to each other than
//! to the patches of the other images of the batch (the batch supplies the contrasting
//! samples, as the paper's Algorithm 1).
//!
//! Choices (the paper's appendix lost its numbers in the seed): the patches are square crops
//! of the input image, `patch × patch`, at independent uniform positions drawn from the
//! context's random stream (so a step is reproducible from its seed); the features are those
//! of the layer the classifier reads (the last convolutional layer), averaged over space, as
//! the paper's "spatially averaged" features and its use of the pretrained convolutional
//! layers to initialise the classifier. The loss is the paper's symmetric one with squared
//! distances by default ([`ScConfig`]).

use autograd::Var;
use engine::Element;
use sparse::scl::{sc_loss, ScConfig};

use super::{Ctx, Error, Layer, Result};

/// Patch sampling and the SC loss; no parameters of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpatialContrasting {
    /// Side of the square patches (pixels of the input).
    pub patch: usize,
    pub cfg: ScConfig,
}

impl SpatialContrasting {
    pub fn new(patch: usize, cfg: ScConfig) -> Self {
        SpatialContrasting { patch, cfg }
    }

    /// Two patches of every image of `x [N, C, H, W]`: `(anchors, positives)`, each
    /// `[N, C, patch, patch]`, row `n` of both from image `n`, at positions drawn from the
    /// context's random stream.
    pub fn sample<'t, T: Element>(&self, cx: &Ctx<'t, T>, x: &Var<'t, T>) -> Result<(Var<'t, T>, Var<'t, T>)> {
        let s = x.shape();
        let p = self.patch;
        if s.len() != 4 || s[0] == 0 || p == 0 || s[2] < p || s[3] < p {
            return Err(Error::Shape(format!(
                "SpatialContrasting: {p}×{p} patches need an input [N ≥ 1, C, H ≥ {p}, W ≥ {p}], got {s:?}"
            )));
        }
        // Positions first (row, column of the anchor, then of the positive, per image), so
        // the random stream is released before the tape ops.
        let pos: Vec<usize> = {
            let mut rng = cx.rng();
            (0..s[0] * 4).map(|i| rng.below((if i % 2 == 0 { s[2] } else { s[3] } - p + 1) as u64) as usize).collect()
        };
        let crop = |n: usize, k: usize| x.narrow(0, n, 1).narrow(2, pos[4 * n + k], p).narrow(3, pos[4 * n + k + 1], p);
        let a: Vec<Var<'t, T>> = (0..s[0]).map(|n| crop(n, 0)).collect();
        let b: Vec<Var<'t, T>> = (0..s[0]).map(|n| crop(n, 2)).collect();
        Ok((Var::concat(&a, 0), Var::concat(&b, 0)))
    }

    /// The SC loss (a scalar) of the features `features` gives two patches of every image of
    /// `x`; 4-D features `[N, d, h, w]` are averaged over space, 2-D ones taken as they are.
    pub fn loss<'t, T: Element, L: Layer<T> + ?Sized>(
        &self,
        cx: &Ctx<'t, T>,
        features: &L,
        x: &Var<'t, T>,
    ) -> Result<Var<'t, T>> {
        let (a, p) = self.sample(cx, x)?;
        let (fa, fp) = (vectors(features.forward(cx, &a)?)?, vectors(features.forward(cx, &p)?)?);
        Ok(sc_loss(&fa, &fp, self.cfg))
    }
}

/// `[N, d, h, w] → [N, d]` by the spatial mean; `[N, d]` unchanged.
fn vectors<T: Element>(f: Var<'_, T>) -> Result<Var<'_, T>> {
    match f.shape().len() {
        2 => Ok(f),
        4 => Ok(f.mean(&[2, 3], false)),
        _ => Err(Error::Shape(format!(
            "SpatialContrasting: features must be [N, d] or [N, d, h, w], got {:?}",
            f.shape()
        ))),
    }
}
