//! Hostile archives, written byte by byte: each is refused with its specific error, without
//! a panic, and no flist is written.

use std::sync::Arc;

use flist_convert::{convert, ConvertError, ConvertOptions, LimitKind, Limits, PathPolicy, Source};
use flist_store::{BlockingStore, DirStore};
use test_support::archive::{gzip, gzip_bomb, header, set_checksum, RawTar};

/// Converts `bytes` to an flist in a fresh directory; returns the error and checks that no
/// output (nor temporary) file was left behind.
fn refuse(bytes: &[u8], opts: &ConvertOptions) -> ConvertError {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = BlockingStore::on_private_runtime(Arc::new(
        DirStore::new(tmp.path().join("store")).expect("dir store"),
    ))
    .expect("runtime");
    let outdir = tmp.path().join("out");
    std::fs::create_dir(&outdir).expect("mkdir");
    let out = outdir.join("x.flist");
    let err = convert(Source::archive(bytes), Some(&store), opts)
        .and_then(|c| c.write_flist(&out))
        .expect_err("hostile archive must be refused");
    assert!(!out.exists(), "no flist written on error ({err})");
    assert_eq!(
        std::fs::read_dir(&outdir).expect("readdir").count(),
        0,
        "no temporary left"
    );
    err
}

fn ok(bytes: &[u8], opts: &ConvertOptions) -> flist_convert::Packed {
    convert(Source::archive(bytes), None, opts)
        .and_then(|c| c.into_packed())
        .expect("archive converts")
}

fn defaults() -> ConvertOptions {
    ConvertOptions::default()
}

#[test]
fn dotdot_members_are_refused() {
    for name in ["../evil", "a/../../evil", "./a/b/../../../etc/passwd", ".."] {
        let tar = RawTar::new().file(name, b"pwned").finish();
        let err = refuse(&tar, &defaults());
        assert!(
            matches!(&err, ConvertError::PathEscape { path } if path == name),
            "{name}: {err}"
        );
    }
    // a hard link whose target escapes is refused too
    let tar = RawTar::new()
        .file("a", b"x")
        .hardlink("b", "../../etc/shadow")
        .finish();
    assert!(matches!(
        refuse(&tar, &defaults()),
        ConvertError::PathEscape { .. }
    ));
}

#[test]
fn absolute_members_are_refused_or_stripped_by_policy() {
    let tar = RawTar::new()
        .file("/etc/passwd", b"root::0:0::/:/bin/sh\n")
        .finish();
    let err = refuse(&tar, &defaults());
    assert!(
        matches!(&err, ConvertError::AbsolutePath { path } if path == "/etc/passwd"),
        "{err}"
    );

    let opts = ConvertOptions {
        path_policy: PathPolicy::Strip,
        ..defaults()
    };
    let tar = RawTar::new()
        .file("/etc/passwd", b"x")
        .file("../../up", b"y")
        .finish();
    let p = ok(&tar, &opts);
    assert!(p.tree.lookup("etc/passwd").is_some());
    assert!(
        p.tree.lookup("up").is_some(),
        "'..' resolved within the root"
    );
    assert_eq!(p.stats.warning_count(flist_convert::warn::ABSOLUTE), 1);
    assert_eq!(p.stats.warning_count(flist_convert::warn::DOTDOT), 1);
}

#[test]
fn entries_beneath_a_symlink_are_refused() {
    let tar = RawTar::new()
        .symlink("etc", "/etc")
        .file("etc/passwd", b"pwned")
        .finish();
    let err = refuse(&tar, &defaults());
    assert!(
        matches!(&err, ConvertError::BeneathSymlink { path, symlink } if path == "etc/passwd" && symlink == "etc"),
        "{err}"
    );
    // also through a relative link to a directory of the archive
    let tar = RawTar::new()
        .dir("real")
        .symlink("l", "real")
        .dir("l/sub")
        .finish();
    assert!(matches!(
        refuse(&tar, &defaults()),
        ConvertError::BeneathSymlink { .. }
    ));
    // replacing the symlink with a directory first is fine (as GNU tar would)
    let tar = RawTar::new()
        .symlink("d", "/etc")
        .dir("d")
        .file("d/f", b"1")
        .finish();
    let p = ok(&tar, &defaults());
    assert!(p.tree.node(p.tree.lookup("d").expect("d")).kind.is_dir());
}

#[test]
fn gzip_bomb_of_10_gib_stops_at_the_expanded_size_limit() {
    let limits = Limits {
        max_expanded_bytes: 256 << 20,
        ..Limits::default()
    };
    let opts = ConvertOptions {
        limits,
        ..defaults()
    };
    // 160 members of 64 MiB of zeros: 10 GiB expanded, ~10 MB compressed. Each member is
    // below the limit: the decompressed byte count stops it.
    let bomb = gzip_bomb(160, 64 << 20);
    assert!(
        bomb.len() < 16 << 20,
        "cheap to build: {} bytes",
        bomb.len()
    );
    let err = refuse(&bomb, &opts);
    match &err {
        ConvertError::Limit {
            what: LimitKind::ExpandedSize,
            value,
            limit,
            ..
        } => {
            assert_eq!(*limit, 256 << 20);
            assert!(
                *value > 256 << 20 && *value < 300 << 20,
                "stopped right after the limit: {value}"
            );
        }
        e => panic!("expected the expanded-size limit, got {e}"),
    }
    // one member declaring 10 GiB: refused from its header before reading the data
    let bomb = gzip_bomb(1, 10 << 30);
    let err = refuse(&bomb, &opts);
    assert!(
        matches!(err, ConvertError::Limit { what: LimitKind::ExpandedSize, value, .. } if value == 10 << 30),
        "{err}"
    );
}

#[test]
fn truncated_gzip_is_an_error_naming_the_offset() {
    let data: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let tar = RawTar::new()
        .file("a.txt", b"hello")
        .file("big.bin", &data)
        .finish();
    let gz = gzip(&tar);
    let cut = &gz[..gz.len() / 2];
    let err = refuse(cut, &defaults());
    match &err {
        ConvertError::Truncated { offset, entry, .. } => {
            assert!(*offset > 0);
            assert_eq!(entry.as_deref(), Some("big.bin"), "{err}");
        }
        e => panic!("expected truncation, got {e}"),
    }
    // a gzip stream cut inside its trailer
    let err = refuse(&gz[..gz.len() - 4], &defaults());
    assert!(
        matches!(
            err,
            ConvertError::Truncated { .. } | ConvertError::Decompress { .. }
        ),
        "{err}"
    );
    // plain tar cut in a member's data
    let err = refuse(&tar[..512 * 3 + 100], &defaults());
    assert!(
        matches!(&err, ConvertError::Truncated { entry, .. } if entry.as_deref() == Some("big.bin")),
        "{err}"
    );
}

#[test]
fn corrupt_header_checksum_is_an_error() {
    let mut tar = RawTar::new().file("good", b"1").finish();
    let mut h = header(b"bad", b'0', 1, 0o644, b"", 0);
    set_checksum(&mut h);
    h[0] = b'c'; // changes the header after its checksum was computed
    tar.truncate(1024);
    tar.extend_from_slice(&h);
    tar.extend_from_slice(&[0u8; 2048]);
    let err = refuse(&gzip(&tar), &defaults());
    match &err {
        ConvertError::Corrupt {
            offset,
            entry,
            reason,
        } => {
            assert!(reason.contains("checksum"), "{reason}");
            assert_eq!(*offset, 1536, "offset just past the bad header");
            assert_eq!(entry.as_deref(), Some("good"), "names the last good member");
        }
        e => panic!("expected corruption, got {e}"),
    }
}

#[test]
fn ten_thousand_deep_nesting_is_refused() {
    let name = vec!["d"; 10_000].join("/") + "/f";
    let tar = RawTar::new().file(&name, b"deep").finish();
    let err = refuse(&tar, &defaults());
    assert!(
        matches!(
            err,
            ConvertError::Limit {
                what: LimitKind::Depth,
                limit: 1024,
                ..
            }
        ),
        "{err}"
    );
    // with the depth limit raised, the path length limit still applies
    let opts = ConvertOptions {
        limits: Limits {
            max_depth: 20_000,
            ..Limits::default()
        },
        ..defaults()
    };
    let err = refuse(&tar, &opts);
    assert!(
        matches!(
            err,
            ConvertError::Limit {
                what: LimitKind::PathLength,
                limit: 4096,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn names_of_4096_bytes_are_refused() {
    let name = "n".repeat(4096);
    let tar = RawTar::new().file(&name, b"x").finish();
    let err = refuse(&tar, &defaults());
    assert!(
        matches!(
            err,
            ConvertError::Limit {
                what: LimitKind::NameLength,
                value: 4096,
                limit: 255,
                ..
            }
        ),
        "{err}"
    );
    // 255 is fine, and so is a long path of short names
    let name = format!("{}/{}", "a".repeat(255), "b".repeat(255));
    let p = ok(&RawTar::new().file(&name, b"x").finish(), &defaults());
    assert!(p.tree.lookup(&name).is_some());
}

#[test]
fn hard_link_to_a_missing_target_is_refused() {
    let tar = RawTar::new()
        .file("a", b"1")
        .hardlink("b", "nowhere")
        .finish();
    let err = refuse(&tar, &defaults());
    assert!(
        matches!(&err, ConvertError::HardLinkTargetMissing { path, target } if path == "b" && target == "nowhere"),
        "{err}"
    );
    let tar = RawTar::new().dir("d").hardlink("b", "d").finish();
    assert!(matches!(
        refuse(&tar, &defaults()),
        ConvertError::HardLinkToDirectory { .. }
    ));
}

#[test]
fn non_utf8_names_are_refused_clearly() {
    let tar = RawTar::new()
        .entry(b"caf\xe9.txt", b'0', 0o644, b"", b"x")
        .finish();
    let err = refuse(&tar, &defaults());
    assert!(
        matches!(&err, ConvertError::NonUtf8Name { hex, .. } if hex == "636166e92e747874"),
        "{err}"
    );
    let tar = RawTar::new()
        .entry(b"l", b'2', 0o777, b"\xff", b"")
        .finish();
    assert!(matches!(
        refuse(&tar, &defaults()),
        ConvertError::NonUtf8Name { .. }
    ));
}

#[test]
fn entry_count_and_header_size_limits() {
    let mut t = RawTar::new();
    for i in 0..20 {
        t.file(&format!("f{i}"), b"");
    }
    let opts = ConvertOptions {
        limits: Limits {
            max_entries: 10,
            ..Limits::default()
        },
        ..defaults()
    };
    let err = refuse(&t.finish(), &opts);
    assert!(
        matches!(
            err,
            ConvertError::Limit {
                what: LimitKind::Entries,
                value: 11,
                ..
            }
        ),
        "{err}"
    );

    // a 4 MiB GNU long-name record is not buffered beyond the header limit
    let opts = ConvertOptions {
        limits: Limits {
            max_header_bytes: 1 << 20,
            ..Limits::default()
        },
        ..defaults()
    };
    let name = vec![b'x'; 4 << 20];
    let tar = RawTar::new().entry(&name, b'0', 0o644, b"", b"x").finish();
    let err = refuse(&tar, &opts);
    assert!(
        matches!(
            err,
            ConvertError::Limit {
                what: LimitKind::HeaderSize,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn garbage_and_empty_inputs() {
    // not a tar at all: a header checksum error at offset 512
    let err = refuse(&[0x55u8; 4096], &defaults());
    assert!(matches!(err, ConvertError::Corrupt { .. }), "{err}");
    // gzip magic, garbage after it
    let err = refuse(
        &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff],
        &defaults(),
    );
    assert!(
        matches!(
            err,
            ConvertError::Decompress { format: "gzip", .. } | ConvertError::Truncated { .. }
        ),
        "{err}"
    );
    // an empty input is an empty tree
    let p = ok(b"", &defaults());
    assert!(p.tree.is_empty());
    // the root cannot be replaced by a file
    let tar = RawTar::new().symlink("./", "/etc").finish();
    assert!(matches!(
        refuse(&tar, &defaults()),
        ConvertError::RootNotADirectory { .. }
    ));
}

/// Mutated archives (a deterministic mini-fuzz over plain and gzip inputs): errors, never
/// panics.
#[test]
fn mutated_archives_never_panic() {
    let data: Vec<u8> = (0..700_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8)
        .collect();
    let tar = RawTar::new()
        .dir("d")
        .file("d/a", b"hello")
        .file("d/big", &data)
        .symlink("d/l", "a")
        .hardlink("d/h", "d/a")
        .entry(&[b'n'; 150], b'0', 0o644, b"", b"long")
        .finish();
    let gz = gzip(&tar);
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let opts = ConvertOptions {
        workers: 1,
        ..defaults()
    };
    let (mut errors, mut oks) = (0, 0);
    for i in 0..300 {
        let base = if i % 2 == 0 { &tar } else { &gz };
        let mut m = base.clone();
        for _ in 0..1 + rnd() % 4 {
            let at = if i % 2 == 0 {
                (rnd() % 3584) as usize
            } else {
                (rnd() % m.len() as u64) as usize
            };
            m[at] = rnd() as u8;
        }
        if rnd() % 5 == 0 {
            m.truncate((rnd() % m.len() as u64) as usize);
        }
        match flist_convert::archive_to_tree(&m, &opts) {
            Ok(_) => oks += 1,
            Err(_) => errors += 1,
        }
    }
    assert_eq!(oks + errors, 300);
    assert!(errors > 0, "mutations are detected");
}

/// Issue #24 item 9: a plain tar cut at a member boundary (no end-of-archive marker) is
/// refused instead of converting the members before the cut; the same cut inside gzip is
/// caught by gzip's trailer, and a whole archive still converts.
#[test]
fn plain_tar_without_its_end_marker_is_refused() {
    let mut t = RawTar::new();
    t.file("a", b"one").file("b", b"two").file("c", b"three");
    let whole = t.finish();
    assert_eq!(ok(&whole, &defaults()).stats.files, 3);
    // Cut after the first member, and with only one of the two zero blocks.
    let first = 512 + 512;
    for cut in [&whole[..first], t.bytes(), &whole[..whole.len() - 512]] {
        let err = refuse(cut, &defaults());
        assert!(
            matches!(err, ConvertError::Truncated { .. })
                && err.to_string().contains("end-of-archive"),
            "{} bytes: {err}",
            cut.len()
        );
    }
    // Extra zero padding (a tar record) is fine.
    let mut padded = whole.clone();
    padded.resize(10240, 0);
    assert_eq!(ok(&padded, &defaults()).stats.files, 3);
    // A gzip stream cut short fails on its own trailer.
    let gz = gzip(&whole);
    let err = refuse(&gz[..gz.len() - 8], &defaults());
    assert!(
        matches!(
            err,
            ConvertError::Truncated { .. } | ConvertError::Decompress { .. }
        ),
        "{err}"
    );
}

/// A sparse file of `size` bytes holding `data` at `at`, archived by GNU tar with `args`.
fn sparse_tar(size: u64, at: u64, data: &[u8], args: &[&str]) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let f = std::fs::File::create(tmp.path().join("disk.img")).expect("create");
    f.set_len(size).expect("truncate");
    f.write_all_at(data, at).expect("write");
    drop(f);
    let out = tmp.path().join("s.tar");
    let status = std::process::Command::new("tar")
        .args(["--sparse", "-C"])
        .arg(tmp.path())
        .args(args)
        .arg("-cf")
        .arg(&out)
        .arg("disk.img")
        .status()
        .expect("GNU tar is installed");
    assert!(status.success(), "{args:?}");
    gzip(&std::fs::read(&out).expect("read"))
}

/// Issue #24 item 8: a tiny sparse archive claiming 60 GiB costs work in proportion to the
/// bytes really read (its holes reuse one encoded zero chunk, never hashed again), or is
/// refused when its holes could only be produced by writing zeros. Before: the 60 GiB were
/// expanded and encoded (38 s of CPU for a 128-byte upload).
#[test]
fn sparse_holes_cost_the_bytes_read_not_the_claimed_size() {
    const G60: u64 = 60 << 30;
    let one_chunk = flist_format::codec::CHUNK_SIZE as u64;
    // A hole to the end: every format, nothing past the data is read or encoded.
    for args in [
        &["--format=gnu"][..],
        &["--format=posix", "--sparse-version=0.1"],
        &["--format=posix", "--sparse-version=1.0"],
    ] {
        let bytes = sparse_tar(G60, 0, b"head", args);
        assert!(bytes.len() < 4096, "{args:?}: {} bytes", bytes.len());
        let p = ok(&bytes, &defaults());
        assert_eq!(p.stats.bytes, G60, "{args:?}");
        assert!(
            p.stats.bytes_encoded <= 2 * one_chunk,
            "{args:?}: {} bytes encoded for a 60 GiB sparse file",
            p.stats.bytes_encoded
        );
        let t = &p.tree;
        let blocks = match &t.node(t.lookup("disk.img").expect("file")).kind {
            flist_format::Kind::File { blocks, .. } => blocks.clone(),
            k => panic!("{k:?}"),
        };
        assert_eq!(blocks.len() as u64, flist_format::codec::chunk_count(G60));
        assert_eq!(
            blocks[1],
            blocks[blocks.len() / 2],
            "holes share one zero chunk"
        );
    }
    // Data after the hole: PAX formats know the map and skip the hole.
    for args in [
        &["--format=posix", "--sparse-version=0.1"][..],
        &["--format=posix", "--sparse-version=1.0"],
    ] {
        let p = ok(&sparse_tar(G60, G60 - 1, b"z", args), &defaults());
        assert!(
            p.stats.bytes_encoded <= 2 * one_chunk,
            "{args:?}: {} bytes encoded",
            p.stats.bytes_encoded
        );
    }
    // Old GNU format: the archive library makes that hole by writing zeros; a small
    // archive may not make it do 60 GiB of them.
    let err = refuse(
        &sparse_tar(G60, G60 - 1, b"z", &["--format=gnu"]),
        &defaults(),
    );
    assert!(
        matches!(
            err,
            ConvertError::Limit {
                what: LimitKind::SparseExpansion,
                ..
            }
        ),
        "{err}"
    );
    // Within the allowance it converts, to the same content as the PAX archive.
    let small = 8 << 20;
    let gnu = ok(
        &sparse_tar(small, small - 1, b"z", &["--format=gnu"]),
        &defaults(),
    );
    let pax = ok(
        &sparse_tar(
            small,
            small - 1,
            b"z",
            &["--format=posix", "--sparse-version=1.0"],
        ),
        &defaults(),
    );
    assert_eq!(
        gnu.tree
            .node(gnu.tree.lookup("disk.img").expect("file"))
            .kind,
        pax.tree
            .node(pax.tree.lookup("disk.img").expect("file"))
            .kind
    );
}

/// A file that is no archive, or a header of text after a good member: the error says what
/// failed, never the file's bytes (the tar reader's own message quotes them).
#[test]
fn errors_never_quote_the_file() {
    let text = b"root:x:0:0:SECRET-CONTENT:/root:/bin/bash\nlogin\nsy:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n".repeat(20);
    let err = refuse(&text, &defaults()).to_string();
    assert!(err.contains("not a tar archive"), "{err}");
    assert!(!err.contains("SECRET") && !err.contains("root:"), "{err}");
    let err = refuse(&gzip(&text), &defaults()).to_string();
    assert!(err.contains("not a tar archive"), "{err}");
    assert!(!err.contains("SECRET") && !err.contains("root:"), "{err}");
    let mut tar = RawTar::new().file("good", b"1").finish();
    tar.truncate(1024);
    tar.extend_from_slice(&text);
    let err = refuse(&gzip(&tar), &defaults()).to_string();
    assert!(!err.contains("SECRET") && !err.contains("root:"), "{err}");
    assert!(err.contains("good"), "names the last good member: {err}");
}
