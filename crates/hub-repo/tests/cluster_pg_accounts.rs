//! The hub-repo suite of `tests/accounts.rs` on a PostgreSQL catalog (one server for this
//! test binary, a fresh database per test): the `cluster` group of `cargo xtask test`.

#[path = "accounts.rs"]
mod suite;
