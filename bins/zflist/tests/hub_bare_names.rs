//! Flist names without `.flist` on every write route, as people type them: our `zflist hub`
//! (alice) and the raw requests of the reference C client, names pasted into paths as typed
//! (bob), against a real `hub-server`. The old hub appended `.flist` to every flist name of
//! every request; the final listings are compared, whole, with what it would list, and
//! `/light` of a crosslink shows the raw link it stored (`../repo/name.flist`), even inside
//! its own repository.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::fs;
use std::path::Path;

use common::{stdout_ok, zflist_with};
use serde_json::{json, Value};
use test_support::archive::{gzip, RawTar};
use test_support::hub::hub_server_bin;
use test_support::HubProcess;

fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut t = RawTar::new();
    for (name, data) in files {
        t.file(name, data);
    }
    gzip(&t.finish())
}

/// `zflist hub <args>` as the holder of `token`; must succeed.
fn zhub(hub: &HubProcess, home: &Path, token: &str, args: &[&str]) -> String {
    let mut full = vec!["hub"];
    full.extend_from_slice(args);
    let url = hub.url();
    let home = home.to_str().unwrap();
    let out = zflist_with(
        &full,
        &[
            ("ZFLIST_HUB", url.as_str()),
            ("ZFLIST_HUB_TOKEN", token),
            ("HOME", home),
        ],
    );
    stdout_ok(&out)
}

/// The reference client: `GET /api/flist/me` must answer its shape, then the request with
/// the name(s) pasted raw; success is 200.
fn reference(hub: &HubProcess, token: &str, method: &str, path: &str, body: Option<&[u8]>) {
    let auth = format!("Bearer {token}");
    let base = [
        ("User-Agent", "zflist/2.3.0"),
        ("Authorization", auth.as_str()),
    ];
    let (s, me) = hub.request("GET", "/api/flist/me", &base, b"");
    assert_eq!(s, 200);
    let me: Value = serde_json::from_slice(&me).unwrap();
    assert_eq!(me["payload"]["username"], json!("bob"));
    let mut headers = base.to_vec();
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let (s, answer) = hub.request(method, path, &headers, body.unwrap_or_default());
    assert_eq!(
        s,
        200,
        "{method} {path}: {}",
        String::from_utf8_lossy(&answer)
    );
}

/// `hub upload <file>.tar.gz` as the reference sends it.
fn reference_upload(hub: &HubProcess, token: &str, given: &str, data: &[u8]) -> Value {
    let boundary = "------------------------zflistbarenames";
    let file = given.rsplit('/').next().unwrap();
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let auth = format!("Bearer {token}");
    let ct = format!("multipart/form-data; boundary={boundary}");
    let (s, answer) = hub.request(
        "POST",
        "/api/flist/me/upload",
        &[
            ("User-Agent", "zflist/2.3.0"),
            ("Authorization", &auth),
            ("Content-Type", &ct),
            ("X-Original-Name", given),
        ],
        &body,
    );
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&answer));
    serde_json::from_slice(&answer).unwrap()
}

/// A listing with the times replaced by `0` (they come from the clock) after checking
/// that they are there.
fn listing(hub: &HubProcess, path: &str) -> Value {
    let mut v = hub.get_json(path);
    for e in v.as_array_mut().unwrap() {
        for k in ["updated", "linktime"] {
            if let Some(t) = e.get_mut(k) {
                assert!(t.as_i64().is_some_and(|t| t > 0), "{path}: {k} in {t}");
                *t = json!(0);
            }
        }
    }
    v
}

/// `"12.34 KB"` of the file `path` serves.
fn size_of(hub: &HubProcess, path: &str) -> String {
    let (s, body) = hub.get(path);
    assert_eq!(s, 200, "{path}");
    format!("{:.2} KB", body.len() as f64 / 1024.0)
}

#[test]
fn bare_names_on_every_write_route() {
    let hub = HubProcess::start(&hub_server_bin(Path::new(common::ZFLIST)));
    let alice = hub.token("alice", &[]);
    let bob = hub.token("bob", &[]);
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    fs::create_dir_all(&home).unwrap();

    // --- our zflist hub, as alice, every name bare ------------------------------------
    let tgz = work.path().join("app.tar.gz");
    fs::write(
        &tgz,
        tar_gz(&[("etc/motd", b"hello\n"), ("bin/app", &[7u8; 3000])]),
    )
    .unwrap();
    zhub(&hub, &home, &alice, &["upload", tgz.to_str().unwrap()]);
    zhub(&hub, &home, &alice, &["rename", "app", "app2"]);
    zhub(&hub, &home, &alice, &["symlink", "app2", "lnk"]);
    zhub(&hub, &home, &alice, &["promote", "alice/app2", "cp"]);
    zhub(
        &hub,
        &home,
        &alice,
        &["crosslink", "base:latest", "alice", "app2"],
    );
    zhub(&hub, &home, &alice, &["tag", "v1", "app", "alice", "app2"]);
    zhub(
        &hub,
        &home,
        &alice,
        &["tag", "v1", "cp", "alice", "cp.flist"],
    );
    zhub(&hub, &home, &alice, &["untag", "v1", "cp", "alice", "cp"]);
    zhub(&hub, &home, &alice, &["crosstag", "stable", "alice", "v1"]);
    zhub(
        &hub,
        &home,
        &alice,
        &["merge", "merged", "alice/app2", "alice/cp"],
    );
    zhub(&hub, &home, &alice, &["delete", "cp"]);
    // readlink: the raw link; a crosslink into its own repository keeps its `../alice/`
    assert_eq!(
        zhub(&hub, &home, &alice, &["readlink", "alice/base:latest"]),
        "../alice/app2.flist\n"
    );
    assert_eq!(
        zhub(&hub, &home, &alice, &["readlink", "alice/lnk"]),
        "app2.flist\n"
    );
    assert_eq!(
        zhub(&hub, &home, &alice, &["taglink", "alice/stable"]),
        "alice/tags/v1\n"
    );
    let light = hub.get_json("/api/flist/alice/base:latest.flist/light");
    assert_eq!(light["target"], json!("../alice/app2.flist"), "{light}");

    // --- the reference client's raw requests, as bob ------------------------------------
    let tool = tar_gz(&[("usr/bin/tool", b"#!/bin/sh\necho tool\n")]);
    let up = reference_upload(&hub, &bob, "build/tool.tar.gz", &tool);
    assert_eq!(up["payload"]["name"], json!("tool.flist"), "{up}");
    // hub symlink tool current
    reference(&hub, &bob, "GET", "/api/flist/me/tool/link/current", None);
    // hub promote alice/app2 app
    reference(
        &hub,
        &bob,
        "GET",
        "/api/flist/me/promote/alice/app2/app",
        None,
    );
    // hub rename app app:1.0
    reference(&hub, &bob, "GET", "/api/flist/me/app/rename/app:1.0", None);
    // hub crosslink self bob tool
    reference(
        &hub,
        &bob,
        "GET",
        "/api/flist/me/self/crosslink/bob/tool",
        None,
    );
    // hub tag rel app alice app2; hub tag rel tool bob tool; hub untag rel tool bob tool
    reference(
        &hub,
        &bob,
        "GET",
        "/api/flist/me/rel/app/tag/alice/app2",
        None,
    );
    reference(
        &hub,
        &bob,
        "GET",
        "/api/flist/me/rel/tool/tag/bob/tool",
        None,
    );
    reference(
        &hub,
        &bob,
        "DELETE",
        "/api/flist/me/rel/tool/tag/bob/tool",
        None,
    );
    // hub crosstag latest alice v1 (a taglink name stays as given)
    reference(
        &hub,
        &bob,
        "GET",
        "/api/flist/me/latest/crosstag/alice/v1",
        None,
    );
    // hub merge all bob/tool alice/app2
    reference(
        &hub,
        &bob,
        "POST",
        "/api/flist/me/merge/all",
        Some(br#"["bob/tool","alice/app2"]"#),
    );
    // hub delete current (the link), hub delete latest (no latest.flist: the taglink)
    reference(&hub, &bob, "DELETE", "/api/flist/me/current", None);
    reference(&hub, &bob, "DELETE", "/api/flist/me/latest", None);
    let light = hub.get_json("/api/flist/bob/self/light");
    assert_eq!(light["target"], json!("../bob/tool.flist"), "{light}");

    // Validation is unchanged: `..`, NUL, control characters are refused, bare or not.
    let auth = format!("Bearer {bob}");
    for path in [
        "/api/flist/me/tool/link/..",
        "/api/flist/me/tool/link/a%00b",
        "/api/flist/me/tool/rename/a%0Ab",
        "/api/flist/me/promote/alice/app2/..",
    ] {
        let (s, body) = hub.request("GET", path, &[("Authorization", &auth)], b"");
        assert_eq!(s, 400, "{path}: {}", String::from_utf8_lossy(&body));
    }
    let (s, _) = hub.request(
        "POST",
        "/api/flist/me/merge/x",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        br#"["bob/..","alice/app2"]"#,
    );
    assert_eq!(s, 400);

    // --- what the old hub would list -----------------------------------------------------
    let app2 = size_of(&hub, "/alice/app2.flist");
    let merged = size_of(&hub, "/alice/merged.flist");
    assert_eq!(
        listing(&hub, "/api/flist/alice"),
        json!([
            {"name": "v1", "size": "0 KB", "updated": 0, "type": "tag"},
            {"name": "app2.flist", "size": app2, "updated": 0, "type": "regular"},
            {"name": "base:latest.flist", "size": app2, "updated": 0, "linktime": 0,
             "type": "symlink", "target": "alice/app2.flist"},
            {"name": "lnk.flist", "size": app2, "updated": 0, "linktime": 0,
             "type": "symlink", "target": "app2.flist"},
            {"name": "merged.flist", "size": merged, "updated": 0, "type": "regular"},
            {"name": "stable", "size": "4.00 KB", "updated": 0, "linktime": 0,
             "type": "taglink", "target": "alice/tags/v1"},
        ])
    );
    assert_eq!(
        listing(&hub, "/api/flist/alice/tags/v1"),
        json!([{"name": "app.flist", "size": app2, "updated": 0, "linktime": 0,
                "type": "symlink", "target": "alice/app2.flist"}])
    );
    let tool = size_of(&hub, "/bob/tool.flist");
    let all = size_of(&hub, "/bob/all.flist");
    assert_eq!(
        listing(&hub, "/api/flist/bob"),
        json!([
            {"name": "rel", "size": "0 KB", "updated": 0, "type": "tag"},
            {"name": "all.flist", "size": all, "updated": 0, "type": "regular"},
            {"name": "app:1.0.flist", "size": app2, "updated": 0, "type": "regular"},
            {"name": "self.flist", "size": tool, "updated": 0, "linktime": 0,
             "type": "symlink", "target": "bob/tool.flist"},
            {"name": "tool.flist", "size": tool, "updated": 0, "type": "regular"},
        ])
    );
    assert_eq!(
        listing(&hub, "/api/flist/bob/tags/rel"),
        json!([{"name": "app.flist", "size": app2, "updated": 0, "linktime": 0,
                "type": "symlink", "target": "alice/app2.flist"}])
    );
    // the merges hold their sources' files
    let dump = hub.get_json("/api/flist/bob/all.flist");
    let paths: Vec<&str> = dump["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    for p in ["/usr/bin/tool", "/etc/motd", "/bin/app"] {
        assert!(paths.contains(&p), "{p} not in {paths:?}");
    }
}
