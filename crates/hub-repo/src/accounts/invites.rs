//! Self-service sign-up and the invitations an admin hands out: a code (32 random bytes,
//! base64url, shown once; only its sha256 is stored) that lets one person create one
//! account before it expires, whether or not the hub is open to sign-ups.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::db::sql::{params, Connection, OptionalExtension};

use super::tokens::token_hash;
use super::{Accounts, UserInfo};
use crate::clock::now;
use crate::error::SqlContext;
use crate::RepoError;

/// An invitation's state, as a sign-up page shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InviteCheck {
    /// Usable, until this unix time.
    Valid {
        /// Expiry.
        expires: i64,
    },
    /// Already used, or past its expiry.
    Spent,
    /// Not a code of this hub.
    Unknown,
}

impl Accounts {
    /// Makes an invitation valid `ttl_secs`, on behalf of admin `by`; returns the code
    /// (shown once).
    pub fn invite_create(&self, by: &str, ttl_secs: i64) -> Result<(String, i64), RepoError> {
        if ttl_secs <= 0 {
            return Err(RepoError::Invalid(
                "invitation lifetime must be positive".into(),
            ));
        }
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| RepoError::Invalid(format!("no randomness: {e}")))?;
        let code = URL_SAFE_NO_PAD.encode(raw);
        let created = now();
        let expires = created.saturating_add(ttl_secs);
        self.db.write(|tx| {
            tx.execute(
                "INSERT INTO invites(hash, created_by, created, expires) VALUES (?1, ?2, ?3, ?4)",
                params![token_hash(&code), by, created, expires],
            )
            .ctx("create invitation")?;
            Ok(())
        })?;
        Ok((code, expires))
    }

    /// What `code` is worth.
    pub fn invite_check(&self, code: &str) -> Result<InviteCheck, RepoError> {
        let row: Option<(i64, Option<String>)> = self.db.read(|c| {
            c.prepare_cached("SELECT expires, used_by FROM invites WHERE hash = ?1")
                .and_then(|mut s| {
                    s.query_row(params![token_hash(code)], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                })
                .ctx("read invitation")
        })?;
        Ok(match row {
            None => InviteCheck::Unknown,
            Some((expires, None)) if now() < expires => InviteCheck::Valid { expires },
            Some(_) => InviteCheck::Spent,
        })
    }

    /// Creates the account `name` for a visitor: with an invitation `code` (spent in the
    /// same transaction), or without one when the hub is `open` to sign-ups. Never an
    /// admin. [`RepoError::Forbidden`] without a usable invitation on a closed hub.
    pub fn signup(
        &self,
        name: &str,
        password: &str,
        code: Option<&str>,
        open: bool,
    ) -> Result<UserInfo, RepoError> {
        let code = code.map(str::trim).filter(|c| !c.is_empty());
        if code.is_none() && !open {
            return Err(RepoError::Forbidden(
                "this hub does not take sign-ups: ask an admin for an invitation".into(),
            ));
        }
        let spend = code.map(|c| {
            move |tx: &Connection<'_>, t: i64| -> Result<(), RepoError> {
                let n = tx
                    .execute(
                        "UPDATE invites SET used_by = ?2, used = ?3 \
                         WHERE hash = ?1 AND used_by IS NULL AND expires > ?3",
                        params![token_hash(c), name, t],
                    )
                    .ctx("spend invitation")?;
                if n == 1 {
                    Ok(())
                } else {
                    Err(RepoError::Forbidden(
                        "this invitation is used, expired or unknown: ask an admin for a new one"
                            .into(),
                    ))
                }
            }
        });
        self.create_user(name, password, false, spend)
    }
}
