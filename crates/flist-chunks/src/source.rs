//! Random access to decoded chunks (a mount's reads): memory, the disk cache, then the
//! store.
//!
//! Every chunk goes through [`ChunkSource::get`]: a small in-memory LRU of decoded chunks
//! (the kernel reads a 512 KiB chunk in several pieces), then the shared disk
//! [`ChunkCache`], then the store. Concurrent requests for the same chunk wait for one
//! fetch; store requests in flight are bounded by a semaphore; everything fetched is
//! checked against both hashes before it is used or cached. [`ChunkSource::prefetch`]
//! loads chunks in the background (read-ahead).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use flist_format::Block;
use flist_store::Store;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;

use crate::cache::ChunkCache;
use crate::error::ChunkError;
use crate::verify::{decode, store_key};

/// Counters of a source's chunk traffic.
#[derive(Debug, Default)]
pub struct Stats {
    /// Chunks fetched from the store.
    pub fetched_chunks: AtomicU64,
    /// Bytes fetched from the store (encrypted size).
    pub fetched_bytes: AtomicU64,
    /// Chunks served from the disk cache.
    pub disk_hits: AtomicU64,
    /// Chunks served from memory.
    pub memory_hits: AtomicU64,
    /// Chunks loaded ahead of reads.
    pub prefetched: AtomicU64,
}

/// A copy of [`Stats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Chunks fetched from the store.
    pub fetched_chunks: u64,
    /// Bytes fetched from the store (encrypted size).
    pub fetched_bytes: u64,
    /// Chunks served from the disk cache.
    pub disk_hits: u64,
    /// Chunks served from memory.
    pub memory_hits: u64,
    /// Chunks loaded ahead of reads.
    pub prefetched: u64,
}

impl Stats {
    /// The current values.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            fetched_chunks: self.fetched_chunks.load(Ordering::Relaxed),
            fetched_bytes: self.fetched_bytes.load(Ordering::Relaxed),
            disk_hits: self.disk_hits.load(Ordering::Relaxed),
            memory_hits: self.memory_hits.load(Ordering::Relaxed),
            prefetched: self.prefetched.load(Ordering::Relaxed),
        }
    }
}

type Loaded = Result<Arc<Vec<u8>>, Arc<ChunkError>>;

#[derive(Default)]
struct Slot {
    value: Mutex<Option<Loaded>>,
    ready: Condvar,
}

struct Memory {
    chunks: HashMap<Block, (Arc<Vec<u8>>, u64)>,
    tick: u64,
    capacity: usize,
}

impl Memory {
    fn get(&mut self, hash: &Block) -> Option<Arc<Vec<u8>>> {
        self.tick += 1;
        let tick = self.tick;
        self.chunks.get_mut(hash).map(|(v, t)| {
            *t = tick;
            v.clone()
        })
    }

    fn put(&mut self, hash: Block, value: Arc<Vec<u8>>) {
        if self.capacity == 0 {
            return;
        }
        while self.chunks.len() >= self.capacity {
            let oldest = self
                .chunks
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| *k);
            match oldest {
                Some(k) => {
                    self.chunks.remove(&k);
                }
                None => break,
            }
        }
        self.tick += 1;
        self.chunks.insert(hash, (value, self.tick));
    }
}

/// Decoded chunks by block: memory, disk cache, store; one load per chunk however many
/// callers wait for it.
pub struct ChunkSource {
    store: Arc<dyn Store>,
    handle: Handle,
    cache: Option<Arc<ChunkCache>>,
    memory: Mutex<Memory>,
    inflight: Mutex<HashMap<Block, Arc<Slot>>>,
    fetches: Arc<Semaphore>,
    prefetching: Arc<Semaphore>,
    /// `prefetching`'s permits when no prefetch runs.
    prefetch_slots: usize,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for ChunkSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkSource")
            .field("store", &self.store.to_string())
            .field("cache", &self.cache)
            .finish()
    }
}

impl ChunkSource {
    /// A source reading `store` on the runtime behind `handle`, caching in `cache`, with at
    /// most `max_fetches` store requests in flight and `memory_chunks` decoded chunks kept
    /// in memory.
    pub fn new(
        store: Arc<dyn Store>,
        handle: Handle,
        cache: Option<Arc<ChunkCache>>,
        max_fetches: usize,
        memory_chunks: usize,
    ) -> Self {
        ChunkSource {
            store,
            handle,
            cache,
            memory: Mutex::new(Memory {
                chunks: HashMap::new(),
                tick: 0,
                capacity: memory_chunks,
            }),
            inflight: Mutex::new(HashMap::new()),
            fetches: Arc::new(Semaphore::new(max_fetches.max(1))),
            prefetching: Arc::new(Semaphore::new(max_fetches.max(1))),
            prefetch_slots: max_fetches.max(1),
            stats: Arc::new(Stats::default()),
        }
    }

    /// The traffic counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// True when the chunk is in memory or in the disk cache.
    pub fn is_local(&self, block: &Block) -> bool {
        self.memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .chunks
            .contains_key(block)
            || self.cache.as_ref().is_some_and(|c| c.contains(block.id()))
    }

    /// The decoded chunk. Blocks the calling thread: call it from a plain thread (a FUSE
    /// worker or `spawn_blocking`), never from an async task.
    pub fn get(&self, block: &Block) -> Result<Arc<Vec<u8>>, Arc<ChunkError>> {
        if let Some(v) = self
            .memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(block)
        {
            self.stats.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(v);
        }
        let (slot, leader) = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            match inflight.get(block) {
                Some(s) => (s.clone(), false),
                None => {
                    let s = Arc::new(Slot::default());
                    inflight.insert(*block, s.clone());
                    (s, true)
                }
            }
        };
        if leader {
            let loaded = self.load(block);
            if let Ok(v) = &loaded {
                self.memory
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .put(*block, v.clone());
            }
            *slot.value.lock().unwrap_or_else(|p| p.into_inner()) = Some(loaded.clone());
            slot.ready.notify_all();
            self.inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(block);
            return loaded;
        }
        let mut value = slot.value.lock().unwrap_or_else(|p| p.into_inner());
        while value.is_none() {
            value = slot.ready.wait(value).unwrap_or_else(|p| p.into_inner());
        }
        match value.as_ref() {
            Some(Ok(v)) => Ok(v.clone()),
            Some(Err(e)) => Err(e.clone()),
            None => unreachable!("loop exits with a value"),
        }
    }

    /// Disk cache, else store (bounded), decode, check, cache.
    fn load(&self, block: &Block) -> Loaded {
        if let Some(cache) = &self.cache {
            if let Some(v) = cache.get(block) {
                self.stats.disk_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Arc::new(v));
            }
        }
        let store = self.store.clone();
        let fetches = self.fetches.clone();
        let key = store_key(block);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let result = match fetches.acquire_owned().await {
                Ok(_permit) => store.get(&key).await.map_err(|source| ChunkError::Store {
                    store: store.to_string(),
                    source,
                }),
                Err(e) => Err(ChunkError::Stopped(e.to_string())),
            };
            let _ = tx.send(result.and_then(|v| {
                v.ok_or_else(|| ChunkError::Missing {
                    chunk: hex::encode(&key),
                    store: store.to_string(),
                })
            }));
        });
        let data = rx
            .recv()
            .map_err(|_| {
                ChunkError::Stopped("the runtime stopped before the fetch finished".into())
            })?
            .map_err(Arc::new)?;
        self.stats.fetched_chunks.fetch_add(1, Ordering::Relaxed);
        self.stats
            .fetched_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let plain = decode(block, &data)?;
        if let Some(cache) = &self.cache {
            cache.put(block, &plain);
        }
        Ok(Arc::new(plain))
    }

    /// Waits, at most `limit`, until no load [`ChunkSource::prefetch`] started is running, so
    /// that once a mount has ended nothing more is written to the disk cache and the
    /// counters are final. False when `limit` passed first.
    pub fn wait_prefetches(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.prefetching.available_permits() < self.prefetch_slots {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }

    /// Loads `blocks` in the background unless they are local already; at most as many
    /// prefetches run at once as fetches may, extra ones are dropped.
    pub fn prefetch(self: &Arc<Self>, blocks: &[Block]) {
        for block in blocks {
            if self.is_local(block)
                || self
                    .inflight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains_key(block)
            {
                continue;
            }
            let Ok(permit) = self.prefetching.clone().try_acquire_owned() else {
                return;
            };
            let me = self.clone();
            let block = *block;
            self.handle.spawn_blocking(move || {
                let _permit = permit;
                if me.get(&block).is_ok() {
                    me.stats.prefetched.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use flist_format::codec::encode_chunk;
    use flist_store::DirStore;

    /// After `wait_prefetches`, every background load has landed in the cache and the
    /// counters (a mount's unmount relies on it before its caller reads the stats or
    /// removes the cache).
    #[test]
    fn waiting_for_prefetches_sees_them_all_land() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::new(dir.path().join("store")).unwrap();
        // incompressible chunks, so that decoding them takes a while
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let chunks: Vec<_> = (0..8)
            .map(|_| {
                let plain: Vec<u8> = (0..512 * 1024)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                encode_chunk(&plain)
            })
            .collect();
        for c in &chunks {
            rt.block_on(store.set(&store_key(&c.block), c.data.clone().into()))
                .unwrap();
        }
        let cache = Arc::new(ChunkCache::open(dir.path().join("cache"), 1 << 30).unwrap());
        let source = Arc::new(ChunkSource::new(
            Arc::new(store),
            rt.handle().clone(),
            Some(cache.clone()),
            8,
            0,
        ));
        let blocks: Vec<Block> = chunks.iter().map(|c| c.block).collect();
        source.prefetch(&blocks);
        assert!(source.wait_prefetches(Duration::from_secs(60)));
        let stats = source.stats().snapshot();
        assert_eq!(stats.prefetched, 8, "{stats:?}");
        assert_eq!(stats.fetched_chunks, 8, "{stats:?}");
        assert!(blocks.iter().all(|b| cache.contains(b.id())));
        // nothing running: returns at once
        assert!(source.wait_prefetches(Duration::ZERO));
    }
}
