//! The engine's error type, for conditions that come from data rather than program misuse.

use std::fmt;

/// Errors returned (not panicked) by the engine. Program misuse panics instead; see the
/// crate-level documentation for the policy.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// A shape that came from data (a file, a command line) is invalid for `op`.
    Shape { op: &'static str, msg: String },
    /// A numerical failure, e.g. a matrix that is not positive definite.
    Numerical { op: &'static str, msg: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Shape { op, msg } => write!(f, "{op}: {msg}"),
            Error::Numerical { op, msg } => write!(f, "{op}: numerical failure: {msg}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
