//! JSON shapes of the API (kept exactly as existing clients parse them).

use hub_contract::{Entry, EntryType, Light, Success};
use hub_repo::{Listed, ListedKind, Resolved};
use serde_json::{Map, Value};

/// `"12.34 KB"`: listings give sizes as a string in KB with two decimals.
pub fn size_kb(bytes: u64) -> String {
    format!("{:.2} KB", bytes as f64 / 1024.0)
}

/// Size listings give a taglink: the old hub showed the `st_size` of the tag directory a
/// taglink points to, 4096 on the filesystems hubs ran on ("4.00 KB"); clients see the same.
pub const TAGLINK_SIZE: u64 = 4096;

/// The old hub's listing order: byte order of the on-disk names, where a tag `v1` was the
/// directory `.tag-v1` (so tags come first, and `README` sorts before `app`).
pub fn sort_listing(items: &mut [Listed]) {
    fn key(l: &Listed) -> std::borrow::Cow<'_, str> {
        match l.kind {
            ListedKind::Tag => format!(".tag-{}", l.name).into(),
            _ => l.name.as_str().into(),
        }
    }
    items.sort_by(|a, b| key(a).as_bytes().cmp(key(b).as_bytes()));
}

/// A repository listing, in the old hub's order.
pub fn listing(mut items: Vec<Listed>) -> Vec<Entry> {
    sort_listing(&mut items);
    items.iter().map(listed).collect()
}

/// A link's target as the old hub stored it, relative to the link's folder: `x.flist` for a
/// link in the same repository, `../repo/x.flist` for a crosslink, even one into its own
/// repository (ZOS joins it with the entry's folder).
pub fn raw_link(repo: &str, target_repo: &str, target_name: &str, crosslink: bool) -> String {
    if repo == target_repo && !crosslink {
        target_name.to_string()
    } else {
        format!("../{target_repo}/{target_name}")
    }
}

/// One `<entry>` of a listing.
pub fn listed(l: &Listed) -> Entry {
    let (kind, size) = match l.kind {
        ListedKind::Regular => (EntryType::Regular, size_kb(l.size)),
        ListedKind::Symlink => (EntryType::Symlink, size_kb(l.size)),
        ListedKind::Taglink => (EntryType::Taglink, size_kb(TAGLINK_SIZE)),
        ListedKind::Tag => (EntryType::Tag, "0 KB".to_string()),
    };
    let link = matches!(kind, EntryType::Symlink | EntryType::Taglink);
    Entry {
        name: l.name.clone(),
        size,
        updated: l.updated,
        linktime: if link { l.linktime } else { None },
        kind,
        target: if link { l.target.clone() } else { None },
        broken: l.broken,
    }
}

/// The `INFO` / `/light` answer for a resolved entry.
pub fn light(name: &str, r: &Resolved, link: Option<(i64, String)>) -> Light {
    let (linktime, target) = link.unzip();
    Light {
        name: name.to_string(),
        size: r.size,
        updated: r.updated,
        kind: if linktime.is_some() {
            EntryType::Symlink
        } else {
            EntryType::Regular
        },
        md5: r.md5.clone(),
        linktime,
        target,
        signed: None,
        signature: None,
        author_signature: None,
        vm: None,
        formats: None,
    }
}

/// Flist metadata for `/metadata`: JSON-valued keys parsed, credentials removed, and
/// `backend-forced` (the hub's public backend) when the flist names no backend.
pub fn metadata(raw: &Map<String, Value>, public_backend: Option<&str>) -> Value {
    const JSON_KEYS: [&str; 7] = [
        "backend",
        "backend-mirrors",
        "entrypoint",
        "environ",
        "port",
        "volume",
        "readme",
    ];
    let mut out = Map::new();
    // Keys in byte order, as the old hub listed them.
    let mut keys: Vec<(&String, &Value)> = raw.iter().collect();
    keys.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    for (k, v) in keys {
        let text = v.as_str().unwrap_or_default();
        let value = if JSON_KEYS.contains(&k.as_str()) {
            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
        } else {
            Value::String(text.to_string())
        };
        out.insert(k.clone(), value);
    }
    // The typed backend, public form only; one that cannot be parsed may hide
    // credentials: do not echo it.
    match raw
        .get("backend")
        .and_then(Value::as_str)
        .map(flist_format::Backend::parse)
    {
        Some(Ok(b)) => {
            out.insert("backend".into(), b.to_public_value());
        }
        Some(Err(_)) => {
            out.remove("backend");
        }
        None => {}
    }
    if !out.contains_key("backend") {
        let forced = public_backend
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null);
        out.insert("backend-forced".into(), forced);
    }
    Value::Object(out)
}

/// The `Storage:` line (`zdb://host:port`, or an HTTP store's URL) from a `backend`
/// metadata JSON (for `.txt`/`.json`); empty when absent or invalid.
pub fn storage_url(backend_json: Option<&str>) -> String {
    backend_json
        .and_then(|b| flist_format::Backend::parse(b).ok())
        .map(|b| b.storage_line())
        .unwrap_or_default()
}

/// `{"status":"success"}` with an optional payload.
pub fn success(payload: Option<Value>) -> Success {
    match payload {
        Some(p) => Success::with(p),
        None => Success::done(),
    }
}

/// Escapes text for HTML.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_are_kb_strings() {
        assert_eq!(size_kb(12636), "12.34 KB");
        assert_eq!(size_kb(0), "0.00 KB");
    }

    #[test]
    fn metadata_hides_passwords_and_forces_backend() {
        let mut raw = Map::new();
        raw.insert(
            "backend".into(),
            json!(r#"{"host":"h","port":9900,"password":"secret"}"#),
        );
        raw.insert("custom".into(), json!("x"));
        let v = metadata(&raw, None);
        assert_eq!(v["backend"], json!({"host": "h", "port": 9900}));
        assert!(!v.to_string().contains("secret"));
        let v = metadata(&Map::new(), Some(r#"{"host":"pub","port":1}"#));
        assert_eq!(v["backend-forced"], json!({"host": "pub", "port": 1}));
        // Every shape through the typed backend: string port, socket, http; token hidden;
        // an unparsable value is not echoed.
        for (stored, shown, storage) in [
            (
                r#"{"host":"h","port":"9901","token":"secret"}"#,
                json!({"host": "h", "port": 9901}),
                "zdb://h:9901",
            ),
            (
                r#"{"socket":"/s","password":"secret","host":"x","port":0}"#,
                json!({"socket": "/s", "host": "x", "port": 0}),
                "zdb+unix:///s",
            ),
            (
                r#"{"url":"http://hub:5555/chunks"}"#,
                json!({"url": "http://hub:5555/chunks"}),
                "http://hub:5555/chunks",
            ),
        ] {
            let mut raw = Map::new();
            raw.insert("backend".into(), json!(stored));
            let v = metadata(&raw, None);
            assert_eq!(v["backend"], shown, "{stored}");
            assert!(!v.to_string().contains("secret"));
            assert_eq!(storage_url(Some(stored)), storage);
        }
        let mut raw = Map::new();
        raw.insert("backend".into(), json!(r#"{"secret": 1"#));
        let v = metadata(&raw, None);
        assert!(v.get("backend").is_none() && !v.to_string().contains("secret"));
        assert_eq!(storage_url(Some("nope")), "");
    }
}
