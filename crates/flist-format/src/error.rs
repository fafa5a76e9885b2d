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
