//! Reading the reference fixtures produced by zflist 2.3.0: tree, contents, metadata, find
//! output and merge semantics.

use std::collections::HashSet;
use std::io::Read;

use flist_format::codec::{decode_chunk, CHUNK_SIZE};
use flist_format::tree::{diff, DiffOptions};
use flist_format::{merge, Backend, Flist, Kind, Readme, SpecialKind, Tree, Volume};
use serde_json::Value;
use sha2::{Digest, Sha256};
use test_support::fixture;

fn json(name: &str) -> Value {
    let bytes = std::fs::read(fixture(name)).expect("fixture readable");
    serde_json::from_slice(&bytes).expect("fixture is JSON")
}

fn open(name: &str) -> Flist {
    Flist::open(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_fixture_flist_opens() {
    for name in [
        "fixture.flist",
        "merge-a.flist",
        "merge-b.flist",
        "merge-ab.flist",
    ] {
        let f = open(name);
        assert!(!f.tree.is_empty(), "{name} has entries");
    }
}

#[test]
fn manifest_paths_types_and_attributes() {
    let f = open("fixture.flist");
    let t = &f.tree;
    let manifest = json("fixture.manifest.json");
    let entries = manifest.as_array().expect("manifest is an array");
    assert_eq!(
        entries.len() + 1,
        t.len(),
        "every entry and the root, nothing more"
    );
    for e in entries {
        let path = e["path"].as_str().expect("path");
        let id = t.lookup(path).unwrap_or_else(|| panic!("{path} missing"));
        let n = t.node(id);
        let mode = u32::from_str_radix(
            e["mode"].as_str().expect("mode").trim_start_matches("0o"),
            8,
        )
        .expect("octal mode");
        assert_eq!(n.meta.mode, mode & 0o7777, "{path} mode");
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
        let ty = e["type"].as_str().expect("type");
        match (&n.kind, ty) {
            (Kind::Dir { .. }, "dir") => {}
            (Kind::File { size, blocks }, "file") => {
                assert_eq!(Some(*size), e["size"].as_u64(), "{path} size");
                assert_eq!(
                    blocks.len() as u64,
                    size.div_ceil(CHUNK_SIZE as u64),
                    "{path} chunk count"
                );
            }
            (Kind::Symlink { target }, "symlink") => {
                assert_eq!(Some(target.as_str()), e["target"].as_str(), "{path} target");
                assert_eq!(Some(n.kind.size()), e["size"].as_u64(), "{path} link size");
            }
            (Kind::Special { kind, rdev }, "fifo" | "chardev" | "blockdev" | "socket") => {
                // The reference records every special as a socket without type bits: the
                // reader reports what the file says.
                assert_eq!(*kind, SpecialKind::Socket, "{path} kind as recorded");
                let want = e["rdev"].as_array().map(|r| {
                    (
                        r[0].as_u64().expect("major") as u32,
                        r[1].as_u64().expect("minor") as u32,
                    )
                });
                assert_eq!(*rdev, want, "{path} rdev");
            }
            (k, ty) => panic!("{path}: read {} but manifest says {ty}", k.type_name()),
        }
    }
    // the 0600 file owned by 1000:1000 keeps its owner name from the ACL
    let secret = t.node(t.lookup("/secret").expect("secret"));
    assert_eq!(
        (secret.meta.uid, secret.meta.gid, secret.meta.mode),
        (1000, 1000, 0o600)
    );
    let setuid = t.node(t.lookup("/setuid-bin").expect("setuid-bin"));
    assert_eq!(setuid.meta.mode, 0o4755);
    let many = t.node(t.lookup("/many").expect("many"));
    assert_eq!(many.kind.size(), 12288);
}

#[test]
fn every_regular_file_decodes_to_the_manifest_sha256() {
    let f = open("fixture.flist");
    let t = &f.tree;
    let chunks = fixture("chunks");
    let mut used = HashSet::new();
    let mut refs = 0;
    for e in json("fixture.manifest.json").as_array().expect("array") {
        if e["type"] != "file" {
            continue;
        }
        let path = e["path"].as_str().expect("path");
        let Kind::File { size, blocks } = &t.node(t.lookup(path).expect("present")).kind else {
            panic!("{path} is not a file")
        };
        let mut h = Sha256::new();
        let mut total = 0u64;
        for b in blocks {
            let name = b.id_hex();
            let data =
                std::fs::read(chunks.join(&name)).unwrap_or_else(|e| panic!("chunk {name}: {e}"));
            let plain = decode_chunk(b, &data).unwrap_or_else(|e| panic!("{path}: {e}"));
            total += plain.len() as u64;
            h.update(&plain);
            used.insert(name);
            refs += 1;
        }
        assert_eq!(total, *size, "{path} decoded length");
        assert_eq!(
            hex::encode(h.finalize()),
            e["sha256"].as_str().expect("sha256"),
            "{path} content"
        );
    }
    assert_eq!(refs, 276, "chunk references");
    assert_eq!(used.len(), 274, "distinct chunks");
}

#[test]
fn metadata_values_and_exact_text() {
    let f = open("fixture.flist");
    let m = &f.metadata;
    assert_eq!(
        m.backend().expect("valid"),
        Some(Backend::zdb("127.0.0.1", 9901, None))
    );
    assert_eq!(
        m.entrypoint().expect("valid"),
        Some(vec!["/bin/sh".into(), "-c".into(), "echo hi".into()])
    );
    let env = m.environ().expect("valid").expect("present");
    assert_eq!(
        env.iter().collect::<Vec<_>>(),
        [
            (&"PATH".to_string(), &"/usr/bin:/bin".to_string()),
            (&"LANG".to_string(), &"C.UTF-8".to_string())
        ]
    );
    assert_eq!(
        m.ports().expect("valid").expect("present").get("tcp/80"),
        Some(&8080)
    );
    assert_eq!(
        m.volumes().expect("valid").expect("present").get("/data"),
        Some(&Volume {
            host: Some("/mnt/data".into())
        })
    );
    assert_eq!(
        m.readme().expect("valid"),
        Some(Readme {
            readme: "# Fixture\nA test flist.\n1".into(),
            license: Some("Apache-2.0".into())
        })
    );
    assert_eq!(m.get("custom-key"), Some("some-value"));

    // Setting the same values through the typed setters gives the reference's bytes.
    let mut again = flist_format::Metadata::new();
    again.set_backend(&m.backend().expect("valid").expect("present"));
    again.set_entrypoint(&m.entrypoint().expect("valid").expect("present"));
    again.set_environ(&env);
    again.set_ports(&m.ports().expect("valid").expect("present"));
    again.set_volumes(&m.volumes().expect("valid").expect("present"));
    again.set_readme(&m.readme().expect("valid").expect("present"));
    again.set("custom-key", "some-value");
    for (k, v) in m.iter() {
        assert_eq!(again.get(k), Some(v), "metadata {k} bytes");
    }
    assert_eq!(again.len(), m.len());
    assert_eq!(
        flist_format::Flist::open_metadata(fixture("fixture.flist")).expect("metadata"),
        *m
    );
}

#[test]
fn find_output_equals_the_reference() {
    let f = open("fixture.flist");
    assert_eq!(
        f.find_response(),
        json("fixture.zflist-find.json")["response"]
    );
    let ab = open("merge-ab.flist");
    assert_eq!(
        ab.find_response(),
        json("merge-ab.zflist-find.json")["response"]
    );
}

#[test]
fn stored_order_is_what_find_walks() {
    // The reference stores directories first in each Dir row; find walks the stored order.
    let f = open("fixture.flist");
    let root: Vec<&str> = f.tree.children(Tree::ROOT).map(|(n, _)| n).collect();
    assert_eq!(&root[..4], ["dir", "emptydir", "many", "abs-link"]);
}

#[test]
fn merge_a_then_b_equals_merge_ab() {
    let a = open("merge-a.flist");
    let b = open("merge-b.flist");
    let ab = open("merge-ab.flist");
    let mut t = Tree::new(a.tree.node(Tree::ROOT).meta.clone());
    merge(&mut t, &a.tree);
    merge(&mut t, &b.tree);
    // The reference's `init` root and directory times come from the session, not the inputs.
    let opts = DiffOptions {
        ignore_dir_mtime: true,
        ignore_ctime: true,
        ..Default::default()
    };
    let d = diff(&t, &ab.tree, &opts);
    assert!(d.is_empty(), "{d:#?}");
    assert_eq!(
        flist_format::find_response(&t),
        json("merge-ab.zflist-find.json")["response"]
    );
    // /bin/tool is A's
    let tool = t.node(t.lookup("/bin/tool").expect("tool"));
    assert_eq!(tool.kind.size(), 15);
    assert_eq!(
        tool.kind,
        a.tree.node(a.tree.lookup("bin/tool").expect("a tool")).kind
    );
}

#[test]
fn merge_never_duplicates_names_file_against_dir() {
    use flist_format::Meta;
    let m = Meta::root(0o755, 0);
    let mut base = Tree::new(m.clone());
    base.insert(
        Tree::ROOT,
        "x",
        m.clone(),
        Kind::File {
            size: 1,
            blocks: vec![],
        },
    )
    .expect("insert");
    let mut other = Tree::new(m.clone());
    let x = other
        .insert(Tree::ROOT, "x", m.clone(), Kind::empty_dir())
        .expect("insert");
    other
        .insert(
            x,
            "inner",
            m.clone(),
            Kind::File {
                size: 2,
                blocks: vec![],
            },
        )
        .expect("insert");
    other.mkdir_p("y/z", &m).expect("mkdir");
    merge(&mut base, &other);
    let names: Vec<&str> = base.children(Tree::ROOT).map(|(n, _)| n).collect();
    assert_eq!(names, ["x", "y"]);
    assert!(matches!(
        base.node(base.lookup("x").expect("x")).kind,
        Kind::File { size: 1, .. }
    ));
    assert!(base.lookup("y/z").is_some());
    // and the other way round: a present directory wins over a file
    let mut base2 = other.clone();
    let mut file_side = Tree::new(m.clone());
    file_side
        .insert(
            Tree::ROOT,
            "x",
            m,
            Kind::File {
                size: 9,
                blocks: vec![],
            },
        )
        .expect("insert");
    merge(&mut base2, &file_side);
    assert!(base2.node(base2.lookup("x").expect("x")).kind.is_dir());
    assert!(base2.lookup("x/inner").is_some());
}

#[test]
fn container_members_are_found_by_basename_in_plain_tar_too() {
    // Re-pack the fixture's database as an uncompressed tar with extra members.
    let mut gz =
        flate2::read::GzDecoder::new(std::fs::File::open(fixture("fixture.flist")).expect("open"));
    let mut raw = Vec::new();
    gz.read_to_end(&mut raw).expect("gunzip");
    let f = Flist::from_reader(&raw[..], "plain tar").expect("plain tar accepted");
    assert_eq!(f.tree.len(), 323);
}

/// `reader::lookup` finds every entry of the reference fixture by its path, with the same
/// metadata and kind as the whole tree read, reading only the rows on its way; missing
/// paths, paths through a file and `.`/`..` components find nothing.
#[test]
fn lookup_by_path_matches_the_whole_tree() {
    let f = open("fixture.flist");
    let db = flist_format::reader::extract_database(
        std::fs::File::open(fixture("fixture.flist")).expect("fixture"),
        "fixture",
    )
    .expect("database");
    let conn = flist_format::reader::open_database(db.path()).expect("open");
    let lookup = |p: &str| flist_format::reader::lookup(&conn, p, "fixture").expect("lookup");
    let mut checked = 0;
    for id in f.tree.walk() {
        let path = f.tree.path_of(id);
        let (meta, kind) = lookup(&path).unwrap_or_else(|| panic!("{path} not found"));
        let n = f.tree.node(id);
        assert_eq!(meta, n.meta, "{path}");
        match (&kind, &n.kind) {
            (Kind::Dir { size: a, .. }, Kind::Dir { size: b, .. }) => assert_eq!(a, b, "{path}"),
            (a, b) => assert_eq!(a, b, "{path}"),
        }
        checked += 1;
    }
    assert!(checked > 10, "{checked}");
    let file = f
        .tree
        .walk()
        .map(|id| f.tree.path_of(id))
        .find(|p| {
            matches!(
                f.tree.node(f.tree.lookup(p).expect("walked")).kind,
                Kind::File { .. }
            )
        })
        .expect("a file");
    assert_eq!(lookup(&format!("{file}/below")), None);
    assert_eq!(lookup("/no/such/path"), None);
    assert_eq!(lookup(&format!("/../{file}")), None);
    assert_eq!(lookup(&format!("/./{file}")), None);
    assert!(matches!(lookup("/"), Some((_, Kind::Dir { .. }))));
}
