//! `cargo xtask bench store`: the chunk store client, in one run:
//! - `pack` of a generated 200 MiB directory tree (as `zflist pack` does) into a real 0-db
//!   (v2.0.7, built from `../shared/vendor/`) and into a real redis-server: the ratio
//!   (goal: 0-db within 1.25× of redis, PASS/FAIL) and the client's CPU utilisation
//!   ((user + sys) / wall, via getrusage) next to each
//!   (`crates/flist-convert/examples/pack_store_bench.rs`);
//! - `set_many`/`exists_many` against a local redis-server, next to `redis-benchmark` and a
//!   naive one-round-trip-per-chunk client (`crates/flist-store/examples/bench_store.rs`);
//! - reads through the hub's read-only 0-db endpoint (`hub-server serve --zdb-listen` over a
//!   `dir://` store) against a real 0-db serving the same chunks, same client (`MGET`
//!   batches, pipelined `GET`s of 512 KiB and 4 KiB values): the ratio, goal ≥ 0.8×
//!   (`bins/hub-server/examples/zdb_endpoint_bench.rs`).
//!
//! Options: `--pack-mib N` (tree size, default 200), `--rounds N` (pack rounds, default 2);
//! the others (`--mib N`, `--keys N`) go to the set/exists benchmark; `--pack-only` skips it
//! and the endpoint row; `--endpoint-only` runs only the endpoint row.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// Runs the benchmark.
pub fn run(args: &[String]) -> Result<()> {
    for prog in ["redis-server", "redis-benchmark"] {
        if crate::which(prog).is_none() {
            bail!(
                "{prog} is not on PATH: the store benchmark runs a real server.\n\
                 Run `cargo xtask doctor`, or install it (Debian: apt-get install -y \
                 redis-server redis-tools) and run again."
            );
        }
    }
    let mut pack_mib = 200u64;
    let mut rounds = 2u32;
    let mut pack_only = false;
    let mut endpoint_only = false;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--pack-mib" => pack_mib = it.next().context("--pack-mib N")?.parse()?,
            "--rounds" => rounds = it.next().context("--rounds N")?.parse()?,
            "--pack-only" => pack_only = true,
            "--endpoint-only" => endpoint_only = true,
            other => rest.push(other.to_owned()),
        }
    }
    // The real 0-db (built once, cached under target/).
    let zdb = test_support::zdb::binary().map_err(anyhow::Error::msg)?;
    if endpoint_only {
        return endpoint(&zdb);
    }
    crate::cargo(&[
        "build",
        "--release",
        "-p",
        "flist-convert",
        "--example",
        "convert-bench",
        "--example",
        "pack-store-bench",
    ])?;
    let root = crate::root();
    let examples = root.join("target/release/examples");
    let work = root.join(format!("target/bench-store/{pack_mib}M"));
    let tree = work.join("tree");
    if !tree.is_dir() {
        println!("generating a {pack_mib} MiB tree in {} ...", work.display());
        std::fs::create_dir_all(&work)?;
        let status = Command::new(examples.join("convert-bench"))
            .arg("gen")
            .arg(&work)
            .arg((pack_mib << 20).to_string())
            .status()
            .context("running convert-bench gen")?;
        if !status.success() {
            bail!("tree generation failed");
        }
    }
    // Warm the page cache: both contenders read from memory.
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "find '{}' -type f -print0 | xargs -0 cat > /dev/null",
            tree.display()
        ))
        .status();
    println!(
        "pack of a {pack_mib} MiB generated tree ({}), zdb {}:",
        tree.display(),
        zdb.display()
    );
    let status = Command::new(examples.join("pack-store-bench"))
        .arg(&tree)
        .arg(rounds.to_string())
        .env("ZDB_BIN", &zdb)
        .status()
        .context("running pack-store-bench")?;
    if !status.success() {
        bail!("pack-store-bench failed ({status})");
    }
    if pack_only {
        return Ok(());
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
    cargo_args.extend(rest.iter().map(String::as_str));
    crate::cargo(&cargo_args)?;
    endpoint(&zdb)
}

/// The hub's 0-db endpoint against a real 0-db serving the same chunks.
fn endpoint(zdb: &std::path::Path) -> Result<()> {
    crate::cargo(&[
        "build",
        "--release",
        "-p",
        "hub-server",
        "--bin",
        "hub-server",
        "--example",
        "zdb-endpoint-bench",
    ])?;
    let release = crate::root().join("target/release");
    let status = Command::new(release.join("examples/zdb-endpoint-bench"))
        .arg(release.join("hub-server"))
        .env("ZDB_BIN", zdb)
        .status()
        .context("running zdb-endpoint-bench")?;
    if !status.success() {
        bail!("zdb-endpoint-bench failed ({status})");
    }
    Ok(())
}
