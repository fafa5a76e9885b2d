//! Tar members become the tree GNU tar would extract: formats, compressions, replacement,
//! implicit parents, hard links, sparse files, PAX attributes and what the flist cannot hold.

use std::io::Write;
use std::process::Command;

use flist_convert::{archive_to_tree, warn, Compression, ConvertOptions, OwnerNames, Packed};
use flist_format::{Kind, SpecialKind, Tree};
use test_support::archive::RawTar;

fn tree(bytes: &[u8]) -> Packed {
    archive_to_tree(bytes, &ConvertOptions::default()).unwrap_or_else(|e| panic!("converts: {e}"))
}

fn file_blocks(t: &Tree, p: &str) -> (u64, Vec<flist_format::Block>) {
    match &t
        .node(t.lookup(p).unwrap_or_else(|| panic!("{p} missing")))
        .kind
    {
        Kind::File { size, blocks } => (*size, blocks.clone()),
        k => panic!("{p} is {}", k.type_name()),
    }
}

/// A header with every numeric field set (blank numeric fields are corrupt, as for GNU tar).
fn hdr(path: &str, ty: tar::EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_path(path).expect("path");
    h.set_entry_type(ty);
    h.set_size(0);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h
}

fn sample_tar() -> Vec<u8> {
    RawTar::new()
        .dir("d")
        .file("d/a.txt", b"hello world\n")
        .symlink("d/l", "a.txt")
        .finish()
}

#[test]
fn every_compression_is_detected() {
    let tar = sample_tar();
    let gz = test_support::archive::gzip(&tar);
    let zst = zstd::encode_all(&tar[..], 3).expect("zstd");
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
    xz.write_all(&tar).expect("xz");
    let xz = xz.finish().expect("xz");
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    bz.write_all(&tar).expect("bz2");
    let bz = bz.finish().expect("bz2");
    let inputs = [
        (Compression::None, &tar),
        (Compression::Gzip, &gz),
        (Compression::Zstd, &zst),
        (Compression::Xz, &xz),
        (Compression::Bzip2, &bz),
    ];
    for (c, bytes) in inputs {
        assert_eq!(Compression::detect(bytes), c);
        let p = tree(bytes);
        let (size, blocks) = file_blocks(&p.tree, "d/a.txt");
        assert_eq!((size, blocks.len()), (12, 1), "{c:?}");
        // spec test vector: "hello world\n" is chunk a5147f6e...
        assert_eq!(
            blocks[0].id_hex(),
            "a5147f6e7cac3a7076f942cb5e00d896",
            "{c:?}"
        );
        assert_eq!(p.stats.bytes_expanded, tar.len() as u64, "{c:?}");
        assert_eq!(p.stats.bytes_read, bytes.len() as u64, "{c:?}");
    }
    // concatenated gzip members are one stream
    let half = tar.len() / 2 / 512 * 512;
    let mut multi = test_support::archive::gzip(&tar[..half]);
    multi.extend(test_support::archive::gzip(&tar[half..]));
    assert_eq!(file_blocks(&tree(&multi).tree, "d/a.txt").0, 12);
}

#[test]
fn later_members_replace_earlier_ones_and_parents_are_implicit() {
    let tar = RawTar::new()
        .file("x/y/f", b"first")
        .file("x/y/f", b"second!")
        .file("x/g", b"file then dir")
        .dir("x/g")
        .file("x/g/inner", b"1")
        .dir("x")
        .finish();
    let p = tree(&tar);
    let t = &p.tree;
    assert_eq!(file_blocks(t, "x/y/f").0, 7, "the later member wins");
    assert!(t.node(t.lookup("x/g").expect("g")).kind.is_dir());
    // x was implicit (0755 root:root) then described by a later member (0755 from RawTar)
    let x = t.node(t.lookup("x").expect("x"));
    assert_eq!(
        (x.meta.mode, x.meta.uid, x.meta.mtime),
        (0o755, 0, 1_600_000_000)
    );
    let y = t.node(t.lookup("x/y").expect("y"));
    assert_eq!(
        (y.meta.mode, &y.meta.uname[..]),
        (0o755, "root"),
        "implicit parent defaults"
    );
    assert_eq!(
        y.meta.mtime, 1_600_000_000,
        "implicit parent takes the member's time"
    );
    // directories first, then the rest by name
    let names: Vec<&str> = t
        .children(t.lookup("x").expect("x"))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["g", "y"]);
}

#[test]
fn hard_links_share_chunks_and_keep_old_content_when_the_target_is_replaced() {
    let tar = RawTar::new()
        .file("orig", b"original content")
        .hardlink("link", "orig")
        .file("orig", b"replaced")
        .symlink("s", "orig")
        .hardlink("s2", "s")
        .finish();
    let p = tree(&tar);
    let t = &p.tree;
    assert_eq!(
        file_blocks(t, "link").0,
        16,
        "the link keeps the inode it was made from"
    );
    assert_eq!(file_blocks(t, "orig").0, 8);
    assert!(
        matches!(&t.node(t.lookup("s2").expect("s2")).kind, Kind::Symlink { target } if target == "orig")
    );
    assert_eq!(p.stats.hard_links, 2);
    assert_eq!(p.stats.warning_count(warn::HARDLINK), 2);
}

#[test]
fn gnu_and_pax_attributes() {
    let mut b = tar::Builder::new(Vec::new());
    // PAX: long path, uname, large uid, sub-second mtime, an xattr
    let long = format!("{}/{}", "p".repeat(120), "name-with-ünïcødé");
    b.append_pax_extensions([
        ("path", long.as_bytes()),
        ("uname", b"alice".as_slice()),
        ("gname", b"staff".as_slice()),
        ("uid", b"3000000000".as_slice()),
        ("mtime", b"1700000000.5".as_slice()),
        ("SCHILY.xattr.security.capability", b"\x01\x00".as_slice()),
    ])
    .expect("pax");
    let mut h = hdr("short", tar::EntryType::Regular, 0o6755);
    h.set_size(3);
    h.set_cksum();
    b.append(&h, &b"abc"[..]).expect("append");
    // GNU: long name and long link target
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    b.append_link(&mut h, "g".repeat(150), "t".repeat(300))
        .expect("gnu long");
    // devices and fifo
    for (name, ty, maj, min) in [
        ("c", tar::EntryType::Char, 1, 5),
        ("b", tar::EntryType::Block, 8, 1),
        ("f", tar::EntryType::Fifo, 0, 0),
    ] {
        let mut h = hdr(name, ty, 0o660);
        h.set_device_major(maj).expect("major");
        h.set_device_minor(min).expect("minor");
        h.set_cksum();
        b.append(&h, &[][..]).expect("append");
    }
    let bytes = b.into_inner().expect("tar");
    let p = tree(&bytes);
    let t = &p.tree;
    let n = t.node(t.lookup(&long).expect("PAX long path"));
    assert_eq!(
        (n.meta.mode, &n.meta.uname[..], &n.meta.gname[..]),
        (0o6755, "alice", "staff")
    );
    assert_eq!(n.meta.uid, 3_000_000_000, "large uid fits u32");
    assert_eq!(n.meta.mtime, 1_700_000_000);
    let l = t.node(t.lookup(&"g".repeat(150)).expect("GNU long name"));
    assert!(matches!(&l.kind, Kind::Symlink { target } if *target == "t".repeat(300)));
    let special = |p: &str| match &t.node(t.lookup(p).expect(p)).kind {
        Kind::Special { kind, rdev } => (*kind, *rdev),
        _ => panic!(),
    };
    assert_eq!(special("c"), (SpecialKind::Chardev, Some((1, 5))));
    assert_eq!(special("b"), (SpecialKind::Block, Some((8, 1))));
    assert_eq!(special("f").0, SpecialKind::Fifo);
    assert_eq!(p.stats.warning_count(warn::SUBSECOND), 1);
    assert_eq!(p.stats.warning_count(warn::XATTRS), 1);
    assert_eq!(p.stats.specials, 3);
}

#[test]
fn numeric_and_local_owner_names() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = hdr("f", tar::EntryType::Regular, 0o644);
    h.set_gid(4_000_000);
    h.set_cksum();
    b.append(&h, &[][..]).expect("append");
    let bytes = b.into_inner().expect("tar");
    let opts = ConvertOptions {
        owner_names: OwnerNames::Numeric,
        ..ConvertOptions::default()
    };
    let p = archive_to_tree(&bytes, &opts).expect("converts");
    let m = &p.tree.node(p.tree.lookup("f").expect("f")).meta;
    assert_eq!((&m.uname[..], &m.gname[..]), ("root", "4000000"));
    let p = tree(&bytes);
    let m = &p.tree.node(p.tree.lookup("f").expect("f")).meta;
    assert_eq!(m.uname, "root", "uid 0 resolves to root locally too");
}

#[test]
fn times_out_of_range_are_clamped_with_a_warning() {
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("mtime", b"-86400".as_slice())])
        .expect("pax");
    let mut h = hdr("old", tar::EntryType::Regular, 0o644);
    h.set_cksum();
    b.append(&h, &[][..]).expect("append");
    b.append_pax_extensions([("mtime", b"9999999999".as_slice())])
        .expect("pax");
    let mut h = hdr("future", tar::EntryType::Regular, 0o644);
    h.set_cksum();
    b.append(&h, &[][..]).expect("append");
    let p = tree(&b.into_inner().expect("tar"));
    let t = &p.tree;
    assert_eq!(t.node(t.lookup("old").expect("old")).meta.mtime, 0);
    assert_eq!(
        t.node(t.lookup("future").expect("future")).meta.mtime,
        u32::MAX
    );
    assert_eq!(p.stats.warning_count(warn::TIME_RANGE), 2);
}

/// GNU sparse files in every format GNU tar writes are expanded to their full content.
#[test]
fn gnu_sparse_files_are_expanded() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    let f = std::fs::File::create(src.join("sparse.img")).expect("create");
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"head", 0).expect("write");
    f.write_all_at(b"middle", 3 << 20).expect("write");
    f.set_len(5 << 20).expect("truncate");
    drop(f);
    let mut expected = vec![0u8; 5 << 20];
    expected[..4].copy_from_slice(b"head");
    expected[3 << 20..(3 << 20) + 6].copy_from_slice(b"middle");
    let want = flist_format::codec::chunk_count(5 << 20);
    let want_blocks: Vec<_> = expected
        .chunks(512 * 1024)
        .map(|c| flist_format::codec::encode_chunk(c).block)
        .collect();
    assert_eq!(want_blocks.len() as u64, want);

    for args in [
        &["--format=gnu"][..],
        &["--format=posix", "--sparse-version=0.0"],
        &["--format=posix", "--sparse-version=0.1"],
        &["--format=posix", "--sparse-version=1.0"],
    ] {
        let out = tmp.path().join("s.tar");
        let status = Command::new("tar")
            .args(["--sparse", "-C"])
            .arg(&src)
            .args(args)
            .arg("-cf")
            .arg(&out)
            .arg("sparse.img")
            .status()
            .expect("GNU tar is installed");
        assert!(status.success(), "{args:?}");
        let bytes = std::fs::read(&out).expect("read");
        assert!(
            bytes.len() < 1 << 20,
            "{args:?}: the archive is sparse ({} bytes)",
            bytes.len()
        );
        let p = tree(&bytes);
        let (size, blocks) = file_blocks(&p.tree, "sparse.img");
        assert_eq!(size, 5 << 20, "{args:?}");
        assert_eq!(blocks, want_blocks, "{args:?}: expanded content");
        assert_eq!(p.tree.len(), 2, "{args:?}: no GNUSparseFile.* entries");
    }
}
