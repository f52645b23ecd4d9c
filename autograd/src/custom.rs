//! The public custom-op API: a differentiable operation defined outside this crate (the
//! `sparse` crate's LARS, FISTA and spatial-contrasting rules use it) is recorded on the tape
//! exactly like a built-in op.

use engine::{Element, Tensor};

use crate::backward::Backward;
use crate::error::{Error, Result};
use crate::tape::{Tape, Var};

/// A differentiable operation on tensors.
///
/// `forward` computes the output from the input values and may save state in `self` (a
/// factorisation, an active set, indices); `backward` returns `∂L/∂input_i` for every input
/// from `g = ∂L/∂output` (each of its input's shape, or `None` for no gradient). The default
/// `backward` returns [`Error::NoGradient`], so a missing rule is an error, never a silent zero.
///
/// # Example: `y = x³` with `∂x = 3x²·g`
/// ```
/// use sparsegrad_autograd::{check_gradients, CheckOptions, CustomOp, Result, Tape};
/// use engine::Tensor;
///
/// struct Cube;
/// impl CustomOp<f64> for Cube {
///     fn name(&self) -> &str { "cube" }
///     fn forward(&mut self, x: &[&Tensor<f64>]) -> Result<Tensor<f64>> {
///         Ok(x[0].powf(3.0))
///     }
///     fn backward(&self, g: &Tensor<f64>, x: &[&Tensor<f64>], _y: &Tensor<f64>)
///         -> Result<Vec<Option<Tensor<f64>>>> {
///         Ok(vec![Some(g.mul(&x[0].square().mul_scalar(3.0)))])
///     }
/// }
///
/// let tape = Tape::new();
/// let x = tape.leaf(Tensor::from([1.0, -2.0]));
/// let y = tape.apply(Cube, &[x]).unwrap().sum_all();
/// assert_eq!(tape.backward(&y).unwrap().wrt(&x).to_vec(), vec![3.0, 12.0]);
///
/// // The same rule, audited against central differences:
/// let report = check_gradients(
///     |t, v| t.apply(Cube, &[v[0]]).unwrap(),
///     &[Tensor::from([0.3, -1.7, 2.2])],
///     &CheckOptions::default(),
/// ).unwrap();
/// assert!(report.passed(), "{report}");
/// ```
pub trait CustomOp<T: Element>: 'static {
    /// The op's name, as shown in graphs, errors and audit tables.
    fn name(&self) -> &str;
    /// The output for the given input values.
    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Result<Tensor<T>>;
    /// `∂L/∂inputs` from `g = ∂L/∂output`.
    fn backward(&self, g: &Tensor<T>, inputs: &[&Tensor<T>], output: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        let _ = (g, inputs, output);
        Err(Error::NoGradient { op: self.name().to_string() })
    }
}

struct CustomRule<Op>(Op);

impl<T: Element, Op: CustomOp<T>> Backward<T> for CustomRule<Op> {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn backward(&self, g: &Tensor<T>, inputs: &[&Tensor<T>], output: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        self.0.backward(g, inputs, output)
    }
}

impl<T: Element> Tape<T> {
    /// Runs `op.forward` on the values of `inputs` and records the result with `op` as its
    /// backward rule.
    pub fn apply<Op: CustomOp<T>>(&self, mut op: Op, inputs: &[Var<'_, T>]) -> Result<Var<'_, T>> {
        let values: Vec<Tensor<T>> = inputs.iter().map(|v| v.value()).collect();
        let refs: Vec<&Tensor<T>> = values.iter().collect();
        let y = op.forward(&refs)?;
        Ok(self.push_op(y, inputs, CustomRule(op)))
    }
}
