//! 3Bot (ThreeFold Connect) login: redirect with a one-time state, verify the signed
//! attempt with the user's Ed25519 key, open the NaCl box with the hub's X25519 key.
//!
//! The state is also set in a short-lived cookie ([`STATE_COOKIE`], `SameSite=Lax` so the
//! provider's redirect back carries it, scoped to the callback path) and the callback
//! requires the signed state to equal it: a callback URL obtained in one browser logs no
//! other browser in.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine;
use crypto_box::aead::Aead;
use ed25519_dalek::{Signature, VerifyingKey};
use hub_repo::names;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::Deserialize;
use serde_json::Value;

use crate::auth::{cookie, LoginFlow};
use crate::error::ApiError;
use crate::state::Shared;
use crate::web::WebError;

/// Query of `/login-threebot`.
#[derive(Deserialize)]
pub struct LoginQuery {
    token: Option<String>,
    /// Link the identity to the signed-in account instead of signing in.
    link: Option<String>,
}

/// The callback path of `flow`.
fn callback_path(flow: LoginFlow) -> &'static str {
    match flow {
        LoginFlow::Web => "/callback_threebot",
        LoginFlow::Token => "/callback_token",
        LoginFlow::Link => "/callback_link",
    }
}

/// A `302 Found` redirect (what the 3Bot flow uses).
fn found(url: &str) -> Response {
    match HeaderValue::from_str(url) {
        Ok(v) => (StatusCode::FOUND, [(header::LOCATION, v)]).into_response(),
        Err(_) => ApiError::internal("unrepresentable redirect URL").into_response(),
    }
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// Cookie binding a 3Bot login state to the browser that started the login.
pub const STATE_COOKIE: &str = "hub-3bot-state";

/// Lifetime of the state cookie (the state itself expires after 10 minutes).
const STATE_COOKIE_SECS: u64 = 600;

fn secure(st: &Shared) -> &'static str {
    if st.config.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    }
}

/// `GET /login-threebot[?token=1|?link=1]`: 302 to the provider.
pub async fn login(
    State(st): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    let tb = &st.config.threebot;
    // Checked before anything is kept: a disabled login stores no state.
    if !tb.enabled {
        return ApiError::not_found("3Bot login is not enabled on this hub (threebot.enabled)")
            .into_response();
    }
    let flow = if q.link.is_some() {
        LoginFlow::Link
    } else if q.token.is_some() {
        LoginFlow::Token
    } else {
        LoginFlow::Web
    };
    // Linking is for the signed-in account, named in the state (the provider's redirect
    // back is cross-site: the SameSite=Strict session cookie does not come with it).
    let account = if flow == LoginFlow::Link {
        match crate::login::session_actor(&st, &headers).await {
            Ok(Some(actor)) => Some(actor.user),
            Ok(None) => return ApiError::unauthorized(
                "sign in to the account first, then link the 3Bot identity from its tokens page",
            )
            .into_response(),
            Err(e) => return e.into_response(),
        }
    } else {
        None
    };
    let Some(state) = st.identity.issue_state(flow, account) else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many 3Bot logins in progress: try again in a few minutes",
        )
        .into_response();
    };
    let callback = callback_path(flow);
    let url = format!(
        "{}/?appid={}&publickey={}&state={}&redirecturl={}&scope={}",
        tb.provider_url.trim_end_matches('/'),
        enc(&tb.app_id),
        enc(&st.identity.threebot_public_b64()),
        enc(&state),
        enc(callback),
        enc("{}"),
    );
    let mut resp = found(&url);
    let c = format!(
        "{STATE_COOKIE}={state}; Path={callback}; Max-Age={STATE_COOKIE_SECS}; HttpOnly; \
         SameSite=Lax{}",
        secure(&st)
    );
    if let Ok(v) = HeaderValue::from_str(&c) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// Query of the callbacks.
#[derive(Deserialize)]
pub struct CallbackQuery {
    #[serde(rename = "signedAttempt")]
    signed_attempt: Option<String>,
}

#[derive(Deserialize)]
struct Outer {
    #[serde(rename = "doubleName")]
    double_name: String,
    #[serde(rename = "signedAttempt")]
    signed_attempt: String,
}

#[derive(Deserialize)]
struct Inner {
    #[serde(rename = "signedState")]
    signed_state: String,
    #[serde(rename = "appId")]
    app_id: Option<String>,
    #[serde(rename = "doubleName")]
    double_name: String,
    data: BoxData,
}

#[derive(Deserialize)]
struct BoxData {
    nonce: String,
    ciphertext: String,
}

fn b64(s: &str) -> Result<Vec<u8>, ApiError> {
    STANDARD
        .decode(s.trim())
        .or_else(|_| URL_SAFE.decode(s.trim()))
        .map_err(|_| ApiError::bad_request("malformed base64 in login attempt"))
}

/// Verifies a callback; returns the authenticated 3Bot user and the account its login state
/// was issued for (linking). `browser_state` is the state cookie the request came with.
async fn verify(
    st: &Shared,
    q: CallbackQuery,
    flow: LoginFlow,
    browser_state: Option<String>,
) -> Result<(String, Option<String>), ApiError> {
    let raw = q
        .signed_attempt
        .ok_or_else(|| ApiError::bad_request("missing signedAttempt"))?;
    let outer: Outer = serde_json::from_str(&raw)
        .map_err(|e| ApiError::bad_request(format!("malformed signedAttempt: {e}")))?;
    let user = outer.double_name.to_ascii_lowercase();
    names::validate_repo(&user)?;
    let url = format!(
        "{}/api/users/{}",
        st.config.threebot.provider_url.trim_end_matches('/'),
        enc(&user)
    );
    let resp = st.identity.http.get(&url).send().await.map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("3Bot provider unreachable: {e}"),
        )
    })?;
    if !resp.status().is_success() {
        return Err(ApiError::unauthorized(format!(
            "3Bot provider does not know {user}"
        )));
    }
    let info: Value = resp
        .json()
        .await
        .map_err(|e| ApiError::unauthorized(format!("3Bot provider answer: {e}")))?;
    let pk = info
        .get("publicKey")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::unauthorized("3Bot user has no public key"))?;
    let pk: [u8; 32] = b64(pk)?
        .try_into()
        .map_err(|_| ApiError::unauthorized("3Bot public key is not 32 bytes"))?;
    let vk = VerifyingKey::from_bytes(&pk)
        .map_err(|_| ApiError::unauthorized("invalid 3Bot public key"))?;
    let signed = b64(&outer.signed_attempt)?;
    if signed.len() < 64 {
        return Err(ApiError::unauthorized("signed attempt too short"));
    }
    let (sig, msg) = signed.split_at(64);
    let sig =
        Signature::from_slice(sig).map_err(|_| ApiError::unauthorized("malformed signature"))?;
    vk.verify_strict(msg, &sig)
        .map_err(|_| ApiError::unauthorized("bad signature on login attempt"))?;
    let inner: Inner = serde_json::from_slice(msg)
        .map_err(|e| ApiError::unauthorized(format!("malformed signed data: {e}")))?;
    if inner.double_name.to_ascii_lowercase() != user {
        return Err(ApiError::unauthorized("signed attempt is for another user"));
    }
    if let Some(app) = &inner.app_id {
        if *app != st.config.threebot.app_id {
            return Err(ApiError::unauthorized(
                "signed attempt is for another application",
            ));
        }
    }
    // Checked before the state is used up: a foreign callback does not spoil the login of
    // the browser that started it.
    if browser_state.as_deref() != Some(inner.signed_state.as_str()) {
        return Err(ApiError::unauthorized(
            "this login was not started in this browser (or took too long): start again",
        ));
    }
    let Some(account) = st.identity.take_state(&inner.signed_state, flow) else {
        return Err(ApiError::unauthorized(
            "unknown, expired or already used login state",
        ));
    };
    let nonce = b64(&inner.data.nonce)?;
    if nonce.len() != 24 {
        return Err(ApiError::unauthorized("nonce must be 24 bytes"));
    }
    let ciphertext = b64(&inner.data.ciphertext)?;
    let user_x = crypto_box::PublicKey::from(vk.to_montgomery());
    let sbox = crypto_box::SalsaBox::new(&user_x, &st.identity.threebot_secret);
    let plain = sbox
        .decrypt(crypto_box::Nonce::from_slice(&nonce), ciphertext.as_slice())
        .map_err(|_| ApiError::unauthorized("cannot open the login box"))?;
    let data: Value = serde_json::from_slice(&plain)
        .map_err(|e| ApiError::unauthorized(format!("login data: {e}")))?;
    if let Some(email) = data.get("email").filter(|e| !e.is_null()) {
        if email.get("verified").and_then(Value::as_bool) != Some(true) {
            return Err(ApiError::unauthorized("email address not verified"));
        }
    }
    Ok((user, account))
}

async fn finish(
    st: Shared,
    headers: HeaderMap,
    q: CallbackQuery,
    flow: LoginFlow,
) -> Result<Response, WebError> {
    let (subject, account) = verify(&st, q, flow, cookie(&headers, STATE_COOKIE)).await?;
    let mut resp = if let (LoginFlow::Link, Some(account)) = (flow, account) {
        // The owner of the account signed in when the link was started (the state says
        // which) links this identity to it.
        let (s2, user) = (subject.clone(), account.clone());
        st.blocking(move |hub| {
            Ok(hub
                .accounts()
                .link_identity(hub_repo::THREEBOT, &s2, &user)?)
        })
        .await?;
        tracing::info!("3Bot identity {subject} linked to {account}");
        crate::ui::redirect_with(
            "/token",
            "ok",
            &format!("The 3Bot identity {subject} now signs in as {account}."),
        )
    } else if flow == LoginFlow::Link {
        return Err(ApiError::unauthorized("a link login state names its account").into());
    } else {
        // The identity's own account (made on its first sign-in) or the one its owner linked
        // it to; never a local account of the same name.
        let s2 = subject.clone();
        let user = st
            .blocking(move |hub| Ok(hub.accounts().identity_account(hub_repo::THREEBOT, &s2)?))
            .await?;
        tracing::info!("3Bot login: {subject} as {user}");
        let target = match flow {
            LoginFlow::Token => "/token",
            _ => "/",
        };
        crate::login::start_session(
            &st,
            &user,
            Vec::new(),
            "threebot",
            StatusCode::FOUND,
            target,
        )
        .await?
    };
    let callback = callback_path(flow);
    let clear = format!("{STATE_COOKIE}=; Path={callback}; Max-Age=0; HttpOnly; SameSite=Lax");
    if let Ok(v) = HeaderValue::from_str(&clear) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// `GET /callback_threebot?signedAttempt=...`: a web session.
pub async fn callback_web(
    State(st): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, WebError> {
    finish(st, headers, q, LoginFlow::Web).await
}

/// `GET /callback_link?signedAttempt=...`: links the identity to the signed-in account.
pub async fn callback_link(
    State(st): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, WebError> {
    finish(st, headers, q, LoginFlow::Link).await
}

/// `GET /callback_token?signedAttempt=...`: a web session, then `/token`.
pub async fn callback_token(
    State(st): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, WebError> {
    finish(st, headers, q, LoginFlow::Token).await
}
