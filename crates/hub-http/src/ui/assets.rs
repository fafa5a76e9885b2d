//! CSS and JS compiled into the binary, served as `/static/<name>.<hash>.<ext>` with a
//! one-year immutable cache (the name changes with the content) and an `ETag`.

use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use tower::ServiceExt;
use tower_http::services::ServeDir;

use crate::state::Shared;

/// One embedded file.
struct Asset {
    /// Plain name (`hub.css`).
    name: &'static str,
    /// Name with the content hash (`hub.1a2b3c4d5e.css`).
    hashed: String,
    /// Quoted ETag.
    etag: String,
    content_type: &'static str,
    body: &'static [u8],
}

const FILES: &[(&str, &str, &[u8])] = &[
    (
        "hub.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/hub.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../../assets/favicon.svg"),
    ),
    (
        "hub.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/hub.js"),
    ),
];

fn assets() -> &'static [Asset] {
    static ASSETS: OnceLock<Vec<Asset>> = OnceLock::new();
    ASSETS.get_or_init(|| {
        FILES
            .iter()
            .map(|(name, ct, body)| {
                let hash = hex::encode(&Sha256::digest(body)[..5]);
                let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
                Asset {
                    name,
                    hashed: format!("{stem}.{hash}.{ext}"),
                    etag: format!("\"{hash}\""),
                    content_type: ct,
                    body,
                }
            })
            .collect()
    })
}

/// The URL of embedded asset `name` (`/static/hub.<hash>.css`).
pub fn url(name: &str) -> String {
    assets()
        .iter()
        .find(|a| a.name == name)
        .map(|a| format!("/static/{}", a.hashed))
        .unwrap_or_else(|| format!("/static/{name}"))
}

/// `GET /favicon.ico`: browsers ask for it on every page; the hub's icon (SVG), for a day.
pub async fn favicon() -> Response {
    match HeaderValue::from_str(&url("favicon.svg")) {
        Ok(v) => (
            StatusCode::MOVED_PERMANENTLY,
            [
                (header::LOCATION, v),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=86400"),
                ),
            ],
        )
            .into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `GET /static/<file>`: an embedded asset, else a file of the configured static directory.
pub async fn serve(State(st): State<Shared>, Path(file): Path<String>, req: Request) -> Response {
    if let Some(a) = assets().iter().find(|a| a.hashed == file || a.name == file) {
        let fresh = req
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == a.etag));
        let cache = if a.hashed == file {
            "public, max-age=31536000, immutable"
        } else {
            "public, max-age=300"
        };
        let mut resp = if fresh {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(a.content_type),
                )],
                a.body,
            )
                .into_response()
        };
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        if let Ok(v) = HeaderValue::from_str(&a.etag) {
            h.insert(header::ETAG, v);
        }
        return resp;
    }
    // The operator's own files; `ServeDir` refuses `..` and serves from the directory only.
    let (mut parts, body) = req.into_parts();
    parts.uri = match format!("/{file}").parse() {
        Ok(u) => u,
        Err(_) => return StatusCode::NOT_FOUND.into_response(),
    };
    match ServeDir::new(st.config.static_dir())
        .oneshot(Request::from_parts(parts, body))
        .await
    {
        Ok(r) => r.map(Body::new),
        Err(e) => crate::error::ApiError::internal(e).into_response(),
    }
}
