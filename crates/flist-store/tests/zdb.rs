//! The RESP client against a real 0-db server (v2.0.7, built from `../shared/vendor/` by the
//! test harness). Same code path as against Redis; the dialect comes from `INFO`. The
//! fault-injection responder is used by one test only, for a fault the real server cannot
//! be made to show.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::time::Duration;

use bytes::Bytes;
use flist_store::{open_url_with, OpenOptions, SetOutcome, StoreError, StoreUrl};
use test_support::tap::Tap;
use test_support::{NsConfig, NsMode, RedisReply, ZdbResponder, ZdbServer};

fn secret_ns() -> NsConfig {
    NsConfig {
        password: Some("pw:1".into()),
        public: false,
        ..NsConfig::default()
    }
}

#[tokio::test]
async fn namespaces_set_nil_and_batches() {
    let server = ZdbServer::start();
    server.namespace("chunks", secret_ns());
    let store = flist_store::open(&server.url("chunks", Some("pw:1")))
        .await
        .unwrap();
    let k = b"\x00\r\nkey".to_vec();
    assert_eq!(
        store.set(&k, Bytes::from_static(b"value")).await.unwrap(),
        SetOutcome::Written
    );
    // 0-db replies nil when the same value is stored again.
    assert_eq!(
        store.set(&k, Bytes::from_static(b"value")).await.unwrap(),
        SetOutcome::AlreadyPresent
    );
    assert_eq!(server.stored("chunks", &k).as_deref(), Some(&b"value"[..]));
    assert_eq!(
        server.stored("default", &k),
        None,
        "written to the selected namespace only"
    );

    // More keys than one MGET may carry (1023): the client splits.
    let items: Vec<(Vec<u8>, Bytes)> = (0..3000u32)
        .map(|i| {
            (
                i.to_be_bytes().to_vec(),
                Bytes::from(vec![i as u8; (i % 50) as usize + 1]),
            )
        })
        .collect();
    let keys: Vec<Vec<u8>> = items.iter().map(|(k, _)| k.clone()).collect();
    assert!(store
        .set_many(&items)
        .await
        .unwrap()
        .iter()
        .all(|o| *o == SetOutcome::Written));
    let mut outcomes = store.set_many(&items[2990..]).await.unwrap();
    outcomes.dedup();
    assert_eq!(outcomes, vec![SetOutcome::AlreadyPresent]);
    assert_eq!(server.entries("chunks"), 3001);
    assert!(store.exists_many(&keys).await.unwrap().iter().all(|e| *e));
    let got = store.get_many(&keys).await.unwrap();
    assert!(got
        .iter()
        .zip(&items)
        .all(|(g, (_, v))| g.as_ref() == Some(v)));
    // Deleted on the server: missing.
    let del = server.conn("chunks").call(&[b"DEL", &keys[10]]);
    assert_eq!(del, RedisReply::Status("OK".into()));
    assert!(!store.exists(&keys[10]).await.unwrap());
    assert_eq!(store.get_many(&keys).await.unwrap()[10], None);

    // Keys longer than 0-db allows are refused before sending.
    let err = store.set(&[7u8; 256], Bytes::new()).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidKey { .. }), "{err}");
}

#[tokio::test]
async fn secure_challenge_is_used_for_namespace_passwords() {
    let server = ZdbServer::start();
    server.namespace("sec", secret_ns());
    // The client talks to the real server through a recording proxy.
    let tap = Tap::start(server.port());
    let url = format!("zdb://:pw:1@127.0.0.1:{}/sec", tap.port());
    let store = flist_store::open(&url).await.unwrap();
    store.set(b"a", Bytes::from_static(b"1")).await.unwrap();
    assert_eq!(server.stored("sec", b"a").as_deref(), Some(&b"1"[..]));
    assert!(
        tap.sent_contains(b"SECURE"),
        "SELECT ... SECURE was not used"
    );
    assert!(
        !tap.sent_contains(b"pw:1"),
        "the password went in plain text"
    );
}

#[tokio::test]
async fn wrong_or_missing_namespace_password() {
    let server = ZdbServer::start();
    server.namespace("sec", secret_ns());
    let wrong = flist_store::open(&server.url("sec", Some("bad")))
        .await
        .unwrap();
    let err = wrong.get(b"a").await.unwrap_err();
    assert!(matches!(err, StoreError::Auth { .. }), "{err}");
    assert!(
        err.to_string().contains("***") && !err.to_string().contains("bad@"),
        "{err}"
    );
    // Private namespace, no password.
    let none = flist_store::open(&server.url("sec", None)).await.unwrap();
    assert!(matches!(
        none.get(b"a").await.unwrap_err(),
        StoreError::Auth { .. }
    ));
    // Unknown namespace.
    let missing = flist_store::open(&server.url("nope", None)).await.unwrap();
    let err = missing.get(b"a").await.unwrap_err();
    assert!(matches!(err, StoreError::BadNamespace { .. }), "{err}");
    assert!(err.to_string().contains("nope"), "{err}");
}

#[tokio::test]
async fn public_namespace_without_password_is_read_only() {
    let server = ZdbServer::start();
    server.namespace(
        "pub",
        NsConfig {
            password: Some("w".into()),
            public: true,
            ..NsConfig::default()
        },
    );
    let writer = flist_store::open(&server.url("pub", Some("w")))
        .await
        .unwrap();
    writer.set(b"k", Bytes::from_static(b"v")).await.unwrap();
    let reader = flist_store::open(&server.url("pub", None)).await.unwrap();
    assert_eq!(
        reader.get(b"k").await.unwrap(),
        Some(Bytes::from_static(b"v"))
    );
    let err = reader
        .set(b"k2", Bytes::from_static(b"v"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Auth { .. }), "{err}");
    assert!(err.to_string().contains(&hex::encode(b"k2")), "{err}");
    assert_eq!(server.stored("pub", b"k2"), None);
}

#[tokio::test]
async fn locked_and_full_namespaces_are_clear_errors() {
    let server = ZdbServer::start();
    server.namespace(
        "ns",
        NsConfig {
            maxsize: Some(100),
            ..NsConfig::default()
        },
    );
    let store = flist_store::open(&server.url("ns", None)).await.unwrap();
    store.set(b"a", Bytes::from(vec![1u8; 60])).await.unwrap();
    let err = store
        .set(b"b", Bytes::from(vec![2u8; 60]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NamespaceFull { .. }), "{err}");
    assert!(err.to_string().contains("62"), "names the key: {err}");
    server.configure("ns", |c| c.maxsize = None);

    server.configure("ns", |c| c.locked = true);
    let items = vec![
        (b"c".to_vec(), Bytes::from_static(b"x")),
        (b"d".to_vec(), Bytes::from_static(b"y")),
    ];
    let err = store.set_many(&items).await.unwrap_err();
    assert!(matches!(err, StoreError::NamespaceLocked { .. }), "{err}");
    assert!(err.is_transient());
    // Reads still work on a locked namespace.
    assert!(store.exists(b"a").await.unwrap());
    server.configure("ns", |c| c.locked = false);
    assert_eq!(
        store.set_many(&items).await.unwrap(),
        vec![SetOutcome::Written; 2]
    );
    // Frozen: reads refused too, as a clear error.
    server.configure("ns", |c| c.frozen = true);
    let err = store.get(b"a").await.unwrap_err();
    assert!(matches!(err, StoreError::NamespaceLocked { .. }), "{err}");
}

#[tokio::test]
async fn an_error_reply_inside_a_pipelined_set_window_fails_the_batch_and_names_its_key() {
    // SETs to 0-db are pipelined (one window of many commands on one connection): the
    // server answers each command on its own, so a window can succeed in part. The first
    // refused command fails the batch with its key; the writes before it are stored; the
    // connection stays in step (the next batch gets its own replies).
    let server = ZdbServer::start();
    server.namespace(
        "ns",
        NsConfig {
            maxsize: Some(1000),
            ..NsConfig::default()
        },
    );
    let store = flist_store::open(&server.url("ns", None)).await.unwrap();
    let items: Vec<(Vec<u8>, Bytes)> = (0..40u8)
        .map(|i| (vec![b'k', i], Bytes::from(vec![i; 100])))
        .collect();
    let err = store.set_many(&items).await.unwrap_err();
    assert!(matches!(err, StoreError::NamespaceFull { .. }), "{err}");
    let stored = server.entries("ns");
    assert!((1..40).contains(&stored), "{stored} of 40 stored");
    // The refused key is the first one not stored, and the error names it.
    let first_missing = items
        .iter()
        .position(|(k, _)| server.stored("ns", k).is_none())
        .unwrap();
    assert_eq!(first_missing, stored, "stored in order, a prefix");
    assert!(
        err.to_string()
            .contains(&hex::encode(&items[first_missing].0)),
        "{err}"
    );
    // The pooled connection still pairs replies with commands.
    server.configure("ns", |c| c.maxsize = None);
    let outcomes = store.set_many(&items).await.unwrap();
    assert!(outcomes[..stored]
        .iter()
        .all(|o| *o == SetOutcome::AlreadyPresent));
    assert!(outcomes[stored..].iter().all(|o| *o == SetOutcome::Written));
    assert_eq!(server.entries("ns"), 40);
    let keys: Vec<Vec<u8>> = items.iter().map(|(k, _)| k.clone()).collect();
    assert!(store.exists_many(&keys).await.unwrap().iter().all(|e| *e));
}

#[tokio::test]
async fn a_pipelined_window_0db_stops_reading_is_completed() {
    // 0-db v2.0.7 reads 8 KiB at a time and, when one read ends exactly at the end of a
    // command, goes back to waiting for socket events although more commands are waiting:
    // the rest of the window would never be answered (until the 5 s timeout below). Here
    // the first SET is exactly 8192 bytes on the wire and the window is written at once.
    let server = ZdbServer::start();
    server.namespace("ns", NsConfig::default());
    let url = StoreUrl::parse(&server.url("ns", None)).unwrap();
    let store = open_url_with(
        &url,
        &OpenOptions {
            timeout: Duration::from_secs(5),
            retries: 0,
            ..OpenOptions::default()
        },
    )
    .await
    .unwrap();
    // *3 $3 SET $2 aN $8162 <value>: 30 bytes of framing + 8162.
    let items = [
        (b"a".to_vec(), Bytes::from(vec![1u8; 8162])),
        (b"b".to_vec(), Bytes::from_static(b"second")),
        (b"c".to_vec(), Bytes::from_static(b"third")),
    ];
    for round in 0..3u8 {
        let items: Vec<(Vec<u8>, Bytes)> = items
            .iter()
            .map(|(k, v)| ([k.as_slice(), &[round]].concat(), v.clone()))
            .collect();
        assert_eq!(
            store.set_many(&items).await.unwrap(),
            vec![SetOutcome::Written; 3],
            "round {round}"
        );
    }
    assert_eq!(server.entries("ns"), 9);
    assert_eq!(
        server.stored("ns", b"c\x02").as_deref(),
        Some(&b"third"[..])
    );
}

#[tokio::test]
async fn sequential_namespaces_are_refused() {
    // A `--mode user` server cannot hold sequential namespaces: run one in mixed mode.
    let server = ZdbServer::start_mixed();
    server.namespace(
        "seq",
        NsConfig {
            mode: NsMode::Sequential,
            ..NsConfig::default()
        },
    );
    let store = flist_store::open(&server.url("seq", None)).await.unwrap();
    let err = store
        .set(b"key", Bytes::from_static(b"v"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::BadNamespace { .. }), "{err}");
    assert!(err.to_string().contains("sequential"), "{err}");
    assert_eq!(server.entries("seq"), 0, "nothing written");
}

#[tokio::test]
async fn fault_sequential_namespace_not_reported_is_caught_by_the_set_reply() {
    // Fault injection (the real server always reports its mode in NSINFO): a server that
    // does not say the namespace is sequential. The SET reply's key gives it away.
    let responder = ZdbResponder::start();
    responder.namespace(
        "seq",
        NsConfig {
            mode: NsMode::Sequential,
            ..NsConfig::default()
        },
    );
    responder.hide_namespace_mode();
    let store = flist_store::open(&responder.url("seq", None))
        .await
        .unwrap();
    let err = store
        .set(b"key", Bytes::from_static(b"v"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::BadNamespace { .. }), "{err}");
    assert!(err.to_string().contains("sequential"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_restarted_keeps_the_data_and_the_client_reconnects() {
    let mut server = ZdbServer::start();
    server.namespace("chunks", secret_ns());
    let url = StoreUrl::parse(&server.url("chunks", Some("pw:1"))).unwrap();
    let store = open_url_with(
        &url,
        &OpenOptions {
            timeout: Duration::from_secs(10),
            ..OpenOptions::default()
        },
    )
    .await
    .unwrap();
    let items: Vec<(Vec<u8>, Bytes)> = (0..500u32)
        .map(|i| (i.to_le_bytes().to_vec(), Bytes::from(vec![i as u8; 4096])))
        .collect();
    store.set_many(&items).await.unwrap();

    server.kill();
    let err = store.get(b"\x01\0\0\0").await.unwrap_err();
    assert!(matches!(err, StoreError::Connection { .. }), "{err}");

    server.restart();
    // Pooled connections are dead; the next call reconnects; the data survived on disk.
    let keys: Vec<Vec<u8>> = items.iter().map(|(k, _)| k.clone()).collect();
    let got = store.get_many(&keys).await.unwrap();
    assert!(got
        .iter()
        .zip(&items)
        .all(|(g, (_, v))| g.as_ref() == Some(v)));
    assert_eq!(
        store.set_many(&items[..10]).await.unwrap(),
        vec![SetOutcome::AlreadyPresent; 10]
    );
    assert_eq!(server.entries("chunks"), 500);
}

#[test]
fn real_server_speaks_the_spec() {
    // The facts of spec/zero-db.md the client relies on, checked on the real server.
    let server = ZdbServer::start();
    let mut anon = test_support::ZdbConn::connect(server.port()).unwrap();
    let RedisReply::Bulk(Some(info)) = anon.call(&[b"INFO"]) else {
        panic!("INFO")
    };
    assert!(String::from_utf8_lossy(&info).contains("server_name: 0-db (zdb)"));
    assert!(matches!(anon.call(&[b"NSNEW", b"x"]), RedisReply::Error(_)));
    let mut admin = server.admin_conn();
    assert_eq!(
        admin.call(&[b"NSNEW", b"x"]),
        RedisReply::Status("OK".into())
    );
    assert_eq!(
        admin.call(&[b"NSSET", b"x", b"password", b"p"]),
        RedisReply::Status("OK".into())
    );
    assert_eq!(
        admin.call(&[b"SELECT", b"x", b"p"]),
        RedisReply::Status("OK".into())
    );
    assert_eq!(
        admin.call(&[b"SET", b"k", b"v"]),
        RedisReply::Bulk(Some(b"k".to_vec()))
    );
    assert_eq!(admin.call(&[b"SET", b"k", b"v"]), RedisReply::Bulk(None));
    assert_eq!(admin.call(&[b"EXISTS", b"k"]), RedisReply::Int(1));
    assert_eq!(admin.call(&[b"EXISTS", b"nope"]), RedisReply::Int(0));
    let RedisReply::Array(scan) = admin.call(&[b"SCAN"]) else {
        panic!("SCAN")
    };
    let RedisReply::Bulk(Some(cursor)) = &scan[0] else {
        panic!("{scan:?}")
    };
    assert_eq!(
        admin.call(&[b"SCAN", cursor]),
        RedisReply::Error("No more data".into())
    );
    let mut mget: Vec<&[u8]> = vec![b"MGET"];
    mget.extend(std::iter::repeat_n(&b"k"[..], 1024));
    assert!(matches!(admin.call(&mget), RedisReply::Error(_)));
}
