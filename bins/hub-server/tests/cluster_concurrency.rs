//! Sixty writers on three `hub-server` replicas sharing a PostgreSQL catalog and a SeaweedFS
//! bucket for 30 s, each replica killed (`SIGKILL`) and restarted once during the run (the
//! `cluster` group, issue 25): uploads, links, renames, deletes and tags on overlapping names,
//! plus uploads of names each writer owns. Afterwards every acknowledged upload of an owned
//! name is listed, the replicas answer the same listings byte for byte, `hub-server check` is
//! clean, and after `gc` nothing is left to collect (no orphan row or object).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster;
use test_support::seaweed::SeaweedServer;
use test_support::{HubProcess, Postgres};

fn bin() -> std::path::PathBuf {
    env!("CARGO_BIN_EXE_hub-server").into()
}

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What the writers saw: statuses per operation, the owned uploads acknowledged.
#[derive(Default)]
struct Seen {
    statuses: BTreeMap<(&'static str, u16), u64>,
    acked: Vec<String>,
    unexpected: Vec<String>,
}

fn writer(w: u64, urls: Vec<String>, stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (w + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let base = &urls[((w + i) % urls.len() as u64) as usize];
        let (k, j) = (rng.next(8), rng.next(8));
        let op = rng.next(6);
        let upload = |name: &str, content: &str| {
            cluster::upload(
                &client,
                base,
                "alice",
                name,
                cluster::tree(content.as_bytes()),
            )
        };
        let get = |path: String| {
            client
                .get(format!("{base}{path}"))
                .header("x-hub-user", "alice")
                .send()
        };
        let owned = format!("w{w}-{i}");
        let (what, r) = match op {
            0 => ("upload-owned", upload(&format!("{owned}.tar.gz"), &owned)),
            1 => (
                "upload",
                upload(&format!("s{k}.tar.gz"), &format!("{w}-{i}")),
            ),
            2 => (
                "link",
                get(format!("/api/flist/me/s{k}.flist/link/l{j}.flist")),
            ),
            3 => (
                "rename",
                get(format!("/api/flist/me/s{k}.flist/rename/s{j}.flist")),
            ),
            4 => (
                "delete",
                client
                    .delete(format!("{base}/api/flist/me/s{k}.flist"))
                    .header("x-hub-user", "alice")
                    .send(),
            ),
            _ => (
                "tag",
                get(format!("/api/flist/me/v1/l{j}.flist/tag/alice/s{k}.flist")),
            ),
        };
        // A connection refused or cut (the replica was killed) is 0: not acknowledged.
        let (status, body) = match r {
            Ok(r) => {
                let s = r.status().as_u16();
                (s, r.text().unwrap_or_default())
            }
            Err(_) => (0, String::new()),
        };
        let mut s = seen.lock().expect("seen");
        *s.statuses.entry((what, status)).or_default() += 1;
        if what == "upload-owned" && status == 200 {
            s.acked.push(format!("{owned}.flist"));
        }
        // Refusals a concurrent history explains (no such name, a regular file in the way,
        // the name taken) are fine; an internal error is not.
        if !matches!(status, 0 | 200 | 400 | 404 | 409 | 503) {
            s.unexpected.push(format!("{what} -> {status}: {body}"));
        }
    }
}

fn listing(h: &HubProcess, path: &str) -> Vec<u8> {
    let (status, body) = h.get(path);
    assert!(
        matches!(status, 200 | 404),
        "{path}: {status} {}",
        String::from_utf8_lossy(&body)
    );
    body
}

fn hub_server(args: &[&str]) -> String {
    let out = std::process::Command::new(bin())
        .args(args)
        .output()
        .expect("hub-server");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "hub-server {args:?}: {text}");
    text
}

#[test]
fn sixty_writers_on_three_replicas_each_killed_once() {
    let catalog = Postgres::shared().create_database("sixty");
    let store = SeaweedServer::shared().url(&format!("sixty-{}", std::process::id()));
    let env = [
        ("HUB_CATALOG", catalog.as_str()),
        ("HUB_STORE", store.as_str()),
        ("HUB_AUTHENTICATION", "off"),
        ("HUB_PUBLIC_BACKEND", ""),
    ];
    let mut hubs: Vec<HubProcess> = (0..3)
        .map(|_| HubProcess::start_with_env(&bin(), &env))
        .collect();
    let urls: Vec<String> = hubs.iter().map(HubProcess::url).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let writers: Vec<_> = (0..60)
        .map(|w| {
            let (urls, stop, seen) = (urls.clone(), stop.clone(), seen.clone());
            std::thread::spawn(move || writer(w, urls, stop, seen))
        })
        .collect();
    // 30 s of writes; each replica killed and restarted once, 8 s apart.
    let start = Instant::now();
    for h in hubs.iter_mut() {
        std::thread::sleep(Duration::from_secs(6));
        h.restart();
    }
    std::thread::sleep(Duration::from_secs(30).saturating_sub(start.elapsed()));
    stop.store(true, Ordering::Relaxed);
    for t in writers {
        t.join().expect("writer");
    }
    let seen = std::mem::take(&mut *seen.lock().expect("seen"));
    assert!(seen.unexpected.is_empty(), "{:#?}", seen.unexpected);
    let acked_writes: u64 = seen
        .statuses
        .iter()
        .filter(|((_, s), _)| *s == 200)
        .map(|(_, n)| n)
        .sum();
    assert!(
        acked_writes > 60,
        "too few writes went through: {:?}",
        seen.statuses
    );
    assert!(
        seen.statuses.keys().any(|(_, s)| *s == 0),
        "no write met a killed replica: {:?}",
        seen.statuses
    );

    // Every replica answers the same, and every acknowledged owned upload is there.
    let paths = [
        "/api/flist/alice",
        "/api/flist/alice/tags/v1",
        "/api/repositories",
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let first: Vec<Vec<u8>> = paths.iter().map(|p| listing(&hubs[0], p)).collect();
        let same = hubs[1..]
            .iter()
            .all(|h| paths.iter().zip(&first).all(|(p, f)| listing(h, p) == *f));
        if same {
            break;
        }
        assert!(Instant::now() < deadline, "the replicas answer differently");
        std::thread::sleep(Duration::from_millis(200));
    }
    let listed: serde_json::Value =
        serde_json::from_slice(&listing(&hubs[0], "/api/flist/alice")).expect("listing");
    let names: Vec<&str> = listed
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    for a in &seen.acked {
        assert!(
            names.contains(&a.as_str()),
            "acknowledged {a} is not listed"
        );
    }
    // Every entry's file serves from every replica.
    for e in listed.as_array().expect("array") {
        if e["type"] == "regular" {
            let name = e["name"].as_str().expect("name");
            for h in &hubs {
                assert_eq!(h.get(&format!("/alice/{name}")).0, 200, "{name}");
            }
        }
    }

    // The cluster checks out, and after gc nothing is left to collect.
    let scratch = tempfile::tempdir().expect("scratch");
    let dir = scratch.path().display().to_string();
    let cluster = [
        "--data-dir",
        dir.as_str(),
        "--catalog",
        catalog.as_str(),
        "--store",
        store.as_str(),
        "--public-url",
        urls[0].as_str(),
    ];
    hub_server(&[&["check"][..], &cluster[..]].concat());
    hub_server(&[&["gc", "--grace", "0s"][..], &cluster[..]].concat());
    let after = hub_server(&[&["gc", "--grace", "0s", "--dry-run"][..], &cluster[..]].concat());
    assert!(
        after.contains("to collect: 0 unreferenced, 0 unrecorded"),
        "left after gc: {after}"
    );
    println!("statuses: {:?}", seen.statuses);
}
