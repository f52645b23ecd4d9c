//! The geometry of one convolution ([`Geom`]) and the checks of shapes and parameters.

use super::{Conv2dParams, ConvTranspose2dParams};
use crate::{Element, Tensor};

/// The sizes of one convolution `x [n, c, h, w] * W [o, c/groups, kh, kw] → y [n, o, oh, ow]`.
///
/// `oh`/`ow` are normally `p.output_hw([h, w], [kh, kw])`; the adjoint of a transposed
/// convolution whose `output_padding` is at least its stride uses fewer rows or columns (only
/// the leading `oh × ow` outputs of the convolution), which every kernel here supports.
#[derive(Clone, Copy, Debug)]
pub(super) struct Geom {
    pub(super) n: usize,
    pub(super) c: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) o: usize,
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
    pub(super) p: Conv2dParams,
}

impl Geom {
    /// Input channels per group.
    pub(super) fn cg(&self) -> usize {
        self.c / self.p.groups
    }
    /// Output channels per group.
    pub(super) fn og(&self) -> usize {
        self.o / self.p.groups
    }
    /// Rows of one group's block of the column matrix (`Cg·kh·kw`).
    pub(super) fn k(&self) -> usize {
        self.cg() * self.kh * self.kw
    }
    /// Output positions per image.
    pub(super) fn l(&self) -> usize {
        self.oh * self.ow
    }
    pub(super) fn x_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.h, self.w]
    }
    pub(super) fn w_shape(&self) -> [usize; 4] {
        [self.o, self.cg(), self.kh, self.kw]
    }
    pub(super) fn y_shape(&self) -> [usize; 4] {
        [self.n, self.o, self.oh, self.ow]
    }
    /// When every image's column matrix is the image itself seen as an `[rows, L]` matrix,
    /// `Some(rows)`: a 1×1 kernel with stride 1 and no padding (`rows = C`, `L = H·W`), or a
    /// kernel covering the whole unpadded input (`rows = C·H·W`, `L = 1`, a dense layer).
    pub(super) fn identity_columns(&self) -> Option<usize> {
        let unpadded = self.p.padding == [0, 0];
        let pointwise =
            [self.kh, self.kw, self.p.stride[0], self.p.stride[1]] == [1; 4] && [self.oh, self.ow] == [self.h, self.w];
        let dense = [self.kh, self.kw] == [self.h, self.w]
            && [self.oh, self.ow] == [1, 1]
            && (self.kh == 1 || self.p.dilation[0] == 1)
            && (self.kw == 1 || self.p.dilation[1] == 1);
        match (unpadded, pointwise, dense) {
            (true, true, _) => Some(self.c),
            (true, _, true) => Some(self.c * self.h * self.w),
            _ => None,
        }
    }

    /// Geometry of `conv2d(x, W)` from the shapes of `x` and `W`.
    /// **Panics** (message prefixed by `op`) on invalid parameters, a channel count that does
    /// not match the weight and groups, or a kernel larger than the padded input.
    #[track_caller]
    pub(super) fn conv(op: &str, x: [usize; 4], w: [usize; 4], p: Conv2dParams) -> Geom {
        check_positive(op, p.stride, p.dilation, p.groups);
        let ([n, c, h, wd], [o, cg, kh, kw], g) = (x, w, p.groups);
        if c % g != 0 {
            panic!("{op}: groups {g} does not divide the {c} channels of input {x:?}");
        }
        if c != cg * g {
            panic!("{op}: input {x:?} has {c} channels but weight {w:?} with groups {g} expects {}", cg * g);
        }
        if o % g != 0 {
            panic!("{op}: groups {g} does not divide the {o} output channels of weight {w:?}");
        }
        let Some([oh, ow]) = p.output_hw([h, wd], [kh, kw]) else {
            panic!(
                "{op}: kernel [{kh}, {kw}] with dilation {:?} does not fit input {x:?} with padding {:?}",
                p.dilation, p.padding
            );
        };
        Geom { n, c, h, w: wd, o, kh, kw, oh, ow, p }
    }

    /// Geometry of the convolution whose adjoint is `conv_transpose2d(z, W)`: its input is the
    /// transposed convolution's output `[N, C_out, H', W']`, its output is `z`.
    /// **Panics** (message prefixed by `op`) like [`Geom::conv`], and when `output_padding` is
    /// not smaller than the stride or the dilation, or the output would be empty.
    #[track_caller]
    pub(super) fn transposed(op: &str, z: [usize; 4], w: [usize; 4], p: ConvTranspose2dParams) -> Geom {
        check_positive(op, p.stride, p.dilation, p.groups);
        let ([n, cin, h, wd], [wcin, cog, kh, kw], g) = (z, w, p.groups);
        if cin != wcin {
            panic!("{op}: input {z:?} has {cin} channels but weight {w:?} expects {wcin}");
        }
        if cin % g != 0 {
            panic!("{op}: groups {g} does not divide the {cin} input channels of weight {w:?}");
        }
        if (0..2).any(|a| p.output_padding[a] >= p.stride[a].max(p.dilation[a])) {
            panic!(
                "{op}: output_padding {:?} must be smaller than stride {:?} or dilation {:?}",
                p.output_padding, p.stride, p.dilation
            );
        }
        let Some([oh, ow]) = p.output_hw([h, wd], [kh, kw]) else {
            panic!("{op}: input {z:?} with weight {w:?} and {p:?} gives an empty output");
        };
        Geom { n, c: cog * g, h: oh, w: ow, o: cin, kh, kw, oh: h, ow: wd, p: p.as_conv() }
    }
}

#[track_caller]
pub(super) fn check_positive(op: &str, stride: [usize; 2], dilation: [usize; 2], groups: usize) {
    if stride.contains(&0) || dilation.contains(&0) || groups == 0 {
        panic!("{op}: stride {stride:?}, dilation {dilation:?} and groups {groups} must all be at least 1");
    }
}

/// The shape of a rank-4 tensor. **Panics** naming `op` and the tensor otherwise (also used by
/// pooling).
#[track_caller]
pub(crate) fn dims4<T: Element>(op: &str, name: &str, t: &Tensor<T>) -> [usize; 4] {
    match *t.shape() {
        [a, b, c, d] => [a, b, c, d],
        _ => panic!("{op}: {name} must have rank 4, got shape {:?}", t.shape()),
    }
}

/// **Panics** unless `t` has exactly `shape`.
#[track_caller]
pub(super) fn expect_shape<T: Element>(op: &str, name: &str, t: &Tensor<T>, shape: &[usize], why: &str) {
    if t.shape() != shape {
        panic!("{op}: {name} {:?} should be {shape:?} ({why})", t.shape());
    }
}

/// The bias as a slice of `o` values. **Panics** if its shape is not `[o]`.
#[track_caller]
pub(super) fn bias_values<T: Element>(op: &str, bias: Option<&Tensor<T>>, o: usize) -> Option<Vec<T>> {
    let b = bias?;
    expect_shape(op, "bias", b, &[o], "one value per output channel");
    Some(b.to_vec())
}
