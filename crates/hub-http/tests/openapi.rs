//! `GET /api/openapi.json`: an OpenAPI 3.1 document that a real validator
//! (`openapi-spec-validator`, from PyPI) accepts, documenting every route of the router and
//! every endpoint of `../shared/spec/hub-api.md`; `GET /api/docs` shows it as a page.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::TestHub;
use serde_json::{json, Value};

/// `/a/{x}/b/{*rest}` → `/a/{}/b/{}`: routes compare by shape, not by parameter names.
fn shape(path: &str) -> String {
    let s: Vec<String> = path
        .split('/')
        .map(|seg| {
            if seg.starts_with('{') && seg.ends_with('}') {
                "{}".to_string()
            } else {
                seg.to_string()
            }
        })
        .collect();
    s.join("/")
}

/// Every `.route("PATH", ...)` of the hub-http sources with its methods.
fn router_routes() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files: Vec<PathBuf> = Vec::new();
    let mut dirs = vec![src];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("src dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    let mut routes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("source");
        // `.route(` calls, up to the next one (or the end of the builder chain).
        for part in text.split(".route(").skip(1) {
            let part = part.trim_start();
            let Some(rest) = part.strip_prefix('"') else {
                continue;
            };
            let Some(end) = rest.find('"') else { continue };
            let path = &rest[..end];
            let mut body = &rest[end..];
            if let Some(stop) = body.find(";\n") {
                body = &body[..stop];
            }
            let mut methods = BTreeSet::new();
            for (needle, m) in [
                ("get(", &["get"][..]),
                ("post(", &["post"]),
                ("put(", &["put"]),
                ("delete(", &["delete"]),
                ("WRITE", &["get", "post", "put"]),
                ("MethodFilter::POST", &["post"]),
                ("MethodFilter::PUT", &["put"]),
            ] {
                if body.contains(needle) {
                    methods.extend(m.iter().map(|s| s.to_string()));
                }
            }
            assert!(!methods.is_empty(), "no method found for {path} in {f:?}");
            routes.entry(shape(path)).or_default().extend(methods);
        }
    }
    routes
}

/// The `METHOD /path` endpoints of the contract's tables (`<x>` segments as parameters).
fn spec_endpoints() -> BTreeMap<String, BTreeSet<String>> {
    let spec = test_support::workspace_root().join("../shared/spec/hub-api.md");
    let text = std::fs::read_to_string(&spec).expect("hub-api.md");
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("| `")) {
        let first = line.split(" | ").next().unwrap_or_default();
        let mut methods: Vec<String> = Vec::new();
        for code in first.split('`').skip(1).step_by(2) {
            let (ms, path) = match code.split_once(' ') {
                Some((ms, p)) if ms.chars().all(|c| c.is_ascii_uppercase() || c == '|') => {
                    (Some(ms), p)
                }
                _ => (None, code),
            };
            if let Some(ms) = ms {
                methods = ms.split('|').map(str::to_lowercase).collect();
            }
            if !path.starts_with('/') {
                continue;
            }
            let path: Vec<String> = path
                .split('/')
                .map(|seg| {
                    if seg.contains('<') {
                        "{}".to_string()
                    } else {
                        seg.to_string()
                    }
                })
                .collect();
            let path = path.join("/");
            for m in &methods {
                // `INFO` is no HTTP method OpenAPI can describe (its answer is `/light`'s).
                if m != "info" {
                    out.entry(path.clone()).or_default().insert(m.clone());
                }
            }
        }
    }
    out
}

fn documented(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let methods = item
            .as_object()
            .expect("path item")
            .keys()
            .filter(|k| {
                [
                    "get", "put", "post", "delete", "options", "head", "patch", "trace",
                ]
                .contains(&k.as_str())
            })
            .cloned();
        out.entry(shape(path)).or_default().extend(methods);
    }
    out
}

/// Runs the validator on `doc`; `Ok` when it accepts it, the validator's words otherwise.
fn validate(doc: &Value, dir: &Path, name: &str) -> Result<(), String> {
    let file = dir.join(name);
    std::fs::write(&file, serde_json::to_vec_pretty(doc).expect("json")).expect("write");
    let out = Command::new("openapi-spec-validator")
        .args(["--schema", "3.1"])
        .arg(&file)
        .output()
        .expect("openapi-spec-validator (cargo xtask doctor installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(text)
    }
}

#[tokio::test]
async fn the_document_validates_and_covers_every_route_and_the_contract() {
    let t = TestHub::start().await;
    let r = t.get("/api/openapi.json").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .expect("ct")
        .starts_with("application/json"));
    let doc: Value = r.json().await.expect("json");
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );

    // A real validator accepts it, and refuses a broken copy (the check can fail).
    validate(&doc, t.dir.path(), "openapi.json").expect("a valid OpenAPI 3.1 document");
    let mut broken = doc.clone();
    broken["paths"]["/api/repositories"]["get"]["responses"] = Value::from("none");
    assert!(
        validate(&broken, t.dir.path(), "broken.json").is_err(),
        "the validator refuses an invalid document"
    );

    // Every route of the router, with each of its methods, is documented, and the document
    // names no route the router lacks.
    let docs = documented(&doc);
    let routes = router_routes();
    assert!(routes.len() > 40, "routes found: {routes:?}");
    for (path, methods) in &routes {
        let have = docs
            .get(path)
            .unwrap_or_else(|| panic!("route {path} is not documented"));
        for m in methods {
            assert!(have.contains(m), "{} {path} is not documented", m);
        }
    }
    for path in docs.keys() {
        assert!(
            routes.contains_key(path),
            "documented {path} is no route of the router"
        );
    }

    // Every endpoint of the contract is documented.
    let spec = spec_endpoints();
    assert!(spec.len() > 25, "endpoints of the contract: {spec:?}");
    for (path, methods) in &spec {
        // `/<repo>/<name>.flist` and its companions are one route: `/{repo}/{file}`.
        let have = docs
            .get(path)
            .unwrap_or_else(|| panic!("{path} of hub-api.md is not documented"));
        for m in methods {
            assert!(
                have.contains(m),
                "{m} {path} of hub-api.md is not documented"
            );
        }
    }

    // Shapes come from the declared types: an entry's `type` is one of the four kinds.
    let kinds = &doc["components"]["schemas"]["EntryType"]["enum"];
    assert_eq!(
        kinds,
        &serde_json::json!(["regular", "symlink", "taglink", "tag"])
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    // The readable page: every operation, linked from every page's footer.
    let page = t.get("/api/docs").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html").replace("&#x2f;", "/");
    assert!(html.contains("href=\"/api/openapi.json\""));
    let ops: usize = docs.values().map(BTreeSet::len).sum();
    assert_eq!(html.matches("<details class=\"api-op\"").count(), ops);
    assert!(html.contains("/api/flist/me/upload"));
    assert!(!html.contains("://cdn"), "served by the hub, no CDN");
    let home = t.get("/").await.text().await.expect("home");
    assert!(home.replace("&#x2f;", "/").contains("href=\"/api/docs\""));
    t.stop().await;
}

/// The contract check every `TestHub::stop` runs: answers are validated against the schemas
/// the document generates from `hub_contract`'s types, and a wrong answer is caught.
#[tokio::test]
async fn answers_are_validated_against_the_generated_schemas() {
    use common::contract::{check, Answer};
    let t = TestHub::start().await;
    t.put_fixture("alice", "a.flist", "merge-a.flist").await;
    let doc = hub_http::openapi::document();
    let (s, light) = t.get_json("/api/flist/alice/a.flist/light").await;
    assert_eq!(s, 200);
    let (s, listing) = t.get_json("/api/flist/alice").await;
    assert_eq!(s, 200);
    let (s, missing) = t.get_json("/api/flist/nobody").await;
    assert_eq!(s, 404);
    let good = |path: &str, status: u16, body: &Value| Answer {
        method: "GET".into(),
        path: path.into(),
        status,
        body: body.clone(),
    };
    let answers = [
        good("/api/flist/alice/a.flist/light", 200, &light),
        good("/api/flist/alice", 200, &listing),
        good("/api/flist/nobody", 404, &missing),
    ];
    assert_eq!(check(doc, &answers, t.dir.path()), Ok(3));
    // the same answers, each broken one way: every one is refused
    let mut bad_light = light.clone();
    bad_light["size"] = json!("12 KB");
    let mut bad_listing = listing.clone();
    bad_listing[0]["type"] = json!("folder");
    let bad_error = json!({"status": "error"});
    for (path, status, body) in [
        ("/api/flist/alice/a.flist/light", 200, &bad_light),
        ("/api/flist/alice", 200, &bad_listing),
        ("/api/flist/nobody", 404, &bad_error),
    ] {
        let e = check(doc, &[good(path, status, body)], t.dir.path())
            .expect_err("a wrong answer is refused");
        assert!(e.contains(path), "{e}");
    }
    t.stop().await;
}
