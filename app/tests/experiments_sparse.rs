//! The sparse-coding experiments (dcea-denoise, spatial-contrasting) run end to end on tiny
//! settings on the real data (CIFAR-100 and the denoising images): every table (CSV,
//! tables.json) and figure (well-formed SVG) is written, and a rerun recomputes nothing.
//! `dcea_default_cost` (ignored) measures what the default DCEA budget was sized from.

use std::path::PathBuf;

use serde_json::Value;
use sparsegrad::experiments::dcea_denoise::{psnr, DceaDenoise};
use sparsegrad::experiments::spatial_contrasting::ScExperiment;
use sparsegrad::experiments::Experiment;

mod support;

use support::{common, data_with, run_twice};

/// The data root, or `None` (after `skip_test`) when CIFAR-100 or the denoising images are
/// not staged.
fn data(test: &str) -> Option<PathBuf> {
    data_with(
        test,
        &[
            "cifar-100/test_by_class.bin",
            "cifar-100/train_first250_per_class.bin",
            "denoise/boat.pgm",
            "denoise/house.pgm",
        ],
        "CIFAR-100 or denoise images",
    )
}

#[test]
fn psnr_matches_a_hand_value() {
    // max 1, errors 0.1 and 0.3 on two of four pixels: mse = (0.01 + 0.09)/4 = 0.025,
    // PSNR = 0 − 10·log10(0.025) = 16.0206 dB.
    let image = [1.0f32, 0.5, 0.25, 0.0];
    let est = [0.9f32, 0.5, 0.55, 0.0];
    assert!((psnr(&image, &est) - 16.020_599_913).abs() < 1e-4, "{}", psnr(&image, &est));
    // Halving both halves max and the errors: max²/mse is unchanged.
    let half = image.map(|v| v / 2.0);
    let est_half = est.map(|v| v / 2.0);
    assert!((psnr(&half, &est_half) - 16.020_599_913).abs() < 1e-4, "{}", psnr(&half, &est_half));
}

#[test]
fn dcea_denoise_quick_grid_end_to_end() {
    let Some(data) = data("dcea_denoise_quick_grid_end_to_end") else { return };
    let mut e = DceaDenoise::new(true);
    e.peaks = vec![1.0, 4.0];
    e.steps = 2;
    e.batch = 2;
    e.test_crop = Some(32);
    e.shown = 16;
    let (out, tables) = run_twice(&e, &data, &["examples.svg", "psnr.csv", "tables.json"]);
    // Per peak: the noisy baseline, tied, untied.
    let rows = tables["psnr"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 6, "{rows:?}");
    let models: Vec<&str> = rows.iter().map(|r| r["model"].as_str().unwrap()).collect();
    assert_eq!(models, ["noisy", "tied", "untied", "noisy", "tied", "untied"]);
    // The same noise draws for tied and untied at a peak.
    let cell = |id: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(out.join("cells").join(format!("{id}.json"))).unwrap()).unwrap()
    };
    let (a, b) = (cell("peak-1_net-tied"), cell("peak-1_net-untied"));
    assert_eq!(a["result"]["noisy_psnr"], b["result"]["noisy_psnr"]);
    assert!(a["result"]["psnr"]["boat"].as_f64().unwrap().is_finite());
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn spatial_contrasting_quick_grid_end_to_end() {
    let Some(data) = data("spatial_contrasting_quick_grid_end_to_end") else { return };
    let mut e = ScExperiment::new(true);
    e.trials = 1;
    e.width = 4;
    e.pretrain_steps = 2;
    e.pretrain_batch = 4;
    e.unlabelled = 40;
    e.steps = 2;
    e.batch = 4;
    e.test_images = 40;
    let (out, tables) = run_twice(&e, &data, &["accuracy.csv", "accuracy.svg", "tables.json"]);
    let rows = tables["accuracy"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    std::fs::remove_dir_all(&out).unwrap();
}

/// Ten default DCEA training steps (batch 4, 32×32) and one whole 512×512 test image: run with
/// `--ignored --nocapture` to size the default budget.
#[test]
#[ignore]
fn dcea_default_cost() {
    let Some(data) = data("dcea_default_cost") else { return };
    let mut e = DceaDenoise::new(false);
    e.peaks = vec![4.0];
    e.variants = vec!["untied".into()];
    e.steps = 10;
    e.images = vec!["boat".into()];
    e.test_crop = None;
    let out = std::env::temp_dir().join(format!("sg-dcea-cost-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let c = common(&out, &data);
    let cell = &e.grid(&c)[0];
    let r = e.run_cell(cell, &c).unwrap();
    eprintln!("10 steps: {} s (incl. init); with one 512×512 test image: {} s", r["train_seconds"], r["seconds"]);
    let _ = std::fs::remove_dir_all(&out);
}

/// Twenty SC steps and twenty fine-tuning steps of the default spatial-contrasting cell on
/// CIFAR-100 (and its test): run with `--ignored --nocapture` to size the default budget.
#[test]
#[ignore]
fn sc_default_cost() {
    let Some(data) = data("sc_default_cost") else { return };
    let mut e = ScExperiment::new(false);
    e.datasets = vec!["cifar100-coarse".into()];
    e.trials = 1;
    e.pretrain_steps = 20;
    e.steps = 20;
    let out = std::env::temp_dir().join(format!("sg-sc-cost-{}", std::process::id()));
    let c = common(&out, &data);
    let grid = e.grid(&c);
    let cell = grid.iter().find(|c| c.get("method") == "sc-pretrain").unwrap();
    let r = e.run_cell(cell, &c).unwrap();
    eprintln!("20 + 20 steps and the test: {} s", r["seconds"]);
}

/// `checkpoint = Some(file)` evaluates the saved network on the same noise draws as the
/// trained cells: the noisy baseline is identical, and the saved weights give the PSNRs the
/// inference API gives them directly.
#[test]
fn dcea_denoise_evaluates_a_checkpoint() {
    let Some(data) = data("dcea_denoise_evaluates_a_checkpoint") else { return };
    let mut e = DceaDenoise::new(true);
    e.peaks = vec![2.0];
    e.variants = vec!["tied".into()];
    e.steps = 1;
    e.batch = 2;
    e.test_crop = Some(32);
    e.shown = 16;
    let out = std::env::temp_dir().join(format!("sg-dcea-ckpt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let c = common(&out, &data);
    let cell = &e.grid(&c)[0];
    let trained = e.run_cell(cell, &c).unwrap();
    // An untrained network of the same configuration, saved and evaluated.
    let cfg = e.config(2.0, true).unwrap();
    let model = models::nets::Model::<f32>::new(&cfg, &mut engine::Rng::new(9)).unwrap();
    let path = out.join("dcea.safetensors");
    sparsegrad::checkpoint::save(&path, &model, None, &Default::default()).unwrap();
    let mut f = e.clone();
    f.checkpoint = Some(path);
    let evaluated = f.run_cell(cell, &c).unwrap();
    assert_eq!(trained["noisy_psnr"], evaluated["noisy_psnr"]);
    assert_eq!(evaluated["params"], trained["params"]);
    assert!(evaluated["psnr"]["boat"].as_f64().unwrap().is_finite());
    assert_ne!(trained["psnr"], evaluated["psnr"], "the checkpoint's weights were not used");
    std::fs::remove_dir_all(&out).unwrap();
}
