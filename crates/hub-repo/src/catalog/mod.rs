//! The catalog: repositories and their entries (flists, symlinks, crosslinks, taglinks),
//! tags, the flist files behind them, and the audit log. The hub's main seam: what the REST
//! API, the downloads and the pages read, and every publishing operation.
//!
//! Every write takes the acting [`Actor`], validates names, checks the actor may write into
//! the repository and is one transaction with its audit record ([`Catalog::audited`]). The
//! queries shared by the operations are in `sql.rs`; each file holds one group of
//! operations: `reads.rs` (listing, resolving), `store.rs` (staging and storing flist files,
//! their cached metadata and dump), `entries.rs` (links, renames, deletion, promotion),
//! `tags.rs`, `browse.rs` (the pages' read models), `audit.rs` (reading the log).

use std::sync::Arc;

use crate::db::sql::Connection;
use serde_json::Value;

use crate::clock::now;
use crate::db::Db;
use crate::files::Blobs;
use crate::names::validate_repo;
use crate::paths::PathIndex;
use crate::{Actor, RepoError};

mod audit;
pub mod browse;
mod entries;
mod reads;
pub(crate) mod sql;
mod store;
mod tags;
mod visibility;

pub use sql::MAX_HOPS;

/// The catalog of a hub (cheap to clone: a handle on the shared database and files).
#[derive(Clone, Debug)]
pub struct Catalog {
    pub(crate) db: Arc<Db>,
    pub(crate) blobs: Arc<Blobs>,
    paths: PathIndex,
}

impl Catalog {
    pub(crate) fn new(db: Arc<Db>, blobs: Arc<Blobs>, paths: PathIndex) -> Self {
        Catalog { db, blobs, paths }
    }

    /// A counter bumped by every committed write: caches keyed on it never serve stale data.
    pub fn generation(&self) -> u64 {
        self.db.generation()
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
            sql::bump_repo(tx, repo, ts)?;
            let out = f(tx, ts)?;
            sql::audit(tx, actor, action, repo, name, &detail, ts)?;
            Ok(out)
        })?;
        self.db.bump_generation();
        Ok(out)
    }

    /// Indexes a just-stored file's paths (a failure is logged, see
    /// [`PathIndex::ensure`](crate::paths::PathIndex::ensure)).
    fn index_stored(&self, sha256: &str) {
        self.paths.index_stored(sha256);
    }
}
