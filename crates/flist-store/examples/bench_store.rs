//! Store throughput benchmark (run by `cargo xtask bench store`).
//!
//! Starts a local redis-server and compares, on the same server:
//! - `redis-benchmark -t set -d 524288 -P 16 -n N -q` (the reference),
//! - this crate's `set_many` writing 1 GiB of distinct 512 KiB random chunks,
//! - a naive client: one connection, `EXISTS` then `SET` per chunk, sequential;
//! - and `exists_many` over 100,000 keys against `redis-benchmark ... EXISTS` and a naive
//!   sequential `EXISTS` loop.
//!
//! Options: `--mib <total MiB to write>` (default 1024), `--keys <exists keys>` (100000).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Instant;

use bytes::Bytes;
use test_support::redis::{encode, read_reply};
use test_support::{RedisReply, RedisServer};

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

#[tokio::main]
async fn main() {
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
