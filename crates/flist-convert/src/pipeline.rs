//! The chunking pipeline: the producing thread (archive or directory reader) cuts file
//! contents into 512 KiB chunks and hands them, a few at a time, to a pool of encoding
//! workers (hash, snappy, XXTEA); a writer thread deduplicates, batches and sends them to
//! the store (`exists_many` + `set_many`, a bounded number of batches in flight) and
//! records each chunk's [`Block`] by file and index. All queues are bounded, so memory does
//! not grow with the input.

use std::collections::{HashSet, VecDeque};
use std::io::{self, Read};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::{bounded, Receiver, Sender};
use flist_format::codec::CHUNK_SIZE;
use flist_format::{Block, Codec};
use flist_store::{BlockingStore, Pending, SetOutcome, Store, StoreError};

use crate::builder::{ChunkResults, FileId};
use crate::error::{ConvertError, Result};
use crate::options::{Cancel, ConvertOptions, Counters, UploadMode};

/// A job item: one plaintext chunk of one file.
struct JobItem {
    file: FileId,
    index: u32,
    data: Vec<u8>,
}

/// An encoded chunk on its way to the store.
struct Encoded {
    file: FileId,
    index: u32,
    block: Block,
    data: Bytes,
}

/// Jobs are sent once they hold this many plaintext bytes (small files are batched).
const JOB_BYTES: usize = 2 << 20;
/// ... or this many items.
const JOB_ITEMS: usize = 256;
/// A store batch is flushed at this many bytes even if it has fewer chunks.
const BATCH_BYTES: usize = 8 << 20;
/// Chunk keys remembered to skip repeats within one conversion; the set is emptied when it
/// holds this many (about 2 MiB), so memory stays flat however many chunks there are: a
/// chunk repeated after that is offered to the store again, which keeps one copy.
const SEEN_MAX: usize = 114_000;

/// Why adding a file's content stopped.
pub(crate) enum AddError {
    /// Reading the content failed.
    Read(io::Error),
    /// The pipeline stopped (a worker or the store failed); its error is reported instead.
    Closed,
    /// The conversion was cancelled.
    Cancelled,
}

impl AddError {
    /// The conversion error, with a read error mapped by `read`.
    pub(crate) fn into_convert(self, read: impl FnOnce(io::Error) -> ConvertError) -> ConvertError {
        match self {
            AddError::Read(e) => read(e),
            AddError::Closed => ConvertError::Internal("pipeline closed".into()),
            AddError::Cancelled => ConvertError::Cancelled,
        }
    }
}

/// A file content with holes (a sparse file): stretches of zeros that need not be read
/// byte by byte, and whose chunks need not be encoded again.
pub(crate) trait Holes: Read {
    /// Bytes of hole starting at the current position (0: data comes next).
    fn hole_ahead(&self) -> u64;
    /// Moves past `n` bytes of the hole ahead.
    fn skip_hole(&mut self, n: u64) -> io::Result<()>;
}

/// Encoded all-zero chunks by length (the holes of sparse files), made once.
#[derive(Default)]
struct ZeroChunks(Vec<(usize, Block, Bytes)>);

impl ZeroChunks {
    fn get(&mut self, len: usize, codec: Codec, counters: &Counters) -> (Block, Bytes) {
        if let Some((_, b, d)) = self.0.iter().find(|(l, _, _)| *l == len) {
            return (*b, d.clone());
        }
        let c = codec.encode(&vec![0u8; len]);
        counters
            .bytes_encoded
            .fetch_add(len as u64, Ordering::Relaxed);
        let d = Bytes::from(c.data);
        self.0.push((len, c.block, d.clone()));
        (c.block, d)
    }
}

/// The producer's handle on the pipeline.
pub(crate) struct ChunkSender<'c> {
    job_tx: Sender<Vec<JobItem>>,
    /// Chunks encoded here (holes), straight to the writer.
    enc_tx: Sender<Vec<Encoded>>,
    pool_rx: Receiver<Vec<u8>>,
    pending: Vec<JobItem>,
    pending_bytes: usize,
    pending_zeros: Vec<Encoded>,
    zeros: ZeroChunks,
    next_file: FileId,
    cancel: Option<Cancel>,
    codec: Codec,
    counters: &'c Counters,
}

impl ChunkSender<'_> {
    fn buffer(&self) -> Vec<u8> {
        match self.pool_rx.try_recv() {
            Ok(mut b) => {
                b.clear();
                b
            }
            Err(_) => Vec::with_capacity(CHUNK_SIZE),
        }
    }

    /// Reads up to `size` bytes of `r` as one file's content. Returns its id and the
    /// number of bytes read (less than `size` when `r` ended early).
    pub(crate) fn add_file(
        &mut self,
        r: &mut dyn Read,
        size: u64,
    ) -> Result<(FileId, u64), AddError> {
        self.add_sparse(&mut NoHoles(r), size)
    }

    /// [`Self::add_file`] for a content with holes: a chunk lying wholly in a hole is
    /// neither read nor encoded (the encoded zero chunk of its length is reused), so the
    /// work follows the bytes really read, not the size the file claims.
    pub(crate) fn add_sparse(
        &mut self,
        r: &mut dyn Holes,
        size: u64,
    ) -> Result<(FileId, u64), AddError> {
        // A file's id is the slot of its first chunk in the results: the next file starts
        // after its last chunk.
        let file = self.next_file;
        let mut done = 0u64;
        let mut index = 0u32;
        while done < size {
            if self.cancel.as_ref().is_some_and(Cancel::is_cancelled) {
                return Err(AddError::Cancelled);
            }
            let want = (size - done).min(CHUNK_SIZE as u64) as usize;
            if r.hole_ahead() >= want as u64 {
                r.skip_hole(want as u64).map_err(AddError::Read)?;
                let (block, data) = self.zeros.get(want, self.codec, self.counters);
                self.pending_zeros.push(Encoded {
                    file,
                    index,
                    block,
                    data,
                });
                done += want as u64;
                index += 1;
                if self.pending_zeros.len() >= JOB_ITEMS {
                    self.flush()?;
                }
                continue;
            }
            let mut buf = self.buffer();
            let n = r
                .take(want as u64)
                .read_to_end(&mut buf)
                .map_err(AddError::Read)?;
            if n == 0 {
                break;
            }
            done += n as u64;
            self.pending_bytes += n;
            self.pending.push(JobItem {
                file,
                index,
                data: buf,
            });
            index += 1;
            if n < want {
                break;
            }
            if self.pending_bytes >= JOB_BYTES || self.pending.len() >= JOB_ITEMS {
                self.flush()?;
            }
        }
        self.next_file += u64::from(index);
        if self.pending.len() >= JOB_ITEMS {
            self.flush()?;
        }
        Ok((file, done))
    }

    /// Sends the pending job.
    pub(crate) fn flush(&mut self) -> Result<(), AddError> {
        if !self.pending_zeros.is_empty() {
            let zeros = std::mem::take(&mut self.pending_zeros);
            self.enc_tx.send(zeros).map_err(|_| AddError::Closed)?;
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let job = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        self.job_tx.send(job).map_err(|_| AddError::Closed)
    }
}

/// A content without holes.
struct NoHoles<'r>(&'r mut dyn Read);

impl Read for NoHoles<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Holes for NoHoles<'_> {
    fn hole_ahead(&self) -> u64 {
        0
    }

    fn skip_hole(&mut self, _n: u64) -> io::Result<()> {
        Ok(())
    }
}

/// Encodes jobs with `codec` until the job channel closes.
fn worker(
    codec: Codec,
    jobs: Receiver<Vec<JobItem>>,
    out: Sender<Vec<Encoded>>,
    pool: Sender<Vec<u8>>,
    counters: &Counters,
) {
    for job in jobs {
        let plains: Vec<&[u8]> = job.iter().map(|i| i.data.as_slice()).collect();
        let bytes: usize = plains.iter().map(|p| p.len()).sum();
        counters
            .bytes_encoded
            .fetch_add(bytes as u64, Ordering::Relaxed);
        let coded = codec.encode_many(&plains);
        let mut enc = Vec::with_capacity(job.len());
        for (item, c) in job.into_iter().zip(coded) {
            let _ = pool.try_send(item.data);
            enc.push(Encoded {
                file: item.file,
                index: item.index,
                block: c.block,
                data: Bytes::from(c.data),
            });
        }
        if out.send(enc).is_err() {
            return;
        }
    }
}

/// Sends one batch: presence check (by mode), then `set_many` of what is missing. Returns
/// (chunks written, chunks present).
pub(crate) async fn send_batch(
    store: Arc<dyn Store>,
    items: Vec<(Vec<u8>, Bytes)>,
    mode: UploadMode,
) -> Result<(u64, u64), StoreError> {
    let (todo, mut present) = match mode {
        UploadMode::SetOnly => (items, 0u64),
        UploadMode::CheckThenSet | UploadMode::Auto => {
            let keys: Vec<Vec<u8>> = items.iter().map(|(k, _)| k.clone()).collect();
            let exists = store.exists_many(&keys).await?;
            let before = items.len();
            let todo: Vec<_> = items
                .into_iter()
                .zip(exists)
                .filter(|(_, e)| !e)
                .map(|(i, _)| i)
                .collect();
            let present = (before - todo.len()) as u64;
            (todo, present)
        }
    };
    let mut written = 0u64;
    if !todo.is_empty() {
        for o in store.set_many(&todo).await? {
            match o {
                SetOutcome::Written => written += 1,
                SetOutcome::AlreadyPresent => present += 1,
            }
        }
    }
    Ok((written, present))
}

/// Deduplicates and stores encoded chunks; returns the blocks by file.
fn writer(
    rx: Receiver<Vec<Encoded>>,
    store: Option<&BlockingStore>,
    opts: &ConvertOptions,
    counters: &Counters,
) -> Result<ChunkResults> {
    let mut results = ChunkResults::new(opts.codec);
    // The first 16 bytes of each store key (all of an `.flist` key, half of an `.fl` id).
    let mut seen: HashSet<[u8; 16]> = HashSet::new();
    let mut batch: Vec<(Vec<u8>, Bytes)> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut inflight: VecDeque<Pending<(u64, u64)>> = VecDeque::new();
    let mode = match (opts.upload, store) {
        (UploadMode::Auto, Some(s)) if s.to_string().starts_with("dir://") => UploadMode::SetOnly,
        (UploadMode::Auto, _) => UploadMode::CheckThenSet,
        (m, _) => m,
    };
    let max_inflight = opts.batches_in_flight.max(1);
    let batch_chunks = opts.batch_chunks.max(1);

    let wait = |store: &BlockingStore, b: Pending<(u64, u64)>| -> Result<()> {
        let (w, p) = b.wait().map_err(|source| ConvertError::Store {
            store: store.to_string(),
            source,
        })?;
        counters.chunks_new.fetch_add(w, Ordering::Relaxed);
        counters.chunks_present.fetch_add(p, Ordering::Relaxed);
        Ok(())
    };

    let flush = |batch: &mut Vec<(Vec<u8>, Bytes)>,
                 inflight: &mut VecDeque<Pending<(u64, u64)>>|
     -> Result<()> {
        let Some(store) = store else {
            batch.clear();
            return Ok(());
        };
        if batch.is_empty() {
            return Ok(());
        }
        while inflight.len() >= max_inflight {
            if let Some(b) = inflight.pop_front() {
                wait(store, b)?;
            }
        }
        let items = std::mem::take(batch);
        inflight.push_back(store.start(move |s| send_batch(s, items, mode)));
        Ok(())
    };

    for encs in rx {
        for e in encs {
            results.put(e.file, e.index, e.block);
            if seen.len() >= SEEN_MAX {
                seen.clear();
            }
            if !seen.insert(id_prefix(&e.block)) {
                counters.chunks_dedup.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            batch_bytes += e.data.len();
            batch.push((e.block.id().to_vec(), e.data));
            if batch.len() >= batch_chunks || batch_bytes >= BATCH_BYTES {
                flush(&mut batch, &mut inflight)?;
                batch_bytes = 0;
            }
        }
    }
    flush(&mut batch, &mut inflight)?;
    if let Some(store) = store {
        while let Some(b) = inflight.pop_front() {
            wait(store, b)?;
        }
    }
    Ok(results)
}

/// The first 16 bytes of a block's store key.
fn id_prefix(b: &Block) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&b.id()[..16]);
    out
}

/// Number of encoding workers for these options.
pub(crate) fn worker_count(opts: &ConvertOptions) -> usize {
    worker_count_of(opts.workers)
}

/// `workers`, or one per core when 0.
pub(crate) fn worker_count_of(workers: usize) -> usize {
    if workers > 0 {
        workers
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    }
}

/// Runs `produce` on the calling thread with a [`ChunkSender`], encoding and storing
/// chunks on other threads. Returns what `produce` returned and every chunk's block.
/// When `produce` fails, its error is returned; when the pipeline fails (store error),
/// the pipeline's error is returned.
pub(crate) fn run<T>(
    store: Option<&BlockingStore>,
    opts: &ConvertOptions,
    counters: &Counters,
    produce: impl FnOnce(&mut ChunkSender<'_>) -> Result<T>,
) -> Result<(T, ChunkResults)> {
    let workers = worker_count(opts);
    let (job_tx, job_rx) = bounded::<Vec<JobItem>>(workers * 2);
    let (enc_tx, enc_rx) = bounded::<Vec<Encoded>>(workers * 2);
    let (pool_tx, pool_rx) = bounded::<Vec<u8>>(workers * 4 + 8);

    let outcome = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for i in 0..workers {
            let (jr, et, pt) = (job_rx.clone(), enc_tx.clone(), pool_tx.clone());
            handles.push(
                std::thread::Builder::new()
                    .name(format!("flist-encode-{i}"))
                    .spawn_scoped(s, move || worker(opts.codec, jr, et, pt, counters)),
            );
        }
        drop(job_rx);
        drop(pool_tx);
        let writer_handle = std::thread::Builder::new()
            .name("flist-store-writer".into())
            .spawn_scoped(s, || writer(enc_rx, store, opts, counters));

        let mut sender = ChunkSender {
            job_tx,
            enc_tx,
            pool_rx,
            pending: Vec::new(),
            pending_bytes: 0,
            pending_zeros: Vec::new(),
            zeros: ZeroChunks::default(),
            next_file: 0,
            cancel: opts.cancel.clone(),
            codec: opts.codec,
            counters,
        };
        let produced = produce(&mut sender).and_then(|t| match sender.flush() {
            Ok(()) => Ok(t),
            Err(e) => Err(e.into_convert(ConvertError::Input)),
        });
        drop(sender);
        for h in handles {
            match h {
                Ok(h) => {
                    if h.join().is_err() {
                        return Err(ConvertError::Internal("an encoding worker panicked".into()));
                    }
                }
                Err(e) => return Err(ConvertError::Internal(format!("spawning a worker: {e}"))),
            }
        }
        let written = match writer_handle {
            Ok(h) => h
                .join()
                .map_err(|_| ConvertError::Internal("the store writer panicked".into()))?,
            Err(e) => Err(ConvertError::Internal(format!(
                "spawning the store writer: {e}"
            ))),
        };
        match (produced, written) {
            (Ok(t), Ok(r)) => Ok((t, r)),
            // The store's failure explains why the producer saw a closed pipeline.
            (Err(ConvertError::Internal(_)), Err(w)) => Err(w),
            (Err(p), _) => Err(p),
            (Ok(_), Err(w)) => Err(w),
        }
    });
    outcome
}
