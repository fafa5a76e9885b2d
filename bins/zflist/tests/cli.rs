//! The real `zflist` binary against the reference fixtures, real `dir://` stores and a real
//! `redis-server` and a real 0-db.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;
use common::{p, stdout_ok as ok, zflist_with as zflist};

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use sha2::{Digest, Sha256};
use test_support::{fixture, NsConfig, RedisServer, ZdbServer};

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// Asserts a failure printed exactly one line on stderr (starting `zflist: <function>:`)
/// and nothing on stdout.
fn one_line_error(out: &Output, function: &str) -> String {
    assert!(!out.status.success(), "expected a failure");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.lines().count(), 1, "stderr: {err:?}");
    assert!(
        err.starts_with(&format!("zflist: {function}: ")),
        "stderr: {err:?}"
    );
    err
}

fn reference(name: &str) -> Value {
    serde_json::from_slice(&fs::read(fixture(name)).unwrap()).unwrap()
}

fn fill_dir_store(root: &Path) {
    for e in fs::read_dir(fixture("chunks")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        let dir = root.join(&name[..2]);
        fs::create_dir_all(&dir).unwrap();
        fs::copy(e.path(), dir.join(&name)).unwrap();
    }
}

#[test]
fn json_find_on_fixture_equals_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    // reference form: zflist <temporary-point> <action> ...
    ok(&zflist(
        &[p(&mnt), "open", p(&fixture("fixture.flist"))],
        &[],
    ));
    let out = zflist(&["find"], &[("ZFLIST_MNT", p(&mnt)), ("ZFLIST_JSON", "1")]);
    ok(&out);
    assert_eq!(json_of(&out), reference("fixture.zflist-find.json"));
    // and the text form, action names case-insensitive
    let text = ok(&zflist(&[p(&mnt), "FIND"], &[]));
    assert_eq!(text.lines().filter(|l| l.starts_with('/')).count(), 322);
}

#[test]
fn init_merge_merge_commit_via_binary_equals_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("m");
    let env = [("ZFLIST_MNT", p(&mnt)), ("ZFLIST_JSON", "1")];
    let out_flist = tmp.path().join("ab.flist");
    for args in [
        vec!["init"],
        vec!["merge", p(&fixture("merge-a.flist"))],
        vec!["merge", p(&fixture("merge-b.flist"))],
        vec!["commit", p(&out_flist)],
        vec!["close"],
        vec!["open", p(&out_flist)],
    ] {
        let out = zflist(&args, &env);
        ok(&out);
        assert_eq!(
            json_of(&out),
            serde_json::json!({"success": true, "error": null, "response": {}}),
            "{args:?}"
        );
    }
    let out = zflist(&["find"], &env);
    assert_eq!(json_of(&out), reference("merge-ab.zflist-find.json"));
}

#[test]
fn session_flow_via_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    let store = tmp.path().join("store");
    let backend = format!("dir://{}", store.display());
    let env = [
        ("ZFLIST_MNT", p(&mnt)),
        ("ZFLIST_BACKEND", backend.as_str()),
    ];
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("sub/data.bin"), vec![7u8; 600_000]).unwrap();
    fs::write(src.join("top.txt"), b"top\n").unwrap();
    let single = tmp.path().join("note.txt");
    fs::write(&single, b"a note\n").unwrap();
    let readme = tmp.path().join("README.md");
    fs::write(&readme, "# Fixture\nA test flist.\n1").unwrap();

    let run = |args: &[&str]| ok(&zflist(args, &env));
    run(&["init"]);
    run(&["mkdir", "/srv"]);
    run(&["putdir", p(&src), "/srv"]);
    run(&["put", p(&single), "/srv"]);
    run(&["put", p(&single), "/gone.txt"]);
    run(&["rm", "/gone.txt"]);
    run(&["mkdir", "/tmp"]);
    run(&["rmdir", "/tmp"]);
    run(&["chmod", "700", "/srv/sub"]);
    run(&[
        "metadata",
        "backend",
        "--host",
        "127.0.0.1",
        "--port",
        "9901",
    ]);
    run(&["metadata", "entrypoint", "--", "/bin/sh", "-c", "echo hi"]);
    run(&[
        "metadata",
        "environ",
        "--name",
        "PATH",
        "--value",
        "/usr/bin:/bin",
    ]);
    run(&[
        "metadata", "environ", "--name", "LANG", "--value", "C.UTF-8",
    ]);
    run(&["metadata", "port", "--in", "80", "--out", "8080"]);
    run(&[
        "metadata",
        "volume",
        "--target",
        "/data",
        "--host",
        "/mnt/data",
    ]);
    run(&[
        "metadata",
        "readme",
        "--import",
        p(&readme),
        "--license",
        "Apache-2.0",
    ]);
    run(&["metadata", "custom-key", "some-value"]);
    assert_eq!(run(&["metadata", "custom-key"]), "some-value\n");
    let out = zflist(&["metadata", "environ"], &[env[0], ("ZFLIST_JSON", "1")]);
    assert_eq!(
        json_of(&out)["response"],
        serde_json::json!({"metadata": "environ", "value": {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}})
    );
    let committed = tmp.path().join("out.flist");
    run(&["commit", p(&committed)]);
    run(&["close"]);

    // open the result in another temporary point
    let mnt2 = tmp.path().join("mnt2");
    let env2 = [
        ("ZFLIST_MNT", p(&mnt2)),
        ("ZFLIST_BACKEND", backend.as_str()),
    ];
    ok(&zflist(&["open", p(&committed)], &env2));
    let out = zflist(&["find"], &[env2[0], ("ZFLIST_JSON", "1")]);
    let paths: Vec<String> = json_of(&out)["response"]["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        paths,
        [
            "/srv",
            "/srv/sub",
            "/srv/sub/data.bin",
            "/srv/top.txt",
            "/srv/note.txt"
        ]
    ); // put appends
    let st = json_of(&zflist(
        &["stat", "/srv/sub"],
        &[env2[0], ("ZFLIST_JSON", "1")],
    ));
    assert_eq!(st["response"]["mode"], 0o40700);
    // same metadata bytes as the reference tool wrote for the same settings
    let ours = flist_format_metadata(&committed);
    let theirs = flist_format_metadata(&fixture("fixture.flist"));
    assert_eq!(ours, theirs);
    // contents through the backend
    let cat = zflist(&["cat", "/srv/sub/data.bin"], &env2);
    assert!(cat.status.success());
    assert_eq!(cat.stdout, vec![7u8; 600_000]);
    let check = zflist(&["check"], &env2);
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("0 missing"),
        "{check:?}"
    );
}

/// The metadata table of an flist as key → raw value, read by inspecting with `--json`.
fn flist_format_metadata(flist: &Path) -> BTreeMap<String, Value> {
    let out = zflist(&["inspect", "--json", p(flist)], &[]);
    let v = json_of(&out);
    v["response"]["metadata"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn cat_fixture_file_through_dir_store() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    fill_dir_store(&store);
    let mnt = tmp.path().join("mnt");
    ok(&zflist(
        &["--mnt", p(&mnt), "open", p(&fixture("fixture.flist"))],
        &[],
    ));
    let url = format!("dir://{}", store.display());
    let manifest = reference("fixture.manifest.json");
    for path in ["/big.bin", "/text.log", "/ünïcødé name.txt", "/empty"] {
        let out = zflist(&["--mnt", p(&mnt), "--store", &url, "cat", path], &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want = manifest
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["path"] == path)
            .unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(&out.stdout)),
            want["sha256"].as_str().unwrap(),
            "{path}"
        );
    }
    // the fixture's own backend metadata points at a 0-db that is not running: a clear error
    let out = zflist(&["--mnt", p(&mnt), "cat", "/hello.txt"], &[]);
    one_line_error(&out, "cat");
}

/// Type, permissions, size, content hash and link target of every path below `root`.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let md = fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let desc = if md.is_dir() {
                stack.push(path.clone());
                format!("dir {:o}", md.mode() & 0o7777)
            } else if md.file_type().is_symlink() {
                format!("link {}", fs::read_link(&path).unwrap().display())
            } else {
                format!(
                    "file {:o} {} {}",
                    md.mode() & 0o7777,
                    md.len(),
                    hex::encode(Sha256::digest(fs::read(&path).unwrap()))
                )
            };
            out.insert(rel, desc);
        }
    }
    out
}

fn sample_tree(root: &Path) {
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    fs::write(root.join("usr/bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
    fs::set_permissions(root.join("usr/bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    let big: Vec<u8> = (0..1_300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(root.join("big.bin"), &big).unwrap();
    fs::write(root.join("copy.bin"), &big).unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    std::os::unix::fs::symlink("usr/bin/tool", root.join("tool-link")).unwrap();
}

/// Keys of every chunk of `flist` (hex), via `zflist` itself.
fn chunk_keys(flist: &Path) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    ok(&zflist(&["--mnt", p(tmp.path()), "open", p(flist)], &[]));
    let out = ok(&zflist(&["--mnt", p(tmp.path()), "chunks"], &[]));
    out.lines().map(str::to_string).collect()
}

#[test]
fn pack_extract_round_trip_and_verify_through_dir_store() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let store = tmp.path().join("store");
    let url = format!("dir://{}", store.display());
    let flist = tmp.path().join("out.flist");
    let out = zflist(
        &["pack", p(&src), "-o", p(&flist), "--store", &url, "--json"],
        &[],
    );
    let packed = json_of(&out);
    assert!(out.status.success(), "{packed}");
    assert_eq!(packed["response"]["regular"], 4);
    assert_eq!(packed["response"]["fullsize"], 2 * 1_300_000 + 20);

    let dest = tmp.path().join("dest");
    ok(&zflist(
        &["extract", p(&flist), p(&dest), "--store", &url],
        &[],
    ));
    assert_eq!(snapshot(&src), snapshot(&dest));

    let insp = json_of(&zflist(&["inspect", p(&flist), "--json"], &[]));
    assert_eq!(insp["response"]["regular"], 4);
    assert_eq!(insp["response"]["symlink"], 1);
    assert_eq!(insp["response"]["directory"], 3);
    assert_eq!(insp["response"]["chunks"], 7);
    assert_eq!(
        insp["response"]["unique_chunks"], 4,
        "the two big files share their chunks"
    );

    // verify: all present, then one chunk deleted
    ok(&zflist(
        &["verify", p(&flist), "--store", &url, "--deep"],
        &[],
    ));
    let victim = chunk_keys(&flist).into_iter().next().unwrap();
    fs::remove_file(store.join(&victim[..2]).join(&victim)).unwrap();
    let out = zflist(&["verify", p(&flist), "--store", &url], &[]);
    one_line_error(&out, "verify");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("missing: {victim}")));
    let out = zflist(
        &["verify", p(&flist), "--store", &url],
        &[("ZFLIST_JSON", "1")],
    );
    assert!(!out.status.success());
    let v = json_of(&out);
    assert_eq!(v["success"], false);
    assert_eq!(v["error"]["function"], "verify");
    assert_eq!(v["response"]["missing"], serde_json::json!([victim]));
}

#[test]
fn errors_are_one_line_or_a_json_envelope() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.flist");

    // missing flist
    let err = one_line_error(&zflist(&["inspect", p(&missing)], &[]), "inspect");
    assert!(err.contains("missing.flist"), "{err}");
    let out = zflist(&["inspect", p(&missing)], &[("ZFLIST_JSON", "1")]);
    assert!(!out.status.success());
    assert!(
        out.stderr.is_empty(),
        "JSON mode keeps stderr clean: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out);
    assert_eq!(v["success"], false);
    assert_eq!(v["error"]["function"], "inspect");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("missing.flist"));
    assert_eq!(v["response"], serde_json::json!({}));

    // a text file (issue 27 item 10: `zflist inspect /etc/passwd`): the error says what the
    // file is not, never its content
    let passwd = tmp.path().join("passwd");
    fs::write(
        &passwd,
        "root:x:0:0:SECRET-CONTENT:/root:/bin/bash\nlogin\nsy:x:1:1::/:/bin/sh\n".repeat(20),
    )
    .unwrap();
    let err = one_line_error(&zflist(&["inspect", p(&passwd)], &[]), "inspect");
    assert!(
        err.contains("passwd: not an flist: not gzip, not a tar archive, not a SQLite database"),
        "{err}"
    );
    assert!(!err.contains("SECRET") && !err.contains("root:"), "{err}");

    // bad store URL
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let err = one_line_error(
        &zflist(
            &[
                "pack",
                p(&src),
                "-o",
                p(&tmp.path().join("x.flist")),
                "--store",
                "nope://x",
            ],
            &[],
        ),
        "pack",
    );
    assert!(err.contains("nope://x"), "{err}");
    assert!(!tmp.path().join("x.flist").exists());

    // a store that does not answer: named once, not once per layer of the error
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_store = format!("zdb://127.0.0.1:{}/ns", dead.local_addr().unwrap().port());
    drop(dead);
    fs::write(src.join("a"), "a\n").unwrap();
    let err = one_line_error(
        &zflist(
            &[
                "pack",
                p(&src),
                "-o",
                p(&tmp.path().join("x.flist")),
                "--store",
                &dead_store,
            ],
            &[],
        ),
        "pack",
    );
    assert_eq!(err.matches("store zdb://").count(), 1, "{err}");
    assert!(
        err.contains(&format!("store {dead_store}: connection error")),
        "{err}"
    );
    fs::remove_file(src.join("a")).unwrap();
    let v = json_of(&zflist(
        &["pack", p(&src), "-o", "x.flist", "--store", "nope://x"],
        &[("ZFLIST_JSON", "1")],
    ));
    assert_eq!(v["error"]["function"], "pack");

    // missing session
    let empty = tmp.path().join("no-session");
    let err = one_line_error(&zflist(&[p(&empty), "ls"], &[]), "ls");
    assert!(err.contains("no flist is open"), "{err}");
    let v = json_of(&zflist(
        &["ls"],
        &[("ZFLIST_MNT", p(&empty)), ("ZFLIST_JSON", "1")],
    ));
    assert_eq!(v["error"]["function"], "ls");
    one_line_error(&zflist(&["find"], &[]), "find"); // no temporary point at all

    // missing entry and bad usage
    ok(&zflist(&["--mnt", p(&empty), "init"], &[]));
    one_line_error(&zflist(&["--mnt", p(&empty), "stat", "/nope"], &[]), "stat");
    one_line_error(&zflist(&["--mnt", p(&empty), "init"], &[]), "init");
    one_line_error(&zflist(&["--mnt", p(&empty), "chmod"], &[]), "usage");
    let v = json_of(&zflist(
        &["--mnt", p(&empty), "bogus-action"],
        &[("ZFLIST_JSON", "1")],
    ));
    assert_eq!(v["success"], false);
}

#[test]
fn progress_lines_precede_the_envelope() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    fill_dir_store(&store);
    let mnt = tmp.path().join("mnt");
    ok(&zflist(
        &["--mnt", p(&mnt), "open", p(&fixture("fixture.flist"))],
        &[],
    ));
    let backend = format!("dir://{}", store.display());
    let out = zflist(
        &["--mnt", p(&mnt), "check"],
        &[
            ("ZFLIST_JSON", "1"),
            ("ZFLIST_PROGRESS", "1"),
            ("ZFLIST_BACKEND", &backend),
        ],
    );
    let text = ok(&out);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= 2, "{text}");
    for l in &lines[..lines.len() - 1] {
        assert_eq!(l["status"], "progress", "{l}");
        assert!(l["current"].is_u64() && l["total"].is_u64() && l["message"].is_string());
    }
    let last = lines.last().unwrap();
    assert_eq!(last["success"], true);
    assert_eq!(last["response"]["failure"], 0);
    assert_eq!(last["response"]["missing"], serde_json::json!([]));
}

#[test]
fn pack_to_redis_extract_from_redis_and_verify() {
    let server = RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let flist = tmp.path().join("redis.flist");
    let url = server.url();
    ok(&zflist(
        &["pack", p(&src), "-o", p(&flist), "--store", &url],
        &[],
    ));

    let dest = tmp.path().join("dest");
    ok(&zflist(
        &["extract", p(&flist), p(&dest), "--store", &url],
        &[],
    ));
    assert_eq!(snapshot(&src), snapshot(&dest));

    ok(&zflist(&["verify", p(&flist), "--store", &url], &[]));
    let victim = chunk_keys(&flist).into_iter().next().unwrap();
    let key = hex::decode(&victim).unwrap();
    server.command(&[b"DEL", &key]).unwrap();
    let out = zflist(&["verify", p(&flist), "--store", &url], &[]);
    one_line_error(&out, "verify");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&victim));
}

/// A real 0-db with a public namespace `chunks` writable with password `pw`.
fn zdb_with_public_namespace() -> ZdbServer {
    let server = ZdbServer::start();
    server.namespace(
        "chunks",
        NsConfig {
            password: Some("pw".into()),
            public: true,
            ..NsConfig::default()
        },
    );
    server
}

#[test]
fn pack_to_zdb_extract_from_zdb_and_verify() {
    let server = zdb_with_public_namespace();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let flist = tmp.path().join("zdb.flist");
    let url = server.url("chunks", Some("pw"));
    ok(&zflist(
        &["pack", p(&src), "-o", p(&flist), "--store", &url],
        &[],
    ));
    let keys: std::collections::BTreeSet<String> = chunk_keys(&flist).into_iter().collect();
    assert_eq!(
        server.entries("chunks"),
        keys.len(),
        "one entry per distinct chunk"
    );

    let dest = tmp.path().join("dest");
    ok(&zflist(
        &["extract", p(&flist), p(&dest), "--store", &url],
        &[],
    ));
    assert_eq!(snapshot(&src), snapshot(&dest));
    // Packing again stores nothing new (0-db answers nil for unchanged values).
    ok(&zflist(
        &["pack", p(&src), "-o", p(&flist), "--store", &url],
        &[],
    ));
    assert_eq!(server.entries("chunks"), keys.len());

    ok(&zflist(&["verify", p(&flist), "--store", &url], &[]));
    let victim = keys.into_iter().next().unwrap();
    let key = hex::decode(&victim).unwrap();
    assert_eq!(
        server.conn("chunks").call(&[b"DEL", &key]),
        test_support::RedisReply::Status("OK".into())
    );
    let out = zflist(&["verify", p(&flist), "--store", &url], &[]);
    one_line_error(&out, "verify");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&victim));
}

#[test]
fn pack_to_zdb_url_records_public_backend_used_by_extract() {
    let mut server = zdb_with_public_namespace();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let flist = tmp.path().join("zdb.flist");
    ok(&zflist(
        &[
            "pack",
            p(&src),
            "-o",
            p(&flist),
            "--store",
            &server.url("chunks", Some("pw")),
        ],
        &[],
    ));
    let md = flist_format_metadata(&flist);
    assert_eq!(md["backend"]["host"], "127.0.0.1");
    assert_eq!(md["backend"]["port"], server.port());
    assert_eq!(md["backend"]["namespace"], "chunks");
    assert!(
        !md["backend"].to_string().contains("pw"),
        "no password in the published backend: {}",
        md["backend"]
    );
    // The server restarts on the same data; no --store: the flist's backend metadata says
    // where the chunks are, read without the password (public namespace, read-only).
    server.kill();
    server.restart();
    let dest = tmp.path().join("dest");
    ok(&zflist(&["extract", p(&flist), p(&dest)], &[]));
    assert_eq!(snapshot(&src), snapshot(&dest));
}

#[test]
fn pack_reads_an_archive_from_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("dir://{}", tmp.path().join("store").display());
    let flist = tmp.path().join("tree.flist");
    let mut c = Command::new(env!("CARGO_BIN_EXE_zflist"));
    c.args(["pack", "-", "-o", p(&flist), "--store", &url, "--json"])
        .stdin(fs::File::open(fixture("fixture-tree.tar.gz")).unwrap())
        .env_remove("ZFLIST_JSON");
    let out = c.output().unwrap();
    let v = json_of(&out);
    assert!(out.status.success(), "{v}");
    assert_eq!(v["response"]["regular"], 312);
    assert_eq!(v["response"]["symlink"], 3);
    assert_eq!(v["response"]["fullsize"], 5_524_641);
    ok(&zflist(&["verify", p(&flist), "--store", &url], &[]));
}
