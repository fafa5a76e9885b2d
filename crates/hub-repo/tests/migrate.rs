//! Catalog schema versions (issue 12, finding 14): catalogs written before versions existed
//! open, migrate forward and keep everything; a catalog from a newer hub is refused untouched.
//!
//! The fixtures are `sqlite3 .dump`s of real catalogs written on 2026-11-30 (user_version 0):
//! `early-*` by a hub-server build of that morning (before the path index existed) and
//! `main-*` with the tables of the schema on main that day; `flists/` holds their two files.

use std::path::Path;

use hub_repo::{EntryKind, Hub, TokenCheck, SCHEMA_VERSION};
use rusqlite::Connection;

/// The fixture token (issued by the old hub for `alice`, member of `team`, for ten years).
const TOKEN: &str = "sg1TNzc0L1N1bJdZEtW3ZEII0_6omU_2HzEDMKGz2L0";

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/catalog-v0")
}

/// A data directory holding the catalog of `dump` and the fixture files.
fn data_dir(dump: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let sql = std::fs::read_to_string(fixtures().join(dump)).expect("dump");
    let c = Connection::open(dir.path().join("catalog.sqlite3")).expect("create");
    c.execute_batch(&sql).expect("load dump");
    drop(c);
    for d in std::fs::read_dir(fixtures().join("flists")).expect("flists") {
        let d = d.expect("dir");
        let to = dir.path().join("flists").join(d.file_name());
        std::fs::create_dir_all(&to).expect("mkdir");
        for f in std::fs::read_dir(d.path()).expect("dir") {
            let f = f.expect("file");
            std::fs::copy(f.path(), to.join(f.file_name())).expect("copy");
        }
    }
    dir
}

fn user_version(dir: &Path) -> i64 {
    Connection::open(dir.join("catalog.sqlite3"))
        .expect("open")
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("user_version")
}

fn indexes(dir: &Path) -> Vec<String> {
    let c = Connection::open(dir.join("catalog.sqlite3")).expect("open");
    let mut st = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .expect("prepare");
    st.query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[test]
fn catalogs_written_before_schema_versions_open_and_keep_everything() {
    const { assert!(SCHEMA_VERSION >= 2) };
    for dump in ["early-2026-11-30.sql", "main-2026-11-30.sql"] {
        let dir = data_dir(dump);
        assert_eq!(user_version(dir.path()), 0, "{dump}");
        assert!(!indexes(dir.path()).contains(&"tokens_user".to_string()));
        {
            let hub = Hub::open(dir.path()).unwrap_or_else(|e| panic!("{dump}: {e}"));
            // Data intact: entries, links, tags, tokens, jobs.
            let fixture = hub
                .catalog()
                .resolve("alice", "fixture-tree.flist")
                .expect("entry");
            let latest = hub
                .catalog()
                .resolve("alice", "latest.flist")
                .expect("link");
            assert_eq!(latest.sha256, fixture.sha256, "{dump}");
            assert!(hub.catalog().resolve("alice", "team-app.flist").is_ok());
            assert_eq!(
                hub.catalog().tag_links("alice", "v1").expect("tag").len(),
                1,
                "{dump}"
            );
            match hub.accounts().check_token(TOKEN).expect("check token") {
                TokenCheck::Valid(t) => {
                    assert_eq!(t.user, "alice");
                    assert_eq!(t.memberof, ["team"]);
                }
                other => panic!("{dump}: the old token is {other:?}"),
            }
            assert_eq!(
                hub.accounts().list_tokens("alice").expect("tokens").len(),
                1
            );
            let rep = hub.integrity_check().expect("check");
            assert!(
                rep.is_clean(),
                "{dump}: {:?} {:?}",
                rep.sqlite,
                rep.problems
            );
            assert_eq!(rep.entries_checked, 2);
            // The tables later versions added work: the path index, written on demand.
            hub.paths().ensure(&fixture.sha256).expect("index");
            assert!(hub.paths().indexed(&fixture.sha256).expect("indexed"));
            // And writes still work on the migrated catalog.
            match hub
                .catalog()
                .entry("alice", "fixture-tree.flist")
                .expect("entry")
            {
                Some(e) => assert!(matches!(e.kind, EntryKind::Regular { .. })),
                None => panic!("{dump}: entry lost"),
            }
            hub.catalog()
                .delete(
                    &hub_repo::Actor::new("alice", vec![]),
                    "alice",
                    "team-app.flist",
                )
                .expect("delete");
        }
        assert_eq!(user_version(dir.path()), SCHEMA_VERSION, "{dump}");
        let idx = indexes(dir.path());
        for want in [
            "tokens_user",
            "jobs_state",
            "entries_sha",
            "path_entries_dir",
        ] {
            assert!(
                idx.contains(&want.to_string()),
                "{dump}: {want} missing in {idx:?}"
            );
        }
        // Opening again is a no-op for the schema.
        drop(Hub::open(dir.path()).expect("reopen"));
        assert_eq!(user_version(dir.path()), SCHEMA_VERSION);
    }
}

#[test]
fn a_catalog_from_a_newer_hub_is_refused_and_left_alone() {
    let dir = data_dir("main-2026-11-30.sql");
    let future = SCHEMA_VERSION + 1;
    Connection::open(dir.path().join("catalog.sqlite3"))
        .expect("open")
        .pragma_update(None, "user_version", future)
        .expect("set version");
    let before = std::fs::read(dir.path().join("catalog.sqlite3")).expect("read");
    let err = Hub::open(dir.path())
        .expect_err("a newer catalog")
        .to_string();
    assert!(
        err.contains(&format!("schema version {future}")) && err.contains("newer hub"),
        "{err}"
    );
    assert_eq!(user_version(dir.path()), future);
    assert!(!indexes(dir.path()).contains(&"tokens_user".to_string()));
    let after = std::fs::read(dir.path().join("catalog.sqlite3")).expect("read");
    assert_eq!(before.len(), after.len());
}

/// A current catalog with the account `alice` ("a long password") and a token of hers.
fn catalog_with_alice() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::open(dir.path()).expect("open");
    hub.accounts()
        .user_add("alice", "a long password", false)
        .expect("user");
    let (token, _) = hub
        .accounts()
        .create_token("alice", &[], 3600, None)
        .expect("token");
    (dir, token)
}

/// Version 6: the organisations live tokens name become memberships (a token now carries
/// the memberships its user has when it is used), and repositories start public.
#[test]
fn version_6_records_the_organisations_of_live_tokens_as_memberships() {
    let (dir, token) = catalog_with_alice();
    // Back to version 5, with a token issued `--member-of acme` as that version stored it.
    let c = Connection::open(dir.path().join("catalog.sqlite3")).expect("open");
    c.execute_batch(
        "DROP TABLE invites;
         ALTER TABLE users DROP COLUMN disabled;
         DROP INDEX org_members_user;
         ALTER TABLE org_members DROP COLUMN role;
         ALTER TABLE repositories DROP COLUMN private;
         DELETE FROM org_members; DELETE FROM orgs;
         UPDATE tokens SET memberof = '[\"acme\"]';
         PRAGMA user_version = 5;",
    )
    .expect("downgrade");
    drop(c);
    let hub = Hub::open(dir.path()).expect("migrate");
    assert_eq!(user_version(dir.path()), SCHEMA_VERSION);
    match hub.accounts().check_token(&token).expect("check") {
        TokenCheck::Valid(info) => assert_eq!(info.memberof, vec!["acme".to_string()]),
        other => panic!("{other:?}"),
    }
    let members = hub
        .accounts()
        .org_members("acme")
        .expect("read")
        .expect("acme");
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].user, "alice");
    assert_eq!(members[0].role, hub_repo::OrgRole::Member);
    assert!(hub
        .catalog()
        .private_repositories()
        .expect("read")
        .is_empty());
}

/// Version 7: accounts start enabled (an existing account signs in and keeps its tokens),
/// and invitations can be made.
#[test]
fn version_7_keeps_accounts_enabled_and_takes_invitations() {
    let (dir, token) = catalog_with_alice();
    // Back to version 6.
    let c = Connection::open(dir.path().join("catalog.sqlite3")).expect("open");
    c.execute_batch(
        "DROP TABLE invites;
         ALTER TABLE users DROP COLUMN disabled;
         PRAGMA user_version = 6;",
    )
    .expect("downgrade");
    drop(c);
    let hub = Hub::open(dir.path()).expect("migrate");
    assert_eq!(user_version(dir.path()), SCHEMA_VERSION);
    let a = hub.accounts();
    assert!(!a.is_disabled("alice").expect("read"));
    assert!(a
        .verify_password("alice", "a long password")
        .expect("verify")
        .is_some());
    assert!(matches!(
        a.check_token(&token).expect("check"),
        TokenCheck::Valid(_)
    ));
    let (code, _) = a.invite_create("alice", 60).expect("invite");
    a.signup("bob", "bob's password", Some(&code), false)
        .expect("sign up");
    assert!(a.user_exists("bob").expect("read"));
}
