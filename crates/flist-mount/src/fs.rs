//! The FUSE file system: the flist's tree served read-only, contents through a
//! [`ChunkSource`].
//!
//! Inode numbers are tree node ids plus one (the root is 1). Metadata (lookup, getattr,
//! readdir, readlink, statfs, xattrs) comes from the tree loaded from the flist database and
//! never touches the store. A read fetches only the chunks covering the requested range; a
//! file read sequentially gets its next chunks loaded ahead.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flist_format::codec::CHUNK_SIZE;
use flist_format::{Kind, NodeId, SpecialKind, Tree};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};

use flist_chunks::{ChunkSource, ReadAhead};

use crate::access::AccessLog;

/// Attributes and entries never change while mounted.
const TTL: Duration = Duration::from_secs(3600);

/// Read-ahead window of a file's first sequential reads, in chunks (it doubles from there).
const INITIAL_WINDOW: usize = 4;

/// The bytes of a read: a slice of one chunk as loaded (no copy), or assembled.
enum Bytes {
    Chunk(Arc<Vec<u8>>, std::ops::Range<usize>),
    Owned(Vec<u8>),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Chunk(c, r) => &c[r.clone()],
            Bytes::Owned(v) => v,
        }
    }
}

/// A read-only view of one flist.
pub struct FlistFs {
    tree: Tree,
    overrides: HashMap<NodeId, Arc<Vec<u8>>>,
    source: Arc<ChunkSource>,
    read_ahead: ReadAhead,
    subdirs: HashMap<NodeId, u32>,
    access: Option<Arc<AccessLog>>,
    store: StoreHealth,
}

/// Whether the chunk store answers, as reads find out: the first failure is logged (an
/// error), the reads that fail while it stays down are only counted, and each recovery is
/// logged with that count. A store that is down does not flood the log with one line per
/// read, and does not go unnoticed either.
#[derive(Debug, Default)]
pub struct StoreHealth {
    /// Reads failed since the store stopped answering (0: it answers).
    failed: std::sync::atomic::AtomicU64,
}

impl StoreHealth {
    /// A read of `path` failed with `e`; true when this is the first failure of an outage
    /// (and was logged).
    pub fn failed(&self, path: &str, e: &dyn std::fmt::Display) -> bool {
        let before = self
            .failed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if before == 0 {
            tracing::error!(
                "reading {path}: {e}; reads fail with EIO until the chunk store answers \
                 (further failures are counted, not logged)"
            );
        }
        before == 0
    }

    /// A chunk was read; true when this ended an outage (and was logged).
    pub fn answered(&self) -> bool {
        let failed = self.failed.swap(0, std::sync::atomic::Ordering::Relaxed);
        if failed > 0 {
            tracing::info!(
                "the chunk store answers again: reads work ({failed} failed while it did not)"
            );
        }
        failed > 0
    }
}

impl std::fmt::Debug for FlistFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlistFs")
            .field("entries", &self.tree.len())
            .field("overrides", &self.overrides.len())
            .finish()
    }
}

fn ino(id: NodeId) -> INodeNo {
    INodeNo(id as u64 + 1)
}

fn node_id(ino: INodeNo) -> NodeId {
    (u64::from(ino).saturating_sub(1)) as NodeId
}

fn time(secs: u32) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::from(secs))
}

impl FlistFs {
    /// Serves `tree`; `overrides` gives the content of nodes that have no chunks (see
    /// [`crate::overrides::apply`]); sequential reads load chunks ahead, the window growing
    /// up to `read_ahead` chunks.
    pub fn new(
        tree: Tree,
        overrides: HashMap<NodeId, Arc<Vec<u8>>>,
        source: Arc<ChunkSource>,
        read_ahead: usize,
    ) -> Self {
        let mut subdirs = HashMap::new();
        for id in tree.walk() {
            if id != tree.root() && tree.node(id).kind.is_dir() {
                *subdirs.entry(tree.node(id).parent).or_insert(0) += 1;
            }
        }
        FlistFs {
            tree,
            overrides,
            source,
            read_ahead: ReadAhead::new(INITIAL_WINDOW, read_ahead),
            subdirs,
            access: None,
            store: StoreHealth::default(),
        }
    }

    /// Records in `log` every regular file opened (see [`AccessLog`]).
    pub fn record_access(mut self, log: Arc<AccessLog>) -> Self {
        self.access = Some(log);
        self
    }

    fn file_type(kind: &Kind) -> FileType {
        match kind {
            Kind::Dir { .. } => FileType::Directory,
            Kind::File { .. } => FileType::RegularFile,
            Kind::Symlink { .. } => FileType::Symlink,
            Kind::Special { kind, .. } => match kind {
                SpecialKind::Socket | SpecialKind::Unknown => FileType::Socket,
                SpecialKind::Block => FileType::BlockDevice,
                SpecialKind::Chardev => FileType::CharDevice,
                SpecialKind::Fifo => FileType::NamedPipe,
            },
        }
    }

    fn attr(&self, id: NodeId) -> Option<FileAttr> {
        let n = self.tree.get(id)?;
        let size = n.kind.size();
        let rdev = match &n.kind {
            Kind::Special {
                rdev: Some((major, minor)),
                ..
            } => u32::try_from(nix::sys::stat::makedev(
                u64::from(*major),
                u64::from(*minor),
            ))
            .unwrap_or(0),
            _ => 0,
        };
        let nlink = match &n.kind {
            Kind::Dir { .. } => 2 + self.subdirs.get(&id).copied().unwrap_or(0),
            _ => 1,
        };
        Some(FileAttr {
            ino: ino(id),
            size,
            blocks: size.div_ceil(512),
            atime: time(n.meta.mtime),
            mtime: time(n.meta.mtime),
            ctime: time(n.meta.ctime),
            crtime: time(n.meta.ctime),
            kind: Self::file_type(&n.kind),
            perm: (n.meta.mode & 0o7777) as u16,
            nlink,
            uid: n.meta.uid,
            gid: n.meta.gid,
            rdev,
            blksize: 4096,
            flags: 0,
        })
    }

    /// The directory node `id` (`ENOENT`, `ENOTDIR` otherwise).
    fn dir_node(&self, id: NodeId) -> Result<&flist_format::Node, Errno> {
        match self.tree.get(id) {
            None => Err(Errno::ENOENT),
            Some(n) if !n.kind.is_dir() => Err(Errno::ENOTDIR),
            Some(n) => Ok(n),
        }
    }

    /// Bytes `[offset, offset + size)` of node `id`, fetching only the covering chunks.
    fn read_range(&self, id: NodeId, offset: u64, size: u32) -> Result<Bytes, Errno> {
        if let Some(content) = self.overrides.get(&id) {
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(content.len());
            let end = start.saturating_add(size as usize).min(content.len());
            return Ok(Bytes::Chunk(content.clone(), start..end));
        }
        let Some(Kind::File {
            size: file_size,
            blocks,
        }) = self.tree.get(id).map(|n| &n.kind)
        else {
            return Err(Errno::EISDIR);
        };
        if offset >= *file_size || size == 0 {
            return Ok(Bytes::Owned(Vec::new()));
        }
        let end = (offset + u64::from(size)).min(*file_size);
        let chunk = CHUNK_SIZE as u64;
        let first = (offset / chunk) as usize;
        let last = ((end - 1) / chunk) as usize;
        if last >= blocks.len() {
            tracing::error!(
                "{}: size {} needs chunk {} but the flist lists {}",
                self.tree.path_of(id),
                file_size,
                last + 1,
                blocks.len()
            );
            return Err(Errno::EIO);
        }
        // Sequential reads (from the start, or continuing the previous one) load ahead.
        let ahead = self
            .read_ahead
            .on_read(id as u64, offset, end, first, last, blocks.len());
        if !ahead.is_empty() {
            self.source.prefetch(&blocks[ahead]);
        }
        let piece = |i: usize| -> Result<(Arc<Vec<u8>>, std::ops::Range<usize>), Errno> {
            let data = self.source.get(&blocks[i]).map_err(|e| {
                self.store.failed(&self.tree.path_of(id), &e);
                Errno::EIO
            })?;
            self.store.answered();
            let chunk_start = i as u64 * chunk;
            let from = offset.max(chunk_start) - chunk_start;
            let to = end.min(chunk_start + data.len() as u64) - chunk_start;
            if from > to || to as usize > data.len() {
                tracing::error!(
                    "{}: chunk {i} holds {} bytes, too few for the file size",
                    self.tree.path_of(id),
                    data.len()
                );
                return Err(Errno::EIO);
            }
            Ok((data, from as usize..to as usize))
        };
        let short = || {
            tracing::error!(
                "{}: chunks shorter than the file size",
                self.tree.path_of(id)
            );
            Errno::EIO
        };
        if first == last {
            // the common case: the reply is a slice of the chunk as loaded
            let (data, range) = piece(first)?;
            if (range.len() as u64) < end - offset {
                return Err(short());
            }
            return Ok(Bytes::Chunk(data, range));
        }
        let mut out = Vec::with_capacity((end - offset) as usize);
        for i in first..=last {
            let (data, range) = piece(i)?;
            out.extend_from_slice(&data[range]);
        }
        if (out.len() as u64) < end - offset {
            return Err(short());
        }
        Ok(Bytes::Owned(out))
    }
}

impl Filesystem for FlistFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Larger kernel read-ahead windows mean fewer, larger reads.
        let _ = config.set_max_readahead(1 << 20);
        // The tree never changes while mounted: directory listings carry every entry's
        // attributes (no lookup per entry), symlink targets stay in the kernel's cache,
        // lookups in different directories run in parallel. Each only if the kernel has it.
        for flag in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_PARALLEL_DIROPS,
        ] {
            let _ = config.add_capabilities(flag);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(name) = name.to_str() else {
            reply.error(Errno::ENOENT);
            return;
        };
        match self
            .tree
            .child(node_id(parent), name)
            .and_then(|id| self.attr(id))
        {
            Some(attr) => reply.entry(&TTL, &attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(node_id(ino)) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.tree.get(node_id(ino)).map(|n| &n.kind) {
            Some(Kind::Symlink { target }) => reply.data(target.as_bytes()),
            Some(_) => reply.error(Errno::EINVAL),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            reply.error(Errno::EROFS);
            return;
        }
        match self.tree.get(node_id(ino)).map(|n| &n.kind) {
            Some(Kind::File { .. }) => {
                if let Some(log) = &self.access {
                    log.opened(&self.tree, node_id(ino));
                }
                reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE)
            }
            Some(Kind::Dir { .. }) => reply.error(Errno::EISDIR),
            Some(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.read_range(node_id(ino), offset, size) {
            Ok(data) => reply.data(data.as_slice()),
            Err(e) => reply.error(e),
        }
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.read_ahead.forget(node_id(ino) as u64);
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.tree.get(node_id(ino)).map(|n| &n.kind) {
            Some(Kind::Dir { .. }) => reply.opened(
                FileHandle(0),
                FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
            ),
            Some(_) => reply.error(Errno::ENOTDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let id = node_id(ino);
        let node = match self.dir_node(id) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let dots = [
            (ino, FileType::Directory, "."),
            (self::ino(node.parent), FileType::Directory, ".."),
        ];
        let children = self.tree.children(id).filter_map(|(name, child)| {
            self.tree
                .get(child)
                .map(|n| (self::ino(child), Self::file_type(&n.kind), name))
        });
        for (i, (child_ino, kind, name)) in dots
            .into_iter()
            .chain(children)
            .enumerate()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        {
            if reply.add(child_ino, i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let id = node_id(ino);
        let node = match self.dir_node(id) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let dots = [(id, "."), (node.parent, "..")];
        let children = self.tree.children(id).map(|(name, child)| (child, name));
        for (i, (child, name)) in dots
            .into_iter()
            .chain(children)
            .enumerate()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        {
            let Some(attr) = self.attr(child) else {
                continue;
            };
            if reply.add(attr.ino, i as u64 + 1, name, &TTL, &attr, Generation(0)) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let stats = self.tree.stats();
        reply.statfs(
            stats.fullsize.div_ceil(4096),
            0,
            0,
            self.tree.len() as u64,
            0,
            4096,
            255,
            4096,
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, _name: &OsStr, _size: u32, reply: ReplyXattr) {
        // The flist format holds no extended attributes.
        if self.tree.get(node_id(ino)).is_some() {
            reply.error(Errno::ENODATA);
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        if self.tree.get(node_id(ino)).is_none() {
            reply.error(Errno::ENOENT);
        } else if size == 0 {
            reply.size(0);
        } else {
            reply.data(&[]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StoreHealth;

    #[test]
    fn an_outage_is_logged_once_and_its_end_once() {
        let h = StoreHealth::default();
        assert!(!h.answered(), "no outage yet");
        assert!(h.failed("/a", &"connection refused"), "the first failure");
        assert!(
            !h.failed("/b", &"connection refused"),
            "counted, not logged"
        );
        assert!(!h.failed("/c", &"connection refused"));
        assert!(h.answered(), "the recovery");
        assert!(!h.answered(), "once");
        assert!(h.failed("/a", &"timeout"), "a new outage is logged again");
    }
}
