//! Conv2d and ConvTranspose2d, with PyTorch's parameter names and default initialisation.

use autograd::Var;
use engine::{Conv2dParams, ConvTranspose2dParams, Element};

use super::{init, Ctx, Error, Layer, ParamBuilder, ParamId, Result};

/// 2-D convolution. Parameters `{prefix}.weight [out, in/groups, kh, kw]` and
/// `{prefix}.bias [out]` (optional), initialised as `nn.Conv2d`.
#[derive(Clone, Debug)]
pub struct Conv2d {
    pub w: ParamId,
    pub b: Option<ParamId>,
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: [usize; 2],
    pub conv: Conv2dParams,
}

impl Conv2d {
    /// A `k × k` convolution `in → out` with the geometry `conv` (stride, padding, dilation,
    /// groups).
    pub fn new<T: Element>(
        pb: &mut ParamBuilder<'_, T>,
        in_channels: usize,
        out_channels: usize,
        k: usize,
        conv: Conv2dParams,
        bias: bool,
    ) -> Self {
        let g = conv.groups.max(1);
        let fan_in = in_channels / g * k * k;
        let w = init::uniform_fan_in(&[out_channels, in_channels / g, k, k], fan_in, pb.rng());
        let w = pb.param("weight", w);
        let b = bias.then(|| {
            let b = init::uniform_fan_in(&[out_channels], fan_in, pb.rng());
            pb.param("bias", b)
        });
        Conv2d { w, b, in_channels, out_channels, kernel: [k, k], conv }
    }
}

impl Conv2d {
    /// Re-initialises the weight with Kaiming (He) normal, `N(0, 2/fan_in)`, and the bias with
    /// zeros (`nn.init.kaiming_normal_(w, nonlinearity="relu")`, `nn.init.zeros_(b)`): for deep
    /// ReLU stacks without normalisation, where the default's `1/√fan_in` bound shrinks the
    /// signal by about √6 per layer.
    pub fn init_kaiming<T: Element>(&self, pb: &mut ParamBuilder<'_, T>) {
        let g = self.conv.groups.max(1);
        let shape = [self.out_channels, self.in_channels / g, self.kernel[0], self.kernel[1]];
        let fan_in = shape[1] * shape[2] * shape[3];
        let w = init::kaiming_normal(&shape, fan_in, pb.rng());
        pb.reinit(self.w, w);
        if let Some(b) = self.b {
            pb.reinit(b, engine::Tensor::zeros(&[self.out_channels]));
        }
    }
}

/// Checks an `[N, C, H, W]` input against a layer's channel count and window.
pub(crate) fn check_input(
    layer: &str,
    s: &[usize],
    channels: usize,
    window: [usize; 2],
    pad: [usize; 2],
) -> Result<()> {
    if s.len() != 4 || s[1] != channels {
        return Err(Error::Shape(format!("{layer}: expected an input [N, {channels}, H, W], got {s:?}")));
    }
    if s[2] + 2 * pad[0] < window[0] || s[3] + 2 * pad[1] < window[1] {
        return Err(Error::Shape(format!(
            "{layer}: the {}×{} window does not fit the input {s:?} with padding {pad:?}",
            window[0], window[1]
        )));
    }
    Ok(())
}

impl<T: Element> Layer<T> for Conv2d {
    fn forward<'t>(&self, cx: &Ctx<'t, T>, x: &Var<'t, T>) -> Result<Var<'t, T>> {
        let d = self.conv.dilation;
        let window = [d[0] * (self.kernel[0] - 1) + 1, d[1] * (self.kernel[1] - 1) + 1];
        let name =
            format!("Conv2d({} → {}, {}×{})", self.in_channels, self.out_channels, self.kernel[0], self.kernel[1]);
        check_input(&name, &x.shape(), self.in_channels, window, self.conv.padding)?;
        let b = self.b.map(|b| cx.param(b));
        Ok(x.conv2d(&cx.param(self.w), b.as_ref(), self.conv))
    }
}

/// 2-D transposed convolution. Parameters `{prefix}.weight [in, out/groups, kh, kw]` and
/// `{prefix}.bias [out]`, initialised as `nn.ConvTranspose2d` (fan-in = `out/groups·kh·kw`,
/// PyTorch's convention for this layer).
#[derive(Clone, Debug)]
pub struct ConvTranspose2d {
    pub w: ParamId,
    pub b: Option<ParamId>,
    pub in_channels: usize,
    pub out_channels: usize,
    pub conv: ConvTranspose2dParams,
}

impl ConvTranspose2d {
    pub fn new<T: Element>(
        pb: &mut ParamBuilder<'_, T>,
        in_channels: usize,
        out_channels: usize,
        k: usize,
        conv: ConvTranspose2dParams,
        bias: bool,
    ) -> Self {
        let g = conv.groups.max(1);
        let fan_in = out_channels / g * k * k;
        let w = init::uniform_fan_in(&[in_channels, out_channels / g, k, k], fan_in, pb.rng());
        let w = pb.param("weight", w);
        let b = bias.then(|| {
            let b = init::uniform_fan_in(&[out_channels], fan_in, pb.rng());
            pb.param("bias", b)
        });
        ConvTranspose2d { w, b, in_channels, out_channels, conv }
    }
}

impl<T: Element> Layer<T> for ConvTranspose2d {
    fn forward<'t>(&self, cx: &Ctx<'t, T>, x: &Var<'t, T>) -> Result<Var<'t, T>> {
        let s = x.shape();
        if s.len() != 4 || s[1] != self.in_channels {
            return Err(Error::Shape(format!(
                "ConvTranspose2d({} → {}): expected an input [N, {}, H, W], got {s:?}",
                self.in_channels, self.out_channels, self.in_channels
            )));
        }
        let b = self.b.map(|b| cx.param(b));
        Ok(x.conv_transpose2d(&cx.param(self.w), b.as_ref(), self.conv))
    }
}
