//! Hostile and broken input: every case is a typed error (or a safe success), never a
//! panic, and nothing is written outside the reader's private temporary file.

use std::io::Write;
use std::path::Path;

use flist_format::catalog::{self, AttrRec, DirRec, InodeRec};
use flist_format::codec::{decode_chunk, dir_key};
use flist_format::{Block, CodecError, Flist, FormatError, Kind, Meta, Metadata, Tree};
use rusqlite::Connection;
use test_support::fixture;

/// A catalog with the given raw rows (key → value) and the reference schema.
fn catalog_with(dir: &Path, rows: &[(&str, Vec<u8>)]) -> std::path::PathBuf {
    let db = dir.join("flistdb.sqlite3");
    let _ = std::fs::remove_file(&db);
    let conn = Connection::open(&db).expect("create db");
    conn.execute_batch(flist_format::writer::SCHEMA)
        .expect("schema");
    for (k, v) in rows {
        conn.execute(
            "INSERT INTO entries (key, value) VALUES (?1, ?2)",
            rusqlite::params![k, v],
        )
        .expect("insert");
    }
    db
}

fn dir_rec(location: &str, contents: Vec<InodeRec>) -> DirRec {
    DirRec {
        name: location.rsplit('/').next().unwrap_or("").to_string(),
        location: location.to_string(),
        contents,
        parent: dir_key(""),
        size: 4096,
        aclkey: "none".into(),
        mtime: 0,
        ctime: 0,
    }
}

fn subdir(name: &str, key: String) -> InodeRec {
    InodeRec {
        name: name.into(),
        size: 4096,
        attr: AttrRec::Dir { key },
        aclkey: "none".into(),
        mtime: 0,
        ctime: 0,
    }
}

fn file(name: &str) -> InodeRec {
    InodeRec {
        name: name.into(),
        size: 0,
        attr: AttrRec::File {
            block_size: 128,
            blocks: vec![],
        },
        aclkey: "none".into(),
        mtime: 0,
        ctime: 0,
    }
}

fn enc(d: &DirRec) -> Vec<u8> {
    catalog::encode_dir(d).expect("encode")
}

/// A tar (uncompressed) holding one member with a raw, unchecked name.
fn tar_with_member(name: &[u8], data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    let mut out = Vec::new();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
    out
}

fn small_db_bytes() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("x.sqlite3");
    let mut t = Tree::new(Meta::root(0o755, 0));
    t.insert(
        Tree::ROOT,
        "hello",
        Meta::root(0o644, 0),
        Kind::File {
            size: 0,
            blocks: vec![],
        },
    )
    .expect("insert");
    Flist {
        tree: t,
        metadata: Metadata::new(),
    }
    .write_sqlite(&db)
    .expect("write");
    std::fs::read(&db).expect("read db")
}

#[test]
fn garbage_sqlite_is_an_sqlite_error() {
    let mut bytes = b"SQLite format 3\0".to_vec();
    bytes.extend((0..8192u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let r = Flist::from_reader(&bytes[..], "garbage").map(|_| ());
    assert!(matches!(r, Err(FormatError::Sqlite { .. })), "{r:?}");
    // same garbage inside a tar member
    let tarred = tar_with_member(b"./flistdb.sqlite3", &bytes);
    let r = Flist::from_reader(&tarred[..], "garbage tar").map(|_| ());
    assert!(matches!(r, Err(FormatError::Sqlite { .. })), "{r:?}");
    // a valid sqlite file without the entries table
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("empty.sqlite3");
    Connection::open(&db)
        .expect("db")
        .execute_batch("CREATE TABLE t (x);")
        .expect("table");
    let r = Flist::from_sqlite(&db).map(|_| ());
    assert!(matches!(r, Err(FormatError::Sqlite { .. })), "{r:?}");
}

#[test]
fn truncated_and_non_archives_are_container_errors() {
    let bytes = std::fs::read(fixture("fixture.flist")).expect("fixture");
    for cut in [10, bytes.len() / 2, bytes.len() - 9] {
        let r = Flist::from_reader(&bytes[..cut], "truncated").map(|_| ());
        assert!(
            matches!(r, Err(FormatError::Container { .. })),
            "cut {cut}: {r:?}"
        );
    }
    let r = Flist::from_reader(
        &b"this is not an archive at all, just some text"[..],
        "text",
    )
    .map(|_| ());
    assert!(
        matches!(
            r,
            Err(FormatError::Container { .. }) | Err(FormatError::MissingDatabase(_))
        ),
        "{r:?}"
    );
    let r = Flist::from_reader(&[][..], "empty").map(|_| ());
    assert!(matches!(r, Err(FormatError::Container { .. })), "{r:?}");
    // a well-formed tar without the database
    let r =
        Flist::from_reader(&tar_with_member(b"./router.yaml", b"x: 1\n")[..], "no db").map(|_| ());
    assert!(matches!(r, Err(FormatError::MissingDatabase(_))), "{r:?}");
    let r = Flist::open("/nonexistent/dir/x.flist").map(|_| ());
    assert!(matches!(r, Err(FormatError::Io { .. })), "{r:?}");
}

#[test]
fn member_paths_are_never_written_to() {
    let db = small_db_bytes();
    let victim = tempfile::tempdir().expect("tempdir");
    let abs = format!("{}/flistdb.sqlite3", victim.path().display());
    let rel = "../flistdb.sqlite3";
    assert!(!Path::new(rel).exists());
    for name in [
        rel.as_bytes(),
        abs.as_bytes(),
        b"../../../../../../tmp/flistdb.sqlite3".as_slice(),
    ] {
        let tarred = tar_with_member(name, &db);
        let f = Flist::from_reader(&tarred[..], "traversal").expect("accepted by basename");
        assert!(f.tree.lookup("hello").is_some());
    }
    assert!(
        !Path::new(rel).exists(),
        "nothing written next to the working directory"
    );
    assert_eq!(
        std::fs::read_dir(victim.path()).expect("ls").count(),
        0,
        "nothing written at an absolute member path"
    );
}

/// A one-segment message of `words` (segment table added).
fn message(words: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(words.len() as u32).to_le_bytes());
    for w in words {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out
}

fn struct_ptr(offset: i32, data: u16, ptrs: u16) -> u64 {
    (((offset as u32) << 2) as u64) | ((data as u64) << 32) | ((ptrs as u64) << 48)
}

fn list_ptr(offset: i32, elem_size: u8, count: u32) -> u64 {
    1 | (((offset as u32) << 2) as u64) | ((elem_size as u64) << 32) | ((count as u64) << 35)
}

#[test]
fn hostile_capnp_values_are_capnp_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir_key("");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // root pointer far outside the segment
        (
            "root pointer out of bounds",
            message(&[struct_ptr(0x0100_0000, 0, 3)]),
        ),
        // Dir.contents: a composite list claiming 2^29-1 words
        (
            "huge list",
            message(&[struct_ptr(0, 0, 3), 0, 0, list_ptr(0, 7, (1 << 29) - 1)]),
        ),
        // Dir.name pointing outside the segment
        (
            "bad text pointer",
            message(&[struct_ptr(0, 0, 1), list_ptr(0x0010_0000, 2, 10)]),
        ),
        // a composite list of 100 million zero-sized elements (amplification)
        (
            "zero-sized elements",
            message(&[
                struct_ptr(0, 0, 3),
                0,
                0,
                list_ptr(0, 7, 0),
                (100_000_000u64 << 2),
            ]),
        ),
        // segment table claiming more words than there are
        ("short segment", {
            let mut m = message(&[struct_ptr(0, 0, 0)]);
            m[4..8].copy_from_slice(&1000u32.to_le_bytes());
            m
        }),
        // 600 segments
        ("too many segments", {
            let mut m = 599u32.to_le_bytes().to_vec();
            m.extend(std::iter::repeat_n(0u8, 600 * 4 + 4));
            m
        }),
        ("empty value", Vec::new()),
        ("three bytes", vec![1, 2, 3]),
    ];
    for (what, value) in cases {
        let db = catalog_with(dir.path(), &[(&root, value)]);
        let r = Flist::from_sqlite(&db).map(|_| ());
        assert!(
            matches!(
                r,
                Err(FormatError::Capnp { .. }) | Err(FormatError::BadEntry { .. })
            ),
            "{what}: {r:?}"
        );
    }
}

#[test]
fn dir_cycles_and_shared_rows_are_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir_key("");
    let a = dir_key("a");
    // a → root
    let db = catalog_with(
        dir.path(),
        &[
            (&root, enc(&dir_rec("", vec![subdir("a", a.clone())]))),
            (&a, enc(&dir_rec("a", vec![subdir("up", root.clone())]))),
        ],
    );
    let r = Flist::from_sqlite(&db).map(|_| ());
    assert!(
        matches!(&r, Err(FormatError::DirCycle { key, path }) if *key == root && path == "a/up"),
        "{r:?}"
    );
    // two entries sharing one row
    let db = catalog_with(
        dir.path(),
        &[
            (
                &root,
                enc(&dir_rec(
                    "",
                    vec![subdir("a", a.clone()), subdir("b", a.clone())],
                )),
            ),
            (&a, enc(&dir_rec("a", vec![]))),
        ],
    );
    let r = Flist::from_sqlite(&db).map(|_| ());
    assert!(matches!(r, Err(FormatError::DirCycle { .. })), "{r:?}");
    // a self-loop
    let db = catalog_with(
        dir.path(),
        &[
            (&root, enc(&dir_rec("", vec![subdir("a", a.clone())]))),
            (&a, enc(&dir_rec("a", vec![subdir("a", a.clone())]))),
        ],
    );
    assert!(matches!(
        Flist::from_sqlite(&db),
        Err(FormatError::DirCycle { .. })
    ));
}

#[test]
fn missing_rows_and_bad_names_are_typed_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir_key("");
    let db = catalog_with(dir.path(), &[]);
    assert!(
        matches!(Flist::from_sqlite(&db), Err(FormatError::MissingDir { path, .. }) if path.is_empty())
    );
    let db = catalog_with(
        dir.path(),
        &[(
            &root,
            enc(&dir_rec("", vec![subdir("gone", dir_key("gone"))])),
        )],
    );
    assert!(
        matches!(Flist::from_sqlite(&db), Err(FormatError::MissingDir { path, .. }) if path == "gone")
    );
    for bad in ["..", ".", "", "a/b", "nul\0"] {
        let db = catalog_with(dir.path(), &[(&root, enc(&dir_rec("", vec![file(bad)])))]);
        let r = Flist::from_sqlite(&db).map(|_| ());
        assert!(
            matches!(r, Err(FormatError::BadEntry { .. })),
            "{bad:?}: {r:?}"
        );
    }
    // a block hash of the wrong length
    let short = {
        let mut msg = capnp::message::Builder::new_default();
        {
            let mut d = msg.init_root::<flist_format::flist_capnp::dir::Builder<'_>>();
            let list = d.reborrow().init_contents(1);
            let mut i = list.get(0);
            i.set_name("f");
            let mut fb = i.init_attributes().init_file().init_blocks(1).get(0);
            fb.set_hash(&[1, 2, 3][..]);
            fb.set_key(&[0; 16][..]);
        }
        capnp::serialize::write_message_to_words(&msg)
    };
    let db = catalog_with(dir.path(), &[(&root, short)]);
    let r = Flist::from_sqlite(&db).map(|_| ());
    assert!(
        matches!(&r, Err(FormatError::BadEntry { reason, .. }) if reason.contains("3 bytes")),
        "{r:?}"
    );
}

#[test]
fn non_utf8_names_are_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir_key("");
    let value = {
        let mut msg = capnp::message::Builder::new_default();
        {
            let d = msg.init_root::<flist_format::flist_capnp::dir::Builder<'_>>();
            let list = d.init_contents(1);
            let i = list.get(0);
            let bad: &[u8] = b"caf\xe9";
            i.init_name(bad.len() as u32)
                .as_bytes_mut()
                .copy_from_slice(bad);
        }
        capnp::serialize::write_message_to_words(&msg)
    };
    let db = catalog_with(dir.path(), &[(&root, value)]);
    let r = Flist::from_sqlite(&db).map(|_| ());
    assert!(
        matches!(&r, Err(FormatError::BadEntry { reason, .. }) if reason.contains("UTF-8")),
        "{r:?}"
    );
}

#[test]
fn duplicate_names_keep_the_first_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir_key("");
    let mut second = file("x");
    second.attr = AttrRec::Link {
        target: "elsewhere".into(),
    };
    let db = catalog_with(
        dir.path(),
        &[(&root, enc(&dir_rec("", vec![file("x"), second])))],
    );
    let f = Flist::from_sqlite(&db).expect("read");
    assert_eq!(f.tree.len(), 2);
    assert!(matches!(
        f.tree.node(f.tree.lookup("x").expect("x")).kind,
        Kind::File { .. }
    ));
}

#[test]
fn chunk_hash_mismatch_is_a_codec_error() {
    let f = Flist::open(fixture("fixture.flist")).expect("fixture");
    let Kind::File { blocks, .. } = &f.tree.node(f.tree.lookup("hello.txt").expect("hello")).kind
    else {
        panic!("hello.txt is a file")
    };
    let b = blocks[0];
    let data = std::fs::read(fixture("chunks").join(b.id_hex())).expect("chunk");
    assert!(decode_chunk(&b, &data).is_ok());
    let mut tampered = data.clone();
    tampered[0] ^= 0x40;
    assert!(matches!(
        decode_chunk(&b, &tampered),
        Err(CodecError::HashMismatch {
            what: "stored bytes",
            ..
        })
    ));
    // right bytes, wrong decryption key
    let Block::Flist { hash, .. } = b else {
        panic!("an .flist chunk")
    };
    let wrong = Block::Flist { hash, key: [7; 16] };
    assert!(matches!(
        decode_chunk(&wrong, &data),
        Err(CodecError::Decrypt { .. })
            | Err(CodecError::Decompress { .. })
            | Err(CodecError::HashMismatch { .. })
    ));
}

#[test]
fn garbage_inside_gzip_is_an_error() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&[0x55; 4096]).expect("gzip");
    let bytes = gz.finish().expect("gzip");
    let r = Flist::from_reader(&bytes[..], "gz garbage").map(|_| ());
    assert!(
        matches!(
            r,
            Err(FormatError::Container { .. }) | Err(FormatError::MissingDatabase(_))
        ),
        "{r:?}"
    );
}

/// A file that is not an flist is described by what it is not, never by its bytes (the
/// tar reader's own messages quote the header fields it could not parse).
#[test]
fn errors_say_what_a_file_is_not_never_its_content() {
    let secret = b"root:x:0:0:SECRET-CONTENT:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n".repeat(20);
    let gz = |data: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).expect("gzip");
        e.finish().expect("gzip")
    };
    // A valid tar member, then a header block of text.
    let mut tar_then_text = tar_with_member(b"./router.yaml", b"x: 1\n");
    tar_then_text.truncate(1024);
    tar_then_text.extend_from_slice(&secret);
    let fixture_bytes = std::fs::read(fixture("fixture.flist")).expect("fixture");
    let mut bad_deflate = fixture_bytes.clone();
    for b in &mut bad_deflate[20..60] {
        *b = b'S';
    }
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "text",
            secret.clone(),
            "not an flist: not gzip, not a tar archive, not a SQLite database",
        ),
        (
            "gzip of text",
            gz(&secret),
            "not an flist: gzip, but no tar archive inside",
        ),
        (
            "tar, then text",
            tar_then_text.clone(),
            "not an flist: no valid tar header after 1 member",
        ),
        (
            "gzip of tar, then text",
            gz(&tar_then_text),
            "not an flist: no valid tar header after 1 member",
        ),
        ("corrupt deflate", bad_deflate, "not an flist: "),
        (
            "truncated",
            fixture_bytes[..fixture_bytes.len() / 2].to_vec(),
            "not an flist: ",
        ),
    ];
    for (what, bytes, want) in cases {
        let e = Flist::from_reader(&bytes[..], what)
            .map(|_| ())
            .expect_err(what)
            .to_string();
        assert!(e.starts_with(&format!("{what}: {want}")), "{what}: {e}");
        assert!(
            !e.contains("SECRET") && !e.contains("root:") && !e.contains("SSSS"),
            "{what}: the message quotes the file: {e}"
        );
        assert!(e.len() < 200, "{what}: a short message: {e}");
    }
}
