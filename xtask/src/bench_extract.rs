//! `cargo xtask bench extract` and `cargo xtask bench verify [--rounds N]`, on the Debian
//! minbase root file system (`debootstrap`, cached under `target/tmp/`, shared with the
//! convert bench and the mount tests), packed once into a fresh `dir://` store on the same
//! disk. Each row prints its baseline from the same run, the ratio and the goal of issue
//! #15 (PASS/FAIL):
//! - `zflist extract` of the flist vs `tar -xzf` of the same tree as `.tar.gz` (≤ 1.5×);
//! - `zflist verify --deep` throughput vs the codec's single-thread decode rate of the same
//!   chunks (`decode-bench`, decoding alone, from memory) × the cores (≥ 0.8×).
//!
//! Inputs and the store are read once before timing (page cache warm for both sides); each
//! run starts after `sync` (no run pays for an earlier one's writeback), the two sides
//! alternate, and the best of `--rounds` (default 3) is kept for each.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::bench_convert::{kv_field, minbase, result_line, shell_time, verdict};

struct Setup {
    zflist: PathBuf,
    decode: PathBuf,
    tree: PathBuf,
    archive: PathBuf,
    flist: PathBuf,
    store: String,
    work: PathBuf,
}

fn setup() -> Result<Setup> {
    crate::require_tools(&["tar", "gzip", "find", "cat"])?;
    crate::cargo(&[
        "build",
        "--release",
        "-p",
        "zflist",
        "--bin",
        "zflist",
        "-p",
        "flist-convert",
        "--example",
        "decode-bench",
    ])?;
    let root = crate::root();
    let Some((tree, archive)) = minbase(&root)? else {
        bail!("debootstrap is unavailable: the minbase tree cannot be made (install debootstrap)");
    };
    let work = root.join("target/bench-extract");
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("cleaning {}", work.display()))?;
    }
    std::fs::create_dir_all(&work)?;
    let store = format!("dir://{}", work.join("store").display());
    let flist = work.join("minbase.flist");
    let zflist = root.join("target/release/zflist");
    let out = Command::new(&zflist)
        .args(["pack", "--quiet", "--store", &store, "--output"])
        .arg(&flist)
        .arg(&tree)
        .output()
        .context("running zflist pack")?;
    if !out.status.success() {
        bail!(
            "zflist pack failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Warm the page cache for both sides.
    shell_time(&format!(
        "cat {} > /dev/null; find {} -type f -print0 | xargs -0 cat > /dev/null",
        archive.display(),
        work.join("store").display()
    ))?;
    Ok(Setup {
        zflist,
        decode: root.join("target/release/examples/decode-bench"),
        tree,
        archive,
        flist,
        store,
        work,
    })
}

fn rounds(args: &[String]) -> Result<usize> {
    let mut n = 3usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rounds" => {
                n = it
                    .next()
                    .context("--rounds needs a number")?
                    .parse()
                    .context("--rounds needs a number")?
            }
            other => bail!("unknown option {other} (use --rounds N)"),
        }
    }
    Ok(n.max(1))
}

/// Times `f` after removing `dest` and flushing every dirty page (`sync`), so no run pays
/// for the writeback of an earlier one.
fn timed(dest: &Path, f: &mut dyn FnMut() -> Result<f64>) -> Result<f64> {
    if dest.exists() {
        std::fs::remove_dir_all(dest)?;
    }
    shell_time("sync")?;
    f()
}

/// Best (lowest) times of `a` and `b` over `n` rounds, alternating them within each round.
fn best_pair(
    n: usize,
    (dest_a, mut a): (&Path, impl FnMut() -> Result<f64>),
    (dest_b, mut b): (&Path, impl FnMut() -> Result<f64>),
) -> Result<(f64, f64)> {
    let (mut ba, mut bb) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..n {
        ba = ba.min(timed(dest_a, &mut a)?);
        bb = bb.min(timed(dest_b, &mut b)?);
    }
    for d in [dest_a, dest_b] {
        if d.exists() {
            std::fs::remove_dir_all(d)?;
        }
    }
    Ok((ba, bb))
}

/// `cargo xtask bench extract`.
pub fn run_extract(args: &[String]) -> Result<()> {
    let n = rounds(args)?;
    let s = setup()?;
    let tar_dest = s.work.join("tar-out");
    let ours_dest = s.work.join("zflist-out");
    let (tar, ours) = best_pair(
        n,
        (&tar_dest, || {
            std::fs::create_dir_all(&tar_dest)?;
            shell_time(&format!(
                "tar -C {} --numeric-owner -xzf {}",
                tar_dest.display(),
                s.archive.display()
            ))
        }),
        (&ours_dest, || {
            shell_time(&format!(
                "{} extract --quiet --store {} {} {}",
                s.zflist.display(),
                s.store,
                s.flist.display(),
                ours_dest.display()
            ))
        }),
    )?;
    let ratio = ours / tar;
    println!(
        "tree: {} (Debian minbase); store: {} on the same disk; best of {n}",
        s.tree.display(),
        s.store
    );
    println!("| row | ours | baseline | ratio | goal | verdict |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| zflist extract of minbase | {ours:.2} s | tar -xzf {tar:.2} s | {ratio:.2}× | ≤ 1.5× | {} |",
        verdict(ratio <= 1.5)
    );
    let _ = std::fs::remove_dir_all(&s.work);
    Ok(())
}

/// `cargo xtask bench verify`.
pub fn run_verify(args: &[String]) -> Result<()> {
    let n = rounds(args)?;
    let s = setup()?;
    let out = Command::new(&s.decode)
        .arg(&s.flist)
        .arg(&s.store)
        .output()
        .context("running decode-bench")?;
    let line = result_line(&out, "decode-bench")?;
    let (bytes, decode_s): (f64, f64) = (
        kv_field(&line, "decoded_bytes")?,
        kv_field(&line, "seconds")?,
    );
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let none = s.work.join("none");
    let mut verify = f64::INFINITY;
    for _ in 0..n {
        verify = verify.min(timed(&none, &mut || {
            shell_time(&format!(
                "{} verify --deep --quiet --store {} {} > /dev/null",
                s.zflist.display(),
                s.store,
                s.flist.display()
            ))
        })?);
    }
    let mb = |b: f64, s: f64| b / s / 1e6;
    let (ours, one) = (mb(bytes, verify), mb(bytes, decode_s));
    let goal = 0.8 * one * cores as f64;
    let ratio = ours / (one * cores as f64);
    println!("{line}");
    println!(
        "tree: {} (Debian minbase), {:.0} MB decoded; store: {}; {cores} cores; best of {n}",
        s.tree.display(),
        bytes / 1e6,
        s.store
    );
    println!("| row | ours | baseline | ratio | goal | verdict |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| zflist verify --deep of minbase | {ours:.0} MB/s ({verify:.2} s) | decode {one:.0} MB/s × {cores} cores | {ratio:.2}× | ≥ 0.8× ({goal:.0} MB/s) | {} |",
        verdict(ratio >= 0.8)
    );
    let _ = std::fs::remove_dir_all(&s.work);
    Ok(())
}
