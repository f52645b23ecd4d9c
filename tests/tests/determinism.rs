//! Bit-identical results whatever the number of rayon threads.
//!
//! The test crate may not depend on rayon, so instead of building thread pools in-process the
//! test runs this same test binary twice as a child process, with `RAYON_NUM_THREADS=1` and
//! `RAYON_NUM_THREADS=2` (the variable rayon's global pool reads, and the one the engine's
//! determinism promise is stated for). Each child runs the workload and writes the bits of
//! every result to a file; the parent compares the two files bit for bit.
//!
//! The workload exercises every kernel that splits work across threads: a GEMM large enough
//! to be cut into column blocks (300×200 · 200×700) and its two gradient GEMMs, reductions
//! over more than 2·32768 elements (chunked), softmax and cross-entropy backward, and conv2d
//! forward and backward on a batch of 37 (chunked over the batch).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use autograd::{BackwardOptions, Reduction, Tape, Var};
use engine::{Conv2dParams, Tensor};
use sparsegrad_tests::{labels, randn};

/// Where a child writes its results; set only for the child processes.
const OUT_VAR: &str = "SPARSEGRAD_DETERMINISM_OUT";

/// The workload: named results (forward values and gradients).
fn workload() -> BTreeMap<String, Vec<f64>> {
    let mut out = BTreeMap::new();
    let mut put = |name: &str, t: &Tensor<f64>| {
        out.insert(name.to_string(), t.to_vec());
    };

    // GEMM split into column blocks, and its gradients A: G·Bᵀ, B: Aᵀ·G.
    let (a, b) = (randn(&[300, 200], 1), randn(&[200, 700], 2));
    let r = randn(&[300, 700], 3);
    let tape = Tape::new();
    let (va, vb) = (tape.leaf(a), tape.leaf(b));
    let y = va.matmul(&vb);
    let g = tape.backward_with(&y, Some(r), BackwardOptions::default()).unwrap();
    put("matmul", &y.value());
    put("matmul grad a", &g.wrt(&va));
    put("matmul grad b", &g.wrt(&vb));

    // Reductions over 2 × 70000 elements (blocks longer than 2·32768, so chunked).
    let x = randn(&[2, 70_000], 4);
    let tape = Tape::new();
    let vx = tape.leaf(x);
    let parts = [
        vx.sum_all(),
        vx.logsumexp(&[1], false).sum_all(),
        vx.norm_l2(&[0, 1], false),
        vx.mean(&[0], false).max(&[0], false),
    ];
    for (name, p) in ["sum_all", "logsumexp", "norm_l2", "mean+max"].iter().zip(&parts) {
        put(name, &p.value());
    }
    let total = Var::stack(&parts, 0).sum_all();
    put("reductions grad", &tape.backward(&total).unwrap().wrt(&vx));

    // Softmax and cross-entropy backward on [512, 100].
    let logits = randn(&[512, 100], 5);
    let y = labels(512, 100, 6);
    let r = randn(&[512, 100], 7);
    let tape = Tape::new();
    let vl = tape.leaf(logits);
    let loss = vl.cross_entropy(&y, Reduction::Mean).add(&vl.softmax(1).mul(&tape.constant(r)).sum_all());
    put("softmax+ce", &loss.value());
    put("softmax+ce grad", &tape.backward(&loss).unwrap().wrt(&vl));

    // conv2d forward and backward on a batch of 37.
    let (x, w, bias) = (randn(&[37, 3, 16, 16], 8), randn(&[8, 3, 3, 3], 9), randn(&[8], 10));
    let r = randn(&[37, 8, 16, 16], 11);
    let tape = Tape::new();
    let (vx, vw, vb) = (tape.leaf(x), tape.leaf(w), tape.leaf(bias));
    let y = vx.conv2d(&vw, Some(&vb), Conv2dParams::new().padding(1));
    let g = tape.backward_with(&y, Some(r), BackwardOptions::default()).unwrap();
    put("conv2d", &y.value());
    put("conv2d grad x", &g.wrt(&vx));
    put("conv2d grad w", &g.wrt(&vw));
    put("conv2d grad b", &g.wrt(&vb));
    out
}

/// One line per result: its name, then the hexadecimal bits of every value.
fn encode(results: &BTreeMap<String, Vec<f64>>) -> String {
    results
        .iter()
        .map(|(name, v)| {
            let bits: Vec<String> = v.iter().map(|x| format!("{:016x}", x.to_bits())).collect();
            format!("{name}\t{}\n", bits.join(" "))
        })
        .collect()
}

/// Runs the workload in a child process with `threads` rayon threads; returns its output.
fn run_child(threads: usize, dir: &Path) -> String {
    let path: PathBuf = dir.join(format!("determinism-{}-{threads}.txt", std::process::id()));
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["determinism_child", "--exact", "--ignored", "--test-threads=1"])
        .env("RAYON_NUM_THREADS", threads.to_string())
        .env(OUT_VAR, &path)
        .output()
        .expect("run the test binary as a child");
    assert!(
        child.status.success(),
        "child with {threads} thread(s) failed: {}\n{}{}",
        child.status,
        String::from_utf8_lossy(&child.stdout),
        String::from_utf8_lossy(&child.stderr)
    );
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("child wrote no results to {}: {e}", path.display()));
    let _ = std::fs::remove_file(&path);
    text
}

#[test]
fn results_are_bit_identical_with_1_and_2_threads() {
    let dir = std::env::temp_dir();
    let one = run_child(1, &dir);
    let two = run_child(2, &dir);
    let (l1, l2): (Vec<&str>, Vec<&str>) = (one.lines().collect(), two.lines().collect());
    assert_eq!(l1.len(), 14, "expected 14 results, got {}", l1.len());
    assert_eq!(l1.len(), l2.len());
    for (a, b) in l1.iter().zip(&l2) {
        let (name, va) = a.split_once('\t').unwrap();
        let (name2, vb) = b.split_once('\t').unwrap();
        assert_eq!(name, name2);
        let (va, vb): (Vec<&str>, Vec<&str>) = (va.split(' ').collect(), vb.split(' ').collect());
        assert_eq!(va.len(), vb.len(), "{name}: lengths differ");
        if let Some(i) = va.iter().zip(&vb).position(|(x, y)| x != y) {
            let f = |h: &str| f64::from_bits(u64::from_str_radix(h, 16).unwrap());
            panic!("{name}: element {i} differs: {:e} with 1 thread, {:e} with 2", f(va[i]), f(vb[i]));
        }
    }
    // The in-process run (default thread count) agrees too.
    assert_eq!(encode(&workload()), one);
}

/// The child side of [`results_are_bit_identical_with_1_and_2_threads`]; run by it only.
#[test]
#[ignore = "child process of results_are_bit_identical_with_1_and_2_threads"]
fn determinism_child() {
    let path = std::env::var_os(OUT_VAR).unwrap_or_else(|| {
        panic!("{OUT_VAR} is not set: this test is run by results_are_bit_identical_with_1_and_2_threads")
    });
    std::fs::write(path, encode(&workload())).expect("write results");
}
