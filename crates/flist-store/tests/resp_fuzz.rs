//! The RESP reply fuzz target (`fuzz/fuzz_targets/resp_replies.rs`) on the stable toolchain:
//! its seeds, the inputs libFuzzer kept (`fuzz/corpus/resp_replies/`, when present), random
//! bytes, and random well-formed reply streams cut and corrupted at random places.

use flist_store::fuzzing::resp_replies;
use proptest::prelude::*;

#[test]
fn seeds_and_kept_inputs() {
    assert!(test_support::run_fuzz_inputs("resp_replies", resp_replies) >= 5);
}

/// A well-formed reply, encoded.
fn reply() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        "[ -~]{0,20}".prop_map(|s| format!("+{s}\r\n").into_bytes()),
        "[ -~]{0,20}".prop_map(|s| format!("-{s}\r\n").into_bytes()),
        any::<i64>().prop_map(|n| format!(":{n}\r\n").into_bytes()),
        Just(b"$-1\r\n".to_vec()),
        Just(b"*-1\r\n".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| {
            let mut v = format!("${}\r\n", b.len()).into_bytes();
            v.extend_from_slice(&b);
            v.extend_from_slice(b"\r\n");
            v
        }),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        proptest::collection::vec(inner, 0..5).prop_map(|items| {
            let mut v = format!("*{}\r\n", items.len()).into_bytes();
            for i in items {
                v.extend_from_slice(&i);
            }
            v
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        resp_replies(&data);
    }

    #[test]
    fn replies_cut_and_corrupted(
        replies in proptest::collection::vec(reply(), 1..6),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        corrupt in any::<bool>(),
    ) {
        let mut data: Vec<u8> = replies.concat();
        resp_replies(&data);
        if corrupt {
            let i = flip.index(data.len());
            data[i] = byte;
            resp_replies(&data);
        }
        data.truncate(cut.index(data.len() + 1));
        resp_replies(&data);
    }
}
