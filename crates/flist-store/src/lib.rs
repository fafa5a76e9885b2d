//! Chunk store clients.
//!
//! A chunk store is a key-value store of encrypted chunks keyed by their BLAKE2b-16 hash.
//! [`Store`] is the async interface every backend implements; [`open`] picks the backend
//! from a store URL (`zdb://`, `redis://`, `dir://`, `http(s)://`, or a router of ranges).
//!
//! This crate knows nothing of flists: keys and values are opaque bytes.

use async_trait::async_trait;
use bytes::Bytes;

mod error;
pub use error::StoreError;

/// Result of writing one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOutcome {
    /// The value was written.
    Written,
    /// The key already existed; nothing was rewritten.
    AlreadyPresent,
}

/// An async key-value chunk store.
///
/// Batched operations pipeline their requests; results are in the order of the input keys.
/// A batch either succeeds as a whole or returns an error: partial success is never
/// reported as success.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + std::fmt::Display {
    /// Fetches one value; `None` when the key is absent.
    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError>;
    /// Tests presence of one key.
    async fn exists(&self, key: &[u8]) -> Result<bool, StoreError>;
    /// Stores one value unless the key exists (chunks are content-addressed).
    async fn set(&self, key: &[u8], value: Bytes) -> Result<SetOutcome, StoreError>;

    /// Fetches many values, pipelined.
    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Bytes>>, StoreError>;
    /// Tests presence of many keys, pipelined (never by fetching the values).
    async fn exists_many(&self, keys: &[Vec<u8>]) -> Result<Vec<bool>, StoreError>;
    /// Stores many values, pipelined; existing keys are not rewritten.
    async fn set_many(&self, items: &[(Vec<u8>, Bytes)]) -> Result<Vec<SetOutcome>, StoreError>;
}
