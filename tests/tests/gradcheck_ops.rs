//! The gradient audit of every built-in op (the registry `sparsegrad gradcheck` runs), a
//! coverage test that fails when an op is added without an audit, and checks of the fused
//! softmax/log-softmax/cross-entropy rules against their composites.

use std::collections::BTreeSet;
use std::path::Path;

use autograd::{audit, Reduction, Var};
use sparsegrad_tests::{assert_close, randn, vjp};

#[test]
fn every_registered_audit_passes() {
    let cases = audit::cases();
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
    let cases = audit::cases();
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
// Coverage: every op recorded in autograd/src/ops must have an audit case.

/// Source of the `ops` modules that `ops/mod.rs` compiles (commented-out modules are skipped),
/// with `#[cfg(test)]` modules and `//` comments removed.
fn ops_sources() -> Vec<(String, String)> {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../autograd/src/ops"));
    let strip = |src: &str| -> String {
        let code = src.split("#[cfg(test)]").next().unwrap_or("");
        code.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
    };
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mod_rs = strip(&read("mod.rs"));
    let mut out = Vec::new();
    for line in mod_rs.lines() {
        let line = line.trim();
        if let Some(m) = line.strip_prefix("mod ").or_else(|| line.strip_prefix("pub mod ")) {
            if let Some(m) = m.strip_suffix(';') {
                out.push((format!("{m}.rs"), strip(&read(&format!("{m}.rs")))));
            }
        }
    }
    out.push(("mod.rs".to_string(), mod_rs));
    out
}

/// The text between the parenthesis at `open` and its match.
fn paren_args(s: &str, open: usize) -> &str {
    let bytes = s.as_bytes();
    let (mut depth, mut in_str) = (0usize, false);
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'"' if i == 0 || bytes[i - 1] != b'\\' => in_str = !in_str,
            b'(' if !in_str => depth += 1,
            b')' if !in_str => {
                depth -= 1;
                if depth == 0 {
                    return &s[open + 1..i];
                }
            }
            _ => {}
        }
    }
    &s[open + 1..]
}

fn first_literal(s: &str) -> Option<String> {
    let start = s.find('"')? + 1;
    let len = s[start..].find('"')?;
    Some(s[start..start + len].to_string())
}

fn ident_before(s: &str, end: usize) -> &str {
    let start = s[..end].rfind(|c: char| !(c.is_alphanumeric() || c == '_')).map_or(0, |i| i + 1);
    &s[start..end]
}

/// Recording helpers (functions taking `name: &'static str`, such as `unary`, `binary` and
/// the max/min `extreme`), and every name an op records: `name: "…"` of a `FnRule` and the
/// first string argument of every call to a recording helper.
fn recorded_names(sources: &[(String, String)]) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut helpers = BTreeSet::new();
    for (_, src) in sources {
        for (pos, _) in src.match_indices("fn ") {
            let rest = &src[pos + 3..];
            let Some(open) = rest.find('(') else { continue };
            let name = rest[..open].split('<').next().unwrap().trim();
            if paren_args(rest, open).contains("name: &'static str") {
                helpers.insert(name.to_string());
            }
        }
    }
    let mut names = BTreeSet::new();
    for (_, src) in sources {
        for (pos, _) in src.match_indices("name: \"") {
            names.insert(first_literal(&src[pos..]).unwrap());
        }
        for (pos, _) in src.match_indices('(') {
            let callee = ident_before(src, pos);
            if helpers.contains(callee) && src[..pos].ends_with(&format!(".{callee}")) {
                if let Some(n) = first_literal(paren_args(src, pos)) {
                    names.insert(n);
                }
            }
        }
    }
    (helpers, names)
}

/// Public methods of the ops files (the op API), apart from the recording helpers.
fn public_methods(sources: &[(String, String)], helpers: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (_, src) in sources {
        for (pos, _) in src.match_indices("pub fn ") {
            let rest = &src[pos + 7..];
            let end = rest.find(['(', '<']).unwrap_or(0);
            let name = rest[..end].trim().trim_end_matches('_');
            if !helpers.contains(name) {
                out.insert(name.to_string());
            }
        }
    }
    // `sum_to` is the free helper that reduces a broadcast gradient, not an op on `Var`.
    out.remove("sum_to");
    out
}

#[test]
fn every_recorded_op_and_public_op_method_has_an_audit() {
    let sources = ops_sources();
    let (helpers, names) = recorded_names(&sources);
    // The scanner must find what is known to be there, or the test below would pass vacuously.
    for h in ["unary", "binary", "extreme"] {
        assert!(helpers.contains(h), "helper {h} not found; found {helpers:?}");
    }
    for n in ["neg", "add", "maximum", "max", "min", "where", "sum", "matmul", "slice", "cross_entropy", "gather"] {
        assert!(names.contains(n), "recorded op {n} not found; found {names:?}");
    }
    assert!(names.len() >= 45, "only {} recorded ops found: {names:?}", names.len());

    let audited: BTreeSet<&str> = audit::ops(&audit::cases()).into_iter().collect();
    let missing: Vec<&String> = names.iter().filter(|n| !audited.contains(n.as_str())).collect();
    assert!(missing.is_empty(), "ops recorded in autograd/src/ops without an audit case: {missing:?}");

    let methods = public_methods(&sources, &helpers);
    assert!(methods.contains("norm_l1") && methods.contains("stack") && methods.contains("where"), "{methods:?}");
    let missing: Vec<&String> = methods.iter().filter(|n| !audited.contains(n.as_str())).collect();
    assert!(missing.is_empty(), "public op methods without an audit case: {missing:?}");
}

#[test]
fn every_op_is_audited_on_contiguous_permuted_sliced_and_broadcast_inputs() {
    let cases = audit::cases();
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
