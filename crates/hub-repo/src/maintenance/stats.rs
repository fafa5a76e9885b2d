//! Figures for monitoring (`/metrics`) and the readiness probe (`/readyz`).

use std::collections::BTreeMap;

use crate::error::SqlContext;
use crate::{Hub, RepoError};

/// Size of the catalog and of the jobs it tracks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CatalogStats {
    /// Repositories.
    pub repositories: u64,
    /// Entries by kind (`regular`, `symlink`, `taglink`).
    pub entries: BTreeMap<String, u64>,
    /// Distinct flist files stored.
    pub files: u64,
    /// Their total size in bytes.
    pub file_bytes: u64,
    /// Local accounts.
    pub users: u64,
    /// Jobs by state (`queued`, `running`, `done`, `failed`).
    pub jobs: BTreeMap<String, u64>,
}

fn count(c: &crate::db::sql::Connection<'_>, sql: &str) -> Result<u64, RepoError> {
    c.query_row(sql, (), |r| r.get::<_, Option<i64>>(0))
        .map(|n| n.unwrap_or(0).max(0) as u64)
        .ctx("catalog statistics")
}

fn grouped(
    c: &crate::db::sql::Connection<'_>,
    sql: &str,
) -> Result<BTreeMap<String, u64>, RepoError> {
    let mut st = c.prepare_cached(sql).ctx("catalog statistics")?;
    let rows = st
        .query_map((), |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .ctx("catalog statistics")?;
    Ok(rows
        .into_iter()
        .map(|(k, n)| (k, n.max(0) as u64))
        .collect())
}

impl Hub {
    /// Counts of repositories, entries, files, accounts and jobs.
    pub fn stats(&self) -> Result<CatalogStats, RepoError> {
        self.db.read(|c| {
            let mut jobs = grouped(c, "SELECT state, count(*) FROM jobs GROUP BY state")?;
            for s in ["queued", "running", "done", "failed"] {
                jobs.entry(s.to_string()).or_insert(0);
            }
            let mut entries = grouped(c, "SELECT kind, count(*) FROM entries GROUP BY kind")?;
            for k in ["regular", "symlink", "taglink"] {
                entries.entry(k.to_string()).or_insert(0);
            }
            Ok(CatalogStats {
                repositories: count(c, "SELECT count(*) FROM repositories")?,
                entries,
                files: count(c, "SELECT count(*) FROM blobs")?,
                file_bytes: count(c, "SELECT CAST(sum(size) AS BIGINT) FROM blobs")?,
                users: count(c, "SELECT count(*) FROM users")?,
                jobs,
            })
        })
    }

    /// Checks the catalog can be written now (a write transaction that changes nothing) and
    /// that the data directory accepts files.
    pub fn probe_writable(&self) -> Result<(), RepoError> {
        self.db.write(|tx| {
            tx.execute_batch("CREATE TEMP TABLE IF NOT EXISTS probe(x INTEGER); DROP TABLE probe;")
                .ctx("write probe")
        })?;
        let p = self.blobs.temp_path(".probe");
        std::fs::write(&p, b"probe").map_err(|e| RepoError::io("write", &p, e))?;
        std::fs::remove_file(&p).map_err(|e| RepoError::io("remove", &p, e))?;
        Ok(())
    }
}

/// A regular entry and the `backend` metadata of its flist file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryBackend {
    /// Repository.
    pub repo: String,
    /// Entry name.
    pub name: String,
    /// The raw `backend` metadata (JSON text), if the flist has one.
    pub backend: Option<String>,
}

impl Hub {
    /// Every regular entry with the `backend` its flist announces (for `hub-server check`).
    pub fn entry_backends(&self) -> Result<Vec<EntryBackend>, RepoError> {
        let mut out: Vec<EntryBackend> = self
            .flist_files()?
            .into_iter()
            .flat_map(|f| {
                let backend = f.backend;
                f.entries.into_iter().map(move |(repo, name)| EntryBackend {
                    repo,
                    name,
                    backend: backend.clone(),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.repo, &a.name).cmp(&(&b.repo, &b.name)));
        Ok(out)
    }
}
