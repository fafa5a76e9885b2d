//! A throwaway PostgreSQL cluster on a free loopback port: `initdb` under `target/tmp/`,
//! then `postgres` in the foreground under a watchdog (stopped with a fast shutdown when
//! the test process exits), password authentication over TCP.
//!
//! PostgreSQL refuses to run as root: when the tests run as root, the cluster belongs to
//! the `postgres` system user (Debian's package creates it), or to a system user
//! `flist-pg` created for the purpose. The binaries come from `$PG_BIN`, `pg_config
//! --bindir`, `/usr/lib/postgresql/<version>/bin` (Debian), or PATH.
//!
//! ```no_run
//! let pg = test_support::Postgres::shared();
//! let url = pg.create_database("catalog_test"); // postgres://flist:...@127.0.0.1:<port>/catalog_test
//! ```

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::{Gid, Uid, User};

use crate::watched::Watched;

/// The cluster's superuser.
pub const USER: &str = "flist";
/// Its password.
pub const PASSWORD: &str = "flist-test-pg-pw";
/// The system user created to own clusters when the tests run as root and no `postgres`
/// user exists.
pub const SYSTEM_USER: &str = "flist-pg";

/// The directory holding `initdb`, `postgres` and `psql`.
pub fn bin_dir() -> Option<PathBuf> {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Some(p) = std::env::var_os("PG_BIN").map(PathBuf::from) {
        return Some(p).filter(|p| has(p));
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(d) = from_pg_config.filter(|d| has(d)) {
        return Some(d);
    }
    // Debian: /usr/lib/postgresql/<version>/bin, the newest first.
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| has(d))
        .collect();
    debian.sort();
    if let Some((_, d)) = debian.pop() {
        return Some(d);
    }
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).find(|d| has(d)))
}

fn require_bin_dir() -> PathBuf {
    bin_dir().unwrap_or_else(|| {
        panic!(
            "PostgreSQL not found (initdb, postgres): the cluster tests run a real one. \
             `cargo xtask test cluster` installs it (Debian package postgresql-15), or set \
             PG_BIN to the directory holding initdb and postgres."
        )
    })
}

/// The user the cluster runs as: `None` (this one) unless we are root.
fn run_as() -> Option<(Uid, Gid)> {
    if !Uid::effective().is_root() {
        return None;
    }
    let lookup = |name: &str| User::from_name(name).ok().flatten();
    let user = lookup("postgres")
        .or_else(|| lookup(SYSTEM_USER))
        .or_else(|| {
            let made = Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                ])
                .arg(SYSTEM_USER)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            // Another test process may have created it meanwhile: look again either way.
            let _ = made;
            lookup(SYSTEM_USER)
        });
    match user {
        Some(u) => Some((u.uid, u.gid)),
        None => panic!(
            "running as root and no `postgres` or `{SYSTEM_USER}` user could be found or \
             created (useradd): PostgreSQL refuses to run as root"
        ),
    }
}

/// A running throwaway cluster. Dropping it stops the server and removes its files.
#[derive(Debug)]
pub struct Postgres {
    port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    owner: Option<(Uid, Gid)>,
    process: Option<Watched>,
}

impl Postgres {
    /// The cluster shared by every test of this test binary: started on first use,
    /// stopped when the test process exits.
    pub fn shared() -> &'static Postgres {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        SHARED.get_or_init(Postgres::start)
    }

    /// Creates and starts a cluster of its own (for tests that stop and restart it).
    pub fn start() -> Postgres {
        let bin = require_bin_dir();
        let owner = run_as();
        let dir = crate::server_dir("postgres-");
        if let Some((uid, gid)) = owner {
            nix::unistd::chown(dir.path(), Some(uid), Some(gid))
                .expect("giving the cluster directory to its user");
        }
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).expect("writing the password file");
        if let Some((uid, gid)) = owner {
            nix::unistd::chown(&pwfile, Some(uid), Some(gid)).expect("chown pw");
        }
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "-E", "UTF8", "--locale=C", "-N"])
            .args(["--auth-host=scram-sha-256", "--auth-local=trust"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .env("LC_ALL", "C")
            .current_dir(dir.path())
            .stdin(Stdio::null());
        if let Some((uid, gid)) = owner {
            use std::os::unix::process::CommandExt;
            initdb.uid(uid.as_raw()).gid(gid.as_raw());
        }
        let out = initdb.output().expect("running initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_file(&pwfile);
        let mut pg = Postgres {
            port: 0,
            dir,
            bin,
            owner,
            process: None,
        };
        let mut last = String::new();
        for _ in 0..5 {
            pg.port = crate::redis::free_port();
            match pg.spawn() {
                Ok(()) => return pg,
                Err(e) => last = e,
            }
        }
        panic!("PostgreSQL did not start: {last}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("postgres.log");
        if !log.exists() {
            std::fs::write(&log, "").map_err(|e| e.to_string())?;
            if let Some((uid, gid)) = self.owner {
                nix::unistd::chown(&log, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
            }
        }
        let args: Vec<String> = vec![
            "-D".into(),
            data.display().to_string(),
            "-p".into(),
            self.port.to_string(),
            "-c".into(),
            "listen_addresses=127.0.0.1".into(),
            "-c".into(),
            format!("unix_socket_directories={}", self.dir.path().display()),
            // Throwaway data: no durability, more connections for many replicas.
            "-c".into(),
            "fsync=off".into(),
            "-c".into(),
            "synchronous_commit=off".into(),
            "-c".into(),
            "full_page_writes=off".into(),
            "-c".into(),
            "max_connections=300".into(),
        ];
        let owner = self.owner;
        let process = Watched::spawn(&self.bin.join("postgres"), &args, &log, "INT", |cmd| {
            cmd.env("LC_ALL", "C");
            if let Some((uid, gid)) = owner {
                use std::os::unix::process::CommandExt;
                cmd.uid(uid.as_raw()).gid(gid.as_raw());
            }
        })
        .map_err(|e| format!("cannot run postgres: {e}"))?;
        self.process = Some(process);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.query("postgres", "SELECT 1").is_ok_and(|r| r == "1") {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                self.halt(Signal::SIGKILL);
                return Err(format!("not answering after 30 s; log:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://flist:<password>@127.0.0.1:<port>/<db>`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a database with a unique name starting with `prefix` and returns its URL.
    pub fn create_database(&self, prefix: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{}_{}_{}",
            prefix
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect::<String>(),
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        if let Err(e) = self.query("postgres", &format!("CREATE DATABASE {name}")) {
            panic!("CREATE DATABASE {name}: {e}");
        }
        self.url(&name)
    }

    /// Runs `sql` with `psql` over TCP (password authentication) in database `db`; the
    /// unaligned, tuples-only output, or psql's error.
    pub fn query(&self, db: &str, sql: &str) -> Result<String, String> {
        let psql = [self.bin.join("psql"), PathBuf::from("/usr/bin/psql")]
            .into_iter()
            .find(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("psql"));
        let out = Command::new(psql)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
            .args([
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-X",
                "-A",
                "-t",
                "-c",
                sql,
            ])
            .env("PGPASSWORD", PASSWORD)
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    fn halt(&mut self, signal: Signal) {
        if let Some(p) = self.process.take() {
            p.signal(signal);
            p.stop();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (fast shutdown: open transactions are rolled back) and waits until
    /// its port is closed. [`Postgres::restart`] brings it back on the same data.
    pub fn stop(&mut self) {
        self.halt(Signal::SIGINT);
    }

    /// Kills the server (SIGKILL: crash recovery at the next start).
    pub fn kill(&mut self) {
        self.halt(Signal::SIGKILL);
    }

    /// Starts it again on the same port and data after [`Postgres::stop`] or
    /// [`Postgres::kill`].
    pub fn restart(&mut self) {
        self.halt(Signal::SIGINT);
        // After a SIGKILL the old backends take a moment to notice and leave.
        let mut last = String::new();
        for _ in 0..10 {
            match self.spawn() {
                Ok(()) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("PostgreSQL did not restart: {last}");
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.halt(Signal::SIGINT);
    }
}
