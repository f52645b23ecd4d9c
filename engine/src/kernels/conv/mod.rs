//! 2-D convolution (cross-correlation, as in PyTorch) with stride, padding, dilation and
//! groups; its two adjoints (input and weight gradients); `conv_transpose2d` defined as the
//! exact adjoint of `conv2d`; and `im2col` / `col2im`.
//!
//! Layouts follow PyTorch: input `[N, C, H, W]`; conv weight `[O, C/groups, kh, kw]`;
//! conv_transpose weight `[C_in, C_out/groups, kh, kw]`.
//!
//! ## The definition every kernel here shares
//! With `s` stride, `p` padding, `d` dilation, `G` groups, `Cg = C/G`, `Og = O/G`, an output
//! channel `o` belongs to group `g = o / Og` and reads input channels `g·Cg .. (g+1)·Cg`:
//!
//! ```text
//! y[n, o, a, b] = bias[o] + Σ_{c < Cg, i < kh, j < kw} x[n, g·Cg + c, a·s − p + i·d, b·s − p + j·d] · W[o, c, i, j]
//! ```
//!
//! where `x` is zero outside `0..H × 0..W` (zero padding). The map is bilinear in `(x, W)`;
//! `conv2d_backward_input` and `conv2d_backward_weight` are its exact adjoints in `x` and in
//! `W`, and `conv_transpose2d` *is* `conv2d_backward_input` (plus a bias), as in PyTorch.
//!
//! ## Non-finite values
//! Every path (GEMM, direct, sparse) gives the NaN and ±∞ pattern of im2col + GEMM, which is
//! PyTorch's: the forward and the weight gradient read the padding as explicit zeros of the
//! column matrix (so a NaN or ±∞ weight makes every output of its channel NaN, `0·∞ = NaN`); the
//! input gradient at `p` sums only the taps that touch `p` (col2im drops the rest), so the
//! padding contributes nothing and a non-finite weight poisons exactly the positions it
//! reaches. The direct and sparse kernels would differ (the direct input gradient meets the
//! padding of `gy`, its weight gradient multiplies the input by zero lanes, the sparse kernels
//! skip `0·v`), so they hand a non-finite weight (input gradient) or input (weight gradient)
//! to the GEMM kernels; the test `every_path_propagates_nan_and_inf_like_gemm` pins this.
//!
//! ## How the fast kernels work
//! Every op takes any input layout (it makes its operands contiguous once) and works on the
//! im2col matrix of a *block* of work: output rows `a0..a1` of `b` images, row `(c, i, j)`,
//! column `(image, a, b)`, built in a per-thread scratch buffer — or not built at all when it
//! is the input itself (a 1×1 kernel with stride 1 and no padding, or a kernel covering the
//! whole unpadded input, i.e. a dense layer). Every group is then one GEMM through
//! `matrixmultiply`:
//!
//! * forward: `Y_g = W_g · cols_g`  (`W_g` is `[Og, Cg·kh·kw]`);
//! * input gradient: `cols_g = W_gᵀ · G_g`, then col2im (overlapping entries add);
//! * weight gradient: `dW_g = Σ_blocks G_g · cols_gᵀ`.
//!
//! How the batch is cut depends only on the shapes (`Plan`): images are grouped so that a
//! GEMM has about 256 columns; with at least 4 such chunks they run in parallel on rayon (one
//! thread per GEMM), otherwise in turn with each GEMM split across threads (in row or column
//! blocks, which never changes the bits); a single image with a large column matrix is cut
//! into blocks of output rows. The weight gradient accumulates consecutive chunks with `β = 1`
//! into at most 8 partial sums that are added in order. Every result is therefore
//! bit-identical for any number of threads.

use crate::kernels::matmul::MatRef;
use crate::{Element, Tensor};

mod chunks;
mod direct;
mod geometry;
mod sparse;

pub(crate) use chunks::valid_range;
use chunks::*;
pub(crate) use geometry::dims4;
use geometry::*;

use crate::kernels::simd::Isa;

/// Which kernels compute a convolution: the public ops use [`Path::Auto`] (for the two
/// adjoints, the sparse kernels when the output gradient is mostly zeros; otherwise the
/// direct kernels when they apply to the geometry and the CPU has an instruction set for
/// them, otherwise im2col + GEMM); tests pin each path in turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    Auto,
    #[cfg_attr(not(test), allow(dead_code))]
    Gemm,
    #[cfg_attr(not(test), allow(dead_code))]
    Direct(Isa),
    /// The adjoints visit the nonzeros of the output gradient only (`sparse`, whatever its
    /// density); the forward runs as [`Path::Gemm`].
    #[cfg_attr(not(test), allow(dead_code))]
    Sparse,
}

impl Path {
    /// The instruction set of the direct kernels this path uses for `g`, or `None` for GEMM
    /// (a pinned direct path runs whenever the kernels support `g`, worthwhile or not).
    fn direct(self, g: &Geom) -> Option<Isa> {
        match self {
            Path::Auto => Isa::vectors().filter(|&isa| direct::supports(g) && direct::worthwhile(g, isa)),
            Path::Gemm | Path::Sparse => None,
            Path::Direct(isa) => direct::supports(g).then(|| isa.checked()),
        }
    }

    /// [`Path::direct`] for the input gradient: the automatic choice also skips the direct
    /// kernel where most of its products would meet padding ([`direct::input_grad_worthwhile`]).
    fn direct_input_grad(self, g: &Geom) -> Option<Isa> {
        self.direct(g).filter(|&isa| self != Path::Auto || direct::input_grad_worthwhile(g, isa))
    }

    /// Whether an adjoint with output gradient `gy` runs on the sparse kernels; `other` is
    /// the operand its nonzeros multiply (the weight, or the input).
    fn sparse<T: Element>(self, gy: &[T], other: &[T]) -> bool {
        match self {
            Path::Auto => sparse::worthwhile(gy, other),
            // Skipping a zero of `gy` drops `0·v`, which is not zero for a non-finite `v`: a
            // pinned sparse path hands such operands to the dense kernels (see "Non-finite values").
            Path::Sparse => all_finite(other),
            Path::Gemm | Path::Direct(_) => false,
        }
    }

    /// Every path this machine can run: GEMM and the direct kernels of each instruction set.
    #[cfg(test)]
    fn all() -> Vec<Path> {
        [Path::Gemm, Path::Sparse].into_iter().chain(Isa::with_vectors().into_iter().map(Path::Direct)).collect()
    }
}

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

    /// Output size of a convolution of an `in_hw` input with a `kernel_hw` kernel, per axis
    /// `OH = ⌊(H + 2·pad − dil·(kh − 1) − 1) / stride⌋ + 1`.
    ///
    /// `None` when a kernel size, stride, dilation or `groups` is 0, or when the dilated kernel
    /// `dil·(kh − 1) + 1` is larger than the padded input `H + 2·pad` (PyTorch raises then).
    pub fn output_hw(&self, in_hw: [usize; 2], kernel_hw: [usize; 2]) -> Option<[usize; 2]> {
        if self.groups == 0 {
            return None;
        }
        let axis = |a: usize| -> Option<usize> {
            let (s, d, k) = (self.stride[a], self.dilation[a], kernel_hw[a]);
            if s == 0 || d == 0 || k == 0 {
                return None;
            }
            let extent = d.checked_mul(k - 1)?.checked_add(1)?;
            let padded = self.padding[a].checked_mul(2)?.checked_add(in_hw[a])?;
            padded.checked_sub(extent).map(|room| room / s + 1)
        };
        Some([axis(0)?, axis(1)?])
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

    /// Output size of a transposed convolution, per axis
    /// `H' = (H − 1)·stride − 2·pad + dil·(kh − 1) + output_padding + 1`.
    ///
    /// `None` when `H` or a kernel size, stride, dilation or `groups` is 0, when
    /// `output_padding ≥ max(stride, dilation)` (PyTorch's rule), or when `H' < 1`.
    pub fn output_hw(&self, in_hw: [usize; 2], kernel_hw: [usize; 2]) -> Option<[usize; 2]> {
        if self.groups == 0 {
            return None;
        }
        let axis = |a: usize| -> Option<usize> {
            let (s, d, k, op) = (self.stride[a], self.dilation[a], kernel_hw[a], self.output_padding[a]);
            if s == 0 || d == 0 || k == 0 || in_hw[a] == 0 || op >= s.max(d) {
                return None;
            }
            let grown = (in_hw[a] - 1).checked_mul(s)?.checked_add(d.checked_mul(k - 1)?)?.checked_add(op + 1)?;
            grown.checked_sub(self.padding[a].checked_mul(2)?).filter(|&h| h >= 1)
        };
        Some([axis(0)?, axis(1)?])
    }
}

// ---------------------------------------------------------------------------------- kernels

/// Runs `f(scratch, chunk, dst, split)` for every chunk of `plan` with `dst` its `per_image`-
/// sized pieces of `out`: chunks in parallel (`split = false`) or in turn (`split = true`).
fn for_chunks<T: Element>(
    out: &mut [T],
    per_image: usize,
    plan: Plan,
    f: impl Fn(&mut Scratch<T>, usize, &mut [T], bool) + Sync + Send,
) {
    if out.is_empty() {
        return;
    }
    let size = plan.images * per_image;
    if plan.by_chunk {
        crate::par::chunks_mut_with(out, size, &Scratch::new, &|s, i, dst| f(s, i, dst, false));
    } else {
        let mut s = Scratch::new();
        out.chunks_mut(size).enumerate().for_each(|(i, dst)| f(&mut s, i, dst, true));
    }
}

/// `y = conv(x, W) + bias` on contiguous buffers; `y` is `[n, o, oh, ow]`.
fn forward<T: Element>(x: &[T], w: &[T], bias: Option<&[T]>, g: &Geom, path: Path) -> Vec<T> {
    match path.direct(g) {
        Some(isa) => direct::forward(isa, g, x, w, bias),
        None => forward_gemm(x, w, bias, g),
    }
}

/// `dx = ∂⟨conv(x, W), gy⟩/∂x` on contiguous buffers; `dx` is `[n, c, h, w]`.
fn backward_input<T: Element>(gy: &[T], w: &[T], g: &Geom, path: Path) -> Vec<T> {
    if path.sparse(gy, w) {
        return sparse::input_grad(g, gy, w);
    }
    // The direct kernel correlates the zero-padded `gy` with the whole kernel, so a non-finite
    // weight would meet the padding (`0·NaN`): such weights take the GEMM path.
    match path.direct_input_grad(g).filter(|_| all_finite(w)) {
        Some(isa) => direct::input_grad(isa, g, gy, w),
        None => backward_input_gemm(gy, w, g),
    }
}

/// `dW = ∂⟨conv(x, W), gy⟩/∂W` on contiguous buffers; `dW` is `[o, c/groups, kh, kw]`.
fn backward_weight<T: Element>(gy: &[T], x: &[T], g: &Geom, path: Path) -> Vec<T> {
    if path.sparse(gy, x) {
        return sparse::weight_grad(g, gy, x);
    }
    // The direct kernel's flattened layout also multiplies the input by the zeros of the lanes
    // past the output width (`0·NaN`): a non-finite input takes the GEMM path. Its row layout
    // multiplies real entries of `gy` only, as GEMM does, and skips the scan.
    path.direct(g)
        .filter(|&isa| direct::weight_grad_by_rows::<T>(g, isa) || all_finite(x))
        .and_then(|isa| direct::weight_grad(isa, g, gy, x))
        .unwrap_or_else(|| backward_weight_gemm(gy, x, g))
}

/// Whether every element of `v` is finite (no NaN, no ±∞); on rayon in chunks of
/// [`crate::PAR_CHUNK`], each tested in blocks of 256 without a branch per element (which
/// vectorises; `Iterator::all` stops at each element and does not).
fn all_finite<T: Element>(v: &[T]) -> bool {
    let p = crate::PAR_CHUNK;
    let chunk = |c: &[T]| c.chunks(256).all(|b| b.iter().fold(true, |ok, e| ok & e.is_finite()));
    crate::par::map(v.len().div_ceil(p), &|c| chunk(&v[c * p..v.len().min((c + 1) * p)])).into_iter().all(|ok| ok)
}

/// [`forward`] by im2col + GEMM.
fn forward_gemm<T: Element>(x: &[T], w: &[T], bias: Option<&[T]>, g: &Geom) -> Vec<T> {
    let (o, l, og, k) = (g.o, g.l(), g.og(), g.k());
    let mut y = crate::filled(g.n * o * l, T::zero());
    let beta = if bias.is_some() { T::one() } else { T::zero() };
    let plan = Plan::new(g);
    for_chunks(&mut y, o * l, plan, |s, chunk, dst, split| {
        if let Some(bias) = bias {
            for (plane, &v) in dst.chunks_exact_mut(l).zip(bias.iter().cycle()) {
                plane.fill(v);
            }
        }
        for blk in plan.blocks(chunk, g) {
            let cols = columns(x, g, &blk, &mut s.cols);
            for grp in 0..g.p.groups {
                let (wg, xg) = (MatRef::row_major(w, grp * og * k, og, k), sub_rows(cols, grp * k, k));
                gemm_into_planes(wg, xg, beta, dst, (o, grp * og, l), blk.positions(g.ow), &mut s.tmp, split);
            }
        }
    });
    y
}

/// [`backward_input`] by GEMM + col2im.
fn backward_input_gemm<T: Element>(gy: &[T], w: &[T], g: &Geom) -> Vec<T> {
    let (o, l, og, k) = (g.o, g.l(), g.og(), g.k());
    let image = g.c * g.h * g.w;
    let mut dx = crate::filled(g.n * image, T::zero());
    let plan = Plan::new(g);
    let identity = g.identity_columns();
    for_chunks(&mut dx, image, plan, |s, chunk, dst, split| {
        for blk in plan.blocks(chunk, g) {
            let gm = channel_matrix(gy, (o, l), &blk, g.ow, &mut s.gathered);
            let width = blk.width(g.ow);
            let cols = sized(&mut s.cols, if identity.is_some() { 0 } else { g.c * g.kh * g.kw * width });
            for grp in 0..g.p.groups {
                let (wgt, gg) = (MatRef::row_major(w, grp * og * k, og, k).t(), sub_rows(gm, grp * og, og));
                match identity {
                    // The columns are the input planes: write them in place.
                    Some(rows) => {
                        let ps = blk.positions(g.ow);
                        gemm_into_planes(wgt, gg, T::zero(), dst, (rows, grp * k, l), ps, &mut s.tmp, split)
                    }
                    None => gemm_rows(wgt, gg, T::zero(), &mut cols[grp * k * width..], width, split),
                }
            }
            if identity.is_none() {
                col2im_add(cols, g, &blk, dst);
            }
        }
    });
    dx
}

/// [`backward_weight`] by im2col + GEMM. Block by block, `dW_g += G_g · cols_gᵀ` (GEMM with `β = 1`). When the chunks run in
/// parallel they are dealt into at most [`MAX_PARTIALS`] consecutive runs whose partial sums
/// are added in order; otherwise one accumulator takes every chunk in turn with split GEMMs.
/// The runs depend only on the shapes: bit-identical results for any number of threads.
fn backward_weight_gemm<T: Element>(gy: &[T], x: &[T], g: &Geom) -> Vec<T> {
    let (o, l, og, k) = (g.o, g.l(), g.og(), g.k());
    if o * k == 0 {
        return vec![T::zero(); o * k];
    }
    let plan = Plan::new(g);
    let accumulate = |s: &mut Scratch<T>, chunks: std::ops::Range<usize>, split: bool| {
        let mut acc = vec![T::zero(); o * k];
        let blocks = chunks.flat_map(|chunk| plan.blocks(chunk, g));
        for (j, blk) in blocks.enumerate() {
            let cols = columns(x, g, &blk, &mut s.cols);
            let gm = channel_matrix(gy, (o, l), &blk, g.ow, &mut s.gathered);
            let beta = if j == 0 { T::zero() } else { T::one() };
            for grp in 0..g.p.groups {
                let (gg, cg) = (sub_rows(gm, grp * og, og), sub_rows(cols, grp * k, k));
                gemm_rows(gg, cg.t(), beta, &mut acc[grp * og * k..], k, split);
            }
        }
        acc
    };
    if !plan.by_chunk {
        return accumulate(&mut Scratch::new(), 0..plan.chunks, true);
    }
    sum_of_runs(plan.chunks, |run| accumulate(&mut Scratch::new(), run, false))
}

/// `Σ part(run)` over at most [`MAX_PARTIALS`] runs of consecutive items of `0..items`
/// (`items ≥ 1`), computed in parallel and added in order. The runs depend only on `items`, so
/// the sum is bit-identical for any number of threads.
fn sum_of_runs<T: Element>(items: usize, part: impl Fn(std::ops::Range<usize>) -> Vec<T> + Sync) -> Vec<T> {
    let per_run = items.div_ceil(MAX_PARTIALS);
    let partials: Vec<Vec<T>> =
        crate::par::map(items.div_ceil(per_run), &|r| part(r * per_run..items.min((r + 1) * per_run)));
    let mut runs = partials.into_iter();
    let mut sum = runs.next().expect("at least one run");
    for p in runs {
        sum.iter_mut().zip(&p).for_each(|(d, &v)| *d += v);
    }
    sum
}

/// Adds `bias[ch]` to every plane of a contiguous `[N, C, H, W]` buffer.
fn add_bias<T: Element>(y: &mut [T], bias: &[T], plane: usize) {
    if plane == 0 {
        return;
    }
    for (p, &v) in y.chunks_exact_mut(plane).zip(bias.iter().cycle()) {
        p.iter_mut().for_each(|e| *e += v);
    }
}

fn slice_of<T: Element>(t: &Tensor<T>) -> &[T] {
    t.as_slice().expect("contiguous tensor")
}

impl<T: Element> Tensor<T> {
    /// 2-D convolution (cross-correlation, PyTorch's `conv2d`), see the module docs for the
    /// formula: `[N, C, H, W] * [O, C/groups, kh, kw] (+ bias [O]) → [N, O, OH, OW]` with
    /// `OH = ⌊(H + 2·pad − dil·(kh − 1) − 1) / stride⌋ + 1` ([`Conv2dParams::output_hw`]).
    /// Inputs may have any layout.
    ///
    /// **Panics** if `self` or `weight` is not rank 4, `C ≠ groups · weight.dim(1)`, `groups`
    /// does not divide `C` or `O`, the bias is not `[O]`, a stride, dilation or `groups` is 0,
    /// or the dilated kernel is larger than the padded input.
    #[track_caller]
    pub fn conv2d(&self, weight: &Tensor<T>, bias: Option<&Tensor<T>>, p: Conv2dParams) -> Tensor<T> {
        self.conv2d_on(Path::Auto, weight, bias, p)
    }

    /// Gradient of `⟨conv2d(x, W), grad_out⟩` with respect to `x`: the exact adjoint of
    /// `conv2d` in its input, `[N, O, OH, OW] → [N, C, H, W]` with `[H, W] = input_hw`
    /// (needed because several `H` give the same `OH`). Computed as `cols = Wᵀ·g` per image
    /// and group, then col2im (overlapping windows add).
    ///
    /// **Panics** if `grad_out` or `weight` is not rank 4, `O` differs between them,
    /// `groups` does not divide `O`, or `[OH, OW]` is not `p.output_hw(input_hw, [kh, kw])`.
    #[track_caller]
    pub fn conv2d_backward_input(
        grad_out: &Tensor<T>,
        weight: &Tensor<T>,
        input_hw: [usize; 2],
        p: Conv2dParams,
    ) -> Tensor<T> {
        Self::conv2d_backward_input_on(Path::Auto, grad_out, weight, input_hw, p)
    }

    /// Gradient of `⟨conv2d(x, W), grad_out⟩` with respect to `W`:
    /// `dW[o, c, i, j] = Σ_{n, a, b} grad_out[n, o, a, b] · x[n, g·Cg + c, a·s − p + i·d, b·s − p + j·d]`,
    /// shape `[O, C/groups, kh, kw]` with `[kh, kw] = kernel_hw`. The sum over the batch is
    /// cut into chunks fixed by the shapes and added in order: the result is bit-identical
    /// for any number of rayon threads. (The bias gradient is `grad_out.sum(&[0, 2, 3], false)`.)
    ///
    /// **Panics** if `grad_out` or `input` is not rank 4, their batch sizes differ, `groups`
    /// does not divide `C` or `O`, or `[OH, OW]` is not `p.output_hw([H, W], kernel_hw)`.
    #[track_caller]
    pub fn conv2d_backward_weight(
        grad_out: &Tensor<T>,
        input: &Tensor<T>,
        kernel_hw: [usize; 2],
        p: Conv2dParams,
    ) -> Tensor<T> {
        Self::conv2d_backward_weight_on(Path::Auto, grad_out, input, kernel_hw, p)
    }

    /// Transposed convolution (PyTorch's `conv_transpose2d`), defined as the exact adjoint of
    /// `conv2d` with the same weight: `[N, C_in, H, W]` with weight `[C_in, C_out/groups, kh, kw]`
    /// (+ bias `[C_out]`) `→ [N, C_out, H', W']`,
    /// `H' = (H − 1)·stride − 2·pad + dil·(kh − 1) + output_padding + 1`. Without bias,
    /// `⟨conv_transpose2d(z, W), x⟩ = ⟨z, conv2d(x, W)[.., :H, :W]⟩` for every `x` of shape
    /// `[N, C_out, H', W']` (the crop is a no-op unless `output_padding ≥ stride`).
    ///
    /// **Panics** if `self` or `weight` is not rank 4, `C_in ≠ weight.dim(0)`, `groups` does
    /// not divide `C_in`, the bias is not `[C_out]`, a stride, dilation or `groups` is 0,
    /// `output_padding ≥ max(stride, dilation)`, or `H'` or `W'` would be below 1.
    #[track_caller]
    pub fn conv_transpose2d(
        &self,
        weight: &Tensor<T>,
        bias: Option<&Tensor<T>>,
        p: ConvTranspose2dParams,
    ) -> Tensor<T> {
        self.conv_transpose2d_on(Path::Auto, weight, bias, p)
    }

    /// Gradient of `⟨conv_transpose2d(z, W), grad_out⟩` with respect to `z`:
    /// `conv2d(grad_out, W)` restricted to the leading `input_hw` rows and columns. When
    /// `output_padding < stride` on both axes (always, unless the dilation is larger than the
    /// stride) that restriction is the whole output, i.e. the input gradient of
    /// `conv_transpose2d` is simply `grad_out.conv2d(weight, None, p.as_conv())`.
    ///
    /// **Panics** like [`Tensor::conv_transpose2d`] for an input of spatial size `input_hw`, and
    /// if `grad_out` is not that transposed convolution's output shape.
    #[track_caller]
    pub fn conv_transpose2d_backward_input(
        grad_out: &Tensor<T>,
        weight: &Tensor<T>,
        input_hw: [usize; 2],
        p: ConvTranspose2dParams,
    ) -> Tensor<T> {
        Self::conv_transpose2d_backward_input_on(Path::Auto, grad_out, weight, input_hw, p)
    }

    /// Gradient of `⟨conv_transpose2d(z, W), grad_out⟩` with respect to `W`, shape
    /// `[C_in, C_out/groups, kh, kw]`: `conv2d_backward_weight` with the roles swapped
    /// (`z` is the convolution's output gradient, `grad_out` its input), deterministic in the
    /// same way. The input gradient is `grad_out.conv2d(weight, None, p.as_conv())` (see
    /// [`Tensor::conv_transpose2d_backward_input`] for the case `output_padding ≥ stride`),
    /// and the bias gradient `grad_out.sum(&[0, 2, 3], false)`.
    ///
    /// **Panics** like [`Tensor::conv_transpose2d`], and if `grad_out` is not the transposed
    /// convolution's output shape.
    #[track_caller]
    pub fn conv_transpose2d_backward_weight(
        input: &Tensor<T>,
        grad_out: &Tensor<T>,
        kernel_hw: [usize; 2],
        p: ConvTranspose2dParams,
    ) -> Tensor<T> {
        Self::conv_transpose2d_backward_weight_on(Path::Auto, input, grad_out, kernel_hw, p)
    }

    /// `conv2d(self, W) ⊙ [mask ≠ 0]`, computed at the nonzero entries of `mask` only (`mask`
    /// has the output's shape `[N, O, OH, OW]`, any layout): each is the dot product of its
    /// window as in [`Tensor::conv2d`] (without bias), every other output is exactly zero (a
    /// NaN outside the mask does not leak in). The work is `nnz(mask)·C/groups·kh·kw`
    /// multiply-adds: the use is a gradient that a following threshold keeps only on a sparse
    /// support (DCEA's codes). Deterministic for any number of threads.
    ///
    /// **Panics** like [`Tensor::conv2d`], and if `mask` is not the output's shape.
    #[track_caller]
    pub fn conv2d_where(&self, weight: &Tensor<T>, p: Conv2dParams, mask: &Tensor<T>) -> Tensor<T> {
        const OP: &str = "conv2d_where";
        let g = Geom::conv(OP, dims4(OP, "input", self), dims4(OP, "weight", weight), p);
        expect_shape(OP, "mask", mask, &g.y_shape(), "the output of the convolution");
        let (x, w, m) = (Tensor::contiguous(self), Tensor::contiguous(weight), Tensor::contiguous(mask));
        Tensor::from_vec(sparse::masked_forward(&g, slice_of(&x), slice_of(&w), slice_of(&m)), &g.y_shape())
    }

    /// [`Tensor::conv_transpose2d_backward_input`] `⊙ [mask ≠ 0]`, computed at the nonzero
    /// entries of `mask` only; `mask` has the shape of the transposed convolution's input
    /// `[N, C_in, H, W]` (that is, of the gradient returned), any layout. As
    /// [`Tensor::conv2d_where`]: exact zeros outside the mask, `nnz(mask)·C_out/groups·kh·kw`
    /// multiply-adds, deterministic.
    ///
    /// **Panics** like [`Tensor::conv_transpose2d_backward_input`] for an input of `mask`'s shape.
    #[track_caller]
    pub fn conv_transpose2d_backward_input_where(
        grad_out: &Tensor<T>,
        weight: &Tensor<T>,
        mask: &Tensor<T>,
        p: ConvTranspose2dParams,
    ) -> Tensor<T> {
        const OP: &str = "conv_transpose2d_backward_input_where";
        let g = Geom::transposed(OP, dims4(OP, "mask", mask), dims4(OP, "weight", weight), p);
        expect_shape(OP, "grad_out", grad_out, &g.x_shape(), "the output of the transposed convolution");
        let (gy, w, m) = (Tensor::contiguous(grad_out), Tensor::contiguous(weight), Tensor::contiguous(mask));
        Tensor::from_vec(sparse::masked_forward(&g, slice_of(&gy), slice_of(&w), slice_of(&m)), &g.y_shape())
    }

    /// im2col: `[N, C, H, W] → [N, C·kh·kw, OH·OW]`, row `(c, i, j)`, column `(a, b)` holding
    /// `x[n, c, a·s − p + i·d, b·s − p + j·d]` (0 in the padding), so that for `groups = 1`
    /// `conv2d(x, W)[n] = W.reshape([O, C·kh·kw]) · im2col(x)[n]`. `p.groups` is ignored (the
    /// rows of group `g` are the contiguous block `g·Cg·kh·kw .. (g+1)·Cg·kh·kw`).
    ///
    /// **Panics** if `self` is not rank 4, a kernel size, stride or dilation is 0, or the
    /// dilated kernel is larger than the padded input.
    #[track_caller]
    pub fn im2col(&self, kernel_hw: [usize; 2], p: Conv2dParams) -> Tensor<T> {
        const OP: &str = "im2col";
        let p = Conv2dParams { groups: 1, ..p };
        let x_shape = dims4(OP, "input", self);
        let g = Geom::conv(OP, x_shape, [1, x_shape[1], kernel_hw[0], kernel_hw[1]], p);
        let (rows, l) = (g.c * g.kh * g.kw, g.l());
        let x = Tensor::contiguous(self);
        let xs = slice_of(&x);
        let mut cols = crate::filled(g.n * rows * l, T::zero());
        if !cols.is_empty() {
            let whole = |n0| Block { n0, images: 1, a0: 0, a1: g.oh };
            crate::par::chunks_mut(&mut cols, rows * l, &|n, dst| im2col_into(xs, &g, &whole(n), dst));
        }
        Tensor::from_vec(cols, &[g.n, rows, l])
    }

    /// col2im, the adjoint of [`Tensor::im2col`]: `[N, C·kh·kw, OH·OW] → input_shape`
    /// `[N, C, H, W]`, every column entry added to the input element it was copied from
    /// (overlapping windows add; entries in the padding are dropped).
    ///
    /// **Panics** if `cols` is not `[N, C·kh·kw, OH·OW]` for that input, kernel and `p`, or
    /// the parameters are invalid as for `im2col`.
    #[track_caller]
    pub fn col2im(cols: &Tensor<T>, input_shape: [usize; 4], kernel_hw: [usize; 2], p: Conv2dParams) -> Tensor<T> {
        const OP: &str = "col2im";
        let p = Conv2dParams { groups: 1, ..p };
        let g = Geom::conv(OP, input_shape, [1, input_shape[1], kernel_hw[0], kernel_hw[1]], p);
        let (rows, l) = (g.c * g.kh * g.kw, g.l());
        expect_shape(OP, "cols", cols, &[g.n, rows, l], "[N, C·kh·kw, OH·OW] of the input");
        let cols = Tensor::contiguous(cols);
        let cs = slice_of(&cols);
        let image = g.c * g.h * g.w;
        let mut dx = crate::filled(g.n * image, T::zero());
        if !dx.is_empty() {
            let one = Block { n0: 0, images: 1, a0: 0, a1: g.oh };
            crate::par::chunks_mut(&mut dx, image, &|n, dst| col2im_add(&cs[n * rows * l..], &g, &one, dst));
        }
        Tensor::from_vec(dx, &input_shape)
    }
}

impl<T: Element> Tensor<T> {
    /// [`Tensor::conv2d`] on the kernels of `path`.
    #[track_caller]
    pub(crate) fn conv2d_on(
        &self,
        path: Path,
        weight: &Tensor<T>,
        bias: Option<&Tensor<T>>,
        p: Conv2dParams,
    ) -> Tensor<T> {
        const OP: &str = "conv2d";
        let g = Geom::conv(OP, dims4(OP, "input", self), dims4(OP, "weight", weight), p);
        let bias = bias_values(OP, bias, g.o);
        let (x, w) = (Tensor::contiguous(self), Tensor::contiguous(weight));
        Tensor::from_vec(forward(slice_of(&x), slice_of(&w), bias.as_deref(), &g, path), &g.y_shape())
    }

    /// [`Tensor::conv2d_backward_input`] on the kernels of `path`.
    #[track_caller]
    pub(crate) fn conv2d_backward_input_on(
        path: Path,
        grad_out: &Tensor<T>,
        weight: &Tensor<T>,
        input_hw: [usize; 2],
        p: Conv2dParams,
    ) -> Tensor<T> {
        const OP: &str = "conv2d_backward_input";
        let [n, _, _, _] = dims4(OP, "grad_out", grad_out);
        let w_shape = dims4(OP, "weight", weight);
        let x_shape = [n, w_shape[1] * p.groups, input_hw[0], input_hw[1]];
        let g = Geom::conv(OP, x_shape, w_shape, p);
        expect_shape(OP, "grad_out", grad_out, &g.y_shape(), "the output of the convolution");
        let (gy, w) = (Tensor::contiguous(grad_out), Tensor::contiguous(weight));
        Tensor::from_vec(backward_input(slice_of(&gy), slice_of(&w), &g, path), &g.x_shape())
    }

    /// [`Tensor::conv2d_backward_weight`] on the kernels of `path`.
    #[track_caller]
    pub(crate) fn conv2d_backward_weight_on(
        path: Path,
        grad_out: &Tensor<T>,
        input: &Tensor<T>,
        kernel_hw: [usize; 2],
        p: Conv2dParams,
    ) -> Tensor<T> {
        const OP: &str = "conv2d_backward_weight";
        let [_, o, _, _] = dims4(OP, "grad_out", grad_out);
        let x_shape = dims4(OP, "input", input);
        let w_shape = [o, x_shape[1] / p.groups.max(1), kernel_hw[0], kernel_hw[1]];
        let g = Geom::conv(OP, x_shape, w_shape, p);
        expect_shape(OP, "grad_out", grad_out, &g.y_shape(), "the output of the convolution");
        let (gy, x) = (Tensor::contiguous(grad_out), Tensor::contiguous(input));
        Tensor::from_vec(backward_weight(slice_of(&gy), slice_of(&x), &g, path), &g.w_shape())
    }

    /// [`Tensor::conv_transpose2d`] on the kernels of `path`.
    #[track_caller]
    pub(crate) fn conv_transpose2d_on(
        &self,
        path: Path,
        weight: &Tensor<T>,
        bias: Option<&Tensor<T>>,
        p: ConvTranspose2dParams,
    ) -> Tensor<T> {
        const OP: &str = "conv_transpose2d";
        let g = Geom::transposed(OP, dims4(OP, "input", self), dims4(OP, "weight", weight), p);
        let bias = bias_values(OP, bias, g.c);
        let (z, w) = (Tensor::contiguous(self), Tensor::contiguous(weight));
        let mut y = backward_input(slice_of(&z), slice_of(&w), &g, path);
        if let Some(bias) = bias {
            add_bias(&mut y, &bias, g.h * g.w);
        }
        Tensor::from_vec(y, &g.x_shape())
    }

    /// [`Tensor::conv_transpose2d_backward_input`] on the kernels of `path`.
    #[track_caller]
    pub(crate) fn conv_transpose2d_backward_input_on(
        path: Path,
        grad_out: &Tensor<T>,
        weight: &Tensor<T>,
        input_hw: [usize; 2],
        p: ConvTranspose2dParams,
    ) -> Tensor<T> {
        const OP: &str = "conv_transpose2d_backward_input";
        let [n, _, _, _] = dims4(OP, "grad_out", grad_out);
        let w_shape = dims4(OP, "weight", weight);
        let g = Geom::transposed(OP, [n, w_shape[0], input_hw[0], input_hw[1]], w_shape, p);
        expect_shape(OP, "grad_out", grad_out, &g.x_shape(), "the output of the transposed convolution");
        let (gy, w) = (Tensor::contiguous(grad_out), Tensor::contiguous(weight));
        Tensor::from_vec(forward(slice_of(&gy), slice_of(&w), None, &g, path), &g.y_shape())
    }

    /// [`Tensor::conv_transpose2d_backward_weight`] on the kernels of `path`.
    #[track_caller]
    pub(crate) fn conv_transpose2d_backward_weight_on(
        path: Path,
        input: &Tensor<T>,
        grad_out: &Tensor<T>,
        kernel_hw: [usize; 2],
        p: ConvTranspose2dParams,
    ) -> Tensor<T> {
        const OP: &str = "conv_transpose2d_backward_weight";
        let z_shape = dims4(OP, "input", input);
        let [_, c_out, _, _] = dims4(OP, "grad_out", grad_out);
        let w_shape = [z_shape[1], c_out / p.groups.max(1), kernel_hw[0], kernel_hw[1]];
        let g = Geom::transposed(OP, z_shape, w_shape, p);
        expect_shape(OP, "grad_out", grad_out, &g.x_shape(), "the output of the transposed convolution");
        let (z, gy) = (Tensor::contiguous(input), Tensor::contiguous(grad_out));
        Tensor::from_vec(backward_weight(slice_of(&z), slice_of(&gy), &g, path), &g.w_shape())
    }
}

pub mod naive;

#[cfg(test)]
mod tests;
