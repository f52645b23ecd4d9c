//! Elastic-net sparse coding by LARS-EN, the exact homotopy of docs/math.md §1:
//!
//! ```text
//! α*(x, D) = argmin_α ½‖x − Dα‖² + λ1‖α‖₁ + (λ2/2)‖α‖²      (α ≥ 0 with `positive`)
//! ```
//!
//! The elastic net is the lasso on the augmented problem `D̃ = [D; √λ2·I]`, `x̃ = [x; 0]`, so
//! everything is done with `G = D̃ᵀD̃ = DᵀD + λ2·I` and `c = D̃ᵀx̃ = Dᵀx`, computed once per
//! batch by GEMM ([`lars_en`]) or given by the caller ([`lars_en_gram`]). Along the path
//! the correlations are `c_j = d̃_jᵀr̃ = d_jᵀ(x − Dα) − λ2·α_j`, the quantity of the KKT
//! conditions; they are kept up to date incrementally.
//!
//! # The path (per sample)
//! * Start at α = 0, λ = max_j |c_j|. If λ ≤ λ1 the codes are exactly zero (Λ empty).
//! * Direction on the active set Λ with signs s: `u_Λ = G_ΛΛ⁻¹·s_Λ` by the Cholesky factor of
//!   `G_ΛΛ`, which is grown by one row when an atom joins ([`Cholesky::append`], one forward
//!   substitution) and downdated when one leaves ([`Cholesky::remove`], Givens rotations),
//!   never refactored. `a = G_{:,Λ}·u_Λ` (rows of the symmetric G: contiguous reads).
//! * Along the segment `α_Λ += γ·u_Λ`, `c −= γ·a`, `λ −= γ` (active correlations stay at
//!   `λ·s`). The step γ ≥ 0 is the first of: an inactive atom reaches `c_j = ±λ`
//!   (`γ = (λ ∓ c_j)/(1 ∓ a_j)` where `1 ∓ a_j > 0`): it **joins**; an active coefficient
//!   reaches zero (`γ = −α_q/u_q` where `s_q·u_q < 0`): it **leaves** (the lasso
//!   modification); λ reaches λ1: **stop**. Ties go to the stop, then to joins (lowest atom index),
//!   then to leaves. An atom that just left is not a join candidate *on the side it left from* until
//!   the direction changes again (on that segment `c_j ∓ λ` is linear and moves inside; it
//!   may still reach the opposite side and rejoin with the other sign).
//! * At the end the coefficients are recomputed from the KKT equations on the final (Λ, s),
//!   `G_ΛΛ·α_Λ = c_Λ(α = 0) − λ·s_Λ`, so no rounding accumulated along the path remains in
//!   the codes; a coefficient this puts on the wrong side of zero by rounding (an atom exactly
//!   at its leave point) is set to 0.
//!
//! Cost per event: `O(k·|Λ|)` for `a`, `O(k)` for the step search and the update, `O(|Λ|²)`
//! for the solve and the append or removal. Nothing is allocated inside the path.
//!
//! # Optimality (tested)
//! With `r = x − Dα*`: `|d_jᵀr − λ2·α*_j| ≤ λ1` for `j ∉ Λ` and `d_jᵀr − λ2·α*_j =
//! λ1·sign(α*_j)` for `j ∈ Λ`. With `positive`: `d_jᵀr − λ2·α*_j ≤ λ1` off Λ and `= λ1`,
//! `α*_j > 0` on Λ (positive LARS with the lasso modification: only `c_j = +λ` joins, every
//! sign is +1, and a coefficient reaching 0 leaves; this is the non-negative lasso path of
//! Efron et al. 2004, §3.4).
//!
//! # Hard inputs
//! * **λ1 ≥ max_j |c_j|**: exact zeros, empty Λ, `steps == 0`.
//! * **Dependent atoms** (duplicates, collinear groups, zero atoms when λ2 = 0): when an atom
//!   reaches `|c_j| = λ` but the Cholesky append finds its pivot² `G_jj − ‖L⁻¹G_Λj‖² ≤ c·ε·G_jj`
//!   (`c` = [`LarsConfig::pivot_floor`], default [`DEFAULT_LARS_PIVOT_FLOOR`]), it is
//!   **skipped**: recorded in [`SamplePath::skipped`], inactive, and not a join candidate
//!   again until an atom leaves. Why the KKT conditions still hold: the pivot² is the squared
//!   distance of `d̃_j` from the span of the active atoms, so `d̃_j = D̃_Λ·w + e` with
//!   `‖e‖² = pivot² ≤ c·ε·‖d̃_j‖²`. Then `c_j = wᵀc_Λ + eᵀr̃ = λ·wᵀs_Λ + eᵀr̃`. At the join
//!   `|c_j| = λ`, so `|wᵀs_Λ| = 1` up to `‖e‖·‖r̃‖/λ`, and while the atoms in `w` stay active
//!   (joins only add atoms with zero weight in `w`) `c_j` keeps the value `λ·wᵀs_Λ`, i.e.
//!   `|c_j| = λ`: at the end `|c_j| = λ1` within `‖e‖·‖r̃‖` — the inactive-atom condition holds,
//!   with equality, to rounding for an exactly dependent atom. Adding the atom would not
//!   change `Dα` (it is in the span): the lasso solution is then not unique and the one
//!   returned uses independent atoms only. When an atom leaves, the span shrinks and the
//!   argument lapses, so every skipped atom becomes a candidate again (it is retried if its
//!   correlation reaches λ). With λ2 > 0, `G` is positive definite and nothing is skipped
//!   unless λ2 is below the floor's scale.
//! * **NaN or ±∞** in D, X, G or C: `SparseError::NonFinite` naming the matrix, the sample
//!   (row of X) or the atom and the entry. Negative or non-finite λ1, λ2:
//!   `SparseError::InvalidConfig`.
//! * **Shapes** that do not fit are misuse and panic at the call (`#[track_caller]`) with both
//!   shapes.
//! * **Cap** `max_active = L`: the path stops where an (L+1)-th atom would join
//!   ([`SamplePath::hit_cap`]); the codes are then the exact solution for λ1 =
//!   [`SamplePath::lambda_reached`] > λ1, with at most L nonzeros.
//!
//! # Determinism
//! Samples are spread over rayon in chunks of 8 (512 for [`lars_en_compact`]) whose boundaries
//! depend only on N; every
//! sample's path is the same sequential arithmetic whatever thread runs it (and whichever
//! vector lane, for [`lars_en_compact`]), and the GEMMs are
//! bit-identical for any thread count. So the codes are bit-identical for any thread count.
//!
//! ```
//! use engine::Tensor;
//! use sparsegrad_sparse::{lars_en, LarsConfig};
//! // Orthonormal atoms decouple the problem: α_j = S_λ1(d_jᵀx) / (1 + λ2).
//! let d = Tensor::<f64>::from_vec(vec![1.0, 0.0, 0.0, 1.0], &[2, 2]);
//! let x = Tensor::from_vec(vec![3.0, -0.5], &[1, 2]); // one signal per row
//! let sol = lars_en(&d, &x, &LarsConfig::new(1.0, 0.0)).unwrap();
//! assert_eq!(sol.codes.to_vec(), vec![2.0, 0.0]);     // S_1(3) = 2, S_1(−0.5) = 0
//! assert_eq!(sol.paths[0].active, vec![0]);
//! ```
//!
//! The backward rule (Mairal et al. 2012) uses [`SamplePath::active`] and
//! [`SamplePath::chol`] (the factor of `G_ΛΛ` in that order).
//!
//! [`Cholesky::append`]: engine::linalg::Cholesky::append
//! [`Cholesky::remove`]: engine::linalg::Cholesky::remove

pub mod backward;
mod forward;
pub(crate) mod kernels;
mod lanes;

pub use forward::{
    lars_en, lars_en_compact, lars_en_compact_serial, lars_en_gram, CompactPaths, LarsConfig, LarsSolution, SamplePath,
    DEFAULT_LARS_PIVOT_FLOOR,
};
