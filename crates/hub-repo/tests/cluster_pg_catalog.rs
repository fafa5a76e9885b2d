//! What only a PostgreSQL catalog has: several replicas opening one database at once (the
//! schema migrated once, under the advisory lock), credentials kept out of errors, the
//! server going away and coming back without reopening the hub, and writes from two hubs
//! on one catalog serialised (no lost update).

use std::sync::{Arc, Barrier};

use hub_repo::{Actor, Hub, RepoError, SCHEMA_VERSION};
use test_support::postgres::Postgres;

fn upload(hub: &Hub, actor: &Actor, repo: &str, name: &str) {
    let f = std::fs::File::open(test_support::fixture("merge-a.flist")).expect("fixture");
    let staged = hub.catalog().stage_reader(f).expect("stage");
    hub.catalog()
        .put_flist(actor, repo, name, staged, Default::default())
        .expect("put");
}

#[test]
fn replicas_starting_together_migrate_once() {
    let pg = Postgres::shared();
    let url = pg.create_database("migrate");
    let db = url.rsplit('/').next().expect("db").to_string();
    let start = Arc::new(Barrier::new(4));
    let dirs: Vec<_> = (0..4)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let handles: Vec<_> = dirs
        .iter()
        .map(|d| {
            let (url, start, dir) = (url.clone(), start.clone(), d.path().to_path_buf());
            std::thread::spawn(move || {
                start.wait();
                Hub::open_on(&dir, Some(&url)).map(|h| h.catalog_is_shared())
            })
        })
        .collect();
    for h in handles {
        assert!(h.join().expect("thread").expect("open"));
    }
    assert_eq!(
        pg.query(&db, "SELECT count(*), max(version) FROM hub_schema")
            .expect("schema")
            .trim(),
        format!("1|{SCHEMA_VERSION}")
    );
    // A catalog a newer hub migrated is refused, and left as it is.
    pg.query(&db, "UPDATE hub_schema SET version = version + 1")
        .expect("bump");
    let dir = tempfile::tempdir().expect("tempdir");
    let err = Hub::open_on(dir.path(), Some(&url)).expect_err("newer schema");
    assert!(err.to_string().contains("newer hub"), "{err}");
}

#[test]
fn the_password_stays_out_of_errors() {
    let pg = Postgres::shared();
    let url = pg.create_database("secret");
    let (_, host_db) = url.split_once('@').expect("url with credentials");
    let secret = "not-the-password-x7";
    let bad = format!("postgres://flist:{secret}@{host_db}");
    let dir = tempfile::tempdir().expect("tempdir");
    let err = Hub::open_on(dir.path(), Some(&bad)).expect_err("wrong password");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(secret), "{shown}");
    assert_eq!(
        hub_repo::redact_catalog("postgres://u:hunter2@h:5/db"),
        "postgres://u:***@h:5/db"
    );
}

#[test]
fn a_catalog_server_that_goes_away_is_unavailable_then_back_without_reopening() {
    let mut pg = Postgres::start();
    let url = pg.create_database("fault");
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::open_on(dir.path(), Some(&url)).expect("open");
    let alice = Actor::new("alice", vec![]);
    upload(&hub, &alice, "alice", "a.flist");
    pg.stop();
    let err = hub.catalog().list("alice").expect_err("server down");
    assert!(err.is_unavailable(), "{err}");
    let f = std::fs::File::open(test_support::fixture("merge-b.flist")).expect("fixture");
    let staged = hub.catalog().stage_reader(f).expect("stage");
    let err = hub
        .catalog()
        .put_flist(&alice, "alice", "b.flist", staged, Default::default())
        .expect_err("write while down");
    assert!(err.is_unavailable(), "{err}");
    pg.restart();
    let listed = hub.catalog().list("alice").expect("back").expect("repo");
    assert_eq!(
        listed.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["a.flist"],
        "the write refused while down left nothing"
    );
    upload(&hub, &alice, "alice", "b.flist");
    assert_eq!(
        hub.catalog()
            .list("alice")
            .expect("list")
            .expect("repo")
            .len(),
        2
    );
}

#[test]
fn two_hubs_on_one_catalog_never_lose_a_tag_write() {
    let url = Postgres::shared().create_database("race");
    let (d1, d2) = (
        tempfile::tempdir().expect("d1"),
        tempfile::tempdir().expect("d2"),
    );
    let h1 = Arc::new(Hub::open_on(d1.path(), Some(&url)).expect("h1"));
    let h2 = Arc::new(Hub::open_on(d2.path(), Some(&url)).expect("h2"));
    let alice = Actor::new("alice", vec![]);
    upload(&h1, &alice, "alice", "a.flist");
    // both replicas tag concurrently: every link must be there afterwards
    let threads: Vec<_> = [h1.clone(), h2.clone()]
        .into_iter()
        .enumerate()
        .map(|(i, h)| {
            let alice = alice.clone();
            std::thread::spawn(move || {
                for n in 0..20 {
                    h.catalog()
                        .tag_add(
                            &alice,
                            "alice",
                            "v1",
                            &format!("r{i}-{n}.flist"),
                            "alice",
                            "a.flist",
                        )
                        .expect("tag");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer");
    }
    for h in [&h1, &h2] {
        let links = h.catalog().tag_links("alice", "v1").expect("links");
        assert_eq!(links.len(), 40, "{links:?}");
    }
    let err = h2
        .catalog()
        .link(&Actor::new("bob", vec![]), "alice", "a.flist", "x.flist")
        .expect_err("forbidden");
    assert!(matches!(err, RepoError::Forbidden(_)), "{err}");
}

/// A replica notices what another committed (its watch then drops the caches keyed on the
/// generation), and nothing more once it has: before, a replica's listings and downloads
/// kept serving the catalog as it was until it wrote something itself.
#[test]
fn a_replica_notices_the_writes_of_another() {
    let url = Postgres::shared().create_database("watch");
    let (d1, d2) = (
        tempfile::tempdir().expect("d1"),
        tempfile::tempdir().expect("d2"),
    );
    let h1 = Hub::open_on(d1.path(), Some(&url)).expect("h1");
    let h2 = Hub::open_on(d2.path(), Some(&url)).expect("h2");
    let alice = Actor::new("alice", vec![]);
    // The first look records where the catalog stands.
    h2.notice_external_writes().expect("watch");
    assert!(
        !h2.notice_external_writes().expect("watch"),
        "nothing written yet"
    );
    let before = h2.generation();
    upload(&h1, &alice, "alice", "a.flist");
    assert!(
        h2.notice_external_writes().expect("watch"),
        "h1's upload unseen"
    );
    assert!(h2.generation() > before);
    assert!(
        !h2.notice_external_writes().expect("watch"),
        "noticed twice"
    );
    let listed = h2.catalog().list("alice").expect("list").expect("alice");
    assert_eq!(listed.len(), 1);
    // A write that fails (rolled back) is not one.
    let err = h1
        .catalog()
        .link(&Actor::new("bob", vec![]), "alice", "a.flist", "x.flist");
    assert!(err.is_err());
    assert!(
        !h2.notice_external_writes().expect("watch"),
        "a refused write counted"
    );
}

/// A replica hears of another's write by the notification the write transaction sends on
/// commit (`LISTEN`), not by a timer: a wait for an hour returns once h1 writes. A watchdog
/// fails the test instead of hanging if the notification never comes.
#[test]
fn a_replica_is_woken_by_the_commit_of_another() {
    let url = Postgres::shared().create_database("listen");
    let (d1, d2) = (
        tempfile::tempdir().expect("d1"),
        tempfile::tempdir().expect("d2"),
    );
    let h1 = Hub::open_on(d1.path(), Some(&url)).expect("h1");
    let h2 = Arc::new(Hub::open_on(d2.path(), Some(&url)).expect("h2"));
    // The listener's connection counts as a wake-up, and h2's own start-up writes notify
    // too: let them pass first.
    while h2.wait_for_writes(std::time::Duration::from_secs(2)) {}
    h2.notice_external_writes().expect("watch");
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = h2.clone();
    std::thread::spawn(move || {
        waiter.wait_for_writes(std::time::Duration::from_secs(3600));
        let _ = tx.send(waiter.notice_external_writes().expect("watch"));
    });
    upload(&h1, &Actor::new("alice", vec![]), "alice", "a.flist");
    let noticed = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("h2 was not woken by h1's commit");
    assert!(noticed, "woken, but the write counter did not move");
}

/// Jobs on a shared catalog: a replica starting up leaves the others' running jobs alone
/// (before, every replica that started with its data directory to itself failed every
/// unfinished job of the cluster); a job its replica stops marking alive is failed by
/// whichever replica looks, one that is marked alive runs on.
#[test]
fn jobs_of_a_stopped_replica_fail_and_the_others_run_on() {
    let url = Postgres::shared().create_database("jobs");
    let (d1, d2) = (
        tempfile::tempdir().expect("d1"),
        tempfile::tempdir().expect("d2"),
    );
    let h1 = Hub::open_on(d1.path(), Some(&url)).expect("h1");
    let (alive, dead) = (
        h1.jobs().create("upload", "alice").expect("job"),
        h1.jobs().create("docker", "bob").expect("job"),
    );
    let h2 = Hub::open_on(d2.path(), Some(&url)).expect("h2");
    for id in [&alive.id, &dead.id] {
        let rec = h2.jobs().get(id).expect("get").expect("job");
        assert_eq!(rec.state, hub_repo::JobState::Running, "{rec:?}");
    }
    assert_eq!(
        h2.jobs()
            .fail_stale(std::time::Duration::from_secs(3600))
            .expect("none stale"),
        0
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    h1.jobs()
        .touch(std::slice::from_ref(&alive.id))
        .expect("touch");
    let n = h2
        .jobs()
        .fail_stale(std::time::Duration::from_secs(1))
        .expect("fail stale");
    assert_eq!(n, 1);
    let rec = h1.jobs().get(&dead.id).expect("get").expect("job");
    assert_eq!(rec.state, hub_repo::JobState::Failed);
    assert!(rec.message.contains("replica"), "{}", rec.message);
    let rec = h1.jobs().get(&alive.id).expect("get").expect("job");
    assert_eq!(rec.state, hub_repo::JobState::Running);
    // Its end is recorded as usual.
    h1.jobs()
        .finish(&alive.id, &serde_json::json!({"name": "a.flist"}))
        .expect("finish");
    let rec = h2.jobs().get(&alive.id).expect("get").expect("job");
    assert_eq!(rec.state, hub_repo::JobState::Done);
}

/// Version 7 on PostgreSQL: a catalog at version 6 gains the disable switch (accounts start
/// enabled) and the invitations table.
#[test]
fn version_7_migrates_a_version_6_catalog() {
    let pg = Postgres::shared();
    let url = pg.create_database("v7");
    let db = url.rsplit('/').next().expect("db").to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::open_on(dir.path(), Some(&url)).expect("open");
    hub.accounts()
        .user_add("alice", "a long password", false)
        .expect("user");
    drop(hub);
    pg.query(
        &db,
        "DROP TABLE invites; ALTER TABLE users DROP COLUMN disabled; \
         UPDATE hub_schema SET version = 6",
    )
    .expect("downgrade");
    let hub = Hub::open_on(dir.path(), Some(&url)).expect("migrate");
    assert_eq!(
        pg.query(&db, "SELECT max(version) FROM hub_schema")
            .expect("schema")
            .trim(),
        SCHEMA_VERSION.to_string()
    );
    let a = hub.accounts();
    assert!(!a.is_disabled("alice").expect("read"));
    assert!(a
        .verify_password("alice", "a long password")
        .expect("verify")
        .is_some());
    let (code, _) = a.invite_create("alice", 60).expect("invite");
    a.signup("bob", "bob's password", Some(&code), false)
        .expect("sign up");
    assert_eq!(a.user_set_disabled("bob", true).expect("disable"), 0);
    assert!(a.is_disabled("bob").expect("read"));
}
