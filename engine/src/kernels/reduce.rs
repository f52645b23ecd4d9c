//! Reductions over any set of axes, with or without `keepdim`: sum, mean, max/min (with the
//! position of the extreme element, for backward), logsumexp, ℓ1 and ℓ2 norms.
//!
//! Order of summation (and so the exact bits of every result) depends only on the shapes and
//! strides, never on the number of threads:
//! * when the innermost reduced axis is contiguous, each block is a sequence of contiguous
//!   runs; a run is summed with 32 interleaved accumulators combined in a fixed tree
//!   (`sum_slice`) and the run sums are added in row-major order, in fixed pieces of about
//!   [`PAR_CHUNK`] elements whose partial sums are added left to right;
//! * when the last axis is kept and contiguous (a column sum such as `[N, C] → [C]`), every
//!   output element adds its inputs one by one in row-major order, whole rows at a time;
//! * otherwise each block is reduced element by element in row-major order, in fixed chunks of
//!   `PAR_CHUNK` elements whose partial results are added left to right.
//!
//! Chunks, pieces and output elements may run on different threads; the result does not change.
//!
//! Max and min over blocks that are one contiguous run (the last axis of a row-major tensor)
//! use the vectorised kernel of [`vmath`], which picks the same element as the
//! element-by-element fold: the first NaN, else the first extreme one.
//! `logsumexp` over the last axis is one fused pass per row with the bits of its composed
//! definition.

use crate::kernels::vmath;
use crate::layout::{coalesce, walk, Layout};
use crate::{Element, Tensor, PAR_CHUNK};

/// How the reduced axes and the kept axes of a tensor are laid out.
struct Plan {
    out_shape: Vec<usize>,    // with keepdim
    kept_shape: Vec<usize>,   // kept axes only
    kept_strides: Vec<isize>, // their strides in the input
    red_shape: Vec<usize>,    // reduced axes, coalesced
    red_strides: Vec<isize>,  // their strides, coalesced
    block: usize,             // number of elements reduced into each output
}

#[track_caller]
fn plan<T: Element>(t: &Tensor<T>, axes: &[usize], op: &str) -> Plan {
    let r = t.rank();
    let mut reduce = vec![false; r];
    for &a in axes {
        assert!(a < r, "{op}: axis {a} out of range for shape {:?}", t.shape());
        assert!(!reduce[a], "{op}: axis {a} repeated in {axes:?}");
        reduce[a] = true;
    }
    let l = t.layout();
    let mut out_shape = Vec::with_capacity(r);
    let (mut kept_shape, mut kept_strides, mut red_shape, mut red_strides) = (vec![], vec![], vec![], vec![]);
    for ((&red, &d), &s) in reduce.iter().zip(&l.shape).zip(&l.strides) {
        if red {
            out_shape.push(1);
            red_shape.push(d);
            red_strides.push(s);
        } else {
            out_shape.push(d);
            kept_shape.push(d);
            kept_strides.push(s);
        }
    }
    let block = red_shape.iter().product();
    let (red_shape, [red_strides]) = coalesce(&red_shape, [&red_strides]);
    Plan { out_shape, kept_shape, kept_strides, red_shape, red_strides, block }
}

/// Output shape without the reduced axes.
fn drop_axes(shape: &[usize], axes: &[usize]) -> Vec<usize> {
    shape.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d).collect()
}

/// Reduces every block with `fold` (sequential within a chunk) and `combine` (partials of
/// chunks, left to right). `fold(acc, x, pos)` sees the position of `x` within its block.
fn reduce_generic<T: Element, A: Copy + Send + Sync>(
    t: &Tensor<T>,
    p: &Plan,
    init: A,
    fold: impl Fn(A, T, usize) -> A + Sync + Send,
    combine: impl Fn(A, A) -> A + Sync + Send,
) -> Vec<A> {
    let storage = t.storage();
    let n_out: usize = p.kept_shape.iter().product();
    let block = p.block;
    let red_strides = [p.red_strides.clone()];
    // Reduce block starting at storage offset `base`, positions `start..start + len`.
    // One contiguous run per block (e.g. the last axis of a row-major tensor): a plain loop
    // over the slice, in the same order as `walk` would visit it.
    let contiguous = p.red_strides.len() == 1 && p.red_strides[0] == 1;
    let reduce_range = |base: usize, start: usize, len: usize| -> A {
        let mut acc = init;
        if contiguous {
            for (pos, &x) in (start..).zip(&storage[base + start..base + start + len]) {
                acc = fold(acc, x, pos);
            }
            return acc;
        }
        let mut pos = start;
        walk(&p.red_shape, &red_strides, [base], start, len, |[o]| {
            acc = fold(acc, storage[o], pos);
            pos += 1;
        });
        acc
    };
    let reduce_block = |base: usize| -> A {
        if block <= PAR_CHUNK {
            reduce_range(base, 0, block)
        } else {
            let n_chunks = block.div_ceil(PAR_CHUNK);
            let parts =
                map_range(n_chunks, true, |c| reduce_range(base, c * PAR_CHUNK, PAR_CHUNK.min(block - c * PAR_CHUNK)));
            parts.into_iter().reduce(&combine).unwrap_or(init)
        }
    };
    // Base offsets of every output, row-major over the kept axes.
    let mut bases = Vec::with_capacity(n_out);
    let kept = Layout { shape: p.kept_shape.clone(), strides: p.kept_strides.clone(), offset: t.offset() };
    bases.extend(kept.offsets());
    if block == 0 {
        return vec![init; n_out];
    }
    map_range(n_out, n_out * block >= 2 * PAR_CHUNK, |i| reduce_block(bases[i]))
}

/// `f(i)` for `i in 0..n`, in order: on the rayon pool when `parallel` holds and the pool has
/// more than one thread, on the calling thread otherwise (handing work to a one-thread pool
/// only adds two thread switches). The results are the same either way.
pub(crate) fn map_range<A: Send>(n: usize, parallel: bool, f: impl Fn(usize) -> A + Sync + Send) -> Vec<A> {
    if parallel && n > 1 && rayon::current_num_threads() > 1 {
        crate::par::map(n, &f)
    } else {
        (0..n).map(f).collect()
    }
}

/// The sum of one contiguous run as [`Tensor::sum`] computes it when the run is a whole
/// reduced block: `sum_slice` on pieces of `PAR_CHUNK` elements, added left to right from 0.
/// The fused row kernels of `vmath` reproduce this order; their tests compare with it.
#[cfg(test)]
pub(crate) fn sum_run<T: Element>(s: &[T]) -> T {
    if s.len() <= PAR_CHUNK {
        T::zero() + sum_slice(s)
    } else {
        s.chunks(PAR_CHUNK).fold(T::zero(), |a, c| a + sum_slice(c))
    }
}

/// Sums a contiguous slice with 32 independent accumulators (a fixed order that vectorises
/// into independent vector additions, so the adds' latency does not bound the loop), combined
/// pairwise in a fixed tree, then the remainder in order: [`vmath::sum_imp`], compiled for
/// the CPU's vector level from 256 elements on (the same bits on every level), inline below.
#[inline]
fn sum_slice<T: Element>(s: &[T]) -> T {
    if s.len() >= 256 {
        vmath::sum_at(crate::kernels::simd::Isa::best(), s)
    } else {
        vmath::sum_imp(s)
    }
}

/// Storage offsets, relative to the first element, of every position of `shape`/`strides`
/// in row-major order.
fn relative_offsets(shape: &[usize], strides: &[isize]) -> Vec<isize> {
    let mut offs = vec![0isize];
    for (&d, &s) in shape.iter().zip(strides) {
        offs = offs.iter().flat_map(|&o| (0..d as isize).map(move |i| o + i * s)).collect();
    }
    offs
}

/// `base + off` as an index. Offsets come from a layout that was checked against its storage.
#[inline(always)]
fn at(base: usize, off: isize) -> usize {
    (base as isize + off) as usize
}

/// Sums over the reduced axes when the innermost one is contiguous: every block is
/// `block / run` contiguous runs of `run` elements (see the module docs for the order).
fn sum_runs<T: Element>(t: &Tensor<T>, p: &Plan) -> Vec<T> {
    let st = t.storage();
    let k = p.red_shape.len();
    let run = p.red_shape[k - 1];
    let runs = relative_offsets(&p.red_shape[..k - 1], &p.red_strides[..k - 1]);
    // Pieces of about PAR_CHUNK elements: whole runs, or one long run cut into chunks.
    let per_piece = (PAR_CHUNK / run).max(1);
    let cuts = if run > PAR_CHUNK { run.div_ceil(PAR_CHUNK) } else { 1 };
    let n_pieces = if run > PAR_CHUNK { runs.len() * cuts } else { runs.len().div_ceil(per_piece) };
    let piece = |base: usize, i: usize| -> T {
        if run > PAR_CHUNK {
            let (r, c) = (i / cuts, i % cuts);
            let start = at(base, runs[r]) + c * PAR_CHUNK;
            sum_slice(&st[start..start + PAR_CHUNK.min(run - c * PAR_CHUNK)])
        } else {
            let mut acc = T::zero();
            for &o in &runs[i * per_piece..runs.len().min((i + 1) * per_piece)] {
                let start = at(base, o);
                acc += sum_slice(&st[start..start + run]);
            }
            acc
        }
    };
    let block = |base: usize| -> T {
        if n_pieces == 1 {
            return piece(base, 0);
        }
        map_range(n_pieces, true, |i| piece(base, i)).into_iter().fold(T::zero(), |a, b| a + b)
    };
    let kept = Layout { shape: p.kept_shape.clone(), strides: p.kept_strides.clone(), offset: t.offset() };
    let bases: Vec<usize> = kept.offsets().collect();
    let parallel = bases.len() * p.block >= 2 * PAR_CHUNK && rayon::current_num_threads() > 1;
    if k == 1 && run <= PAR_CHUNK {
        // One contiguous run per output (a sum over the last axis): the row kernel, on
        // pieces of about PAR_CHUNK elements. Same sums as `block`: 0 + sum_slice(run).
        let level = crate::kernels::simd::Isa::best();
        let mut out = vec![T::zero(); bases.len()];
        let rows = (PAR_CHUNK / run).max(1);
        if parallel {
            crate::par::chunks_mut(&mut out, rows, &|c, d| {
                vmath::sum_rows_at(level, st, &bases[c * rows..c * rows + d.len()], run, d)
            });
        } else {
            vmath::sum_rows_at(level, st, &bases, run, &mut out);
        }
        return out;
    }
    map_range(bases.len(), parallel, |i| block(bases[i]))
}

/// Sums over the reduced axes when the last axis is kept and contiguous: for every position
/// of the other kept axes, the rows `x[.., reduced position, .., 0..C]` are added into an
/// output row. The reduced positions are cut into at most [`MAX_PIECES`] fixed pieces of
/// whole rows; each piece adds its rows one after the other (row-major order), and the
/// pieces' partial rows are added left to right.
fn sum_columns<T: Element>(t: &Tensor<T>, p: &Plan) -> Vec<T> {
    let st = t.storage();
    let kr = p.kept_shape.len();
    let cols = p.kept_shape[kr - 1];
    let outer = Layout {
        shape: p.kept_shape[..kr - 1].to_vec(),
        strides: p.kept_strides[..kr - 1].to_vec(),
        offset: t.offset(),
    };
    let bases: Vec<usize> = outer.offsets().collect();
    let rows = relative_offsets(&p.red_shape, &p.red_strides);
    let per_piece = (4 * PAR_CHUNK / cols).max(rows.len().div_ceil(MAX_PIECES)).max(1);
    let n_pieces = rows.len().div_ceil(per_piece);
    let piece = |base: usize, i: usize, acc: &mut [T]| {
        for &r in &rows[i * per_piece..rows.len().min((i + 1) * per_piece)] {
            let start = at(base, r);
            acc.iter_mut().zip(&st[start..start + cols]).for_each(|(a, &v)| *a += v);
        }
    };
    let out_row = |base: usize, dst: &mut [T]| {
        if n_pieces == 1 {
            return piece(base, 0, dst);
        }
        let parts = map_range(n_pieces, true, |i| {
            let mut acc = vec![T::zero(); cols];
            piece(base, i, &mut acc);
            acc
        });
        for part in parts {
            dst.iter_mut().zip(&part).for_each(|(d, &v)| *d += v);
        }
    };
    let mut out = crate::filled(bases.len() * cols, T::zero());
    if bases.len() > 1 && out.len() * rows.len() >= 2 * PAR_CHUNK && rayon::current_num_threads() > 1 {
        crate::par::chunks_mut(&mut out, cols, &|i, dst| out_row(bases[i], dst));
    } else {
        out.chunks_mut(cols).zip(&bases).for_each(|(dst, &b)| out_row(b, dst));
    }
    out
}

/// Upper bound on the partial rows a column sum keeps per output row.
const MAX_PIECES: usize = 64;

impl<T: Element> Tensor<T> {
    fn finish(&self, p: &Plan, axes: &[usize], keepdim: bool, data: Vec<T>) -> Tensor<T> {
        if keepdim {
            Tensor::from_vec(data, &p.out_shape)
        } else {
            Tensor::from_vec(data, &drop_axes(self.shape(), axes))
        }
    }

    /// Sum over `axes` (any subset, any order; `&[]` reduces nothing).
    #[track_caller]
    pub fn sum(&self, axes: &[usize], keepdim: bool) -> Tensor<T> {
        let p = plan(self, axes, "sum");
        let data = if p.block == 0 || p.kept_shape.contains(&0) {
            vec![T::zero(); p.kept_shape.iter().product()]
        } else if p.red_strides.last() == Some(&1) && p.red_shape.last() >= Some(&8) {
            sum_runs(self, &p)
        } else if p.kept_strides.last() == Some(&1)
            && p.kept_shape.last() >= Some(&8)
            && !axes.contains(&(self.rank() - 1))
        {
            sum_columns(self, &p)
        } else {
            reduce_generic(self, &p, T::zero(), |a, x, _| a + x, |a, b| a + b)
        };
        self.finish(&p, axes, keepdim, data)
    }

    /// Sum of all elements, as a rank-0 tensor.
    pub fn sum_all(&self) -> Tensor<T> {
        let axes: Vec<usize> = (0..self.rank()).collect();
        self.sum(&axes, false)
    }

    /// Mean over `axes`.
    #[track_caller]
    pub fn mean(&self, axes: &[usize], keepdim: bool) -> Tensor<T> {
        let count: usize = axes.iter().map(|&a| self.dim(a)).product();
        self.sum(axes, keepdim).div_scalar(count as f64)
    }

    /// Mean of all elements, as a rank-0 tensor.
    pub fn mean_all(&self) -> Tensor<T> {
        self.sum_all().div_scalar(self.numel() as f64)
    }

    /// Maximum over `axes` and, for each output, the row-major position of the first maximal
    /// element within its reduced block (what the backward rule routes the gradient to).
    /// NaN is maximal. **Panics** when a reduced axis has length 0.
    #[track_caller]
    pub fn max_with_indices(&self, axes: &[usize], keepdim: bool) -> (Tensor<T>, Vec<usize>) {
        self.extreme(axes, keepdim, "max", true, true)
    }

    /// Minimum over `axes` and the position of the first minimal element (see
    /// [`Tensor::max_with_indices`]).
    #[track_caller]
    pub fn min_with_indices(&self, axes: &[usize], keepdim: bool) -> (Tensor<T>, Vec<usize>) {
        self.extreme(axes, keepdim, "min", false, true)
    }

    /// Maximum (`is_max`) or minimum over `axes`, with the positions when `want_index` (an
    /// empty vector otherwise). When each block is one contiguous run (e.g. the last axis of
    /// a row-major tensor) the run is reduced by the vectorised [`vmath`] kernel, in pieces
    /// of `PAR_CHUNK` combined left to right; otherwise element by element. Both pick the
    /// same element: the first NaN, else the first extreme one.
    #[track_caller]
    fn extreme(
        &self,
        axes: &[usize],
        keepdim: bool,
        op: &str,
        is_max: bool,
        want_index: bool,
    ) -> (Tensor<T>, Vec<usize>) {
        let p = plan(self, axes, op);
        assert!(p.block > 0, "{op}: cannot reduce over an empty axis of shape {:?}", self.shape());
        let better = |x: T, m: T| if is_max { x > m } else { x < m };
        // (value, position); NaN wins and sticks; ties keep the earlier position.
        let pick = |a: (T, usize), b: (T, usize)| -> (T, usize) {
            if a.0.is_nan() {
                a
            } else if b.0.is_nan() || better(b.0, a.0) {
                b
            } else {
                a
            }
        };
        if p.red_strides.len() == 1 && p.red_strides[0] == 1 {
            let (st, block) = (self.storage(), p.block);
            let kept = Layout { shape: p.kept_shape.clone(), strides: p.kept_strides.clone(), offset: self.offset() };
            let bases: Vec<usize> = kept.offsets().collect();
            let rows = bases.len();
            if block <= PAR_CHUNK && bases.windows(2).all(|w| w[1] == w[0] + block) {
                // Consecutive rows (the last axes of a contiguous tensor): whole pieces of rows
                // per kernel call, in fixed pieces of about PAR_CHUNK elements.
                let src = &st[bases[0]..bases[0] + rows * block];
                let (mut vals, mut idx) = (vec![T::zero(); rows], vec![0usize; rows]);
                let per = (PAR_CHUNK / block).max(1);
                if rows * block >= 2 * PAR_CHUNK && rayon::current_num_threads() > 1 {
                    crate::par::chunks2_mut(&mut vals, per, &mut idx, per, &|c, v, i| {
                        let s = &src[c * per * block..(c * per + v.len()) * block];
                        vmath::extreme_rows(s, block, is_max, want_index, v, i)
                    });
                } else {
                    vmath::extreme_rows(src, block, is_max, want_index, &mut vals, &mut idx);
                }
                return (self.finish(&p, axes, keepdim, vals), if want_index { idx } else { Vec::new() });
            }
            let run = |base: usize| -> (T, usize) {
                let s = &st[base..base + block];
                if block <= PAR_CHUNK {
                    return vmath::extreme(s, is_max, want_index);
                }
                let parts = map_range(block.div_ceil(PAR_CHUNK), true, |c| {
                    let (v, i) = vmath::extreme(&s[c * PAR_CHUNK..block.min((c + 1) * PAR_CHUNK)], is_max, want_index);
                    (v, i.wrapping_add(c * PAR_CHUNK))
                });
                parts.into_iter().reduce(pick).expect("a non-empty block")
            };
            let res = map_range(bases.len(), bases.len() * block >= 2 * PAR_CHUNK, |i| run(bases[i]));
            let (vals, idx): (Vec<T>, Vec<usize>) = res.into_iter().unzip();
            return (self.finish(&p, axes, keepdim, vals), if want_index { idx } else { Vec::new() });
        }
        let init = (T::nan(), usize::MAX);
        let res = reduce_generic(
            self,
            &p,
            init,
            |a, x, pos| {
                if a.1 == usize::MAX {
                    (x, pos)
                } else {
                    pick(a, (x, pos))
                }
            },
            |a, b| {
                if a.1 == usize::MAX {
                    b
                } else if b.1 == usize::MAX {
                    a
                } else {
                    pick(a, b)
                }
            },
        );
        let (vals, idx): (Vec<T>, Vec<usize>) = res.into_iter().unzip();
        (self.finish(&p, axes, keepdim, vals), idx)
    }

    /// Maximum over `axes` (NaN propagates; the value of [`Tensor::max_with_indices`]).
    #[track_caller]
    pub fn max(&self, axes: &[usize], keepdim: bool) -> Tensor<T> {
        self.extreme(axes, keepdim, "max", true, false).0
    }

    /// Minimum over `axes` (NaN propagates).
    #[track_caller]
    pub fn min(&self, axes: &[usize], keepdim: bool) -> Tensor<T> {
        self.extreme(axes, keepdim, "min", false, false).0
    }

    /// Index of the first maximum along `axis`, for every position of the other axes
    /// (row-major), e.g. the predicted class of each row of `[N, C]` logits.
    #[track_caller]
    pub fn argmax(&self, axis: usize) -> Vec<usize> {
        self.max_with_indices(&[axis], false).1
    }

    /// Index of the first minimum along `axis`.
    #[track_caller]
    pub fn argmin(&self, axis: usize) -> Vec<usize> {
        self.min_with_indices(&[axis], false).1
    }

    /// `log Σ exp(x)` over `axes`, shifted by the maximum so it cannot overflow; `−∞` when
    /// every element is `−∞`. Over one axis followed only by axes of length 1 (the last
    /// axis), every row is one call of the fused row kernel
    /// [`vmath::logsumexp_rows`](crate::kernels::vmath), which gives the bits of the composed
    /// definition below.
    #[track_caller]
    pub fn logsumexp(&self, axes: &[usize], keepdim: bool) -> Tensor<T> {
        if let [a] = *axes {
            if a < self.rank() && self.shape()[a + 1..].iter().all(|&d| d == 1) && self.dim(a) > 0 && self.numel() > 0 {
                let n = self.dim(a);
                let x = self.contiguous();
                let xs = x.as_slice().expect("contiguous");
                let mut out = vec![T::zero(); xs.len() / n];
                let rows_per_piece = (PAR_CHUNK / n).max(1);
                if xs.len() >= 2 * PAR_CHUNK && rayon::current_num_threads() > 1 {
                    crate::par::chunks_mut(&mut out, rows_per_piece, &|c, op| {
                        let lo = c * rows_per_piece * n;
                        vmath::logsumexp_rows(&xs[lo..lo + op.len() * n], n, op)
                    });
                } else {
                    vmath::logsumexp_rows(xs, n, &mut out);
                }
                let mut shape = self.shape().to_vec();
                if keepdim {
                    shape[a] = 1;
                } else {
                    shape.remove(a);
                }
                return Tensor::from_vec(out, &shape);
            }
        }
        let m = self.max(axes, true);
        let safe_m = m.map(|v| if v.is_finite() { v } else { T::zero() });
        let s = self.sub(&safe_m).exp().sum(axes, true);
        let out = s.log().add(&safe_m);
        if keepdim {
            out
        } else {
            out.reshape(&drop_axes(self.shape(), axes))
        }
    }

    /// `Σ |x|` over `axes`.
    #[track_caller]
    pub fn norm_l1(&self, axes: &[usize], keepdim: bool) -> Tensor<T> {
        self.abs().sum(axes, keepdim)
    }

    /// `sqrt(Σ x²)` over `axes`.
    #[track_caller]
    pub fn norm_l2(&self, axes: &[usize], keepdim: bool) -> Tensor<T> {
        self.square().sum(axes, keepdim).sqrt()
    }
}

/// Naive references: one nested loop per output, in `f64`. Tests and benches compare with them.
pub mod naive {
    use crate::{Element, Tensor};

    /// Sum over `axes` with keepdim, accumulated in `f64` in row-major order.
    pub fn sum<T: Element>(t: &Tensor<T>, axes: &[usize]) -> Tensor<T> {
        let out_shape: Vec<usize> =
            t.shape().iter().enumerate().map(|(i, &d)| if axes.contains(&i) { 1 } else { d }).collect();
        let mut acc = vec![0f64; out_shape.iter().product()];
        let out_strides = crate::layout::contiguous_strides(&out_shape);
        let mut idx = vec![0usize; t.rank()];
        for v in t.to_vec() {
            let o: isize = idx
                .iter()
                .enumerate()
                .map(|(k, &i)| if axes.contains(&k) { 0 } else { i as isize * out_strides[k] })
                .sum();
            acc[o as usize] += v.as_f64();
            for k in (0..t.rank()).rev() {
                idx[k] += 1;
                if idx[k] < t.shape()[k] {
                    break;
                }
                idx[k] = 0;
            }
        }
        Tensor::from_vec(acc.into_iter().map(T::of).collect(), &out_shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;

    #[test]
    fn sums_over_axis_sets_match_naive() {
        let mut rng = Rng::new(3);
        let x = Tensor::<f64>::randn(&[3, 4, 5, 2], &mut rng);
        let views = [x.clone(), x.permute(&[2, 0, 3, 1]), x.slice(2, 0, 5, 2)];
        for v in &views {
            for axes in [vec![], vec![0], vec![1, 3], vec![0, 1, 2, 3], vec![2, 0]] {
                let a = v.sum(&axes, true);
                let b = naive::sum(v, &axes);
                assert!(a.allclose(&b, 1e-12, 1e-12), "axes {axes:?}");
            }
        }
    }

    /// Every fast path (contiguous runs, column sums, the generic walk) against the naive f64
    /// reference, on layouts that pick each path, including long runs cut into pieces.
    #[test]
    fn fast_paths_match_naive() {
        let mut rng = Rng::new(8);
        let x = Tensor::<f64>::randn(&[6, 5, 40, 30], &mut rng);
        let cases: Vec<(Tensor<f64>, Vec<usize>)> = vec![
            (x.clone(), vec![0, 2, 3]),             // bias gradient: runs of 1200
            (x.clone(), vec![1, 3]),                // runs of 30
            (x.clone(), vec![0]),                   // column sum over rows of 6000
            (x.clone(), vec![0, 2]),                // columns, two kept axes
            (x.permute(&[0, 2, 1, 3]), vec![1, 3]), // runs through a permuted view
            (x.slice(3, 0, 30, 2), vec![3]),        // strided: generic path
            (x.reshape(&[36_000]), vec![0]),        // one run longer than PAR_CHUNK
            (x.reshape(&[2, 18_000]).t(), vec![1]), // generic, through a transposed view
            (x.slice(3, 0, 4, 1), vec![0, 3]),      // runs of 4: generic
        ];
        for (v, axes) in &cases {
            let got = v.sum(axes, true);
            assert!(got.allclose(&naive::sum(v, axes), 1e-12, 1e-12), "shape {:?} axes {axes:?}", v.shape());
        }
        let big = Tensor::<f64>::randn(&[4, 3 * PAR_CHUNK + 7], &mut rng);
        for axes in [vec![1], vec![0, 1], vec![0]] {
            assert!(big.sum(&axes, true).allclose(&naive::sum(&big, &axes), 1e-12, 1e-12), "axes {axes:?}");
        }
    }

    /// A sum over one contiguous axis goes through the row kernel (`vmath::sum_rows_at`):
    /// every output has the bits of `0 + sum_run(row)`, the order the module documents, for
    /// rows below and above the vector kernel's 256, evenly spaced or not (a permuted view),
    /// serial and in parallel.
    #[test]
    fn sums_over_the_last_axis_are_the_documented_order() {
        let mut rng = Rng::new(12);
        for n in [30, 255, 256, 300, 1024] {
            let x = Tensor::<f32>::randn(&[5, 2 * PAR_CHUNK / n + 3, n], &mut rng);
            for v in [x.clone(), x.permute(&[1, 0, 2])] {
                let rows = v.reshape(&[v.shape()[0] * v.shape()[1], n]); // a copy for the view
                let want: Vec<u32> = rows.to_vec().chunks(n).map(|r| (0.0f32 + sum_run(r)).to_bits()).collect();
                for t in [1, 2] {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
                    let got: Vec<u32> =
                        pool.install(|| v.sum(&[2], false)).to_vec().iter().map(|x| x.to_bits()).collect();
                    assert!(got == want, "rows of {n}, shape {:?}, {t} threads", v.shape());
                }
            }
        }
    }

    #[test]
    fn sums_are_identical_on_one_and_two_threads() {
        let mut rng = Rng::new(9);
        let x = Tensor::<f32>::randn(&[64, 20, 24, 24], &mut rng);
        let y = Tensor::<f32>::randn(&[3 * PAR_CHUNK + 5, 40], &mut rng);
        let run = |t: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
            pool.install(|| {
                [
                    x.sum(&[0, 2, 3], false),
                    x.sum(&[1], false),
                    y.sum(&[0], false),
                    y.sum_all(),
                    x.sum(&[0], false),
                    x.sum(&[3], false),
                ]
                .map(|t| t.to_vec())
            })
        };
        assert!(run(1) == run(2));
    }

    #[test]
    fn keepdim_and_drop() {
        let x = Tensor::<f64>::arange(24).reshape(&[2, 3, 4]);
        assert_eq!(x.sum(&[1], false).shape(), &[2, 4]);
        assert_eq!(x.sum(&[1], true).shape(), &[2, 1, 4]);
        assert_eq!(x.sum_all().item(), 276.0);
        assert_eq!(x.mean(&[0, 2], false).to_vec(), vec![7.5, 11.5, 15.5]);
    }

    #[test]
    fn max_and_argmax() {
        let x = Tensor::<f64>::from_vec(vec![1.0, 5.0, 5.0, -1.0, 0.0, 2.0], &[2, 3]);
        let (m, i) = x.max_with_indices(&[1], false);
        assert_eq!(m.to_vec(), vec![5.0, 2.0]);
        assert_eq!(i, vec![1, 2]); // first of the tied maxima
        assert_eq!(x.argmin(0), vec![1, 1, 1]); // column minima are all in row 1
        let n = Tensor::<f64>::from([1.0, f64::NAN, 3.0]);
        assert!(n.max(&[0], false).item().is_nan());
    }

    /// Rows of `n` values around the 32-lane blocks of the vectorised path, with NaN (one or
    /// two, either sign), ±∞, an all-−∞ row and signed-zero ties.
    fn awkward_rows<T: Element>(n: usize, rng: &mut Rng) -> Tensor<T> {
        let rows = 9;
        let mut x: Vec<T> = (0..rows * n).map(|_| T::of(rng.normal() * 5.0)).collect();
        x[n + n / 2] = T::nan(); // row 1
        x[2 * n + n - 1] = -T::nan(); // row 2: two NaNs
        x[2 * n + n / 3] = T::nan();
        x[3 * n..4 * n].fill(T::neg_infinity()); // row 3
        x[4 * n] = T::infinity(); // row 4
        x[5 * n + n - 1] = T::neg_infinity(); // row 5
        for (i, v) in x[6 * n..7 * n].iter_mut().enumerate() {
            *v = if i % 2 == 0 { -T::zero() } else { T::zero() }; // row 6: which zero is the max
        }
        for (i, v) in x[7 * n..8 * n].iter_mut().enumerate() {
            *v = if i % 3 == 1 { T::zero() } else { -T::zero() }; // row 7
        }
        for (i, v) in x[8 * n..9 * n].iter_mut().enumerate() {
            *v = T::of((i % 4) as f64); // row 8: a repeated maximum
        }
        Tensor::from_vec(x, &[rows, n])
    }

    /// The reference of max/min with indices: the generic element-by-element fold.
    fn naive_extreme<T: Element>(x: &Tensor<T>, is_max: bool) -> (Vec<T>, Vec<usize>) {
        let (r, n) = (x.dim(0), x.dim(1));
        let v = x.to_vec();
        (0..r)
            .map(|i| {
                let row = &v[i * n..(i + 1) * n];
                let mut best = (row[0], 0);
                for (j, &e) in row.iter().enumerate().skip(1) {
                    if !best.0.is_nan() && (e.is_nan() || (is_max && e > best.0) || (!is_max && e < best.0)) {
                        best = (e, j);
                    }
                }
                best
            })
            .unzip()
    }

    fn same_bits<T: Element>(a: &[T], b: &[T]) -> bool {
        bytemuck::cast_slice::<T, u8>(a) == bytemuck::cast_slice::<T, u8>(b)
    }

    fn extremes_over_the_last_axis_match_naive<T: Element>() {
        let mut rng = Rng::new(12);
        for n in [1usize, 2, 3, 7, 15, 16, 17, 31, 33, 1000] {
            let x = awkward_rows::<T>(n, &mut rng);
            for is_max in [true, false] {
                let (want_v, want_i) = naive_extreme(&x, is_max);
                let (v, i) = if is_max { x.max_with_indices(&[1], false) } else { x.min_with_indices(&[1], false) };
                assert!(same_bits(&v.to_vec(), &want_v), "n = {n}, max = {is_max}: {:?} vs {want_v:?}", v.to_vec());
                assert_eq!(i, want_i, "n = {n}, max = {is_max}");
                let v = if is_max { x.max(&[1], false) } else { x.min(&[1], false) };
                assert!(same_bits(&v.to_vec(), &want_v), "values only, n = {n}");
                assert_eq!(if is_max { x.argmax(1) } else { x.argmin(1) }, want_i, "arg, n = {n}");
                // The generic path (a strided view of the same rows) agrees.
                let xt = x.t().contiguous().t();
                let (v, i) = if is_max { xt.max_with_indices(&[1], false) } else { xt.min_with_indices(&[1], false) };
                assert!(same_bits(&v.to_vec(), &want_v) && i == want_i, "generic path, n = {n}");
            }
        }
        // One run longer than PAR_CHUNK, cut into pieces; the maximum and a NaN in later pieces.
        let mut v: Vec<T> = (0..3 * PAR_CHUNK + 5).map(|_| T::of(rng.normal())).collect();
        v[2 * PAR_CHUNK + 9] = T::of(100.0);
        v[PAR_CHUNK + 3] = T::of(100.0);
        let x = Tensor::from_vec(v.clone(), &[v.len()]);
        let (m, i) = x.max_with_indices(&[0], false);
        assert_eq!((m.item(), i), (T::of(100.0), vec![PAR_CHUNK + 3]));
        v[3 * PAR_CHUNK] = T::nan();
        let x = Tensor::from_vec(v, &[3 * PAR_CHUNK + 5]);
        assert_eq!(x.max_with_indices(&[0], false).1, vec![3 * PAR_CHUNK]);
        assert!(x.max(&[0], false).item().is_nan());
    }

    /// Many short rows, cut into parallel pieces of whole rows: the same values and positions
    /// on one and two threads as the generic path, with NaN and ties sprinkled in.
    #[test]
    fn row_pieces_give_the_same_extremes_on_any_thread_count() {
        let mut rng = Rng::new(14);
        let (r, c) = (3 * PAR_CHUNK / 8 + 5, 8);
        let mut v: Vec<f32> = (0..r * c).map(|_| rng.normal() as f32).collect();
        for i in (0..r * c).step_by(997) {
            v[i] = f32::NAN;
        }
        for i in (3..r * c).step_by(1013) {
            v[i] = v[i - 1];
        }
        let x = Tensor::from_vec(v, &[r, c]);
        let generic = x.t().contiguous().t(); // same rows, strided: the element-by-element fold
        let on = |t: usize, x: &Tensor<f32>| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
            pool.install(|| {
                let (m, i) = x.max_with_indices(&[1], false);
                let (n, j) = x.min_with_indices(&[1], false);
                (m.to_vec(), i, x.max(&[1], false).to_vec(), n.to_vec(), j)
            })
        };
        let (a, b, g) = (on(1, &x), on(2, &x), on(1, &generic));
        for (p, q) in [(&a, &b), (&a, &g)] {
            assert!(same_bits(&p.0, &q.0) && same_bits(&p.2, &q.2) && same_bits(&p.3, &q.3));
            assert_eq!((&p.1, &p.4), (&q.1, &q.4));
        }
    }

    #[test]
    fn max_min_and_their_indices_match_naive_on_awkward_rows() {
        extremes_over_the_last_axis_match_naive::<f32>();
        extremes_over_the_last_axis_match_naive::<f64>();
    }

    /// The composed definition of logsumexp that the fused rows reproduce bit for bit.
    fn composed_lse<T: Element>(x: &Tensor<T>, axis: usize) -> Tensor<T> {
        let m = x.max(&[axis], true).map(|v| if v.is_finite() { v } else { T::zero() });
        x.sub(&m).exp().sum(&[axis], true).log().add(&m)
    }

    #[test]
    fn fused_logsumexp_matches_the_composed_definition() {
        let mut rng = Rng::new(13);
        for n in [1usize, 2, 3, 7, 15, 16, 17, 31, 33, 1000] {
            let x = awkward_rows::<f64>(n, &mut rng);
            let x32 = awkward_rows::<f32>(n, &mut rng);
            assert!(same_bits(&x.logsumexp(&[1], true).to_vec(), &composed_lse(&x, 1).to_vec()), "f64 n = {n}");
            assert!(same_bits(&x32.logsumexp(&[1], true).to_vec(), &composed_lse(&x32, 1).to_vec()), "f32 n = {n}");
            assert_eq!(x.logsumexp(&[1], false).shape(), &[9]);
            let x3 = x.unsqueeze(2);
            assert!(same_bits(&x3.logsumexp(&[1], false).to_vec(), &composed_lse(&x, 1).to_vec()), "trailing 1");
            assert!(same_bits(&x.t().logsumexp(&[0], true).to_vec(), &composed_lse(&x.t(), 0).to_vec()), "axis 0");
        }
        let wide = Tensor::<f32>::randn(&[3, 2 * PAR_CHUNK + 3], &mut rng).mul_scalar(20.0);
        assert!(same_bits(&wide.logsumexp(&[1], false).to_vec(), &composed_lse(&wide, 1).to_vec()), "long rows");
        let many = Tensor::<f32>::randn(&[3 * PAR_CHUNK / 4 + 1, 4], &mut rng);
        let on = |t: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
            pool.install(|| many.logsumexp(&[1], false).to_vec())
        };
        assert!(same_bits(&on(1), &on(2)) && same_bits(&on(1), &composed_lse(&many, 1).to_vec()), "many rows");
    }

    #[test]
    fn logsumexp_is_stable() {
        let x = Tensor::<f32>::from([1000.0, 1000.0]);
        let v = x.logsumexp(&[0], false).item();
        assert!((v - (1000.0 + 2f32.ln())).abs() < 1e-3);
        let y = Tensor::<f32>::from([f32::NEG_INFINITY, f32::NEG_INFINITY]);
        assert_eq!(y.logsumexp(&[0], false).item(), f32::NEG_INFINITY);
    }

    #[test]
    fn big_reduction_is_chunked_and_exact_for_integers() {
        let n = 3 * PAR_CHUNK + 5;
        let x = Tensor::<f64>::ones(&[n]);
        assert_eq!(x.sum_all().item(), n as f64);
        let y = Tensor::<f64>::ones(&[2, n]).t();
        assert_eq!(y.sum(&[0], false).to_vec(), vec![n as f64; 2]);
    }
}
