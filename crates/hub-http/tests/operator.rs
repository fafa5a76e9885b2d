//! The default hub as a product: local accounts and sessions, chunks served from the local
//! store, the derived public URL, metrics, health and readiness.

mod common;

use common::{metric, TestHub};
use serde_json::Value;

/// A hub as `serve` runs it by default: `dir://` store, no public URL, no public backend.
async fn default_hub() -> TestHub {
    TestHub::start_with(|c| {
        c.public_url = String::new();
        c.public_backend = String::new();
        c.threebot.enabled = false;
    })
    .await
}

async fn add_user(t: &TestHub, name: &str, pw: &str) {
    let hub = t.hub();
    let (n, p) = (name.to_string(), pw.to_string());
    tokio::task::spawn_blocking(move || hub.accounts().user_add(&n, &p, false))
        .await
        .expect("join")
        .expect("user add");
}

async fn login(t: &TestHub, form: &[(&str, &str)]) -> reqwest::Response {
    t.client
        .post(t.url("/login"))
        .header("origin", &t.base)
        .form(form)
        .send()
        .await
        .expect("login")
}

/// The user of a `/api/flist/me` answer (with or without the envelope).
fn username(v: Value) -> String {
    v["payload"]["username"]
        .as_str()
        .or(v["username"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn cookie_of(r: &reqwest::Response) -> Option<(String, String)> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("hub-session="))
        .map(|c| {
            (
                c.split(';').next().unwrap_or_default().to_string(),
                c.to_string(),
            )
        })
}

#[tokio::test]
async fn password_login_opens_a_session_that_is_not_a_token() {
    let t = default_hub().await;
    // Without accounts the page offers the token form and says how to create one.
    let page = t.get("/login-method").await.text().await.expect("page");
    assert!(!page.contains("name=\"password\""), "{page}");
    assert!(page.contains("name=\"token\"") && page.contains("hub-server user add"));
    assert!(!page.contains("login-threebot"), "3Bot is not configured");

    add_user(&t, "alice", "correct horse battery").await;
    let page = t
        .get("/login-method?next=/upload")
        .await
        .text()
        .await
        .expect("page");
    assert!(page.contains("name=\"username\"") && page.contains("name=\"password\""));
    // (minijinja escapes `/` in attributes as `&#x2f;`)
    assert!(page.replace("&#x2f;", "/").contains("value=\"/upload\""));

    // Wrong password: 401 and the page says so; no cookie.
    let r = login(
        &t,
        &[
            ("username", "alice"),
            ("password", "wrong"),
            ("next", "/upload"),
        ],
    )
    .await;
    assert_eq!(r.status(), 401);
    assert!(cookie_of(&r).is_none());
    assert!(r
        .text()
        .await
        .expect("text")
        .contains("Wrong user name or password"));
    // Unknown users read the same.
    let r = login(&t, &[("username", "nobody"), ("password", "whatever1")]).await;
    assert_eq!(r.status(), 401);

    // Right password: 303 back to where the user came from, with a strict session cookie.
    let r = login(
        &t,
        &[
            ("username", "alice"),
            ("password", "correct horse battery"),
            ("next", "/upload"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/upload");
    let (cookie, full) = cookie_of(&r).expect("session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(full.contains(attr), "{full} lacks {attr}");
    }
    assert!(!full.contains("Secure"), "plain HTTP hub: no Secure flag");
    // An open redirect is refused: `next` must be a local path.
    let r = login(
        &t,
        &[
            ("username", "alice"),
            ("password", "correct horse battery"),
            ("next", "//evil.example/x"),
        ],
    )
    .await;
    assert_eq!(r.headers()["location"], "/");

    let me = t
        .client
        .get(t.url("/api/flist/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("me");
    assert_eq!(me.status(), 200);
    assert_eq!(username(me.json().await.expect("json")), "alice");
    // The session id is not an API token.
    let sid = cookie.trim_start_matches("hub-session=").to_string();
    assert_eq!(t.call("GET", "/api/flist/me", &sid).await.0, 401);
    // The home page shows who is signed in.
    let home = t
        .client
        .get(t.url("/"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("home");
    assert!(home.text().await.expect("html").contains("alice"));

    // Sign in with an API token.
    let token = t.token("bob", &[]).await;
    let r = login(&t, &[("token", &token)]).await;
    assert_eq!(r.status(), 303);
    let (bob, _) = cookie_of(&r).expect("cookie");
    let me = t
        .client
        .get(t.url("/api/flist/me"))
        .header("cookie", &bob)
        .send()
        .await
        .expect("me");
    assert_eq!(username(me.json().await.expect("json")), "bob");
    assert_eq!(login(&t, &[("token", "not-a-token")]).await.status(), 401);

    // Logout (the page's form: a same-origin POST) ends the session server-side.
    let r = t
        .client
        .post(t.url("/logout"))
        .header("cookie", &cookie)
        .header("origin", format!("http://{}", t.server.addr))
        .send()
        .await
        .expect("logout");
    assert!(r.status().is_success() || r.status().is_redirection());
    let me = t
        .client
        .get(t.url("/api/flist/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("me");
    assert_eq!(me.status(), 401);

    // Changing the password ends the other sessions.
    let r = login(
        &t,
        &[("username", "alice"), ("password", "correct horse battery")],
    )
    .await;
    let (c2, _) = cookie_of(&r).expect("cookie");
    let hub = t.hub();
    tokio::task::spawn_blocking(move || hub.accounts().user_passwd("alice", "another good one"))
        .await
        .expect("join")
        .expect("passwd");
    let me = t
        .client
        .get(t.url("/api/flist/me"))
        .header("cookie", &c2)
        .send()
        .await
        .expect("me");
    assert_eq!(me.status(), 401);
    t.stop().await;
}

#[tokio::test]
async fn login_is_rate_limited_per_account() {
    let t = default_hub().await;
    add_user(&t, "carol", "carol's password").await;
    for _ in 0..hub_http::login::MAX_FAILURES_PER_ACCOUNT {
        let r = login(&t, &[("username", "carol"), ("password", "guess1234")]).await;
        assert_eq!(r.status(), 401);
    }
    // Blocked now, even with the right password; the page says why.
    let r = login(
        &t,
        &[("username", "carol"), ("password", "carol's password")],
    )
    .await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert!(r.text().await.expect("text").contains("Too many failed"));
    // Another account from the same address is not blocked yet.
    add_user(&t, "dave", "dave's password").await;
    let r = login(&t, &[("username", "dave"), ("password", "dave's password")]).await;
    assert_eq!(r.status(), 303);
    t.stop().await;
}

#[test]
fn reserved_and_weak_accounts_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = hub_repo::Hub::open(dir.path()).expect("hub");
    for name in ["me", "api", "login", "static", "chunks", "metrics", "ME"] {
        let e = hub
            .accounts()
            .user_add(name, "long enough pw", false)
            .expect_err(name);
        assert!(e.to_string().contains("reserved"), "{e}");
        assert!(
            hub.accounts().create_token(name, &[], 60, None).is_err(),
            "{name}"
        );
    }
    assert!(hub
        .accounts()
        .user_add("erin", "short", false)
        .expect_err("short")
        .to_string()
        .contains("too short"));
    hub.accounts()
        .user_add("erin", "long enough pw", true)
        .expect("add");
    assert!(hub
        .accounts()
        .user_add("erin", "long enough pw", false)
        .is_err());
    let users = hub.accounts().user_list().expect("list");
    assert_eq!((users.len(), users[0].admin), (1, true));
    assert!(hub
        .accounts()
        .verify_password("erin", "long enough pw")
        .expect("v")
        .is_some());
    assert!(hub
        .accounts()
        .verify_password("erin", "long enough px")
        .expect("v")
        .is_none());
    hub.accounts().user_remove("erin").expect("remove");
    assert!(hub.accounts().user_remove("erin").is_err());
    // The stored hash is argon2id, never the password.
    let cat = std::fs::read(dir.path().join("catalog.sqlite3")).expect("catalog");
    assert!(!cat
        .windows(b"long enough pw".len())
        .any(|w| w == b"long enough pw"));
}

async fn scrape(t: &TestHub) -> String {
    let r = t.get("/metrics").await;
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"]
        .to_str()
        .expect("ct")
        .to_string();
    assert!(ct.contains("text"), "{ct}");
    r.text().await.expect("metrics")
}

#[tokio::test]
async fn chunks_are_served_and_flists_point_there_and_metrics_move() {
    let t = default_hub().await;
    let token = t.token("alice", &[]).await;
    let before = scrape(&t).await;

    // Upload: the flist's backend is this hub's /chunks, derived from the bound address.
    let tree = test_support::sample::sample_tree();
    let archive = test_support::sample::tar_gz(&tree);
    let (status, v) = t
        .upload(
            "/api/flist/me/upload",
            &token,
            "app.tar.gz",
            archive.clone(),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let r = t.get("/alice/app.flist").await;
    assert_eq!(r.status(), 200);
    let flist_bytes = r.bytes().await.expect("flist");
    let path = t.dir.path().join("dl.flist");
    std::fs::write(&path, &flist_bytes).expect("write");
    let fl = flist_format::Flist::open(&path).expect("flist");
    let backend: Value =
        serde_json::from_str(fl.metadata.get("backend").expect("backend")).expect("json");
    assert_eq!(backend, serde_json::json!({"url": t.url("/chunks")}));
    let txt = t.get("/alice/app.txt").await.text().await.expect("txt");
    assert!(
        txt.contains(&format!("Source:   {}/alice/app.flist", t.base)),
        "{txt}"
    );
    assert!(
        txt.contains(&format!("Storage:  {}/chunks", t.base)),
        "{txt}"
    );

    // Every chunk is served read-only, immutable, with the key as ETag.
    let mut keys = Vec::new();
    for id in fl.tree.walk() {
        if let flist_format::Kind::File { blocks, .. } = &fl.tree.node(id).kind {
            keys.extend(blocks.iter().map(|b| b.id_hex()));
        }
    }
    assert!(keys.len() >= 3, "{keys:?}");
    let k = &keys[0];
    let r = t.get(&format!("/chunks/{}/{k}", &k[..2])).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], format!("\"{k}\"").as_str());
    let cc = r.headers()["cache-control"]
        .to_str()
        .expect("cc")
        .to_string();
    assert!(
        cc.contains("immutable") && cc.contains("max-age=31536000"),
        "{cc}"
    );
    let body = r.bytes().await.expect("chunk");
    assert!(!body.is_empty());
    let head = t
        .client
        .head(t.url(&format!("/chunks/{}/{k}", &k[..2])))
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), 200);
    assert!(head.bytes().await.expect("body").is_empty());
    let r = t
        .client
        .get(t.url(&format!("/chunks/{}/{k}", &k[..2])))
        .header("if-none-match", format!("\"{k}\""))
        .send()
        .await
        .expect("conditional");
    assert_eq!(r.status(), 304);
    for bad in [
        format!("/chunks/zz/{k}"),
        format!("/chunks/{}/{}", &k[..2], k.to_uppercase()),
        format!("/chunks/{}/{}", &k[2..4], k),
        "/chunks/00/0000000000000000000000000000000f".to_string(),
    ] {
        assert_eq!(t.get(&bad).await.status(), 404, "{bad}");
    }
    // No write method exists there.
    let r = t
        .client
        .put(t.url(&format!("/chunks/{}/{k}", &k[..2])))
        .body("x")
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 405);

    // A reader that knows only the flist's backend restores the tree.
    let store = flist_store::BlockingStore::new(
        flist_store::open(backend["url"].as_str().expect("url"))
            .await
            .expect("http store"),
        tokio::runtime::Handle::current(),
    );
    let out = t.dir.path().join("out");
    let tree2 = fl.tree.clone();
    let out2 = out.clone();
    tokio::task::spawn_blocking(move || {
        flist_convert::extract(
            &tree2,
            &out2,
            &store,
            &flist_convert::ExtractOptions::default(),
        )
    })
    .await
    .expect("join")
    .expect("extract");
    assert_eq!(test_support::sample::read_tree(&out), tree);

    // Counters moved: requests by route and status, bytes both ways, the conversion, the
    // store's writes and reads, the catalog.
    let after = scrape(&t).await;
    let m = |text: &str, name: &str, labels: &[(&str, &str)]| metric(text, name, labels);
    let upload_route = [
        ("route", "/api/flist/me/upload"),
        ("method", "POST"),
        ("status", "200"),
    ];
    assert_eq!(m(&before, "hub_http_requests_total", &upload_route), 0.0);
    assert_eq!(m(&after, "hub_http_requests_total", &upload_route), 1.0);
    assert_eq!(
        m(
            &after,
            "hub_http_request_duration_seconds_count",
            &upload_route
        ),
        1.0
    );
    let dl_route = [("route", "/{repo}/{file}"), ("status", "200")];
    assert!(m(&after, "hub_http_requests_total", &dl_route) >= 1.0);
    assert!(
        m(&after, "hub_http_received_bytes_total", &[])
            - m(&before, "hub_http_received_bytes_total", &[])
            >= archive.len() as f64
    );
    assert!(
        m(&after, "hub_http_sent_bytes_total", &[]) - m(&before, "hub_http_sent_bytes_total", &[])
            >= (flist_bytes.len() + body.len()) as f64
    );
    assert_eq!(
        m(
            &after,
            "hub_conversions_total",
            &[("kind", "upload"), ("outcome", "done")]
        ),
        1.0
    );
    assert_eq!(
        m(
            &after,
            "hub_conversion_duration_seconds_count",
            &[("kind", "upload")]
        ),
        1.0
    );
    assert!(m(&after, "hub_store_operations_total", &[("op", "set")]) >= keys.len() as f64 - 1.0);
    assert!(
        m(&after, "hub_store_operations_total", &[("op", "get")])
            > m(&before, "hub_store_operations_total", &[("op", "get")])
    );
    assert_eq!(
        m(&after, "hub_catalog_entries", &[("name", "regular")]),
        1.0
    );
    assert_eq!(m(&after, "hub_catalog_repositories", &[]), 1.0);
    assert_eq!(m(&after, "hub_jobs", &[("name", "done")]), 1.0);
    assert_eq!(
        m(&before, "hub_catalog_entries", &[("name", "regular")]),
        0.0
    );
    // The metrics page itself is a route too.
    assert!(m(&after, "hub_http_requests_total", &[("route", "/metrics")]) >= 1.0);
    t.stop().await;
}

#[tokio::test]
async fn health_and_readiness_follow_the_chunk_store() {
    let mut redis = test_support::RedisServer::start();
    let url = redis.url();
    let t = TestHub::start_with(move |c| c.store = Some(url)).await;
    let (s, v) = t.get_json("/healthz").await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")));
    let (s, v) = t.get_json("/readyz").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["checks"]["chunk_store"], "ok");
    assert_eq!(v["checks"]["catalog"], "ok");

    redis.kill();
    let (s, v) = t.get_json("/readyz").await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["checks"]["catalog"], "ok");
    assert!(
        v["checks"]["chunk_store"]
            .as_str()
            .is_some_and(|e| e != "ok"),
        "{v}"
    );
    // The process is still alive.
    assert_eq!(t.get("/healthz").await.status(), 200);
    let metrics = scrape(&t).await;
    assert!(metric(&metrics, "hub_store_errors_total", &[("op", "exists")]) >= 1.0);

    redis.restart();
    let mut ok = false;
    for _ in 0..50 {
        if t.get("/readyz").await.status() == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ok, "ready again once the store is back");
    t.stop().await;
}

#[tokio::test]
async fn a_catalog_that_cannot_take_files_is_not_ready() {
    let t = default_hub().await;
    assert_eq!(t.get("/readyz").await.status(), 200);
    let tmp = t.hub().catalog().tmp_dir().to_path_buf();
    let moved = tmp.with_extension("moved");
    std::fs::rename(&tmp, &moved).expect("move tmp away");
    let (s, v) = t.get_json("/readyz").await;
    std::fs::rename(&moved, &tmp).expect("move tmp back");
    assert_eq!(s, 503, "{v}");
    assert_ne!(v["checks"]["catalog"], "ok");
    assert_eq!(v["checks"]["chunk_store"], "ok");
    assert_eq!(t.get("/readyz").await.status(), 200);
    t.stop().await;
}
