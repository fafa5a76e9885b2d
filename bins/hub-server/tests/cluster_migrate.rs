//! `hub-server migrate` (issue 25): a single-machine hub (SQLite, `dir://`) moves into a
//! cluster (PostgreSQL, SeaweedFS's S3) with its catalog, flist files and chunks; a second
//! run copies nothing more; a replica of the cluster then serves the same flists, byte for
//! byte, their chunks are in the bucket, and the old hub's token works there.

mod common;

use std::process::Command;

use common::cluster::upload_ok;

use flist_format::{Flist, Kind};
use test_support::seaweed::SeaweedServer;
use test_support::{HubProcess, Postgres};

fn bin() -> std::path::PathBuf {
    env!("CARGO_BIN_EXE_hub-server").into()
}

fn migrate(old: &HubProcess, catalog: &str, store: &str) -> String {
    let out = Command::new(bin())
        .args(["migrate", "--data-dir"])
        .arg(old.data_dir())
        .args(["--to-catalog", catalog, "--to-store", store])
        .output()
        .expect("hub-server migrate");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let secret = test_support::seaweed::SECRET_KEY;
    assert!(!stdout.contains(secret) && !stderr.contains(secret));
    stdout
}

/// The copied count of the report line starting with `what`.
fn copied(report: &str, what: &str) -> u64 {
    let line = report
        .lines()
        .find(|l| l.starts_with(what))
        .unwrap_or_else(|| panic!("no {what} line in:\n{report}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let i = words
        .iter()
        .position(|w| *w == "copied" || w.starts_with("copied"))
        .unwrap_or_else(|| panic!("{line}"));
    words[i - 1].parse().unwrap_or_else(|_| panic!("{line}"))
}

#[test]
fn a_single_machine_hub_moves_into_the_cluster() {
    let old = HubProcess::start_with_env(&bin(), &[("HUB_AUTHENTICATION", "off")]);
    // Large enough for several chunks each.
    let big: Vec<u8> = test_support::sample::noise(7, 3 << 20);
    upload_ok(&old.url(), "one.tar.gz", &big);
    upload_ok(&old.url(), "two.tar.gz", b"a small file");
    let token = old.token("alice", &[]);
    let catalog = Postgres::shared().create_database("moved");
    let store = SeaweedServer::shared().url(&format!("moved-{}", std::process::id()));

    let first = migrate(&old, &catalog, &store);
    assert_eq!(copied(&first, "flist files"), 2, "{first}");
    assert!(copied(&first, "chunks") >= 2, "{first}");
    assert!(copied(&first, "entries") >= 2, "{first}");
    assert_eq!(copied(&first, "users"), 1, "{first}");
    // Again: nothing more to copy.
    let again = migrate(&old, &catalog, &store);
    for what in [
        "repositories",
        "entries",
        "blobs",
        "users",
        "tokens",
        "flist files",
        "chunks",
    ] {
        assert_eq!(copied(&again, what), 0, "{what} copied twice:\n{again}");
    }

    let new = HubProcess::start_with_env(
        &bin(),
        &[
            ("HUB_CATALOG", catalog.as_str()),
            ("HUB_STORE", store.as_str()),
        ],
    );
    let chunks = flist_store::BlockingStore::open(&store).expect("bucket");
    for name in ["one.flist", "two.flist"] {
        let (s_old, b_old) = old.get(&format!("/alice/{name}"));
        let (s_new, b_new) = new.get(&format!("/alice/{name}"));
        assert_eq!((s_old, s_new), (200, 200), "{name}");
        assert!(b_old == b_new, "{name}: the cluster serves another file");
        let f = tempfile::NamedTempFile::new().expect("temp");
        std::fs::write(f.path(), &b_new).expect("write");
        let flist = Flist::open(f.path()).expect("flist");
        let keys: Vec<Vec<u8>> = flist
            .tree
            .walk()
            .flat_map(|id| match &flist.tree.node(id).kind {
                Kind::File { blocks, .. } => blocks.iter().map(|b| b.id().to_vec()).collect(),
                _ => Vec::new(),
            })
            .collect();
        assert!(!keys.is_empty(), "{name}");
        let have = chunks.exists_many(&keys).expect("exists");
        assert!(
            have.iter().all(|h| *h),
            "{name}: chunks missing from the bucket"
        );
    }
    // The old hub's token signs in on the cluster.
    let (status, body) = new.request(
        "GET",
        "/api/flist/me",
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("alice"));
}
