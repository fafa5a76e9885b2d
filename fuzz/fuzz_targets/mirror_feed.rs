//! What a mirror reads from its primary: change-feed pages and repository snapshots, from
//! an untrusted server. See `hub_http::mirror::check_untrusted` for the invariants checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hub_http::mirror::check_untrusted(data);
});
