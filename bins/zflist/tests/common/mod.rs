//! Helpers shared by the mount, signature, VM and derive tests: the real `zflist` binary,
//! `zflist mount` processes and a `hub-server` process.

#![allow(clippy::unwrap_used, dead_code)] // tests: a panic is the failure report

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const ZFLIST: &str = env!("CARGO_BIN_EXE_zflist");

/// The real `zflist`, stdin closed, with no inherited `ZFLIST_*` variable.
pub fn zflist() -> Command {
    let mut c = Command::new(ZFLIST);
    c.stdin(Stdio::null());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ZFLIST_") {
            c.env_remove(k);
        }
    }
    c
}

/// Runs `zflist args` with `env` added; see [`zflist`].
pub fn zflist_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = zflist();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("running zflist")
}

/// The stdout of a `zflist` run that must have succeeded.
pub fn stdout_ok(out: &Output) -> String {
    ok(out, "zflist")
}

pub fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\nstdout: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn run(cmd: &mut Command, what: &str) -> String {
    ok(&cmd.output().unwrap(), what)
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

pub fn is_mounted(mp: &Path) -> bool {
    let mp = p(mp).replace(' ', "\\040");
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(mp.as_str()))
}

/// A running `zflist mount`.
pub struct MountProc {
    pub child: Option<Child>,
    pub mp: PathBuf,
}

impl MountProc {
    pub fn start(flist: &str, mp: &Path, extra: &[&str]) -> MountProc {
        fs::create_dir_all(mp).unwrap();
        let child = zflist()
            .args(["--json", "mount", flist, p(mp)])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut m = MountProc {
            child: Some(child),
            mp: mp.to_path_buf(),
        };
        let t = Instant::now();
        while !is_mounted(mp) {
            if let Some(status) = m.child.as_mut().unwrap().try_wait().unwrap() {
                let out = m.child.take().unwrap().wait_with_output().unwrap();
                panic!(
                    "zflist mount exited ({status}): {}{}",
                    String::from_utf8_lossy(&out.stderr),
                    String::from_utf8_lossy(&out.stdout)
                );
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "mount did not appear"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn signal(&self, sig: &str) {
        run(
            Command::new("kill").args([sig, &self.pid().to_string()]),
            "kill",
        );
    }

    /// SIGTERM, wait, and the JSON `response` it printed.
    pub fn stop(mut self) -> Value {
        self.signal("-TERM");
        let out = self.child.take().unwrap().wait_with_output().unwrap();
        let text = ok(&out, "zflist mount");
        let env: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(env["success"], true, "{env}");
        assert!(!is_mounted(&self.mp), "SIGTERM must unmount");
        env["response"].clone()
    }
}

impl Drop for MountProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if is_mounted(&self.mp) {
            let _ = Command::new("umount").arg("-l").arg(&self.mp).status();
        }
    }
}

/// A `hub-server` process on a free port, with its chunks in `store_url`.
pub struct Hub {
    child: Child,
    pub base: String,
    pub token: String,
    _dir: tempfile::TempDir,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn hub_server_bin() -> PathBuf {
    // The workspace's hub binary: `cargo test --workspace` builds it next to zflist; when
    // only this package's tests were built, build it (same unified features as zflist).
    let bin = Path::new(ZFLIST).with_file_name("hub-server");
    if !bin.is_file() {
        let out = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "hub-server", "-p", "zflist"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        ok(&out, "cargo build -p hub-server");
    }
    bin
}

pub fn start_hub(store_url: &str, public_backend: &str) -> Hub {
    let bin = hub_server_bin();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = test_support::redis::free_port();
    let child = Command::new(&bin)
        .args(["serve", "--data-dir", p(&data)])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--store", store_url, "--public-backend", public_backend])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let t = Instant::now();
    loop {
        let up = Command::new("curl")
            .args([
                "-sf",
                "-o",
                "/dev/null",
                &format!("{base}/api/repositories"),
            ])
            .status()
            .unwrap()
            .success();
        if up {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "hub did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // `token create` needs the catalog, which the server made when it started.
    let token = test_support::hub::issue_token(&bin, &data, "alice", &[]);
    Hub {
        child,
        base,
        token,
        _dir: dir,
    }
}

impl Hub {
    pub fn upload_flist(&self, flist: &Path) -> Value {
        let out = run(
            Command::new("curl").args([
                "-sS",
                "-H",
                &format!("Authorization: bearer {}", self.token),
                "-F",
                &format!("file=@{}", p(flist)),
                &format!("{}/api/flist/me/upload-flist", self.base),
            ]),
            "upload-flist",
        );
        serde_json::from_str(&out).unwrap_or_else(|_| panic!("upload answer: {out}"))
    }

    /// POSTs a JSON body with the token; the status and the answer.
    pub fn post_json(&self, path: &str, body: &str) -> (u16, Value) {
        let out = run(
            Command::new("curl").args([
                "-sS",
                "-w",
                "\n%{http_code}",
                "-X",
                "POST",
                "-H",
                &format!("Authorization: bearer {}", self.token),
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                body,
                &format!("{}{path}", self.base),
            ]),
            "curl POST",
        );
        let (json, code) = out.trim_end().rsplit_once('\n').unwrap();
        (
            code.parse().unwrap(),
            serde_json::from_str(json).unwrap_or(Value::Null),
        )
    }

    /// GETs a path; the status and body.
    pub fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let out = Command::new("curl")
            .args([
                "-sS",
                "-w",
                "\n%{http_code}",
                &format!("{}{path}", self.base),
            ])
            .output()
            .unwrap();
        let text = out.stdout;
        let cut = text.iter().rposition(|&b| b == b'\n').unwrap();
        let code = std::str::from_utf8(&text[cut + 1..])
            .unwrap()
            .parse()
            .unwrap();
        (code, text[..cut].to_vec())
    }
}
