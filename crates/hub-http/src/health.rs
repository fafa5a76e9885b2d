//! `GET /healthz` (the process answers) and `GET /readyz` (the catalog takes writes and the
//! chunk store answers; `503` naming what is wrong otherwise).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::state::Shared;

/// How long the chunk-store probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// `GET /healthz`: `200 {"status":"ok"}` while the process serves.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
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
    let show = |r: &Result<(), String>| match r {
        Ok(()) => json!("ok"),
        Err(e) => json!(e),
    };
    let body = json!({
        "status": if ok { "ok" } else { "error" },
        "checks": {"catalog": show(&catalog), "chunk_store": show(&store)},
    });
    if !ok {
        tracing::warn!("not ready: {body}");
    }
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
