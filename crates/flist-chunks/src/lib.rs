//! Reading flist chunks: the layer between the chunk store and every reader of file
//! contents (extract, deep verify, the VM check, the mount, `zflist cat`/`get`, mirrors).
//!
//! A file's contents are chunks held encrypted in a key-value store. Reading one means:
//! fetch it by its store key, decrypt and decompress it, and check both hashes (the stored
//! bytes against the store key, the plaintext against the decryption key). This crate does
//! that once for everyone:
//!
//! - [`decode`], [`plain_matches`], [`stored_matches`]: the only calls of the codec's
//!   checks (the codec is chosen by the block, so a second block codec plugs in there);
//! - [`Pipeline`]: bulk reads, pipelined `get_many` batches decoded on every core, in any
//!   order ([`Pipeline::for_each`]) or in file order ([`Pipeline::read_ordered`]), or a
//!   few chunks at a time for a streaming reader ([`read_batch`]);
//! - [`ChunkSource`]: random access by block (memory LRU, the shared disk [`ChunkCache`],
//!   then the store), one load per chunk however many readers wait, store requests in
//!   flight bounded, [`ChunkSource::prefetch`] to load chunks before they are read;
//! - [`ReadAhead`]: when a reader's access is sequential and which chunks to load ahead.
//!
//! It depends on `flist-format` (the codec) and `flist-store` (the stores) only, so the
//! mount stays embeddable without the converters.
//!
//! # Example
//! ```
//! use flist_chunks::Pipeline;
//! use flist_format::codec::encode_chunk;
//! use flist_store::BlockingStore;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = BlockingStore::open(&format!("dir://{}", dir.path().display()))?;
//! // two chunks of a file, encoded and stored as a packer would
//! let chunks = [encode_chunk(b"hello, "), encode_chunk(b"world")];
//! let items: Vec<_> = chunks
//!     .iter()
//!     .map(|c| (c.block.id().to_vec(), c.data.clone().into()))
//!     .collect();
//! store.set_many(items)?;
//!
//! // read them back in order: fetched, both hashes checked, decoded
//! let blocks: Vec<_> = chunks.iter().map(|c| c.block).collect();
//! let mut file = Vec::new();
//! Pipeline::default().read_ordered(&store, &blocks, |_, plain| {
//!     file.extend_from_slice(&plain);
//!     Ok::<_, flist_chunks::ChunkError>(())
//! })?;
//! assert_eq!(file, b"hello, world");
//! # Ok(()) }
//! ```

#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod cache;
pub mod error;
pub mod pipeline;
pub mod readahead;
pub mod source;
pub mod verify;

pub use cache::ChunkCache;
pub use error::ChunkError;
pub use pipeline::{read_batch, Pipeline};
pub use readahead::ReadAhead;
pub use source::{ChunkSource, Stats, StatsSnapshot};
pub use verify::{
    decode, decode_many, plain_matches, plains_match_many, store_key, stored_matches,
};
