//! The chunk API behind `zflist push`: a client asks which chunks the hub's store lacks and
//! uploads only those, then publishes its flist with `upload-flist`.
//!
//! - `POST /api/chunks/missing` (authenticated): `{"keys": ["<hex>", ...]}` →
//!   `{"status":"success","payload":{"missing":["<hex>", ...]}}`, answered with one pipelined
//!   `exists_many` batch against the store (never a `GET` per chunk).
//! - `PUT /api/chunks/<hex>` (authenticated): the body is the stored (encrypted) chunk. The
//!   hub checks `<hex>` is the BLAKE2b-16 of the body before storing it (a client can never
//!   store a chunk under another key: 400, nothing stored), refuses bodies larger than
//!   `chunks.max_chunk_bytes` (413), counts new bytes against the user's quota per window
//!   (`chunks.user_quota_bytes` per `chunks.quota_window_secs`, 429 when exceeded) and answers
//!   503 when the store fails, as uploads do. An existing chunk is not rewritten:
//!   `{"status":"success","payload":{"key","written":false}}`.
//!
//! Pushes are resumable by construction: a push run again after an interruption is told
//! that the chunks it already sent exist.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::{post, put};
use axum::{Extension, Json, Router};
use flist_store::SetOutcome;
use serde::Deserialize;
use tower_http::timeout::TimeoutLayer;

use crate::auth::Caller;
use crate::config::ChunksConfig;
use crate::error::{ApiError, ApiResult};
use hub_contract::{ChunkStored, Missing, Success};

use crate::state::Shared;

/// Length of a chunk key in bytes (BLAKE2b-16).
pub const KEY_BYTES: usize = 16;

/// Body of `POST /api/chunks/missing`.
#[derive(Debug, Deserialize)]
pub struct MissingRequest {
    /// Chunk keys, lower- or upper-case hex of 16 bytes.
    pub keys: Vec<String>,
}

/// Counters of the chunk API since the server started.
#[derive(Debug, Default)]
pub struct ChunkCounters {
    /// Keys asked about in `missing` requests.
    pub keys_checked: AtomicU64,
    /// Of those, keys the store lacked.
    pub keys_missing: AtomicU64,
    /// Chunks received by `PUT` (valid or not).
    pub chunks_received: AtomicU64,
    /// Bytes received by `PUT`.
    pub bytes_received: AtomicU64,
    /// Chunks newly written to the store.
    pub chunks_written: AtomicU64,
    /// Bytes newly written to the store.
    pub bytes_written: AtomicU64,
    /// Chunks refused (wrong key, too large, over quota).
    pub chunks_refused: AtomicU64,
}

/// Per-user byte budget over a fixed window, kept in memory.
#[derive(Debug)]
struct Quota {
    limit: u64,
    window: Duration,
    used: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Quota {
    /// Reserves `n` bytes for `user`; false when that would exceed the budget.
    fn reserve(&self, user: &str, n: u64) -> bool {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if used.len() > 100_000 {
            used.retain(|_, (t, _)| now.duration_since(*t) < self.window);
        }
        let slot = used.entry(user.to_string()).or_insert((now, 0));
        if now.duration_since(slot.0) >= self.window {
            *slot = (now, 0);
        }
        if slot.1.saturating_add(n) > self.limit {
            return false;
        }
        slot.1 += n;
        true
    }

    /// Gives back `n` bytes reserved by `user` (the chunk was not written).
    fn release(&self, user: &str, n: u64) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = used.get_mut(user) {
            slot.1 = slot.1.saturating_sub(n);
        }
    }
}

/// State of the chunk routes.
#[derive(Debug)]
pub struct ChunkApi {
    config: ChunksConfig,
    quota: Quota,
    /// What the API did since the server started.
    pub counters: ChunkCounters,
}

impl ChunkApi {
    /// State for `config`.
    pub fn new(config: ChunksConfig) -> Self {
        ChunkApi {
            quota: Quota {
                limit: config.user_quota_bytes,
                window: Duration::from_secs(config.quota_window_secs.max(1)),
                used: Mutex::new(HashMap::new()),
            },
            config,
            counters: ChunkCounters::default(),
        }
    }
}

/// Parses a hex chunk key.
pub fn parse_key(hex_key: &str) -> Result<[u8; KEY_BYTES], ApiError> {
    let mut key = [0u8; KEY_BYTES];
    if hex_key.len() != KEY_BYTES * 2 || hex::decode_to_slice(hex_key, &mut key).is_err() {
        let shown: String = hex_key.chars().take(64).collect();
        return Err(ApiError::bad_request(format!(
            "invalid chunk key {shown:?}: expected {} hex digits",
            KEY_BYTES * 2
        )));
    }
    Ok(key)
}

/// The chunk routes, with their own body limit and time limit.
pub fn routes(state: &Shared) -> Router<Shared> {
    let cfg = &state.config;
    let api = Arc::new(ChunkApi::new(cfg.chunks.clone()));
    // the limit applies to the chunk body; a missing-list of max_keys keys is far smaller
    // than 1 MiB per 16 000 keys
    let body_limit = usize::try_from(cfg.chunks.max_chunk_bytes)
        .unwrap_or(usize::MAX)
        .max(cfg.chunks.max_keys.saturating_mul(40) + 1024);
    Router::new()
        .route("/api/chunks/missing", post(missing))
        .route("/api/chunks/{key}", put(put_chunk))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(move |req, next| {
            crate::guard::declared_length(body_limit as u64, req, next)
        }))
        .layer(Extension(api))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(cfg.request_timeout_secs),
        ))
}

/// `POST /api/chunks/missing`: which of these keys the hub's store lacks.
pub async fn missing(
    State(st): State<Shared>,
    Extension(api): Extension<Arc<ChunkApi>>,
    Caller(_actor): Caller,
    body: Bytes,
) -> ApiResult<Json<Success<Missing>>> {
    let req: MissingRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("expected {{\"keys\": [\"<hex>\", ...]}}: {e}"))
    })?;
    if req.keys.len() > api.config.max_keys {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} keys in one request; at most {} are accepted",
                req.keys.len(),
                api.config.max_keys
            ),
        ));
    }
    let keys = req
        .keys
        .iter()
        .map(|k| parse_key(k).map(|k| k.to_vec()))
        .collect::<Result<Vec<_>, _>>()?;
    let present = if keys.is_empty() {
        Vec::new()
    } else {
        st.store.exists_many(&keys).await?
    };
    let missing: Vec<String> = keys
        .iter()
        .zip(present)
        .filter(|(_, p)| !p)
        .map(|(k, _)| hex::encode(k))
        .collect();
    api.counters
        .keys_checked
        .fetch_add(keys.len() as u64, Ordering::Relaxed);
    api.counters
        .keys_missing
        .fetch_add(missing.len() as u64, Ordering::Relaxed);
    Ok(Json(Success::with(Missing { missing })))
}

/// `PUT /api/chunks/<hex>`: stores one chunk after checking its key.
pub async fn put_chunk(
    State(st): State<Shared>,
    Extension(api): Extension<Arc<ChunkApi>>,
    Caller(actor): Caller,
    Path(hex_key): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Success<ChunkStored>>> {
    let c = &api.counters;
    c.chunks_received.fetch_add(1, Ordering::Relaxed);
    c.bytes_received
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    let refuse = |e: ApiError| {
        c.chunks_refused.fetch_add(1, Ordering::Relaxed);
        e
    };
    let key = parse_key(&hex_key).map_err(refuse)?;
    let len = body.len() as u64;
    if len == 0 {
        return Err(refuse(ApiError::bad_request("empty chunk body")));
    }
    if len > api.config.max_chunk_bytes {
        return Err(refuse(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "chunk of {len} bytes; at most {} are accepted",
                api.config.max_chunk_bytes
            ),
        )));
    }
    let b2 = body.clone();
    let actual: [u8; KEY_BYTES] =
        tokio::task::spawn_blocking(move || flist_format::codec::blake2b::<KEY_BYTES>(&b2)).await?;
    if actual != key {
        return Err(refuse(ApiError::bad_request(format!(
            "chunk key {hex_key} does not match its content (BLAKE2b-16 {}): not stored",
            hex::encode(actual)
        ))));
    }
    if !api.quota.reserve(&actor.user, len) {
        // a chunk the store already has costs nothing, even over the quota
        if st.store.exists(&key).await? {
            return Ok(Json(Success::with(ChunkStored {
                key: hex::encode(key),
                written: false,
            })));
        }
        return Err(refuse(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "chunk upload quota of {} bytes per {} s reached for {}",
                api.config.user_quota_bytes, api.config.quota_window_secs, actor.user
            ),
        )));
    }
    let outcome = match st.store.set(&key, body).await {
        Ok(o) => o,
        Err(e) => {
            api.quota.release(&actor.user, len);
            return Err(e.into());
        }
    };
    let written = outcome == SetOutcome::Written;
    if written {
        c.chunks_written.fetch_add(1, Ordering::Relaxed);
        c.bytes_written.fetch_add(len, Ordering::Relaxed);
    } else {
        api.quota.release(&actor.user, len);
    }
    Ok(Json(Success::with(ChunkStored {
        key: hex::encode(key),
        written,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_32_hex_digits() {
        assert!(parse_key("00112233445566778899aabbccddeeff").is_ok());
        assert!(parse_key("00112233445566778899AABBCCDDEEFF").is_ok());
        assert!(parse_key("00112233445566778899aabbccddeef").is_err());
        assert!(parse_key("00112233445566778899aabbccddeeffaa").is_err());
        assert!(parse_key("zz112233445566778899aabbccddeeff").is_err());
        assert!(parse_key("../../etc/passwd").is_err());
    }

    #[test]
    fn quota_resets_per_window_and_gives_back() {
        let q = Quota {
            limit: 100,
            window: Duration::from_secs(3600),
            used: Mutex::new(HashMap::new()),
        };
        assert!(q.reserve("alice", 60));
        assert!(!q.reserve("alice", 60));
        assert!(q.reserve("bob", 60));
        q.release("alice", 60);
        assert!(q.reserve("alice", 100));
        assert!(!q.reserve("alice", 1));
    }
}
