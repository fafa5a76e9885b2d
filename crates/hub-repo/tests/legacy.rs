//! `import_legacy` of a real old hub tree (`tests/fixtures/hub-legacy/users.tar.gz`, extracted
//! with its mtimes): dependency order, every listed entry kept, times from the files,
//! unimportable entries reported with their reason, a second run a no-op.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use hub_repo::{EntryKind, Hub, ListedKind};

fn extract_fixture(dest: &Path) {
    let tgz = test_support::workspace_root().join("tests/fixtures/hub-legacy/users.tar.gz");
    let f = fs::File::open(tgz).expect("users.tar.gz");
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    ar.set_preserve_mtime(true);
    ar.unpack(dest).expect("unpack");
    restore_dir_mtimes(
        &test_support::workspace_root().join("tests/fixtures/hub-legacy/users.tar.gz"),
        dest,
    );
}

/// `tar` does not restore folder mtimes: set them from the archive (folders' contents are
/// complete by then, so nothing changes them afterwards).
fn restore_dir_mtimes(tgz: &Path, dest: &Path) {
    let f = std::fs::File::open(tgz).expect("archive");
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut dirs = Vec::new();
    for e in ar.entries().expect("entries") {
        let e = e.expect("entry");
        if e.header().entry_type().is_dir() {
            let mtime = e.header().mtime().expect("mtime");
            dirs.push((dest.join(e.path().expect("path")), mtime));
        }
    }
    for (dir, mtime) in dirs {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
        std::fs::File::open(&dir)
            .and_then(|d| d.set_modified(t))
            .unwrap_or_else(|e| panic!("set mtime of {}: {e}", dir.display()));
    }
}

/// 2024-01-0`day` 12:`minute` UTC, the fixture's entry times.
fn jan(day: i64, minute: i64) -> i64 {
    1_704_067_200 + (day - 1) * 86_400 + 12 * 3600 + minute * 60
}
/// 2024-02-01 10:00 UTC (folders).
const FOLDERS: i64 = 1_706_781_600;
/// 2024-03-01 10:00 UTC (`official-apps`).
const OFFICIAL: i64 = 1_709_287_200;

fn setup() -> (tempfile::TempDir, PathBuf, Hub) {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = dir.path().join("users");
    extract_fixture(&tree);
    let hub = common::open(dir.path().join("data")).expect("open");
    (dir, tree, hub)
}

#[test]
fn imports_every_entry_in_dependency_order_with_its_times() {
    let (_d, tree, hub) = setup();
    let rep = hub.import_legacy(&tree).expect("import");

    // Really unimportable: the dangling link and the loop, each with its reason.
    let why: BTreeMap<&str, &str> = rep
        .unimportable
        .iter()
        .map(|(i, w)| (i.as_str(), w.as_str()))
        .collect();
    assert_eq!(
        why.keys().copied().collect::<Vec<_>>(),
        [
            "weird/dangling.flist",
            "weird/loop1.flist",
            "weird/loop2.flist"
        ],
        "{rep:?}"
    );
    assert_eq!(
        why["weird/dangling.flist"],
        "dangling link: weird/missing.flist does not exist"
    );
    assert!(
        why["weird/loop1.flist"].starts_with("symlink loop: weird/loop")
            && why["weird/loop1.flist"].contains("weird/loop2.flist"),
        "{}",
        why["weird/loop1.flist"]
    );
    // What the old hub never served as entries is ignored, and said so.
    let ignored: Vec<&str> = rep.ignored.iter().map(|(p, _)| p.as_str()).collect();
    assert!(ignored.iter().any(|p| p.ends_with("/.keep")), "{ignored:?}");
    assert!(ignored.contains(&"weird/README.txt"), "{ignored:?}");
    assert!(ignored.contains(&"weird/subdir"), "{ignored:?}");
    assert!(rep.warnings.is_empty(), "{:?}", rep.warnings);

    // Every repository, empty ones included, with its folder's time.
    let repos: Vec<(String, i64)> = hub
        .catalog()
        .repositories()
        .expect("repos")
        .into_iter()
        .map(|r| (r.name, r.updated))
        .collect();
    assert_eq!(
        repos,
        [
            ("alice".to_string(), FOLDERS),
            ("bob.3bot".into(), FOLDERS),
            ("empty-repo".into(), FOLDERS),
            ("official-apps".into(), OFFICIAL),
            ("tf-zos".into(), FOLDERS),
            ("weird".into(), FOLDERS),
        ]
    );
    assert_eq!(
        hub.catalog().list("empty-repo").expect("list"),
        Some(vec![])
    );

    // A crosslink to a link in a repository that sorts later resolves to the regular file.
    let e = hub
        .catalog()
        .entry("bob.3bot", "latest-cross.flist")
        .expect("read")
        .expect("imported");
    assert_eq!(
        e.kind,
        EntryKind::Symlink {
            target_repo: "official-apps".into(),
            target_name: "app-latest.flist".into(),
            crosslink: true,
        }
    );
    assert_eq!(e.linktime, Some(jan(3, 10)));
    let r = hub
        .catalog()
        .resolve("bob.3bot", "latest-cross.flist")
        .expect("resolve");
    assert_eq!(
        (r.repo.as_str(), r.name.as_str()),
        ("official-apps", "app-1.0.flist")
    );
    assert_eq!(r.updated, jan(4, 11));

    // Names with `:`, a link, a tag and a taglink to it.
    let r = hub
        .catalog()
        .resolve("tf-zos", "zos:production-3:latest.flist")
        .expect("zos link");
    assert_eq!(r.name, "zos:v3.1.0.flist");
    assert_eq!(
        hub.catalog()
            .resolve_in_tag("tf-zos", "production", "zos.flist")
            .expect("through the taglink")
            .name,
        "zos:v3.1.0.flist"
    );

    // Times: regular = file mtime; link = own mtime (linktime) and target's (updated);
    // taglink = own mtime and the tag folder's; tags = folder mtime.
    let alice: BTreeMap<String, _> = hub
        .catalog()
        .list("alice")
        .expect("list")
        .expect("alice")
        .into_iter()
        .map(|l| (l.name.clone(), l))
        .collect();
    assert_eq!(alice["merge-a.flist"].updated, jan(5, 4));
    assert_eq!(alice["app-cross.flist"].linktime, Some(jan(4, 3)));
    assert_eq!(alice["app-cross.flist"].updated, jan(4, 11));
    assert_eq!(alice["stable"].kind, ListedKind::Taglink);
    assert_eq!(
        (alice["stable"].updated, alice["stable"].linktime),
        (FOLDERS, Some(jan(8, 7)))
    );
    assert_eq!(
        (alice["v1"].kind, alice["v1"].updated),
        (ListedKind::Tag, FOLDERS)
    );
    let tag: BTreeMap<String, _> = hub
        .catalog()
        .tag_links("alice", "v1")
        .expect("tag")
        .into_iter()
        .map(|l| (l.name.clone(), l))
        .collect();
    assert_eq!(tag["app.flist"].linktime, Some(jan(2, 1)));
    assert_eq!(
        tag["merge-a.flist"].target.as_deref(),
        Some("alice/merge-a.flist")
    );
    // The empty tag is kept, and a taglink of another repository reaches alice's tag.
    let weird = hub.catalog().list("weird").expect("list").expect("weird");
    assert!(weird
        .iter()
        .any(|l| l.name == "empty" && l.kind == ListedKind::Tag && l.updated == FOLDERS));
    assert!(hub
        .catalog()
        .tag_links("weird", "empty")
        .expect("empty tag")
        .is_empty());
    assert_eq!(
        hub.catalog()
            .resolve_in_tag("bob.3bot", "alice-v1", "merge-a.flist")
            .expect("cross taglink")
            .repo,
        "alice"
    );
    // Regular entries name their repository as uploader (what `.txt` shows).
    let e = hub
        .catalog()
        .entry("tf-zos", "zos:v3.1.0.flist")
        .expect("r")
        .expect("e");
    assert_eq!(e.uploader.as_deref(), Some("tf-zos"));
    assert!(hub.integrity_check().expect("check").is_clean());
}

#[test]
fn a_second_run_changes_nothing() {
    let (_d, tree, hub) = setup();
    let first = hub.import_legacy(&tree).expect("import");
    assert!(!first.is_noop());
    let log = hub.catalog().audit_log(0, 100_000).expect("log").len();
    let generation = hub.generation();
    let listing = hub.catalog().list_all().expect("all");

    let second = hub.import_legacy(&tree).expect("again");
    assert!(second.is_noop(), "{:?}", second.imported);
    assert_eq!(second.unchanged, first.imported.len());
    assert_eq!(second.unimportable, first.unimportable);
    assert_eq!(hub.catalog().audit_log(0, 100_000).expect("log").len(), log);
    assert_eq!(hub.generation(), generation, "the second run wrote");
    assert_eq!(hub.catalog().list_all().expect("all"), listing);

    // A changed tree imports just the change.
    let link = tree.join("alice/new.flist");
    symlink("merge-b.flist", &link).expect("symlink");
    let third = hub.import_legacy(&tree).expect("third");
    // (the new link also moved alice's folder time, which the repository takes)
    assert_eq!(third.imported, ["alice", "alice/new.flist"]);
    assert_eq!(
        hub.catalog()
            .resolve("alice", "new.flist")
            .expect("new link")
            .name,
        "merge-b.flist"
    );
}

#[test]
fn names_the_hub_refuses_are_reported_not_dropped_silently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("users");
    for repo in ["me", "api", "ok"] {
        fs::create_dir_all(root.join(repo)).expect("mkdir");
        fs::copy(
            test_support::fixture("merge-a.flist"),
            root.join(repo).join("a.flist"),
        )
        .expect("copy");
    }
    fs::write(root.join("ok/bad name.flist"), b"x").expect("write");
    symlink("../ok/.tag-missing", root.join("ok/gone")).expect("taglink");
    let hub = common::open(dir.path().join("data")).expect("open");
    let rep = hub.import_legacy(&root).expect("import");
    let why: BTreeMap<&str, &str> = rep
        .unimportable
        .iter()
        .map(|(i, w)| (i.as_str(), w.as_str()))
        .collect();
    assert!(why["me"].contains("reserved"), "{why:?}");
    assert!(why["api"].contains("reserved"), "{why:?}");
    assert!(
        why["ok/bad name.flist"].contains("invalid flist name"),
        "{why:?}"
    );
    assert!(why["ok/gone"].starts_with("dangling taglink"), "{why:?}");
    assert_eq!(
        hub.catalog()
            .repositories()
            .expect("repos")
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        ["ok"]
    );
}
