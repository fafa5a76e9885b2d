//! Flist downloads served from memory.
//!
//! Flist files are content-addressed (sha256) and never change once stored, so their bytes
//! and the headers that depend only on them (`ETag`, `Content-Length`, `Last-Modified`) are
//! kept in a bounded least-recently-used cache keyed by the content address: a download is
//! a map lookup and a reference-counted slice, no `open`/`stat`/`read` per request. Names
//! resolve through an in-memory map tagged with the catalog generation (bumped by every
//! catalog write of this process), so a write is visible to the next request.
//!
//! What stays as before: `HEAD`, single byte ranges (`206`, `416` with `Content-Range:
//! bytes */size`), `If-Range`, `If-None-Match` (`304`, taking precedence over
//! `If-Modified-Since`). Files larger than a cache entry may be are streamed from disk.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use hub_repo::{Hub, Resolved};

/// Name resolutions kept at most (the map starts over beyond).
const NAMES_MAX: usize = 262_144;

/// One flist file in memory, with the headers computed once.
pub struct Blob {
    /// The whole file.
    pub bytes: Bytes,
    /// `"<sha256>"`.
    etag: HeaderValue,
    /// The file's length.
    length: HeaderValue,
    /// The file's modification time, HTTP date.
    last_modified: Option<HeaderValue>,
    /// Last use (LRU order).
    used: AtomicU64,
}

struct Lru {
    map: HashMap<String, Arc<Blob>>,
    bytes: usize,
}

/// The download caches of one server.
pub struct Downloads {
    names: RwLock<HashMap<String, (u64, Arc<Resolved>)>>,
    blobs: RwLock<Lru>,
    tick: AtomicU64,
    max_bytes: usize,
    max_entry: usize,
}

impl Downloads {
    /// Caches holding at most `max_bytes` of flist files (a file larger than a quarter of
    /// that is never cached; `0` disables the file cache).
    pub fn new(max_bytes: u64) -> Self {
        let max_bytes = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        Downloads {
            names: RwLock::new(HashMap::new()),
            blobs: RwLock::new(Lru {
                map: HashMap::new(),
                bytes: 0,
            }),
            tick: AtomicU64::new(0),
            max_bytes,
            max_entry: max_bytes / 4,
        }
    }

    /// `f(hub)` resolved once per catalog generation under `key`.
    pub async fn resolve<F>(
        &self,
        hub: &Arc<Hub>,
        key: String,
        f: F,
    ) -> crate::error::ApiResult<Arc<Resolved>>
    where
        F: FnOnce(&Hub) -> Result<Resolved, hub_repo::RepoError> + Send + 'static,
    {
        let generation = hub.generation();
        if let Some(r) = self.resolved_at(&key, generation) {
            return Ok(r);
        }
        let h = hub.clone();
        let r = match tokio::task::spawn_blocking(move || f(&h)).await? {
            Ok(r) => Arc::new(r),
            // The catalog is down: the last resolution known keeps downloads going.
            Err(e) if e.is_unavailable() => {
                let m = self.names.read().unwrap_or_else(|p| p.into_inner());
                return match m.get(&key) {
                    Some((_, r)) => Ok(r.clone()),
                    None => Err(e.into()),
                };
            }
            Err(e) => return Err(e.into()),
        };
        let mut m = self.names.write().unwrap_or_else(|p| p.into_inner());
        if m.len() >= NAMES_MAX {
            m.clear();
        }
        m.insert(key, (generation, r.clone()));
        Ok(r)
    }

    /// The resolution [`Downloads::resolve`] holds for `key` if made at `generation`.
    pub(crate) fn resolved_at(&self, key: &str, generation: u64) -> Option<Arc<Resolved>> {
        crate::state::at_generation(&self.names, key, generation)
    }

    /// The cached file with content address `sha256`, if present.
    pub(crate) fn cached(&self, sha256: &str) -> Option<Arc<Blob>> {
        let lru = self.blobs.read().unwrap_or_else(|p| p.into_inner());
        let b = lru.map.get(sha256)?.clone();
        b.used
            .store(self.tick.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
        Some(b)
    }

    /// The file at `path` (content address `sha256`, `size` bytes), from memory or read and
    /// kept; `None` when it is too large to keep.
    async fn load(
        &self,
        sha256: &str,
        size: u64,
        path: impl FnOnce() -> PathBuf,
    ) -> std::io::Result<Option<Arc<Blob>>> {
        if let Some(b) = self.cached(sha256) {
            return Ok(Some(b));
        }
        if usize::try_from(size).map_or(true, |s| s > self.max_entry) {
            return Ok(None);
        }
        let max_entry = self.max_entry;
        let path = path();
        let read = tokio::task::spawn_blocking(
            move || -> std::io::Result<Option<(Vec<u8>, Option<SystemTime>)>> {
                let meta = std::fs::metadata(&path)?;
                if usize::try_from(meta.len()).map_or(true, |s| s > max_entry) {
                    return Ok(None);
                }
                Ok(Some((std::fs::read(&path)?, meta.modified().ok())))
            },
        )
        .await
        .map_err(std::io::Error::other)??;
        let Some((data, mtime)) = read else {
            return Ok(None);
        };
        let etag =
            HeaderValue::from_str(&format!("\"{sha256}\"")).map_err(std::io::Error::other)?;
        let blob = Arc::new(Blob {
            length: HeaderValue::from(data.len()),
            bytes: Bytes::from(data),
            etag,
            last_modified: mtime
                .and_then(|t| HeaderValue::from_str(&httpdate::fmt_http_date(t)).ok()),
            used: AtomicU64::new(self.tick.fetch_add(1, Ordering::Relaxed)),
        });
        let mut lru = self.blobs.write().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = lru.map.get(sha256) {
            return Ok(Some(b.clone()));
        }
        while lru.bytes + blob.bytes.len() > self.max_bytes && !lru.map.is_empty() {
            let oldest = lru
                .map
                .iter()
                .min_by_key(|(_, b)| b.used.load(Ordering::Relaxed))
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                if let Some(b) = lru.map.remove(&k) {
                    lru.bytes -= b.bytes.len();
                }
            }
        }
        lru.bytes += blob.bytes.len();
        lru.map.insert(sha256.to_string(), blob.clone());
        Ok(Some(blob))
    }

    /// Bytes of flist files held in memory.
    pub fn held_bytes(&self) -> usize {
        self.blobs.read().unwrap_or_else(|p| p.into_inner()).bytes
    }

    /// Answers a download of the flist `r` under the name `name`: from memory when it fits
    /// the cache (read from `hub`'s file on a miss), `None` when it is too large to keep
    /// (the caller streams it from disk).
    pub async fn serve(
        &self,
        hub: &Hub,
        r: &Resolved,
        name: &str,
        method: &Method,
        headers: &HeaderMap,
    ) -> std::io::Result<Option<Response>> {
        self.serve_file(
            &r.sha256,
            r.size,
            || hub.catalog().blob_path(&r.sha256),
            name,
            method,
            headers,
        )
        .await
    }

    /// [`Downloads::serve`] for any immutable file: content address `sha256`, `size`
    /// bytes, at `path` (e.g. an `.fl` converted from a stored flist).
    pub async fn serve_file(
        &self,
        sha256: &str,
        size: u64,
        path: impl FnOnce() -> PathBuf,
        name: &str,
        method: &Method,
        headers: &HeaderMap,
    ) -> std::io::Result<Option<Response>> {
        let Some(blob) = self.load(sha256, size, path).await? else {
            return Ok(None);
        };
        Ok(Some(respond(&blob, name, method, headers)))
    }
}

/// The answer for `blob` to a request with `method` and `headers`.
fn respond(blob: &Blob, name: &str, method: &Method, headers: &HeaderMap) -> Response {
    respond_bytes(blob, name, method, headers).map(|b| {
        if b.is_empty() {
            Body::empty()
        } else {
            Body::from(b)
        }
    })
}

/// [`respond`] with the body as bytes (the fast path sends them without boxing).
pub(crate) fn respond_bytes(
    blob: &Blob,
    name: &str,
    method: &Method,
    headers: &HeaderMap,
) -> axum::http::Response<Bytes> {
    let mut resp = axum::http::Response::new(Bytes::new());
    if not_modified(blob, headers) {
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        resp.headers_mut().insert(header::ETAG, blob.etag.clone());
        if let Some(lm) = &blob.last_modified {
            resp.headers_mut().insert(header::LAST_MODIFIED, lm.clone());
        }
        return resp;
    }
    let size = blob.bytes.len() as u64;
    let range = headers
        .get(header::RANGE)
        .filter(|_| if_range_holds(blob, headers))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_range(v, size));
    let (status, body, length, content_range) = match range {
        None => (
            StatusCode::OK,
            blob.bytes.clone(),
            blob.length.clone(),
            None,
        ),
        Some(Err(())) => {
            *resp.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
            return resp;
        }
        Some(Ok((start, end))) => (
            StatusCode::PARTIAL_CONTENT,
            blob.bytes.slice(start as usize..=end as usize),
            HeaderValue::from(end - start + 1),
            HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")).ok(),
        ),
    };
    if method != Method::HEAD {
        *resp.body_mut() = body;
    }
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, length);
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::ETAG, blob.etag.clone());
    if let Some(lm) = &blob.last_modified {
        h.insert(header::LAST_MODIFIED, lm.clone());
    }
    if let Some(cr) = content_range {
        h.insert(header::CONTENT_RANGE, cr);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

/// `If-None-Match` names this file (or `*`); without it, `If-Modified-Since` is not older
/// than the file.
fn not_modified(blob: &Blob, headers: &HeaderMap) -> bool {
    if headers.contains_key(header::IF_NONE_MATCH) {
        return etag_matches(&blob.etag, headers);
    }
    match (headers.get(header::IF_MODIFIED_SINCE), &blob.last_modified) {
        (Some(ims), Some(lm)) => {
            let parse = |v: &HeaderValue| {
                v.to_str()
                    .ok()
                    .and_then(|s| httpdate::parse_http_date(s).ok())
            };
            match (parse(ims), parse(lm)) {
                (Some(since), Some(modified)) => modified <= since,
                _ => false,
            }
        }
        _ => false,
    }
}

/// `If-None-Match` names `etag` (weakly) or is `*`.
pub(crate) fn etag_matches(etag: &HeaderValue, headers: &HeaderMap) -> bool {
    let Some(inm) = headers.get(header::IF_NONE_MATCH) else {
        return false;
    };
    let etag = etag.as_bytes();
    inm.to_str().is_ok_and(|v| {
        v.split(',').any(|t| {
            let t = t.trim();
            let t = t.strip_prefix("W/").unwrap_or(t);
            t == "*" || t.as_bytes() == etag
        })
    })
}

/// A `Range` is honoured unless `If-Range` names another version.
fn if_range_holds(blob: &Blob, headers: &HeaderMap) -> bool {
    match headers.get(header::IF_RANGE) {
        None => true,
        Some(v) => v == blob.etag || blob.last_modified.as_ref().is_some_and(|lm| v == lm),
    }
}

/// Parses a `Range` header for a body of `size` bytes: `None` when it is to be ignored
/// (another unit, bad syntax, several ranges: the whole body is sent), `Some(Err)` when it
/// is unsatisfiable, else the inclusive byte range.
pub(crate) fn parse_range(v: &str, size: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = v.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if a.is_empty() {
        // Suffix: the last `b` bytes.
        if !digits(b) {
            return None;
        }
        let n: u64 = b.parse().unwrap_or(u64::MAX);
        if n == 0 || size == 0 {
            return Some(Err(()));
        }
        return Some(Ok((size.saturating_sub(n), size - 1)));
    }
    if !digits(a) || !(b.is_empty() || digits(b)) {
        return None;
    }
    let start: u64 = a.parse().ok()?;
    let end: u64 = if b.is_empty() {
        u64::MAX
    } else {
        b.parse().unwrap_or(u64::MAX)
    };
    if end < start {
        return None;
    }
    if start >= size {
        return Some(Err(()));
    }
    Some(Ok((start, end.min(size - 1))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=10-19", 100), Some(Ok((10, 19))));
        assert_eq!(parse_range("bytes=10-", 100), Some(Ok((10, 99))));
        assert_eq!(parse_range("bytes=90-200", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=-5", 100), Some(Ok((95, 99))));
        assert_eq!(parse_range("bytes=-500", 100), Some(Ok((0, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=-0", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=a-b", 100), None);
        assert_eq!(parse_range("bytes=-", 100), None);
    }
}
