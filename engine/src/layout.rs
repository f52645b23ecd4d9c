//! Shapes, strides and offsets: where element `[i0, i1, …]` of a tensor lives in its storage.
//!
//! A [`Layout`] is a plain value. Every view operation (transpose, permute, narrow, slice,
//! broadcast, squeeze, unsqueeze, and reshape when the strides allow it) computes a new
//! `Layout` and moves no data.

use std::fmt;

/// Element `[i0, i1, …]` is at `offset + Σ i_k · strides[k]` (in elements, not bytes).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    pub shape: Vec<usize>,
    pub strides: Vec<isize>,
    pub offset: usize,
}

/// Row-major (C order) strides of a shape.
pub fn contiguous_strides(shape: &[usize]) -> Vec<isize> {
    let mut strides = vec![0isize; shape.len()];
    let mut acc = 1isize;
    for (s, &d) in strides.iter_mut().zip(shape).rev() {
        *s = acc;
        acc *= d.max(1) as isize;
    }
    strides
}

/// Number of elements of a shape (1 for a scalar).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Number of elements of a shape, or `None` on overflow (for shapes read from files).
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// NumPy broadcasting: align trailing axes; each pair must be equal or contain a 1.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i < rank - a.len() { 1 } else { a[i - (rank - a.len())] };
        let db = if i < rank - b.len() { 1 } else { b[i - (rank - b.len())] };
        out[i] = if da == db {
            da
        } else if da == 1 {
            db
        } else if db == 1 {
            da
        } else {
            return None;
        };
    }
    Some(out)
}

impl Layout {
    /// Row-major layout of `shape` starting at offset 0.
    pub fn contiguous(shape: &[usize]) -> Layout {
        Layout { shape: shape.to_vec(), strides: contiguous_strides(shape), offset: 0 }
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// True when the elements are stored row-major without gaps (the offset may be nonzero).
    /// Axes of length 1 may have any stride.
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1isize;
        for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
            if d == 0 {
                return true;
            }
            if d != 1 {
                if s != expected {
                    return false;
                }
                expected *= d as isize;
            }
        }
        true
    }

    /// `Some(offset..offset + numel)` when the layout is contiguous.
    pub fn contiguous_range(&self) -> Option<std::ops::Range<usize>> {
        if self.is_contiguous() {
            Some(self.offset..self.offset + self.numel())
        } else {
            None
        }
    }

    /// Smallest and one-past-largest storage offsets this layout addresses. `None` when the
    /// layout is empty, or when a negative stride would reach below offset 0 (such a layout
    /// is invalid for any storage).
    pub fn span(&self) -> Option<(usize, usize)> {
        if self.numel() == 0 {
            return None;
        }
        let mut lo = self.offset as isize;
        let mut hi = self.offset as isize;
        for (&d, &s) in self.shape.iter().zip(&self.strides) {
            let ext = (d as isize - 1) * s;
            if ext < 0 {
                lo += ext;
            } else {
                hi += ext;
            }
        }
        if lo < 0 {
            return None;
        }
        Some((lo as usize, hi as usize + 1))
    }

    /// True when two different indices can address the same storage element (a zero stride
    /// on an axis longer than 1, as produced by broadcasting).
    pub fn has_aliasing(&self) -> bool {
        self.shape.iter().zip(&self.strides).any(|(&d, &s)| d > 1 && s == 0)
    }

    /// Storage offset of a multi-index. **Panics** if the index is out of bounds.
    #[track_caller]
    pub fn offset_of(&self, index: &[usize]) -> usize {
        assert_eq!(index.len(), self.rank(), "index {index:?} has the wrong rank for shape {:?}", self.shape);
        let mut off = self.offset as isize;
        for ((&i, &d), &s) in index.iter().zip(&self.shape).zip(&self.strides) {
            assert!(i < d, "index {index:?} out of bounds for shape {:?}", self.shape);
            off += i as isize * s;
        }
        off as usize
    }

    /// Reorders the axes: axis `k` of the result is axis `perm[k]` of `self`.
    /// **Panics** if `perm` is not a permutation of `0..rank`.
    #[track_caller]
    pub fn permute(&self, perm: &[usize]) -> Layout {
        let r = self.rank();
        let mut seen = vec![false; r];
        let valid = perm.len() == r && perm.iter().all(|&p| p < r && !std::mem::replace(&mut seen[p], true));
        assert!(valid, "permute: {perm:?} is not a permutation of the axes of shape {:?}", self.shape);
        Layout {
            shape: perm.iter().map(|&p| self.shape[p]).collect(),
            strides: perm.iter().map(|&p| self.strides[p]).collect(),
            offset: self.offset,
        }
    }

    /// Swaps axes `a` and `b`. **Panics** if either is not below the rank.
    #[track_caller]
    pub fn transpose(&self, a: usize, b: usize) -> Layout {
        assert!(
            a < self.rank() && b < self.rank(),
            "transpose: axes ({a}, {b}) out of range for shape {:?}",
            self.shape
        );
        let mut l = self.clone();
        l.shape.swap(a, b);
        l.strides.swap(a, b);
        l
    }

    /// Keeps indices `start..start + len` of `axis`. **Panics** when out of range.
    #[track_caller]
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Layout {
        self.slice(axis, start, start + len, 1)
    }

    /// Keeps indices `start, start + step, …` below `end` of `axis` (`step ≥ 1`).
    /// **Panics** when `axis`, `start..end` or `step` is invalid.
    #[track_caller]
    pub fn slice(&self, axis: usize, start: usize, end: usize, step: usize) -> Layout {
        assert!(axis < self.rank(), "slice: axis {axis} out of range for shape {:?}", self.shape);
        assert!(step >= 1, "slice: step must be at least 1 (got 0)");
        assert!(
            start <= end && end <= self.shape[axis],
            "slice: range {start}..{end} out of bounds for axis {axis} of shape {:?}",
            self.shape
        );
        let mut l = self.clone();
        let len = (end - start).div_ceil(step);
        if len > 0 {
            l.offset = (self.offset as isize + start as isize * self.strides[axis]) as usize;
        }
        l.shape[axis] = len;
        l.strides[axis] = self.strides[axis] * step as isize;
        l
    }

    /// Broadcasts to `shape` (NumPy rules; new axes are prepended, axes of length 1 get
    /// stride 0). **Panics** if the shapes are not compatible.
    #[track_caller]
    pub fn broadcast_to(&self, shape: &[usize]) -> Layout {
        let ok = shape.len() >= self.rank()
            && self.shape.iter().rev().zip(shape.iter().rev()).all(|(&a, &b)| a == b || a == 1);
        assert!(ok, "broadcast_to: cannot broadcast shape {:?} to {:?}", self.shape, shape);
        let lead = shape.len() - self.rank();
        let strides = (0..shape.len())
            .map(|i| {
                if i < lead {
                    0
                } else {
                    let j = i - lead;
                    if self.shape[j] == 1 && shape[i] != 1 {
                        0
                    } else {
                        self.strides[j]
                    }
                }
            })
            .collect();
        Layout { shape: shape.to_vec(), strides, offset: self.offset }
    }

    /// Inserts an axis of length 1 at position `axis` (`axis ≤ rank`).
    #[track_caller]
    pub fn unsqueeze(&self, axis: usize) -> Layout {
        assert!(axis <= self.rank(), "unsqueeze: axis {axis} out of range for shape {:?}", self.shape);
        let mut l = self.clone();
        let stride = if axis < self.rank() { self.strides[axis] * self.shape[axis] as isize } else { 1 };
        l.shape.insert(axis, 1);
        l.strides.insert(axis, stride);
        l
    }

    /// Removes axis `axis`, which must have length 1.
    #[track_caller]
    pub fn squeeze(&self, axis: usize) -> Layout {
        assert!(
            axis < self.rank() && self.shape[axis] == 1,
            "squeeze: axis {axis} of shape {:?} does not have length 1",
            self.shape
        );
        let mut l = self.clone();
        l.shape.remove(axis);
        l.strides.remove(axis);
        l
    }

    /// A layout of `shape` over the same elements in the same row-major order, if one exists
    /// without moving data (NumPy's no-copy reshape). `None` means a copy is needed.
    pub fn reshape_view(&self, shape: &[usize]) -> Option<Layout> {
        if numel(shape) != self.numel() {
            return None;
        }
        if self.is_contiguous() {
            return Some(Layout { shape: shape.to_vec(), strides: contiguous_strides(shape), offset: self.offset });
        }
        if self.numel() == 0 {
            return Some(Layout { shape: shape.to_vec(), strides: contiguous_strides(shape), offset: self.offset });
        }
        // Port of NumPy's `_attempt_nocopy_reshape` (C order).
        let (od, os): (Vec<usize>, Vec<isize>) =
            self.shape.iter().zip(&self.strides).filter(|(&d, _)| d != 1).map(|(&d, &s)| (d, s)).unzip();
        let nd: Vec<usize> = shape.to_vec();
        let mut ns = vec![0isize; nd.len()];
        let (mut oi, mut oj, mut ni, mut nj) = (0usize, 1usize, 0usize, 1usize);
        while ni < nd.len() && oi < od.len() {
            let mut np = nd[ni];
            let mut op = od[oi];
            while np != op {
                if np < op {
                    np *= nd[nj];
                    nj += 1;
                } else {
                    op *= od[oj];
                    oj += 1;
                }
            }
            for ok in oi..oj - 1 {
                if os[ok] != od[ok + 1] as isize * os[ok + 1] {
                    return None;
                }
            }
            ns[nj - 1] = os[oj - 1];
            for nk in (ni + 1..nj).rev() {
                ns[nk - 1] = ns[nk] * nd[nk] as isize;
            }
            ni = nj;
            nj += 1;
            oi = oj;
            oj += 1;
        }
        // Trailing axes of length 1.
        let last = if ni >= 1 { ns[ni - 1] } else { 1 };
        for s in ns.iter_mut().skip(ni) {
            *s = last;
        }
        Some(Layout { shape: nd, strides: ns, offset: self.offset })
    }

    /// Iterator over the storage offsets of all elements in row-major logical order.
    pub fn offsets(&self) -> Offsets {
        Offsets::new(self)
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shape {:?} strides {:?} offset {}", self.shape, self.strides, self.offset)
    }
}

/// Iterator over storage offsets in row-major logical order (see [`Layout::offsets`]).
pub struct Offsets {
    shape: Vec<usize>,
    strides: Vec<isize>,
    index: Vec<usize>,
    current: isize,
    remaining: usize,
}

impl Offsets {
    fn new(l: &Layout) -> Offsets {
        Offsets {
            shape: l.shape.clone(),
            strides: l.strides.clone(),
            index: vec![0; l.rank()],
            current: l.offset as isize,
            remaining: l.numel(),
        }
    }
}

impl Iterator for Offsets {
    type Item = usize;
    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }
        let out = self.current as usize;
        self.remaining -= 1;
        for k in (0..self.shape.len()).rev() {
            self.index[k] += 1;
            self.current += self.strides[k];
            if self.index[k] < self.shape[k] {
                break;
            }
            self.current -= self.strides[k] * self.shape[k] as isize;
            self.index[k] = 0;
        }
        Some(out)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Offsets {}

/// Merges adjacent axes that are laid out contiguously with respect to each other in *every*
/// one of `strides`, and drops axes of length 1. The returned shape/strides address the same
/// elements in the same order; inner loops then run over longer rows.
pub fn coalesce<const K: usize>(shape: &[usize], strides: [&[isize]; K]) -> (Vec<usize>, [Vec<isize>; K]) {
    let mut out_shape: Vec<usize> = Vec::with_capacity(shape.len());
    let mut out_strides: [Vec<isize>; K] = std::array::from_fn(|_| Vec::with_capacity(shape.len()));
    for (ax, &d) in shape.iter().enumerate() {
        if d == 1 {
            continue;
        }
        if let Some(&last) = out_shape.last() {
            let mergeable = (0..K).all(|k| *out_strides[k].last().unwrap() == strides[k][ax] * d as isize);
            if mergeable {
                *out_shape.last_mut().unwrap() = last * d;
                for k in 0..K {
                    *out_strides[k].last_mut().unwrap() = strides[k][ax];
                }
                continue;
            }
        }
        out_shape.push(d);
        for k in 0..K {
            out_strides[k].push(strides[k][ax]);
        }
    }
    (out_shape, out_strides)
}

/// Visits `count` elements of `K` layouts that share one shape, in row-major order, starting
/// at linear index `start`; calls `f` with the `K` storage offsets of each element.
/// This is the strided inner loop of every element-wise kernel.
#[inline]
pub fn walk<const K: usize>(
    shape: &[usize],
    strides: &[Vec<isize>; K],
    offsets: [usize; K],
    start: usize,
    count: usize,
    mut f: impl FnMut([usize; K]),
) {
    let rank = shape.len();
    if count == 0 {
        return;
    }
    if rank == 0 {
        f(offsets);
        return;
    }
    // Multi-index of `start`.
    let mut index = vec![0usize; rank];
    let mut rem = start;
    for ax in (0..rank).rev() {
        index[ax] = rem % shape[ax];
        rem /= shape[ax];
    }
    let mut cur: [isize; K] = std::array::from_fn(|k| {
        offsets[k] as isize + index.iter().zip(&strides[k]).map(|(&i, &s)| i as isize * s).sum::<isize>()
    });
    let last = rank - 1;
    let inner: [isize; K] = std::array::from_fn(|k| strides[k][last]);
    let mut left = count;
    while left > 0 {
        let run = (shape[last] - index[last]).min(left);
        for _ in 0..run {
            f(std::array::from_fn(|k| cur[k] as usize));
            for k in 0..K {
                cur[k] += inner[k];
            }
        }
        index[last] += run;
        left -= run;
        if left == 0 {
            break;
        }
        // The row is finished: rewind to its start and carry into the outer axes.
        for k in 0..K {
            cur[k] -= index[last] as isize * inner[k];
        }
        index[last] = 0;
        let mut ax = last;
        loop {
            if ax == 0 {
                return;
            }
            ax -= 1;
            index[ax] += 1;
            for k in 0..K {
                cur[k] += strides[k][ax];
            }
            if index[ax] < shape[ax] {
                break;
            }
            for k in 0..K {
                cur[k] -= strides[k][ax] * shape[ax] as isize;
            }
            index[ax] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_of_transposed_layout() {
        let l = Layout::contiguous(&[2, 3]).transpose(0, 1);
        assert_eq!(l.offsets().collect::<Vec<_>>(), vec![0, 3, 1, 4, 2, 5]);
    }

    #[test]
    fn span_rejects_negative_reach() {
        let l = Layout { shape: vec![3], strides: vec![-1], offset: 1 };
        assert_eq!(l.span(), None);
        let l = Layout { shape: vec![3], strides: vec![-1], offset: 2 };
        assert_eq!(l.span(), Some((0, 3)));
    }

    #[test]
    fn slice_with_step() {
        let l = Layout::contiguous(&[10]).slice(0, 1, 8, 3);
        assert_eq!(l.offsets().collect::<Vec<_>>(), vec![1, 4, 7]);
    }

    #[test]
    fn broadcast_gives_zero_strides() {
        let l = Layout::contiguous(&[3, 1]).broadcast_to(&[2, 3, 4]);
        assert_eq!(l.strides, vec![0, 1, 0]);
        assert!(l.has_aliasing());
    }

    #[test]
    fn reshape_view_of_transposed_needs_copy() {
        let l = Layout::contiguous(&[2, 3]).transpose(0, 1);
        assert!(l.reshape_view(&[6]).is_none());
        // Splitting an axis of a non-contiguous layout needs no copy.
        let l = Layout::contiguous(&[4, 6]).transpose(0, 1); // [6, 4] strides [1, 6]
        let r = l.reshape_view(&[2, 3, 4]).unwrap();
        assert_eq!(r.strides, vec![3, 1, 6]);
        let a: Vec<usize> = l.offsets().collect();
        let b: Vec<usize> = r.offsets().collect();
        assert_eq!(a, b);
    }

    #[test]
    fn walk_matches_offsets_from_any_start() {
        let l = Layout::contiguous(&[3, 4, 5]).permute(&[2, 0, 1]).slice(1, 0, 3, 2);
        let all: Vec<usize> = l.offsets().collect();
        let strides = [l.strides.clone()];
        for start in 0..all.len() {
            let mut got = vec![];
            walk(&l.shape, &strides, [l.offset], start, all.len() - start, |[o]| got.push(o));
            assert_eq!(got, all[start..].to_vec(), "start {start}");
        }
    }

    #[test]
    fn coalesce_merges_contiguous_axes() {
        let s = contiguous_strides(&[2, 3, 4]);
        let (shape, [st]) = coalesce(&[2, 3, 4], [&s]);
        assert_eq!(shape, vec![24]);
        assert_eq!(st, vec![1]);
    }
}
