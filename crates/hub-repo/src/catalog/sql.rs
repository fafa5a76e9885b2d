//! The catalog's shared queries: reading entries, following links and taglinks, upserting
//! entries, bumping repositories, appending audit records.

use std::collections::HashSet;

use crate::db::sql::{params, Connection, OptionalExtension, Row};
use serde_json::Value;

use crate::error::SqlContext;
use crate::model::*;
use crate::{Actor, RepoError};

/// Longest chain of links followed before giving up.
pub const MAX_HOPS: usize = 32;

/// An [`Entry`] from a row selecting, in order: repo, name, kind, sha256, target_repo,
/// target_name, updated, linktime, uploader, source, md5, size, crosslink.
pub(crate) fn entry_from_row(
    row: &Row<'_>,
    blob: Option<(String, u64)>,
) -> crate::db::sql::Result<Entry> {
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
            crosslink: row.get(12)?,
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
         e.linktime, e.uploader, e.source, b.md5, b.size, e.crosslink \
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
    resolve_via(conn, repo, name, &mut Vec::new())
}

/// [`resolve_on`], recording in `via` every repository the chain passes through (the first
/// included, each once), whether it ends in a flist or not: what a reader must be allowed to
/// see for the link not to expose a private repository.
pub(crate) fn resolve_via(
    conn: &Connection,
    repo: &str,
    name: &str,
    via: &mut Vec<String>,
) -> Result<Resolved, RepoError> {
    let mut seen = HashSet::new();
    let (mut r, mut n) = (repo.to_string(), name.to_string());
    loop {
        if !via.contains(&r) {
            via.push(r.clone());
        }
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
                    via: via.clone(),
                })
            }
            EntryKind::Symlink {
                target_repo,
                target_name,
                ..
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
    resolve_tag_via(conn, repo, tag, &mut Vec::new())
}

/// [`resolve_tag_on`], recording in `via` the repositories passed through (see
/// [`resolve_via`]).
pub(crate) fn resolve_tag_via(
    conn: &Connection,
    repo: &str,
    tag: &str,
    via: &mut Vec<String>,
) -> Result<(String, String), RepoError> {
    let mut seen = HashSet::new();
    let (mut r, mut t) = (repo.to_string(), tag.to_string());
    loop {
        if !via.contains(&r) {
            via.push(r.clone());
        }
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

/// Is `repo` private?
pub(crate) fn is_private_on(conn: &Connection, repo: &str) -> Result<bool, RepoError> {
    let p: Option<bool> = conn
        .prepare_cached("SELECT private FROM repositories WHERE name = ?1")
        .and_then(|mut s| s.query_row(params![repo], |r| r.get(0)).optional())
        .ctx("read repository visibility")?;
    Ok(p.unwrap_or(false))
}

/// Refuses, as "not found" (a private name does not leak), an operation of `actor` that
/// reads from `repos` when one of them is private and `actor` may not read it.
pub(crate) fn check_readable<'a>(
    conn: &Connection,
    actor: &Actor,
    repos: impl IntoIterator<Item = &'a String>,
    what: &str,
) -> Result<(), RepoError> {
    for r in repos {
        if !actor.may_read(r) && is_private_on(conn, r)? {
            return Err(RepoError::NotFound(what.to_string()));
        }
    }
    Ok(())
}

pub(crate) fn bump_repo(tx: &Connection, repo: &str, ts: i64) -> Result<(), RepoError> {
    // A repository comes into existence here on its first write: never under a route name,
    // never beside one whose name differs only by case.
    crate::names::validate_user(repo)?;
    crate::db::refuse_case_twin(tx, "repository", repo)?;
    tx.prepare_cached(
        "INSERT INTO repositories(name, created, updated) VALUES (?1, ?2, ?2) \
         ON CONFLICT(name) DO UPDATE SET updated = excluded.updated",
    )
    .and_then(|mut s| s.execute(params![repo, ts]))
    .ctx("update repository")?;
    Ok(())
}

pub(crate) fn audit(
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

/// Writes the link `repo/name` → `trepo/tname`: `kind` is `symlink` or `taglink`;
/// `crosslink` marks a symlink made by `crosslink` (see [`EntryKind::Symlink`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn upsert_link(
    tx: &Connection,
    repo: &str,
    name: &str,
    kind: &str,
    trepo: &str,
    tname: &str,
    crosslink: bool,
    ts: i64,
) -> Result<(), RepoError> {
    check_new_entry(tx, repo, name)?;
    tx.prepare_cached(
        "INSERT INTO entries(repo, name, kind, sha256, target_repo, target_name, updated, linktime, crosslink) \
         VALUES (?1, ?2, ?3, NULL, ?4, ?5, ?6, ?6, ?7) \
         ON CONFLICT(repo, name) DO UPDATE SET kind = excluded.kind, sha256 = NULL, \
         target_repo = excluded.target_repo, target_name = excluded.target_name, \
         updated = excluded.updated, linktime = excluded.linktime, uploader = NULL, source = NULL, \
         crosslink = excluded.crosslink",
    )
    .and_then(|mut s| s.execute(params![repo, name, kind, trepo, tname, ts, crosslink]))
    .ctx("write link")?;
    Ok(())
}

/// The look-alike rule for a new entry `repo/name` (see [`crate::names`]): nothing to check
/// when it exists already (a replacement), else its name against the repository's others.
pub(crate) fn check_new_entry(tx: &Connection, repo: &str, name: &str) -> Result<(), RepoError> {
    check_new_entry_except(tx, repo, name, None)
}

/// [`check_new_entry`] not counting the entry `except` (the one a rename moves: `app` may
/// become `App`).
pub(crate) fn check_new_entry_except(
    tx: &Connection,
    repo: &str,
    name: &str,
    except: Option<&str>,
) -> Result<(), RepoError> {
    if get_entry(tx, repo, name)?.is_some() {
        return Ok(());
    }
    let mut st = tx
        // (a skeleton keeps the count of characters: only names as long can collide)
        .prepare_cached("SELECT name FROM entries WHERE repo = ?1 AND length(name) = length(?2)")
        .ctx("check names")?;
    let names = st
        .query_map(params![repo, name], |r| r.get::<_, String>(0))
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .ctx("check names")?;
    let others = names
        .iter()
        .map(String::as_str)
        .filter(|n| Some(*n) != except);
    crate::names::check_new_entry_name("flist", name, others)
}

pub(crate) fn upsert_regular(
    tx: &Connection,
    repo: &str,
    name: &str,
    sha256: &str,
    uploader: &str,
    source: Option<&str>,
    ts: i64,
) -> Result<(), RepoError> {
    check_new_entry(tx, repo, name)?;
    tx.prepare_cached(
        "INSERT INTO entries(repo, name, kind, sha256, target_repo, target_name, updated, linktime, uploader, source) \
         VALUES (?1, ?2, 'regular', ?3, NULL, NULL, ?4, NULL, ?5, ?6) \
         ON CONFLICT(repo, name) DO UPDATE SET kind = 'regular', sha256 = excluded.sha256, \
         target_repo = NULL, target_name = NULL, updated = excluded.updated, linktime = NULL, \
         uploader = excluded.uploader, source = excluded.source, crosslink = 0",
    )
    .and_then(|mut s| s.execute(params![repo, name, sha256, ts, uploader, source]))
    .ctx("write entry")?;
    Ok(())
}

/// Fails with [`RepoError::Conflict`] when `repo/name` holds a regular flist.
pub(crate) fn refuse_regular(tx: &Connection, repo: &str, name: &str) -> Result<(), RepoError> {
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

pub(crate) fn check_no_cycle(tx: &Connection, repo: &str, name: &str) -> Result<(), RepoError> {
    match resolve_on(tx, repo, name) {
        Err(RepoError::Cycle(_)) => Err(RepoError::Conflict(format!(
            "linking {repo}/{name} would create a cycle"
        ))),
        _ => Ok(()),
    }
}
