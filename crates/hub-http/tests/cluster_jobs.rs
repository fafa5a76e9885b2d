//! A job one replica runs, followed over `/listen/<id>` from another replica on the same
//! PostgreSQL catalog (the `cluster` group): its progress and its end arrive there too.
//! Before, a replica that did not run the job sent its state once and closed the stream.

mod common;

use common::{test_config, TestHub};
use serde_json::{json, Value};
use test_support::postgres::Postgres;

async fn replica(catalog: &str) -> TestHub {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    cfg.catalog = Some(catalog.to_string());
    TestHub::start_in(dir, cfg).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_followed_from_any_replica() {
    let catalog = Postgres::shared().create_database("jobs");
    let (a, b) = (replica(&catalog).await, replica(&catalog).await);
    let job = a
        .server
        .state
        .jobs
        .start("upload", "alice")
        .await
        .expect("job");
    let listening = b.get(&format!("/listen/{}", job.id)).await;
    assert_eq!(listening.status(), 200);
    job.progress_async(50, "halfway".into()).await;
    // Let b see the progress before the end comes (each change is sent once it is read).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    job.finish_async(json!({"name": "x.flist"})).await;
    let body = tokio::time::timeout(std::time::Duration::from_secs(60), listening.text())
        .await
        .expect("the stream on b ends with the job")
        .expect("body");
    let events: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).expect("json"))
        .collect();
    assert_eq!(
        events.first(),
        Some(&json!({"status": "update", "message": "started", "progress": 0}))
    );
    assert!(
        events.contains(&json!({"status": "update", "message": "halfway", "progress": 50})),
        "{events:?}"
    );
    assert_eq!(
        events.last(),
        Some(&json!({"status": "info", "info": {"name": "x.flist"}}))
    );
    // Started on b after a's job began: a's job is still running (a replica starting up
    // leaves the others' jobs alone).
    let other = a
        .server
        .state
        .jobs
        .start("docker", "alice")
        .await
        .expect("job");
    let c = replica(&catalog).await;
    let text = c.get(&format!("/listen/{}", other.id)).await.text();
    other.fail_async("refused".into()).await;
    let text = tokio::time::timeout(std::time::Duration::from_secs(60), text)
        .await
        .expect("the stream on c ends with the job")
        .expect("body");
    assert!(text.contains(r#""status":"update""#), "{text}");
    assert!(
        text.contains(r#"{"status":"error","message":"refused"}"#),
        "{text}"
    );
    for t in [a, b, c] {
        t.stop().await;
    }
}
