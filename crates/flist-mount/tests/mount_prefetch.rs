//! The prefetch list for real (`/dev/fuse`, as root, as CI runs the `mount` group): a first
//! mount records the files opened, the list is stored in the flist's metadata, and a new
//! mount on an empty chunk cache fetches exactly those files' chunks before anything is
//! opened, so the first reads are served without touching the store.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;
use std::time::{Duration, Instant};

use flist_format::codec::CHUNK_SIZE;
use flist_format::Flist;
use flist_mount::{mount, MountOptions, Mounted};
use flist_store::BlockingStore;

/// Waits until the background loaders have loaded `want` chunks and have nothing queued;
/// panics after a minute.
fn wait_prefetched(m: &Mounted, want: u64) {
    let start = Instant::now();
    while m.stats().prefetched < want || m.queued_chunks() > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "prefetch did not finish: {:?}, {} queued",
            m.stats(),
            m.queued_chunks()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read(mnt: &Path, path: &str) -> Vec<u8> {
    std::fs::read(mnt.join(path.trim_start_matches('/'))).unwrap()
}

#[test]
fn recorded_files_are_fetched_before_first_access() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    // (path, chunks): a "program", its "library", a small config file, a big data file the
    // program never opens
    let files = [
        ("bin/app", 3usize),
        ("lib/libx.so", 2),
        ("etc/app.conf", 1),
        ("data/big", 4),
    ];
    for (i, (path, chunks)) in files.iter().enumerate() {
        let p = src.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let len = if *chunks == 1 {
            1000
        } else {
            (chunks - 1) * CHUNK_SIZE + 1000
        };
        std::fs::write(&p, test_support::sample::noise(i as u64 + 1, len)).unwrap();
    }
    let store =
        BlockingStore::open(&format!("dir://{}", work.path().join("store").display())).unwrap();
    let flist = flist_convert::convert(
        flist_convert::Source::dir(&src),
        Some(&store),
        &flist_convert::ConvertOptions::default(),
    )
    .and_then(|c| c.into_flist())
    .unwrap();
    let mnt = work.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let options = |cache: &str, record: bool| MountOptions {
        cache_dir: Some(work.path().join(cache)),
        record_access: record,
        ..Default::default()
    };

    // First run: the "program" starts; listing and stat do not count, opening does.
    let m = mount(
        flist.clone(),
        store.store().clone(),
        store.handle().clone(),
        &mnt,
        &options("cache1", true),
    )
    .unwrap();
    assert_eq!(std::fs::read_dir(mnt.join("data")).unwrap().count(), 1);
    assert!(std::fs::metadata(mnt.join("data/big")).unwrap().len() > 0);
    for path in ["/etc/app.conf", "/bin/app", "/lib/libx.so", "/etc/app.conf"] {
        read(&mnt, path);
    }
    let log = m.access_log().unwrap();
    m.unmount().unwrap();
    let recorded = log.paths();
    assert_eq!(recorded, ["/etc/app.conf", "/bin/app", "/lib/libx.so"]);

    // Stored in the flist, read back from the file.
    let mut with_list = flist.clone();
    with_list.metadata.set_prefetch(&recorded);
    let file = work.path().join("app.flist");
    with_list.write(&file).unwrap();
    let with_list = Flist::open(&file).unwrap();
    assert_eq!(with_list.metadata.prefetch().unwrap().unwrap(), recorded);

    // Second run on an empty cache: the 6 chunks of the recorded files arrive before
    // anything is opened; the data file's 4 are not fetched.
    let m = mount(
        with_list.clone(),
        store.store().clone(),
        store.handle().clone(),
        &mnt,
        &options("cache2", false),
    )
    .unwrap();
    wait_prefetched(&m, 6);
    let before = m.stats();
    assert_eq!(
        (before.fetched_chunks, before.prefetched),
        (6, 6),
        "{before:?}"
    );
    for (i, (path, _)) in files.iter().enumerate().take(3) {
        assert_eq!(
            read(&mnt, path),
            std::fs::read(src.join(path)).unwrap(),
            "{path}"
        );
        assert_eq!(
            m.stats().fetched_chunks,
            6,
            "{path} was read from the store: {i}"
        );
    }
    // an unlisted file is fetched when read
    assert_eq!(
        read(&mnt, "data/big"),
        std::fs::read(src.join("data/big")).unwrap()
    );
    assert_eq!(m.stats().fetched_chunks, 10, "{:?}", m.stats());
    m.unmount().unwrap();

    // Without the list (--no-prefetch), nothing is fetched ahead.
    let m = mount(
        with_list,
        store.store().clone(),
        store.handle().clone(),
        &mnt,
        &MountOptions {
            prefetch_list: false,
            ..options("cache3", false)
        },
    )
    .unwrap();
    assert_eq!(read(&mnt, "etc/app.conf").len(), 1000);
    let st = m.unmount().unwrap();
    assert_eq!((st.fetched_chunks, st.prefetched), (1, 0), "{st:?}");
}
