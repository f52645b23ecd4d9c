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
