//! `POST /api/flist/me/docker` against a real `docker-registry` fed by `skopeo`, over real
//! HTTP: synchronous and job (SSE) forms, private registries, refusals.

mod common;

use common::{TestHub, PUBLIC_BACKEND};
use serde_json::{json, Value};
use test_support::registry::{Layer, LayerTar, OciLayout, Registry};

/// Pushes `team/app:1.0` (two layers, the second deleting a file) to `reg`.
fn push_app(reg: &Registry, dir: &std::path::Path) {
    let mut layout = OciLayout::new(&dir.join("layout"));
    let base = Layer::gzip(
        &LayerTar::new()
            .dir("bin", 0o755)
            .file("bin/app", b"#!/bin/sh\necho hi\n", 0o755)
            .file("etc/old.conf", b"old", 0o644)
            .finish(),
    );
    let top = Layer::gzip(
        &LayerTar::new()
            .whiteout("etc/old.conf")
            .file("etc/new.conf", b"new", 0o600)
            .finish(),
    );
    let config = json!({
        "Entrypoint": ["/bin/app"],
        "Env": ["MODE=prod"],
        "ExposedPorts": {"8080/tcp": {}},
    });
    layout.add_image(Some("1.0"), "linux", "amd64", config, &[base, top]);
    reg.push(layout.path(), "1.0", "team/app", false);
}

async fn post_form(t: &TestHub, token: Option<&str>, form: &[(&str, &str)]) -> (u16, Value) {
    let mut r = t.client.post(t.url("/api/flist/me/docker")).form(form);
    if let Some(tok) = token {
        r = r.bearer_auth(tok);
    }
    let r = r.send().await.expect("request");
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

fn sse_events(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).expect("event json"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_image_becomes_an_flist_in_the_callers_repository() {
    let reg = Registry::start();
    let work = tempfile::tempdir().expect("tempdir");
    push_app(&reg, work.path());
    // A loopback registry is reached only when the operator lists it.
    let host = reg.host();
    let t = TestHub::start_with(move |c| c.docker.registries = vec![host]).await;
    let alice = t.token("alice", &[]).await;
    let image = format!("{}/team/app:1.0", reg.host());
    let name = format!("127.0.0.1-{}-team-app-1.0.flist", reg.port());

    // unauthenticated: refused before anything is fetched
    let (s, _) = post_form(&t, None, &[("image", &image)]).await;
    assert_eq!(s, 401);
    // no image
    let (s, v) = post_form(&t, Some(&alice), &[]).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["message"].as_str().unwrap_or("").contains("image"), "{v}");
    assert_eq!(reg.blob_gets(""), 0);

    // synchronous form (what the reference's clients do)
    let (s, v) = post_form(&t, Some(&alice), &[("image", &image)]).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "success");
    let p = &v["payload"];
    assert_eq!(p["name"], name.as_str());
    assert_eq!(p["layers"], 2);
    assert!(p["job"].is_string());

    // listed, dumped, downloadable; metadata from the image, backend the public one
    let (s, listing) = t.get_json("/api/flist/alice").await;
    assert_eq!(s, 200);
    assert!(
        listing
            .as_array()
            .expect("array")
            .iter()
            .any(|e| e["name"] == name.as_str()),
        "{listing}"
    );
    let (s, dump) = t.get_json(&format!("/api/flist/alice/{name}")).await;
    assert_eq!(s, 200);
    let paths: Vec<&str> = dump["content"]
        .as_array()
        .expect("content")
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert!(paths.iter().any(|p| p.ends_with("bin/app")), "{paths:?}");
    assert!(
        paths.iter().any(|p| p.ends_with("etc/new.conf")),
        "{paths:?}"
    );
    assert!(!paths.iter().any(|p| p.ends_with("old.conf")), "{paths:?}");
    let bytes = t
        .get(&format!("/alice/{name}"))
        .await
        .bytes()
        .await
        .expect("download");
    let fl = flist_format::Flist::from_reader(&bytes[..], "download").expect("flist");
    let backend: Value =
        serde_json::from_str(fl.metadata.get("backend").expect("backend")).expect("json");
    assert_eq!(
        backend["host"], "hub.example.org",
        "{backend} vs {PUBLIC_BACKEND}"
    );
    let entry: Value =
        serde_json::from_str(fl.metadata.get("entrypoint").expect("entrypoint")).expect("json");
    assert_eq!(entry, json!(["/bin/app"]));
    assert!(fl.metadata.get("environ").unwrap_or("").contains("MODE"));

    // job form: answers at once, progress and result over SSE
    let (s, v) = post_form(&t, Some(&alice), &[("image", &image), ("async", "1")]).await;
    assert_eq!(s, 200, "{v}");
    let job = v["payload"]["job"].as_str().expect("job id").to_string();
    assert_eq!(v["payload"]["name"], name.as_str());
    let text = t
        .get(&format!("/listen/{job}"))
        .await
        .text()
        .await
        .expect("sse");
    let events = sse_events(&text);
    let last = events.last().expect("events");
    assert_eq!(last["status"], "info", "{events:?}");
    assert_eq!(last["info"]["name"], name.as_str());
    // the layer cache served the second conversion
    assert_eq!(last["info"]["layers_reused"], 2, "{last}");

    // unknown image: 404 naming it, and nothing listed; the job reads as failed
    let missing = format!("{}/team/nothing:1", reg.host());
    let (s, v) = post_form(&t, Some(&alice), &[("image", &missing), ("async", "1")]).await;
    assert_eq!(s, 200, "{v}");
    let job = v["payload"]["job"].as_str().expect("job").to_string();
    let events = sse_events(
        &t.get(&format!("/listen/{job}"))
            .await
            .text()
            .await
            .expect("sse"),
    );
    let last = events.last().expect("events");
    assert_eq!(last["status"], "error", "{events:?}");
    assert!(
        last["message"].as_str().unwrap_or("").contains("not found"),
        "{last}"
    );
    let (s, v) = post_form(&t, Some(&alice), &[("image", &missing)]).await;
    assert_eq!(s, 404, "{v}");
    let (s, _) = t
        .get_json(&format!(
            "/api/flist/alice/127.0.0.1-{}-team-nothing-1.flist",
            reg.port()
        ))
        .await;
    assert_eq!(s, 404);

    // local paths are never read: only registry references are accepted
    for bad in [
        "docker-archive:/etc/passwd",
        "oci:/etc",
        "/etc/passwd",
        "a b",
    ] {
        let (s, v) = post_form(&t, Some(&alice), &[("image", bad)]).await;
        assert_eq!(s, 400, "{bad}: {v}");
    }

    // registry down: a gateway error, quickly
    drop(reg);
    let (s, v) = post_form(&t, Some(&alice), &[("image", &image)]).await;
    assert_eq!(s, 502, "{v}");
    assert!(
        v["message"].as_str().unwrap_or("").contains("unreachable"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_registries_and_allow_list() {
    let reg = Registry::start_with_auth("bob", "hunter22");
    let work = tempfile::tempdir().expect("tempdir");
    push_app(&reg, work.path());
    let host = reg.host();
    let listed = host.clone();
    let t = TestHub::start_with(move |c| c.docker.registries = vec![listed]).await;
    let bob = t.token("bob", &[]).await;
    let image = format!("{host}/team/app:1.0");

    let (s, v) = post_form(&t, Some(&bob), &[("image", &image)]).await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["message"].as_str().unwrap_or("").contains("denied"),
        "{v}"
    );
    let (s, v) = post_form(
        &t,
        Some(&bob),
        &[
            ("image", &image),
            ("username", "bob"),
            ("password", "wrong"),
        ],
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(!v.to_string().contains("wrong"), "password echoed: {v}");
    // JSON bodies work too
    let r = t
        .client
        .post(t.url("/api/flist/me/docker"))
        .bearer_auth(&bob)
        .json(&json!({"image": image, "username": "bob", "password": "hunter22"}))
        .send()
        .await
        .expect("request");
    let s = r.status().as_u16();
    let v: Value = r.json().await.expect("json");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["payload"]["repository"], "bob");
    // the password is in neither the job record nor the audit log
    let hub = t.hub();
    let job = v["payload"]["job"].as_str().expect("job").to_string();
    let rec = tokio::task::spawn_blocking(move || hub.jobs().get(&job))
        .await
        .expect("join")
        .expect("job")
        .expect("record");
    assert!(!format!("{rec:?}").contains("hunter22"));
    let data = t.dir.path().join("data");
    let catalog = std::fs::read_dir(&data)
        .expect("data dir")
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name().to_string_lossy().contains("sqlite")
                || e.file_name().to_string_lossy().ends_with(".db")
        })
        .map(|e| std::fs::read(e.path()).unwrap_or_default())
        .collect::<Vec<_>>();
    assert!(!catalog.is_empty(), "catalog file found");
    for c in catalog {
        assert!(
            !c.windows(8).any(|w| w == b"hunter22"),
            "password in the catalog"
        );
    }

    // an allow-list refuses other registries with 403
    let t2 = TestHub::start_with(|c| c.docker.registries = vec!["docker.io".into()]).await;
    let bob2 = t2.token("bob", &[]).await;
    let (s, v) = post_form(&t2, Some(&bob2), &[("image", &image)]).await;
    assert_eq!(s, 403, "{v}");
    // disabled: 501
    let t3 = TestHub::start_with(|c| c.docker.enabled = false).await;
    let bob3 = t3.token("bob", &[]).await;
    let (s, _) = post_form(&t3, Some(&bob3), &[("image", &image)]).await;
    assert_eq!(s, 501);
}

/// The cookie of a signed-in browser (a web session, as `POST /login` opens).
async fn browser_session(t: &TestHub, user: &str) -> String {
    let hub = t.hub();
    let user = user.to_string();
    let (id, _) = tokio::task::spawn_blocking(move || {
        hub.accounts().create_session(&user, &[], "test", 3600)
    })
    .await
    .expect("join")
    .expect("session");
    format!("hub-session={id}")
}

/// A browser without JS: the form posts to `/docker-convert`, lands on the job's page (HTML,
/// refreshing itself) and, once the flist is stored, on the new flist's page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_form_works_without_javascript() {
    let reg = Registry::start();
    let work = tempfile::tempdir().expect("tempdir");
    push_app(&reg, work.path());
    let host = reg.host();
    let t = TestHub::start_with(move |c| c.docker.registries = vec![host]).await;
    let cookie = browser_session(&t, "alice").await;
    let origin = format!("http://{}", t.server.addr);
    let image = format!("{}/team/app:1.0", reg.host());
    let name = format!("127.0.0.1-{}-team-app-1.0.flist", reg.port());
    let post = |fields: Vec<(&'static str, String)>| {
        t.client
            .post(t.url("/docker-convert"))
            .header("cookie", &cookie)
            .header("origin", &origin)
            .form(&fields)
            .send()
    };

    // The page's form is sent to the page route, not to the JSON API.
    let page = t
        .client
        .get(t.url("/docker-convert"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(
        page.contains(r#"method="post" action="/docker-convert""#),
        "{page}"
    );

    let r = post(vec![("image", image.clone())]).await.expect("post");
    assert_eq!(r.status(), 303);
    let job_page = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    assert!(job_page.starts_with("/docker-convert/"), "{job_page}");

    // The job's page is HTML while the conversion runs, then sends the browser on.
    let mut landed = None;
    for _ in 0..600 {
        let r = t
            .client
            .get(t.url(&job_page))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("job page");
        let ctype = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        match r.status().as_u16() {
            200 => {
                assert!(ctype.starts_with("text/html"), "{ctype}");
                let html = r.text().await.expect("html");
                assert!(html.contains(r#"id="job-state""#), "{html}");
                assert!(!html.contains(">failed<"), "{html}");
                assert!(html.contains(r#"http-equiv="refresh""#), "{html}");
            }
            303 => {
                let flash = r
                    .headers()
                    .get("set-cookie")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|c| c.split(';').next())
                    .unwrap_or_default()
                    .to_string();
                let to = r.headers()["location"].to_str().expect("loc").to_string();
                landed = Some((to, flash));
                break;
            }
            s => panic!("job page answered {s}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (landed, flash) = landed.expect("the conversion ended");
    assert_eq!(landed, format!("/alice/{name}.md"));
    let r = t
        .client
        .get(t.url(&landed))
        .header("cookie", format!("{cookie}; {flash}"))
        .send()
        .await
        .expect("flist page");
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap_or_default()
        .starts_with("text/html"));
    let html = r.text().await.expect("html");
    let flash = html
        .split(r#"id="flash">"#)
        .nth(1)
        .and_then(|f| f.split("</div>").next())
        .unwrap_or_default()
        .replace("&#x2f;", "/");
    assert_eq!(
        flash,
        format!("Converted {image} into alice/{name}."),
        "the flash names the result"
    );
    assert!(
        html.contains("bin/") && html.contains("etc/"),
        "the tree of the new flist"
    );

    // Errors come back to the form in words (HTML), not as JSON.
    let missing = format!("{}/team/nothing:1", reg.host());
    let r = post(vec![("image", missing)]).await.expect("post");
    assert_eq!(r.status(), 303);
    let job_page = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let mut failed = None;
    for _ in 0..600 {
        let r = t
            .client
            .get(t.url(&job_page))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("job page");
        assert_eq!(r.status(), 200);
        let html = r.text().await.expect("html");
        if html.contains(">failed<") {
            failed = Some(html);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let html = failed.expect("the conversion failed");
    assert!(html.contains("not found"), "{html}");
    assert!(
        !html.contains(r#"http-equiv="refresh""#),
        "a failed job stops refreshing"
    );

    let r = post(vec![("image", "docker-archive:/etc/passwd".into())])
        .await
        .expect("post");
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/docker-convert");
    let flash = r.headers()["set-cookie"]
        .to_str()
        .expect("flash")
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    let page = t
        .client
        .get(t.url("/docker-convert"))
        .header("cookie", format!("{cookie}; {flash}"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(page.contains(r#"class="flash error""#), "{page}");

    // Another user's browser does not see the job; a foreign site cannot start one.
    let bob = browser_session(&t, "bob").await;
    let r = t
        .client
        .get(t.url(&job_page))
        .header("cookie", &bob)
        .send()
        .await
        .expect("job page");
    assert_eq!(r.status(), 404);
    let r = t
        .client
        .post(t.url("/docker-convert"))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .form(&[("image", image.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    // Signed out: to the sign-in page.
    let r = t
        .client
        .post(t.url("/docker-convert"))
        .form(&[("image", image.as_str())])
        .send()
        .await
        .expect("post");
    assert!(r.status().is_redirection(), "{}", r.status());
}
