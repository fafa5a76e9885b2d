//! Signed flists and VM checks on the hub.
//!
//! - The hub's Ed25519 key lives in `<data-dir>/signing.key` (base64 seed, mode 0600),
//!   generated at first start, or in the file named by `HUB_SIGNING_KEY_FILE`. The public
//!   key is served at `GET /api/signing-key`.
//! - Every stored flist is signed: `GET /<repo>/<name>.flist.sig` answers the signature of
//!   the served bytes (its SHA-256) under that `repo/name` (Ed25519 is deterministic, so the
//!   document is the same every time; a renamed or re-linked entry is signed under the name
//!   it is served as). `/light` says `"signed": true`.
//! - The VM check (`flist_convert::vmcheck`) runs on a stored flist the first time its
//!   `/light` is asked for; the report is kept by content address in
//!   `<data-dir>/vm-checks/<sha256>.json` and shown as `"vm": {...}`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use flist_format::signature::SigningKey;
use hub_contract::Light;
use hub_repo::names;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::state::Shared;

/// Keys by data directory (a process may serve several hubs in tests).
fn keys() -> &'static Mutex<HashMap<PathBuf, Arc<SigningKey>>> {
    static KEYS: OnceLock<Mutex<HashMap<PathBuf, Arc<SigningKey>>>> = OnceLock::new();
    KEYS.get_or_init(|| Mutex::new(HashMap::new()))
}

fn key_path(data_dir: &Path) -> PathBuf {
    match std::env::var_os("HUB_SIGNING_KEY_FILE").filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => data_dir.join("signing.key"),
    }
}

/// Loads the hub's signing key, generating it (atomically, mode 0600) when absent.
pub fn load_or_create_key(data_dir: &Path) -> Result<Arc<SigningKey>, String> {
    let mut map = keys().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(k) = map.get(data_dir) {
        return Ok(k.clone());
    }
    let path = key_path(data_dir);
    let key = match std::fs::read_to_string(&path) {
        Ok(text) => {
            SigningKey::from_base64(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| format!("random key: {e}"))?;
            let key = SigningKey::from_seed(&seed);
            write_key(&path, &key.to_base64()).map_err(|e| format!("{}: {e}", path.display()))?;
            tracing::info!("generated the hub signing key {}", path.display());
            key
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let key = Arc::new(key);
    map.insert(data_dir.to_path_buf(), key.clone());
    Ok(key)
}

fn write_key(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    // A concurrent first start keeps whichever key was linked first.
    match std::fs::hard_link(&tmp, path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    }
    std::fs::remove_file(&tmp)
}

fn key_of(st: &Shared) -> Result<Arc<SigningKey>, ApiError> {
    load_or_create_key(&st.config.data_dir)
        .map_err(|e| ApiError::internal(format!("signing key: {e}")))
}

/// `GET /api/signing-key`
pub async fn signing_key(State(st): State<Shared>) -> ApiResult<Json<Value>> {
    let key = key_of(&st)?;
    Ok(Json(
        json!({"algorithm": "ed25519", "key": key.public_base64()}),
    ))
}

/// `GET /<repo>/<name>.flist.sig`: the hub's signature of the flist served under that name.
pub async fn signature(
    st: &Shared,
    viewer: &crate::visibility::Viewer,
    repo: &str,
    file: &str,
) -> ApiResult<Response> {
    names::validate_repo(repo)?;
    names::validate_flist(file)?;
    let r = st.resolve_for(viewer, repo, file).await?;
    let key = key_of(st)?;
    let doc = key.sign_digest(&r.sha256, &format!("{repo}/{file}"));
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        doc.to_json() + "\n",
    )
        .into_response())
}

/// The VM report of a stored flist, computed once per content and kept on disk.
async fn vm_report(st: &Shared, sha256: &str) -> Value {
    let dir = st.config.data_dir.join("vm-checks");
    let path = dir.join(format!("{sha256}.json"));
    let blob = st.hub.catalog().blob_path(sha256);
    let store =
        flist_store::BlockingStore::new(st.store.clone(), tokio::runtime::Handle::current());
    // Parsing the flist is heavy: once per content, shared by concurrent requests, and
    // bounded with the other loads of flist contents.
    // The report's own failure is shown in it, as before (a parse error, an unreadable file).
    // Errors shown to clients name the flist, never a server path (logged instead).
    let fail = |e: String| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e);
    let local = move |what: &str, e: &dyn std::fmt::Display| {
        tracing::error!("vm check: {what}: {e}");
        fail(format!("{what} failed on the hub"))
    };
    let computed = st
        .contents
        .load(format!("vm:{sha256}"), move || {
            if let Ok(text) = std::fs::read(&path) {
                if serde_json::from_slice::<Value>(&text).is_ok() {
                    return Ok(bytes::Bytes::from(text));
                }
            }
            let file = std::fs::File::open(&blob).map_err(|e| local("reading the flist", &e))?;
            let flist = flist_format::Flist::from_reader(file, "the stored flist")
                .map_err(|e| fail(e.to_string()))?;
            let report = flist_convert::vmcheck::check_vm(&flist.tree, &store);
            drop(flist);
            let text = serde_json::to_vec(&report).map_err(|e| local("the report", &e))?;
            std::fs::create_dir_all(&dir).map_err(|e| local("saving the report", &e))?;
            let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
            std::fs::write(&tmp, &text)
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(|e| local("saving the report", &e))?;
            Ok(bytes::Bytes::from(text))
        })
        .await;
    match computed.map(|b| serde_json::from_slice::<Value>(&b)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => json!({"error": e.to_string()}),
        Err(e) => json!({"error": e.message}),
    }
}

/// Adds `signed`, `signature`, `vm` and `formats` to a `/light` answer for a regular entry or link.
pub async fn annotate_light(st: &Shared, repo: &str, mut v: Light) -> Light {
    // The entry's own name (`x.flist`), whichever form the request used (`x`, `x.flist`):
    // one resolution path for every spelling.
    let name = v.name.clone();
    let Ok(r) = st.resolve(repo, &name).await else {
        return v;
    };
    let vm = vm_report(st, &r.sha256).await;
    v.signed = Some(key_of(st).is_ok());
    v.signature = Some(format!("/{repo}/{name}.sig"));
    v.author_signature =
        crate::author_sig::light_field(&st.config.data_dir, &r.sha256, repo, &name);
    v.vm = Some(vm);
    v.formats = Some(crate::formats::links(repo, &name));
    v
}
