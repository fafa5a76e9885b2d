//! What a mirror needs from its primary (see docs/mirrors.md):
//! - `GET /api/changes?since=<cursor>&limit=<n>`: the public change feed built on the audit
//!   log (no acting identities), oldest first, with a monotonic cursor;
//! - `GET /api/changes/repository/<repo>`: the exact catalog rows of one repository (entries of
//!   every kind with their timestamps, tags with their links, the flist files referenced);
//! - `GET /api/changes/file/<sha256>`: a stored flist file by content address.

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hub_repo::{is_hex_sha256, names};
use serde_json::{json, Value};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::error::{ApiError, ApiResult};
use crate::state::Shared;

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
pub async fn changes(State(st): State<Shared>, RawQuery(q): RawQuery) -> ApiResult<Json<Value>> {
    let since: u64 = query_num(&q, "since")?.unwrap_or(0);
    let limit: usize = query_num(&q, "limit")?
        .unwrap_or(MAX_CHANGES)
        .clamp(1, MAX_CHANGES);
    let since = i64::try_from(since).map_err(|_| ApiError::bad_request("since is too large"))?;
    let (changes, latest) = st
        .blocking(move |hub| Ok(hub.replica().changes(since, limit)?))
        .await?;
    let cursor = changes.last().map(|c| c.id).unwrap_or(since.min(latest));
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
    Path(repo): Path<String>,
) -> ApiResult<Json<Value>> {
    names::validate_repo(&repo)?;
    let r = repo.clone();
    let snap = st
        .blocking(move |hub| Ok(hub.replica().repo_snapshot(&r)?))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no repository {repo}")))?;
    Ok(Json(json!(snap)))
}

/// `GET /api/changes/file/<sha256>`
pub async fn file(
    State(st): State<Shared>,
    Path(sha256): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    if !is_hex_sha256(&sha256) {
        return Err(ApiError::bad_request(format!(
            "{sha256:?} is not a hex sha256"
        )));
    }
    if !st.hub.replica().has_blob(&sha256) {
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
