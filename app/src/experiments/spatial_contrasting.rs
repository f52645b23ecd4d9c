//! `sparsegrad experiment spatial-contrasting`: the claim of Hoffer, Hubara & Ailon (docs/math.md
//! §5) — pre-training a convnet with the spatial-contrasting (SC) loss on unlabelled images,
//! then fine-tuning it with few labels, beats the same network trained from scratch on the
//! same labels.
//!
//! One cell per (data set, labels per class, method, trial), methods `scratch` and
//! `sc-pretrain`. Both start from the same initialisation of `sc-convnet` (seed from the trial)
//! and fine-tune on the same labelled subset (chosen by the trial) with the same batches;
//! `sc-pretrain` first minimises the network's `unsupervised_loss` (the SC loss of `features`
//! on two random patches per image, the batch's other images as contrast) on the training
//! split without its labels, for `pretrain_steps` Adam steps, then keeps every pretrained
//! parameter (the classifier's linear layer is not touched by the SC loss).
//!
//! Data: MNIST (the embedded 1,000 + 1,000 subset when no data directory has it) and
//! CIFAR-100 with its 20 coarse classes. **Default budget** (18 min 23 s on 2 quiet cores on 2026-12-07, 1,779 CPU-s; see
//! [`ScExperiment::new`]): the net's own width 32, 10 and 50 labels per class, 3 trials, 1,000
//! SC steps of batch 64 on up to 25,000 unlabelled images, 400 fine-tuning steps of batch 32
//! (Adam 1e-3), 2,000 stratified test images. Measured on the 2 shared cores
//! (`tests/experiments_sparse.rs`, `sc_default_cost`): 20 SC + 20 fine-tuning steps and the
//! test take ≈ 4 s on CIFAR, so ≈ 145 s per `sc-pretrain` cell and ≈ 25 s per `scratch` cell,
//! 24 cells. The `s per cell` column reports what each took. To scale up raise
//! `pretrain_steps` (the paper pretrains to convergence on all unlabelled images), `steps`,
//! `width` and `test_images`; `--shard i/n` splits the cells.

use std::collections::BTreeMap;

use autograd::optim::{Adam, Optimizer};
use autograd::Tape;
use datasets::{stratified_indices, Dataset, ImageSet, Loader, LoaderConfig};
use engine::Rng;
use models::layers::{Mode, Store};
use models::nets::unsupervised::build_unsupervised;
use models::nets::{Model, NetConfig};
use serde_json::{json, Value};

use super::common::{self, cell_seed};
use super::train::{classify_model, ClassifySpec};
use super::{Common, Experiment, Report};
use crate::report::grid::{mean_std, Cell, Table};
use crate::report::svg::{LineChart, Series};

/// The grid and the budget.
#[derive(Clone, Debug)]
pub struct ScExperiment {
    pub datasets: Vec<String>,
    pub labels: Vec<usize>,
    pub trials: usize,
    pub width: usize,
    pub pretrain_steps: usize,
    pub pretrain_batch: usize,
    /// Unlabelled images the SC loss sees (the first ones of the training split).
    pub unlabelled: usize,
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub test_images: usize,
}

/// The methods compared.
pub const METHODS: [&str; 2] = ["scratch", "sc-pretrain"];

impl ScExperiment {
    pub fn new(quick: bool) -> Self {
        if quick {
            ScExperiment {
                datasets: vec!["mnist".into(), "cifar100-coarse".into()],
                labels: vec![5],
                trials: 2,
                width: 8,
                pretrain_steps: 150,
                pretrain_batch: 32,
                unlabelled: 5000,
                steps: 100,
                batch: 16,
                lr: 1e-3,
                test_images: 500,
            }
        } else {
            ScExperiment {
                datasets: vec!["mnist".into(), "cifar100-coarse".into()],
                labels: vec![10, 50],
                trials: 3,
                width: 32,
                pretrain_steps: 1000,
                pretrain_batch: 64,
                unlabelled: 25_000,
                steps: 400,
                batch: 32,
                lr: 1e-3,
                test_images: 2000,
            }
        }
    }

    fn config(&self, set: &ImageSet) -> Result<NetConfig, String> {
        Ok(NetConfig::new("sc-convnet")?
            .classes(set.num_classes())
            .input(set.image_shape())
            .option("width", self.width))
    }
}

/// Minimises the SC loss of `model`'s network on `unlabelled` for `steps` steps (Adam, `lr`).
fn pretrain(
    model: &mut Model<f32>,
    unlabelled: &ImageSet,
    steps: usize,
    batch: usize,
    lr: f64,
    seed: u64,
) -> Result<f64, String> {
    let mut store = Store::<f32>::new();
    let net = build_unsupervised(&model.config, &mut store.builder(&mut Rng::new(0)))?;
    for (n, t) in model.store.params().chain(model.store.buffers()) {
        store.set(n, t.clone())?;
    }
    let mut opt = Adam::new(lr);
    let batch = batch.min(unlabelled.len()).max(2);
    let loader = Loader::new(unlabelled, LoaderConfig::new(batch).seed(seed).drop_last(true));
    let (mut step, mut last) = (0, f64::NAN);
    'outer: for epoch in 0.. {
        for b in loader.epoch(epoch) {
            if step == steps {
                break 'outer;
            }
            let tape = Tape::new();
            let cx = store.bind(&tape, Mode::Train, seed ^ step as u64);
            let loss = net.unsupervised_loss(&cx, &tape.constant(b.x)).map_err(|e| e.to_string())?;
            last = loss.item();
            if !last.is_finite() {
                return Err(format!("the SC loss became {last} at step {step}"));
            }
            let g = cx.grads(&tape.backward(&loss).map_err(|e| e.to_string())?);
            cx.finish(&mut store);
            drop(tape);
            store.step(&mut opt as &mut dyn Optimizer<f32>, &g);
            step += 1;
        }
        if loader.num_batches() == 0 {
            break;
        }
    }
    for (n, t) in store.params().chain(store.buffers()) {
        model.store.set(n, t.clone())?;
    }
    Ok(last)
}

impl Experiment for ScExperiment {
    fn name(&self) -> &'static str {
        "spatial-contrasting"
    }

    fn configure(&mut self, o: &super::Overrides) -> Result<(), String> {
        o.reject(self.name(), &["dataset", "budget"])?;
        if let Some(d) = &o.dataset {
            self.datasets = vec![d.clone()];
        }
        self.pretrain_steps = o.steps(self.pretrain_steps);
        self.steps = o.steps(self.steps);
        Ok(())
    }

    fn set(&mut self, field: &str, value: &str) -> Result<(), String> {
        super::set_fields!(self, field, value; datasets, labels, trials, width, pretrain_steps, pretrain_batch, unlabelled, steps, batch, lr, test_images; positive: lr)
    }

    fn grid(&self, _c: &Common) -> Vec<Cell> {
        let mut cells = vec![];
        for d in &self.datasets {
            for k in &self.labels {
                for m in METHODS {
                    for t in 0..self.trials {
                        let i = cells.len();
                        cells.push(Cell::new(
                            i,
                            &[
                                ("data", d.clone()),
                                ("labels", k.to_string()),
                                ("method", m.into()),
                                ("trial", t.to_string()),
                            ],
                        ));
                    }
                }
            }
        }
        cells
    }

    fn run_cell(&self, cell: &Cell, c: &Common) -> Result<Value, String> {
        let start = std::time::Instant::now();
        let root = common::data_root(c.data_dir.as_deref());
        let data = cell.get("data");
        let (split, _) = common::open(data, root.as_deref())?;
        let k: usize = cell.get("labels").parse().map_err(|_| "bad label count".to_string())?;
        let trial = cell.get("trial");
        let t: u64 = trial.parse().map_err(|_| "bad trial".to_string())?;
        let (labelled, _) = common::limit_labels(&split.train, Some(k), c.seed.wrapping_add(t))?;
        let unlabelled = common::first(&split.train, self.unlabelled);
        // A stratified test subset (the staged CIFAR-100 test file is grouped by class).
        let per_class = self.test_images.div_ceil(split.test.num_classes()).max(1);
        let (ti, _) = stratified_indices(&split.test, per_class, c.seed).map_err(|e| e.to_string())?;
        let test = split.test.subset(&ti);
        let cfg = self.config(&split.train)?;
        // The same initialisation and batches for both methods of a trial.
        let seed = cell_seed(c.seed, &["spatial-contrasting", data, cell.get("labels"), trial]);
        let mut model = Model::<f32>::new(&cfg, &mut Rng::new(seed))?;
        let sc_loss = match cell.get("method") {
            "scratch" => f64::NAN,
            "sc-pretrain" => {
                pretrain(&mut model, &unlabelled, self.pretrain_steps, self.pretrain_batch, self.lr, seed)?
            }
            m => return Err(format!("unknown method {m}")),
        };
        let spec = ClassifySpec { net: cfg, steps: self.steps, batch: self.batch, lr: self.lr, adam: true, seed };
        let (_, out) = classify_model(&spec, model, &labelled, &test)?;
        Ok(json!({
            "accuracy": out.accuracy,
            "final_loss": out.final_loss,
            "sc_loss": sc_loss,
            "params": out.params,
            "labelled": labelled.len(),
            "test": test.len(),
            "seconds": (start.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        }))
    }

    fn report(&self, grid: &[Cell], cells: &BTreeMap<usize, Value>) -> Report {
        let mut acc: BTreeMap<(String, String, String), Vec<f64>> = BTreeMap::new();
        let mut secs: BTreeMap<(String, String, String), Vec<f64>> = BTreeMap::new();
        for cell in grid {
            if let Some(v) = cells.get(&cell.index) {
                let key =
                    (cell.get("data").to_string(), cell.get("labels").to_string(), cell.get("method").to_string());
                if let Some(a) = v["result"]["accuracy"].as_f64() {
                    acc.entry(key.clone()).or_default().push(100.0 * a);
                }
                if let Some(s) = v["result"]["seconds"].as_f64() {
                    secs.entry(key).or_default().push(s);
                }
            }
        }
        let mut table = Table {
            title: format!(
                "spatial contrasting: test accuracy %, mean ± std over {} trials; sc-convnet width {}; SC pre-training \
                 {} steps of batch {} on {} unlabelled images, then {} steps of batch {} (Adam lr {}) on the labels",
                self.trials,
                self.width,
                self.pretrain_steps,
                self.pretrain_batch,
                self.unlabelled,
                self.steps,
                self.batch,
                self.lr
            ),
            columns: ["data", "labels/class", "scratch", "sc-pretrain", "gain (points)", "s per cell"]
                .map(String::from)
                .to_vec(),
            rows: vec![],
        };
        let mut series: Vec<Series> = METHODS.iter().map(|m| Series { name: m.to_string(), points: vec![] }).collect();
        let mut x = 0.0;
        let mut ticks = vec![];
        for d in &self.datasets {
            for k in &self.labels {
                x += 1.0;
                ticks.push(format!("{x:.0} = {d}, {k}/class"));
                let mut row = vec![d.clone(), k.to_string()];
                let mut means = vec![];
                for (j, m) in METHODS.iter().enumerate() {
                    match acc.get(&(d.clone(), k.to_string(), m.to_string())) {
                        Some(v) => {
                            let (mu, sd) = mean_std(v);
                            row.push(format!("{mu:.2} ± {sd:.2}"));
                            series[j].points.push((x, mu, sd));
                            means.push(Some(mu));
                        }
                        None => {
                            row.push("–".into());
                            means.push(None);
                        }
                    }
                }
                row.push(match (means[0], means[1]) {
                    (Some(a), Some(b)) => format!("{:+.2}", b - a),
                    _ => "–".into(),
                });
                let all: Vec<f64> = METHODS
                    .iter()
                    .flat_map(|m| secs.get(&(d.clone(), k.to_string(), m.to_string())).cloned().unwrap_or_default())
                    .collect();
                row.push(format!("{:.0}", mean_std(&all).0));
                table.push(row);
            }
        }
        let chart = LineChart {
            title: "Spatial contrasting: test accuracy, scratch vs SC pre-training".into(),
            x_label: format!("setting: {}", ticks.join("; ")),
            y_label: "test accuracy (%)".into(),
            log_x: false,
            y_range: None,
            series,
        };
        Report {
            tables: vec![("accuracy".into(), table)],
            figures: vec![("accuracy".into(), chart.to_svg())],
            notes: vec![
                "Paper (docs/math.md §5): SC pre-training then fine-tuning improves on the same network trained from scratch \
                 with few labels (STL-10; CIFAR-10 with 4,000 labels), with little benefit on MNIST, whose patches carry \
                 little information (docs/math.md §5.5)."
                    .into(),
            ],
        }
    }
}
