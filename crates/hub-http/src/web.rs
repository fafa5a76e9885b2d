//! Downloads (`.flist`, `.flist.md5`, `.txt`, `.json`, `.md`) and the server-rendered pages.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use flist_format::Kind;
use hub_repo::{names, Resolved};
use serde_json::{json, Value};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::auth::{ACTIVE_USER_COOKIE, SESSION_COOKIE};
use crate::error::ApiError;
use crate::render::{self, html_escape as esc};
use crate::state::Shared;
use crate::visibility::Viewer;

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
        crate::ui::error_page(&self.0)
    }
}

type WebResult<T> = Result<T, WebError>;

/// Wraps trusted HTML `content` in the common page layout.
pub fn page(title: &str, content: &str) -> String {
    crate::ui::raw_page(title, content)
}

// ----- downloads -------------------------------------------------------------------------

/// Splits a requested file into (entry name, what to answer).
fn parse_file(file: &str) -> Option<(String, &'static str)> {
    if let Some(n) = file.strip_suffix(".md5") {
        if let Some(stem) = n.strip_suffix(".fl") {
            return Some((format!("{stem}.flist"), "fl.md5"));
        }
        return n.ends_with(".flist").then(|| (n.to_string(), "md5"));
    }
    if file.ends_with(".flist") {
        return Some((file.to_string(), "flist"));
    }
    // The rfs format of the same entry (see `crate::formats`).
    if let Some(stem) = file.strip_suffix(".fl") {
        return Some((format!("{stem}.flist"), "fl"));
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
    let path = st.hub.catalog().blob_path(&r.sha256);
    serve_file(st, &r.sha256, r.size, path, name, req).await
}

/// `GET /<repo>/<name>.fl`: the entry in the rfs format, converted once and kept.
async fn serve_fl(st: &Shared, r: &Resolved, name: &str, req: Request) -> WebResult<Response> {
    let f = crate::formats::fl_of(st, r).await?;
    Ok(serve_file(st, &f.sha256, f.size, f.path.clone(), name, req).await)
}

/// Serves the immutable file at `path` (content address `sha256`) as `name`.
async fn serve_file(
    st: &Shared,
    sha256: &str,
    size: u64,
    path: std::path::PathBuf,
    name: &str,
    req: Request,
) -> Response {
    let p2 = path.clone();
    match st
        .downloads
        .serve_file(sha256, size, move || p2, name, req.method(), req.headers())
        .await
    {
        Ok(Some(resp)) => return resp,
        Ok(None) => {}
        Err(e) => return ApiError::internal(e).into_response(),
    }
    // Too large to keep in memory: streamed from disk.
    let etag = format!("\"{sha256}\"");
    let matches = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
        .unwrap_or(false);
    if matches {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let mut req = req;
    if req.headers().contains_key(header::IF_NONE_MATCH) {
        // An ETag that does not match wins over the date (RFC 9110 13.2.2).
        req.headers_mut().remove(header::IF_MODIFIED_SINCE);
    }
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
    viewer: Viewer,
    Path((repo, file)): Path<(String, String)>,
    req: Request,
) -> WebResult<Response> {
    api_guard(&repo, &file)?;
    if let Some(flist) = file.strip_suffix(".flist.author.sig") {
        let file = format!("{flist}.flist");
        return Ok(crate::author_sig::author_signature(&st, &viewer, &repo, &file).await?);
    }
    if let Some(flist) = file.strip_suffix(".flist.sig") {
        let file = format!("{flist}.flist");
        return Ok(crate::signing::signature(&st, &viewer, &repo, &file).await?);
    }
    no_such_file(names::validate_repo(&repo))?;
    let (name, kind) =
        parse_file(&file).ok_or_else(|| ApiError::not_found(format!("no such page {file:?}")))?;
    no_such_file(names::validate_flist(&name))?;
    let r = resolve_download(&st, &repo, &name).await?;
    viewer.check_page(&r, &repo, &name)?;
    match kind {
        "flist" => Ok(serve_flist(&st, &r, &name, req).await),
        "fl" => serve_fl(&st, &r, &file, req).await,
        "md5" => Ok(md5_text(&r.md5)),
        "fl.md5" => Ok(md5_text(&crate::formats::fl_of(&st, &r).await?.md5)),
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
        _ => Ok(crate::ui::flist::page(&st, &repo, &name, (*r).clone(), req).await),
    }
}

/// The flist `repo/name` as downloads see it (links and tags followed, cached per catalog
/// generation); a name that resolves to nothing is a 404.
async fn resolve_download(
    st: &Shared,
    repo: &str,
    name: &str,
) -> WebResult<std::sync::Arc<Resolved>> {
    let key = hub_contract::routes::download_key(repo, name);
    let (r2, n2) = (repo.to_string(), name.to_string());
    st.downloads
        .resolve(&st.hub, key, move |hub| hub.catalog().resolve(&r2, &n2))
        .await
        .map_err(gone)
}

/// `GET|HEAD /<repo>/<name>.flist/files/<path>`: one file of the flist (see
/// [`crate::files`]). A symlink redirects (302) to its target in the same flist.
pub async fn flist_member(
    State(st): State<Shared>,
    viewer: Viewer,
    Path((repo, file, path)): Path<(String, String, String)>,
    req: Request,
) -> WebResult<Response> {
    api_guard(&repo, &file)?;
    no_such_file(names::validate_repo(&repo))?;
    if !file.ends_with(".flist") {
        return Err(ApiError::not_found(format!("no such flist {file:?}")).into());
    }
    no_such_file(names::validate_flist(&file))?;
    let path = crate::files::check_path(&path)?;
    let r = resolve_download(&st, &repo, &file).await?;
    // a private repository's files are as invisible as its flists
    viewer.check_page(&r, &repo, &file)?;
    let Some((_, kind)) = crate::files::entry_at(&st, &r, &path).await? else {
        return Err(ApiError::not_found(format!("no {path} in {repo}/{file}")).into());
    };
    match kind {
        Kind::File { size, blocks } => {
            let name = path.rsplit('/').next().unwrap_or("file");
            Ok(crate::files::serve(
                &st,
                blocks,
                size,
                name,
                req.method(),
                req.headers(),
            )?)
        }
        Kind::Symlink { target } => {
            let to = crate::files::link_destination(&path, &target);
            Ok(redirect(&crate::files::member_href(&repo, &file, &to)))
        }
        other => Err(ApiError::bad_request(format!(
            "{path} is {}: only files can be downloaded",
            crate::files::kind_word(&other)
        ))
        .into()),
    }
}

/// A `.md5` answer: the hex digest and a newline, as text.
fn md5_text(md5: &str) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{md5}\n"),
    )
        .into_response()
}

async fn flist_info(st: &Shared, repo: &str, name: &str, r: &Resolved) -> WebResult<Value> {
    let md = st.contents.metadata(&st.hub, r).await.unwrap_or_default();
    // `Storage` is where this hub tells clients to fetch chunks (its public backend), as the
    // old hub did; the flist's own `backend` only when the hub announces none.
    let backend = st.public_backend.clone().or_else(|| {
        md.get("backend")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let base = st.config.public_url();
    Ok(json!({
        "flist": name,
        "uploader": repo,
        "source": format!("{base}/{repo}/{name}"),
        "storage": render::storage_url(backend.as_deref()),
        "checksum": r.md5,
    }))
}

/// `GET|HEAD /<repo>/tags/<tag>/<name>.flist` (and `.flist.md5`).
pub async fn tag_file(
    State(st): State<Shared>,
    viewer: Viewer,
    Path((repo, tag, file)): Path<(String, String, String)>,
    req: Request,
) -> WebResult<Response> {
    api_guard(&repo, &file)?;
    no_such_file(names::validate_repo(&repo))?;
    no_such_file(names::validate_tag(&tag))?;
    let (name, kind) =
        parse_file(&file).ok_or_else(|| ApiError::not_found(format!("no such file {file:?}")))?;
    no_such_file(names::validate_flist(&name))?;
    let key = format!("{repo}/tags/{tag}/{name}");
    let (r2, t2, n2) = (repo.clone(), tag.clone(), name.clone());
    let r = st
        .downloads
        .resolve(&st.hub, key, move |hub| {
            hub.catalog().resolve_in_tag(&r2, &t2, &n2)
        })
        .await?;
    // As a missing tag (its own repository hidden) or a missing link of the tag.
    if !viewer.sees(&repo) {
        let e = hub_repo::RepoError::NotFound(format!("{repo}/tags/{tag}"));
        return Err(ApiError::from(e).into());
    }
    viewer.check_page(&r, &format!("{repo}/tags/{tag}"), &name)?;
    match kind {
        "flist" => Ok(serve_flist(&st, &r, &name, req).await),
        "fl" => serve_fl(&st, &r, &file, req).await,
        "md5" => Ok(md5_text(&r.md5)),
        "fl.md5" => Ok(md5_text(&crate::formats::fl_of(&st, &r).await?.md5)),
        _ => Err(
            ApiError::not_found("only .flist, .fl and their .md5 are served through tags").into(),
        ),
    }
}

// ----- session -----------------------------------------------------------------------------

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
pub fn login_first() -> Response {
    redirect("/login-method")
}

/// `GET /readonly`: this hub has no read-only mode; like the old hub with it off, go home.
pub async fn readonly() -> Response {
    redirect("/")
}

/// `GET|POST /logout`: revokes the session token, clears the cookies and says so (200, as
/// the old hub).
pub async fn logout(State(st): State<Shared>, headers: axum::http::HeaderMap) -> Response {
    if let Some(id) = crate::auth::cookie(&headers, SESSION_COOKIE) {
        let hub = st.hub.clone();
        let _ = tokio::task::spawn_blocking(move || hub.accounts().end_session(&id)).await;
    }
    let mut resp = Html(page(
        "Signed out",
        "<p>You are signed out. <a href=\"/\">Back to the hub</a></p>",
    ))
    .into_response();
    for c in [SESSION_COOKIE, ACTIVE_USER_COOKIE] {
        if let Ok(v) = HeaderValue::from_str(&format!(
            "{c}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
        )) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// `GET /static/...` files are served by the router; this is the 404 for unknown pages.
pub async fn not_found() -> WebError {
    WebError(ApiError::not_found("no such page"), false)
}
