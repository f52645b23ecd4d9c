//! Max and average pooling over `[N, C, H, W]`, and global average pooling.
//! TODO(helper): implement.

/// Window, stride and zero padding (`[height, width]`). `count_include_pad` applies to
/// average pooling only (PyTorch's default: true).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dParams {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub count_include_pad: bool,
}

impl Pool2dParams {
    /// A `k × k` window with stride `k` and no padding.
    pub fn new(k: usize) -> Self {
        Pool2dParams { kernel: [k, k], stride: [k, k], padding: [0, 0], count_include_pad: true }
    }
}
