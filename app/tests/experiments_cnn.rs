//! The CNN experiments (csc-robustness, double-sparsity) run end to end on tiny settings on
//! the real CIFAR-100 files: every table (CSV, tables.json) and figure (well-formed SVG) is
//! written, and a rerun recomputes nothing. `cost_per_step` (ignored) measures what the
//! default budgets were sized from.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::Value;
use sparsegrad::experiments::csc_robustness::CscRobustness;
use sparsegrad::experiments::double_sparsity::DoubleSparsity;
use sparsegrad::experiments::{by_name, run, Experiment, NAMES};

mod support;

use support::{common, data_with, run_twice};

/// The data root, or `None` (after `skip_test`) when CIFAR-100 is not staged.
fn data(test: &str) -> Option<PathBuf> {
    data_with(test, &["cifar-100/test_by_class.bin", "cifar-100/train_first250_per_class.bin"], "CIFAR-100")
}

#[test]
fn by_name_knows_every_experiment() {
    for n in NAMES {
        for quick in [false, true] {
            assert_eq!(by_name(n, quick).unwrap().name(), n);
        }
    }
    assert!(by_name("nope", true).is_none());
}

fn tiny_csc() -> CscRobustness {
    let mut e = CscRobustness::new(true);
    e.train_per_class = Some(1);
    e.steps = 2;
    e.batch = 4;
    e.test_per_class = 1;
    e
}

#[test]
fn csc_robustness_quick_grid_end_to_end() {
    let Some(data) = data("csc_robustness_quick_grid_end_to_end") else { return };
    let e = tiny_csc();
    assert_eq!((e.sigmas.len(), e.lambdas.len()), (2, 2));
    let (out, tables) = run_twice(
        &e,
        &data,
        &["accuracy_vs_sigma.csv", "accuracy_vs_sigma.svg", "heatmap_sdnet20.svg", "sweep_sdnet20.csv", "tables.json"],
    );
    // One row per σ; resnet20 one column, sdnet20 three (λ=0.1, best, λ*).
    let s = &tables["accuracy_vs_sigma"];
    assert_eq!(s["rows"].as_array().unwrap().len(), 2, "{s}");
    // The cells hold the full matrices: σ × λ for sdnet20, σ × 1 for resnet20.
    let cell: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("cells").join("net-sdnet20_trial-0.json")).unwrap())
            .unwrap();
    let acc = cell["result"]["accuracy"].as_array().unwrap();
    assert_eq!((acc.len(), acc[0].as_array().unwrap().len()), (2, 2));
    assert_eq!(cell["result"]["test"], 20);
    let cell: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("cells").join("net-resnet20_trial-0.json")).unwrap())
            .unwrap();
    assert_eq!(cell["result"]["accuracy"][0].as_array().unwrap().len(), 1);
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn double_sparsity_quick_grid_end_to_end() {
    let Some(data) = data("double_sparsity_quick_grid_end_to_end") else { return };
    let mut e = DoubleSparsity::new(true);
    e.train_per_class = Some(1);
    e.steps = 2;
    e.batch = 4;
    e.test_per_class = 1;
    e.kernels_shown = 8;
    let (out, tables) = run_twice(
        &e,
        &data,
        &[
            "double_sparsity.csv",
            "kernels_ds-nin-paper.svg",
            "kernels_ds-nin-proximal.svg",
            "kernels_nin.svg",
            "tables.json",
        ],
    );
    let rows = tables["double_sparsity"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    // Trainable parameters at 20 classes: NiN 966,986 + 192·10 (10 more outputs of the last
    // 1×1), DS-NiN 160,010 + 1,930.
    let params: Vec<&str> = rows.iter().map(|r| r["trainable params"].as_str().unwrap()).collect();
    assert_eq!(params, ["968916", "161940", "161940"]);
    std::fs::remove_dir_all(&out).unwrap();
}

/// What one training step (batch 16) and one test image (eval, one σ/λ point) cost, per
/// network: run with `--ignored --nocapture` to size the default budgets.
#[test]
#[ignore]
fn cost_per_step() {
    let Some(data) = data("cost_per_step") else { return };
    let base = std::env::temp_dir().join(format!("sg-cost-{}", std::process::id()));
    for net in ["resnet20", "sdnet20"] {
        let mut e = CscRobustness::new(true);
        e.nets = vec![net.into()];
        e.train_per_class = Some(5);
        e.steps = 10;
        e.batch = 16;
        e.test_per_class = 10;
        e.sigmas = vec![0.0];
        e.lambdas = vec![0.1];
        let c = common(&base.join(net), &data);
        let cell = &e.grid(&c)[0];
        let r = e.run_cell(cell, &c).unwrap();
        let (tr, ev) = (r["train_seconds"].as_f64().unwrap(), r["eval_seconds"].as_f64().unwrap());
        // `classify` also tests the 200 images once (clean): take that out of the steps.
        let per_image = ev / 200.0;
        eprintln!("{net}: {:.3} s per step of 16, {per_image:.4} s per test image", (tr - 200.0 * per_image) / 10.0);
    }
    for v in ["nin", "ds-nin-paper"] {
        let mut e = DoubleSparsity::new(true);
        e.variants = vec![v.into()];
        e.train_per_class = Some(5);
        e.steps = 4;
        e.batch = 16;
        e.test_per_class = 5;
        let c = common(&base.join(v), &data);
        let cell = &e.grid(&c)[0];
        let t0 = Instant::now();
        e.run_cell(cell, &c).unwrap();
        eprintln!("{v}: {:.1} s for 4 steps of 16 and 100 test images", t0.elapsed().as_secs_f64());
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// The `--quick` budgets as `sparsegrad experiment NAME --quick` runs them: each finishes in
/// about a minute or two. Run with `--ignored --nocapture` (and `SG_SHOW=1`) to see the tables.
#[test]
#[ignore]
fn quick_budgets() {
    let Some(data) = data("quick_budgets") else { return };
    for name in ["csc-robustness", "double-sparsity"] {
        let e = by_name(name, true).unwrap();
        let out = std::env::temp_dir().join(format!("sg-quick-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let t0 = Instant::now();
        run(e.as_ref(), &common(&out, &data)).unwrap();
        let s = t0.elapsed().as_secs_f64();
        eprintln!("{name} --quick: {s:.1} s");
        assert!(s < 180.0, "{name} --quick took {s:.0} s");
        std::fs::remove_dir_all(&out).unwrap();
    }
}
