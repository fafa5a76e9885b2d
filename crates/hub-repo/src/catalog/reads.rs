//! Catalog reads: repositories, listings, resolution, search.

use std::collections::BTreeMap;

use crate::db::sql::{params, Connection};

use super::sql::{entry_from_row, get_entry, resolve_on, resolve_tag_via, resolve_via};
use super::Catalog;
use crate::error::SqlContext;
use crate::model::*;
use crate::RepoError;

impl Catalog {
    /// Every repository, sorted by name.
    pub fn repositories(&self) -> Result<Vec<RepoInfo>, RepoError> {
        self.db.read(|c| {
            let mut st = c
                .prepare_cached("SELECT name, updated FROM repositories ORDER BY name")
                .ctx("list repositories")?;
            let rows = st
                .query_map((), |r| {
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

    fn list_on(c: &Connection, repo: &str) -> Result<Vec<Listed>, RepoError> {
        let mut out = Vec::new();
        let entries: Vec<Entry> = {
            let mut st = c
                .prepare_cached(
                    "SELECT e.repo, e.name, e.kind, e.sha256, e.target_repo, e.target_name, e.updated, \
                     e.linktime, e.uploader, e.source, b.md5, b.size, e.crosslink \
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
                    via: Vec::new(),
                },
                EntryKind::Symlink {
                    target_repo,
                    target_name,
                    crosslink,
                } => {
                    // the old hub's listing: the stored link without its `../`
                    let target = if target_repo == repo && !crosslink {
                        target_name.clone()
                    } else {
                        format!("{target_repo}/{target_name}")
                    };
                    let mut via = Vec::new();
                    let (size, updated, broken) =
                        match resolve_via(c, &target_repo, &target_name, &mut via) {
                            Ok(r) => (r.size, r.updated, false),
                            Err(
                                RepoError::NotFound(_)
                                | RepoError::Cycle(_)
                                | RepoError::Invalid(_),
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
                        via,
                    }
                }
                EntryKind::Taglink { target_repo, tag } => {
                    let mut via = Vec::new();
                    let broken = match resolve_tag_via(c, &target_repo, &tag, &mut via) {
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
                        via,
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
                via: Vec::new(),
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
                .query_map((), |r| r.get::<_, String>(0))
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
                .query_map((), |r| {
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
}
