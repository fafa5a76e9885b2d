//! Issue #24, "hardening, round two": what a hostile client could still do. One test per
//! numbered item of the issue, each reproducing the reported attack against a real hub.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::time::Duration;

use common::TestHub;
use flist_format::{Flist, Kind, Meta, Metadata, Tree};
use serde_json::{json, Value};

/// An flist of `files` empty files (in directories of 1000) stored as `repo/name`.
async fn put_tree(t: &TestHub, repo: &str, name: &str, files: usize, prefix: &str) {
    let hub = t.hub();
    let (repo, name, prefix) = (repo.to_string(), name.to_string(), prefix.to_string());
    tokio::task::spawn_blocking(move || {
        let mut tree = Tree::new(Meta::root(0o755, 1));
        let mut dir = Tree::ROOT;
        for i in 0..files {
            if i % 1000 == 0 {
                dir = tree
                    .mkdir_p(&format!("{prefix}/d{}", i / 1000), &Meta::root(0o755, 1))
                    .unwrap();
            }
            tree.insert(
                dir,
                &format!("f{i}"),
                Meta::root(0o644, 1),
                Kind::File {
                    size: 0,
                    blocks: vec![],
                },
            )
            .unwrap();
        }
        let flist = Flist {
            tree,
            metadata: Metadata::new(),
        };
        let actor = hub_repo::Actor::new(repo.clone(), vec![]);
        hub.catalog()
            .store_flist(&actor, &repo, &name, &flist, None)
            .unwrap();
    })
    .await
    .unwrap();
}

async fn merge(t: &TestHub, token: &str, target: &str, body: Value) -> (u16, Value) {
    let r = t
        .client
        .post(t.url(&format!("/api/flist/me/merge/{target}")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn exists(t: &TestHub, repo: &str, name: &str) -> bool {
    t.get_json(&format!("/api/flist/{repo}/{name}/light"))
        .await
        .0
        == 200
}

/// Item 1: a merge names each source once, at most 64 of them, merges a bounded number of
/// entries, and a request that times out stores nothing. Before: `["m.flist"] × 600` was
/// merged 600 times (CPU for minutes after the 408) and the result appeared afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item1_merge_is_bounded_and_a_timed_out_merge_stores_nothing() {
    let t = TestHub::start_with(|c| {
        c.request_timeout_secs = 1;
        c.limits.max_entries = 1_000;
    })
    .await;
    let mallory = t.token("mallory", &[]).await;
    put_tree(&t, "mallory", "m.flist", 50, "m").await;
    put_tree(&t, "mallory", "n.flist", 50, "n").await;

    // Repeats are refused, before any work.
    let (s, v) = merge(
        &t,
        &mallory,
        "big.flist",
        json!(vec!["mallory/m.flist"; 600]),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("twice"), "{v}");
    // More than 64 sources are refused.
    let many: Vec<String> = (0..65).map(|i| format!("mallory/x{i}.flist")).collect();
    let (s, v) = merge(&t, &mallory, "big.flist", json!(many)).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("64"), "{v}");
    assert!(!exists(&t, "mallory", "big.flist").await);
    // A plain merge works.
    let (s, v) = merge(
        &t,
        &mallory,
        "mn.flist",
        json!(["mallory/m.flist", "mallory/n.flist"]),
    )
    .await;
    assert_eq!(s, 200, "{v}");

    // The entries met over all sources are bounded.
    put_tree(&t, "mallory", "l1.flist", 800, "a").await;
    put_tree(&t, "mallory", "l2.flist", 800, "b").await;
    let (s, v) = merge(
        &t,
        &mallory,
        "big.flist",
        json!(["mallory/l1.flist", "mallory/l2.flist"]),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("entry count limit"),
        "{v}"
    );
    assert!(!exists(&t, "mallory", "big.flist").await);
    t.stop().await;

    // A merge that outlives its request is cancelled: 408, then nothing appears.
    let t = TestHub::start_with(|c| c.request_timeout_secs = 1).await;
    let mallory = t.token("mallory", &[]).await;
    put_tree(&t, "mallory", "l1.flist", 150_000, "a").await;
    put_tree(&t, "mallory", "l2.flist", 150_000, "b").await;
    let (s, v) = merge(
        &t,
        &mallory,
        "big.flist",
        json!(["mallory/l1.flist", "mallory/l2.flist"]),
    )
    .await;
    assert_eq!(s, 408, "{v}");
    // Long enough for an uncancelled merge to finish and store.
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            !exists(&t, "mallory", "big.flist").await,
            "stored after its 408"
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(t.dir.path().join("data/tmp"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    t.stop().await;
}

/// Item 2: archive conversions run `limits.max_concurrent_conversions` at a time; the
/// others wait with their job saying so. Before: every upload converted at once, each with
/// its whole tree in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item2_uploads_queue_for_a_conversion_slot_with_their_job_visible() {
    let t = TestHub::start_with(|c| c.limits.max_concurrent_conversions = 1).await;
    let alice = t.token("alice", &[]).await;
    // The first upload holds the only slot: its body never ends (a channel we keep open).
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::stream(body).file_name("slow.tar"),
    );
    let client = t.client.clone();
    let url = t.url("/api/flist/me/upload");
    let a2 = alice.clone();
    let first = tokio::spawn(async move {
        client
            .post(url)
            .bearer_auth(a2)
            .multipart(form)
            .send()
            .await
    });
    let mut tar = test_support::archive::RawTar::new();
    tar.file("a", b"one");
    let bytes = tar.finish();
    tx.send(Ok(bytes[..512].to_vec())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The second (the web app's way: its job first, then the file) waits, and its job
    // says so.
    let (s, v) = t.call("POST", "/upload/job", &alice).await;
    assert_eq!(s, 200, "{v}");
    let job = v["job"].as_str().unwrap().to_string();
    let client = t.client.clone();
    let url = t.url(&format!("/upload?job={job}"));
    let a2 = alice.clone();
    let second_body = bytes.clone();
    let second = tokio::spawn(async move {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(second_body).file_name("quick.tar"),
        );
        client
            .post(url)
            .bearer_auth(a2)
            .multipart(form)
            .send()
            .await
    });
    let hub = t.hub();
    let mut queued = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (hub, job) = (hub.clone(), job.clone());
        let rec = tokio::task::spawn_blocking(move || hub.jobs().get(&job))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if rec.message.contains("queued") {
            queued = true;
            break;
        }
    }
    assert!(queued, "the second upload's job says it waits");
    assert!(!second.is_finished());
    // The first ends; the second then runs.
    tx.send(Ok(bytes[512..].to_vec())).await.unwrap();
    drop(tx);
    let r = first.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    let r = second.await.unwrap().unwrap();
    assert!(
        r.status().is_redirection() || r.status() == 200,
        "{}",
        r.status()
    );
    assert!(exists(&t, "alice", "quick.flist").await);
    t.stop().await;
}

/// Item 9: a plain `.tar` cut before its end-of-archive marker never replaces an flist.
/// Before: a cut upload kept 1 of 3 files and replaced `tt.flist`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item9_a_cut_plain_tar_does_not_replace_an_flist() {
    let t = TestHub::start().await;
    let alice = t.token("alice", &[]).await;
    let mut tar = test_support::archive::RawTar::new();
    tar.file("a", b"one").file("b", b"two").file("c", b"three");
    let whole = tar.finish();
    let (s, v) = t
        .upload("/api/flist/me/upload", &alice, "tt.tar", whole.clone())
        .await;
    assert_eq!(s, 200, "{v}");
    let before = t.get("/alice/tt.flist.md5").await.text().await.unwrap();
    let (s, v) = t
        .upload(
            "/api/flist/me/upload",
            &alice,
            "tt.tar",
            whole[..1024].to_vec(),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("end-of-archive"),
        "{v}"
    );
    assert_eq!(
        t.get("/alice/tt.flist.md5").await.text().await.unwrap(),
        before
    );
    let (_, dump) = t.get_json("/api/flist/alice/tt.flist").await;
    assert_eq!(dump["regular"], 3, "{dump}");
    t.stop().await;
}

/// A password sign-in from the client address `from` (any 127.0.0.0/8 address reaches the
/// hub on loopback): the answer, redirects not followed.
async fn password_login(t: &TestHub, from: [u8; 4], user: &str, pw: &str) -> reqwest::Response {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(std::net::IpAddr::from(from))
        .build()
        .unwrap();
    client
        .post(t.url("/login"))
        .header("origin", &t.base)
        .form(&[("username", user), ("password", pw)])
        .send()
        .await
        .unwrap()
}

/// The `name=value` of the `Set-Cookie` of `name`, and the whole header.
fn set_cookie(r: &reqwest::Response, name: &str) -> Option<(String, String)> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(|c| (c.split(';').next().unwrap().to_string(), c.to_string()))
}

/// Item 3: removing an account ends its API tokens, its web sessions and its unfinished
/// jobs; tokens are issued to accounts only. Before: eve's token still answered
/// `/api/flist/me` 200 and uploaded after `user remove eve`, and a token was issued for
/// `ghost`, who has no account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item3_removing_an_account_ends_its_tokens_sessions_and_jobs() {
    let t = TestHub::start().await;
    let eve = t.token("eve", &[]).await;
    assert_eq!(t.call("GET", "/api/flist/me", &eve).await.0, 200);
    let r = password_login(&t, [127, 0, 0, 1], "eve", "a long test password").await;
    assert_eq!(r.status(), 303);
    let (session, _) = set_cookie(&r, "hub-session").unwrap();
    let (s, v) = t.call("POST", "/upload/job", &eve).await;
    assert_eq!(s, 200, "{v}");
    let job = v["job"].as_str().unwrap().to_string();

    let hub = t.hub();
    let revoked = tokio::task::spawn_blocking(move || hub.accounts().user_remove("eve"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(revoked, 1);

    let (s, v) = t.call("GET", "/api/flist/me", &eve).await;
    assert_eq!(s, 401, "{v}");
    let mut tar = test_support::archive::RawTar::new();
    tar.file("a", b"one");
    let (s, v) = t
        .upload("/api/flist/me/upload", &eve, "e.tar", tar.finish())
        .await;
    assert_eq!(s, 401, "{v}");
    assert!(!exists(&t, "eve", "e.flist").await);
    let me = t
        .client
        .get(t.url("/api/flist/me"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401);
    let hub = t.hub();
    let rec = tokio::task::spawn_blocking(move || hub.jobs().get(&job))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(rec.state, hub_repo::JobState::Failed);
    assert!(rec.message.contains("removed"), "{}", rec.message);

    // Tokens go to accounts only; the organisations an account acts for are named by the
    // issuer.
    let hub = t.hub();
    tokio::task::spawn_blocking(move || {
        let e = hub
            .accounts()
            .create_token("ghost", &[], 3600, None)
            .unwrap_err();
        assert!(e.to_string().contains("no account ghost"), "{e}");
        assert!(hub.accounts().create_token("eve", &[], 3600, None).is_err());
        hub.accounts()
            .user_add("alice", "a long test password", false)
            .unwrap();
        hub.accounts()
            .create_token("alice", &["ops".to_string()], 3600, None)
            .unwrap();
    })
    .await
    .unwrap();
    t.stop().await;
}

/// Item 10: HTML pages carry a Content-Security-Policy and a Referrer-Policy; every cookie
/// of an https hub is `Secure`; `back=/\evil.com` goes nowhere else; names that differ
/// only by case or by look-alike letters are refused (ordinary non-ASCII names are fine);
/// failed passwords throttle the (account, address) pair and say when to retry, so the
/// owner signs in from elsewhere; a disabled 3Bot login keeps no state. Before: no CSP, no
/// `Secure` on the active-user and flash cookies, `Location: /\evil.com`, `Alice` beside
/// `alice`, `аpp.flist` beside `app.flist`, the owner locked out, +1 state per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item10_headers_cookies_redirects_look_alikes_throttle() {
    let t = TestHub::start_with(|c| {
        c.public_url = "https://hub.test".into();
        c.threebot.enabled = false;
    })
    .await;
    let alice = t.token("alice", &[]).await;

    // Pages: CSP and referrer policy (the API's JSON needs neither).
    let r = t.get("/").await;
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(r.headers()["referrer-policy"], "same-origin");

    // Secure cookies on https: the session, the active user, the flash message.
    let r = password_login(&t, [127, 0, 0, 1], "alice", "a long test password").await;
    assert_eq!(r.status(), 303);
    let (session, whole) = set_cookie(&r, "hub-session").unwrap();
    assert!(whole.contains("Secure"), "{whole}");
    // What carries or shows credentials and account state is never cached.
    assert_eq!(r.headers()["cache-control"], "no-store");
    for (page, cookie) in [
        ("/login-method", ""),
        ("/token", session.as_str()),
        ("/account", session.as_str()),
    ] {
        let r = t
            .client
            .get(t.url(page))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{page}");
        assert_eq!(r.headers()["cache-control"], "no-store", "{page}");
    }
    let r = t
        .client
        .post(t.url("/me/active-user"))
        .header("cookie", &session)
        .header("origin", &t.base)
        .form(&[("active", "alice"), ("back", "/\\evil.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/");
    for name in ["active-user", "hub-flash"] {
        let (_, whole) = set_cookie(&r, name).unwrap_or_else(|| panic!("{name} set"));
        assert!(whole.contains("; Secure"), "{whole}");
    }

    // Names: case twins and look-alikes refused, other non-ASCII names fine.
    let hub = t.hub();
    tokio::task::spawn_blocking(move || {
        let e = hub
            .accounts()
            .user_add("Alice", "a long test password", false)
            .unwrap_err();
        assert!(e.to_string().contains("only by case"), "{e}");
    })
    .await
    .unwrap();
    let mut tar = test_support::archive::RawTar::new();
    tar.file("a", b"one");
    let (s, v) = t
        .upload("/api/flist/me/upload", &alice, "app.tar", tar.finish())
        .await;
    assert_eq!(s, 200, "{v}");
    let mut tar = test_support::archive::RawTar::new();
    tar.file("b", b"two");
    let (s, v) = t
        .upload("/api/flist/me/upload", &alice, "other.tar", tar.finish())
        .await;
    assert_eq!(s, 200, "{v}");
    for (to, ok) in [
        ("\u{430}pp.flist", false),             // Cyrillic а in a Latin word
        ("\u{430}\u{440}\u{440}.flist", false), // all-Cyrillic "арр" beside app
        ("App.flist", false),                   // case only
        ("caf\u{e9}.flist", true),              // café
        ("caf\u{e9}-\u{43a}\u{430}\u{444}\u{435}.flist", true), // café-кафе: one script a word
    ] {
        let (s, v) = t
            .call(
                "GET",
                &format!("/api/flist/me/other.flist/rename/{to}"),
                &alice,
            )
            .await;
        if ok {
            assert_eq!(s, 200, "{to}: {v}");
            let (s, v) = t
                .call(
                    "GET",
                    &format!("/api/flist/me/{to}/rename/other.flist"),
                    &alice,
                )
                .await;
            assert_eq!(s, 200, "{to}: {v}");
        } else {
            assert!(s == 400 || s == 409, "{to}: {s} {v}");
            assert!(exists(&t, "alice", "other.flist").await);
        }
    }

    // The login throttle: five wrong passwords for carol from one address block that pair
    // (saying when to retry), not carol from another address.
    let hub = t.hub();
    tokio::task::spawn_blocking(move || {
        hub.accounts().user_add("carol", "carol's password", false)
    })
    .await
    .unwrap()
    .unwrap();
    for _ in 0..hub_http::login::MAX_FAILURES_PER_ACCOUNT {
        let r = password_login(&t, [127, 0, 0, 1], "carol", "guess1234").await;
        assert_eq!(r.status(), 401);
    }
    let r = password_login(&t, [127, 0, 0, 1], "carol", "carol's password").await;
    assert_eq!(r.status(), 429);
    let secs: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=hub_http::login::WINDOW.as_secs()).contains(&secs),
        "{secs}"
    );
    assert!(r.text().await.unwrap().contains("try again in 15 minutes"));
    let r = password_login(&t, [127, 0, 0, 2], "carol", "carol's password").await;
    assert_eq!(r.status(), 303);

    // 3Bot login disabled: refused, nothing kept.
    for _ in 0..200 {
        assert_eq!(t.get("/login-threebot").await.status(), 404);
    }
    assert_eq!(t.server.state.identity.pending_states(), 0);
    t.stop().await;
}

/// Item 4: a host name the operator trusts on one port is not trusted on another: not as
/// the image's registry, not as a redirect target, not as a token realm. Before: with
/// `trusted_hosts=["localhost:<trusted>"]` all three reached the canary on another port of
/// localhost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item4_a_trusted_name_on_another_port_is_refused() {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    use std::sync::atomic::Ordering;
    let (canary, canary_hits) =
        common::tiny_server(|_| (StatusCode::OK, r#"{"token":"t"}"#).into_response()).await;
    // A trusted "registry" that redirects everything to the canary ...
    let (redirector, _) = common::tiny_server(move |pq| {
        (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, format!("http://localhost:{canary}{pq}"))],
        )
            .into_response()
    })
    .await;
    // ... and one whose token realm is the canary.
    let (realm, _) = common::tiny_server(move |_| {
        (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                format!(r#"Bearer realm="http://localhost:{canary}/token",service="x""#),
            )],
        )
            .into_response()
    })
    .await;
    // A real registry, trusted by name and port: conversions from it work.
    let reg = test_support::registry::Registry::start();
    let work = tempfile::tempdir().unwrap();
    let mut layout = test_support::registry::OciLayout::new(&work.path().join("layout"));
    let layer = test_support::registry::Layer::gzip(
        &test_support::registry::LayerTar::new()
            .file("hello", b"hi\n", 0o644)
            .finish(),
    );
    layout.add_image(Some("1.0"), "linux", "amd64", json!({}), &[layer]);
    reg.push(layout.path(), "1.0", "team/app", false);
    let port = reg.port();
    let t = TestHub::start_with(move |c| {
        c.docker.registries = vec!["*".into()];
        c.docker.trusted_hosts = vec![
            format!("localhost:{redirector}"),
            format!("localhost:{realm}"),
            format!("localhost:{port}"),
        ];
    })
    .await;
    let alice = t.token("alice", &[]).await;
    let (s, v) = common::docker(&t, &alice, &format!("localhost:{port}/team/app:1.0")).await;
    assert_eq!(s, 200, "{v}");

    for image in [
        format!("localhost:{canary}/x:1"),
        format!("localhost:{redirector}/x:1"),
        format!("localhost:{realm}/x:1"),
    ] {
        let (s, v) = common::docker(&t, &alice, &image).await;
        assert_eq!(s, 403, "{image}: {v}");
        let msg = v["message"].as_str().unwrap();
        assert!(msg.contains(&format!("localhost:{canary}")), "{msg}");
        assert!(msg.contains("not a public address"), "{msg}");
        assert_eq!(
            canary_hits.load(Ordering::SeqCst),
            0,
            "{image} reached the canary"
        );
    }
    t.stop().await;
}

/// `/readyz`, as a client on this machine sees it or (`forwarded`) one behind a proxy.
async fn readyz(t: &TestHub, forwarded: bool) -> (u16, Value) {
    let mut req = t.client.get(t.url("/readyz"));
    if forwarded {
        req = req.header("x-forwarded-for", "203.0.113.9");
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Item 6: a chunk store on a full disk: the upload's answer names no server path or store
/// address, `/readyz` says not ready (to a remote client without saying why), and ready
/// again once there is room. Before: `503 {"message":"chunk store: store dir://<data
/// dir>/chunks: … I/O error on …: No space left on device"}` and `/readyz` `200 ok`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item6_no_server_path_in_answers_and_readiness_sees_a_full_store() {
    let outer = tempfile::tempdir().unwrap();
    let mnt = outer.path().join("small");
    let _fs = common::Tmpfs::mount(&mnt, "2m");
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::test_config(dir.path());
    let store = format!("dir://{}", mnt.join("chunks").display());
    cfg.store = Some(store.clone());
    let t = TestHub::start_in(dir, cfg).await;
    let alice = t.token("alice", &[]).await;
    assert_eq!(readyz(&t, true).await, (200, json!({"status": "ok"})));
    let (s, v) = readyz(&t, false).await;
    assert_eq!((s, &v["checks"]["chunk_store_writes"]), (200, &json!("ok")));

    let filler = common::fill(&mnt, 0);
    let mut tar = test_support::archive::RawTar::new();
    for i in 0..16 {
        let mut r = vec![0u8; 16 << 10];
        getrandom::fill(&mut r).unwrap();
        tar.file(&format!("f{i}"), &r);
    }
    let (s, v) = t
        .upload("/api/flist/me/upload", &alice, "full.tar", tar.finish())
        .await;
    assert_eq!(s, 507, "{v}");
    let msg = v.to_string();
    assert!(msg.contains("chunk store is full"), "{msg}");
    for leak in [mnt.display().to_string(), store.clone(), "dir://".into()] {
        assert!(!msg.contains(&leak), "{leak} in {msg}");
    }
    assert!(!exists(&t, "alice", "full.flist").await);

    // Not ready; a remote client is not told the store's path, this machine is.
    let (s, v) = readyz(&t, true).await;
    assert_eq!((s, v), (503, json!({"status": "error"})));
    let (s, v) = readyz(&t, false).await;
    assert_eq!(s, 503);
    let why = v["checks"]["chunk_store_writes"].as_str().unwrap();
    assert!(why.contains("No space left"), "{v}");

    // Room again: ready again (the write probe runs at most every 5 s).
    std::fs::remove_file(&filler).unwrap();
    let mut ready = false;
    for _ in 0..40 {
        if readyz(&t, true).await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(ready, "ready again once the disk has room");
    t.stop().await;
}

/// Item 7: a hostile primary sends entry names that walk out of the repository
/// (`../../../<outside>/PWNED_m.flist`, `a/b.flist`), a link target `../../x/../y`, a
/// repository named `api` and one named `../evil`. The mirror skips and reports each, syncs
/// the rest, never puts an unchecked name in a request path, and `check` finds nothing.
/// Before: all of them went into the catalog (and the bad repository name stopped the
/// whole sync).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item7_a_mirror_checks_what_its_primary_sends() {
    use std::sync::{Arc, Mutex};
    let flist = std::fs::read(test_support::fixture("fixture.flist")).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let staged = hub_repo::Hub::open(scratch.path())
        .unwrap()
        .catalog()
        .stage_reader(&flist[..])
        .unwrap();
    let (sha, md5, size) = (staged.sha256.clone(), staged.md5.clone(), staged.size);
    let outside = tempfile::tempdir().unwrap();
    let pwned = format!("../../../{}/PWNED_m.flist", outside.path().display());
    let regular = |name: &str| {
        json!({"name": name, "kind": "regular", "sha256": sha, "target_repo": null,
               "target_name": null, "updated": 1, "linktime": null, "uploader": "good",
               "source": null})
    };
    let snapshot = |repo: &str| {
        json!({"name": repo, "created": 1, "updated": 1, "blobs": [{"sha256": sha, "md5": md5, "size": size}],
               "entries": [
                   regular("ok.flist"), regular(&pwned), regular("a/b.flist"),
                   {"name": "l.flist", "kind": "symlink", "sha256": null, "target_repo": "good",
                    "target_name": "../../x/../y", "updated": 1, "linktime": 1, "uploader": null,
                    "source": null},
                   {"name": "fine.flist", "kind": "symlink", "sha256": null, "target_repo": "good",
                    "target_name": "ok.flist", "updated": 1, "linktime": 1, "uploader": null,
                    "source": null}],
               "tags": [{"tag": "v1", "updated": 1, "links": [
                   {"name": "../up.flist", "target_repo": "good", "target_name": "ok.flist", "linktime": 1}]}]})
    };
    let change = |id: i64, repo: &str| json!({"id": id, "ts": 1, "action": "upload", "repo": repo, "name": "x.flist", "detail": {}});
    let feed = json!({"cursor": 3, "latest": 3, "more": false, "changes": [
        change(1, "api"), change(2, "../evil"), change(3, "good")]});
    let (good, api, file_path) = (
        snapshot("good"),
        snapshot("api"),
        format!("/api/changes/file/{sha}"),
    );
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen2 = seen.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (seen, feed, flist) = (seen2.clone(), feed.clone(), flist.clone());
        let (good, api, file_path) = (good.clone(), api.clone(), file_path.clone());
        let path = req.uri().path().to_string();
        seen.lock().unwrap().push(req.uri().to_string());
        async move {
            use axum::response::IntoResponse;
            match path.as_str() {
                "/api/changes" => axum::Json(feed).into_response(),
                "/api/repositories" => {
                    axum::Json(json!([{"name": "good"}, {"name": "api"}])).into_response()
                }
                "/api/changes/repository/good" => axum::Json(good).into_response(),
                "/api/changes/repository/api" => axum::Json(api).into_response(),
                p if p == file_path => flist.into_response(),
                _ => axum::http::StatusCode::NOT_FOUND.into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let primary = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let t = TestHub::start_with(move |c| {
        c.mirror.of = Some(primary);
        c.mirror.sync_interval_secs = 1;
    })
    .await;
    let mut status = Value::Null;
    for _ in 0..100 {
        let (_, v) = t.get_json("/api/mirror").await;
        if v["syncs"].as_u64().unwrap_or(0) + v["failures"].as_u64().unwrap_or(0) > 0 {
            status = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status["syncs"], 1, "{status}");
    assert_eq!(status["last_error"], Value::Null, "{status}");
    let skipped = status["skipped"].to_string();
    for bad in [
        "\\\"api\\\"",
        "../evil",
        "PWNED_m.flist",
        "a/b.flist",
        "../../x/../y",
        "../up.flist",
    ] {
        assert!(skipped.contains(bad), "{bad} not reported: {skipped}");
    }

    // The rest synced; nothing bad is in the catalog or on disk.
    assert!(exists(&t, "good", "ok.flist").await);
    let (_, list) = t.get_json("/api/flist/good").await;
    let mut names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .filter(|n| n.ends_with(".flist"))
        .collect();
    names.sort();
    assert_eq!(names, ["fine.flist", "ok.flist"], "{list}");
    let (_, repos) = t.get_json("/api/repositories").await;
    assert!(!repos.to_string().contains("\"api\""), "{repos}");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    let hub = t.hub();
    let bad = tokio::task::spawn_blocking(move || hub.invalid_names())
        .await
        .unwrap()
        .unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    // No unchecked name went back to the primary.
    for uri in seen.lock().unwrap().iter() {
        assert!(
            !uri.contains("..") && !uri.contains("/repository/api") && !uri.contains("evil"),
            "{uri}"
        );
    }
    t.stop().await;
}
