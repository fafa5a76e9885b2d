//! Catalog schema versions: SQLite's `user_version` says which of [`MIGRATIONS`] a catalog
//! has had. Opening applies the missing ones in order, each in its own transaction with its
//! version bump (a failure leaves the catalog at the previous version), and refuses a catalog
//! written by a newer hub.
//!
//! Version 1 is the schema as the hub created it before versions existed (every statement
//! `IF NOT EXISTS`, so a catalog at version 0 of any earlier build takes it as is). A new
//! version appends a migration here; never edit a released one.

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::error::SqlContext;
use crate::RepoError;

/// One forward step.
struct Migration {
    /// What it changes (for errors and logs).
    what: &'static str,
    /// The change.
    apply: fn(&Transaction<'_>) -> rusqlite::Result<()>,
}

/// The migrations, in order: index `i` brings a catalog from version `i` to `i + 1`.
const MIGRATIONS: &[Migration] = &[
    Migration {
        what: "base schema (catalog, path index, token usage, mirror state, users, sessions)",
        apply: |tx| {
            tx.execute_batch(crate::db::SCHEMA)?;
            tx.execute_batch(crate::users::SCHEMA)?;
            tx.execute_batch(crate::sessions::SCHEMA)?;
            tx.execute_batch(crate::paths::PATH_SCHEMA)?;
            tx.execute_batch(crate::browse::BROWSE_SCHEMA)?;
            tx.execute_batch(crate::replica::MIRROR_TABLE)
        },
    },
    Migration {
        what: "indexes for a user's tokens and for unfinished jobs",
        apply: |tx| {
            tx.execute_batch(
                "CREATE INDEX IF NOT EXISTS tokens_user ON tokens(user);
                 CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);",
            )
        },
    },
    Migration {
        what: "links remember whether they were made by crosslink (raw `../repo/name` form)",
        apply: |tx| {
            tx.execute_batch("ALTER TABLE entries ADD COLUMN crosslink INTEGER NOT NULL DEFAULT 0;")
        },
    },
    Migration {
        what: "the hub's own public backends, recorded as they change (hub-server restamp)",
        apply: |tx| tx.execute_batch(crate::backends::SCHEMA),
    },
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

fn version(c: &Connection) -> Result<i64, RepoError> {
    c.pragma_query_value(None, "user_version", |r| r.get(0))
        .ctx("read schema version")
}

/// Brings the catalog on `conn` to [`SCHEMA_VERSION`].
pub(crate) fn migrate(conn: &mut Connection, what: &str) -> Result<(), RepoError> {
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("begin migration")?;
        // Read under the write lock: another process may have migrated meanwhile.
        let v = version(&tx)?;
        if v > SCHEMA_VERSION {
            return Err(RepoError::Unsupported(format!(
                "{what}: catalog schema version {v} was written by a newer hub (this one knows \
                 up to {SCHEMA_VERSION}): upgrade hub-server"
            )));
        }
        let Some(m) = usize::try_from(v).ok().and_then(|i| MIGRATIONS.get(i)) else {
            return Ok(()); // up to date
        };
        (m.apply)(&tx).map_err(|e| RepoError::Sqlite {
            context: format!("{what}: migration to schema version {}: {}", v + 1, m.what),
            source: e,
        })?;
        tx.pragma_update(None, "user_version", v + 1)
            .ctx("write schema version")?;
        tx.commit().ctx("commit migration")?;
        tracing::info!(
            "{what}: catalog schema migrated to version {}: {}",
            v + 1,
            m.what
        );
    }
}
