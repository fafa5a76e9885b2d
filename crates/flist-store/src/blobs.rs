//! Named blobs: whole files kept under a name chosen by the caller (e.g. flist files by
//! content hash), in an S3 bucket or a local directory.
//!
//! Chunk stores ([`crate::Store`]) hold many small values under binary keys; a blob store
//! holds fewer, larger objects under path-like names (`flists/ab/ab12…`), streamed to and
//! from files, large ones in parts. Like chunks, blobs are write-once: `put` of an existing
//! name leaves it alone and says so ([`SetOutcome::AlreadyPresent`]), so names should be
//! content hashes. Readers never see a partial blob (S3 publishes an object whole; the
//! directory store links a synced temporary file into place).
//!
//! [`open_blobs`] takes a store URL: `s3://`/`s3s://` (the same bucket may also hold
//! chunks, which are hex names at its root) or `dir://`. [`BlockingBlobs`] is the
//! synchronous facade (the hub's catalog code is synchronous).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::runtime::Handle;

use crate::blocking::{private_runtime, run, RuntimeThread};
use crate::url::StoreUrl;
use crate::{OpenOptions, S3Store, SetOutcome, StoreError};

/// Longest blob name.
const MAX_NAME: usize = 512;

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// One stored blob, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    /// Its name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was stored (the object's last modification; a file's mtime), when known.
    pub modified: Option<std::time::SystemTime>,
}

/// An async store of named blobs. `Display` shows its URL with credentials redacted.
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug + std::fmt::Display {
    /// Stores `data` under `name` unless the name exists.
    async fn put(&self, name: &str, data: Bytes) -> Result<SetOutcome, StoreError>;
    /// Stores the content of `file` under `name` unless the name exists, streaming it
    /// (large files in parts).
    async fn put_file(&self, name: &str, file: &Path) -> Result<SetOutcome, StoreError>;
    /// The blob's content; `None` when absent.
    async fn get(&self, name: &str) -> Result<Option<Bytes>, StoreError>;
    /// Streams the blob into `dest` (a temporary file next to it, synced, then renamed:
    /// `dest` is whole or untouched); its size, or `None` (and `dest` untouched) when
    /// absent.
    async fn get_to_file(&self, name: &str, dest: &Path) -> Result<Option<u64>, StoreError>;
    /// The blob's size; `None` when absent.
    async fn size(&self, name: &str) -> Result<Option<u64>, StoreError>;
    /// Removes the blob; false when it was absent.
    async fn delete(&self, name: &str) -> Result<bool, StoreError>;
    /// The blobs whose names are under `prefix` (a name or a directory-like prefix such as
    /// `flists`; empty: all), sorted by name.
    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, StoreError>;
}

/// Checks a blob name: 1 to 512 bytes of `/`-separated segments of ASCII letters, digits,
/// `.`, `_` and `-`, no segment empty or starting with a dot.
pub(crate) fn check_name(store: &str, name: &str) -> Result<(), StoreError> {
    let bad = |reason: &str| StoreError::InvalidKey {
        store: store.to_owned(),
        key: name.chars().take(80).collect(),
        reason: reason.to_owned(),
    };
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(bad("blob names are 1 to 512 bytes"));
    }
    for seg in name.split('/') {
        if seg.is_empty() || seg.starts_with('.') {
            return Err(bad("empty segment, or one starting with '.'"));
        }
        if !seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(bad("only ASCII letters, digits, '.', '_', '-' and '/'"));
        }
    }
    Ok(())
}

/// A temporary name next to `dest`, never a valid blob name.
fn tmp_next_to(dest: &Path) -> PathBuf {
    let base = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(
        ".tmp-{}-{}-{base}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Writes `dest` through a temporary file next to it: `fill` writes the content, which is
/// then synced and renamed into place; on failure the temporary file is removed.
pub(crate) async fn write_atomically<F>(
    store: &str,
    name: &str,
    dest: &Path,
    fill: F,
) -> Result<u64, StoreError>
where
    F: for<'a> FnOnce(&'a mut tokio::fs::File) -> futures::future::BoxFuture<'a, io::Result<u64>>,
{
    let tmp = tmp_next_to(dest);
    let io_err = |path: &Path, source: io::Error| StoreError::Io {
        store: store.to_owned(),
        key: Some(name.to_owned()),
        path: path.display().to_string(),
        source,
    };
    let mut file = tokio::fs::File::create(&tmp)
        .await
        .map_err(|e| io_err(&tmp, e))?;
    let result = async {
        let n = fill(&mut file).await?;
        file.sync_all().await?;
        drop(file);
        tokio::fs::rename(&tmp, dest).await?;
        Ok::<u64, io::Error>(n)
    }
    .await;
    match result {
        Ok(n) => Ok(n),
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(io_err(dest, e))
        }
    }
}

/// Named blobs in a local directory: `<root>/<name>`, `/` in names being subdirectories.
#[derive(Clone, Debug)]
pub struct DirBlobs {
    root: PathBuf,
    name: String,
}

impl std::fmt::Display for DirBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl DirBlobs {
    /// Blobs under `root` (created when missing).
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        let name = format!("dir://{}", root.display());
        crate::dir::create_root(&name, &root)?;
        Ok(DirBlobs { root, name })
    }

    /// The file holding blob `name`.
    pub fn path_of(&self, name: &str) -> Result<PathBuf, StoreError> {
        check_name(&self.name, name)?;
        Ok(self.root.join(name))
    }

    fn io_err(&self, name: &str, path: &Path, source: io::Error) -> StoreError {
        StoreError::Io {
            store: self.name.clone(),
            key: Some(name.to_owned()),
            path: path.display().to_string(),
            source,
        }
    }

    /// Publishes a blob: `write` fills a temporary file next to its final place, which is
    /// synced and hard-linked there (failing when the name exists: the exact outcome).
    fn publish(
        &self,
        name: &str,
        write: impl FnOnce(&Path) -> io::Result<()>,
    ) -> Result<SetOutcome, StoreError> {
        let path = self.path_of(name)?;
        if path.is_file() {
            return Ok(SetOutcome::AlreadyPresent);
        }
        let dir = path.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir).map_err(|e| self.io_err(name, dir, e))?;
        let tmp = tmp_next_to(&path);
        let result = (|| {
            write(&tmp)?;
            fs::File::open(&tmp)?.sync_all()?;
            match fs::hard_link(&tmp, &path) {
                Ok(()) => Ok(SetOutcome::Written),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    Ok(SetOutcome::AlreadyPresent)
                }
                Err(e) => Err(e),
            }
        })();
        let _ = fs::remove_file(&tmp);
        let outcome = result.map_err(|e| self.io_err(name, &path, e))?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(outcome)
    }

    fn list_sync(&self, prefix: &str) -> Result<Vec<BlobInfo>, StoreError> {
        let prefix = prefix.trim_end_matches('/');
        let start = if prefix.is_empty() {
            self.root.clone()
        } else {
            self.path_of(prefix)?
        };
        let mut out = Vec::new();
        let mut todo = vec![start];
        while let Some(dir) = todo.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                    // The prefix names one blob.
                    if let Ok(m) = fs::metadata(&dir) {
                        out.push(BlobInfo {
                            name: prefix.to_owned(),
                            size: m.len(),
                            modified: m.modified().ok(),
                        });
                    }
                    continue;
                }
                Err(e) => return Err(self.io_err(prefix, &dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| self.io_err(prefix, &dir, e))?;
                if entry.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                let path = entry.path();
                let meta = entry
                    .metadata()
                    .map_err(|e| self.io_err(prefix, &path, e))?;
                if meta.is_dir() {
                    todo.push(path);
                } else if meta.is_file() {
                    if let Ok(rel) = path.strip_prefix(&self.root) {
                        out.push(BlobInfo {
                            name: rel.to_string_lossy().into_owned(),
                            size: meta.len(),
                            modified: meta.modified().ok(),
                        });
                    }
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn blocking<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&DirBlobs) -> Result<R, StoreError> + Send + 'static,
    {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(|e| StoreError::Other {
                store: self.name.clone(),
                message: format!("worker task failed: {e}"),
            })?
    }
}

#[async_trait]
impl BlobStore for DirBlobs {
    async fn put(&self, name: &str, data: Bytes) -> Result<SetOutcome, StoreError> {
        let name = name.to_owned();
        self.blocking(move |b| {
            b.publish(&name, |tmp| {
                let mut f = fs::File::create(tmp)?;
                f.write_all(&data)
            })
        })
        .await
    }

    async fn put_file(&self, name: &str, file: &Path) -> Result<SetOutcome, StoreError> {
        let (name, file) = (name.to_owned(), file.to_owned());
        self.blocking(move |b| b.publish(&name, |tmp| fs::copy(&file, tmp).map(|_| ())))
            .await
    }

    async fn get(&self, name: &str) -> Result<Option<Bytes>, StoreError> {
        let name = name.to_owned();
        self.blocking(move |b| {
            let path = b.path_of(&name)?;
            match fs::read(&path) {
                Ok(v) => Ok(Some(Bytes::from(v))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(b.io_err(&name, &path, e)),
            }
        })
        .await
    }

    async fn get_to_file(&self, name: &str, dest: &Path) -> Result<Option<u64>, StoreError> {
        let path = self.path_of(name)?;
        let mut src = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io_err(name, &path, e)),
        };
        write_atomically(&self.name, name, dest, |out| {
            Box::pin(async move { tokio::io::copy(&mut src, out).await })
        })
        .await
        .map(Some)
    }

    async fn size(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let path = self.path_of(name)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io_err(name, &path, e)),
        }
    }

    async fn delete(&self, name: &str) -> Result<bool, StoreError> {
        let path = self.path_of(name)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.io_err(name, &path, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, StoreError> {
        let prefix = prefix.to_owned();
        self.blocking(move |b| b.list_sync(&prefix)).await
    }
}

/// Opens the blob store of a URL: `s3://`/`s3s://` or `dir://`.
pub async fn open_blobs(url: &str) -> Result<Arc<dyn BlobStore>, StoreError> {
    open_blobs_url(&StoreUrl::parse(url)?, &OpenOptions::default()).await
}

/// Opens the blob store of a parsed URL with explicit options.
pub async fn open_blobs_url(
    url: &StoreUrl,
    options: &OpenOptions,
) -> Result<Arc<dyn BlobStore>, StoreError> {
    match url {
        StoreUrl::S3 { .. } => Ok(Arc::new(S3Store::new(url, options)?)),
        StoreUrl::Dir { path, .. } => {
            let path = path.clone();
            let blobs = tokio::task::spawn_blocking(move || DirBlobs::new(path))
                .await
                .map_err(|e| StoreError::Other {
                    store: url.to_string(),
                    message: e.to_string(),
                })??;
            Ok(Arc::new(blobs))
        }
        other => Err(StoreError::Unsupported {
            store: other.to_string(),
            operation: "named blobs".into(),
            reason: "blobs live in an S3 bucket (s3://, s3s://) or a directory (dir://)".into(),
        }),
    }
}

/// A [`BlobStore`] usable from synchronous code, like [`crate::BlockingStore`] for chunks:
/// never call it from inside an async task.
#[derive(Clone, Debug)]
pub struct BlockingBlobs {
    blobs: Arc<dyn BlobStore>,
    handle: Handle,
    _runtime: Option<Arc<RuntimeThread>>,
}

impl std::fmt::Display for BlockingBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.blobs.fmt(f)
    }
}

impl BlockingBlobs {
    /// Wraps `blobs`, running its operations on the runtime behind `handle`.
    pub fn new(blobs: Arc<dyn BlobStore>, handle: Handle) -> Self {
        BlockingBlobs {
            blobs,
            handle,
            _runtime: None,
        }
    }

    /// Opens a blob store URL on a private two-thread runtime.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let (handle, rt) = private_runtime()?;
        let url = url.to_owned();
        let blobs = run(&handle, async move { open_blobs(&url).await })?;
        Ok(BlockingBlobs {
            blobs,
            handle,
            _runtime: Some(rt),
        })
    }

    /// The wrapped async store.
    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    fn call<R, F, Fut>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(Arc<dyn BlobStore>) -> Fut,
        Fut: std::future::Future<Output = Result<R, StoreError>> + Send + 'static,
    {
        run(&self.handle, f(self.blobs.clone()))
    }

    /// See [`BlobStore::put`].
    pub fn put(&self, name: &str, data: Bytes) -> Result<SetOutcome, StoreError> {
        let name = name.to_owned();
        self.call(|b| async move { b.put(&name, data).await })
    }

    /// See [`BlobStore::put_file`].
    pub fn put_file(&self, name: &str, file: &Path) -> Result<SetOutcome, StoreError> {
        let (name, file) = (name.to_owned(), file.to_owned());
        self.call(|b| async move { b.put_file(&name, &file).await })
    }

    /// See [`BlobStore::get`].
    pub fn get(&self, name: &str) -> Result<Option<Bytes>, StoreError> {
        let name = name.to_owned();
        self.call(|b| async move { b.get(&name).await })
    }

    /// See [`BlobStore::get_to_file`].
    pub fn get_to_file(&self, name: &str, dest: &Path) -> Result<Option<u64>, StoreError> {
        let (name, dest) = (name.to_owned(), dest.to_owned());
        self.call(|b| async move { b.get_to_file(&name, &dest).await })
    }

    /// See [`BlobStore::size`].
    pub fn size(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let name = name.to_owned();
        self.call(|b| async move { b.size(&name).await })
    }

    /// See [`BlobStore::delete`].
    pub fn delete(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.call(|b| async move { b.delete(&name).await })
    }

    /// See [`BlobStore::list`].
    pub fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, StoreError> {
        let prefix = prefix.to_owned();
        self.call(|b| async move { b.list(&prefix).await })
    }
}
