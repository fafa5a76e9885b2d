//! Private repositories: which repositories are private, who may read them and who may
//! change that. A private repository is readable by its user or by the members of its
//! organisation only; everything else about it reads as "not found" to others (the HTTP
//! layer filters with [`Catalog::private_repositories`] and each answer's `via`).

use std::collections::BTreeSet;

use crate::db::sql::params;
use serde_json::json;

use super::sql::{self, is_private_on};
use super::Catalog;
use crate::clock::now;
use crate::error::SqlContext;
use crate::{Actor, RepoError};

impl Catalog {
    /// The private repositories, by name.
    pub fn private_repositories(&self) -> Result<BTreeSet<String>, RepoError> {
        self.db.read(|c| {
            let mut st = c
                .prepare_cached("SELECT name FROM repositories WHERE private != 0")
                .ctx("list private repositories")?;
            let v = st
                .query_map((), |r| r.get(0))
                .and_then(|it| it.collect::<Result<BTreeSet<String>, _>>())
                .ctx("list private repositories")?;
            Ok(v)
        })
    }

    /// The repositories whose regular entries are the flist file `sha256`.
    pub fn repositories_holding(&self, sha256: &str) -> Result<Vec<String>, RepoError> {
        self.db.read(|c| {
            let mut st = c
                .prepare_cached("SELECT DISTINCT repo FROM entries WHERE sha256 = ?1")
                .ctx("read holders")?;
            let v = st
                .query_map(params![sha256], |r| r.get(0))
                .and_then(|it| it.collect::<Result<Vec<String>, _>>())
                .ctx("read holders")?;
            Ok(v)
        })
    }

    /// Is `repo` private? (An unknown repository is not.)
    pub fn is_private(&self, repo: &str) -> Result<bool, RepoError> {
        self.db.read(|c| is_private_on(c, repo))
    }

    /// May `actor` change `repo`'s visibility? The user of that name, an owner of the
    /// organisation of that name, or a system actor (`hub-server repo visibility`).
    pub fn may_manage(&self, actor: &Actor, repo: &str) -> Result<bool, RepoError> {
        if actor.is_system() || actor.user == repo {
            return Ok(true);
        }
        self.db.read(|c| {
            c.prepare_cached(
                "SELECT 1 FROM org_members WHERE org = ?1 AND user = ?2 AND role = 'owner'",
            )
            .and_then(|mut s| s.exists(params![repo, actor.user]))
            .ctx("read membership")
        })
    }

    /// Makes `repo` private or public (the repository is created when it does not exist
    /// yet, so it can be private before its first flist). Audited as `visibility`; true
    /// when it changed. Refused (403) unless `actor` [may manage](Catalog::may_manage) it.
    pub fn set_visibility(
        &self,
        actor: &Actor,
        repo: &str,
        private: bool,
    ) -> Result<bool, RepoError> {
        crate::names::validate_user(repo)?;
        if !self.may_manage(actor, repo)? {
            return Err(RepoError::Forbidden(format!(
                "{} may not change the visibility of {repo}: only its user or an owner of the organisation",
                actor.user
            )));
        }
        let changed = self.db.write(|tx| {
            let was_private = is_private_on(tx, repo)?;
            let known = tx
                .prepare_cached("SELECT 1 FROM repositories WHERE name = ?1")
                .and_then(|mut s| s.exists(params![repo]))
                .ctx("read repository")?;
            if known && was_private == private {
                return Ok(false);
            }
            // Had others seen it? Then a mirror must learn it is gone (see `replica.rs`).
            let had_entries = tx
                .prepare_cached("SELECT 1 FROM entries WHERE repo = ?1 LIMIT 1")
                .and_then(|mut s| s.exists(params![repo]))
                .ctx("read entries")?;
            let ts = now();
            sql::bump_repo(tx, repo, ts)?;
            tx.execute(
                "UPDATE repositories SET private = ?2 WHERE name = ?1",
                params![repo, private],
            )
            .ctx("set visibility")?;
            let detail = json!({
                "private": private,
                "public_before": !was_private && had_entries,
            });
            sql::audit(tx, actor, "visibility", repo, "", &detail, ts)?;
            Ok(true)
        })?;
        if changed {
            self.db.bump_generation();
        }
        Ok(changed)
    }
}
