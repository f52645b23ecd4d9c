//! The one way to define a gradient rule: the [`Backward`] trait. Built-in ops (`ops/`) and
//! the `sparse` crate's analytic rules implement it alike and record themselves with
//! [`Tape::push_op`](crate::Tape::push_op); [`FnRule`] turns a closure into a rule.
//!
//! This module depends on nothing else in the crate but the error type: the tape stores
//! rules, the reverse sweep (`sweep.rs`) calls them.

use engine::{Element, Tensor};

use crate::error::{Error, Result};

/// A gradient rule: given `g = ∂L/∂output`, the values of the op's inputs and its output,
/// return `∂L/∂input_i` for every input, in order.
///
/// `needed[i]` tells whether input `i` receives a gradient: it is false for a constant (data,
/// a fixed DCT dictionary, a detached value), and the tape discards whatever is returned for
/// it, so a rule returns `None` there instead of computing it. `None` for a needed input
/// counts as a zero gradient. Each returned gradient must have its input's shape, and there
/// must be one entry per input; the tape checks both.
///
/// A rule saves only what its inputs and output do not already give (indices, a
/// factorisation, hyper-parameters), each field with a one-line comment; the tape keeps the
/// input and output values until it is dropped.
///
/// The default `backward` is [`Error::NoGradient`]: an op recorded without a rule fails
/// loudly at the backward pass, never a silent zero. A rule whose own computation fails keeps
/// its error's type inside [`Error::Rule`].
///
/// # Example: `y = x³`, `∂x = 3x²·g`
/// ```
/// use sparsegrad_autograd::{check_gradients, Backward, CheckOptions, Result, Tape, Var};
/// use engine::{Element, Tensor};
///
/// struct CubeBackward;
/// impl<T: Element> Backward<T> for CubeBackward {
///     fn name(&self) -> &str { "cube" }
///     fn backward(&self, g: &Tensor<T>, x: &[&Tensor<T>], _y: &Tensor<T>, _needed: &[bool])
///         -> Result<Vec<Option<Tensor<T>>>> {
///         Ok(vec![Some(g.mul(&x[0].square().mul_scalar(3.0)))])
///     }
/// }
/// fn cube<'t, T: Element>(x: &Var<'t, T>) -> Var<'t, T> {
///     x.tape().push_op(x.value().powf(3.0), &[*x], CubeBackward)
/// }
///
/// let tape = Tape::new();
/// let x = tape.leaf(Tensor::from([1.0, -2.0]));
/// let y = cube(&x).sum_all();
/// assert_eq!(tape.backward(&y).unwrap().wrt(&x).to_vec(), vec![3.0, 12.0]);
///
/// // The same rule, audited against central differences:
/// let report = check_gradients(|_, v| cube(&v[0]), &[Tensor::from([0.3, -1.7, 2.2])],
///     &CheckOptions::default()).unwrap();
/// assert!(report.passed(), "{report}");
/// ```
pub trait Backward<T: Element>: 'static {
    /// The op's name, shown by graph printing, anomaly reports, errors and the audit.
    fn name(&self) -> &str;

    /// `∂L/∂inputs` from `g = ∂L/∂output`; see the trait docs for `needed`.
    fn backward(
        &self,
        g: &Tensor<T>,
        inputs: &[&Tensor<T>],
        output: &Tensor<T>,
        needed: &[bool],
    ) -> Result<Vec<Option<Tensor<T>>>> {
        let _ = (g, inputs, output, needed);
        Err(Error::NoGradient { op: self.name().to_string() })
    }
}

/// A rule given by a closure `df(g, inputs, output, needed) → gradients`, with the semantics
/// of [`Backward::backward`].
pub struct FnRule<F> {
    /// The op's name.
    pub name: &'static str,
    /// The rule.
    pub df: F,
}

impl<F> FnRule<F> {
    pub fn new(name: &'static str, df: F) -> Self {
        FnRule { name, df }
    }
}

impl<T: Element, F> Backward<T> for FnRule<F>
where
    F: Fn(&Tensor<T>, &[&Tensor<T>], &Tensor<T>, &[bool]) -> Result<Vec<Option<Tensor<T>>>> + 'static,
{
    fn name(&self) -> &str {
        self.name
    }
    fn backward(
        &self,
        g: &Tensor<T>,
        inputs: &[&Tensor<T>],
        output: &Tensor<T>,
        needed: &[bool],
    ) -> Result<Vec<Option<Tensor<T>>>> {
        (self.df)(g, inputs, output, needed)
    }
}
