//! Chunk-level work shared by the commands: listing the chunks of a tree, downloading a
//! file, and chunking local files for upload. (Presence checks are `flist_convert::verify`,
//! batched EXISTS.)

use std::collections::HashSet;
use std::io::{Read, Write};

use bytes::Bytes;
use flist_format::codec::CHUNK_SIZE;
use flist_format::{Block, Kind, NodeId, Tree};
use flist_store::{BlockingStore, SetOutcome, StoreError};

use crate::response::Progress;

/// Chunks per download batch (about 8 MiB of plaintext).
pub const GET_BATCH: usize = 16;
/// Upload batch: flushed at this many chunks or [`UPLOAD_BATCH_BYTES`].
pub const UPLOAD_BATCH: usize = 64;
/// Upload batch size in bytes.
pub const UPLOAD_BATCH_BYTES: usize = 8 << 20;

/// Every chunk reference of the tree, in walk order: (file node, block).
pub fn chunk_refs(tree: &Tree) -> Vec<(NodeId, Block)> {
    let mut out = Vec::new();
    for id in tree.walk() {
        if let Kind::File { blocks, .. } = &tree.node(id).kind {
            out.extend(blocks.iter().map(|b| (id, *b)));
        }
    }
    out
}

/// The distinct store keys of `refs`, in first-seen order.
pub fn unique_keys(refs: &[(NodeId, Block)]) -> Vec<Vec<u8>> {
    let mut seen = HashSet::with_capacity(refs.len());
    refs.iter()
        .filter(|(_, b)| seen.insert(*b))
        .map(|(_, b)| b.id().to_vec())
        .collect()
}

/// Errors while downloading a file.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A chunk could not be read: the store failed or lacks it, or it did not decode.
    #[error(transparent)]
    Chunk(#[from] flist_chunks::ChunkError),
    /// Writing the output failed.
    #[error("writing the output: {0}")]
    Write(#[source] std::io::Error),
    /// The decoded file has not the recorded size.
    #[error("decoded {got} bytes, the flist records {want}")]
    Size {
        /// Bytes decoded.
        got: u64,
        /// Recorded size.
        want: u64,
    },
}

/// Downloads, checks and decodes the chunks of a file (the chunk-reading pipeline:
/// pipelined batches), writing the plaintext to `out` in order.
pub fn fetch_file(
    store: &BlockingStore,
    blocks: &[Block],
    size: u64,
    out: &mut dyn Write,
    progress: &dyn Progress,
) -> Result<(), FetchError> {
    let total = blocks.len() as u64;
    let mut written = 0u64;
    let pipeline = flist_chunks::Pipeline {
        batch_chunks: GET_BATCH,
        ..Default::default()
    };
    pipeline.read_ordered(store, blocks, |i, plain| -> Result<(), FetchError> {
        out.write_all(&plain).map_err(FetchError::Write)?;
        written += plain.len() as u64;
        let done = i as u64 + 1;
        if done.is_multiple_of(GET_BATCH as u64) || done == total {
            progress.update("downloading chunks", done, total);
        }
        Ok(())
    })?;
    if written != size {
        return Err(FetchError::Size {
            got: written,
            want: size,
        });
    }
    Ok(())
}

/// Counters of an upload session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UploadStats {
    /// Chunks produced.
    pub chunks: u64,
    /// Chunks written to the store.
    pub written: u64,
    /// Chunks the store already had (or that were produced twice).
    pub present: u64,
    /// Encrypted bytes sent.
    pub bytes: u64,
}

/// Chunks local data and uploads the chunks in batches (`set_many`), skipping chunks it
/// already sent. Without a store it only computes the keys.
pub struct Uploader {
    store: Option<BlockingStore>,
    pending: Vec<(Vec<u8>, Bytes)>,
    pending_bytes: usize,
    sent: HashSet<Vec<u8>>,
    codec: flist_format::Codec,
    /// Counters so far.
    pub stats: UploadStats,
}

impl Uploader {
    /// An uploader to `store` (`None`: compute keys only).
    pub fn new(store: Option<BlockingStore>) -> Self {
        Uploader {
            store,
            pending: Vec::new(),
            pending_bytes: 0,
            sent: HashSet::new(),
            codec: flist_format::Codec::Flist,
            stats: UploadStats::default(),
        }
    }

    /// Encodes chunks with `codec` (that of the flist they go into) instead of the
    /// `.flist` one.
    pub fn with_codec(mut self, codec: flist_format::Codec) -> Self {
        self.codec = codec;
        self
    }

    /// True when chunks are really uploaded.
    pub fn uploads(&self) -> bool {
        self.store.is_some()
    }

    /// Reads `reader` to the end in 512 KiB chunks, queues each for upload and returns the
    /// size and the blocks.
    pub fn chunk_reader(
        &mut self,
        reader: &mut dyn Read,
    ) -> Result<(u64, Vec<Block>), UploadError> {
        let mut blocks = Vec::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; CHUNK_SIZE];
        loop {
            let n = read_full(reader, &mut buf).map_err(UploadError::Read)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            let chunk = self.codec.encode(&buf[..n]);
            blocks.push(chunk.block);
            self.stats.chunks += 1;
            self.queue(chunk.block.id().to_vec(), chunk.data)?;
            if n < buf.len() {
                break;
            }
        }
        Ok((size, blocks))
    }

    fn queue(&mut self, hash: Vec<u8>, data: Vec<u8>) -> Result<(), UploadError> {
        if self.store.is_none() {
            return Ok(());
        }
        if !self.sent.insert(hash.clone()) {
            self.stats.present += 1;
            return Ok(());
        }
        self.pending_bytes += data.len();
        self.pending.push((hash, Bytes::from(data)));
        if self.pending.len() >= UPLOAD_BATCH || self.pending_bytes >= UPLOAD_BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends the queued chunks.
    pub fn flush(&mut self) -> Result<(), UploadError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        if self.pending.is_empty() {
            return Ok(());
        }
        let items = std::mem::take(&mut self.pending);
        let bytes: u64 = items.iter().map(|(_, v)| v.len() as u64).sum();
        self.pending_bytes = 0;
        let outcomes = store.set_many(items)?;
        for o in outcomes {
            match o {
                SetOutcome::Written => self.stats.written += 1,
                SetOutcome::AlreadyPresent => self.stats.present += 1,
            }
        }
        self.stats.bytes += bytes;
        Ok(())
    }
}

/// Errors while chunking and uploading local data.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Reading the local data failed.
    #[error("reading: {0}")]
    Read(#[source] std::io::Error),
    /// The store refused the chunks.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reads until `buf` is full or the end of input; returns the bytes read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
