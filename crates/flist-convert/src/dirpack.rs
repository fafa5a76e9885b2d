//! Directories to trees: walked without following symlinks, with the same tree a tar of the
//! directory would give (numeric owner names, whole-second times, hard links sharing
//! chunks).

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use flist_format::{Kind, Meta, SpecialKind};

use crate::builder::{clamp_time, normalise_path, NameCache, TreeBuilder};
use crate::error::{io_err, ConvertError, LimitKind, Result};
use crate::options::{check_cancel, warn, ConvertOptions, Counters, PathPolicy, Warnings};
use crate::pipeline::ChunkSender;

fn meta_of(md: &fs::Metadata, warnings: &mut Warnings, names: &mut NameCache) -> Meta {
    if md.mtime_nsec() != 0 {
        warnings.add(warn::SUBSECOND);
    }
    let mtime = clamp_time(md.mtime() as i128, warnings);
    Meta {
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        uname: names.user(md.uid()),
        gname: names.group(md.gid()),
        mtime,
        ctime: mtime,
    }
}

fn to_name(name: std::ffi::OsString, path: &Path) -> Result<String> {
    name.into_string().map_err(|raw| {
        use std::os::unix::ffi::OsStrExt;
        ConvertError::NonUtf8Name {
            path: path.to_string_lossy().into_owned(),
            hex: hex::encode(raw.as_bytes()),
        }
    })
}

/// Walks `root` into `b`, sending file contents to the pipeline.
pub(crate) fn read_dir_tree(
    root: &Path,
    opts: &ConvertOptions,
    counters: &Counters,
    sender: &mut ChunkSender<'_>,
    b: &mut TreeBuilder,
) -> Result<()> {
    let limits = &opts.limits;
    let md = fs::metadata(root).map_err(io_err(root))?;
    if !md.is_dir() {
        return Err(ConvertError::Io {
            path: root.to_path_buf(),
            source: std::io::Error::other("not a directory"),
        });
    }
    let mut names = NameCache::new(opts.owner_names);
    let meta = meta_of(&md, &mut b.warnings, &mut names);
    b.place(
        &[],
        meta,
        Kind::Dir {
            children: Default::default(),
            size: md.len(),
        },
    )?;

    let mut stack: Vec<(PathBuf, Vec<String>)> = vec![(root.to_path_buf(), Vec::new())];
    let mut inodes: HashMap<(u64, u64), Vec<String>> = HashMap::new();
    let mut count = 0u64;
    let mut total = 0u64;
    let mut last_progress = Instant::now();
    while let Some((dir, comps)) = stack.pop() {
        let rd = fs::read_dir(&dir).map_err(io_err(&dir))?;
        for ent in rd {
            check_cancel(&opts.cancel)?;
            let ent = ent.map_err(io_err(&dir))?;
            let path = ent.path();
            let name = to_name(ent.file_name(), &path)?;
            count += 1;
            counters.entries.store(count, Ordering::Relaxed);
            if count > limits.max_entries {
                return Err(ConvertError::Limit {
                    what: LimitKind::Entries,
                    value: count,
                    limit: limits.max_entries,
                    entry: Some(path.to_string_lossy().into_owned()),
                });
            }
            let mut c = comps.clone();
            c.push(name);
            // Validates depth, name and path lengths the same way as archive members.
            let c = normalise_path(
                c.join("/").as_bytes(),
                PathPolicy::Reject,
                limits,
                &mut b.warnings,
            )?;
            let md = fs::symlink_metadata(&path).map_err(io_err(&path))?;
            let meta = meta_of(&md, &mut b.warnings, &mut names);
            let ft = md.file_type();
            if ft.is_dir() {
                b.place(
                    &c,
                    meta,
                    Kind::Dir {
                        children: Default::default(),
                        size: md.len(),
                    },
                )?;
                stack.push((path, c));
            } else if ft.is_file() {
                if md.nlink() > 1 {
                    if let Some(first) = inodes.get(&(md.dev(), md.ino())) {
                        b.place_hard_link(&c, first)?;
                        continue;
                    }
                    inodes.insert((md.dev(), md.ino()), c.clone());
                }
                let size = md.len();
                total = total.saturating_add(size);
                if total > limits.max_expanded_bytes {
                    return Err(ConvertError::Limit {
                        what: LimitKind::ExpandedSize,
                        value: total,
                        limit: limits.max_expanded_bytes,
                        entry: Some(path.to_string_lossy().into_owned()),
                    });
                }
                let mut f = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                    .open(&path)
                    .map_err(io_err(&path))?;
                let (file, got) = sender.add_file(&mut f, size).map_err(|e| {
                    e.into_convert(|source| ConvertError::Io {
                        path: path.clone(),
                        source,
                    })
                })?;
                counters.bytes_read.fetch_add(got, Ordering::Relaxed);
                counters.bytes_expanded.fetch_add(got, Ordering::Relaxed);
                if got != size {
                    return Err(ConvertError::FileChanged {
                        path,
                        expected: size,
                        got,
                    });
                }
                b.place_file(&c, meta, size, file)?;
            } else if ft.is_symlink() {
                let target = fs::read_link(&path).map_err(io_err(&path))?;
                let target = to_name(target.into_os_string(), &path)?;
                b.place(&c, meta, Kind::Symlink { target })?;
            } else {
                let rdev = md.rdev();
                let dev = Some((
                    nix::sys::stat::major(rdev) as u32,
                    nix::sys::stat::minor(rdev) as u32,
                ));
                let (kind, rdev) = if ft.is_fifo() {
                    (SpecialKind::Fifo, None)
                } else if ft.is_char_device() {
                    (SpecialKind::Chardev, dev)
                } else if ft.is_block_device() {
                    (SpecialKind::Block, dev)
                } else if ft.is_socket() {
                    b.warnings.add(warn::SOCKET);
                    (SpecialKind::Socket, None)
                } else {
                    (SpecialKind::Unknown, None)
                };
                b.place(&c, meta, Kind::Special { kind, rdev })?;
            }
            if let Some(p) = &opts.progress {
                if last_progress.elapsed() >= Duration::from_millis(200) {
                    last_progress = Instant::now();
                    p.progress(&counters.report());
                }
            }
        }
    }
    Ok(())
}
