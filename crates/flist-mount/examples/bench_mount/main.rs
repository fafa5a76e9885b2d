//! Reads through a FUSE mount of an flist vs the same on the local disk (run by
//! `cargo xtask bench mount`; needs root and `/dev/fuse`).
//!
//! Rows (`--only read,find,prefetch` picks some; all by default), each printed with the
//! baseline it is divided by, measured in the same run:
//! - `read`: a file of incompressible data (`--mib N`, 256 by default) packed into a `dir://`
//!   store. Local disk cold (pages dropped with `posix_fadvise(DONTNEED)`) is the baseline;
//!   the mount cold (empty chunk cache, the store's pages dropped too: every chunk read from
//!   the disk, decoded and checked), the mount warm (a new mount on the filled chunk cache:
//!   no store traffic, no kernel page cache of the mount), the same mount again (kernel page
//!   cache, measured once the background loaders have settled) and the time to the first
//!   byte of a cold read; then the mount cold with the chunks served by a real `hub-server`
//!   (release build, made if missing) on its `/chunks` route over loopback HTTP.
//! - `find`: `find -printf '%s %m %u'` of every entry of the Debian minbase tree (cached
//!   under `target/tmp/` by the mount tests) on a fresh mount vs on the local disk, dentry and
//!   inode caches dropped before each (`/proc/sys/vm/drop_caches`).
//! - `prefetch`: a container start (`chroot` into the mounted Debian tree running a shell
//!   that reads `/etc/os-release`, runs `perl` and lists `/usr/bin`) on an empty chunk cache,
//!   with the flist's prefetch list (recorded by a first mount with `record_access`) vs
//!   without it.

#![allow(clippy::unwrap_used)] // a benchmark: a panic is the report

mod prefetch;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use flist_format::Flist;
use flist_mount::{mount, MountOptions};
use flist_store::BlockingStore;

fn read_all(path: &Path) -> (u64, Duration) {
    let start = Instant::now();
    let mut f = File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    (total, start.elapsed())
}

fn mibs(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64()
}

/// Drops the page cache of every file under `path` (a file or a directory), written out
/// first.
pub fn drop_pages(path: &Path) {
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap().flatten() {
            drop_pages(&e.path());
        }
        return;
    }
    if let Ok(f) = File::open(path) {
        // dirty pages are not dropped: write them out first
        let _ = f.sync_all();
        let _ = nix::fcntl::posix_fadvise(
            &f,
            0,
            0,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        );
    }
}

/// Drops the kernel's dentry and inode caches (the whole machine's: root only).
pub fn drop_inode_caches() {
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "2");
}

/// A `dir://` store under `dir`.
pub fn dir_store(dir: &Path) -> BlockingStore {
    BlockingStore::open(&format!("dir://{}", dir.display())).unwrap()
}

/// Packs `src` into `store`.
pub fn pack(src: &Path, store: &BlockingStore) -> Flist {
    flist_convert::convert(
        flist_convert::Source::dir(src),
        Some(store),
        &flist_convert::ConvertOptions::default(),
    )
    .and_then(|c| c.into_flist())
    .unwrap()
}

/// The Debian minbase tree the mount tests cache, if there.
pub fn debian_tree() -> Option<PathBuf> {
    let t = test_support::tmp_dir().join("debootstrap-minbase");
    t.join("etc/debian_version").is_file().then_some(t)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let mib: u64 = arg("--mib").and_then(|v| v.parse().ok()).unwrap_or(256);
    let only = arg("--only").unwrap_or_else(|| "read,find,prefetch".into());
    let work = tempfile::tempdir_in(test_support::tmp_dir()).unwrap();
    if only.contains("read") {
        read_rows(work.path(), mib);
    }
    if only.contains("find") || only.contains("prefetch") {
        let Some(tree) = debian_tree() else {
            println!(
                "find/prefetch rows: no Debian tree at target/tmp/debootstrap-minbase \
                 (made by `cargo xtask test mount`): skipped"
            );
            return;
        };
        let store = dir_store(&work.path().join("debian-store"));
        let flist = pack(&tree, &store);
        if only.contains("find") {
            find_rows(work.path(), &tree, &flist, &store);
        }
        if only.contains("prefetch") {
            prefetch::rows(work.path(), &flist, &store);
        }
    }
}

fn read_rows(work: &Path, mib: u64) {
    let src = work.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let file = src.join("data.bin");
    {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut data = vec![0u8; (mib << 20) as usize];
        for w in data.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            w.copy_from_slice(&state.to_le_bytes()[..w.len()]);
        }
        std::fs::write(&file, data).unwrap();
    }
    let store_dir = work.join("store");
    let store = dir_store(&store_dir);
    let flist = pack(&src, &store);

    // Local disk.
    drop_pages(&file);
    let (n, cold_disk) = read_all(&file);
    let (_, warm_disk) = read_all(&file);
    let disk_cold = mibs(n, cold_disk);
    let disk_warm = mibs(n, warm_disk);

    let mp = work.join("mnt");
    std::fs::create_dir_all(&mp).unwrap();
    let cache = work.join("cache");
    let options = MountOptions {
        cache_dir: Some(cache.clone()),
        ..Default::default()
    };
    let mount_it = || {
        mount(
            flist.clone(),
            store.store().clone(),
            store.handle().clone(),
            &mp,
            &options,
        )
        .unwrap()
    };

    // Cold: empty cache, the store's pages dropped. Time to first byte, then the file.
    drop_pages(&store_dir);
    let m = mount_it();
    let start = Instant::now();
    let mut f = File::open(mp.join("data.bin")).unwrap();
    let mut first = vec![0u8; 4096];
    f.read_exact(&mut first).unwrap();
    let ttfb = start.elapsed();
    drop(f);
    m.unmount().unwrap();
    std::fs::remove_dir_all(&cache).unwrap();
    drop_pages(&store_dir);
    let m = mount_it();
    let (n2, cold) = read_all(&mp.join("data.bin"));
    assert_eq!(n2, n);
    std::thread::sleep(Duration::from_secs(1));
    let (_, page_cached) = read_all(&mp.join("data.bin"));
    let stats = m.unmount().unwrap();

    // Warm: a new mount on the filled chunk cache.
    let m = mount_it();
    let (_, warm) = read_all(&mp.join("data.bin"));
    let warm_stats = m.unmount().unwrap();
    assert_eq!(warm_stats.fetched_chunks, 0);

    let http_m = http_row(work, &src, &mp, n);

    let cold_m = mibs(n, cold);
    let warm_m = mibs(n, warm);
    let pc_m = mibs(n, page_cached);
    println!("mount bench: {mib} MiB file, incompressible, chunks in a dir:// store");
    println!("  local disk, cold (pages dropped) : {disk_cold:8.1} MiB/s  (baseline)");
    println!(
        "  local disk, page cache           : {disk_warm:8.1} MiB/s  ({:.2}x cold disk)",
        disk_warm / disk_cold
    );
    println!(
        "  mount, cold (empty chunk cache, store pages dropped): {cold_m:8.1} MiB/s  ({:.2}x cold disk; goal >= 0.5x; {} chunks, {} bytes fetched)",
        cold_m / disk_cold,
        stats.fetched_chunks,
        stats.fetched_bytes
    );
    println!(
        "  mount, cold, chunks from the hub's /chunks over HTTP: {http_m:8.1} MiB/s  ({:.2}x cold disk; goal >= 0.4x)",
        http_m / disk_cold
    );
    println!(
        "  mount, warm (chunk cache, new mount): {warm_m:8.1} MiB/s  ({:.2}x cold disk; goal >= 0.9x)",
        warm_m / disk_cold
    );
    println!(
        "  mount, same mount again (page cache): {pc_m:8.1} MiB/s  ({:.2}x local page cache)",
        pc_m / disk_warm
    );
    println!(
        "  time to first byte, cold         : {:8.2} ms",
        ttfb.as_secs_f64() * 1000.0
    );
}

/// MiB/s of a cold read (empty chunk cache) through a mount whose chunks come from a real
/// `hub-server`'s `/chunks` route (its `dir://` store, pages dropped) over loopback HTTP.
fn http_row(work: &Path, src: &Path, mp: &Path, n: u64) -> f64 {
    let bin = test_support::hub::hub_server_bin(
        &test_support::target_dir()
            .join("release")
            .join("bench_mount"),
    );
    let hub = test_support::hub::HubProcess::start(&bin);
    let flist = pack(src, &BlockingStore::open(&hub.store_url()).unwrap());
    let http = BlockingStore::open(&format!("{}/chunks", hub.url())).unwrap();
    drop_pages(&hub.chunks_dir());
    let m = mount(
        flist,
        http.store().clone(),
        http.handle().clone(),
        mp,
        &MountOptions {
            cache_dir: Some(work.join("cache-http")),
            ..Default::default()
        },
    )
    .unwrap();
    let (got, secs) = read_all(&mp.join("data.bin"));
    assert_eq!(got, n);
    let stats = m.unmount().unwrap();
    assert!(stats.fetched_chunks > 0, "{stats:?}");
    mibs(n, secs)
}

/// Seconds of `find DIR -printf '%s %m %u\n'`, dentry and inode caches dropped first.
fn time_find(dir: &Path) -> (f64, usize) {
    drop_inode_caches();
    let start = Instant::now();
    let out = Command::new("find")
        .arg(dir)
        .args(["-printf", "%s %m %u\\n"])
        .output()
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert!(out.status.success());
    (secs, out.stdout.split(|b| *b == b'\n').count() - 1)
}

fn find_rows(work: &Path, tree: &Path, flist: &Flist, store: &BlockingStore) {
    let mp = work.join("mnt-find");
    std::fs::create_dir_all(&mp).unwrap();
    let mut local = Vec::new();
    let mut mounted = Vec::new();
    let mut entries = 0;
    // three rounds, alternating; the best of each
    for _ in 0..3 {
        local.push(time_find(tree).0);
        let m = mount(
            flist.clone(),
            store.store().clone(),
            store.handle().clone(),
            &mp,
            &MountOptions::default(),
        )
        .unwrap();
        let (secs, n) = time_find(&mp);
        mounted.push(secs);
        entries = n;
        m.unmount().unwrap();
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let (l, m) = (best(&local), best(&mounted));
    println!("find bench: `find -printf '%s %m %u'` of the Debian minbase tree ({entries} entries), dentry/inode caches dropped, best of 3");
    println!(
        "  local disk                       : {:8.1} ms  (baseline)",
        l * 1000.0
    );
    println!(
        "  fresh mount                      : {:8.1} ms  ({:.2}x local; goal <= 1.0x)",
        m * 1000.0,
        m / l
    );
}
