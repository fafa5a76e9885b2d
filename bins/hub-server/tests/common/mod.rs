//! Helpers for tests that run the real binaries.
#![allow(dead_code)]

pub mod big;
pub mod cluster;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_hub-server");

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The `zflist` binary next to `hub-server` (`cargo test --workspace` and `cargo xtask test`
/// build every binary of the workspace; a lone `cargo test -p hub-server` needs
/// `cargo build -p zflist` first: cargo holds its build lock while tests run).
pub fn zflist_bin() -> PathBuf {
    let p = Path::new(BIN).with_file_name("zflist");
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build -p zflist` (or the whole workspace's tests)",
        p.display()
    );
    p
}

pub struct Serve {
    pub child: Child,
    pub log: PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `hub-server serve --listen 127.0.0.1:<port>` in `cwd`, stdout and stderr to a file.
pub async fn serve(cwd: &Path, port: u16, extra: &[&str]) -> Serve {
    let log = cwd.join(format!("serve-{port}.log"));
    let out = std::fs::File::create(&log).expect("log file");
    let child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .spawn()
        .expect("spawn hub-server");
    let s = Serve { child, log };
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
        {
            if r.status().is_success() {
                return s;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "hub-server did not come up: {}",
        std::fs::read_to_string(&s.log).unwrap_or_default()
    );
}

pub fn run(cwd: &Path, bin: &Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut c = Command::new(bin)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    if let Some(s) = stdin {
        c.stdin
            .take()
            .expect("stdin")
            .write_all(s.as_bytes())
            .expect("write stdin");
    }
    drop(c.stdin.take());
    c.wait_with_output().expect("wait")
}

pub fn ok(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
}

/// Starts `hub-server serve --data-dir DATA` on `port` (output discarded) and waits until it
/// answers `/api/repositories`.
pub async fn spawn_server(data: &Path, port: u16) -> Child {
    let mut child = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn hub-server");
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/api/repositories"))
            .send()
            .await
        {
            if r.status().is_success() {
                return child;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("hub-server did not come up on port {port}");
}
