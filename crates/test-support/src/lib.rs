//! Test harness shared by the workspace's tests: fixture paths, a real `redis-server` on a
//! free loopback port, and builders for test archives.

use std::path::PathBuf;

pub mod archive;
pub mod redis;
pub mod sample;
pub mod zdb;

pub use redis::{RedisReply, RedisServer};
pub use zdb::{NsConfig, NsMode, ZdbServer};

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
