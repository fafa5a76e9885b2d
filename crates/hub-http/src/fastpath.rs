//! The fast path: the hottest public reads answered from memory ahead of the router.
//!
//! `GET`/`HEAD` of a flist download (`/<repo>/<name>.flist`, `/<repo>/tags/<tag>/<name>.flist`,
//! and their `.md5`) and of a repository listing (`/api/flist/<repo>`) are answered here,
//! without the router and its middleware stack, **only when every piece of the answer is
//! already in memory for the current catalog generation**: the name resolution and the file
//! bytes in [`crate::downloads::Downloads`], the listing's JSON in the state's response
//! cache. Anything else (a cache miss, an unknown name, a request with a body, an odd path)
//! goes to the router unchanged, which computes the answer and fills the caches; so the fast
//! path never decides anything the router has not decided before for the same catalog.
//!
//! What the middleware stack adds to these answers is reproduced: the request id header,
//! the CORS headers of public reads, `Content-Length` and the empty body of `HEAD` (axum),
//! the request log line (formatted only when that log is enabled) and the request metrics
//! (counter and latency handles kept per method, route and status, no label lookup).
//! `tests/fastpath.rs` compares its answers with the router's, header by header.
//!
//! Private repositories: once the catalog has one, a request with credentials, a listing
//! of a private repository and a name whose resolution passes through one go to the router
//! (see [`crate::visibility`]); the private set must have been read for the current
//! generation, else the router answers (and reads it).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures::future::{Either, Ready};
use http_body::{Frame, SizeHint};
use hub_repo::names;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use crate::observe::RouteLabels;
use crate::state::Shared;

/// Route templates, as the router's `MatchedPath` names them in metrics.
const ROUTES: [&str; 3] = [
    "/{repo}/{file}",
    "/{repo}/tags/{tag}/{file}",
    "/api/flist/{repo}",
];
const STATUSES: [StatusCode; 4] = [
    StatusCode::OK,
    StatusCode::PARTIAL_CONTENT,
    StatusCode::NOT_MODIFIED,
    StatusCode::RANGE_NOT_SATISFIABLE,
];
const SLOTS: usize = 2 * ROUTES.len() * STATUSES.len();

/// The fast path's switch, counters and metric handles (part of the server state).
pub struct FastPath {
    enabled: AtomicBool,
    served: AtomicU64,
    handles: [OnceLock<(Counter, Histogram)>; SLOTS],
}

impl Default for FastPath {
    fn default() -> Self {
        FastPath {
            enabled: AtomicBool::new(true),
            served: AtomicU64::new(0),
            handles: std::array::from_fn(|_| OnceLock::new()),
        }
    }
}

impl FastPath {
    /// Turns the fast path on or off (off: every request goes through the router; tests
    /// compare both answers).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// Requests answered by the fast path since start.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

/// The request metrics of one fast answer, recorded when its body ends (as the router's
/// log layer does).
struct Done {
    st: Shared,
    slot: usize,
    started: Instant,
    /// The path, kept only when the request log is enabled.
    log: Option<(Method, String)>,
    status: u16,
}

impl Done {
    fn finish(self, sent: u64) {
        let secs = self.started.elapsed().as_secs_f64();
        let fast = &self.st.fastpath;
        let (counter, seconds) = fast.handles[self.slot].get_or_init(|| {
            let (m, r, s) = (
                self.slot / (ROUTES.len() * STATUSES.len()),
                (self.slot / STATUSES.len()) % ROUTES.len(),
                self.slot % STATUSES.len(),
            );
            self.st.metrics.request_handles(&RouteLabels {
                method: if m == 0 { "GET" } else { "HEAD" }.into(),
                route: ROUTES[r].into(),
                status: STATUSES[s].as_u16(),
            })
        });
        counter.inc();
        seconds.observe(secs);
        self.st.metrics.sent(sent);
        if let Some((method, path)) = &self.log {
            crate::observe::log_line(
                method.as_str(),
                path,
                self.status,
                sent,
                0,
                secs,
                None,
                None,
                false,
            );
        }
    }
}

pin_project_lite::pin_project! {
    /// A whole body in memory that records the request when it ends or is dropped.
    struct FastBody {
        data: Option<Bytes>,
        sent: u64,
        done: Option<Done>,
    }

    impl PinnedDrop for FastBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(d) = this.done.take() {
                d.finish(*this.sent);
            }
        }
    }
}

impl http_body::Body for FastBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        if let Some(d) = this.data.take() {
            *this.sent += d.len() as u64;
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        if let Some(d) = this.done.take() {
            d.finish(*this.sent);
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

/// What a request asks for, when it is one the fast path may answer.
enum Wanted<'a> {
    /// A download: the cache key of its name, the entry name, `.md5` or not, route index.
    File {
        key: &'a str,
        name: &'a str,
        md5: bool,
        route: usize,
    },
    /// A repository listing.
    Listing { repo: &'a str },
}

/// Splits `path` (trailing `/` trimmed, percent-decoded) into what it asks for.
fn wanted(path: &str) -> Option<Wanted<'_>> {
    let rest = path.strip_prefix('/')?;
    if let Some(repo) = rest.strip_prefix("api/flist/") {
        if repo.contains('/') || repo == "me" || names::validate_repo(repo).is_err() {
            return None;
        }
        return Some(Wanted::Listing { repo });
    }
    let mut parts = rest.split('/');
    let repo = parts.next()?;
    let (a, b, c, d) = (parts.next(), parts.next(), parts.next(), parts.next());
    let (file, route, tag) = match (a, b, c, d) {
        (Some(file), None, None, None) => (file, 0, None),
        (Some("tags"), Some(tag), Some(file), None) => (file, 1, Some(tag)),
        _ => return None,
    };
    // Literal first segments belong to other routes (`/static/...`, `/listen/...`).
    if names::is_reserved(repo) || names::validate_repo(repo).is_err() {
        return None;
    }
    if let Some(t) = tag {
        names::validate_tag(t).ok()?;
    }
    let (name, md5) = match file.strip_suffix(".md5") {
        Some(n) => (n, true),
        None => (file, false),
    };
    names::validate_flist(name).ok()?;
    // The router's cache key: `<repo>/<name>` or `<repo>/tags/<tag>/<name>`.
    let key = &rest[..rest.len() - if md5 { 4 } else { 0 }];
    Some(Wanted::File {
        key,
        name,
        md5,
        route,
    })
}

/// The answer from memory, or `None` for the router.
fn answer(st: &Shared, req: &Request) -> Option<Response> {
    let method = req.method();
    let head = if method == Method::GET {
        false
    } else if method == Method::HEAD {
        true
    } else {
        return None;
    };
    if !st.fastpath.enabled.load(Ordering::Relaxed) {
        return None;
    }
    let headers = req.headers();
    // A body (declared or chunked) is the router's business (limits, draining).
    if headers.contains_key(header::CONTENT_LENGTH)
        || headers.contains_key(header::TRANSFER_ENCODING)
    {
        return None;
    }
    let raw = req.uri().path();
    let trimmed = if raw.len() > 1 {
        let t = raw.trim_end_matches('/');
        if t.is_empty() {
            return None;
        }
        t
    } else {
        return None;
    };
    let decoded;
    let path = if trimmed.contains('%') {
        // Segments are decoded one by one, as the router's `Path` extractor does; an encoded
        // `/` would change the segment count and is left to the router.
        decoded = percent_encoding::percent_decode_str(trimmed)
            .decode_utf8()
            .ok()?;
        if decoded.matches('/').count() != trimmed.matches('/').count() {
            return None;
        }
        &*decoded
    } else {
        trimmed
    };
    let started = Instant::now();
    let generation = st.hub.generation();
    // Private repositories (see `crate::visibility`): only answers every reader gets.
    let private = st.private_repos_at(generation)?;
    if !private.is_empty() && crate::auth::presents_credentials(headers) {
        return None;
    }
    let (resp, route) = match wanted(path)? {
        Wanted::Listing { repo } => {
            if private.contains(repo) {
                return None;
            }
            let body = st.cached_at(&hub_contract::routes::listing_key(repo), generation)?;
            // `api::json_response`.
            let mut resp = axum::http::Response::new(body);
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            (resp, 2)
        }
        Wanted::File {
            key,
            name,
            md5,
            route,
        } => {
            let r = st.downloads.resolved_at(key, generation)?;
            if r.via.iter().any(|v| private.contains(v)) {
                return None;
            }
            if md5 {
                // `web::repo_file`, `.md5`.
                let mut resp = axum::http::Response::new(Bytes::from(format!("{}\n", r.md5)));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                (resp, route)
            } else {
                let blob = st.downloads.cached(&r.sha256)?;
                (
                    crate::downloads::respond_bytes(&blob, name, method, headers),
                    route,
                )
            }
        }
    };
    let status = STATUSES.iter().position(|s| *s == resp.status())?;
    let slot = (usize::from(head) * ROUTES.len() + route) * STATUSES.len() + status;
    let (mut parts, data) = resp.into_parts();
    finish_headers(&mut parts.headers, data.len() as u64);
    crate::gate::harden(
        &mut parts.headers,
        st.config.public_url().starts_with("https://"),
    );
    // axum answers `HEAD` with the `GET` answer's headers and no body.
    let data = (!head && !data.is_empty()).then_some(data);
    st.fastpath.served.fetch_add(1, Ordering::Relaxed);
    let log = crate::observe::log_enabled().then(|| (method.clone(), raw.to_string()));
    let body = FastBody {
        data,
        sent: 0,
        done: Some(Done {
            st: st.clone(),
            slot,
            started,
            log,
            status: parts.status.as_u16(),
        }),
    };
    Some(Response::from_parts(parts, Body::new(body)))
}

/// What the layers behind the router add: `Content-Length` from an exact body size (axum),
/// the CORS headers of a public read, the request id (and [`crate::gate::harden`]'s
/// headers, added by the caller).
fn finish_headers(h: &mut HeaderMap, size: u64) {
    if !h.contains_key(header::CONTENT_LENGTH) {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    }
    crate::compat::public_read_cors(h);
    h.insert(crate::request_id::HEADER, crate::request_id::fresh_header());
}

/// The service in front of the router: answers from memory what it can, passes the rest.
#[derive(Clone)]
pub struct Service<S> {
    st: Shared,
    inner: S,
}

impl<S> Service<S> {
    /// `inner` (the router) behind the fast path of `st`.
    pub fn new(st: Shared, inner: S) -> Self {
        Service { st, inner }
    }
}

impl<S> tower::Service<Request> for Service<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        match answer(&self.st, &req) {
            Some(resp) => Either::Left(futures::future::ready(Ok(resp))),
            None => Either::Right(self.inner.call(req)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(p: &str) -> Option<(String, String, bool, usize)> {
        match wanted(p)? {
            Wanted::File {
                key,
                name,
                md5,
                route,
            } => Some((key.into(), name.into(), md5, route)),
            Wanted::Listing { .. } => None,
        }
    }

    #[test]
    fn paths() {
        assert_eq!(
            file("/alice/app.flist"),
            Some(("alice/app.flist".into(), "app.flist".into(), false, 0))
        );
        assert_eq!(
            file("/alice/zos:v1.flist.md5"),
            Some(("alice/zos:v1.flist".into(), "zos:v1.flist".into(), true, 0))
        );
        assert_eq!(
            file("/alice/tags/v1/app.flist"),
            Some((
                "alice/tags/v1/app.flist".into(),
                "app.flist".into(),
                false,
                1
            ))
        );
        for other in [
            "/static/app.flist",
            "/listen/app.flist",
            "/api/app.flist",
            "/alice/app.json",
            "/alice/app.flist.sig",
            "/alice/tag/v1/app.flist",
            "/alice//app.flist",
            "/alice/tags/v1/x/app.flist",
            "/alice/.flist",
            "/alice",
            "/",
        ] {
            assert!(file(other).is_none(), "{other}");
        }
        assert!(matches!(
            wanted("/api/flist/alice"),
            Some(Wanted::Listing { repo: "alice" })
        ));
        for other in [
            "/api/flist/me",
            "/api/flist/a/b",
            "/api/flist/-x",
            "/api/flist/",
        ] {
            assert!(wanted(other).is_none(), "{other}");
        }
    }
}
