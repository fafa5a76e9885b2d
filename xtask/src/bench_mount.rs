//! `cargo xtask bench mount [--mib N]`: read throughput of a 100 MiB file through a FUSE
//! mount (cold chunk cache, warm chunk cache) vs the local disk, and the time to first byte
//! of a cold read (see `crates/flist-mount/examples/bench_mount.rs`); then the launch rows
//! (`zflist run`'s time to first output, `zflist vm boot`'s time to the VM's marker, the share
//! of each flist fetched; see `bench_run`). Needs root, `/dev/fuse`, `redis-server`, QEMU,
//! debootstrap and apt.

use anyhow::{bail, Result};

/// Runs the benchmark.
pub fn run(args: &[String]) -> Result<()> {
    if crate::which("redis-server").is_none() {
        bail!(
            "redis-server is not on PATH: the mount benchmark reads chunks from a real server.\n\
             Install it (Debian: apt-get install -y redis-server) and run again."
        );
    }
    if !std::path::Path::new("/dev/fuse").exists() {
        bail!("/dev/fuse is missing: the mount benchmark needs FUSE (Debian: apt-get install -y fuse3)");
    }
    let mut cargo_args = vec![
        "run",
        "--release",
        "-p",
        "flist-mount",
        "--example",
        "bench_mount",
        "--",
    ];
    cargo_args.extend(args.iter().map(String::as_str));
    crate::cargo(&cargo_args)?;
    crate::bench_run::run()
}
