//! The newcomer's path with the real binaries, offline: `hub-server serve` in an empty
//! directory, `hub-server user add`, sign in with the web form, upload an archive as a
//! browser does, `zflist extract <URL>` with no store; the redirected log has one plain line
//! per request; `hub-server check` judges the backends.

use std::path::Path;
use std::process::Command;

mod common;

use common::{free_port, ok, run, serve, zflist_bin, BIN};

#[tokio::test]
async fn newcomer_path_with_the_real_binaries() {
    let zflist = zflist_bin();
    let dir = tempfile::tempdir().expect("tempdir");
    let cwd = dir.path();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");

    // 1. serve with defaults (./hub-data, dir:// store, public URL from --listen).
    let server = serve(cwd, port, &[]).await;
    assert!(cwd.join("hub-data/catalog.sqlite3").is_file());
    // The banner follows the first answers by a moment.
    let mut banner = String::new();
    for _ in 0..100 {
        banner = std::fs::read_to_string(&server.log).expect("log");
        if banner.contains("hub-server user add") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(banner.contains(&format!("listening on {base}")), "{banner}");
    assert!(
        banner.contains("hub-server user add NAME --password-stdin"),
        "{banner}"
    );

    // 2. the first account, same default data directory.
    ok(&run(
        cwd,
        Path::new(BIN),
        &["user", "add", "alice", "--password-stdin", "--admin"],
        Some("alice's long password\n"),
    ));
    let list = ok(&run(cwd, Path::new(BIN), &["user", "list"], None));
    assert!(list.contains("alice\tadmin"), "{list}");
    let dup = run(
        cwd,
        Path::new(BIN),
        &["user", "add", "alice", "--password-stdin"],
        Some("another password\n"),
    );
    assert!(!dup.status.success());

    // 3. the browser: login page, form POST, session cookie, upload form.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let page = client
        .get(format!("{base}/login-method?next=/upload"))
        .send()
        .await
        .expect("login page")
        .text()
        .await
        .expect("html");
    assert!(page.contains("action=\"/login\"") && page.contains("name=\"password\""));
    let wrong = client
        .post(format!("{base}/login"))
        .header("origin", &base)
        .form(&[
            ("username", "alice"),
            ("password", "nope nope nope"),
            ("next", "/upload"),
        ])
        .send()
        .await
        .expect("login");
    assert_eq!(wrong.status(), 401);
    assert!(wrong
        .text()
        .await
        .expect("html")
        .contains("Wrong user name or password"));
    let r = client
        .post(format!("{base}/login"))
        .header("origin", &base)
        .header("referer", format!("{base}/login-method?next=/upload"))
        .form(&[
            ("username", "alice"),
            ("password", "alice's long password"),
            ("next", "/upload"),
        ])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/upload");
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("hub-session="))
        .expect("session cookie")
        .split(';')
        .next()
        .expect("pair")
        .to_string();
    let form_page = client
        .get(format!("{base}/upload"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("upload page")
        .text()
        .await
        .expect("html");
    assert!(form_page.contains("alice"), "{form_page}");
    assert!(form_page.contains("multipart/form-data"));
    // The form's target, as the page's script sends it: a job first, then the file.
    // (minijinja escapes `/` in attributes as `&#x2f;`)
    let unescaped = form_page.replace("&#x2f;", "/");
    let action = unescaped
        .split("id=\"upload-form\"")
        .next()
        .and_then(|head| head.rsplit("action=\"").next())
        .and_then(|a| a.split('"').next())
        .expect("form action")
        .to_string();
    assert_eq!(action, "/upload", "{form_page}");
    let job: serde_json::Value = client
        .post(format!("{base}/upload/job"))
        .header("cookie", &cookie)
        .header("origin", &base)
        .send()
        .await
        .expect("job")
        .json()
        .await
        .expect("job json");
    let job = job["job"].as_str().expect("job id").to_string();

    let tree = test_support::sample::sample_tree();
    let archive = test_support::sample::tar_gz(&tree);
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(archive)
            .file_name("app.tar.gz")
            .mime_str("application/gzip")
            .expect("mime"),
    );
    let r = client
        .post(format!("{base}{action}?job={job}"))
        .header("cookie", &cookie)
        .header("origin", &base)
        .header("referer", format!("{base}/upload"))
        .header("sec-fetch-site", "same-origin")
        .header("accept", "application/json")
        .multipart(form)
        .send()
        .await
        .expect("upload");
    let status = r.status();
    let body: serde_json::Value = r.json().await.expect("upload answer");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["url"], "/alice/app.flist.md", "{body}");
    let page = client
        .get(format!("{base}/alice/app.flist.md"))
        .send()
        .await
        .expect("flist page");
    assert_eq!(page.status(), 200);
    // (the template escapes `/` as `&#x2f;`)
    let html = page.text().await.expect("html").replace("&#x2f;", "/");
    assert!(html.contains("app.flist"));
    // The storage line names the hub's own chunk store, where `zflist extract` finds chunks.
    assert!(
        html.contains(&format!("id=\"storage\">{base}/chunks<")),
        "storage line: {}",
        html.lines()
            .find(|l| l.contains("Storage"))
            .unwrap_or("none")
    );
    let listing: serde_json::Value = client
        .get(format!("{base}/api/flist/alice"))
        .send()
        .await
        .expect("listing")
        .json()
        .await
        .expect("json");
    assert_eq!(listing[0]["name"], "app.flist", "{listing}");

    // 4. zflist extract <URL> with no other flag restores the tree.
    let out = cwd.join("out");
    ok(&run(
        cwd,
        &zflist,
        &["extract", &format!("{base}/alice/app.flist"), "out"],
        None,
    ));
    assert_eq!(test_support::sample::read_tree(&out), tree);

    // The redirected log: one plain line per request, no escape characters.
    for _ in 0..7 {
        let r = client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("healthz");
        assert_eq!(r.status(), 200);
    }
    drop(server);
    let log = std::fs::read_to_string(cwd.join(format!("serve-{port}.log"))).expect("log");
    assert!(
        !log.contains('\u{1b}'),
        "escape characters in the log:\n{log}"
    );
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("hub::request")).collect();
    assert_eq!(
        lines.iter().filter(|l| l.contains("path=/healthz")).count(),
        7 + 1, // and the one that waited for start-up
        "{log}"
    );
    let upload = lines
        .iter()
        .find(|l| l.contains("method=POST path=/upload "))
        .expect("upload line");
    for f in ["method=POST", "status=200", "bytes=", "duration_ms="] {
        assert!(upload.contains(f), "{upload} lacks {f}");
    }
    assert!(
        upload.contains("user=alice") || upload.contains("user=\"alice\""),
        "{upload} lacks the user"
    );
    assert!(
        !upload.contains("job=-"),
        "the upload names its job: {upload}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains("path=/login ")).count(),
        2,
        "{log}"
    );

    // check: the flists' backend is this hub's /chunks, which it serves.
    let public = format!("--public-url={base}");
    let rep = ok(&run(cwd, Path::new(BIN), &["check", &public], None));
    assert!(rep.contains("0 unreachable backends: clean"), "{rep}");
    // Seen from another public URL, that backend is just a server that no longer answers.
    let rep = run(
        cwd,
        Path::new(BIN),
        &["check", "--public-url", "https://hub.example.org"],
        None,
    );
    assert!(!rep.status.success());
    let text = String::from_utf8_lossy(&rep.stderr);
    assert!(
        text.contains("backend no reader can reach") && text.contains("alice/app.flist"),
        "{text}"
    );

    // Administration commands refuse a directory without a catalog.
    let elsewhere = cwd.join("not-a-hub");
    let r = run(
        cwd,
        Path::new(BIN),
        &[
            "token",
            "create",
            "--user",
            "alice",
            "--data-dir",
            elsewhere.to_str().expect("utf8"),
        ],
        None,
    );
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("no hub catalog"));
    assert!(!elsewhere.exists(), "nothing created");
    // A token's expiry reads as a date.
    let r = ok(&run(
        cwd,
        Path::new(BIN),
        &["token", "create", "--user", "alice", "--ttl", "2d"],
        None,
    ));
    assert!(r.contains("UTC (in 2 days)"), "{r}");
}

#[tokio::test]
async fn a_busy_port_is_reported_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = held.local_addr().expect("addr").port();
    let o = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.matches("in use").count(),
        1,
        "the cause once, on one line: {err}"
    );
    assert!(
        !err.contains("Caused by") && !err.contains("backtrace"),
        "{err}"
    );
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[tokio::test]
async fn json_logs_for_log_shippers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let server = serve(dir.path(), port, &["--log-format", "json"]).await;
    reqwest::get(format!("http://127.0.0.1:{port}/api/repositories"))
        .await
        .expect("get");
    drop(server);
    let log = std::fs::read_to_string(dir.path().join(format!("serve-{port}.log"))).expect("log");
    let line = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
        .find(|v| v["fields"]["path"] == "/api/repositories")
        .expect("request line");
    assert_eq!(line["target"], "hub::request");
    assert_eq!(line["fields"]["status"], 200);
    assert_eq!(line["fields"]["method"], "GET");
}

/// A hub started against a store that does not answer says so at start (the operator
/// learns it before the first upload fails), and not when the store answers.
#[tokio::test]
async fn a_hub_started_against_a_dead_store_warns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dead = free_port();
    let store = format!("zdb://127.0.0.1:{dead}/ns");
    let port = free_port();
    let server = serve(dir.path(), port, &["--store", &store]).await;
    let log = std::fs::read_to_string(&server.log).expect("log");
    let warning = log
        .lines()
        .find(|l| l.contains("the chunk store does not answer"))
        .unwrap_or_else(|| panic!("no warning about the dead store: {log}"));
    assert!(
        warning.contains("WARN") && warning.contains(&format!("127.0.0.1:{dead}")),
        "{warning}"
    );
    drop(server);
    // The default store answers: no such warning.
    let other = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let server = serve(other.path(), port, &[]).await;
    let log = std::fs::read_to_string(&server.log).expect("log");
    assert!(!log.contains("does not answer"), "{log}");
}
