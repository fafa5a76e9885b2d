//! The SQLite catalog: schema (versioned by `migrate.rs`), one writer connection, a small
//! pool of readers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::error::SqlContext;
use crate::RepoError;

/// The catalog tables (schema version 1, see `migrate.rs`).
pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS repositories (
    name    TEXT PRIMARY KEY,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS blobs (
    sha256   TEXT PRIMARY KEY,
    md5      TEXT NOT NULL,
    size     INTEGER NOT NULL,
    metadata TEXT,
    dump     TEXT,
    created  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    repo        TEXT NOT NULL REFERENCES repositories(name),
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('regular', 'symlink', 'taglink')),
    sha256      TEXT REFERENCES blobs(sha256),
    target_repo TEXT,
    target_name TEXT,
    updated     INTEGER NOT NULL,
    linktime    INTEGER,
    uploader    TEXT,
    source      TEXT,
    PRIMARY KEY (repo, name),
    CHECK ((kind = 'regular') = (sha256 IS NOT NULL)),
    CHECK ((kind = 'regular') = (target_repo IS NULL))
);
CREATE INDEX IF NOT EXISTS entries_sha ON entries(sha256);
CREATE TABLE IF NOT EXISTS tags (
    repo    TEXT NOT NULL REFERENCES repositories(name),
    tag     TEXT NOT NULL,
    updated INTEGER NOT NULL,
    PRIMARY KEY (repo, tag)
);
CREATE TABLE IF NOT EXISTS tag_links (
    repo        TEXT NOT NULL,
    tag         TEXT NOT NULL,
    name        TEXT NOT NULL,
    target_repo TEXT NOT NULL,
    target_name TEXT NOT NULL,
    linktime    INTEGER NOT NULL,
    PRIMARY KEY (repo, tag, name),
    FOREIGN KEY (repo, tag) REFERENCES tags(repo, tag) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS orgs (
    name    TEXT PRIMARY KEY,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS org_members (
    org  TEXT NOT NULL REFERENCES orgs(name) ON DELETE CASCADE,
    user TEXT NOT NULL,
    PRIMARY KEY (org, user)
);
CREATE TABLE IF NOT EXISTS tokens (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    hash     TEXT NOT NULL UNIQUE,
    user     TEXT NOT NULL,
    memberof TEXT NOT NULL,
    label    TEXT,
    created  INTEGER NOT NULL,
    expires  INTEGER NOT NULL,
    revoked  INTEGER
);
CREATE TABLE IF NOT EXISTS jobs (
    id       TEXT PRIMARY KEY,
    kind     TEXT NOT NULL,
    owner    TEXT NOT NULL,
    state    TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    progress INTEGER NOT NULL DEFAULT 0,
    message  TEXT NOT NULL DEFAULT '',
    info     TEXT,
    created  INTEGER NOT NULL,
    updated  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    ts        INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    acting_as TEXT NOT NULL,
    action    TEXT NOT NULL,
    repo      TEXT NOT NULL,
    name      TEXT NOT NULL,
    detail    TEXT NOT NULL
);
"#;

/// Number of read connections.
const READERS: usize = 4;

/// The catalog database: a writer connection and a pool of readers (WAL mode lets them run
/// alongside the writer).
pub(crate) struct Db {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next: AtomicUsize,
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
        crate::migrate::migrate(&mut writer, &path.display().to_string())?;
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
        })
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
