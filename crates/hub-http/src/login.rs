//! Local accounts on the web: `POST /login` (password or API token) opens a server-side
//! session; the login page; rate limits per account and per address.
//!
//! A session is its own credential (`hub_repo::Accounts::create_session`), never an API token:
//! the cookie is `HttpOnly; SameSite=Strict`, plus `Secure` when the public URL is HTTPS.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use hub_repo::{Actor, TokenCheck};
use serde::Deserialize;

use crate::auth::SESSION_COOKIE;
use crate::error::ApiError;
use crate::state::Shared;
use crate::ui::{check_same_origin, Ctx};
use serde_json::json;

/// Failed attempts allowed per account from one client address in [`WINDOW`]: the owner,
/// from another address, is never locked out by someone else's guesses.
pub const MAX_FAILURES_PER_ACCOUNT: usize = 5;
/// Failed attempts allowed per client address (all accounts) in [`WINDOW`].
pub const MAX_FAILURES_PER_ADDRESS: usize = 20;
/// The rate-limit window.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

/// Failed login attempts by (account, client address) and by address, within [`WINDOW`].
#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

fn pair_key(account: &str, addr: Option<IpAddr>) -> String {
    match addr {
        Some(a) => format!("p:{account}@{a}"),
        None => format!("p:{account}@?"),
    }
}

impl LoginLimiter {
    /// Seconds until the failures under `key` drop below `max` (`None`: below already).
    fn wait(&self, key: &str, max: usize) -> Option<u64> {
        let mut m = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let v = m.get_mut(key)?;
        v.retain(|t| t.elapsed() < WINDOW);
        if v.len() < max {
            return None;
        }
        // The failure that must leave the window for one more attempt.
        let t = v[v.len() - max];
        Some(WINDOW.saturating_sub(t.elapsed()).as_secs().max(1))
    }

    /// Seconds until `account` may be tried again from `addr`, if it is blocked now.
    pub fn blocked(&self, account: &str, addr: Option<IpAddr>) -> Option<u64> {
        let by_pair = self.wait(&pair_key(account, addr), MAX_FAILURES_PER_ACCOUNT);
        let by_addr = addr.and_then(|a| self.wait(&format!("a:{a}"), MAX_FAILURES_PER_ADDRESS));
        by_pair.max(by_addr)
    }

    /// Records a failed attempt.
    pub fn failed(&self, account: &str, addr: Option<IpAddr>) {
        let mut m = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() > 100_000 {
            m.retain(|_, v| v.iter().any(|t| t.elapsed() < WINDOW));
        }
        m.entry(pair_key(account, addr))
            .or_default()
            .push(Instant::now());
        if let Some(a) = addr {
            m.entry(format!("a:{a}")).or_default().push(Instant::now());
        }
    }

    /// Forgets the failures of `account` from `addr` after a successful sign-in.
    pub fn succeeded(&self, account: &str, addr: Option<IpAddr>) {
        let mut m = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(&pair_key(account, addr));
    }
}

/// The 429 page of a rate-limited sign-in: says when to retry, and `Retry-After`.
async fn too_many(st: &Shared, ctx: &Ctx, next: &str, secs: u64) -> Response {
    let mins = secs.div_ceil(60);
    let mut r = refused(
        st,
        ctx,
        StatusCode::TOO_MANY_REQUESTS,
        next,
        &format!(
            "Too many failed sign-in attempts from this address: try again in {mins} minute{}.",
            if mins == 1 { "" } else { "s" }
        ),
    )
    .await;
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

/// The `Set-Cookie` value of a session (`max_age` 0 clears it).
pub fn session_cookie(st: &Shared, value: &str, max_age: i64) -> String {
    let secure = if st.config.public_url().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{SESSION_COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    )
}

/// Opens a session for `user` and answers `status` to `location` with its cookie.
pub async fn start_session(
    st: &Shared,
    user: &str,
    memberof: Vec<String>,
    method: &'static str,
    status: StatusCode,
    location: &str,
) -> Result<Response, ApiError> {
    let ttl = st.config.session_ttl_secs;
    let u = user.to_string();
    let (id, _) = st
        .blocking(move |hub| Ok(hub.accounts().create_session(&u, &memberof, method, ttl)?))
        .await?;
    let loc = HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/"));
    let mut resp = (status, [(header::LOCATION, loc)]).into_response();
    if let Ok(v) = HeaderValue::from_str(&session_cookie(st, &id, ttl)) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(crate::ui::no_store(resp))
}

/// The actor of a session cookie, if it names a live session.
pub async fn session_actor(st: &Shared, headers: &HeaderMap) -> Result<Option<Actor>, ApiError> {
    let Some(id) = crate::auth::cookie(headers, SESSION_COOKIE).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    st.blocking(move |hub| {
        let Some(s) = hub.accounts().check_session(&id)? else {
            return Ok(None);
        };
        // `memberof`: the user's memberships now (checked on use).
        Ok(Some(Actor::new(s.user, s.memberof)))
    })
    .await
}

/// A local path to go back to: starts with one `/`, no scheme or host (`//host` and
/// `/\\host` are hosts to a browser), no control characters.
pub(crate) fn local_path(p: &str) -> Option<String> {
    let ok = p.starts_with('/')
        && !p.starts_with("//")
        && !p.contains('\\')
        && !p.chars().any(|c| c.is_control());
    ok.then(|| p.to_string())
}

/// The page the user came from: the `next` field, else the `Referer` when it is this hub
/// (and not a login page), else `/`.
pub(crate) fn came_from(st: &Shared, next: Option<&str>, headers: &HeaderMap) -> String {
    if let Some(n) = next.and_then(local_path) {
        return n;
    }
    let base = st.config.public_url();
    let referer = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let path = referer
        .strip_prefix(base.trim_end_matches('/'))
        .or_else(|| referer.strip_prefix(&format!("http://{host}")))
        .or_else(|| referer.strip_prefix(&format!("https://{host}")))
        .and_then(local_path);
    match path {
        Some(p) if !p.starts_with("/login") => p,
        _ => "/".into(),
    }
}

/// Query of the login page.
#[derive(Deserialize, Default)]
pub struct LoginPageQuery {
    /// Where to go after signing in.
    pub next: Option<String>,
}

/// Renders the sign-in page with `status`: the password form when local accounts exist,
/// ThreeFold Connect when it is enabled, the API-token form always, and `error` if any.
pub async fn render_login(
    st: &Shared,
    ctx: &Ctx,
    status: StatusCode,
    next: &str,
    error: Option<&str>,
) -> Response {
    let users = st
        .blocking(|hub| Ok(hub.accounts().user_count()?))
        .await
        .unwrap_or(0);
    let threebot = st.config.threebot.enabled;
    crate::ui::no_store(ctx.render_status(
        status,
        "login.html",
        "Sign in",
        json!({
            "local": users > 0,
            "threebot": threebot,
            "no_accounts": users == 0 && !threebot,
            "token_action": "/login-token",
            "signup": st.config.signup,
            "next": next,
            "error": error,
        }),
    ))
}

/// `GET /login-method` (and `GET /login`): the sign-in page.
pub async fn login_page(
    State(st): State<Shared>,
    ctx: Ctx,
    Query(q): Query<LoginPageQuery>,
    headers: HeaderMap,
) -> Response {
    let next = came_from(&st, q.next.as_deref(), &headers);
    render_login(&st, &ctx, StatusCode::OK, &next, None).await
}

/// The `POST /login` form.
#[derive(Deserialize)]
pub struct LoginForm {
    /// Local account name.
    pub username: Option<String>,
    /// Its password.
    pub password: Option<String>,
    /// Or an API token.
    pub token: Option<String>,
    /// Where to go afterwards (a local path).
    pub next: Option<String>,
}

fn client_ip(req_ext: &axum::http::Extensions) -> Option<IpAddr> {
    req_ext
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip())
}

async fn refused(
    st: &Shared,
    ctx: &Ctx,
    status: StatusCode,
    next: &str,
    message: &str,
) -> Response {
    render_login(st, ctx, status, next, Some(message)).await
}

/// `POST /login` (form `username` + `password`, or `token`): a session cookie and `303` to
/// the page the user came from; `401` with the page saying why otherwise; `429` when rate
/// limited.
pub async fn login(State(st): State<Shared>, ctx: Ctx, req: Request) -> Response {
    let addr = client_ip(req.extensions());
    let headers = req.headers().clone();
    // A browser-session write: only from the hub's own pages (no login CSRF).
    if let Err(e) = check_same_origin(&headers) {
        return ctx.error(&e);
    }
    let form = match Form::<LoginForm>::from_request(req, &st).await {
        Ok(Form(f)) => f,
        Err(e) => {
            return refused(
                &st,
                &ctx,
                StatusCode::BAD_REQUEST,
                "/",
                &format!("bad form: {e}"),
            )
            .await
        }
    };
    let next = came_from(&st, form.next.as_deref(), &headers);
    match (form.username.as_deref(), form.password, form.token) {
        (Some(user), Some(password), _) if !user.is_empty() => {
            let user = user.trim().to_string();
            if let Some(secs) = st.login_limiter.blocked(&user, addr) {
                tracing::warn!(user = %user, "login rate-limited");
                return too_many(&st, &ctx, &next, secs).await;
            }
            let u2 = user.clone();
            let ok = st
                .blocking(move |hub| Ok(hub.accounts().verify_password(&u2, &password)?))
                .await;
            match ok {
                Ok(Some(info)) => {
                    st.login_limiter.succeeded(&user, addr);
                    tracing::info!(user = %info.name, "password login");
                    match start_session(
                        &st,
                        &info.name,
                        Vec::new(),
                        "password",
                        StatusCode::SEE_OTHER,
                        &next,
                    )
                    .await
                    {
                        Ok(r) => r,
                        Err(e) => refused(&st, &ctx, e.status, &next, &e.message).await,
                    }
                }
                Ok(None) => {
                    st.login_limiter.failed(&user, addr);
                    refused(
                        &st,
                        &ctx,
                        StatusCode::UNAUTHORIZED,
                        &next,
                        "Wrong user name or password.",
                    )
                    .await
                }
                Err(e) => refused(&st, &ctx, e.status, &next, &e.message).await,
            }
        }
        (_, _, Some(token)) if !token.trim().is_empty() => {
            // A token names no account before it is checked: limited per address.
            const TOKEN_KEY: &str = "(api token)";
            if let Some(secs) = st.login_limiter.blocked(TOKEN_KEY, addr) {
                return too_many(&st, &ctx, &next, secs).await;
            }
            let token = token.trim().to_string();
            let check = st
                .blocking(move |hub| Ok(hub.accounts().check_token(&token)?))
                .await;
            match check {
                Ok(TokenCheck::Valid(info)) => {
                    match start_session(
                        &st,
                        &info.user,
                        info.memberof,
                        "token",
                        StatusCode::SEE_OTHER,
                        &next,
                    )
                    .await
                    {
                        Ok(r) => r,
                        Err(e) => refused(&st, &ctx, e.status, &next, &e.message).await,
                    }
                }
                Ok(other) => {
                    st.login_limiter.failed(TOKEN_KEY, addr);
                    let why = match other {
                        TokenCheck::Expired => "This API token has expired.",
                        TokenCheck::Revoked => "This API token was revoked.",
                        _ => "Unknown API token.",
                    };
                    refused(&st, &ctx, StatusCode::UNAUTHORIZED, &next, why).await
                }
                Err(e) => refused(&st, &ctx, e.status, &next, &e.message).await,
            }
        }
        _ => {
            refused(
                &st,
                &ctx,
                StatusCode::BAD_REQUEST,
                &next,
                "Give a user name and a password, or an API token.",
            )
            .await
        }
    }
}

use axum::extract::FromRequest;
