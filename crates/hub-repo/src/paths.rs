//! The path index: every entry of every stored flist, by directory and by path, in the
//! catalog. It serves the web pages' contents tree one directory (page) at a time and the
//! search "which flists contain this path?" without reading any flist file.
//!
//! A flist file is indexed once (rows are keyed by its content address) when it is stored;
//! [`PathIndex::backfill`] indexes files stored before the index existed, and
//! [`PathIndex::ensure`] indexes one on demand. Indexing parses the flist, so at most one
//! runs at a time (bounded memory).

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::db::sql::{params, Connection, OptionalExtension};
use flist_format::{mode_string, Kind, Meta};

use crate::clock::now;
use crate::db::Db;
use crate::error::SqlContext;
use crate::files::Blobs;
use crate::RepoError;

/// The path index of a hub's stored flist files (cheap to clone).
#[derive(Clone, Debug)]
pub struct PathIndex {
    db: Arc<Db>,
    blobs: Arc<Blobs>,
}

/// One indexing at a time (each holds the catalog's write lock while it inserts).
static INDEXING: Mutex<()> = Mutex::new(());

/// One entry of a flist as the index knows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PathEntry {
    /// Base name (`""` for the root).
    pub name: String,
    /// Absolute path (`/` for the root).
    pub path: String,
    /// `directory`, `regular`, `symlink` or `special`.
    pub kind: String,
    /// `ls -l` style mode string, e.g. `-rwsr-xr-x`.
    pub mode: String,
    /// `user:group` (names when recorded, else numeric ids).
    pub owner: String,
    /// Recorded size in bytes.
    pub size: u64,
    /// Symlink target.
    pub target: Option<String>,
    /// Number of children (directories).
    pub children: u64,
}

/// One page of a directory.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DirPage {
    /// The directory itself.
    pub dir: PathEntry,
    /// Its children on this page: directories first, then by name.
    pub entries: Vec<PathEntry>,
    /// Number of children in all.
    pub total: u64,
    /// Offset of the first entry of the page.
    pub offset: u64,
}

/// Counts of an indexed flist.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PathStats {
    /// Regular files.
    pub regular: u64,
    /// Directories.
    pub directory: u64,
    /// Symbolic links.
    pub symlink: u64,
    /// Fifos, sockets, devices.
    pub special: u64,
    /// Sum of the regular files' sizes.
    pub fullsize: u64,
}

/// A path found inside a stored flist.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PathHit {
    /// Repository of the entry holding the flist.
    pub repo: String,
    /// Entry name.
    pub name: String,
    /// The matching path.
    pub path: String,
    /// Its kind.
    pub kind: String,
}

/// Smallest string sorting after every string that starts with `prefix`.
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

fn row_entry(r: &crate::db::sql::Row<'_>) -> crate::db::sql::Result<PathEntry> {
    Ok(PathEntry {
        name: r.get(0)?,
        path: r.get(1)?,
        kind: r.get(2)?,
        mode: r.get(3)?,
        owner: r.get(4)?,
        size: r.get::<_, i64>(5)? as u64,
        target: r.get(6)?,
        children: r.get::<_, i64>(7)? as u64,
    })
}

const ENTRY_COLS: &str = "name, path, kind, mode, owner, size, target, children";

fn blob_id(c: &Connection, sha256: &str) -> Result<Option<i64>, RepoError> {
    c.prepare_cached("SELECT id FROM path_blobs WHERE sha256 = ?1")
        .and_then(|mut s| s.query_row(params![sha256], |r| r.get(0)).optional())
        .ctx("read path index")
}

/// Inserts the index rows of a catalog as [`flist_format::reader::walk_catalog`] meets its
/// entries: one row per entry, written as it comes (memory holds one directory row, not
/// the tree). A directory's child count is known once its entries have been met (they
/// come together), and is then recorded.
struct Indexer<'t> {
    insert: crate::db::sql::CachedStatement<'t>,
    children: crate::db::sql::CachedStatement<'t>,
    blob: i64,
    next_node: i64,
    /// The directory whose entries are being met, and how many so far.
    current: Option<(i64, i64)>,
    stats: PathStats,
    entries: i64,
    /// The error that stopped the walk (the walker only carries format errors).
    error: Option<RepoError>,
}

/// A directory still to be listed: its node and absolute path.
type IndexDir = (i64, String);

fn owner_of(meta: &Meta) -> String {
    match (meta.uname.is_empty(), meta.gname.is_empty()) {
        (false, false) => format!("{}:{}", meta.uname, meta.gname),
        _ => format!("{}:{}", meta.uid, meta.gid),
    }
}

impl Indexer<'_> {
    fn fail(&mut self, e: RepoError) -> flist_format::FormatError {
        let msg = e.to_string();
        self.error = Some(e);
        flist_format::FormatError::Container {
            what: "path index".into(),
            reason: msg,
        }
    }

    fn row(
        &mut self,
        parent: i64,
        name: &str,
        path: &str,
        meta: &Meta,
        kind: &Kind,
    ) -> Result<i64, RepoError> {
        let node = self.next_node;
        self.next_node += 1;
        self.entries += 1;
        let target = match kind {
            Kind::Symlink { target } => Some(target.as_str()),
            _ => None,
        };
        self.insert
            .execute(params![
                self.blob,
                node,
                parent,
                if kind.is_dir() { 0 } else { 1 },
                name,
                path,
                kind.type_name(),
                mode_string(kind, meta.mode),
                owner_of(meta),
                kind.size() as i64,
                target,
                0i64,
            ])
            .ctx("index flist paths")?;
        Ok(node)
    }

    /// Records the child count of the directory whose entries were being met.
    fn close_current(&mut self) -> Result<(), RepoError> {
        if let Some((node, n)) = self.current.take() {
            if n > 0 {
                self.children
                    .execute(params![n, self.blob, node])
                    .ctx("index flist paths")?;
            }
        }
        Ok(())
    }
}

impl flist_format::reader::CatalogVisitor for Indexer<'_> {
    type Dir = IndexDir;

    fn root(
        &mut self,
        root: flist_format::reader::RootDir,
    ) -> Result<IndexDir, flist_format::FormatError> {
        let kind = Kind::Dir {
            children: Default::default(),
            size: root.size,
        };
        match self.row(-1, "", "/", &root.meta, &kind) {
            Ok(node) => Ok((node, String::new())),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn entry(
        &mut self,
        parent: &IndexDir,
        name: String,
        meta: Meta,
        kind: Kind,
    ) -> Result<Option<IndexDir>, flist_format::FormatError> {
        if self.current.map(|(n, _)| n) != Some(parent.0) {
            if let Err(e) = self.close_current() {
                return Err(self.fail(e));
            }
            self.current = Some((parent.0, 0));
        }
        if let Some((_, n)) = &mut self.current {
            *n += 1;
        }
        match &kind {
            Kind::Dir { .. } => self.stats.directory += 1,
            Kind::File { size, .. } => {
                self.stats.regular += 1;
                self.stats.fullsize += size;
            }
            Kind::Symlink { .. } => self.stats.symlink += 1,
            Kind::Special { .. } => self.stats.special += 1,
        }
        let path = format!("{}/{name}", parent.1);
        match self.row(parent.0, &name, &path, &meta, &kind) {
            Ok(node) => Ok(kind.is_dir().then_some((node, path))),
            Err(e) => Err(self.fail(e)),
        }
    }
}

/// Indexes the catalog `conn` (of stored file `sha256`) in transaction `tx`, unless it is
/// indexed already.
fn index_catalog(
    tx: &Connection,
    sha256: &str,
    conn: &rusqlite::Connection,
    what: &str,
    ts: i64,
) -> Result<(), RepoError> {
    if blob_id(tx, sha256)?.is_some() {
        return Ok(());
    }
    let blob: i64 = tx
        .prepare_cached(
            "INSERT INTO path_blobs(sha256, entries, regular, directory, symlink, special, fullsize, indexed) \
             VALUES (?1, 0, 0, 0, 0, 0, 0, ?2) RETURNING id",
        )
        .and_then(|mut st| st.query_row(params![sha256, ts], |r| r.get(0)))
        .ctx("index flist paths")?;
    let mut ix = Indexer {
        insert: tx
            .prepare_cached(
                "INSERT INTO path_entries(blob, node, parent, sort, name, path, kind, mode, owner, size, target, children) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )
            .ctx("index flist paths")?,
        children: tx
            .prepare_cached("UPDATE path_entries SET children = ?1 WHERE blob = ?2 AND node = ?3")
            .ctx("index flist paths")?,
        blob,
        next_node: 0,
        current: None,
        stats: PathStats {
            regular: 0,
            directory: 0,
            symlink: 0,
            special: 0,
            fullsize: 0,
        },
        entries: 0,
        error: None,
    };
    let walked = flist_format::reader::walk_catalog(conn, what, &mut ix);
    if let Some(e) = ix.error.take() {
        return Err(e);
    }
    walked.map_err(|e| RepoError::Format {
        path: what.into(),
        message: e.to_string(),
    })?;
    ix.close_current()?;
    let s = &ix.stats;
    tx.prepare_cached(
        "UPDATE path_blobs SET entries = ?2, regular = ?3, directory = ?4, symlink = ?5, \
         special = ?6, fullsize = ?7 WHERE id = ?1",
    )
    .and_then(|mut st| {
        st.execute(params![
            blob,
            ix.entries,
            s.regular as i64,
            s.directory as i64,
            s.symlink as i64,
            s.special as i64,
            s.fullsize as i64
        ])
    })
    .ctx("index flist paths")?;
    Ok(())
}

impl PathIndex {
    pub(crate) fn new(db: Arc<Db>, blobs: Arc<Blobs>) -> Self {
        PathIndex { db, blobs }
    }

    /// Indexes a just-stored file; a failure is logged and left to [`PathIndex::backfill`] /
    /// [`PathIndex::ensure`] (the entry is stored).
    pub(crate) fn index_stored(&self, sha256: &str) {
        if let Err(e) = self.ensure(sha256) {
            tracing::warn!("path index: {sha256}: {e}");
        }
    }

    /// Indexes the flist file at `path` as stored file `sha256` (no-op when already
    /// indexed), reading it one directory row at a time.
    pub fn index_file(&self, sha256: &str, path: &Path) -> Result<(), RepoError> {
        let what = path.display().to_string();
        let fmt = |e: flist_format::FormatError| RepoError::Format {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let f = std::fs::File::open(path).map_err(|e| RepoError::io("open", path, e))?;
        let opts = flist_format::ReadOptions {
            temp_dir: Some(self.blobs.tmp_dir().to_path_buf()),
            ..Default::default()
        };
        let db = flist_format::reader::extract_database_with(f, &what, &opts).map_err(fmt)?;
        let conn = flist_format::reader::open_database(db.path()).map_err(fmt)?;
        let ts = now();
        self.db
            .write(|tx| index_catalog(tx, sha256, &conn, &what, ts))
    }

    /// True when stored file `sha256` is in the path index.
    pub fn indexed(&self, sha256: &str) -> Result<bool, RepoError> {
        self.db.read(|c| blob_id(c, sha256)).map(|id| id.is_some())
    }

    /// Indexes stored file `sha256` unless it already is (one at a time).
    pub fn ensure(&self, sha256: &str) -> Result<(), RepoError> {
        if self.indexed(sha256)? {
            return Ok(());
        }
        let _one = INDEXING.lock().unwrap_or_else(|p| p.into_inner());
        if self.indexed(sha256)? {
            return Ok(());
        }
        self.index_file(sha256, &self.blobs.fetched(sha256)?)
    }

    /// Indexes every stored file referenced by an entry and not indexed yet; returns how many
    /// were indexed. Files that cannot be read are skipped (`check` reports them).
    pub fn backfill(&self) -> Result<usize, RepoError> {
        let missing: Vec<String> = self.db.read(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT DISTINCT sha256 FROM entries WHERE kind = 'regular' \
                     AND sha256 NOT IN (SELECT sha256 FROM path_blobs)",
                )
                .ctx("find unindexed flists")?;
            let v = st
                .query_map((), |r| r.get(0))
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .ctx("find unindexed flists")?;
            Ok(v)
        })?;
        let mut n = 0;
        for sha in missing {
            match self.ensure(&sha) {
                Ok(()) => n += 1,
                Err(e) => tracing::warn!("path index: {sha}: {e}"),
            }
        }
        Ok(n)
    }

    /// Counts of indexed file `sha256`.
    pub fn stats(&self, sha256: &str) -> Result<Option<PathStats>, RepoError> {
        self.db.read(|c| {
            c.prepare_cached(
                "SELECT regular, directory, symlink, special, fullsize FROM path_blobs WHERE sha256 = ?1",
            )
            .and_then(|mut s| {
                s.query_row(params![sha256], |r| {
                    Ok(PathStats {
                        regular: r.get::<_, i64>(0)? as u64,
                        directory: r.get::<_, i64>(1)? as u64,
                        symlink: r.get::<_, i64>(2)? as u64,
                        special: r.get::<_, i64>(3)? as u64,
                        fullsize: r.get::<_, i64>(4)? as u64,
                    })
                })
                .optional()
            })
            .ctx("read path index")
        })
    }

    /// One page of directory `dir` (absolute path) of stored file `sha256`: directories
    /// first, then by name. `None` when the file is not indexed or has no such directory.
    pub fn dir_page(
        &self,
        sha256: &str,
        dir: &str,
        offset: u64,
        limit: u64,
    ) -> Result<Option<DirPage>, RepoError> {
        self.db.read(|c| {
            let Some(blob) = blob_id(c, sha256)? else {
                return Ok(None);
            };
            let found = c
                .prepare_cached(&format!(
                    "SELECT node, {ENTRY_COLS} FROM path_entries WHERE path = ?1 AND blob = ?2"
                ))
                .and_then(|mut s| {
                    s.query_row(params![dir, blob], |r| {
                        Ok((r.get::<_, i64>(0)?, {
                            PathEntry {
                                name: r.get(1)?,
                                path: r.get(2)?,
                                kind: r.get(3)?,
                                mode: r.get(4)?,
                                owner: r.get(5)?,
                                size: r.get::<_, i64>(6)? as u64,
                                target: r.get(7)?,
                                children: r.get::<_, i64>(8)? as u64,
                            }
                        }))
                    })
                    .optional()
                })
                .ctx("read directory")?;
            let Some((node, entry)) = found else {
                return Ok(None);
            };
            if entry.kind != "directory" {
                return Ok(None);
            }
            let entries = c
                .prepare_cached(&format!(
                    "SELECT {ENTRY_COLS} FROM path_entries WHERE blob = ?1 AND parent = ?2 \
                     ORDER BY sort, name LIMIT ?3 OFFSET ?4"
                ))
                .and_then(|mut s| {
                    s.query_map(params![blob, node, limit as i64, offset as i64], row_entry)?
                        .collect::<Result<Vec<_>, _>>()
                })
                .ctx("read directory")?;
            Ok(Some(DirPage {
                total: entry.children,
                dir: entry,
                entries,
                offset,
            }))
        })
    }

    /// Paths inside stored flists matching `query`, with the regular entries holding them:
    /// a query starting with `/` matches paths by prefix, any other matches base names by
    /// prefix. Case-sensitive (paths are); ordered by path.
    pub fn search(&self, query: &str, offset: u64, limit: u64) -> Result<Vec<PathHit>, RepoError> {
        self.search_visible(query, offset, limit, None)
    }

    /// [`PathIndex::search`] without the flists of private repositories, except those of
    /// `readable` (the reader's own and its organisations'); `None`: no repository left out.
    pub fn search_visible(
        &self,
        query: &str,
        offset: u64,
        limit: u64,
        readable: Option<&[String]>,
    ) -> Result<Vec<PathHit>, RepoError> {
        if query.is_empty() {
            return Ok(Vec::new());
        }
        let readable = readable.map(|r| serde_json::to_string(r).unwrap_or_else(|_| "[]".into()));
        let hide = if readable.is_some() {
            "AND (e.repo IN (SELECT value FROM json_each(?5)) OR NOT EXISTS \
             (SELECT 1 FROM repositories r WHERE r.name = e.repo AND r.private != 0))"
        } else {
            "AND ?5 IS NULL"
        };
        let column = if query.starts_with('/') {
            "path"
        } else {
            "name"
        };
        let sql = format!(
            "SELECT e.repo, e.name, p.path, p.kind FROM path_entries p \
             JOIN path_blobs b ON b.id = p.blob \
             JOIN entries e ON e.sha256 = b.sha256 AND e.kind = 'regular' \
             WHERE p.{column} >= ?1 AND p.{column} < ?2 AND p.node != 0 {hide} \
             ORDER BY p.{column}, p.blob, e.repo, e.name LIMIT ?3 OFFSET ?4"
        );
        self.db.read(|c| {
            let mut st = c.prepare_cached(&sql).ctx("search paths")?;
            let v = st
                .query_map(
                    params![
                        query,
                        prefix_end(query),
                        limit as i64,
                        offset as i64,
                        readable
                    ],
                    |r| {
                        Ok(PathHit {
                            repo: r.get(0)?,
                            name: r.get(1)?,
                            path: r.get(2)?,
                            kind: r.get(3)?,
                        })
                    },
                )
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .ctx("search paths")?;
            Ok(v)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use flist_format::Tree;

    #[test]
    fn directories_page_and_paths_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let hub = crate::Hub::open(dir.path()).unwrap();
        let hub = hub.paths();
        let mut tree = Tree::new(Meta::root(0o755, 1));
        let bin = tree.mkdir_p("usr/bin", &Meta::root(0o755, 1)).unwrap();
        for i in 0..30 {
            tree.insert(
                bin,
                &format!("tool{i:02}"),
                Meta::root(0o755, 1),
                Kind::File {
                    size: i,
                    blocks: vec![],
                },
            )
            .unwrap();
        }
        tree.insert(
            bin,
            "sh",
            Meta::root(0o777, 1),
            Kind::Symlink {
                target: "busybox".into(),
            },
        )
        .unwrap();
        tree.mkdir_p("usr/bin/zz-subdir", &Meta::root(0o755, 1))
            .unwrap();
        let file = dir.path().join("t.flist");
        flist_format::Flist {
            tree,
            metadata: Default::default(),
        }
        .write(&file)
        .unwrap();
        hub.index_file("abc", &file).unwrap();
        // a second call is a no-op
        hub.index_file("abc", &file).unwrap();
        let st = hub.stats("abc").unwrap().unwrap();
        assert_eq!((st.regular, st.directory, st.symlink), (30, 3, 1));
        let p = hub.dir_page("abc", "/usr/bin", 0, 10).unwrap().unwrap();
        assert_eq!(p.total, 32);
        assert_eq!(p.entries.len(), 10);
        assert_eq!(p.entries[0].name, "zz-subdir", "directories come first");
        assert_eq!(p.entries[0].mode, "drwxr-xr-x");
        let last = hub.dir_page("abc", "/usr/bin", 30, 10).unwrap().unwrap();
        assert_eq!(last.entries.len(), 2);
        let sh = hub.dir_page("abc", "/usr/bin", 0, 100).unwrap().unwrap();
        let sh = sh.entries.iter().find(|e| e.name == "sh").unwrap();
        assert_eq!(sh.target.as_deref(), Some("busybox"));
        assert!(hub.dir_page("abc", "/usr/bin/sh", 0, 10).unwrap().is_none());
        assert!(hub.dir_page("abc", "/nope", 0, 10).unwrap().is_none());
        assert!(hub.dir_page("other", "/", 0, 10).unwrap().is_none());
        // not referenced by any entry: search finds nothing
        assert!(hub.search("tool0", 0, 10).unwrap().is_empty());
    }
}
