//! The `prefetch` rows: a container start on an empty chunk cache with and without the
//! flist's prefetch list.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use flist_format::Flist;
use flist_mount::{mount, MountOptions, StatsSnapshot};
use flist_store::BlockingStore;

/// What the container runs.
const ENTRYPOINT: &str =
    ". /etc/os-release; echo \"$PRETTY_NAME\"; perl -e 'print \"perl ok\\n\"'; ls -l /usr/bin | wc -l";

/// Mounts `flist` on an empty cache under `work/name`, runs the container, unmounts:
/// seconds from the mount call to the container's exit, the traffic, the recorded files.
fn start(
    work: &Path,
    name: &str,
    flist: &Flist,
    store: &BlockingStore,
    record: bool,
) -> (f64, StatsSnapshot, Vec<String>) {
    let mp = work.join(format!("mnt-{name}"));
    std::fs::create_dir_all(&mp).unwrap();
    crate::drop_pages(&work.join("debian-store"));
    crate::drop_inode_caches();
    let options = MountOptions {
        cache_dir: Some(work.join(format!("cache-{name}"))),
        record_access: record,
        ..Default::default()
    };
    let t = Instant::now();
    let m = mount(
        flist.clone(),
        store.store().clone(),
        store.handle().clone(),
        &mp,
        &options,
    )
    .unwrap();
    let out = Command::new("chroot")
        .arg(&mp)
        .args(["/bin/sh", "-c", ENTRYPOINT])
        .output()
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = m.access_log();
    let stats = m.unmount().unwrap();
    (secs, stats, log.map(|l| l.paths()).unwrap_or_default())
}

/// Prints the rows.
pub fn rows(work: &Path, flist: &Flist, store: &BlockingStore) {
    let (_, _, recorded) = start(work, "record", flist, store, true);
    let mut with_list = flist.clone();
    with_list.metadata.set_prefetch(&recorded);
    let mut without = Vec::new();
    let mut with = Vec::new();
    for round in 0..3 {
        without.push(start(work, &format!("plain{round}"), flist, store, false));
        with.push(start(
            work,
            &format!("list{round}"),
            &with_list,
            store,
            false,
        ));
    }
    let best = |v: &[(f64, StatsSnapshot, Vec<String>)]| {
        v.iter()
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|r| (r.0, r.1))
            .unwrap()
    };
    let (a, sa) = best(&without);
    let (b, sb) = best(&with);
    println!(
        "prefetch bench: container start (chroot into the mounted Debian tree: sh, perl, ls), empty chunk cache, dir:// store pages dropped, best of 3"
    );
    println!(
        "  without a prefetch list          : {:8.1} ms  (baseline; {} chunks fetched)",
        a * 1000.0,
        sa.fetched_chunks
    );
    println!(
        "  with the recorded list ({} files) : {:8.1} ms  ({:.2}x; {} chunks fetched, {} ahead)",
        recorded.len(),
        b * 1000.0,
        b / a,
        sb.fetched_chunks,
        sb.prefetched
    );
}
