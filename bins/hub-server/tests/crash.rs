//! The real `hub-server` binary: `kill -9` during an upload leaves no partial entry and a
//! clean catalog; token CLI; graceful shutdown on SIGTERM.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

mod common;
use common::{free_port, spawn_server, BIN};

fn multipart_parts(boundary: &str, name: &str) -> (Vec<u8>, Vec<u8>) {
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: application/gzip\r\n\r\n"
    );
    (
        head.into_bytes(),
        format!("\r\n--{boundary}--\r\n").into_bytes(),
    )
}

#[tokio::test]
async fn kill_during_upload_leaves_previous_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    drop(hub_repo::Hub::open(&data).expect("create the catalog"));
    let token = test_support::hub::issue_token(Path::new(BIN), &data, "alice", &[]);
    assert_eq!(token.len(), 43);

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = spawn_server(&data, port).await;
    let client = reqwest::Client::new();
    let archive = std::fs::read(test_support::fixture("fixture-tree.tar.gz")).expect("fixture");
    let boundary = "crashboundary";

    // One complete upload: the state to keep.
    let (head, tail) = multipart_parts(boundary, "complete.tar.gz");
    let body = [head, archive.clone(), tail].concat();
    let r = client
        .post(format!("{base}/api/flist/me/upload"))
        .bearer_auth(&token)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let md5_before = client
        .get(format!("{base}/alice/complete.flist.md5"))
        .send()
        .await
        .expect("md5")
        .text()
        .await
        .expect("t");

    // A second upload that stops half way; the server is killed while it waits for the rest.
    let (head, _) = multipart_parts(boundary, "partial.tar.gz");
    let first = [head, archive[..archive.len() / 2].to_vec()].concat();
    let (sent_tx, sent_rx) = tokio::sync::oneshot::channel::<()>();
    let stream =
        futures::stream::once(async move { Ok::<_, std::io::Error>(bytes::Bytes::from(first)) })
            .chain(futures::stream::once(async move {
                let _ = sent_tx.send(());
                futures::future::pending::<()>().await;
                Ok(bytes::Bytes::new())
            }));
    let pending = tokio::spawn({
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        async move {
            client
                .post(format!("{base}/api/flist/me/upload"))
                .bearer_auth(&token)
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(reqwest::Body::wrap_stream(stream))
                .send()
                .await
        }
    });
    sent_rx.await.expect("first half sent");
    // Let the server take in what was sent before pulling the plug.
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.kill().expect("kill -9");
    server.wait().expect("reap");
    assert!(
        pending.await.expect("join").is_err(),
        "the interrupted upload cannot have succeeded"
    );

    // Restart: the previous state, nothing partial.
    let mut server = spawn_server(&data, port).await;
    let listing: Value = client
        .get(format!("{base}/api/flist/alice"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let names: Vec<&str> = listing
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, ["complete.flist"]);
    let md5_after = client
        .get(format!("{base}/alice/complete.flist.md5"))
        .send()
        .await
        .expect("md5")
        .text()
        .await
        .expect("t");
    assert_eq!(md5_before, md5_after);
    let r = client
        .get(format!("{base}/alice/partial.flist"))
        .send()
        .await
        .expect("partial");
    assert_eq!(r.status(), 404);

    // Graceful stop on SIGTERM, then the offline integrity check.
    let status = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let exit = server.wait().expect("wait");
    assert!(exit.success(), "graceful shutdown exit: {exit:?}");
    let check = Command::new(BIN)
        .args(["check", "--data-dir"])
        .arg(&data)
        .output()
        .expect("check");
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && stdout.contains("clean"),
        "{stdout} {}",
        String::from_utf8_lossy(&check.stderr)
    );
    // No temp files survive a restart.
    let leftovers: Vec<_> = std::fs::read_dir(data.join("tmp")).expect("tmp").collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Revoking through the CLI.
    let out = Command::new(BIN)
        .args(["token", "revoke", "--data-dir"])
        .arg(&data)
        .arg(&token)
        .output()
        .expect("revoke");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(BIN)
        .args(["token", "revoke", "--data-dir"])
        .arg(&data)
        .arg(&token)
        .output()
        .expect("revoke");
    assert!(!out.status.success(), "second revoke must fail");
    // A value starting with `-` is a token, not an option.
    let out = Command::new(BIN)
        .args(["token", "revoke", "--data-dir"])
        .arg(&data)
        .arg("-Cnot-a-token")
        .output()
        .expect("revoke");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no such active token"),
        "{err}"
    );
}
