//! Resident memory (`VmRSS` from `/proc/self/status`) before and after opening the 77 MB
//! CIFAR-100 training file, then after reading every image once (to show the mapping is what
//! grows, and only when pages are touched). Linux only.
//!
//! ```text
//! cargo run --release -p sparsegrad-datasets --example rss_open -- [FILE]
//! ```
//! FILE defaults to `$SPARSEGRAD_DATA/cifar-100/train_first250_per_class.bin` or
//! `../shared/data/cifar-100/train_first250_per_class.bin`.

use std::path::PathBuf;
use std::time::Instant;

use sparsegrad_datasets::{open_cifar_file, CifarKind, Dataset, DATA_ENV};

/// `VmRSS` in KiB.
fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status (Linux only)");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS value")
}

fn main() {
    let file = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| {
        let root = std::env::var_os(DATA_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data")));
        root.join("cifar-100/train_first250_per_class.bin")
    });
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or_else(|e| {
        eprintln!("{}: {e}", file.display());
        std::process::exit(1);
    });
    let before = vm_rss_kib();
    let t = Instant::now();
    let set = open_cifar_file(&file, Some(CifarKind::Cifar100)).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1);
    });
    let open_time = t.elapsed();
    let after = vm_rss_kib();
    let sum: u64 = (0..set.len()).map(|i| set.image_u8(i).sum()).sum();
    let touched = vm_rss_kib();
    println!("file: {} ({size} bytes, {} images)", file.display(), set.len());
    println!("VmRSS before open:        {before} KiB");
    println!(
        "VmRSS after open:         {after} KiB (+{} KiB) in {:.1} ms",
        after as i64 - before as i64,
        open_time.as_secs_f64() * 1e3
    );
    println!("VmRSS after reading all:  {touched} KiB (+{} KiB; pixel sum {sum})", touched as i64 - before as i64);
}
