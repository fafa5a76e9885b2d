//! Read models for the web pages: repository summaries, recent flists, and what points at an
//! entry.

use crate::db::sql::params;
use serde::Serialize;

use super::Catalog;
use crate::error::SqlContext;
use crate::RepoError;

/// A repository with its entry count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RepoSummary {
    /// Repository name.
    pub name: String,
    /// Unix time of its last change.
    pub updated: i64,
    /// Number of entries (flists and links).
    pub entries: u64,
    /// Number of tags.
    pub tags: u64,
}

/// A recently stored flist.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecentFlist {
    /// Repository.
    pub repo: String,
    /// Entry name.
    pub name: String,
    /// Unix time it was stored.
    pub updated: i64,
    /// Size in bytes.
    pub size: u64,
}

/// Something that points at an entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reference {
    /// Repository holding the link or tag.
    pub repo: String,
    /// Link name (in the repository, or in the tag).
    pub name: String,
    /// The tag holding the link, for tag links.
    pub tag: Option<String>,
}

impl Catalog {
    /// Every repository with its counts, sorted by name.
    pub fn repo_summaries(&self) -> Result<Vec<RepoSummary>, RepoError> {
        self.db.read(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT r.name, r.updated, \
                     (SELECT count(*) FROM entries e WHERE e.repo = r.name), \
                     (SELECT count(*) FROM tags t WHERE t.repo = r.name) \
                     FROM repositories r ORDER BY r.name",
                )
                .ctx("list repositories")?;
            let v = st
                .query_map((), |r| {
                    Ok(RepoSummary {
                        name: r.get(0)?,
                        updated: r.get(1)?,
                        entries: r.get::<_, i64>(2)? as u64,
                        tags: r.get::<_, i64>(3)? as u64,
                    })
                })
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .ctx("list repositories")?;
            Ok(v)
        })
    }

    /// The `limit` most recently stored regular flists, newest first.
    pub fn recent_flists(&self, limit: usize) -> Result<Vec<RecentFlist>, RepoError> {
        self.db.read(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT e.repo, e.name, e.updated, b.size FROM entries e \
                     JOIN blobs b ON b.sha256 = e.sha256 WHERE e.kind = 'regular' \
                     ORDER BY e.updated DESC, e.repo, e.name LIMIT ?1",
                )
                .ctx("recent flists")?;
            let v = st
                .query_map(params![limit as i64], |r| {
                    Ok(RecentFlist {
                        repo: r.get(0)?,
                        name: r.get(1)?,
                        updated: r.get(2)?,
                        size: r.get::<_, i64>(3)? as u64,
                    })
                })
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .ctx("recent flists")?;
            Ok(v)
        })
    }

    /// Links (same-repository, cross-repository and in tags) whose target is `repo/name`.
    pub fn references_to(&self, repo: &str, name: &str) -> Result<Vec<Reference>, RepoError> {
        self.db.read(|c| {
            let mut out = Vec::new();
            let mut st = c
                .prepare_cached(
                    "SELECT repo, name FROM entries WHERE kind = 'symlink' \
                     AND target_repo = ?1 AND target_name = ?2 ORDER BY repo, name LIMIT 500",
                )
                .ctx("find links")?;
            let links = st
                .query_map(params![repo, name], |r| {
                    Ok(Reference {
                        repo: r.get(0)?,
                        name: r.get(1)?,
                        tag: None,
                    })
                })
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .ctx("find links")?;
            out.extend(links);
            let mut st = c
                .prepare_cached(
                    "SELECT repo, name, tag FROM tag_links WHERE target_repo = ?1 \
                     AND target_name = ?2 ORDER BY repo, tag, name LIMIT 500",
                )
                .ctx("find tag links")?;
            let tags = st
                .query_map(params![repo, name], |r| {
                    Ok(Reference {
                        repo: r.get(0)?,
                        name: r.get(1)?,
                        tag: Some(r.get(2)?),
                    })
                })
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .ctx("find tag links")?;
            out.extend(tags);
            Ok(out)
        })
    }
}
