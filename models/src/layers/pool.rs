//! Max and average pooling (with PyTorch's `ceil_mode`), and global average pooling.

use autograd::Var;
use engine::{Element, Pool2dParams, Tensor};

use super::{Ctx, Error, Layer, Result};

/// Output length of a pooling window along one axis, as PyTorch computes it (with
/// `ceil_mode`, a last window that starts inside the input is kept).
fn pooled_len(n: usize, k: usize, s: usize, ceil: bool) -> usize {
    if n < k {
        return 0;
    }
    let span = n - k;
    let mut out = if ceil { span.div_ceil(s) } else { span / s } + 1;
    if ceil && (out - 1) * s >= n {
        out -= 1;
    }
    out
}

/// The extra right/bottom padding that `ceil_mode` needs: `[h, w]`.
fn ceil_extra(s: &[usize], k: usize, stride: usize) -> [usize; 2] {
    let need = |n: usize| {
        let out = pooled_len(n, k, stride, true);
        ((out - 1) * stride + k).saturating_sub(n)
    };
    [need(s[2]), need(s[3])]
}

fn check(layer: &str, s: &[usize], k: usize) -> Result<()> {
    if s.len() != 4 || s[2] < k || s[3] < k {
        return Err(Error::Shape(format!("{layer}: expected an input [N, C, H, W] with H, W ≥ {k}, got {s:?}")));
    }
    Ok(())
}

/// Max pooling, `k × k` window, stride `stride`, no padding; `ceil_mode` as PyTorch's.
#[derive(Clone, Copy, Debug)]
pub struct MaxPool2d {
    pub k: usize,
    pub stride: usize,
    pub ceil_mode: bool,
}

impl MaxPool2d {
    pub fn new(k: usize, stride: usize) -> Self {
        MaxPool2d { k, stride, ceil_mode: false }
    }
    pub fn ceil_mode(self, on: bool) -> Self {
        MaxPool2d { ceil_mode: on, ..self }
    }
}

impl<T: Element> Layer<T> for MaxPool2d {
    fn forward<'t>(&self, _cx: &Ctx<'t, T>, x: &Var<'t, T>) -> Result<Var<'t, T>> {
        let s = x.shape();
        check("MaxPool2d", &s, self.k)?;
        let p =
            Pool2dParams { kernel: [self.k; 2], stride: [self.stride; 2], padding: [0, 0], count_include_pad: true };
        let extra = if self.ceil_mode { ceil_extra(&s, self.k, self.stride) } else { [0, 0] };
        if extra == [0, 0] {
            return Ok(x.max_pool2d(p));
        }
        // Windows hanging over the edge see −∞ there, so they take the max of what is inside.
        let padded = x.pad(&[(0, 0), (0, 0), (0, extra[0]), (0, extra[1])], f64::NEG_INFINITY);
        Ok(padded.max_pool2d(p))
    }
}

/// Average pooling, `k × k` window, stride `stride`, no padding; with `ceil_mode` a window
/// hanging over the edge averages only what is inside (PyTorch's divisor).
#[derive(Clone, Copy, Debug)]
pub struct AvgPool2d {
    pub k: usize,
    pub stride: usize,
    pub ceil_mode: bool,
}

impl AvgPool2d {
    pub fn new(k: usize, stride: usize) -> Self {
        AvgPool2d { k, stride, ceil_mode: false }
    }
    pub fn ceil_mode(self, on: bool) -> Self {
        AvgPool2d { ceil_mode: on, ..self }
    }
}

impl<T: Element> Layer<T> for AvgPool2d {
    fn forward<'t>(&self, cx: &Ctx<'t, T>, x: &Var<'t, T>) -> Result<Var<'t, T>> {
        let s = x.shape();
        check("AvgPool2d", &s, self.k)?;
        let p =
            Pool2dParams { kernel: [self.k; 2], stride: [self.stride; 2], padding: [0, 0], count_include_pad: true };
        let extra = if self.ceil_mode { ceil_extra(&s, self.k, self.stride) } else { [0, 0] };
        if extra == [0, 0] {
            return Ok(x.avg_pool2d(p));
        }
        let pads = [(0, 0), (0, 0), (0, extra[0]), (0, extra[1])];
        let sum = x.pad(&pads, 0.0).avg_pool2d(p);
        // The fraction of each window that lies inside the input, from a map of ones.
        let inside = Tensor::<T>::ones(&[1, 1, s[2], s[3]]);
        let frac = cx.tape().constant(inside).pad(&pads, 0.0).avg_pool2d(p);
        Ok(sum.div(&frac))
    }
}

/// Global average pooling `[N, C, H, W] → [N, C]` (`AdaptiveAvgPool2d(1)` then `Flatten`).
#[derive(Clone, Copy, Debug, Default)]
pub struct GlobalAvgPool;

impl<T: Element> Layer<T> for GlobalAvgPool {
    fn forward<'t>(&self, _cx: &Ctx<'t, T>, x: &Var<'t, T>) -> Result<Var<'t, T>> {
        let s = x.shape();
        if s.len() != 4 {
            return Err(Error::Shape(format!("GlobalAvgPool: expected an input [N, C, H, W], got {s:?}")));
        }
        Ok(x.mean(&[2, 3], false))
    }
}

#[cfg(test)]
mod tests {
    use super::pooled_len;

    #[test]
    fn pooled_len_matches_pytorch() {
        // torch: MaxPool2d(3, 2, ceil_mode=True) on 32 → 16, on 16 → 8; floor mode 32 → 15.
        assert_eq!(pooled_len(32, 3, 2, true), 16);
        assert_eq!(pooled_len(16, 3, 2, true), 8);
        assert_eq!(pooled_len(32, 3, 2, false), 15);
        // The last window must start inside the input: 5 with k 2, s 2 ceil → 3 (starts 0, 2, 4).
        assert_eq!(pooled_len(5, 2, 2, true), 3);
        assert_eq!(pooled_len(4, 2, 2, true), 2);
    }
}
