//! Session commands on real files: the reference fixtures, a real `dir://` chunk store, real
//! local trees.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use flist_format::{Flist, Kind};
use serde_json::Value;
use sha2::{Digest, Sha256};
use test_support::fixture;
use zflist_core::{commands, metadata, MetadataCmd, NoProgress, Session, StoreConfig};

/// Copies the fixture chunks into a `dir://` store layout `<root>/<hex[0..2]>/<hex>`.
fn fill_dir_store(root: &Path) -> usize {
    let mut n = 0;
    for e in fs::read_dir(fixture("chunks")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        let dir = root.join(&name[..2]);
        fs::create_dir_all(&dir).unwrap();
        fs::copy(e.path(), dir.join(&name)).unwrap();
        n += 1;
    }
    n
}

fn dir_store(root: &Path) -> StoreConfig {
    StoreConfig::with_stores([format!("dir://{}", root.display())])
}

fn reference_response(name: &str) -> Value {
    let v: Value = serde_json::from_slice(&fs::read(fixture(name)).unwrap()).unwrap();
    v["response"].clone()
}

fn open_fixture(mnt: &Path) -> Session {
    let s = Session::new(mnt);
    s.open(&fixture("fixture.flist")).unwrap();
    s
}

#[test]
fn find_on_fixture_equals_reference_output() {
    let mnt = tempfile::tempdir().unwrap();
    let s = open_fixture(mnt.path());
    let r = commands::find(&s).unwrap();
    assert_eq!(r.json, reference_response("fixture.zflist-find.json"));
    assert!(
        r.text.starts_with("/dir\n/dir/sub\n/dir/sub/deep.txt\n"),
        "{}",
        &r.text[..80]
    );
    assert!(r.text.contains("Regular files  : 312"));
}

#[test]
fn init_merge_merge_commit_equals_reference_merge() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Session::new(tmp.path().join("mnt"));
    s.init().unwrap();
    commands::merge(&s, &fixture("merge-a.flist")).unwrap();
    commands::merge(&s, &fixture("merge-b.flist")).unwrap();
    let out = tmp.path().join("ab.flist");
    s.commit(&out).unwrap();

    let s2 = Session::new(tmp.path().join("mnt2"));
    s2.open(&out).unwrap();
    assert_eq!(
        commands::find(&s2).unwrap().json,
        reference_response("merge-ab.zflist-find.json")
    );
    // A's tool wins, B's chunk key is not the one kept
    let a = Flist::open(fixture("merge-a.flist")).unwrap();
    let merged = Flist::open(&out).unwrap();
    let key = |f: &Flist| match &f.tree.node(f.tree.lookup("/bin/tool").unwrap()).kind {
        Kind::File { blocks, .. } => blocks.clone(),
        _ => panic!("not a file"),
    };
    assert_eq!(key(&merged), key(&a));
}

#[test]
fn cat_fixture_files_through_dir_store_match_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let store_root = tmp.path().join("store");
    assert_eq!(fill_dir_store(&store_root), 279);
    let s = open_fixture(&tmp.path().join("mnt"));
    let stores = dir_store(&store_root);
    let manifest: Value =
        serde_json::from_slice(&fs::read(fixture("fixture.manifest.json")).unwrap()).unwrap();
    let mut checked = 0;
    for e in manifest.as_array().unwrap() {
        if e["type"] != "file" {
            continue;
        }
        let path = e["path"].as_str().unwrap();
        let mut out = Vec::new();
        commands::cat(&s, &stores, path, &mut out).unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(&out)),
            e["sha256"].as_str().unwrap(),
            "{path}"
        );
        checked += 1;
    }
    assert_eq!(checked, 312);
    // get writes the same bytes to a local file
    let dest = tmp.path().join("hello.txt");
    commands::get(&s, &stores, "/hello.txt", &dest, &NoProgress).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), b"hello world\n");
}

#[test]
fn cat_without_any_store_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Session::new(tmp.path());
    s.init().unwrap();
    let f = tmp.path().join("f");
    fs::write(&f, b"data").unwrap();
    commands::put(&s, &StoreConfig::default(), &f, "/f", &NoProgress).unwrap();
    let err = commands::cat(&s, &StoreConfig::default(), "/f", &mut Vec::new()).unwrap_err();
    assert_eq!(err.function, "cat");
    assert!(
        err.message().contains("no chunk store"),
        "{}",
        err.message()
    );
}

#[test]
fn check_uses_exists_and_reports_a_deleted_chunk() {
    let tmp = tempfile::tempdir().unwrap();
    let store_root = tmp.path().join("store");
    fill_dir_store(&store_root);
    let s = open_fixture(&tmp.path().join("mnt"));
    let stores = dir_store(&store_root);
    let ok = commands::check(&s, &stores, &NoProgress).unwrap();
    assert!(ok.failure.is_none(), "{:?}", ok.failure);
    assert_eq!(ok.json["failure"], 0);
    assert_eq!(ok.json["chunks"], 274);

    // remove the chunk of /hello.txt
    let victim = "a5147f6e7cac3a7076f942cb5e00d896";
    fs::remove_file(store_root.join(&victim[..2]).join(victim)).unwrap();
    let bad = commands::check(&s, &stores, &NoProgress).unwrap();
    assert!(bad.failure.is_some());
    assert_eq!(bad.json["missing"], serde_json::json!([victim]));
    assert_eq!(bad.json["failure"], 1);
    assert!(bad.text.contains("/hello.txt"), "{}", bad.text);
}

#[test]
fn chunks_lists_every_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open_fixture(tmp.path());
    let r = commands::chunks_cmd(&s).unwrap();
    assert_eq!(r.json["count"], 276);
    assert_eq!(r.json["unique"], 274);
    assert_eq!(r.text.lines().count(), 276);
}

#[test]
fn metadata_setters_give_the_reference_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Session::new(tmp.path().join("mnt"));
    s.init().unwrap();
    let readme = tmp.path().join("README.md");
    fs::write(&readme, "# Fixture\nA test flist.\n1").unwrap();
    let cmds = [
        MetadataCmd::Backend {
            host: Some("127.0.0.1".into()),
            port: Some(9901),
            socket: None,
            namespace: None,
            password: None,
            reset: false,
        },
        MetadataCmd::Entrypoint {
            argv: vec!["/bin/sh".into(), "-c".into(), "echo hi".into()],
            line: None,
            reset: false,
        },
        MetadataCmd::Environ {
            name: Some("PATH".into()),
            value: Some("/usr/bin:/bin".into()),
            unset: false,
            reset: false,
        },
        MetadataCmd::Environ {
            name: Some("LANG".into()),
            value: Some("C.UTF-8".into()),
            unset: false,
            reset: false,
        },
        MetadataCmd::Port {
            protocol: "tcp".into(),
            port_in: Some(80),
            port_out: Some(8080),
            unset: false,
            reset: false,
        },
        MetadataCmd::Volume {
            target: Some("/data".into()),
            host: Some("/mnt/data".into()),
            unset: false,
            reset: false,
        },
        MetadataCmd::Readme {
            import: Some(readme),
            license: Some("Apache-2.0".into()),
            reset: false,
        },
        MetadataCmd::set("custom-key", "some-value"),
    ];
    for c in &cmds {
        metadata::metadata(&s, Some(c)).unwrap();
    }
    let ours = s.load("test").unwrap().metadata;
    let reference = Flist::open(fixture("fixture.flist")).unwrap().metadata;
    for (k, v) in reference.iter() {
        assert_eq!(ours.get(k), Some(v), "metadata {k}");
    }
    assert_eq!(ours.len(), reference.len());

    // get: raw text, and parsed JSON in the response
    let r = metadata::metadata(&s, Some(&MetadataCmd::get("port"))).unwrap();
    assert_eq!(r.text, "{\"tcp/80\": 8080}\n");
    assert_eq!(
        r.json,
        serde_json::json!({"metadata": "port", "value": {"tcp/80": 8080}})
    );
    let r = metadata::metadata(&s, Some(&MetadataCmd::get("custom-key"))).unwrap();
    assert_eq!(r.json["value"], "some-value");
    let list = metadata::metadata(&s, None).unwrap();
    assert_eq!(list.json.as_array().unwrap().len(), 7);

    // unset / reset
    metadata::metadata(
        &s,
        Some(&MetadataCmd::Environ {
            name: Some("PATH".into()),
            value: None,
            unset: true,
            reset: false,
        }),
    )
    .unwrap();
    metadata::metadata(
        &s,
        Some(&MetadataCmd::Port {
            protocol: "tcp".into(),
            port_in: None,
            port_out: None,
            unset: false,
            reset: true,
        }),
    )
    .unwrap();
    let md = s.load("test").unwrap().metadata;
    assert_eq!(md.get("environ"), Some("{\"LANG\": \"C.UTF-8\"}"));
    assert_eq!(md.get("port"), None);
    let err = metadata::metadata(&s, Some(&MetadataCmd::get("port"))).unwrap_err();
    assert!(err.message().contains("metadata not found"));
    let err = metadata::metadata(
        &s,
        Some(&MetadataCmd::Environ {
            name: None,
            value: Some("x".into()),
            unset: false,
            reset: false,
        }),
    )
    .unwrap_err();
    assert!(err.message().contains("--name"), "{}", err.message());
}

/// A local tree with a file, a nested dir, a symlink and an executable.
fn local_tree(root: &Path) {
    fs::create_dir_all(root.join("etc/conf.d")).unwrap();
    fs::write(root.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
    fs::write(root.join("etc/conf.d/app.conf"), vec![b'x'; 700_000]).unwrap();
    fs::write(root.join("run.sh"), b"#!/bin/sh\necho run\n").unwrap();
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("etc/hosts", root.join("hosts-link")).unwrap();
}

#[test]
fn edit_flow_commit_and_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let store_root = tmp.path().join("store");
    let stores = dir_store(&store_root);
    let src = tmp.path().join("src");
    local_tree(&src);
    let single = tmp.path().join("single.txt");
    fs::write(&single, b"just one file\n").unwrap();

    let s = Session::new(tmp.path().join("mnt"));
    s.init().unwrap();
    assert!(s.init().is_err(), "init twice must fail");
    commands::mkdir(&s, "/opt").unwrap();
    commands::mkdir(&s, "/opt/app").unwrap();
    let stats = commands::putdir(&s, &stores, &src, "/opt/app", &NoProgress).unwrap();
    assert_eq!(stats.json["regular"], 3);
    assert_eq!(stats.json["directory"], 2);
    assert_eq!(stats.json["symlink"], 1);
    assert_eq!(stats.json["fullsize"], 20 + 700_000 + 19);
    commands::put(&s, &stores, &single, "/opt", &NoProgress).unwrap(); // into a directory: keeps its name
    commands::put(&s, &stores, &single, "/renamed.txt", &NoProgress).unwrap(); // new name
    commands::chmod(&s, "600", "/opt/single.txt").unwrap();
    commands::chmod(&s, "4755", "/opt/app/run.sh").unwrap();
    commands::rm(&s, "/renamed.txt").unwrap();
    commands::mkdir(&s, "/tmp").unwrap();
    commands::mkdir(&s, "/tmp/x").unwrap();
    commands::rmdir(&s, "/tmp").unwrap();
    metadata::metadata(&s, Some(&MetadataCmd::set("hello", "world"))).unwrap();

    // refusals
    assert!(commands::rm(&s, "/opt")
        .unwrap_err()
        .message()
        .contains("is a directory"));
    assert!(commands::rmdir(&s, "/").is_err());
    assert!(commands::rmdir(&s, "/opt/single.txt")
        .unwrap_err()
        .message()
        .contains("not a directory"));
    assert!(commands::mkdir(&s, "/opt")
        .unwrap_err()
        .message()
        .contains("exists"));
    assert!(commands::mkdir(&s, "/nope/x")
        .unwrap_err()
        .message()
        .contains("parent"));
    assert!(commands::chmod(&s, "999", "/opt").is_err());
    assert!(commands::rm(&s, "/missing")
        .unwrap_err()
        .message()
        .contains("no such file"));

    let out = tmp.path().join("edited.flist");
    s.commit(&out).unwrap();
    s.close().unwrap();
    assert!(!s.is_open());
    assert!(s.close().is_err());

    let s2 = Session::new(tmp.path().join("mnt2"));
    s2.open(&out).unwrap();
    let find = commands::find(&s2).unwrap();
    let paths: Vec<&str> = find.json["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/opt",
            "/opt/app",
            "/opt/app/etc",
            "/opt/app/etc/conf.d",
            "/opt/app/etc/conf.d/app.conf",
            "/opt/app/etc/hosts",
            "/opt/app/hosts-link",
            "/opt/app/run.sh",
            "/opt/single.txt",
        ]
    );
    let st = commands::stat(&s2, "/opt/single.txt").unwrap();
    assert_eq!(st.json["mode"], 0o100600);
    assert_eq!(st.json["size"], 14);
    assert_eq!(
        commands::stat(&s2, "/opt/app/run.sh").unwrap().json["mode"],
        0o104755
    );
    assert_eq!(
        commands::stat(&s2, "/opt/app/hosts-link").unwrap().json["linkto"],
        "etc/hosts"
    );
    let big = commands::stat(&s2, "/opt/app/etc/conf.d/app.conf").unwrap();
    assert_eq!(big.json["chunks"].as_array().unwrap().len(), 2);
    assert_eq!(
        metadata::metadata(&s2, Some(&MetadataCmd::get("hello")))
            .unwrap()
            .text,
        "world\n"
    );

    // contents came through the store
    let mut out_bytes = Vec::new();
    commands::cat(&s2, &stores, "/opt/app/etc/conf.d/app.conf", &mut out_bytes).unwrap();
    assert_eq!(out_bytes, vec![b'x'; 700_000]);
    let mut out_bytes = Vec::new();
    commands::cat(&s2, &stores, "/opt/single.txt", &mut out_bytes).unwrap();
    assert_eq!(out_bytes, b"just one file\n");

    // ls of a directory
    let ls = commands::ls(&s2, "/opt/app").unwrap();
    let names: Vec<&str> = ls
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["etc", "hosts-link", "run.sh"]);
    // setuid shown like ls -l
    assert!(ls.text.contains("-rwsr-xr-x root"), "{}", ls.text);
}

#[test]
fn put_replaces_an_existing_file() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Session::new(tmp.path().join("mnt"));
    s.init().unwrap();
    let f = tmp.path().join("f");
    fs::write(&f, b"one").unwrap();
    commands::put(&s, &StoreConfig::default(), &f, "/f", &NoProgress).unwrap();
    fs::write(&f, b"second version").unwrap();
    commands::put(&s, &StoreConfig::default(), &f, "/f", &NoProgress).unwrap();
    let r = commands::ls(&s, "/").unwrap();
    assert_eq!(r.json.as_array().unwrap().len(), 1);
    assert_eq!(r.json[0]["size"], 14);
}

#[test]
fn commands_without_a_session_fail_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Session::new(tmp.path());
    let err = commands::ls(&s, "/").unwrap_err();
    assert_eq!(err.function, "ls");
    assert!(
        err.message().contains("no flist is open"),
        "{}",
        err.message()
    );
    let err = s.open(&tmp.path().join("missing.flist")).unwrap_err();
    assert_eq!(err.function, "open");
    assert!(err.message().contains("missing.flist"), "{}", err.message());
    assert!(!s.is_open(), "a failed open leaves no session behind");
}

#[test]
fn putdir_over_existing_content_replaces_files_and_merges_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Session::new(tmp.path().join("mnt"));
    s.init().unwrap();
    let first = tmp.path().join("first");
    fs::create_dir_all(first.join("etc")).unwrap();
    fs::write(first.join("etc/keep.conf"), b"keep").unwrap();
    fs::write(first.join("etc/replace.conf"), b"old").unwrap();
    fs::write(first.join("thing"), b"a file that becomes a directory").unwrap();
    let second = tmp.path().join("second");
    fs::create_dir_all(second.join("etc")).unwrap();
    fs::create_dir_all(second.join("thing")).unwrap();
    fs::write(second.join("etc/replace.conf"), b"new!").unwrap();
    fs::write(second.join("thing/inside"), b"x").unwrap();
    fs::set_permissions(second.join("etc"), fs::Permissions::from_mode(0o750)).unwrap();

    let none = StoreConfig::default();
    commands::putdir(&s, &none, &first, "/", &NoProgress).unwrap();
    commands::putdir(&s, &none, &second, "/", &NoProgress).unwrap();
    let t = s.load("test").unwrap().tree;
    let size = |p: &str| t.node(t.lookup(p).unwrap()).kind.size();
    assert_eq!(size("/etc/keep.conf"), 4);
    assert_eq!(size("/etc/replace.conf"), 4);
    assert!(t.node(t.lookup("/thing").unwrap()).kind.is_dir());
    assert_eq!(size("/thing/inside"), 1);
    assert_eq!(t.node(t.lookup("/etc").unwrap()).meta.mode, 0o750);
    assert_eq!(t.len(), 6);
    // putdir into a missing directory, or of a file, is refused
    assert!(commands::putdir(&s, &none, &first, "/missing", &NoProgress).is_err());
    assert!(commands::putdir(&s, &none, &first.join("thing"), "/", &NoProgress).is_err());
}
