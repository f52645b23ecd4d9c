//! The gradient audit: a registry of gradient checks over every differentiable op, run by
//! `sparsegrad gradcheck` and by the test suite (`tests/tests/gradcheck_ops.rs`).
//!
//! Each [`AuditCase`] names the op it audits (the name the op records on the tape, or the
//! [`Var`](crate::Var) method for composites such as `mean`), describes its input (shape and layout:
//! contiguous, transposed/permuted, sliced with a step, broadcast) and runs
//! [`check_gradients`](crate::check_gradients) on it in `f64`.
//!
//! How inputs are chosen:
//! * Shapes are drawn from a generator seeded by the op name, so every run audits the same
//!   shapes, and adding a case for one op does not change the others.
//! * Values keep every central difference where the op is smooth: at least [`MARGIN`](inputs::MARGIN) from
//!   a kink (relu, abs, sign, soft-threshold, clamp, elu), positive for `log`, `sqrt` and
//!   non-integer powers, and pairwise distinct for max/min and max pooling (a shuffled grid),
//!   so the selected element does not change within `±eps`.
//! * Non-contiguous inputs are passed as views (the checker keeps their layout); broadcast
//!   inputs are broadcast inside the audited function from a smaller leaf, because the checker
//!   makes aliased (stride-0) inputs contiguous.
//!
//! Every case uses [`CheckOptions::default()`](crate::CheckOptions::default) (eps 1e-6, atol 1e-7, rtol 1e-5). The only
//! departure is `max_elements`, which samples the elements checked on the few inputs large
//! enough to reach the engine's parallel paths (reductions over 2 × 40000 elements, a GEMM
//! split into column blocks); it does not loosen the comparison of the elements checked.
//!
//! The audit is a library other crates extend:
//! * [`run`] runs cases in parallel (a panic or an error is a failed case, never a stop);
//!   [`report`] prints them as a table or JSON.
//! * [`inputs`] builds the inputs (kink margins, value domains, views, broadcast) and
//!   [`families`] the usual case families (one input in several layouts, several inputs).
//! * The cases themselves live in the `sparsegrad-audit` crate (`audit/`: one file per op
//!   family and per sparse rule; `sparsegrad_audit::registry()` is the whole list), so that
//!   the libraries do not compile a thousand `f64` closures that no training run calls.
//! * Every report records the names of the ops its tape recorded
//!   ([`GradReport::recorded`](crate::GradReport)), so a test can check the registry itself:
//!   every op recorded by any case has cases of its own on contiguous, transposed/permuted,
//!   sliced and broadcast inputs.

pub mod report;
pub mod run;

// The case type and the builders the op families use live in the leaf module `audit_case`
// (it imports nothing from `ops` or from this module), so the op modules depend on it and
// not on this collector: ops → audit_case ← audit, and audit → ops for collection.
pub use crate::audit_case::{families, inputs, AuditCase, AuditFn};

pub use report::{format_json, format_table, json_str};
pub use run::{run_all, run_case, AuditResult};

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
