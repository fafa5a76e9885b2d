//! Fuzzes the flist reader: arbitrary bytes as a whole `.flist` (gzip tar, plain tar or bare
//! sqlite database) and as single Cap'n Proto catalog values. Any input must give `Ok` or a
//! typed error, never a panic, a hang or an unbounded allocation.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = flist_format::Flist::from_reader(data, "fuzz input");
    let _ = flist_format::catalog::decode_dir("fuzz", data);
    let _ = flist_format::catalog::decode_aci("fuzz", data);
});
