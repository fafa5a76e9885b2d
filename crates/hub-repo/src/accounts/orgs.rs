//! Organisations recorded in the catalog.

use crate::db::sql::params;

use super::Accounts;
use crate::clock::now;
use crate::error::SqlContext;
use crate::names::validate_user;
use crate::RepoError;

impl Accounts {
    /// Adds `user` to organisation `org` (created if needed).
    pub fn add_member(&self, org: &str, user: &str) -> Result<(), RepoError> {
        validate_user(org)?;
        validate_user(user)?;
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
}
