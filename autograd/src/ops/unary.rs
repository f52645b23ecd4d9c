//! Element-wise unary ops. Each line states `y = f(x)` and the rule `∂L/∂x = g ⊙ f'(x)`
//! (`g = ∂L/∂y`). Kink conventions match the engine: relu'(0) = 0, |·|'(0) = 0,
//! soft-threshold' = 1 only where |x| > τ, clamp passes the gradient on [lo, hi] inclusive
//! (PyTorch's choice), sign' = 0.

use engine::kernels::elementwise::sigmoid;
use engine::{Element, Tensor};

use crate::tape::Var;

fn zip<T: Element>(g: &Tensor<T>, t: &Tensor<T>, op: &str, f: impl Fn(T, T) -> T + Sync + Send) -> Tensor<T> {
    g.zip_map(t, op, f)
}

impl<'t, T: Element> Var<'t, T> {
    /// `y = −x`; `∂x = −g`.
    pub fn neg(&self) -> Var<'t, T> {
        self.unary("neg", |x| x.neg(), |g, _, _| g.neg())
    }
    /// `y = eˣ`; `∂x = g·y`.
    pub fn exp(&self) -> Var<'t, T> {
        self.unary("exp", |x| x.exp(), |g, _, y| g.mul(y))
    }
    /// `y = ln x`; `∂x = g / x`.
    pub fn log(&self) -> Var<'t, T> {
        self.unary("log", |x| x.log(), |g, x, _| g.div(x))
    }
    /// `y = √x`; `∂x = g / (2y)`.
    pub fn sqrt(&self) -> Var<'t, T> {
        self.unary("sqrt", |x| x.sqrt(), |g, _, y| zip(g, y, "sqrt", |g, y| g / (y + y)))
    }
    /// `y = |x|`; `∂x = g·sign(x)` (0 at 0).
    pub fn abs(&self) -> Var<'t, T> {
        self.unary("abs", |x| x.abs(), |g, x, _| zip(g, x, "abs", |g, x| g * engine::kernels::elementwise::sign(x)))
    }
    /// `y = sign(x)`; `∂x = 0` (the derivative is zero wherever it exists).
    pub fn sign(&self) -> Var<'t, T> {
        self.unary("sign", |x| x.sign(), |g, _, _| g.zeros_like())
    }
    /// `y = x²`; `∂x = 2x·g`.
    pub fn square(&self) -> Var<'t, T> {
        self.unary("square", |x| x.square(), |g, x, _| zip(g, x, "square", |g, x| (x + x) * g))
    }
    /// `y = 1/x`; `∂x = −g·y²`.
    pub fn recip(&self) -> Var<'t, T> {
        self.unary("recip", |x| x.recip(), |g, _, y| zip(g, y, "recip", |g, y| -g * y * y))
    }
    /// `y = max(x, 0)`; `∂x = g·[x > 0]`.
    pub fn relu(&self) -> Var<'t, T> {
        self.unary("relu", |x| x.relu(), |g, x, _| zip(g, x, "relu", |g, x| if x > T::zero() { g } else { T::zero() }))
    }
    /// `y = σ(x)`; `∂x = g·y·(1 − y)`.
    pub fn sigmoid(&self) -> Var<'t, T> {
        self.unary("sigmoid", |x| x.sigmoid(), |g, _, y| zip(g, y, "sigmoid", |g, y| g * y * (T::one() - y)))
    }
    /// `y = tanh x`; `∂x = g·(1 − y²)`.
    pub fn tanh(&self) -> Var<'t, T> {
        self.unary("tanh", |x| x.tanh(), |g, _, y| zip(g, y, "tanh", |g, y| g * (T::one() - y * y)))
    }
    /// `y = log(1 + eˣ)`; `∂x = g·σ(x)`.
    pub fn softplus(&self) -> Var<'t, T> {
        self.unary("softplus", |x| x.softplus(), |g, x, _| zip(g, x, "softplus", |g, x| g * sigmoid(x)))
    }
    /// `y = x (x > 0), α(eˣ − 1) (x ≤ 0)`; `∂x = g (x > 0), g·(y + α) (x ≤ 0)`.
    pub fn elu(&self, alpha: f64) -> Var<'t, T> {
        let a = T::of(alpha);
        let dy = move |g: &Tensor<T>, x: &Tensor<T>, y: &Tensor<T>| {
            g.zip3_map(x, y, "elu", move |g, x, y| if x > T::zero() { g } else { g * (y + a) })
        };
        self.unary("elu", |x| x.elu(alpha), dy)
    }
    /// `y = xᵖ`; `∂x = g·p·xᵖ⁻¹`.
    pub fn powf(&self, p: f64) -> Var<'t, T> {
        self.unary("powf", |x| x.powf(p), move |g, x, _| g.mul(&x.powf(p - 1.0).mul_scalar(p)))
    }
    /// `y = min(max(x, lo), hi)`; `∂x = g·[lo ≤ x ≤ hi]`.
    #[track_caller]
    pub fn clamp(&self, lo: f64, hi: f64) -> Var<'t, T> {
        let (l, h) = (T::of(lo), T::of(hi));
        self.unary(
            "clamp",
            |x| x.clamp(lo, hi),
            move |g, x, _| zip(g, x, "clamp", move |g, x| if x >= l && x <= h { g } else { T::zero() }),
        )
    }
    /// `y = S_τ(x) = sign(x)·max(|x| − τ, 0)`; `∂x = g·[|x| > τ]` (the kink |x| = τ counts as
    /// inactive, the convention LARS also uses).
    #[track_caller]
    pub fn soft_threshold(&self, tau: f64) -> Var<'t, T> {
        let t = T::of(tau);
        self.unary(
            "soft_threshold",
            |x| x.soft_threshold(tau),
            move |g, x, _| zip(g, x, "soft_threshold", move |g, x| if x.abs() > t { g } else { T::zero() }),
        )
    }
    /// `y = x + s`; `∂x = g`.
    pub fn add_scalar(&self, s: f64) -> Var<'t, T> {
        self.unary("add_scalar", |x| x.add_scalar(s), |g, _, _| g.clone())
    }
    /// `y = x − s`; `∂x = g`.
    pub fn sub_scalar(&self, s: f64) -> Var<'t, T> {
        self.unary("sub_scalar", |x| x.sub_scalar(s), |g, _, _| g.clone())
    }
    /// `y = s − x`; `∂x = −g`.
    pub fn rsub_scalar(&self, s: f64) -> Var<'t, T> {
        self.unary("rsub_scalar", |x| x.rsub_scalar(s), |g, _, _| g.neg())
    }
    /// `y = s·x`; `∂x = s·g`.
    pub fn mul_scalar(&self, s: f64) -> Var<'t, T> {
        self.unary("mul_scalar", |x| x.mul_scalar(s), move |g, _, _| g.mul_scalar(s))
    }
    /// `y = x / s`; `∂x = g / s`.
    pub fn div_scalar(&self, s: f64) -> Var<'t, T> {
        self.unary("div_scalar", |x| x.div_scalar(s), move |g, _, _| g.div_scalar(s))
    }
}

#[cfg(test)]
mod tests {
    use crate::Tape;
    use engine::Tensor;

    #[test]
    fn soft_threshold_grad_is_indicator_of_active() {
        let tape = Tape::new();
        let v = tape.leaf(Tensor::<f64>::from([-2.0, -0.5, 0.5, 1.0, 3.0]));
        let g = tape.backward(&v.soft_threshold(1.0).sum_all()).unwrap();
        // |v| > 1 only at -2 and 3; v = 1.0 sits on the kink and counts as inactive
        assert_eq!(g.get(&v).unwrap().to_vec(), [1.0, 0.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn hand_derived_values() {
        let tape = Tape::new();
        let x = tape.leaf(Tensor::<f64>::from([0.0, 1.0, -1.0]));
        // y = Σ [elu(x) + sigmoid(x)];  dy/dx = (x > 0 ? 1 : eˣ) + σ(x)(1 − σ(x))
        let y = x.elu(1.0).add(&x.sigmoid()).sum_all();
        let g = tape.backward(&y).unwrap().wrt(&x).to_vec();
        let s = |x: f64| 1.0 / (1.0 + (-x).exp());
        let want: Vec<f64> =
            [0.0f64, 1.0, -1.0].iter().map(|&x| (if x > 0.0 { 1.0 } else { x.exp() }) + s(x) * (1.0 - s(x))).collect();
        for (a, b) in g.iter().zip(&want) {
            assert!((a - b).abs() < 1e-15, "{g:?} vs {want:?}");
        }
    }
}
