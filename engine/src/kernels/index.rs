//! Indexing and assembling: pad, concat, stack, index_select / index_add, gather /
//! scatter_add, one_hot. Integer indices are `usize` slices (the engine has float tensors only).

use std::mem::MaybeUninit;

use crate::kernels::elementwise::fresh;
use crate::layout::{contiguous_strides, numel};
use crate::{Element, Tensor, PAR_CHUNK};

impl<T: Element> Tensor<T> {
    /// Pads every axis `k` with `pads[k].0` values before and `pads[k].1` after, filled with
    /// `value`. **Panics** if `pads.len()` differs from the rank.
    #[track_caller]
    pub fn pad(&self, pads: &[(usize, usize)], value: f64) -> Tensor<T> {
        assert_eq!(
            pads.len(),
            self.rank(),
            "pad: {} (before, after) pairs for a tensor of shape {:?}",
            pads.len(),
            self.shape()
        );
        let shape: Vec<usize> = self.shape().iter().zip(pads).map(|(&d, &(a, b))| d + a + b).collect();
        let rank = shape.len();
        let n = numel(&shape);
        if rank == 0 || n == 0 {
            return Tensor::full(&shape, T::of(value));
        }
        // One output row (last axis) at a time: rows outside the source on a leading axis are
        // all `value`; the others are `value`, one source row, `value`.
        let src = self.contiguous();
        let s = src.as_slice().expect("contiguous");
        let fill = T::of(value);
        let last = rank - 1;
        let (w_out, w_in, before) = (shape[last], self.dim(last), pads[last].0);
        let lead = &shape[..last];
        let row_of = |mut r: usize| -> Option<usize> {
            // The source row of output row `r`, if any: its index over the leading axes.
            let (mut at, mut scale) = (0, 1);
            for ax in (0..last).rev() {
                let i = r % lead[ax];
                r /= lead[ax];
                let (a, d) = (pads[ax].0, self.dim(ax));
                if i < a || i >= a + d {
                    return None;
                }
                at += (i - a) * scale;
                scale *= d;
            }
            Some(at)
        };
        let rows_per_piece = (PAR_CHUNK / w_out).max(1);
        let write = |first_row: usize, piece: &mut [MaybeUninit<T>]| {
            for (q, row) in piece.chunks_mut(w_out).enumerate() {
                match row_of(first_row + q) {
                    None => row.iter_mut().for_each(|o| {
                        o.write(fill);
                    }),
                    Some(r) => {
                        let (head, rest) = row.split_at_mut(before);
                        let (mid, tail) = rest.split_at_mut(w_in);
                        head.iter_mut().chain(tail.iter_mut()).for_each(|o| {
                            o.write(fill);
                        });
                        for (o, &v) in mid.iter_mut().zip(&s[r * w_in..(r + 1) * w_in]) {
                            o.write(v);
                        }
                    }
                }
            }
        };
        let data = fresh(n, |out| {
            if n >= 2 * PAR_CHUNK && rayon::current_num_threads() > 1 {
                crate::par::chunks_mut(out, rows_per_piece * w_out, &|c, piece| write(c * rows_per_piece, piece));
            } else {
                write(0, out);
            }
        });
        Tensor::from_vec(data, &shape)
    }

    /// Joins tensors along `axis`; all other axes must agree. **Panics** otherwise or when
    /// `tensors` is empty.
    #[track_caller]
    pub fn concat(tensors: &[&Tensor<T>], axis: usize) -> Tensor<T> {
        assert!(!tensors.is_empty(), "concat: no tensors given");
        let first = tensors[0].shape();
        assert!(axis < first.len(), "concat: axis {axis} out of range for shape {first:?}");
        for t in tensors {
            let ok = t.rank() == first.len()
                && t.shape().iter().zip(first).enumerate().all(|(i, (a, b))| i == axis || a == b);
            assert!(
                ok,
                "concat: shapes {:?} do not agree outside axis {axis}",
                tensors.iter().map(|t| t.shape().to_vec()).collect::<Vec<_>>()
            );
        }
        let mut shape = first.to_vec();
        shape[axis] = tensors.iter().map(|t| t.dim(axis)).sum();
        let outer: usize = shape[..axis].iter().product();
        let mut data = crate::recycle::take(numel(&shape));
        let parts: Vec<Tensor<T>> = tensors.iter().map(|t| t.contiguous()).collect();
        let rows: Vec<usize> = parts.iter().map(|t| t.shape()[axis..].iter().product()).collect();
        for o in 0..outer {
            for (p, &r) in parts.iter().zip(&rows) {
                let s = p.as_slice().expect("contiguous");
                data.extend_from_slice(&s[o * r..(o + 1) * r]);
            }
        }
        Tensor::from_vec(data, &shape)
    }

    /// Stacks equally shaped tensors along a new axis `axis`.
    #[track_caller]
    pub fn stack(tensors: &[&Tensor<T>], axis: usize) -> Tensor<T> {
        assert!(!tensors.is_empty(), "stack: no tensors given");
        for t in tensors {
            assert_eq!(
                t.shape(),
                tensors[0].shape(),
                "stack: shapes {:?} and {:?} differ",
                tensors[0].shape(),
                t.shape()
            );
        }
        let us: Vec<Tensor<T>> = tensors.iter().map(|t| t.unsqueeze(axis)).collect();
        Tensor::concat(&us.iter().collect::<Vec<_>>(), axis)
    }

    /// Entries `indices` of `axis`, in that order (repeats allowed).
    /// **Panics** if an index is out of range.
    #[track_caller]
    pub fn index_select(&self, axis: usize, indices: &[usize]) -> Tensor<T> {
        assert!(axis < self.rank(), "index_select: axis {axis} out of range for shape {:?}", self.shape());
        let d = self.dim(axis);
        if let Some(&bad) = indices.iter().find(|&&i| i >= d) {
            panic!("index_select: index {bad} out of range for axis {axis} of shape {:?}", self.shape());
        }
        let parts: Vec<Tensor<T>> = indices.iter().map(|&i| self.narrow(axis, i, 1)).collect();
        if parts.is_empty() {
            let mut shape = self.shape().to_vec();
            shape[axis] = 0;
            return Tensor::zeros(&shape);
        }
        Tensor::concat(&parts.iter().collect::<Vec<_>>(), axis)
    }

    /// The adjoint of `index_select`: a zero tensor of `shape` with `src`'s slices added at
    /// `indices` along `axis` (repeated indices accumulate).
    #[track_caller]
    pub fn index_add(shape: &[usize], axis: usize, indices: &[usize], src: &Tensor<T>) -> Tensor<T> {
        assert!(axis < shape.len(), "index_add: axis {axis} out of range for shape {shape:?}");
        assert_eq!(src.dim(axis), indices.len(), "index_add: {} indices for source {:?}", indices.len(), src.shape());
        let mut out = Tensor::zeros(shape);
        for (k, &i) in indices.iter().enumerate() {
            assert!(i < shape[axis], "index_add: index {i} out of range for axis {axis} of shape {shape:?}");
            let dst_offs: Vec<usize> = out.narrow(axis, i, 1).layout().offsets().collect();
            let vals = src.narrow(axis, k, 1).to_vec();
            let data = out.make_mut();
            for (o, v) in dst_offs.into_iter().zip(vals) {
                data[o] += v;
            }
        }
        out
    }

    /// PyTorch's `gather`: `out[i₀,…,i_axis,…] = self[i₀,…,index[i₀,…],…]`, where `index` is
    /// row-major with shape `index_shape` (same rank as `self`, no larger on any other axis).
    #[track_caller]
    pub fn gather(&self, axis: usize, index: &[usize], index_shape: &[usize]) -> Tensor<T> {
        self.check_gather("gather", axis, index, index_shape);
        let is = contiguous_strides(index_shape);
        let mut pos = vec![0usize; index_shape.len()];
        let data: Vec<T> = index
            .iter()
            .enumerate()
            .map(|(flat, &ix)| {
                unravel(flat, index_shape, &is, &mut pos);
                pos[axis] = ix;
                self.get(&pos)
            })
            .collect();
        Tensor::from_vec(data, index_shape)
    }

    /// The adjoint of `gather`: a zero tensor of `shape` with `src[i]` added at the gathered
    /// positions (repeats accumulate).
    #[track_caller]
    pub fn scatter_add(shape: &[usize], axis: usize, index: &[usize], src: &Tensor<T>) -> Tensor<T> {
        let mut out = Tensor::zeros(shape);
        out.check_gather("scatter_add", axis, index, src.shape());
        let is = contiguous_strides(src.shape());
        let mut pos = vec![0usize; shape.len()];
        let vals = src.to_vec();
        let layout = out.layout().clone();
        let data = out.make_mut();
        for (flat, (&ix, v)) in index.iter().zip(vals).enumerate() {
            unravel(flat, src.shape(), &is, &mut pos);
            pos[axis] = ix;
            data[layout.offset_of(&pos)] += v;
        }
        out
    }

    #[track_caller]
    fn check_gather(&self, op: &str, axis: usize, index: &[usize], index_shape: &[usize]) {
        assert!(axis < self.rank(), "{op}: axis {axis} out of range for shape {:?}", self.shape());
        assert_eq!(index_shape.len(), self.rank(), "{op}: index shape {index_shape:?} vs shape {:?}", self.shape());
        assert_eq!(index.len(), numel(index_shape), "{op}: {} indices for index shape {index_shape:?}", index.len());
        for (k, (&a, &b)) in index_shape.iter().zip(self.shape()).enumerate() {
            assert!(k == axis || a <= b, "{op}: index shape {index_shape:?} exceeds {:?} on axis {k}", self.shape());
        }
        if let Some(&bad) = index.iter().find(|&&i| i >= self.dim(axis)) {
            panic!("{op}: index {bad} out of range for axis {axis} of shape {:?}", self.shape());
        }
    }

    /// `[N, classes]` with a 1 in column `labels[i]` of row `i`.
    /// **Panics** if a label is not below `classes`.
    #[track_caller]
    pub fn one_hot(labels: &[usize], classes: usize) -> Tensor<T> {
        let mut data = vec![T::zero(); labels.len() * classes];
        for (i, &y) in labels.iter().enumerate() {
            assert!(y < classes, "one_hot: label {y} of row {i} is out of range for {classes} classes");
            data[i * classes + y] = T::one();
        }
        Tensor::from_vec(data, &[labels.len(), classes])
    }
}

fn unravel(mut flat: usize, shape: &[usize], strides: &[isize], pos: &mut [usize]) {
    for k in 0..shape.len() {
        let s = strides[k] as usize;
        pos[k] = flat / s;
        flat %= s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_and_concat() {
        let x = Tensor::<f64>::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]);
        let p = x.pad(&[(1, 0), (0, 2)], 0.0);
        assert_eq!(p.shape(), &[3, 4]);
        assert_eq!(p.to_vec(), vec![0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 0.0, 3.0, 4.0, 0.0, 0.0]);
        let c = Tensor::concat(&[&x, &x.t()], 1);
        assert_eq!(c.to_vec(), vec![1.0, 2.0, 1.0, 3.0, 3.0, 4.0, 2.0, 4.0]);
        let s = Tensor::stack(&[&x, &x], 0);
        assert_eq!(s.shape(), &[2, 2, 2]);
    }

    /// `pad` against the definition (every output position is `value` unless it maps into
    /// the source), for strided and broadcast sources, padding on any subset of axes, rank 1
    /// to 4, empty axes, sizes below and above the parallel threshold, 1 and 2 threads, and
    /// −∞ / NaN as the value.
    #[test]
    fn pad_is_the_definition_on_any_layout() {
        let mut rng = crate::Rng::new(5);
        type Case = (Vec<usize>, Vec<(usize, usize)>);
        let cases: Vec<Case> = vec![
            (vec![5], vec![(2, 3)]),
            (vec![3, 4], vec![(0, 0), (1, 2)]),
            (vec![2, 3, 4], vec![(1, 0), (0, 0), (0, 1)]),
            (vec![2, 0, 3], vec![(1, 1), (2, 0), (0, 0)]),
            (vec![4, 16, 30, 30], vec![(0, 0), (0, 0), (1, 1), (1, 1)]),
            (vec![3, 40, 33, 17], vec![(1, 0), (0, 2), (3, 1), (0, 0)]),
            (vec![2, 3, 1, 1], vec![(0, 0), (0, 0), (2, 2), (2, 2)]),
        ];
        for (shape, pads) in cases {
            let base = Tensor::<f32>::randn(&shape, &mut rng);
            let rank = shape.len();
            let mut views = vec![base.clone()];
            if rank >= 2 {
                // A strided view with the same shape: the transpose of a contiguous transpose.
                views.push(base.transpose(0, rank - 1).contiguous().transpose(0, rank - 1));
                // A broadcast view: axis 0 stretched from size 1.
                let one = base.narrow(0, 0, shape[0].min(1));
                if shape[0] > 0 {
                    views.push(one.expand(&shape));
                }
            }
            for x in views {
                for value in [0.0, f64::NEG_INFINITY, f64::NAN] {
                    for threads in [1, 2] {
                        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                        let got = pool.install(|| x.pad(&pads, value));
                        let out_shape: Vec<usize> = shape.iter().zip(&pads).map(|(&d, &(a, b))| d + a + b).collect();
                        assert_eq!(got.shape(), &out_shape[..]);
                        let xs = x.to_vec();
                        let src_strides = contiguous_strides(&shape);
                        let out_strides = contiguous_strides(&out_shape);
                        let mut pos = vec![0; rank];
                        for (f, v) in got.to_vec().into_iter().enumerate() {
                            unravel(f, &out_shape, &out_strides, &mut pos);
                            let inside = (0..rank).all(|k| pos[k] >= pads[k].0 && pos[k] < pads[k].0 + shape[k]);
                            let want = if inside {
                                let at: isize = (0..rank).map(|k| (pos[k] - pads[k].0) as isize * src_strides[k]).sum();
                                xs[at as usize]
                            } else {
                                value as f32
                            };
                            assert_eq!(
                                v.to_bits(),
                                want.to_bits(),
                                "shape {shape:?} pads {pads:?} value {value} threads {threads} at {pos:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn index_select_and_its_adjoint() {
        let x = Tensor::<f64>::arange(6).reshape(&[3, 2]);
        let y = x.index_select(0, &[2, 0, 2]);
        assert_eq!(y.to_vec(), vec![4.0, 5.0, 0.0, 1.0, 4.0, 5.0]);
        let back = Tensor::<f64>::index_add(&[3, 2], 0, &[2, 0, 2], &Tensor::ones(&[3, 2]));
        assert_eq!(back.to_vec(), vec![1.0, 1.0, 0.0, 0.0, 2.0, 2.0]);
    }

    #[test]
    fn gather_and_scatter_add() {
        let x = Tensor::<f64>::arange(6).reshape(&[2, 3]);
        let g = x.gather(1, &[2, 0, 1, 1], &[2, 2]);
        assert_eq!(g.to_vec(), vec![2.0, 0.0, 4.0, 4.0]);
        let s = Tensor::<f64>::scatter_add(&[2, 3], 1, &[2, 0, 1, 1], &Tensor::ones(&[2, 2]));
        assert_eq!(s.to_vec(), vec![1.0, 0.0, 1.0, 0.0, 2.0, 0.0]);
        let h = Tensor::<f64>::one_hot(&[1, 0], 3);
        assert_eq!(h.to_vec(), vec![0.0, 1.0, 0.0, 1.0, 0.0, 0.0]);
    }
}
