//! The experiment command's `--dataset`, `--unlabelled-weight` and `--budget`, and the
//! `config.txt` guard that keeps cells of different configurations apart.

use std::path::Path;

use sparsegrad::experiments::limited_supervision::LimitedSupervision;
use sparsegrad::experiments::{self, Common, Experiment, Overrides};
use sparsegrad::report::grid::Shard;

fn common(out: &Path) -> Common {
    Common {
        out: out.to_path_buf(),
        quick: true,
        shard: Shard::default(),
        seed: 5,
        // No data directory: MNIST is the embedded subset.
        data_dir: None,
        quiet: true,
    }
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sg-exp-options-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn overrides_apply_and_unknown_ones_are_refused() {
    let mut e = LimitedSupervision::new(true);
    let o = Overrides { dataset: Some("fashion-mnist".into()), unlabelled_weight: Some(0.5), budget: Some(2.5) };
    e.configure(&o).unwrap();
    assert_eq!((e.dataset.as_str(), e.unlabelled_weight, e.steps), ("fashion-mnist", 0.5, 50));
    // At least one step, however small the factor.
    let mut e = LimitedSupervision::new(true);
    e.configure(&Overrides { budget: Some(1e-9), ..Overrides::default() }).unwrap();
    assert_eq!(e.steps, 1);
    for bad in [Some(0.0), Some(-1.0), Some(f64::NAN)] {
        let err = LimitedSupervision::new(true).configure(&Overrides { budget: bad, ..Overrides::default() });
        assert!(err.unwrap_err().contains("--budget"), "{bad:?}");
    }
    let err = LimitedSupervision::new(true)
        .configure(&Overrides { unlabelled_weight: Some(-1.0), ..Overrides::default() })
        .unwrap_err();
    assert!(err.contains("--unlabelled-weight"), "{err}");
    for name in ["csc-robustness", "double-sparsity", "dcea-denoise", "spatial-contrasting"] {
        let mut e = experiments::by_name(name, true).unwrap();
        let err = e.configure(&Overrides { unlabelled_weight: Some(1.0), ..Overrides::default() }).unwrap_err();
        assert!(err.contains("--unlabelled-weight does not apply to"), "{name}: {err}");
        let before = format!("{e:?}");
        e.configure(&Overrides { budget: Some(2.0), ..Overrides::default() }).unwrap();
        assert_ne!(format!("{e:?}"), before, "{name}: --budget changed nothing");
    }
}

#[test]
fn another_configuration_in_the_same_out_is_refused() {
    let out = tmp("config");
    let mut e = LimitedSupervision::new(true);
    e.trials = 1;
    e.labels = vec![Some(1)];
    e.steps = 2;
    e.test_images = 20;
    experiments::run(&e, &common(&out)).unwrap();
    assert!(out.join(experiments::CONFIG_FILE).is_file());
    // The same configuration resumes (nothing to do) …
    experiments::run(&e, &common(&out)).unwrap();
    // … another budget is refused rather than mixed into the table.
    let mut longer = e.clone();
    longer.steps = 3;
    let err = experiments::run(&longer, &common(&out)).unwrap_err();
    assert!(err.contains("another configuration") && err.contains("config.txt"), "{err}");
    // The merge checks it too.
    let grid = longer.grid(&common(&out));
    let err = experiments::write_report(&longer, &grid, std::slice::from_ref(&out), &tmp("merged"), true).unwrap_err();
    assert!(err.contains("another configuration"), "{err}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn semi_supervised_cells_add_the_unsupervised_term_and_lenet_stays_supervised() {
    let mut e = LimitedSupervision::new(true);
    e.nets = vec!["lenet".into(), "csf-lenet".into()];
    e.trials = 1;
    e.labels = vec![Some(2)];
    e.steps = 3;
    e.batch = 8;
    e.test_images = 40;
    let grid = e.grid(&common(&tmp("unused")));
    let run = |e: &LimitedSupervision, i: usize| {
        let mut v = e.run_cell(&grid[i], &common(&tmp("unused"))).unwrap();
        v.as_object_mut().unwrap().remove("seconds");
        v
    };
    let (lenet_sup, csf_sup) = (run(&e, 0), run(&e, 1));
    let mut semi = e.clone();
    semi.unlabelled_weight = 1.0;
    let (lenet_semi, csf_semi) = (run(&semi, 0), run(&semi, 1));
    assert_eq!(lenet_sup, lenet_semi, "lenet has no unsupervised term: the same run");
    assert_eq!(csf_semi["semi_supervised"], true);
    assert_eq!(csf_sup["semi_supervised"], false);
    // The loss of the semi-supervised run holds γ × the term: not the supervised loss.
    let (a, b) = (csf_sup["final_loss"].as_f64().unwrap(), csf_semi["final_loss"].as_f64().unwrap());
    assert!(a.is_finite() && b.is_finite() && a != b, "{a} vs {b}");
}

#[test]
fn a_run_that_fails_before_its_first_cell_records_no_configuration() {
    let out = tmp("badset");
    let mut e = LimitedSupervision::new(true);
    e.dataset = "mnist-spin".into();
    let err = experiments::run(&e, &common(&out)).unwrap_err();
    assert!(err.contains("unknown data set 'mnist-spin'"), "{err}");
    assert!(!out.join(experiments::CONFIG_FILE).exists(), "a failed run left config.txt behind");
    // The corrected command runs in the same --out.
    e.dataset = "mnist".into();
    e.trials = 1;
    e.labels = vec![Some(1)];
    e.steps = 1;
    e.test_images = 10;
    experiments::run(&e, &common(&out)).unwrap();
    assert!(out.join(experiments::CONFIG_FILE).is_file());
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn the_mnist_variations_are_data_sets_with_a_clear_error_when_missing() {
    let root = tmp("novar");
    std::fs::create_dir_all(&root).unwrap();
    let err = experiments::common::open("mnist-rot", Some(&root)).map(|_| ()).unwrap_err();
    assert!(err.contains("mnist-rot") && err.contains("make-variations"), "{err}");
    let err = experiments::common::open("mnist-spin", Some(&root)).map(|_| ()).unwrap_err();
    assert!(err.contains("unknown data set 'mnist-spin'") && err.contains("mnist-rot-back-image"), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}
