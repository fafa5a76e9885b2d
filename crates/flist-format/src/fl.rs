//! The rfs `.fl` format: a bare SQLite database (rollback journal) with the tables
//!
//! - `inode(ino INTEGER PRIMARY KEY AUTOINCREMENT, parent, name, size, uid, gid, mode, rdev,
//!   ctime, mtime)`: one row per entry; the root is ino 1 with parent 0 and name `/`;
//!   `mode` is the whole `st_mode` (file type bits included), `rdev` the Linux device
//!   number, times in whole seconds;
//! - `extra(ino, data)`: symlink targets;
//! - `block(ino, id, key)`: a regular file's blocks (32-byte id and key), in chunk order
//!   (row order), none for an empty file; blocks use the rfs codec ([`crate::codec::rfs`]);
//! - `tag(key, value)`: free metadata (`version`, `description`, `author`, ...);
//! - `route(start, end, url)`: which store holds the blocks whose id starts with a byte in
//!   `start..=end`.
//!
//! It is read into the same [`Tree`] as an `.flist` (blocks as [`Block::Rfs`], owner names
//! from the numeric ids, tags as metadata entries, routes as [`Metadata::routes`]) and
//! written from one by [`FlWriter`], a [`DirSink`] beside the `.flist`
//! [`crate::writer::CatalogWriter`]. rfs v2.0.7's own reader takes `gid` from the `uid`
//! column; this reader and writer use both columns as they are meant.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use rusqlite::{params, Connection};

use crate::catalog::{self, mode_bits};
use crate::error::{FormatError, TreeError};
use crate::metadata::{Metadata, Route};
use crate::tree::{Block, Kind, Meta, NodeId, SpecialKind, Tree};
use crate::writer::{ChildEntry, DirSink};
use crate::{Flist, Format};

/// The schema rfs creates (the same tables, columns, declared types and indexes).
pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS inode (
    ino INTEGER PRIMARY KEY AUTOINCREMENT,
    parent INTEGER,
    name VARCHAR(255),
    size INTEGER,
    uid INTEGER,
    gid INTEGER,
    mode INTEGER,
    rdev INTEGER,
    ctime INTEGER,
    mtime INTEGER
);
CREATE INDEX IF NOT EXISTS parents ON inode (parent);
CREATE INDEX IF NOT EXISTS names ON inode (name);
CREATE TABLE IF NOT EXISTS extra (
    ino INTEGER PRIMARY KEY,
    data VARCHAR(4096)
);
CREATE TABLE IF NOT EXISTS block (
    ino INTEGER,
    id VARCHAR(32),
    key VARCHAR(32)
);
CREATE INDEX IF NOT EXISTS block_ino ON block (ino);
CREATE TABLE IF NOT EXISTS tag (
    key VARCHAR(10) PRIMARY KEY,
    value VARCHAR(255)
);
CREATE TABLE IF NOT EXISTS route (
    start integer, -- one byte hash prefix
    end integer, -- one byte hash prefix
    url VARCHAR(2048)
);";

/// The ino of the root directory.
pub const ROOT_INO: i64 = 1;

/// True when the open database is an `.fl` (it has an `inode` table).
pub fn is_fl(conn: &Connection, what: &str) -> Result<bool, FormatError> {
    has_table(conn, "inode", what)
}

fn has_table(conn: &Connection, table: &str, what: &str) -> Result<bool, FormatError> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [table],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
    .map_err(|e| FormatError::sqlite(format!("{what}: looking for the {table} table"), e))
}

/// Linux `major(dev)`, `minor(dev)` of a device number.
pub fn split_rdev(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major as u32, minor as u32)
}

/// Linux `makedev(major, minor)`.
pub fn make_rdev(major: u32, minor: u32) -> u64 {
    let (major, minor) = (u64::from(major), u64::from(minor));
    ((major & 0xffff_f000) << 32)
        | ((major & 0xfff) << 8)
        | ((minor & 0xffff_ff00) << 12)
        | (minor & 0xff)
}

/// The whole `st_mode` of an entry: its permission bits and its file type.
pub fn st_mode(meta: &Meta, kind: &Kind) -> u32 {
    (meta.mode & 0o7777) | kind.type_bits()
}

/// One `inode` row as read.
struct Row {
    ino: i64,
    name: Vec<u8>,
    size: i64,
    uid: i64,
    gid: i64,
    mode: i64,
    rdev: i64,
    ctime: i64,
    mtime: i64,
}

const COLUMNS: &str = "ino, name, size, uid, gid, mode, rdev, ctime, mtime";

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    use rusqlite::types::ValueRef;
    let name = match r.get_ref(1)? {
        ValueRef::Text(t) | ValueRef::Blob(t) => t.to_vec(),
        _ => Vec::new(),
    };
    let int = |i: usize| -> rusqlite::Result<i64> {
        Ok(match r.get_ref(i)? {
            ValueRef::Integer(n) => n,
            ValueRef::Real(f) => f as i64,
            _ => 0,
        })
    };
    Ok(Row {
        ino: int(0)?,
        name,
        size: int(2)?,
        uid: int(3)?,
        gid: int(4)?,
        mode: int(5)?,
        rdev: int(6)?,
        ctime: int(7)?,
        mtime: int(8)?,
    })
}

fn time(t: i64, ino: i64, what: &str) -> u32 {
    u32::try_from(t).unwrap_or_else(|_| {
        tracing::warn!("{what}: inode {ino}: time {t} outside 1970..2106, clamped");
        if t < 0 {
            0
        } else {
            u32::MAX
        }
    })
}

fn id(v: i64, ino: i64, field: &str) -> Result<u32, FormatError> {
    u32::try_from(v).map_err(|_| FormatError::bad(format!("inode {ino}"), format!("{field} {v}")))
}

impl Row {
    fn meta(&self, what: &str) -> Result<Meta, FormatError> {
        let uid = id(self.uid, self.ino, "uid")?;
        let gid = id(self.gid, self.ino, "gid")?;
        let mut m = Meta::numeric(self.mode as u32, uid, gid, time(self.mtime, self.ino, what));
        m.ctime = time(self.ctime, self.ino, what);
        Ok(m)
    }

    fn kind(&self, extra: Option<String>) -> Result<Kind, FormatError> {
        use mode_bits::*;
        let bad = |reason: String| FormatError::bad(format!("inode {}", self.ino), reason);
        let size = u64::try_from(self.size).map_err(|_| bad(format!("size {}", self.size)))?;
        let mode = u32::try_from(self.mode).map_err(|_| bad(format!("mode {}", self.mode)))?;
        Ok(match mode & S_IFMT {
            S_IFDIR => Kind::Dir {
                children: Default::default(),
                size,
            },
            S_IFREG => Kind::File {
                size,
                blocks: Vec::new(),
            },
            S_IFLNK => Kind::Symlink {
                target: extra.ok_or_else(|| bad("symlink without a target".into()))?,
            },
            t => {
                let kind = catalog::special_from_mode(t).unwrap_or(SpecialKind::Unknown);
                let rdev = matches!(kind, SpecialKind::Block | SpecialKind::Chardev)
                    .then(|| split_rdev(self.rdev as u64));
                Kind::Special { kind, rdev }
            }
        })
    }
}

/// Reads an open `.fl` database into an [`Flist`]: the tree from the root (ino 1) down,
/// following `parent`, children in ino order; tags as metadata entries; routes.
///
/// Hostile input gives an error, never a panic: names that cannot be a path component,
/// non-UTF-8 names or targets, blocks that are not 32 bytes, negative sizes, blocks on an
/// entry that is not a regular file. Rows not reachable from the root are ignored.
pub fn read(conn: &Connection, what: &str) -> Result<Flist, FormatError> {
    let err = |op: &'static str| move |e| FormatError::sqlite(format!("{what}: {op}"), e);
    // One read transaction for the whole walk (see `reader::read_tree`).
    let _read = conn
        .unchecked_transaction()
        .map_err(err("starting a read transaction"))?;
    let metadata = read_metadata(conn, what)?;

    let root = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM inode WHERE ino = ?1"),
            [ROOT_INO],
            read_row,
        )
        .map_err(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => FormatError::bad(
                format!("{what}: inode {ROOT_INO}"),
                "no root directory (ino 1)",
            ),
            e => FormatError::sqlite(format!("{what}: reading the root"), e),
        })?;
    let Kind::Dir { size, .. } = root.kind(None)? else {
        return Err(FormatError::bad(
            format!("{what}: inode {ROOT_INO}"),
            "the root is not a directory",
        ));
    };
    let mut tree = Tree::new(root.meta(what)?);
    if let Kind::Dir { size: s, .. } = &mut tree.node_mut(Tree::ROOT).kind {
        *s = size;
    }

    let mut extra = conn
        .prepare("SELECT data FROM extra WHERE ino = ?1")
        .map_err(err("reading extra"))?;
    let mut children = conn
        .prepare(&format!(
            "SELECT {COLUMNS} FROM inode WHERE parent = ?1 ORDER BY ino"
        ))
        .map_err(err("reading inodes"))?;
    // Regular files by ino, for the block pass.
    let mut files: HashMap<i64, NodeId> = HashMap::new();
    let mut visited: HashSet<i64> = HashSet::from([ROOT_INO]);
    let mut stack: Vec<(i64, NodeId)> = vec![(ROOT_INO, Tree::ROOT)];
    while let Some((dir_ino, dir_id)) = stack.pop() {
        let rows = children
            .query_map([dir_ino], read_row)
            .map_err(err("reading inodes"))?
            .collect::<Result<Vec<Row>, _>>()
            .map_err(err("reading inodes"))?;
        for row in rows {
            if !visited.insert(row.ino) {
                continue;
            }
            let key = || format!("{what}: inode {}", row.ino);
            let name = std::str::from_utf8(&row.name).map_err(|_| {
                FormatError::bad(
                    key(),
                    format!(
                        "name is not UTF-8 ({:?}); such names cannot be represented",
                        String::from_utf8_lossy(&row.name)
                    ),
                )
            })?;
            let is_link = (row.mode as u32) & mode_bits::S_IFMT == mode_bits::S_IFLNK;
            let target = if is_link {
                read_extra(&mut extra, row.ino, what)?
            } else {
                None
            };
            let kind = row.kind(target)?;
            let meta = row.meta(what)?;
            let is_dir = kind.is_dir();
            let is_file = matches!(kind, Kind::File { .. });
            if tree.child(dir_id, name).is_some() {
                tracing::warn!(
                    "{what}: directory {:?} lists {name:?} twice; keeping the first",
                    tree.path_of(dir_id),
                );
                continue;
            }
            let node = tree.insert(dir_id, name, meta, kind).map_err(|e| match e {
                TreeError::InvalidName(n) => {
                    FormatError::bad(key(), format!("invalid entry name {n:?}"))
                }
                other => FormatError::Tree(other),
            })?;
            if is_dir {
                stack.push((row.ino, node));
            } else if is_file {
                files.insert(row.ino, node);
            }
        }
    }

    read_blocks(conn, what, &mut tree, &files, &visited)?;
    Ok(Flist { tree, metadata })
}

fn read_extra(
    st: &mut rusqlite::Statement<'_>,
    ino: i64,
    what: &str,
) -> Result<Option<String>, FormatError> {
    use rusqlite::types::ValueRef;
    use rusqlite::OptionalExtension;
    let data = st
        .query_row([ino], |r| {
            Ok(match r.get_ref(0)? {
                ValueRef::Text(t) | ValueRef::Blob(t) => Some(t.to_vec()),
                _ => None,
            })
        })
        .optional()
        .map_err(|e| FormatError::sqlite(format!("{what}: reading extra of inode {ino}"), e))?
        .flatten();
    data.map(|d| {
        String::from_utf8(d).map_err(|e| {
            FormatError::bad(
                format!("{what}: inode {ino}"),
                format!(
                    "symlink target is not UTF-8 ({:?}); such targets cannot be represented",
                    String::from_utf8_lossy(e.as_bytes())
                ),
            )
        })
    })
    .transpose()
}

/// Fills in the blocks of regular files, in row order per file.
fn read_blocks(
    conn: &Connection,
    what: &str,
    tree: &mut Tree,
    files: &HashMap<i64, NodeId>,
    reachable: &HashSet<i64>,
) -> Result<(), FormatError> {
    use rusqlite::types::ValueRef;
    let err = |e| FormatError::sqlite(format!("{what}: reading blocks"), e);
    let mut st = conn
        .prepare("SELECT ino, id, key FROM block ORDER BY ino, rowid")
        .map_err(err)?;
    let mut rows = st.query([]).map_err(err)?;
    while let Some(r) = rows.next().map_err(err)? {
        let ino: i64 = match r.get_ref(0).map_err(err)? {
            ValueRef::Integer(n) => n,
            _ => continue,
        };
        let Some(&node) = files.get(&ino) else {
            if reachable.contains(&ino) {
                return Err(FormatError::bad(
                    format!("{what}: inode {ino}"),
                    "has blocks but is not a regular file",
                ));
            }
            continue;
        };
        let field = |i: usize, name: &str| -> Result<[u8; 32], FormatError> {
            let v = match r.get_ref(i).map_err(err)? {
                ValueRef::Blob(b) | ValueRef::Text(b) => b,
                _ => &[][..],
            };
            <[u8; 32]>::try_from(v).map_err(|_| {
                FormatError::bad(
                    format!("{what}: inode {ino}"),
                    format!("block {name} is {} bytes, expected 32", v.len()),
                )
            })
        };
        let block = Block::Rfs {
            id: field(1, "id")?,
            key: field(2, "key")?,
        };
        if let Kind::File { blocks, .. } = &mut tree.node_mut(node).kind {
            blocks.push(block);
        }
    }
    Ok(())
}

/// Reads the `tag` table (as metadata entries) and the `route` table of an `.fl`.
pub fn read_metadata(conn: &Connection, what: &str) -> Result<Metadata, FormatError> {
    use crate::metadata::value_text as text;
    let mut md = Metadata::new();
    if has_table(conn, "tag", what)? {
        md.read_pairs(
            conn,
            "SELECT key, value FROM tag ORDER BY rowid",
            &format!("{what}: reading tags"),
        )?;
    }
    if has_table(conn, "route", what)? {
        let err = |e| FormatError::sqlite(format!("{what}: reading routes"), e);
        let mut st = conn
            .prepare("SELECT start, end, url FROM route ORDER BY rowid")
            .map_err(err)?;
        let mut rows = st.query([]).map_err(err)?;
        while let Some(r) = rows.next().map_err(err)? {
            let byte = |i: usize| -> Result<u8, FormatError> {
                let v: i64 = r.get(i).map_err(err)?;
                u8::try_from(v).map_err(|_| FormatError::Metadata {
                    key: "route".into(),
                    reason: format!("range bound {v} is not a byte"),
                })
            };
            let (start, end) = (byte(0)?, byte(1)?);
            let url = text(r.get_ref(2).map_err(err)?).ok_or_else(|| FormatError::Metadata {
                key: "route".into(),
                reason: "url is not UTF-8 text".into(),
            })?;
            md.routes.push(Route { start, end, url });
        }
    }
    Ok(md)
}

/// Writes an `.fl` database one directory at a time (the [`DirSink`] of the `.fl` format):
/// [`FlWriter::new`] creates the tables in one transaction, [`DirSink::dir`] writes a
/// directory's entries (the root's own row on the first call for `""`), with their blocks
/// (which must be [`Block::Rfs`]) and symlink targets, [`FlWriter::finish`] writes tags and
/// routes and commits. A directory must be written after the call that listed it.
pub struct FlWriter<'c> {
    tx: rusqlite::Transaction<'c>,
    /// Directories listed by a parent and not written yet: path → ino.
    pending: HashMap<String, i64>,
    root_written: bool,
    what: String,
}

impl<'c> FlWriter<'c> {
    /// Starts writing into `conn` (tables created and emptied, one transaction).
    pub fn new(conn: &'c mut Connection, what: &str) -> Result<Self, FormatError> {
        let err = |op: &'static str| move |e| FormatError::sqlite(format!("{what}: {op}"), e);
        conn.execute_batch(SCHEMA).map_err(err("creating tables"))?;
        let tx = conn.transaction().map_err(err("starting a transaction"))?;
        tx.execute_batch("DELETE FROM inode; DELETE FROM extra; DELETE FROM block;")
            .map_err(err("emptying tables"))?;
        Ok(FlWriter {
            tx,
            pending: HashMap::new(),
            root_written: false,
            what: what.to_string(),
        })
    }

    fn err(&self, op: &str) -> impl FnOnce(rusqlite::Error) -> FormatError {
        let what = format!("{}: {op}", self.what);
        move |e| FormatError::sqlite(what, e)
    }

    /// Inserts one inode row (and its target, or its blocks); returns its ino.
    fn inode(
        &self,
        parent: i64,
        path: &str,
        name: &str,
        meta: &Meta,
        kind: &Kind,
    ) -> Result<i64, FormatError> {
        let rdev = match kind {
            Kind::Special {
                rdev: Some((a, b)), ..
            } => make_rdev(*a, *b),
            _ => 0,
        };
        let mut ins = self
            .tx
            .prepare_cached(
                "INSERT INTO inode (parent, name, size, uid, gid, mode, rdev, ctime, mtime) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .map_err(self.err("preparing an inode insert"))?;
        ins.execute(params![
            parent,
            name,
            kind.size() as i64,
            meta.uid,
            meta.gid,
            st_mode(meta, kind),
            rdev as i64,
            i64::from(meta.ctime),
            i64::from(meta.mtime),
        ])
        .map_err(self.err("inserting an inode"))?;
        let ino = self.tx.last_insert_rowid();
        match kind {
            Kind::Symlink { target } => {
                let mut st = self
                    .tx
                    .prepare_cached("INSERT INTO extra (ino, data) VALUES (?1, ?2)")
                    .map_err(self.err("preparing an extra insert"))?;
                st.execute(params![ino, target.as_bytes()])
                    .map_err(self.err("inserting a symlink target"))?;
            }
            Kind::File { blocks, .. } if !blocks.is_empty() => {
                let mut st = self
                    .tx
                    .prepare_cached("INSERT INTO block (ino, id, key) VALUES (?1, ?2, ?3)")
                    .map_err(self.err("preparing a block insert"))?;
                for b in blocks {
                    let Block::Rfs { id, key } = b else {
                        return Err(FormatError::ForeignBlock {
                            path: path.to_string(),
                            codec: b.codec(),
                            format: Format::Fl,
                        });
                    };
                    st.execute(params![ino, &id[..], &key[..]])
                        .map_err(self.err("inserting a block"))?;
                }
            }
            _ => {}
        }
        Ok(ino)
    }

    /// Writes the tags (metadata entries) and routes, and commits. Fails if a directory
    /// listed by a parent was never written.
    pub fn finish(self, metadata: &Metadata) -> Result<(), FormatError> {
        if let Some(path) = self.pending.keys().next() {
            return Err(FormatError::Unwritable {
                path: path.clone(),
                reason: "directory listed but never written".into(),
            });
        }
        if !self.root_written {
            return Err(FormatError::Unwritable {
                path: String::new(),
                reason: "no root directory written".into(),
            });
        }
        self.tx
            .execute_batch("DELETE FROM tag; DELETE FROM route;")
            .map_err(self.err("emptying tags and routes"))?;
        {
            let mut st = self
                .tx
                .prepare("INSERT OR REPLACE INTO tag (key, value) VALUES (?1, ?2)")
                .map_err(self.err("preparing a tag insert"))?;
            for (k, v) in metadata.iter() {
                st.execute([k, v]).map_err(self.err("inserting a tag"))?;
            }
            let mut st = self
                .tx
                .prepare("INSERT INTO route (start, end, url) VALUES (?1, ?2, ?3)")
                .map_err(self.err("preparing a route insert"))?;
            for r in &metadata.routes {
                st.execute(params![r.start, r.end, r.url])
                    .map_err(self.err("inserting a route"))?;
            }
        }
        let err = self.err("committing");
        self.tx.commit().map_err(err)
    }
}

impl DirSink for FlWriter<'_> {
    fn dir(
        &mut self,
        path: &str,
        meta: &Meta,
        size: u64,
        children: &[ChildEntry],
    ) -> Result<(), FormatError> {
        let ino = if path.is_empty() {
            if self.root_written {
                return Err(FormatError::Unwritable {
                    path: "/".into(),
                    reason: "root directory written twice".into(),
                });
            }
            let kind = Kind::Dir {
                children: Default::default(),
                size,
            };
            let ino = self.inode(0, "", "/", meta, &kind)?;
            if ino != ROOT_INO {
                return Err(FormatError::Unwritable {
                    path: "/".into(),
                    reason: format!("the root got ino {ino}, not {ROOT_INO}"),
                });
            }
            self.root_written = true;
            ino
        } else {
            self.pending
                .remove(path)
                .ok_or_else(|| FormatError::Unwritable {
                    path: path.to_string(),
                    reason: "directory written before its parent listed it".into(),
                })?
        };
        for (name, cmeta, ckind) in children {
            let cpath = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}/{name}")
            };
            let cino = self.inode(ino, &cpath, name, cmeta, ckind)?;
            if ckind.is_dir() {
                self.pending.insert(cpath, cino);
            }
        }
        Ok(())
    }
}

/// Writes the whole tree and metadata as an `.fl` database into `conn`.
pub fn write_db(
    conn: &mut Connection,
    tree: &Tree,
    metadata: &Metadata,
    what: &str,
) -> Result<(), FormatError> {
    let mut w = FlWriter::new(conn, what)?;
    crate::writer::write_dirs(tree, &mut w)?;
    w.finish(metadata)
}

/// Writes an `.fl` at `path`, atomically (a temporary file in the same directory, renamed
/// when complete).
pub fn write(path: &Path, tree: &Tree, metadata: &Metadata) -> Result<(), FormatError> {
    crate::writer::write_sqlite_with(path, |conn, what| write_db(conn, tree, metadata, what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdev_round_trips_linux_encoding() {
        assert_eq!(split_rdev(1792), (7, 0));
        assert_eq!(make_rdev(7, 0), 1792);
        assert_eq!(make_rdev(1, 3), 259);
        for (a, b) in [
            (0, 0),
            (8, 1),
            (259, 70000),
            (4095, 255),
            (1 << 20, 1 << 20),
        ] {
            assert_eq!(split_rdev(make_rdev(a, b)), (a, b));
        }
    }
}
