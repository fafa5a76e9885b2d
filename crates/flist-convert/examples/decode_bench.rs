//! Baseline for `cargo xtask bench verify` (built in release): `decode-bench <flist>
//! <store-url>` reads every distinct chunk of the flist from the store into memory, then
//! decodes them all on ONE thread (both hash checks, as `verify --deep` does), three times,
//! and prints `chunks=N decoded_bytes=B seconds=S` for the best decoding pass alone.

#![allow(clippy::unwrap_used)] // a benchmark: a failed unwrap is a failed run

use std::collections::BTreeMap;
use std::time::Instant;

use flist_format::codec::decode_chunk;
use flist_format::{Block, Flist, Kind};
use flist_store::BlockingStore;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(flist), Some(url)) = (args.first(), args.get(1)) else {
        eprintln!("usage: decode-bench <flist> <store-url>");
        std::process::exit(2);
    };
    let f = Flist::open(flist).unwrap();
    let mut blocks: BTreeMap<Vec<u8>, Block> = BTreeMap::new();
    for id in f.tree.walk() {
        if let Kind::File { blocks: b, .. } = &f.tree.node(id).kind {
            for blk in b {
                blocks.insert(blk.id().to_vec(), *blk);
            }
        }
    }
    let store = BlockingStore::open(url).unwrap();
    let blocks: Vec<Block> = blocks.into_values().collect();
    let mut stored = Vec::with_capacity(blocks.len());
    for batch in blocks.chunks(256) {
        let keys: Vec<Vec<u8>> = batch.iter().map(|b| b.id().to_vec()).collect();
        for (b, v) in batch.iter().zip(store.get_many(&keys).unwrap()) {
            stored.push((*b, v.expect("a chunk is missing from the store")));
        }
    }
    // Best of three passes, like the runs it is compared with.
    let (mut bytes, mut seconds) = (0u64, f64::INFINITY);
    for _ in 0..3 {
        let t = Instant::now();
        bytes = 0;
        for (b, data) in &stored {
            bytes += decode_chunk(b, data).unwrap().len() as u64;
        }
        seconds = seconds.min(t.elapsed().as_secs_f64());
    }
    println!(
        "chunks={} decoded_bytes={bytes} seconds={seconds:.4}",
        stored.len()
    );
}
