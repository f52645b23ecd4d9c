//! The gradient audit: a registry of gradient checks over every differentiable op, run by
//! `sparsegrad gradcheck` and by the test suite (`tests/tests/gradcheck_ops.rs`).
//!
//! Each [`AuditCase`] names the op it audits (the name the op records on the tape, or the
//! [`Var`] method for composites such as `mean`), describes its input (shape and layout:
//! contiguous, transposed/permuted, sliced with a step, broadcast) and runs
//! [`check_gradients`] on it in `f64`.
//!
//! How inputs are chosen:
//! * Shapes are drawn from a generator seeded by the op name, so every run audits the same
//!   shapes, and adding a case for one op does not change the others.
//! * Values keep every central difference where the op is smooth: at least [`MARGIN`] from
//!   a kink (relu, abs, sign, soft-threshold, clamp, elu), positive for `log`, `sqrt` and
//!   non-integer powers, and pairwise distinct for max/min and max pooling (a shuffled grid),
//!   so the selected element does not change within `±eps`.
//! * Non-contiguous inputs are passed as views (the checker keeps their layout); broadcast
//!   inputs are broadcast inside the audited function from a smaller leaf, because the checker
//!   makes aliased (stride-0) inputs contiguous.
//!
//! Every case uses [`CheckOptions::default()`] (eps 1e-6, atol 1e-7, rtol 1e-5). The only
//! departure is `max_elements`, which samples the elements checked on the few inputs large
//! enough to reach the engine's parallel paths (reductions over 2 × 40000 elements, a GEMM
//! split into column blocks); it does not loosen the comparison of the elements checked.
//!
//! Other crates extend the registry: `cases()` returns a plain `Vec`, so
//! `let mut all = audit::cases(); all.extend(sparse::audit::cases());` is all it takes.

use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use engine::{Conv2dParams, ConvTranspose2dParams, Pool2dParams, Rng, Tensor};
use rayon::prelude::*;

use crate::check::{check_gradients, CheckOptions, GradReport};
use crate::error::Result;
use crate::ops::Reduction;
use crate::tape::{Tape, Var};

/// The check an [`AuditCase`] runs.
pub type AuditFn = Arc<dyn Fn() -> Result<GradReport> + Send + Sync>;

/// One audited op on one kind of input.
#[derive(Clone)]
pub struct AuditCase {
    /// The op's name as recorded on the tape (`"conv2d"`, `"where"`), or the [`Var`] method
    /// for ops built from others (`"mean"`, `"select"`).
    pub op: &'static str,
    /// The input: layout, shape and the op's parameters, e.g. `"transposed view [3, 4]"`.
    pub input: String,
    /// Runs the gradient check.
    pub run: AuditFn,
}

impl AuditCase {
    /// A case running an arbitrary check.
    pub fn new(
        op: &'static str,
        input: impl Into<String>,
        run: impl Fn() -> Result<GradReport> + Send + Sync + 'static,
    ) -> AuditCase {
        AuditCase { op, input: input.into(), run: Arc::new(run) }
    }

    /// A case running `check_gradients(f, inputs, opts)`.
    pub fn gradcheck<F>(
        op: &'static str,
        input: impl Into<String>,
        inputs: Vec<Tensor<f64>>,
        opts: CheckOptions,
        f: F,
    ) -> AuditCase
    where
        F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Var<'t, f64> + Send + Sync + 'static,
    {
        AuditCase::new(op, input, move || check_gradients(&f, &inputs, &opts))
    }
}

impl std::fmt::Debug for AuditCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditCase({}: {})", self.op, self.input)
    }
}

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

/// The distinct op names of `cases`, in registry order.
pub fn ops(cases: &[AuditCase]) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for c in cases {
        if !names.contains(&c.op) {
            names.push(c.op);
        }
    }
    names
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
    selected.par_iter().map(|c| run_case(c)).collect()
}

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

// ---------------------------------------------------------------------------------------------
// Inputs

/// Smallest distance kept between an input value and a kink of the audited op. Central
/// differences with `eps = 1e-6` only need `eps`; the margin leaves room for every value to
/// stay on one side of the kink with no care about rounding.
pub const MARGIN: f64 = 0.05;

/// The values an input may take.
#[derive(Clone, Copy, Debug)]
enum Dom {
    /// Standard normal.
    Any,
    /// Uniform in `[lo, hi)`.
    Range(f64, f64),
    /// Uniform in `[−2, 2)`, at least [`MARGIN`] from each listed kink.
    Away(&'static [f64]),
    /// Pairwise distinct: a shuffled grid of spacing 0.05 with jitter below 0.0125, so any two
    /// elements are at least 0.025 apart and every max/min is unique within `±eps`.
    Distinct,
    /// `k·0.1 + offset` for random integers `k` in `−15..15`. Two tensors with offsets 0 and
    /// 0.05 are everywhere at least 0.05 apart (for `maximum`/`minimum`).
    Grid(f64),
}

fn values(dom: Dom, n: usize, rng: &mut Rng) -> Vec<f64> {
    match dom {
        Dom::Any => (0..n).map(|_| rng.normal()).collect(),
        Dom::Range(lo, hi) => (0..n).map(|_| rng.uniform_in(lo, hi)).collect(),
        Dom::Away(kinks) => (0..n)
            .map(|_| loop {
                let v = rng.uniform_in(-2.0, 2.0);
                if kinks.iter().all(|k| (v - k).abs() >= MARGIN) {
                    break v;
                }
            })
            .collect(),
        Dom::Distinct => {
            let mut ranks: Vec<usize> = (0..n).collect();
            rng.shuffle(&mut ranks);
            let mid = n as f64 / 2.0;
            ranks.iter().map(|&r| (r as f64 - mid) * 0.05 + rng.uniform_in(-0.0125, 0.0125)).collect()
        }
        Dom::Grid(offset) => (0..n).map(|_| (rng.below(30) as f64 - 15.0) * 0.1 + offset).collect(),
    }
}

/// A contiguous tensor of `shape` with values from `dom`.
fn tensor(dom: Dom, shape: &[usize], rng: &mut Rng) -> Tensor<f64> {
    let n = shape.iter().product();
    Tensor::from_vec(values(dom, n, rng), shape)
}

/// The layout an input is given in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum View {
    Contiguous,
    /// The last two axes swapped (a transposed matrix).
    Transposed,
    /// Axis `k` of the input is axis `k + 1 (mod rank)` of its storage.
    Permuted,
    /// Every second element of the last axis, starting at 1, and an offset on axis 0.
    Sliced,
    /// A leaf whose first axis longer than 1 has length 1, broadcast (stride 0) to the
    /// logical shape inside the audited function.
    Broadcast,
}

/// One input of a case: its description, the tensor handed to the checker and, for a
/// broadcast input, the shape the audited function broadcasts it to.
struct Input {
    desc: String,
    value: Tensor<f64>,
    target: Option<Vec<usize>>,
}

/// `v`, broadcast to `target` when there is one.
fn bcast<'t>(v: &Var<'t, f64>, target: &Option<Vec<usize>>) -> Var<'t, f64> {
    match target {
        Some(t) => v.broadcast_to(t),
        None => *v,
    }
}

/// An input of logical `shape` in the layout `view`, with values from `dom`; `params`, when
/// not empty, is appended to the description.
fn input(view: View, shape: &[usize], dom: Dom, rng: &mut Rng, params: &str) -> Input {
    let sep = if params.is_empty() { "" } else { "; " };
    let desc = format!("{}{sep}{params}", describe(view, shape));
    if view == View::Broadcast {
        let axis = shape.iter().position(|&d| d > 1).unwrap_or(0);
        let mut small = shape.to_vec();
        small[axis] = 1;
        Input { desc, value: tensor(dom, &small, rng), target: Some(shape.to_vec()) }
    } else {
        Input { desc, value: make(view, shape, dom, rng), target: None }
    }
}

/// An input of logical `shape` in the layout `view`, with values from `dom`.
fn make(view: View, shape: &[usize], dom: Dom, rng: &mut Rng) -> Tensor<f64> {
    let r = shape.len();
    match view {
        View::Contiguous => tensor(dom, shape, rng),
        View::Transposed => {
            assert!(r >= 2, "audit: a transposed view needs rank ≥ 2");
            let mut s = shape.to_vec();
            s.swap(r - 2, r - 1);
            tensor(dom, &s, rng).transpose(r - 2, r - 1)
        }
        View::Permuted => {
            let perm: Vec<usize> = (0..r).map(|k| (k + 1) % r).collect();
            let mut s = vec![0; r];
            for k in 0..r {
                s[perm[k]] = shape[k];
            }
            tensor(dom, &s, rng).permute(&perm)
        }
        View::Sliced => {
            let mut s = shape.to_vec();
            s[r - 1] = 2 * shape[r - 1] + 1;
            s[0] += 1;
            let base = tensor(dom, &s, rng);
            base.narrow(0, 1, shape[0]).slice(r - 1, 1, 2 * shape[r - 1] + 1, 2)
        }
        View::Broadcast => panic!("audit: a broadcast input is made by `input`"),
    }
}

fn describe(view: View, shape: &[usize]) -> String {
    match view {
        View::Contiguous => format!("contiguous {shape:?}"),
        View::Transposed => format!("transposed view {shape:?}"),
        View::Permuted => format!("permuted view {shape:?}"),
        View::Sliced => format!("sliced view {shape:?} (step 2, offset)"),
        View::Broadcast => {
            let axis = shape.iter().position(|&d| d > 1).unwrap_or(0);
            let mut small = shape.to_vec();
            small[axis] = 1;
            format!("broadcast {small:?}→{shape:?}")
        }
    }
}

/// A generator seeded by the op name and a variant, independent of registry order.
fn rng_for(op: &str, variant: u64) -> Rng {
    let h = op.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    Rng::stream(h, variant)
}

/// `rank` random lengths in `lo..=hi`.
fn dims(rng: &mut Rng, rank: usize, lo: usize, hi: usize) -> Vec<usize> {
    (0..rank).map(|_| lo + rng.below((hi - lo + 1) as u64) as usize).collect()
}

fn default() -> CheckOptions {
    CheckOptions::default()
}

// ---------------------------------------------------------------------------------------------
// Case families

/// Element-wise unary op `f`: a matrix in each layout (including a row broadcast over the
/// matrix) and a permuted rank-3 view.
fn unary<F>(out: &mut Vec<AuditCase>, op: &'static str, params: &str, dom: Dom, f: F)
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
fn binary<F>(out: &mut Vec<AuditCase>, op: &'static str, da: Dom, db: Dom, f: F)
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
fn reduction<F>(out: &mut Vec<AuditCase>, op: &'static str, dom: Dom, f: F)
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
fn total<F>(out: &mut Vec<AuditCase>, op: &'static str, dom: Dom, f: F)
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
fn single<F>(out: &mut Vec<AuditCase>, op: &'static str, inputs: Vec<Input>, f: F)
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
fn multi<F>(out: &mut Vec<AuditCase>, op: &'static str, params: &str, inputs: Vec<Input>, f: F)
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

/// `shape` in each of the given layouts (see [`input`]).
fn layouts(views: &[View], shape: &[usize], dom: Dom, rng: &mut Rng, params: &str) -> Vec<Input> {
    views.iter().map(|&v| input(v, shape, dom, rng, params)).collect()
}

/// Every layout of a matrix.
const ALL2: [View; 4] = [View::Contiguous, View::Transposed, View::Sliced, View::Broadcast];
/// Every layout of a rank-3 (or higher) tensor.
const ALL3: [View; 5] = [View::Contiguous, View::Transposed, View::Permuted, View::Sliced, View::Broadcast];

fn elementwise_cases(out: &mut Vec<AuditCase>) {
    unary(out, "neg", "", Dom::Any, |x| x.neg());
    unary(out, "exp", "", Dom::Any, |x| x.exp());
    unary(out, "log", "", Dom::Range(0.2, 3.0), |x| x.log());
    unary(out, "sqrt", "", Dom::Range(0.2, 3.0), |x| x.sqrt());
    unary(out, "abs", "", Dom::Away(&[0.0]), |x| x.abs());
    unary(out, "sign", "", Dom::Away(&[0.0]), |x| x.sign());
    unary(out, "square", "", Dom::Any, |x| x.square());
    unary(out, "recip", "", Dom::Away(&[0.0]), |x| x.recip());
    unary(out, "relu", "", Dom::Away(&[0.0]), |x| x.relu());
    unary(out, "sigmoid", "", Dom::Any, |x| x.sigmoid());
    unary(out, "tanh", "", Dom::Any, |x| x.tanh());
    unary(out, "softplus", "", Dom::Any, |x| x.softplus());
    // α ≠ 1 makes elu's derivative jump at 0 (α = 1 only its second derivative), so both sides
    // of the kink are exercised with distinct slopes.
    unary(out, "elu", "α = 0.7", Dom::Away(&[0.0]), |x| x.elu(0.7));
    unary(out, "elu", "α = 1", Dom::Away(&[0.0]), |x| x.elu(1.0));
    unary(out, "powf", "p = 2.5", Dom::Range(0.2, 2.0), |x| x.powf(2.5));
    unary(out, "powf", "p = −1.5", Dom::Range(0.5, 2.0), |x| x.powf(-1.5));
    unary(out, "powf", "p = 3 (negative inputs)", Dom::Any, |x| x.powf(3.0));
    unary(out, "clamp", "[−0.5, 0.8]", Dom::Away(&[-0.5, 0.8]), |x| x.clamp(-0.5, 0.8));
    unary(out, "soft_threshold", "τ = 0.3", Dom::Away(&[-0.3, 0.3]), |x| x.soft_threshold(0.3));
    unary(out, "add_scalar", "s = 1.5", Dom::Any, |x| x.add_scalar(1.5));
    unary(out, "sub_scalar", "s = 1.5", Dom::Any, |x| x.sub_scalar(1.5));
    unary(out, "rsub_scalar", "s = 1.5", Dom::Any, |x| x.rsub_scalar(1.5));
    unary(out, "mul_scalar", "s = −2.5", Dom::Any, |x| x.mul_scalar(-2.5));
    unary(out, "div_scalar", "s = −2.5", Dom::Any, |x| x.div_scalar(-2.5));

    binary(out, "add", Dom::Any, Dom::Any, |a, b| a.add(b));
    binary(out, "sub", Dom::Any, Dom::Any, |a, b| a.sub(b));
    binary(out, "mul", Dom::Any, Dom::Any, |a, b| a.mul(b));
    binary(out, "div", Dom::Any, Dom::Range(0.5, 2.0), |a, b| a.div(b));
    binary(out, "div", Dom::Any, Dom::Range(-2.0, -0.5), |a, b| a.div(b));
    binary(out, "maximum", Dom::Grid(0.0), Dom::Grid(0.05), |a, b| a.maximum(b));
    binary(out, "minimum", Dom::Grid(0.0), Dom::Grid(0.05), |a, b| a.minimum(b));

    // where: the mask is a constant; a and b broadcast against it.
    let mut rng = rng_for("where", 0);
    let s2 = dims(&mut rng, 2, 2, 5);
    let (r, c) = (s2[0], s2[1]);
    let mask = Tensor::from_vec((0..r * c).map(|i| (i % 3 == 0) as u8 as f64).collect(), &s2);
    for (input, a, b) in [
        (
            format!("mask {s2:?}; contiguous {s2:?}, transposed view {s2:?}"),
            tensor(Dom::Any, &s2, &mut rng),
            make(View::Transposed, &s2, Dom::Any, &mut rng),
        ),
        (
            format!("mask {s2:?}; sliced view {s2:?}, broadcast [{r}, 1]"),
            make(View::Sliced, &s2, Dom::Any, &mut rng),
            tensor(Dom::Any, &[r, 1], &mut rng),
        ),
        (
            format!("mask {s2:?}; broadcast [{c}], broadcast [1]"),
            tensor(Dom::Any, &[c], &mut rng),
            tensor(Dom::Any, &[1], &mut rng),
        ),
    ] {
        let m = mask.clone();
        out.push(AuditCase::gradcheck("where", input, vec![a, b], default(), move |_, v| {
            Var::where_(&m, &v[0], &v[1])
        }));
    }
}

fn reduction_cases(out: &mut Vec<AuditCase>) {
    reduction(out, "sum", Dom::Any, |x, a, k| x.sum(a, k));
    reduction(out, "mean", Dom::Any, |x, a, k| x.mean(a, k));
    reduction(out, "max", Dom::Distinct, |x, a, k| x.max(a, k));
    reduction(out, "min", Dom::Distinct, |x, a, k| x.min(a, k));
    reduction(out, "logsumexp", Dom::Any, |x, a, k| x.logsumexp(a, k));
    reduction(out, "norm_l1", Dom::Away(&[0.0]), |x, a, k| x.norm_l1(a, k));
    reduction(out, "norm_l2", Dom::Any, |x, a, k| x.norm_l2(a, k));
    total(out, "sum_all", Dom::Any, |x| x.sum_all());
    total(out, "mean_all", Dom::Any, |x| x.mean_all());
}

fn shape_cases(out: &mut Vec<AuditCase>) {
    let mut rng = rng_for("shape", 0);
    let s3 = dims(&mut rng, 3, 2, 4);
    let s2 = dims(&mut rng, 2, 2, 5);
    let (a, b, c) = (s3[0], s3[1], s3[2]);

    let to = vec![b, a * c];
    single(out, "reshape", layouts(&ALL3, &s3, Dom::Any, &mut rng, &format!("to {to:?}")), move |x| x.reshape(&to));
    single(out, "permute", layouts(&ALL3, &s3, Dom::Any, &mut rng, "perm [2, 0, 1]"), |x| x.permute(&[2, 0, 1]));
    single(out, "transpose", layouts(&ALL3, &s3, Dom::Any, &mut rng, "axes 0, 2"), |x| x.transpose(0, 2));
    single(out, "t", layouts(&ALL2, &s2, Dom::Any, &mut rng, ""), |x| x.t());
    single(
        out,
        "narrow",
        layouts(&ALL3, &[a, b + 2, c], Dom::Any, &mut rng, &format!("axis 1, start 1, len {b}")),
        move |x| x.narrow(1, 1, b),
    );
    single(
        out,
        "slice",
        layouts(&ALL3, &[a, 2 * b + 1, c], Dom::Any, &mut rng, &format!("axis 1, 1..{}, step 2", 2 * b + 1)),
        move |x| x.slice(1, 1, 2 * b + 1, 2),
    );
    single(
        out,
        "slice",
        layouts(&ALL2, &[3 * a + 2, c], Dom::Any, &mut rng, &format!("axis 0, 0..{}, step 3", 3 * a + 2)),
        move |x| x.slice(0, 0, 3 * a + 2, 3),
    );
    single(out, "select", layouts(&ALL3, &s3, Dom::Any, &mut rng, "axis 1, index 1"), |x| x.select(1, 1));
    let target = vec![a, b, c];
    let tb = target.clone();
    let p = format!("to {target:?}");
    single(out, "broadcast_to", layouts(&ALL2, &[b, 1], Dom::Any, &mut rng, &p), move |x| x.broadcast_to(&tb));
    let tb = target.clone();
    single(out, "broadcast_to", layouts(&[View::Transposed], &[b, c], Dom::Any, &mut rng, &p), move |x| {
        x.broadcast_to(&tb)
    });
    let tb = target.clone();
    single(out, "expand", layouts(&ALL3, &[a, 1, c], Dom::Any, &mut rng, &p), move |x| x.expand(&tb));
    single(out, "expand", layouts(&[View::Sliced], &[1, c], Dom::Any, &mut rng, &p), move |x| x.expand(&target));
    single(out, "unsqueeze", layouts(&ALL2, &s2, Dom::Any, &mut rng, "axis 1"), |x| x.unsqueeze(1));
    single(out, "squeeze", layouts(&ALL3, &[a, 1, c], Dom::Any, &mut rng, "axis 1"), |x| x.squeeze(1));
    single(out, "flatten", layouts(&ALL3, &s3, Dom::Any, &mut rng, "axes 1..=2"), |x| x.flatten(1, 2));
    single(out, "contiguous", layouts(&ALL3, &s3, Dom::Any, &mut rng, ""), |x| x.contiguous());
    single(out, "diagonal", layouts(&ALL2, &[b + 1, b + 1], Dom::Any, &mut rng, ""), |x| x.diagonal());
    single(out, "diagonal", layouts(&[View::Contiguous, View::Sliced], &[b + 1, b + 3], Dom::Any, &mut rng, ""), |x| {
        x.diagonal()
    });
    single(out, "diagonal", layouts(&[View::Transposed], &[b + 3, b + 1], Dom::Any, &mut rng, ""), |x| x.diagonal());
}

fn matmul_cases(out: &mut Vec<AuditCase>) {
    let mut rng = rng_for("matmul", 0);
    let d = dims(&mut rng, 4, 2, 5);
    let (m, k, n, b) = (d[0], d[1], d[2], d[3]);
    let mut push = |input: String, x: Tensor<f64>, y: Tensor<f64>, opts: CheckOptions| {
        out.push(AuditCase::gradcheck("matmul", input, vec![x, y], opts, |_, v| v[0].matmul(&v[1])));
    };
    let any = Dom::Any;
    let views = [
        (View::Contiguous, View::Contiguous),
        (View::Transposed, View::Contiguous),
        (View::Contiguous, View::Transposed),
        (View::Transposed, View::Transposed),
        (View::Sliced, View::Sliced),
    ];
    for (va, vb) in views {
        push(
            format!("{} · {}", describe(va, &[m, k]), describe(vb, &[k, n])),
            make(va, &[m, k], any, &mut rng),
            make(vb, &[k, n], any, &mut rng),
            default(),
        );
    }
    push(
        format!("batched contiguous [{b}, {m}, {k}] · [{b}, {k}, {n}]"),
        tensor(any, &[b, m, k], &mut rng),
        tensor(any, &[b, k, n], &mut rng),
        default(),
    );
    push(
        format!("batched permuted view [{b}, {m}, {k}] · [{k}, {n}] (broadcast)"),
        make(View::Permuted, &[b, m, k], any, &mut rng),
        tensor(any, &[k, n], &mut rng),
        default(),
    );
    push(
        format!("broadcast batch [2, 1, {m}, {k}] · [3, {k}, {n}]"),
        tensor(any, &[2, 1, m, k], &mut rng),
        tensor(any, &[3, k, n], &mut rng),
        default(),
    );
    push(
        format!("vector [{k}] · matrix [{k}, {n}]"),
        tensor(any, &[k], &mut rng),
        tensor(any, &[k, n], &mut rng),
        default(),
    );
    push(
        format!("transposed view [{m}, {k}] · vector [{k}]"),
        make(View::Transposed, &[m, k], any, &mut rng),
        tensor(any, &[k], &mut rng),
        default(),
    );
    push(format!("vector [{k}] · vector [{k}]"), tensor(any, &[k], &mut rng), tensor(any, &[k], &mut rng), default());
    push(
        format!("vector [{k}] · batched [{b}, {k}, {n}]"),
        tensor(any, &[k], &mut rng),
        tensor(any, &[b, k, n], &mut rng),
        default(),
    );
    // 64·256·2048 = 2²⁵ multiply-adds: the engine splits the columns into parallel blocks.
    push(
        "contiguous [64, 256] · transposed view [256, 2048] (column blocks); 10 sampled elements".to_string(),
        tensor(Dom::Range(-1.0, 1.0), &[64, 256], &mut rng),
        make(View::Transposed, &[256, 2048], Dom::Range(-1.0, 1.0), &mut rng),
        default().max_elements(10),
    );
}

/// Softmax (`log = false`) or log-softmax along `axis`.
fn softmax_along<'t>(x: &Var<'t, f64>, axis: usize, log: bool) -> Var<'t, f64> {
    if log {
        x.log_softmax(axis)
    } else {
        x.softmax(axis)
    }
}

fn softmax_cases(out: &mut Vec<AuditCase>) {
    for (op, log) in [("softmax", false), ("log_softmax", true)] {
        let mut rng = rng_for(op, 0);
        let s3 = dims(&mut rng, 3, 2, 5);
        for axis in 0..3 {
            let inputs = layouts(&[View::Contiguous, View::Permuted], &s3, Dom::Any, &mut rng, &format!("axis {axis}"));
            single(out, op, inputs, move |x| softmax_along(x, axis, log));
        }
        let s2 = [s3[0], s3[1]];
        let inputs = layouts(&[View::Transposed, View::Sliced, View::Broadcast], &s2, Dom::Any, &mut rng, "axis 1");
        single(out, op, inputs, move |x| softmax_along(x, 1, log));
    }

    let mut rng = rng_for("cross_entropy", 0);
    let d = dims(&mut rng, 2, 2, 6);
    let (n, c) = (d[0] + 1, d[1] + 1);
    let labels: Vec<usize> = (0..n).map(|_| rng.below(c as u64) as usize).collect();
    for (reduction, name) in [(Reduction::Mean, "mean"), (Reduction::Sum, "sum")] {
        let inputs = layouts(&ALL2, &[n, c], Dom::Any, &mut rng, &format!("labels {labels:?}, reduction {name}"));
        let l = labels.clone();
        single(out, "cross_entropy", inputs, move |x| x.cross_entropy(&l, reduction));
    }
}

fn index_cases(out: &mut Vec<AuditCase>) {
    let mut rng = rng_for("index", 0);
    let s2 = dims(&mut rng, 2, 2, 5);
    let s4 = dims(&mut rng, 4, 2, 3);
    single(out, "pad", layouts(&ALL2, &s2, Dom::Any, &mut rng, "pads (1, 2), (0, 3), value 0.5"), |x| {
        x.pad(&[(1, 2), (0, 3)], 0.5)
    });
    single(
        out,
        "pad",
        layouts(&[View::Contiguous, View::Permuted], &s4, Dom::Any, &mut rng, "spatial pads (2, 1), (1, 1)"),
        |x| x.pad(&[(0, 0), (0, 0), (2, 1), (1, 1)], 0.0),
    );

    let (r, c) = (s2[0], s2[1]);
    let any = Dom::Any;
    let parts = vec![
        input(View::Contiguous, &[r, c], any, &mut rng, ""),
        input(View::Transposed, &[r, c + 1], any, &mut rng, ""),
        input(View::Sliced, &[r, 2], any, &mut rng, ""),
        input(View::Broadcast, &[r, 3], any, &mut rng, ""),
    ];
    multi(out, "concat", "axis 1", parts, |v| Var::concat(v, 1));
    let parts = vec![
        input(View::Sliced, &[2, c], any, &mut rng, ""),
        input(View::Broadcast, &[3, c], any, &mut rng, ""),
        input(View::Contiguous, &[r, c], any, &mut rng, ""),
        input(View::Transposed, &[1, c], any, &mut rng, ""),
    ];
    multi(out, "concat", "axis 0", parts, |v| Var::concat(v, 0));
    let x = tensor(any, &[1, c], &mut rng);
    out.push(AuditCase::gradcheck(
        "concat",
        format!("axis 0: a broadcast [1, {c}]→[{r}, {c}] and itself"),
        vec![x],
        default(),
        move |_, v| {
            let b = v[0].broadcast_to(&[r, c]);
            Var::concat(&[b, v[0]], 0)
        },
    ));
    for axis in [0, 1, 2] {
        let parts = layouts(&ALL2, &s2, any, &mut rng, "");
        multi(out, "stack", &format!("axis {axis}"), parts, move |v| Var::stack(v, axis));
    }

    let idx = vec![r - 1, 0, r - 1, 1];
    let i2 = idx.clone();
    single(
        out,
        "index_select",
        layouts(&ALL2, &s2, Dom::Any, &mut rng, &format!("axis 0, indices {idx:?} (repeats)")),
        move |x| x.index_select(0, &i2),
    );
    let cidx = vec![c - 1, c - 1, 0];
    let c2 = cidx.clone();
    single(
        out,
        "index_select",
        layouts(&ALL3, &[2, 3, c], Dom::Any, &mut rng, &format!("axis 2, indices {cidx:?}")),
        move |x| x.index_select(2, &c2),
    );

    // gather along axis 1 with an index of shape [r, 3] (repeats allowed) and along axis 0.
    let g1: Vec<usize> = (0..r * 3).map(|i| (i * 5 + 1) % c).collect();
    let g1b = g1.clone();
    single(
        out,
        "gather",
        layouts(&ALL2, &s2, Dom::Any, &mut rng, &format!("axis 1, index {g1:?} of shape [{r}, 3]")),
        move |x| x.gather(1, &g1b, &[r, 3]),
    );
    let g0: Vec<usize> = (0..2 * c).map(|i| (i * 3 + 2) % r).collect();
    let g0b = g0.clone();
    single(
        out,
        "gather",
        layouts(&ALL2, &s2, Dom::Any, &mut rng, &format!("axis 0, index {g0:?} of shape [2, {c}]")),
        move |x| x.gather(0, &g0b, &[2, c]),
    );
}

/// A convolution case: input shape, input layout, weight shape (the weight is passed as a
/// transposed view), whether there is a bias, parameters.
type ConvSpec<P> = ([usize; 4], View, [usize; 4], bool, P);

fn conv_desc(p: &Conv2dParams) -> String {
    format!("stride {:?}, padding {:?}, dilation {:?}, groups {}", p.stride, p.padding, p.dilation, p.groups)
}

/// A convolution-like op `f(x, W, b, p)` on each spec; `bias_len` gives the bias length.
fn conv_family<P, F>(
    out: &mut Vec<AuditCase>,
    op: &'static str,
    specs: Vec<ConvSpec<P>>,
    bias_len: impl Fn([usize; 4], P) -> usize,
    desc: impl Fn(&P) -> String,
    f: F,
) where
    P: Copy + Send + Sync + 'static,
    F: for<'t> Fn(&Var<'t, f64>, &Var<'t, f64>, Option<&Var<'t, f64>>, P) -> Var<'t, f64> + Send + Sync + 'static,
{
    let f = Arc::new(f);
    let mut rng = rng_for(op, 0);
    for (xs, view, ws, bias, p) in specs {
        let x = input(view, &xs, Dom::Any, &mut rng, "");
        let mut inputs = vec![x.value, make(View::Transposed, &ws, Dom::Any, &mut rng)];
        if bias {
            inputs.push(tensor(Dom::Any, &[bias_len(ws, p)], &mut rng));
        }
        let b = if bias { "" } else { ", no bias" };
        let desc = format!("{}, weight transposed view {ws:?}{b}; {}", x.desc, desc(&p));
        let (g, target) = (Arc::clone(&f), x.target);
        out.push(AuditCase::gradcheck(op, desc, inputs, default(), move |_, v| {
            g(&bcast(&v[0], &target), &v[1], v.get(2), p)
        }));
    }
}

fn conv_cases(out: &mut Vec<AuditCase>) {
    use View::{Broadcast, Contiguous, Permuted, Sliced, Transposed};
    let c = Conv2dParams::new;
    let specs = vec![
        ([2, 3, 5, 6], Contiguous, [4, 3, 3, 3], true, c().padding(1)),
        ([1, 4, 7, 7], Contiguous, [6, 2, 3, 2], true, c().stride(2).padding2([1, 0]).groups(2)),
        ([2, 2, 7, 6], Contiguous, [3, 2, 3, 3], false, c().dilation(2).padding(2)),
        // depthwise, and depthwise with two filters per channel
        ([2, 4, 5, 5], Contiguous, [4, 1, 3, 3], true, c().padding(1).groups(4)),
        ([1, 3, 5, 5], Contiguous, [6, 1, 3, 3], true, c().groups(3)),
        ([1, 3, 9, 8], Contiguous, [2, 3, 3, 2], true, c().stride2([2, 3]).padding2([2, 1]).dilation2([1, 2])),
        // 1×1 kernel (the engine reads the input in place)
        ([2, 3, 4, 4], Contiguous, [5, 3, 1, 1], true, c()),
        ([2, 3, 6, 5], Permuted, [4, 3, 3, 3], true, c().stride(2).padding(1)),
        ([1, 4, 5, 4], Sliced, [2, 2, 2, 3], true, c().padding(1).groups(2)),
        ([3, 2, 5, 5], Broadcast, [2, 2, 3, 3], true, c().padding(1)),
    ];
    conv_family(out, "conv2d", specs, |ws, _| ws[0], conv_desc, |x, w, b, p| x.conv2d(w, b, p));
    // A bias that is itself a broadcast view of one value.
    let mut rng = rng_for("conv2d", 1);
    let (x, w, b) = (
        tensor(Dom::Any, &[1, 2, 4, 4], &mut rng),
        tensor(Dom::Any, &[3, 2, 2, 2], &mut rng),
        tensor(Dom::Any, &[1], &mut rng),
    );
    out.push(AuditCase::gradcheck(
        "conv2d",
        "contiguous [1, 2, 4, 4], weight [3, 2, 2, 2], bias broadcast [1]→[3]",
        vec![x, w, b],
        default(),
        |_, v| v[0].conv2d(&v[1], Some(&v[2].broadcast_to(&[3])), Conv2dParams::new()),
    ));

    let ct = ConvTranspose2dParams::new;
    let specs = vec![
        ([2, 4, 4, 4], Contiguous, [4, 3, 3, 3], true, ct().padding(1)),
        ([1, 4, 3, 4], Contiguous, [4, 1, 3, 3], true, ct().stride(2).padding(1).output_padding(1).groups(2)),
        ([2, 2, 3, 3], Permuted, [2, 3, 4, 4], true, ct().stride(2).padding(1)),
        ([1, 3, 3, 3], Contiguous, [3, 2, 3, 2], true, ct().stride2([2, 3]).padding2([1, 0]).output_padding2([1, 2])),
        ([1, 2, 4, 4], Sliced, [2, 2, 3, 3], false, ct().dilation(2).padding(2)),
        // output_padding ≥ stride (allowed because dilation > stride): the input gradient is
        // the convolution of g cropped to the input's size
        ([1, 2, 4, 3], Contiguous, [2, 3, 3, 3], true, ct().dilation(2).output_padding(1)),
        ([2, 3, 3, 3], Contiguous, [3, 1, 3, 3], true, ct().stride(2).groups(3)),
        ([2, 2, 3, 3], Broadcast, [2, 2, 3, 3], true, ct().stride(2)),
    ];
    let ct_desc =
        |p: &ConvTranspose2dParams| format!("{}, output_padding {:?}", conv_desc(&p.as_conv()), p.output_padding);
    conv_family(
        out,
        "conv_transpose2d",
        specs,
        |ws, p| ws[1] * p.groups,
        ct_desc,
        |x, w, b, p| x.conv_transpose2d(w, b, p),
    );

    let mut rng = rng_for("im2col", 0);
    for (xs, k, p) in [
        ([2, 2, 5, 5], [3, 3], c().padding(1)),
        ([1, 3, 7, 6], [2, 3], c().stride2([2, 1]).dilation2([2, 1]).padding2([0, 1])),
    ] {
        let what = format!("kernel {k:?}, {}", conv_desc(&p));
        let inputs = layouts(&[Contiguous, Permuted, Sliced, Broadcast], &xs, Dom::Any, &mut rng, &what);
        single(out, "im2col", inputs, move |x| x.im2col(k, p));
        let oh = p.output_hw([xs[2], xs[3]], k).expect("valid geometry");
        let cs = [xs[0], xs[1] * k[0] * k[1], oh[0] * oh[1]];
        let inputs = layouts(&[Contiguous, Transposed, Sliced, Broadcast], &cs, Dom::Any, &mut rng, &what);
        single(out, "col2im", inputs, move |x| x.col2im(xs, k, p));
    }
}

fn pool_cases(out: &mut Vec<AuditCase>) {
    let mut rng = rng_for("pool", 0);
    let pools = [
        ("2×2, stride 2", [2, 3, 6, 5], View::Contiguous, Pool2dParams::new(2)),
        ("3×3, stride 2, padding 1", [2, 2, 7, 6], View::Permuted, Pool2dParams::new(3).stride(2).padding(1)),
        (
            "3×2, stride (1, 2), padding (1, 0)",
            [1, 3, 6, 6],
            View::Sliced,
            Pool2dParams::new2([3, 2]).stride2([1, 2]).padding2([1, 0]),
        ),
        (
            "3×3, stride 1 (overlapping windows), padding 1",
            [1, 2, 5, 5],
            View::Contiguous,
            Pool2dParams::new(3).stride(1).padding(1),
        ),
        ("2×2, stride 1", [3, 2, 4, 4], View::Broadcast, Pool2dParams::new(2).stride(1)),
    ];
    for (what, xs, view, p) in pools {
        single(out, "max_pool2d", layouts(&[view], &xs, Dom::Distinct, &mut rng, what), move |x| x.max_pool2d(p));
        for include in [true, false] {
            let p = p.count_include_pad(include);
            let inputs = layouts(&[view], &xs, Dom::Any, &mut rng, &format!("{what}, count_include_pad {include}"));
            single(out, "avg_pool2d", inputs, move |x| x.avg_pool2d(p));
        }
    }
    let xs = [2, 3, 4, 5];
    let inputs =
        layouts(&[View::Contiguous, View::Permuted, View::Sliced, View::Broadcast], &xs, Dom::Any, &mut rng, "");
    single(out, "global_avg_pool2d", inputs, |x| x.global_avg_pool2d());
    let x = tensor(Dom::Any, &[2, 3, 1, 1], &mut rng);
    out.push(AuditCase::gradcheck(
        "global_avg_pool2d",
        "broadcast [2, 3, 1, 1]→[2, 3, 4, 5]",
        vec![x],
        default(),
        |_, v| v[0].broadcast_to(&[2, 3, 4, 5]).global_avg_pool2d(),
    ));
}

/// Every audit case of the built-in ops of this crate.
pub fn cases() -> Vec<AuditCase> {
    let mut out = Vec::new();
    elementwise_cases(&mut out);
    reduction_cases(&mut out);
    shape_cases(&mut out);
    matmul_cases(&mut out);
    softmax_cases(&mut out);
    index_cases(&mut out);
    conv_cases(&mut out);
    pool_cases(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn views_have_the_logical_shape_and_layout() {
        let mut rng = Rng::new(1);
        for view in ALL3 {
            let x = input(view, &[2, 3, 4], Dom::Any, &mut rng, "");
            let t = &x.value;
            assert!(!t.layout().has_aliasing());
            if view == View::Broadcast {
                assert_eq!(t.shape(), &[1, 3, 4]);
                assert_eq!(x.target.as_deref(), Some(&[2, 3, 4][..]));
                assert_eq!(x.desc, "broadcast [1, 3, 4]→[2, 3, 4]");
            } else {
                assert_eq!(t.shape(), &[2, 3, 4]);
                assert_eq!(t.is_contiguous(), view == View::Contiguous, "{view:?}");
                assert!(x.target.is_none());
            }
        }
    }

    #[test]
    fn domains_keep_their_margins() {
        let mut rng = Rng::new(2);
        let v = values(Dom::Away(&[-0.3, 0.3]), 1000, &mut rng);
        assert!(v.iter().all(|x| (x.abs() - 0.3).abs() >= MARGIN));
        let mut d = values(Dom::Distinct, 1000, &mut rng);
        d.sort_by(f64::total_cmp);
        assert!(d.windows(2).all(|w| w[1] - w[0] >= 0.025));
        let a = values(Dom::Grid(0.0), 100, &mut rng);
        let b = values(Dom::Grid(0.05), 100, &mut rng);
        assert!(a.iter().all(|x| b.iter().all(|y| (x - y).abs() >= MARGIN - 1e-12)));
    }

    #[test]
    fn json_escapes_and_nulls() {
        assert_eq!(json_str("a\"b\\c\n→"), "\"a\\\"b\\\\c\\n→\"");
        assert_eq!(json_f64(f64::INFINITY), "null");
        assert_eq!(json_f64(1.5e-9), "1.5e-9");
    }
}
