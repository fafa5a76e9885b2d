//! The flist page (`/<repo>/<name>.md`): what it is, how to use it, its metadata and readme,
//! and its contents as a tree read one directory page at a time from the path index (never
//! the whole listing: a 200,000-entry flist costs one indexed query per page).

use axum::extract::{FromRequestParts, Query, Request};
use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Response};
use flist_format::Kind;
use hub_repo::{EntryKind, Resolved};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{markdown, page_result, qv, seg, Ctx};
use crate::error::ApiError;
use crate::files;
use crate::render;
use crate::state::Shared;

/// Entries per page of a directory.
pub const TREE_PAGE: u64 = 200;

/// Query of the flist page.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct FlistQuery {
    /// Directory shown (absolute path).
    dir: Option<String>,
    /// Page of that directory.
    page: u64,
    /// `1`: only the tree rows (for the script expanding directories in place).
    fragment: Option<String>,
    /// A file to preview (absolute path).
    file: Option<String>,
}

/// `ls`-like metadata keys shown first, with their labels.
const KNOWN_KEYS: [(&str, &str); 4] = [
    ("entrypoint", "Entrypoint"),
    ("environ", "Environment"),
    ("port", "Ports"),
    ("volume", "Volumes"),
];

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(a) => a.iter().map(value_text).collect::<Vec<_>>().join(" "),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", value_text(v)))
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    }
}

/// The storage line from a backend object: its URL for an HTTP store (`{"url": ...}`, never
/// with credentials), else `zdb://host:port/namespace` (never the password).
fn storage_line(b: &Value) -> Option<String> {
    if let Some(url) = b.get("url").and_then(Value::as_str) {
        let mut u = reqwest::Url::parse(url).ok()?;
        // Both only fail for URLs that cannot carry credentials at all.
        let _ = u.set_password(None);
        let _ = u.set_username("");
        return Some(u.to_string());
    }
    let host = b.get("host").and_then(Value::as_str)?;
    let port = b
        .get("port")
        .map(|p| p.to_string().trim_matches('"').to_string())
        .unwrap_or_else(|| "9900".into());
    let ns = b
        .get("namespace")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(|s| format!("/{s}"))
        .unwrap_or_default();
    Some(format!("zdb://{host}:{port}{ns}"))
}

fn readme_of(md: &Map<String, Value>) -> Option<String> {
    match md.get("readme")? {
        // The format's `{"readme": "…", "license": …}`, stored as its JSON text.
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(o)) => o.get("readme").and_then(Value::as_str).map(str::to_string),
            _ => Some(s.clone()),
        },
        Value::Object(o) => o.get("readme").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

fn normalize_dir(d: Option<&str>) -> String {
    let d = d.unwrap_or("/").trim();
    let parts: Vec<&str> = d
        .split('/')
        .filter(|p| !p.is_empty() && *p != "." && *p != "..")
        .collect();
    format!("/{}", parts.join("/"))
}

/// The flist page of `repo/name` (resolved to `r`).
pub async fn page(st: &Shared, repo: &str, name: &str, r: Resolved, req: Request) -> Response {
    let (mut parts, _) = req.into_parts();
    let ctx = match Ctx::from_request_parts(&mut parts, st).await {
        Ok(c) => c,
        Err(never) => match never {},
    };
    let q = Query::<FlistQuery>::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let viewer = match crate::visibility::Viewer::from_request_parts(&mut parts, st).await {
        Ok(v) => v,
        Err(e) => return ctx.error(&e),
    };
    let out = render_page(st, &ctx, &viewer, repo, name, r, q).await;
    page_result(&ctx, out)
}

async fn render_page(
    st: &Shared,
    ctx: &Ctx,
    viewer: &crate::visibility::Viewer,
    repo: &str,
    name: &str,
    r: Resolved,
    q: FlistQuery,
) -> Result<Response, ApiError> {
    let file = q.file.as_deref().filter(|f| !f.is_empty());
    // previewing a file shows its directory unless another one is asked for
    let dir = match (q.dir.as_deref(), file) {
        (None, Some(f)) => normalize_dir(f.rsplit_once('/').map(|(d, _)| d)),
        (d, _) => normalize_dir(d),
    };
    let offset = q.page.saturating_mul(TREE_PAGE);
    let fragment = q.fragment.is_some();
    let (r2, d2, repo2, name2) = (r.clone(), dir.clone(), repo.to_string(), name.to_string());
    let v2 = viewer.clone();
    // A file stored before the path index existed is indexed once (a parse of the whole
    // flist): shared by concurrent requests and bounded with the other contents loads.
    let (hub, sha) = (st.hub.clone(), r.sha256.clone());
    if !st
        .blocking(move |hub| Ok(hub.paths().indexed(&sha)?))
        .await?
    {
        let sha = r.sha256.clone();
        st.contents
            .load(format!("index:{sha}"), move || {
                hub.paths().ensure(&sha)?;
                Ok(bytes::Bytes::new())
            })
            .await?;
    }
    let (dir_page, stats, entry, refs) = st
        .blocking(move |hub| {
            let dir_page = hub.paths().dir_page(&r2.sha256, &d2, offset, TREE_PAGE)?;
            if fragment {
                return Ok((dir_page, None, None, Vec::new()));
            }
            let stats = hub.paths().stats(&r2.sha256)?;
            let entry = hub.catalog().entry(&repo2, &name2)?;
            let mut refs = hub.catalog().references_to(&repo2, &name2)?;
            refs.retain(|r| v2.sees(&r.repo));
            Ok((dir_page, stats, entry, refs))
        })
        .await?;
    let base_href = format!("/{}/{}.md", seg(repo), seg(name));
    let tree = tree_context(&base_href, &dir, q.page, dir_page);
    if fragment {
        let html = super::env()
            .get_template("tree.html")
            .and_then(|t| t.render(json!({"tree": tree, "fragment": true})))
            .map_err(|e| ApiError::internal(format!("rendering tree: {e:#}")))?;
        let mut resp = Html(html).into_response();
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return Ok(resp);
    }
    let preview = match file {
        Some(f) => Some(preview(st, repo, name, &r, &base_href, f).await),
        None => None,
    };
    let md = st.contents.metadata(&st.hub, &r).await?;
    let safe = render::metadata(&md, st.public_backend.as_deref());
    let backend = safe.get("backend").or_else(|| safe.get("backend-forced"));
    let storage = backend.and_then(storage_line);
    let mut meta_rows = Vec::new();
    for (key, label) in KNOWN_KEYS {
        if let Some(v) = safe.get(key) {
            meta_rows.push(json!({"key": label, "value": value_text(v)}));
        }
    }
    if let Value::Object(m) = &safe {
        for (k, v) in m {
            if KNOWN_KEYS.iter().any(|(kk, _)| kk == k)
                || matches!(k.as_str(), "readme" | "backend" | "backend-forced")
            {
                continue;
            }
            meta_rows.push(json!({"key": k, "value": value_text(v)}));
        }
    }
    let readme_html = readme_of(&md)
        .filter(|s| !s.trim().is_empty())
        .map(|s| markdown::render(&s));
    let public = st.config.public_url.trim_end_matches('/');
    let url = format!("{public}/{repo}/{name}");
    let link = match entry.map(|e| e.kind) {
        Some(EntryKind::Symlink {
            target_repo,
            target_name,
            ..
        }) => Some(json!({
            "target": format!("{target_repo}/{target_name}"),
            "href": format!("/{}/{}.md", seg(&target_repo), seg(&target_name)),
        })),
        _ => None,
    };
    let refs: Vec<Value> = refs
        .iter()
        .map(|x| match &x.tag {
            Some(tag) => json!({"label": format!("{}/tags/{tag}/{}", x.repo, x.name),
                                "href": format!("/{}/tags/{}", seg(&x.repo), seg(tag)), "kind": "tag"}),
            None => json!({"label": format!("{}/{}", x.repo, x.name),
                           "href": format!("/{}/{}.md", seg(&x.repo), seg(&x.name)), "kind": "link"}),
        })
        .collect();
    let entrypoint = safe.get("entrypoint").map(value_text).unwrap_or_default();
    let environ = safe.get("environ").map(value_text).unwrap_or_default();
    let owner = ctx.actor.as_ref().is_some_and(|a| a.may_write(repo));
    Ok(ctx.render(
        "flist.html",
        &format!("{repo}/{name}"),
        json!({
            "repo": repo, "name": name, "url": url, "md5": r.md5, "size": r.size,
            "updated": r.updated, "storage": storage, "meta": meta_rows,
            "readme_html": readme_html, "tree": tree, "stats": stats,
            "link": link, "refs": refs, "owner": owner,
            "download": format!("/{}/{}", seg(repo), seg(name)),
            "md5_href": format!("/{}/{}.md5", seg(repo), seg(name)),
            "download_fl": format!("/{}/{}.fl", seg(repo), seg(name.strip_suffix(".flist").unwrap_or(name))),
            "extract": format!("zflist extract {url} ./{}", name.trim_end_matches(".flist").replace([':', '@', ','], "-")),
            "entrypoint": entrypoint, "environ": environ,
            "source": r.source, "uploader": r.uploader, "preview": preview,
        }),
    ))
}

/// What the preview card shows for `path` (as asked) in `repo/name`: a text file's first
/// [`files::PREVIEW_BYTES`] (escaped by the template) with a size notice, an image, a
/// binary described by its first bytes, a link's target, or why there is nothing to show.
async fn preview(
    st: &Shared,
    repo: &str,
    name: &str,
    r: &Resolved,
    base: &str,
    asked: &str,
) -> Value {
    let path = match files::check_path(asked) {
        Ok(p) => p,
        Err(e) => return json!({"path": asked, "error": e.message}),
    };
    let entry = match files::entry_at(st, r, &path).await {
        Ok(Some(e)) => e,
        Ok(None) => {
            return json!({"path": path, "error": format!("There is no {path} in this flist.")})
        }
        Err(e) => return json!({"path": path, "error": e.message}),
    };
    let (meta, kind) = entry;
    let file_name = path.rsplit('/').next().unwrap_or("").to_string();
    let mut v = json!({
        "path": path, "name": file_name, "kind": files::kind_word(&kind),
        "mode": flist_format::display::mode_string(&kind, meta.mode),
        "owner": format!("{}:{}", meta.uname, meta.gname),
    });
    match kind {
        Kind::File { size, blocks } => {
            let href = files::member_href(repo, name, &path);
            v["size"] = json!(size);
            v["download"] = json!(href);
            v["too_large"] = json!(size > st.config.limits.max_file_download_bytes);
            let head = match files::head(st, &blocks, size, files::PREVIEW_BYTES).await {
                Ok(h) => h,
                Err(e) => {
                    v["error"] = json!(format!(
                        "The file's contents could not be read: {}",
                        e.message
                    ));
                    return v;
                }
            };
            if size == 0 {
                v["empty"] = json!(true);
            } else if let Some(mime) = files::image_type(&head) {
                v["image"] = json!({"type": mime, "src": href});
            } else if files::is_text(&head) {
                v["text"] = json!(String::from_utf8_lossy(&head));
                v["shown"] = json!(head.len());
                v["cut"] = json!(size > head.len() as u64);
            } else {
                v["binary"] = json!(files::describe(&head));
            }
        }
        Kind::Symlink { target } => {
            let to = files::link_destination(&path, &target);
            v["target"] = json!(target);
            v["target_href"] = json!(format!("{base}?file={}#preview", qv(&to)));
        }
        Kind::Dir { .. } => {
            v["dir_href"] = json!(format!("{base}?dir={}#contents", qv(&path)));
        }
        Kind::Special { .. } => {}
    }
    v
}

fn tree_context(base: &str, dir: &str, page: u64, p: Option<hub_repo::paths::DirPage>) -> Value {
    let mut crumbs = vec![json!({"name": "/", "href": format!("{base}?dir=/#contents")})];
    let mut acc = String::new();
    for part in dir.split('/').filter(|s| !s.is_empty()) {
        acc.push('/');
        acc.push_str(part);
        crumbs.push(json!({"name": part, "href": format!("{base}?dir={}#contents", qv(&acc))}));
    }
    let Some(p) = p else {
        return json!({"dir": dir, "crumbs": crumbs, "missing": true, "entries": []});
    };
    let entries: Vec<Value> = p
        .entries
        .iter()
        .map(|e| {
            let is_dir = e.kind == "directory";
            json!({
                "name": e.name, "path": e.path, "kind": e.kind, "mode": e.mode,
                "owner": e.owner, "size": e.size, "target": e.target, "dir": is_dir,
                "children": e.children,
                "href": if is_dir { format!("{base}?dir={}#contents", qv(&e.path)) } else { format!("{base}?file={}#preview", qv(&e.path)) },
                "fragment": if is_dir { format!("{base}?dir={}&fragment=1", qv(&e.path)) } else { String::new() },
            })
        })
        .collect();
    let shown_to = p.offset + p.entries.len() as u64;
    let dq = qv(dir);
    json!({
        "dir": dir, "crumbs": crumbs, "entries": entries, "total": p.total,
        "from": if p.entries.is_empty() { 0 } else { p.offset + 1 }, "to": shown_to,
        "prev": (page > 0).then(|| format!("{base}?dir={dq}&page={}#contents", page - 1)),
        "next": (shown_to < p.total).then(|| format!("{base}?dir={dq}&page={}#contents", page + 1)),
        "parent": (dir != "/").then(|| {
            let up = dir.rsplit_once('/').map(|(a, _)| if a.is_empty() { "/" } else { a }).unwrap_or("/");
            format!("{base}?dir={}#contents", qv(up))
        }),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dirs_are_normalized() {
        assert_eq!(normalize_dir(None), "/");
        assert_eq!(normalize_dir(Some("usr//bin/")), "/usr/bin");
        assert_eq!(normalize_dir(Some("/../etc")), "/etc");
    }

    #[test]
    fn storage_has_no_password() {
        let b = json!({"host": "h", "port": 9900, "namespace": "ns"});
        assert_eq!(storage_line(&b).unwrap(), "zdb://h:9900/ns");
        // The hub's own HTTP chunk store (the default) and one given with credentials.
        let b = json!({"url": "http://127.0.0.1:5599/chunks"});
        assert_eq!(storage_line(&b).unwrap(), "http://127.0.0.1:5599/chunks");
        let b = json!({"url": "https://u:secret@cdn.example/chunks"});
        assert_eq!(storage_line(&b).unwrap(), "https://cdn.example/chunks");
        assert_eq!(storage_line(&json!({"url": "not a url"})), None);
    }
}
