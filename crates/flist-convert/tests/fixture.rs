//! The reference fixture: `fixture-tree.tar.gz` converted gives the reference
//! `fixture.flist`; unpacked into a directory (as root) and packed again it gives the same
//! flist content.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::sync::Arc;

use flist_convert::{convert, extract, verify, ConvertOptions, Converted, ExtractOptions, Source};
use flist_format::diff::{diff, DiffOptions};
use flist_format::{Block, Flist, Kind, SpecialKind, Tree};
use flist_store::{BlockingStore, DirStore};
use serde_json::Value;
use sha2::{Digest, Sha256};
use test_support::fixture;

struct Env {
    tmp: tempfile::TempDir,
    store: BlockingStore,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = BlockingStore::on_private_runtime(Arc::new(
        DirStore::new(tmp.path().join("store")).expect("dir store"),
    ))
    .expect("runtime");
    Env { tmp, store }
}

/// Writes the flist at `out`; its statistics.
fn written(c: Converted, out: &std::path::Path) -> flist_convert::Result<flist_convert::Stats> {
    c.write_flist(out)?;
    Ok(c.stats)
}

fn convert_fixture(e: &Env) -> (Flist, flist_convert::Stats) {
    let out = e.tmp.path().join("fixture.flist");
    let input = File::open(fixture("fixture-tree.tar.gz")).expect("fixture tarball");
    let stats = convert(
        Source::archive(input),
        Some(&e.store),
        &ConvertOptions::default(),
    )
    .and_then(|c| written(c, &out))
    .expect("fixture converts");
    (Flist::open(&out).expect("our flist reads back"), stats)
}

fn blocks_by_path(t: &Tree) -> HashMap<String, Vec<Block>> {
    t.walk()
        .filter_map(|id| match &t.node(id).kind {
            Kind::File { blocks, .. } => Some((t.path_of(id), blocks.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn fixture_tarball_gives_the_reference_flist() {
    let e = env();
    let (ours, stats) = convert_fixture(&e);
    let reference = Flist::open(fixture("fixture.flist")).expect("reference flist");

    // Everything but ctimes (a tar does not carry them; the reference recorded the local
    // ctime), special kinds (the reference records every special as a socket: we record the
    // real kind) and chunk keys (compared below) is equal, children order included...
    let opts = DiffOptions {
        ignore_ctime: true,
        loose_special_kind: true,
        ignore_blocks: true,
        ..Default::default()
    };
    let diffs = diff(&reference.tree, &ours.tree, &opts);
    // ...except two things a tar cannot tell: the root's time (the reference never records
    // it: 0) and the local size of the 300-entry directory (12288 on the reference's disk).
    let unexpected: Vec<&String> = diffs
        .iter()
        .filter(|d| {
            !d.starts_with("/: mtime 0 != ") && d.as_str() != "/many: directory size 12288 != 4096"
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "differences from the reference: {unexpected:#?}"
    );
    assert!(diffs.len() <= 2, "{diffs:#?}");

    // The owner name of uid 1000 comes from this machine's user database, as the reference's
    // came from its machine's (the tarball has numeric owners only).
    let secret = ours.tree.node(ours.tree.lookup("secret").expect("secret"));
    let local = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(1000))
        .expect("passwd lookup")
        .map(|u| u.name)
        .unwrap_or_else(|| "1000".into());
    assert_eq!(secret.meta.uname, local);

    // Real special kinds.
    let kind = |p: &str| match &ours.tree.node(ours.tree.lookup(p).expect(p)).kind {
        Kind::Special { kind, rdev } => (*kind, *rdev),
        k => panic!("{p} is {}", k.type_name()),
    };
    assert_eq!(kind("fifo"), (SpecialKind::Fifo, None));
    assert_eq!(kind("chardev"), (SpecialKind::Chardev, Some((1, 3))));
    assert_eq!(kind("blockdev"), (SpecialKind::Block, Some((7, 0))));

    // Chunk keys: same count everywhere; how many equal the reference's depends on the
    // snappy implementation (the pure-Rust one differs on a few inputs).
    let (a, b) = (blocks_by_path(&reference.tree), blocks_by_path(&ours.tree));
    assert_eq!(a.len(), b.len());
    let (mut refs, mut equal) = (0, 0);
    let mut distinct_ref = std::collections::HashSet::new();
    let mut distinct_equal = std::collections::HashSet::new();
    for (path, rb) in &a {
        let ob = &b[path];
        assert_eq!(rb.len(), ob.len(), "{path} chunk count");
        for (x, y) in rb.iter().zip(ob) {
            refs += 1;
            distinct_ref.insert(*x);
            assert_eq!(
                x.key(),
                y.key(),
                "{path}: plaintext hash (decryption key) is implementation independent"
            );
            if x == y {
                equal += 1;
                distinct_equal.insert(*x);
            }
        }
    }
    println!(
        "chunk references equal to the reference: {equal}/{refs}; distinct chunks: {}/{}",
        distinct_equal.len(),
        distinct_ref.len()
    );
    assert_eq!((refs, distinct_ref.len()), (276, 274));
    assert!(
        equal >= 270,
        "only {equal} of {refs} chunk keys equal the reference's"
    );
    // Chunks of the reference that we produced identically are byte-identical in storage.
    for h in distinct_equal.iter().take(20) {
        let theirs =
            std::fs::read(fixture(&format!("chunks/{}", h.id_hex()))).expect("reference chunk");
        let st = DirStore::new(e.tmp.path().join("store")).expect("store");
        let ours = std::fs::read(st.path_of(h.id()).expect("chunk path")).expect("our chunk");
        assert_eq!(theirs, ours);
    }

    // Stats.
    assert_eq!(
        (
            stats.files,
            stats.directories,
            stats.symlinks,
            stats.specials
        ),
        (312, 4, 3, 3)
    );
    assert_eq!(stats.bytes, 5_524_641);
    assert_eq!(stats.chunks_written, 274);
    assert_eq!(
        stats.chunks_deduplicated, 2,
        "dup-a.bin and dup-b.bin share their chunks"
    );
    assert!(stats.warnings.is_empty(), "{:?}", stats.warnings);

    // Every chunk is in the store and decodes.
    let report = verify(&ours.tree, &e.store, true).expect("verify");
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.chunks, 274);
}

fn manifest() -> Vec<Value> {
    let bytes = std::fs::read(fixture("fixture.manifest.json")).expect("manifest");
    serde_json::from_slice::<Value>(&bytes)
        .expect("json")
        .as_array()
        .expect("array")
        .clone()
}

#[test]
fn fixture_unpacked_and_packed_from_the_directory_gives_the_same_flist() {
    let root = nix::unistd::Uid::effective().is_root();
    let e = env();
    let (from_tar, _) = convert_fixture(&e);
    let dest = e.tmp.path().join("unpacked");
    let st = extract(&from_tar.tree, &dest, &e.store, &ExtractOptions::default()).expect("extract");
    assert_eq!(st.files, 312);
    assert_eq!(st.owners_restored, root);

    // The unpacked tree matches the manifest: types, modes, owners, mtimes, contents.
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    for m in manifest() {
        let path = m["path"].as_str().expect("path");
        let p = dest.join(path.trim_start_matches('/'));
        let md = std::fs::symlink_metadata(&p).unwrap_or_else(|err| panic!("{path}: {err}"));
        let ty = m["type"].as_str().expect("type");
        let mode = u32::from_str_radix(
            m["mode"].as_str().expect("mode").trim_start_matches("0o"),
            8,
        )
        .expect("mode");
        let ft = md.file_type();
        match ty {
            "dir" => assert!(ft.is_dir(), "{path}"),
            "file" => {
                assert!(ft.is_file(), "{path}");
                let mut data = Vec::new();
                File::open(&p)
                    .expect("open")
                    .read_to_end(&mut data)
                    .expect("read");
                assert_eq!(
                    hex::encode(Sha256::digest(&data)),
                    m["sha256"].as_str().expect("sha"),
                    "{path}"
                );
            }
            "symlink" => {
                assert!(ft.is_symlink(), "{path}");
                assert_eq!(
                    std::fs::read_link(&p).expect("link").to_str(),
                    m["target"].as_str(),
                    "{path}"
                );
            }
            "fifo" => assert!(ft.is_fifo(), "{path}"),
            "chardev" if root => assert!(ft.is_char_device(), "{path}"),
            "blockdev" if root => assert!(ft.is_block_device(), "{path}"),
            _ => {}
        }
        if !ft.is_symlink() {
            assert_eq!(md.mode(), mode, "{path} full st_mode");
            assert_eq!(
                md.mtime() as u64,
                m["mtime"].as_u64().expect("mtime"),
                "{path} mtime"
            );
        }
        if root {
            assert_eq!(
                (u64::from(md.uid()), u64::from(md.gid())),
                (
                    m["uid"].as_u64().expect("uid"),
                    m["gid"].as_u64().expect("gid")
                ),
                "{path}"
            );
        }
    }

    // Packed again from the directory: the same flist content, chunk keys included.
    let out = e.tmp.path().join("from-dir.flist");
    let stats = convert(
        Source::dir(&dest),
        Some(&e.store),
        &ConvertOptions::default(),
    )
    .and_then(|c| written(c, &out))
    .expect("pack dir");
    let from_dir = Flist::open(&out).expect("reads back");
    // A directory pack records each directory's real st_size (as the reference does); a
    // tar member carries none (4096 is recorded): compare everything else.
    let opts = DiffOptions {
        loose_special_kind: !root,
        ignore_dir_size: true,
        ..Default::default()
    };
    let diffs = diff(&from_tar.tree, &from_dir.tree, &opts);
    assert!(
        diffs.is_empty(),
        "tar and directory flists differ: {diffs:#?}"
    );
    assert_eq!(stats.chunks_written, 0, "every chunk was already stored");
    assert_eq!(stats.chunks_present + stats.chunks_deduplicated, 276);
}
