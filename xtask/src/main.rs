//! Project tasks: `cargo xtask test`, `cargo xtask bench <what>`, `cargo xtask codegen`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

mod bench_api;
mod bench_convert;
mod bench_mount;
mod bench_oci;
mod bench_store;
mod codegen;
mod fuzz;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or(&[]).to_vec();
    match args.first().map(String::as_str) {
        Some("test") => test(&rest),
        Some("codegen") => codegen::run(&rest),
        Some("fuzz") => fuzz::run(&rest),
        Some("bench") => match rest.first().map(String::as_str) {
            Some("store") => bench_store::run(&rest[1..]),
            Some("convert") => bench_convert::run(&rest[1..]),
            Some("api") => bench_api::run(&rest[1..]),
            Some("oci") => bench_oci::run(&rest[1..]),
            Some("mount") => bench_mount::run(&rest[1..]),
            Some("codec") => cargo(&["bench", "-p", "flist-benches", "--bench", "codec"]),
            Some("all") => {
                bench_store::run(&[])?;
                bench_convert::run(&[])?;
                bench_api::run(&[])
            }
            _ => bail!("usage: cargo xtask bench <store|convert|api|codec|oci|mount|all>"),
        },
        _ => {
            eprintln!(
                "usage: cargo xtask <test|fuzz|bench <store|convert|api|codec|oci|all>|codegen>\n\
                 \n  test      run the whole test suite (needs redis-server, docker-registry, skopeo)\
                 \n  bench     run a benchmark and print figures against its baseline\
                 \n  codegen   regenerate checked-in generated code (Cap'n Proto bindings)\
                 \n  fuzz      build and run the fuzz targets on stable: fuzz [TARGET] [--seconds N]"
            );
            std::process::exit(2);
        }
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs cargo with `args` in the workspace root, failing on a non-zero exit.
pub fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(args)
        .current_dir(root())
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The whole test suite: every crate's unit, integration and doc tests.
fn test(extra: &[String]) -> Result<()> {
    let missing: Vec<&str> = ["redis-server", "docker-registry", "skopeo"]
        .into_iter()
        .filter(|p| which(p).is_none())
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} not on PATH: the tests run a real redis-server and a real OCI registry.\n\
             Install them (Debian: apt-get install -y redis-server docker-registry skopeo) \
             and run again.",
            missing.join(", ")
        );
    }
    let mut args = vec!["test", "--workspace", "--all-targets"];
    args.extend(extra.iter().map(String::as_str));
    cargo(&args)?;
    cargo(&["test", "--workspace", "--doc"])
}

/// Finds a program on PATH.
pub fn which(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}
