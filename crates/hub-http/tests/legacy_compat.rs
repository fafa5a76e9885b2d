//! The old hub's recorded answers (`tests/fixtures/hub-legacy/responses.json`, 370 requests
//! made to the reference 0-hub over `users.tar.gz`) replayed against our hub after
//! `import-legacy` of the same tree, over real HTTP with the request targets sent exactly as
//! recorded. Every record must give the same status, main content type and body (JSON
//! deep-equal with key and list order; only the per-entry `type`/`mode`/`target` of dumps may
//! be added; downloads by sha256 and size; text exactly). Records marked `reference_defect`
//! are old bugs: for those the corrected behaviour the fixture README describes is asserted.

#[path = "common/raw_http.rs"]
mod raw_http;

use std::path::{Path, PathBuf};

use hub_http::HubConfig;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

fn legacy_fixture(name: &str) -> PathBuf {
    test_support::workspace_root()
        .join("tests/fixtures/hub-legacy")
        .join(name)
}

/// Extracts `users.tar.gz` into `dest` keeping every mtime (files, links, folders).
fn extract_tree(dest: &Path) {
    std::fs::create_dir_all(dest).expect("mkdir");
    let f = std::fs::File::open(legacy_fixture("users.tar.gz")).expect("users.tar.gz");
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    ar.set_preserve_mtime(true);
    ar.set_preserve_permissions(true);
    ar.unpack(dest).expect("unpack users.tar.gz");
    restore_dir_mtimes(&legacy_fixture("users.tar.gz"), dest);
}

/// `tar` does not restore folder mtimes: set them from the archive (folders' contents are
/// complete by then, so nothing changes them afterwards).
fn restore_dir_mtimes(tgz: &Path, dest: &Path) {
    let f = std::fs::File::open(tgz).expect("archive");
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut dirs = Vec::new();
    for e in ar.entries().expect("entries") {
        let e = e.expect("entry");
        if e.header().entry_type().is_dir() {
            let mtime = e.header().mtime().expect("mtime");
            dirs.push((dest.join(e.path().expect("path")), mtime));
        }
    }
    for (dir, mtime) in dirs {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
        std::fs::File::open(&dir)
            .and_then(|d| d.set_modified(t))
            .unwrap_or_else(|e| panic!("set mtime of {}: {e}", dir.display()));
    }
}

/// Configured like the recording (fixture README): official repository `official-apps`,
/// public backend `hub.test:9900` namespace `default`, public website `https://hub.test`.
fn config(dir: &Path) -> HubConfig {
    HubConfig {
        data_dir: dir.join("data"),
        public_backend: "zdb://hub.test:9900/default".into(),
        public_url: "https://hub.test".into(),
        official: vec!["official-apps".into()],
        ..HubConfig::default()
    }
}

/// `expected` matches `actual`: same values, same list order, and the keys `expected` has in
/// the same order; `actual` may hold more keys only inside dump entries (`type`, `mode`,
/// `target`).
fn json_match(
    expected: &Value,
    actual: &Value,
    in_dump_entry: bool,
    at: &str,
) -> Result<(), String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            let extra: Vec<&String> = a.keys().filter(|k| !e.contains_key(*k)).collect();
            let allowed = ["type", "mode", "target"];
            if let Some(k) = extra.iter().find(|k| {
                // `/light` and `INFO` carry this hub's additions (signatures, VM checks,
                // formats), which the contract allows (old clients ignore unknown keys).
                let light_addition =
                    e.contains_key("md5") && hub_contract::Light::ADDITIONS.contains(&k.as_str());
                let dump_addition = in_dump_entry && allowed.contains(&k.as_str());
                !(dump_addition || light_addition)
            }) {
                return Err(format!("{at}: unexpected key {k:?}"));
            }
            let order: Vec<&String> = a.keys().filter(|k| e.contains_key(*k)).collect();
            let want: Vec<&String> = e.keys().collect();
            if order != want {
                return Err(format!("{at}: key order {order:?}, expected {want:?}"));
            }
            for (k, ev) in e {
                let av = a.get(k).ok_or_else(|| format!("{at}: missing key {k:?}"))?;
                let dump_entries = k == "content" && e.contains_key("fullsize");
                match (ev, av) {
                    (Value::Array(ea), Value::Array(aa)) if dump_entries => {
                        if ea.len() != aa.len() {
                            return Err(format!(
                                "{at}.content: {} entries, expected {}",
                                aa.len(),
                                ea.len()
                            ));
                        }
                        for (i, (x, y)) in ea.iter().zip(aa).enumerate() {
                            json_match(x, y, true, &format!("{at}.content[{i}]"))?;
                        }
                    }
                    _ => json_match(ev, av, false, &format!("{at}.{k}"))?,
                }
            }
            Ok(())
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Err(format!(
                    "{at}: {} items, expected {}:\n  ours {actual}\n  want {expected}",
                    a.len(),
                    e.len()
                ));
            }
            for (i, (x, y)) in e.iter().zip(a).enumerate() {
                json_match(x, y, false, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        _ if expected == actual => Ok(()),
        _ => Err(format!("{at}: {actual}, expected {expected}")),
    }
}

/// What the corrected hub answers for a record the reference got wrong.
enum Corrected {
    /// Status and main content type; for JSON the body must be an error envelope.
    Error(u16, &'static str),
    /// 200 JSON equal to this body.
    Json(Value),
}

/// Entries the reference listed that are no entries (raw folders, the stray file) or that
/// cannot be imported (the dangling link and the loop: reported by `import-legacy`).
fn not_an_entry(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    base.starts_with(".tag-")
        || matches!(
            base,
            "README.txt" | "subdir" | "dangling.flist" | "loop1.flist" | "loop2.flist"
        )
}

fn without_non_entries(list: &Value) -> Value {
    Value::Array(
        list.as_array()
            .expect("list")
            .iter()
            .filter(|v| match v {
                Value::String(s) => !not_an_entry(s),
                other => !not_an_entry(other["name"].as_str().unwrap_or("")),
            })
            .cloned()
            .collect(),
    )
}

/// The `.json` companion as the `.txt` record of the same entry shows it.
fn json_from_txt(records: &[Value], path: &str) -> Option<(bool, Value)> {
    let txt_path = format!("{}.txt", path.strip_suffix(".json")?);
    let rec = records.iter().find(|r| r["path"] == txt_path.as_str())?;
    let text = rec["body"].as_str()?;
    let mut m = Map::new();
    for line in text.lines() {
        let (k, v) = line.split_once(':')?;
        let key = match k {
            "File" => "flist",
            "Uploader" => "uploader",
            "Source" => "source",
            "Storage" => "storage",
            "Checksum" => "checksum",
            _ => return None,
        };
        m.insert(key.into(), Value::String(v.trim().to_string()));
    }
    Some((rec.get("reference_defect").is_some(), Value::Object(m)))
}

fn corrected(records: &[Value], rec: &Value) -> Corrected {
    let reason = rec["reference_defect"].as_str().expect("reason");
    let path = rec["path"].as_str().expect("path");
    let api = path.starts_with("/api/");
    if reason.starts_with("500 Internal Server Error") {
        let (target_defect, body) = json_from_txt(records, path).expect("matching .txt record");
        return if target_defect {
            Corrected::Error(404, "text/html")
        } else {
            Corrected::Json(body)
        };
    }
    if reason.starts_with("HTML 404 page") {
        return Corrected::Error(404, "application/json");
    }
    if reason.starts_with("HTML 405 page") {
        return Corrected::Error(405, "application/json");
    }
    if reason.starts_with("invalid name") || reason.starts_with("'..' accepted") {
        return Corrected::Error(400, "application/json");
    }
    if reason.starts_with("dangling link") || reason.starts_with("symlink loop") {
        return if api {
            Corrected::Error(404, "application/json")
        } else {
            Corrected::Error(404, "text/html")
        };
    }
    if reason.starts_with("lists raw directory names") {
        return Corrected::Json(without_non_entries(&rec["body"]));
    }
    if reason.starts_with("weird: lists the stray") {
        let body = &rec["body"];
        if let Some(m) = body.as_object().filter(|m| m.contains_key("weird")) {
            let mut out = m.clone();
            out.insert("weird".into(), without_non_entries(&m["weird"]));
            return Corrected::Json(Value::Object(out));
        }
        return Corrected::Json(without_non_entries(body));
    }
    panic!("record {path}: no corrected behaviour known for {reason:?}");
}

fn check(records: &[Value], rec: &Value, resp: &raw_http::RawResponse) -> Result<(), String> {
    let mime = resp.mime().unwrap_or_default();
    if rec.get("reference_defect").is_some() {
        return match corrected(records, rec) {
            Corrected::Error(status, want_mime) => {
                if resp.status != status || mime != want_mime {
                    return Err(format!(
                        "corrected: {} {mime}, expected {status} {want_mime}: {}",
                        resp.status,
                        resp.text()
                    ));
                }
                if want_mime == "application/json" {
                    let v = resp.json();
                    if v["status"] != "error" || !v["message"].is_string() {
                        return Err(format!("corrected: not an error envelope: {v}"));
                    }
                }
                Ok(())
            }
            Corrected::Json(want) => {
                if resp.status != 200 || mime != "application/json" {
                    return Err(format!(
                        "corrected: {} {mime}, expected 200 JSON: {}",
                        resp.status,
                        resp.text()
                    ));
                }
                json_match(&want, &resp.json(), false, "body")
            }
        };
    }
    let status = rec["status"].as_u64().expect("status") as u16;
    let want_mime = rec["content_type"]
        .as_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    if resp.status != status {
        return Err(format!(
            "status {}, expected {status}: {}",
            resp.status,
            &resp.text().chars().take(300).collect::<String>()
        ));
    }
    if mime != want_mime {
        return Err(format!("content type {mime:?}, expected {want_mime:?}"));
    }
    let body = &rec["body"];
    match want_mime.as_str() {
        "application/json" => json_match(body, &resp.json(), false, "body"),
        "application/octet-stream" if body.is_object() => {
            let sha = hex::encode(Sha256::digest(&resp.body));
            let got = serde_json::json!({"sha256": sha, "size": resp.body.len()});
            if &got == body {
                Ok(())
            } else {
                Err(format!("download {got}, expected {body}"))
            }
        }
        "text/plain" => {
            let want = body.as_str().expect("text body");
            if resp.text() == want {
                Ok(())
            } else {
                Err(format!("text {:?}, expected {want:?}", resp.text()))
            }
        }
        _ => Ok(()),
    }
}

#[tokio::test]
async fn every_recorded_request_of_the_old_hub_answers_the_same() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = dir.path().join("legacy/users");
    extract_tree(&tree);
    let cfg = config(dir.path());

    // Import, then import again: the second run is a no-op.
    let data = cfg.data_dir.clone();
    let t2 = tree.clone();
    let (first, second, audit_first, audit_second) = tokio::task::spawn_blocking(move || {
        let hub = hub_repo::Hub::open(&data).expect("open");
        let first = hub.import_legacy(&t2).expect("import");
        let audit_first = hub.catalog().audit_log(0, 100_000).expect("audit").len();
        let second = hub.import_legacy(&t2).expect("import again");
        let audit_second = hub.catalog().audit_log(0, 100_000).expect("audit").len();
        (first, second, audit_first, audit_second)
    })
    .await
    .expect("join");
    let mut unimportable: Vec<&str> = first.unimportable.iter().map(|(i, _)| i.as_str()).collect();
    unimportable.sort();
    assert_eq!(
        unimportable,
        [
            "weird/dangling.flist",
            "weird/loop1.flist",
            "weird/loop2.flist"
        ],
        "{:?}",
        first.unimportable
    );
    for (item, why) in &first.unimportable {
        let expected = if item.contains("dangling") {
            "dangling link: weird/missing.flist does not exist"
        } else {
            "symlink loop"
        };
        assert!(why.starts_with(expected), "{item}: {why}");
    }
    assert!(first.warnings.is_empty(), "{:?}", first.warnings);
    assert!(
        second.is_noop(),
        "second run imported {:?}",
        second.imported
    );
    assert_eq!(
        audit_first, audit_second,
        "the second run wrote to the catalog"
    );
    assert_eq!(second.unimportable.len(), 3);

    // The cluster run (`cluster_legacy.rs`): moved into PostgreSQL and SeaweedFS the way
    // `hub-server migrate` does, then served by a replica of the cluster.
    let cfg = if env!("CARGO_CRATE_NAME").starts_with("cluster") {
        let catalog = test_support::postgres::Postgres::shared().create_database("legacy");
        let store = test_support::seaweed::SeaweedServer::shared()
            .url(&format!("legacy-{}", std::process::id()));
        let data = cfg.data_dir.clone();
        let source = tokio::task::spawn_blocking(move || hub_repo::Hub::open_existing(&data))
            .await
            .expect("join")
            .expect("open the imported hub");
        let dest = hub_http::migrate::Destination {
            catalog: catalog.clone(),
            store: Some(store.clone()),
            data_dir: dir.path().join("migrated"),
        };
        let rep = hub_http::migrate::migrate(
            std::sync::Arc::new(source),
            &cfg.store_url(),
            &dest,
            |_| {},
        )
        .await
        .expect("migrate");
        assert!(rep.files.copied > 0, "{rep:?}");
        assert!(rep
            .tables
            .iter()
            .any(|t| t.table == "entries" && t.copied > 0));
        HubConfig {
            data_dir: dir.path().join("replica"),
            catalog: Some(catalog),
            store: Some(store),
            ..cfg
        }
    } else {
        cfg
    };

    // Serve it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server = hub_http::start_on(listener, cfg).await.expect("start");
    let addr = server.addr;
    let hub = server.state.hub.clone();
    let (token, _) = tokio::task::spawn_blocking(move || {
        let _ = hub
            .accounts()
            .user_add("alice", "a long test password", false);
        hub.accounts().create_token("alice", &[], 3600, None)
    })
    .await
    .expect("join")
    .expect("token");

    let records: Vec<Value> =
        serde_json::from_slice(&std::fs::read(legacy_fixture("responses.json")).expect("read"))
            .expect("responses.json");
    assert_eq!(records.len(), 370);
    let mut failures = Vec::new();
    let mut defects = 0;
    for (i, rec) in records.iter().enumerate() {
        let method = rec["method"].as_str().expect("method");
        let path = rec["path"].as_str().expect("path");
        let mut headers: Vec<(String, String)> = Vec::new();
        if let Some(h) = rec.get("request_headers").and_then(Value::as_object) {
            for (k, v) in h {
                let v = v
                    .as_str()
                    .expect("header")
                    .replace("<valid token for user alice>", &token);
                headers.push((k.clone(), v));
            }
        }
        let hdrs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let resp = raw_http::request(addr, method, path, &hdrs, b"").await;
        if rec.get("reference_defect").is_some() {
            defects += 1;
        }
        if let Err(e) = check(&records, rec, &resp) {
            failures.push(format!("#{i} {method} {path}: {e}"));
        }
    }
    assert_eq!(defects, 69);
    server.shutdown().await.expect("shutdown");
    assert!(
        failures.is_empty(),
        "{} of {} records differ:\n{}",
        failures.len(),
        records.len(),
        failures.join("\n")
    );
}
