//! Every JSON answer the tests receive through [`super::TestHub`] is checked against the
//! OpenAPI document the server generates from `hub_contract`'s types: when the document
//! gives a JSON schema for that route, method and status, the answer must validate (JSON
//! Schema 2020-12, by Python's `jsonschema`, which `openapi-spec-validator` brings).

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

/// One answer a test received.
#[derive(Clone, Debug)]
pub struct Answer {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub body: Value,
}

/// Whether the concrete `path` is an instance of the template `tpl` (`/a/{x}/b`), and how
/// many literal segments matched (the most literal template wins).
fn matches(tpl: &str, path: &str) -> Option<usize> {
    let path = path.split('?').next().unwrap_or(path);
    let (t, p): (Vec<&str>, Vec<&str>) = (tpl.split('/').collect(), path.split('/').collect());
    if t.len() != p.len() {
        return None;
    }
    let mut literal = 0;
    for (a, b) in t.iter().zip(&p) {
        if a.starts_with('{') && a.ends_with('}') {
            if b.is_empty() {
                return None;
            }
        } else if a == b {
            literal += 1;
        } else {
            return None;
        }
    }
    Some(literal)
}

/// The JSON schema the document gives for this answer, if any.
pub fn schema_for<'a>(doc: &'a Value, a: &Answer) -> Option<(&'a str, &'a Value)> {
    let (tpl, item) = doc["paths"]
        .as_object()?
        .iter()
        .filter_map(|(tpl, item)| matches(tpl, &a.path).map(|n| (n, tpl, item)))
        .filter(|(_, _, item)| item.get(a.method.to_lowercase()).is_some())
        .max_by_key(|(n, _, _)| *n)
        .map(|(_, tpl, item)| (tpl, item))?;
    let op = &item[a.method.to_lowercase()];
    let schema =
        op["responses"][a.status.to_string()]["content"]["application/json"].get("schema")?;
    Some((tpl.as_str(), schema))
}

/// Validates `answers` against `doc`; the failures, one line each.
pub fn check(doc: &Value, answers: &[Answer], dir: &Path) -> Result<usize, String> {
    let mut cases = Vec::new();
    for a in answers {
        if let Some((tpl, schema)) = schema_for(doc, a) {
            cases.push(json!({
                "what": format!("{} {} ({tpl}) {}", a.method, a.path, a.status),
                "schema": schema,
                "instance": a.body,
            }));
        }
    }
    if cases.is_empty() {
        return Ok(0);
    }
    let file = dir.join(format!(
        "contract-answers-{}.json",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    let input = json!({"components": doc["components"], "cases": cases});
    std::fs::write(&file, serde_json::to_vec(&input).expect("json")).expect("write answers");
    const SCRIPT: &str = r#"
import json, sys
from jsonschema import Draft202012Validator
data = json.load(open(sys.argv[1]))
bad = 0
for c in data["cases"]:
    schema = dict(c["schema"])
    schema["components"] = data["components"]
    errors = sorted(Draft202012Validator(schema).iter_errors(c["instance"]), key=str)
    for e in errors[:3]:
        bad += 1
        path = "/".join(str(p) for p in e.absolute_path)
        print(f"{c['what']}: at /{path}: {e.message}")
sys.exit(1 if bad else 0)
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(&file)
        .output()
        .expect(
            "python3 with jsonschema (installed with openapi-spec-validator by cargo xtask test)",
        );
    let _ = std::fs::remove_file(&file);
    if out.status.success() {
        Ok(cases.len())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[test]
fn templates_match_the_most_literal_route() {
    let doc = json!({"paths": {
        "/api/flist/{repo}/{name}": {"get": {}},
        "/api/flist/me/{name}": {"get": {}},
        "/api/flist/{repo}": {"get": {}},
    }});
    let a = |p: &str| Answer {
        method: "GET".into(),
        path: p.into(),
        status: 200,
        body: Value::Null,
    };
    assert_eq!(
        matches("/api/flist/{repo}", "/api/flist/alice?x=1"),
        Some(3)
    );
    assert_eq!(matches("/api/flist/{repo}", "/api/flist/"), None);
    // no schema in these items: nothing to check, whichever template matched
    assert!(schema_for(&doc, &a("/api/flist/me/x")).is_none());
}
