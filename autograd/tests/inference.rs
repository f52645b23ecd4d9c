//! Inference tapes, scopes and releases: nothing recorded, values freed when declared dead,
//! the same bits as the recorded forward, clear panics on freed values, and recording tapes
//! that keep whatever a rule needs.

use engine::{Conv2dParams, Pool2dParams, Rng, Tensor};
use sparsegrad_autograd::{infer, try_infer, Tape, Var};

/// A small network of built-in ops, written once on `Var`.
fn net<'t>(p: &[Var<'t, f32>], x: &Var<'t, f32>) -> Var<'t, f32> {
    let h = x.conv2d(&p[0], Some(&p[1]), Conv2dParams::new().padding(1)).relu();
    let h = h.max_pool2d(Pool2dParams::new(2));
    let n = h.dim(0);
    let h = h.reshape(&[n, 2 * 4 * 4]).tanh();
    let y = h.matmul(&p[2]).add(&p[3]);
    y.log_softmax(1).exp().mul_scalar(3.0).sub_scalar(0.5).abs().sqrt()
}

fn params(rng: &mut Rng) -> (Vec<Tensor<f32>>, Tensor<f32>) {
    let p = vec![
        Tensor::randn(&[2, 3, 3, 3], rng),
        Tensor::randn(&[2], rng),
        Tensor::randn(&[32, 5], rng),
        Tensor::randn(&[5], rng),
    ];
    (p, Tensor::randn(&[4, 3, 8, 8], rng))
}

fn bits(t: &Tensor<f32>) -> Vec<u32> {
    t.to_vec().iter().map(|v| v.to_bits()).collect()
}

#[test]
fn inference_gives_the_recorded_forward_bit_for_bit() {
    let mut rng = Rng::new(7);
    let (p, x) = params(&mut rng);
    let tape = Tape::new();
    let pv: Vec<Var<f32>> = p.iter().map(|t| tape.leaf(t.clone())).collect();
    let recorded = net(&pv, &tape.constant(x.clone()));
    assert!(recorded.requires_grad());
    let inferred = infer(|t| {
        let pv: Vec<Var<f32>> = p.iter().map(|w| t.constant(w.clone())).collect();
        net(&pv, &t.constant(x.clone()))
    });
    assert_eq!(bits(&inferred), bits(&recorded.value()));
}

#[test]
fn an_inference_tape_records_no_rule_no_input_and_no_gradient() {
    let tape = Tape::<f64>::inference();
    assert!(tape.is_inference() && !tape.grad_enabled());
    let w = tape.leaf(Tensor::from([1.0, -2.0]));
    assert!(!w.requires_grad());
    let y = w.relu().mul(&w).sum_all();
    assert!(!y.requires_grad());
    // The graph lists the ops with no inputs.
    let graph = tape.graph();
    assert!(graph.contains("relu") && graph.contains("sum"), "{graph}");
    assert!(!graph.contains("#0,") && !graph.contains("(#"), "{graph}");
    let g = tape.backward(&y).unwrap();
    assert!(g.is_empty());
    // no_grad inside an inference tape leaves it an inference tape.
    tape.no_grad(|| ());
    assert!(!tape.grad_enabled());
}

#[test]
fn a_scope_frees_everything_it_does_not_return() {
    let tape = Tape::<f64>::inference();
    let x = tape.constant(Tensor::from([1.0, 2.0, 3.0]));
    let mut seen = Vec::new();
    let (a, b) = tape.scope(|| {
        let h = x.square();
        let k = h.add_scalar(1.0);
        seen.extend([h, k]);
        (k.sum_all(), h.mean_all())
    });
    assert_eq!((a.item(), b.item()), (17.0, 14.0 / 3.0));
    assert!(x.is_live(), "a node created before the scope is kept");
    assert!(seen.iter().all(|v| !v.is_live()));
    assert!(tape.graph().contains("released"));
    // Nested scopes: the inner one returns to the outer, which returns nothing.
    let inner = tape.scope(|| {
        let i = tape.scope(|| x.mul_scalar(2.0).neg());
        assert!(i.is_live());
        i
    });
    assert_eq!(inner.value().to_vec(), vec![-2.0, -4.0, -6.0]);
    tape.scope(|| {
        let _ = inner.exp();
    });
    assert!(inner.is_live(), "a scope frees only what was created inside it");
}

#[test]
#[should_panic(expected = "was freed by an inference scope")]
fn reading_a_freed_value_panics_naming_the_node() {
    let tape = Tape::<f32>::inference();
    let x = tape.constant(Tensor::from([1.0f32]));
    let mut h = None;
    tape.scope(|| {
        h = Some(x.exp());
    });
    let _ = h.unwrap().add_scalar(1.0);
}

#[test]
fn the_panic_names_the_node_and_its_op() {
    let tape = Tape::<f32>::inference();
    let x = tape.constant(Tensor::from([1.0f32]));
    let h = x.exp();
    assert!(tape.release(&h));
    let msg = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h.shape()))
        .expect_err("a freed value cannot be read")
        .downcast::<String>()
        .expect("a formatted message");
    assert!(msg.contains(&format!("node #{} (exp)", h.id())), "{msg}");
    assert!(format!("{h:?}").contains("released"));
}

#[test]
fn a_recording_tape_keeps_what_the_backward_needs() {
    // L = Σ (w·c)² with c computed inside a scope: c and w·c are needed by the rules.
    let tape = Tape::<f64>::new();
    let w = tape.leaf(Tensor::from([1.0, -2.0]));
    let x = tape.constant(Tensor::from([3.0, 4.0]));
    let mut side = None;
    let l = tape.scope(|| {
        let c = x.add_scalar(1.0); // constant, needed by mul's rule
        side = Some(x.mul_scalar(5.0)); // constant, needed by nothing
        w.mul(&c).square().sum_all()
    });
    assert!(!side.unwrap().is_live(), "a constant no rule needs is freed");
    let g = tape.backward(&l).unwrap();
    // ∂L/∂w = 2·w·c² = [2·16, −4·25]
    assert_eq!(g.wrt(&w).to_vec(), vec![32.0, -100.0]);
    // release keeps leaves and values a rule needs; x fed only constant ops.
    assert!(!tape.release(&w) && w.is_live());
    assert!(tape.release(&x) && !x.is_live());
}

#[test]
fn no_grad_scopes_free_every_intermediate_of_a_recording_tape() {
    let tape = Tape::<f64>::new();
    let w = tape.leaf(Tensor::from([0.5, -1.5]));
    let mut mids = Vec::new();
    let y = tape.no_grad(|| {
        tape.scope(|| {
            let a = w.exp();
            let b = a.mul(&w);
            mids.extend([a, b]);
            b.sum_all()
        })
    });
    assert!(mids.iter().all(|v| !v.is_live()) && w.is_live());
    let expected = 0.5 * 0.5f64.exp() - 1.5 * (-1.5f64).exp();
    assert_eq!(y.item(), expected);
}

#[test]
fn try_infer_passes_the_error_through() {
    let r: Result<Tensor<f64>, &str> = try_infer(|_| Err("solver failed"));
    assert_eq!(r.unwrap_err(), "solver failed");
    let r: Result<Tensor<f64>, &str> = try_infer(|t| Ok(t.constant(Tensor::from([2.0])).square()));
    assert_eq!(r.unwrap().to_vec(), vec![4.0]);
}

/// An op whose input lives on another tape panics naming the op, whether the op is recorded
/// (an input requires a gradient) or not (constants only, or inside `no_grad`).
#[test]
fn an_input_from_another_tape_panics_naming_the_op() {
    for case in 0..3 {
        let r = std::panic::catch_unwind(|| {
            let (a, b) = (Tape::<f32>::new(), Tape::<f32>::new());
            let x = Tensor::from_vec(vec![1.0, -2.0], &[2]);
            let (ours, theirs) = match case {
                0 => (a.leaf(x.clone()), b.leaf(x)),
                _ => (a.constant(x.clone()), b.constant(x)),
            };
            if case == 2 {
                a.no_grad(|| {
                    let _ = ours.add(&theirs);
                });
            } else {
                let _ = ours.add(&theirs);
            }
        });
        let msg = r.expect_err("mixing tapes must panic");
        let msg = msg.downcast_ref::<String>().map(String::as_str).unwrap_or("");
        assert!(msg.contains("an input variable belongs to another tape"), "case {case}: {msg}");
    }
}
