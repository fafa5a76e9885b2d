//! Lazy read-only FUSE mount of an flist, embeddable in a node agent.
//!
//! [`mount()`] serves an flist's tree at a mount point through FUSE (`/dev/fuse`, mounted
//! directly as root or through `fusermount3` from Debian's `fuse3` otherwise; no libfuse).
//! Metadata comes from the flist database, never from the store; a read fetches only the
//! chunks covering it through `flist-chunks` ([`ChunkSource`]: both hashes checked, the
//! decoded chunk kept in a persistent, content-addressed [`ChunkCache`] shared by every
//! mount and bounded with LRU eviction).
//! Sequential reads load the next chunks ahead, the window growing with sequential access;
//! store requests in flight are bounded. A prefetch list recorded by a first run
//! ([`MountOptions::record_access`], kept in the flist's metadata) is loaded as soon as a
//! later mount is in place, before the files are first opened.
//! [`Override`]s replace or add files for one mount (a VM's `config` map). [`unmount`]
//! unmounts a live mount or clears a stale one whose process was killed.
//!
//! The mount is read-only; for a writable root put a kernel overlayfs on top, with the
//! mount as `lowerdir`:
//! `mount -t overlay overlay -o lowerdir=MNT,upperdir=UP,workdir=WORK ROOT`.
//! Writes go to `UP`; the flist and the cache never change.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let flist = flist_format::Flist::open("app.flist")?;
//! let store = flist_store::BlockingStore::open("zdb://hub.example:9900")?;
//! let options = flist_mount::MountOptions {
//!     cache_dir: Some("/var/cache/zflist".into()),
//!     overrides: vec![flist_mount::Override::new("/etc/hostname", "vm1\n")],
//!     ..Default::default()
//! };
//! let mounted = flist_mount::mount(
//!     flist, store.store().clone(), store.handle().clone(),
//!     std::path::Path::new("/mnt/app"), &options)?;
//! // ... start the container ...
//! let stats = mounted.unmount()?;
//! println!("fetched {} bytes", stats.fetched_bytes);
//! # Ok(()) }
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod access;
pub mod error;
pub mod fs;
pub mod mount;
pub mod overrides;

pub use access::AccessLog;
pub use error::MountError;
/// The chunk-reading layer the mount reads through (re-exported: it was part of this crate).
pub use flist_chunks::{ChunkCache, ChunkSource, Stats, StatsSnapshot};
pub use fs::FlistFs;
pub use mount::{
    mount, mounts, unmount, Ended, MountInfo, MountOptions, Mounted, Signals, Unmounted,
    DEFAULT_CACHE_SIZE,
};
pub use overrides::Override;

/// Parses a size such as `512M`, `4G`, `1048576` or `2GiB` into bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(digits);
    let n: u64 = n.parse().ok()?;
    let mult: u64 = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse_size("512M"), Some(512 << 20));
        assert_eq!(super::parse_size("4GiB"), Some(4 << 30));
        assert_eq!(super::parse_size("100"), Some(100));
        assert_eq!(super::parse_size("10kb"), Some(10 << 10));
        assert_eq!(super::parse_size("x"), None);
        assert_eq!(super::parse_size("5Q"), None);
    }
}
