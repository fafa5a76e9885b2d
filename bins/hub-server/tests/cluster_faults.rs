//! A cluster replica (PostgreSQL catalog, SeaweedFS bucket) while one of them is down (the
//! `cluster` group, issue 25), under a steady load of readers and writers: writes answer 503
//! with `Retry-After` and record nothing, what the replica holds keeps being served,
//! `/readyz` tells the load balancer, no answer is a 500; once the component is back the
//! same process takes writes again, without a restart, and `hub-server check` finds the
//! cluster clean.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster;
use test_support::postgres::Postgres;
use test_support::seaweed::SeaweedServer;
use test_support::HubProcess;

fn bin() -> std::path::PathBuf {
    env!("CARGO_BIN_EXE_hub-server").into()
}

/// `alice` uploads a tree of its own as `name`: the status and the `Retry-After` header.
fn upload(h: &HubProcess, name: &str) -> (u16, Option<String>) {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    let r = cluster::upload(
        &client,
        &h.url(),
        "alice",
        name,
        cluster::tree(name.as_bytes()),
    )
    .expect("upload");
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (r.status().as_u16(), retry)
}

/// Retries `upload` for up to a minute until it is accepted (a component coming back).
fn upload_once_back(h: &HubProcess, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _) = upload(h, name);
        if status == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "{name}: still {status}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn listed(h: &HubProcess) -> Vec<String> {
    cluster::names(h, "alice")
}

/// Readers and writers hitting `url` until `stop`: every status they saw, counted.
struct Load {
    stop: Arc<AtomicBool>,
    statuses: Arc<Mutex<std::collections::BTreeMap<u16, u64>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(url: String) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let statuses = Arc::new(Mutex::new(std::collections::BTreeMap::new()));
        let seq = Arc::new(AtomicU64::new(0));
        let threads = (0..4)
            .map(|i| {
                let (url, stop, statuses, seq) =
                    (url.clone(), stop.clone(), statuses.clone(), seq.clone());
                std::thread::spawn(move || {
                    let client = reqwest::blocking::Client::builder()
                        .timeout(Duration::from_secs(60))
                        .build()
                        .expect("client");
                    while !stop.load(Ordering::Relaxed) {
                        let status = if i == 0 {
                            let n = seq.fetch_add(1, Ordering::Relaxed);
                            cluster::upload(
                                &client,
                                &url,
                                "loader",
                                &format!("load-{n}.tar.gz"),
                                cluster::tree(n.to_string().as_bytes()),
                            )
                        } else if i == 1 {
                            client.get(format!("{url}/api/flist/alice")).send()
                        } else {
                            client.get(format!("{url}/alice/one.flist")).send()
                        };
                        let code = status.map(|r| r.status().as_u16()).unwrap_or(0);
                        *statuses.lock().expect("statuses").entry(code).or_default() += 1;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                })
            })
            .collect();
        Load {
            stop,
            statuses,
            threads,
        }
    }

    fn finish(self) -> std::collections::BTreeMap<u16, u64> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("load thread");
        }
        let s = self.statuses.lock().expect("statuses").clone();
        s
    }
}

#[test]
fn writes_wait_while_the_object_store_or_the_catalog_is_down() {
    let mut pg = Postgres::start();
    let mut s3 = SeaweedServer::start();
    let catalog = pg.create_database("faults");
    let store = s3.url("faults");
    let hub = HubProcess::start_with_env(
        &bin(),
        &[
            ("HUB_CATALOG", catalog.as_str()),
            ("HUB_STORE", store.as_str()),
            ("HUB_AUTHENTICATION", "off"),
            // The hub's own /chunks, so that `check` can reach what flists announce.
            ("HUB_PUBLIC_BACKEND", ""),
        ],
    );
    assert_eq!(upload(&hub, "one.tar.gz").0, 200);
    let load = Load::start(hub.url());
    let (status, one) = hub.get("/alice/one.flist");
    assert_eq!(status, 200);
    assert_eq!(listed(&hub), ["one.flist"]);
    assert_eq!(hub.get("/readyz").0, 200);

    // The object store goes away.
    s3.kill();
    let (status, retry) = upload(&hub, "two.tar.gz");
    assert_eq!(status, 503, "an upload while the store is down");
    assert!(retry.is_some(), "503 without Retry-After");
    assert_eq!(hub.get("/readyz").0, 503);
    assert_eq!(
        hub.get("/alice/one.flist"),
        (200, one.clone()),
        "cached flist"
    );
    assert_eq!(listed(&hub), ["one.flist"], "nothing half-recorded");
    s3.restart();
    upload_once_back(&hub, "two.tar.gz");
    assert_eq!(listed(&hub), ["one.flist", "two.flist"]);
    let (status, two) = hub.get("/alice/two.flist");
    assert_eq!(status, 200);

    // The catalog goes away.
    pg.stop();
    let (status, retry) = upload(&hub, "three.tar.gz");
    assert_eq!(status, 503, "an upload while the catalog is down");
    assert!(retry.is_some(), "503 without Retry-After");
    assert_eq!(hub.get("/readyz").0, 503);
    // What the replica read before keeps being served, even though the catalog changed
    // since (the last answer known; the download of one.flist was read before two.flist's
    // upload, two.flist's after).
    assert_eq!(hub.get("/alice/one.flist"), (200, one), "last known flist");
    assert_eq!(hub.get("/alice/two.flist"), (200, two), "cached flist");
    assert_eq!(
        listed(&hub),
        ["one.flist", "two.flist"],
        "last known listing"
    );
    pg.restart();
    upload_once_back(&hub, "three.tar.gz");
    assert_eq!(listed(&hub), ["one.flist", "three.flist", "two.flist"]);
    assert_eq!(hub.get("/readyz").0, 200);

    // The load saw service and refusals, never an internal error or a dropped connection.
    std::thread::sleep(Duration::from_secs(1));
    let statuses = load.finish();
    assert!(
        statuses.get(&200).copied().unwrap_or(0) > 10,
        "{statuses:?}"
    );
    assert!(statuses.get(&503).copied().unwrap_or(0) > 0, "{statuses:?}");
    assert!(
        statuses.keys().all(|s| matches!(s, 200 | 503)),
        "unexpected answers under the faults: {statuses:?}"
    );
    // Nothing half-written: the catalog, every flist file and every backend check out.
    let scratch = tempfile::tempdir().expect("scratch");
    let out = std::process::Command::new(bin())
        .args(["check", "--data-dir"])
        .arg(scratch.path())
        .args([
            "--catalog",
            &catalog,
            "--store",
            &store,
            "--public-url",
            &hub.url(),
        ])
        .output()
        .expect("hub-server check");
    assert!(
        out.status.success(),
        "check: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
