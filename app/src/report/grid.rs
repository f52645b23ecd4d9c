//! The grid of an experiment (networks × label counts × trials × λ × σ …), split into shards
//! without a scheduler: each cell has a stable index and id, `--shard i/n` runs the cells
//! whose index is `i` modulo `n`, every finished cell is written as one JSON file
//! (`OUT/cells/<id>.json`, atomically), and a rerun skips the cells already written. Merging
//! any set of shard outputs reads the cell files back; the tables and figures are built from
//! the cells in index order, so they come out the same, byte for byte, however the grid was
//! split.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// One cell of a grid: its index in the full grid, a file-name-safe id, and its parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    pub index: usize,
    pub id: String,
    pub params: Vec<(String, String)>,
}

impl Cell {
    /// A cell whose id is built from its parameters (`net=lenet,k=10,trial=0` →
    /// `net-lenet_k-10_trial-0`).
    pub fn new(index: usize, params: &[(&str, String)]) -> Cell {
        let id = params
            .iter()
            .map(|(k, v)| format!("{k}-{v}"))
            .collect::<Vec<_>>()
            .join("_")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '-' })
            .collect();
        Cell { index, id, params: params.iter().map(|(k, v)| (k.to_string(), v.clone())).collect() }
    }

    /// The parameter `key`. **Panics** if the cell has none (a bug in the experiment).
    #[track_caller]
    pub fn get(&self, key: &str) -> &str {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("cell {} has no parameter {key}", self.id))
    }
}

/// `--shard i/n`: this process runs the cells with `index % n == i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub i: usize,
    pub n: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { i: 0, n: 1 }
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Shard, String> {
        let (a, b) = s.split_once('/').ok_or_else(|| format!("--shard takes i/n (e.g. 0/3), got '{s}'"))?;
        let i: usize = a.trim().parse().map_err(|_| format!("--shard: '{a}' is not a shard index"))?;
        let n: usize = b.trim().parse().map_err(|_| format!("--shard: '{b}' is not a shard count"))?;
        if n == 0 || i >= n {
            return Err(format!("--shard {s}: need 0 ≤ i < n"));
        }
        Ok(Shard { i, n })
    }
}

impl Shard {
    pub fn owns(&self, cell: &Cell) -> bool {
        cell.index % self.n == self.i
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, written,
/// flushed to disk, then renamed over `path` (and the directory synced), so a reader never
/// sees a partial file and an interrupted run leaves the old one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The file of a finished cell under an output directory.
pub fn cell_path(out: &Path, cell: &Cell) -> PathBuf {
    out.join("cells").join(format!("{}.json", cell.id))
}

/// The result of `cell` if it is already in `out` (a finished cell is not recomputed).
/// A file that does not parse, or that belongs to other parameters, is an error naming it.
pub fn load_cell(out: &Path, cell: &Cell) -> Result<Option<Value>, String> {
    let p = cell_path(out, cell);
    let Ok(text) = std::fs::read_to_string(&p) else { return Ok(None) };
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{}: not a cell result: {e}", p.display()))?;
    check_params(&p, &v, cell)?;
    Ok(Some(v))
}

fn check_params(p: &Path, v: &Value, cell: &Cell) -> Result<(), String> {
    let params =
        v.get("params").and_then(|x| x.as_object()).ok_or_else(|| format!("{}: no 'params' object", p.display()))?;
    for (k, want) in &cell.params {
        let got = params.get(k).and_then(|x| x.as_str());
        if got != Some(want.as_str()) {
            return Err(format!(
                "{}: parameter {k} is {got:?}, the grid says '{want}' (a different grid in the same --out?)",
                p.display()
            ));
        }
    }
    Ok(())
}

/// Writes the result of `cell` (`result` is an object of measured values) under `out`.
pub fn save_cell(out: &Path, cell: &Cell, result: Value) -> Result<Value, String> {
    let params: serde_json::Map<String, Value> =
        cell.params.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    let v = serde_json::json!({ "index": cell.index, "id": cell.id, "params": params, "result": result });
    let p = cell_path(out, cell);
    let text = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())? + "\n";
    write_atomic(&p, text.as_bytes()).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(v)
}

/// The finished cells of `grid` found in any of `dirs` (shard outputs), by cell index.
/// The same cell in two directories must hold the same result; otherwise it is an error
/// naming both files.
pub fn collect(dirs: &[PathBuf], grid: &[Cell]) -> Result<BTreeMap<usize, Value>, String> {
    let mut found: BTreeMap<usize, (PathBuf, Value)> = BTreeMap::new();
    for d in dirs {
        for cell in grid {
            let p = cell_path(d, cell);
            if let Some(v) = load_cell(d, cell)? {
                if let Some((q, w)) = found.get(&cell.index) {
                    if w.get("result") != v.get("result") {
                        return Err(format!("cell {} differs between {} and {}", cell.id, q.display(), p.display()));
                    }
                } else {
                    found.insert(cell.index, (p, v));
                }
            }
        }
    }
    Ok(found.into_iter().map(|(k, (_, v))| (k, v)).collect())
}

/// A table of results: printed aligned, written as CSV and JSON.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: &str, columns: &[&str]) -> Table {
        Table { title: title.to_string(), columns: columns.iter().map(|c| c.to_string()).collect(), rows: vec![] }
    }

    pub fn push(&mut self, row: Vec<String>) {
        assert_eq!(
            row.len(),
            self.columns.len(),
            "Table::push: {} values for {} columns",
            row.len(),
            self.columns.len()
        );
        self.rows.push(row);
    }

    /// Aligned text: the title, a header, a rule, the rows.
    pub fn to_text(&self) -> String {
        let mut w: Vec<usize> = self.columns.iter().map(|c| c.chars().count()).collect();
        for r in &self.rows {
            for (k, v) in r.iter().enumerate() {
                w[k] = w[k].max(v.chars().count());
            }
        }
        let line = |cells: &[String]| -> String {
            cells
                .iter()
                .enumerate()
                .map(|(k, c)| format!("{c:<width$}", width = w[k]))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        };
        let mut s = String::new();
        if !self.title.is_empty() {
            let _ = writeln!(s, "{}", self.title);
        }
        let _ = writeln!(s, "{}", line(&self.columns));
        let _ = writeln!(s, "{}", w.iter().map(|n| "-".repeat(*n)).collect::<Vec<_>>().join("  "));
        for r in &self.rows {
            let _ = writeln!(s, "{}", line(r));
        }
        s
    }

    pub fn to_csv(&self) -> String {
        let field = |f: &str| {
            if f.contains([',', '"', '\n']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f.to_string()
            }
        };
        let mut s = self.columns.iter().map(|c| field(c)).collect::<Vec<_>>().join(",") + "\n";
        for r in &self.rows {
            s += &(r.iter().map(|c| field(c)).collect::<Vec<_>>().join(",") + "\n");
        }
        s
    }

    pub fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                Value::Object(self.columns.iter().cloned().zip(r.iter().map(|v| Value::String(v.clone()))).collect())
            })
            .collect();
        serde_json::json!({ "title": self.title, "columns": self.columns, "rows": rows })
    }
}

/// Mean and sample standard deviation (0 for fewer than two values).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    if v.len() < 2 {
        return (m, 0.0);
    }
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64;
    (m, var.sqrt())
}

/// A SLURM job-array script: one task per shard running `sparsegrad experiment EXPERIMENT
/// OPTIONS --shard $i/n --out OUT/shard-$i`, then the merge (`sparsegrad experiment merge
/// --experiment EXPERIMENT OPTIONS`) as a job that depends on the array (`sbatch
/// --dependency=afterok`). The merge gets the same `options` (budget, `--set`, data set …):
/// it rebuilds the grid from them, and refuses shards computed with another configuration.
pub fn slurm_script(experiment: &str, options: &str, shards: usize, out: &str, minutes: usize) -> String {
    let n = shards.max(1);
    format!(
        "#!/bin/bash\n\
         # Runs `sparsegrad experiment {experiment}` as {n} shards on a SLURM cluster, then merges them.\n\
         # Submit with: bash this-script.sh  (it calls sbatch twice: the array, then the merge)\n\
         set -euo pipefail\n\
         OUT={out}\n\
         mkdir -p \"$OUT\"\n\
         array=$(sbatch --parsable --job-name=sg-{experiment} --array=0-{last} --cpus-per-task=2 \\\n\
         \x20   --time={minutes} --output=\"$OUT/slurm-%A_%a.log\" --wrap=\"sparsegrad experiment {experiment}{options} --shard \\$SLURM_ARRAY_TASK_ID/{n} --out $OUT/shard-\\$SLURM_ARRAY_TASK_ID\")\n\
         sbatch --job-name=sg-{experiment}-merge --dependency=afterok:$array --time=10 \\\n\
         \x20   --output=\"$OUT/slurm-merge-%j.log\" --wrap=\"sparsegrad experiment merge --experiment {experiment}{options} --out $OUT/merged $OUT/shard-*\"\n\
         echo \"submitted array $array ({n} shards) and its merge; results in $OUT/merged\"\n",
        last = n - 1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_grid() {
        let grid: Vec<Cell> = (0..10).map(|i| Cell::new(i, &[("trial", i.to_string())])).collect();
        let shards: Vec<Shard> = (0..3).map(|i| format!("{i}/3").parse().unwrap()).collect();
        for c in &grid {
            assert_eq!(shards.iter().filter(|s| s.owns(c)).count(), 1);
        }
        assert!("3/3".parse::<Shard>().is_err());
        assert!("1-3".parse::<Shard>().unwrap_err().contains("i/n"));
    }

    #[test]
    fn cells_round_trip_and_a_foreign_cell_is_refused() {
        let dir = std::env::temp_dir().join(format!("sg-grid-{}", std::process::id()));
        let cell = Cell::new(3, &[("net", "lenet".into()), ("k", "10".into())]);
        assert_eq!(cell.id, "net-lenet_k-10");
        assert!(load_cell(&dir, &cell).unwrap().is_none());
        save_cell(&dir, &cell, serde_json::json!({"acc": 0.5})).unwrap();
        assert_eq!(load_cell(&dir, &cell).unwrap().unwrap()["result"]["acc"], 0.5);
        let mut other = cell.clone();
        other.params[1].1 = "10".into();
        other.params[0].1 = "lenet".into();
        assert!(load_cell(&dir, &other).is_ok());
        let mut wrong = cell.clone();
        wrong.params.push(("trial".into(), "0".into()));
        assert!(load_cell(&dir, &wrong).unwrap_err().contains("trial"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn table_formats() {
        let mut t = Table::new("T", &["a", "b"]);
        t.push(vec!["1".into(), "x,y".into()]);
        assert_eq!(t.to_csv(), "a,b\n1,\"x,y\"\n");
        assert_eq!(t.to_text(), "T\na  b\n-  ---\n1  x,y\n");
        assert_eq!(mean_std(&[1.0, 3.0]), (2.0, 2f64.sqrt()));
    }
}
