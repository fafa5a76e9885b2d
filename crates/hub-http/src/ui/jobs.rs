//! The docker conversion form without JS: `POST /docker-convert` starts the conversion and
//! answers `303` to the job's page, `GET /docker-convert/<job>`, which shows its progress
//! (refreshing itself while it runs), its error if it failed, and sends the browser on to
//! the new flist's page (`303`) once it is done. With JS the form is sent to the API and
//! the job followed over `/listen/<id>` instead.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use hub_repo::JobState;
use serde_json::{json, Value};

use super::{redirect_with, see_other, seg, Ctx};
use crate::error::ApiError;
use crate::state::Shared;

/// `POST /docker-convert`: starts the conversion, then its job page.
pub async fn docker_post(
    State(st): State<Shared>,
    ctx: Ctx,
    headers: HeaderMap,
    Form(fields): Form<HashMap<String, String>>,
) -> Response {
    let actor = match ctx.require_form(&headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    match crate::docker::start(&st, actor, fields).await {
        Ok(s) => see_other(&format!("/docker-convert/{}", seg(&s.job))),
        Err(e) if e.status.is_client_error() || e.status == StatusCode::NOT_IMPLEMENTED => {
            redirect_with("/docker-convert", "error", &e.message)
        }
        Err(e) => ctx.error(&e),
    }
}

/// `GET /docker-convert/<job>`: the conversion's progress, error, or (done) its flist page.
pub async fn job_page(State(st): State<Shared>, ctx: Ctx, Path(id): Path<String>) -> Response {
    let actor = match ctx.require() {
        Ok(a) => a.clone(),
        Err(r) => return r,
    };
    let missing = || ctx.error(&ApiError::not_found("no such conversion"));
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return missing();
    }
    let rec = match st.blocking(move |hub| Ok(hub.jobs().get(&id)?)).await {
        Ok(r) => r,
        Err(e) => return ctx.error(&e),
    };
    // Only its owner sees a job (ids are not secrets to guess, but not to share either).
    let Some(rec) = rec.filter(|r| r.owner == actor.user && r.kind == "docker") else {
        return missing();
    };
    let result = rec.info.as_ref().and_then(|info| {
        let repo = info.get("repository").and_then(Value::as_str)?;
        let name = info.get("name").and_then(Value::as_str)?;
        Some((repo.to_string(), name.to_string()))
    });
    if let (JobState::Done, Some((repo, name))) = (rec.state, &result) {
        let image = rec
            .info
            .as_ref()
            .and_then(|i| i.get("image"))
            .and_then(Value::as_str)
            .unwrap_or("the image");
        return redirect_with(
            &format!("/{}/{}.md", seg(repo), seg(name)),
            "ok",
            &format!("Converted {image} into {repo}/{name}."),
        );
    }
    let running = matches!(rec.state, JobState::Queued | JobState::Running);
    let failed = rec.state == JobState::Failed;
    let state = match rec.state {
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Done => "done",
        JobState::Failed => "failed",
    };
    ctx.render(
        "job.html",
        "Docker conversion",
        json!({
            "job": rec.id, "state": state, "progress": rec.progress, "message": rec.message,
            "refresh": running, "failed": failed,
            "result": result.map(|(r, n)| json!({
                "label": format!("{r}/{n}"), "href": format!("/{}/{}.md", seg(&r), seg(&n)),
            })),
        }),
    )
}
