//! Conversion errors: each names the entry, path, offset or store involved.

use std::path::PathBuf;

use flist_store::StoreError;
use thiserror::Error;

/// Which limit of [`crate::Limits`] was exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
    /// Total expanded (decompressed) bytes, archive stream and file contents.
    ExpandedSize,
    /// Number of archive members or directory entries.
    Entries,
    /// Length in bytes of one path.
    PathLength,
    /// Length in bytes of one path component.
    NameLength,
    /// Number of path components.
    Depth,
    /// Size of the extension headers (PAX records, GNU long names) of one member.
    HeaderSize,
    /// Zeros of sparse-file holes read without their map (old GNU sparse members whose map
    /// continues in extension headers), against the bytes really read.
    SparseExpansion,
    /// Size of an flist's inflated catalog database.
    DatabaseSize,
}

impl std::fmt::Display for LimitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LimitKind::ExpandedSize => "expanded size",
            LimitKind::Entries => "entry count",
            LimitKind::PathLength => "path length",
            LimitKind::NameLength => "name length",
            LimitKind::Depth => "path depth",
            LimitKind::HeaderSize => "extension header size",
            LimitKind::SparseExpansion => "sparse expansion",
            LimitKind::DatabaseSize => "flist database size",
        })
    }
}

/// An error while converting, extracting or verifying.
#[derive(Debug, Error)]
pub enum ConvertError {
    /// A member path has a `..` component (policy [`crate::PathPolicy::Reject`]).
    #[error("entry {path:?}: '..' components are refused (path would escape the root)")]
    PathEscape {
        /// The member path as found in the archive.
        path: String,
    },
    /// A member path is absolute (policy [`crate::PathPolicy::Reject`]).
    #[error("entry {path:?}: absolute member paths are refused")]
    AbsolutePath {
        /// The member path as found in the archive.
        path: String,
    },
    /// A path component holds bytes a tree name cannot (NUL).
    #[error("entry {path:?}: invalid path")]
    InvalidPath {
        /// The member path (lossy).
        path: String,
    },
    /// A member name is not UTF-8, which the flist's Text fields cannot hold.
    #[error(
        "entry {path:?}: name is not valid UTF-8 (bytes {hex}); flists store names as UTF-8 text"
    )]
    NonUtf8Name {
        /// The name with invalid bytes replaced (for display only).
        path: String,
        /// The raw bytes in hex.
        hex: String,
    },
    /// A member would be placed beneath a symlink of the tree.
    #[error("entry {path:?}: {symlink:?} is a symlink; refusing to place an entry beneath it")]
    BeneathSymlink {
        /// The member path.
        path: String,
        /// The symlink on its way.
        symlink: String,
    },
    /// A member would be placed beneath a non-directory.
    #[error("entry {path:?}: {parent:?} is not a directory")]
    NotADirectory {
        /// The member path.
        path: String,
        /// The non-directory on its way.
        parent: String,
    },
    /// A member tries to replace the root with a non-directory.
    #[error("entry {path:?}: the root can only be a directory")]
    RootNotADirectory {
        /// The member path.
        path: String,
    },
    /// A limit of [`crate::Limits`] was exceeded.
    #[error("{what} limit exceeded: {value} > {limit}{}", entry.as_ref().map(|e| format!(" (at entry {e:?})")).unwrap_or_default())]
    Limit {
        /// Which limit.
        what: LimitKind,
        /// The value reached (at least).
        value: u64,
        /// The limit.
        limit: u64,
        /// The entry being processed, if any.
        entry: Option<String>,
    },
    /// A hard link names a target that is not (or no longer) in the tree.
    #[error("hard link {path:?} -> {target:?}: target is not in the archive before it")]
    HardLinkTargetMissing {
        /// The link member.
        path: String,
        /// Its target.
        target: String,
    },
    /// A hard link names a directory.
    #[error("hard link {path:?} -> {target:?}: target is a directory")]
    HardLinkToDirectory {
        /// The link member.
        path: String,
        /// Its target.
        target: String,
    },
    /// The archive ends in the middle of a member or header.
    #[error(
        "truncated archive at byte {offset} of the uncompressed stream{}: {reason}",
        fmt_entry(entry)
    )]
    Truncated {
        /// Uncompressed stream offset reached.
        offset: u64,
        /// The member being read, or the last complete one.
        entry: Option<String>,
        /// What was being read.
        reason: String,
    },
    /// The archive is corrupt (bad header checksum, bad numeric field, bad sparse map...).
    #[error(
        "corrupt archive at byte {offset} of the uncompressed stream{}: {reason}",
        fmt_entry(entry)
    )]
    Corrupt {
        /// Uncompressed stream offset reached.
        offset: u64,
        /// The member being read, or the last complete one.
        entry: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// The compressed stream could not be decoded.
    #[error("{format} decompression failed at compressed byte {offset}: {reason}")]
    Decompress {
        /// Detected compression.
        format: &'static str,
        /// Compressed bytes consumed so far.
        offset: u64,
        /// The decoder's message.
        reason: String,
    },
    /// A chunk store operation failed (the store's error names the store).
    #[error("{source}")]
    Store {
        /// The store (as displayed by the store: credentials redacted).
        store: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// A local file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Reading the input stream failed.
    #[error("reading input: {0}")]
    Input(#[source] std::io::Error),
    /// A file changed size while it was being packed.
    #[error("{}: file changed while reading (expected {expected} bytes, got {got})", path.display())]
    FileChanged {
        /// The file.
        path: PathBuf,
        /// Size from its metadata.
        expected: u64,
        /// Bytes read.
        got: u64,
    },
    /// A chunk could not be decoded.
    #[error("chunk {chunk}: {source}")]
    Codec {
        /// Store key (hex).
        chunk: String,
        /// The codec's error.
        #[source]
        source: flist_format::CodecError,
    },
    /// A chunk is missing from the store.
    #[error("chunk {chunk} of {path:?} is missing from store {store}")]
    MissingChunk {
        /// Store key (hex).
        chunk: String,
        /// The file it belongs to.
        path: String,
        /// The store.
        store: String,
    },
    /// The destination of an extraction is not usable.
    #[error("destination {}: {reason}", path.display())]
    Destination {
        /// The destination directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A tree operation failed.
    #[error("tree: {0}")]
    Tree(#[from] flist_format::TreeError),
    /// Reading or writing the flist failed.
    #[error("flist: {0}")]
    Flist(String),
    /// The conversion was cancelled ([`crate::Cancel`]): nothing was written.
    #[error("cancelled")]
    Cancelled,
    /// A pipeline thread stopped unexpectedly.
    #[error("internal pipeline failure: {0}")]
    Internal(String),
}

impl From<flist_format::FormatError> for ConvertError {
    fn from(e: flist_format::FormatError) -> Self {
        match e {
            // (kept as I/O, so a full disk can be told from a bad flist)
            flist_format::FormatError::Io { what, source } => ConvertError::Io {
                path: what.into(),
                source,
            },
            e => ConvertError::Flist(e.to_string()),
        }
    }
}

fn fmt_entry(entry: &Option<String>) -> String {
    match entry {
        Some(e) => format!(" (entry {e:?})"),
        None => String::new(),
    }
}

/// Shorthand.
pub type Result<T, E = ConvertError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ConvertError {
    let path = path.into();
    move |source| ConvertError::Io { path, source }
}
