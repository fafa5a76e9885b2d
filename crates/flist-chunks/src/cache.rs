//! The persistent on-disk cache of decoded chunks.
//!
//! Layout under the cache directory:
//! - `chunks/<hh>/<hex of the store key>`: the decoded (plaintext) chunk;
//! - `tmp/`: files being written, renamed into `chunks/` when complete;
//! - `lock`: `flock`ed exclusively while evicting.
//!
//! The cache is content-addressed (the store key of a chunk names it), so every mount of
//! every flist shares it. A chunk is written to `tmp/` then renamed into place: a reader
//! never sees a partial file, two mounts writing the same chunk both succeed, and a crash
//! leaves at most a stale temporary file (removed at the next start). Every hit is checked
//! against the plaintext hash before use, so a damaged file is dropped and fetched again.
//!
//! The size is bounded: the cache counts what it writes, and when the total passes the
//! bound it takes the lock, scans the directory and deletes the least recently used files
//! (the modification time is set on every hit) until it is under 90% of the bound.
//! Concurrent mounts each evict under the same lock; a file deleted while another mount
//! reads it stays readable through the open descriptor.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use flist_format::Block;

use crate::error::ChunkError;
use crate::verify::plain_matches;

/// Temporary files older than this are leftovers of a crash.
const STALE_TMP: Duration = Duration::from_secs(3600);

/// A directory of decoded chunks shared by every mount (and any reader), bounded in size.
#[derive(Debug)]
pub struct ChunkCache {
    root: PathBuf,
    limit: u64,
    /// Bytes this process believes the cache holds (re-measured at each eviction).
    used: AtomicU64,
    /// Serialises evictions inside this process.
    evicting: Mutex<()>,
    seq: AtomicU64,
}

impl ChunkCache {
    /// Opens (creating if needed) the cache in `root`, bounded to `limit` bytes. Removes
    /// temporary files left by a crash and measures the current size.
    pub fn open(root: impl Into<PathBuf>, limit: u64) -> Result<Self, ChunkError> {
        let root = root.into();
        for sub in ["chunks", "tmp"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(|e| ChunkError::io("creating", &p, e))?;
        }
        let cache = ChunkCache {
            root,
            limit,
            used: AtomicU64::new(0),
            evicting: Mutex::new(()),
            seq: AtomicU64::new(0),
        };
        cache.clean_tmp();
        let used = cache.scan()?.iter().map(|e| e.size).sum();
        cache.used.store(used, Ordering::Relaxed);
        if used > limit {
            cache.evict()?;
        }
        Ok(cache)
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The size bound in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes held, as last measured or counted by this process.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    fn path_of(&self, hash: &[u8]) -> PathBuf {
        let h = hex::encode(hash);
        self.root.join("chunks").join(&h[..2]).join(h)
    }

    /// The decoded chunk for `block`, if cached and intact. A damaged entry is removed.
    pub fn get(&self, block: &Block) -> Option<Vec<u8>> {
        let data = self.read(block)?;
        if !plain_matches(block, &data) {
            self.remove_damaged(block);
            return None;
        }
        Some(data)
    }

    /// The cached bytes for `block`, not checked (the caller checks them, several at once,
    /// and calls [`ChunkCache::remove_damaged`] on a mismatch). Marks the entry as recently
    /// used.
    pub fn read(&self, block: &Block) -> Option<Vec<u8>> {
        let path = self.path_of(block.id());
        let mut f = File::open(&path).ok()?;
        let mut data = Vec::with_capacity(f.metadata().map(|m| m.len() as usize).unwrap_or(0));
        if f.read_to_end(&mut data).is_err() {
            return None;
        }
        // Recency for the LRU eviction.
        let _ = f.set_modified(SystemTime::now());
        Some(data)
    }

    /// Removes an entry that failed its check.
    pub fn remove_damaged(&self, block: &Block) {
        let path = self.path_of(block.id());
        tracing::warn!("cache entry {} is damaged: removed", path.display());
        let _ = fs::remove_file(&path);
    }

    /// True when a chunk is present (not checked).
    pub fn contains(&self, hash: &[u8]) -> bool {
        self.path_of(hash).is_file()
    }

    /// Stores a decoded chunk atomically, then evicts if the bound is passed. Failures are
    /// logged, never fatal: the cache is an optimisation.
    pub fn put(&self, block: &Block, plain: &[u8]) {
        if plain.len() as u64 > self.limit {
            return;
        }
        match self.write(block, plain) {
            Ok(true) => {
                let used =
                    self.used.fetch_add(plain.len() as u64, Ordering::Relaxed) + plain.len() as u64;
                if used > self.limit {
                    if let Err(e) = self.evict() {
                        tracing::warn!("chunk cache eviction: {e}");
                    }
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!("chunk cache: {e}"),
        }
    }

    /// Writes the chunk unless present; true when a new file was published.
    fn write(&self, block: &Block, plain: &[u8]) -> Result<bool, ChunkError> {
        let dest = self.path_of(block.id());
        if dest.is_file() {
            return Ok(false);
        }
        let tmp = self.root.join("tmp").join(format!(
            "{}.{}.{}",
            block.id_hex(),
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        ));
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| ChunkError::io("creating", &tmp, e))?;
        if let Err(e) = f.write_all(plain) {
            let _ = fs::remove_file(&tmp);
            return Err(ChunkError::io("writing", &tmp, e));
        }
        drop(f);
        if let Some(dir) = dest.parent() {
            if let Err(e) = fs::create_dir_all(dir) {
                let _ = fs::remove_file(&tmp);
                return Err(ChunkError::io("creating", dir, e));
            }
        }
        if let Err(e) = fs::rename(&tmp, &dest) {
            let _ = fs::remove_file(&tmp);
            return Err(ChunkError::io("publishing", &dest, e));
        }
        Ok(true)
    }

    /// Deletes least recently used chunks until the cache is under 90% of its bound.
    pub fn evict(&self) -> Result<(), ChunkError> {
        let _local = self.evicting.lock().unwrap_or_else(|p| p.into_inner());
        let lock_path = self.root.join("lock");
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| ChunkError::io("opening", &lock_path, e))?;
        let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| ChunkError::io("locking", &lock_path, e.into()))?;
        let mut entries = self.scan()?;
        let mut total: u64 = entries.iter().map(|e| e.size).sum();
        let target = self.limit / 10 * 9;
        if total > target {
            entries.sort_by_key(|e| e.mtime);
            for e in entries {
                if total <= target {
                    break;
                }
                match fs::remove_file(&e.path) {
                    Ok(()) => total = total.saturating_sub(e.size),
                    Err(err) if err.kind() == ErrorKind::NotFound => {
                        total = total.saturating_sub(e.size)
                    }
                    Err(err) => tracing::warn!("evicting {}: {err}", e.path.display()),
                }
            }
        }
        self.used.store(total, Ordering::Relaxed);
        Ok(())
    }

    fn scan(&self) -> Result<Vec<Entry>, ChunkError> {
        let chunks = self.root.join("chunks");
        let mut out = Vec::new();
        let dirs = fs::read_dir(&chunks).map_err(|e| ChunkError::io("listing", &chunks, e))?;
        for d in dirs.flatten() {
            let Ok(files) = fs::read_dir(d.path()) else {
                continue;
            };
            for f in files.flatten() {
                let Ok(m) = f.metadata() else { continue };
                if m.is_file() {
                    out.push(Entry {
                        path: f.path(),
                        size: m.len(),
                        mtime: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    });
                }
            }
        }
        Ok(out)
    }

    fn clean_tmp(&self) {
        let Ok(files) = fs::read_dir(self.root.join("tmp")) else {
            return;
        };
        let now = SystemTime::now();
        for f in files.flatten() {
            let old = f
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| now.duration_since(t).unwrap_or_default() > STALE_TMP)
                .unwrap_or(false);
            if old {
                let _ = fs::remove_file(f.path());
            }
        }
    }
}

struct Entry {
    path: PathBuf,
    size: u64,
    mtime: SystemTime,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use flist_format::codec::encode_chunk;

    #[test]
    fn put_get_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ChunkCache::open(dir.path(), 1 << 20).unwrap();
        let c = encode_chunk(b"hello");
        assert!(cache.get(&c.block).is_none());
        cache.put(&c.block, b"hello");
        assert_eq!(cache.get(&c.block).unwrap(), b"hello");
        // A damaged entry is detected, removed and reported as a miss.
        fs::write(cache.path_of(c.block.id()), b"hellp").unwrap();
        assert!(cache.get(&c.block).is_none());
        assert!(!cache.contains(c.block.id()));
    }

    #[test]
    fn lru_eviction_keeps_the_recent() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ChunkCache::open(dir.path(), 10_000).unwrap();
        let mut blocks = Vec::new();
        for i in 0..4u8 {
            let data = vec![i; 3000];
            let c = encode_chunk(&data);
            cache.put(&c.block, &data);
            // distinct mtimes
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + u64::from(i));
            File::options()
                .write(true)
                .open(cache.path_of(c.block.id()))
                .unwrap()
                .set_modified(t)
                .unwrap();
            blocks.push(c.block);
        }
        // 12000 > 10000: the put of the 4th evicted down to <= 9000. Touch none; the oldest
        // (first) must be gone, the newest kept.
        assert!(cache.used() <= 9000, "{}", cache.used());
        assert!(!cache.contains(blocks[0].id()));
        assert!(cache.contains(blocks[3].id()));
        // A reopened cache measures the same size.
        let again = ChunkCache::open(dir.path(), 10_000).unwrap();
        assert_eq!(again.used(), cache.used());
    }

    #[test]
    fn crash_leftovers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("tmp")).unwrap();
        let stale = dir.path().join("tmp/x.1.0");
        fs::write(&stale, b"partial").unwrap();
        File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(7200))
            .unwrap();
        let fresh = dir.path().join("tmp/y.1.0");
        fs::write(&fresh, b"being written").unwrap();
        let _cache = ChunkCache::open(dir.path(), 1 << 20).unwrap();
        assert!(!stale.exists());
        assert!(
            fresh.exists(),
            "a file another mount is writing is left alone"
        );
    }
}
