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
  blocks BLOB
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

/// Reads a row from the columns of [`COLUMNS`] starting at `at`.
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
            .prepare_cached(&format!("SELECT {COLUMNS} FROM node WHERE id = ?1"))
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
                 minor = ?14, file = ?15, blocks = ?16 WHERE id = ?1",
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
                 mtime = ?7, ctime = ?8, size = ?9 WHERE id = ?1",
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
                "SELECT id, name, {COLUMNS} FROM node WHERE parent = ?1 \
                 ORDER BY kind != 0, name"
            ))
            .map_err(|e| self.err("preparing a listing", e))?;
        let rows = st
            .query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?, row_from(r, 2)?)))
            .map_err(|e| self.err("listing a directory", e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err("listing a directory", e))
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
