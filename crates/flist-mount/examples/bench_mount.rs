//! Read throughput through a FUSE mount of an flist vs the local disk (run by
//! `cargo xtask bench mount`; needs root, `/dev/fuse` and `redis-server`).
//!
//! A 100 MiB file of incompressible data is packed into a real `redis-server` (chunks over
//! loopback TCP, as from a hub's store). In one run it prints:
//! - local disk: cold (pages dropped with `posix_fadvise(DONTNEED)`) and warm (page cache);
//! - mount, cold: empty chunk cache, every chunk fetched, decoded and checked;
//! - mount, warm: a new mount on the filled chunk cache (no store traffic, no page cache);
//! - time to first byte of a cold read (open + first 4 KiB, empty cache);
//!
//! each as MiB/s and as a ratio of the local disk figure. `--mib N` changes the size.

#![allow(clippy::unwrap_used)] // a benchmark: a panic is the report

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use flist_mount::{mount, MountOptions};

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

fn drop_pages(path: &Path) {
    let f = File::open(path).unwrap();
    let _ = nix::fcntl::posix_fadvise(
        &f,
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: u64 = args
        .iter()
        .position(|a| a == "--mib")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
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
    let redis = test_support::RedisServer::start();
    let store = flist_store::BlockingStore::open(&redis.url()).unwrap();
    let flist = flist_convert::convert(
        flist_convert::Source::dir(&src),
        Some(&store),
        &flist_convert::ConvertOptions::default(),
    )
    .and_then(|c| c.into_flist())
    .unwrap();

    // Local disk.
    drop_pages(&file);
    let (n, cold_disk) = read_all(&file);
    let (_, warm_disk) = read_all(&file);
    let disk_cold = mibs(n, cold_disk);
    let disk_warm = mibs(n, warm_disk);

    let mp = work.path().join("mnt");
    std::fs::create_dir_all(&mp).unwrap();
    let cache = work.path().join("cache");
    let options = MountOptions {
        cache_dir: Some(cache.clone()),
        ..Default::default()
    };

    // Cold: empty cache. Time to first byte, then the whole file.
    let m = mount(
        flist.clone(),
        store.store().clone(),
        store.handle().clone(),
        &mp,
        &options,
    )
    .unwrap();
    let start = Instant::now();
    let mut f = File::open(mp.join("data.bin")).unwrap();
    let mut first = vec![0u8; 4096];
    f.read_exact(&mut first).unwrap();
    let ttfb = start.elapsed();
    drop(f);
    m.unmount().unwrap();
    std::fs::remove_dir_all(&cache).unwrap();
    let m = mount(
        flist.clone(),
        store.store().clone(),
        store.handle().clone(),
        &mp,
        &options,
    )
    .unwrap();
    let (n2, cold) = read_all(&mp.join("data.bin"));
    assert_eq!(n2, n);
    let (_, page_cached) = read_all(&mp.join("data.bin"));
    let stats = m.unmount().unwrap();

    // Warm: a new mount on the filled chunk cache.
    let m = mount(
        flist,
        store.store().clone(),
        store.handle().clone(),
        &mp,
        &options,
    )
    .unwrap();
    let (_, warm) = read_all(&mp.join("data.bin"));
    let warm_stats = m.unmount().unwrap();
    assert_eq!(warm_stats.fetched_chunks, 0);

    let cold_m = mibs(n, cold);
    let warm_m = mibs(n, warm);
    let pc_m = mibs(n, page_cached);
    println!("mount bench: {mib} MiB file, incompressible, chunks in redis-server over loopback");
    println!("  local disk, cold (pages dropped) : {disk_cold:8.1} MiB/s  (baseline)");
    println!(
        "  local disk, page cache           : {disk_warm:8.1} MiB/s  ({:.2}x cold disk)",
        disk_warm / disk_cold
    );
    println!(
        "  mount, cold (empty chunk cache)  : {cold_m:8.1} MiB/s  ({:.2}x cold disk; {} chunks, {} bytes fetched)",
        cold_m / disk_cold,
        stats.fetched_chunks,
        stats.fetched_bytes
    );
    println!(
        "  mount, warm (chunk cache, new mount): {warm_m:8.1} MiB/s  ({:.2}x cold disk)",
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
