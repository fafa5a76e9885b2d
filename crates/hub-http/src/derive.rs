//! `POST /api/flist/me/derive/<target>`: a new flist in the caller's repository made from a
//! stored flist with some files set or removed, sharing every chunk of the base.
//!
//! Body: `{"base": "repo/name.flist", "files": {"/path": "content", ...}, "remove": ["/path"]}`.

use axum::extract::{Path, State};
use axum::Json;
use bytes::Bytes;
use flist_convert::derive::{derive, Change};
use hub_repo::{inspect, names};
use serde::Deserialize;
use serde_json::{json, Value};

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
) -> ApiResult<Json<Value>> {
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
    let resolved = st.resolve(repo, name).await?;
    let path = st.hub.blob_path(&resolved.sha256);
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
    let stats = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let flist = inspect::open_flist(&path)?;
        let store = flist_store::BlockingStore::new(st2.store.clone(), handle);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
            .unwrap_or(0);
        let (derived, stats) = derive(&flist, &changes, &store, now).map_err(|e| match e {
            flist_convert::derive::DeriveError::Store(e) => ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                format!("chunk store: {e}"),
            ),
            other => ApiError::bad_request(other.to_string()),
        })?;
        crate::upload::store_flist(
            &st2,
            &actor,
            &t,
            derived,
            Some(format!("derived from {base}")),
        )?;
        Ok(stats)
    })
    .await??;
    Ok(Json(render::success(Some(json!({
        "name": target,
        "base": req.base,
        "files_set": stats.files_set,
        "removed": stats.removed,
        "chunks_written": stats.chunks_written,
        "chunks_present": stats.chunks_present,
    })))))
}
