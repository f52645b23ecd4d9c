//! Times shuffled epochs of MNIST training images into normalised f32 batches of 256, plain and
//! with crop/flip augmentation, through `Loader` (the same work as the criterion bench
//! `bench/benches/data_loading.rs`, without criterion). Reports wall time and process CPU time
//! (`/proc/self/stat`, Linux), which is less disturbed by other load on the machine.
//!
//! ```text
//! cargo run --release -p sparsegrad-datasets --example epoch_time -- [MNIST_DIR] [EPOCHS]
//! ```
//! MNIST_DIR defaults to `$SPARSEGRAD_DATA/mnist` or `../shared/data/mnist`; without it the
//! embedded subset is used.

use std::path::PathBuf;
use std::time::Instant;

use sparsegrad_datasets::{embedded, Augment, Dataset, ImageSet, Loader, LoaderConfig, Mnist, DATA_ENV};

/// User + system CPU time of the process in seconds (clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0 // utime and stime are fields 14 and 15 of the whole line
}

fn time_epochs(name: &str, set: &ImageSet, cfg: LoaderConfig, epochs: u64) {
    let loader = Loader::new(set, cfg);
    let mut walls = Vec::new();
    let cpu0 = cpu_seconds();
    for e in 0..epochs {
        let t = Instant::now();
        let mut n = 0;
        for b in loader.epoch(e) {
            n += b.len();
        }
        assert_eq!(n, set.len());
        walls.push(t.elapsed().as_secs_f64());
    }
    let cpu = (cpu_seconds() - cpu0) / epochs as f64;
    walls.sort_by(f64::total_cmp);
    println!(
        "{name:<28} {} images: wall min {:.1} ms, median {:.1} ms; CPU {:.1} ms per epoch",
        set.len(),
        walls[0] * 1e3,
        walls[walls.len() / 2] * 1e3,
        cpu * 1e3
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args.first().map(PathBuf::from).unwrap_or_else(|| {
        let root = std::env::var_os(DATA_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data")));
        root.join("mnist")
    });
    let epochs: u64 = args.get(1).and_then(|e| e.parse().ok()).unwrap_or(10);
    let train = match Mnist::open(&dir) {
        Ok(s) => {
            println!("MNIST from {}", dir.display());
            s.train
        }
        Err(e) => {
            println!("using the embedded subset ({e})");
            embedded::mnist_subset().train
        }
    };
    let _ = train.channel_stats();
    println!("rayon threads: {}", rayon::current_num_threads());
    time_epochs("plain, batch 256", &train, LoaderConfig::new(256).seed(1), epochs);
    time_epochs(
        "crop 2 + flip, batch 256",
        &train,
        LoaderConfig::new(256).seed(1).augment(Augment::crop_flip(2)),
        epochs,
    );
}
