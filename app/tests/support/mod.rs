//! Helpers shared by the integration tests (`mod support;` in each): the SVG parser of the
//! figure checks, and the data root, options and run-twice check of the experiment tests.
//! Each test file is its own crate and uses only some of these, hence the `allow`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use quick_xml::events::Event;
use quick_xml::Reader;
use serde_json::Value;
use sparsegrad::experiments::{run, Common, Experiment};
use sparsegrad::report::grid::Shard;

/// Parses `svg` fully; returns the text nodes. Panics with the position on malformed XML.
pub fn parse(svg: &str) -> Vec<String> {
    let mut r = Reader::from_str(svg);
    let mut depth = 0i64;
    let mut texts = vec![];
    let mut root = None;
    loop {
        match r.read_event() {
            Ok(Event::Start(e)) => {
                if root.is_none() {
                    root = Some(String::from_utf8_lossy(e.name().as_ref()).to_string());
                }
                for a in e.attributes() {
                    a.unwrap_or_else(|err| panic!("bad attribute at {}: {err}", r.buffer_position()));
                }
                depth += 1;
            }
            Ok(Event::Empty(e)) => {
                for a in e.attributes() {
                    a.unwrap_or_else(|err| panic!("bad attribute at {}: {err}", r.buffer_position()));
                }
            }
            Ok(Event::End(_)) => depth -= 1,
            Ok(Event::Text(t)) => {
                let s = t.unescape().unwrap_or_else(|err| panic!("bad text at {}: {err}", r.buffer_position()));
                if !s.trim().is_empty() {
                    texts.push(s.to_string());
                }
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("malformed XML at {}: {e}", r.buffer_position()),
        }
        assert!(depth >= 0, "an end tag without a start");
    }
    assert_eq!(depth, 0, "unclosed elements");
    assert_eq!(root.as_deref(), Some("svg"));
    texts
}

/// The data root, or `None` (after `skip_test`, saying that the root `has no {what}`) when
/// one of the files `needs` (paths under the root) is not staged.
pub fn data_with(test: &str, needs: &[&str], what: &str) -> Option<PathBuf> {
    let root = datasets::data_root(env!("CARGO_MANIFEST_DIR"));
    if needs.iter().all(|f| root.join(f).is_file()) {
        Some(root)
    } else {
        datasets::skip_test(test, &format!("{} has no {what}", root.display()));
        None
    }
}

/// The options of a quick run writing under `out`, reading `data` (seed 3; quiet unless
/// `SG_SHOW` is set).
pub fn common(out: &Path, data: &Path) -> Common {
    Common {
        out: out.to_path_buf(),
        quick: true,
        shard: Shard::default(),
        seed: 3,
        data_dir: Some(data.to_path_buf()),
        quiet: std::env::var_os("SG_SHOW").is_none(),
    }
}

/// The names of the plain files in `dir`, sorted.
pub fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

/// Runs `e` in a fresh directory, checks the files, the SVGs and that a rerun computes no
/// cell; returns the directory (removed by the caller) and `tables.json`.
pub fn run_twice(e: &dyn Experiment, data: &Path, expect: &[&str]) -> (PathBuf, Value) {
    let out = std::env::temp_dir().join(format!("sg-{}-{}", e.name(), std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let c = common(&out, data);
    let t0 = Instant::now();
    run(e, &c).unwrap();
    eprintln!("{}: {:.1} s", e.name(), t0.elapsed().as_secs_f64());
    // config.txt records the configuration the cells were computed with.
    let mut got = files(&out);
    assert!(got.iter().any(|f| f == "config.txt"), "no config.txt in {got:?}");
    got.retain(|f| f != "config.txt");
    assert_eq!(got, expect);
    for f in expect.iter().filter(|f| f.ends_with(".svg")) {
        let texts = parse(&std::fs::read_to_string(out.join(f)).unwrap());
        assert!(!texts.is_empty(), "{f} has no text");
    }
    let cells = e.grid(&c);
    let stamp = |cell: &sparsegrad::report::grid::Cell| {
        std::fs::metadata(out.join("cells").join(format!("{}.json", cell.id))).unwrap().modified().unwrap()
    };
    let before: Vec<_> = cells.iter().map(stamp).collect();
    let t1 = Instant::now();
    run(e, &c).unwrap();
    let after: Vec<_> = cells.iter().map(stamp).collect();
    assert_eq!(before, after, "the rerun rewrote a cell");
    assert!(t1.elapsed().as_secs_f64() < 10.0, "the rerun took {:.1} s", t1.elapsed().as_secs_f64());
    let tables: Value = serde_json::from_str(&std::fs::read_to_string(out.join("tables.json")).unwrap()).unwrap();
    (out, tables)
}
