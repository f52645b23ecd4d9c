//! The error type of the sparse-coding solvers: conditions that come from data (NaN in a
//! dictionary, a Gram matrix that is not positive semidefinite, invalid regularisation
//! weights). Misuse — shapes that do not fit together — panics at the call instead.

use std::fmt;

/// Errors returned by the solvers of this crate.
#[derive(Debug, Clone, PartialEq)]
pub enum SparseError {
    /// An input entry (or, after overflow, a computed one) is NaN or ±∞. `what` names the
    /// matrix: `"x"` (`row` = sample, `col` = entry of the signal), `"dictionary"` (`row` =
    /// entry, `col` = atom), `"gram"` (`row`, `col` = atoms), `"corr"` (`row` = sample,
    /// `col` = atom) or `"codes"` (`row` = sample, `col` = atom).
    NonFinite { op: &'static str, what: &'static str, row: usize, col: usize, value: f64 },
    /// A configuration value is out of range (`what` = `"lambda1"`, `"lambda2"`,
    /// `"pivot_floor"`): negative, NaN or infinite.
    InvalidConfig { op: &'static str, what: &'static str, value: f64 },
    /// A Gram matrix given by the caller is not symmetric (`|G_ij − G_ji|` above
    /// `√ε·sqrt(G_ii·G_jj)`) or has a negative diagonal entry (`row == col`).
    InvalidGram { op: &'static str, row: usize, col: usize, upper: f64, lower: f64 },
    /// Adding `atom` to the active set of `sample` gave a clearly negative (or non-finite)
    /// pivot²: the Gram matrix is not positive semidefinite. (A pivot² within the floor is an
    /// atom that depends numerically on the active ones and is skipped, not an error.)
    GramNotPsd { op: &'static str, sample: usize, atom: usize, active: usize, pivot_sq: f64, floor: f64 },
    /// The path of `sample` took more than the configured number of steps (a guard against
    /// cycling on degenerate data; see `LarsConfig::max_steps`).
    PathTooLong { op: &'static str, sample: usize, steps: usize },
    /// A step size that cannot be used: the Lipschitz estimate `L` (of `‖AᵀA‖₂` for FISTA, of
    /// the power iteration that folds a DCEA's step into its filters) is zero, negative or not
    /// finite (a zero dictionary, or an operator that overflowed).
    BadStep { op: &'static str, lipschitz: f64 },
    /// An iterative solve stopped before reaching its tolerance: `rel_residual` is the worst
    /// sample's `‖r‖/‖b‖` after `iters` iterations, against `tol`.
    NotConverged { op: &'static str, what: &'static str, iters: usize, rel_residual: f64, tol: f64 },
    /// An iterative solve gave up because sample `sample`'s residual grew for `grew_for`
    /// consecutive iterations: `rel_residual` is its `‖r‖/‖b‖` at iteration `iters`.
    Diverged { op: &'static str, what: &'static str, sample: usize, iters: usize, rel_residual: f64, grew_for: usize },
    /// A matrix the solver needs to be positive definite is not (conjugate gradients met a
    /// direction `p` with `pᵀAp ≤ 0`), e.g. the Gram matrix of an active set whose atoms are
    /// linearly dependent. `sample` is the batch entry.
    NotPositiveDefinite { op: &'static str, what: &'static str, sample: usize, curvature: f64 },
    /// An error from the engine.
    Engine(engine::Error),
}

impl fmt::Display for SparseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SparseError::NonFinite { op, what, row, col, value } => {
                write!(f, "{op}: {what}[{row}, {col}] is {value}")?;
                match *what {
                    "x" => write!(f, " (sample {row}, entry {col} of the signal)"),
                    "dictionary" => write!(f, " (atom {col}, entry {row})"),
                    "gram" => write!(f, " (atoms {row} and {col}; D^T D overflowed if computed here)"),
                    "corr" => write!(f, " (sample {row}, atom {col})"),
                    "codes" => write!(f, " (sample {row}, atom {col}: the solve overflowed)"),
                    _ => Ok(()),
                }
            }
            SparseError::InvalidConfig { op, what, value } => {
                write!(f, "{op}: {what} must be finite and non-negative, got {value}")
            }
            SparseError::InvalidGram { op, row, col, upper, lower } => {
                if row == col {
                    write!(f, "{op}: the Gram matrix has a negative diagonal entry G[{row}, {row}] = {upper:e}")
                } else {
                    write!(
                        f,
                        "{op}: the Gram matrix is not symmetric: G[{row}, {col}] = {upper:e} but G[{col}, {row}] = {lower:e}"
                    )
                }
            }
            SparseError::GramNotPsd { op, sample, atom, active, pivot_sq, floor } => write!(
                f,
                "{op}: sample {sample}: adding atom {atom} to {active} active atoms gives pivot² {pivot_sq:e} \
                 below −{floor:e}: the Gram matrix is not positive semidefinite"
            ),
            SparseError::PathTooLong { op, sample, steps } => {
                write!(f, "{op}: sample {sample}: the path did not reach λ1 within {steps} steps")
            }
            SparseError::BadStep { op, lipschitz } => write!(
                f,
                "{op}: the Lipschitz estimate L = {lipschitz:e} is not finite and positive \
                 (a zero or overflowing dictionary?)"
            ),
            SparseError::NotConverged { op, what, iters, rel_residual, tol } => write!(
                f,
                "{op}: {what} did not converge: relative residual {rel_residual:e} after {iters} iterations \
                 (tolerance {tol:e})"
            ),
            SparseError::Diverged { op, what, sample, iters, rel_residual, grew_for } => write!(
                f,
                "{op}: sample {sample}: {what} diverged: relative residual {rel_residual:e} at iteration {iters}, \
                 after growing for {grew_for} consecutive iterations (the matrix is not numerically symmetric \
                 positive definite: linearly dependent atoms on the support?)"
            ),
            SparseError::NotPositiveDefinite { op, what, sample, curvature } => write!(
                f,
                "{op}: sample {sample}: {what} is not positive definite (curvature pᵀAp = {curvature:e}): \
                 the atoms on the support are linearly dependent"
            ),
            SparseError::Engine(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SparseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SparseError::Engine(e) => Some(e),
            _ => None,
        }
    }
}

impl From<engine::Error> for SparseError {
    fn from(e: engine::Error) -> Self {
        SparseError::Engine(e)
    }
}
