//! `cargo xtask bench push`: publishing a second version of a tree with one 100 KB file
//! changed, via `zflist push` (only the missing chunks go over the wire) and via the old way
//! (`tar czf` + `zflist hub upload v2.tar.gz`, the hub re-chunks everything), against a real
//! `hub-server` (release build) on loopback, in the same run. Prints bytes sent and time of
//! both and their ratio. `--mb N` sets the tree size (default 200).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// Deterministic, incompressible bytes (xorshift64*).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn generate(root: &Path, mb: u64) -> Result<u64> {
    let big = 1_300_000u64;
    let files = (mb * 1_000_000).saturating_sub(3_000_000) / big;
    let mut total = 0;
    for i in 0..files {
        let dir = root.join(format!("data/d{}", i % 10));
        std::fs::create_dir_all(&dir)?;
        let d = noise(1000 + i, big as usize);
        total += d.len() as u64;
        std::fs::write(dir.join(format!("blob{i}.bin")), d)?;
    }
    std::fs::create_dir_all(root.join("small"))?;
    for i in 0..300u64 {
        let d = noise(50_000 + i, 4_000 + (i as usize % 20) * 1_000);
        total += d.len() as u64;
        std::fs::write(root.join(format!("small/f{i}.txt")), d)?;
    }
    std::fs::create_dir_all(root.join("conf"))?;
    let d = noise(7, 100 * 1024);
    total += d.len() as u64;
    std::fs::write(root.join("conf/changeme.bin"), d)?;
    Ok(total)
}

fn tar_gz(src: &Path, out: &Path) -> Result<()> {
    let f = std::fs::File::create(out)?;
    let gz =
        flate2::write::GzEncoder::new(std::io::BufWriter::new(f), flate2::Compression::default());
    let mut t = tar::Builder::new(gz);
    t.follow_symlinks(false);
    t.append_dir_all(".", src)?;
    let gz = t.into_inner()?;
    gz.finish()?.flush()?;
    Ok(())
}

fn run_json(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<serde_json::Value> {
    let mut c = Command::new(bin);
    c.args(args).env("ZFLIST_JSON", "1").stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "zflist {args:?}: no JSON ({})",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if v["success"] != serde_json::Value::Bool(true) || !out.status.success() {
        bail!("zflist {args:?} failed: {v}");
    }
    Ok(v["response"].clone())
}

/// Runs the benchmark.
pub fn run(args: &[String]) -> Result<()> {
    let mut mb = 200u64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--mb" => mb = it.next().context("--mb N")?.parse().context("--mb N")?,
            other => bail!("unknown argument {other:?} (expected --mb N)"),
        }
    }
    crate::cargo(&[
        "build",
        "--release",
        "--bin",
        "zflist",
        "--bin",
        "hub-server",
    ])?;
    let bins = crate::root().join("target/release");
    let (zflist, hub_server) = (bins.join("zflist"), bins.join("hub-server"));

    let work = std::env::temp_dir().join(format!("zflist-bench-push-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let result = bench(&work, mb, &zflist, &hub_server);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn bench(work: &Path, mb: u64, zflist: &Path, hub_server: &Path) -> Result<()> {
    let tree = work.join("tree");
    let size = generate(&tree, mb)?;
    let data = work.join("hub");
    let hub = crate::hub_process::HubProcess::start(hub_server, &data, &[])?;
    let url = hub.url.clone();
    let token = hub.token("bench")?;
    let env = [
        ("ZFLIST_HUB", url.as_str()),
        ("ZFLIST_HUB_TOKEN", token.as_str()),
    ];
    let tree_s = tree.to_str().context("utf-8 path")?;
    println!("tree: {size} bytes; hub {url}");

    // version 1 both ways (not measured: the hub starts empty for each method's first push)
    run_json(zflist, &["push", tree_s, "--name", "push-v1"], &env)?;
    let tgz1 = work.join("v1.tar.gz");
    tar_gz(&tree, &tgz1)?;
    run_json(
        zflist,
        &["hub", "upload", tgz1.to_str().context("utf-8")?],
        &env,
    )?;

    // one 100 KB file changes
    std::fs::write(tree.join("conf/changeme.bin"), noise(8, 100 * 1024))?;

    // push: pack locally, send what the hub lacks, publish
    let t = Instant::now();
    let r = run_json(zflist, &["push", tree_s, "--name", "push-v2"], &env)?;
    let push_secs = t.elapsed().as_secs_f64();
    let push_chunk_bytes = r["bytes_sent"].as_u64().unwrap_or(0);
    let push_flist_bytes = r["flist_bytes"].as_u64().unwrap_or(0);
    let push_bytes = push_chunk_bytes + push_flist_bytes;

    // the old way: archive the tree, upload it, the hub re-chunks it
    let t = Instant::now();
    let tgz2: PathBuf = work.join("v2.tar.gz");
    tar_gz(&tree, &tgz2)?;
    let archive_secs = t.elapsed().as_secs_f64();
    let t2 = Instant::now();
    run_json(
        zflist,
        &["hub", "upload", tgz2.to_str().context("utf-8")?],
        &env,
    )?;
    let upload_secs = t2.elapsed().as_secs_f64();
    let tgz_secs = t.elapsed().as_secs_f64();
    let tgz_bytes = std::fs::metadata(&tgz2)?.len();

    println!("publishing a second version, one 100 KB file changed in a {size}-byte tree:");
    println!(
        "  zflist push        : {push_bytes:>12} bytes sent ({push_chunk_bytes} chunk bytes in {} chunks + {push_flist_bytes} flist bytes), {push_secs:.2} s",
        r["chunks_sent"]
    );
    println!(
        "  .tar.gz + upload   : {tgz_bytes:>12} bytes sent, {tgz_secs:.2} s (tar+gzip {archive_secs:.2} s, upload+conversion {upload_secs:.2} s)"
    );
    println!(
        "  ratio push / .tar.gz: bytes {:.6}x ({:.0}x fewer), time {:.3}x ({:.1}x faster)",
        push_bytes as f64 / tgz_bytes.max(1) as f64,
        tgz_bytes as f64 / push_bytes.max(1) as f64,
        push_secs / tgz_secs,
        tgz_secs / push_secs
    );
    Ok(())
}
