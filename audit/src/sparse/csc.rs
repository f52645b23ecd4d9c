//! The audit cases of the CSC layer (`sparse::csc`).

use engine::{Conv2dParams, Tensor};
use sparse::csc::*;
use sparse::fista::{fista, lipschitz, FistaConfig, Momentum, PowerConfig, Prox};

/// The audit cases of the CSC layer: `csc_unrolled` (a composite of audited ops, labelled as
/// the layer) and `csc_implicit` (its own rule), each on contiguous, permuted, sliced and
/// broadcast signals, a transposed weight view, learned λ, both proxes and both momenta.
/// Inputs are regenerated until the map is at least `KINK_MARGIN` from a kink: every prox
/// argument of every iteration away from the threshold (unrolled), the solution's support
/// and correlations away from a change (implicit).
pub(crate) fn cases(out: &mut Vec<autograd::audit::AuditCase>) {
    use autograd::audit::inputs::{bcast, describe, input, make, rng_for, Dom, View};
    use autograd::audit::AuditCase;
    use autograd::CheckOptions;

    use sparse::audit::{regenerate, KINK_MARGIN};

    struct Spec {
        x_shape: [usize; 4],
        x_view: View,
        w_view: View,
        atoms: usize,
        kernel: usize,
        conv: Conv2dParams,
        fista: FistaConfig,
        learn_lambda: bool,
    }
    #[allow(clippy::too_many_arguments)]
    fn spec(
        x_shape: [usize; 4],
        x_view: View,
        w_view: View,
        atoms: usize,
        kernel: usize,
        conv: Conv2dParams,
        fista: FistaConfig,
        learn_lambda: bool,
    ) -> Spec {
        Spec { x_shape, x_view, w_view, atoms, kernel, conv, fista, learn_lambda }
    }
    let c = Conv2dParams::new;
    let unrolled = [
        spec([2, 1, 5, 5], View::Contiguous, View::Contiguous, 3, 3, c().padding(1), FistaConfig::sdnet(0.1, 2), false),
        spec(
            [1, 2, 6, 5],
            View::Permuted,
            View::Transposed,
            3,
            3,
            c().stride(2).padding(1),
            FistaConfig::new(0.2, 3),
            false,
        ),
        spec(
            [2, 1, 6, 6],
            View::Sliced,
            View::Contiguous,
            2,
            2,
            c(),
            FistaConfig::new(0.15, 4).momentum(Momentum::Sdnet),
            false,
        ),
        spec([3, 1, 5, 5], View::Broadcast, View::Contiguous, 3, 3, c().padding(1), FistaConfig::sdnet(0.1, 3), true),
        spec([1, 1, 6, 6], View::Contiguous, View::Sliced, 2, 3, c().padding(1), FistaConfig::new(0.2, 3), true),
    ];
    let implicit =
        |s: Spec| Spec { fista: FistaConfig { iters: 600, momentum: Momentum::BeckTeboulle, ..s.fista }, ..s };
    let implicit_specs: Vec<Spec> = [
        spec(
            [2, 1, 5, 5],
            View::Contiguous,
            View::Contiguous,
            3,
            3,
            c().padding(1),
            FistaConfig::new(0.3, 1).prox(Prox::NonNegative),
            false,
        ),
        spec([1, 2, 5, 6], View::Permuted, View::Transposed, 3, 2, c().stride(2), FistaConfig::new(0.3, 1), false),
        spec([1, 1, 6, 5], View::Sliced, View::Contiguous, 2, 3, c().padding(1), FistaConfig::new(0.3, 1), true),
        spec(
            [2, 1, 5, 5],
            View::Broadcast,
            View::Contiguous,
            2,
            3,
            c().padding(1),
            FistaConfig::new(0.3, 1).prox(Prox::NonNegative),
            true,
        ),
    ]
    .into_iter()
    .map(implicit)
    .collect();
    let specs = unrolled
        .into_iter()
        .map(|s| ("csc_unrolled", s))
        .chain(implicit_specs.into_iter().map(|s| ("csc_implicit", s)));
    for (op, spec) in specs {
        let mut rng = rng_for(op, spec.x_shape.iter().sum::<usize>() as u64 + spec.atoms as u64);
        let gradient = if op == "csc_unrolled" {
            Gradient::Unrolled
        } else {
            Gradient::Implicit(Implicit { polish: true, cg_tol: 1e-12, cg_max_iter: 1000 })
        };
        let cfg = CscConfig { fista: spec.fista.clone(), conv: spec.conv, gradient };
        let ws = [spec.atoms, spec.x_shape[1], spec.kernel, spec.kernel];
        let hw = [spec.x_shape[2], spec.x_shape[3]];
        let (w, x, l) = regenerate(
            op,
            || {
                let w = make(spec.w_view, &ws, Dom::Any, &mut rng);
                let x = input(spec.x_view, &spec.x_shape, Dom::Any, &mut rng, "");
                let op = Conv::new(w.contiguous(), spec.conv, hw);
                let z = op.z_hw();
                let power = PowerConfig { max_iter: 2000, tol: 1e-20, seed: 1 };
                let l = lipschitz(&op, &[1, ws[0], z[0], z[1]], None, &power).map(|e| e.value * 1.001).unwrap_or(0.0);
                (w, x, l)
            },
            |(w, x, l)| {
                let xv = match &x.target {
                    Some(t) => x.value.broadcast_to(t).contiguous(),
                    None => x.value.contiguous(),
                };
                if op == "csc_unrolled" {
                    let conv = Conv::new(w.contiguous(), spec.conv, hw);
                    fista(&conv, &xv, *l, &spec.fista.clone().trace(true)).map(|(_, t)| t.kink_margin).unwrap_or(0.0)
                } else {
                    implicit_margin(&xv, &w.contiguous(), *l, &cfg).unwrap_or(0.0)
                }
            },
        );
        let desc = format!(
            "{} · weight {}; stride {:?}, padding {:?}; T {}, λ {}{}, {:?} prox, {:?} momentum, step {}/L",
            x.desc,
            describe(spec.w_view, &ws),
            spec.conv.stride,
            spec.conv.padding,
            spec.fista.iters,
            spec.fista.lambda,
            if spec.learn_lambda { " (learned)" } else { "" },
            spec.fista.prox,
            spec.fista.momentum,
            spec.fista.step_scale
        );
        let _ = KINK_MARGIN;
        let target = x.target.clone();
        let mut inputs = vec![x.value, w];
        if spec.learn_lambda {
            inputs.push(Tensor::from([spec.fista.lambda]));
        }
        let learn = spec.learn_lambda;
        out.push(AuditCase::gradcheck(op, desc, inputs, CheckOptions::default(), move |_, v| {
            let x = bcast(&v[0], &target);
            csc(&x, &v[1], if learn { Some(&v[2]) } else { None }, l, &cfg).expect("csc").0
        }));
    }
}
