//! A small source tree for end-to-end tests: written to disk, packed as a `.tar.gz`, and
//! compared with what an extraction restored.

use std::collections::BTreeMap;
use std::path::Path;

use crate::archive::{gzip, RawTar};

/// One member of a [`sample_tree`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Member {
    /// A directory.
    Dir,
    /// A regular file and its bytes.
    File(Vec<u8>),
    /// A symlink and its target.
    Symlink(String),
}

/// A tree of a few directories, files (one spanning several 512 KiB chunks, one repeated
/// for deduplication, one empty) and a symlink.
pub fn sample_tree() -> BTreeMap<String, Member> {
    let mut big = Vec::with_capacity(1_300_000);
    let mut x: u32 = 0x1234_5678;
    while big.len() < 1_300_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        big.extend_from_slice(&x.to_le_bytes());
    }
    let mut m = BTreeMap::new();
    m.insert("etc".to_string(), Member::Dir);
    m.insert(
        "etc/app.conf".to_string(),
        Member::File(b"listen = 8080\n".to_vec()),
    );
    m.insert("bin".to_string(), Member::Dir);
    m.insert("bin/tool".to_string(), Member::File(big));
    m.insert(
        "bin/tool-link".to_string(),
        Member::Symlink("tool".to_string()),
    );
    m.insert("data".to_string(), Member::Dir);
    m.insert("data/empty".to_string(), Member::File(Vec::new()));
    m.insert(
        "data/copy-1.txt".to_string(),
        Member::File(b"same content\n".repeat(100)),
    );
    m.insert(
        "data/copy-2.txt".to_string(),
        Member::File(b"same content\n".repeat(100)),
    );
    m
}

/// The tree as a gzip'd tar archive (directories before their contents).
pub fn tar_gz(tree: &BTreeMap<String, Member>) -> Vec<u8> {
    let mut t = RawTar::new();
    for (p, m) in tree {
        match m {
            Member::Dir => t.dir(&format!("{p}/")),
            Member::File(d) => t.file(p, d),
            Member::Symlink(target) => t.symlink(p, target),
        };
    }
    gzip(&t.finish())
}

/// Reads a directory on disk back as a tree (panics on I/O errors: test helper).
pub fn read_tree(root: &Path) -> BTreeMap<String, Member> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Member>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for p in entries {
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .to_string();
            let md = std::fs::symlink_metadata(&p).expect("metadata");
            if md.file_type().is_symlink() {
                let t = std::fs::read_link(&p).expect("readlink");
                out.insert(rel, Member::Symlink(t.to_string_lossy().to_string()));
            } else if md.is_dir() {
                out.insert(rel, Member::Dir);
                walk(root, &p, out);
            } else {
                out.insert(rel, Member::File(std::fs::read(&p).expect("read")));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Deterministic pseudo-random bytes (xorshift64 from `seed`): incompressible test values
/// that differ per seed.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
