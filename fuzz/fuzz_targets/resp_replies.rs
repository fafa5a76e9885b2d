//! The RESP reply decoder of the chunk store client (what a 0-db or Redis server sends):
//! see `flist_store::fuzzing::resp_replies` for the invariants checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    flist_store::fuzzing::resp_replies(data);
});
