//! The audit cases of the `matmul` op family (`autograd::ops::matmul`).

use autograd::audit::inputs::*;
use autograd::audit::AuditCase;
use engine::Tensor;

use autograd::CheckOptions;

pub(crate) fn all(out: &mut Vec<AuditCase>) {
    let mut rng = rng_for("matmul", 0);
    let d = dims(&mut rng, 4, 2, 5);
    let (m, k, n, b) = (d[0], d[1], d[2], d[3]);
    let mut push = |input: String, x: Tensor<f64>, y: Tensor<f64>, opts: CheckOptions| {
        out.push(AuditCase::gradcheck("matmul", input, vec![x, y], opts, |_, v| v[0].matmul(&v[1])));
    };
    let any = Dom::Any;
    let views = [
        (View::Contiguous, View::Contiguous),
        (View::Transposed, View::Contiguous),
        (View::Contiguous, View::Transposed),
        (View::Transposed, View::Transposed),
        (View::Sliced, View::Sliced),
    ];
    for (va, vb) in views {
        push(
            format!("{} · {}", describe(va, &[m, k]), describe(vb, &[k, n])),
            make(va, &[m, k], any, &mut rng),
            make(vb, &[k, n], any, &mut rng),
            default(),
        );
    }
    push(
        format!("batched contiguous [{b}, {m}, {k}] · [{b}, {k}, {n}]"),
        tensor(any, &[b, m, k], &mut rng),
        tensor(any, &[b, k, n], &mut rng),
        default(),
    );
    push(
        format!("batched permuted view [{b}, {m}, {k}] · [{k}, {n}] (broadcast)"),
        make(View::Permuted, &[b, m, k], any, &mut rng),
        tensor(any, &[k, n], &mut rng),
        default(),
    );
    push(
        format!("broadcast batch [2, 1, {m}, {k}] · [3, {k}, {n}]"),
        tensor(any, &[2, 1, m, k], &mut rng),
        tensor(any, &[3, k, n], &mut rng),
        default(),
    );
    push(
        format!("vector [{k}] · matrix [{k}, {n}]"),
        tensor(any, &[k], &mut rng),
        tensor(any, &[k, n], &mut rng),
        default(),
    );
    push(
        format!("transposed view [{m}, {k}] · vector [{k}]"),
        make(View::Transposed, &[m, k], any, &mut rng),
        tensor(any, &[k], &mut rng),
        default(),
    );
    push(format!("vector [{k}] · vector [{k}]"), tensor(any, &[k], &mut rng), tensor(any, &[k], &mut rng), default());
    push(
        format!("vector [{k}] · batched [{b}, {k}, {n}]"),
        tensor(any, &[k], &mut rng),
        tensor(any, &[b, k, n], &mut rng),
        default(),
    );
    // 64·256·2048 = 2²⁵ multiply-adds: the engine splits the columns into parallel blocks.
    push(
        "contiguous [64, 256] · transposed view [256, 2048] (column blocks); 10 sampled elements".to_string(),
        tensor(Dom::Range(-1.0, 1.0), &[64, 256], &mut rng),
        make(View::Transposed, &[256, 2048], Dom::Range(-1.0, 1.0), &mut rng),
        default().max_elements(10),
    );
}
