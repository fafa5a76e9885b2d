//! `cargo xtask bench convert [--size 500M|2G] [--upload auto|check|set]`: archive and directory
//! conversion throughput against `gzip -dc` and `b2sum`, and peak RSS.
//!
//! Generates (once per size) a deterministic corpus under `target/bench-convert/` as a
//! directory and as a `.tar.gz`, then reports in one run:
//! - directory → flist time vs `find -type f -print0 | xargs -0 -P2 -n 64 b2sum` (target ≤ 5×);
//! - `.tar.gz` → flist time vs `gzip -dc archive > /dev/null` (target ≤ 1.3×);
//! - peak RSS of the converter process (VmHWM; target ≤ 200 MB).
//!
//! Chunks go to a fresh `dir://` store on the same disk for each conversion.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, mul) = match s.chars().last() {
        Some('G' | 'g') => (&s[..s.len() - 1], 1u64 << 30),
        Some('M' | 'm') => (&s[..s.len() - 1], 1u64 << 20),
        _ => (s, 1),
    };
    let n: f64 = num.parse().with_context(|| format!("bad size {s:?}"))?;
    Ok((n * mul as f64) as u64)
}

fn shell_time(script: &str) -> Result<f64> {
    let start = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg(script)
        .status()
        .with_context(|| format!("running {script}"))?;
    if !status.success() {
        bail!("{script} failed ({status})");
    }
    Ok(start.elapsed().as_secs_f64())
}

struct Run {
    seconds: f64,
    rss_kb: u64,
    line: String,
}

fn convert(
    bin: &Path,
    mode: &str,
    input: &Path,
    work: &Path,
    store: &Path,
    upload: &str,
) -> Result<Run> {
    let out = work.join(format!("out-{mode}.flist"));
    let output = Command::new(bin)
        .args([
            mode,
            &input.to_string_lossy(),
            &store.to_string_lossy(),
            &out.to_string_lossy(),
        ])
        .env("CONVERT_UPLOAD", upload)
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !output.status.success() {
        bail!(
            "convert-bench {mode} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let line = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let field = |k: &str| -> Option<String> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")).map(str::to_string))
    };
    let seconds: f64 = field("seconds")
        .and_then(|v| v.parse().ok())
        .context("no seconds in output")?;
    let rss_kb: u64 = field("peak_rss_kb")
        .and_then(|v| v.parse().ok())
        .context("no peak_rss_kb")?;
    Ok(Run {
        seconds,
        rss_kb,
        line,
    })
}

/// Runs the benchmark.
pub fn run(args: &[String]) -> Result<()> {
    let mut size = 500u64 << 20;
    let mut upload = "auto".to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--size" => size = parse_size(it.next().context("--size needs a value")?)?,
            "--upload" => upload = it.next().context("--upload needs auto|check|set")?.clone(),
            other => bail!("unknown option {other} (use --size 500M|2G, --upload auto|check|set)"),
        }
    }
    for tool in ["b2sum", "gzip", "find", "xargs"] {
        if crate::which(tool).is_none() {
            bail!("{tool} is not on PATH");
        }
    }
    crate::cargo(&[
        "build",
        "--release",
        "-p",
        "flist-convert",
        "--example",
        "convert-bench",
    ])?;
    let root = crate::root();
    let bin = root.join("target/release/examples/convert-bench");
    let work = root.join(format!("target/bench-convert/{}M", size >> 20));
    let tree = work.join("tree");
    let archive = work.join("tree.tar.gz");
    std::fs::create_dir_all(&work)?;
    if !archive.exists() || !tree.exists() {
        println!(
            "generating a {} MiB corpus in {} ...",
            size >> 20,
            work.display()
        );
        let status = Command::new(&bin)
            .args(["gen", &work.to_string_lossy(), &size.to_string()])
            .status()?;
        if !status.success() {
            bail!("corpus generation failed");
        }
    }
    let archive_len = std::fs::metadata(&archive)?.len();
    let t = tree.to_string_lossy().to_string();
    let a = archive.to_string_lossy().to_string();
    // Warm the page cache so every contender reads from memory.
    shell_time(&format!(
        "cat {a} > /dev/null; find {t} -type f -print0 | xargs -0 cat > /dev/null"
    ))?;

    // Stores are removed only after all measurements: ext4 allocates inodes slowly right
    // after many deletions (`recently_deleted`), which would bill a benchmark artefact to
    // the next conversion.
    // A second tar conversion stores its chunks in memory (tmpfs), which, like the
    // `> /dev/null` of the baseline, leaves out the cost of the disk's filesystem.
    let shm = Path::new("/dev/shm");
    let mem_store = shm
        .is_dir()
        .then(|| shm.join(format!("flist-bench-store-{}", std::process::id())));
    let stores = [work.join("store-dir"), work.join("store-tar")];
    for s in &stores {
        if s.exists() {
            std::fs::remove_dir_all(s)?;
            println!("removed a leftover store; waiting 30 s for ext4 to forget the deletions");
            std::thread::sleep(std::time::Duration::from_secs(30));
        }
    }
    let b2 = shell_time(&format!(
        "find {t} -type f -print0 | xargs -0 -P2 -n 64 b2sum > /dev/null"
    ))?;
    let dir = convert(&bin, "dir", &tree, &work, &stores[0], &upload)?;
    let gz = shell_time(&format!("gzip -dc {a} > /dev/null"))?;
    let tgz = convert(&bin, "tar", &archive, &work, &stores[1], &upload)?;
    let tgz_mem = match &mem_store {
        Some(m) => {
            let r = convert(&bin, "tar", &archive, &work, m, &upload);
            let _ = std::fs::remove_dir_all(m);
            Some(r?)
        }
        None => None,
    };

    for s in &stores {
        let _ = std::fs::remove_dir_all(s);
    }
    let mib = size as f64 / (1u64 << 20) as f64;
    println!("corpus: {mib:.0} MiB as a directory, {:.0} MiB as .tar.gz; store: dir:// on the same disk; upload mode: {upload}", archive_len as f64 / (1u64 << 20) as f64);
    println!("  dir: {}", dir.line);
    println!("  tar: {}", tgz.line);
    let ok = |b: bool| if b { "ok" } else { "MISSED" };
    let r1 = dir.seconds / b2;
    let r2 = tgz.seconds / gz;
    let rss = dir.rss_kb.max(tgz.rss_kb) as f64 / 1024.0;
    println!("| measure | ours | baseline | ratio | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| directory → flist | {:.2} s | b2sum -P2 {:.2} s | {r1:.2}× | ≤ 5× {} |",
        dir.seconds,
        b2,
        ok(r1 <= 5.0)
    );
    println!(
        "| .tar.gz → flist | {:.2} s | gzip -dc {:.2} s | {r2:.2}× | ≤ 1.3× {} |",
        tgz.seconds,
        gz,
        ok(r2 <= 1.3)
    );
    if let Some(m) = &tgz_mem {
        let r3 = m.seconds / gz;
        println!(
            "| .tar.gz → flist, store in memory (tmpfs) | {:.2} s | gzip -dc {:.2} s | {r3:.2}× | ≤ 1.3× {} |",
            m.seconds,
            gz,
            ok(r3 <= 1.3)
        );
    }
    println!(
        "| peak RSS | {rss:.0} MB (dir {} MB, tar {} MB) | | | ≤ 200 MB {} |",
        dir.rss_kb / 1024,
        tgz.rss_kb / 1024,
        ok(rss <= 200.0)
    );
    Ok(())
}
