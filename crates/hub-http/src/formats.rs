//! Both flist formats on the hub: every entry is served as an rfs `.fl` as well as an
//! `.flist`, and an `.fl` can be uploaded where an `.flist` can.
//!
//! The catalog holds one format, `.flist`: an uploaded `.fl` is converted on the way in
//! (`fl_to_flist`: its blocks checked in the hub's store, re-encoded as `.flist` chunks
//! into the same store), so names, links, tags, merge, promote and mirrors see one entry.
//! `GET /<repo>/<name>.fl` converts the stored `.flist` once ([`fl_of`]: chunks re-encoded
//! as rfs blocks into the hub's store by [`flist_convert::reencode()`], the routes naming the
//! hub's public chunk endpoint) and keeps the result under `<data-dir>/fl/`, named by the
//! source file's content address and the routes: later fetches are a file read. A
//! conversion runs once however many requests ask for it, and finishes even when the
//! client that started it leaves.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use axum::http::StatusCode;
use flist_format::{Codec, Flist, Format, Route};
use flist_store::BlockingStore;
use hub_repo::Resolved;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::error::{ApiError, ApiResult};
use crate::state::Shared;

/// Missing block ids named in a refusal at most (the count is always given).
const MISSING_SHOWN: usize = 100;
/// Keys per `exists_many` batch.
const EXISTS_BATCH: usize = 1000;

/// The entry name an `.fl` request or upload names: `app.fl` → `app.flist`; other names
/// unchanged.
pub fn flist_name_of(name: &str) -> String {
    match name.len().checked_sub(3) {
        Some(i) if name.is_char_boundary(i) && name[i..].eq_ignore_ascii_case(".fl") => {
            format!("{}.flist", &name[..i])
        }
        _ => name.to_string(),
    }
}

/// The formats the entry `name` (`x.flist`, or a link to one) of `repo` downloads in, as
/// `/light` lists them: its `.flist` and its `.fl`.
pub fn links(repo: &str, name: &str) -> Vec<hub_contract::FormatLink> {
    let stem = name.strip_suffix(".flist").unwrap_or(name);
    ["flist", "fl"]
        .into_iter()
        .map(|format| {
            let href = format!("/{repo}/{stem}.{format}");
            hub_contract::FormatLink {
                format: format.to_string(),
                md5_href: format!("{href}.md5"),
                href,
            }
        })
        .collect()
}

/// The route table of the `.fl` files this hub serves: its announced public backend (the
/// 0-db endpoint when `zdb_listen` is on, else `<public url>/chunks` for a `dir://` store,
/// else the store's own public 0-db) as one route over every key; empty when the hub
/// announces none.
pub fn routes(public_backend: Option<&str>) -> Vec<Route> {
    public_backend
        .and_then(|b| flist_format::Backend::parse(b).ok())
        .map(|b| flist_convert::backend::public_routes(&flist_convert::backend::store_url(&b)))
        .unwrap_or_default()
}

/// A converted `.fl` held under `<data-dir>/fl/`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FlFile {
    /// Its content address (the `ETag`).
    pub sha256: String,
    /// Its hex md5 (`.fl.md5`).
    pub md5: String,
    /// Its size in bytes.
    pub size: u64,
    /// Where it is.
    #[serde(skip)]
    pub path: PathBuf,
}

/// The cache paths of the `.fl` of the `.flist` `sha256` with `routes`: the file and its
/// description (written last: its presence says the file is complete).
fn cache_paths(data_dir: &Path, sha256: &str, routes: &[Route]) -> (PathBuf, PathBuf) {
    let mut h = sha2::Sha256::new();
    for r in routes {
        h.update(format!("{}-{}={}\n", r.start, r.end, r.url));
    }
    let tag = hex::encode(&h.finalize()[..8]);
    let dir = data_dir.join("fl");
    (
        dir.join(format!("{sha256}-{tag}.fl")),
        dir.join(format!("{sha256}-{tag}.json")),
    )
}

/// The cached `.fl` at `paths`, if complete.
fn cached(paths: &(PathBuf, PathBuf)) -> Option<FlFile> {
    let desc = std::fs::read(&paths.1).ok()?;
    let mut f: FlFile = serde_json::from_slice(&desc).ok()?;
    let len = std::fs::metadata(&paths.0).ok()?.len();
    (len == f.size).then(|| {
        f.path = paths.0.clone();
        f
    })
}

/// One lock per cache file, so a conversion runs once.
fn lock_of(key: &Path) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let mut m = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    // Locks nobody holds or waits on are dropped as the map grows.
    if m.len() > 1024 {
        m.retain(|_, l| Arc::strong_count(l) > 1);
    }
    m.entry(key.to_path_buf()).or_default().clone()
}

/// How long a conversion refused for chunks missing from the hub's store is answered from
/// memory (409 again) before it is tried again: each try reads the flist's chunks up to
/// the first missing one, so repeated requests must not repeat that work.
const REFUSAL_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Recent refusals (409) by cache file, with when they were made.
fn refusals() -> &'static Mutex<HashMap<PathBuf, (std::time::Instant, String)>> {
    static REFUSED: OnceLock<Mutex<HashMap<PathBuf, (std::time::Instant, String)>>> =
        OnceLock::new();
    REFUSED.get_or_init(Default::default)
}

/// The refusal recorded for `key` within [`REFUSAL_TTL`], if any.
fn recent_refusal(key: &Path) -> Option<ApiError> {
    let mut m = refusals().lock().unwrap_or_else(|p| p.into_inner());
    m.retain(|_, (at, _)| at.elapsed() < REFUSAL_TTL);
    m.get(key)
        .map(|(_, message)| ApiError::new(StatusCode::CONFLICT, message.clone()))
}

/// The `.fl` form of the stored `.flist` `r`: from the cache, or converted now (once).
///
/// An entry whose chunks are not all in the hub's store (an imported or mirrored flist
/// whose chunks live in another backend, a chunk lost from the store) is answered `409
/// Conflict` naming the first missing chunk: the hub converts only from its own store and
/// never dials the backends flists name (which anyone uploading an flist chooses).
/// `--mirror-chunks` copies a mirror's chunks, after which its entries convert.
pub async fn fl_of(st: &Shared, r: &Resolved) -> ApiResult<FlFile> {
    let routes = routes(st.public_backend.as_deref());
    let paths = cache_paths(&st.config.data_dir, &r.sha256, &routes);
    if let Some(f) = cached(&paths) {
        return Ok(f);
    }
    if let Some(e) = recent_refusal(&paths.0) {
        return Err(e);
    }
    let (st2, sha256) = (st.clone(), r.sha256.clone());
    // A task of its own: a client leaving does not waste the work begun.
    let task = tokio::spawn(async move {
        let lock = lock_of(&paths.0);
        let _held = lock.lock().await;
        if let Some(f) = cached(&paths) {
            return Ok(f);
        }
        let _slot = st2
            .conversion_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::internal("conversion limiter closed"))?;
        if let Some(e) = recent_refusal(&paths.0) {
            return Err(e);
        }
        let handle = tokio::runtime::Handle::current();
        let key = paths.0.clone();
        let done = tokio::task::spawn_blocking(move || {
            convert_to_fl(&st2, &sha256, routes, &paths, handle)
        })
        .await?;
        if let Err(e) = &done {
            if e.status == StatusCode::CONFLICT {
                let mut m = refusals().lock().unwrap_or_else(|p| p.into_inner());
                m.insert(key, (std::time::Instant::now(), e.message.clone()));
            }
        }
        done
    });
    task.await.map_err(ApiError::internal)?
}

/// Converts the stored `.flist` `sha256` into an `.fl` at `paths` (blocking).
fn convert_to_fl(
    st: &Shared,
    sha256: &str,
    routes: Vec<Route>,
    paths: &(PathBuf, PathBuf),
    handle: tokio::runtime::Handle,
) -> ApiResult<FlFile> {
    let src_path = st.hub.catalog().blob_path(sha256);
    let read = read_options(st);
    let src = Flist::open_with(&src_path, &read)
        .map_err(|e| ApiError::internal(format!("reading stored flist {sha256}: {e}")))?;
    let store = BlockingStore::new(st.store.clone(), handle);
    let opts = flist_convert::ReencodeOptions {
        codec: Codec::Rfs,
        ..Default::default()
    };
    let (tree, _) =
        flist_convert::reencode(&src.tree, &store, &store, &opts).map_err(|e| match e {
            flist_convert::ConvertError::MissingChunk { chunk, path, .. } => ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "this flist's chunks are not all in the hub's store (chunk {chunk} of \
                     {path} is missing), so the hub cannot make its .fl; the .flist still \
                     downloads: convert it where its chunks are reachable with `zflist \
                     convert <this .flist URL> out.fl --store <store URL>`"
                ),
            ),
            e => crate::produce::refused("converting to .fl", e),
        })?;
    let mut metadata = src.metadata;
    metadata.remove(flist_format::metadata::KEY_BACKEND);
    metadata.routes = routes;
    let dir = paths.0.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| ApiError::internal(format!("{dir:?}: {e}")))?;
    // Written next to its final place and renamed (atomic); a failed write leaves nothing.
    let tmp = dir.join(format!(".tmp-{}", unique()));
    let written = Flist { tree, metadata }
        .write_fl(&tmp)
        .map_err(|e| ApiError::internal(format!("writing the .fl: {e}")))
        .and_then(|()| describe(&tmp))
        .and_then(|f| {
            std::fs::rename(&tmp, &paths.0).map_err(ApiError::internal)?;
            let desc = dir.join(format!(".tmp-{}", unique()));
            std::fs::write(&desc, serde_json::to_vec(&f).map_err(ApiError::internal)?)
                .and_then(|()| std::fs::rename(&desc, &paths.1))
                .map_err(|e| {
                    let _ = std::fs::remove_file(&desc);
                    ApiError::internal(e)
                })?;
            Ok(f)
        });
    let _ = std::fs::remove_file(&tmp);
    let mut f = written?;
    f.path = paths.0.clone();
    Ok(f)
}

/// What [`prune_cache`] found under `<data-dir>/fl/` (and, unless a dry run, removed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Cached `.fl` files and descriptions whose source `.flist` is gone (paths relative to
    /// the data directory).
    pub files: Vec<String>,
    /// Temporary files a conversion killed midway left.
    pub temp_files: usize,
    /// Bytes of the files removed (or removable).
    pub bytes: u64,
}

/// Drops the cached `.fl` files of flist files the hub no longer holds — entries deleted or
/// replaced, once `hub-server gc` removed their `.flist` — and the stale temporary files
/// of conversions killed midway; `gone` names source files about to go (a dry run's
/// unreferenced ones), which count as gone. A cache file is named by its source's content
/// address, so it is gone exactly when that address is. Run after [`hub_repo::Hub::gc`].
pub fn prune_cache(hub: &hub_repo::Hub, gone: &[String], dry_run: bool) -> std::io::Result<Pruned> {
    let dir = hub.data_dir().join("fl");
    let mut out = Pruned::default();
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    let stale = std::time::Duration::from_secs(hub_repo::STALE_TEMP_SECS);
    let mut found = Vec::new();
    for e in rd {
        let e = e?;
        found.push((e.path(), e.file_name().to_string_lossy().into_owned()));
    }
    found.sort();
    for (path, name) in found {
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let remove = if name.starts_with(".tmp-") {
            let old = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= stale);
            if old {
                out.temp_files += 1;
            }
            old
        } else {
            // `<sha256>-<routes tag>.fl|.json`; anything else is left alone.
            let Some(sha) = name
                .split('-')
                .next()
                .filter(|s| hub_repo::is_hex_sha256(s))
            else {
                continue;
            };
            let gone = gone.iter().any(|g| g == sha) || !hub.catalog().blob_path(sha).exists();
            if gone {
                out.files.push(format!("fl/{name}"));
            }
            gone
        };
        if remove {
            out.bytes += size;
            if !dry_run {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(out)
}

/// A name no other temporary file has.
fn unique() -> String {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}

/// The content address, md5 and size of the file at `path`.
fn describe(path: &Path) -> ApiResult<FlFile> {
    let mut f = std::fs::File::open(path).map_err(ApiError::internal)?;
    let (mut sha, mut md5) = (sha2::Sha256::new(), md5::Md5::new());
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(ApiError::internal)?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        md5.update(&buf[..n]);
        size += n as u64;
    }
    Ok(FlFile {
        sha256: hex::encode(sha.finalize()),
        md5: hex::encode(md5.finalize()),
        size,
        path: path.to_path_buf(),
    })
}

/// How the hub reads flist files it did not write (bounded database, its temp area).
fn read_options(st: &Shared) -> flist_format::ReadOptions {
    flist_format::ReadOptions {
        max_database_bytes: st.config.limits.max_flist_database_bytes,
        temp_dir: Some(st.hub.catalog().tmp_dir().to_path_buf()),
    }
}

/// Whether the staged upload at `path` is an rfs `.fl` (told from its bytes).
pub(crate) fn is_fl(path: &Path) -> bool {
    matches!(Format::of_file(path), Ok(Format::Fl))
}

/// An uploaded `.fl` made into the hub's `.flist` (blocking): read (bounded), every block
/// it references checked in the hub's store — refused with 400 listing the missing ids —
/// then re-encoded as `.flist` chunks into the same store. The result keeps the tree and
/// the tags as metadata; its routes are dropped (the hub stamps its own backend). Returns
/// the flist and the number of distinct blocks.
pub(crate) fn fl_to_flist(
    st: &Shared,
    path: &Path,
    what: &str,
    handle: tokio::runtime::Handle,
) -> ApiResult<(Flist, u64)> {
    let fl = Flist::open_with(path, &read_options(st)).map_err(|e| match e {
        flist_format::FormatError::DatabaseTooLarge { limit, .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{what}: the flist database is larger than the hub's limit of {limit} bytes"),
        ),
        e => ApiError::bad_request(format!("{what} is not a readable .fl: {e}")),
    })?;
    let max = st.config.limits.max_entries;
    if max > 0 && fl.tree.len() as u64 > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{what}: more than the hub's limit of {max} entries"),
        ));
    }
    let store = BlockingStore::new(st.store.clone(), handle);
    let mut seen = std::collections::HashSet::new();
    let mut keys: Vec<Vec<u8>> = Vec::new();
    for id in fl.tree.walk() {
        if let flist_format::Kind::File { blocks, .. } = &fl.tree.node(id).kind {
            for b in blocks {
                if seen.insert(*b) {
                    keys.push(b.id().to_vec());
                }
            }
        }
    }
    let mut missing: Vec<String> = Vec::new();
    let mut missing_count = 0u64;
    for batch in keys.chunks(EXISTS_BATCH) {
        let present = store.exists_many(batch).map_err(ApiError::from)?;
        for (k, p) in batch.iter().zip(present) {
            if !p {
                missing_count += 1;
                if missing.len() < MISSING_SHOWN {
                    missing.push(hex::encode(k));
                }
            }
        }
    }
    if missing_count > 0 {
        let more = missing_count - missing.len() as u64;
        return Err(ApiError::bad_request(format!(
            "{what}: {missing_count} of {} blocks are missing from the hub's store: {}{}",
            keys.len(),
            missing.join(", "),
            if more > 0 {
                format!(" (and {more} more)")
            } else {
                String::new()
            }
        )));
    }
    let opts = flist_convert::ReencodeOptions {
        codec: Codec::Flist,
        ..Default::default()
    };
    let (tree, _) = flist_convert::reencode(&fl.tree, &store, &store, &opts)
        .map_err(|e| crate::produce::refused(&format!("{what} refused"), e))?;
    let mut metadata = fl.metadata;
    metadata.routes.clear();
    Ok((Flist { tree, metadata }, keys.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_fl_routes_name_the_hub_chunk_endpoint() {
        let one = |b: &str| {
            let r = routes(Some(b));
            assert_eq!(r.len(), 1, "{b}");
            assert_eq!((r[0].start, r[0].end), (0, 255));
            r[0].url.clone()
        };
        // zdb_listen on: the 0-db endpoint (what rfs v2.0.7 reads).
        assert_eq!(
            one(r#"{"host": "hub.example.org", "port": 9900}"#),
            "zdb://hub.example.org:9900/default"
        );
        // A dir:// store without it: the hub's /chunks (newer rfs, zflist).
        assert_eq!(
            one(r#"{"url": "https://hub.example.org/chunks"}"#),
            "https://hub.example.org/chunks"
        );
        // Never a password.
        let u = one(
            r#"{"host": "zdb.example.org", "port": 9900, "namespace": "pub", "password": "s3cret"}"#,
        );
        assert!(!u.contains("s3cret"), "{u}");
        assert!(routes(None).is_empty());
    }

    #[test]
    fn fl_names_map_to_their_flist_entry() {
        assert_eq!(flist_name_of("app.fl"), "app.flist");
        assert_eq!(flist_name_of("zos:v1.FL"), "zos:v1.flist");
        assert_eq!(flist_name_of("app.flist"), "app.flist");
        assert_eq!(flist_name_of("fl"), "fl");
    }
}
