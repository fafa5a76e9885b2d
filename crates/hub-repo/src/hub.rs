//! [`Hub`]: a hub's data directory, opened. It holds the catalog database and the flist
//! files, and hands out one handle per seam of the model:
//! - [`Hub::catalog`]: repositories, entries, links, tags, flist files, audit log;
//! - [`Hub::accounts`]: local accounts, web sessions, API tokens, organisations;
//! - [`Hub::jobs`]: long-running jobs (uploads, conversions);
//! - [`Hub::paths`]: the index of every path of every stored flist;
//! - [`Hub::replica`]: the change feed and snapshots mirrors replicate from.
//!
//! Operations on the data directory as a whole (`gc`, `integrity_check`, `import_legacy`,
//! the hub's own backends and `replace_flist_file` for restamp, `stats`, `probe_writable`,
//! `entry_backends`) are in `maintenance/`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::accounts::Accounts;
use crate::catalog::Catalog;
use crate::db::Db;
use crate::files::Blobs;
use crate::jobs::Jobs;
use crate::paths::PathIndex;
use crate::replica::Replica;
use crate::RepoError;

/// A hub's data directory: a SQLite catalog plus content-addressed flist files. Every
/// method of it and of its seams blocks (call them from a blocking thread in async code);
/// the type is `Sync` and meant to be shared behind an `Arc`, and each seam's handle is
/// cheap to clone on its own.
#[derive(Debug)]
pub struct Hub {
    data: PathBuf,
    pub(crate) db: Arc<Db>,
    pub(crate) blobs: Arc<Blobs>,
    catalog: Catalog,
    accounts: Accounts,
    jobs: Jobs,
    paths: PathIndex,
    replica: Replica,
}

impl Hub {
    /// Opens (creating if needed) a hub data directory: `catalog.sqlite3`, `flists/`, `tmp/`.
    /// When no other process has it open, the leftovers of a previous run are recovered: temp
    /// files removed, jobs left queued or running marked failed. Otherwise (an admin command
    /// while the server runs) only temp files untouched for a day are removed.
    pub fn open(data: impl AsRef<Path>) -> Result<Self, RepoError> {
        Self::open_with(data, None, true)
    }

    /// [`Hub::open`] with the catalog elsewhere: `catalog` is a PostgreSQL URL
    /// (`postgres://user:pass@host:port/db`, see [`is_postgres_url`]) or the path of a
    /// SQLite file; `None` is the default, `catalog.sqlite3` in the data directory.
    pub fn open_on(data: impl AsRef<Path>, catalog: Option<&str>) -> Result<Self, RepoError> {
        Self::open_with(data, catalog, true)
    }

    /// Opens an existing hub data directory for administration beside a running server: refuses
    /// one that holds no catalog instead of creating an empty hub (a command pointed at the
    /// wrong directory), and leaves the server's running jobs alone.
    pub fn open_existing(data: impl AsRef<std::path::Path>) -> Result<Self, RepoError> {
        Self::open_existing_on(data, None)
    }

    /// [`Hub::open_existing`] with the catalog given as in [`Hub::open_on`]. A PostgreSQL
    /// catalog is taken as it is (a new database gets the schema).
    pub fn open_existing_on(
        data: impl AsRef<std::path::Path>,
        catalog: Option<&str>,
    ) -> Result<Self, RepoError> {
        let data = data.as_ref();
        if let Some(url) = catalog.filter(|c| is_postgres_url(c)) {
            return Hub::open_with(data, Some(url), false);
        }
        let catalog = catalog
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| data.join("catalog.sqlite3"));
        if !catalog.is_file() {
            return Err(RepoError::NotFound(format!(
                "no hub catalog in {} (expected {}; start `hub-server serve --data-dir {}` once, or pass the right --data-dir)",
                data.display(),
                catalog.display(),
                data.display()
            )));
        }
        Hub::open_with(data, Some(&catalog.to_string_lossy()), false)
    }

    /// Opens a data directory; `recover_jobs`: mark jobs left running as failed (only the
    /// server does, and only when no other process has the directory open, so
    /// administration commands can run beside it).
    fn open_with(
        data: impl AsRef<Path>,
        catalog: Option<&str>,
        recover_jobs: bool,
    ) -> Result<Self, RepoError> {
        let data = data.as_ref().to_path_buf();
        std::fs::create_dir_all(&data).map_err(|e| RepoError::io("create directory", &data, e))?;
        let blobs = Arc::new(Blobs::open(&data)?);
        let db = Arc::new(match catalog {
            Some(url) if is_postgres_url(url) => Db::open_postgres(url)?,
            Some(path) => Db::open(Path::new(path))?,
            None => Db::open(&data.join("catalog.sqlite3"))?,
        });
        let paths = PathIndex::new(db.clone(), blobs.clone());
        let catalog = Catalog::new(db.clone(), blobs.clone(), paths.clone());
        let hub = Hub {
            accounts: Accounts::new(db.clone()),
            jobs: Jobs::new(db.clone()),
            replica: Replica::new(db.clone(), blobs.clone(), catalog.clone()),
            catalog,
            paths,
            data,
            db,
            blobs,
        };
        // On a shared catalog the other replicas' jobs are running: theirs are failed by
        // `Jobs::fail_stale` once their replica stops touching them.
        if recover_jobs && hub.blobs.alone() && !hub.catalog_is_shared() {
            hub.jobs.fail_interrupted()?;
        }
        Ok(hub)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The catalog, for messages: its SQLite file, or its PostgreSQL URL without the
    /// password.
    pub fn catalog_location(&self) -> String {
        self.db.describe()
    }

    /// Keeps the flist files in `store` too, the object store every replica of a cluster
    /// shares (`s3://…`; any `dir://` works the same): from now on a file is stored there
    /// before the catalog records it, and a file this replica has no copy of is downloaded
    /// from there on first use (the data directory's `flists/` is then a cache). `gc` removes
    /// unreferenced files from both. Once per hub.
    pub fn share_files(&self, store: flist_store::BlockingBlobs) -> Result<(), RepoError> {
        self.blobs.share(store)
    }

    /// [`Hub::share_files`] with the store given by its URL (`s3://…`, `dir://…`), opened on
    /// a runtime of its own.
    pub fn share_files_at(&self, url: &str) -> Result<(), RepoError> {
        let store = flist_store::BlockingBlobs::open(url)
            .map_err(|source| RepoError::files("open", crate::files::SHARED_PREFIX, source))?;
        self.share_files(store)
    }

    /// Keeps this replica's local copies of shared flist files under `max_bytes`, least
    /// recently used first (see [`Hub::share_files`]); (files removed, bytes removed, bytes
    /// kept). Nothing to do when the files are not shared: the data directory is then their
    /// only home.
    pub fn trim_files_cache(&self, max_bytes: u64) -> Result<(u64, u64, u64), RepoError> {
        self.blobs.trim_cache(max_bytes)
    }

    /// The shared store of flist files, for messages (credentials redacted), when attached.
    pub fn shared_files(&self) -> Option<String> {
        self.blobs.shared().map(|s| s.to_string())
    }

    /// Whether the catalog is on PostgreSQL (shared by replicas) rather than SQLite.
    pub fn catalog_is_shared(&self) -> bool {
        self.db.engine() == crate::db::Engine::Postgres
    }

    /// A counter bumped by every committed write: caches keyed on it never serve stale data.
    pub fn generation(&self) -> u64 {
        self.db.generation()
    }

    /// Repositories, entries, links, tags, the flist files behind them, the audit log.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Local accounts, web sessions, API tokens, organisation memberships.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// Notices writes another process (the CLI: `restamp`, `import-legacy`, `user remove`;
    /// on PostgreSQL, the other replicas) committed to the catalog since the last call, and
    /// then bumps [`Hub::generation`] so that caches keyed on it are refreshed. True when
    /// there were some.
    pub fn notice_external_writes(&self) -> Result<bool, RepoError> {
        self.db.notice_external_writes()
    }

    /// Blocks at most `timeout` until a write may have been committed elsewhere: on a
    /// PostgreSQL catalog it returns as soon as a write transaction of any replica commits
    /// (each one notifies on commit); on SQLite it waits the whole `timeout`. A watch loop
    /// calls it, then [`Hub::notice_external_writes`]. True when woken by a notification
    /// (the connection to the catalog being reopened counts as one: writes may have gone
    /// unheard).
    pub fn wait_for_writes(&self, timeout: std::time::Duration) -> bool {
        self.db.wait_for_writes(timeout)
    }

    /// Long-running jobs (uploads, conversions), persisted across restarts.
    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }

    /// The index of every path of every stored flist file.
    pub fn paths(&self) -> &PathIndex {
        &self.paths
    }

    /// The change feed and repository snapshots (a primary's), applying them (a mirror's).
    pub fn replica(&self) -> &Replica {
        &self.replica
    }
}

/// Whether a `catalog` setting names a PostgreSQL database (`postgres://` or
/// `postgresql://`) rather than a SQLite file.
pub fn is_postgres_url(catalog: &str) -> bool {
    catalog.starts_with("postgres://") || catalog.starts_with("postgresql://")
}

/// A catalog setting as it may be shown: a PostgreSQL URL without its password, a path as
/// it is.
pub fn redact_catalog(catalog: &str) -> String {
    if is_postgres_url(catalog) {
        crate::db::pg::redact(catalog)
    } else {
        catalog.to_string()
    }
}
