//! The catalog's schema, all of it in one place (the seams' queries rely on these tables),
//! and its versions: SQLite's `user_version` says which of [`MIGRATIONS`] a catalog has had.
//! Opening applies the missing ones in order, each in its own transaction with its version
//! bump (a failure leaves the catalog at the previous version), and refuses a catalog written
//! by a newer hub.
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
            tx.execute_batch(CATALOG)?;
            tx.execute_batch(USERS)?;
            tx.execute_batch(SESSIONS)?;
            tx.execute_batch(PATHS)?;
            tx.execute_batch(TOKEN_USAGE)?;
            tx.execute_batch(MIRROR_STATE)
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
        apply: |tx| tx.execute_batch(OWN_BACKENDS),
    },
    Migration {
        what: "external identities (3Bot) linked to accounts",
        apply: |tx| tx.execute_batch(IDENTITIES),
    },
    Migration {
        what: "private repositories, organisation roles, memberships named by tokens recorded",
        apply: |tx| tx.execute_batch(VISIBILITY_AND_ROLES),
    },
    Migration {
        what: "accounts an admin disabled; sign-up invitations",
        apply: |tx| {
            tx.execute_batch("ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;")?;
            tx.execute_batch(INVITES)
        },
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
        (m.apply)(&tx).map_err(|e| RepoError::Database {
            context: format!("{what}: migration to schema version {}: {}", v + 1, m.what),
            source: e.into(),
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

/// PostgreSQL's steps, as `(version reached, what, statements)`: the first creates the
/// whole schema of version 5 at once (the SQLite tables in PostgreSQL's types: `BIGINT`
/// integers, booleans as 0/1 like SQLite's, `BIGSERIAL` row ids, the `user` column quoted);
/// later versions append the same change in both lists.
const PG_MIGRATIONS: &[(i64, &str, &str)] = &[
    (5, "base schema (version 5)", PG_BASE),
    (
        6,
        "private repositories, organisation roles",
        "ALTER TABLE repositories ADD COLUMN private BIGINT NOT NULL DEFAULT 0;
         ALTER TABLE org_members ADD COLUMN role TEXT NOT NULL DEFAULT 'member'
             CHECK (role IN ('owner', 'member'));
         CREATE INDEX org_members_user ON org_members(\"user\");",
    ),
    (
        7,
        "accounts an admin disabled; sign-up invitations",
        "ALTER TABLE users ADD COLUMN disabled BIGINT NOT NULL DEFAULT 0;
         CREATE TABLE invites (
             hash       TEXT PRIMARY KEY,
             created_by TEXT NOT NULL,
             created    BIGINT NOT NULL,
             expires    BIGINT NOT NULL,
             used_by    TEXT,
             used       BIGINT
         );",
    ),
];

/// Brings the PostgreSQL catalog on `conn` to [`SCHEMA_VERSION`], in one transaction holding
/// the migration lock: the first replica to start migrates, the others wait and find it done.
pub(crate) fn migrate_pg(
    conn: &std::cell::RefCell<crate::db::pg::PgConn>,
    what: &str,
) -> Result<(), RepoError> {
    use crate::db::sql::Connection as Conn;
    let c = Conn::Pg(conn);
    let ctx = |s: &str| format!("{what}: {s}");
    c.execute_batch(&format!(
        "BEGIN; {}; CREATE TABLE IF NOT EXISTS hub_schema (version BIGINT NOT NULL); \
         CREATE TABLE IF NOT EXISTS hub_writes (n BIGINT NOT NULL); \
         INSERT INTO hub_writes(n) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM hub_writes)",
        crate::db::pg::PgPool::migrate_lock()
    ))
    .ctx(&ctx("begin migration"))?;
    let run = || -> Result<(), RepoError> {
        let v: i64 = c
            .query_row(
                "SELECT coalesce(max(version), 0) FROM hub_schema",
                (),
                |r| r.get(0),
            )
            .ctx(&ctx("read schema version"))?;
        if v > SCHEMA_VERSION {
            return Err(RepoError::Unsupported(format!(
                "{what}: catalog schema version {v} was written by a newer hub (this one knows \
                 up to {SCHEMA_VERSION}): upgrade hub-server"
            )));
        }
        let mut now = v;
        for (to, step, sql) in PG_MIGRATIONS {
            if *to <= now {
                continue;
            }
            c.execute_batch(sql)
                .ctx(&ctx(&format!("migration to schema version {to}: {step}")))?;
            now = *to;
            tracing::info!("{what}: catalog schema migrated to version {to}: {step}");
        }
        c.execute("DELETE FROM hub_schema", ())
            .and_then(|_| c.execute("INSERT INTO hub_schema(version) VALUES (?1)", [now]))
            .ctx(&ctx("write schema version"))?;
        Ok(())
    };
    match run() {
        Ok(()) => c.execute_batch("COMMIT").ctx(&ctx("commit migration")),
        Err(e) => {
            let _ = c.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// The PostgreSQL schema at version 5 (see [`PG_MIGRATIONS`]).
const PG_BASE: &str = r#"
CREATE TABLE repositories (
    name    TEXT PRIMARY KEY,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL
);
CREATE TABLE blobs (
    sha256   TEXT PRIMARY KEY,
    md5      TEXT NOT NULL,
    size     BIGINT NOT NULL,
    metadata TEXT,
    dump     TEXT,
    created  BIGINT NOT NULL
);
CREATE TABLE entries (
    repo        TEXT NOT NULL REFERENCES repositories(name),
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('regular', 'symlink', 'taglink')),
    sha256      TEXT REFERENCES blobs(sha256),
    target_repo TEXT,
    target_name TEXT,
    updated     BIGINT NOT NULL,
    linktime    BIGINT,
    uploader    TEXT,
    source      TEXT,
    crosslink   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (repo, name),
    CHECK ((kind = 'regular') = (sha256 IS NOT NULL)),
    CHECK ((kind = 'regular') = (target_repo IS NULL))
);
CREATE INDEX entries_sha ON entries(sha256);
CREATE TABLE tags (
    repo    TEXT NOT NULL REFERENCES repositories(name),
    tag     TEXT NOT NULL,
    updated BIGINT NOT NULL,
    PRIMARY KEY (repo, tag)
);
CREATE TABLE tag_links (
    repo        TEXT NOT NULL,
    tag         TEXT NOT NULL,
    name        TEXT NOT NULL,
    target_repo TEXT NOT NULL,
    target_name TEXT NOT NULL,
    linktime    BIGINT NOT NULL,
    PRIMARY KEY (repo, tag, name),
    FOREIGN KEY (repo, tag) REFERENCES tags(repo, tag) ON DELETE CASCADE
);
CREATE TABLE orgs (
    name    TEXT PRIMARY KEY,
    created BIGINT NOT NULL
);
CREATE TABLE org_members (
    org    TEXT NOT NULL REFERENCES orgs(name) ON DELETE CASCADE,
    "user" TEXT NOT NULL,
    PRIMARY KEY (org, "user")
);
CREATE TABLE tokens (
    id       BIGSERIAL PRIMARY KEY,
    hash     TEXT NOT NULL UNIQUE,
    "user"   TEXT NOT NULL,
    memberof TEXT NOT NULL,
    label    TEXT,
    created  BIGINT NOT NULL,
    expires  BIGINT NOT NULL,
    revoked  BIGINT
);
CREATE INDEX tokens_user ON tokens("user");
CREATE TABLE jobs (
    id       TEXT PRIMARY KEY,
    kind     TEXT NOT NULL,
    owner    TEXT NOT NULL,
    state    TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    progress BIGINT NOT NULL DEFAULT 0,
    message  TEXT NOT NULL DEFAULT '',
    info     TEXT,
    created  BIGINT NOT NULL,
    updated  BIGINT NOT NULL
);
CREATE INDEX jobs_state ON jobs(state);
CREATE TABLE audit (
    id        BIGSERIAL PRIMARY KEY,
    ts        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    acting_as TEXT NOT NULL,
    action    TEXT NOT NULL,
    repo      TEXT NOT NULL,
    name      TEXT NOT NULL,
    detail    TEXT NOT NULL
);
CREATE TABLE users (
    name     TEXT PRIMARY KEY,
    password TEXT NOT NULL,
    admin    BIGINT NOT NULL DEFAULT 0,
    created  BIGINT NOT NULL,
    updated  BIGINT NOT NULL
);
CREATE TABLE sessions (
    hash     TEXT PRIMARY KEY,
    "user"   TEXT NOT NULL,
    memberof TEXT NOT NULL,
    method   TEXT NOT NULL,
    created  BIGINT NOT NULL,
    expires  BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions("user");
CREATE TABLE path_blobs (
    id        BIGSERIAL PRIMARY KEY,
    sha256    TEXT NOT NULL UNIQUE,
    entries   BIGINT NOT NULL,
    regular   BIGINT NOT NULL,
    directory BIGINT NOT NULL,
    symlink   BIGINT NOT NULL,
    special   BIGINT NOT NULL,
    fullsize  BIGINT NOT NULL,
    indexed   BIGINT NOT NULL
);
CREATE TABLE path_entries (
    blob     BIGINT NOT NULL,
    node     BIGINT NOT NULL,
    parent   BIGINT NOT NULL,
    sort     BIGINT NOT NULL,
    name     TEXT NOT NULL,
    path     TEXT NOT NULL,
    kind     TEXT NOT NULL,
    mode     TEXT NOT NULL,
    owner    TEXT NOT NULL,
    size     BIGINT NOT NULL,
    target   TEXT,
    children BIGINT NOT NULL,
    PRIMARY KEY (blob, node)
);
CREATE INDEX path_entries_dir ON path_entries(blob, parent, sort, name);
CREATE INDEX path_entries_path ON path_entries(path, blob);
CREATE INDEX path_entries_name ON path_entries(name, blob);
CREATE TABLE token_usage (
    id        BIGINT PRIMARY KEY,
    last_used BIGINT NOT NULL
);
CREATE TABLE mirror_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE own_backends (
    backend    TEXT PRIMARY KEY,
    first_seen BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL
);
CREATE TABLE identities (
    provider TEXT NOT NULL,
    subject  TEXT NOT NULL,
    "user"   TEXT NOT NULL,
    created  BIGINT NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX identities_user ON identities("user");
"#;

// ----- the tables (version 1; later versions are the migrations above) ------------------

/// The catalog tables: repositories, entries, flist files, tags, organisations, tokens,
/// jobs, audit.
const CATALOG: &str = r#"
CREATE TABLE IF NOT EXISTS repositories (
    name    TEXT PRIMARY KEY,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS blobs (
    sha256   TEXT PRIMARY KEY,
    md5      TEXT NOT NULL,
    size     INTEGER NOT NULL,
    metadata TEXT,
    dump     TEXT,
    created  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    repo        TEXT NOT NULL REFERENCES repositories(name),
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('regular', 'symlink', 'taglink')),
    sha256      TEXT REFERENCES blobs(sha256),
    target_repo TEXT,
    target_name TEXT,
    updated     INTEGER NOT NULL,
    linktime    INTEGER,
    uploader    TEXT,
    source      TEXT,
    PRIMARY KEY (repo, name),
    CHECK ((kind = 'regular') = (sha256 IS NOT NULL)),
    CHECK ((kind = 'regular') = (target_repo IS NULL))
);
CREATE INDEX IF NOT EXISTS entries_sha ON entries(sha256);
CREATE TABLE IF NOT EXISTS tags (
    repo    TEXT NOT NULL REFERENCES repositories(name),
    tag     TEXT NOT NULL,
    updated INTEGER NOT NULL,
    PRIMARY KEY (repo, tag)
);
CREATE TABLE IF NOT EXISTS tag_links (
    repo        TEXT NOT NULL,
    tag         TEXT NOT NULL,
    name        TEXT NOT NULL,
    target_repo TEXT NOT NULL,
    target_name TEXT NOT NULL,
    linktime    INTEGER NOT NULL,
    PRIMARY KEY (repo, tag, name),
    FOREIGN KEY (repo, tag) REFERENCES tags(repo, tag) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS orgs (
    name    TEXT PRIMARY KEY,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS org_members (
    org  TEXT NOT NULL REFERENCES orgs(name) ON DELETE CASCADE,
    user TEXT NOT NULL,
    PRIMARY KEY (org, user)
);
CREATE TABLE IF NOT EXISTS tokens (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    hash     TEXT NOT NULL UNIQUE,
    user     TEXT NOT NULL,
    memberof TEXT NOT NULL,
    label    TEXT,
    created  INTEGER NOT NULL,
    expires  INTEGER NOT NULL,
    revoked  INTEGER
);
CREATE TABLE IF NOT EXISTS jobs (
    id       TEXT PRIMARY KEY,
    kind     TEXT NOT NULL,
    owner    TEXT NOT NULL,
    state    TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    progress INTEGER NOT NULL DEFAULT 0,
    message  TEXT NOT NULL DEFAULT '',
    info     TEXT,
    created  INTEGER NOT NULL,
    updated  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    ts        INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    acting_as TEXT NOT NULL,
    action    TEXT NOT NULL,
    repo      TEXT NOT NULL,
    name      TEXT NOT NULL,
    detail    TEXT NOT NULL
);
"#;

/// Tables of local accounts (created with the catalog).
const USERS: &str = r#"
CREATE TABLE IF NOT EXISTS users (
    name     TEXT PRIMARY KEY,
    password TEXT NOT NULL,
    admin    INTEGER NOT NULL DEFAULT 0,
    created  INTEGER NOT NULL,
    updated  INTEGER NOT NULL
);
"#;

/// Sign-up invitations an admin made (schema version 7): only the code's sha256 is kept;
/// one account per code, before it expires.
const INVITES: &str = r#"
CREATE TABLE IF NOT EXISTS invites (
    hash       TEXT PRIMARY KEY,
    created_by TEXT NOT NULL,
    created    INTEGER NOT NULL,
    expires    INTEGER NOT NULL,
    used_by    TEXT,
    used       INTEGER
);
"#;

/// Tables of web sessions (created with the catalog).
const SESSIONS: &str = r#"
CREATE TABLE IF NOT EXISTS sessions (
    hash     TEXT PRIMARY KEY,
    user     TEXT NOT NULL,
    memberof TEXT NOT NULL,
    method   TEXT NOT NULL,
    created  INTEGER NOT NULL,
    expires  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user);
"#;

/// Tables of the path index (schema version 1).
const PATHS: &str = r#"
CREATE TABLE IF NOT EXISTS path_blobs (
    id      INTEGER PRIMARY KEY,
    sha256  TEXT NOT NULL UNIQUE,
    entries INTEGER NOT NULL,
    regular INTEGER NOT NULL,
    directory INTEGER NOT NULL,
    symlink INTEGER NOT NULL,
    special INTEGER NOT NULL,
    fullsize INTEGER NOT NULL,
    indexed INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS path_entries (
    blob     INTEGER NOT NULL,
    node     INTEGER NOT NULL,
    parent   INTEGER NOT NULL,
    sort     INTEGER NOT NULL,
    name     TEXT NOT NULL,
    path     TEXT NOT NULL,
    kind     TEXT NOT NULL,
    mode     TEXT NOT NULL,
    owner    TEXT NOT NULL,
    size     INTEGER NOT NULL,
    target   TEXT,
    children INTEGER NOT NULL,
    PRIMARY KEY (blob, node)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS path_entries_dir ON path_entries(blob, parent, sort, name);
CREATE INDEX IF NOT EXISTS path_entries_path ON path_entries(path, blob);
CREATE INDEX IF NOT EXISTS path_entries_name ON path_entries(name, blob);
"#;

/// Table of when each token was last used (kept apart from `tokens`, written at most once a
/// minute per token).
const TOKEN_USAGE: &str = r#"
CREATE TABLE IF NOT EXISTS token_usage (
    id        INTEGER PRIMARY KEY,
    last_used INTEGER NOT NULL
);
"#;

/// The mirror's own state (schema version 1).
pub(crate) const MIRROR_STATE: &str =
    "CREATE TABLE IF NOT EXISTS mirror_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)";

/// The public backends this hub has announced over time (schema version 4; read and written
/// by `maintenance/backends.rs`).
const OWN_BACKENDS: &str = "
CREATE TABLE IF NOT EXISTS own_backends (
    backend    TEXT PRIMARY KEY,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL
);";

/// External identities (a 3Bot name) and the account each signs in as: the account it
/// created on its first sign-in, or the one whose owner linked it (schema version 5; read
/// and written by `accounts/users.rs`).
const IDENTITIES: &str = r#"
CREATE TABLE IF NOT EXISTS identities (
    provider TEXT NOT NULL,
    subject  TEXT NOT NULL,
    user     TEXT NOT NULL,
    created  INTEGER NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX IF NOT EXISTS identities_user ON identities(user);
"#;

/// Schema version 6: a repository may be private (readable by its user or the members of its
/// organisation only); an organisation member is an `owner` (manages members and visibility)
/// or a `member` (writes). Organisations that live tokens name become recorded memberships:
/// from this version on a token or session carries the memberships its user has *now*
/// (read by `accounts/`), so the organisations a token was issued for keep working.
const VISIBILITY_AND_ROLES: &str = r#"
ALTER TABLE repositories ADD COLUMN private INTEGER NOT NULL DEFAULT 0;
ALTER TABLE org_members ADD COLUMN role TEXT NOT NULL DEFAULT 'member'
    CHECK (role IN ('owner', 'member'));
CREATE INDEX IF NOT EXISTS org_members_user ON org_members(user);
INSERT OR IGNORE INTO orgs(name, created)
    SELECT DISTINCT j.value, t.created FROM tokens t, json_each(t.memberof) j
    WHERE json_valid(t.memberof) AND t.revoked IS NULL AND typeof(j.value) = 'text';
INSERT OR IGNORE INTO org_members(org, user, role)
    SELECT DISTINCT j.value, t.user, 'member' FROM tokens t, json_each(t.memberof) j
    WHERE json_valid(t.memberof) AND t.revoked IS NULL AND typeof(j.value) = 'text';
"#;
