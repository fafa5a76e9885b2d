//! Driver for the 0-db endpoint row of `cargo xtask bench store` (built in release):
//! `zdb-endpoint-bench <hub-server binary> [rounds]`.
//!
//! The same chunks are put into a real 0-db (v2.0.7, a public user-key namespace) and into
//! the `dir://` store of a real `hub-server serve --zdb-listen` (a separate process, as in
//! production); then the same client reads them all from each, alternating, `rounds` times
//! (default 3), and the best rate of each is compared (goal: the hub at least 0.8× the real
//! 0-db). Three ways of reading:
//! - `MGET` batches on 4 connections (`flist_store`'s `get_many`, what `zflist extract` and
//!   the FUSE mount do), 512 KiB chunks;
//! - pipelined `GET`s, 16 in flight on one connection (a node's reader), 512 KiB chunks;
//! - the same with 4 KiB values (per-request cost).
//!
//! Both servers read from the page cache (each value is read once before timing).

#![allow(clippy::unwrap_used)] // a benchmark: a failed unwrap is a failed run

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use test_support::redis::{encode, free_port, read_reply};
use test_support::{NsConfig, RedisReply, ZdbServer};

/// Goal: the hub's endpoint delivers at least this share of the real 0-db's rate.
const GOAL: f64 = 0.8;

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `count` values of `size` bytes and their (BLAKE2b-16) keys.
fn dataset(seed: u64, count: usize, size: usize) -> Vec<(Vec<u8>, Bytes)> {
    (0..count)
        .map(|i| {
            let v = noise(seed + i as u64, size);
            (
                flist_format::codec::blake2b::<16>(&v).to_vec(),
                Bytes::from(v),
            )
        })
        .collect()
}

/// Seconds to read every key with `get_many` (MGET windows over the client's pool).
fn mget_all(rt: &tokio::runtime::Runtime, url: &str, keys: &[Vec<u8>]) -> f64 {
    let store = rt.block_on(flist_store::open(url)).unwrap();
    let t = Instant::now();
    let got = rt.block_on(store.get_many(keys)).unwrap();
    let s = t.elapsed().as_secs_f64();
    assert!(got.iter().all(Option::is_some), "a value is missing");
    s
}

/// Seconds to read every key with `GET`s pipelined `depth` deep on one connection
/// (after `SELECT namespace` when given).
fn pipelined_gets(port: u16, namespace: Option<&str>, keys: &[Vec<u8>], depth: usize) -> f64 {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::with_capacity(1 << 20, s);
    if let Some(ns) = namespace {
        w.write_all(&encode(&[b"SELECT", ns.as_bytes()])).unwrap();
        assert_eq!(read_reply(&mut r).unwrap(), RedisReply::Status("OK".into()));
    }
    let t = Instant::now();
    let mut sent = 0;
    let mut got = 0;
    while got < keys.len() {
        while sent < keys.len() && sent - got < depth {
            w.write_all(&encode(&[b"GET", &keys[sent]])).unwrap();
            sent += 1;
        }
        match read_reply(&mut r).unwrap() {
            RedisReply::Bulk(Some(_)) => got += 1,
            other => panic!("GET: {other:?}"),
        }
    }
    t.elapsed().as_secs_f64()
}

struct Hub {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `hub-server serve` with a fresh `dir://` store and `--zdb-listen`; its store URL and
/// endpoint port.
fn start_hub(bin: &Path) -> (Hub, String, u16) {
    let dir = tempfile::tempdir().unwrap();
    let (port, zport) = (free_port(), free_port());
    let store = format!("dir://{}", dir.path().join("chunks").display());
    let child = Command::new(bin)
        .args(["serve", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--store", &store])
        .args(["--zdb-listen", &format!("127.0.0.1:{zport}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let hub = Hub { child, _dir: dir };
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", zport)).is_ok() {
            return (hub, store, zport);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("hub-server did not open its 0-db endpoint");
}

struct Row {
    what: &'static str,
    unit: &'static str,
    zdb: f64,
    hub: f64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bin = Path::new(
        args.get(1)
            .expect("usage: zdb-endpoint-bench <hub-server binary> [rounds]"),
    );
    let rounds: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(3);
    let rt = tokio::runtime::Runtime::new().unwrap();

    let zdb = ZdbServer::start();
    zdb.namespace(
        "bench",
        NsConfig {
            password: Some("benchpw".into()),
            public: true,
            ..NsConfig::default()
        },
    );
    let (_hub, hub_store, zport) = start_hub(bin);
    let big = dataset(1, 512, 512 * 1024); // 256 MiB
    let small = dataset(1_000_000, 20_000, 4096); // 80 MiB
    println!(
        "0-db endpoint: {} chunks of 512 KiB and {} values of 4 KiB in a real 0-db {} and in \
         the dir:// store of hub-server --zdb-listen",
        big.len(),
        small.len(),
        zdb.port()
    );
    let writer = |url: String| {
        let store = rt.block_on(flist_store::open(&url)).unwrap();
        for part in big.chunks(32).chain(small.chunks(512)) {
            rt.block_on(store.set_many(part)).unwrap();
        }
    };
    writer(zdb.url("bench", Some("benchpw")));
    writer(hub_store);

    let zdb_url = zdb.url("bench", None);
    let hub_url = format!("zdb://127.0.0.1:{zport}");
    let big_keys: Vec<Vec<u8>> = big.iter().map(|(k, _)| k.clone()).collect();
    let small_keys: Vec<Vec<u8>> = small.iter().map(|(k, _)| k.clone()).collect();
    let big_mib = (big.len() * 512 * 1024) as f64 / f64::from(1 << 20);
    // Warm both page caches.
    mget_all(&rt, &zdb_url, &big_keys);
    mget_all(&rt, &hub_url, &big_keys);
    mget_all(&rt, &zdb_url, &small_keys);
    mget_all(&rt, &hub_url, &small_keys);

    let mut rows = vec![
        Row {
            what: "MGET (get_many, 4 connections), 512 KiB",
            unit: "MiB/s",
            zdb: 0.0,
            hub: 0.0,
        },
        Row {
            what: "GET pipelined 16 deep, 1 connection, 512 KiB",
            unit: "MiB/s",
            zdb: 0.0,
            hub: 0.0,
        },
        Row {
            what: "GET pipelined 16 deep, 1 connection, 4 KiB",
            unit: "GET/s",
            zdb: 0.0,
            hub: 0.0,
        },
    ];
    for round in 1..=rounds {
        let best = |r: &mut f64, v: f64| *r = r.max(v);
        best(
            &mut rows[0].zdb,
            big_mib / mget_all(&rt, &zdb_url, &big_keys),
        );
        best(
            &mut rows[0].hub,
            big_mib / mget_all(&rt, &hub_url, &big_keys),
        );
        best(
            &mut rows[1].zdb,
            big_mib / pipelined_gets(zdb.port(), Some("bench"), &big_keys, 16),
        );
        best(
            &mut rows[1].hub,
            big_mib / pipelined_gets(zport, None, &big_keys, 16),
        );
        let n = small_keys.len() as f64;
        best(
            &mut rows[2].zdb,
            n / pipelined_gets(zdb.port(), Some("bench"), &small_keys, 16),
        );
        best(
            &mut rows[2].hub,
            n / pipelined_gets(zport, None, &small_keys, 16),
        );
        println!("  round {round} done");
    }
    let mut pass = true;
    for r in &rows {
        let ratio = r.hub / r.zdb;
        pass &= ratio >= GOAL;
        println!(
            "  {:<48} real 0-db {:>9.0} {u}, hub endpoint {:>9.0} {u}: {ratio:.2}x (goal >= {GOAL}x) {}",
            r.what,
            r.zdb,
            r.hub,
            if ratio >= GOAL { "PASS" } else { "FAIL" },
            u = r.unit
        );
    }
    println!(
        "0-db endpoint / real 0-db (best of {rounds}): {}",
        if pass { "PASS" } else { "FAIL" }
    );
}
