//! A hostile client and a bad day, over real HTTP against a real hub (issue 12): each test
//! pins one finding of the hardening pass.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use axum::response::IntoResponse;
use common::{docker, tiny_server, TestHub};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p384::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::{json, Value};
use test_support::archive::{gzip, header, RawTar};
use test_support::registry::{Layer, LayerTar, OciLayout, Registry};

// ----- helpers ------------------------------------------------------------------------------

fn tmp_leftovers(t: &TestHub) -> Vec<String> {
    std::fs::read_dir(t.dir.path().join("data/tmp"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn md5_of(t: &TestHub, path: &str) -> (u16, String) {
    let r = t.get(path).await;
    let s = r.status().as_u16();
    (s, r.text().await.unwrap_or_default())
}

/// Pushes `team/app:1.0` (one layer) to `reg`.
fn push_app(reg: &Registry, dir: &std::path::Path) {
    let mut layout = OciLayout::new(&dir.join("layout"));
    let layer = Layer::gzip(
        &LayerTar::new()
            .dir("bin", 0o755)
            .file("bin/app", b"#!/bin/sh\necho hi\n", 0o755)
            .finish(),
    );
    layout.add_image(
        Some("1.0"),
        "linux",
        "amd64",
        json!({"Entrypoint": ["/bin/app"]}),
        &[layer],
    );
    reg.push(layout.path(), "1.0", "team/app", false);
}

// ----- 2. server-side request forgery through image conversion ------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_conversion_from_loopback_is_refused_by_default_and_works_when_allow_listed() {
    let reg = Registry::start();
    let work = tempfile::tempdir().expect("tempdir");
    push_app(&reg, work.path());
    let image = format!("{}/team/app:1.0", reg.host());

    // Default configuration: only the public registries; a loopback one is refused, and
    // nothing is fetched from it.
    let t = TestHub::start().await;
    let alice = t.token("alice", &[]).await;
    let (s, v) = docker(&t, &alice, &image).await;
    assert_eq!(s, 403, "{v}");
    assert!(
        v["message"].as_str().unwrap_or("").contains("not accepted"),
        "{v}"
    );
    // Any registry (`*`) still means public addresses only: loopback is refused after
    // resolution.
    let t2 = TestHub::start_with(|c| c.docker.registries = vec!["*".into()]).await;
    let alice2 = t2.token("alice", &[]).await;
    let (s, v) = docker(&t2, &alice2, &image).await;
    assert_eq!(s, 403, "{v}");
    let msg = v["message"].as_str().unwrap_or("");
    assert!(msg.contains("not a public address"), "{v}");
    assert_eq!(reg.blob_gets(""), 0, "nothing fetched from a refused host");

    // Listed by the operator: it works.
    let host = reg.host();
    let t3 = TestHub::start_with(move |c| c.docker.registries = vec![host]).await;
    let alice3 = t3.token("alice", &[]).await;
    let (s, v) = docker(&t3, &alice3, &image).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["payload"]["layers"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_or_token_realm_to_a_private_address_is_refused() {
    let reg = Registry::start();
    let work = tempfile::tempdir().expect("tempdir");
    push_app(&reg, work.path());
    let target = reg.port();
    // An allow-listed "registry" that redirects every request to another loopback port.
    let (redir, _) = tiny_server(move |pq| {
        (
            axum::http::StatusCode::TEMPORARY_REDIRECT,
            [(
                axum::http::header::LOCATION,
                format!("http://127.0.0.1:{target}{pq}"),
            )],
        )
            .into_response()
    })
    .await;
    let image = format!("127.0.0.1:{redir}/team/app:1.0");
    let t = TestHub::start_with(move |c| {
        c.docker.registries = vec![format!("127.0.0.1:{redir}")];
    })
    .await;
    let alice = t.token("alice", &[]).await;
    let seen = reg.log().len();
    let (s, v) = docker(&t, &alice, &image).await;
    assert_eq!(s, 403, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or("")
            .contains("not a public address"),
        "{v}"
    );
    assert!(
        !reg.log()[seen..].contains("/v2/team/app/"),
        "the redirect target was contacted"
    );

    // The same redirect works once the operator trusts the target too (so the refusal above
    // is the policy, not a broken redirect).
    let t2 = TestHub::start_with(move |c| {
        c.docker.registries = vec![format!("127.0.0.1:{redir}")];
        c.docker.trusted_hosts = vec![format!("127.0.0.1:{target}")];
    })
    .await;
    let alice2 = t2.token("alice", &[]).await;
    let (s, v) = docker(&t2, &alice2, &image).await;
    assert_eq!(s, 200, "{v}");

    // A registry whose token realm points at a private address: refused, the realm is never
    // called, and the registry's error body is not echoed.
    let (token_port, token_hits) =
        tiny_server(|_| (axum::http::StatusCode::OK, r#"{"token":"t"}"#).into_response()).await;
    let (fake, _) = tiny_server(move |_| {
        (
            axum::http::StatusCode::UNAUTHORIZED,
            [(
                axum::http::header::WWW_AUTHENTICATE,
                format!(r#"Bearer realm="http://127.0.0.1:{token_port}/token",service="x""#),
            )],
            "SECRET-INTERNAL-BODY",
        )
            .into_response()
    })
    .await;
    let t3 = TestHub::start_with(move |c| {
        c.docker.registries = vec![format!("127.0.0.1:{fake}")];
    })
    .await;
    let alice3 = t3.token("alice", &[]).await;
    let (s, v) = docker(&t3, &alice3, &format!("127.0.0.1:{fake}/team/app:1.0")).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(token_hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(!v.to_string().contains("SECRET-INTERNAL-BODY"), "{v}");
}

// ----- 3. decompression bomb in the database member ------------------------------------------

/// A `.flist` (gzip tar) whose `flistdb.sqlite3` member inflates to `size` bytes of zeros
/// (a multiple of 1 MiB), built from one compressed MiB.
fn database_bomb(size: u64) -> Vec<u8> {
    const BLOCK: u64 = 1 << 20;
    let zeros = gzip(&vec![0u8; BLOCK as usize]);
    let mut out = gzip(&header(
        b"./flistdb.sqlite3",
        b'0',
        size,
        0o644,
        b"",
        1_600_000_000,
    ));
    for _ in 0..size / BLOCK {
        out.extend_from_slice(&zeros);
    }
    out.extend_from_slice(&gzip(&[0u8; 1024]));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flist_database_bomb_answers_413_within_2s_and_leaves_no_temp_file() {
    let t = TestHub::start().await;
    let alice = t.token("alice", &[]).await;
    // 2 GiB of database from a ~2 MB upload, against the default cap of 1 GiB.
    let bomb = database_bomb(2 << 30);
    assert!(bomb.len() < 4 << 20, "{}", bomb.len());
    let start = Instant::now();
    let (s, v) = t
        .upload("/api/flist/me/upload-flist", &alice, "bomb.flist", bomb)
        .await;
    let took = start.elapsed();
    assert_eq!(s, 413, "{v}");
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    let msg = v["message"].as_str().unwrap_or("");
    assert!(msg.contains("bomb.flist") && msg.contains("limit"), "{v}");
    assert!(!msg.contains(&t.dir.path().display().to_string()), "{v}");
    assert!(tmp_leftovers(&t).is_empty(), "{:?}", tmp_leftovers(&t));
    assert_eq!(t.get_json("/api/flist/alice/bomb.flist/light").await.0, 404);

    // A smaller configured cap applies while inflating too.
    let t2 = TestHub::start_with(|c| c.limits.max_flist_database_bytes = 4 << 20).await;
    let alice2 = t2.token("alice", &[]).await;
    let (s, v) = t2
        .upload(
            "/api/flist/me/upload-flist",
            &alice2,
            "b.flist",
            database_bomb(8 << 20),
        )
        .await;
    assert_eq!(s, 413, "{v}");
    assert!(tmp_leftovers(&t2).is_empty());
}

// ----- 5. an empty upload never replaces anything --------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_or_zero_byte_archive_is_refused_and_changes_nothing() {
    let t = TestHub::start().await;
    let alice = t.token("alice", &[]).await;
    let archive = std::fs::read(test_support::fixture("fixture-tree.tar.gz")).expect("fixture");
    let (s, v) = t
        .upload("/api/flist/me/upload", &alice, "app.tar.gz", archive)
        .await;
    assert_eq!(s, 200, "{v}");
    let before = md5_of(&t, "/alice/app.flist.md5").await;
    assert_eq!(before.0, 200);

    for (what, body) in [
        ("zero bytes", Vec::new()),
        ("empty tar", RawTar::new().finish()),
        ("empty tar.gz", gzip(&RawTar::new().finish())),
    ] {
        let (s, v) = t
            .upload("/api/flist/me/upload", &alice, "app.tar.gz", body)
            .await;
        assert_eq!(s, 400, "{what}: {v}");
        assert!(
            v["message"].as_str().unwrap_or("").contains("no entries")
                || v["message"].as_str().unwrap_or("").contains("empty"),
            "{what}: {v}"
        );
        assert_eq!(md5_of(&t, "/alice/app.flist.md5").await, before, "{what}");
    }
    // The same for a homemade flist with no entry.
    let empty = t.dir.path().join("empty.flist");
    flist_format::Flist {
        tree: flist_format::Tree::new(flist_format::Meta::root(0o755, 0)),
        metadata: flist_format::Metadata::new(),
    }
    .write(&empty)
    .expect("write");
    let (s, v) = t
        .upload(
            "/api/flist/me/upload-flist",
            &alice,
            "app.flist",
            std::fs::read(&empty).expect("read"),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = t
        .upload(
            "/api/flist/me/upload-flist",
            &alice,
            "app.flist",
            Vec::new(),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(md5_of(&t, "/alice/app.flist.md5").await, before);
}

// ----- 6. JWT claims -------------------------------------------------------------------------

fn p384_keys() -> (String, String) {
    loop {
        let mut raw = [0u8; 48];
        getrandom::fill(&mut raw).expect("random");
        if let Ok(sk) = p384::SecretKey::from_slice(&raw) {
            let private = sk.to_pkcs8_pem(LineEnding::LF).expect("pkcs8").to_string();
            let public = sk
                .public_key()
                .to_public_key_pem(LineEnding::LF)
                .expect("spki");
            return (private, public);
        }
    }
}

fn unix_now() -> i64 {
    hub_repo::now()
}

async fn whoami(t: &TestHub, private: &str, claims: Value) -> u16 {
    let key = EncodingKey::from_ec_pem(private.as_bytes()).expect("key");
    let jwt = jsonwebtoken::encode(&Header::new(Algorithm::ES384), &claims, &key).expect("sign");
    t.call("GET", "/api/flist/me", &jwt).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_needs_iss_exp_and_a_past_nbf_within_the_configured_skew() {
    let (private, public) = p384_keys();
    let p2 = public.clone();
    let t = TestHub::start_with(move |c| {
        c.jwt.public_key_pem = Some(p2);
        c.jwt.issuer = Some("idp.test".into());
        c.jwt.leeway_secs = 30;
    })
    .await;
    let now = unix_now();
    let ok = json!({"username": "erin", "exp": now + 600, "iss": "idp.test"});
    assert_eq!(whoami(&t, &private, ok.clone()).await, 200);
    // no iss while an issuer is configured
    assert_eq!(
        whoami(&t, &private, json!({"username": "erin", "exp": now + 600})).await,
        401
    );
    // no exp
    assert_eq!(
        whoami(&t, &private, json!({"username": "erin", "iss": "idp.test"})).await,
        401
    );
    // nbf in the future (beyond the skew), and just within it
    let mut future = ok.clone();
    future["nbf"] = json!(now + 3600);
    assert_eq!(whoami(&t, &private, future).await, 401);
    let mut soon = ok.clone();
    soon["nbf"] = json!(now + 10);
    assert_eq!(whoami(&t, &private, soon).await, 200);
    // expired a little (within the skew) and long ago
    let mut recent = ok.clone();
    recent["exp"] = json!(now - 10);
    assert_eq!(whoami(&t, &private, recent.clone()).await, 200);
    let mut old = ok.clone();
    old["exp"] = json!(now - 120);
    assert_eq!(whoami(&t, &private, old).await, 401);

    // The skew is configurable: none at all refuses the recently expired token.
    let p3 = public.clone();
    let strict = TestHub::start_with(move |c| {
        c.jwt.public_key_pem = Some(p3);
        c.jwt.leeway_secs = 0;
    })
    .await;
    assert_eq!(whoami(&strict, &private, recent).await, 401);
    // ... and bounded: an absurd configured skew is clamped to 5 minutes.
    let lax = TestHub::start_with(move |c| {
        c.jwt.public_key_pem = Some(public);
        c.jwt.leeway_secs = 10 * 365 * 86_400;
    })
    .await;
    assert_eq!(
        whoami(
            &lax,
            &private,
            json!({"username": "erin", "exp": now - 3600})
        )
        .await,
        401
    );
}

// ----- 8. repositories named like routes --------------------------------------------------

/// Every literal first path segment of the route table is a reserved repository name (a
/// route added without reserving its name fails here).
#[test]
fn every_route_first_segment_is_a_reserved_repository_name() {
    let mut seen = std::collections::BTreeSet::new();
    for src in [
        include_str!("../src/server.rs"),
        include_str!("../src/chunks_api.rs"),
    ] {
        for piece in src.split(".route(").skip(1) {
            let Some(lit) = piece.trim_start().strip_prefix("\"/") else {
                continue;
            };
            let seg = lit.split(['/', '"']).next().unwrap_or_default();
            if !seg.is_empty() && !seg.starts_with('{') {
                seen.insert(seg.to_string());
            }
        }
    }
    for must in [
        "api",
        "static",
        "listen",
        "me",
        "login-method",
        "logout",
        "token",
    ] {
        assert!(seen.contains(must), "route table not parsed: {seen:?}");
    }
    let missing: Vec<_> = seen
        .iter()
        .filter(|s| !hub_repo::names::is_reserved(s))
        .collect();
    assert!(missing.is_empty(), "routes not reserved: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_named_like_routes_get_no_repository() {
    let (private, public) = p384_keys();
    let t = TestHub::start_with(move |c| {
        c.jwt.public_key_pem = Some(public);
    })
    .await;
    let key = EncodingKey::from_ec_pem(private.as_bytes()).expect("key");
    for user in ["static", "me", "listen", "api"] {
        let claims = json!({"username": user, "exp": unix_now() + 600});
        let jwt =
            jsonwebtoken::encode(&Header::new(Algorithm::ES384), &claims, &key).expect("sign");
        let archive = gzip(&RawTar::new().file("a", b"a").finish());
        let (s, v) = t
            .upload("/api/flist/me/upload", &jwt, "x.tar.gz", archive)
            .await;
        assert_eq!(s, 400, "{user}: {v}");
        assert!(v.to_string().contains("reserved"), "{user}: {v}");
    }
    let (_, repos) = t.get_json("/api/repositories").await;
    assert_eq!(repos, json!([]));
    // The token CLI and the catalog refuse them too (crates/hub-repo/tests/gc.rs).
    let hub = t.hub();
    let e =
        tokio::task::spawn_blocking(move || hub.accounts().create_token("listen", &[], 60, None))
            .await
            .expect("join")
            .expect_err("reserved");
    assert!(e.to_string().contains("reserved"), "{e}");
}

// ----- 7. slow clients -----------------------------------------------------------------------

fn raw_connect(t: &TestHub) -> TcpStream {
    let s = TcpStream::connect(t.server.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_at_the_timeout_while_others_are_served() {
    let t = TestHub::start_with(|c| c.limits.header_timeout_secs = 1).await;
    let addr = t.server.addr;
    // A client dribbling its headers, one byte every 200 ms, forever.
    let slow = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let start = Instant::now();
        let head = b"GET /api/repositories HTTP/1.1\r\nHost: x\r\nX-Slow: ";
        s.write_all(head).expect("write");
        let mut buf = [0u8; 256];
        loop {
            if start.elapsed() > Duration::from_secs(10) {
                return None;
            }
            if s.write_all(b"a").is_err() {
                return Some(start.elapsed());
            }
            match s.read(&mut buf) {
                Ok(0) => return Some(start.elapsed()),
                Ok(_) => return Some(start.elapsed()), // an error response, then close
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return Some(start.elapsed()),
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    });
    // Meanwhile ordinary requests answer promptly.
    for _ in 0..5 {
        let start = Instant::now();
        let (s, _) = t.get_json("/api/repositories").await;
        assert_eq!(s, 200);
        assert!(start.elapsed() < Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let closed_after = tokio::task::spawn_blocking(move || slow.join().expect("thread"))
        .await
        .expect("join");
    let closed_after = closed_after.expect("the slow connection was never closed");
    assert!(
        closed_after < Duration::from_secs(3),
        "closed after {closed_after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_declared_body_gets_413_not_100_continue() {
    let t = TestHub::start().await;
    let alice = t.token("alice", &[]).await;
    let mut s = raw_connect(&t);
    let req = format!(
        "POST /api/flist/me/upload HTTP/1.1\r\nHost: x\r\nAuthorization: bearer {alice}\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 3000000000\r\n\
         Expect: 100-continue\r\n\r\n"
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).expect("read");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(!text.contains("100 Continue"), "{text}");
    // An ordinary API route has a small limit, enforced the same way.
    let mut s = raw_connect(&t);
    let req = format!(
        "POST /api/flist/me/merge/x.flist HTTP/1.1\r\nHost: x\r\nAuthorization: bearer {alice}\r\n\
         Content-Type: application/json\r\nContent-Length: 50000000\r\nExpect: 100-continue\r\n\r\n"
    );
    s.write_all(req.as_bytes()).expect("write");
    let n = s.read(&mut buf).expect("read");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_slower_than_the_minimum_rate_is_cut() {
    let t = TestHub::start_with(|c| {
        c.limits.min_body_bytes_per_sec = 1000;
        c.limits.body_rate_window_secs = 1;
    })
    .await;
    let alice = t.token("alice", &[]).await;
    let mut s = raw_connect(&t);
    let req = format!(
        "POST /api/flist/me/upload HTTP/1.1\r\nHost: x\r\nAuthorization: bearer {alice}\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n\
         --b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.tar\"\r\n\r\n"
    );
    let start = Instant::now();
    s.write_all(req.as_bytes()).expect("write");
    // ...then nothing more: the request fails within a few windows.
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).expect("read");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
    assert!(text.contains("too slowly"), "{text}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    // A normal upload at full speed is unaffected.
    let archive = std::fs::read(test_support::fixture("fixture-tree.tar.gz")).expect("fixture");
    let (s, v) = t
        .upload("/api/flist/me/upload", &alice, "ok.tar.gz", archive)
        .await;
    assert_eq!(s, 200, "{v}");
}

// ----- 12. server errors: 5xx with a request id, no server paths ----------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_failures_are_5xx_with_a_request_id_and_no_paths() {
    let t = TestHub::start().await;
    let hub = t.hub();
    // A stored file that is not a readable flist (disk corruption): reading it is the
    // server's failure, not the client's.
    tokio::task::spawn_blocking(move || {
        let staged = hub
            .catalog()
            .stage_reader(&b"this is not an flist"[..])
            .expect("stage");
        hub.catalog()
            .put_flist(
                &hub_repo::Actor::new("alice", vec![]),
                "alice",
                "broken.flist",
                staged,
                hub_repo::FlistInfo::default(),
            )
            .expect("put");
    })
    .await
    .expect("join");
    let r = t.get("/api/flist/alice/broken.flist").await;
    assert_eq!(r.status().as_u16(), 500);
    let id = r
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("request id header")
        .to_string();
    let v: Value = r.json().await.expect("json");
    let msg = v["message"].as_str().unwrap_or("");
    assert!(msg.contains(&id), "{v} vs {id}");
    assert!(!msg.contains('/'), "a server path leaked: {v}");
    // Client mistakes stay 4xx and say what was wrong, without server paths.
    let alice = t.token("alice", &[]).await;
    let (s, v) = t
        .upload(
            "/api/flist/me/upload-flist",
            &alice,
            "junk.flist",
            b"not an flist at all".to_vec(),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let msg = v["message"].as_str().unwrap_or("");
    assert!(msg.contains("junk.flist"), "{v}");
    assert!(!msg.contains(&t.dir.path().display().to_string()), "{v}");
    assert!(!msg.contains("/tmp"), "{v}");
    // A text file sent as an flist or an archive: the answer says what it is not, never
    // its bytes.
    let text =
        b"root:x:0:0:SECRET-CONTENT:/root:/bin/bash\nlogin\nsy:x:1:1::/:/bin/sh\n".repeat(30);
    for (route, name, want) in [
        (
            "/api/flist/me/upload-flist",
            "passwd.flist",
            "passwd.flist: not an flist: not gzip, not a tar archive, not a SQLite database",
        ),
        ("/api/flist/me/upload", "passwd.tar.gz", "not a tar archive"),
    ] {
        let (s, v) = t.upload(route, &alice, name, text.clone()).await;
        assert_eq!(s, 400, "{route}: {v}");
        let msg = v["message"].as_str().unwrap_or("");
        assert!(msg.contains(want), "{route}: {v}");
        assert!(
            !msg.contains("SECRET") && !msg.contains("root:"),
            "{route}: {v}"
        );
    }
}

// ----- 10. full disk ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_answers_507_naming_the_storage_and_leaves_nothing_partial() {
    let outer = tempfile::tempdir().expect("tempdir");
    let mnt = outer.path().join("small");
    let _fs = common::Tmpfs::mount(&mnt, "3m");
    let chunks = outer.path().join("chunks");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = common::test_config(dir.path());
    cfg.data_dir = mnt.join("data");
    cfg.store = Some(format!("dir://{}", chunks.display()));
    let t = TestHub::start_in(dir, cfg).await;
    let alice = t.token("alice", &[]).await;
    let small = std::fs::read(test_support::fixture("fixture-tree.tar.gz")).expect("fixture");
    let (s, v) = t
        .upload("/api/flist/me/upload", &alice, "app.tar.gz", small)
        .await;
    assert_eq!(s, 200, "{v}");
    let before = md5_of(&t, "/alice/app.flist.md5").await;
    let files_before = count_files(&mnt.join("data/flists"));

    // An archive whose flist is a few hundred KB (random names and contents).
    let mut tar = RawTar::new();
    for i in 0..1500 {
        let mut r = [0u8; 24];
        getrandom::fill(&mut r).expect("random");
        tar.file(&format!("d/{i}-{}", hex::encode(r)), &r);
    }
    let big = gzip(&tar.finish());
    let filler = common::fill(&mnt, 48 << 10);

    let (s, v) = t
        .upload("/api/flist/me/upload", &alice, "app.tar.gz", big.clone())
        .await;
    assert_eq!(s, 507, "{v}");
    let msg = v["message"].as_str().unwrap_or("");
    assert!(msg.contains("flist storage is full"), "{v}");
    assert!(msg.contains("request id"), "{v}");
    assert!(!msg.contains(&mnt.display().to_string()), "{v}");
    // Nothing partial: no temp file, no new stored file, the entry unchanged.
    std::fs::remove_file(&filler).expect("free the disk");
    assert!(tmp_leftovers(&t).is_empty(), "{:?}", tmp_leftovers(&t));
    assert_eq!(count_files(&mnt.join("data/flists")), files_before);
    assert_eq!(md5_of(&t, "/alice/app.flist.md5").await, before);

    // With room again, the same upload goes through.
    let (s, v) = t
        .upload("/api/flist/me/upload", &alice, "app.tar.gz", big)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_ne!(md5_of(&t, "/alice/app.flist.md5").await, before);
    t.stop().await;
}

fn count_files(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            n += count_files(&e.path());
        } else {
            n += 1;
        }
    }
    n
}

// ----- 1. cross-site request forgery --------------------------------------------------------

async fn exists(t: &TestHub, name: &str) -> bool {
    t.get_json(&format!("/api/flist/alice/{name}/light"))
        .await
        .0
        == 200
}

/// The value of a browser session cookie for `user`.
/// The cookie of a signed-in browser (a web session, as `POST /login` opens).
async fn browser_session(t: &TestHub, user: &str) -> String {
    let hub = t.hub();
    let user = user.to_string();
    let (id, _) = tokio::task::spawn_blocking(move || {
        hub.accounts().create_session(&user, &[], "test", 3600)
    })
    .await
    .expect("join")
    .expect("session");
    format!("hub-session={id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_sessions_cannot_be_ridden_cross_site() {
    let t = TestHub::start().await;
    t.put_fixture("bob", "x.flist", "merge-b.flist").await;
    let cookie = browser_session(&t, "alice").await;
    let own_origin = format!("http://{}", t.server.addr);
    let promote = |local: &str| format!("/api/flist/me/promote/bob/x.flist/{local}");

    // A link on another site: a GET write with only the cookie changes nothing.
    let r = t
        .client
        .get(t.url(&promote("a.flist")))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 403);
    assert!(!exists(&t, "a.flist").await);
    // A form on another site: POST with a foreign Origin, or marked cross-site.
    for (h, v) in [
        ("origin", "https://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ] {
        let r = t
            .client
            .post(t.url(&promote("a.flist")))
            .header("cookie", &cookie)
            .header(h, v)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 403, "{h}: {v}");
    }
    // With the cookie but no evidence of where it comes from: refused as well.
    let r = t
        .client
        .post(t.url(&promote("a.flist")))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 403);
    assert!(!exists(&t, "a.flist").await);

    // The hub's own page (same origin) may write with the session.
    for (h, v) in [
        ("origin", own_origin.as_str()),
        ("sec-fetch-site", "same-origin"),
    ] {
        let r = t
            .client
            .post(t.url(&promote("b.flist")))
            .header("cookie", &cookie)
            .header(h, v)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200, "{h}: {v}");
    }
    assert!(exists(&t, "b.flist").await);

    // Scripts keep the old GET writes with a bearer token.
    let alice = t.token("alice", &[]).await;
    let (s, v) = t.call("GET", &promote("c.flist"), &alice).await;
    assert_eq!(s, 200, "{v}");
    assert!(exists(&t, "c.flist").await);

    // A logout link on another site ends nothing.
    let r = t
        .client
        .get(t.url("/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 403);
    let r = t
        .client
        .get(t.url("/api/flist/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200, "the session survived");
}
