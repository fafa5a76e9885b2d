//! Identity over real HTTP: hub tokens, external ES384 JWTs, active-user, 3Bot login.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use axum::routing::get;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::TestHub;
use crypto_box::aead::Aead;
use ed25519_dalek::{Signer, SigningKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p384::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::{json, Value};

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("random");
    b
}

/// A P-384 key pair as (private PKCS#8 PEM, public SPKI PEM).
fn p384_keys() -> (String, String) {
    loop {
        if let Ok(sk) = p384::SecretKey::from_slice(&random::<48>()) {
            let private = sk.to_pkcs8_pem(LineEnding::LF).expect("pkcs8").to_string();
            let public = sk
                .public_key()
                .to_public_key_pem(LineEnding::LF)
                .expect("spki");
            return (private, public);
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn es384(private_pem: &str, claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(private_pem.as_bytes()).expect("key");
    jsonwebtoken::encode(&Header::new(Algorithm::ES384), claims, &key).expect("sign")
}

async fn call_as(t: &TestHub, method: &str, path: &str, token: &str, active: Option<&str>) -> u16 {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut rb = t
        .client
        .request(m, t.url(path))
        .header("authorization", format!("bearer {token}"));
    if let Some(a) = active {
        rb = rb.header("cookie", format!("active-user={a}"));
    }
    rb.send().await.expect("request").status().as_u16()
}

#[tokio::test]
async fn hub_tokens_expire_revoke_and_scope_writes() {
    let t = TestHub::start().await;
    t.put_fixture("bob", "b.flist", "merge-b.flist").await;
    let alice = t.token("alice", &["team"]).await;
    assert_eq!(call_as(&t, "GET", "/api/flist/me", &alice, None).await, 200);

    // active-user selects an organisation the token is a member of; writes land there.
    let (s, v) = {
        let r = t
            .client
            .get(t.url("/api/flist/me"))
            .bearer_auth(&alice)
            .header("cookie", "active-user=team")
            .send()
            .await
            .expect("me");
        (r.status().as_u16(), r.json::<Value>().await.expect("json"))
    };
    assert_eq!(
        (s, v),
        (
            200,
            json!({"status": "success", "payload": {"username": "team"}})
        )
    );
    assert_eq!(
        call_as(
            &t,
            "GET",
            "/api/flist/me/shared.flist/crosslink/bob/b.flist",
            &alice,
            Some("team")
        )
        .await,
        200
    );
    assert_eq!(
        t.get_json("/api/flist/team/shared.flist/light").await.0,
        200
    );
    // Acting as someone else's identity (another user's repository): 403.
    assert_eq!(
        call_as(&t, "GET", "/api/flist/me", &alice, Some("bob")).await,
        403
    );
    assert_eq!(
        call_as(
            &t,
            "GET",
            "/api/flist/me/x.flist/crosslink/bob/b.flist",
            &alice,
            Some("bob")
        )
        .await,
        403
    );
    assert_eq!(
        call_as(&t, "DELETE", "/api/flist/me/b.flist", &alice, Some("bob")).await,
        403
    );
    // Catalog memberships count too.
    let hub = t.hub();
    tokio::task::spawn_blocking(move || hub.accounts().add_member("ops", "alice"))
        .await
        .expect("join")
        .expect("member");
    assert_eq!(
        call_as(&t, "GET", "/api/flist/me", &alice, Some("ops")).await,
        200
    );

    // Forged, malformed, revoked, expired.
    assert_eq!(
        call_as(
            &t,
            "GET",
            "/api/flist/me",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            None
        )
        .await,
        401
    );
    let r = t
        .client
        .get(t.url("/api/flist/me"))
        .header("authorization", "basic xyz")
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 401);
    let revoked = t.token("carol", &[]).await;
    let hub = t.hub();
    let r2 = revoked.clone();
    assert!(
        tokio::task::spawn_blocking(move || hub.accounts().revoke_token(&r2))
            .await
            .expect("join")
            .expect("revoke")
    );
    let r = t
        .client
        .get(t.url("/api/flist/me"))
        .bearer_auth(&revoked)
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.expect("json")["message"],
        "token revoked"
    );
    let hub = t.hub();
    let (short, _) =
        tokio::task::spawn_blocking(move || hub.accounts().create_token("dave", &[], 1, None))
            .await
            .expect("join")
            .expect("token");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = t
        .client
        .get(t.url("/api/flist/me"))
        .bearer_auth(&short)
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.expect("json")["message"],
        "token expired"
    );
    t.stop().await;
}

#[tokio::test]
async fn jwts_are_es384_only_and_carry_memberships() {
    let (private, public) = p384_keys();
    let (other_private, _) = p384_keys();
    let pub2 = public.clone();
    let t = TestHub::start_with(move |c| {
        c.jwt.public_key_pem = Some(pub2);
        c.jwt.issuer = Some("idp.test".into());
    })
    .await;
    t.put_fixture("bob", "b.flist", "merge-b.flist").await;
    let claims = json!({"username": "erin", "scope": ["user:memberof:acme", "user:email"], "exp": now() + 600, "iss": "idp.test"});
    let good = es384(&private, &claims);
    assert_eq!(call_as(&t, "GET", "/api/flist/me", &good, None).await, 200);
    assert_eq!(
        call_as(
            &t,
            "GET",
            "/api/flist/me/x.flist/crosslink/bob/b.flist",
            &good,
            Some("acme")
        )
        .await,
        200
    );
    assert_eq!(t.get_json("/api/flist/acme/x.flist/light").await.0, 200);
    assert_eq!(
        call_as(&t, "GET", "/api/flist/me", &good, Some("other")).await,
        403
    );

    // Signed by another key (forged), expired, wrong issuer.
    assert_eq!(
        call_as(
            &t,
            "GET",
            "/api/flist/me",
            &es384(&other_private, &claims),
            None
        )
        .await,
        401
    );
    let mut expired = claims.clone();
    expired["exp"] = json!(now() - 3600);
    assert_eq!(
        call_as(&t, "GET", "/api/flist/me", &es384(&private, &expired), None).await,
        401
    );
    let mut iss = claims.clone();
    iss["iss"] = json!("elsewhere");
    assert_eq!(
        call_as(&t, "GET", "/api/flist/me", &es384(&private, &iss), None).await,
        401
    );

    // Wrong algorithms: HS256 keyed with the public key (algorithm confusion), ES256, none.
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(public.as_bytes()),
    )
    .expect("hs256");
    assert_eq!(call_as(&t, "GET", "/api/flist/me", &hs, None).await, 401);
    let p256 = loop {
        if let Ok(sk) = p256::SecretKey::from_slice(&random::<32>()) {
            break sk.to_pkcs8_pem(LineEnding::LF).expect("pem").to_string();
        }
    };
    let es256 = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims,
        &EncodingKey::from_ec_pem(p256.as_bytes()).expect("k"),
    )
    .expect("es256");
    assert_eq!(call_as(&t, "GET", "/api/flist/me", &es256, None).await, 401);
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims)
    );
    assert_eq!(call_as(&t, "GET", "/api/flist/me", &none, None).await, 401);
    // A JWT whose signature belongs to other claims (tampered payload).
    let parts: Vec<&str> = good.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(&json!({"username": "root", "exp": now() + 600, "iss": "idp.test"})),
        parts[2]
    );
    assert_eq!(
        call_as(&t, "GET", "/api/flist/me", &tampered, None).await,
        401
    );
    t.stop().await;
}

/// A fake ThreeFold Connect provider serving `/api/users/<name>`.
async fn fake_provider(users: Vec<(String, String)>) -> String {
    let app = axum::Router::new().route(
        "/api/users/{name}",
        get(
            move |axum::extract::Path(name): axum::extract::Path<String>| {
                let users = users.clone();
                async move {
                    match users.iter().find(|(u, _)| *u == name) {
                        Some((_, pk)) => axum::Json(json!({"publicKey": pk})).into_response_ok(),
                        None => {
                            (axum::http::StatusCode::NOT_FOUND, "no such user").into_response_ok()
                        }
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

trait IntoResponseOk {
    fn into_response_ok(self) -> axum::response::Response;
}
impl<T: axum::response::IntoResponse> IntoResponseOk for T {
    fn into_response_ok(self) -> axum::response::Response {
        self.into_response()
    }
}

struct Login {
    state: String,
    hub_pk: [u8; 32],
    /// The state cookie the hub set in the browser that started the login.
    cookie: String,
}

async fn start_login(t: &TestHub, token_flow: bool) -> Login {
    let r = t
        .get(if token_flow {
            "/login-threebot?token=1"
        } else {
            "/login-threebot"
        })
        .await;
    assert_eq!(r.status(), 302);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("hub-3bot-state="))
        .map(|c| c.split(';').next().unwrap_or_default().to_string())
        .expect("state cookie");
    let loc = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let url = reqwest::Url::parse(&loc).expect("url");
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["appid"], "hub.test");
    assert_eq!(q["scope"], "{}");
    assert_eq!(
        q["redirecturl"],
        if token_flow {
            "/callback_token"
        } else {
            "/callback_threebot"
        }
    );
    let hub_pk: [u8; 32] = STANDARD
        .decode(&q["publickey"])
        .expect("b64")
        .try_into()
        .expect("32 bytes");
    assert_eq!(cookie, format!("hub-3bot-state={}", q["state"]));
    Login {
        state: q["state"].clone(),
        hub_pk,
        cookie,
    }
}

fn signed_attempt(user: &str, sk: &SigningKey, login: &Login, email_verified: bool) -> String {
    let user_x = crypto_box::SecretKey::from(sk.to_scalar_bytes());
    let sbox = crypto_box::SalsaBox::new(&crypto_box::PublicKey::from(login.hub_pk), &user_x);
    let nonce = random::<24>();
    let data = json!({"email": {"email": "u@example.org", "verified": email_verified}});
    let ct = sbox
        .encrypt(
            crypto_box::Nonce::from_slice(&nonce),
            data.to_string().as_bytes(),
        )
        .expect("encrypt");
    let inner = json!({
        "signedState": login.state,
        "appId": "hub.test",
        "doubleName": user,
        "data": {"nonce": STANDARD.encode(nonce), "ciphertext": STANDARD.encode(ct)},
    })
    .to_string();
    let sig = sk.sign(inner.as_bytes());
    let mut signed = sig.to_bytes().to_vec();
    signed.extend_from_slice(inner.as_bytes());
    json!({"doubleName": user, "signedAttempt": STANDARD.encode(signed)}).to_string()
}

/// The provider's redirect back, in the browser that started `login`.
async fn callback(t: &TestHub, path: &str, attempt: &str, login: &Login) -> reqwest::Response {
    t.client
        .get(t.url(path))
        .header("cookie", &login.cookie)
        .query(&[("signedAttempt", attempt)])
        .send()
        .await
        .expect("callback")
}

fn session_cookie(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("hub-session="))
        .map(|c| c.split(';').next().unwrap_or_default().to_string())
}

#[tokio::test]
async fn threebot_login_flow() {
    let sk = SigningKey::from_bytes(&random::<32>());
    let mallory = SigningKey::from_bytes(&random::<32>());
    let provider = fake_provider(vec![(
        "bob.3bot".into(),
        STANDARD.encode(sk.verifying_key().to_bytes()),
    )])
    .await;
    let t = TestHub::start_with(move |c| {
        c.threebot.provider_url = provider;
        c.threebot.app_id = "hub.test".into();
    })
    .await;

    // Web flow: a session cookie that authenticates as the 3Bot user.
    let login = start_login(&t, false).await;
    let attempt = signed_attempt("bob.3bot", &sk, &login, true);
    let r = callback(&t, "/callback_threebot", &attempt, &login).await;
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/");
    let cookie = session_cookie(&r).expect("session cookie");
    let me = t
        .client
        .get(t.url("/api/flist/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("me");
    assert_eq!(
        me.json::<Value>().await.expect("json"),
        json!({"status": "success", "payload": {"username": "bob.3bot"}})
    );
    // The state is used once.
    assert_eq!(
        callback(&t, "/callback_threebot", &attempt, &login)
            .await
            .status(),
        401
    );

    // Token flow ends on /token, which shows a working API token.
    let login = start_login(&t, true).await;
    let r = callback(
        &t,
        "/callback_token",
        &signed_attempt("bob.3bot", &sk, &login, true),
        &login,
    )
    .await;
    assert_eq!(
        (r.status().as_u16(), r.headers()["location"].to_str().ok()),
        (302, Some("/token"))
    );
    let cookie = session_cookie(&r).expect("cookie");
    // The page creates a token only when asked (POST), and shows it once.
    let page = t
        .client
        .post(t.url("/token"))
        .header("cookie", &cookie)
        .header("origin", format!("http://{}", t.server.addr))
        .form(&[("name", "cli"), ("days", "30")])
        .send()
        .await
        .expect("token page");
    let page = page.text().await.expect("html");
    let token = page
        .split("aria-label=\"New API token\"")
        .next()
        .and_then(|s| s.rsplit("value=\"").next())
        .and_then(|s| s.split('"').next())
        .expect("token shown");
    assert_eq!(call_as(&t, "GET", "/api/flist/me", token, None).await, 200);

    // Refusals: a state issued for the other flow, an unverified email, a signature by
    // another key, an unknown user, a forged state, garbage.
    let login = start_login(&t, false).await;
    assert_eq!(
        callback(
            &t,
            "/callback_token",
            &signed_attempt("bob.3bot", &sk, &login, true),
            &login
        )
        .await
        .status(),
        401
    );
    let login = start_login(&t, false).await;
    assert_eq!(
        callback(
            &t,
            "/callback_threebot",
            &signed_attempt("bob.3bot", &sk, &login, false),
            &login
        )
        .await
        .status(),
        401
    );
    let login = start_login(&t, false).await;
    assert_eq!(
        callback(
            &t,
            "/callback_threebot",
            &signed_attempt("bob.3bot", &mallory, &login, true),
            &login
        )
        .await
        .status(),
        401
    );
    assert_eq!(
        callback(
            &t,
            "/callback_threebot",
            &signed_attempt("eve.3bot", &sk, &login, true),
            &login
        )
        .await
        .status(),
        401
    );
    let forged = Login {
        state: "00".repeat(24),
        hub_pk: login.hub_pk,
        cookie: format!("hub-3bot-state={}", "00".repeat(24)),
    };
    assert_eq!(
        callback(
            &t,
            "/callback_threebot",
            &signed_attempt("bob.3bot", &sk, &forged, true),
            &forged
        )
        .await
        .status(),
        401
    );
    assert_eq!(
        callback(&t, "/callback_threebot", "{not json", &login)
            .await
            .status(),
        400
    );
    assert_eq!(t.get("/callback_threebot").await.status(), 400);

    // Logout revokes the session: by POST from the hub's own page (a GET with the cookie
    // is refused, see hostile.rs).
    let r = t
        .client
        .post(t.url("/logout"))
        .header("cookie", &cookie)
        .header("origin", format!("http://{}", t.server.addr))
        .send()
        .await
        .expect("logout");
    // A page saying so (200, as the old hub) that clears the cookies.
    assert_eq!(r.status(), 200);
    assert!(r
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().is_ok_and(|c| c.contains("Max-Age=0"))));
    let me = t
        .client
        .get(t.url("/api/flist/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("me");
    assert_eq!(me.status(), 401);
    t.stop().await;
}

/// Issue 12, finding 13: a callback URL made in one browser (the attacker's own login, or a
/// victim's intercepted one) logs no other browser in: the state must come back with the
/// cookie of the browser that started the login.
#[tokio::test]
async fn threebot_login_state_is_bound_to_the_browser_that_started_it() {
    let sk = SigningKey::from_bytes(&random::<32>());
    let provider = fake_provider(vec![(
        "bob.3bot".into(),
        STANDARD.encode(sk.verifying_key().to_bytes()),
    )])
    .await;
    let t = TestHub::start_with(move |c| {
        c.threebot.provider_url = provider;
        c.threebot.app_id = "hub.test".into();
    })
    .await;
    let login = start_login(&t, false).await;
    let attempt = signed_attempt("bob.3bot", &sk, &login, true);
    // The cookie is short-lived, same-site and scoped to the callback.
    let r = t.get("/login-threebot").await;
    let set = r.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_string();
    for part in [
        "HttpOnly",
        "SameSite=Lax",
        "Max-Age=600",
        "Path=/callback_threebot",
    ] {
        assert!(set.contains(part), "{set}");
    }
    let other = Login {
        state: login.state.clone(),
        hub_pk: login.hub_pk,
        cookie: set.split(';').next().expect("pair").to_string(),
    };

    // Another browser: no state cookie, or the state cookie of another login.
    let bare = t
        .client
        .get(t.url("/callback_threebot"))
        .query(&[("signedAttempt", &attempt)])
        .send()
        .await
        .expect("callback");
    assert_eq!(bare.status(), 401);
    assert!(session_cookie(&bare).is_none());
    let body = bare.text().await.expect("body");
    assert!(body.contains("not started in this browser"), "{body}");
    let r = callback(&t, "/callback_threebot", &attempt, &other).await;
    assert_eq!(r.status(), 401);
    assert!(session_cookie(&r).is_none());

    // The browser that started it still completes it (the refusals did not use it up), and
    // the state cookie is cleared.
    let r = callback(&t, "/callback_threebot", &attempt, &login).await;
    assert_eq!(r.status(), 302);
    assert!(session_cookie(&r).is_some());
    let cleared = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|c| c.starts_with("hub-3bot-state=;") && c.contains("Max-Age=0"));
    assert!(cleared);
    t.stop().await;
}

#[tokio::test]
async fn authentication_off_is_explicit() {
    let t = TestHub::start_with(|c| c.authentication = false).await;
    let r = t
        .client
        .get(t.url("/api/flist/me"))
        .header("x-hub-user", "dev")
        .send()
        .await
        .expect("me");
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        json!({"status": "success", "payload": {"username": "dev"}})
    );
    t.stop().await;
    // The default requires credentials.
    let t = TestHub::start().await;
    assert_eq!(t.get("/api/flist/me").await.status(), 401);
    t.stop().await;
}
