//! Routers over real redis-servers: ranges, replication, failover reads.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use bytes::Bytes;
use flist_store::{SetOutcome, StoreError};
use test_support::{RedisReply, RedisServer};

fn items(n: u32) -> Vec<(Vec<u8>, Bytes)> {
    (0..n)
        .map(|i| {
            let k = (i.wrapping_mul(2_654_435_761)).to_be_bytes().to_vec();
            (k, Bytes::from(format!("value {i}")))
        })
        .collect()
}

fn dbsize(s: &RedisServer) -> i64 {
    match s.command(&[b"DBSIZE"]).unwrap() {
        RedisReply::Int(n) => n,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn ranges_split_keys_by_first_byte() {
    let (a, b) = (RedisServer::start(), RedisServer::start());
    let store = flist_store::open(&format!("00-7f={},80-ff={}", a.url(), b.url()))
        .await
        .unwrap();
    let items = items(1000);
    assert!(store
        .set_many(&items)
        .await
        .unwrap()
        .iter()
        .all(|o| *o == SetOutcome::Written));
    let low = items.iter().filter(|(k, _)| k[0] < 0x80).count() as i64;
    assert!(low > 0 && low < 1000);
    assert_eq!(dbsize(&a), low);
    assert_eq!(dbsize(&b), 1000 - low);
    let keys: Vec<Vec<u8>> = items.iter().map(|(k, _)| k.clone()).collect();
    let got = store.get_many_required(&keys).await.unwrap();
    assert!(got.iter().zip(&items).all(|(g, (_, v))| g == v));
    assert!(matches!(
        store.get(&[]).await.unwrap_err(),
        StoreError::InvalidKey { .. }
    ));
}

#[tokio::test]
async fn replicas_serve_every_read_when_one_is_down() {
    let (a, mut b) = (RedisServer::start(), RedisServer::start());
    let store =
        flist_store::open_many(&[format!("00-ff={}", a.url()), format!("00-ff={}", b.url())])
            .await
            .unwrap();
    let items = items(500);
    assert!(store
        .set_many(&items)
        .await
        .unwrap()
        .iter()
        .all(|o| *o == SetOutcome::Written));
    assert_eq!(
        (dbsize(&a), dbsize(&b)),
        (500, 500),
        "written to both replicas"
    );
    let keys: Vec<Vec<u8>> = items.iter().map(|(k, _)| k.clone()).collect();

    // Stop the second replica: every read succeeds from the first.
    b.kill();
    assert!(store.exists_many(&keys).await.unwrap().iter().all(|e| *e));
    assert_eq!(store.get_many_required(&keys).await.unwrap().len(), 500);
    for (k, v) in items.iter().take(20) {
        assert_eq!(store.get(k).await.unwrap().as_ref(), Some(v));
        assert!(store.exists(k).await.unwrap());
    }
    // Writes need every replica: a write now fails and names the dead one.
    let err = store
        .set(b"new", Bytes::from_static(b"v"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&b.port().to_string()), "{err}");
    // An absent key cannot be told absent while a replica is down.
    assert!(store.get(b"absent").await.is_err());

    // Now the first one down, the second back (empty after restart): reads fail over to
    // whichever has the data; a key only the dead replica had is an error, not "absent".
    b.restart();
    store.set_many(&items[..10]).await.unwrap();
    drop(a);
    let got = store.get_many(&keys[..10]).await.unwrap();
    assert!(got
        .iter()
        .zip(&items)
        .all(|(g, (_, v))| g.as_ref() == Some(v)));
    assert!(store.get_many(&keys).await.is_err());
}
