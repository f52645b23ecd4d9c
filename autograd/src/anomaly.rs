//! Finding non-finite values for anomaly mode, and the index arithmetic it shares with the
//! gradient checker.

use engine::{Element, Tensor};

use crate::error::{Error, Phase};

/// The multi-index of row-major position `flat` in `shape`.
pub(crate) fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for k in (0..shape.len()).rev() {
        if shape[k] > 0 {
            idx[k] = flat % shape[k];
            flat /= shape[k];
        }
    }
    idx
}

/// The first NaN or ±∞ of `t` and its index, described for an error message.
pub(crate) fn first_non_finite<T: Element>(t: &Tensor<T>) -> Option<String> {
    let v = t.to_vec();
    v.iter().position(|x| !x.is_finite()).map(|i| {
        let idx = unravel(i, t.shape());
        format!("{} at index {:?}", v[i], idx)
    })
}

/// Checks a forward value in anomaly mode.
pub(crate) fn forward_anomaly<T: Element>(op: &str, input_shapes: Vec<Vec<usize>>, value: &Tensor<T>) -> Option<Error> {
    first_non_finite(value).map(|what| Error::Anomaly { op: op.to_string(), phase: Phase::Forward, input_shapes, what })
}
