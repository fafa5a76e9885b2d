//! `zflist push <DIR|ARCHIVE|IMAGE|FLIST> --hub URL [--name NAME] [--repo ORG]`: the
//! `docker push` of flists.
//!
//! The source is packed locally (directory, archive, `docker://`/`oci:`/`docker-archive:`/
//! `oci-archive:` image, or an existing `.flist` whose chunks are read from its backend).
//! Chunks go to a [`HubStore`]: the converter's batched presence check becomes one
//! `POST /api/chunks/missing` per batch, and only the chunks the hub lacks are uploaded with
//! `PUT /api/chunks/<hex>`, a bounded number in flight. The flist is then published with
//! `upload-flist`, which passes because every chunk is there. An interrupted push, run again,
//! is told the chunks it already sent exist: resumable by construction.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use flist_format::Flist;
use flist_store::{BlockingStore, SetOutcome, Store, StoreError};
use hub_contract::{ChunkStored, Missing, MissingKeys, Published, Success};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::backend::StoreConfig;
use crate::error::{Context, Error, ErrorKind, Result};
use crate::hub_client::{HubClient, HubOptions};
use crate::oneshot::ImageArgs;
use crate::response::{Progress, Response};

const FUNCTION: &str = "push";

/// Keys per `POST /api/chunks/missing` request.
pub const MISSING_BATCH: usize = 4096;

/// Default number of chunk uploads in flight.
pub const DEFAULT_UPLOADS: usize = 8;

/// Attempts per chunk request when the connection fails or the hub answers 5xx.
const ATTEMPTS: u32 = 4;

/// What a push sent.
#[derive(Debug, Default)]
pub struct PushCounters {
    /// Keys asked about.
    pub keys_checked: AtomicU64,
    /// Of those, keys the hub lacked.
    pub keys_missing: AtomicU64,
    /// Chunks uploaded.
    pub chunks_sent: AtomicU64,
    /// Chunk bytes uploaded (request bodies).
    pub bytes_sent: AtomicU64,
    /// Uploaded chunks the hub already had (another client sent them meanwhile).
    pub chunks_already_present: AtomicU64,
}

/// A write-only chunk store on a hub's chunk API (`/api/chunks/...`).
pub struct HubStore {
    client: HubClient,
    uploads: Arc<tokio::sync::Semaphore>,
    /// What went over the wire.
    pub counters: Arc<PushCounters>,
}

impl fmt::Debug for HubStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubStore")
            .field("hub", &self.client.base())
            .finish()
    }
}

impl fmt::Display for HubStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hub {}", self.client.base())
    }
}

impl HubStore {
    /// A store on `client`'s hub with at most `uploads` chunk uploads in flight.
    pub fn new(client: HubClient, uploads: usize) -> Self {
        HubStore {
            client,
            uploads: Arc::new(tokio::sync::Semaphore::new(uploads.max(1))),
            counters: Arc::new(PushCounters::default()),
        }
    }

    fn err(&self, key: Option<&[u8]>, status: Option<StatusCode>, message: String) -> StoreError {
        let store = self.to_string();
        match status {
            Some(StatusCode::UNAUTHORIZED) | Some(StatusCode::FORBIDDEN) => {
                StoreError::Auth { store, message }
            }
            Some(_) => StoreError::Server {
                store,
                key: key.map(hex::encode),
                message,
            },
            None => StoreError::Connection {
                store,
                key: key.map(hex::encode),
                message,
            },
        }
    }

    /// Sends a request built by `make`, retrying connection failures and 5xx answers with
    /// backoff; any other non-2xx answer is an error carrying the hub's message.
    async fn send(
        &self,
        key: Option<&[u8]>,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> std::result::Result<Bytes, StoreError> {
        let mut delay = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = match make().send().await {
                Ok(resp) => {
                    let status = resp.status();
                    match resp.bytes().await {
                        Ok(body) => Ok((status, body)),
                        Err(e) => Err(e.to_string()),
                    }
                }
                Err(e) => Err(e.to_string()),
            };
            let retry = match &outcome {
                Ok((status, _)) => status.is_server_error(),
                Err(_) => true,
            };
            if retry && attempt < ATTEMPTS {
                tokio::time::sleep(delay).await;
                delay *= 2;
                continue;
            }
            return match outcome {
                Ok((status, body)) if status.is_success() => Ok(body),
                Ok((status, body)) => {
                    let msg = crate::hub_client::error_message(&body);
                    Err(self.err(key, Some(status), format!("HTTP {status}: {msg}")))
                }
                Err(e) => Err(self.err(key, None, e)),
            };
        }
    }

    /// The keys among `keys` the hub lacks (one request per [`MISSING_BATCH`] keys).
    pub async fn missing(&self, keys: &[Vec<u8>]) -> std::result::Result<Vec<bool>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for batch in keys.chunks(MISSING_BATCH) {
            let hex_keys: Vec<String> = batch.iter().map(hex::encode).collect();
            let body = serde_json::to_string(&MissingKeys {
                keys: hex_keys.clone(),
            })
            .unwrap_or_default();
            let url = self.client.url("/api/chunks/missing");
            let v = self
                .send(None, || {
                    self.client
                        .http()
                        .post(&url)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.clone())
                })
                .await?;
            let missing: std::collections::HashSet<String> =
                serde_json::from_slice::<Success<Missing>>(&v)
                    .ok()
                    .and_then(|s| s.payload)
                    .ok_or_else(|| {
                        self.err(
                            None,
                            Some(StatusCode::OK),
                            "the hub's answer to /api/chunks/missing has no payload.missing".into(),
                        )
                    })?
                    .missing
                    .iter()
                    .map(|k| k.to_ascii_lowercase())
                    .collect();
            let c = &self.counters;
            c.keys_checked
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            for k in &hex_keys {
                let m = missing.contains(k);
                if m {
                    c.keys_missing.fetch_add(1, Ordering::Relaxed);
                }
                out.push(m);
            }
        }
        Ok(out)
    }

    async fn put(&self, key: &[u8], value: Bytes) -> std::result::Result<SetOutcome, StoreError> {
        let _permit = self
            .uploads
            .acquire()
            .await
            .map_err(|e| self.err(Some(key), None, e.to_string()))?;
        let url = self
            .client
            .url(&format!("/api/chunks/{}", hex::encode(key)));
        let len = value.len() as u64;
        let v = self
            .send(Some(key), || {
                self.client
                    .http()
                    .put(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .body(value.clone())
            })
            .await?;
        let c = &self.counters;
        c.chunks_sent.fetch_add(1, Ordering::Relaxed);
        c.bytes_sent.fetch_add(len, Ordering::Relaxed);
        // an answer without `payload.written` counts as written
        let written = serde_json::from_slice::<Success<ChunkStored>>(&v)
            .ok()
            .and_then(|s| s.payload)
            .is_none_or(|p| p.written);
        if written {
            Ok(SetOutcome::Written)
        } else {
            c.chunks_already_present.fetch_add(1, Ordering::Relaxed);
            Ok(SetOutcome::AlreadyPresent)
        }
    }

    fn unsupported(&self, operation: &str) -> StoreError {
        StoreError::Unsupported {
            store: self.to_string(),
            operation: operation.into(),
            reason: "the hub's chunk API takes uploads only".into(),
        }
    }
}

#[async_trait]
impl Store for HubStore {
    async fn get(&self, _key: &[u8]) -> std::result::Result<Option<Bytes>, StoreError> {
        Err(self.unsupported("get"))
    }

    async fn exists(&self, key: &[u8]) -> std::result::Result<bool, StoreError> {
        Ok(!self.missing(&[key.to_vec()]).await?[0])
    }

    async fn set(&self, key: &[u8], value: Bytes) -> std::result::Result<SetOutcome, StoreError> {
        self.put(key, value).await
    }

    async fn get_many(
        &self,
        _keys: &[Vec<u8>],
    ) -> std::result::Result<Vec<Option<Bytes>>, StoreError> {
        Err(self.unsupported("get"))
    }

    async fn exists_many(&self, keys: &[Vec<u8>]) -> std::result::Result<Vec<bool>, StoreError> {
        Ok(self.missing(keys).await?.into_iter().map(|m| !m).collect())
    }

    async fn set_many(
        &self,
        items: &[(Vec<u8>, Bytes)],
    ) -> std::result::Result<Vec<SetOutcome>, StoreError> {
        // every upload waits for a permit: at most `uploads` in flight over all batches
        let futs = items.iter().map(|(k, v)| self.put(k, v.clone()));
        futures::future::try_join_all(futs).await
    }
}

/// `zflist push`: pack a source and publish it on a hub.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct PushArgs {
    /// Directory, archive (or `-`), `docker://REF`, `oci:DIR`, `oci-archive:FILE`,
    /// `docker-archive:FILE`, or an existing .flist (chunks read from its backend/--store).
    pub source: String,
    /// The hub and the token.
    #[command(flatten)]
    pub conn: HubOptions,
    /// Name on the hub (default: from the source; `.flist` appended when missing).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Publish into this organisation's repository (sent as `active-user`; default:
    /// $ZFLIST_HUB_USER, else your own).
    #[arg(long, value_name = "ORG")]
    pub repo: Option<String>,
    /// Also keep the flist in this local file.
    #[arg(short, long, value_name = "FLIST")]
    pub output: Option<PathBuf>,
    /// Chunk uploads in flight.
    #[arg(long, default_value_t = DEFAULT_UPLOADS, value_name = "N")]
    pub uploads: usize,
    /// Image options (for image sources).
    #[command(flatten)]
    pub image: ImageArgs,
}

/// What kind of source a push was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A local directory.
    Dir(PathBuf),
    /// A tar archive (any compression) file, or `-` for stdin.
    Archive(String),
    /// An image reference as `zflist docker` takes it.
    Image(String),
    /// An existing flist.
    Flist(PathBuf),
}

const IMAGE_PREFIXES: &[&str] = &["docker://", "oci:", "oci-archive:", "docker-archive:"];

impl Source {
    /// Classifies `s`: image prefixes first, `-` (archive on stdin), then what the path is.
    pub fn parse(s: &str) -> Result<Self> {
        if IMAGE_PREFIXES.iter().any(|p| s.starts_with(p)) {
            return Ok(Source::Image(s.to_string()));
        }
        if s == "-" {
            return Ok(Source::Archive(s.to_string()));
        }
        let p = Path::new(s);
        let md = std::fs::metadata(p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::usage(
                    FUNCTION,
                    format!(
                        "{s}: no such file or directory (for a registry image write docker://{s})"
                    ),
                )
            } else {
                Error::io(FUNCTION, "reading", p, e)
            }
        })?;
        if md.is_dir() {
            Ok(Source::Dir(p.to_path_buf()))
        } else if s.ends_with(".flist") {
            Ok(Source::Flist(p.to_path_buf()))
        } else {
            Ok(Source::Archive(s.to_string()))
        }
    }

    /// The flist name derived from the source (`app.tar.gz` → `app.flist`,
    /// `docker://alpine:3.20` → `alpine-3.20.flist`).
    pub fn default_name(&self) -> Option<String> {
        let base = |p: &Path| -> Option<String> {
            let p = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
            p.file_name().map(|n| n.to_string_lossy().into_owned())
        };
        let stem = match self {
            Source::Dir(p) => base(p)?,
            Source::Flist(p) => return base(p),
            Source::Archive(s) if s == "-" => return None,
            Source::Archive(s) => strip_archive_ext(&base(Path::new(s))?),
            Source::Image(s) => {
                if let Some(r) = s.strip_prefix("docker://") {
                    let last = r.rsplit('/').next().unwrap_or(r);
                    let last = last.split('@').next().unwrap_or(last);
                    last.replace(':', "-")
                } else {
                    let (_, path) = s.split_once(':')?;
                    let path = path.split(':').next().unwrap_or(path);
                    strip_archive_ext(&base(Path::new(path))?)
                }
            }
        };
        let stem: String = stem
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-+@,".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let stem = stem.trim_matches('.').to_string();
        (!stem.is_empty()).then(|| format!("{stem}.flist"))
    }
}

fn strip_archive_ext(name: &str) -> String {
    for ext in [
        ".tar.gz", ".tgz", ".tar.zst", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".tar",
    ] {
        if let Some(s) = name.strip_suffix(ext) {
            return s.to_string();
        }
    }
    name.to_string()
}

/// `push <source> --hub URL [--name NAME] [--repo ORG]`: packs `source` locally, uploads
/// only the chunks the hub lacks and publishes the flist there. `hub.user` (`--repo`) is the
/// repository (organisation) it goes to; `stores` gives the source store of an flist source
/// (default: its `backend` metadata).
pub fn push(args: &PushArgs, stores: &StoreConfig, progress: &dyn Progress) -> Result<Response> {
    let started = Instant::now();
    let source = args.source.as_str();
    let mut hub = args.conn.clone();
    if args.repo.is_some() {
        hub.user = args.repo.clone();
    }
    let hub = hub.with_env();
    let src = Source::parse(source)?;
    let mut name = match &args.name {
        Some(n) => n.clone(),
        None => src.default_name().ok_or_else(|| {
            Error::usage(
                FUNCTION,
                format!("give the flist's name with --name for {source}"),
            )
        })?,
    };
    if !name.ends_with(".flist") {
        name.push_str(".flist");
    }
    let base = hub.base();
    let token = hub.token(FUNCTION)?;
    let client = HubClient::new(&base, &token, hub.user.as_deref(), FUNCTION)?;
    let uploads = if args.uploads == 0 {
        DEFAULT_UPLOADS
    } else {
        args.uploads
    };
    let hub_store = Arc::new(HubStore::new(client.clone(), uploads));
    let counters = hub_store.counters.clone();
    let store = {
        let s = hub_store.clone();
        BlockingStore::with_private_runtime(move || async move { Ok(s as Arc<dyn Store>) })
            .ctx(FUNCTION)?
    };
    let handle = store.handle().clone();
    let repository = handle.block_on(client.whoami(FUNCTION))?;

    let tmp = tempfile::Builder::new()
        .prefix(".zflist-push-")
        .tempdir()
        .map_err(|e| {
            Error::io(
                FUNCTION,
                "creating a temporary directory in",
                &std::env::temp_dir(),
                e,
            )
        })?;
    let (flist_path, stats) = match &src {
        Source::Flist(p) => {
            let st = push_flist_chunks(p, &hub_store, &store, stores, progress)?;
            (p.clone(), st)
        }
        Source::Image(image) => {
            let (image_tree, st) = crate::oneshot::convert_image(
                FUNCTION,
                image,
                &store,
                &crate::oneshot::ImageJob {
                    fetch: &args.image,
                    credentials: None,
                    cache_dir: crate::dirs::cache_dir("layers"),
                },
                progress,
            )?;
            let out = tmp.path().join(&name);
            image_tree
                .write_flist(&out)
                .map_err(|e| Error::new(FUNCTION, ErrorKind::Convert(format!("{source}: {e}"))))?;
            let c = &st.convert;
            (
                out,
                json!({"image": st.image, "manifest": st.manifest_digest, "platform": st.platform,
                    "regular": c.files, "directory": c.directories, "symlink": c.symlinks,
                    "special": c.specials, "fullsize": c.bytes}),
            )
        }
        Source::Dir(_) | Source::Archive(_) => {
            let out = tmp.path().join(&name);
            let st = pack_source(source, &store, &out, progress)?;
            (
                out,
                json!({"regular": st.files, "directory": st.directories, "symlink": st.symlinks,
                    "special": st.specials, "fullsize": st.bytes}),
            )
        }
    };
    if let Some(out) = &args.output {
        if out != &flist_path {
            std::fs::copy(&flist_path, out).map_err(|e| Error::io(FUNCTION, "writing", out, e))?;
        }
    }
    progress.update(&format!("publishing {name}"), 0, 0);
    let reply = handle.block_on(client.upload_file(
        FUNCTION,
        "/api/flist/me/upload-flist",
        &flist_path,
        &name,
    ))?;
    progress.finish("published");
    if reply.status != StatusCode::OK {
        return Err(Error::new(
            FUNCTION,
            ErrorKind::Hub(format!(
                "publishing {name}: HTTP {}: {}",
                reply.status,
                reply.message()
            )),
        ));
    }
    let published = reply
        .parse::<Success<Published>>()
        .and_then(|s| s.payload)
        .map_or(name, |p| p.name);
    let c = &counters;
    let checked = c.keys_checked.load(Ordering::Relaxed);
    let missing = c.keys_missing.load(Ordering::Relaxed);
    let sent = c.chunks_sent.load(Ordering::Relaxed);
    let bytes = c.bytes_sent.load(Ordering::Relaxed);
    let flist_bytes = std::fs::metadata(&flist_path).map(|m| m.len()).unwrap_or(0);
    let url = format!("{base}/{repository}/{published}");
    let secs = started.elapsed().as_secs_f64();
    // On the hub before the push (asked), or by the time one was sent (another client's).
    let present =
        checked.saturating_sub(missing) + c.chunks_already_present.load(Ordering::Relaxed);
    let mut json = json!({
        "name": published,
        "repository": repository,
        "url": url,
        "chunks_checked": checked,
        "chunks_missing": missing,
        "chunks_sent": sent,
        "bytes_sent": bytes,
        "chunks_already_present": present,
        "flist_bytes": flist_bytes,
        "seconds": (secs * 1000.0).round() / 1000.0,
    });
    if let (Value::Object(m), Value::Object(s)) = (&mut json, stats) {
        m.extend(s);
    }
    let text = format!(
        "{url}\n  chunks: {checked} checked, {sent} sent ({bytes} bytes), {present} already on the hub\n  flist: {flist_bytes} bytes, {secs:.1} s\n",
    );
    Ok(Response::new(json, text))
}

/// Packs a directory or an archive (`-`: standard input) with its chunks going to the hub,
/// writing the flist at `out` (the tree is staged on disk, never whole in memory).
fn pack_source(
    source: &str,
    store: &BlockingStore,
    out: &Path,
    progress: &dyn Progress,
) -> Result<flist_convert::Stats> {
    let opts = flist_convert::ConvertOptions {
        upload: flist_convert::UploadMode::CheckThenSet,
        batch_chunks: 256,
        batches_in_flight: 3,
        ..Default::default()
    };
    let conv = |e: flist_convert::ConvertError| {
        Error::new(FUNCTION, ErrorKind::Convert(format!("{source}: {e}")))
    };
    let src = flist_convert::Source::from_arg(source).map_err(conv)?;
    let measure = crate::convert::measure_of(&src);
    crate::convert::with_progress_of("packing", progress, measure, opts, |o| {
        let c = flist_convert::convert(src, Some(store), &o)?;
        c.write_flist(out)?;
        Ok(c.stats)
    })
    .map_err(conv)
}

/// An existing flist: asks the hub which of its chunks it lacks and copies those from the
/// flist's store (`--store`, `ZFLIST_BACKEND`, or its `backend` metadata).
fn push_flist_chunks(
    path: &Path,
    hub: &HubStore,
    hub_blocking: &BlockingStore,
    stores: &StoreConfig,
    progress: &dyn Progress,
) -> Result<Value> {
    let flist = Flist::open(path).ctx(FUNCTION)?;
    let refs = crate::chunks::chunk_refs(&flist.tree);
    let keys: Vec<Vec<u8>> = crate::chunks::unique_keys(&refs)
        .into_iter()
        .map(|k| k.to_vec())
        .collect();
    let handle = hub_blocking.handle().clone();
    let missing = handle.block_on(hub.missing(&keys)).ctx(FUNCTION)?;
    let todo: Vec<Vec<u8>> = keys
        .into_iter()
        .zip(missing)
        .filter(|(_, m)| *m)
        .map(|(k, _)| k)
        .collect();
    if !todo.is_empty() {
        let source = stores.open_read(FUNCTION, &flist.metadata)?;
        let total = todo.len() as u64;
        let mut done = 0u64;
        for batch in todo.chunks(64) {
            let values = source.get_many_required(batch).ctx(FUNCTION)?;
            let items: Vec<(Vec<u8>, Bytes)> = batch.iter().cloned().zip(values).collect();
            hub_blocking.set_many(items).ctx(FUNCTION)?;
            done += batch.len() as u64;
            progress.update("uploading chunks", done, total);
        }
        progress.finish("uploaded");
    }
    let st = flist.tree.stats();
    Ok(
        json!({"regular": st.regular, "directory": st.directory, "symlink": st.symlink,
        "special": st.special, "fullsize": st.fullsize}),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_come_from_the_source() {
        let n = |s: &str| Source::Image(s.into()).default_name();
        assert_eq!(n("docker://alpine:3.20").unwrap(), "alpine-3.20.flist");
        assert_eq!(
            n("docker://localhost:5000/team/app:v1").unwrap(),
            "app-v1.flist"
        );
        assert_eq!(n("docker-archive:/tmp/x/app.tar").unwrap(), "app.flist");
        assert_eq!(
            Source::Archive("/a/b/site-1.2.tar.gz".into())
                .default_name()
                .unwrap(),
            "site-1.2.flist"
        );
        assert_eq!(Source::Archive("-".into()).default_name(), None);
    }

    #[test]
    fn sources_are_classified() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            Source::parse(d.path().to_str().unwrap()).unwrap(),
            Source::Dir(_)
        ));
        let f = d.path().join("x.flist");
        std::fs::write(&f, b"x").unwrap();
        assert!(matches!(
            Source::parse(f.to_str().unwrap()).unwrap(),
            Source::Flist(_)
        ));
        assert!(matches!(
            Source::parse("oci:/some/dir").unwrap(),
            Source::Image(_)
        ));
        let e = Source::parse("alpine:3.20").unwrap_err();
        assert!(e.message().contains("docker://alpine:3.20"), "{e}");
    }
}
