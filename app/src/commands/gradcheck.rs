//! `sparsegrad gradcheck`: runs the gradient audit over every registered op.

use autograd::audit::{self, json_str, AuditCase};

use super::{fail, set_threads};
use crate::cli::{GradcheckArgs, GRADCHECK_EXIT, USAGE};
use crate::{out, outln};

/// Every registered audit case: the built-in ops of `autograd`, then the sparse-coding rules
/// of `sparse` (SF, CSF and their losses, CSC, FISTA, DCT, DCEA, NLL, SC, …).
pub fn registry() -> Vec<AuditCase> {
    sparsegrad_audit::registry()
}

/// The help's list of audited ops, generated from [`registry`], then the exit statuses.
pub fn ops_help() -> String {
    let cases = registry();
    let ops = audit::ops(&cases);
    let mut s = format!("Audited ops ({} ops, {} cases; `--list` counts the cases of each):\n", ops.len(), cases.len());
    let mut line = String::from(" ");
    for op in &ops {
        if line.len() + op.len() + 2 > 100 {
            s.push_str(line.trim_end());
            s.push('\n');
            line = String::from(" ");
        }
        line.push(' ');
        line.push_str(op);
    }
    s.push_str(line.trim_end());
    s.push_str("\n\n");
    s.push_str(GRADCHECK_EXIT);
    s
}

/// Runs `sparsegrad gradcheck`; returns the exit status.
pub fn run(a: &GradcheckArgs) -> i32 {
    if let Err(e) = set_threads(a.threads) {
        return fail("gradcheck", e, 1);
    }
    let cases = registry();
    let ops = audit::ops(&cases);
    let count = |op: &str| cases.iter().filter(|c| c.op == op).count();
    if a.list {
        if a.json {
            let items: Vec<String> =
                ops.iter().map(|op| format!("{{\"op\":{},\"cases\":{}}}", json_str(op), count(op))).collect();
            outln!("{{\"ops\":[{}],\"total_ops\":{},\"total_cases\":{}}}", items.join(","), ops.len(), cases.len());
        } else {
            for op in &ops {
                outln!("{op:<20} {} cases", count(op));
            }
            outln!("{} ops, {} cases", ops.len(), cases.len());
        }
        return 0;
    }
    let filter = a.op.as_deref();
    if let Some(op) = filter {
        if !ops.contains(&op) {
            return fail("gradcheck", format!("no audit cases for op `{op}` (see --list)"), USAGE);
        }
    }
    let results = audit::run_all(&cases, filter);
    if a.json {
        outln!("{}", audit::format_json(&results));
    } else {
        out!("{}", audit::format_table(&results));
    }
    if results.iter().all(|r| r.passed()) {
        0
    } else {
        1
    }
}
