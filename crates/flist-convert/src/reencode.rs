//! Re-encoding a tree's chunks into another codec and store: how an `.flist` becomes an rfs
//! `.fl` and back without touching the files' bytes.
//!
//! The distinct chunks of the tree are fetched from the source store in pipelined
//! `get_many` batches (several in flight), checked (both hashes) and encoded with the target
//! codec on a pool of workers (one per core; `.flist` chunks become rfs blocks without
//! recompressing: their snappy stream is sealed as it is, see
//! [`flist_format::codec::reencode_chunks`]), and written to the target store in
//! pipelined batches (`exists_many` + `set_many`, or `set_many` alone for `dir://`). Chunks
//! keep their boundaries (chunk *i* of a file stays chunk *i*), so the files' bytes are the
//! same; a chunk already of the target codec is checked and copied as it is. Queues are
//! bounded: in flight at once are a few batches of stored chunks, never a file or the tree's
//! content. The tree itself, with one [`Block`] per chunk, is in memory (as for every reader
//! of an flist).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::{bounded, Receiver, Sender};
use flist_format::{Block, Codec, Kind, NodeId, Tree};
use flist_store::{BlockingStore, Pending};

use crate::error::{ConvertError, Result};
use crate::options::{Progress, ProgressReport, UploadMode};

/// How [`reencode`] works.
#[derive(Clone)]
pub struct ReencodeOptions {
    /// The codec of the result (that of the format it is written in).
    pub codec: Codec,
    /// Decoding/encoding threads (0: one per core).
    pub workers: usize,
    /// Chunks per store batch (read and write).
    pub batch_chunks: usize,
    /// Store batches in flight at once, each way.
    pub batches_in_flight: usize,
    /// Progress: `bytes_expanded` plaintext bytes done, `entries` chunks done,
    /// `chunks_new` written, `chunks_reused` already in the target store.
    pub progress: Option<Arc<dyn Progress>>,
}

impl Default for ReencodeOptions {
    fn default() -> Self {
        ReencodeOptions {
            codec: Codec::Rfs,
            workers: 0,
            batch_chunks: 64,
            batches_in_flight: 4,
            progress: None,
        }
    }
}

impl std::fmt::Debug for ReencodeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReencodeOptions")
            .field("codec", &self.codec)
            .field("workers", &self.workers)
            .field("batch_chunks", &self.batch_chunks)
            .field("batches_in_flight", &self.batches_in_flight)
            .finish()
    }
}

/// What [`reencode`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReencodeStats {
    /// Distinct chunks of the tree (each fetched, checked and stored once).
    pub chunks: u64,
    /// Plaintext bytes of those chunks.
    pub bytes: u64,
    /// Chunks written to the target store.
    pub chunks_written: u64,
    /// Chunks the target store already had.
    pub chunks_present: u64,
    /// Chunks already of the target codec (copied, not re-encoded).
    pub chunks_kept: u64,
}

/// One fetched chunk on its way to a worker: its index among the distinct chunks.
type Fetched = (usize, Bytes);
/// One chunk ready for the target store.
struct Ready {
    /// Index among the distinct chunks.
    index: usize,
    /// Its block in the target codec.
    block: Block,
    /// Its stored bytes.
    data: Bytes,
    /// Plaintext length.
    len: u64,
    /// Already of the target codec (copied as it was).
    kept: bool,
}

/// Returns `tree` with every file's chunks in `opts.codec`, their stored bytes in `to`
/// (read from `from`, checked). Blocking; fails naming the chunk and a file holding it when
/// the source store lacks a chunk or a chunk does not decode. Nothing is written to the
/// target store that is not a valid chunk of the result.
pub fn reencode(
    tree: &Tree,
    from: &BlockingStore,
    to: &BlockingStore,
    opts: &ReencodeOptions,
) -> Result<(Tree, ReencodeStats)> {
    // Distinct chunks in walk order, with the first file holding each (for errors).
    let mut index: HashMap<Block, usize> = HashMap::new();
    let mut chunks: Vec<(Block, NodeId)> = Vec::new();
    for id in tree.walk() {
        if let Kind::File { blocks, .. } = &tree.node(id).kind {
            for b in blocks {
                index.entry(*b).or_insert_with(|| {
                    chunks.push((*b, id));
                    chunks.len() - 1
                });
            }
        }
    }
    let mut out: Vec<Option<Block>> = vec![None; chunks.len()];
    let counters = Counters::default();
    let workers = crate::pipeline::worker_count_of(opts.workers);
    let batch = opts.batch_chunks.max(1);
    let in_flight = opts.batches_in_flight.max(1);

    let outcome = std::thread::scope(|s| -> Result<()> {
        let (fetched_tx, fetched_rx) = bounded::<Vec<Fetched>>(workers * 2);
        let (ready_tx, ready_rx) = bounded::<Vec<Ready>>(workers * 2);
        let mut handles = Vec::new();
        for i in 0..workers {
            let (rx, tx) = (fetched_rx.clone(), ready_tx.clone());
            let chunks = &chunks;
            let codec = opts.codec;
            handles.push(
                std::thread::Builder::new()
                    .name(format!("flist-reencode-{i}"))
                    .spawn_scoped(s, move || worker(codec, chunks, tree, rx, tx))
                    .map_err(|e| ConvertError::Internal(format!("spawning a worker: {e}")))?,
            );
        }
        drop((fetched_rx, ready_tx));
        let writer = std::thread::Builder::new()
            .name("flist-reencode-writer".into())
            .spawn_scoped(s, || writer(ready_rx, to, opts, &counters, &mut out))
            .map_err(|e| ConvertError::Internal(format!("spawning the writer: {e}")))?;

        let fetched = fetch(&chunks, tree, from, batch, in_flight, &fetched_tx);
        drop(fetched_tx);
        let mut worker_err = None;
        for h in handles {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => worker_err = worker_err.or(Some(e)),
                Err(_) => {
                    worker_err = Some(ConvertError::Internal(
                        "a re-encoding worker panicked".into(),
                    ))
                }
            }
        }
        let written = writer
            .join()
            .map_err(|_| ConvertError::Internal("the re-encoding writer panicked".into()))?;
        // The first real cause: a fetch or decode failure explains a closed queue.
        fetched.and(worker_err.map_or(Ok(()), Err)).and(written)
    });
    outcome?;

    let mut result = tree.clone();
    let ids: Vec<NodeId> = tree.walk().collect();
    for id in ids {
        if let Kind::File { blocks, .. } = &mut result.node_mut(id).kind {
            for b in blocks.iter_mut() {
                let i = index[&*b];
                *b = out[i].ok_or_else(|| {
                    ConvertError::Internal(format!("chunk {} was not re-encoded", b.id_hex()))
                })?;
            }
        }
    }
    if let Some(p) = &opts.progress {
        p.progress(&counters.report());
    }
    let stats = ReencodeStats {
        chunks: chunks.len() as u64,
        bytes: counters.bytes.load(Ordering::Relaxed),
        chunks_written: counters.written.load(Ordering::Relaxed),
        chunks_present: counters.present.load(Ordering::Relaxed),
        chunks_kept: counters.kept.load(Ordering::Relaxed),
    };
    Ok((result, stats))
}

#[derive(Default)]
struct Counters {
    done: AtomicU64,
    bytes: AtomicU64,
    written: AtomicU64,
    present: AtomicU64,
    kept: AtomicU64,
}

impl Counters {
    fn report(&self) -> ProgressReport {
        ProgressReport {
            bytes_read: self.bytes.load(Ordering::Relaxed),
            bytes_expanded: self.bytes.load(Ordering::Relaxed),
            entries: self.done.load(Ordering::Relaxed),
            chunks_new: self.written.load(Ordering::Relaxed),
            chunks_reused: self.present.load(Ordering::Relaxed),
        }
    }
}

fn store_err(store: &BlockingStore) -> impl Fn(flist_store::StoreError) -> ConvertError + '_ {
    move |source| ConvertError::Store {
        store: store.to_string(),
        source,
    }
}

/// Fetches the chunks in batches, `in_flight` batches at a time, handing each batch to
/// the workers in order.
fn fetch(
    chunks: &[(Block, NodeId)],
    tree: &Tree,
    from: &BlockingStore,
    batch: usize,
    in_flight: usize,
    tx: &Sender<Vec<Fetched>>,
) -> Result<()> {
    let mut pending: VecDeque<(usize, Pending<Vec<Option<Bytes>>>)> = VecDeque::new();
    let receive = |start: usize, p: Pending<Vec<Option<Bytes>>>| -> Result<bool> {
        let values = p.wait().map_err(store_err(from))?;
        let mut items = Vec::with_capacity(values.len());
        for (k, v) in values.into_iter().enumerate() {
            let i = start + k;
            let Some(v) = v else {
                let (b, node) = &chunks[i];
                return Err(ConvertError::MissingChunk {
                    chunk: b.id_hex(),
                    path: format!("/{}", tree.path_of(*node)),
                    store: from.to_string(),
                });
            };
            items.push((i, v));
        }
        Ok(tx.send(items).is_ok())
    };
    for start in (0..chunks.len()).step_by(batch) {
        let end = (start + batch).min(chunks.len());
        let keys: Vec<Vec<u8>> = chunks[start..end]
            .iter()
            .map(|(b, _)| b.id().to_vec())
            .collect();
        pending.push_back((start, from.start_get_many(keys)));
        if pending.len() >= in_flight {
            if let Some((s, p)) = pending.pop_front() {
                if !receive(s, p)? {
                    return Ok(());
                }
            }
        }
    }
    while let Some((s, p)) = pending.pop_front() {
        if !receive(s, p)? {
            return Ok(());
        }
    }
    Ok(())
}

/// Decodes each fetched chunk (both hashes checked) and encodes it with `codec`.
fn worker(
    codec: Codec,
    chunks: &[(Block, NodeId)],
    tree: &Tree,
    rx: Receiver<Vec<Fetched>>,
    tx: Sender<Vec<Ready>>,
) -> Result<()> {
    for items in rx {
        // A batch at a time: `.flist` chunks decrypted several at once (XXTEA in lanes),
        // and re-encoded without recompressing (see `reencode_chunks`).
        let stored: Vec<(&Block, &[u8])> =
            items.iter().map(|(i, d)| (&chunks[*i].0, &d[..])).collect();
        let results = flist_format::codec::reencode_chunks(codec, &stored);
        let mut ready = Vec::with_capacity(items.len());
        for ((i, data), r) in items.into_iter().zip(results) {
            let (b, node) = &chunks[i];
            let r = r.map_err(|source| ConvertError::Codec {
                chunk: format!("{} of /{}", b.id_hex(), tree.path_of(*node)),
                source,
            })?;
            let len = r.plain_len as u64;
            ready.push(match r.chunk {
                Some(e) => Ready {
                    index: i,
                    block: e.block,
                    data: Bytes::from(e.data),
                    len,
                    kept: false,
                },
                None => Ready {
                    index: i,
                    block: *b,
                    data,
                    len,
                    kept: true,
                },
            });
        }
        if tx.send(ready).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// Writes the re-encoded chunks in batches (several in flight) and records each result.
fn writer(
    rx: Receiver<Vec<Ready>>,
    to: &BlockingStore,
    opts: &ReencodeOptions,
    counters: &Counters,
    out: &mut [Option<Block>],
) -> Result<()> {
    let mode = if to.to_string().starts_with("dir://") {
        UploadMode::SetOnly
    } else {
        UploadMode::CheckThenSet
    };
    let max_in_flight = opts.batches_in_flight.max(1);
    let batch_chunks = opts.batch_chunks.max(1);
    let mut inflight: VecDeque<Pending<(u64, u64)>> = VecDeque::new();
    let mut batch: Vec<(Vec<u8>, Bytes)> = Vec::new();
    let mut last_report = std::time::Instant::now();
    let wait = |p: Pending<(u64, u64)>| -> Result<()> {
        let (w, pr) = p.wait().map_err(store_err(to))?;
        counters.written.fetch_add(w, Ordering::Relaxed);
        counters.present.fetch_add(pr, Ordering::Relaxed);
        Ok(())
    };
    let flush = |batch: &mut Vec<(Vec<u8>, Bytes)>,
                 inflight: &mut VecDeque<Pending<(u64, u64)>>|
     -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        while inflight.len() >= max_in_flight {
            if let Some(p) = inflight.pop_front() {
                wait(p)?;
            }
        }
        let items = std::mem::take(batch);
        inflight.push_back(to.start(move |s| crate::pipeline::send_batch(s, items, mode)));
        Ok(())
    };
    for ready in rx {
        for r in ready {
            out[r.index] = Some(r.block);
            counters.done.fetch_add(1, Ordering::Relaxed);
            counters.bytes.fetch_add(r.len, Ordering::Relaxed);
            if r.kept {
                counters.kept.fetch_add(1, Ordering::Relaxed);
            }
            batch.push((r.block.id().to_vec(), r.data));
            if batch.len() >= batch_chunks {
                flush(&mut batch, &mut inflight)?;
            }
        }
        if let Some(p) = &opts.progress {
            if last_report.elapsed() >= std::time::Duration::from_millis(200) {
                p.progress(&counters.report());
                last_report = std::time::Instant::now();
            }
        }
    }
    flush(&mut batch, &mut inflight)?;
    while let Some(p) = inflight.pop_front() {
        wait(p)?;
    }
    Ok(())
}
