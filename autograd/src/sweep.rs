//! The reverse sweep: [`Tape::backward`] runs the recorded rules from an output back to the
//! leaves, in reverse creation order (a topological order), adding every contribution to a
//! gradient and never overwriting one.

use engine::{Element, Tensor};

use crate::anomaly::first_non_finite;
use crate::error::{Error, Phase, Result};
use crate::tape::{Grads, NodeKind, Tape, Var};

/// Options of [`Tape::backward_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackwardOptions {
    /// Keep the backward rules (and what they saved) so `backward` can run again through the
    /// same graph. When false (the default) they are dropped after the sweep.
    pub retain_graph: bool,
}

impl<T: Element> Tape<T> {
    /// Back-propagates from a single-element `out` (seed gradient 1) and frees the graph.
    pub fn backward(&self, out: &Var<'_, T>) -> Result<Grads<T>> {
        self.backward_with(out, None, BackwardOptions::default())
    }

    /// Back-propagates from `out` with an explicit output gradient (`None`: `out` must have
    /// one element and the seed is 1). Leaf gradients accumulate across calls until
    /// [`Tape::zero_grad`].
    pub fn backward_with(&self, out: &Var<'_, T>, grad: Option<Tensor<T>>, opts: BackwardOptions) -> Result<Grads<T>> {
        let shape = out.shape();
        let seed = match grad {
            None => {
                if shape.iter().product::<usize>() != 1 {
                    return Err(Error::NotScalar { shape });
                }
                Tensor::ones(&shape)
            }
            Some(g) => {
                if g.shape() != shape.as_slice() {
                    return Err(Error::OutputGradShape { expected: shape, got: g.shape().to_vec() });
                }
                g
            }
        };
        if !out.requires_grad() {
            return Ok(Grads::default());
        }
        self.sweep(out.id(), seed, opts)
    }

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
                        let inputs: Vec<&Tensor<T>> = node.inputs.iter().map(|&i| nodes[i].value(i)).collect();
                        let needed: Vec<bool> = node.inputs.iter().map(|&i| nodes[i].requires_grad).collect();
                        let input_grads = rule.backward(&g, &inputs, node.value(id), &needed)?;
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
                            if gi.shape() != nodes[input].value(input).shape() {
                                return Err(Error::GradShape {
                                    op: name.clone(),
                                    input: k,
                                    expected: nodes[input].value(input).shape().to_vec(),
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
