//! `POST /api/flist/me/derive/<target>`: a new flist in the caller's repository made from a
//! stored flist with some files set or removed, sharing every chunk of the base.
//!
//! Body: `{"base": "repo/name.flist", "files": {"/path": "content", ...}, "remove": ["/path"]}`.

use axum::extract::{Path, State};
use axum::Json;
use bytes::Bytes;
use flist_convert::derive::{derive, Change, DeriveError};
use hub_repo::names;
use serde::Deserialize;
use serde_json::json;

use hub_contract::Success;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::render;
use crate::state::Shared;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeriveBody {
    base: String,
    #[serde(default)]
    files: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    remove: Vec<String>,
}

/// `POST /api/flist/me/derive/<target>`
pub async fn me_derive(
    State(st): State<Shared>,
    Caller(actor): Caller,
    Path(target): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Success>> {
    actor.check_write(&actor.active)?;
    names::validate_flist(&target)?;
    let req: DeriveBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"base\": \"repo/name.flist\", \"files\": {{\"/path\": \"content\"}}, \"remove\": [\"/path\"]}}: {e}"
        ))
    })?;
    if req.files.is_empty() && req.remove.is_empty() {
        return Err(ApiError::bad_request(
            "nothing to change: give files or remove",
        ));
    }
    let (repo, name) = req.base.split_once('/').ok_or_else(|| {
        ApiError::bad_request(format!("base {:?} is not repo/name.flist", req.base))
    })?;
    names::validate_repo(repo)?;
    names::validate_flist(name)?;
    let viewer = crate::visibility::Viewer::of_actor(&st, &actor).await?;
    let resolved = st.resolve_for(&viewer, repo, name).await?;
    let path = st.hub.catalog().blob_path(&resolved.sha256);
    let mut changes: Vec<Change> = req
        .remove
        .iter()
        .map(|p| Change::Remove { path: p.clone() })
        .collect();
    changes.extend(req.files.iter().map(|(p, c)| Change::Set {
        path: p.clone(),
        content: c.as_bytes().to_vec(),
    }));
    let handle = tokio::runtime::Handle::current();
    let (st2, base) = (st.clone(), req.base.clone());
    let t = target.clone();
    // Dropped with this future (timeout, client gone): the work stops, nothing is stored.
    let (guard, cancel) = crate::produce::CancelOnDrop::new();
    let stats = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let store = flist_store::BlockingStore::new(st2.store.clone(), handle);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
            .unwrap_or(0);
        let opts = crate::produce::convert_options(&st2, &cancel);
        let input = flist_convert::merge::Input {
            path: &path,
            what: &base,
        };
        let (derived, stats) = derive(
            input,
            &flist_format::ReadOptions {
                temp_dir: Some(st2.hub.catalog().tmp_dir().to_path_buf()),
                ..Default::default()
            },
            &changes,
            &store,
            now,
            &opts,
        )
        .map_err(|e| match e {
            DeriveError::Store(e) => {
                tracing::warn!("derive: chunk store: {e}");
                ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "chunk store: the hub could not store the chunks; try again later",
                )
            }
            DeriveError::Convert(e) => crate::produce::refused("derive", e),
            other => ApiError::bad_request(other.to_string()),
        })?;
        let record = crate::produce::Record {
            action: "upload",
            source: Some(format!("derived from {base}")),
            detail: json!({}),
        };
        crate::produce::store_converted(&st2, &actor, &t, derived, record, &cancel)?;
        Ok(stats)
    })
    .await??;
    guard.disarm();
    Ok(Json(render::success(Some(json!({
        "name": target,
        "base": req.base,
        "files_set": stats.files_set,
        "removed": stats.removed,
        "chunks_written": stats.chunks_written,
        "chunks_present": stats.chunks_present,
    })))))
}
