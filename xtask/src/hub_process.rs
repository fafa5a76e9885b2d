//! A release `hub-server` started for a benchmark on a free loopback port, with its own data
//! directory; killed when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A running hub.
pub struct HubProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    bin: std::path::PathBuf,
    data: std::path::PathBuf,
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl HubProcess {
    /// Starts `bin serve` on `data` with `env`, and waits until it accepts connections.
    pub fn start(bin: &Path, data: &Path, env: &[(&str, &str)]) -> Result<Self> {
        let port = free_port()?;
        let mut c = Command::new(bin);
        c.args(["serve", "--data-dir"])
            .arg(data)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c.spawn().context("starting hub-server")?;
        let hub = HubProcess {
            child,
            url: format!("http://127.0.0.1:{port}"),
            bin: bin.to_path_buf(),
            data: data.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("hub-server did not come up");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(hub)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An account `user` (made here) and an API token for it.
    pub fn token(&self, user: &str) -> Result<String> {
        let mut add = Command::new(&self.bin)
            .args(["user", "add", user, "--password-stdin", "--data-dir"])
            .arg(&self.data)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .context("hub-server user add")?;
        if let Some(mut stdin) = add.stdin.take() {
            use std::io::Write;
            stdin.write_all(b"a long bench password\n")?;
        }
        if !add.wait()?.success() {
            bail!("hub-server user add {user} failed");
        }
        let out = Command::new(&self.bin)
            .args(["token", "create", "--data-dir"])
            .arg(&self.data)
            .args(["--user", user, "--ttl", "1h"])
            .output()?;
        let token = String::from_utf8(out.stdout)?.trim().to_string();
        if token.is_empty() {
            bail!("no token: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(token)
    }

    /// Peak resident memory of the process so far, in KiB (`VmHWM`).
    pub fn peak_rss_kb(&self) -> Result<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        s.lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .context("no VmHWM in /proc/<pid>/status")
    }
}
