//! Local accounts: a name, an argon2id password hash (PHC string) and an admin flag.
//!
//! Passwords are never stored or logged; verifying runs argon2 even for unknown names so the
//! answer time does not tell which names exist.

use crate::db::sql::{params, Connection, OptionalExtension};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use super::Accounts;
use crate::clock::now;
use crate::error::SqlContext;
use crate::names::validate_user;
use crate::RepoError;

/// The provider name of 3Bot (ThreeFold Connect) identities.
pub const THREEBOT: &str = "threebot";

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;

/// A local account (never its password).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    /// The user name (also its repository).
    pub name: String,
    /// May administer the hub.
    pub admin: bool,
    /// Unix time of creation.
    pub created: i64,
    /// Unix time of the last password change.
    pub updated: i64,
    /// An admin disabled it: it cannot sign in, get tokens or act.
    pub disabled: bool,
}

fn hash_password(password: &str) -> Result<String, RepoError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(RepoError::Invalid(format!(
            "password too short: at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if password.len() > 1024 {
        return Err(RepoError::Invalid(
            "password too long (max 1024 bytes)".into(),
        ));
    }
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|e| RepoError::Invalid(format!("no randomness: {e}")))?;
    let salt = SaltString::encode_b64(&raw)
        .map_err(|e| RepoError::Invalid(format!("password salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| RepoError::Invalid(format!("hashing password: {e}")))
}

/// A hash of a random password, verified against for unknown names (same cost).
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not-a-real-password-0123456789").unwrap_or_default())
}

fn verify_hash(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

impl Accounts {
    /// Creates a local account; refuses reserved and existing names and short passwords.
    pub fn user_add(&self, name: &str, password: &str, admin: bool) -> Result<UserInfo, RepoError> {
        self.create_user(
            name,
            password,
            admin,
            None::<fn(&Connection<'_>, i64) -> Result<(), RepoError>>,
        )
    }

    /// [`Accounts::user_add`], running `also` in the same transaction first (a sign-up
    /// spends its invitation there: both happen or neither).
    pub(super) fn create_user(
        &self,
        name: &str,
        password: &str,
        admin: bool,
        also: Option<impl FnOnce(&Connection<'_>, i64) -> Result<(), RepoError>>,
    ) -> Result<UserInfo, RepoError> {
        validate_user(name)?;
        let hash = hash_password(password)?;
        let t = now();
        self.db.write(|tx| {
            if let Some(f) = also {
                f(tx, t)?;
            }
            let exists: Option<i64> = tx
                .query_row("SELECT 1 FROM users WHERE name = ?1", params![name], |r| {
                    r.get(0)
                })
                .optional()
                .ctx("read user")?;
            if exists.is_some() {
                return Err(RepoError::Conflict(format!("user {name} already exists")));
            }
            crate::db::refuse_case_twin(tx, "user", name)?;
            tx.execute(
                "INSERT INTO users(name, password, admin, created, updated) VALUES (?1,?2,?3,?4,?4)",
                params![name, hash, admin, t],
            )
            .ctx("create user")?;
            Ok(())
        })?;
        Ok(UserInfo {
            name: name.to_string(),
            admin,
            created: t,
            updated: t,
            disabled: false,
        })
    }

    /// Every local account, by name.
    pub fn user_list(&self) -> Result<Vec<UserInfo>, RepoError> {
        self.db.read(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT name, admin, created, updated, disabled FROM users ORDER BY name",
                )
                .ctx("list users")?;
            let v = st
                .query_map((), |r| {
                    Ok(UserInfo {
                        name: r.get(0)?,
                        admin: r.get(1)?,
                        created: r.get(2)?,
                        updated: r.get(3)?,
                        disabled: r.get(4)?,
                    })
                })
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .ctx("list users")?;
            Ok(v)
        })
    }

    /// Number of local accounts.
    pub fn user_count(&self) -> Result<u64, RepoError> {
        self.db.read(|c| {
            c.query_row("SELECT count(*) FROM users", (), |r| r.get::<_, i64>(0))
                .map(|n| n.max(0) as u64)
                .ctx("count users")
        })
    }

    /// Changes a password and ends the user's web sessions.
    pub fn user_passwd(&self, name: &str, password: &str) -> Result<(), RepoError> {
        let hash = hash_password(password)?;
        self.db.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE users SET password = ?2, updated = ?3 WHERE name = ?1",
                    params![name, hash, now()],
                )
                .ctx("change password")?;
            if n == 0 {
                return Err(RepoError::NotFound(format!("user {name}")));
            }
            tx.execute("DELETE FROM sessions WHERE user = ?1", params![name])
                .ctx("end sessions")?;
            Ok(())
        })
    }

    /// Removes an account and everything that acted for it: its web sessions end, its API
    /// tokens are revoked, its unfinished jobs fail and its linked identities are forgotten
    /// (its repository stays). Returns how many tokens were revoked.
    pub fn user_remove(&self, name: &str) -> Result<u64, RepoError> {
        let t = now();
        self.db.write(|tx| {
            let n = tx
                .execute("DELETE FROM users WHERE name = ?1", params![name])
                .ctx("remove user")?;
            if n == 0 {
                return Err(RepoError::NotFound(format!("user {name}")));
            }
            let tokens = end_access(tx, name, t)?;
            tx.execute(
                "UPDATE jobs SET state = 'failed', message = 'the account was removed', \
                 updated = ?2 WHERE owner = ?1 AND state IN ('queued', 'running')",
                params![name, t],
            )
            .ctx("end jobs")?;
            tx.execute("DELETE FROM identities WHERE user = ?1", params![name])
                .ctx("forget identities")?;
            Ok(tokens)
        })
    }

    /// Changes `name`'s own password after checking the current one (an account without a
    /// password, made by a 3Bot sign-in, sets its first one without); ends its web
    /// sessions. [`RepoError::Forbidden`] when the current password is wrong.
    pub fn change_password(&self, name: &str, current: &str, new: &str) -> Result<(), RepoError> {
        let hash: Option<String> = self.db.read(|c| {
            c.prepare_cached("SELECT password FROM users WHERE name = ?1")
                .and_then(|mut s| s.query_row(params![name], |r| r.get(0)).optional())
                .ctx("read user")
        })?;
        let ok = match hash.as_deref() {
            None => {
                let _ = verify_hash(dummy_hash(), current);
                false
            }
            Some("") => true,
            Some(h) => verify_hash(h, current),
        };
        if !ok {
            return Err(RepoError::Forbidden("the current password is wrong".into()));
        }
        self.user_passwd(name, new)
    }

    /// Disables (`true`) or enables an account. Disabling ends its web sessions and revokes
    /// its API tokens (a token revoked stays revoked when the account is enabled again);
    /// returns how many tokens were revoked.
    pub fn user_set_disabled(&self, name: &str, disabled: bool) -> Result<u64, RepoError> {
        let t = now();
        self.db.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE users SET disabled = ?2 WHERE name = ?1",
                    params![name, disabled],
                )
                .ctx("disable user")?;
            if n == 0 {
                return Err(RepoError::NotFound(format!("user {name}")));
            }
            if !disabled {
                return Ok(0);
            }
            end_access(tx, name, t)
        })
    }

    /// True when `name` is an account an admin disabled.
    pub fn is_disabled(&self, name: &str) -> Result<bool, RepoError> {
        self.user_flag(name, "SELECT disabled FROM users WHERE name = ?1")
    }

    /// True when `name` is an account with the admin flag.
    pub fn is_admin(&self, name: &str) -> Result<bool, RepoError> {
        self.user_flag(name, "SELECT admin FROM users WHERE name = ?1")
    }

    /// A flag of account `name` read by `query` (false for an unknown name).
    fn user_flag(&self, name: &str, query: &'static str) -> Result<bool, RepoError> {
        self.db.read(|c| {
            c.prepare_cached(query)
                .and_then(|mut s| {
                    s.query_row(params![name], |r| r.get::<_, bool>(0))
                        .optional()
                })
                .map(|r| r.unwrap_or(false))
                .ctx("read user")
        })
    }

    /// True when `name` is an account (local, or made by an identity's first sign-in).
    pub fn user_exists(&self, name: &str) -> Result<bool, RepoError> {
        self.db.read(|c| {
            c.prepare_cached("SELECT 1 FROM users WHERE name = ?1")
                .and_then(|mut s| s.query_row(params![name], |_| Ok(())).optional())
                .map(|r| r.is_some())
                .ctx("read user")
        })
    }

    /// The account an external identity signs in as. An identity linked before maps to its
    /// account. A new one gets an account of its own name (no password; the old hub's
    /// naming), unless that name is taken by an account, an organisation or a name that
    /// differs only by case: then [`RepoError::Forbidden`] (the account's owner may link
    /// the identity with [`Accounts::link_identity`]). Never an existing account it was not
    /// linked to.
    pub fn identity_account(&self, provider: &str, subject: &str) -> Result<String, RepoError> {
        validate_user(subject)?;
        let t = now();
        self.db.write(|tx| {
            let linked: Option<String> = tx
                .prepare_cached("SELECT user FROM identities WHERE provider = ?1 AND subject = ?2")
                .and_then(|mut s| s.query_row(params![provider, subject], |r| r.get(0)).optional())
                .ctx("read identity")?;
            if let Some(u) = linked {
                return Ok(u);
            }
            let taken: Option<i64> = tx
                .prepare_cached(
                    "SELECT 1 FROM users WHERE lower(name) = lower(?1) \
                     UNION SELECT 1 FROM orgs WHERE lower(name) = lower(?1) LIMIT 1",
                )
                .and_then(|mut s| s.query_row(params![subject], |r| r.get(0)).optional())
                .ctx("read user")?;
            if taken.is_some() {
                return Err(RepoError::Forbidden(format!(
                    "the name {subject} belongs to an account this {provider} identity is not \
                     linked to: its owner can link it after signing in"
                )));
            }
            crate::db::refuse_case_twin(tx, "user", subject)?;
            tx.execute(
                "INSERT INTO users(name, password, admin, created, updated) VALUES (?1, '', 0, ?2, ?2)",
                params![subject, t],
            )
            .ctx("create user")?;
            tx.execute(
                "INSERT INTO identities(provider, subject, user, created) VALUES (?1, ?2, ?3, ?4)",
                params![provider, subject, subject, t],
            )
            .ctx("link identity")?;
            Ok(subject.to_string())
        })
    }

    /// Links the external identity `provider`/`subject` to the existing account `user` (its
    /// owner asked, signed in): it then signs in as `user`. Refused when the identity is
    /// linked to another account.
    pub fn link_identity(
        &self,
        provider: &str,
        subject: &str,
        user: &str,
    ) -> Result<(), RepoError> {
        validate_user(subject)?;
        let t = now();
        self.db.write(|tx| {
            let exists: Option<i64> = tx
                .prepare_cached("SELECT 1 FROM users WHERE name = ?1")
                .and_then(|mut s| s.query_row(params![user], |r| r.get(0)).optional())
                .ctx("read user")?;
            if exists.is_none() {
                return Err(RepoError::NotFound(format!("user {user}")));
            }
            let linked: Option<String> = tx
                .prepare_cached("SELECT user FROM identities WHERE provider = ?1 AND subject = ?2")
                .and_then(|mut s| s.query_row(params![provider, subject], |r| r.get(0)).optional())
                .ctx("read identity")?;
            match linked {
                Some(u) if u == user => Ok(()),
                Some(u) => Err(RepoError::Conflict(format!(
                    "the {provider} identity {subject} is linked to another account ({u})"
                ))),
                None => {
                    tx.execute(
                        "INSERT INTO identities(provider, subject, user, created) VALUES (?1, ?2, ?3, ?4)",
                        params![provider, subject, user, t],
                    )
                    .ctx("link identity")?;
                    Ok(())
                }
            }
        })
    }

    /// Checks a password (argon2 runs even when the name is unknown): the account when it
    /// matches, `None` otherwise.
    pub fn verify_password(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<UserInfo>, RepoError> {
        let row = self.db.read(|c| {
            c.prepare_cached(
                "SELECT name, password, admin, created, updated, disabled FROM users WHERE name = ?1",
            )
            .and_then(|mut s| {
                s.query_row(params![name], |r| {
                    Ok((
                        UserInfo {
                            name: r.get(0)?,
                            admin: r.get(2)?,
                            created: r.get(3)?,
                            updated: r.get(4)?,
                            disabled: r.get(5)?,
                        },
                        r.get::<_, String>(1)?,
                    ))
                })
                .optional()
            })
            .ctx("read user")
        })?;
        match row {
            // a disabled account never signs in (the hash is still checked: same cost)
            Some((info, hash)) => {
                Ok((verify_hash(&hash, password) && !info.disabled).then_some(info))
            }
            None => {
                let _ = verify_hash(dummy_hash(), password);
                Ok(None)
            }
        }
    }
}

/// Ends every web session of `name` and revokes its live API tokens (at time `t`), in the
/// caller's transaction: what removing or disabling an account cuts. Returns how many
/// tokens were revoked.
fn end_access(tx: &Connection<'_>, name: &str, t: i64) -> Result<u64, RepoError> {
    tx.execute("DELETE FROM sessions WHERE user = ?1", params![name])
        .ctx("end sessions")?;
    let tokens = tx
        .execute(
            "UPDATE tokens SET revoked = ?2 WHERE user = ?1 AND revoked IS NULL",
            params![name, t],
        )
        .ctx("revoke tokens")?;
    Ok(tokens as u64)
}
