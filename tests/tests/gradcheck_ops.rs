//! The gradient audit of every built-in op (the registry `sparsegrad gradcheck` runs), a
//! coverage test that fails when an op is added without an audit, and checks of the fused
//! softmax/log-softmax/cross-entropy and batch-norm rules against their composites.

use std::collections::{BTreeMap, BTreeSet};

use autograd::{audit, Reduction, Var};
use sparsegrad_tests::{assert_close, randn, uniform, vjp};

#[test]
fn every_registered_audit_passes() {
    let cases = sparsegrad_audit::registry();
    let results = audit::run_all(&cases, None);
    assert_eq!(results.len(), cases.len());
    let failed: Vec<_> = results.iter().filter(|r| !r.passed()).cloned().collect();
    assert!(
        failed.is_empty(),
        "{} of {} audits failed:\n{}",
        failed.len(),
        results.len(),
        audit::format_table(&failed)
    );
}

#[test]
fn filter_selects_one_op_and_json_parses() {
    let cases = sparsegrad_audit::builtin();
    let results = audit::run_all(&cases, Some("softmax"));
    assert!(!results.is_empty());
    assert!(results.iter().all(|r| r.op == "softmax"));
    assert!(audit::run_all(&cases, Some("no_such_op")).is_empty());

    let json: serde_json::Value = serde_json::from_str(&audit::format_json(&results)).expect("valid JSON");
    assert_eq!(json["passed"], true);
    assert_eq!(json["cases"], results.len());
    let first = &json["results"][0];
    assert_eq!(first["op"], "softmax");
    assert!(first["max_abs_err"].as_f64().unwrap() >= 0.0);
    assert!(first["inputs"][0]["worst"]["index"].is_array());

    let table = audit::format_table(&results);
    assert!(table.lines().next().unwrap().contains("max abs"));
    assert!(table.contains("PASS") && !table.contains("FAIL"), "{table}");
    assert!(table.trim_end().ends_with("0 failed"), "{table}");
}

#[test]
fn a_failing_case_is_reported_as_fail_in_table_and_json() {
    // One case whose check returns an error and one that panics: both must be FAIL, with the
    // message, and the runner must not stop at them.
    let broken = audit::AuditCase::new("broken", "deliberately failing", || {
        Err(autograd::Error::Check { msg: "no check ran".into() })
    });
    let panicking = audit::AuditCase::new("panics", "deliberately panicking", || panic!("boom"));
    let results = audit::run_all(&[broken, panicking], None);
    assert!(results.iter().all(|r| !r.passed()));
    let table = audit::format_table(&results);
    assert!(table.contains("FAIL") && table.contains("no check ran") && table.contains("boom"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&audit::format_json(&results)).unwrap();
    assert_eq!(json["passed"], false);
    assert_eq!(json["failed"], 2);
    assert!(json["results"][1]["error"].as_str().unwrap().contains("boom"));
}

// --------------------------------------------------------------------------------------------
// Coverage, checked on the registry itself: what the cases record on their tapes.

/// Every op name recorded on a tape by any case, with the cases that recorded it.
fn recorded_by_cases(results: &[audit::AuditResult]) -> BTreeMap<String, Vec<String>> {
    let mut recorded: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in results {
        let report = r.outcome.as_ref().unwrap_or_else(|e| panic!("{} ({}): {e}", r.op, r.input));
        for name in &report.recorded {
            recorded.entry(name.clone()).or_default().push(format!("{}: {}", r.op, r.input));
        }
    }
    recorded
}

#[test]
fn every_recorded_op_is_a_declared_rule_with_cases_of_its_own() {
    let cases = sparsegrad_audit::registry();
    let results = audit::run_all(&cases, None);
    let recorded = recorded_by_cases(&results);
    // The declared rule names are exactly what the cases record: a rule nobody audits, or an
    // op recorded by some case but not declared, fails here.
    let declared: BTreeSet<&str> = autograd::ops::RULES.iter().chain(sparse::audit::RULES).copied().collect();
    let seen: BTreeSet<&str> = recorded.keys().map(|s| s.as_str()).collect();
    let undeclared: Vec<_> = seen.difference(&declared).collect();
    let unrecorded: Vec<_> = declared.difference(&seen).collect();
    assert!(undeclared.is_empty(), "ops recorded by audit cases but not in ops::RULES: {undeclared:?}");
    assert!(unrecorded.is_empty(), "rules in ops::RULES that no audit case records: {unrecorded:?}");
    // Every recorded op has cases labelled with its name, and a case labelled with a rule's
    // name records that rule (labels that are not rules are composites, such as `mean`).
    let labels: BTreeSet<&str> = audit::ops(&cases).into_iter().collect();
    let unlabelled: Vec<_> = seen.difference(&labels).collect();
    assert!(unlabelled.is_empty(), "ops recorded only inside other ops' cases: {unlabelled:?}");
    for r in &results {
        let report = r.outcome.as_ref().unwrap();
        if declared.contains(r.op) {
            assert!(report.recorded.iter().any(|n| n == r.op), "case {} ({}) does not record {}", r.op, r.input, r.op);
        }
    }
    // The check cannot pass vacuously.
    for n in ["neg", "add", "max", "where", "matmul", "slice", "cross_entropy", "conv2d", "sf", "csf", "sf_loss"] {
        assert!(seen.contains(n), "recorded op {n} not found; found {seen:?}");
    }
}

#[test]
fn every_op_is_audited_on_contiguous_permuted_sliced_and_broadcast_inputs() {
    let cases = sparsegrad_audit::registry();
    let mut gaps = Vec::new();
    for op in audit::ops(&cases) {
        let inputs: Vec<&str> = cases.iter().filter(|c| c.op == op).map(|c| c.input.as_str()).collect();
        for kind in ["contiguous", "transposed|permuted", "sliced", "broadcast"] {
            if !inputs.iter().any(|i| kind.split('|').any(|k| i.contains(k))) {
                gaps.push(format!("{op}: no {kind} input"));
            }
        }
    }
    assert!(gaps.is_empty(), "layouts missing from the audit:\n{}", gaps.join("\n"));
}

/// The DCEA family keeps every case it was written with (a case dropped from the registry
/// would still let the tests above pass): the three NLLs on six inputs each, the three encoder
/// rules and the whole model.
#[test]
fn the_dcea_family_keeps_its_cases() {
    let cases = sparsegrad_audit::sparse_rules();
    let count = |ops: &[&str]| cases.iter().filter(|c| ops.contains(&c.op)).count();
    assert_eq!(count(&["gaussian_nll", "binomial_nll", "poisson_nll"]), 3 * 6);
    assert_eq!(count(&["dcea", "dcea_iteration", "dcea_decode", "dcea_threshold"]), 6 + 7 + 4 + 4);
}

// --------------------------------------------------------------------------------------------
// Fused rules against their composites (same cotangent, gradients to 1e-12).

#[test]
fn fused_softmax_rules_match_their_composites() {
    let x = [randn(&[4, 5, 3], 11)];
    let r = randn(&[4, 5, 3], 12);
    for axis in 0..3 {
        let fused = vjp(|_, v| v[0].log_softmax(axis), &x, Some(r.clone()));
        // log_softmax(x) = x − logsumexp(x) (kept axis, broadcast back)
        let comp = vjp(|_, v| v[0].sub(&v[0].logsumexp(&[axis], true)), &x, Some(r.clone()));
        assert_close("log_softmax forward", &fused.0.to_vec(), &comp.0.to_vec(), 1e-12);
        assert_close("log_softmax backward", &fused.1[0].to_vec(), &comp.1[0].to_vec(), 1e-12);

        let fused = vjp(|_, v| v[0].softmax(axis), &x, Some(r.clone()));
        // softmax(x) = eˣ / Σ eˣ
        let comp = vjp(|_, v| v[0].exp().div(&v[0].exp().sum(&[axis], true)), &x, Some(r.clone()));
        assert_close("softmax forward", &fused.0.to_vec(), &comp.0.to_vec(), 1e-12);
        assert_close("softmax backward", &fused.1[0].to_vec(), &comp.1[0].to_vec(), 1e-12);
    }
}

#[test]
fn fused_cross_entropy_matches_its_composite() {
    let (n, c) = (6, 4);
    let x = [randn(&[n, c], 13)];
    let labels = vec![3, 0, 1, 1, 2, 3];
    for (reduction, scale) in [(Reduction::Mean, 1.0 / n as f64), (Reduction::Sum, 1.0)] {
        let fused = vjp(|_, v| v[0].cross_entropy(&labels, reduction), &x, None);
        // L = −scale·Σ_i log_softmax(x)[i, yᵢ]
        let comp = vjp(|_, v| v[0].log_softmax(1).gather(1, &labels, &[n, 1]).sum_all().mul_scalar(-scale), &x, None);
        assert_close("cross_entropy forward", &fused.0.to_vec(), &comp.0.to_vec(), 1e-12);
        assert_close("cross_entropy backward", &fused.1[0].to_vec(), &comp.1[0].to_vec(), 1e-12);
    }
}

/// The formula BatchNorm2d used before the fused rule: (x − mean)/√(mean((x − mean)²) + ε)·γ + β,
/// statistics over every axis but 1; `v = [x, γ, β]`.
fn composite_batch_norm<'t>(v: &[Var<'t, f64>], eps: f64) -> Var<'t, f64> {
    let r = v[0].rank();
    let axes: Vec<usize> = (0..r).filter(|&a| a != 1).collect();
    let mut s = vec![1; r];
    s[1] = v[0].shape()[1];
    let mean = v[0].mean(&axes, true);
    let centred = v[0].sub(&mean);
    let var = centred.square().mean(&axes, true);
    centred.div(&var.add_scalar(eps).sqrt()).mul(&v[1].reshape(&s)).add(&v[2].reshape(&s))
}

#[test]
fn fused_batch_norm_matches_its_composite() {
    let xs = [
        randn(&[5, 3, 4, 6], 21),
        randn(&[4, 3, 6, 5], 22).permute(&[0, 1, 3, 2]), // a non-contiguous view
        randn(&[7, 4], 23).add_scalar(50.0),             // a large mean
        randn(&[2, 5, 9], 24).slice(2, 1, 9, 2),
    ];
    for (k, x) in xs.into_iter().enumerate() {
        let c = x.dim(1);
        let inputs = [x.clone(), uniform(&[c], 0.5, 1.5, 30 + k as u64), randn(&[c], 40 + k as u64)];
        let r = randn(x.shape(), 50 + k as u64);
        let fused = vjp(|_, v| v[0].batch_norm(&v[1], &v[2], 1e-5).0, &inputs, Some(r.clone()));
        let comp = vjp(|_, v| composite_batch_norm(v, 1e-5), &inputs, Some(r));
        let what = format!("case {k} {:?}", x.shape());
        assert_close(&format!("{what} forward"), &fused.0.to_vec(), &comp.0.to_vec(), 1e-12);
        for (i, name) in ["x", "weight", "bias"].iter().enumerate() {
            assert_close(&format!("{what} ∂{name}"), &fused.1[i].to_vec(), &comp.1[i].to_vec(), 1e-12);
        }
    }
}

#[test]
fn stack_equals_concat_of_unsqueezed() {
    // stack is a composite of unsqueeze + concat; checked once by value here.
    let a = randn(&[2, 3], 14);
    let b = randn(&[2, 3], 15);
    let s = vjp(|_, v| Var::stack(v, 1), &[a.clone(), b.clone()], Some(randn(&[2, 2, 3], 16)));
    assert_eq!(s.0.shape(), &[2, 2, 3]);
    assert_eq!(s.0.select(1, 0).to_vec(), a.to_vec());
    assert_eq!(s.0.select(1, 1).to_vec(), b.to_vec());
}
