//! Finding data sets in a directory and describing them (`sparsegrad data info`).
//!
//! [`scan`] looks at a directory and its immediate sub-directories (hidden ones, such as the
//! `.sparsegrad-cache`, are skipped). In each it recognises MNIST-format IDX files, CIFAR
//! record files (`*.bin`) and MAT files (`*.mat`), opens them with the readers of this crate
//! and reports every split with its size and per-class counts, plus the size and SHA-256 of
//! every file in the directory. A file that fails to open is reported as a problem with the
//! reader's error; it does not stop the scan.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::blob::OpenOptions;
use crate::checksum::sha256_file;
use crate::cifar::{open_cifar_file, Cifar10, Cifar100};
use crate::dataset::{Dataset, ImageSet, Split};
use crate::error::{DataError, Result};
use crate::idx::{find_idx, idx_candidates, open_idx_pair, FashionMnist, Mnist};
use crate::mat::{open_svhn_mat, Svhn};

/// One file of a data set directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    /// Path of the file.
    pub path: PathBuf,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 as 64 hex digits (`None` when hashing was not requested or the file could not
    /// be read).
    pub sha256: Option<String>,
}

/// One split of a data set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitInfo {
    /// `train`, `test`, `extra`, or the file's stem for files opened on their own.
    pub name: String,
    /// Number of images.
    pub len: usize,
    /// `[C, H, W]`.
    pub image_shape: [usize; 3],
    /// Class names in label order.
    pub class_names: Vec<String>,
    /// Images per class, in label order.
    pub class_counts: Vec<usize>,
    /// Images per coarse class (CIFAR-100 only).
    pub coarse_counts: Option<Vec<usize>>,
    /// Files the split was read from.
    pub files: Vec<PathBuf>,
}

/// A data set found in one directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetInfo {
    /// `MNIST`, `Fashion-MNIST`, `CIFAR-10`, `CIFAR-100`, `SVHN-format MAT` or
    /// `MNIST (embedded subset)`.
    pub kind: String,
    /// The directory (empty for the embedded subset).
    pub dir: PathBuf,
    /// The splits that could be opened.
    pub splits: Vec<SplitInfo>,
    /// Every regular, non-hidden file of the directory.
    pub files: Vec<FileInfo>,
    /// Files that look like part of the data set but could not be opened, with the reason.
    pub problems: Vec<String>,
}

/// Describes one split.
pub fn describe(name: &str, set: &ImageSet) -> SplitInfo {
    let coarse_counts = set.with_coarse_labels().map(|c| c.class_counts());
    SplitInfo {
        name: name.to_string(),
        len: set.len(),
        image_shape: set.image_shape(),
        class_names: set.class_names().to_vec(),
        class_counts: set.class_counts(),
        coarse_counts,
        files: set.files().to_vec(),
    }
}

/// Describes the embedded MNIST subset.
pub fn describe_embedded() -> DatasetInfo {
    let s = crate::embedded::mnist_subset();
    let files = crate::embedded::files()
        .iter()
        .map(|(n, b)| FileInfo {
            path: PathBuf::from(format!("<embedded>/{n}")),
            bytes: b.len() as u64,
            sha256: Some(crate::checksum::hex(&crate::checksum::sha256(b))),
        })
        .collect();
    DatasetInfo {
        kind: "MNIST (embedded subset)".into(),
        dir: PathBuf::new(),
        splits: vec![describe("train", &s.train), describe("test", &s.test)],
        files,
        problems: Vec::new(),
    }
}

fn list_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn push_split(splits: &mut Vec<SplitInfo>, problems: &mut Vec<String>, name: &str, r: Result<ImageSet>) {
    match r {
        Ok(s) => splits.push(describe(name, &s)),
        Err(e) => problems.push(e.to_string()),
    }
}

fn push_whole(splits: &mut Vec<SplitInfo>, r: Result<Split>) -> std::result::Result<(), String> {
    let s = r.map_err(|e| e.to_string())?;
    splits.push(describe("train", &s.train));
    splits.push(describe("test", &s.test));
    if let Some(e) = &s.extra {
        splits.push(describe("extra", e));
    }
    Ok(())
}

/// The data sets in one directory (not its sub-directories).
fn scan_dir(dir: &Path, files: &[PathBuf], opts: &OpenOptions) -> Vec<DatasetInfo> {
    let mut found = Vec::new();
    let has = |ext: &str| files.iter().any(|p| p.extension().is_some_and(|e| e == ext));
    let dir_name = dir.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    let info = |kind: &str, splits, problems| DatasetInfo {
        kind: kind.to_string(),
        dir: dir.to_path_buf(),
        splits,
        files: files
            .iter()
            .map(|p| FileInfo { path: p.clone(), bytes: p.metadata().map_or(0, |m| m.len()), sha256: None })
            .collect(),
        problems,
    };

    let any_idx = ["train", "t10k"]
        .iter()
        .any(|p| ["images", "labels"].iter().any(|k| idx_candidates(p, k).iter().any(|n| dir.join(n).is_file())));
    if any_idx {
        let fashion = dir_name.contains("fashion");
        let (kind, names) =
            if fashion { ("Fashion-MNIST", FashionMnist::class_names()) } else { ("MNIST", Mnist::class_names()) };
        let (mut splits, mut problems) = (Vec::new(), Vec::new());
        for (prefix, name) in [("train", "train"), ("t10k", "test")] {
            let pair = find_idx(dir, prefix, "images").and_then(|i| Ok((i, find_idx(dir, prefix, "labels")?)));
            let r = pair.and_then(|(i, l)| open_idx_pair(name, &i, &l, names.clone(), opts));
            push_split(&mut splits, &mut problems, name, r);
        }
        found.push(info(kind, splits, problems));
    }

    if has("bin") {
        let (mut splits, mut problems) = (Vec::new(), Vec::new());
        let standard10 =
            (1..=5).all(|k| dir.join(format!("data_batch_{k}.bin")).is_file()) && dir.join("test_batch.bin").is_file();
        let standard100 = dir.join("train.bin").is_file() && dir.join("test.bin").is_file();
        let mut kind = "CIFAR-10";
        if standard10 {
            if let Err(e) = push_whole(&mut splits, Cifar10::open_with(dir, opts)) {
                problems.push(e);
            }
        } else if standard100 {
            kind = "CIFAR-100";
            if let Err(e) = push_whole(&mut splits, Cifar100::open_with(dir, opts)) {
                problems.push(e);
            }
        } else {
            for f in files.iter().filter(|p| p.extension().is_some_and(|e| e == "bin")) {
                let r = open_cifar_file(f, None);
                if let Ok(s) = &r {
                    if s.coarse_class_names().is_some() {
                        kind = "CIFAR-100";
                    }
                }
                let stem = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                push_split(&mut splits, &mut problems, &stem, r);
            }
        }
        found.push(info(kind, splits, problems));
    }

    if has("mat") {
        let (mut splits, mut problems) = (Vec::new(), Vec::new());
        if dir.join("train_32x32.mat").is_file() && dir.join("test_32x32.mat").is_file() {
            if let Err(e) = push_whole(&mut splits, Svhn::open_with(dir, opts)) {
                problems.push(e);
            }
        } else {
            for f in files.iter().filter(|p| p.extension().is_some_and(|e| e == "mat")) {
                let stem = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                push_split(&mut splits, &mut problems, &stem, open_svhn_mat(f, opts));
            }
        }
        found.push(info("SVHN-format MAT", splits, problems));
    }
    found
}

/// The data sets in `root` and its immediate sub-directories, in path order. With `hash`,
/// every listed file's SHA-256 is computed (in parallel across files).
///
/// # Errors
/// [`DataError::Io`] if `root` cannot be read as a directory. Problems with individual files
/// are reported in [`DatasetInfo::problems`] instead.
pub fn scan(root: &Path, opts: &OpenOptions, hash: bool) -> Result<Vec<DatasetInfo>> {
    let rd = std::fs::read_dir(root).map_err(|e| DataError::io(root, "read directory", e))?;
    let mut dirs = vec![root.to_path_buf()];
    let mut subs: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    subs.sort();
    dirs.extend(subs);
    let mut out = Vec::new();
    for d in dirs {
        let files = list_files(&d);
        out.extend(scan_dir(&d, &files, opts));
    }
    if hash {
        let mut all: Vec<&mut FileInfo> = out.iter_mut().flat_map(|d| d.files.iter_mut()).collect();
        all.par_iter_mut().for_each(|f| f.sha256 = sha256_file(&f.path).ok());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::tests::scratch;
    use crate::idx::{write_idx_images, write_idx_labels};

    #[test]
    fn scan_finds_idx_and_cifar_and_reports_problems() {
        let root = scratch("info");
        let m = root.join("fashion");
        std::fs::create_dir(&m).unwrap();
        write_idx_images(&m.join("train-images-idx3-ubyte"), &[1, 2, 3, 4, 5, 6, 7, 8], 2, 2).unwrap();
        write_idx_labels(&m.join("train-labels-idx1-ubyte"), &[9, 3]).unwrap();
        let c = root.join("c");
        std::fs::create_dir(&c).unwrap();
        let mut rec = vec![0u8; 3073 * 3];
        rec[3073] = 4;
        std::fs::write(c.join("some.bin"), &rec).unwrap();
        std::fs::write(c.join("broken.bin"), [0u8; 10]).unwrap();
        let found = scan(&root, &OpenOptions::new().in_memory(), true).unwrap();
        assert_eq!(found.len(), 2);
        let c10 = &found[0];
        assert_eq!(c10.kind, "CIFAR-10");
        assert_eq!(c10.splits.len(), 1);
        assert_eq!(c10.splits[0].name, "some");
        assert_eq!(c10.splits[0].class_counts, vec![2, 0, 0, 0, 1, 0, 0, 0, 0, 0]);
        assert_eq!(c10.problems.len(), 1, "{:?}", c10.problems);
        assert!(c10.problems[0].contains("broken.bin"), "{:?}", c10.problems);
        let f = &found[1];
        assert_eq!(f.kind, "Fashion-MNIST");
        assert_eq!(f.splits[0].class_names[9], "Ankle boot");
        assert_eq!(f.splits[0].class_counts[3], 1);
        assert_eq!(f.problems.len(), 1, "the test split is missing: {:?}", f.problems);
        let labels = f.files.iter().find(|x| x.path.ends_with("train-labels-idx1-ubyte")).unwrap();
        assert_eq!(labels.bytes, 10);
        let want = crate::checksum::hex(&crate::checksum::sha256(&std::fs::read(&labels.path).unwrap()));
        assert_eq!(labels.sha256.as_deref(), Some(want.as_str()));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
