//! What the public read routes need from a stored flist's contents — its full dump (JSON)
//! and its metadata — held in memory once per file, so a storm of requests for a large
//! flist costs one read (or one parse) of it, not one per request.
//!
//! - Keyed by the file's content address (sha256): a stored file never changes, so nothing
//!   is ever stale.
//! - Bounded by size ([`HubConfig::contents_cache_bytes`](crate::config::HubConfig)), least
//!   recently used out first; a value over half the bound is served but not kept.
//! - One load per key at a time: concurrent requests for the same file wait for the first
//!   and share its result (the bytes are reference-counted, answers do not copy them).
//! - At most [`LOADS_AT_ONCE`] loads in the whole server at once (a load reads a dump of
//!   many megabytes or parses a whole flist), however many clients ask.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hub_repo::{Hub, Resolved};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use crate::error::{ApiError, ApiResult};

/// Loads (dump reads, flist parses) running at once in the whole server.
pub const LOADS_AT_ONCE: usize = 1;

struct Lru {
    map: HashMap<String, (u64, Bytes)>,
    bytes: usize,
}

/// The cache of one server.
pub struct Contents {
    lru: Mutex<Lru>,
    tick: AtomicU64,
    max_bytes: usize,
    loading: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    loads: Semaphore,
}

impl Contents {
    /// A cache holding at most `max_bytes` (`0`: nothing is kept, loads are still shared
    /// by concurrent requests and bounded in number).
    pub fn new(max_bytes: u64) -> Self {
        Contents {
            lru: Mutex::new(Lru {
                map: HashMap::new(),
                bytes: 0,
            }),
            tick: AtomicU64::new(0),
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
            loading: Mutex::new(HashMap::new()),
            loads: Semaphore::new(LOADS_AT_ONCE),
        }
    }

    /// Bytes held now.
    pub fn held_bytes(&self) -> usize {
        self.lru.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }

    fn get(&self, key: &str) -> Option<Bytes> {
        let mut lru = self.lru.lock().unwrap_or_else(|p| p.into_inner());
        let tick = self.tick.fetch_add(1, Ordering::Relaxed);
        let e = lru.map.get_mut(key)?;
        e.0 = tick;
        Some(e.1.clone())
    }

    fn put(&self, key: &str, value: &Bytes) {
        if value.len() > self.max_bytes / 2 {
            return;
        }
        let mut lru = self.lru.lock().unwrap_or_else(|p| p.into_inner());
        let tick = self.tick.fetch_add(1, Ordering::Relaxed);
        if let Some(old) = lru.map.insert(key.to_string(), (tick, value.clone())) {
            lru.bytes -= old.1.len();
        }
        lru.bytes += value.len();
        while lru.bytes > self.max_bytes {
            let Some(oldest) = lru
                .map
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((_, b)) = lru.map.remove(&oldest) {
                lru.bytes -= b.len();
            }
        }
    }

    /// The value under `key`, from memory or computed by `f` on the blocking pool (one
    /// computation per key at a time, [`LOADS_AT_ONCE`] in all). Keys name what the value
    /// is and the content address it derives from (`dump:<sha256>`).
    pub async fn load<F>(&self, key: String, f: F) -> ApiResult<Bytes>
    where
        F: FnOnce() -> Result<Bytes, ApiError> + Send + 'static,
    {
        if let Some(b) = self.get(&key) {
            return Ok(b);
        }
        let one = self
            .loading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        let _one = one.lock().await;
        if let Some(b) = self.get(&key) {
            return Ok(b);
        }
        let _slot = self
            .loads
            .acquire()
            .await
            .map_err(|_| ApiError::internal("contents loader closed"))?;
        let r = tokio::task::spawn_blocking(f).await?;
        if let Ok(b) = &r {
            self.put(&key, b);
        }
        self.loading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        r
    }

    /// The full dump (JSON) of resolved flist `r`.
    pub async fn dump(&self, hub: &Arc<Hub>, r: &Resolved) -> ApiResult<Bytes> {
        let (r2, hub) = (r.clone(), hub.clone());
        self.load(format!("dump:{}", r.sha256), move || {
            Ok(Bytes::from(hub.catalog().dump(&r2)?))
        })
        .await
    }

    /// The metadata (raw string values) of resolved flist `r`.
    pub async fn metadata(&self, hub: &Arc<Hub>, r: &Resolved) -> ApiResult<Map<String, Value>> {
        let (r2, hub) = (r.clone(), hub.clone());
        let text = self
            .load(format!("metadata:{}", r.sha256), move || {
                Ok(Bytes::from(
                    Value::Object(hub.catalog().metadata(&r2)?).to_string(),
                ))
            })
            .await?;
        match serde_json::from_slice(&text) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Ok(Map::new()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_size_least_recently_used_out() {
        let c = Contents::new(100);
        let v = |n: usize| Bytes::from(vec![0u8; n]);
        c.put("a", &v(40));
        c.put("b", &v(40));
        assert!(c.get("a").is_some()); // a is now the most recent
        c.put("c", &v(40));
        assert!(c.get("b").is_none(), "least recently used went out");
        assert!(c.get("a").is_some() && c.get("c").is_some());
        assert_eq!(c.held_bytes(), 80);
        c.put("big", &v(51));
        assert!(c.get("big").is_none(), "over half the bound: not kept");
        assert_eq!(c.held_bytes(), 80);
    }
}
