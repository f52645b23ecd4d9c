//! The autograd error type.

use std::fmt;
use std::sync::Arc;

/// Errors of the tape, the backward sweep, the rules and the gradient checker.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// `backward` without an explicit output gradient needs a single-element output.
    NotScalar {
        shape: Vec<usize>,
    },
    /// The explicit output gradient does not have the output's shape.
    OutputGradShape {
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// An op was recorded with a rule that does not implement `backward`.
    NoGradient {
        op: String,
    },
    /// The graph was freed by an earlier `backward` (pass `retain_graph: true` to keep it).
    GraphFreed {
        op: String,
    },
    /// A backward rule returned a gradient whose shape differs from its input's.
    GradShape {
        op: String,
        input: usize,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// A backward rule returned the wrong number of gradients.
    GradCount {
        op: String,
        expected: usize,
        got: usize,
    },
    /// Anomaly mode: the first op whose forward or backward produced NaN or ±∞.
    Anomaly {
        op: String,
        phase: Phase,
        input_shapes: Vec<Vec<usize>>,
        what: String,
    },
    /// A rule's own computation failed (a singular active-set Gram, conjugate gradients that
    /// did not converge, …). The error keeps its type: [`std::error::Error::source`] returns
    /// it and [`RuleError::downcast_ref`] recovers it, e.g. as a `sparse::SparseError`.
    Rule {
        op: String,
        source: RuleError,
    },
    /// Invalid options or inputs given to the gradient checker.
    Check {
        msg: String,
    },
    Engine(engine::Error),
}

/// Which pass an anomaly was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Forward,
    Backward,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Forward => "forward",
            Phase::Backward => "backward",
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotScalar { shape } => {
                write!(f, "backward: output of shape {shape:?} is not a scalar; pass an explicit output gradient")
            }
            Error::OutputGradShape { expected, got } => {
                write!(f, "backward: output gradient has shape {got:?}, the output has shape {expected:?}")
            }
            Error::NoGradient { op } => write!(f, "backward: op `{op}` has no backward rule"),
            Error::GraphFreed { op } => write!(
                f,
                "backward: the graph through `{op}` was freed by an earlier backward; \
                 use BackwardOptions {{ retain_graph: true }} to keep it"
            ),
            Error::GradShape { op, input, expected, got } => write!(
                f,
                "backward: rule of `{op}` returned a gradient of shape {got:?} for input {input} of shape {expected:?}"
            ),
            Error::GradCount { op, expected, got } => {
                write!(f, "backward: rule of `{op}` returned {got} gradients for {expected} inputs")
            }
            Error::Anomaly { op, phase, input_shapes, what } => {
                write!(f, "anomaly: {phase} of `{op}` (input shapes {input_shapes:?}) produced {what}")
            }
            Error::Rule { op, source } => write!(f, "backward: rule of `{op}` failed: {source}"),
            Error::Check { msg } => write!(f, "gradient check: {msg}"),
            Error::Engine(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Rule { source, .. } => Some(source.0.as_ref()),
            Error::Engine(e) => Some(e),
            _ => None,
        }
    }
}

impl Error {
    /// The error of a rule of op `op` that failed with `source` (of any error type).
    pub fn rule(op: &str, source: impl std::error::Error + Send + Sync + 'static) -> Error {
        Error::Rule { op: op.to_string(), source: RuleError(Arc::new(source)) }
    }
}

/// The typed error inside [`Error::Rule`]: shared, so [`Error`] stays `Clone`; two are equal
/// when they are the same error or print the same.
#[derive(Clone)]
pub struct RuleError(pub Arc<dyn std::error::Error + Send + Sync + 'static>);

impl RuleError {
    /// The error as its concrete type, if it is an `E`.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref::<E>()
    }
}

impl fmt::Debug for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl PartialEq for RuleError {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl From<engine::Error> for Error {
    fn from(e: engine::Error) -> Self {
        Error::Engine(e)
    }
}

pub type Result<T> = std::result::Result<T, Error>;
