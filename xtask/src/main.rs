//! Project tasks: `cargo xtask test [GROUP|CRATE]`, `cargo xtask doctor`,
//! `cargo xtask bench <what>`, `cargo xtask codegen`, `cargo xtask fuzz`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

mod bench_api;
mod bench_convert;
mod bench_extract;
mod bench_mount;
mod bench_oci;
mod bench_push;
mod bench_run;
mod bench_store;
mod codegen;
mod fuzz;
mod groups;
mod hub_process;
mod modgraph;
mod prereq;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or(&[]).to_vec();
    match args.first().map(String::as_str) {
        Some("test") => test(&rest),
        Some("doctor") => {
            if prereq::doctor() > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Some("codegen") => codegen::run(&rest),
        Some("arch") => modgraph::run(&rest),
        Some("fuzz") => fuzz::run(&rest),
        Some("bench") => match rest.first().map(String::as_str) {
            Some("store") => bench_store::run(&rest[1..]),
            Some("convert") => bench_convert::run(&rest[1..]),
            Some("api") => bench_api::run(&rest[1..]),
            Some("oci") => bench_oci::run(&rest[1..]),
            Some("push") => bench_push::run(&rest[1..]),
            Some("mount") => bench_mount::run(&rest[1..]),
            Some("cluster") => {
                // PostgreSQL, SeaweedFS, nginx, wrk: the cluster group's prerequisites.
                let env = prereq::ensure()?;
                cargo(&["build", "--release", "-p", "hub-server"])?;
                let mut args = vec!["run", "--release", "-p", "hub-server", "--example", "bench_cluster", "--"];
                args.extend(rest[1..].iter().map(String::as_str));
                cargo_env(&args, &env)
            }
            Some("extract") => bench_extract::run_extract(&rest[1..]),
            Some("verify") => bench_extract::run_verify(&rest[1..]),
            Some("codec") => cargo(&["bench", "-p", "flist-benches", "--bench", "codec"]),
            Some("all") => {
                bench_store::run(&[])?;
                bench_convert::run(&[])?;
                bench_api::run(&[])
            }
            _ => bail!("usage: cargo xtask bench <store|convert|api|extract|verify|codec|oci|mount|push|cluster|all>"),
        },
        _ => {
            eprintln!(
                "usage: cargo xtask <test|doctor|arch|fuzz|bench <store|convert|api|extract|verify|codec|oci|mount|push|all>|codegen>\n\
                 \n  test [GROUP|CRATE] [-- ARGS]  install missing prerequisites, then run the tests:\
                 \n            all (default), fast (no slow groups), oci, browser, or one crate\
                 \n  doctor    list the test prerequisites: found (version) or missing\
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

/// `cargo xtask test [GROUP|CRATE] [-- CARGO-TEST-ARGS]`: makes every prerequisite present
/// (or stops, before running anything, with the command to run), then runs the group.
fn test(args: &[String]) -> Result<()> {
    let (group, extra) = match args.first() {
        Some(g) if !g.starts_with('-') => (g.as_str(), &args[1..]),
        _ => ("all", args),
    };
    let extra: Vec<&str> = extra
        .iter()
        .map(String::as_str)
        .skip_while(|a| *a == "--")
        .collect();
    let plan = groups::plan(group)?;
    let env = prereq::ensure()?;
    for mut cargo_args in plan {
        cargo_args.extend(extra.iter().map(|a| a.to_string()));
        let refs: Vec<&str> = cargo_args.iter().map(String::as_str).collect();
        cargo_env(&refs, &env)?;
    }
    Ok(())
}

/// Runs cargo with `args` and extra environment variables, failing on a non-zero exit.
pub fn cargo_env(args: &[&str], env: &[(String, String)]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(root())
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Finds a program on PATH.
pub fn which(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// Fails naming the first of `tools` not found on `PATH`.
pub fn require_tools(tools: &[&str]) -> Result<()> {
    match tools.iter().find(|t| which(t).is_none()) {
        Some(t) => bail!("{t} is not on PATH"),
        None => Ok(()),
    }
}
