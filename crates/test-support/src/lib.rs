//! Test harness shared by the workspace's tests: fixture paths, a real `redis-server` on a
//! free loopback port, a real 0-db built from `../shared/vendor/`, a recording TCP proxy,
//! and builders for test archives.
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
pub mod redis;
pub mod rootfs;
pub mod sample;
pub mod tap;
pub mod zdb;
pub mod zdb_responder;

pub use hub::HubProcess;
pub use redis::{RedisReply, RedisServer};
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
