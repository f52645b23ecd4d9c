//! BatchNorm2d with PyTorch's semantics and names.

use autograd::Var;
use engine::{Element, Tensor};

use super::{BufferId, Ctx, Error, Layer, ParamBuilder, ParamId, Result};

/// Batch normalisation over `[N, C, H, W]`, per channel. Train mode normalises with the
/// batch's mean and biased variance (one fused rule, [`Var::batch_norm`]) and updates the
/// running statistics with `momentum` (the running variance with the unbiased batch variance,
/// as PyTorch); eval mode uses the running statistics. Parameters `{prefix}.weight` (γ, ones)
/// and `{prefix}.bias` (β, zeros); buffers `{prefix}.running_mean`, `{prefix}.running_var`,
/// `{prefix}.num_batches_tracked` — the names of `nn.BatchNorm2d`'s `state_dict`.
#[derive(Clone, Debug)]
pub struct BatchNorm2d {
    pub gamma: ParamId,
    pub beta: ParamId,
    pub running_mean: BufferId,
    pub running_var: BufferId,
    pub batches: BufferId,
    pub channels: usize,
    pub eps: f64,
    pub momentum: f64,
}

impl BatchNorm2d {
    /// PyTorch's defaults: `eps = 1e-5`, `momentum = 0.1`.
    pub fn new<T: Element>(pb: &mut ParamBuilder<'_, T>, channels: usize) -> Self {
        BatchNorm2d {
            gamma: pb.param("weight", Tensor::ones(&[channels])),
            beta: pb.param("bias", Tensor::zeros(&[channels])),
            running_mean: pb.buffer("running_mean", Tensor::zeros(&[channels])),
            running_var: pb.buffer("running_var", Tensor::ones(&[channels])),
            batches: pb.buffer("num_batches_tracked", Tensor::zeros(&[])),
            channels,
            eps: 1e-5,
            momentum: 0.1,
        }
    }
}

impl<T: Element> Layer<T> for BatchNorm2d {
    fn forward<'t>(&self, cx: &Ctx<'t, T>, x: &Var<'t, T>) -> Result<Var<'t, T>> {
        let s = x.shape();
        let c = self.channels;
        if s.len() != 4 || s[1] != c {
            return Err(Error::Shape(format!("BatchNorm2d({c}): expected an input [N, {c}, H, W], got {s:?}")));
        }
        let tape = cx.tape();
        let shape = [1, c, 1, 1];
        if cx.training() {
            let count = s[0] * s[2] * s[3];
            if count < 2 {
                return Err(Error::Shape(format!(
                    "BatchNorm2d({c}): training needs more than one value per channel, got input {s:?}"
                )));
            }
            // One fused rule: statistics, output and gradient in one pass each.
            let (y, stats) = x.batch_norm(&cx.param(self.gamma), &cx.param(self.beta), self.eps);
            // Running statistics, off the tape.
            let m = self.momentum;
            let unbiased = count as f64 / (count - 1) as f64;
            let (mean, var) = (Tensor::from_vec(stats.mean, &[c]), Tensor::from_vec(stats.var, &[c]));
            let rm = cx.buffer(self.running_mean).mul_scalar(1.0 - m).add(&mean.mul_scalar(m));
            let rv = cx.buffer(self.running_var).mul_scalar(1.0 - m).add(&var.mul_scalar(m * unbiased));
            cx.set_buffer(self.running_mean, rm);
            cx.set_buffer(self.running_var, rv);
            cx.set_buffer(self.batches, cx.buffer(self.batches).add_scalar(1.0));
            return Ok(y);
        }
        let gamma = cx.param(self.gamma).reshape(&shape);
        let beta = cx.param(self.beta).reshape(&shape);
        let mean = tape.constant(cx.buffer(self.running_mean).reshape(&shape));
        let var = tape.constant(cx.buffer(self.running_var).reshape(&shape));
        let y = x.sub(&mean).div(&var.add_scalar(self.eps).sqrt());
        Ok(y.mul(&gamma).add(&beta))
    }
}
