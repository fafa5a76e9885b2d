//! The mirror's fuzz target (`fuzz/fuzz_targets/mirror_feed.rs`) on the stable toolchain:
//! its seeds (each also does what it says), the inputs libFuzzer kept
//! (`fuzz/corpus/mirror_feed/`, when present), and random corruptions of the seeds.

use std::path::{Path, PathBuf};

use hub_http::mirror::{check_untrusted, parse_feed_page};
use hub_repo::RepoSnapshot;
use proptest::prelude::*;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn seed(name: &str) -> Vec<u8> {
    std::fs::read(fuzz_dir().join("seeds/mirror_feed").join(name)).expect("seed")
}

fn seeds() -> Vec<Vec<u8>> {
    let mut v: Vec<_> = std::fs::read_dir(fuzz_dir().join("seeds/mirror_feed"))
        .expect("seeds")
        .flatten()
        .map(|e| std::fs::read(e.path()).expect("seed"))
        .collect();
    v.sort();
    v
}

#[test]
fn seeds_and_kept_inputs() {
    for data in seeds() {
        check_untrusted(&data);
    }
    // The seeds mean what their names say.
    let page = parse_feed_page(&seed("feed-page")).expect("a feed page");
    assert_eq!(page.repos.iter().collect::<Vec<_>>(), ["alice"]);
    assert_eq!(page.skipped.len(), 2, "{:?}", page.skipped);
    assert!(parse_feed_page(&seed("feed-empty")).is_ok());
    assert!(parse_feed_page(&seed("feed-backwards")).is_err());
    let mut snap: RepoSnapshot = serde_json::from_slice(&seed("snapshot")).expect("snapshot");
    let dropped = snap.sanitize().expect("a good repository name");
    assert_eq!(dropped.len(), 4, "{dropped:?}");
    let names: Vec<&str> = snap.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["ok.flist", "latest"]);
    assert_eq!(snap.tags[0].links.len(), 1);
    let mut bad: RepoSnapshot =
        serde_json::from_slice(&seed("snapshot-reserved-name")).expect("snapshot");
    assert!(bad.sanitize().is_err());
    // A file entry carrying a link target (`../../x/../y`), found by libFuzzer: dropped.
    let mut odd: RepoSnapshot =
        serde_json::from_slice(&seed("snapshot-file-with-a-link-target")).expect("snapshot");
    let dropped = odd.sanitize().expect("a good repository name");
    assert!(
        dropped
            .iter()
            .any(|d| d.contains("\"ok.flist\"") && d.contains("link target")),
        "{dropped:?}"
    );
    assert!(odd.entries.iter().all(|e| e.name != "ok.flist"));
    for sub in ["corpus/mirror_feed", "artifacts/mirror_feed"] {
        if let Ok(rd) = std::fs::read_dir(fuzz_dir().join(sub)) {
            for e in rd.flatten() {
                check_untrusted(&std::fs::read(e.path()).expect("input"));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn corrupted_seeds(
        which in 0usize..16,
        at in any::<prop::sample::Index>(),
        with in prop::collection::vec(any::<u8>(), 0..12),
        cut in any::<prop::sample::Index>(),
    ) {
        let seeds = seeds();
        let mut data = seeds[which % seeds.len()].clone();
        let i = at.index(data.len() + 1);
        data.splice(i..i, with);
        data.truncate(cut.index(data.len() + 1).max(i));
        check_untrusted(&data);
    }
}
