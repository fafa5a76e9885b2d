//! The hub-repo suite of `tests/repo.rs` on a PostgreSQL catalog (one server for this test
//! binary, a fresh database per test): the `cluster` group of `cargo xtask test`.

#[path = "repo.rs"]
mod suite;
