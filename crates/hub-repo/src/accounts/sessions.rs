//! Web sessions: their own credential (never an API token). 32 random bytes, base64url, sent
//! in an HttpOnly cookie; only their sha256 is stored, with the user, the organisations it
//! may act as, and an expiry.

use crate::db::sql::{params, OptionalExtension};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::tokens::token_hash;
use super::Accounts;
use crate::clock::now;
use crate::error::SqlContext;
use crate::names::validate_user;
use crate::RepoError;

/// A live web session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// The signed-in user.
    pub user: String,
    /// Organisations the user may act as (from [`Accounts::check_session`]: those it is a
    /// member of now).
    pub memberof: Vec<String>,
    /// How the user signed in (`password`, `threebot`, `token`).
    pub method: String,
    /// Unix time of sign-in.
    pub created: i64,
    /// Unix time of expiry.
    pub expires: i64,
}

impl Accounts {
    /// Opens a session for `user` valid `ttl_secs`; returns the session id (the cookie value,
    /// shown once) and its record.
    pub fn create_session(
        &self,
        user: &str,
        memberof: &[String],
        method: &str,
        ttl_secs: i64,
    ) -> Result<(String, SessionInfo), RepoError> {
        validate_user(user)?;
        for m in memberof {
            validate_user(m)?;
        }
        if ttl_secs <= 0 {
            return Err(RepoError::Invalid(
                "session lifetime must be positive".into(),
            ));
        }
        if self.is_disabled(user)? {
            return Err(RepoError::Forbidden(format!(
                "the account {user} is disabled: ask an admin of this hub"
            )));
        }
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| RepoError::Invalid(format!("no randomness: {e}")))?;
        let id = URL_SAFE_NO_PAD.encode(raw);
        let created = now();
        let expires = created.saturating_add(ttl_secs);
        let members = serde_json::to_string(memberof).unwrap_or_else(|_| "[]".into());
        self.db.write(|tx| {
            tx.execute("DELETE FROM sessions WHERE expires <= ?1", params![created])
                .ctx("expire sessions")?;
            tx.execute(
                "INSERT INTO sessions(hash, user, memberof, method, created, expires) VALUES (?1,?2,?3,?4,?5,?6)",
                params![token_hash(&id), user, members, method, created, expires],
            )
            .ctx("create session")?;
            Ok(())
        })?;
        Ok((
            id,
            SessionInfo {
                user: user.to_string(),
                memberof: memberof.to_vec(),
                method: method.to_string(),
                created,
                expires,
            },
        ))
    }

    /// The live session with this id, if any (unknown and expired ids give `None`).
    pub fn check_session(&self, id: &str) -> Result<Option<SessionInfo>, RepoError> {
        let h = token_hash(id);
        let row = self.db.read(|c| {
            c.prepare_cached(
                "SELECT user, memberof, method, created, expires FROM sessions WHERE hash = ?1",
            )
            .and_then(|mut s| {
                s.query_row(params![h], |r| {
                    let m: String = r.get(1)?;
                    Ok(SessionInfo {
                        user: r.get(0)?,
                        memberof: serde_json::from_str(&m).unwrap_or_default(),
                        method: r.get(2)?,
                        created: r.get(3)?,
                        expires: r.get(4)?,
                    })
                })
                .optional()
            })
            .ctx("read session")
        })?;
        let Some(mut s) = row.filter(|s| now() < s.expires) else {
            return Ok(None);
        };
        // The organisations the user belongs to now (membership checked on use).
        s.memberof = self.memberships(&s.user)?;
        Ok(Some(s))
    }

    /// Ends a session; false when it was unknown.
    pub fn end_session(&self, id: &str) -> Result<bool, RepoError> {
        let h = token_hash(id);
        self.db.write(|tx| {
            let n = tx
                .execute("DELETE FROM sessions WHERE hash = ?1", params![h])
                .ctx("end session")?;
            Ok(n > 0)
        })
    }
}
