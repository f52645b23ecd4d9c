//! Padding, concatenation, stacking and integer indexing. Their gradients are the adjoint
//! assembly ops: narrow (pad), split (concat), index_add (index_select), scatter_add (gather).

use engine::{Element, Tensor};

use crate::backward::FnRule;
use crate::tape::Var;

impl<'t, T: Element> Var<'t, T> {
    /// Constant padding (`pads[k] = (before, after)` for every axis); `∂x` is the interior of `g`.
    #[track_caller]
    pub fn pad(&self, pads: &[(usize, usize)], value: f64) -> Var<'t, T> {
        let p = pads.to_vec();
        self.unary(
            "pad",
            |x| x.pad(pads, value),
            move |g, x, _| {
                let mut v = g.clone();
                for (ax, &(before, _)) in p.iter().enumerate() {
                    v = v.narrow(ax, before, x.dim(ax));
                }
                v
            },
        )
    }

    /// Joins variables along `axis`; each input's gradient is its slice of `g`.
    /// **Panics** if `vars` is empty or shapes disagree outside `axis`.
    #[track_caller]
    pub fn concat(vars: &[Var<'t, T>], axis: usize) -> Var<'t, T> {
        assert!(!vars.is_empty(), "concat: no variables given");
        let values: Vec<Tensor<T>> = vars.iter().map(|v| v.value()).collect();
        let y = Tensor::concat(&values.iter().collect::<Vec<_>>(), axis);
        let rule = FnRule {
            name: "concat",
            df: move |g: &Tensor<T>, x: &[&Tensor<T>], _: &Tensor<T>, needed: &[bool]| {
                let mut start = 0;
                Ok(x.iter()
                    .zip(needed)
                    .map(|(xi, &need)| {
                        let d = xi.dim(axis);
                        let s = need.then(|| g.narrow(axis, start, d));
                        start += d;
                        s
                    })
                    .collect())
            },
        };
        vars[0].tape().push_op(y, vars, rule)
    }

    /// Stacks equally shaped variables along a new axis.
    #[track_caller]
    pub fn stack(vars: &[Var<'t, T>], axis: usize) -> Var<'t, T> {
        let us: Vec<Var<'t, T>> = vars.iter().map(|v| v.unsqueeze(axis)).collect();
        Var::concat(&us, axis)
    }

    /// Entries `indices` of `axis`; `∂x = index_add(g)` (repeats accumulate).
    #[track_caller]
    pub fn index_select(&self, axis: usize, indices: &[usize]) -> Var<'t, T> {
        let idx = indices.to_vec();
        self.unary(
            "index_select",
            |x| x.index_select(axis, indices),
            move |g, x, _| Tensor::index_add(x.shape(), axis, &idx, g),
        )
    }

    /// PyTorch `gather` along `axis` with a row-major `index` of shape `index_shape`;
    /// `∂x = scatter_add(g)`.
    #[track_caller]
    pub fn gather(&self, axis: usize, index: &[usize], index_shape: &[usize]) -> Var<'t, T> {
        let idx = index.to_vec();
        self.unary(
            "gather",
            |x| x.gather(axis, index, index_shape),
            move |g, x, _| Tensor::scatter_add(x.shape(), axis, &idx, g),
        )
    }
}

/// The audit cases of this family (collected by [`crate::audit::cases`]).
pub(crate) mod cases {
    use crate::audit_case::families::*;
    use crate::audit_case::inputs::*;
    use crate::audit_case::AuditCase;
    use crate::tape::Var;

    pub(crate) fn all(out: &mut Vec<AuditCase>) {
        let mut rng = rng_for("index", 0);
        let s2 = dims(&mut rng, 2, 2, 5);
        let s4 = dims(&mut rng, 4, 2, 3);
        single(out, "pad", layouts(&ALL2, &s2, Dom::Any, &mut rng, "pads (1, 2), (0, 3), value 0.5"), |x| {
            x.pad(&[(1, 2), (0, 3)], 0.5)
        });
        single(
            out,
            "pad",
            layouts(&[View::Contiguous, View::Permuted], &s4, Dom::Any, &mut rng, "spatial pads (2, 1), (1, 1)"),
            |x| x.pad(&[(0, 0), (0, 0), (2, 1), (1, 1)], 0.0),
        );

        let (r, c) = (s2[0], s2[1]);
        let any = Dom::Any;
        let parts = vec![
            input(View::Contiguous, &[r, c], any, &mut rng, ""),
            input(View::Transposed, &[r, c + 1], any, &mut rng, ""),
            input(View::Sliced, &[r, 2], any, &mut rng, ""),
            input(View::Broadcast, &[r, 3], any, &mut rng, ""),
        ];
        multi(out, "concat", "axis 1", parts, |v| Var::concat(v, 1));
        let parts = vec![
            input(View::Sliced, &[2, c], any, &mut rng, ""),
            input(View::Broadcast, &[3, c], any, &mut rng, ""),
            input(View::Contiguous, &[r, c], any, &mut rng, ""),
            input(View::Transposed, &[1, c], any, &mut rng, ""),
        ];
        multi(out, "concat", "axis 0", parts, |v| Var::concat(v, 0));
        let x = tensor(any, &[1, c], &mut rng);
        out.push(AuditCase::gradcheck(
            "concat",
            format!("axis 0: a broadcast [1, {c}]→[{r}, {c}] and itself"),
            vec![x],
            default(),
            move |_, v| {
                let b = v[0].broadcast_to(&[r, c]);
                Var::concat(&[b, v[0]], 0)
            },
        ));
        for axis in [0, 1, 2] {
            let parts = layouts(&ALL2, &s2, any, &mut rng, "");
            multi(out, "stack", &format!("axis {axis}"), parts, move |v| Var::stack(v, axis));
        }

        let idx = vec![r - 1, 0, r - 1, 1];
        let i2 = idx.clone();
        single(
            out,
            "index_select",
            layouts(&ALL2, &s2, Dom::Any, &mut rng, &format!("axis 0, indices {idx:?} (repeats)")),
            move |x| x.index_select(0, &i2),
        );
        let cidx = vec![c - 1, c - 1, 0];
        let c2 = cidx.clone();
        single(
            out,
            "index_select",
            layouts(&ALL3, &[2, 3, c], Dom::Any, &mut rng, &format!("axis 2, indices {cidx:?}")),
            move |x| x.index_select(2, &c2),
        );

        // gather along axis 1 with an index of shape [r, 3] (repeats allowed) and along axis 0.
        let g1: Vec<usize> = (0..r * 3).map(|i| (i * 5 + 1) % c).collect();
        let g1b = g1.clone();
        single(
            out,
            "gather",
            layouts(&ALL2, &s2, Dom::Any, &mut rng, &format!("axis 1, index {g1:?} of shape [{r}, 3]")),
            move |x| x.gather(1, &g1b, &[r, 3]),
        );
        let g0: Vec<usize> = (0..2 * c).map(|i| (i * 3 + 2) % r).collect();
        let g0b = g0.clone();
        single(
            out,
            "gather",
            layouts(&ALL2, &s2, Dom::Any, &mut rng, &format!("axis 0, index {g0:?} of shape [2, {c}]")),
            move |x| x.gather(0, &g0b, &[2, c]),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::{Tape, Var};
    use engine::Tensor;

    #[test]
    fn concat_splits_gradient() {
        // y = Σ w ⊙ concat(a, b) with w = [1, 2, 3] → ∂a = [1], ∂b = [2, 3]
        let tape = Tape::new();
        let a = tape.leaf(Tensor::<f64>::from([0.0]));
        let b = tape.leaf(Tensor::<f64>::from([0.0, 0.0]));
        let w = tape.constant(Tensor::from([1.0, 2.0, 3.0]));
        let g = tape.backward(&Var::concat(&[a, b], 0).mul(&w).sum_all()).unwrap();
        assert_eq!(g.get(&a).unwrap().to_vec(), vec![1.0]);
        assert_eq!(g.get(&b).unwrap().to_vec(), vec![2.0, 3.0]);
    }
}
