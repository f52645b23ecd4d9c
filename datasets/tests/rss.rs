//! Opening the 77 MB CIFAR-100 training file must not fault its pages in: `VmRSS` may grow by
//! less than 10 MB. Alone in its own test binary so no other test allocates meanwhile. Linux
//! only; skipped (with a printed reason) when the file or `/proc` is absent.

use sparsegrad_datasets::{open_cifar_file, CifarKind, Dataset};

fn vm_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn opening_the_cifar100_training_file_does_not_grow_rss() {
    let root = sparsegrad_datasets::data_root(env!("CARGO_MANIFEST_DIR"));
    let file = root.join("cifar-100/train_first250_per_class.bin");
    let (Some(before), true) = (vm_rss_kib(), file.is_file()) else {
        sparsegrad_datasets::skip_test("rss", &format!("{} or /proc/self/status not available", file.display()));
        return;
    };
    let set = open_cifar_file(&file, Some(CifarKind::Cifar100)).unwrap();
    let after = vm_rss_kib().unwrap();
    assert_eq!(set.len(), 25000);
    let grown = after.saturating_sub(before);
    eprintln!("rss: VmRSS {before} KiB → {after} KiB (+{grown} KiB) after opening {}", file.display());
    assert!(grown < 10 * 1024, "opening grew VmRSS by {grown} KiB");
    // Reading one image touches one or two pages, not the file.
    let _ = set.image_u8(12345).sum();
    let one = vm_rss_kib().unwrap().saturating_sub(before);
    assert!(one < 10 * 1024, "reading one image grew VmRSS by {one} KiB");
}
