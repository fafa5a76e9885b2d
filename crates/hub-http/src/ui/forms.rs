//! Upload, upload-flist, merge and docker pages and their POST handlers.
//!
//! Without JS the upload forms POST the file and land on the new flist's page (303) or on
//! the form with the error in words. With JS, the page first asks for a job id
//! (`POST /upload/job`), sends the file with a progress bar for the bytes, follows the job's
//! events (`/listen/<id>`), then opens the new flist's page.

use std::time::{Duration, Instant};

use axum::extract::{Multipart, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use hub_repo::{names, ListedKind};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{check_same_origin, redirect_with, seg, Ctx};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::lookup;
use crate::state::Shared;

/// How long a job created by the upload page waits for its file.
const PENDING_TTL: Duration = Duration::from_secs(600);

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

fn storage_hint(st: &Shared) -> String {
    let b = st
        .public_backend
        .as_deref()
        .and_then(|b| serde_json::from_str::<Value>(b).ok());
    let host = b
        .as_ref()
        .and_then(|b| b.get("host"))
        .and_then(Value::as_str)
        .map(str::to_string);
    match host {
        Some(h) => {
            let port = b
                .as_ref()
                .and_then(|b| b.get("port"))
                .map(|p| p.to_string().trim_matches('"').to_string())
                .unwrap_or_else(|| "9900".into());
            format!("zdb://{h}:{port}")
        }
        None => "the hub's chunk store".into(),
    }
}

/// `GET /upload`
pub async fn upload_page(ctx: Ctx) -> Response {
    let acting = match ctx.require() {
        Ok(a) => a.active.clone(),
        Err(r) => return r,
    };
    ctx.render(
        "upload.html",
        "Upload an archive",
        json!({"mode": "archive", "acting": acting, "action": "/upload",
               "accept": ".tar.gz,.tgz,.tar,.tar.zst,.tar.xz,.tar.bz2"}),
    )
}

/// `GET /upload-flist`
pub async fn upload_flist_page(State(st): State<Shared>, ctx: Ctx) -> Response {
    let acting = match ctx.require() {
        Ok(a) => a.active.clone(),
        Err(r) => return r,
    };
    ctx.render(
        "upload.html",
        "Upload an flist",
        json!({"mode": "flist", "acting": acting, "action": "/upload-flist", "accept": ".flist",
               "storage": storage_hint(&st)}),
    )
}

/// `POST /upload/job`: a job for the upload the page is about to send.
pub async fn upload_job(
    State(st): State<Shared>,
    Caller(actor): Caller,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    check_same_origin(&headers)?;
    actor.check_write(&actor.active)?;
    let job = st.jobs.start("upload", &actor.user).await?;
    let id = job.id.clone();
    let stale: Vec<_> = {
        let mut m = st
            .web
            .pending_uploads
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let old: Vec<String> = m
            .iter()
            .filter(|(_, (_, _, t))| t.elapsed() > PENDING_TTL)
            .map(|(k, _)| k.clone())
            .collect();
        let stale = old.iter().filter_map(|k| m.remove(k)).collect();
        m.insert(id.clone(), (job, actor.user.clone(), Instant::now()));
        stale
    };
    for (job, _, _) in stale {
        job.fail_async("the upload never arrived".into()).await;
    }
    Ok(Json(json!({"job": id})))
}

/// Query of the upload POST.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct UploadQuery {
    job: Option<String>,
}

fn upload_answer(
    ctx: &Ctx,
    headers: &HeaderMap,
    mode: &str,
    result: Result<(String, String), ApiError>,
    storage: String,
) -> Response {
    let json = wants_json(headers);
    match result {
        Ok((repo, name)) => {
            let url = format!("/{}/{}.md", seg(&repo), seg(&name));
            if json {
                Json(json!({"status": "success", "url": url, "name": name})).into_response()
            } else {
                redirect_with(&url, "ok", &format!("Stored {repo}/{name}."))
            }
        }
        Err(e) => {
            if json {
                return e.into_response();
            }
            let missing = e.message.contains("missing");
            let acting = ctx.actor.as_ref().map(|a| a.active.clone());
            let (action, accept, title) = if mode == "flist" {
                ("/upload-flist", ".flist", "Upload an flist")
            } else {
                (
                    "/upload",
                    ".tar.gz,.tgz,.tar,.tar.zst,.tar.xz,.tar.bz2",
                    "Upload an archive",
                )
            };
            ctx.render_status(
                if e.status.is_server_error() || e.status == StatusCode::CONFLICT {
                    e.status
                } else {
                    StatusCode::BAD_REQUEST
                },
                "upload.html",
                title,
                json!({"mode": mode, "acting": acting, "action": action, "accept": accept,
                       "error": e.message, "missing": missing, "storage": storage}),
            )
        }
    }
}

/// `POST /upload[?job=<id>]`: converts the archive, then the new flist's page.
pub async fn upload_post(
    State(st): State<Shared>,
    ctx: Ctx,
    headers: HeaderMap,
    Query(q): Query<UploadQuery>,
    multipart: Multipart,
) -> Response {
    let result = async {
        let actor = ctx
            .actor
            .clone()
            .ok_or_else(|| ApiError::unauthorized("You need to sign in first."))?;
        check_same_origin(&headers)?;
        actor.check_write(&actor.active)?;
        let pending = q.job.as_ref().and_then(|id| {
            let mut m = st
                .web
                .pending_uploads
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match m.get(id) {
                Some((_, owner, _)) if *owner == actor.user => m.remove(id).map(|(j, _, _)| j),
                _ => None,
            }
        });
        let job = match pending {
            Some(j) => j,
            None => st.jobs.start("upload", &actor.user).await?,
        };
        let payload =
            crate::upload::upload_with_job(&st, &actor, &headers, multipart, job, true).await?;
        let name = payload["name"].as_str().unwrap_or_default().to_string();
        Ok((actor.active.clone(), name))
    }
    .await;
    upload_answer(&ctx, &headers, "archive", result, storage_hint(&st))
}

/// `POST /upload-flist`: checks and stores a homemade flist, then its page.
pub async fn upload_flist_post(
    State(st): State<Shared>,
    ctx: Ctx,
    headers: HeaderMap,
    multipart: Multipart,
) -> Response {
    let result = async {
        let actor = ctx
            .actor
            .clone()
            .ok_or_else(|| ApiError::unauthorized("You need to sign in first."))?;
        check_same_origin(&headers)?;
        let active = actor.active.clone();
        let Json(v) = crate::upload::upload_flist(
            State(st.clone()),
            Caller(actor),
            headers.clone(),
            multipart,
        )
        .await?;
        let name = v.payload.map(|p| p.name).unwrap_or_default();
        Ok((active, name))
    }
    .await;
    upload_answer(&ctx, &headers, "flist", result, storage_hint(&st))
}

/// `GET /merge`: pick flists (own and others'), order them, name the result.
pub async fn merge_page(State(st): State<Shared>, ctx: Ctx) -> Response {
    let actor = match ctx.require() {
        Ok(a) => a.clone(),
        Err(r) => return r,
    };
    let repo = actor.active.clone();
    let r = st
        .blocking(move |hub| {
            let own = hub.catalog().list(&repo)?.unwrap_or_default();
            let all = hub.catalog().all_entry_names()?;
            Ok((own, all))
        })
        .await;
    let (own, all) = match r {
        Ok(x) => x,
        Err(e) => return ctx.error(&e),
    };
    let own: Vec<String> = own
        .iter()
        .filter(|l| matches!(l.kind, ListedKind::Regular | ListedKind::Symlink) && !l.broken)
        .map(|l| format!("{}/{}", actor.active, l.name))
        .collect();
    let others: Vec<&String> = all
        .iter()
        .filter(|n| n.ends_with(".flist") && !own.contains(n))
        .take(5000)
        .collect();
    ctx.render(
        "merge.html",
        "Merge flists",
        json!({"own": own, "others": others, "acting": actor.active}),
    )
}

/// `POST /merge`
pub async fn merge_post(
    State(st): State<Shared>,
    ctx: Ctx,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let actor = match ctx.require_form(&headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let get = |k: &str| {
        fields
            .iter()
            .find(|(kk, _)| kk == k)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let mut target = get("target");
    if !target.is_empty() {
        target = lookup::flist_name(&target);
    }
    let mut picks: Vec<(i64, usize, String)> = Vec::new();
    for (i, (k, v)) in fields.iter().enumerate() {
        if k == "pick" {
            let order = get(&format!("order:{v}"))
                .parse::<i64>()
                .unwrap_or(i as i64 + 1000);
            picks.push((order, i, v.clone()));
        }
    }
    picks.sort();
    let mut list: Vec<String> = picks.into_iter().map(|(_, _, v)| v).collect();
    for line in get("others").lines() {
        let l = line.trim();
        if !l.is_empty() && !list.iter().any(|x| x == l) {
            list.push(l.to_string());
        }
    }
    let result: Result<(), ApiError> = async {
        names::validate_flist(&target)
            .map_err(|e| ApiError::bad_request(format!("Name of the result: {e}")))?;
        if list.len() < 2 {
            return Err(ApiError::bad_request("Pick at least two flists to merge."));
        }
        crate::merge::merge(&st, &actor, &target, &list).await?;
        Ok(())
    }
    .await;
    match result {
        Ok(()) => redirect_with(
            &format!("/{}/{}.md", seg(&actor.active), seg(&target)),
            "ok",
            &format!("Merged {} into {target}.", list.join(", ")),
        ),
        Err(e) if e.status.is_client_error() => redirect_with("/merge", "error", &e.message),
        Err(e) => ctx.error(&e),
    }
}

/// `GET /docker-convert`: without JS the form posts to `/docker-convert` (see
/// [`super::jobs`]); the script posts it to the API with `async=1` instead, follows the
/// job's events and links the result.
pub async fn docker_page(ctx: Ctx) -> Response {
    let acting = match ctx.require() {
        Ok(a) => a.active.clone(),
        Err(r) => return r,
    };
    ctx.render(
        "docker.html",
        "Convert a Docker image",
        json!({"acting": acting}),
    )
}
