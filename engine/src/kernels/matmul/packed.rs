//! A packed GEMM with SIMD micro-kernels (the Goto/BLIS blocking): `C ← α·A·B + β·C` for `A`
//! and `B` with any strides and `C` row-major, on the calling thread or on rayon.
//!
//! ## Blocking
//! The columns of `C` are cut into blocks of [`NC`], `k` into panels of [`KC`], the rows into
//! blocks of [`MS`]. For one (column block, k panel) the panel of `B` is packed once into
//! `NR`-column micro-panels `[kc][NR]`, and for each row block the panel of `A` into `MR`-row
//! micro-panels `[kc][MR]` (zero-padded at the edges). Both packings are cut among the threads
//! — no operand is packed twice — and so is the product of the packed panels: tasks of [`MC`]
//! rows × a range of micro-panel columns, each running the `MR × NR` micro-kernel over its
//! micro-panel pairs (the `B` micro-panel stays in L1 while the kernel walks down the rows).
//!
//! ## One parallel region per block
//! The packed panels have two slots each. While the tiles of one block (column block × k panel
//! × row block) read one slot, the packing of the next block writes the other, in the same
//! parallel region: a product of `b` blocks has `b + 1` regions (the first packs only), not
//! `2b`. The tile tasks are ordered column range first, with a multiple of the threads as the
//! number of column ranges, so that the halves rayon splits the list into are equal work. A
//! product called from outside the pool enters it once, not once per region. (n = 512 on 2
//! threads of the 2-vCPU Zen 5: 1.52× → 1.83× the 1-thread throughput, bench/README.md.)
//!
//! ## Why the result does not depend on the threads
//! Element `(i, j)` of `C` is always computed by the micro-kernel of tile `(⌊i/MR⌋, ⌊j/NR⌋)`
//! (task edges are multiples of `MR` and `NR`; edge tiles run the same kernel on a copy), from
//! the same k panels in order: `acc = Σ_{p ∈ panel} a_ip·b_pj` by fused multiply-adds in `p`
//! order, then `C ← α·acc + β'·C` with `β' = β` for the first panel and 1 after. How M and N
//! are cut into tasks, and which thread runs which, only changes who computes a tile: the bits
//! are the same for any number of threads (and the same for `gemm` and `par_gemm`).

use std::any::TypeId;

use crate::kernels::simd::{prefetch, HasVectors, Isa, Vector};
use crate::kernels::SendPtr;
use crate::Element;

/// Elements of `k` per panel.
const KC: usize = 256;
/// Rows of a compute task (a multiple of every `MR`).
const MC: usize = 96;
/// Columns of `C` per block (a multiple of every `NR`).
const NC: usize = 1024;
/// Rows of `A` packed at once (a multiple of [`MC`]).
const MS: usize = 1536;
/// Products below this many multiply-adds run on the calling thread. (Small under
/// `cfg(test)`, so that the unit tests split small products.)
const PARALLEL_WORK: usize = if cfg!(test) { 1 << 10 } else { 1 << 21 };

/// A read-only strided operand: element `(i, j)` at `ptr + i·rs + j·cs`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Operand<T> {
    pub ptr: *const T,
    pub rs: isize,
    pub cs: isize,
}

/// The micro-kernel's shape for an instruction set: `MR` rows (broadcast from packed `A`) ×
/// `NV` vectors of columns (loaded from packed `B`). AVX-512: 12 × 2 vectors (24 sums of 32
/// registers, 14 loads per 24 multiply-adds); AVX2: 6 × 2 vectors (12 sums of 16).
fn kernel_shape(isa: Isa) -> (usize, usize) {
    match isa {
        Isa::Avx512 => (12, 2),
        Isa::Avx2 => (6, 2),
        Isa::Generic => unreachable!("the packed GEMM needs vectors"),
    }
}

/// `C ← α·A·B + β·C` for `A: m×k`, `B: k×n`, `C` row-major with row stride `ldc`, using the
/// packed kernels of `isa`; on rayon when `parallel` and the product is large.
///
/// # Safety
/// Every element addressed through `a`, `b` and `c` must be valid, `C` must not alias `A` or
/// `B`; `isa` must be available on this CPU. `m, k, n > 0`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm<T: Element>(
    isa: Isa,
    parallel: bool,
    (m, k, n): (usize, usize, usize),
    alpha: T,
    a: Operand<T>,
    b: Operand<T>,
    beta: T,
    c: *mut T,
    ldc: usize,
) {
    macro_rules! run {
        ($f:ty) => {{
            let cast = |o: Operand<T>| Operand::<$f> { ptr: o.ptr.cast(), rs: o.rs, cs: o.cs };
            let job = Job::<$f> {
                isa,
                m,
                k,
                n,
                alpha: *(&alpha as *const T).cast::<$f>(),
                beta: *(&beta as *const T).cast::<$f>(),
                a: cast(a),
                b: cast(b),
                c: SendPtr(c.cast()),
                ldc,
            };
            job
        }};
    }
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        run_f32(run!(f32), parallel)
    } else {
        assert_eq!(TypeId::of::<T>(), TypeId::of::<f64>(), "packed gemm: f32 or f64");
        run_f64(run!(f64), parallel)
    }
}

// The two element types' products are plain functions, not generic ones, so that the kernels
// are compiled once, here, at the engine's optimisation level, and called from every other
// crate (a generic chain would be compiled again in each crate that multiplies, and at that
// crate's level: the gradient audit's cases build at opt-level 0).
#[inline(never)]
fn run_f32(job: Job<f32>, parallel: bool) {
    run_job(job, parallel)
}

#[inline(never)]
fn run_f64(job: Job<f64>, parallel: bool) {
    run_job(job, parallel)
}

fn run_job<F: HasVectors>(job: Job<F>, parallel: bool) {
    let parallel = job.splits(parallel);
    if parallel && rayon::current_thread_index().is_none() {
        // Called from outside the pool: enter it once for the whole product rather than once
        // per parallel region (each entry wakes the pool from the caller's side; n = 512 on 2
        // threads: 1.77× → 1.88× the 1-thread throughput).
        rayon::scope(|_| job.run(true))
    } else {
        job.run(parallel)
    }
}

thread_local! {
    /// The packing buffer of the last product this thread ran, kept for the next one.
    static SCRATCH: std::cell::Cell<Vec<u64>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The packing buffers of a product (packed `B` panel, then packed `A` block), reused from call
/// to call on the calling thread (at most `(NC + MS)·KC` values, 5 MiB in f64).
///
/// A fresh buffer per call costs more than the packing on mid-sized products: it comes back
/// from the allocator as new pages, which the kernel zeroes on first touch (n = 256 to 384,
/// one thread: 1.3–1.5× the time of a `matrixmultiply` call; `bench/examples/gemm_sizes.rs`).
/// A product started while another is running on the same thread (a rayon task stolen while
/// waiting) finds the slot empty and allocates its own.
struct Scratch;

impl Scratch {
    /// A buffer of at least `bytes` (uninitialised: the packing writes before the kernels read).
    fn take(bytes: usize) -> Vec<u64> {
        let words = bytes.div_ceil(8);
        let v = SCRATCH.with(|s| s.take());
        if v.capacity() >= words {
            v
        } else {
            drop(v);
            Vec::with_capacity(words)
        }
    }

    /// Keeps the larger of `v` and the buffer in the slot.
    fn give_back(v: Vec<u64>) {
        SCRATCH.with(|s| {
            let old = s.take();
            s.set(if old.capacity() > v.capacity() { old } else { v });
        });
    }
}

/// One product.
#[derive(Clone, Copy)]
struct Job<F> {
    isa: Isa,
    m: usize,
    k: usize,
    n: usize,
    alpha: F,
    beta: F,
    a: Operand<F>,
    b: Operand<F>,
    c: SendPtr<F>,
    ldc: usize,
}
unsafe impl<F> Send for Job<F> {}
unsafe impl<F> Sync for Job<F> {}

/// A block of the product: a column block × a k panel × a row block.
#[derive(Clone, Copy)]
struct Block {
    j0: usize,
    nc: usize,
    k0: usize,
    kc: usize,
    i0: usize,
    ms: usize,
    /// The first k panel (`C` scaled by `β`; later panels accumulate).
    first: bool,
    /// The first row block of its k panel: the panel of `B` is packed for it.
    pack_b: bool,
}

/// Where a step finds (or writes) the packed panels of `B` and `A`.
#[derive(Clone, Copy)]
struct Slot<F> {
    b: SendPtr<F>,
    a: SendPtr<F>,
}

/// One step of a product, run under the instruction set's target features.
#[derive(Clone, Copy)]
enum Step {
    /// Pack micro-panels `p0..p1` of `B`'s panel (columns from `j0`, k from `k0`, `kc` deep).
    PackB { j0: usize, nc: usize, k0: usize, kc: usize, p0: usize, p1: usize },
    /// Pack micro-panels `p0..p1` of `A`'s panel (rows from `i0`).
    PackA { i0: usize, ms: usize, k0: usize, kc: usize, p0: usize, p1: usize },
    /// Multiply: rows `r0..r1` (relative to `i0`, the packed row block) × B micro-panels
    /// `q0..q1` of the column block at `j0`, into `C` with `β'`.
    Tile {
        i0: usize,
        ms: usize,
        j0: usize,
        nc: usize,
        kc: usize,
        r0: usize,
        r1: usize,
        q0: usize,
        q1: usize,
        first: bool,
    },
}

impl<F: HasVectors> Job<F> {
    /// Whether the product is split among the threads: asked to, more than one thread, and
    /// large enough.
    fn splits(&self, parallel: bool) -> bool {
        parallel
            && rayon::current_num_threads() > 1
            && self.m.saturating_mul(self.n).saturating_mul(self.k) >= PARALLEL_WORK
    }

    /// Runs the product, split among the threads when `parallel` (see [`Job::splits`]).
    fn run(&self, parallel: bool) {
        let (mr, nr) = self.shape();
        let threads = rayon::current_num_threads();
        // The blocks in order: column block, k panel, row block.
        let mut blocks = Vec::new();
        for j0 in (0..self.n).step_by(NC) {
            for (pi, k0) in (0..self.k).step_by(KC).enumerate() {
                for (bi, i0) in (0..self.m).step_by(MS).enumerate() {
                    let (nc, kc, ms) = (NC.min(self.n - j0), KC.min(self.k - k0), MS.min(self.m - i0));
                    blocks.push(Block { j0, nc, k0, kc, i0, ms, first: pi == 0, pack_b: bi == 0 });
                }
            }
        }
        // Two slots per packed operand when there is more than one block: the next block is
        // packed into the other slot while the current one is multiplied (one parallel region
        // per block instead of two). The B slot alternates with the k panels, the A slot with
        // the blocks.
        let slots = if blocks.len() > 1 { 2 } else { 1 };
        let b_len = NC.min(self.n).next_multiple_of(nr) * KC.min(self.k);
        let a_len = MS.min(self.m).next_multiple_of(mr) * KC.min(self.k);
        let mut scratch = Scratch::take(slots * (b_len + a_len) * std::mem::size_of::<F>());
        let base = scratch.as_mut_ptr().cast::<F>();
        // SAFETY: the buffer holds slots·(b_len + a_len) values of F (8-byte words, aligned).
        let slot = |s: usize| unsafe {
            let s = s % slots;
            Slot { b: SendPtr(base.add(s * b_len)), a: SendPtr(base.add(slots * b_len + s * a_len)) }
        };
        // Pieces per packing: enough for every thread, never more than the micro-panels.
        let pieces = if parallel { 4 * threads } else { 1 };
        let split = |count: usize| {
            let per = count.div_ceil(pieces).max(1);
            (0..count).step_by(per).map(move |p0| (p0, (p0 + per).min(count)))
        };
        let (mut b_slot, mut packs, mut tiles, mut steps) = (0, Vec::new(), Vec::new(), Vec::new());
        let pack = |blk: &Block, b_slot: usize, a_slot: usize, packs: &mut Vec<(Step, Slot<F>)>| {
            let Block { j0, nc, k0, kc, i0, ms, pack_b, .. } = *blk;
            if pack_b {
                let sl = slot(b_slot);
                packs.extend(split(nc.div_ceil(nr)).map(|(p0, p1)| (Step::PackB { j0, nc, k0, kc, p0, p1 }, sl)));
            }
            let sl = Slot { b: slot(b_slot).b, a: slot(a_slot).a };
            packs.extend(split(ms.div_ceil(mr)).map(|(p0, p1)| (Step::PackA { i0, ms, k0, kc, p0, p1 }, sl)));
        };
        pack(&blocks[0], 0, 0, &mut packs);
        self.exec(parallel, &packs);
        for (b, blk) in blocks.iter().enumerate() {
            let cur = Slot { b: slot(b_slot).b, a: slot(b).a };
            // Tasks: MC rows × column ranges of micro-panels, about 4 per thread, the column
            // ranges outermost and a multiple of the threads in number: rayon halves the list
            // between the threads, and each half is then the same work (the short last row
            // block falls in every column range alike).
            let nbp = blk.nc.div_ceil(nr);
            let row_blocks = blk.ms.div_ceil(MC);
            let col_pieces =
                if parallel { (4 * threads).div_ceil(row_blocks).next_multiple_of(threads).min(nbp) } else { 1 };
            let per = nbp.div_ceil(col_pieces);
            tiles.clear();
            for q0 in (0..nbp).step_by(per) {
                for r0 in (0..blk.ms).step_by(MC) {
                    let (r1, q1) = ((r0 + MC).min(blk.ms), (q0 + per).min(nbp));
                    let Block { i0, ms, j0, nc, kc, first, .. } = *blk;
                    tiles.push((Step::Tile { i0, ms, j0, nc, kc, r0, r1, q0, q1, first }, cur));
                }
            }
            // The next block's packing, spread evenly among the tiles (so that each half of
            // the list carries half of it), into the slots the tiles do not read.
            packs.clear();
            if let Some(next) = blocks.get(b + 1) {
                let nb = if next.pack_b { b_slot + 1 } else { b_slot };
                pack(next, nb, b + 1, &mut packs);
                b_slot = nb;
            }
            steps.clear();
            let (t, p) = (tiles.len(), packs.len().max(1));
            for i in 0..p {
                steps.extend_from_slice(&tiles[i * t / p..(i + 1) * t / p]);
                steps.extend(packs.get(i).copied());
            }
            self.exec(parallel, &steps);
        }
        Scratch::give_back(scratch);
    }

    /// The micro-kernel's `MR` and `NR` on this job's instruction set.
    fn shape(&self) -> (usize, usize) {
        let (mr, nv) = kernel_shape(self.isa);
        (mr, nv * self.isa.lanes::<F>())
    }

    /// Runs the steps of one parallel region (in parallel, or in order).
    fn exec(&self, parallel: bool, steps: &[(Step, Slot<F>)]) {
        let (mr, nr) = self.shape();
        let one = |(s, sl): &(Step, Slot<F>)| self.step(*s, sl.a, sl.b, mr, nr);
        if parallel {
            crate::par::range(steps.len(), &|i| one(&steps[i]));
        } else {
            steps.iter().for_each(one);
        }
    }

    /// Runs one step with the instruction set's features.
    fn step(&self, s: Step, ap: SendPtr<F>, bp: SendPtr<F>, mr: usize, nr: usize) {
        match self.isa {
            // SAFETY: `isa` was detected on this CPU; steps of one region touch disjoint
            // parts of the packing buffers and of C, and packing regions finish before the
            // tiles that read them start.
            #[cfg(all(target_arch = "x86_64", sparsegrad_avx512))]
            Isa::Avx512 => unsafe { step_avx512(self, s, ap, bp, mr, nr) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { step_avx2(self, s, ap, bp, mr, nr) },
            #[allow(unreachable_patterns)]
            _ => unreachable!("packed gemm for {:?} is not compiled in", self.isa),
        }
    }
}

#[cfg(all(target_arch = "x86_64", sparsegrad_avx512))]
#[target_feature(enable = "avx512f,fma")]
unsafe fn step_avx512<F: HasVectors>(job: &Job<F>, s: Step, ap: SendPtr<F>, bp: SendPtr<F>, mr: usize, nr: usize) {
    debug_assert_eq!((mr, nr), (12, 2 * <F::Z as Vector<F>>::LANES));
    step_with::<F, F::Z, 12, 2>(job, s, ap.get(), bp.get())
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn step_avx2<F: HasVectors>(job: &Job<F>, s: Step, ap: SendPtr<F>, bp: SendPtr<F>, mr: usize, nr: usize) {
    debug_assert_eq!((mr, nr), (6, 2 * <F::Y as Vector<F>>::LANES));
    step_with::<F, F::Y, 6, 2>(job, s, ap.get(), bp.get())
}

#[inline(always)]
unsafe fn step_with<F: Element, S: Vector<F>, const MR: usize, const NV: usize>(
    job: &Job<F>,
    s: Step,
    ap: *mut F,
    bp: *mut F,
) {
    let nr = NV * S::LANES;
    match s {
        Step::PackB { j0, nc, k0, kc, p0, p1 } => {
            let b = job.b.ptr.offset(k0 as isize * job.b.rs + j0 as isize * job.b.cs);
            for p in p0..p1 {
                let cols = nr.min(nc - p * nr);
                pack_panel(
                    bp.add(p * kc * nr),
                    nr,
                    b.offset((p * nr) as isize * job.b.cs),
                    job.b.cs,
                    job.b.rs,
                    cols,
                    kc,
                );
            }
        }
        Step::PackA { i0, ms, k0, kc, p0, p1 } => {
            let a = job.a.ptr.offset(i0 as isize * job.a.rs + k0 as isize * job.a.cs);
            for p in p0..p1 {
                let rows = MR.min(ms - p * MR);
                pack_panel(
                    ap.add(p * kc * MR),
                    MR,
                    a.offset((p * MR) as isize * job.a.rs),
                    job.a.rs,
                    job.a.cs,
                    rows,
                    kc,
                );
            }
        }
        Step::Tile { i0, ms, j0, nc, kc, r0, r1, q0, q1, first } => {
            let beta = if first { job.beta } else { F::one() };
            let c = job.c.get();
            for q in q0..q1 {
                let cols = nr.min(nc - q * nr);
                let bq = bp.add(q * kc * nr);
                for r in (r0..r1).step_by(MR) {
                    let rows = MR.min(ms - r);
                    let cp = c.add((i0 + r) * job.ldc + j0 + q * nr);
                    let aq = ap.add(r / MR * kc * MR);
                    if rows == MR && cols == nr {
                        kernel::<F, S, MR, NV>(kc, aq, bq, job.alpha, beta, cp, job.ldc);
                    } else {
                        edge::<F, S, MR, NV>(kc, aq, bq, job.alpha, beta, cp, job.ldc, rows, cols);
                    }
                }
            }
        }
    }
}

/// Widest micro-panel (`NR` of the AVX-512 f32 kernel).
const MAX_W: usize = 32;

/// Packs `len` (`≤ w ≤ MAX_W`) lines of a panel, line `l` at `src + l·line_stride` with element `p` at
/// `+ p·step`, into `dst` as `[kc][w]` (`dst[p·w + l]`), zeros in lines `len..w`.
#[inline(always)]
unsafe fn pack_panel<F: Element>(
    dst: *mut F,
    w: usize,
    src: *const F,
    line_stride: isize,
    step: isize,
    len: usize,
    kc: usize,
) {
    if step == 1 && len == w {
        // Lines contiguous along k (row-major A, column-major B): a transpose, line by line.
        // Blocks of 8 along k: 8 loads from each line, then the 8 rows of the block (a plain
        // element-by-element transpose runs into 4K-aliasing stalls when the line stride is a
        // multiple of 4 KiB: 4 cycles per element at n = 1024).
        debug_assert!(len <= MAX_W);
        let mut p0 = 0;
        while p0 + 8 <= kc {
            let mut blk = [[F::zero(); 8]; MAX_W];
            for (l, row) in blk.iter_mut().enumerate().take(len) {
                *row = std::ptr::read_unaligned(src.offset(l as isize * line_stride).add(p0).cast::<[F; 8]>());
            }
            for pp in 0..8 {
                let d = dst.add((p0 + pp) * w);
                for (l, row) in blk.iter().enumerate().take(len) {
                    *d.add(l) = row[pp];
                }
            }
            p0 += 8;
        }
        for l in 0..len {
            let s = src.offset(l as isize * line_stride);
            for p in p0..kc {
                *dst.add(p * w + l) = *s.add(p);
            }
        }
    } else if line_stride == 1 {
        // The lines of one k are contiguous (column-major A, row-major B): copies of `len`.
        // Full panels of the kernels' widths (MR = 6, 12; NR = 8, 16, 32 for f64 / f32 under
        // AVX2 / AVX-512) copy a fixed-size block per k: a `memcpy` call per 24–128 bytes cost
        // 15% of a 128 × 128 × 256 product (`perf`, sc_loss).
        if len == w {
            match w {
                6 => return copy_lines::<F, 6>(dst, src, step, kc),
                8 => return copy_lines::<F, 8>(dst, src, step, kc),
                12 => return copy_lines::<F, 12>(dst, src, step, kc),
                16 => return copy_lines::<F, 16>(dst, src, step, kc),
                32 => return copy_lines::<F, 32>(dst, src, step, kc),
                _ => {}
            }
        }
        for p in 0..kc {
            let s = src.offset(p as isize * step);
            let d = dst.add(p * w);
            std::ptr::copy_nonoverlapping(s, d, len);
            for l in len..w {
                *d.add(l) = F::zero();
            }
        }
    } else {
        for p in 0..kc {
            let d = dst.add(p * w);
            for l in 0..w {
                *d.add(l) = if l < len { *src.offset(l as isize * line_stride + p as isize * step) } else { F::zero() };
            }
        }
    }
}

/// `dst[p·W .. p·W + W] = src[p·step ..][..W]` for `p < kc`: the full-width case of
/// [`pack_panel`] with contiguous lines, one fixed-size copy per `p`.
#[inline(always)]
unsafe fn copy_lines<F: Element, const W: usize>(dst: *mut F, src: *const F, step: isize, kc: usize) {
    for p in 0..kc {
        let line = std::ptr::read_unaligned(src.offset(p as isize * step).cast::<[F; W]>());
        std::ptr::write_unaligned(dst.add(p * W).cast::<[F; W]>(), line);
    }
}

/// The `MR × NR` micro-kernel (`NR = NV·LANES`): `acc[i][j] = Σ_p a[p·MR + i]·b[p·NR + j]` over
/// `p < kc` in order, then `C[i][j] ← α·acc + β·C[i][j]` (`C` not read when `β = 0`).
///
/// # Safety
/// `a` holds `kc·MR`, `b` `kc·NR` values, `c` rows `i·ldc .. i·ldc + NR` are valid for
/// `i < MR`; the vector's instruction set enabled.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel<F: Element, S: Vector<F>, const MR: usize, const NV: usize>(
    kc: usize,
    a: *const F,
    b: *const F,
    alpha: F,
    beta: F,
    c: *mut F,
    ldc: usize,
) {
    // The tile of C is read (β ≠ 0) or written at the end: start bringing it in now, so that
    // its cache misses overlap the k loop instead of stalling the epilogue.
    let line = 64 / std::mem::size_of::<F>();
    for i in 0..MR {
        for j in (0..NV * S::LANES).step_by(line) {
            prefetch(c.add(i * ldc + j));
        }
    }
    let mut acc = [[S::zero(); NV]; MR];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        let mut bv = [S::zero(); NV];
        for (v, x) in bv.iter_mut().enumerate() {
            *x = S::load(b.add(v * S::LANES));
        }
        for (i, row) in acc.iter_mut().enumerate() {
            let ai = S::splat(*a.add(i));
            for (s, &x) in row.iter_mut().zip(&bv) {
                *s = S::fma(ai, x, *s);
            }
        }
        a = a.add(MR);
        b = b.add(NV * S::LANES);
    }
    let (av, bv) = (S::splat(alpha), S::splat(beta));
    let at = |i: usize, v: usize| c.add(i * ldc + v * S::LANES);
    if beta != F::zero() {
        for (i, row) in acc.iter().enumerate() {
            for (v, &s) in row.iter().enumerate() {
                S::fma(av, s, S::mul(bv, S::load(at(i, v)))).store(at(i, v));
            }
        }
    } else if alpha != F::one() {
        for (i, row) in acc.iter().enumerate() {
            for (v, &s) in row.iter().enumerate() {
                S::mul(av, s).store(at(i, v));
            }
        }
    } else {
        for (i, row) in acc.iter().enumerate() {
            for (v, &s) in row.iter().enumerate() {
                s.store(at(i, v));
            }
        }
    }
}

/// An edge tile of `rows × cols` (below `MR × NR`): the same kernel on a copy of the tile.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn edge<F: Element, S: Vector<F>, const MR: usize, const NV: usize>(
    kc: usize,
    a: *const F,
    b: *const F,
    alpha: F,
    beta: F,
    c: *mut F,
    ldc: usize,
    rows: usize,
    cols: usize,
) {
    const MAX: usize = 12 * 32;
    let nr = NV * S::LANES;
    debug_assert!(MR * nr <= MAX);
    let mut tmp = [F::zero(); MAX];
    if beta != F::zero() {
        for i in 0..rows {
            std::ptr::copy_nonoverlapping(c.add(i * ldc), tmp.as_mut_ptr().add(i * nr), cols);
        }
    }
    kernel::<F, S, MR, NV>(kc, a, b, alpha, beta, tmp.as_mut_ptr(), nr);
    for i in 0..rows {
        std::ptr::copy_nonoverlapping(tmp.as_ptr().add(i * nr), c.add(i * ldc), cols);
    }
}
