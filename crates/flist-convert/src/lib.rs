//! Archive and directory conversion to flists; extraction and verification.
//!
//! - [`convert`]: a [`Source`] (a tar stream — gzip, zstd, xz, bzip2 or plain, detected
//!   from its magic bytes — or a directory) to a [`Converted`] tree, chunks stored in a
//!   [`BlockingStore`]. The one entry point for archives and directories: the same tree for
//!   the same content, children ordered as the reference writer orders them (directories
//!   first, then by name). [`Converted::write_flist`] writes the flist;
//!   [`Converted::into_packed`] reads the tree back into memory when a caller needs it.
//! - The tree is staged on disk while it is built (a temporary SQLite table of entries by
//!   parent and name; chunk lists in a temporary file) and written one directory at a
//!   time, so memory does not grow with the number of entries. Image conversion
//!   ([`oci`]), [`merge`] and [`mod@derive`] build their trees the same way.
//! - Untrusted input is bounded by [`Limits`] and [`PathPolicy`]; every refusal is a
//!   specific [`ConvertError`] variant, and no flist is written when conversion fails. A
//!   [`Cancel`] in the options stops a conversion (a client gone, a timeout).
//! - The pipeline decompresses on one thread, parses on another, encodes chunks on a pool
//!   of workers and writes batches to the store, with bounded queues throughout.
//!
//! These functions block: call them from a plain thread or `spawn_blocking`, never from an
//! async task. They reach the store through a [`BlockingStore`] (which carries the runtime
//! its calls run on), keeping several batched requests in flight.
//!
//! # Example
//! ```
//! use flist_convert::{convert, extract, verify, ConvertOptions, ExtractOptions, Source};
//! use flist_format::Flist;
//! use flist_store::BlockingStore;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tmp = tempfile::tempdir()?;
//! let src = tmp.path().join("src");
//! std::fs::create_dir_all(src.join("etc"))?;
//! std::fs::write(src.join("etc/motd"), "hello\n")?;
//! let store = BlockingStore::open(&format!("dir://{}", tmp.path().join("chunks").display()))?;
//!
//! // a directory to an flist, its chunks in the store
//! let converted = convert(Source::Dir(src), Some(&store), &ConvertOptions::default())?;
//! assert_eq!(converted.stats.files, 1);
//! let path = tmp.path().join("app.flist");
//! converted.write_flist(&path)?;
//! let flist = Flist::open(&path)?;
//! // every chunk there and intact (deep: fetched and decoded)
//! assert!(verify(&flist.tree, &store, true)?.is_ok());
//! // and back to a directory
//! let out = tmp.path().join("out");
//! extract(&flist.tree, &out, &store, &ExtractOptions::default())?;
//! assert_eq!(std::fs::read_to_string(out.join("etc/motd"))?, "hello\n");
//! # Ok(()) }
//! ```

use std::io::Read;
use std::path::{Path, PathBuf};

use flist_format::{Metadata, Tree};
use flist_store::BlockingStore;

pub mod backend;
mod builder;
mod channel;
mod decompress;
pub mod derive;
mod dirpack;
mod error;
mod extract;
pub mod initramfs;
pub mod merge;
#[cfg(feature = "oci")]
pub mod oci;
mod options;
mod pipeline;
pub mod reencode;
mod stage;
mod tarball;
pub mod vmcheck;

pub use builder::sort_children;
pub use channel::ChannelReader;
pub use decompress::Compression;
pub use error::{ConvertError, LimitKind, Result};
pub use extract::{extract, verify, BadChunk, ExtractOptions, ExtractStats, VerifyReport};
pub use options::{
    warn, Cancel, ConvertOptions, Limits, OwnerNames, PathPolicy, Progress, ProgressReport, Stats,
    UploadMode, Warning,
};
pub use reencode::{reencode, ReencodeOptions, ReencodeStats};

use builder::TreeBuilder;
use options::Counters;

/// A converted tree held in memory and what it took (see [`Converted::into_packed`]).
#[derive(Clone, Debug)]
pub struct Packed {
    /// The tree, every regular file with its chunk list.
    pub tree: Tree,
    /// Counts and warnings.
    pub stats: Stats,
}

/// What [`convert`] reads.
pub enum Source<'a> {
    /// A tar stream (compression detected from its magic bytes). A plain tar must end
    /// with its end-of-archive marker (two zero blocks); compressed streams are checked by
    /// their own trailers.
    Archive {
        /// The stream.
        reader: Box<dyn Read + Send + 'a>,
        /// Its length in bytes, when known (progress against the input read).
        len: Option<u64>,
    },
    /// A directory of this machine, walked without following symlinks.
    Dir(PathBuf),
}

impl<'a> Source<'a> {
    /// A tar stream of unknown length.
    pub fn archive(reader: impl Read + Send + 'a) -> Self {
        Source::Archive {
            reader: Box::new(reader),
            len: None,
        }
    }

    /// A directory.
    pub fn dir(path: impl Into<PathBuf>) -> Self {
        Source::Dir(path.into())
    }
}

impl std::fmt::Debug for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Archive { len, .. } => f.debug_struct("Archive").field("len", len).finish(),
            Source::Dir(p) => f.debug_tuple("Dir").field(p).finish(),
        }
    }
}

impl Source<'static> {
    /// The source a command-line argument names: `-` is standard input (an archive), a
    /// directory is walked, any other file is read as an archive (buffered).
    pub fn from_arg(arg: &str) -> Result<Source<'static>> {
        if arg == "-" {
            return Ok(Source::archive(std::io::BufReader::with_capacity(
                1 << 20,
                std::io::stdin(),
            )));
        }
        let p = Path::new(arg);
        let md = std::fs::metadata(p).map_err(error::io_err(p))?;
        if md.is_dir() {
            return Ok(Source::Dir(p.to_path_buf()));
        }
        let f = std::fs::File::open(p).map_err(error::io_err(p))?;
        Ok(Source::Archive {
            reader: Box::new(std::io::BufReader::with_capacity(1 << 20, f)),
            len: Some(md.len()),
        })
    }
}

/// A converted tree, staged on disk (memory does not grow with its entries), with what the
/// conversion took and the metadata to write with it.
pub struct Converted {
    staged: builder::Staged,
    /// Counts and warnings.
    pub stats: Stats,
    /// Metadata written with the tree (an image's config; empty for archives and
    /// directories, a derived flist's base metadata): set keys (`backend` ...) before
    /// [`Converted::write_flist`].
    pub metadata: Metadata,
    cancel: Option<Cancel>,
    codec: flist_format::Codec,
}

impl std::fmt::Debug for Converted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Converted")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Converted {
    pub(crate) fn new(
        mut staged: builder::Staged,
        counters: &Counters,
        opts: &ConvertOptions,
    ) -> Result<Self> {
        let stats = make_stats(&mut staged, counters)?;
        if let Some(p) = &opts.progress {
            p.progress(&counters.report());
        }
        Ok(Converted {
            staged,
            stats,
            metadata: Metadata::new(),
            cancel: opts.cancel.clone(),
            codec: opts.codec,
        })
    }

    /// True when the tree has no entry besides its root (an empty or zero-byte archive).
    pub fn is_empty(&self) -> bool {
        let s = &self.stats;
        s.files + s.directories + s.symlinks + s.specials == 0
    }

    /// Writes every directory into a catalog, one at a time (for a caller assembling its
    /// own database; [`Converted::write_flist`] does it all).
    pub fn write_catalog(&self, w: &mut dyn flist_format::writer::DirSink) -> Result<()> {
        self.staged.write_catalog(w, &self.cancel)
    }

    /// Writes the flist at `out` (atomically: nothing is at `out` unless the whole flist
    /// is) with [`Converted::metadata`], one directory at a time: an `.flist` for the
    /// `.flist` codec, an rfs `.fl` for the rfs codec (the conversion's `opts.codec`).
    pub fn write_flist(&self, out: &Path) -> Result<()> {
        match self.codec {
            flist_format::Codec::Flist => {
                flist_format::writer::write_flist_with(out, |conn, what| {
                    let mut w = flist_format::writer::CatalogWriter::new(conn, what)?;
                    self.write_catalog(&mut w)?;
                    w.finish(&self.metadata)?;
                    Ok::<(), ConvertError>(())
                })
            }
            flist_format::Codec::Rfs => {
                flist_format::writer::write_sqlite_with(out, |conn, what| {
                    let mut w = flist_format::fl::FlWriter::new(conn, what)?;
                    self.write_catalog(&mut w)?;
                    w.finish(&self.metadata)?;
                    Ok::<(), ConvertError>(())
                })
            }
        }
        .map_err(|e| match e {
            ConvertError::Flist(m) => {
                ConvertError::Flist(format!("writing {}: {m}", out.display()))
            }
            e => e,
        })
    }

    /// The distinct chunk store keys the tree's files reference, handed to `f` in batches of
    /// at most `batch` (for presence checks); returns how many there are. The set is kept on
    /// disk, not in memory.
    pub fn chunk_keys(
        &self,
        batch: usize,
        mut f: impl FnMut(&[Vec<u8>]) -> Result<()>,
    ) -> Result<u64> {
        self.staged.chunk_keys(batch, &mut f)
    }

    /// The flist in memory: the tree (children in the reference order) and
    /// [`Converted::metadata`].
    pub fn into_flist(self) -> Result<flist_format::Flist> {
        Ok(flist_format::Flist {
            tree: self.staged.into_tree()?,
            metadata: self.metadata,
        })
    }

    /// The tree in memory (children in the reference order) with the statistics.
    pub fn into_packed(self) -> Result<Packed> {
        Ok(Packed {
            tree: self.staged.into_tree()?,
            stats: self.stats,
        })
    }
}

fn make_stats(staged: &mut builder::Staged, counters: &Counters) -> Result<Stats> {
    use std::sync::atomic::Ordering::Relaxed;
    let t = staged.counts()?;
    Ok(Stats {
        files: t.regular,
        directories: t.directory,
        symlinks: t.symlink,
        specials: t.special,
        hard_links: staged.hard_links,
        bytes: t.fullsize,
        bytes_read: counters.bytes_read.load(Relaxed),
        bytes_expanded: counters.bytes_expanded.load(Relaxed),
        entries: counters.entries.load(Relaxed),
        chunks_written: counters.chunks_new.load(Relaxed),
        chunks_present: counters.chunks_present.load(Relaxed),
        chunks_deduplicated: counters.chunks_dedup.load(Relaxed),
        bytes_encoded: counters.bytes_encoded.load(Relaxed),
        warnings: std::mem::take(&mut staged.warnings).into_vec(),
    })
}

/// Converts `source` into a tree staged on disk, storing its chunks in `store` (with
/// `None`, chunks are encoded, so the tree has its block keys, but stored nowhere). On any
/// error (or cancellation) nothing is left behind but the chunks already stored.
pub fn convert(
    source: Source<'_>,
    store: Option<&BlockingStore>,
    opts: &ConvertOptions,
) -> Result<Converted> {
    let counters = Counters::default();
    let (builder, results) = match source {
        Source::Archive { mut reader, .. } => {
            let input: &mut (dyn Read + Send) = &mut *reader;
            pipeline::run(store, opts, &counters, |sender| {
                let mut b = TreeBuilder::new(0)?;
                tarball::read_archive(
                    input,
                    opts,
                    &counters,
                    sender,
                    &mut b,
                    tarball::TarEnd::Required,
                )?;
                Ok(b)
            })?
        }
        Source::Dir(dir) => pipeline::run(store, opts, &counters, |sender| {
            let mut b = TreeBuilder::new(0)?;
            dirpack::read_dir_tree(&dir, opts, &counters, sender, &mut b)?;
            Ok(b)
        })?,
    };
    Converted::new(builder.finish(results)?, &counters, opts)
}

/// Converts a tar archive in memory into a tree without any store (fuzzing, previews).
pub fn archive_to_tree(archive: &[u8], opts: &ConvertOptions) -> Result<Packed> {
    convert(Source::archive(archive), None, opts)?.into_packed()
}
