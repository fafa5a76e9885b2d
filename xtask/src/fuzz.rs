//! `cargo xtask fuzz [TARGET] [--seconds N]`: builds the `fuzz/` targets with libFuzzer
//! coverage instrumentation on the stable toolchain (the flags `cargo fuzz` passes, without
//! its nightly-only sanitizer) and runs each for N seconds (default 60), seeded with the
//! reference fixtures and `fuzz/seeds/<target>/`. A crash leaves its input in
//! `fuzz/artifacts/<target>/` and fails.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// Targets and the extension of the reference fixtures that seed them (besides the checked-in
/// seeds in `fuzz/seeds/<target>/`).
const TARGETS: &[(&str, &str)] = &[
    ("flist_reader", ".flist"),
    ("archive_to_tree", ".tar.gz"),
    ("resp_replies", ""),
    ("zdb_requests", ""),
    ("upload_multipart", ""),
];

const RUSTFLAGS: &str = "--cfg fuzzing -Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares \
    -Cdebug-assertions -Coverflow-checks";

/// Runs the fuzz targets.
pub fn run(args: &[String]) -> Result<()> {
    let mut seconds = 60u64;
    let mut only: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                seconds = it
                    .next()
                    .context("--seconds needs a value")?
                    .parse()
                    .context("--seconds: not a number")?
            }
            t if !t.starts_with('-') => only = Some(t.to_string()),
            other => bail!("unknown option {other} (use [TARGET] [--seconds N])"),
        }
    }
    let root = crate::root();
    let fuzz = root.join("fuzz");
    let triple = host_triple()?;
    let target_dir = root.join("target/fuzz");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "--bins",
            "--target",
            &triple,
            "--target-dir",
        ])
        .arg(&target_dir)
        .current_dir(&fuzz)
        .env("RUSTFLAGS", RUSTFLAGS)
        .status()
        .context("building the fuzz targets")?;
    if !status.success() {
        bail!("building the fuzz targets failed ({status})");
    }
    let fixtures = root.join("tests/fixtures/flist-v2");
    for (name, seed_ext) in TARGETS {
        if only.as_deref().is_some_and(|o| o != *name) {
            continue;
        }
        let corpus = fuzz.join("corpus").join(name);
        let artifacts = fuzz.join("artifacts").join(name);
        std::fs::create_dir_all(&corpus)?;
        std::fs::create_dir_all(&artifacts)?;
        for e in std::fs::read_dir(&fixtures)? {
            let p = e?.path();
            if !seed_ext.is_empty() && p.to_string_lossy().ends_with(seed_ext) {
                if let Some(f) = p.file_name() {
                    std::fs::copy(&p, corpus.join(f))?;
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir(fuzz.join("seeds").join(name)) {
            for e in rd {
                let p = e?.path();
                if let Some(f) = p.file_name() {
                    std::fs::copy(&p, corpus.join(f))?;
                }
            }
        }
        let bin = target_dir.join(&triple).join("release").join(name);
        println!("fuzzing {name} for {seconds} s ...");
        let status = Command::new(&bin)
            .arg(&corpus)
            .arg(format!("-max_total_time={seconds}"))
            .arg("-rss_limit_mb=2048")
            .arg("-max_len=262144")
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .status()
            .with_context(|| format!("running {}", bin.display()))?;
        if !status.success() {
            bail!(
                "{name}: libFuzzer found a failure ({status}); input in {}",
                artifacts.display()
            );
        }
    }
    Ok(())
}

fn host_triple() -> Result<String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .context("running rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .context("no host triple in rustc -vV")
}
