//! `dir://` store: layout, idempotent and atomic writes, batches, the blocking facade.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::sync::Arc;

use bytes::Bytes;
use flist_store::{BlockingStore, DirStore, SetOutcome, Store, StoreError};

fn key(i: u32) -> Vec<u8> {
    let mut k = i.to_be_bytes().to_vec();
    k.extend_from_slice(&(i.wrapping_mul(2_654_435_761)).to_le_bytes());
    k.rotate_left((i % 8) as usize);
    k
}

fn all_files(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for d in std::fs::read_dir(root).unwrap() {
        let d = d.unwrap().path();
        if d.is_dir() {
            for f in std::fs::read_dir(&d).unwrap() {
                out.push(f.unwrap().path());
            }
        } else {
            out.push(d);
        }
    }
    out
}

#[tokio::test]
async fn layout_roundtrip_and_idempotent_set() {
    let tmp = tempfile::tempdir().unwrap();
    let store = flist_store::open(&format!("dir://{}", tmp.path().display()))
        .await
        .unwrap();
    let k = vec![0xab, 0xcd, 0x01];
    assert_eq!(store.get(&k).await.unwrap(), None);
    assert!(!store.exists(&k).await.unwrap());
    assert_eq!(
        store.set(&k, Bytes::from_static(b"hello")).await.unwrap(),
        SetOutcome::Written
    );
    assert_eq!(
        store.set(&k, Bytes::from_static(b"hello")).await.unwrap(),
        SetOutcome::AlreadyPresent
    );
    assert_eq!(
        std::fs::read(tmp.path().join("ab/abcd01")).unwrap(),
        b"hello"
    );
    assert!(store.exists(&k).await.unwrap());
    assert_eq!(
        store.get(&k).await.unwrap().unwrap(),
        Bytes::from_static(b"hello")
    );
    // Empty values are values.
    assert_eq!(
        store.set(&[0x00], Bytes::new()).await.unwrap(),
        SetOutcome::Written
    );
    assert_eq!(store.get(&[0x00]).await.unwrap(), Some(Bytes::new()));
    // Required reads name store and key.
    let err = store.get_required(&[0x99, 0x98]).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("9998") && msg.contains(&tmp.path().display().to_string()),
        "{msg}"
    );
    // Empty keys are refused, not mapped to a weird path.
    assert!(matches!(
        store.set(&[], Bytes::from_static(b"x")).await.unwrap_err(),
        StoreError::InvalidKey { .. }
    ));
}

#[tokio::test]
async fn batches_roundtrip_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DirStore::new(tmp.path()).unwrap();
    let items: Vec<(Vec<u8>, Bytes)> = (0..2000)
        .map(|i| {
            (
                key(i),
                Bytes::from(format!("value-{i}").repeat(i as usize % 7 + 1)),
            )
        })
        .collect();
    let keys: Vec<Vec<u8>> = items.iter().map(|(k, _)| k.clone()).collect();
    let half = &items[..1000];
    assert!(store
        .set_many(half)
        .await
        .unwrap()
        .iter()
        .all(|o| *o == SetOutcome::Written));
    let outcomes = store.set_many(&items).await.unwrap();
    for (i, o) in outcomes.iter().enumerate() {
        let want = if i < 1000 {
            SetOutcome::AlreadyPresent
        } else {
            SetOutcome::Written
        };
        assert_eq!(*o, want, "item {i}");
    }
    let mut probe = keys.clone();
    probe.push(vec![0xee, 0xee]);
    let ex = store.exists_many(&probe).await.unwrap();
    assert!(ex[..2000].iter().all(|e| *e) && !ex[2000]);
    let got = store.get_many(&probe).await.unwrap();
    for (i, (k, v)) in items.iter().enumerate() {
        assert_eq!(got[i].as_ref(), Some(v), "key {}", hex::encode(k));
    }
    assert_eq!(got[2000], None);
    assert!(matches!(
        store.get_many_required(&probe).await.unwrap_err(),
        StoreError::NotFound { key, .. } if key == "eeee"
    ));
    // A file removed behind the store's back is reported missing.
    std::fs::remove_file(store.path_of(&keys[5]).unwrap()).unwrap();
    assert!(!store.exists_many(&keys[..10]).await.unwrap()[5]);
    assert!(store.get(&keys[5]).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_of_same_keys_leave_no_temp_files() {
    let tmp = tempfile::tempdir().unwrap();
    let items: Arc<Vec<(Vec<u8>, Bytes)>> = Arc::new(
        (0..300)
            .map(|i| (key(i), Bytes::from(vec![i as u8; 4096 + i as usize])))
            .collect(),
    );
    let mut tasks = Vec::new();
    for _ in 0..8 {
        // Separate store instances on the same directory, as separate processes would have.
        let store = DirStore::new(tmp.path()).unwrap();
        let items = items.clone();
        tasks.push(tokio::spawn(async move {
            store.set_many(&items).await.unwrap()
        }));
    }
    let mut written = vec![0usize; items.len()];
    for t in tasks {
        for (i, o) in t.await.unwrap().into_iter().enumerate() {
            if o == SetOutcome::Written {
                written[i] += 1;
            }
        }
    }
    // Exactly one writer published each key (hard links refuse to replace).
    assert!(written.iter().all(|w| *w == 1), "{written:?}");
    let files = all_files(tmp.path());
    assert_eq!(files.len(), items.len());
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(!name.starts_with(".tmp"), "temp file left: {}", f.display());
        assert_eq!(
            &name[..2],
            f.parent().unwrap().file_name().unwrap().to_str().unwrap()
        );
    }
    let store = DirStore::new(tmp.path()).unwrap();
    let keys: Vec<Vec<u8>> = items.iter().map(|(k, _)| k.clone()).collect();
    let got = store.get_many(&keys).await.unwrap();
    for (i, (_, v)) in items.iter().enumerate() {
        assert_eq!(got[i].as_ref(), Some(v));
    }
}

#[test]
fn failed_write_leaves_no_temp_file_and_names_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let store = BlockingStore::open(&format!("dir://{}", tmp.path().display())).unwrap();
    // Make the shard directory a file: the write cannot create `ab/`.
    std::fs::write(tmp.path().join("ab"), b"not a dir").unwrap();
    let err = store
        .set(&[0xab, 0x01], Bytes::from_static(b"v"))
        .unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err}");
    assert!(err.to_string().contains("ab01"), "{err}");
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}

#[test]
fn blocking_store_from_plain_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let store = BlockingStore::open(&format!("dir://{}", tmp.path().display())).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let store = store.clone();
            s.spawn(move || {
                let items: Vec<(Vec<u8>, Bytes)> = (0..50u8)
                    .map(|i| (vec![t, i, 1], Bytes::from(vec![t ^ i; 10])))
                    .collect();
                let keys: Vec<Vec<u8>> = items.iter().map(|(k, _)| k.clone()).collect();
                store.set_many(items.clone()).unwrap();
                assert_eq!(
                    store.get_many_required(&keys).unwrap(),
                    items.iter().map(|x| x.1.clone()).collect::<Vec<_>>()
                );
                assert!(store.exists(&[t, 0, 1]).unwrap());
            });
        }
    });
    // Wrapping a store opened on a caller-owned runtime.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let inner: Arc<dyn Store> = Arc::new(DirStore::new(tmp.path()).unwrap());
    let wrapped = BlockingStore::new(inner, rt.handle().clone());
    assert_eq!(
        wrapped.get(&[1, 2, 1]).unwrap().unwrap(),
        Bytes::from(vec![3u8; 10])
    );
}

#[test]
fn pending_batches_run_side_by_side_and_report_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let store =
        BlockingStore::on_private_runtime(Arc::new(DirStore::new(tmp.path()).unwrap())).unwrap();
    let batch = |b: u32| -> Vec<(Vec<u8>, Bytes)> {
        (0..40u32)
            .map(|i| (key(b * 1000 + i), Bytes::from(vec![(b + i) as u8; 100])))
            .collect()
    };
    // Three writes in flight at once, the third repeating the first's keys.
    let pending: Vec<_> = [0, 1, 0]
        .iter()
        .map(|&b| store.start_set_many(batch(b)))
        .collect();
    let mut written = 0;
    let mut present = 0;
    for p in pending {
        for o in p.wait().unwrap() {
            match o {
                SetOutcome::Written => written += 1,
                SetOutcome::AlreadyPresent => present += 1,
            }
        }
    }
    // Concurrent writers of one key: exactly one of them writes it.
    assert_eq!((written, present), (80, 40));
    let mut keys: Vec<Vec<u8>> = batch(1).into_iter().map(|(k, _)| k).collect();
    keys.push(key(999_999));
    let exists = store.start_exists_many(keys.clone());
    let got = store.start_get_many(keys.clone());
    let exists = exists.wait().unwrap();
    assert_eq!(exists.iter().filter(|e| **e).count(), 40);
    assert!(!exists[40]);
    let got = got.wait().unwrap();
    assert_eq!(got[3].as_deref(), Some(&vec![4u8; 100][..]));
    assert_eq!(got[40], None);
    // Async code over the store (a check then a write) as one pending operation.
    let chained = store.start(|s| async move {
        let k = vec![0xee, 1];
        let before = s.exists(&k).await?;
        s.set(&k, Bytes::from_static(b"v")).await?;
        Ok((before, s.exists(&k).await?))
    });
    assert_eq!(chained.wait().unwrap(), (false, true));
}

#[test]
fn pending_fails_when_the_runtime_is_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let handle = rt.handle().clone();
    let store = BlockingStore::new(Arc::new(DirStore::new(tmp.path()).unwrap()), handle);
    drop(rt);
    let err = store.start_get_many(vec![vec![1]]).wait().unwrap_err();
    assert!(err.to_string().contains("runtime stopped"), "{err}");
}

/// Values around the size of the first read come back whole, one at a time, in small batches
/// (read inline) and in big ones (spread over the blocking pool), with missing keys in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_of_every_size_come_back_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DirStore::new(tmp.path()).unwrap();
    let sizes = [
        0usize,
        1,
        4096,
        16383,
        16384,
        16385,
        32768,
        1 << 20,
        3 * (1 << 20) + 7,
    ];
    let values: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| (0..n).map(|j| (j * 31 + i * 7) as u8).collect())
        .collect();
    for (i, v) in values.iter().enumerate() {
        store
            .set(&key(i as u32), Bytes::from(v.clone()))
            .await
            .unwrap();
    }
    for (i, v) in values.iter().enumerate() {
        assert_eq!(store.get(&key(i as u32)).await.unwrap().unwrap(), v[..]);
    }
    let missing = key(999);
    for batch in [1usize, 2, 4, 5, sizes.len()] {
        let mut keys: Vec<Vec<u8>> = (0..batch).map(|i| key(i as u32)).collect();
        keys.push(missing.clone());
        let got = store.get_many(&keys).await.unwrap();
        assert_eq!(got.len(), batch + 1);
        for (i, g) in got.iter().take(batch).enumerate() {
            assert_eq!(
                g.as_deref(),
                Some(&values[i][..]),
                "batch {batch}, value {i}"
            );
        }
        assert_eq!(got[batch], None);
    }
}

/// Evicts `len` bytes at `offset` of a chunk file from the page cache (after writing it
/// back); true when a read there which must not wait now fails. (The kernel drops only whole
/// folios, which on ext4 may span several pages, so part of a file may stay cached.)
fn evict(path: &std::path::Path, offset: u64, len: u64) -> bool {
    use rustix::fs::{fadvise, Advice};
    use rustix::io::{preadv2, ReadWriteFlags};
    let f = std::fs::File::open(path).unwrap();
    f.sync_all().unwrap();
    fadvise(&f, offset, std::num::NonZeroU64::new(len), Advice::DontNeed).unwrap();
    let mut b = vec![0u8; 16];
    preadv2(
        &f,
        &mut [std::io::IoSliceMut::new(&mut b)],
        offset,
        ReadWriteFlags::NOWAIT,
    )
    .is_err()
}

/// Small chunks are copied inline when the page cache holds them; one that is wholly or
/// partly out of the cache (a read that must not wait stops at the missing page) is read
/// whole the ordinary way, never cut at the cached part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_partly_out_of_the_page_cache_come_back_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DirStore::new(tmp.path()).unwrap();
    let sizes = [4096usize, 12288, 9000, 16383, 12288, 10000];
    let values: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| (0..n).map(|j| (j * 13 + i) as u8).collect())
        .collect();
    let keys: Vec<Vec<u8>> = (0..sizes.len()).map(|i| key(100 + i as u32)).collect();
    for (k, v) in keys.iter().zip(&values) {
        store.set(k, Bytes::from(v.clone())).await.unwrap();
    }
    // Cached: inline copies, whole.
    let got = store.get_many(&keys).await.unwrap();
    for (g, v) in got.iter().zip(&values) {
        assert_eq!(g.as_deref(), Some(&v[..]));
    }
    // The tail (from 8 KiB) of each file out of the cache, the whole of the first; alone, in
    // a batch read inline and in one spread over the blocking pool.
    for (from, to) in [(0, 1), (1, 2), (0, 3), (0, sizes.len())] {
        let mut partly = 0;
        for k in &keys[1..] {
            partly += usize::from(evict(&store.path_of(k).unwrap(), 8192, 8192));
        }
        assert!(
            partly > 0,
            "no file is partly cached: the test shows nothing"
        );
        assert!(evict(&store.path_of(&keys[0]).unwrap(), 0, 4096));
        let got = store.get_many(&keys[from..to]).await.unwrap();
        for (i, g) in got.iter().enumerate() {
            let want = &values[from + i];
            assert!(
                g.as_deref() == Some(&want[..]),
                "value {}: {:?} bytes read, {} stored",
                from + i,
                g.as_ref().map(|b| b.len()),
                want.len()
            );
        }
    }
    for (k, v) in keys.iter().zip(&values) {
        evict(&store.path_of(k).unwrap(), 8192, 8192);
        let g = store.get(k).await.unwrap();
        assert!(
            g.as_deref() == Some(&v[..]),
            "{:?} bytes",
            g.map(|b| b.len())
        );
    }
}

/// A batch of more chunks than it keeps open between its first reads and the rest (bigger
/// than a cached read, so none is answered by its first read) comes back whole and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_many_bigger_chunks_comes_back_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DirStore::new(tmp.path()).unwrap();
    let keys: Vec<Vec<u8>> = (0..150).map(|i| key(5000 + i)).collect();
    let value = |i: usize| -> Vec<u8> { (0..20_000 + i).map(|j| (j + i) as u8).collect() };
    for (i, k) in keys.iter().enumerate() {
        store.set(k, Bytes::from(value(i))).await.unwrap();
    }
    let got = store.get_many(&keys).await.unwrap();
    for (i, g) in got.iter().enumerate() {
        assert!(g.as_deref() == Some(&value(i)[..]), "value {i}");
    }
}
