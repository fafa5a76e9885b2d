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

use rusqlite::{OpenFlags, TransactionBehavior};

use crate::error::SqlContext;
use crate::RepoError;

pub(crate) mod pg;
pub(crate) mod schema;
pub(crate) mod sql;
pub(crate) mod value;

pub(crate) use sql::{Connection, Engine, OptionalExtension};

/// Number of read connections.
const READERS: usize = 4;

/// The catalog database: SQLite (a writer connection and a pool of readers, WAL mode lets
/// them run alongside the writer) or PostgreSQL (a pool of clients).
pub(crate) struct Db {
    engine: Store,
    /// Bumped after every committed write that changes what readers see.
    generation: AtomicU64,
    /// SQLite's `data_version` last seen (see [`Db::notice_external_writes`]).
    data_version: AtomicU64,
    /// PostgreSQL: the listener's count of write notifications last seen.
    heard: AtomicU64,
}

/// The engine behind a [`Db`].
enum Store {
    Lite {
        path: PathBuf,
        writer: Mutex<rusqlite::Connection>,
        readers: Vec<Mutex<rusqlite::Connection>>,
        next: AtomicUsize,
    },
    Pg(pg::PgPool),
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("catalog", &self.describe())
            .finish()
    }
}

fn configure(conn: &rusqlite::Connection, path: &Path) -> Result<(), RepoError> {
    let ctx = format!("configure {}", path.display());
    conn.busy_timeout(Duration::from_secs(10)).ctx(&ctx)?;
    conn.pragma_update(None, "foreign_keys", "ON").ctx(&ctx)?;
    conn.pragma_update(None, "synchronous", "FULL").ctx(&ctx)?;
    Ok(())
}

impl Db {
    /// Opens (creating if needed) the SQLite catalog at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self, RepoError> {
        let ctx = format!("open {}", path.display());
        let writer = rusqlite::Connection::open(path).ctx(&ctx)?;
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
            let c = rusqlite::Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .ctx(&ctx)?;
            configure(&c, path)?;
            readers.push(Mutex::new(c));
        }
        Ok(Db::with(Store::Lite {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            readers,
            next: AtomicUsize::new(0),
        }))
    }

    /// Connects to the PostgreSQL catalog at `url` and brings its schema up to date.
    pub(crate) fn open_postgres(url: &str) -> Result<Self, RepoError> {
        let pool = pg::PgPool::open(url)?;
        // Migrated here, not in the pool, so that the client does not depend on the schema.
        {
            let g = pool.conn();
            schema::migrate_pg(&g, pool.url())?;
        }
        Ok(Db::with(Store::Pg(pool)))
    }

    fn with(engine: Store) -> Self {
        Db {
            engine,
            generation: AtomicU64::new(1),
            data_version: AtomicU64::new(0),
            heard: AtomicU64::new(0),
        }
    }

    /// Which engine.
    pub(crate) fn engine(&self) -> Engine {
        match self.engine {
            Store::Lite { .. } => Engine::Sqlite,
            Store::Pg(_) => Engine::Postgres,
        }
    }

    /// The catalog for messages: the SQLite file, or the PostgreSQL URL without password.
    pub(crate) fn describe(&self) -> String {
        match &self.engine {
            Store::Lite { path, .. } => path.display().to_string(),
            Store::Pg(p) => p.url().to_string(),
        }
    }

    /// A counter bumped by every committed write: caches keyed on it never serve stale data.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Marks a committed change readers must see (caches keyed on the generation drop).
    pub(crate) fn bump_generation(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Notices writes another process committed since the last call (the CLI: `restamp`,
    /// `import-legacy`, `user remove`; on PostgreSQL, the other replicas too), and then bumps
    /// the generation so that caches keyed on it are refreshed. True when there were some.
    /// SQLite counts other connections' commits (`data_version`); PostgreSQL counts every
    /// committed write in `hub_writes` (this process's own too: one spare refresh).
    pub(crate) fn notice_external_writes(&self) -> Result<bool, RepoError> {
        let v: i64 = match &self.engine {
            Store::Lite { writer, .. } => {
                let c = writer.lock().unwrap_or_else(|p| p.into_inner());
                c.pragma_query_value(None, "data_version", |r| r.get(0))
                    .ctx("read data_version")?
            }
            Store::Pg(p) => {
                let g = p.conn();
                Connection::Pg(&g)
                    .query_row("SELECT n FROM hub_writes", (), |r| r.get(0))
                    .ctx("read the write counter")?
            }
        };
        // Stored plus one: 0 means "never looked" (a fresh catalog counts 0 writes).
        let v = v.unsigned_abs().wrapping_add(1);
        let before = self.data_version.swap(v, Ordering::AcqRel);
        if before != 0 && before != v {
            self.bump_generation();
            return Ok(true);
        }
        Ok(false)
    }

    /// Waits at most `timeout` for a sign that a write was committed: on PostgreSQL the
    /// notification every write transaction sends on commit (`LISTEN`), so replicas hear of
    /// each other's writes within milliseconds; SQLite has no such signal (the other writers
    /// are admin commands) and waits the whole `timeout`. Then call
    /// [`Db::notice_external_writes`]. True when woken by a notification.
    pub(crate) fn wait_for_writes(&self, timeout: Duration) -> bool {
        match &self.engine {
            Store::Lite { .. } => {
                std::thread::sleep(timeout);
                false
            }
            Store::Pg(p) => {
                let since = self.heard.load(Ordering::Acquire);
                let now = p.wait_for_writes(since, timeout);
                self.heard.store(now, Ordering::Release);
                now != since
            }
        }
    }

    fn reader<'a>(
        readers: &'a [Mutex<rusqlite::Connection>],
        next: &AtomicUsize,
    ) -> MutexGuard<'a, rusqlite::Connection> {
        let start = next.fetch_add(1, Ordering::Relaxed);
        for i in 0..readers.len() {
            let m = &readers[(start + i) % readers.len()];
            if let Ok(g) = m.try_lock() {
                return g;
            }
        }
        let m = &readers[start % readers.len()];
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on a read connection.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&Connection<'_>) -> Result<T, RepoError>,
    ) -> Result<T, RepoError> {
        match &self.engine {
            Store::Lite { readers, next, .. } => {
                let conn = Self::reader(readers, next);
                f(&Connection::Lite(&conn))
            }
            Store::Pg(p) => {
                let g = p.conn();
                f(&Connection::Pg(&g))
            }
        }
    }

    /// Runs `f` in one transaction (SQLite: immediate, on the writer; PostgreSQL: holding
    /// the cluster-wide write lock); commits when it returns `Ok`.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&Connection<'_>) -> Result<T, RepoError>,
    ) -> Result<T, RepoError> {
        match &self.engine {
            Store::Lite { writer, .. } => {
                let mut conn = writer.lock().unwrap_or_else(|p| p.into_inner());
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .ctx("begin")?;
                let out = f(&Connection::Lite(&tx))?;
                tx.commit().ctx("commit")?;
                Ok(out)
            }
            Store::Pg(p) => {
                let g = p.conn();
                pg::PgPool::write(&g, || {
                    let c = Connection::Pg(&g);
                    let out = f(&c)?;
                    // Seen by the other replicas' watch once committed (their caches refresh).
                    c.execute("UPDATE hub_writes SET n = n + 1", ())
                        .ctx("count the write")?;
                    // Heard by every replica's listener once committed (none on rollback).
                    c.execute("SELECT pg_notify('hub_writes', '')", ())
                        .ctx("notify the write")?;
                    Ok(out)
                })
            }
        }
    }

    /// Runs `f` on the writer connection outside a transaction (pragmas, checks).
    pub(crate) fn with_writer<T>(
        &self,
        f: impl FnOnce(&Connection<'_>) -> Result<T, RepoError>,
    ) -> Result<T, RepoError> {
        match &self.engine {
            Store::Lite { writer, .. } => {
                let conn = writer.lock().unwrap_or_else(|p| p.into_inner());
                f(&Connection::Lite(&conn))
            }
            Store::Pg(p) => {
                let g = p.conn();
                f(&Connection::Pg(&g))
            }
        }
    }
}

/// Refuses a new user, organisation or repository `name` when one whose name differs only
/// by ASCII case exists (`Alice` beside `alice`); the name itself existing is fine.
pub(crate) fn refuse_case_twin(
    tx: &Connection<'_>,
    what: &str,
    name: &str,
) -> Result<(), RepoError> {
    let twin: Option<String> = tx
        .prepare_cached(
            "SELECT name FROM repositories WHERE lower(name) = lower(?1) AND name != ?1 \
             UNION SELECT name FROM users WHERE lower(name) = lower(?1) AND name != ?1 \
             UNION SELECT name FROM orgs WHERE lower(name) = lower(?1) AND name != ?1 LIMIT 1",
        )
        .and_then(|mut s| s.query_row([name], |r| r.get(0)).optional())
        .ctx("check names")?;
    match twin {
        Some(t) => Err(RepoError::Conflict(format!(
            "{what} {name:?} would differ from the existing {t:?} only by case"
        ))),
        None => Ok(()),
    }
}
