//! `GET /healthz` (the process answers) and `GET /readyz` (the catalog takes writes, the
//! chunk store answers and takes writes; `503` otherwise).
//!
//! Everyone sees whether the hub is ready; only an administrator (a signed-in account with
//! the admin flag) or a client on the hub's own machine (a loopback peer, not forwarded by
//! a proxy) sees what is wrong: the details name the store's address and server paths.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hub_contract::{Health, Readiness};

use crate::state::Shared;

/// How long the chunk-store probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Least time between two write probes of a store that refused a write.
const WRITE_PROBE_EVERY: Duration = Duration::from_secs(5);

/// Whether the chunk store takes writes, as the hub's own writes found out: the last
/// refusal, until a write succeeds again. Fed by [`crate::observe::MeteredStore`].
#[derive(Debug, Default)]
pub struct StoreWrites {
    refused: Mutex<Option<String>>,
    probed: Mutex<Option<Instant>>,
}

impl StoreWrites {
    /// Records the outcome of a write (`Err`: its error, for the log and administrators).
    pub fn note(&self, outcome: Result<(), &flist_store::StoreError>) {
        use flist_store::StoreError as E;
        let mut r = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok(()) => *r = None,
            // A bad key or an operation the store lacks says nothing of its health.
            Err(E::InvalidKey { .. } | E::Unsupported { .. }) => {}
            Err(e) => *r = Some(e.to_string()),
        }
    }

    /// The last refusal, while no write succeeded since.
    pub fn refused(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// True when a write probe is due (at most one per [`WRITE_PROBE_EVERY`]).
    fn probe_due(&self) -> bool {
        let mut p = self.probed.lock().unwrap_or_else(|p| p.into_inner());
        if p.is_some_and(|t| t.elapsed() < WRITE_PROBE_EVERY) {
            return false;
        }
        *p = Some(Instant::now());
        true
    }
}

/// `GET /healthz`: `200 {"status":"ok"}` while the process serves.
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_string(),
    })
}

/// Whether `store` answers: a key that never exists is asked for, and the answer (absent)
/// proves the store is reachable; else why not.
pub async fn probe_store(store: &dyn flist_store::Store) -> Result<(), String> {
    let probe = [0u8; 16];
    match tokio::time::timeout(PROBE_TIMEOUT, store.exists(&probe)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "{store} did not answer within {} s",
            PROBE_TIMEOUT.as_secs()
        )),
    }
}

/// `GET /readyz`: `200` when the catalog is writable and the chunk store reachable and
/// taking writes, `503` otherwise; the failing checks for administrators and local clients.
pub async fn readyz(
    State(st): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let catalog = match st.blocking(|hub| Ok(hub.probe_writable()?)).await {
        Ok(()) => Ok(()),
        Err(e) => Err(e.message),
    };
    let store = probe_store(st.store.as_ref()).await;
    let writes = store_writes(&st).await;
    let ok = catalog.is_ok() && store.is_ok() && writes.is_ok();
    let show = |r: Result<(), String>| r.err().unwrap_or_else(|| "ok".to_string());
    let mut body = Readiness {
        status: if ok { "ok" } else { "error" }.to_string(),
        checks: [
            ("catalog".to_string(), show(catalog)),
            ("chunk_store".to_string(), show(store)),
            ("chunk_store_writes".to_string(), show(writes)),
        ]
        .into_iter()
        .collect(),
    };
    if !ok {
        tracing::warn!(
            "not ready: {}",
            serde_json::to_string(&body).unwrap_or_default()
        );
    }
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if !sees_details(&st, peer, &headers).await {
        body.checks.clear();
    }
    (status, Json(body)).into_response()
}

/// Whether the store takes writes: fine unless one of the hub's writes was refused since
/// the last success; then a fresh probe chunk is written (at most every
/// [`WRITE_PROBE_EVERY`]), whose success clears the refusal.
async fn store_writes(st: &Shared) -> Result<(), String> {
    if st.store_writes.refused().is_none() || !st.store.is_writable() {
        return Ok(());
    }
    if st.store_writes.probe_due() {
        let mut plain = *b"hub readiness probe .............";
        let _ = getrandom::fill(&mut plain[21..]);
        let chunk = flist_format::codec::encode_chunk(&plain);
        let key = chunk.block.id().to_vec();
        // (the outcome is noted by the metered store)
        let _ = tokio::time::timeout(
            PROBE_TIMEOUT,
            st.store.set(&key, bytes::Bytes::from(chunk.data)),
        )
        .await;
    }
    match st.store_writes.refused() {
        None => Ok(()),
        Some(e) => Err(format!("refuses writes: {e}")),
    }
}

/// Administrators and clients on this machine see the failing checks.
async fn sees_details(st: &Shared, peer: SocketAddr, headers: &HeaderMap) -> bool {
    let forwarded = ["forwarded", "x-forwarded-for", "x-real-ip"]
        .iter()
        .any(|h| headers.contains_key(*h));
    if peer.ip().is_loopback() && !forwarded {
        return true;
    }
    if !crate::auth::presents_credentials(headers) {
        return false;
    }
    let Ok(actor) = crate::auth::authenticate(st, headers).await else {
        return false;
    };
    st.blocking(move |hub| Ok(hub.accounts().is_admin(&actor.user)?))
        .await
        .unwrap_or(false)
}
