//! Mounting, waiting and unmounting.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flist_format::Flist;
use flist_store::Store;
use fuser::{BackgroundSession, Config, MountOption, SessionACL};
use tokio::runtime::Handle;

use crate::access::AccessLog;
use crate::error::MountError;
use crate::fs::FlistFs;
use crate::overrides::{self, Override};
use flist_chunks::ChunkCache;
use flist_chunks::{ChunkSource, Stats, StatsSnapshot};

/// How long an unmount waits for background loads still queued or running (a store that
/// stopped answering must not hold the unmount forever).
const PREFETCH_DRAIN: Duration = Duration::from_secs(10);

/// Default bound of the chunk cache: 4 GiB.
pub const DEFAULT_CACHE_SIZE: u64 = 4 << 30;

/// How to mount.
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// Chunk cache directory (shared by mounts); `None` disables the disk cache.
    pub cache_dir: Option<PathBuf>,
    /// Bound of the disk cache in bytes.
    pub cache_size: u64,
    /// Let other users than the mounting one access the mount (`allow_other`).
    pub allow_other: bool,
    /// Files replaced or added for this mount.
    pub overrides: Vec<Override>,
    /// Largest read-ahead window, in chunks: a file read sequentially gets chunks loaded
    /// ahead of it, 4 at first, doubling with each sequential read up to this (0: none).
    pub read_ahead: usize,
    /// Store requests in flight at once (each a batch of up to 8 chunks for read-ahead);
    /// as many background loaders, at most two per core.
    pub max_fetches: usize,
    /// Decoded chunks kept in memory (keep it above twice `read_ahead`).
    pub memory_chunks: usize,
    /// Name shown as the mount's source in `/proc/mounts`.
    pub fs_name: String,
    /// FUSE worker threads.
    pub threads: usize,
    /// Record the regular files opened, in first-access order ([`Mounted::access_log`]):
    /// the prefetch list of the next mounts.
    pub record_access: bool,
    /// Load the chunks of the flist's prefetch list (metadata key `prefetch`) as soon as
    /// the mount is in place, in list order, in the background.
    pub prefetch_list: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            cache_dir: None,
            cache_size: DEFAULT_CACHE_SIZE,
            allow_other: false,
            overrides: Vec::new(),
            read_ahead: 32,
            max_fetches: 8,
            memory_chunks: 96,
            fs_name: "zflist".into(),
            threads: 4,
            record_access: false,
            prefetch_list: true,
        }
    }
}

/// A live mount. Dropping it unmounts.
pub struct Mounted {
    session: Option<BackgroundSession>,
    mountpoint: PathBuf,
    stats: Arc<Stats>,
    access: Option<Arc<AccessLog>>,
    source: Arc<ChunkSource>,
}

impl std::fmt::Debug for Mounted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mounted")
            .field("mountpoint", &self.mountpoint)
            .finish()
    }
}

/// Why [`Mounted::wait_until_signal`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// SIGINT or SIGTERM arrived; the mount was unmounted.
    Signal,
    /// The file system was unmounted from outside (`zflist umount`, `umount`).
    Unmounted,
}

impl Mounted {
    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The chunk traffic so far.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// The files opened so far, when mounted with [`MountOptions::record_access`].
    pub fn access_log(&self) -> Option<Arc<AccessLog>> {
        self.access.clone()
    }

    /// Chunks still waiting to be loaded in the background (read-ahead, prefetch list).
    pub fn queued_chunks(&self) -> usize {
        self.source.queued()
    }

    /// True once the file system has been unmounted (from here or outside).
    pub fn is_finished(&self) -> bool {
        self.session.as_ref().is_none_or(|s| s.guard.is_finished())
    }

    /// Unmounts (if still mounted) and waits for the FUSE threads and the read-ahead loads
    /// still running (at most 10 s), so the returned counters are final.
    pub fn unmount(mut self) -> Result<StatsSnapshot, MountError> {
        self.finish()?;
        Ok(self.stats.snapshot())
    }

    fn finish(&mut self) -> Result<(), MountError> {
        if let Some(s) = self.session.take() {
            if s.guard.is_finished() {
                s.join()
            } else {
                s.umount_and_join()
            }
            .map_err(|e| MountError::io("unmounting", &self.mountpoint, e))?;
            // background loads outlive the FUSE threads: let them land in the cache (and
            // the counters) before the caller removes the cache or reads the stats
            self.source.wait_prefetches(PREFETCH_DRAIN);
        }
        Ok(())
    }

    /// Serves until SIGINT/SIGTERM (then unmounts cleanly) or until unmounted from outside.
    /// `signals` must have been installed before mounting, so that a signal arriving at any
    /// moment of the mount's life unmounts it instead of killing the process.
    pub fn wait_until_signal(
        mut self,
        handle: &Handle,
        mut signals: Signals,
    ) -> Result<(Ended, StatsSnapshot), MountError> {
        let finished = {
            let guard_done = || self.is_finished();
            handle.block_on(async {
                loop {
                    tokio::select! {
                        _ = signals.term.recv() => return Ended::Signal,
                        _ = signals.int.recv() => return Ended::Signal,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {
                            if guard_done() {
                                return Ended::Unmounted;
                            }
                        }
                    }
                }
            })
        };
        self.finish()?;
        Ok((finished, self.stats.snapshot()))
    }
}

/// SIGINT and SIGTERM handlers (see [`Mounted::wait_until_signal`]).
#[derive(Debug)]
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers on the runtime behind `handle`; from now on these signals are
    /// delivered to [`Mounted::wait_until_signal`] instead of ending the process.
    pub fn install(handle: &Handle) -> Result<Self, MountError> {
        use tokio::signal::unix::{signal, SignalKind};
        let _guard = handle.enter();
        Ok(Signals {
            term: signal(SignalKind::terminate())
                .map_err(|e| MountError::Runtime(format!("SIGTERM handler: {e}")))?,
            int: signal(SignalKind::interrupt())
                .map_err(|e| MountError::Runtime(format!("SIGINT handler: {e}")))?,
        })
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            tracing::warn!("{e}");
        }
    }
}

/// Mounts `flist` read-only at `mountpoint`, reading chunks from `store` on the runtime
/// behind `handle`. Returns once the mount is in place; the file system is served by
/// background threads until [`Mounted::unmount`] (or drop, or an outside unmount).
pub fn mount(
    flist: Flist,
    store: Arc<dyn Store>,
    handle: Handle,
    mountpoint: &Path,
    options: &MountOptions,
) -> Result<Mounted, MountError> {
    check_mountpoint(mountpoint)?;
    let Flist { mut tree, metadata } = flist;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0);
    let contents = overrides::apply(&mut tree, &options.overrides, now)?;
    let cache = match &options.cache_dir {
        Some(dir) => Some(Arc::new(ChunkCache::open(dir, options.cache_size)?)),
        None => None,
    };
    let source = Arc::new(ChunkSource::new(
        store,
        handle,
        cache,
        options.max_fetches,
        options.memory_chunks,
    ));
    let stats = source.stats().clone();
    let prefetch = if options.prefetch_list {
        prefetch_list(&metadata, &tree, &source, options)
    } else {
        Vec::new()
    };
    let mut fs = FlistFs::new(tree, contents, source.clone(), options.read_ahead);
    let access = options
        .record_access
        .then(|| Arc::new(AccessLog::default()));
    if let Some(log) = &access {
        fs = fs.record_access(log.clone());
    }
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName(options.fs_name.clone()),
        MountOption::Subtype("zflist".into()),
        MountOption::DefaultPermissions,
        MountOption::Dev,
        MountOption::Suid,
    ];
    if options.allow_other {
        config.acl = SessionACL::All;
    }
    config.n_threads = Some(options.threads.max(1));
    let session = fuser::spawn_mount(fs, mountpoint, &config)
        .map_err(|e| MountError::io("mounting at", mountpoint, e))?;
    source.prefetch(&prefetch);
    Ok(Mounted {
        session: Some(session),
        mountpoint: mountpoint.to_path_buf(),
        stats,
        access,
        source,
    })
}

/// The chunks of the flist's prefetch list still to load: all of them with a disk cache,
/// else as many as half the memory holds (the rest would push out the first). A list that
/// cannot be read is ignored (the mount works without it).
fn prefetch_list(
    metadata: &flist_format::Metadata,
    tree: &flist_format::Tree,
    source: &ChunkSource,
    options: &MountOptions,
) -> Vec<flist_format::Block> {
    let paths = match metadata.prefetch() {
        Ok(Some(paths)) => paths,
        Ok(None) => return Vec::new(),
        Err(e) => {
            tracing::warn!("ignoring the prefetch list: {e}");
            return Vec::new();
        }
    };
    let limit = if options.cache_dir.is_some() {
        usize::MAX
    } else {
        options.memory_chunks / 2
    };
    crate::access::prefetch_blocks(tree, &paths, limit)
        .into_iter()
        .filter(|b| !source.is_local(b))
        .collect()
}

fn check_mountpoint(path: &Path) -> Result<(), MountError> {
    let shown = path.display().to_string();
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(MountError::MountPoint {
            path: shown,
            reason: "not a directory".into(),
        }),
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOTCONN) => Err(MountError::MountPoint {
            path: shown.clone(),
            reason: format!(
                "a stale mount whose process is gone is there: run `zflist umount {shown}` first"
            ),
        }),
        Err(e) => Err(MountError::io("checking", path, e)),
    }
}

/// What [`unmount`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unmounted {
    /// A live mount was unmounted; its process exits.
    Live,
    /// The mount's process was gone (the mount answered "transport endpoint is not
    /// connected"); the dead mount was detached.
    Stale,
}

/// One line of `/proc/self/mountinfo` that concerns us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountInfo {
    /// Mount point.
    pub mountpoint: PathBuf,
    /// File system type (`fuse.zflist` for ours).
    pub fstype: String,
    /// Source (the flist name for ours).
    pub source: String,
}

/// The mounts of this mount namespace.
pub fn mounts() -> Result<Vec<MountInfo>, MountError> {
    let p = Path::new("/proc/self/mountinfo");
    let text = std::fs::read_to_string(p).map_err(|e| MountError::io("reading", p, e))?;
    Ok(text.lines().filter_map(parse_mountinfo).collect())
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mountinfo(line: &str) -> Option<MountInfo> {
    let (left, right) = line.split_once(" - ")?;
    let mountpoint = left.split(' ').nth(4)?;
    let mut r = right.split(' ');
    let fstype = r.next()?;
    let source = r.next().unwrap_or("");
    Some(MountInfo {
        mountpoint: PathBuf::from(unescape(mountpoint)),
        fstype: fstype.to_string(),
        source: unescape(source),
    })
}

/// Unmounts the FUSE mount at `mountpoint`: a live one normally (its process then exits),
/// a stale one (process killed) by detaching it. Tells which it was.
pub fn unmount(mountpoint: &Path) -> Result<Unmounted, MountError> {
    let abs =
        std::path::absolute(mountpoint).map_err(|e| MountError::io("resolving", mountpoint, e))?;
    let shown = abs.display().to_string();
    let found = mounts()?
        .into_iter()
        .rev()
        .find(|m| m.mountpoint == abs)
        .ok_or_else(|| MountError::NotMounted(shown.clone()))?;
    if !found.fstype.starts_with("fuse") {
        return Err(MountError::MountPoint {
            path: shown,
            reason: format!("is a {} mount, not a FUSE mount", found.fstype),
        });
    }
    let stale =
        matches!(std::fs::metadata(&abs), Err(e) if e.raw_os_error() == Some(nix::libc::ENOTCONN));
    let flags = if stale {
        nix::mount::MntFlags::MNT_DETACH
    } else {
        nix::mount::MntFlags::empty()
    };
    match nix::mount::umount2(&abs, flags) {
        Ok(()) => {}
        Err(nix::errno::Errno::EPERM) => fusermount_u(&abs, stale)?,
        Err(e) => {
            return Err(MountError::io("unmounting", &abs, e.into()));
        }
    }
    Ok(if stale {
        Unmounted::Stale
    } else {
        Unmounted::Live
    })
}

/// Unprivileged unmount through the setuid helper of Debian's `fuse3`.
fn fusermount_u(path: &Path, lazy: bool) -> Result<(), MountError> {
    let mut cmd = std::process::Command::new("fusermount3");
    cmd.arg("-u");
    if lazy {
        cmd.arg("-z");
    }
    let out = cmd
        .arg("--")
        .arg(path)
        .output()
        .map_err(|e| MountError::io("running fusermount3 -u for", path, e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(MountError::MountPoint {
            path: path.display().to_string(),
            reason: format!(
                "fusermount3 -u failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let l = "36 35 0:45 / /mnt/a\\040b rw,nosuid - fuse.zflist app.flist rw,user_id=0";
        let m = parse_mountinfo(l).unwrap();
        assert_eq!(m.mountpoint, PathBuf::from("/mnt/a b"));
        assert_eq!(m.fstype, "fuse.zflist");
        assert_eq!(m.source, "app.flist");
    }
}
