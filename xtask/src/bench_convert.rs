//! `cargo xtask bench convert [--size 500M|2G] [--upload auto|check|set] [--small N]
//! [--only rss]`:
//! conversion against baselines measured in the same run, each row with its ratio and the
//! goal of issue #15 (PASS/FAIL):
//! - a Debian minbase root file system (`debootstrap`, cached under `target/tmp/`, shared
//!   with the mount tests) → flist vs `b2sum` of the same files (≤ 4×), and the same tree
//!   as `.tar.gz` → flist vs `gzip -dc` (≤ 1.2×);
//! - the same two rows on a generated corpus (`--size`, cached under `target/bench-convert/`);
//! - peak RSS converting an archive of `--small` (200,000) small files (≤ 150 MB), next to
//!   a quarter as many to show it is flat in the number of entries;
//! - the minbase tree's `.flist` converted to an rfs `.fl` (every chunk re-encoded into
//!   another `dir://` store) vs `pack --format fl` of the same tree from disk (≤ 1.2×,
//!   issue #30);
//! - peak RSS of a freshly started release `hub-server` converting an uploaded archive of
//!   600,000 empty files (≤ 150 MB), next to 200,000 (flat: within 10 %), and of two such
//!   uploads at once (≤ 150 MB) (issue #24).
//!
//! `--only rss` runs the peak-RSS rows alone (to iterate on memory use); `--only minbase`
//! the minbase rows alone (tree, `.tar.gz`, `.flist → .fl`); `--only hub` the hub's.
//!
//! Chunks go to a fresh `dir://` store on the same disk for each conversion. The baselines
//! are `find -type f -print0 | xargs -0 -P2 -n 64 b2sum` and `gzip -dc archive > /dev/null`.

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

pub fn shell_time(script: &str) -> Result<f64> {
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
    let line = result_line(&output, &format!("convert-bench {mode}"))?;
    let seconds: f64 = kv_field(&line, "seconds")?;
    let rss_kb: u64 = kv_field(&line, "peak_rss_kb")?;
    Ok(Run {
        seconds,
        rss_kb,
        line,
    })
}

/// The trimmed stdout of a bench driver `what` that must have succeeded: its `key=value`
/// result line.
pub fn result_line(output: &std::process::Output, what: &str) -> Result<String> {
    if !output.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The value of `key=value` in a driver's result `line`.
pub fn kv_field<T: std::str::FromStr>(line: &str, key: &str) -> Result<T> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {key} in the output {line:?}"))
}

pub fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "FAIL"
    }
}

/// A tree and the same tree as `.tar.gz`, warmed into the page cache.
struct Corpus {
    label: String,
    tree: std::path::PathBuf,
    archive: std::path::PathBuf,
}

fn warm(c: &Corpus) -> Result<()> {
    let (t, a) = (c.tree.display(), c.archive.display());
    shell_time(&format!(
        "cat {a} > /dev/null; find {t} -type f -print0 | xargs -0 cat > /dev/null"
    ))?;
    Ok(())
}

/// Rows for one corpus: (label, ours s, baseline name, baseline s, ratio goal).
fn corpus_rows(
    bin: &Path,
    c: &Corpus,
    work: &Path,
    upload: &str,
    rows: &mut Vec<String>,
    rss: &mut Vec<(String, u64)>,
    failed: &mut usize,
) -> Result<()> {
    warm(c)?;
    let (t, a) = (c.tree.display(), c.archive.display());
    let slug: String = c
        .label
        .chars()
        .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
        .collect();
    let stores = [
        work.join(format!("{slug}-dir")),
        work.join(format!("{slug}-tar")),
    ];
    let b2 = shell_time(&format!(
        "find {t} -type f -print0 | xargs -0 -P2 -n 64 b2sum > /dev/null"
    ))?;
    let dir = convert(bin, "dir", &c.tree, work, &stores[0], upload)?;
    let gz = shell_time(&format!("gzip -dc {a} > /dev/null"))?;
    let tgz = convert(bin, "tar", &c.archive, work, &stores[1], upload)?;
    println!("  {} dir: {}", c.label, dir.line);
    println!("  {} tar: {}", c.label, tgz.line);
    let r1 = dir.seconds / b2;
    let r2 = tgz.seconds / gz;
    *failed += usize::from(r1 > 4.0) + usize::from(r2 > 1.2);
    rows.push(format!(
        "| {} tree → flist | {:.2} s | b2sum {:.2} s | {r1:.2}× | ≤ 4× | {} |",
        c.label,
        dir.seconds,
        b2,
        verdict(r1 <= 4.0)
    ));
    rows.push(format!(
        "| {} .tar.gz → flist | {:.2} s | gzip -dc {:.2} s | {r2:.2}× | ≤ 1.2× | {} |",
        c.label,
        tgz.seconds,
        gz,
        verdict(r2 <= 1.2)
    ));
    rss.push((format!("{} tree", c.label), dir.rss_kb));
    rss.push((format!("{} .tar.gz", c.label), tgz.rss_kb));
    if c.label == "minbase" {
        // The .flist just made, converted to .fl, against packing the tree as .fl.
        let fl_store = work.join(format!("{slug}-fl"));
        let packed = convert(bin, "dir-fl", &c.tree, work, &fl_store, upload)?;
        let flist = work.join("out-dir.flist");
        let to = work.join(format!("{slug}-reencoded"));
        let out = work.join("out-reencoded.fl");
        let output = Command::new(bin)
            .arg("reencode")
            .args([&flist, &stores[0], &to, &out])
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        let line = result_line(&output, "convert-bench reencode")?;
        let conv: f64 = kv_field(&line, "seconds")?;
        println!("  {} pack --format fl: {}", c.label, packed.line);
        println!("  {} convert .flist → .fl: {line}", c.label);
        let r = conv / packed.seconds;
        *failed += usize::from(r > 1.2);
        rows.push(format!(
            "| {} convert .flist → .fl | {conv:.2} s | pack --format fl {:.2} s | {r:.2}× | ≤ 1.2× | {} |",
            c.label,
            packed.seconds,
            verdict(r <= 1.2)
        ));
    }
    Ok(())
}

/// The Debian minbase tree (made by `debootstrap` once, cached under `target/tmp/` and
/// shared with the mount tests) and the same tree as `.tar.gz` (cached under
/// `target/bench-convert/`), or `None` when `debootstrap` is unavailable.
pub fn minbase(root: &Path) -> Result<Option<(std::path::PathBuf, std::path::PathBuf)>> {
    let Some(tree) =
        test_support::rootfs::debootstrap_minbase(&root.join("target/tmp/debootstrap-minbase"))
    else {
        return Ok(None);
    };
    let base = root.join("target/bench-convert");
    std::fs::create_dir_all(&base)?;
    let archive = base.join("minbase.tar.gz");
    if !archive.exists() {
        let tmp = base.join("minbase.tar.gz.partial");
        shell_time(&format!(
            "tar -C {} --numeric-owner -czf {} .",
            tree.display(),
            tmp.display()
        ))?;
        std::fs::rename(&tmp, &archive)?;
    }
    Ok(Some((tree, archive)))
}

/// Runs the benchmark.
pub fn run(args: &[String]) -> Result<()> {
    let mut size = 500u64 << 20;
    let mut small = 200_000u64;
    let mut upload = "auto".to_string();
    let mut only_rss = false;
    let mut only_minbase = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--size" => size = parse_size(it.next().context("--size needs a value")?)?,
            "--small" => {
                small = it
                    .next()
                    .context("--small needs a number of files")?
                    .parse()
                    .context("--small needs a number")?
            }
            "--upload" => upload = it.next().context("--upload needs auto|check|set")?.clone(),
            "--only" => match it.next().map(String::as_str) {
                Some("rss") => only_rss = true,
                Some("minbase") => only_minbase = true,
                Some("hub") => return hub_rows(),
                _ => bail!("--only needs rss, minbase or hub"),
            },
            other => bail!(
                "unknown option {other} (use --size 500M|2G, --small N, --upload auto|check|set, --only rss)"
            ),
        }
    }
    crate::require_tools(&["b2sum", "gzip", "find", "xargs", "tar"])?;
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
    let base = root.join("target/bench-convert");
    std::fs::create_dir_all(&base)?;
    let mut corpora = Vec::new();

    // The Debian minbase tree (shared with the mount tests) and its .tar.gz.
    if !only_rss {
        match minbase(&root)? {
            Some((tree, archive)) => corpora.push(Corpus {
                label: "minbase".into(),
                tree,
                archive,
            }),
            None => println!("debootstrap unavailable: the minbase rows are left out (FAIL)"),
        }
    }

    // The generated corpus.
    let work = base.join(format!("{}M", size >> 20));
    let tree = work.join("tree");
    let archive = work.join("tree.tar.gz");
    if !only_rss && !only_minbase && (!archive.exists() || !tree.exists()) {
        std::fs::create_dir_all(&work)?;
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
    if !only_rss && !only_minbase {
        corpora.push(Corpus {
            label: format!("generated {} MiB", size >> 20),
            tree,
            archive,
        });
    }

    // Archives of small files.
    let mut smalls = Vec::new();
    let small_sizes = if only_minbase {
        vec![]
    } else {
        vec![small / 4, small]
    };
    for n in small_sizes {
        let path = base.join(format!("small-{n}.tar.gz"));
        if !path.exists() {
            println!("generating an archive of {n} small files ...");
            let status = Command::new(&bin)
                .args(["gen-small", &path.to_string_lossy(), &n.to_string()])
                .status()?;
            if !status.success() {
                bail!("small-file archive generation failed");
            }
        }
        smalls.push((n, path));
    }

    // Stores are removed only after all measurements: ext4 allocates inodes slowly right
    // after many deletions (`recently_deleted`), which would bill a benchmark artefact to
    // the next conversion.
    let stores = base.join("stores");
    if stores.exists() {
        std::fs::remove_dir_all(&stores)?;
        println!("removed leftover stores; waiting 30 s for ext4 to forget the deletions");
        std::thread::sleep(std::time::Duration::from_secs(30));
    }
    std::fs::create_dir_all(&stores)?;
    let mut rows = Vec::new();
    let mut rss = Vec::new();
    let mut failed = if only_rss {
        0
    } else if only_minbase {
        usize::from(corpora.is_empty()) * 3
    } else {
        usize::from(corpora.len() < 2) * 2
    };
    for c in &corpora {
        corpus_rows(&bin, c, &stores, &upload, &mut rows, &mut rss, &mut failed)?;
    }
    let mut small_rss = Vec::new();
    for (n, path) in &smalls {
        let store = stores.join(format!("small-{n}"));
        let r = convert(&bin, "tar", path, &stores, &store, &upload)?;
        println!("  {n} small files: {}", r.line);
        small_rss.push((*n, r.rss_kb));
    }
    println!("store: dir:// on the same disk as the inputs; upload mode: {upload}");
    // Baselines and conversions share the machine with whatever else runs: say how busy
    // it was (1, 5 and 15 minute load averages) next to the figures.
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let load: Vec<&str> = load.split_whitespace().take(3).collect();
        println!("load average: {}", load.join(" "));
    }
    println!("| row | ours | baseline | ratio | goal | verdict |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!("{r}");
    }
    if let (Some((n1, r1)), Some((n2, r2))) = (small_rss.first(), small_rss.last()) {
        let mb = |kb: u64| kb as f64 / 1024.0;
        let ok = mb(*r2) <= 150.0;
        failed += usize::from(!ok);
        println!(
            "| peak RSS, archive of {n2} small files | {:.0} MB | {n1} files: {:.0} MB | {:.2}× | ≤ 150 MB | {} |",
            mb(*r2),
            mb(*r1),
            *r2 as f64 / (*r1).max(1) as f64,
            verdict(ok)
        );
    }
    for (label, kb) in &rss {
        println!(
            "| peak RSS, {label} | {:.0} MB | | | (figure) | |",
            *kb as f64 / 1024.0
        );
    }
    let _ = std::fs::remove_dir_all(&stores);
    let hub_failed = hub_table()?;
    failed += hub_failed;
    println!(
        "{}",
        if failed == 0 {
            "all goals met".to_string()
        } else {
            format!("{failed} goal(s) missed")
        }
    );
    Ok(())
}

/// `--only hub`: the hub rows alone.
fn hub_rows() -> Result<()> {
    let failed = hub_table()?;
    println!(
        "{}",
        if failed == 0 {
            "all goals met".to_string()
        } else {
            format!("{failed} goal(s) missed")
        }
    );
    Ok(())
}

/// Peak RSS (KiB) of a fresh release hub while `archives` are uploaded to it at once
/// (`POST /api/flist/me/upload` with curl, the client every operator has).
fn hub_peak(hub_server: &Path, work: &Path, archives: &[&Path]) -> Result<u64> {
    let data = work.join("hub-data");
    let _ = std::fs::remove_dir_all(&data);
    let hub = crate::hub_process::HubProcess::start(hub_server, &data, &[])?;
    let token = hub.token("bench")?;
    let mut uploads = Vec::new();
    for (i, a) in archives.iter().enumerate() {
        let child = Command::new("curl")
            .args(["-sS", "--fail-with-body", "-o"])
            .arg(work.join(format!("upload-{i}.json")))
            .args(["-H", &format!("Authorization: bearer {token}")])
            .arg("-F")
            .arg(format!("file=@{};filename=bench-{i}.tar.gz", a.display()))
            .arg(format!("{}/api/flist/me/upload", hub.url))
            .spawn()
            .context("running curl")?;
        uploads.push(child);
    }
    for mut c in uploads {
        if !c.wait()?.success() {
            bail!("an upload to the hub failed");
        }
    }
    let kb = hub.peak_rss_kb()?;
    drop(hub);
    let _ = std::fs::remove_dir_all(&data);
    Ok(kb)
}

/// The hub rows (issue #24): prints them, returns how many goals were missed.
fn hub_table() -> Result<usize> {
    crate::require_tools(&["curl"])?;
    crate::cargo(&[
        "build",
        "--release",
        "-p",
        "flist-convert",
        "--example",
        "convert-bench",
    ])?;
    crate::cargo(&["build", "--release", "--bin", "hub-server"])?;
    let root = crate::root();
    let bin = root.join("target/release/examples/convert-bench");
    let hub_server = root.join("target/release/hub-server");
    let base = root.join("target/bench-convert");
    std::fs::create_dir_all(&base)?;
    let mut archives = Vec::new();
    for n in [200_000u64, 600_000] {
        let path = base.join(format!("empty-{n}.tar.gz"));
        if !path.exists() {
            println!("generating an archive of {n} empty files ...");
            let status = Command::new(&bin)
                .args(["gen-empty", &path.to_string_lossy(), &n.to_string()])
                .status()?;
            if !status.success() {
                bail!("empty-file archive generation failed");
            }
        }
        archives.push(path);
    }
    let work = base.join("hub");
    std::fs::create_dir_all(&work)?;
    let small = hub_peak(&hub_server, &work, &[&archives[0]])?;
    let big = hub_peak(&hub_server, &work, &[&archives[1]])?;
    let two = hub_peak(&hub_server, &work, &[&archives[1], &archives[1]])?;
    let _ = std::fs::remove_dir_all(&work);
    let mb = |kb: u64| kb as f64 / 1024.0;
    let ratio = big as f64 / small.max(1) as f64;
    let ok_big = mb(big) <= 150.0 && (0.9..=1.1).contains(&ratio);
    let ok_two = mb(two) <= 150.0;
    println!("| row | ours | baseline | ratio | goal | verdict |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| hub peak RSS, upload of 600,000 empty files | {:.0} MB | 200,000 files: {:.0} MB | {ratio:.2}× | ≤ 150 MB, within 10 % | {} |",
        mb(big),
        mb(small),
        verdict(ok_big)
    );
    println!(
        "| hub peak RSS, two 600,000-file uploads at once | {:.0} MB | one: {:.0} MB | {:.2}× | ≤ 150 MB | {} |",
        mb(two),
        mb(big),
        two as f64 / big.max(1) as f64,
        verdict(ok_two)
    );
    Ok(usize::from(!ok_big) + usize::from(!ok_two))
}
