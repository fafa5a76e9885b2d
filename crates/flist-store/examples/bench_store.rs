//! Store throughput benchmark (run by `cargo xtask bench store`).
//!
//! Starts a local redis-server and compares, on the same server:
//! - `redis-benchmark -t set -d 524288 -P 16 -n N -q` (the reference),
//! - this crate's `set_many` writing 1 GiB of distinct 512 KiB random chunks,
//! - a naive client: one connection, `EXISTS` then `SET` per chunk, sequential;
//! - and `exists_many` over 100,000 keys against `redis-benchmark ... EXISTS` and a naive
//!   sequential `EXISTS` loop.
//!
//! Then starts a real SeaweedFS (S3) and measures, in the same run, `s3://` against two
//! baselines: a `dir://` store on local disk (the embedded default: no network, no
//! server) and the naive S3 client (one request at a time, as rfs's store does):
//! `set_many`, `get_many` and `exists_many` of 512 KiB chunks and of 4 KiB chunks.
//!
//! Options: `--mib <total MiB to write>` (default 1024), `--keys <exists keys>` (100000),
//! `--s3-mib <MiB of 512 KiB chunks>` (256), `--s3-small <4 KiB chunks>` (4000), `--only
//! redis|s3`.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Instant;

use bytes::Bytes;
use test_support::redis::{encode, read_reply};
use test_support::{RedisReply, RedisServer, SeaweedServer};

const CHUNK: usize = 512 * 1024;

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Runs redis-benchmark and returns requests/s.
fn redis_benchmark(port: u16, args: &[&str]) -> f64 {
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
        .args(args)
        .output()
        .expect("running redis-benchmark (apt-get install -y redis-tools)");
    let text = String::from_utf8_lossy(&out.stdout);
    // `SET: 1234.56 requests per second, p50=...`; progress lines end in \r.
    let line = text
        .rsplit(['\r', '\n'])
        .find(|l| l.contains("requests per second"))
        .unwrap_or("");
    let rps = line
        .split_whitespace()
        .find_map(|w| w.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("cannot parse redis-benchmark output: {text}"));
    eprintln!("  redis-benchmark {}: {}", args.join(" "), line.trim());
    rps
}

fn flush(server: &RedisServer) {
    assert_eq!(
        server.command(&[b"FLUSHALL"]).unwrap(),
        RedisReply::Status("OK".into())
    );
}

/// One connection, one round trip per command.
struct Naive {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Naive {
    fn new(port: u16) -> Self {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_nodelay(true).unwrap();
        Naive {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        }
    }
    fn call(&mut self, args: &[&[u8]]) -> RedisReply {
        self.w.write_all(&encode(args)).unwrap();
        read_reply(&mut self.r).unwrap()
    }
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn only() -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned()
}

#[tokio::main]
async fn main() {
    match only().as_deref() {
        Some("s3") => s3_section().await,
        Some("redis") => redis_section().await,
        _ => {
            redis_section().await;
            s3_section().await;
        }
    }
}

/// Seconds taken by `f`.
async fn timed<T, F: std::future::Future<Output = T>>(f: F) -> (T, f64) {
    let t = Instant::now();
    let out = f.await;
    (out, t.elapsed().as_secs_f64())
}

/// Figures of one store over one data set: set_many, get_many, exists_many (per second).
struct Figures {
    set: f64,
    get: f64,
    exists: f64,
}

impl Figures {
    fn zero() -> Self {
        Figures {
            set: 0.0,
            get: 0.0,
            exists: 0.0,
        }
    }

    fn best(self, o: Figures) -> Figures {
        Figures {
            set: self.set.max(o.set),
            get: self.get.max(o.get),
            exists: self.exists.max(o.exists),
        }
    }
}

/// `set_many`, `get_many` and `exists_many` of `items` on `store` (all at once: the store
/// pipelines), or one request at a time when `naive`.
async fn measure(
    store: &dyn flist_store::Store,
    items: &[(Vec<u8>, Bytes)],
    naive: bool,
) -> Figures {
    let keys: Vec<Vec<u8>> = items.iter().map(|(k, _)| k.clone()).collect();
    let n = items.len() as f64;
    let (_, set_s) = timed(async {
        if naive {
            for (k, v) in items {
                store.set(k, v.clone()).await.unwrap();
            }
        } else {
            store.set_many(items).await.unwrap();
        }
    })
    .await;
    let (got, get_s) = timed(async {
        if naive {
            let mut out = Vec::new();
            for k in &keys {
                out.push(store.get(k).await.unwrap());
            }
            out
        } else {
            store.get_many(&keys).await.unwrap()
        }
    })
    .await;
    assert!(got
        .iter()
        .zip(items)
        .all(|(g, (_, v))| g.as_ref() == Some(v)));
    let (ex, ex_s) = timed(async {
        if naive {
            let mut out = Vec::new();
            for k in &keys {
                out.push(store.exists(k).await.unwrap());
            }
            out
        } else {
            store.exists_many(&keys).await.unwrap()
        }
    })
    .await;
    assert!(ex.iter().all(|e| *e));
    Figures {
        set: n / set_s,
        get: n / get_s,
        exists: n / ex_s,
    }
}

async fn s3_section() {
    let mib = arg("--s3-mib", 256);
    let small = arg("--s3-small", 4000);
    let n = (mib * 1024 * 1024 / CHUNK).max(1);
    let s3 = SeaweedServer::start();
    let scratch = tempfile::tempdir_in(test_support::tmp_dir()).unwrap();
    eprintln!(
        "SeaweedFS (S3) on port {}; {n} chunks of 512 KiB, {small} chunks of 4 KiB",
        s3.port()
    );
    type Items = Vec<(Vec<u8>, Bytes)>;
    let sets: Vec<(&str, usize, Items)> = vec![
        (
            "512 KiB",
            CHUNK,
            (0..n)
                .map(|i| {
                    (
                        noise(i as u64 + 5, 16),
                        Bytes::from(noise(i as u64 + 9_000_011, CHUNK)),
                    )
                })
                .collect(),
        ),
        (
            "4 KiB",
            4096,
            (0..small)
                .map(|i| {
                    (
                        noise(i as u64 + 50_000_017, 16),
                        Bytes::from(noise(i as u64 + 70_000_019, 4096)),
                    )
                })
                .collect(),
        ),
    ];
    println!();
    println!(
        "S3 store benchmark: SeaweedFS 127.0.0.1:{} (weed server, one process), same run",
        s3.port()
    );
    println!(
        "{:<10} {:<12} {:>12} {:>12} {:>14} {:>10} {:>10}",
        "chunks", "operation", "dir:// /s", "s3 naive /s", "s3 pipelined /s", "vs naive", "vs dir"
    );
    for (round, (label, size, items)) in sets.iter().enumerate() {
        let dir = flist_store::open(&format!(
            "dir://{}",
            scratch.path().join(format!("d{round}")).display()
        ))
        .await
        .unwrap();
        let d = measure(dir.as_ref(), items, false).await;
        // Naive and pipelined alternate (naive, pipelined, pipelined, naive), each on a
        // fresh bucket, and the better of each pair counts: the server's state (volumes
        // growing) and the machine's load drift during a run.
        let mut nv = Figures::zero();
        let mut p = Figures::zero();
        for (pass, naive) in [true, false, false, true].into_iter().enumerate() {
            let store = flist_store::open(&s3.url(&format!("b{round}-{pass}")))
                .await
                .unwrap();
            let f = measure(store.as_ref(), items, naive).await;
            if naive {
                nv = nv.best(f);
            } else {
                p = p.best(f);
            }
        }
        for (op, a, b, c) in [
            ("set_many", d.set, nv.set, p.set),
            ("get_many", d.get, nv.get, p.get),
            ("exists_many", d.exists, nv.exists, p.exists),
        ] {
            println!(
                "{:<10} {:<12} {:>12.0} {:>12.0} {:>14.0} {:>9.1}x {:>9.2}x",
                label,
                op,
                a,
                b,
                c,
                c / b,
                c / a
            );
        }
        if *size == CHUNK {
            println!(
                "{:<10} {:<12} {:>12.0} {:>12.0} {:>14.0}   (MB/s, 512 KiB set_many)",
                "",
                "",
                d.set * CHUNK as f64 / 1e6,
                nv.set * CHUNK as f64 / 1e6,
                p.set * CHUNK as f64 / 1e6
            );
        }
    }
    println!(
        "(pipelined: up to 32 requests in flight per store; naive: one request at a time, \
         as rfs's S3 store; best of two passes each, alternated; load average at the end: {})",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .unwrap_or("?")
    );
}

async fn redis_section() {
    let mib = arg("--mib", 1024);
    let n_exists = arg("--keys", 100_000);
    let n = (mib * 1024 * 1024 / CHUNK).max(1);
    let server = RedisServer::start();
    let port = server.port();
    eprintln!("redis-server on port {port}; {n} chunks of 512 KiB ({mib} MiB)");

    // Data: distinct random chunks under 16-byte random keys.
    let items: Vec<(Vec<u8>, Bytes)> = (0..n)
        .map(|i| {
            (
                noise(i as u64 + 1, 16),
                Bytes::from(noise(i as u64 + 1_000_003, CHUNK)),
            )
        })
        .collect();
    let total_mb = (n * CHUNK) as f64 / 1e6;

    // Reference.
    let ref_rps = redis_benchmark(
        port,
        &[
            "-t",
            "set",
            "-d",
            "524288",
            "-P",
            "16",
            "-n",
            &n.to_string(),
        ],
    );
    let ref_mbs = ref_rps * CHUNK as f64 / 1e6;
    flush(&server);

    // This crate.
    let store = flist_store::open(&server.url()).await.unwrap();
    let t = Instant::now();
    let out = store.set_many(&items).await.unwrap();
    let ours_s = t.elapsed().as_secs_f64();
    assert_eq!(out.len(), n);
    let ours_mbs = total_mb / ours_s;
    flush(&server);

    // Naive: EXISTS then SET, sequential.
    let naive_mbs = {
        let mut c = Naive::new(port);
        let t = Instant::now();
        for (k, v) in &items {
            if c.call(&[b"EXISTS", k]) == RedisReply::Int(0) {
                c.call(&[b"SET", k, v]);
            }
        }
        total_mb / t.elapsed().as_secs_f64()
    };
    flush(&server);
    drop(items);

    // exists_many over 100k keys, half of them present.
    let keys: Vec<Vec<u8>> = (0..n_exists).map(|i| noise(i as u64 + 77, 16)).collect();
    let present: Vec<(Vec<u8>, Bytes)> = keys
        .iter()
        .step_by(2)
        .map(|k| (k.clone(), Bytes::from_static(b"x")))
        .collect();
    store.set_many(&present).await.unwrap();
    let t = Instant::now();
    let ex = store.exists_many(&keys).await.unwrap();
    let ours_keys = n_exists as f64 / t.elapsed().as_secs_f64();
    assert_eq!(ex.iter().filter(|e| **e).count(), present.len());
    let ref_exists = redis_benchmark(
        port,
        &["-P", "16", "-n", &n_exists.to_string(), "EXISTS", "somekey"],
    );
    let naive_keys = {
        let mut c = Naive::new(port);
        let t = Instant::now();
        for k in &keys {
            c.call(&[b"EXISTS", k]);
        }
        n_exists as f64 / t.elapsed().as_secs_f64()
    };

    println!();
    println!("store benchmark: redis-server 127.0.0.1:{port}, {n} x 512 KiB = {total_mb:.0} MB");
    println!("{:<52} {:>14} {:>10}", "writes", "MB/s", "vs ref");
    println!(
        "{:<52} {:>14.0} {:>9.0}%",
        "redis-benchmark -t set -d 524288 -P 16 (reference)", ref_mbs, 100.0
    );
    println!(
        "{:<52} {:>14.0} {:>9.0}%",
        "flist-store set_many (pipelined, pool 4)",
        ours_mbs,
        100.0 * ours_mbs / ref_mbs
    );
    println!(
        "{:<52} {:>14.0} {:>9.0}%",
        "naive EXISTS+SET, one round trip each",
        naive_mbs,
        100.0 * naive_mbs / ref_mbs
    );
    println!(
        "{:<52} {:>14} {:>10}",
        "presence checks", "keys/s", "vs ref"
    );
    println!(
        "{:<52} {:>14.0} {:>9.0}%",
        "redis-benchmark -P 16 EXISTS (reference)", ref_exists, 100.0
    );
    println!(
        "{:<52} {:>14.0} {:>9.0}%",
        format!("flist-store exists_many ({n_exists} keys)"),
        ours_keys,
        100.0 * ours_keys / ref_exists
    );
    println!(
        "{:<52} {:>14.0} {:>9.0}%",
        "naive EXISTS, one round trip each",
        naive_keys,
        100.0 * naive_keys / ref_exists
    );
    println!(
        "set_many vs reference: {:.0}% (target >= 80%); set_many vs naive: {:.1}x",
        100.0 * ours_mbs / ref_mbs,
        ours_mbs / naive_mbs
    );
}
