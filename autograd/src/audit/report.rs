//! The audit's output: a table for people, JSON for programs.

use std::fmt::Write as _;

use super::AuditResult;

fn err_cell(x: f64) -> String {
    format!("{x:.2e}")
}

/// Widest input column of [`format_table`]; longer descriptions wrap onto continuation lines.
const INPUT_WIDTH: usize = 64;

/// Splits `text` into lines of at most `width` characters, breaking after a space (a single
/// word longer than `width` keeps a line of its own).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = vec![];
    let mut line = String::new();
    for word in text.split_inclusive(' ') {
        if !line.is_empty() && line.trim_end().chars().count() + 1 + word.trim_end().chars().count() > width {
            lines.push(line.trim_end().to_string());
            line.clear();
        }
        line.push_str(word);
    }
    lines.push(line.trim_end().to_string());
    lines
}

/// A table with one row per result: op, input, max abs error, max rel error, PASS/FAIL.
/// An input description wider than 64 characters wraps, the numbers on its last line.
/// Failed rows are followed by the full report (worst element, both values) or the error;
/// the last line counts the failures.
pub fn format_table(results: &[AuditResult]) -> String {
    let w_op = results.iter().map(|r| r.op.chars().count()).chain([2]).max().unwrap_or(2);
    let w_in = results.iter().map(|r| r.input.chars().count()).chain([5]).max().unwrap_or(5).min(INPUT_WIDTH);
    let mut s = String::new();
    let _ = writeln!(s, "{:<w_op$}  {:<w_in$}  {:>10}  {:>10}  result", "op", "input", "max abs", "max rel");
    for r in results {
        let (abs, rel) = match &r.outcome {
            Ok(rep) => (err_cell(rep.max_abs_err()), err_cell(rep.max_rel_err())),
            Err(_) => ("-".to_string(), "-".to_string()),
        };
        let verdict = if r.passed() { "PASS" } else { "FAIL" };
        let lines = wrap(&r.input, w_in);
        let (last, first) = lines.split_last().expect("wrap returns at least one line");
        for (i, piece) in first.iter().enumerate() {
            let op = if i == 0 { r.op } else { "" };
            let _ = writeln!(s, "{op:<w_op$}  {piece}");
        }
        let op = if first.is_empty() { r.op } else { "" };
        let _ = writeln!(s, "{op:<w_op$}  {last:<w_in$}  {abs:>10}  {rel:>10}  {verdict}");
        match &r.outcome {
            Ok(rep) if !rep.passed() => {
                for line in rep.to_string().lines() {
                    let _ = writeln!(s, "    {line}");
                }
            }
            Err(e) => {
                let _ = writeln!(s, "    error: {e}");
            }
            Ok(_) => {}
        }
    }
    let failed = results.iter().filter(|r| !r.passed()).count();
    let n_ops = {
        let mut names: Vec<&str> = results.iter().map(|r| r.op).collect();
        names.sort_unstable();
        names.dedup();
        names.len()
    };
    let _ =
        writeln!(s, "{} cases over {} ops: {} passed, {} failed", results.len(), n_ops, results.len() - failed, failed);
    s
}

/// A JSON number, or `null` for NaN and ±∞ (which JSON cannot represent).
fn json_f64(x: f64) -> String {
    if x.is_finite() {
        format!("{x:e}")
    } else {
        "null".to_string()
    }
}

/// A JSON string literal (quotes, backslashes and control characters escaped); shared with
/// the program's other JSON outputs.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_usizes(v: &[usize]) -> String {
    let items: Vec<String> = v.iter().map(|d| d.to_string()).collect();
    format!("[{}]", items.join(","))
}

/// Machine-readable results:
/// `{"passed", "cases", "failed", "results": [{"op", "input", "passed", "max_abs_err",
/// "max_rel_err", "seconds", "error", "inputs": [{"input", "shape", "checked", "max_abs_err",
/// "max_rel_err", "passed", "worst": {"index", "analytic", "numeric"}}]}]}`.
/// Non-finite numbers are `null`; `error` is `null` unless the check could not run.
pub fn format_json(results: &[AuditResult]) -> String {
    let failed = results.iter().filter(|r| !r.passed()).count();
    let mut s = format!("{{\"passed\":{},\"cases\":{},\"failed\":{},\"results\":[", failed == 0, results.len(), failed);
    for (i, r) in results.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{{\"op\":{},\"input\":{},\"passed\":{}", json_str(r.op), json_str(&r.input), r.passed());
        match &r.outcome {
            Ok(rep) => {
                let _ = write!(
                    s,
                    ",\"max_abs_err\":{},\"max_rel_err\":{},\"seconds\":{},\"error\":null,\"inputs\":[",
                    json_f64(rep.max_abs_err()),
                    json_f64(rep.max_rel_err()),
                    json_f64(r.seconds)
                );
                for (k, ir) in rep.inputs.iter().enumerate() {
                    if k > 0 {
                        s.push(',');
                    }
                    let _ = write!(
                        s,
                        "{{\"input\":{},\"shape\":{},\"checked\":{},\"max_abs_err\":{},\"max_rel_err\":{},\"passed\":{},\"worst\":",
                        ir.input,
                        json_usizes(&ir.shape),
                        ir.checked,
                        json_f64(ir.max_abs_err),
                        json_f64(ir.max_rel_err),
                        ir.passed
                    );
                    match &ir.worst {
                        Some(w) => {
                            let _ = write!(
                                s,
                                "{{\"index\":{},\"analytic\":{},\"numeric\":{}}}}}",
                                json_usizes(&w.index),
                                json_f64(w.analytic),
                                json_f64(w.numeric)
                            );
                        }
                        None => s.push_str("null}"),
                    }
                }
                s.push_str("]}");
            }
            Err(e) => {
                let _ = write!(
                    s,
                    ",\"max_abs_err\":null,\"max_rel_err\":null,\"seconds\":{},\"error\":{},\"inputs\":[]}}",
                    json_f64(r.seconds),
                    json_str(e)
                );
            }
        }
    }
    s.push_str("]}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{run_all, AuditCase};

    #[test]
    fn wrap_keeps_lines_within_the_width_and_every_word() {
        let text = "sliced view [1, 2, 4, 4] (step 2, offset), weight transposed view [2, 2, 3, 3], no bias";
        for width in [10, 20, 64, 200] {
            let lines = wrap(text, width);
            assert_eq!(lines.join(" "), text, "width {width}");
            assert!(lines.iter().all(|l| l.chars().count() <= width), "width {width}: {lines:?}");
            // No line could have taken the next line's first word.
            for w in lines.windows(2) {
                let next = w[1].split(' ').next().unwrap();
                assert!(w[0].chars().count() + 1 + next.chars().count() > width, "width {width}: {lines:?}");
            }
        }
        assert_eq!(wrap("", 8), vec![""]);
        assert_eq!(wrap("averyveryverylongword x", 8), vec!["averyveryverylongword", "x"]);
    }

    #[test]
    fn table_rows_wrap_long_inputs_and_keep_the_numbers_aligned() {
        let long = "x ".repeat(60) + "end";
        let cases = vec![
            AuditCase::new("short", "contiguous [2]", || Err(crate::Error::Check { msg: "none".into() })),
            AuditCase::new("long", long.clone(), || Err(crate::Error::Check { msg: "none".into() })),
        ];
        let table = format_table(&run_all(&cases, None));
        let width = |l: &str| l.chars().count();
        let header = table.lines().next().unwrap();
        let verdicts: Vec<&str> = table.lines().filter(|l| l.ends_with("FAIL")).collect();
        assert_eq!(verdicts.len(), 2, "{table}");
        assert!(verdicts.iter().all(|l| width(l) == width(header) - "result".len() + "FAIL".len()), "{table}");
        assert!(table.lines().all(|l| width(l) <= width(header) + 10), "{table}");
        assert!(table.contains("end") && table.contains("long"), "{table}");
    }

    #[test]
    fn json_escapes_and_nulls() {
        assert_eq!(json_str("a\"b\\c\n→"), "\"a\\\"b\\\\c\\n→\"");
        assert_eq!(json_f64(f64::INFINITY), "null");
        assert_eq!(json_f64(1.5e-9), "1.5e-9");
    }
}
