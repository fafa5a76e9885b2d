//! Errors of the zflist commands. Every error knows which command ("function", as the
//! reference JSON envelope calls it) failed and says what was being done with which path,
//! key or store.

use std::path::Path;

use thiserror::Error;

/// An error from a zflist command.
#[derive(Debug, Error)]
#[error("{kind}")]
pub struct Error {
    /// The command that failed (`ls`, `put`, `pack`, ...), reported as `function`.
    pub function: String,
    /// What went wrong.
    #[source]
    pub kind: ErrorKind,
}

/// What went wrong in a command.
#[derive(Debug, Error)]
pub enum ErrorKind {
    /// Bad or missing arguments.
    #[error("{0}")]
    Usage(String),
    /// No temporary point was given.
    #[error("no temporary point: set ZFLIST_MNT or give it as the first argument (or --mnt)")]
    NoMountpoint,
    /// The temporary point holds no open flist.
    #[error("no flist is open in {0} (run `open` or `init` first)")]
    NoSession(String),
    /// The temporary point already holds an open flist.
    #[error("{0} already contains an open flist (run `close` or `commit` first)")]
    SessionExists(String),
    /// A path in the flist does not exist or is of the wrong kind.
    #[error("{path}: {reason}")]
    Entry {
        /// The path inside the flist.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Metadata is missing or malformed.
    #[error("{0}")]
    Metadata(String),
    /// A local file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with which path.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing the flist itself failed.
    #[error(transparent)]
    Format(#[from] flist_format::error::FormatError),
    /// A tree edit was refused.
    #[error(transparent)]
    Tree(#[from] flist_format::TreeError),
    /// A chunk could not be decoded.
    #[error(transparent)]
    Codec(#[from] flist_format::CodecError),
    /// The chunk store failed.
    #[error(transparent)]
    Store(#[from] flist_store::StoreError),
    /// No store is configured for an operation that needs one.
    #[error("no chunk store: {0}")]
    NoStore(String),
    /// An flist given as a URL could not be downloaded (or failed its md5 check).
    #[error("{0}")]
    Download(String),
    /// Conversion (pack/extract/verify) failed.
    #[error("{0}")]
    Convert(String),
    /// The hub could not be reached or refused a request.
    #[error("{0}")]
    Hub(String),
    /// `GET /api/flist/me` did not answer the expected identity (the reference client's
    /// "hub authentication failed").
    #[error("hub authentication failed ({0})")]
    HubAuth(String),
    /// Mounting or unmounting failed.
    #[error(transparent)]
    Mount(#[from] flist_mount::MountError),
    /// Starting a container or a VM failed.
    #[error(transparent)]
    Run(#[from] flist_run::RunError),
}

impl Error {
    /// An error of `function`.
    pub fn new(function: impl Into<String>, kind: impl Into<ErrorKind>) -> Self {
        Error {
            function: function.into(),
            kind: kind.into(),
        }
    }

    /// A usage error of `function`.
    pub fn usage(function: impl Into<String>, message: impl Into<String>) -> Self {
        Error::new(function, ErrorKind::Usage(message.into()))
    }

    /// An error about the flist entry `path`.
    pub fn entry(function: impl Into<String>, path: &str, reason: impl Into<String>) -> Self {
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        Error::new(
            function,
            ErrorKind::Entry {
                path,
                reason: reason.into(),
            },
        )
    }

    /// An I/O error on `path`.
    pub fn io(
        function: impl Into<String>,
        what: impl AsRef<str>,
        path: &Path,
        source: std::io::Error,
    ) -> Self {
        Error::new(
            function,
            ErrorKind::Io {
                what: format!("{} {}", what.as_ref(), path.display()),
                source,
            },
        )
    }

    /// The message, without the function: what the JSON envelope's `error.message` holds.
    pub fn message(&self) -> String {
        self.kind.to_string()
    }
}

/// Shorthand result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches the command name to lower-level errors.
pub(crate) trait Context<T> {
    /// Maps the error into an [`Error`] of `function`.
    fn ctx(self, function: &str) -> Result<T>;
}

impl<T, E: Into<ErrorKind>> Context<T> for std::result::Result<T, E> {
    fn ctx(self, function: &str) -> Result<T> {
        self.map_err(|e| Error::new(function, e))
    }
}
