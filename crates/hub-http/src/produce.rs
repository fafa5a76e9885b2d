//! What every route that makes an flist shares (archive upload, image conversion, merge,
//! derive, homemade flists): the conversion slots, cancellation when the request ends
//! early, the converter's limits, and storing a converted tree.
//!
//! The tree is never held in memory: converters stage it on disk, it is written as an flist
//! in the hub's temp area one directory at a time, and the catalog indexes the file the
//! same way ([`hub_repo::Catalog::store_file_checked`]).
//!
//! A request that times out or whose client goes away has its handler future dropped: the
//! [`CancelOnDrop`] it holds then raises the work's [`Cancel`] flag, the converter stops at
//! its next check, and the catalog records nothing (the flag is asked again inside the
//! write transaction).

use axum::http::StatusCode;
use flist_convert::{Cancel, ConvertError, ConvertOptions, Converted, Limits};
use hub_repo::Actor;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::jobs::JobHandle;
use crate::state::Shared;

/// Raises its [`Cancel`] flag when dropped, unless [`CancelOnDrop::disarm`]ed: a handler
/// future dropped before the end (timeout, client gone) cancels the work it started.
pub(crate) struct CancelOnDrop(Option<Cancel>);

impl CancelOnDrop {
    /// A guard over a fresh flag (also returned, for the work).
    pub(crate) fn new() -> (Self, Cancel) {
        let c = Cancel::new();
        (CancelOnDrop(Some(c.clone())), c)
    }

    /// The work ended: dropping the guard no longer cancels anything.
    pub(crate) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            tracing::info!("request ended before its work: cancelled");
            c.cancel();
        }
    }
}

/// Converter options with the hub's limits and `cancel`.
pub(crate) fn convert_options(st: &Shared, cancel: &Cancel) -> ConvertOptions {
    ConvertOptions {
        limits: Limits {
            max_entries: st.config.limits.max_entries,
            ..Limits::default()
        },
        cancel: Some(cancel.clone()),
        ..ConvertOptions::default()
    }
}

/// The answer for a conversion failure: input problems are 400 naming what is wrong;
/// store and server failures say which component failed, without server paths or
/// addresses (the log has them).
pub(crate) fn convert_error(e: ConvertError) -> ApiError {
    refused("archive refused", e)
}

/// [`convert_error`] for any producer: a refused input's message starts with `what`.
pub(crate) fn refused(what: &str, e: ConvertError) -> ApiError {
    match e {
        ConvertError::Store { ref source, .. } if crate::error::store_is_full(source) => {
            ApiError::storage_full("chunk store", e)
        }
        ConvertError::Store { .. } | ConvertError::MissingChunk { .. } => {
            tracing::warn!("conversion: {e}");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "chunk store: the hub could not store the chunks; try again later",
            )
        }
        ConvertError::Cancelled => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "cancelled: the request ended before the conversion; nothing was stored",
        ),
        ConvertError::Internal(_) | ConvertError::Io { .. } | ConvertError::Destination { .. } => {
            ApiError::internal(e)
        }
        other => ApiError::bad_request(format!("{what}: {other}")),
    }
}

/// Takes one of `slots` for `job`'s conversion: at once when one is free, else after
/// saying in the job that it waits (the queue is the semaphore's, first come first served).
pub(crate) async fn slot(
    slots: &std::sync::Arc<tokio::sync::Semaphore>,
    job: &JobHandle,
) -> ApiResult<tokio::sync::OwnedSemaphorePermit> {
    match slots.clone().try_acquire_owned() {
        Ok(p) => Ok(p),
        Err(_) => {
            job.progress_async(0, "queued: waiting for a conversion slot".into())
                .await;
            slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| ApiError::internal("conversion limiter closed"))
        }
    }
}

/// What to record with a stored flist.
pub(crate) struct Record<'a> {
    /// Audit action (`upload`, `merge` ...).
    pub action: &'a str,
    /// Where it came from.
    pub source: Option<String>,
    /// Extra audit detail.
    pub detail: Value,
}

/// Writes `converted` as an flist stamped with the hub's public backend in the hub's temp
/// area, and stores it as `actor.active/name` unless `cancel` was raised (blocking).
pub(crate) fn store_converted(
    st: &Shared,
    actor: &Actor,
    name: &str,
    mut converted: Converted,
    record: Record<'_>,
    cancel: &Cancel,
) -> Result<(), ApiError> {
    stamp(st, &mut converted.metadata);
    let out = st.hub.catalog().temp_path(".flist");
    if let Err(e) = converted.write_flist(&out) {
        let _ = std::fs::remove_file(&out);
        return Err(write_failed(e));
    }
    drop(converted);
    store_written(st, actor, name, &out, record, cancel)
}

/// [`store_converted`] for a tree in memory (an uploaded `.fl` made `.flist`).
pub(crate) fn store_flist(
    st: &Shared,
    actor: &Actor,
    name: &str,
    mut flist: flist_format::Flist,
    record: Record<'_>,
    cancel: &Cancel,
) -> Result<(), ApiError> {
    stamp(st, &mut flist.metadata);
    let out = st.hub.catalog().temp_path(".flist");
    if let Err(e) = flist.write(&out) {
        let _ = std::fs::remove_file(&out);
        return Err(write_failed(ConvertError::from(e)));
    }
    drop(flist);
    store_written(st, actor, name, &out, record, cancel)
}

/// Sets the hub's public backend as the flist's `backend` (removed when there is none).
fn stamp(st: &Shared, metadata: &mut flist_format::Metadata) {
    match &st.public_backend {
        Some(b) => metadata.set("backend", b.clone()),
        None => {
            metadata.remove("backend");
        }
    }
}

/// Stores the flist written at `out` as `actor.active/name` unless `cancel` was raised.
fn store_written(
    st: &Shared,
    actor: &Actor,
    name: &str,
    out: &std::path::Path,
    record: Record<'_>,
    cancel: &Cancel,
) -> Result<(), ApiError> {
    st.hub.catalog().store_file_checked(
        actor,
        record.action,
        &actor.active,
        name,
        out,
        record.source,
        record.detail,
        &|| !cancel.is_cancelled(),
    )?;
    Ok(())
}

/// The answer when writing a converted flist into the hub's temp area fails: a full disk
/// is 507 naming the storage, anything else a server error (details in the log).
fn write_failed(e: ConvertError) -> ApiError {
    let full = match &e {
        ConvertError::Io { source, .. } => hub_repo::io_is_full(source),
        ConvertError::Flist(m) => m.contains("disk is full") || m.contains("No space left"),
        _ => false,
    };
    match e {
        ConvertError::Cancelled => convert_error(e),
        e if full => ApiError::storage_full("flist storage", e),
        e => ApiError::internal(format!("writing the flist: {e}")),
    }
}
