//! The PGM reader on truncated and corrupt files (every error names the file and the byte
//! offset of the problem), on its trailing-data policy, and on the seven real DCEA test images
//! in `data/denoise/` when they are present.
//!
//! The reference values of the real images were computed independently of this crate, with
//! Python's standard library only (the header is `P5\n<w> <h>\n255\n`, 15 bytes):
//!
//! ```text
//! b = open(f, 'rb').read(); parts = b.split(b'\n', 3)
//! w, h = map(int, parts[1].split()); maxval = int(parts[2]); px = parts[3]
//! print(f, w, h, maxval, sum(px), sum(p * (i % 251) for i, p in enumerate(px)), px[0], px[-1], min(px), max(px))
//! ```

use std::path::{Path, PathBuf};

use sparsegrad_datasets::pgm::{pgm_bytes, pgm_plain_bytes};
use sparsegrad_datasets::{open_pgm, parse_pgm, read_pgm, DataError};

fn parse(b: &[u8]) -> Result<sparsegrad_datasets::Pgm, DataError> {
    parse_pgm(Path::new("img.pgm"), b)
}

/// Asserts that `b` is rejected at byte `offset` with a message containing `needle`, and that
/// the message names the file.
#[track_caller]
fn rejects(b: &[u8], offset: u64, needle: &str) {
    let e = parse(b).expect_err(&format!("{:?} should be rejected", String::from_utf8_lossy(b)));
    let text = e.to_string();
    assert!(matches!(e, DataError::Format { .. }), "{text}");
    assert!(text.starts_with(&format!("img.pgm: byte {offset}: expected ")), "{text}");
    assert!(text.contains(needle), "{text:?} does not contain {needle:?}");
}

fn samples(n: usize, maxval: u16) -> Vec<u16> {
    (0..n).map(|i| ((i * 7919 + 3) % (maxval as usize + 1)) as u16).collect()
}

#[test]
fn every_truncation_of_a_valid_file_is_an_error_at_or_before_its_end() {
    for (what, file) in [
        ("8-bit P5", pgm_bytes(5, 3, 255, &samples(15, 255))),
        ("16-bit P5", pgm_bytes(4, 3, 1000, &samples(12, 1000))),
        ("P2", pgm_plain_bytes(4, 3, 300, &samples(12, 300))),
    ] {
        let full = parse(&file).unwrap_or_else(|e| panic!("{what}: {e}"));
        let n = full.pixels.len();
        assert_eq!(n, full.width * full.height);
        // A P2 file has no length: cut inside or after its last number it is still a valid
        // image (with a shorter last sample), which no reader can detect. Every other cut is
        // an error.
        let last_number = file[..file.len() - 1].iter().rposition(|&b| b == b' ' || b == b'\n').unwrap() + 1;
        for len in 0..file.len() {
            let cut = &file[..len];
            match parse(cut) {
                Ok(p) => {
                    assert!(what == "P2" && len > last_number, "{what}: prefix of {len} bytes opened");
                    assert_eq!(p.pixels[..n - 1], full.pixels[..n - 1]);
                }
                Err(e) => {
                    let at = e.offset().expect("a format error");
                    assert!(at <= len as u64, "{what}, {len} bytes: offset {at}: {e}");
                    assert_eq!(e.path(), Some(Path::new("img.pgm")));
                }
            }
        }
    }
    // A truncated raster is reported at the end of the file, with the count that was expected:
    // header "P5\n5 3\n255\n" is 11 bytes, the raster 15 bytes; cut at 20 bytes.
    let f = pgm_bytes(5, 3, 255, &samples(15, 255));
    rejects(&f[..20], 20, "15 samples of 1 byte (15 bytes from byte 11), but the file ends after 20 bytes (9 complete");
    // 16-bit: header "P5\n4 3\n1000\n" is 12 bytes; 24 raster bytes; cut at 17 → 2 complete samples.
    let f = pgm_bytes(4, 3, 1000, &samples(12, 1000));
    rejects(
        &f[..17],
        17,
        "12 samples of 2 bytes (24 bytes from byte 12), but the file ends after 17 bytes (2 complete",
    );
    // P2 with fewer samples than declared: 12 declared, the text ends after 11.
    let text = b"P2\n4 3\n300\n1 2 3 4 5 6 7 8 9 10 11";
    rejects(text, 34, "sample 11 of 12");
}

#[test]
fn corrupt_headers_are_rejected_where_the_problem_is() {
    // Magic
    rejects(b"", 0, "the PGM magic \"P5\" or \"P2\", but the file ends after 0 bytes");
    rejects(b"P", 1, "the PGM magic");
    rejects(b"P6\n1 1\n255\n\0\0\0", 0, "a PPM colour image");
    rejects(b"P4\n8 1\n\0", 0, "a PBM bitmap");
    rejects(b"\x89PNG\r\n", 0, "a PNG file");
    rejects(b"p5\n1 1\n255\n\0", 0, "found \"p5\"");
    // Missing or garbage fields. "P5\n" is 3 bytes: the width starts at byte 3.
    rejects(b"P5", 2, "whitespace and the width");
    rejects(b"P5\n", 3, "the width (a decimal number), but the file ends after 3 bytes");
    rejects(b"P5x1 1 255\n\0", 2, "whitespace before the width, found byte 0x78 ('x')");
    rejects(b"P5\n-3 1\n255\n", 3, "the width as a decimal number, found byte 0x2d ('-')");
    rejects(b"P5\n3", 4, "whitespace and the height");
    rejects(b"P5\n3 ", 5, "the height (a decimal number)");
    rejects(b"P5\n3x 1\n255\n", 4, "whitespace after the width 3, found byte 0x78 ('x')");
    rejects(b"P5\n3 1.5\n255\n", 6, "whitespace after the height 1");
    rejects(b"P5\n3 1\n", 7, "the maxval (a decimal number), but the file ends after 7 bytes");
    rejects(b"P5\n3 1\nabc\n", 7, "the maxval as a decimal number, found byte 0x61 ('a')");
    rejects(b"P5\n0 1\n255\n", 3, "the width in 1..=4294967295, found 0");
    rejects(b"P5\n1 0\n255\n", 5, "the height in 1..=4294967295, found 0");
    rejects(b"P5\n1 99999999999\n255\n", 5, "the height in 1..=4294967295, found 99999999999");
    // maxval 0 and above 65535 (the header "P5\n1 1\n" is 7 bytes)
    rejects(b"P5\n1 1\n0\n\0", 7, "the maxval in 1..=65535, found 0");
    rejects(b"P5\n1 1\n65536\n\0\0", 7, "the maxval in 1..=65535, found 65536");
    rejects(b"P5\n1 1\n184467440737095516160\n\0\0", 7, "the maxval in 1..=65535");
    // The raster must follow one whitespace byte; a comment there is not supported.
    rejects(b"P5\n1 1\n255", 10, "one whitespace byte after the maxval");
    rejects(b"P5\n1 1\n255#c\n\0", 10, "one whitespace byte after the maxval (a comment there is not supported)");
    // Samples above the maxval (header "P5\n2 1\n7\n" is 9 bytes; 16-bit header 12 bytes)
    rejects(b"P5\n2 1\n7\n\x07\x08", 10, "sample 1 at most the maxval 7, found 8");
    rejects(b"P5\n1 1\n300\n\x01\x2d", 11, "sample 0 at most the maxval 300, found 301");
    rejects(b"P2\n2 1\n7\n3 12\n", 11, "sample 1 at most the maxval 7, found 12");
    rejects(b"P2\n2 1\n7\n3 x\n", 11, "sample 1 of 2 as a decimal number, found byte 0x78 ('x')");
    // Dimensions whose product does not fit
    rejects(b"P5\n4294967295 4294967295\n255\n", 3, "a width·height that fits in memory");
    // Fewer pixels than declared, in a file that is otherwise well formed
    rejects(
        b"P5\n2 2\n255\n\x01\x02\x03",
        14,
        "4 samples of 1 byte (4 bytes from byte 11), but the file ends after 14",
    );
}

#[test]
fn trailing_data_policy() {
    let px = samples(6, 255);
    let mut f = pgm_bytes(3, 2, 255, &px);
    assert_eq!(parse(&f).unwrap().pixels, px);
    // P5: the file must end right after the raster (header 11 bytes + 6): even a newline is extra.
    f.push(b'\n');
    rejects(&f, 17, "the end of the file after the 6-byte raster, found 1 more bytes");
    // A second image is trailing data too.
    let mut two = pgm_bytes(3, 2, 255, &px);
    two.extend(pgm_bytes(1, 1, 255, &[0]));
    rejects(&two, 17, "found 12 more bytes");
    // P2: whitespace and comments may follow the samples, anything else may not.
    let mut p = pgm_plain_bytes(3, 2, 255, &px);
    p.extend(b"\n# written by hand\n\t \r\n");
    assert_eq!(parse(&p).unwrap().pixels, px);
    let mut q = pgm_plain_bytes(3, 2, 255, &px);
    let n = q.len();
    q.extend(b" 7");
    rejects(&q, n as u64 + 1, "only whitespace and comments after the 6 samples, found byte 0x37 ('7')");
}

#[test]
fn files_on_disk_and_io_errors_name_the_file() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("pgm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("two-by-two.pgm");
    // A 16-bit file: maxval 1000, pixels 0, 250, 500, 1000 → 0, 0.25, 0.5, 1 after scaling
    std::fs::write(&p, pgm_bytes(2, 2, 1000, &[0, 250, 500, 1000])).unwrap();
    let t = open_pgm(&p).unwrap();
    assert_eq!(t.shape(), &[1, 1, 2, 2]);
    assert_eq!(t.to_vec(), vec![0.0f32, 0.25, 0.5, 1.0]);
    let bad = dir.join("bad.pgm");
    std::fs::write(&bad, b"P5\n2 2\n1000\n\0").unwrap();
    let e = read_pgm(&bad).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}: byte 13: expected 4 samples of 2 bytes", bad.display())), "{e}");
    let missing = dir.join("missing.pgm");
    let e = read_pgm(&missing).unwrap_err();
    assert!(matches!(e, DataError::Io { op: "read", .. }), "{e}");
    assert!(e.to_string().starts_with(&missing.display().to_string()), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `data/denoise`: `$SPARSEGRAD_DATA/denoise`, else `shared/data/denoise` in the nearest
/// ancestor of this crate that has one (the repository's `../shared`, or a worktree's).
fn denoise_dir() -> Option<PathBuf> {
    let d = sparsegrad_datasets::data_root(env!("CARGO_MANIFEST_DIR")).join("denoise");
    d.is_dir().then_some(d)
}

/// Name, width, height, Σ pixels, Σ pixel·(index mod 251), first, last, min, max.
type Expected = (&'static str, usize, usize, u64, u64, u16, u16, u16, u16);

#[test]
fn the_seven_dcea_test_images() {
    let Some(dir) = denoise_dir() else {
        sparsegrad_datasets::skip_test("pgm", "data/denoise not found");
        return;
    };
    // name, width, height, Σ pixels, Σ pixel·(index mod 251), first, last, min, max (Python, above)
    let want: [Expected; 7] = [
        ("boat", 512, 512, 34002165, 4243723374, 127, 97, 0, 255),
        ("bridge", 256, 256, 7461580, 929177094, 94, 0, 0, 255),
        ("cameraman", 256, 256, 7779087, 975449956, 156, 113, 7, 252),
        ("couple", 512, 512, 31693266, 3964815247, 121, 159, 0, 254),
        ("house", 256, 256, 9042959, 1131935971, 188, 166, 16, 239),
        ("man", 512, 512, 29266172, 3659451354, 150, 104, 38, 241),
        ("peppers256", 256, 256, 8067749, 1000818864, 0, 232, 0, 254),
    ];
    for (name, w, h, sum, wsum, first, last, min, max) in want {
        let p = read_pgm(dir.join(format!("{name}.pgm"))).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.width, p.height, p.maxval, p.plain), (w, h, 255, false), "{name}");
        let s: u64 = p.pixels.iter().map(|&v| v as u64).sum();
        let ws: u64 = p.pixels.iter().enumerate().map(|(i, &v)| v as u64 * (i % 251) as u64).sum();
        assert_eq!((s, ws), (sum, wsum), "{name}: checksums");
        assert_eq!((p.pixels[0], *p.pixels.last().unwrap()), (first, last), "{name}: first and last pixel");
        assert_eq!((*p.pixels.iter().min().unwrap(), *p.pixels.iter().max().unwrap()), (min, max), "{name}: range");
        let t = p.to_tensor::<f64>();
        assert_eq!(t.shape(), &[1, 1, h, w]);
        let ts: f64 = t.to_vec().iter().sum();
        assert!((ts * 255.0 - sum as f64).abs() < 1e-6 * sum as f64, "{name}: tensor sum {ts}");
        assert_eq!(t.get(&[0, 0, h - 1, w - 1]), last as f64 / 255.0);
    }
}
