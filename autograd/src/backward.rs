//! The [`Backward`] trait every gradient rule implements (built-in ops and the `sparse`
//! crate's analytic rules alike), and the reverse sweep over the tape.

use engine::{Element, Tensor};

use crate::error::{Error, Phase, Result};
use crate::tape::{Grads, NodeKind, Tape};

/// A gradient rule: given `g = ∂L/∂output`, the values of the op's inputs and its output,
/// return `∂L/∂input_i` for every input (`None` when no gradient flows to that input, which
/// counts as zero). Each returned gradient must have its input's shape; the tape checks this.
///
/// A rule saves only what its inputs and output do not already give (indices, a factorisation,
/// hyper-parameters); the tape keeps input and output values until it is dropped.
pub trait Backward<T: Element> {
    /// The op's name, shown by graph printing, anomaly reports and errors.
    fn name(&self) -> &str;
    /// `∂L/∂inputs` from `∂L/∂output`.
    fn backward(&self, g: &Tensor<T>, inputs: &[&Tensor<T>], output: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>>;
    /// [`Backward::backward`] told which inputs receive a gradient: `needed[i]` is false when
    /// input `i` does not require one (a constant, data), and the tape discards whatever is
    /// returned for it, so a rule may return `None` there instead of computing it. The reverse
    /// sweep calls this method; the default ignores `needed` and calls `backward`.
    fn backward_needed(
        &self,
        g: &Tensor<T>,
        inputs: &[&Tensor<T>],
        output: &Tensor<T>,
        needed: &[bool],
    ) -> Result<Vec<Option<Tensor<T>>>> {
        let _ = needed;
        self.backward(g, inputs, output)
    }
}

/// Options of [`Tape::backward_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackwardOptions {
    /// Keep the backward rules (and what they saved) so `backward` can run again through the
    /// same graph. When false (the default) they are dropped after the sweep.
    pub retain_graph: bool,
}

fn first_non_finite<T: Element>(t: &Tensor<T>) -> Option<String> {
    let v = t.to_vec();
    v.iter().position(|x| !x.is_finite()).map(|i| {
        let idx = unravel(i, t.shape());
        format!("{} at index {:?}", v[i], idx)
    })
}

pub(crate) fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for k in (0..shape.len()).rev() {
        if shape[k] > 0 {
            idx[k] = flat % shape[k];
            flat /= shape[k];
        }
    }
    idx
}

/// Checks a forward value in anomaly mode.
pub(crate) fn forward_anomaly<T: Element>(op: &str, input_shapes: Vec<Vec<usize>>, value: &Tensor<T>) -> Option<Error> {
    first_non_finite(value).map(|what| Error::Anomaly { op: op.to_string(), phase: Phase::Forward, input_shapes, what })
}

impl<T: Element> Tape<T> {
    /// The reverse sweep from `out` with output gradient `seed`. Leaf gradients are added to
    /// what earlier calls accumulated; the returned [`Grads`] holds the leaves' accumulated
    /// gradients after this call.
    pub(crate) fn sweep(&self, out: usize, seed: Tensor<T>, opts: BackwardOptions) -> Result<Grads<T>> {
        if let Some(e) = self.forward_anomaly() {
            return Err(e);
        }
        let mut leaf_updates: Vec<(usize, Tensor<T>)> = Vec::new();
        let mut visited: Vec<usize> = Vec::new();
        {
            let nodes = self.nodes.borrow();
            let mut grads: Vec<Option<Tensor<T>>> = vec![None; out + 1];
            grads[out] = Some(seed);
            for id in (0..=out).rev() {
                let Some(g) = grads[id].take() else { continue };
                let node = &nodes[id];
                if !node.requires_grad {
                    continue;
                }
                match &node.kind {
                    NodeKind::Leaf => {
                        leaf_updates.push((id, g));
                        continue;
                    }
                    NodeKind::Constant => continue,
                    NodeKind::Op { name } => {
                        let rule = node.rule.as_ref().ok_or_else(|| {
                            if node.freed {
                                Error::GraphFreed { op: name.clone() }
                            } else {
                                Error::NoGradient { op: name.clone() }
                            }
                        })?;
                        let inputs: Vec<&Tensor<T>> = node.inputs.iter().map(|&i| &nodes[i].value).collect();
                        let needed: Vec<bool> = node.inputs.iter().map(|&i| nodes[i].requires_grad).collect();
                        let input_grads = rule.backward_needed(&g, &inputs, &node.value, &needed)?;
                        visited.push(id);
                        if input_grads.len() != inputs.len() {
                            return Err(Error::GradCount {
                                op: name.clone(),
                                expected: inputs.len(),
                                got: input_grads.len(),
                            });
                        }
                        for (k, (gi, &input)) in input_grads.into_iter().zip(&node.inputs).enumerate() {
                            let Some(gi) = gi else { continue };
                            if gi.shape() != nodes[input].value.shape() {
                                return Err(Error::GradShape {
                                    op: name.clone(),
                                    input: k,
                                    expected: nodes[input].value.shape().to_vec(),
                                    got: gi.shape().to_vec(),
                                });
                            }
                            if self.anomaly_mode() {
                                if let Some(what) = first_non_finite(&gi) {
                                    return Err(Error::Anomaly {
                                        op: name.clone(),
                                        phase: Phase::Backward,
                                        input_shapes: inputs.iter().map(|t| t.shape().to_vec()).collect(),
                                        what: format!("{what} in the gradient of input {k}"),
                                    });
                                }
                            }
                            if !nodes[input].requires_grad {
                                continue;
                            }
                            match &mut grads[input] {
                                Some(acc) => acc.add_assign(&gi),
                                slot @ None => *slot = Some(gi),
                            }
                        }
                    }
                }
            }
        }
        let mut nodes = self.nodes.borrow_mut();
        let mut result = Grads::default();
        for (id, g) in leaf_updates {
            let acc = match nodes[id].grad.take() {
                Some(mut acc) => {
                    acc.add_assign(&g);
                    acc
                }
                None => g.contiguous(),
            };
            nodes[id].grad = Some(acc.clone());
            result.insert(id, acc);
        }
        if !opts.retain_graph {
            // Free what this sweep went through (and only that, like PyTorch).
            for id in visited {
                nodes[id].rule = None;
                nodes[id].freed = true;
            }
        }
        Ok(result)
    }
}
