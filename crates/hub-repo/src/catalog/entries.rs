//! Entry writes: links, cross-links, renames, deletes, promotion.

use crate::db::sql::params;
use serde_json::json;

use super::sql::{
    check_no_cycle, check_readable, get_entry, refuse_regular, resolve_via, upsert_link,
    upsert_regular,
};
use super::Catalog;
use crate::error::SqlContext;
use crate::model::*;
use crate::names::{validate_entry, validate_flist, validate_repo};
use crate::{Actor, RepoError};

impl Catalog {
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
            let what = format!("{target_repo}/{source}");
            check_readable(tx, actor, [&target_repo.to_string()], &what)?;
            if get_entry(tx, target_repo, source)?.is_none() {
                return Err(RepoError::NotFound(format!("{target_repo}/{source}")));
            }
            refuse_regular(tx, repo, linkname)?;
            let cross = action == "crosslink";
            upsert_link(
                tx,
                repo,
                linkname,
                "symlink",
                target_repo,
                source,
                cross,
                ts,
            )?;
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
            super::sql::check_new_entry_except(tx, repo, destination, Some(source))?;
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
            let mut via = Vec::new();
            let found = resolve_via(tx, src_repo, src_name, &mut via);
            check_readable(tx, actor, &via, &format!("{src_repo}/{src_name}"))?;
            let r = found?;
            let source = format!("{src_repo}/{src_name}");
            upsert_regular(tx, repo, local, &r.sha256, &uploader, Some(&source), ts)?;
            get_entry(tx, repo, local)?
                .ok_or_else(|| RepoError::NotFound(format!("{repo}/{local}")))
        })
    }
}
