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

use rayon::prelude::*;

use crate::kernels::matmul::{gemm, par_gemm, Backend, MatRef};
use crate::{Element, Tensor};

mod direct;
mod sparse;

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

// ---------------------------------------------------------------------------------- geometry

/// The sizes of one convolution `x [n, c, h, w] * W [o, c/groups, kh, kw] → y [n, o, oh, ow]`.
///
/// `oh`/`ow` are normally `p.output_hw([h, w], [kh, kw])`; the adjoint of a transposed
/// convolution whose `output_padding` is at least its stride uses fewer rows or columns (only
/// the leading `oh × ow` outputs of the convolution), which every kernel here supports.
#[derive(Clone, Copy, Debug)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    p: Conv2dParams,
}

impl Geom {
    /// Input channels per group.
    fn cg(&self) -> usize {
        self.c / self.p.groups
    }
    /// Output channels per group.
    fn og(&self) -> usize {
        self.o / self.p.groups
    }
    /// Rows of one group's block of the column matrix (`Cg·kh·kw`).
    fn k(&self) -> usize {
        self.cg() * self.kh * self.kw
    }
    /// Output positions per image.
    fn l(&self) -> usize {
        self.oh * self.ow
    }
    fn x_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.h, self.w]
    }
    fn w_shape(&self) -> [usize; 4] {
        [self.o, self.cg(), self.kh, self.kw]
    }
    fn y_shape(&self) -> [usize; 4] {
        [self.n, self.o, self.oh, self.ow]
    }
    /// When every image's column matrix is the image itself seen as an `[rows, L]` matrix,
    /// `Some(rows)`: a 1×1 kernel with stride 1 and no padding (`rows = C`, `L = H·W`), or a
    /// kernel covering the whole unpadded input (`rows = C·H·W`, `L = 1`, a dense layer).
    fn identity_columns(&self) -> Option<usize> {
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
    fn conv(op: &str, x: [usize; 4], w: [usize; 4], p: Conv2dParams) -> Geom {
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
    fn transposed(op: &str, z: [usize; 4], w: [usize; 4], p: ConvTranspose2dParams) -> Geom {
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
fn check_positive(op: &str, stride: [usize; 2], dilation: [usize; 2], groups: usize) {
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
fn expect_shape<T: Element>(op: &str, name: &str, t: &Tensor<T>, shape: &[usize], why: &str) {
    if t.shape() != shape {
        panic!("{op}: {name} {:?} should be {shape:?} ({why})", t.shape());
    }
}

/// The bias as a slice of `o` values. **Panics** if its shape is not `[o]`.
#[track_caller]
fn bias_values<T: Element>(op: &str, bias: Option<&Tensor<T>>, o: usize) -> Option<Vec<T>> {
    let b = bias?;
    expect_shape(op, "bias", b, &[o], "one value per output channel");
    Some(b.to_vec())
}

// ---------------------------------------------------------------------------------- chunks

/// Output positions a GEMM should have at least: images are batched into one GEMM until
/// their positions reach this, so that packing the weight is amortised.
const GEMM_COLS: usize = 256;
/// Chunks of images needed to run the chunks in parallel; with fewer, the chunks run in turn
/// and each GEMM is split into row blocks instead.
const MIN_CHUNKS: usize = 4;
/// Largest number of partial weight gradients (one per group of chunks) that are summed.
const MAX_PARTIALS: usize = 8;
/// Largest column matrix built at once (elements): an image with more output positions is
/// cut into blocks of output rows, so that its columns stay in the L2 cache between im2col
/// and the GEMM. (Tiny under `cfg(test)`, so that the unit tests cross many block edges.)
const COLS_BLOCK: usize = if cfg!(test) { 1 << 10 } else { 1 << 17 };

/// How a batch is processed; depends only on the shapes (never on the thread count).
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// Images per chunk (one GEMM per chunk, row block and group).
    images: usize,
    /// Number of chunks, `⌈N / images⌉`.
    chunks: usize,
    /// Output rows per row block (`OH` unless a chunk of one image has too many columns).
    rows: usize,
    /// Chunks in parallel with single-threaded GEMMs (true), or in turn with split GEMMs.
    by_chunk: bool,
}

/// One piece of work: output rows `a0..a1` of images `n0..n0 + images`. Its column matrix is
/// `[C·kh·kw, images·(a1 − a0)·OW]`, column `(image, a − a0, b)`.
#[derive(Clone, Copy, Debug)]
struct Block {
    n0: usize,
    images: usize,
    a0: usize,
    a1: usize,
}

impl Block {
    /// The block's output positions within one image's `0..OH·OW`.
    fn positions(&self, ow: usize) -> std::ops::Range<usize> {
        self.a0 * ow..self.a1 * ow
    }
    /// Columns of the block's matrices.
    fn width(&self, ow: usize) -> usize {
        self.images * (self.a1 - self.a0) * ow
    }
}

impl Plan {
    fn new(g: &Geom) -> Plan {
        let l = g.l();
        let images = GEMM_COLS.div_ceil(l.max(1)).min(g.n).max(1);
        let chunks = g.n.div_ceil(images);
        let col_rows = g.c * g.kh * g.kw;
        let rows = if images > 1 || g.identity_columns().is_some() || col_rows * l <= COLS_BLOCK {
            g.oh
        } else {
            let blocks = g.oh.div_ceil((COLS_BLOCK / (col_rows * g.ow).max(1)).max(1));
            g.oh.div_ceil(blocks)
        };
        Plan { images, chunks, rows: rows.max(1), by_chunk: chunks >= MIN_CHUNKS }
    }
    /// The blocks of chunk `i`, top to bottom.
    fn blocks(&self, i: usize, g: &Geom) -> impl Iterator<Item = Block> {
        let (n0, oh, rows) = (i * self.images, g.oh, self.rows);
        let images = self.images.min(g.n - n0);
        (0..oh).step_by(rows).map(move |a0| Block { n0, images, a0, a1: (a0 + rows).min(oh) })
    }
}

/// Per-thread buffers reused across the chunks a rayon job processes.
struct Scratch<T> {
    cols: Vec<T>,
    gathered: Vec<T>,
    tmp: Vec<T>,
}

impl<T> Scratch<T> {
    fn new() -> Self {
        Scratch { cols: Vec::new(), gathered: Vec::new(), tmp: Vec::new() }
    }
}

/// The first `len` elements of `v`, growing it with zeros when shorter.
fn sized<T: Element>(v: &mut Vec<T>, len: usize) -> &mut [T] {
    if v.len() < len {
        v.resize(len, T::zero());
    }
    &mut v[..len]
}

/// Rows `r0..r0 + rows` of a matrix (no copy).
fn sub_rows<T>(m: MatRef<'_, T>, r0: usize, rows: usize) -> MatRef<'_, T> {
    MatRef { offset: (m.offset as isize + r0 as isize * m.rs) as usize, rows, ..m }
}

/// The block's part of a contiguous `[N, R, L]` buffer as the `[R, width]` matrix whose column
/// `(image, pos)` holds `data[n0 + image, r, positions[pos]]`: a strided view when the block
/// has one image or `L = 1`, otherwise gathered into `scratch`.
fn channel_matrix<'a, T: Element>(
    data: &'a [T],
    (r, l): (usize, usize),
    blk: &Block,
    ow: usize,
    scratch: &'a mut Vec<T>,
) -> MatRef<'a, T> {
    let (base, ps, b) = (blk.n0 * r * l, blk.positions(ow), blk.images);
    if b == 1 {
        return MatRef { data, offset: base + ps.start, rows: r, cols: ps.len(), rs: l as isize, cs: 1 };
    }
    if l == 1 {
        return MatRef { data, offset: base, rows: r, cols: b, rs: 1, cs: r as isize };
    }
    let lb = ps.len();
    let buf = sized(scratch, r * b * lb);
    for (bi, image) in data[base..base + b * r * l].chunks_exact(r * l).enumerate() {
        for (ri, plane) in image.chunks_exact(l).enumerate() {
            buf[(ri * b + bi) * lb..][..lb].copy_from_slice(&plane[ps.clone()]);
        }
    }
    MatRef::row_major(buf, 0, r, b * lb)
}

/// Row blocks a tall GEMM is split into: about 2²² multiply-adds or more per block and at
/// most 4 blocks (every block packs all of `B` again), block heights a multiple of 16.
fn rows_per_block(m: usize, k: usize, n: usize) -> usize {
    let blocks = (m.saturating_mul(k).saturating_mul(n) >> 22).clamp(1, 4);
    m.div_ceil(blocks).next_multiple_of(16)
}

/// `C ← A·B + β·C` with `C` row-major at the start of `c` with row stride `ldc`. With
/// `split` the product runs on several threads: [`par_gemm`] (the packed GEMM cuts any shape;
/// `matrixmultiply` cuts a wide product in column blocks), or, for a tall product on
/// `matrixmultiply`, row blocks whose sizes depend only on the shape. Splitting never changes
/// the bits: every element is computed from the same packed k-panels in the same order
/// whichever call computes it (the determinism test checks this end to end).
fn gemm_rows<T: Element>(a: MatRef<T>, b: MatRef<T>, beta: T, c: &mut [T], ldc: usize, split: bool) {
    let (m, n) = (a.rows, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    let c = &mut c[..(m - 1) * ldc + n];
    if !split {
        return gemm(T::one(), a, b, beta, c, 0, ldc);
    }
    if n >= m || Backend::detect() != Backend::MatrixMultiply {
        return par_gemm(T::one(), a, b, beta, c, 0, ldc);
    }
    let rows = rows_per_block(m, a.cols, n);
    c.par_chunks_mut(rows * ldc).enumerate().for_each(|(i, block)| {
        let height = (block.len() - n) / ldc + 1;
        gemm(T::one(), sub_rows(a, i * rows, height), b, beta, block, 0, ldc);
    });
}

/// `D ← A·X + β·D` where `D` is channel rows `r0..r0 + A.rows` and the block's positions of
/// the images of a contiguous `[b, R, L]` buffer `dst`, seen as the matrix of
/// [`channel_matrix`]. Writes in place when the block has one image, or `L = 1` and not
/// `split` (then as `Dᵀ = Xᵀ·Aᵀ`), otherwise through `tmp`.
#[allow(clippy::too_many_arguments)]
fn gemm_into_planes<T: Element>(
    a: MatRef<T>,
    x: MatRef<T>,
    beta: T,
    dst: &mut [T],
    (r, r0, l): (usize, usize, usize),
    ps: std::ops::Range<usize>,
    tmp: &mut Vec<T>,
    split: bool,
) {
    let (m, lb) = (a.rows, ps.len());
    let b = x.cols / lb;
    if b == 1 {
        gemm_rows(a, x, beta, &mut dst[r0 * l + ps.start..], l, split);
    } else if l == 1 && !split {
        gemm(T::one(), x.t(), a.t(), beta, dst, r0, r);
    } else {
        let buf = sized(tmp, m * b * lb);
        gemm_rows(a, x, T::zero(), buf, b * lb, split);
        for (bi, image) in dst.chunks_exact_mut(r * l).enumerate() {
            for (ri, plane) in image[r0 * l..(r0 + m) * l].chunks_exact_mut(l).enumerate() {
                let src = &buf[(ri * b + bi) * lb..][..lb];
                if beta == T::zero() {
                    plane[ps.clone()].copy_from_slice(src);
                } else {
                    plane[ps.clone()].iter_mut().zip(src).for_each(|(d, &s)| *d = beta * *d + s);
                }
            }
        }
    }
}

/// Indices `t < count` with `0 ≤ t·stride + off < len`, as a range `lo..hi` (also used by
/// pooling).
pub(crate) fn valid_range(off: isize, stride: usize, len: usize, count: usize) -> (usize, usize) {
    let lo = if off >= 0 { 0 } else { off.unsigned_abs().div_ceil(stride) };
    let hi = if off >= len as isize { 0 } else { ((len as isize - off) as usize).div_ceil(stride) };
    let hi = hi.min(count);
    (lo.min(hi), hi)
}

/// The walk shared by im2col and col2im (in opposite directions): which entries of the
/// column matrix read real input elements, per kernel row and per kernel column.
struct Segments {
    /// Per kernel row i: the output rows `lo..hi` whose input row `a·sh + i·dh − ph` is real,
    /// and the input row of output row 0 (may be negative).
    rows: Vec<(usize, usize, isize)>,
    /// Per kernel column j: the output columns `lo..hi` whose input column is real, and the
    /// input column of output column `lo` (only meaningful when `lo < hi`).
    cols: Vec<(usize, usize, usize)>,
}

impl Segments {
    fn new(g: &Geom) -> Segments {
        let ([sh, sw], [ph, pw], [dh, dw]) = (g.p.stride, g.p.padding, g.p.dilation);
        let rows = (0..g.kh)
            .map(|i| {
                let off = (i * dh) as isize - ph as isize;
                let (lo, hi) = valid_range(off, sh, g.h, g.oh);
                (lo, hi, off)
            })
            .collect();
        let cols = (0..g.kw)
            .map(|j| {
                let off = (j * dw) as isize - pw as isize;
                let (lo, hi) = valid_range(off, sw, g.w, g.ow);
                (lo, hi, if lo < hi { ((lo * sw) as isize + off) as usize } else { 0 })
            })
            .collect();
        Segments { rows, cols }
    }

    /// Calls `f(src, col_at, len)` for every run of entries `col_at..col_at + len` of the
    /// block's column matrix (row-major, [`Block`]), in order: for a run that reads real input
    /// elements `src = Some(plane_at)` and entry `col_at + t` pairs with element
    /// `plane_at + t·stride_w` of the block's images (a contiguous `[images, C, H, W]`
    /// buffer); a run in the padding has `src = None`.
    fn for_each(&self, g: &Geom, blk: &Block, mut f: impl FnMut(Option<usize>, usize, usize)) {
        let (sh, plane, ow, b, (a0, a1)) = (g.p.stride[0], g.h * g.w, g.ow, blk.images, (blk.a0, blk.a1));
        let lb = (a1 - a0) * ow;
        let mut row = 0;
        for c in 0..g.c {
            for &(a_lo, a_hi, row_off) in &self.rows {
                let a_lo = a_lo.clamp(a0, a1);
                let a_hi = a_hi.clamp(a_lo, a1);
                for &(lo, hi, first_col) in &self.cols {
                    for bi in 0..b {
                        let plane_at = (bi * g.c + c) * plane + first_col;
                        let col_row = (row * b + bi) * lb;
                        if a_lo > a0 {
                            f(None, col_row, (a_lo - a0) * ow);
                        }
                        for a in a_lo..a_hi {
                            let ih = ((a * sh) as isize + row_off) as usize;
                            let col_at = col_row + (a - a0) * ow;
                            if lo > 0 {
                                f(None, col_at, lo);
                            }
                            f(Some(plane_at + ih * g.w), col_at + lo, hi - lo);
                            if hi < ow {
                                f(None, col_at + hi, ow - hi);
                            }
                        }
                        if a_hi < a1 {
                            f(None, col_row + (a_hi - a0) * ow, (a1 - a_hi) * ow);
                        }
                    }
                    row += 1;
                }
            }
        }
    }
}

/// `dst.copy_from_slice(src)` for the short runs of im2col (often under 16 elements), with
/// fixed-size moves instead of a call to `memcpy`.
#[inline(always)]
fn copy_run<T: Copy>(dst: &mut [T], src: &[T]) {
    let (mut dst8, mut src8) = (dst.chunks_exact_mut(8), src.chunks_exact(8));
    for (d, s) in (&mut dst8).zip(&mut src8) {
        let d: &mut [T; 8] = d.try_into().expect("8 elements");
        *d = s.try_into().expect("8 elements");
    }
    for (d, &s) in dst8.into_remainder().iter_mut().zip(src8.remainder()) {
        *d = s;
    }
}

/// im2col of a block of `x` (contiguous `[N, C, H, W]`) into `cols`, its row-major column
/// matrix: row `(c, i, j)`, column `(image, a, b)` holds
/// `x[n0 + image, c, a·s − p + i·d, b·s − p + j·d]`, or 0 in the padding.
fn im2col_into<T: Element>(x: &[T], g: &Geom, blk: &Block, cols: &mut [T]) {
    let x = &x[blk.n0 * g.c * g.h * g.w..];
    let sw = g.p.stride[1];
    Segments::new(g).for_each(g, blk, |src, col_at, len| {
        let dst = &mut cols[col_at..col_at + len];
        match src {
            None => dst.fill(T::zero()),
            Some(at) if sw == 1 => copy_run(dst, &x[at..at + len]),
            Some(at) => dst.iter_mut().enumerate().for_each(|(t, v)| *v = x[at + t * sw]),
        }
    });
}

/// col2im of a block's column matrix `cols`, **added** into `dx`, the contiguous
/// `[images, C, H, W]` planes of the block's images: the adjoint of `im2col_into`.
fn col2im_add<T: Element>(cols: &[T], g: &Geom, blk: &Block, dx: &mut [T]) {
    let sw = g.p.stride[1];
    Segments::new(g).for_each(g, blk, |src, col_at, len| {
        let seg = &cols[col_at..col_at + len];
        match src {
            None => {}
            Some(at) if sw == 1 => dx[at..at + len].iter_mut().zip(seg).for_each(|(d, &v)| *d += v),
            Some(at) => seg.iter().enumerate().for_each(|(t, &v)| dx[at + t * sw] += v),
        }
    });
}

/// A block's columns as a `[C·kh·kw, width]` matrix: the input itself when im2col is the
/// identity (no copy when the block has one image or `L = 1`), otherwise im2col into
/// `scratch`.
fn columns<'a, T: Element>(x: &'a [T], g: &Geom, blk: &Block, scratch: &'a mut Vec<T>) -> MatRef<'a, T> {
    if let Some(rows) = g.identity_columns() {
        return channel_matrix(x, (rows, g.l()), blk, g.ow, scratch);
    }
    let rows = g.c * g.kh * g.kw;
    let buf = sized(scratch, rows * blk.width(g.ow));
    im2col_into(x, g, blk, buf);
    MatRef::row_major(buf, 0, rows, blk.width(g.ow))
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
        out.par_chunks_mut(size).enumerate().for_each_init(Scratch::new, |s, (i, dst)| f(s, i, dst, false));
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
    match path.direct(g).filter(|_| all_finite(w)) {
        Some(isa) => direct::input_grad(isa, g, gy, w),
        None => backward_input_gemm(gy, w, g),
    }
}

/// `dW = ∂⟨conv(x, W), gy⟩/∂W` on contiguous buffers; `dW` is `[o, c/groups, kh, kw]`.
fn backward_weight<T: Element>(gy: &[T], x: &[T], g: &Geom, path: Path) -> Vec<T> {
    if path.sparse(gy, x) {
        return sparse::weight_grad(g, gy, x);
    }
    // The direct kernel also multiplies the input by the zeros of the lanes past the output
    // width (`0·NaN`): a non-finite input takes the GEMM path.
    path.direct(g)
        .filter(|_| all_finite(x))
        .and_then(|isa| direct::weight_grad(isa, g, gy, x))
        .unwrap_or_else(|| backward_weight_gemm(gy, x, g))
}

/// Whether every element of `v` is finite (no NaN, no ±∞); on rayon in chunks of
/// [`crate::PAR_CHUNK`].
fn all_finite<T: Element>(v: &[T]) -> bool {
    v.par_chunks(crate::PAR_CHUNK).all(|c| c.iter().all(|e| e.is_finite()))
}

/// [`forward`] by im2col + GEMM.
fn forward_gemm<T: Element>(x: &[T], w: &[T], bias: Option<&[T]>, g: &Geom) -> Vec<T> {
    let (o, l, og, k) = (g.o, g.l(), g.og(), g.k());
    let mut y = vec![T::zero(); g.n * o * l];
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
        (0..items.div_ceil(per_run)).into_par_iter().map(|r| part(r * per_run..items.min((r + 1) * per_run))).collect();
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
        let mut cols = vec![T::zero(); g.n * rows * l];
        if !cols.is_empty() {
            let whole = |n0| Block { n0, images: 1, a0: 0, a1: g.oh };
            cols.par_chunks_mut(rows * l).enumerate().for_each(|(n, dst)| im2col_into(xs, &g, &whole(n), dst));
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
            dx.par_chunks_mut(image).enumerate().for_each(|(n, dst)| col2im_add(&cs[n * rows * l..], &g, &one, dst));
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
