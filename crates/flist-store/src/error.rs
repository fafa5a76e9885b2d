//! Store errors: each says which store (credentials redacted), which key, what happened.

use thiserror::Error;

/// An error from a chunk store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The store URL could not be parsed or names an unknown scheme.
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL with credentials redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Other failures; the backends refine this.
    #[error("store {store}: {message}")]
    Other {
        /// The store (credentials redacted).
        store: String,
        /// What happened.
        message: String,
    },
}
