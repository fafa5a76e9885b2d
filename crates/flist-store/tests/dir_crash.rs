//! `dir://` durability contract: a writer killed at any moment (SIGKILL, mid-batch) never
//! leaves a partial chunk under a chunk's final name, and the store stays usable.
//!
//! The test re-runs its own executable as the writer (the child role is selected by an
//! environment variable), kills it after a varying delay, and checks every file of the
//! store: each chunk's key names its value (seed and length), so a short or empty file
//! under a final name is caught.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use flist_store::{DirStore, SetOutcome, Store};

const CHILD_ENV: &str = "FLIST_STORE_CRASH_WRITER";
const TEST_NAME: &str = "killed_writer_never_leaves_a_partial_chunk";

/// 1 MiB of noise shared by every value (making a value costs a copy, so the writer spends
/// its time writing and a kill lands mid-write).
fn noise() -> &'static [u8] {
    static NOISE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    NOISE.get_or_init(|| {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..1 << 17)
            .flat_map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()
            })
            .collect()
    })
}

/// The length of chunk `seed`'s value: 64 KiB to 1 MiB.
fn len_of(seed: u64) -> usize {
    64 * 1024 + (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20) as usize % (960 * 1024)
}

/// Chunk `seed`: its key (seed and length) and its value (the seed, then noise).
fn chunk(seed: u64) -> (Vec<u8>, Bytes) {
    let len = len_of(seed);
    let mut v = noise()[..len].to_vec();
    v[..8].copy_from_slice(&seed.to_le_bytes());
    let mut key = seed.to_be_bytes().to_vec();
    key.extend_from_slice(&(len as u64).to_be_bytes());
    (key, Bytes::from(v))
}

/// The writer: batches of chunks from `start` on, several batches in flight, until killed.
fn writer(root: &Path, start: u64) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = DirStore::new(root).unwrap();
    rt.block_on(async {
        let mut seed = start;
        loop {
            let mut tasks = Vec::new();
            for _ in 0..4 {
                let items: Vec<(Vec<u8>, Bytes)> = (seed..seed + 16).map(chunk).collect();
                seed += 16;
                let s = store.clone();
                tasks.push(tokio::spawn(async move { s.set_many(&items).await }));
            }
            for t in tasks {
                t.await.unwrap().unwrap();
            }
            // Signal progress so the parent knows some chunks are complete.
            println!("wrote up to {seed}");
        }
    });
}

/// Checks every file of the store; returns the number of whole chunks.
fn check_store(root: &Path) -> usize {
    let mut whole = 0;
    for dir in std::fs::read_dir(root).unwrap() {
        let dir = dir.unwrap().path();
        assert!(dir.is_dir(), "only fan-out directories at the top: {dir:?}");
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap();
            let name = f.file_name().into_string().unwrap();
            let Ok(key) = hex::decode(&name) else {
                // A temporary file of the named-file fallback: never a chunk name.
                assert!(name.starts_with(".tmp-"), "unexpected file {name}");
                continue;
            };
            let value = std::fs::read(f.path()).unwrap();
            let seed = u64::from_be_bytes(key[..8].try_into().unwrap());
            assert_eq!(
                value,
                chunk(seed).1,
                "chunk {name} is partial: {} bytes",
                value.len()
            );
            whole += 1;
        }
    }
    whole
}

#[test]
fn killed_writer_never_leaves_a_partial_chunk() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        let (root, start) = spec.split_once('|').unwrap();
        writer(Path::new(root), start.parse().unwrap());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let exe = std::env::current_exe().unwrap();
    for round in 0..6u64 {
        let mut child = Command::new(&exe)
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, format!("{}|{}", root.display(), round * 100_000))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Killed at different points of its batches.
        std::thread::sleep(Duration::from_millis(150 + 70 * round));
        child.kill().unwrap();
        child.wait().unwrap();
        check_store(&root);
    }
    let whole = check_store(&root);
    assert!(whole > 0, "the writers stored nothing before being killed");

    // The store stays usable: a chunk written before a kill is reported present, a new
    // one is written.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = DirStore::new(&root).unwrap();
    let (k0, v0) = chunk(0);
    let (kn, vn) = chunk(99_999_999);
    let outcomes = rt
        .block_on(store.set_many(&[(k0.clone(), v0.clone()), (kn.clone(), vn.clone())]))
        .unwrap();
    assert_eq!(outcomes[1], SetOutcome::Written);
    let got = rt.block_on(store.get_many(&[k0, kn])).unwrap();
    assert_eq!(got, [Some(v0), Some(vn)]);
    check_store(&root);
}
