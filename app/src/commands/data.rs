//! `sparsegrad data …`: inspect data directories and generate the MNIST variations.
//!
//! ```text
//! sparsegrad data info [--dir DIR] [--json] [--no-hash] [--cache DIR]
//! sparsegrad data make-variations [--dir DIR] --out DIR [--seed N] [--limit N]
//!                                 [--only LIST] [--backgrounds PATH] [--cache DIR]
//! ```
//! Without `--dir` both commands use the MNIST subset embedded in the binary.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use datasets::info::{self, DatasetInfo};
use datasets::variations::{write_variations, Variation};
use datasets::{embedded, open_cifar_file, Cifar10, Cifar100, Dataset, ImageSet, Mnist, OpenOptions, Split};

const HELP: &str = "\
sparsegrad data: inspect data sets and generate derived ones

USAGE:
    sparsegrad data info [--dir DIR] [--json] [--no-hash] [--cache DIR]
    sparsegrad data make-variations [--dir DIR] --out DIR [--seed N] [--limit N]
                                    [--only LIST] [--backgrounds PATH] [--cache DIR]
    sparsegrad data <command> --help

COMMANDS:
    info              which data sets are in DIR and its sub-directories, with counts per
                      split and per class, sizes and SHA-256 of every file
    make-variations   write MNIST variations (rot, back-rand, back-image, rot-back-image)
                      as IDX files

Without --dir the MNIST subset embedded in the program (1,000 + 1,000 images) is used.
Compressed inputs (.gz, compressed MAT elements) are inflated once into a cache: --cache DIR,
else $SPARSEGRAD_CACHE, else beside the data if writable, else ~/.cache/sparsegrad.
";

const INFO_HELP: &str = "\
sparsegrad data info: describe the data sets in a directory

USAGE:
    sparsegrad data info [--dir DIR] [--json] [--no-hash] [--cache DIR]

OPTIONS:
    --dir DIR      directory to scan (DIR and its immediate sub-directories); without it,
                   the embedded MNIST subset is described
    --json         print JSON instead of text
    --no-hash      skip the SHA-256 of each file
    --cache DIR    where inflated copies of compressed files go
    -h, --help     print this help

Recognised: MNIST / Fashion-MNIST IDX files (plain or .gz; a directory whose name contains
\"fashion\" gets the Fashion-MNIST class names), CIFAR-10 / CIFAR-100 binary record files
(*.bin), SVHN-style MAT files (*.mat). Files that fail to open are listed as problems with
the reader's error (file, byte offset, what was expected).
";

const VARIATIONS_HELP: &str = "\
sparsegrad data make-variations: generate MNIST variations (Larochelle et al. 2007 style)

USAGE:
    sparsegrad data make-variations [--dir DIR] --out DIR [--seed N] [--limit N]
                                    [--only LIST] [--backgrounds PATH] [--cache DIR]

OPTIONS:
    --dir DIR            MNIST directory, or a data root containing mnist/ (and cifar-100/ or
                         cifar-10/ for backgrounds); default: the embedded MNIST subset
    --out DIR            output root; each variation goes to OUT/mnist-<name>/ as
                         train-/t10k- images and labels IDX files plus README.txt
    --seed N             seed (default 0); the same seed gives byte-identical files
    --limit N            only the first N images of each split
    --only LIST          comma-separated subset of rot,back-rand,back-image,rot-back-image
    --backgrounds PATH   CIFAR record file or directory for the back-image variations
                         (default: a training file under DIR/cifar-100 or DIR/cifar-10)
    --cache DIR          where inflated copies of compressed files go
    -h, --help           print this help

Variations: rot = rotation by a uniform angle in [0, 2pi) with bilinear interpolation;
back-rand = uniform noise where the digit is absent; back-image = random patches of
grayscale CIFAR images behind the digit; rot-back-image = both. Without background images
the back-image variations are skipped (an error if requested with --only).
";

/// Runs `sparsegrad data <args>`; `args` are the words after `data`. Prints results to stdout.
///
/// # Errors
/// A message for the user: an unknown command or option, a missing or invalid value, or a
/// data error (which names the file, byte offset and what was expected).
pub fn run(args: &[String]) -> Result<(), String> {
    let Some((cmd, rest)) = args.split_first() else {
        print!("{HELP}");
        return Ok(());
    };
    match cmd.as_str() {
        "-h" | "--help" | "help" => {
            print!("{HELP}");
            Ok(())
        }
        "info" => info_cmd(rest).map(|out| print!("{out}")),
        "make-variations" => variations_cmd(rest).map(|out| print!("{out}")),
        other => Err(format!(
            "data: unknown command `{other}` (expected `info` or `make-variations`; see `sparsegrad data --help`)"
        )),
    }
}

/// Parsed `--name value` options and flags.
struct Opts {
    values: Vec<(String, String)>,
    flags: Vec<String>,
}

impl Opts {
    /// Parses `args` against the allowed value options and flags of `cmd`.
    fn parse(cmd: &str, args: &[String], with_value: &[&str], flags: &[&str]) -> Result<Opts, String> {
        let mut o = Opts { values: Vec::new(), flags: Vec::new() };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if with_value.contains(&a.as_str()) {
                let v = it.next().ok_or_else(|| format!("data {cmd}: {a} needs a value"))?;
                o.values.push((a.clone(), v.clone()));
            } else if flags.contains(&a.as_str()) {
                o.flags.push(a.clone());
            } else {
                return Err(format!("data {cmd}: unexpected argument `{a}` (see `sparsegrad data {cmd} --help`)"));
            }
        }
        Ok(o)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    fn number(&self, cmd: &str, name: &str) -> Result<Option<u64>, String> {
        self.get(name)
            .map(|v| {
                v.parse::<u64>().map_err(|_| format!("data {cmd}: {name} expects a non-negative integer, got `{v}`"))
            })
            .transpose()
    }

    fn open_options(&self) -> OpenOptions {
        match self.get("--cache") {
            Some(d) => OpenOptions::new().cache_dir(d),
            None => OpenOptions::new(),
        }
    }
}

fn wants_help(args: &[String]) -> bool {
    args.iter().any(|a| a == "-h" || a == "--help")
}

/// `data info`: returns the text to print.
fn info_cmd(args: &[String]) -> Result<String, String> {
    if wants_help(args) {
        return Ok(INFO_HELP.to_string());
    }
    let o = Opts::parse("info", args, &["--dir", "--cache"], &["--json", "--no-hash"])?;
    let found = match o.get("--dir") {
        Some(dir) => {
            let found =
                info::scan(Path::new(dir), &o.open_options(), !o.flag("--no-hash")).map_err(|e| e.to_string())?;
            if found.is_empty() {
                return Err(format!("data info: no data sets found in {dir} or its sub-directories"));
            }
            found
        }
        None => vec![info::describe_embedded()],
    };
    Ok(if o.flag("--json") { json(&found) } else { text(&found) })
}

fn counts_line(names: &[String], counts: &[usize]) -> String {
    if counts.len() > 1 && counts.iter().all(|&c| c == counts[0]) {
        return format!("{} per class", counts[0]);
    }
    names.iter().zip(counts).map(|(n, c)| format!("{n}:{c}")).collect::<Vec<_>>().join(" ")
}

fn text(found: &[DatasetInfo]) -> String {
    let mut s = String::new();
    for d in found {
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

fn json(found: &[DatasetInfo]) -> String {
    let sets = js_list(found, |d| {
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
    format!("{{\"datasets\":{sets}}}\n")
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
    explicit: Option<&str>,
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
        return match from_path(Path::new(p))? {
            Some(b) => Ok(Some(b)),
            None => Err(format!("data make-variations: no CIFAR record files in {p}")),
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

/// `data make-variations`: writes the files and returns the report to print.
fn variations_cmd(args: &[String]) -> Result<String, String> {
    if wants_help(args) {
        return Ok(VARIATIONS_HELP.to_string());
    }
    let o = Opts::parse(
        "make-variations",
        args,
        &["--dir", "--out", "--seed", "--limit", "--only", "--backgrounds", "--cache"],
        &[],
    )?;
    let out = o.get("--out").ok_or("data make-variations: --out DIR is required (see --help)")?;
    let seed = o.number("make-variations", "--seed")?.unwrap_or(0);
    let limit = o.number("make-variations", "--limit")?.map(|l| l as usize);
    let requested: Option<Vec<Variation>> = o
        .get("--only")
        .map(|list| {
            list.split(',')
                .map(|s| Variation::parse(s.trim()).ok_or_else(|| format!("data make-variations: unknown variation `{s}` (expected rot, back-rand, back-image or rot-back-image)")))
                .collect::<Result<Vec<_>, String>>()
        })
        .transpose()?;
    let opts = o.open_options();
    let data_dir = o.get("--dir").map(Path::new);
    let mnist: Split = match data_dir {
        Some(d) => Mnist::open_with(mnist_dir(d), &opts).map_err(|e| e.to_string())?,
        None => embedded::mnist_subset(),
    };
    let bg = backgrounds(o.get("--backgrounds"), data_dir, &opts)?;
    let mut report = String::new();
    let kinds: Vec<Variation> = match (&requested, &bg) {
        (Some(k), None) if k.iter().any(|v| v.needs_backgrounds()) => {
            return Err("data make-variations: back-image variations need CIFAR images; pass --backgrounds PATH".into());
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
    let written =
        write_variations(&mnist, bg_set, bg_name, Path::new(out), &kinds, seed, limit).map_err(|e| e.to_string())?;
    let _ = writeln!(
        report,
        "wrote {} variation(s) of {} ({} train + {} test images each, seed {seed}) to {out}:",
        kinds.len(),
        mnist.train.name(),
        limit.map_or(mnist.train.len(), |l| l.min(mnist.train.len())),
        limit.map_or(mnist.test.len(), |l| l.min(mnist.test.len())),
    );
    for v in &kinds {
        let _ = writeln!(report, "  {}", Path::new(out).join(v.name()).display());
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

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sparsegrad-cli-data-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn help_and_errors() {
        assert!(info_cmd(&args(&["--help"])).unwrap().contains("--no-hash"));
        assert!(variations_cmd(&args(&["-h"])).unwrap().contains("--backgrounds PATH"));
        assert!(run(&args(&["--help"])).is_ok());
        let e = run(&args(&["nope"])).unwrap_err();
        assert!(e.contains("unknown command `nope`"), "{e}");
        let e = info_cmd(&args(&["--dir"])).unwrap_err();
        assert_eq!(e, "data info: --dir needs a value");
        let e = variations_cmd(&args(&["--seed", "1"])).unwrap_err();
        assert!(e.contains("--out DIR is required"), "{e}");
        let e = variations_cmd(&args(&["--out", "x", "--seed", "-3"])).unwrap_err();
        assert!(e.contains("--seed expects a non-negative integer, got `-3`"), "{e}");
        let e = variations_cmd(&args(&["--out", "x", "--only", "rot,spin"])).unwrap_err();
        assert!(e.contains("unknown variation `spin`"), "{e}");
        let e = info_cmd(&args(&["--dir", "/nonexistent/sparsegrad"])).unwrap_err();
        assert!(e.contains("/nonexistent/sparsegrad: cannot read directory"), "{e}");
    }

    #[test]
    fn info_on_the_embedded_subset() {
        let t = info_cmd(&[]).unwrap();
        assert!(t.starts_with("MNIST (embedded subset) built into the program\n"), "{t}");
        assert!(t.contains("  train: 1000 images of 1×28×28, 10 classes\n    per class: 100 per class\n"), "{t}");
        assert!(t.contains("100 per class"), "{t}");
        let j = info_cmd(&args(&["--json"])).unwrap();
        assert!(j.starts_with("{\"datasets\":[{\"kind\":\"MNIST (embedded subset)\""), "{j}");
        assert!(j.contains("\"class_counts\":[100,100,100,100,100,100,100,100,100,100]"), "{j}");
        assert_eq!(j.matches('{').count(), j.matches('}').count());
        assert_eq!(js("a\"b\\\n\u{1}"), "\"a\\\"b\\\\\\n\\u0001\"");
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
        let a = args(&[
            "--out",
            out.to_str().unwrap(),
            "--limit",
            "30",
            "--seed",
            "5",
            "--backgrounds",
            bgf.to_str().unwrap(),
        ]);
        let report = variations_cmd(&a).unwrap();
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
        let mut a2 = a.clone();
        a2[1] = out2.to_str().unwrap().to_string();
        variations_cmd(&a2).unwrap();
        let f = "mnist-rot-back-image/t10k-images-idx3-ubyte";
        assert_eq!(std::fs::read(out.join(f)).unwrap(), std::fs::read(out2.join(f)).unwrap());
        // Without backgrounds the image variations are skipped, or refused when requested.
        let out3 = d.join("out3");
        let r = variations_cmd(&args(&["--out", out3.to_str().unwrap(), "--limit", "5"])).unwrap();
        assert!(r.contains("skipping back-image and rot-back-image"), "{r}");
        assert!(out3.join("mnist-back-rand/train-images-idx3-ubyte").is_file());
        assert!(!out3.join("mnist-back-image").exists());
        let e = variations_cmd(&args(&["--out", out3.to_str().unwrap(), "--only", "back-image"])).unwrap_err();
        assert!(e.contains("need CIFAR images"), "{e}");
        // info on the output finds four MNIST directories.
        let t = info_cmd(&args(&["--dir", out.to_str().unwrap(), "--no-hash"])).unwrap();
        assert_eq!(t.matches("MNIST in ").count(), 4, "{t}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
