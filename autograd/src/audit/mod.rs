//! The gradient audit: a registry of gradient checks over every differentiable op, run by
//! `sparsegrad gradcheck` and by the test suite (`tests/tests/gradcheck_ops.rs`).
//!
//! Each [`AuditCase`] names the op it audits (the name the op records on the tape, or the
//! [`Var`] method for composites such as `mean`), describes its input (shape and layout:
//! contiguous, transposed/permuted, sliced with a step, broadcast) and runs
//! [`check_gradients`] on it in `f64`.
//!
//! How inputs are chosen:
//! * Shapes are drawn from a generator seeded by the op name, so every run audits the same
//!   shapes, and adding a case for one op does not change the others.
//! * Values keep every central difference where the op is smooth: at least [`MARGIN`] from
//!   a kink (relu, abs, sign, soft-threshold, clamp, elu), positive for `log`, `sqrt` and
//!   non-integer powers, and pairwise distinct for max/min and max pooling (a shuffled grid),
//!   so the selected element does not change within `±eps`.
//! * Non-contiguous inputs are passed as views (the checker keeps their layout); broadcast
//!   inputs are broadcast inside the audited function from a smaller leaf, because the checker
//!   makes aliased (stride-0) inputs contiguous.
//!
//! Every case uses [`CheckOptions::default()`] (eps 1e-6, atol 1e-7, rtol 1e-5). The only
//! departure is `max_elements`, which samples the elements checked on the few inputs large
//! enough to reach the engine's parallel paths (reductions over 2 × 40000 elements, a GEMM
//! split into column blocks); it does not loosen the comparison of the elements checked.
//!
//! The audit is a library other crates extend:
//! * [`run`] runs cases in parallel (a panic or an error is a failed case, never a stop);
//!   [`report`] prints them as a table or JSON.
//! * [`inputs`] builds the inputs (kink margins, value domains, views, broadcast) and
//!   [`families`] the usual case families (one input in several layouts, several inputs);
//!   both are public so the `sparse` crate builds its cases from the same pieces.
//! * Each op family's cases live next to that family (`ops/<family>.rs`, `mod cases`);
//!   [`cases`] collects the built-in ones. Another crate appends its own:
//!   `let mut all = audit::cases(); all.extend(sparse::audit::cases());`.
//! * Every report records the names of the ops its tape recorded
//!   ([`GradReport::recorded`](crate::GradReport)), so a test can check the registry itself:
//!   every op recorded by any case has cases of its own on contiguous, transposed/permuted,
//!   sliced and broadcast inputs.

pub mod families;
pub mod inputs;
pub mod report;
pub mod run;

use std::sync::Arc;

use engine::Tensor;

use crate::check::{check_gradients, CheckOptions, GradReport};
use crate::error::Result;
use crate::tape::{Tape, Var};

pub use report::{format_json, format_table, json_str};
pub use run::{run_all, run_case, AuditResult};

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

/// The distinct op names of `cases`, in registry order.
pub fn ops(cases: &[AuditCase]) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for c in cases {
        if !names.contains(&c.op) {
            names.push(c.op);
        }
    }
    names
}

/// Every audit case of the built-in ops of this crate, family by family.
pub fn cases() -> Vec<AuditCase> {
    let mut out = Vec::new();
    crate::ops::audit_cases(&mut out);
    out
}
