//! The upload fuzz target (`fuzz/fuzz_targets/upload_multipart.rs`) on the stable toolchain:
//! its seeds (each must also do what it says), the inputs libFuzzer kept
//! (`fuzz/corpus/upload_multipart/`, when present), and random corruptions of the seeds.

#[path = "../../../fuzz/harness/upload_multipart.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use harness::UploadHarness;
use proptest::prelude::*;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn named_seeds() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(fuzz_dir().join("seeds/upload_multipart"))
        .expect("seeds")
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("seed"),
            )
        })
        .collect();
    v.sort();
    v
}

fn seeds() -> Vec<Vec<u8>> {
    named_seeds().into_iter().map(|(_, d)| d).collect()
}

fn harness() -> &'static UploadHarness {
    static H: OnceLock<UploadHarness> = OnceLock::new();
    H.get_or_init(UploadHarness::new)
}

#[test]
fn seeds_and_kept_inputs() {
    let seeds = named_seeds();
    assert!(seeds.len() >= 5);
    for (name, data) in &seeds {
        let status = harness().run(data);
        // The seeds are meaningful requests: the fuzzer starts from what the hub accepts.
        let expect = match name.as_str() {
            "archive" | "archive-metadata" => 200,
            "flist" | "two-files" => 400, // chunks not in this hub's store: listed, refused
            "empty-archive" => 400,
            other => panic!("seed {other} has no expectation"),
        };
        assert_eq!(status, expect, "seed {name}");
    }
    for sub in ["corpus/upload_multipart", "artifacts/upload_multipart"] {
        if let Ok(rd) = std::fs::read_dir(fuzz_dir().join(sub)) {
            for e in rd.flatten() {
                harness().run(&std::fs::read(e.path()).expect("input"));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn corrupted_seeds(
        which in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
        selector in any::<u8>(),
    ) {
        let seeds = seeds();
        let mut data = seeds[which.index(seeds.len())].clone();
        data[0] = selector;
        for (at, b) in edits {
            let i = at.index(data.len());
            data[i] = b;
        }
        let keep = cut.index(data.len()) + 1;
        harness().run(&data[..keep.max(data.len() / 2)]);
    }
}
