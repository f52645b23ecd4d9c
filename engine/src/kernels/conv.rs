//! 2-D convolution (cross-correlation, as in PyTorch) with stride, padding, dilation and
//! groups; its two adjoints (input and weight gradients); `conv_transpose2d` defined as the
//! exact adjoint of `conv2d`; and `im2col` / `col2im`.
//!
//! Layouts follow PyTorch: input `[N, C, H, W]`; conv weight `[O, C/groups, kh, kw]`;
//! conv_transpose weight `[C_in, C_out/groups, kh, kw]`.
//! TODO(helper): implement the bodies below.

use crate::{Element, Tensor};

/// Hyper-parameters of `conv2d` (`[height, width]` pairs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams { stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1 }
    }
}

impl Conv2dParams {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn stride(self, s: usize) -> Self {
        Conv2dParams { stride: [s, s], ..self }
    }
    pub fn stride2(self, s: [usize; 2]) -> Self {
        Conv2dParams { stride: s, ..self }
    }
    pub fn padding(self, p: usize) -> Self {
        Conv2dParams { padding: [p, p], ..self }
    }
    pub fn padding2(self, p: [usize; 2]) -> Self {
        Conv2dParams { padding: p, ..self }
    }
    pub fn dilation(self, d: usize) -> Self {
        Conv2dParams { dilation: [d, d], ..self }
    }
    pub fn dilation2(self, d: [usize; 2]) -> Self {
        Conv2dParams { dilation: d, ..self }
    }
    pub fn groups(self, g: usize) -> Self {
        Conv2dParams { groups: g, ..self }
    }
}

/// Hyper-parameters of `conv_transpose2d` (`[height, width]` pairs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTranspose2dParams {
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub output_padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl Default for ConvTranspose2dParams {
    fn default() -> Self {
        ConvTranspose2dParams { stride: [1, 1], padding: [0, 0], output_padding: [0, 0], dilation: [1, 1], groups: 1 }
    }
}

impl ConvTranspose2dParams {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn stride(self, s: usize) -> Self {
        ConvTranspose2dParams { stride: [s, s], ..self }
    }
    pub fn stride2(self, s: [usize; 2]) -> Self {
        ConvTranspose2dParams { stride: s, ..self }
    }
    pub fn padding(self, p: usize) -> Self {
        ConvTranspose2dParams { padding: [p, p], ..self }
    }
    pub fn padding2(self, p: [usize; 2]) -> Self {
        ConvTranspose2dParams { padding: p, ..self }
    }
    pub fn output_padding(self, p: usize) -> Self {
        ConvTranspose2dParams { output_padding: [p, p], ..self }
    }
    pub fn output_padding2(self, p: [usize; 2]) -> Self {
        ConvTranspose2dParams { output_padding: p, ..self }
    }
    pub fn dilation(self, d: usize) -> Self {
        ConvTranspose2dParams { dilation: [d, d], ..self }
    }
    pub fn dilation2(self, d: [usize; 2]) -> Self {
        ConvTranspose2dParams { dilation: d, ..self }
    }
    pub fn groups(self, g: usize) -> Self {
        ConvTranspose2dParams { groups: g, ..self }
    }
    /// The `conv2d` whose adjoint this transposed convolution is.
    pub fn as_conv(&self) -> Conv2dParams {
        Conv2dParams { stride: self.stride, padding: self.padding, dilation: self.dilation, groups: self.groups }
    }
}

impl<T: Element> Tensor<T> {
    /// `conv2d(x, W) + b`: `[N, C, H, W] * [O, C/g, kh, kw] → [N, O, OH, OW]` with
    /// `OH = (H + 2·pad − dil·(kh − 1) − 1) / stride + 1`.
    #[track_caller]
    pub fn conv2d(&self, _weight: &Tensor<T>, _bias: Option<&Tensor<T>>, _p: Conv2dParams) -> Tensor<T> {
        todo!()
    }
}
