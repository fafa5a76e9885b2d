//! The CLI people expect, through the real binary: recorded backends, flist URLs, atomic and
//! resumable extraction, `ls -l` modes and escaped names, directory sizes, socket nodes,
//! help texts, progress display. Real 0-db (test-support harness), real HTTP over loopback,
//! real tar archives.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;
use common::{p, stdout_ok as ok, zflist_with as zflist};

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use md5::{Digest, Md5};
use serde_json::{json, Value};
use test_support::http::FileServer;
use test_support::{NsConfig, ZdbServer};

fn fails(out: &Output, function: &str) -> String {
    assert!(!out.status.success(), "expected a failure: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.lines().count(), 1, "stderr: {err:?}");
    assert!(
        err.starts_with(&format!("zflist: {function}: ")),
        "stderr: {err:?}"
    );
    err
}

fn json(args: &[&str]) -> Value {
    let out = zflist(args, &[("ZFLIST_JSON", "1")]);
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(v["success"], true, "{v}");
    v["response"].clone()
}

/// path → "d mode" / "f mode sha" / "l target" / "s"/"p" of a tree on disk.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let md = fs::symlink_metadata(&path).unwrap();
            let mode = md.permissions().mode() & 0o7777;
            let ft = md.file_type();
            let v = if ft.is_dir() {
                stack.push(path.clone());
                format!("d {mode:o}")
            } else if ft.is_symlink() {
                format!("l {}", fs::read_link(&path).unwrap().display())
            } else if ft.is_file() {
                format!(
                    "f {mode:o} {}",
                    hex::encode(Md5::digest(fs::read(&path).unwrap()))
                )
            } else if ft.is_socket() {
                "s".into()
            } else if ft.is_fifo() {
                "p".into()
            } else {
                "other".into()
            };
            out.insert(rel, v);
        }
    }
    out
}

/// A tree with `files` files of `size` distinct bytes each (one chunk each up to 512 KiB).
fn sample_tree(root: &Path, files: usize, size: usize) {
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    for i in 0..files {
        let data: Vec<u8> = (0..size).map(|j| ((i * 31 + j * 7) % 251) as u8).collect();
        let dir = if i % 2 == 0 { "sub" } else { "sub/deeper" };
        fs::write(root.join(dir).join(format!("f{i:03}")), data).unwrap();
    }
    fs::write(root.join("small.txt"), b"hello\n").unwrap();
    std::os::unix::fs::symlink("small.txt", root.join("link")).unwrap();
}

fn flist_metadata(flist: &Path) -> BTreeMap<String, Value> {
    let v = json(&["inspect", p(flist)]);
    serde_json::from_value(v["metadata"].clone()).unwrap()
}

/// The raw `backend` value stored in an flist (not the redacted view).
fn raw_backend(flist: &Path) -> Option<String> {
    let f = flist_format::Flist::open(flist).unwrap();
    f.metadata.get("backend").map(str::to_string)
}

fn zdb_public(ns: &str, password: &str) -> ZdbServer {
    let server = ZdbServer::start();
    server.namespace(
        ns,
        NsConfig {
            password: Some(password.into()),
            public: true,
            ..NsConfig::default()
        },
    );
    server
}

#[test]
fn pack_records_the_store_as_backend_without_its_password() {
    let zdb = zdb_public("pub", "s3cret-pw");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src, 6, 3000);
    let flist = tmp.path().join("a.flist");
    let store = zdb.url("pub", Some("s3cret-pw"));
    let out = ok(&zflist(
        &["pack", p(&src), "-o", p(&flist), "--store", &store],
        &[],
    ));
    assert!(out.contains("backend: zdb://127.0.0.1:"), "{out}");
    assert!(!out.contains("s3cret"), "{out}");
    assert_eq!(
        raw_backend(&flist).unwrap(),
        format!(
            r#"{{"host": "127.0.0.1", "port": {}, "namespace": "pub"}}"#,
            zdb.port()
        )
    );
    // verify and extract need no flag: the public namespace is readable without password
    let v = json(&["verify", p(&flist)]);
    assert_eq!(v["failure"], 0, "{v}");
    let dest = tmp.path().join("out");
    ok(&zflist(&["extract", p(&flist), p(&dest)], &[]));
    assert_eq!(snapshot(&src), snapshot(&dest));

    // --no-backend: nothing recorded, and readers then need a store
    let bare = tmp.path().join("bare.flist");
    ok(&zflist(
        &[
            "pack",
            p(&src),
            "-o",
            p(&bare),
            "--store",
            &store,
            "--no-backend",
        ],
        &[],
    ));
    assert_eq!(raw_backend(&bare), None);
    let err = fails(&zflist(&["verify", p(&bare)], &[]), "verify");
    assert!(err.contains("--store"), "{err}");

    // --public-backend: another address, its password dropped
    for (given, recorded) in [
        (
            "zdb://:other-secret@hub.example:9911/ns".to_string(),
            r#"{"host": "hub.example", "port": 9911, "namespace": "ns"}"#,
        ),
        (
            "http://hub.example/chunks".to_string(),
            r#"{"url": "http://hub.example/chunks"}"#,
        ),
        (
            r#"{"host": "h", "port": "9900", "password": "other-secret"}"#.to_string(),
            r#"{"host": "h", "port": 9900}"#,
        ),
    ] {
        let f = tmp.path().join("pub.flist");
        ok(&zflist(
            &[
                "pack",
                p(&src),
                "-o",
                p(&f),
                "--store",
                &store,
                "--public-backend",
                &given,
            ],
            &[],
        ));
        assert_eq!(raw_backend(&f).unwrap(), recorded, "{given}");
    }
    // a store readers cannot reach is refused as a public backend, and recorded as nothing
    let err = fails(
        &zflist(
            &[
                "pack",
                p(&src),
                "-o",
                p(&tmp.path().join("x.flist")),
                "--store",
                &store,
                "--public-backend",
                "dir:///srv/chunks",
            ],
            &[],
        ),
        "pack",
    );
    assert!(err.contains("cannot be recorded"), "{err}");
    assert!(!tmp.path().join("x.flist").exists());
    let dir_store = format!("dir://{}", tmp.path().join("chunks").display());
    let f = tmp.path().join("dir.flist");
    let v = json(&["pack", p(&src), "-o", p(&f), "--store", &dir_store]);
    assert_eq!(v["backend"], Value::Null);
    assert_eq!(raw_backend(&f), None);
    let run = zflist(&["pack", p(&src), "-o", p(&f), "--store", &dir_store], &[]);
    let out = ok(&run);
    // The note goes to stderr: stdout holds the result only.
    let note = String::from_utf8_lossy(&run.stderr);
    assert!(
        note.contains("zflist: pack: note:") && note.contains("no backend recorded"),
        "{note}"
    );
    assert!(!out.contains("note:"), "{out}");
    // inspect never shows a password stored by hand
    let mnt = tmp.path().join("mnt");
    ok(&zflist(&["--mnt", p(&mnt), "open", p(&flist)], &[]));
    ok(&zflist(
        &[
            "--mnt",
            p(&mnt),
            "metadata",
            "backend",
            "--host",
            "h",
            "--password",
            "hunter2",
        ],
        &[],
    ));
    let shown = ok(&zflist(&["--mnt", p(&mnt), "metadata", "backend"], &[]));
    assert!(
        !shown.contains("hunter2") && shown.contains("***"),
        "{shown}"
    );
    ok(&zflist(&["--mnt", p(&mnt), "commit", p(&f)], &[]));
    let text = ok(&zflist(&["inspect", p(&f)], &[]));
    assert!(!text.contains("hunter2"), "{text}");
    assert_eq!(flist_metadata(&f)["backend"]["password"], "***");
}

/// Packs `src` into a `dir://` store under `site/chunks`, recording the file server's
/// `/chunks` as the backend, and publishes `site/app.flist` (+ `.md5`).
fn publish(src: &Path, site: &Path, server: &FileServer) -> String {
    let store = format!("dir://{}", site.join("chunks").display());
    let flist = site.join("app.flist");
    ok(&zflist(
        &[
            "pack",
            p(src),
            "-o",
            p(&flist),
            "--store",
            &store,
            "--public-backend",
            &format!("{}/chunks", server.url()),
        ],
        &[],
    ));
    let md5 = hex::encode(Md5::digest(fs::read(&flist).unwrap()));
    fs::write(site.join("app.flist.md5"), format!("{md5}\n")).unwrap();
    format!("{}/app.flist", server.url())
}

#[test]
fn an_flist_url_works_wherever_a_file_does() {
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    fs::create_dir_all(&site).unwrap();
    let server = FileServer::start(&site);
    let src = tmp.path().join("src");
    sample_tree(&src, 8, 70_000);
    let url = publish(&src, &site, &server);

    // the newcomer's path: extract a URL with no other flag, chunks from the http backend
    let dest = tmp.path().join("out");
    let out = ok(&zflist(&["extract", &url, p(&dest)], &[]));
    assert!(out.contains("/chunks"), "{out}");
    assert_eq!(snapshot(&src), snapshot(&dest));
    assert_eq!(server.requests("/app.flist.md5"), 1);
    assert!(server.requests_under("/chunks/") >= 8);

    let v = json(&["inspect", &url]);
    assert_eq!(v["file"], url);
    assert_eq!(v["md5_checked"], true);
    assert_eq!(
        v["metadata"]["backend"],
        json!({"url": format!("{}/chunks", server.url())})
    );
    assert_eq!(json(&["verify", &url])["failure"], 0);
    let mnt = tmp.path().join("mnt");
    ok(&zflist(&["--mnt", p(&mnt), "open", &url], &[]));
    let listing = ok(&zflist(&["--mnt", p(&mnt), "ls", "/"], &[]));
    assert!(listing.contains("small.txt"), "{listing}");
    ok(&zflist(&["--mnt", p(&mnt), "merge", &url], &[]));

    // no .md5 offered: accepted unchecked
    fs::remove_file(site.join("app.flist.md5")).unwrap();
    assert_eq!(json(&["inspect", &url])["md5_checked"], false);
    // a wrong .md5: refused, nothing extracted
    fs::write(site.join("app.flist.md5"), format!("{}\n", "0".repeat(32))).unwrap();
    let dest2 = tmp.path().join("out2");
    let err = fails(&zflist(&["extract", &url, p(&dest2)], &[]), "extract");
    assert!(err.contains("md5"), "{err}");
    assert!(!dest2.exists());
    // clear errors for a missing flist and a closed port
    let err = fails(
        &zflist(&["inspect", &format!("{}/nope.flist", server.url())], &[]),
        "inspect",
    );
    assert!(err.contains("404"), "{err}");
    let port = test_support::redis::free_port();
    let err = fails(
        &zflist(
            &["inspect", &format!("http://127.0.0.1:{port}/x.flist")],
            &[],
        ),
        "inspect",
    );
    assert!(err.contains("cannot connect"), "{err}");
}

#[test]
fn extract_is_atomic_replaces_only_with_force_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    fs::create_dir_all(&site).unwrap();
    let server = FileServer::start(&site);
    let src = tmp.path().join("src");
    sample_tree(&src, 120, 20_000);
    let url = publish(&src, &site, &server);
    let flist = site.join("app.flist");
    let mnt = tmp.path().join("mnt");
    ok(&zflist(&["--mnt", p(&mnt), "open", p(&flist)], &[]));
    let keys: Vec<String> = ok(&zflist(&["--mnt", p(&mnt), "chunks"], &[]))
        .lines()
        .map(str::to_string)
        .collect();
    let total = keys.len();
    assert!(total >= 120, "{total}");

    // an existing non-empty destination is refused without --force and left alone
    let dest = tmp.path().join("out");
    fs::create_dir_all(&dest).unwrap();
    fs::write(dest.join("keep.txt"), b"mine").unwrap();
    let err = fails(&zflist(&["extract", &url, p(&dest)], &[]), "extract");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(fs::read(dest.join("keep.txt")).unwrap(), b"mine");

    // the store fails on the last chunk: no half tree in the destination, old one intact
    server.fail_paths_containing(&keys[total - 1]);
    let err = fails(
        &zflist(&["extract", &url, p(&dest), "--force"], &[]),
        "extract",
    );
    assert!(err.contains("--resume"), "{err}");
    assert_eq!(
        fs::read_dir(&dest).unwrap().count(),
        1,
        "the destination is untouched"
    );
    let partial = tmp.path().join(".out.zflist-partial");
    assert!(partial.is_dir(), "the partial tree is kept for --resume");
    // running again without --resume or --force says what to do
    let err = fails(
        &zflist(&["extract", &url, p(&dest), "--force"], &[]),
        "extract",
    );
    assert!(err.contains("--resume"), "{err}");

    // --resume fetches only what is missing
    server.heal();
    let before = server.requests_under("/chunks/");
    let v = json(&["extract", &url, p(&dest), "--force", "--resume"]);
    let fetched = server.requests_under("/chunks/") - before;
    assert_eq!(v["resumed"], true);
    assert_eq!(v["replaced"], true);
    let reused = v["chunks_reused"].as_u64().unwrap() as usize;
    assert!(reused > 0, "{v}");
    assert_eq!(fetched, total - reused, "{v}");
    assert!(fetched < total / 2, "fetched {fetched} of {total}");
    assert_eq!(snapshot(&src), snapshot(&dest));
    assert!(!partial.exists());
    assert_eq!(
        fs::read_dir(tmp.path())
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".out"))
            .count(),
        0,
        "no staging leftovers"
    );

    // a second extract over a complete tree needs --force, which replaces it whole
    fs::write(dest.join("stray"), b"x").unwrap();
    ok(&zflist(&["extract", &url, p(&dest), "--force"], &[]));
    assert_eq!(snapshot(&src), snapshot(&dest));
}

#[test]
fn pack_keeps_directory_sizes_and_extract_makes_socket_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let big = src.join("big");
    fs::create_dir_all(&big).unwrap();
    for i in 0..400 {
        fs::write(
            big.join(format!("a-rather-long-file-name-number-{i:05}")),
            b"x",
        )
        .unwrap();
    }
    fs::create_dir_all(src.join("small")).unwrap();
    let sock = src.join("small/listener.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let st = Command::new("mkfifo")
        .arg(src.join("small/pipe"))
        .status()
        .unwrap();
    assert!(st.success());
    let store = format!("dir://{}", tmp.path().join("chunks").display());
    let flist = tmp.path().join("t.flist");
    ok(&zflist(
        &["pack", p(&src), "-o", p(&flist), "--store", &store],
        &[],
    ));
    let v = json(&["inspect", p(&flist)]);
    let sizes: BTreeMap<String, u64> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "directory")
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_string(),
                e["size"].as_u64().unwrap(),
            )
        })
        .collect();
    let real = |d: &Path| fs::metadata(d).unwrap().len();
    assert_eq!(sizes["/big"], real(&big));
    assert_eq!(sizes["/small"], real(&src.join("small")));
    assert_eq!(sizes["/"], real(&src));
    assert_ne!(
        real(&big),
        4096,
        "a large directory is not 4096 bytes on this filesystem"
    );

    let dest = tmp.path().join("out");
    let run = zflist(&["extract", p(&flist), p(&dest), "--store", &store], &[]);
    ok(&run);
    let note = String::from_utf8_lossy(&run.stderr);
    assert!(note.contains("1 socket nodes created"), "{note}");
    assert!(fs::symlink_metadata(dest.join("small/listener.sock"))
        .unwrap()
        .file_type()
        .is_socket());
    assert!(fs::symlink_metadata(dest.join("small/pipe"))
        .unwrap()
        .file_type()
        .is_fifo());
    let v = json(&[
        "extract",
        p(&flist),
        p(&tmp.path().join("out2")),
        "--store",
        &store,
    ]);
    assert_eq!(v["socket"], 1);
    assert_eq!(v["special"], 2);
}

#[test]
fn inspect_and_ls_show_ls_modes_and_escape_control_characters() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("tmp")).unwrap();
    fs::create_dir_all(src.join("shared")).unwrap();
    fs::write(src.join("\u{1b}[2Jred"), b"esc").unwrap();
    fs::write(src.join("two\nlines"), b"nl").unwrap();
    fs::write(src.join("suid"), b"x").unwrap();
    let mode =
        |path: &Path, m: u32| fs::set_permissions(path, fs::Permissions::from_mode(m)).unwrap();
    mode(&src.join("suid"), 0o4755);
    mode(&src.join("tmp"), 0o1777);
    mode(&src.join("shared"), 0o2775);
    assert!(Command::new("mkfifo")
        .arg(src.join("fifo"))
        .status()
        .unwrap()
        .success());
    assert!(Command::new("mknod")
        .args([p(&src.join("null")), "c", "1", "3"])
        .status()
        .unwrap()
        .success());
    // a real archive made by GNU tar
    let tar = tmp.path().join("tree.tar");
    let st = Command::new("tar")
        .args(["-C", p(&src), "-cf", p(&tar), "."])
        .status()
        .unwrap();
    assert!(st.success());
    let store = format!("dir://{}", tmp.path().join("chunks").display());
    let flist = tmp.path().join("t.flist");
    ok(&zflist(
        &["pack", p(&tar), "-o", p(&flist), "--store", &store],
        &[],
    ));

    let text = ok(&zflist(&["inspect", p(&flist)], &[]));
    assert!(!text.contains('\u{1b}'), "raw ESC printed: {text:?}");
    assert!(text.contains("/\\e[2Jred"), "{text}");
    assert!(text.contains("/two\\nlines"), "{text}");
    let line = |needle: &str| -> String {
        text.lines()
            .find(|l| l.ends_with(needle))
            .unwrap_or_else(|| panic!("{needle} not in {text}"))
            .to_string()
    };
    assert!(line("/suid").starts_with("-rwsr-xr-x"), "{text}");
    assert!(line("/tmp").starts_with("drwxrwxrwt"), "{text}");
    assert!(line("/shared").starts_with("drwxrwsr-x"), "{text}");
    assert!(line("/fifo").starts_with("prw-r--r--"), "{text}");
    assert!(line("/null [1,3]").starts_with("crw-r--r--"), "{text}");
    // one line per entry: the newline in a name did not make two
    let tree_lines = text.split("tree:\n").nth(1).unwrap().lines().count();
    assert_eq!(tree_lines, 8, "{text}");
    // JSON keeps the real names (JSON escaping makes them safe)
    let v = json(&["inspect", p(&flist)]);
    let names: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"/two\nlines"), "{names:?}");
    assert!(v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["mode_string"] == "-rwsr-xr-x"));

    // ls and find in a session
    let mnt = tmp.path().join("mnt");
    ok(&zflist(&["--mnt", p(&mnt), "open", p(&flist)], &[]));
    let ls = ok(&zflist(&["--mnt", p(&mnt), "ls", "/"], &[]));
    assert!(!ls.contains('\u{1b}'), "{ls:?}");
    assert_eq!(ls.lines().count(), 7, "{ls}");
    assert!(
        ls.lines()
            .any(|l| l.starts_with("drwxrwxrwt") && l.ends_with(" tmp")),
        "{ls}"
    );
    assert!(
        ls.lines()
            .any(|l| l.starts_with("prw-r--r--") && l.ends_with(" fifo")),
        "{ls}"
    );
    assert!(ls.contains("two\\nlines"), "{ls}");
    let find = ok(&zflist(&["--mnt", p(&mnt), "find"], &[]));
    assert!(
        !find.contains('\u{1b}') && find.contains("/two\\nlines"),
        "{find}"
    );
}

#[test]
fn help_describes_every_argument_with_examples() {
    let commands = [
        "open", "init", "close", "commit", "ls", "find", "stat", "cat", "get", "put", "putdir",
        "chmod", "rm", "rmdir", "mkdir", "metadata", "merge", "check", "chunks", "pack", "extract",
        "inspect", "docker", "verify",
    ];
    let session = [
        "open", "init", "close", "commit", "ls", "find", "stat", "cat", "get", "put", "putdir",
        "chmod", "rm", "rmdir", "mkdir", "metadata", "merge", "check", "chunks",
    ];
    for cmd in commands {
        let help = ok(&zflist(&[cmd, "--help"], &[]));
        assert!(help.contains("EXAMPLES:\n  "), "{cmd}: {help}");
        let examples = help.split("EXAMPLES:").nth(1).unwrap_or_default();
        assert!(
            examples
                .lines()
                .any(|l| l.contains("zflist ") && l.contains(&format!(" {cmd}"))),
            "{cmd}: {help}"
        );
        assert_eq!(
            help.contains("--mnt <DIR>"),
            session.contains(&cmd),
            "--mnt only on session commands: {cmd}: {help}"
        );
        // short help: every argument and option line carries a description
        let short = ok(&zflist(&[cmd, "-h"], &[]));
        let mut in_list = false;
        for l in short.lines() {
            if l.starts_with("Arguments:") || l.starts_with("Options:") {
                in_list = true;
                continue;
            }
            if l.is_empty() || !l.starts_with("  ") {
                in_list = l.is_empty() && in_list;
                continue;
            }
            if in_list {
                let spec_end = l
                    .trim_start()
                    .find("  ")
                    .unwrap_or_else(|| panic!("{cmd}: no description: {l:?}\n{short}"));
                let desc = l.trim_start()[spec_end..].trim();
                assert!(!desc.is_empty(), "{cmd}: {l:?}");
            }
        }
    }
    for sub in [
        "backend",
        "entrypoint",
        "environ",
        "port",
        "volume",
        "readme",
    ] {
        let short = ok(&zflist(&["metadata", sub, "-h"], &[]));
        for l in short.lines().filter(|l| l.starts_with("  -")) {
            assert!(l.trim_start().contains("  "), "metadata {sub}: {l:?}");
        }
    }
    let check = ok(&zflist(&["check", "--help"], &[]));
    assert!(check.contains("verify"), "{check}");
    let verify = ok(&zflist(&["verify", "--help"], &[]));
    assert!(verify.contains("check"), "{verify}");
    // --mnt is refused where it means nothing
    let out = zflist(&["--mnt", "/tmp/x", "pack", ".", "-o", "x.flist"], &[]);
    let err = fails(&out, "usage");
    assert!(err.contains("--mnt"), "{err}");
}

#[test]
fn the_readme_entrypoint_example_stores_the_command_line() {
    let readme = fs::read_to_string(test_support::workspace_root().join("README.md")).unwrap();
    let example = "zflist metadata entrypoint --entrypoint \"/bin/sh -c 'echo hi'\"";
    assert!(readme.contains(example), "README no longer shows {example}");
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    let env = [("ZFLIST_MNT", p(&mnt))];
    ok(&zflist(&["init"], &env));
    // exactly the README's words, as the shell hands them over
    ok(&zflist(
        &[
            "metadata",
            "entrypoint",
            "--entrypoint",
            "/bin/sh -c 'echo hi'",
        ],
        &env,
    ));
    let v = json(&["--mnt", p(&mnt), "metadata", "entrypoint"]);
    assert_eq!(v["value"], json!(["/bin/sh", "-c", "echo hi"]));
    ok(&zflist(
        &["metadata", "entrypoint", "--", "/bin/sh", "-c", "echo bye"],
        &env,
    ));
    let v = json(&["--mnt", p(&mnt), "metadata", "entrypoint"]);
    assert_eq!(v["value"], json!(["/bin/sh", "-c", "echo bye"]));
    let err = fails(
        &zflist(&["metadata", "entrypoint", "--entrypoint", "'open"], &env),
        "metadata",
    );
    assert!(err.contains("quote"), "{err}");
}

/// Runs `zflist args` with stderr on a pseudo-terminal (util-linux `script`), returning
/// what the terminal showed.
fn on_a_terminal(args: &[&str]) -> String {
    let mut cmd = String::from(env!("CARGO_BIN_EXE_zflist"));
    for a in args {
        cmd.push_str(" '");
        cmd.push_str(&a.replace('\'', "'\\''"));
        cmd.push('\'');
    }
    cmd.push_str(" >/dev/null");
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .env_remove("ZFLIST_JSON")
        .env("COLUMNS", "120")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn progress_bars_only_on_a_terminal_and_never_with_quiet_or_json() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src, 40, 200_000);
    let store = format!("dir://{}", tmp.path().join("chunks").display());
    let flist = tmp.path().join("t.flist");
    // not a terminal: no progress on stderr, only the notes and warnings
    let out = zflist(&["pack", p(&src), "-o", p(&flist), "--store", &store], &[]);
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines()
            .all(|l| l.starts_with("zflist: pack: note: ")
                || l.starts_with("zflist: pack: warning: ")),
        "{err}"
    );
    let out = zflist(
        &[
            "extract",
            p(&flist),
            p(&tmp.path().join("o1")),
            "--store",
            &store,
        ],
        &[],
    );
    ok(&out);
    assert!(out.stderr.is_empty());
    // a terminal: a bar with bytes and chunks
    let shown = on_a_terminal(&[
        "extract",
        p(&flist),
        p(&tmp.path().join("o2")),
        "--store",
        &store,
    ]);
    assert!(shown.contains("extracting"), "{shown:?}");
    assert!(shown.contains("chunks"), "{shown:?}");
    assert!(shown.contains("B"), "{shown:?}");
    let shown = on_a_terminal(&["pack", p(&src), "-o", p(&flist), "--store", &store]);
    assert!(shown.contains("packing"), "{shown:?}");
    // --quiet and JSON mode: nothing
    let shown = on_a_terminal(&[
        "extract",
        p(&flist),
        p(&tmp.path().join("o3")),
        "--quiet",
        "--store",
        &store,
    ]);
    assert!(!shown.contains("extracting"), "{shown:?}");
    let shown = on_a_terminal(&[
        "extract",
        p(&flist),
        p(&tmp.path().join("o4")),
        "--json",
        "--store",
        &store,
    ]);
    assert!(!shown.contains("extracting"), "{shown:?}");
    assert!(tmp.path().join("o4").is_dir());
}
