//! Writing flists: a [`Tree`] and its [`Metadata`] into a sqlite catalog (TEXT keys, one
//! `Dir` row per directory, shared ACL rows), and the catalog into a gzip tar container
//! (`./` + `./flistdb.sqlite3`, like the reference), written atomically.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use rusqlite::Connection;
use tempfile::NamedTempFile;

use crate::catalog::{self, AciRec, AttrRec, DirRec, InodeRec};
use crate::codec::{dir_key, BLOCK_SIZE_UNITS};
use crate::error::FormatError;
use crate::metadata::Metadata;
use crate::reader::DB_MEMBER;
use crate::tree::{Kind, Meta, NodeId, Tree};

/// SQL creating an empty catalog (the reference schema).
pub const SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS entries (key VARCHAR(64) PRIMARY KEY, value BLOB);\n\
     CREATE TABLE IF NOT EXISTS metadata (key VARCHAR(64) PRIMARY KEY, value TEXT);";

/// The ACI of an entry: its meta, with the file-type bits of special files kept in the mode
/// (regular files, directories and symlinks store permission bits only, as the reference).
fn aci_of(meta: &Meta, kind: &Kind) -> AciRec {
    let type_bits = match kind {
        Kind::Special { .. } => kind.type_bits(),
        _ => 0,
    };
    AciRec {
        uname: meta.uname.clone(),
        gname: meta.gname.clone(),
        // fits: 0o7777 | 0o170000 == 0xffff
        mode: ((meta.mode & 0o7777) | type_bits) as u16,
        uid: i64::from(meta.uid),
        gid: i64::from(meta.gid),
    }
}

fn acl_key_of(aci: &AciRec) -> String {
    // uid/gid come from u32 in aci_of
    catalog::acl_key(
        &aci.uname,
        &aci.gname,
        u32::from(aci.mode),
        aci.uid as u32,
        aci.gid as u32,
    )
}

/// One entry of a directory given to [`DirSink::dir`]: name, metadata and kind (a
/// directory's `children` are ignored: each directory is written by its own call).
pub type ChildEntry = (String, Meta, Kind);

/// A writer of one flist format that takes the tree one directory at a time, so that a
/// converter holding its tree on disk never needs the whole [`Tree`] in memory: the
/// `.flist` [`CatalogWriter`] and the `.fl` [`crate::fl::FlWriter`]. The root (`""`) comes
/// first, and a directory after the call that listed it among its children.
pub trait DirSink {
    /// Writes the directory at `path` (`""` for the root) with its own `meta` and recorded
    /// `size`, holding `children` in the order given.
    fn dir(
        &mut self,
        path: &str,
        meta: &Meta,
        size: u64,
        children: &[ChildEntry],
    ) -> Result<(), FormatError>;
}

/// Writes a catalog one directory at a time, so that a converter holding its tree on disk
/// never needs the whole [`Tree`] in memory: [`CatalogWriter::new`] opens a transaction and
/// empties the tables, [`CatalogWriter::dir`] writes one directory's `Dir` row (its entries
/// and the ACL rows they use), [`CatalogWriter::finish`] writes the metadata and commits.
/// Rows are inserted in call order, so the same calls give the same database bytes.
pub struct CatalogWriter<'c> {
    tx: rusqlite::Transaction<'c>,
    seen_acls: HashSet<String>,
    what: String,
}

impl<'c> CatalogWriter<'c> {
    /// Starts writing into `conn` (tables created, `entries` emptied, one transaction).
    /// `what` names the database in errors.
    pub fn new(conn: &'c mut Connection, what: &str) -> Result<Self, FormatError> {
        let err = |op: &'static str| move |e| FormatError::sqlite(format!("{what}: {op}"), e);
        conn.execute_batch(SCHEMA).map_err(err("creating tables"))?;
        let tx = conn.transaction().map_err(err("starting a transaction"))?;
        tx.execute("DELETE FROM entries", [])
            .map_err(err("emptying entries"))?;
        Ok(CatalogWriter {
            tx,
            seen_acls: HashSet::new(),
            what: what.to_string(),
        })
    }

    fn err(&self, op: &str) -> impl FnOnce(rusqlite::Error) -> FormatError {
        let what = format!("{}: {op}", self.what);
        move |e| FormatError::sqlite(what, e)
    }

    fn insert(&self, key: &str, value: &[u8], op: &str) -> Result<(), FormatError> {
        let mut ins = self
            .tx
            .prepare_cached("INSERT OR REPLACE INTO entries (key, value) VALUES (?1, ?2)")
            .map_err(self.err("preparing insert"))?;
        ins.execute(rusqlite::params![key, value])
            .map_err(self.err(op))?;
        Ok(())
    }

    fn acl(&mut self, meta: &Meta, kind: &Kind) -> Result<String, FormatError> {
        let aci = aci_of(meta, kind);
        let key = acl_key_of(&aci);
        if !self.seen_acls.contains(&key) {
            self.insert(&key, &catalog::encode_aci(&aci), "inserting an ACL row")?;
            self.seen_acls.insert(key.clone());
        }
        Ok(key)
    }

    /// Writes `metadata` and commits.
    pub fn finish(self, metadata: &Metadata) -> Result<(), FormatError> {
        metadata.write(&self.tx, &self.what)?;
        let err = self.err("committing");
        self.tx.commit().map_err(err)
    }
}

impl DirSink for CatalogWriter<'_> {
    fn dir(
        &mut self,
        path: &str,
        meta: &Meta,
        size: u64,
        children: &[ChildEntry],
    ) -> Result<(), FormatError> {
        let key = dir_key(path);
        let (parent_path, name) = match path.rsplit_once('/') {
            Some((p, n)) => (p, n),
            None => ("", path),
        };
        let parent_key = if path.is_empty() {
            key.clone()
        } else {
            dir_key(parent_path)
        };
        let mut contents = Vec::with_capacity(children.len());
        for (cname, cmeta, ckind) in children {
            let attr = match ckind {
                Kind::Dir { .. } => AttrRec::Dir {
                    key: if path.is_empty() {
                        dir_key(cname)
                    } else {
                        dir_key(&format!("{path}/{cname}"))
                    },
                },
                Kind::File { blocks, .. } => AttrRec::File {
                    block_size: BLOCK_SIZE_UNITS,
                    blocks: blocks.clone(),
                },
                Kind::Symlink { target } => AttrRec::Link {
                    target: target.clone(),
                },
                Kind::Special { kind, rdev } => AttrRec::Special {
                    kind: *kind,
                    data: rdev
                        .map(|(a, b)| format!("{a},{b}").into_bytes())
                        .unwrap_or_default(),
                },
            };
            contents.push(InodeRec {
                name: cname.clone(),
                size: ckind.size(),
                attr,
                aclkey: self.acl(cmeta, ckind)?,
                mtime: cmeta.mtime,
                ctime: cmeta.ctime,
            });
        }
        let own_kind = Kind::Dir {
            children: Default::default(),
            size,
        };
        let rec = DirRec {
            name: name.to_string(),
            aclkey: self.acl(meta, &own_kind)?,
            location: path.to_string(),
            contents,
            parent: parent_key,
            size,
            mtime: meta.mtime,
            ctime: meta.ctime,
        };
        let bytes = catalog::encode_dir(&rec)?;
        self.insert(&key, &bytes, "inserting a directory row")
    }
}

/// Writes the whole catalog (entries and metadata) into `conn` in one transaction,
/// replacing whatever the tables held. `what` names the database in errors.
pub fn write_catalog(
    conn: &mut Connection,
    tree: &Tree,
    metadata: &Metadata,
    what: &str,
) -> Result<(), FormatError> {
    let mut w = CatalogWriter::new(conn, what)?;
    write_dirs(tree, &mut w)?;
    w.finish(metadata)
}

/// Gives every directory of `tree` to `sink`, depth first (the last child directory first),
/// children in stored order.
pub fn write_dirs(tree: &Tree, sink: &mut dyn DirSink) -> Result<(), FormatError> {
    // (directory node, its path)
    let mut stack: Vec<(NodeId, String)> = vec![(Tree::ROOT, String::new())];
    while let Some((id, path)) = stack.pop() {
        let node = tree.node(id);
        let mut children: Vec<ChildEntry> = Vec::new();
        for (name, cid) in tree.children(id) {
            let child = tree.node(cid);
            let kind = match &child.kind {
                Kind::Dir { size, .. } => {
                    let cpath = if path.is_empty() {
                        name.to_string()
                    } else {
                        format!("{path}/{name}")
                    };
                    stack.push((cid, cpath));
                    Kind::Dir {
                        children: Default::default(),
                        size: *size,
                    }
                }
                k => k.clone(),
            };
            children.push((name.to_string(), child.meta.clone(), kind));
        }
        sink.dir(&path, &node.meta, node.kind.size(), &children)?;
    }
    Ok(())
}

/// Creates a catalog database at `path` (replacing any file there atomically), fills it
/// with `fill` (which gets the open connection) and persists it: the data goes to a
/// temporary file in the same directory, renamed when complete.
pub fn write_sqlite_with<E: From<FormatError>>(
    path: &Path,
    fill: impl FnOnce(&mut Connection, &str) -> Result<(), E>,
) -> Result<(), E> {
    let what = path.display().to_string();
    let dir = parent_dir(path);
    let tmp = NamedTempFile::new_in(dir).map_err(|e| {
        FormatError::io(format!("creating a temporary file in {}", dir.display()), e)
    })?;
    {
        let mut conn = Connection::open(tmp.path()).map_err(|e| FormatError::sqlite(&what, e))?;
        conn.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")
            .map_err(|e| FormatError::sqlite(format!("{what}: pragmas"), e))?;
        fill(&mut conn, &what)?;
        conn.close()
            .map_err(|(_, e)| FormatError::sqlite(format!("{what}: closing"), e))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| FormatError::io(&what, e))?;
    set_mode_644(tmp.path(), &what)?;
    tmp.persist(path)
        .map_err(|e| FormatError::io(&what, e.error))?;
    Ok(())
}

/// Writes an `.flist` at `path` (atomically) whose catalog `fill` writes into the open
/// connection (with a [`CatalogWriter`]).
pub fn write_flist_with<E: From<FormatError>>(
    path: &Path,
    fill: impl FnOnce(&mut Connection, &str) -> Result<(), E>,
) -> Result<(), E> {
    let dir =
        tempfile::tempdir().map_err(|e| FormatError::io("creating a temporary directory", e))?;
    let db = dir.path().join(DB_MEMBER);
    write_sqlite_with(&db, fill)?;
    Ok(pack_database(&db, path)?)
}

/// Writes a new catalog database at `path` (replacing any file there atomically: the data
/// goes to a temporary file in the same directory, renamed when complete).
pub fn write_sqlite(path: &Path, tree: &Tree, metadata: &Metadata) -> Result<(), FormatError> {
    write_sqlite_with(path, |conn, what| write_catalog(conn, tree, metadata, what))
}

/// Writes the tree as an `.flist` (gzip tar holding `./flistdb.sqlite3`) at `path`,
/// atomically.
pub fn write_flist(path: &Path, tree: &Tree, metadata: &Metadata) -> Result<(), FormatError> {
    write_flist_with(path, |conn, what| write_catalog(conn, tree, metadata, what))
}

/// Packs an existing catalog database into an `.flist` at `dest`, atomically (a temporary
/// file in the destination directory, renamed when complete).
pub fn pack_database(db: &Path, dest: &Path) -> Result<(), FormatError> {
    let what = dest.display().to_string();
    let dir = parent_dir(dest);
    let tmp = NamedTempFile::new_in(dir).map_err(|e| {
        FormatError::io(format!("creating a temporary file in {}", dir.display()), e)
    })?;
    let out = tmp
        .as_file()
        .try_clone()
        .map_err(|e| FormatError::io(&what, e))?;
    let file = write_container(db, BufWriter::new(out))?;
    let file = file
        .into_inner()
        .map_err(|e| FormatError::io(&what, e.into_error()))?;
    file.sync_all().map_err(|e| FormatError::io(&what, e))?;
    set_mode_644(tmp.path(), &what)?;
    tmp.persist(dest)
        .map_err(|e| FormatError::io(&what, e.error))?;
    Ok(())
}

/// Writes the gzip tar container holding `db` to `out`, returning `out`.
pub fn write_container<W: Write>(db: &Path, out: W) -> Result<W, FormatError> {
    let dbw = db.display().to_string();
    let mut f = File::open(db).map_err(|e| FormatError::io(&dbw, e))?;
    let len = f.metadata().map_err(|e| FormatError::io(&dbw, e))?.len();
    // The container carries no clock: the same database always gives the same bytes (and
    // md5), so rewriting an unchanged flist is not a change. Readers ignore these times.
    let mtime = 0;
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    let io = |e| FormatError::io("writing the flist archive", e);
    let header = |name: &[u8], kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(mtime);
        h.set_uid(0);
        h.set_gid(0);
        // "root" always fits the 32-byte name fields
        let _ = h.set_username("root");
        let _ = h.set_groupname("root");
        h.set_cksum();
        h
    };
    b.append(
        &header(b"./", tar::EntryType::Directory, 0o755, 0),
        std::io::empty(),
    )
    .map_err(io)?;
    let member = format!("./{DB_MEMBER}");
    b.append(
        &header(member.as_bytes(), tar::EntryType::Regular, 0o644, len),
        &mut f,
    )
    .map_err(io)?;
    let gz = b.into_inner().map_err(io)?;
    gz.finish().map_err(io)
}

fn parent_dir(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

#[cfg(unix)]
fn set_mode_644(p: &Path, what: &str) -> Result<(), FormatError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| FormatError::io(what, e))
}

#[cfg(not(unix))]
fn set_mode_644(_p: &Path, _what: &str) -> Result<(), FormatError> {
    Ok(())
}
