//! `GET /healthz` (the process answers) and `GET /readyz` (the catalog takes writes and the
//! chunk store answers; `503` naming what is wrong otherwise).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hub_contract::{Health, Readiness};

use crate::state::Shared;

/// How long the chunk-store probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// `GET /healthz`: `200 {"status":"ok"}` while the process serves.
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_string(),
    })
}

/// `GET /readyz`: `200` when the catalog is writable and the chunk store reachable, `503`
/// with the failing checks otherwise.
pub async fn readyz(State(st): State<Shared>) -> Response {
    let catalog = match st.blocking(|hub| Ok(hub.probe_writable()?)).await {
        Ok(()) => Ok(()),
        Err(e) => Err(e.message),
    };
    // A key that never exists: the answer (absent) proves the store is reachable.
    let probe = [0u8; 16];
    let store = match tokio::time::timeout(PROBE_TIMEOUT, st.store.exists(&probe)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "{} did not answer within {} s",
            st.store,
            PROBE_TIMEOUT.as_secs()
        )),
    };
    let ok = catalog.is_ok() && store.is_ok();
    let show = |r: Result<(), String>| r.err().unwrap_or_else(|| "ok".to_string());
    let body = Readiness {
        status: if ok { "ok" } else { "error" }.to_string(),
        checks: [
            ("catalog".to_string(), show(catalog)),
            ("chunk_store".to_string(), show(store)),
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
    (status, Json(body)).into_response()
}
