//! Errors of chunk reading.

/// Why a chunk could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// The store does not hold the chunk (worded like the store's own "not found").
    #[error("store {store}: key {chunk} not found")]
    Missing {
        /// hex of the store key.
        chunk: String,
        /// The store (its display form, never a password).
        store: String,
    },
    /// The store failed (its error names the store).
    #[error("{source}")]
    Store {
        /// The store (its display form).
        store: String,
        /// Why.
        #[source]
        source: flist_store::StoreError,
    },
    /// The stored bytes do not decode to the chunk (a hash mismatch, bad encryption or
    /// compression).
    #[error(transparent)]
    Codec(#[from] flist_format::CodecError),
    /// A file-system call of the disk cache failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path concerned.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A thread or the runtime stopped before the chunk was read.
    #[error("{0}")]
    Stopped(String),
}

impl ChunkError {
    pub(crate) fn io(what: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        ChunkError::Io {
            what,
            path: path.display().to_string(),
            source,
        }
    }
}
