//! A private repository from the client's side (issue 27): a real `hub-server` whose
//! repository `alice` was made private with `hub-server repo visibility`; `zflist extract`,
//! `verify` and `mount` (real FUSE) of its flist by URL need a token of a member
//! (`--token`, or `ZFLIST_HUB_TOKEN`), sent as `Authorization: bearer`; without one, or
//! with a non-member's, the hub answers 404. Chunks need no token (public by key).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::*;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn curl_code(args: &[&str]) -> u16 {
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
}

fn same_tree(a: &Path, b: &Path) {
    for rel in ["etc/hostname", "usr/share/data.bin"] {
        assert_eq!(
            fs::read(a.join(rel)).unwrap(),
            fs::read(b.join(rel)).unwrap(),
            "{rel}"
        );
    }
}

#[test]
fn a_private_flist_is_extracted_verified_and_mounted_with_a_member_token() {
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let src = s.join("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::create_dir_all(src.join("usr/share")).unwrap();
    fs::write(src.join("etc/hostname"), "private\n").unwrap();
    let blob: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(src.join("usr/share/data.bin"), &blob).unwrap();
    let archive = s.join("app.tar.gz");
    run(
        Command::new("tar").args(["-czf", p(&archive), "-C", p(&src), "."]),
        "tar",
    );

    let port = test_support::redis::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let data = s.join("data");
    let server = Server(
        Command::new(hub_server_bin())
            .args(["serve", "--data-dir", p(&data)])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    while curl_code(&[&format!("{base}/api/repositories")]) != 200 {
        assert!(t.elapsed() < Duration::from_secs(30), "hub did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let alice = test_support::hub::issue_token(&hub_server_bin(), &data, "alice", &[]);
    let bob = test_support::hub::issue_token(&hub_server_bin(), &data, "bob", &[]);
    // Private before its first flist, by the operator.
    let out = Command::new(hub_server_bin())
        .args([
            "repo",
            "visibility",
            "--data-dir",
            p(&data),
            "alice",
            "private",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let code = curl_code(&[
        "-H",
        &format!("Authorization: bearer {alice}"),
        "-F",
        &format!("file=@{}", p(&archive)),
        &format!("{base}/api/flist/me/upload"),
    ]);
    assert_eq!(code, 200);
    let url = format!("{base}/alice/app.flist");
    // The server notices the operator's write within its 2 s watch.
    let t = Instant::now();
    while curl_code(&[&url]) != 404 {
        assert!(t.elapsed() < Duration::from_secs(10), "still public");
        std::thread::sleep(Duration::from_millis(100));
    }

    // No token, a non-member's token: the hub answers 404, the client says so.
    for (args, env) in [
        (vec![], vec![]),
        (vec!["--token", bob.as_str()], vec![]),
        (vec![], vec![("ZFLIST_HUB_TOKEN", bob.as_str())]),
    ] {
        let out_dir = s.join("refused");
        let mut cmd = zflist();
        cmd.arg("extract").arg(&url).arg(&out_dir).args(&args);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(err.contains("404"), "{err}");
        assert!(!out_dir.exists());
    }

    // The member's token: --token, then ZFLIST_HUB_TOKEN.
    let out1 = s.join("out1");
    run(
        zflist().args(["extract", &url, p(&out1), "--token", &alice]),
        "extract --token",
    );
    same_tree(&out1, &src);
    let out2 = s.join("out2");
    run(
        zflist()
            .env("ZFLIST_HUB_TOKEN", &alice)
            .args(["extract", &url, p(&out2)]),
        "extract with ZFLIST_HUB_TOKEN",
    );
    same_tree(&out2, &src);
    run(
        zflist().args(["verify", &url, "--token", &alice]),
        "verify --token",
    );
    let refused = zflist().args(["verify", &url]).output().unwrap();
    assert!(!refused.status.success());

    // mount (real FUSE): the flist with the token; its chunks from the hub's public /chunks/.
    let mp = s.join("mnt");
    let m = MountProc::start(&url, &mp, &["--no-cache", "--token", &alice]);
    same_tree(&mp, &src);
    let stats = m.stop();
    assert!(stats["fetched_chunks"].as_u64().unwrap() >= 2, "{stats}");
    drop(server);
}
