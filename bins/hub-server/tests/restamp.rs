//! Moving a hub to another public URL with the real binaries: flists stamped under the old
//! address send readers there; `serve` warns at start and `check` points to
//! `hub-server restamp`; `--dry-run` lists what would change; `restamp` (while the server
//! runs) points every flist of a former backend of this hub to the new one, keeping links,
//! tags and names; `zflist extract` by the new URL then works with no `--hub`; a signed flist
//! is reported and left byte for byte; a second run changes nothing.

use std::path::Path;
use std::time::Duration;

mod common;

use common::{free_port, ok, run, serve, zflist_bin, BIN};
use serde_json::{json, Value};
use sha2::Digest;
use test_support::archive::{gzip, RawTar};

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET");
        let s = r.status().as_u16();
        (s, r.bytes().await.expect("body").to_vec())
    }

    async fn json(&self, path: &str) -> Value {
        let (s, body) = self.get(path).await;
        assert_eq!(s, 200, "{path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).expect("json")
    }

    async fn write(&self, path: &str) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("write");
        assert_eq!(
            r.status(),
            200,
            "{path}: {}",
            r.text().await.unwrap_or_default()
        );
    }

    async fn upload(&self, route: &str, parts: Vec<(&str, &str, Vec<u8>)>) {
        let mut form = reqwest::multipart::Form::new();
        for (field, file, data) in parts {
            form = form.part(
                field.to_string(),
                reqwest::multipart::Part::bytes(data).file_name(file.to_string()),
            );
        }
        let r = self
            .http
            .post(format!("{}{route}", self.base))
            .bearer_auth(&self.token)
            .multipart(form)
            .send()
            .await
            .expect("upload");
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    }
}

fn sha(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

/// Entries of a repository as (name, type, target), times left out.
async fn listing(c: &Client, repo: &str) -> Vec<(String, String, String)> {
    let v = c.json(&format!("/api/flist/{repo}")).await;
    v.as_array()
        .expect("array")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or("").to_string(),
                e["type"].as_str().unwrap_or("").to_string(),
                e["target"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn hub(cwd: &Path, args: &[&str]) -> std::process::Output {
    run(cwd, Path::new(BIN), args, None)
}

fn text(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
}

#[tokio::test]
async fn moving_a_hub_to_another_public_url() {
    let zflist = zflist_bin();
    let dir = tempfile::tempdir().expect("tempdir");
    let cwd = dir.path();
    let (p1, p2) = (free_port(), free_port());
    let old = format!("http://127.0.0.1:{p1}");
    let new = format!("http://localhost:{p2}");

    // 1. The newcomer's hub on 127.0.0.1, with flists, a link, a tag, a copy.
    let server = serve(cwd, p1, &[]).await;
    ok(&run(
        cwd,
        Path::new(BIN),
        &["user", "add", "alice", "--password-stdin"],
        Some("alice's long password\n"),
    ));
    let out = hub(cwd, &["token", "create", "--user", "alice", "--ttl", "1h"]);
    ok(&out);
    let mut c = Client {
        http: reqwest::Client::new(),
        base: old.clone(),
        token: String::from_utf8_lossy(&out.stdout).trim().to_string(),
    };
    let mut t = RawTar::new();
    t.file("etc/motd", b"moved hub\n")
        .file("bin/tool", &vec![9u8; 700_000]);
    c.upload(
        "/api/flist/me/upload",
        vec![("file", "app.tar.gz", gzip(&t.finish()))],
    )
    .await;
    c.write("/api/flist/me/promote/alice/app.flist/copy.flist")
        .await;
    c.write("/api/flist/me/app.flist/link/latest.flist").await;
    c.write("/api/flist/me/v1/app.flist/tag/alice/app.flist")
        .await;
    let md = c.json("/api/flist/alice/app.flist/metadata").await;
    assert_eq!(md["backend"], json!({"url": format!("{old}/chunks")}));

    // A signed flist: packed into the hub's store with its backend, signed by its author,
    // kept byte for byte.
    let src = cwd.join("signed-src");
    std::fs::create_dir_all(src.join("etc")).expect("mkdir");
    std::fs::write(src.join("etc/signed"), b"by the author\n").expect("write");
    let signed = cwd.join("signed.flist");
    ok(&run(
        cwd,
        &zflist,
        &[
            "pack",
            src.to_str().expect("utf8"),
            "-o",
            signed.to_str().expect("utf8"),
            "--store",
            &format!("dir://{}", cwd.join("hub-data/chunks").display()),
            "--public-backend",
            &format!("{old}/chunks"),
        ],
        None,
    ));
    ok(&run(
        cwd,
        &zflist,
        &[
            "sign",
            signed.to_str().expect("utf8"),
            "--key",
            cwd.join("author.key").to_str().expect("utf8"),
            "--name",
            "alice/signed.flist",
        ],
        None,
    ));
    c.upload(
        "/api/flist/me/upload-flist",
        vec![
            (
                "file",
                "signed.flist",
                std::fs::read(&signed).expect("flist"),
            ),
            (
                "signature",
                "signed.flist.sig",
                std::fs::read(cwd.join("signed.flist.sig")).expect("sig"),
            ),
        ],
    )
    .await;
    let (_, signed_before) = c.get("/alice/signed.flist").await;
    assert_eq!(signed_before, std::fs::read(&signed).expect("flist"));
    let before = listing(&c, "alice").await;
    drop(server);

    // 2. The same hub, restarted under its LAN name: it warns, check points to restamp, and
    //    the old flists still send readers to the old address.
    let server = serve(cwd, p2, &["--public-url", &new]).await;
    c.base = format!("http://127.0.0.1:{p2}");
    let mut log = String::new();
    for _ in 0..100 {
        log = std::fs::read_to_string(&server.log).expect("log");
        if log.contains("hub-server restamp") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        log.contains("3 flist(s) still announce a former backend of this hub"),
        "{log}"
    );
    assert!(log.contains("hub-server restamp"), "{log}");
    let check = hub(cwd, &["check", "--public-url", &new]);
    assert!(
        text(&check).contains("run `hub-server restamp`"),
        "{}",
        text(&check)
    );
    let url = format!("{new}/alice/app.flist");
    let stuck = run(
        cwd,
        &zflist,
        &["extract", &url, cwd.join("stuck").to_str().expect("utf8")],
        None,
    );
    assert!(!stuck.status.success(), "{}", text(&stuck));
    assert!(
        text(&stuck).contains(&format!("127.0.0.1:{p1}")),
        "{}",
        text(&stuck)
    );

    // 3. --dry-run lists, changes nothing.
    let (_, md5_before) = c.get("/alice/app.flist.md5").await;
    let dry = hub(cwd, &["restamp", "--dry-run", "--public-url", &new]);
    let dry_text = ok(&dry);
    assert!(
        dry_text.contains("would restamp alice/app.flist, alice/copy.flist"),
        "{dry_text}"
    );
    assert!(
        dry_text.contains("signed, would be left as is: alice/signed.flist"),
        "{dry_text}"
    );
    assert!(dry_text.contains("nothing changed"), "{dry_text}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(c.get("/alice/app.flist.md5").await.1, md5_before);

    // 4. restamp, while the server runs.
    let done = ok(&hub(cwd, &["restamp", "--public-url", &new]));
    assert!(
        done.contains(&format!(
            "restamped alice/app.flist, alice/copy.flist (was {{\"url\":\"{old}/chunks\"}})"
        )),
        "{done}"
    );
    assert!(
        done.contains("signed, left as is: alice/signed.flist"),
        "{done}"
    );
    // The server notices within a couple of seconds.
    let mut md5_after = md5_before.clone();
    for _ in 0..100 {
        md5_after = c.get("/alice/app.flist.md5").await.1;
        if md5_after != md5_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(
        md5_after, md5_before,
        "the server still serves the old file"
    );
    for name in ["app.flist", "copy.flist", "latest.flist"] {
        let md = c.json(&format!("/api/flist/alice/{name}/metadata")).await;
        assert_eq!(
            md["backend"],
            json!({"url": format!("{new}/chunks")}),
            "{name}"
        );
    }
    let md = c.json("/api/flist/alice/tags/v1").await;
    assert_eq!(md[0]["target"], "alice/app.flist");
    let (_, through_tag) = c.get("/alice/tags/v1/app.flist").await;
    assert_eq!(sha(&through_tag), sha(&c.get("/alice/app.flist").await.1));
    assert_eq!(
        listing(&c, "alice").await,
        before,
        "names, links and tags kept"
    );
    let (_, signed_after) = c.get("/alice/signed.flist").await;
    assert_eq!(
        sha(&signed_after),
        sha(&signed_before),
        "signed flist byte for byte"
    );

    // 5. Extract by the new URL, no --hub.
    let out = run(
        cwd,
        &zflist,
        &["extract", &url, cwd.join("out").to_str().expect("utf8")],
        None,
    );
    ok(&out);
    assert_eq!(
        std::fs::read(cwd.join("out/etc/motd")).expect("motd"),
        b"moved hub\n"
    );
    assert_eq!(
        std::fs::read(cwd.join("out/bin/tool")).expect("tool"),
        vec![9u8; 700_000]
    );

    // 6. A second run changes nothing.
    let again = ok(&hub(cwd, &["restamp", "--public-url", &new]));
    assert!(
        again.contains("nothing to change: no flist announces a former backend of this hub except 1 signed one(s)"),
        "{again}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(c.get("/alice/app.flist.md5").await.1, md5_after);
    drop(server);
}
