//! Errors of starting a container or a VM.

/// Why a container or a VM could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The process is not root.
    #[error("{0} needs root (it mounts FUSE and overlayfs file systems and creates namespaces): run it as root, e.g. with sudo")]
    NotRoot(String),
    /// The flist records no command and none was given.
    #[error("the flist records no entrypoint (no `entrypoint` metadata, no /.startup.toml): give one with --entrypoint")]
    NoEntrypoint,
    /// The entrypoint's program cannot be started.
    #[error("entrypoint {program}: {reason}")]
    Entrypoint {
        /// The program as recorded or given.
        program: String,
        /// Why it cannot run.
        reason: String,
    },
    /// The flist's recorded command is malformed.
    #[error("the flist's {what} is malformed: {reason}")]
    Recorded {
        /// `entrypoint metadata`, `/.startup.toml`, ...
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// A file operation failed.
    #[error("{doing} {path}: {source}")]
    Io {
        /// What was being done.
        doing: String,
        /// On which path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// A system call failed.
    #[error("{doing}: {errno}")]
    Sys {
        /// What was being done.
        doing: String,
        /// The error.
        errno: nix::errno::Errno,
    },
    /// The container's init failed before the entrypoint started (its message).
    #[error("{0}")]
    Start(String),
    /// Starting or running QEMU failed.
    #[error("{0}")]
    Vm(String),
}

impl RunError {
    /// An I/O error while `doing` on `path`.
    pub fn io(doing: &str, path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        RunError::Io {
            doing: doing.to_string(),
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// A failed system call while `doing`.
    pub fn sys(doing: impl Into<String>, errno: nix::errno::Errno) -> Self {
        RunError::Sys {
            doing: doing.into(),
            errno,
        }
    }
}
