//! `sparsegrad experiment csc-robustness`: SDNet's robust inference (docs/math.md §2.8). ResNet-20
//! and SDNet-20 (optionally SDNet-20-all) are trained on clean images, then tested on images
//! with additive Gaussian noise σ ∈ {0, 0.02, …, 0.20} (on `[0, 1]` intensities, clipped),
//! SDNet with the stem's λ raised at test time over {0.1, 0.2, …, 1.4} (the trained tensors
//! copied into the network rebuilt with `stem_lambda`). The claim: a larger stem λ recovers
//! part of the accuracy the noise takes, so SDNet at the best λ per σ degrades more slowly
//! than ResNet and than SDNet at its training λ = 0.1.
//!
//! One cell per (network, trial): it trains the network and evaluates the whole σ × λ sweep
//! on the same (stratified) test subset with the same noise draws for every network and λ,
//! and stores the accuracy matrix (rows σ, columns λ; one column for ResNet).
//!
//! **Default budget** (5 min 45 s on 2 quiet cores on 2026-12-07, 563 CPU-s; the estimate below,
//! made on shared cores, was ≈ 40 min; 2 cells; see [`CscRobustness::new`]):
//! CIFAR-100 with its 20 coarse classes (`dataset`; the fine 100 classes are `cifar100`),
//! 1 trial, 3,000 steps of batch 16 with SGD (lr 0.05, momentum 0.9) on all 25,000 training
//! images here (≈ 2 epochs), the sweep on 20 test images per class (400). Measured on the
//! 2-core machine under a load of ≈ 15 (150-step runs of each network, the ignored test
//! `cost_per_step` in `tests/experiments_cnn.rs` for a shorter probe): ≈ 0.19 s per step for
//! resnet20, ≈ 0.35 s for sdnet20, ≈ 0.013 s per test image per (σ, λ) point; so the resnet20
//! cell ≈ 3,000 × 0.19 + 11 × 400 × 0.013 s ≈ 11 min and the sdnet20 cell ≈ 3,000 × 0.35 +
//! 154 × 400 × 0.013 s ≈ 31 min (the 11 × 14 sweep is 13 of them). To scale up,
//! raise `steps` (e.g. 30,000 for ≈ 20 epochs), `test_per_class` (500 is the whole test set),
//! `trials`, and add `sdnet20-all` to `nets`; the cells are independent, so `--shard i/n`
//! spreads them over machines.

use std::collections::BTreeMap;

use datasets::{stratified_indices, Dataset, Noise};
use serde_json::{json, Value};

use super::common::{self, cell_seed};
use super::train::{accuracy_under, classify, with_options, ClassifySpec};
use super::{Common, Experiment, Report};
use crate::report::grid::{mean_std, Cell, Table};
use crate::report::svg::{HeatMap, LineChart, Series};
use models::nets::NetConfig;

/// The grid and the budget.
#[derive(Clone, Debug)]
pub struct CscRobustness {
    /// `cifar100-coarse` (20 classes) or `cifar100` (100), or any name `common::open` knows.
    pub dataset: String,
    /// `resnet20`, `sdnet20`, `sdnet20-all` (the CSC nets get the λ sweep).
    pub nets: Vec<String>,
    pub trials: usize,
    /// Training images per class (`None`: the whole training split).
    pub train_per_class: Option<usize>,
    /// Optimiser steps per run (batch `batch`, SGD with momentum 0.9).
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    /// Test images per class (a stratified subset, the same for every cell).
    pub test_per_class: usize,
    /// Noise levels σ (on `[0, 1]` intensities; the noisy image is clipped to `[0, 1]`).
    pub sigmas: Vec<f64>,
    /// Stem λ at test time (CSC nets only); the training λ is `lambda_train`.
    pub lambdas: Vec<f64>,
    /// The stem's λ during training (the nets' default, 0.1).
    pub lambda_train: f64,
}

impl CscRobustness {
    /// The default budget (about 40 minutes on 2 cores) or `--quick` (well under a minute).
    pub fn new(quick: bool) -> Self {
        let sigmas: Vec<f64> = (0..=10).map(|i| i as f64 * 0.02).collect();
        let lambdas: Vec<f64> = (1..=14).map(|i| i as f64 * 0.1).collect();
        if quick {
            CscRobustness {
                dataset: "cifar100-coarse".into(),
                nets: vec!["resnet20".into(), "sdnet20".into()],
                trials: 1,
                train_per_class: Some(10),
                steps: 10,
                batch: 16,
                lr: 0.05,
                test_per_class: 5,
                sigmas: vec![0.0, 0.1],
                lambdas: vec![0.1, 0.5],
                lambda_train: 0.1,
            }
        } else {
            CscRobustness {
                dataset: "cifar100-coarse".into(),
                nets: vec!["resnet20".into(), "sdnet20".into()],
                trials: 1,
                train_per_class: None,
                steps: 3000,
                batch: 16,
                lr: 0.05,
                test_per_class: 20,
                sigmas,
                lambdas,
                lambda_train: 0.1,
            }
        }
    }

    fn is_csc(net: &str) -> bool {
        net.starts_with("sdnet")
    }

    /// The λ column closest to the training λ (the "no retuning" baseline).
    fn train_col(&self) -> usize {
        let mut best = 0;
        for (j, &l) in self.lambdas.iter().enumerate() {
            if (l - self.lambda_train).abs() < (self.lambdas[best] - self.lambda_train).abs() {
                best = j;
            }
        }
        best
    }
}

fn fmt_num(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

impl Experiment for CscRobustness {
    fn name(&self) -> &'static str {
        "csc-robustness"
    }

    fn configure(&mut self, o: &super::Overrides) -> Result<(), String> {
        o.reject(self.name(), &["dataset", "budget"])?;
        if let Some(d) = &o.dataset {
            self.dataset = d.clone();
        }
        self.steps = o.steps(self.steps);
        Ok(())
    }

    fn set(&mut self, field: &str, value: &str) -> Result<(), String> {
        super::set_fields!(self, field, value; dataset, nets, trials, train_per_class, steps, batch, lr, test_per_class, sigmas, lambdas, lambda_train; positive: lr, lambda_train)
    }

    fn grid(&self, _c: &Common) -> Vec<Cell> {
        let mut cells = vec![];
        for net in &self.nets {
            for t in 0..self.trials {
                let i = cells.len();
                cells.push(Cell::new(i, &[("net", net.clone()), ("trial", t.to_string())]));
            }
        }
        cells
    }

    fn run_cell(&self, cell: &Cell, c: &Common) -> Result<Value, String> {
        let root = common::data_root(c.data_dir.as_deref());
        let (split, _) = common::open(&self.dataset, root.as_deref())?;
        let trial: u64 = cell.get("trial").parse().map_err(|_| "bad trial".to_string())?;
        let net = cell.get("net");
        // Training images depend on the trial only; the test subset and the noise on the
        // experiment's seed only (every network and λ sees the same corrupted images).
        let (train, _) = common::limit_labels(&split.train, self.train_per_class, c.seed.wrapping_add(trial))?;
        let (ti, _) = stratified_indices(&split.test, self.test_per_class, c.seed).map_err(|e| e.to_string())?;
        let test = split.test.subset(&ti);
        let mut cfg = NetConfig::new(net)?.classes(split.train.num_classes()).input(split.train.image_shape());
        if Self::is_csc(net) {
            cfg = cfg.option("stem_lambda", self.lambda_train);
        }
        let spec = ClassifySpec {
            net: cfg,
            steps: self.steps,
            batch: self.batch,
            lr: self.lr,
            adam: false,
            seed: cell_seed(c.seed, &[net, &trial.to_string()]),
        };
        let (model, out) = classify(&spec, &train, &test)?;
        let t0 = std::time::Instant::now();
        let lambdas: Vec<f64> = if Self::is_csc(net) { self.lambdas.clone() } else { vec![] };
        let models = if Self::is_csc(net) {
            lambdas
                .iter()
                .map(|&l| with_options(&model, &[("stem_lambda", l.to_string())]))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            vec![model]
        };
        let mut acc = vec![];
        for &s in &self.sigmas {
            let noise = if s > 0.0 { Noise::Gaussian { sigma: s as f32, clip: true } } else { Noise::None };
            let seed = cell_seed(c.seed, &["noise", &fmt_num(s)]);
            let row = models.iter().map(|m| accuracy_under(m, &test, noise, seed)).collect::<Result<Vec<_>, _>>()?;
            acc.push(row);
        }
        Ok(json!({
            "sigmas": self.sigmas,
            "lambdas": lambdas,
            "accuracy": acc,
            "final_loss": out.final_loss,
            "params": out.params,
            "train": train.len(),
            "test": test.len(),
            "train_seconds": (out.seconds * 10.0).round() / 10.0,
            "eval_seconds": (t0.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        }))
    }

    fn report(&self, grid: &[Cell], cells: &BTreeMap<usize, Value>) -> Report {
        let (ns, nl) = (self.sigmas.len(), self.lambdas.len());
        // acc[net][trial] = matrix σ × (λ or 1), in percent.
        let mut acc: BTreeMap<String, Vec<Vec<Vec<f64>>>> = BTreeMap::new();
        for cell in grid {
            let Some(v) = cells.get(&cell.index) else { continue };
            let Some(rows) = v["result"]["accuracy"].as_array() else { continue };
            let m: Vec<Vec<f64>> = rows
                .iter()
                .map(|r| r.as_array().map(|r| r.iter().map(|x| 100.0 * x.as_f64().unwrap_or(f64::NAN)).collect()))
                .collect::<Option<_>>()
                .unwrap_or_default();
            let cols = if Self::is_csc(cell.get("net")) { nl } else { 1 };
            if m.len() == ns && m.iter().all(|r| r.len() == cols) {
                acc.entry(cell.get("net").to_string()).or_default().push(m);
            }
        }
        let stats =
            |runs: &[Vec<Vec<f64>>], i: usize, j: usize| mean_std(&runs.iter().map(|m| m[i][j]).collect::<Vec<_>>());
        let jt = self.train_col();
        let lam_train = self.lambdas.get(jt).copied().unwrap_or(self.lambda_train);
        let mut report = Report::default();

        // The summary: one row per σ; ResNet, each CSC net at the training λ and at its best λ.
        let mut cols = vec!["σ".to_string()];
        let mut series: Vec<Series> = vec![];
        for net in &self.nets {
            if Self::is_csc(net) {
                cols.push(format!("{net} λ={}", fmt_num(lam_train)));
                cols.push(format!("{net} best λ"));
                cols.push(format!("{net} λ*"));
                series.push(Series { name: format!("{net} λ={}", fmt_num(lam_train)), points: vec![] });
                series.push(Series { name: format!("{net} best λ"), points: vec![] });
            } else {
                cols.push(net.clone());
                series.push(Series { name: net.clone(), points: vec![] });
            }
        }
        let trials = acc.values().map(|v| v.len()).max().unwrap_or(0);
        let mut summary = Table {
            title: format!(
                "CSC robust inference on {} (Gaussian noise σ on [0,1], clipped): test accuracy %, mean ± std over {} \
                 trial(s); {} steps of batch {}, SGD lr {}; {} test images per class; best λ chosen per σ on the \
                 same test images (as the paper)",
                self.dataset, trials, self.steps, self.batch, self.lr, self.test_per_class
            ),
            columns: cols,
            rows: vec![],
        };
        for (i, &s) in self.sigmas.iter().enumerate() {
            let mut row = vec![fmt_num(s)];
            let mut k = 0;
            for net in &self.nets {
                let runs = acc.get(net).map(Vec::as_slice).unwrap_or(&[]);
                let cols = if Self::is_csc(net) { 3 } else { 1 };
                if runs.is_empty() {
                    row.extend(vec!["–".to_string(); cols]);
                    k += if Self::is_csc(net) { 2 } else { 1 };
                    continue;
                }
                if Self::is_csc(net) {
                    let (m0, s0) = stats(runs, i, jt);
                    let jb = (0..nl).fold(0, |b, j| if stats(runs, i, j).0 > stats(runs, i, b).0 { j } else { b });
                    let (mb, sb) = stats(runs, i, jb);
                    row.push(format!("{m0:.2} ± {s0:.2}"));
                    row.push(format!("{mb:.2} ± {sb:.2}"));
                    row.push(fmt_num(self.lambdas[jb]));
                    series[k].points.push((s, m0, s0));
                    series[k + 1].points.push((s, mb, sb));
                    k += 2;
                } else {
                    let (m0, s0) = stats(runs, i, 0);
                    row.push(format!("{m0:.2} ± {s0:.2}"));
                    series[k].points.push((s, m0, s0));
                    k += 1;
                }
            }
            summary.push(row);
        }
        report.tables.push(("accuracy_vs_sigma".into(), summary));

        // The full sweep of every CSC net: a table and a heat map with the best λ per σ marked.
        for net in self.nets.iter().filter(|n| Self::is_csc(n)) {
            let Some(runs) = acc.get(net) else { continue };
            let mut cols = vec!["σ \\ λ".to_string()];
            cols.extend(self.lambdas.iter().map(|&l| fmt_num(l)));
            cols.push("best λ".into());
            let mut table = Table {
                title: format!(
                    "{net} on {}: test accuracy % (mean over {} trial(s)) with the stem's λ set at test time; rows σ, \
                     columns λ (trained at λ = {})",
                    self.dataset,
                    runs.len(),
                    fmt_num(self.lambda_train)
                ),
                columns: cols,
                rows: vec![],
            };
            let mut values = vec![];
            let mut marked = vec![];
            for (i, &s) in self.sigmas.iter().enumerate() {
                let means: Vec<f64> = (0..nl).map(|j| stats(runs, i, j).0).collect();
                let jb = (0..nl).fold(0, |b, j| if means[j] > means[b] { j } else { b });
                let mut row = vec![fmt_num(s)];
                row.extend(means.iter().map(|m| format!("{m:.2}")));
                row.push(fmt_num(self.lambdas[jb]));
                table.push(row);
                values.push(means);
                marked.push((i, jb));
            }
            report.tables.push((format!("sweep_{net}"), table));
            let heat = HeatMap {
                title: format!(
                    "{net}: test accuracy (%) vs noise σ and stem λ ({}, {})",
                    self.dataset,
                    if self.trials == 1 { "one trial".to_string() } else { format!("mean of {} trials", self.trials) }
                ),
                x_label: "stem λ at test time".into(),
                y_label: "noise σ".into(),
                value_label: "accuracy %".into(),
                cols: self.lambdas.iter().map(|&l| fmt_num(l)).collect(),
                rows: self.sigmas.iter().map(|&s| fmt_num(s)).collect(),
                values,
                marked,
            };
            report.figures.push((format!("heatmap_{net}"), heat.to_svg()));
        }
        let chart = LineChart {
            title: format!("Test accuracy vs Gaussian noise ({})", self.dataset),
            x_label: "noise σ (intensities in [0, 1])".into(),
            y_label: "test accuracy (%)".into(),
            log_x: false,
            y_range: None,
            series,
        };
        report.figures.push(("accuracy_vs_sigma".into(), chart.to_svg()));
        report.notes.push(format!(
            "Chance is {:.1} %. Paper (docs/math.md §2.8, §2.10): SDNet-18 on CIFAR-10 with the best stem λ per σ loses \
             less accuracy under noise than ResNet-18; its figures are not in the workspace copy, so compare the \
             shapes, not the numbers.",
            100.0 / common::class_count(&self.dataset) as f64
        ));
        report
    }
}
