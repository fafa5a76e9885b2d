//! Integrity checking of the catalog and the stored flist files.

use std::collections::BTreeMap;

use crate::error::SqlContext;
use crate::model::*;
use crate::{Hub, RepoError};

impl Hub {
    /// Names a local write would refuse (repositories, entries, link targets, tags), one
    /// line each: a mirror of an unchecked primary could have taken some.
    pub fn invalid_names(&self) -> Result<Vec<String>, RepoError> {
        let repos: Vec<String> = self.db.read(|c| {
            c.prepare("SELECT name FROM repositories ORDER BY name")
                .and_then(|mut s| {
                    s.query_map((), |r| r.get::<_, String>(0))?
                        .collect::<Result<Vec<_>, _>>()
                })
                .ctx("list repositories")
        })?;
        let mut out = Vec::new();
        for repo in repos {
            if let Err(e) = crate::names::validate_user(&repo) {
                out.push(format!("repository {repo:?}: {e}"));
            }
            if crate::names::validate_repo(&repo).is_err() {
                continue;
            }
            if let Some(mut snap) = self.replica().repo_snapshot(&repo)? {
                out.extend(snap.sanitize_items());
            }
        }
        Ok(out)
    }

    /// `PRAGMA integrity_check` and `foreign_key_check`, then every regular entry's file
    /// exists and hashes to its address (each distinct file hashed once).
    pub fn integrity_check(&self) -> Result<IntegrityReport, RepoError> {
        let mut rep = IntegrityReport::default();
        let (sqlite, rows) = self.db.with_writer(|c| {
            let mut msgs = Vec::new();
            // PostgreSQL enforces its constraints itself and has no such pragmas.
            if c.engine() == crate::db::Engine::Sqlite {
                let mut st = c.prepare("PRAGMA integrity_check").ctx("integrity_check")?;
                let v = st
                    .query_map((), |r| r.get::<_, String>(0))
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .ctx("integrity_check")?;
                msgs.extend(v.into_iter().filter(|m| m != "ok"));
                let mut st = c.prepare("PRAGMA foreign_key_check").ctx("foreign_key_check")?;
                let v = st
                    .query_map((), |r| Ok(format!("foreign key violation in {}", r.get::<_, String>(0)?)))
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .ctx("foreign_key_check")?;
                msgs.extend(v);
            }
            let mut st = c
                .prepare(
                    "SELECT e.repo, e.name, e.sha256, b.md5, b.size FROM entries e \
                     LEFT JOIN blobs b ON b.sha256 = e.sha256 WHERE e.kind = 'regular' ORDER BY e.sha256",
                )
                .ctx("list regular entries")?;
            let rows = st
                .query_map((), |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                    ))
                })
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .ctx("list regular entries")?;
            Ok((msgs, rows))
        })?;
        rep.sqlite = sqlite;
        rep.problems.extend(self.invalid_names()?);
        let mut verdicts: BTreeMap<String, Option<String>> = BTreeMap::new();
        for (repo, name, sha, md5, size) in rows {
            rep.entries_checked += 1;
            let verdict = verdicts.entry(sha.clone()).or_insert_with(|| {
                rep.blobs_checked += 1;
                let path = match self.blobs.fetched(&sha) {
                    Ok(p) => p,
                    Err(e) => return Some(format!("flist file {sha}: {e}")),
                };
                match crate::files::hash_file(&path) {
                    Err(e) => Some(format!("file {}: {e}", path.display())),
                    Ok((s, m, n)) => {
                        if s != sha {
                            Some(format!("file {} has sha256 {s}", path.display()))
                        } else if Some(&m) != md5.as_ref() || Some(n as i64) != size {
                            Some(format!(
                                "file {} md5/size differ from the catalog",
                                path.display()
                            ))
                        } else {
                            None
                        }
                    }
                }
            });
            if let Some(v) = verdict {
                rep.problems.push(format!("{repo}/{name}: {v}"));
            }
        }
        Ok(rep)
    }
}
