//! The experiment command's `--dataset`, `--unlabelled-weight`, `--budget` and `--set`, and the
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

fn sets(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn set_changes_fields_before_the_budget_scales_them() {
    let mut e = LimitedSupervision::new(true);
    let list = sets(&["trials=5", "labels=1, 10,all", "lr=3e-4", "nets=lenet,sf-lenet", "steps=30"]);
    experiments::apply_sets(&mut e, &list).unwrap();
    e.configure(&Overrides { budget: Some(2.0), ..Overrides::default() }).unwrap();
    assert_eq!((e.trials, e.lr, e.steps), (5, 3e-4, 60));
    assert_eq!(e.labels, vec![Some(1), Some(10), None]);
    assert_eq!(e.nets, ["lenet", "sf-lenet"]);
    assert_eq!(e.grid(&common(Path::new("unused"))).len(), 2 * 3 * 5);
}

#[test]
fn set_refuses_bad_values_and_unknown_fields_by_name() {
    for (set, says) in [
        ("trials=0", "--set trials=0: '0' is not a count ≥ 1"),
        ("trials=-2", "is not a count"),
        ("lr=nan", "--set lr=nan: 'nan' is not a finite number"),
        ("lr=1e999", "not a finite number"),
        ("lr=-0.01", "--set lr=-0.01: '-0.01' is not a finite number ≥ 0"),
        ("lr=0", "--set lr=0: must be above 0"),
        ("lr=-0", "--set lr=-0: must be above 0"),
        ("labels=", "--set labels=: an empty list"),
        ("labels=1,,5", "'' is not a count"),
        ("labels=1,many", "'many' is not a count ≥ 1 (or 'all')"),
        ("dataset= ", "an empty name"),
        ("trials", "--set trials: expected FIELD=VALUE"),
        (
            "bogus=1",
            "--set bogus=…: limited-supervision has no field 'bogus'; its fields (current values): dataset=mnist",
        ),
    ] {
        let mut e = LimitedSupervision::new(true);
        let before = format!("{e:?}");
        let err = experiments::apply_sets(&mut e, &sets(&[set])).unwrap_err();
        assert!(err.contains(says), "{set}: {err}");
        assert_eq!(format!("{e:?}"), before, "{set}: a refused --set changed the configuration");
    }
    // Per experiment: the fields that must be above 0 refuse 0; a noise level or a λ may be 0.
    let err = experiments::by_name("dcea-denoise", true).unwrap().set("peaks", "1,0,4").unwrap_err();
    assert!(err.contains("--set peaks=1,0,4: must be above 0"), "{err}");
    let err = experiments::by_name("csc-robustness", true).unwrap().set("lambda_train", "0").unwrap_err();
    assert!(err.contains("must be above 0"), "{err}");
    let err = experiments::by_name("csc-robustness", true).unwrap().set("sigmas", "0,-0.1").unwrap_err();
    assert!(err.contains("'-0.1' is not a finite number ≥ 0"), "{err}");
    let mut csc = experiments::by_name("csc-robustness", true).unwrap();
    csc.set("sigmas", "0,0.1").unwrap();
    csc.set("lambdas", "0,0.5").unwrap();
    let err = experiments::by_name("double-sparsity", true).unwrap().set("adam", "yes").unwrap_err();
    assert!(err.contains("'yes' is neither true nor false"), "{err}");
    let err = experiments::by_name("dcea-denoise", true).unwrap().set("net_options", "filters=8").unwrap_err();
    assert!(err.contains("'filters=8' is not key:value"), "{err}");
}

/// Every field an experiment lists (in the error for an unknown one) is settable, and setting
/// it to the value shown there changes nothing: the shown syntax is the parsed one.
#[test]
fn every_listed_field_round_trips_through_set() {
    for quick in [true, false] {
        for name in experiments::NAMES {
            let mut e = experiments::by_name(name, quick).unwrap();
            let before = format!("{e:?}");
            let err = e.set("no_such_field", "1").unwrap_err();
            let (_, listed) = err.split_once("(current values): ").unwrap_or_else(|| panic!("{name}: {err}"));
            let fields: Vec<&str> = listed.split(' ').collect();
            assert!(fields.len() >= 8, "{name}: {listed}");
            for f in fields {
                let (field, value) = f.split_once('=').unwrap();
                if value.is_empty() {
                    continue; // an empty list (dcea's net_options by default) cannot be set
                }
                e.set(field, value).unwrap_or_else(|err| panic!("{name}: {f}: {err}"));
                assert_eq!(format!("{e:?}"), before, "{name}: --set {f} changed the configuration");
            }
            e.set("trials", "7").or_else(|_| e.set("steps", "7")).unwrap();
            assert_ne!(format!("{e:?}"), before, "{name}: a --set changed nothing");
        }
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
