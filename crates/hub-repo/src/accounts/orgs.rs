//! Organisations and their members. A member is an [`OrgRole::Owner`] (manages members and
//! the repository's visibility) or an [`OrgRole::Member`] (writes into the repository).
//! Tokens and sessions carry the memberships their user has at the time of use
//! (`tokens.rs`, `sessions.rs` read them here), so removing a member takes effect at once.

use crate::db::sql::{params, Connection, OptionalExtension};

use super::Accounts;
use crate::clock::now;
use crate::error::SqlContext;
use crate::names::validate_user;
use crate::RepoError;

/// A member's role in an organisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OrgRole {
    /// Manages members and the repository's visibility, and writes.
    Owner,
    /// Writes into the organisation's repository.
    Member,
}

impl OrgRole {
    /// `owner` or `member`.
    pub fn as_str(self) -> &'static str {
        match self {
            OrgRole::Owner => "owner",
            OrgRole::Member => "member",
        }
    }
}

impl std::str::FromStr for OrgRole {
    type Err = RepoError;

    fn from_str(s: &str) -> Result<Self, RepoError> {
        match s {
            "owner" => Ok(OrgRole::Owner),
            "member" => Ok(OrgRole::Member),
            other => Err(RepoError::Invalid(format!(
                "role {other:?}: expected owner or member"
            ))),
        }
    }
}

impl std::fmt::Display for OrgRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One member of an organisation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OrgMember {
    /// The account.
    pub user: String,
    /// Its role.
    pub role: OrgRole,
}

fn role_of(c: &Connection, org: &str, user: &str) -> Result<Option<OrgRole>, RepoError> {
    let r: Option<String> = c
        .prepare_cached("SELECT role FROM org_members WHERE org = ?1 AND user = ?2")
        .and_then(|mut s| s.query_row(params![org, user], |r| r.get(0)).optional())
        .ctx("read membership")?;
    r.map(|r| r.parse()).transpose()
}

fn org_exists(c: &Connection, org: &str) -> Result<bool, RepoError> {
    c.prepare_cached("SELECT 1 FROM orgs WHERE name = ?1")
        .and_then(|mut s| s.exists(params![org]))
        .ctx("read organisation")
}

fn user_exists(c: &Connection, user: &str) -> Result<bool, RepoError> {
    c.prepare_cached("SELECT 1 FROM users WHERE name = ?1")
        .and_then(|mut s| s.exists(params![user]))
        .ctx("read user")
}

/// Records `user` in `org` with `role` (the organisation created first when new), in `tx`.
pub(crate) fn insert_member(
    tx: &Connection,
    org: &str,
    user: &str,
    role: OrgRole,
) -> Result<(), RepoError> {
    if !org_exists(tx, org)? {
        if user_exists(tx, org)? {
            return Err(RepoError::Conflict(format!(
                "{org} is a user, not an organisation"
            )));
        }
        crate::db::refuse_case_twin(tx, "organisation", org)?;
        tx.execute(
            "INSERT INTO orgs(name, created) VALUES (?1, ?2)",
            params![org, now()],
        )
        .ctx("create organisation")?;
    }
    tx.execute(
        "INSERT INTO org_members(org, user, role) VALUES (?1, ?2, ?3) \
         ON CONFLICT(org, user) DO UPDATE SET role = excluded.role",
        params![org, user, role.as_str()],
    )
    .ctx("add member")?;
    Ok(())
}

impl Accounts {
    /// Creates organisation `org` with `owner` (an existing account) as its first owner.
    /// Refused when the name is taken by a user or an organisation, or is reserved.
    pub fn org_create(&self, org: &str, owner: &str) -> Result<(), RepoError> {
        validate_user(org)?;
        validate_user(owner)?;
        self.db.write(|tx| {
            if org_exists(tx, org)? || user_exists(tx, org)? {
                return Err(RepoError::Conflict(format!("the name {org} is taken")));
            }
            if !user_exists(tx, owner)? {
                return Err(RepoError::NotFound(format!("no account {owner}")));
            }
            insert_member(tx, org, owner, OrgRole::Owner)
        })
    }

    /// Adds `user` (an existing account) to `org` with `role`, or changes its role. The
    /// organisation must exist. Demoting the last owner is refused.
    pub fn org_add(&self, org: &str, user: &str, role: OrgRole) -> Result<(), RepoError> {
        validate_user(org)?;
        validate_user(user)?;
        self.db.write(|tx| {
            if !org_exists(tx, org)? {
                return Err(RepoError::NotFound(format!(
                    "no organisation {org} (create it with `hub-server org create {org} --owner USER`)"
                )));
            }
            if !user_exists(tx, user)? {
                return Err(RepoError::NotFound(format!("no account {user}")));
            }
            if role == OrgRole::Member && role_of(tx, org, user)? == Some(OrgRole::Owner) {
                refuse_last_owner(tx, org, user)?;
            }
            insert_member(tx, org, user, role)
        })
    }

    /// Removes `user` from `org`; false when it was not a member. Removing the last owner
    /// is refused (an organisation always has someone to manage it).
    pub fn org_remove(&self, org: &str, user: &str) -> Result<bool, RepoError> {
        self.db.write(|tx| {
            match role_of(tx, org, user)? {
                None => return Ok(false),
                Some(OrgRole::Owner) => refuse_last_owner(tx, org, user)?,
                Some(OrgRole::Member) => {}
            }
            tx.execute(
                "DELETE FROM org_members WHERE org = ?1 AND user = ?2",
                params![org, user],
            )
            .ctx("remove member")?;
            Ok(true)
        })
    }

    /// Does organisation `org` exist?
    pub fn org_exists(&self, org: &str) -> Result<bool, RepoError> {
        self.db.read(|c| org_exists(c, org))
    }

    /// The members of `org` (owners first, then by name); `None` when it does not exist.
    pub fn org_members(&self, org: &str) -> Result<Option<Vec<OrgMember>>, RepoError> {
        self.db.read(|c| {
            if !org_exists(c, org)? {
                return Ok(None);
            }
            let mut st = c
                .prepare_cached(
                    "SELECT user, role FROM org_members WHERE org = ?1 \
                     ORDER BY role = 'member', user",
                )
                .ctx("read members")?;
            let rows = st
                .query_map(params![org], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .ctx("read members")?;
            let mut out = Vec::with_capacity(rows.len());
            for (user, role) in rows {
                out.push(OrgMember {
                    user,
                    role: role.parse()?,
                });
            }
            Ok(Some(out))
        })
    }

    /// Every organisation, by name.
    pub fn org_list(&self) -> Result<Vec<String>, RepoError> {
        self.db.read(|c| {
            let mut st = c
                .prepare_cached("SELECT name FROM orgs ORDER BY name")
                .ctx("list organisations")?;
            let v = st
                .query_map((), |r| r.get(0))
                .and_then(|it| it.collect::<Result<Vec<String>, _>>())
                .ctx("list organisations")?;
            Ok(v)
        })
    }

    /// `user`'s role in `org`, if a member.
    pub fn org_role(&self, org: &str, user: &str) -> Result<Option<OrgRole>, RepoError> {
        self.db.read(|c| role_of(c, org, user))
    }

    /// Adds `user` to organisation `org` as a member (the organisation created if needed);
    /// an existing membership keeps its role.
    pub fn add_member(&self, org: &str, user: &str) -> Result<(), RepoError> {
        validate_user(org)?;
        validate_user(user)?;
        self.db.write(|tx| {
            if role_of(tx, org, user)?.is_some() {
                return Ok(());
            }
            insert_member(tx, org, user, OrgRole::Member)
        })
    }

    /// Removes `user` from `org` whatever its role (administration: the last owner too).
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

    /// Organisations `user` is a member of now, by name.
    pub fn memberships(&self, user: &str) -> Result<Vec<String>, RepoError> {
        self.db.read(|c| memberships_on(c, user))
    }

    /// Organisations `user` is a member of now, with its role in each.
    pub fn memberships_with_roles(&self, user: &str) -> Result<Vec<(String, OrgRole)>, RepoError> {
        self.db.read(|c| {
            let mut st = c
                .prepare_cached("SELECT org, role FROM org_members WHERE user = ?1 ORDER BY org")
                .ctx("read memberships")?;
            let rows = st
                .query_map(params![user], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .ctx("read memberships")?;
            rows.into_iter().map(|(o, r)| Ok((o, r.parse()?))).collect()
        })
    }
}

/// Organisations `user` is a member of, on connection `c`.
pub(crate) fn memberships_on(c: &Connection, user: &str) -> Result<Vec<String>, RepoError> {
    let mut st = c
        .prepare_cached("SELECT org FROM org_members WHERE user = ?1 ORDER BY org")
        .ctx("read memberships")?;
    let v = st
        .query_map(params![user], |r| r.get(0))
        .and_then(|it| it.collect::<Result<Vec<String>, _>>())
        .ctx("read memberships")?;
    Ok(v)
}

fn refuse_last_owner(tx: &Connection, org: &str, user: &str) -> Result<(), RepoError> {
    let others: i64 = tx
        .query_row(
            "SELECT count(*) FROM org_members WHERE org = ?1 AND role = 'owner' AND user != ?2",
            params![org, user],
            |r| r.get(0),
        )
        .ctx("count owners")?;
    if others == 0 {
        return Err(RepoError::Conflict(format!(
            "{user} is the last owner of {org}: make another member owner first"
        )));
    }
    Ok(())
}
