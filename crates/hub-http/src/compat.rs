//! What existing clients of the old hub rely on around the routes themselves:
//! - a trailing `/` is accepted on every path (`/api/flist/alice/`);
//! - CORS: public reads answer `Access-Control-Allow-Origin: *` and `OPTIONS` preflights
//!   are answered, never with credentials (no `Access-Control-Allow-Credentials`, and the
//!   identity routes get no CORS header at all);
//! - a wrong method on an `/api/` route answers a JSON error like every other `/api/` error.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Methods a cross-origin page may use on public reads.
const CORS_METHODS: &str = "GET, HEAD, OPTIONS, INFO";
/// Request headers a cross-origin page may send on public reads.
const CORS_HEADERS: &str = "Range, If-None-Match, Content-Type";

/// Removes trailing `/` from the path (not from `/` itself), keeping the query.
pub fn trim_trailing_slash(mut req: Request) -> Request {
    let path = req.uri().path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
        let pq = match req.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_string(),
        };
        let mut parts = req.uri().clone().into_parts();
        if let Ok(p) = pq.parse() {
            parts.path_and_query = Some(p);
            if let Ok(uri) = Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    req
}

/// Paths that act on an identity: never shared with other origins.
fn private_path(path: &str) -> bool {
    path == "/api/flist/me"
        || path.starts_with("/api/flist/me/")
        || path.starts_with("/listen/")
        || [
            "/token",
            "/login-method",
            "/login-threebot",
            "/callback_threebot",
            "/callback_token",
            "/logout",
        ]
        .contains(&path)
}

fn is_read(m: &Method) -> bool {
    m == Method::GET || m == Method::HEAD || m.as_str() == "INFO"
}

/// Around `inner` (what answers the request otherwise, see [`crate::gate`]): answers
/// preflights, marks public reads shareable, turns a bare 405 on `/api/` into JSON.
pub async fn around<F, Fut>(req: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let public = !private_path(&path);
    if method == Method::OPTIONS {
        let mut resp = (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::ALLOW, CORS_METHODS),
            ],
            Body::empty(),
        )
            .into_response();
        if public {
            let h = resp.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(CORS_METHODS),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(CORS_HEADERS),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("86400"),
            );
        }
        return resp;
    }
    let mut resp = inner(req).await;
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED
        && path.starts_with("/api")
        && !resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"))
    {
        let allow = resp.headers().get(header::ALLOW).cloned();
        resp = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {method} not allowed on {path}"),
        )
        .into_response();
        if let Some(a) = allow {
            resp.headers_mut().insert(header::ALLOW, a);
        }
    }
    if public && is_read(&method) {
        public_read_cors(resp.headers_mut());
    }
    resp
}

/// The CORS headers of an answer to a public read (any origin; the download headers
/// exposed to scripts). The fast path adds the same to its answers.
pub(crate) fn public_read_cors(h: &mut HeaderMap) {
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("ETag, Content-Length, Content-Range"),
    );
}
