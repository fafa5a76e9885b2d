//! Downloads (`.flist`, `.flist.md5`, `.txt`, `.json`, `.md`) and the server-rendered pages.

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use hub_repo::{names, ListedKind, Resolved};
use serde::Deserialize;
use serde_json::{json, Value};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::auth::{MaybeCaller, ACTIVE_USER_COOKIE, SESSION_COOKIE};
use crate::error::ApiError;
use crate::render::{self, html_escape as esc};
use crate::state::Shared;

/// An error shown as an HTML page with its status (or as JSON when the flag is set, for
/// `/api/` paths).
pub struct WebError(pub ApiError, pub bool);

impl From<ApiError> for WebError {
    fn from(e: ApiError) -> Self {
        WebError(e, false)
    }
}

impl From<hub_repo::RepoError> for WebError {
    fn from(e: hub_repo::RepoError) -> Self {
        WebError(e.into(), false)
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if self.1 {
            return self.0.into_response();
        }
        let body = page(
            &format!("{}", self.0.status),
            &format!(
                "<p class=\"error\">{}</p><p><a href=\"/\">Back to the hub</a></p>",
                esc(&self.0.message)
            ),
        );
        (self.0.status, Html(body)).into_response()
    }
}

type WebResult<T> = Result<T, WebError>;

/// Wraps content in the common page layout.
pub fn page(title: &str, content: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t} - flist hub</title>\
         <style>body{{font-family:sans-serif;max-width:70em;margin:auto;padding:1em}}\
         table{{border-collapse:collapse}}td,th{{padding:.2em .8em;text-align:left}}\
         tr:nth-child(even){{background:#f4f4f4}}.error{{color:#a00}}pre{{background:#f4f4f4;padding:1em;overflow:auto}}</style>\
         </head><body><nav><a href=\"/\">Hub</a> · <a href=\"/search\">Search</a> · \
         <a href=\"/upload\">Upload</a> · <a href=\"/upload-flist\">Upload flist</a> · <a href=\"/merge\">Merge</a> · \
         <a href=\"/docker-convert\">Docker</a> · <a href=\"/token\">Token</a> · <a href=\"/login-method\">Login</a> · \
         <a href=\"/logout\">Logout</a></nav><h1>{t}</h1>{content}</body></html>",
        t = esc(title)
    )
}

fn fmt_time(t: i64) -> String {
    // YYYY-MM-DD HH:MM UTC from unix seconds (civil-from-days).
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        secs / 3600,
        (secs % 3600) / 60
    )
}

// ----- downloads -------------------------------------------------------------------------

/// Splits a requested file into (entry name, what to answer).
fn parse_file(file: &str) -> Option<(String, &'static str)> {
    if let Some(n) = file.strip_suffix(".md5") {
        return n.ends_with(".flist").then(|| (n.to_string(), "md5"));
    }
    if file.ends_with(".flist") {
        return Some((file.to_string(), "flist"));
    }
    for (suffix, kind) in [(".txt", "txt"), (".json", "json"), (".md", "md")] {
        if let Some(n) = file.strip_suffix(suffix) {
            let n = if n.ends_with(".flist") {
                n.to_string()
            } else {
                format!("{n}.flist")
            };
            return Some((n, kind));
        }
    }
    None
}

async fn serve_flist(st: &Shared, r: &Resolved, name: &str, req: Request) -> Response {
    let etag = format!("\"{}\"", r.sha256);
    let matches = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
        .unwrap_or(false);
    if matches {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let path = st.hub.blob_path(&r.sha256);
    let mut resp = match ServeFile::new(path).oneshot(req).await {
        Ok(r) => r.map(Body::new),
        Err(e) => return ApiError::internal(e).into_response(),
    };
    if !resp.status().is_success() {
        // 416 and friends: an HTML answer, as the old hub's.
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        return resp;
    }
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

/// On page and download paths an invalid name is simply a file that does not exist (404), as
/// on the old hub; the `/api/` routes answer 400 for the same names.
fn no_such_file(r: Result<(), hub_repo::RepoError>) -> Result<(), WebError> {
    r.map_err(|e| WebError(ApiError::not_found(e.to_string()), false))
}

/// A link that resolves to nothing (dangling, cycle) has nothing to serve: 404.
fn gone(e: ApiError) -> WebError {
    if e.status == StatusCode::CONFLICT {
        WebError(ApiError::not_found(e.message), false)
    } else {
        WebError(e, false)
    }
}

/// Unknown `/api/...` paths that fell through to the page routes answer JSON.
fn api_guard(repo: &str, rest: &str) -> Result<(), WebError> {
    if repo == "api" {
        return Err(WebError(
            ApiError::not_found(format!("no endpoint /api/{rest}")),
            true,
        ));
    }
    Ok(())
}

/// `GET|HEAD /<repo>/<file>`: `.flist`, `.flist.md5`, `.txt`, `.json`, `.md`.
pub async fn repo_file(
    State(st): State<Shared>,
    Path((repo, file)): Path<(String, String)>,
    req: Request,
) -> WebResult<Response> {
    api_guard(&repo, &file)?;
    if let Some(flist) = file.strip_suffix(".flist.sig") {
        return Ok(crate::signing::signature(&st, &repo, &format!("{flist}.flist")).await?);
    }
    no_such_file(names::validate_repo(&repo))?;
    let (name, kind) =
        parse_file(&file).ok_or_else(|| ApiError::not_found(format!("no such page {file:?}")))?;
    no_such_file(names::validate_flist(&name))?;
    let r = st.resolve(&repo, &name).await.map_err(gone)?;
    match kind {
        "flist" => Ok(serve_flist(&st, &r, &name, req).await),
        "md5" => Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", r.md5),
        )
            .into_response()),
        "txt" | "json" => {
            let info = flist_info(&st, &repo, &name, &r).await?;
            if kind == "json" {
                return Ok(axum::Json(info).into_response());
            }
            let text = format!(
                "File:     {}\nUploader: {}\nSource:   {}\nStorage:  {}\nChecksum: {}\n",
                info["flist"].as_str().unwrap_or_default(),
                info["uploader"].as_str().unwrap_or_default(),
                info["source"].as_str().unwrap_or_default(),
                info["storage"].as_str().unwrap_or_default(),
                info["checksum"].as_str().unwrap_or_default(),
            );
            Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
        }
        _ => preview(&st, &repo, &name, r).await,
    }
}

async fn flist_info(st: &Shared, repo: &str, name: &str, r: &Resolved) -> WebResult<Value> {
    let r2 = r.clone();
    let md = st
        .blocking(move |hub| Ok(hub.metadata(&r2)?))
        .await
        .unwrap_or_default();
    // `Storage` is where this hub tells clients to fetch chunks (its public backend), as the
    // old hub did; the flist's own `backend` only when the hub announces none.
    let backend = st.public_backend.clone().or_else(|| {
        md.get("backend")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let base = st.config.public_url.trim_end_matches('/');
    Ok(json!({
        "flist": name,
        "uploader": repo,
        "source": format!("{base}/{repo}/{name}"),
        "storage": render::storage_url(backend.as_deref()),
        "checksum": r.md5,
    }))
}

async fn preview(st: &Shared, repo: &str, name: &str, r: Resolved) -> WebResult<Response> {
    let r2 = r.clone();
    let (md, dump) = st
        .blocking(move |hub| {
            let md = hub.metadata(&r2)?;
            let dump = hub.dump(&r2)?;
            Ok((md, dump))
        })
        .await?;
    let md = render::metadata(&md, st.public_backend.as_deref());
    let readme = md
        .get("readme")
        .and_then(|r| r.get("readme"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let dump: Value = serde_json::from_str(&dump).unwrap_or(Value::Null);
    let mut body = format!(
        "<p><a href=\"/{repo}/{name}\">Download</a> · md5 <code>{md5}</code> · {size} · updated {upd}</p>",
        repo = esc(repo),
        name = esc(name),
        md5 = esc(&r.md5),
        size = render::size_kb(r.size),
        upd = fmt_time(r.updated)
    );
    if !readme.is_empty() {
        body.push_str(&format!("<h2>Readme</h2><pre>{}</pre>", esc(&readme)));
    }
    body.push_str(&format!(
        "<h2>Metadata</h2><pre>{}</pre>",
        esc(&serde_json::to_string_pretty(&md).unwrap_or_default())
    ));
    body.push_str(&format!(
        "<h2>Contents</h2><p>{} files, {} directories, {} symlinks, {} special, {} bytes</p><table>",
        dump["regular"], dump["directory"], dump["symlink"], dump["special"], dump["fullsize"]
    ));
    for e in dump["content"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .take(2000)
    {
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(e["type"].as_str().unwrap_or("")),
            e["size"],
            esc(e["path"].as_str().unwrap_or(""))
        ));
    }
    body.push_str("</table>");
    Ok(Html(page(&format!("{repo}/{name}"), &body)).into_response())
}

/// `GET|HEAD /<repo>/tags/<tag>/<name>.flist` (and `.flist.md5`).
pub async fn tag_file(
    State(st): State<Shared>,
    Path((repo, tag, file)): Path<(String, String, String)>,
    req: Request,
) -> WebResult<Response> {
    api_guard(&repo, &file)?;
    no_such_file(names::validate_repo(&repo))?;
    no_such_file(names::validate_tag(&tag))?;
    let (name, kind) =
        parse_file(&file).ok_or_else(|| ApiError::not_found(format!("no such file {file:?}")))?;
    no_such_file(names::validate_flist(&name))?;
    let n2 = name.clone();
    let r = st
        .blocking(move |hub| Ok(hub.resolve_in_tag(&repo, &tag, &n2)?))
        .await?;
    match kind {
        "flist" => Ok(serve_flist(&st, &r, &name, req).await),
        "md5" => Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", r.md5),
        )
            .into_response()),
        _ => Err(ApiError::not_found("only .flist and .flist.md5 are served through tags").into()),
    }
}

// ----- pages -------------------------------------------------------------------------------

/// `GET /`
pub async fn home(
    State(st): State<Shared>,
    MaybeCaller(who): MaybeCaller,
) -> WebResult<Html<String>> {
    let repos = st.blocking(|hub| Ok(hub.repositories()?)).await?;
    let official = &st.config.official;
    let mut body = String::new();
    if let Some(a) = who {
        body.push_str(&format!(
            "<p>Signed in as <b>{}</b> (acting as {}).</p>",
            esc(&a.user),
            esc(&a.active)
        ));
    }
    let row = |r: &hub_repo::RepoInfo| {
        format!(
            "<tr><td><a href=\"/{n}\">{n}</a></td><td>{}</td></tr>",
            fmt_time(r.updated),
            n = esc(&r.name)
        )
    };
    body.push_str("<h2>Official repositories</h2><table>");
    for r in repos.iter().filter(|r| official.contains(&r.name)) {
        body.push_str(&row(r));
    }
    body.push_str("</table><h2>Contributors</h2><table>");
    for r in repos.iter().filter(|r| !official.contains(&r.name)) {
        body.push_str(&row(r));
    }
    body.push_str("</table>");
    Ok(Html(page("Zero-OS flist hub", &body)))
}

/// `GET /<repo>`
pub async fn repo_page(
    State(st): State<Shared>,
    Path(repo): Path<String>,
) -> WebResult<Html<String>> {
    api_guard(&repo, "")?;
    no_such_file(names::validate_repo(&repo))?;
    let r2 = repo.clone();
    let items = st
        .blocking(move |hub| {
            hub.list(&r2)?
                .ok_or_else(|| ApiError::not_found(format!("no repository {r2}")))
        })
        .await?;
    let mut body = String::from(
        "<table><tr><th>Name</th><th>Type</th><th>Size</th><th>Updated</th><th>Target</th></tr>",
    );
    for l in &items {
        let (link, kind) = match l.kind {
            ListedKind::Tag => (format!("/{}/tags/{}", esc(&repo), esc(&l.name)), "tag"),
            ListedKind::Taglink => (
                format!("/{}", esc(l.target.as_deref().unwrap_or(""))),
                "taglink",
            ),
            ListedKind::Symlink => (format!("/{}/{}.md", esc(&repo), esc(&l.name)), "symlink"),
            ListedKind::Regular => (format!("/{}/{}.md", esc(&repo), esc(&l.name)), "regular"),
        };
        body.push_str(&format!(
            "<tr><td><a href=\"{link}\">{}</a></td><td>{kind}{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&l.name),
            if l.broken { " (broken)" } else { "" },
            render::size_kb(l.size),
            fmt_time(l.updated),
            esc(l.target.as_deref().unwrap_or(""))
        ));
    }
    body.push_str("</table>");
    Ok(Html(page(&repo, &body)))
}

/// `GET /<repo>/tags/<tag>`
pub async fn tag_page(
    State(st): State<Shared>,
    Path((repo, tag)): Path<(String, String)>,
) -> WebResult<Html<String>> {
    api_guard(&repo, &tag)?;
    no_such_file(names::validate_repo(&repo))?;
    no_such_file(names::validate_tag(&tag))?;
    let (r2, t2) = (repo.clone(), tag.clone());
    let links = st.blocking(move |hub| Ok(hub.tag_links(&r2, &t2)?)).await?;
    let mut body = String::from("<table><tr><th>Name</th><th>Target</th><th>Size</th></tr>");
    for l in &links {
        body.push_str(&format!(
            "<tr><td><a href=\"/{r}/tags/{t}/{n}\">{n}</a></td><td>{}</td><td>{}</td></tr>",
            esc(l.target.as_deref().unwrap_or("")),
            render::size_kb(l.size),
            r = esc(&repo),
            t = esc(&tag),
            n = esc(&l.name)
        ));
    }
    body.push_str("</table>");
    Ok(Html(page(&format!("{repo} tag {tag}"), &body)))
}

/// Query of `/search`.
#[derive(Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
}

/// `GET /search?q=`
pub async fn search(
    State(st): State<Shared>,
    Query(q): Query<SearchQuery>,
) -> WebResult<Html<String>> {
    let needle = q.q.unwrap_or_default();
    let mut body = format!(
        "<form action=\"/search\"><input name=\"q\" value=\"{}\"><button>Search</button></form>",
        esc(&needle)
    );
    if !needle.is_empty() {
        let n2 = needle.chars().take(128).collect::<String>();
        let hits = st.blocking(move |hub| Ok(hub.search(&n2, 500)?)).await?;
        body.push_str("<ul>");
        for (r, n) in hits {
            body.push_str(&format!(
                "<li><a href=\"/{r}/{n}.md\">{r}/{n}</a></li>",
                r = esc(&r),
                n = esc(&n)
            ));
        }
        body.push_str("</ul>");
    }
    Ok(Html(page("Search", &body)))
}

/// A 302 to `to` with a small HTML body (the old hub's redirects were HTML too).
pub fn redirect(to: &str) -> Response {
    let body = format!(
        "<!doctype html><p>Redirecting to <a href=\"{0}\">{0}</a>.</p>",
        esc(to)
    );
    let mut resp = (StatusCode::FOUND, Html(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// Pages that need a signed-in user send anonymous visitors to the login choice (302), as
/// the old hub did.
fn login_first() -> Response {
    redirect("/login-method")
}

fn form_page(title: &str, action: &str, fields: &str, who: &Option<hub_repo::Actor>) -> Response {
    let Some(a) = who else {
        return login_first();
    };
    let note = format!("<p>Uploading as <b>{}</b>.</p>", esc(&a.active));
    Html(page(
        title,
        &format!("{note}<form method=\"post\" action=\"{action}\" enctype=\"multipart/form-data\">{fields}<button>Send</button></form>"),
    ))
    .into_response()
}

/// `GET /readonly`: this hub has no read-only mode; like the old hub with it off, go home.
pub async fn readonly() -> Response {
    redirect("/")
}

/// `GET /upload`
pub async fn upload_page(MaybeCaller(who): MaybeCaller) -> Response {
    form_page(
        "Upload an archive",
        "/api/flist/me/upload",
        "<p><input type=\"file\" name=\"file\" accept=\".tar.gz,.tgz,.tar\"></p>",
        &who,
    )
}

/// `GET /upload-flist`
pub async fn upload_flist_page(MaybeCaller(who): MaybeCaller) -> Response {
    form_page(
        "Upload an flist",
        "/api/flist/me/upload-flist",
        "<p><input type=\"file\" name=\"file\" accept=\".flist\"></p>",
        &who,
    )
}

/// `GET /merge`
pub async fn merge_page(MaybeCaller(who): MaybeCaller) -> Response {
    let Some(a) = who else {
        return login_first();
    };
    let note = format!("<p>Merging into <b>{}</b>.</p>", esc(&a.active));
    Html(page(
        "Merge flists",
        &format!(
            "{note}<p>POST a JSON array of <code>\"repo/name.flist\"</code> to \
             <code>/api/flist/me/merge/&lt;target&gt;.flist</code>; the first flist wins on conflicts.</p>"
        ),
    ))
    .into_response()
}

/// `GET /docker-convert`: the form posts with `async=1`, then follows the job's events
/// (`/listen/<id>`) and links the result.
pub async fn docker_page(MaybeCaller(who): MaybeCaller) -> Response {
    let Some(a) = who else {
        return login_first();
    };
    let repo = esc(&a.active);
    let body = format!(
        "<p>Converting into <b>{repo}</b>.</p>\
         <form id=\"docker\"><p><input name=\"image\" placeholder=\"ubuntu:22.04\" required> \
         <input name=\"platform\" placeholder=\"linux/amd64\"></p>\
         <details><summary>Private registry</summary><p><input name=\"username\" placeholder=\"user\" autocomplete=\"off\"> \
         <input name=\"password\" type=\"password\" placeholder=\"password or token\" autocomplete=\"off\"></p></details>\
         <input type=\"hidden\" name=\"async\" value=\"1\"><button>Convert</button></form>\
         <p><progress id=\"bar\" max=\"100\" value=\"0\" hidden></progress> <span id=\"status\"></span></p>\
         <script>{DOCKER_JS}</script>"
    );
    Html(page("Convert a Docker image", &body)).into_response()
}

/// Posts the form, then shows the job's Server-Sent Events.
const DOCKER_JS: &str = r#"
document.getElementById('docker').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const status = document.getElementById('status'), bar = document.getElementById('bar');
  const show = (t) => { status.textContent = t; };
  const r = await fetch('/api/flist/me/docker', {method: 'POST', body: new URLSearchParams(new FormData(ev.target))});
  const v = await r.json();
  if (!r.ok) { show('error: ' + v.message); return; }
  bar.hidden = false;
  show('started ' + v.payload.name);
  const es = new EventSource('/listen/' + v.payload.job);
  es.onmessage = (m) => {
    const e = JSON.parse(m.data);
    if (e.status === 'update') { bar.value = e.progress; show(e.message); }
    else if (e.status === 'info') {
      bar.value = 100; es.close();
      status.innerHTML = '';
      const a = document.createElement('a');
      a.href = '/' + e.info.repository + '/' + e.info.name + '.md';
      a.textContent = e.info.repository + '/' + e.info.name;
      status.append('done: ', a);
    } else { es.close(); show('error: ' + e.message); }
  };
});
"#;

/// `GET /login-method`
pub async fn login_method() -> Html<String> {
    Html(page(
        "Sign in",
        "<ul><li><a href=\"/login-threebot\">ThreeFold Connect (3Bot)</a></li>\
         <li><a href=\"/login-threebot?token=1\">ThreeFold Connect, then show an API token</a></li></ul>",
    ))
}

/// `GET /logout`: revokes the session token, clears the cookies and says so (200, as the
/// old hub).
pub async fn logout(State(st): State<Shared>, headers: axum::http::HeaderMap) -> Response {
    if let Some(tok) = crate::auth::cookie(&headers, SESSION_COOKIE) {
        let hub = st.hub.clone();
        let _ = tokio::task::spawn_blocking(move || hub.revoke_token(&tok)).await;
    }
    let mut resp = Html(page(
        "Signed out",
        "<p>You are signed out. <a href=\"/\">Back to the hub</a></p>",
    ))
    .into_response();
    for c in [SESSION_COOKIE, ACTIVE_USER_COOKIE] {
        if let Ok(v) =
            HeaderValue::from_str(&format!("{c}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"))
        {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// `GET /token`: with a web session, issues a new API token and shows it once.
pub async fn token_page(
    State(st): State<Shared>,
    MaybeCaller(who): MaybeCaller,
) -> WebResult<Response> {
    let Some(actor) = who else {
        return Ok(login_first());
    };
    let ttl = st.config.token_ttl_secs;
    let (user, memberof) = (actor.user.clone(), actor.memberof.clone());
    let (token, info) = st
        .blocking(move |hub| Ok(hub.create_token(&user, &memberof, ttl, Some("web"))?))
        .await?;
    let body = format!(
        "<p>Your new API token for <b>{}</b> (expires {}):</p><pre id=\"token\">{}</pre>\
         <p>Use it as <code>Authorization: bearer &lt;token&gt;</code>. It is shown only once.</p>",
        esc(&info.user),
        fmt_time(info.expires),
        esc(&token)
    );
    let mut resp = Html(page("API token", &body)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `GET /static/...` files are served by the router; this is the 404 for unknown pages.
pub async fn not_found() -> WebError {
    WebError(ApiError::not_found("no such page"), false)
}
