//! `zflist push` against a real `hub-server` process: a 200 MB generated tree pushed, then
//! pushed again with one 100 KB file changed (only that file's chunk goes over the wire);
//! a push killed midway (`kill -9` of the real process) completes on the second run sending
//! only the rest; flist and OCI-layout sources.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::hub::hub_server_bin;
use test_support::HubProcess;

const ZFLIST: &str = env!("CARGO_BIN_EXE_zflist");

fn zflist_cmd(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(ZFLIST);
    c.args(args).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("ZFLIST_") {
            c.env_remove(k);
        }
    }
    c.env("XDG_CONFIG_HOME", "/nonexistent-zflist-test-config");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn zflist(args: &[&str], env: &[(&str, &str)]) -> Output {
    zflist_cmd(args, env).output().unwrap()
}

fn ok_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "zflist failed: {}\nstdout: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let env: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(env["success"], Value::Bool(true), "{env}");
    env["response"].clone()
}

/// Deterministic, incompressible bytes (xorshift64*).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// ~200 MB: 150 files of 1.3 MB, 300 small files, and `conf/changeme.bin` of 100 KB.
fn generate_tree(root: &Path) -> u64 {
    let mut total = 0u64;
    for d in 0..10 {
        let dir = root.join(format!("data/d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..15 {
            let data = noise(1000 + d * 100 + f, 1_300_000);
            total += data.len() as u64;
            fs::write(dir.join(format!("blob{f}.bin")), data).unwrap();
        }
    }
    let small = root.join("small");
    fs::create_dir_all(&small).unwrap();
    for i in 0..300u64 {
        let data = noise(50_000 + i, 4_000 + (i as usize % 20) * 1_000);
        total += data.len() as u64;
        fs::write(small.join(format!("f{i}.txt")), data).unwrap();
    }
    fs::create_dir_all(root.join("conf")).unwrap();
    let data = noise(7, 100 * 1024);
    total += data.len() as u64;
    fs::write(root.join("conf/changeme.bin"), data).unwrap();
    std::os::unix::fs::symlink("../conf/changeme.bin", root.join("small/link")).unwrap();
    total
}

fn unique_chunks(flist: &Path) -> u64 {
    let v = ok_json(&zflist(
        &["inspect", flist.to_str().unwrap()],
        &[("ZFLIST_JSON", "1")],
    ));
    v["unique_chunks"].as_u64().unwrap()
}

#[test]
fn push_sends_only_what_the_hub_lacks_and_resumes_after_a_kill() {
    let hub = HubProcess::start(&hub_server_bin(Path::new(ZFLIST)));
    let token = hub.token("alice", &[]);
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    let size = generate_tree(&tree);
    assert!(size > 195_000_000, "{size}");
    let url = hub.url();
    let env = [("ZFLIST_HUB_TOKEN", token.as_str()), ("ZFLIST_JSON", "1")];
    let tree_s = tree.to_str().unwrap();
    let v1 = work.path().join("v1.flist");
    let push_args = |name: &str, out: &Path| -> Vec<String> {
        [
            "push",
            tree_s,
            "--hub",
            &url,
            "--name",
            name,
            "-o",
            out.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };

    // 1. the first push, killed midway
    let args = push_args("app-1.flist", &v1);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = zflist_cmd(&args, &env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (n, _) = hub.chunk_count();
        if n >= 120 {
            break;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("the first push ended ({st}) before it could be killed midway ({n} chunks)");
        }
        assert!(Instant::now() < deadline, "the first push made no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500)); // requests the hub had fully received
    let (before, before_bytes) = hub.chunk_count();
    assert!(!v1.exists(), "a killed push left an flist");
    let (s, _) = hub.get("/alice/app-1.flist");
    assert_eq!(s, 404, "a killed push published something");

    // 2. run again: completes, sending only what is still missing
    let r = ok_json(&zflist(&args, &env));
    let (after, after_bytes) = hub.chunk_count();
    let total = unique_chunks(&v1);
    let sent = r["chunks_sent"].as_u64().unwrap();
    let bytes = r["bytes_sent"].as_u64().unwrap();
    assert!(before > 0 && before < total, "before {before} of {total}");
    assert_eq!(after, total, "the hub holds every chunk: {r}");
    assert_eq!(sent, total - before, "only the rest is sent: {r}");
    assert_eq!(
        bytes,
        after_bytes - before_bytes,
        "bytes sent = bytes newly stored: {r}"
    );
    assert_eq!(r["chunks_checked"].as_u64().unwrap(), total, "{r}");
    assert_eq!(r["name"], "app-1.flist");
    assert_eq!(r["url"], format!("{url}/alice/app-1.flist"));
    eprintln!(
        "first push: killed at {before}/{total} chunks; resumed sending {sent} chunks, {bytes} bytes"
    );
    let (s, _) = hub.get("/alice/app-1.flist");
    assert_eq!(s, 200);

    // 3. one 100 KB file changed: the second version sends that file's chunk only
    fs::write(tree.join("conf/changeme.bin"), noise(8, 100 * 1024)).unwrap();
    let v2 = work.path().join("v2.flist");
    let args = push_args("app-2.flist", &v2);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = ok_json(&zflist(&args, &env));
    let sent = r["chunks_sent"].as_u64().unwrap();
    let bytes = r["bytes_sent"].as_u64().unwrap();
    let (after2, after2_bytes) = hub.chunk_count();
    eprintln!("second push: {sent} chunks, {bytes} bytes sent for a {size}-byte tree");
    assert_eq!(sent, 1, "{r}");
    assert!(bytes > 100 * 1024 && bytes < 110 * 1024, "{r}");
    assert_eq!(after2, after + sent);
    assert_eq!(after2_bytes - after_bytes, bytes);

    // 4. the hub serves the new flist, with the new content, every chunk in its store
    let (s, body) = hub.get("/alice/app-2.flist");
    assert_eq!(s, 200);
    let got = work.path().join("got.flist");
    fs::write(&got, body).unwrap();
    let store = hub.store_url();
    let out = zflist(
        &["verify", got.to_str().unwrap(), "--store", &store],
        &[("ZFLIST_JSON", "1")],
    );
    ok_json(&out);
    let mnt = work.path().join("mnt");
    let mnt_s = mnt.to_str().unwrap();
    let out = zflist(&["--mnt", mnt_s, "open", got.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{out:?}");
    let out = zflist(
        &[
            "--mnt",
            mnt_s,
            "--store",
            &store,
            "cat",
            "/conf/changeme.bin",
        ],
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, noise(8, 100 * 1024));
    let out = zflist(
        &[
            "--mnt",
            mnt_s,
            "--store",
            &store,
            "cat",
            "/data/d3/blob7.bin",
        ],
        &[],
    );
    assert_eq!(out.stdout, noise(1000 + 300 + 7, 1_300_000));
    // the first version still serves the old content
    let listing = hub.get_json("/api/flist/alice");
    let names: Vec<&str> = listing
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{listing}");
    assert!(names.contains(&"app-1.flist") && names.contains(&"app-2.flist"));

    // 5. pushing the same tree again sends nothing
    let r = ok_json(&zflist(&args, &env));
    assert_eq!(r["chunks_sent"], 0, "{r}");
}

/// An existing flist (chunks read from its own store) and an OCI layout image; `--repo`
/// publishes into an organisation; errors are clear and publish nothing.
#[test]
fn push_flist_and_image_sources() {
    use test_support::registry::{Layer, LayerTar, OciLayout};
    let hub = HubProcess::start(&hub_server_bin(Path::new(ZFLIST)));
    let token = hub.token("dave", &["team"]);
    let work = tempfile::tempdir().unwrap();
    let url = hub.url();
    let env = [("ZFLIST_HUB_TOKEN", token.as_str()), ("ZFLIST_JSON", "1")];

    // an flist packed into a local store the hub cannot see
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.bin"), noise(1, 700_000)).unwrap();
    fs::write(src.join("b.txt"), b"bee\n").unwrap();
    let local = format!("dir://{}", work.path().join("local-store").display());
    let fl = work.path().join("mine.flist");
    ok_json(&zflist(
        &[
            "pack",
            src.to_str().unwrap(),
            "-o",
            fl.to_str().unwrap(),
            "--store",
            &local,
        ],
        &[("ZFLIST_JSON", "1")],
    ));
    // without access to its chunks: a clear error, nothing published
    let out = zflist(&["push", fl.to_str().unwrap(), "--hub", &url], &env);
    assert!(!out.status.success());
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["error"]["function"], "push", "{e}");
    assert_eq!(hub.get("/dave/mine.flist").0, 404);
    let r = ok_json(&zflist(
        &[
            "push",
            fl.to_str().unwrap(),
            "--hub",
            &url,
            "--store",
            &local,
            "--repo",
            "team",
        ],
        &env,
    ));
    assert_eq!(r["chunks_sent"], 3, "{r}");
    assert_eq!(r["repository"], "team");
    assert_eq!(r["url"], format!("{url}/team/mine.flist"));
    let dump = hub.get_json("/api/flist/team/mine.flist");
    assert_eq!(dump["regular"], 2, "{dump}");

    // an OCI layout image
    let layout_dir = work.path().join("layout");
    let mut layout = OciLayout::new(&layout_dir);
    let layer = LayerTar::new()
        .dir("etc", 0o755)
        .file("etc/os-release", b"ID=test\n", 0o644)
        .file("bin/big", &noise(2, 600_000), 0o755)
        .finish();
    layout.add_image(
        Some("v1"),
        "linux",
        "amd64",
        serde_json::json!({"Entrypoint": ["/bin/big"]}),
        &[Layer::gzip(&layer)],
    );
    let image = format!("oci:{}:v1", layout_dir.display());
    let r = ok_json(&zflist(
        &["push", &image, "--hub", &url, "--name", "img"],
        &env,
    ));
    assert_eq!(r["name"], "img.flist", "{r}");
    // three file chunks, plus the generated /.startup.toml
    assert_eq!(r["chunks_sent"], 4, "{r}");
    let meta = hub.get_json("/api/flist/dave/img.flist/metadata");
    assert!(meta.to_string().contains("/bin/big"), "{meta}");

    // bad sources
    let out = zflist(&["push", "alpine:3.20", "--hub", &url], &env);
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("docker://alpine:3.20"),
        "{e}"
    );
    let out = zflist(
        &["push", src.to_str().unwrap(), "--hub", &url],
        &[("ZFLIST_JSON", "1")],
    );
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["error"]["message"], "missing hub token", "{e}");
}

/// The same push in text and in JSON tells the same counts: two trees alike in shape
/// (a shared part already on the hub, a new part of the same sizes) pushed one in each mode.
/// Also: stdout holds the result only, and a token the hub does not know is named as such.
#[test]
fn push_json_counts_equal_the_text_output() {
    let hub = HubProcess::start(&hub_server_bin(Path::new(ZFLIST)));
    let token = hub.token("counter", &[]);
    let work = tempfile::tempdir().unwrap();
    let url = hub.url();
    let tree = |name: &str, new_seed: u64| {
        let root = work.path().join(name);
        fs::create_dir_all(root.join("shared")).unwrap();
        fs::create_dir_all(root.join("new")).unwrap();
        for i in 0..6 {
            fs::write(root.join(format!("shared/s{i}.bin")), noise(7 + i, 700_000)).unwrap();
        }
        for i in 0..4 {
            // Incompressible and of equal sizes: the same chunk sizes in both trees.
            fs::write(
                root.join(format!("new/n{i}.bin")),
                noise(new_seed + i, 600_000),
            )
            .unwrap();
        }
        root
    };
    let base = work.path().join("base");
    fs::create_dir_all(base.join("shared")).unwrap();
    for i in 0..6 {
        fs::write(base.join(format!("shared/s{i}.bin")), noise(7 + i, 700_000)).unwrap();
    }
    let env = [("ZFLIST_HUB_TOKEN", token.as_str())];
    let push = |src: &Path, name: &str, json: bool| {
        let mut args = vec!["push", src.to_str().unwrap(), "--hub", &url, "--name", name];
        if json {
            args.insert(0, "--json");
        }
        zflist(&args, &env)
    };
    ok_json(&push(&base, "base.flist", true));
    let text_tree = tree("t", 100);
    let json_tree = tree("j", 200);
    let text_run = push(&text_tree, "t.flist", false);
    assert!(
        text_run.status.success(),
        "{}",
        String::from_utf8_lossy(&text_run.stderr)
    );
    let text = String::from_utf8_lossy(&text_run.stdout).into_owned();
    let v = ok_json(&push(&json_tree, "j.flist", true));
    // "  chunks: C checked, S sent (B bytes), P already on the hub"
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("chunks:"))
        .unwrap_or_else(|| panic!("no chunks line: {text}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let from_json = [
        v["chunks_checked"].as_u64().unwrap(),
        v["chunks_sent"].as_u64().unwrap(),
        v["bytes_sent"].as_u64().unwrap(),
        v["chunks_already_present"].as_u64().unwrap(),
    ];
    assert_eq!(nums, from_json, "text: {line:?}, json: {v}");
    assert!(
        from_json[1] > 0 && from_json[3] > 0,
        "some sent, some present: {v}"
    );
    assert_eq!(
        from_json[0],
        from_json[1] + from_json[3],
        "checked = sent + present: {v}"
    );
    assert!(
        text.starts_with(&format!("{url}/counter/t.flist\n")) && !text.contains("note:"),
        "stdout holds the result only: {text}"
    );

    // A token the hub does not know: said so once, no repeated prefix.
    let out = zflist(
        &[
            "push",
            text_tree.to_str().unwrap(),
            "--hub",
            &url,
            "--name",
            "x.flist",
        ],
        &[("ZFLIST_HUB_TOKEN", "not-a-token-of-this-hub")],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("token not recognised or expired"), "{err}");
    assert_eq!(err.matches("zflist: push:").count(), 1, "{err}");
}
