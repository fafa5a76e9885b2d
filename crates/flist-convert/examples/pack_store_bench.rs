//! Driver for the `pack` part of `cargo xtask bench store` (built in release):
//! `pack-store-bench <tree> [rounds]` packs the directory `<tree>` (as `zflist pack` does:
//! `convert` + `write_flist` of a directory with default options) into a real redis-server and into a real 0-db
//! (v2.0.7, `--mode user`, a password-protected namespace), each on a fresh server,
//! alternating for `rounds` rounds (default 2), and prints for each the wall time and the
//! client's CPU utilisation ((user + sys) / wall, from `getrusage(RUSAGE_SELF)`; the servers
//! are other processes), then the ratio 0-db / redis of the best times (goal ≤ 1.25).

#![allow(clippy::unwrap_used)] // a benchmark: a failed unwrap is a failed run

use std::path::Path;
use std::time::Instant;

use flist_convert::{convert, ConvertOptions, Source};
use flist_store::BlockingStore;
use test_support::{NsConfig, RedisServer, ZdbServer};

/// Goal: packing into 0-db takes at most this many times the redis time.
const GOAL: f64 = 1.25;

struct Run {
    seconds: f64,
    cpu: f64,
    chunks: u64,
}

fn pack(rt: &tokio::runtime::Runtime, url: &str, tree: &Path, out: &Path) -> Run {
    let store = BlockingStore::new(
        rt.block_on(flist_store::open(url)).unwrap(),
        rt.handle().clone(),
    );
    let opts = ConvertOptions::default();
    let cpu0 = test_support::cpu_time();
    let t = Instant::now();
    let converted = convert(Source::dir(tree), Some(&store), &opts).unwrap();
    converted.write_flist(out).unwrap();
    let stats = converted.stats;
    let seconds = t.elapsed().as_secs_f64();
    let cpu = (test_support::cpu_time() - cpu0).as_secs_f64();
    Run {
        seconds,
        cpu: cpu / seconds,
        chunks: stats.chunks_written,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let tree = Path::new(
        args.get(1)
            .expect("usage: pack-store-bench <tree> [rounds]"),
    );
    let rounds: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(2);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out.flist");
    let mut redis_runs = Vec::new();
    let mut zdb_runs = Vec::new();
    for round in 1..=rounds {
        let redis = RedisServer::start();
        let r = pack(&rt, &redis.url(), tree, &out);
        println!(
            "  round {round}: pack into redis-server: {:.2} s, client CPU {:.0}%, {} chunks written",
            r.seconds,
            100.0 * r.cpu,
            r.chunks
        );
        drop(redis);
        redis_runs.push(r);

        let zdb = ZdbServer::start();
        zdb.namespace(
            "bench",
            NsConfig {
                password: Some("benchpw".into()),
                public: true,
                ..NsConfig::default()
            },
        );
        let z = pack(&rt, &zdb.url("bench", Some("benchpw")), tree, &out);
        println!(
            "  round {round}: pack into 0-db:         {:.2} s, client CPU {:.0}%, {} chunks written",
            z.seconds,
            100.0 * z.cpu,
            z.chunks
        );
        assert_eq!(zdb.entries("bench") as u64, z.chunks, "every chunk in 0-db");
        drop(zdb);
        zdb_runs.push(z);
    }
    let best = |runs: &[Run]| {
        runs.iter()
            .min_by(|a, b| a.seconds.total_cmp(&b.seconds))
            .map(|r| (r.seconds, r.cpu))
            .unwrap()
    };
    let (rs, rc) = best(&redis_runs);
    let (zs, zc) = best(&zdb_runs);
    let ratio = zs / rs;
    println!(
        "pack (best of {rounds}): redis-server {rs:.2} s (client CPU {:.0}%), \
         0-db {zs:.2} s (client CPU {:.0}%)",
        100.0 * rc,
        100.0 * zc
    );
    println!(
        "pack into 0-db / into redis-server: {ratio:.2}x (goal <= {GOAL}x): {}",
        if ratio <= GOAL { "PASS" } else { "FAIL" }
    );
}
