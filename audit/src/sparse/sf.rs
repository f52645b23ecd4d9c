//! The audit cases of the SF and CSF rules and their unsupervised losses (`sparse::sf`).

use autograd::audit::inputs::{input, make, rng_for, Dom, Input, View};
use autograd::audit::AuditCase;
use autograd::CheckOptions;
use engine::Tensor;
use sparse::audit::{kink_margin, regenerate};
use sparse::lars::LarsConfig;
use sparse::sf::{csf, csf_loss, sf, sf_loss, sf_with_lambdas, Patches};

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

pub(crate) fn sf_cases(out: &mut Vec<AuditCase>, op: &'static str) {
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
            autograd::audit::inputs::describe(spec.d_view, &[m, k]),
            spec.lambda2,
            if spec.learn_lambdas { "; λ1, λ2 learned (inputs [1])" } else { "" }
        );
        let target = x.target.clone();
        let mut inputs = vec![d, x.value];
        let case = if spec.learn_lambdas {
            inputs.push(Tensor::from([lambda1]));
            inputs.push(Tensor::from([spec.lambda2]));
            AuditCase::gradcheck(op, desc, inputs, CheckOptions::default(), move |_, v| {
                let x = autograd::audit::inputs::bcast(&v[1], &target);
                sf_with_lambdas(&v[0], &x, &v[2], &v[3], &cfg).expect("sf").0
            })
        } else {
            AuditCase::gradcheck(op, desc, inputs, CheckOptions::default(), move |_, v| {
                let x = autograd::audit::inputs::bcast(&v[1], &target);
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

pub(crate) fn csf_cases(out: &mut Vec<AuditCase>, op: &'static str) {
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
            autograd::audit::inputs::describe(spec.d_view, &[ckk, spec.atoms]),
            geo.kernel,
            geo.conv.stride,
            geo.conv.padding,
            spec.lambda2
        );
        let target = x.target.clone();
        out.push(AuditCase::gradcheck(op, desc, vec![d, x.value], CheckOptions::default(), move |_, v| {
            let x = autograd::audit::inputs::bcast(&v[1], &target);
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
