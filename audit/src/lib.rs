//! The gradient audit's cases: a finite-difference check of every differentiable op of
//! `autograd` and every analytic rule of `sparse`, on contiguous, transposed or permuted,
//! sliced and broadcast inputs, in `f64`. `sparsegrad gradcheck` runs them, and so does the
//! test suite (`tests/tests/gradcheck_ops.rs`).
//!
//! The machinery is `autograd::audit` (the case type, the input builders, the parallel runner
//! and the reports); this crate holds only the cases, so that the libraries do not compile a
//! thousand `f64` closures that no training run calls. It is built at a lower optimisation
//! level than the libraries (the workspace's `Cargo.toml`), beside the models and the
//! program's other dependencies.
//!
//! ```no_run
//! let cases = sparsegrad_audit::registry();
//! let results = autograd::audit::run_all(&cases, Some("conv2d"));
//! println!("{}", autograd::audit::format_table(&results));
//! ```

mod ops;
mod sparse;

use autograd::audit::AuditCase;

/// The cases of the built-in ops, family by family.
pub fn builtin() -> Vec<AuditCase> {
    let mut out = Vec::new();
    ops::all(&mut out);
    out
}

/// The cases of the sparse-coding rules.
pub fn sparse_rules() -> Vec<AuditCase> {
    let mut out = Vec::new();
    sparse::all(&mut out);
    out
}

/// The whole registry: the built-in ops' cases followed by the sparse rules'.
pub fn registry() -> Vec<AuditCase> {
    let mut all = builtin();
    all.extend(sparse_rules());
    all
}
