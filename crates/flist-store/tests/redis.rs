//! The RESP client against a real `redis-server`.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flist_store::{open_url_with, OpenOptions, SetOutcome, Store, StoreError, StoreUrl};
use test_support::sample::noise;
use test_support::{RedisReply, RedisServer};

/// 16-byte binary keys, including CR/LF/NUL-heavy ones.
fn keys(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut k = noise(i as u64 + 1, 16);
            if i % 10 == 0 {
                k[3..7].copy_from_slice(b"\r\n\0$");
            }
            k
        })
        .collect()
}

async fn open_with(url: &str, opts: OpenOptions) -> Arc<dyn Store> {
    open_url_with(&StoreUrl::parse(url).unwrap(), &opts)
        .await
        .unwrap()
}

#[tokio::test]
async fn ten_thousand_binary_keys_roundtrip() {
    let server = RedisServer::start();
    let store = flist_store::open(&server.url()).await.unwrap();
    let keys = keys(10_000);
    let items: Vec<(Vec<u8>, Bytes)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.clone(), Bytes::from(noise(i as u64 + 7, i % 3000))))
        .collect();
    let outcomes = store.set_many(&items).await.unwrap();
    assert_eq!(outcomes.len(), items.len());
    assert!(outcomes.iter().all(|o| *o == SetOutcome::Written));
    assert_eq!(
        server.command(&[b"DBSIZE"]).unwrap(),
        RedisReply::Int(10_000)
    );
    // Idempotent: a second write stores nothing.
    let again = store.set_many(&items[..500]).await.unwrap();
    assert!(again.iter().all(|o| *o == SetOutcome::AlreadyPresent));

    let mut probe = keys.clone();
    probe.push(b"absent-key".to_vec());
    let exists = store.exists_many(&probe).await.unwrap();
    assert!(exists[..10_000].iter().all(|e| *e));
    assert!(!exists[10_000]);
    let values = store.get_many(&probe).await.unwrap();
    assert_eq!(values.len(), probe.len());
    for (i, (_, v)) in items.iter().enumerate() {
        assert_eq!(values[i].as_ref(), Some(v), "key {i}");
    }
    assert_eq!(values[10_000], None);

    // Deleted behind the client's back: reported missing.
    let victim = &keys[4321];
    assert_eq!(
        server.command(&[b"DEL", victim]).unwrap(),
        RedisReply::Int(1)
    );
    assert!(!store.exists(victim).await.unwrap());
    assert_eq!(store.get(victim).await.unwrap(), None);
    assert!(!store.exists_many(&keys).await.unwrap()[4321]);
    assert_eq!(store.get_many(&keys).await.unwrap()[4321], None);
    let err = store.get_many_required(&keys).await.unwrap_err();
    match &err {
        StoreError::NotFound { key, store: s } => {
            assert_eq!(key, &hex::encode(victim));
            assert!(s.contains(&server.port().to_string()));
        }
        other => panic!("{other}"),
    }
    // Single ops agree with the batch ones.
    assert_eq!(
        store.set(victim, items[4321].1.clone()).await.unwrap(),
        SetOutcome::Written
    );
    assert_eq!(store.get_required(victim).await.unwrap(), items[4321].1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_batch_then_restarted() {
    let mut server = RedisServer::start();
    let store = open_with(
        &server.url(),
        OpenOptions {
            timeout: Duration::from_secs(10),
            ..OpenOptions::default()
        },
    )
    .await;
    let value = Bytes::from(noise(1, 32 * 1024));
    let items: Vec<(Vec<u8>, Bytes)> = keys(4000).into_iter().map(|k| (k, value.clone())).collect();
    let batch = {
        let store = store.clone();
        let items = items.clone();
        tokio::spawn(async move { store.set_many(&items).await })
    };
    // Kill it as soon as the batch has started landing.
    loop {
        match server.command(&[b"DBSIZE"]) {
            Ok(RedisReply::Int(n)) if n > 0 => break,
            _ => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
    server.kill();
    let err = batch
        .await
        .unwrap()
        .expect_err("a batch cut by a dead server must fail");
    assert!(matches!(err, StoreError::Connection { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("127.0.0.1:{}", server.port())),
        "{msg}"
    );

    server.restart();
    // Pooled connections are dead; the next call reconnects and works.
    let fresh: Vec<(Vec<u8>, Bytes)> = items[..100].to_vec();
    let out = store.set_many(&fresh).await.unwrap();
    assert!(
        out.iter().all(|o| *o == SetOutcome::Written),
        "the restarted server is empty"
    );
    assert_eq!(store.get(&fresh[7].0).await.unwrap(), Some(value.clone()));
}

#[tokio::test]
async fn authentication() {
    let server = RedisServer::start_with_password("s3cret pass");
    let port = server.port();
    let good = flist_store::open(&format!("redis://:s3cret%20pass@127.0.0.1:{port}/2"))
        .await
        .unwrap();
    assert_eq!(
        good.set(b"k1", Bytes::from_static(b"v")).await.unwrap(),
        SetOutcome::Written
    );
    // Database 2 was selected.
    assert_eq!(server.command(&[b"DBSIZE"]).unwrap(), RedisReply::Int(0));

    let wrong = flist_store::open(&format!("redis://:nope@127.0.0.1:{port}"))
        .await
        .unwrap();
    let err = wrong.get(b"k1").await.unwrap_err();
    assert!(matches!(err, StoreError::Auth { .. }), "{err}");
    assert!(!err.to_string().contains("nope"), "password leaked: {err}");
    assert!(err.to_string().contains(":***@"), "{err}");

    let none = flist_store::open(&format!("redis://127.0.0.1:{port}"))
        .await
        .unwrap();
    let err = none.exists(b"k1").await.unwrap_err();
    assert!(matches!(err, StoreError::Auth { .. }), "{err}");
}

#[tokio::test]
async fn unreachable_servers_fail_within_the_timeout() {
    let opts = OpenOptions {
        connect_timeout: Duration::from_millis(500),
        retries: 1,
        ..OpenOptions::default()
    };
    // A closed port: connection refused.
    let port = test_support::redis::free_port();
    let store = open_with(&format!("redis://127.0.0.1:{port}"), opts.clone()).await;
    let err = store.get(b"k").await.unwrap_err();
    assert!(matches!(err, StoreError::Connection { .. }), "{err}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");

    // A socket that accepts TCP but never answers: the handshake times out.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let store = open_with(&format!("zdb://127.0.0.1:{port}/ns"), opts).await;
    let started = std::time::Instant::now();
    let err = store.set(b"k", Bytes::from_static(b"v")).await.unwrap_err();
    assert!(matches!(err, StoreError::Connection { .. }), "{err}");
    assert!(err.to_string().contains("500ms"), "{err}");
    // Not retried: one connect timeout, not several (generous bound, no hang).
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(silent);
}

#[tokio::test]
async fn zdb_url_works_against_redis_default_namespace_only() {
    let server = RedisServer::start();
    let store = flist_store::open(&server.zdb_url()).await.unwrap();
    assert_eq!(
        store.set(b"key", Bytes::from_static(b"v")).await.unwrap(),
        SetOutcome::Written
    );
    assert_eq!(
        store.set(b"key", Bytes::from_static(b"v")).await.unwrap(),
        SetOutcome::AlreadyPresent
    );
    let named = flist_store::open(&format!("zdb://127.0.0.1:{}/chunks", server.port()))
        .await
        .unwrap();
    let err = named.get(b"key").await.unwrap_err();
    assert!(matches!(err, StoreError::BadNamespace { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_the_pool() {
    let server = RedisServer::start();
    let store = open_with(
        &server.url(),
        OpenOptions {
            pool_size: 2,
            ..OpenOptions::default()
        },
    )
    .await;
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let items: Vec<(Vec<u8>, Bytes)> = (0..200u64)
                .map(|i| (noise(t * 1000 + i + 1, 16), Bytes::from(noise(i, 100))))
                .collect();
            store.set_many(&items).await.unwrap();
            let keys: Vec<Vec<u8>> = items.iter().map(|(k, _)| k.clone()).collect();
            let got = store.get_many_required(&keys).await.unwrap();
            assert!(got.iter().zip(&items).all(|(g, (_, v))| g == v));
            for (k, v) in items.iter().take(20) {
                assert_eq!(store.get(k).await.unwrap().as_ref(), Some(v));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(server.command(&[b"DBSIZE"]).unwrap(), RedisReply::Int(3200));
}
