//! Every subcommand of the reference `zflist hub` client (`shared/spec/zflist-hub-client.md`),
//! sent exactly as that client sends it: raw paths (names with `:` not percent-encoded),
//! `Authorization: Bearer <token>`, the `active-user` cookie for `ZFLIST_HUB_USER`, the
//! `GET /api/flist/me` check before every command but `readlink`/`taglink`, multipart `file`
//! with `X-Original-Name`, a JSON body for `merge`, `DELETE` for `delete` and `untag`. The
//! answers are checked for what the client relies on: 200 and the shapes it parses.

mod common;
#[path = "common/raw_http.rs"]
mod raw_http;

use common::TestHub;
use raw_http::RawResponse;
use serde_json::{json, Value};

/// What `ZFLIST_HUB_TOKEN` / `ZFLIST_HUB_USER` put on every request.
struct Client<'a> {
    hub: &'a TestHub,
    token: String,
    user: Option<&'a str>,
}

impl Client<'_> {
    fn headers(&self, extra: &[(&str, String)]) -> Vec<(String, String)> {
        let mut h = vec![
            ("User-Agent".to_string(), "zflist/2.3.0".to_string()),
            (
                "Authorization".to_string(),
                format!("Bearer {}", self.token),
            ),
        ];
        if let Some(u) = self.user {
            h.push(("Cookie".into(), format!("active-user={u}")));
        }
        h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        h
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        extra: &[(&str, String)],
        body: &[u8],
    ) -> RawResponse {
        let h = self.headers(extra);
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        raw_http::request(self.hub.server.addr, method, path, &h, body).await
    }

    /// The check before every subcommand: 200 and `{"status":"success","payload":{"username"}}`.
    async fn check(&self) -> String {
        let r = self.send("GET", "/api/flist/me", &[], b"").await;
        assert_eq!(r.status, 200, "hub authentication failed: {}", r.text());
        let v = r.json();
        assert_eq!(v["status"], "success", "{v}");
        v["payload"]["username"]
            .as_str()
            .unwrap_or_else(|| panic!("no payload.username in {v}"))
            .to_string()
    }

    /// A subcommand: the check, then the request; success is HTTP 200.
    async fn run(&self, method: &str, path: &str) -> Value {
        self.check().await;
        let r = self.send(method, path, &[], b"").await;
        assert_eq!(r.status, 200, "{method} {path}: {}", r.text());
        r.json()
    }

    /// `hub upload <file>`: multipart `file` plus `X-Original-Name: <file as given>`.
    async fn upload(&self, endpoint: &str, given: &str, data: &[u8]) -> RawResponse {
        self.check().await;
        let file_name = given.rsplit('/').next().unwrap_or(given);
        let (ct, body) = raw_http::multipart_file("file", file_name, data);
        self.send(
            "POST",
            endpoint,
            &[("Content-Type", ct), ("X-Original-Name", given.to_string())],
            &body,
        )
        .await
    }
}

/// `hub readlink` / `hub taglink`: no token check; prints `target`; a JSON `status` is an error.
async fn read_target(t: &TestHub, path: &str) -> String {
    let r = raw_http::request(
        t.server.addr,
        "GET",
        path,
        &[("User-Agent", "zflist/2.3.0")],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    let v = r.json();
    assert!(v.get("status").is_none(), "{path}: {v}");
    v["target"]
        .as_str()
        .unwrap_or_else(|| panic!("{path}: no target in {v}"))
        .to_string()
}

#[tokio::test]
async fn every_reference_client_subcommand_works() {
    let t = TestHub::start_with(|c| c.official = vec!["tf-official-apps".into()]).await;
    t.load_fixture_chunks(None).await;
    let token = t.token("alice", &["tf-zos", "tf-official-apps"]).await;
    let alice = Client {
        hub: &t,
        token: token.clone(),
        user: None,
    };
    let zos = Client {
        hub: &t,
        token: token.clone(),
        user: Some("tf-zos"),
    };
    let apps = Client {
        hub: &t,
        token: token.clone(),
        user: Some("tf-official-apps"),
    };

    // hub login / hub username (ZFLIST_HUB_USER selects the identity shown and acting).
    assert_eq!(alice.check().await, "alice");
    assert_eq!(zos.check().await, "tf-zos");
    let r = alice.send("GET", "/api/flist/me", &[], b"").await;
    assert_eq!(
        r.json(),
        json!({"status": "success", "payload": {"username": "alice"}})
    );
    // A wrong token or an identity the token is no member of: not 200, the client stops.
    let bad = Client {
        hub: &t,
        token: "not-a-token".into(),
        user: None,
    };
    assert_eq!(bad.send("GET", "/api/flist/me", &[], b"").await.status, 401);
    let stranger = Client {
        hub: &t,
        token: token.clone(),
        user: Some("somebody-else"),
    };
    assert_eq!(
        stranger.send("GET", "/api/flist/me", &[], b"").await.status,
        403
    );

    // hub upload zos:v3.1.0.tar.gz (as tf-zos): the name comes from X-Original-Name.
    let archive = std::fs::read(test_support::fixture("fixture-tree.tar.gz")).expect("fixture");
    let r = zos
        .upload("/api/flist/me/upload", "build/zos:v3.1.0.tar.gz", &archive)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["payload"]["name"], "zos:v3.1.0.flist");

    // hub upload base:latest.flist (as tf-official-apps).
    let flist = std::fs::read(test_support::fixture("fixture.flist")).expect("fixture");
    let r = apps
        .upload("/api/flist/me/upload-flist", "base:latest.flist", &flist)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["payload"]["name"], "base:latest.flist");

    // hub symlink zos:v3.1.0.flist zos:production-3:latest.flist; hub readlink.
    zos.run(
        "GET",
        "/api/flist/me/zos:v3.1.0.flist/link/zos:production-3:latest.flist",
    )
    .await;
    assert_eq!(
        read_target(&t, "/api/flist/tf-zos/zos:production-3:latest.flist/light").await,
        "zos:v3.1.0.flist"
    );

    // hub crosslink zos.flist tf-zos zos:production-3:latest.flist (as alice); hub readlink
    // gives the raw link, which ZOS joins with the entry's folder.
    alice
        .run(
            "GET",
            "/api/flist/me/zos.flist/crosslink/tf-zos/zos:production-3:latest.flist",
        )
        .await;
    assert_eq!(
        read_target(&t, "/api/flist/alice/zos.flist/light").await,
        "../tf-zos/zos:production-3:latest.flist"
    );

    // hub promote tf-official-apps/base:latest.flist base:mine.flist
    let v = alice
        .run(
            "GET",
            "/api/flist/me/promote/tf-official-apps/base:latest.flist/base:mine.flist",
        )
        .await;
    assert_eq!(
        v["payload"],
        json!({"source": {"username": "tf-official-apps", "filename": "base:latest.flist"},
               "destination": {"username": "alice", "filename": "base:mine.flist"}})
    );

    // hub rename base:mine.flist base@2,copy+1.flist
    alice
        .run(
            "GET",
            "/api/flist/me/base:mine.flist/rename/base@2,copy+1.flist",
        )
        .await;
    assert_eq!(
        t.get_json("/api/flist/alice/base@2,copy+1.flist/light")
            .await
            .0,
        200
    );

    // hub merge merged:1.flist tf-zos/zos:v3.1.0.flist tf-official-apps/base:latest.flist
    alice.check().await;
    let body = serde_json::to_vec(&json!([
        "tf-zos/zos:v3.1.0.flist",
        "tf-official-apps/base:latest.flist"
    ]))
    .expect("json");
    let r = alice
        .send(
            "POST",
            "/api/flist/me/merge/merged:1.flist",
            &[("Content-Type", "application/json".into())],
            &body,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "success");
    assert_eq!(
        t.get_json("/api/flist/alice/merged:1.flist/light").await.0,
        200
    );

    // hub tag v1 app:1.flist tf-zos zos:production-3:latest.flist
    alice
        .run(
            "GET",
            "/api/flist/me/v1/app:1.flist/tag/tf-zos/zos:production-3:latest.flist",
        )
        .await;
    let (s, tag) = t.get_json("/api/flist/alice/tags/v1").await;
    assert_eq!(s, 200);
    assert_eq!(tag[0]["name"], "app:1.flist");
    assert_eq!(tag[0]["target"], "tf-zos/zos:production-3:latest.flist");

    // hub crosstag stable alice v1; hub taglink alice/stable
    alice
        .run("GET", "/api/flist/me/stable/crosstag/alice/v1")
        .await;
    assert_eq!(
        read_target(&t, "/api/flist/alice/stable/taglink").await,
        "alice/tags/v1"
    );
    let through = t.get("/alice/tags/stable/app:1.flist").await;
    assert_eq!(through.status(), 200);

    // hub untag v1 app:1.flist tf-zos zos:production-3:latest.flist
    alice
        .run(
            "DELETE",
            "/api/flist/me/v1/app:1.flist/tag/tf-zos/zos:production-3:latest.flist",
        )
        .await;
    assert_eq!(t.get_json("/api/flist/alice/tags/v1").await.0, 404);

    // hub delete base@2,copy+1.flist
    alice
        .run("DELETE", "/api/flist/me/base@2,copy+1.flist")
        .await;
    assert_eq!(
        t.get_json("/api/flist/alice/base@2,copy+1.flist/light")
            .await
            .0,
        404
    );

    // Errors are not 200, so the client prints the body and exits 1.
    alice.check().await;
    let r = alice
        .send("GET", "/api/flist/me/nope.flist/link/x.flist", &[], b"")
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["status"], "error");
    t.stop().await;
}
