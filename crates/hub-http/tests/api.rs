//! The HTTP contract over real sockets: shapes, statuses, downloads, uploads, concurrency.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{TestHub, PUBLIC_BACKEND};
use futures::StreamExt;
use serde_json::{json, Value};

/// alice: a.flist (regular), b.flist (regular), latest.flist -> a.flist, crosslink
/// bobs.flist -> bob/b.flist, tag v1 {a.flist -> alice/a.flist}, taglink bobtag -> bob/tags/rel.
async fn populated() -> (TestHub, String) {
    let t = TestHub::start().await;
    t.put_fixture("alice", "a.flist", "merge-a.flist").await;
    t.put_fixture("alice", "fixture.flist", "fixture.flist")
        .await;
    t.put_fixture("bob", "b.flist", "merge-b.flist").await;
    t.put_fixture_without_backend("bob", "nobackend.flist", "merge-b.flist")
        .await;
    let alice = t.token("alice", &[]).await;
    let bob = t.token("bob", &[]).await;
    for (m, p, tok) in [
        ("GET", "/api/flist/me/a.flist/link/latest.flist", &alice),
        (
            "POST",
            "/api/flist/me/bobs.flist/crosslink/bob/b.flist",
            &alice,
        ),
        ("PUT", "/api/flist/me/v1/a.flist/tag/alice/a.flist", &alice),
        ("GET", "/api/flist/me/rel/b.flist/tag/bob/b.flist", &bob),
        ("GET", "/api/flist/me/bobtag/crosstag/bob/rel", &alice),
    ] {
        let (s, v) = t.call(m, p, tok).await;
        assert_eq!((s, v), (200, json!({"status": "success"})), "{m} {p}");
    }
    (t, alice)
}

#[tokio::test]
async fn public_endpoints_have_the_contract_shapes() {
    let (t, _alice) = populated().await;

    let (s, repos) = t.get_json("/api/repositories").await;
    assert_eq!(s, 200);
    let names: Vec<&str> = repos
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(repos[0]["official"], false);
    assert!(repos[0]["updated"].as_i64().expect("updated int") > 0);

    let (_, all) = t.get_json("/api/flist").await;
    let all: BTreeSet<&str> = all
        .as_array()
        .expect("array")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        all,
        [
            "alice/a.flist",
            "alice/bobs.flist",
            "alice/bobtag",
            "alice/fixture.flist",
            "alice/latest.flist",
            "bob/b.flist",
            "bob/nobackend.flist"
        ]
        .into_iter()
        .collect()
    );

    let (s, listing) = t.get_json("/api/flist/alice").await;
    assert_eq!(s, 200);
    let by_name: BTreeMap<&str, &Value> = listing
        .as_array()
        .expect("array")
        .iter()
        .map(|e| (e["name"].as_str().expect("name"), e))
        .collect();
    let a = by_name["a.flist"];
    assert_eq!(a["type"], "regular");
    let size = a["size"].as_str().expect("size is a string");
    assert!(
        size.ends_with(" KB")
            && size
                .split(' ')
                .next()
                .expect("num")
                .split('.')
                .nth(1)
                .map(str::len)
                == Some(2),
        "{size}"
    );
    assert!(a["updated"].is_i64());
    let latest = by_name["latest.flist"];
    assert_eq!(
        (latest["type"].as_str(), latest["target"].as_str()),
        (Some("symlink"), Some("a.flist"))
    );
    assert_eq!(latest["size"], a["size"]);
    assert!(latest["linktime"].is_i64());
    assert_eq!(by_name["bobs.flist"]["target"], "bob/b.flist");
    assert_eq!(by_name["bobtag"]["type"], "taglink");
    assert_eq!(by_name["bobtag"]["target"], "bob/tags/rel");
    assert_eq!(
        by_name["v1"],
        &json!({"name": "v1", "size": "0 KB", "updated": by_name["v1"]["updated"], "type": "tag"})
    );

    let (_, fl) = t.get_json("/api/fileslist").await;
    assert_eq!(fl["alice"], listing);
    assert_eq!(fl["bob"].as_array().map(Vec::len), Some(3));

    let (s, tag) = t.get_json("/api/flist/alice/tags/v1").await;
    assert_eq!(s, 200);
    assert_eq!(tag[0]["name"], "a.flist");
    assert_eq!(tag[0]["type"], "symlink");
    assert_eq!(tag[0]["target"], "alice/a.flist");
    assert!(
        tag[0]["linktime"].is_i64() && tag[0]["updated"].is_i64() && tag[0]["size"].is_string()
    );
    // Through the taglink.
    let (s, tag) = t.get_json("/api/flist/alice/tags/bobtag").await;
    assert_eq!((s, tag[0]["target"].as_str()), (200, Some("bob/b.flist")));

    // Full dump.
    let (s, dump) = t.get_json("/api/flist/alice/latest.flist").await;
    assert_eq!(s, 200);
    for k in [
        "regular",
        "symlink",
        "directory",
        "special",
        "failure",
        "fullsize",
    ] {
        assert!(dump[k].is_u64(), "{k} in {dump}");
    }
    let paths: Vec<&str> = dump["content"]
        .as_array()
        .expect("content")
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert!(
        paths.contains(&"/etc/a.conf") && paths.contains(&"/bin/tool"),
        "{paths:?}"
    );
    // The dump of the reference fixture matches what zflist find printed.
    let (_, dump) = t.get_json("/api/flist/alice/fixture.flist").await;
    let reference: Value = serde_json::from_slice(
        &std::fs::read(test_support::fixture("fixture.zflist-find.json")).expect("ref"),
    )
    .expect("json");
    let reference = &reference["response"];
    for k in ["regular", "symlink", "directory", "special", "fullsize"] {
        assert_eq!(dump[k], reference[k], "{k}");
    }
    let ours: Vec<(&Value, &Value)> = dump["content"]
        .as_array()
        .expect("c")
        .iter()
        .map(|e| (&e["path"], &e["size"]))
        .collect();
    let theirs: Vec<(&Value, &Value)> = reference["content"]
        .as_array()
        .expect("c")
        .iter()
        .map(|e| (&e["path"], &e["size"]))
        .collect();
    assert_eq!(ours, theirs);

    // INFO and /light.
    let info = t
        .client
        .request(
            reqwest::Method::from_bytes(b"INFO").expect("m"),
            t.url("/api/flist/alice/a.flist"),
        )
        .send()
        .await
        .expect("info");
    assert_eq!(info.status(), 200);
    let info: Value = info.json().await.expect("json");
    let (_, light) = t.get_json("/api/flist/alice/a.flist/light").await;
    assert_eq!(info, light);
    assert_eq!(light["type"], "regular");
    assert!(light["size"].is_u64() && light["md5"].as_str().map(str::len) == Some(32));
    let (_, l) = t.get_json("/api/flist/alice/latest.flist/light").await;
    assert_eq!(
        (l["type"].as_str(), l["target"].as_str(), &l["md5"]),
        (Some("symlink"), Some("a.flist"), &light["md5"])
    );
    assert!(l["linktime"].is_i64());

    let (s, tl) = t.get_json("/api/flist/alice/bobtag/taglink").await;
    assert_eq!((s, tl), (200, json!({"target": "bob/tags/rel"})));
    let (s, v) = t.get_json("/api/flist/alice/a.flist/taglink").await;
    assert_eq!(
        (s, v),
        (
            404,
            json!({"status": "error", "message": "source not found"})
        )
    );

    // Metadata: stored backend (password never shown) or backend-forced.
    let (s, md) = t.get_json("/api/flist/alice/fixture.flist/metadata").await;
    assert_eq!(s, 200);
    assert_eq!(md["custom-key"], "some-value");
    assert_eq!(md["backend"]["host"], "127.0.0.1");
    assert!(md["backend"].get("password").is_none());
    let (_, md) = t.get_json("/api/flist/alice/a.flist/metadata").await;
    assert_eq!(md["backend"], json!({"host": "127.0.0.1", "port": 9901}));
    let (_, md) = t.get_json("/api/flist/bob/nobackend.flist/metadata").await;
    assert!(md.get("backend").is_none());
    assert_eq!(
        md["backend-forced"],
        json!({"host": "hub.example.org", "port": 9900, "namespace": "public"})
    );

    // Error statuses, always JSON.
    for (path, status) in [
        ("/api/flist/nobody", 404),
        ("/api/flist/alice/none.flist", 404),
        ("/api/flist/alice/none.flist/light", 404),
        ("/api/flist/alice/tags/none", 404),
        ("/api/nothing-here", 404),
        ("/api/flist/%3Cscript%3E", 400),
    ] {
        let (s, v) = t.get_json(path).await;
        assert_eq!(
            (s, v["status"].as_str()),
            (status, Some("error")),
            "{path}: {v}"
        );
    }
    t.stop().await;
}

#[tokio::test]
async fn authenticated_writes_and_their_errors() {
    let (t, alice) = populated().await;
    let (s, me) = t.call("GET", "/api/flist/me", &alice).await;
    assert_eq!(
        (s, me),
        (
            200,
            json!({"status": "success", "payload": {"username": "alice"}})
        )
    );
    let (s, dump) = t.call("GET", "/api/flist/me/a.flist", &alice).await;
    assert_eq!(s, 200);
    assert!(dump["content"].is_array());

    // No credentials: 401 with a JSON body.
    let (s, v) = t.get_json("/api/flist/me").await;
    assert_eq!((s, v["status"].as_str()), (401, Some("error")));
    let (s, _) = t
        .call("GET", "/api/flist/me/a.flist/link/x.flist", "not-a-token")
        .await;
    assert_eq!(s, 401);

    // link over a regular file: 409; rename onto an existing name: 409; missing source: 404.
    assert_eq!(
        t.call("GET", "/api/flist/me/latest.flist/link/a.flist", &alice)
            .await
            .0,
        409
    );
    assert_eq!(
        t.call("GET", "/api/flist/me/latest.flist/rename/a.flist", &alice)
            .await
            .0,
        409
    );
    assert_eq!(
        t.call("GET", "/api/flist/me/none.flist/link/x.flist", &alice)
            .await
            .0,
        404
    );
    assert_eq!(
        t.call(
            "GET",
            "/api/flist/me/x.flist/crosslink/bob/none.flist",
            &alice
        )
        .await
        .0,
        404
    );
    // A cycle is refused.
    assert_eq!(
        t.call("GET", "/api/flist/me/latest.flist/link/l2.flist", &alice)
            .await
            .0,
        200
    );
    assert_eq!(
        t.call("GET", "/api/flist/me/l2.flist/link/latest.flist", &alice)
            .await
            .0,
        409
    );

    let (s, _) = t
        .call("GET", "/api/flist/me/l2.flist/rename/l3.flist", &alice)
        .await;
    assert_eq!(s, 200);
    let (s, v) = t
        .call(
            "GET",
            "/api/flist/me/promote/bob/b.flist/mine.flist",
            &alice,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        v,
        json!({"status": "success", "payload": {
            "source": {"username": "bob", "filename": "b.flist"},
            "destination": {"username": "alice", "filename": "mine.flist"}}})
    );
    assert_eq!(
        t.call(
            "DELETE",
            "/api/flist/me/v1/a.flist/tag/alice/a.flist",
            &alice
        )
        .await
        .0,
        200
    );
    assert_eq!(
        t.call(
            "DELETE",
            "/api/flist/me/v1/a.flist/tag/alice/a.flist",
            &alice
        )
        .await
        .0,
        404
    );
    assert_eq!(
        t.call("DELETE", "/api/flist/me/bobtag/crosstag/bob/rel", &alice)
            .await
            .0,
        200
    );
    assert_eq!(
        t.call("GET", "/api/flist/me/x/crosstag/bob/none", &alice)
            .await
            .0,
        404
    );
    assert_eq!(
        t.call("DELETE", "/api/flist/me/l3.flist", &alice).await.0,
        200
    );
    assert_eq!(
        t.call("DELETE", "/api/flist/me/l3.flist", &alice).await.0,
        404
    );

    // Deleting a link target leaves a dangling link, reported in the listing.
    assert_eq!(
        t.call("DELETE", "/api/flist/me/a.flist", &alice).await.0,
        200
    );
    let (_, listing) = t.get_json("/api/flist/alice").await;
    let latest = listing
        .as_array()
        .expect("a")
        .iter()
        .find(|e| e["name"] == "latest.flist")
        .expect("kept");
    assert_eq!(latest["broken"], true);
    assert_eq!(t.get("/alice/latest.flist").await.status(), 404);

    // Merge, first wins.
    let r = t
        .client
        .post(t.url("/api/flist/me/merge/ab.flist"))
        .bearer_auth(&alice)
        .json(&json!(["bob/b.flist", "alice/fixture.flist"]))
        .send()
        .await
        .expect("merge");
    assert_eq!(r.status(), 200);
    let (_, dump) = t.get_json("/api/flist/alice/ab.flist").await;
    let tool = dump["content"]
        .as_array()
        .expect("c")
        .iter()
        .find(|e| e["path"] == "/bin/tool")
        .expect("tool");
    assert_eq!(tool["size"], 15);
    let (_, md) = t.get_json("/api/flist/alice/ab.flist/metadata").await;
    assert_eq!(
        md["backend"],
        json!({"host": "hub.example.org", "port": 9900, "namespace": "public"})
    );
    for body in [json!([]), json!({"x": 1}), json!(["nobody"])] {
        let r = t
            .client
            .post(t.url("/api/flist/me/merge/x.flist"))
            .bearer_auth(&alice)
            .json(&body)
            .send()
            .await
            .expect("merge");
        assert_eq!(r.status(), 400, "{body}");
    }
    let r = t
        .client
        .post(t.url("/api/flist/me/merge/x.flist"))
        .bearer_auth(&alice)
        .json(&json!(["bob/none.flist"]))
        .send()
        .await
        .expect("m");
    assert_eq!(r.status(), 404);

    // Docker conversion (tests/docker.rs runs it against a real registry): the form needs
    // an image.
    let r = t
        .client
        .post(t.url("/api/flist/me/docker"))
        .bearer_auth(&alice)
        .form(&[("platform", "linux/amd64")])
        .send()
        .await
        .expect("d");
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.expect("json");
    assert!(v["message"].as_str().expect("message").contains("image"));

    // Every write is in the audit log, attributed.
    let log = tokio::task::spawn_blocking({
        let hub = t.hub();
        move || hub.catalog().audit_log(0, 1000)
    })
    .await
    .expect("join")
    .expect("log");
    assert!(log
        .iter()
        .filter(|r| r.repo == "alice")
        .all(|r| r.actor == "alice" || r.actor.starts_with('@') || r.action == "upload"));
    assert_eq!(log.last().map(|r| r.action.as_str()), Some("merge"));
    t.stop().await;
}

#[tokio::test]
async fn hostile_names_are_400() {
    let (t, alice) = populated().await;
    for path in [
        "/api/flist/me/a.flist/link/%3Cscript%3Ealert(1)%3C%2Fscript%3E.flist",
        "/api/flist/me/a.flist/link/a..b.flist",
        "/api/flist/me/a.flist/link/x%2Fy.flist",
        "/api/flist/me/a.flist/link/..%2F..%2Fetc%2Fpasswd",
        "/api/flist/me/a.flist/link/bell%07.flist",
        "/api/flist/me/a.flist/link/nl%0A.flist",
        "/api/flist/me/a.flist/rename/%3Cscript%3E.flist",
        "/api/flist/me/x.flist/crosslink/%3Cscript%3E/a.flist",
        "/api/flist/me/%3Cscript%3E/a.flist/tag/alice/a.flist",
        "/api/flist/me/promote/..%2Falice/a.flist/x.flist",
    ] {
        let (s, v) = t.call("GET", path, &alice).await;
        assert_eq!(
            (s, v["status"].as_str()),
            (400, Some("error")),
            "{path}: {v}"
        );
    }
    for path in [
        "/api/flist/alice/%3Cscript%3E.flist",
        "/api/flist/alice/a%01.flist/light",
    ] {
        assert_eq!(t.get(path).await.status(), 400, "{path}");
    }
    // On download paths such a name is just a file that does not exist, as on the old hub.
    assert_eq!(t.get("/alice/%3Cscript%3E.flist").await.status(), 404);
    // Pages escape what they show.
    let body = t
        .get("/search?q=%3Cscript%3Ealert(1)%3C/script%3E")
        .await
        .text()
        .await
        .expect("text");
    assert!(!body.contains("<script>") && body.contains("&lt;script&gt;"));
    t.stop().await;
}

#[tokio::test]
async fn downloads_with_etag_range_head_and_companions() {
    let (t, _alice) = populated().await;
    let expected = std::fs::read(test_support::fixture("merge-a.flist")).expect("fixture");
    let r = t.get("/alice/latest.flist").await;
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().expect("etag").to_string();
    assert!(etag.starts_with('"') && etag.len() == 66, "{etag}");
    let body = r.bytes().await.expect("body");
    assert_eq!(&body[..], &expected[..]);

    let r = t
        .client
        .get(t.url("/alice/a.flist"))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("cond");
    assert_eq!(r.status(), 304);
    let r = t
        .client
        .get(t.url("/alice/a.flist"))
        .header("range", "bytes=10-19")
        .send()
        .await
        .expect("range");
    assert_eq!(r.status(), 206);
    assert_eq!(&r.bytes().await.expect("b")[..], &expected[10..20]);
    let r = t
        .client
        .head(t.url("/alice/a.flist"))
        .send()
        .await
        .expect("head");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"].to_str().expect("len"),
        expected.len().to_string()
    );
    assert!(r.bytes().await.expect("b").is_empty());

    // Through a tag and through a taglink to a tag.
    let r = t.get("/alice/tags/v1/a.flist").await;
    assert_eq!(r.status(), 200);
    assert_eq!(&r.bytes().await.expect("b")[..], &expected[..]);
    assert_eq!(t.get("/alice/tags/bobtag/b.flist").await.status(), 200);
    assert_eq!(t.get("/alice/tags/v1/none.flist").await.status(), 404);

    let md5 = t.get("/alice/a.flist.md5").await;
    assert!(md5.headers()["content-type"]
        .to_str()
        .expect("ct")
        .starts_with("text/plain"));
    let md5 = md5.text().await.expect("text");
    let (_, light) = t.get_json("/api/flist/alice/a.flist/light").await;
    assert_eq!(md5, format!("{}\n", light["md5"].as_str().expect("md5")));

    let txt = t.get("/alice/a.flist.txt").await.text().await.expect("txt");
    for k in ["File:", "Uploader:", "Source:", "Storage:", "Checksum:"] {
        assert!(
            txt.lines().any(|l| l.starts_with(k)),
            "{k} missing in {txt}"
        );
    }
    // `Storage` is the hub's public backend, whatever the flist names (as the old hub).
    assert!(
        txt.lines()
            .any(|l| l == "Storage:  zdb://hub.example.org:9900"),
        "{txt}"
    );
    assert!(txt.lines().any(|l| l == "Uploader: alice"), "{txt}");
    let txt = t.get("/bob/nobackend.txt").await.text().await.expect("txt");
    assert!(
        txt.lines()
            .any(|l| l == "Storage:  zdb://hub.example.org:9900"),
        "{txt}"
    );
    let (s, j) = t.get_json("/alice/a.flist.json").await;
    assert_eq!(s, 200);
    assert_eq!(j["flist"], "a.flist");
    assert_eq!(j["checksum"], light["md5"]);
    for k in ["uploader", "source", "storage"] {
        assert!(j[k].is_string(), "{k}");
    }
    let md = t.get("/alice/fixture.flist.md").await;
    assert_eq!(md.status(), 200);
    let md = md.text().await.expect("md");
    assert!(
        md.contains("custom-key") && md.contains("many/</a>"),
        "{md}"
    );
    let many = t.get("/alice/fixture.flist.md?dir=/many").await;
    assert_eq!(many.status(), 200);
    assert!(many.text().await.expect("md").contains(">f001.txt<"));
    assert_eq!(t.get("/alice/none.flist").await.status(), 404);

    // Pages (each needle is something only that page writes).
    for (p, needle) in [
        ("/", "<a href=\"/alice\">alice</a>"),
        ("/alice", "data-name=\"latest.flist\""),
        ("/alice/tags/v1", "id=\"tag-links\""),
        ("/search?q=fixture", "id=\"flist-results\""),
        ("/login-method", "id=\"token-login\""),
        ("/logout", "signed out"),
    ] {
        let r = t.get(p).await;
        assert_eq!(r.status(), 200, "{p}");
        assert!(
            r.text().await.expect("text").contains(needle),
            "{p} lacks {needle}"
        );
    }
    // Pages for signed-in users: anonymous visitors are sent to the login choice (302, as
    // the old hub); signed in, the page.
    let alice = t.token("alice", &[]).await;
    for (p, needle) in [
        ("/upload", "multipart/form-data"),
        ("/upload-flist", "upload-flist"),
        ("/merge", "merge"),
        ("/docker-convert", "image"),
        ("/token", "API token"),
    ] {
        let r = t.get(p).await;
        assert_eq!(r.status(), 302, "{p}");
        assert_eq!(
            r.headers().get("location").and_then(|v| v.to_str().ok()),
            Some("/login-method"),
            "{p}"
        );
        let r = t
            .client
            .get(t.url(p))
            .bearer_auth(&alice)
            .send()
            .await
            .expect("page");
        assert_eq!(r.status(), 200, "{p}");
        assert!(
            r.text().await.expect("text").contains(needle),
            "{p} lacks {needle}"
        );
    }
    assert_eq!(t.get("/readonly").await.status(), 302);
    assert_eq!(t.get("/nobody").await.status(), 404);
    t.stop().await;
}

#[tokio::test]
async fn upload_flist_checks_chunks_and_rewrites_backend() {
    let t = TestHub::start().await;
    let alice = t.token("alice", &[]).await;
    let data = std::fs::read(test_support::fixture("fixture.flist")).expect("fixture");
    let skip = std::fs::read_dir(test_support::fixture("chunks"))
        .expect("dir")
        .next()
        .expect("one")
        .expect("e");
    let skip = skip.file_name().to_string_lossy().to_string();
    t.load_fixture_chunks(Some(&skip)).await;

    let (s, v) = t
        .upload(
            "/api/flist/me/upload-flist",
            &alice,
            "fixture.flist",
            data.clone(),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let msg = v["message"].as_str().expect("message");
    assert!(msg.starts_with("1 of 274 chunks are missing"), "{msg}");
    assert_eq!(t.get_json("/api/flist/alice/fixture.flist").await.0, 404);

    t.load_fixture_chunks(None).await;
    let (s, v) = t
        .upload("/api/flist/me/upload-flist", &alice, "fixture.flist", data)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["payload"]["name"], "fixture.flist");
    assert_eq!(v["payload"]["files"]["chunks"], 274);
    assert_eq!(v["payload"]["files"]["missing"], 0);
    let (_, md) = t.get_json("/api/flist/alice/fixture.flist/metadata").await;
    assert_eq!(
        md["backend"],
        json!({"host": "hub.example.org", "port": 9900, "namespace": "public"})
    );
    assert_eq!(md["custom-key"], "some-value");
    // The stored file itself carries the public backend.
    let bytes = t
        .get("/alice/fixture.flist")
        .await
        .bytes()
        .await
        .expect("download");
    let tmp = t.dir.path().join("dl.flist");
    std::fs::write(&tmp, &bytes).expect("write");
    let fl = flist_format::Flist::open(&tmp).expect("parse download");
    let b = fl.metadata.backend().expect("backend").expect("present");
    assert_eq!(
        b,
        flist_format::Backend::zdb("hub.example.org", 9900, Some("public".into()))
    );
    assert!(!b.has_credentials());

    // Not an flist / bad name.
    assert_eq!(
        t.upload(
            "/api/flist/me/upload-flist",
            &alice,
            "junk.flist",
            b"junk".to_vec()
        )
        .await
        .0,
        400
    );
    assert_eq!(
        t.upload(
            "/api/flist/me/upload-flist",
            &alice,
            "<b>.flist",
            b"x".to_vec()
        )
        .await
        .0,
        400
    );
    let _ = PUBLIC_BACKEND;
    t.stop().await;
}

#[tokio::test]
async fn upload_archive_builds_a_flist() {
    // A request timeout shorter than the upload: uploads have their own limit.
    let t = TestHub::start_with(|c| c.request_timeout_secs = 1).await;
    let alice = t.token("alice", &[]).await;
    let archive = std::fs::read(test_support::fixture("fixture-tree.tar.gz")).expect("fixture");
    let boundary = "hubtestboundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"metadata-entrypoint\"\r\n\r\n[\"/bin/sh\"]\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"metadata-backend\"\r\n\r\n{{\"host\":\"evil\",\"port\":1,\"password\":\"x\"}}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"ignored.tar.gz\"\r\n\
         Content-Type: application/gzip\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let half = archive.len() / 2;
    let parts: Vec<Vec<u8>> = vec![
        head.into_bytes(),
        archive[..half].to_vec(),
        archive[half..].to_vec(),
        tail.into_bytes(),
    ];
    let stream = futures::stream::iter(parts.into_iter().enumerate()).then(|(i, p)| async move {
        if i == 2 {
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        }
        Ok::<_, std::io::Error>(bytes::Bytes::from(p))
    });
    let r = t
        .client
        .post(t.url("/api/flist/me/upload"))
        .bearer_auth(&alice)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .header("x-original-name", "fixture-tree.tar.gz")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("upload");
    let status = r.status();
    let v: Value = r.json().await.expect("json");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["payload"]["name"], "fixture-tree.flist");
    let job = v["payload"]["job"].as_str().expect("job id").to_string();

    let (s, listing) = t.get_json("/api/flist/alice").await;
    assert_eq!(s, 200);
    assert_eq!(listing[0]["name"], "fixture-tree.flist");

    // The dump equals the source tree.
    let (_, dump) = t.get_json("/api/flist/alice/fixture-tree.flist").await;
    let manifest: Vec<Value> = serde_json::from_slice(
        &std::fs::read(test_support::fixture("fixture.manifest.json")).expect("m"),
    )
    .expect("json");
    let norm_type = |t: &str| match t {
        "file" | "regular" => "regular",
        "dir" | "directory" => "directory",
        "symlink" => "symlink",
        _ => "special",
    };
    let want: BTreeMap<String, (String, Option<u64>, Option<String>)> = manifest
        .iter()
        .map(|e| {
            let ty = norm_type(e["type"].as_str().unwrap_or(""));
            let size = if ty == "regular" || ty == "symlink" {
                e["size"].as_u64()
            } else {
                None
            };
            (
                e["path"].as_str().unwrap_or("").to_string(),
                (ty.to_string(), size, e["target"].as_str().map(String::from)),
            )
        })
        .collect();
    let got: BTreeMap<String, (String, Option<u64>, Option<String>)> = dump["content"]
        .as_array()
        .expect("content")
        .iter()
        .map(|e| {
            let ty = norm_type(e["type"].as_str().unwrap_or(""));
            let size = if ty == "regular" || ty == "symlink" {
                e["size"].as_u64()
            } else {
                None
            };
            (
                e["path"].as_str().unwrap_or("").to_string(),
                (ty.to_string(), size, e["target"].as_str().map(String::from)),
            )
        })
        .collect();
    assert_eq!(got, want);

    // Downloadable; md5 matches; metadata has the user's entrypoint and the hub's backend.
    let bytes = t
        .get("/alice/fixture-tree.flist")
        .await
        .bytes()
        .await
        .expect("download");
    let md5 = t
        .get("/alice/fixture-tree.flist.md5")
        .await
        .text()
        .await
        .expect("md5");
    let (_, light) = t
        .get_json("/api/flist/alice/fixture-tree.flist/light")
        .await;
    assert_eq!(md5.trim(), light["md5"].as_str().expect("md5"));
    assert_eq!(light["size"].as_u64(), Some(bytes.len() as u64));
    let tmp = t.dir.path().join("dl.flist");
    std::fs::write(&tmp, &bytes).expect("write");
    let fl = flist_format::Flist::open(&tmp).expect("parse");
    assert_eq!(
        fl.metadata.entrypoint().expect("ep"),
        Some(vec!["/bin/sh".to_string()])
    );
    let b = fl.metadata.backend().expect("b").expect("backend");
    assert!(
        matches!(&b, flist_format::Backend::Zdb { host, .. } if host == "hub.example.org"),
        "{b}"
    );
    assert!(!b.has_credentials());
    // Every chunk is in the hub's store.
    let keys: Vec<Vec<u8>> = hub_repo::inspect::chunk_keys(&fl.tree)
        .into_iter()
        .map(|k| k.to_vec())
        .collect();
    assert!(!keys.is_empty());
    assert!(t
        .server
        .state
        .store
        .exists_many(&keys)
        .await
        .expect("exists")
        .into_iter()
        .all(|x| x));

    // The job reads as finished with its result.
    let sse = t.get(&format!("/listen/{job}")).await;
    assert_eq!(
        sse.headers()["content-type"].to_str().expect("ct"),
        "text/event-stream"
    );
    let text = sse.text().await.expect("sse");
    let data: Value = serde_json::from_str(
        text.lines()
            .find_map(|l| l.strip_prefix("data: "))
            .expect("event"),
    )
    .expect("json");
    assert_eq!(data["status"], "info");
    assert_eq!(data["info"]["name"], "fixture-tree.flist");

    // A corrupt archive is refused, and nothing is listed for it.
    let (s, v) = t
        .upload(
            "/api/flist/me/upload",
            &alice,
            "bad.tar.gz",
            b"\x1f\x8bgarbage".to_vec(),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(t.get_json("/api/flist/alice/bad.flist").await.0, 404);
    t.stop().await;
}

#[tokio::test]
async fn upload_size_limit_is_413() {
    let t = TestHub::start_with(|c| c.max_upload_bytes = 64 * 1024).await;
    let alice = t.token("alice", &[]).await;
    let archive = std::fs::read(test_support::fixture("fixture-tree.tar.gz")).expect("fixture");
    let (s, v) = t
        .upload(
            "/api/flist/me/upload",
            &alice,
            "fixture-tree.tar.gz",
            archive.clone(),
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (413, Some("error")), "{v}");
    let (s, _) = t
        .upload("/api/flist/me/upload-flist", &alice, "big.flist", archive)
        .await;
    assert_eq!(s, 413);
    assert_eq!(t.get_json("/api/flist/alice").await.0, 404);
    t.stop().await;
}

#[tokio::test]
async fn jobs_stream_live_and_survive_restart() {
    let t = TestHub::start().await;
    let job = t
        .server
        .state
        .jobs
        .start("upload", "alice")
        .await
        .expect("job");
    // The SSE response's headers arrive once the listener is subscribed.
    let listening = t.get(&format!("/listen/{}", job.id)).await;
    assert_eq!(listening.status(), 200);
    let interrupted = t
        .server
        .state
        .jobs
        .start("upload", "alice")
        .await
        .expect("job");
    job.progress_async(50, "halfway".into()).await;
    job.finish_async(json!({"name": "x.flist"})).await;
    let body = listening.text().await.expect("body");
    let events: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).expect("json"))
        .collect();
    assert_eq!(
        events.first().map(|e| e["status"].clone()),
        Some(json!("update"))
    );
    assert!(
        events.contains(&json!({"status": "update", "message": "halfway", "progress": 50})),
        "{events:?}"
    );
    assert_eq!(
        events.last(),
        Some(&json!({"status": "info", "info": {"name": "x.flist"}}))
    );
    assert_eq!(t.get_json("/listen/00ff").await.0, 404);
    assert_eq!(t.get_json("/listen/not-hex").await.0, 400);

    // Restart: the job that was running reads as failed, the finished one as finished. (The
    // handles hold the catalog open; a restarted process holds none of the old one's.)
    let ids = (job.id.clone(), interrupted.id.clone());
    drop((job, interrupted));
    let (job, interrupted) = ids;
    let dir = t.stop().await;
    let cfg = common::test_config(dir.path());
    let t = TestHub::start_in(dir, cfg).await;
    let text = t
        .get(&format!("/listen/{interrupted}"))
        .await
        .text()
        .await
        .expect("sse");
    let ev: Value = serde_json::from_str(
        text.lines()
            .find_map(|l| l.strip_prefix("data: "))
            .expect("event"),
    )
    .expect("json");
    assert_eq!(ev["status"], "error");
    assert!(ev["message"].as_str().expect("m").contains("restart"));
    let text = t
        .get(&format!("/listen/{job}"))
        .await
        .text()
        .await
        .expect("sse");
    assert!(text.contains(r#""status":"info""#));
    t.stop().await;
}

/// Deterministic pseudo-random numbers.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[tokio::test]
async fn fifty_concurrent_writers_stay_consistent_with_the_audit_log() {
    let t = TestHub::start().await;
    t.put_fixture("alice", "base.flist", "merge-a.flist").await;
    let alice = t.token("alice", &[]).await;
    let mut tasks = Vec::new();
    for w in 0..50u64 {
        let (client, base, tok) = (t.client.clone(), t.base.clone(), alice.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Lcg(w + 1);
            let mut statuses = Vec::new();
            for _ in 0..20 {
                let (a, b, tag) = (rng.next(8), rng.next(8), rng.next(3));
                let (method, path) = match rng.next(6) {
                    0 | 1 => ("GET", format!("/api/flist/me/base.flist/link/l{a}.flist")),
                    2 => ("GET", format!("/api/flist/me/l{a}.flist/rename/l{b}.flist")),
                    3 => (
                        "PUT",
                        format!("/api/flist/me/t{tag}/l{a}.flist/tag/alice/base.flist"),
                    ),
                    4 => (
                        "DELETE",
                        format!("/api/flist/me/t{tag}/l{a}.flist/tag/alice/base.flist"),
                    ),
                    _ => ("DELETE", format!("/api/flist/me/l{a}.flist")),
                };
                let m = reqwest::Method::from_bytes(method.as_bytes()).expect("m");
                let r = client
                    .request(m, format!("{base}{path}"))
                    .bearer_auth(&tok)
                    .send()
                    .await
                    .expect("req");
                statuses.push((r.status().as_u16(), path));
            }
            statuses
        }));
    }
    let mut counts = BTreeMap::new();
    for task in tasks {
        for (s, path) in task.await.expect("writer") {
            assert!(matches!(s, 200 | 404 | 409), "{s} for {path}");
            *counts.entry(s).or_insert(0) += 1;
        }
    }
    assert!(counts.get(&200).copied().unwrap_or(0) > 100, "{counts:?}");

    // Replay the audit log and compare with what the API lists.
    let log = tokio::task::spawn_blocking({
        let hub = t.hub();
        move || hub.catalog().audit_log(0, 100_000)
    })
    .await
    .expect("join")
    .expect("log");
    let mut entries: BTreeMap<String, (String, Option<String>)> = BTreeMap::new();
    let mut tags: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for r in &log {
        let d = &r.detail;
        let s = |k: &str| d[k].as_str().unwrap_or_default().to_string();
        match r.action.as_str() {
            "upload" => {
                entries.insert(r.name.clone(), ("regular".into(), None));
            }
            "link" => {
                entries.insert(r.name.clone(), ("symlink".into(), Some(s("target_name"))));
            }
            "rename" => {
                let e = entries.remove(&r.name).expect("renamed entry existed");
                entries.insert(s("destination"), e);
            }
            "delete" => {
                entries.remove(&r.name).expect("deleted entry existed");
            }
            "tag-add" => {
                tags.entry(r.name.clone()).or_default().insert(
                    s("linkname"),
                    format!("{}/{}", s("target_repo"), s("target_name")),
                );
            }
            "tag-remove" => {
                let t = tags.get_mut(&r.name).expect("tag existed");
                t.remove(&s("linkname")).expect("link existed");
                if t.is_empty() {
                    tags.remove(&r.name);
                }
            }
            other => panic!("unexpected action {other}"),
        }
    }
    assert_eq!(log.len() as u64, counts[&200] + 1);
    let (_, listing) = t.get_json("/api/flist/alice").await;
    let mut listed_entries = BTreeMap::new();
    let mut listed_tags = BTreeSet::new();
    for e in listing.as_array().expect("listing") {
        let name = e["name"].as_str().expect("name").to_string();
        match e["type"].as_str().expect("type") {
            "tag" => {
                listed_tags.insert(name);
            }
            ty => {
                listed_entries.insert(
                    name,
                    (ty.to_string(), e["target"].as_str().map(String::from)),
                );
            }
        }
    }
    assert_eq!(listed_entries, entries);
    assert_eq!(listed_tags, tags.keys().cloned().collect());
    for (tag, links) in &tags {
        let (_, v) = t.get_json(&format!("/api/flist/alice/tags/{tag}")).await;
        let got: BTreeMap<String, String> = v
            .as_array()
            .expect("tag")
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().expect("n").to_string(),
                    e["target"].as_str().expect("t").to_string(),
                )
            })
            .collect();
        assert_eq!(&got, links, "tag {tag}");
    }
    let report = tokio::task::spawn_blocking({
        let hub = t.hub();
        move || hub.integrity_check()
    })
    .await
    .expect("join")
    .expect("check");
    assert!(report.is_clean(), "{report:?}");
    t.stop().await;
}

#[tokio::test]
async fn unreachable_store_is_503() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let t =
        TestHub::start_with(move |c| c.store = Some(format!("zdb://127.0.0.1:{port}/hub"))).await;
    let alice = t.token("alice", &[]).await;
    let data = std::fs::read(test_support::fixture("fixture.flist")).expect("fixture");
    let (s, v) = t
        .upload("/api/flist/me/upload-flist", &alice, "fixture.flist", data)
        .await;
    assert_eq!((s, v["status"].as_str()), (503, Some("error")), "{v}");
    assert_eq!(t.get_json("/api/flist/alice/fixture.flist").await.0, 404);
    t.stop().await;
}

/// Every conditional and partial form of a download, answered the same from memory (the
/// default) and from disk (cache off: the streaming path for files too large to keep), and
/// a name replaced or removed is never served from a stale cache.
#[tokio::test]
async fn downloads_conditional_partial_and_fresh_after_writes() {
    for cache in [256u64 << 20, 0] {
        let t = TestHub::start_with(|c| c.download_cache_bytes = cache).await;
        t.put_fixture("alice", "a.flist", "merge-a.flist").await;
        let a = std::fs::read(test_support::fixture("merge-a.flist")).expect("fixture");
        let n = a.len();
        let req = |headers: &[(&str, &str)], head: bool| {
            let mut rb = if head {
                t.client.head(t.url("/alice/a.flist"))
            } else {
                t.client.get(t.url("/alice/a.flist"))
            };
            for (k, v) in headers {
                rb = rb.header(*k, *v);
            }
            rb.send()
        };
        let r = req(&[], false).await.expect("get");
        assert_eq!(r.status(), 200, "cache {cache}");
        let h = r.headers().clone();
        let etag = h["etag"].to_str().expect("etag").to_string();
        let last_modified = h["last-modified"].to_str().expect("lm").to_string();
        assert_eq!(h["accept-ranges"], "bytes");
        assert_eq!(h["content-type"], "application/octet-stream");
        assert_eq!(h["content-length"], n.to_string().as_str());
        assert_eq!(h["content-disposition"], "attachment; filename=\"a.flist\"");
        assert_eq!(&r.bytes().await.expect("body")[..], &a[..]);

        // Ranges: closed, open, suffix, past the end, several (served whole).
        for (range, from, to) in [
            ("bytes=0-0", 0, 0),
            ("bytes=5-", 5, n - 1),
            ("bytes=-7", n - 7, n - 1),
            ("bytes=3-100000", 3, n - 1),
        ] {
            let r = req(&[("range", range)], false).await.expect("range");
            assert_eq!(r.status(), 206, "{range} cache {cache}");
            assert_eq!(
                r.headers()["content-range"],
                format!("bytes {from}-{to}/{n}").as_str()
            );
            assert_eq!(&r.bytes().await.expect("b")[..], &a[from..=to], "{range}");
        }
        let r = req(&[("range", &format!("bytes={n}-"))], false)
            .await
            .expect("416");
        assert_eq!(r.status(), 416, "cache {cache}");
        assert_eq!(
            r.headers()["content-range"],
            format!("bytes */{n}").as_str()
        );
        // A HEAD with a range: its headers, no body.
        let r = req(&[("range", "bytes=2-9")], true).await.expect("head");
        assert_eq!(r.status(), 206);
        assert_eq!(r.headers()["content-length"], "8");
        assert!(r.bytes().await.expect("b").is_empty());
        if cache > 0 {
            // If-Range: the current version gets the range, another one the whole file.
            let r = req(&[("range", "bytes=0-3"), ("if-range", &etag)], false)
                .await
                .expect("if-range");
            assert_eq!(r.status(), 206);
            let r = req(&[("range", "bytes=0-3"), ("if-range", "\"other\"")], false)
                .await
                .expect("if-range");
            assert_eq!(r.status(), 200);
            assert_eq!(r.bytes().await.expect("b").len(), n);
            // Several ranges: the whole file (a server may ignore Range).
            let r = req(&[("range", "bytes=0-1,4-5")], false)
                .await
                .expect("multi");
            assert_eq!(r.status(), 200);
            // Weak and listed validators.
            let weak = format!("\"x\", W/{etag}");
            let r = req(&[("if-none-match", &weak)], false).await.expect("weak");
            assert_eq!(r.status(), 304);
            assert_eq!(r.headers()["etag"], etag.as_str());
        }
        // Conditionals: a matching ETag or an unchanged date is 304 (HEAD too); a wrong
        // ETag wins over a matching date.
        for head in [false, true] {
            let r = req(&[("if-none-match", &etag)], head).await.expect("inm");
            assert_eq!(r.status(), 304, "cache {cache} head {head}");
            assert!(r.bytes().await.expect("b").is_empty());
            let r = req(&[("if-modified-since", &last_modified)], head)
                .await
                .expect("ims");
            assert_eq!(r.status(), 304, "cache {cache} head {head}");
        }
        let r = req(
            &[
                ("if-none-match", "\"other\""),
                ("if-modified-since", &last_modified),
            ],
            false,
        )
        .await
        .expect("both");
        assert_eq!(r.status(), 200, "cache {cache}");
        let r = req(
            &[("if-modified-since", "Thu, 01 Jan 1970 00:00:01 GMT")],
            false,
        )
        .await
        .expect("old date");
        assert_eq!(r.status(), 200);

        // The same name now holds other content: served at once, new ETag.
        t.put_fixture("alice", "a.flist", "merge-b.flist").await;
        let b = std::fs::read(test_support::fixture("merge-b.flist")).expect("fixture");
        let r = req(&[("if-none-match", &etag)], false)
            .await
            .expect("after put");
        assert_eq!(r.status(), 200, "cache {cache}");
        assert_ne!(r.headers()["etag"], etag.as_str());
        assert_eq!(&r.bytes().await.expect("b")[..], &b[..]);
        // Removed: 404, not a cached copy.
        let alice = t.token("alice", &[]).await;
        let (s, _) = t.call("DELETE", "/api/flist/me/a.flist", &alice).await;
        assert_eq!(s, 200);
        assert_eq!(t.get("/alice/a.flist").await.status(), 404, "cache {cache}");
        t.stop().await;
    }
}
