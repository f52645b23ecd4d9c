//! `sparsegrad experiment NAME`: runs (a shard of) an experiment's grid, or merges shard
//! outputs, or prints a SLURM script for the grid.

use std::path::PathBuf;

use super::{fail, set_threads};
use crate::cli::{ExperimentArgs, USAGE};
use crate::experiments::{self, Common};
use crate::report::grid::{slurm_script, Shard};

/// Exit status after Ctrl-C (the finished cells are kept).
const INTERRUPTED: i32 = 130;

pub fn run(a: &ExperimentArgs) -> i32 {
    let merging = a.name == "merge";
    let name = if merging {
        match &a.experiment {
            Some(n) => n.clone(),
            None => return fail("experiment merge", "--experiment NAME is required", USAGE),
        }
    } else {
        a.name.clone()
    };
    let Some(e) = experiments::by_name(&name, a.quick) else {
        let known = experiments::NAMES.join(", ");
        return fail("experiment", format!("unknown experiment '{name}' (known: {known}, merge)"), USAGE);
    };
    let mut e: Box<dyn experiments::Experiment> = match (&a.checkpoint, name.as_str()) {
        (None, _) => e,
        (Some(p), "dcea-denoise") => {
            let mut d = experiments::dcea_denoise::DceaDenoise::new(a.quick);
            d.checkpoint = Some(p.clone());
            Box::new(d)
        }
        (Some(_), _) => return fail("experiment", format!("--checkpoint is for dcea-denoise, not {name}"), USAGE),
    };
    if let Err(msg) = experiments::apply_sets(e.as_mut(), &a.set) {
        return fail("experiment", msg, USAGE);
    }
    let overrides =
        experiments::Overrides { dataset: a.dataset.clone(), unlabelled_weight: a.unlabelled_weight, budget: a.budget };
    if let Err(msg) = e.configure(&overrides) {
        return fail("experiment", msg, USAGE);
    }
    if !merging && !a.dirs.is_empty() {
        return fail("experiment", format!("unexpected argument '{}'", a.dirs[0].display()), USAGE);
    }
    let shard = match a.shard.as_deref().map(str::parse::<Shard>).transpose() {
        Ok(s) => s.unwrap_or_default(),
        Err(msg) => return fail("experiment", msg, USAGE),
    };
    let mut default_dir = match &a.checkpoint {
        // Cells of a checkpoint's evaluation must not mix with the trained runs' cells.
        Some(p) => format!("{name}-{}", p.file_stem().map_or("checkpoint".into(), |s| s.to_string_lossy())),
        None => name.clone(),
    };
    if let Some(d) = &a.dataset {
        default_dir += &format!("-{d}");
    }
    if a.unlabelled_weight.is_some_and(|g| g > 0.0) {
        default_dir += "-semi";
    }
    if let Some(x) = a.budget {
        default_dir += &format!("-x{x}");
    }
    for set in &a.set {
        let tag: String = set
            .chars()
            .filter(|&c| c != '=')
            .map(|c| if c.is_ascii_alphanumeric() || ".-".contains(c) { c } else { '_' })
            .collect();
        default_dir += &format!("-{tag}");
    }
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("results").join(default_dir));
    let common =
        Common { out: out.clone(), quick: a.quick, shard, seed: a.seed, data_dir: a.data_dir.clone(), quiet: false };
    if let Some(n) = a.emit_slurm {
        if n == 0 {
            return fail("experiment", "--emit-slurm needs at least 1 shard", USAGE);
        }
        // The options of every shard and of the merge.
        let mut cmd = format!(" --seed {}", a.seed);
        if a.quick {
            cmd += " --quick";
        }
        if let Some(d) = &a.data_dir {
            cmd += &format!(" --data-dir {}", d.display());
        }
        if let Some(p) = &a.checkpoint {
            cmd += &format!(" --checkpoint {}", p.display());
        }
        if let Some(d) = &a.dataset {
            cmd += &format!(" --dataset {d}");
        }
        if let Some(g) = a.unlabelled_weight {
            cmd += &format!(" --unlabelled-weight {g}");
        }
        if let Some(x) = a.budget {
            cmd += &format!(" --budget {x}");
        }
        for set in &a.set {
            cmd += &format!(" --set '{set}'");
        }
        let cells = e.grid(&common).len();
        crate::out::write_str(&format!(
            "# {cells} cells in the grid\n{}",
            slurm_script(&name, &cmd, n, &out.display().to_string(), 120)
        ));
        return 0;
    }
    if let Err(msg) = set_threads(a.threads) {
        return fail("experiment", msg, 1);
    }
    if merging {
        if a.dirs.is_empty() {
            return fail("experiment merge", "give the shard output directories", USAGE);
        }
        let grid = e.grid(&common);
        return match experiments::write_report(e.as_ref(), &grid, &a.dirs, &out, false) {
            Ok(()) => 0,
            Err(msg) => fail("experiment merge", msg, 1),
        };
    }
    if let Err(err) = ctrlc::set_handler(|| {
        if experiments::interrupted() {
            std::process::exit(INTERRUPTED);
        }
        eprintln!("\ninterrupt: finishing the current cell (Ctrl-C again to exit at once); rerun to resume");
        experiments::request_stop();
    }) {
        eprintln!("warning: no Ctrl-C handler ({err})");
    }
    match experiments::run(e.as_ref(), &common) {
        Ok(()) => 0,
        Err(msg) if experiments::interrupted() => fail("experiment", msg, INTERRUPTED),
        Err(msg) => fail("experiment", msg, 1),
    }
}
