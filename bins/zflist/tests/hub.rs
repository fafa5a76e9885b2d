//! `zflist hub ...` against a real `hub-server` process over real HTTP: every subcommand of
//! the reference client, in text mode and with `ZFLIST_JSON=1`, the catalog checked through
//! the public API afterwards; tokens from the environment, flags and the token file.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use test_support::archive::{gzip, RawTar};
use test_support::hub::hub_server_bin;
use test_support::HubProcess;

const ZFLIST: &str = env!("CARGO_BIN_EXE_zflist");

fn start_hub() -> HubProcess {
    HubProcess::start(&hub_server_bin(Path::new(ZFLIST)))
}

/// Runs zflist with a clean environment (no inherited ZFLIST_* / XDG / HOME), plus `env`.
fn zflist_in(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>, home: &Path) -> Output {
    let mut c = Command::new(ZFLIST);
    c.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("ZFLIST_") || k == "XDG_CONFIG_HOME" {
            c.env_remove(k);
        }
    }
    c.env("HOME", home);
    for (k, v) in env {
        c.env(k, v);
    }
    match stdin {
        Some(s) => {
            c.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = c.spawn().unwrap();
            use std::io::Write;
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
            child.wait_with_output().unwrap()
        }
        None => c.stdin(Stdio::null()).output().unwrap(),
    }
}

/// The script's context: a hub, two users, an organisation, a work directory.
struct Ctx {
    hub: HubProcess,
    alice: String,
    bob: String,
    work: tempfile::TempDir,
    json: bool,
}

impl Ctx {
    fn new(json: bool) -> Self {
        let hub = start_hub();
        let alice = hub.token("alice", &["acme"]);
        let bob = hub.token("bob", &[]);
        Ctx {
            hub,
            alice,
            bob,
            work: tempfile::tempdir().unwrap(),
            json,
        }
    }

    fn home(&self) -> PathBuf {
        self.work.path().join("home")
    }

    fn path(&self, name: &str) -> String {
        self.work.path().join(name).to_str().unwrap().to_string()
    }

    /// `zflist hub <args>` as `token` (None: no token in the environment), with extra env.
    fn hub_as(&self, token: Option<&str>, args: &[&str], env: &[(&str, &str)]) -> Output {
        let url = self.hub.url();
        let mut e: Vec<(&str, &str)> = vec![("ZFLIST_HUB", url.as_str())];
        if let Some(t) = token {
            e.push(("ZFLIST_HUB_TOKEN", t));
        }
        if self.json {
            e.push(("ZFLIST_JSON", "1"));
        }
        e.extend_from_slice(env);
        let mut full = vec!["hub"];
        full.extend_from_slice(args);
        fs::create_dir_all(self.home()).unwrap();
        zflist_in(&full, &e, None, &self.home())
    }

    /// Runs a step that must succeed; returns the text printed (text mode) or the envelope's
    /// `response` (JSON mode, after checking the envelope).
    fn ok(&self, token: &str, args: &[&str]) -> Value {
        self.ok_env(token, args, &[])
    }

    fn ok_env(&self, token: &str, args: &[&str], env: &[(&str, &str)]) -> Value {
        let out = self.hub_as(Some(token), args, env);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "zflist hub {args:?} failed ({:?}): stdout {stdout:?} stderr {:?}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        if self.json {
            let env: Value = serde_json::from_str(stdout.trim())
                .unwrap_or_else(|e| panic!("{args:?}: not one JSON envelope ({e}): {stdout:?}"));
            assert_eq!(env["success"], json!(true), "{args:?}: {env}");
            assert_eq!(env["error"], Value::Null, "{args:?}: {env}");
            assert!(env["response"].is_object(), "{args:?}: {env}");
            env["response"].clone()
        } else {
            assert!(
                out.stderr.is_empty(),
                "{args:?}: stderr {:?}",
                String::from_utf8_lossy(&out.stderr)
            );
            Value::String(stdout)
        }
    }

    /// Runs a step that must fail with exit status 1; returns the error message (stderr
    /// line in text mode, `error.message` in JSON mode) and stdout.
    fn fails(
        &self,
        token: Option<&str>,
        args: &[&str],
        env: &[(&str, &str)],
        function: &str,
    ) -> (String, String) {
        let out = self.hub_as(token, args, env);
        assert_eq!(out.status.code(), Some(1), "{args:?} should fail: {out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        if self.json {
            let env: Value = serde_json::from_str(stdout.trim())
                .unwrap_or_else(|e| panic!("{args:?}: not one JSON envelope ({e}): {stdout:?}"));
            assert_eq!(env["success"], json!(false), "{env}");
            assert_eq!(env["error"]["function"], json!(function), "{env}");
            (
                env["error"]["message"].as_str().unwrap().to_string(),
                stdout,
            )
        } else {
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            assert_eq!(err.lines().count(), 1, "{args:?}: stderr {err:?}");
            let prefix = format!("zflist: {function}: ");
            assert!(err.starts_with(&prefix), "{args:?}: stderr {err:?}");
            (err[prefix.len()..].trim_end().to_string(), stdout)
        }
    }

    /// Text printed by a successful step (text mode) or the response member (JSON mode),
    /// compared with what each mode should give.
    fn expect_printed(&self, got: &Value, text: &str, response: Value) {
        if self.json {
            assert_eq!(got, &response);
        } else {
            assert_eq!(got, &Value::String(text.to_string()));
        }
    }
}

fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut t = RawTar::new();
    for (name, data) in files {
        t.file(name, data);
    }
    gzip(&t.finish())
}

/// Entries of a repository through the public API: name → (type, target).
fn catalog(hub: &HubProcess, repo: &str) -> Vec<(String, String, String)> {
    let v = hub.get_json(&format!("/api/flist/{repo}"));
    let mut out: Vec<(String, String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["type"].as_str().unwrap().to_string(),
                e["target"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// What `hub ls` printed for `repo` against the public listing: one line (text) or one
/// entry (JSON) per entry, in the listing's order, with type, size, name and target.
fn check_ls(c: &Ctx, out: &Value, repo: &str) {
    let api = c.hub.get_json(&format!("/api/flist/{repo}"));
    let api = api.as_array().unwrap();
    if c.json {
        assert_eq!(out["repository"], json!(repo), "{out}");
        let got = out["entries"].as_array().unwrap();
        assert_eq!(got.len(), api.len(), "{out}");
        for (g, a) in got.iter().zip(api) {
            for k in ["name", "type", "size", "target"] {
                assert_eq!(g[k], a[k], "{k} of {g}");
            }
        }
        return;
    }
    let text = out.as_str().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), api.len(), "{text}");
    for (line, a) in lines.iter().zip(api) {
        let kind = a["type"].as_str().unwrap();
        let mut want = vec![kind.to_string()];
        if kind == "regular" {
            want.extend(a["size"].as_str().unwrap().split(' ').map(str::to_string));
        }
        want.push(a["name"].as_str().unwrap().to_string());
        if let Some(t) = a["target"].as_str() {
            want.extend(["->".to_string(), t.to_string()]);
        }
        let got: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(got, want, "{text}");
    }
}

fn entry(name: &str, kind: &str, target: &str) -> (String, String, String) {
    (name.into(), kind.into(), target.into())
}

/// The script: every subcommand, in the reference's argument order.
fn script(json: bool) {
    let c = Ctx::new(json);
    let (alice, bob) = (c.alice.as_str(), c.bob.as_str());

    // login / username
    let out = c.ok(alice, &["login"]);
    c.expect_printed(&out, "", json!({"username": "alice", "hub": c.hub.url()}));
    let out = c.ok(alice, &["username"]);
    c.expect_printed(&out, "alice\n", json!({"username": "alice"}));

    // upload: a .tar.gz (the hub builds the flist) ...
    let tgz = c.path("app.tar.gz");
    fs::write(
        &tgz,
        tar_gz(&[("etc/motd", b"hello\n"), ("bin/app", &[7u8; 3000])]),
    )
    .unwrap();
    let out = c.ok(alice, &["upload", &tgz]);
    // the published flist's URL and md5 (the md5 the hub serves for it)
    let url = format!("{}/alice/app.flist", c.hub.url());
    let (s, md5) = c.hub.get("/alice/app.flist.md5");
    assert_eq!(s, 200);
    let md5 = String::from_utf8(md5).unwrap().trim().to_string();
    assert_eq!(md5.len(), 32, "{md5}");
    if json {
        assert_eq!(out["payload"]["name"], json!("app.flist"), "{out}");
        assert_eq!(out["url"], json!(url), "{out}");
        assert_eq!(out["md5"], json!(md5), "{out}");
    } else {
        assert_eq!(out, json!(format!("url: {url}\nmd5: {md5}\n")));
    }
    // `zflist cat` of one file, by the flist's URL and of the flist downloaded: no session,
    // no store flag. The flist's backend is the harness's public 0-db, which does not
    // resolve here: its chunks come from the hub's /chunks, the failover ZFLIST_HUB names.
    let hub_url = c.hub.url();
    let cat = |flist: &str, path: &str| {
        zflist_in(
            &["cat", flist, path],
            &[("ZFLIST_HUB", hub_url.as_str())],
            None,
            c.work.path(),
        )
    };
    let out = cat(&url, "/etc/motd");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"hello\n");
    let local = c.path("app-local.flist");
    fs::write(&local, c.hub.get("/alice/app.flist").1).unwrap();
    let out = cat(&local, "bin/app");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, vec![7u8; 3000]);
    let out = cat(&url, "/etc/nothing");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("zflist: cat: ") && err.contains("/etc/nothing"),
        "{err}"
    );
    // ... and a homemade .flist whose chunks are already in the hub's store
    let src = c.work.path().join("site");
    fs::create_dir_all(src.join("docs")).unwrap();
    fs::write(src.join("docs/readme"), b"read me\n").unwrap();
    let home_flist = c.path("home.flist");
    let packed = zflist_in(
        &[
            "pack",
            src.to_str().unwrap(),
            "-o",
            &home_flist,
            "--store",
            &c.hub.store_url(),
        ],
        &[],
        None,
        c.work.path(),
    );
    assert!(packed.status.success(), "{packed:?}");
    let out = c.ok(alice, &["upload", &home_flist]);
    let (_, md5) = c.hub.get("/alice/home.flist.md5");
    let md5 = String::from_utf8(md5).unwrap().trim().to_string();
    let url = format!("{}/alice/home.flist", c.hub.url());
    if json {
        assert_eq!(
            (&out["url"], &out["md5"]),
            (&json!(url), &json!(md5)),
            "{out}"
        );
    } else {
        assert_eq!(out, json!(format!("url: {url}\nmd5: {md5}\n")));
    }
    // bob publishes something alice can promote and crosslink
    let bob_tgz = c.path("tool.tar.gz");
    fs::write(
        &bob_tgz,
        tar_gz(&[("usr/bin/tool", b"#!/bin/sh\necho tool\n")]),
    )
    .unwrap();
    c.ok(bob, &["upload", &bob_tgz]);

    // links, renames, promote, merge, tags
    c.ok(alice, &["symlink", "app.flist", "latest.flist"]);
    let out = c.ok(alice, &["readlink", "alice/latest.flist"]);
    c.expect_printed(&out, "app.flist\n", json!({"target": "app.flist"}));
    c.ok(alice, &["rename", "home.flist", "home:1.0.flist"]);
    c.ok(alice, &["promote", "bob/tool.flist", "tool.flist"]);
    c.ok(alice, &["crosslink", "bobtool.flist", "bob", "tool.flist"]);
    let out = c.ok(alice, &["readlink", "alice/bobtool.flist"]);
    c.expect_printed(
        &out,
        "../bob/tool.flist\n",
        json!({"target": "../bob/tool.flist"}),
    );
    c.ok(
        alice,
        &[
            "merge",
            "merged.flist",
            "alice/app.flist",
            "alice/home:1.0.flist",
            "bob/tool.flist",
        ],
    );
    c.ok(alice, &["tag", "v1", "app.flist", "alice", "app.flist"]);
    c.ok(alice, &["tag", "v1", "tool.flist", "bob", "tool.flist"]);
    c.ok(alice, &["untag", "v1", "tool.flist", "bob", "tool.flist"]);
    c.ok(alice, &["crosstag", "stable", "alice", "v1"]);
    let out = c.ok(alice, &["taglink", "alice/stable"]);
    c.expect_printed(&out, "alice/tags/v1\n", json!({"target": "alice/tags/v1"}));
    c.ok(alice, &["delete", "tool.flist"]);

    // ZFLIST_HUB_USER: act as an organisation the token is a member of
    let out = c.ok_env(alice, &["username"], &[("ZFLIST_HUB_USER", "acme")]);
    c.expect_printed(&out, "acme\n", json!({"username": "acme"}));
    let out = c.ok_env(alice, &["upload", &tgz], &[("ZFLIST_HUB_USER", "acme")]);
    let acme_url = format!("{}/acme/app.flist", c.hub.url());
    if json {
        assert_eq!(out["url"], json!(acme_url), "{out}");
    } else {
        assert!(
            out.as_str()
                .unwrap()
                .starts_with(&format!("url: {acme_url}\n")),
            "{out}"
        );
    }
    // ... never one it is not a member of
    let (m, _) = c.fails(
        Some(alice),
        &["username"],
        &[("ZFLIST_HUB_USER", "bob")],
        "hub",
    );
    assert!(m.starts_with("hub authentication failed"), "{m}");

    // failures: the reference's messages and exit status 1
    let (m, _) = c.fails(None, &["username"], &[], "hub");
    assert_eq!(m, "missing hub token");
    let (m, _) = c.fails(None, &["readlink", "alice/latest.flist"], &[], "hub");
    assert_eq!(m, "missing hub token");
    let (m, _) = c.fails(
        Some("not-a-token"),
        &["symlink", "app.flist", "x.flist"],
        &[],
        "hub",
    );
    assert!(m.starts_with("hub authentication failed"), "{m}");
    let (m, _) = c.fails(Some("not-a-token"), &["login"], &[], "hub");
    assert!(m.starts_with("hub authentication failed"), "{m}");
    // readlink and taglink need no valid token (no authentication check)
    let out = c.ok("not-a-token", &["readlink", "alice/latest.flist"]);
    c.expect_printed(&out, "app.flist\n", json!({"target": "app.flist"}));
    let (m, _) = c.fails(
        Some(alice),
        &["readlink", "alice/app.flist"],
        &[],
        "readlink",
    );
    assert_eq!(m, "requested flist is not a symlink, could not readlink");
    let (m, _) = c.fails(
        Some(alice),
        &["readlink", "alice/nothing.flist"],
        &[],
        "readlink",
    );
    assert!(m.contains("not found"), "{m}");
    // a refused request: the hub's body is printed (text mode) and the status is 1
    let (m, stdout) = c.fails(Some(alice), &["delete", "nothing.flist"], &[], "hub");
    assert!(m.starts_with("HTTP 404"), "{m}");
    if !json {
        let body: Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(body["status"], json!("error"), "{stdout}");
    }
    let (m, _) = c.fails(
        Some(alice),
        &["rename", "app.flist", "latest.flist"],
        &[],
        "hub",
    );
    assert!(m.starts_with("HTTP 409"), "{m}");
    let (m, _) = c.fails(Some(alice), &["refresh"], &[], "hub");
    assert!(m.contains("not supported"), "{m}");

    // the catalog afterwards
    assert_eq!(
        catalog(&c.hub, "alice"),
        vec![
            entry("app.flist", "regular", ""),
            entry("bobtool.flist", "symlink", "bob/tool.flist"),
            entry("home:1.0.flist", "regular", ""),
            entry("latest.flist", "symlink", "app.flist"),
            entry("merged.flist", "regular", ""),
            entry("stable", "taglink", "alice/tags/v1"),
            entry("v1", "tag", ""),
        ]
    );
    assert_eq!(
        catalog(&c.hub, "acme"),
        vec![entry("app.flist", "regular", "")]
    );
    // `hub ls` shows the same entries: type, size (flists), name, link target
    check_ls(&c, &c.ok(alice, &["ls"]), "alice");
    check_ls(&c, &c.ok(bob, &["ls", "alice"]), "alice");
    check_ls(
        &c,
        &c.ok_env(alice, &["ls"], &[("ZFLIST_HUB_USER", "acme")]),
        "acme",
    );
    // a repository needs no token to be listed
    let out = c.hub_as(None, &["ls", "bob"], &[]);
    assert!(out.status.success(), "{out:?}");
    if !json {
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        check_ls(&c, &Value::String(text), "bob");
    }
    let (m, _) = c.fails(None, &["ls"], &[], "hub");
    assert_eq!(m, "missing hub token");
    let (m, _) = c.fails(Some(alice), &["ls", "nobody"], &[], "ls");
    assert!(m.starts_with("nobody: HTTP 404"), "{m}");
    assert_eq!(
        catalog(&c.hub, "bob"),
        vec![entry("tool.flist", "regular", "")]
    );
    let tag = c.hub.get_json("/api/flist/alice/tags/v1");
    let links: Vec<(&str, &str)> = tag
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["name"].as_str().unwrap(), l["target"].as_str().unwrap()))
        .collect();
    assert_eq!(links, vec![("app.flist", "alice/app.flist")]);
    // the merge holds the three sources' files
    let dump = c.hub.get_json("/api/flist/alice/merged.flist");
    let mut paths: Vec<&str> = dump["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .filter(|p| ["/etc/motd", "/bin/app", "/docs/readme", "/usr/bin/tool"].contains(p))
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        vec!["/bin/app", "/docs/readme", "/etc/motd", "/usr/bin/tool"]
    );
    // the published homemade flist is served, with its content
    let (s, body) = c.hub.get("/alice/home:1.0.flist");
    assert_eq!(s, 200);
    let got = c.path("got.flist");
    fs::write(&got, body).unwrap();
    let out = zflist_in(&["inspect", &got], &[], None, c.work.path());
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("/docs/readme"));
}

#[test]
fn every_hub_subcommand_against_a_real_hub() {
    script(false);
}

#[test]
fn every_hub_subcommand_with_json_envelopes() {
    script(true);
}

/// `--hub` / `--token` flags, and `hub login --token-stdin` keeping the token in a private
/// file used when neither flag nor environment gives one; `hub logout` forgets it.
#[test]
fn flags_and_the_stored_token() {
    let hub = start_hub();
    let token = hub.token("carol", &[]);
    let home = tempfile::tempdir().unwrap();
    let url = hub.url();
    let run = |args: &[&str], stdin: Option<&str>| zflist_in(args, &[], stdin, home.path());

    // flags instead of the environment
    let out = run(&["hub", "--hub", &url, "--token", &token, "username"], None);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "carol\n");

    // a token value starting with `-` is a value, not an option: refused by the hub
    let out = run(
        &["hub", "--hub", &url, "--token", "-Cnot-a-token", "username"],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("usage"),
        "{out:?}"
    );

    // nothing stored yet
    let out = run(&["hub", "--hub", &url, "username"], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "zflist: hub: missing hub token\n"
    );

    // a bad token is refused and not stored
    let out = run(
        &["hub", "--hub", &url, "login", "--token-stdin"],
        Some("bogus\n"),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let file = home.path().join(".config/zflist/hub-tokens.json");
    assert!(!file.exists());

    let out = run(
        &["hub", "--hub", &url, "login", "--token-stdin"],
        Some(&format!("{token}\n")),
    );
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("logged in"));
    let mode = fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "token file mode {mode:o}");
    // the token never appears in the output
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&token));

    // used with ZFLIST_HUB instead of --hub, and with a trailing slash
    let out = zflist_in(
        &["hub", "username"],
        &[("ZFLIST_HUB", &format!("{url}/"))],
        None,
        home.path(),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "carol\n");
    // the environment wins over the file
    let out = zflist_in(
        &["hub", "--hub", &url, "username"],
        &[("ZFLIST_HUB_TOKEN", "wrong")],
        None,
        home.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hub authentication failed"));
    // another hub has no token
    let out = run(&["hub", "--hub", "http://127.0.0.1:9", "username"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing hub token"));

    let out = run(&["hub", "--hub", &url, "logout"], None);
    assert!(out.status.success(), "{out:?}");
    let out = run(&["hub", "--hub", &url, "username"], None);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "zflist: hub: missing hub token\n"
    );

    // the reference's `zflist <temporary-point> hub ...` form
    let out = zflist_in(
        &[
            "/tmp/unused-mnt",
            "hub",
            "--hub",
            &url,
            "--token",
            &token,
            "username",
        ],
        &[],
        None,
        home.path(),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "carol\n");
}

/// What the hub sees: the reference's user agent, `Authorization: Bearer`, the
/// `active-user` cookie, names with `:` pasted raw into the path, the merge body.
#[test]
fn requests_carry_the_reference_headers() {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..4 {
            let (s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut head = Vec::new();
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                head.push(line.trim_end().to_string());
            }
            let mut body = vec![0u8; len];
            r.read_exact(&mut body).unwrap();
            let resp = br#"{"status":"success","payload":{"username":"acme"}}"#;
            let mut w = s;
            write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                resp.len()
            )
            .unwrap();
            w.write_all(resp).unwrap();
            seen.push((head, String::from_utf8(body).unwrap()));
        }
        seen
    });
    let home = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let env = [
        ("ZFLIST_HUB", url.as_str()),
        ("ZFLIST_HUB_TOKEN", "tok-123"),
        ("ZFLIST_HUB_USER", "acme"),
    ];
    let out = zflist_in(
        &["hub", "symlink", "a:1.flist", "b:2.flist"],
        &env,
        None,
        home.path(),
    );
    assert!(out.status.success(), "{out:?}");
    let out = zflist_in(
        &["hub", "merge", "m.flist", "x/a:1.flist", "y/b.flist"],
        &env,
        None,
        home.path(),
    );
    assert!(out.status.success(), "{out:?}");
    let seen = server.join().unwrap();
    let lines: Vec<&str> = seen.iter().map(|(h, _)| h[0].as_str()).collect();
    assert_eq!(
        lines,
        vec![
            "GET /api/flist/me HTTP/1.1",
            "GET /api/flist/me/a:1.flist/link/b:2.flist HTTP/1.1",
            "GET /api/flist/me HTTP/1.1",
            "POST /api/flist/me/merge/m.flist HTTP/1.1",
        ]
    );
    for (head, _) in &seen {
        let has = |h: &str| head.iter().any(|l| l.eq_ignore_ascii_case(h));
        assert!(has("authorization: Bearer tok-123"), "{head:?}");
        assert!(has("cookie: active-user=acme"), "{head:?}");
        assert!(
            head.iter().any(|l| l
                .to_ascii_lowercase()
                .starts_with("user-agent: zflist/2.3.0")),
            "{head:?}"
        );
    }
    assert!(seen[3]
        .0
        .iter()
        .any(|l| l.eq_ignore_ascii_case("content-type: application/json")));
    assert_eq!(seen[3].1, r#"["x/a:1.flist","y/b.flist"]"#);
}
