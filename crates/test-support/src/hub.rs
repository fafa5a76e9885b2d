//! A real `hub-server` process on a free loopback port, for client tests (`zflist hub`,
//! `zflist push`): its own data directory, tokens issued with `hub-server token create`,
//! plain HTTP/1.1 reads over a socket, and the count of chunks in its `dir://` store.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::redis::free_port;

/// Public backend the test hubs announce.
pub const PUBLIC_BACKEND: &str = "zdb://hub.example.org:9900/public";

/// The `hub-server` binary of this workspace (`target/<profile>/hub-server` next to the
/// calling test's `binary`). When it is missing or older than a source file of the
/// workspace, it is rebuilt once per test process with `cargo build -p hub-server`.
pub fn hub_server_bin(binary_next_to: &Path) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = binary_next_to
                .parent()
                .expect("a binary lives in a directory");
            let bin = dir.join("hub-server");
            let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
            let root = crate::workspace_root();
            // what hub-server is built from (not test-support: tests do not change it)
            let newest = [
                "crates/flist-format",
                "crates/flist-store",
                "crates/flist-convert",
                "crates/hub-repo",
                "crates/hub-http",
                "bins/hub-server",
                "Cargo.lock",
            ]
            .iter()
            .filter_map(|p| newest_source(&root.join(p)))
            .max();
            let fresh = matches!((built, newest), (Some(b), Some(n)) if b >= n);
            if !fresh {
                let release = dir.file_name().is_some_and(|n| n == "release");
                let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
                let mut c = Command::new(cargo);
                c.current_dir(&root).args([
                    "build",
                    "--quiet",
                    "-p",
                    "hub-server",
                    "--bin",
                    "hub-server",
                ]);
                if release {
                    c.arg("--release");
                }
                let st = c.status().expect("running cargo build -p hub-server");
                assert!(st.success(), "cargo build -p hub-server failed");
            }
            assert!(bin.exists(), "{} was not built", bin.display());
            bin
        })
        .clone()
}

/// The newest modification time of a file under `p` (sources and manifests only).
fn newest_source(p: &Path) -> Option<std::time::SystemTime> {
    let md = std::fs::symlink_metadata(p).ok()?;
    if md.is_file() {
        return md.modified().ok();
    }
    if !md.is_dir() || p.file_name().is_some_and(|n| n == "target" || n == "tests") {
        return None;
    }
    std::fs::read_dir(p)
        .ok()?
        .flatten()
        .filter_map(|e| newest_source(&e.path()))
        .max()
}

/// A running `hub-server serve`; killed when dropped.
pub struct HubProcess {
    child: Child,
    bin: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    extra_env: Vec<(String, String)>,
}

impl HubProcess {
    /// Starts `bin serve` on a free port with a fresh data directory.
    pub fn start(bin: &Path) -> Self {
        Self::start_with_env(bin, &[])
    }

    /// Same, with extra `HUB_*` variables.
    pub fn start_with_env(bin: &Path, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let extra_env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let port = free_port();
        let child = spawn(bin, dir.path(), port, &extra_env);
        let h = HubProcess {
            child,
            bin: bin.to_path_buf(),
            port,
            dir,
            extra_env,
        };
        h.wait_up();
        h
    }

    fn wait_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok((200, _)) = self.try_get("/api/repositories") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("hub-server did not come up on port {}", self.port);
    }

    /// Kills and restarts the server on the same port and data.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.bin, self.dir.path(), self.port, &self.extra_env);
        self.wait_up();
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The hub's chunk store directory (`dir://<data>/chunks`).
    pub fn chunks_dir(&self) -> PathBuf {
        self.data_dir().join("chunks")
    }

    /// `dir://` URL of the hub's chunk store (for packing straight into it).
    pub fn store_url(&self) -> String {
        format!("dir://{}", self.chunks_dir().display())
    }

    /// Number of chunks in the hub's store, and their total size.
    pub fn chunk_count(&self) -> (u64, u64) {
        let mut n = 0;
        let mut bytes = 0;
        let Ok(rd) = std::fs::read_dir(self.chunks_dir()) else {
            return (0, 0);
        };
        for sub in rd.flatten() {
            if !sub.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            for f in std::fs::read_dir(sub.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = f.file_name();
                let name = name.to_string_lossy();
                if name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                    n += 1;
                    bytes += f.metadata().map(|m| m.len()).unwrap_or(0);
                }
            }
        }
        (n, bytes)
    }

    /// Whether the store holds `hex_key`.
    pub fn has_chunk(&self, hex_key: &str) -> bool {
        hex_key.len() > 2 && self.chunks_dir().join(&hex_key[..2]).join(hex_key).exists()
    }

    /// Issues a token for `user`, member of `orgs` ([`issue_token`]).
    pub fn token(&self, user: &str, orgs: &[&str]) -> String {
        issue_token(&self.bin, &self.data_dir(), user, orgs)
    }

    fn try_get(&self, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
        http_get(self.port, path)
    }

    /// `GET path`: status and body (panics when the server cannot be reached).
    pub fn get(&self, path: &str) -> (u16, Vec<u8>) {
        self.try_get(path).expect("GET from hub-server")
    }

    /// `method path` with `headers` and `body`, the path sent exactly as given
    /// ([`http_request`]); panics when the server cannot be reached.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        http_request(self.port, method, path, headers, body).expect("request to hub-server")
    }

    /// `GET path` as JSON; panics on a non-200 status or non-JSON.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (s, body) = self.get(path);
        assert_eq!(s, 200, "GET {path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).expect("JSON body")
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(bin: &Path, dir: &Path, port: u16, env: &[(String, String)]) -> Child {
    let mut c = Command::new(bin);
    c.args(["serve", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}")]);
    // The tests' fixed backend, unless the test chose one (`HUB_PUBLIC_BACKEND`, empty: the
    // hub's own default).
    if !env.iter().any(|(k, _)| k == "HUB_PUBLIC_BACKEND") {
        c.args(["--public-backend", PUBLIC_BACKEND]);
    }
    c.env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().expect("spawning hub-server")
}

/// A minimal HTTP/1.1 GET over a loopback socket (`Connection: close`), de-chunking the
/// body when needed.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    http_request(port, "GET", path, &[], b"")
}

/// `method path` with `headers` and `body` over a loopback socket, the request target sent
/// exactly as given (no normalisation, no percent-encoding: `:` stays raw), `Connection:
/// close`; the status and the de-chunked body.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let body = raw[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    let body = if chunked { dechunk(&body) } else { body };
    Ok((status, body))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&b[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        let end = (start + size).min(b.len());
        out.extend_from_slice(&b[start..end]);
        b = &b[(end + 2).min(b.len())..];
    }
    out
}

/// Makes the account `user` with `hub-server user add` unless it exists (tokens go to
/// accounts only), then issues it a one-hour token, member of `orgs`, with `hub-server token
/// create`, and returns the token. The data directory must hold a catalog.
pub fn issue_token(bin: &Path, data_dir: &Path, user: &str, orgs: &[&str]) -> String {
    let listed = Command::new(bin)
        .args(["user", "list", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("hub-server user list");
    let exists = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .any(|l| l.split_whitespace().next() == Some(user));
    if !exists {
        let mut add = Command::new(bin)
            .args(["user", "add", user, "--password-stdin", "--data-dir"])
            .arg(data_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("hub-server user add");
        if let Some(mut stdin) = add.stdin.take() {
            stdin
                .write_all(b"a long test password\n")
                .expect("password to hub-server user add");
        }
        let out = add.wait_with_output().expect("hub-server user add");
        assert!(
            out.status.success(),
            "user add {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut c = Command::new(bin);
    c.args(["token", "create", "--data-dir"])
        .arg(data_dir)
        .args(["--user", user, "--ttl", "1h"]);
    for o in orgs {
        c.args(["--member-of", o]);
    }
    let out = c.output().expect("hub-server token create");
    assert!(
        out.status.success(),
        "token create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}
