//! The hub's write paths (`upload` of an archive, `upload-flist`) with its chunk store on a
//! real 0-db server (v2.0.7 from `../shared/vendor/`, as in production), including the
//! server going away and coming back on the same data.

mod common;

use common::TestHub;
use test_support::{NsConfig, ZdbServer};

/// A real 0-db with the hub's namespace `hub` (password `hubpw`, public read-only).
fn zdb() -> ZdbServer {
    let server = ZdbServer::start();
    server.namespace(
        "hub",
        NsConfig {
            password: Some("hubpw".into()),
            public: true,
            ..NsConfig::default()
        },
    );
    server
}

#[tokio::test]
async fn upload_flist_checks_chunks_in_zdb() {
    let server = zdb();
    let url = server.url("hub", Some("hubpw"));
    let t = TestHub::start_with(move |c| c.store = Some(url)).await;
    let alice = t.token("alice", &[]).await;
    let data = std::fs::read(test_support::fixture("fixture.flist")).expect("fixture");

    // One chunk missing in the 0-db: refused, nothing published.
    let skip = std::fs::read_dir(test_support::fixture("chunks"))
        .expect("dir")
        .next()
        .expect("one")
        .expect("e")
        .file_name()
        .to_string_lossy()
        .to_string();
    let loaded = t.load_fixture_chunks(Some(&skip)).await;
    assert_eq!(server.entries("hub"), loaded);
    let (s, v) = t
        .upload(
            "/api/flist/me/upload-flist",
            &alice,
            "fixture.flist",
            data.clone(),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let msg = v["message"].as_str().expect("message");
    assert!(msg.starts_with("1 of 274 chunks are missing"), "{msg}");
    assert!(msg.contains(&skip), "names the missing chunk: {msg}");
    assert_eq!(t.get_json("/api/flist/alice/fixture.flist").await.0, 404);

    // All chunks there (loading again stores only the missing one).
    t.load_fixture_chunks(None).await;
    assert_eq!(server.entries("hub"), loaded + 1);
    let (s, v) = t
        .upload("/api/flist/me/upload-flist", &alice, "fixture.flist", data)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["payload"]["files"]["chunks"], 274);
    assert_eq!(v["payload"]["files"]["missing"], 0);
    t.stop().await;
}

#[tokio::test]
async fn upload_archive_writes_chunks_to_zdb_and_survives_a_restart() {
    let mut server = zdb();
    let url = server.url("hub", Some("hubpw"));
    let t = TestHub::start_with(move |c| c.store = Some(url)).await;
    let alice = t.token("alice", &[]).await;
    let archive = std::fs::read(test_support::fixture("fixture-tree.tar.gz")).expect("fixture");
    let (s, v) = t
        .upload(
            "/api/flist/me/upload",
            &alice,
            "fixture-tree.tar.gz",
            archive,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["payload"]["name"], "fixture-tree.flist");
    let stored = server.entries("hub");
    assert!(stored > 0, "no chunk reached the 0-db");

    // The flist the hub built references only chunks that are in the 0-db: uploading it
    // back through upload-flist (which checks every chunk) succeeds.
    let built = t
        .get("/alice/fixture-tree.flist")
        .await
        .bytes()
        .await
        .expect("download")
        .to_vec();
    let (s, v) = t
        .upload(
            "/api/flist/me/upload-flist",
            &alice,
            "again.flist",
            built.clone(),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["payload"]["files"]["missing"], 0);

    // The 0-db goes away: writes are 503, nothing published.
    server.kill();
    let (s, v) = t
        .upload(
            "/api/flist/me/upload-flist",
            &alice,
            "while-down.flist",
            built.clone(),
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (503, Some("error")), "{v}");
    assert_eq!(t.get_json("/api/flist/alice/while-down.flist").await.0, 404);

    // Back on the same data: the chunks are still there, the hub reconnects.
    server.restart();
    assert_eq!(server.entries("hub"), stored);
    let (s, v) = t
        .upload(
            "/api/flist/me/upload-flist",
            &alice,
            "after-restart.flist",
            built,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["payload"]["files"]["missing"], 0);
    t.stop().await;
}
