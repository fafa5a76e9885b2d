//! The checks every routed request passes, in one middleware (they were six layers, each
//! boxing the request's future and cloning the router per request), in the same order:
//! 0. CORS, preflights and JSON 405s ([`crate::compat`]);
//! 1. a request id in scope, answered in `X-Request-Id` ([`crate::request_id`]);
//! 2. cross-site request forgery ([`crate::csrf`]);
//! 3. the minimum request body rate ([`crate::guard::rate_limited`]);
//! 4. the per-client and server-wide slots of heavy requests ([`crate::ui::limits`]);
//! 5. a mirror refuses writes ([`crate::mirror::refuse_write`]);
//!
//! and on the way out, [`harden`]: HTML pages get a `Content-Security-Policy` and a
//! `Referrer-Policy`, and on a hub served over HTTPS every cookie is `Secure`.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::atomic::Ordering;

use crate::state::Shared;
use crate::ui::limits;

/// The middleware.
pub async fn gate(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let https = st.config.public_url().starts_with("https://");
    let visitor = crate::ui::visitor_headers(req.headers());
    let st2 = st.clone();
    let resp =
        crate::compat::around(req, |req| crate::request_id::with_id(checks(st, req, next))).await;
    let mut resp = crate::ui::with_visitor(&st2, visitor, resp).await;
    harden(resp.headers_mut(), https);
    resp
}

/// The pages' policy: their own scripts, styles, forms and fetches only (no inline script
/// or style: the templates have none), images also from HTTPS (readmes), never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: https:; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// Security headers of an answer: CSP and referrer policy on HTML, `Secure` cookies when
/// the hub is served over HTTPS (`https`).
pub fn harden(h: &mut axum::http::HeaderMap, https: bool) {
    use axum::http::{header, HeaderValue};
    let html = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if html {
        if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            );
        }
        h.entry(header::REFERRER_POLICY)
            .or_insert(HeaderValue::from_static("same-origin"));
        h.entry(header::X_CONTENT_TYPE_OPTIONS)
            .or_insert(HeaderValue::from_static("nosniff"));
    }
    if https {
        let cookies: Vec<HeaderValue> = h.get_all(header::SET_COOKIE).iter().cloned().collect();
        if cookies.iter().any(|c| !is_secure(c)) {
            h.remove(header::SET_COOKIE);
            for c in cookies {
                let v = if is_secure(&c) {
                    c
                } else {
                    let mut s = c.as_bytes().to_vec();
                    s.extend_from_slice(b"; Secure");
                    HeaderValue::from_bytes(&s).unwrap_or(c)
                };
                h.append(header::SET_COOKIE, v);
            }
        }
    }
}

fn is_secure(cookie: &axum::http::HeaderValue) -> bool {
    cookie
        .to_str()
        .map(|s| {
            s.split(';')
                .any(|a| a.trim().eq_ignore_ascii_case("secure"))
        })
        .unwrap_or(false)
}

async fn checks(st: Shared, req: Request, next: Next) -> Response {
    if let Some(refused) = crate::csrf::check(&st, &req) {
        return refused;
    }
    let (req, cut) = crate::guard::rate_limited(&st.config.limits, req);
    let permits = if limits::is_heavy(req.uri().path()) {
        let (path, ip) = (req.uri().path().to_string(), limits::client_ip(&req));
        match limits::admit(&st, &path, ip).await {
            Ok(p) => p,
            Err(refused) => return refused,
        }
    } else {
        None
    };
    if let Some(refused) = crate::mirror::refuse_write(&st, &req) {
        return refused;
    }
    let resp = next.run(req).await;
    drop(permits);
    match cut {
        Some(c) if c.load(Ordering::SeqCst) => crate::guard::too_slow(&st.config.limits),
        _ => resp,
    }
}
