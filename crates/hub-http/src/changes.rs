//! What a mirror needs from its primary (see docs/mirrors.md):
//! - `GET /api/changes?since=<cursor>&limit=<n>`: the public change feed built on the audit
//!   log (no acting identities), oldest first, with a monotonic cursor;
//! - `GET /api/changes/repository/<repo>`: the exact catalog rows of one repository (entries of
//!   every kind with their timestamps, tags with their links, the flist files referenced);
//! - `GET /api/changes/file/<sha256>`: a stored flist file by content address.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hub_repo::{is_hex_sha256, names, Change};
use serde_json::{json, Value};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::error::{ApiError, ApiResult};
use crate::state::Shared;
use crate::visibility::Viewer;

/// Most changes returned by one call.
pub const MAX_CHANGES: usize = 1000;

fn query_num<T: std::str::FromStr>(raw: &Option<String>, key: &str) -> ApiResult<Option<T>> {
    let Some(q) = raw else { return Ok(None) };
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == key {
            return v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!("{key}={v:?} is not a non-negative integer"))
            });
        }
    }
    Ok(None)
}

/// `GET /api/changes?since=<cursor>&limit=<n>`
pub async fn changes(
    State(st): State<Shared>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    let since: u64 = query_num(&q, "since")?.unwrap_or(0);
    let limit: usize = query_num(&q, "limit")?
        .unwrap_or(MAX_CHANGES)
        .clamp(1, MAX_CHANGES);
    let since = i64::try_from(since).map_err(|_| ApiError::bad_request("since is too large"))?;
    // The private set is read after the page, in the same call: a visibility change of
    // another process (`hub-server repo visibility`) is judged by the state it made, not
    // by the set cached until the next watch tick (the cursor passes what is filtered out,
    // so a stale set would hide a repository turned public from a mirror for good).
    let (changes, latest, private) = st
        .blocking(move |hub| {
            let (changes, latest) = hub.replica().changes(since, limit)?;
            let private = hub.catalog().private_repositories()?;
            Ok((changes, latest, private))
        })
        .await?;
    let viewer = crate::visibility::identified(&st, &headers, Arc::new(private)).await;
    // The cursor advances over what this reader may not see too.
    let cursor = changes.last().map(|c| c.id).unwrap_or(since.min(latest));
    let changes: Vec<Change> = changes
        .into_iter()
        .filter_map(|c| visible_change(&viewer, c))
        .collect();
    Ok(Json(json!({
        "cursor": cursor,
        "latest": latest,
        "more": cursor < latest,
        "changes": changes,
    })))
}

/// `GET /api/changes/repository/<repo>`
pub async fn repository(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(repo): Path<String>,
) -> ApiResult<Json<Value>> {
    names::validate_repo(&repo)?;
    let viewer = crate::visibility::identified(&st, &headers, st.private_repos().await?).await;
    let r = repo.clone();
    let mut snap = st
        .blocking(move |hub| Ok(hub.replica().repo_snapshot(&r)?))
        .await?
        // The snapshot's own flag, not the cached private set: that may lag a write of
        // another process (`hub-server repo visibility`) by a watch interval (the guard
        // leaves these paths to this check).
        .filter(|s| !s.private || viewer.reads(&s.name))
        .ok_or_else(|| ApiError::not_found(format!("no repository {repo}")))?;
    // Links and tag links into repositories this reader may not see are not its to copy.
    let sees_target = |r: &Option<String>| r.as_deref().is_none_or(|r| viewer.sees(r));
    snap.entries.retain(|e| sees_target(&e.target_repo));
    for t in &mut snap.tags {
        t.links.retain(|l| viewer.sees(&l.target_repo));
    }
    Ok(Json(json!(snap)))
}

/// A change as `viewer` may see it: none for a repository it may not read (except a
/// repository that was public turning private, so that mirrors drop it: its name was
/// public), the parameters left out when they name such a repository.
fn visible_change(viewer: &Viewer, mut c: Change) -> Option<Change> {
    if !viewer.sees(&c.repo) {
        let was_public = c.action == "visibility" && c.detail["public_before"] == json!(true);
        if !was_public {
            return None;
        }
        c.detail = json!({"private": true});
        return Some(c);
    }
    if names_unseen(viewer, &c.detail) {
        c.detail = json!({});
    }
    Some(c)
}

/// Does `v` name (`repo` or `repo/...`) a repository `viewer` may not see?
fn names_unseen(viewer: &Viewer, v: &Value) -> bool {
    match v {
        Value::String(s) => {
            let repo = s.split('/').next().unwrap_or(s);
            !viewer.sees(repo)
        }
        Value::Array(a) => a.iter().any(|x| names_unseen(viewer, x)),
        Value::Object(m) => m.values().any(|x| names_unseen(viewer, x)),
        _ => false,
    }
}

/// `GET /api/changes/file/<sha256>`
pub async fn file(
    State(st): State<Shared>,
    viewer: Viewer,
    Path(sha256): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    if !is_hex_sha256(&sha256) {
        return Err(ApiError::bad_request(format!(
            "{sha256:?} is not a hex sha256"
        )));
    }
    // A file only private repositories hold is theirs.
    let visible = viewer.private().is_empty() || {
        let sha = sha256.clone();
        let holders = st
            .blocking(move |hub| Ok(hub.catalog().repositories_holding(&sha)?))
            .await?;
        holders.is_empty() || holders.iter().any(|r| viewer.sees(r))
    };
    if !visible || !st.hub.replica().has_blob(&sha256) {
        return Err(ApiError::not_found(format!("no flist file {sha256}")));
    }
    let resp = ServeFile::new(st.hub.catalog().blob_path(&sha256))
        .oneshot(req)
        .await
        .map_err(ApiError::internal)?;
    let mut resp = resp.map(Body::new);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(resp.into_response())
}
