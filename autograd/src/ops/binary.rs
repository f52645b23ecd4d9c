//! Element-wise binary ops with NumPy broadcasting. Each rule gives `(∂L/∂a, ∂L/∂b)` at the
//! broadcast shape; [`Var::binary`] sums them back to the input shapes.
//! Ties in `maximum`/`minimum` send the whole gradient to `a` (the engine's forward also
//! returns `a` on ties). `where_` takes a constant mask.

use engine::{Element, Tensor};

use crate::backward::FnRule;
use crate::ops::sum_to;
use crate::tape::Var;

impl<'t, T: Element> Var<'t, T> {
    /// `y = a + b`; `∂a = g`, `∂b = g`.
    #[track_caller]
    pub fn add(&self, b: &Var<'t, T>) -> Var<'t, T> {
        self.binary(b, "add", |a, b| a.add(b), |g, _, _, _| (g.clone(), g.clone()))
    }
    /// `y = a − b`; `∂a = g`, `∂b = −g`.
    #[track_caller]
    pub fn sub(&self, b: &Var<'t, T>) -> Var<'t, T> {
        self.binary(b, "sub", |a, b| a.sub(b), |g, _, _, _| (g.clone(), g.neg()))
    }
    /// `y = a·b`; `∂a = g·b`, `∂b = g·a`.
    #[track_caller]
    pub fn mul(&self, b: &Var<'t, T>) -> Var<'t, T> {
        self.binary(b, "mul", |a, b| a.mul(b), |g, a, b, _| (g.mul(b), g.mul(a)))
    }
    /// `y = a / b`; `∂a = g / b`, `∂b = −g·y / b`.
    #[track_caller]
    pub fn div(&self, b: &Var<'t, T>) -> Var<'t, T> {
        self.binary(
            b,
            "div",
            |a, b| a.div(b),
            |g, _, b, y| {
                let ga = g.div(b);
                let gb = ga.mul(y).neg();
                (ga, gb)
            },
        )
    }
    /// `y = max(a, b)`; `∂a = g·[a ≥ b]`, `∂b = g·[a < b]`.
    #[track_caller]
    pub fn maximum(&self, b: &Var<'t, T>) -> Var<'t, T> {
        self.binary(
            b,
            "maximum",
            |a, b| a.maximum(b),
            |g, a, b, _| {
                let m = a.ge(b);
                (g.mul(&m), g.mul(&m.rsub_scalar(1.0)))
            },
        )
    }
    /// `y = min(a, b)`; `∂a = g·[a ≤ b]`, `∂b = g·[a > b]`.
    #[track_caller]
    pub fn minimum(&self, b: &Var<'t, T>) -> Var<'t, T> {
        self.binary(
            b,
            "minimum",
            |a, b| a.minimum(b),
            |g, a, b, _| {
                let m = a.le(b);
                (g.mul(&m), g.mul(&m.rsub_scalar(1.0)))
            },
        )
    }

    /// `y = cond ≠ 0 ? a : b` (all broadcast); `∂a = g·[cond ≠ 0]`, `∂b = g·[cond = 0]`.
    /// The mask is a constant tensor.
    #[track_caller]
    pub fn where_(cond: &Tensor<T>, a: &Var<'t, T>, b: &Var<'t, T>) -> Var<'t, T> {
        let y = Tensor::where_(cond, &a.value(), &b.value());
        let m = cond.ne_mask(&Tensor::scalar(T::zero()));
        let rule = FnRule {
            name: "where",
            df: move |g: &Tensor<T>, x: &[&Tensor<T>], _: &Tensor<T>, needed: &[bool]| {
                let zero = Tensor::scalar(T::zero());
                let ga = needed[0].then(|| sum_to(&Tensor::where_(&m, g, &zero), x[0].shape()));
                let gb = needed[1].then(|| sum_to(&Tensor::where_(&m, &zero, g), x[1].shape()));
                Ok(vec![ga, gb])
            },
        };
        a.tape().push_op(y, &[*a, *b], rule)
    }
}

macro_rules! impl_var_binop {
    ($trait:ident, $method:ident) => {
        impl<'t, T: Element> std::ops::$trait<&Var<'t, T>> for &Var<'t, T> {
            type Output = Var<'t, T>;
            #[track_caller]
            fn $method(self, rhs: &Var<'t, T>) -> Var<'t, T> {
                Var::$method(self, rhs)
            }
        }
        impl<'t, T: Element> std::ops::$trait<Var<'t, T>> for Var<'t, T> {
            type Output = Var<'t, T>;
            #[track_caller]
            fn $method(self, rhs: Var<'t, T>) -> Var<'t, T> {
                Var::$method(&self, &rhs)
            }
        }
    };
}
impl_var_binop!(Add, add);
impl_var_binop!(Sub, sub);
impl_var_binop!(Mul, mul);
impl_var_binop!(Div, div);

impl<'t, T: Element> std::ops::Neg for Var<'t, T> {
    type Output = Var<'t, T>;
    fn neg(self) -> Var<'t, T> {
        Var::neg(&self)
    }
}

#[cfg(test)]
mod tests {
    use crate::Tape;
    use engine::Tensor;

    #[test]
    fn broadcast_gradients_are_summed_back() {
        // y = Σ_ij a_i · b_j  with a: [3, 1], b: [4]  →  ∂a_i = Σ_j b_j, ∂b_j = Σ_i a_i
        let tape = Tape::new();
        let a = tape.leaf(Tensor::<f64>::from_vec(vec![1.0, 2.0, 3.0], &[3, 1]));
        let b = tape.leaf(Tensor::<f64>::from([1.0, 10.0, 100.0, 1000.0]));
        let g = tape.backward(&(a * b).sum_all()).unwrap();
        assert_eq!(g.get(&a).unwrap().to_vec(), vec![1111.0; 3]);
        assert_eq!(g.get(&b).unwrap().to_vec(), vec![6.0; 4]);
    }

    #[test]
    fn where_routes_gradient_by_mask() {
        let tape = Tape::new();
        let a = tape.leaf(Tensor::<f64>::from([1.0, 2.0, 3.0]));
        let b = tape.leaf(Tensor::<f64>::from([4.0, 5.0, 6.0]));
        let cond = Tensor::from([1.0, 0.0, 1.0]);
        let g = tape.backward(&crate::Var::where_(&cond, &a, &b).sum_all()).unwrap();
        assert_eq!(g.get(&a).unwrap().to_vec(), vec![1.0, 0.0, 1.0]);
        assert_eq!(g.get(&b).unwrap().to_vec(), vec![0.0, 1.0, 0.0]);
    }
}
