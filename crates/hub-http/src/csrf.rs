//! Cross-site request forgery defence, in one middleware in front of every route.
//!
//! Browsers attach the session cookie to requests other sites trigger; they never attach an
//! `Authorization` header. So:
//! - a request carrying `Authorization` (scripts, `zflist hub`) is not a browser's and passes,
//!   including the old `GET` writes;
//! - a write by `GET` without one (a link, an `<img>`) is refused when a session cookie comes
//!   with it: browser sessions write only by `POST`/`PUT`/`DELETE`;
//! - any other unsafe method must come from this hub's own pages: `Sec-Fetch-Site` is
//!   `same-origin` (or `none`, typed by the user), or else `Origin` is this hub's origin (its
//!   public URL or the `Host` it was reached at). With a session cookie and neither header,
//!   the request is refused too.

use axum::extract::Request;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::auth::{cookie, SESSION_COOKIE};
use crate::error::ApiError;
use crate::state::AppState;

/// Is `GET path` one of the old write endpoints (or another state-changing page)?
pub fn is_get_write(path: &str) -> bool {
    if path == "/logout" {
        return true;
    }
    match path.strip_prefix("/api/flist/me/") {
        // `/api/flist/me/<name>` is a dump; anything deeper is a link, rename, promote, tag...
        Some(rest) => rest.trim_end_matches('/').contains('/'),
        None => false,
    }
}

fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    if host.is_empty() {
        return None;
    }
    Some(format!(
        "{}://{}",
        scheme.to_ascii_lowercase(),
        host.to_ascii_lowercase()
    ))
}

/// `Some(reason)` when the request demonstrably comes from another site; `None` when it is
/// same-origin or gives no evidence either way.
fn cross_site(headers: &HeaderMap, public_url: &str) -> Option<Result<(), String>> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return Some(match site.trim().to_ascii_lowercase().as_str() {
            "same-origin" | "none" => Ok(()),
            other => Err(format!("Sec-Fetch-Site is {other}")),
        });
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())?;
    let origin = origin.trim().to_ascii_lowercase();
    let mut own = Vec::new();
    if let Some(o) = origin_of(public_url) {
        own.push(o);
    }
    if let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) {
        let host = host.trim().to_ascii_lowercase();
        own.push(format!("http://{host}"));
        own.push(format!("https://{host}"));
    }
    Some(if own.contains(&origin) {
        Ok(())
    } else {
        Err(format!("Origin {origin} is not this hub"))
    })
}

fn refuse(message: String) -> Response {
    ApiError::new(StatusCode::FORBIDDEN, message).into_response()
}

/// The refusal for `req` (see the module documentation), or `None` when it may pass.
pub fn check(st: &AppState, req: &Request) -> Option<Response> {
    let headers = req.headers();
    if headers.contains_key(header::AUTHORIZATION) {
        return None;
    }
    let session = cookie(headers, SESSION_COOKIE).is_some_and(|c| !c.is_empty());
    let method = req.method();
    if method == Method::GET || method == Method::HEAD {
        if session && is_get_write(req.uri().path()) {
            return Some(refuse(
                "a browser session cannot change anything by GET: use the page's form (POST), \
                 or send Authorization: bearer <token> from scripts"
                    .into(),
            ));
        }
        return None;
    }
    if method == Method::OPTIONS {
        return None;
    }
    match cross_site(headers, &st.config.public_url) {
        Some(Ok(())) => None,
        Some(Err(why)) => Some(refuse(format!(
            "cross-site request refused ({why}): writes from a browser must come from the \
             hub's own pages"
        ))),
        None if session => Some(refuse(
            "a browser session's write must carry Origin or Sec-Fetch-Site; scripts send \
             Authorization: bearer <token>"
                .into(),
        )),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_writes() {
        for w in [
            "/api/flist/me/a.flist/link/b.flist",
            "/api/flist/me/promote/bob/x.flist/y.flist",
            "/api/flist/me/t/l.flist/tag/bob/x.flist",
            "/logout",
        ] {
            assert!(is_get_write(w), "{w}");
        }
        for r in [
            "/api/flist/me",
            "/api/flist/me/x.flist",
            "/api/flist/me/x.flist/",
            "/alice",
        ] {
            assert!(!is_get_write(r), "{r}");
        }
    }

    #[test]
    fn origins() {
        let mut h = HeaderMap::new();
        assert!(cross_site(&h, "https://hub.example.org").is_none());
        h.insert(header::HOST, "127.0.0.1:5555".parse().expect("v"));
        h.insert(header::ORIGIN, "http://127.0.0.1:5555".parse().expect("v"));
        assert_eq!(cross_site(&h, "https://hub.example.org"), Some(Ok(())));
        h.insert(
            header::ORIGIN,
            "https://hub.example.org".parse().expect("v"),
        );
        assert_eq!(cross_site(&h, "https://hub.example.org/"), Some(Ok(())));
        h.insert(header::ORIGIN, "https://evil.example".parse().expect("v"));
        assert!(matches!(
            cross_site(&h, "https://hub.example.org"),
            Some(Err(_))
        ));
        h.insert(header::ORIGIN, "null".parse().expect("v"));
        assert!(matches!(
            cross_site(&h, "https://hub.example.org"),
            Some(Err(_))
        ));
        h.insert("sec-fetch-site", "same-origin".parse().expect("v"));
        assert_eq!(cross_site(&h, "x"), Some(Ok(())));
        h.insert("sec-fetch-site", "cross-site".parse().expect("v"));
        assert!(matches!(cross_site(&h, "x"), Some(Err(_))));
    }
}
