//! A real 0-db server (`zdb`, v2.0.7 from `../shared/vendor/`) on a free loopback port, for
//! tests and benches.
//!
//! ```no_run
//! use test_support::{NsConfig, ZdbServer};
//! let mut server = ZdbServer::start(); // --mode user, admin password "admin"
//! server.namespace("chunks", NsConfig { password: Some("pw".into()), ..NsConfig::default() });
//! let url = server.url("chunks", Some("pw")); // zdb://:pw@127.0.0.1:<port>/chunks
//! server.kill();
//! server.restart(); // same port, same data and index directories
//! ```
//!
//! The binary is, in order: `$ZDB_BIN`; `zdb` on `PATH`; or built once from
//! `../shared/vendor/0-db-v2.0.7.tar.gz` (or `$ZDB_TARBALL`) into `target/zdb/v2.0.7/zdb`
//! with `cc` and `make` (see [`binary`]). The build is cached and safe when several test
//! processes start at once (an exclusive file lock, then an atomic rename). A missing
//! compiler or `make` fails with a clear message: the tests never skip.

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::redis::{encode, free_port, read_reply, RedisReply};

/// The vendored 0-db release the harness builds.
pub const ZDB_VERSION: &str = "2.0.7";

/// How a namespace stores keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NsMode {
    /// The client chooses keys.
    User,
    /// The server chooses keys (`SET` ignores the key). On the real server this needs
    /// [`ZdbServer::start_mixed`]: a `--mode user` server refuses `NSSET ns mode seq`.
    Sequential,
}

/// A namespace's settings.
#[derive(Clone, Debug)]
pub struct NsConfig {
    /// Password (`None`: open namespace).
    pub password: Option<String>,
    /// Public: selectable read-only without the password.
    pub public: bool,
    /// Key mode.
    pub mode: NsMode,
    /// Writes refused with `-Namespace is temporarily locked`.
    pub locked: bool,
    /// Reads and writes refused with `-Namespace is temporarily frozen`.
    pub frozen: bool,
    /// Size limit in bytes of stored values (`None`: unlimited).
    pub maxsize: Option<usize>,
}

impl Default for NsConfig {
    fn default() -> Self {
        NsConfig {
            password: None,
            public: true,
            mode: NsMode::User,
            locked: false,
            frozen: false,
            maxsize: None,
        }
    }
}

/// A real `zdb` child process listening on `127.0.0.1:<port>`, with its data and index
/// directories in a temp dir that lives as long as this value. Dropping it kills the process.
#[derive(Debug)]
pub struct ZdbServer {
    port: u16,
    admin: String,
    mixed: bool,
    bin: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Namespaces created through [`namespace`](Self::namespace), for the password.
    namespaces: Mutex<HashMap<String, NsConfig>>,
}

impl ZdbServer {
    /// Starts a server in `--mode user` with admin password `admin`.
    pub fn start() -> Self {
        Self::start_with("admin", false)
    }

    /// Starts a server in mixed mode (no `--mode`): namespaces may be switched to sequential
    /// mode with `NSSET ns mode seq`.
    pub fn start_mixed() -> Self {
        Self::start_with("admin", true)
    }

    /// Starts a server with the given admin password; `mixed`: no `--mode user`.
    pub fn start_with(admin: &str, mixed: bool) -> Self {
        let bin = binary().unwrap_or_else(|e| panic!("{e}"));
        let mut last_err = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("creating a temp dir for zdb");
            let mut server = ZdbServer {
                port: free_port(),
                admin: admin.to_owned(),
                mixed,
                bin: bin.clone(),
                dir,
                child: None,
                namespaces: Mutex::new(HashMap::new()),
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last_err = e,
            }
        }
        panic!("zdb did not start: {last_err}");
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("zdb.log")
    }

    /// Spawns the process on `self.port` and waits until it answers PING.
    fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("cannot open the zdb log: {e}"))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("cannot open the zdb log: {e}"))?;
        let mut cmd = Command::new(&self.bin);
        cmd.args(["--listen", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .arg("--data")
            .arg(self.data_dir())
            .arg("--index")
            .arg(self.index_dir())
            .arg("--admin")
            .arg(&self.admin)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        if !self.mixed {
            cmd.args(["--mode", "user"]);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                return Err(format!("zdb exited ({status}); log:\n{log}"));
            }
            if matches!(self.raw(&[b"PING"]), Ok(RedisReply::Status(s)) if s == "PONG") {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("zdb on port {} never answered PING", self.port));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin password.
    pub fn admin_password(&self) -> &str {
        &self.admin
    }

    /// The data directory (`--data`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The index directory (`--index`).
    pub fn index_dir(&self) -> PathBuf {
        self.dir.path().join("index")
    }

    /// The server's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `zdb://[:password@]127.0.0.1:<port>/<namespace>`.
    pub fn url(&self, namespace: &str, password: Option<&str>) -> String {
        match password {
            Some(pw) => format!("zdb://:{pw}@127.0.0.1:{}/{namespace}", self.port),
            None => format!("zdb://127.0.0.1:{}/{namespace}", self.port),
        }
    }

    /// Creates a namespace (`NSNEW`, then `NSSET` for each setting that differs from 0-db's
    /// defaults), as the admin. Panics when the server refuses.
    pub fn namespace(&self, name: &str, config: NsConfig) {
        self.admin_ok(&[b"NSNEW", name.as_bytes()]);
        let defaults = NsConfig::default();
        self.apply(name, &defaults, &config);
        self.remember(name, config);
    }

    /// Changes a namespace's settings in place (`NSSET` for each changed setting).
    pub fn configure(&self, name: &str, f: impl FnOnce(&mut NsConfig)) {
        let old = self.config_of(name);
        let mut new = old.clone();
        f(&mut new);
        self.apply(name, &old, &new);
        self.remember(name, new);
    }

    fn config_of(&self, name: &str) -> NsConfig {
        self.namespaces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    fn remember(&self, name: &str, config: NsConfig) {
        self.namespaces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), config);
    }

    fn apply(&self, name: &str, old: &NsConfig, new: &NsConfig) {
        let n = name.as_bytes();
        let flag = |b: bool| if b { &b"1"[..] } else { &b"0"[..] };
        if new.mode != old.mode {
            let m: &[u8] = match new.mode {
                NsMode::User => b"user",
                NsMode::Sequential => b"seq",
            };
            self.admin_ok(&[b"NSSET", n, b"mode", m]);
        }
        if new.password != old.password {
            let pw = new.password.as_deref().unwrap_or("*");
            self.admin_ok(&[b"NSSET", n, b"password", pw.as_bytes()]);
        }
        if new.public != old.public {
            self.admin_ok(&[b"NSSET", n, b"public", flag(new.public)]);
        }
        if new.maxsize != old.maxsize {
            let m = new.maxsize.unwrap_or(0).to_string();
            self.admin_ok(&[b"NSSET", n, b"maxsize", m.as_bytes()]);
        }
        if new.locked != old.locked {
            self.admin_ok(&[b"NSSET", n, b"lock", flag(new.locked)]);
        }
        if new.frozen != old.frozen {
            self.admin_ok(&[b"NSSET", n, b"freeze", flag(new.frozen)]);
        }
    }

    fn admin_ok(&self, args: &[&[u8]]) {
        match self.command(args) {
            Ok(RedisReply::Status(_)) => {}
            other => panic!(
                "zdb refused {}: {other:?}",
                String::from_utf8_lossy(&args.join(&b' '))
            ),
        }
    }

    /// A raw connection authenticated as the admin (`AUTH <admin>`).
    pub fn admin_conn(&self) -> ZdbConn {
        let mut c = ZdbConn::connect(self.port).expect("connecting to zdb");
        let r = c.call(&[b"AUTH", self.admin.as_bytes()]);
        assert_eq!(r, RedisReply::Status("OK".into()), "AUTH as admin");
        c
    }

    /// A raw connection with `namespace` selected (with its password when it has one).
    pub fn conn(&self, namespace: &str) -> ZdbConn {
        let mut c = ZdbConn::connect(self.port).expect("connecting to zdb");
        let mut args: Vec<&[u8]> = vec![b"SELECT", namespace.as_bytes()];
        let pw = self.config_of(namespace).password;
        if let Some(pw) = &pw {
            args.push(pw.as_bytes());
        }
        let r = c.call(&args);
        assert_eq!(r, RedisReply::Status("OK".into()), "SELECT {namespace}");
        c
    }

    /// Sends one command on a fresh connection authenticated as the admin.
    pub fn command(&self, args: &[&[u8]]) -> std::io::Result<RedisReply> {
        let mut c = ZdbConn::connect(self.port)?;
        c.try_call(&[b"AUTH", self.admin.as_bytes()])?;
        c.try_call(args)
    }

    /// Sends one command on a fresh, unauthenticated connection.
    fn raw(&self, args: &[&[u8]]) -> std::io::Result<RedisReply> {
        ZdbConn::connect(self.port)?.try_call(args)
    }

    /// A stored value, read in `namespace` (selected with its password).
    pub fn stored(&self, namespace: &str, key: &[u8]) -> Option<Vec<u8>> {
        match self.conn(namespace).call(&[b"GET", key]) {
            RedisReply::Bulk(v) => v,
            other => panic!("GET: {other:?}"),
        }
    }

    /// Number of entries in a namespace (`NSINFO`'s `entries`).
    pub fn entries(&self, namespace: &str) -> usize {
        let info = match self.command(&[b"NSINFO", namespace.as_bytes()]) {
            Ok(RedisReply::Bulk(Some(b))) => String::from_utf8_lossy(&b).into_owned(),
            other => panic!("NSINFO {namespace}: {other:?}"),
        };
        info.lines()
            .find_map(|l| l.strip_prefix("entries:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no entries in NSINFO: {info}"))
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Kills the process (SIGKILL) and waits for it. The data stays.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and the same data and index directories
    /// (after [`kill`](Self::kill); restarts a running one).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => {
                    panic!("zdb did not restart on port {}: {e}", self.port)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

impl Drop for ZdbServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A raw RESP connection to a server, for tests acting behind a client's back.
#[derive(Debug)]
pub struct ZdbConn {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl ZdbConn {
    /// Connects to `127.0.0.1:<port>`.
    pub fn connect(port: u16) -> std::io::Result<Self> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(ZdbConn {
            w: s.try_clone()?,
            r: BufReader::new(s),
        })
    }

    /// Sends one command and reads its reply.
    pub fn try_call(&mut self, args: &[&[u8]]) -> std::io::Result<RedisReply> {
        self.w.write_all(&encode(args))?;
        read_reply(&mut self.r)
    }

    /// Sends one command and reads its reply; panics on an I/O error.
    pub fn call(&mut self, args: &[&[u8]]) -> RedisReply {
        self.try_call(args).expect("zdb connection")
    }
}

/// The `zdb` binary: `$ZDB_BIN`, else `zdb` on `PATH`, else the build cached under the
/// target directory (built now from the vendored tarball if absent). The error says what is
/// missing (a C compiler, `make`, the tarball) and how to fix it.
pub fn binary() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("ZDB_BIN") {
        let bin = PathBuf::from(bin);
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(format!(
                "$ZDB_BIN is {}, which is not a file",
                bin.display()
            ))
        };
    }
    if let Some(bin) = on_path("zdb") {
        return Ok(bin);
    }
    build_cached()
}

/// Where the vendored build is cached: `<target>/zdb/v2.0.7/zdb`.
pub fn cached_binary() -> PathBuf {
    cache_dir().join("zdb")
}

fn cache_dir() -> PathBuf {
    crate::target_dir()
        .join("zdb")
        .join(format!("v{ZDB_VERSION}"))
}

/// The vendored source tarball (`$ZDB_TARBALL` overrides).
pub fn tarball() -> PathBuf {
    std::env::var_os("ZDB_TARBALL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            crate::workspace_root()
                .join("../shared/vendor")
                .join(format!("0-db-v{ZDB_VERSION}.tar.gz"))
        })
}

fn on_path(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// Builds 0-db from the tarball into the cache unless it is there. One process builds while
/// the others wait on the lock; the binary appears by atomic rename.
fn build_cached() -> Result<PathBuf, String> {
    let bin = cached_binary();
    if bin.is_file() {
        return Ok(bin);
    }
    let dir = cache_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let lock_path = dir.join("build.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    // Held until this function returns (the lock is released when dropped or on exit).
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("cannot lock {}: {e}", lock_path.display()))?;
    if bin.is_file() {
        return Ok(bin); // built by another process while we waited
    }
    let missing: Vec<&str> = ["cc", "make"]
        .into_iter()
        .filter(|p| on_path(p).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the tests run a real 0-db server, built from {} with a C compiler and make, \
             but {} not on PATH. Install them (Debian: apt-get install -y gcc make, or run \
             `cargo xtask test`, which installs what is missing) or set ZDB_BIN to a zdb \
             binary.",
            tarball().display(),
            missing.join(" and ")
        ));
    }
    let src = tarball();
    let work = dir.join(format!("build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let result = build_in(&src, &work).and_then(|built| {
        std::fs::rename(&built, &bin)
            .map_err(|e| format!("cannot move {} to {}: {e}", built.display(), bin.display()))
    });
    let _ = std::fs::remove_dir_all(&work);
    result.map(|()| bin)
}

fn build_in(src: &Path, work: &Path) -> Result<PathBuf, String> {
    let file = std::fs::File::open(src).map_err(|e| {
        format!(
            "cannot open the 0-db source {} ({e}): the tests build the real 0-db from it \
             (set ZDB_TARBALL or ZDB_BIN otherwise)",
            src.display()
        )
    })?;
    tar::Archive::new(flate2::read::GzDecoder::new(file))
        .unpack(work)
        .map_err(|e| format!("cannot unpack {}: {e}", src.display()))?;
    let root = work.join("0-db");
    for part in ["libzdb", "zdbd"] {
        let out = Command::new("make")
            .arg("-C")
            .arg(root.join(part))
            .arg("release")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run make: {e}"))?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            return Err(format!(
                "building 0-db ({part}) from {} failed ({}):\n{}",
                src.display(),
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
    }
    let built = root.join("zdbd/zdb");
    if !built.is_file() {
        return Err(format!(
            "the 0-db build did not produce {}",
            built.display()
        ));
    }
    Ok(built)
}
