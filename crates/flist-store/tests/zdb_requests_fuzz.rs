//! The 0-db endpoint fuzz target (`fuzz/fuzz_targets/zdb_requests.rs`) on the stable
//! toolchain: its seeds, the inputs libFuzzer kept (`fuzz/corpus/zdb_requests/`, when
//! present), random bytes, and random well-formed command streams (arrays and inline lines)
//! cut and corrupted at random places.

use flist_store::fuzzing::zdb_requests;
use proptest::prelude::*;

#[test]
fn seeds_and_kept_inputs() {
    assert!(test_support::run_fuzz_inputs("zdb_requests", zdb_requests) >= 9);
}

/// A command name the endpoint knows (or not), in any case.
fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"GET".to_vec()),
        Just(b"get".to_vec()),
        Just(b"MGET".to_vec()),
        Just(b"EXISTS".to_vec()),
        Just(b"CHECK".to_vec()),
        Just(b"PING".to_vec()),
        Just(b"SELECT".to_vec()),
        Just(b"NSINFO".to_vec()),
        Just(b"INFO".to_vec()),
        Just(b"DBSIZE".to_vec()),
        Just(b"SET".to_vec()),
        Just(b"DEL".to_vec()),
        Just(b"FLUSH".to_vec()),
        Just(b"QUIT".to_vec()),
        "[A-Z]{1,8}".prop_map(String::into_bytes),
    ]
}

/// One command, encoded as an array of bulk strings or as an inline line.
fn command() -> impl Strategy<Value = Vec<u8>> {
    (
        name(),
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..5),
        any::<bool>(),
    )
        .prop_map(|(name, args, inline)| {
            if inline {
                let mut v = name;
                for a in args {
                    v.push(b' ');
                    v.extend(
                        a.iter()
                            .map(|b| if b.is_ascii_alphanumeric() { *b } else { b'x' }),
                    );
                }
                v.extend_from_slice(b"\r\n");
                return v;
            }
            let mut v = format!("*{}\r\n${}\r\n", args.len() + 1, name.len()).into_bytes();
            v.extend_from_slice(&name);
            v.extend_from_slice(b"\r\n");
            for a in args {
                v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                v.extend_from_slice(&a);
                v.extend_from_slice(b"\r\n");
            }
            v
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        zdb_requests(&data);
    }

    #[test]
    fn commands_cut_and_corrupted(
        cmds in proptest::collection::vec(command(), 1..8),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        corrupt in any::<bool>(),
    ) {
        let mut data: Vec<u8> = cmds.concat();
        zdb_requests(&data);
        if corrupt {
            let i = flip.index(data.len());
            data[i] = byte;
            zdb_requests(&data);
        }
        data.truncate(cut.index(data.len() + 1));
        zdb_requests(&data);
    }
}
