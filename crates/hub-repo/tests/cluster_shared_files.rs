//! Flist files shared by the replicas of a cluster through a real object store (SeaweedFS's
//! S3 gateway) beside a PostgreSQL catalog (issue 25): any replica serves a file another
//! stored, `gc` collects the shared copies, a file removed from the store between upload and
//! record is put back, and a store that is down refuses writes without recording anything.
//! The `cluster` group of `cargo xtask test`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use flist_store::BlockingBlobs;
use hub_repo::{shared_name, Actor, FlistInfo, GcOptions, Hub};
use test_support::postgres::Postgres;
use test_support::seaweed::SeaweedServer;

fn bucket(what: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A replica: its own data directory, the shared catalog and store.
fn replica(catalog: &str, store: &str) -> (tempfile::TempDir, Hub) {
    let dir = tempfile::tempdir().expect("data dir");
    let hub = Hub::open_on(dir.path(), Some(catalog)).expect("open");
    hub.share_files(BlockingBlobs::open(store).expect("store"))
        .expect("share");
    assert!(hub.shared_files().is_some());
    (dir, hub)
}

fn put(hub: &Hub, name: &str, content: &[u8]) -> String {
    let staged = hub.catalog().stage_reader(content).expect("stage");
    let sha = staged.sha256.clone();
    hub.catalog()
        .put_flist(
            &Actor::new("alice", vec![]),
            "alice",
            name,
            staged,
            FlistInfo::default(),
        )
        .expect("put");
    sha
}

fn fixture_bytes() -> Vec<u8> {
    std::fs::read(test_support::fixture("merge-a.flist")).expect("fixture")
}

#[test]
fn a_replica_serves_the_file_another_stored() {
    let catalog = Postgres::shared().create_database("files");
    let store = SeaweedServer::shared().url(&bucket("files"));
    let (_d1, h1) = replica(&catalog, &store);
    let (d2, h2) = replica(&catalog, &store);
    let content = fixture_bytes();
    let sha = put(&h1, "a.flist", &content);

    // In the shared store under its content address, before h2 ever saw it.
    let blobs = BlockingBlobs::open(&store).expect("store");
    assert_eq!(
        blobs.size(&shared_name(&sha)).expect("size"),
        Some(content.len() as u64)
    );
    let local = d2.path().join("flists").join(&sha[..2]).join(&sha);
    assert!(!local.exists());

    // h2 resolves the entry and reads the file: fetched once, whole.
    let r = h2.catalog().resolve("alice", "a.flist").expect("resolve");
    assert_eq!(r.sha256, sha);
    let path = h2.catalog().blob_path(&sha);
    assert_eq!(path, local);
    assert_eq!(std::fs::read(&path).expect("read"), content);
    // What reads the file on h2 works: the path index and the integrity check.
    h2.paths().ensure(&sha).expect("index on h2");
    let report = h2.integrity_check().expect("check");
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    // A file stored nowhere is not found, and nothing is left behind trying.
    let none = "ab".repeat(32);
    assert_eq!(h2.catalog().flist_file(&none).expect("lookup"), None);
    assert!(!d2.path().join("flists/ab").join(&none).exists());
}

#[test]
fn gc_collects_the_shared_copies() {
    let catalog = Postgres::shared().create_database("filesgc");
    let store = SeaweedServer::shared().url(&bucket("filesgc"));
    let (_d1, h1) = replica(&catalog, &store);
    let (_d2, h2) = replica(&catalog, &store);
    let blobs = BlockingBlobs::open(&store).expect("store");
    let old = put(&h1, "a.flist", b"first version");
    let new = put(&h1, "a.flist", b"second version");
    // A file a killed replica uploaded and never recorded.
    let orphan = "cd".repeat(32);
    blobs
        .put(&shared_name(&orphan), bytes::Bytes::from_static(b"orphan"))
        .expect("plant");

    // The default grace keeps the young orphan; a dry run removes nothing.
    let dry = h2
        .gc(GcOptions {
            dry_run: true,
            ..GcOptions::default()
        })
        .expect("dry run");
    assert_eq!(dry.unreferenced, vec![old.clone()]);
    assert_eq!(dry.kept_young, 1, "{dry:?}");
    assert!(blobs.size(&shared_name(&old)).expect("size").is_some());

    // h2 never had a copy of either file: gc works on the shared store.
    let rep = h2
        .gc(GcOptions {
            grace: Duration::ZERO,
            dry_run: false,
        })
        .expect("gc");
    assert_eq!(rep.unreferenced, vec![old.clone()]);
    assert_eq!(rep.unrecorded.len(), 1, "{rep:?}");
    assert!(
        rep.unrecorded[0].ends_with(&shared_name(&orphan)),
        "{rep:?}"
    );
    assert_eq!(blobs.size(&shared_name(&old)).expect("size"), None);
    assert_eq!(blobs.size(&shared_name(&orphan)).expect("size"), None);
    assert_eq!(
        blobs.size(&shared_name(&new)).expect("size"),
        Some(b"second version".len() as u64)
    );
    // The referenced file still serves from h2.
    assert_eq!(
        std::fs::read(h2.catalog().blob_path(&new)).expect("read"),
        b"second version"
    );
}

/// `gc` on another replica may remove a file between its upload (outside the write lock)
/// and the transaction recording it: the transaction checks and puts it back.
#[test]
fn a_file_removed_from_the_store_before_it_is_recorded_is_put_back() {
    let catalog = Postgres::shared().create_database("filesback");
    let store = SeaweedServer::shared().url(&bucket("filesback"));
    let (_d1, h1) = replica(&catalog, &store);
    let (_d2, h2) = replica(&catalog, &store);
    let blobs = BlockingBlobs::open(&store).expect("store");
    let sha = put(&h1, "a.flist", b"same content");
    assert!(blobs.delete(&shared_name(&sha)).expect("delete"));
    // Same content again: the upload finds... nothing, and the record puts it back.
    put(&h1, "b.flist", b"same content");
    assert!(blobs.size(&shared_name(&sha)).expect("size").is_some());
    assert_eq!(
        std::fs::read(h2.catalog().blob_path(&sha)).expect("read on h2"),
        b"same content"
    );
}

/// The object store down: a write fails as "unavailable" (503 with Retry-After at the HTTP
/// layer) and records nothing; files already cached keep serving; once the store is back the
/// same replica writes again without being reopened.
#[test]
fn a_store_that_is_down_fails_writes_and_records_nothing() {
    let mut s3 = SeaweedServer::start();
    let catalog = Postgres::shared().create_database("filesdown");
    let store = s3.url(&bucket("filesdown"));
    let (_d1, h1) = replica(&catalog, &store);
    let cached = put(&h1, "a.flist", b"stored before");
    s3.kill();

    let staged = h1
        .catalog()
        .stage_reader(&b"while down"[..])
        .expect("stage");
    let err = h1
        .catalog()
        .put_flist(
            &Actor::new("alice", vec![]),
            "alice",
            "b.flist",
            staged,
            FlistInfo::default(),
        )
        .expect_err("the store is down");
    assert!(err.is_unavailable(), "{err}");
    assert!(
        !err.to_string().contains(test_support::seaweed::SECRET_KEY),
        "{err}"
    );
    assert!(h1.catalog().resolve("alice", "b.flist").is_err());
    // Reads served by the local copy go on.
    assert_eq!(
        std::fs::read(h1.catalog().blob_path(&cached)).expect("cached"),
        b"stored before"
    );

    s3.restart();
    put(&h1, "b.flist", b"while down");
    let r = h1.catalog().resolve("alice", "b.flist").expect("stored");
    let blobs = BlockingBlobs::open(&store).expect("store");
    assert!(blobs.size(&shared_name(&r.sha256)).expect("size").is_some());
}

/// A replica's copies are a cache: trimmed to a size, least recently used first, and a
/// dropped copy is fetched again on use.
#[test]
fn the_local_copies_are_a_bounded_cache() {
    let catalog = Postgres::shared().create_database("filescache");
    let store = SeaweedServer::shared().url(&bucket("filescache"));
    let (_d1, h1) = replica(&catalog, &store);
    let (d2, h2) = replica(&catalog, &store);
    let shas: Vec<String> = (0..3)
        .map(|i| put(&h1, &format!("f{i}.flist"), &vec![b'a' + i as u8; 1000]))
        .collect();
    let local = |sha: &str| d2.path().join("flists").join(&sha[..2]).join(sha);
    for (i, sha) in shas.iter().enumerate() {
        h2.catalog().blob_path(sha);
        // Fetched in this order, oldest first.
        let t = std::time::SystemTime::now() - Duration::from_secs(600 - 60 * i as u64);
        std::fs::File::options()
            .write(true)
            .open(local(sha))
            .and_then(|f| f.set_modified(t))
            .expect("age");
    }
    // Under the bound: nothing to do.
    assert_eq!(h2.trim_files_cache(3000).expect("trim"), (0, 0, 3000));
    // f0 was read again since: f1 is now the least recently used.
    h2.catalog().blob_path(&shas[0]);
    assert_eq!(h2.trim_files_cache(2000).expect("trim"), (1, 1000, 2000));
    assert!(!local(&shas[1]).exists());
    assert!(local(&shas[0]).exists() && local(&shas[2]).exists());
    // A dropped copy comes back on use.
    assert_eq!(
        std::fs::read(h2.catalog().blob_path(&shas[1])).expect("read"),
        vec![b'b'; 1000]
    );
    // h1's own copies go the same way: every one is in the shared store.
    assert_eq!(h1.trim_files_cache(0).expect("trim").0, 3);
    assert_eq!(
        std::fs::read(h1.catalog().blob_path(&shas[2])).expect("read"),
        vec![b'c'; 1000]
    );
}
