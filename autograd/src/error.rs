//! The autograd error type.

use std::fmt;

/// Errors of the tape, the backward sweep, custom ops and the gradient checker.
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
    /// An op was recorded without a backward rule (a custom op that did not implement one).
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
    /// A custom op's forward or backward failed.
    Op {
        op: String,
        msg: String,
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
            Error::Op { op, msg } => write!(f, "{op}: {msg}"),
            Error::Check { msg } => write!(f, "gradient check: {msg}"),
            Error::Engine(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<engine::Error> for Error {
    fn from(e: engine::Error) -> Self {
        Error::Engine(e)
    }
}

pub type Result<T> = std::result::Result<T, Error>;
