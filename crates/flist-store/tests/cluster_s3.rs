//! The S3 store (`s3://`) and the named-blob facade against a real SeaweedFS.
//! (`cluster` test group: `cargo xtask test cluster`.)

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flist_store::{
    open_blobs, open_url_with, BlobStore, BlockingBlobs, BlockingStore, OpenOptions, SetOutcome,
    Store, StoreError, StoreUrl,
};
use test_support::sample::noise;
use test_support::seaweed::{ACCESS_KEY, SECRET_KEY};
use test_support::SeaweedServer;

fn keys(seed: u64, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| noise(seed * 100_000 + i as u64, 16))
        .collect()
}

/// A bucket name no other test uses.
fn bucket(what: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn open(url: &str) -> Arc<dyn Store> {
    flist_store::open(url).await.unwrap()
}

/// No error text or debug output shows the secret.
fn assert_no_secret(e: &StoreError) {
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains(SECRET_KEY), "secret leaked: {shown}");
}

#[tokio::test]
async fn one_key_round_trip_and_outcomes() {
    let s3 = SeaweedServer::shared();
    // A bucket that does not exist yet: reads see nothing, the first write creates it.
    let store = open(&s3.url(&bucket("one"))).await;
    assert!(store.is_writable());
    assert_eq!(store.get(b"\x00\x01").await.unwrap(), None);
    assert!(!store.exists(b"\x00\x01").await.unwrap());
    let v = Bytes::from(noise(1, 70_000));
    assert_eq!(
        store.set(b"\x00\x01", v.clone()).await.unwrap(),
        SetOutcome::Written
    );
    assert_eq!(
        store.set(b"\x00\x01", v.clone()).await.unwrap(),
        SetOutcome::AlreadyPresent
    );
    assert_eq!(store.get(b"\x00\x01").await.unwrap(), Some(v.clone()));
    assert!(store.exists(b"\x00\x01").await.unwrap());
    // empty values are values
    assert_eq!(
        store.set(b"\xff", Bytes::new()).await.unwrap(),
        SetOutcome::Written
    );
    assert_eq!(store.get(b"\xff").await.unwrap(), Some(Bytes::new()));
    // a required key that is absent names the store and the key
    let e = store.get_required(b"\xab\xcd").await.unwrap_err();
    assert!(
        matches!(e, StoreError::NotFound { ref key, .. } if key == "abcd"),
        "{e}"
    );
    assert!(e.to_string().contains("s3://"), "{e}");
    assert_no_secret(&e);
    // keys the store cannot hold
    for bad in [Vec::new(), vec![7u8; 256]] {
        let e = store.set(&bad, Bytes::from_static(b"x")).await.unwrap_err();
        assert!(matches!(e, StoreError::InvalidKey { .. }), "{e}");
    }
}

#[tokio::test]
async fn batches_keep_order_and_report_missing_keys() {
    let s3 = SeaweedServer::shared();
    let store = open(&s3.url(&bucket("batch"))).await;
    let ks = keys(2, 600);
    let items: Vec<(Vec<u8>, Bytes)> = ks
        .iter()
        .enumerate()
        .map(|(i, k)| {
            (
                k.clone(),
                Bytes::from(noise(i as u64, 1 + (i * 997) % 9000)),
            )
        })
        .collect();
    // Half of them first.
    let (first, _) = items.split_at(300);
    let out = store.set_many(first).await.unwrap();
    assert!(out.iter().all(|o| *o == SetOutcome::Written));
    // exists_many: in order, present and absent mixed
    let present = store.exists_many(&ks).await.unwrap();
    assert_eq!(present.len(), 600);
    assert!(present[..300].iter().all(|p| *p) && present[300..].iter().all(|p| !*p));
    // set_many of all: the first half is already there
    let out = store.set_many(&items).await.unwrap();
    assert!(out[..300].iter().all(|o| *o == SetOutcome::AlreadyPresent));
    assert!(out[300..].iter().all(|o| *o == SetOutcome::Written));
    // get_many: in order, with absent keys as None
    let mut wanted = ks.clone();
    wanted.insert(17, b"absent-key".to_vec());
    wanted.push(b"another-absent".to_vec());
    let got = store.get_many(&wanted).await.unwrap();
    assert_eq!(got.len(), wanted.len());
    assert_eq!(got[17], None);
    assert_eq!(got[601], None);
    let values: Vec<Option<Bytes>> = got
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != 17 && *i != 601)
        .map(|(_, v)| v)
        .collect();
    for ((_, v), got) in items.iter().zip(values) {
        assert_eq!(got.as_ref(), Some(v));
    }
    let e = store.get_many_required(&wanted).await.unwrap_err();
    assert!(
        matches!(&e, StoreError::NotFound { key, .. } if key == &hex::encode(b"absent-key")),
        "{e}"
    );
    // The synchronous facade with several batches in flight, as the converters use it.
    let blocking = BlockingStore::new(store.clone(), tokio::runtime::Handle::current());
    let pending: Vec<_> = ks
        .chunks(100)
        .map(|c| blocking.start_get_many(c.to_vec()))
        .collect();
    let counts = tokio::task::spawn_blocking(move || {
        pending
            .into_iter()
            .map(|p| p.wait().unwrap().iter().filter(|v| v.is_some()).count())
            .sum::<usize>()
    })
    .await
    .unwrap();
    assert_eq!(counts, 600);
}

#[tokio::test]
async fn big_values_go_up_in_parts() {
    let s3 = SeaweedServer::shared();
    // Through a recording proxy, to see the multipart requests on the wire.
    let tap = test_support::tap::Tap::start(s3.port());
    let url = format!(
        "s3://{ACCESS_KEY}:{SECRET_KEY}@127.0.0.1:{}/{}?region=us-east-1",
        tap.port(),
        bucket("big")
    );
    let store = open(&url).await;
    let big = Bytes::from(noise(9, 40 * 1024 * 1024 + 123));
    assert_eq!(
        store.set(b"\x42\x42", big.clone()).await.unwrap(),
        SetOutcome::Written
    );
    assert!(
        tap.sent_contains(b"?uploads"),
        "no multipart upload was started"
    );
    assert!(
        tap.sent_contains(b"partNumber=5"),
        "expected 5 parts of 8 MiB"
    );
    assert!(
        !tap.sent_contains(SECRET_KEY.as_bytes()),
        "secret on the wire"
    );
    assert_eq!(
        store.set(b"\x42\x42", big.clone()).await.unwrap(),
        SetOutcome::AlreadyPresent
    );
    let back = store.get(b"\x42\x42").await.unwrap().unwrap();
    assert!(back == big, "40 MiB value differs after the round trip");
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_clear_errors_without_the_secret() {
    let s3 = SeaweedServer::shared();
    let name = bucket("auth");
    let good = open(&s3.url(&name)).await;
    good.set(b"\x01", Bytes::from_static(b"v")).await.unwrap();

    let wrong = open(&format!(
        "s3://{ACCESS_KEY}:not-the-{SECRET_KEY}@127.0.0.1:{}/{name}",
        s3.port()
    ))
    .await;
    for e in [
        wrong.get(b"\x01").await.unwrap_err(),
        wrong
            .set(b"\x02", Bytes::from_static(b"v"))
            .await
            .unwrap_err(),
        wrong.exists_many(&[b"\x01".to_vec()]).await.unwrap_err(),
    ] {
        assert!(matches!(e, StoreError::Auth { .. }), "{e}");
        assert_no_secret(&e);
        assert!(
            !e.to_string().contains(&format!("not-the-{SECRET_KEY}")),
            "{e}"
        );
    }
    let unknown = open(&format!(
        "s3://nobody:whatever@127.0.0.1:{}/{name}",
        s3.port()
    ))
    .await;
    let e = unknown.get(b"\x01").await.unwrap_err();
    assert!(matches!(e, StoreError::Auth { .. }), "{e}");
    assert!(!e.to_string().contains("whatever"), "{e}");
    // Anonymous requests on a server that wants signatures.
    let anon = open(&s3.url_without_credentials(&name)).await;
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        let e = anon
            .set(b"\x03", Bytes::from_static(b"v"))
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Auth { .. }), "{e}");
    }
}

/// Credentials from `AWS_*` variables, when the URL has none. Runs in a child process so
/// the variables do not reach the other tests.
#[tokio::test]
async fn credentials_come_from_the_environment() {
    if std::env::var_os("FLIST_S3_ENV_CHILD").is_some() {
        return;
    }
    let s3 = SeaweedServer::shared();
    let exe = std::env::current_exe().unwrap();
    let out = tokio::process::Command::new(exe)
        .args(["--exact", "env_child", "--nocapture", "--include-ignored"])
        .env(
            "FLIST_S3_ENV_CHILD",
            s3.url_without_credentials(&bucket("env")),
        )
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", "us-east-1")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("1 passed"), "{text}");
}

#[tokio::test]
#[ignore = "run by credentials_come_from_the_environment in a child process"]
async fn env_child() {
    let Some(url) = std::env::var_os("FLIST_S3_ENV_CHILD") else {
        return;
    };
    let url = url.to_string_lossy().into_owned();
    assert!(!url.contains(SECRET_KEY));
    let store = open(&url).await;
    assert!(!store.to_string().contains(SECRET_KEY));
    assert_eq!(
        store
            .set(b"\x0e", Bytes::from_static(b"env"))
            .await
            .unwrap(),
        SetOutcome::Written
    );
    assert_eq!(
        store.get(b"\x0e").await.unwrap(),
        Some(Bytes::from_static(b"env"))
    );
}

#[tokio::test]
async fn a_server_that_goes_down_gives_clear_errors_then_works_again() {
    let mut s3 = SeaweedServer::start();
    let opts = OpenOptions {
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        ..OpenOptions::default()
    };
    let store = open_url_with(&StoreUrl::parse(&s3.url("downtime")).unwrap(), &opts)
        .await
        .unwrap();
    let ks = keys(5, 50);
    let items: Vec<(Vec<u8>, Bytes)> = ks
        .iter()
        .map(|k| (k.clone(), Bytes::from(noise(k[0] as u64, 1000))))
        .collect();
    store.set_many(&items).await.unwrap();

    s3.kill();
    let started = Instant::now();
    for e in [
        store.get_many(&ks).await.unwrap_err(),
        store.exists_many(&ks).await.unwrap_err(),
        store
            .set(b"\x99", Bytes::from_static(b"while down"))
            .await
            .unwrap_err(),
    ] {
        assert!(e.is_transient(), "not a connection error: {e}");
        assert!(e.to_string().contains("127.0.0.1"), "names the store: {e}");
        assert_no_secret(&e);
    }
    // Bounded retries: three operations fail within seconds, not minutes.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );

    // The same store object works again once the server is back, with its data.
    s3.restart();
    let got = store.get_many(&ks).await.unwrap();
    for ((_, v), g) in items.iter().zip(got) {
        assert_eq!(g.as_ref(), Some(v));
    }
    assert_eq!(
        store
            .set(b"\x99", Bytes::from_static(b"after"))
            .await
            .unwrap(),
        SetOutcome::Written
    );
}

#[tokio::test]
async fn a_router_mixes_s3_with_other_stores() {
    let s3 = SeaweedServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "00-7f={},80-ff=dir://{}",
        s3.url(&bucket("route")),
        dir.path().display()
    );
    let store = open(&url).await;
    assert!(!store.to_string().contains(SECRET_KEY), "{store}");
    let low = b"\x10low".to_vec();
    let high = b"\x90high".to_vec();
    store
        .set_many(&[
            (low.clone(), Bytes::from_static(b"L")),
            (high.clone(), Bytes::from_static(b"H")),
        ])
        .await
        .unwrap();
    assert!(dir.path().join("90").join(hex::encode(&high)).is_file());
    assert!(!dir.path().join("10").exists());
    assert_eq!(
        store.get_many(&[low, high]).await.unwrap(),
        vec![
            Some(Bytes::from_static(b"L")),
            Some(Bytes::from_static(b"H"))
        ]
    );
}

/// The same blob contract on S3 and on a directory.
async fn blob_contract(blobs: Arc<dyn BlobStore>, scratch: &std::path::Path) {
    let small = Bytes::from(noise(3, 5000));
    let name = "flists/ab/ab0123";
    assert_eq!(blobs.size(name).await.unwrap(), None);
    assert_eq!(blobs.get(name).await.unwrap(), None);
    assert_eq!(blobs.list("flists").await.unwrap(), vec![]);
    assert_eq!(
        blobs.put(name, small.clone()).await.unwrap(),
        SetOutcome::Written
    );
    assert_eq!(
        blobs.put(name, Bytes::from_static(b"other")).await.unwrap(),
        SetOutcome::AlreadyPresent
    );
    assert_eq!(blobs.get(name).await.unwrap(), Some(small.clone()));
    assert_eq!(blobs.size(name).await.unwrap(), Some(5000));

    // A file larger than one part, streamed up and down.
    let src = scratch.join("big.bin");
    let big = noise(4, 20 * 1024 * 1024 + 7);
    std::fs::write(&src, &big).unwrap();
    let big_name = "flists/cd/cd4567";
    assert_eq!(
        blobs.put_file(big_name, &src).await.unwrap(),
        SetOutcome::Written
    );
    assert_eq!(
        blobs.put_file(big_name, &src).await.unwrap(),
        SetOutcome::AlreadyPresent
    );
    let dest = scratch.join("down.bin");
    assert_eq!(
        blobs.get_to_file(big_name, &dest).await.unwrap(),
        Some(big.len() as u64)
    );
    assert!(std::fs::read(&dest).unwrap() == big, "download differs");
    // An absent blob leaves the destination alone.
    assert_eq!(
        blobs.get_to_file("flists/ee/none", &dest).await.unwrap(),
        None
    );
    assert_eq!(std::fs::metadata(&dest).unwrap().len(), big.len() as u64);
    let leftovers: Vec<_> = std::fs::read_dir(scratch)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let listed = blobs.list("flists").await.unwrap();
    let names: Vec<&str> = listed.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, vec![name, big_name]);
    assert_eq!(listed[1].size, big.len() as u64);
    // Both stores say when a blob was stored (gc keeps young unrecorded files).
    for b in &listed {
        let age = std::time::SystemTime::now()
            .duration_since(b.modified.expect("a modification time"))
            .unwrap_or_default();
        assert!(age < std::time::Duration::from_secs(600), "{b:?}");
    }
    assert_eq!(blobs.list("flists/ab").await.unwrap().len(), 1);

    assert!(blobs.delete(name).await.unwrap());
    assert!(!blobs.delete(name).await.unwrap());
    assert_eq!(blobs.get(name).await.unwrap(), None);

    for bad in [
        "", "../x", "a//b", "/abs", ".hidden", "a/.tmp-x", "sp ace", "a\nb",
    ] {
        let e = blobs.put(bad, Bytes::from_static(b"x")).await.unwrap_err();
        assert!(matches!(e, StoreError::InvalidKey { .. }), "{bad:?}: {e}");
    }
}

#[tokio::test]
async fn named_blobs_on_s3_and_in_a_directory() {
    let s3 = SeaweedServer::shared();
    let scratch = tempfile::tempdir().unwrap();
    let on_s3 = open_blobs(&s3.url(&bucket("blobs"))).await.unwrap();
    blob_contract(on_s3, scratch.path()).await;

    let root = tempfile::tempdir().unwrap();
    let in_dir = open_blobs(&format!("dir://{}", root.path().display()))
        .await
        .unwrap();
    blob_contract(in_dir, scratch.path()).await;

    // Chunk stores of other kinds hold no named blobs.
    let e = open_blobs("zdb://127.0.0.1:1/ns").await.unwrap_err();
    assert!(matches!(e, StoreError::Unsupported { .. }), "{e}");
}

#[test]
fn blobs_from_synchronous_code() {
    let s3 = SeaweedServer::shared();
    let shared_bucket = s3.url(&bucket("sync"));
    let blobs = BlockingBlobs::open(&shared_bucket).unwrap();
    assert!(!blobs.to_string().contains(SECRET_KEY));
    assert_eq!(
        blobs.put("a/b", Bytes::from_static(b"sync")).unwrap(),
        SetOutcome::Written
    );
    assert_eq!(blobs.get("a/b").unwrap(), Some(Bytes::from_static(b"sync")));
    assert_eq!(blobs.list("").unwrap().len(), 1);
    // Chunks and blobs share a bucket without meeting: chunks are hex names at the root.
    let chunks = BlockingStore::open(&shared_bucket).unwrap();
    chunks.set(b"\x0a", Bytes::from_static(b"c")).unwrap();
    assert_eq!(blobs.list("a").unwrap().len(), 1);
    assert_eq!(blobs.get("0a").unwrap(), Some(Bytes::from_static(b"c")));
}
