//! `dir://` — an embedded store: one file per chunk under `<root>/<hex[0..2]>/<hex>`.
//!
//! Writes are atomic: the value goes to an unnamed file in the target directory
//! (`O_TMPFILE`), which is then linked to its final name (failing if the name exists, which
//! gives the exact [`SetOutcome`]). Where `O_TMPFILE` is not supported, a named temporary
//! file is hard-linked then removed, or renamed on filesystems without hard links. The
//! unnamed file saves a directory entry creation and removal per chunk, which is most of
//! the kernel's work when packing.
//! Readers never see a partial chunk, and concurrent writers of the same key are harmless
//! (same key, same content). Batches run in parallel on the blocking thread pool; reads
//! first copy what the page cache holds without waiting (a small cached chunk is then
//! answered on the calling task, with no hand-off), and only the rest go to the pool.
//!
//! Durability contract:
//! - A chunk under its final name is always whole: a writer killed at any moment leaves
//!   the chunk absent (or, on the named-file fallback, a `.tmp-` file that is never a chunk
//!   name) — tested by killing a writing process mid-batch (`tests/dir_crash.rs`).
//! - Default (`dir:///path`): no `fsync`. An OS crash or power loss may lose chunks written
//!   in the last writeback interval, and on a filesystem that orders nothing (ext4 without
//!   a journal, as on the test machines) may leave such a chunk empty or zero-filled under
//!   its name; readers detect that (the key is the hash of the bytes, checked by every
//!   decode), a re-conversion does not (`set` skips existing names).
//! - `dir:///path?fsync=1`: each chunk's data is synced before it is linked into place, so a
//!   chunk is absent or whole after a power loss too (the link itself may be lost: the
//!   chunk is then absent and the next `set` writes it again). Costs one `fsync` per chunk.
//!
//! New store roots get ext4's "top of hierarchy" flag (see `mark_top_dir`).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::hex_key;
use crate::{SetOutcome, Store, StoreError};

/// How many blocking tasks a batch is spread over.
const PARALLELISM: usize = 8;

/// Reads of at most this many keys run inline on the calling task instead of being handed
/// to the blocking pool. A chunk read is almost always a page-cache copy of a few
/// microseconds, far less than the two thread hand-offs (which on a busy machine wait for a
/// time slice each); a cold read of a few files holds one worker briefly, as 0-db's own
/// event loop does. Bigger batches are spread over the blocking pool.
const INLINE_READS: usize = 4;

/// Chunk files up to this size whose pages are all in the page cache are read on the calling
/// task whatever the batch size (see [`Inner::probe`]).
const CACHED_READ: usize = 16 * 1024;

/// Files a batch keeps open between its first, non-blocking reads and the rest (under the
/// usual limit of 1024 descriptors).
const KEEP_OPEN: usize = 64;

/// How far [`Inner::probe`] got with a chunk.
enum Probe {
    /// The whole value, read from the page cache.
    Hit(Bytes),
    /// The file, open, and the bytes read from it so far (the file position is past them).
    Partial(fs::File, Vec<u8>),
    /// Not opened (missing, another layout, an error): read it the ordinary way.
    Miss,
}

/// Prefix of temporary files; never a valid hex chunk name.
const TMP_PREFIX: &str = ".tmp-";

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A chunk store in a local directory.
#[derive(Clone, Debug)]
pub struct DirStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    fsync: bool,
    name: String,
    /// `<root>/<xx>` known to exist, by first key byte (saves a `mkdir` per chunk).
    made: [AtomicBool; 256],
    /// `O_TMPFILE` failed here once: use named temporary files.
    no_tmpfile: AtomicBool,
}

impl Inner {
    fn new(root: PathBuf, fsync: bool, name: String) -> Self {
        Inner {
            root,
            fsync,
            name,
            made: std::array::from_fn(|_| AtomicBool::new(false)),
            no_tmpfile: AtomicBool::new(false),
        }
    }
}

impl std::fmt::Display for DirStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.inner.name)
    }
}

impl DirStore {
    /// Opens (creating it if needed) a store rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        let name = format!("dir://{}", root.display());
        create_root(&name, &root)?;
        mark_top_dir(&root);
        Ok(DirStore {
            inner: Arc::new(Inner::new(root, false, name)),
        })
    }

    /// Makes every write `fsync` the chunk before publishing it (durable across power loss,
    /// slower). Off by default. URL form: `dir:///path?fsync=1`.
    pub fn with_fsync(self, fsync: bool) -> Self {
        let Inner { root, name, .. } = &*self.inner;
        DirStore {
            inner: Arc::new(Inner::new(root.clone(), fsync, name.clone())),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The file a key is stored in: `<root>/<hex[0..2]>/<hex>`.
    pub fn path_of(&self, key: &[u8]) -> Result<PathBuf, StoreError> {
        self.inner.path_of(key)
    }

    /// Runs `f` over `items` on up to [`PARALLELISM`] blocking tasks, keeping input order.
    async fn batch<T, R, F>(&self, items: Vec<T>, f: F) -> Result<Vec<R>, StoreError>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(&Inner, T) -> Result<R, StoreError> + Send + Sync + 'static,
    {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let f = Arc::new(f);
        let per_task = items.len().div_ceil(PARALLELISM).max(1);
        let mut tasks = Vec::new();
        let mut items = items.into_iter();
        loop {
            let part: Vec<T> = items.by_ref().take(per_task).collect();
            if part.is_empty() {
                break;
            }
            let inner = self.inner.clone();
            let f = f.clone();
            tasks.push(tokio::task::spawn_blocking(move || {
                part.into_iter()
                    .map(|t| f(&inner, t))
                    .collect::<Result<Vec<R>, StoreError>>()
            }));
        }
        let mut out = Vec::new();
        for task in tasks {
            let part = task.await.map_err(|e| StoreError::Other {
                store: self.inner.name.clone(),
                message: format!("worker task failed: {e}"),
            })??;
            out.extend(part);
        }
        Ok(out)
    }

    async fn one<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Inner) -> Result<R, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| StoreError::Other {
                store: self.inner.name.clone(),
                message: format!("worker task failed: {e}"),
            })?
    }
}

/// Creates a store's root directory (and its parents) if missing.
pub(crate) fn create_root(store: &str, root: &Path) -> Result<(), StoreError> {
    fs::create_dir_all(root).map_err(|source| StoreError::Io {
        store: store.to_owned(),
        key: None,
        path: root.display().to_string(),
        source,
    })
}

/// Marks a new (empty) store root as the top of a directory hierarchy (`chattr +T`), so
/// ext4's Orlov allocator spreads the 256 fan-out directories (and with them the chunk
/// inodes, allocated in their directory's block group) over uncrowded block groups instead
/// of the parent's. Measured on the minbase conversion: a group crowded with recently
/// deleted inodes (a build tree's churn) made inode allocation scan for seconds
/// (`recently_deleted`), 2-14 s instead of 1.9 s. A hint only: ignored where unsupported.
fn mark_top_dir(root: &Path) {
    use rustix::fs::{ioctl_getflags, ioctl_setflags, IFlags};
    let empty = fs::read_dir(root).is_ok_and(|mut d| d.next().is_none());
    if !empty {
        return;
    }
    let Ok(dir) = fs::File::open(root) else {
        return;
    };
    if let Ok(flags) = ioctl_getflags(&dir) {
        if !flags.contains(IFlags::TOPDIR) {
            let _ = ioctl_setflags(&dir, flags | IFlags::TOPDIR);
        }
    }
}

impl Inner {
    fn path_of(&self, key: &[u8]) -> Result<PathBuf, StoreError> {
        if key.is_empty() {
            return Err(StoreError::InvalidKey {
                store: self.name.clone(),
                key: String::new(),
                reason: "empty key".into(),
            });
        }
        let hex = hex::encode(key);
        Ok(self.root.join(&hex[..2]).join(hex))
    }

    fn io_err(&self, key: &[u8], path: &Path, source: io::Error) -> StoreError {
        StoreError::Io {
            store: self.name.clone(),
            key: Some(hex_key(key)),
            path: path.display().to_string(),
            source,
        }
    }

    /// The flat name `<root>/<hex>` that rfs v2.0.7 writes (newer rfs, like this store,
    /// writes `<hex[0..2]>/<hex>` and reads both).
    fn flat_path_of(&self, key: &[u8]) -> PathBuf {
        self.root.join(hex::encode(key))
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        let path = self.path_of(key)?;
        match read_chunk(&path) {
            Ok(v) => Ok(Some(Bytes::from(v))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let flat = self.flat_path_of(key);
                match read_chunk(&flat) {
                    Ok(v) => Ok(Some(Bytes::from(v))),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(self.io_err(key, &flat, e)),
                }
            }
            Err(e) => Err(self.io_err(key, &path, e)),
        }
    }

    /// Starts reading `key` without waiting for the disk: opens its file and copies what
    /// the page cache holds of its first [`CACHED_READ`] bytes (`preadv2` with
    /// `RWF_NOWAIT`). A small chunk wholly cached is then read ([`Probe::Hit`]); otherwise
    /// the open file and the bytes read so far are kept for [`Inner::finish`] when
    /// `keep_open`. Opening may read a cold directory block or inode; the data never is.
    fn probe(&self, key: &[u8], keep_open: bool) -> Probe {
        use rustix::io::{preadv2, ReadWriteFlags};
        let Ok(path) = self.path_of(key) else {
            return Probe::Miss;
        };
        let Ok(file) = fs::File::open(path) else {
            return Probe::Miss; // missing (or flat layout): the ordinary read answers
        };
        let mut buf = vec![0u8; CACHED_READ];
        // At the file position (`u64::MAX`), so that a blocking read goes on from there.
        let read = preadv2(
            &file,
            &mut [io::IoSliceMut::new(&mut buf)],
            u64::MAX,
            ReadWriteFlags::NOWAIT,
        );
        let n = read.unwrap_or(0); // not cached (EAGAIN) or not supported: read it all later
        buf.truncate(n);
        // A read that must not wait stops early only where a page is not cached, so on a
        // page boundary (a multiple of 4 KiB whatever the page size): a count off a boundary
        // is the end of the file; on one, the size says whether it is.
        let whole = read.is_ok()
            && n < CACHED_READ
            && (n % 4096 != 0 || file.metadata().is_ok_and(|m| m.len() == n as u64));
        if whole {
            buf.shrink_to_fit();
            Probe::Hit(Bytes::from(buf))
        } else if keep_open {
            Probe::Partial(file, buf)
        } else {
            Probe::Miss
        }
    }

    /// The value of `key`, finishing what [`Inner::probe`] began (this may wait for the disk).
    fn finish(&self, key: &[u8], probe: Probe) -> Result<Option<Bytes>, StoreError> {
        use std::io::Read;
        match probe {
            Probe::Hit(v) => Ok(Some(v)),
            Probe::Partial(mut file, mut buf) => match file.read_to_end(&mut buf) {
                Ok(_) => Ok(Some(Bytes::from(buf))),
                Err(e) => Err(self.io_err(key, &self.path_of(key)?, e)),
            },
            Probe::Miss => self.get(key),
        }
    }

    fn exists(&self, key: &[u8]) -> Result<bool, StoreError> {
        let path = self.path_of(key)?;
        for p in [path, self.flat_path_of(key)] {
            match fs::symlink_metadata(&p) {
                Ok(m) if m.is_file() => return Ok(true),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.io_err(key, &p, e)),
            }
        }
        Ok(false)
    }

    fn set(&self, key: &[u8], value: &[u8]) -> Result<SetOutcome, StoreError> {
        let path = self.path_of(key)?;
        if self.exists(key)? {
            return Ok(SetOutcome::AlreadyPresent);
        }
        let dir = path.parent().unwrap_or(&self.root);
        let made = &self.made[usize::from(key[0])];
        if !made.load(Ordering::Relaxed) {
            fs::create_dir_all(dir).map_err(|e| self.io_err(key, dir, e))?;
            made.store(true, Ordering::Relaxed);
        }
        if !self.no_tmpfile.load(Ordering::Relaxed) {
            match self.write_unnamed(key, dir, &path, value) {
                Ok(Some(outcome)) => return Ok(outcome),
                Ok(None) => self.no_tmpfile.store(true, Ordering::Relaxed),
                Err(e) => return Err(e),
            }
        }
        let tmp = dir.join(format!(
            "{TMP_PREFIX}{}-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed),
            hex::encode(key)
        ));
        let result = self.write_tmp_and_publish(key, &tmp, &path, value);
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Writes `value` to an unnamed file in `dir` and links it as `path`. `Ok(None)` when
    /// the filesystem (or kernel, or a missing `/proc`) does not allow it.
    fn write_unnamed(
        &self,
        key: &[u8],
        dir: &Path,
        path: &Path,
        value: &[u8],
    ) -> Result<Option<SetOutcome>, StoreError> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = match fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_TMPFILE)
            .mode(0o644)
            .open(dir)
        {
            Ok(f) => f,
            // not supported by this filesystem or kernel
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(nix::libc::EOPNOTSUPP | nix::libc::EISDIR | nix::libc::EINVAL)
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(self.io_err(key, dir, e)),
        };
        file.write_all(value)
            .map_err(|e| self.io_err(key, path, e))?;
        if self.fsync {
            file.sync_all().map_err(|e| self.io_err(key, path, e))?;
        }
        let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
        match nix::unistd::linkat(
            nix::fcntl::AT_FDCWD,
            proc_path.as_str(),
            nix::fcntl::AT_FDCWD,
            path,
            nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
        ) {
            Ok(()) => Ok(Some(SetOutcome::Written)),
            Err(nix::errno::Errno::EEXIST) => Ok(Some(SetOutcome::AlreadyPresent)),
            Err(
                e @ (nix::errno::Errno::ENOSPC
                | nix::errno::Errno::EDQUOT
                | nix::errno::Errno::EIO
                | nix::errno::Errno::EROFS),
            ) => Err(self.io_err(key, path, io::Error::from(e))),
            // no /proc, or no hard links here: the named-file path handles it
            Err(_) => Ok(None),
        }
    }

    fn write_tmp_and_publish(
        &self,
        key: &[u8],
        tmp: &Path,
        path: &Path,
        value: &[u8],
    ) -> Result<SetOutcome, StoreError> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(tmp)
            .map_err(|e| self.io_err(key, tmp, e))?;
        file.write_all(value)
            .map_err(|e| self.io_err(key, tmp, e))?;
        if self.fsync {
            file.sync_all().map_err(|e| self.io_err(key, tmp, e))?;
        }
        drop(file);
        // Hard link: atomic, and fails when another writer got there first.
        match fs::hard_link(tmp, path) {
            Ok(()) => {
                let _ = fs::remove_file(tmp);
                Ok(SetOutcome::Written)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let _ = fs::remove_file(tmp);
                Ok(SetOutcome::AlreadyPresent)
            }
            Err(_) => {
                // No hard links here (some FUSE/network filesystems): rename is atomic too,
                // and replacing a chunk with the same content is harmless.
                fs::rename(tmp, path).map_err(|e| self.io_err(key, path, e))?;
                Ok(SetOutcome::Written)
            }
        }
    }
}

/// A first read this big answers a small chunk file in one system call (the buffer is
/// zeroed first, so it stays small).
const FIRST_READ: usize = 16 * 1024;

/// Reads a whole chunk file. Chunk files are immutable (written aside, then renamed into
/// place), so a short first read is the end of the file: a small chunk costs `open`, one
/// `read` and `close` (`fs::read` adds a `statx` and a read to see the end).
fn read_chunk(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = fs::File::open(path)?;
    let mut buf = vec![0u8; FIRST_READ];
    let n = loop {
        match f.read(&mut buf) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    if n < FIRST_READ {
        buf.truncate(n);
        buf.shrink_to_fit();
        return Ok(buf);
    }
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

#[async_trait]
impl Store for DirStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        match self.inner.probe(key, true) {
            Probe::Hit(v) => Ok(Some(v)),
            probe => {
                let key = key.to_vec();
                self.one(move |s| s.finish(&key, probe)).await
            }
        }
    }

    async fn exists(&self, key: &[u8]) -> Result<bool, StoreError> {
        let key = key.to_vec();
        self.one(move |s| s.exists(&key)).await
    }

    async fn set(&self, key: &[u8], value: Bytes) -> Result<SetOutcome, StoreError> {
        let key = key.to_vec();
        self.one(move |s| s.set(&key, &value)).await
    }

    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Bytes>>, StoreError> {
        // Small chunks already in the page cache (what a node's pipelined `GET`s mostly
        // hit) are copied here: a hand-off to the blocking pool and back costs more than
        // the copy. The rest are finished inline when few (as 0-db's own event loop would),
        // else spread over the blocking pool.
        let mut out: Vec<Option<Bytes>> = Vec::with_capacity(keys.len());
        let mut rest = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            match self.inner.probe(k, rest.len() < KEEP_OPEN) {
                Probe::Hit(v) => out.push(Some(v)),
                probe => {
                    out.push(None);
                    rest.push((i, probe));
                }
            }
        }
        if rest.len() <= INLINE_READS {
            for (i, probe) in rest {
                out[i] = self.inner.finish(&keys[i], probe)?;
            }
            return Ok(out);
        }
        let slots: Vec<usize> = rest.iter().map(|(i, _)| *i).collect();
        let work: Vec<(Vec<u8>, Probe)> = rest
            .into_iter()
            .map(|(i, probe)| (keys[i].clone(), probe))
            .collect();
        let got = self
            .batch(work, |s, (k, probe)| s.finish(&k, probe))
            .await?;
        for (i, v) in slots.into_iter().zip(got) {
            out[i] = v;
        }
        Ok(out)
    }

    async fn exists_many(&self, keys: &[Vec<u8>]) -> Result<Vec<bool>, StoreError> {
        self.batch(keys.to_vec(), |s, k| s.exists(&k)).await
    }

    async fn set_many(&self, items: &[(Vec<u8>, Bytes)]) -> Result<Vec<SetOutcome>, StoreError> {
        self.batch(items.to_vec(), |s, (k, v)| s.set(&k, &v)).await
    }
}
