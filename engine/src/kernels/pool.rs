//! Max and average pooling over `[N, C, H, W]`, and global average pooling, with their
//! backward kernels. PyTorch conventions (floor mode):
//!
//! ```text
//! OH = ⌊(H + 2·pad − kh) / stride⌋ + 1,   window (a, b) covers rows a·stride − pad .. + kh
//! ```
//!
//! with `pad ≤ k/2` on each axis, so every window holds at least one real element. Max pooling
//! treats the padding as −∞ (it is never selected); average pooling as zeros, dividing by the
//! window size (`count_include_pad`, clipped to the padded input exactly as PyTorch does) or by
//! the number of real elements. Planes `(n, c)` are independent and run in parallel on rayon
//! when the input is large; each output is computed by one thread in a fixed order, so the
//! results do not depend on the number of threads.

use super::conv::{dims4, valid_range};
use crate::{Element, Tensor, PAR_CHUNK};

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
        Pool2dParams::new2([k, k])
    }
    /// A `kh × kw` window with stride `[kh, kw]` and no padding.
    pub fn new2(kernel: [usize; 2]) -> Self {
        Pool2dParams { kernel, stride: kernel, padding: [0, 0], count_include_pad: true }
    }
    pub fn stride(self, s: usize) -> Self {
        Pool2dParams { stride: [s, s], ..self }
    }
    pub fn stride2(self, s: [usize; 2]) -> Self {
        Pool2dParams { stride: s, ..self }
    }
    pub fn padding(self, p: usize) -> Self {
        Pool2dParams { padding: [p, p], ..self }
    }
    pub fn padding2(self, p: [usize; 2]) -> Self {
        Pool2dParams { padding: p, ..self }
    }
    /// Average pooling: divide by the (padded) window size when true, by the number of real
    /// elements in the window when false.
    pub fn count_include_pad(self, yes: bool) -> Self {
        Pool2dParams { count_include_pad: yes, ..self }
    }

    /// `[OH, OW]` with `OH = ⌊(H + 2·pad − kh) / stride⌋ + 1`. `None` when a kernel size or
    /// stride is 0, the padding exceeds half the kernel, or the kernel is larger than the padded
    /// input (PyTorch raises in each case).
    pub fn output_hw(&self, in_hw: [usize; 2]) -> Option<[usize; 2]> {
        let axis = |a: usize| -> Option<usize> {
            let (k, s, p) = (self.kernel[a], self.stride[a], self.padding[a]);
            if k == 0 || s == 0 || p > k / 2 {
                return None;
            }
            (in_hw[a] + 2 * p).checked_sub(k).map(|room| room / s + 1)
        };
        Some([axis(0)?, axis(1)?])
    }
}

/// One window along one axis: real elements `lo..hi`, and the window size PyTorch divides by
/// under `count_include_pad` (the window clipped to the padded input).
#[derive(Clone, Copy, Debug)]
struct Span {
    lo: usize,
    hi: usize,
    padded: usize,
}

/// Sizes of one pooling and its windows along each axis.
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    stride_w: usize,
    rows: Vec<Span>,
    cols: Vec<Span>,
    /// Per kernel column j, the output columns `lo..hi` whose window column j is real and the
    /// input column of output column `lo` (the kernels' inner loops run along these).
    taps: Vec<(usize, usize, usize)>,
}

fn spans(k: usize, s: usize, p: usize, len: usize, count: usize) -> Vec<Span> {
    (0..count)
        .map(|a| {
            let start = (a * s) as isize - p as isize;
            let end = (start + k as isize).min((len + p) as isize);
            let padded = (end - start) as usize;
            Span { lo: start.max(0) as usize, hi: (end.max(0) as usize).min(len), padded }
        })
        .collect()
}

impl Geom {
    /// **Panics** (message prefixed by `op`) on a zero kernel or stride, padding above half the
    /// kernel, or a kernel larger than the padded input.
    #[track_caller]
    fn new(op: &str, x: [usize; 4], p: &Pool2dParams) -> Geom {
        if p.kernel.contains(&0) || p.stride.contains(&0) {
            panic!("{op}: kernel {:?} and stride {:?} must be at least 1", p.kernel, p.stride);
        }
        if (0..2).any(|a| p.padding[a] > p.kernel[a] / 2) {
            panic!("{op}: padding {:?} must be at most half the kernel {:?}", p.padding, p.kernel);
        }
        let [n, c, h, w] = x;
        let Some([oh, ow]) = p.output_hw([h, w]) else {
            panic!("{op}: kernel {:?} is larger than input {x:?} padded by {:?}", p.kernel, p.padding);
        };
        let rows = spans(p.kernel[0], p.stride[0], p.padding[0], h, oh);
        let cols = spans(p.kernel[1], p.stride[1], p.padding[1], w, ow);
        let taps = (0..p.kernel[1])
            .map(|j| {
                let off = j as isize - p.padding[1] as isize;
                let (lo, hi) = valid_range(off, p.stride[1], w, ow);
                (lo, hi, ((lo * p.stride[1]) as isize + off).max(0) as usize)
            })
            .collect();
        Geom { n, c, h, w, oh, ow, stride_w: p.stride[1], rows, cols, taps }
    }
    fn in_plane(&self) -> usize {
        self.h * self.w
    }
    fn out_plane(&self) -> usize {
        self.oh * self.ow
    }
    fn out_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.oh, self.ow]
    }
    /// Calls `f(out_index, row_span, col_span)` for every window of a plane, row-major.
    fn windows(&self, mut f: impl FnMut(usize, Span, Span)) {
        for (a, &r) in self.rows.iter().enumerate() {
            for (b, &c) in self.cols.iter().enumerate() {
                f(a * self.ow + b, r, c);
            }
        }
    }
    /// For output row `a`: calls `f(row, b, iw)` for every input row `row` of its windows (top to
    /// bottom) and every kernel column (left to right), with the output columns `b` whose
    /// window holds that column and the input column of the first of them; the next ones are
    /// `stride_w` apart. Each window sees its elements in row-major order.
    fn row_taps(&self, a: usize, mut f: impl FnMut(usize, std::ops::Range<usize>, usize)) {
        for ih in self.rows[a].lo..self.rows[a].hi {
            for &(lo, hi, iw) in &self.taps {
                f(ih, lo..hi, iw);
            }
        }
    }
    /// The divisors of average pooling, one per output of a plane.
    fn divisors<T: Element>(&self, count_include_pad: bool) -> Vec<T> {
        let mut d = Vec::with_capacity(self.out_plane());
        self.windows(|_, r, c| {
            let n = if count_include_pad { r.padded * c.padded } else { (r.hi - r.lo) * (c.hi - c.lo) };
            d.push(T::of(n as f64));
        });
        d
    }
}

/// Runs `f(plane, out_chunk)` over the `chunk`-sized pieces of `out` (one per `(n, c)` plane),
/// in parallel when the planes add up to enough work (`work` elements each).
fn for_planes<U: Send>(out: &mut [U], chunk: usize, work: usize, f: impl Fn(usize, &mut [U]) + Sync + Send) {
    if chunk == 0 || out.is_empty() {
        return;
    }
    let per_task = (PAR_CHUNK / work.max(1)).max(1);
    if out.len() / chunk <= per_task {
        out.chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
    } else {
        // Groups of `per_task` planes per task.
        crate::par::chunks_mut(out, chunk * per_task, &|g, planes| {
            planes.chunks_mut(chunk).enumerate().for_each(|(k, c)| f(g * per_task + k, c))
        });
    }
}

/// **Panics** unless `grad_out` is `[N, C, OH, OW]` for the input and pooling geometry.
#[track_caller]
fn check_grad_out<T: Element>(op: &str, grad_out: &Tensor<T>, expected: [usize; 4], input: [usize; 4]) {
    if grad_out.shape() != expected {
        panic!("{op}: grad_out {:?} should be {expected:?} (the pooled shape of input {input:?})", grad_out.shape());
    }
}

impl<T: Element> Tensor<T> {
    /// Max pooling: `out[n, c, a, b] = max` of the window `(a, b)` (padding is −∞, never
    /// selected), `[N, C, H, W] → [N, C, OH, OW]`, and for every output the flat index
    /// `h·W + w` of the selected element within its `(n, c)` plane (PyTorch's
    /// `return_indices`). Ties select the first element in row-major window order; NaN is
    /// selected over any number (the last NaN of the window, as PyTorch's CPU kernel); a
    /// window of −∞ selects its first real element.
    ///
    /// **Panics** if `self` is not rank 4, a kernel size or stride is 0, the padding exceeds
    /// half the kernel, or the kernel is larger than the padded input.
    #[track_caller]
    pub fn max_pool2d(&self, p: Pool2dParams) -> (Tensor<T>, Vec<usize>) {
        const OP: &str = "max_pool2d";
        let g = Geom::new(OP, dims4(OP, "input", self), &p);
        let x = self.contiguous();
        let xs = x.as_slice().expect("contiguous");
        let (ip, op) = (g.in_plane(), g.out_plane());
        let mut indices = vec![0usize; g.n * g.c * op];
        for_planes(&mut indices, op, ip, |plane, dst| {
            let src = &xs[plane * ip..(plane + 1) * ip];
            g.windows(|o, r, c| {
                let (mut max, mut at, mut nan) = (T::neg_infinity(), r.lo * g.w + c.lo, false);
                // Kept in registers, these compile to selects rather than branches (the
                // comparison is data-dependent); NaN is handled after the loop, where a branch
                // is predictable.
                let mut visit = |i: usize, v: T| {
                    let take = v > max;
                    max = if take { v } else { max };
                    at = if take { i } else { at };
                    nan |= v.is_nan();
                };
                for ih in r.lo..r.hi {
                    let start = ih * g.w + c.lo;
                    match src[start..ih * g.w + c.hi] {
                        // The common 2-wide window without a loop.
                        [v0, v1] => {
                            visit(start, v0);
                            visit(start + 1, v1);
                        }
                        ref row => (start..).zip(row).for_each(|(i, &v)| visit(i, v)),
                    }
                }
                if nan {
                    // `v > max || v.is_nan()` in window order selects the last NaN.
                    let window = (r.lo..r.hi).flat_map(|ih| (c.lo..c.hi).map(move |iw| ih * g.w + iw));
                    at = window.filter(|&i| src[i].is_nan()).last().expect("the window holds a NaN");
                }
                dst[o] = at;
            });
        });
        // Every output is the input element it selected.
        let mut values = vec![T::zero(); indices.len()];
        for_planes(&mut values, op, op, |plane, dst| {
            let (src, idx) = (&xs[plane * ip..(plane + 1) * ip], &indices[plane * op..(plane + 1) * op]);
            dst.iter_mut().zip(idx).for_each(|(v, &i)| *v = src[i]);
        });
        (Tensor::from_vec(values, &g.out_shape()), indices)
    }

    /// Backward of [`Tensor::max_pool2d`]: `dx[n, c].flat[indices[k]] += grad_out[n, c].flat[k]`
    /// (scatter-add; windows that share their maximum add up), shape `input_shape`.
    ///
    /// **Panics** if `grad_out` is not rank 4 with the batch and channels of `input_shape`,
    /// `indices` does not have one entry per element of `grad_out`, or an index is outside
    /// the `H × W` plane.
    #[track_caller]
    pub fn max_pool2d_backward(grad_out: &Tensor<T>, indices: &[usize], input_shape: [usize; 4]) -> Tensor<T> {
        const OP: &str = "max_pool2d_backward";
        let [n, c, oh, ow] = dims4(OP, "grad_out", grad_out);
        let [_, _, h, w] = input_shape;
        if [n, c] != input_shape[..2] {
            panic!(
                "{OP}: grad_out {:?} does not match the batch and channels of input {input_shape:?}",
                grad_out.shape()
            );
        }
        if indices.len() != grad_out.numel() {
            panic!(
                "{OP}: {} indices for grad_out {:?} ({} elements)",
                indices.len(),
                grad_out.shape(),
                grad_out.numel()
            );
        }
        if let Some((k, &i)) = indices.iter().enumerate().find(|&(_, &i)| i >= h * w) {
            panic!("{OP}: index {i} (output element {k}) is outside the {h}×{w} plane of input {input_shape:?}");
        }
        let gy = grad_out.contiguous();
        let gs = gy.as_slice().expect("contiguous");
        let (ip, op) = (h * w, oh * ow);
        let mut dx = crate::filled(n * c * ip, T::zero());
        for_planes(&mut dx, ip, ip + op, |plane, dst| {
            let range = plane * op..(plane + 1) * op;
            for (&i, &v) in indices[range.clone()].iter().zip(&gs[range]) {
                dst[i] += v;
            }
        });
        Tensor::from_vec(dx, &input_shape)
    }

    /// Average pooling: `out[n, c, a, b] = (Σ_window x) / D`, the padding counting as zeros,
    /// with `D` the window size clipped to the padded input (`count_include_pad`, PyTorch's
    /// default) or the number of real elements in the window. `[N, C, H, W] → [N, C, OH, OW]`.
    ///
    /// **Panics** like [`Tensor::max_pool2d`].
    #[track_caller]
    pub fn avg_pool2d(&self, p: Pool2dParams) -> Tensor<T> {
        const OP: &str = "avg_pool2d";
        let g = Geom::new(OP, dims4(OP, "input", self), &p);
        let x = self.contiguous();
        let xs = x.as_slice().expect("contiguous");
        let (ip, op) = (g.in_plane(), g.out_plane());
        let mut out = crate::filled(g.n * g.c * op, T::zero());
        let (sw, div) = (g.stride_w, g.divisors::<T>(p.count_include_pad));
        for_planes(&mut out, op, ip, |plane, dst| {
            let src = &xs[plane * ip..(plane + 1) * ip];
            for (a, sum) in dst.chunks_exact_mut(g.ow).enumerate() {
                g.row_taps(a, |ih, outs, iw| {
                    let row = &src[ih * g.w..(ih + 1) * g.w];
                    for (b, iw) in outs.zip((iw..).step_by(sw)) {
                        sum[b] += row[iw];
                    }
                });
                sum.iter_mut().zip(&div[a * g.ow..]).for_each(|(s, &d)| *s /= d);
            }
        });
        Tensor::from_vec(out, &g.out_shape())
    }

    /// Backward of [`Tensor::avg_pool2d`], its exact adjoint: every real element of window
    /// `(a, b)` receives `grad_out[n, c, a, b] / D`; overlapping windows add.
    ///
    /// **Panics** like [`Tensor::avg_pool2d`] for an input of `input_shape`, and if
    /// `grad_out` is not that pooling's output shape.
    #[track_caller]
    pub fn avg_pool2d_backward(grad_out: &Tensor<T>, input_shape: [usize; 4], p: Pool2dParams) -> Tensor<T> {
        const OP: &str = "avg_pool2d_backward";
        let g = Geom::new(OP, input_shape, &p);
        check_grad_out(OP, grad_out, g.out_shape(), input_shape);
        let gy = grad_out.contiguous();
        let gs = gy.as_slice().expect("contiguous");
        let (ip, op) = (g.in_plane(), g.out_plane());
        let mut dx = crate::filled(g.n * g.c * ip, T::zero());
        let (sw, div) = (g.stride_w, g.divisors::<T>(p.count_include_pad));
        for_planes(&mut dx, ip, ip, |plane, dst| {
            let src = &gs[plane * op..(plane + 1) * op];
            let mut share = vec![T::zero(); g.ow];
            for a in 0..g.oh {
                for (s, (&v, &d)) in share.iter_mut().zip(src[a * g.ow..].iter().zip(&div[a * g.ow..])) {
                    *s = v / d;
                }
                g.row_taps(a, |ih, outs, iw| {
                    let row = &mut dst[ih * g.w..(ih + 1) * g.w];
                    for (b, iw) in outs.zip((iw..).step_by(sw)) {
                        row[iw] += share[b];
                    }
                });
            }
        });
        Tensor::from_vec(dx, &input_shape)
    }

    /// Global average pooling, the mean of every `(n, c)` plane: `[N, C, H, W] → [N, C]`
    /// (NaN for an empty plane, as in PyTorch).
    ///
    /// **Panics** if `self` is not rank 4.
    #[track_caller]
    pub fn global_avg_pool2d(&self) -> Tensor<T> {
        const OP: &str = "global_avg_pool2d";
        let [n, c, h, w] = dims4(OP, "input", self);
        let x = self.contiguous();
        let xs = x.as_slice().expect("contiguous");
        let ip = h * w;
        let mut out = vec![T::zero(); n * c];
        let scale = T::of(ip as f64);
        for_planes(&mut out, 1, ip, |plane, dst| {
            dst[0] = xs[plane * ip..(plane + 1) * ip].iter().copied().sum::<T>() / scale;
        });
        Tensor::from_vec(out, &[n, c])
    }

    /// Backward of [`Tensor::global_avg_pool2d`]: `dx[n, c, h, w] = grad_out[n, c] / (H·W)`.
    ///
    /// **Panics** if `grad_out` is not rank 2.
    #[track_caller]
    pub fn global_avg_pool2d_backward(grad_out: &Tensor<T>, input_hw: [usize; 2]) -> Tensor<T> {
        const OP: &str = "global_avg_pool2d_backward";
        let [n, c] = *grad_out.shape() else {
            panic!("{OP}: grad_out must have rank 2 ([N, C]), got shape {:?}", grad_out.shape());
        };
        let gs = grad_out.to_vec();
        let ip = input_hw[0] * input_hw[1];
        let scale = T::of(ip as f64);
        let mut dx = vec![T::zero(); n * c * ip]; // only written: `vec!` is right here
        for_planes(&mut dx, ip, ip, |plane, dst| dst.fill(gs[plane] / scale));
        Tensor::from_vec(dx, &[n, c, input_hw[0], input_hw[1]])
    }
}

/// Reference implementations from the definition (loops over the full `kh × kw` window,
/// padding included, in `f64`), for tests and benches.
pub mod naive {
    use super::{dims4, Geom, Pool2dParams};
    use crate::{Element, Tensor};

    /// Calls `f(n, c, a, b, window)` for every output with the in-bounds `(h, w)` of its window
    /// in row-major order, and the count of padded cells inside `H + pad` (for the divisor).
    fn each_window(x: [usize; 4], p: &Pool2dParams, mut f: impl FnMut([usize; 4], &[(usize, usize)], usize)) -> Geom {
        let g = Geom::new("naive pool", x, p);
        let ([kh, kw], [sh, sw], [ph, pw]) = (p.kernel, p.stride, p.padding);
        for n in 0..g.n {
            for c in 0..g.c {
                for a in 0..g.oh {
                    for b in 0..g.ow {
                        let (mut real, mut padded) = (vec![], 0);
                        for i in 0..kh {
                            for j in 0..kw {
                                let (ih, iw) =
                                    ((a * sh + i) as isize - ph as isize, (b * sw + j) as isize - pw as isize);
                                if ih < (g.h + ph) as isize && iw < (g.w + pw) as isize {
                                    padded += 1;
                                }
                                if ih >= 0 && iw >= 0 && (ih as usize) < g.h && (iw as usize) < g.w {
                                    real.push((ih as usize, iw as usize));
                                }
                            }
                        }
                        f([n, c, a, b], &real, padded);
                    }
                }
            }
        }
        g
    }

    /// Max pooling from the definition, with the same tie and NaN rules as the fast kernel.
    pub fn max_pool2d<T: Element>(x: &Tensor<T>, p: Pool2dParams) -> (Tensor<T>, Vec<usize>) {
        let shape = dims4("naive::max_pool2d", "input", x);
        let (mut values, mut indices) = (vec![], vec![]);
        let g = each_window(shape, &p, |[n, c, _, _], window, _| {
            let mut best = (f64::NEG_INFINITY, window[0].0 * shape[3] + window[0].1);
            for &(h, w) in window {
                let v = x.get(&[n, c, h, w]).as_f64();
                if v > best.0 || v.is_nan() {
                    best = (v, h * shape[3] + w);
                }
            }
            values.push(T::of(best.0));
            indices.push(best.1);
        });
        (Tensor::from_vec(values, &g.out_shape()), indices)
    }

    /// Average pooling from the definition.
    pub fn avg_pool2d<T: Element>(x: &Tensor<T>, p: Pool2dParams) -> Tensor<T> {
        let shape = dims4("naive::avg_pool2d", "input", x);
        let mut values = vec![];
        let g = each_window(shape, &p, |[n, c, _, _], window, padded| {
            let sum: f64 = window.iter().map(|&(h, w)| x.get(&[n, c, h, w]).as_f64()).sum();
            let divisor = if p.count_include_pad { padded } else { window.len() };
            values.push(T::of(sum / divisor as f64));
        });
        Tensor::from_vec(values, &g.out_shape())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;

    fn dot(a: &Tensor<f64>, b: &Tensor<f64>) -> f64 {
        assert_eq!(a.shape(), b.shape());
        a.to_vec().iter().zip(b.to_vec()).map(|(x, y)| x * y).sum()
    }

    fn params() -> Vec<Pool2dParams> {
        vec![
            Pool2dParams::new(2),
            Pool2dParams::new(3).stride(2).padding(1),
            Pool2dParams::new2([3, 2]).stride2([1, 2]).padding2([1, 0]),
            Pool2dParams::new(3).stride(1).padding(1).count_include_pad(false),
            Pool2dParams::new(3).stride(2).padding(1).count_include_pad(false),
            Pool2dParams::new2([4, 5]).stride2([3, 1]).padding2([2, 2]),
            Pool2dParams::new(1),
            Pool2dParams::new2([9, 7]).stride(5),
        ]
    }

    /// A permuted, sliced view holding the same values as `t` (not contiguous).
    fn strided_copy(t: &Tensor<f64>) -> Tensor<f64> {
        let s = t.shape().to_vec();
        let stored = Tensor::from_fn(&[s[3], s[1], s[0], s[2] + 1], |ix| {
            if ix[3] < s[2] {
                t.get(&[ix[2], ix[1], ix[3], ix[0]])
            } else {
                f64::NAN
            }
        });
        let v = stored.permute(&[2, 1, 3, 0]).narrow(2, 0, s[2]);
        assert!(!v.is_contiguous());
        v
    }

    #[test]
    fn pooling_matches_naive_on_contiguous_and_strided_inputs() {
        let mut rng = Rng::new(21);
        for p in params() {
            for shape in [[1, 1, 9, 7], [3, 2, 10, 11], [2, 3, 9, 8]] {
                let x = Tensor::<f64>::randn(&shape, &mut rng);
                let what = format!("{p:?} {shape:?}");
                let (want_max, want_idx) = naive::max_pool2d(&x, p);
                let want_avg = naive::avg_pool2d(&x, p);
                for input in [x.clone(), strided_copy(&x)] {
                    let (m, idx) = input.max_pool2d(p);
                    assert_eq!(m.to_vec(), want_max.to_vec(), "{what}");
                    assert_eq!(idx, want_idx, "{what}");
                    assert!(input.avg_pool2d(p).allclose(&want_avg, 1e-14, 1e-14), "{what}");
                }
            }
        }
    }

    #[test]
    fn backward_kernels_are_adjoints() {
        let mut rng = Rng::new(22);
        for p in params() {
            let shape = [3, 2, 10, 11];
            let x = Tensor::<f64>::randn(&shape, &mut rng);
            let (m, idx) = x.max_pool2d(p);
            let r = Tensor::randn(m.shape(), &mut rng);
            // max_pool2d(x)[k] = x[idx[k]], linear in x for fixed indices.
            let dx = Tensor::max_pool2d_backward(&strided_copy(&r), &idx, shape);
            assert!((dot(&m, &r) - dot(&x, &dx)).abs() <= 1e-12 * dot(&m, &r).abs().max(1.0), "{p:?}");
            let a = x.avg_pool2d(p);
            let dx = Tensor::avg_pool2d_backward(&strided_copy(&r), shape, p);
            assert!((dot(&a, &r) - dot(&x, &dx)).abs() <= 1e-12 * dot(&a, &r).abs().max(1.0), "{p:?}");
            let gap = x.global_avg_pool2d();
            let r = Tensor::randn(gap.shape(), &mut rng);
            let dx = Tensor::global_avg_pool2d_backward(&r, [10, 11]);
            assert!((dot(&gap, &r) - dot(&x, &dx)).abs() <= 1e-12, "{p:?}");
        }
    }

    #[test]
    fn hand_computed_pools_with_padding() {
        // x = 1..=9 as 3×3, k = 3, stride 2, pad 1 → 2×2 outputs, windows (rows × cols):
        //   (0, 0): rows −1..2, cols −1..2 → {1, 2, 4, 5}, max 5 at 4, sum 12
        //   (0, 1): rows −1..2, cols 1..4  → {2, 3, 5, 6}, max 6 at 5, sum 16
        //   (1, 0): rows 1..4,  cols −1..2 → {4, 5, 7, 8}, max 8 at 7, sum 24
        //   (1, 1): rows 1..4,  cols 1..4  → {5, 6, 8, 9}, max 9 at 8, sum 28
        let x = Tensor::<f64>::arange_step(1.0, 10.0, 1.0).reshape(&[1, 1, 3, 3]);
        let p = Pool2dParams::new(3).stride(2).padding(1);
        let (m, idx) = x.max_pool2d(p);
        assert_eq!(m.to_vec(), vec![5.0, 6.0, 8.0, 9.0]);
        assert_eq!(idx, vec![4, 5, 7, 8]);
        // count_include_pad: every window counts 9 cells; otherwise its 4 real ones.
        assert_eq!(x.avg_pool2d(p).to_vec(), vec![12.0 / 9.0, 16.0 / 9.0, 24.0 / 9.0, 28.0 / 9.0]);
        assert_eq!(x.avg_pool2d(p.count_include_pad(false)).to_vec(), vec![3.0, 4.0, 6.0, 7.0]);
        // Gradient of sum(avg): cell 5 (index 4) is in all four windows → 4/9.
        let g = Tensor::<f64>::avg_pool2d_backward(&Tensor::ones(&[1, 1, 2, 2]), [1, 1, 3, 3], p);
        assert_eq!(g.get(&[0, 0, 1, 1]), 4.0 / 9.0);
        assert_eq!(g.get(&[0, 0, 0, 0]), 1.0 / 9.0);
    }

    #[test]
    fn ties_nan_and_infinities() {
        // Ties: the first in row-major window order.
        let x = Tensor::<f64>::from_vec(vec![1.0, 3.0, 3.0, 3.0], &[1, 1, 2, 2]);
        assert_eq!(x.max_pool2d(Pool2dParams::new(2)).1, vec![1]);
        // NaN is selected (the last NaN, as PyTorch's CPU kernel).
        let x = Tensor::<f64>::from_vec(vec![1.0, f64::NAN, 5.0, f64::NAN], &[1, 1, 2, 2]);
        let (m, idx) = x.max_pool2d(Pool2dParams::new(2));
        assert!(m.item().is_nan());
        assert_eq!(idx, vec![3]);
        // All −∞: the first real element of the window, never a padded cell.
        let x = Tensor::<f64>::full(&[1, 1, 2, 2], f64::NEG_INFINITY);
        let (m, idx) = x.max_pool2d(Pool2dParams::new(2).stride(1).padding(1));
        assert_eq!(m.to_vec(), vec![f64::NEG_INFINITY; 9]);
        assert_eq!(idx, vec![0, 0, 1, 0, 0, 1, 2, 2, 3]);
        // Shared maxima add in the backward pass.
        let x = Tensor::<f64>::from_vec(vec![0.0, 0.0, 0.0, 9.0], &[1, 1, 2, 2]);
        let p = Pool2dParams::new(2).stride(1).padding(1);
        let (_, idx) = x.max_pool2d(p);
        let dx = Tensor::<f64>::max_pool2d_backward(&Tensor::ones(&[1, 1, 3, 3]), &idx, [1, 1, 2, 2]);
        // Windows (0,0), (0,1), (1,0) pick the 0 at index 0 (first of the ties); (0,2) index 1;
        // (2,0) index 2; the four windows around the 9 pick index 3.
        assert_eq!(dx.to_vec(), vec![3.0, 1.0, 1.0, 4.0]);
    }

    #[test]
    fn f32_and_large_parallel_inputs() {
        let mut rng = Rng::new(23);
        let x = Tensor::<f64>::randn(&[8, 20, 24, 24], &mut rng);
        let p = Pool2dParams::new(2);
        let (m64, i64) = x.max_pool2d(p);
        let (m32, i32) = x.cast::<f32>().max_pool2d(p);
        assert_eq!(i32, i64);
        assert_eq!(m32.to_vec(), m64.cast::<f32>().to_vec());
        let (want, want_idx) = naive::max_pool2d(&x, p);
        assert_eq!(m64.to_vec(), want.to_vec());
        assert_eq!(i64, want_idx);
        assert!(x.avg_pool2d(p).allclose(&naive::avg_pool2d(&x, p), 1e-14, 1e-14));
        let gap = x.global_avg_pool2d();
        assert!(gap.allclose(&x.mean(&[2, 3], false), 1e-14, 1e-14));
    }

    #[test]
    fn output_sizes() {
        assert_eq!(Pool2dParams::new(2).output_hw([9, 8]), Some([4, 4]));
        assert_eq!(Pool2dParams::new(3).stride(2).padding(1).output_hw([9, 8]), Some([5, 4]));
        assert_eq!(Pool2dParams::new(3).padding(2).output_hw([9, 8]), None);
        assert_eq!(Pool2dParams::new(5).output_hw([4, 8]), None);
        assert_eq!(Pool2dParams::new(2).stride(0).output_hw([4, 8]), None);
    }

    #[test]
    #[should_panic(expected = "max_pool2d: padding [2, 2] must be at most half the kernel [3, 3]")]
    fn large_padding_panics() {
        let _ = Tensor::<f64>::zeros(&[1, 1, 5, 5]).max_pool2d(Pool2dParams::new(3).padding(2));
    }

    #[test]
    #[should_panic(expected = "avg_pool2d: kernel [5, 5] is larger than input [1, 1, 4, 4] padded by [0, 0]")]
    fn large_kernel_panics() {
        let _ = Tensor::<f64>::zeros(&[1, 1, 4, 4]).avg_pool2d(Pool2dParams::new(5));
    }

    #[test]
    #[should_panic(expected = "max_pool2d: kernel [2, 2] and stride [0, 0] must be at least 1")]
    fn zero_stride_panics() {
        let _ = Tensor::<f64>::zeros(&[1, 1, 4, 4]).max_pool2d(Pool2dParams::new(2).stride(0));
    }

    #[test]
    #[should_panic(expected = "max_pool2d: input must have rank 4, got shape [4, 4]")]
    fn wrong_rank_panics() {
        let _ = Tensor::<f64>::zeros(&[4, 4]).max_pool2d(Pool2dParams::new(2));
    }

    #[test]
    #[should_panic(expected = "max_pool2d_backward: index 16 (output element 3) is outside the 4×4 plane")]
    fn bad_index_panics() {
        let _ = Tensor::<f64>::max_pool2d_backward(&Tensor::zeros(&[1, 1, 2, 2]), &[0, 1, 2, 16], [1, 1, 4, 4]);
    }

    #[test]
    #[should_panic(expected = "avg_pool2d_backward: grad_out [1, 1, 3, 3] should be [1, 1, 2, 2]")]
    fn avg_backward_shape_panics() {
        let _ = Tensor::<f64>::avg_pool2d_backward(&Tensor::zeros(&[1, 1, 3, 3]), [1, 1, 4, 4], Pool2dParams::new(2));
    }
}
