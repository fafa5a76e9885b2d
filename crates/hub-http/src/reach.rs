//! `hub-server check`: which stored flists announce a `backend` no reader could reach.

use std::collections::BTreeMap;
use std::time::Duration;

use hub_repo::Hub;
use serde_json::Value;

use crate::config::HubConfig;

/// Flists sharing one unreachable backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendProblem {
    /// The backend as announced (JSON text), or `(none)`.
    pub backend: String,
    /// Why no reader could reach it.
    pub why: String,
    /// The entries (`repo/name`) announcing it.
    pub entries: Vec<String>,
}

const TIMEOUT: Duration = Duration::from_secs(3);

/// Why `backend` cannot be reached, or `None` when it can: this hub's own `/chunks/` (served
/// from its `dir://` store) or 0-db endpoint, or a server that answers now.
async fn problem(cfg: &HubConfig, backend: Option<&str>) -> Option<String> {
    let Some(text) = backend else {
        return Some("no backend: readers need to be told a store".into());
    };
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return Some("the backend is not JSON".into());
    };
    if let Some(url) = v.get("url").and_then(Value::as_str) {
        let own = format!("{}/chunks", cfg.public_url());
        if url.trim_end_matches('/') == own && cfg.serves_chunks() {
            return None; // served by this hub from its own store
        }
        let client = reqwest::Client::builder().timeout(TIMEOUT).build().ok()?;
        return match client
            .head(format!("{}/00/00", url.trim_end_matches('/')))
            .send()
            .await
        {
            Ok(_) => None,
            Err(e) => Some(format!("{url} does not answer: {e}")),
        };
    }
    if let Some(own) = cfg.zdb_endpoint_backend() {
        if serde_json::from_str::<Value>(&own).ok().as_ref() == Some(&v) {
            return None; // served by this hub's 0-db endpoint (`zdb_listen`)
        }
    }
    let host = v.get("host").and_then(Value::as_str).unwrap_or("");
    if host.is_empty() {
        return Some("the backend names no host".into());
    }
    let port = v
        .get("port")
        .and_then(|p| {
            p.as_u64()
                .or_else(|| p.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or(9900);
    let addr = format!("{host}:{port}");
    match tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(&addr)).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(format!("{addr} refuses connections: {e}")),
        Err(_) => Some(format!(
            "{addr} does not answer within {} s",
            TIMEOUT.as_secs()
        )),
    }
}

/// Every backend announced by a stored flist that no reader could reach, with its flists.
pub async fn unreachable_backends(
    hub: std::sync::Arc<Hub>,
    cfg: &HubConfig,
) -> Result<Vec<BackendProblem>, hub_repo::RepoError> {
    let rows = tokio::task::spawn_blocking(move || hub.entry_backends())
        .await
        .map_err(|e| hub_repo::RepoError::Invalid(format!("worker: {e}")))??;
    let mut by_backend: BTreeMap<Option<String>, Vec<String>> = BTreeMap::new();
    for r in rows {
        by_backend
            .entry(r.backend)
            .or_default()
            .push(format!("{}/{}", r.repo, r.name));
    }
    let mut out = Vec::new();
    for (backend, entries) in by_backend {
        if let Some(why) = problem(cfg, backend.as_deref()).await {
            out.push(BackendProblem {
                backend: backend
                    .map(|b| redact(&b))
                    .unwrap_or_else(|| "(none)".into()),
                why,
                entries,
            });
        }
    }
    Ok(out)
}

/// The backend JSON without its credentials.
fn redact(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(mut m)) => {
            m.remove("password");
            m.remove("token");
            Value::Object(m).to_string()
        }
        _ => "(unparsable backend)".into(),
    }
}

/// File in the data directory holding the public URL the server last ran under (read by
/// `hub-server check` when no public URL is configured).
const PUBLIC_URL_FILE: &str = "public-url";

/// Records the public URL the server runs under (best effort, atomic).
pub fn record_public_url(data_dir: &std::path::Path, url: &str) {
    let tmp = data_dir.join(format!(".{PUBLIC_URL_FILE}.tmp"));
    let done = std::fs::write(&tmp, format!("{url}\n"))
        .and_then(|()| std::fs::rename(&tmp, data_dir.join(PUBLIC_URL_FILE)));
    if let Err(e) = done {
        tracing::debug!("recording the public URL: {e}");
    }
}

/// The public URL the server last ran under, if recorded.
pub fn recorded_public_url(data_dir: &std::path::Path) -> Option<String> {
    std::fs::read_to_string(data_dir.join(PUBLIC_URL_FILE))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}
