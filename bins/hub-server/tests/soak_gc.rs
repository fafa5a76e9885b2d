//! The real `hub-server` binary under a bad day (issue 12, finding 11 and the soak of its
//! "Must show"): concurrent writers replacing and deleting flists while `hub-server gc` runs
//! from another process, `kill -9` in the middle, restart; then `check` is clean and, after
//! `gc`, no flist file is left that no entry references. Also: an admin command run while the
//! server is serving never removes an upload in flight from `tmp/`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sha2::Digest;
use test_support::archive::{gzip, RawTar};

mod common;
use common::{free_port, spawn_server, BIN};

fn cli(args: &[&str], data: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .expect("run hub-server")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn archive(content: &str) -> Vec<u8> {
    gzip(
        &RawTar::new()
            .file("etc/version", content.as_bytes())
            .file("bin/tool", b"#!/bin/sh\n")
            .finish(),
    )
}

async fn upload(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    file: &str,
    data: Vec<u8>,
) -> reqwest::Result<reqwest::Response> {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(data).file_name(file.to_string()),
    );
    client
        .post(format!("{base}/api/flist/me/upload"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
}

fn files_under(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for d in std::fs::read_dir(dir).expect("flists").flatten() {
        for f in std::fs::read_dir(d.path()).expect("dir").flatten() {
            out.insert(f.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_admin_command_while_serving_keeps_uploads_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // `token create` refuses a directory without a catalog.
    drop(hub_repo::Hub::open(&data).expect("create the catalog"));
    let token = test_support::hub::issue_token(Path::new(BIN), &data, "alice", &[]);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = spawn_server(&data, port).await;
    let client = reqwest::Client::new();
    let r = upload(&client, &base, &token, "base.tar.gz", archive("1.0"))
        .await
        .expect("upload");
    assert_eq!(r.status(), 200);
    let flist = client
        .get(format!("{base}/alice/base.flist"))
        .send()
        .await
        .expect("download")
        .bytes()
        .await
        .expect("bytes")
        .to_vec();

    // Upload it again as `copy.flist`, stopping half way: the server stages it in tmp/.
    let boundary = "soakboundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"copy.flist\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let half = flist.len() / 2;
    let first = [head.into_bytes(), flist[..half].to_vec()].concat();
    let rest = [
        flist[half..].to_vec(),
        format!("\r\n--{boundary}--\r\n").into_bytes(),
    ]
    .concat();
    let (more_tx, more_rx) = tokio::sync::oneshot::channel::<()>();
    let body = futures::stream::unfold(
        (Some(first), Some((more_rx, rest))),
        |(first, later)| async move {
            if let Some(f) = first {
                return Some((
                    Ok::<_, std::io::Error>(bytes::Bytes::from(f)),
                    (None, later),
                ));
            }
            let (rx, rest) = later?;
            let _ = rx.await;
            Some((Ok(bytes::Bytes::from(rest)), (None, None)))
        },
    );
    let pending = tokio::spawn({
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        async move {
            client
                .post(format!("{base}/api/flist/me/upload-flist"))
                .bearer_auth(&token)
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(reqwest::Body::wrap_stream(body))
                .send()
                .await
        }
    });
    let tmp = data.join("tmp");
    let mut staged = Vec::new();
    for _ in 0..200 {
        staged = std::fs::read_dir(&tmp)
            .expect("tmp")
            .flatten()
            .map(|e| e.path())
            .collect();
        if !staged.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(!staged.is_empty(), "the upload is not staged in tmp/");

    // Admin commands while the upload is in flight.
    test_support::hub::issue_token(Path::new(BIN), &data, "bob", &[]);
    ok(&cli(&["gc", "--grace", "0s"], &data));
    for p in &staged {
        assert!(p.exists(), "{} was removed under the upload", p.display());
    }
    let _ = more_tx.send(());
    let r = pending.await.expect("join").expect("upload-flist");
    let status = r.status();
    assert_eq!(status, 200, "{:?}", r.text().await);
    let md5 = |p: &'static str| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            client
                .get(format!("{base}{p}"))
                .send()
                .await
                .expect("md5")
                .text()
                .await
                .expect("text")
        }
    };
    assert_eq!(
        md5("/alice/copy.flist.md5").await,
        md5("/alice/base.flist.md5").await
    );
    server.kill().expect("kill");
    server.wait().expect("reap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak_with_gc_and_kill_ends_clean_with_no_orphans() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // `token create` refuses a directory without a catalog.
    drop(hub_repo::Hub::open(&data).expect("create the catalog"));
    let token = test_support::hub::issue_token(Path::new(BIN), &data, "alice", &[]);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = spawn_server(&data, port).await;
    let client = reqwest::Client::new();

    // Writers replace and delete flists; each upload is new content (old files become
    // garbage). `gc` runs from another process meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..6)
        .map(|w| {
            let (client, base, token, stop) =
                (client.clone(), base.clone(), token.clone(), stop.clone());
            tokio::spawn(async move {
                let mut done = 0u32;
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let name = format!("w{w}-{}", n % 3);
                    let content = format!("writer {w} round {n}");
                    match upload(
                        &client,
                        &base,
                        &token,
                        &format!("{name}.tar.gz"),
                        archive(&content),
                    )
                    .await
                    {
                        Ok(r) if r.status() == 200 => done += 1,
                        Ok(r) => panic!("upload answered {}: {:?}", r.status(), r.text().await),
                        Err(_) => break, // the server was killed
                    }
                    if n.is_multiple_of(5) {
                        let _ = client
                            .delete(format!("{base}/api/flist/me/{name}.flist"))
                            .bearer_auth(&token)
                            .send()
                            .await;
                    }
                }
                done
            })
        })
        .collect();
    let gc_runs = tokio::task::spawn_blocking({
        let data = data.clone();
        move || {
            let mut runs = 0;
            for _ in 0..4 {
                std::thread::sleep(Duration::from_millis(400));
                ok(&cli(&["gc", "--grace", "0s"], &data));
                runs += 1;
            }
            runs
        }
    })
    .await
    .expect("gc runs");
    assert_eq!(gc_runs, 4);
    // Everything uploaded so far reads back (gc removed nothing referenced).
    let listing: Value = client
        .get(format!("{base}/api/flist/alice"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    for e in listing.as_array().expect("array") {
        let name = e["name"].as_str().expect("name");
        let get = |url: String| {
            let client = client.clone();
            async move { client.get(url).send().await.expect("request").status() }
        };
        let status = get(format!("{base}/alice/{name}")).await;
        if status == 200 {
            continue;
        }
        // The writers still run: a 404 is fine only when the entry was deleted since the
        // listing. An entry the catalog still has must download (gc removed nothing
        // referenced), asked again after the catalog answer.
        let still_listed = get(format!("{base}/api/flist/alice/{name}/light")).await;
        if still_listed == 200 {
            let again = get(format!("{base}/alice/{name}")).await;
            assert_eq!(again, 200, "{name} is gone while referenced");
        } else {
            assert_eq!(status, 404, "{name}: {status}");
        }
    }
    // kill -9 in the middle of the writes.
    server.kill().expect("kill -9");
    server.wait().expect("reap");
    stop.store(true, Ordering::Relaxed);
    let mut uploads = 0;
    for w in writers {
        uploads += w.await.expect("writer");
    }
    assert!(uploads >= 12, "only {uploads} uploads went through");

    // Restart: clean, and what no entry references is collected.
    let mut server = spawn_server(&data, port).await;
    // Sound; files the killed writers left without an entry are garbage: reported as such,
    // and not a failure.
    let first = cli(&["check"], &data);
    let check = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(first.status.success(), "{check}");
    assert!(check.contains(": clean"), "{check}");
    let gc = ok(&cli(&["gc", "--grace", "0s"], &data));
    assert!(gc.contains("collected"), "{gc}");
    let check = ok(&cli(&["check"], &data));
    assert!(check.contains(": clean"), "{check}");
    assert!(
        check.contains("garbage to collect: 0 unreferenced, 0 unrecorded"),
        "{check}"
    );
    assert!(!check.contains("run `hub-server gc`"), "{check}");

    // Exactly the files of the remaining entries are stored, and each downloads intact.
    let listing: Value = client
        .get(format!("{base}/api/flist/alice"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let mut referenced = BTreeSet::new();
    for e in listing.as_array().expect("array") {
        let name = e["name"].as_str().expect("name");
        let body = client
            .get(format!("{base}/alice/{name}"))
            .send()
            .await
            .expect("download")
            .bytes()
            .await
            .expect("bytes");
        referenced.insert(hex::encode(sha2::Sha256::digest(&body)));
    }
    assert!(!referenced.is_empty());
    assert_eq!(files_under(&data.join("flists")), referenced);
    server.kill().expect("kill");
    server.wait().expect("reap");
}

/// After an ordinary delete, `check` reports the file no entry references as expected
/// garbage, names it and passes (exit 0); `gc` removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_garbage_after_a_delete_and_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    drop(hub_repo::Hub::open(&data).expect("create the catalog"));
    let token = test_support::hub::issue_token(Path::new(BIN), &data, "alice", &[]);
    let port = free_port();
    let mut server = spawn_server(&data, port).await;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for (file, content) in [("keep.tar.gz", "1"), ("gone.tar.gz", "2")] {
        let r = upload(&client, &base, &token, file, archive(content))
            .await
            .expect("upload");
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    }
    let clean = ok(&cli(&["check"], &data));
    assert!(clean.contains(": clean"), "{clean}");
    // Deleting an entry leaves its file to `gc`: garbage, not a problem.
    let r = client
        .delete(format!("{base}/api/flist/me/gone.flist"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 200);
    let _ = server.kill();
    let _ = server.wait();

    let out = cli(&["check"], &data);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "garbage does not fail the check: {stdout}"
    );
    assert!(stdout.contains(": clean"), "{stdout}");
    assert!(stdout.contains("unreferenced flist file "), "{stdout}");
    assert!(
        stdout.contains("garbage to collect: 1 unreferenced"),
        "{stdout}"
    );
    assert!(
        stdout.contains("expected after deletes") && stdout.contains("run `hub-server gc`"),
        "{stdout}"
    );
    ok(&cli(&["gc", "--grace", "0s"], &data));
    let after = ok(&cli(&["check"], &data));
    assert!(after.contains(": clean"), "{after}");
    assert!(
        after.contains("garbage to collect: 0 unreferenced, 0 unrecorded"),
        "{after}"
    );
}
