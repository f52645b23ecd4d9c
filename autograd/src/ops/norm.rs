//! Batch normalisation in training mode, one fused rule (the engine's
//! [`Tensor::batch_norm_train`]; checked against the composed formula by the tests and the
//! gradient-check suite).
//!
//! With `m` values per channel, `x̂ = (x − μ)·r`, `r = 1/√(σ² + ε)` (batch mean and biased
//! variance), `y = γ·x̂ + β`:
//! `∂β = Σg`, `∂γ = Σg·x̂`, `∂x = γ·r·(g − ∂β/m − x̂·∂γ/m)`, sums over all axes but 1.

use engine::{BatchStats, Element, Tensor};

use crate::backward::Backward;
use crate::error::Result;
use crate::tape::Var;

/// The rule of [`Var::batch_norm`].
struct BatchNormBackward<T> {
    /// The forward's per-channel mean and `1/√(σ² + ε)` (the input and γ come from the tape).
    stats: BatchStats<T>,
}

impl<T: Element> Backward<T> for BatchNormBackward<T> {
    fn name(&self) -> &str {
        "batch_norm"
    }

    fn backward(
        &self,
        g: &Tensor<T>,
        inputs: &[&Tensor<T>],
        _: &Tensor<T>,
        needed: &[bool],
    ) -> Result<Vec<Option<Tensor<T>>>> {
        let (dx, dw, db) = inputs[0].batch_norm_train_backward(g, inputs[1], &self.stats, needed[0]);
        Ok(vec![dx, needed[1].then_some(dw), needed[2].then_some(db)])
    }
}

impl<'t, T: Element> Var<'t, T> {
    /// Training-mode batch normalisation over axis 1 of `[N, C, …]`: every channel normalised
    /// with its batch mean and biased variance, then `·weight + bias` (both `[C]`). Returns the
    /// output and the batch statistics (mean, biased variance, count: what a layer needs for
    /// its running statistics). One value per channel gives `σ² = 0` and the output `bias`.
    /// **Panics** on a rank below 2 or `weight`/`bias` not `[C]`.
    #[track_caller]
    pub fn batch_norm(&self, weight: &Var<'t, T>, bias: &Var<'t, T>, eps: f64) -> (Var<'t, T>, BatchStats<T>) {
        let (y, stats) = self.value().batch_norm_train(&weight.value(), &bias.value(), eps);
        let rule = BatchNormBackward { stats: stats.clone() };
        (self.tape().push_op(y, &[*self, *weight, *bias], rule), stats)
    }
}
