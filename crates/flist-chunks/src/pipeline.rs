//! Batched reads of many chunks: pipelined `get_many` requests, decoding on every core.
//!
//! [`Pipeline::for_each`] serves bulk readers that do not care about order (extract writes
//! each chunk at its offsets, a deep verify records what is bad); [`Pipeline::read_ordered`]
//! serves readers of one file's bytes in order (`cat`, `get`, a kernel's first bytes). Both
//! keep `batches_in_flight` requests of `batch_chunks` chunks running while earlier ones
//! are decoded, and check both hashes of every chunk ([`crate::decode`]).

use std::collections::VecDeque;

use bytes::Bytes;
use crossbeam_channel::bounded;
use flist_format::Block;
use flist_store::{BlockingStore, Pending};

use crate::error::ChunkError;
use crate::verify::{decode_many, store_key};

/// How a batched read runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pipeline {
    /// Chunks per `get_many` request.
    pub batch_chunks: usize,
    /// Requests in flight at once.
    pub batches_in_flight: usize,
    /// Decoding threads (0: one per core).
    pub workers: usize,
}

impl Default for Pipeline {
    fn default() -> Self {
        Pipeline {
            batch_chunks: 16,
            batches_in_flight: 4,
            workers: 0,
        }
    }
}

type Fetched = (usize, Vec<Option<Bytes>>);

impl Pipeline {
    fn workers(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        }
    }

    /// Issues the requests for `blocks` in order, `batches_in_flight` at once, and hands
    /// each answer (first index, values) to `got` as it arrives, in order. Stops at the first
    /// store failure or when `got` returns false.
    fn fetch(
        &self,
        store: &BlockingStore,
        blocks: &[Block],
        mut got: impl FnMut(Fetched) -> bool,
    ) -> Result<(), ChunkError> {
        let batch = self.batch_chunks.max(1);
        let mut inflight: VecDeque<(usize, Pending<Vec<Option<Bytes>>>)> = VecDeque::new();
        let mut start = 0;
        while start < blocks.len() || !inflight.is_empty() {
            while start < blocks.len() && inflight.len() < self.batches_in_flight.max(1) {
                let end = (start + batch).min(blocks.len());
                let keys: Vec<Vec<u8>> = blocks[start..end].iter().map(store_key).collect();
                inflight.push_back((start, store.start_get_many(keys)));
                start = end;
            }
            let Some((at, pending)) = inflight.pop_front() else {
                break;
            };
            let values = pending.wait().map_err(|source| ChunkError::Store {
                store: store.to_string(),
                source,
            })?;
            if !got((at, values)) {
                break;
            }
        }
        Ok(())
    }

    /// Reads every chunk of `blocks` and calls `on_chunk(index, plaintext or error)` on one
    /// of the decoding threads, in no particular order. A missing or corrupt chunk is
    /// reported to `on_chunk` (as [`ChunkError::Missing`] or [`ChunkError::Codec`]); a
    /// store failure ends the read with that error. The first error `on_chunk` returns ends
    /// the read and is returned. Blocking.
    pub fn for_each<E, F>(
        &self,
        store: &BlockingStore,
        blocks: &[Block],
        on_chunk: F,
    ) -> Result<(), E>
    where
        E: From<ChunkError> + Send,
        F: Fn(usize, Result<Vec<u8>, ChunkError>) -> Result<(), E> + Sync,
    {
        if blocks.is_empty() {
            return Ok(());
        }
        let workers = self.workers();
        let (tx, rx) = bounded::<Fetched>(workers * 2);
        let store_name = store.to_string();
        std::thread::scope(|s| {
            let mut hs = Vec::with_capacity(workers);
            for _ in 0..workers {
                let rx = rx.clone();
                let (on_chunk, store_name) = (&on_chunk, &store_name);
                hs.push(s.spawn(move || -> Result<(), E> {
                    for (start, values) in rx {
                        let Some(blocks) = blocks.get(start..) else {
                            continue;
                        };
                        for (k, r) in decode_all(blocks, values, store_name)
                            .into_iter()
                            .enumerate()
                        {
                            on_chunk(start + k, r)?;
                        }
                    }
                    Ok(())
                }));
            }
            drop(rx);
            // a worker that failed drops its receiver: the fetch stops when none is left
            let fetched = self.fetch(store, blocks, |f| tx.send(f).is_ok());
            drop(tx);
            let mut result: Result<(), E> = fetched.map_err(E::from);
            for h in hs {
                let r = h.join().unwrap_or_else(|_| {
                    Err(E::from(ChunkError::Stopped(
                        "a decoding thread panicked".into(),
                    )))
                });
                if result.is_ok() {
                    result = r;
                }
            }
            result
        })
    }

    /// Reads the chunks of `blocks` and hands each plaintext to `out` in order, on the
    /// calling thread; the chunks of one answer are decoded in parallel while the next
    /// requests are under way. A missing or corrupt chunk ends the read with its error.
    pub fn read_ordered<E, F>(
        &self,
        store: &BlockingStore,
        blocks: &[Block],
        mut out: F,
    ) -> Result<(), E>
    where
        E: From<ChunkError>,
        F: FnMut(usize, Vec<u8>) -> Result<(), E>,
    {
        let workers = self.workers();
        let store_name = store.to_string();
        let mut failed: Option<E> = None;
        let fetched = self.fetch(store, blocks, |(start, values)| {
            let decoded = decode_batch(&blocks[start..], values, workers, &store_name);
            for (k, r) in decoded.into_iter().enumerate() {
                let step = r.map_err(E::from).and_then(|plain| out(start + k, plain));
                if let Err(e) = step {
                    failed = Some(e);
                    return false;
                }
            }
            true
        });
        if let Some(e) = failed {
            return Err(e);
        }
        fetched.map_err(E::from)
    }
}

/// Fetches `blocks` with one `get_many` and decodes them in order: a reader that streams a
/// file a few chunks at a time. Returns the plaintexts and the stored (encrypted) bytes
/// fetched. A missing or corrupt chunk is an error naming it.
pub fn read_batch(
    store: &BlockingStore,
    blocks: &[Block],
) -> Result<(Vec<Vec<u8>>, u64), ChunkError> {
    let keys: Vec<Vec<u8>> = blocks.iter().map(store_key).collect();
    let values = store.get_many(&keys).map_err(|source| ChunkError::Store {
        store: store.to_string(),
        source,
    })?;
    let stored = values.iter().flatten().map(|v| v.len() as u64).sum();
    let plain = decode_batch(blocks, values, 1, &store.to_string())
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    Ok((plain, stored))
}

/// Decodes one answer's chunks (in order; the answer may be shorter than `blocks`) on the
/// calling thread, all at once ([`decode_many`]); an absent value is [`ChunkError::Missing`].
fn decode_all(
    blocks: &[Block],
    values: Vec<Option<Bytes>>,
    store: &str,
) -> Vec<Result<Vec<u8>, ChunkError>> {
    let pairs: Vec<(&Block, Option<Bytes>)> = blocks.iter().zip(values).collect();
    let items: Vec<(&Block, &[u8])> = pairs
        .iter()
        .filter_map(|(b, v)| v.as_ref().map(|d| (*b, &d[..])))
        .collect();
    let mut decoded = decode_many(&items).into_iter();
    pairs
        .iter()
        .map(|(b, v)| match v {
            Some(_) => decoded
                .next()
                .unwrap_or_else(|| Err(ChunkError::Stopped("a decoded chunk went missing".into()))),
            None => Err(ChunkError::Missing {
                chunk: hex::encode(store_key(b)),
                store: store.to_string(),
            }),
        })
        .collect()
}

/// Decodes one answer's chunks, on up to `workers` threads, in order.
fn decode_batch(
    blocks: &[Block],
    values: Vec<Option<Bytes>>,
    workers: usize,
    store: &str,
) -> Vec<Result<Vec<u8>, ChunkError>> {
    let values: Vec<Option<Bytes>> = values.into_iter().take(blocks.len()).collect();
    if workers <= 1 || values.len() <= 1 {
        return decode_all(blocks, values, store);
    }
    let per = values.len().div_ceil(workers);
    let mut parts: Vec<(&[Block], Vec<Option<Bytes>>)> = Vec::new();
    let mut rest = values.into_iter();
    for b in blocks.chunks(per) {
        let part: Vec<_> = rest.by_ref().take(per).collect();
        if part.is_empty() {
            break;
        }
        parts.push((b, part));
    }
    std::thread::scope(|s| {
        let hs: Vec<_> = parts
            .into_iter()
            .map(|(b, part)| s.spawn(move || decode_all(b, part, store)))
            .collect();
        hs.into_iter()
            .flat_map(|h| {
                h.join().unwrap_or_else(|_| {
                    vec![Err(ChunkError::Stopped(
                        "a decoding thread panicked".into(),
                    ))]
                })
            })
            .collect()
    })
}
