//! Hub API tokens: 32 random bytes, base64url; only their sha256 is stored.

use crate::db::sql::{params, OptionalExtension};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::Accounts;
use crate::clock::now;
use crate::error::SqlContext;
use crate::names::validate_user;
use crate::RepoError;

/// What a token grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    /// Catalog id (for listing and revocation).
    pub id: i64,
    /// The user the token authenticates.
    pub user: String,
    /// Organisations the user may act as: from [`Accounts::check_token`], those it is a
    /// member of at the time of use; in listings, those named when it was issued.
    pub memberof: Vec<String>,
    /// Free-form label.
    pub label: Option<String>,
    /// Unix time of issue.
    pub created: i64,
    /// Unix time of expiry.
    pub expires: i64,
}

/// Outcome of checking a presented token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenCheck {
    /// Valid.
    Valid(TokenInfo),
    /// Known but past its expiry.
    Expired,
    /// Known but revoked.
    Revoked,
    /// Not a token this hub issued.
    Unknown,
}

/// sha256 hex of a presented token: what the catalog stores.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Accounts {
    /// Issues a token for `user` valid `ttl_secs` seconds; returns the token (shown once) and
    /// its record.
    pub fn create_token(
        &self,
        user: &str,
        memberof: &[String],
        ttl_secs: i64,
        label: Option<&str>,
    ) -> Result<(String, TokenInfo), RepoError> {
        validate_user(user)?;
        for m in memberof {
            validate_user(m)?;
        }
        if ttl_secs <= 0 {
            return Err(RepoError::Invalid("token lifetime must be positive".into()));
        }
        // Only accounts get tokens (the organisations they act as are named explicitly in
        // `memberof`): a removed or never created account gets none.
        if !self.user_exists(user)? {
            return Err(RepoError::NotFound(format!(
                "no account {user}: create it first (`hub-server user add {user}`)"
            )));
        }
        if self.is_disabled(user)? {
            return Err(RepoError::Forbidden(format!(
                "the account {user} is disabled: ask an admin of this hub"
            )));
        }
        // A token never starts with `-`: command lines (ours, the reference client's, shell
        // scripts) would take it for an option.
        let token = loop {
            let mut raw = [0u8; 32];
            getrandom::fill(&mut raw)
                .map_err(|e| RepoError::Invalid(format!("no randomness: {e}")))?;
            let t = URL_SAFE_NO_PAD.encode(raw);
            if !t.starts_with('-') {
                break t;
            }
        };
        let created = now();
        let expires = created.saturating_add(ttl_secs);
        let members = serde_json::to_string(memberof).unwrap_or_else(|_| "[]".into());
        let id = self.db.write(|tx| {
            // The organisations named become memberships (an administrator issuing a token
            // `--member-of acme` adds the user to acme): a token carries the memberships its
            // user has when it is used, never a list of its own.
            for m in memberof {
                if super::orgs::memberships_on(tx, user)?.iter().all(|o| o != m) {
                    super::orgs::insert_member(tx, m, user, super::OrgRole::Member)?;
                }
            }
            tx.query_row(
                "INSERT INTO tokens(hash, user, memberof, label, created, expires) VALUES (?1,?2,?3,?4,?5,?6) RETURNING id",
                params![token_hash(&token), user, members, label, created, expires],
                |r| r.get::<_, i64>(0),
            )
            .ctx("create token")
        })?;
        let info = TokenInfo {
            id,
            user: user.to_string(),
            memberof: memberof.to_vec(),
            label: label.map(str::to_string),
            created,
            expires,
        };
        Ok((token, info))
    }

    /// Checks a presented token.
    pub fn check_token(&self, token: &str) -> Result<TokenCheck, RepoError> {
        let h = token_hash(token);
        let row = self.db.read(|c| {
            c.prepare_cached(
                "SELECT id, user, memberof, label, created, expires, revoked FROM tokens WHERE hash = ?1",
            )
            .and_then(|mut s| {
                s.query_row(params![h], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, Option<i64>>(6)?,
                    ))
                })
                .optional()
            })
            .ctx("read token")
        })?;
        let Some((id, user, _issued_with, label, created, expires, revoked)) = row else {
            return Ok(TokenCheck::Unknown);
        };
        if revoked.is_some() {
            return Ok(TokenCheck::Revoked);
        }
        if now() >= expires {
            return Ok(TokenCheck::Expired);
        }
        // The organisations the user belongs to now (a removed member's token no longer
        // acts for the organisation), whatever the token was issued with.
        let memberof = self.memberships(&user)?;
        self.note_token_use(id);
        Ok(TokenCheck::Valid(TokenInfo {
            id,
            user,
            memberof,
            label,
            created,
            expires,
        }))
    }

    /// Revokes the token with this value; false when unknown or already revoked.
    pub fn revoke_token(&self, token: &str) -> Result<bool, RepoError> {
        let h = token_hash(token);
        self.db.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE tokens SET revoked = ?2 WHERE hash = ?1 AND revoked IS NULL",
                    params![h, now()],
                )
                .ctx("revoke token")?;
            Ok(n > 0)
        })
    }

    /// Revokes a token by catalog id; false when unknown or already revoked.
    pub fn revoke_token_id(&self, id: i64) -> Result<bool, RepoError> {
        self.db.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE tokens SET revoked = ?2 WHERE id = ?1 AND revoked IS NULL",
                    params![id, now()],
                )
                .ctx("revoke token")?;
            Ok(n > 0)
        })
    }

    /// Tokens of `user` that are neither revoked nor expired.
    pub fn list_tokens(&self, user: &str) -> Result<Vec<TokenInfo>, RepoError> {
        self.db.read(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT id, user, memberof, label, created, expires FROM tokens \
                     WHERE user = ?1 AND revoked IS NULL AND expires > ?2 ORDER BY id",
                )
                .ctx("list tokens")?;
            let v = st
                .query_map(params![user, now()], |r| {
                    let m: String = r.get(2)?;
                    Ok(TokenInfo {
                        id: r.get(0)?,
                        user: r.get(1)?,
                        memberof: serde_json::from_str(&m).unwrap_or_default(),
                        label: r.get(3)?,
                        created: r.get(4)?,
                        expires: r.get(5)?,
                    })
                })
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .ctx("list tokens")?;
            Ok(v)
        })
    }
}

impl Accounts {
    /// Records that token `id` was just used (at most one write a minute per token).
    pub(crate) fn note_token_use(&self, id: i64) {
        let now = now();
        {
            let mut m = self.noted.lock().unwrap_or_else(|p| p.into_inner());
            if m.get(&id).is_some_and(|t| now - *t < 60) {
                return;
            }
            if m.len() > 100_000 {
                m.clear();
            }
            m.insert(id, now);
        }
        let r = self.db.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO token_usage(id, last_used) VALUES (?1, ?2) \
                 ON CONFLICT(id) DO UPDATE SET last_used = excluded.last_used",
            )
            .and_then(|mut s| s.execute(params![id, now]))
            .ctx("record token use")
        });
        if let Err(e) = r {
            tracing::warn!("token use: {e}");
        }
    }

    /// When each of `ids` was last used (absent: never).
    pub fn token_last_used(
        &self,
        ids: &[i64],
    ) -> Result<std::collections::HashMap<i64, i64>, RepoError> {
        self.db.read(|c| {
            let mut st = c
                .prepare_cached("SELECT last_used FROM token_usage WHERE id = ?1")
                .ctx("read token use")?;
            let mut out = std::collections::HashMap::new();
            for id in ids {
                let t: Option<i64> = st
                    .query_row(params![id], |r| r.get(0))
                    .map(Some)
                    .or_else(|e| match e {
                        crate::db::sql::DbError::NoRows => Ok(None),
                        e => Err(e),
                    })
                    .ctx("read token use")?;
                if let Some(t) = t {
                    out.insert(*id, t);
                }
            }
            Ok(out)
        })
    }
}
