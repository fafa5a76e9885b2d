//! The JSON API: public reads and the authenticated `/api/flist/me/...` writes.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use hub_contract::{Entry, Light, MePayload, Repository, Success, TagLink};
use hub_repo::{names, EntryKind, Hub};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::Shared;
use crate::visibility::Viewer;
use crate::{lookup, render};

/// A contract answer, serialised once (the bytes the caches keep).
fn json_bytes(v: &impl serde::Serialize) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

/// A JSON response from pre-serialised bytes.
pub fn json_response(body: Bytes) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body),
    )
        .into_response()
}

fn ok() -> Json<Success> {
    Json(Success::done())
}

/// A listing-style answer for `viewer`: computed by `f` for a reader who sees what an
/// anonymous one sees (cached per catalog generation under `key`, the fast path serves it),
/// or for this reader alone (a member of a private repository: never cached).
async fn cached_for<F>(st: &Shared, viewer: &Viewer, key: &str, f: F) -> ApiResult<Bytes>
where
    F: FnOnce(&Hub, &Viewer) -> Result<Bytes, ApiError> + Send + 'static,
{
    if viewer.sees_as_anonymous() {
        st.cached(key, move |hub| {
            // Read under the generation the cache tags the answer with.
            let private = std::sync::Arc::new(hub.catalog().private_repositories()?);
            f(hub, &Viewer::anonymous(private))
        })
        .await
    } else {
        let v = viewer.clone();
        st.blocking(move |hub| f(hub, &v)).await
    }
}

/// `GET /api/repositories`
pub async fn repositories(State(st): State<Shared>, viewer: Viewer) -> ApiResult<Response> {
    let official = st.config.official.clone();
    let body = cached_for(&st, &viewer, "repositories", move |hub, v| {
        let repos = hub.catalog().repositories()?;
        let v: Vec<Repository> = repos
            .iter()
            .filter(|r| v.sees(&r.name))
            .map(|r| Repository {
                name: r.name.clone(),
                official: official.contains(&r.name),
                updated: r.updated,
            })
            .collect();
        Ok(json_bytes(&v))
    })
    .await?;
    Ok(json_response(body))
}

/// Every repository's listing this reader may see, links it may not follow left out.
fn visible_listings(
    hub: &Hub,
    v: &Viewer,
) -> Result<std::collections::BTreeMap<String, Vec<hub_repo::Listed>>, ApiError> {
    let mut all = hub.catalog().list_all()?;
    all.retain(|repo, _| v.sees(repo));
    for items in all.values_mut() {
        *items = v.filter(std::mem::take(items));
    }
    Ok(all)
}

/// `GET /api/flist`
pub async fn all_flists(State(st): State<Shared>, viewer: Viewer) -> ApiResult<Response> {
    let body = cached_for(&st, &viewer, "flist", |hub, v| {
        if v.private().is_empty() {
            return Ok(json_bytes(&json!(hub.catalog().all_entry_names()?)));
        }
        let names: Vec<String> = visible_listings(hub, v)?
            .into_iter()
            .flat_map(|(repo, items)| {
                items
                    .into_iter()
                    .filter(|l| l.kind != hub_repo::ListedKind::Tag)
                    .map(move |l| format!("{repo}/{}", l.name))
            })
            .collect();
        Ok(json_bytes(&json!(names)))
    })
    .await?;
    Ok(json_response(body))
}

/// `GET /api/fileslist`
pub async fn fileslist(State(st): State<Shared>, viewer: Viewer) -> ApiResult<Response> {
    let body = cached_for(&st, &viewer, "fileslist", |hub, v| {
        let m: serde_json::Map<String, Value> = visible_listings(hub, v)?
            .into_iter()
            .map(|(repo, items)| (repo, serde_json::to_value(render::listing(items))))
            .map(|(repo, v)| (repo, v.unwrap_or_default()))
            .collect();
        Ok(json_bytes(&m))
    })
    .await?;
    Ok(json_response(body))
}

/// `GET /api/flist/<repo>`
pub async fn repo_listing(
    State(st): State<Shared>,
    viewer: Viewer,
    Path(repo): Path<String>,
) -> ApiResult<Response> {
    names::validate_repo(&repo)?;
    let key = hub_contract::routes::listing_key(&repo);
    let body = cached_for(&st, &viewer, &key, move |hub, v| {
        let items = hub
            .catalog()
            .list(&repo)?
            .filter(|_| v.sees(&repo))
            .ok_or_else(lookup::user_not_found)?;
        Ok(json_bytes(&render::listing(v.filter(items))))
    })
    .await?;
    Ok(json_response(body))
}

/// `GET /api/flist/<repo>/tags/<tag>`
pub async fn tag_listing(
    State(st): State<Shared>,
    viewer: Viewer,
    Path((repo, tag)): Path<(String, String)>,
) -> ApiResult<Json<Vec<Entry>>> {
    names::validate_repo(&repo)?;
    names::validate_tag(&tag)?;
    let items = st
        .blocking(move |hub| Ok(hub.catalog().tag_links(&repo, &tag)?))
        .await?;
    Ok(Json(
        viewer.filter(items).iter().map(render::listed).collect(),
    ))
}

/// The full dump of `repo/name`, from the contents cache.
async fn dump_of(st: &Shared, viewer: &Viewer, repo: String, name: String) -> ApiResult<Bytes> {
    let r = st
        .blocking(move |hub| Ok(lookup::find_flist(hub, &repo, &name)?.1))
        .await?;
    viewer.check(&r)?;
    st.contents.dump(&st.hub, &r).await
}

/// `GET /api/flist/<repo>/<name>`: the full dump.
pub async fn dump(
    State(st): State<Shared>,
    viewer: Viewer,
    Path((repo, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    Ok(json_response(dump_of(&st, &viewer, repo, name).await?))
}

/// The `/light` answer; a link's `target` is the raw link as the old hub stored it
/// (`x.flist`, or `../repo/x.flist` for a crosslink).
fn light_of(hub: &Hub, viewer: &Viewer, repo: &str, name: &str) -> Result<Light, ApiError> {
    let (e, r) = lookup::find_flist(hub, repo, name)?;
    viewer.check(&r)?;
    match &e.kind {
        EntryKind::Symlink {
            target_repo,
            target_name,
            crosslink,
        } => Ok(render::light(
            &e.name,
            &r,
            Some((
                e.linktime.unwrap_or(e.updated),
                render::raw_link(&e.repo, target_repo, target_name, *crosslink),
            )),
        )),
        _ => Ok(render::light(&e.name, &r, None)),
    }
}

/// `GET /api/flist/<repo>/<name>/light` and `INFO /api/flist/<repo>/<name>`.
pub async fn light(
    State(st): State<Shared>,
    viewer: Viewer,
    Path((repo, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (r2, n2) = (repo.clone(), name.clone());
    let v = st
        .blocking(move |hub| light_of(hub, &viewer, &r2, &n2))
        .await?;
    let v = crate::signing::annotate_light(&st, &repo, v).await;
    Ok(json_response(json_bytes(&v)))
}

/// `GET /api/flist/<repo>/<name>/taglink`
pub async fn taglink(
    State(st): State<Shared>,
    viewer: Viewer,
    Path((repo, name)): Path<(String, String)>,
) -> ApiResult<Json<TagLink>> {
    let e = st
        .blocking(move |hub| lookup::find_entry(hub, &repo, &name))
        .await?;
    match e.kind {
        EntryKind::Taglink { target_repo, tag } if viewer.sees(&target_repo) => Ok(Json(TagLink {
            target: format!("{target_repo}/tags/{tag}"),
        })),
        _ => Err(lookup::source_not_found()),
    }
}

/// `GET /api/flist/<repo>/<name>/metadata`
pub async fn metadata(
    State(st): State<Shared>,
    viewer: Viewer,
    Path((repo, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let r = st
        .blocking(move |hub| Ok(lookup::find_flist(hub, &repo, &name)?.1))
        .await?;
    viewer.check(&r)?;
    let raw = st.contents.metadata(&st.hub, &r).await?;
    Ok(Json(render::metadata(&raw, st.public_backend.as_deref())))
}

// ----- authenticated ------------------------------------------------------------------------

/// `GET /api/flist/me`: `{"status":"success","payload":{"username": <active identity>}}`, the
/// shape the reference `zflist hub` client checks before every command.
pub async fn me(Caller(actor): Caller) -> Json<Success<MePayload>> {
    Json(Success::with(MePayload {
        username: actor.active,
    }))
}

/// `GET /api/flist/me/<name>`: dump of an own entry.
pub async fn me_dump(
    State(st): State<Shared>,
    viewer: Viewer,
    Caller(actor): Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    Ok(json_response(
        dump_of(&st, &viewer, actor.active, name).await?,
    ))
}

/// `DELETE /api/flist/me/<name>`
pub async fn me_delete(
    State(st): State<Shared>,
    Caller(actor): Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Success>> {
    st.blocking(move |hub| {
        let name = lookup::entry_name(hub, &actor.active, &name)?;
        Ok(hub.catalog().delete(&actor, &actor.active, &name)?)
    })
    .await?;
    Ok(ok())
}

/// `GET|POST|PUT /api/flist/me/<source>/link/<linkname>`
pub async fn me_link(
    State(st): State<Shared>,
    Caller(actor): Caller,
    Path((source, linkname)): Path<(String, String)>,
) -> ApiResult<Json<Success>> {
    let (source, linkname) = (lookup::flist_name(&source), lookup::flist_name(&linkname));
    st.blocking(move |hub| {
        Ok(hub
            .catalog()
            .link(&actor, &actor.active, &source, &linkname)?)
    })
    .await?;
    Ok(ok())
}

/// `GET|POST|PUT /api/flist/me/<linkname>/crosslink/<repo>/<source>`
pub async fn me_crosslink(
    State(st): State<Shared>,
    Caller(actor): Caller,
    Path((linkname, repo, source)): Path<(String, String, String)>,
) -> ApiResult<Json<Success>> {
    let (linkname, source) = (lookup::flist_name(&linkname), lookup::flist_name(&source));
    st.blocking(move |hub| {
        Ok(hub
            .catalog()
            .crosslink(&actor, &actor.active, &linkname, &repo, &source)?)
    })
    .await?;
    Ok(ok())
}

/// `GET|POST|PUT /api/flist/me/<source>/rename/<destination>`
pub async fn me_rename(
    State(st): State<Shared>,
    Caller(actor): Caller,
    Path((source, dest)): Path<(String, String)>,
) -> ApiResult<Json<Success>> {
    st.blocking(move |hub| {
        let source = lookup::entry_name(hub, &actor.active, &source)?;
        // a flist keeps a .flist name; a taglink's new name stays as given
        let dest = if source.ends_with(".flist") {
            lookup::flist_name(&dest)
        } else {
            dest
        };
        Ok(hub
            .catalog()
            .rename(&actor, &actor.active, &source, &dest)?)
    })
    .await?;
    Ok(ok())
}

/// `GET|POST|PUT /api/flist/me/promote/<srcrepo>/<srcname>/<localname>`
pub async fn me_promote(
    State(st): State<Shared>,
    Caller(actor): Caller,
    Path((src_repo, src_name, local)): Path<(String, String, String)>,
) -> ApiResult<Json<Success>> {
    let (src_name, local) = (lookup::flist_name(&src_name), lookup::flist_name(&local));
    let (sr, sn, l) = (src_repo.clone(), src_name.clone(), local.clone());
    let who = actor.active.clone();
    st.blocking(move |hub| Ok(hub.catalog().promote(&actor, &actor.active, &sr, &sn, &l)?))
        .await?;
    Ok(Json(render::success(Some(json!({
        "source": {"username": src_repo, "filename": src_name},
        "destination": {"username": who, "filename": local},
    })))))
}

/// `GET|POST|PUT /api/flist/me/<tag>/<linkname>/tag/<repo>/<source>`
pub async fn me_tag_add(
    State(st): State<Shared>,
    Caller(actor): Caller,
    Path((tag, linkname, repo, source)): Path<(String, String, String, String)>,
) -> ApiResult<Json<Success>> {
    let (linkname, source) = (lookup::flist_name(&linkname), lookup::flist_name(&source));
    st.blocking(move |hub| {
        Ok(hub
            .catalog()
            .tag_add(&actor, &actor.active, &tag, &linkname, &repo, &source)?)
    })
    .await?;
    Ok(ok())
}

/// `DELETE /api/flist/me/<tag>/<linkname>/tag/<repo>/<source>`
pub async fn me_tag_remove(
    State(st): State<Shared>,
    Caller(actor): Caller,
    Path((tag, linkname, repo, source)): Path<(String, String, String, String)>,
) -> ApiResult<Json<Success>> {
    let (linkname, source) = (lookup::flist_name(&linkname), lookup::flist_name(&source));
    st.blocking(move |hub| {
        Ok(hub
            .catalog()
            .tag_remove(&actor, &actor.active, &tag, &linkname, &repo, &source)?)
    })
    .await?;
    Ok(ok())
}

/// `GET|POST|PUT /api/flist/me/<name>/crosstag/<repo>/<tag>`
pub async fn me_crosstag(
    State(st): State<Shared>,
    Caller(actor): Caller,
    Path((name, repo, tag)): Path<(String, String, String)>,
) -> ApiResult<Json<Success>> {
    st.blocking(move |hub| {
        Ok(hub
            .catalog()
            .crosstag(&actor, &actor.active, &name, &repo, &tag)?)
    })
    .await?;
    Ok(ok())
}

/// `DELETE /api/flist/me/<name>/crosstag/<repo>/<tag>`
pub async fn me_crosstag_remove(
    State(st): State<Shared>,
    Caller(actor): Caller,
    Path((name, repo, tag)): Path<(String, String, String)>,
) -> ApiResult<Json<Success>> {
    st.blocking(move |hub| {
        Ok(hub
            .catalog()
            .crosstag_remove(&actor, &actor.active, &name, &repo, &tag)?)
    })
    .await?;
    Ok(ok())
}

/// `POST /api/flist/me/merge/<target>` with a JSON array of `"repo/name.flist"`.
pub async fn me_merge(
    State(st): State<Shared>,
    Caller(actor): Caller,
    Path(target): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Success>> {
    let list: Vec<String> = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("expected a JSON array of \"repo/name.flist\": {e}"))
    })?;
    let target = lookup::flist_name(&target);
    let shown = crate::merge::merge(&st, &actor, &target, &list).await?;
    Ok(Json(render::success(Some(
        json!({"name": target, "sources": shown}),
    ))))
}
