//! Archive and directory conversion to flists; extraction and verification.
//!
//! - [`pack_archive`]: a tar stream (gzip, zstd, xz, bzip2 or plain, detected from its magic
//!   bytes) to a [`Tree`], chunks stored in a [`BlockingStore`]; [`pack_dir`]: the same from a
//!   directory. Both produce the same tree for the same content, with children ordered as
//!   the reference writer orders them (directories first, then by name).
//! - Untrusted input is bounded by [`Limits`] and [`PathPolicy`]; every refusal is a
//!   specific [`ConvertError`] variant, and no flist is written when conversion fails.
//! - The tree is staged on disk while it is built (a temporary SQLite table of entries by
//!   parent and name; chunk lists in a temporary file), so memory does not grow with the
//!   number of entries; [`archive_to_flist`] and [`dir_to_flist`] write the flist from
//!   there one directory at a time, [`pack_archive`] and [`pack_dir`] read it back as a
//!   [`Tree`].
//! - The pipeline decompresses on one thread, parses on another, encodes chunks on a pool
//!   of workers and writes batches to the store, with bounded queues throughout.
//!
//! These functions block: call them from a plain thread or `spawn_blocking`, never from an
//! async task. They reach the store through a [`BlockingStore`] (which carries the runtime
//! its calls run on), keeping several batched requests in flight.
//!
//! # Example
//! ```
//! use flist_convert::{extract, pack_dir, verify, ConvertOptions, ExtractOptions};
//! use flist_store::BlockingStore;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tmp = tempfile::tempdir()?;
//! let src = tmp.path().join("src");
//! std::fs::create_dir_all(src.join("etc"))?;
//! std::fs::write(src.join("etc/motd"), "hello\n")?;
//! let store = BlockingStore::open(&format!("dir://{}", tmp.path().join("chunks").display()))?;
//!
//! // a directory to a tree, its chunks in the store
//! let packed = pack_dir(&src, Some(&store), &ConvertOptions::default())?;
//! assert_eq!(packed.stats.files, 1);
//! // every chunk there and intact (deep: fetched and decoded)
//! assert!(verify(&packed.tree, &store, true)?.is_ok());
//! // and back to a directory
//! let out = tmp.path().join("out");
//! extract(&packed.tree, &out, &store, &ExtractOptions::default())?;
//! assert_eq!(std::fs::read_to_string(out.join("etc/motd"))?, "hello\n");
//! # Ok(()) }
//! ```

use std::io::Read;
use std::path::Path;

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
    warn, ConvertOptions, Limits, OwnerNames, PathPolicy, Progress, ProgressReport, Stats,
    UploadMode, Warning,
};
pub use reencode::{reencode, ReencodeOptions, ReencodeStats};

use builder::TreeBuilder;
use options::Counters;

/// A converted tree and what it took.
#[derive(Clone, Debug)]
pub struct Packed {
    /// The tree, every regular file with its chunk list.
    pub tree: Tree,
    /// Counts and warnings.
    pub stats: Stats,
}

fn finish(
    builder: TreeBuilder,
    results: builder::ChunkResults,
    counters: &Counters,
    opts: &ConvertOptions,
) -> Result<Packed> {
    let (staged, stats) = finish_staged(builder, results, counters, opts)?;
    Ok(Packed {
        tree: staged.into_tree()?,
        stats,
    })
}

fn finish_staged(
    builder: TreeBuilder,
    results: builder::ChunkResults,
    counters: &Counters,
    opts: &ConvertOptions,
) -> Result<(builder::Staged, Stats)> {
    let mut staged = builder.finish(results)?;
    let stats = make_stats(&mut staged, counters)?;
    if let Some(p) = &opts.progress {
        p.progress(&counters.report());
    }
    Ok((staged, stats))
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
        warnings: std::mem::take(&mut staged.warnings).into_vec(),
    })
}

/// Converts a tar archive stream into a tree, storing its chunks in `store` (with `None`,
/// chunks are encoded, so the tree has its block keys, but stored nowhere).
pub fn pack_archive<R: Read + Send>(
    mut input: R,
    store: Option<&BlockingStore>,
    opts: &ConvertOptions,
) -> Result<Packed> {
    let counters = Counters::default();
    let input: &mut (dyn Read + Send) = &mut input;
    let (builder, results) = pipeline::run(store, opts, &counters, |sender| {
        let mut b = TreeBuilder::new(0)?;
        tarball::read_archive(input, opts, &counters, sender, &mut b)?;
        Ok(b)
    })?;
    finish(builder, results, &counters, opts)
}

/// Converts a tar archive in memory into a tree without any store (fuzzing, previews).
pub fn archive_to_tree(archive: &[u8], opts: &ConvertOptions) -> Result<Packed> {
    pack_archive(archive, None, opts)
}

/// Converts a directory into a tree, storing chunks in `store`. Symlinks are never
/// followed; owner names are the numeric ids (`root` for 0), as for numeric-owner tars.
pub fn pack_dir(
    dir: &Path,
    store: Option<&BlockingStore>,
    opts: &ConvertOptions,
) -> Result<Packed> {
    let counters = Counters::default();
    let (builder, results) = pipeline::run(store, opts, &counters, |sender| {
        let mut b = TreeBuilder::new(0)?;
        dirpack::read_dir_tree(dir, opts, &counters, sender, &mut b)?;
        Ok(b)
    })?;
    finish(builder, results, &counters, opts)
}

/// Writes the staged tree at `out` (atomically), one directory at a time: an `.flist` for
/// the `.flist` codec, an rfs `.fl` for the rfs codec.
fn write_staged(
    staged: &builder::Staged,
    metadata: &Metadata,
    out: &Path,
    codec: flist_format::Codec,
) -> Result<()> {
    match codec {
        flist_format::Codec::Flist => flist_format::writer::write_flist_with(out, |conn, what| {
            let mut w = flist_format::writer::CatalogWriter::new(conn, what)?;
            staged.write_catalog(&mut w)?;
            w.finish(metadata)?;
            Ok::<(), ConvertError>(())
        }),
        flist_format::Codec::Rfs => flist_format::writer::write_sqlite_with(out, |conn, what| {
            let mut w = flist_format::fl::FlWriter::new(conn, what)?;
            staged.write_catalog(&mut w)?;
            w.finish(metadata)?;
            Ok::<(), ConvertError>(())
        }),
    }
    .map_err(|e| match e {
        ConvertError::Flist(m) => ConvertError::Flist(format!("writing {}: {m}", out.display())),
        e => e,
    })
}

/// Converts a tar stream and writes the flist at `out` with `metadata` (an `.flist`, or an
/// rfs `.fl` when `opts.codec` is [`flist_format::Codec::Rfs`]). The flist is
/// written (atomically) only after the whole archive converted: on any error there is no
/// file at `out` (nor a partial one). The tree never sits in memory: it is staged on disk
/// and written one directory at a time.
pub fn archive_to_flist<R: Read + Send>(
    mut input: R,
    store: &BlockingStore,
    metadata: Metadata,
    out: &Path,
    opts: &ConvertOptions,
) -> Result<Stats> {
    let counters = Counters::default();
    let input: &mut (dyn Read + Send) = &mut input;
    let (builder, results) = pipeline::run(Some(store), opts, &counters, |sender| {
        let mut b = TreeBuilder::new(0)?;
        tarball::read_archive(input, opts, &counters, sender, &mut b)?;
        Ok(b)
    })?;
    let (staged, stats) = finish_staged(builder, results, &counters, opts)?;
    write_staged(&staged, &metadata, out, opts.codec)?;
    Ok(stats)
}

/// Converts a directory and writes the flist at `out` with `metadata` (atomically, only on
/// success; the tree is staged on disk as for [`archive_to_flist`]; the format follows
/// `opts.codec`).
pub fn dir_to_flist(
    dir: &Path,
    store: &BlockingStore,
    metadata: Metadata,
    out: &Path,
    opts: &ConvertOptions,
) -> Result<Stats> {
    let counters = Counters::default();
    let (builder, results) = pipeline::run(Some(store), opts, &counters, |sender| {
        let mut b = TreeBuilder::new(0)?;
        dirpack::read_dir_tree(dir, opts, &counters, sender, &mut b)?;
        Ok(b)
    })?;
    let (staged, stats) = finish_staged(builder, results, &counters, opts)?;
    write_staged(&staged, &metadata, out, opts.codec)?;
    Ok(stats)
}
