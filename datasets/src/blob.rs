//! Bytes of a data file: memory-mapped when possible, inflated once into a cache file when the
//! file is compressed, and [`OpenOptions`] to choose where that cache lives.
//!
//! The cache is written atomically (a temporary file in the cache directory, then `rename`), so
//! a crash or a concurrent reader never sees a half-written file. Cache names contain a key
//! derived from the source file's absolute path, length and modification time, so a changed
//! source gets a new cache file. A cache file is re-validated every time it is reused: its
//! length and CRC-32 must match the gzip trailer (for `.gz` files), or its Adler-32 must match
//! the zlib trailer (for compressed MAT elements); the check streams the file through a small
//! buffer rather than through the mapping, so it does not grow the resident set. A cache file
//! that fails the check is rebuilt.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[cfg(feature = "gzip")]
use byteorder::{BigEndian, ByteOrder, LittleEndian};
use memmap2::Mmap;

use crate::checksum::{hex, Sha256};
use crate::error::{DataError, Result};

/// Environment variable naming the cache directory when [`OpenOptions`] does not give one.
pub const CACHE_ENV: &str = "SPARSEGRAD_CACHE";

/// The bytes of one file (or of one inflated stream): a read-only mapping, a `'static` slice
/// compiled into the binary, or an owned buffer.
pub(crate) enum Blob {
    Mapped(Mmap),
    Static(&'static [u8]),
    Owned(Vec<u8>),
}

impl Blob {
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Blob::Mapped(m) => m,
            Blob::Static(s) => s,
            Blob::Owned(v) => v,
        }
    }
}

/// Where inflated copies of compressed files go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CacheMode {
    /// `$SPARSEGRAD_CACHE` if set; otherwise a `.sparsegrad-cache` directory beside the data
    /// when the data directory is writable (its permission bits allow writing and the cache
    /// directory can be created); otherwise the user cache directory
    /// (`$XDG_CACHE_HOME/sparsegrad` or `$HOME/.cache/sparsegrad`); otherwise the system
    /// temporary directory.
    #[default]
    Auto,
    /// This directory (created if missing).
    Dir(PathBuf),
    /// Inflate into memory every time; nothing is written to disk.
    Memory,
}

/// Options shared by every reader. Only the cache location for compressed inputs is
/// configurable; uncompressed files are always memory-mapped in place.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Where inflated copies of compressed inputs go.
    pub cache: CacheMode,
}

impl OpenOptions {
    /// Default options: [`CacheMode::Auto`].
    pub fn new() -> OpenOptions {
        OpenOptions::default()
    }

    /// Cache inflated files in `dir` (created when needed).
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> OpenOptions {
        self.cache = CacheMode::Dir(dir.into());
        self
    }

    /// Inflate compressed files into memory instead of a cache file.
    pub fn in_memory(mut self) -> OpenOptions {
        self.cache = CacheMode::Memory;
        self
    }

    /// The directory a cache file for `data_file` would be written to, created if needed;
    /// `None` for [`CacheMode::Memory`].
    ///
    /// # Errors
    /// [`DataError::Io`] if an explicitly requested directory (option or `$SPARSEGRAD_CACHE`)
    /// cannot be created.
    pub fn resolve_cache_dir(&self, data_file: &Path) -> Result<Option<PathBuf>> {
        let explicit = match &self.cache {
            CacheMode::Memory => return Ok(None),
            CacheMode::Dir(d) => Some(d.clone()),
            CacheMode::Auto => std::env::var_os(CACHE_ENV).filter(|v| !v.is_empty()).map(PathBuf::from),
        };
        if let Some(dir) = explicit {
            fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, "create directory", e))?;
            return Ok(Some(dir));
        }
        let parent = data_file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let writable = fs::metadata(parent).map(|m| !m.permissions().readonly()).unwrap_or(false);
        if writable {
            let beside = parent.join(".sparsegrad-cache");
            if fs::create_dir_all(&beside).is_ok() {
                return Ok(Some(beside));
            }
        }
        let user = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache")))
            .map(|d| d.join("sparsegrad"));
        if let Some(dir) = user {
            if fs::create_dir_all(&dir).is_ok() {
                return Ok(Some(dir));
            }
        }
        let tmp = std::env::temp_dir().join("sparsegrad-cache");
        fs::create_dir_all(&tmp).map_err(|e| DataError::io(&tmp, "create directory", e))?;
        Ok(Some(tmp))
    }
}

/// Maps `path` read-only. An empty file gives an empty owned blob (mapping zero bytes fails on
/// some systems).
///
/// The mapping assumes nobody truncates the file while it is open (a truncated mapping faults
/// on access); data files are expected to be immutable.
pub(crate) fn map_file(path: &Path) -> Result<Blob> {
    let file = File::open(path).map_err(|e| DataError::io(path, "open", e))?;
    let len = file.metadata().map_err(|e| DataError::io(path, "stat", e))?.len();
    if len == 0 {
        return Ok(Blob::Owned(Vec::new()));
    }
    // SAFETY: read-only mapping of a file we do not modify; see the note above about
    // concurrent truncation by other processes.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| DataError::io(path, "map", e))?;
    Ok(Blob::Mapped(map))
}

/// True when `bytes` starts with the gzip magic `1f 8b`.
pub(crate) fn is_gzip(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b
}

/// The bytes of `path`, inflated (through the cache) when the file is gzip-compressed
/// (detected by its magic number, whatever its name).
pub(crate) fn load(path: &Path, opts: &OpenOptions) -> Result<Arc<Blob>> {
    let raw = map_file(path)?;
    if !is_gzip(raw.bytes()) {
        return Ok(Arc::new(raw));
    }
    gunzip(path, raw.bytes(), opts)
}

/// A cache-file name for `path`: `base-<16 hex digits>` where the digits hash the absolute
/// path, length, modification time and `salt` (the element offset for MAT elements).
#[cfg_attr(not(feature = "gzip"), allow(dead_code))]
fn cache_name(path: &Path, base: &str, salt: u64) -> String {
    let abs = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut h = Sha256::new();
    h.update(abs.to_string_lossy().as_bytes());
    if let Ok(m) = fs::metadata(path) {
        h.update(&m.len().to_le_bytes());
        if let Ok(t) = m.modified() {
            if let Ok(d) = t.duration_since(std::time::UNIX_EPOCH) {
                h.update(&d.as_nanos().to_le_bytes());
            }
        }
    }
    h.update(&salt.to_le_bytes());
    format!("{base}-{}", &hex(&h.finish())[..16])
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes a file atomically: `write` fills a temporary file in the destination's directory,
/// which is then flushed and renamed over `dest`. On any error the temporary file is removed
/// and `dest` is left as it was. The file is not `fsync`ed: readers never see a partial file,
/// and a cache file damaged by a system crash fails its checksum on reuse and is rebuilt.
///
/// # Errors
/// [`DataError::Io`] for failures to create, write, sync or rename; any error `write` returns.
pub fn write_atomic(dest: &Path, write: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let dir = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let fname = dest.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{fname}.{}.{n}.tmp", std::process::id()));
    let result = (|| {
        let file = File::create(&tmp).map_err(|e| DataError::io(&tmp, "create", e))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        write(&mut w)?;
        drop(w.into_inner().map_err(|e| DataError::io(&tmp, "write", e.into_error()))?);
        fs::rename(&tmp, dest).map_err(|e| DataError::io(dest, "rename", e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Streams `path` through a 1 MiB buffer, returning its length and `f` folded over its chunks.
#[cfg_attr(not(feature = "gzip"), allow(dead_code))]
fn fold_file<S>(path: &Path, init: S, mut f: impl FnMut(S, &[u8]) -> S) -> Option<(u64, S)> {
    let mut file = File::open(path).ok()?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut len, mut acc) = (0u64, init);
    loop {
        let n = file.read(&mut buf).ok()?;
        if n == 0 {
            return Some((len, acc));
        }
        len += n as u64;
        acc = f(acc, &buf[..n]);
    }
}

/// Cached or fresh inflation shared by gzip files and zlib elements: reuse `dest` when `valid`
/// accepts it, otherwise rebuild it with `inflate` and map the result.
#[cfg_attr(not(feature = "gzip"), allow(dead_code))]
fn through_cache(
    dest: &Path,
    valid: impl Fn(&Path) -> bool,
    inflate: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<Arc<Blob>> {
    if dest.exists() && valid(dest) {
        return Ok(Arc::new(map_file(dest)?));
    }
    write_atomic(dest, inflate)?;
    Ok(Arc::new(map_file(dest)?))
}

#[cfg(feature = "gzip")]
fn gunzip(path: &Path, bytes: &[u8], opts: &OpenOptions) -> Result<Arc<Blob>> {
    let len = bytes.len();
    if len < 18 {
        return Err(DataError::format(
            path,
            len as u64,
            format!("a gzip stream of at least 18 bytes (10-byte header, 8-byte trailer), file has {len}"),
        ));
    }
    let crc = LittleEndian::read_u32(&bytes[len - 8..]);
    let isize = LittleEndian::read_u32(&bytes[len - 4..]);
    let inflate = |w: &mut dyn Write| -> Result<()> {
        let mut dec = flate2::bufread::MultiGzDecoder::new(bytes);
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match dec.read(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    let consumed = len - dec.get_ref().len();
                    return Err(DataError::format(
                        path,
                        consumed as u64,
                        format!("a valid gzip stream (inflating failed near this byte: {e})"),
                    ));
                }
            };
            if n == 0 {
                return Ok(());
            }
            w.write_all(&buf[..n]).map_err(|e| DataError::io(path, "write inflated data", e))?;
        }
    };
    let Some(dir) = opts.resolve_cache_dir(path)? else {
        let mut out = Vec::with_capacity(isize as usize);
        inflate(&mut out)?;
        return Ok(Arc::new(Blob::Owned(out)));
    };
    let fname = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let base = fname.strip_suffix(".gz").unwrap_or(&fname);
    let dest = dir.join(cache_name(path, base, 0));
    let valid = |p: &Path| {
        fold_file(p, flate2::Crc::new(), |mut c, chunk| {
            c.update(chunk);
            c
        })
        .is_some_and(|(n, c)| n as u32 == isize && c.sum() == crc)
    };
    through_cache(&dest, valid, |w| inflate(w))
}

#[cfg(not(feature = "gzip"))]
fn gunzip(path: &Path, _bytes: &[u8], _opts: &OpenOptions) -> Result<Arc<Blob>> {
    Err(DataError::Compressed { path: path.to_path_buf(), offset: 0, kind: "gzip" })
}

/// Inflates the zlib stream `stream`, which starts at byte `offset` of `path` (a compressed
/// MAT element), through the cache. The inflated bytes must carry the Adler-32 that ends the
/// stream.
#[cfg(feature = "gzip")]
pub(crate) fn inflate_zlib(path: &Path, stream: &[u8], offset: u64, opts: &OpenOptions) -> Result<Arc<Blob>> {
    use crate::checksum::adler32;
    if stream.len() < 6 {
        return Err(DataError::format(
            path,
            offset,
            format!("a zlib stream of at least 6 bytes (2-byte header, 4-byte Adler-32), found {}", stream.len()),
        ));
    }
    let inflate = |w: &mut dyn Write| -> Result<()> {
        let mut dec = flate2::bufread::ZlibDecoder::new(stream);
        let mut buf = vec![0u8; 1 << 16];
        let mut adler = 1u32;
        loop {
            let n = match dec.read(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    let consumed = stream.len() - dec.get_ref().len();
                    return Err(DataError::format(
                        path,
                        offset + consumed as u64,
                        format!("a valid zlib stream (compressed element at byte {offset}; inflating failed: {e})"),
                    ));
                }
            };
            if n == 0 {
                break;
            }
            adler = adler32(adler, &buf[..n]);
            w.write_all(&buf[..n]).map_err(|e| DataError::io(path, "write inflated data", e))?;
        }
        let end = stream.len() - dec.get_ref().len();
        let want = if end >= 4 { Some(BigEndian::read_u32(&stream[end - 4..end])) } else { None };
        if want != Some(adler) || dec.total_out() == 0 {
            return Err(DataError::format(
                path,
                offset + end as u64,
                format!(
                    "a complete zlib stream whose Adler-32 matches the inflated data (compressed element at byte \
                     {offset}; {} bytes inflated, checksum {adler:#010x}, stream says {})",
                    dec.total_out(),
                    want.map(|w| format!("{w:#010x}")).unwrap_or_else(|| "nothing".into())
                ),
            ));
        }
        Ok(())
    };
    let Some(dir) = opts.resolve_cache_dir(path)? else {
        let mut out = Vec::new();
        inflate(&mut out)?;
        return Ok(Arc::new(Blob::Owned(out)));
    };
    let fname = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let dest = dir.join(cache_name(path, &format!("{fname}-z{offset}"), offset));
    let trailer = BigEndian::read_u32(&stream[stream.len() - 4..]);
    let valid = |p: &Path| fold_file(p, 1u32, adler32).is_some_and(|(n, a)| n > 0 && a == trailer);
    through_cache(&dest, valid, |w| inflate(w))
}

#[cfg(not(feature = "gzip"))]
pub(crate) fn inflate_zlib(path: &Path, _stream: &[u8], offset: u64, _opts: &OpenOptions) -> Result<Arc<Blob>> {
    Err(DataError::Compressed { path: path.to_path_buf(), offset, kind: "zlib" })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh empty directory under the system temp dir, unique per call.
    pub(crate) fn scratch(tag: &str) -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        let d = std::env::temp_dir().join(format!(
            "sparsegrad-datasets-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn write_atomic_leaves_no_temp_file_and_keeps_old_on_error() {
        let d = scratch("atomic");
        let f = d.join("x.bin");
        write_atomic(&f, |w| w.write_all(b"hello").map_err(|e| DataError::io(&f, "write", e))).unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"hello");
        let err = write_atomic(&f, |w| {
            w.write_all(b"partial").unwrap();
            Err(DataError::Insufficient { what: "stop".into() })
        });
        assert!(err.is_err());
        assert_eq!(fs::read(&f).unwrap(), b"hello", "failed write must not replace the file");
        let names: Vec<_> = fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "temporary files left behind: {names:?}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn explicit_cache_dir_wins_and_memory_has_none() {
        let d = scratch("resolve");
        let c = d.join("c");
        let got = OpenOptions::new().cache_dir(&c).resolve_cache_dir(&d.join("f.gz")).unwrap();
        assert_eq!(got, Some(c.clone()));
        assert!(c.is_dir());
        assert_eq!(OpenOptions::new().in_memory().resolve_cache_dir(&d.join("f.gz")).unwrap(), None);
        fs::remove_dir_all(&d).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn read_only_data_dir_is_not_used_for_the_cache() {
        use std::os::unix::fs::PermissionsExt;
        if std::env::var_os(CACHE_ENV).is_some() {
            eprintln!("skipped: {CACHE_ENV} is set, so Auto uses it");
            return;
        }
        let d = scratch("ro");
        let data = d.join("data");
        fs::create_dir(&data).unwrap();
        fs::set_permissions(&data, fs::Permissions::from_mode(0o555)).unwrap();
        let got = OpenOptions::new().resolve_cache_dir(&data.join("f.gz")).unwrap().unwrap();
        assert!(!got.starts_with(&data), "cache {got:?} placed inside read-only {data:?}");
        fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).unwrap();
        let got = OpenOptions::new().resolve_cache_dir(&data.join("f.gz")).unwrap().unwrap();
        assert_eq!(got, data.join(".sparsegrad-cache"));
        fs::remove_dir_all(&d).unwrap();
    }
}
