//! One optimisation step of a classifier: forward, cross-entropy, backward, update.

use autograd::optim::Optimizer;
use autograd::{Reduction, Tape, Var};
use engine::{Element, Tensor};

use crate::params::ParamSet;

/// Runs forward (`forward(params, x) → logits [N, C]`), the mean cross-entropy against
/// `labels`, backward, and one optimiser step on `params`. Returns the loss before the step
/// and the predicted class of every sample (the argmax of its logits before the step).
///
/// # Errors
/// Any error of the backward pass (these indicate a bug in a rule, not in the data).
pub fn classifier_step<T, O, F>(
    params: &mut ParamSet<T>,
    opt: &mut O,
    forward: F,
    x: &Tensor<T>,
    labels: &[usize],
) -> autograd::Result<(f64, Vec<usize>)>
where
    T: Element,
    O: Optimizer<T>,
    F: for<'t> Fn(&[Var<'t, T>], &Var<'t, T>) -> Var<'t, T>,
{
    // The tape (and with it every reference to the parameter storage) is dropped before the
    // update, so the optimiser updates the parameters in place instead of copying them.
    let (loss, pred, g) = {
        let tape = Tape::new();
        let p = params.bind(&tape);
        let logits = forward(&p, &tape.constant(x.clone()));
        let loss = logits.cross_entropy(labels, Reduction::Mean);
        let grads = tape.backward(&loss)?;
        (loss.item(), logits.value().argmax(1), params.grads(&grads, &p))
    };
    params.step(opt, &g);
    Ok((loss, pred))
}
