//! `sparsegrad experiment limited-supervision`: LeNet and its sparse-factorization variants
//! with few labels per class (the SF/CSF paper's claim: the sparse layers beat LeNet when
//! labels are few), ≥ 3 trials with different labelled subsets, mean ± std test accuracy.

use std::collections::BTreeMap;

use datasets::Dataset;
use serde_json::{json, Value};

use super::common::{self, cell_seed};
use super::train::{classify, classify_semi, ClassifySpec};
use super::{Common, Experiment, Report};
use crate::report::grid::{mean_std, Cell, Table};
use crate::report::svg::{LineChart, Series};
use models::nets::unsupervised::has_unsupervised;
use models::nets::NetConfig;

/// The grid and the budget.
#[derive(Clone, Debug)]
pub struct LimitedSupervision {
    pub dataset: String,
    pub nets: Vec<String>,
    /// Labels per class; `None` is "all".
    pub labels: Vec<Option<usize>>,
    pub trials: usize,
    /// Optimiser steps per run (batch `batch`).
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    /// Test images used (the first ones of the test split).
    pub test_images: usize,
    /// γ > 0: the networks with an unsupervised term train semi-supervised (labelled
    /// cross-entropy + γ × their term on a batch of the unlabelled rest each step); LeNet,
    /// which has none, stays the supervised baseline. 0: all supervised.
    pub unlabelled_weight: f64,
}

impl LimitedSupervision {
    /// The default budget or `--quick`. The default: 4 networks × 6 label counts × 3 trials
    /// = 72 cells of 150 SGD steps of 32 images, each scored on the first 2,000 test images.
    /// Measured on 2 cores (Zen 4), a LeNet cell takes ≈ 3 s; the sparse networks' LARS
    /// forwards dominate (every training and test image solves one small LARS problem per
    /// patch): the grid took 24 min 23 s on 2 quiet cores on 2026-12-07 (2,681 CPU-s).
    /// `--budget X` scales the steps.
    pub fn new(quick: bool) -> Self {
        if quick {
            LimitedSupervision {
                dataset: "mnist".into(),
                nets: vec!["lenet".into()],
                labels: vec![Some(1), Some(10)],
                trials: 2,
                steps: 20,
                batch: 16,
                lr: 0.01,
                test_images: 500,
                unlabelled_weight: 0.0,
            }
        } else {
            LimitedSupervision {
                dataset: "mnist".into(),
                nets: ["lenet", "sf-lenet", "csf-lenet", "csf-sf-lenet"].map(String::from).to_vec(),
                labels: vec![Some(1), Some(5), Some(10), Some(50), Some(100), None],
                trials: 3,
                steps: 150,
                batch: 32,
                lr: 0.01,
                test_images: 2_000,
                unlabelled_weight: 0.0,
            }
        }
    }
}

fn k_name(k: Option<usize>) -> String {
    k.map_or("all".to_string(), |k| k.to_string())
}

impl Experiment for LimitedSupervision {
    fn name(&self) -> &'static str {
        "limited-supervision"
    }

    fn configure(&mut self, o: &super::Overrides) -> Result<(), String> {
        o.reject(self.name(), &["dataset", "unlabelled-weight", "budget"])?;
        if let Some(d) = &o.dataset {
            self.dataset = d.clone();
        }
        self.unlabelled_weight = o.unlabelled_weight.unwrap_or(0.0);
        self.steps = o.steps(self.steps);
        Ok(())
    }

    fn set(&mut self, field: &str, value: &str) -> Result<(), String> {
        super::set_fields!(self, field, value; dataset, nets, labels, trials, steps, batch, lr, test_images; positive: lr)
    }

    fn grid(&self, _c: &Common) -> Vec<Cell> {
        let mut cells = vec![];
        for net in &self.nets {
            for &k in &self.labels {
                for t in 0..self.trials {
                    let i = cells.len();
                    cells.push(Cell::new(i, &[("net", net.clone()), ("labels", k_name(k)), ("trial", t.to_string())]));
                }
            }
        }
        cells
    }

    fn run_cell(&self, cell: &Cell, c: &Common) -> Result<Value, String> {
        let root = common::data_root(c.data_dir.as_deref());
        let (split, _) = common::open(&self.dataset, root.as_deref())?;
        let k = match cell.get("labels") {
            "all" => None,
            s => Some(s.parse::<usize>().map_err(|_| format!("bad label count {s}"))?),
        };
        let trial: u64 = cell.get("trial").parse().map_err(|_| "bad trial".to_string())?;
        // The labelled subset depends on the trial only (every network sees the same images).
        let (labelled, unlabelled) = common::limit_labels(&split.train, k, c.seed.wrapping_add(trial))?;
        let test = common::first(&split.test, self.test_images);
        let net = cell.get("net");
        let spec = ClassifySpec {
            net: NetConfig::new(net)?,
            steps: self.steps,
            batch: self.batch,
            lr: self.lr,
            adam: false,
            seed: cell_seed(c.seed, &[net, &trial.to_string()]),
        };
        let semi = self.unlabelled_weight > 0.0 && has_unsupervised(net) && !unlabelled.is_empty();
        let (_, out) = if semi {
            classify_semi(&spec, self.unlabelled_weight, &labelled, &unlabelled, &test)?
        } else {
            classify(&spec, &labelled, &test)?
        };
        Ok(json!({
            "accuracy": out.accuracy,
            "final_loss": out.final_loss,
            "params": out.params,
            "labelled": labelled.len(),
            "test": test.len(),
            "semi_supervised": semi,
            "seconds": (out.seconds * 10.0).round() / 10.0,
        }))
    }

    fn report(&self, grid: &[Cell], cells: &BTreeMap<usize, Value>) -> Report {
        let mut acc: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
        for cell in grid {
            if let Some(v) = cells.get(&cell.index) {
                if let Some(a) = v["result"]["accuracy"].as_f64() {
                    acc.entry((cell.get("net").to_string(), cell.get("labels").to_string()))
                        .or_default()
                        .push(100.0 * a);
                }
            }
        }
        let ks: Vec<String> = self.labels.iter().map(|&k| k_name(k)).collect();
        let mut cols = vec!["network".to_string()];
        cols.extend(ks.iter().map(|k| format!("{k}/class")));
        let mut table = Table {
            title: format!(
                "limited supervision on {}{}: test accuracy %, mean ± std over {} trials ({} steps of batch {}, SGD lr {} momentum 0.9)",
                self.dataset,
                if self.unlabelled_weight > 0.0 {
                    format!(
                        ", semi-supervised (sparse nets: + {} × their unsupervised term on the unlabelled rest; lenet supervised)",
                        self.unlabelled_weight
                    )
                } else {
                    String::new()
                },
                self.trials,
                self.steps,
                self.batch,
                self.lr
            ),
            columns: cols,
            rows: vec![],
        };
        let mut series = vec![];
        for net in &self.nets {
            let mut row = vec![net.clone()];
            let mut pts = vec![];
            for (j, k) in ks.iter().enumerate() {
                match acc.get(&(net.clone(), k.clone())) {
                    Some(v) => {
                        let (m, s) = mean_std(v);
                        row.push(format!("{m:.2} ± {s:.2}"));
                        let x = self.labels[j].map_or(6000.0, |k| k as f64);
                        pts.push((x, m, s));
                    }
                    None => row.push("–".into()),
                }
            }
            table.push(row);
            series.push(Series { name: net.clone(), points: pts });
        }
        let chart = LineChart {
            title: format!("Test accuracy vs labels per class ({})", self.dataset),
            x_label: "labelled examples per class (log scale; 'all' drawn at 6000)".into(),
            y_label: "test accuracy (%)".into(),
            log_x: true,
            y_range: None,
            series,
        };
        Report {
            tables: vec![("accuracy".into(), table)],
            figures: vec![("accuracy_vs_labels".into(), chart.to_svg())],
            notes: vec![],
        }
    }
}
