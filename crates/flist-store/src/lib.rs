//! Chunk store clients.
//!
//! A chunk store is a key-value store of encrypted chunks keyed by their BLAKE2b-16 hash.
//! [`Store`] is the async interface every backend implements; [`open`] picks the backend
//! from a store URL (`zdb://`, `redis://`, `dir://`, `s3://`, `http(s)://`, or a router of
//! ranges). [`BlockingStore`] wraps a store for synchronous callers (converter worker
//! threads).
//!
//! [`BlobStore`] keeps whole files under names (an S3 bucket or a directory; e.g. flist
//! files by content hash), with [`BlockingBlobs`] as its synchronous facade.
//!
//! This crate knows nothing of flists: keys, names and values are opaque.
//!
//! ```
//! # fn main() -> Result<(), flist_store::StoreError> {
//! let dir = std::env::temp_dir().join(format!("flist-store-doc-{}", std::process::id()));
//! let store = flist_store::BlockingStore::open(&format!("dir://{}", dir.display()))?;
//! store.set(b"\x01\x02", bytes::Bytes::from_static(b"chunk"))?;
//! assert_eq!(store.get(b"\x01\x02")?.as_deref(), Some(&b"chunk"[..]));
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

use async_trait::async_trait;
use bytes::Bytes;

mod blobs;
mod blocking;
mod dir;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod resp;
mod router;
mod s3;
mod url;

pub use blobs::{open_blobs, open_blobs_url, BlobInfo, BlobStore, BlockingBlobs, DirBlobs};
pub use blocking::{BlockingStore, Pending};
pub use dir::DirStore;
pub use error::StoreError;
pub use http::HttpStore;
pub use resp::codec::RequestLimits;
pub use resp::server::{CheckFn, EndpointStats, ServerOptions, ZdbEndpoint};
pub use resp::RespStore;
pub use router::RouterStore;
pub use s3::S3Store;
pub use url::{open, open_many, open_url, Endpoint, Route, StoreUrl};

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
///
/// `Display` shows the store's URL with credentials redacted.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + std::fmt::Display {
    /// Fetches one value; `None` when the key is absent. By default a one-key
    /// [`Store::get_many`] (composite stores route it like any batch).
    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        Ok(self.get_many(&[key.to_vec()]).await?.pop().flatten())
    }
    /// Tests presence of one key. By default a one-key [`Store::exists_many`].
    async fn exists(&self, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self
            .exists_many(&[key.to_vec()])
            .await?
            .pop()
            .unwrap_or(false))
    }
    /// Stores one value unless the key exists (chunks are content-addressed).
    async fn set(&self, key: &[u8], value: Bytes) -> Result<SetOutcome, StoreError>;

    /// Fetches many values, pipelined.
    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Bytes>>, StoreError>;
    /// Tests presence of many keys, pipelined (never by fetching the values).
    async fn exists_many(&self, keys: &[Vec<u8>]) -> Result<Vec<bool>, StoreError>;
    /// Stores many values, pipelined; existing keys are not rewritten.
    async fn set_many(&self, items: &[(Vec<u8>, Bytes)]) -> Result<Vec<SetOutcome>, StoreError>;

    /// Fetches one value that must exist: an absent key is [`StoreError::NotFound`].
    async fn get_required(&self, key: &[u8]) -> Result<Bytes, StoreError> {
        match self.get(key).await? {
            Some(v) => Ok(v),
            None => Err(StoreError::NotFound {
                store: self.to_string(),
                key: hex::encode(key),
            }),
        }
    }

    /// Fetches many values that must all exist; the first absent key is
    /// [`StoreError::NotFound`].
    async fn get_many_required(&self, keys: &[Vec<u8>]) -> Result<Vec<Bytes>, StoreError> {
        let values = self.get_many(keys).await?;
        let mut out = Vec::with_capacity(values.len());
        for (key, value) in keys.iter().zip(values) {
            match value {
                Some(v) => out.push(v),
                None => {
                    return Err(StoreError::NotFound {
                        store: self.to_string(),
                        key: hex::encode(key),
                    })
                }
            }
        }
        Ok(out)
    }

    /// The number of keys, when the store can tell without walking them (`DBSIZE` of a
    /// 0-db namespace or a Redis database); `None` by default.
    async fn key_count(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    /// False for read-only stores (HTTP), whose `set` fails with
    /// [`StoreError::Unsupported`].
    fn is_writable(&self) -> bool {
        true
    }
}

/// Tuning of network stores.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Limit for one request round (a pipelined window of commands); default 30 s.
    pub timeout: std::time::Duration,
    /// Limit for establishing a connection (incl. the handshake); default 5 s.
    pub connect_timeout: std::time::Duration,
    /// Connections per server; default 4.
    pub pool_size: usize,
    /// Retries of a request round that failed before any reply arrived (connection reset,
    /// refused); default 3, with exponential backoff from 100 ms. For S3 also of 5xx
    /// answers and timeouts.
    pub retries: u32,
    /// Requests in flight at once per S3 store (each on its own keep-alive connection),
    /// over all its batches; default 32.
    pub requests_in_flight: usize,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            timeout: std::time::Duration::from_secs(30),
            connect_timeout: std::time::Duration::from_secs(5),
            pool_size: 4,
            retries: 3,
            requests_in_flight: 32,
        }
    }
}

/// Opens a parsed store URL with explicit [`OpenOptions`].
pub async fn open_url_with(
    url: &StoreUrl,
    options: &OpenOptions,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    match url {
        StoreUrl::Zdb { .. } | StoreUrl::Redis { .. } => Ok(std::sync::Arc::new(RespStore::new(
            url.clone(),
            options.clone(),
        ))),
        StoreUrl::Dir { path, fsync } => {
            let (path, fsync) = (path.clone(), *fsync);
            let store = tokio::task::spawn_blocking(move || {
                DirStore::new(path).map(|s| s.with_fsync(fsync))
            })
            .await
            .map_err(|e| StoreError::Other {
                store: url.to_string(),
                message: e.to_string(),
            })??;
            Ok(std::sync::Arc::new(store))
        }
        StoreUrl::Http { base } => Ok(std::sync::Arc::new(HttpStore::new(
            base,
            url.to_string(),
            options,
        )?)),
        StoreUrl::Router(routes) => {
            let mut stores = Vec::with_capacity(routes.len());
            for r in routes {
                let store = Box::pin(open_url_with(&r.store, options)).await?;
                stores.push((r.first, r.last, store));
            }
            Ok(std::sync::Arc::new(RouterStore::new(stores)?))
        }
        StoreUrl::S3 { .. } => Ok(std::sync::Arc::new(S3Store::new(url, options)?)),
    }
}
