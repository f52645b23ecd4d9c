//! The checker itself is tested: it must catch deliberately wrong backward rules (loudly:
//! FAIL in `Display`, with the worst element and both values), report malformed rules as
//! errors, and its Jacobian must match hand-derived values.

use autograd::{check_gradients, jacobian, Backward, CheckOptions, Error, Result, Tape, Var};
use engine::Tensor;

/// `y = x³` with a chosen backward rule.
struct Cube {
    rule: CubeRule,
}

#[derive(Clone, Copy)]
enum CubeRule {
    /// `∂x = 3x²·g` (correct).
    Right,
    /// `∂x = 2x·g` (the derivative of x², a classic slip).
    Wrong,
    /// `∂x = 3x²·(1 + 10⁻³)·g`: off by 0.1 %, a hundred times rtol.
    Slightly,
    /// A gradient with one element too many.
    BadShape,
}

impl Backward<f64> for Cube {
    fn name(&self) -> &str {
        "cube"
    }
    fn backward(
        &self,
        g: &Tensor<f64>,
        x: &[&Tensor<f64>],
        _y: &Tensor<f64>,
        _needed: &[bool],
    ) -> Result<Vec<Option<Tensor<f64>>>> {
        let d = match self.rule {
            CubeRule::Right => x[0].square().mul_scalar(3.0),
            CubeRule::Wrong => x[0].mul_scalar(2.0),
            CubeRule::Slightly => x[0].square().mul_scalar(3.0 * (1.0 + 1e-3)),
            CubeRule::BadShape => return Ok(vec![Some(Tensor::zeros(&[x[0].numel() + 1]))]),
        };
        Ok(vec![Some(g.mul(&d))])
    }
}

/// Records `x³` with the given rule.
fn cube<'t>(x: &Var<'t, f64>, rule: CubeRule) -> Var<'t, f64> {
    x.tape().push_op(x.value().powf(3.0), &[*x], Cube { rule })
}

fn check_cube(rule: CubeRule, x: &Tensor<f64>) -> Result<autograd::GradReport> {
    check_gradients(|_, v| cube(&v[0], rule).sum_all(), std::slice::from_ref(x), &CheckOptions::default())
}

#[test]
fn a_correct_custom_rule_passes() {
    let report = check_cube(CubeRule::Right, &Tensor::from([0.5, -1.0, 2.0])).unwrap();
    assert!(report.passed(), "{report}");
    assert!(report.to_string().contains("PASS"));
}

#[test]
fn a_wrong_rule_fails_loudly_with_the_worst_element() {
    // y = Σ x³: analytic (wrong) 2x = [1, −2, 4], numeric 3x² = [0.75, 3, 12].
    // Errors |2x − 3x²| = [0.25, 5, 8]; the largest (8) is the max abs error, but the worst
    // element is the one furthest outside its tolerance atol + rtol·|numeric|:
    // 5 / (1e-7 + 3e-5) ≈ 1.7e5 at [1] beats 8 / (1e-7 + 1.2e-4) ≈ 6.7e4 at [2].
    let report = check_cube(CubeRule::Wrong, &Tensor::from([0.5, -1.0, 2.0])).unwrap();
    assert!(!report.passed());
    let r = &report.inputs[0];
    assert!(!r.passed);
    let w = r.worst.as_ref().expect("a worst element");
    assert_eq!(w.index, vec![1]);
    assert_eq!(w.analytic, -2.0);
    assert!((w.numeric - 3.0).abs() < 1e-6, "numeric {}", w.numeric);
    assert!((r.max_abs_err - 8.0).abs() < 1e-6);

    let text = report.to_string();
    assert!(text.starts_with("gradient check (FAIL"), "{text}");
    assert!(text.contains("FAIL; worst at [1]"), "{text}");
    assert!(text.contains(&format!("analytic {:.12e}", w.analytic)), "{text}");
    assert!(text.contains(&format!("numeric {:.12e}", w.numeric)), "{text}");
}

#[test]
fn a_rule_off_by_a_tenth_of_a_percent_fails() {
    let report = check_cube(CubeRule::Slightly, &Tensor::from([0.5, -1.0, 2.0, 1.5])).unwrap();
    assert!(!report.passed(), "{report}");
    let rel = report.max_rel_err();
    assert!((rel - 1e-3).abs() < 1e-6, "relative error {rel}");
}

/// `y = a ⊙ b` whose rule drops the gradient of `b` (returns `None`, i.e. zero).
struct MulDropsTerm;

impl Backward<f64> for MulDropsTerm {
    fn name(&self) -> &str {
        "mul_drops_term"
    }
    fn backward(
        &self,
        g: &Tensor<f64>,
        x: &[&Tensor<f64>],
        _y: &Tensor<f64>,
        _needed: &[bool],
    ) -> Result<Vec<Option<Tensor<f64>>>> {
        Ok(vec![Some(g.mul(x[1])), None])
    }
}

#[test]
fn a_dropped_term_fails_on_that_input_only() {
    let a = Tensor::from_vec(vec![1.0, -2.0, 0.5, 3.0], &[2, 2]);
    let b = Tensor::from_vec(vec![0.25, 4.0, -1.0, 2.0], &[2, 2]);
    // Output [2, 2] is projected on a random cotangent R: ∂a = R ⊙ b (right), ∂b = 0 (should be R ⊙ a).
    let report = check_gradients(
        |t, v| t.push_op(v[0].value().mul(&v[1].value()), &[v[0], v[1]], MulDropsTerm),
        &[a, b],
        &CheckOptions::default(),
    )
    .unwrap();
    assert!(report.projected);
    assert!(report.inputs[0].passed, "{report}");
    assert!(!report.inputs[1].passed, "{report}");
    let w = report.inputs[1].worst.as_ref().unwrap();
    assert_eq!(w.analytic, 0.0);
    assert!(w.numeric.abs() > 0.1);
    let text = report.to_string();
    assert!(text.contains("input 0 [2, 2]") && text.contains("ok"), "{text}");
    assert!(text.contains("input 1 [2, 2]") && text.contains("FAIL; worst at"), "{text}");
}

#[test]
fn a_gradient_of_the_wrong_shape_is_an_error() {
    let x = Tensor::from([0.5, -1.0, 2.0]);
    match check_cube(CubeRule::BadShape, &x) {
        Err(Error::GradShape { op, input, expected, got }) => {
            assert_eq!((op.as_str(), input), ("cube", 0));
            assert_eq!(expected, vec![3]);
            assert_eq!(got, vec![4]);
        }
        other => panic!("expected Error::GradShape, got {other:?}"),
    }
}

/// A rule that does not implement `backward` (the trait's default).
struct NoRule;

impl Backward<f64> for NoRule {
    fn name(&self) -> &str {
        "no_rule"
    }
}

fn no_rule<'t>(x: &Var<'t, f64>) -> Var<'t, f64> {
    x.tape().push_op(x.value().exp(), &[*x], NoRule)
}

#[test]
fn a_rule_without_backward_is_an_error_not_a_zero() {
    let tape = Tape::new();
    let x = tape.leaf(Tensor::<f64>::from([1.0, 2.0]));
    let y = no_rule(&x).sum_all();
    match tape.backward(&y) {
        Err(Error::NoGradient { op }) => assert_eq!(op, "no_rule"),
        other => panic!("expected Error::NoGradient, got {other:?}"),
    }
    let checked = check_gradients(|_, v| no_rule(&v[0]).sum_all(), &[Tensor::from([1.0])], &CheckOptions::default());
    assert!(matches!(checked, Err(Error::NoGradient { ref op }) if op == "no_rule"), "{checked:?}");
}

#[test]
fn invalid_checker_options_are_errors() {
    fn f<'t>(_: &'t Tape<f64>, v: &[Var<'t, f64>]) -> Var<'t, f64> {
        v[0].exp().sum_all()
    }
    let x = [Tensor::from([1.0, 2.0])];
    let bad_eps = check_gradients(f, &x, &CheckOptions::default().eps(0.0));
    assert!(matches!(bad_eps, Err(Error::Check { .. })), "{bad_eps:?}");
    let bad_wrt = check_gradients(f, &x, &CheckOptions::default().wrt(&[1]));
    assert!(matches!(bad_wrt, Err(Error::Check { .. })), "{bad_wrt:?}");
    // Sampling checks exactly the requested number of elements.
    let big = [Tensor::from_vec((0..50).map(|i| i as f64 / 25.0).collect(), &[50])];
    let sampled = check_gradients(f, &big, &CheckOptions::default().max_elements(7)).unwrap();
    assert_eq!(sampled.inputs[0].checked, 7);
    assert!(sampled.passed(), "{sampled}");
}

#[test]
fn jacobian_matches_hand_derived_values() {
    // f(x, y) = [x₀·y₀, x₁², x₀ + y₁] at x = [2, 3], y = [5, 7].
    // ∂/∂(x₀, x₁, y₀, y₁):
    //   row 0: [y₀, 0, x₀, 0] = [5, 0, 2, 0]
    //   row 1: [0, 2x₁, 0, 0] = [0, 6, 0, 0]
    //   row 2: [1, 0, 0, 1]
    fn f<'t>(_: &'t Tape<f64>, v: &[Var<'t, f64>]) -> Var<'t, f64> {
        let (x, y) = (&v[0], &v[1]);
        let r0 = x.select(0, 0).mul(&y.select(0, 0));
        let r1 = x.select(0, 1).square();
        let r2 = x.select(0, 0).add(&y.select(0, 1));
        Var::stack(&[r0, r1, r2], 0)
    }
    let j = jacobian(f, &[Tensor::from([2.0, 3.0]), Tensor::from([5.0, 7.0])], 1e-6).unwrap();
    let want = [5.0, 0.0, 2.0, 0.0, 0.0, 6.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0];
    assert_eq!(j.analytic.shape(), &[3, 4]);
    assert_eq!(j.analytic.to_vec(), want);
    for (n, w) in j.numeric.to_vec().iter().zip(want) {
        assert!((n - w).abs() < 1e-8, "{j}");
    }
    assert!(j.max_abs_err < 1e-8, "{j}");
    assert!(j.to_string().contains("analytic (row by row, backward)"));
}
