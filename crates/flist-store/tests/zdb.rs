//! The RESP client against the 0-db test responder (same code path as against Redis; the
//! dialect comes from `INFO`).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use bytes::Bytes;
use flist_store::{SetOutcome, StoreError};
use test_support::{NsConfig, NsMode, RedisReply, ZdbServer};

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
                Bytes::from(vec![i as u8; (i % 50) as usize]),
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
    let del = {
        // DEL needs the namespace selected on the same connection: do it by hand.
        use std::io::{BufReader, Write};
        let s = std::net::TcpStream::connect(("127.0.0.1", server.port())).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        w.write_all(&test_support::redis::encode(&[
            b"SELECT", b"chunks", b"pw:1",
        ]))
        .unwrap();
        test_support::redis::read_reply(&mut r).unwrap();
        w.write_all(&test_support::redis::encode(&[b"DEL", &keys[10]]))
            .unwrap();
        test_support::redis::read_reply(&mut r).unwrap()
    };
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
    let store = flist_store::open(&server.url("sec", Some("pw:1")))
        .await
        .unwrap();
    store.set(b"a", Bytes::from_static(b"1")).await.unwrap();
    let (secure, plain) = server.password_selects();
    assert!(secure >= 1, "SELECT ... SECURE was not used");
    assert_eq!(plain, 0, "the password went in plain text");
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
}

#[tokio::test]
async fn sequential_namespaces_are_refused() {
    let server = ZdbServer::start();
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
async fn admin_setup_over_the_wire() {
    // The responder's admin commands (used by operators) behave per spec.
    let server = ZdbServer::start();
    use std::io::{BufReader, Write};
    let s = std::net::TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut call = |args: &[&[u8]]| {
        w.write_all(&test_support::redis::encode(args)).unwrap();
        test_support::redis::read_reply(&mut r).unwrap()
    };
    assert!(matches!(call(&[b"NSNEW", b"x"]), RedisReply::Error(_)));
    assert_eq!(call(&[b"AUTH", b"admin"]), RedisReply::Status("OK".into()));
    assert_eq!(call(&[b"NSNEW", b"x"]), RedisReply::Status("OK".into()));
    assert_eq!(
        call(&[b"NSSET", b"x", b"password", b"p"]),
        RedisReply::Status("OK".into())
    );
    assert_eq!(
        call(&[b"SELECT", b"x", b"p"]),
        RedisReply::Status("OK".into())
    );
    assert_eq!(
        call(&[b"SET", b"k", b"v"]),
        RedisReply::Bulk(Some(b"k".to_vec()))
    );
    assert_eq!(call(&[b"SET", b"k", b"v"]), RedisReply::Bulk(None));
    assert!(matches!(call(&[b"SCAN"]), RedisReply::Array(_)));
    let RedisReply::Array(scan) = call(&[b"SCAN"]) else {
        unreachable!()
    };
    let RedisReply::Bulk(Some(cursor)) = &scan[0] else {
        panic!("{scan:?}")
    };
    assert_eq!(
        call(&[b"SCAN", cursor]),
        RedisReply::Error("No more data".into())
    );
    let store = flist_store::open(&server.url("x", Some("p")))
        .await
        .unwrap();
    assert_eq!(
        store.get(b"k").await.unwrap(),
        Some(Bytes::from_static(b"v"))
    );
}
