//! [`Hub`]: the repository model's handle and its write discipline (validated, authorised,
//! audited, one transaction). Operations live next to their concern: `store.rs` (flist files
//! and storing flists), `entries.rs` (links, renames, promotion), `tags.rs`, `reads.rs`,
//! `orgs.rs`, `audit.rs`, `integrity.rs`, `tokens.rs`, `jobs.rs`; shared SQL in `sql.rs`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::Connection;
use serde_json::Value;

use crate::blobs::Blobs;
use crate::db::Db;
use crate::lock::DataLock;
use crate::names::validate_repo;
use crate::sql::{audit, bump_repo};
use crate::{Actor, RepoError};

/// Longest chain of links followed before giving up.
pub const MAX_HOPS: usize = 32;

/// Current unix time in seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The hub's repository model: a SQLite catalog plus content-addressed flist files under a
/// data directory. Every method blocks (call it from a blocking thread in async code); the
/// type is `Sync` and meant to be shared behind an `Arc`.
#[derive(Debug)]
pub struct Hub {
    data: PathBuf,
    pub(crate) db: Db,
    pub(crate) blobs: Blobs,
    generation: AtomicU64,
    /// The catalog's `data_version` last seen (see [`Hub::notice_external_writes`]).
    pub(crate) data_version: AtomicU64,
    _lock: DataLock,
}

impl Hub {
    /// Opens (creating if needed) a hub data directory: `catalog.sqlite3`, `flists/`, `tmp/`.
    /// When no other process has it open, the leftovers of a previous run are recovered: temp
    /// files removed, jobs left queued or running marked failed. Otherwise (an admin command
    /// while the server runs) only temp files untouched for a day are removed.
    pub fn open(data: impl AsRef<Path>) -> Result<Self, RepoError> {
        Self::open_with(data, true)
    }

    /// Opens a data directory; `recover_jobs`: mark jobs left running as failed (only the
    /// server does, and only when no other process has the directory open, so
    /// administration commands can run beside it).
    pub(crate) fn open_with(data: impl AsRef<Path>, recover_jobs: bool) -> Result<Self, RepoError> {
        let data = data.as_ref().to_path_buf();
        std::fs::create_dir_all(&data).map_err(|e| RepoError::io("create directory", &data, e))?;
        let lock = DataLock::acquire(&data)?;
        let db = Db::open(&data.join("catalog.sqlite3"))?;
        let blobs = Blobs::open(&data, lock.alone)?;
        let recover = lock.alone;
        let hub = Hub {
            data,
            db,
            blobs,
            generation: AtomicU64::new(1),
            data_version: AtomicU64::new(0),
            _lock: lock,
        };
        if recover_jobs && recover {
            hub.fail_interrupted_jobs()?;
        }
        Ok(hub)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// A counter bumped by every committed write: caches keyed on it never serve stale data.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Runs one audited write as `actor` into `repo`, in one transaction.
    pub(crate) fn audited<T>(
        &self,
        actor: &Actor,
        action: &str,
        repo: &str,
        name: &str,
        detail: Value,
        f: impl FnOnce(&Connection, i64) -> Result<T, RepoError>,
    ) -> Result<T, RepoError> {
        validate_repo(repo)?;
        actor.check_write(repo)?;
        let out = self.db.write(|tx| {
            let ts = now();
            bump_repo(tx, repo, ts)?;
            let out = f(tx, ts)?;
            audit(tx, actor, action, repo, name, &detail, ts)?;
            Ok(out)
        })?;
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(out)
    }

    pub(crate) fn bump_generation(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}
