//! Test harness shared by the workspace's tests: fixture paths, a real `redis-server` on a
//! free loopback port, a real 0-db built from `../shared/vendor/`, a real SeaweedFS (S3)
//! and a throwaway PostgreSQL 15 cluster, a recording TCP proxy, and builders for test
//! archives.
//!
//! # Example
//! ```
//! // the reference fixtures every crate's tests read
//! let flist = test_support::fixture("fixture.flist");
//! assert!(flist.is_file());
//! // an archive built in memory, for converters' tests
//! let tar = test_support::archive::RawTar::new()
//!     .dir("etc/")
//!     .file("etc/motd", b"hello\n")
//!     .finish();
//! assert_eq!(tar.len() % 512, 0);
//! let tgz = test_support::archive::gzip(&tar);
//! assert_eq!(&tgz[..2], &[0x1f, 0x8b]);
//! ```

use std::path::PathBuf;

pub mod archive;
pub mod http;
pub mod hub;
pub mod nginx;
pub mod postgres;
pub mod redis;
pub mod rootfs;
pub mod sample;
pub mod seaweed;
pub mod tap;
pub mod watched;
pub mod zdb;
pub mod zdb_responder;

pub use hub::HubProcess;
pub use postgres::Postgres;
pub use redis::{RedisReply, RedisServer};
pub use seaweed::SeaweedServer;
pub use zdb::{NsConfig, NsMode, ZdbConn, ZdbServer};
pub use zdb_responder::ZdbResponder;

pub mod registry;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(|p| p.parent())
        .expect("test-support lives at crates/test-support")
        .to_path_buf()
}

/// The cargo target directory (`$CARGO_TARGET_DIR`, else `<workspace>/target`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// `<target>/tmp`, created: scratch space for servers' data (kept off `/tmp`, which may be
/// small).
pub fn tmp_dir() -> PathBuf {
    let dir = target_dir().join("tmp");
    std::fs::create_dir_all(&dir).expect("creating target/tmp");
    dir
}

/// A scratch directory `<target>/tmp/<prefix>XXXX` for a server's data, marked with this
/// process's pid. Directories of the same prefix whose process is gone (a shared server in
/// a `static` is never dropped, a test process may be killed) are removed first.
pub fn server_dir(prefix: &str) -> tempfile::TempDir {
    let tmp = tmp_dir();
    for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(prefix) {
            continue;
        }
        let owner = std::fs::read_to_string(entry.path().join("owner.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok());
        let alive = match owner {
            Some(pid) => nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok(),
            // Being created right now by another process, or left by an old one.
            None => entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default().as_secs() < 60),
        };
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&tmp)
        .expect("creating a server directory under target/tmp");
    std::fs::write(dir.path().join("owner.pid"), std::process::id().to_string())
        .expect("writing owner.pid");
    dir
}

/// A plain `GET` over HTTP/1.0 to a loopback URL (`http://127.0.0.1:<port>/path`):
/// the status and the body. For readiness probes of test servers.
pub fn http_get(url: &str) -> std::io::Result<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| std::io::Error::other("only http:// URLs"))?;
    let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = std::net::TcpStream::connect(hostport)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("no HTTP status line"))?;
    let body = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(Vec::new(), |i| raw[i + 4..].to_vec());
    Ok((status, body))
}

/// Runs `run` over every input a cargo-fuzz target has on disk under `fuzz/`: `seeds/<target>`
/// (which must exist), then what libFuzzer kept in `corpus/<target>` and `artifacts/<target>`
/// when present. Returns how many seeds there were.
pub fn run_fuzz_inputs(target: &str, mut run: impl FnMut(&[u8])) -> usize {
    let root = workspace_root().join("fuzz");
    let mut seeds = 0;
    for (kind, required) in [("seeds", true), ("corpus", false), ("artifacts", false)] {
        let dir = root.join(kind).join(target);
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("reading {}: {e}", dir.display()),
        };
        for entry in rd.flatten() {
            let data = std::fs::read(entry.path())
                .unwrap_or_else(|e| panic!("reading {}: {e}", entry.path().display()));
            run(&data);
            if kind == "seeds" {
                seeds += 1;
            }
        }
    }
    seeds
}

/// `tests/fixtures/flist-v2`: the reference fixtures copied from `shared/`.
pub fn fixtures_dir() -> PathBuf {
    workspace_root().join("tests/fixtures/flist-v2")
}

/// A fixture file by name, e.g. `fixture("fixture.flist")`.
pub fn fixture(name: &str) -> PathBuf {
    fixtures_dir().join(name)
}

/// `tests/fixtures/rfs-fl`: `.fl` files and blocks written by rfs v2.0.7, copied from
/// `shared/`.
pub fn rfs_fixture(name: &str) -> PathBuf {
    workspace_root().join("tests/fixtures/rfs-fl").join(name)
}

/// CPU time (user + system) this process has used so far (`getrusage(RUSAGE_SELF)`), for
/// benchmarks that print a client's CPU utilisation.
pub fn cpu_time() -> std::time::Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    let u = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage(RUSAGE_SELF)");
    let d = |t: nix::sys::time::TimeVal| {
        std::time::Duration::new(t.tv_sec().max(0) as u64, (t.tv_usec().max(0) as u32) * 1000)
    };
    d(u.user_time()) + d(u.system_time())
}
