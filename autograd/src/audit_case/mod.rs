//! The audit's leaf: the [`AuditCase`] type and the builders of cases ([`inputs`],
//! [`families`]) that each op family uses in its `mod cases`.
//!
//! This module imports nothing from [`crate::ops`] or from the collector [`crate::audit`],
//! so the dependency points one way: `ops → audit_case ← audit`, and `audit → ops` to
//! collect the cases. Its items are re-exported from [`crate::audit`], their public path.

pub mod families;
pub mod inputs;

use std::sync::Arc;

use engine::Tensor;

use crate::check::{check_gradients, CheckOptions, GradReport};
use crate::error::Result;
use crate::tape::{Tape, Var};

/// The check an [`AuditCase`] runs.
pub type AuditFn = Arc<dyn Fn() -> Result<GradReport> + Send + Sync>;

/// One audited op on one kind of input.
#[derive(Clone)]
pub struct AuditCase {
    /// The op's name as recorded on the tape (`"conv2d"`, `"where"`), or the [`Var`] method
    /// for ops built from others (`"mean"`, `"select"`).
    pub op: &'static str,
    /// The input: layout, shape and the op's parameters, e.g. `"transposed view [3, 4]"`.
    pub input: String,
    /// Runs the gradient check.
    pub run: AuditFn,
}

impl AuditCase {
    /// A case running an arbitrary check.
    pub fn new(
        op: &'static str,
        input: impl Into<String>,
        run: impl Fn() -> Result<GradReport> + Send + Sync + 'static,
    ) -> AuditCase {
        AuditCase { op, input: input.into(), run: Arc::new(run) }
    }

    /// A case running `check_gradients(f, inputs, opts)`.
    pub fn gradcheck<F>(
        op: &'static str,
        input: impl Into<String>,
        inputs: Vec<Tensor<f64>>,
        opts: CheckOptions,
        f: F,
    ) -> AuditCase
    where
        F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Var<'t, f64> + Send + Sync + 'static,
    {
        AuditCase::new(op, input, move || check_gradients(&f, &inputs, &opts))
    }
}

impl std::fmt::Debug for AuditCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditCase({}: {})", self.op, self.input)
    }
}
