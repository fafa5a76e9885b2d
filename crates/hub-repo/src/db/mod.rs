//! The catalog's storage engine: one SQLite database (WAL), one writer connection and a small
//! pool of readers, its schema and migrations (`schema.rs`), and the generation counter
//! caches key on.
//!
//! Every seam of the model (catalog, accounts, jobs, path index, replica, maintenance) reaches
//! the database through [`Db::read`] and [`Db::write`] only, with its own queries in its own
//! folder: another engine slots in here, behind the same two calls.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::error::SqlContext;
use crate::RepoError;

pub(crate) mod schema;

/// Number of read connections.
const READERS: usize = 4;

/// The catalog database: a writer connection and a pool of readers (WAL mode lets them run
/// alongside the writer).
pub(crate) struct Db {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next: AtomicUsize,
    /// Bumped after every committed write that changes what readers see.
    generation: AtomicU64,
    /// SQLite's `data_version` last seen (see [`Db::notice_external_writes`]).
    data_version: AtomicU64,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

fn configure(conn: &Connection, path: &Path) -> Result<(), RepoError> {
    let ctx = format!("configure {}", path.display());
    conn.busy_timeout(Duration::from_secs(10)).ctx(&ctx)?;
    conn.pragma_update(None, "foreign_keys", "ON").ctx(&ctx)?;
    conn.pragma_update(None, "synchronous", "FULL").ctx(&ctx)?;
    Ok(())
}

impl Db {
    /// Opens (creating if needed) the catalog at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self, RepoError> {
        let ctx = format!("open {}", path.display());
        let writer = Connection::open(path).ctx(&ctx)?;
        let mode: String = writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .ctx(&ctx)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(RepoError::Invalid(format!(
                "{}: cannot enable WAL (got {mode})",
                path.display()
            )));
        }
        configure(&writer, path)?;
        let mut writer = writer;
        schema::migrate(&mut writer, &path.display().to_string())?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let c = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .ctx(&ctx)?;
            configure(&c, path)?;
            readers.push(Mutex::new(c));
        }
        Ok(Db {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            readers,
            next: AtomicUsize::new(0),
            generation: AtomicU64::new(1),
            data_version: AtomicU64::new(0),
        })
    }

    /// A counter bumped by every committed write: caches keyed on it never serve stale data.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Marks a committed change readers must see (caches keyed on the generation drop).
    pub(crate) fn bump_generation(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Notices writes another process (the CLI: `restamp`, `import-legacy`, `user remove`)
    /// committed since the last call, and then bumps the generation so that caches keyed on
    /// it are refreshed. True when there were some.
    pub(crate) fn notice_external_writes(&self) -> Result<bool, RepoError> {
        let v: i64 = self.with_writer(|c| {
            c.pragma_query_value(None, "data_version", |r| r.get(0))
                .ctx("read data_version")
        })?;
        let v = v.unsigned_abs();
        let before = self.data_version.swap(v, Ordering::AcqRel);
        if before != 0 && before != v {
            self.bump_generation();
            return Ok(true);
        }
        Ok(false)
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.readers.len() {
            let m = &self.readers[(start + i) % self.readers.len()];
            if let Ok(g) = m.try_lock() {
                return g;
            }
        }
        let m = &self.readers[start % self.readers.len()];
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on a read connection.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, RepoError>,
    ) -> Result<T, RepoError> {
        let conn = self.reader();
        f(&conn)
    }

    /// Runs `f` in one immediate transaction on the writer; commits when it returns `Ok`.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, RepoError>,
    ) -> Result<T, RepoError> {
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("begin")?;
        let out = f(&tx)?;
        tx.commit().ctx("commit")?;
        Ok(out)
    }

    /// Runs `f` on the writer connection outside a transaction (pragmas, checks).
    pub(crate) fn with_writer<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, RepoError>,
    ) -> Result<T, RepoError> {
        let conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }
}
