//! Sign-in page, API-token sign-in, sign-out, the account switcher and the tokens page.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Form;
use hub_repo::TokenCheck;
use serde::Deserialize;
use serde_json::json;

use super::{check_same_origin, clear_cookie, redirect_with, Ctx};
use crate::auth::ACTIVE_USER_COOKIE;
use crate::error::ApiError;
use crate::state::Shared;

/// Lifetimes offered when creating a token, in days.
const EXPIRY_DAYS: [i64; 5] = [1, 7, 30, 90, 365];

/// Form of `/login-token`.
#[derive(Deserialize)]
pub struct TokenLogin {
    token: String,
    /// Where to go afterwards (a local path).
    #[serde(default)]
    next: Option<String>,
}

/// `POST /login-token`: signs in with an API token. The browser gets its own session
/// credential (a server-side session), never the pasted token.
pub async fn login_token(
    State(st): State<Shared>,
    ctx: Ctx,
    headers: HeaderMap,
    Form(f): Form<TokenLogin>,
) -> Response {
    if let Err(e) = check_same_origin(&headers) {
        return ctx.error(&e);
    }
    let next = crate::login::came_from(&st, f.next.as_deref(), &headers);
    let token = f.token.trim().to_string();
    let r = st
        .blocking(move |hub| match hub.accounts().check_token(&token)? {
            TokenCheck::Valid(info) => Ok(Ok(info)),
            TokenCheck::Expired => Ok(Err("This token has expired.")),
            TokenCheck::Revoked => Ok(Err("This token was revoked.")),
            TokenCheck::Unknown => Ok(Err("This is not a token of this hub.")),
        })
        .await;
    match r {
        Ok(Ok(info)) => {
            match crate::login::start_session(
                &st,
                &info.user,
                info.memberof,
                "token",
                StatusCode::SEE_OTHER,
                &next,
            )
            .await
            {
                Ok(mut resp) => {
                    clear_cookie(resp.headers_mut(), ACTIVE_USER_COOKIE);
                    resp
                }
                Err(e) => ctx.error(&e),
            }
        }
        Ok(Err(why)) => redirect_with("/login-method", "error", why),
        Err(e) => ctx.error(&e),
    }
}

/// Form of the account switcher.
#[derive(Deserialize)]
pub struct Switch {
    active: String,
    #[serde(default)]
    back: String,
}

/// `POST /me/active-user`: act as the user or one of their organisations.
pub async fn switch(ctx: Ctx, headers: HeaderMap, Form(f): Form<Switch>) -> Response {
    let actor = match ctx.require_form(&headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    if f.active != actor.user && !actor.memberof.contains(&f.active) {
        return ctx.error(&ApiError::forbidden(format!(
            "{} is not a member of {}",
            actor.user, f.active
        )));
    }
    let back = crate::login::local_path(&f.back).unwrap_or_else(|| "/".to_string());
    let mut resp = redirect_with(&back, "ok", &format!("You now act as {}.", f.active));
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{ACTIVE_USER_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
        f.active
    )) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

async fn tokens_page(st: &Shared, ctx: &Ctx, created: Option<(String, String, i64)>) -> Response {
    let actor = match ctx.require() {
        Ok(a) => a.clone(),
        Err(r) => return r,
    };
    let user = actor.user.clone();
    let r = st
        .blocking(move |hub| {
            let list = hub.accounts().list_tokens(&user)?;
            let used = hub
                .accounts()
                .token_last_used(&list.iter().map(|t| t.id).collect::<Vec<_>>())?;
            Ok((list, used))
        })
        .await;
    let (list, used) = match r {
        Ok(x) => x,
        Err(e) => return ctx.error(&e),
    };
    let tokens: Vec<_> = list
        .iter()
        .map(|t| {
            json!({"id": t.id, "label": t.label.clone().unwrap_or_default(),
                   "created": t.created, "expires": t.expires,
                   "last_used": used.get(&t.id)})
        })
        .collect();
    let created =
        created.map(|(tok, label, exp)| json!({"token": tok, "label": label, "expires": exp}));
    super::no_store(ctx.render(
        "tokens.html",
        "API tokens",
        json!({"tokens": tokens, "created": created, "user": actor.user, "expiry_days": EXPIRY_DAYS,
               "threebot": st.config.threebot.enabled}),
    ))
}

/// `GET /token`: the user's tokens (never creates one).
pub async fn tokens(State(st): State<Shared>, ctx: Ctx) -> Response {
    tokens_page(&st, &ctx, None).await
}

/// Form creating a token.
#[derive(Deserialize)]
pub struct NewToken {
    #[serde(default)]
    name: String,
    #[serde(default)]
    days: i64,
}

/// `POST /token`: creates a token and shows it once.
pub async fn token_create(
    State(st): State<Shared>,
    ctx: Ctx,
    headers: HeaderMap,
    Form(f): Form<NewToken>,
) -> Response {
    let actor = match ctx.require_form(&headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let label = f.name.trim().chars().take(100).collect::<String>();
    if label.is_empty() {
        return redirect_with("/token", "error", "Give the token a name.");
    }
    if !EXPIRY_DAYS.contains(&f.days) {
        return redirect_with("/token", "error", "Pick an expiry from the list.");
    }
    let ttl = f.days * 86_400;
    let l2 = label.clone();
    let r = st
        .blocking(move |hub| {
            Ok(hub
                .accounts()
                .create_token(&actor.user, &actor.memberof, ttl, Some(&l2))?)
        })
        .await;
    match r {
        Ok((tok, info)) => {
            let mut resp = tokens_page(&st, &ctx, Some((tok, label, info.expires))).await;
            *resp.status_mut() = StatusCode::OK;
            resp
        }
        Err(e) => ctx.error(&e),
    }
}

/// Form revoking a token.
#[derive(Deserialize)]
pub struct Revoke {
    id: i64,
}

/// `POST /token/revoke`
pub async fn token_revoke(
    State(st): State<Shared>,
    ctx: Ctx,
    headers: HeaderMap,
    Form(f): Form<Revoke>,
) -> Response {
    let actor = match ctx.require_form(&headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let r = st
        .blocking(move |hub| {
            let mine = hub.accounts().list_tokens(&actor.user)?;
            let Some(t) = mine.iter().find(|t| t.id == f.id) else {
                return Err(ApiError::not_found("no such token of yours"));
            };
            hub.accounts().revoke_token_id(t.id)?;
            Ok(t.label.clone().unwrap_or_default())
        })
        .await;
    match r {
        Ok(label) => redirect_with("/token", "ok", &format!("Revoked token “{label}”.")),
        Err(e) => redirect_with("/token", "error", &e.message),
    }
}
