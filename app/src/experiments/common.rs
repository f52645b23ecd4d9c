//! What the experiments share: opening a data set by name, the labelled/unlabelled split,
//! training a classifier for a budget and measuring its test accuracy.

use std::path::{Path, PathBuf};

use datasets::{
    embedded, open_cifar_file, stratified_indices, Cifar10, Cifar100, Dataset, FashionMnist, ImageSet, Mnist, Split,
};

/// The root of the data sets: `--data-dir`, else `$SPARSEGRAD_DATA`, else the nearest
/// `shared/data` above the current directory.
pub fn data_root(dir: Option<&Path>) -> Option<PathBuf> {
    if let Some(d) = dir {
        return Some(d.to_path_buf());
    }
    if let Some(d) = std::env::var_os(datasets::DATA_ENV) {
        return Some(PathBuf::from(d));
    }
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors().map(|a| a.join("shared/data")).find(|d| d.is_dir())
}

/// Opens the data set `name` (`mnist`, `fashion-mnist`, `cifar10`, `cifar100`,
/// `cifar100-coarse`) under `root`; `mnist` without a root is the embedded subset. Returns
/// the split and a description of where it came from.
pub fn open(name: &str, root: Option<&Path>) -> Result<(Split, String), String> {
    let need = |sub: &str| -> Result<PathBuf, String> {
        let r = root.ok_or_else(|| {
            format!("data set {name}: no data directory (give --data-dir or set {})", datasets::DATA_ENV)
        })?;
        Ok(r.join(sub))
    };
    let err = |e: datasets::DataError| e.to_string();
    match name {
        "mnist" => match root.map(|r| r.join("mnist")).filter(|d| d.is_dir()) {
            Some(d) => Ok((Mnist::open(&d).map_err(err)?, format!("MNIST ({})", d.display()))),
            None => Ok((embedded::mnist_subset(), "the embedded MNIST subset (1,000 + 1,000)".into())),
        },
        "mnist-embedded" => Ok((embedded::mnist_subset(), "the embedded MNIST subset (1,000 + 1,000)".into())),
        "fashion-mnist" => {
            let d = need("fashion-mnist")?;
            Ok((FashionMnist::open(&d).map_err(err)?, format!("Fashion-MNIST ({})", d.display())))
        }
        "cifar10" => {
            let d = need("cifar-10")?;
            Ok((Cifar10::open(&d).map_err(err)?, format!("CIFAR-10 ({})", d.display())))
        }
        "cifar100" | "cifar100-coarse" => {
            let d = need("cifar-100")?;
            let s = open_cifar100(&d)?;
            if name == "cifar100" {
                return Ok((s, format!("CIFAR-100, 100 fine classes ({})", d.display())));
            }
            let coarse =
                |set: &ImageSet| set.with_coarse_labels().ok_or_else(|| format!("{}: no coarse labels", d.display()));
            let split = Split { train: coarse(&s.train)?, test: coarse(&s.test)?, extra: None };
            Ok((split, format!("CIFAR-100, 20 coarse classes ({})", d.display())))
        }
        "mnist-rot" | "mnist-back-rand" | "mnist-back-image" | "mnist-rot-back-image" => {
            let d = need(name)?;
            if !d.is_dir() {
                return Err(format!(
                    "data set {name}: {} does not exist (`sparsegrad data make-variations --out {}` writes it)",
                    d.display(),
                    root.map_or(String::new(), |r| r.display().to_string())
                ));
            }
            Ok((Mnist::open(&d).map_err(err)?, format!("{name} ({})", d.display())))
        }
        other => Err(format!(
            "unknown data set '{other}' (known: mnist, mnist-embedded, fashion-mnist, mnist-rot, mnist-back-rand, mnist-back-image, \
             mnist-rot-back-image, cifar10, cifar100, cifar100-coarse)"
        )),
    }
}

/// CIFAR-100 from `dir`: the standard `train.bin` / `test.bin`, else the files staged on
/// this project's machines (`train_first250_per_class.bin`: 250 training images per fine
/// class; `test_by_class.bin`: the whole test set grouped by class), the test set normalised
/// with the training files' statistics.
pub fn open_cifar100(dir: &Path) -> Result<Split, String> {
    let (train, test) = (dir.join("train_first250_per_class.bin"), dir.join("test_by_class.bin"));
    if dir.join("train.bin").is_file() || !(train.is_file() && test.is_file()) {
        return Cifar100::open(dir).map_err(|e| e.to_string());
    }
    let train = open_cifar_file(&train, None).map_err(|e| e.to_string())?;
    let test = open_cifar_file(&test, None).map_err(|e| e.to_string())?.with_stats_from(&train);
    Ok(Split { train, test, extra: None })
}

/// `k` labelled examples per class of `train` (all of it for `None`) and the unlabelled
/// rest, chosen by `seed` (nested for growing `k`).
pub fn limit_labels(train: &ImageSet, k: Option<usize>, seed: u64) -> Result<(ImageSet, ImageSet), String> {
    match k {
        None => Ok((train.clone(), train.subset(&[]))),
        Some(k) => {
            let (l, u) = stratified_indices(train, k, seed).map_err(|e| e.to_string())?;
            Ok((train.subset(&l), train.subset(&u)))
        }
    }
}

/// The first `n` images of `set` (all of them when `n ≥ len`).
pub fn first(set: &ImageSet, n: usize) -> ImageSet {
    if n >= set.len() {
        set.clone()
    } else {
        set.subset(&(0..n).collect::<Vec<_>>())
    }
}

/// Derives a cell's seed from the experiment's seed and the cell's parameters (FNV-1a), so
/// a cell computes the same thing whichever shard runs it.
pub fn cell_seed(seed: u64, parts: &[&str]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for p in parts {
        for b in p.bytes().chain([0xff]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The number of classes of the data set `name` (as [`open`] names them).
pub fn class_count(name: &str) -> usize {
    match name {
        "cifar100" => 100,
        "cifar100-coarse" => 20,
        _ => 10,
    }
}
