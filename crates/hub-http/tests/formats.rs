//! Both flist formats on the hub: an entry made from a `.tar.gz` is served as an rfs `.fl`,
//! an uploaded `.fl` as an `.flist`, both extract to their source trees over the hub's own
//! chunk endpoint, they merge, and an `.fl` whose blocks the hub lacks is refused naming
//! them. Real server over loopback, real dir store, rfs v2.0.7's own `.fl` fixture.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::TestHub;
use flist_format::{Block, Codec, Flist, Kind};
use md5::Digest;
use serde_json::{json, Value};
use test_support::sample::{read_tree, sample_tree, tar_gz, Member};

/// A hub whose public URL is its real address and whose announced backend is its own
/// `/chunks` (a `dir://` store, no configured public backend): what it serves is readable
/// from its metadata alone.
async fn hub() -> TestHub {
    hub_with(|_| {}).await
}

/// [`hub`] with `f` applied to its configuration.
async fn hub_with(f: impl FnOnce(&mut hub_http::config::HubConfig)) -> TestHub {
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut cfg = common::test_config(dir.path());
    cfg.public_backend = String::new();
    cfg.public_url = format!("http://{addr}");
    f(&mut cfg);
    let server = hub_http::start_on(listener, cfg).await.expect("start");
    TestHub {
        server,
        base: format!("http://{addr}"),
        dir,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        answers: std::sync::Mutex::new(Vec::new()),
    }
}

async fn fetch(h: &TestHub, path: &str) -> (Bytes, reqwest::header::HeaderMap) {
    let r = h.get(path).await;
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.bytes().await.expect("body");
    assert_eq!(
        status,
        200,
        "GET {path}: {}",
        String::from_utf8_lossy(&body)
    );
    (body, headers)
}

/// Writes `bytes` as `name` in a temp dir, reads it and extracts it from the store its own
/// routes or backend name (nothing else given): the flist and the restored tree.
async fn extract(bytes: Bytes, name: &str) -> (Flist, BTreeMap<String, Member>) {
    let name = name.to_string();
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join(&name);
        std::fs::write(&file, &bytes).expect("write");
        let fl = Flist::open(&file).expect("read the served flist");
        let url = if fl.metadata.routes.is_empty() {
            let b = fl
                .metadata
                .backend()
                .expect("backend parses")
                .expect("a backend");
            flist_convert::backend::store_url(&b)
        } else {
            flist_convert::backend::routes_url(&fl.metadata.routes).expect("routes")
        };
        let store = flist_store::BlockingStore::open(&url.to_string()).expect("store");
        let out = dir.path().join("out");
        flist_convert::extract(
            &fl.tree,
            &out,
            &store,
            &flist_convert::ExtractOptions::default(),
        )
        .expect("extract");
        (fl, read_tree(&out))
    })
    .await
    .expect("join")
}

/// The tree of rfs's `routed.fl` fixture: `small.tar.gz` unpacked.
fn small_tree() -> BTreeMap<String, Member> {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = std::fs::File::open(test_support::rfs_fixture("small.tar.gz")).expect("fixture");
    tar::Archive::new(flate2::read::GzDecoder::new(f))
        .unpack(dir.path())
        .expect("untar");
    read_tree(dir.path())
}

/// The blocks of `routed.fl` (its two stores), by hex id.
fn routed_blocks() -> BTreeMap<String, Bytes> {
    let mut out = BTreeMap::new();
    for sub in ["low", "high"] {
        for e in std::fs::read_dir(test_support::rfs_fixture(sub)).expect("blocks") {
            let e = e.expect("entry");
            let name = e.file_name().to_string_lossy().to_string();
            out.insert(name, Bytes::from(std::fs::read(e.path()).expect("block")));
        }
    }
    out
}

async fn put_blocks(h: &TestHub, blocks: &BTreeMap<String, Bytes>, skip: &[&String]) {
    let items: Vec<(Vec<u8>, Bytes)> = blocks
        .iter()
        .filter(|(k, _)| !skip.contains(k))
        .map(|(k, v)| (hex::decode(k).expect("hex"), v.clone()))
        .collect();
    h.server
        .state
        .store
        .set_many(&items)
        .await
        .expect("store blocks");
}

fn blocks_by_path(fl: &Flist) -> BTreeMap<String, Vec<Block>> {
    fl.tree
        .walk()
        .filter_map(|id| match &fl.tree.node(id).kind {
            Kind::File { blocks, .. } => Some((fl.tree.path_of(id), blocks.clone())),
            _ => None,
        })
        .collect()
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.map(|e| e.expect("entry").path()).collect())
        .unwrap_or_default()
}

async fn upload_fl(h: &TestHub, token: &str, name: &str, data: Vec<u8>) -> (u16, Value) {
    h.upload("/api/flist/me/upload-flist", token, name, data)
        .await
}

/// A hub where alice uploaded the sample tree as `sample.tar.gz` (the entry `sample.flist`):
/// the hub, alice's token and the tree.
async fn hub_with_sample() -> (TestHub, String, BTreeMap<String, Member>) {
    let h = hub().await;
    let token = h.token("alice", &[]).await;
    let tree = sample_tree();
    let (status, v) = h
        .upload(
            "/api/flist/me/upload",
            &token,
            "sample.tar.gz",
            tar_gz(&tree),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    (h, token, tree)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tar_gz_upload_is_served_as_an_fl_that_extracts_to_the_source_tree() {
    let (h, token, tree) = hub_with_sample().await;

    let (fl_bytes, headers) = fetch(&h, "/alice/sample.fl").await;
    assert_eq!(&fl_bytes[..16], b"SQLite format 3\0");
    let (fl, restored) = extract(fl_bytes.clone(), "sample.fl").await;
    assert_eq!(restored, tree, "the .fl extracts to the source tree");
    assert_eq!(
        fl.codecs(),
        [Codec::Rfs].into_iter().collect(),
        "rfs blocks only"
    );
    assert_eq!(fl.metadata.routes.len(), 1);
    let route = &fl.metadata.routes[0];
    assert_eq!(
        (route.start, route.end, route.url.as_str()),
        (0, 255, format!("{}/chunks", h.base).as_str()),
        "the route is the hub's own chunk endpoint"
    );
    assert!(fl.metadata.get("backend").is_none(), "no stale backend tag");

    // Converted once: kept under <data>/fl, the second fetch is the same file.
    let cache = h.dir.path().join("data/fl");
    let kept: Vec<PathBuf> = files_in(&cache)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "fl"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let before = std::fs::metadata(&kept[0]).expect("kept").modified().ok();
    let (again, headers2) = fetch(&h, "/alice/sample.fl").await;
    assert_eq!(again, fl_bytes);
    assert_eq!(headers2.get("etag"), headers.get("etag"));
    assert_eq!(
        std::fs::metadata(&kept[0]).expect("kept").modified().ok(),
        before
    );
    assert_eq!(files_in(&cache).len(), 2, "the .fl and its description");

    // Downloads as usual: .md5, HEAD, Range, If-None-Match, links.
    let (md5, _) = fetch(&h, "/alice/sample.fl.md5").await;
    assert_eq!(
        String::from_utf8_lossy(&md5),
        format!("{}\n", hex::encode(md5::Md5::digest(&fl_bytes)))
    );
    let etag = headers.get("etag").expect("etag").clone();
    let r = h
        .client
        .get(h.url("/alice/sample.fl"))
        .header("if-none-match", etag)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 304);
    let r = h
        .client
        .get(h.url("/alice/sample.fl"))
        .header("range", "bytes=0-15")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 206);
    assert_eq!(&r.bytes().await.expect("body")[..], b"SQLite format 3\0");
    let r = h
        .client
        .head(h.url("/alice/sample.fl"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()),
        Some(fl_bytes.len().to_string().as_str())
    );
    let (status, v) = h
        .call("GET", "/api/flist/me/sample.flist/link/alias.flist", &token)
        .await;
    assert_eq!(status, 200, "{v}");
    let (through_link, _) = fetch(&h, "/alice/alias.fl").await;
    assert_eq!(through_link, fl_bytes, "a link serves its target's .fl");
    // The .flist is still what it was.
    let (flist_bytes, _) = fetch(&h, "/alice/sample.flist").await;
    let (flist, restored) = extract(flist_bytes, "sample.flist").await;
    assert_eq!(restored, tree);
    assert_eq!(flist.codecs(), [Codec::Flist].into_iter().collect());
    assert_eq!(h.get("/alice/nothing.fl").await.status(), 404);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_fl_upload_is_served_as_an_flist_and_missing_blocks_are_refused_by_id() {
    let h = hub().await;
    let token = h.token("alice", &[]).await;
    let fl_file = test_support::rfs_fixture("routed.fl");
    let data = std::fs::read(&fl_file).expect("fixture");
    let blocks = routed_blocks();
    let missing: Vec<&String> = blocks.keys().step_by(2).take(2).collect();
    put_blocks(&h, &blocks, &missing).await;

    // Refused, naming each missing block; nothing stored, nothing left behind.
    let (status, v) = upload_fl(&h, &token, "routed.fl", data.clone()).await;
    assert_eq!(status, 400, "{v}");
    let message = v["message"].as_str().expect("message");
    for id in &missing {
        assert!(message.contains(id.as_str()), "{id} not named in {message}");
    }
    assert!(
        message.contains(&format!("2 of {} blocks", blocks.len())),
        "{message}"
    );
    assert_eq!(h.get("/alice/routed.flist").await.status(), 404);
    assert!(
        files_in(h.hub().catalog().tmp_dir()).is_empty(),
        "temp files left"
    );

    // With every block present it is taken, as the entry routed.flist.
    put_blocks(&h, &blocks, &[]).await;
    let (status, v) = upload_fl(&h, &token, "routed.fl", data).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["payload"]["name"], "routed.flist");
    assert_eq!(v["payload"]["files"]["format"], "fl");
    assert_eq!(v["payload"]["files"]["chunks"], blocks.len());

    let uploaded = Flist::open(&fl_file).expect("fixture");
    let (flist_bytes, _) = fetch(&h, "/alice/routed.flist").await;
    let (flist, restored) = extract(flist_bytes, "routed.flist").await;
    assert_eq!(
        restored,
        small_tree(),
        "the .flist extracts to the source tree"
    );
    assert_eq!(flist.codecs(), [Codec::Flist].into_iter().collect());
    let same = flist_format::diff::DiffOptions {
        ignore_blocks: true,
        ignore_owner_names: true,
        ..Default::default()
    };
    let d = flist_format::diff::diff(&uploaded.tree, &flist.tree, &same);
    assert!(d.is_empty(), "same tree, modes and owners: {d:?}");
    let backend = flist.metadata.get("backend").expect("stamped");
    assert!(backend.contains(&format!("{}/chunks", h.base)), "{backend}");

    // And back: the .fl of the .fl-born entry has rfs's own block ids.
    let (fl_bytes, _) = fetch(&h, "/alice/routed.fl").await;
    let (fl, restored) = extract(fl_bytes, "routed.fl").await;
    assert_eq!(restored, small_tree());
    assert_eq!(blocks_by_path(&fl), blocks_by_path(&uploaded));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_flist_born_and_an_fl_born_entry_merge() {
    let (h, token, tree) = hub_with_sample().await;
    put_blocks(&h, &routed_blocks(), &[]).await;
    let data = std::fs::read(test_support::rfs_fixture("routed.fl")).expect("fixture");
    let (status, v) = upload_fl(&h, &token, "routed.fl", data).await;
    assert_eq!(status, 200, "{v}");

    let r = h
        .client
        .post(h.url("/api/flist/me/merge/both.flist"))
        .bearer_auth(&token)
        .json(&json!(["alice/sample.flist", "alice/routed.flist"]))
        .send()
        .await
        .expect("merge");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());

    let mut want = tree.clone();
    for (p, m) in small_tree() {
        want.entry(p).or_insert(m);
    }
    let (bytes, _) = fetch(&h, "/alice/both.flist").await;
    let (_, restored) = extract(bytes, "both.flist").await;
    assert_eq!(restored, want, "the merge holds both trees");
    let (bytes, _) = fetch(&h, "/alice/both.fl").await;
    let (_, restored) = extract(bytes, "both.fl").await;
    assert_eq!(restored, want, "and is served as .fl too");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_fl_upload_is_a_clear_400_and_leaves_nothing() {
    let h = hub().await;
    let token = h.token("alice", &[]).await;
    put_blocks(&h, &routed_blocks(), &[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: [(&str, &str); 4] = [
        ("bad-block-id", "UPDATE block SET id = x'00'"),
        ("slash-name", "UPDATE inode SET name = 'a/b' WHERE ino = 3"),
        ("no-root", "DELETE FROM inode WHERE ino = 1"),
        ("bad-route", "UPDATE route SET start = 300"),
    ];
    for (name, sql) in cases {
        let path = dir.path().join(format!("{name}.fl"));
        std::fs::copy(test_support::rfs_fixture("routed.fl"), &path).expect("copy");
        rusqlite::Connection::open(&path)
            .expect("open")
            .execute_batch(sql)
            .expect("corrupt");
        let data = std::fs::read(&path).expect("read");
        let (status, v) = upload_fl(&h, &token, &format!("{name}.fl"), data).await;
        assert_eq!(status, 400, "{name}: {v}");
        let message = v["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("{name}.flist")) && message.contains(".fl"),
            "{name}: {message}"
        );
        assert_eq!(
            h.get(&format!("/alice/{name}.flist")).await.status(),
            404,
            "{name}"
        );
    }
    // A truncated database and random bytes named .fl are refused too.
    let whole = std::fs::read(test_support::rfs_fixture("routed.fl")).expect("fixture");
    for (name, data) in [
        ("cut.fl", whole[..whole.len() / 2].to_vec()),
        ("noise.fl", test_support::sample::noise(7, 4096)),
    ] {
        let (status, v) = upload_fl(&h, &token, name, data).await;
        assert_eq!(status, 400, "{name}: {v}");
    }
    assert!(files_in(h.hub().catalog().tmp_dir()).is_empty());
    let (status, v) = h.get_json("/api/flist/alice").await;
    assert!(
        status == 404 || v.as_array().is_some_and(|a| a.is_empty()),
        "{status} {v}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn light_and_the_flist_page_list_both_formats() {
    let (h, token, _) = hub_with_sample().await;
    let (status, v) = h
        .call("GET", "/api/flist/me/sample.flist/link/alias.flist", &token)
        .await;
    assert_eq!(status, 200, "{v}");
    let (flist_bytes, _) = fetch(&h, "/alice/sample.flist").await;
    for (name, stem) in [("sample.flist", "sample"), ("alias.flist", "alias")] {
        let (status, light) = h.get_json(&format!("/api/flist/alice/{name}/light")).await;
        assert_eq!(status, 200, "{light}");
        // The fields old clients read are the .flist's, as before.
        assert_eq!(light["name"], name);
        assert_eq!(light["size"], flist_bytes.len());
        assert_eq!(
            light["md5"],
            hex::encode(md5::Md5::digest(&flist_bytes)),
            "{light}"
        );
        let formats = light["formats"].as_array().expect("formats");
        let listed: Vec<(&str, &str, &str)> = formats
            .iter()
            .map(|f| {
                (
                    f["format"].as_str().unwrap_or_default(),
                    f["href"].as_str().unwrap_or_default(),
                    f["md5_href"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        let (flist, fl) = (format!("/alice/{stem}.flist"), format!("/alice/{stem}.fl"));
        let (flist_md5, fl_md5) = (format!("{flist}.md5"), format!("{fl}.md5"));
        assert_eq!(
            listed,
            [
                ("flist", flist.as_str(), flist_md5.as_str()),
                ("fl", fl.as_str(), fl_md5.as_str())
            ]
        );
        // Every listed link downloads, and each .md5 is its file's.
        for f in formats {
            let (body, _) = fetch(&h, f["href"].as_str().expect("href")).await;
            let (md5, _) = fetch(&h, f["md5_href"].as_str().expect("md5_href")).await;
            assert_eq!(
                String::from_utf8_lossy(&md5),
                format!("{}\n", hex::encode(md5::Md5::digest(&body)))
            );
        }
    }
    // The flist page offers both downloads.
    let r = h.get("/alice/sample.flist.md").await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.expect("page").replace("&#x2f;", "/");
    assert!(html.contains("href=\"/alice/sample.flist\""), "{html}");
    assert!(html.contains("href=\"/alice/sample.fl\""), "{html}");
    assert!(html.contains("Download .fl"), "{html}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_zdb_endpoint_on_a_served_fl_routes_to_it_alone() {
    let h = hub_with(|c| c.zdb_listen = Some("127.0.0.1:0".parse().expect("addr"))).await;
    let zdb = h
        .server
        .state
        .config
        .zdb_listen
        .expect("the endpoint is bound");
    let token = h.token("alice", &[]).await;
    let tree = sample_tree();
    let (status, v) = h
        .upload(
            "/api/flist/me/upload",
            &token,
            "sample.tar.gz",
            tar_gz(&tree),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (fl_bytes, _) = fetch(&h, "/alice/sample.fl").await;
    let (fl, restored) = extract(fl_bytes, "sample.fl").await;
    // One route, the 0-db endpoint (rfs v2.0.7 knows no http store and refuses an .fl
    // naming one), read with nothing but the .fl: the extraction went through it.
    let routes: Vec<(u8, u8, String)> = fl
        .metadata
        .routes
        .iter()
        .map(|r| (r.start, r.end, r.url.clone()))
        .collect();
    assert_eq!(
        routes,
        [(0, 255, format!("zdb://127.0.0.1:{}/default", zdb.port()))]
    );
    assert_eq!(restored, tree);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_whose_chunks_the_hub_lacks_is_a_409_naming_the_chunk() {
    let h = hub().await;
    // The reference flist, as imported from another hub: its chunks live in its own 0-db;
    // the hub's store has all but one.
    let skipped = std::fs::read_dir(test_support::fixture("chunks"))
        .expect("chunks")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .min()
        .expect("a chunk");
    h.put_fixture("alice", "imported.flist", "fixture.flist")
        .await;
    h.load_fixture_chunks(Some(&skipped)).await;
    for path in ["/alice/imported.fl", "/alice/imported.fl.md5"] {
        for _ in 0..2 {
            let r = h.get(path).await;
            assert_eq!(r.status(), 409, "{path}");
            let body = r.text().await.expect("body").replace("&#x27;", "'");
            assert!(body.contains(&skipped), "{path}: {body}");
            assert!(body.contains("not all in the hub's store"), "{body}");
            assert!(body.contains("zflist convert"), "{body}");
        }
    }
    // Nothing half-made is kept; the .flist itself still downloads.
    let cache = h.dir.path().join("data/fl");
    assert!(
        files_in(&cache)
            .iter()
            .all(|p| !p.extension().is_some_and(|e| e == "fl" || e == "json")),
        "{:?}",
        files_in(&cache)
    );
    assert_eq!(h.get("/alice/imported.flist").await.status(), 200);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_delete_and_replace_move_both_formats_and_gc_prunes_the_fl_cache() {
    let (h, token, tree) = hub_with_sample().await;
    let (fl_bytes, _) = fetch(&h, "/alice/sample.fl").await;
    let cache = h.dir.path().join("data/fl");
    let cached = || -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = files_in(&cache)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "fl"))
            .collect();
        v.sort();
        v
    };
    assert_eq!(cached().len(), 1);

    // A rename moves both formats: the same .fl under the new name, none under the old.
    let (status, v) = h
        .call(
            "GET",
            "/api/flist/me/sample.flist/rename/renamed.flist",
            &token,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (renamed, _) = fetch(&h, "/alice/renamed.fl").await;
    assert_eq!(renamed, fl_bytes);
    assert_eq!(h.get("/alice/sample.fl").await.status(), 404);

    // Promoted into another repository: its .fl is served there too (same file).
    let bob = h.token("bob", &[]).await;
    let (status, v) = h
        .call(
            "GET",
            "/api/flist/me/promote/alice/renamed.flist/tool.flist",
            &bob,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (promoted, _) = fetch(&h, "/bob/tool.fl").await;
    assert_eq!(promoted, fl_bytes);
    assert_eq!(cached().len(), 1, "one .fl per flist file");

    // Replacing alice's entry and deleting bob's leave the old .fl unreferenced.
    let mut other = tree.clone();
    other.insert(
        "extra.txt".into(),
        Member::File(b"another version\n".to_vec()),
    );
    let (status, v) = h
        .upload(
            "/api/flist/me/upload",
            &token,
            "renamed.tar.gz",
            tar_gz(&other),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (new_fl, _) = fetch(&h, "/alice/renamed.fl").await;
    assert_ne!(
        new_fl, fl_bytes,
        "the replaced entry's .fl is the new file's"
    );
    let (_, restored) = extract(new_fl, "renamed.fl").await;
    assert_eq!(restored, other);
    assert_eq!(cached().len(), 2);
    let (status, v) = h.call("DELETE", "/api/flist/me/tool.flist", &bob).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(h.get("/bob/tool.fl").await.status(), 404);

    // gc: the first flist file goes, and its .fl with it; the live entry's .fl stays.
    let hub = h.hub();
    let before = cached();
    let dry = hub_http::formats::prune_cache(&hub, &[], true).expect("dry run");
    assert!(dry.files.is_empty(), "the source is still on disk: {dry:?}");
    let rep = hub
        .gc(hub_repo::GcOptions {
            grace: std::time::Duration::ZERO,
            dry_run: false,
        })
        .expect("gc");
    assert_eq!(rep.unreferenced.len(), 1, "{rep:?}");
    let pruned = hub_http::formats::prune_cache(&hub, &[], false).expect("prune");
    assert_eq!(
        pruned.files.len(),
        2,
        "the .fl and its description: {pruned:?}"
    );
    assert!(pruned
        .files
        .iter()
        .all(|f| f.starts_with(&format!("fl/{}-", rep.unreferenced[0]))));
    let after = cached();
    assert_eq!(after.len(), 1);
    assert!(before.contains(&after[0]));
    let (again, _) = fetch(&h, "/alice/renamed.fl").await;
    let (_, restored) = extract(again, "renamed.fl").await;
    assert_eq!(restored, other, "the live entry's .fl is still served");
    assert_eq!(
        hub_http::formats::prune_cache(&hub, &[], false).expect("prune"),
        hub_http::formats::Pruned::default(),
        "nothing left to prune"
    );
    h.stop().await;
}

/// The entry names of `repo`'s listing (tags included), sorted.
async fn listed(h: &TestHub, repo: &str) -> Vec<String> {
    let (status, v) = h.get_json(&format!("/api/flist/{repo}")).await;
    assert_eq!(status, 200, "{v}");
    let mut names: Vec<String> = v
        .as_array()
        .expect("a listing")
        .iter()
        .filter_map(|e| e["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

/// A `.fl` name on a write route is its entry's `.flist` (the catalog keeps one entry per
/// flist, served in both formats): rename, link, promote, crosslink, tag, merge and delete
/// given `x.fl` act on `x.flist`, never on a new `x.fl.flist`; reads by `.fl` name find it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_routes_given_fl_names_act_on_the_flist_entry() {
    let (h, token, tree) = hub_with_sample().await;
    let bob = h.token("bob", &[]).await;
    for (who, path) in [
        (&token, "/api/flist/me/sample.fl/rename/moved.fl"),
        (&token, "/api/flist/me/moved.fl/link/lnk.fl"),
        (&bob, "/api/flist/me/promote/alice/moved.fl/tool.fl"),
        (&bob, "/api/flist/me/xl.fl/crosslink/alice/moved.fl"),
        (&token, "/api/flist/me/v1/tagged.fl/tag/alice/moved.fl"),
    ] {
        let (status, v) = h.call("GET", path, who).await;
        assert_eq!(status, 200, "{path}: {v}");
    }
    assert_eq!(
        listed(&h, "alice").await,
        ["lnk.flist", "moved.flist", "v1"]
    );
    assert_eq!(listed(&h, "bob").await, ["tool.flist", "xl.flist"]);
    let (status, v) = h.get_json("/api/flist/alice/tags/v1").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v[0]["name"].as_str(), v[0]["target"].as_str()),
        (Some("tagged.flist"), Some("alice/moved.flist")),
        "{v}"
    );

    // Reads by .fl name find the entry; every name serves the tree in both formats.
    for path in [
        "/api/flist/alice/moved.fl/light",
        "/api/flist/alice/lnk.fl/light",
        "/api/flist/bob/tool.fl/light",
    ] {
        let (status, v) = h.get_json(path).await;
        assert_eq!(status, 200, "{path}: {v}");
        assert!(
            v["name"].as_str().is_some_and(|n| n.ends_with(".flist")),
            "{path}: {v}"
        );
    }
    for path in [
        "/alice/moved.fl",
        "/alice/lnk.fl",
        "/alice/tags/v1/tagged.fl",
        "/bob/tool.fl",
        "/bob/xl.fl",
        "/bob/xl.flist",
    ] {
        let (bytes, _) = fetch(&h, path).await;
        let name = path.rsplit('/').next().unwrap_or(path);
        assert_eq!(extract(bytes, name).await.1, tree, "{path}");
    }

    // Merge: .fl sources and target.
    let r = h
        .client
        .post(h.url("/api/flist/me/merge/both.fl"))
        .bearer_auth(&token)
        .json(&json!(["alice/moved.fl", "bob/tool.fl"]))
        .send()
        .await
        .expect("merge");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    assert_eq!(
        listed(&h, "alice").await,
        ["both.flist", "lnk.flist", "moved.flist", "v1"]
    );
    let (bytes, _) = fetch(&h, "/alice/both.fl").await;
    assert_eq!(extract(bytes, "both.fl").await.1, tree);

    // Untag and delete by .fl name: the entry goes, in both formats.
    let (status, v) = h
        .call(
            "DELETE",
            "/api/flist/me/v1/tagged.fl/tag/alice/moved.fl",
            &token,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(h.get("/alice/tags/v1/tagged.fl").await.status(), 404);
    let (status, v) = h.call("DELETE", "/api/flist/me/both.fl", &token).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(h.get("/alice/both.fl").await.status(), 404);
    assert_eq!(h.get("/alice/both.flist").await.status(), 404);
    let (status, v) = h.call("DELETE", "/api/flist/me/both.fl", &token).await;
    assert_eq!(status, 404, "no entry in either format: {v}");
    h.stop().await;
}
