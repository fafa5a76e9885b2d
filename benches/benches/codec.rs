//! Chunk codec throughput: encode (BLAKE2b + snappy + XXTEA + BLAKE2b) and decode (the
//! reverse, with both hash checks) of 512 KiB chunks, compressible and random.
//!
//! `cargo bench -p flist-benches --bench codec` (`-- --quick` for a short run).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use flist_format::codec::{decode_chunk, decode_chunks, encode_chunk, encode_chunks, CHUNK_SIZE};

/// Log-like text: compresses well, like most of a root filesystem's text files.
fn compressible() -> Vec<u8> {
    let mut out = Vec::with_capacity(CHUNK_SIZE);
    let mut i = 0u64;
    while out.len() < CHUNK_SIZE {
        out.extend_from_slice(
            format!(
                "2024-01-01T00:00:{:02}Z INFO request {i} served in {}ms\n",
                i % 60,
                i % 97
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(CHUNK_SIZE);
    out
}

/// Incompressible bytes (xorshift64*), like already-compressed files.
fn random() -> Vec<u8> {
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(CHUNK_SIZE);
    while out.len() < CHUNK_SIZE {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        out.extend_from_slice(&s.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(CHUNK_SIZE);
    out
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Bytes(CHUNK_SIZE as u64));
    for (name, data) in [("compressible", compressible()), ("random", random())] {
        g.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| encode_chunk(black_box(&data)))
        });
        let enc = encode_chunk(&data);
        g.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| decode_chunk(black_box(&enc.block), black_box(&enc.data)).map(|p| p.len()))
        });
    }
    g.finish();
    // batches of 8 chunks, as the converter and the readers hand them over
    let mut g = c.benchmark_group("codec-batch8");
    g.throughput(Throughput::Bytes(8 * CHUNK_SIZE as u64));
    for (name, data) in [("compressible", compressible()), ("random", random())] {
        // eight different chunks of the same kind
        let chunks: Vec<Vec<u8>> = (0..8u8)
            .map(|i| data.iter().map(|b| b ^ i).collect())
            .collect();
        let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        g.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| encode_chunks(black_box(&refs)))
        });
        let enc = encode_chunks(&refs);
        let items: Vec<_> = enc.iter().map(|c| (&c.block, &c.data[..])).collect();
        g.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| decode_chunks(black_box(&items)).len())
        });
    }
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
