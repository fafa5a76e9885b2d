//! `cargo xtask bench store`: the chunk store client against a local redis-server, next to
//! `redis-benchmark` and a naive one-round-trip-per-chunk client (see
//! `crates/flist-store/examples/bench_store.rs`). Extra arguments (`--mib N`, `--keys N`)
//! are passed to the benchmark.

use anyhow::{bail, Result};

/// Runs the benchmark.
pub fn run(args: &[String]) -> Result<()> {
    for prog in ["redis-server", "redis-benchmark"] {
        if crate::which(prog).is_none() {
            bail!(
                "{prog} is not on PATH: the store benchmark runs a real server.\n\
                 Install it (Debian: apt-get install -y redis-server redis-tools) and run again."
            );
        }
    }
    let mut cargo_args = vec![
        "run",
        "--release",
        "-p",
        "flist-store",
        "--example",
        "bench_store",
        "--",
    ];
    cargo_args.extend(args.iter().map(String::as_str));
    crate::cargo(&cargo_args)
}
