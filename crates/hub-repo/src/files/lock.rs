//! Which process may recover the data directory.
//!
//! Every [`Hub`](crate::Hub) holds a shared `flock` on `<data>/hub.lock` for its lifetime.
//! Opening first tries an exclusive lock: it succeeds only when no other process (and no
//! other `Hub` in this process) has the directory open, and only then are the leftovers of
//! a previous run recovered (every temp file removed, queued/running jobs marked failed).
//! A second opener — `hub-server token create` or `check` while the server runs — touches
//! neither the running server's uploads in `tmp/` nor its jobs; it removes only temp files
//! untouched for [`STALE_TEMP_SECS`].

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::RepoError;

/// A temp file untouched this long belongs to no live upload (uploads are cut after
/// `upload_timeout_secs`, 3 h by default, and write continuously until then).
pub const STALE_TEMP_SECS: u64 = 24 * 3600;

/// The shared lock on `<data>/hub.lock`, held while the hub is open.
#[derive(Debug)]
pub(crate) struct DataLock {
    _file: File,
    /// No one else had the directory open when this lock was taken.
    pub(crate) alone: bool,
}

impl DataLock {
    /// Takes the lock (exclusive if possible, to learn whether we are alone, then shared).
    pub(crate) fn acquire(data: &Path) -> Result<Self, RepoError> {
        let path = data.join("hub.lock");
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| RepoError::io("open", &path, e))?;
        let alone = match file.try_lock() {
            Ok(()) => true,
            Err(TryLockError::WouldBlock) => false,
            Err(TryLockError::Error(e)) => return Err(RepoError::io("lock", &path, e)),
        };
        // Converts the exclusive lock (or waits out another opener's brief exclusive one).
        file.lock_shared()
            .map_err(|e| RepoError::io("lock", &path, e))?;
        Ok(DataLock { _file: file, alone })
    }
}

/// Removes entries of the temp directory `tmp`: all of them when `everything` (no other
/// process uses the directory), else only those untouched for longer than `stale`. Returns
/// how many were removed.
pub(crate) fn sweep_temp(tmp: &Path, everything: bool, stale: Duration) -> usize {
    let Ok(rd) = std::fs::read_dir(tmp) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for e in rd.flatten() {
        let p = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if !everything {
            let age = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or_default();
            if age <= stale {
                continue;
            }
        }
        let res = if meta.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        if res.is_ok() {
            removed += 1;
        }
    }
    removed
}
