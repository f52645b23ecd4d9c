//! Shared fixtures for the cross-crate test suite in `tests/`: seeded inputs, a
//! vector-Jacobian product through the tape, comparisons that name the worst element, and the
//! small networks used by the composite and determinism tests.

use autograd::{BackwardOptions, Tape, Var};
use engine::{Conv2dParams, Pool2dParams, Rng, Tensor};

/// Standard-normal `f64` tensor of `shape` from `seed`.
pub fn randn(shape: &[usize], seed: u64) -> Tensor<f64> {
    Tensor::randn(shape, &mut Rng::new(seed))
}

/// Uniform `f64` tensor in `[lo, hi)` of `shape` from `seed`.
pub fn uniform(shape: &[usize], lo: f64, hi: f64, seed: u64) -> Tensor<f64> {
    Tensor::rand_uniform(shape, lo, hi, &mut Rng::new(seed))
}

/// `n` labels in `0..classes` from `seed`.
pub fn labels(n: usize, classes: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.below(classes as u64) as usize).collect()
}

/// Runs `f` on leaves holding `inputs` and back-propagates `cotangent` (1 for a one-element
/// output when `None`): returns the output and `∂⟨R, f⟩/∂input` for every input.
///
/// **Panics** if the backward pass fails.
pub fn vjp<F>(f: F, inputs: &[Tensor<f64>], cotangent: Option<Tensor<f64>>) -> (Tensor<f64>, Vec<Tensor<f64>>)
where
    F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Var<'t, f64>,
{
    let tape = Tape::new();
    let vars: Vec<Var<'_, f64>> = inputs.iter().map(|t| tape.leaf(t.clone())).collect();
    let out = f(&tape, &vars);
    let grads = tape.backward_with(&out, cotangent, BackwardOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    (out.value(), vars.iter().map(|v| grads.wrt(v)).collect())
}

/// The largest `|a − b| / max(1, |b|)` over two equally long slices, with its index
/// (`(0, 0.0)` for empty slices; NaN counts as infinitely wrong).
pub fn worst_rel(got: &[f64], want: &[f64]) -> (usize, f64) {
    let mut worst = (0, 0.0);
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        let e = (a - b).abs() / b.abs().max(1.0);
        let e = if e.is_nan() { f64::INFINITY } else { e };
        if e > worst.1 {
            worst = (i, e);
        }
    }
    worst
}

/// Asserts `|got_i − want_i| ≤ tol·max(1, |want_i|)` for every element and equal lengths,
/// naming `what`, the worst element and both values otherwise.
#[track_caller]
pub fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: {} values, expected {}", got.len(), want.len());
    let (i, e) = worst_rel(got, want);
    assert!(
        e <= tol,
        "{what}: element {i} is {:.17e}, expected {:.17e} (relative error {e:.3e} > {tol:e})",
        got[i],
        want[i]
    );
}

/// Logits of a two-layer perceptron `relu(x·W1ᵀ + b1)·W2ᵀ + b2`, with `v = [x, W1, b1, W2, b2]`
/// of shapes `[N, D]`, `[H, D]`, `[H]`, `[C, H]`, `[C]` → `[N, C]`.
#[inline]
pub fn mlp<'t>(v: &[Var<'t, f64>]) -> Var<'t, f64> {
    let h = v[0].matmul(&v[1].t()).add(&v[2]).relu();
    h.matmul(&v[3].t()).add(&v[4])
}

/// Convolution of the small CNN: 3×3 kernel, stride 1, padding 1.
pub const CNN_CONV: Conv2dParams = Conv2dParams { stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 1 };

/// Pooling of the small CNN: 2×2 max pooling with stride 2.
pub const CNN_POOL: Pool2dParams =
    Pool2dParams { kernel: [2, 2], stride: [2, 2], padding: [0, 0], count_include_pad: true };

/// Logits of a small CNN: `conv2d(x, W1, b1)` ([`CNN_CONV`]) → max-pool ([`CNN_POOL`]) → relu →
/// flatten → `·W2ᵀ + b2`, with `v = [x, W1, b1, W2, b2]` of shapes `[N, C, H, W]` (H, W even),
/// `[F, C, 3, 3]`, `[F]`, `[K, F·H/2·W/2]`, `[K]` → `[N, K]`.
#[inline]
pub fn cnn<'t>(v: &[Var<'t, f64>]) -> Var<'t, f64> {
    let h = v[0].conv2d(&v[1], Some(&v[2]), CNN_CONV).max_pool2d(CNN_POOL).relu().flatten(1, 3);
    h.matmul(&v[3].t()).add(&v[4])
}
