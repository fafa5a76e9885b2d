//! Uploads: archives converted to flists, homemade flists checked against the store.
//!
//! The multipart body is never held in memory: its chunks flow through a bounded channel
//! into a blocking reader that feeds the converter (or the staging file).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::multipart::{Field, MultipartError};
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use bytes::Bytes;
use flist_convert::{ChannelReader, ProgressReport, Source};
use hub_repo::{inspect, names, Actor};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use hub_contract::{AuthorSignature, Published, Success};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::jobs::JobHandle;
use crate::produce;
use crate::render;
use crate::state::Shared;

/// Largest number of keys per `exists_many` batch.
const EXISTS_BATCH: usize = 1000;

fn multipart_error(e: MultipartError) -> ApiError {
    let status = e.status();
    let status =
        if status == StatusCode::PAYLOAD_TOO_LARGE || e.body_text().contains("length limit") {
            StatusCode::PAYLOAD_TOO_LARGE
        } else if status.is_server_error() {
            StatusCode::BAD_REQUEST
        } else {
            status
        };
    ApiError::new(status, format!("upload: {}", e.body_text()))
}

/// Largest piece of an upload queued for its consumer (the queue holds 16).
const PIECE: usize = 64 * 1024;

/// Streams one multipart field into `tx`; returns the upload-side error, if any.
async fn pump(
    field: &mut Field<'_>,
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Option<ApiError> {
    loop {
        match field.chunk().await {
            Ok(Some(b)) => {
                // Sent as copies of at most `PIECE` bytes: a chunk shares the multipart
                // reader's whole buffer, so queued chunks would each hold one such buffer
                // (megabytes, growing with how far ahead the client was: #24's memory
                // that grew with the archive).
                for piece in b.chunks(PIECE) {
                    if tx.send(Ok(Bytes::copy_from_slice(piece))).await.is_err() {
                        return None; // the consumer stopped (it reports its own error)
                    }
                }
            }
            Ok(None) => return None,
            Err(e) => {
                let err = multipart_error(e);
                let _ = tx
                    .send(Err(std::io::Error::other(err.message.clone())))
                    .await;
                return Some(err);
            }
        }
    }
}

/// `foo.tar.gz` → `foo.flist`, validated.
pub fn flist_name_for(original: &str) -> Result<String, ApiError> {
    let base = original.rsplit(['/', '\\']).next().unwrap_or(original);
    let mut stem = base.to_string();
    for ext in [
        ".tar.gz", ".tgz", ".tar.zst", ".tar.xz", ".tar.bz2", ".tar", ".gz", ".flist",
    ] {
        if stem.len() > ext.len() && stem.to_ascii_lowercase().ends_with(ext) {
            stem.truncate(stem.len() - ext.len());
            break;
        }
    }
    let name = format!("{stem}.flist");
    names::validate_flist(&name)?;
    Ok(name)
}

fn original_name(headers: &HeaderMap, field_name: Option<&str>) -> Option<String> {
    headers
        .get("x-original-name")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .filter(|s| !s.is_empty())
        .or_else(|| field_name.map(str::to_string))
}

/// An upload that holds no entry at all (a zero-byte or empty archive) never replaces
/// anything: 400.
fn refuse_empty(empty: bool, what: &str) -> ApiResult<()> {
    if empty {
        return Err(ApiError::bad_request(format!(
            "{what} holds no entries (empty or zero-byte upload): nothing was stored"
        )));
    }
    Ok(())
}

/// Fails its job when dropped armed (the client went away and the handler was cancelled).
struct JobGuard(Option<JobHandle>);

impl Drop for JobGuard {
    fn drop(&mut self) {
        if let (Some(job), Ok(rt)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn_blocking(move || job.fail("upload interrupted: the client went away"));
        }
    }
}

/// `POST /api/flist/me/upload`: a `.tar.gz` (or other tar) in field `file` becomes an flist,
/// followed as a job (`payload.job`, `/listen/<id>`).
pub async fn upload(
    State(st): State<Shared>,
    Caller(actor): Caller,
    headers: HeaderMap,
    multipart: Multipart,
) -> ApiResult<Json<Success>> {
    actor.check_write(&actor.active)?;
    let job = st.jobs.start("upload", &actor.user).await?;
    let payload = upload_with_job(&st, &actor, &headers, multipart, job, false).await?;
    Ok(Json(render::success(Some(payload))))
}

/// Runs an archive upload as `job` (started by the caller); returns the API payload.
///
/// Fields before `file`: `name` (the flist's name; default the archive's), and with
/// `ask_before_replacing` (the web form) `replace=yes`, without which an existing flist of
/// that name is not replaced (409, nothing read or stored).
pub(crate) async fn upload_with_job(
    st: &Shared,
    actor: &Actor,
    headers: &HeaderMap,
    multipart: Multipart,
    job: JobHandle,
    ask_before_replacing: bool,
) -> ApiResult<Value> {
    let mut guard = JobGuard(Some(job.clone()));
    let result = upload_inner(st, actor, headers, multipart, &job, ask_before_replacing).await;
    guard.0 = None;
    match result {
        Ok((payload, info)) => {
            job.finish_async(info).await;
            Ok(payload)
        }
        Err(e) => {
            job.fail_async(e.message.clone()).await;
            Err(e)
        }
    }
}

async fn upload_inner(
    st: &Shared,
    actor: &Actor,
    headers: &HeaderMap,
    mut multipart: Multipart,
    job: &JobHandle,
    ask_before_replacing: bool,
) -> ApiResult<(Value, Value)> {
    let total = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut user_md: Vec<(String, String)> = Vec::new();
    let mut conversion = None;
    let mut name = None;
    let mut upload_err = None;
    let mut permit = None;
    let mut chosen: Option<String> = None;
    let mut replace = false;
    // Dropped with this future (timeout, client gone): the conversion stops, nothing is
    // stored.
    let (guard, cancel) = produce::CancelOnDrop::new();
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let fname = field.name().unwrap_or_default().to_string();
        if let Some(key) = fname.strip_prefix("metadata-") {
            let value = field.text().await.map_err(multipart_error)?;
            user_md.push((key.to_string(), value));
        } else if fname == "name" && conversion.is_none() {
            let v = field.text().await.map_err(multipart_error)?;
            let v = v.trim();
            if !v.is_empty() {
                chosen = Some(flist_name_for(v)?);
            }
        } else if fname == "replace" && conversion.is_none() {
            replace = field.text().await.map_err(multipart_error)? == "yes";
        } else if fname == "file" && conversion.is_none() {
            let from_file = match &chosen {
                Some(n) => Some(Ok(n.clone())),
                None => original_name(headers, field.file_name()).map(|o| flist_name_for(&o)),
            };
            let n = match from_file {
                Some(Ok(n)) => n,
                Some(Err(e)) => {
                    return Err(e);
                }
                None => {
                    return Err(ApiError::bad_request(
                        "the file has no name: send a filename or X-Original-Name",
                    ));
                }
            };
            if ask_before_replacing && !replace {
                let (repo, n2) = (actor.active.clone(), n.clone());
                let exists = st
                    .blocking(move |hub| Ok(hub.catalog().entry(&repo, &n2)?.is_some()))
                    .await?;
                if exists {
                    return Err(ApiError::new(
                        axum::http::StatusCode::CONFLICT,
                        format!(
                            "{} already holds {n}: tick “replace it” to upload it anyway, or \
                             give another name",
                            actor.active
                        ),
                    ));
                }
            }
            name = Some(n);
            // Conversions run a few at a time; the others wait here, their job saying so
            // (the client's body waits too, which the body-rate guard allows).
            permit = Some(produce::slot(&st.conversion_slots, job).await?);
            job.progress_async(0, "converting".into()).await;
            let (tx, rx) = mpsc::channel(16);
            let reader = ChannelReader::new(rx);
            let store = flist_store::BlockingStore::new(
                st.store.clone(),
                tokio::runtime::Handle::current(),
            );
            let job2 = job.clone();
            let last = Mutex::new(Instant::now());
            let mut opts = produce::convert_options(st, &cancel);
            opts.progress = Some(Arc::new(move |r: &ProgressReport| {
                let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
                if last.elapsed().as_millis() < 500 {
                    return;
                }
                *last = Instant::now();
                let pct = total
                    .map(|t| (r.bytes_read.saturating_mul(90) / t.max(1)).min(90) as u8)
                    .unwrap_or(0);
                job2.progress(
                    pct,
                    &format!("{} entries, {} new chunks", r.entries, r.chunks_new),
                );
            }));
            let handle = tokio::task::spawn_blocking(move || {
                flist_convert::convert(Source::archive(reader), Some(&store), &opts)
            });
            upload_err = pump(&mut field, &tx).await;
            drop(tx);
            conversion = Some(handle);
        }
        // other fields are ignored
    }
    let (Some(handle), Some(name)) = (conversion, name) else {
        return Err(ApiError::bad_request("multipart field `file` is required"));
    };
    let converted = handle.await;
    if let Some(e) = upload_err {
        return Err(e);
    }
    let mut converted = converted?.map_err(produce::convert_error)?;
    refuse_empty(converted.is_empty(), "the archive")?;
    job.progress_async(95, "storing flist".into()).await;
    for (k, v) in user_md {
        if k != "backend" && !k.is_empty() {
            converted.metadata.set(k, v);
        }
    }
    let s = &converted.stats;
    let files = json!({
        "regular": s.files, "directory": s.directories, "symlink": s.symlinks, "special": s.specials,
        "fullsize": s.bytes, "chunks_written": s.chunks_written, "chunks_present": s.chunks_present,
        "warnings": s.warnings.iter().map(|w| json!({"message": w.message, "count": w.count})).collect::<Vec<_>>(),
    });
    let source =
        original_name(headers, None).or_else(|| Some(name.trim_end_matches(".flist").to_string()));
    let (st2, actor2, name2) = (st.clone(), actor.clone(), name.clone());
    let record = produce::Record {
        action: "upload",
        source,
        detail: json!({}),
    };
    let c2 = cancel.clone();
    tokio::task::spawn_blocking(move || {
        produce::store_converted(&st2, &actor2, &name2, converted, record, &c2)
    })
    .await??;
    drop(permit);
    guard.disarm();
    let payload = json!({"name": name, "files": files, "job": job.id});
    let info = json!({"name": name, "files": files, "repository": actor.active});
    Ok((payload, info))
}

/// `POST /api/flist/me/upload-flist`: a homemade `.flist`, accepted only when every chunk it
/// references is in the hub's store; stored with the hub's public backend. With an author
/// signature (multipart field `signature`) the file is checked against it and stored byte
/// for byte (see [`crate::author_sig`]).
pub async fn upload_flist(
    State(st): State<Shared>,
    Caller(actor): Caller,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> ApiResult<Json<Success<Published>>> {
    actor.check_write(&actor.active)?;
    let mut staged = None;
    let mut name = None;
    let mut signature: Option<Bytes> = None;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        if field.name() == Some("signature") && signature.is_none() {
            let mut doc = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                doc.extend_from_slice(&chunk);
                if doc.len() > crate::author_sig::MAX_DOC {
                    return Err(ApiError::bad_request(format!(
                        "author signature: larger than {} bytes: not a signature document",
                        crate::author_sig::MAX_DOC
                    )));
                }
            }
            signature = Some(Bytes::from(doc));
            continue;
        }
        if field.name() != Some("file") || staged.is_some() {
            continue;
        }
        let n = original_name(&headers, field.file_name()).ok_or_else(|| {
            ApiError::bad_request("the file has no name: send a filename or X-Original-Name")
        })?;
        let n = n.rsplit(['/', '\\']).next().unwrap_or(&n).to_string();
        // An rfs `.fl` is stored as the entry `<name>.flist` (see `crate::formats`).
        let n = crate::formats::flist_name_of(&n);
        names::validate_flist(&n)?;
        name = Some(n);
        let (tx, rx) = mpsc::channel(16);
        let hub = st.hub.clone();
        let handle =
            tokio::task::spawn_blocking(move || hub.catalog().stage_reader(ChannelReader::new(rx)));
        let err = pump(&mut field, &tx).await;
        drop(tx);
        let res = handle.await?;
        if let Some(e) = err {
            return Err(e);
        }
        staged = Some(res?);
    }
    let (Some(staged), Some(name)) = (staged, name) else {
        return Err(ApiError::bad_request("multipart field `file` is required"));
    };
    let path = staged.path().to_path_buf();
    if tokio::task::spawn_blocking(move || crate::formats::is_fl(&path)).await? {
        return upload_fl(&st, &actor, name, staged, signature.is_some()).await;
    }
    let read = flist_format::ReadOptions {
        max_database_bytes: st.config.limits.max_flist_database_bytes,
        temp_dir: Some(st.hub.catalog().tmp_dir().to_path_buf()),
    };
    // An author signature binds these exact bytes: checked before anything else is.
    let author = match &signature {
        Some(doc) => Some(crate::author_sig::check(
            doc,
            &actor.active,
            &name,
            &staged.sha256,
        )?),
        None => None,
    };
    // Read one directory row at a time into a tree staged on disk (checked: every directory
    // reached once, valid names, bounded entries), and every distinct chunk key checked
    // against the store in batches: memory does not grow with the flist.
    let (guard, cancel) = produce::CancelOnDrop::new();
    let opts = produce::convert_options(&st, &cancel);
    let store =
        flist_store::BlockingStore::new(st.store.clone(), tokio::runtime::Handle::current());
    let what = name.clone();
    let (converted, staged, keys, missing) = tokio::task::spawn_blocking(move || {
        let input = flist_convert::merge::Input {
            path: staged.path(),
            what: &what,
        };
        let c = flist_convert::merge::rewrite(input, &read, &opts)
            .map_err(|e| client_flist_error(&what, e))?;
        let mut missing = Missing::default();
        let keys = c
            .chunk_keys(EXISTS_BATCH, |batch| {
                let keys: Vec<Vec<u8>> = batch.iter().map(|k| k.to_vec()).collect();
                let present = store.exists_many(&keys).map_err(|source| {
                    flist_convert::ConvertError::Store {
                        store: store.to_string(),
                        source,
                    }
                })?;
                for (k, p) in batch.iter().zip(present) {
                    if !p {
                        missing.add(k);
                    }
                }
                Ok(())
            })
            .map_err(|e| client_flist_error(&what, e))?;
        Ok::<_, ApiError>((c, staged, keys, missing))
    })
    .await??;
    if author.is_some() {
        crate::author_sig::check_backend(
            converted.metadata.get("backend"),
            st.public_backend.as_deref(),
        )?;
    }
    if missing.count > 0 {
        return Err(ApiError::bad_request(format!(
            "{} of {} chunks are missing from the hub's backend (e.g. {})",
            missing.count,
            keys,
            missing.sample.join(", ")
        )));
    }
    refuse_empty(converted.is_empty(), "the flist")?;
    let s = &converted.stats;
    let files = json!({
        "regular": s.files, "symlink": s.symlinks, "directory": s.directories,
        "special": s.specials, "fullsize": s.bytes, "chunks": keys, "missing": 0,
    });
    let (st2, actor2, name2) = (st.clone(), actor.clone(), name.clone());
    let author_key = author.as_ref().map(|d| d.key.clone());
    let c2 = cancel.clone();
    tokio::task::spawn_blocking(move || -> ApiResult<()> {
        let source = Some("upload-flist".to_string());
        match author {
            None => {
                let record = produce::Record {
                    action: "upload",
                    source,
                    detail: json!({}),
                };
                produce::store_converted(&st2, &actor2, &name2, converted, record, &c2)
            }
            Some(doc) => {
                // Kept before the entry points at the file, so a served signed flist always
                // has its signature.
                crate::author_sig::save(&st2.config.data_dir, &staged.sha256, &doc).map_err(
                    |e| ApiError::internal(format!("keeping the author signature: {e}")),
                )?;
                let info = hub_repo::FlistInfo {
                    source,
                    metadata: Some(inspect::metadata_json(&converted.metadata)),
                    dump: None,
                };
                drop(converted);
                st2.hub.catalog().put_flist_checked(
                    &actor2,
                    "upload",
                    &actor2.active,
                    &name2,
                    staged,
                    info,
                    json!({}),
                    &|| !c2.is_cancelled(),
                )?;
                Ok(())
            }
        }
    })
    .await??;
    guard.disarm();
    Ok(Json(Success::with(Published {
        name,
        files: Some(files),
        job: None,
        author_signature: author_key.map(|key| AuthorSignature {
            key,
            signature: None,
        }),
    })))
}

/// The rfs `.fl` side of `upload-flist`: every block it references must be in the hub's
/// store (400 listing the missing ids otherwise); it is then re-encoded and stored as the
/// hub's `.flist` entry `name`, so every route serves it (and `GET .fl` gives it back in
/// its own format). Nothing is stored for a refused upload.
async fn upload_fl(
    st: &Shared,
    actor: &Actor,
    name: String,
    staged: hub_repo::StagedFlist,
    signed: bool,
) -> ApiResult<Json<Success<Published>>> {
    if signed {
        return Err(ApiError::bad_request(
            "an author signature binds the bytes of an .flist; an .fl is converted on upload: \
             send it without a signature (or sign the .flist made by `zflist convert`)",
        ));
    }
    let (guard, cancel) = produce::CancelOnDrop::new();
    let (st2, what) = (st.clone(), name.clone());
    let handle = tokio::runtime::Handle::current();
    let (flist, blocks) = tokio::task::spawn_blocking(move || {
        let r = crate::formats::fl_to_flist(&st2, staged.path(), &what, handle);
        drop(staged);
        r
    })
    .await??;
    let s = flist.tree.stats();
    refuse_empty(
        s.regular + s.symlink + s.directory + s.special == 0,
        "the flist",
    )?;
    let files = json!({
        "regular": s.regular, "symlink": s.symlink, "directory": s.directory,
        "special": s.special, "fullsize": s.fullsize, "chunks": blocks, "missing": 0,
        "format": "fl",
    });
    let (st2, actor2, name2) = (st.clone(), actor.clone(), name.clone());
    let c2 = cancel.clone();
    tokio::task::spawn_blocking(move || {
        let record = produce::Record {
            action: "upload",
            source: Some("upload-flist (.fl)".to_string()),
            detail: json!({"format": "fl"}),
        };
        produce::store_flist(&st2, &actor2, &name2, flist, record, &c2)
    })
    .await??;
    guard.disarm();
    Ok(Json(Success::with(Published {
        name,
        files: Some(files),
        job: None,
        author_signature: None,
    })))
}

/// Chunks an uploaded flist references that the store lacks: how many, and a few.
#[derive(Default)]
struct Missing {
    count: u64,
    sample: Vec<String>,
}

impl Missing {
    fn add(&mut self, key: &[u8]) {
        self.count += 1;
        if self.sample.len() < 5 {
            self.sample.push(hex::encode(key));
        }
    }
}

/// The answer for an uploaded flist that cannot be taken: named by its upload name, never
/// by a server path.
fn client_flist_error(what: &str, e: flist_convert::ConvertError) -> ApiError {
    use flist_convert::{ConvertError, LimitKind};
    match e {
        ConvertError::Limit {
            what: LimitKind::DatabaseSize,
            limit,
            ..
        } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{what}: the flist database inflates beyond the hub's limit of {limit} bytes"),
        ),
        ConvertError::Limit {
            what: LimitKind::Entries,
            limit,
            ..
        } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{what}: more than the hub's limit of {limit} entries"),
        ),
        ConvertError::Flist(m) => {
            let prefix = format!("{what}: ");
            let m = m.strip_prefix(&prefix).unwrap_or(&m);
            ApiError::bad_request(if m.starts_with("not an flist") {
                format!("{what}: {m}")
            } else {
                format!("{what} is not a readable flist: {m}")
            })
        }
        other => produce::convert_error(other),
    }
}
