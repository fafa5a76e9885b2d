//! The web app: server-rendered pages from compiled-in templates (minijinja, auto-escaped,
//! one layout), CSS and JS embedded at build time and served under hashed names.
//!
//! Every form is a POST answered with a redirect (303) or a page; JS only adds progress
//! bars, tree expansion and copy buttons. Cookie-authenticated writes are checked to come
//! from this hub's own pages (`Origin` / `Sec-Fetch-Site`).

pub mod account;
pub mod assets;
pub mod flist;
pub mod forms;
pub mod jobs;
pub mod limits;
pub mod markdown;
pub mod pages;
pub mod users;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use hub_repo::Actor;
use minijinja::Environment;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};

use crate::auth::MaybeCaller;
use crate::error::ApiError;
use crate::jobs::JobHandle;
use crate::state::Shared;

/// Name of the cookie carrying a one-shot message to the next page.
pub const FLASH_COOKIE: &str = "hub-flash";

/// Per-server state of the web app.
pub struct WebState {
    /// Concurrent heavy requests per client.
    pub heavy: limits::HeavyLimiter,
    /// Upload jobs created by the upload page before its file is sent (id → job, owner,
    /// when).
    pub pending_uploads: Mutex<HashMap<String, (JobHandle, String, Instant)>>,
}

impl Default for WebState {
    fn default() -> Self {
        WebState {
            heavy: limits::HeavyLimiter::new(limits::HEAVY_PER_CLIENT),
            pending_uploads: Mutex::new(HashMap::new()),
        }
    }
}

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../templates/", $name)))),*]
    };
}

const TEMPLATES: &[(&str, &str)] = templates!(
    "layout.html",
    "macros.html",
    "home.html",
    "repo.html",
    "flist.html",
    "tree.html",
    "tag.html",
    "search.html",
    "upload.html",
    "merge.html",
    "docker.html",
    "job.html",
    "tokens.html",
    "login.html",
    "error.html",
    "raw.html",
    "api.html",
    "account.html",
    "signup.html",
    "admin.html",
);

/// A path segment: everything but unreserved characters and `:@+,` is escaped.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b':')
    .remove(b'@')
    .remove(b'+')
    .remove(b',');

/// A query value: like a segment, `/` kept readable.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/')
    .remove(b':');

/// Percent-encodes one path segment.
pub fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// Percent-encodes a query value.
pub fn qv(s: &str) -> String {
    utf8_percent_encode(s, QUERY).to_string()
}

/// `YYYY-MM-DD HH:MM UTC` from unix seconds.
pub fn fmt_time(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        secs / 3600,
        (secs % 3600) / 60
    )
}

/// `1 entry`, `2 entries`: a count and the word that goes with it.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// API prose: HTML-escaped, with `` `code` `` spans as `<code>` (what the document's
/// descriptions use; an unpaired backtick stays as it is).
pub fn code_spans(text: &str) -> String {
    let mut out = String::new();
    let mut parts = text.split('`').peekable();
    let mut inside = false;
    while let Some(part) = parts.next() {
        let escaped = crate::render::html_escape(part);
        if inside && parts.peek().is_none() {
            // No closing backtick: keep the text as written.
            out.push('`');
            out.push_str(&escaped);
        } else if inside {
            out.push_str("<code>");
            out.push_str(&escaped);
            out.push_str("</code>");
        } else {
            out.push_str(&escaped);
        }
        inside = !inside;
    }
    out
}

/// `1.5 MB`-style size.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    for (name, src) in TEMPLATES {
        if let Err(e) = env.add_template(name, src) {
            // Templates are compiled in: a syntax error is a build defect caught by tests.
            tracing::error!("template {name}: {e}");
        }
    }
    env.add_filter("time", |t: i64| fmt_time(t));
    env.add_filter("size", |b: u64| human_size(b));
    env.add_filter("seg", |s: String| seg(&s));
    env.add_filter("qv", |s: String| qv(&s));
    env.add_filter("plural", |n: u64, one: String, many: String| {
        plural(n, &one, &many)
    });
    env.add_filter("code", |s: Option<String>| {
        minijinja::Value::from_safe_string(code_spans(&s.unwrap_or_default()))
    });
    env.add_global("icon_url", assets::url("favicon.svg"));
    env.add_global("css_url", assets::url("hub.css"));
    env.add_global("js_url", assets::url("hub.js"));
    env
}

fn env() -> &'static Environment<'static> {
    static ENV: std::sync::OnceLock<Environment<'static>> = std::sync::OnceLock::new();
    ENV.get_or_init(environment)
}

/// A one-shot message shown on the next page.
#[derive(Clone, Debug)]
pub struct Flash {
    /// `ok` or `error`.
    pub kind: &'static str,
    /// The message.
    pub text: String,
}

/// What every page needs: the visitor (if signed in) and a pending flash message.
pub struct Ctx {
    /// The signed-in identity acting.
    pub actor: Option<Actor>,
    flash: Option<Flash>,
    /// On a mirror: its sync status, shown in the layout.
    mirror: Option<Value>,
}

impl FromRequestParts<Shared> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Shared,
    ) -> Result<Self, Self::Rejection> {
        let MaybeCaller(actor) = MaybeCaller::from_request_parts(parts, state).await?;
        let flash = crate::auth::cookie(&parts.headers, FLASH_COOKIE).and_then(|v| {
            let text = percent_encoding::percent_decode_str(&v)
                .decode_utf8()
                .ok()?
                .to_string();
            let (kind, text) = text.split_once(':')?;
            Some(Flash {
                kind: if kind == "ok" { "ok" } else { "error" },
                text: text.chars().take(500).collect(),
            })
        });
        let mirror = state
            .mirror
            .get()
            .map(|m| crate::mirror::banner(&m.status()));
        Ok(Ctx {
            actor,
            flash,
            mirror,
        })
    }
}

impl Ctx {
    /// Renders `template` with `data` (a JSON object) plus the layout's context.
    pub fn render(&self, template: &str, title: &str, data: Value) -> Response {
        self.render_status(StatusCode::OK, template, title, data)
    }

    /// Like [`Ctx::render`] with a status.
    pub fn render_status(
        &self,
        status: StatusCode,
        template: &str,
        title: &str,
        mut data: Value,
    ) -> Response {
        let nav = match &self.actor {
            Some(a) => {
                let mut ids = vec![a.user.clone()];
                ids.extend(a.memberof.iter().filter(|m| **m != a.user).cloned());
                json!({"user": a.user, "active": a.active, "identities": ids})
            }
            None => json!({}),
        };
        if let Value::Object(m) = &mut data {
            m.insert("nav".into(), nav);
            m.insert("title".into(), json!(title));
            if let Some(f) = &self.flash {
                m.insert("flash".into(), json!({"kind": f.kind, "text": f.text}));
            }
            if let Some(s) = &self.mirror {
                m.insert("mirror".into(), s.clone());
            }
        }
        let body = env().get_template(template).and_then(|t| t.render(&data));
        let mut resp = match body {
            Ok(b) => (status, Html(b)).into_response(),
            Err(e) => ApiError::internal(format!("rendering {template}: {e:#}")).into_response(),
        };
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        h.insert("x-frame-options", HeaderValue::from_static("DENY"));
        if self.flash.is_some() {
            clear_cookie(h, FLASH_COOKIE);
        }
        resp
    }

    /// A signed-out context (for pages rendered outside a handler's extractors).
    pub fn anonymous() -> Self {
        Ctx {
            actor: None,
            flash: None,
            mirror: None,
        }
    }

    /// An error page.
    pub fn error(&self, e: &ApiError) -> Response {
        self.render_status(
            e.status,
            "error.html",
            e.status.canonical_reason().unwrap_or("Error"),
            json!({"status": e.status.as_u16(), "message": e.message}),
        )
    }

    /// The signed-in actor, or a redirect (302) to the sign-in page, as the old hub did.
    #[allow(clippy::result_large_err)]
    pub fn require(&self) -> Result<&Actor, Response> {
        self.actor.as_ref().ok_or_else(crate::web::login_first)
    }

    /// The signed-in actor of a form POST: [`Ctx::require`], then the request must come from
    /// the hub's own pages ([`check_same_origin`]), else an error page.
    #[allow(clippy::result_large_err)]
    pub fn require_form(&self, headers: &HeaderMap) -> Result<Actor, Response> {
        let actor = self.require()?.clone();
        check_same_origin(headers).map_err(|e| self.error(&e))?;
        Ok(actor)
    }
}

/// An error page answered where the visitor is not known (extractors that failed, the
/// fallback, limits): rendered signed out, and marked so that [`with_visitor`] renders it
/// again for the visitor of the request (a 404 under `/alice/…` keeps the session).
pub fn error_page(e: &ApiError) -> Response {
    let mut resp = Ctx::anonymous().error(e);
    resp.extensions_mut().insert(PendingErrorPage(e.clone()));
    resp
}

/// The error of a page rendered signed out by [`error_page`].
#[derive(Clone)]
struct PendingErrorPage(ApiError);

/// The request headers that say who the visitor is (kept by the gate for [`with_visitor`]).
pub fn visitor_headers(h: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in [header::COOKIE, header::AUTHORIZATION] {
        for v in h.get_all(&name) {
            out.append(name.clone(), v.clone());
        }
    }
    out
}

/// Renders an [`error_page`] again with the visitor of `headers` (their session, their
/// identities in the top bar); other answers pass unchanged.
pub async fn with_visitor(st: &Shared, headers: HeaderMap, resp: Response) -> Response {
    let Some(PendingErrorPage(e)) = resp.extensions().get::<PendingErrorPage>().cloned() else {
        return resp;
    };
    if headers.is_empty() {
        return resp;
    }
    let mut req = axum::http::Request::new(());
    *req.headers_mut() = headers;
    let (mut parts, ()) = req.into_parts();
    let Ok(ctx) = Ctx::from_request_parts(&mut parts, st).await;
    let mut fresh = ctx.error(&e);
    // Headers the first answer carried (Retry-After, Allow, …) stay.
    for (k, v) in resp.headers() {
        if !fresh.headers().contains_key(k) {
            fresh.headers_mut().insert(k.clone(), v.clone());
        }
    }
    fresh
}

/// A page in the common layout around ready-made (trusted) HTML `content`.
pub fn raw_page(title: &str, content: &str) -> String {
    let data = json!({"title": title, "content": content, "nav": {}});
    env()
        .get_template("raw.html")
        .and_then(|t| t.render(&data))
        .unwrap_or_else(|e| {
            tracing::error!("rendering raw.html: {e:#}");
            String::from("<!doctype html><title>error</title><p>internal error</p>")
        })
}

/// Appends a `Set-Cookie` that removes `name`.
pub fn clear_cookie(h: &mut HeaderMap, name: &str) {
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
    )) {
        h.append(header::SET_COOKIE, v);
    }
}

/// `resp` marked `Cache-Control: no-store`: pages and answers showing secrets or account
/// state (tokens, sessions, the account and admin pages) are never kept by a cache.
pub fn no_store(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A `303 See Other` to `to` carrying a flash message.
pub fn redirect_with(to: &str, kind: &str, text: &str) -> Response {
    let mut resp = see_other(to);
    let v = format!(
        "{FLASH_COOKIE}={}; Path=/; Max-Age=60; HttpOnly; SameSite=Strict",
        utf8_percent_encode(&format!("{kind}:{text}"), NON_ALPHANUMERIC)
    );
    if let Ok(v) = HeaderValue::from_str(&v) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// A plain `303 See Other`.
pub fn see_other(to: &str) -> Response {
    match HeaderValue::from_str(to) {
        Ok(v) => (StatusCode::SEE_OTHER, [(header::LOCATION, v)]).into_response(),
        Err(_) => ApiError::internal("unrepresentable redirect").into_response(),
    }
}

/// Refuses a cookie-authenticated write that does not come from this hub's own pages: a
/// browser sends `Origin` (or `Sec-Fetch-Site`) with every POST, so a foreign site's form
/// is recognised. Clients that send neither are not browsers and cannot be tricked.
pub fn check_same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let origin_host = origin
            .split_once("://")
            .map(|(_, rest)| rest)
            .unwrap_or(origin);
        return if Some(origin_host) == host {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "cross-site request refused: submit the form from the hub's own page",
            ))
        };
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        None | Some("same-origin") | Some("none") => Ok(()),
        Some(_) => Err(ApiError::forbidden(
            "cross-site request refused: submit the form from the hub's own page",
        )),
    }
}

/// Turns an `ApiResult` of a page into a response (errors as the error page).
pub fn page_result(ctx: &Ctx, r: Result<Response, ApiError>) -> Response {
    r.unwrap_or_else(|e| ctx.error(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles() {
        let env = environment();
        for (name, _) in TEMPLATES {
            assert!(env.get_template(name).is_ok(), "template {name}");
        }
    }

    #[test]
    fn sizes_times_and_segments() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KB");
        assert_eq!(plural(1, "entry", "entries"), "1 entry");
        assert_eq!(plural(0, "entry", "entries"), "0 entries");
        assert_eq!(
            code_spans("use `a<b>` and `c` but `odd"),
            "use <code>a&lt;b&gt;</code> and <code>c</code> but `odd"
        );
        assert_eq!(fmt_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(seg("zos:prod-3:latest.flist"), "zos:prod-3:latest.flist");
        assert_eq!(seg("a b/c?"), "a%20b%2Fc%3F");
    }

    #[test]
    fn same_origin_rules() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("hub.test:80"));
        assert!(check_same_origin(&h).is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://hub.test:80"),
        );
        assert!(check_same_origin(&h).is_ok());
        h.insert(header::ORIGIN, HeaderValue::from_static("http://evil.test"));
        assert!(check_same_origin(&h).is_err());
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(check_same_origin(&h).is_err());
    }
}
