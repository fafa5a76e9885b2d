//! Errors of the mount crate.

/// What went wrong mounting, reading or unmounting.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// A file-system call on a local path failed.
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
    /// An `--override` argument is malformed or cannot be applied.
    #[error("override {spec:?}: {reason}")]
    Override {
        /// The argument as given.
        spec: String,
        /// Why it was refused.
        reason: String,
    },
    /// The mount point is not usable.
    #[error("mount point {path}: {reason}")]
    MountPoint {
        /// The mount point.
        path: String,
        /// Why.
        reason: String,
    },
    /// Nothing is mounted at the path given to `umount`.
    #[error("{0} is not a mount point")]
    NotMounted(String),
    /// Reading chunks (the disk cache, the store) failed.
    #[error(transparent)]
    Chunks(Box<flist_chunks::ChunkError>),
    /// The chunk store failed.
    #[error(transparent)]
    Store(#[from] flist_store::StoreError),
    /// The runtime could not be started.
    #[error("runtime: {0}")]
    Runtime(String),
}

impl From<flist_chunks::ChunkError> for MountError {
    fn from(e: flist_chunks::ChunkError) -> Self {
        MountError::Chunks(Box::new(e))
    }
}

impl MountError {
    pub(crate) fn io(what: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        MountError::Io {
            what,
            path: path.display().to_string(),
            source,
        }
    }
}
