//! Rewriting metadata keys of an existing `.flist` without touching anything else: the
//! database is copied out, its `metadata` rows changed in place (the tree rows keep their
//! exact bytes) and packed again. A hub mirror uses it to stamp the flists it serves with
//! its own chunk backend.

use std::fs::File;
use std::path::Path;

use rusqlite::{params, Connection};

use crate::error::FormatError;
use crate::reader::extract_database;
use crate::writer::pack_database;

/// Writes `src` with the metadata `changes` applied to `dest` (atomically): `(key,
/// Some(value))` sets a key, `(key, None)` removes it. `what` names the source in errors.
pub fn restamp(
    src: &Path,
    dest: &Path,
    what: &str,
    changes: &[(&str, Option<&str>)],
) -> Result<(), FormatError> {
    let f = File::open(src).map_err(|e| FormatError::io(what, e))?;
    let db = extract_database(f, what)?;
    {
        let conn = Connection::open(db.path()).map_err(|e| FormatError::sqlite(what, e))?;
        let err = |e| FormatError::sqlite(format!("{what}: rewriting metadata"), e);
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS metadata (key VARCHAR(64) PRIMARY KEY, value TEXT);",
        )
        .map_err(err)?;
        for (key, value) in changes {
            conn.execute("DELETE FROM metadata WHERE key = ?1", params![key])
                .map_err(err)?;
            if let Some(v) = value {
                conn.execute(
                    "INSERT INTO metadata(key, value) VALUES (?1, ?2)",
                    params![key, v],
                )
                .map_err(err)?;
            }
        }
        conn.close()
            .map_err(|(_, e)| FormatError::sqlite(format!("{what}: closing"), e))?;
    }
    pack_database(db.path(), dest)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{Flist, Metadata, Tree};

    #[test]
    fn restamp_changes_only_the_named_keys() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.flist");
        let mut md = Metadata::new();
        md.set("backend", r#"{"url": "http://a/chunks"}"#);
        md.set("entrypoint", r#"["/bin/sh"]"#);
        let mut tree = Tree::new(crate::Meta::root(0o755, 1));
        tree.insert(
            Tree::ROOT,
            "hosts",
            crate::Meta::root(0o644, 1),
            crate::Kind::File {
                size: 0,
                blocks: vec![],
            },
        )
        .unwrap();
        crate::writer::write_flist(&src, &tree, &md).unwrap();
        let dest = dir.path().join("b.flist");
        restamp(
            &src,
            &dest,
            "a.flist",
            &[
                ("backend", Some(r#"{"url": "http://b/chunks"}"#)),
                ("backend-mirrors", Some(r#"[{"url": "http://a/chunks"}]"#)),
                ("entrypoint", None),
            ],
        )
        .unwrap();
        let a = Flist::open(&src).unwrap();
        let b = Flist::open(&dest).unwrap();
        assert!(crate::diff::diff(&a.tree, &b.tree, &Default::default()).is_empty());
        assert_eq!(
            b.metadata.get("backend"),
            Some(r#"{"url": "http://b/chunks"}"#)
        );
        assert_eq!(
            b.metadata.get("backend-mirrors"),
            Some(r#"[{"url": "http://a/chunks"}]"#)
        );
        assert_eq!(b.metadata.get("entrypoint"), None);
        assert!(restamp(&dir.path().join("none"), &dest, "none", &[]).is_err());
    }
}
