//! The audit's leaf: the kink margin every case of this crate keeps and the loop that redraws
//! inputs until they keep it.
//!
//! This module imports no rule and nothing from the collector [`crate::audit`], so the
//! dependency points one way: the rules' `cases` (csc, dct, dcea) → `margin` ← `audit`, and
//! `audit` → the rules to collect their cases. [`KINK_MARGIN`] keeps its public path
//! `sparse::audit::KINK_MARGIN` (re-exported there).

/// The smallest distance to a kink of the inputs of a coding case.
pub const KINK_MARGIN: f64 = 1e-4;

/// Draws inputs with `draw` until `margin_of` them is at least [`KINK_MARGIN`].
/// **Panics** after 200 draws (the generator, not the rule, would be broken).
pub(crate) fn regenerate<I>(op: &str, mut draw: impl FnMut() -> I, margin_of: impl Fn(&I) -> f64) -> I {
    for _ in 0..200 {
        let candidate = draw();
        if margin_of(&candidate) >= KINK_MARGIN {
            return candidate;
        }
    }
    panic!("{op}: no input with a kink margin of {KINK_MARGIN} in 200 draws");
}
