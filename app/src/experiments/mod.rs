//! `sparsegrad experiment NAME`: the papers' claims tested, one command each.
//!
//! Every experiment is a grid of cells ([`crate::report::grid`]): it lists its cells, runs the
//! ones this shard owns and has not finished (one JSON file per finished cell under
//! `--out/cells/`, so an interrupted run resumes where it stopped), and — when it ran the
//! whole grid, or in `sparsegrad experiment merge` — builds its tables (printed, and written
//! as CSV and JSON) and figures (SVG) from the cells in index order. The same command gives
//! the same table, bit for bit: every cell is seeded from `--seed` and its own parameters,
//! and the kernels' results do not depend on the thread count.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;

use crate::report::grid::{self, Cell, Shard, Table};

/// Options every experiment takes.
#[derive(Clone, Debug)]
pub struct Common {
    /// Where cells, tables and figures go.
    pub out: PathBuf,
    /// The smoke-test budget (minutes), as CI runs it.
    pub quick: bool,
    pub shard: Shard,
    pub seed: u64,
    /// The root of the data sets (`../shared/data` layout); `None`: the default search.
    pub data_dir: Option<PathBuf>,
    /// Print nothing but the tables.
    pub quiet: bool,
}

/// The command line's changes to an experiment's default configuration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    /// `--dataset NAME`: the data set (or the training images, for `dcea-denoise`).
    pub dataset: Option<String>,
    /// `--unlabelled-weight γ`: the semi-supervised term's weight (`limited-supervision`).
    pub unlabelled_weight: Option<f64>,
    /// `--budget X`: every training step count multiplied by `X` (at least one step).
    pub budget: Option<f64>,
}

impl Overrides {
    /// An error for each option given that is not in `supported` (`"dataset"`,
    /// `"unlabelled-weight"`, `"budget"`).
    pub fn reject(&self, name: &str, supported: &[&str]) -> Result<(), String> {
        let given = [
            ("dataset", self.dataset.is_some()),
            ("unlabelled-weight", self.unlabelled_weight.is_some()),
            ("budget", self.budget.is_some()),
        ];
        for (opt, set) in given {
            if set && !supported.contains(&opt) {
                return Err(format!("--{opt} does not apply to {name}"));
            }
        }
        if let Some(x) = self.budget {
            if !(x.is_finite() && x > 0.0) {
                return Err(format!("--budget {x}: expected a positive factor"));
            }
        }
        if let Some(g) = self.unlabelled_weight {
            if !(g.is_finite() && g >= 0.0) {
                return Err(format!("--unlabelled-weight {g}: expected a finite weight ≥ 0"));
            }
        }
        Ok(())
    }

    /// `steps × --budget`, rounded, at least 1 (`steps` without `--budget`).
    pub fn steps(&self, steps: usize) -> usize {
        self.budget.map_or(steps, |x| ((steps as f64 * x).round() as usize).max(1))
    }
}

/// A configuration field that `--set FIELD=VALUE` can change: parsed from the command line's
/// text and shown in the same syntax. Counts are ≥ 1, reals finite, lists comma-separated and
/// never empty; an optional count is a number or `all` (`none`).
pub trait FieldValue: Sized {
    fn parse_field(text: &str) -> Result<Self, String>;
    fn show(&self) -> String;
    /// Whether every number in the value is above 0 (checked for the fields an experiment
    /// lists as `positive` in [`set_fields!`]: a learning rate, a Poisson peak).
    fn positive(&self) -> bool {
        true
    }
}

impl FieldValue for usize {
    fn parse_field(text: &str) -> Result<Self, String> {
        match text.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(format!("'{text}' is not a count ≥ 1")),
        }
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

/// Every real field of the experiments is a rate, a weight, a noise level, a threshold or a
/// peak: finite and not negative (`-0` is read as 0).
impl FieldValue for f64 {
    fn parse_field(text: &str) -> Result<Self, String> {
        match text.trim().parse::<f64>() {
            Ok(x) if x.is_finite() && x >= 0.0 => Ok(x + 0.0),
            _ => Err(format!("'{text}' is not a finite number ≥ 0")),
        }
    }
    fn show(&self) -> String {
        self.to_string()
    }
    fn positive(&self) -> bool {
        *self > 0.0
    }
}

impl FieldValue for bool {
    fn parse_field(text: &str) -> Result<Self, String> {
        match text.trim() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(format!("'{text}' is neither true nor false")),
        }
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl FieldValue for String {
    fn parse_field(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err("an empty name".into());
        }
        Ok(t.to_string())
    }
    fn show(&self) -> String {
        self.clone()
    }
}

/// `all` or `none` is `None` (the whole split, the whole image); otherwise a count.
impl FieldValue for Option<usize> {
    fn parse_field(text: &str) -> Result<Self, String> {
        match text.trim() {
            "all" | "none" => Ok(None),
            t => usize::parse_field(t).map(Some).map_err(|e| format!("{e} (or 'all')")),
        }
    }
    fn show(&self) -> String {
        self.map_or("all".into(), |n| n.to_string())
    }
}

/// `key:value` (a network option).
impl FieldValue for (String, String) {
    fn parse_field(text: &str) -> Result<Self, String> {
        match text.split_once(':') {
            Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => Ok((k.trim().into(), v.trim().into())),
            _ => Err(format!("'{text}' is not key:value")),
        }
    }
    fn show(&self) -> String {
        format!("{}:{}", self.0, self.1)
    }
}

impl<T: FieldValue> FieldValue for Vec<T> {
    fn parse_field(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Err("an empty list".into());
        }
        text.split(',').map(T::parse_field).collect()
    }
    fn show(&self) -> String {
        self.iter().map(T::show).collect::<Vec<_>>().join(",")
    }
    fn positive(&self) -> bool {
        self.iter().all(T::positive)
    }
}

/// `Experiment::set` for the listed fields of `$e`: parses `$value` into the field named
/// `$field`; an unknown name is an error listing every field with its current value. Fields
/// listed after `positive:` refuse 0 as well (a learning rate, a peak).
macro_rules! set_fields {
    ($e:ident, $field:expr, $value:expr; $($name:ident),+ $(,)? $(; positive: $($pos:ident),+)?) => {{
        use $crate::experiments::FieldValue;
        let positive: &[&str] = &[$($(stringify!($pos)),+)?];
        match $field {
            $(stringify!($name) => {
                let v = FieldValue::parse_field($value)
                    .map_err(|err| format!("--set {}={}: {err}", stringify!($name), $value))?;
                if positive.contains(&stringify!($name)) && !FieldValue::positive(&v) {
                    return Err(format!("--set {}={}: must be above 0", stringify!($name), $value));
                }
                $e.$name = v;
                Ok(())
            })+
            other => {
                let fields = [$(format!("{}={}", stringify!($name), $e.$name.show())),+];
                Err(format!("--set {other}=…: {} has no field '{other}'; its fields (current values): {}", $e.name(), fields.join(" ")))
            }
        }
    }};
}
pub(crate) use set_fields;

/// Splits each `FIELD=VALUE` of `--set` and applies it to `e` in order.
pub fn apply_sets(e: &mut dyn Experiment, sets: &[String]) -> Result<(), String> {
    for s in sets {
        let Some((field, value)) = s.split_once('=') else {
            return Err(format!("--set {s}: expected FIELD=VALUE (e.g. --set trials=5)"));
        };
        e.set(field.trim(), value)?;
    }
    Ok(())
}

/// The file under `--out` recording the configuration its cells were computed with.
pub const CONFIG_FILE: &str = "config.txt";

/// Checks that `out/config.txt`, if there, holds `e`'s configuration (cells computed with
/// another budget or data set must never be mixed into a table); with `record`, writes it
/// when missing. A run records it with its first finished cell, so a run that fails before
/// computing anything (an unknown data set) leaves nothing that refuses the corrected one.
pub fn check_config(e: &dyn Experiment, out: &Path, record: bool) -> Result<(), String> {
    let want = format!("{e:#?}\n");
    let p = out.join(CONFIG_FILE);
    match std::fs::read_to_string(&p) {
        Ok(have) if have == want => Ok(()),
        Ok(have) => Err(format!(
            "{}: these cells were computed with another configuration (another budget, data set or \
             version; use another --out):\n--- there\n{have}--- this run\n{want}",
            p.display()
        )),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && !record => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(out).map_err(|err| format!("{}: {err}", out.display()))?;
            grid::write_atomic(&p, want.as_bytes()).map_err(|err| format!("{}: {err}", p.display()))
        }
        Err(err) => Err(format!("{}: {err}", p.display())),
    }
}

/// What an experiment's report holds: tables and figures, each with a file stem.
#[derive(Default)]
pub struct Report {
    pub tables: Vec<(String, Table)>,
    /// `(file stem, SVG text)`.
    pub figures: Vec<(String, String)>,
    /// Lines printed after the tables (verdict hints, the paper's numbers).
    pub notes: Vec<String>,
}

/// An experiment: its grid, how to compute one cell, and how to report finished cells.
pub trait Experiment: std::fmt::Debug {
    /// The command's name (`limited-supervision`).
    fn name(&self) -> &'static str;
    /// Applies the command line's `--dataset`, `--unlabelled-weight` and `--budget` to the
    /// configuration; an option the experiment has no use for is an error naming it.
    fn configure(&mut self, o: &Overrides) -> Result<(), String> {
        o.reject(self.name(), &[])
    }
    /// `--set FIELD=VALUE`: changes one field of the configuration (before [`configure`](Self::configure),
    /// so `--budget` scales a step count set this way). An unknown field is an error that lists
    /// the experiment's fields with their values.
    fn set(&mut self, field: &str, value: &str) -> Result<(), String>;
    /// Every cell of the grid, in a fixed order (their indices).
    fn grid(&self, common: &Common) -> Vec<Cell>;
    /// Computes one cell; returns its measured values as a JSON object.
    fn run_cell(&self, cell: &Cell, common: &Common) -> Result<Value, String>;
    /// Tables and figures from the finished cells (`cells[index]` is the saved object with
    /// `params` and `result`); cells may be missing (a partial merge).
    fn report(&self, grid: &[Cell], cells: &BTreeMap<usize, Value>) -> Report;
}

/// Runs the cells of `e` that this shard owns and has not finished, then, if this process
/// ran the whole grid, writes and prints the report.
pub fn run(e: &dyn Experiment, c: &Common) -> Result<(), String> {
    check_config(e, &c.out, false)?;
    let cells = e.grid(c);
    let mine: Vec<&Cell> = cells.iter().filter(|cell| c.shard.owns(cell)).collect();
    let todo: Vec<&Cell> = mine
        .iter()
        .copied()
        .filter(|cell| grid::load_cell(&c.out, cell).map(|v| v.is_none()).unwrap_or(true))
        .collect();
    if !c.quiet {
        eprintln!(
            "{}: {} cells in the grid, {} in shard {}/{}, {} already done; results in {}",
            e.name(),
            cells.len(),
            mine.len(),
            c.shard.i,
            c.shard.n,
            mine.len() - todo.len(),
            c.out.display()
        );
    }
    let start = Instant::now();
    for (k, cell) in todo.iter().enumerate() {
        let t0 = Instant::now();
        if !c.quiet {
            let desc: Vec<String> = cell.params.iter().map(|(a, b)| format!("{a}={b}")).collect();
            eprintln!("[{}/{}] {} …", k + 1, todo.len(), desc.join(" "));
        }
        let result = e.run_cell(cell, c).map_err(|err| format!("cell {}: {err}", cell.id))?;
        grid::save_cell(&c.out, cell, result)?;
        if k == 0 {
            check_config(e, &c.out, true)?;
        }
        if !c.quiet {
            let done = k + 1;
            let per = start.elapsed().as_secs_f64() / done as f64;
            let eta = per * (todo.len() - done) as f64;
            eprintln!("      done in {:.1} s; ETA {}", t0.elapsed().as_secs_f64(), fmt_duration(eta));
        }
        if crate::experiments::interrupted() {
            return Err(format!("interrupted after {} cells; run the same command again to resume", k + 1));
        }
    }
    if c.shard.n == 1 {
        write_report(e, &cells, std::slice::from_ref(&c.out), &c.out, c.quiet)
    } else {
        eprintln!(
            "shard {}/{} done; assemble with: sparsegrad experiment merge --experiment {} --out DIR SHARD_DIRS…",
            c.shard.i,
            c.shard.n,
            e.name()
        );
        Ok(())
    }
}

/// Builds the report of `e` from the cells found in `dirs` and writes it to `out`.
pub fn write_report(
    e: &dyn Experiment,
    grid_cells: &[Cell],
    dirs: &[PathBuf],
    out: &Path,
    quiet: bool,
) -> Result<(), String> {
    for d in dirs {
        if d.join(CONFIG_FILE).is_file() {
            check_config(e, d, false)?;
        }
    }
    let found = grid::collect(dirs, grid_cells)?;
    if found.len() < grid_cells.len() && !quiet {
        eprintln!("{}: {} of {} cells found; the tables leave the rest out", e.name(), found.len(), grid_cells.len());
    }
    let report = e.report(grid_cells, &found);
    std::fs::create_dir_all(out).map_err(|err| format!("{}: {err}", out.display()))?;
    // A merged directory records the configuration of its tables too.
    check_config(e, out, true)?;
    let mut json = serde_json::Map::new();
    for (stem, t) in &report.tables {
        crate::out::write_str(&format!("{}\n", t.to_text()));
        let p = out.join(format!("{stem}.csv"));
        grid::write_atomic(&p, t.to_csv().as_bytes()).map_err(|err| format!("{}: {err}", p.display()))?;
        json.insert(stem.clone(), t.to_json());
    }
    for n in &report.notes {
        crate::out::write_str(&format!("{n}\n"));
    }
    let p = out.join("tables.json");
    let text = serde_json::to_string_pretty(&Value::Object(json)).map_err(|err| err.to_string())? + "\n";
    grid::write_atomic(&p, text.as_bytes()).map_err(|err| format!("{}: {err}", p.display()))?;
    for (stem, svg) in &report.figures {
        let p = out.join(format!("{stem}.svg"));
        grid::write_atomic(&p, svg.as_bytes()).map_err(|err| format!("{}: {err}", p.display()))?;
    }
    if !quiet {
        eprintln!(
            "wrote {} tables (CSV, tables.json) and {} figures (SVG) to {}",
            report.tables.len(),
            report.figures.len(),
            out.display()
        );
    }
    Ok(())
}

pub fn fmt_duration(s: f64) -> String {
    if !s.is_finite() {
        return "?".into();
    }
    let s = s.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s / 60 % 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Asks the running experiment to stop after the current cell (Ctrl-C).
pub fn request_stop() {
    STOP.store(true, std::sync::atomic::Ordering::SeqCst);
}

pub fn interrupted() -> bool {
    STOP.load(std::sync::atomic::Ordering::SeqCst)
}

/// The experiment called `name` (`limited-supervision`, `csc-robustness`,
/// `double-sparsity`, `dcea-denoise`, `spatial-contrasting`) at its default budget or `--quick`; `None` for an unknown name.
pub fn by_name(name: &str, quick: bool) -> Option<Box<dyn Experiment>> {
    match name {
        "limited-supervision" => Some(Box::new(limited_supervision::LimitedSupervision::new(quick))),
        "csc-robustness" => Some(Box::new(csc_robustness::CscRobustness::new(quick))),
        "double-sparsity" => Some(Box::new(double_sparsity::DoubleSparsity::new(quick))),
        "dcea-denoise" => Some(Box::new(dcea_denoise::DceaDenoise::new(quick))),
        "spatial-contrasting" => Some(Box::new(spatial_contrasting::ScExperiment::new(quick))),
        _ => None,
    }
}

/// The names [`by_name`] knows.
pub const NAMES: [&str; 5] =
    ["limited-supervision", "csc-robustness", "double-sparsity", "dcea-denoise", "spatial-contrasting"];

pub mod common;
pub mod csc_robustness;
pub mod dcea_denoise;
pub mod double_sparsity;
pub mod limited_supervision;
pub mod spatial_contrasting;
pub mod train;
