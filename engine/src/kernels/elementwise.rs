//! Element-wise maps: unary functions, binary functions with NumPy broadcasting, scalar forms,
//! comparisons to 0/1 masks, and `where_`.
//!
//! Conventions at kinks and edges (the autograd rules use the same ones):
//! * `relu(0) = 0`; `sign(0) = 0`; NaN propagates through every map (`relu(NaN) = NaN`).
//! * `soft_threshold(v, τ) = sign(v)·max(|v| − τ, 0)`, so `|v| ≤ τ` maps to exactly 0.
//! * `sigmoid` is evaluated in the form that cannot overflow for either sign of `x`.
//!
//! `exp`, `log`, `sigmoid`, `tanh`, `softplus` and `elu` are the vectorised kernels of
//! [`vmath`]: within a stated number of ulps of libm (≤ 1 for `exp` and `log` in f32 and
//! f64), not libm's bits, and for every element the same bits whatever the layout, the thread
//! count or the CPU's instruction set. The scalar helpers
//! [`sigmoid`] and [`softplus`] below are the libm formulas (the references of those bounds).

use std::mem::MaybeUninit;

use crate::kernels::vmath::{self, Unary};
use crate::layout::{broadcast_shape, coalesce, walk};
use crate::{Element, Tensor, PAR_CHUNK};

/// A fresh output of `n` elements, written exactly once by `fill` before it is read.
///
/// The buffer is not zeroed first (for a 4 MB output, zeroing cost as much as `relu` itself):
/// `fill` receives it as `MaybeUninit` and must write every element. Buffers of 32 MiB or
/// more are advised for transparent huge pages first ([`crate::huge_pages_hint`]).
pub(crate) fn fresh<T: Element>(n: usize, fill: impl FnOnce(&mut [MaybeUninit<T>])) -> Vec<T> {
    let mut out = crate::recycle::take(n);
    crate::huge_pages_hint(&mut out);
    fill(&mut out.spare_capacity_mut()[..n]);
    // SAFETY: `fill` wrote all `n` elements (every caller covers the whole slice: a map over
    // equal-length slices, or `fill_strided`, which visits every position once).
    unsafe { out.set_len(n) };
    out
}

/// Runs `body(start, piece)` over `PAR_CHUNK`-sized pieces of `dst` (in parallel above
/// `2·PAR_CHUNK` elements), `start` being the piece's first index. With one rayon thread the
/// pieces run on the calling thread: handing them to the pool only adds two thread switches.
/// `dst` is a fresh output (`MaybeUninit`) or a tensor updated in place.
fn par_pieces<E: Send>(dst: &mut [E], body: impl Fn(usize, &mut [E]) + Sync + Send) {
    if dst.len() >= 2 * PAR_CHUNK && rayon::current_num_threads() > 1 {
        crate::par::chunks_mut(dst, PAR_CHUNK, &|c, d| body(c * PAR_CHUNK, d));
    } else {
        body(0, dst);
    }
}

/// Fills `out` (row-major over `shape`) from `K` inputs, each given by its storage and its
/// strides *already broadcast to `shape`*, one contiguous run of the innermost (coalesced)
/// axis at a time: `run(dst, starts, inner_strides)` writes `dst[j]` from the elements at
/// `starts[k] + j·inner_strides[k]` of input `k`. Chunk boundaries depend only on the size.
fn fill_strided<T: Element, const K: usize>(
    out: &mut [MaybeUninit<T>],
    shape: &[usize],
    strides: [&[isize]; K],
    offsets: [usize; K],
    run: impl Fn(&mut [MaybeUninit<T>], [usize; K], [isize; K]) + Sync + Send,
) {
    let (cshape, cstrides) = coalesce(shape, strides);
    let rank = cshape.len();
    par_pieces(out, |start: usize, chunk: &mut [MaybeUninit<T>]| {
        if rank == 0 {
            return run(chunk, offsets, [0; K]);
        }
        let inner = cshape[rank - 1];
        let istr: [isize; K] = std::array::from_fn(|k| cstrides[k][rank - 1]);
        if inner < 16 {
            // Short rows: visit element by element rather than paying a row setup each.
            let mut i = 0;
            walk(&cshape, &cstrides, offsets, start, chunk.len(), |o| {
                run(&mut chunk[i..i + 1], o, istr);
                i += 1;
            });
            return;
        }
        let (mut pos, mut i) = (start, 0);
        while i < chunk.len() {
            let (mut row, col) = (pos / inner, pos % inner);
            let len = (inner - col).min(chunk.len() - i);
            let mut at: [isize; K] = std::array::from_fn(|k| offsets[k] as isize + col as isize * istr[k]);
            for ax in (0..rank - 1).rev() {
                let idx = (row % cshape[ax]) as isize;
                row /= cshape[ax];
                for k in 0..K {
                    at[k] += idx * cstrides[k][ax];
                }
            }
            run(&mut chunk[i..i + len], at.map(|o| o as usize), istr);
            pos += len;
            i += len;
        }
    });
}

/// `dst[j] = f(src[start + j·stride])`, the stride-1 case as a slice loop that vectorises.
#[inline(always)]
fn run1<T: Element>(dst: &mut [MaybeUninit<T>], src: &[T], start: usize, stride: isize, f: impl Fn(T) -> T) {
    if stride == 1 {
        let src = &src[start..start + dst.len()];
        dst.iter_mut().zip(src).for_each(|(o, &x)| {
            o.write(f(x));
        });
    } else {
        for (j, o) in dst.iter_mut().enumerate() {
            o.write(f(src[(start as isize + j as isize * stride) as usize]));
        }
    }
}

/// `f` of `src[start + j·stride]` into `dst[j]` through the slice kernel: directly for
/// `stride = 1`, through a small gather buffer otherwise.
fn run_vm<T: Element>(dst: &mut [MaybeUninit<T>], src: &[T], start: usize, stride: isize, f: Unary) {
    if stride == 1 {
        return vmath::map_uninit(f, &src[start..start + dst.len()], dst);
    }
    const BUF: usize = 64;
    let mut buf = [T::zero(); BUF];
    for (c, d) in dst.chunks_mut(BUF).enumerate() {
        let first = start as isize + (c * BUF) as isize * stride;
        for (j, b) in buf[..d.len()].iter_mut().enumerate() {
            *b = src[(first + j as isize * stride) as usize];
        }
        vmath::map_uninit(f, &buf[..d.len()], d);
    }
}

impl<T: Element> Tensor<T> {
    /// The [`vmath`] kernel `f` applied to every element.
    pub fn map_unary(&self, f: Unary) -> Tensor<T> {
        let out = fresh(self.numel(), |out| match self.as_slice() {
            Some(src) => par_pieces(out, |i, d| vmath::map_uninit(f, &src[i..i + d.len()], d)),
            None => {
                let (l, st) = (self.layout(), self.storage());
                fill_strided(out, &l.shape, [&l.strides], [l.offset], |d, [o], [s]| run_vm(d, st, o, s, f));
            }
        });
        Tensor::from_vec(out, self.shape())
    }

    /// `f` applied to every element.
    pub fn map(&self, f: impl Fn(T) -> T + Sync + Send) -> Tensor<T> {
        let out = fresh(self.numel(), |out| match self.as_slice() {
            Some(src) => par_pieces(out, |i, d| run1(d, src, i, 1, &f)),
            None => {
                let (l, st) = (self.layout(), self.storage());
                fill_strided(out, &l.shape, [&l.strides], [l.offset], |d, [o], [s]| run1(d, st, o, s, &f));
            }
        });
        Tensor::from_vec(out, self.shape())
    }

    /// `f(a, b)` element by element with NumPy broadcasting. `op` names the operation in the
    /// panic message when the shapes cannot be broadcast.
    #[track_caller]
    pub fn zip_map(&self, other: &Tensor<T>, op: &str, f: impl Fn(T, T) -> T + Sync + Send) -> Tensor<T> {
        let shape = broadcast_shape(self.shape(), other.shape()).unwrap_or_else(|| {
            panic!("{op}: shapes {:?} and {:?} cannot be broadcast together", self.shape(), other.shape())
        });
        let n: usize = shape.iter().product();
        let out =
            fresh(n, |out| {
                if let (Some(a), Some(b), true) = (self.as_slice(), other.as_slice(), self.shape() == other.shape()) {
                    return par_pieces(out, |i, d| {
                        let (a, b) = (&a[i..i + d.len()], &b[i..i + d.len()]);
                        d.iter_mut().zip(a.iter().zip(b)).for_each(|(o, (&x, &y))| {
                            o.write(f(x, y));
                        });
                    });
                }
                let la = self.layout().broadcast_to(&shape);
                let lb = other.layout().broadcast_to(&shape);
                let (sa, sb) = (self.storage(), other.storage());
                // Per row: both inputs contiguous, or one of them a repeated value (a broadcast
                // bias), as slice loops; anything else element by element.
                fill_strided(out, &shape, [&la.strides, &lb.strides], [la.offset, lb.offset], |d, [oa, ob], istr| {
                    match istr {
                        [1, 1] => {
                            let (a, b) = (&sa[oa..oa + d.len()], &sb[ob..ob + d.len()]);
                            d.iter_mut().zip(a.iter().zip(b)).for_each(|(o, (&x, &y))| {
                                o.write(f(x, y));
                            });
                        }
                        [_, 0] => {
                            let y = sb[ob];
                            run1(d, sa, oa, istr[0], |x| f(x, y))
                        }
                        [0, _] => {
                            let x = sa[oa];
                            run1(d, sb, ob, istr[1], |y| f(x, y))
                        }
                        [ia, ib] => {
                            for (j, o) in d.iter_mut().enumerate() {
                                let j = j as isize;
                                o.write(f(sa[(oa as isize + j * ia) as usize], sb[(ob as isize + j * ib) as usize]));
                            }
                        }
                    }
                });
            });
        Tensor::from_vec(out, &shape)
    }

    /// `f(a, b, c)` element by element with NumPy broadcasting of all three.
    #[track_caller]
    pub fn zip3_map(
        &self,
        b: &Tensor<T>,
        c: &Tensor<T>,
        op: &str,
        f: impl Fn(T, T, T) -> T + Sync + Send,
    ) -> Tensor<T> {
        let shape = broadcast_shape(self.shape(), b.shape())
            .and_then(|s| broadcast_shape(&s, c.shape()))
            .unwrap_or_else(|| {
                panic!(
                    "{op}: shapes {:?}, {:?} and {:?} cannot be broadcast together",
                    self.shape(),
                    b.shape(),
                    c.shape()
                )
            });
        let n: usize = shape.iter().product();
        let (la, lb, lc) =
            (self.layout().broadcast_to(&shape), b.layout().broadcast_to(&shape), c.layout().broadcast_to(&shape));
        let st = [self.storage(), b.storage(), c.storage()];
        let out = fresh(n, |out| {
            fill_strided(
                out,
                &shape,
                [&la.strides, &lb.strides, &lc.strides],
                [la.offset, lb.offset, lc.offset],
                |d, start, istr| {
                    for (j, o) in d.iter_mut().enumerate() {
                        let x: [T; 3] =
                            std::array::from_fn(|k| st[k][(start[k] as isize + j as isize * istr[k]) as usize]);
                        o.write(f(x[0], x[1], x[2]));
                    }
                },
            )
        });
        Tensor::from_vec(out, &shape)
    }

    // ------------------------------------------------------------------ unary

    pub fn neg(&self) -> Tensor<T> {
        self.map(|x| -x)
    }
    /// `e^x` (≤ 1 ulp from libm; see [`vmath`]).
    pub fn exp(&self) -> Tensor<T> {
        self.map_unary(Unary::Exp)
    }
    /// Natural logarithm (`log(±0) = −∞`, negative inputs give NaN; ≤ 1 ulp from libm).
    pub fn log(&self) -> Tensor<T> {
        self.map_unary(Unary::Log)
    }
    pub fn sqrt(&self) -> Tensor<T> {
        self.map(|x| x.sqrt())
    }
    pub fn abs(&self) -> Tensor<T> {
        self.map(|x| x.abs())
    }
    pub fn square(&self) -> Tensor<T> {
        self.map(|x| x * x)
    }
    pub fn recip(&self) -> Tensor<T> {
        self.map(|x| x.recip())
    }
    /// −1, 0 or 1 (`sign(0) = 0`; NaN stays NaN).
    pub fn sign(&self) -> Tensor<T> {
        self.map(sign)
    }
    /// `max(x, 0)` with `relu(0) = 0`; NaN propagates.
    pub fn relu(&self) -> Tensor<T> {
        self.map(|x| if x > T::zero() || x.is_nan() { x } else { T::zero() })
    }
    /// `1 / (1 + e^{−x})`, evaluated without overflow for large |x|.
    pub fn sigmoid(&self) -> Tensor<T> {
        self.map_unary(Unary::Sigmoid)
    }
    pub fn tanh(&self) -> Tensor<T> {
        self.map_unary(Unary::Tanh)
    }
    /// `log(1 + e^x)`, evaluated without overflow.
    pub fn softplus(&self) -> Tensor<T> {
        self.map_unary(Unary::Softplus)
    }
    /// `x` for `x > 0`, `α·(e^x − 1)` otherwise (`α` rounded to the element type).
    pub fn elu(&self, alpha: f64) -> Tensor<T> {
        self.map_unary(Unary::Elu(alpha))
    }
    /// `x^p` for a real exponent `p` (NaN for negative `x` and non-integer `p`).
    pub fn powf(&self, p: f64) -> Tensor<T> {
        let pt = T::of(p);
        if p == 2.0 {
            return self.square();
        }
        if p.fract() == 0.0 && p.abs() <= 16.0 {
            let pi = p as i32;
            return self.map(move |x| x.powi(pi));
        }
        self.map(move |x| x.powf(pt))
    }
    /// `min(max(x, lo), hi)`. **Panics** if `lo > hi`.
    #[track_caller]
    pub fn clamp(&self, lo: f64, hi: f64) -> Tensor<T> {
        assert!(lo <= hi, "clamp: lower bound {lo} is above upper bound {hi}");
        let (l, h) = (T::of(lo), T::of(hi));
        self.map(move |x| {
            if x < l {
                l
            } else if x > h {
                h
            } else {
                x
            }
        })
    }
    /// `S_τ(v) = sign(v)·max(|v| − τ, 0)`. **Panics** if `τ < 0`.
    #[track_caller]
    pub fn soft_threshold(&self, tau: f64) -> Tensor<T> {
        assert!(tau >= 0.0, "soft_threshold: threshold {tau} is negative");
        let t = T::of(tau);
        self.map(move |v| soft_threshold(v, t))
    }

    // ------------------------------------------------------------------ binary (broadcasting)

    #[track_caller]
    pub fn add(&self, o: &Tensor<T>) -> Tensor<T> {
        self.zip_map(o, "add", |a, b| a + b)
    }
    #[track_caller]
    pub fn sub(&self, o: &Tensor<T>) -> Tensor<T> {
        self.zip_map(o, "sub", |a, b| a - b)
    }
    #[track_caller]
    pub fn mul(&self, o: &Tensor<T>) -> Tensor<T> {
        self.zip_map(o, "mul", |a, b| a * b)
    }
    #[track_caller]
    pub fn div(&self, o: &Tensor<T>) -> Tensor<T> {
        self.zip_map(o, "div", |a, b| a / b)
    }
    /// Element-wise maximum; NaN propagates.
    #[track_caller]
    pub fn maximum(&self, o: &Tensor<T>) -> Tensor<T> {
        self.zip_map(o, "maximum", |a, b| if a >= b || a.is_nan() { a } else { b })
    }
    /// Element-wise minimum; NaN propagates.
    #[track_caller]
    pub fn minimum(&self, o: &Tensor<T>) -> Tensor<T> {
        self.zip_map(o, "minimum", |a, b| if a <= b || a.is_nan() { a } else { b })
    }

    // ------------------------------------------------------------------ scalar forms

    pub fn add_scalar(&self, s: f64) -> Tensor<T> {
        let s = T::of(s);
        self.map(move |x| x + s)
    }
    pub fn sub_scalar(&self, s: f64) -> Tensor<T> {
        let s = T::of(s);
        self.map(move |x| x - s)
    }
    /// `s − x`.
    pub fn rsub_scalar(&self, s: f64) -> Tensor<T> {
        let s = T::of(s);
        self.map(move |x| s - x)
    }
    pub fn mul_scalar(&self, s: f64) -> Tensor<T> {
        let s = T::of(s);
        self.map(move |x| x * s)
    }
    pub fn div_scalar(&self, s: f64) -> Tensor<T> {
        let s = T::of(s);
        self.map(move |x| x / s)
    }
    pub fn maximum_scalar(&self, s: f64) -> Tensor<T> {
        let s = T::of(s);
        self.map(move |x| if x >= s || x.is_nan() { x } else { s })
    }
    pub fn minimum_scalar(&self, s: f64) -> Tensor<T> {
        let s = T::of(s);
        self.map(move |x| if x <= s || x.is_nan() { x } else { s })
    }

    // ------------------------------------------------------------------ comparisons → masks

    /// 1 where `self > o`, else 0 (broadcasting). NaN compares false.
    #[track_caller]
    pub fn gt(&self, o: &Tensor<T>) -> Tensor<T> {
        self.zip_map(o, "gt", |a, b| mask(a > b))
    }
    #[track_caller]
    pub fn ge(&self, o: &Tensor<T>) -> Tensor<T> {
        self.zip_map(o, "ge", |a, b| mask(a >= b))
    }
    #[track_caller]
    pub fn lt(&self, o: &Tensor<T>) -> Tensor<T> {
        self.zip_map(o, "lt", |a, b| mask(a < b))
    }
    #[track_caller]
    pub fn le(&self, o: &Tensor<T>) -> Tensor<T> {
        self.zip_map(o, "le", |a, b| mask(a <= b))
    }
    #[track_caller]
    pub fn eq_mask(&self, o: &Tensor<T>) -> Tensor<T> {
        self.zip_map(o, "eq", |a, b| mask(a == b))
    }
    #[track_caller]
    pub fn ne_mask(&self, o: &Tensor<T>) -> Tensor<T> {
        self.zip_map(o, "ne", |a, b| mask(a != b))
    }
    pub fn gt_scalar(&self, s: f64) -> Tensor<T> {
        let s = T::of(s);
        self.map(move |x| mask(x > s))
    }
    pub fn ge_scalar(&self, s: f64) -> Tensor<T> {
        let s = T::of(s);
        self.map(move |x| mask(x >= s))
    }
    pub fn lt_scalar(&self, s: f64) -> Tensor<T> {
        let s = T::of(s);
        self.map(move |x| mask(x < s))
    }
    pub fn le_scalar(&self, s: f64) -> Tensor<T> {
        let s = T::of(s);
        self.map(move |x| mask(x <= s))
    }

    /// `cond ≠ 0 ? a : b`, element by element, all three broadcast together.
    #[track_caller]
    pub fn where_(cond: &Tensor<T>, a: &Tensor<T>, b: &Tensor<T>) -> Tensor<T> {
        cond.zip3_map(a, b, "where", |c, x, y| if c != T::zero() { x } else { y })
    }
}

#[inline(always)]
fn mask<T: Element>(b: bool) -> T {
    if b {
        T::one()
    } else {
        T::zero()
    }
}

/// −1, 0 or 1; NaN stays NaN.
#[inline(always)]
pub fn sign<T: Element>(x: T) -> T {
    if x > T::zero() {
        T::one()
    } else if x < T::zero() {
        -T::one()
    } else {
        x
    }
}

/// Overflow-free logistic function from libm's `exp` (the reference of [`vmath`]'s sigmoid;
/// `Tensor::sigmoid` uses the vectorised kernel).
#[inline(always)]
pub fn sigmoid<T: Element>(x: T) -> T {
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}

/// Overflow-free `log(1 + e^x)` from libm (the reference of [`vmath`]'s softplus).
#[inline(always)]
pub fn softplus<T: Element>(x: T) -> T {
    if x > T::zero() {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// `sign(v)·max(|v| − τ, 0)`.
#[inline(always)]
pub fn soft_threshold<T: Element>(v: T, tau: T) -> T {
    if v > tau {
        v - tau
    } else if v < -tau {
        v + tau
    } else if v.is_nan() {
        v
    } else {
        T::zero()
    }
}

macro_rules! impl_binop {
    ($trait:ident, $method:ident, $op:ident) => {
        impl<T: Element> std::ops::$trait<&Tensor<T>> for &Tensor<T> {
            type Output = Tensor<T>;
            #[track_caller]
            fn $method(self, rhs: &Tensor<T>) -> Tensor<T> {
                self.$op(rhs)
            }
        }
        impl<T: Element> std::ops::$trait<Tensor<T>> for Tensor<T> {
            type Output = Tensor<T>;
            #[track_caller]
            fn $method(self, rhs: Tensor<T>) -> Tensor<T> {
                Tensor::$op(&self, &rhs)
            }
        }
    };
}
impl_binop!(Add, add, add);
impl_binop!(Sub, sub, sub);
impl_binop!(Mul, mul, mul);
impl_binop!(Div, div, div);

impl<T: Element> std::ops::Neg for &Tensor<T> {
    type Output = Tensor<T>;
    fn neg(self) -> Tensor<T> {
        Tensor::neg(self)
    }
}

impl<T: Element> Tensor<T> {
    /// `self += other` (broadcasting `other` to `self`'s shape), in place when the storage is
    /// not shared; used to accumulate gradients (in parallel pieces when the shapes match: a
    /// residual network accumulates 1M-element gradients).
    #[track_caller]
    pub fn add_assign(&mut self, other: &Tensor<T>) {
        let shape = self.shape().to_vec();
        if other.shape() == shape.as_slice() {
            if let Some(src) = other.as_slice() {
                let dst = self.make_mut();
                par_pieces(dst, |i, d| d.iter_mut().zip(&src[i..]).for_each(|(d, &s)| *d += s));
                return;
            }
        }
        let b = other.broadcast_to(&shape);
        let dst = self.make_mut();
        for (d, o) in dst.iter_mut().zip(b.layout().offsets()) {
            *d += b.storage()[o];
        }
    }

    /// `self ← self + alpha·other` (same shapes), in place when possible.
    #[track_caller]
    pub fn axpy(&mut self, alpha: f64, other: &Tensor<T>) {
        assert_eq!(self.shape(), other.shape(), "axpy: shapes {:?} and {:?} differ", self.shape(), other.shape());
        let a = T::of(alpha);
        let src = other.contiguous();
        let src = src.as_slice().expect("contiguous");
        let dst = self.make_mut();
        par_pieces(dst, |i, d| d.iter_mut().zip(&src[i..]).for_each(|(d, &s)| *d += a * s));
    }
}

/// Naive references: one multi-index lookup per element, no fast paths. Tests and benches
/// compare the kernels above with them.
pub mod naive {
    use crate::layout::broadcast_shape;
    use crate::{Element, Tensor};

    /// `f` of every element, row-major.
    pub fn map<T: Element>(x: &Tensor<T>, f: impl Fn(T) -> T) -> Tensor<T> {
        Tensor::from_fn(x.shape(), |ix| f(x.get(ix)))
    }

    /// `f(a, b)` with NumPy broadcasting. **Panics** if the shapes cannot be broadcast.
    #[track_caller]
    pub fn zip_map<T: Element>(a: &Tensor<T>, b: &Tensor<T>, f: impl Fn(T, T) -> T) -> Tensor<T> {
        let shape = broadcast_shape(a.shape(), b.shape()).expect("naive::zip_map: shapes cannot be broadcast");
        let (a, b) = (a.broadcast_to(&shape), b.broadcast_to(&shape));
        Tensor::from_fn(&shape, |ix| f(a.get(ix), b.get(ix)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gradient accumulation (`add_assign`, `axpy`) in pieces on 1 and 3 threads, from inside
    /// a pool and from a plain thread (a team): every element as the one-line definition.
    #[test]
    fn accumulation_matches_its_definition_on_every_thread_count() {
        let n = 3 * PAR_CHUNK + 17;
        let mut rng = crate::Rng::new(5);
        let a = Tensor::<f32>::randn(&[n], &mut rng);
        let b = Tensor::<f32>::randn(&[n], &mut rng);
        let (av, bv) = (a.to_vec(), b.to_vec());
        let want_add: Vec<u32> = av.iter().zip(&bv).map(|(x, y)| (x + y).to_bits()).collect();
        let alpha = -0.3f64;
        let want_axpy: Vec<u32> = av.iter().zip(&bv).map(|(x, y)| (x + (alpha as f32) * y).to_bits()).collect();
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let run = || {
                let (mut x, mut y) = (a.clone(), a.clone());
                x.add_assign(&b);
                y.axpy(alpha, &b);
                (
                    x.to_vec().iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    y.to_vec().iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                )
            };
            let inside = pool.install(run);
            let outside = pool.install(|| std::thread::scope(|s| s.spawn(run).join().unwrap()));
            for (got_add, got_axpy) in [inside, outside] {
                assert!(got_add == want_add, "add_assign, {threads} threads");
                assert!(got_axpy == want_axpy, "axpy, {threads} threads");
            }
        }
    }

    #[test]
    fn broadcasting_matches_numpy() {
        // a: [3, 1], b: [4] → [3, 4], out[i][j] = a[i] + b[j]
        let a = Tensor::<f64>::from_vec(vec![0.0, 10.0, 20.0], &[3, 1]);
        let b = Tensor::<f64>::from([1.0, 2.0, 3.0, 4.0]);
        let c = a.add(&b);
        assert_eq!(c.shape(), &[3, 4]);
        assert_eq!(c.get(&[2, 3]), 24.0);
        assert_eq!(c.get(&[1, 0]), 11.0);
    }

    #[test]
    fn strided_inputs_match_contiguous_copies() {
        let a = Tensor::<f64>::arange(24).reshape(&[2, 3, 4]).permute(&[2, 0, 1]).slice(0, 0, 4, 2);
        let b = Tensor::<f64>::arange(6).reshape(&[2, 3]).mul_scalar(0.5);
        assert_eq!(a.mul(&b).to_vec(), a.contiguous().mul(&b.contiguous()).to_vec());
        assert_eq!(a.exp().to_vec(), a.contiguous().exp().to_vec());
    }

    fn vexp(x: f64) -> f64 {
        vmath::eval(Unary::Exp, x)
    }

    #[test]
    fn maps_match_naive_on_views_and_broadcasts() {
        let mut rng = crate::Rng::new(4);
        let x = Tensor::<f64>::randn(&[5, 7, 3], &mut rng);
        let views = [x.clone(), x.permute(&[2, 0, 1]), x.slice(1, 1, 7, 3), x.select(2, 1).t()];
        for v in &views {
            assert_eq!(v.exp().to_vec(), naive::map(v, vexp).to_vec());
            let row = Tensor::<f64>::randn(&[v.dim(v.rank() - 1)], &mut rng);
            assert_eq!(v.add(&row).to_vec(), naive::zip_map(v, &row, |a, b| a + b).to_vec());
            assert_eq!(row.sub(v).to_vec(), naive::zip_map(&row, v, |a, b| a - b).to_vec());
            let mut col_shape = v.shape().to_vec();
            *col_shape.last_mut().unwrap() = 1;
            let col = Tensor::<f64>::randn(&col_shape, &mut rng);
            assert_eq!(v.mul(&col).to_vec(), naive::zip_map(v, &col, |a, b| a * b).to_vec());
        }
    }

    /// Large enough to be cut into parallel pieces that end inside rows (97 columns), with
    /// every row pattern of `zip_map` (both contiguous, either broadcast, both strided), short
    /// rows (walked element by element) and `zip3_map`.
    #[test]
    fn row_paths_match_naive_across_piece_boundaries() {
        let mut rng = crate::Rng::new(5);
        let (r, c) = (700, 97);
        assert!(r * c > 2 * PAR_CHUNK && PAR_CHUNK % c != 0);
        let x = Tensor::<f64>::randn(&[r, c], &mut rng);
        let xt = Tensor::<f64>::randn(&[c, r], &mut rng).t();
        let row = Tensor::<f64>::randn(&[c], &mut rng);
        let col = Tensor::<f64>::randn(&[r, 1], &mut rng);
        let narrow = Tensor::<f64>::randn(&[r * 100, 6], &mut rng).slice(1, 0, 6, 2); // rows of 3
        let add = |a: f64, b: f64| a + b;
        for (a, b) in [(&x, &row), (&row, &x), (&x, &col), (&col, &x), (&xt, &x), (&xt, &row), (&x, &xt)] {
            assert_eq!(a.add(b).to_vec(), naive::zip_map(a, b, add).to_vec(), "{:?} + {:?}", a.shape(), b.shape());
        }
        assert_eq!(xt.exp().to_vec(), naive::map(&xt, vexp).to_vec());
        assert_eq!(narrow.exp().to_vec(), naive::map(&narrow, vexp).to_vec());
        let nrow = Tensor::<f64>::randn(&[3], &mut rng);
        assert_eq!(narrow.mul(&nrow).to_vec(), naive::zip_map(&narrow, &nrow, |a, b| a * b).to_vec());
        let cond = x.gt_scalar(0.0);
        let w = Tensor::where_(&cond, &xt, &row);
        let want = Tensor::from_fn(&[r, c], |ix| if x.get(ix) > 0.0 { xt.get(ix) } else { row.get(&ix[1..]) });
        assert_eq!(w.to_vec(), want.to_vec());
    }

    #[test]
    fn large_parallel_map_equals_serial_definition() {
        let n = 5 * PAR_CHUNK + 17;
        let a = Tensor::<f32>::arange(n).reshape(&[n, 1]).t(); // [1, n]
        let y = a.map(|x| x * 2.0);
        assert!(y.to_vec().iter().enumerate().all(|(i, &v)| v == 2.0 * i as f32));
    }

    #[test]
    fn kink_conventions() {
        let v = Tensor::<f64>::from([-2.0, -0.5, 0.5, 1.0, 3.0, 0.0]);
        // |v| ≤ 1 maps to exactly zero; v = 1 sits on the kink.
        assert_eq!(v.soft_threshold(1.0).to_vec(), vec![-1.0, 0.0, 0.0, 0.0, 2.0, 0.0]);
        assert_eq!(v.relu().to_vec(), vec![0.0, 0.0, 0.5, 1.0, 3.0, 0.0]);
        assert_eq!(v.sign().to_vec(), vec![-1.0, -1.0, 1.0, 1.0, 1.0, 0.0]);
        assert!(Tensor::<f64>::from([f64::NAN]).relu().item().is_nan());
    }

    #[test]
    fn sigmoid_and_softplus_do_not_overflow() {
        let x = Tensor::<f32>::from([-1000.0, 0.0, 1000.0]);
        assert_eq!(x.sigmoid().to_vec(), vec![0.0, 0.5, 1.0]);
        let s = x.softplus().to_vec();
        assert_eq!(s[0], 0.0);
        assert!((s[1] - 2f32.ln()).abs() < 1e-7);
        assert_eq!(s[2], 1000.0);
    }

    /// Every vmath map through the tensor paths (contiguous in parallel pieces, strided rows
    /// through the gather buffer, short rows element by element) gives the bits of the scalar
    /// `eval` of each element, on one and on two threads.
    #[test]
    fn transcendental_maps_match_eval_on_every_layout_and_thread_count() {
        let mut rng = crate::Rng::new(6);
        let n = 3 * PAR_CHUNK + 101;
        let big = Tensor::<f32>::randn(&[n], &mut rng).mul_scalar(20.0);
        let big64 = Tensor::<f64>::randn(&[n], &mut rng).mul_scalar(20.0);
        let x = Tensor::<f64>::randn(&[37, 130], &mut rng).mul_scalar(5.0);
        let views = [x.clone(), x.t(), x.slice(1, 1, 130, 3), x.reshape(&[37 * 26, 5]).t(), x.abs()];
        let fs = [
            Unary::Exp,
            Unary::Log,
            Unary::Sigmoid,
            Unary::Tanh,
            Unary::Softplus,
            Unary::Elu(0.7),
            Unary::Expm1,
            Unary::Log1p,
        ];
        let on = |threads: usize, f: &(dyn Fn() -> (Vec<f32>, Vec<f64>) + Sync)| {
            rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
        };
        for f in fs {
            for v in &views {
                let want = naive::map(v, |e| vmath::eval(f, e));
                assert!(same_bits(&v.map_unary(f).to_vec(), &want.to_vec()), "{f:?} on {:?}", v.shape());
            }
            let run = || (big.map_unary(f).to_vec(), big64.map_unary(f).to_vec());
            let (a, b) = (on(1, &run), on(2, &run));
            assert!(same_bits(&a.0, &b.0) && same_bits(&a.1, &b.1), "{f:?}: 1 vs 2 threads");
            let want: Vec<f32> = big.to_vec().iter().map(|&e| vmath::eval(f, e)).collect();
            assert!(same_bits(&a.0, &want), "{f:?}: parallel pieces vs eval");
        }
        assert_eq!(x.exp().to_vec(), x.map_unary(Unary::Exp).to_vec());
        assert_eq!(x.elu(0.7).to_vec(), x.map_unary(Unary::Elu(0.7)).to_vec());
    }

    /// An output above the huge-page threshold (advised before it is written) holds the
    /// same values.
    #[test]
    fn huge_outputs_hold_the_same_values() {
        let n = crate::HUGE_PAGE_MIN_BYTES / 4 + 12_345;
        let x = Tensor::<f32>::arange(n).mul_scalar(1e-6);
        let (y, r) = (x.exp().to_vec(), x.relu().to_vec());
        for i in (0..n).step_by(997).chain([n - 1]) {
            let xi = i as f32 * 1e-6;
            assert_eq!((y[i], r[i]), (vmath::eval(Unary::Exp, xi), xi), "element {i}");
        }
    }

    fn same_bits<T: Element>(a: &[T], b: &[T]) -> bool {
        a.len() == b.len() && bytemuck::cast_slice::<T, u8>(a) == bytemuck::cast_slice::<T, u8>(b)
    }

    #[test]
    #[should_panic(expected = "add: shapes [2, 3] and [4] cannot be broadcast")]
    fn incompatible_shapes_name_op_and_shapes() {
        let _ = Tensor::<f32>::zeros(&[2, 3]).add(&Tensor::zeros(&[4]));
    }
}
