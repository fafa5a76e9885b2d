//! The data directory's files: content-addressed flist files
//! (`<data>/flists/<sha256[0..2]>/<sha256>`), the temp area, and the lock that says which
//! process may recover them (`lock.rs`).
//!
//! Writes go to `<data>/tmp/`, are fsynced, then renamed into place (and the directory
//! fsynced); only then does the catalog reference them. A crash leaves at worst an orphan
//! temp file (removed by the next open that has the directory to itself, see `lock.rs`) or
//! an unreferenced file (removed by [`Hub::gc`](crate::Hub::gc)).
//!
//! A cluster of replicas shares its flist files through an object store
//! ([`Hub::share_files`](crate::Hub::share_files)): each file is also stored there as
//! `flists/<sha256[0..2]>/<sha256>` before the catalog records it, and the local directory is
//! then a cache that a replica fills on first use of a file another replica stored.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use flist_store::BlockingBlobs;

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::RepoError;

mod lock;

pub(crate) use lock::sweep_temp;
use lock::DataLock;
pub use lock::STALE_TEMP_SECS;

/// A flist file written to the hub's temp area, hashed, not yet referenced by the catalog.
#[derive(Debug)]
pub struct StagedFlist {
    pub(crate) path: PathBuf,
    /// Hex sha256 of the content.
    pub sha256: String,
    /// Hex md5 of the content.
    pub md5: String,
    /// Size in bytes.
    pub size: u64,
}

impl StagedFlist {
    /// The temporary file (valid until committed or dropped).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StagedFlist {
    fn drop(&mut self) {
        // After a commit the file has been renamed away and this is a no-op.
        let _ = fs::remove_file(&self.path);
    }
}

/// The flist files and temp area of a data directory, and its lock (held while this lives).
#[derive(Debug)]
pub(crate) struct Blobs {
    root: PathBuf,
    tmp: PathBuf,
    counter: AtomicU64,
    lock: DataLock,
    /// The store every replica of a cluster shares (none: the local directory is the store).
    shared: OnceLock<BlockingBlobs>,
}

/// The name of flist file `sha256` in a shared store: `flists/<sha256[0..2]>/<sha256>`.
pub fn shared_name(sha256: &str) -> String {
    let prefix = sha256.get(..2).unwrap_or("xx");
    format!("{SHARED_PREFIX}/{prefix}/{sha256}")
}

/// Where flist files live in a shared store.
pub(crate) const SHARED_PREFIX: &str = "flists";

/// Copies `input` to `out`, feeding both hashes: (sha256, md5, size). `read_op` names the
/// read in errors about `path`.
fn copy_hashing(
    mut input: impl Read,
    mut out: impl Write,
    path: &Path,
    read_op: &'static str,
) -> Result<(String, String, u64), RepoError> {
    let mut sha = Sha256::new();
    let mut md5 = Md5::new();
    let mut buf = vec![0u8; 128 * 1024];
    let mut n = 0u64;
    loop {
        let got = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(RepoError::io(read_op, path, e)),
        };
        let chunk = &buf[..got];
        sha.update(chunk);
        md5.update(chunk);
        out.write_all(chunk)
            .map_err(|e| RepoError::io("write", path, e))?;
        n += got as u64;
    }
    Ok((hex::encode(sha.finalize()), hex::encode(md5.finalize()), n))
}

/// Hashes a file: (sha256, md5, size).
pub(crate) fn hash_file(path: &Path) -> Result<(String, String, u64), RepoError> {
    let f = File::open(path).map_err(|e| RepoError::io("open", path, e))?;
    copy_hashing(f, std::io::sink(), path, "read")
}

/// 64 lowercase hex digits.
pub fn is_hex_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Removes `path`; one already gone is fine.
pub(crate) fn remove(path: &Path) -> Result<(), RepoError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RepoError::io("remove", path, e)),
    }
}

/// Sets the modification time of `path` to now (best effort): `gc` keeps young unrecorded
/// files, `trim_cache` drops the least recently used copies.
fn touch(path: &Path) {
    let _ = File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(std::time::SystemTime::now()));
}

fn sync_dir(dir: &Path) -> Result<(), RepoError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| RepoError::io("fsync directory", dir, e))
}

impl Blobs {
    /// Takes the data directory's lock and opens the store; when no other process has the
    /// directory open ([`Blobs::alone`]) every leftover temp file is removed, otherwise only
    /// stale ones are.
    pub(crate) fn open(data: &Path) -> Result<Self, RepoError> {
        let lock = DataLock::acquire(data)?;
        let recover = lock.alone;
        let root = data.join("flists");
        let tmp = data.join("tmp");
        for d in [&root, &tmp] {
            fs::create_dir_all(d).map_err(|e| RepoError::io("create directory", d, e))?;
        }
        sweep_temp(
            &tmp,
            recover,
            std::time::Duration::from_secs(STALE_TEMP_SECS),
        );
        Ok(Blobs {
            root,
            tmp,
            counter: AtomicU64::new(0),
            lock,
            shared: OnceLock::new(),
        })
    }

    /// No other process had the data directory open when it was opened: leftovers of a
    /// previous run (temp files, unfinished jobs) are this opener's to recover.
    pub(crate) fn alone(&self) -> bool {
        self.lock.alone
    }

    /// A fresh path in the temp area (not created).
    pub(crate) fn temp_path(&self, suffix: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut rnd = [0u8; 8];
        let _ = getrandom::fill(&mut rnd);
        self.tmp.join(format!(
            "{}-{n}-{}{suffix}",
            std::process::id(),
            hex::encode(rnd)
        ))
    }

    /// The temp directory.
    pub(crate) fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// Where the blob `sha256` lives.
    pub(crate) fn path_of(&self, sha256: &str) -> PathBuf {
        let prefix = sha256.get(..2).unwrap_or("xx");
        self.root.join(prefix).join(sha256)
    }

    /// Streams `input` into a new staged file, hashing as it goes, and fsyncs it.
    pub(crate) fn stage_reader(&self, input: impl Read) -> Result<StagedFlist, RepoError> {
        let path = self.temp_path(".flist");
        let mut f = File::create(&path).map_err(|e| RepoError::io("create", &path, e))?;
        let staged_guard = StagedFlist {
            path: path.clone(),
            sha256: String::new(),
            md5: String::new(),
            size: 0,
        };
        let (sha256, md5, size) = copy_hashing(input, &mut f, &path, "read input for")?;
        f.sync_all().map_err(|e| RepoError::io("fsync", &path, e))?;
        drop(f);
        let mut staged = staged_guard;
        staged.sha256 = sha256;
        staged.md5 = md5;
        staged.size = size;
        Ok(staged)
    }

    /// Takes ownership of a finished file (moved into the temp area if elsewhere) and hashes it.
    pub(crate) fn stage_file(&self, path: &Path) -> Result<StagedFlist, RepoError> {
        let target = if path.parent() == Some(self.tmp.as_path()) {
            path.to_path_buf()
        } else {
            let t = self.temp_path(".flist");
            if fs::rename(path, &t).is_err() {
                // Different filesystem: copy.
                let src = File::open(path).map_err(|e| RepoError::io("open", path, e))?;
                return self.stage_reader(src);
            }
            t
        };
        File::open(&target)
            .and_then(|f| f.sync_all())
            .map_err(|e| RepoError::io("fsync", &target, e))?;
        let (sha256, md5, size) = hash_file(&target)?;
        Ok(StagedFlist {
            path: target,
            sha256,
            md5,
            size,
        })
    }

    /// Moves a staged file to its content address (durably), and makes sure the shared store
    /// holds it too. Idempotent. Called under the catalog's write lock, like `gc`'s removals:
    /// a file `gc` removed from the shared store since [`Blobs::upload`] is put back here.
    pub(crate) fn commit(&self, staged: &StagedFlist) -> Result<PathBuf, RepoError> {
        let dest = self.path_of(&staged.sha256);
        let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
        if !dir.exists() {
            fs::create_dir_all(&dir).map_err(|e| RepoError::io("create directory", &dir, e))?;
            sync_dir(&self.root)?;
        }
        if dest.exists() {
            // Same content already stored; the staged copy is dropped with the guard. The
            // file is touched: `gc` keeps young unrecorded files (a mirror records its files
            // after placing them).
            touch(&dest);
        } else {
            fs::rename(&staged.path, &dest).map_err(|e| RepoError::io("rename into", &dest, e))?;
            sync_dir(&dir)?;
        }
        if self.shared_has(&staged.sha256)? == Some(false) {
            self.put_shared(&staged.sha256, &dest)?;
        }
        Ok(dest)
    }

    // ----- the shared store of a cluster ----------------------------------------------------

    /// Keeps flist files in `store` too, shared by every replica (once per process).
    pub(crate) fn share(&self, store: BlockingBlobs) -> Result<(), RepoError> {
        self.shared.set(store).map_err(|_| {
            RepoError::Conflict("a shared store of flist files is already attached".into())
        })
    }

    /// The shared store, when the files are shared.
    pub(crate) fn shared(&self) -> Option<&BlockingBlobs> {
        self.shared.get()
    }

    /// Stores a staged file in the shared store ahead of the transaction that records it
    /// (outside the catalog's write lock: [`Blobs::commit`] then only checks it is there).
    /// Nothing to do when the files are not shared.
    pub(crate) fn upload(&self, staged: &StagedFlist) -> Result<(), RepoError> {
        self.put_shared(&staged.sha256, &staged.path)
    }

    /// Whether the shared store holds flist file `sha256`; `None` when the files are not
    /// shared.
    pub(crate) fn shared_has(&self, sha256: &str) -> Result<Option<bool>, RepoError> {
        let Some(shared) = self.shared.get() else {
            return Ok(None);
        };
        let name = shared_name(sha256);
        match shared.size(&name) {
            Ok(size) => Ok(Some(size.is_some())),
            Err(e) => Err(RepoError::files("look up", name, e)),
        }
    }

    /// Sends `path` to the shared store as flist file `sha256` (a no-op when it holds it, or
    /// when the files are not shared).
    pub(crate) fn put_shared(&self, sha256: &str, path: &Path) -> Result<(), RepoError> {
        let Some(shared) = self.shared.get() else {
            return Ok(());
        };
        let name = shared_name(sha256);
        shared
            .put_file(&name, path)
            .map(|_| ())
            .map_err(|source| RepoError::files("upload", name, source))
    }

    /// Every file under `flists/`: (path, name), sorted.
    pub(crate) fn stored_files(&self) -> Result<Vec<(PathBuf, String)>, RepoError> {
        let root = &self.root;
        let mut out = Vec::new();
        let rd = match fs::read_dir(root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(RepoError::io("read directory", root, e)),
        };
        for d in rd {
            let d = d.map_err(|e| RepoError::io("read directory", root, e))?;
            let dp = d.path();
            if !d.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.push((dp, d.file_name().to_string_lossy().into_owned()));
                continue;
            }
            for f in fs::read_dir(&dp).map_err(|e| RepoError::io("read directory", &dp, e))? {
                let f = f.map_err(|e| RepoError::io("read directory", &dp, e))?;
                out.push((f.path(), f.file_name().to_string_lossy().into_owned()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The file of flist file `sha256` ([`Blobs::local`]), or its address when it is stored
    /// nowhere (reading it then fails as for any missing file).
    pub(crate) fn fetched(&self, sha256: &str) -> Result<PathBuf, RepoError> {
        Ok(self.local(sha256)?.unwrap_or_else(|| self.path_of(sha256)))
    }

    /// The local file of flist file `sha256`, downloaded from the shared store when this
    /// replica holds no copy yet (and checked against its content address); `None` when it
    /// is stored nowhere.
    pub(crate) fn local(&self, sha256: &str) -> Result<Option<PathBuf>, RepoError> {
        let path = self.path_of(sha256);
        let Some(shared) = self.shared.get() else {
            return Ok(path.is_file().then_some(path));
        };
        if let Ok(meta) = fs::metadata(&path) {
            // A cache: mark the copy used (at most once a minute), `trim_cache` drops the
            // least recently used.
            let stale = meta
                .modified()
                .ok()
                .and_then(|m| std::time::SystemTime::now().duration_since(m).ok())
                .is_some_and(|age| age.as_secs() > 60);
            if stale {
                touch(&path);
            }
            return Ok(Some(path));
        }
        if !is_hex_sha256(sha256) {
            return Ok(None);
        }
        let name = shared_name(sha256);
        let dir = path.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir).map_err(|e| RepoError::io("create directory", dir, e))?;
        match shared.get_to_file(&name, &path) {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(None),
            Err(source) => return Err(RepoError::files("download", name, source)),
        }
        let (got, _, _) = hash_file(&path)?;
        if got != sha256 {
            let _ = fs::remove_file(&path);
            return Err(RepoError::Invalid(format!(
                "the shared store's {name} has sha256 {got}: not kept"
            )));
        }
        Ok(Some(path))
    }

    /// Keeps this replica's copies of shared files under `max_bytes`: the least recently
    /// used go first (a copy is marked used when read, at most once a minute), and only
    /// copies the shared store holds (a replica fetches them again on use). Nothing to do
    /// when the files are not shared. (files removed, bytes removed, bytes kept).
    pub(crate) fn trim_cache(&self, max_bytes: u64) -> Result<(u64, u64, u64), RepoError> {
        if self.shared.get().is_none() {
            return Ok((0, 0, 0));
        }
        let mut held: Vec<(std::time::SystemTime, u64, String, PathBuf)> = Vec::new();
        for (path, name) in self.stored_files()? {
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            if !is_hex_sha256(&name) || !meta.is_file() {
                continue;
            }
            let used = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            held.push((used, meta.len(), name, path));
        }
        let mut total: u64 = held.iter().map(|h| h.1).sum();
        held.sort();
        let (mut removed, mut freed) = (0u64, 0u64);
        for (_, size, sha, path) in held {
            if total <= max_bytes {
                break;
            }
            if self.shared_has(&sha)? != Some(true) {
                continue; // not shared (gc's business)
            }
            remove(&path)?;
            total -= size;
            removed += 1;
            freed += size;
        }
        Ok((removed, freed, total))
    }

    /// Removes flist file `sha256` from the shared store (under the catalog's write lock).
    pub(crate) fn remove_shared(&self, sha256: &str) -> Result<(), RepoError> {
        let Some(shared) = self.shared.get() else {
            return Ok(());
        };
        let name = shared_name(sha256);
        shared
            .delete(&name)
            .map(|_| ())
            .map_err(|source| RepoError::files("delete", name, source))
    }
}
