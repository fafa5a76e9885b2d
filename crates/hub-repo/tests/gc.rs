//! Garbage collection of flist files, recovery of the data directory only by its sole user,
//! and names reserved for routes (issue 12, findings 8 and 11), on a real catalog and real
//! files.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hub_repo::{Actor, EntryKind, FlistInfo, GcOptions, Hub, JobState, RepoError};
use test_support::fixture;

const NOW: GcOptions = GcOptions {
    grace: Duration::ZERO,
    dry_run: false,
};

fn put_bytes(hub: &Hub, actor: &Actor, repo: &str, name: &str, content: &[u8]) -> String {
    let staged = hub.catalog().stage_reader(content).expect("stage");
    let sha = staged.sha256.clone();
    hub.catalog()
        .put_flist(actor, repo, name, staged, FlistInfo::default())
        .expect("put");
    sha
}

fn put_fixture(hub: &Hub, actor: &Actor, repo: &str, name: &str, fixture_name: &str) -> String {
    let staged = hub
        .catalog()
        .stage_reader(fs::File::open(fixture(fixture_name)).expect("fixture"))
        .expect("stage");
    let fl = hub_repo::inspect::open_flist(staged.path()).expect("readable fixture");
    let sha = staged.sha256.clone();
    hub.catalog()
        .put_flist(
            actor,
            repo,
            name,
            staged,
            hub_repo::inspect::info_of(&fl, None),
        )
        .expect("put");
    sha
}

/// Every file in the prefix folders of `flists/`.
fn stored(hub: &Hub) -> Vec<String> {
    let mut out = Vec::new();
    for d in fs::read_dir(hub.data_dir().join("flists")).expect("flists") {
        let d = d.expect("dir").path();
        if !d.is_dir() {
            continue;
        }
        for f in fs::read_dir(d).expect("dir") {
            out.push(f.expect("file").file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    out
}

/// A file placed like a killed writer would leave it: at its address, without a row.
fn plant(hub: &Hub, content: &[u8], age: Duration) -> (String, PathBuf) {
    use sha2::Digest;
    let sha = hex::encode(sha2::Sha256::digest(content));
    let path = hub.catalog().blob_path(&sha);
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(&path, content).expect("write");
    set_age(&path, age);
    (sha, path)
}

fn set_age(path: &Path, age: Duration) {
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(SystemTime::now() - age))
        .expect("set mtime");
}

#[test]
fn replaced_deleted_and_unrecorded_files_are_collected_and_referenced_ones_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = common::open(dir.path()).expect("open");
    let alice = Actor::new("alice", vec![]);
    let old = put_fixture(&hub, &alice, "alice", "app.flist", "merge-a.flist");
    assert!(hub.paths().indexed(&old).expect("indexed"));
    let shared = put_bytes(&hub, &alice, "alice", "shared.flist", b"shared");
    hub.catalog()
        .link(&alice, "alice", "shared.flist", "latest.flist")
        .expect("link");
    let new = put_fixture(&hub, &alice, "alice", "app.flist", "merge-b.flist");
    let gone = put_bytes(&hub, &alice, "alice", "gone.flist", b"deleted soon");
    hub.catalog()
        .delete(&alice, "alice", "gone.flist")
        .expect("delete");
    let (unrecorded_old, old_path) = plant(&hub, b"left by a kill", Duration::from_secs(7200));
    let (unrecorded_young, young_path) = plant(&hub, b"being mirrored", Duration::ZERO);
    fs::write(hub.data_dir().join("flists/README"), b"not ours").expect("foreign");

    // Before: `check` is clean (nothing referenced is missing), yet 4 files are garbage.
    assert!(hub.integrity_check().expect("check").is_clean());
    let mut expect_unref = vec![old.clone(), gone.clone()];
    expect_unref.sort();
    let dry = hub
        .gc(GcOptions {
            grace: Duration::from_secs(3600),
            dry_run: true,
        })
        .expect("dry run");
    assert_eq!(dry.unreferenced, expect_unref);
    assert_eq!(dry.unrecorded.len(), 1, "{dry:?}");
    assert!(dry.unrecorded[0].ends_with(&unrecorded_old), "{dry:?}");
    assert_eq!(dry.kept_young, 1);
    assert_eq!(dry.foreign, ["flists/README"]);
    assert_eq!(dry.path_index, 0, "the old file is still recorded");
    assert_eq!(stored(&hub).len(), 6, "a dry run removes nothing");

    let rep = hub
        .gc(GcOptions {
            grace: Duration::from_secs(3600),
            dry_run: false,
        })
        .expect("gc");
    assert_eq!(rep.unreferenced, expect_unref);
    assert_eq!(rep.unrecorded.len(), 1);
    assert!(rep.bytes > 0);
    assert!(!old_path.exists());
    assert!(young_path.exists(), "a young unrecorded file is kept");
    let mut left = vec![new.clone(), shared.clone(), unrecorded_young.clone()];
    left.sort();
    assert_eq!(stored(&hub), left);
    assert!(hub.data_dir().join("flists/README").exists());
    // The old file's path index went with it (it was no longer recorded once step 1 ran).
    let again = hub.gc(NOW).expect("gc again");
    assert_eq!(
        again.unrecorded.len(),
        1,
        "the young file, now past a zero grace"
    );
    assert_eq!(again.path_index, 1, "{again:?}");
    assert!(!hub.paths().indexed(&old).expect("indexed"));
    assert!(hub.paths().indexed(&new).expect("indexed"));
    let last = hub.gc(NOW).expect("gc");
    assert!(last.is_empty(), "{last:?}");

    // Everything referenced still resolves and verifies.
    assert!(hub.integrity_check().expect("check").is_clean());
    assert_eq!(
        hub.catalog()
            .resolve("alice", "app.flist")
            .expect("app")
            .sha256,
        new
    );
    assert_eq!(
        hub.catalog()
            .resolve("alice", "latest.flist")
            .expect("link")
            .sha256,
        shared
    );
    // Re-uploading collected content stores it again.
    assert_eq!(
        put_bytes(&hub, &alice, "alice", "gone.flist", b"deleted soon"),
        gone
    );
    assert!(hub.catalog().blob_path(&gone).is_file());
    assert!(hub.integrity_check().expect("check").is_clean());
}

#[test]
fn gc_running_alongside_writers_never_loses_a_referenced_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Arc::new(common::open(dir.path()).expect("open"));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let (hub, stop) = (hub.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut runs = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                hub.gc(NOW).expect("gc");
                runs += 1;
            }
            runs
        })
    };
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let hub = hub.clone();
            std::thread::spawn(move || {
                let alice = Actor::new("alice", vec![]);
                for i in 0..60u32 {
                    // A few contents recur: re-stored content races the collector the most.
                    let content = format!("content {}", (w * 7 + i) % 5);
                    let name = format!("w{w}-{}.flist", i % 3);
                    put_bytes(&hub, &alice, "alice", &name, content.as_bytes());
                    if i.is_multiple_of(4) {
                        hub.catalog()
                            .delete(&alice, "alice", &name)
                            .expect("delete");
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let runs = collector.join().expect("collector");
    assert!(runs > 1, "the collector ran alongside the writers ({runs})");
    let rep = hub.integrity_check().expect("check");
    assert!(rep.is_clean(), "{:?}", rep.problems);
    assert!(rep.entries_checked > 0);
    hub.gc(NOW).expect("final gc");
    let referenced: std::collections::BTreeSet<String> = (0..4)
        .flat_map(|w| (0..3).map(move |i| format!("w{w}-{i}.flist")))
        .filter_map(|name| hub.catalog().entry("alice", &name).expect("entry"))
        .filter_map(|e| match e.kind {
            EntryKind::Regular { sha256, .. } => Some(sha256),
            _ => None,
        })
        .collect();
    assert!(!referenced.is_empty());
    assert_eq!(
        stored(&hub),
        referenced.into_iter().collect::<Vec<_>>(),
        "exactly the referenced files remain"
    );
}

#[test]
fn a_second_opener_leaves_the_first_ones_temp_files_and_jobs_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = common::open(dir.path()).expect("open");
    let job = server.jobs().create("upload", "alice").expect("job");
    // An upload in flight: a staged file, and a temp file being written.
    let staged = server
        .catalog()
        .stage_reader(&b"in flight"[..])
        .expect("stage");
    let writing = server.catalog().temp_path(".part");
    fs::write(&writing, b"half").expect("write");
    let stale = server.catalog().temp_path(".old");
    fs::write(&stale, b"from last week").expect("write");
    set_age(&stale, Duration::from_secs(hub_repo::STALE_TEMP_SECS + 60));

    // `hub-server token create` while the server runs.
    {
        let admin = common::open(dir.path()).expect("second open");
        let _ = admin
            .accounts()
            .user_add("bob", "a long test password", false);
        admin
            .accounts()
            .create_token("bob", &[], 60, None)
            .expect("token while the server runs");
    }
    assert!(
        staged.path().exists(),
        "an in-flight staged file was removed"
    );
    assert!(writing.exists(), "an in-flight temp file was removed");
    assert!(!stale.exists(), "a day-old temp file is stale");
    assert_eq!(
        server
            .jobs()
            .get(&job.id)
            .expect("job")
            .expect("kept")
            .state,
        JobState::Running,
        "the running server's job was failed by another process"
    );
    // The upload completes normally.
    let sha = staged.sha256.clone();
    server
        .catalog()
        .put_flist(
            &Actor::new("alice", vec![]),
            "alice",
            "late.flist",
            staged,
            FlistInfo::default(),
        )
        .expect("the in-flight upload completes");
    assert!(server.catalog().blob_path(&sha).is_file());
    drop(server);

    // Alone again (the server stopped or was killed): full recovery.
    fs::write(dir.path().join("tmp/left-by-a-kill"), b"x").expect("write");
    let hub = common::open(dir.path()).expect("reopen");
    assert!(fs::read_dir(hub.catalog().tmp_dir())
        .expect("tmp")
        .next()
        .is_none());
    if common::postgres() {
        // A shared catalog: the job may be another replica's, so a replica starting up
        // leaves it; it fails once nobody marks it alive (`Jobs::fail_stale`).
        assert_eq!(
            hub.jobs().get(&job.id).expect("job").expect("kept").state,
            JobState::Running
        );
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(
            hub.jobs()
                .fail_stale(Duration::from_secs(1))
                .expect("fail stale"),
            1
        );
    }
    assert_eq!(
        hub.jobs().get(&job.id).expect("job").expect("kept").state,
        JobState::Failed
    );
}

#[test]
fn route_names_never_become_repositories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = common::open(dir.path()).expect("open");
    for name in [
        "me", "api", "static", "listen", "login", "Logout", "token", "upload",
    ] {
        let _ = hub.accounts().user_add(name, "a long test password", false);
        let e = hub
            .accounts()
            .create_token(name, &[], 60, None)
            .expect_err(name)
            .to_string();
        assert!(e.contains("reserved"), "{name}: {e}");
        let e = hub
            .accounts()
            .create_token("alice", &[name.to_string()], 60, None)
            .expect_err(name)
            .to_string();
        assert!(e.contains("reserved"), "{name} as an organisation: {e}");
        assert!(hub.accounts().add_member(name, "alice").is_err());
        // Nor through a first write (an identity from a JWT never gets a token).
        let actor = Actor::new(name, vec![]);
        let staged = hub.catalog().stage_reader(&b"x"[..]).expect("stage");
        let e = hub
            .catalog()
            .put_flist(&actor, name, "x.flist", staged, FlistInfo::default())
            .expect_err(name);
        assert!(matches!(e, RepoError::InvalidName { .. }), "{name}: {e}");
    }
    assert!(hub.catalog().repositories().expect("repos").is_empty());
    let _ = hub
        .accounts()
        .user_add("memo", "a long test password", false);
    hub.accounts()
        .create_token("memo", &[], 60, None)
        .expect("a name that only starts like a route");
}
