//! A cluster replica (PostgreSQL catalog, SeaweedFS bucket) while one of them is down (the
//! `cluster` group, issue 25): writes answer 503 with `Retry-After` and record nothing,
//! what the replica holds keeps being served, `/readyz` tells the load balancer; once the
//! component is back the same process takes writes again, without a restart.

use std::time::{Duration, Instant};

use test_support::postgres::Postgres;
use test_support::seaweed::SeaweedServer;
use test_support::HubProcess;

fn bin() -> std::path::PathBuf {
    env!("CARGO_BIN_EXE_hub-server").into()
}

/// `alice` uploads a tree of its own as `name`: the status and the `Retry-After` header.
fn upload(h: &HubProcess, name: &str) -> (u16, Option<String>) {
    let tar = test_support::archive::RawTar::new()
        .dir("etc")
        .file("etc/hostname", name.as_bytes())
        .finish();
    let part = reqwest::blocking::multipart::Part::bytes(test_support::archive::gzip(&tar))
        .file_name(name.to_string());
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/api/flist/me/upload", h.url()))
        .header("x-hub-user", "alice")
        .multipart(reqwest::blocking::multipart::Form::new().part("file", part))
        .timeout(Duration::from_secs(120))
        .send()
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
    let (status, body) = h.get("/api/flist/alice");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let mut n: Vec<String> = v
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["name"].as_str().map(str::to_string))
        .collect();
    n.sort();
    n
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
        ],
    );
    assert_eq!(upload(&hub, "one.tar.gz").0, 200);
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
}
