//! Restoring a tree from its chunk store into a directory, and verifying that a store
//! holds (intact) every chunk of a tree.
//!
//! Extraction never writes outside the destination: the destination must be empty, every
//! directory on the way is one this extraction created, files are created with
//! `O_CREAT|O_EXCL|O_NOFOLLOW`, symlinks are created only after all contents are written, and
//! metadata is applied without following symlinks.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use flist_chunks::{ChunkError, Pipeline};
use flist_format::codec::CHUNK_SIZE;
use flist_format::{Block, Kind, NodeId, SpecialKind, Tree};
use flist_store::BlockingStore;

use crate::error::{io_err, ConvertError, Result};

/// Options of [`extract`].
#[derive(Clone)]
pub struct ExtractOptions {
    /// Restore owners (`None`: only when running as root).
    pub owners: Option<bool>,
    /// Chunks per `get_many` request.
    pub batch_chunks: usize,
    /// Requests in flight at once.
    pub batches_in_flight: usize,
    /// Decoding threads (0: one per core).
    pub workers: usize,
    /// Continue an extraction that stopped (e.g. on a store error) in the same
    /// destination: existing directories are kept, chunks already written (their content
    /// hashes to the chunk's key) are not fetched again, everything else is redone.
    pub resume: bool,
    /// Called with (chunks written, chunks to write) as the extraction advances.
    pub progress: Option<Arc<dyn Fn(u64, u64) + Send + Sync>>,
}

impl std::fmt::Debug for ExtractOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtractOptions")
            .field("owners", &self.owners)
            .field("batch_chunks", &self.batch_chunks)
            .field("batches_in_flight", &self.batches_in_flight)
            .field("workers", &self.workers)
            .field("resume", &self.resume)
            .finish_non_exhaustive()
    }
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            owners: None,
            batch_chunks: 16,
            batches_in_flight: 4,
            workers: 0,
            resume: false,
            progress: None,
        }
    }
}

/// What [`extract`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtractStats {
    /// Regular files written.
    pub files: u64,
    /// Directories created (the destination itself excluded).
    pub directories: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Fifos, devices and sockets created.
    pub specials: u64,
    /// Of those, socket nodes (`mknod S_IFSOCK`). The reference writes fifos and devices
    /// as sockets, so a socket in an flist is often a fifo or device of the source.
    pub sockets: u64,
    /// Specials not created: devices when not root.
    pub specials_skipped: u64,
    /// Chunks found already written when resuming.
    pub chunks_reused: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Distinct chunks fetched.
    pub chunks_fetched: u64,
    /// Whether owners were restored.
    pub owners_restored: bool,
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Where each distinct chunk goes: `(file path, offset)` pairs.
type Targets = Vec<(Block, Vec<(usize, u64)>)>;

/// Restores `tree` into `dest` (created if absent; must be empty), fetching file contents
/// from `store`. Blocking: call from a plain thread or `spawn_blocking`.
pub fn extract(
    tree: &Tree,
    dest: &Path,
    store: &BlockingStore,
    opts: &ExtractOptions,
) -> Result<ExtractStats> {
    let dest_err = |reason: &str| ConvertError::Destination {
        path: dest.to_path_buf(),
        reason: reason.into(),
    };
    match fs::symlink_metadata(dest) {
        Ok(md) if md.is_dir() && opts.resume => {}
        Ok(md) if md.is_dir() => {
            if fs::read_dir(dest).map_err(io_err(dest))?.next().is_some() {
                return Err(dest_err(
                    "not empty (extraction only writes into an empty directory)",
                ));
            }
        }
        Ok(_) => return Err(dest_err("exists and is not a directory")),
        Err(_) => fs::create_dir_all(dest).map_err(io_err(dest))?,
    }
    let root = is_root();
    let owners = opts.owners.unwrap_or(root);
    let mut stats = ExtractStats {
        owners_restored: owners,
        ..Default::default()
    };

    // 1. Directories, empty files, specials (pre-order: parents first).
    let order: Vec<NodeId> = tree.walk().collect();
    let mut paths: HashMap<NodeId, PathBuf> = HashMap::with_capacity(order.len());
    let mut files: Vec<PathBuf> = Vec::new();
    let mut chunks: HashMap<Block, usize> = HashMap::new();
    let mut targets: Targets = Vec::new();
    let mut symlinks: Vec<(NodeId, String)> = Vec::new();
    for &id in &order {
        let node = tree.node(id);
        let path = if id == Tree::ROOT {
            dest.to_path_buf()
        } else {
            let parent = paths
                .get(&node.parent)
                .ok_or_else(|| ConvertError::Internal("parent not created".into()))?;
            parent.join(&node.name)
        };
        let existing = if opts.resume {
            fs::symlink_metadata(&path).ok()
        } else {
            None
        };
        if let Some(md) = &existing {
            // Resuming: keep directories and regular files of the right kind, redo the rest.
            let keep = match node.kind {
                Kind::Dir { .. } => md.is_dir(),
                Kind::File { .. } => md.is_file(),
                _ => false,
            };
            if !keep {
                if md.is_dir() {
                    fs::remove_dir_all(&path).map_err(io_err(&path))?;
                } else {
                    fs::remove_file(&path).map_err(io_err(&path))?;
                }
            }
        }
        let exists = |k: fn(&fs::Metadata) -> bool| existing.as_ref().is_some_and(k);
        match &node.kind {
            Kind::Dir { .. } => {
                if id != Tree::ROOT {
                    if !exists(fs::Metadata::is_dir) {
                        fs::create_dir(&path).map_err(io_err(&path))?;
                    }
                    stats.directories += 1;
                }
                // Owner-writable until metadata is applied at the end.
                fs::set_permissions(&path, fs::Permissions::from_mode(0o700))
                    .map_err(io_err(&path))?;
            }
            Kind::File { size, blocks } => {
                let resumed = exists(fs::Metadata::is_file);
                if resumed {
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                        .map_err(io_err(&path))?;
                }
                let f = fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(!resumed)
                    .mode(0o600)
                    .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                    .open(&path)
                    .map_err(io_err(&path))?;
                let old_len = if resumed {
                    f.metadata().map_err(io_err(&path))?.len()
                } else {
                    0
                };
                f.set_len(*size).map_err(io_err(&path))?;
                let fi = files.len();
                files.push(path.clone());
                let mut buf = Vec::new();
                for (i, b) in blocks.iter().enumerate() {
                    let off = i as u64 * CHUNK_SIZE as u64;
                    if resumed && off < old_len {
                        let len = (*size - off).min(CHUNK_SIZE as u64) as usize;
                        buf.resize(len, 0);
                        if f.read_exact_at(&mut buf, off).is_ok()
                            && flist_chunks::plain_matches(b, &buf)
                        {
                            stats.chunks_reused += 1;
                            continue;
                        }
                    }
                    let t = *chunks.entry(*b).or_insert_with(|| {
                        targets.push((*b, Vec::new()));
                        targets.len() - 1
                    });
                    targets[t].1.push((fi, off));
                }
                stats.files += 1;
                stats.bytes += size;
            }
            Kind::Symlink { target } => symlinks.push((id, target.clone())),
            Kind::Special { kind, rdev } => {
                use nix::sys::stat::{makedev, mknod, Mode, SFlag};
                let perm = Mode::from_bits_truncate(0o600);
                let made = match kind {
                    SpecialKind::Fifo => Some(nix::unistd::mkfifo(&path, perm)),
                    // Linux lets anyone create socket nodes with mknod.
                    SpecialKind::Socket => Some(mknod(&path, SFlag::S_IFSOCK, perm, 0)),
                    SpecialKind::Chardev | SpecialKind::Block if root => {
                        let (maj, min) = rdev.unwrap_or((0, 0));
                        let flag = if *kind == SpecialKind::Block {
                            SFlag::S_IFBLK
                        } else {
                            SFlag::S_IFCHR
                        };
                        Some(mknod(&path, flag, perm, makedev(maj.into(), min.into())))
                    }
                    _ => None,
                };
                match made {
                    Some(r) => {
                        r.map_err(|e| ConvertError::Io {
                            path: path.clone(),
                            source: e.into(),
                        })?;
                        stats.specials += 1;
                        if *kind == SpecialKind::Socket {
                            stats.sockets += 1;
                        }
                    }
                    None => stats.specials_skipped += 1,
                }
            }
        }
        paths.insert(id, path);
    }

    // 2. File contents: distinct chunks fetched in pipelined batches, decoded and written
    //    by workers.
    stats.chunks_fetched = targets.len() as u64;
    fetch_and_write(&targets, &files, store, opts)?;

    // 3. Symlinks, now that no more content is written.
    for (id, target) in &symlinks {
        let path = &paths[id];
        if opts.resume && fs::symlink_metadata(path).is_ok() {
            fs::remove_file(path).map_err(io_err(path))?;
        }
        std::os::unix::fs::symlink(target, path).map_err(io_err(path))?;
        stats.symlinks += 1;
    }

    // 4. Metadata, children before parents so directory times stick; owner before mode
    //    (chown clears setuid); nothing here follows symlinks.
    for &id in order.iter().rev() {
        let node = tree.node(id);
        let Some(path) = paths.get(&id) else { continue };
        let is_link = matches!(node.kind, Kind::Symlink { .. });
        let skipped_special =
            matches!(node.kind, Kind::Special { .. }) && fs::symlink_metadata(path).is_err();
        if skipped_special {
            continue;
        }
        if owners {
            std::os::unix::fs::lchown(path, Some(node.meta.uid), Some(node.meta.gid))
                .map_err(io_err(path))?;
        }
        if !is_link {
            fs::set_permissions(path, fs::Permissions::from_mode(node.meta.mode & 0o7777))
                .map_err(io_err(path))?;
        }
        let t = filetime::FileTime::from_unix_time(node.meta.mtime.into(), 0);
        filetime::set_symlink_file_times(path, t, t).map_err(io_err(path))?;
    }
    Ok(stats)
}

impl ExtractOptions {
    fn pipeline(&self) -> Pipeline {
        Pipeline {
            batch_chunks: self.batch_chunks,
            batches_in_flight: self.batches_in_flight,
            workers: self.workers,
        }
    }
}

/// A chunk-reading failure as the converter reports it (`chunk` names the chunk).
fn chunk_err(chunk: impl FnOnce() -> String, e: ChunkError) -> ConvertError {
    match e {
        ChunkError::Store { store, source } => ConvertError::Store { store, source },
        ChunkError::Codec(source) => ConvertError::Codec {
            chunk: chunk(),
            source,
        },
        other => ConvertError::Internal(other.to_string()),
    }
}

impl From<ChunkError> for ConvertError {
    fn from(e: ChunkError) -> Self {
        chunk_err(String::new, e)
    }
}

/// Fetches every distinct chunk (the chunk-reading pipeline: pipelined batches, decoded
/// on every core) and writes it at each of its offsets.
fn fetch_and_write(
    targets: &Targets,
    files: &[PathBuf],
    store: &BlockingStore,
    opts: &ExtractOptions,
) -> Result<()> {
    let blocks: Vec<Block> = targets.iter().map(|(b, _)| *b).collect();
    let written = AtomicU64::new(0);
    let total = targets.len() as u64;
    opts.pipeline()
        .for_each(store, &blocks, |i, plain| -> Result<()> {
            let (block, dests) = &targets[i];
            let chunk = || block.id_hex();
            let plain = plain.map_err(|e| match e {
                ChunkError::Missing { store, .. } => ConvertError::MissingChunk {
                    chunk: chunk(),
                    path: dests
                        .first()
                        .map(|(f, _)| files[*f].display().to_string())
                        .unwrap_or_default(),
                    store,
                },
                e => chunk_err(chunk, e),
            })?;
            for (fi, off) in dests {
                let path = &files[*fi];
                let f = fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                    .open(path)
                    .map_err(io_err(path))?;
                f.write_all_at(&plain, *off).map_err(io_err(path))?;
            }
            let n = written.fetch_add(1, Ordering::Relaxed) + 1;
            if let Some(p) = &opts.progress {
                p(n, total);
            }
            Ok(())
        })
}

/// A chunk a tree references that the store lacks or holds corrupted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadChunk {
    /// Store key (hex).
    pub key: String,
    /// The first file that references it.
    pub path: String,
    /// Why it is bad (`missing`, or the decoding error).
    pub reason: String,
}

/// Result of [`verify`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Distinct chunks referenced by the tree.
    pub chunks: u64,
    /// Chunks absent from the store.
    pub missing: Vec<BadChunk>,
    /// Chunks present but failing decryption, decompression or a hash check (deep only).
    pub corrupt: Vec<BadChunk>,
}

impl VerifyReport {
    /// True when nothing is missing or corrupt.
    pub fn is_ok(&self) -> bool {
        self.missing.is_empty() && self.corrupt.is_empty()
    }
}

/// Checks that `store` holds every chunk of `tree` (`exists_many` in batches); with
/// `deep`, also fetches each chunk (pipelined `get_many`) and checks both hashes by
/// decoding it, on one decoding thread per core. Blocking.
pub fn verify(tree: &Tree, store: &BlockingStore, deep: bool) -> Result<VerifyReport> {
    let mut seen: HashMap<Block, ()> = HashMap::new();
    let mut list: Vec<(Block, String)> = Vec::new();
    for id in tree.walk() {
        if let Kind::File { blocks, .. } = &tree.node(id).kind {
            for b in blocks {
                if seen.insert(*b, ()).is_none() {
                    list.push((*b, format!("/{}", tree.path_of(id))));
                }
            }
        }
    }
    let mut report = VerifyReport {
        chunks: list.len() as u64,
        ..Default::default()
    };
    let store_err = |source| ConvertError::Store {
        store: store.to_string(),
        source,
    };
    if deep {
        // Fetching finds the missing chunks too: no separate existence pass.
        let all: Vec<&(Block, String)> = list.iter().collect();
        let (missing, corrupt) = deep_check(&all, store)?;
        report.missing = missing;
        report.corrupt = corrupt;
        return Ok(report);
    }
    for part in list.chunks(512) {
        let keys: Vec<Vec<u8>> = part.iter().map(|(b, _)| b.id().to_vec()).collect();
        let exists = store.exists_many(&keys).map_err(store_err)?;
        for (item, e) in part.iter().zip(exists) {
            if !e {
                report.missing.push(BadChunk {
                    key: item.0.id_hex(),
                    path: item.1.clone(),
                    reason: "missing".into(),
                });
            }
        }
    }
    Ok(report)
}

/// Fetches every chunk of `present` (the chunk-reading pipeline) and decodes each, both
/// hashes checked. Returns the chunks found missing and those failing to decode, in the
/// order of `present`.
fn deep_check(
    present: &[&(Block, String)],
    store: &BlockingStore,
) -> Result<(Vec<BadChunk>, Vec<BadChunk>)> {
    let blocks: Vec<Block> = present.iter().map(|(b, _)| *b).collect();
    let found = std::sync::Mutex::new(Vec::new());
    Pipeline::default().for_each(store, &blocks, |i, r| -> Result<()> {
        let bad = |corrupt: bool, reason: String| {
            let (block, path) = present[i];
            let b = BadChunk {
                key: block.id_hex(),
                path: path.clone(),
                reason,
            };
            found
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((i, corrupt, b));
        };
        match r {
            Ok(_) => {}
            Err(ChunkError::Missing { .. }) => bad(false, "missing".into()),
            Err(ChunkError::Codec(e)) => bad(true, e.to_string()),
            Err(e) => return Err(e.into()),
        }
        Ok(())
    })?;
    let mut found = found.into_inner().unwrap_or_else(|p| p.into_inner());
    found.sort_by_key(|(i, _, _)| *i);
    let (corrupt, missing): (Vec<_>, Vec<_>) = found.into_iter().partition(|(_, c, _)| *c);
    Ok((
        missing.into_iter().map(|(_, _, b)| b).collect(),
        corrupt.into_iter().map(|(_, _, b)| b).collect(),
    ))
}
