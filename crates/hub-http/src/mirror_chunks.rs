//! `--mirror-chunks`: a mirror that also holds the chunks of every flist it serves.
//!
//! For each flist file of the primary, before the entries naming it become visible:
//! 1. the chunk keys of its tree are listed (each once);
//! 2. the keys the mirror's own store lacks (`exists_many`, in batches) are read from the
//!    flist's `backend`, failing over to the primary's `/chunks/` route (pipelined
//!    `get_many`, several batches in flight), checked against their content address
//!    (BLAKE2b-16 of the stored bytes) and written to the mirror's store;
//! 3. the flist is *stamped*: the same database with `backend` set to the mirror's public
//!    backend and `backend-mirrors` listing the primary's backend (and any alternatives it
//!    already listed), stored under its new content address. The mapping primary file →
//!    stamped file is recorded, so a later sync neither copies nor stamps it again.
//!
//! An interrupted copy resumes: chunks already stored are skipped by the existence check.
//! Clients reading a stamped flist fetch its chunks from the mirror and never need the
//! primary.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use flist_format::{Backend, Flist, Kind};
use flist_store::{RouterStore, Store, StoreUrl};
use futures::{StreamExt, TryStreamExt};
use hub_repo::{Hub, RepoSnapshot, SnapBlob};
use serde_json::Value;

use crate::mirror::SyncError;

/// Keys per existence check / read / write batch.
const BATCH: usize = 128;
/// Batches in flight at once.
const IN_FLIGHT: usize = 4;
/// Metadata key listing alternative public backends (read by `zflist`).
pub const KEY_BACKEND_MIRRORS: &str = "backend-mirrors";

/// Copies chunks into the mirror's store and stamps flists with its backend.
pub struct ChunkMirror {
    local: Arc<dyn Store>,
    /// The mirror's public `backend` JSON.
    backend: String,
    /// `<primary>/chunks`, the fallback source.
    upstream_chunks: String,
    pending: AtomicU64,
    copied: AtomicU64,
}

fn io_err(what: &str, e: impl std::fmt::Display) -> SyncError {
    SyncError::Io(format!("{what}: {e}"))
}

/// A failure reading chunks from the primary (shown in `/api/mirror`).
fn source_err(e: impl std::fmt::Display) -> SyncError {
    SyncError::Upstream {
        url: "chunks".into(),
        message: e.to_string(),
    }
}

/// Key of the recorded mapping primary file → stamped file.
fn state_key(sha256: &str) -> String {
    format!("chunks:{sha256}")
}

/// Key of the recorded primary file with this md5 (an old hub lists files by md5 only).
fn md5_key(md5: &str) -> String {
    format!("chunks-md5:{md5}")
}

impl ChunkMirror {
    /// Copies into `local`, stamps with `backend` (JSON), falls back to `upstream`'s
    /// `/chunks/` route.
    pub fn new(local: Arc<dyn Store>, backend: String, upstream: &str) -> Self {
        ChunkMirror {
            local,
            backend,
            upstream_chunks: format!("{}/chunks", upstream.trim_end_matches('/')),
            pending: AtomicU64::new(0),
            copied: AtomicU64::new(0),
        }
    }

    /// Chunks still to copy in the running sync.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Chunks copied since start.
    pub fn copied(&self) -> u64 {
        self.copied.load(Ordering::Relaxed)
    }

    /// The stamped files already made (and still stored) for `blobs`, by primary sha256.
    pub async fn known(
        &self,
        hub: &Arc<Hub>,
        blobs: &[SnapBlob],
    ) -> Result<BTreeMap<String, SnapBlob>, SyncError> {
        let hub = hub.clone();
        let shas: Vec<String> = blobs.iter().map(|b| b.sha256.clone()).collect();
        tokio::task::spawn_blocking(move || {
            let mut out = BTreeMap::new();
            for sha in shas {
                let Some(v) = hub.replica().mirror_state(&state_key(&sha))? else {
                    continue;
                };
                if let Ok(stamped) = serde_json::from_str::<SnapBlob>(&v) {
                    if hub.replica().has_blob(&stamped.sha256) {
                        out.insert(sha, stamped);
                    }
                }
            }
            Ok::<_, hub_repo::RepoError>(out)
        })
        .await
        .map_err(|e| io_err("mirror state", e))?
        .map_err(SyncError::from)
    }

    /// The primary's file with `md5` when a stamped copy of it is held (full-listing mode:
    /// an old hub names its files by md5 only).
    pub async fn primary_by_md5(
        &self,
        hub: &Arc<Hub>,
        md5: &str,
    ) -> Result<Option<SnapBlob>, SyncError> {
        let (h, key) = (hub.clone(), md5_key(md5));
        let primary = tokio::task::spawn_blocking(move || h.replica().mirror_state(&key))
            .await
            .map_err(|e| io_err("mirror state", e))??
            .and_then(|v| serde_json::from_str::<SnapBlob>(&v).ok());
        let Some(primary) = primary else {
            return Ok(None);
        };
        let held = self.known(hub, std::slice::from_ref(&primary)).await?;
        Ok(held.contains_key(&primary.sha256).then_some(primary))
    }

    /// `snap` with every flist file replaced by its stamped copy, copying the chunks of
    /// those not stamped yet (their primary files must be stored in `hub`).
    pub async fn localize(
        &self,
        hub: &Arc<Hub>,
        mut snap: RepoSnapshot,
        mut known: BTreeMap<String, SnapBlob>,
    ) -> Result<RepoSnapshot, SyncError> {
        for b in &snap.blobs {
            if !known.contains_key(&b.sha256) {
                let stamped = self.localize_blob(hub, b).await?;
                known.insert(b.sha256.clone(), stamped);
            }
        }
        for b in &mut snap.blobs {
            if let Some(s) = known.get(&b.sha256) {
                *b = s.clone();
            }
        }
        for e in &mut snap.entries {
            if let Some(s) = e.sha256.as_ref().and_then(|sha| known.get(sha)) {
                e.sha256 = Some(s.sha256.clone());
            }
        }
        snap.blobs.sort_by(|a, b| a.sha256.cmp(&b.sha256));
        snap.blobs.dedup();
        Ok(snap)
    }

    /// Copies the missing chunks of the stored primary file `b`, stamps it, records the
    /// mapping and returns the stamped file's identity.
    async fn localize_blob(&self, hub: &Arc<Hub>, b: &SnapBlob) -> Result<SnapBlob, SyncError> {
        let path = hub.catalog().blob_path(&b.sha256);
        let what = format!("flist file {}", b.sha256);
        let (keys, backend, mirrors) = {
            let what = what.clone();
            tokio::task::spawn_blocking(move || read_flist(&path, &what))
                .await
                .map_err(|e| io_err("reading an flist", e))??
        };
        let source = self.source(backend.as_ref()).await?;
        self.copy(&source, keys).await?;
        // Alternatives: the primary's backend first, then those it listed; never ourselves.
        let own = Backend::parse(&self.backend).ok();
        let mut alternatives: Vec<Value> = Vec::new();
        for alt in backend.into_iter().chain(mirrors) {
            let alt = alt.public();
            let v = alt.to_public_value();
            if Some(&alt) != own.as_ref() && !alternatives.contains(&v) {
                alternatives.push(v);
            }
        }
        let mirrors_json = Value::Array(alternatives).to_string();
        let hub2 = hub.clone();
        let own_backend = self.backend.clone();
        let src = hub.catalog().blob_path(&b.sha256);
        let stamped = tokio::task::spawn_blocking(move || {
            let tmp = hub2.catalog().temp_path(".stamp");
            let r = flist_format::stamp::restamp(
                &src,
                &tmp,
                &what,
                &[
                    ("backend", Some(&own_backend)),
                    (KEY_BACKEND_MIRRORS, Some(&mirrors_json)),
                ],
            );
            if let Err(e) = r {
                let _ = std::fs::remove_file(&tmp);
                return Err(io_err("stamping", e));
            }
            let staged = hub2.catalog().stage_file(&tmp)?;
            let blob = SnapBlob {
                sha256: staged.sha256.clone(),
                md5: staged.md5.clone(),
                size: staged.size,
            };
            hub2.replica().commit_verified_blob(&staged, &blob)?;
            Ok::<_, SyncError>(blob)
        })
        .await
        .map_err(|e| io_err("stamping", e))??;
        let (h, key, value) = (
            hub.clone(),
            state_key(&b.sha256),
            serde_json::to_string(&stamped).map_err(|e| io_err("mirror state", e))?,
        );
        let (mkey, primary) = (
            md5_key(&b.md5),
            serde_json::to_string(b).map_err(|e| io_err("mirror state", e))?,
        );
        let sha = b.sha256.clone();
        tokio::task::spawn_blocking(move || {
            h.replica().set_mirror_state(&key, &value)?;
            h.replica().set_mirror_state(&mkey, &primary)?;
            // The primary's copy is not served: only the stamped one.
            h.replica().discard_unrecorded_blob(&sha).map(|_| ())
        })
        .await
        .map_err(|e| io_err("mirror state", e))??;
        Ok(stamped)
    }

    /// Where to read chunks from: the flist's backend, failing over to the primary's
    /// `/chunks/` route (only the latter when the flist names no backend).
    async fn source(&self, backend: Option<&Backend>) -> Result<Arc<dyn Store>, SyncError> {
        let fallback = StoreUrl::parse(&self.upstream_chunks)
            .map_err(|e| io_err("the primary's /chunks", e))?;
        let mut urls = Vec::new();
        if let Some(b) = backend {
            urls.push(flist_convert::backend::store_url(b));
        }
        if !urls.contains(&fallback) {
            urls.push(fallback);
        }
        let mut stores: Vec<(u8, u8, Arc<dyn Store>)> = Vec::new();
        for u in &urls {
            match flist_store::open_url(u).await {
                Ok(s) => stores.push((0, 255, s)),
                Err(e) => tracing::warn!("mirror: cannot open chunk source {u}: {e}"),
            }
        }
        match stores.len() {
            0 => Err(source_err("no usable chunk store")),
            1 => Ok(stores.remove(0).2),
            _ => Ok(Arc::new(
                RouterStore::new(stores).map_err(|e| io_err("chunk source", e))?,
            )),
        }
    }

    /// Copies the `keys` the local store lacks from `source`, [`IN_FLIGHT`] batches at once.
    async fn copy(&self, source: &Arc<dyn Store>, keys: Vec<Vec<u8>>) -> Result<(), SyncError> {
        let total = keys.len() as u64;
        self.pending.fetch_add(total, Ordering::Relaxed);
        let batches: Vec<Vec<Vec<u8>>> = keys.chunks(BATCH).map(<[_]>::to_vec).collect();
        let r = futures::stream::iter(batches.into_iter().map(|batch| async move {
            let n = batch.len() as u64;
            let r = self.copy_batch(source, batch).await;
            self.pending.fetch_sub(n, Ordering::Relaxed);
            r
        }))
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await;
        if r.is_err() {
            // What the failed batches had left.
            self.pending.store(0, Ordering::Relaxed);
        }
        r.map(|_| ())
    }

    async fn copy_batch(
        &self,
        source: &Arc<dyn Store>,
        batch: Vec<Vec<u8>>,
    ) -> Result<(), SyncError> {
        let (n, _) = copy_missing(source, &self.local, batch, false).await?;
        self.copied.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }
}

/// Copies the chunks of `batch` that `dest` lacks from `source`, each checked against its
/// content address; (copied, absent from `source`). A chunk `source` lacks is an error
/// unless `absent_ok` (a hub's flists may name chunks kept elsewhere: their backend).
async fn copy_missing(
    source: &Arc<dyn Store>,
    dest: &Arc<dyn Store>,
    batch: Vec<Vec<u8>>,
    absent_ok: bool,
) -> Result<(u64, u64), SyncError> {
    let have = dest
        .exists_many(&batch)
        .await
        .map_err(|e| io_err("the destination chunk store", e))?;
    let missing: Vec<Vec<u8>> = batch
        .into_iter()
        .zip(have)
        .filter(|(_, h)| !h)
        .map(|(k, _)| k)
        .collect();
    if missing.is_empty() {
        return Ok((0, 0));
    }
    let values = source.get_many(&missing).await.map_err(source_err)?;
    let mut items: Vec<(Vec<u8>, Bytes)> = Vec::with_capacity(missing.len());
    let mut absent = 0u64;
    for (k, v) in missing.into_iter().zip(values) {
        let hexk = hex::encode(&k);
        let Some(v) = v else {
            if absent_ok {
                absent += 1;
                continue;
            }
            return Err(source_err(format!("chunk {hexk} is missing")));
        };
        if !flist_chunks::stored_matches(&k, &v) {
            return Err(source_err(format!("chunk {hexk} does not match its key")));
        }
        items.push((k, v));
    }
    let n = items.len() as u64;
    if n > 0 {
        dest.set_many(&items)
            .await
            .map_err(|e| io_err("the destination chunk store", e))?;
    }
    Ok((n, absent))
}

/// How [`copy_chunks`] went.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChunksCopy {
    /// Flist files whose chunks were looked at.
    pub flists: u64,
    /// Distinct chunk keys they name (per file).
    pub chunks: u64,
    /// Chunks copied now (the others were in the destination already).
    pub copied: u64,
    /// Chunks the source store does not hold (flists whose backend is another store).
    pub elsewhere: u64,
}

/// Copies the chunks every recorded flist file of `hub` names from `source` to `dest`
/// (`hub-server migrate`): the ones `dest` lacks, checked against their content address,
/// batches pipelined; chunks `source` does not hold are counted, not copied (flists whose
/// backend is another store). Resumable: a second run copies nothing more.
pub async fn copy_chunks(
    hub: &Arc<Hub>,
    source: Arc<dyn Store>,
    dest: Arc<dyn Store>,
) -> Result<ChunksCopy, SyncError> {
    let h = hub.clone();
    let shas = tokio::task::spawn_blocking(move || h.catalog().blob_shas())
        .await
        .map_err(|e| io_err("listing flist files", e))??;
    let mut rep = ChunksCopy::default();
    for sha in shas {
        let h = hub.clone();
        let what = format!("flist file {sha}");
        let (keys, _, _) =
            tokio::task::spawn_blocking(move || read_flist(&h.catalog().blob_path(&sha), &what))
                .await
                .map_err(|e| io_err("reading an flist", e))??;
        rep.flists += 1;
        rep.chunks += keys.len() as u64;
        let batches: Vec<Vec<Vec<u8>>> = keys.chunks(BATCH).map(<[_]>::to_vec).collect();
        let (source, dest) = (&source, &dest);
        let copied: Vec<(u64, u64)> = futures::stream::iter(
            batches
                .into_iter()
                .map(|batch| async move { copy_missing(source, dest, batch, true).await }),
        )
        .buffer_unordered(IN_FLIGHT)
        .try_collect()
        .await?;
        rep.copied += copied.iter().map(|c| c.0).sum::<u64>();
        rep.elsewhere += copied.iter().map(|c| c.1).sum::<u64>();
    }
    Ok(rep)
}

type FlistChunks = (Vec<Vec<u8>>, Option<Backend>, Vec<Backend>);

/// The unique chunk keys of a stored flist, its backend and its listed alternatives.
fn read_flist(path: &std::path::Path, what: &str) -> Result<FlistChunks, SyncError> {
    let file = std::fs::File::open(path).map_err(|e| io_err(what, e))?;
    let flist = Flist::from_reader(file, what).map_err(|e| io_err(what, e))?;
    let mut seen = HashSet::new();
    let mut keys = Vec::new();
    for id in flist.tree.walk() {
        if let Kind::File { blocks, .. } = &flist.tree.node(id).kind {
            for b in blocks {
                if seen.insert(*b) {
                    keys.push(b.id().to_vec());
                }
            }
        }
    }
    let backend = flist.metadata.backend().ok().flatten();
    let mirrors = flist
        .metadata
        .get(KEY_BACKEND_MIRRORS)
        .and_then(|s| serde_json::from_str::<Vec<Value>>(s).ok())
        .unwrap_or_default()
        .iter()
        .filter_map(|v| Backend::parse(&v.to_string()).ok())
        .collect();
    Ok((keys, backend, mirrors))
}
