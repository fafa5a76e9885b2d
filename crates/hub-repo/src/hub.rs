//! [`Hub`]: the repository model and every operation on it.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::{json, Value};

use crate::blobs::{Blobs, StagedFlist};
use crate::db::Db;
use crate::error::SqlContext;
use crate::model::*;
use crate::names::{validate_entry, validate_flist, validate_repo, validate_tag, validate_taglink};
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
}

fn entry_from_row(row: &Row<'_>, blob: Option<(String, u64)>) -> rusqlite::Result<Entry> {
    let kind: String = row.get(2)?;
    let kind = match kind.as_str() {
        "regular" => {
            let (md5, size) = blob.unwrap_or_default();
            EntryKind::Regular {
                sha256: row.get(3)?,
                md5,
                size,
            }
        }
        "symlink" => EntryKind::Symlink {
            target_repo: row.get(4)?,
            target_name: row.get(5)?,
        },
        _ => EntryKind::Taglink {
            target_repo: row.get(4)?,
            tag: row.get(5)?,
        },
    };
    Ok(Entry {
        repo: row.get(0)?,
        name: row.get(1)?,
        kind,
        updated: row.get(6)?,
        linktime: row.get(7)?,
        uploader: row.get(8)?,
        source: row.get(9)?,
    })
}

/// Reads one entry (with its blob's md5 and size for regular entries).
pub(crate) fn get_entry(
    conn: &Connection,
    repo: &str,
    name: &str,
) -> Result<Option<Entry>, RepoError> {
    conn.prepare_cached(
        "SELECT e.repo, e.name, e.kind, e.sha256, e.target_repo, e.target_name, e.updated, \
         e.linktime, e.uploader, e.source, b.md5, b.size \
         FROM entries e LEFT JOIN blobs b ON b.sha256 = e.sha256 WHERE e.repo = ?1 AND e.name = ?2",
    )
    .and_then(|mut st| {
        st.query_row(params![repo, name], |r| {
            let blob = match r.get::<_, Option<String>>(10)? {
                Some(md5) => Some((md5, r.get::<_, i64>(11)? as u64)),
                None => None,
            };
            entry_from_row(r, blob)
        })
        .optional()
    })
    .ctx("read entry")
}

/// Follows links from `repo/name` to a regular entry.
pub(crate) fn resolve_on(conn: &Connection, repo: &str, name: &str) -> Result<Resolved, RepoError> {
    let mut seen = HashSet::new();
    let (mut r, mut n) = (repo.to_string(), name.to_string());
    loop {
        if !seen.insert((r.clone(), n.clone())) || seen.len() > MAX_HOPS {
            return Err(RepoError::Cycle(format!("{repo}/{name}")));
        }
        let e = get_entry(conn, &r, &n)?.ok_or_else(|| RepoError::NotFound(format!("{r}/{n}")))?;
        match e.kind {
            EntryKind::Regular { sha256, md5, size } => {
                return Ok(Resolved {
                    repo: e.repo,
                    name: e.name,
                    sha256,
                    md5,
                    size,
                    updated: e.updated,
                    uploader: e.uploader,
                    source: e.source,
                })
            }
            EntryKind::Symlink {
                target_repo,
                target_name,
            } => {
                r = target_repo;
                n = target_name;
            }
            EntryKind::Taglink { .. } => {
                return Err(RepoError::Invalid(format!(
                    "{r}/{n} is a taglink, not a flist"
                )))
            }
        }
    }
}

/// Finds the concrete tag `repo/tag` designates, following taglinks.
pub(crate) fn resolve_tag_on(
    conn: &Connection,
    repo: &str,
    tag: &str,
) -> Result<(String, String), RepoError> {
    let mut seen = HashSet::new();
    let (mut r, mut t) = (repo.to_string(), tag.to_string());
    loop {
        if !seen.insert((r.clone(), t.clone())) || seen.len() > MAX_HOPS {
            return Err(RepoError::Cycle(format!("{repo}/tags/{tag}")));
        }
        let exists = conn
            .prepare_cached("SELECT 1 FROM tags WHERE repo = ?1 AND tag = ?2")
            .and_then(|mut s| s.exists(params![r, t]))
            .ctx("read tag")?;
        if exists {
            return Ok((r, t));
        }
        match get_entry(conn, &r, &t)? {
            Some(Entry {
                kind: EntryKind::Taglink { target_repo, tag },
                ..
            }) => {
                r = target_repo;
                t = tag;
            }
            _ => return Err(RepoError::NotFound(format!("{r}/tags/{t}"))),
        }
    }
}

fn bump_repo(tx: &Connection, repo: &str, ts: i64) -> Result<(), RepoError> {
    tx.prepare_cached(
        "INSERT INTO repositories(name, created, updated) VALUES (?1, ?2, ?2) \
         ON CONFLICT(name) DO UPDATE SET updated = excluded.updated",
    )
    .and_then(|mut s| s.execute(params![repo, ts]))
    .ctx("update repository")?;
    Ok(())
}

fn audit(
    tx: &Connection,
    actor: &Actor,
    action: &str,
    repo: &str,
    name: &str,
    detail: &Value,
    ts: i64,
) -> Result<(), RepoError> {
    tx.prepare_cached(
        "INSERT INTO audit(ts, actor, acting_as, action, repo, name, detail) VALUES (?1,?2,?3,?4,?5,?6,?7)",
    )
    .and_then(|mut s| {
        s.execute(params![ts, actor.user, actor.active, action, repo, name, detail.to_string()])
    })
    .ctx("append audit record")?;
    Ok(())
}

fn upsert_link(
    tx: &Connection,
    repo: &str,
    name: &str,
    kind: &str,
    trepo: &str,
    tname: &str,
    ts: i64,
) -> Result<(), RepoError> {
    tx.prepare_cached(
        "INSERT INTO entries(repo, name, kind, sha256, target_repo, target_name, updated, linktime) \
         VALUES (?1, ?2, ?3, NULL, ?4, ?5, ?6, ?6) \
         ON CONFLICT(repo, name) DO UPDATE SET kind = excluded.kind, sha256 = NULL, \
         target_repo = excluded.target_repo, target_name = excluded.target_name, \
         updated = excluded.updated, linktime = excluded.linktime, uploader = NULL, source = NULL",
    )
    .and_then(|mut s| s.execute(params![repo, name, kind, trepo, tname, ts]))
    .ctx("write link")?;
    Ok(())
}

fn upsert_regular(
    tx: &Connection,
    repo: &str,
    name: &str,
    sha256: &str,
    uploader: &str,
    source: Option<&str>,
    ts: i64,
) -> Result<(), RepoError> {
    tx.prepare_cached(
        "INSERT INTO entries(repo, name, kind, sha256, target_repo, target_name, updated, linktime, uploader, source) \
         VALUES (?1, ?2, 'regular', ?3, NULL, NULL, ?4, NULL, ?5, ?6) \
         ON CONFLICT(repo, name) DO UPDATE SET kind = 'regular', sha256 = excluded.sha256, \
         target_repo = NULL, target_name = NULL, updated = excluded.updated, linktime = NULL, \
         uploader = excluded.uploader, source = excluded.source",
    )
    .and_then(|mut s| s.execute(params![repo, name, sha256, ts, uploader, source]))
    .ctx("write entry")?;
    Ok(())
}

/// Fails with [`RepoError::Conflict`] when `repo/name` holds a regular flist.
fn refuse_regular(tx: &Connection, repo: &str, name: &str) -> Result<(), RepoError> {
    match get_entry(tx, repo, name)? {
        Some(Entry {
            kind: EntryKind::Regular { .. },
            ..
        }) => Err(RepoError::Conflict(format!(
            "{repo}/{name} is a regular flist: a link never replaces one"
        ))),
        Some(Entry {
            kind: EntryKind::Taglink { .. },
            ..
        }) => Err(RepoError::Conflict(format!("{repo}/{name} is a taglink"))),
        _ => Ok(()),
    }
}

fn check_no_cycle(tx: &Connection, repo: &str, name: &str) -> Result<(), RepoError> {
    match resolve_on(tx, repo, name) {
        Err(RepoError::Cycle(_)) => Err(RepoError::Conflict(format!(
            "linking {repo}/{name} would create a cycle"
        ))),
        _ => Ok(()),
    }
}

impl Hub {
    /// Opens (creating if needed) a hub data directory: `catalog.sqlite3`, `flists/`, `tmp/`.
    /// Jobs left queued or running by a previous process are marked failed.
    pub fn open(data: impl AsRef<Path>) -> Result<Self, RepoError> {
        Self::open_with(data, true)
    }

    /// Opens a data directory; `recover_jobs`: mark jobs left running as failed (only the
    /// server does, so administration commands can run beside it).
    pub(crate) fn open_with(data: impl AsRef<Path>, recover_jobs: bool) -> Result<Self, RepoError> {
        let data = data.as_ref().to_path_buf();
        std::fs::create_dir_all(&data).map_err(|e| RepoError::io("create directory", &data, e))?;
        let db = Db::open(&data.join("catalog.sqlite3"))?;
        let blobs = Blobs::open(&data)?;
        let hub = Hub {
            data,
            db,
            blobs,
            generation: AtomicU64::new(1),
        };
        if recover_jobs {
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
    fn audited<T>(
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

    // ----- staging -------------------------------------------------------------------------

    /// A fresh path in the hub's temp area (same filesystem as the store), e.g. for a
    /// converter to write a flist into before [`Hub::stage_file`].
    pub fn temp_path(&self, suffix: &str) -> PathBuf {
        self.blobs.temp_path(suffix)
    }

    /// The hub's temp directory.
    pub fn tmp_dir(&self) -> &Path {
        self.blobs.tmp_dir()
    }

    /// Streams `input` into a staged (fsynced, hashed, unreferenced) flist file.
    pub fn stage_reader(&self, input: impl Read) -> Result<StagedFlist, RepoError> {
        self.blobs.stage_reader(input)
    }

    /// Stages an existing file (moved into the temp area).
    pub fn stage_file(&self, path: &Path) -> Result<StagedFlist, RepoError> {
        self.blobs.stage_file(path)
    }

    /// Path of the stored file for a content address.
    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.blobs.path_of(sha256)
    }

    // ----- writes --------------------------------------------------------------------------

    /// Creates or replaces the regular entry `repo/name` with a staged flist file.
    ///
    /// The file is moved to its content address first, then one transaction records the blob,
    /// the entry and the audit record: a crash in between leaves the previous state.
    pub fn put_flist(
        &self,
        actor: &Actor,
        repo: &str,
        name: &str,
        staged: StagedFlist,
        info: FlistInfo,
    ) -> Result<Entry, RepoError> {
        self.put_flist_as(actor, "upload", repo, name, staged, info, json!({}))
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn put_flist_as(
        &self,
        actor: &Actor,
        action: &str,
        repo: &str,
        name: &str,
        staged: StagedFlist,
        info: FlistInfo,
        mut detail: Value,
    ) -> Result<Entry, RepoError> {
        validate_repo(repo)?;
        validate_flist(name)?;
        actor.check_write(repo)?;
        self.blobs.commit(&staged)?;
        if let Value::Object(m) = &mut detail {
            m.insert("sha256".into(), json!(staged.sha256));
            m.insert("source".into(), json!(info.source));
        }
        let metadata = info.metadata.map(|m| Value::Object(m).to_string());
        let dump = info.dump.map(|d| d.to_string());
        let uploader = actor.user.clone();
        self.audited(actor, action, repo, name, detail, |tx, ts| {
            tx.prepare_cached(
                "INSERT INTO blobs(sha256, md5, size, metadata, dump, created) VALUES (?1,?2,?3,?4,?5,?6) \
                 ON CONFLICT(sha256) DO UPDATE SET metadata = coalesce(blobs.metadata, excluded.metadata), \
                 dump = coalesce(blobs.dump, excluded.dump)",
            )
            .and_then(|mut s| {
                s.execute(params![staged.sha256, staged.md5, staged.size as i64, metadata, dump, ts])
            })
            .ctx("record flist file")?;
            upsert_regular(tx, repo, name, &staged.sha256, &uploader, info.source.as_deref(), ts)?;
            get_entry(tx, repo, name)?.ok_or_else(|| RepoError::NotFound(format!("{repo}/{name}")))
        })
    }

    /// Records one staged flist under many `(repo, name)` entries in a single transaction
    /// (seeding, mirroring, benchmarks); each entry is audited like an upload.
    pub fn put_flist_many(
        &self,
        actor: &Actor,
        targets: &[(String, String)],
        staged: StagedFlist,
        info: FlistInfo,
    ) -> Result<usize, RepoError> {
        for (repo, name) in targets {
            validate_repo(repo)?;
            validate_flist(name)?;
            actor.check_write(repo)?;
        }
        self.blobs.commit(&staged)?;
        let metadata = info.metadata.map(|m| Value::Object(m).to_string());
        let dump = info.dump.map(|d| d.to_string());
        let detail = json!({"sha256": staged.sha256, "source": info.source});
        let n = self.db.write(|tx| {
            let ts = now();
            tx.prepare_cached(
                "INSERT INTO blobs(sha256, md5, size, metadata, dump, created) VALUES (?1,?2,?3,?4,?5,?6) \
                 ON CONFLICT(sha256) DO UPDATE SET metadata = coalesce(blobs.metadata, excluded.metadata), \
                 dump = coalesce(blobs.dump, excluded.dump)",
            )
            .and_then(|mut s| s.execute(params![staged.sha256, staged.md5, staged.size as i64, metadata, dump, ts]))
            .ctx("record flist file")?;
            for (repo, name) in targets {
                bump_repo(tx, repo, ts)?;
                upsert_regular(tx, repo, name, &staged.sha256, &actor.user, info.source.as_deref(), ts)?;
                audit(tx, actor, "upload", repo, name, &detail, ts)?;
            }
            Ok(targets.len())
        })?;
        self.bump_generation();
        Ok(n)
    }

    /// `linkname` → `source`, both in `repo`. Replaces a link, never a regular flist (409).
    pub fn link(
        &self,
        actor: &Actor,
        repo: &str,
        source: &str,
        linkname: &str,
    ) -> Result<(), RepoError> {
        self.link_entry(actor, "link", repo, linkname, repo, source)
    }

    /// `linkname` (in `repo`) → `target_repo/source`.
    pub fn crosslink(
        &self,
        actor: &Actor,
        repo: &str,
        linkname: &str,
        target_repo: &str,
        source: &str,
    ) -> Result<(), RepoError> {
        validate_repo(target_repo)?;
        self.link_entry(actor, "crosslink", repo, linkname, target_repo, source)
    }

    /// Creates or replaces the symlink `repo/linkname` → `target_repo/source` (audited as
    /// `action`): the target must exist, a regular flist is never replaced, no cycle.
    fn link_entry(
        &self,
        actor: &Actor,
        action: &str,
        repo: &str,
        linkname: &str,
        target_repo: &str,
        source: &str,
    ) -> Result<(), RepoError> {
        validate_flist(source)?;
        validate_flist(linkname)?;
        if target_repo == repo && source == linkname {
            return Err(RepoError::Invalid(format!(
                "{linkname} cannot link to itself"
            )));
        }
        let detail = json!({"target_repo": target_repo, "target_name": source});
        self.audited(actor, action, repo, linkname, detail, |tx, ts| {
            if get_entry(tx, target_repo, source)?.is_none() {
                return Err(RepoError::NotFound(format!("{target_repo}/{source}")));
            }
            refuse_regular(tx, repo, linkname)?;
            upsert_link(tx, repo, linkname, "symlink", target_repo, source, ts)?;
            check_no_cycle(tx, repo, linkname)
        })
    }

    /// Renames an entry; refuses to overwrite (409).
    pub fn rename(
        &self,
        actor: &Actor,
        repo: &str,
        source: &str,
        destination: &str,
    ) -> Result<(), RepoError> {
        validate_entry(source)?;
        validate_entry(destination)?;
        if source.ends_with(".flist") != destination.ends_with(".flist") {
            return Err(RepoError::Invalid(format!(
                "cannot rename {source} to {destination}: flists keep a .flist name, taglinks do not"
            )));
        }
        let detail = json!({"destination": destination});
        self.audited(actor, "rename", repo, source, detail, |tx, ts| {
            if get_entry(tx, repo, source)?.is_none() {
                return Err(RepoError::NotFound(format!("{repo}/{source}")));
            }
            if get_entry(tx, repo, destination)?.is_some() {
                return Err(RepoError::Conflict(format!("{repo}/{destination} already exists")));
            }
            tx.prepare_cached("UPDATE entries SET name = ?3, updated = CASE WHEN kind = 'regular' THEN ?4 ELSE updated END WHERE repo = ?1 AND name = ?2")
                .and_then(|mut s| s.execute(params![repo, source, destination, ts]))
                .ctx("rename entry")?;
            Ok(())
        })
    }

    /// Removes an entry (flist, link or taglink).
    pub fn delete(&self, actor: &Actor, repo: &str, name: &str) -> Result<(), RepoError> {
        validate_entry(name)?;
        self.audited(actor, "delete", repo, name, json!({}), |tx, _| {
            let n = tx
                .prepare_cached("DELETE FROM entries WHERE repo = ?1 AND name = ?2")
                .and_then(|mut s| s.execute(params![repo, name]))
                .ctx("delete entry")?;
            if n == 0 {
                return Err(RepoError::NotFound(format!("{repo}/{name}")));
            }
            Ok(())
        })
    }

    /// Copies `src_repo/src_name` (resolved) into `repo` as `local` (the file is shared by
    /// content, nothing is copied on disk). Replaces an existing entry of that name.
    pub fn promote(
        &self,
        actor: &Actor,
        repo: &str,
        src_repo: &str,
        src_name: &str,
        local: &str,
    ) -> Result<Entry, RepoError> {
        validate_repo(src_repo)?;
        validate_flist(src_name)?;
        validate_flist(local)?;
        let detail = json!({"source_repo": src_repo, "source_name": src_name});
        let uploader = actor.user.clone();
        self.audited(actor, "promote", repo, local, detail, |tx, ts| {
            let r = resolve_on(tx, src_repo, src_name)?;
            let source = format!("{src_repo}/{src_name}");
            upsert_regular(tx, repo, local, &r.sha256, &uploader, Some(&source), ts)?;
            get_entry(tx, repo, local)?
                .ok_or_else(|| RepoError::NotFound(format!("{repo}/{local}")))
        })
    }

    /// Adds (or replaces) `linkname` → `target_repo/source` in `repo`'s tag `tag`.
    pub fn tag_add(
        &self,
        actor: &Actor,
        repo: &str,
        tag: &str,
        linkname: &str,
        target_repo: &str,
        source: &str,
    ) -> Result<(), RepoError> {
        validate_tag(tag)?;
        validate_flist(linkname)?;
        validate_repo(target_repo)?;
        validate_flist(source)?;
        let detail =
            json!({"linkname": linkname, "target_repo": target_repo, "target_name": source});
        self.audited(actor, "tag-add", repo, tag, detail, |tx, ts| {
            if get_entry(tx, target_repo, source)?.is_none() {
                return Err(RepoError::NotFound(format!("{target_repo}/{source}")));
            }
            tx.prepare_cached(
                "INSERT INTO tags(repo, tag, updated) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(repo, tag) DO UPDATE SET updated = excluded.updated",
            )
            .and_then(|mut s| s.execute(params![repo, tag, ts]))
            .ctx("write tag")?;
            tx.prepare_cached(
                "INSERT INTO tag_links(repo, tag, name, target_repo, target_name, linktime) VALUES (?1,?2,?3,?4,?5,?6) \
                 ON CONFLICT(repo, tag, name) DO UPDATE SET target_repo = excluded.target_repo, \
                 target_name = excluded.target_name, linktime = excluded.linktime",
            )
            .and_then(|mut s| s.execute(params![repo, tag, linkname, target_repo, source, ts]))
            .ctx("write tag link")?;
            Ok(())
        })
    }

    /// Removes `linkname` (pointing at `target_repo/source`) from `repo`'s tag `tag`; an
    /// emptied tag disappears.
    pub fn tag_remove(
        &self,
        actor: &Actor,
        repo: &str,
        tag: &str,
        linkname: &str,
        target_repo: &str,
        source: &str,
    ) -> Result<(), RepoError> {
        validate_tag(tag)?;
        validate_flist(linkname)?;
        validate_repo(target_repo)?;
        validate_flist(source)?;
        let detail =
            json!({"linkname": linkname, "target_repo": target_repo, "target_name": source});
        self.audited(actor, "tag-remove", repo, tag, detail, |tx, ts| {
            let n = tx
                .prepare_cached(
                    "DELETE FROM tag_links WHERE repo = ?1 AND tag = ?2 AND name = ?3 \
                     AND target_repo = ?4 AND target_name = ?5",
                )
                .and_then(|mut s| s.execute(params![repo, tag, linkname, target_repo, source]))
                .ctx("delete tag link")?;
            if n == 0 {
                return Err(RepoError::NotFound(format!(
                    "{repo}/tags/{tag}/{linkname} -> {target_repo}/{source}"
                )));
            }
            tx.prepare_cached(
                "DELETE FROM tags WHERE repo = ?1 AND tag = ?2 AND NOT EXISTS \
                 (SELECT 1 FROM tag_links WHERE repo = ?1 AND tag = ?2)",
            )
            .and_then(|mut s| s.execute(params![repo, tag]))
            .ctx("delete empty tag")?;
            tx.prepare_cached("UPDATE tags SET updated = ?3 WHERE repo = ?1 AND tag = ?2")
                .and_then(|mut s| s.execute(params![repo, tag, ts]))
                .ctx("touch tag")?;
            Ok(())
        })
    }

    /// Taglink `name` (in `repo`) → `target_repo`'s tag `tag`; replaces a taglink of that name.
    pub fn crosstag(
        &self,
        actor: &Actor,
        repo: &str,
        name: &str,
        target_repo: &str,
        tag: &str,
    ) -> Result<(), RepoError> {
        validate_taglink(name)?;
        validate_repo(target_repo)?;
        validate_tag(tag)?;
        let detail = json!({"target_repo": target_repo, "tag": tag});
        self.audited(actor, "crosstag", repo, name, detail, |tx, ts| {
            resolve_tag_on(tx, target_repo, tag)?;
            match get_entry(tx, repo, name)? {
                None
                | Some(Entry {
                    kind: EntryKind::Taglink { .. },
                    ..
                }) => {}
                Some(_) => {
                    return Err(RepoError::Conflict(format!(
                        "{repo}/{name} exists and is not a taglink"
                    )))
                }
            }
            upsert_link(tx, repo, name, "taglink", target_repo, tag, ts)?;
            match resolve_tag_on(tx, repo, name) {
                Err(RepoError::Cycle(_)) => Err(RepoError::Conflict(format!(
                    "taglink {repo}/{name} would create a cycle"
                ))),
                _ => Ok(()),
            }
        })
    }

    /// Removes taglink `name` → `target_repo/tags/tag`.
    pub fn crosstag_remove(
        &self,
        actor: &Actor,
        repo: &str,
        name: &str,
        target_repo: &str,
        tag: &str,
    ) -> Result<(), RepoError> {
        validate_taglink(name)?;
        validate_repo(target_repo)?;
        validate_tag(tag)?;
        let detail = json!({"target_repo": target_repo, "tag": tag});
        self.audited(actor, "crosstag-remove", repo, name, detail, |tx, _| {
            let n = tx
                .prepare_cached(
                    "DELETE FROM entries WHERE repo = ?1 AND name = ?2 AND kind = 'taglink' \
                     AND target_repo = ?3 AND target_name = ?4",
                )
                .and_then(|mut s| s.execute(params![repo, name, target_repo, tag]))
                .ctx("delete taglink")?;
            if n == 0 {
                return Err(RepoError::NotFound(format!(
                    "taglink {repo}/{name} -> {target_repo}/tags/{tag}"
                )));
            }
            Ok(())
        })
    }

    // ----- reads ---------------------------------------------------------------------------

    /// Every repository, sorted by name.
    pub fn repositories(&self) -> Result<Vec<RepoInfo>, RepoError> {
        self.db.read(|c| {
            let mut st = c
                .prepare_cached("SELECT name, updated FROM repositories ORDER BY name")
                .ctx("list repositories")?;
            let rows = st
                .query_map([], |r| {
                    Ok(RepoInfo {
                        name: r.get(0)?,
                        updated: r.get(1)?,
                    })
                })
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .ctx("list repositories")?;
            Ok(rows)
        })
    }

    /// Does `repo` exist?
    pub fn repository_exists(&self, repo: &str) -> Result<bool, RepoError> {
        self.db.read(|c| {
            c.prepare_cached("SELECT 1 FROM repositories WHERE name = ?1")
                .and_then(|mut s| s.exists(params![repo]))
                .ctx("read repository")
        })
    }

    /// One entry as stored.
    pub fn entry(&self, repo: &str, name: &str) -> Result<Option<Entry>, RepoError> {
        self.db.read(|c| get_entry(c, repo, name))
    }

    /// Follows links from `repo/name` down to a stored flist.
    pub fn resolve(&self, repo: &str, name: &str) -> Result<Resolved, RepoError> {
        self.db.read(|c| resolve_on(c, repo, name))
    }

    /// Resolves `name` inside tag `tag` of `repo` (following taglinks to the tag and links
    /// from the tag's entry).
    pub fn resolve_in_tag(&self, repo: &str, tag: &str, name: &str) -> Result<Resolved, RepoError> {
        self.db.read(|c| {
            let (r, t) = resolve_tag_on(c, repo, tag)?;
            let target: Option<(String, String)> = c
                .prepare_cached("SELECT target_repo, target_name FROM tag_links WHERE repo = ?1 AND tag = ?2 AND name = ?3")
                .and_then(|mut s| s.query_row(params![r, t, name], |row| Ok((row.get(0)?, row.get(1)?))).optional())
                .ctx("read tag link")?;
            let (tr, tn) = target.ok_or_else(|| RepoError::NotFound(format!("{repo}/tags/{tag}/{name}")))?;
            resolve_on(c, &tr, &tn)
        })
    }

    fn list_on(c: &Connection, repo: &str) -> Result<Vec<Listed>, RepoError> {
        let mut out = Vec::new();
        let entries: Vec<Entry> = {
            let mut st = c
                .prepare_cached(
                    "SELECT e.repo, e.name, e.kind, e.sha256, e.target_repo, e.target_name, e.updated, \
                     e.linktime, e.uploader, e.source, b.md5, b.size \
                     FROM entries e LEFT JOIN blobs b ON b.sha256 = e.sha256 WHERE e.repo = ?1 ORDER BY e.name",
                )
                .ctx("list entries")?;
            st.query_map(params![repo], |r| {
                let blob = match r.get::<_, Option<String>>(10)? {
                    Some(md5) => Some((md5, r.get::<_, i64>(11)? as u64)),
                    None => None,
                };
                entry_from_row(r, blob)
            })
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .ctx("list entries")?
        };
        for e in entries {
            out.push(match e.kind {
                EntryKind::Regular { size, .. } => Listed {
                    name: e.name,
                    kind: ListedKind::Regular,
                    size,
                    updated: e.updated,
                    linktime: None,
                    target: None,
                    broken: false,
                },
                EntryKind::Symlink {
                    target_repo,
                    target_name,
                } => {
                    let target = if target_repo == repo {
                        target_name.clone()
                    } else {
                        format!("{target_repo}/{target_name}")
                    };
                    let (size, updated, broken) = match resolve_on(c, &target_repo, &target_name) {
                        Ok(r) => (r.size, r.updated, false),
                        Err(
                            RepoError::NotFound(_) | RepoError::Cycle(_) | RepoError::Invalid(_),
                        ) => (0, e.updated, true),
                        Err(err) => return Err(err),
                    };
                    Listed {
                        name: e.name,
                        kind: ListedKind::Symlink,
                        size,
                        updated,
                        linktime: e.linktime,
                        target: Some(target),
                        broken,
                    }
                }
                EntryKind::Taglink { target_repo, tag } => {
                    let broken = match resolve_tag_on(c, &target_repo, &tag) {
                        Ok(_) => false,
                        Err(RepoError::NotFound(_) | RepoError::Cycle(_)) => true,
                        Err(err) => return Err(err),
                    };
                    Listed {
                        name: e.name,
                        kind: ListedKind::Taglink,
                        size: 0,
                        updated: e.updated,
                        linktime: e.linktime,
                        target: Some(format!("{target_repo}/tags/{tag}")),
                        broken,
                    }
                }
            });
        }
        let mut st = c
            .prepare_cached("SELECT tag, updated FROM tags WHERE repo = ?1 ORDER BY tag")
            .ctx("list tags")?;
        let tags = st
            .query_map(params![repo], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .ctx("list tags")?;
        for (tag, updated) in tags {
            out.push(Listed {
                name: tag,
                kind: ListedKind::Tag,
                size: 0,
                updated,
                linktime: None,
                target: None,
                broken: false,
            });
        }
        Ok(out)
    }

    /// A repository's entries (by name) then its tags; `None` when the repository is unknown.
    pub fn list(&self, repo: &str) -> Result<Option<Vec<Listed>>, RepoError> {
        self.db.read(|c| {
            let exists = c
                .prepare_cached("SELECT 1 FROM repositories WHERE name = ?1")
                .and_then(|mut s| s.exists(params![repo]))
                .ctx("read repository")?;
            if !exists {
                return Ok(None);
            }
            Self::list_on(c, repo).map(Some)
        })
    }

    /// Every repository's listing, by repository name.
    pub fn list_all(&self) -> Result<BTreeMap<String, Vec<Listed>>, RepoError> {
        self.db.read(|c| {
            let mut st = c
                .prepare_cached("SELECT name FROM repositories ORDER BY name")
                .ctx("list repositories")?;
            let names = st
                .query_map([], |r| r.get::<_, String>(0))
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .ctx("list repositories")?;
            let mut out = BTreeMap::new();
            for n in names {
                let l = Self::list_on(c, &n)?;
                out.insert(n, l);
            }
            Ok(out)
        })
    }

    /// `repo/name` of every entry of every repository.
    pub fn all_entry_names(&self) -> Result<Vec<String>, RepoError> {
        self.db.read(|c| {
            let mut st = c
                .prepare_cached("SELECT repo, name FROM entries ORDER BY repo, name")
                .ctx("list entries")?;
            let v = st
                .query_map([], |r| {
                    Ok(format!(
                        "{}/{}",
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?
                    ))
                })
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .ctx("list entries")?;
            Ok(v)
        })
    }

    /// Entries whose name contains `needle` (case-insensitive), at most `limit`.
    pub fn search(&self, needle: &str, limit: usize) -> Result<Vec<(String, String)>, RepoError> {
        let escaped: String = needle
            .chars()
            .flat_map(|ch| match ch {
                '%' | '_' | '\\' => vec!['\\', ch],
                _ => vec![ch],
            })
            .collect();
        let pattern = format!("%{escaped}%");
        self.db.read(|c| {
            let mut st = c
                .prepare_cached("SELECT repo, name FROM entries WHERE name LIKE ?1 ESCAPE '\\' ORDER BY repo, name LIMIT ?2")
                .ctx("search")?;
            let v = st
                .query_map(params![pattern, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .ctx("search")?;
            Ok(v)
        })
    }

    /// Links in `repo`'s tag `tag` (following taglinks to the tag), each resolved.
    pub fn tag_links(&self, repo: &str, tag: &str) -> Result<Vec<Listed>, RepoError> {
        self.db.read(|c| {
            let (r, t) = resolve_tag_on(c, repo, tag)?;
            let mut st = c
                .prepare_cached("SELECT name, target_repo, target_name, linktime FROM tag_links WHERE repo = ?1 AND tag = ?2 ORDER BY name")
                .ctx("list tag")?;
            let links = st
                .query_map(params![r, t], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?, row.get::<_, i64>(3)?))
                })
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .ctx("list tag")?;
            let mut out = Vec::with_capacity(links.len());
            for (name, tr, tn, linktime) in links {
                let (size, updated, broken) = match resolve_on(c, &tr, &tn) {
                    Ok(x) => (x.size, x.updated, false),
                    Err(RepoError::NotFound(_) | RepoError::Cycle(_) | RepoError::Invalid(_)) => (0, linktime, true),
                    Err(e) => return Err(e),
                };
                out.push(Listed {
                    name,
                    kind: ListedKind::Symlink,
                    size,
                    updated,
                    linktime: Some(linktime),
                    target: Some(format!("{tr}/{tn}")),
                    broken,
                });
            }
            Ok(out)
        })
    }

    /// The cached metadata (JSON object text) of a stored file, if recorded.
    pub fn blob_metadata(&self, sha256: &str) -> Result<Option<String>, RepoError> {
        self.db.read(|c| {
            c.prepare_cached("SELECT metadata FROM blobs WHERE sha256 = ?1")
                .and_then(|mut s| {
                    s.query_row(params![sha256], |r| r.get::<_, Option<String>>(0))
                        .optional()
                })
                .map(Option::flatten)
                .ctx("read metadata")
        })
    }

    /// The cached dump (JSON text) of a stored file, if recorded.
    pub fn blob_dump(&self, sha256: &str) -> Result<Option<String>, RepoError> {
        self.db.read(|c| {
            c.prepare_cached("SELECT dump FROM blobs WHERE sha256 = ?1")
                .and_then(|mut s| {
                    s.query_row(params![sha256], |r| r.get::<_, Option<String>>(0))
                        .optional()
                })
                .map(Option::flatten)
                .ctx("read dump")
        })
    }

    /// Records the metadata and dump computed for a stored file (not audited: derived data).
    pub fn set_blob_info(
        &self,
        sha256: &str,
        metadata: Option<&str>,
        dump: Option<&str>,
    ) -> Result<(), RepoError> {
        self.db.write(|tx| {
            tx.prepare_cached(
                "UPDATE blobs SET metadata = coalesce(?2, metadata), dump = coalesce(?3, dump) WHERE sha256 = ?1",
            )
            .and_then(|mut s| s.execute(params![sha256, metadata, dump]))
            .ctx("record flist info")?;
            Ok(())
        })
    }

    /// The audit log from record `after` (exclusive), oldest first, at most `limit` records.
    pub fn audit_log(&self, after: i64, limit: usize) -> Result<Vec<AuditRecord>, RepoError> {
        self.db.read(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT id, ts, actor, acting_as, action, repo, name, detail FROM audit WHERE id > ?1 ORDER BY id LIMIT ?2",
                )
                .ctx("read audit log")?;
            let v = st
                .query_map(params![after, limit as i64], |r| {
                    let detail: String = r.get(7)?;
                    Ok(AuditRecord {
                        id: r.get(0)?,
                        ts: r.get(1)?,
                        actor: r.get(2)?,
                        acting_as: r.get(3)?,
                        action: r.get(4)?,
                        repo: r.get(5)?,
                        name: r.get(6)?,
                        detail: serde_json::from_str(&detail).unwrap_or(Value::Null),
                    })
                })
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .ctx("read audit log")?;
            Ok(v)
        })
    }

    // ----- organisations -------------------------------------------------------------------

    /// Adds `user` to organisation `org` (created if needed).
    pub fn add_member(&self, org: &str, user: &str) -> Result<(), RepoError> {
        validate_repo(org)?;
        validate_repo(user)?;
        self.db.write(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO orgs(name, created) VALUES (?1, ?2)",
                params![org, now()],
            )
            .ctx("create organisation")?;
            tx.execute(
                "INSERT OR IGNORE INTO org_members(org, user) VALUES (?1, ?2)",
                params![org, user],
            )
            .ctx("add member")?;
            Ok(())
        })
    }

    /// Removes `user` from `org`.
    pub fn remove_member(&self, org: &str, user: &str) -> Result<(), RepoError> {
        self.db.write(|tx| {
            tx.execute(
                "DELETE FROM org_members WHERE org = ?1 AND user = ?2",
                params![org, user],
            )
            .ctx("remove member")?;
            Ok(())
        })
    }

    /// Organisations `user` is recorded as a member of in the catalog.
    pub fn memberships(&self, user: &str) -> Result<Vec<String>, RepoError> {
        self.db.read(|c| {
            let mut st = c
                .prepare_cached("SELECT org FROM org_members WHERE user = ?1 ORDER BY org")
                .ctx("read memberships")?;
            let v = st
                .query_map(params![user], |r| r.get(0))
                .and_then(|it| it.collect::<Result<Vec<String>, _>>())
                .ctx("read memberships")?;
            Ok(v)
        })
    }

    // ----- integrity -----------------------------------------------------------------------

    /// `PRAGMA integrity_check` and `foreign_key_check`, then every regular entry's file
    /// exists and hashes to its address (each distinct file hashed once).
    pub fn integrity_check(&self) -> Result<IntegrityReport, RepoError> {
        let mut rep = IntegrityReport::default();
        let (sqlite, rows) = self.db.with_writer(|c| {
            let mut msgs = Vec::new();
            let mut st = c.prepare("PRAGMA integrity_check").ctx("integrity_check")?;
            let v = st
                .query_map([], |r| r.get::<_, String>(0))
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .ctx("integrity_check")?;
            msgs.extend(v.into_iter().filter(|m| m != "ok"));
            let mut st = c.prepare("PRAGMA foreign_key_check").ctx("foreign_key_check")?;
            let v = st
                .query_map([], |r| Ok(format!("foreign key violation in {}", r.get::<_, String>(0)?)))
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .ctx("foreign_key_check")?;
            msgs.extend(v);
            let mut st = c
                .prepare(
                    "SELECT e.repo, e.name, e.sha256, b.md5, b.size FROM entries e \
                     LEFT JOIN blobs b ON b.sha256 = e.sha256 WHERE e.kind = 'regular' ORDER BY e.sha256",
                )
                .ctx("list regular entries")?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                    ))
                })
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .ctx("list regular entries")?;
            Ok((msgs, rows))
        })?;
        rep.sqlite = sqlite;
        let mut verdicts: BTreeMap<String, Option<String>> = BTreeMap::new();
        for (repo, name, sha, md5, size) in rows {
            rep.entries_checked += 1;
            let verdict = verdicts.entry(sha.clone()).or_insert_with(|| {
                rep.blobs_checked += 1;
                let path = self.blobs.path_of(&sha);
                match crate::blobs::hash_file(&path) {
                    Err(e) => Some(format!("file {}: {e}", path.display())),
                    Ok((s, m, n)) => {
                        if s != sha {
                            Some(format!("file {} has sha256 {s}", path.display()))
                        } else if Some(&m) != md5.as_ref() || Some(n as i64) != size {
                            Some(format!(
                                "file {} md5/size differ from the catalog",
                                path.display()
                            ))
                        } else {
                            None
                        }
                    }
                }
            });
            if let Some(v) = verdict {
                rep.problems.push(format!("{repo}/{name}: {v}"));
            }
        }
        Ok(rep)
    }
}
