//! What users of the old hub rely on: names with `:` (and `+ @ ,`) on every route, raw and
//! percent-encoded; hostile names still refused; read paths without `.flist` and with a
//! trailing `/`; CORS on public reads (never on identity routes, never with credentials);
//! `/light` and `INFO` giving a link's raw target; `.txt` naming the repository as uploader.

mod common;
#[path = "common/raw_http.rs"]
mod raw_http;

use common::TestHub;
use serde_json::{json, Value};

async fn raw(t: &TestHub, method: &str, path: &str) -> raw_http::RawResponse {
    raw_http::request(t.server.addr, method, path, &[], b"").await
}

/// tf-zos: `zos:v3.1.0.flist` (uploaded through the API with a `:` name),
/// `zos:production-3:latest.flist` → it, tag `v3` holding it; tf-official-apps:
/// `base:latest.flist`; alice: `app.flist`, crosslink `zos.flist` → tf-zos's link.
async fn populated() -> (TestHub, String) {
    let t = TestHub::start().await;
    let token = t.token("alice", &["tf-zos", "tf-official-apps"]).await;
    let archive = std::fs::read(test_support::fixture("fixture-tree.tar.gz")).expect("fixture");
    let (ct, body) = raw_http::multipart_file("file", "upload.tar.gz", &archive);
    let auth = format!("Bearer {token}");
    let r = raw_http::request(
        t.server.addr,
        "POST",
        "/api/flist/me/upload",
        &[
            ("Authorization", &auth),
            ("Cookie", "active-user=tf-zos"),
            ("Content-Type", &ct),
            ("X-Original-Name", "zos:v3.1.0.tar.gz"),
        ],
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["payload"]["name"], "zos:v3.1.0.flist");
    t.put_fixture("tf-official-apps", "base:latest.flist", "fixture.flist")
        .await;
    t.put_fixture("alice", "app.flist", "merge-a.flist").await;
    for (cookie, path) in [
        (
            "active-user=tf-zos",
            "/api/flist/me/zos:v3.1.0.flist/link/zos:production-3:latest.flist",
        ),
        (
            "active-user=tf-zos",
            "/api/flist/me/v3/zos:production-3:latest.flist/tag/tf-zos/zos:production-3:latest.flist",
        ),
        (
            "active-user=alice",
            "/api/flist/me/zos.flist/crosslink/tf-zos/zos%3Aproduction-3%3Alatest.flist",
        ),
    ] {
        let r = raw_http::request(
            t.server.addr,
            "GET",
            path,
            &[("Authorization", &auth), ("Cookie", cookie)],
            b"",
        )
        .await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    (t, token)
}

#[tokio::test]
async fn names_with_colons_work_on_every_route() {
    let (t, _) = populated().await;
    for (repo, name) in [
        ("tf-zos", "zos:production-3:latest.flist"),
        ("tf-official-apps", "base:latest.flist"),
    ] {
        let encoded = name.replace(':', "%3A");
        let stem = name.strip_suffix(".flist").expect("stem");
        let stem_enc = encoded.strip_suffix(".flist").expect("stem");
        let light = raw(&t, "GET", &format!("/api/flist/{repo}/{name}/light")).await;
        assert_eq!(light.status, 200, "{}", light.text());
        let light = light.json();
        assert_eq!(light["name"], name);
        let md5 = light["md5"].as_str().expect("md5").to_string();
        let mut bodies = Vec::new();
        for n in [name, encoded.as_str()] {
            for p in [
                format!("/api/flist/{repo}/{n}/light"),
                format!("/api/flist/{repo}/{n}/metadata"),
                format!("/api/flist/{repo}/{n}"),
            ] {
                let r = raw(&t, "GET", &p).await;
                assert_eq!(r.status, 200, "{p}: {}", r.text());
            }
            let info = raw(&t, "INFO", &format!("/api/flist/{repo}/{n}")).await;
            assert_eq!(info.json(), light);
            let dl = raw(&t, "GET", &format!("/{repo}/{n}")).await;
            assert_eq!(dl.status, 200);
            assert_eq!(dl.mime().as_deref(), Some("application/octet-stream"));
            bodies.push(dl.body);
            let m = raw(&t, "GET", &format!("/{repo}/{n}.md5")).await;
            assert_eq!(m.text(), format!("{md5}\n"));
        }
        assert_eq!(bodies[0], bodies[1]);
        for s in [stem, stem_enc] {
            let txt = raw(&t, "GET", &format!("/{repo}/{s}.txt")).await;
            assert_eq!(
                txt.text(),
                format!(
                    "File:     {name}\nUploader: {repo}\nSource:   http://hub.test/{repo}/{name}\n\
                     Storage:  zdb://hub.example.org:9900\nChecksum: {md5}\n"
                )
            );
            let j = raw(&t, "GET", &format!("/{repo}/{s}.json")).await;
            assert_eq!(
                j.json(),
                json!({"flist": name, "uploader": repo,
                       "source": format!("http://hub.test/{repo}/{name}"),
                       "storage": "zdb://hub.example.org:9900", "checksum": md5})
            );
            let page = raw(&t, "GET", &format!("/{repo}/{s}.md")).await;
            assert_eq!(page.status, 200);
            assert!(page.text().contains(name), "preview names {name}");
        }
        let listing = raw(&t, "GET", &format!("/{repo}")).await;
        assert!(listing.text().contains(name));
    }
    // Through the tag, by raw and encoded name.
    for p in [
        "/tf-zos/tags/v3/zos:production-3:latest.flist",
        "/tf-zos/tags/v3/zos%3Aproduction-3%3Alatest.flist",
    ] {
        assert_eq!(raw(&t, "GET", p).await.status, 200, "{p}");
    }
    let (_, tag) = t.get_json("/api/flist/tf-zos/tags/v3").await;
    assert_eq!(tag[0]["target"], "tf-zos/zos:production-3:latest.flist");
    t.stop().await;
}

#[tokio::test]
async fn hostile_names_are_still_refused() {
    let (t, token) = populated().await;
    let auth = format!("Bearer {token}");
    for p in [
        "/api/flist/alice/..",
        "/api/flist/alice/%2e%2e/light",
        "/api/flist/alice/..%2ftf-zos%2fzos%3Av3.1.0.flist/light",
        "/api/flist/alice/a%2fb.flist",
        "/api/flist/alice/app.flist%00/light",
        "/api/flist/alice/a%0ab.flist/light",
        "/api/flist/alice/a%01b.flist",
        "/api/flist/alice/a%7fb.flist",
        "/api/flist/alice/a%5cb.flist",
        "/api/flist/%2e%2e",
        "/api/flist/alice/tags/..",
    ] {
        let r = raw(&t, "GET", p).await;
        assert_eq!(r.status, 400, "{p}: {}", r.text());
        assert_eq!(r.json()["status"], "error", "{p}");
    }
    for p in [
        "/api/flist/me/..%2fx.flist/link/y.flist",
        "/api/flist/me/app.flist/link/a%00.flist",
        "/api/flist/me/app.flist/rename/..",
        "/api/flist/me/x.flist/crosslink/tf-zos/..%2f..%2fetc%2fpasswd",
    ] {
        let r = raw_http::request(t.server.addr, "GET", p, &[("Authorization", &auth)], b"").await;
        assert_eq!(r.status, 400, "{p}: {}", r.text());
    }
    // An upload whose original name is not a valid flist name.
    let (ct, body) = raw_http::multipart_file("file", "x.tar.gz", b"not an archive");
    let r = raw_http::request(
        t.server.addr,
        "POST",
        "/api/flist/me/upload",
        &[
            ("Authorization", &auth),
            ("Content-Type", &ct),
            ("X-Original-Name", "a..b.tar.gz"),
        ],
        &body,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    t.stop().await;
}

#[tokio::test]
async fn read_paths_without_flist_and_with_a_trailing_slash() {
    let (t, token) = populated().await;
    // Every spelling resolves the same entry, so every answer is the same, additions of
    // signed flists (issue 14: `signed`, `signature`, `vm`) included.
    let with = raw(&t, "GET", "/api/flist/alice/app.flist/light")
        .await
        .json();
    assert_eq!(with["signature"], "/alice/app.flist.sig", "{with}");
    assert!(
        with.get("signed").is_some() && with.get("vm").is_some(),
        "{with}"
    );
    for p in [
        "/api/flist/alice/app/light",
        "/api/flist/alice/app/light/",
        "/api/flist/alice/app.flist/light/",
    ] {
        let r = raw(&t, "GET", p).await;
        assert_eq!((r.status, r.json()), (200, with.clone()), "{p}");
    }
    assert_eq!(raw(&t, "INFO", "/api/flist/alice/app").await.json(), with);
    assert_eq!(raw(&t, "INFO", "/api/flist/alice/app/").await.json(), with);
    let dump = raw(&t, "GET", "/api/flist/alice/app.flist").await.json();
    assert_eq!(raw(&t, "GET", "/api/flist/alice/app").await.json(), dump);
    assert_eq!(raw(&t, "GET", "/api/flist/alice/app/").await.json(), dump);
    let md = raw(&t, "GET", "/api/flist/alice/app.flist/metadata")
        .await
        .json();
    assert_eq!(
        raw(&t, "GET", "/api/flist/alice/app/metadata/")
            .await
            .json(),
        md
    );
    for p in [
        "/api/repositories/",
        "/api/flist/",
        "/api/fileslist/",
        "/api/flist/alice/",
        "/api/flist/tf-zos/tags/v3/",
        "/alice/app.flist/",
        "/alice/",
    ] {
        assert_eq!(raw(&t, "GET", p).await.status, 200, "{p}");
    }
    let auth = format!("Bearer {token}");
    let r = raw_http::request(
        t.server.addr,
        "GET",
        "/api/flist/me/",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(
        r.json(),
        json!({"status": "success", "payload": {"username": "alice"}})
    );
    // Unknown names stay unknown, in the old hub's words.
    let r = raw(&t, "GET", "/api/flist/alice/nope/light").await;
    assert_eq!(
        (r.status, r.json()),
        (
            404,
            json!({"status": "error", "message": "source not found"})
        )
    );
    let r = raw(&t, "GET", "/api/flist/nobody/x.flist").await;
    assert_eq!(
        (r.status, r.json()),
        (404, json!({"status": "error", "message": "user not found"}))
    );
    t.stop().await;
}

#[tokio::test]
async fn links_show_their_raw_target_on_light_and_the_clean_one_in_listings() {
    let (t, _) = populated().await;
    let light = raw(&t, "GET", "/api/flist/alice/zos.flist/light")
        .await
        .json();
    assert_eq!(light["type"], "symlink");
    assert_eq!(light["target"], "../tf-zos/zos:production-3:latest.flist");
    assert_eq!(
        raw(&t, "INFO", "/api/flist/alice/zos.flist").await.json(),
        light
    );
    let same = raw(
        &t,
        "GET",
        "/api/flist/tf-zos/zos:production-3:latest.flist/light",
    )
    .await
    .json();
    assert_eq!(same["target"], "zos:v3.1.0.flist");
    // What this hub adds to the old answer (signatures, VM checks, formats).
    let keys: Vec<&String> = light
        .as_object()
        .expect("object")
        .keys()
        .filter(|k| !hub_contract::Light::ADDITIONS.contains(&k.as_str()))
        .collect();
    assert_eq!(
        keys,
        ["name", "size", "updated", "type", "md5", "linktime", "target"]
    );
    let (_, listing) = t.get_json("/api/flist/alice").await;
    let zos = listing
        .as_array()
        .expect("list")
        .iter()
        .find(|e| e["name"] == "zos.flist")
        .expect("listed");
    assert_eq!(zos["target"], "tf-zos/zos:production-3:latest.flist");
    let (_, tfzos) = t.get_json("/api/flist/tf-zos").await;
    let names: Vec<&str> = tfzos
        .as_array()
        .expect("list")
        .iter()
        .map(|e| e["name"].as_str().unwrap_or(""))
        .collect();
    // The old hub's order: tags (`.tag-v3` on disk) first, then names in byte order.
    assert_eq!(
        names,
        ["v3", "zos:production-3:latest.flist", "zos:v3.1.0.flist"]
    );
    t.stop().await;
}

#[tokio::test]
async fn public_reads_are_shared_with_other_origins_identity_routes_are_not() {
    let (t, token) = populated().await;
    let origin = [("Origin", "https://dashboard.example")];
    for p in [
        "/api/repositories",
        "/api/flist",
        "/api/fileslist",
        "/api/flist/alice",
        "/api/flist/alice/app.flist/light",
        "/api/flist/alice/app.flist/metadata",
        "/alice/app.flist",
        "/alice/app.flist.md5",
        "/alice/app.txt",
    ] {
        let r = raw_http::request(t.server.addr, "GET", p, &origin, b"").await;
        assert_eq!(r.status, 200, "{p}");
        assert_eq!(r.header("access-control-allow-origin"), Some("*"), "{p}");
        assert_eq!(r.header("access-control-allow-credentials"), None, "{p}");
    }
    let pre = raw_http::request(
        t.server.addr,
        "OPTIONS",
        "/api/flist/alice/app.flist/light",
        &[
            ("Origin", "https://dashboard.example"),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "range"),
        ],
        b"",
    )
    .await;
    assert_eq!(pre.status, 200);
    assert_eq!(pre.header("access-control-allow-origin"), Some("*"));
    assert!(pre
        .header("access-control-allow-methods")
        .is_some_and(|m| m.contains("GET")));
    assert!(pre
        .header("access-control-allow-headers")
        .is_some_and(|h| h.to_ascii_lowercase().contains("range")));
    assert_eq!(pre.header("access-control-allow-credentials"), None);
    let pre = raw(&t, "OPTIONS", "/alice/app.flist").await;
    assert_eq!(pre.status, 200);

    // Identity routes: no CORS at all.
    let auth = format!("Bearer {token}");
    let r = raw_http::request(
        t.server.addr,
        "GET",
        "/api/flist/me",
        &[("Authorization", &auth), ("Origin", "https://evil.example")],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
    let pre = raw_http::request(
        t.server.addr,
        "OPTIONS",
        "/api/flist/me/app.flist",
        &[
            ("Origin", "https://evil.example"),
            ("Access-Control-Request-Method", "DELETE"),
        ],
        b"",
    )
    .await;
    assert_eq!(pre.header("access-control-allow-origin"), None);
    // A wrong method on an /api/ route is a JSON error.
    let r = raw(&t, "POST", "/api/repositories").await;
    assert_eq!(r.status, 405);
    let v: Value = r.json();
    assert_eq!(v["status"], "error");
    t.stop().await;
}
