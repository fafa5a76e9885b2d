//! Reading the audit log (records are appended by every write, see `sql::audit`).

use crate::db::sql::params;
use serde_json::Value;

use super::Catalog;
use crate::error::SqlContext;
use crate::model::*;
use crate::RepoError;

impl Catalog {
    /// The audit log from record `after` (exclusive), oldest first, at most `limit` records.
    pub fn audit_log(&self, after: i64, limit: usize) -> Result<Vec<AuditRecord>, RepoError> {
        self.db.read(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT id, ts, actor, acting_as, action, repo, name, detail FROM audit WHERE id > ?1 ORDER BY id LIMIT ?2",
                )
                .ctx("read audit log")?;
            let v = st
                .query_map(params![after, limit as i64], |r| {
                    let detail: String = r.get(7)?;
                    Ok(AuditRecord {
                        id: r.get(0)?,
                        ts: r.get(1)?,
                        actor: r.get(2)?,
                        acting_as: r.get(3)?,
                        action: r.get(4)?,
                        repo: r.get(5)?,
                        name: r.get(6)?,
                        detail: serde_json::from_str(&detail).unwrap_or(Value::Null),
                    })
                })
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .ctx("read audit log")?;
            Ok(v)
        })
    }
}
