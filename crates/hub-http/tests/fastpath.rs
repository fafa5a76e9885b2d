//! The fast path (`hub_http::fastpath`) answers exactly what the router answers: every
//! request is sent twice over a real socket, once with the fast path switched off (the
//! router answers and fills the caches) and once with it on (the fast path must answer it:
//! its counter moves), and status, headers (except `date` and the request id) and body must
//! be equal. Writes through the API must be visible to the next request; the request log
//! and the metrics must count fast answers as the router's.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use common::{metric, TestHub};
use serde_json::Value;

/// Log lines of target `hub::request`, captured for the whole test binary.
fn log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b2 = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("hub::request=info")
            .with_ansi(false)
            .with_writer(move || Sink(b2.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        buf
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Status, headers without `date` and `x-request-id` (whether one came), body.
#[derive(PartialEq)]
struct Answer {
    status: u16,
    request_id: bool,
    headers: BTreeMap<String, Vec<String>>,
    body: Vec<u8>,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let head = String::from_utf8_lossy(&self.body[..self.body.len().min(80)]);
        write!(
            f,
            "{} id:{} {:?} body {} bytes {head:?}",
            self.status,
            self.request_id,
            self.headers,
            self.body.len()
        )
    }
}

async fn send(t: &TestHub, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut r = t.client.request(m, t.url(path));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.expect("request");
    let status = r.status().as_u16();
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let id = r
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().expect("id"));
    if let Some(id) = id {
        assert!(
            id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{method} {path}: request id {id:?}"
        );
    }
    let request_id = id.is_some();
    for (k, v) in r.headers() {
        if k == "date" || k == "x-request-id" {
            continue;
        }
        map.entry(k.to_string())
            .or_default()
            .push(v.to_str().expect("ascii header").to_string());
    }
    let body = r.bytes().await.expect("body").to_vec();
    Answer {
        status,
        request_id,
        headers: map,
        body,
    }
}

/// The router's answer, then the fast path's (which must be the fast path's: its counter
/// moves by one), asserted equal; returns the answer.
async fn same(t: &TestHub, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let fast = &t.server.state.fastpath;
    fast.set_enabled(false);
    let slow = send(t, method, path, headers).await;
    fast.set_enabled(true);
    let before = fast.served();
    let quick = send(t, method, path, headers).await;
    assert_eq!(
        fast.served(),
        before + 1,
        "{method} {path} {headers:?} was not answered by the fast path"
    );
    assert_eq!(slow, quick, "{method} {path} {headers:?}");
    assert!(quick.request_id, "{method} {path}: no request id");
    slow
}

/// The router answers (the fast path declines); returns the answer.
async fn routed(t: &TestHub, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let fast = &t.server.state.fastpath;
    let before = fast.served();
    let a = send(t, method, path, headers).await;
    assert_eq!(fast.served(), before, "{method} {path}: fast path answered");
    a
}

fn header<'a>(a: &'a Answer, name: &str) -> &'a str {
    a.headers
        .get(name)
        .and_then(|v| v.first())
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no {name} in {:?}", a.headers))
}

fn names(a: &Answer) -> Vec<String> {
    let v: Value = serde_json::from_slice(&a.body).expect("json");
    let mut n: Vec<String> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["name"].as_str().expect("name").to_string())
        .collect();
    n.sort();
    n
}

#[tokio::test]
async fn downloads_answer_as_the_router_does() {
    log();
    let t = TestHub::start().await;
    t.put_fixture("alice", "app.flist", "merge-a.flist").await;
    t.put_fixture("alice", "zos:v1.flist", "fixture.flist")
        .await;
    let alice = t.token("alice", &[]).await;
    let (s, _) = t
        .call(
            "PUT",
            "/api/flist/me/v1/app.flist/tag/alice/app.flist",
            &alice,
        )
        .await;
    assert_eq!(s, 200);
    let bytes = std::fs::read(test_support::fixture("merge-a.flist")).expect("fixture");
    let n = bytes.len();

    let full = same(&t, "GET", "/alice/app.flist", &[]).await;
    assert_eq!(full.status, 200);
    assert_eq!(full.body, bytes);
    assert_eq!(header(&full, "content-length"), n.to_string());
    assert_eq!(header(&full, "access-control-allow-origin"), "*");
    let etag = header(&full, "etag").to_string();
    let lm = header(&full, "last-modified").to_string();
    let head = same(&t, "HEAD", "/alice/app.flist", &[]).await;
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(header(&head, "content-length"), n.to_string());

    let later = "Fri, 01 Jan 2100 00:00:00 GMT";
    let cases: Vec<(Vec<(&str, &str)>, u16)> = vec![
        (vec![("range", "bytes=0-9")], 206),
        (vec![("range", "bytes=-5")], 206),
        (vec![("range", "bytes=5-")], 206),
        (vec![("range", "bytes=0-1,4-5")], 200),
        (vec![("range", "bytes=999999-")], 416),
        (vec![("range", "bytes=0-3"), ("if-range", &etag)], 206),
        (vec![("range", "bytes=0-3"), ("if-range", &lm)], 206),
        (vec![("range", "bytes=0-3"), ("if-range", "\"other\"")], 200),
        (vec![("if-none-match", &etag)], 304),
        (vec![("if-none-match", "\"x\", *")], 304),
        (vec![("if-none-match", "\"other\"")], 200),
        (
            vec![("if-none-match", "\"other\""), ("if-modified-since", &lm)],
            200,
        ),
        (vec![("if-modified-since", &lm)], 304),
        (vec![("if-modified-since", later)], 304),
        (
            vec![("if-modified-since", "Thu, 01 Jan 1970 00:00:00 GMT")],
            200,
        ),
        (vec![("origin", "https://elsewhere.example")], 200),
    ];
    for (headers, status) in &cases {
        for method in ["GET", "HEAD"] {
            let a = same(&t, method, "/alice/app.flist", headers).await;
            assert_eq!(a.status, *status, "{method} {headers:?}");
        }
    }
    let r = same(&t, "GET", "/alice/app.flist", &[("range", "bytes=3-7")]).await;
    assert_eq!(r.body, &bytes[3..=7]);
    assert_eq!(header(&r, "content-range"), format!("bytes 3-7/{n}"));

    // Trailing slashes, the `.md5`, tags, names with `:` (raw and encoded).
    for path in [
        "/alice/app.flist/",
        "/alice/app.flist//",
        "/alice/app.flist.md5",
        "/alice/tags/v1/app.flist",
        "/alice/tags/v1/app.flist.md5",
        "/alice/zos:v1.flist",
        "/alice/zos%3Av1.flist",
        "/alice/zos:v1.flist.md5",
    ] {
        for method in ["GET", "HEAD"] {
            let a = same(&t, method, path, &[]).await;
            assert_eq!(a.status, 200, "{method} {path}");
        }
    }
    let md5 = same(&t, "GET", "/alice/app.flist.md5", &[]).await;
    assert_eq!(md5.body.len(), 33);
    assert_eq!(
        same(&t, "GET", "/alice/tags/v1/app.flist", &[]).await.body,
        bytes
    );

    // What the fast path leaves to the router: unknown names, other routes, bodies.
    for (path, status) in [
        ("/nobody/app.flist", 404),
        ("/alice/none.flist", 404),
        ("/alice/tags/v2/app.flist", 404),
        ("/alice/app.json", 200),
        ("/api/app.flist", 404),
        ("/static/app.flist", 404),
        ("/alice/app%2Fx.flist", 404),
    ] {
        let a = routed(&t, "GET", path, &[]).await;
        assert_eq!(a.status, status, "{path}");
        // Twice: a miss is not cached as an answer.
        routed(&t, "GET", path, &[]).await;
    }
    routed(&t, "GET", "/alice/app.flist.sig", &[]).await;
    routed(&t, "POST", "/alice/app.flist", &[]).await;
    routed(&t, "OPTIONS", "/alice/app.flist", &[]).await;
    routed(&t, "GET", "/alice/app.flist", &[("content-length", "0")]).await;

    // A rename and a delete are seen by the next request.
    let (s, _) = t
        .call("GET", "/api/flist/me/app.flist/rename/new.flist", &alice)
        .await;
    assert_eq!(s, 200);
    assert_eq!(routed(&t, "GET", "/alice/app.flist", &[]).await.status, 404);
    assert_eq!(routed(&t, "GET", "/alice/new.flist", &[]).await.body, bytes);
    assert_eq!(same(&t, "GET", "/alice/new.flist", &[]).await.body, bytes);
    let (s, _) = t.call("DELETE", "/api/flist/me/new.flist", &alice).await;
    assert_eq!(s, 200);
    assert_eq!(routed(&t, "GET", "/alice/new.flist", &[]).await.status, 404);
    assert_eq!(
        routed(&t, "HEAD", "/alice/new.flist", &[]).await.status,
        404
    );
}

#[tokio::test]
async fn listings_answer_as_the_router_does_and_follow_writes() {
    log();
    let t = TestHub::start().await;
    t.put_fixture("carol", "a.flist", "merge-a.flist").await;
    let carol = t.token("carol", &[]).await;

    let a = same(&t, "GET", "/api/flist/carol", &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(header(&a, "content-type"), "application/json");
    assert_eq!(names(&a), ["a.flist"]);
    let h = same(&t, "HEAD", "/api/flist/carol", &[]).await;
    assert_eq!(h.body.len(), 0);
    assert_eq!(header(&h, "content-length"), a.body.len().to_string());
    same(&t, "GET", "/api/flist/carol/", &[]).await;
    same(&t, "GET", "/api/flist/carol?x=1", &[]).await;

    // Upload, link, rename, delete: the next listing shows each (the router answers the
    // first request after a write, the fast path the ones after).
    let data = std::fs::read(test_support::fixture("fixture.flist")).expect("fixture");
    t.load_fixture_chunks(None).await;
    let (s, v) = t
        .upload("/api/flist/me/upload-flist", &carol, "up.flist", data)
        .await;
    assert_eq!(s, 200, "{v}");
    let a = routed(&t, "GET", "/api/flist/carol", &[]).await;
    assert_eq!(names(&a), ["a.flist", "up.flist"]);
    assert_eq!(same(&t, "GET", "/api/flist/carol", &[]).await, a);
    let (s, _) = t
        .call("GET", "/api/flist/me/up.flist/rename/moved.flist", &carol)
        .await;
    assert_eq!(s, 200);
    let a = routed(&t, "GET", "/api/flist/carol", &[]).await;
    assert_eq!(names(&a), ["a.flist", "moved.flist"]);
    assert_eq!(
        names(&same(&t, "GET", "/api/flist/carol", &[]).await),
        names(&a)
    );
    let (s, _) = t.call("DELETE", "/api/flist/me/a.flist", &carol).await;
    assert_eq!(s, 200);
    let a = routed(&t, "GET", "/api/flist/carol", &[]).await;
    assert_eq!(names(&a), ["moved.flist"]);
    same(&t, "GET", "/api/flist/carol", &[]).await;

    // Unknown and reserved names stay with the router.
    for path in ["/api/flist/nobody", "/api/flist/me", "/api/flist/-bad"] {
        routed(&t, "GET", path, &[]).await;
        routed(&t, "GET", path, &[]).await;
    }
}

#[tokio::test]
async fn a_read_only_mirror_answers_the_same() {
    log();
    let t = TestHub::start_with(|c| {
        c.mirror.of = Some("http://127.0.0.1:9".into());
        c.mirror.sync_interval_secs = 3600;
    })
    .await;
    t.put_fixture("dave", "m.flist", "merge-b.flist").await;
    let a = same(&t, "GET", "/dave/m.flist", &[]).await;
    assert_eq!(a.status, 200);
    same(&t, "GET", "/dave/m.flist", &[("range", "bytes=1-2")]).await;
    same(&t, "GET", "/api/flist/dave", &[]).await;
    // Writes are still refused (by the router).
    let dave = t.token("dave", &[]).await;
    let (s, _) = t
        .call("GET", "/api/flist/me/m.flist/rename/n.flist", &dave)
        .await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn fast_answers_are_logged_and_counted() {
    let log = log();
    let t = TestHub::start().await;
    t.put_fixture("erin", "e.flist", "merge-a.flist").await;
    let n = std::fs::read(test_support::fixture("merge-a.flist"))
        .expect("fixture")
        .len() as f64;
    let scrape = |t: &TestHub| {
        let url = t.url("/metrics");
        let c = t.client.clone();
        async move {
            c.get(url)
                .send()
                .await
                .expect("metrics")
                .text()
                .await
                .expect("text")
        }
    };
    same(&t, "GET", "/erin/e.flist", &[]).await;
    same(&t, "GET", "/api/flist/erin", &[]).await;
    let before = scrape(&t).await;
    let fast = t.server.state.fastpath.served();
    for _ in 0..3 {
        send(&t, "GET", "/erin/e.flist", &[]).await;
        send(&t, "HEAD", "/erin/e.flist", &[]).await;
        send(&t, "GET", "/erin/e.flist", &[("range", "bytes=0-9")]).await;
        send(&t, "GET", "/api/flist/erin", &[]).await;
    }
    send(&t, "GET", "/erin/tags/none/e.flist", &[]).await;
    assert_eq!(t.server.state.fastpath.served(), fast + 12);
    let after = scrape(&t).await;
    let moved = |labels: &[(&str, &str)]| {
        metric(&after, "hub_http_requests_total", labels)
            - metric(&before, "hub_http_requests_total", labels)
    };
    let dl = ("route", "/{repo}/{file}");
    assert_eq!(moved(&[("method", "GET"), dl, ("status", "200")]), 3.0);
    assert_eq!(moved(&[("method", "HEAD"), dl, ("status", "200")]), 3.0);
    assert_eq!(moved(&[("method", "GET"), dl, ("status", "206")]), 3.0);
    let tags = ("route", "/{repo}/tags/{tag}/{file}");
    assert_eq!(moved(&[("method", "GET"), tags, ("status", "404")]), 1.0);
    let listing = ("route", "/api/flist/{repo}");
    assert_eq!(moved(&[("method", "GET"), listing, ("status", "200")]), 3.0);
    let seconds = |text: &str| {
        metric(
            text,
            "hub_http_request_duration_seconds_count",
            &[("method", "GET"), dl, ("status", "200")],
        )
    };
    assert_eq!(seconds(&after) - seconds(&before), 3.0);
    let sent = metric(&after, "hub_http_sent_bytes_total", &[])
        - metric(&before, "hub_http_sent_bytes_total", &[]);
    // 3 whole files, 3 ranges of 10 bytes, 3 listings, the 404 page and the first scrape.
    assert!(sent >= 3.0 * n + 30.0, "sent {sent}");

    // One log line per request, fast or routed, with the same fields.
    let text = String::from_utf8(log.lock().expect("log").clone()).expect("utf8");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("path=/erin/e.flist ") && l.contains("method=GET"))
        .collect();
    // `same` (router + fast) and 3 GET + 3 ranged GET.
    assert_eq!(lines.len(), 8, "{text}");
    for l in &lines {
        for f in [
            "hub::request",
            "status=20",
            "received=0",
            "duration_ms=",
            "user=\"-\"",
            "job=\"-\"",
        ] {
            assert!(l.contains(f), "{f} in {l}");
        }
    }
    assert!(
        lines
            .iter()
            .filter(|l| l.contains(&format!("status=200 bytes={n} ")))
            .count()
            == 5,
        "{lines:#?}"
    );
    let head_lines = text
        .lines()
        .filter(|l| l.contains("path=/erin/e.flist ") && l.contains("method=HEAD"))
        .filter(|l| l.contains("bytes=0 "))
        .count();
    assert_eq!(head_lines, 3);
}

/// A push or an extract makes one request per chunk: those are counted in
/// `hub_chunk_requests_total` and logged at debug level, not one INFO line each.
#[tokio::test]
async fn chunk_requests_are_counted_not_logged_one_info_line_each() {
    let log = log();
    let t = TestHub::start().await;
    let scrape = || async { t.get("/metrics").await.text().await.expect("metrics") };
    let before = scrape().await;
    for i in 0..25u32 {
        let key = format!("ab{i:030x}");
        let r = t.get(&format!("/chunks/ab/{key}")).await;
        assert_eq!(r.status(), 404);
    }
    let r = t.get("/api/repositories").await;
    assert_eq!(r.status(), 200);
    let after = scrape().await;
    let labels = &[("route", "/chunks/{prefix}/{hex}"), ("status", "404")];
    let counted = metric(&after, "hub_chunk_requests_total", labels)
        - metric(&before, "hub_chunk_requests_total", labels);
    assert_eq!(counted, 25.0, "{after}");
    let text = String::from_utf8(log.lock().expect("log").clone()).expect("utf8");
    assert!(
        text.contains("path=/api/repositories "),
        "other requests keep their INFO line: {text}"
    );
    assert!(
        !text.contains("path=/chunks/ab/"),
        "no INFO line per chunk request: {text}"
    );
}
