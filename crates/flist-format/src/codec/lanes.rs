//! XXTEA on several chunks at once, one chunk per SIMD lane.
//!
//! Inside one chunk XXTEA is a single chain: every word's update needs the word updated just
//! before it, and each round needs the previous round's last word, so a chunk cannot be split.
//! Chunks with the same number of words run the same rounds with the same word positions, so
//! [`LANES`] of them interleaved word by word (`v[p][lane]`) go through one loop whose body
//! is the same arithmetic on `[u32; LANES]`: plain Rust that the compiler turns into vector
//! instructions (SSE2 is part of x86-64, NEON of aarch64; no `unsafe`, no runtime detection).
//! One step then advances every lane, ~5x the throughput of one chunk at a time.
//!
//! Only chunks of equal length share a run (the usual case: every full chunk of an
//! incompressible file compresses to the same length); the callers group them.

use super::{key_words, mx_fast, DELTA};

/// Chunks per run.
pub(super) const LANES: usize = 8;

type Lane = [u32; LANES];

#[inline(always)]
fn mx(sum: u32, y: &Lane, z: &Lane, k: &Lane) -> Lane {
    std::array::from_fn(|l| mx_fast(sum, y[l], z[l], k[l]))
}

#[inline(always)]
fn add(a: &Lane, b: &Lane) -> Lane {
    std::array::from_fn(|l| a[l].wrapping_add(b[l]))
}

#[inline(always)]
fn sub(a: &Lane, b: &Lane) -> Lane {
    std::array::from_fn(|l| a[l].wrapping_sub(b[l]))
}

/// The key words of round `sum` for every lane, permuted as [`super::round_key`] does.
fn round_keys(k: &[[u32; 4]; LANES], sum: u32) -> [Lane; 4] {
    let e = ((sum >> 2) & 3) as usize;
    std::array::from_fn(|q| std::array::from_fn(|l| k[l][q ^ e]))
}

/// Encryption of every lane in place (`v.len() >= 2`): lane `l` of the result is
/// `xxtea_words` of lane `l` under `k[l]`.
fn encrypt(v: &mut [Lane], k: &[[u32; 4]; LANES]) {
    let n = v.len();
    let rounds = 6 + 52 / n;
    let mut sum: u32 = 0;
    let mut z = v[n - 1];
    for _ in 0..rounds {
        sum = sum.wrapping_add(DELTA);
        let ke = round_keys(k, sum);
        for p in 0..n - 1 {
            let y = v[p + 1];
            z = add(&v[p], &mx(sum, &y, &z, &ke[p & 3]));
            v[p] = z;
        }
        let y = v[0];
        z = add(&v[n - 1], &mx(sum, &y, &z, &ke[(n - 1) & 3]));
        v[n - 1] = z;
    }
}

/// Decryption of every lane in place (`v.len() >= 2`), the inverse of [`encrypt`].
fn decrypt(v: &mut [Lane], k: &[[u32; 4]; LANES]) {
    let n = v.len();
    let rounds = 6 + 52 / n;
    let mut sum = (rounds as u32).wrapping_mul(DELTA);
    let mut y = v[0];
    for _ in 0..rounds {
        let ke = round_keys(k, sum);
        for p in (1..n).rev() {
            let z = v[p - 1];
            y = sub(&v[p], &mx(sum, &y, &z, &ke[p & 3]));
            v[p] = y;
        }
        let z = v[n - 1];
        y = sub(&v[0], &mx(sum, &y, &z, &ke[0]));
        v[0] = y;
        sum = sum.wrapping_sub(DELTA);
    }
}

fn keys(keys: &[&[u8; 16]]) -> [[u32; 4]; LANES] {
    std::array::from_fn(|l| keys.get(l).map(|k| key_words(k)).unwrap_or_default())
}

/// Words per block of the interleaving copies: a block of every lane stays in the L1 cache
/// while the lanes are read or written one after the other.
const BLOCK: usize = 256;

/// Encrypts up to [`LANES`] word vectors of the same length (`>= 2`) in place.
pub(super) fn encrypt_words(words: &mut [Vec<u32>], k: &[&[u8; 16]]) {
    debug_assert!(words.len() <= LANES && words.len() == k.len());
    let Some(n) = words.first().map(Vec::len) else {
        return;
    };
    debug_assert!(n >= 2 && words.iter().all(|w| w.len() == n));
    let mut v: Vec<Lane> = vec![[0; LANES]; n];
    for (b, vb) in v.chunks_mut(BLOCK).enumerate() {
        for (l, w) in words.iter().enumerate() {
            for (lane, word) in vb.iter_mut().zip(&w[b * BLOCK..]) {
                lane[l] = *word;
            }
        }
    }
    encrypt(&mut v, &keys(k));
    for (b, vb) in v.chunks(BLOCK).enumerate() {
        for (l, w) in words.iter_mut().enumerate() {
            for (word, lane) in w[b * BLOCK..].iter_mut().zip(vb) {
                *word = lane[l];
            }
        }
    }
}

/// Decrypts up to [`LANES`] stored chunks of the same length (a multiple of 4, `>= 8`):
/// each one's decrypted bytes, the length word last.
pub(super) fn decrypt_bytes(data: &[&[u8]], k: &[&[u8; 16]]) -> Vec<Vec<u8>> {
    debug_assert!(data.len() <= LANES && data.len() == k.len());
    let Some(n) = data.first().map(|d| d.len() / 4) else {
        return Vec::new();
    };
    let mut v: Vec<Lane> = vec![[0; LANES]; n];
    for (b, vb) in v.chunks_mut(BLOCK).enumerate() {
        for (l, d) in data.iter().enumerate() {
            for (lane, c) in vb.iter_mut().zip(d[4 * b * BLOCK..].chunks_exact(4)) {
                lane[l] = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
    }
    decrypt(&mut v, &keys(k));
    let mut out = vec![vec![0u8; 4 * n]; data.len()];
    for (b, vb) in v.chunks(BLOCK).enumerate() {
        for (l, o) in out.iter_mut().enumerate() {
            for (c, lane) in o[4 * b * BLOCK..].chunks_exact_mut(4).zip(vb) {
                c.copy_from_slice(&lane[l].to_le_bytes());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{xxtea_unwords, xxtea_words};
    use super::*;

    #[test]
    fn lanes_equal_one_chunk_at_a_time() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u32
        };
        for n in [2usize, 3, 4, 5, 52, 53, 100, 1025] {
            for count in [1usize, 2, 5, LANES] {
                let words: Vec<Vec<u32>> = (0..count)
                    .map(|_| (0..n).map(|_| next()).collect())
                    .collect();
                let raw: Vec<[u8; 16]> = (0..count)
                    .map(|_| std::array::from_fn(|_| next() as u8))
                    .collect();
                let k: Vec<&[u8; 16]> = raw.iter().collect();
                let mut got = words.clone();
                encrypt_words(&mut got, &k);
                for (l, w) in words.iter().enumerate() {
                    let mut want = w.clone();
                    xxtea_words(&mut want, &key_words(k[l]));
                    assert_eq!(got[l], want, "{n} words, lane {l} of {count}");
                }
                let bytes =
                    |w: &[u32]| -> Vec<u8> { w.iter().flat_map(|x| x.to_le_bytes()).collect() };
                let sealed: Vec<Vec<u8>> = got.iter().map(|w| bytes(w)).collect();
                let refs: Vec<&[u8]> = sealed.iter().map(Vec::as_slice).collect();
                let back = decrypt_bytes(&refs, &k);
                for (l, w) in got.iter().enumerate() {
                    let mut want = w.clone();
                    xxtea_unwords(&mut want, &key_words(k[l]));
                    assert_eq!(back[l], bytes(&want), "{n} words, lane {l} of {count}");
                    assert_eq!(back[l], bytes(&words[l]));
                }
            }
        }
    }
}
