//! Archive bytes (any compression) → tree, no store: must never panic, hang or allocate
//! without bound. Small limits keep each run cheap.
#![no_main]

use flist_convert::{archive_to_tree, ConvertOptions, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let opts = ConvertOptions {
        limits: Limits {
            max_expanded_bytes: 64 << 20,
            max_entries: 10_000,
            max_header_bytes: 1 << 20,
            ..Limits::default()
        },
        workers: 1,
        ..ConvertOptions::default()
    };
    if let Ok(p) = archive_to_tree(data, &opts) {
        // the tree is consistent: every file has its chunks
        for id in p.tree.walk() {
            if let flist_format::Kind::File { size, blocks } = &p.tree.node(id).kind {
                assert_eq!(blocks.len() as u64, flist_format::codec::chunk_count(*size));
            }
        }
    }
});
