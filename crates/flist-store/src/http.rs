//! `http(s)://host/base` — a read-only store: `GET <base>/<hex[0..2]>/<hex>`, presence by
//! `HEAD`. One keep-alive client (rustls, no system TLS library); batches run up to
//! [`PARALLEL`] requests at once.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use crate::error::hex_key;
use crate::{OpenOptions, SetOutcome, Store, StoreError};

/// Requests in flight per batch.
const PARALLEL: usize = 16;

/// A read-only HTTP(S) chunk store.
#[derive(Clone, Debug)]
pub struct HttpStore {
    client: reqwest::Client,
    base: String,
    name: String,
    timeout: Duration,
}

impl std::fmt::Display for HttpStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl HttpStore {
    /// A store reading from `base` (`http(s)://host[:port]/path`), displayed as `name`.
    pub(crate) fn new(base: &str, name: String, opts: &OpenOptions) -> Result<Self, StoreError> {
        let client = reqwest::Client::builder()
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.timeout)
            .pool_max_idle_per_host(PARALLEL)
            .build()
            .map_err(|e| StoreError::Other {
                store: name.clone(),
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(HttpStore {
            client,
            base: base.trim_end_matches('/').to_owned(),
            name,
            timeout: opts.timeout,
        })
    }

    fn url_of(&self, key: &[u8]) -> Result<String, StoreError> {
        if key.is_empty() {
            return Err(StoreError::InvalidKey {
                store: self.name.clone(),
                key: String::new(),
                reason: "empty key".into(),
            });
        }
        let hex = hex::encode(key);
        Ok(format!("{}/{}/{}", self.base, &hex[..2], hex))
    }

    /// The flat layout `BASE/<hex>` older rfs stores serve, tried after a 404.
    fn flat_url_of(&self, key: &[u8]) -> String {
        format!("{}/{}", self.base, hex::encode(key))
    }

    fn request_err(&self, key: &[u8], op: &str, e: reqwest::Error) -> StoreError {
        let store = self.name.clone();
        let key = Some(hex_key(key));
        if e.is_timeout() {
            StoreError::Timeout {
                store,
                key,
                operation: op.into(),
                after: self.timeout,
            }
        } else if e.is_connect() {
            StoreError::Connection {
                store,
                key,
                message: format!("{op}: {}", e.without_url()),
            }
        } else {
            StoreError::Protocol {
                store,
                key,
                message: format!("{op}: {}", e.without_url()),
            }
        }
    }

    fn status_err(&self, key: &[u8], op: &str, status: reqwest::StatusCode) -> StoreError {
        let store = self.name.clone();
        match status.as_u16() {
            401 | 403 => StoreError::Auth {
                store,
                message: format!("{op} {}: {status}", hex_key(key)),
            },
            _ => StoreError::Server {
                store,
                key: Some(hex_key(key)),
                message: format!("{op}: HTTP {status}"),
            },
        }
    }
}

#[async_trait]
impl Store for HttpStore {
    /// `GET <base>/<hex[0..2]>/<hex>`, then `<base>/<hex>` on 404 (as rfs reads).
    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        for url in [self.url_of(key)?, self.flat_url_of(key)] {
            let resp = self
                .client
                .get(url)
                .send()
                .await
                .map_err(|e| self.request_err(key, "GET", e))?;
            match resp.status().as_u16() {
                200 => {
                    return Ok(Some(
                        resp.bytes()
                            .await
                            .map_err(|e| self.request_err(key, "GET", e))?,
                    ))
                }
                404 | 410 => {}
                _ => return Err(self.status_err(key, "GET", resp.status())),
            }
        }
        Ok(None)
    }

    /// `HEAD`, in the same two layouts as [`HttpStore::get`].
    async fn exists(&self, key: &[u8]) -> Result<bool, StoreError> {
        for url in [self.url_of(key)?, self.flat_url_of(key)] {
            let resp = self
                .client
                .head(url)
                .send()
                .await
                .map_err(|e| self.request_err(key, "HEAD", e))?;
            match resp.status().as_u16() {
                200 | 204 => return Ok(true),
                404 | 410 => {}
                _ => return Err(self.status_err(key, "HEAD", resp.status())),
            }
        }
        Ok(false)
    }

    async fn set(&self, _key: &[u8], _value: Bytes) -> Result<SetOutcome, StoreError> {
        Err(StoreError::Unsupported {
            store: self.name.clone(),
            operation: "set".into(),
            reason: "HTTP stores are read-only".into(),
        })
    }

    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Bytes>>, StoreError> {
        let futs: Vec<_> = keys.iter().map(|k| self.get(k)).collect();
        futures::stream::iter(futs)
            .buffered(PARALLEL)
            .try_collect()
            .await
    }

    async fn exists_many(&self, keys: &[Vec<u8>]) -> Result<Vec<bool>, StoreError> {
        let futs: Vec<_> = keys.iter().map(|k| self.exists(k)).collect();
        futures::stream::iter(futs)
            .buffered(PARALLEL)
            .try_collect()
            .await
    }

    async fn set_many(&self, items: &[(Vec<u8>, Bytes)]) -> Result<Vec<SetOutcome>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        self.set(&[], Bytes::new()).await.map(|o| vec![o])
    }

    fn is_writable(&self) -> bool {
        false
    }
}
