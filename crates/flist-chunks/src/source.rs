//! Random access to decoded chunks (a mount's reads): memory, the disk cache, then the
//! store.
//!
//! Every chunk goes through [`ChunkSource::get`]: a small in-memory LRU of decoded chunks
//! (the kernel reads a 512 KiB chunk in several pieces), then the shared disk
//! [`ChunkCache`], then the store. Concurrent requests for the same chunk wait for one
//! load; store requests in flight are bounded by a semaphore; everything fetched is checked
//! against both hashes before it is used or cached.
//!
//! [`ChunkSource::prefetch`] queues chunks for background loaders (read-ahead, a recorded
//! prefetch list). Each loader takes up to [`BATCH`] queued chunks at a time: the ones in
//! the disk cache are read and checked together, the others fetched with one `get_many`
//! and decoded together ([`crate::decode_many`]: hashes several at a time, equal-length
//! chunks decrypted in SIMD lanes), so a sequential reader is served at the speed of every
//! core while its next chunks are still on the wire. A reader that needs a chunk still
//! waiting in the queue loads it at once itself instead of waiting its turn.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use flist_format::Block;
use flist_store::Store;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;

use crate::cache::ChunkCache;
use crate::error::ChunkError;
use crate::verify::{decode, decode_many, plains_match_many, store_key};

/// Chunks a loader takes from the queue at once (one `get_many`, one batch decode).
pub const BATCH: usize = 8;

/// Chunks waiting in the prefetch queue at most; further prefetches are dropped.
const MAX_QUEUED: usize = 16_384;

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

/// Where one chunk's load stands.
enum State {
    /// In the prefetch queue, not started: a reader that needs it takes it over.
    Queued,
    /// Being loaded by a reader or a loader.
    Loading,
    /// Loaded (or failed).
    Done(Loaded),
}

struct Slot {
    state: Mutex<State>,
    ready: Condvar,
}

impl Slot {
    fn new(state: State) -> Arc<Self> {
        Arc::new(Slot {
            state: Mutex::new(state),
            ready: Condvar::new(),
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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

#[derive(Default)]
struct Queue {
    blocks: VecDeque<(Block, Arc<Slot>)>,
    /// Loader threads started so far.
    loaders: usize,
    /// Loaders loading a batch now.
    busy: usize,
    stop: bool,
}

/// What the loaders share with the source.
struct Shared {
    store: Arc<dyn Store>,
    handle: Handle,
    cache: Option<Arc<ChunkCache>>,
    memory: Mutex<Memory>,
    inflight: Mutex<HashMap<Block, Arc<Slot>>>,
    queue: Mutex<Queue>,
    wake: Condvar,
    fetches: Arc<Semaphore>,
    loaders: usize,
    stats: Arc<Stats>,
}

/// Decoded chunks by block: memory, disk cache, store; one load per chunk however many
/// callers wait for it; queued chunks loaded in batches by background loaders.
pub struct ChunkSource {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ChunkSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkSource")
            .field("store", &self.shared.store.to_string())
            .field("cache", &self.shared.cache)
            .finish()
    }
}

impl Drop for ChunkSource {
    fn drop(&mut self) {
        // loaders finish the batch in hand and exit; what is still queued is dropped
        lock(&self.shared.queue).stop = true;
        self.shared.wake.notify_all();
    }
}

impl ChunkSource {
    /// A source reading `store` on the runtime behind `handle`, caching in `cache`, with at
    /// most `max_fetches` store requests in flight and `memory_chunks` decoded chunks kept
    /// in memory. Queued chunks are loaded by as many background loaders as `max_fetches`
    /// allows, at most two per core.
    pub fn new(
        store: Arc<dyn Store>,
        handle: Handle,
        cache: Option<Arc<ChunkCache>>,
        max_fetches: usize,
        memory_chunks: usize,
    ) -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        ChunkSource {
            shared: Arc::new(Shared {
                store,
                handle,
                cache,
                memory: Mutex::new(Memory {
                    chunks: HashMap::new(),
                    tick: 0,
                    capacity: memory_chunks,
                }),
                inflight: Mutex::new(HashMap::new()),
                queue: Mutex::new(Queue::default()),
                wake: Condvar::new(),
                fetches: Arc::new(Semaphore::new(max_fetches.max(1))),
                loaders: max_fetches.clamp(1, 2 * cores),
                stats: Arc::new(Stats::default()),
            }),
        }
    }

    /// The traffic counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.shared.stats
    }

    /// True when the chunk is in memory or in the disk cache.
    pub fn is_local(&self, block: &Block) -> bool {
        lock(&self.shared.memory).chunks.contains_key(block)
            || self
                .shared
                .cache
                .as_ref()
                .is_some_and(|c| c.contains(block.id()))
    }

    /// The decoded chunk. Blocks the calling thread: call it from a plain thread (a FUSE
    /// worker or `spawn_blocking`), never from an async task.
    pub fn get(&self, block: &Block) -> Result<Arc<Vec<u8>>, Arc<ChunkError>> {
        let sh = &self.shared;
        let (slot, mut leader) = {
            // Memory and the in-flight table are looked at together (in `prefetch`'s lock
            // order): a load finishing in between (memory filled, then its slot removed)
            // would otherwise be missed in both and fetched again.
            let mut memory = lock(&sh.memory);
            if let Some(v) = memory.get(block) {
                sh.stats.memory_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(v);
            }
            let mut inflight = lock(&sh.inflight);
            match inflight.get(block) {
                Some(s) => (s.clone(), false),
                None => {
                    let s = Slot::new(State::Loading);
                    inflight.insert(*block, s.clone());
                    (s, true)
                }
            }
        };
        if !leader {
            let mut state = lock(&slot.state);
            loop {
                match &*state {
                    State::Queued => {
                        // needed now: load it here rather than wait for its turn
                        *state = State::Loading;
                        leader = true;
                        break;
                    }
                    State::Loading => {
                        state = slot.ready.wait(state).unwrap_or_else(|p| p.into_inner());
                    }
                    State::Done(v) => return v.clone(),
                }
            }
        }
        debug_assert!(leader);
        let loaded = sh.load_one(block);
        sh.finish(block, &slot, loaded.clone());
        if let Ok(v) = &loaded {
            sh.cache_put(block, v);
        }
        loaded
    }

    /// Queues `blocks` for the background loaders unless they are in memory, loading or
    /// queued already. Returns at once; the loaders read the disk cache first.
    pub fn prefetch(&self, blocks: &[Block]) {
        let sh = &self.shared;
        let mut fresh = Vec::new();
        {
            let memory = lock(&sh.memory);
            let mut inflight = lock(&sh.inflight);
            for block in blocks {
                if memory.chunks.contains_key(block) || inflight.contains_key(block) {
                    continue;
                }
                let slot = Slot::new(State::Queued);
                inflight.insert(*block, slot.clone());
                fresh.push((*block, slot));
            }
        }
        if fresh.is_empty() {
            return;
        }
        let mut queue = lock(&sh.queue);
        for item in fresh {
            if queue.blocks.len() >= MAX_QUEUED {
                // not queued after all: forget the slot so a reader loads it itself
                lock(&sh.inflight).remove(&item.0);
                continue;
            }
            queue.blocks.push_back(item);
        }
        while queue.loaders < sh.loaders.min(queue.blocks.len().div_ceil(BATCH)) {
            queue.loaders += 1;
            let shared = sh.clone();
            let spawned = std::thread::Builder::new()
                .name("chunk-loader".into())
                .spawn(move || shared.loader());
            if let Err(e) = spawned {
                tracing::warn!("starting a chunk loader: {e}");
                queue.loaders -= 1;
                break;
            }
        }
        drop(queue);
        sh.wake.notify_all();
    }

    /// Chunks waiting in the prefetch queue.
    pub fn queued(&self) -> usize {
        lock(&self.shared.queue).blocks.len()
    }

    /// Waits, at most `limit`, until the background loaders have nothing queued and nothing
    /// running, so that once a mount has ended nothing more is written to the disk cache and
    /// the counters are final. False when `limit` passed first.
    pub fn wait_prefetches(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            {
                let queue = lock(&self.shared.queue);
                if queue.blocks.is_empty() && queue.busy == 0 {
                    return true;
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Shared {
    /// Publishes a load: memory, the slot's waiters, out of the in-flight table.
    fn finish(&self, block: &Block, slot: &Arc<Slot>, loaded: Loaded) {
        if let Ok(v) = &loaded {
            lock(&self.memory).put(*block, v.clone());
        }
        *lock(&slot.state) = State::Done(loaded);
        slot.ready.notify_all();
        let mut inflight = lock(&self.inflight);
        if inflight.get(block).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            inflight.remove(block);
        }
    }

    fn cache_put(&self, block: &Block, plain: &[u8]) {
        if let Some(cache) = &self.cache {
            cache.put(block, plain);
        }
    }

    /// Runs `get_many` of `keys` on the runtime (one permit), blocking this thread.
    fn fetch(&self, keys: Vec<Vec<u8>>) -> Result<Vec<Option<bytes::Bytes>>, ChunkError> {
        let store = self.store.clone();
        let fetches = self.fetches.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let result = match fetches.acquire_owned().await {
                Ok(_permit) => {
                    if keys.len() == 1 {
                        store.get(&keys[0]).await.map(|v| vec![v])
                    } else {
                        store.get_many(&keys).await
                    }
                }
                .map_err(|source| ChunkError::Store {
                    store: store.to_string(),
                    source,
                }),
                Err(e) => Err(ChunkError::Stopped(e.to_string())),
            };
            let _ = tx.send(result);
        });
        rx.recv().map_err(|_| {
            ChunkError::Stopped("the runtime stopped before the fetch finished".into())
        })?
    }

    fn missing(&self, block: &Block) -> ChunkError {
        ChunkError::Missing {
            chunk: hex::encode(store_key(block)),
            store: self.store.to_string(),
        }
    }

    /// Disk cache, else store (bounded), decode, check.
    fn load_one(&self, block: &Block) -> Loaded {
        if let Some(cache) = &self.cache {
            if let Some(v) = cache.get(block) {
                self.stats.disk_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Arc::new(v));
            }
        }
        let data = self
            .fetch(vec![store_key(block)])?
            .pop()
            .flatten()
            .ok_or_else(|| Arc::new(self.missing(block)))?;
        self.stats.fetched_chunks.fetch_add(1, Ordering::Relaxed);
        self.stats
            .fetched_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(Arc::new(decode(block, &data)?))
    }

    /// A background loader: takes up to [`BATCH`] queued chunks at a time until stopped.
    fn loader(self: Arc<Self>) {
        loop {
            let batch = {
                let mut queue = lock(&self.queue);
                loop {
                    if queue.stop {
                        return;
                    }
                    let mut batch = Vec::with_capacity(BATCH);
                    while batch.len() < BATCH {
                        let Some((block, slot)) = queue.blocks.pop_front() else {
                            break;
                        };
                        let mut state = lock(&slot.state);
                        if matches!(*state, State::Queued) {
                            *state = State::Loading;
                            drop(state);
                            batch.push((block, slot));
                        }
                    }
                    if !batch.is_empty() {
                        queue.busy += 1;
                        break batch;
                    }
                    queue = self.wake.wait(queue).unwrap_or_else(|p| p.into_inner());
                }
            };
            self.load_batch(batch);
            lock(&self.queue).busy -= 1;
        }
    }

    /// Loads a batch: the disk cache's entries checked together, the rest fetched with one
    /// `get_many`. Each chunk is published as soon as it is ready (a reader may be waiting
    /// for the first one): chunks of a length shared by at least three of the batch are
    /// decoded together ([`decode_many`]: SIMD lanes), the others one by one, in batch
    /// order. Fetched chunks go to the disk cache after they are published.
    fn load_batch(&self, batch: Vec<(Block, Arc<Slot>)>) {
        let publish = |i: usize, r: Loaded| {
            if r.is_ok() {
                self.stats.prefetched.fetch_add(1, Ordering::Relaxed);
            }
            let (block, slot) = &batch[i];
            self.finish(block, slot, r);
        };
        let mut pending: Vec<usize> = (0..batch.len()).collect();
        if let Some(cache) = &self.cache {
            let hits: Vec<(usize, Vec<u8>)> = batch
                .iter()
                .enumerate()
                .filter_map(|(i, (b, _))| cache.read(b).map(|v| (i, v)))
                .collect();
            let items: Vec<(&Block, &[u8])> =
                hits.iter().map(|(i, v)| (&batch[*i].0, &v[..])).collect();
            let good = plains_match_many(&items);
            for ((i, v), ok) in hits.into_iter().zip(good) {
                if ok {
                    self.stats.disk_hits.fetch_add(1, Ordering::Relaxed);
                    pending.retain(|&j| j != i);
                    publish(i, Ok(Arc::new(v)));
                } else {
                    cache.remove_damaged(&batch[i].0);
                }
            }
        }
        if pending.is_empty() {
            return;
        }
        let keys = pending.iter().map(|&i| store_key(&batch[i].0)).collect();
        let values = match self.fetch(keys) {
            Ok(values) => values,
            Err(e) => {
                let e = Arc::new(e);
                for &i in &pending {
                    publish(i, Err(e.clone()));
                }
                return;
            }
        };
        let mut present = Vec::new();
        let mut answered = vec![false; batch.len()];
        for (&i, v) in pending.iter().zip(values) {
            answered[i] = true;
            match v {
                Some(data) => {
                    self.stats.fetched_chunks.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .fetched_bytes
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                    present.push((i, data));
                }
                None => publish(i, Err(Arc::new(self.missing(&batch[i].0)))),
            }
        }
        for &i in pending.iter().filter(|&&i| !answered[i]) {
            publish(
                i,
                Err(Arc::new(ChunkError::Stopped(
                    "the store answered fewer chunks than asked".into(),
                ))),
            );
        }
        let mut done = vec![false; present.len()];
        for k in 0..present.len() {
            if done[k] {
                continue;
            }
            let len = present[k].1.len();
            let group: Vec<usize> = (k..present.len())
                .filter(|&j| !done[j] && present[j].1.len() == len)
                .collect();
            let group = if group.len() >= 3 { group } else { vec![k] };
            let items: Vec<(&Block, &[u8])> = group
                .iter()
                .map(|&j| (&batch[present[j].0].0, &present[j].1[..]))
                .collect();
            let decoded = if let [(block, data)] = items[..] {
                vec![decode(block, data)]
            } else {
                decode_many(&items)
            };
            for (&j, r) in group.iter().zip(decoded) {
                done[j] = true;
                let i = present[j].0;
                let r = r.map(Arc::new).map_err(Arc::new);
                let plain = r.as_ref().ok().cloned();
                publish(i, r);
                if let Some(v) = plain {
                    self.cache_put(&batch[i].0, &v);
                }
            }
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
