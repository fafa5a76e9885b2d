//! Moving a hub into a cluster ([`Hub::copy_catalog_to`], [`Hub::copy_files_to`], run by
//! `hub-server migrate`): every row of the catalog and every recorded flist file, copied
//! into another hub (a PostgreSQL catalog, the object store the replicas share).
//!
//! Resumable and idempotent: rows are copied a page at a time in the destination's own
//! write transactions, a row whose key the destination has is kept as it is, and a file the
//! destination holds is not sent again; so a copy that stopped half-way is finished by
//! running it again. The path index is not copied: the destination builds it from the files
//! (`PathIndex::backfill`, which every server start runs).

use serde::Serialize;

use crate::db::sql::{Connection, Engine, Value};
use crate::error::SqlContext;
use crate::files::hash_file;
use crate::{Hub, RepoError};

/// The tables copied, parents before children, each with the columns its rows are ordered
/// (and paged) by.
const TABLES: &[(&str, &str)] = &[
    ("repositories", "name"),
    ("blobs", "sha256"),
    ("entries", "repo, name"),
    ("tags", "repo, tag"),
    ("tag_links", "repo, tag, name"),
    ("orgs", "name"),
    ("org_members", "org, user"),
    ("users", "name"),
    ("invites", "hash"),
    ("tokens", "id"),
    ("token_usage", "id"),
    ("sessions", "hash"),
    ("identities", "provider, subject"),
    ("jobs", "id"),
    ("audit", "id"),
    ("mirror_state", "key"),
    ("own_backends", "backend"),
];

/// Tables whose `id` comes from a sequence on PostgreSQL (moved past the copied ids).
const SEQUENCES: &[&str] = &["tokens", "audit"];

/// Rows per page (one destination transaction each).
const PAGE: i64 = 500;

/// How one table was copied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TableCopy {
    /// The table.
    pub table: String,
    /// Rows in the source.
    pub rows: u64,
    /// Rows the destination did not have (inserted now).
    pub copied: u64,
}

/// How the flist files were copied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FilesCopy {
    /// Recorded files in the source.
    pub files: u64,
    /// Files sent now (the others were there already).
    pub copied: u64,
    /// Bytes sent now.
    pub bytes: u64,
}

/// The columns of `table`, in order.
fn columns(c: &Connection<'_>, table: &str) -> Result<Vec<String>, RepoError> {
    let sql = match c.engine() {
        Engine::Sqlite => "SELECT name FROM pragma_table_info(?1) ORDER BY cid".to_string(),
        Engine::Postgres => "SELECT column_name::TEXT FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = ?1 ORDER BY ordinal_position"
            .to_string(),
    };
    let mut st = c.prepare(&sql).ctx("list columns")?;
    st.query_map([table], |r| r.get::<_, String>(0))
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .ctx(&format!("list the columns of {table}"))
}

impl Hub {
    /// Copies every row of this hub's catalog into `dest`'s (see the module documentation);
    /// one report per table.
    pub fn copy_catalog_to(&self, dest: &Hub) -> Result<Vec<TableCopy>, RepoError> {
        let mut out = Vec::new();
        for (table, order) in TABLES {
            let cols = self.db.read(|c| columns(c, table))?;
            let theirs = dest.db.read(|c| columns(c, table))?;
            if cols.is_empty() {
                continue; // not in this catalog
            }
            if let Some(missing) = cols.iter().find(|c| !theirs.contains(c)) {
                return Err(RepoError::Invalid(format!(
                    "the destination catalog's {table} has no column {missing}: \
                     is it from another version of the hub?"
                )));
            }
            let list = cols.join(", ");
            let select = format!("SELECT {list} FROM {table} ORDER BY {order} LIMIT ?1 OFFSET ?2");
            let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
            let insert = format!(
                "INSERT OR IGNORE INTO {table}({list}) VALUES ({})",
                marks.join(", ")
            );
            let mut rep = TableCopy {
                table: table.to_string(),
                ..TableCopy::default()
            };
            let mut offset = 0i64;
            loop {
                let rows: Vec<Vec<Value>> = self.db.read(|c| {
                    let mut st = c.prepare(&select).ctx("read rows")?;
                    st.query_map([PAGE, offset], |r| {
                        (0..cols.len()).map(|i| r.get::<_, Value>(i)).collect()
                    })
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .ctx(&format!("read {table}"))
                })?;
                if rows.is_empty() {
                    break;
                }
                let n = rows.len();
                let copied = dest.db.write(|tx| {
                    let mut copied = 0u64;
                    for row in rows {
                        copied += tx
                            .execute(&insert, row)
                            .ctx(&format!("copy a row of {table}"))?
                            as u64;
                    }
                    Ok(copied)
                })?;
                rep.rows += n as u64;
                rep.copied += copied;
                offset += PAGE;
            }
            out.push(rep);
        }
        if dest.db.engine() == Engine::Postgres {
            dest.db.write(|tx| {
                for t in SEQUENCES {
                    tx.execute(
                        &format!(
                            "SELECT setval(pg_get_serial_sequence('{t}', 'id'), \
                             (SELECT COALESCE(MAX(id), 0) + 1 FROM {t}), false)"
                        ),
                        (),
                    )
                    .ctx(&format!("move the id sequence of {t}"))?;
                }
                Ok(())
            })?;
        }
        dest.db.bump_generation();
        Ok(out)
    }

    /// Copies every recorded flist file of this hub to `dest`: into the store its replicas
    /// share when it has one ([`Hub::share_files`]), else into its data directory. Each
    /// file is checked against its content address before it is sent.
    pub fn copy_files_to(&self, dest: &Hub) -> Result<FilesCopy, RepoError> {
        let shas = self.catalog().blob_shas()?;
        let mut rep = FilesCopy {
            files: shas.len() as u64,
            ..FilesCopy::default()
        };
        for sha in shas {
            let src = self
                .blobs
                .local(&sha)?
                .ok_or_else(|| RepoError::NotFound(format!("flist file {sha} (recorded)")))?;
            let present = match dest.blobs.shared_has(&sha)? {
                Some(held) => held,
                None => dest.blobs.path_of(&sha).is_file(),
            };
            if present {
                continue;
            }
            let (got, _, size) = hash_file(&src)?;
            if got != sha {
                return Err(RepoError::Invalid(format!(
                    "flist file {} has sha256 {got}: not copied (`hub-server check` reports it)",
                    src.display()
                )));
            }
            if dest.blobs.shared().is_some() {
                dest.blobs.put_shared(&sha, &src)?;
            } else {
                let f = std::fs::File::open(&src).map_err(|e| RepoError::io("open", &src, e))?;
                let staged = dest.blobs.stage_reader(f)?;
                dest.blobs.commit(&staged)?;
            }
            rep.copied += 1;
            rep.bytes += size;
        }
        Ok(rep)
    }
}
