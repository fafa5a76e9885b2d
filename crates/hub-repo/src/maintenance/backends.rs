//! The public backends this hub has announced over time (recorded as they change), the
//! stored flist files with the backend each announces, and the one catalog write that
//! re-stamps a file: `hub-server restamp` points flists stamped with a former backend of
//! this hub (an old public URL, an old 0-db endpoint host) to the current one.

use crate::db::sql::{params, OptionalExtension};
use serde::Serialize;
use serde_json::{json, Value};

use crate::catalog::sql::audit;
use crate::clock::now;
use crate::error::SqlContext;
use crate::files::StagedFlist;
use crate::{Actor, Hub, RepoError};

// The table `own_backends` is created by schema version 4 (`db/schema.rs`).

/// A public backend this hub announced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OwnBackend {
    /// The `backend` metadata as announced (JSON text, no credentials).
    pub backend: String,
    /// When the hub first announced it (unix time).
    pub first_seen: i64,
    /// When the hub last started (or re-stamped) announcing it.
    pub last_seen: i64,
}

/// A stored flist file used by regular entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlistFile {
    /// Content address.
    pub sha256: String,
    /// The raw `backend` metadata (JSON text), if the flist has one.
    pub backend: Option<String>,
    /// The regular entries (`repo`, `name`) whose file it is, sorted.
    pub entries: Vec<(String, String)>,
}

/// Whether two `backend` texts announce the same thing (as JSON values, whatever the key
/// order and spacing; as text when either is not JSON).
pub fn same_backend(a: &str, b: &str) -> bool {
    match (
        serde_json::from_str::<Value>(a),
        serde_json::from_str::<Value>(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => a.trim() == b.trim(),
    }
}

impl Hub {
    /// Records `backend` as the hub's current public backend: new, or seen again now.
    /// True when it was not known.
    pub fn record_own_backend(&self, backend: &str) -> Result<bool, RepoError> {
        let known = self
            .own_backends()?
            .into_iter()
            .find(|b| same_backend(&b.backend, backend));
        let key = known.as_ref().map_or(backend, |b| b.backend.as_str());
        let ts = now();
        self.db.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO own_backends(backend, first_seen, last_seen) VALUES (?1, ?2, ?2) \
                 ON CONFLICT(backend) DO UPDATE SET last_seen = excluded.last_seen",
            )
            .and_then(|mut s| s.execute(params![key, ts]))
            .ctx("record the hub's backend")?;
            Ok(())
        })?;
        Ok(known.is_none())
    }

    /// Every public backend this hub has announced, the most recently seen first.
    pub fn own_backends(&self) -> Result<Vec<OwnBackend>, RepoError> {
        self.db.read(|c| {
            c.prepare_cached(
                "SELECT backend, first_seen, last_seen FROM own_backends \
                 ORDER BY last_seen DESC, first_seen DESC",
            )
            .and_then(|mut s| {
                s.query_map((), |r| {
                    Ok(OwnBackend {
                        backend: r.get(0)?,
                        first_seen: r.get(1)?,
                        last_seen: r.get(2)?,
                    })
                })
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            })
            .ctx("read the hub's backends")
        })
    }

    /// Every stored flist file regular entries use, with the backend it announces.
    pub fn flist_files(&self) -> Result<Vec<FlistFile>, RepoError> {
        self.db.read(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT e.sha256, b.metadata, e.repo, e.name FROM entries e \
                     LEFT JOIN blobs b ON b.sha256 = e.sha256 \
                     WHERE e.kind = 'regular' ORDER BY e.sha256, e.repo, e.name",
                )
                .ctx("list flist files")?;
            let rows = st
                .query_map((), |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                })
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .ctx("list flist files")?;
            let mut out: Vec<FlistFile> = Vec::new();
            for (sha, md, repo, name) in rows {
                match out.last_mut() {
                    Some(f) if f.sha256 == sha => f.entries.push((repo, name)),
                    _ => out.push(FlistFile {
                        backend: md.as_deref().and_then(backend_of),
                        sha256: sha,
                        entries: vec![(repo, name)],
                    }),
                }
            }
            Ok(out)
        })
    }

    /// Replaces the stored file `old` by `staged` — the same flist with its `backend`
    /// metadata set to `backend` — for every regular entry using `old`, in one transaction
    /// (audited per entry as `action`): names, links, tags, times and uploaders are kept,
    /// readers see either file whole. The old file is left to `gc`. Returns the entries
    /// changed (none when no entry uses `old` any more).
    pub fn replace_flist_file(
        &self,
        actor: &Actor,
        action: &str,
        old: &str,
        staged: StagedFlist,
        backend: &str,
    ) -> Result<Vec<(String, String)>, RepoError> {
        let changed = self.db.write(|tx| {
            let row: Option<(Option<String>, Option<String>)> = tx
                .prepare_cached("SELECT metadata, dump FROM blobs WHERE sha256 = ?1")
                .and_then(|mut s| {
                    s.query_row(params![old], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                })
                .ctx("read flist file")?;
            let Some((metadata, dump)) = row else {
                return Err(RepoError::NotFound(format!("flist file {old}")));
            };
            let entries: Vec<(String, String)> = tx
                .prepare_cached(
                    "SELECT repo, name FROM entries WHERE kind = 'regular' AND sha256 = ?1 \
                     ORDER BY repo, name",
                )
                .and_then(|mut s| {
                    s.query_map(params![old], |r| Ok((r.get(0)?, r.get(1)?)))
                        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                })
                .ctx("read entries")?;
            if entries.is_empty() {
                return Ok(entries);
            }
            let metadata = metadata.map(|m| with_backend(&m, backend));
            let ts = now();
            self.blobs.commit(&staged)?;
            tx.prepare_cached(
                "INSERT INTO blobs(sha256, md5, size, metadata, dump, created) VALUES (?1,?2,?3,?4,?5,?6) \
                 ON CONFLICT(sha256) DO NOTHING",
            )
            .and_then(|mut s| {
                s.execute(params![
                    staged.sha256,
                    staged.md5,
                    staged.size as i64,
                    metadata,
                    dump,
                    ts
                ])
            })
            .ctx("record flist file")?;
            tx.prepare_cached(
                "UPDATE entries SET sha256 = ?2 WHERE kind = 'regular' AND sha256 = ?1",
            )
            .and_then(|mut s| s.execute(params![old, staged.sha256]))
            .ctx("point entries to the new file")?;
            // The tree is the same: the path index moves with the entries.
            tx.prepare_cached(
                "UPDATE path_blobs SET sha256 = ?2 WHERE sha256 = ?1 \
                 AND NOT EXISTS (SELECT 1 FROM path_blobs WHERE sha256 = ?2)",
            )
            .and_then(|mut s| s.execute(params![old, staged.sha256]))
            .ctx("move the path index")?;
            let detail = json!({"from": old, "sha256": staged.sha256, "backend": backend});
            for (repo, name) in &entries {
                audit(tx, actor, action, repo, name, &detail, ts)?;
            }
            Ok(entries)
        })?;
        self.db.bump_generation();
        self.paths().index_stored(&staged.sha256);
        Ok(changed)
    }
}

/// The `backend` of a flist's cached metadata (a JSON object of strings).
fn backend_of(metadata: &str) -> Option<String> {
    serde_json::from_str::<Value>(metadata)
        .ok()?
        .get("backend")?
        .as_str()
        .map(str::to_string)
}

/// Cached metadata with `backend` replaced.
fn with_backend(metadata: &str, backend: &str) -> String {
    match serde_json::from_str::<Value>(metadata) {
        Ok(Value::Object(mut m)) => {
            m.insert("backend".into(), Value::String(backend.to_string()));
            Value::Object(m).to_string()
        }
        _ => json!({ "backend": backend }).to_string(),
    }
}
