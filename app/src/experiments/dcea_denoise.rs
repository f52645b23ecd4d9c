//! `sparsegrad experiment dcea-denoise`: Poisson image denoising with the DCEA (docs/math.md §4,
//! Tolooshams et al. 2020) at peaks 1, 2 and 4, tied against untied filter banks.
//!
//! Training: supervised, `mse(image, Q·exp(η̂))` with `Q = max(image)/peak` per image and
//! `y ~ Poisson(image/Q)` drawn afresh for every batch, Adam with the paper's learning rates
//! (1e-3 at peak 4, 1e-4 at peaks 1 and 2). The authors train on 128×128 crops of PASCAL VOC;
//! no VOC is staged here, so the training images are **CIFAR-100 training images converted to
//! grey** (`0.299 R + 0.587 G + 0.114 B`, in `[0, 1]`) used **whole at 32×32, not upsampled**
//! (upsampling would only add smooth, easy content; 32×32 is the smallest side for which the
//! 11×11 stride-7 shifts' reflect padding fits) — random `crop × crop` crops when `crop < 32`.
//!
//! Test: the seven PGM images of `data/denoise` (boat, bridge, cameraman, couple, house, man,
//! peppers256), each through the inference API ([`sparse::dcea::denoise`]) one image at a time,
//! centre-cropped to `test_crop` (`None`: the whole 512×512 images). The noise of each image is
//! drawn from `--seed`, the image's name and the peak only, so every model of a peak (and the
//! "noisy" baseline row, whose estimate is `Q·y`) sees the same noisy image. PSNR as the authors:
//! `20·log10(max(image)) − 10·log10(mse)` ([`psnr`]).
//!
//! One cell per (peak, tied/untied). **Default budget** (46 min 25 s on 2 quiet cores,
//! measured 2026-12-07 with the default `--threads`; cells 190–784 s; see
//! [`DceaDenoise::new`]): the authors' network (169 filters 11×11, stride 7 with the 49 shifts,
//! 15 ISTA steps), 400 steps of batch 4 per cell, tested on the whole images. Measured on the
//! 2 shared cores (`tests/experiments_sparse.rs`, `dcea_default_cost`): ≈ 0.7 s per step of 4
//! (≈ 3 s for the 200-iteration power fold at initialisation) and ≈ 16 s per 512×512 test
//! image, so ≈ 280 s of training + ≤ 110 s of testing per cell (an estimate; the measured
//! cells took 190–784 s, the peak-1 ones longest). This is a tiny fraction of the authors'
//! training (hundreds of epochs on VOC): expect the trained networks well below the paper's
//! PSNRs. To scale up raise `steps` (and `batch`; `--budget X` or `--set steps=N`);
//! `test_crop = Some(side)` tests on centre crops. `checkpoint = Some(file)` evaluates a saved
//! `dcea` model (`sparsegrad train` checkpoint) on the same noise draws instead of training.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use autograd::optim::{Adam, Optimizer};
use autograd::Tape;
use datasets::{Dataset, ImageSet};
use engine::{Rng, Tensor};
use models::layers::Mode;
use models::nets::{Model, NetConfig};
use serde_json::{json, Value};
use sparse::dcea::{denoise, poisson_observation, poisson_scale, Dcea};

use super::common::{self, cell_seed};
use super::{Common, Experiment, Report};
use crate::report::grid::{Cell, Table};
use crate::report::svg::{GreyImage, ImageGrid};

/// The seven test images of `data/denoise`, in the table's order.
pub const TEST_IMAGES: [&str; 7] = ["boat", "bridge", "cameraman", "couple", "house", "man", "peppers256"];

/// PSNR as the authors compute it: `20·log10(max(image)) − 10·log10(mse(image, estimate))`.
pub fn psnr(image: &[f32], estimate: &[f32]) -> f64 {
    let a = Tensor::from_vec(image.to_vec(), &[image.len()]);
    let b = Tensor::from_vec(estimate.to_vec(), &[estimate.len()]);
    sparse::dcea::psnr(&a, &b)
}

/// The grid and the budget.
#[derive(Clone, Debug)]
pub struct DceaDenoise {
    pub peaks: Vec<f64>,
    /// `tied`, `untied`.
    pub variants: Vec<String>,
    pub steps: usize,
    pub batch: usize,
    /// Side of the training crops (≤ 32; 32 is the whole CIFAR image).
    pub crop: usize,
    /// The data set whose training split gives the training crops (`cifar100`; any name
    /// `common::open` knows, colour images turned grey).
    pub train_dataset: String,
    /// Training images drawn from (the first ones of the training split).
    pub train_images: usize,
    /// Test images (names of [`TEST_IMAGES`]).
    pub images: Vec<String>,
    /// Centre crop of every test image (`None`: whole).
    pub test_crop: Option<usize>,
    /// Options of the `dcea` network beside `peak` and `tied` (small versions for `--quick`).
    pub net_options: Vec<(String, String)>,
    /// Side of the centre crop of the first test image kept for the figure.
    pub shown: usize,
    /// Evaluate this `dcea` checkpoint (every cell) instead of training.
    pub checkpoint: Option<PathBuf>,
}

impl DceaDenoise {
    /// The default budget or `--quick` (32 filters 7×7 stride 4, 5 ISTA steps, 100 training
    /// steps of batch 4, two 64×64 test crops).
    pub fn new(quick: bool) -> Self {
        let variants = vec!["tied".to_string(), "untied".to_string()];
        if quick {
            let opts = [("filters", "32"), ("kernel", "7"), ("stride", "4"), ("iters", "5"), ("fold_iters", "20")];
            DceaDenoise {
                peaks: vec![1.0, 2.0, 4.0],
                variants,
                steps: 100,
                batch: 4,
                crop: 32,
                train_dataset: "cifar100".into(),
                train_images: 2000,
                images: vec!["boat".into(), "house".into()],
                test_crop: Some(64),
                net_options: opts
                    .iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .chain([("fold_image".to_string(), "64".to_string())])
                    .collect(),
                shown: 64,
                checkpoint: None,
            }
        } else {
            DceaDenoise {
                peaks: vec![1.0, 2.0, 4.0],
                variants,
                steps: 400,
                batch: 4,
                crop: 32,
                train_dataset: "cifar100".into(),
                train_images: 25_000,
                images: TEST_IMAGES.map(String::from).to_vec(),
                test_crop: None,
                net_options: vec![],
                shown: 96,
                checkpoint: None,
            }
        }
    }

    /// The network of a cell.
    pub fn config(&self, peak: f64, tied: bool) -> Result<NetConfig, String> {
        let mut cfg =
            NetConfig::new("dcea")?.option("peak", peak).option("tied", tied).input([1, self.crop, self.crop]);
        for (k, v) in &self.net_options {
            cfg = cfg.option(k, v);
        }
        Ok(cfg)
    }

    /// The paper's learning rate: 1e-3 at peak 4 (and above), 1e-4 below.
    pub fn lr(peak: f64) -> f64 {
        if peak >= 4.0 {
            1e-3
        } else {
            1e-4
        }
    }
}

/// Image `i` of `set` in grey, `[0, 1]`, row-major `H × W`.
pub fn grey(set: &ImageSet, i: usize) -> Vec<f32> {
    let v = set.image_u8(i);
    let [c, h, w] = v.shape();
    let mut out = vec![0f32; h * w];
    for y in 0..h {
        for x in 0..w {
            out[y * w + x] = if c >= 3 {
                (0.299 * v.get(0, y, x) as f32 + 0.587 * v.get(1, y, x) as f32 + 0.114 * v.get(2, y, x) as f32) / 255.0
            } else {
                v.get(0, y, x) as f32 / 255.0
            };
        }
    }
    out
}

/// The centre `side × side` crop of the row-major `h × w` image (the whole image if smaller).
fn centre(px: &[f32], h: usize, w: usize, side: Option<usize>) -> (Vec<f32>, usize, usize) {
    let (ch, cw) = side.map_or((h, w), |s| (s.min(h), s.min(w)));
    let (y0, x0) = ((h - ch) / 2, (w - cw) / 2);
    let mut out = Vec::with_capacity(ch * cw);
    for y in 0..ch {
        out.extend_from_slice(&px[(y0 + y) * w + x0..(y0 + y) * w + x0 + cw]);
    }
    (out, ch, cw)
}

/// The directory of the test images under the data root.
fn denoise_dir(root: Option<&Path>) -> Result<PathBuf, String> {
    let r =
        root.ok_or_else(|| format!("dcea-denoise: no data directory (give --data-dir or set {})", datasets::DATA_ENV))?;
    Ok(r.join("denoise"))
}

/// Trains a DCEA of `cfg` for `steps` supervised steps on grey crops of `train`.
fn train(
    d: &DceaDenoise,
    cfg: &NetConfig,
    peak: f64,
    train: &ImageSet,
    seed: u64,
) -> Result<(Model<f32>, f64), String> {
    let mut rng = Rng::new(seed);
    let mut model = Model::<f32>::new(cfg, &mut rng)?;
    let mut opt = Adam::new(DceaDenoise::lr(peak));
    let [_, h, w] = train.image_shape();
    let n = train.len().min(d.train_images).max(1);
    let s = d.crop;
    if s > h || s > w {
        return Err(format!("crop {s} is larger than the {h}×{w} training images"));
    }
    let mut last = f64::NAN;
    for step in 0..d.steps {
        let (mut x, mut y, mut q) = (vec![], vec![], vec![]);
        for _ in 0..d.batch {
            let i = rng.below(n as u64) as usize;
            let g = grey(train, i);
            let (oy, ox) = (rng.below((h - s + 1) as u64) as usize, rng.below((w - s + 1) as u64) as usize);
            let mut c = Vec::with_capacity(s * s);
            for r in 0..s {
                c.extend_from_slice(&g[(oy + r) * w + ox..(oy + r) * w + ox + s]);
            }
            let img = Tensor::from_vec(c, &[1, 1, s, s]);
            let qi = poisson_scale(&img, peak).max(1e-6);
            y.extend(poisson_observation(&img, qi, &mut rng).to_vec());
            x.extend(img.to_vec());
            q.extend(std::iter::repeat_n(qi as f32, s * s));
        }
        let b = d.batch;
        let tape = Tape::new();
        let cx = model.store.bind(&tape, Mode::Train, seed ^ step as u64);
        let out = model.forward(&cx, &tape.constant(Tensor::from_vec(y, &[b, 1, s, s]))).map_err(|e| e.to_string())?;
        let est = out.mul(&tape.constant(Tensor::from_vec(q, &[b, 1, s, s])));
        let loss = est.sub(&tape.constant(Tensor::from_vec(x, &[b, 1, s, s]))).square().mean_all();
        last = loss.item();
        if !last.is_finite() {
            return Err(format!("the loss became {last} at step {step}"));
        }
        let g = cx.grads(&tape.backward(&loss).map_err(|e| e.to_string())?);
        cx.finish(&mut model.store);
        drop(tape);
        model.store.step(&mut opt as &mut dyn Optimizer<f32>, &g);
    }
    Ok((model, last))
}

/// The inference model of a trained `dcea` network (one shared threshold `b`).
pub fn inference_model(model: &Model<f32>) -> Result<Dcea<f32>, String> {
    let config = models::nets::dcea::config(&model.config)?;
    let get = |n: &str| {
        model.store.get(n).cloned().ok_or_else(|| format!("the dcea model has no tensor {n} (single_bias only)"))
    };
    let h = get("H")?;
    let (we, wd) = if config.tied { (None, None) } else { (Some(get("We")?), Some(get("Wd")?)) };
    let b = get("b")?;
    let k = config.filters;
    Ok(Dcea { config, h, we, wd, b: b.reshape(&[k]), lipschitz: None })
}

impl Experiment for DceaDenoise {
    fn name(&self) -> &'static str {
        "dcea-denoise"
    }

    fn configure(&mut self, o: &super::Overrides) -> Result<(), String> {
        o.reject(self.name(), &["dataset", "budget"])?;
        if let Some(d) = &o.dataset {
            self.train_dataset = d.clone();
        }
        self.steps = o.steps(self.steps);
        Ok(())
    }

    fn set(&mut self, field: &str, value: &str) -> Result<(), String> {
        super::set_fields!(self, field, value; peaks, variants, steps, batch, crop, train_dataset, train_images, images, test_crop, net_options, shown; positive: peaks)
    }

    fn grid(&self, _c: &Common) -> Vec<Cell> {
        let mut cells = vec![];
        for p in &self.peaks {
            for v in &self.variants {
                let i = cells.len();
                cells.push(Cell::new(i, &[("peak", p.to_string()), ("net", v.clone())]));
            }
        }
        cells
    }

    fn run_cell(&self, cell: &Cell, c: &Common) -> Result<Value, String> {
        let start = std::time::Instant::now();
        let root = common::data_root(c.data_dir.as_deref());
        let peak: f64 = cell.get("peak").parse().map_err(|_| "bad peak".to_string())?;
        let tied = match cell.get("net") {
            "tied" => true,
            "untied" => false,
            v => return Err(format!("unknown variant {v} (tied, untied)")),
        };
        let (model, final_loss) = match &self.checkpoint {
            Some(path) => {
                let cfg = crate::checkpoint::read_config(path)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("{}: no network metadata", path.display()))?;
                if cfg.name != "dcea" {
                    return Err(format!("{}: a {} checkpoint, not dcea", path.display(), cfg.name));
                }
                let mut m = Model::<f32>::new(&cfg, &mut Rng::new(0))?;
                crate::checkpoint::load(path, &mut m, None).map_err(|e| e.to_string())?;
                (m, f64::NAN)
            }
            None => {
                let (split, _) = common::open(&self.train_dataset, root.as_deref())?;
                let seed = cell_seed(c.seed, &["dcea-denoise", cell.get("peak"), cell.get("net")]);
                train(self, &self.config(peak, tied)?, peak, &split.train, seed)?
            }
        };
        let train_seconds = start.elapsed().as_secs_f64();
        let dcea = inference_model(&model)?;
        let dir = denoise_dir(root.as_deref())?;
        let (mut noisy_psnr, mut model_psnr) = (serde_json::Map::new(), serde_json::Map::new());
        let mut shown = json!(null);
        for (k, name) in self.images.iter().enumerate() {
            let full = datasets::open_pgm(dir.join(format!("{name}.pgm"))).map_err(|e| e.to_string())?;
            let s = full.shape().to_vec();
            let (px, h, w) = centre(&full.to_vec(), s[2], s[3], self.test_crop);
            let img = Tensor::from_vec(px.clone(), &[1, 1, h, w]);
            let q = poisson_scale(&img, peak);
            let mut rng = Rng::new(cell_seed(c.seed, &["dcea-noise", name, cell.get("peak")]));
            let y = poisson_observation(&img, q, &mut rng);
            let noisy: Vec<f32> = y.to_vec().iter().map(|v| v * q as f32).collect();
            let est: Vec<f32> =
                denoise(&dcea, &y).map_err(|e| e.to_string())?.to_vec().iter().map(|v| v * q as f32).collect();
            noisy_psnr.insert(name.clone(), json!(psnr(&px, &noisy)));
            model_psnr.insert(name.clone(), json!(psnr(&px, &est)));
            if k == 0 {
                let r3 = |v: Vec<f32>| v.iter().map(|x| (x * 1000.0).round() / 1000.0).collect::<Vec<f32>>();
                let (a, sh, sw) = centre(&px, h, w, Some(self.shown));
                let (b, _, _) = centre(&noisy, h, w, Some(self.shown));
                let (e, _, _) = centre(&est, h, w, Some(self.shown));
                shown = json!({"image": name, "h": sh, "w": sw, "clean": r3(a), "noisy": r3(b), "denoised": r3(e)});
            }
        }
        Ok(json!({
            "psnr": model_psnr,
            "noisy_psnr": noisy_psnr,
            "final_loss": final_loss,
            "params": model.store.count(),
            "train_seconds": (train_seconds * 10.0).round() / 10.0,
            "seconds": (start.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            "shown": shown,
        }))
    }

    fn report(&self, grid: &[Cell], cells: &BTreeMap<usize, Value>) -> Report {
        let mut cols = vec!["peak".to_string(), "model".to_string()];
        cols.extend(self.images.iter().cloned());
        cols.extend(["mean", "params", "final loss", "s"].map(String::from));
        let mut table = Table {
            title: format!(
                "DCEA Poisson denoising: PSNR dB on {} (centre crop {}), {} steps of batch {} on grey CIFAR-100 {}×{} \
                 crops, Adam lr 1e-3 (peak ≥ 4) / 1e-4; 'noisy' = Q·y, the same noise draws for every model",
                self.images.join(", "),
                self.test_crop.map_or("none".into(), |s| format!("{s}×{s}")),
                self.steps,
                self.batch,
                self.crop,
                self.crop
            ),
            columns: cols,
            rows: vec![],
        };
        let row = |label: &str, peak: &str, m: &serde_json::Map<String, Value>, extra: [String; 3]| {
            let mut r = vec![peak.to_string(), label.to_string()];
            let v: Vec<f64> =
                self.images.iter().map(|n| m.get(n).and_then(Value::as_f64).unwrap_or(f64::NAN)).collect();
            r.extend(v.iter().map(|x| format!("{x:.2}")));
            r.push(format!("{:.2}", v.iter().sum::<f64>() / v.len().max(1) as f64));
            r.extend(extra);
            r
        };
        let mut images = vec![];
        for p in &self.peaks {
            let ps = p.to_string();
            let of_peak: Vec<&Cell> = grid.iter().filter(|c| c.get("peak") == ps).collect();
            let found: Vec<(&Cell, &Value)> =
                of_peak.iter().filter_map(|c| cells.get(&c.index).map(|v| (*c, &v["result"]))).collect();
            if let Some((_, r)) = found.first() {
                if let Some(m) = r["noisy_psnr"].as_object() {
                    table.push(row("noisy", &ps, m, ["–".into(), "–".into(), "–".into()]));
                }
            }
            for cell in &of_peak {
                let Some(v) = cells.get(&cell.index) else {
                    let mut r = vec![ps.clone(), cell.get("net").to_string()];
                    r.extend(vec!["–".to_string(); table.columns.len() - 2]);
                    table.push(r);
                    continue;
                };
                let r = &v["result"];
                let empty = serde_json::Map::new();
                let m = r["psnr"].as_object().unwrap_or(&empty);
                table.push(row(
                    cell.get("net"),
                    &ps,
                    m,
                    [
                        format!("{}", r["params"].as_u64().unwrap_or(0)),
                        format!("{:.4}", r["final_loss"].as_f64().unwrap_or(f64::NAN)),
                        format!("{:.0}", r["seconds"].as_f64().unwrap_or(f64::NAN)),
                    ],
                ));
                let sh = &r["shown"];
                let (h, w) = (sh["h"].as_u64().unwrap_or(0) as usize, sh["w"].as_u64().unwrap_or(0) as usize);
                let px = |k: &str| -> Vec<f32> {
                    sh[k]
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_f64).map(|x| (x as f32).clamp(0.0, 1.0)).collect())
                        .unwrap_or_default()
                };
                let (a, b, e) = (px("clean"), px("noisy"), px("denoised"));
                if h * w > 0 && a.len() == h * w && b.len() == h * w && e.len() == h * w {
                    let name = sh["image"].as_str().unwrap_or("");
                    let net = cell.get("net");
                    images.push(GreyImage { caption: format!("{name} clean"), w, h, pixels: a });
                    images.push(GreyImage { caption: format!("noisy, peak {ps}"), w, h, pixels: b });
                    images.push(GreyImage { caption: format!("{net}, peak {ps}"), w, h, pixels: e });
                }
            }
        }
        let mut figures = vec![];
        if !images.is_empty() {
            let scale = if self.shown <= 48 { 4.0 } else { 2.0 };
            let g = ImageGrid {
                title: "DCEA Poisson denoising: clean, noisy (Q·y) and denoised (Q·exp(η̂))".into(),
                cols: 3,
                scale,
                images,
                note: format!(
                    "centre {0}×{0} of the first test image; grey = intensity in [0, 1], clipped",
                    self.shown
                ),
            };
            figures.push(("examples".to_string(), g.to_svg()));
        }
        Report {
            tables: vec![("psnr".into(), table)],
            figures,
            notes: vec![
                "Paper (docs/math.md §4.8; 128×128 VOC crops, hundreds of epochs, whole 512×512 test images): its PSNR \
                 table is not transcribed in the workspace; compare the trend (denoised above noisy, rising with the \
                 peak; untied at least as good as tied), not the level."
                    .into(),
            ],
        }
    }
}
