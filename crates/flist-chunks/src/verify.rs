//! The one place chunks are checked: every reader decodes through [`decode`] (both hashes),
//! a cached or already-written plaintext is recognised by [`plain_matches`], and a raw copy
//! (a mirror copying encrypted chunks) by [`stored_matches`]. The codec is chosen by the
//! block (`flist_format::codec::decode_chunk`), so a second block codec plugs in there
//! without touching the readers.

use flist_format::codec::{blake2b, decode_chunk, decode_chunks, plains_match};
use flist_format::Block;

use crate::error::ChunkError;

/// The store key of a block, as the store takes it.
pub fn store_key(block: &Block) -> Vec<u8> {
    block.id().to_vec()
}

/// Checks the stored bytes against the block's store key, decrypts and decompresses them,
/// and checks the plaintext against the block's key.
pub fn decode(block: &Block, data: &[u8]) -> Result<Vec<u8>, ChunkError> {
    Ok(decode_chunk(block, data)?)
}

/// [`decode`] of several chunks at once, faster: hashes several at a time, equal-length
/// chunks decrypted together (`flist_format::codec::decode_chunks`). Results in order.
pub fn decode_many(items: &[(&Block, &[u8])]) -> Vec<Result<Vec<u8>, ChunkError>> {
    decode_chunks(items)
        .into_iter()
        .map(|r| r.map_err(ChunkError::from))
        .collect()
}

/// [`plain_matches`] of several plaintexts at once (hashed several at a time).
pub fn plains_match_many(items: &[(&Block, &[u8])]) -> Vec<bool> {
    plains_match(items)
}

/// True when `plain` is the block's plaintext (its hash is the block's key): a cache entry
/// or a chunk already written by an interrupted extraction.
pub fn plain_matches(block: &Block, plain: &[u8]) -> bool {
    block.matches_plain(plain)
}

/// True when `data` is what the store holds under `key` (its content address: BLAKE2b of
/// the stored bytes, 16 bytes for `.flist` chunks, 32 for `.fl` blocks): what a raw copy of
/// encrypted chunks checks, without decrypting.
pub fn stored_matches(key: &[u8], data: &[u8]) -> bool {
    match key.len() {
        16 => blake2b::<16>(data)[..] == *key,
        32 => blake2b::<32>(data)[..] == *key,
        _ => false,
    }
}
