//! The chunk API (`POST /api/chunks/missing`, `PUT /api/chunks/<hex>`) over real HTTP: a
//! chunk under a wrong key is refused and not stored; limits, quota, authentication and
//! store failures answer the documented statuses; `upload-flist` passes once every chunk
//! has been uploaded.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use bytes::Bytes;
use common::TestHub;
use flist_format::codec::{blake2b, encode_chunk};
use serde_json::{json, Value};

fn key_of(data: &[u8]) -> String {
    hex::encode(blake2b::<16>(data))
}

async fn put(t: &TestHub, token: Option<&str>, key: &str, body: Vec<u8>) -> (u16, Value) {
    let mut rb = t
        .client
        .put(t.url(&format!("/api/chunks/{key}")))
        .body(body);
    if let Some(tok) = token {
        rb = rb.bearer_auth(tok);
    }
    let r = rb.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn missing(t: &TestHub, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut rb = t.client.post(t.url("/api/chunks/missing")).json(&body);
    if let Some(tok) = token {
        rb = rb.bearer_auth(tok);
    }
    let r = rb.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn stored(t: &TestHub, key: &str) -> bool {
    t.server
        .state
        .store
        .exists(&hex::decode(key).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_chunk_under_a_wrong_key_is_refused_and_not_stored() {
    let t = TestHub::start().await;
    let tok = t.token("alice", &[]).await;
    let good = encode_chunk(b"some file content").data;
    let other = encode_chunk(b"other content").data;
    let (good_key, other_key) = (key_of(&good), key_of(&other));

    // the body of one chunk under the key of another
    let (s, v) = put(&t, Some(&tok), &other_key, good.clone()).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["status"], "error");
    assert!(
        v["message"].as_str().unwrap().contains("does not match"),
        "{v}"
    );
    assert!(!stored(&t, &other_key).await);
    assert!(!stored(&t, &good_key).await);
    // ... and under a key nobody has
    let (s, _) = put(&t, Some(&tok), &"ab".repeat(16), good.clone()).await;
    assert_eq!(s, 400);
    assert!(!stored(&t, &"ab".repeat(16)).await);

    // both are missing
    let (s, v) = missing(&t, Some(&tok), json!({"keys": [good_key, other_key]})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!({"status": "success", "payload": {"missing": [good_key, other_key]}})
    );

    // the right key is stored once
    let (s, v) = put(&t, Some(&tok), &good_key, good.clone()).await;
    assert_eq!(
        (s, &v["payload"]),
        (200, &json!({"key": good_key, "written": true}))
    );
    assert!(stored(&t, &good_key).await);
    let stored_value = t
        .server
        .state
        .store
        .get(&hex::decode(&good_key).unwrap())
        .await
        .unwrap();
    assert_eq!(stored_value, Some(Bytes::from(good.clone())));
    let (s, v) = put(&t, Some(&tok), &good_key.to_uppercase(), good.clone()).await;
    assert_eq!((s, &v["payload"]["written"]), (200, &json!(false)));
    let (_, v) = missing(&t, Some(&tok), json!({"keys": [good_key, other_key]})).await;
    assert_eq!(v["payload"]["missing"], json!([other_key]));
    t.stop().await;
}

#[tokio::test]
async fn bad_requests_limits_and_authentication() {
    let t = TestHub::start_with(|c| {
        c.chunks.max_chunk_bytes = 4096;
        c.chunks.user_quota_bytes = 3000;
        c.chunks.max_keys = 3;
    })
    .await;
    let tok = t.token("alice", &[]).await;
    let bob = t.token("bob", &[]).await;
    let data = encode_chunk(&[1u8; 2000]).data; // snappy: small
    let key = key_of(&data);

    // no or bad credentials
    assert_eq!(put(&t, None, &key, data.clone()).await.0, 401);
    assert_eq!(put(&t, Some("nope"), &key, data.clone()).await.0, 401);
    assert_eq!(missing(&t, None, json!({"keys": [key]})).await.0, 401);
    assert!(!stored(&t, &key).await);

    // malformed keys and bodies
    let (s, v) = put(&t, Some(&tok), "xyz", data.clone()).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(put(&t, Some(&tok), &key, Vec::new()).await.0, 400);
    assert_eq!(
        missing(&t, Some(&tok), json!({"keys": ["zz"]})).await.0,
        400
    );
    assert_eq!(
        missing(&t, Some(&tok), json!(["not", "an", "object"]))
            .await
            .0,
        400
    );
    let (s, v) = missing(&t, Some(&tok), json!({"keys": [key, key, key, key]})).await;
    assert_eq!(s, 413, "{v}");
    let (s, v) = missing(&t, Some(&tok), json!({"keys": []})).await;
    assert_eq!((s, v["payload"]["missing"].clone()), (200, json!([])));

    // too large (a valid key for its content)
    let big = vec![9u8; 5000];
    let (s, v) = put(&t, Some(&tok), &key_of(&big), big.clone()).await;
    assert_eq!(s, 413, "{v}");
    assert!(!stored(&t, &key_of(&big)).await);

    // quota per user: 3000 bytes of new chunks
    let c1 = vec![1u8; 2000];
    let c2 = vec![2u8; 2000];
    assert_eq!(put(&t, Some(&tok), &key_of(&c1), c1.clone()).await.0, 200);
    let (s, v) = put(&t, Some(&tok), &key_of(&c2), c2.clone()).await;
    assert_eq!(s, 429, "{v}");
    assert!(!stored(&t, &key_of(&c2)).await);
    // re-sending an existing chunk costs nothing; another user has their own quota
    assert_eq!(put(&t, Some(&tok), &key_of(&c1), c1.clone()).await.0, 200);
    assert_eq!(put(&t, Some(&bob), &key_of(&c2), c2.clone()).await.0, 200);
    assert!(stored(&t, &key_of(&c2)).await);
    t.stop().await;
}

#[tokio::test]
async fn store_failures_answer_503() {
    // a redis store on a port nobody listens on
    let port = test_support::redis::free_port();
    let t = TestHub::start_with(|c| c.store = Some(format!("redis://127.0.0.1:{port}"))).await;
    let tok = t.token("alice", &[]).await;
    let data = encode_chunk(b"x").data;
    let key = key_of(&data);
    let (s, v) = put(&t, Some(&tok), &key, data).await;
    assert_eq!(s, 503, "{v}");
    let (s, v) = missing(&t, Some(&tok), json!({"keys": [key]})).await;
    assert_eq!(s, 503, "{v}");
    t.stop().await;
}

/// A homemade flist is refused while chunks are missing, and accepted once the missing
/// ones were uploaded through the chunk API.
#[tokio::test]
async fn upload_flist_passes_once_the_missing_chunks_are_uploaded() {
    let t = TestHub::start().await;
    let tok = t.token("alice", &[]).await;
    let flist_bytes = std::fs::read(test_support::fixture("fixture.flist")).unwrap();
    let (s, v) = t
        .upload(
            "/api/flist/me/upload-flist",
            &tok,
            "fixture.flist",
            flist_bytes.clone(),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let chunks = test_support::fixture("chunks");
    let mut keys = Vec::new();
    for e in std::fs::read_dir(&chunks).unwrap() {
        keys.push(e.unwrap().file_name().to_string_lossy().to_string());
    }
    let (_, v) = missing(&t, Some(&tok), json!({"keys": keys})).await;
    let lacking: Vec<String> = v["payload"]["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    assert_eq!(lacking.len(), keys.len());
    for k in &lacking {
        let body = std::fs::read(chunks.join(k)).unwrap();
        let (s, v) = put(&t, Some(&tok), k, body).await;
        assert_eq!(s, 200, "{k}: {v}");
    }
    let (_, v) = missing(&t, Some(&tok), json!({"keys": keys})).await;
    assert_eq!(v["payload"]["missing"], json!([]));
    let (s, v) = t
        .upload(
            "/api/flist/me/upload-flist",
            &tok,
            "fixture.flist",
            flist_bytes,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    t.stop().await;
}
