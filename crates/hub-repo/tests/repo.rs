//! The repository model against a real catalog and real flist files.

mod common;

use std::fs;
use std::os::unix::fs::symlink;

use hub_repo::{Actor, EntryKind, Hub, ListedKind, RepoError, TokenCheck};
use test_support::fixture;

fn hub() -> (tempfile::TempDir, Hub) {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = common::open(dir.path().join("data")).expect("open hub");
    (dir, hub)
}

fn upload(hub: &Hub, actor: &Actor, repo: &str, name: &str, fixture_name: &str) {
    let f = fs::File::open(fixture(fixture_name)).expect("fixture");
    let staged = hub.catalog().stage_reader(f).expect("stage");
    let fl = hub_repo::inspect::open_flist(staged.path()).expect("readable fixture");
    hub.catalog()
        .put_flist(
            actor,
            repo,
            name,
            staged,
            hub_repo::inspect::info_of(&fl, Some(fixture_name.into())),
        )
        .expect("put");
}

#[test]
fn links_tags_rename_delete_and_resolution() {
    let (_d, hub) = hub();
    let alice = Actor::new("alice", vec!["team".into()]);
    let bob = Actor::new("bob", vec![]);
    upload(&hub, &alice, "alice", "a.flist", "merge-a.flist");
    upload(&hub, &bob, "bob", "b.flist", "merge-b.flist");

    // Writing into someone else's repository is refused.
    assert!(matches!(
        hub.catalog().link(&bob, "alice", "a.flist", "x.flist"),
        Err(RepoError::Forbidden(_))
    ));
    // Acting as an organisation one is not a member of is refused.
    assert!(matches!(
        bob.clone().acting_as("team"),
        Err(RepoError::Forbidden(_))
    ));
    let team = alice.clone().acting_as("team").expect("member");
    assert!(matches!(
        hub.catalog().link(&team, "alice", "a.flist", "x.flist"),
        Err(RepoError::Forbidden(_))
    ));
    hub.catalog()
        .crosslink(&team, "team", "shared.flist", "alice", "a.flist")
        .expect("org write");

    hub.catalog()
        .link(&alice, "alice", "a.flist", "latest.flist")
        .expect("link");
    let a = hub
        .catalog()
        .resolve("alice", "a.flist")
        .expect("resolve a");
    assert_eq!(
        hub.catalog()
            .resolve("alice", "latest.flist")
            .expect("resolve link")
            .sha256,
        a.sha256
    );
    assert_eq!(
        hub.catalog()
            .resolve("team", "shared.flist")
            .expect("resolve crosslink")
            .sha256,
        a.sha256
    );
    // A link never replaces a regular file.
    assert!(matches!(
        hub.catalog()
            .link(&alice, "alice", "latest.flist", "a.flist"),
        Err(RepoError::Conflict(_))
    ));
    // Links replace links; cycles are refused.
    hub.catalog()
        .crosslink(&alice, "alice", "latest.flist", "bob", "b.flist")
        .expect("replace link");
    hub.catalog()
        .link(&alice, "alice", "latest.flist", "l2.flist")
        .expect("link to link");
    assert!(matches!(
        hub.catalog()
            .link(&alice, "alice", "l2.flist", "latest.flist"),
        Err(RepoError::Conflict(_))
    ));
    assert_eq!(
        hub.catalog()
            .resolve("alice", "l2.flist")
            .expect("chain")
            .repo,
        "bob"
    );

    // Rename refuses to overwrite.
    assert!(matches!(
        hub.catalog().rename(&alice, "alice", "l2.flist", "a.flist"),
        Err(RepoError::Conflict(_))
    ));
    hub.catalog()
        .rename(&alice, "alice", "l2.flist", "l3.flist")
        .expect("rename");
    assert!(matches!(
        hub.catalog()
            .rename(&alice, "alice", "nope.flist", "n.flist"),
        Err(RepoError::NotFound(_))
    ));

    // Tags and taglinks.
    hub.catalog()
        .tag_add(&bob, "bob", "v1", "b.flist", "bob", "b.flist")
        .expect("tag");
    hub.catalog()
        .crosstag(&alice, "alice", "bobs", "bob", "v1")
        .expect("crosstag");
    assert_eq!(
        hub.catalog()
            .resolve_in_tag("alice", "bobs", "b.flist")
            .expect("through taglink")
            .repo,
        "bob"
    );
    assert!(matches!(
        hub.catalog().crosstag(&alice, "alice", "none", "bob", "v9"),
        Err(RepoError::NotFound(_))
    ));
    let listing = hub.catalog().list("alice").expect("list").expect("exists");
    let kinds: Vec<(String, ListedKind)> =
        listing.iter().map(|l| (l.name.clone(), l.kind)).collect();
    assert!(kinds.contains(&("bobs".into(), ListedKind::Taglink)));
    assert!(kinds.contains(&("latest.flist".into(), ListedKind::Symlink)));
    let bob_listing = hub.catalog().list("bob").expect("list").expect("exists");
    assert!(bob_listing
        .iter()
        .any(|l| l.name == "v1" && l.kind == ListedKind::Tag));

    // Deleting a target leaves a dangling link, reported as broken.
    hub.catalog()
        .delete(&bob, "bob", "b.flist")
        .expect("delete");
    let listing = hub.catalog().list("alice").expect("list").expect("exists");
    let latest = listing
        .iter()
        .find(|l| l.name == "latest.flist")
        .expect("still listed");
    assert!(latest.broken);
    assert!(matches!(
        hub.catalog().resolve("alice", "latest.flist"),
        Err(RepoError::NotFound(_))
    ));
    assert!(matches!(
        hub.catalog().delete(&bob, "bob", "b.flist"),
        Err(RepoError::NotFound(_))
    ));
    hub.catalog()
        .tag_remove(&bob, "bob", "v1", "b.flist", "bob", "b.flist")
        .expect("untag");
    assert!(hub.catalog().tag_links("bob", "v1").is_err());

    // Promote shares content.
    let e = hub
        .catalog()
        .promote(&bob, "bob", "alice", "a.flist", "copy.flist")
        .expect("promote");
    assert!(matches!(e.kind, EntryKind::Regular { ref sha256, .. } if *sha256 == a.sha256));

    // Every committed write is in the audit log, in order.
    let log = hub.catalog().audit_log(0, 1000).expect("audit");
    let actions: Vec<&str> = log.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "upload",
            "upload",
            "crosslink",
            "link",
            "crosslink",
            "link",
            "rename",
            "tag-add",
            "crosstag",
            "delete",
            "tag-remove",
            "promote"
        ]
    );
    assert!(hub.integrity_check().expect("check").is_clean());
}

#[test]
fn hostile_names_are_refused() {
    let (_d, hub) = hub();
    let alice = Actor::new("alice", vec![]);
    for bad in [
        "<script>.flist",
        "../x.flist",
        "a/b.flist",
        "a\u{1}.flist",
        "..",
    ] {
        assert!(
            matches!(
                hub.catalog().delete(&alice, "alice", bad),
                Err(RepoError::InvalidName { .. })
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        hub.catalog().delete(&alice, "<script>", "a.flist"),
        Err(RepoError::InvalidName { .. })
    ));
}

#[test]
fn merge_dump_metadata_and_integrity() {
    let (_d, hub) = hub();
    let alice = Actor::new("alice", vec![]);
    upload(&hub, &alice, "alice", "a.flist", "merge-a.flist");
    upload(&hub, &alice, "alice", "b.flist", "merge-b.flist");
    upload(&hub, &alice, "alice", "fixture.flist", "fixture.flist");
    // (the merging itself is flist-convert's and hub-http's; stored here like its result)
    let mut md = flist_format::Metadata::new();
    md.set("backend", r#"{"host":"hub.example","port":9900}"#);
    let mut tree = flist_format::Flist::open(test_support::fixture("merge-a.flist"))
        .expect("a")
        .tree;
    let b = flist_format::Flist::open(test_support::fixture("merge-b.flist")).expect("b");
    flist_format::merge(&mut tree, &b.tree);
    hub.catalog()
        .store_flist(
            &alice,
            "alice",
            "ab.flist",
            &flist_format::Flist { tree, metadata: md },
            Some("alice/a.flist, alice/b.flist".into()),
        )
        .expect("store");
    let r = hub.catalog().resolve("alice", "ab.flist").expect("merged");
    let dump: serde_json::Value =
        serde_json::from_str(&hub.catalog().dump(&r).expect("dump")).expect("json");
    let paths: Vec<&str> = dump["content"]
        .as_array()
        .expect("content")
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    for p in ["/etc/a.conf", "/etc/b.conf", "/bin/tool", "/opt/app/run"] {
        assert!(paths.contains(&p), "{p} missing from {paths:?}");
    }
    let tool = dump["content"]
        .as_array()
        .expect("content")
        .iter()
        .find(|e| e["path"] == "/bin/tool")
        .expect("tool");
    assert_eq!(tool["size"], 15, "first wins");
    assert_eq!(
        hub.catalog().metadata(&r).expect("md")["backend"],
        r#"{"host":"hub.example","port":9900}"#
    );
    let fx = hub
        .catalog()
        .resolve("alice", "fixture.flist")
        .expect("fixture");
    assert_eq!(
        hub.catalog().metadata(&fx).expect("md")["custom-key"],
        "some-value"
    );

    // Corrupt a stored file: the integrity check names it.
    assert!(hub.integrity_check().expect("check").is_clean());
    fs::write(hub.catalog().blob_path(&fx.sha256), b"garbage").expect("corrupt");
    let rep = hub.integrity_check().expect("check");
    assert!(!rep.is_clean());
    assert!(
        rep.problems
            .iter()
            .any(|p| p.contains("alice/fixture.flist")),
        "{:?}",
        rep.problems
    );
}

#[test]
fn tokens_expire_and_revoke() {
    let (_d, hub) = hub();
    hub.accounts()
        .user_add("alice", "a long test password", false)
        .expect("account");
    let (tok, info) = hub
        .accounts()
        .create_token("alice", &["team".into()], 3600, Some("ci"))
        .expect("token");
    assert_eq!(tok.len(), 43);
    match hub.accounts().check_token(&tok).expect("check") {
        TokenCheck::Valid(i) => assert_eq!(i, info),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        hub.accounts().check_token("forged").expect("check"),
        TokenCheck::Unknown
    );
    assert!(hub.accounts().revoke_token(&tok).expect("revoke"));
    assert_eq!(
        hub.accounts().check_token(&tok).expect("check"),
        TokenCheck::Revoked
    );
    assert!(hub.accounts().create_token("alice", &[], 0, None).is_err());
    // The catalog never holds the token itself.
    let db = common::catalog_bytes(hub.data_dir());
    let needle = tok.as_bytes();
    assert!(!db.is_empty() && !db.windows(needle.len()).any(|w| w == needle));
}

/// No token starts with `-`, which a command line would take for an option (one in 64 did).
#[test]
fn tokens_never_start_with_a_dash() {
    let (_d, hub) = hub();
    hub.accounts()
        .user_add("alice", "a long test password", false)
        .expect("account");
    for _ in 0..400 {
        let (tok, _) = hub
            .accounts()
            .create_token("alice", &[], 60, None)
            .expect("token");
        assert_eq!(tok.len(), 43);
        assert!(!tok.starts_with('-'), "{tok}");
    }
}

#[test]
fn jobs_survive_restart_as_failed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (running, done) = {
        let hub = common::open(dir.path()).expect("open");
        let a = hub.jobs().create("upload", "alice").expect("job");
        hub.jobs()
            .progress(&a.id, 40, "converting")
            .expect("progress");
        let b = hub.jobs().create("upload", "alice").expect("job");
        hub.jobs()
            .finish(&b.id, &serde_json::json!({"name": "x.flist"}))
            .expect("finish");
        (a.id, b.id)
    };
    let hub = common::open(dir.path()).expect("reopen");
    if common::postgres() {
        // A shared catalog: a starting replica leaves the job (it may be another
        // replica's); it fails once nobody marks it alive.
        let a = hub.jobs().get(&running).expect("read").expect("kept");
        assert_eq!(a.state, hub_repo::JobState::Running);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let n = hub
            .jobs()
            .fail_stale(std::time::Duration::from_secs(1))
            .expect("fail stale");
        assert_eq!(n, 1);
    }
    let a = hub.jobs().get(&running).expect("read").expect("kept");
    assert_eq!(a.state, hub_repo::JobState::Failed);
    let why = if common::postgres() {
        "stopped"
    } else {
        "restart"
    };
    assert!(a.message.contains(why), "{}", a.message);
    let b = hub.jobs().get(&done).expect("read").expect("kept");
    assert_eq!(b.state, hub_repo::JobState::Done);
    assert_eq!(b.info.expect("info")["name"], "x.flist");
}

#[test]
fn import_legacy_tree() {
    let (d, hub) = hub();
    let root = d.path().join("users");
    let alice = root.join("alice");
    let bob = root.join("bob");
    fs::create_dir_all(alice.join(".tag-v1")).expect("mkdir");
    fs::create_dir_all(&bob).expect("mkdir");
    fs::copy(fixture("merge-a.flist"), alice.join("a.flist")).expect("copy");
    fs::write(alice.join("a.flist.md5"), "x\n").expect("md5");
    fs::copy(fixture("merge-b.flist"), bob.join("b.flist")).expect("copy");
    symlink("a.flist", alice.join("latest.flist")).expect("symlink");
    symlink("../bob/b.flist", alice.join("bobs.flist")).expect("crosslink");
    symlink("../../alice/a.flist", alice.join(".tag-v1/a.flist")).expect("tag link");
    symlink("../alice/.tag-v1", bob.join("alices")).expect("taglink");
    symlink("/etc/passwd", bob.join("evil.flist")).expect("outside");
    fs::write(bob.join("<script>.flist"), "x").expect("bad name");

    let rep = hub.import_legacy(&root).expect("import");
    let mut imported = rep.imported.clone();
    imported.sort();
    assert_eq!(
        imported,
        [
            "alice",
            "alice/a.flist",
            "alice/bobs.flist",
            "alice/latest.flist",
            "alice/tags/v1",
            "alice/tags/v1/a.flist",
            "bob",
            "bob/alices",
            "bob/b.flist"
        ]
    );
    assert_eq!(rep.unimportable.len(), 2, "{:?}", rep.unimportable);
    assert_eq!(rep.ignored.len(), 1, "{:?}", rep.ignored);
    assert_eq!(
        hub.catalog()
            .resolve("alice", "bobs.flist")
            .expect("crosslink")
            .repo,
        "bob"
    );
    assert_eq!(
        hub.catalog()
            .resolve_in_tag("bob", "alices", "a.flist")
            .expect("taglink")
            .name,
        "a.flist"
    );
    assert!(hub.integrity_check().expect("check").is_clean());
}

#[test]
fn put_flist_many_records_every_entry_in_one_go() {
    let (_d, hub) = hub();
    let f = fs::File::open(fixture("merge-a.flist")).expect("fixture");
    let staged = hub.catalog().stage_reader(f).expect("stage");
    let targets: Vec<(String, String)> = (0..3)
        .flat_map(|r| (0..2).map(move |f| (format!("r{r}"), format!("f{f}.flist"))))
        .collect();
    let bob = Actor::new("bob", vec![]);
    let again = hub
        .catalog()
        .stage_reader(fs::File::open(fixture("merge-a.flist")).expect("f"))
        .expect("stage");
    assert!(matches!(
        hub.catalog()
            .put_flist_many(&bob, &targets, again, Default::default()),
        Err(RepoError::Forbidden(_))
    ));
    assert_eq!(
        hub.catalog()
            .put_flist_many(&Actor::system("seed"), &targets, staged, Default::default())
            .expect("many"),
        6
    );
    assert_eq!(hub.catalog().repositories().expect("repos").len(), 3);
    assert_eq!(
        hub.catalog()
            .resolve("r2", "f1.flist")
            .expect("resolve")
            .name,
        "f1.flist"
    );
    assert_eq!(hub.catalog().audit_log(0, 100).expect("log").len(), 6);
    assert!(hub.integrity_check().expect("check").is_clean());
}

/// Issue #24, item 7: `check` lists names a local write would refuse (a mirror of an
/// unchecked primary could have taken some); a clean catalog has none.
#[test]
fn invalid_names_in_the_catalog_are_listed() {
    let (d, hub) = hub();
    let alice = Actor::new("alice", vec![]);
    upload(&hub, &alice, "alice", "a.flist", "merge-a.flist");
    assert!(hub.invalid_names().expect("names").is_empty());
    // What an old mirror could have written, bypassing the write paths.
    common::exec_raw(
        &d.path().join("data"),
        "INSERT INTO repositories(name, created, updated) VALUES ('api', 1, 1);
         INSERT INTO entries(repo, name, kind, sha256, target_repo, target_name, updated, linktime)
           SELECT 'alice', '../../PWNED_m.flist', 'regular', sha256, NULL, NULL, 1, NULL
           FROM entries WHERE repo = 'alice' AND name = 'a.flist';
         INSERT INTO entries(repo, name, kind, sha256, target_repo, target_name, updated, linktime)
           VALUES ('alice', 'l.flist', 'symlink', NULL, 'alice', '../../x/../y', 1, 1);",
    );
    let bad = hub.invalid_names().expect("names").join("\n");
    for name in ["\"api\"", "PWNED_m.flist", "../../x/../y"] {
        assert!(bad.contains(name), "{name} not listed: {bad}");
    }
    let rep = hub.integrity_check().expect("check");
    assert!(!rep.is_clean(), "{:?}", rep.problems);
}
