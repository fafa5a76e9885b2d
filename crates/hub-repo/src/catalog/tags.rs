//! Tags (named sets of links) and taglinks: writes and reads.

use crate::db::sql::{params, OptionalExtension};
use serde_json::json;

use super::sql::{
    check_readable, get_entry, resolve_tag_on, resolve_tag_via, resolve_via, upsert_link,
};
use super::Catalog;
use crate::error::SqlContext;
use crate::model::*;
use crate::names::{validate_flist, validate_repo, validate_tag, validate_taglink};
use crate::{Actor, RepoError};

/// Validates the names of a tag link and gives its audit detail.
fn tag_link_detail(
    tag: &str,
    linkname: &str,
    target_repo: &str,
    source: &str,
) -> Result<serde_json::Value, RepoError> {
    validate_tag(tag)?;
    validate_flist(linkname)?;
    validate_repo(target_repo)?;
    validate_flist(source)?;
    Ok(json!({"linkname": linkname, "target_repo": target_repo, "target_name": source}))
}

impl Catalog {
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
        let detail = tag_link_detail(tag, linkname, target_repo, source)?;
        self.audited(actor, "tag-add", repo, tag, detail, |tx, ts| {
            let what = format!("{target_repo}/{source}");
            check_readable(tx, actor, [&target_repo.to_string()], &what)?;
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
        let detail = tag_link_detail(tag, linkname, target_repo, source)?;
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
            let mut via = Vec::new();
            let found = resolve_tag_via(tx, target_repo, tag, &mut via);
            check_readable(tx, actor, &via, &format!("{target_repo}/tags/{tag}"))?;
            found?;
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
            upsert_link(tx, repo, name, "taglink", target_repo, tag, false, ts)?;
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

    /// Resolves `name` inside tag `tag` of `repo` (following taglinks to the tag and links
    /// from the tag's entry).
    pub fn resolve_in_tag(&self, repo: &str, tag: &str, name: &str) -> Result<Resolved, RepoError> {
        self.db.read(|c| {
            let mut via = Vec::new();
            let (r, t) = resolve_tag_via(c, repo, tag, &mut via)?;
            let target: Option<(String, String)> = c
                .prepare_cached("SELECT target_repo, target_name FROM tag_links WHERE repo = ?1 AND tag = ?2 AND name = ?3")
                .and_then(|mut s| s.query_row(params![r, t, name], |row| Ok((row.get(0)?, row.get(1)?))).optional())
                .ctx("read tag link")?;
            let (tr, tn) = target.ok_or_else(|| RepoError::NotFound(format!("{repo}/tags/{tag}/{name}")))?;
            resolve_via(c, &tr, &tn, &mut via)
        })
    }
    /// Links in `repo`'s tag `tag` (following taglinks to the tag), each resolved.
    pub fn tag_links(&self, repo: &str, tag: &str) -> Result<Vec<Listed>, RepoError> {
        self.db.read(|c| {
            let mut tag_via = Vec::new();
            let (r, t) = resolve_tag_via(c, repo, tag, &mut tag_via)?;
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
                let mut via = tag_via.clone();
                let (size, updated, broken) = match resolve_via(c, &tr, &tn, &mut via) {
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
                    via,
                });
            }
            Ok(out)
        })
    }
}
