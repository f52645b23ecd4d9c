//! How the GEMM path splits a convolution into chunks ([`Plan`], [`Block`]), its scratch
//! buffers, and the im2col / col2im of one block.

use super::geometry::Geom;
use crate::kernels::matmul::{gemm, par_gemm, Backend, MatRef};
use crate::Element;

/// Output positions a GEMM should have at least: images are batched into one GEMM until
/// their positions reach this, so that packing the weight is amortised.
pub(super) const GEMM_COLS: usize = 256;
/// Chunks of images needed to run the chunks in parallel; with fewer, the chunks run in turn
/// and each GEMM is split into row blocks instead.
pub(super) const MIN_CHUNKS: usize = 4;
/// Largest number of partial weight gradients (one per group of chunks) that are summed.
pub(super) const MAX_PARTIALS: usize = 8;
/// Largest column matrix built at once (elements): an image with more output positions is
/// cut into blocks of output rows, so that its columns stay in the L2 cache between im2col
/// and the GEMM. (Tiny under `cfg(test)`, so that the unit tests cross many block edges.)
pub(super) const COLS_BLOCK: usize = if cfg!(test) { 1 << 10 } else { 1 << 17 };

/// How a batch is processed; depends only on the shapes (never on the thread count).
#[derive(Clone, Copy, Debug)]
pub(super) struct Plan {
    /// Images per chunk (one GEMM per chunk, row block and group).
    pub(super) images: usize,
    /// Number of chunks, `⌈N / images⌉`.
    pub(super) chunks: usize,
    /// Output rows per row block (`OH` unless a chunk of one image has too many columns).
    pub(super) rows: usize,
    /// Chunks in parallel with single-threaded GEMMs (true), or in turn with split GEMMs.
    pub(super) by_chunk: bool,
}

/// One piece of work: output rows `a0..a1` of images `n0..n0 + images`. Its column matrix is
/// `[C·kh·kw, images·(a1 − a0)·OW]`, column `(image, a − a0, b)`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Block {
    pub(super) n0: usize,
    pub(super) images: usize,
    pub(super) a0: usize,
    pub(super) a1: usize,
}

impl Block {
    /// The block's output positions within one image's `0..OH·OW`.
    pub(super) fn positions(&self, ow: usize) -> std::ops::Range<usize> {
        self.a0 * ow..self.a1 * ow
    }
    /// Columns of the block's matrices.
    pub(super) fn width(&self, ow: usize) -> usize {
        self.images * (self.a1 - self.a0) * ow
    }
}

impl Plan {
    pub(super) fn new(g: &Geom) -> Plan {
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
    pub(super) fn blocks(&self, i: usize, g: &Geom) -> impl Iterator<Item = Block> {
        let (n0, oh, rows) = (i * self.images, g.oh, self.rows);
        let images = self.images.min(g.n - n0);
        (0..oh).step_by(rows).map(move |a0| Block { n0, images, a0, a1: (a0 + rows).min(oh) })
    }
}

/// Per-thread buffers reused across the chunks a rayon job processes.
pub(super) struct Scratch<T> {
    pub(super) cols: Vec<T>,
    pub(super) gathered: Vec<T>,
    pub(super) tmp: Vec<T>,
}

impl<T> Scratch<T> {
    pub(super) fn new() -> Self {
        Scratch { cols: Vec::new(), gathered: Vec::new(), tmp: Vec::new() }
    }
}

/// The first `len` elements of `v`, growing it with zeros when shorter.
pub(super) fn sized<T: Element>(v: &mut Vec<T>, len: usize) -> &mut [T] {
    if v.len() < len {
        v.resize(len, T::zero());
    }
    &mut v[..len]
}

/// Rows `r0..r0 + rows` of a matrix (no copy).
pub(super) fn sub_rows<T>(m: MatRef<'_, T>, r0: usize, rows: usize) -> MatRef<'_, T> {
    MatRef { offset: (m.offset as isize + r0 as isize * m.rs) as usize, rows, ..m }
}

/// The block's part of a contiguous `[N, R, L]` buffer as the `[R, width]` matrix whose column
/// `(image, pos)` holds `data[n0 + image, r, positions[pos]]`: a strided view when the block
/// has one image or `L = 1`, otherwise gathered into `scratch`.
pub(super) fn channel_matrix<'a, T: Element>(
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
pub(super) fn rows_per_block(m: usize, k: usize, n: usize) -> usize {
    let blocks = (m.saturating_mul(k).saturating_mul(n) >> 22).clamp(1, 4);
    m.div_ceil(blocks).next_multiple_of(16)
}

/// `C ← A·B + β·C` with `C` row-major at the start of `c` with row stride `ldc`. With
/// `split` the product runs on several threads: [`par_gemm`] (the packed GEMM cuts any shape;
/// `matrixmultiply` cuts a wide product in column blocks), or, for a tall product on
/// `matrixmultiply`, row blocks whose sizes depend only on the shape. Splitting never changes
/// the bits: every element is computed from the same packed k-panels in the same order
/// whichever call computes it (the determinism test checks this end to end).
pub(super) fn gemm_rows<T: Element>(a: MatRef<T>, b: MatRef<T>, beta: T, c: &mut [T], ldc: usize, split: bool) {
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
    crate::par::chunks_mut(c, rows * ldc, &|i, block| {
        let height = (block.len() - n) / ldc + 1;
        gemm(T::one(), sub_rows(a, i * rows, height), b, beta, block, 0, ldc);
    });
}

/// `D ← A·X + β·D` where `D` is channel rows `r0..r0 + A.rows` and the block's positions of
/// the images of a contiguous `[b, R, L]` buffer `dst`, seen as the matrix of
/// [`channel_matrix`]. Writes in place when the block has one image, or `L = 1` and not
/// `split` (then as `Dᵀ = Xᵀ·Aᵀ`), otherwise through `tmp`.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_into_planes<T: Element>(
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
pub(super) struct Segments {
    /// Per kernel row i: the output rows `lo..hi` whose input row `a·sh + i·dh − ph` is real,
    /// and the input row of output row 0 (may be negative).
    pub(super) rows: Vec<(usize, usize, isize)>,
    /// Per kernel column j: the output columns `lo..hi` whose input column is real, and the
    /// input column of output column `lo` (only meaningful when `lo < hi`).
    pub(super) cols: Vec<(usize, usize, usize)>,
}

impl Segments {
    pub(super) fn new(g: &Geom) -> Segments {
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
    pub(super) fn for_each(&self, g: &Geom, blk: &Block, mut f: impl FnMut(Option<usize>, usize, usize)) {
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
pub(super) fn copy_run<T: Copy>(dst: &mut [T], src: &[T]) {
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
pub(super) fn im2col_into<T: Element>(x: &[T], g: &Geom, blk: &Block, cols: &mut [T]) {
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
pub(super) fn col2im_add<T: Element>(cols: &[T], g: &Geom, blk: &Block, dx: &mut [T]) {
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
pub(super) fn columns<'a, T: Element>(x: &'a [T], g: &Geom, blk: &Block, scratch: &'a mut Vec<T>) -> MatRef<'a, T> {
    if let Some(rows) = g.identity_columns() {
        return channel_matrix(x, (rows, g.l()), blk, g.ow, scratch);
    }
    let rows = g.c * g.kh * g.kw;
    let buf = sized(scratch, rows * blk.width(g.ow));
    im2col_into(x, g, blk, buf);
    MatRef::row_major(buf, 0, rows, blk.width(g.ow))
}
