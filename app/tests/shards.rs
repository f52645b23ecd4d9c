//! An experiment's grid run as 3 shards and merged gives the same tables and figures, byte
//! for byte, as the same grid run in one process; a rerun recomputes nothing.

use std::path::{Path, PathBuf};

use sparsegrad::experiments::limited_supervision::LimitedSupervision;
use sparsegrad::experiments::{run, write_report, Common, Experiment};
use sparsegrad::report::grid::Shard;

fn common(out: &Path, shard: Shard) -> Common {
    // Embedded MNIST (no data directory needed).
    Common {
        out: out.to_path_buf(),
        quick: true,
        shard,
        seed: 7,
        data_dir: Some(PathBuf::from("/nonexistent")),
        quiet: true,
    }
}

fn read(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| (e.file_name().to_string_lossy().to_string(), std::fs::read(e.path()).unwrap()))
        .collect();
    v.sort();
    v
}

#[test]
fn three_shards_merge_to_the_single_process_report() {
    let mut e = LimitedSupervision::new(true);
    e.steps = 3;
    e.test_images = 100;
    e.labels = vec![Some(1), Some(2)];
    let base = std::env::temp_dir().join(format!("sg-shards-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let single = base.join("single");
    run(&e, &common(&single, Shard::default())).unwrap();
    let grid = e.grid(&common(&single, Shard::default()));
    assert_eq!(grid.len(), 4);
    let mut dirs = vec![];
    for i in 0..3 {
        let d = base.join(format!("shard-{i}"));
        run(&e, &common(&d, Shard { i, n: 3 })).unwrap();
        dirs.push(d);
    }
    // Shard 0 holds cells 0 and 3, the others one each.
    assert_eq!(std::fs::read_dir(dirs[0].join("cells")).unwrap().count(), 2);
    let merged = base.join("merged");
    write_report(&e, &grid, &dirs, &merged, true).unwrap();
    let (a, b) = (read(&single), read(&merged));
    assert_eq!(
        a.iter().map(|x| &x.0).collect::<Vec<_>>(),
        ["accuracy.csv", "accuracy_vs_labels.svg", "config.txt", "tables.json"]
    );
    for ((na, da), (nb, db)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(da == db, "{na} differs between the single run and the merge");
    }
    // A rerun finds every cell done: the cell files are untouched.
    let before =
        std::fs::metadata(single.join("cells").join(format!("{}.json", grid[0].id))).unwrap().modified().unwrap();
    run(&e, &common(&single, Shard::default())).unwrap();
    let after =
        std::fs::metadata(single.join("cells").join(format!("{}.json", grid[0].id))).unwrap().modified().unwrap();
    assert_eq!(before, after);
    std::fs::remove_dir_all(&base).unwrap();
}
