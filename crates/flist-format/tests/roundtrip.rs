//! Writing flists and reading them back: round trips, catalog layout, container shape,
//! large directories and random trees.

use std::io::Read;

use flist_format::catalog::{self, AttrRec};
use flist_format::codec::{blake2b, dir_key};
use flist_format::tree::{diff, DiffOptions};
use flist_format::{Block, Flist, Kind, Meta, Metadata, SpecialKind, Tree};
use proptest::prelude::*;
use rusqlite::Connection;
use test_support::fixture;

fn strict() -> DiffOptions {
    DiffOptions::default()
}

fn sample_tree() -> Tree {
    let m = Meta::root(0o755, 1_700_000_000);
    let mut t = Tree::new(m.clone());
    let d = t.mkdir_p("usr/bin", &m).expect("mkdir");
    let f = Meta {
        mode: 0o4755,
        uid: 1000,
        gid: 100,
        uname: "alice".into(),
        gname: "users".into(),
        mtime: 5,
        ctime: 6,
    };
    t.insert(
        d,
        "tool",
        f,
        Kind::File {
            size: 524_289,
            blocks: vec![
                Block::Flist {
                    hash: [1; 16],
                    key: [2; 16],
                },
                Block::Flist {
                    hash: [3; 16],
                    key: [4; 16],
                },
            ],
        },
    )
    .expect("insert");
    t.insert(
        Tree::ROOT,
        "link",
        Meta::root(0o777, 7),
        Kind::Symlink {
            target: "usr/bin/tool".into(),
        },
    )
    .expect("insert");
    t.insert(
        Tree::ROOT,
        "null",
        Meta::root(0o666, 8),
        Kind::Special {
            kind: SpecialKind::Chardev,
            rdev: Some((1, 3)),
        },
    )
    .expect("insert");
    t.insert(
        Tree::ROOT,
        "fifo",
        Meta::root(0o644, 9),
        Kind::Special {
            kind: SpecialKind::Fifo,
            rdev: None,
        },
    )
    .expect("insert");
    t.insert(
        Tree::ROOT,
        "sock",
        Meta::root(0o755, 9),
        Kind::Special {
            kind: SpecialKind::Socket,
            rdev: None,
        },
    )
    .expect("insert");
    t.insert(
        Tree::ROOT,
        "disk",
        Meta::root(0o660, 9),
        Kind::Special {
            kind: SpecialKind::Block,
            rdev: Some((7, 0)),
        },
    )
    .expect("insert");
    t.insert(
        Tree::ROOT,
        "empty",
        Meta::root(0o644, 9),
        Kind::File {
            size: 0,
            blocks: vec![],
        },
    )
    .expect("insert");
    t.insert(
        Tree::ROOT,
        "big dir",
        m,
        Kind::Dir {
            children: Default::default(),
            size: 12288,
        },
    )
    .expect("insert");
    t
}

fn sample_metadata() -> Metadata {
    let mut m = Metadata::new();
    m.set_entrypoint(&["/bin/sh".into(), "-c".into(), "echo \"hi\"\n".into()]);
    m.set("custom", "raw value");
    m
}

#[test]
fn write_read_round_trip_and_catalog_layout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out.flist");
    let fl = Flist {
        tree: sample_tree(),
        metadata: sample_metadata(),
    };
    fl.write(&path).expect("write");
    let back = Flist::open(&path).expect("read back");
    let d = diff(&fl.tree, &back.tree, &strict());
    assert!(d.is_empty(), "{d:#?}");
    assert_eq!(back.metadata, fl.metadata);
    // nothing but the result is left in the destination directory
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, [std::ffi::OsString::from("out.flist")]);

    // container: "./" then "./flistdb.sqlite3", gzip
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(
        std::fs::File::open(&path).expect("open"),
    ));
    let mut members = Vec::new();
    let db_path = dir.path().join("db");
    for e in ar.entries().expect("tar") {
        let mut e = e.expect("entry");
        members.push(String::from_utf8_lossy(&e.path_bytes()).into_owned());
        if e.header().entry_type().is_file() {
            let mut data = Vec::new();
            e.read_to_end(&mut data).expect("read member");
            std::fs::write(&db_path, data).expect("write db");
        }
    }
    assert_eq!(members, ["./", "./flistdb.sqlite3"]);

    // catalog: TEXT keys, consistent Dir rows, shared ACLs, real special types with type bits
    let conn = Connection::open(&db_path).expect("sqlite");
    let non_text: i64 = conn
        .query_row(
            "SELECT count(*) FROM entries WHERE typeof(key) != 'text'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(non_text, 0);
    let get = |key: &str| -> Vec<u8> {
        conn.query_row("SELECT value FROM entries WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .expect("row exists")
    };
    let root = catalog::decode_dir(&dir_key(""), &get(&dir_key(""))).expect("root");
    assert_eq!((root.name.as_str(), root.location.as_str()), ("", ""));
    assert_eq!(root.parent, dir_key(""));
    let usr = root
        .contents
        .iter()
        .find(|i| i.name == "usr")
        .expect("usr inode");
    assert_eq!(
        usr.attr,
        AttrRec::Dir {
            key: dir_key("usr")
        }
    );
    let bin = catalog::decode_dir("usr/bin", &get(&dir_key("usr/bin"))).expect("usr/bin row");
    assert_eq!(
        (
            bin.name.as_str(),
            bin.location.as_str(),
            bin.parent.as_str()
        ),
        ("bin", "usr/bin", dir_key("usr").as_str())
    );
    let tool = &bin.contents[0];
    assert!(matches!(&tool.attr, AttrRec::File { block_size: 128, blocks } if blocks.len() == 2));
    assert_eq!(tool.size, 524_289);
    let aci = catalog::decode_aci(&tool.aclkey, &get(&tool.aclkey)).expect("aci");
    assert_eq!(
        (
            aci.uname.as_str(),
            aci.gname.as_str(),
            aci.mode,
            aci.uid,
            aci.gid
        ),
        ("alice", "users", 0o4755, 1000, 100)
    );
    let text = "user:alice\ngroup:users\nmode:0o4755\nuid:1000\ngid:100";
    assert_eq!(tool.aclkey, hex::encode(blake2b::<8>(text.as_bytes())));
    let acl_rows: i64 = conn
        .query_row(
            "SELECT count(*) FROM entries WHERE length(key) = 16",
            [],
            |r| r.get(0),
        )
        .expect("count");
    let distinct: std::collections::HashSet<String> = fl
        .tree
        .walk()
        .map(|id| {
            let n = fl.tree.node(id);
            let bits = match n.kind {
                Kind::Special { kind, .. } => catalog::special_type_bits(kind),
                _ => 0,
            };
            format!("{:?}{:?}{}", n.meta.uname, n.meta.gname, n.meta.mode | bits)
        })
        .collect();
    assert_eq!(
        acl_rows as usize,
        distinct.len(),
        "one ACL row per distinct ACL"
    );
    let null = root
        .contents
        .iter()
        .find(|i| i.name == "null")
        .expect("null");
    assert_eq!(
        null.attr,
        AttrRec::Special {
            kind: SpecialKind::Chardev,
            data: b"1,3".to_vec()
        }
    );
    let null_aci = catalog::decode_aci(&null.aclkey, &get(&null.aclkey)).expect("aci");
    assert_eq!(u32::from(null_aci.mode), 0o020666);
    let link = root
        .contents
        .iter()
        .find(|i| i.name == "link")
        .expect("link");
    assert_eq!(link.size, "usr/bin/tool".len() as u64);
    let bigdir = root
        .contents
        .iter()
        .find(|i| i.name == "big dir")
        .expect("big dir");
    assert_eq!(bigdir.size, 12288);
    let empty = root
        .contents
        .iter()
        .find(|i| i.name == "empty")
        .expect("empty");
    assert_eq!(
        empty.attr,
        AttrRec::File {
            block_size: 128,
            blocks: vec![]
        }
    );
}

/// The same flist written twice, a clock second apart, is the same bytes: a rewrite of an
/// unchanged flist (a hub re-storing an uploaded one) keeps its md5.
#[test]
fn writing_is_reproducible_across_clock_seconds() {
    let orig = Flist::open(fixture("fixture.flist")).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a.flist"), dir.path().join("b.flist"));
    orig.write(&a).expect("write a");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    orig.write(&b).expect("write b");
    let (a, b) = (std::fs::read(&a).expect("a"), std::fs::read(&b).expect("b"));
    assert!(
        a == b,
        "two writes of one flist differ ({} vs {} bytes)",
        a.len(),
        b.len()
    );
}

#[test]
fn fixture_survives_a_rewrite() {
    let orig = Flist::open(fixture("fixture.flist")).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("flistdb.sqlite3");
    orig.write_sqlite(&db).expect("write sqlite");
    let back = Flist::from_sqlite(&db).expect("read sqlite");
    let d = diff(&orig.tree, &back.tree, &strict());
    assert!(d.is_empty(), "{d:#?}");
    assert_eq!(back.metadata, orig.metadata);
    assert_eq!(back.find_response(), orig.find_response());
    // rewriting in place replaces the database
    let mut changed = back.clone();
    changed.metadata.set("custom-key", "other");
    changed.write_sqlite(&db).expect("rewrite");
    assert_eq!(
        Flist::from_sqlite(&db)
            .expect("read")
            .metadata
            .get("custom-key"),
        Some("other")
    );
    // and the packed form of an existing database opens
    let packed = dir.path().join("packed.flist");
    flist_format::writer::pack_database(&db, &packed).expect("pack");
    assert_eq!(
        Flist::open(&packed).expect("open packed").tree.len(),
        orig.tree.len()
    );
}

#[test]
fn hundred_thousand_entry_directory() {
    let m = Meta::root(0o755, 1);
    let mut t = Tree::new(m.clone());
    let d = t.mkdir_p("huge", &m).expect("mkdir");
    let fm = Meta::root(0o644, 1);
    let blk = Block::Flist {
        hash: [9; 16],
        key: [8; 16],
    };
    for i in 0..100_000u32 {
        t.insert(
            d,
            &format!("file-{i:06}"),
            fm.clone(),
            Kind::File {
                size: 10,
                blocks: vec![blk],
            },
        )
        .expect("insert");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("huge.flist");
    let fl = Flist {
        tree: t,
        metadata: Metadata::new(),
    };
    fl.write(&path).expect("write");
    let back = Flist::open(&path).expect("read");
    assert_eq!(back.tree.len(), 100_002);
    let huge = back.tree.lookup("huge").expect("huge");
    assert_eq!(back.tree.children(huge).count(), 100_000);
    assert_eq!(
        back.tree.children(huge).last().map(|(n, _)| n.to_string()),
        Some("file-099999".to_string())
    );
    let d = diff(&fl.tree, &back.tree, &strict());
    assert!(d.is_empty(), "{:?}", &d[..d.len().min(5)]);
}

#[test]
fn missing_metadata_table_and_missing_acl_rows_are_tolerated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("flistdb.sqlite3");
    let mut t = Tree::new(Meta::root(0o700, 3));
    t.insert(
        Tree::ROOT,
        "f",
        Meta::numeric(0o600, 5, 6, 4),
        Kind::File {
            size: 0,
            blocks: vec![],
        },
    )
    .expect("insert");
    t.mkdir_p("d", &Meta::numeric(0o700, 5, 6, 4))
        .expect("mkdir");
    Flist {
        tree: t,
        metadata: Metadata::new(),
    }
    .write_sqlite(&db)
    .expect("write");
    {
        let conn = Connection::open(&db).expect("open");
        conn.execute_batch("DROP TABLE metadata; DELETE FROM entries WHERE length(key) = 16;")
            .expect("strip");
    }
    let back = Flist::from_sqlite(&db).expect("read");
    assert!(back.metadata.is_empty());
    let f = back.tree.node(back.tree.lookup("f").expect("f kept"));
    assert_eq!(
        (f.meta.mode, f.meta.uid, f.meta.uname.as_str(), f.meta.mtime),
        (0o644, 0, "root", 4)
    );
    let d = back.tree.node(back.tree.lookup("d").expect("d kept"));
    assert_eq!(d.meta.mode, 0o755);
    assert_eq!(back.tree.node(Tree::ROOT).meta.mode, 0o755);
}

#[test]
fn legacy_type_bits_in_modes_are_masked_and_tell_the_special_kind() {
    // A catalog whose ACLs carry file-type bits for every entry (as some writers do).
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("flistdb.sqlite3");
    let mut t = Tree::new(Meta::root(0o755, 1));
    t.insert(
        Tree::ROOT,
        "p",
        Meta::root(0o644, 1),
        Kind::Special {
            kind: SpecialKind::Fifo,
            rdev: None,
        },
    )
    .expect("insert");
    Flist {
        tree: t,
        metadata: Metadata::new(),
    }
    .write_sqlite(&db)
    .expect("write");
    let conn = Connection::open(&db).expect("open");
    // rewrite the fifo's Dir inode as the reference does: type socket, data "(nothing)";
    // its ACL still says S_IFIFO.
    let root_key = dir_key("");
    let bytes: Vec<u8> = conn
        .query_row(
            "SELECT value FROM entries WHERE key = ?1",
            [&root_key],
            |r| r.get(0),
        )
        .expect("root");
    let mut rec = catalog::decode_dir(&root_key, &bytes).expect("decode");
    rec.contents[0].attr = AttrRec::Special {
        kind: SpecialKind::Socket,
        data: b"(nothing)".to_vec(),
    };
    // and give the root dir an ACL with S_IFDIR bits
    let aci = catalog::AciRec {
        uname: "root".into(),
        gname: "root".into(),
        mode: 0o040711,
        uid: 0,
        gid: 0,
    };
    rec.aclkey = "00000000000000aa".into();
    conn.execute(
        "INSERT INTO entries VALUES (?1, ?2)",
        rusqlite::params![rec.aclkey, catalog::encode_aci(&aci)],
    )
    .expect("acl");
    conn.execute(
        "UPDATE entries SET value = ?2 WHERE key = ?1",
        rusqlite::params![root_key, catalog::encode_dir(&rec).expect("encode")],
    )
    .expect("update");
    drop(conn);
    let back = Flist::from_sqlite(&db).expect("read");
    assert_eq!(back.tree.node(Tree::ROOT).meta.mode, 0o711);
    let p = back.tree.node(back.tree.lookup("p").expect("p"));
    assert_eq!(
        p.kind,
        Kind::Special {
            kind: SpecialKind::Fifo,
            rdev: None
        }
    );
    assert_eq!(p.meta.mode, 0o644);
}

// ---- random trees ----

#[derive(Clone, Debug)]
enum Gen {
    File(u64),
    Link(String),
    Special(u8, Option<(u32, u32)>),
    Dir(u64),
}

fn name_strategy() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z0-9._-]{1,12}", "[ a-z]{1,6}[a-z]", "\\PC{1,8}",]
        .prop_filter("valid name", |s| {
            flist_format::tree::validate_name(s).is_ok()
        })
}

fn gen_strategy() -> impl Strategy<Value = Gen> {
    prop_oneof![
        prop_oneof![
            Just(0u64),
            Just(524_287),
            Just(524_288),
            Just(524_289),
            0u64..5_000_000
        ]
        .prop_map(Gen::File),
        "\\PC{0,20}".prop_map(Gen::Link),
        (0u8..5, proptest::option::of((0u32..4096, 0u32..1_000_000)))
            .prop_map(|(k, r)| Gen::Special(k, r)),
        prop_oneof![Just(4096u64), any::<u64>()].prop_map(Gen::Dir),
    ]
}

type Item = (usize, String, Gen, u32, u32, u32, u32, u32);

fn item_strategy() -> impl Strategy<Value = Item> {
    (
        0usize..1000,
        name_strategy(),
        gen_strategy(),
        0u32..0o10000,
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
}

fn build(items: Vec<Item>) -> Tree {
    let mut t = Tree::new(Meta::root(0o755, 0));
    let mut dirs = vec![Tree::ROOT];
    for (parent, name, g, mode, uid, gid, mtime, ctime) in items {
        let p = dirs[parent % dirs.len()];
        let meta = Meta {
            ctime,
            ..Meta::numeric(mode, uid, gid, mtime)
        };
        let kind = match g {
            Gen::File(size) => {
                let n = size.div_ceil(524_288);
                let blocks = (0..n)
                    .map(|i| Block::Flist {
                        hash: blake2b::<16>(&i.to_le_bytes()),
                        key: [i as u8; 16],
                    })
                    .collect();
                Kind::File { size, blocks }
            }
            Gen::Link(target) => Kind::Symlink { target },
            Gen::Special(k, rdev) => {
                let kind = [
                    SpecialKind::Socket,
                    SpecialKind::Block,
                    SpecialKind::Chardev,
                    SpecialKind::Fifo,
                    SpecialKind::Unknown,
                ][k as usize];
                Kind::Special { kind, rdev }
            }
            Gen::Dir(size) => Kind::Dir {
                children: Default::default(),
                size,
            },
        };
        let is_dir = kind.is_dir();
        if let Ok(id) = t.insert(p, &name, meta, kind) {
            if is_dir {
                dirs.push(id);
            }
        }
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_trees_round_trip(items in proptest::collection::vec(item_strategy(), 0..60)) {
        let tree = build(items);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.flist");
        let fl = Flist { tree, metadata: sample_metadata() };
        fl.write(&path).expect("write");
        let back = Flist::open(&path).expect("read");
        let d = diff(&fl.tree, &back.tree, &DiffOptions::default());
        prop_assert!(d.is_empty(), "{:#?}", d);
        prop_assert_eq!(&back.metadata, &fl.metadata);
        prop_assert_eq!(back.find_response(), fl.find_response());
    }
}
