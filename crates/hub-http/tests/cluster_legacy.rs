//! The old hub's 370 recorded answers (`legacy_compat.rs`) replayed against a cluster: the
//! imported tree moved by `hub-server migrate`'s code into PostgreSQL and a SeaweedFS
//! bucket, then served by a replica with an empty data directory (issue 25; the `cluster`
//! group of `cargo xtask test`).

#[path = "legacy_compat.rs"]
mod suite;
