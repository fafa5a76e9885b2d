//! Turning a local file into an flist entry for `put`: metadata from `lstat`, contents
//! chunked through an [`Uploader`]. (`putdir` uses `flist-convert`'s directory packer.)

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use flist_format::{Kind, Meta, SpecialKind};

use crate::chunks::{UploadError, Uploader};

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
    move |source| LocalError::Io {
        path: path.display().to_string(),
        source,
    }
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
        Kind::Dir {
            children: Default::default(),
            size: md.size(),
        }
    } else if ft.is_file() {
        let mut f = fs::File::open(path).map_err(io(path))?;
        let (size, blocks) =
            uploader
                .chunk_reader(&mut f)
                .map_err(|source| LocalError::Upload {
                    path: path.display().to_string(),
                    source,
                })?;
        Kind::File { size, blocks }
    } else if ft.is_symlink() {
        let target = fs::read_link(path).map_err(io(path))?;
        let target = target
            .to_str()
            .ok_or_else(|| LocalError::BadName(path.display().to_string()))?;
        Kind::Symlink {
            target: target.to_string(),
        }
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
