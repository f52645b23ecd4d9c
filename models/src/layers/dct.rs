//! The fixed overcomplete-DCT convolution of double sparsity (docs/math.md §3), wrapping
//! [`sparse::dct`], and the shrinkage post-step of the coefficients that follow it.
//!
//! `DctConv2d` is `conv2d(x, Φ) + b` with `Φ [F, C, k, k]` the DCT filters held as the buffer
//! `{prefix}.phi` (saved, never trained) and the bias `{prefix}.bias [F]` its only parameter
//! — the names of `FixedDct` in `../shared/peers/networks.py`. The ReLU is the next layer of
//! the network, as in NiN's `nn.Sequential`. The trained coefficients `W` are the 1×1
//! convolution after it; [`shrink_coefficients`] attaches the paper's `Shrink` (or its
//! proximal form) to those weights as a post-step of every optimiser step.

use autograd::Var;
use engine::{Conv2dParams, Element};
use sparse::dct::{DctConv, Shrink};

use super::conv::check_input;
use super::{BufferId, Conv2d, Ctx, Layer, ParamBuilder, ParamId, Result};

/// Fixed DCT convolution `C → F`, `k × k`. Shapes: `x [N, C, H, W] → [N, F, H', W']`.
#[derive(Clone, Debug)]
pub struct DctConv2d {
    pub phi: BufferId,
    pub bias: ParamId,
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub conv: Conv2dParams,
}

impl DctConv2d {
    /// The DCT convolution with the filters of [`sparse::dct::dct_filters`] and the bias
    /// drawn as the authors' `SpatialConvolutionDCT` (uniform in `±1/√(C·k·k)`).
    ///
    /// **Panics** if `kernel < 2` or `conv` has a dilation or groups.
    #[track_caller]
    pub fn new<T: Element>(
        pb: &mut ParamBuilder<'_, T>,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        conv: Conv2dParams,
    ) -> Self {
        let d = DctConv::<T>::new(in_channels, out_channels, kernel, conv);
        let phi = pb.buffer("phi", d.filters().clone());
        let b = d.bias_init(pb.rng());
        let bias = pb.param("bias", b);
        DctConv2d { phi, bias, in_channels, out_channels, kernel, conv }
    }
}

impl<T: Element> Layer<T> for DctConv2d {
    fn forward<'t>(&self, cx: &Ctx<'t, T>, x: &Var<'t, T>) -> Result<Var<'t, T>> {
        let name = format!("DctConv2d({} → {}, {}×{})", self.in_channels, self.out_channels, self.kernel, self.kernel);
        check_input(&name, &x.shape(), self.in_channels, [self.kernel; 2], self.conv.padding)?;
        // The filters enter as a constant: the conv2d rule computes no gradient for them.
        let phi = cx.tape().constant(cx.buffer(self.phi));
        Ok(x.conv2d(&phi, Some(&cx.param(self.bias)), self.conv))
    }
}

/// Attaches `shrink` (the paper's `Shrink::new(ζ)` or `Shrink::proximal(ζ)`) as a post-step
/// to the weights of `coefficients`, the 1×1 convolution after a DCT convolution (docs/math.md §3:
/// the coefficients `W` of `D = Φ·W` are the ones made sparse).
///
/// **Panics** if `coefficients` is not a 1×1 convolution.
#[track_caller]
pub fn shrink_coefficients<T: Element>(pb: &mut ParamBuilder<'_, T>, coefficients: &Conv2d, shrink: Shrink) {
    assert_eq!(
        coefficients.kernel,
        [1, 1],
        "shrink_coefficients: the coefficients are a 1×1 convolution, got {:?}",
        coefficients.kernel
    );
    pb.post_step(coefficients.w, shrink);
}
