//! Author signatures kept by the hub.
//!
//! An author signs an flist with `zflist sign FLIST --key KEY --name repo/name.flist` and
//! sends the signature document with `upload-flist` (multipart field `signature`, next to
//! `file`; `zflist hub upload x.flist` sends `x.flist.sig` when it exists). The hub then
//! checks the document against the uploaded bytes and the name the entry will be served as,
//! stores the flist **byte for byte** (the signature covers the file's SHA-256, so the hub
//! cannot rewrite the `backend` metadata: the flist must already carry the hub's public
//! backend, or none when the hub has none), keeps the document in
//! `<data-dir>/author-signatures/<sha256>.json` (by name) and serves it at
//! `GET /<repo>/<name>.flist.author.sig`; `/light` shows `author_signature`. The hub's own
//! signature (`.flist.sig`) is unchanged. `zflist verify --signature --key AUTHOR` of the
//! hub URL falls back to the author signature when the hub's is by another key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use axum::http::header;
use axum::response::{IntoResponse, Response};
use flist_format::signature::{verify_digest, ExpectedName, PublicKey, SignatureDoc};
use hub_contract::AuthorSignature;
use hub_repo::names;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::state::Shared;

/// Largest signature document accepted (they are ~300 bytes).
pub(crate) const MAX_DOC: usize = 16 * 1024;

fn path_of(data_dir: &Path, sha256: &str) -> PathBuf {
    data_dir
        .join("author-signatures")
        .join(format!("{sha256}.json"))
}

fn bad(m: String) -> ApiError {
    ApiError::bad_request(format!("author signature: {m}"))
}

/// Checks an author signature sent with an upload: a well-formed document, signed by the
/// key it names, over exactly the uploaded bytes (`sha256`) and the name the entry will be
/// served as (`repo/name`).
pub(crate) fn check(doc: &[u8], repo: &str, name: &str, sha256: &str) -> ApiResult<SignatureDoc> {
    let doc = SignatureDoc::parse(doc).map_err(|e| bad(e.to_string()))?;
    let key = PublicKey::from_base64(&doc.key).map_err(|e| bad(e.to_string()))?;
    let full = format!("{repo}/{name}");
    verify_digest(&doc, sha256, ExpectedName::Full(&full), &key).map_err(|e| {
        bad(format!(
            "{e} (sign the file you upload, under the name it will have: \
             zflist sign FLIST --key KEY --name {full})"
        ))
    })?;
    Ok(doc)
}

/// A signed flist is kept byte for byte, so its `backend` must already be the one the hub
/// would write (`public_backend`).
pub(crate) fn check_backend(
    flist_backend: Option<&str>,
    public_backend: Option<&str>,
) -> ApiResult<()> {
    if !same_backend(flist_backend, public_backend) {
        return Err(bad(format!(
            "the flist's backend is {}, the hub serves its flists with {}: the hub keeps a \
             signed flist byte for byte, so pack it with {} and sign it again (or upload it \
             without a signature)",
            flist_backend.unwrap_or("(none)"),
            public_backend.unwrap_or("no backend"),
            match public_backend {
                Some(b) => format!("--public-backend '{b}'"),
                None => "--no-backend".to_string(),
            }
        )));
    }
    Ok(())
}

/// Whether two `backend` metadata values say the same (as JSON when both parse).
fn same_backend(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a == b
                || matches!(
                    (serde_json::from_str::<Value>(a), serde_json::from_str::<Value>(b)),
                    (Ok(x), Ok(y)) if x == y
                )
        }
        _ => false,
    }
}

fn load_all(data_dir: &Path, sha256: &str) -> BTreeMap<String, SignatureDoc> {
    std::fs::read(path_of(data_dir, sha256))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Keeps `doc` for the file `sha256` (atomically; other names' documents are kept).
pub(crate) fn save(data_dir: &Path, sha256: &str, doc: &SignatureDoc) -> std::io::Result<()> {
    let path = path_of(data_dir, sha256);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut all = load_all(data_dir, sha256);
    all.insert(doc.name.clone(), doc.clone());
    let text = serde_json::to_vec(&all).map_err(std::io::Error::other)?;
    let tmp = path.with_extension(format!(
        "tmp.{}.{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Whether an author signature was kept for the file `sha256` (under any name): such a
/// file is never rewritten.
pub(crate) fn has_any(data_dir: &Path, sha256: &str) -> bool {
    path_of(data_dir, sha256).exists()
}

/// The author signature of the file `sha256` served as `repo/name`, if one was kept.
pub(crate) fn load(data_dir: &Path, sha256: &str, repo: &str, name: &str) -> Option<SignatureDoc> {
    load_all(data_dir, sha256).remove(&format!("{repo}/{name}"))
}

/// `GET /<repo>/<name>.flist.author.sig`: the author's signature document kept with the
/// flist served under that name; 404 when there is none.
pub async fn author_signature(
    st: &Shared,
    viewer: &crate::visibility::Viewer,
    repo: &str,
    file: &str,
) -> ApiResult<Response> {
    names::validate_repo(repo)?;
    names::validate_flist(file)?;
    let r = st.resolve_for(viewer, repo, file).await?;
    let doc = load(&st.config.data_dir, &r.sha256, repo, file)
        .ok_or_else(|| ApiError::not_found(format!("{repo}/{file} has no author signature")))?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        doc.to_json() + "\n",
    )
        .into_response())
}

/// The `author_signature` field of `/light` for an entry's file, when one was kept.
pub(crate) fn light_field(
    data_dir: &Path,
    sha256: &str,
    repo: &str,
    name: &str,
) -> Option<AuthorSignature> {
    load(data_dir, sha256, repo, name).map(|doc| AuthorSignature {
        key: doc.key,
        signature: Some(format!("/{repo}/{name}.author.sig")),
    })
}
