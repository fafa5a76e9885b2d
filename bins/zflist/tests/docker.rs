//! `zflist docker` against a real `docker-registry` (with htpasswd auth) fed by `skopeo`.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use test_support::registry::{Layer, LayerTar, OciLayout, Registry};

/// Runs zflist with `stdin` fed to it and a private cache home.
fn zflist(args: &[&str], stdin: &str, cache_home: &Path) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zflist"));
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("XDG_CACHE_HOME", cache_home);
    for v in [
        "ZFLIST_MNT",
        "ZFLIST_JSON",
        "ZFLIST_PROGRESS",
        "ZFLIST_BACKEND",
    ] {
        c.env_remove(v);
    }
    let mut child = c.spawn().expect("running zflist");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn json_ok(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "zflist failed: {}\nstdout: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn docker_converts_a_private_image() {
    let reg = Registry::start_with_auth("alice", "s3cret-pw");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let mut layout = OciLayout::new(&w.join("layout"));
    let base = Layer::gzip(
        &LayerTar::new()
            .dir("bin", 0o755)
            .file("bin/app", b"#!/bin/sh\necho amd64\n", 0o755)
            .file("etc/old.conf", b"old", 0o644)
            .finish(),
    );
    let top = Layer::gzip(
        &LayerTar::new()
            .whiteout("etc/old.conf")
            .file("etc/new.conf", b"new", 0o600)
            .finish(),
    );
    let arm = Layer::gzip(
        &LayerTar::new()
            .dir("bin", 0o755)
            .file("bin/app", b"#!/bin/sh\necho arm64\n", 0o755)
            .finish(),
    );
    let config = json!({
        "Entrypoint": ["/bin/app"],
        "Cmd": ["--serve"],
        "Env": ["PATH=/bin", "MODE=prod"],
        "ExposedPorts": {"8080/tcp": {}},
        "WorkingDir": "/srv",
    });
    layout.add_image(Some("1.0"), "linux", "amd64", config.clone(), &[base, top]);
    layout.add_image(Some("1.0-arm"), "linux", "arm64", config, &[arm]);
    reg.push(layout.path(), "1.0", "team/app", false);
    reg.push(layout.path(), "1.0-arm", "team/app-arm", false);
    let image = format!("{}/team/app:1.0", reg.host());
    let store = format!("dir://{}", w.join("store").display());
    let out = w.join("app.flist");
    let out_s = out.to_str().unwrap();
    let cache = w.join("cache-home");

    // no credentials: one clear line about access, no output file
    let o = zflist(
        &["docker", &image, "-o", out_s, "--store", &store],
        "",
        &cache,
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("zflist: docker: "), "{err}");
    assert!(err.contains("denied"), "{err}");
    assert!(!out.exists());

    // wrong password: same, and the password is not echoed
    let o = zflist(
        &[
            "docker",
            &image,
            "-o",
            out_s,
            "--store",
            &store,
            "--username",
            "alice",
            "--password-stdin",
        ],
        "wrong-pw\n",
        &cache,
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("denied"), "{err}");
    assert!(!err.contains("wrong-pw"), "{err}");

    // with credentials: converts; JSON stats
    let args = [
        "docker",
        &image,
        "-o",
        out_s,
        "--store",
        &store,
        "--username",
        "alice",
        "--password-stdin",
        "--json",
    ];
    let v = json_ok(&zflist(&args, "s3cret-pw\n", &cache));
    let r = &v["response"];
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(r["platform"], "linux/amd64");
    assert_eq!(r["layers"].as_array().unwrap().len(), 2);
    assert_eq!(r["layers_downloaded"], 2);
    assert_eq!(r["layers_reused"], 0);

    // the flist: overlay of the layers, image metadata, the store as backend
    let v = json_ok(&zflist(&["inspect", "--json", out_s], "", &cache));
    let r = &v["response"];
    let paths: Vec<&str> = r["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"/bin/app"), "{paths:?}");
    assert!(paths.contains(&"/etc/new.conf"), "{paths:?}");
    assert!(paths.contains(&"/.startup.toml"), "{paths:?}");
    assert!(
        !paths.contains(&"/etc/old.conf"),
        "whiteout ignored: {paths:?}"
    );
    let md = &r["metadata"];
    assert_eq!(md["entrypoint"], json!(["/bin/app", "--serve"]), "{md}");
    assert!(md["environ"].to_string().contains("MODE"), "{md}");
    assert!(md["port"].to_string().contains("8080"), "{md}");
    // a dir:// store is not reachable by nodes: no backend is announced
    assert!(md.get("backend").is_none(), "{md}");

    // contents come back through the store
    let dest = w.join("extracted");
    let o = zflist(
        &["extract", out_s, dest.to_str().unwrap(), "--store", &store],
        "",
        &cache,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        fs::read(dest.join("bin/app")).unwrap(),
        b"#!/bin/sh\necho amd64\n"
    );
    assert_eq!(fs::read(dest.join("etc/new.conf")).unwrap(), b"new");

    // second run: every layer comes from the layer cache
    let v = json_ok(&zflist(&args, "s3cret-pw\n", &cache));
    assert_eq!(v["response"]["layers_reused"], 2, "{v}");
    assert_eq!(v["response"]["layers_downloaded"], 0, "{v}");

    // a platform the image does not have: a clear error naming what is available
    let mut a: Vec<&str> = args.to_vec();
    a.retain(|s| *s != "--json");
    a.extend(["--platform", "linux/arm64", "--no-cache"]);
    let o = zflist(&a, "s3cret-pw\n", &cache);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("linux/arm64"), "{err}");

    // unknown image: not found
    let missing = format!("{}/team/nothing:1", reg.host());
    let mut a: Vec<&str> = args.to_vec();
    a[1] = &missing;
    let o = zflist(&a, "s3cret-pw\n", &cache);
    assert!(!o.status.success());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["success"], false);
    assert!(
        v["error"].to_string().to_lowercase().contains("not found"),
        "{v}"
    );
}

#[test]
fn docker_usage_errors() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("x.flist");
    // --username without --password-stdin is refused by the argument parser
    let o = zflist(
        &[
            "docker",
            "alpine:3",
            "-o",
            out.to_str().unwrap(),
            "--username",
            "bob",
        ],
        "",
        work.path(),
    );
    assert!(!o.status.success());
    // no store
    let o = zflist(
        &["docker", "alpine:3", "-o", out.to_str().unwrap()],
        "",
        work.path(),
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--store"));
    // bad platform
    let o = zflist(
        &[
            "docker",
            "alpine:3",
            "-o",
            out.to_str().unwrap(),
            "--store",
            "dir:///tmp/none",
            "--platform",
            "linux",
        ],
        "",
        work.path(),
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid platform"));
    assert!(!out.exists());
}
