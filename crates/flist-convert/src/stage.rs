//! The tree being converted, staged on disk instead of in memory: one row per entry in a
//! temporary SQLite database (parent id, name, kind, metadata, content reference), indexed
//! by (parent, name). The builder places, replaces and removes entries here as archive
//! members, directory entries or image layers arrive (in any order); once everything is
//! placed, each directory is read back with its children in the reference order
//! (directories first, then by name) and written out as one catalog row, so memory holds at
//! most one directory's entries and a bounded cache, whatever the number of entries.
//!
//! The database lives in a private temporary directory, removed when the stage is dropped;
//! nothing in it is durable (journal off, no syncs): a crash loses only the conversion.

use std::collections::HashMap;
use std::path::PathBuf;

use flist_format::{Block, Kind, Meta, SpecialKind};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, ToSql};

use crate::error::{ConvertError, Result};

/// Id of a staged entry.
pub(crate) type EntryId = i64;

/// Content reference of a regular file: the first slot of its chunks in the pipeline's
/// results (see `builder::ChunkResults`).
pub(crate) type FileId = u64;

const KIND_DIR: i64 = 0;
const KIND_FILE: i64 = 1;
const KIND_SYMLINK: i64 = 2;
const KIND_SPECIAL: i64 = 3;

/// Directory paths remembered (path → id) before the cache is emptied.
const CACHE_MAX: usize = 4096;

const SCHEMA: &str = "
CREATE TABLE node (
  id INTEGER PRIMARY KEY,
  parent INTEGER NOT NULL,
  name TEXT NOT NULL,
  kind INTEGER NOT NULL,
  mode INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL,
  uname TEXT NOT NULL, gname TEXT NOT NULL,
  mtime INTEGER NOT NULL, ctime INTEGER NOT NULL,
  size INTEGER NOT NULL,
  target TEXT,
  special INTEGER, major INTEGER, minor INTEGER,
  file INTEGER,
  blocks BLOB,
  implicit INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX node_parent_name ON node (parent, name);
";

const COLUMNS: &str =
    "kind, mode, uid, gid, uname, gname, mtime, ctime, size, target, special, major, minor, file, blocks";

/// A staged entry as read back: metadata, kind (a directory without children; a file with
/// the blocks recorded in the stage, if any) and content reference.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub meta: Meta,
    pub kind: Kind,
    pub file: Option<FileId>,
    /// A directory made only because something was placed beneath it (no member or
    /// entry described it).
    pub implicit: bool,
}

/// The kind code of a staged entry (directory or not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    Dir,
    Symlink,
    Other,
}

fn special_code(k: SpecialKind) -> i64 {
    match k {
        SpecialKind::Socket => 0,
        SpecialKind::Block => 1,
        SpecialKind::Chardev => 2,
        SpecialKind::Fifo => 3,
        SpecialKind::Unknown => 4,
    }
}

fn special_of(c: i64) -> SpecialKind {
    match c {
        0 => SpecialKind::Socket,
        1 => SpecialKind::Block,
        2 => SpecialKind::Chardev,
        3 => SpecialKind::Fifo,
        _ => SpecialKind::Unknown,
    }
}

fn encode_blocks(blocks: &[Block]) -> Option<Vec<u8>> {
    if blocks.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(blocks.len() * 33);
    for b in blocks {
        b.push_tagged(&mut out);
    }
    Some(out)
}

fn decode_blocks(mut raw: &[u8]) -> Vec<Block> {
    let mut out = Vec::with_capacity(raw.len() / 33);
    while let Some(b) = Block::read_tagged(&mut raw) {
        out.push(b);
    }
    out
}

fn shape_of(kind: i64) -> Shape {
    match kind {
        KIND_DIR => Shape::Dir,
        KIND_SYMLINK => Shape::Symlink,
        _ => Shape::Other,
    }
}

/// Reads a row from the columns of [`COLUMNS`] then `implicit`, starting at `at`.
fn row_from(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Row> {
    let kind: i64 = r.get(at)?;
    let meta = Meta {
        mode: r.get(at + 1)?,
        uid: r.get(at + 2)?,
        gid: r.get(at + 3)?,
        uname: r.get(at + 4)?,
        gname: r.get(at + 5)?,
        mtime: r.get(at + 6)?,
        ctime: r.get(at + 7)?,
    };
    let size: u64 = r.get::<_, i64>(at + 8)? as u64;
    let kind = match kind {
        KIND_DIR => Kind::Dir {
            children: Default::default(),
            size,
        },
        KIND_FILE => Kind::File {
            size,
            blocks: r
                .get::<_, Option<Vec<u8>>>(at + 14)?
                .map(|b| decode_blocks(&b))
                .unwrap_or_default(),
        },
        KIND_SYMLINK => Kind::Symlink {
            target: r.get::<_, Option<String>>(at + 9)?.unwrap_or_default(),
        },
        _ => {
            let major: Option<u32> = r.get(at + 11)?;
            let minor: Option<u32> = r.get(at + 12)?;
            Kind::Special {
                kind: special_of(r.get::<_, Option<i64>>(at + 10)?.unwrap_or(4)),
                rdev: major.zip(minor),
            }
        }
    };
    let file: Option<i64> = r.get(at + 13)?;
    Ok(Row {
        meta,
        kind,
        file: file.map(|f| f as u64),
        implicit: r.get::<_, i64>(at + 15)? != 0,
    })
}

/// Column values of an entry, in [`COLUMNS`] order after `kind`.
struct Values<'a> {
    kind: i64,
    size: i64,
    target: Option<&'a str>,
    special: Option<i64>,
    major: Option<u32>,
    minor: Option<u32>,
    blocks: Option<Vec<u8>>,
}

impl Values<'_> {
    /// The columns `kind` to `blocks` of a `node` row, in table order (after the row's
    /// key: `parent, name` for an insert, `id` for an update).
    fn columns<'v>(&'v self, meta: &'v Meta, file: &'v Option<i64>) -> [&'v dyn ToSql; 15] {
        [
            &self.kind,
            &meta.mode,
            &meta.uid,
            &meta.gid,
            &meta.uname,
            &meta.gname,
            &meta.mtime,
            &meta.ctime,
            &self.size,
            &self.target,
            &self.special,
            &self.major,
            &self.minor,
            file,
            &self.blocks,
        ]
    }
}

fn values(kind: &Kind) -> Values<'_> {
    let size = kind.size() as i64;
    match kind {
        Kind::Dir { .. } => Values {
            kind: KIND_DIR,
            size,
            target: None,
            special: None,
            major: None,
            minor: None,
            blocks: None,
        },
        Kind::File { blocks, .. } => Values {
            kind: KIND_FILE,
            size,
            target: None,
            special: None,
            major: None,
            minor: None,
            blocks: encode_blocks(blocks),
        },
        Kind::Symlink { target } => Values {
            kind: KIND_SYMLINK,
            size,
            target: Some(target),
            special: None,
            major: None,
            minor: None,
            blocks: None,
        },
        Kind::Special { kind, rdev } => Values {
            kind: KIND_SPECIAL,
            size,
            target: None,
            special: Some(special_code(*kind)),
            major: rdev.map(|r| r.0),
            minor: rdev.map(|r| r.1),
            blocks: None,
        },
    }
}

/// Counts over the staged tree (the root not counted).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counts {
    pub regular: u64,
    pub symlink: u64,
    pub directory: u64,
    pub special: u64,
    pub fullsize: u64,
}

/// The staged tree.
pub(crate) struct Stage {
    conn: Connection,
    path: PathBuf,
    /// Directory paths (`a/b`) to their ids; emptied when full and whenever a directory
    /// may have been removed.
    cache: HashMap<String, EntryId>,
    _dir: tempfile::TempDir,
}

impl Stage {
    /// The root's id.
    pub const ROOT: EntryId = 1;

    /// An empty stage whose root directory has `meta`.
    pub(crate) fn new(meta: &Meta) -> Result<Stage> {
        let dir = tempfile::Builder::new()
            .prefix("flist-stage-")
            .tempdir()
            .map_err(|e| ConvertError::Io {
                path: std::env::temp_dir(),
                source: e,
            })?;
        let path = dir.path().join("stage.sqlite3");
        let conn = Connection::open(&path).map_err(|e| sqlite_err(&path, "opening", e))?;
        let mut stage = Stage {
            conn,
            path,
            cache: HashMap::new(),
            _dir: dir,
        };
        stage
            .conn
            .execute_batch(
                "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; \
                 PRAGMA temp_store = FILE; PRAGMA cache_size = -4096; \
                 PRAGMA locking_mode = EXCLUSIVE;",
            )
            .map_err(|e| stage.err("pragmas", e))?;
        stage
            .conn
            .execute_batch(SCHEMA)
            .map_err(|e| stage.err("creating tables", e))?;
        stage
            .conn
            .execute_batch("BEGIN")
            .map_err(|e| stage.err("starting a transaction", e))?;
        // The first row of an empty table gets rowid 1, `ROOT`.
        let root = Kind::Dir {
            children: Default::default(),
            size: flist_format::tree::DEFAULT_DIR_SIZE,
        };
        let id = stage.insert(0, "", meta, &root, None)?;
        debug_assert_eq!(id, Self::ROOT);
        Ok(stage)
    }

    fn err(&self, op: &str, e: rusqlite::Error) -> ConvertError {
        sqlite_err(&self.path, op, e)
    }

    /// The child `name` of directory `parent`: its id and shape.
    pub(crate) fn child(&self, parent: EntryId, name: &str) -> Result<Option<(EntryId, Shape)>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT id, kind FROM node WHERE parent = ?1 AND name = ?2")
            .map_err(|e| self.err("preparing a lookup", e))?;
        st.query_row(params![parent, name], |r| {
            Ok((r.get::<_, i64>(0)?, shape_of(r.get(1)?)))
        })
        .optional()
        .map_err(|e| self.err("looking up an entry", e))
    }

    /// The entry `id`.
    pub(crate) fn row(&self, id: EntryId) -> Result<Row> {
        let mut st = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS}, implicit FROM node WHERE id = ?1"
            ))
            .map_err(|e| self.err("preparing a read", e))?;
        st.query_row(params![id], |r| row_from(r, 0))
            .map_err(|e| self.err("reading an entry", e))
    }

    /// Adds entry `name` to directory `parent` (which must not hold `name`).
    pub(crate) fn insert(
        &mut self,
        parent: EntryId,
        name: &str,
        meta: &Meta,
        kind: &Kind,
        file: Option<FileId>,
    ) -> Result<EntryId> {
        let v = values(kind);
        let mut st = self
            .conn
            .prepare_cached(
                "INSERT INTO node (parent, name, kind, mode, uid, gid, uname, gname, mtime, ctime, \
                 size, target, special, major, minor, file, blocks) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
            )
            .map_err(|e| sqlite_err(&self.path, "preparing an insert", e))?;
        let file = file.map(|f| f as i64);
        let head: [&dyn ToSql; 2] = [&parent, &name];
        st.execute(params_from_iter(
            head.into_iter().chain(v.columns(meta, &file)),
        ))
        .map_err(|e| sqlite_err(&self.path, "inserting an entry", e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Replaces entry `id` by `meta` and `kind` (keeping its place in its directory): a
    /// directory's children are removed unless `kind` is a directory too.
    pub(crate) fn replace(
        &mut self,
        id: EntryId,
        meta: &Meta,
        kind: &Kind,
        file: Option<FileId>,
    ) -> Result<()> {
        if !kind.is_dir() {
            self.clear_children(id)?;
            // `id` may have been a cached directory.
            self.cache.clear();
        }
        let v = values(kind);
        let mut st = self
            .conn
            .prepare_cached(
                "UPDATE node SET kind = ?2, mode = ?3, uid = ?4, gid = ?5, uname = ?6, gname = ?7, \
                 mtime = ?8, ctime = ?9, size = ?10, target = ?11, special = ?12, major = ?13, \
                 minor = ?14, file = ?15, blocks = ?16, implicit = 0 WHERE id = ?1",
            )
            .map_err(|e| sqlite_err(&self.path, "preparing an update", e))?;
        let file = file.map(|f| f as i64);
        let head: [&dyn ToSql; 1] = [&id];
        st.execute(params_from_iter(
            head.into_iter().chain(v.columns(meta, &file)),
        ))
        .map_err(|e| sqlite_err(&self.path, "updating an entry", e))?;
        Ok(())
    }

    /// Sets the metadata and recorded size of directory `id` (children kept).
    pub(crate) fn set_dir_meta(&mut self, id: EntryId, meta: &Meta, size: u64) -> Result<()> {
        let mut st = self
            .conn
            .prepare_cached(
                "UPDATE node SET mode = ?2, uid = ?3, gid = ?4, uname = ?5, gname = ?6, \
                 mtime = ?7, ctime = ?8, size = ?9, implicit = 0 WHERE id = ?1",
            )
            .map_err(|e| sqlite_err(&self.path, "preparing an update", e))?;
        st.execute(params![
            id,
            meta.mode,
            meta.uid,
            meta.gid,
            meta.uname,
            meta.gname,
            meta.mtime,
            meta.ctime,
            size as i64
        ])
        .map_err(|e| sqlite_err(&self.path, "updating a directory", e))?;
        Ok(())
    }

    /// Sets entry `name` of directory `parent` as extracting it would: a directory over a
    /// directory takes the new metadata and keeps the children; anything else replaces
    /// the old entry (and its subtree) in place; a new name is added.
    pub(crate) fn set(
        &mut self,
        parent: EntryId,
        name: &str,
        meta: &Meta,
        kind: &Kind,
        file: Option<FileId>,
    ) -> Result<EntryId> {
        match self.child(parent, name)? {
            Some((id, Shape::Dir)) if kind.is_dir() => {
                self.set_dir_meta(id, meta, kind.size())?;
                Ok(id)
            }
            Some((id, _)) => {
                self.replace(id, meta, kind, file)?;
                Ok(id)
            }
            None => self.insert(parent, name, meta, kind, file),
        }
    }

    /// The directory at `comps`, made (root:root 0755 at `time`, implicit) where missing
    /// and replacing non-directories on the way, as extracting a member beneath them
    /// would.
    pub(crate) fn ensure_dir<S: AsRef<str>>(&mut self, comps: &[S], time: u32) -> Result<EntryId> {
        let path = join(comps);
        if let Some(id) = self.cached_dir(&path) {
            return Ok(id);
        }
        let mut cur = Self::ROOT;
        for c in comps {
            let c = c.as_ref();
            cur = match self.child(cur, c)? {
                Some((id, Shape::Dir)) => id,
                Some((id, _)) => {
                    self.replace(id, &Meta::root(0o755, time), &Kind::empty_dir(), None)?;
                    self.mark_implicit(id)?;
                    id
                }
                None => {
                    let id =
                        self.insert(cur, c, &Meta::root(0o755, time), &Kind::empty_dir(), None)?;
                    self.mark_implicit(id)?;
                    id
                }
            };
        }
        self.cache_dir(&path, cur);
        Ok(cur)
    }

    /// Adds every entry of `tree` below the root (the root's own metadata is set too).
    pub(crate) fn import_tree(&mut self, tree: &flist_format::Tree) -> Result<()> {
        use flist_format::Tree;
        let root = tree.node(Tree::ROOT);
        self.set_dir_meta(Self::ROOT, &root.meta, root.kind.size())?;
        let mut stack = vec![(Tree::ROOT, Self::ROOT)];
        while let Some((node, id)) = stack.pop() {
            for (name, child) in tree.children(node) {
                let n = tree.node(child);
                let kind = match &n.kind {
                    Kind::Dir { size, .. } => Kind::Dir {
                        children: Default::default(),
                        size: *size,
                    },
                    k => k.clone(),
                };
                let cid = self.insert(id, name, &n.meta, &kind, None)?;
                if kind.is_dir() {
                    stack.push((child, cid));
                }
            }
        }
        Ok(())
    }

    /// Marks directory `id` as made only for what lies beneath it.
    pub(crate) fn mark_implicit(&mut self, id: EntryId) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE node SET implicit = 1 WHERE id = ?1")
            .and_then(|mut st| st.execute(params![id]))
            .map_err(|e| self.err("marking a directory", e))?;
        Ok(())
    }

    /// Removes entry `id` and everything below it (not the root).
    pub(crate) fn remove(&mut self, id: EntryId) -> Result<()> {
        if id == Self::ROOT {
            return self.clear_children(id);
        }
        self.clear_children(id)?;
        self.conn
            .prepare_cached("DELETE FROM node WHERE id = ?1")
            .and_then(|mut st| st.execute(params![id]))
            .map_err(|e| self.err("removing an entry", e))?;
        self.cache.clear();
        Ok(())
    }

    /// Removes everything below `id` (nothing for a non-directory).
    pub(crate) fn clear_children(&mut self, id: EntryId) -> Result<()> {
        let n = self
            .conn
            .prepare_cached(
                "WITH RECURSIVE sub(id) AS (SELECT id FROM node WHERE parent = ?1 \
                 UNION ALL SELECT node.id FROM node JOIN sub ON node.parent = sub.id) \
                 DELETE FROM node WHERE id IN sub",
            )
            .and_then(|mut st| st.execute(params![id]))
            .map_err(|e| self.err("removing a subtree", e))?;
        if n > 0 {
            self.cache.clear();
        }
        Ok(())
    }

    /// The cached id of directory `path`.
    pub(crate) fn cached_dir(&self, path: &str) -> Option<EntryId> {
        if path.is_empty() {
            return Some(Self::ROOT);
        }
        self.cache.get(path).copied()
    }

    /// Remembers that directory `path` is `id`.
    pub(crate) fn cache_dir(&mut self, path: &str, id: EntryId) {
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(path.to_string(), id);
    }

    /// The entry at `comps` (not following symlinks).
    pub(crate) fn lookup<S: AsRef<str>>(&mut self, comps: &[S]) -> Result<Option<EntryId>> {
        let Some((last, parents)) = comps.split_last() else {
            return Ok(Some(Self::ROOT));
        };
        let parent_path = join(parents);
        let parent = match self.cached_dir(&parent_path) {
            Some(p) => p,
            None => {
                let mut cur = Self::ROOT;
                for c in parents {
                    match self.child(cur, c.as_ref())? {
                        Some((id, Shape::Dir)) => cur = id,
                        _ => return Ok(None),
                    }
                }
                self.cache_dir(&parent_path, cur);
                cur
            }
        };
        Ok(self.child(parent, last.as_ref())?.map(|(id, _)| id))
    }

    /// Directory `id`'s entries in the reference order (directories first, then by name
    /// in byte order), with their ids.
    pub(crate) fn children(&self, id: EntryId) -> Result<Vec<(EntryId, String, Row)>> {
        let mut st = self
            .conn
            .prepare_cached(&format!(
                "SELECT id, name, {COLUMNS}, implicit FROM node WHERE parent = ?1 \
                 ORDER BY kind != 0, name"
            ))
            .map_err(|e| self.err("preparing a listing", e))?;
        let rows = st
            .query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?, row_from(r, 2)?)))
            .map_err(|e| self.err("listing a directory", e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err("listing a directory", e))
    }

    /// Calls `f` with every regular file's row.
    pub(crate) fn for_each_file(&self, mut f: impl FnMut(Row) -> Result<()>) -> Result<()> {
        let mut st = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS}, implicit FROM node WHERE kind = {KIND_FILE}"
            ))
            .map_err(|e| self.err("preparing a listing", e))?;
        let rows = st
            .query_map([], |r| row_from(r, 0))
            .map_err(|e| self.err("listing files", e))?;
        for r in rows {
            f(r.map_err(|e| self.err("listing files", e))?)?;
        }
        Ok(())
    }

    /// The distinct `keys`, given in any order with repeats, handed to `f` in
    /// batches of at most `batch` (in key order); returns how many there are. The set is
    /// kept in the stage's database, not in memory.
    pub(crate) fn distinct_keys(
        &self,
        keys: impl FnOnce(&mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()>,
        batch: usize,
        f: &mut dyn FnMut(&[Vec<u8>]) -> Result<()>,
    ) -> Result<u64> {
        self.conn
            .execute_batch(
                "CREATE TEMP TABLE IF NOT EXISTS chunk_key (key BLOB PRIMARY KEY) WITHOUT ROWID; \
                 DELETE FROM chunk_key;",
            )
            .map_err(|e| self.err("creating the key set", e))?;
        {
            let mut ins = self
                .conn
                .prepare_cached("INSERT OR IGNORE INTO chunk_key (key) VALUES (?1)")
                .map_err(|e| self.err("preparing the key set", e))?;
            let mut add = |k: &[u8]| -> Result<()> {
                ins.execute(params![k])
                    .map_err(|e| sqlite_err(&self.path, "adding a key", e))?;
                Ok(())
            };
            keys(&mut add)?;
        }
        let mut st = self
            .conn
            .prepare_cached("SELECT key FROM chunk_key ORDER BY key")
            .map_err(|e| self.err("reading the key set", e))?;
        let rows = st
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .map_err(|e| self.err("reading the key set", e))?;
        let mut n = 0u64;
        let mut buf: Vec<Vec<u8>> = Vec::with_capacity(batch.max(1));
        for r in rows {
            let k = r.map_err(|e| self.err("reading the key set", e))?;
            buf.push(k);
            n += 1;
            if buf.len() >= batch.max(1) {
                f(&buf)?;
                buf.clear();
            }
        }
        if !buf.is_empty() {
            f(&buf)?;
        }
        Ok(n)
    }

    /// Counts by kind (the root not counted) and the sum of file sizes.
    pub(crate) fn counts(&self) -> Result<Counts> {
        let mut st = self
            .conn
            .prepare("SELECT kind, count(*), sum(size) FROM node WHERE id != ?1 GROUP BY kind")
            .map_err(|e| self.err("preparing counts", e))?;
        let mut c = Counts::default();
        let rows = st
            .query_map(params![Self::ROOT], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                ))
            })
            .map_err(|e| self.err("counting", e))?;
        for r in rows {
            let (kind, n, size) = r.map_err(|e| self.err("counting", e))?;
            let n = n as u64;
            match kind {
                KIND_DIR => c.directory = n,
                KIND_FILE => {
                    c.regular = n;
                    c.fullsize = size.unwrap_or(0) as u64;
                }
                KIND_SYMLINK => c.symlink = n,
                _ => c.special = n,
            }
        }
        Ok(c)
    }
}

/// Loads flist catalogs into a stage, the way `zflist init; merge A; merge B` combines
/// them: an entry already present wins, directories present on both sides are merged, and
/// the root keeps the first catalog's metadata. Counts every entry met against a limit and
/// checks for cancellation as it goes.
pub(crate) struct Import<'s> {
    pub stage: &'s mut Stage,
    /// Whether the next catalog is the first (its root sets the root's metadata).
    pub first: bool,
    /// Entries met so far, over every catalog.
    pub entries: u64,
    /// Most entries met.
    pub limit: u64,
    pub cancel: Option<crate::options::Cancel>,
    /// The error that stopped the walk (the walker only carries format errors).
    pub error: Option<ConvertError>,
}

impl Import<'_> {
    fn fail(&mut self, e: ConvertError) -> flist_format::FormatError {
        let msg = e.to_string();
        self.error = Some(e);
        flist_format::FormatError::Container {
            what: "staging".into(),
            reason: msg,
        }
    }

    /// Walks the catalog `conn` into the stage.
    pub(crate) fn catalog(&mut self, conn: &Connection, what: &str) -> Result<()> {
        self.error = None;
        let r = flist_format::reader::walk_catalog(conn, what, self);
        self.first = false;
        match (r, self.error.take()) {
            (Ok(()), _) => Ok(()),
            (Err(_), Some(e)) => Err(e),
            (Err(e), None) => Err(ConvertError::Flist(e.to_string())),
        }
    }
}

impl flist_format::reader::CatalogVisitor for Import<'_> {
    type Dir = EntryId;

    fn root(
        &mut self,
        root: flist_format::reader::RootDir,
    ) -> std::result::Result<EntryId, flist_format::FormatError> {
        if self.first {
            if let Err(e) = self.stage.set_dir_meta(Stage::ROOT, &root.meta, root.size) {
                return Err(self.fail(e));
            }
        }
        Ok(Stage::ROOT)
    }

    fn entry(
        &mut self,
        parent: &EntryId,
        name: String,
        meta: Meta,
        kind: Kind,
    ) -> std::result::Result<Option<EntryId>, flist_format::FormatError> {
        self.entries += 1;
        if self.entries > self.limit {
            let e = ConvertError::Limit {
                what: crate::error::LimitKind::Entries,
                value: self.entries,
                limit: self.limit,
                entry: Some(name),
            };
            return Err(self.fail(e));
        }
        if self.entries.is_multiple_of(256) {
            if let Err(e) = crate::options::check_cancel(&self.cancel) {
                return Err(self.fail(e));
            }
        }
        let r = match self.stage.child(*parent, &name) {
            Ok(Some((id, Shape::Dir))) if kind.is_dir() => Ok(Some(id)),
            // the present entry wins, with everything below it
            Ok(Some(_)) => Ok(None),
            Ok(None) => {
                let is_dir = kind.is_dir();
                self.stage
                    .insert(*parent, &name, &meta, &kind, None)
                    .map(|id| is_dir.then_some(id))
            }
            Err(e) => Err(e),
        };
        r.map_err(|e| self.fail(e))
    }
}

/// `a/b/c` from components.
pub(crate) fn join<S: AsRef<str>>(comps: &[S]) -> String {
    let mut out = String::new();
    for (i, c) in comps.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(c.as_ref());
    }
    out
}

fn sqlite_err(path: &std::path::Path, op: &str, e: rusqlite::Error) -> ConvertError {
    ConvertError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(format!("staging database: {op}: {e}")),
    }
}
