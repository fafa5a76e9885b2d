//! Pack a directory into a `dir://` store, extract it again: the copy equals the source.
//! Verification finds missing and corrupted chunks.

use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use flist_convert::{extract, verify, ConvertError, ConvertOptions, ExtractOptions, Source};
use flist_store::{BlockingStore, DirStore};

/// A directory converted, its tree read back into memory.
fn pack_dir(
    src: &Path,
    store: Option<&BlockingStore>,
    opts: &ConvertOptions,
) -> flist_convert::Result<flist_convert::Packed> {
    flist_convert::convert(Source::dir(src), store, opts)?.into_packed()
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

fn make_source(src: &Path) {
    fs::create_dir_all(src.join("a/b/c")).expect("mkdir");
    fs::create_dir(src.join("empty")).expect("mkdir");
    fs::write(src.join("empty-file"), b"").expect("write");
    fs::write(src.join("a/small.txt"), b"hello\n").expect("write");
    let big: Vec<u8> = (0..1_300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    fs::write(src.join("a/b/big.bin"), &big).expect("write");
    fs::write(src.join("a/b/c/exact"), vec![7u8; 512 * 1024]).expect("write");
    fs::hard_link(src.join("a/b/big.bin"), src.join("hardlink.bin")).expect("hard link");
    fs::write(src.join("suid"), b"#!/bin/sh\n").expect("write");
    fs::set_permissions(src.join("suid"), fs::Permissions::from_mode(0o4755)).expect("chmod");
    fs::write(src.join("private"), b"secret").expect("write");
    fs::set_permissions(src.join("private"), fs::Permissions::from_mode(0o600)).expect("chmod");
    fs::set_permissions(src.join("a/b/c"), fs::Permissions::from_mode(0o1777)).expect("chmod");
    symlink("a/small.txt", src.join("rel-link")).expect("symlink");
    symlink("/etc/passwd", src.join("abs-link")).expect("symlink");
    symlink("a/b", src.join("dir-link")).expect("symlink");
    symlink("missing", src.join("dangling")).expect("symlink");
    nix::unistd::mkfifo(
        &src.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .expect("mkfifo");
    if is_root() {
        use nix::sys::stat::{makedev, mknod, Mode, SFlag};
        let m = Mode::from_bits_truncate(0o644);
        mknod(&src.join("null"), SFlag::S_IFCHR, m, makedev(1, 3)).expect("mknod");
        mknod(&src.join("loop0"), SFlag::S_IFBLK, m, makedev(7, 0)).expect("mknod");
        std::os::unix::fs::lchown(src.join("private"), Some(1000), Some(1000)).expect("chown");
    }
    let t = filetime::FileTime::from_unix_time(1_577_934_245, 0);
    filetime::set_symlink_file_times(src.join("a/small.txt"), t, t).expect("utimes");
    filetime::set_symlink_file_times(src.join("rel-link"), t, t).expect("utimes");
    for d in ["a/b/c", "a/b", "a", "empty", ""] {
        filetime::set_file_times(src.join(d), t, t).expect("utimes");
    }
}

/// Compares two directory trees: types, modes, owners, mtimes, contents, link targets,
/// device numbers.
fn compare(a: &Path, b: &Path) {
    let seen = compare_trees(a, b);
    assert!(seen >= 18, "compared {seen} entries");
}

/// [`compare`] without a minimum; returns how many entries were compared.
fn compare_trees(a: &Path, b: &Path) -> usize {
    let mut stack = vec![std::path::PathBuf::new()];
    let mut seen = 0;
    while let Some(rel) = stack.pop() {
        let (pa, pb) = (a.join(&rel), b.join(&rel));
        let (ma, mb) = (
            fs::symlink_metadata(&pa).expect("a"),
            fs::symlink_metadata(&pb).unwrap_or_else(|e| panic!("{}: {e}", rel.display())),
        );
        let what = rel.display().to_string();
        assert_eq!(ma.file_type(), mb.file_type(), "{what} type");
        assert_eq!(ma.mtime(), mb.mtime(), "{what} mtime");
        if is_root() {
            assert_eq!((ma.uid(), ma.gid()), (mb.uid(), mb.gid()), "{what} owner");
        }
        let ft = ma.file_type();
        if !ft.is_symlink() {
            assert_eq!(ma.mode(), mb.mode(), "{what} mode");
        }
        if ft.is_dir() {
            let mut names: Vec<_> = fs::read_dir(&pa)
                .expect("readdir")
                .map(|e| e.expect("entry").file_name())
                .collect();
            let mut other: Vec<_> = fs::read_dir(&pb)
                .expect("readdir")
                .map(|e| e.expect("entry").file_name())
                .collect();
            names.sort();
            other.sort();
            assert_eq!(names, other, "{what} entries");
            stack.extend(names.into_iter().map(|n| rel.join(n)));
        } else if ft.is_file() {
            assert_eq!(
                fs::read(&pa).expect("read"),
                fs::read(&pb).expect("read"),
                "{what} content"
            );
        } else if ft.is_symlink() {
            assert_eq!(
                fs::read_link(&pa).expect("link"),
                fs::read_link(&pb).expect("link"),
                "{what} target"
            );
        } else if ft.is_char_device() || ft.is_block_device() {
            assert_eq!(ma.rdev(), mb.rdev(), "{what} device");
        }
        seen += 1;
    }
    seen
}

#[test]
fn pack_then_extract_equals_the_source() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    make_source(&src);
    let store = dir_blocking(DirStore::new(tmp.path().join("store")).expect("store"));
    let packed = pack_dir(&src, Some(&store), &ConvertOptions::default()).expect("pack");
    assert_eq!(packed.stats.hard_links, 1);
    assert_eq!(packed.stats.warning_count(flist_convert::warn::HARDLINK), 1);
    // big.bin (3 chunks) and its hard link share chunks: stored once
    let t = &packed.tree;
    let blocks = |p: &str| match &t.node(t.lookup(p).expect(p)).kind {
        flist_format::Kind::File { blocks, .. } => blocks.clone(),
        _ => panic!("{p} not a file"),
    };
    assert_eq!(blocks("a/b/big.bin").len(), 3);
    assert_eq!(blocks("a/b/big.bin"), blocks("hardlink.bin"));
    // directories first, then by name
    let top: Vec<&str> = t.children(t.root()).map(|(n, _)| n).collect();
    assert_eq!(&top[..2], ["a", "empty"]);

    let dest = tmp.path().join("dest");
    let st = extract(&packed.tree, &dest, &store, &ExtractOptions::default()).expect("extract");
    assert_eq!(st.symlinks, 4);
    assert_eq!(st.specials, if is_root() { 3 } else { 1 });
    compare(&src, &dest);

    // Extraction refuses a non-empty destination.
    let err =
        extract(&packed.tree, &dest, &store, &ExtractOptions::default()).expect_err("not empty");
    assert!(matches!(err, ConvertError::Destination { .. }), "{err}");
}

#[test]
fn verify_finds_missing_and_corrupt_chunks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    for i in 0..5u8 {
        fs::write(src.join(format!("f{i}")), vec![i; 1000 + usize::from(i)]).expect("write");
    }
    let dir_store = DirStore::new(tmp.path().join("store")).expect("store");
    let store = dir_blocking(DirStore::new(tmp.path().join("store")).expect("store"));
    let packed = pack_dir(&src, Some(&store), &ConvertOptions::default()).expect("pack");
    let report = verify(&packed.tree, &store, true).expect("verify");
    assert!(report.is_ok());
    assert_eq!(report.chunks, 5);

    let t = &packed.tree;
    let key = |p: &str| match &t.node(t.lookup(p).expect(p)).kind {
        flist_format::Kind::File { blocks, .. } => blocks[0].id().to_vec(),
        _ => panic!(),
    };
    fs::remove_file(dir_store.path_of(&key("f1")).expect("path")).expect("rm chunk");
    let path = dir_store.path_of(&key("f3")).expect("path");
    let mut bytes = fs::read(&path).expect("read");
    bytes[0] ^= 0xff;
    fs::write(&path, bytes).expect("corrupt");

    let shallow = verify(&packed.tree, &store, false).expect("verify");
    assert_eq!(shallow.missing.len(), 1);
    assert_eq!(shallow.missing[0].path, "/f1");
    assert!(
        shallow.corrupt.is_empty(),
        "shallow verification does not read chunks"
    );
    let deep = verify(&packed.tree, &store, true).expect("verify");
    assert_eq!(deep.missing.len(), 1);
    assert_eq!(deep.corrupt.len(), 1);
    assert_eq!(deep.corrupt[0].path, "/f3");

    // Extraction fails on the missing chunk and says which.
    let err = extract(
        &packed.tree,
        &tmp.path().join("dest"),
        &store,
        &ExtractOptions::default(),
    )
    .expect_err("missing chunk");
    assert!(
        matches!(
            err,
            ConvertError::MissingChunk { .. } | ConvertError::Codec { .. }
        ),
        "{err}"
    );
}

#[test]
fn progress_reports_counts_and_the_final_report_matches_the_stats() {
    use std::sync::Mutex;
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    make_source(&src);
    let store = dir_blocking(DirStore::new(tmp.path().join("store")).expect("store"));
    let reports: Arc<Mutex<Vec<flist_convert::ProgressReport>>> = Arc::default();
    let sink = reports.clone();
    let opts = ConvertOptions {
        progress: Some(Arc::new(move |r: &flist_convert::ProgressReport| {
            sink.lock().expect("lock").push(*r);
        })),
        ..ConvertOptions::default()
    };
    let packed = pack_dir(&src, Some(&store), &opts).expect("pack");
    let last = *reports
        .lock()
        .expect("lock")
        .last()
        .expect("at least the final report");
    assert_eq!(last.entries, packed.stats.entries);
    assert_eq!(last.chunks_new, packed.stats.chunks_written);
    assert!(last.chunks_new > 0);
    assert_eq!(last.bytes_read, packed.stats.bytes_read);
    assert_eq!(
        packed.stats.bytes,
        packed.stats.bytes_read + 1_300_000,
        "the hard link is not read twice"
    );
    // the same content again: every chunk is reused
    let again = pack_dir(&src, Some(&store), &opts).expect("pack");
    assert_eq!(again.stats.chunks_written, 0);
    let last = *reports.lock().expect("lock").last().expect("report");
    assert_eq!(
        last.chunks_reused,
        again.stats.chunks_present + again.stats.chunks_deduplicated
    );
}

/// What a random entry is.
#[derive(Clone, Debug)]
enum Gen {
    File(usize),
    Dir,
    Link(String),
    Fifo,
    Device(bool, u32, u32),
}

fn gen_strategy() -> impl proptest::strategy::Strategy<Value = Gen> {
    use proptest::prelude::*;
    prop_oneof![
        3 => prop_oneof![
            Just(0usize),
            Just(524_287),
            Just(524_288),
            Just(524_289),
            1usize..3000,
        ]
        .prop_map(Gen::File),
        2 => Just(Gen::Dir),
        1 => "[a-zA-Z0-9 ._/é-]{1,24}".prop_map(Gen::Link),
        1 => Just(Gen::Fifo),
        1 => (any::<bool>(), 0u32..300, 0u32..300).prop_map(|(b, ma, mi)| Gen::Device(b, ma, mi)),
    ]
}

/// (parent index, name, kind, permission bits, mtime)
type Item = (usize, String, Gen, u32, i64);

/// Builds the random entries on disk under `root`; returns how many were made.
fn build_on_disk(root: &Path, items: &[Item]) -> usize {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    let mut dirs = vec![root.to_path_buf()];
    let mut made = 0;
    for (i, (parent, name, g, mode, mtime)) in items.iter().enumerate() {
        let path = dirs[parent % dirs.len()].join(name);
        if fs::symlink_metadata(&path).is_ok() {
            continue; // the name is taken in that directory
        }
        let perm = Mode::from_bits_truncate(*mode & 0o7777);
        match g {
            Gen::File(size) => {
                let data: Vec<u8> = (0..*size)
                    .map(|j| ((j as u32).wrapping_mul(2_654_435_761) >> (i % 24)) as u8)
                    .collect();
                fs::write(&path, data).expect("write");
                fs::set_permissions(&path, fs::Permissions::from_mode(*mode & 0o7777))
                    .expect("chmod");
            }
            Gen::Dir => {
                fs::create_dir(&path).expect("mkdir");
                // owner needs rwx to fill and later walk it; keep the rest random
                fs::set_permissions(&path, fs::Permissions::from_mode((*mode & 0o7777) | 0o700))
                    .expect("chmod");
                dirs.push(path.clone());
            }
            Gen::Link(target) => symlink(target, &path).expect("symlink"),
            Gen::Fifo => nix::unistd::mkfifo(&path, perm).expect("mkfifo"),
            Gen::Device(block, ma, mi) => {
                if !is_root() {
                    continue;
                }
                let kind = if *block {
                    SFlag::S_IFBLK
                } else {
                    SFlag::S_IFCHR
                };
                mknod(&path, kind, perm, makedev((*ma).into(), (*mi).into())).expect("mknod");
                // mknod applies the umask: set the exact bits
                fs::set_permissions(&path, fs::Permissions::from_mode(*mode & 0o7777))
                    .expect("chmod");
            }
        }
        if !matches!(g, Gen::Dir) {
            let t = filetime::FileTime::from_unix_time(*mtime, 0);
            filetime::set_symlink_file_times(&path, t, t).expect("utimes");
        }
        made += 1;
    }
    // directory times last: filling a directory changes its mtime
    for (k, d) in dirs.iter().enumerate().rev() {
        let t = filetime::FileTime::from_unix_time(1_600_000_000 + k as i64, 0);
        filetime::set_file_times(d, t, t).expect("utimes");
    }
    made
}

use proptest::prelude::Strategy as _;

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 16, ..Default::default() })]

    /// Random trees (unicode and space names, every entry type, sizes around the chunk size)
    /// → pack → flist file → read back → extract: the copy equals the source.
    #[test]
    fn random_trees_pack_read_extract(
        items in proptest::collection::vec(
            (
                0usize..100,
                "[a-zA-Z0-9 ._é中-]{1,16}".prop_filter("not . or ..", |n: &String| n != "." && n != ".."),
                gen_strategy(),
                0u32..0o10000,
                0i64..4_000_000_000,
            ),
            0..14,
        )
    ) {
        let work = tempfile::tempdir().expect("tempdir");
        let src = work.path().join("src");
        fs::create_dir(&src).expect("mkdir");
        let made = build_on_disk(&src, &items);
        let store = dir_blocking(DirStore::new(work.path().join("store")).expect("store"));
        let packed = pack_dir(&src, Some(&store), &ConvertOptions::default()).expect("pack");
        let file = work.path().join("r.flist");
        flist_format::Flist { tree: packed.tree, metadata: Default::default() }
            .write(&file)
            .expect("write flist");
        let back = flist_format::Flist::open(&file).expect("read flist");
        let dest = work.path().join("dest");
        extract(&back.tree, &dest, &store, &ExtractOptions::default()).expect("extract");
        // the root's own times are not part of the comparison's subject
        let t = filetime::FileTime::from_unix_time(1_600_000_000, 0);
        filetime::set_file_times(&dest, t, t).expect("utimes");
        let seen = compare_trees(&src, &dest);
        proptest::prop_assert_eq!(seen, made + 1);
    }
}

/// Deep verification decodes on several threads over pipelined fetches: every corrupt
/// chunk of many batches is reported once, in the tree's order, whatever thread saw it.
#[test]
fn deep_verify_reports_every_corrupt_chunk_in_order() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    for i in 0..200u32 {
        fs::write(
            src.join(format!("f{i:03}")),
            format!("file {i} ").repeat(50),
        )
        .expect("write");
    }
    let dir_store = DirStore::new(tmp.path().join("store")).expect("store");
    let store = dir_blocking(dir_store.clone());
    let packed = pack_dir(&src, Some(&store), &ConvertOptions::default()).expect("pack");
    let t = &packed.tree;
    let mut expected = Vec::new();
    for i in (0..200u32).step_by(7) {
        let name = format!("f{i:03}");
        let flist_format::Kind::File { blocks, .. } = &t.node(t.lookup(&name).expect("file")).kind
        else {
            panic!("{name} is not a file")
        };
        let path = dir_store.path_of(blocks[0].id()).expect("path");
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x55;
        fs::write(&path, bytes).expect("corrupt");
        expected.push(format!("/{name}"));
    }
    let deep = verify(&packed.tree, &store, true).expect("verify");
    assert_eq!(deep.chunks, 200);
    assert!(deep.missing.is_empty());
    let got: Vec<&str> = deep.corrupt.iter().map(|b| b.path.as_str()).collect();
    assert_eq!(got, expected);
    assert!(verify(&packed.tree, &store, false)
        .expect("shallow")
        .is_ok());
}

/// A dir store behind the blocking facade the converter takes.
fn dir_blocking(store: DirStore) -> BlockingStore {
    BlockingStore::on_private_runtime(Arc::new(store)).expect("runtime")
}
