//! `sparsegrad data …`: inspect data directories (data sets and PGM images) and generate the
//! MNIST variations. Without `--dir` both commands use the MNIST subset embedded in the binary.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use datasets::checksum::sha256_file;
use datasets::info::{self, DatasetInfo};
use datasets::variations::{write_variations, Variation};
use datasets::{embedded, open_cifar_file, read_pgm, Cifar10, Cifar100, Dataset, ImageSet, Mnist, OpenOptions, Split};

use super::fail;
use crate::cli::{InfoArgs, VariationsArgs, USAGE};
use crate::out;

/// A PGM image found by `data info`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgmInfo {
    pub path: PathBuf,
    pub width: usize,
    pub height: usize,
    pub maxval: u16,
    pub plain: bool,
    pub bytes: u64,
    pub sha256: Option<String>,
}

/// What `data info` found: data sets, PGM images, and the PGM files that did not open.
#[derive(Debug, Default)]
pub struct Found {
    pub sets: Vec<DatasetInfo>,
    pub images: Vec<PgmInfo>,
    pub pgm_problems: Vec<String>,
}

impl Found {
    /// True when a data set or an image reported a problem.
    pub fn has_problems(&self) -> bool {
        !self.pgm_problems.is_empty() || self.sets.iter().any(|d| !d.problems.is_empty())
    }
}

fn open_options(cache: Option<&Path>) -> OpenOptions {
    match cache {
        Some(d) => OpenOptions::new().cache_dir(d),
        None => OpenOptions::new(),
    }
}

/// The `*.pgm` files of `root` and of its immediate sub-directories, sorted.
fn pgm_files(root: &Path) -> Vec<PathBuf> {
    let list = |d: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(d).map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect()).unwrap_or_default()
    };
    let mut dirs = vec![root.to_path_buf()];
    dirs.extend(list(root).into_iter().filter(|p| p.is_dir()));
    let mut files: Vec<PathBuf> = dirs
        .iter()
        .flat_map(|d| list(d))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x.eq_ignore_ascii_case("pgm")))
        .collect();
    files.sort();
    files
}

/// Scans `dir` (or describes the embedded subset): data sets and PGM images.
///
/// # Errors
/// A message when the directory cannot be read or holds nothing recognised.
pub fn scan(dir: Option<&Path>, cache: Option<&Path>, hash: bool) -> Result<Found, String> {
    let Some(dir) = dir else {
        return Ok(Found { sets: vec![info::describe_embedded()], ..Found::default() });
    };
    let sets = info::scan(dir, &open_options(cache), hash).map_err(|e| e.to_string())?;
    let mut found = Found { sets, ..Found::default() };
    for path in pgm_files(dir) {
        match read_pgm(&path) {
            Ok(p) => found.images.push(PgmInfo {
                bytes: std::fs::metadata(&path).map_or(0, |m| m.len()),
                sha256: if hash { sha256_file(&path).ok() } else { None },
                path,
                width: p.width,
                height: p.height,
                maxval: p.maxval,
                plain: p.plain,
            }),
            Err(e) => found.pgm_problems.push(e.to_string()),
        }
    }
    if found.sets.is_empty() && found.images.is_empty() && found.pgm_problems.is_empty() {
        return Err(format!("no data sets or PGM images found in {} or its sub-directories", dir.display()));
    }
    Ok(found)
}

/// Runs `sparsegrad data info`: 0 when everything found opened, 1 when a problem is reported
/// (or nothing is found).
pub fn info(a: &InfoArgs) -> i32 {
    let found = match scan(a.dir.as_deref(), a.cache.as_deref(), !a.no_hash) {
        Ok(f) => f,
        Err(e) => return fail("data info", e, 1),
    };
    out!("{}", if a.json { json(&found) } else { text(&found) });
    if found.has_problems() {
        let n = found.pgm_problems.len() + found.sets.iter().map(|d| d.problems.len()).sum::<usize>();
        return fail("data info", format!("{n} problem(s) reported"), 1);
    }
    0
}

/// Runs `sparsegrad data make-variations`.
pub fn make_variations(a: &VariationsArgs) -> i32 {
    match variations(a) {
        Ok(report) => {
            out!("{report}");
            0
        }
        Err((msg, status)) => fail("data make-variations", msg, status),
    }
}

fn counts_line(names: &[String], counts: &[usize]) -> String {
    if counts.len() > 1 && counts.iter().all(|&c| c == counts[0]) {
        return format!("{} per class", counts[0]);
    }
    names.iter().zip(counts).map(|(n, c)| format!("{n}:{c}")).collect::<Vec<_>>().join(" ")
}

fn text(found: &Found) -> String {
    let mut s = String::new();
    for d in &found.sets {
        let where_ = if d.dir.as_os_str().is_empty() {
            "built into the program".to_string()
        } else {
            format!("in {}", d.dir.display())
        };
        let _ = writeln!(s, "{} {where_}", d.kind);
        for sp in &d.splits {
            let [c, h, w] = sp.image_shape;
            let _ = writeln!(s, "  {}: {} images of {c}×{h}×{w}, {} classes", sp.name, sp.len, sp.class_names.len());
            let _ = writeln!(s, "    per class: {}", counts_line(&sp.class_names, &sp.class_counts));
            if let Some(cc) = &sp.coarse_counts {
                let names: Vec<String> = (0..cc.len()).map(|k| k.to_string()).collect();
                let _ = writeln!(s, "    per coarse class: {}", counts_line(&names, cc));
            }
        }
        let _ = writeln!(s, "  files:");
        for f in &d.files {
            let name = f.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let sha = f.sha256.as_deref().unwrap_or("-");
            let _ = writeln!(s, "    {name:<40} {:>12} bytes  sha256 {sha}", f.bytes);
        }
        for p in &d.problems {
            let _ = writeln!(s, "  problem: {p}");
        }
    }
    if !found.images.is_empty() || !found.pgm_problems.is_empty() {
        let _ = writeln!(s, "PGM images ({})", found.images.len());
        for im in &found.images {
            let sha = im.sha256.as_deref().unwrap_or("-");
            let _ = writeln!(
                s,
                "  {:<40} {:>4}×{:<4} maxval {:<5} {} {:>10} bytes  sha256 {sha}",
                im.path.display(),
                im.width,
                im.height,
                im.maxval,
                if im.plain { "P2" } else { "P5" },
                im.bytes
            );
        }
        for p in &found.pgm_problems {
            let _ = writeln!(s, "  problem: {p}");
        }
    }
    s
}

/// A JSON string literal.
fn js(v: &str) -> String {
    autograd::audit::json_str(v)
}

fn js_list<T>(items: &[T], f: impl Fn(&T) -> String) -> String {
    format!("[{}]", items.iter().map(f).collect::<Vec<_>>().join(","))
}

fn js_path(p: &Path) -> String {
    js(&p.to_string_lossy())
}

fn json(found: &Found) -> String {
    let sets = js_list(&found.sets, |d| {
        let splits = js_list(&d.splits, |sp| {
            format!(
                "{{\"name\":{},\"len\":{},\"image_shape\":{},\"class_names\":{},\"class_counts\":{},\"coarse_counts\":{},\"files\":{}}}",
                js(&sp.name),
                sp.len,
                js_list(&sp.image_shape, |x| x.to_string()),
                js_list(&sp.class_names, |n| js(n)),
                js_list(&sp.class_counts, |x| x.to_string()),
                sp.coarse_counts.as_ref().map_or("null".to_string(), |c| js_list(c, |x| x.to_string())),
                js_list(&sp.files, |p| js_path(p)),
            )
        });
        let files = js_list(&d.files, |f| {
            format!(
                "{{\"path\":{},\"bytes\":{},\"sha256\":{}}}",
                js_path(&f.path),
                f.bytes,
                f.sha256.as_deref().map_or("null".to_string(), js)
            )
        });
        format!(
            "{{\"kind\":{},\"dir\":{},\"splits\":{splits},\"files\":{files},\"problems\":{}}}",
            js(&d.kind),
            js_path(&d.dir),
            js_list(&d.problems, |p| js(p))
        )
    });
    let images = js_list(&found.images, |im| {
        format!(
            "{{\"path\":{},\"width\":{},\"height\":{},\"maxval\":{},\"plain\":{},\"bytes\":{},\"sha256\":{}}}",
            js_path(&im.path),
            im.width,
            im.height,
            im.maxval,
            im.plain,
            im.bytes,
            im.sha256.as_deref().map_or("null".to_string(), js)
        )
    });
    let problems = js_list(&found.pgm_problems, |p| js(p));
    format!("{{\"datasets\":{sets},\"pgm_images\":{images},\"pgm_problems\":{problems}}}\n")
}

/// The MNIST directory for `--dir DIR`: DIR itself when it holds IDX files, else DIR/mnist.
fn mnist_dir(dir: &Path) -> PathBuf {
    let has_idx = datasets::idx::find_idx(dir, "train", "images").is_ok();
    if has_idx {
        dir.to_path_buf()
    } else {
        dir.join("mnist")
    }
}

/// Background images: `--backgrounds PATH` (a record file or a directory), else a CIFAR
/// directory near the MNIST data. Returns the set and a description of where it came from.
fn backgrounds(
    explicit: Option<&Path>,
    data_dir: Option<&Path>,
    opts: &OpenOptions,
) -> Result<Option<(ImageSet, String)>, String> {
    let from_path = |p: &Path| -> Result<Option<(ImageSet, String)>, String> {
        if p.is_file() {
            let s = open_cifar_file(p, None).map_err(|e| e.to_string())?;
            return Ok(Some((s, p.display().to_string())));
        }
        if let Ok(s) = Cifar10::open_with(p, opts).or_else(|_| Cifar100::open_with(p, opts)) {
            return Ok(Some((s.train, format!("{} (training split)", p.display()))));
        }
        let mut bins: Vec<PathBuf> = std::fs::read_dir(p)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|f| f.extension().is_some_and(|x| x == "bin"))
                    .collect()
            })
            .unwrap_or_default();
        bins.sort();
        let train =
            bins.iter().find(|b| b.file_name().is_some_and(|n| n.to_string_lossy().contains("train"))).or(bins.first());
        match train {
            Some(f) => Ok(Some((open_cifar_file(f, None).map_err(|e| e.to_string())?, f.display().to_string()))),
            None => Ok(None),
        }
    };
    if let Some(p) = explicit {
        return match from_path(p)? {
            Some(b) => Ok(Some(b)),
            None => Err(format!("no CIFAR record files in {}", p.display())),
        };
    }
    let Some(dir) = data_dir else { return Ok(None) };
    let mut roots = vec![dir.to_path_buf()];
    if let Some(parent) = dir.parent() {
        roots.push(parent.to_path_buf());
    }
    for root in roots {
        for name in ["cifar-100", "cifar-10", "cifar-100-binary", "cifar-10-batches-bin"] {
            let cand = root.join(name);
            if cand.is_dir() {
                if let Some(b) = from_path(&cand)? {
                    return Ok(Some(b));
                }
            }
        }
    }
    Ok(None)
}

/// `data make-variations`: writes the files and returns the report to print, or a message
/// and the exit status (2 for a usage error, 1 for a data error).
fn variations(a: &VariationsArgs) -> Result<String, (String, i32)> {
    let data_err = |e: String| (e, 1);
    let out = a.out.display().to_string();
    let requested: Option<Vec<Variation>> = a
        .only
        .as_deref()
        .map(|list| {
            list.split(',')
                .map(|s| {
                    Variation::parse(s.trim()).ok_or_else(|| {
                        (
                            format!("unknown variation `{s}` (expected rot, back-rand, back-image or rot-back-image)"),
                            USAGE,
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let opts = open_options(a.cache.as_deref());
    let data_dir = a.dir.as_deref();
    let mnist: Split = match data_dir {
        Some(d) => Mnist::open_with(mnist_dir(d), &opts).map_err(|e| data_err(e.to_string()))?,
        None => embedded::mnist_subset(),
    };
    let bg = backgrounds(a.backgrounds.as_deref(), data_dir, &opts).map_err(data_err)?;
    let mut report = String::new();
    let kinds: Vec<Variation> = match (&requested, &bg) {
        (Some(k), None) if k.iter().any(|v| v.needs_backgrounds()) => {
            return Err(("back-image variations need CIFAR images; pass --backgrounds PATH".into(), USAGE));
        }
        (Some(k), _) => k.clone(),
        (None, Some(_)) => Variation::ALL.to_vec(),
        (None, None) => {
            let _ = writeln!(report, "note: no CIFAR images found for backgrounds; skipping back-image and rot-back-image (use --backgrounds PATH)");
            Variation::ALL.into_iter().filter(|v| !v.needs_backgrounds()).collect()
        }
    };
    let (bg_set, bg_name) = match &bg {
        Some((s, n)) => (Some(s), n.as_str()),
        None => (None, "none"),
    };
    let written = write_variations(&mnist, bg_set, bg_name, &a.out, &kinds, a.seed, a.limit)
        .map_err(|e| data_err(e.to_string()))?;
    let limit = a.limit;
    let _ = writeln!(
        report,
        "wrote {} variation(s) of {} ({} train + {} test images each, seed {}) to {out}:",
        kinds.len(),
        mnist.train.name(),
        limit.map_or(mnist.train.len(), |l| l.min(mnist.train.len())),
        limit.map_or(mnist.test.len(), |l| l.min(mnist.test.len())),
        a.seed,
    );
    for v in &kinds {
        let _ = writeln!(report, "  {}", a.out.join(v.name()).display());
    }
    if kinds.iter().any(|v| v.needs_backgrounds()) {
        let _ = writeln!(report, "backgrounds: {bg_name}");
    }
    let _ = writeln!(report, "{} files", written.len());
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command, DataCommand};
    use clap::Parser;

    fn parse(words: &[&str]) -> Result<DataCommand, clap::Error> {
        let argv = ["sparsegrad", "data"].iter().chain(words);
        match Cli::try_parse_from(argv)?.command {
            Some(Command::Data(d)) => Ok(d.command),
            other => panic!("{other:?}"),
        }
    }

    fn info_args(words: &[&str]) -> InfoArgs {
        match parse(&[&["info"], words].concat()).unwrap() {
            DataCommand::Info(a) => a,
            other => panic!("{other:?}"),
        }
    }

    fn var_args(words: &[&str]) -> VariationsArgs {
        match parse(&[&["make-variations"], words].concat()).unwrap() {
            DataCommand::MakeVariations(a) => a,
            other => panic!("{other:?}"),
        }
    }

    fn info_text(words: &[&str]) -> Result<String, String> {
        let a = info_args(words);
        scan(a.dir.as_deref(), a.cache.as_deref(), !a.no_hash).map(|f| if a.json { json(&f) } else { text(&f) })
    }

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sparsegrad-cli-data-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn usage_errors_and_data_errors() {
        for bad in [
            &["nope"][..],
            &["info", "--dir"],
            &["make-variations", "--seed", "1"],
            &["make-variations", "--out", "x", "--seed", "-3"],
        ] {
            assert_eq!(parse(bad).unwrap_err().exit_code(), USAGE, "{bad:?}");
        }
        let e = variations(&var_args(&["--out", "x", "--only", "rot,spin"])).unwrap_err();
        assert!(e.0.contains("unknown variation `spin`") && e.1 == USAGE, "{e:?}");
        let e = info_text(&["--dir", "/nonexistent/sparsegrad"]).unwrap_err();
        assert!(e.contains("/nonexistent/sparsegrad: cannot read directory"), "{e}");
    }

    #[test]
    fn info_on_the_embedded_subset() {
        let t = info_text(&[]).unwrap();
        assert!(t.starts_with("MNIST (embedded subset) built into the program\n"), "{t}");
        assert!(t.contains("  train: 1000 images of 1×28×28, 10 classes\n    per class: 100 per class\n"), "{t}");
        let j = info_text(&["--json"]).unwrap();
        assert!(j.starts_with("{\"datasets\":[{\"kind\":\"MNIST (embedded subset)\""), "{j}");
        assert!(j.contains("\"class_counts\":[100,100,100,100,100,100,100,100,100,100]"), "{j}");
        assert_eq!(j.matches('{').count(), j.matches('}').count());
        assert_eq!(js("a\"b\\\n\u{1}"), "\"a\\\"b\\\\\\n\\u0001\"");
    }

    #[test]
    fn info_lists_pgm_images_and_reports_broken_ones() {
        let d = scratch("pgm");
        std::fs::write(d.join("a.pgm"), datasets::pgm::pgm_bytes(3, 2, 255, &[0, 1, 2, 3, 4, 5])).unwrap();
        let t = info_text(&["--dir", d.to_str().unwrap(), "--no-hash"]).unwrap();
        assert!(t.contains("PGM images (1)") && t.contains("   3×2    maxval 255   P5"), "{t}");
        let found = scan(Some(&d), None, false).unwrap();
        assert!(!found.has_problems());
        std::fs::write(d.join("b.pgm"), b"P5 3 2 255\n\x00").unwrap();
        let found = scan(Some(&d), None, false).unwrap();
        assert!(found.has_problems() && found.pgm_problems[0].contains("b.pgm"), "{found:?}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn make_variations_from_the_embedded_subset_and_a_background_file() {
        let d = scratch("var");
        let out = d.join("out");
        // one CIFAR-10 record file of 4 images as the background source
        let bgf = d.join("bg_train.bin");
        let mut rec = Vec::new();
        for r in 0..4u8 {
            rec.push(r);
            rec.extend((0..3072).map(|p| (p % 200) as u8 + r));
        }
        std::fs::write(&bgf, &rec).unwrap();
        let a =
            ["--out", out.to_str().unwrap(), "--limit", "30", "--seed", "5", "--backgrounds", bgf.to_str().unwrap()];
        let report = variations(&var_args(&a)).unwrap();
        assert!(
            report.contains("wrote 4 variation(s) of mnist-subset/train (30 train + 30 test images each, seed 5)"),
            "{report}"
        );
        let base = embedded::mnist_subset();
        for v in Variation::ALL {
            let s = Mnist::open_with(out.join(v.name()), &OpenOptions::new().in_memory()).unwrap();
            assert_eq!((s.train.len(), s.test.len()), (30, 30));
            assert_eq!(s.train.labels(), base.train.labels()[..30].to_vec());
            assert_ne!(s.train.image_u8(0).to_vec(), base.train.image_u8(0).to_vec(), "{}", v.name());
        }
        // Same seed: byte-identical files.
        let out2 = d.join("out2");
        let mut a2 = a;
        a2[1] = out2.to_str().unwrap();
        variations(&var_args(&a2)).unwrap();
        let f = "mnist-rot-back-image/t10k-images-idx3-ubyte";
        assert_eq!(std::fs::read(out.join(f)).unwrap(), std::fs::read(out2.join(f)).unwrap());
        // Without backgrounds the image variations are skipped, or refused when requested.
        let out3 = d.join("out3");
        let r = variations(&var_args(&["--out", out3.to_str().unwrap(), "--limit", "5"])).unwrap();
        assert!(r.contains("skipping back-image and rot-back-image"), "{r}");
        assert!(out3.join("mnist-back-rand/train-images-idx3-ubyte").is_file());
        assert!(!out3.join("mnist-back-image").exists());
        let e = variations(&var_args(&["--out", out3.to_str().unwrap(), "--only", "back-image"])).unwrap_err();
        assert!(e.0.contains("need CIFAR images"), "{e:?}");
        // info on the output finds four MNIST directories.
        let t = info_text(&["--dir", out.to_str().unwrap(), "--no-hash"]).unwrap();
        assert_eq!(t.matches("MNIST in ").count(), 4, "{t}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
