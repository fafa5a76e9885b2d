//! Error types of the format crate.

use thiserror::Error;

/// Errors from tree manipulation.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TreeError {
    /// A name that cannot be a path component (empty, `.`, `..`, contains `/` or NUL).
    #[error("invalid entry name {0:?}")]
    InvalidName(String),
    /// A path with `.`/`..` components or otherwise unusable.
    #[error("invalid path {0:?}")]
    InvalidPath(String),
    /// The entry already exists.
    #[error("{0:?} already exists")]
    Exists(String),
    /// A path component that should be a directory is not.
    #[error("{0:?} is not a directory")]
    NotADirectory(String),
    /// No such entry.
    #[error("{0:?} not found")]
    NotFound(String),
}

/// Errors from decoding a stored chunk.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// A hash check failed.
    #[error("chunk {chunk}: hash of the {what} does not match")]
    HashMismatch {
        /// Hex store key of the chunk.
        chunk: String,
        /// Which hash: "stored bytes" (H) or "plaintext" (K).
        what: &'static str,
    },
    /// The XXTEA length word is impossible.
    #[error("chunk {chunk}: cannot decrypt (corrupt data or wrong key)")]
    Decrypt {
        /// Hex store key of the chunk.
        chunk: String,
    },
    /// Snappy refused the decrypted bytes.
    #[error("chunk {chunk}: cannot decompress: {reason}")]
    Decompress {
        /// Hex store key of the chunk.
        chunk: String,
        /// What snappy said.
        reason: String,
    },
}

/// Errors from reading or writing an flist (container, sqlite catalog, Cap'n Proto rows,
/// metadata). Every variant names what failed: the file, the row key or the path.
#[derive(Debug, Error)]
pub enum FormatError {
    /// An I/O error on a named file or stream.
    #[error("{what}: {source}")]
    Io {
        /// What was being read or written (usually a path).
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The container is neither a gzip tar, a plain tar nor a sqlite database, or the
    /// archive is corrupt (truncated gzip, bad tar header).
    #[error("{what}: not an flist: {reason}")]
    Container {
        /// The archive.
        what: String,
        /// What went wrong.
        reason: String,
    },
    /// The database member is larger than the configured cap (a decompression bomb, or a
    /// catalog beyond what this reader accepts).
    #[error("{what}: the flist database is larger than the limit of {limit} bytes")]
    DatabaseTooLarge {
        /// The archive.
        what: String,
        /// The cap in bytes.
        limit: u64,
    },
    /// The archive has no member whose basename is `flistdb.sqlite3`.
    #[error("{0}: no flistdb.sqlite3 member in the archive")]
    MissingDatabase(String),
    /// SQLite refused the database or a statement.
    #[error("{what}: sqlite: {source}")]
    Sqlite {
        /// The database file and/or the operation.
        what: String,
        /// The underlying error.
        #[source]
        source: rusqlite::Error,
    },
    /// The catalog has no row for a directory that must exist.
    #[error("directory row {key} (path {path:?}) is missing")]
    MissingDir {
        /// Hex key looked up.
        key: String,
        /// Path of the directory whose row is missing.
        path: String,
    },
    /// A directory row is reached twice (a cycle or two parents share a child row).
    #[error("directory row {key} is referenced twice (at {path:?}): cycle or shared row")]
    DirCycle {
        /// Hex key of the row.
        key: String,
        /// Path at which it was reached the second time.
        path: String,
    },
    /// A Cap'n Proto value is malformed (bad pointers, out-of-bounds lists, limits hit).
    #[error("row {key}: bad Cap'n Proto value: {reason}")]
    Capnp {
        /// Hex key of the row.
        key: String,
        /// What the decoder said.
        reason: String,
    },
    /// A decoded value is not acceptable (bad name, non-UTF-8 text, bad block hash length,
    /// wrong type of field).
    #[error("row {key}: {reason}")]
    BadEntry {
        /// Hex key of the row.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A metadata value is not what its key requires.
    #[error("metadata {key:?}: {reason}")]
    Metadata {
        /// The metadata key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The tree cannot be written as an flist.
    #[error("cannot write {path:?}: {reason}")]
    Unwritable {
        /// Path of the offending entry.
        path: String,
        /// Why.
        reason: String,
    },
    /// A file's chunk is of another codec than the format being written: the chunks must
    /// be re-encoded (converted) first.
    #[error(
        "cannot write {path:?} as {format}: its chunks are of the {codec} codec \
         (convert the flist to re-encode them)"
    )]
    ForeignBlock {
        /// Path of the file.
        path: String,
        /// The codec of its chunks.
        codec: crate::codec::Codec,
        /// The format being written.
        format: crate::Format,
    },
    /// A tree operation failed while building the tree.
    #[error(transparent)]
    Tree(#[from] TreeError),
}

impl FormatError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        FormatError::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn sqlite(what: impl Into<String>, source: rusqlite::Error) -> Self {
        FormatError::Sqlite {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn capnp(key: impl Into<String>, e: impl std::fmt::Display) -> Self {
        FormatError::Capnp {
            key: key.into(),
            reason: e.to_string(),
        }
    }

    pub(crate) fn bad(key: impl Into<String>, reason: impl Into<String>) -> Self {
        FormatError::BadEntry {
            key: key.into(),
            reason: reason.into(),
        }
    }
}
