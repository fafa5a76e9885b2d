//! Reading flists: the container (gzip tar, plain tar or a bare database) and the sqlite
//! catalog, decoded into a [`Tree`].
//!
//! Only the member whose basename is `flistdb.sqlite3` is read, and only into a private
//! temporary file: member paths are never used to create anything, so `../flistdb.sqlite3`
//! or absolute member names cannot write outside it.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tempfile::NamedTempFile;

use crate::catalog::{self, AciRec, AttrRec, DirRec};
use crate::codec::dir_key;
use crate::error::FormatError;
use crate::tree::{Kind, Meta, NodeId, Tree};

/// Basename of the database member of an flist archive.
pub const DB_MEMBER: &str = "flistdb.sqlite3";

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";

/// Largest catalog database inflated by default (1 GiB): a small, highly compressed upload
/// cannot fill the disk.
pub const DEFAULT_MAX_DATABASE_BYTES: u64 = 1 << 30;

/// How an flist container is unpacked.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// Largest database member accepted, in bytes (checked against the tar header and while
    /// inflating): larger fails with [`FormatError::DatabaseTooLarge`].
    pub max_database_bytes: u64,
    /// Directory of the temporary database copy (`None`: the system temp directory).
    pub temp_dir: Option<std::path::PathBuf>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            max_database_bytes: DEFAULT_MAX_DATABASE_BYTES,
            temp_dir: None,
        }
    }
}

/// Copies the catalog database out of an flist container into a private temporary file.
///
/// The container may be a gzip-compressed tar (what writers emit), a plain tar, or a bare
/// sqlite database. `what` names the source in errors. The database is capped at
/// [`DEFAULT_MAX_DATABASE_BYTES`]; see [`extract_database_with`].
pub fn extract_database<R: Read>(reader: R, what: &str) -> Result<NamedTempFile, FormatError> {
    extract_database_with(reader, what, &ReadOptions::default())
}

/// [`extract_database`] with explicit limits. On any error the temporary file is removed.
pub fn extract_database_with<R: Read>(
    reader: R,
    what: &str,
    opts: &ReadOptions,
) -> Result<NamedTempFile, FormatError> {
    let mut br = BufReader::with_capacity(64 * 1024, reader);
    let head = peek(&mut br, what)?;
    let mut tmp = match &opts.temp_dir {
        Some(d) => NamedTempFile::new_in(d),
        None => NamedTempFile::new(),
    }
    .map_err(|e| FormatError::io("creating a temporary file", e))?;
    let limit = opts.max_database_bytes;
    if head.starts_with(SQLITE_MAGIC) {
        copy_capped(&mut br, &mut tmp, limit).map_err(|e| match e {
            Capped::TooLarge => too_large(what, limit),
            Capped::Io(e) => FormatError::io(what, e),
        })?;
        return Ok(tmp);
    }
    if head.starts_with(GZIP_MAGIC) {
        let gz = flate2::read::MultiGzDecoder::new(br);
        extract_from_tar(gz, what, &mut tmp, limit, "gzip, but no tar archive inside")?;
    } else {
        let not = "not gzip, not a tar archive, not a SQLite database";
        extract_from_tar(br, what, &mut tmp, limit, not)?;
    }
    Ok(tmp)
}

/// Size of a tar header block.
const TAR_BLOCK: usize = 512;

/// Whether `block` is a tar header (its checksum adds up) or the all-zero end of an empty
/// archive.
fn is_tar_header(block: &[u8; TAR_BLOCK]) -> bool {
    if block.iter().all(|b| *b == 0) {
        return true;
    }
    let field = &block[148..156];
    let digits: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| (b'0'..=b'7').contains(b))
        .collect();
    let Some(stored) = std::str::from_utf8(&digits)
        .ok()
        .and_then(|d| u32::from_str_radix(d, 8).ok())
    else {
        return false;
    };
    let sum = |signed: bool| -> i64 {
        block
            .iter()
            .enumerate()
            .map(|(i, b)| match (i, signed) {
                (148..=155, _) => i64::from(b' '),
                (_, true) => i64::from(*b as i8),
                (_, false) => i64::from(*b),
            })
            .sum()
    };
    i64::from(stored) == sum(false) || i64::from(stored) == sum(true)
}

/// Reads the first tar header of `r` (up to 512 bytes); `None` when the stream is not a tar
/// archive. I/O errors (a corrupt gzip stream) are returned as they are.
fn first_tar_block<R: Read>(r: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut block = [0u8; TAR_BLOCK];
    let mut n = 0;
    while n < TAR_BLOCK {
        match r.read(&mut block[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((n == TAR_BLOCK && is_tar_header(&block)).then(|| block.to_vec()))
}

fn too_large(what: &str, limit: u64) -> FormatError {
    FormatError::DatabaseTooLarge {
        what: what.into(),
        limit,
    }
}

enum Capped {
    TooLarge,
    Io(std::io::Error),
}

/// Copies at most `limit` bytes; more fails with [`Capped::TooLarge`] as soon as byte
/// `limit + 1` is read.
fn copy_capped<R: Read>(r: &mut R, out: &mut NamedTempFile, limit: u64) -> Result<u64, Capped> {
    let mut taken = r.take(limit.saturating_add(1));
    let n = std::io::copy(&mut taken, out.as_file_mut()).map_err(Capped::Io)?;
    if n > limit {
        return Err(Capped::TooLarge);
    }
    Ok(n)
}

fn peek<R: Read>(br: &mut BufReader<R>, what: &str) -> Result<Vec<u8>, FormatError> {
    let buf = br.fill_buf().map_err(|e| FormatError::io(what, e))?;
    if buf.is_empty() {
        return Err(FormatError::Container {
            what: what.into(),
            reason: "empty file".into(),
        });
    }
    Ok(buf[..buf.len().min(SQLITE_MAGIC.len())].to_vec())
}

fn container_err(what: &str, e: impl std::fmt::Display) -> FormatError {
    FormatError::Container {
        what: what.into(),
        reason: e.to_string(),
    }
}

/// A reader that remembers the last error it returned: an error of the layers below the
/// tar reader (the gzip decoder, the disk) is told apart from the tar reader's own.
struct Noting<R> {
    inner: R,
    failed: std::rc::Rc<std::cell::RefCell<Option<String>>>,
}

impl<R: Read> Read for Noting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            *self.failed.borrow_mut() = Some(e.to_string());
        })
    }
}

/// What went wrong in a tar stream, never its bytes: the tar reader's own messages quote
/// the header fields it could not parse (the file's content when it is not an archive), so
/// they become what the stream is not; errors from below (gzip, disk) name no content.
fn tar_err(what: &str, e: &std::io::Error, below: Option<&str>, members: usize) -> FormatError {
    let n = match members {
        1 => "1 member".to_string(),
        n => format!("{n} members"),
    };
    let reason = match below {
        Some(m) => m.to_string(),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => format!("truncated after {n}"),
        None => format!("no valid tar header after {n}"),
    };
    container_err(what, reason)
}

fn extract_from_tar<R: Read>(
    mut r: R,
    what: &str,
    out: &mut NamedTempFile,
    limit: u64,
    not_tar: &str,
) -> Result<(), FormatError> {
    let first = first_tar_block(&mut r)
        .map_err(|e| container_err(what, e))?
        .ok_or_else(|| container_err(what, not_tar))?;
    let failed = std::rc::Rc::default();
    let mut ar = tar::Archive::new(Noting {
        inner: std::io::Cursor::new(first).chain(r),
        failed: std::rc::Rc::clone(&failed),
    });
    let tar_err =
        |e: std::io::Error, members: usize| tar_err(what, &e, failed.borrow().as_deref(), members);
    let mut found = false;
    let mut members = 0;
    {
        let entries = ar.entries().map_err(|e| tar_err(e, members))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| tar_err(e, members))?;
            members += 1;
            let is_db = {
                let p = entry.path_bytes();
                let trimmed = p.strip_suffix(b"/").unwrap_or(&p);
                let base = trimmed.rsplit(|b| *b == b'/').next().unwrap_or(trimmed);
                base == DB_MEMBER.as_bytes()
            };
            if !is_db || !entry.header().entry_type().is_file() {
                continue;
            }
            let expected = entry.size();
            if expected > limit {
                return Err(too_large(what, limit));
            }
            let copied = copy_capped(&mut entry, out, limit).map_err(|e| match e {
                Capped::TooLarge => too_large(what, limit),
                Capped::Io(e) => tar_err(e, members),
            })?;
            if copied != expected {
                return Err(container_err(
                    what,
                    format!("{DB_MEMBER} member is truncated ({copied} of {expected} bytes)"),
                ));
            }
            found = true;
            break;
        }
    }
    if !found {
        return Err(FormatError::MissingDatabase(what.into()));
    }
    // Read the rest of the stream (discarding it) so that a truncated or corrupt archive
    // (gzip CRC/length trailer) is reported rather than silently accepted.
    std::io::copy(&mut ar.into_inner(), &mut std::io::sink()).map_err(|e| tar_err(e, members))?;
    Ok(())
}

/// Opens a catalog database read-only.
pub fn open_database(path: &Path) -> Result<Connection, FormatError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(path, flags)
        .map_err(|e| FormatError::sqlite(format!("opening {}", path.display()), e))
}

/// Loads rows of the `entries` table by key.
struct Rows<'c> {
    text: rusqlite::Statement<'c>,
    blob: rusqlite::Statement<'c>,
    what: &'c str,
}

impl<'c> Rows<'c> {
    fn new(conn: &'c Connection, what: &'c str) -> Result<Self, FormatError> {
        let err = |e| FormatError::sqlite(format!("{what}: reading the entries table"), e);
        Ok(Rows {
            text: conn
                .prepare("SELECT value FROM entries WHERE key = ?1")
                .map_err(err)?,
            // Tolerance for writers that bound keys as blobs (other readers cannot walk those).
            blob: conn
                .prepare("SELECT value FROM entries WHERE key = CAST(?1 AS BLOB)")
                .map_err(err)?,
            what,
        })
    }

    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, FormatError> {
        let what = self.what;
        let err = |e| FormatError::sqlite(format!("{what}: reading row {key}"), e);
        let read = |row: &rusqlite::Row<'_>| -> rusqlite::Result<Vec<u8>> {
            use rusqlite::types::ValueRef;
            Ok(match row.get_ref(0)? {
                ValueRef::Blob(b) | ValueRef::Text(b) => b.to_vec(),
                _ => Vec::new(),
            })
        };
        if let Some(v) = self.text.query_row([key], read).optional().map_err(err)? {
            return Ok(Some(v));
        }
        self.blob.query_row([key], read).optional().map_err(err)
    }
}

/// What [`walk_catalog`] reports: each entry of the catalog once, by directory, without
/// ever holding more than one directory's row (the memory of a walk does not grow with the
/// number of entries, only with the number of directories still to visit).
pub trait CatalogVisitor {
    /// What the walker keeps for a directory whose entries are still to be read (a node
    /// id, a staged row id, a path ...).
    type Dir;

    /// Called first, with the root directory; returns its handle.
    fn root(&mut self, root: RootDir) -> Result<Self::Dir, FormatError>;

    /// Called for each entry of directory `parent`, in stored order, with a valid name
    /// (a repeated name in a directory is skipped with a warning) and the entry's metadata
    /// and kind (a directory's `children` are empty: its entries come when it is visited).
    /// For a directory, the handle returned is given back as `parent` of its own entries;
    /// `None` skips them.
    fn entry(
        &mut self,
        parent: &Self::Dir,
        name: String,
        meta: Meta,
        kind: Kind,
    ) -> Result<Option<Self::Dir>, FormatError>;
}

/// The root directory of a catalog: its metadata and recorded size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootDir {
    /// Metadata (from the root row's ACL).
    pub meta: Meta,
    /// Recorded size.
    pub size: u64,
}

/// Walks a catalog from the root row, following `SubDir.key`, iteratively: `visitor` gets
/// the root directory, then every entry. Every directory
/// row may be reached once: a second reference (a cycle or a shared row) is an error. A
/// missing ACL row gives root:root 0755/0644. Only one directory row is decoded at a time.
pub fn walk_catalog<V: CatalogVisitor>(
    conn: &Connection,
    what: &str,
    visitor: &mut V,
) -> Result<(), FormatError> {
    // One read transaction for the whole walk: without it every row lookup takes and
    // drops the database's shared lock (fcntl calls and a pager check per directory).
    // Nothing is written; dropping it at the end rolls back.
    let _read = conn
        .unchecked_transaction()
        .map_err(|e| FormatError::sqlite(format!("{what}: reading the entries table"), e))?;
    let mut rows = Rows::new(conn, what)?;
    let mut acls = AclCache::default();
    let root_key = dir_key("");
    let root_bytes = rows
        .get(&root_key)?
        .ok_or_else(|| FormatError::MissingDir {
            key: root_key.clone(),
            path: String::new(),
        })?;
    let root_rec = catalog::decode_dir(&root_key, &root_bytes)?;
    let root_aci = acls.get(&mut rows, &root_rec.aclkey)?;
    let root_dir = visitor.root(RootDir {
        meta: meta_from(root_aci, true, root_rec.mtime, root_rec.ctime),
        size: root_rec.size,
    })?;
    let mut visited: HashSet<String> = HashSet::new();
    visited.insert(root_key.clone());
    // Directories whose rows are still to be read: (handle, path, row key). Rows are
    // decoded when popped, so only one directory's row is held in memory at a time.
    let mut stack: Vec<(V::Dir, String, String)> = Vec::new();
    let mut next: Option<(V::Dir, String, String, DirRec)> =
        Some((root_dir, String::new(), root_key, root_rec));
    let mut names: HashSet<String> = HashSet::new();
    loop {
        let (dir, dpath, dkey, rec) = match next.take() {
            Some(x) => x,
            None => match stack.pop() {
                None => break,
                Some((dir, path, key)) => {
                    let Some(bytes) = rows.get(&key)? else {
                        return Err(FormatError::MissingDir { key, path });
                    };
                    let rec = catalog::decode_dir(&key, &bytes)?;
                    (dir, path, key, rec)
                }
            },
        };
        names.clear();
        for ino in rec.contents {
            if crate::tree::validate_name(&ino.name).is_err() {
                return Err(FormatError::bad(
                    &dkey,
                    format!("invalid entry name {:?}", ino.name),
                ));
            }
            if !names.insert(ino.name.clone()) {
                tracing::warn!(
                    "{what}: directory {dpath:?} lists {:?} twice; keeping the first",
                    ino.name
                );
                continue;
            }
            let (name, meta, kind, sub) = entry_of(ino, &mut acls, &mut rows)?;
            let sub = match sub {
                Some(key) => {
                    let path = join(&dpath, &name);
                    if !visited.insert(key.clone()) {
                        return Err(FormatError::DirCycle { key, path });
                    }
                    Some((path, key))
                }
                None => None,
            };
            let handle = visitor.entry(&dir, name, meta, kind)?;
            if let (Some(h), Some((path, key))) = (handle, sub) {
                stack.push((h, path, key));
            }
        }
    }
    Ok(())
}

/// An inode of a directory row as (name, metadata, kind, key of its own row when it is a
/// directory); a directory's `children` are empty.
fn entry_of(
    ino: catalog::InodeRec,
    acls: &mut AclCache,
    rows: &mut Rows<'_>,
) -> Result<(String, Meta, Kind, Option<String>), FormatError> {
    let aci = acls.get(rows, &ino.aclkey)?;
    let is_dir = matches!(ino.attr, AttrRec::Dir { .. });
    let meta = meta_from(aci, is_dir, ino.mtime, ino.ctime);
    let (kind, sub) = match ino.attr {
        AttrRec::Dir { key } => (
            Kind::Dir {
                children: Default::default(),
                size: ino.size,
            },
            Some(key),
        ),
        AttrRec::File { blocks, .. } => (
            Kind::File {
                size: ino.size,
                blocks,
            },
            None,
        ),
        AttrRec::Link { target } => (Kind::Symlink { target }, None),
        AttrRec::Special { kind, data } => {
            let kind = aci
                .and_then(|a| catalog::special_from_mode(u32::from(a.mode)))
                .unwrap_or(kind);
            (
                Kind::Special {
                    kind,
                    rdev: parse_rdev(&data),
                },
                None,
            )
        }
    };
    Ok((ino.name, meta, kind, sub))
}

/// One entry of a catalog by its path (`/etc/os-release`, `usr/bin`; `/` is the root),
/// reading only the directory rows on the way (following `SubDir.key` from the root, as
/// [`walk_catalog`] does): a lookup costs as many row reads as the path has components,
/// however large the flist. `None` when a component is missing or not a directory, or
/// when the path holds a `.` or `..` component (paths are taken as they are, never
/// resolved). Symlinks are not followed. A directory's `children` are empty.
pub fn lookup(
    conn: &Connection,
    path: &str,
    what: &str,
) -> Result<Option<(Meta, Kind)>, FormatError> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.iter().any(|p| *p == "." || *p == "..") {
        return Ok(None);
    }
    let _read = conn
        .unchecked_transaction()
        .map_err(|e| FormatError::sqlite(format!("{what}: reading the entries table"), e))?;
    let mut rows = Rows::new(conn, what)?;
    let mut acls = AclCache::default();
    let mut key = dir_key("");
    let mut dpath = String::new();
    let Some((last, dirs)) = parts.split_last() else {
        let bytes = rows.get(&key)?.ok_or_else(|| FormatError::MissingDir {
            key: key.clone(),
            path: String::new(),
        })?;
        let rec = catalog::decode_dir(&key, &bytes)?;
        let aci = acls.get(&mut rows, &rec.aclkey)?;
        let kind = Kind::Dir {
            children: Default::default(),
            size: rec.size,
        };
        return Ok(Some((meta_from(aci, true, rec.mtime, rec.ctime), kind)));
    };
    for (depth, want) in dirs.iter().chain(std::iter::once(last)).enumerate() {
        let Some(bytes) = rows.get(&key)? else {
            return Err(FormatError::MissingDir { key, path: dpath });
        };
        let rec = catalog::decode_dir(&key, &bytes)?;
        let Some(ino) = rec.contents.into_iter().find(|i| i.name == *want) else {
            return Ok(None);
        };
        let (_, meta, kind, sub) = entry_of(ino, &mut acls, &mut rows)?;
        if depth == dirs.len() {
            return Ok(Some((meta, kind)));
        }
        match sub {
            Some(k) => key = k,
            None => return Ok(None),
        }
        dpath = join(&dpath, want);
    }
    Ok(None)
}

/// Builds a [`Tree`] from a walk.
struct TreeVisitor {
    tree: Tree,
}

impl CatalogVisitor for TreeVisitor {
    type Dir = NodeId;

    fn root(&mut self, root: RootDir) -> Result<NodeId, FormatError> {
        self.tree = Tree::new(root.meta);
        if let Kind::Dir { size, .. } = &mut self.tree.node_mut(Tree::ROOT).kind {
            *size = root.size;
        }
        Ok(Tree::ROOT)
    }

    fn entry(
        &mut self,
        parent: &NodeId,
        name: String,
        meta: Meta,
        kind: Kind,
    ) -> Result<Option<NodeId>, FormatError> {
        let is_dir = kind.is_dir();
        let id = self.tree.insert(*parent, &name, meta, kind)?;
        Ok(is_dir.then_some(id))
    }
}

/// Reads the whole tree of a catalog (see [`walk_catalog`] for the rules).
pub fn read_tree(conn: &Connection, what: &str) -> Result<Tree, FormatError> {
    let mut v = TreeVisitor {
        tree: Tree::new(Meta::root(0o755, 0)),
    };
    walk_catalog(conn, what, &mut v)?;
    Ok(v.tree)
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

/// Parses `Special.data` of a device: ASCII `"major,minor"`.
pub fn parse_rdev(data: &[u8]) -> Option<(u32, u32)> {
    let s = std::str::from_utf8(data).ok()?;
    let (a, b) = s.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

#[derive(Default)]
struct AclCache {
    map: HashMap<String, Option<AciRec>>,
}

impl AclCache {
    fn get(&mut self, rows: &mut Rows<'_>, key: &str) -> Result<Option<&AciRec>, FormatError> {
        if !self.map.contains_key(key) {
            let v = match rows.get(key)? {
                Some(bytes) => Some(catalog::decode_aci(key, &bytes)?),
                None => {
                    tracing::debug!("ACL row {key:?} missing: using defaults");
                    None
                }
            };
            self.map.insert(key.to_string(), v);
        }
        Ok(self.map.get(key).and_then(Option::as_ref))
    }
}

fn id_of(n: i64, name: &str) -> u32 {
    match u32::try_from(n) {
        Ok(v) => v,
        Err(_) if name == "root" => 0,
        Err(_) => name.parse().unwrap_or(0),
    }
}

/// Builds [`Meta`] from an ACI (or the defaults when the row is missing).
fn meta_from(aci: Option<&AciRec>, is_dir: bool, mtime: u32, ctime: u32) -> Meta {
    match aci {
        Some(a) => Meta {
            mode: u32::from(a.mode) & 0o7777,
            uid: id_of(a.uid, &a.uname),
            gid: id_of(a.gid, &a.gname),
            uname: a.uname.clone(),
            gname: a.gname.clone(),
            mtime,
            ctime,
        },
        None => {
            let mut m = Meta::root(if is_dir { 0o755 } else { 0o644 }, mtime);
            m.ctime = ctime;
            m
        }
    }
}
