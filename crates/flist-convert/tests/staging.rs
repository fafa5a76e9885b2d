//! The conversion tree is staged on disk (a temporary SQLite table) and written one
//! directory at a time: members in any order, directory metadata after the children,
//! duplicates (the later wins), type changes removing subtrees, hard links and deep paths
//! give the tree extraction would, and the streamed flist is the very flist the in-memory
//! writer makes of the same tree.

use std::collections::BTreeMap;
use std::sync::Arc;

use flist_convert::{archive_to_tree, convert, ConvertError, ConvertOptions, Source};
use flist_format::codec::{encode_chunk, CHUNK_SIZE};
use flist_format::{Block, Flist, Kind, Metadata, Tree};
use flist_store::{BlockingStore, DirStore};

/// A tar member as the tests build them.
enum M<'a> {
    File(&'a str, Vec<u8>, u32, u32),
    Dir(&'a str, u32, u32),
    Symlink(&'a str, &'a str),
    Hard(&'a str, &'a str),
}

fn archive(members: &[M<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for m in members {
        let mut h = tar::Header::new_gnu();
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_size(0);
        match m {
            M::File(p, data, mode, mtime) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_mtime(u64::from(*mtime));
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, data.as_slice()).expect("file");
            }
            M::Dir(p, mode, mtime) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_mtime(u64::from(*mtime));
                b.append_data(&mut h, p, std::io::empty()).expect("dir");
            }
            M::Symlink(p, t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_mtime(7);
                b.append_link(&mut h, p, t).expect("symlink");
            }
            M::Hard(p, t) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                h.set_mtime(7);
                b.append_link(&mut h, p, t).expect("hard link");
            }
        }
    }
    b.into_inner().expect("tar")
}

fn blocks_of(data: &[u8]) -> Vec<Block> {
    data.chunks(CHUNK_SIZE)
        .map(|c| encode_chunk(c).block)
        .collect()
}

fn tree_of(bytes: &[u8]) -> Tree {
    archive_to_tree(bytes, &ConvertOptions::default())
        .unwrap_or_else(|e| panic!("converts: {e}"))
        .tree
}

fn err_of(bytes: &[u8]) -> ConvertError {
    match archive_to_tree(bytes, &ConvertOptions::default()) {
        Ok(_) => panic!("conversion should fail"),
        Err(e) => e,
    }
}

/// Every entry as `path -> (kind, mode, mtime, size, blocks or target)`, in walk order.
type Listing = Vec<(String, &'static str, u32, u32, u64, String)>;

fn listing(t: &Tree) -> Listing {
    t.walk()
        .map(|id| {
            let n = t.node(id);
            let extra = match &n.kind {
                Kind::File { blocks, .. } => blocks
                    .iter()
                    .map(|b| b.id_hex())
                    .collect::<Vec<_>>()
                    .join(","),
                Kind::Symlink { target } => target.clone(),
                _ => String::new(),
            };
            (
                t.path_of(id),
                n.kind.type_name(),
                n.meta.mode,
                n.meta.mtime,
                n.kind.size(),
                extra,
            )
        })
        .collect()
}

fn children(t: &Tree, path: &str) -> Vec<String> {
    t.children(t.lookup(path).unwrap_or_else(|| panic!("{path} missing")))
        .map(|(n, _)| n.to_string())
        .collect()
}

/// A deterministic shuffle (xorshift).
fn shuffle<T>(v: &mut [T], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

fn content(i: usize) -> Vec<u8> {
    match i % 1000 {
        // a few files of two chunks
        0 => (0..CHUNK_SIZE + 1000).map(|b| (b * 7 + i) as u8).collect(),
        // some empty files
        1..=9 => Vec::new(),
        _ => format!("file number {i}\n").into_bytes(),
    }
}

#[test]
fn twelve_thousand_shuffled_members_give_the_model_tree_and_the_same_flist() {
    const FILES: usize = 12_000;
    let paths: Vec<String> = (0..FILES)
        .map(|i| format!("d{:02}/s{}/f{i:05}", i % 40, i % 7))
        .collect();
    let mut order: Vec<usize> = (0..FILES).collect();
    shuffle(&mut order, 0x5eed);
    let mut members: Vec<M<'_>> = Vec::new();
    // expected: path -> (type, mode, mtime, size, extra)
    let mut model: BTreeMap<String, (&str, u32, u32, u64, String)> = BTreeMap::new();
    let hashes = |d: &[u8]| {
        blocks_of(d)
            .iter()
            .map(|b| b.id_hex())
            .collect::<Vec<_>>()
            .join(",")
    };
    for &i in &order {
        let data = content(i);
        model.insert(
            paths[i].clone(),
            (
                "regular",
                0o644,
                1000 + i as u32,
                data.len() as u64,
                hashes(&data),
            ),
        );
        members.push(M::File(&paths[i], data, 0o644, 1000 + i as u32));
        if i % 97 == 0 {
            // a duplicate with other content, mode and time: the later member wins
            let data = format!("replacement {i}").into_bytes();
            model.insert(
                paths[i].clone(),
                ("regular", 0o600, 5, data.len() as u64, hashes(&data)),
            );
            members.push(M::File(&paths[i], data, 0o600, 5));
        }
    }
    // hard links and symlinks to files placed above
    for i in (0..FILES).step_by(499) {
        let link = format!("links/h{i:05}");
        let target = model[&paths[i]].clone();
        model.insert(link.clone(), target);
        members.push(M::Hard(Box::leak(link.into_boxed_str()), &paths[i]));
        let sym = format!("links/s{i:05}");
        model.insert(
            sym.clone(),
            (
                "symlink",
                0o777,
                7,
                paths[i].len() as u64 + 3,
                format!("../{}", paths[i]),
            ),
        );
        members.push(M::Symlink(
            Box::leak(sym.into_boxed_str()),
            Box::leak(format!("../{}", paths[i]).into_boxed_str()),
        ));
    }
    // directory metadata after the children: the members' metadata wins over the
    // implicit directories' root:root 0755
    for d in 0..40 {
        let p: &str = Box::leak(format!("d{d:02}").into_boxed_str());
        members.push(M::Dir(p, 0o750, 3000 + d));
        model.insert(
            p.to_string(),
            ("directory", 0o750, 3000 + d, 4096, String::new()),
        );
    }
    let bytes = archive(&members);
    let t = tree_of(&bytes);

    // every entry of the model, with its metadata and content
    let got: BTreeMap<String, (&str, u32, u32, u64, String)> = listing(&t)
        .into_iter()
        .map(|(p, k, mode, mtime, size, extra)| (p, (k, mode, mtime, size, extra)))
        .collect();
    for (p, want) in &model {
        assert_eq!(got.get(p), Some(want), "{p}");
    }
    // the implicit directories: root:root 0755
    let s = t.node(t.lookup("d03/s2").expect("d03/s2"));
    assert_eq!(
        (s.meta.mode, s.meta.uid, &s.meta.uname[..]),
        (0o755, 0, "root")
    );
    // nothing else: the model's entries, their implicit parents (40 × 7 + links) and root
    assert_eq!(t.len(), model.len() + 40 * 7 + 1 + 1);
    // children in the reference order: directories first, then by name
    let top = children(&t, "");
    assert_eq!(top.first().map(String::as_str), Some("d00"));
    assert_eq!(top.last().map(String::as_str), Some("links"));
    let in_dir = children(&t, "d05/s3");
    let mut sorted = in_dir.clone();
    sorted.sort();
    assert_eq!(in_dir, sorted);
    assert!(in_dir.len() > 30);

    // the streamed flist is the flist the tree writer makes of the same tree
    let tmp = tempfile::tempdir().expect("tmp");
    let store = BlockingStore::on_private_runtime(Arc::new(
        DirStore::new(tmp.path().join("store")).expect("store"),
    ))
    .expect("runtime");
    let mut md = Metadata::new();
    md.set("entrypoint", "/bin/true");
    let streamed = tmp.path().join("streamed.flist");
    let mut converted = convert(
        Source::archive(bytes.as_slice()),
        Some(&store),
        &ConvertOptions::default(),
    )
    .expect("convert");
    converted.metadata = md.clone();
    converted.write_flist(&streamed).expect("write_flist");
    let stats = converted.stats;
    assert_eq!(stats.files as usize, FILES + FILES.div_ceil(499));
    assert_eq!(stats.symlinks as usize, FILES.div_ceil(499));
    assert_eq!(stats.directories, 40 + 40 * 7 + 1);
    assert_eq!(stats.hard_links as usize, FILES.div_ceil(499));
    let from_tree = tmp.path().join("tree.flist");
    Flist {
        tree: t.clone(),
        metadata: md.clone(),
    }
    .write(&from_tree)
    .expect("write");
    assert_eq!(
        std::fs::read(&streamed).expect("streamed"),
        std::fs::read(&from_tree).expect("from tree"),
        "same bytes"
    );
    let back = Flist::open(&streamed).expect("open");
    assert_eq!(listing(&back.tree), listing(&t));
    assert_eq!(back.metadata.get("entrypoint"), Some("/bin/true"));
}

#[test]
fn type_changes_remove_subtrees_and_stale_parents_are_not_reused() {
    let members = [
        // a subtree replaced by a symlink, then by a directory again: empty but for later
        M::File("x/y/z", b"z".to_vec(), 0o644, 1),
        M::File("x/y/w/deep", b"deep".to_vec(), 0o644, 1),
        M::Symlink("x/y", "elsewhere"),
        M::Dir("x/y", 0o700, 9),
        M::File("x/y/new", b"new".to_vec(), 0o644, 1),
        // k/l is cached as a parent, then k becomes a file and a directory again: k/l is a
        // new implicit directory, not the old one
        M::File("k/l/f", b"f".to_vec(), 0o644, 1),
        M::File("k", b"k is a file".to_vec(), 0o644, 1),
        M::Dir("k", 0o755, 2),
        M::File("k/l/g", b"g".to_vec(), 0o644, 1),
        // a directory over a directory keeps the children and takes the metadata
        M::File("p/q", b"q".to_vec(), 0o644, 1),
        M::Dir("p", 0o711, 5),
        // the root described after its entries
        M::Dir("./", 0o700, 42),
        // a file over a file (duplicate) and a directory over a file
        M::File("dup", b"one".to_vec(), 0o644, 1),
        M::File("dup", b"two!".to_vec(), 0o600, 2),
        M::File("fd", b"file".to_vec(), 0o644, 1),
        M::Dir("fd", 0o755, 3),
        M::File("fd/in", b"in".to_vec(), 0o644, 1),
    ];
    let t = tree_of(&archive(&members));
    assert_eq!(children(&t, "x/y"), ["new"]);
    assert!(t.lookup("x/y/w/deep").is_none());
    assert_eq!(t.node(t.lookup("x/y").expect("x/y")).meta.mode, 0o700);
    assert_eq!(children(&t, "k"), ["l"]);
    assert_eq!(children(&t, "k/l"), ["g"]);
    let p = t.node(t.lookup("p").expect("p"));
    assert_eq!((p.meta.mode, p.meta.mtime), (0o711, 5));
    assert_eq!(children(&t, "p"), ["q"]);
    let root = t.node(Tree::ROOT);
    assert_eq!((root.meta.mode, root.meta.mtime), (0o700, 42));
    let dup = t.node(t.lookup("dup").expect("dup"));
    assert_eq!((dup.meta.mode, dup.kind.size()), (0o600, 4));
    assert_eq!(children(&t, "fd"), ["in"]);
    assert_eq!(children(&t, ""), ["fd", "k", "p", "x", "dup"]);
    // nothing orphaned: every node is reachable, and only those
    assert_eq!(t.walk().count(), t.len());
    assert_eq!(t.len(), 12);

    // beneath a file or a symlink that replaced a cached directory: refused
    let e = err_of(&archive(&[
        M::File("m/n/f1", b"1".to_vec(), 0o644, 1),
        M::File("m/n", b"now a file".to_vec(), 0o644, 1),
        M::File("m/n/f2", b"2".to_vec(), 0o644, 1),
    ]));
    assert!(
        matches!(&e, ConvertError::NotADirectory { path, parent } if path == "m/n/f2" && parent == "m/n"),
        "{e}"
    );
    let e = err_of(&archive(&[
        M::File("m/n/f1", b"1".to_vec(), 0o644, 1),
        M::Symlink("m/n", "/etc"),
        M::File("m/n/passwd", b"2".to_vec(), 0o644, 1),
    ]));
    assert!(
        matches!(&e, ConvertError::BeneathSymlink { symlink, .. } if symlink == "m/n"),
        "{e}"
    );
}

#[test]
fn hard_links_copy_the_target_at_link_time_and_deep_paths_work() {
    let deep: String = (0..150).map(|i| format!("l{i}/")).collect();
    let deep_file = format!("{deep}bottom");
    let big: Vec<u8> = (0..3 * CHUNK_SIZE + 5).map(|i| (i % 251) as u8).collect();
    let members = [
        M::File(&deep_file, big.clone(), 0o640, 11),
        M::Hard("top-link", &deep_file),
        // the target replaced afterwards: the link keeps the content it was made from
        M::File(&deep_file, b"small".to_vec(), 0o644, 12),
        M::Symlink("sym", "top-link"),
        M::Hard("sym-link", "sym"),
    ];
    let t = tree_of(&archive(&members));
    let link = t.node(t.lookup("top-link").expect("top-link"));
    match &link.kind {
        Kind::File { size, blocks } => {
            assert_eq!(*size, big.len() as u64);
            assert_eq!(blocks, &blocks_of(&big));
        }
        k => panic!("top-link is {}", k.type_name()),
    }
    assert_eq!((link.meta.mode, link.meta.mtime), (0o640, 11));
    let bottom = t.node(t.lookup(&deep_file).expect("deep file"));
    assert_eq!(bottom.kind.size(), 5);
    assert_eq!(t.depth(t.lookup(&deep_file).expect("deep")), 151);
    assert!(matches!(
        &t.node(t.lookup("sym-link").expect("sym-link")).kind,
        Kind::Symlink { target } if target == "top-link"
    ));
    // a link to a member that is not there
    let e = err_of(&archive(&[M::Hard("a", "missing/b")]));
    assert!(
        matches!(e, ConvertError::HardLinkTargetMissing { .. }),
        "{e}"
    );
    let e = err_of(&archive(&[M::Dir("d", 0o755, 1), M::Hard("a", "d")]));
    assert!(matches!(e, ConvertError::HardLinkToDirectory { .. }), "{e}");
}
