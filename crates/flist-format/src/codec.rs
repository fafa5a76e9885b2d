//! The chunk codecs: how a plaintext chunk becomes the encrypted, content-addressed bytes
//! stored in the chunk store, and back. There are two, one per flist format ([`Codec`]):
//!
//! - the 0-flist codec (`.flist`, the functions at the top of this module):
//!   `K = BLAKE2b-16(P)`, `C = snappy(P)` (raw block format), `E = XXTEA(C, K)` with a
//!   length word appended, `H = BLAKE2b-16(E)`. `H` is the store key, `K` the decryption key.
//! - the rfs codec (`.fl`, [`rfs`]): `K = BLAKE2b-32(P)`, `C = snappy(P)` (raw),
//!   `E = AES-256-GCM(C)` under key `K` with nonce `K[0..12]` (ciphertext then the 16-byte
//!   tag), `ID = BLAKE2b-32(E)`. `ID` is the store key.
//!
//! Both cut files into 512 KiB chunks ([`CHUNK_SIZE`]). [`decode_chunk`] decodes either,
//! by the [`Block`] variant.

use crate::error::CodecError;
use crate::tree::Block;

mod lanes;

/// Which chunk codec: the one of `.flist` files or the one of rfs `.fl` files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Codec {
    /// The 0-flist codec (`.flist`): BLAKE2b-128, snappy, XXTEA.
    #[default]
    Flist,
    /// The rfs codec (`.fl`): BLAKE2b-256, snappy, AES-256-GCM.
    Rfs,
}

impl Codec {
    /// Encodes one plaintext chunk.
    pub fn encode(self, plain: &[u8]) -> EncodedChunk {
        match self {
            Codec::Flist => encode_chunk(plain),
            Codec::Rfs => rfs::encode_block(plain),
        }
    }

    /// Encodes several chunks (the same result as [`Codec::encode`] on each, faster).
    pub fn encode_many(self, plains: &[&[u8]]) -> Vec<EncodedChunk> {
        match self {
            Codec::Flist => encode_chunks(plains),
            Codec::Rfs => rfs::encode_blocks(plains),
        }
    }

    /// Length of this codec's store keys in bytes (16 or 32).
    pub fn id_len(self) -> usize {
        match self {
            Codec::Flist => 16,
            Codec::Rfs => 32,
        }
    }

    /// A short name: `flist` or `rfs`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Flist => "flist",
            Codec::Rfs => "rfs",
        }
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Plaintext chunk size: 512 KiB.
pub const CHUNK_SIZE: usize = 512 * 1024;
/// `File.blockSize` written to flists, in 4 KiB units (512 KiB).
pub const BLOCK_SIZE_UNITS: u16 = 128;

/// Unkeyed BLAKE2b with an `N`-byte digest (the digest length is in the parameter block, so
/// this is not a truncated BLAKE2b-512).
pub fn blake2b<const N: usize>(data: &[u8]) -> [u8; N] {
    let hash = blake2b_simd::Params::new().hash_length(N).hash(data);
    let mut out = [0u8; N];
    out.copy_from_slice(hash.as_bytes());
    out
}

/// BLAKE2b-16 as hex: the key of a directory row for `path`.
pub fn dir_key(path: &str) -> String {
    hex::encode(blake2b::<16>(path.as_bytes()))
}

/// Number of chunks of a file of `size` bytes.
pub fn chunk_count(size: u64) -> u64 {
    size.div_ceil(CHUNK_SIZE as u64)
}

/// A chunk ready for the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedChunk {
    /// Store key and decryption key.
    pub block: Block,
    /// Encrypted compressed bytes (`E`), the value to store under `block.hash`.
    pub data: Vec<u8>,
}

/// Compresses and encrypts one plaintext chunk with the 0-flist codec.
pub fn encode_chunk(plain: &[u8]) -> EncodedChunk {
    let key = blake2b::<16>(plain);
    let compressed = compress(plain);
    let data = xxtea_encrypt(&compressed, &key);
    let hash = blake2b::<16>(&data);
    EncodedChunk {
        block: Block::Flist { hash, key },
        data,
    }
}

/// Checks, decrypts and decompresses a stored chunk of either codec (by the variant of
/// `block`), verifying both hashes.
pub fn decode_chunk(block: &Block, data: &[u8]) -> Result<Vec<u8>, CodecError> {
    let (hash, key) = match block {
        Block::Flist { hash, key } => (hash, key),
        Block::Rfs { id, key } => return rfs::decode_block(id, key, data),
    };
    if blake2b::<16>(data) != *hash {
        return Err(CodecError::HashMismatch {
            chunk: hex::encode(hash),
            what: "stored bytes",
        });
    }
    let compressed = xxtea_decrypt(data, key).ok_or_else(|| CodecError::Decrypt {
        chunk: hex::encode(hash),
    })?;
    let plain = snap::raw::Decoder::new()
        .decompress_vec(&compressed)
        .map_err(|e| CodecError::Decompress {
            chunk: hex::encode(hash),
            reason: e.to_string(),
        })?;
    if blake2b::<16>(&plain) != *key {
        return Err(CodecError::HashMismatch {
            chunk: hex::encode(hash),
            what: "plaintext",
        });
    }
    Ok(plain)
}

/// Raw snappy block compression.
pub fn compress(plain: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(plain)
        .expect("snappy accepts any input below 4 GiB")
}

const DELTA: u32 = 0x9E37_79B9;

fn key_words(key: &[u8; 16]) -> [u32; 4] {
    let mut k = [0u32; 4];
    for (i, w) in k.iter_mut().enumerate() {
        *w = u32::from_le_bytes([key[4 * i], key[4 * i + 1], key[4 * i + 2], key[4 * i + 3]]);
    }
    k
}

/// `data` zero-padded to whole little-endian words, plus one word holding its length.
fn to_words(data: &[u8]) -> Vec<u32> {
    let mut v = Vec::with_capacity(data.len().div_ceil(4) + 1);
    let mut it = data.chunks_exact(4);
    v.extend(
        it.by_ref()
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
    );
    let rest = it.remainder();
    if !rest.is_empty() {
        let mut b = [0u8; 4];
        b[..rest.len()].copy_from_slice(rest);
        v.push(u32::from_le_bytes(b));
    }
    v.push(data.len() as u32);
    v
}

fn from_words(v: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 4);
    for w in v {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out
}

/// The key words of round `sum`, permuted so that `k[(p & 3) ^ e] == ke[p & 3]`.
fn round_key(k: &[u32; 4], sum: u32) -> [u32; 4] {
    let e = ((sum >> 2) & 3) as usize;
    [k[e], k[1 ^ e], k[2 ^ e], k[3 ^ e]]
}

#[inline(always)]
fn mx_fast(sum: u32, y: u32, z: u32, k: u32) -> u32 {
    (((z >> 5) ^ (y << 2)).wrapping_add((y >> 3) ^ (z << 4))) ^ ((sum ^ y).wrapping_add(k ^ z))
}

/// XXTEA encryption in place (`v.len() >= 2`).
fn xxtea_words(v: &mut [u32], k: &[u32; 4]) {
    let n = v.len();
    let rounds = 6 + 52 / n;
    let mut sum: u32 = 0;
    let mut z = v[n - 1];
    for _ in 0..rounds {
        sum = sum.wrapping_add(DELTA);
        // Same as `for p in 0..n { y = v[(p + 1) % n]; v[p] += mx(sum, y, z, p, e, &k); .. }`
        // without a division per word and with the key words pre-permuted: ~1.6x faster.
        let ke = round_key(k, sum);
        for p in 0..n - 1 {
            let y = v[p + 1];
            z = v[p].wrapping_add(mx_fast(sum, y, z, ke[p & 3]));
            v[p] = z;
        }
        let y = v[0];
        z = v[n - 1].wrapping_add(mx_fast(sum, y, z, ke[(n - 1) & 3]));
        v[n - 1] = z;
    }
}

/// [`xxtea_words`] on two vectors at once. Each word depends on the previous one, so one
/// vector keeps the CPU waiting on that chain; two independent chains interleaved use the
/// idle execution units (~1.4x the throughput of two single runs).
fn xxtea_words_pair(a: &mut [u32], ka: &[u32; 4], b: &mut [u32], kb: &[u32; 4]) {
    let (na, nb) = (a.len(), b.len());
    let rounds = 6 + 52 / na;
    if rounds != 6 + 52 / nb {
        xxtea_words(a, ka);
        xxtea_words(b, kb);
        return;
    }
    let common = na.min(nb) - 1;
    let mut sum: u32 = 0;
    let (mut za, mut zb) = (a[na - 1], b[nb - 1]);
    for _ in 0..rounds {
        sum = sum.wrapping_add(DELTA);
        let (kea, keb) = (round_key(ka, sum), round_key(kb, sum));
        let (ah, bh) = (&mut a[..=common], &mut b[..=common]);
        for p in 0..common {
            let ya = ah[p + 1];
            za = ah[p].wrapping_add(mx_fast(sum, ya, za, kea[p & 3]));
            ah[p] = za;
            let yb = bh[p + 1];
            zb = bh[p].wrapping_add(mx_fast(sum, yb, zb, keb[p & 3]));
            bh[p] = zb;
        }
        for p in common..na - 1 {
            let y = a[p + 1];
            za = a[p].wrapping_add(mx_fast(sum, y, za, kea[p & 3]));
            a[p] = za;
        }
        for p in common..nb - 1 {
            let y = b[p + 1];
            zb = b[p].wrapping_add(mx_fast(sum, y, zb, keb[p & 3]));
            b[p] = zb;
        }
        let y = a[0];
        za = a[na - 1].wrapping_add(mx_fast(sum, y, za, kea[(na - 1) & 3]));
        a[na - 1] = za;
        let y = b[0];
        zb = b[nb - 1].wrapping_add(mx_fast(sum, y, zb, keb[(nb - 1) & 3]));
        b[nb - 1] = zb;
    }
}

/// XXTEA-encrypts `data` zero-padded to whole words plus one word holding its length.
pub fn xxtea_encrypt(data: &[u8], key: &[u8; 16]) -> Vec<u8> {
    let mut v = to_words(data);
    xxtea_words(&mut v, &key_words(key));
    from_words(&v)
}

/// Encodes several chunks: the same result as [`encode_chunk`] on each, faster (the
/// hashes run four at a time, the encryption on several chunks at a time).
pub fn encode_chunks(plains: &[&[u8]]) -> Vec<EncodedChunk> {
    // One compression buffer for the whole batch (no zeroed allocation per chunk).
    let mut snappy = snap::raw::Encoder::new();
    let mut buf = Vec::new();
    let mut compress_words = |plain: &[u8]| -> Vec<u32> {
        let need = snap::raw::max_compress_len(plain.len());
        if buf.len() < need {
            buf.resize(need, 0);
        }
        match snappy.compress(plain, &mut buf) {
            Ok(n) => to_words(&buf[..n]),
            Err(_) => to_words(&compress(plain)),
        }
    };
    let keys = blake2b16_many(plains);
    let mut words: Vec<Vec<u32>> = plains.iter().map(|p| compress_words(p)).collect();
    encrypt_batch(&mut words, &keys);
    let sealed: Vec<Vec<u8>> = words.iter().map(|w| from_words(w)).collect();
    let refs: Vec<&[u8]> = sealed.iter().map(Vec::as_slice).collect();
    let hashes = blake2b16_many(&refs);
    sealed
        .into_iter()
        .zip(hashes)
        .zip(keys)
        .map(|((data, hash), key)| EncodedChunk {
            block: Block::Flist { hash, key },
            data,
        })
        .collect()
}

/// Runs of at least this many equal-length chunks go through [`lanes`]; shorter ones are
/// encrypted in pairs.
const MIN_LANES: usize = 3;

/// The indices of `lens` in groups for [`lanes`] (equal lengths, up to [`lanes::LANES`],
/// at least [`MIN_LANES`]) and the rest, in order.
fn lane_groups(lens: &[usize]) -> (Vec<Vec<usize>>, Vec<usize>) {
    let mut order: Vec<usize> = (0..lens.len()).collect();
    order.sort_by_key(|&i| lens[i]);
    let (mut groups, mut rest) = (Vec::new(), Vec::new());
    for run in order.chunk_by(|a, b| lens[*a] == lens[*b]) {
        for group in run.chunks(lanes::LANES) {
            if group.len() >= MIN_LANES {
                groups.push(group.to_vec());
            } else {
                rest.extend_from_slice(group);
            }
        }
    }
    rest.sort_unstable();
    (groups, rest)
}

/// XXTEA-encrypts each word vector under its key: equal-length ones several at a time in
/// [`lanes`], the others two at a time.
fn encrypt_batch(words: &mut [Vec<u32>], keys: &[[u8; 16]]) {
    let lens: Vec<usize> = words.iter().map(Vec::len).collect();
    let (groups, rest) = lane_groups(&lens);
    for group in groups {
        let mut ws: Vec<Vec<u32>> = group
            .iter()
            .map(|&i| std::mem::take(&mut words[i]))
            .collect();
        let ks: Vec<&[u8; 16]> = group.iter().map(|&i| &keys[i]).collect();
        lanes::encrypt_words(&mut ws, &ks);
        for (i, w) in group.into_iter().zip(ws) {
            words[i] = w;
        }
    }
    for pair in rest.chunks(2) {
        match *pair {
            [a, b] => {
                let (ka, kb) = (key_words(&keys[a]), key_words(&keys[b]));
                let (lo, hi) = words.split_at_mut(b);
                xxtea_words_pair(&mut lo[a], &ka, &mut hi[0], &kb);
            }
            [a] => xxtea_words(&mut words[a], &key_words(&keys[a])),
            _ => {}
        }
    }
}

/// For each `(block, plain)`: true when `plain` is the block's plaintext (its hash is the
/// block's key), as [`Block::matches_plain`], hashing several at once.
pub fn plains_match(items: &[(&Block, &[u8])]) -> Vec<bool> {
    let flist: Vec<&[u8]> = items
        .iter()
        .filter(|(b, _)| matches!(b, Block::Flist { .. }))
        .map(|(_, p)| *p)
        .collect();
    let rfs: Vec<&[u8]> = items
        .iter()
        .filter(|(b, _)| matches!(b, Block::Rfs { .. }))
        .map(|(_, p)| *p)
        .collect();
    let mut flist = blake2b_many::<16>(&flist).into_iter();
    let mut rfs = blake2b_many::<32>(&rfs).into_iter();
    items
        .iter()
        .map(|(b, _)| match b {
            Block::Flist { key, .. } => flist.next().as_ref() == Some(key),
            Block::Rfs { key, .. } => rfs.next().as_ref() == Some(key),
        })
        .collect()
}

/// BLAKE2b-16 of each input, several at once; see [`blake2b_many`].
fn blake2b16_many(inputs: &[&[u8]]) -> Vec<[u8; 16]> {
    blake2b_many(inputs)
}

/// Unkeyed BLAKE2b with an `N`-byte digest of each input, several at once
/// (`blake2b_simd::many`: 4 inputs in the lanes of AVX2 registers, 2 with SSE4.1), ~2x the
/// throughput of one at a time.
pub fn blake2b_many<const N: usize>(inputs: &[&[u8]]) -> Vec<[u8; N]> {
    use blake2b_simd::many::{hash_many, HashManyJob};
    let mut params = blake2b_simd::Params::new();
    params.hash_length(N);
    let mut jobs: Vec<HashManyJob> = inputs
        .iter()
        .map(|i| HashManyJob::new(&params, i))
        .collect();
    hash_many(jobs.iter_mut());
    jobs.iter()
        .map(|j| {
            let mut out = [0u8; N];
            out.copy_from_slice(j.to_hash().as_bytes());
            out
        })
        .collect()
}

/// XXTEA decryption in place (`v.len() >= 2`).
fn xxtea_unwords(v: &mut [u32], k: &[u32; 4]) {
    let n = v.len();
    let rounds = 6 + 52 / n;
    let mut sum = (rounds as u32).wrapping_mul(DELTA);
    let mut y = v[0];
    for _ in 0..rounds {
        // Same as `for p in (0..n).rev() { z = v[(p + n - 1) % n]; v[p] -= mx(..); y = v[p] }`
        // without a division per word and with the key words pre-permuted (as encryption).
        let ke = round_key(k, sum);
        for p in (1..n).rev() {
            let z = v[p - 1];
            y = v[p].wrapping_sub(mx_fast(sum, y, z, ke[p & 3]));
            v[p] = y;
        }
        let z = v[n - 1];
        y = v[0].wrapping_sub(mx_fast(sum, y, z, ke[0]));
        v[0] = y;
        sum = sum.wrapping_sub(DELTA);
    }
}

/// [`xxtea_unwords`] on two vectors at once (two independent chains interleaved, as
/// [`xxtea_words_pair`] encrypts); each chain runs in its own order, the tail of the longer
/// one alone first.
fn xxtea_unwords_pair(a: &mut [u32], ka: &[u32; 4], b: &mut [u32], kb: &[u32; 4]) {
    let (na, nb) = (a.len(), b.len());
    let rounds = 6 + 52 / na;
    if rounds != 6 + 52 / nb {
        xxtea_unwords(a, ka);
        xxtea_unwords(b, kb);
        return;
    }
    let common = na.min(nb);
    let mut sum = (rounds as u32).wrapping_mul(DELTA);
    let (mut ya, mut yb) = (a[0], b[0]);
    for _ in 0..rounds {
        let (kea, keb) = (round_key(ka, sum), round_key(kb, sum));
        for p in (common..na).rev() {
            let z = a[p - 1];
            ya = a[p].wrapping_sub(mx_fast(sum, ya, z, kea[p & 3]));
            a[p] = ya;
        }
        for p in (common..nb).rev() {
            let z = b[p - 1];
            yb = b[p].wrapping_sub(mx_fast(sum, yb, z, keb[p & 3]));
            b[p] = yb;
        }
        let (ah, bh) = (&mut a[..common], &mut b[..common]);
        for p in (1..common).rev() {
            let za = ah[p - 1];
            ya = ah[p].wrapping_sub(mx_fast(sum, ya, za, kea[p & 3]));
            ah[p] = ya;
            let zb = bh[p - 1];
            yb = bh[p].wrapping_sub(mx_fast(sum, yb, zb, keb[p & 3]));
            bh[p] = yb;
        }
        let z = a[na - 1];
        ya = a[0].wrapping_sub(mx_fast(sum, ya, z, kea[0]));
        a[0] = ya;
        let z = b[nb - 1];
        yb = b[0].wrapping_sub(mx_fast(sum, yb, z, keb[0]));
        b[0] = yb;
        sum = sum.wrapping_sub(DELTA);
    }
}

/// Reverses [`xxtea_encrypt`]; `None` when the input is not whole words or the embedded
/// length is impossible (wrong key or corrupt data).
pub fn xxtea_decrypt(data: &[u8], key: &[u8; 16]) -> Option<Vec<u8>> {
    if !decryptable(data) {
        return None;
    }
    let mut v: Vec<u32> = data
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    xxtea_unwords(&mut v, &key_words(key));
    unwords(&v)
}

/// Whole words, at least two.
fn decryptable(data: &[u8]) -> bool {
    data.len() >= 8 && data.len().is_multiple_of(4)
}

/// The bytes of decrypted words: all but the last, cut to the length the last one holds;
/// `None` when that length is impossible.
fn unwords(v: &[u32]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(4 * v.len());
    for w in v {
        out.extend_from_slice(&w.to_le_bytes());
    }
    cut_to_length(out)
}

/// Decrypted bytes (whole words, the last one holding the length) cut to that length, in
/// place; `None` when the length is impossible.
fn cut_to_length(mut out: Vec<u8>) -> Option<Vec<u8>> {
    let at = out.len().checked_sub(4)?;
    let m = u32::from_le_bytes([out[at], out[at + 1], out[at + 2], out[at + 3]]) as usize;
    if m > at || m + 3 < at {
        return None;
    }
    out.truncate(m);
    Some(out)
}

/// A `.flist` chunk of a batch being decoded: its index, store hash, key and stored bytes.
type Pending<'a> = (usize, &'a [u8; 16], &'a [u8; 16], &'a [u8]);

/// The `.flist` chunks of `items` whose stored bytes match their store key and are whole
/// words (hashed four at a time), and per item the error that stops it (`None` for those
/// and for rfs blocks).
fn check_stored<'a>(
    items: &[(&'a Block, &'a [u8])],
) -> (Vec<Pending<'a>>, Vec<Option<CodecError>>) {
    let stored: Vec<&[u8]> = items
        .iter()
        .filter(|(b, _)| matches!(b, Block::Flist { .. }))
        .map(|(_, d)| *d)
        .collect();
    let mut stored_hashes = blake2b16_many(&stored).into_iter();
    let mut flist = Vec::new();
    let mut refused = Vec::with_capacity(items.len());
    for (i, (block, data)) in items.iter().enumerate() {
        let Block::Flist { hash, key } = block else {
            refused.push(None);
            continue;
        };
        if stored_hashes.next().as_ref() != Some(hash) {
            refused.push(Some(CodecError::HashMismatch {
                chunk: hex::encode(hash),
                what: "stored bytes",
            }));
        } else if !decryptable(data) {
            refused.push(Some(CodecError::Decrypt {
                chunk: hex::encode(hash),
            }));
        } else {
            refused.push(None);
            flist.push((i, hash, key, *data));
        }
    }
    (flist, refused)
}

/// Decrypts `.flist` chunks (stored hash already checked, whole words): equal lengths in
/// [`lanes`], the rest two at a time. `None` where the embedded length is impossible.
fn decrypt_flist(flist: &[Pending]) -> Vec<Option<Vec<u8>>> {
    let lens: Vec<usize> = flist.iter().map(|f| f.3.len()).collect();
    let (groups, rest) = lane_groups(&lens);
    let mut decrypted: Vec<Option<Vec<u8>>> = vec![None; flist.len()];
    for group in groups {
        let data: Vec<&[u8]> = group.iter().map(|&j| flist[j].3).collect();
        let keys: Vec<&[u8; 16]> = group.iter().map(|&j| flist[j].2).collect();
        for (j, d) in group.iter().zip(lanes::decrypt_bytes(&data, &keys)) {
            decrypted[*j] = cut_to_length(d);
        }
    }
    let words = |d: &[u8]| -> Vec<u32> {
        d.chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    for pair in rest.chunks(2) {
        match *pair {
            [a, b] => {
                let (mut wa, mut wb) = (words(flist[a].3), words(flist[b].3));
                let (ka, kb) = (key_words(flist[a].2), key_words(flist[b].2));
                xxtea_unwords_pair(&mut wa, &ka, &mut wb, &kb);
                decrypted[a] = unwords(&wa);
                decrypted[b] = unwords(&wb);
            }
            [a] => decrypted[a] = xxtea_decrypt(flist[a].3, flist[a].2),
            _ => {}
        }
    }
    decrypted
}

/// Checks, decrypts and decompresses several stored chunks of either codec: the same
/// results as [`decode_chunk`] on each, faster for `.flist` chunks (hashes four at a time,
/// equal-length chunks decrypted together in SIMD lanes, the others two at a time).
pub fn decode_chunks(items: &[(&Block, &[u8])]) -> Vec<Result<Vec<u8>, CodecError>> {
    // every pending .flist entry (`Ok(empty)`) is overwritten below
    let (flist, refused) = check_stored(items);
    let mut out: Vec<Result<Vec<u8>, CodecError>> = items
        .iter()
        .zip(refused)
        .map(|((block, data), refused)| match (block, refused) {
            (Block::Rfs { id, key }, _) => rfs::decode_block(id, key, data),
            (Block::Flist { .. }, Some(e)) => Err(e),
            (Block::Flist { .. }, None) => Ok(Vec::new()),
        })
        .collect();
    let decrypted = decrypt_flist(&flist);
    // decompress, then check the plaintexts four at a time
    let mut decoder = snap::raw::Decoder::new();
    let plains: Vec<Result<Vec<u8>, CodecError>> = flist
        .iter()
        .zip(decrypted)
        .map(|((_, hash, _, _), d)| {
            let compressed = d.ok_or_else(|| CodecError::Decrypt {
                chunk: hex::encode(hash),
            })?;
            decoder
                .decompress_vec(&compressed)
                .map_err(|e| CodecError::Decompress {
                    chunk: hex::encode(hash),
                    reason: e.to_string(),
                })
        })
        .collect();
    let ok: Vec<&[u8]> = plains
        .iter()
        .filter_map(|p| p.as_ref().ok().map(Vec::as_slice))
        .collect();
    let mut plain_hashes = blake2b16_many(&ok).into_iter();
    for ((i, hash, key, _), plain) in flist.iter().zip(plains) {
        out[*i] = plain.and_then(|p| {
            if plain_hashes.next().as_ref() == Some(*key) {
                Ok(p)
            } else {
                Err(CodecError::HashMismatch {
                    chunk: hex::encode(hash),
                    what: "plaintext",
                })
            }
        });
    }
    out
}

/// A stored chunk re-encoded by [`reencode_chunks`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reencoded {
    /// The chunk in the target codec; `None` when it already was of it (checked: its
    /// stored bytes are kept as they are).
    pub chunk: Option<EncodedChunk>,
    /// Length of its plaintext.
    pub plain_len: usize,
}

/// Checks stored chunks of either codec (as [`decode_chunks`]) and encodes each with
/// `target`. `.flist` chunks become rfs blocks without recompressing: the chunk's own
/// snappy stream, once decrypted, is decompressed only to hash the plaintext (its `.flist`
/// key checked, its rfs key made; four at a time, into reused buffers) and is sealed as it
/// is under the rfs key. That is exactly [`rfs::encode_block`] of the plaintext for every
/// chunk compressed by the snappy encoder both codecs use here (all chunks this crate
/// writes), and a valid rfs block of the same plaintext for any other snappy stream.
/// rfs blocks become `.flist` chunks by decoding and encoding.
pub fn reencode_chunks(
    target: Codec,
    items: &[(&Block, &[u8])],
) -> Vec<Result<Reencoded, CodecError>> {
    let (same, other): (Vec<_>, Vec<_>) = items.iter().partition(|(b, _)| b.codec() == target);
    let mut same = decode_chunks(&same).into_iter().map(|r| {
        r.map(|p| Reencoded {
            chunk: None,
            plain_len: p.len(),
        })
    });
    let mut other = match target {
        Codec::Rfs => flist_to_rfs(&other),
        Codec::Flist => {
            let decoded = decode_chunks(&other);
            let ok: Vec<&[u8]> = decoded
                .iter()
                .filter_map(|r| r.as_ref().ok().map(Vec::as_slice))
                .collect();
            let mut encoded = encode_chunks(&ok).into_iter();
            decoded
                .into_iter()
                .map(|r| {
                    r.map(|p| Reencoded {
                        chunk: encoded.next(),
                        plain_len: p.len(),
                    })
                })
                .collect()
        }
    }
    .into_iter();
    items
        .iter()
        .filter_map(|(b, _)| {
            if b.codec() == target {
                same.next()
            } else {
                other.next()
            }
        })
        .collect()
}

/// [`reencode_chunks`] of `.flist` chunks into rfs blocks.
fn flist_to_rfs(items: &[(&Block, &[u8])]) -> Vec<Result<Reencoded, CodecError>> {
    use blake2b_simd::many::{hash_many, HashManyJob};
    let (flist, refused) = check_stored(items);
    let mut decrypted = decrypt_flist(&flist).into_iter();
    let (mut p16, mut p32) = (blake2b_simd::Params::new(), blake2b_simd::Params::new());
    p16.hash_length(16);
    p32.hash_length(32);
    let mut decoder = snap::raw::Decoder::new();
    let mut plains: [Vec<u8>; 4] = Default::default();
    // per pending chunk: (sealed bytes, rfs key, plaintext length)
    type Sealed = Result<(Vec<u8>, [u8; 32], usize), CodecError>;
    let mut sealed: Vec<Sealed> = Vec::with_capacity(flist.len());
    for group in flist.chunks(plains.len()) {
        let compressed: Vec<Result<Vec<u8>, CodecError>> = group
            .iter()
            .zip(plains.iter_mut())
            .map(|((_, hash, _, _), plain)| {
                let chunk = || hex::encode(hash);
                let c = decrypted
                    .next()
                    .flatten()
                    .ok_or_else(|| CodecError::Decrypt { chunk: chunk() })?;
                let refused = |reason: String| CodecError::Decompress {
                    chunk: chunk(),
                    reason,
                };
                let len = snap::raw::decompress_len(&c).map_err(|e| refused(e.to_string()))?;
                if len > rfs::MAX_PLAIN {
                    return Err(refused(format!(
                        "claims {len} bytes, more than the {} accepted",
                        rfs::MAX_PLAIN
                    )));
                }
                plain.resize(len, 0);
                let n = decoder
                    .decompress(&c, plain)
                    .map_err(|e| refused(e.to_string()))?;
                plain.truncate(n);
                Ok(c)
            })
            .collect();
        // both keys of each plaintext, hashed together
        let hashes: Vec<blake2b_simd::Hash> = {
            let mut jobs: Vec<HashManyJob> = compressed
                .iter()
                .zip(&plains)
                .filter(|(c, _)| c.is_ok())
                .flat_map(|(_, p)| [HashManyJob::new(&p16, p), HashManyJob::new(&p32, p)])
                .collect();
            hash_many(jobs.iter_mut());
            jobs.iter().map(HashManyJob::to_hash).collect()
        };
        let mut hashes = hashes.chunks(2);
        for ((c, (_, hash, key, _)), plain) in compressed.into_iter().zip(group).zip(&plains) {
            sealed.push(c.and_then(|c| {
                let (k16, k32) = match hashes.next() {
                    Some([k16, k32]) => (k16.as_bytes(), k32.as_bytes()),
                    _ => (&[][..], &[][..]),
                };
                if k16 != &key[..] {
                    return Err(CodecError::HashMismatch {
                        chunk: hex::encode(hash),
                        what: "plaintext",
                    });
                }
                let mut rfs_key = [0u8; 32];
                rfs_key.copy_from_slice(k32);
                Ok((rfs::seal_compressed(c, &rfs_key), rfs_key, plain.len()))
            }));
        }
    }
    let ids = {
        let refs: Vec<&[u8]> = sealed
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|(d, _, _)| d.as_slice()))
            .collect();
        blake2b_many::<32>(&refs)
    };
    let (mut sealed, mut ids) = (sealed.into_iter(), ids.into_iter());
    refused
        .into_iter()
        .filter_map(|refused| match refused {
            Some(e) => Some(Err(e)),
            None => sealed.next(),
        })
        .map(|r| {
            let (data, key, plain_len) = r?;
            let id = ids.next().unwrap_or_default();
            Ok(Reencoded {
                chunk: Some(EncodedChunk {
                    block: Block::Rfs { id, key },
                    data,
                }),
                plain_len,
            })
        })
        .collect()
}

/// The rfs block codec (`.fl`): BLAKE2b-256 key, raw snappy, AES-256-GCM with the nonce
/// `key[0..12]`, BLAKE2b-256 store id of the ciphertext.
pub mod rfs {
    use aes_gcm::aead::{AeadInPlace, KeyInit};
    use aes_gcm::{Aes256Gcm, Nonce};

    use super::{blake2b, blake2b_many, EncodedChunk};
    use crate::error::CodecError;
    use crate::tree::Block;

    /// Length of the AES-GCM tag appended to the ciphertext.
    pub const TAG_LEN: usize = 16;

    /// Largest plaintext a stored block may claim to decompress to (64 MiB): rfs writes
    /// 512 KiB blocks; a hostile block cannot make a reader allocate more than this.
    pub const MAX_PLAIN: usize = 64 << 20;

    fn cipher(key: &[u8; 32]) -> Aes256Gcm {
        Aes256Gcm::new(key.into())
    }

    /// Compresses `plain` into `buf` (reused) and seals it in place under `key`; returns
    /// the stored bytes (ciphertext then tag).
    fn seal(
        snappy: &mut snap::raw::Encoder,
        buf: &mut Vec<u8>,
        plain: &[u8],
        key: &[u8; 32],
    ) -> Vec<u8> {
        let need = snap::raw::max_compress_len(plain.len());
        if buf.len() < need {
            buf.resize(need, 0);
        }
        let out = match snappy.compress(plain, buf) {
            Ok(n) => {
                let mut v = Vec::with_capacity(n + TAG_LEN);
                v.extend_from_slice(&buf[..n]);
                v
            }
            Err(_) => super::compress(plain),
        };
        seal_compressed(out, key)
    }

    /// Seals the compressed bytes `compressed` in place under `key`: the stored bytes
    /// (ciphertext then tag).
    pub(super) fn seal_compressed(mut compressed: Vec<u8>, key: &[u8; 32]) -> Vec<u8> {
        compressed.reserve_exact(TAG_LEN);
        cipher(key)
            .encrypt_in_place(Nonce::from_slice(&key[..12]), b"", &mut compressed)
            .expect("AES-GCM seals any input below 64 GiB");
        compressed
    }

    /// Encodes one plaintext block.
    pub fn encode_block(plain: &[u8]) -> EncodedChunk {
        let key = blake2b::<32>(plain);
        let data = seal(&mut snap::raw::Encoder::new(), &mut Vec::new(), plain, &key);
        let id = blake2b::<32>(&data);
        EncodedChunk {
            block: Block::Rfs { id, key },
            data,
        }
    }

    /// Encodes several blocks: the same result as [`encode_block`] on each, hashing
    /// several at a time.
    pub fn encode_blocks(plains: &[&[u8]]) -> Vec<EncodedChunk> {
        let keys = blake2b_many::<32>(plains);
        let mut snappy = snap::raw::Encoder::new();
        let mut buf = Vec::new();
        let sealed: Vec<Vec<u8>> = plains
            .iter()
            .zip(&keys)
            .map(|(p, k)| seal(&mut snappy, &mut buf, p, k))
            .collect();
        let refs: Vec<&[u8]> = sealed.iter().map(Vec::as_slice).collect();
        let ids = blake2b_many::<32>(&refs);
        sealed
            .into_iter()
            .zip(ids)
            .zip(keys)
            .map(|((data, id), key)| EncodedChunk {
                block: Block::Rfs { id, key },
                data,
            })
            .collect()
    }

    /// Checks, decrypts and decompresses a stored block, verifying the id, the AES-GCM tag
    /// and the key (the hash of the plaintext).
    pub fn decode_block(id: &[u8; 32], key: &[u8; 32], data: &[u8]) -> Result<Vec<u8>, CodecError> {
        let chunk = || hex::encode(id);
        if blake2b::<32>(data) != *id {
            return Err(CodecError::HashMismatch {
                chunk: chunk(),
                what: "stored bytes",
            });
        }
        let mut buf = data.to_vec();
        cipher(key)
            .decrypt_in_place(Nonce::from_slice(&key[..12]), b"", &mut buf)
            .map_err(|_| CodecError::Decrypt { chunk: chunk() })?;
        let len = snap::raw::decompress_len(&buf).map_err(|e| CodecError::Decompress {
            chunk: chunk(),
            reason: e.to_string(),
        })?;
        if len > MAX_PLAIN {
            return Err(CodecError::Decompress {
                chunk: chunk(),
                reason: format!("claims {len} bytes, more than the {MAX_PLAIN} accepted"),
            });
        }
        let plain = snap::raw::Decoder::new()
            .decompress_vec(&buf)
            .map_err(|e| CodecError::Decompress {
                chunk: chunk(),
                reason: e.to_string(),
            })?;
        if blake2b::<32>(&plain) != *key {
            return Err(CodecError::HashMismatch {
                chunk: chunk(),
                what: "plaintext",
            });
        }
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The XXTEA round function as the algorithm is written (key word chosen per word).
    fn mx(sum: u32, y: u32, z: u32, p: usize, e: usize, k: &[u32; 4]) -> u32 {
        (((z >> 5) ^ (y << 2)).wrapping_add((y >> 3) ^ (z << 4)))
            ^ ((sum ^ y).wrapping_add(k[(p & 3) ^ e] ^ z))
    }

    /// Textbook XXTEA decryption of whole words (indices modulo `n`).
    fn textbook_decrypt(v: &mut [u32], k: &[u32; 4]) {
        let n = v.len();
        let rounds = 6 + 52 / n;
        let mut sum = (rounds as u32).wrapping_mul(DELTA);
        let mut y = v[0];
        for _ in 0..rounds {
            let e = ((sum >> 2) & 3) as usize;
            for p in (0..n).rev() {
                let z = v[(p + n - 1) % n];
                v[p] = v[p].wrapping_sub(mx(sum, y, z, p, e, k));
                y = v[p];
            }
            sum = sum.wrapping_sub(DELTA);
        }
    }

    #[test]
    fn decryption_equals_the_textbook_algorithm() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for n in [2usize, 3, 4, 5, 7, 8, 13, 52, 53, 100, 1025] {
            let words: Vec<u32> = (0..n).map(|_| next() as u32).collect();
            let k: [u32; 4] = std::array::from_fn(|_| next() as u32);
            let mut want = words.clone();
            textbook_decrypt(&mut want, &k);
            let mut got = words;
            xxtea_unwords(&mut got, &k);
            assert_eq!(got, want, "{n} words");
            // Decryption undoes encryption.
            xxtea_words(&mut got, &k);
            xxtea_unwords(&mut got, &k);
            assert_eq!(got, want, "{n} words, round trip");
        }
    }

    /// `n` bytes in runs of 512, alternately compressible (`i % modulus`) and xorshift noise
    /// from the state `x`.
    fn half_noise(x: &mut u64, n: usize, modulus: usize) -> Vec<u8> {
        (0..n)
            .map(|i| {
                *x ^= *x << 13;
                *x ^= *x >> 7;
                *x ^= *x << 17;
                if i % 1024 < 512 {
                    (i % modulus) as u8
                } else {
                    *x as u8
                }
            })
            .collect()
    }

    #[test]
    fn batch_encoding_equals_one_by_one() {
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut noise = |n: usize| half_noise(&mut x, n, 7);
        let sizes = [
            0, 1, 3, 4, 5, 8, 100, 203, 204, 207, 208, 1000, 4096, 65_537, CHUNK_SIZE, 7,
        ];
        let chunks: Vec<Vec<u8>> = sizes.iter().map(|&n| noise(n)).collect();
        // every size next to every other, in both positions of a pair
        for a in &chunks {
            for b in &chunks {
                let got = encode_chunks(&[a, b, a]);
                assert_eq!(got, [encode_chunk(a), encode_chunk(b), encode_chunk(a)]);
            }
        }
        // a whole batch at once (hashed four at a time, then the rest)
        let all: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        let one_by_one: Vec<EncodedChunk> = all.iter().map(|c| encode_chunk(c)).collect();
        assert_eq!(encode_chunks(&all), one_by_one);
        assert!(encode_chunks(&[]).is_empty());
    }

    #[test]
    fn batch_decoding_equals_one_by_one() {
        let mut x = 0x0bad_5eed_1234_5678u64;
        let mut noise = |n: usize, random: bool| -> Vec<u8> {
            (0..n)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if random {
                        x as u8
                    } else {
                        (i % 13) as u8
                    }
                })
                .collect()
        };
        // equal-length runs (lanes: 9 random full chunks = 8 + 1) and odd ones out
        let mut plains: Vec<Vec<u8>> = (0..9).map(|_| noise(CHUNK_SIZE, true)).collect();
        plains.extend([0, 1, 5, 100, 4096].map(|n| noise(n, false)));
        plains.extend((0..3).map(|_| noise(1000, true)));
        let refs: Vec<&[u8]> = plains.iter().map(Vec::as_slice).collect();
        let mut enc = encode_chunks(&refs);
        enc.push(rfs::encode_block(b"an rfs block in the same batch"));
        // damage: stored bytes of one lane member, the length word of another (decrypts to
        // an impossible length), a key of a third (decrypts to garbage)
        enc[2].data[100] ^= 1;
        let n = enc[4].data.len();
        enc[4].data[n - 1] ^= 0x80;
        let rehashed = blake2b::<16>(&enc[4].data);
        if let Block::Flist { hash, .. } = &mut enc[4].block {
            *hash = rehashed;
        }
        if let Block::Flist { key, .. } = &mut enc[6].block {
            key[0] ^= 1;
        }
        let items: Vec<(&Block, &[u8])> = enc.iter().map(|c| (&c.block, &c.data[..])).collect();
        let batch = decode_chunks(&items);
        assert_eq!(batch.len(), items.len());
        for (i, ((block, data), got)) in items.iter().zip(&batch).enumerate() {
            let want = decode_chunk(block, data);
            match (&want, got) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "chunk {i}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "chunk {i}"),
                _ => panic!("chunk {i}: {want:?} vs {got:?}"),
            }
        }
        assert!(batch[2].is_err() && batch[4].is_err() && batch[6].is_err());
        assert_eq!(batch.iter().filter(|r| r.is_ok()).count(), items.len() - 3);
        assert!(decode_chunks(&[]).is_empty());
    }

    #[test]
    fn batch_decoding_in_pairs_equals_one_by_one() {
        let mut x = 0x0bad_cafe_1234_5678u64;
        let mut noise = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if i % 1024 < 512 {
                        (i % 5) as u8
                    } else {
                        x as u8
                    }
                })
                .collect()
        };
        let sizes = [0, 1, 5, 100, 203, 208, 4096, 65_537, CHUNK_SIZE, 7, 300_000];
        let plains: Vec<Vec<u8>> = sizes.iter().map(|&n| noise(n)).collect();
        let mut enc: Vec<EncodedChunk> = plains.iter().map(|p| encode_chunk(p)).collect();
        enc.push(rfs::encode_block(&plains[3]));
        // a tampered chunk and a wrong key among good ones
        let mut bad = enc[4].clone();
        bad.data[0] ^= 1;
        enc.push(bad);
        let mut wrong = enc[5].clone();
        if let Block::Flist { key, .. } = &mut wrong.block {
            key[0] ^= 1;
        }
        enc.push(wrong);
        let items: Vec<(&Block, &[u8])> = enc.iter().map(|e| (&e.block, &e.data[..])).collect();
        let one: Vec<_> = items.iter().map(|(b, d)| decode_chunk(b, d)).collect();
        // every element in both positions of a pair
        for shift in 0..2 {
            let it = &items[shift..];
            assert_eq!(decode_chunks(it), one[shift..].to_vec(), "shift {shift}");
        }
        for (p, r) in plains.iter().zip(&one) {
            assert_eq!(r.as_ref().unwrap(), p);
        }
        assert!(decode_chunks(&[]).is_empty());
    }

    #[test]
    fn reencoding_equals_decoding_then_encoding() {
        let mut x = 0x5eed_0ff1_a57e_11aau64;
        let mut noise = |n: usize| half_noise(&mut x, n, 11);
        // lanes (equal full chunks), pairs and odd sizes, more than one group of four
        let sizes = [
            CHUNK_SIZE, CHUNK_SIZE, CHUNK_SIZE, CHUNK_SIZE, 0, 1, 5, 100, 4096, 65_537,
        ];
        let plains: Vec<Vec<u8>> = sizes.iter().map(|&n| noise(n)).collect();
        let refs: Vec<&[u8]> = plains.iter().map(Vec::as_slice).collect();
        let mut flist = encode_chunks(&refs);
        let rfs_blocks = rfs::encode_blocks(&refs);
        // .flist -> rfs: exactly rfs's own encoding of each plaintext (same ids)
        let items: Vec<(&Block, &[u8])> = flist.iter().map(|c| (&c.block, &c.data[..])).collect();
        for (i, (r, want)) in reencode_chunks(Codec::Rfs, &items)
            .into_iter()
            .zip(&rfs_blocks)
            .enumerate()
        {
            let r = r.expect("re-encoded");
            assert_eq!(r.chunk.as_ref(), Some(want), "chunk {i}");
            assert_eq!(r.plain_len, sizes[i], "chunk {i}");
            let chunk = r.chunk.expect("a new chunk");
            assert_eq!(
                decode_chunk(&chunk.block, &chunk.data).expect("decodes"),
                plains[i]
            );
        }
        // rfs -> .flist: the 0-flist encoding of each plaintext
        let items: Vec<(&Block, &[u8])> =
            rfs_blocks.iter().map(|c| (&c.block, &c.data[..])).collect();
        for (i, (r, want)) in reencode_chunks(Codec::Flist, &items)
            .into_iter()
            .zip(&flist)
            .enumerate()
        {
            assert_eq!(
                r.expect("re-encoded").chunk.as_ref(),
                Some(want),
                "chunk {i}"
            );
        }
        // mixed, damaged, already of the target codec: errors where decode_chunk has them
        flist[1].data[7] ^= 1; // stored bytes
        if let Block::Flist { key, .. } = &mut flist[5].block {
            key[3] ^= 1; // wrong key: garbage or a plaintext mismatch
        }
        let mut items: Vec<(&Block, &[u8])> =
            flist.iter().map(|c| (&c.block, &c.data[..])).collect();
        items.insert(2, (&rfs_blocks[6].block, &rfs_blocks[6].data[..]));
        let got = reencode_chunks(Codec::Rfs, &items);
        assert_eq!(got.len(), items.len());
        for (i, ((block, data), r)) in items.iter().zip(&got).enumerate() {
            match (decode_chunk(block, data), r) {
                (Ok(p), Ok(r)) => {
                    assert_eq!(r.plain_len, p.len(), "chunk {i}");
                    assert_eq!(r.chunk.is_none(), block.codec() == Codec::Rfs, "chunk {i}");
                }
                (Err(_), Err(_)) => {}
                (want, got) => panic!("chunk {i}: {want:?} vs {got:?}"),
            }
        }
        assert!(got[1].is_err() && got[6].is_err() && got[2].is_ok());
        assert!(reencode_chunks(Codec::Rfs, &[]).is_empty());
    }

    #[test]
    fn spec_vectors() {
        assert_eq!(dir_key(""), "cae66941d9efbd404e4d88758ea67670");
        assert_eq!(dir_key("etc"), "9308da158ed557db704826796bca9f68");
        assert_eq!(dir_key("usr/bin"), "46c939da162118cf47886fe40f8b5600");
        assert_eq!(
            hex::encode(blake2b::<8>(
                b"user:root\ngroup:root\nmode:0o755\nuid:0\ngid:0"
            )),
            "d7683de000c13689"
        );
        let c = encode_chunk(b"hello world\n");
        assert_eq!(
            hex::encode(c.block.key()),
            "c0cdb4699cdaa9eea4c563a934f1d52b"
        );
        assert_eq!(
            hex::encode(compress(b"hello world\n")),
            "0c2c68656c6c6f20776f726c640a"
        );
        assert_eq!(
            hex::encode(&c.data),
            "893f00077aad00982c3024bda3cbe527b9e1ecb0"
        );
        assert_eq!(c.block.id_hex(), "a5147f6e7cac3a7076f942cb5e00d896");
        assert_eq!(decode_chunk(&c.block, &c.data).unwrap(), b"hello world\n");
    }

    #[test]
    fn round_trip_sizes_and_tamper() {
        for size in [
            0usize,
            1,
            3,
            4,
            5,
            7,
            8,
            100,
            4096,
            CHUNK_SIZE - 1,
            CHUNK_SIZE,
        ] {
            let p: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            let c = encode_chunk(&p);
            assert_eq!(decode_chunk(&c.block, &c.data).unwrap(), p, "size {size}");
            let mut bad = c.data.clone();
            bad[0] ^= 1;
            assert!(matches!(
                decode_chunk(&c.block, &bad),
                Err(CodecError::HashMismatch { .. })
            ));
        }
        assert!(xxtea_decrypt(b"abc", &[0; 16]).is_none());
        assert_eq!(chunk_count(0), 0);
        assert_eq!(chunk_count(524_288), 1);
        assert_eq!(chunk_count(524_289), 2);
    }
}
