//! Running audit cases: in parallel, in registry order, every error or panic a failed case.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use super::AuditCase;
use crate::check::GradReport;

/// The outcome of one [`AuditCase`].
#[derive(Clone, Debug)]
pub struct AuditResult {
    /// The audited op (see [`AuditCase::op`]).
    pub op: &'static str,
    /// The input description (see [`AuditCase::input`]).
    pub input: String,
    /// The report, or the error (or panic message) that stopped the check.
    pub outcome: std::result::Result<GradReport, String>,
    /// Wall-clock time of the check.
    pub seconds: f64,
}

impl AuditResult {
    /// True when the check ran and every checked element was within tolerance.
    pub fn passed(&self) -> bool {
        matches!(&self.outcome, Ok(r) if r.passed())
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = p.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_string()
    }
}

/// Runs one case, turning an error or a panic into a failed result.
pub fn run_case(case: &AuditCase) -> AuditResult {
    let start = Instant::now();
    let outcome = match catch_unwind(AssertUnwindSafe(|| (case.run)())) {
        Ok(Ok(report)) => Ok(report),
        Ok(Err(e)) => Err(e.to_string()),
        Err(p) => Err(panic_message(p)),
    };
    AuditResult { op: case.op, input: case.input.clone(), outcome, seconds: start.elapsed().as_secs_f64() }
}

/// Runs every case whose op is `filter` (all cases when `None`), in parallel; results come
/// back in registry order. An empty result for `Some(name)` means no case audits `name`.
pub fn run_all(cases: &[AuditCase], filter: Option<&str>) -> Vec<AuditResult> {
    let selected: Vec<&AuditCase> = cases.iter().filter(|c| filter.is_none_or(|op| c.op == op)).collect();
    engine::par::map(selected.len(), &|i| run_case(selected[i]))
}
