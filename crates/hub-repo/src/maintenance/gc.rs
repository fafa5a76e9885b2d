//! Garbage collection of flist files no entry references any more (replaced or deleted
//! flists), of files a killed writer left without a catalog row, of their path index, and of
//! stale temp files: [`Hub::gc`], run by `hub-server gc`; `hub-server check` reports the
//! same with [`GcOptions::dry_run`].
//!
//! Safe online, against concurrent uploads in this or another process: a recorded but
//! unreferenced file is removed inside a catalog write transaction, and every writer that
//! records a file checks (inside its own transaction) that the file is still in place and
//! puts it back from its staged copy if not. Files without any catalog row are removed only
//! when older than [`GcOptions::grace`] (a mirror places files before recording them).

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::db::sql::{params, OptionalExtension};
use serde::Serialize;

use crate::clock::now;
use crate::error::SqlContext;
use crate::files::{is_hex_sha256, remove, shared_name, SHARED_PREFIX};
use crate::files::{sweep_temp, STALE_TEMP_SECS};
use crate::{Hub, RepoError};

/// How a collection runs.
#[derive(Clone, Copy, Debug)]
pub struct GcOptions {
    /// Files without a catalog row, and path index rows of unrecorded files, younger than
    /// this are kept.
    pub grace: Duration,
    /// Only report what would be removed.
    pub dry_run: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            grace: Duration::from_secs(3600),
            dry_run: false,
        }
    }
}

/// What a collection found (and, unless a dry run, removed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Recorded flist files (sha256) no entry references.
    pub unreferenced: Vec<String>,
    /// Files under `flists/` without a catalog row (paths relative to the data directory).
    pub unrecorded: Vec<String>,
    /// Unrecorded files kept because they are younger than the grace period.
    pub kept_young: usize,
    /// Files under `flists/` that are not named by a content address (reported, never
    /// removed).
    pub foreign: Vec<String>,
    /// Path-indexed flist files whose index was dropped.
    pub path_index: usize,
    /// Stale temp files removed.
    pub temp_files: usize,
    /// Bytes of flist files removed (or removable).
    pub bytes: u64,
}

impl GcReport {
    /// Nothing to collect.
    pub fn is_empty(&self) -> bool {
        self.unreferenced.is_empty()
            && self.unrecorded.is_empty()
            && self.path_index == 0
            && self.temp_files == 0
    }
}

fn age(path: &Path) -> Option<Duration> {
    let m = std::fs::symlink_metadata(path).ok()?.modified().ok()?;
    Some(SystemTime::now().duration_since(m).unwrap_or_default())
}

/// Whether the catalog has a row for flist file `sha256`.
fn is_recorded(c: &crate::db::sql::Connection<'_>, sha256: &str) -> Result<bool, RepoError> {
    c.prepare_cached("SELECT 1 FROM blobs WHERE sha256 = ?1")
        .and_then(|mut s| s.query_row(params![sha256], |_| Ok(())).optional())
        .map(|o| o.is_some())
        .ctx("look up flist file")
}

impl Hub {
    /// Collects what no entry references: see the module documentation.
    pub fn gc(&self, opts: GcOptions) -> Result<GcReport, RepoError> {
        let mut rep = GcReport::default();
        let rel = |p: &Path| -> String {
            p.strip_prefix(self.data_dir())
                .unwrap_or(p)
                .display()
                .to_string()
        };

        // 1. Recorded files no entry references: row and file go in one transaction.
        let sweep = |tx: &crate::db::sql::Connection<'_>| -> Result<Vec<(String, i64)>, RepoError> {
            let mut st = tx
                .prepare(
                    "SELECT b.sha256, b.size FROM blobs b WHERE NOT EXISTS \
                     (SELECT 1 FROM entries e WHERE e.sha256 = b.sha256) ORDER BY b.sha256",
                )
                .ctx("list unreferenced flist files")?;
            let v = st
                .query_map((), |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .ctx("list unreferenced flist files")?;
            Ok(v)
        };
        let unreferenced = if opts.dry_run {
            self.db.read(|c| sweep(c))?
        } else {
            self.db.write(|tx| {
                let v = sweep(tx)?;
                for (sha, _) in &v {
                    tx.prepare_cached("DELETE FROM blobs WHERE sha256 = ?1")
                        .and_then(|mut s| s.execute(params![sha]))
                        .ctx("remove flist file record")?;
                    remove(&self.blobs.path_of(sha))?;
                    self.blobs.remove_shared(sha)?;
                }
                Ok(v)
            })?
        };
        for (sha, size) in unreferenced {
            rep.bytes += u64::try_from(size).unwrap_or(0);
            rep.unreferenced.push(sha);
        }

        // 2. Files without a row (a writer killed between placing and recording).
        for (path, name) in self.blobs.stored_files()? {
            if name.starts_with(".tmp-") {
                // A download from the shared store that did not finish.
                if age(&path).is_some_and(|a| a.as_secs() > STALE_TEMP_SECS) && !opts.dry_run {
                    remove(&path)?;
                    rep.temp_files += 1;
                }
                continue;
            }
            if !is_hex_sha256(&name) || path != self.blobs.path_of(&name) {
                rep.foreign.push(rel(&path));
                continue;
            }
            let recorded = |c: &crate::db::sql::Connection<'_>| is_recorded(c, &name);
            if self.db.read(recorded)? {
                continue;
            }
            if age(&path).is_none_or(|a| a < opts.grace) {
                rep.kept_young += 1;
                continue;
            }
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let removed = if opts.dry_run {
                true
            } else {
                // Checked again under the write lock: a writer may have recorded it since.
                self.db.write(|tx| {
                    if recorded(tx)? {
                        return Ok(false);
                    }
                    remove(&path)?;
                    Ok(true)
                })?
            };
            if removed {
                rep.bytes += size;
                rep.unrecorded.push(rel(&path));
            }
        }

        // 2b. The same in the store replicas share: files a replica stored and never recorded.
        if let Some(shared) = self.blobs.shared() {
            let listed = shared
                .list(SHARED_PREFIX)
                .map_err(|source| RepoError::files("list", SHARED_PREFIX, source))?;
            for b in listed {
                let sha = b.name.rsplit('/').next().unwrap_or_default().to_string();
                let shown = format!("{shared}/{}", b.name);
                if !is_hex_sha256(&sha) || shared_name(&sha) != b.name {
                    rep.foreign.push(shown);
                    continue;
                }
                let recorded = |c: &crate::db::sql::Connection<'_>| is_recorded(c, &sha);
                if self.db.read(recorded)? {
                    continue;
                }
                let young = b.modified.is_none_or(|m| {
                    SystemTime::now().duration_since(m).unwrap_or_default() < opts.grace
                });
                if young {
                    rep.kept_young += 1;
                    continue;
                }
                let removed = opts.dry_run
                    || self.db.write(|tx| {
                        if recorded(tx)? {
                            return Ok(false);
                        }
                        self.blobs.remove_shared(&sha)?;
                        Ok(true)
                    })?;
                if removed {
                    rep.bytes += b.size;
                    rep.unrecorded.push(shown);
                }
            }
        }

        // 3. The path index of files no longer recorded.
        let cutoff = now() - i64::try_from(opts.grace.as_secs()).unwrap_or(i64::MAX);
        let stale_index = "SELECT id FROM path_blobs p WHERE indexed <= ?1 AND NOT EXISTS \
                           (SELECT 1 FROM blobs b WHERE b.sha256 = p.sha256)";
        let ids: Vec<i64> = self.db.read(|c| {
            let mut st = c.prepare(stale_index).ctx("list stale path index")?;
            let v = st
                .query_map(params![cutoff], |r| r.get(0))
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .ctx("list stale path index")?;
            Ok(v)
        })?;
        rep.path_index = ids.len();
        if !opts.dry_run {
            // One file per transaction: a big index never holds the write lock for long.
            for id in ids {
                self.db.write(|tx| {
                    tx.execute("DELETE FROM path_entries WHERE blob = ?1", params![id])
                        .ctx("drop path index")?;
                    tx.execute("DELETE FROM path_blobs WHERE id = ?1", params![id])
                        .ctx("drop path index")?;
                    Ok(())
                })?;
            }
        }

        // 4. Temp files no live upload uses.
        if !opts.dry_run {
            rep.temp_files = sweep_temp(
                self.blobs.tmp_dir(),
                false,
                Duration::from_secs(STALE_TEMP_SECS),
            );
        }
        if !opts.dry_run && !rep.is_empty() {
            self.db.bump_generation();
        }
        Ok(rep)
    }
}
