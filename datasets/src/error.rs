//! [`DataError`]: everything that can go wrong while reading data from disk.
//!
//! Every error that comes from the *contents* of a file names the file, the byte offset where
//! the problem was found and what was expected there, for example
//! `data/mnist/train-images-idx3-ubyte: byte 0: expected IDX magic 0x00000803 (unsigned
//! bytes, 3 dimensions), found 0x00000801 (this looks like a labels file)`.
//! Program misuse (a batch size of 0, an index out of range) panics instead, like the engine.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Errors returned by the readers, the cache and the data-set utilities.
#[derive(Debug)]
pub enum DataError {
    /// An operating-system call failed.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done: "open", "map", "read", "write", "rename", "create directory", …
        op: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// The bytes of a file do not have the expected format.
    Format {
        /// The file.
        path: PathBuf,
        /// Byte offset in the file where the problem was found.
        offset: u64,
        /// What was expected there and, where useful, what was found instead.
        expected: String,
    },
    /// A compressed stream was found but the crate was built without its `gzip` feature.
    Compressed {
        /// The file.
        path: PathBuf,
        /// Byte offset of the compressed stream.
        offset: u64,
        /// "gzip" or "zlib".
        kind: &'static str,
    },
    /// None of the file names a reader looks for exist in a directory.
    NotFound {
        /// The directory searched.
        dir: PathBuf,
        /// What was looked for, e.g. "IDX images file".
        what: &'static str,
        /// The file names tried.
        tried: Vec<String>,
    },
    /// A request cannot be met by the data, e.g. `k` labelled examples per class when a class
    /// has fewer.
    Insufficient {
        /// The message, naming the class and the counts.
        what: String,
    },
}

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, DataError>;

impl DataError {
    /// A [`DataError::Format`] at `offset` of `path`.
    pub fn format(path: &Path, offset: u64, expected: impl Into<String>) -> DataError {
        DataError::Format { path: path.to_path_buf(), offset, expected: expected.into() }
    }

    /// A [`DataError::Io`] for `op` on `path`.
    pub fn io(path: &Path, op: &'static str, source: io::Error) -> DataError {
        DataError::Io { path: path.to_path_buf(), op, source }
    }

    /// The file the error is about, when there is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            DataError::Io { path, .. } | DataError::Format { path, .. } | DataError::Compressed { path, .. } => {
                Some(path)
            }
            DataError::NotFound { dir, .. } => Some(dir),
            DataError::Insufficient { .. } => None,
        }
    }

    /// The byte offset the error is about, for format and compression errors.
    pub fn offset(&self) -> Option<u64> {
        match self {
            DataError::Format { offset, .. } | DataError::Compressed { offset, .. } => Some(*offset),
            _ => None,
        }
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataError::Io { path, op, source } => write!(f, "{}: cannot {op}: {source}", path.display()),
            DataError::Format { path, offset, expected } => {
                write!(f, "{}: byte {offset}: expected {expected}", path.display())
            }
            DataError::Compressed { path, offset, kind } => write!(
                f,
                "{}: byte {offset}: {kind}-compressed data, but sparsegrad-datasets was built without its `gzip` \
                 feature; decompress the file first or build with the feature",
                path.display()
            ),
            DataError::NotFound { dir, what, tried } => {
                write!(f, "{}: no {what} found (looked for {})", dir.display(), tried.join(", "))
            }
            DataError::Insufficient { what } => write!(f, "{what}"),
        }
    }
}

impl std::error::Error for DataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DataError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_offset_and_expectation() {
        let e = DataError::format(Path::new("d/x.bin"), 3074, "a whole number of 3074-byte records");
        assert_eq!(e.to_string(), "d/x.bin: byte 3074: expected a whole number of 3074-byte records");
        assert_eq!(e.offset(), Some(3074));
        assert_eq!(e.path(), Some(Path::new("d/x.bin")));
        let c = DataError::Compressed { path: "a.gz".into(), offset: 0, kind: "gzip" };
        assert!(c.to_string().starts_with("a.gz: byte 0: gzip-compressed data"), "{c}");
    }
}
