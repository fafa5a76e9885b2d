//! The hub's upload routes (multipart parsing, archive conversion, homemade-flist checks)
//! over arbitrary request bodies: no server error, no temp file left. See
//! `fuzz/harness/upload_multipart.rs`.
#![no_main]

#[path = "../harness/upload_multipart.rs"]
mod harness;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

static HUB: OnceLock<harness::UploadHarness> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    HUB.get_or_init(harness::UploadHarness::new).run(data);
});
