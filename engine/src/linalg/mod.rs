//! Small dense linear algebra for the solvers: an updatable Cholesky factor, triangular solves
//! on row-major slices, and power iteration for the spectral norm of an operator.
//!
//! Everything is generic over [`Element`](crate::Element) (`f32`, `f64`) and computes in that
//! type. Every routine has a plainly written reference in [`naive`] (computing in `f64`), which
//! the tests compare against.
//!
//! Error policy (as in the rest of the engine): wrong slice lengths are misuse and **panic**
//! at the caller with both lengths; a matrix that is not positive definite, a zero on a
//! triangular diagonal or an operator returning NaN is data, and returns
//! [`Error::Numerical`](crate::Error::Numerical).
//!
//! Files: `cholesky.rs` ([`Cholesky`], the updatable factor, and its pivot floor),
//! `triangular.rs` (the row-major triangular kernels the factor solves with, and the free
//! solves [`solve_lower_triangular`], [`solve_upper_triangular`]), `power.rs`
//! ([`power_iteration`]), `naive.rs` (the references), `tests.rs`. Dependencies point one way:
//! `cholesky` → `triangular`; `power` and `naive` stand alone.

mod cholesky;
pub mod naive;
mod power;
mod triangular;

#[cfg(test)]
mod tests;

pub use cholesky::{Cholesky, NotPositiveDefinite, DEFAULT_PIVOT_FLOOR};
pub use power::{power_iteration, PowerOptions, PowerResult};
pub use triangular::{forward_substitute, solve_lower_triangular, solve_upper_triangular, Trans};
