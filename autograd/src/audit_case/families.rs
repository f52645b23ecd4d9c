//! Families of audit cases: an op of one input on that input in several layouts, element-wise
//! unary and broadcasting binary ops, reductions over several axis sets, ops of several inputs.

use std::sync::Arc;

use engine::Tensor;

use super::inputs::*;
use super::AuditCase;
use crate::tape::Var;

/// Element-wise unary op `f`: a matrix in each layout (including a row broadcast over the
/// matrix) and a permuted rank-3 view.
pub fn unary<F>(out: &mut Vec<AuditCase>, op: &'static str, params: &str, dom: Dom, f: F)
where
    F: for<'t> Fn(&Var<'t, f64>) -> Var<'t, f64> + Send + Sync + 'static,
{
    let mut rng = rng_for(op, params.len() as u64);
    let s2 = dims(&mut rng, 2, 2, 5);
    let s3 = dims(&mut rng, 3, 2, 4);
    let mut inputs = layouts(&ALL2, &s2, dom, &mut rng, params);
    inputs.extend(layouts(&[View::Permuted], &s3, dom, &mut rng, params));
    single(out, op, inputs, f);
}

/// Binary op `f` with NumPy broadcasting: equal shapes in several layouts, broadcasting by
/// shape (`[r, 1] ⊕ [c]`, rank-3 ⊕ rank-2), and an input that is itself a stride-0 view.
pub fn binary<F>(out: &mut Vec<AuditCase>, op: &'static str, da: Dom, db: Dom, f: F)
where
    F: for<'t> Fn(&Var<'t, f64>, &Var<'t, f64>) -> Var<'t, f64> + Send + Sync + 'static,
{
    let f = Arc::new(f);
    let mut rng = rng_for(op, 0);
    let s2 = dims(&mut rng, 2, 2, 5);
    let s3 = dims(&mut rng, 3, 2, 4);
    let (r, c) = (s2[0], s2[1]);
    let mut push = |input: String, a: Tensor<f64>, b: Tensor<f64>| {
        let g = Arc::clone(&f);
        out.push(AuditCase::gradcheck(op, input, vec![a, b], default(), move |_, v| g(&v[0], &v[1])));
    };
    push(
        format!("contiguous {s2:?} ⊕ {s2:?}"),
        make(View::Contiguous, &s2, da, &mut rng),
        make(View::Contiguous, &s2, db, &mut rng),
    );
    push(
        format!("transposed view {s2:?} ⊕ sliced view {s2:?}"),
        make(View::Transposed, &s2, da, &mut rng),
        make(View::Sliced, &s2, db, &mut rng),
    );
    push(
        format!("contiguous {s3:?} ⊕ permuted view {s3:?}"),
        make(View::Contiguous, &s3, da, &mut rng),
        make(View::Permuted, &s3, db, &mut rng),
    );
    push(format!("broadcast [{r}, 1] ⊕ [{c}]"), tensor(da, &[r, 1], &mut rng), tensor(db, &[c], &mut rng));
    push(
        format!("broadcast {s3:?} ⊕ [{}, 1] (sliced view)", s3[1]),
        make(View::Contiguous, &s3, da, &mut rng),
        make(View::Sliced, &[s3[1], 1], db, &mut rng),
    );
    push(
        format!("broadcast [1] ⊕ transposed view {s2:?}"),
        tensor(da, &[1], &mut rng),
        make(View::Transposed, &s2, db, &mut rng),
    );
    let (a, b) = (tensor(da, &[1, c], &mut rng), make(View::Transposed, &s2, db, &mut rng));
    let g = Arc::clone(&f);
    let target = s2.clone();
    out.push(AuditCase::gradcheck(
        op,
        format!("broadcast_to view [1, {c}]→{s2:?} ⊕ transposed view {s2:?}"),
        vec![a, b],
        default(),
        move |_, v| g(&v[0].broadcast_to(&target), &v[1]),
    ));
}

/// Reduction `f(x, axes, keepdim)` over one axis, several axes (given out of order), all axes,
/// on views and on a broadcast input, and over a block long enough to be split into parallel
/// chunks (`2 × 40000` elements, a sample of 12 elements checked per input).
pub fn reduction<F>(out: &mut Vec<AuditCase>, op: &'static str, dom: Dom, f: F)
where
    F: for<'t> Fn(&Var<'t, f64>, &[usize], bool) -> Var<'t, f64> + Send + Sync + 'static,
{
    let f = Arc::new(f);
    let mut rng = rng_for(op, 1);
    let s3 = dims(&mut rng, 3, 2, 4);
    let s2 = dims(&mut rng, 2, 2, 5);
    let variants: [(View, &[usize], &[usize], bool); 6] = [
        (View::Contiguous, &s3, &[1], false),
        (View::Contiguous, &s3, &[2, 0], true),
        (View::Permuted, &s3, &[0, 2], false),
        (View::Sliced, &s2, &[1], true),
        (View::Transposed, &s2, &[0, 1], false),
        (View::Broadcast, &s3, &[0, 1], false),
    ];
    for (view, shape, axes, keepdim) in variants {
        let x = input(view, shape, dom, &mut rng, &format!("axes {axes:?}, keepdim {keepdim}"));
        let (ax, target, g) = (axes.to_vec(), x.target, Arc::clone(&f));
        out.push(AuditCase::gradcheck(op, x.desc, vec![x.value], default(), move |_, v| {
            g(&bcast(&v[0], &target), &ax, keepdim)
        }));
    }
    let big = [2, 40_000];
    let x = tensor(dom, &big, &mut rng);
    out.push(AuditCase::gradcheck(
        op,
        format!("contiguous {big:?} (chunked); axes [1], keepdim false; 12 sampled elements"),
        vec![x],
        default().max_elements(12),
        move |_, v| f(&v[0], &[1], false),
    ));
}

/// A whole-tensor reduction `f(x)` (rank-0 result) on each layout and on a broadcast input.
pub fn total<F>(out: &mut Vec<AuditCase>, op: &'static str, dom: Dom, f: F)
where
    F: for<'t> Fn(&Var<'t, f64>) -> Var<'t, f64> + Send + Sync + 'static,
{
    let mut rng = rng_for(op, 2);
    let s2 = dims(&mut rng, 2, 2, 5);
    let s3 = dims(&mut rng, 3, 2, 4);
    let mut inputs = layouts(&[View::Contiguous, View::Permuted], &s3, dom, &mut rng, "");
    inputs.extend(layouts(&[View::Transposed, View::Sliced, View::Broadcast], &s2, dom, &mut rng, ""));
    single(out, op, inputs, f);
}

/// A one-input op `f` on each of `inputs` (broadcast first where the input says so).
pub fn single<F>(out: &mut Vec<AuditCase>, op: &'static str, inputs: Vec<Input>, f: F)
where
    F: for<'t> Fn(&Var<'t, f64>) -> Var<'t, f64> + Send + Sync + 'static,
{
    let f = Arc::new(f);
    for x in inputs {
        let (g, target) = (Arc::clone(&f), x.target);
        out.push(AuditCase::gradcheck(op, x.desc, vec![x.value], default(), move |_, v| g(&bcast(&v[0], &target))));
    }
}

/// An op `f` of several inputs (each broadcast first where it says so); the description is
/// `params` followed by the inputs'.
pub fn multi<F>(out: &mut Vec<AuditCase>, op: &'static str, params: &str, inputs: Vec<Input>, f: F)
where
    F: for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64> + Send + Sync + 'static,
{
    let descs: Vec<&str> = inputs.iter().map(|x| x.desc.as_str()).collect();
    let desc = format!("{params}: {}", descs.join(", "));
    let targets: Vec<Option<Vec<usize>>> = inputs.iter().map(|x| x.target.clone()).collect();
    let values = inputs.into_iter().map(|x| x.value).collect();
    out.push(AuditCase::gradcheck(op, desc, values, default(), move |_, v| {
        let vs: Vec<Var<'_, f64>> = v.iter().zip(&targets).map(|(x, t)| bcast(x, t)).collect();
        f(&vs)
    }));
}
