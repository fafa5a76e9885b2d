//! One file inside a stored flist, `GET|HEAD /<repo>/<name>.flist/files/<path>`, against a
//! real hub: the flist is built by the hub from an uploaded archive (its chunks in the
//! hub's store), then single files are read back whole and in ranges, through links and
//! symlinks; traversal, missing paths, directories, the size limit and the heavy-request
//! slots are checked.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/raw_http.rs"]
mod raw_http;

use common::TestHub;
use test_support::archive::{gzip, RawTar};
use test_support::sample::noise;

/// 1.3 MB: three chunks, the last one short.
const BIG: usize = 1_300_000;

async fn hub_with_app(cfg: impl FnOnce(&mut hub_http::HubConfig)) -> (TestHub, Vec<u8>) {
    let t = TestHub::start_with(cfg).await;
    let big = noise(7, BIG);
    let mut tar = RawTar::new();
    tar.dir("etc")
        .file("etc/os-release", b"NAME=\"Test <b>OS</b>\"\n")
        .symlink("etc/release", "os-release")
        .symlink("etc/escape", "../../../../data/big.bin")
        .dir("data")
        .file("data/big.bin", &big)
        .file("data/empty", b"")
        .file("data/caf\u{e9} \"quoted\".txt", b"accents\n");
    let token = t.token("alice", &[]).await;
    let (s, v) = t
        .upload(
            "/api/flist/me/upload",
            &token,
            "app.tar.gz",
            gzip(&tar.finish()),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // a link to it: files are read through links like downloads
    let (s, v) = t
        .call("GET", "/api/flist/me/app.flist/link/latest.flist", &token)
        .await;
    assert_eq!(s, 200, "{v}");
    (t, big)
}

async fn get(t: &TestHub, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut rb = t.client.get(t.url(path));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().await.unwrap()
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

#[tokio::test]
async fn a_file_is_served_whole_with_its_length_and_name() {
    let (t, big) = hub_with_app(|_| {}).await;
    for via in ["app.flist", "latest.flist"] {
        let r = get(&t, &format!("/alice/{via}/files/data/big.bin"), &[]).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-length"), BIG.to_string());
        assert_eq!(header(&r, "accept-ranges"), "bytes");
        assert_eq!(header(&r, "content-type"), "application/octet-stream");
        assert_eq!(
            header(&r, "content-disposition"),
            "attachment; filename=\"big.bin\"; filename*=UTF-8''big%2Ebin"
        );
        assert!(header(&r, "content-security-policy").starts_with("sandbox"));
        let body = r.bytes().await.unwrap();
        assert!(body[..] == big[..], "{via}: the bytes differ");
    }
    let r = get(&t, "/alice/app.flist/files/etc/os-release", &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), &b"NAME=\"Test <b>OS</b>\"\n"[..]);
    // HEAD: the same headers, no body
    let r = t
        .client
        .head(t.url("/alice/app.flist/files/data/big.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), BIG.to_string());
    assert!(r.bytes().await.unwrap().is_empty());
    // an empty file
    let r = get(&t, "/alice/app.flist/files/data/empty", &[]).await;
    assert_eq!(
        (r.status().as_u16(), header(&r, "content-length")),
        (200, "0")
    );
    // a name with a quote and an accent: ASCII in filename, exact in filename*
    let r = get(
        &t,
        "/alice/app.flist/files/data/caf%C3%A9%20%22quoted%22.txt",
        &[],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "content-disposition"),
        "attachment; filename=\"caf_ _quoted_.txt\"; filename*=UTF-8''caf%C3%A9%20%22quoted%22%2Etxt"
    );
    assert_eq!(r.bytes().await.unwrap(), &b"accents\n"[..]);
    t.stop().await;
}

#[tokio::test]
async fn ranges_etags_and_unsatisfiable_ranges() {
    let (t, big) = hub_with_app(|_| {}).await;
    let path = "/alice/app.flist/files/data/big.bin";
    // a range across the first chunk boundary (512 KiB)
    let (a, b) = (524_000usize, 530_000usize);
    let r = get(&t, path, &[("range", &format!("bytes={a}-{b}"))]).await;
    assert_eq!(r.status(), 206);
    assert_eq!(header(&r, "content-range"), format!("bytes {a}-{b}/{BIG}"));
    assert_eq!(header(&r, "content-length"), (b - a + 1).to_string());
    let etag = header(&r, "etag").to_string();
    assert!(etag.starts_with("\"f-"), "{etag}");
    assert!(r.bytes().await.unwrap()[..] == big[a..=b]);
    // open-ended and suffix ranges, in the last (short) chunk
    let r = get(&t, path, &[("range", "bytes=1200000-")]).await;
    assert_eq!(r.status(), 206);
    assert!(r.bytes().await.unwrap()[..] == big[1_200_000..]);
    let r = get(&t, path, &[("range", "bytes=-10")]).await;
    assert_eq!(
        header(&r, "content-range"),
        format!("bytes {}-{}/{BIG}", BIG - 10, BIG - 1)
    );
    assert!(r.bytes().await.unwrap()[..] == big[BIG - 10..]);
    // beyond the end: 416 with the size
    let r = get(&t, path, &[("range", &format!("bytes={BIG}-"))]).await;
    assert_eq!(r.status(), 416);
    assert_eq!(header(&r, "content-range"), format!("bytes */{BIG}"));
    // several ranges: the whole file
    let r = get(&t, path, &[("range", "bytes=0-1,5-6")]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), BIG);
    // If-None-Match with the ETag: 304; If-Range with another one: the whole file
    let r = get(&t, path, &[("if-none-match", &etag)]).await;
    assert_eq!(r.status(), 304);
    let r = get(
        &t,
        path,
        &[("range", "bytes=0-9"), ("if-range", "\"other\"")],
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = get(&t, path, &[("range", "bytes=0-9"), ("if-range", &etag)]).await;
    assert_eq!(r.status(), 206);
    assert!(r.bytes().await.unwrap()[..] == big[..10]);
    t.stop().await;
}

#[tokio::test]
async fn symlinks_redirect_inside_the_flist() {
    let (t, _) = hub_with_app(|_| {}).await;
    let r = get(&t, "/alice/app.flist/files/etc/release", &[]).await;
    assert_eq!(r.status(), 302);
    assert_eq!(
        header(&r, "location"),
        "/alice/app.flist/files/etc/os-release"
    );
    // `..` never climbs above the flist's root
    let r = get(&t, "/alice/app.flist/files/etc/escape", &[]).await;
    assert_eq!(r.status(), 302);
    assert_eq!(
        header(&r, "location"),
        "/alice/app.flist/files/data/big.bin"
    );
    t.stop().await;
}

#[tokio::test]
async fn traversal_missing_paths_and_directories_are_refused() {
    let (t, _) = hub_with_app(|_| {}).await;
    // sent exactly as written (no client-side normalisation of `..`)
    for target in [
        "/alice/app.flist/files/../app.flist",
        "/alice/app.flist/files/etc/../etc/os-release",
        "/alice/app.flist/files/%2e%2e/etc/os-release",
        "/alice/app.flist/files/etc/./os-release",
        "/alice/app.flist/files/etc%2f..%2fetc/os-release",
    ] {
        let r = raw_http::request(t.server.addr, "GET", target, &[], b"").await;
        assert_eq!(
            r.status,
            400,
            "{target}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            String::from_utf8_lossy(&r.body).contains("cannot hold `.` or `..`"),
            "{target}"
        );
    }
    let r = raw_http::request(
        t.server.addr,
        "GET",
        "/alice/app.flist/files/a%00b",
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status, 400);
    // missing: a path, an flist, a repository
    for (path, status) in [
        ("/alice/app.flist/files/etc/nothing", 404),
        ("/alice/app.flist/files/etc/os-release/below", 404),
        ("/alice/none.flist/files/etc/os-release", 404),
        ("/nobody/app.flist/files/etc/os-release", 404),
        ("/alice/app.flist/files/etc", 400),
        ("/alice/app.flist/files/", 404),
    ] {
        let r = get(&t, path, &[]).await;
        assert_eq!(r.status().as_u16(), status, "{path}");
    }
    let r = get(&t, "/alice/app.flist/files/etc/nothing", &[]).await;
    let page = r.text().await.unwrap().replace("&#x2f;", "/");
    assert!(
        page.contains("no /etc/nothing in alice/app.flist"),
        "{page}"
    );
    t.stop().await;
}

#[tokio::test]
async fn files_over_the_limit_answer_413() {
    let (t, _) = hub_with_app(|c| c.limits.max_file_download_bytes = 1_000_000).await;
    let r = get(&t, "/alice/app.flist/files/data/big.bin", &[]).await;
    assert_eq!(r.status(), 413);
    assert!(r.text().await.unwrap().contains("zflist cat"));
    let r = get(&t, "/alice/app.flist/files/etc/os-release", &[]).await;
    assert_eq!(r.status(), 200);
    t.stop().await;
}

#[tokio::test]
async fn a_missing_chunk_cuts_the_body_short() {
    let (t, big) = hub_with_app(|_| {}).await;
    // remove the chunks of the store: the file's headers are sent, its body stops early
    let chunks = t.dir.path().join("data/chunks");
    let mut removed = 0;
    for d in std::fs::read_dir(&chunks).unwrap().flatten() {
        if d.path().is_dir() {
            for f in std::fs::read_dir(d.path()).unwrap().flatten() {
                std::fs::remove_file(f.path()).unwrap();
                removed += 1;
            }
        }
    }
    assert!(removed >= 3, "{removed}");
    let r = get(&t, "/alice/app.flist/files/data/big.bin", &[]).await;
    assert_eq!(r.status(), 200);
    // the connection may also be cut (an error): the client knows the body is incomplete
    if let Ok(b) = r.bytes().await {
        assert!(b.len() < big.len(), "a whole body without its chunks");
    }
    t.stop().await;
}

/// The route takes a heavy-request slot: with every server-wide slot held by a client, the
/// next file request waits and, after the limiter's wait, answers 429 (the gate's test of
/// the limiter covers the timing; here the path is classed heavy).
#[test]
fn the_route_is_a_heavy_request() {
    assert!(hub_http::ui::limits::is_heavy(
        "/alice/app.flist/files/etc/os-release"
    ));
    assert!(!hub_http::ui::limits::is_heavy("/alice/app.flist"));
}
