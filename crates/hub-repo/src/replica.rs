//! Replication: the public change feed (built on the audit log), exact snapshots of one
//! repository's catalog rows, and applying such a snapshot on a mirror in one transaction.
//!
//! A mirror applies a repository snapshot only once every flist file it references is stored
//! (verified) under its content address, so an entry never becomes visible without its file.

use crate::db::sql::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use std::sync::Arc;

use crate::catalog::Catalog;
use crate::db::Db;
use crate::error::SqlContext;
use crate::files::{is_hex_sha256, Blobs, StagedFlist};
use crate::names::validate_repo;
use crate::RepoError;

/// Replication of a hub's catalog (cheap to clone): the primary's feed and snapshots, a
/// mirror's applying them.
#[derive(Clone, Debug)]
pub struct Replica {
    db: Arc<Db>,
    blobs: Arc<Blobs>,
    catalog: Catalog,
}

/// One public change: an audit record without the acting identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Monotonic cursor of this change (the audit record id).
    pub id: i64,
    /// Unix time of the change.
    pub ts: i64,
    /// Operation (`upload`, `link`, `crosslink`, `rename`, `delete`, `promote`, `tag-add`,
    /// `tag-remove`, `crosstag`, `crosstag-remove`, `merge`, `import`).
    pub action: String,
    /// Repository changed.
    pub repo: String,
    /// Entry or tag changed.
    pub name: String,
    /// Operation parameters (e.g. `destination` of a rename, `sha256` of an upload).
    pub detail: Value,
}

/// A regular entry, link or taglink exactly as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapEntry {
    /// Entry name.
    pub name: String,
    /// `regular`, `symlink` or `taglink`.
    pub kind: String,
    /// Content address (regular entries).
    pub sha256: Option<String>,
    /// Target repository (links).
    pub target_repo: Option<String>,
    /// Target entry or tag (links).
    pub target_name: Option<String>,
    /// Last change.
    pub updated: i64,
    /// When the link was made.
    pub linktime: Option<i64>,
    /// Uploader (regular entries).
    pub uploader: Option<String>,
    /// Source (regular entries).
    pub source: Option<String>,
    /// A symlink made by `crosslink` (raw `../repo/name` form); absent from older primaries.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub crosslink: bool,
}

/// One link of a tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapTagLink {
    /// Link name inside the tag.
    pub name: String,
    /// Target repository.
    pub target_repo: String,
    /// Target entry.
    pub target_name: String,
    /// When the link was made.
    pub linktime: i64,
}

/// A tag and its links.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapTag {
    /// Tag name.
    pub tag: String,
    /// Last change.
    pub updated: i64,
    /// Its links.
    pub links: Vec<SnapTagLink>,
}

/// A flist file referenced by a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapBlob {
    /// Hex sha256 (content address).
    pub sha256: String,
    /// Hex md5.
    pub md5: String,
    /// Size in bytes.
    pub size: u64,
}

/// Everything the catalog holds about one repository.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoSnapshot {
    /// Repository name.
    pub name: String,
    /// Creation time.
    pub created: i64,
    /// Last change.
    pub updated: i64,
    /// Entries, by name.
    pub entries: Vec<SnapEntry>,
    /// Tags, by name.
    pub tags: Vec<SnapTag>,
    /// Flist files of the regular entries.
    pub blobs: Vec<SnapBlob>,
    /// A private repository (readable by its user or organisation only): a mirror keeps it
    /// private. Absent (public) from older primaries.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub private: bool,
}

impl RepoSnapshot {
    /// Makes the snapshot one a local write could have made, for a mirror that must not
    /// trust its primary: the repository name must be one a local write accepts (else the
    /// whole snapshot is refused); entries, tags, tag links and flist files whose names,
    /// targets or digests a local write would refuse are dropped (with what depends on a
    /// dropped file), as are repeats of a name. Returns one line per dropped item.
    pub fn sanitize(&mut self) -> Result<Vec<String>, RepoError> {
        crate::names::validate_user(&self.name)?;
        Ok(self.sanitize_items())
    }

    /// [`RepoSnapshot::sanitize`] without the repository name's check.
    pub fn sanitize_items(&mut self) -> Vec<String> {
        let repo = self.name.clone();
        let mut dropped = Vec::new();
        let mut drop = |what: String, e: &dyn std::fmt::Display| {
            dropped.push(format!("{repo}: {what}: {e}"));
        };
        self.blobs.retain(|b| {
            let ok = is_hex_sha256(&b.sha256)
                && b.md5.len() == 32
                && b.md5
                    .bytes()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
            if !ok {
                drop(
                    format!("flist file {:?}", b.sha256),
                    &"not a sha256 and md5 in lowercase hex",
                );
            }
            ok
        });
        let blobs: std::collections::HashSet<String> =
            self.blobs.iter().map(|b| b.sha256.clone()).collect();
        let mut seen = std::collections::HashSet::new();
        self.entries.retain(|e| {
            let r = check_entry(e, &blobs).and_then(|()| first(&mut seen, &e.name));
            match r {
                Ok(()) => true,
                Err(err) => {
                    drop(format!("entry {:?}", e.name), &err);
                    false
                }
            }
        });
        let mut seen = std::collections::HashSet::new();
        self.tags.retain_mut(|t| {
            if let Err(err) = crate::names::validate_tag(&t.tag) {
                drop(format!("tag {:?}", t.tag), &err);
                return false;
            }
            if let Err(err) = first(&mut seen, &t.tag) {
                drop(format!("tag {:?}", t.tag), &err);
                return false;
            }
            let mut names = std::collections::HashSet::new();
            t.links.retain(|l| {
                let r = crate::names::validate_entry(&l.name)
                    .and_then(|()| validate_repo(&l.target_repo))
                    .and_then(|()| crate::names::validate_flist(&l.target_name))
                    .and_then(|()| first(&mut names, &l.name));
                match r {
                    Ok(()) => true,
                    Err(err) => {
                        drop(format!("tag {:?} link {:?}", t.tag, l.name), &err);
                        false
                    }
                }
            });
            true
        });
        dropped
    }
}

/// `Ok` the first time `name` is met in `seen`, an error for a repeat.
fn first(seen: &mut std::collections::HashSet<String>, name: &str) -> Result<(), RepoError> {
    if seen.insert(name.to_string()) {
        Ok(())
    } else {
        Err(RepoError::Invalid("listed twice".into()))
    }
}

/// The checks of a local write on one entry of a snapshot (`blobs`: its valid files).
fn check_entry(e: &SnapEntry, blobs: &std::collections::HashSet<String>) -> Result<(), RepoError> {
    use crate::names::{validate_flist, validate_tag, validate_taglink};
    let target = || -> Result<(&str, &str), RepoError> {
        match (&e.target_repo, &e.target_name) {
            (Some(r), Some(n)) => {
                validate_repo(r)?;
                Ok((r, n))
            }
            _ => Err(RepoError::Invalid("a link without its target".into())),
        }
    };
    // A local write stores a file with no target and a link with no file (the catalog's
    // CHECKs refuse the rest).
    let is_regular = e.kind == "regular";
    if !is_regular && e.sha256.is_some() {
        return Err(RepoError::Invalid("a link with a flist file".into()));
    }
    if is_regular && (e.target_repo.is_some() || e.target_name.is_some()) {
        return Err(RepoError::Invalid("a flist file with a link target".into()));
    }
    match e.kind.as_str() {
        "regular" => {
            validate_flist(&e.name)?;
            match &e.sha256 {
                Some(s) if blobs.contains(s) => {}
                _ => return Err(RepoError::Invalid("its flist file is not listed".into())),
            }
            // An account, or a system actor (`@import`).
            if let Some(u) = &e.uploader {
                validate_repo(u.strip_prefix('@').unwrap_or(u))?;
            }
        }
        "symlink" => {
            validate_flist(&e.name)?;
            validate_flist(target()?.1)?;
        }
        "taglink" => {
            validate_taglink(&e.name)?;
            validate_tag(target()?.1)?;
        }
        other => return Err(RepoError::Invalid(format!("unknown kind {other:?}"))),
    }
    Ok(())
}

impl Replica {
    pub(crate) fn new(db: Arc<Db>, blobs: Arc<Blobs>, catalog: Catalog) -> Self {
        Replica { db, blobs, catalog }
    }

    /// The public change feed: changes after cursor `since`, oldest first, at most `limit`;
    /// with the latest cursor of the catalog.
    pub fn changes(&self, since: i64, limit: usize) -> Result<(Vec<Change>, i64), RepoError> {
        let records = self.catalog.audit_log(since, limit)?;
        let latest: i64 = self.db.read(|c| {
            c.query_row("SELECT coalesce(max(id), 0) FROM audit", (), |r| r.get(0))
                .ctx("read audit cursor")
        })?;
        let changes = records
            .into_iter()
            .map(|r| Change {
                id: r.id,
                ts: r.ts,
                action: r.action,
                repo: r.repo,
                name: r.name,
                detail: r.detail,
            })
            .collect();
        Ok((changes, latest))
    }

    /// The exact catalog rows of `repo`, or `None` when it does not exist.
    pub fn repo_snapshot(&self, repo: &str) -> Result<Option<RepoSnapshot>, RepoError> {
        validate_repo(repo)?;
        self.db.read(|c| {
            let head: Option<(i64, i64, bool)> = c
                .query_row(
                    "SELECT created, updated, private FROM repositories WHERE name = ?1",
                    params![repo],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .ctx("read repository")?;
            let Some((created, updated, private)) = head else {
                return Ok(None);
            };
            let mut st = c
                .prepare_cached(
                    "SELECT name, kind, sha256, target_repo, target_name, updated, linktime, uploader, source, \
                     crosslink FROM entries WHERE repo = ?1 ORDER BY name",
                )
                .ctx("snapshot entries")?;
            let entries = st
                .query_map(params![repo], |r| {
                    Ok(SnapEntry {
                        name: r.get(0)?,
                        kind: r.get(1)?,
                        sha256: r.get(2)?,
                        target_repo: r.get(3)?,
                        target_name: r.get(4)?,
                        updated: r.get(5)?,
                        linktime: r.get(6)?,
                        uploader: r.get(7)?,
                        source: r.get(8)?,
                        crosslink: r.get(9)?,
                    })
                })
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .ctx("snapshot entries")?;
            let mut st = c
                .prepare_cached(
                    "SELECT DISTINCT b.sha256, b.md5, b.size FROM entries e JOIN blobs b ON b.sha256 = e.sha256 \
                     WHERE e.repo = ?1 ORDER BY b.sha256",
                )
                .ctx("snapshot blobs")?;
            let blobs = st
                .query_map(params![repo], |r| {
                    Ok(SnapBlob {
                        sha256: r.get(0)?,
                        md5: r.get(1)?,
                        size: r.get::<_, i64>(2)? as u64,
                    })
                })
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .ctx("snapshot blobs")?;
            let mut st = c
                .prepare_cached("SELECT tag, updated FROM tags WHERE repo = ?1 ORDER BY tag")
                .ctx("snapshot tags")?;
            let heads = st
                .query_map(params![repo], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .ctx("snapshot tags")?;
            let mut tags = Vec::with_capacity(heads.len());
            for (tag, updated) in heads {
                let mut st = c
                    .prepare_cached(
                        "SELECT name, target_repo, target_name, linktime FROM tag_links \
                         WHERE repo = ?1 AND tag = ?2 ORDER BY name",
                    )
                    .ctx("snapshot tag links")?;
                let links = st
                    .query_map(params![repo, tag], |r| {
                        Ok(SnapTagLink {
                            name: r.get(0)?,
                            target_repo: r.get(1)?,
                            target_name: r.get(2)?,
                            linktime: r.get(3)?,
                        })
                    })
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .ctx("snapshot tag links")?;
                tags.push(SnapTag {
                    tag,
                    updated,
                    links,
                });
            }
            Ok(Some(RepoSnapshot {
                name: repo.to_string(),
                created,
                updated,
                entries,
                tags,
                blobs,
                private,
            }))
        })
    }

    /// Is the flist file `sha256` stored (complete: files only appear by atomic rename)? On
    /// a replica sharing its files, one in the shared store is fetched.
    pub fn has_blob(&self, sha256: &str) -> bool {
        is_hex_sha256(sha256) && matches!(self.blobs.local(sha256), Ok(Some(_)))
    }

    /// Moves a staged file to its content address after checking it is the expected one.
    pub fn commit_verified_blob(
        &self,
        staged: &StagedFlist,
        expect: &SnapBlob,
    ) -> Result<(), RepoError> {
        if staged.sha256 != expect.sha256 || staged.md5 != expect.md5 || staged.size != expect.size
        {
            return Err(RepoError::Invalid(format!(
                "flist file {} does not verify: got sha256 {} md5 {} size {}, expected md5 {} size {}",
                expect.sha256, staged.sha256, staged.md5, staged.size, expect.md5, expect.size
            )));
        }
        self.blobs.commit(staged)?;
        Ok(())
    }

    /// Removes the stored flist file `sha256` unless the catalog records it (a mirror's
    /// download it replaced by a stamped copy), under the catalog's write lock like `gc`.
    /// True when a file was removed.
    pub fn discard_unrecorded_blob(&self, sha256: &str) -> Result<bool, RepoError> {
        if !is_hex_sha256(sha256) {
            return Ok(false);
        }
        let path = self.blobs.path_of(sha256);
        self.db.write(|tx| {
            let recorded: bool = tx
                .query_row(
                    "SELECT EXISTS(SELECT 1 FROM blobs WHERE sha256 = ?1)",
                    params![sha256],
                    |r| r.get(0),
                )
                .ctx("look up flist file")?;
            if recorded {
                return Ok(false);
            }
            self.blobs.remove_shared(sha256)?;
            match std::fs::remove_file(&path) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(RepoError::io("remove", &path, e)),
            }
        })
    }

    /// Replaces everything the catalog holds about `snap.name` with the snapshot, in one
    /// transaction; fails (changing nothing) unless every referenced flist file is stored.
    pub fn apply_snapshot(&self, snap: &RepoSnapshot) -> Result<(), RepoError> {
        // Only what a local write could have made (the mirror sanitized it already and
        // reported what it dropped; this is the catalog's own guard).
        let mut clean = snap.clone();
        clean.sanitize()?;
        let snap = &clean;
        for b in &snap.blobs {
            if !self.has_blob(&b.sha256) {
                return Err(RepoError::Invalid(format!(
                    "flist file {} of {} is not stored yet",
                    b.sha256, snap.name
                )));
            }
        }
        for e in &snap.entries {
            if let Some(sha) = &e.sha256 {
                if !snap.blobs.iter().any(|b| &b.sha256 == sha) {
                    return Err(RepoError::Invalid(format!(
                        "{}/{} references an unlisted flist file",
                        snap.name, e.name
                    )));
                }
            }
        }
        let repo = snap.name.as_str();
        self.db.write(|tx| {
            for b in &snap.blobs {
                // Again under the write lock: `gc` removes unrecorded files.
                if !self.has_blob(&b.sha256) {
                    return Err(RepoError::Invalid(format!(
                        "flist file {} of {} is not stored",
                        b.sha256, snap.name
                    )));
                }
                tx.prepare_cached(
                    "INSERT INTO blobs(sha256, md5, size, metadata, dump, created) VALUES (?1,?2,?3,NULL,NULL,?4) \
                     ON CONFLICT(sha256) DO NOTHING",
                )
                .and_then(|mut s| s.execute(params![b.sha256, b.md5, b.size as i64, snap.updated]))
                .ctx("record flist file")?;
            }
            tx.prepare_cached(
                "INSERT INTO repositories(name, created, updated, private) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(name) DO UPDATE SET created = excluded.created, updated = excluded.updated, \
                 private = excluded.private",
            )
            .and_then(|mut s| s.execute(params![repo, snap.created, snap.updated, snap.private]))
            .ctx("write repository")?;
            clear_repo(tx, repo)?;
            for e in &snap.entries {
                tx.prepare_cached(
                    "INSERT INTO entries(repo, name, kind, sha256, target_repo, target_name, updated, linktime, uploader, source, crosslink) \
                     VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        repo, e.name, e.kind, e.sha256, e.target_repo, e.target_name, e.updated,
                        e.linktime, e.uploader, e.source, e.crosslink
                    ])
                })
                .ctx("write entry")?;
            }
            for t in &snap.tags {
                tx.prepare_cached("INSERT INTO tags(repo, tag, updated) VALUES (?1,?2,?3)")
                    .and_then(|mut s| s.execute(params![repo, t.tag, t.updated]))
                    .ctx("write tag")?;
                for l in &t.links {
                    tx.prepare_cached(
                        "INSERT INTO tag_links(repo, tag, name, target_repo, target_name, linktime) VALUES (?1,?2,?3,?4,?5,?6)",
                    )
                    .and_then(|mut s| {
                        s.execute(params![repo, t.tag, l.name, l.target_repo, l.target_name, l.linktime])
                    })
                    .ctx("write tag link")?;
                }
            }
            Ok(())
        })?;
        self.db.bump_generation();
        Ok(())
    }

    /// Removes everything about `repo` (it no longer exists upstream).
    pub fn remove_repository(&self, repo: &str) -> Result<(), RepoError> {
        validate_repo(repo)?;
        self.db.write(|tx| {
            clear_repo(tx, repo)?;
            tx.execute("DELETE FROM repositories WHERE name = ?1", params![repo])
                .ctx("delete repository")?;
            Ok(())
        })?;
        self.db.bump_generation();
        Ok(())
    }

    /// A value of the mirror's own state (e.g. its cursor), if set.
    pub fn mirror_state(&self, key: &str) -> Result<Option<String>, RepoError> {
        self.db.with_writer(|c| {
            c.execute_batch(crate::db::schema::MIRROR_STATE)
                .ctx("create mirror state")?;
            c.query_row(
                "SELECT value FROM mirror_state WHERE key = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()
            .ctx("read mirror state")
        })
    }

    /// Records a value of the mirror's own state (durably).
    pub fn set_mirror_state(&self, key: &str, value: &str) -> Result<(), RepoError> {
        self.db.write(|tx| {
            tx.execute_batch(crate::db::schema::MIRROR_STATE)
                .ctx("create mirror state")?;
            tx.execute(
                "INSERT INTO mirror_state(key, value) VALUES (?1, ?2) \
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .ctx("write mirror state")?;
            Ok(())
        })
    }
}

fn clear_repo(tx: &crate::db::sql::Connection<'_>, repo: &str) -> Result<(), RepoError> {
    for sql in [
        "DELETE FROM tag_links WHERE repo = ?1",
        "DELETE FROM tags WHERE repo = ?1",
        "DELETE FROM entries WHERE repo = ?1",
    ] {
        tx.execute(sql, params![repo]).ctx("clear repository")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{Actor, FlistInfo, Hub};

    #[test]
    fn snapshot_round_trips_into_another_hub() {
        let a = tempfile::tempdir().expect("ok");
        let b = tempfile::tempdir().expect("ok");
        let (pa, ma) = (
            Hub::open(a.path()).expect("ok"),
            Hub::open(b.path()).expect("ok"),
        );
        let (primary, mirror) = (pa.catalog(), ma.catalog());
        let (feed, apply) = (pa.replica(), ma.replica());
        let alice = Actor::new("alice", vec![]);
        let staged = primary
            .stage_reader(&b"not really a flist"[..])
            .expect("ok");
        primary
            .put_flist(&alice, "alice", "x.flist", staged, FlistInfo::default())
            .expect("ok");
        primary
            .link(&alice, "alice", "x.flist", "l.flist")
            .expect("ok");
        primary
            .tag_add(&alice, "alice", "v1", "x.flist", "alice", "x.flist")
            .expect("ok");
        let (changes, latest) = feed.changes(0, 100).expect("ok");
        assert_eq!(changes.len(), 3);
        assert_eq!(latest, changes[2].id);
        assert_eq!(changes[1].action, "link");

        let snap = feed.repo_snapshot("alice").expect("ok").expect("ok");
        // Without the file the snapshot is refused and nothing changes.
        assert!(apply.apply_snapshot(&snap).is_err());
        assert!(apply.repo_snapshot("alice").expect("ok").is_none());
        let blob = &snap.blobs[0];
        let wrong = mirror.stage_reader(&b"something else"[..]).expect("ok");
        assert!(apply.commit_verified_blob(&wrong, blob).is_err());
        let file = std::fs::File::open(primary.blob_path(&blob.sha256)).expect("ok");
        let staged = mirror.stage_reader(file).expect("ok");
        apply.commit_verified_blob(&staged, blob).expect("ok");
        apply.apply_snapshot(&snap).expect("ok");
        assert_eq!(apply.repo_snapshot("alice").expect("ok").expect("ok"), snap);
        assert_eq!(
            mirror.list("alice").expect("ok"),
            primary.list("alice").expect("ok")
        );

        primary.delete(&alice, "alice", "l.flist").expect("ok");
        let snap2 = feed.repo_snapshot("alice").expect("ok").expect("ok");
        apply.apply_snapshot(&snap2).expect("ok");
        assert_eq!(
            apply.repo_snapshot("alice").expect("ok").expect("ok"),
            snap2
        );
        apply.remove_repository("alice").expect("ok");
        assert!(apply.repo_snapshot("alice").expect("ok").is_none());

        assert_eq!(apply.mirror_state("cursor").expect("ok"), None);
        apply.set_mirror_state("cursor", "7").expect("ok");
        assert_eq!(
            apply.mirror_state("cursor").expect("ok").as_deref(),
            Some("7")
        );
    }
}
