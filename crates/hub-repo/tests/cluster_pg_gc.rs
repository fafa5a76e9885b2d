//! The hub-repo suite of `tests/gc.rs` on a PostgreSQL catalog (one server for this test
//! binary, a fresh database per test): the `cluster` group of `cargo xtask test`.

#[path = "gc.rs"]
mod suite;
