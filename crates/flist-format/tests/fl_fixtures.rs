//! Reading the `.fl` files written by rfs v2.0.7 (`tests/fixtures/rfs-fl/`) exactly: the
//! flist-v2 fixture tree (every kind of entry) and a small tree split over two routed
//! stores; the rfs block codec against their blocks; writing them back.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use flist_format::codec::{self, rfs, CHUNK_SIZE};
use flist_format::tree::{diff, DiffOptions};
use flist_format::{Block, Codec, Flist, Format, Kind, Route, SpecialKind};
use serde_json::Value;
use sha2::{Digest, Sha256};
use test_support::{fixture, rfs_fixture};

fn open(name: &str) -> Flist {
    Flist::open(rfs_fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn json(path: std::path::PathBuf) -> Value {
    serde_json::from_slice(&std::fs::read(&path).expect("readable")).expect("JSON")
}

fn octal(s: &str) -> u32 {
    u32::from_str_radix(s.trim_start_matches("0o"), 8).expect("octal mode")
}

/// The full `st_mode` of a node, as the manifest records it.
fn st_mode(f: &Flist, path: &str) -> u32 {
    let n = f.tree.node(f.tree.lookup(path).expect(path));
    flist_format::fl::st_mode(&n.meta, &n.kind)
}

/// Reads the plaintext of a file's blocks from a flat rfs `dir://` store.
fn content(blocks: &[Block], store: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    for b in blocks {
        let data = std::fs::read(store.join(b.id_hex()))
            .unwrap_or_else(|e| panic!("block {}: {e}", b.id_hex()));
        out.extend(codec::decode_chunk(b, &data).expect("block decodes"));
    }
    out
}

#[test]
fn the_format_is_told_from_the_bytes() {
    assert_eq!(
        Format::of_file(rfs_fixture("fixture.fl")).expect("readable"),
        Format::Fl
    );
    assert_eq!(
        Format::of_file(rfs_fixture("routed.fl")).expect("readable"),
        Format::Fl
    );
    assert_eq!(
        Format::of_file(fixture("fixture.flist")).expect("readable"),
        Format::Flist
    );
    assert_eq!(Format::from_path("a/b.FL"), Some(Format::Fl));
    assert_eq!(Format::from_path("b.flist"), Some(Format::Flist));
    assert_eq!(Format::from_path("b.tar"), None);
}

#[test]
fn fixture_fl_holds_every_manifest_entry_exactly() {
    let f = open("fixture.fl");
    let t = &f.tree;
    let manifest = json(fixture("fixture.manifest.json"));
    let entries = manifest.as_array().expect("array");
    assert_eq!(entries.len() + 1, t.len(), "every entry and the root");
    assert_eq!(t.len(), 323, "323 inodes");
    for e in entries {
        let path = e["path"].as_str().expect("path");
        let n = t.node(t.lookup(path).unwrap_or_else(|| panic!("{path} missing")));
        assert_eq!(
            st_mode(&f, path),
            octal(e["mode"].as_str().expect("mode")),
            "{path} st_mode"
        );
        assert_eq!(
            u64::from(n.meta.uid),
            e["uid"].as_u64().expect("uid"),
            "{path} uid"
        );
        assert_eq!(
            u64::from(n.meta.gid),
            e["gid"].as_u64().expect("gid"),
            "{path} gid"
        );
        assert_eq!(
            u64::from(n.meta.mtime),
            e["mtime"].as_u64().expect("mtime"),
            "{path} mtime"
        );
        let rdev = e["rdev"].as_array().map(|r| {
            (
                r[0].as_u64().expect("major") as u32,
                r[1].as_u64().expect("minor") as u32,
            )
        });
        match (&n.kind, e["type"].as_str().expect("type")) {
            (Kind::Dir { .. }, "dir") => {}
            (Kind::File { size, blocks }, "file") => {
                assert_eq!(Some(*size), e["size"].as_u64(), "{path} size");
                assert_eq!(
                    blocks.len() as u64,
                    size.div_ceil(CHUNK_SIZE as u64),
                    "{path}"
                );
                assert!(blocks.iter().all(|b| b.codec() == Codec::Rfs));
            }
            (Kind::Symlink { target }, "symlink") => {
                assert_eq!(Some(target.as_str()), e["target"].as_str(), "{path} target");
            }
            (Kind::Special { kind, rdev: r }, ty) => {
                let want = match ty {
                    "fifo" => SpecialKind::Fifo,
                    "chardev" => SpecialKind::Chardev,
                    "blockdev" => SpecialKind::Block,
                    "socket" => SpecialKind::Socket,
                    other => panic!("{path}: special read, manifest says {other}"),
                };
                // Unlike the reference .flist, the .fl keeps which special it is.
                assert_eq!(*kind, want, "{path} kind");
                assert_eq!(*r, rdev, "{path} rdev");
            }
            (k, ty) => panic!("{path}: read {} but manifest says {ty}", k.type_name()),
        }
    }
    let secret = t.node(t.lookup("/secret").expect("secret"));
    assert_eq!(
        (secret.meta.uid, secret.meta.gid, secret.meta.mode),
        (1000, 1000, 0o600)
    );
    assert_eq!(
        t.node(t.lookup("/setuid-bin").expect("setuid")).meta.mode,
        0o4755
    );
    assert_eq!(t.node(t.lookup("/many").expect("many")).kind.size(), 12288);
    assert!(f.metadata.is_empty(), "rfs pack writes no tags");
    assert_eq!(
        f.metadata.routes,
        [Route {
            start: 0,
            end: 255,
            url: "dir:///fx/store".into()
        }]
    );
}

#[test]
fn fixture_fl_find_is_the_reference_find_of_the_same_tree() {
    let f = open("fixture.fl");
    let ours = f.find_response();
    let reference = json(fixture("fixture.zflist-find.json"));
    let reference = &reference["response"];
    let set = |v: &Value| -> BTreeSet<(String, u64)> {
        v["content"]
            .as_array()
            .expect("content")
            .iter()
            .map(|e| {
                (
                    e["path"].as_str().expect("path").to_string(),
                    e["size"].as_u64().expect("size"),
                )
            })
            .collect()
    };
    assert_eq!(set(&ours), set(reference), "same paths and sizes");
    for k in [
        "regular",
        "symlink",
        "directory",
        "special",
        "fullsize",
        "failure",
    ] {
        assert_eq!(ours[k], reference[k], "{k}");
    }
}

#[test]
fn every_fixture_block_decodes_to_the_manifest_sha256() {
    let f = open("fixture.fl");
    let store = rfs_fixture("store");
    let (mut refs, mut distinct) = (0, HashSet::new());
    let mut empty = 0;
    for e in json(fixture("fixture.manifest.json"))
        .as_array()
        .expect("array")
    {
        if e["type"] != "file" {
            continue;
        }
        let path = e["path"].as_str().expect("path");
        let Kind::File { size, blocks } = &f.tree.node(f.tree.lookup(path).expect(path)).kind
        else {
            panic!("{path} is a file")
        };
        if *size == 0 {
            empty += 1;
            assert!(blocks.is_empty(), "{path}: no block for an empty file");
        }
        let plain = content(blocks, &store);
        assert_eq!(plain.len() as u64, *size, "{path} length");
        assert_eq!(
            hex::encode(Sha256::digest(&plain)),
            e["sha256"].as_str().expect("sha256"),
            "{path} content"
        );
        refs += blocks.len();
        distinct.extend(blocks.iter().copied());
    }
    assert!(empty > 1, "the fixture has empty files");
    assert_eq!((refs, distinct.len()), (276, 274));
}

#[test]
fn our_rfs_codec_gives_rfs_ids_keys_and_bytes() {
    let f = open("fixture.fl");
    let store = rfs_fixture("store");
    let mut checked = 0;
    for id in f.tree.walk() {
        let Kind::File { blocks, .. } = &f.tree.node(id).kind else {
            continue;
        };
        for b in blocks {
            let stored = std::fs::read(store.join(b.id_hex())).expect("block");
            let plain = codec::decode_chunk(b, &stored).expect("decodes");
            let ours = rfs::encode_block(&plain);
            assert_eq!(ours.block, *b, "{}: id and key", f.tree.path_of(id));
            assert_eq!(ours.data, stored, "{}: stored bytes", f.tree.path_of(id));
            checked += 1;
        }
    }
    assert_eq!(checked, 276);
    // The batch encoder gives the same as one at a time.
    let plains: Vec<Vec<u8>> = (0..5usize).map(|i| vec![i as u8; i * 1000 + 1]).collect();
    let refs: Vec<&[u8]> = plains.iter().map(Vec::as_slice).collect();
    let one: Vec<_> = refs.iter().map(|p| rfs::encode_block(p)).collect();
    assert_eq!(Codec::Rfs.encode_many(&refs), one);
}

#[test]
fn rfs_blocks_that_are_tampered_with_are_refused() {
    let f = open("fixture.fl");
    let Kind::File { blocks, .. } = &f.tree.node(f.tree.lookup("hello.txt").expect("hello")).kind
    else {
        panic!("file")
    };
    let b = blocks[0];
    let data = std::fs::read(rfs_fixture("store").join(b.id_hex())).expect("block");
    assert_eq!(
        codec::decode_chunk(&b, &data).expect("decodes"),
        b"hello world\n"
    );
    let mut bad = data.clone();
    bad[0] ^= 1;
    assert!(matches!(
        codec::decode_chunk(&b, &bad),
        Err(flist_format::CodecError::HashMismatch {
            what: "stored bytes",
            ..
        })
    ));
    let Block::Rfs { id, .. } = b else {
        panic!("rfs block")
    };
    let wrong = Block::Rfs { id, key: [7; 32] };
    assert!(matches!(
        codec::decode_chunk(&wrong, &data),
        Err(flist_format::CodecError::Decrypt { .. })
    ));
}

#[test]
fn routed_fl_reads_over_its_two_stores() {
    let f = open("routed.fl");
    assert_eq!(
        f.metadata.routes,
        [
            Route {
                start: 0,
                end: 127,
                url: "dir:///fx/low".into()
            },
            Route {
                start: 128,
                end: 255,
                url: "dir:///fx/high".into()
            },
        ]
    );
    let manifest = json(rfs_fixture("small.manifest.json"));
    let manifest = manifest.as_object().expect("object");
    assert_eq!(manifest.len() + 1, f.tree.len());
    let (mut low, mut high) = (0, 0);
    for (path, e) in manifest {
        let n = f.tree.node(f.tree.lookup(path).expect(path));
        assert_eq!(
            st_mode(&f, path),
            octal(e["mode"].as_str().expect("mode")),
            "{path}"
        );
        assert_eq!(u64::from(n.meta.mtime), e["mtime"].as_u64().expect("mtime"));
        assert_eq!((n.meta.uid, n.meta.gid), (0, 0));
        match &n.kind {
            Kind::File { size, blocks } => {
                assert_eq!(Some(*size), e["size"].as_u64());
                let mut plain = Vec::new();
                for b in blocks {
                    let dir = if b.id()[0] < 128 {
                        low += 1;
                        "low"
                    } else {
                        high += 1;
                        "high"
                    };
                    let data =
                        std::fs::read(rfs_fixture(dir).join(b.id_hex())).expect("routed block");
                    plain.extend(codec::decode_chunk(b, &data).expect("decodes"));
                }
                assert_eq!(
                    hex::encode(Sha256::digest(&plain)),
                    e["sha256"].as_str().expect("sha256"),
                    "{path}"
                );
            }
            Kind::Symlink { target } => assert_eq!(Some(target.as_str()), e["target"].as_str()),
            Kind::Dir { .. } => {}
            k => panic!("{path}: {}", k.type_name()),
        }
    }
    assert_eq!(
        (low, high),
        (1, 3),
        "one block in the low store, three in the high one"
    );
}

/// `sql` of every table and index, by name.
fn schema(path: &std::path::Path) -> BTreeMap<String, String> {
    let conn = rusqlite::Connection::open(path).expect("open");
    let mut st = conn
        .prepare("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL")
        .expect("prepare");
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[test]
fn writing_a_read_fl_gives_the_same_tree_rows_and_schema() {
    let dir = tempfile::tempdir().expect("tmp");
    for name in ["fixture.fl", "routed.fl"] {
        let f = open(name);
        let out = dir.path().join(name);
        f.write_fl(&out).expect("write");
        let back = Flist::open(&out).expect("read back");
        assert!(
            diff(&f.tree, &back.tree, &DiffOptions::default()).is_empty(),
            "{name}"
        );
        assert_eq!(back.metadata, f.metadata, "{name}");
        assert_eq!(schema(&out), schema(&rfs_fixture(name)), "{name}: schema");
        // Same rows as rfs wrote, up to ino numbering and order: compare by path.
        let rows = |p: &std::path::Path| -> BTreeSet<String> {
            let f = Flist::open(p).expect("open");
            flist_format::find_entries(&f.tree)
                .into_iter()
                .map(|e| {
                    let n = f.tree.node(e.node);
                    format!("{} {:?} {:?}", e.path, n.meta, n.kind)
                })
                .collect()
        };
        assert_eq!(rows(&out), rows(&rfs_fixture(name)));
        let conn = rusqlite::Connection::open(&out).expect("open");
        let journal: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("pragma");
        assert_eq!(journal, "delete");
        if name != "fixture.fl" {
            continue;
        }
        // Both owner columns written as they are meant (rfs v2.0.7 reads gid from uid).
        let (gid, uid): (i64, i64) = conn
            .query_row(
                "SELECT gid, uid FROM inode WHERE name = 'secret'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("the secret row");
        assert_eq!((uid, gid), (1000, 1000));
    }
}

#[test]
fn a_tree_of_flist_chunks_is_not_written_as_fl_and_back() {
    let flist = Flist::open(fixture("fixture.flist")).expect("fixture");
    let dir = tempfile::tempdir().expect("tmp");
    let err = flist
        .write_fl(dir.path().join("x.fl"))
        .expect_err("foreign blocks");
    assert!(err.to_string().contains("convert"), "{err}");
    assert!(!dir.path().join("x.fl").exists(), "nothing left behind");
    let fl = open("fixture.fl");
    let err = fl
        .write(dir.path().join("x.flist"))
        .expect_err("foreign blocks");
    assert!(
        matches!(err, flist_format::FormatError::ForeignBlock { .. }),
        "{err}"
    );
    // What each format cannot record is listed.
    // The reference recorded uid 1000 under its local name: .fl keeps only the number.
    let losses = flist.losses(Format::Fl);
    assert_eq!(losses.len(), 1, "{losses:?}");
    assert_eq!(
        (losses[0].count, losses[0].example.as_str()),
        (1, "/secret cloudsdk:cloudsdk")
    );
    assert_eq!(
        open("routed.fl").losses(Format::Flist).len(),
        1,
        "two routes, one backend"
    );
}

/// A copy of `fixture.fl` changed by `sql`.
fn tampered(sql: &str) -> Result<Flist, flist_format::FormatError> {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("t.fl");
    std::fs::copy(rfs_fixture("fixture.fl"), &path).expect("copy");
    {
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch(sql).expect("tamper");
    }
    Flist::open(&path)
}

#[test]
fn hostile_fl_rows_are_errors_not_panics() {
    let cases = [
        (
            "UPDATE block SET id = x'0102' WHERE rowid = 1",
            "bytes, expected 32",
        ),
        (
            "UPDATE block SET key = x'01' WHERE rowid = 2",
            "bytes, expected 32",
        ),
        (
            "UPDATE inode SET name = 'a/b' WHERE ino = 3",
            "invalid entry name",
        ),
        ("UPDATE inode SET name = x'ff00' WHERE ino = 3", "not UTF-8"),
        ("UPDATE inode SET size = -5 WHERE ino = 3", "size -5"),
        ("UPDATE inode SET uid = -1 WHERE ino = 7", "uid -1"),
        ("DELETE FROM inode WHERE ino = 1", "no root"),
        (
            "UPDATE inode SET mode = 33188 WHERE ino = 1",
            "not a directory",
        ),
        (
            "INSERT INTO block (ino, id, key) VALUES (17, zeroblob(32), zeroblob(32))",
            "not a regular file",
        ),
        ("DELETE FROM extra WHERE ino = 8", "without a target"),
        ("UPDATE extra SET data = x'ff' WHERE ino = 8", "not UTF-8"),
        ("UPDATE route SET start = 300", "not a byte"),
    ];
    for (sql, want) in cases {
        match tampered(sql) {
            Ok(_) => panic!("{sql}: accepted"),
            Err(e) => assert!(e.to_string().contains(want), "{sql}: {e}"),
        }
    }
    // A directory that is its own parent, and rows no path reaches, are ignored.
    let f = tampered("UPDATE inode SET parent = 17 WHERE ino = 17; INSERT INTO inode (parent, name, mode) VALUES (9999, 'orphan', 33188)")
        .expect("cycle cut");
    assert!(f.tree.lookup("many").is_none());
    assert!(f.tree.lookup("orphan").is_none());
    // Duplicate names: the first wins.
    let f = tampered("INSERT INTO inode (parent, name, size, uid, gid, mode, rdev, ctime, mtime) VALUES (1, 'hello.txt', 1, 0, 0, 33188, 0, 0, 0)")
        .expect("duplicate kept once");
    assert_eq!(
        f.tree
            .node(f.tree.lookup("hello.txt").expect("hello"))
            .kind
            .size(),
        12
    );
}
