//! Two `hub-server` processes on one PostgreSQL catalog (the `cluster` group): what one
//! replica writes, the other lists within its watch interval, caches included. Before, a
//! replica's listing cache (keyed on its catalog generation) kept answering the catalog as
//! it was until that replica wrote something itself.

use std::time::{Duration, Instant};

use test_support::{HubProcess, Postgres};

fn bin() -> std::path::PathBuf {
    env!("CARGO_BIN_EXE_hub-server").into()
}

fn names(h: &HubProcess, repo: &str) -> Vec<String> {
    let (status, body) = h.get(&format!("/api/flist/{repo}"));
    if status == 404 {
        return Vec::new();
    }
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).expect("listing");
    let mut n: Vec<String> = v
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["name"].as_str().map(str::to_string))
        .collect();
    n.sort();
    n
}

/// `alice` uploads `name` (authentication off: the `x-hub-user` header names the caller).
fn upload(h: &HubProcess, name: &str) {
    let archive = std::fs::read(test_support::fixture("fixture-tree.tar.gz")).expect("fixture");
    let part = reqwest::blocking::multipart::Part::bytes(archive).file_name(name.to_string());
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/api/flist/me/upload", h.url()))
        .header("x-hub-user", "alice")
        .multipart(reqwest::blocking::multipart::Form::new().part("file", part))
        .send()
        .expect("upload");
    assert_eq!(r.status(), 200, "{:?}", r.text());
}

/// Waits (at most 10 s: the watch looks every 2 s) until `h` lists `want` for alice.
fn lists(h: &HubProcess, want: &[&str]) -> Result<(), Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = names(h, "alice");
        if got == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(got);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_replica_lists_what_another_wrote() {
    let url = Postgres::shared().create_database("replicas");
    let env = [("HUB_CATALOG", url.as_str()), ("HUB_AUTHENTICATION", "off")];
    let (a, b) = (
        HubProcess::start_with_env(&bin(), &env),
        HubProcess::start_with_env(&bin(), &env),
    );
    upload(&a, "one.tar.gz");
    // b caches its listing now...
    lists(&b, &["one.flist"]).expect("b lists a's first upload");
    // ...and a writes again: b must not keep answering from that cache.
    upload(&a, "two.tar.gz");
    lists(&b, &["one.flist", "two.flist"]).expect("b still lists its cached listing");
    upload(&b, "three.tar.gz");
    lists(&a, &["one.flist", "three.flist", "two.flist"]).expect("a lists b's upload");
}
