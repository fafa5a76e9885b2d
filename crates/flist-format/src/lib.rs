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

pub use display::mode_string;
pub use error::{CodecError, FormatError, TreeError};
pub use find::{find_entries, find_response, FindEntry};
pub use merge::merge;
pub use metadata::{Backend, Metadata, Readme, Volume};
pub use reader::{ReadOptions, DEFAULT_MAX_DATABASE_BYTES};
pub use tree::{Block, Kind, Meta, Node, NodeId, SpecialKind, Tree, TreeStats};

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

    /// Reads tree and metadata from an open catalog connection.
    pub fn from_connection(conn: &rusqlite::Connection, what: &str) -> Result<Flist, FormatError> {
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
        Metadata::read(&conn, &what)
    }

    /// Writes an `.flist` (gzip tar with `./` and `./flistdb.sqlite3`) at `path`, atomically.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), FormatError> {
        writer::write_flist(path.as_ref(), &self.tree, &self.metadata)
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
