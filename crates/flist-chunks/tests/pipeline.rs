//! The chunk-reading layer against a real `dir://` store: order, missing and corrupt
//! chunks, both hashes, the cache and single-flight random access.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use flist_chunks::{ChunkCache, ChunkError, ChunkSource, Pipeline};
use flist_format::codec::{encode_chunk, EncodedChunk};
use flist_format::Block;
use flist_store::BlockingStore;

fn store(dir: &std::path::Path) -> BlockingStore {
    BlockingStore::open(&format!("dir://{}", dir.display())).unwrap()
}

/// `n` distinct chunks of a few KiB, stored.
fn stored_chunks(store: &BlockingStore, n: usize) -> Vec<EncodedChunk> {
    let chunks: Vec<EncodedChunk> = (0..n)
        .map(|i| encode_chunk(format!("chunk {i} ").repeat(500 + i).as_bytes()))
        .collect();
    let items = chunks
        .iter()
        .map(|c| (c.block.id().to_vec(), c.data.clone().into()))
        .collect();
    store.set_many(items).unwrap();
    chunks
}

fn plain(i: usize) -> Vec<u8> {
    format!("chunk {i} ").repeat(500 + i).into_bytes()
}

#[test]
fn ordered_reads_keep_file_order_over_many_batches() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let chunks = stored_chunks(&s, 50);
    let blocks: Vec<Block> = chunks.iter().map(|c| c.block).collect();
    for p in [
        Pipeline::default(),
        Pipeline {
            batch_chunks: 3,
            batches_in_flight: 2,
            workers: 3,
        },
        Pipeline {
            batch_chunks: 1,
            batches_in_flight: 1,
            workers: 1,
        },
    ] {
        let mut seen = Vec::new();
        p.read_ordered(&s, &blocks, |i, data| {
            assert_eq!(data, plain(i), "chunk {i}");
            seen.push(i);
            Ok::<_, ChunkError>(())
        })
        .unwrap();
        assert_eq!(seen, (0..50).collect::<Vec<_>>(), "{p:?}");
    }
}

#[test]
fn unordered_reads_see_every_chunk_once_and_report_missing_and_corrupt_ones() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let mut chunks = stored_chunks(&s, 40);
    // a chunk never stored
    chunks.push(encode_chunk(b"never stored"));
    // a chunk stored with bytes that are not its own
    let victim = encode_chunk(b"victim");
    s.set_many(vec![(
        victim.block.id().to_vec(),
        chunks[0].data.clone().into(),
    )])
    .unwrap();
    chunks.push(victim);
    let blocks: Vec<Block> = chunks.iter().map(|c| c.block).collect();
    let got = Mutex::new(Vec::new());
    Pipeline {
        batch_chunks: 7,
        batches_in_flight: 3,
        workers: 2,
    }
    .for_each(&s, &blocks, |i, r| {
        let what = match r {
            Ok(data) => {
                assert_eq!(data, plain(i));
                "ok".to_string()
            }
            Err(ChunkError::Missing { chunk, .. }) => format!("missing {chunk}"),
            Err(ChunkError::Codec(e)) => format!("corrupt {e}"),
            Err(e) => return Err(e),
        };
        got.lock().unwrap().push((i, what));
        Ok(())
    })
    .unwrap();
    let mut got = got.into_inner().unwrap();
    got.sort();
    assert_eq!(got.len(), 42);
    assert!(got[..40].iter().all(|(_, w)| w == "ok"));
    assert_eq!(got[40].1, format!("missing {}", blocks[40].id_hex()));
    assert!(got[41].1.starts_with("corrupt "), "{}", got[41].1);
    assert!(got[41].1.contains(&blocks[41].id_hex()), "{}", got[41].1);
}

#[test]
fn an_ordered_read_stops_at_a_missing_chunk_and_the_error_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let mut chunks = stored_chunks(&s, 5);
    let absent = encode_chunk(b"absent");
    chunks.insert(2, absent);
    let blocks: Vec<Block> = chunks.iter().map(|c| c.block).collect();
    let mut seen = Vec::new();
    let err = Pipeline::default()
        .read_ordered(&s, &blocks, |i, _| {
            seen.push(i);
            Ok::<_, ChunkError>(())
        })
        .unwrap_err();
    assert_eq!(
        seen,
        vec![0, 1],
        "nothing after the missing chunk is handed out"
    );
    let msg = err.to_string();
    assert!(msg.contains(&blocks[2].id_hex()), "{msg}");
    assert!(msg.contains("not found"), "{msg}");
}

#[test]
fn random_access_loads_each_chunk_once_then_serves_memory_and_the_disk_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let chunks = stored_chunks(&s, 4);
    let cache = Arc::new(ChunkCache::open(cache_dir.path(), 1 << 30).unwrap());
    let source = Arc::new(ChunkSource::new(
        s.store().clone(),
        s.handle().clone(),
        Some(cache.clone()),
        4,
        2,
    ));
    // eight readers of the same chunk at once: one fetch
    std::thread::scope(|sc| {
        for _ in 0..8 {
            let source = &source;
            let b = chunks[0].block;
            sc.spawn(move || assert_eq!(*source.get(&b).unwrap(), plain(0)));
        }
    });
    let st = source.stats().snapshot();
    assert_eq!(st.fetched_chunks, 1, "{st:?}");
    assert!(cache.contains(chunks[0].block.id()));

    // a new source over the same cache: a disk hit, no fetch
    let again = ChunkSource::new(s.store().clone(), s.handle().clone(), Some(cache), 4, 2);
    assert_eq!(*again.get(&chunks[0].block).unwrap(), plain(0));
    let st = again.stats().snapshot();
    assert_eq!((st.fetched_chunks, st.disk_hits), (0, 1), "{st:?}");

    // a chunk the store lacks is an error naming it
    let absent = encode_chunk(b"absent").block;
    let e = again.get(&absent).unwrap_err();
    assert!(e.to_string().contains(&absent.id_hex()), "{e}");
}
