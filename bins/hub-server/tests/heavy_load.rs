//! Issue #12, finding 4: hostile load on the public routes that read a 200,000-entry flist
//! (its page and directory pages, the full dump, `.json`/`.txt`, metadata, path search),
//! fired 60 at once from several client addresses at the real `hub-server` process. The
//! work per request is bounded (pages), parsed flists and dumps are held once in a cache
//! bounded by size, and each client has a limit of heavy requests at once, so:
//! a light request from another client keeps answering within a second, every heavy
//! request ends (200, or 429 with `Retry-After`) within a bound, and the server stays under
//! 300 MB resident and does not grow from one storm to the next.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::big::{seed, vm_rss_kb};
use common::{free_port, serve};

/// Simulated clients (loopback addresses 127.0.0.2..) and heavy requests each.
const CLIENTS: u8 = 4;
const PER_CLIENT: usize = 15;
/// Every heavy request must have ended by then.
const STORM_BOUND: Duration = Duration::from_secs(90);
/// The light client's bound, per request.
const LIGHT_BOUND: Duration = Duration::from_secs(1);
const RSS_LIMIT_MB: u64 = 300;

/// The heavy URL number `i`: every public route that reads the flist's contents (`raw` is
/// parsed on the first request; `/light` of a flist parses it once for its VM check).
fn heavy_url(base: &str, i: usize) -> String {
    let page = format!("{base}/bigrepo/big.flist.md");
    let raw = format!("{base}/bigrepo/raw.flist.md");
    match i % 12 {
        0 => page,
        1 => format!("{page}?dir=/big&page={}", i * 7 % 500),
        2 => format!("{page}?dir=/d0{:02}&fragment=1", i % 100),
        3 => format!("{raw}?dir=/big&page={}", i % 500),
        4 => format!("{base}/api/flist/bigrepo/big.flist"),
        5 => format!("{base}/api/flist/bigrepo/raw.flist"),
        6 => format!("{base}/bigrepo/big.flist.json"),
        7 => format!("{base}/bigrepo/raw.flist.txt"),
        8 => format!("{base}/api/flist/bigrepo/raw.flist/metadata"),
        9 => format!("{base}/search?q=/big/file-0{:02}", i % 100),
        10 => format!("{base}/api/flist/bigrepo/raw.flist/light"),
        _ => format!("{base}/api/flist/bigrepo/big.flist/metadata"),
    }
}

struct Storm {
    /// (url, status, Retry-After present, body length, time to the full body)
    results: Vec<(String, u16, bool, usize, Duration)>,
    elapsed: Duration,
    light_max: Duration,
    light_count: usize,
    light_failures: Vec<String>,
    peak_kb: u64,
}

/// Fires `CLIENTS * PER_CLIENT` heavy requests at once while a light client on 127.0.0.1
/// asks `/healthz` and a light flist read in turn, and RSS is sampled.
async fn storm(base: &str, pid: u32) -> Storm {
    let peak = Arc::new(AtomicU64::new(vm_rss_kb(pid)));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(vm_rss_kb(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let light_log = Arc::new(Mutex::new((Duration::ZERO, 0usize, Vec::<String>::new())));
    let light = {
        let (done, log, base) = (done.clone(), light_log.clone(), base.to_string());
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .local_address(IpAddr::V4(Ipv4Addr::LOCALHOST))
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client");
            let urls = [
                format!("{base}/healthz"),
                format!("{base}/api/flist/bigrepo/big.flist/light"),
                format!("{base}/api/repositories"),
            ];
            let mut n = 0usize;
            while !done.load(Ordering::Relaxed) {
                let url = &urls[n % urls.len()];
                n += 1;
                let t = Instant::now();
                let outcome = match client.get(url).send().await {
                    Ok(r) => {
                        let s = r.status();
                        match r.bytes().await {
                            Ok(_) if s.is_success() => None,
                            Ok(_) => Some(format!("{url}: {s}")),
                            Err(e) => Some(format!("{url}: {e}")),
                        }
                    }
                    Err(e) => Some(format!("{url}: {e}")),
                };
                let took = t.elapsed();
                {
                    let mut l = log.lock().expect("log");
                    l.0 = l.0.max(took);
                    l.1 += 1;
                    if let Some(f) = outcome {
                        l.2.push(f);
                    } else if took >= LIGHT_BOUND {
                        l.2.push(format!("{url}: took {took:?}"));
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let client = reqwest::Client::builder()
            .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + c)))
            .timeout(STORM_BOUND)
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        for k in 0..PER_CLIENT {
            let url = heavy_url(base, usize::from(c) * PER_CLIENT + k);
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let t = Instant::now();
                match client.get(&url).send().await {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let retry = r.headers().contains_key("retry-after");
                        let len = r.bytes().await.map(|b| b.len()).unwrap_or(0);
                        (url, s, retry, len, t.elapsed())
                    }
                    Err(e) => (format!("{url}: {e}"), 0, false, 0, t.elapsed()),
                }
            }));
        }
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("request task"));
    }
    let elapsed = t.elapsed();
    done.store(true, Ordering::Relaxed);
    sampler.await.expect("sampler");
    light.await.expect("light client");
    peak.fetch_max(vm_rss_kb(pid), Ordering::Relaxed);
    let l = light_log.lock().expect("log");
    Storm {
        results,
        elapsed,
        light_max: l.0,
        light_count: l.1,
        light_failures: l.2.clone(),
        peak_kb: peak.load(Ordering::Relaxed),
    }
}

fn check(name: &str, s: &Storm) {
    let ok = s.results.iter().filter(|r| r.1 == 200).count();
    let limited = s.results.iter().filter(|r| r.1 == 429).count();
    let slowest = s.results.iter().map(|r| r.4).max().unwrap_or_default();
    eprintln!(
        "{name}: {} heavy requests in {:?} (slowest {slowest:?}): {ok} answered, {limited} \
         refused with 429; light client: {} requests, slowest {:?}; RSS peak {} MB",
        s.results.len(),
        s.elapsed,
        s.light_count,
        s.light_max,
        s.peak_kb / 1024
    );
    let mut by_time: Vec<_> = s.results.iter().collect();
    by_time.sort_by_key(|r| std::cmp::Reverse(r.4));
    for r in by_time.iter().take(5) {
        eprintln!("  slow: {} {} in {:?}", r.1, r.0, r.4);
    }
    for (url, status, retry, len, took) in &s.results {
        match status {
            200 => assert!(*len > 0, "{url}: empty answer"),
            429 => assert!(*retry, "{url}: 429 without Retry-After"),
            other => panic!("{url}: status {other} after {took:?}"),
        }
    }
    assert!(ok > 0, "{name}: nothing answered");
    assert!(
        s.elapsed < STORM_BOUND,
        "{name}: the heavy requests took {:?}",
        s.elapsed
    );
    assert!(s.light_count >= 3, "{name}: the light client barely ran");
    assert!(
        s.light_failures.is_empty(),
        "{name}: light requests failed or were slow: {:?}",
        s.light_failures
    );
    assert!(
        s.peak_kb / 1024 < RSS_LIMIT_MB,
        "{name}: server RSS peaked at {} MB",
        s.peak_kb / 1024
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn heavy_public_routes_of_a_200000_entry_flist_stay_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let d2 = data.clone();
    tokio::task::spawn_blocking(move || seed(&d2, true))
        .await
        .expect("seed");
    let port = free_port();
    let data_arg = data.display().to_string();
    let server = serve(dir.path(), port, &["--data-dir", &data_arg]).await;
    let pid = server.child.id();
    let base = format!("http://127.0.0.1:{port}");
    // The light client's `/light` of big.flist: its VM check parses the flist once, here.
    let t = Instant::now();
    let r = reqwest::get(format!("{base}/api/flist/bigrepo/big.flist/light"))
        .await
        .expect("light");
    assert_eq!(r.status(), 200);
    eprintln!(
        "first /light of the 200k-entry flist (VM check): {:?}",
        t.elapsed()
    );
    let idle_kb = vm_rss_kb(pid);

    let first = storm(&base, pid).await;
    let after_first = vm_rss_kb(pid);
    check("first storm", &first);
    // The same storm again: what the first one left in memory is reused, not added to.
    let second = storm(&base, pid).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_second = vm_rss_kb(pid);
    check("second storm", &second);
    eprintln!(
        "RSS: idle {} MB, after the first storm {} MB, after the second {} MB",
        idle_kb / 1024,
        after_first / 1024,
        after_second / 1024
    );
    assert!(
        after_second <= after_first + 32 * 1024,
        "the server grew from {} MB to {} MB between two identical storms",
        after_first / 1024,
        after_second / 1024
    );
    assert!(
        after_second / 1024 < RSS_LIMIT_MB,
        "RSS after the storms: {} MB",
        after_second / 1024
    );
}
