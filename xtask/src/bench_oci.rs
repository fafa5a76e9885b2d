//! `cargo xtask bench oci`: a ~200 MB multi-layer image in a local registry, converted by
//! `flist_convert::oci` and, as the baseline in the same run, copied by `skopeo copy` to a
//! local directory. Runs `crates/flist-convert/examples/oci_bench.rs` in release mode.

use anyhow::{bail, Result};

/// Runs the benchmark; an optional argument is the image size in MiB (default 200).
pub fn run(args: &[String]) -> Result<()> {
    for prog in ["docker-registry", "skopeo"] {
        if crate::which(prog).is_none() {
            bail!(
                "{prog} is not on PATH: the OCI bench runs a real registry and skopeo.\n\
                 Install them (Debian: apt-get install -y docker-registry skopeo) and run again."
            );
        }
    }
    let mut cargo_args = vec![
        "run",
        "--release",
        "-p",
        "flist-convert",
        "--example",
        "oci_bench",
        "--",
    ];
    cargo_args.extend(args.iter().map(String::as_str));
    crate::cargo(&cargo_args)
}
