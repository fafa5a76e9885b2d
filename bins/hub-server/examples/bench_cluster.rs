//! Cluster benchmark driven by `cargo xtask bench cluster` (issue 25): the same hub as one
//! machine (SQLite catalog, `dir://` store) and as a cluster (PostgreSQL catalog, SeaweedFS
//! S3 store, nginx in front), measured in one run:
//! - write latency (sequential): upload of a small archive, link, tag; cluster vs SQLite
//!   (goal: within 2×);
//! - reads (`wrk -t2 -c32`, keep-alive): a listing (`/api/flist/<repo>`) and a flist
//!   download, on the single machine directly, then through nginx on one and on three
//!   replicas (goal: within 0.8× of the single-machine figure per core used; on a 2-core
//!   machine every configuration shares the same two cores, so the figures compare whole
//!   machines).
//!
//! Usage: `bench_cluster [--secs S] [--writes N]`; needs `wrk`, nginx, PostgreSQL 15 and
//! SeaweedFS (installed by `cargo xtask test cluster`), and the release `hub-server` next
//! to this example (built by the xtask).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use test_support::seaweed::SeaweedServer;
use test_support::{HubProcess, Postgres};

fn arg(name: &str, default: u64) -> u64 {
    let argv: Vec<String> = std::env::args().collect();
    argv.iter()
        .position(|a| a == name)
        .and_then(|i| argv.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn hub_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("exe");
    // target/release/examples/bench_cluster → target/release/hub-server
    let bin = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("hub-server"))
        .expect("target dir");
    assert!(
        bin.is_file(),
        "{} missing: cargo build --release -p hub-server",
        bin.display()
    );
    bin
}

fn archive(content: &str) -> Vec<u8> {
    let tar = test_support::archive::RawTar::new()
        .dir("etc")
        .file("etc/content", content.as_bytes())
        .finish();
    test_support::archive::gzip(&tar)
}

/// Mean latency in ms of `n` sequential uploads, links and tags against `base`.
fn writes(base: &str, n: u64, tag: &str) -> (f64, f64, f64) {
    let c = reqwest::blocking::Client::new();
    let mut up = Duration::ZERO;
    let mut link = Duration::ZERO;
    let mut tagging = Duration::ZERO;
    for i in 0..n {
        let name = format!("{tag}-{i}");
        let part = reqwest::blocking::multipart::Part::bytes(archive(&name))
            .file_name(format!("{name}.tar.gz"));
        let t = Instant::now();
        let r = c
            .post(format!("{base}/api/flist/me/upload"))
            .header("x-hub-user", "alice")
            .multipart(reqwest::blocking::multipart::Form::new().part("file", part))
            .send()
            .expect("upload");
        up += t.elapsed();
        assert_eq!(r.status(), 200);
        let t = Instant::now();
        let r = c
            .get(format!(
                "{base}/api/flist/me/{name}.flist/link/{name}-l.flist"
            ))
            .header("x-hub-user", "alice")
            .send()
            .expect("link");
        link += t.elapsed();
        assert_eq!(r.status(), 200);
        let t = Instant::now();
        let r = c
            .get(format!(
                "{base}/api/flist/me/v1/{name}.flist/tag/alice/{name}.flist"
            ))
            .header("x-hub-user", "alice")
            .send()
            .expect("tag");
        tagging += t.elapsed();
        assert_eq!(r.status(), 200);
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0 / n as f64;
    (ms(up), ms(link), ms(tagging))
}

/// `wrk` requests per second on `url`.
fn wrk(url: &str, secs: u64) -> f64 {
    let out = Command::new("wrk")
        .args(["-t2", "-c32", &format!("-d{secs}s"), url])
        .output()
        .expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let bad = text
        .lines()
        .any(|l| l.contains("Non-2xx") || l.contains("Socket errors"));
    if bad {
        eprintln!("wrk reported errors on {url}:\n{text}");
    }
    rps
}

fn balancer(hubs: &[&HubProcess]) -> test_support::nginx::Nginx {
    let ports: Vec<String> = hubs
        .iter()
        .map(|h| h.url().trim_start_matches("http://").to_string())
        .collect();
    test_support::nginx::Nginx::start(|port| {
        let servers: String = ports.iter().map(|p| format!("    server {p};\n")).collect();
        format!(
            "upstream hubs {{\n    least_conn;\n{servers}    keepalive 64;\n}}\n\
             server {{\n  listen 127.0.0.1:{port};\n  access_log off;\n\
               location / {{\n    proxy_pass http://hubs;\n    proxy_http_version 1.1;\n\
                 proxy_set_header Connection \"\";\n  }}\n}}\n"
        )
    })
}

fn main() {
    let secs = arg("--secs", 5);
    let n = arg("--writes", 30);
    let bin = hub_bin();
    let quiet = [("HUB_AUTHENTICATION", "off"), ("RUST_LOG", "error")];

    // One machine.
    let single = HubProcess::start_with_env(&bin, &quiet);
    let w_single = writes(&single.url(), n, "s");
    let single_lb = balancer(&[&single]);

    // The cluster.
    let pg = Postgres::start();
    let s3 = SeaweedServer::start();
    let catalog = pg.create_database("bench");
    let store = s3.url("bench");
    let env = [
        ("HUB_CATALOG", catalog.as_str()),
        ("HUB_STORE", store.as_str()),
        quiet[0],
        quiet[1],
    ];
    let replicas: Vec<HubProcess> = (0..3)
        .map(|_| HubProcess::start_with_env(&bin, &env))
        .collect();
    let w_cluster = writes(&replicas[0].url(), n, "c");
    // Every replica has read the flists once (their local caches warm, as in steady state).
    for r in &replicas {
        for i in 0..n {
            let _ = r.get(&format!("/alice/c-{i}.flist"));
        }
    }
    let one = balancer(&[&replicas[0]]);
    let three = balancer(&[&replicas[0], &replicas[1], &replicas[2]]);

    let rows = [
        (
            "listing /api/flist/alice",
            "/api/flist/alice",
            "/api/flist/alice",
        ),
        (
            "download /alice/<name>.flist",
            "/alice/s-0.flist",
            "/alice/c-0.flist",
        ),
    ];
    println!("\n# cargo xtask bench cluster ({secs} s per row, {n} writes each)\n");
    println!("| row | one machine | one machine via nginx | cluster, 1 replica via nginx | cluster, 3 replicas via nginx | 3 replicas / one machine via nginx |");
    println!("|---|---|---|---|---|---|");
    for (what, sp, cp) in rows {
        let direct = wrk(&format!("{}{sp}", single.url()), secs);
        let via = wrk(&format!("{}{sp}", single_lb.url()), secs);
        let c1 = wrk(&format!("{}{cp}", one.url()), secs);
        let c3 = wrk(&format!("{}{cp}", three.url()), secs);
        println!(
            "| {what} | {direct:.0} req/s | {via:.0} req/s | {c1:.0} req/s ({:.2}×) | {c3:.0} req/s | {:.2}× {} |",
            c1 / via,
            c3 / via,
            if c3 / via >= 0.8 { "PASS (≥ 0.8×)" } else { "FAIL (< 0.8×)" }
        );
    }
    println!("\n| write (mean of {n}, sequential) | SQLite + dir:// | PostgreSQL + S3 | ratio |");
    println!("|---|---|---|---|");
    for (what, a, b) in [
        ("upload of a small archive", w_single.0, w_cluster.0),
        ("link", w_single.1, w_cluster.1),
        ("tag", w_single.2, w_cluster.2),
    ] {
        println!(
            "| {what} | {a:.2} ms | {b:.2} ms | {:.2}× {} |",
            b / a,
            if b / a <= 2.0 {
                "PASS (≤ 2×)"
            } else {
                "FAIL (> 2×)"
            }
        );
    }
}
