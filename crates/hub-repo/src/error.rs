//! Errors of the repository model. Each says what was being done and to which name or path.

use std::path::PathBuf;

use thiserror::Error;

/// An error from a catalog or repository operation.
#[derive(Debug, Error)]
pub enum RepoError {
    /// A repository, flist, tag or link name is not acceptable.
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        /// Which kind of name (`repository`, `flist`, `tag`, `taglink`).
        what: &'static str,
        /// The offending name (debug-escaped when displayed).
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// Other malformed input.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The thing does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The operation would overwrite or contradict existing state.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The acting identity may not do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Following links went round in a circle or too deep.
    #[error("link cycle while resolving {0}")]
    Cycle(String),
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`create`, `rename`, `read` ...).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The catalog database (SQLite or PostgreSQL) failed.
    #[error("catalog ({context}): {source}")]
    Database {
        /// The operation.
        context: String,
        /// The underlying error.
        #[source]
        source: crate::db::value::DbError,
    },
    /// A stored flist could not be read or written by the format crate.
    #[error("flist {path}: {message}")]
    Format {
        /// The flist file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The shared store of flist files (the cluster's object store) failed.
    #[error("flist file store ({op} {name}): {source}")]
    Files {
        /// What was being done (`upload`, `download`, `delete`, `list`).
        op: &'static str,
        /// The flist file (content address) or prefix.
        name: String,
        /// The store's error (credentials redacted; boxed: it is large).
        #[source]
        source: Box<flist_store::StoreError>,
    },
    /// The input is larger than a configured limit (answered 413).
    #[error("too large: {0}")]
    TooLarge(String),
    /// The feature depends on a component that is not available.
    #[error("not implemented: {0}")]
    Unsupported(String),
    /// The request behind the write was abandoned (timed out, client gone): nothing was
    /// recorded.
    #[error("cancelled: the request ended before the flist was stored; nothing was stored")]
    Cancelled,
}

/// Is this I/O error "no space left" (or over quota)?
pub fn io_is_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(28 | 122))
}

impl RepoError {
    /// The catalog database or the shared store of flist files could not be reached (a
    /// transient fault: the operation can be retried once it is back; the HTTP layer answers
    /// 503 with `Retry-After`).
    pub fn is_unavailable(&self) -> bool {
        match self {
            RepoError::Database { source, .. } => source.is_unavailable(),
            RepoError::Files { source, .. } => source.is_transient(),
            _ => false,
        }
    }

    /// When the failure is a full disk: which storage (`flist storage`, `catalog storage`).
    pub fn full_storage(&self) -> Option<&'static str> {
        match self {
            RepoError::Io { source, .. } if io_is_full(source) => Some("flist storage"),
            RepoError::Database { source, .. }
                if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) =>
            {
                Some("catalog storage")
            }
            _ => None,
        }
    }

    /// A failure of the shared store of flist files.
    pub fn files(
        op: &'static str,
        name: impl Into<String>,
        source: flist_store::StoreError,
    ) -> Self {
        RepoError::Files {
            op,
            name: name.into(),
            source: Box::new(source),
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RepoError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Adds context to a database result.
pub(crate) trait SqlContext<T> {
    fn ctx(self, context: &str) -> Result<T, RepoError>;
}

impl<T> SqlContext<T> for Result<T, crate::db::value::DbError> {
    fn ctx(self, context: &str) -> Result<T, RepoError> {
        self.map_err(|source| RepoError::Database {
            context: context.to_string(),
            source,
        })
    }
}

impl<T> SqlContext<T> for Result<T, rusqlite::Error> {
    fn ctx(self, context: &str) -> Result<T, RepoError> {
        self.map_err(crate::db::value::DbError::from).ctx(context)
    }
}
