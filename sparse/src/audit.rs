//! The gradient audit of this crate's rules, built from the autograd audit's input builders
//! and listed by `sparsegrad gradcheck` beside the built-in ops ([`registry`]).
//!
//! The coding maps are piecewise linear in their inputs (the active set of every coded vector
//! is fixed on each piece), so a central difference is only valid away from the pieces'
//! boundaries. Every case is therefore built on inputs whose [`kink_margin`] is at least
//! [`KINK_MARGIN`] = 1e-4 (docs/math.md §1: no inactive correlation within 1e-4 of λ1, no active
//! coefficient within 1e-4 of zero); an input that falls short is *regenerated* from the next
//! draw of the same seeded generator, never checked with looser tolerances. Every case uses
//! the default checker options (eps 1e-6, atol 1e-7, rtol 1e-5).

use autograd::audit::inputs::{input, make, rng_for, Dom, Input, View};
use autograd::audit::{self, AuditCase};
use autograd::CheckOptions;
use engine::Tensor;

use crate::lars::{lars_en, LarsConfig};
use crate::margin::regenerate;
use crate::sf::{csf, csf_loss, sf, sf_loss, sf_with_lambdas, Patches};

// The margin and the redraw loop live in the leaf `margin` (it imports no rule), so the rules'
// cases depend on it and not on this collector: rules → margin ← audit, audit → rules.
pub use crate::margin::KINK_MARGIN;

/// How far the coding problem `(d, x)` is from a change of any active set: the minimum over
/// the coded rows of `x` of `min_{j ∈ Λ} |α*_j|` and `min_{j ∉ Λ} (λ1 − |d_jᵀr − λ2·α*_j|)`
/// (with `r = x − Dα*`; for non-negative codes the correlation itself, not its magnitude).
/// A path stopped by the cap on active atoms, or with atoms skipped as dependent, has margin 0.
///
/// # Errors
/// Those of [`lars_en`].
pub fn kink_margin(d: &Tensor<f64>, x: &Tensor<f64>, cfg: &LarsConfig) -> Result<f64, crate::SparseError> {
    let sol = lars_en(d, x, cfg)?;
    let a = &sol.codes;
    let r = x.sub(&a.matmul(&d.t()));
    let c = r.matmul(d).sub(&a.mul_scalar(cfg.lambda2));
    let (n, k) = (a.dim(0), a.dim(1));
    let (av, cv) = (a.contiguous().into_vec(), c.contiguous().into_vec());
    let mut margin = f64::INFINITY;
    for (s, path) in sol.paths.iter().enumerate().take(n) {
        if path.hit_cap || !path.skipped.is_empty() {
            return Ok(0.0);
        }
        for j in 0..k {
            let (aj, cj) = (av[s * k + j], cv[s * k + j]);
            let m = if path.active.contains(&j) {
                aj.abs()
            } else if cfg.positive {
                cfg.lambda1 - cj
            } else {
                cfg.lambda1 - cj.abs()
            };
            margin = margin.min(m);
        }
    }
    Ok(margin)
}

/// `frac · max_{n, j} |d_jᵀ x_n|` for `x [N, m]`: a λ1 that keeps some atoms active.
fn lambda_for(d: &Tensor<f64>, x: &Tensor<f64>, frac: f64) -> f64 {
    let c = x.matmul(d).contiguous().into_vec();
    frac * c.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

/// The logical value of an input (broadcast to its target).
fn logical(x: &Input) -> Tensor<f64> {
    match &x.target {
        Some(t) => x.value.broadcast_to(t).contiguous(),
        None => x.value.contiguous(),
    }
}

/// One SF-family case: dictionary layout, signal layout, λ2, non-negativity, and whether the
/// λ's are inputs.
struct SfSpec {
    d_view: View,
    x_view: View,
    lambda2: f64,
    positive: bool,
    learn_lambdas: bool,
}

fn sf_cases(out: &mut Vec<AuditCase>, op: &'static str) {
    let mut rng = rng_for(op, 0);
    let (m, k, n) = (6 + rng.below(4) as usize, 9 + rng.below(4) as usize, 3 + rng.below(2) as usize);
    let specs = [
        SfSpec {
            d_view: View::Contiguous,
            x_view: View::Contiguous,
            lambda2: 0.0,
            positive: false,
            learn_lambdas: false,
        },
        SfSpec { d_view: View::Transposed, x_view: View::Sliced, lambda2: 0.01, positive: false, learn_lambdas: false },
        SfSpec { d_view: View::Sliced, x_view: View::Transposed, lambda2: 0.1, positive: false, learn_lambdas: false },
        SfSpec {
            d_view: View::Contiguous,
            x_view: View::Broadcast,
            lambda2: 0.01,
            positive: false,
            learn_lambdas: false,
        },
        SfSpec {
            d_view: View::Contiguous,
            x_view: View::Contiguous,
            lambda2: 0.01,
            positive: true,
            learn_lambdas: false,
        },
        SfSpec {
            d_view: View::Transposed,
            x_view: View::Contiguous,
            lambda2: 0.05,
            positive: false,
            learn_lambdas: true,
        },
        SfSpec { d_view: View::Contiguous, x_view: View::Sliced, lambda2: 0.02, positive: true, learn_lambdas: true },
    ];
    for spec in specs {
        if spec.learn_lambdas && op != "sf" {
            continue;
        }
        let (d, x, lambda1) = regenerate(
            op,
            || {
                let d = make(spec.d_view, &[m, k], Dom::Any, &mut rng);
                let x = input(spec.x_view, &[n, m], Dom::Any, &mut rng, "");
                let lambda1 = lambda_for(&d, &logical(&x), 0.3);
                (d, x, lambda1)
            },
            |(d, x, l1)| {
                let cfg = LarsConfig::new(*l1, spec.lambda2).positive(spec.positive);
                kink_margin(&d.contiguous(), &logical(x), &cfg).unwrap_or(0.0)
            },
        );
        let cfg = LarsConfig::new(lambda1, spec.lambda2).positive(spec.positive);
        let sign = if spec.positive { ", non-negative" } else { "" };
        let desc = format!(
            "{} · dictionary {}; λ1 {lambda1:.4}, λ2 {}{sign}{}",
            x.desc,
            audit::inputs::describe(spec.d_view, &[m, k]),
            spec.lambda2,
            if spec.learn_lambdas { "; λ1, λ2 learned (inputs [1])" } else { "" }
        );
        let target = x.target.clone();
        let mut inputs = vec![d, x.value];
        let case = if spec.learn_lambdas {
            inputs.push(Tensor::from([lambda1]));
            inputs.push(Tensor::from([spec.lambda2]));
            AuditCase::gradcheck(op, desc, inputs, CheckOptions::default(), move |_, v| {
                let x = audit::inputs::bcast(&v[1], &target);
                sf_with_lambdas(&v[0], &x, &v[2], &v[3], &cfg).expect("sf").0
            })
        } else {
            AuditCase::gradcheck(op, desc, inputs, CheckOptions::default(), move |_, v| {
                let x = audit::inputs::bcast(&v[1], &target);
                if op == "sf" {
                    sf(&v[0], &x, &cfg).expect("sf").0
                } else {
                    sf_loss(&v[0], &x, &cfg).expect("sf_loss").0
                }
            })
        };
        out.push(case);
    }
}

/// One CSF-family case: image shape and layout, dictionary layout, patch geometry, λ2,
/// non-negativity.
struct CsfSpec {
    x_shape: [usize; 4],
    x_view: View,
    d_view: View,
    geometry: Patches,
    atoms: usize,
    lambda2: f64,
    positive: bool,
}

fn csf_cases(out: &mut Vec<AuditCase>, op: &'static str) {
    let mut rng = rng_for(op, 0);
    let specs = [
        CsfSpec {
            x_shape: [2, 1, 6, 6],
            x_view: View::Contiguous,
            d_view: View::Contiguous,
            geometry: Patches::new(3),
            atoms: 12,
            lambda2: 0.0,
            positive: false,
        },
        CsfSpec {
            x_shape: [2, 2, 5, 6],
            x_view: View::Permuted,
            d_view: View::Transposed,
            geometry: Patches::new(2).kernel2([2, 3]).stride(2).padding(1),
            atoms: 14,
            lambda2: 0.01,
            positive: false,
        },
        CsfSpec {
            x_shape: [1, 1, 6, 5],
            x_view: View::Sliced,
            d_view: View::Sliced,
            geometry: Patches::new(3).padding(1),
            atoms: 10,
            lambda2: 0.05,
            positive: false,
        },
        CsfSpec {
            x_shape: [3, 1, 5, 5],
            x_view: View::Broadcast,
            d_view: View::Contiguous,
            geometry: Patches::new(3).stride(2),
            atoms: 11,
            lambda2: 0.01,
            positive: false,
        },
        CsfSpec {
            x_shape: [2, 1, 5, 5],
            x_view: View::Contiguous,
            d_view: View::Contiguous,
            geometry: Patches::new(2),
            atoms: 8,
            lambda2: 0.01,
            positive: true,
        },
    ];
    for spec in specs {
        let ckk = spec.x_shape[1] * spec.geometry.kernel[0] * spec.geometry.kernel[1];
        let geo = spec.geometry;
        let (d, x, lambda1) = regenerate(
            op,
            || {
                let d = make(spec.d_view, &[ckk, spec.atoms], Dom::Any, &mut rng);
                let x = input(spec.x_view, &spec.x_shape, Dom::Any, &mut rng, "");
                let patches = patch_matrix(&logical(&x), geo);
                let lambda1 = lambda_for(&d, &patches, 0.3);
                (d, x, lambda1)
            },
            |(d, x, l1)| {
                let cfg = LarsConfig::new(*l1, spec.lambda2).positive(spec.positive);
                kink_margin(&d.contiguous(), &patch_matrix(&logical(x), geo), &cfg).unwrap_or(0.0)
            },
        );
        let cfg = LarsConfig::new(lambda1, spec.lambda2).positive(spec.positive);
        let sign = if spec.positive { ", non-negative" } else { "" };
        let desc = format!(
            "{} · dictionary {}; {:?} window, stride {:?}, padding {:?}; λ1 {lambda1:.4}, λ2 {}{sign}",
            x.desc,
            audit::inputs::describe(spec.d_view, &[ckk, spec.atoms]),
            geo.kernel,
            geo.conv.stride,
            geo.conv.padding,
            spec.lambda2
        );
        let target = x.target.clone();
        out.push(AuditCase::gradcheck(op, desc, vec![d, x.value], CheckOptions::default(), move |_, v| {
            let x = audit::inputs::bcast(&v[1], &target);
            if op == "csf" {
                csf(&v[0], &x, geo, &cfg).expect("csf").0
            } else {
                csf_loss(&v[0], &x, geo, &cfg).expect("csf_loss").0
            }
        }));
    }
}

/// The patch matrix the CSF op codes (through the op itself, so the audit shares its
/// geometry), for margin checks.
fn patch_matrix(x: &Tensor<f64>, geo: Patches) -> Tensor<f64> {
    let cols = x.im2col(geo.kernel, geo.conv);
    let (n, ckk, l) = (cols.dim(0), cols.dim(1), cols.dim(2));
    cols.transpose(1, 2).contiguous().reshape(&[n * l, ckk])
}

/// Every audit case of this crate's rules: `sf` (with fixed and learned λ), `csf`,
/// `sf_loss`, `csf_loss`, the CSC layer (`csc_unrolled`, `csc_implicit`), the three NLLs and
/// the three rules of the unfolded encoder of [`crate::dcea`] (`dcea_iteration`,
/// `dcea_decode`, `dcea_threshold`) and the whole unfolded
/// DCEA (labelled `dcea`, a composite), `sc_loss` ([`crate::scl`]), and
/// `dct_conv` ([`crate::dct`]: the fixed DCT convolution, a composite of `conv2d` and `relu`).
pub fn cases() -> Vec<AuditCase> {
    let mut out = Vec::new();
    sf_cases(&mut out, "sf");
    sf_cases(&mut out, "sf_loss");
    csf_cases(&mut out, "csf");
    csf_cases(&mut out, "csf_loss");
    crate::csc::audit_cases(&mut out);
    crate::dcea::cases(&mut out);
    crate::scl::cases(&mut out);
    crate::dct::cases(&mut out);
    out
}

/// The names of the rules this crate records on the tape (the coverage test checks the audit
/// against them, as `autograd::ops::RULES` for the built-ins). The `dct_conv` cases are a
/// composite label: the layer records `conv2d` and `relu`, no rule of its own.
pub const RULES: &[&str] = &[
    "sf",
    "sf_loss",
    "csf",
    "csf_loss",
    "csc_implicit",
    "gaussian_nll",
    "binomial_nll",
    "poisson_nll",
    "dcea_iteration",
    "dcea_decode",
    "dcea_threshold",
    "sc_loss",
];

/// The whole registry: the built-in ops' cases followed by this crate's.
pub fn registry() -> Vec<AuditCase> {
    let mut all = audit::cases();
    all.extend(cases());
    all
}
