//! API benchmark driven by `cargo xtask bench api`: a hub with REPOS repositories × FLISTS
//! flists, 32 concurrent connections per endpoint for a fixed time, each endpoint next to a
//! static file of the same size served by the same server in the same run.
//!
//! Usage: `bench_api [--repos N] [--flists N] [--secs S] [--conns C]`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hub_http::HubConfig;
use hub_repo::{Actor, Hub};

struct Args {
    repos: usize,
    flists: usize,
    secs: f64,
    conns: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        repos: 1000,
        flists: 20,
        secs: 3.0,
        conns: 32,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < argv.len() {
        let v = &argv[i + 1];
        match argv[i].as_str() {
            "--repos" => a.repos = v.parse().unwrap_or(a.repos),
            "--flists" => a.flists = v.parse().unwrap_or(a.flists),
            "--secs" => a.secs = v.parse().unwrap_or(a.secs),
            "--conns" => a.conns = v.parse().unwrap_or(a.conns),
            _ => {}
        }
        i += 2;
    }
    a
}

struct Measure {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

async fn measure(client: &reqwest::Client, url: &str, conns: usize, secs: f64) -> Measure {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (client, url, stop) = (client.clone(), url.to_string(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                match client.get(&url).send().await {
                    Ok(r) if r.status().is_success() => {
                        if r.bytes().await.is_err() {
                            errors += 1;
                        }
                    }
                    _ => errors += 1,
                }
                lat.push(t0.elapsed());
            }
            (lat, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            all.extend(l);
            errors += e;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    Measure {
        rps: all.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors,
    }
}

fn main() -> BoxResult<()> {
    let args = parse_args();
    let dir = tempfile::tempdir()?;
    let mut cfg = HubConfig {
        data_dir: dir.path().join("data"),
        ..HubConfig::default()
    };
    cfg.public_backend = "zdb://hub.example.org:9900/public".into();

    // Populate: one flist file shared by every entry (content-addressed), one transaction.
    let t0 = Instant::now();
    let hub = Hub::open(&cfg.data_dir)?;
    let fixture = test_support::fixture("fixture.flist");
    let staged = hub.stage_reader(std::fs::File::open(&fixture)?)?;
    let fl = hub_repo::inspect::open_flist(staged.path())?;
    let info = hub_repo::inspect::info_of(&fl, Some("bench".into()));
    let mut targets = Vec::with_capacity(args.repos * args.flists);
    for r in 0..args.repos {
        for f in 0..args.flists {
            targets.push((format!("repo{r:04}"), format!("app-{f:02}.flist")));
        }
    }
    hub.put_flist_many(&Actor::system("bench"), &targets, staged, info)?;
    drop(hub);
    eprintln!(
        "populated {} repositories x {} flists in {:.1}s",
        args.repos,
        args.flists,
        t0.elapsed().as_secs_f64()
    );

    // Server and client on separate runtimes (the machine's cores are shared by both).
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let static_dir = cfg.static_dir();
    std::fs::create_dir_all(&static_dir)?;
    let server = server_rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        BoxResult::Ok(hub_http::start_on(l, cfg).await?)
    })?;
    let base = format!("http://{}", server.addr);
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mid = format!("repo{:04}", args.repos / 2);
    let f = format!("app-{:02}.flist", args.flists / 2);
    let endpoints = [
        ("/api/repositories".to_string(), "repositories"),
        (format!("/api/flist/{mid}"), "repo listing"),
        (format!("/api/flist/{mid}/{f}/light"), "light"),
        (format!("/{mid}/{f}"), "flist download"),
    ];
    client_rt.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(args.conns * 2)
            .build()?;
        println!(
            "{:<16} {:>9} {:>10} {:>9} {:>9} | {:>10} {:>9} {:>9} | {:>6}",
            "endpoint",
            "bytes",
            "req/s",
            "p50 ms",
            "p99 ms",
            "static r/s",
            "p50 ms",
            "p99 ms",
            "ratio"
        );
        for (path, label) in &endpoints {
            let body = client
                .get(format!("{base}{path}"))
                .send()
                .await?
                .bytes()
                .await?;
            let static_name = format!("same-size-{}.bin", label.replace(' ', "-"));
            std::fs::write(static_dir.join(&static_name), vec![b'x'; body.len()])?;
            // Warm-up, then the endpoint and its static twin back to back.
            let _ = measure(&client, &format!("{base}{path}"), args.conns, 0.5).await;
            let api = measure(&client, &format!("{base}{path}"), args.conns, args.secs).await;
            let stat = measure(
                &client,
                &format!("{base}/static/{static_name}"),
                args.conns,
                args.secs,
            )
            .await;
            println!(
                "{:<16} {:>9} {:>10.0} {:>9.2} {:>9.2} | {:>10.0} {:>9.2} {:>9.2} | {:>5.0}%{}",
                label,
                body.len(),
                api.rps,
                api.p50_ms,
                api.p99_ms,
                stat.rps,
                stat.p50_ms,
                stat.p99_ms,
                100.0 * api.rps / stat.rps.max(1.0),
                if api.errors + stat.errors > 0 {
                    format!("  ({} errors)", api.errors + stat.errors)
                } else {
                    String::new()
                }
            );
        }
        BoxResult::Ok(())
    })?;
    server_rt.block_on(server.shutdown())?;
    Ok(())
}

/// Any error.
type BoxResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;
