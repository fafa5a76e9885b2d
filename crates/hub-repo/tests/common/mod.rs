//! The catalog engine a test binary runs the hub-repo suite on: SQLite (the default), or
//! PostgreSQL when the test target's name starts with `cluster_pg` (those targets include
//! the same test files, and run in the `cluster` group of `cargo xtask test`). On
//! PostgreSQL one server is shared by the whole test binary and each data directory a test
//! opens gets a fresh database of its own.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hub_repo::Hub;

/// Whether this test binary runs on PostgreSQL.
pub fn postgres() -> bool {
    env!("CARGO_CRATE_NAME").starts_with("cluster_pg")
}

/// The catalog setting for `data`: `None` (SQLite in the data directory), or on PostgreSQL
/// the URL of the database created for it on first use.
pub fn catalog_for(data: &Path) -> Option<String> {
    if !postgres() {
        return None;
    }
    static DBS: Mutex<BTreeMap<PathBuf, String>> = Mutex::new(BTreeMap::new());
    let mut dbs = DBS.lock().unwrap_or_else(|p| p.into_inner());
    let url = dbs
        .entry(data.to_path_buf())
        .or_insert_with(|| test_support::postgres::Postgres::shared().create_database("hubrepo"));
    Some(url.clone())
}

/// Opens (creating) the hub in `data` on this binary's engine.
pub fn open(data: impl AsRef<Path>) -> Result<Hub, hub_repo::RepoError> {
    let data = data.as_ref();
    let hub = Hub::open_on(data, catalog_for(data).as_deref())?;
    assert_eq!(
        hub.catalog_is_shared(),
        postgres(),
        "{}",
        hub.catalog_location()
    );
    Ok(hub)
}

/// Opens an existing hub in `data` for administration, on this binary's engine.
pub fn open_existing(data: impl AsRef<Path>) -> Result<Hub, hub_repo::RepoError> {
    let data = data.as_ref();
    Hub::open_existing_on(data, catalog_for(data).as_deref())
}

/// Runs `sql` (statements the two engines share) straight on the catalog of `data`,
/// bypassing the model (what an old mirror or a hand edit could have written).
pub fn exec_raw(data: &Path, sql: &str) {
    match catalog_for(data) {
        None => {
            let c = rusqlite::Connection::open(data.join("catalog.sqlite3")).expect("catalog");
            c.execute_batch(sql).expect("raw SQL");
        }
        Some(url) => {
            let db = url.rsplit('/').next().expect("database name");
            test_support::postgres::Postgres::shared()
                .query(db, sql)
                .expect("raw SQL");
        }
    }
}

/// Everything the catalog of `data` stores, as bytes to search (the SQLite file and its
/// log, or on PostgreSQL every row of the account tables as text).
pub fn catalog_bytes(data: &Path) -> Vec<u8> {
    match catalog_for(data) {
        None => {
            let mut b = std::fs::read(data.join("catalog.sqlite3")).expect("catalog");
            b.extend(std::fs::read(data.join("catalog.sqlite3-wal")).unwrap_or_default());
            b
        }
        Some(url) => {
            let db = url.rsplit('/').next().expect("database name");
            let pg = test_support::postgres::Postgres::shared();
            let mut out = Vec::new();
            for t in [
                "tokens",
                "token_usage",
                "sessions",
                "users",
                "audit",
                "jobs",
            ] {
                let rows = pg
                    .query(
                        db,
                        &format!("SELECT coalesce(string_agg(t::text, ' '), '') FROM {t} t"),
                    )
                    .expect("dump table");
                out.extend(rows.into_bytes());
            }
            out
        }
    }
}
