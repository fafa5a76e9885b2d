//! `cargo xtask bench oci`: converts a ~200 MB multi-layer image from a local registry and
//! times it next to `skopeo copy` of the same image to a local directory (same run, same
//! machine). Needs `docker-registry` and `skopeo` on PATH.
//!
//! Usage: `oci_bench [MiB]` (uncompressed image size, default 200).

use std::sync::Arc;
use std::time::Instant;

use flist_convert::oci::{self, OciOptions};
use serde_json::json;
use test_support::registry::{skopeo, Layer, LayerTar, OciLayout, Registry};

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Half incompressible, half text-like content (gzip ratio roughly 2:1 overall).
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut v = noise(len / 2, seed);
    let line = format!("line {seed} of some fairly repetitive configuration text = value\n");
    while v.len() < len {
        v.extend_from_slice(line.as_bytes());
    }
    v.truncate(len);
    v
}

fn dir_size(p: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let m = match e.metadata() {
                Ok(m) => m,
                Err(_) => continue,
            };
            total += if m.is_dir() {
                dir_size(&e.path())
            } else {
                m.len()
            };
        }
    }
    total
}

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let work = tempfile::tempdir().expect("temp dir");
    let reg = Registry::start();

    // Layers: 40% / 30% / 20% / 10% of the size; each a mix of many small files and a few
    // large ones.
    let t = Instant::now();
    let mut layout = OciLayout::new(&work.path().join("layout"));
    let mut layers = Vec::new();
    let mut raw_total = 0usize;
    for (i, share) in [40usize, 30, 20, 10].iter().enumerate() {
        let bytes = mib * 1024 * 1024 * share / 100;
        let mut tar = LayerTar::new().dir(&format!("layer{i}"), 0o755);
        let mut used = 0usize;
        let mut n = 0u64;
        // small files: a quarter of the layer, 4..68 KiB each
        while used < bytes / 4 {
            let len = 4096 + ((n * 7919) % 64) as usize * 1024;
            tar = tar.file(
                &format!("layer{i}/small-{n}"),
                &content(len, n + 1000 * i as u64),
                0o644,
            );
            used += len;
            n += 1;
        }
        // large files: 8 MiB each
        while used < bytes {
            let len = (8usize << 20).min(bytes - used);
            tar = tar.file(
                &format!("layer{i}/large-{n}"),
                &content(len, n + 1000 * i as u64),
                0o755,
            );
            used += len;
            n += 1;
        }
        let t = tar.finish();
        raw_total += t.len();
        layers.push(Layer::gzip(&t));
    }
    let compressed: usize = layers.iter().map(|l| l.blob.len()).sum();
    layout.add_image(
        Some("bench"),
        "linux",
        "amd64",
        json!({"Cmd": ["/bin/sh"]}),
        &layers,
    );
    drop(layers);
    println!(
        "image: {} layers, {:.1} MiB uncompressed, {:.1} MiB gzip (built in {:.1}s)",
        4,
        raw_total as f64 / 1048576.0,
        compressed as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    reg.push(layout.path(), "bench", "bench/image", false);
    println!(
        "push (skopeo, oci: -> registry): {:.2}s",
        t.elapsed().as_secs_f64()
    );

    // Baseline: skopeo copy of the same image to a local directory.
    let dest = work.path().join("skopeo-dir");
    let t = Instant::now();
    skopeo(&[
        "copy".to_string(),
        "--src-tls-verify=false".into(),
        format!("docker://{}/bench/image:bench", reg.host()),
        format!("dir:{}", dest.display()),
    ]);
    let skopeo_s = t.elapsed().as_secs_f64();
    println!(
        "baseline  skopeo copy docker:// -> dir:      {skopeo_s:7.2}s  ({:.1} MiB written)",
        dir_size(&dest) as f64 / 1048576.0
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let image = format!("{}/bench/image:bench", reg.host());
    let cache = work.path().join("cache");
    let (cold, warm) = rt.block_on(async {
        let store_dir = work.path().join("store");
        let store: Arc<dyn flist_store::Store> =
            flist_store::open(&format!("dir://{}", store_dir.display())).await.expect("store");
        let opts = OciOptions { cache_dir: Some(cache.clone()), ..OciOptions::default() };
        let t = Instant::now();
        let (flist, stats) = oci::convert_reference(&image, &opts, store.clone()).await.expect("conversion");
        let cold = t.elapsed().as_secs_f64();
        let out = work.path().join("bench.flist");
        let t2 = Instant::now();
        let out2 = out.clone();
        tokio::task::spawn_blocking(move || flist.write_flist(&out2)).await.expect("join").expect("write flist");
        let write_s = t2.elapsed().as_secs_f64();
        println!(
            "flist-convert oci (cold: download+convert+store): {cold:7.2}s  ({} files, {:.1} MiB downloaded, {} chunks written, {:.1} MiB in store; flist write {write_s:.2}s)",
            stats.convert.files,
            stats.bytes_downloaded as f64 / 1048576.0,
            stats.convert.chunks_written,
            dir_size(&store_dir) as f64 / 1048576.0,
        );
        let t = Instant::now();
        let (_, stats2) = oci::convert_reference(&image, &opts, store.clone()).await.expect("conversion");
        let warm = t.elapsed().as_secs_f64();
        println!(
            "flist-convert oci (warm layer cache):             {warm:7.2}s  ({} layers reused, {} downloaded)",
            stats2.layers_reused.len(),
            stats2.layers_downloaded.len()
        );
        (cold, warm)
    });
    println!(
        "ratio: cold conversion / skopeo copy = {:.2}x; warm = {:.3}x",
        cold / skopeo_s,
        warm / skopeo_s
    );
}
