//! `cargo xtask bench api`: the hub's HTTP API under 32 concurrent connections, 1,000
//! repositories × 20 flists, each endpoint next to a static file of the same size served by
//! the same server in the same run (see `crates/hub-http/examples/bench_api.rs`). Extra
//! arguments (`--repos N`, `--flists N`, `--secs S`, `--conns C`) go to the benchmark.

use anyhow::Result;

/// Runs the benchmark.
pub fn run(args: &[String]) -> Result<()> {
    let mut cargo_args = vec![
        "run",
        "--release",
        "-p",
        "hub-http",
        "--example",
        "bench_api",
        "--",
    ];
    cargo_args.extend(args.iter().map(String::as_str));
    crate::cargo(&cargo_args)
}
