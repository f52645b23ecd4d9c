//! # sparsegrad-autograd
//!
//! Reverse-mode automatic differentiation on a tape, built so every gradient can be audited.
//!
//! * [`Tape`] records every op applied to a [`Var`] in creation order; [`Tape::backward`]
//!   runs the rules in reverse. Leaf gradients accumulate across calls until
//!   [`Tape::zero_grad`]; the graph is freed after `backward` unless
//!   [`BackwardOptions::retain_graph`] is set. [`Tape::no_grad`], [`Var::detach`].
//! * One way to define a gradient rule: the [`Backward`] trait, told which inputs need a
//!   gradient. Every built-in op (`ops/`, one file per family) has its rule next to its
//!   forward, with the math in a comment, and records it with [`Tape::push_op`]; rules written
//!   elsewhere (the `sparse` crate) do exactly the same (worked example on [`Backward`]). Such
//!   a function may return diagnostics of its forward (an active set, an iteration count)
//!   beside the [`Var`], and a rule's failure keeps its error type ([`Error::Rule`]).
//! * [`check_gradients`] compares the tape with central differences for every input and
//!   reports the worst element; [`jacobian`] gives both full Jacobians of a small function.
//! * Inference ([`mod@infer`]): [`Tape::inference`] records nothing and frees values as
//!   [`Tape::scope`] / [`Tape::release`] declare them dead, so the same forward written on
//!   [`Var`] serves training and evaluation; [`infer()`] takes tensors in and gives one out.
//! * [`Tape::graph`] prints the tape; [`Tape::to_dot`] exports Graphviz.
//! * Anomaly mode ([`Tape::set_anomaly_mode`]) names the first op whose forward or backward
//!   produces NaN or ±∞, with its input shapes.
//! * [`optim`]: SGD (momentum, Nesterov, weight decay), Adam/AdamW, step and cosine schedules,
//!   and post-step hooks (unit-norm atoms, ℓ1 prox).
//!
//! Misuse (incompatible shapes) panics at the call site, as in the engine; failures of the
//! backward pass are [`Error`]s.
//!
//! ```
//! use sparsegrad_autograd::Tape;
//! use engine::Tensor;
//! let tape = Tape::<f64>::new();
//! let w = tape.leaf_named(Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]), "w");
//! let x = tape.constant(Tensor::from([1.0, -1.0]));
//! // loss = Σ relu(W·x)²; W·x = [-1, -1] → relu = 0 → every gradient is 0
//! let loss = w.matmul(&x).relu().square().sum_all();
//! let g = tape.backward(&loss).unwrap();
//! assert_eq!(g.get(&w).unwrap().to_vec(), vec![0.0; 4]);
//! assert!(tape.graph().contains("matmul"));
//! ```

mod anomaly;
pub mod audit;
mod audit_case;
pub mod backward;
pub mod check;
pub mod error;
pub mod infer;
pub mod ops;
pub mod optim;
pub mod sweep;
pub mod tape;

pub use backward::{Backward, FnRule};
pub use check::{
    check_gradients, check_gradients_dyn, jacobian, jacobian_dyn, CheckOptions, CheckedFn, GradReport, InputReport,
    Jacobian, Worst,
};
pub use error::{Error, Phase, Result, RuleError};
pub use infer::{infer, try_infer, Retain};
pub use ops::{sum_to, Reduction};
pub use sweep::BackwardOptions;
pub use tape::{Grads, NodeId, Tape, Var};
