//! Private repositories and organisations over real HTTP: every read route answers a
//! private repository's paths exactly as those of a repository that does not exist (404,
//! same body) to a visitor and to a signed-in non-member, and normally to a member; links
//! and tags of public repositories do not expose it; the change feed, search and listings
//! leave it out; a removed organisation member's token stops reading at once.

mod common;

use common::TestHub;
use hub_repo::{Actor, OrgRole};
use serde_json::Value;

/// `alice` public (with links and tags into `bob`), `bob` private, organisation `acme`
/// private (owner carol, member dave); eve has an account and no membership.
async fn setup() -> (TestHub, Tokens) {
    let t = TestHub::start().await;
    t.put_fixture("alice", "app.flist", "merge-a.flist").await;
    t.put_fixture("bob", "secret.flist", "merge-b.flist").await;
    t.put_fixture("acme", "tool.flist", "fixture.flist").await;
    let tokens = Tokens {
        alice: t.token("alice", &[]).await,
        bob: t.token("bob", &[]).await,
        carol: t.token("carol", &[]).await,
        dave: t.token("dave", &[]).await,
        eve: t.token("eve", &[]).await,
    };
    let hub = t.hub();
    tokio::task::spawn_blocking(move || {
        let cat = hub.catalog();
        let (alice, bob) = (Actor::new("alice", vec![]), Actor::new("bob", vec![]));
        cat.link(&bob, "bob", "secret.flist", "lnk.flist")?;
        cat.tag_add(&bob, "bob", "v1", "secret.flist", "bob", "secret.flist")?;
        // Made while bob was public: they must not expose it once it is private.
        cat.crosslink(&alice, "alice", "leak.flist", "bob", "secret.flist")?;
        cat.tag_add(&alice, "alice", "t", "secret.flist", "bob", "secret.flist")?;
        cat.tag_add(&alice, "alice", "t", "app.flist", "alice", "app.flist")?;
        cat.crosstag(&alice, "alice", "tl", "bob", "v1")?;
        hub.accounts().org_create("acme", "carol")?;
        hub.accounts().org_add("acme", "dave", OrgRole::Member)?;
        let admin = Actor::system("test");
        cat.set_visibility(&admin, "bob", true)?;
        cat.set_visibility(&admin, "acme", true)?;
        Ok::<_, hub_repo::RepoError>(())
    })
    .await
    .expect("join")
    .expect("set up");
    (t, tokens)
}

struct Tokens {
    alice: String,
    bob: String,
    carol: String,
    dave: String,
    eve: String,
}

/// Status and body of `method path`, with `token` as bearer when given.
async fn raw(t: &TestHub, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut rq = t.client.request(m, t.url(path));
    if let Some(tok) = token {
        rq = rq.bearer_auth(tok);
    }
    let r = rq.send().await.expect("request");
    let status = r.status().as_u16();
    let body = r.text().await.expect("body");
    if let Ok(v) = serde_json::from_str::<Value>(&body) {
        t.record(method, path, status, &v);
    }
    (status, body)
}

/// The request id changes per answer: left out of comparisons.
fn without_request_id(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(mut v) => {
            if let Some(m) = v.as_object_mut() {
                m.remove("request_id");
            }
            v.to_string()
        }
        Err(_) => body.to_string(),
    }
}

/// Every read route of a repository (`{r}`: the repository, `{n}`: a flist in it, `{g}`:
/// a tag of it), with the method.
const READS: &[(&str, &str)] = &[
    ("GET", "/api/flist/{r}"),
    ("GET", "/api/flist/{r}/{n}.flist"),
    ("GET", "/api/flist/{r}/{n}"),
    ("INFO", "/api/flist/{r}/{n}.flist"),
    ("GET", "/api/flist/{r}/{n}.flist/light"),
    ("GET", "/api/flist/{r}/{n}.flist/metadata"),
    ("GET", "/api/flist/{r}/{n}.flist/taglink"),
    ("GET", "/api/flist/{r}/tags/{g}"),
    ("GET", "/api/changes/repository/{r}"),
    ("GET", "/{r}"),
    ("GET", "/{r}/{n}.flist"),
    ("HEAD", "/{r}/{n}.flist"),
    ("GET", "/{r}/{n}.flist.md5"),
    ("GET", "/{r}/{n}.txt"),
    ("GET", "/{r}/{n}.json"),
    ("GET", "/{r}/{n}.md"),
    ("GET", "/{r}/{n}.flist.md"),
    ("GET", "/{r}/{n}.flist.sig"),
    ("GET", "/{r}/{n}.flist.author.sig"),
    ("GET", "/{r}/{n}.fl.md5"),
    ("GET", "/{r}/tags/{g}"),
    ("GET", "/{r}/tags/{g}/{n}.flist"),
    ("GET", "/{r}/tags/{g}/{n}.flist.md5"),
];

fn fill(path: &str, repo: &str, name: &str, tag: &str) -> String {
    path.replace("{r}", repo)
        .replace("{n}", name)
        .replace("{g}", tag)
}

#[tokio::test]
async fn a_private_repository_reads_as_one_that_does_not_exist() {
    let (t, k) = setup().await;
    for (who, token) in [("a visitor", None), ("a non-member", Some(k.eve.as_str()))] {
        for (method, path) in READS {
            let hidden = fill(path, "bob", "secret", "v1");
            let missing = fill(path, "nobody", "secret", "v1");
            let (s1, b1) = raw(&t, method, &hidden, token).await;
            let (s2, b2) = raw(&t, method, &missing, token).await;
            assert_eq!(s1, 404, "{method} {hidden} to {who}: {b1}");
            assert_eq!(s1, s2, "{method} {hidden} vs {missing} to {who}");
            assert_eq!(
                without_request_id(&b1),
                without_request_id(&b2).replace("nobody", "bob"),
                "{method} {hidden} to {who}: the answer tells the repository exists"
            );
            assert!(!b1.contains("secret.flist") || b2.contains("secret.flist"));
        }
    }
    // Its user reads every one of them (the taglink route answers 404 for a flist).
    for (method, path) in READS {
        let p = fill(path, "bob", "secret", "v1");
        let (s, b) = raw(&t, method, &p, Some(&k.bob)).await;
        let expect_missing = p.ends_with("/taglink") || p.ends_with(".author.sig");
        if expect_missing {
            assert_eq!(s, 404, "{method} {p} to bob: {b}");
        } else if p.ends_with(".fl.md5") {
            // Converted on demand: needs the chunks, which this test does not store.
            assert_ne!(s, 404, "{method} {p} to its user: {b}");
        } else {
            assert!(s == 200, "{method} {p} to its user: {s} {b}");
        }
    }
    t.stop().await;
}

#[tokio::test]
async fn organisation_members_read_its_private_repository_and_others_do_not() {
    let (t, k) = setup().await;
    for token in [&k.carol, &k.dave] {
        for p in [
            "/api/flist/acme",
            "/api/flist/acme/tool.flist",
            "/acme/tool.flist",
            "/acme/tool.flist.md5",
            "/acme/tool.json",
            "/acme",
            "/acme/tool.flist.md",
        ] {
            assert_eq!(raw(&t, "GET", p, Some(token)).await.0, 200, "{p}");
        }
    }
    for token in [Some(k.eve.as_str()), Some(k.bob.as_str()), None] {
        assert_eq!(raw(&t, "GET", "/acme/tool.flist", token).await.0, 404);
        assert_eq!(raw(&t, "GET", "/api/flist/acme", token).await.0, 404);
    }
    t.stop().await;
}

#[tokio::test]
async fn links_and_tags_of_a_public_repository_do_not_expose_a_private_flist() {
    let (t, k) = setup().await;
    for token in [None, Some(k.eve.as_str()), Some(k.alice.as_str())] {
        // The listing leaves out the crosslink and the taglink into bob.
        let (s, body) = raw(&t, "GET", "/api/flist/alice", token).await;
        assert_eq!(s, 200);
        let names: Vec<String> = serde_json::from_str::<Vec<Value>>(&body)
            .expect("listing")
            .iter()
            .map(|e| e["name"].as_str().unwrap_or_default().to_string())
            .collect();
        assert!(names.contains(&"app.flist".to_string()), "{names:?}");
        assert!(!names.contains(&"leak.flist".to_string()), "{names:?}");
        assert!(!names.contains(&"tl".to_string()), "{names:?}");
        assert!(!body.contains("bob"), "{body}");
        // The tag keeps its public link only.
        let (_, tag) = raw(&t, "GET", "/api/flist/alice/tags/t", token).await;
        assert!(tag.contains("app.flist") && !tag.contains("bob"), "{tag}");
        // The link itself reads as a missing flist everywhere.
        for p in [
            "/alice/leak.flist",
            "/alice/leak.flist.md5",
            "/alice/leak.json",
            "/alice/leak.flist.md",
            "/api/flist/alice/leak.flist",
            "/api/flist/alice/leak.flist/light",
            "/api/flist/alice/leak.flist/metadata",
            "/api/flist/alice/tl/taglink",
            "/alice/tags/t/secret.flist",
            "/alice/tags/tl/secret.flist",
            "/api/flist/alice/tags/tl",
        ] {
            let (s, b) = raw(&t, "GET", p, token).await;
            assert!(
                s == 404 || (p.ends_with("tags/tl") && b == "[]"),
                "{p}: {s} {b}"
            );
            assert!(!b.contains("bob"), "{p}: {b}");
        }
        // The page of the public repository and its tag do not show them either.
        let (_, page) = raw(&t, "GET", "/alice", token).await;
        assert!(page.contains("app.flist") && !page.contains("leak.flist"));
        assert!(!page.contains("/bob/"), "the page links into bob");
    }
    // bob sees them through alice's repository.
    let (_, body) = raw(&t, "GET", "/api/flist/alice", Some(&k.bob)).await;
    assert!(body.contains("leak.flist") && body.contains("bob/secret.flist"));
    assert_eq!(
        raw(&t, "GET", "/alice/leak.flist", Some(&k.bob)).await.0,
        200
    );
    assert_eq!(
        raw(&t, "GET", "/alice/tags/t/secret.flist", Some(&k.bob))
            .await
            .0,
        200
    );
    t.stop().await;
}

#[tokio::test]
async fn listings_search_and_the_change_feed_leave_a_private_repository_out() {
    let (t, k) = setup().await;
    for token in [None, Some(k.eve.as_str())] {
        for p in [
            "/api/repositories",
            "/api/flist",
            "/api/fileslist",
            "/",
            "/search?q=secret",
            "/search?q=tool",
            "/search?q=/",
        ] {
            let (s, b) = raw(&t, "GET", p, token).await;
            assert_eq!(s, 200, "{p}");
            assert!(!b.contains("secret.flist"), "{p} names bob's flist: {b}");
            assert!(!b.contains("tool.flist"), "{p} names acme's flist");
            assert!(
                !b.contains("\"bob\"") && !b.contains("/bob"),
                "{p} names bob"
            );
        }
        let (s, feed) = raw(&t, "GET", "/api/changes", token).await;
        assert_eq!(s, 200);
        let feed: Value = serde_json::from_str(&feed).expect("feed");
        assert_eq!(feed["more"], false, "{feed}");
        assert_eq!(
            feed["cursor"], feed["latest"],
            "the cursor passes hidden changes"
        );
        for c in feed["changes"].as_array().expect("changes") {
            // Only that a repository others had seen turned private (mirrors drop it).
            if c["repo"] == "bob" || c["repo"] == "acme" {
                assert_eq!(c["action"], "visibility", "{c}");
                assert_eq!(c["detail"], serde_json::json!({"private": true}), "{c}");
                continue;
            }
            assert!(!c.to_string().contains("bob"), "{c}");
        }
        // The flist file of a private flist is not served by content address either.
        let sha = {
            let hub = t.hub();
            tokio::task::spawn_blocking(move || hub.catalog().resolve("bob", "secret.flist"))
                .await
                .expect("join")
                .expect("resolve")
                .sha256
        };
        let p = format!("/api/changes/file/{sha}");
        assert_eq!(raw(&t, "GET", &p, token).await.0, 404);
        assert_eq!(raw(&t, "GET", &p, Some(&k.bob)).await.0, 200);
    }
    // The members see their repositories there.
    let (_, repos) = raw(&t, "GET", "/api/repositories", Some(&k.dave)).await;
    assert!(
        repos.contains("\"acme\"") && !repos.contains("\"bob\""),
        "{repos}"
    );
    let (_, hits) = raw(&t, "GET", "/search?q=tool", Some(&k.dave)).await;
    assert!(hits.contains("tool.flist"));
    let (_, feed) = raw(&t, "GET", "/api/changes", Some(&k.bob)).await;
    assert!(feed.contains("\"bob\""));
    t.stop().await;
}

#[tokio::test]
async fn the_fast_path_never_serves_a_member_s_answer_to_others() {
    let (t, k) = setup().await;
    for _ in 0..3 {
        assert_eq!(
            raw(&t, "GET", "/bob/secret.flist", Some(&k.bob)).await.0,
            200
        );
        assert_eq!(
            raw(&t, "GET", "/bob/secret.flist.md5", Some(&k.bob))
                .await
                .0,
            200
        );
        assert_eq!(
            raw(&t, "GET", "/alice/leak.flist", Some(&k.bob)).await.0,
            200
        );
        let (_, l) = raw(&t, "GET", "/api/flist/alice", Some(&k.bob)).await;
        assert!(l.contains("leak.flist"));
    }
    for _ in 0..3 {
        assert_eq!(raw(&t, "GET", "/bob/secret.flist", None).await.0, 404);
        assert_eq!(raw(&t, "GET", "/bob/secret.flist.md5", None).await.0, 404);
        assert_eq!(raw(&t, "GET", "/alice/leak.flist", None).await.0, 404);
        assert_eq!(raw(&t, "GET", "/api/flist/bob", None).await.0, 404);
        let (_, l) = raw(&t, "GET", "/api/flist/alice", None).await;
        assert!(!l.contains("leak.flist"), "{l}");
        // Public reads are still served from memory.
        assert_eq!(raw(&t, "GET", "/alice/app.flist", None).await.0, 200);
    }
    assert!(
        t.server.state.fastpath.served() > 0,
        "public reads skip the router"
    );
    t.stop().await;
}

#[tokio::test]
async fn a_removed_member_s_token_stops_reading_and_writing_at_once() {
    let (t, k) = setup().await;
    assert_eq!(
        raw(&t, "GET", "/acme/tool.flist", Some(&k.dave)).await.0,
        200
    );
    let me = t
        .client
        .get(t.url("/api/flist/me"))
        .bearer_auth(&k.dave)
        .header("cookie", "active-user=acme")
        .send()
        .await
        .expect("me");
    assert_eq!(me.status(), 200);
    let hub = t.hub();
    tokio::task::spawn_blocking(move || hub.accounts().org_remove("acme", "dave"))
        .await
        .expect("join")
        .expect("remove");
    assert_eq!(
        raw(&t, "GET", "/acme/tool.flist", Some(&k.dave)).await.0,
        404
    );
    assert_eq!(
        raw(&t, "GET", "/api/flist/acme", Some(&k.dave)).await.0,
        404
    );
    let me = t
        .client
        .get(t.url("/api/flist/me"))
        .bearer_auth(&k.dave)
        .header("cookie", "active-user=acme")
        .send()
        .await
        .expect("me");
    assert_eq!(me.status(), 403, "the token still acts for acme");
    let r = t
        .client
        .get(t.url("/api/flist/me/tool.flist/link/x.flist"))
        .bearer_auth(&k.dave)
        .header("cookie", "active-user=acme")
        .send()
        .await
        .expect("link");
    assert_eq!(r.status(), 403);
    // carol, still an owner, reads on.
    assert_eq!(
        raw(&t, "GET", "/acme/tool.flist", Some(&k.carol)).await.0,
        200
    );
    t.stop().await;
}

#[tokio::test]
async fn writes_reading_a_private_flist_answer_as_for_a_missing_one() {
    let (t, k) = setup().await;
    for (hidden, missing) in [
        (
            "/api/flist/me/x.flist/crosslink/bob/secret.flist",
            "/api/flist/me/x.flist/crosslink/nobody/secret.flist",
        ),
        (
            "/api/flist/me/promote/bob/secret.flist/x.flist",
            "/api/flist/me/promote/nobody/secret.flist/x.flist",
        ),
        (
            "/api/flist/me/t2/x.flist/tag/bob/secret.flist",
            "/api/flist/me/t2/x.flist/tag/nobody/secret.flist",
        ),
        (
            "/api/flist/me/tl2/crosstag/bob/v1",
            "/api/flist/me/tl2/crosstag/nobody/v1",
        ),
    ] {
        let (s1, b1) = raw(&t, "GET", hidden, Some(&k.eve)).await;
        let (s2, b2) = raw(&t, "GET", missing, Some(&k.eve)).await;
        assert_eq!(s1, 404, "{hidden}: {b1}");
        assert_eq!(s1, s2, "{hidden}");
        assert_eq!(
            without_request_id(&b1),
            without_request_id(&b2).replace("nobody", "bob")
        );
    }
    let merge = t
        .client
        .post(t.url("/api/flist/me/merge/m.flist"))
        .bearer_auth(&k.eve)
        .body(r#"["bob/secret.flist", "alice/app.flist"]"#)
        .send()
        .await
        .expect("merge");
    assert_eq!(merge.status(), 404);
    // bob itself may publish its flist elsewhere by promoting it into its own repository.
    let (s, _) = raw(
        &t,
        "GET",
        "/api/flist/me/promote/bob/secret.flist/copy.flist",
        Some(&k.bob),
    )
    .await;
    assert_eq!(s, 200);
    t.stop().await;
}

#[tokio::test]
async fn visibility_is_managed_by_the_user_and_organisation_owners_only() {
    let (t, _k) = setup().await;
    let hub = t.hub();
    tokio::task::spawn_blocking(move || {
        let cat = hub.catalog();
        let dave = Actor::new("dave", vec!["acme".into()]);
        assert!(matches!(
            cat.set_visibility(&dave, "acme", false),
            Err(hub_repo::RepoError::Forbidden(_))
        ));
        let carol = Actor::new("carol", vec!["acme".into()]);
        assert!(cat.set_visibility(&carol, "acme", false).expect("owner"));
        assert!(!cat.is_private("acme").expect("read"));
        let alice = Actor::new("alice", vec![]);
        assert!(cat.set_visibility(&alice, "bob", false).is_err());
        assert!(cat.set_visibility(&alice, "alice", true).expect("own"));
        // A repository can be private before its first flist.
        let erin = Actor::new("erin", vec![]);
        assert!(cat.set_visibility(&erin, "erin", true).expect("new"));
        assert!(cat.is_private("erin").expect("read"));
    })
    .await
    .expect("join");
    // acme is public now: anyone reads it.
    assert_eq!(raw(&t, "GET", "/acme/tool.flist", None).await.0, 200);
    assert_eq!(raw(&t, "GET", "/api/flist/alice", None).await.0, 404);
    t.stop().await;
}
