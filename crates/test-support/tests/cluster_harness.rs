//! The harness's real servers of the `cluster` group: a throwaway PostgreSQL cluster and
//! SeaweedFS, each stopped and started again on the same data.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use test_support::{Postgres, SeaweedServer};

fn uid_of(pid: i32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
        .unwrap()
}

#[test]
fn postgres_runs_unprivileged_and_survives_a_restart() {
    let mut pg = Postgres::start();
    let url = pg.create_database("harness");
    assert!(url.starts_with("postgres://flist:"), "{url}");
    let db = url.rsplit('/').next().unwrap().to_owned();
    assert_eq!(
        pg.query(&db, "SHOW server_version_num").unwrap()[..2],
        *"15"
    );
    pg.query(
        &db,
        "CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')",
    )
    .unwrap();
    // The postmaster never runs as root.
    let pid: i32 = std::fs::read_to_string(
        std::path::Path::new(&pg.query(&db, "SHOW data_directory").unwrap()).join("postmaster.pid"),
    )
    .unwrap()
    .lines()
    .next()
    .unwrap()
    .parse()
    .unwrap();
    assert_ne!(uid_of(pid), 0, "postgres runs as root");
    // A wrong password is refused (password authentication over TCP is on).
    let refused = std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port().to_string(),
            "-U",
            "flist",
        ])
        .args(["-d", &db, "-c", "SELECT 1"])
        .env("PGPASSWORD", "wrong")
        .output()
        .unwrap();
    assert!(!refused.status.success());

    pg.stop();
    assert!(pg.query(&db, "SELECT 1").is_err(), "answers while stopped");
    pg.restart();
    assert_eq!(pg.query(&db, "SELECT v FROM t").unwrap(), "kept");
    pg.kill();
    pg.restart();
    assert_eq!(pg.query(&db, "SELECT v FROM t").unwrap(), "kept");
}

#[test]
fn shared_servers_are_one_per_test_process() {
    let a = Postgres::shared() as *const Postgres;
    let b = Postgres::shared() as *const Postgres;
    assert_eq!(a, b);
    let s = SeaweedServer::shared();
    assert!(s.port() < 55000, "weed also listens on port + 10000");
    assert!(std::ptr::eq(s, SeaweedServer::shared()));
    assert!(s.dir().join("owner.pid").is_file());
}
