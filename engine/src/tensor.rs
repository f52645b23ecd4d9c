//! [`Tensor`]: shared storage plus a [`Layout`]. Cloning a tensor or taking a view never copies
//! elements; kernels allocate their outputs.

use std::fmt;
use std::sync::Arc;

use crate::layout::{self, Layout};
use crate::{Element, Rng};

/// An n-dimensional array of `f32` or `f64`, possibly a strided view of shared storage.
///
/// Error policy (see the crate docs): misuse — incompatible shapes, an axis out of range, an
/// invalid argument — **panics** with a message naming the operation and the shapes, at the
/// caller's location (`#[track_caller]`). Conditions that come from data rather than from the
/// program (files, user-given shapes, numerical failure) are `Result`s; see [`crate::Error`].
#[derive(Clone)]
pub struct Tensor<T: Element> {
    storage: Arc<Vec<T>>,
    layout: Layout,
}

/// The last reference to a large buffer hands it to [`crate::recycle`], so the next output of
/// the same size reuses its pages instead of faulting in fresh ones.
impl<T: Element> Drop for Tensor<T> {
    fn drop(&mut self) {
        if let Some(v) = Arc::get_mut(&mut self.storage) {
            if v.capacity() * std::mem::size_of::<T>() >= crate::recycle::MIN_BYTES {
                crate::recycle::give(std::mem::take(v));
            }
        }
    }
}

impl<T: Element> Tensor<T> {
    // ------------------------------------------------------------------ construction

    /// Wraps `data` (row-major) as a tensor of `shape`.
    /// **Panics** if `data.len()` differs from the product of `shape`.
    #[track_caller]
    pub fn from_vec(data: Vec<T>, shape: &[usize]) -> Tensor<T> {
        assert_eq!(data.len(), layout::numel(shape), "from_vec: {} values do not fill shape {:?}", data.len(), shape);
        Tensor { storage: Arc::new(data), layout: Layout::contiguous(shape) }
    }

    /// Like [`Tensor::from_vec`] but returns an error instead of panicking.
    pub fn try_from_vec(data: Vec<T>, shape: &[usize]) -> crate::Result<Tensor<T>> {
        match layout::checked_numel(shape) {
            Some(n) if n == data.len() => Ok(Tensor::from_vec(data, shape)),
            _ => Err(crate::Error::Shape {
                op: "from_vec",
                msg: format!("{} values do not fill shape {:?}", data.len(), shape),
            }),
        }
    }

    /// A tensor over existing shared storage with an explicit layout.
    /// **Panics** if the layout addresses elements outside the storage.
    #[track_caller]
    pub fn from_storage(storage: Arc<Vec<T>>, layout: Layout) -> Tensor<T> {
        let span = layout.span();
        assert!(
            span.is_some_and(|(_, hi)| hi <= storage.len()) || (span.is_none() && layout.numel() == 0),
            "from_storage: layout ({layout}) addresses elements outside a storage of {}",
            storage.len()
        );
        Tensor { storage, layout }
    }

    /// A rank-0 tensor.
    pub fn scalar(v: T) -> Tensor<T> {
        Tensor::from_vec(vec![v], &[])
    }

    /// A tensor of `shape` filled with `v`.
    pub fn full(shape: &[usize], v: T) -> Tensor<T> {
        Tensor::from_vec(crate::filled(layout::numel(shape), v), shape)
    }

    pub fn zeros(shape: &[usize]) -> Tensor<T> {
        Tensor::full(shape, T::zero())
    }

    pub fn ones(shape: &[usize]) -> Tensor<T> {
        Tensor::full(shape, T::one())
    }

    pub fn zeros_like(&self) -> Tensor<T> {
        Tensor::zeros(self.shape())
    }

    pub fn ones_like(&self) -> Tensor<T> {
        Tensor::ones(self.shape())
    }

    /// `[0, 1, …, n − 1]`, shape `[n]`.
    pub fn arange(n: usize) -> Tensor<T> {
        Tensor::from_vec((0..n).map(|i| T::of(i as f64)).collect(), &[n])
    }

    /// `start, start + step, …` below `end` (like `numpy.arange`). **Panics** if `step` is 0
    /// or not finite.
    #[track_caller]
    pub fn arange_step(start: f64, end: f64, step: f64) -> Tensor<T> {
        assert!(step != 0.0 && step.is_finite(), "arange_step: invalid step {step}");
        let n = ((end - start) / step).ceil().max(0.0) as usize;
        Tensor::from_vec((0..n).map(|i| T::of(start + i as f64 * step)).collect(), &[n])
    }

    /// `shape` filled by `f(multi_index)` in row-major order.
    pub fn from_fn(shape: &[usize], mut f: impl FnMut(&[usize]) -> T) -> Tensor<T> {
        let n = layout::numel(shape);
        let mut idx = vec![0usize; shape.len()];
        let mut data = Vec::with_capacity(n);
        for _ in 0..n {
            data.push(f(&idx));
            for k in (0..shape.len()).rev() {
                idx[k] += 1;
                if idx[k] < shape[k] {
                    break;
                }
                idx[k] = 0;
            }
        }
        Tensor::from_vec(data, shape)
    }

    /// Uniform in `[0, 1)`, drawn in row-major order from `rng`.
    pub fn rand(shape: &[usize], rng: &mut Rng) -> Tensor<T> {
        Tensor::rand_uniform(shape, 0.0, 1.0, rng)
    }

    /// Uniform in `[lo, hi)`.
    pub fn rand_uniform(shape: &[usize], lo: f64, hi: f64, rng: &mut Rng) -> Tensor<T> {
        let n = layout::numel(shape);
        Tensor::from_vec((0..n).map(|_| T::of(rng.uniform_in(lo, hi))).collect(), shape)
    }

    /// Standard normal, drawn in row-major order from `rng`.
    pub fn randn(shape: &[usize], rng: &mut Rng) -> Tensor<T> {
        let n = layout::numel(shape);
        Tensor::from_vec((0..n).map(|_| T::of(rng.normal())).collect(), shape)
    }

    // ------------------------------------------------------------------ accessors

    pub fn shape(&self) -> &[usize] {
        &self.layout.shape
    }

    pub fn strides(&self) -> &[isize] {
        &self.layout.strides
    }

    pub fn offset(&self) -> usize {
        self.layout.offset
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn rank(&self) -> usize {
        self.layout.rank()
    }

    pub fn numel(&self) -> usize {
        self.layout.numel()
    }

    /// Length of axis `axis`. **Panics** if out of range.
    #[track_caller]
    pub fn dim(&self, axis: usize) -> usize {
        assert!(axis < self.rank(), "dim: axis {axis} out of range for shape {:?}", self.shape());
        self.layout.shape[axis]
    }

    /// The whole underlying buffer (which a view may address only part of).
    pub fn storage(&self) -> &[T] {
        &self.storage
    }

    /// The shared buffer itself.
    pub fn storage_arc(&self) -> &Arc<Vec<T>> {
        &self.storage
    }

    /// True when `self` and `other` share one buffer.
    pub fn shares_storage(&self, other: &Tensor<T>) -> bool {
        Arc::ptr_eq(&self.storage, &other.storage)
    }

    pub fn is_contiguous(&self) -> bool {
        self.layout.is_contiguous()
    }

    /// The elements as one row-major slice, when the layout is contiguous.
    pub fn as_slice(&self) -> Option<&[T]> {
        self.layout.contiguous_range().map(|r| &self.storage[r])
    }

    /// The elements in row-major logical order (a copy).
    pub fn to_vec(&self) -> Vec<T> {
        match self.as_slice() {
            Some(s) => s.to_vec(),
            None => self.layout.offsets().map(|o| self.storage[o]).collect(),
        }
    }

    /// The elements converted to `f64`, row-major.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        self.to_vec().into_iter().map(T::as_f64).collect()
    }

    /// Element at a multi-index. **Panics** when out of bounds.
    #[track_caller]
    pub fn get(&self, index: &[usize]) -> T {
        self.storage[self.layout.offset_of(index)]
    }

    /// The value of a tensor with exactly one element. **Panics** otherwise.
    #[track_caller]
    pub fn item(&self) -> T {
        assert_eq!(self.numel(), 1, "item: tensor of shape {:?} is not a single value", self.shape());
        self.storage[self.layout.offset]
    }

    /// A mutable row-major slice over the elements, copying first when the storage is shared
    /// or the layout is not contiguous over the whole buffer (copy-on-write).
    pub fn make_mut(&mut self) -> &mut [T] {
        let whole = self.layout.offset == 0 && self.layout.is_contiguous() && self.numel() == self.storage.len();
        if !whole || Arc::get_mut(&mut self.storage).is_none() {
            let data = self.to_vec();
            self.storage = Arc::new(data);
            self.layout = Layout::contiguous(&self.layout.shape);
        }
        Arc::get_mut(&mut self.storage).expect("storage is unique after copy").as_mut_slice()
    }

    /// Consumes the tensor and returns its elements row-major (no copy when possible).
    pub fn into_vec(mut self) -> Vec<T> {
        let _ = self.make_mut();
        // `Tensor` has a `Drop` (it gives its buffer back, `recycle`): take the storage out.
        match Arc::try_unwrap(std::mem::take(&mut self.storage)) {
            Ok(v) => v,
            Err(a) => a.to_vec(),
        }
    }

    /// Converts the element type (`f32` ↔ `f64`).
    pub fn cast<U: Element>(&self) -> Tensor<U> {
        Tensor::from_vec(self.to_vec().into_iter().map(|v| U::of(v.as_f64())).collect(), self.shape())
    }

    // ------------------------------------------------------------------ views (no copy)

    fn with_layout(&self, layout: Layout) -> Tensor<T> {
        Tensor { storage: Arc::clone(&self.storage), layout }
    }

    /// Reorders axes: axis `k` of the result is axis `perm[k]` of `self`. No copy.
    #[track_caller]
    pub fn permute(&self, perm: &[usize]) -> Tensor<T> {
        self.with_layout(self.layout.permute(perm))
    }

    /// Swaps two axes. No copy.
    #[track_caller]
    pub fn transpose(&self, a: usize, b: usize) -> Tensor<T> {
        self.with_layout(self.layout.transpose(a, b))
    }

    /// Transpose of a matrix (rank 2). No copy. **Panics** for other ranks.
    #[track_caller]
    pub fn t(&self) -> Tensor<T> {
        assert_eq!(self.rank(), 2, "t: expected a matrix, got shape {:?}", self.shape());
        self.transpose(0, 1)
    }

    /// Indices `start..start + len` of `axis`. No copy.
    #[track_caller]
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Tensor<T> {
        self.with_layout(self.layout.narrow(axis, start, len))
    }

    /// Indices `start, start + step, …` below `end` of `axis`. No copy.
    #[track_caller]
    pub fn slice(&self, axis: usize, start: usize, end: usize, step: usize) -> Tensor<T> {
        self.with_layout(self.layout.slice(axis, start, end, step))
    }

    /// Index `i` of axis `axis`, removing that axis. No copy.
    #[track_caller]
    pub fn select(&self, axis: usize, i: usize) -> Tensor<T> {
        self.narrow(axis, i, 1).squeeze(axis)
    }

    /// NumPy broadcast to `shape` (stride 0 on repeated axes). No copy.
    #[track_caller]
    pub fn broadcast_to(&self, shape: &[usize]) -> Tensor<T> {
        self.with_layout(self.layout.broadcast_to(shape))
    }

    /// Same as [`Tensor::broadcast_to`] (PyTorch's name).
    #[track_caller]
    pub fn expand(&self, shape: &[usize]) -> Tensor<T> {
        self.broadcast_to(shape)
    }

    /// Inserts an axis of length 1. No copy.
    #[track_caller]
    pub fn unsqueeze(&self, axis: usize) -> Tensor<T> {
        self.with_layout(self.layout.unsqueeze(axis))
    }

    /// Removes an axis of length 1. No copy.
    #[track_caller]
    pub fn squeeze(&self, axis: usize) -> Tensor<T> {
        self.with_layout(self.layout.squeeze(axis))
    }

    /// Same elements, new shape, row-major order. A view when the strides allow it, a copy
    /// otherwise. **Panics** if the element counts differ.
    #[track_caller]
    pub fn reshape(&self, shape: &[usize]) -> Tensor<T> {
        assert_eq!(
            layout::numel(shape),
            self.numel(),
            "reshape: cannot reshape {:?} ({} elements) to {:?}",
            self.shape(),
            self.numel(),
            shape
        );
        match self.layout.reshape_view(shape) {
            Some(l) => self.with_layout(l),
            None => Tensor::from_vec(self.to_vec(), shape),
        }
    }

    /// Merges axes `start..=end` into one. A view when possible.
    #[track_caller]
    pub fn flatten(&self, start: usize, end: usize) -> Tensor<T> {
        assert!(
            start <= end && end < self.rank(),
            "flatten: axes {start}..={end} out of range for shape {:?}",
            self.shape()
        );
        let mut shape: Vec<usize> = self.shape()[..start].to_vec();
        shape.push(self.shape()[start..=end].iter().product());
        shape.extend_from_slice(&self.shape()[end + 1..]);
        self.reshape(&shape)
    }

    /// A row-major copy, or `self` (shared, no copy) when already contiguous.
    pub fn contiguous(&self) -> Tensor<T> {
        if self.is_contiguous() {
            self.clone()
        } else {
            Tensor::from_vec(self.to_vec(), self.shape())
        }
    }

    /// A fresh row-major copy that shares nothing with `self`.
    pub fn deep_clone(&self) -> Tensor<T> {
        Tensor::from_vec(self.to_vec(), self.shape())
    }

    /// The main diagonal of a square or rectangular matrix, shape `[min(m, n)]`. No copy.
    #[track_caller]
    pub fn diagonal(&self) -> Tensor<T> {
        assert_eq!(self.rank(), 2, "diagonal: expected a matrix, got shape {:?}", self.shape());
        let n = self.dim(0).min(self.dim(1));
        self.with_layout(Layout {
            shape: vec![n],
            strides: vec![self.strides()[0] + self.strides()[1]],
            offset: self.offset(),
        })
    }

    /// True when shapes are equal and every pair of elements satisfies
    /// `|a − b| ≤ atol + rtol·|b|`, or both are NaN (so a NaN in the same place matches).
    pub fn allclose(&self, other: &Tensor<T>, rtol: f64, atol: f64) -> bool {
        self.shape() == other.shape()
            && self.to_vec().iter().zip(other.to_vec()).all(|(&a, b)| {
                let (a, b) = (a.as_f64(), b.as_f64());
                (a - b).abs() <= atol + rtol * b.abs() || (a.is_nan() && b.is_nan())
            })
    }
}

impl<T: Element> fmt::Debug for Tensor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor<{}>({})", T::DTYPE, self.layout)?;
        if self.numel() <= 16 {
            write!(f, " {:?}", self.to_vec())?;
        }
        Ok(())
    }
}

/// Prints the dtype, the shape and the values, nested by axis; axes longer than 6 show their
/// first and last 3 entries around `…`.
impl<T: Element> fmt::Display for Tensor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const EDGE: usize = 3;
        writeln!(f, "Tensor<{}> shape {:?}", T::DTYPE, self.shape())?;
        fn rec<T: Element>(t: &Tensor<T>, f: &mut fmt::Formatter<'_>, depth: usize) -> fmt::Result {
            if t.rank() == 0 {
                return write!(f, "{:.6}", t.item());
            }
            let n = t.dim(0);
            let show = |i: usize| n <= 2 * EDGE || !(EDGE..n - EDGE).contains(&i);
            write!(f, "[")?;
            let mut skipped = false;
            for i in 0..n {
                if !show(i) {
                    if !skipped {
                        if t.rank() > 1 {
                            write!(f, "\n{:width$}…,", "", width = depth + 1)?;
                        } else {
                            write!(f, " …,")?;
                        }
                        skipped = true;
                    }
                    continue;
                }
                if i > 0 {
                    if t.rank() > 1 {
                        write!(f, "\n{:width$}", "", width = depth + 1)?;
                    } else {
                        write!(f, " ")?;
                    }
                }
                rec(&t.select(0, i), f, depth + 1)?;
                if i + 1 < n {
                    write!(f, ",")?;
                }
            }
            write!(f, "]")
        }
        rec(self, f, 0)
    }
}

impl<T: Element> From<T> for Tensor<T> {
    fn from(v: T) -> Tensor<T> {
        Tensor::scalar(v)
    }
}

impl<T: Element, const N: usize> From<[T; N]> for Tensor<T> {
    fn from(v: [T; N]) -> Tensor<T> {
        Tensor::from_vec(v.to_vec(), &[N])
    }
}

impl<T: Element> From<Vec<T>> for Tensor<T> {
    fn from(v: Vec<T>) -> Tensor<T> {
        let n = v.len();
        Tensor::from_vec(v, &[n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_share_storage_and_read_correctly() {
        let a = Tensor::<f64>::arange(6).reshape(&[2, 3]);
        let t = a.t();
        assert!(t.shares_storage(&a));
        assert!(!t.is_contiguous());
        assert_eq!(t.to_vec(), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert_eq!(a.narrow(1, 1, 2).to_vec(), vec![1.0, 2.0, 4.0, 5.0]);
        assert_eq!(a.slice(1, 0, 3, 2).to_vec(), vec![0.0, 2.0, 3.0, 5.0]);
        let b = Tensor::<f64>::from([1.0, 2.0]).unsqueeze(1).broadcast_to(&[2, 3]);
        assert_eq!(b.to_vec(), vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
        assert_eq!(a.diagonal().to_vec(), vec![0.0, 4.0]);
    }

    #[test]
    fn reshape_copies_only_when_needed() {
        let a = Tensor::<f32>::arange(12).reshape(&[3, 4]);
        assert!(a.reshape(&[4, 3]).shares_storage(&a));
        let t = a.t();
        let r = t.reshape(&[12]);
        assert!(!r.shares_storage(&a));
        assert_eq!(r.to_vec(), t.to_vec());
    }

    #[test]
    fn make_mut_copies_shared_storage() {
        let a = Tensor::<f32>::zeros(&[3]);
        let mut b = a.clone();
        b.make_mut()[0] = 1.0;
        assert_eq!(a.to_vec(), vec![0.0; 3]);
        assert_eq!(b.to_vec(), vec![1.0, 0.0, 0.0]);
    }

    #[test]
    #[should_panic(expected = "reshape: cannot reshape [2, 3]")]
    fn reshape_mismatch_names_shapes() {
        let _ = Tensor::<f32>::zeros(&[2, 3]).reshape(&[4]);
    }

    #[test]
    #[should_panic(expected = "from_storage: layout")]
    fn from_storage_rejects_negative_reach() {
        let l = Layout { shape: vec![3], strides: vec![-1], offset: 1 };
        let _ = Tensor::<f32>::from_storage(std::sync::Arc::new(vec![0.0; 3]), l);
    }

    #[test]
    fn display_truncates() {
        let s = format!("{}", Tensor::<f32>::arange(20));
        assert!(s.starts_with("Tensor<f32> shape [20]"), "{s}");
        assert!(s.contains('…'), "{s}");
    }
}
