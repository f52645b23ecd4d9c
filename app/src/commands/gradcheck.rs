//! `sparsegrad gradcheck`: runs the gradient audit over every registered op.

use autograd::audit::{self, AuditCase};

use super::{set_threads, usage_error};
use crate::cli::Args;

const HELP: &str = "\
sparsegrad gradcheck: audit every registered gradient rule

The registry holds the built-in ops and the sparse-coding rules (sf, csf, sf_loss,
csf_loss; sf also with learned λ1, λ2), whose inputs keep a margin of 1e-4 from every
change of an active set. Each case builds the op on f64 inputs (contiguous tensors and transposed, sliced and
broadcast views), computes its gradient on the tape, and compares it element by element with
central differences (f(x + eps) − f(x − eps)) / 2eps, passing when
|analytic − numeric| ≤ atol + rtol·|numeric| (eps 1e-6, atol 1e-7, rtol 1e-5 unless a case
documents otherwise). Ops with several outputs are projected on a fixed random cotangent.

USAGE:
    sparsegrad gradcheck [--op NAME] [--json] [--list] [--threads N]

OPTIONS:
    --op NAME      audit only the cases of op NAME (see --list)
    --json         print machine-readable results instead of the table
    --list         list the audited ops and their number of cases, and exit
    --threads N    worker threads (default: all cores)
    -h, --help     print this help

Exit status: 0 when every case passes, 1 when any fails, 2 on a usage error or an unknown op.
";

/// Every registered audit case: the built-in ops of `autograd`, then the sparse-coding rules
/// of `sparse` (SF, CSF and their unsupervised losses, learned λ).
pub fn registry() -> Vec<AuditCase> {
    sparse::audit::registry()
}

/// Runs `sparsegrad gradcheck <args>`; returns the exit status.
pub fn run(args: &[String]) -> i32 {
    let a = match Args::parse(args, &["json", "list", "help"], &["op", "threads"]) {
        Ok(a) => a,
        Err(e) => return usage_error("gradcheck", &e.0, HELP),
    };
    if a.flag("help") {
        print!("{HELP}");
        return 0;
    }
    if let Some(p) = a.positional.first() {
        return usage_error("gradcheck", &format!("unexpected argument `{p}`"), HELP);
    }
    let threads = match a.get("threads", 0usize) {
        Ok(t) => t,
        Err(e) => return usage_error("gradcheck", &e.0, HELP),
    };
    if let Err(e) = set_threads(threads) {
        eprintln!("error: gradcheck: {e}");
        return 1;
    }
    let cases = registry();
    let ops = audit::ops(&cases);
    if a.flag("list") {
        for op in &ops {
            println!("{op:<20} {} cases", cases.iter().filter(|c| c.op == *op).count());
        }
        println!("{} ops, {} cases", ops.len(), cases.len());
        return 0;
    }
    let filter = a.value("op");
    if let Some(op) = filter {
        if !ops.contains(&op) {
            return usage_error("gradcheck", &format!("no audit cases for op `{op}` (see --list)"), HELP);
        }
    }
    let results = audit::run_all(&cases, filter);
    if a.flag("json") {
        println!("{}", audit::format_json(&results));
    } else {
        print!("{}", audit::format_table(&results));
    }
    if results.iter().all(|r| r.passed()) {
        0
    } else {
        1
    }
}
