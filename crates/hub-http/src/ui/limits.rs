//! Bounded work on public pages: at most [`HEAVY_PER_CLIENT`] heavy requests (flist pages,
//! full dumps, an flist's metadata and `.json`/`.txt` companions, files inside an flist,
//! the all-repositories
//! listing, search) run at once per client address; more wait their turn for up to
//! [`HEAVY_WAIT`], then get `429 Too Many Requests` with `Retry-After`. However many
//! clients ask, at most [`HEAVY_GLOBAL`] run at once in the whole server (fewer than the
//! catalog's read connections, so light requests always find one and keep answering). What each of them
//! costs is bounded elsewhere: pages are read from the path index one page at a time, and
//! dumps and metadata come from [`crate::contents`] (one load per file, a few at once).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::state::AppState;

/// Heavy requests one client may have running at once.
pub const HEAVY_PER_CLIENT: usize = 4;
/// Heavy requests running at once in the whole server.
pub const HEAVY_GLOBAL: usize = 3;
/// How long a heavy request waits for its client's slot and a server slot.
pub const HEAVY_WAIT: Duration = Duration::from_secs(20);

/// Per-client semaphores and the server's.
pub struct HeavyLimiter {
    per_client: usize,
    clients: Mutex<HashMap<IpAddr, Arc<Semaphore>>>,
    global: Arc<Semaphore>,
}

impl HeavyLimiter {
    /// `per_client` heavy requests at once per address, [`HEAVY_GLOBAL`] in all.
    pub fn new(per_client: usize) -> Self {
        HeavyLimiter {
            per_client: per_client.max(1),
            clients: Mutex::new(HashMap::new()),
            global: Arc::new(Semaphore::new(HEAVY_GLOBAL)),
        }
    }

    fn slot(&self, ip: IpAddr) -> Arc<Semaphore> {
        let mut m = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        // Forget idle clients so the map stays small.
        if m.len() > 4096 {
            m.retain(|_, s| s.available_permits() < self.per_client);
        }
        m.entry(ip)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_client)))
            .clone()
    }
}

/// True for requests whose cost grows with the size of an flist or of the hub.
pub fn is_heavy(path: &str) -> bool {
    if path == "/search" || path == "/api/fileslist" || path == "/api/flist" {
        return true;
    }
    if let Some(rest) = path.strip_prefix("/api/flist/") {
        // `/api/flist/<repo>/<name>`: the full dump (not `me/...`, not `/light` etc.).
        let parts: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        return match parts.as_slice() {
            ["me", ..] => false,
            [_, _] | [_, _, "metadata"] => true,
            _ => false,
        };
    }
    if !path.starts_with("/api/") && path.contains(".flist/files/") {
        // one file inside an flist: a lookup in its database, then its chunks
        return true;
    }
    !path.starts_with("/api/") && [".md", ".json", ".txt"].iter().any(|s| path.ends_with(s))
}

/// The slots a heavy request holds while it runs.
pub struct Permits {
    _own: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
}

/// The client's address (`0.0.0.0` when unknown).
pub fn client_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// Waits for the slots of a request for `path` from `ip` if it is heavy (`Ok(None)` for a
/// light one); the 429 when none frees up in time.
pub async fn admit(st: &AppState, path: &str, ip: IpAddr) -> Result<Option<Permits>, Response> {
    if !is_heavy(path) {
        return Ok(None);
    }
    let page = !path.starts_with("/api/");
    let sem = st.web.heavy.slot(ip);
    let deadline = tokio::time::Instant::now() + HEAVY_WAIT;
    let own = tokio::time::timeout_at(deadline, sem.acquire_owned()).await;
    let permits = match own {
        Ok(Ok(own)) => {
            let global = st.web.heavy.global.clone();
            match tokio::time::timeout_at(deadline, global.acquire_owned()).await {
                Ok(Ok(g)) => Ok((own, g)),
                _ => Err("the hub is busy with large requests: retry shortly"),
            }
        }
        _ => Err("too many large requests at once from your address: retry shortly"),
    };
    match permits {
        Ok((own, global)) => Ok(Some(Permits {
            _own: own,
            _global: global,
        })),
        Err(why) => {
            // Pages answer an HTML page, the API its JSON error.
            let e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, why);
            let mut resp = if page {
                crate::ui::error_page(&e)
            } else {
                e.into_response()
            };
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            Err(resp)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heavy_paths() {
        assert!(is_heavy("/alice/app.md"));
        assert!(is_heavy("/api/flist/alice/app.flist"));
        assert!(!is_heavy("/api/flist/alice/app.flist/light"));
        assert!(is_heavy("/api/flist/alice/app.flist/metadata"));
        assert!(is_heavy("/alice/app.flist.json") && is_heavy("/alice/app.txt"));
        assert!(!is_heavy("/api/flist/me/app.flist"));
        assert!(!is_heavy("/alice/app.flist"));
        assert!(is_heavy("/search"));
        assert!(!is_heavy("/"));
        assert!(is_heavy("/alice/app.flist/files/etc/os-release"));
    }
}
