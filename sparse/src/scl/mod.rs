//! The spatial-contrasting loss (docs/math.md §5; Hoffer, Hubara & Ailon 2016), for anchor features
//! `a [N, d]` and positive features `p [N, d]` (row `i` of each comes from image `i`; any
//! strides):
//!
//! ```text
//! dist_ij = ‖a_i − p_j‖²   (Distance::Squared, the default)   or   ‖a_i − p_j‖   (Distance::Euclidean)
//! L(a, p) = −(1/N) Σ_i log( exp(−dist_ii) / Σ_j exp(−dist_ij) ) = (1/N) Σ_i [ dist_ii + log Σ_j exp(−dist_ij) ]
//! L_SC    = ½ (L(a, p) + L(p, a))   (symmetric, the paper's, the default)   or   L(a, p)   (one-sided)
//! ```
//!
//! `L(p, a)` uses `dist_ji`: its softmax runs down the columns of the same distance matrix.
//!
//! Two implementations with the same value and gradients:
//!
//! | function | tape | backward |
//! | --- | --- | --- |
//! | [`sc_loss_composed`] | `square`, `sum`, `matmul`, `log_softmax`, `diagonal`, … | the primitives' rules |
//! | [`sc_loss`] | one op, `sc_loss` | the analytic rule below: three GEMMs in all |
//!
//! The rule. With `S^r_ij = softmax_j(−dist_ij)` (rows) and `S^c_ij = softmax_i(−dist_ij)`
//! (columns), the weight of each distance is
//!
//! ```text
//! M_ij = ∂L/∂dist_ij = (δ_ij − S^r_ij) / N                          (one-sided)
//! M_ij = (2δ_ij − S^r_ij − S^c_ij) / (2N)                           (symmetric)
//! ```
//!
//! and with `K_ij = 2·M_ij` (squared, `∂dist_ij/∂a_i = 2(a_i − p_j)`) or `K_ij = M_ij / dist_ij`
//! (Euclidean, `∂dist_ij/∂a_i = (a_i − p_j)/dist_ij`; `K_ij = 0` where `dist_ij = 0`, the
//! minimum-norm subgradient of `‖·‖` at 0):
//!
//! ```text
//! ∂L/∂a_i =  Σ_j K_ij (a_i − p_j)   →   ∂L/∂A = diag(K·1)·A − K·P
//! ∂L/∂p_j = −Σ_i K_ij (a_i − p_j)   →   ∂L/∂P = diag(Kᵀ·1)·P − Kᵀ·A
//! ```
//!
//! The forward's GEMM is `A·Pᵀ`, the backward's `K·P` and `Kᵀ·A`.
//!
//! Numerics of the fused op (the composite has none of these refinements; the tests check that
//! both agree to 1e-12 in `f64` on ordinary inputs):
//!
//! * The distances come from the Gram form `|a_i|² + |p_j|² − 2 a_i·p_j`, which loses precision
//!   relative to the features' norms. The loss depends on differences only, so both the forward
//!   and the rule work on features centred on the mean `μ` of all `2N` rows: the error is then
//!   relative to the spread of the features, not to a common offset (features after a ReLU
//!   share a large positive mean). The rule's formula contains differences only, so centring
//!   changes no gradient.
//! * Each `dist_ii` is computed from `a_i − p_i` directly (exact zeros for coinciding pairs).
//!   For the Euclidean distance, where `√` amplifies the Gram form's error near 0, every pair
//!   closer than `(|ã_i|² + |p̃_j|²)/64` is recomputed directly, and its gradient term
//!   `K_ij (a_i − p_j)` is formed from that difference, not inside the GEMMs.
//! * Each softmax is shifted by its row's (column's) smallest distance, so its largest term is
//!   `exp(0) = 1`: nothing underflows to an empty sum, however large the distances.
//!   `1 − S_ii` is computed as `Σ_{j≠i} S_ij`, and `L_i = log1p(Σ_{j≠i} exp(dist_ii − dist_ij))`
//!   when `dist_ii` is the row's minimum, so a loss near 0 keeps its relative precision.
//! * In `f32` the exponentials use a vectorisable polynomial `exp` (Cephes' `expf` coefficients,
//!   within 2 ulp on the arguments used here, all ≤ 0); `f64` uses the standard library's.
//!
//! The result does not depend on the number of rayon threads: the forward GEMM is split by rows
//! at a multiple of 64, every row and column reduction runs in a fixed order on one thread.
//!
//! Speed (f32, N = 128, d = 256, one thread): the three GEMMs are about two thirds of the time.
//! matrixmultiply packs its operands by contiguous copies only when the left one is column-major
//! and the right one row-major, so the forward keeps the centred features in both layouts
//! (`[N, d]` and `[d, N]`, the latter by 8 × 8 AVX transposes) and the rule keeps `K` and `Kᵀ`.
//! The forward's element-wise passes are compiled for AVX-512F, AVX2 and the baseline, and
//! chosen at run time; all give the same bits. With two or more rayon threads, and GEMMs of at
//! least 2²⁴ multiply-adds (as the engine's), the forward GEMM is split in two and the
//! backward's two GEMMs run side by side. The op's `[N, d]` and `[N, N]` buffers are kept per
//! thread for the next call (`buffer`; at most 8 of them and 32 MiB): at N = 512 fresh ones
//! cost 7.1 ms per forward and backward against 5.0 ms reused (page faults; one thread,
//! 2026-12-02, AMD EPYC family 25). Three kinds of
//! `unsafe`, each with its argument: reinterpreting `[T]` as `[f32]` when `T` is `f32`, the AVX
//! transpose kernel, and calling the AVX2 and AVX-512F builds after detecting the feature.

mod composed;
mod fused;
mod kernels;

pub use composed::{pairwise_sq_dist, sc_loss_composed};
pub use fused::{sc_loss, sc_loss_value};
pub use kernels::sq_diff;

/// Which distance the loss contrasts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Distance {
    /// `‖a_i − p_j‖²` (docs/math.md §5; the default).
    #[default]
    Squared,
    /// `‖a_i − p_j‖`, with the subgradient 0 where it is 0.
    Euclidean,
}

/// The options of the spatial-contrasting loss: the distance, and whether the loss is the
/// paper's symmetric average of both directions (default) or one-sided, `L(a, p)` alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScConfig {
    pub distance: Distance,
    pub symmetric: bool,
}

impl Default for ScConfig {
    fn default() -> Self {
        ScConfig { distance: Distance::Squared, symmetric: true }
    }
}

impl ScConfig {
    /// Squared distance, symmetric (the paper's loss).
    pub fn new() -> Self {
        Self::default()
    }
    pub fn distance(self, distance: Distance) -> Self {
        ScConfig { distance, ..self }
    }
    pub fn symmetric(self, symmetric: bool) -> Self {
        ScConfig { symmetric, ..self }
    }
    /// `L(a, p)` alone.
    pub fn one_sided(self) -> Self {
        self.symmetric(false)
    }
    /// A short description (`"squared, symmetric"`) for tables and bench labels.
    pub fn describe(&self) -> String {
        let d = match self.distance {
            Distance::Squared => "squared",
            Distance::Euclidean => "euclidean",
        };
        format!("{d}, {}", if self.symmetric { "symmetric" } else { "one-sided" })
    }
}

/// `(N, d)` of two feature matrices. **Panics** unless both are `[N, d]` with `N ≥ 1`.
#[track_caller]
fn check_features(op: &str, a: &[usize], p: &[usize]) -> (usize, usize) {
    assert!(a.len() == 2 && a == p, "{op}: anchors and positives must both be [N, d], got {a:?} and {p:?}");
    assert!(a[0] >= 1, "{op}: needs at least one pair of features, got {a:?}");
    (a[0], a[1])
}

#[cfg(test)]
mod tests {
    use engine::kernels::simd::Isa;
    use engine::{Element, Tensor};

    use super::fused::*;
    use super::kernels::*;
    use super::*;

    /// Within 2 ulp of the correctly rounded e^x (from f64) on [ln(f32::MIN_POSITIVE), 0], on
    /// a fine grid and at the ends; exact at 0; 0 below; NaN stays NaN.
    #[test]
    fn polynomial_exp_is_within_two_ulp_where_it_is_used() {
        let lo = f32::MIN_POSITIVE.ln();
        let mut worst = 0.0f64;
        let mut x = 0.0f32;
        while x >= lo {
            let (got, want) = (exp_f32(x), (x as f64).exp());
            let ulp = f32::EPSILON as f64 * (want as f32) as f64;
            worst = worst.max((got as f64 - want).abs() / ulp);
            x -= 1.37e-3;
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(-0.0), 1.0);
        assert!(exp_f32(lo) > 0.0); // e^lo ≈ f32::MIN_POSITIVE (possibly a subnormal just below)
        assert_eq!(exp_f32(-88.0), 0.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
        let mut v = vec![0.0f32; 3];
        exp_shifted(&mut v, 1.0, &[1.0, 2.0, 21.0]);
        assert_eq!(v, vec![1.0, exp_f32(-1.0), exp_f32(-20.0)]);
        exp_shifted_each(&mut v, &[1.0, 0.0, -1.0], &[1.0, 1.0, 1.0]);
        assert_eq!(v, vec![1.0, exp_f32(-1.0), exp_f32(-2.0)]);
        let mut w = vec![0.0f64; 2];
        exp_shifted(&mut w, 0.5, &[0.5, 1.5]);
        assert_eq!(w, vec![1.0, (-1.0f64).exp()]);
    }

    /// Both paths (AVX shuffles for f32 where available, the portable block for f64) on
    /// shapes with and without edges.
    #[test]
    fn blocked_transpose_matches_the_definition() {
        for (r, c) in [(0, 3), (1, 1), (5, 17), (8, 8), (33, 16), (16, 40), (130, 257)] {
            let x: Vec<f64> = (0..r * c).map(|v| v as f64).collect();
            let mut t = vec![0.0; r * c];
            transpose_into(&x, r, c, &mut t);
            assert!((0..r).all(|i| (0..c).all(|j| t[j * r + i] == x[i * c + j])), "f64 {r}×{c}");
            let x: Vec<f32> = (0..r * c).map(|v| v as f32).collect();
            let mut t = vec![0.0; r * c];
            transpose_into(&x, r, c, &mut t);
            assert!((0..r).all(|i| (0..c).all(|j| t[j * r + i] == x[i * c + j])), "f32 {r}×{c}");
            // Centring: both layouts and the norms, against the definitions.
            let mu: Vec<f32> = (0..c).map(|j| j as f32 * 0.5).collect();
            for rows in [false, true] {
                let (cr, ct, norms) = centre_one(&x, &mu, r, c, rows);
                let want = |i: usize, j: usize| x[i * c + j] - mu[j];
                assert!((0..r).all(|i| (0..c).all(|j| ct[j * r + i] == want(i, j))), "centred {r}×{c}");
                assert_eq!(cr.is_empty(), !rows || r * c == 0);
                if rows {
                    assert!((0..r).all(|i| (0..c).all(|j| cr[i * c + j] == want(i, j))), "rows {r}×{c}");
                }
                for (i, &nrm) in norms.iter().enumerate() {
                    let w: f32 = (0..c).map(|j| want(i, j) * want(i, j)).sum();
                    assert_eq!(nrm, w, "norm {i} of {r}×{c}"); // both summed in column order
                }
            }
        }
    }

    /// Kept buffers left by earlier calls (NaN-filled) change no bit of the value or the
    /// gradients: the same calls after the pool is emptied give the same bits.
    #[test]
    fn spare_buffers_change_nothing() {
        fn run(n: usize, d: usize, seed: u64, cfg: ScConfig) -> Vec<u64> {
            let mut rng = engine::Rng::new(seed);
            let a = Tensor::<f32>::randn(&[n, d], &mut rng);
            let p = a.add(&Tensor::<f32>::randn(&[n, d], &mut rng).mul_scalar(0.5));
            let (l, r) = forward(&a, &p, cfg, true);
            let r = r.unwrap();
            let (ga, gp) = (r.grad_a(1.0, &[], &[]), r.grad_p(1.0, &[], &[]));
            let mut bits = vec![l.to_bits() as u64];
            for t in [ga, gp] {
                bits.extend(t.to_vec().iter().map(|x| x.to_bits() as u64));
            }
            bits
        }
        // Buffers of at least engine::recycle::MIN_BYTES are kept: [N, N] and [N, d] at N = 200,
        // d = 170 in f32 (and the small calls, which keep nothing).
        let calls = [(200, 170, 1), (9, 5, 2), (200, 170, 3), (40, 24, 4)];
        let cfgs = [ScConfig::new(), ScConfig::new().one_sided()];
        const _: () = assert!(200 * 170 * 4 >= engine::recycle::MIN_BYTES);
        let poison = || {
            for _ in 0..3 {
                for v in [vec![f32::NAN; 200 * 200], vec![f32::NAN; 200 * 170]] {
                    engine::recycle::give(v);
                }
            }
        };
        poison();
        let warm: Vec<Vec<u64>> = cfgs
            .iter()
            .flat_map(|&c| {
                calls.iter().map(move |&(n, d, s)| {
                    poison();
                    run(n, d, s, c)
                })
            })
            .collect();
        let fresh: Vec<Vec<u64>> = cfgs
            .iter()
            .flat_map(|&c| {
                calls.iter().map(move |&(n, d, s)| {
                    engine::recycle::release();
                    run(n, d, s, c)
                })
            })
            .collect();
        assert!(warm.iter().all(|b| b.iter().all(|&x| !f32::from_bits(x as u32).is_nan())));
        assert_eq!(warm, fresh);
    }

    /// The AVX-512F and AVX2 builds of the forward pass and the portable one give the same bits (value,
    /// `K`, its sums), in f32 and f64, for every option.
    #[test]
    fn both_builds_of_the_forward_give_the_same_bits() {
        fn check<T: Element>(n: usize, d: usize) {
            let mut rng = engine::Rng::new(3);
            let a = Tensor::<T>::randn(&[n, d], &mut rng);
            let p = a.add(&Tensor::<T>::randn(&[n, d], &mut rng).mul_scalar(0.5));
            for cfg in [
                ScConfig::new(),
                ScConfig::new().one_sided(),
                ScConfig::new().distance(Distance::Euclidean),
                ScConfig::new().distance(Distance::Euclidean).one_sided(),
            ] {
                let mut builds = vec![("dispatched", forward(&a, &p, cfg, true))];
                builds.extend(Isa::available().into_iter().map(|isa| (isa.name(), forward_at(isa, &a, &p, cfg, true))));
                let (l2, r2) = forward_impl(&a, &p, cfg, true);
                let r2 = r2.unwrap();
                let bits = |v: &[T]| v.iter().map(|x| x.as_f64().to_bits()).collect::<Vec<_>>();
                for (build, (l1, r1)) in builds {
                    let r1 = r1.unwrap();
                    let what = format!("{build}, {}", cfg.describe());
                    assert_eq!(l1.as_f64().to_bits(), l2.as_f64().to_bits(), "{what}");
                    assert_eq!(bits(&r1.k), bits(&r2.k), "{what}");
                    assert_eq!(bits(&r1.kt), bits(&r2.kt), "{what}");
                    assert_eq!(bits(&r1.row_sums), bits(&r2.row_sums), "{what}");
                    assert_eq!(bits(&r1.col_sums), bits(&r2.col_sums), "{what}");
                    assert_eq!(bits(&r1.centred.at), bits(&r2.centred.at), "{what}");
                    assert_eq!(bits(&r1.centred.a), bits(&r2.centred.a), "{what}");
                }
            }
        }
        check::<f32>(70, 37);
        check::<f64>(70, 37);
    }

    /// The helpers' fixed-order reductions on lengths around their 32-wide blocks.
    #[test]
    fn reductions_match_plain_loops() {
        for n in [0usize, 1, 7, 31, 32, 33, 65, 130] {
            let x: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
            let y: Vec<f64> = (0..n).map(|i| (i as f64 * 0.11).cos()).collect();
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-14 * (1.0 + b.abs());
            assert!(close(sum(&x), x.iter().sum()));
            assert!(close(kernels::sq_diff(&x, &y), x.iter().zip(&y).map(|(a, b)| (a - b) * (a - b)).sum()));
            assert_eq!(min(&x), x.iter().copied().fold(f64::INFINITY, f64::min));
        }
    }
}
