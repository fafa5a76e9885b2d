//! Store errors: each says which store (credentials redacted), which key, what happened.

use std::time::Duration;

use thiserror::Error;

/// Formats the optional key context of an error: `""` or `" (key 00ab…)"`.
fn key_ctx(key: &Option<String>) -> String {
    match key {
        Some(k) => format!(" (key {k})"),
        None => String::new(),
    }
}

/// An error from a chunk store.
///
/// Every variant names the store (its URL with credentials redacted as `***`) and, where one
/// key is concerned, the key in hex. Batched operations name the first key of the failed
/// request window.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store URL could not be parsed or names an unknown scheme.
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL with credentials redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store could not be reached, or the connection broke.
    #[error("store {store}{}: connection error: {message}", key_ctx(.key))]
    Connection {
        /// The store (credentials redacted).
        store: String,
        /// The key concerned, in hex.
        key: Option<String>,
        /// What happened.
        message: String,
    },
    /// An operation did not complete within the configured time.
    #[error("store {store}{}: {operation} timed out after {after:?}", key_ctx(.key))]
    Timeout {
        /// The store (credentials redacted).
        store: String,
        /// The key concerned, in hex.
        key: Option<String>,
        /// The operation (`connect`, `set`, `get`, ...).
        operation: String,
        /// The configured limit.
        after: Duration,
    },
    /// Authentication or authorisation failed (wrong password, read-only access, ...).
    #[error("store {store}: authentication failed: {message}")]
    Auth {
        /// The store (credentials redacted).
        store: String,
        /// What the server said.
        message: String,
    },
    /// The server's reply did not follow the protocol (or is not what a chunk store sends).
    #[error("store {store}{}: protocol error: {message}", key_ctx(.key))]
    Protocol {
        /// The store (credentials redacted).
        store: String,
        /// The key concerned, in hex.
        key: Option<String>,
        /// What was wrong.
        message: String,
    },
    /// The server answered with an error.
    #[error("store {store}{}: server error: {message}", key_ctx(.key))]
    Server {
        /// The store (credentials redacted).
        store: String,
        /// The key concerned, in hex.
        key: Option<String>,
        /// The server's message.
        message: String,
    },
    /// The namespace is locked (0-db `lock`/`freeze`): writes are refused for now.
    #[error("store {store}{}: namespace is locked: {message}", key_ctx(.key))]
    NamespaceLocked {
        /// The store (credentials redacted).
        store: String,
        /// The key concerned, in hex.
        key: Option<String>,
        /// The server's message.
        message: String,
    },
    /// The namespace (or the store) is full.
    #[error("store {store}{}: namespace is full: {message}", key_ctx(.key))]
    NamespaceFull {
        /// The store (credentials redacted).
        store: String,
        /// The key concerned, in hex.
        key: Option<String>,
        /// The server's message.
        message: String,
    },
    /// The namespace cannot hold chunks (e.g. a 0-db namespace in sequential mode).
    #[error("store {store}: unusable namespace: {message}")]
    BadNamespace {
        /// The store (credentials redacted).
        store: String,
        /// Why.
        message: String,
    },
    /// A key that was required is absent.
    #[error("store {store}: key {key} not found")]
    NotFound {
        /// The store (credentials redacted).
        store: String,
        /// The key, in hex.
        key: String,
    },
    /// A key the store cannot hold (empty, too long).
    #[error("store {store}: invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The store (credentials redacted).
        store: String,
        /// The key, in hex.
        key: String,
        /// Why.
        reason: String,
    },
    /// The store does not support this operation (e.g. `set` on an HTTP store).
    #[error("store {store}: {operation} is not supported: {reason}")]
    Unsupported {
        /// The store (credentials redacted).
        store: String,
        /// The operation.
        operation: String,
        /// Why.
        reason: String,
    },
    /// A local I/O error (directory store).
    #[error("store {store}{}: I/O error on {path}: {source}", key_ctx(.key))]
    Io {
        /// The store.
        store: String,
        /// The key concerned, in hex.
        key: Option<String>,
        /// The file or directory.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Other failures.
    #[error("store {store}: {message}")]
    Other {
        /// The store (credentials redacted).
        store: String,
        /// What happened.
        message: String,
    },
}

impl StoreError {
    /// True for failures worth retrying later (connection, timeout, locked namespace).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Connection { .. }
                | StoreError::Timeout { .. }
                | StoreError::NamespaceLocked { .. }
        )
    }

    /// The redacted store this error is about, when it names one.
    pub fn store(&self) -> Option<&str> {
        match self {
            StoreError::InvalidUrl { .. } => None,
            StoreError::Connection { store, .. }
            | StoreError::Timeout { store, .. }
            | StoreError::Auth { store, .. }
            | StoreError::Protocol { store, .. }
            | StoreError::Server { store, .. }
            | StoreError::NamespaceLocked { store, .. }
            | StoreError::NamespaceFull { store, .. }
            | StoreError::BadNamespace { store, .. }
            | StoreError::NotFound { store, .. }
            | StoreError::InvalidKey { store, .. }
            | StoreError::Unsupported { store, .. }
            | StoreError::Io { store, .. }
            | StoreError::Other { store, .. } => Some(store),
        }
    }
}

/// Hex of a key, for error messages.
pub(crate) fn hex_key(key: &[u8]) -> String {
    hex::encode(key)
}
