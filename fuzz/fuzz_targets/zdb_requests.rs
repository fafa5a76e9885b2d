//! The request reader of the hub's read-only 0-db endpoint (what any client may send to
//! `--zdb-listen`), and the endpoint answering over an in-memory stream: see
//! `flist_store::fuzzing::zdb_requests` for the invariants checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    flist_store::fuzzing::zdb_requests(data);
});
