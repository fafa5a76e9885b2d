//! Mirrors (issue 16): two real `hub-server` processes, each with its own data directory and
//! `dir://` store. The mirror follows every kind of change of the primary within a sync
//! interval, refuses writes, survives `kill -9` in the middle of a sync without ever showing
//! an entry whose flist file is incomplete, and the old hub's clone script (list
//! repositories, list each, download each flist) reproduces the primary's public tree.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hub_repo::{Actor, Hub};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_hub-server");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn spawn(data: &Path, port: u16, extra: &[&str]) -> Proc {
    spawn_with_env(data, port, extra, &[]).await
}

async fn spawn_with_env(data: &Path, port: u16, extra: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.envs(env.iter().copied());
    cmd.args(["serve", "--data-dir"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")]);
    if !extra.contains(&"--public-url") {
        // One public URL for primary and mirrors: their `.txt`/`.json` name it.
        cmd.args(["--public-url", "http://hub.example.org"]);
    }
    let child = cmd
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn hub-server");
    let p = Proc(child);
    let client = reqwest::Client::new();
    for _ in 0..400 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/api/repositories"))
            .send()
            .await
        {
            if r.status().is_success() {
                return p;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("hub-server did not come up on port {port}");
}

fn token(data: &Path, user: &str) -> String {
    if !data.join("catalog.sqlite3").exists() {
        // `token create` refuses a directory without a catalog.
        drop(hub_repo::Hub::open(data).expect("create the catalog"));
    }
    test_support::hub::issue_token(Path::new(BIN), data, user, &[])
}

async fn upload(c: &reqwest::Client, base: &str, tok: &str, name: &str) {
    let archive = std::fs::read(test_support::fixture("fixture-tree.tar.gz")).expect("fixture");
    let part = reqwest::multipart::Part::bytes(archive).file_name(name.to_string());
    let r = c
        .post(format!("{base}/api/flist/me/upload"))
        .bearer_auth(tok)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
}

async fn call(c: &reqwest::Client, base: &str, tok: &str, method: reqwest::Method, path: &str) {
    let r = c
        .request(method, format!("{base}{path}"))
        .bearer_auth(tok)
        .send()
        .await
        .expect("write");
    assert_eq!(r.status(), 200, "{path}: {:?}", r.text().await);
}

/// Status and body of `GET path`.
async fn get(c: &reqwest::Client, base: &str, path: &str) -> (u16, Vec<u8>) {
    let r = c.get(format!("{base}{path}")).send().await.expect("get");
    (r.status().as_u16(), r.bytes().await.expect("body").to_vec())
}

async fn json(c: &reqwest::Client, base: &str, path: &str) -> Value {
    let (s, b) = get(c, base, path).await;
    assert_eq!(s, 200, "{path}: {}", String::from_utf8_lossy(&b));
    serde_json::from_slice(&b).expect("json")
}

/// Every public read path of a hub's tree: listings, tags, per-entry API answers and
/// downloads (with companions), walked from the primary.
async fn public_paths(c: &reqwest::Client, base: &str) -> Vec<String> {
    let mut paths = vec![
        "/api/repositories".to_string(),
        "/api/flist".into(),
        "/api/fileslist".into(),
    ];
    let repos = json(c, base, "/api/repositories").await;
    for r in repos.as_array().expect("array") {
        let repo = r["name"].as_str().expect("name");
        paths.push(format!("/api/flist/{repo}"));
        let items = json(c, base, &format!("/api/flist/{repo}")).await;
        for it in items.as_array().expect("array") {
            let name = it["name"].as_str().expect("name");
            match it["type"].as_str().expect("type") {
                "tag" => paths.push(format!("/api/flist/{repo}/tags/{name}")),
                "taglink" => paths.push(format!("/api/flist/{repo}/{name}/taglink")),
                _ => {
                    for suffix in ["", "/light", "/metadata"] {
                        paths.push(format!("/api/flist/{repo}/{name}{suffix}"));
                    }
                    for suffix in ["", ".md5", ".json", ".txt"] {
                        paths.push(format!("/{repo}/{name}{suffix}"));
                    }
                }
            }
        }
    }
    paths
}

/// Paths whose answers differ between the two hubs (empty when the mirror has converged).
async fn differences(
    c: &reqwest::Client,
    primary: &str,
    mirror: &str,
    extra: &[String],
) -> Vec<String> {
    let mut paths = public_paths(c, primary).await;
    paths.extend(extra.iter().cloned());
    let mut diff = Vec::new();
    for p in paths {
        if get(c, primary, &p).await != get(c, mirror, &p).await {
            diff.push(p);
        }
    }
    diff
}

async fn converge(
    c: &reqwest::Client,
    primary: &str,
    mirror: &str,
    extra: &[String],
    within: Duration,
) {
    let start = Instant::now();
    loop {
        let d = differences(c, primary, mirror, extra).await;
        if d.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < within,
            "mirror still differs after {:?}: {d:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn mirror_follows_every_change_and_refuses_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pdata = dir.path().join("primary");
    let mdata = dir.path().join("mirror");
    let alice = token(&pdata, "alice");
    let bob = token(&pdata, "bob");
    let (pport, mport) = (free_port(), free_port());
    let p = format!("http://127.0.0.1:{pport}");
    let m = format!("http://127.0.0.1:{mport}");
    let _primary = spawn(&pdata, pport, &[]).await;
    let c = reqwest::Client::new();
    use reqwest::Method as M;

    // A tree with every kind of entry before the mirror exists.
    upload(&c, &p, &alice, "a.tar.gz").await;
    upload(&c, &p, &alice, "b.tar.gz").await;
    upload(&c, &p, &bob, "c.tar.gz").await;
    call(
        &c,
        &p,
        &alice,
        M::GET,
        "/api/flist/me/a.flist/link/latest.flist",
    )
    .await;
    call(
        &c,
        &p,
        &alice,
        M::GET,
        "/api/flist/me/x.flist/crosslink/bob/c.flist",
    )
    .await;
    call(
        &c,
        &p,
        &alice,
        M::GET,
        "/api/flist/me/v1/a.flist/tag/alice/a.flist",
    )
    .await;
    call(
        &c,
        &p,
        &bob,
        M::GET,
        "/api/flist/me/current/crosstag/alice/v1",
    )
    .await;

    let _mirror = spawn(&mdata, mport, &["--mirror-of", &p, "--sync-interval", "1s"]).await;
    let extra = vec![
        "/api/flist/alice/tags/v1/a.flist".to_string(),
        "/bob/current".into(),
    ];
    converge(&c, &p, &m, &extra, Duration::from_secs(20)).await;

    // Changes while the mirror runs: rename, promote, delete, tag removal, new upload.
    call(
        &c,
        &p,
        &alice,
        M::GET,
        "/api/flist/me/b.flist/rename/b2.flist",
    )
    .await;
    call(
        &c,
        &p,
        &bob,
        M::GET,
        "/api/flist/me/promote/alice/a.flist/pa.flist",
    )
    .await;
    upload(&c, &p, &alice, "d.tar.gz").await;
    call(&c, &p, &alice, M::DELETE, "/api/flist/me/latest.flist").await;
    call(
        &c,
        &p,
        &alice,
        M::GET,
        "/api/flist/me/v2/b2.flist/tag/alice/b2.flist",
    )
    .await;
    // Within about one sync interval (1 s, plus the time to compare) the answers are equal.
    converge(&c, &p, &m, &extra, Duration::from_secs(4)).await;
    for gone in [
        "/api/flist/alice/latest.flist",
        "/alice/latest.flist",
        "/alice/b.flist",
    ] {
        assert_eq!(
            get(&c, &m, gone).await.0,
            404,
            "{gone} must be gone on the mirror"
        );
    }
    assert_eq!(
        get(&c, &m, "/bob/pa.flist.md5").await,
        get(&c, &p, "/alice/a.flist.md5").await
    );

    // Every action travelled through the primary's change feed, with a monotonic cursor.
    let feed = json(&c, &p, "/api/changes?since=0").await;
    let ids: Vec<i64> = feed["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|x| x["id"].as_i64().expect("id"))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(feed["cursor"], feed["latest"]);
    let actions: Vec<&str> = feed["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|x| x["action"].as_str().expect("a"))
        .collect();
    for a in [
        "upload",
        "link",
        "crosslink",
        "tag-add",
        "crosstag",
        "rename",
        "promote",
        "delete",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    assert!(!feed.to_string().contains("acting_as"));
    let tail = json(
        &c,
        &p,
        &format!("/api/changes?since={}", ids[ids.len() - 2]),
    )
    .await;
    assert_eq!(tail["changes"].as_array().expect("changes").len(), 1);
    assert_eq!(get(&c, &p, "/api/changes?since=abc").await.0, 400);

    // Mirror status.
    let st = json(&c, &m, "/api/mirror").await;
    assert_eq!(st["upstream"], p.as_str());
    assert!(
        st["last_success"].as_i64().is_some() && st["last_error"].is_null(),
        "{st}"
    );
    assert_eq!(st["cursor"], feed["latest"]);
    assert_eq!(get(&c, &p, "/api/mirror").await.0, 404);
    // ... and on /metrics, in the one exposition (a single `# EOF`).
    let (_, metrics) = get(&c, &m, "/metrics").await;
    let metrics = String::from_utf8(metrics).expect("utf8");
    assert!(metrics.contains("hub_mirror_up 1"), "{metrics}");
    assert!(
        metrics.contains(&format!("hub_mirror_cursor {}", feed["latest"])),
        "{metrics}"
    );
    assert!(metrics.contains("hub_mirror_syncs_total "), "{metrics}");
    assert!(metrics.contains("hub_http_requests_total"), "{metrics}");
    assert_eq!(metrics.matches("# EOF").count(), 1);
    let (_, pm) = get(&c, &p, "/metrics").await;
    assert!(!String::from_utf8_lossy(&pm).contains("hub_mirror_"));
    // ... and on the web pages.
    let (_, home) = get(&c, &m, "/").await;
    let home = String::from_utf8_lossy(&home);
    assert!(
        home.contains("Read-only mirror of") && home.contains(&format!("127.0.0.1:{pport}</a>")),
        "{home}"
    );
    assert!(!String::from_utf8_lossy(&get(&c, &p, "/").await.1).contains("Read-only mirror"));

    // Writes to the mirror are refused, naming the primary (even with a valid token).
    for (method, path) in [
        (M::POST, "/api/flist/me/upload"),
        (M::GET, "/api/flist/me/a.flist/link/z.flist"),
        (M::DELETE, "/api/flist/me/a.flist"),
        (M::PUT, "/api/flist/me/promote/alice/a.flist/q.flist"),
    ] {
        let r = c
            .request(method, format!("{m}{path}"))
            .bearer_auth(&alice)
            .send()
            .await
            .expect("write");
        assert_eq!(r.status(), 403, "{path}");
        let body: Value = r.json().await.expect("json");
        assert!(
            body["message"].as_str().expect("message").contains(&p),
            "{body}"
        );
    }

    // The old hub's hub-clone.py against the mirror: list repositories, list each, download
    // each regular flist, recreate links as links and tags with their links; the tree equals
    // the one the same walk makes of the primary.
    let cloned = clone_tree(&c, &m).await;
    assert_eq!(cloned, clone_tree(&c, &p).await);
    for (k, want) in [
        ("alice/b2.flist", None),
        ("alice/d.flist", None),
        ("alice/x.flist", Some(Cloned::Link("bob/c.flist".into()))),
        ("bob/current", Some(Cloned::Link("alice/tags/v1".into()))),
        (
            "alice/tags/v2/b2.flist",
            Some(Cloned::Link("alice/b2.flist".into())),
        ),
    ] {
        let got = cloned.get(k).unwrap_or_else(|| panic!("{k} not cloned"));
        match want {
            Some(w) => assert_eq!(got, &w, "{k}"),
            None => assert!(matches!(got, Cloned::File(_)), "{k}: {got:?}"),
        }
    }

    // A stored file damaged on the mirror's disk: the answers about it name no server path.
    upload(&c, &p, &alice, "e.tar.gz").await;
    let start = Instant::now();
    while !String::from_utf8_lossy(&get(&c, &m, "/api/flist/alice").await.1).contains("e.flist") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "e.flist not mirrored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = json(&c, &m, "/api/changes/repository/alice").await;
    let sha = rows["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["name"] == "e.flist")
        .and_then(|e| e["sha256"].as_str())
        .expect("sha256")
        .to_string();
    let stored = mdata.join("flists").join(&sha[..2]).join(&sha);
    assert!(stored.is_file(), "{}", stored.display());
    std::fs::write(&stored, b"not an flist").expect("damage");
    let root = dir.path().to_string_lossy().to_string();
    for path in [
        "/api/flist/alice/e.flist",
        "/api/flist/alice/e.flist/metadata",
        "/api/flist/alice/e.flist/light",
    ] {
        let (_, body) = get(&c, &m, path).await;
        let body = String::from_utf8_lossy(&body);
        assert!(
            !body.contains(&root) && !body.contains("flists/"),
            "{path} shows a server path: {body}"
        );
    }
}

/// One entry of a tree cloned the way the old hub's `tools/hub-clone.py` does.
#[derive(Debug, PartialEq, Eq)]
enum Cloned {
    /// A regular flist: its bytes.
    File(Vec<u8>),
    /// A link (symlink, crosslink, taglink, or a tag's link): its target as listed.
    Link(String),
}

/// `/api/repositories`, then `/api/flist/<repo>` for each: regular flists downloaded from
/// `/<repo>/<name>`, links kept as links (a link's download must be its target's bytes),
/// tags listed with `/api/flist/<repo>/tags/<tag>`.
async fn clone_tree(c: &reqwest::Client, base: &str) -> BTreeMap<String, Cloned> {
    let mut out = BTreeMap::new();
    let mut links = Vec::new();
    for r in json(c, base, "/api/repositories")
        .await
        .as_array()
        .expect("array")
    {
        let repo = r["name"].as_str().expect("name");
        for it in json(c, base, &format!("/api/flist/{repo}"))
            .await
            .as_array()
            .expect("array")
        {
            let name = it["name"].as_str().expect("name");
            let target = it["target"].as_str().unwrap_or_default().to_string();
            match it["type"].as_str().expect("type") {
                "regular" => {
                    let (s, body) = get(c, base, &format!("/{repo}/{name}")).await;
                    assert_eq!(s, 200, "{repo}/{name}");
                    out.insert(format!("{repo}/{name}"), Cloned::File(body));
                }
                "symlink" => {
                    let full = if target.contains('/') {
                        target.clone()
                    } else {
                        format!("{repo}/{target}")
                    };
                    links.push((format!("{repo}/{name}"), full));
                    out.insert(format!("{repo}/{name}"), Cloned::Link(target));
                }
                "taglink" => {
                    out.insert(format!("{repo}/{name}"), Cloned::Link(target));
                }
                "tag" => {
                    for l in json(c, base, &format!("/api/flist/{repo}/tags/{name}"))
                        .await
                        .as_array()
                        .expect("array")
                    {
                        let ln = l["name"].as_str().expect("name");
                        let lt = l["target"].as_str().expect("target").to_string();
                        out.insert(format!("{repo}/tags/{name}/{ln}"), Cloned::Link(lt));
                    }
                }
                other => panic!("unexpected entry type {other}"),
            }
        }
    }
    for (link, target) in links {
        assert_eq!(
            get(c, base, &format!("/{link}")).await,
            get(c, base, &format!("/{target}")).await,
            "{link} -> {target}"
        );
    }
    out
}

/// Seeds `repos` × `per` distinct flists (the fixture with a distinguishing metadata key) plus
/// a link in each repository, straight into a stopped primary's data directory.
fn seed(data: &Path, repos: usize, per: usize) {
    let hub = Hub::open(data).expect("open");
    let mut flist =
        hub_repo::inspect::open_flist(&test_support::fixture("fixture.flist")).expect("fixture");
    for r in 0..repos {
        let repo = format!("user{r}");
        let actor = Actor::new(repo.clone(), vec![]);
        for i in 0..per {
            flist.metadata.set("seed", format!("{repo}/{i}"));
            hub.catalog()
                .store_flist(&actor, &repo, &format!("f{i}.flist"), &flist, None)
                .expect("store");
        }
        hub.catalog()
            .link(&actor, &repo, "f0.flist", "latest.flist")
            .expect("link");
    }
}

/// Opens the (stopped) mirror's data directory: every regular entry's file is present and
/// hashes to its content address.
fn assert_complete(data: &Path) -> usize {
    let hub = Hub::open(data).expect("open mirror data");
    let report = hub.integrity_check().expect("check");
    assert!(
        report.is_clean(),
        "mirror shows an entry without its complete file: {report:?}"
    );
    hub.catalog().repositories().expect("repos").len()
}

#[tokio::test]
async fn mirror_killed_mid_sync_converges_and_never_shows_partial_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pdata = dir.path().join("primary");
    let mdata = dir.path().join("mirror");
    seed(&pdata, 10, 30);
    let (pport, mport) = (free_port(), free_port());
    let p = format!("http://127.0.0.1:{pport}");
    let m = format!("http://127.0.0.1:{mport}");
    let _primary = spawn(&pdata, pport, &[]).await;
    let c = reqwest::Client::new();
    let args = ["--mirror-of", p.as_str(), "--sync-interval", "1s"];

    let mut interrupted = 0;
    for round in 0..3 {
        let mut mirror = spawn(&mdata, mport, &args).await;
        // Wait for the sync to be under way (files being fetched), then pull the plug.
        let start = Instant::now();
        let mut busy = false;
        while start.elapsed() < Duration::from_secs(20) {
            let (s, b) = get(&c, &m, "/api/mirror").await;
            if s == 200 {
                let st: Value = serde_json::from_slice(&b).expect("json");
                if st["pending_files"].as_u64().unwrap_or(0) > 0
                    && st["pending_files"].as_u64().unwrap_or(0) < 300 - 20 * round
                {
                    busy = st["syncs"] == 0;
                    break;
                }
                if st["syncs"].as_u64().unwrap_or(0) > 0 {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        mirror.0.kill().expect("kill -9");
        mirror.0.wait().expect("reap");
        if busy {
            interrupted += 1;
        }
        let repos = assert_complete(&mdata);
        eprintln!("round {round}: killed mid-sync: {busy}, {repos} repositories visible");
    }
    assert!(interrupted >= 1, "no kill landed in the middle of a sync");

    // After a restart the mirror converges to the primary's tree.
    let _mirror = spawn(&mdata, mport, &args).await;
    converge(&c, &p, &m, &[], Duration::from_secs(60)).await;
    drop(_mirror);
    assert_eq!(assert_complete(&mdata), 10);
}

/// An "old hub" in front of `upstream`: every request is passed on (one per connection),
/// except the change feed, which answers 404 as on the old hub. Counts flist downloads
/// (`GET /<repo>/<name>.flist`).
async fn old_hub_proxy(upstream: u16) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let downloads = std::sync::Arc::new(AtomicUsize::new(0));
    let count = downloads.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match client.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head).to_string();
                let path = text.split(' ').nth(1).unwrap_or("/").to_string();
                if path.starts_with("/api/changes") {
                    let _ = client
                        .write_all(
                            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                    return;
                }
                if !path.starts_with("/api/") && path.ends_with(".flist") {
                    count.fetch_add(1, Ordering::SeqCst);
                }
                // One request per connection: the upstream closes after answering.
                let (head_text, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
                let mut forwarded: String = head_text
                    .split("\r\n")
                    .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
                    .map(|l| format!("{l}\r\n"))
                    .collect();
                forwarded.push_str("connection: close\r\n\r\n");
                forwarded.push_str(rest);
                let Ok(mut up) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    return;
                };
                if up.write_all(forwarded.as_bytes()).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
            });
        }
    });
    (port, downloads)
}

async fn wait_syncs(c: &reqwest::Client, m: &str, n: u64) -> Value {
    let start = Instant::now();
    loop {
        let (s, b) = get(c, m, "/api/mirror").await;
        if s == 200 {
            let st: Value = serde_json::from_slice(&b).expect("json");
            if st["syncs"].as_u64().unwrap_or(0) >= n {
                return st;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "no sync: {st}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Without `/api/changes` (an old hub), `--mirror-of` mirrors by full listing; turning
/// `--mirror-chunks` on re-syncs every flist with its chunks, and later syncs download
/// nothing again (files are recognised by md5).
#[tokio::test]
async fn mirror_of_an_old_hub_by_full_listing_with_and_without_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pdata = dir.path().join("primary");
    let mdata = dir.path().join("mirror");
    let alice = token(&pdata, "alice");
    let bob = token(&pdata, "bob");
    let (pport, mport) = (free_port(), free_port());
    let p = format!("http://127.0.0.1:{pport}");
    let m = format!("http://127.0.0.1:{mport}");
    let _primary = spawn(&pdata, pport, &[]).await;
    let c = reqwest::Client::new();
    use reqwest::Method as M;
    upload(&c, &p, &alice, "a.tar.gz").await;
    upload(&c, &p, &bob, "c.tar.gz").await;
    call(
        &c,
        &p,
        &alice,
        M::GET,
        "/api/flist/me/a.flist/link/latest.flist",
    )
    .await;
    call(
        &c,
        &p,
        &alice,
        M::GET,
        "/api/flist/me/x.flist/crosslink/bob/c.flist",
    )
    .await;
    call(
        &c,
        &p,
        &alice,
        M::GET,
        "/api/flist/me/v1/a.flist/tag/alice/a.flist",
    )
    .await;
    let (oport, downloads) = old_hub_proxy(pport).await;
    let old = format!("http://127.0.0.1:{oport}");
    assert_eq!(get(&c, &old, "/api/changes?since=0").await.0, 404);

    let args = ["--mirror-of", old.as_str(), "--sync-interval", "1s"];
    let mirror = spawn(&mdata, mport, &args).await;
    let st = wait_syncs(&c, &m, 1).await;
    assert_eq!(st["mode"], "full", "{st}");
    assert_eq!(clone_tree(&c, &m).await, clone_tree(&c, &p).await);
    drop(mirror);

    // The same mirror with --mirror-chunks: every flist stamped with its own backend.
    // Its own public URL: the primary's backend (http://hub.example.org/chunks) cannot be
    // reached from here, so the chunks come from the upstream's /chunks/.
    let mut with_chunks = args.to_vec();
    with_chunks.extend([
        "--mirror-chunks",
        "--public-url",
        "http://mirror.example.org",
    ]);
    let _mirror = spawn(&mdata, mport, &with_chunks).await;
    let st = wait_syncs(&c, &m, 1).await;
    assert_eq!(st["chunks"], true, "{st}");
    assert!(st["chunks_copied"].as_u64().unwrap_or(0) > 0, "{st}");
    let md = json(&c, &m, "/api/flist/alice/a.flist/metadata").await;
    assert_eq!(
        md["backend"]["url"], "http://mirror.example.org/chunks",
        "{md}"
    );
    assert_eq!(
        md["backend-mirrors"][0]["url"], "http://hub.example.org/chunks",
        "{md}"
    );
    let (mtree, ptree) = (clone_tree(&c, &m).await, clone_tree(&c, &p).await);
    assert_eq!(
        mtree.keys().collect::<Vec<_>>(),
        ptree.keys().collect::<Vec<_>>()
    );
    for (k, v) in &ptree {
        match v {
            Cloned::Link(_) => assert_eq!(&mtree[k], v, "{k}"),
            Cloned::File(bytes) => assert_ne!(&mtree[k], &Cloned::File(bytes.clone()), "{k}"),
        }
    }
    // Later syncs recognise the stamped copies by the primary's md5: nothing is downloaded.
    let before = downloads.load(std::sync::atomic::Ordering::SeqCst);
    let st = wait_syncs(&c, &m, st["syncs"].as_u64().unwrap_or(1) + 2).await;
    assert!(st["last_error"].is_null(), "{st}");
    assert_eq!(
        downloads.load(std::sync::atomic::Ordering::SeqCst),
        before,
        "flists downloaded again"
    );
}

/// A mirror that followed the change feed without chunks, restarted with `--mirror-chunks`,
/// re-syncs every repository (not only those changed since its cursor), copies only the
/// chunks its store lacks, and serves each flist stamped with its own backend.
#[tokio::test]
async fn turning_mirror_chunks_on_restamps_what_was_already_mirrored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pdata = dir.path().join("primary");
    let mdata = dir.path().join("mirror");
    let alice = token(&pdata, "alice");
    let (pport, mport) = (free_port(), free_port());
    let p = format!("http://127.0.0.1:{pport}");
    let m = format!("http://127.0.0.1:{mport}");
    let _primary = spawn(&pdata, pport, &["--public-url", &p]).await;
    let c = reqwest::Client::new();
    upload(&c, &p, &alice, "a.tar.gz").await;
    let args = [
        "--mirror-of",
        p.as_str(),
        "--sync-interval",
        "1s",
        "--public-url",
        &m,
    ];
    let mirror = spawn(&mdata, mport, &args).await;
    wait_syncs(&c, &m, 1).await;
    assert_eq!(
        get(&c, &m, "/alice/a.flist").await,
        get(&c, &p, "/alice/a.flist").await
    );
    // Without its chunks the mirror cannot make the entry's .fl: a clear 409 (the .flist,
    // whose backend is the primary's, is what to fetch there).
    let (status, body) = get(&c, &m, "/alice/a.fl").await;
    let body = String::from_utf8_lossy(&body).replace("&#x27;", "'");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("not all in the hub's store"), "{body}");
    drop(mirror);

    // Half of the chunks are already in the mirror's store (as after an interrupted copy):
    // only the others are copied.
    let all = chunk_files(&pdata.join("chunks"));
    assert!(all.len() >= 2, "{all:?}");
    let mut present = 0;
    for f in all.iter().step_by(2) {
        let rel = f.strip_prefix(pdata.join("chunks")).expect("rel");
        let dest = mdata.join("chunks").join(rel);
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        std::fs::copy(f, &dest).expect("copy");
        present += 1;
    }
    let mut with_chunks = args.to_vec();
    with_chunks.push("--mirror-chunks");
    let _mirror = spawn(&mdata, mport, &with_chunks).await;
    let st = wait_syncs(&c, &m, 1).await;
    assert_eq!(
        st["chunks_copied"].as_u64(),
        Some((all.len() - present) as u64),
        "{st}"
    );
    assert_eq!(chunk_files(&mdata.join("chunks")).len(), all.len());
    let md = json(&c, &m, "/api/flist/alice/a.flist/metadata").await;
    assert_eq!(md["backend"]["url"], format!("{m}/chunks"), "{md}");
    assert_eq!(
        md["backend-mirrors"][0]["url"],
        format!("{p}/chunks"),
        "{md}"
    );
    // With them, the mirrored entry is served as .fl too, routed to the mirror's own
    // chunk endpoint, with the primary's blocks and tree.
    let (status, mirrored) = get(&c, &m, "/alice/a.fl").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&mirrored));
    let (status, original) = get(&c, &p, "/alice/a.fl").await;
    assert_eq!(status, 200);
    let open = |bytes: &[u8], name: &str| {
        let f = dir.path().join(name);
        std::fs::write(&f, bytes).expect("write");
        flist_format::Flist::open(&f).expect("an .fl")
    };
    let (mirrored, original) = (open(&mirrored, "m.fl"), open(&original, "p.fl"));
    assert_eq!(mirrored.metadata.routes.len(), 1);
    assert_eq!(mirrored.metadata.routes[0].url, format!("{m}/chunks"));
    assert_eq!(original.metadata.routes[0].url, format!("{p}/chunks"));
    let same = flist_format::diff::DiffOptions::default();
    let d = flist_format::diff::diff(&original.tree, &mirrored.tree, &same);
    assert!(d.is_empty(), "same tree and blocks: {d:?}");
}

/// Every chunk file under a `dir://` store.
fn chunk_files(store: &Path) -> std::collections::BTreeSet<std::path::PathBuf> {
    let mut out = std::collections::BTreeSet::new();
    for d in std::fs::read_dir(store).expect("store").flatten() {
        if d.path().is_dir() {
            for f in std::fs::read_dir(d.path()).expect("prefix").flatten() {
                out.insert(f.path());
            }
        }
    }
    out
}

/// With `--mirror-chunks`, an flist whose chunk the primary lost never becomes visible on
/// the mirror (the status says why); the other repositories sync; once the chunk is back,
/// the flist appears.
#[tokio::test]
async fn chunk_mirror_never_shows_an_flist_without_its_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pdata = dir.path().join("primary");
    let mdata = dir.path().join("mirror");
    let alice = token(&pdata, "alice");
    let bob = token(&pdata, "bob");
    let (pport, mport) = (free_port(), free_port());
    let p = format!("http://127.0.0.1:{pport}");
    let m = format!("http://127.0.0.1:{mport}");
    let _primary = spawn(&pdata, pport, &["--public-url", &p]).await;
    let c = reqwest::Client::new();
    upload(&c, &p, &bob, "c.tar.gz").await;
    let shared = chunk_files(&pdata.join("chunks"));
    // alice's own content: chunks bob's flist does not share.
    let src = dir.path().join("alice-src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("only-alice"), vec![7u8; 700_000]).expect("write");
    let archive = dir.path().join("alice.tar.gz");
    let tar = Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .expect("tar");
    assert!(tar.success());
    let part = reqwest::multipart::Part::bytes(std::fs::read(&archive).expect("archive"))
        .file_name("own.tar.gz");
    let r = c
        .post(format!("{p}/api/flist/me/upload"))
        .bearer_auth(&alice)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 200);
    let own: Vec<_> = chunk_files(&pdata.join("chunks"))
        .difference(&shared)
        .cloned()
        .collect();
    assert!(!own.is_empty());
    let lost = own[0].clone();
    let kept = dir.path().join("kept-chunk");
    std::fs::rename(&lost, &kept).expect("lose a chunk");

    let args = [
        "--mirror-of",
        p.as_str(),
        "--sync-interval",
        "1s",
        "--public-url",
        &m,
        "--mirror-chunks",
    ];
    let _mirror = spawn(&mdata, mport, &args).await;
    let start = Instant::now();
    let st = loop {
        let st = json(&c, &m, "/api/mirror").await;
        if st["failures"].as_u64().unwrap_or(0) >= 2 {
            break st;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let why = st["last_error"].as_str().unwrap_or_default();
    assert!(why.contains("missing"), "{st}");
    assert!(
        !why.contains(&dir.path().to_string_lossy().to_string()),
        "{st}"
    );
    assert_eq!(get(&c, &m, "/api/flist/bob/c.flist").await.0, 200);
    assert_eq!(get(&c, &m, "/alice/own.flist").await.0, 404);

    std::fs::rename(&kept, &lost).expect("restore the chunk");
    let start = Instant::now();
    while get(&c, &m, "/alice/own.flist").await.0 != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "alice/own.flist never synced"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let st = json(&c, &m, "/api/mirror").await;
    let md = json(&c, &m, "/api/flist/alice/own.flist/metadata").await;
    assert_eq!(md["backend"]["url"], format!("{m}/chunks"), "{md} {st}");
    // Only the stamped copies are kept: the primary's files are not left behind (nothing for
    // `gc` to collect).
    for repo in ["alice", "bob"] {
        let rows = json(&c, &p, &format!("/api/changes/repository/{repo}")).await;
        for b in rows["blobs"].as_array().expect("blobs") {
            let sha = b["sha256"].as_str().expect("sha256");
            assert!(
                !mdata.join("flists").join(&sha[..2]).join(sha).exists(),
                "the primary's {repo} file {sha} is kept on the mirror"
            );
        }
    }
    let name = lost
        .file_name()
        .expect("name")
        .to_string_lossy()
        .to_string();
    assert_eq!(
        get(&c, &m, &format!("/chunks/{}/{name}", &name[..2])).await,
        (200, std::fs::read(&lost).expect("chunk"))
    );
}

/// Runs `hub-server repo visibility` on `data` (the server running on it notices within 2 s).
fn visibility(data: &Path, repo: &str, v: &str) {
    let out = Command::new(BIN)
        .args(["repo", "visibility", "--data-dir"])
        .arg(data)
        .args([repo, v])
        .output()
        .expect("hub-server repo visibility");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until `GET base path` answers `status`.
async fn wait_status(c: &reqwest::Client, base: &str, path: &str, status: u16) {
    let start = Instant::now();
    loop {
        let (s, _) = get(c, base, path).await;
        if s == status {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{base}{path} still answers {s}, not {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Is `repo` in the mirror's catalog (whatever anyone may read of it)?
fn holds(data: &Path, repo: &str) -> Option<bool> {
    let hub = Hub::open(data).expect("open mirror data");
    let r = hub.catalog().repository_exists(repo).expect("read");
    r.then(|| hub.catalog().is_private(repo).expect("read"))
}

/// Issue 27's mirror rule: a private repository is copied only by a mirror given a token
/// allowed to read it (and stays private there); a mirror without one never holds it, and
/// drops a repository that turns private.
#[tokio::test]
async fn mirrors_copy_private_repositories_only_with_a_token_allowed_to_read_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pdata = dir.path().join("primary");
    let (m1data, m2data) = (dir.path().join("m1"), dir.path().join("m2"));
    let alice = token(&pdata, "alice");
    let bob = token(&pdata, "bob");
    let (pport, m1port, m2port) = (free_port(), free_port(), free_port());
    let p = format!("http://127.0.0.1:{pport}");
    let (m1, m2) = (
        format!("http://127.0.0.1:{m1port}"),
        format!("http://127.0.0.1:{m2port}"),
    );
    let _primary = spawn(&pdata, pport, &[]).await;
    let c = reqwest::Client::new();
    upload(&c, &p, &alice, "a.tar.gz").await;
    upload(&c, &p, &bob, "b.tar.gz").await;
    visibility(&pdata, "bob", "private");
    wait_status(&c, &p, "/bob/b.flist", 404).await;

    let args = ["--mirror-of", p.as_str(), "--sync-interval", "1s"];
    let _m1 = spawn(&m1data, m1port, &args).await;
    let _m2 = spawn_with_env(&m2data, m2port, &args, &[("HUB_MIRROR_TOKEN", &bob)]).await;
    wait_syncs(&c, &m1, 1).await;
    wait_syncs(&c, &m2, 1).await;
    assert_eq!(holds(&m1data, "alice"), Some(false));
    assert_eq!(holds(&m1data, "bob"), None, "copied without a token");
    assert_eq!(holds(&m2data, "bob"), Some(true), "copied, and private");
    // The token's mirror keeps it private: anonymous readers get 404 there too.
    assert_eq!(get(&c, &m2, "/bob/b.flist").await.0, 404);
    assert_eq!(get(&c, &m2, "/api/flist/bob").await.0, 404);
    assert_eq!(get(&c, &m2, "/alice/a.flist").await.0, 200);

    // Public again: both mirrors take it; private again: the tokenless mirror drops it.
    visibility(&pdata, "bob", "public");
    wait_status(&c, &m1, "/bob/b.flist", 200).await;
    wait_status(&c, &m2, "/bob/b.flist", 200).await;
    visibility(&pdata, "bob", "private");
    wait_status(&c, &m1, "/api/flist/bob", 404).await;
    wait_status(&c, &m2, "/api/flist/bob", 404).await;
    let n = wait_syncs(&c, &m1, 1).await["syncs"].as_u64().unwrap_or(0);
    wait_syncs(&c, &m1, n + 1).await;
    assert_eq!(holds(&m1data, "bob"), None, "kept after it turned private");
    assert_eq!(holds(&m2data, "bob"), Some(true));
}
