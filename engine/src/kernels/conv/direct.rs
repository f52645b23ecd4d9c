//! Direct kernels for stride-1 convolutions: no column matrix and no packing, the input is read
//! in place from a zero-padded copy of its planes.
//!
//! ## The flattened layout
//! A stride-1 correlation `y[o, a, b] = Σ_{c, i, j} s[c, a + i·dh, b + j·dw] · w[o, c, i, j]`
//! over planes of width `P` (the padded source, `P = OW + dw·(kw − 1)`) is, with the output
//! position flattened as `q = a·P + b`, a sum of *shifted copies* of the source:
//!
//! ```text
//! y[o, q] = Σ_t w[o, t] · s[q + off_t],      off_(c, i, j) = c·rows·P + i·dh·P + j·dw
//! ```
//!
//! Consecutive `q` read consecutive elements for every tap `t`, so a vector of output
//! positions is one unaligned load per tap. Positions with `b ≥ OW` are computed too and
//! dropped (the lanes wasted are `(P − OW)/P`), and a vector that straddles a row end is
//! stored in pieces. Where `OW` is a multiple of the vector width the **row layout** is
//! taken instead when it costs less ([`Tiling`]): every vector holds `LANES` positions of one
//! row (a tile takes consecutive vectors of a row, or stacks rows when a row is one vector),
//! nothing is wasted and tiles are stored from the registers straight to the output. On a
//! Zen 3 core the CSC layer's 3 → 64 convolution went from 7.1 to 3.8 ms and LeNet's second
//! from 4.5 to 2.5 ms (best of 3 alternated runs, 2026-12-07). Three kernels are built on this:
//!
//! * **forward** (`nn_tile`): a tile of `MO` output channels × `NQ` vectors of positions is
//!   accumulated in registers over all taps — each output element is `init[o]` plus its taps in
//!   `(c, i, j)` order, one fused multiply-add each, whatever the tile or vector width;
//! * **input gradient**: the same kernel on the output gradient, with the kernel flipped and
//!   the channel axes swapped (the adjoint of a stride-1 correlation is a correlation);
//! * **weight gradient** (`nt_tile`): `dW[o, t] = Σ_q g[o, q] · s[q + off_t]`, a tile of `MO`
//!   channels × `NR` taps, vectorised along `q` (`g` is the output gradient laid out with pitch
//!   `P` and zeros at `b ≥ OW`), keeping one partial sum per lane. The batch is cut into at
//!   most [`MAX_RUNS`] runs of consecutive work items fixed by the shapes; a run adds its items
//!   into its lane sums in order and reduces the lanes in a fixed tree; the runs are added in
//!   order. The result is therefore bit-identical for any number of threads (it depends on the
//!   vector width, i.e. on the instruction set).
//!
//! Work items are whole images, or blocks of output rows when the batch is small; the forward
//! and input-gradient results do not depend on the split at all.

use std::any::TypeId;
use std::ops::Range;

use super::Geom;
use crate::kernels::simd::{HasVectors, Isa, Vector};
use crate::kernels::SendPtr;
use crate::Element;

/// A stride-1 correlation of a source `s [n, cs, hs, ws]` into `y [n, od, oh, ow]`:
///
/// ```text
/// y[n, o, a, b] = init[o] + Σ_{c < cs/G, i < kh, j < kw} s[n, g·cs/G + c, a + i·dh − pt, b + j·dw − pl] · w(o, (c, i, j))
/// ```
///
/// with `g = o / (od/G)` and `s` zero outside its planes.
#[derive(Clone, Copy, Debug)]
pub(super) struct Corr {
    n: usize,
    cs: usize,
    hs: usize,
    ws: usize,
    od: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
    dh: usize,
    dw: usize,
    pt: isize,
    pl: isize,
    groups: usize,
}

impl Corr {
    /// `conv2d`: the source is the input, placed at the padding.
    fn forward(g: &Geom) -> Corr {
        let ([ph, pw], [dh, dw]) = (g.p.padding, g.p.dilation);
        Corr {
            n: g.n,
            cs: g.c,
            hs: g.h,
            ws: g.w,
            od: g.o,
            oh: g.oh,
            ow: g.ow,
            kh: g.kh,
            kw: g.kw,
            dh,
            dw,
            pt: ph as isize,
            pl: pw as isize,
            groups: g.p.groups,
        }
    }

    /// The input gradient of `conv2d`: `dx[c, h, w] = Σ_{o, i, j} gy[o, h + ph − i·dh, w + pw − j·dw]
    /// · W[o, c, i, j]`, a correlation of `gy` with the flipped kernel (tap `(i', j')` =
    /// `(kh − 1 − i, kw − 1 − j)`) placed at `dh·(kh − 1) − ph` rows and `dw·(kw − 1) − pw`
    /// columns (negative: the first rows and columns of `gy` are cut).
    fn input_grad(g: &Geom) -> Corr {
        let ([ph, pw], [dh, dw]) = (g.p.padding, g.p.dilation);
        Corr {
            n: g.n,
            cs: g.o,
            hs: g.oh,
            ws: g.ow,
            od: g.c,
            oh: g.h,
            ow: g.w,
            kh: g.kh,
            kw: g.kw,
            dh,
            dw,
            pt: (dh * (g.kh - 1)) as isize - ph as isize,
            pl: (dw * (g.kw - 1)) as isize - pw as isize,
            groups: g.p.groups,
        }
    }

    /// Source channels per group.
    fn cg(&self) -> usize {
        self.cs / self.groups
    }
    /// Output channels per group.
    fn og(&self) -> usize {
        self.od / self.groups
    }
    /// Taps per output channel, `cg·kh·kw`.
    fn k(&self) -> usize {
        self.cg() * self.kh * self.kw
    }
    /// Width of a buffer row: the output width plus the kernel's extent.
    fn pitch(&self) -> usize {
        self.ow + self.dw * (self.kw - 1)
    }
    /// Buffer rows beyond a block's output rows.
    fn ext(&self) -> usize {
        self.dh * (self.kh - 1)
    }
    /// Output rows per work item: whole images when the batch gives at least [`MIN_ITEMS`]
    /// items, otherwise row blocks, and few enough rows that an item's buffer stays below
    /// [`ITEM_BUFFER`] elements. Depends only on the shapes.
    fn rows_per_item(&self) -> usize {
        let blocks = MIN_ITEMS.div_ceil(self.n.max(1)).min(self.oh);
        let rows = self.oh.div_ceil(blocks.max(1));
        let cap = (ITEM_BUFFER / (self.cs * self.pitch()).max(1)).saturating_sub(self.ext()).max(1);
        rows.min(cap).max(1)
    }
    /// The work items `(image, first output row, end row)`, in order.
    fn items(&self) -> Vec<(usize, usize, usize)> {
        let rows = self.rows_per_item();
        (0..self.n).flat_map(|n| (0..self.oh).step_by(rows).map(move |a0| (n, a0, (a0 + rows).min(self.oh)))).collect()
    }
    /// Elements of an item's source buffer: `cs` planes of `rows + ext` rows, then slack for
    /// the last vector's reads past the last plane.
    fn buffer_len(&self, rows: usize, lanes: usize) -> usize {
        self.cs * (rows + self.ext()) * self.pitch() + self.dw * (self.kw - 1) + lanes
    }
}

/// Work items wanted before images are cut into row blocks.
const MIN_ITEMS: usize = 8;
/// Largest source buffer of one work item (elements). (Small under `cfg(test)`, so that the
/// unit tests cut images into row blocks.)
const ITEM_BUFFER: usize = if cfg!(test) { 1 << 9 } else { 1 << 20 };
/// Largest number of runs (partial weight gradients) the batch is cut into.
const MAX_RUNS: usize = 8;
/// Largest per-run lane-sum buffer of the weight gradient (bytes); larger problems use GEMM.
const MAX_LANE_SUMS: usize = 32 << 20;

/// Whether the direct kernels can compute convolutions of this geometry: stride 1 and
/// nothing empty.
pub(super) fn supports(g: &Geom) -> bool {
    g.p.stride == [1, 1] && ![g.n, g.c, g.o, g.oh, g.ow, g.h, g.w].contains(&0)
}

/// Whether they are expected to beat im2col + GEMM: not a case the GEMM path does without
/// im2col (a 1×1 kernel, or one covering the input), and at least half of the vector lanes
/// holding real output positions.
pub(super) fn worthwhile(g: &Geom, isa: Isa) -> bool {
    if g.identity_columns().is_some() {
        return false;
    }
    let c = Corr::forward(g);
    let rows = c.rows_per_item();
    let computed = (rows * c.pitch()).next_multiple_of(isa.lanes::<f32>());
    2 * rows * c.ow >= computed
}

/// Whether the direct input gradient of a geometry [`worthwhile`] accepts is expected to beat
/// GEMM + col2im as well: at least half of its multiply-adds must meet a real element of `gy`. It
/// correlates `gy` padded by the kernel's extent, so a small unpadded ("valid") convolution
/// multiplies mostly padding: LeNet's second convolution (8×8 outputs, 5×5 kernel) computes
/// 192 positions × 1,250 taps per channel for 64 × 25 × 50 real products, a third of them, and
/// took 7.5–9.8 ms against 3.8–5.3 ms by GEMM (Zen 3, one core, 2026-12-07).
pub(super) fn input_grad_worthwhile(g: &Geom, isa: Isa) -> bool {
    let c = Corr::input_grad(g);
    let rows = c.rows_per_item();
    let items = c.oh.div_ceil(rows);
    let positions = items * (rows * c.pitch()).next_multiple_of(isa.lanes::<f32>());
    // Per image and input channel: computed = positions × taps, real = the forward's products.
    let computed = positions * c.k();
    let real = g.oh * g.ow * g.og() * g.kh * g.kw;
    2 * real >= computed
}

/// A 64-byte aligned scratch buffer, grown on demand.
struct Buf<F> {
    v: Vec<F>,
}

impl<F: Element> Buf<F> {
    fn new() -> Self {
        Buf { v: Vec::new() }
    }
    /// `len` elements starting at a 64-byte boundary; their contents are whatever the last
    /// user left (callers write before they read).
    fn get(&mut self, len: usize) -> &mut [F] {
        let pad = 64 / std::mem::size_of::<F>();
        if self.v.len() < len + pad {
            self.v = crate::filled(len + pad, F::zero());
        }
        let skew = (self.v.as_ptr() as usize % 64) / std::mem::size_of::<F>();
        let off = (pad - skew) % pad;
        &mut self.v[off..off + len]
    }
}

/// Per-thread buffers.
struct Scratch<F> {
    src: Buf<F>,
    grad: Buf<F>,
    tile: Buf<F>,
    offs: Vec<usize>,
    runs: Vec<Run>,
}

/// A run of real output positions in a tile: `len` consecutive positions from the tile's
/// offset `at`, which go to `y_plane + y ..` (one output row, columns `b < ow`).
#[derive(Clone, Copy, Debug)]
struct Run {
    at: usize,
    len: usize,
    y: usize,
}

impl<F: Element> Scratch<F> {
    fn new() -> Self {
        Scratch { src: Buf::new(), grad: Buf::new(), tile: Buf::new(), offs: Vec::new(), runs: Vec::new() }
    }
}

/// Writes source rows `r0 .. r0 + rows` (buffer coordinates) of one image's planes `img`
/// (`[cs, hs, ws]`) into `buf`: channel `c` at `c·cstride` as `[rows][pitch]`, element
/// `(c, r, v)` = `img[c, r0 + r − pt, v − pl]` or 0 outside the image. Other elements of `buf`
/// are not touched.
fn fill_planes<F: Element>(buf: &mut [F], cstride: usize, img: &[F], c: &Corr, r0: usize, rows: usize) {
    let (p, hs, ws) = (c.pitch(), c.hs, c.ws);
    let lo = c.pl.clamp(0, p as isize) as usize;
    let hi = (c.pl + ws as isize).clamp(lo as isize, p as isize) as usize;
    let s0 = (lo as isize - c.pl) as usize;
    for ch in 0..c.cs {
        let src = &img[ch * hs * ws..][..hs * ws];
        let planes = &mut buf[ch * cstride..][..rows * p];
        for (r, row) in planes.chunks_exact_mut(p).enumerate() {
            let u = (r0 + r) as isize - c.pt;
            if u < 0 || u >= hs as isize {
                row.fill(F::zero());
                continue;
            }
            let srow = &src[u as usize * ws..][..ws];
            row[..lo].fill(F::zero());
            row[lo..hi].copy_from_slice(&srow[s0..s0 + (hi - lo)]);
            row[hi..].fill(F::zero());
        }
    }
}

/// Tap offsets `c·cstride + i·dh·pitch + j·dw` of one group (channel `c` of the group at
/// `c·cstride`), `(c, i, j)` in row-major order, padded with zeros (harmless reads) to `len`
/// entries.
fn tap_offsets(offs: &mut Vec<usize>, c: &Corr, cstride: usize, len: usize) {
    offs.clear();
    for ch in 0..c.cg() {
        for i in 0..c.kh {
            for j in 0..c.kw {
                offs.push(ch * cstride + i * c.dh * c.pitch() + j * c.dw);
            }
        }
    }
    offs.resize(len.max(offs.len()), 0);
}

// ------------------------------------------------------------------------------ tile kernels

/// `MO` output channels × `NQ` vectors of positions, vector `nq` starting at `x + nq·xs` (a
/// group's buffer, offset to the tile's first position; `xs` is one vector, or one buffer row
/// when the tile stacks rows): `out[mo·ld + nq·LANES + l] = init[mo] + Σ_t w[t·MO + mo] ·
/// x[offs[t] + nq·xs + l]`, taps in order, one fused multiply-add each.
///
/// Registers: `MO·NQ` sums, plus a tap's `NQ` source vectors and two broadcast weights when
/// they fit (`MO·NQ + NQ + 2` registers), otherwise its `MO` broadcast weights and one source
/// vector ([`nn_tile_fits`]).
///
/// # Safety
/// `x + offs[t] + nq·xs .. + LANES` readable for every tap and vector, `w` holds `offs.len()·MO`
/// values, `init` `MO`, `out` rows `mo·ld .. mo·ld + NQ·LANES` writable; the vector's
/// instruction set enabled.
#[inline(always)]
unsafe fn nn_tile<F: Copy, S: Vector<F>, const MO: usize, const NQ: usize>(
    x: *const F,
    xs: usize,
    offs: &[usize],
    w: *const F,
    init: *const F,
    out: *mut F,
    ld: usize,
) {
    let mut acc = [[S::zero(); NQ]; MO];
    for (mo, row) in acc.iter_mut().enumerate() {
        *row = [S::splat(*init.add(mo)); NQ];
    }
    let mut w = w;
    for &off in offs {
        let xp = x.add(off);
        if sources_fit(MO, NQ, S::REGISTERS) {
            let mut xv = [S::zero(); NQ];
            for (nq, v) in xv.iter_mut().enumerate() {
                *v = S::load(xp.add(nq * xs));
            }
            for (mo, row) in acc.iter_mut().enumerate() {
                let wv = S::splat(*w.add(mo));
                for (a, &v) in row.iter_mut().zip(&xv) {
                    *a = S::fma(wv, v, *a);
                }
            }
        } else {
            let mut wv = [S::zero(); MO];
            for (mo, v) in wv.iter_mut().enumerate() {
                *v = S::splat(*w.add(mo));
            }
            for nq in 0..NQ {
                let xv = S::load(xp.add(nq * xs));
                for (row, &wm) in acc.iter_mut().zip(&wv) {
                    row[nq] = S::fma(wm, xv, row[nq]);
                }
            }
        }
        w = w.add(MO);
    }
    for (mo, row) in acc.iter().enumerate() {
        for (nq, v) in row.iter().enumerate() {
            v.store(out.add(mo * ld + nq * S::LANES));
        }
    }
}

// ------------------------------------------------------------------------------ tile shapes

/// Forward tiles `(MO, NQ, relative speed)` per instruction set: every one fits the registers
/// by [`nn_tile_fits`]; speeds from single-core measurements on the LeNet, CSC and CIFAR shapes.
const NN_TILES_512: [(usize, usize, f64); 6] =
    [(6, 4, 1.0), (5, 4, 0.95), (4, 6, 0.95), (3, 8, 0.85), (2, 12, 0.7), (1, 16, 0.5)];
/// AVX2 (16 registers). Speeds per padded channel on the CIFAR shape (64 → 64 channels, 3×3,
/// 32×32, one Zen 3 core, 2026-12-07). `(4, 3)`, the old first entry, does not fit: LLVM kept
/// one of its 12 sums on the stack and the store-to-load chain halved the speed (125 against
/// 67 ms for this shape's forward).
const NN_TILES_256: [(usize, usize, f64); 7] =
    [(3, 4, 1.0), (6, 2, 1.0), (5, 2, 0.95), (3, 3, 0.93), (4, 2, 0.91), (2, 6, 0.87), (1, 12, 0.6)];

/// Whether the forward tile `MO × NQ` keeps its sums in `registers` vector registers with
/// [`nn_tile`]'s register plan: `MO·NQ` sums plus `NQ` source vectors plus **two** broadcast
/// weights (LLVM loads the next weight while the current one is in use), or, in the other
/// form, `MO·NQ` sums plus `MO` weights plus one source vector. The form `nn_tile` takes for
/// a tile is the first one whenever this rule accepts it.
const fn nn_tile_fits(mo: usize, nq: usize, registers: usize) -> bool {
    sources_fit(mo, nq, registers) || mo * nq + mo < registers
}

/// Whether [`nn_tile`] keeps a tap's `NQ` source vectors in registers (its first form).
const fn sources_fit(mo: usize, nq: usize, registers: usize) -> bool {
    mo * nq + nq + 2 <= registers
}

/// Whether every tile of `table` fits `registers` ([`nn_tile_fits`]).
const fn all_fit(table: &[(usize, usize, f64)], registers: usize) -> bool {
    let mut i = 0;
    while i < table.len() {
        if !nn_tile_fits(table[i].0, table[i].1, registers) {
            return false;
        }
        i += 1;
    }
    true
}

// Every tile of both tables fits, checked when the crate compiles.
const _: () = assert!(all_fit(&NN_TILES_512, 32) && all_fit(&NN_TILES_256, 16));
/// Weight-gradient tiles `(MO, NR, relative speed)` (registers `MO·NR + MO + 1`).
const NT_TILES_512: [(usize, usize, f64); 6] =
    [(6, 3, 1.0), (3, 9, 0.97), (5, 5, 0.95), (4, 5, 0.95), (2, 9, 0.8), (1, 9, 0.5)];
const NT_TILES_256: [(usize, usize, f64); 5] = [(3, 3, 1.0), (2, 5, 1.0), (4, 2, 0.95), (2, 4, 0.95), (1, 5, 0.6)];

/// Relative cost of a position vector computed by a single-vector tail tile (1 source load
/// per `MO` multiply-adds instead of per `MO·NQ`).
const TAIL_COST: usize = 3;

/// The forward tiles of `isa`.
fn nn_tiles(isa: Isa) -> &'static [(usize, usize, f64)] {
    match isa {
        Isa::Avx512 => &NN_TILES_512,
        Isa::Avx2 => &NN_TILES_256,
        Isa::Generic => unreachable!("direct kernels need vectors"),
    }
}

/// A forward tile `mo × nq` and the layout of its position vectors: the flattened layout
/// (`rows = false`, vectors run across row ends and compute the padding columns too; results go
/// through the tile buffer, run by run) or the row layout (`rows = true`, only where `ow` is a
/// multiple of the vector width: vectors hold the positions of one row each, stored straight
/// to `y`; [`nn_by_rows`]). Every output element gets the same taps in the same order in both.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Tiling {
    mo: usize,
    nq: usize,
    rows: bool,
}

/// The forward tiling with the least work for `c` at `lanes` lanes: over both layouts and
/// every tile, `⌈og/MO⌉·MO / speed · (vectors in full tiles + TAIL_COST · single vectors)` per
/// item, the row layout preferred on a tie (it stores no padding columns and no partial
/// vectors).
fn nn_tiling(isa: Isa, c: &Corr, lanes: usize) -> Tiling {
    let (og, rows) = (c.og(), c.rows_per_item());
    let nvq = (rows * c.pitch()).div_ceil(lanes);
    let vectors = |units: usize, nq: usize| units / nq * nq + TAIL_COST * (units % nq);
    let mut best = (f64::INFINITY, Tiling { mo: 1, nq: 1, rows: false });
    for &(mo, nq, speed) in nn_tiles(isa) {
        let per_vector = og.next_multiple_of(mo) as f64 / speed;
        if c.ow % lanes == 0 {
            let vpr = c.ow / lanes;
            let v = if vpr == 1 { vectors(rows, nq) } else { rows * vectors(vpr, nq) };
            let cost = per_vector * v as f64;
            if cost <= best.0 {
                best = (cost, Tiling { mo, nq, rows: true });
            }
        }
        let cost = per_vector * vectors(nvq, nq) as f64;
        if cost < best.0 {
            best = (cost, Tiling { mo, nq, rows: false });
        }
    }
    best.1
}

/// The weight-gradient tiles of `isa`.
fn nt_tiles(isa: Isa) -> &'static [(usize, usize, f64)] {
    match isa {
        Isa::Avx512 => &NT_TILES_512,
        Isa::Avx2 => &NT_TILES_256,
        Isa::Generic => unreachable!("direct kernels need vectors"),
    }
}

/// The weight-gradient tile with the least padded work `⌈og/MO⌉·MO · ⌈k/NR⌉·NR / speed`.
fn nt_tile_shape(isa: Isa, og: usize, k: usize) -> (usize, usize) {
    let tiles = nt_tiles(isa);
    let cost =
        |&(mo, nr, speed): &(usize, usize, f64)| (og.next_multiple_of(mo) * k.next_multiple_of(nr)) as f64 / speed;
    let best = tiles.iter().min_by(|a, b| cost(a).total_cmp(&cost(b))).expect("a tile");
    (best.0, best.1)
}

// ------------------------------------------------------------------------------ forward-type

/// Everything a forward-type work item needs.
struct NnJob<'a, F> {
    c: Corr,
    src: &'a [F],
    /// Weights packed per group and block of `mo` output channels as `[k][mo]`, zero for the
    /// padding channels of the last block.
    w: &'a [F],
    /// Initial values (bias or zero) per group and block, `[mo]`.
    init: &'a [F],
    mo: usize,
    nq: usize,
    /// Row layout ([`Tiling::rows`]).
    rows: bool,
    y: SendPtr<F>,
}

/// One forward-type work item: output rows `a0..a1` of image `n`, every channel.
///
/// # Safety
/// The vector's instruction set enabled; `job.y` holds `[n, od, oh, ow]` and no other item
/// writes these rows.
#[inline(always)]
unsafe fn nn_item<F: Element, S: Vector<F>>(job: &NnJob<F>, (n, a0, a1): (usize, usize, usize), s: &mut Scratch<F>) {
    let c = &job.c;
    let (rows, p) = (a1 - a0 + c.ext(), c.pitch());
    let plane = rows * p;
    let image = c.cs * c.hs * c.ws;
    let Scratch { src, tile, offs, runs, .. } = s;
    let xb = src.get(c.buffer_len(a1 - a0, S::LANES));
    fill_planes(xb, plane, &job.src[n * image..][..image], c, a0, rows);
    xb[c.cs * plane..].fill(F::zero());
    tap_offsets(offs, c, plane, c.k());
    macro_rules! tiles {
        ($($mo:literal, $nq:literal);*) => {
            match (job.mo, job.nq) {
                $(($mo, $nq) if job.rows => nn_by_rows::<F, S, $mo, $nq>(job, xb, n, (a0, a1), tile, offs),
                  ($mo, $nq) => nn_flat::<F, S, $mo, $nq>(job, xb, n, (a0, a1), tile, offs, runs),)*
                other => unreachable!("no forward tile {other:?}"),
            }
        };
    }
    match S::LANES * std::mem::size_of::<F>() {
        64 => tiles!(6, 4; 5, 4; 4, 6; 3, 8; 2, 12; 1, 16),
        _ => tiles!(3, 4; 6, 2; 5, 2; 3, 3; 4, 2; 2, 6; 1, 12),
    }
}

/// The tiles of one forward-type item in the flattened layout: full tiles of `NQ` vectors,
/// then single vectors up to the last position; each tile's real positions are stored to `y`
/// run by run ([`store_runs`]).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn nn_flat<F: Element, S: Vector<F>, const MO: usize, const NQ: usize>(
    job: &NnJob<F>,
    xb: &[F],
    n: usize,
    (a0, a1): (usize, usize),
    tile: &mut Buf<F>,
    offs: &[usize],
    runs: &mut Vec<Run>,
) {
    let c = &job.c;
    let (v, p, k, og) = (S::LANES, c.pitch(), c.k(), c.og());
    let plane = (a1 - a0 + c.ext()) * p;
    let q = (a1 - a0) * p;
    let qr = q.next_multiple_of(v);
    let (tq, nob) = (NQ * v, og.div_ceil(MO));
    let tile = tile.get(MO * tq).as_mut_ptr();
    let offs = &offs[..k];
    let y = job.y.get();
    let mut q0 = 0;
    while q0 < qr {
        let width = if q0 + tq <= qr { tq } else { v };
        // The real positions of the tile: runs within one row with b < ow.
        runs.clear();
        let mut pos = q0;
        let end = (q0 + width).min(q);
        while pos < end {
            let (a, b) = (pos / p, pos % p);
            let row_end = (pos - b + p).min(end);
            if b < c.ow {
                let e = row_end.min(pos - b + c.ow);
                runs.push(Run { at: pos - q0, len: e - pos, y: (a0 + a) * c.ow + b });
            }
            pos = row_end;
        }
        for grp in 0..c.groups {
            let xg = xb.as_ptr().add(grp * c.cg() * plane + q0);
            for ob in 0..nob {
                let blk = grp * nob + ob;
                let (w, init) = (job.w.as_ptr().add(blk * k * MO), job.init.as_ptr().add(blk * MO));
                if width == tq {
                    nn_tile::<F, S, MO, NQ>(xg, v, offs, w, init, tile, tq);
                } else {
                    nn_tile::<F, S, MO, 1>(xg, v, offs, w, init, tile, tq);
                }
                for mo in 0..MO.min(og - ob * MO) {
                    let yo = y.add((n * c.od + grp * og + ob * MO + mo) * c.oh * c.ow);
                    store_runs::<F, S>(tile.add(mo * tq), runs, yo);
                }
            }
        }
        q0 += width;
    }
}

/// The tiles of one forward-type item in the row layout (`ow` a multiple of the vector width,
/// so every vector holds real positions only): with one vector per output row a tile stacks
/// `NQ` rows, otherwise it takes `NQ` consecutive vectors of one row; single-vector tiles finish
/// what is left. A tile's `NQ` vectors are consecutive in `y` either way ([`nn_row_tile`]).
#[inline(always)]
unsafe fn nn_by_rows<F: Element, S: Vector<F>, const MO: usize, const NQ: usize>(
    job: &NnJob<F>,
    xb: &[F],
    n: usize,
    (a0, a1): (usize, usize),
    tile: &mut Buf<F>,
    offs: &[usize],
) {
    let c = &job.c;
    let (v, p) = (S::LANES, c.pitch());
    let (rows, vpr) = (a1 - a0, c.ow / v);
    let item = RowItem { x: xb.as_ptr(), plane: (rows + c.ext()) * p, n, tile: tile.get(MO * NQ * v).as_mut_ptr() };
    let offs = &offs[..job.c.k()];
    // No closures here: a closure would not inherit the caller's target features.
    if vpr == 1 {
        // Tiles of NQ rows; a source vector's stride is one buffer row.
        let mut r = 0;
        while r + NQ <= rows {
            nn_row_tile::<F, S, MO, NQ>(job, &item, offs, p, r * p, (a0 + r) * c.ow);
            r += NQ;
        }
        for r in r..rows {
            nn_row_tile::<F, S, MO, 1>(job, &item, offs, p, r * p, (a0 + r) * c.ow);
        }
    } else {
        for r in 0..rows {
            let mut j = 0;
            while j + NQ <= vpr {
                nn_row_tile::<F, S, MO, NQ>(job, &item, offs, v, r * p + j * v, (a0 + r) * c.ow + j * v);
                j += NQ;
            }
            for j in j..vpr {
                nn_row_tile::<F, S, MO, 1>(job, &item, offs, v, r * p + j * v, (a0 + r) * c.ow + j * v);
            }
        }
    }
}

/// What [`nn_row_tile`] needs of its item: the source buffer, the size of one channel's
/// planes in it, the image, and the tile buffer (`MO·NQ·LANES` elements).
struct RowItem<F> {
    x: *const F,
    plane: usize,
    n: usize,
    tile: *mut F,
}

/// One row-layout tile of `NQ` vectors, every group and channel block: source vector `nq` at
/// `src + nq·xs` in a group's buffer, results at `dst + nq·LANES` in each output plane. Full
/// channel blocks are stored from the registers straight to `y`, a partial last block through
/// the tile buffer.
///
/// # Safety
/// As for [`nn_item`]; the tile lies within the item's rows.
#[inline(always)]
unsafe fn nn_row_tile<F: Element, S: Vector<F>, const MO: usize, const NQ: usize>(
    job: &NnJob<F>,
    item: &RowItem<F>,
    offs: &[usize],
    xs: usize,
    src: usize,
    dst: usize,
) {
    let c = &job.c;
    let (v, k, og, ld) = (S::LANES, c.k(), c.og(), c.oh * c.ow);
    let (nob, tq) = (og.div_ceil(MO), NQ * v);
    let y = job.y.get();
    for grp in 0..c.groups {
        let xg = item.x.add(grp * c.cg() * item.plane + src);
        for ob in 0..nob {
            let blk = grp * nob + ob;
            let (w, init) = (job.w.as_ptr().add(blk * k * MO), job.init.as_ptr().add(blk * MO));
            let real = MO.min(og - ob * MO);
            let yb = y.add((item.n * c.od + grp * og + ob * MO) * ld + dst);
            if real == MO {
                nn_tile::<F, S, MO, NQ>(xg, xs, offs, w, init, yb, ld);
            } else {
                nn_tile::<F, S, MO, NQ>(xg, xs, offs, w, init, item.tile, tq);
                for mo in 0..real {
                    for j in 0..NQ {
                        S::load(item.tile.add(mo * tq + j * v)).store(yb.add(mo * ld + j * v));
                    }
                }
            }
        }
    }
}

/// Copies the runs of one tile row `t` (a channel's positions) to the output plane `yo`. A run
/// of at least one vector is stored whole vectors at a time, its last vector ending at the
/// run's end (overlapping the one before it, with the same values); a shorter run lane by lane
/// ([`Vector::store_lanes`]) from the vectors of `t` that hold it.
///
/// # Safety
/// `t` readable up to the vector holding the last run's end, `yo + run.y .. + run.len`
/// writable for every run; the vector's instruction set enabled.
#[inline(always)]
unsafe fn store_runs<F: Copy, S: Vector<F>>(t: *const F, runs: &[Run], yo: *mut F) {
    let v = S::LANES;
    for r in runs {
        let (src, dst) = (t.add(r.at), yo.add(r.y));
        if r.len >= v {
            let mut k = 0;
            while k + v < r.len {
                S::load(src.add(k)).store(dst.add(k));
                k += v;
            }
            S::load(src.add(r.len - v)).store(dst.add(r.len - v));
        } else {
            for first in (r.at / v * v..r.at + r.len).step_by(v) {
                let (lo, hi) = (r.at.max(first) - first, (r.at + r.len).min(first + v) - first);
                S::load(t.add(first)).store_lanes(dst.wrapping_offset(first as isize - r.at as isize), lo, hi);
            }
        }
    }
}

#[cfg(all(target_arch = "x86_64", sparsegrad_avx512))]
#[target_feature(enable = "avx512f,fma")]
unsafe fn nn_item_avx512<F: HasVectors>(job: &NnJob<F>, item: (usize, usize, usize), s: &mut Scratch<F>) {
    nn_item::<F, F::Z>(job, item, s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn nn_item_avx2<F: HasVectors>(job: &NnJob<F>, item: (usize, usize, usize), s: &mut Scratch<F>) {
    nn_item::<F, F::Y>(job, item, s)
}

/// Runs every item of `job` on rayon.
fn nn_run<F: HasVectors>(isa: Isa, job: &NnJob<F>) {
    let items = job.c.items();
    crate::par::range_with(items.len(), &Scratch::new, &|s, i| {
        let item = items[i];
        match isa {
            // SAFETY: `isa` was detected on this CPU; the items write disjoint rows of `y`.
            #[cfg(all(target_arch = "x86_64", sparsegrad_avx512))]
            Isa::Avx512 => unsafe { nn_item_avx512(job, item, s) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { nn_item_avx2(job, item, s) },
            #[allow(unreachable_patterns)]
            _ => unreachable!("direct kernels for {isa:?} are not compiled in"),
        }
    });
}

/// The correlation `c` of `src` with weights `wt(o, t)` (`t` the tap `(c, i, j)` of o's group)
/// plus `init[o]`, as a fresh `[n, od, oh, ow]` buffer.
fn correlate<T: Element>(isa: Isa, c: Corr, src: &[T], wt: impl Fn(usize, usize) -> T, init: Option<&[T]>) -> Vec<T> {
    correlate_tiled(isa, nn_tiling(isa, &c, isa.lanes::<T>()), c, src, wt, init)
}

/// [`correlate`] with the forward tiling `t` (a tile of `isa`'s table; the row layout only
/// where `c.ow` is a multiple of the vector width).
fn correlate_tiled<T: Element>(
    isa: Isa,
    t: Tiling,
    c: Corr,
    src: &[T],
    wt: impl Fn(usize, usize) -> T,
    init: Option<&[T]>,
) -> Vec<T> {
    assert!(!t.rows || c.ow % isa.lanes::<T>() == 0, "the row layout needs whole vectors per row");
    let (mo, nq) = (t.mo, t.nq);
    let (og, k) = (c.og(), c.k());
    let nob = og.div_ceil(mo);
    let mut w = vec![T::zero(); c.groups * nob * k * mo];
    let mut iv = vec![T::zero(); c.groups * nob * mo];
    for grp in 0..c.groups {
        for ob in 0..nob {
            let blk = grp * nob + ob;
            for m in 0..mo.min(og - ob * mo) {
                let o = grp * og + ob * mo + m;
                iv[blk * mo + m] = init.map_or(T::zero(), |b| b[o]);
                for t in 0..k {
                    w[(blk * k + t) * mo + m] = wt(o, t);
                }
            }
        }
    }
    // Every element is written exactly once by some item, so `y` starts uninitialised (the
    // length is set once all items have run).
    let len = c.n * c.od * c.oh * c.ow;
    let mut y: Vec<T> = crate::recycle::take(len);
    macro_rules! run {
        ($f:ty) => {{
            let job = NnJob::<$f> {
                c,
                src: cast(src),
                w: cast(&w),
                init: cast(&iv),
                mo,
                nq,
                rows: t.rows,
                y: SendPtr(y.as_mut_ptr().cast::<$f>()),
            };
            job
        }};
    }
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        nn_run_f32(isa, &run!(f32))
    } else {
        nn_run_f64(isa, &run!(f64))
    }
    // SAFETY: the items cover every (image, channel, row, column) of y once (`Corr::items`
    // tiles the rows of every image, `nn_flat` or `nn_by_rows` every position of a row block and every
    // channel).
    unsafe { y.set_len(len) };
    y
}

/// `conv2d` forward of a geometry [`applies`] accepts; `x` and `w` contiguous.
pub(super) fn forward<T: Element>(isa: Isa, g: &Geom, x: &[T], w: &[T], bias: Option<&[T]>) -> Vec<T> {
    let k = g.k();
    correlate(isa, Corr::forward(g), x, |o, t| w[o * k + t], bias)
}

/// `conv2d_backward_input` of a geometry [`applies`] accepts; `gy` and `w` contiguous.
pub(super) fn input_grad<T: Element>(isa: Isa, g: &Geom, gy: &[T], w: &[T]) -> Vec<T> {
    correlate(isa, Corr::input_grad(g), gy, flipped(g, w), None)
}

/// The input gradient's weights: for output channel `ch` (an input channel of the convolution,
/// group `ch / cg`) and tap `t` = (o', i', j') over the group's convolution outputs o',
/// `W[grp·og + o', ch − grp·cg, kh−1−i', kw−1−j']`.
fn flipped<'a, T: Element>(g: &Geom, w: &'a [T]) -> impl Fn(usize, usize) -> T + 'a {
    let (cg, og, kh, kw) = (g.cg(), g.og(), g.kh, g.kw);
    let kk = kh * kw;
    move |ch: usize, t: usize| {
        let (grp, o, ij) = (ch / cg, t / kk, t % kk);
        let (i, j) = (kh - 1 - ij / kw, kw - 1 - ij % kw);
        w[((grp * og + o) * cg + ch - grp * cg) * kk + i * kw + j]
    }
}

// ------------------------------------------------------------------------------ weight gradient

/// Everything a weight-gradient run needs.
struct NtJob<'a, F> {
    c: Corr,
    x: &'a [F],
    gy: &'a [F],
    mo: usize,
    nr: usize,
    /// Row layout: `ow` is a multiple of the vector width, and the tiles read `gy` in place,
    /// vector by vector of each output row ([`nt_tile`]).
    rows: bool,
}

/// A weight-gradient work item: output rows `a0..a1` of images `n0 .. n0 + imgs` (several
/// whole images, or one block of rows of one image).
#[derive(Clone, Copy, Debug)]
struct NtItem {
    n0: usize,
    imgs: usize,
    a0: usize,
    a1: usize,
}

impl<F> NtJob<'_, F> {
    /// Lane sums of a run: `[groups][⌈og/mo⌉][⌈k/nr⌉][mo][nr][lanes]`.
    fn lane_sums(&self, lanes: usize) -> usize {
        let c = &self.c;
        c.groups * c.og().next_multiple_of(self.mo) * c.k().next_multiple_of(self.nr) * lanes
    }
    /// Lane sums of the channel blocks `obs` (of every group): a task's part.
    fn lane_sums_of(&self, obs: &Range<usize>, lanes: usize) -> usize {
        self.c.groups * obs.len() * self.mo * self.c.k().next_multiple_of(self.nr) * lanes
    }
    /// Position vectors an item sums over (see [`nt_item`]).
    fn vectors(&self, it: &NtItem, lanes: usize) -> usize {
        let c = &self.c;
        if self.rows {
            return it.imgs * (it.a1 - it.a0) * c.ow / lanes;
        }
        let (is, q) = ((it.a1 - it.a0 + c.ext()) * c.pitch(), (it.a1 - it.a0) * c.pitch());
        ((it.imgs - 1) * is + q).div_ceil(lanes)
    }
    /// Gradient rows per image of an item: every group's channels padded to a multiple of `mo`.
    fn grad_rows(&self) -> usize {
        self.c.groups * self.c.og().next_multiple_of(self.mo)
    }
    /// The work items in order: row blocks of single images when the batch is small
    /// ([`Corr::rows_per_item`]), otherwise runs of whole images whose buffers take about
    /// [`NT_ITEM_BYTES`] (so that a tile sums over enough positions), at most
    /// `⌈n / MAX_RUNS⌉` images each. Depends only on the shapes.
    fn items(&self) -> Vec<NtItem> {
        let c = &self.c;
        let rows = c.rows_per_item();
        if rows < c.oh {
            return c.items().into_iter().map(|(n0, a0, a1)| NtItem { n0, imgs: 1, a0, a1 }).collect();
        }
        let is = (c.oh + c.ext()) * c.pitch();
        let per_image = (c.cs + self.grad_rows()) * is * std::mem::size_of::<F>();
        let imgs = (NT_ITEM_BYTES / per_image.max(1)).clamp(1, c.n.div_ceil(MAX_RUNS));
        (0..c.n).step_by(imgs).map(|n0| NtItem { n0, imgs: imgs.min(c.n - n0), a0: 0, a1: c.oh }).collect()
    }
}

/// Target size of a weight-gradient item's buffers (source planes and gradient rows).
const NT_ITEM_BYTES: usize = 256 << 10;

/// Adds one item to the lane sums `part`.
///
/// # Safety
/// The vector's instruction set enabled; `part` holds [`NtJob::lane_sums`] elements.
#[inline(always)]
unsafe fn nt_item<F: Element, S: Vector<F>>(
    job: &NtJob<F>,
    it: NtItem,
    obs: Range<usize>,
    s: &mut Scratch<F>,
    part: &mut [F],
) {
    let c = &job.c;
    let (v, p, og) = (S::LANES, c.pitch(), c.og());
    let (rows, q) = (it.a1 - it.a0 + c.ext(), (it.a1 - it.a0) * p);
    let (image, plane) = (c.cs * c.hs * c.ws, rows * p);
    let Scratch { src, grad, offs, .. } = s;
    // The images of the item one after the other at stride `is` inside every channel: source
    // planes [cs][imgs][rows][p], gradient rows [groups][og padded to mo][imgs][is] (pitch p,
    // zeros at b ≥ ow and in the rows below an image's outputs; the padding channels' rows are
    // not read). One
    // position index then runs through all images: x[c·cs_stride + m·is + q + off_ij] pairs
    // with g[o][m·is + q], and the buffers' slack is zero.
    let is = plane;
    let cstride = it.imgs * is;
    let nv = job.vectors(&it, v);
    let xb = src.get(c.cs * cstride + is + c.dw * (c.kw - 1) + v);
    for m in 0..it.imgs {
        fill_planes(&mut xb[m * is..], cstride, &job.x[(it.n0 + m) * image..][..image], c, it.a0, rows);
    }
    xb[c.cs * cstride..].fill(F::zero());
    tap_offsets(offs, c, cstride, c.k().next_multiple_of(job.nr));
    let (src, geom) = if job.rows {
        // Gradient rows read from `gy` in place: channel `o` of group `grp` of the item's first
        // image at `first + (grp·og + o)·plane`, its images `od·plane` apart.
        let plane = c.oh * c.ow;
        let first = (it.n0 * c.od * c.oh + it.a0) * c.ow;
        let src = NtSrc { g: job.gy.as_ptr().add(first), gstride: og, ostride: plane, cstride };
        (src, NtRowGeom { imgs: it.imgs, gimg: c.od * plane, is, rows: it.a1 - it.a0, ow: c.ow, pitch: p })
    } else {
        let ogp = og.next_multiple_of(job.mo);
        let gr = nv * v;
        let gw = grad.get(job.grad_rows() * gr);
        for (r, row) in gw.chunks_exact_mut(gr).enumerate() {
            // Rows of the padding channels and of other tasks' channel blocks are never read
            // (`nt_blocks` points a partial block's padding at its first channel).
            let (grp, o) = (r / ogp, r % ogp);
            if o >= og || !obs.contains(&(o / job.mo)) {
                continue;
            }
            row.fill(F::zero());
            for m in 0..it.imgs {
                let src = &job.gy[((it.n0 + m) * c.od + grp * og + o) * c.oh * c.ow..][..c.oh * c.ow];
                for (a, seg) in row[m * is..][..q].chunks_exact_mut(p).enumerate() {
                    seg[..c.ow].copy_from_slice(&src[(it.a0 + a) * c.ow..][..c.ow]);
                }
            }
        }
        // One "row" of `nv` vectors running through all the item's positions.
        let src = NtSrc { g: gw.as_ptr(), gstride: ogp, ostride: gr, cstride };
        (src, NtRowGeom { imgs: 1, gimg: 0, is: 0, rows: 1, ow: gr, pitch: 0 })
    };
    macro_rules! tiles {
        ($($mo:literal, $nr:literal);*) => {
            match (job.mo, job.nr) {
                $(($mo, $nr) => nt_blocks::<F, S, $mo, $nr>(job, xb, src, geom, offs, obs.clone(), part),)*
                other => unreachable!("no weight-gradient tile {other:?}"),
            }
        };
    }
    match S::LANES * std::mem::size_of::<F>() {
        64 => tiles!(6, 3; 3, 9; 5, 5; 4, 5; 2, 9; 1, 9),
        _ => tiles!(3, 3; 2, 5; 4, 2; 2, 4; 1, 5),
    }
}

/// Where an item's gradient rows and source planes lie: channel `o` of group `grp` at
/// `g + (grp·gstride + o)·ostride`, the source's channels `cstride` apart.
#[derive(Clone, Copy)]
struct NtSrc<F> {
    g: *const F,
    gstride: usize,
    ostride: usize,
    cstride: usize,
}

/// Every (group, channel block in `obs`, tap block) tile of one item. The padding channels of a last
/// partial block read the block's first channel again and taps past `k` read offset 0; both
/// land in lane sums that are dropped.
#[inline(always)]
unsafe fn nt_blocks<F: Element, S: Vector<F>, const MO: usize, const NR: usize>(
    job: &NtJob<F>,
    xb: &[F],
    src: NtSrc<F>,
    geom: NtRowGeom,
    offs: &[usize],
    obs: Range<usize>,
    part: &mut [F],
) {
    let c = &job.c;
    let og = c.og();
    // `part` holds the lane sums of the channel blocks `obs` only.
    let (nobs, ntb) = (obs.len(), c.k().div_ceil(NR));
    for grp in 0..c.groups {
        let xg = xb.as_ptr().add(grp * c.cg() * src.cstride);
        for ob in obs.clone() {
            let mut g = [src.g; MO];
            for (mo, r) in g.iter_mut().enumerate() {
                let o = if ob * MO + mo < og { ob * MO + mo } else { ob * MO };
                *r = src.g.add((grp * src.gstride + o) * src.ostride);
            }
            for tb in 0..ntb {
                let at = ((grp * nobs + ob - obs.start) * ntb + tb) * MO * NR * S::LANES;
                nt_tile::<F, S, MO, NR>(&g, xg, &offs[tb * NR..][..NR], geom, part.as_mut_ptr().add(at));
            }
        }
    }
}

/// The loop of a weight-gradient tile: `imgs` images (gradient planes `gimg` apart, source
/// images `is` apart), `rows` rows of `ow` positions each (source rows `pitch` apart). The row
/// layout walks `gy`'s output rows; the flattened layout is one row of `nv·LANES` positions
/// running through the item's padded planes.
#[derive(Clone, Copy)]
struct NtRowGeom {
    imgs: usize,
    gimg: usize,
    is: usize,
    rows: usize,
    ow: usize,
    pitch: usize,
}

/// `MO` gradient rows × `NR` taps: `part[(mo·NR + nr)·LANES + l] += Σ g[mo][m·gimg + a·ow + b]
/// · x[offs[nr] + m·is + a·pitch + b]` over images `m`, rows `a` and the columns `b ≡ l` (mod
/// LANES), in that order.
///
/// Registers: `MO·NR` sums, the `MO` gradient vectors of a position vector and one source
/// vector (every tile of the tables fits).
///
/// # Safety
/// Every address above readable, `part .. + MO·NR·LANES` readable and writable; the vector's
/// instruction set enabled.
#[inline(always)]
unsafe fn nt_tile<F: Copy, S: Vector<F>, const MO: usize, const NR: usize>(
    g: &[*const F; MO],
    x: *const F,
    offs: &[usize],
    d: NtRowGeom,
    part: *mut F,
) {
    let mut acc = [[S::zero(); NR]; MO];
    for m in 0..d.imgs {
        for a in 0..d.rows {
            let (qg, qx) = (m * d.gimg + a * d.ow, m * d.is + a * d.pitch);
            for b in (0..d.ow).step_by(S::LANES) {
                let mut gv = [S::zero(); MO];
                for (gm, &row) in gv.iter_mut().zip(g) {
                    *gm = S::load(row.add(qg + b));
                }
                for (nr, &off) in offs.iter().enumerate() {
                    let xv = S::load(x.add(off + qx + b));
                    for (row, &gm) in acc.iter_mut().zip(&gv) {
                        row[nr] = S::fma(gm, xv, row[nr]);
                    }
                }
            }
        }
    }
    for (mo, row) in acc.iter().enumerate() {
        for (nr, &a) in row.iter().enumerate() {
            let p = part.add((mo * NR + nr) * S::LANES);
            S::add(S::load(p), a).store(p);
        }
    }
}

#[cfg(all(target_arch = "x86_64", sparsegrad_avx512))]
#[target_feature(enable = "avx512f,fma")]
unsafe fn nt_item_avx512<F: HasVectors>(
    job: &NtJob<F>,
    it: NtItem,
    obs: Range<usize>,
    s: &mut Scratch<F>,
    part: &mut [F],
) {
    nt_item::<F, F::Z>(job, it, obs, s, part)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn nt_item_avx2<F: HasVectors>(
    job: &NtJob<F>,
    it: NtItem,
    obs: Range<usize>,
    s: &mut Scratch<F>,
    part: &mut [F],
) {
    nt_item::<F, F::Y>(job, it, obs, s, part)
}

/// Sums the `N` lanes of `v` by halves: `v[l] + v[l + N/2]` for `l < N/2`, repeatedly (a
/// fixed order; the halves are vector adds).
#[inline(always)]
fn tree_sum<F: Element, const N: usize>(v: &[F]) -> F {
    crate::kernels::vmath::fold_lanes::<F, N>(v[..N].try_into().expect("N lanes"))
}

/// Position vectors a run should sum over per lane-sum element (at least), so that reducing
/// the lanes at the end of the run stays a small part of its work.
const RUN_VECTORS: usize = 256;

/// The weight gradient `[od, k]`: runs of consecutive items on rayon (at most [`MAX_RUNS`],
/// each summing at least [`RUN_VECTORS`] position vectors when the batch allows), each reduced
/// to a partial gradient, the partials added in run order.
fn nt_run<F: HasVectors>(isa: Isa, job: &NtJob<F>) -> Vec<F> {
    let c = &job.c;
    let (lanes, og, k) = (isa.lanes::<F>(), c.og(), c.k());
    let (mo_n, nr_n) = (job.mo, job.nr);
    let (nob, ntb) = (og.div_ceil(mo_n), k.div_ceil(nr_n));
    let items = job.items();
    let vectors: usize = items.iter().map(|it| job.vectors(it, lanes)).sum();
    let runs = (vectors / RUN_VECTORS).clamp(1, MAX_RUNS).min(items.len());
    let per_run = items.len().div_ceil(runs);
    let runs = items.len().div_ceil(per_run);
    // With fewer runs than threads, each run's channel blocks are split between tasks too (an
    // 8×8 layer of 64 channels at batch 64 is one run: ResNet-20's last stage computed its
    // weight gradients on one of two threads). A tile's lane sums are the same whichever task
    // computes them, so this split, unlike the runs, may follow the thread count. Each task
    // keeps (and zeroes) the lane sums of its own channel blocks only. (Splitting further, to
    // 4 tasks per thread, was slower: every task prepares the source planes of every item of
    // its run again.)
    let threads = rayon::current_num_threads().max(1);
    let per_split = if runs < threads { nob.div_ceil(threads.div_ceil(runs)) } else { nob }.max(1);
    let splits = nob.div_ceil(per_split).max(1);
    let partials: Vec<Vec<F>> = crate::par::map_with(runs * splits, &Scratch::new, &|s, task| {
        let (r, sp) = (task / splits, task % splits);
        let obs = sp * per_split..nob.min((sp + 1) * per_split);
        let run = &items[r * per_run..items.len().min((r + 1) * per_run)];
        let mut part = crate::filled(job.lane_sums_of(&obs, lanes), F::zero());
        for &it in run {
            match isa {
                // SAFETY: `isa` was detected on this CPU; `part` has the run's size.
                #[cfg(all(target_arch = "x86_64", sparsegrad_avx512))]
                Isa::Avx512 => unsafe { nt_item_avx512(job, it, obs.clone(), s, &mut part) },
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => unsafe { nt_item_avx2(job, it, obs.clone(), s, &mut part) },
                #[allow(unreachable_patterns)]
                _ => unreachable!("direct kernels for {isa:?} are not compiled in"),
            }
        }
        // Lane sums in storage order [group][channel block][tap block][mo][nr][lanes]; this
        // task's channel blocks only (the rest of `dw` stays zero).
        let mut dw = vec![F::zero(); c.od * k];
        for grp in 0..c.groups {
            for ob in obs.clone() {
                for tb in 0..ntb {
                    let at = ((grp * obs.len() + ob - obs.start) * ntb + tb) * mo_n * nr_n * lanes;
                    let tile = &part[at..][..mo_n * nr_n * lanes];
                    for (i, o) in (ob * mo_n..(ob + 1) * mo_n).enumerate() {
                        for (j, t) in (tb * nr_n..(tb + 1) * nr_n).enumerate() {
                            if o < og && t < k {
                                let v = &tile[(i * nr_n + j) * lanes..][..lanes];
                                dw[(grp * og + o) * k + t] = match lanes {
                                    16 => tree_sum::<F, 16>(v),
                                    8 => tree_sum::<F, 8>(v),
                                    4 => tree_sum::<F, 4>(v),
                                    _ => tree_sum::<F, 2>(v),
                                };
                            }
                        }
                    }
                }
            }
        }
        dw
    });
    // Each run's splits hold disjoint channels: copied together, then the runs added in order.
    let mut tasks = partials.into_iter();
    let mut dw: Option<Vec<F>> = None;
    for _ in 0..runs {
        let mut run = tasks.next().expect("a task per split");
        for sp in 1..splits {
            let part = tasks.next().expect("a task per split");
            let (o0, o1) = ((sp * per_split * mo_n).min(og), ((sp + 1) * per_split * mo_n).min(og));
            for grp in 0..c.groups {
                let span = (grp * og + o0) * k..(grp * og + o1) * k;
                run[span.clone()].copy_from_slice(&part[span]);
            }
        }
        dw = Some(match dw {
            None => run,
            Some(mut d) => {
                d.iter_mut().zip(&run).for_each(|(d, &v)| *d += v);
                d
            }
        });
    }
    dw.expect("at least one run")
}

/// `conv2d_backward_weight` of a geometry [`supports`] accepts (`gy`, `x` contiguous), or
/// `None` when its lane sums would exceed [`MAX_LANE_SUMS`].
pub(super) fn weight_grad<T: Element>(isa: Isa, g: &Geom, gy: &[T], x: &[T]) -> Option<Vec<T>> {
    let c = Corr::forward(g);
    let (mo, nr) = nt_tile_shape(isa, c.og(), c.k());
    weight_grad_tiled(isa, (mo, nr, weight_grad_by_rows::<T>(g, isa)), g, gy, x)
}

/// Whether [`weight_grad`] takes the row layout for `g` (`ow` a multiple of the vector
/// width). It then multiplies the input only by real entries of `gy`, as GEMM does, so a
/// non-finite input needs no detour through GEMM.
pub(super) fn weight_grad_by_rows<T: Element>(g: &Geom, isa: Isa) -> bool {
    Corr::forward(g).ow % isa.lanes::<T>() == 0
}

/// [`weight_grad`] with the tile `(mo, nr)` of `isa`'s table, in the row layout or not (the
/// row layout only where `ow` is a multiple of the vector width).
fn weight_grad_tiled<T: Element>(
    isa: Isa,
    (mo, nr, rows): (usize, usize, bool),
    g: &Geom,
    gy: &[T],
    x: &[T],
) -> Option<Vec<T>> {
    let c = Corr::forward(g);
    assert!(!rows || c.ow % isa.lanes::<T>() == 0, "the row layout needs whole vectors per row");
    let probe = NtJob::<T> { c, x, gy, mo, nr, rows };
    if probe.lane_sums(isa.lanes::<T>()) * std::mem::size_of::<T>() > MAX_LANE_SUMS {
        return None;
    }
    macro_rules! run {
        ($f:ty, $run:ident) => {{
            let job = NtJob::<$f> { c, x: cast(x), gy: cast(gy), mo, nr, rows };
            let dw = $run(isa, &job);
            cast::<$f, T>(&dw).to_vec()
        }};
    }
    Some(if TypeId::of::<T>() == TypeId::of::<f32>() { run!(f32, nt_run_f32) } else { run!(f64, nt_run_f64) })
}

// The runs of each element type are plain functions, not generic ones, so that the tile
// kernels are compiled once, here, at the engine's optimisation level, and called from every
// other crate (a generic chain is compiled again in each crate that instantiates it, at that
// crate's level: the gradient audit's cases build at opt-level 0).
#[inline(never)]
fn nn_run_f32(isa: Isa, job: &NnJob<f32>) {
    nn_run(isa, job)
}

#[inline(never)]
fn nn_run_f64(isa: Isa, job: &NnJob<f64>) {
    nn_run(isa, job)
}

#[inline(never)]
fn nt_run_f32(isa: Isa, job: &NtJob<f32>) -> Vec<f32> {
    nt_run(isa, job)
}

#[inline(never)]
fn nt_run_f64(isa: Isa, job: &NtJob<f64>) -> Vec<f64> {
    nt_run(isa, job)
}

/// `s` seen as a slice of `F`, which must be the same type as `T`.
fn cast<T: 'static, F: 'static>(s: &[T]) -> &[F] {
    assert_eq!(TypeId::of::<T>(), TypeId::of::<F>(), "direct conv: element type mismatch");
    // SAFETY: T and F are the same type.
    unsafe { std::slice::from_raw_parts(s.as_ptr().cast(), s.len()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::Conv2dParams;
    use crate::{Rng, Tensor};

    /// The tables are checked against [`nn_tile_fits`] when the crate compiles; this checks the
    /// rule itself on the tiles measured on AVX2 (2026-12-07, Zen 3).
    #[test]
    fn the_register_rule_refuses_the_tile_that_spilled() {
        // 12 sums + 3 sources + 2 weights = 17, or 12 sums + 4 weights + 1 source = 17: one
        // sum went to the stack, half speed.
        assert!(!nn_tile_fits(4, 3, 16));
        // (3, 4) in its second form (16 registers) and (6, 2) in its first ran at full speed.
        assert!(nn_tile_fits(3, 4, 16) && !sources_fit(3, 4, 16));
        assert!(sources_fit(6, 2, 16));
    }

    /// The input gradient goes to GEMM where the padded correlation would be mostly padding.
    #[test]
    fn the_input_gradient_of_a_small_valid_convolution_takes_gemm() {
        let geom =
            |x: [usize; 4], w: [usize; 4], pad: usize| Geom::conv("test", x, w, Conv2dParams::new().padding(pad));
        for isa in Isa::available().into_iter().filter(|&i| i != Isa::Generic) {
            // LeNet's second convolution: a third of the direct kernel's products are real.
            let lenet2 = geom([64, 20, 12, 12], [50, 20, 5, 5], 0);
            assert!(worthwhile(&lenet2, isa) && !input_grad_worthwhile(&lenet2, isa), "{}", isa.name());
            assert!(worthwhile(&geom([64, 1, 28, 28], [20, 1, 5, 5], 0), isa));
            // LeNet's first (64% real) and a padded 3×3 convolution (94%) stay direct.
            assert!(input_grad_worthwhile(&geom([64, 1, 28, 28], [20, 1, 5, 5], 0), isa));
            assert!(input_grad_worthwhile(&geom([64, 64, 32, 32], [64, 64, 3, 3], 1), isa));
        }
    }

    /// Every weight-gradient tile of every level this CPU runs, in both layouts, matches the
    /// naive sum (f64): several images per item and row blocks, groups, partial channel and
    /// tap blocks, rows of one and of several vectors.
    #[test]
    fn every_weight_gradient_tile_matches_naive() {
        let shapes: [([usize; 4], [usize; 4], usize, usize); 4] = [
            ([5, 4, 9, 16], [6, 2, 3, 3], 1, 2),
            ([3, 3, 8, 8], [7, 3, 3, 3], 1, 1),
            ([2, 2, 12, 20], [5, 2, 5, 5], 0, 1),
            ([3, 6, 9, 11], [14, 3, 3, 3], 1, 2),
        ];
        let mut rng = Rng::new(23);
        let mut rows_tried = 0;
        for (xs, ws, pad, groups) in shapes {
            let p = Conv2dParams::new().padding(pad).groups(groups);
            let g = Geom::conv("test", xs, ws, p);
            let x = Tensor::<f64>::randn(&xs, &mut rng);
            let gy = Tensor::<f64>::randn(&g.y_shape(), &mut rng);
            let want = crate::kernels::conv::naive::conv2d_backward_weight(&gy, &x, [ws[2], ws[3]], p).to_vec();
            for isa in Isa::with_vectors() {
                for &(mo, nr, _) in nt_tiles(isa) {
                    for rows in [false, true] {
                        if rows && g.ow % isa.lanes::<f64>() != 0 {
                            continue;
                        }
                        rows_tried += usize::from(rows);
                        let got = weight_grad_tiled(isa, (mo, nr, rows), &g, &gy.to_vec(), &x.to_vec()).expect("small");
                        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                            assert!(
                                (a - b).abs() <= 1e-12 * (1.0 + b.abs()),
                                "{xs:?} * {ws:?}, tile {mo}×{nr}, rows {rows} at {}: element {i}: {a} against {b}",
                                isa.name()
                            );
                        }
                    }
                }
            }
        }
        assert!(rows_tried > 0 || Isa::with_vectors().is_empty(), "the row layout never ran");
    }

    /// Every tile of every level this CPU runs gives the bits of the tile the cost model picks,
    /// for the forward and the input gradient, in f32 and f64: several channel blocks with a
    /// partial last one, groups, row blocks, and a tail of single position vectors.
    #[test]
    fn every_forward_tile_gives_the_same_bits() {
        fn check<T: Element>(rng: &mut Rng) -> usize {
            let mut tried = 0;
            // The last three have rows of whole vectors (row layout): 8 and 16 columns, one
            // or more vectors per row depending on the level and the type.
            let shapes: [([usize; 4], [usize; 4], usize, usize); 6] = [
                ([3, 6, 9, 11], [14, 3, 3, 3], 1, 2),
                ([2, 4, 7, 7], [7, 4, 5, 5], 2, 1),
                ([1, 1, 12, 10], [5, 1, 3, 2], 0, 1),
                ([2, 3, 8, 8], [7, 3, 3, 3], 1, 1),
                ([2, 4, 5, 16], [6, 2, 3, 3], 1, 2),
                ([1, 2, 11, 18], [13, 2, 3, 3], 0, 1),
            ];
            for (xs, ws, pad, groups) in shapes {
                let p = Conv2dParams::new().padding(pad).groups(groups);
                let g = Geom::conv("test", xs, ws, p);
                let x = Tensor::<T>::randn(&xs, rng).to_vec();
                let w = Tensor::<T>::randn(&ws, rng).to_vec();
                let b = Tensor::<T>::randn(&[ws[0]], rng).to_vec();
                let gy = Tensor::<T>::randn(&g.y_shape(), rng).to_vec();
                let k = g.k();
                for isa in Isa::available().into_iter().filter(|&i| i != Isa::Generic) {
                    let picked: [Vec<T>; 2] = [forward(isa, &g, &x, &w, Some(&b)), input_grad(isa, &g, &gy, &w)];
                    let lanes = isa.lanes::<T>();
                    for &(mo, nq, _) in nn_tiles(isa) {
                        for rows in [false, true] {
                            let t = Tiling { mo, nq, rows };
                            let (cf, ci) = (Corr::forward(&g), Corr::input_grad(&g));
                            let fwd = (!rows || cf.ow % lanes == 0)
                                .then(|| correlate_tiled(isa, t, cf, &x, |o, t| w[o * k + t], Some(&b)));
                            let inp = (!rows || ci.ow % lanes == 0)
                                .then(|| correlate_tiled(isa, t, ci, &gy, flipped(&g, &w), None));
                            for (what, got, want) in [("forward", fwd, &picked[0]), ("input gradient", inp, &picked[1])]
                            {
                                let Some(got) = got else { continue };
                                tried += 1;
                                let same = bytemuck::cast_slice::<T, u8>(&got) == bytemuck::cast_slice::<T, u8>(want);
                                assert!(same, "{what} of {xs:?} * {ws:?}, {t:?} at {}", isa.name());
                            }
                        }
                    }
                }
            }
            tried
        }
        let mut rng = Rng::new(11);
        let tried = check::<f32>(&mut rng) + check::<f64>(&mut rng);
        // Both layouts ran on every level with vectors: 2 × 6 flattened per tile and shape,
        // and the row layout wherever the width allows it.
        let flat: usize = Isa::with_vectors().iter().map(|&isa| 2 * 6 * 2 * nn_tiles(isa).len()).sum();
        assert!(tried > flat || Isa::with_vectors().is_empty(), "{tried} tilings tried, {flat} of them flattened");
    }
}
