//! `GET|HEAD /chunks/<hex[0..2]>/<hex>`: the hub's `dir://` chunk store (or its private S3
//! bucket, on a cluster) served read-only, in
//! the `http(s)://` store layout of `shared/spec/zero-db.md`. Flists the hub makes with a
//! local store carry the backend `{"url": "<public url>/chunks"}`, so any reader of that
//! layout (`zflist`) reaches their chunks. Chunks are content-addressed: immutable, cached
//! for a year, `ETag` = the key.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::Shared;

/// Longest key accepted (hex digits).
const MAX_HEX: usize = 128;

fn valid(prefix: &str, hex: &str) -> bool {
    hex.len() >= 2
        && hex.len() <= MAX_HEX
        && hex.len().is_multiple_of(2)
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && prefix == &hex[..2]
}

/// `GET|HEAD /chunks/{prefix}/{hex}`.
pub async fn chunk(
    State(st): State<Shared>,
    Path((prefix, hex)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !st.config.serves_chunks() {
        return ApiError::not_found(
            "this hub's chunks live in a 0-db: read them from the flist's backend",
        )
        .into_response();
    }
    if !valid(&prefix, &hex) {
        return ApiError::not_found(
            "no such chunk: expected /chunks/<hex[0..2]>/<lowercase hex key>",
        )
        .into_response();
    }
    let etag = format!("\"{hex}\"");
    let Ok(key) = hex::decode(&hex) else {
        return ApiError::not_found("no such chunk").into_response();
    };
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
        .unwrap_or(false);
    match st.store.get(&key).await {
        Ok(Some(data)) => {
            let mut h = HeaderMap::new();
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            );
            if let Ok(v) = HeaderValue::from_str(&etag) {
                h.insert(header::ETAG, v);
            }
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            if matches {
                return (StatusCode::NOT_MODIFIED, h).into_response();
            }
            (StatusCode::OK, h, data).into_response()
        }
        Ok(None) => ApiError::not_found(format!("no chunk {hex}")).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
