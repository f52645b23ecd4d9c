//! Tape semantics: accumulation across backward calls, zero_grad, freeing the graph,
//! no_grad, detach, anomaly mode, graph printing and the errors of `backward`.

use autograd::{BackwardOptions, Error, Phase, Tape};
use engine::Tensor;

const RETAIN: BackwardOptions = BackwardOptions { retain_graph: true };

#[test]
fn gradients_accumulate_across_backward_calls_until_zero_grad() {
    // y = Σ x²  →  ∂y/∂x = 2x = [2, −4, 6]
    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::from([1.0, -2.0, 3.0]));
    let y = x.square().sum_all();
    let first = tape.backward_with(&y, None, RETAIN).unwrap();
    assert_eq!(first.wrt(&x).to_vec(), vec![2.0, -4.0, 6.0]);
    let second = tape.backward_with(&y, None, RETAIN).unwrap();
    assert_eq!(second.wrt(&x).to_vec(), vec![4.0, -8.0, 12.0]);
    assert_eq!(x.grad().unwrap().to_vec(), vec![4.0, -8.0, 12.0]);

    tape.zero_grad();
    assert!(x.grad().is_none());
    let third = tape.backward_with(&y, None, RETAIN).unwrap();
    assert_eq!(third.wrt(&x).to_vec(), vec![2.0, -4.0, 6.0]);
    x.zero_grad();
    assert!(x.grad().is_none());
}

#[test]
fn a_variable_used_twice_receives_both_contributions() {
    // y = Σ x·x (mul of x with itself) → ∂x = 2x
    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::from([1.5, -0.5]));
    let g = tape.backward(&x.mul(&x).sum_all()).unwrap();
    assert_eq!(g.wrt(&x).to_vec(), vec![3.0, -1.0]);
}

#[test]
fn a_second_backward_without_retain_graph_is_graph_freed() {
    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::from([1.0, 2.0]));
    let y = x.exp().sum_all();
    tape.backward(&y).unwrap();
    match tape.backward(&y) {
        Err(e @ Error::GraphFreed { .. }) => {
            let Error::GraphFreed { op } = &e else { unreachable!() };
            assert_eq!(op, "sum");
            assert!(e.to_string().contains("retain_graph"), "{e}");
        }
        other => panic!("expected Error::GraphFreed, got {other:?}"),
    }
    assert!(tape.graph().contains("freed"));
}

#[test]
fn no_grad_records_constants() {
    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::from([1.0, 2.0]));
    let y = tape.no_grad(|| {
        assert!(!tape.grad_enabled());
        x.exp()
    });
    assert!(tape.grad_enabled());
    assert!(!y.requires_grad());
    // Only the path outside no_grad carries a gradient: L = Σ (x + c) with c = eˣ constant.
    let l = x.add(&y).sum_all();
    let g = tape.backward(&l).unwrap();
    assert_eq!(g.wrt(&x).to_vec(), vec![1.0, 1.0]);
    // A loss built only from no_grad values has no gradient at all.
    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::from([1.0]));
    let l = tape.no_grad(|| x.exp().sum_all());
    let g = tape.backward(&l).unwrap();
    assert!(g.is_empty() && g.get(&x).is_none());
}

#[test]
fn detach_blocks_gradients() {
    // L = Σ detach(x)·x → ∂x = detach(x) = x (not 2x).
    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::from([3.0, -1.0]));
    let d = x.detach();
    assert!(!d.requires_grad());
    let g = tape.backward(&d.mul(&x).sum_all()).unwrap();
    assert_eq!(g.wrt(&x).to_vec(), vec![3.0, -1.0]);
}

#[test]
fn anomaly_mode_names_the_first_forward_op_producing_nan() {
    let tape = Tape::<f64>::new();
    tape.set_anomaly_mode(true);
    let x = tape.leaf(Tensor::from_vec(vec![1.0, -1.0, 2.0, 0.5, 3.0, 4.0], &[2, 3]));
    // log(−1) = NaN; exp and sum propagate it, but log is the first.
    let y = x.log().exp().sum_all();
    let expected = Error::Anomaly {
        op: "log".into(),
        phase: Phase::Forward,
        input_shapes: vec![vec![2, 3]],
        what: "NaN at index [0, 1]".into(),
    };
    assert_eq!(tape.forward_anomaly(), Some(expected.clone()));
    assert_eq!(tape.backward(&y).unwrap_err(), expected);
    let msg = expected.to_string();
    assert!(msg.contains("forward of `log`") && msg.contains("[[2, 3]]"), "{msg}");
}

#[test]
fn anomaly_mode_names_the_first_backward_rule_producing_inf() {
    // sqrt(0) = 0 is finite, but its gradient g/(2√x) is +∞ at 0.
    let x0 = Tensor::from_vec(vec![4.0, 1.0, 0.0, 9.0], &[2, 2]);
    let tape = Tape::<f64>::new();
    tape.set_anomaly_mode(true);
    let x = tape.leaf(x0.clone());
    let y = x.sqrt().mul_scalar(2.0).sum_all();
    assert_eq!(tape.forward_anomaly(), None);
    match tape.backward(&y) {
        Err(Error::Anomaly { op, phase, input_shapes, what }) => {
            assert_eq!((op.as_str(), phase), ("sqrt", Phase::Backward));
            assert_eq!(input_shapes, vec![vec![2, 2]]);
            assert!(what.contains("inf at index [1, 0]") && what.contains("input 0"), "{what}");
        }
        other => panic!("expected a backward anomaly, got {other:?}"),
    }
    // Without anomaly mode the same backward succeeds and returns the infinite gradient.
    let tape = Tape::<f64>::new();
    let x = tape.leaf(x0);
    let g = tape.backward(&x.sqrt().mul_scalar(2.0).sum_all()).unwrap().wrt(&x).to_vec();
    assert_eq!(g[2], f64::INFINITY);
    assert_eq!(g[0], 0.5);
}

#[test]
fn graph_and_dot_show_ops_and_shapes() {
    let tape = Tape::<f64>::new();
    let w = tape.leaf_named(Tensor::zeros(&[3, 4]), "w");
    let x = tape.constant(Tensor::zeros(&[4, 2]));
    let _ = w.matmul(&x).relu().sum_all();
    let g = tape.graph();
    for needle in ["tape: 5 nodes (f64)", "leaf 'w'", "const", "matmul", "relu", "sum", "[3, 4]", "[4, 2]", "[3, 2]"] {
        assert!(g.contains(needle), "graph lacks {needle:?}:\n{g}");
    }
    assert_eq!(tape.to_string(), g);
    let dot = tape.to_dot();
    assert!(dot.starts_with("digraph tape {") && dot.trim_end().ends_with('}'), "{dot}");
    for needle in ["leaf 'w'\\n[3, 4]", "matmul\\n[3, 2]", "relu\\n[3, 2]", "n0 -> n2", "n1 -> n2", "n2 -> n3"] {
        assert!(dot.contains(needle), "DOT lacks {needle:?}:\n{dot}");
    }
}

#[test]
fn backward_of_a_non_scalar_needs_an_output_gradient() {
    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::from([1.0, 2.0, 3.0]));
    let y = x.mul_scalar(2.0);
    assert_eq!(tape.backward(&y).unwrap_err(), Error::NotScalar { shape: vec![3] });
    let wrong = tape.backward_with(&y, Some(Tensor::ones(&[2])), BackwardOptions::default());
    assert_eq!(wrong.unwrap_err(), Error::OutputGradShape { expected: vec![3], got: vec![2] });
    // With an explicit gradient R: ∂⟨R, 2x⟩/∂x = 2R.
    let g = tape.backward_with(&y, Some(Tensor::from([1.0, 0.0, -1.0])), BackwardOptions::default()).unwrap();
    assert_eq!(g.wrt(&x).to_vec(), vec![2.0, 0.0, -2.0]);
}

/// An error of another crate's type, as a rule's computation would return it.
#[derive(Debug, PartialEq)]
struct SingularFactor {
    pivot: usize,
}

impl std::fmt::Display for SingularFactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pivot {} is not positive", self.pivot)
    }
}

impl std::error::Error for SingularFactor {}

#[test]
fn a_failing_rule_keeps_its_error_type() {
    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::from([1.0, 2.0]));
    let rule = autograd::FnRule::new("solve", |_: &Tensor<f64>, _: &[&Tensor<f64>], _: &Tensor<f64>, _: &[bool]| {
        Err(autograd::Error::rule("solve", SingularFactor { pivot: 3 }))
    });
    let y = tape.push_op(x.value(), &[x], rule).sum_all();
    let err = tape.backward(&y).unwrap_err();
    assert_eq!(err.to_string(), "backward: rule of `solve` failed: pivot 3 is not positive");
    let autograd::Error::Rule { op, source } = &err else { panic!("expected Error::Rule, got {err:?}") };
    assert_eq!(op, "solve");
    assert_eq!(source.downcast_ref::<SingularFactor>(), Some(&SingularFactor { pivot: 3 }));
    // The standard error chain reaches the typed error too.
    let inner = std::error::Error::source(&err).expect("a source");
    assert_eq!(inner.downcast_ref::<SingularFactor>(), Some(&SingularFactor { pivot: 3 }));
}
