//! Turning local files into flist entries for `put` and `putdir`: metadata from `lstat`,
//! contents chunked through an [`Uploader`].

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use flist_format::{Kind, Meta, NodeId, SpecialKind, Tree};

use crate::chunks::{UploadError, Uploader};
use crate::response::Progress;

/// Why a local entry could not be added.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A filesystem call failed on `path`.
    #[error("{path}: {source}")]
    Io {
        /// The local path.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Chunking or uploading failed for `path`.
    #[error("{path}: {source}")]
    Upload {
        /// The local path.
        path: String,
        /// The error.
        #[source]
        source: UploadError,
    },
    /// The name cannot be stored (not UTF-8).
    #[error("{0}: the name is not valid UTF-8, which the flist format cannot hold")]
    BadName(String),
    /// A tree edit failed.
    #[error(transparent)]
    Tree(#[from] flist_format::TreeError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LocalError + '_ {
    move |source| LocalError::Io { path: path.display().to_string(), source }
}

fn clamp_time(t: i64) -> u32 {
    u32::try_from(t.max(0)).unwrap_or(u32::MAX)
}

/// The flist metadata of a local entry (numeric owner names, `root` for id 0).
pub fn meta_of(md: &fs::Metadata) -> Meta {
    let mut m = Meta::numeric(md.mode(), md.uid(), md.gid(), clamp_time(md.mtime()));
    m.ctime = clamp_time(md.ctime());
    m
}

/// Linux `dev_t` → (major, minor).
pub fn split_rdev(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major as u32, minor as u32)
}

/// Builds the entry for one local non-directory path (regular file, symlink, special),
/// uploading a regular file's chunks. Directories give `Kind::empty_dir()`.
pub fn entry_of(path: &Path, uploader: &mut Uploader) -> Result<(Meta, Kind), LocalError> {
    let md = fs::symlink_metadata(path).map_err(io(path))?;
    let meta = meta_of(&md);
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        Kind::Dir { children: Default::default(), size: md.size() }
    } else if ft.is_file() {
        let mut f = fs::File::open(path).map_err(io(path))?;
        let (size, blocks) = uploader
            .chunk_reader(&mut f)
            .map_err(|source| LocalError::Upload { path: path.display().to_string(), source })?;
        Kind::File { size, blocks }
    } else if ft.is_symlink() {
        let target = fs::read_link(path).map_err(io(path))?;
        let target = target.to_str().ok_or_else(|| LocalError::BadName(path.display().to_string()))?;
        Kind::Symlink { target: target.to_string() }
    } else {
        let (kind, rdev) = if ft.is_block_device() {
            (SpecialKind::Block, Some(split_rdev(md.rdev())))
        } else if ft.is_char_device() {
            (SpecialKind::Chardev, Some(split_rdev(md.rdev())))
        } else if ft.is_fifo() {
            (SpecialKind::Fifo, None)
        } else if ft.is_socket() {
            (SpecialKind::Socket, None)
        } else {
            (SpecialKind::Unknown, None)
        };
        Kind::Special { kind, rdev }
    };
    Ok((meta, kind))
}

/// Counts of what `putdir` added.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PutStats {
    /// Regular files.
    pub regular: u64,
    /// Symbolic links.
    pub symlink: u64,
    /// Directories.
    pub directory: u64,
    /// Special files.
    pub special: u64,
    /// Entries that could not be read.
    pub failure: u64,
    /// Bytes of regular files.
    pub fullsize: u64,
}

impl PutStats {
    fn count(&mut self, kind: &Kind) {
        match kind {
            Kind::Dir { .. } => self.directory += 1,
            Kind::File { size, .. } => {
                self.regular += 1;
                self.fullsize += size;
            }
            Kind::Symlink { .. } => self.symlink += 1,
            Kind::Special { .. } => self.special += 1,
        }
    }
}

/// Adds the contents of local directory `src` under directory `dst` of `tree`
/// (iteratively; entries already present are replaced, directories merged). Children are
/// added in name order, directories first, as the reference does. Unreadable entries are
/// an error: nothing is silently skipped.
pub fn put_dir(
    tree: &mut Tree,
    dst: NodeId,
    src: &Path,
    uploader: &mut Uploader,
    progress: &dyn Progress,
) -> Result<PutStats, LocalError> {
    let mut stats = PutStats::default();
    let mut stack = vec![(src.to_path_buf(), dst)];
    let mut done = 0u64;
    while let Some((dir, node)) = stack.pop() {
        let mut entries: Vec<(bool, String, std::path::PathBuf)> = Vec::new();
        for e in fs::read_dir(&dir).map_err(io(&dir))? {
            let e = e.map_err(io(&dir))?;
            let path = e.path();
            let name = e.file_name().into_string().map_err(|_| LocalError::BadName(path.display().to_string()))?;
            let is_dir = e.file_type().map_err(io(&path))?.is_dir();
            entries.push((!is_dir, name, path));
        }
        entries.sort();
        let mut subdirs = Vec::new();
        for (_, name, path) in entries {
            let (meta, kind) = entry_of(&path, uploader)?;
            stats.count(&kind);
            let is_dir = kind.is_dir();
            let id = tree.set(node, &name, meta, kind)?;
            if is_dir {
                subdirs.push((path, id));
            }
            done += 1;
            progress.update("adding files", done, 0);
        }
        // pushed in reverse so that directories are walked in name order
        stack.extend(subdirs.into_iter().rev());
    }
    uploader.flush().map_err(|source| LocalError::Upload { path: src.display().to_string(), source })?;
    Ok(stats)
}
