//! Deterministic mutation test: valid files of every supported format are corrupted thousands
//! of times (bit flips, byte overwrites, "interesting" 32-bit words, truncation, deletion,
//! appended garbage) with a fixed seed, and each result is opened and fully read. Every
//! outcome must be `Ok` or a clean `Err` naming the file; a panic fails the test and prints the
//! case number and mutations so it can be replayed.
//!
//! Compressed inputs are built here with *stored* deflate blocks (no compressor needed); when
//! the real data is present, its small compressed files (`t10k-labels-idx1-ubyte.gz`, the
//! compressed SVHN-layout MAT file) are mutated too, covering Huffman-coded streams.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use engine::Rng;
use sparsegrad_datasets::checksum::adler32;
use sparsegrad_datasets::idx::{idx_images_bytes, idx_labels_bytes};
use sparsegrad_datasets::pgm::{pgm_bytes, pgm_plain_bytes};
use sparsegrad_datasets::{
    open_cifar_file, open_idx_pair, open_svhn_mat, read_pgm, CifarKind, Dataset, ImageSet, Loader, LoaderConfig, Mnist,
    OpenOptions, Result,
};

/// CRC-32 (IEEE, reflected, as in gzip), bit by bit.
fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 };
        }
    }
    !c
}

/// Deflate stream of stored blocks (BTYPE 00) holding `data`.
fn stored_deflate(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let chunks: Vec<&[u8]> = if data.is_empty() { vec![&[][..]] } else { data.chunks(65535).collect() };
    for (k, c) in chunks.iter().enumerate() {
        out.push((k + 1 == chunks.len()) as u8);
        out.extend_from_slice(&(c.len() as u16).to_le_bytes());
        out.extend_from_slice(&(!(c.len() as u16)).to_le_bytes());
        out.extend_from_slice(c);
    }
    out
}

fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut v = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    v.extend(stored_deflate(data));
    v.extend_from_slice(&crc32(data).to_le_bytes());
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v
}

fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut v = vec![0x78, 0x01];
    v.extend(stored_deflate(data));
    v.extend_from_slice(&adler32(1, data).to_be_bytes());
    v
}

fn element(ty: u32, data: &[u8]) -> Vec<u8> {
    let mut v = ty.to_le_bytes().to_vec();
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v.extend_from_slice(data);
    while v.len() % 8 != 0 {
        v.push(0);
    }
    v
}

/// An miMATRIX element: class, dims, a small-format name, data of type `ty`.
fn matrix(name: &str, class: u8, dims: &[i32], ty: u32, data: &[u8]) -> Vec<u8> {
    let mut body = element(6, &[class, 0, 0, 0, 0, 0, 0, 0]);
    body.extend(element(5, &dims.iter().flat_map(|d| d.to_le_bytes()).collect::<Vec<_>>()));
    body.extend(((name.len() as u32) << 16 | 1).to_le_bytes());
    let mut n = name.as_bytes().to_vec();
    n.resize(4, 0);
    body.extend(n);
    body.extend(element(ty, data));
    element(14, &body)
}

fn mat_header() -> Vec<u8> {
    let mut h = b"MATLAB 5.0 MAT-file, mutation test".to_vec();
    h.resize(116, b' ');
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&0x0100u16.to_le_bytes());
    h.extend_from_slice(b"IM");
    h
}

/// A valid SVHN-layout file with three 4×4×3 images; `compress` wraps each variable in a
/// stored-zlib miCOMPRESSED element.
fn mat_file(compress: bool) -> Vec<u8> {
    let x: Vec<u8> = (0..4 * 4 * 3 * 3).map(|i| (i * 7 % 256) as u8).collect();
    let xm = matrix("X", 9, &[4, 4, 3, 3], 2, &x);
    let yd: Vec<u8> = [10.0f64, 1.0, 5.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let ym = matrix("y", 6, &[3, 1], 9, &yd);
    let mut f = mat_header();
    for m in [xm, ym] {
        if compress {
            let z = zlib_stored(&m);
            f.extend(15u32.to_le_bytes());
            f.extend((z.len() as u32).to_le_bytes());
            f.extend(z);
        } else {
            f.extend(m);
        }
    }
    f
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    IdxImages,
    IdxLabels,
    Cifar10,
    Cifar100,
    CifarGuess,
    Mat,
    Pgm,
}

struct Seed {
    name: &'static str,
    kind: Kind,
    bytes: Vec<u8>,
    /// For IDX seeds: the valid other half of the pair (labels for images and vice versa).
    partner: Vec<u8>,
    /// Holds gzip or zlib data (needs the `gzip` feature to open).
    compressed: bool,
}

/// Opens `path` as `kind` and reads everything; returns the number of images read.
fn exercise(kind: Kind, path: &Path, partner: &Path, opts: &OpenOptions) -> Result<usize> {
    if let Kind::Pgm = kind {
        let p = read_pgm(path)?;
        assert_eq!(p.pixels.len(), p.width * p.height);
        assert!(p.pixels.iter().all(|&v| v <= p.maxval));
        let t = p.to_tensor::<f32>();
        assert!(t.to_vec().iter().all(|v| (0.0..=1.0).contains(v)));
        return Ok(p.pixels.len());
    }
    let set: ImageSet = match kind {
        Kind::IdxImages => open_idx_pair("m", path, partner, Mnist::class_names(), opts)?,
        Kind::IdxLabels => open_idx_pair("m", partner, path, Mnist::class_names(), opts)?,
        Kind::Cifar10 => open_cifar_file(path, Some(CifarKind::Cifar10))?,
        Kind::Cifar100 => open_cifar_file(path, Some(CifarKind::Cifar100))?,
        Kind::CifarGuess => open_cifar_file(path, None)?,
        Kind::Mat => open_svhn_mat(path, opts)?,
        Kind::Pgm => unreachable!("handled above"),
    };
    let mut total = 0u64;
    for i in 0..set.len() {
        total += set.image_u8(i).sum();
        assert!(set.label(i) < set.num_classes());
    }
    if !set.is_empty() {
        let st = set.channel_stats();
        assert!(st.mean.iter().chain(&st.std).all(|v| v.is_finite()));
        let x = set.image_f32(set.len() - 1);
        assert_eq!(x.shape(), &set.image_shape());
        let n: usize = Loader::new(&set, LoaderConfig::new(64)).epoch(0).map(|b| b.len()).sum();
        assert_eq!(n, set.len());
    }
    std::hint::black_box(total);
    Ok(set.len())
}

/// Applies 1–3 random mutations to `b`, returning a description of each.
fn mutate(b: &mut Vec<u8>, rng: &mut Rng) -> Vec<String> {
    let mut done = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let len = b.len().max(1) as u64;
        // half the time aim at the first 160 bytes, where headers and tags live
        let pos = if rng.uniform() < 0.5 { rng.below(len.min(160)) } else { rng.below(len) } as usize;
        match rng.below(7) {
            0 if !b.is_empty() => {
                let bit = rng.below(8);
                b[pos] ^= 1 << bit;
                done.push(format!("flip bit {bit} of byte {pos}"));
            }
            1 if !b.is_empty() => {
                let v = rng.below(256) as u8;
                b[pos] = v;
                done.push(format!("byte {pos} = {v}"));
            }
            2 if !b.is_empty() => {
                let v = [0u8, 0xff, 0x7f, 0x80, 1][rng.below(5) as usize];
                b[pos] = v;
                done.push(format!("byte {pos} = {v}"));
            }
            3 => {
                let at = rng.below(b.len() as u64 + 1) as usize;
                b.truncate(at);
                done.push(format!("truncate to {at}"));
            }
            4 => {
                let n = 1 + rng.below(16) as usize;
                b.extend((0..n).map(|_| rng.below(256) as u8));
                done.push(format!("append {n} bytes"));
            }
            5 if b.len() >= 4 => {
                let at = (pos.min(b.len() - 4)) & !3;
                let v = [0u32, u32::MAX, 0x7fff_ffff, 0x8000_0000, 1, 2, 3, 4, 15, 14, 65536, 0x0004_0001]
                    [rng.below(12) as usize];
                let le = rng.uniform() < 0.5;
                b[at..at + 4].copy_from_slice(&if le { v.to_le_bytes() } else { v.to_be_bytes() });
                done.push(format!("word at {at} = {v:#x} ({})", if le { "LE" } else { "BE" }));
            }
            6 if !b.is_empty() => {
                let n = (1 + rng.below(32) as usize).min(b.len() - pos);
                b.drain(pos..pos + n);
                done.push(format!("delete {n} bytes at {pos}"));
            }
            _ => {}
        }
    }
    done
}

/// `n` PGM samples in `0..=maxval`.
fn pgm_px(n: usize, maxval: u16) -> Vec<u16> {
    (0..n).map(|i| ((i * 2654435761) % (maxval as usize + 1)) as u16).collect()
}

fn real_seeds() -> Vec<Seed> {
    let root = sparsegrad_datasets::data_root(env!("CARGO_MANIFEST_DIR"));
    let mut v = Vec::new();
    if let Ok(b) = std::fs::read(root.join("svhn-format/digits_32x32_compressed.mat")) {
        v.push(Seed { name: "real compressed MAT", kind: Kind::Mat, bytes: b, partner: Vec::new(), compressed: true });
    }
    if let Ok(b) = std::fs::read(root.join("mnist/t10k-labels-idx1-ubyte.gz")) {
        // partner: 10,000 images of 1×1
        let partner = idx_images_bytes(&vec![0; 10000], 1, 1);
        v.push(Seed { name: "real MNIST labels .gz", kind: Kind::IdxLabels, bytes: b, partner, compressed: true });
    }
    if v.is_empty() {
        sparsegrad_datasets::skip_test(
            "mutation (real files)",
            "the real compressed files were not found; mutating synthetic files only",
        );
    }
    v
}

#[test]
fn mutated_files_give_ok_or_a_clean_error() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("mutation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let px: Vec<u8> = (0..5 * 16).map(|i| (i * 3 % 256) as u8).collect();
    let images = idx_images_bytes(&px, 4, 4);
    let labels = idx_labels_bytes(&[0, 9, 3, 3, 7]);
    let mut c10 = Vec::new();
    let mut c100 = Vec::new();
    for r in 0..3u8 {
        c10.push(r * 3);
        c10.extend((0..3072).map(|p| (p % 251) as u8 ^ r));
        c100.extend([r * 6, r * 30]);
        c100.extend((0..3072).map(|p| (p % 241) as u8 ^ r));
    }
    let seed = |name, kind, bytes: Vec<u8>, partner| {
        let compressed = name == "MAT compressed" || bytes.starts_with(&[0x1f, 0x8b]);
        Seed { name, kind, bytes, partner, compressed }
    };
    let mut seeds = vec![
        seed("IDX images", Kind::IdxImages, images.clone(), labels.clone()),
        seed("IDX labels", Kind::IdxLabels, labels.clone(), images.clone()),
        seed("IDX images .gz", Kind::IdxImages, gzip_stored(&images), labels.clone()),
        seed("CIFAR-10", Kind::Cifar10, c10.clone(), Vec::new()),
        seed("CIFAR-100", Kind::Cifar100, c100, Vec::new()),
        seed("CIFAR guessed", Kind::CifarGuess, c10, Vec::new()),
        seed("MAT plain", Kind::Mat, mat_file(false), Vec::new()),
        seed("MAT compressed", Kind::Mat, mat_file(true), Vec::new()),
        seed("PGM P5 8-bit", Kind::Pgm, pgm_bytes(6, 5, 255, &pgm_px(30, 255)), Vec::new()),
        seed("PGM P5 16-bit", Kind::Pgm, pgm_bytes(5, 4, 4095, &pgm_px(20, 4095)), Vec::new()),
        seed("PGM P2", Kind::Pgm, pgm_plain_bytes(4, 4, 200, &pgm_px(16, 200)), Vec::new()),
    ];
    seeds.extend(real_seeds());
    let partners: Vec<PathBuf> = seeds
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let p = dir.join(format!("partner.{k}"));
            std::fs::write(&p, &s.partner).unwrap();
            p
        })
        .collect();
    let memory = OpenOptions::new().in_memory();
    let disk = OpenOptions::new().cache_dir(dir.join("cache"));

    // The unmutated seeds must all open.
    for (s, partner) in seeds.iter().zip(&partners) {
        let p = dir.join("seed");
        let _ = std::fs::remove_file(&p);
        std::fs::write(&p, &s.bytes).unwrap();
        let r = exercise(s.kind, &p, partner, &memory);
        if !cfg!(feature = "gzip") && s.compressed {
            // Without the feature every compressed seed must fail cleanly, naming the feature.
            let e = r.expect_err("compressed input without the gzip feature").to_string();
            assert!(e.contains("built without its `gzip` feature"), "{e}");
            continue;
        }
        let n = r.unwrap_or_else(|e| panic!("seed {} does not open: {e}", s.name));
        assert!(n > 0);
    }

    let mut rng = Rng::new(0x5eed_da7a);
    let (mut ok, mut err) = (0usize, 0usize);
    let cases = 8000;
    for case in 0..cases {
        let s = &seeds[case % seeds.len()];
        let mut b = s.bytes.clone();
        let what = mutate(&mut b, &mut rng);
        let p = dir.join(format!("case.{}", case % seeds.len()));
        // Remove first: truncating an existing file makes ext4 flush it on close (slow).
        let _ = std::fs::remove_file(&p);
        std::fs::write(&p, &b).unwrap();
        let partner = &partners[case % seeds.len()];
        let opts = if case % 16 == 0 { &disk } else { &memory };
        let r = catch_unwind(AssertUnwindSafe(|| exercise(s.kind, &p, partner, opts)));
        match r {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(e)) => {
                let text = e.to_string();
                let names_file = text.contains(&*p.to_string_lossy()) || text.contains("partner");
                assert!(names_file, "case {case} ({}; {what:?}): error does not name the file: {text}", s.name);
                err += 1;
            }
            Err(_) => panic!("case {case}: {} with mutations {what:?} panicked (see the message above)", s.name),
        }
    }
    eprintln!("mutation: {cases} cases over {} seeds: {ok} opened, {err} clean errors", seeds.len());
    assert!(err > cases / 2, "most mutations should be detected ({err} of {cases})");
    assert!(ok > cases / 20, "mutations of pixel bytes leave a valid file ({ok} of {cases} opened)");
    std::fs::remove_dir_all(&dir).unwrap();
}
