//! A sparse code `x = P_b(v)` kept as the list of its nonzeros, and the threshold `P_b` of one
//! entry: the kernels the fused rules ([`super::rules`]) share.

use engine::{Element, Tensor};

use super::config::Threshold;

/// `P_b(v)` of one entry of filter `bk`, with the threshold's argument (`v − b`, or `|v| − b`):
/// `(argument, code)`. The gradient audit keeps its inputs away from a zero argument.
#[inline]
pub fn prox<T: Element>(v: T, bk: T, threshold: Threshold) -> (T, T) {
    match threshold {
        Threshold::OneSided => {
            let up = v - bk;
            (up, if up > T::zero() { up } else { T::zero() })
        }
        Threshold::TwoSided => {
            let up = v.abs() - bk;
            (up, if up > T::zero() { engine::kernels::elementwise::sign(v) * up } else { T::zero() })
        }
    }
}

/// The thresholds `b` `[K]` as values, checked against the `K` filters of `code` `[N, K, h, w]`.
#[track_caller]
pub(super) fn thresholds<T: Element>(op: &str, b: &Tensor<T>, code: &Tensor<T>) -> Vec<T> {
    let bv = b.contiguous().into_vec();
    assert!(
        code.rank() == 4 && bv.len() == code.dim(1),
        "{op}: b has {} entries for codes {:?} (one per filter, dimension 1)",
        bv.len(),
        code.shape()
    );
    bv
}

/// The nonzero entries of a code `x = P_b(v)` `[N, K, h, w]`, plane by plane (plane `p` has
/// filter `p mod K`): DCEA's codes are sparse, so the rules read and write these lists instead
/// of making dense passes over the codes.
#[derive(Clone)]
pub(super) struct Code<T> {
    pub(super) shape: Vec<usize>,
    plane: usize,
    /// Per plane, `(position in the plane, x)` for every `x ≠ 0`, in order.
    nonzeros: Vec<Vec<(usize, T)>>,
}

impl<T: Element> Code<T> {
    /// `P_b(v)`, one threshold per filter (`b` checked by [`thresholds`]); one pass over `v`.
    pub(super) fn of(v: &Tensor<T>, b: &[T], threshold: Threshold) -> Code<T> {
        let vc = v.contiguous();
        let (k, plane) = (b.len(), v.dim(2) * v.dim(3));
        let vs = vc.as_slice().expect("contiguous");
        let nonzeros = match vs.len().checked_div(plane) {
            None => Vec::new(),
            Some(planes) => engine::par::map(planes, &|p| {
                let vp = &vs[p * plane..(p + 1) * plane];
                let bk = b[p % k];
                let mut nz = Vec::new();
                // A run of 16 is skipped with one branch-free test: `v − b > 0` exactly when
                // `v > b` (and `|v| − b > 0` when `|v| > b`), NaN included.
                for (r, run) in vp.chunks(16).enumerate() {
                    let any = match threshold {
                        Threshold::OneSided => run.iter().fold(false, |a, &e| a | (e > bk)),
                        Threshold::TwoSided => run.iter().fold(false, |a, &e| a | (e.abs() > bk)),
                    };
                    if any {
                        for (t, &e) in run.iter().enumerate() {
                            let x = prox(e, bk, threshold).1;
                            if x != T::zero() {
                                nz.push((r * 16 + t, x));
                            }
                        }
                    }
                }
                nz
            }),
        };
        Code { shape: v.shape().to_vec(), plane, nonzeros }
    }

    /// Whether the list is small enough to be kept by a rule for its backward (at most one
    /// entry in 16 nonzero; else the backward recomputes it from `v`).
    pub(super) fn worth_keeping(&self) -> bool {
        self.nonzeros.iter().map(Vec::len).sum::<usize>() * 16 <= self.shape.iter().product::<usize>()
    }

    /// This list if it was kept, else `P_b(v)` computed again.
    pub(super) fn kept_or<'a>(
        kept: &'a Option<Code<T>>,
        v: &Tensor<T>,
        b: &Tensor<T>,
        threshold: Threshold,
        op: &str,
    ) -> std::borrow::Cow<'a, Code<T>> {
        match kept {
            Some(c) => std::borrow::Cow::Borrowed(c),
            None => std::borrow::Cow::Owned(Code::of(v, &thresholds(op, b, v), threshold)),
        }
    }

    /// `x` as a dense tensor.
    pub(super) fn dense(&self) -> Tensor<T> {
        let mut x = engine::filled(self.shape.iter().product(), T::zero());
        self.add_to(&mut x);
        Tensor::from_vec(x, &self.shape)
    }

    /// `out += x` for a contiguous code-shaped `out`.
    pub(super) fn add_to(&self, out: &mut [T]) {
        if let Some(planes) = out.len().checked_div(self.plane) {
            let planes = planes.min(self.nonzeros.len());
            engine::par::chunks_mut(&mut out[..planes * self.plane], self.plane, &|p, o| {
                self.nonzeros[p].iter().for_each(|&(i, x)| o[i] += x);
            });
        }
    }

    /// The gradients of `x = P_b(v)` from `∂x = g + c`, both code-shaped, `c` (when given)
    /// exactly zero outside the support of `x` (it becomes `∂v`): `∂v = [x ≠ 0]·∂x` and
    /// `∂b_k = −Σ ∂v·sign(x)` over the planes of filter `k` (the kinks count as inactive, as
    /// relu'(0) = 0), visiting the support only.
    pub(super) fn grads(&self, g: Option<&Tensor<T>>, c: Option<Tensor<T>>, k: usize) -> (Tensor<T>, Tensor<T>) {
        let gc = g.map(|g| g.contiguous());
        let gs = gc.as_ref().map(|g| g.as_slice().expect("contiguous"));
        let mut dv = c.map(|c| c.contiguous()).unwrap_or_else(|| Tensor::zeros(&self.shape));
        let per_plane: Vec<T> = if self.plane == 0 {
            Vec::new()
        } else {
            let plane = self.plane;
            let d = dv.make_mut();
            let planes = (d.len() / plane).min(self.nonzeros.len());
            engine::par::chunks_map(&mut d[..planes * plane], plane, &|p, d| {
                let nz = &self.nonzeros[p];
                nz.iter().fold(T::zero(), |db, &(i, x)| {
                    if let Some(gs) = gs {
                        d[i] += gs[p * plane + i];
                    }
                    if x < T::zero() {
                        db + d[i]
                    } else {
                        db - d[i]
                    }
                })
            })
        };
        let mut db = vec![T::zero(); k];
        for (p, v) in per_plane.into_iter().enumerate() {
            db[p % k] += v;
        }
        (dv, Tensor::from_vec(db, &[k]))
    }
}
