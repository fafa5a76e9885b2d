//! A real `redis-server` on a free loopback port, for tests and benches.
//!
//! ```no_run
//! let mut server = test_support::RedisServer::start();
//! let url = server.url(); // redis://127.0.0.1:<port>/0
//! server.kill();
//! server.restart(); // same port
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child process with persistence off (`--save "" --appendonly no`),
/// listening on `127.0.0.1:<port>`, with its working directory in a temp dir. Dropping it
/// kills the process.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    password: Option<String>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// A reply read by [`RedisServer::command`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisReply {
    /// `+...`
    Status(String),
    /// `-...`
    Error(String),
    /// `:n`
    Int(i64),
    /// `$n ...`, `None` for nil.
    Bulk(Option<Vec<u8>>),
    /// `*n ...`, empty for nil.
    Array(Vec<RedisReply>),
}

fn require_redis() {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("redis-server").is_file()))
        .unwrap_or(false);
    if !found {
        panic!(
            "redis-server is not on PATH: these tests run a real one. \
             Install it (Debian/Ubuntu: `apt-get install -y redis-server`) and run again."
        );
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral loopback port")
}

impl RedisServer {
    /// Starts a server without a password.
    pub fn start() -> Self {
        Self::start_inner(None)
    }

    /// Starts a server with `requirepass <password>`.
    pub fn start_with_password(password: &str) -> Self {
        Self::start_inner(Some(password.to_owned()))
    }

    fn start_inner(password: Option<String>) -> Self {
        require_redis();
        let mut last_err = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("creating a temp dir for redis-server");
            let mut server = RedisServer {
                port: free_port(),
                password: password.clone(),
                dir,
                child: None,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last_err = e,
            }
        }
        panic!("redis-server did not start: {last_err}");
    }

    /// Spawns the process on `self.port` and waits until it answers PING.
    fn spawn(&mut self) -> Result<(), String> {
        let log = self.dir.path().join("redis.log");
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(pw) = &self.password {
            cmd.arg("--requirepass").arg(pw);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run redis-server: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("redis-server exited ({status}); log:\n{log}"));
            }
            if self.ping() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "redis-server on port {} never answered PING",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ping(&self) -> bool {
        // An answer of any kind (`+PONG`, or `-NOAUTH` with a password) means it is up.
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        if s.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
            return false;
        }
        let mut b = [0u8; 1];
        matches!(s.read(&mut b), Ok(1) if b[0] == b'+' || b[0] == b'-')
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The password, if any.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The server's working directory (holds `redis.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `redis://[:password@]127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    /// `zdb://[:password@]127.0.0.1:<port>` (the zdb client works against Redis too, in the
    /// `default` namespace).
    pub fn zdb_url(&self) -> String {
        match &self.password {
            Some(pw) => format!("zdb://:{pw}@127.0.0.1:{}", self.port),
            None => format!("zdb://127.0.0.1:{}", self.port),
        }
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the process gracefully (`SHUTDOWN NOSAVE`), killing it if that fails.
    pub fn stop(&mut self) {
        if self.child.is_some() {
            let _ = self.command(&[b"SHUTDOWN", b"NOSAVE"]);
            if let Some(c) = self.child.as_mut() {
                let deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = c.try_wait() {
                        self.child = None;
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            self.kill();
        }
    }

    /// Starts the server again on the same port (after [`stop`](Self::stop) or
    /// [`kill`](Self::kill); restarts a running one). The data is gone: persistence is off.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => {
                    panic!("redis-server did not restart on port {}: {e}", self.port)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Sends one command on a fresh raw connection (authenticating first when the server
    /// has a password) and returns the reply. For tests acting behind a client's back.
    pub fn command(&self, args: &[&[u8]]) -> std::io::Result<RedisReply> {
        let s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut w = s.try_clone()?;
        let mut r = BufReader::new(s);
        if let Some(pw) = &self.password {
            w.write_all(&encode(&[b"AUTH", pw.as_bytes()]))?;
            read_reply(&mut r)?;
        }
        w.write_all(&encode(args))?;
        read_reply(&mut r)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn bad(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

/// Reads one RESP reply.
pub fn read_reply(r: &mut impl BufRead) -> std::io::Result<RedisReply> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.len() < 3 || !line.ends_with(b"\r\n") {
        return Err(bad("truncated reply"));
    }
    let body = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
    let num = || {
        body.parse::<i64>()
            .map_err(|_| bad(format!("bad number {body:?}")))
    };
    Ok(match line[0] {
        b'+' => RedisReply::Status(body),
        b'-' => RedisReply::Error(body),
        b':' => RedisReply::Int(num()?),
        b'$' => {
            let n = num()?;
            if n < 0 {
                RedisReply::Bulk(None)
            } else {
                let mut v = vec![0u8; n as usize + 2];
                r.read_exact(&mut v)?;
                v.truncate(n as usize);
                RedisReply::Bulk(Some(v))
            }
        }
        b'*' => {
            let n = num()?;
            let mut items = Vec::new();
            for _ in 0..n.max(0) {
                items.push(read_reply(r)?);
            }
            RedisReply::Array(items)
        }
        _ => {
            return Err(bad(format!(
                "bad reply {:?}",
                String::from_utf8_lossy(&line)
            )))
        }
    })
}
