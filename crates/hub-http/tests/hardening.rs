//! Issue #24, "hardening, round two": what a hostile client could still do. One test per
//! numbered item of the issue, each reproducing the reported attack against a real hub.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::time::Duration;

use common::TestHub;
use flist_format::{Flist, Kind, Meta, Metadata, Tree};
use serde_json::{json, Value};

/// An flist of `files` empty files (in directories of 1000) stored as `repo/name`.
async fn put_tree(t: &TestHub, repo: &str, name: &str, files: usize, prefix: &str) {
    let hub = t.hub();
    let (repo, name, prefix) = (repo.to_string(), name.to_string(), prefix.to_string());
    tokio::task::spawn_blocking(move || {
        let mut tree = Tree::new(Meta::root(0o755, 1));
        let mut dir = Tree::ROOT;
        for i in 0..files {
            if i % 1000 == 0 {
                dir = tree
                    .mkdir_p(&format!("{prefix}/d{}", i / 1000), &Meta::root(0o755, 1))
                    .unwrap();
            }
            tree.insert(
                dir,
                &format!("f{i}"),
                Meta::root(0o644, 1),
                Kind::File {
                    size: 0,
                    blocks: vec![],
                },
            )
            .unwrap();
        }
        let flist = Flist {
            tree,
            metadata: Metadata::new(),
        };
        let actor = hub_repo::Actor::new(repo.clone(), vec![]);
        hub.catalog()
            .store_flist(&actor, &repo, &name, &flist, None)
            .unwrap();
    })
    .await
    .unwrap();
}

async fn merge(t: &TestHub, token: &str, target: &str, body: Value) -> (u16, Value) {
    let r = t
        .client
        .post(t.url(&format!("/api/flist/me/merge/{target}")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn exists(t: &TestHub, repo: &str, name: &str) -> bool {
    t.get_json(&format!("/api/flist/{repo}/{name}/light"))
        .await
        .0
        == 200
}

/// Item 1: a merge names each source once, at most 64 of them, merges a bounded number of
/// entries, and a request that times out stores nothing. Before: `["m.flist"] × 600` was
/// merged 600 times (CPU for minutes after the 408) and the result appeared afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item1_merge_is_bounded_and_a_timed_out_merge_stores_nothing() {
    let t = TestHub::start_with(|c| {
        c.request_timeout_secs = 1;
        c.limits.max_entries = 1_000;
    })
    .await;
    let mallory = t.token("mallory", &[]).await;
    put_tree(&t, "mallory", "m.flist", 50, "m").await;
    put_tree(&t, "mallory", "n.flist", 50, "n").await;

    // Repeats are refused, before any work.
    let (s, v) = merge(
        &t,
        &mallory,
        "big.flist",
        json!(vec!["mallory/m.flist"; 600]),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("twice"), "{v}");
    // More than 64 sources are refused.
    let many: Vec<String> = (0..65).map(|i| format!("mallory/x{i}.flist")).collect();
    let (s, v) = merge(&t, &mallory, "big.flist", json!(many)).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("64"), "{v}");
    assert!(!exists(&t, "mallory", "big.flist").await);
    // A plain merge works.
    let (s, v) = merge(
        &t,
        &mallory,
        "mn.flist",
        json!(["mallory/m.flist", "mallory/n.flist"]),
    )
    .await;
    assert_eq!(s, 200, "{v}");

    // The entries met over all sources are bounded.
    put_tree(&t, "mallory", "l1.flist", 800, "a").await;
    put_tree(&t, "mallory", "l2.flist", 800, "b").await;
    let (s, v) = merge(
        &t,
        &mallory,
        "big.flist",
        json!(["mallory/l1.flist", "mallory/l2.flist"]),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("entry count limit"),
        "{v}"
    );
    assert!(!exists(&t, "mallory", "big.flist").await);
    t.stop().await;

    // A merge that outlives its request is cancelled: 408, then nothing appears.
    let t = TestHub::start_with(|c| c.request_timeout_secs = 1).await;
    let mallory = t.token("mallory", &[]).await;
    put_tree(&t, "mallory", "l1.flist", 150_000, "a").await;
    put_tree(&t, "mallory", "l2.flist", 150_000, "b").await;
    let (s, v) = merge(
        &t,
        &mallory,
        "big.flist",
        json!(["mallory/l1.flist", "mallory/l2.flist"]),
    )
    .await;
    assert_eq!(s, 408, "{v}");
    // Long enough for an uncancelled merge to finish and store.
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            !exists(&t, "mallory", "big.flist").await,
            "stored after its 408"
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(t.dir.path().join("data/tmp"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    t.stop().await;
}

/// Item 2: archive conversions run `limits.max_concurrent_conversions` at a time; the
/// others wait with their job saying so. Before: every upload converted at once, each with
/// its whole tree in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item2_uploads_queue_for_a_conversion_slot_with_their_job_visible() {
    let t = TestHub::start_with(|c| c.limits.max_concurrent_conversions = 1).await;
    let alice = t.token("alice", &[]).await;
    // The first upload holds the only slot: its body never ends (a channel we keep open).
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::stream(body).file_name("slow.tar"),
    );
    let client = t.client.clone();
    let url = t.url("/api/flist/me/upload");
    let a2 = alice.clone();
    let first = tokio::spawn(async move {
        client
            .post(url)
            .bearer_auth(a2)
            .multipart(form)
            .send()
            .await
    });
    let mut tar = test_support::archive::RawTar::new();
    tar.file("a", b"one");
    let bytes = tar.finish();
    tx.send(Ok(bytes[..512].to_vec())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The second (the web app's way: its job first, then the file) waits, and its job
    // says so.
    let (s, v) = t.call("POST", "/upload/job", &alice).await;
    assert_eq!(s, 200, "{v}");
    let job = v["job"].as_str().unwrap().to_string();
    let client = t.client.clone();
    let url = t.url(&format!("/upload?job={job}"));
    let a2 = alice.clone();
    let second_body = bytes.clone();
    let second = tokio::spawn(async move {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(second_body).file_name("quick.tar"),
        );
        client
            .post(url)
            .bearer_auth(a2)
            .multipart(form)
            .send()
            .await
    });
    let hub = t.hub();
    let mut queued = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (hub, job) = (hub.clone(), job.clone());
        let rec = tokio::task::spawn_blocking(move || hub.jobs().get(&job))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if rec.message.contains("queued") {
            queued = true;
            break;
        }
    }
    assert!(queued, "the second upload's job says it waits");
    assert!(!second.is_finished());
    // The first ends; the second then runs.
    tx.send(Ok(bytes[512..].to_vec())).await.unwrap();
    drop(tx);
    let r = first.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    let r = second.await.unwrap().unwrap();
    assert!(
        r.status().is_redirection() || r.status() == 200,
        "{}",
        r.status()
    );
    assert!(exists(&t, "alice", "quick.flist").await);
    t.stop().await;
}

/// Item 9: a plain `.tar` cut before its end-of-archive marker never replaces an flist.
/// Before: a cut upload kept 1 of 3 files and replaced `tt.flist`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item9_a_cut_plain_tar_does_not_replace_an_flist() {
    let t = TestHub::start().await;
    let alice = t.token("alice", &[]).await;
    let mut tar = test_support::archive::RawTar::new();
    tar.file("a", b"one").file("b", b"two").file("c", b"three");
    let whole = tar.finish();
    let (s, v) = t
        .upload("/api/flist/me/upload", &alice, "tt.tar", whole.clone())
        .await;
    assert_eq!(s, 200, "{v}");
    let before = t.get("/alice/tt.flist.md5").await.text().await.unwrap();
    let (s, v) = t
        .upload(
            "/api/flist/me/upload",
            &alice,
            "tt.tar",
            whole[..1024].to_vec(),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("end-of-archive"),
        "{v}"
    );
    assert_eq!(
        t.get("/alice/tt.flist.md5").await.text().await.unwrap(),
        before
    );
    let (_, dump) = t.get_json("/api/flist/alice/tt.flist").await;
    assert_eq!(dump["regular"], 3, "{dump}");
    t.stop().await;
}
