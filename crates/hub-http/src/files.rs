//! One file inside a stored flist: `GET|HEAD /<repo>/<name>.flist/files/<path>` (the
//! file's bytes, streamed from the hub's chunk store) and what the flist page's preview
//! needs (the entry at a path, the first bytes of a file).
//!
//! - The entry is found with [`flist_format::reader::lookup`]: only the directory rows on
//!   the path are read from the flist's database, however large the flist.
//! - Paths are taken as they are: a `.` or `..` component is refused (400), never resolved;
//!   a symlink answers a redirect (302) to its target inside the same flist.
//! - Contents go through the one chunk-reading path, [`flist_chunks::Pipeline`] (fetch,
//!   both hashes checked, decode), a few chunks in flight at a time; the body is streamed
//!   through a small channel, so a download holds a few MiB however large the file.
//! - `Content-Length`, a single `Range` (206/416), `ETag` (from the file's chunk list),
//!   `If-None-Match`, `If-Range`, `Content-Disposition: attachment`; files over
//!   `limits.max_file_download_bytes` answer 413. The route counts as a heavy request
//!   ([`crate::ui::limits::is_heavy`]).

use std::path::PathBuf;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use flist_format::codec::CHUNK_SIZE;
use flist_format::{Block, Kind, Meta};
use hub_repo::Resolved;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ApiResult};
use crate::state::Shared;

/// Bytes of a text file shown by the preview.
pub const PREVIEW_BYTES: usize = 64 << 10;

/// Longest path accepted inside an flist.
const MAX_PATH: usize = 4096;

/// Chunks per store request of a download, and requests in flight: at most 8 chunks
/// (4 MiB of plaintext) held per download besides the channel.
const BATCH_CHUNKS: usize = 4;
const BATCHES_IN_FLIGHT: usize = 2;

/// The path inside an flist as asked (`etc/os-release`, already percent-decoded), made
/// absolute; `.`/`..` components, NUL bytes and overlong paths refused (400).
pub fn check_path(path: &str) -> ApiResult<String> {
    if path.len() > MAX_PATH {
        return Err(ApiError::bad_request(format!(
            "path too long (at most {MAX_PATH} bytes)"
        )));
    }
    if path.contains('\0') {
        return Err(ApiError::bad_request("a path cannot hold a NUL byte"));
    }
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.iter().any(|p| *p == "." || *p == "..") {
        return Err(ApiError::bad_request(
            "a path inside an flist cannot hold `.` or `..` components",
        ));
    }
    Ok(format!("/{}", parts.join("/")))
}

/// The entry at `path` (absolute, checked by [`check_path`]) in the flist file of `r`.
pub async fn entry_at(st: &Shared, r: &Resolved, path: &str) -> ApiResult<Option<(Meta, Kind)>> {
    let blob = st.hub.catalog().blob_path(&r.sha256);
    let max_db = st.config.limits.max_flist_database_bytes;
    let (path, sha) = (path.to_string(), r.sha256.clone());
    tokio::task::spawn_blocking(move || lookup_in(&blob, &path, &sha, max_db)).await?
}

fn lookup_in(
    blob: &PathBuf,
    path: &str,
    sha: &str,
    max_db: u64,
) -> ApiResult<Option<(Meta, Kind)>> {
    let what = format!("flist {sha}");
    let f = std::fs::File::open(blob)
        .map_err(|e| ApiError::internal(format!("opening stored flist {sha}: {e}")))?;
    let opts = flist_format::ReadOptions {
        max_database_bytes: max_db,
        ..Default::default()
    };
    let db = flist_format::reader::extract_database_with(f, &what, &opts)
        .map_err(|e| ApiError::internal(format!("reading stored flist {sha}: {e}")))?;
    let conn = flist_format::reader::open_database(db.path())
        .map_err(|e| ApiError::internal(format!("reading stored flist {sha}: {e}")))?;
    flist_format::reader::lookup(&conn, path, &what)
        .map_err(|e| ApiError::internal(format!("reading stored flist {sha}: {e}")))
}

/// What a non-regular entry is, for messages.
pub fn kind_word(kind: &Kind) -> &'static str {
    match kind {
        Kind::Dir { .. } => "a directory",
        Kind::File { .. } => "a file",
        Kind::Symlink { .. } => "a symlink",
        Kind::Special { .. } => "a special file (device, fifo or socket)",
    }
}

/// Where symlink `link` (absolute) pointing to `target` leads inside the flist: relative
/// targets from the link's directory, absolute ones from the flist's root, `..` never
/// above the root.
pub fn link_destination(link: &str, target: &str) -> String {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        let dir = link.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        dir.split('/').filter(|p| !p.is_empty()).collect()
    };
    for p in target.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// `ETag` of a file: its chunk list names its content.
fn etag_of(blocks: &[Block], size: u64) -> HeaderValue {
    let mut h = Sha256::new();
    h.update(size.to_le_bytes());
    for b in blocks {
        h.update(b.id());
    }
    let hex = hex::encode(&h.finalize()[..16]);
    HeaderValue::from_str(&format!("\"f-{hex}\"")).unwrap_or(HeaderValue::from_static("\"f\""))
}

/// `attachment` with the file's name: plain ASCII in `filename`, the exact name in
/// `filename*` (RFC 6266 / 8187).
fn disposition(name: &str) -> HeaderValue {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let exact = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
    HeaderValue::from_str(&format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{exact}"
    ))
    .unwrap_or(HeaderValue::from_static("attachment"))
}

/// The type of a file's first bytes, for the images a browser shows; else `None`.
pub fn image_type(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if head.starts_with(b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// A file whose chunk list does not match its size (a damaged or hand-made flist) cannot be
/// served: 409 saying so, not a 500 (the hub is not at fault, and the page shows the reason).
fn check_layout(blocks: &[Block], size: u64) -> ApiResult<()> {
    if flist_format::codec::chunk_count(size) == blocks.len() as u64 {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        format!(
            "this file cannot be read: the flist records {size} bytes in {} chunk(s), \
             which does not match (a damaged or hand-made flist)",
            blocks.len()
        ),
    ))
}

/// Serves the regular file (`blocks`, `size`) named `name` for `method`/`headers`: the whole
/// file or one range, streamed from the hub's store.
pub fn serve(
    st: &Shared,
    blocks: Vec<Block>,
    size: u64,
    name: &str,
    method: &Method,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let max = st.config.limits.max_file_download_bytes;
    if size > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "this file is {size} bytes, more than this hub serves as a single download \
                 ({max} bytes): read it with `zflist cat <flist URL> <path>` or extract the flist"
            ),
        ));
    }
    check_layout(&blocks, size)?;
    let etag = etag_of(&blocks, size);
    let mut resp = Response::new(Body::empty());
    let h = resp.headers_mut();
    h.insert(header::ETAG, etag.clone());
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if crate::downloads::etag_matches(&etag, headers) {
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        return Ok(resp);
    }
    let range = headers
        .get(header::RANGE)
        .filter(|_| headers.get(header::IF_RANGE).is_none_or(|v| *v == etag))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| crate::downloads::parse_range(v, size));
    let (start, end) = match range {
        None => (0, size.saturating_sub(1)),
        Some(Err(())) => {
            *resp.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(resp);
        }
        Some(Ok((a, b))) => {
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{size}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            (a, b)
        }
    };
    let length = if size == 0 { 0 } else { end - start + 1 };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_DISPOSITION, disposition(name));
    // A file from an flist is never run as a page of the hub, even if opened directly.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if method == Method::HEAD || length == 0 {
        return Ok(resp);
    }
    *resp.body_mut() = stream(st, blocks, size, start, end);
    Ok(resp)
}

/// The bytes `start..=end` of the file as a body: a blocking reader runs the chunk
/// pipeline and sends each piece through a small channel (a client that goes away stops
/// it). A chunk that is missing, corrupt or not of the size the file's length implies
/// ends the body early (the client sees fewer bytes than `Content-Length`) and is logged.
fn stream(st: &Shared, blocks: Vec<Block>, size: u64, start: u64, end: u64) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    let store =
        flist_store::BlockingStore::new(st.store.clone(), tokio::runtime::Handle::current());
    tokio::task::spawn_blocking(move || {
        let cs = CHUNK_SIZE as u64;
        let first = (start / cs) as usize;
        let last = (end / cs) as usize;
        let Some(wanted) = blocks.get(first..=last) else {
            return;
        };
        let pipeline = flist_chunks::Pipeline {
            batch_chunks: BATCH_CHUNKS,
            batches_in_flight: BATCHES_IN_FLIGHT,
            workers: 1,
        };
        let r = pipeline.read_ordered(&store, wanted, |i, plain| -> Result<(), Stop> {
            let idx = (first + i) as u64;
            let chunk_start = idx * cs;
            let expect = (size - chunk_start).min(cs);
            if plain.len() as u64 != expect {
                return Err(Stop::Failed(format!(
                    "chunk {idx} holds {} bytes, the file's size implies {expect}",
                    plain.len()
                )));
            }
            let from = (start.max(chunk_start) - chunk_start) as usize;
            let to = ((end + 1).min(chunk_start + expect) - chunk_start) as usize;
            let piece = Bytes::from(plain).slice(from..to);
            tx.blocking_send(Ok(piece)).map_err(|_| Stop::Gone)
        });
        match r {
            Ok(()) | Err(Stop::Gone) => {}
            Err(Stop::Failed(why)) => {
                tracing::warn!("file download stopped: {why}");
                let _ = tx.blocking_send(Err(std::io::Error::other(why)));
            }
        }
    });
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Why a download's reader stopped early.
enum Stop {
    /// The client went away.
    Gone,
    /// A chunk could not be read (store, hashes, size).
    Failed(String),
}

impl From<flist_chunks::ChunkError> for Stop {
    fn from(e: flist_chunks::ChunkError) -> Self {
        Stop::Failed(e.to_string())
    }
}

/// The first `max` bytes of a regular file (for the preview), through the same chunk path.
pub async fn head(st: &Shared, blocks: &[Block], size: u64, max: usize) -> ApiResult<Vec<u8>> {
    check_layout(blocks, size)?;
    let want = (size.min(max as u64)) as usize;
    let n = want.div_ceil(CHUNK_SIZE).min(blocks.len());
    let blocks = blocks[..n].to_vec();
    let store =
        flist_store::BlockingStore::new(st.store.clone(), tokio::runtime::Handle::current());
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::with_capacity(want);
        flist_chunks::Pipeline::default()
            .read_ordered(
                &store,
                &blocks,
                |_, plain| -> Result<(), flist_chunks::ChunkError> {
                    out.extend_from_slice(&plain);
                    Ok(())
                },
            )
            .map_err(|e| {
                ApiError::new(StatusCode::BAD_GATEWAY, format!("reading the file: {e}"))
            })?;
        out.truncate(want);
        Ok(out)
    })
    .await?
}

/// What a binary file is, told by its first bytes (the common formats of a root file
/// system), for the preview.
pub fn describe(head: &[u8]) -> &'static str {
    const MAGIC: &[(&[u8], &str)] = &[
        (b"\x7fELF", "an ELF executable or library"),
        (b"\x1f\x8b", "gzip-compressed data"),
        (b"\x28\xb5\x2f\xfd", "zstd-compressed data"),
        (b"\xfd7zXZ\0", "xz-compressed data"),
        (b"BZh", "bzip2-compressed data"),
        (b"PK\x03\x04", "a zip archive"),
        (b"SQLite format 3\0", "an SQLite database"),
        (b"%PDF-", "a PDF document"),
        (b"\0asm", "a WebAssembly module"),
        (b"070701", "a cpio archive"),
        (b"070707", "a cpio archive"),
    ];
    if let Some((_, what)) = MAGIC.iter().find(|(m, _)| head.starts_with(m)) {
        return what;
    }
    if head.len() > 262 && &head[257..262] == b"ustar" {
        return "a tar archive";
    }
    "binary data"
}

/// The preview of a file's first bytes: `text` (valid UTF-8 without control bytes other than
/// whitespace, a cut multi-byte character at the end allowed) or `binary`.
pub fn is_text(head: &[u8]) -> bool {
    let s = match std::str::from_utf8(head) {
        Ok(s) => s,
        Err(e) if e.error_len().is_none() => {
            // a multi-byte character cut by the preview's length
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or("")
        }
        Err(_) => return false,
    };
    !s.chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\u{c}'))
}

/// The download URL (path) of `path` (absolute) in `repo/name`, each component
/// percent-encoded.
pub fn member_href(repo: &str, name: &str, path: &str) -> String {
    let mut out = format!("/{}/{}/files", crate::ui::seg(repo), crate::ui::seg(name));
    for p in path.split('/').filter(|p| !p.is_empty()) {
        out.push('/');
        out.push_str(&crate::ui::seg(p));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A size the chunk list does not cover reads as the flist's fault (409, said in
    /// words), not as the hub's (500 "internal error").
    #[test]
    fn a_chunk_list_that_does_not_match_the_size_is_a_409_that_says_why() {
        assert!(check_layout(&[], 0).is_ok());
        let e = check_layout(&[], 117_700_000).expect_err("no chunks for 117 MB");
        assert_eq!(e.status, StatusCode::CONFLICT);
        assert!(
            e.message.contains("117700000 bytes in 0 chunk(s)"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("internal error"), "{}", e.message);
    }

    #[test]
    fn paths_are_checked_not_resolved() {
        assert_eq!(check_path("etc/os-release").unwrap(), "/etc/os-release");
        assert_eq!(check_path("/usr//bin/").unwrap(), "/usr/bin");
        assert!(check_path("../etc/passwd").is_err());
        assert!(check_path("a/./b").is_err());
        assert!(check_path("a/..").is_err());
        assert!(check_path("a\0b").is_err());
        assert!(check_path(&"a/".repeat(3000)).is_err());
    }

    #[test]
    fn symlinks_lead_inside_the_flist() {
        assert_eq!(
            link_destination("/etc/os-release", "../usr/lib/os-release"),
            "/usr/lib/os-release"
        );
        assert_eq!(link_destination("/bin/sh", "dash"), "/bin/dash");
        assert_eq!(link_destination("/a/b", "/c/d"), "/c/d");
        assert_eq!(link_destination("/a", "../../../etc"), "/etc");
    }

    #[test]
    fn text_images_and_binaries() {
        assert!(is_text(b"hello\nworld\t!\n"));
        assert!(is_text("h\u{e9}".as_bytes()));
        assert!(is_text(&"\u{e9}".as_bytes()[..1]));
        assert!(!is_text(b"\x7fELF\x02\x01\x01\0"));
        assert!(!is_text(b"a\x1b[31mred"));
        assert_eq!(image_type(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(image_type(b"GIF89a"), Some("image/gif"));
        assert_eq!(image_type(b"hello"), None);
    }

    #[test]
    fn dispositions_keep_ascii_and_exact_names() {
        let v = disposition("my \"file\".txt");
        assert_eq!(
            v.to_str().unwrap(),
            "attachment; filename=\"my _file_.txt\"; filename*=UTF-8''my%20%22file%22%2Etxt"
        );
        let v = disposition("caf\u{e9}");
        assert!(v.to_str().unwrap().contains("filename=\"caf_\""));
    }
}
