//! The flist v2 format: the tree model, the chunk codec, the container (gzip tar holding
//! `flistdb.sqlite3`), the sqlite catalog with Cap'n Proto rows, metadata, merge and the
//! `find` listing.
//!
//! This crate does no network I/O and knows nothing of chunk stores: it turns bytes into
//! trees and trees into bytes. Reading and writing are blocking (sqlite, gzip): call them
//! from `spawn_blocking` or a thread in async code.
//!
//! # API in brief
//! - [`Flist`] `{ tree, metadata }`: [`Flist::open`] (`.flist`: gzip tar, plain tar, or a
//!   bare database), [`Flist::from_reader`], [`Flist::from_sqlite`] (an unpacked catalog),
//!   [`Flist::write`] (atomic `.flist`), [`Flist::write_sqlite`] (atomic database file),
//!   [`Flist::open_metadata`]; [`Flist::open_with`] caps the inflated database
//!   ([`ReadOptions`], default [`DEFAULT_MAX_DATABASE_BYTES`]).
//! - [`Metadata`]: raw TEXT values by key with typed accessors (`backend`, `entrypoint`,
//!   `environ`, `port`, `volume`, `readme`), formatted as the reference tool does.
//! - [`merge()`], [`find_response`], [`tree::diff`], [`codec`] (chunk encode/decode).
//!
//! # Example
//! ```
//! use flist_format::{Flist, Kind, Meta, Metadata, Tree, tree::{diff, DiffOptions}};
//!
//! let mut tree = Tree::new(Meta::root(0o755, 1_600_000_000));
//! let etc = tree.mkdir_p("etc", &Meta::root(0o755, 1_600_000_000)).unwrap();
//! let chunk = flist_format::codec::encode_chunk(b"hello world\n");
//! tree.insert(etc, "hello", Meta::root(0o644, 1_600_000_000),
//!             Kind::File { size: 12, blocks: vec![chunk.block] }).unwrap();
//! let mut metadata = Metadata::new();
//! metadata.set_entrypoint(&["/bin/sh".to_string()]);
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("example.flist");
//! Flist { tree, metadata }.write(&path).unwrap();
//!
//! let back = Flist::open(&path).unwrap();
//! assert_eq!(back.metadata.entrypoint().unwrap(), Some(vec!["/bin/sh".to_string()]));
//! let original = Flist::open(&path).unwrap();
//! assert!(diff(&back.tree, &original.tree, &DiffOptions::default()).is_empty());
//! assert_eq!(back.tree.lookup("/etc/hello").map(|id| back.tree.node(id).kind.size()), Some(12));
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod backend;
pub mod catalog;
pub mod codec;
pub mod diff;
pub mod display;
pub mod error;
pub mod find;
pub mod fl;
#[rustfmt::skip]
#[allow(clippy::all, clippy::pedantic, clippy::unwrap_used, missing_docs, unused_qualifications)]
#[allow(unsafe_code)]
pub mod flist_capnp;
pub mod merge;
pub mod metadata;
pub mod reader;
pub mod signature;
pub mod stamp;
pub mod tree;
pub mod writer;

use std::fs::File;
use std::io::Read;
use std::path::Path;

pub use codec::Codec;
pub use display::mode_string;
pub use error::{CodecError, FormatError, TreeError};
pub use find::{find_entries, find_response, FindEntry};
pub use merge::merge;
pub use metadata::{Backend, Metadata, Readme, Route, Volume};
pub use reader::{ReadOptions, DEFAULT_MAX_DATABASE_BYTES};
pub use tree::{Block, Kind, Meta, Node, NodeId, SpecialKind, Tree, TreeStats};

/// The two flist formats: both describe the same [`Tree`]; their chunks differ
/// ([`Codec`]), and so does what each can record besides the tree (see [`Flist::losses`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `.flist`: a gzip'd tar holding `flistdb.sqlite3` (Cap'n Proto rows), the 0-flist
    /// chunk codec; read by 0-fs, the reference `zflist` and ZOS nodes.
    Flist,
    /// `.fl`: the rfs format, a bare SQLite database (`inode`, `block`, `extra`, `tag`,
    /// `route`), the rfs block codec; read by `rfs`.
    Fl,
}

impl Format {
    /// The format a file name asks for: `.fl` or `.flist` (case-insensitive); `None` for
    /// anything else.
    pub fn from_path(path: impl AsRef<Path>) -> Option<Format> {
        let ext = path.as_ref().extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "fl" => Some(Format::Fl),
            "flist" => Some(Format::Flist),
            _ => None,
        }
    }

    /// The format of the flist in a file, told from its bytes (an `.fl` is a SQLite
    /// database with an `inode` table; anything else is read as an `.flist`).
    pub fn of_file(path: impl AsRef<Path>) -> Result<Format, FormatError> {
        let path = path.as_ref();
        let what = path.display().to_string();
        let mut head = [0u8; 16];
        let mut f = File::open(path).map_err(|e| FormatError::io(&what, e))?;
        let n = f.read(&mut head).map_err(|e| FormatError::io(&what, e))?;
        if head[..n] != *b"SQLite format 3\0" {
            return Ok(Format::Flist);
        }
        let conn = reader::open_database(path)?;
        Ok(if fl::is_fl(&conn, &what)? {
            Format::Fl
        } else {
            Format::Flist
        })
    }

    /// The chunk codec of this format.
    pub fn codec(self) -> Codec {
        match self {
            Format::Flist => Codec::Flist,
            Format::Fl => Codec::Rfs,
        }
    }

    /// The file extension, without the dot: `flist` or `fl`.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Flist => "flist",
            Format::Fl => "fl",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, ".{}", self.extension())
    }
}

/// Something a format cannot record, found by [`Flist::losses`]: what, how many entries,
/// and the first path concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loss {
    /// What is not carried, in words.
    pub what: String,
    /// How many entries (or rows) it concerns.
    pub count: u64,
    /// The first path (or value) concerned.
    pub example: String,
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} × (e.g. {})", self.what, self.count, self.example)
    }
}

/// An flist in memory: its tree and its metadata.
#[derive(Clone, Debug)]
pub struct Flist {
    /// The filesystem tree.
    pub tree: Tree,
    /// The metadata table.
    pub metadata: Metadata,
}

impl Flist {
    /// Reads an `.flist` file (gzip tar, plain tar or a bare sqlite database).
    pub fn open(path: impl AsRef<Path>) -> Result<Flist, FormatError> {
        let path = path.as_ref();
        let what = path.display().to_string();
        let f = File::open(path).map_err(|e| FormatError::io(&what, e))?;
        Self::from_reader(f, &what)
    }

    /// Reads an flist from a stream (gzip tar, plain tar or a bare sqlite database); `what`
    /// names it in errors. The database is copied to a private temporary file, removed
    /// before this returns.
    pub fn from_reader<R: Read>(reader: R, what: &str) -> Result<Flist, FormatError> {
        Self::from_reader_with(reader, what, &ReadOptions::default())
    }

    /// [`Flist::open`] with explicit limits (largest database inflated, temp directory).
    pub fn open_with(path: impl AsRef<Path>, opts: &ReadOptions) -> Result<Flist, FormatError> {
        let path = path.as_ref();
        let what = path.display().to_string();
        let f = File::open(path).map_err(|e| FormatError::io(&what, e))?;
        Self::from_reader_with(f, &what, opts)
    }

    /// [`Flist::from_reader`] with explicit limits.
    pub fn from_reader_with<R: Read>(
        reader: R,
        what: &str,
        opts: &ReadOptions,
    ) -> Result<Flist, FormatError> {
        let db = reader::extract_database_with(reader, what, opts)?;
        let conn = reader::open_database(db.path())?;
        Self::from_connection(&conn, what)
    }

    /// Reads an unpacked catalog database (e.g. a zflist session's `flistdb.sqlite3`).
    pub fn from_sqlite(path: impl AsRef<Path>) -> Result<Flist, FormatError> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(FormatError::io(
                path.display().to_string(),
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such database file"),
            ));
        }
        let conn = reader::open_database(path)?;
        Self::from_connection(&conn, &path.display().to_string())
    }

    /// Reads tree and metadata from an open database: an `.flist` catalog, or an `.fl`
    /// (told by its tables).
    pub fn from_connection(conn: &rusqlite::Connection, what: &str) -> Result<Flist, FormatError> {
        if fl::is_fl(conn, what)? {
            return fl::read(conn, what);
        }
        let metadata = Metadata::read(conn, what)?;
        let tree = reader::read_tree(conn, what)?;
        Ok(Flist { tree, metadata })
    }

    /// Reads only the metadata of an `.flist` file (or bare database).
    pub fn open_metadata(path: impl AsRef<Path>) -> Result<Metadata, FormatError> {
        let path = path.as_ref();
        let what = path.display().to_string();
        let f = File::open(path).map_err(|e| FormatError::io(&what, e))?;
        let db = reader::extract_database(f, &what)?;
        let conn = reader::open_database(db.path())?;
        if fl::is_fl(&conn, &what)? {
            return fl::read_metadata(&conn, &what);
        }
        Metadata::read(&conn, &what)
    }

    /// Writes an `.flist` (gzip tar with `./` and `./flistdb.sqlite3`) at `path`, atomically.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), FormatError> {
        writer::write_flist(path.as_ref(), &self.tree, &self.metadata)
    }

    /// Writes an rfs `.fl` at `path`, atomically: every file block must be of the rfs
    /// codec ([`FormatError::ForeignBlock`] otherwise); metadata entries become tags, and
    /// [`Metadata::routes`] the route table.
    pub fn write_fl(&self, path: impl AsRef<Path>) -> Result<(), FormatError> {
        fl::write(path.as_ref(), &self.tree, &self.metadata)
    }

    /// Writes the flist at `path` in `format` ([`Flist::write`] or [`Flist::write_fl`]).
    pub fn write_as(&self, path: impl AsRef<Path>, format: Format) -> Result<(), FormatError> {
        match format {
            Format::Flist => self.write(path),
            Format::Fl => self.write_fl(path),
        }
    }

    /// The codecs of the chunks of this flist's files (empty when no file has content).
    pub fn codecs(&self) -> std::collections::BTreeSet<Codec> {
        let mut out = std::collections::BTreeSet::new();
        for id in self.tree.walk() {
            if let Kind::File { blocks, .. } = &self.tree.node(id).kind {
                out.extend(blocks.iter().map(Block::codec));
                if out.len() == 2 {
                    break;
                }
            }
        }
        out
    }

    /// What `format` cannot record of this flist, besides where the chunks are (`backend`
    /// or routes, which a conversion replaces by the target store): owner names for `.fl`
    /// (it keeps numeric ids only), the route table for `.flist` (one `backend` instead).
    pub fn losses(&self, format: Format) -> Vec<Loss> {
        let mut out = Vec::new();
        match format {
            Format::Fl => {
                let mut names = Loss {
                    what: "owner or group names other than the numeric ids (.fl records \
                           uid and gid only)"
                        .into(),
                    count: 0,
                    example: String::new(),
                };
                for id in self.tree.walk() {
                    let m = &self.tree.node(id).meta;
                    let numeric = Meta::numeric(m.mode, m.uid, m.gid, m.mtime);
                    if m.uname != numeric.uname || m.gname != numeric.gname {
                        if names.count == 0 {
                            names.example =
                                format!("/{} {}:{}", self.tree.path_of(id), m.uname, m.gname);
                        }
                        names.count += 1;
                    }
                }
                if names.count > 0 {
                    out.push(names);
                }
            }
            Format::Flist => {
                if self.metadata.routes.len() > 1 {
                    out.push(Loss {
                        what: "the route table (.flist records one backend)".into(),
                        count: self.metadata.routes.len() as u64,
                        example: self.metadata.routes[0].url.clone(),
                    });
                }
            }
        }
        out
    }

    /// Writes the catalog database alone at `path`, atomically.
    pub fn write_sqlite(&self, path: impl AsRef<Path>) -> Result<(), FormatError> {
        writer::write_sqlite(path.as_ref(), &self.tree, &self.metadata)
    }

    /// The `zflist find` response for this flist's tree.
    pub fn find_response(&self) -> serde_json::Value {
        find::find_response(&self.tree)
    }
}
