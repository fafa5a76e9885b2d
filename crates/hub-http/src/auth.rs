//! Identity: hub API tokens, external ES384 JWTs, the `active-user` cookie, 3Bot login state.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hub_repo::{names, Actor, TokenCheck};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::HubConfig;
use crate::error::ApiError;
use crate::state::Shared;

/// Name of the web session cookie (holds a session id, never an API token).
pub const SESSION_COOKIE: &str = "hub-session";
/// Name of the cookie selecting the acting identity.
pub const ACTIVE_USER_COOKIE: &str = "active-user";

/// Which page a 3Bot login ends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginFlow {
    /// `/callback_threebot`: a web session.
    Web,
    /// `/callback_token`: a web session, then `/token` shows a new API token.
    Token,
    /// `/callback_link`: the signed-in account's owner links the 3Bot identity to it.
    Link,
}

/// Verification material and login state.
pub struct Identity {
    jwt_key: Option<DecodingKey>,
    jwt_issuer: Option<String>,
    /// Accepted clock skew for `exp`/`nbf`, in seconds.
    jwt_leeway: u64,
    /// The hub's X25519 secret key for 3Bot login.
    pub threebot_secret: crypto_box::SecretKey,
    /// Login states issued and not yet used, with when, for which flow and (linking) for
    /// which account.
    states: Mutex<HashMap<String, LoginState>>,
    /// HTTP client for the 3Bot provider.
    pub http: reqwest::Client,
}

/// A login state: when it was issued, for which flow, and (linking) for which account.
type LoginState = (Instant, LoginFlow, Option<String>);

/// How long a login state stays valid.
const STATE_TTL: Duration = Duration::from_secs(600);
/// Most login states held at once (each costs a little memory for [`STATE_TTL`]).
const MAX_STATES: usize = 10_000;

/// An identity setup problem.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Key material is unreadable or malformed.
    #[error("{what}: {message}")]
    Key {
        /// Which key.
        what: String,
        /// Why.
        message: String,
    },
}

impl Identity {
    /// Loads keys from the configuration (generating and keeping the 3Bot key in the data
    /// directory when not configured).
    pub fn from_config(config: &HubConfig) -> Result<Self, IdentityError> {
        let key_err = |what: &str, message: String| IdentityError::Key {
            what: what.into(),
            message,
        };
        let pem = match (&config.jwt.public_key_pem, &config.jwt.public_key_file) {
            (Some(p), _) => Some(p.clone().into_bytes()),
            (None, Some(f)) => Some(
                std::fs::read(f).map_err(|e| key_err(&f.display().to_string(), e.to_string()))?,
            ),
            (None, None) => None,
        };
        let jwt_key = match pem {
            Some(p) => Some(
                DecodingKey::from_ec_pem(&p)
                    .map_err(|e| key_err("JWT public key", e.to_string()))?,
            ),
            None => None,
        };
        let threebot_secret = match &config.threebot.private_key {
            Some(b64) => {
                let raw = STANDARD
                    .decode(b64.trim())
                    .map_err(|e| key_err("3Bot private key", e.to_string()))?;
                crypto_box::SecretKey::from_slice(&raw)
                    .map_err(|_| key_err("3Bot private key", "must be 32 bytes".into()))?
            }
            None => load_or_create_key(&config.data_dir.join("threebot.key"))?,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| key_err("HTTP client", e.to_string()))?;
        Ok(Identity {
            jwt_key,
            jwt_issuer: config.jwt.issuer.clone(),
            jwt_leeway: config
                .jwt
                .leeway_secs
                .min(crate::config::MAX_JWT_LEEWAY_SECS),
            threebot_secret,
            states: Mutex::new(HashMap::new()),
            http,
        })
    }

    /// The hub's X25519 public key, base64.
    pub fn threebot_public_b64(&self) -> String {
        STANDARD.encode(self.threebot_secret.public_key().as_bytes())
    }

    /// Issues a fresh login state for `flow` (for [`LoginFlow::Link`], the signed-in
    /// `account` the identity is to be linked to); `None` when `MAX_STATES` logins are
    /// already in progress (a flood of login starts holds no unbounded memory).
    pub fn issue_state(&self, flow: LoginFlow, account: Option<String>) -> Option<String> {
        let mut raw = [0u8; 24];
        let _ = getrandom::fill(&mut raw);
        let state = hex::encode(raw);
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        if states.len() >= MAX_STATES {
            states.retain(|_, (t, _, _)| t.elapsed() < STATE_TTL);
            if states.len() >= MAX_STATES {
                return None;
            }
        }
        states.insert(state.clone(), (Instant::now(), flow, account));
        Some(state)
    }

    /// Login states held now.
    pub fn pending_states(&self) -> usize {
        self.states.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Consumes a login state: `Some` only once, within its lifetime, for the same flow,
    /// with the account it was issued for.
    pub fn take_state(&self, state: &str, flow: LoginFlow) -> Option<Option<String>> {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        match states.remove(state) {
            Some((t, f, account)) if t.elapsed() < STATE_TTL && f == flow => Some(account),
            _ => None,
        }
    }

    /// Verifies an external JWT: ES384 only, signature, expiry, issuer; returns the user and
    /// its `user:memberof:<org>` organisations.
    pub fn verify_jwt(&self, token: &str) -> Result<(String, Vec<String>), ApiError> {
        let key = self
            .jwt_key
            .as_ref()
            .ok_or_else(|| ApiError::unauthorized("JWTs are not accepted by this hub"))?;
        let mut v = Validation::new(Algorithm::ES384);
        v.algorithms = vec![Algorithm::ES384];
        v.validate_exp = true;
        v.validate_nbf = true;
        v.leeway = self.jwt_leeway;
        if let Some(iss) = &self.jwt_issuer {
            v.set_issuer(&[iss]);
            v.set_required_spec_claims(&["exp", "iss"]);
        } else {
            v.set_required_spec_claims(&["exp"]);
        }
        v.validate_aud = false;
        let data = jsonwebtoken::decode::<JwtClaims>(token, key, &v)
            .map_err(|e| ApiError::unauthorized(format!("invalid JWT: {e}")))?;
        let c = data.claims;
        let user = c
            .username
            .or(c.sub)
            .ok_or_else(|| ApiError::unauthorized("JWT names no user"))?;
        names::validate_repo(&user)
            .map_err(|e| ApiError::unauthorized(format!("JWT user: {e}")))?;
        let scopes: Vec<String> = match c.scope {
            Some(Scope::List(l)) => l,
            Some(Scope::Text(s)) => s
                .split([' ', ','])
                .filter(|x| !x.is_empty())
                .map(String::from)
                .collect(),
            None => Vec::new(),
        };
        let memberof = scopes
            .iter()
            .filter_map(|s| s.strip_prefix("user:memberof:"))
            .filter(|o| names::validate_repo(o).is_ok())
            .map(String::from)
            .collect();
        Ok((user, memberof))
    }
}

#[derive(Deserialize)]
struct JwtClaims {
    username: Option<String>,
    sub: Option<String>,
    scope: Option<Scope>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Scope {
    List(Vec<String>),
    Text(String),
}

fn load_or_create_key(path: &Path) -> Result<crypto_box::SecretKey, IdentityError> {
    let err = |m: String| IdentityError::Key {
        what: path.display().to_string(),
        message: m,
    };
    if let Ok(raw) = std::fs::read(path) {
        return crypto_box::SecretKey::from_slice(&raw)
            .map_err(|_| err("must hold 32 bytes".into()));
    }
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| err(e.to_string()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    write_private(path, &raw).map_err(|e| err(e.to_string()))?;
    Ok(crypto_box::SecretKey::from(raw))
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// The value of cookie `name`, if sent.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_string())
}

/// The authenticated caller of a write endpoint, acting as the `active-user` identity.
#[derive(Clone, Debug)]
pub struct Caller(pub Actor);

/// Like [`Caller`] but absent instead of rejecting (web pages).
#[derive(Clone, Debug)]
pub struct MaybeCaller(pub Option<Actor>);

/// The raw bearer token of a request, if any (empty when the header is malformed).
pub fn presented_token(headers: &HeaderMap) -> Option<String> {
    if let Some(h) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h, ""));
        if scheme.eq_ignore_ascii_case("bearer") && !rest.trim().is_empty() {
            return Some(rest.trim().to_string());
        }
        return Some(String::new());
    }
    None
}

/// True when the request presents credentials: a bearer token or a session cookie.
pub fn presents_credentials(headers: &HeaderMap) -> bool {
    presented_token(headers).is_some() || cookie(headers, SESSION_COOKIE).is_some()
}

/// Authenticates a request, acting as the identity its `active-user` cookie selects.
pub async fn authenticate(state: &Shared, headers: &HeaderMap) -> Result<Actor, ApiError> {
    let actor = identify(state, headers).await?;
    match cookie(headers, ACTIVE_USER_COOKIE) {
        Some(active) if !active.is_empty() && active != actor.user => Ok(actor.acting_as(&active)?),
        _ => Ok(actor),
    }
}

/// Authenticates a request: the user and the organisations it is a member of now (a
/// token's or session's organisations are read from the catalog at each use), acting as
/// itself.
pub async fn identify(state: &Shared, headers: &HeaderMap) -> Result<Actor, ApiError> {
    let actor = if !state.config.authentication {
        let user = headers
            .get("x-hub-user")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("anonymous")
            .to_string();
        names::validate_repo(&user).map_err(|e| ApiError::bad_request(e.to_string()))?;
        Actor::new(user, Vec::new())
    } else if presented_token(headers).is_none() {
        match crate::login::session_actor(state, headers).await? {
            Some(a) => a,
            None if cookie(headers, SESSION_COOKIE).is_some() => {
                return Err(ApiError::unauthorized(
                    "session expired or ended: sign in again",
                ))
            }
            // The old hub's words where a client may print them.
            None => return Err(ApiError::unauthorized("no authorization provided")),
        }
    } else {
        // The old hub's words where a client may print them.
        let token = presented_token(headers)
            .ok_or_else(|| ApiError::unauthorized("no authorization provided"))?;
        if token.is_empty() {
            return Err(ApiError::unauthorized(
                "malformed Authorization header: expected `bearer <token>`",
            ));
        }
        if token.contains('.') {
            let (user, memberof) = state.identity.verify_jwt(&token)?;
            Actor::new(user, memberof)
        } else {
            let hub = state.hub.clone();
            let check = tokio::task::spawn_blocking(move || -> Result<_, hub_repo::RepoError> {
                match hub.accounts().check_token(&token)? {
                    // `memberof`: the user's memberships now, not those at issue.
                    TokenCheck::Valid(info) => Ok(Ok(Actor::new(info.user, info.memberof))),
                    other => Ok(Err(other)),
                }
            })
            .await??;
            match check {
                Ok(a) => a,
                Err(TokenCheck::Expired) => return Err(ApiError::unauthorized("token expired")),
                Err(TokenCheck::Revoked) => return Err(ApiError::unauthorized("token revoked")),
                // The old hub's words (clients compare them); `zflist` explains them.
                Err(_) => return Err(ApiError::unauthorized(hub_contract::UNKNOWN_TOKEN)),
            }
        }
    };
    crate::observe::note_user(&actor.user);
    Ok(actor)
}

impl FromRequestParts<Shared> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Shared,
    ) -> Result<Self, Self::Rejection> {
        authenticate(state, &parts.headers).await.map(Caller)
    }
}

impl FromRequestParts<Shared> for MaybeCaller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Shared,
    ) -> Result<Self, Self::Rejection> {
        if !presents_credentials(&parts.headers) && state.config.authentication {
            return Ok(MaybeCaller(None));
        }
        Ok(MaybeCaller(authenticate(state, &parts.headers).await.ok()))
    }
}
