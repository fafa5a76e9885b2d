//! `cargo xtask bench mount [--mib N] [--only read,find,prefetch]`: reads through a FUSE mount
//! vs the local disk, each row against a baseline measured in the same run (see
//! `crates/flist-mount/examples/bench_mount/main.rs`): a 256 MiB file cold from a `dir://`
//! store, cold from a hub's `/chunks` over HTTP, warm from the chunk cache, page-cached, time
//! to first byte; `find` over the mounted Debian tree; a container start with and without the
//! recorded prefetch list. Then the launch rows (`zflist run`'s time to first output,
//! `zflist vm boot`'s time to the VM's marker, the share of each flist fetched; see
//! `bench_run`). Needs root, `/dev/fuse`, QEMU, debootstrap and apt.

use anyhow::{bail, Result};

/// Runs the benchmark.
pub fn run(args: &[String]) -> Result<()> {
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
