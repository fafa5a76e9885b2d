//! `POST /api/flist/me/docker`: a registry image converted to an flist in the caller's
//! repository, as a job followed over `/listen/<id>`.
//!
//! The request carries the form field `image` (urlencoded, multipart or a JSON object), and
//! optionally `platform` (`os/arch[/variant]`), `username` + `password` for a private
//! registry (used for this conversion only: never stored, logged or put in the job), and
//! `async` (`1`/`true`: answer at once with the job id instead of waiting for the result,
//! which is what the web page does before following the job's events). The result is named
//! like the reference hub names it: the image with `:` and `/` replaced by `-`, plus
//! `.flist`.
//!
//! The conversion runs in its own task, so a client that goes away does not cancel it; the
//! job records the outcome either way. The web form (`POST /docker-convert`, see
//! [`crate::ui::jobs`]) starts the same conversion through [`start`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, StatusCode};
use axum::{Form, Json};
use flist_convert::oci::{self, Credentials, ImageSource, OciError, OciEvent, OciOptions};
use hub_repo::{names, Actor};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, Semaphore};

use hub_contract::Success;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::jobs::JobHandle;
use crate::render;
use crate::state::Shared;

/// Largest accepted value of one form field.
const MAX_FIELD: usize = 4096;

/// A conversion request, as parsed from the body.
struct DockerRequest {
    image: String,
    platform: Option<String>,
    credentials: Option<Credentials>,
    asynchronous: bool,
}

/// The flist name the reference hub gives an image: `:` and `/` become `-`.
pub fn flist_name_for_image(image: &str) -> String {
    format!("{}.flist", image.trim().replace([':', '/'], "-"))
}

async fn read_fields(st: &Shared, req: Request) -> ApiResult<HashMap<String, String>> {
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut fields = HashMap::new();
    if ctype.starts_with("multipart/form-data") {
        let mut mp = Multipart::from_request(req, st)
            .await
            .map_err(|e| ApiError::bad_request(format!("form: {}", e.body_text())))?;
        while let Some(f) = mp
            .next_field()
            .await
            .map_err(|e| ApiError::bad_request(format!("form: {}", e.body_text())))?
        {
            let name = f.name().unwrap_or_default().to_string();
            let value = f
                .text()
                .await
                .map_err(|e| ApiError::bad_request(format!("form: {}", e.body_text())))?;
            fields.insert(name, value);
        }
    } else if ctype.starts_with("application/json") {
        let Json(v) = Json::<Value>::from_request(req, st)
            .await
            .map_err(|e| ApiError::bad_request(format!("JSON body: {}", e.body_text())))?;
        let Value::Object(m) = v else {
            return Err(ApiError::bad_request("JSON body: expected an object"));
        };
        for (k, v) in m {
            let v = match v {
                Value::String(s) => s,
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                _ => continue,
            };
            fields.insert(k, v);
        }
    } else {
        let Form(m) = Form::<HashMap<String, String>>::from_request(req, st)
            .await
            .map_err(|e| ApiError::bad_request(format!("form: {}", e.body_text())))?;
        fields = m;
    }
    if let Some((k, _)) = fields.iter().find(|(_, v)| v.len() > MAX_FIELD) {
        return Err(ApiError::bad_request(format!(
            "form field `{k}` is longer than {MAX_FIELD} bytes"
        )));
    }
    Ok(fields)
}

fn parse_request(mut f: HashMap<String, String>) -> ApiResult<DockerRequest> {
    let image = f
        .remove("image")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("missing docker image name (form field `image`)"))?;
    let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let credentials = match (nonempty(f.remove("username")), f.remove("password")) {
        (Some(username), Some(password)) if !password.is_empty() => {
            Some(Credentials { username, password })
        }
        (None, None) => None,
        (None, Some(p)) if p.is_empty() => None,
        _ => {
            return Err(ApiError::bad_request(
                "registry credentials need both `username` and `password`",
            ))
        }
    };
    let asynchronous = matches!(
        f.remove("async")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("1" | "true" | "yes" | "on")
    );
    Ok(DockerRequest {
        image,
        platform: nonempty(f.remove("platform")),
        credentials,
        asynchronous,
    })
}

/// The HTTP status for a conversion failure.
fn oci_error(e: &OciError) -> ApiError {
    let status = match e {
        OciError::InvalidReference { .. }
        | OciError::InvalidPlatform { .. }
        | OciError::NoPlatform { .. }
        | OciError::UnsupportedMediaType { .. }
        | OciError::InvalidManifest { .. }
        | OciError::DigestMismatch { .. }
        | OciError::SizeMismatch { .. }
        | OciError::Layer { .. }
        | OciError::Apply { .. }
        | OciError::Auth { .. } => StatusCode::BAD_REQUEST,
        OciError::NotFound { .. } => StatusCode::NOT_FOUND,
        OciError::Blocked { registry, blocked } => {
            tracing::warn!("docker conversion refused: registry {registry}: {blocked}");
            return ApiError::forbidden(format!(
                "docker conversion: registry {registry} sent the hub to {}, which is not a \
                 public address: refused (an operator may trust the host)",
                blocked.host
            ));
        }
        OciError::Unreachable { registry, reason } => {
            tracing::warn!("docker conversion: registry {registry} unreachable: {reason}");
            return ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("docker conversion: registry {registry} is unreachable"),
            );
        }
        OciError::Registry { .. } => StatusCode::BAD_GATEWAY,
        OciError::Store { .. } => StatusCode::SERVICE_UNAVAILABLE,
        OciError::Cancelled => StatusCode::REQUEST_TIMEOUT,
        OciError::LocalImage { .. }
        | OciError::Io { .. }
        | OciError::Output(_)
        | OciError::Internal(_) => return ApiError::internal(e),
    };
    ApiError::new(status, format!("docker conversion: {e}"))
}

/// Turns image events into throttled job progress (downloads: 0-85%, packing: 90%).
async fn follow(job: JobHandle, mut rx: mpsc::UnboundedReceiver<OciEvent>) {
    let mut total = 0u64;
    let mut done: HashMap<usize, u64> = HashMap::new();
    let mut last = Instant::now() - Duration::from_secs(1);
    while let Some(e) = rx.recv().await {
        let (pct, msg, force) = match &e {
            OciEvent::Resolved {
                platform,
                layers,
                bytes,
                ..
            } => {
                total = *bytes;
                (
                    1,
                    format!("{platform}: {layers} layers, {bytes} bytes"),
                    true,
                )
            }
            OciEvent::LayerStart {
                index,
                cached: true,
                ..
            } => (0, format!("layer {} from cache", index + 1), true),
            OciEvent::Download { index, bytes, .. } => {
                done.insert(*index, *bytes);
                let sum: u64 = done.values().sum();
                let pct = (sum.saturating_mul(85) / total.max(1)).min(85) as u8;
                (pct, format!("layer {}: {bytes} bytes", index + 1), false)
            }
            OciEvent::Packing => (90, "packing image config".into(), true),
            _ => continue,
        };
        if !force && last.elapsed() < Duration::from_millis(300) {
            continue;
        }
        last = Instant::now();
        job.progress_async(pct, msg).await;
    }
}

/// Runs one conversion to the end and stores the result; the job records the outcome.
async fn run(
    st: Shared,
    actor: Actor,
    req: DockerRequest,
    source: ImageSource,
    name: String,
    job: JobHandle,
    limit: Arc<Semaphore>,
) -> ApiResult<Value> {
    let _permit = match limit.clone().try_acquire_owned() {
        Ok(p) => p,
        Err(_) => {
            job.progress_async(0, "waiting for a conversion slot".into())
                .await;
            limit
                .acquire_owned()
                .await
                .map_err(|_| ApiError::internal("conversion limiter closed"))?
        }
    };
    let platform = req
        .platform
        .as_deref()
        .map(str::parse::<oci::Platform>)
        .transpose()
        .map_err(|e| oci_error(&e))?;
    let (tx, rx) = mpsc::unbounded_channel();
    let follower = tokio::spawn(follow(job.clone(), rx));
    let cfg = &st.config.docker;
    let opts = OciOptions {
        platform,
        credentials: req.credentials,
        insecure_registries: cfg.insecure_registries.clone(),
        network: cfg.network_policy(),
        cache_dir: cfg
            .layer_cache
            .then(|| st.config.data_dir.join("cache").join("layers")),
        // Bounded like uploads; never cancelled: the job runs to its end even when the
        // client leaves (it follows the job, or asked for `async`).
        convert: crate::produce::convert_options(&st, &flist_convert::Cancel::new()),
        progress: Some(Arc::new(move |e: &OciEvent| {
            let _ = tx.send(e.clone());
        })),
        ..OciOptions::default()
    };
    let result = oci::convert(&source, &opts, st.store.clone()).await;
    drop(opts); // ends the follower
    let _ = follower.await;
    let (image, stats) = result.map_err(|e| oci_error(&e))?;
    job.progress_async(95, "storing flist".into()).await;
    let c = &stats.convert;
    let files = json!({
        "regular": c.files, "directory": c.directories, "symlink": c.symlinks,
        "special": c.specials, "fullsize": c.bytes, "chunks_written": c.chunks_written,
        "chunks_present": c.chunks_present,
    });
    let (st2, actor2, name2) = (st.clone(), actor.clone(), name.clone());
    let record = crate::produce::Record {
        action: "upload",
        source: Some(format!("docker:{}", req.image)),
        detail: json!({}),
    };
    tokio::task::spawn_blocking(move || {
        crate::produce::store_converted(
            &st2,
            &actor2,
            &name2,
            image,
            record,
            &flist_convert::Cancel::new(),
        )
    })
    .await??;
    Ok(json!({
        "name": name,
        "repository": actor.active,
        "image": stats.image,
        "platform": stats.platform,
        "manifest": stats.manifest_digest,
        "layers": stats.layers.len(),
        "layers_downloaded": stats.layers_downloaded.len(),
        "layers_reused": stats.layers_reused.len(),
        "files": files,
    }))
}

/// A conversion started by [`start`].
pub struct Started {
    /// Name of the flist it will store.
    pub name: String,
    /// Its job (followed over `/listen/<id>`, shown at `/docker-convert/<id>`).
    pub job: String,
    /// The client asked not to wait for the result (`async`).
    pub asynchronous: bool,
    /// The result, when the conversion ends.
    pub done: oneshot::Receiver<ApiResult<Value>>,
}

fn ensure_enabled(st: &Shared) -> ApiResult<()> {
    if st.config.docker.enabled {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "docker image conversion is disabled on this hub",
        ))
    }
}

/// Checks a conversion request (form `fields`) of `actor` and starts it as a job running in
/// its own task: the API route and the web form share it.
pub async fn start(
    st: &Shared,
    actor: Actor,
    fields: HashMap<String, String>,
) -> ApiResult<Started> {
    ensure_enabled(st)?;
    actor.check_write(&actor.active)?;
    let req = parse_request(fields)?;
    let reference = oci::Reference::parse(&req.image).map_err(|e| oci_error(&e))?;
    let allowed = &st.config.docker.registries;
    if !st.config.docker.allows_registry(&reference.registry) {
        return Err(ApiError::forbidden(format!(
            "images from registry {} are not accepted by this hub (allowed: {})",
            reference.registry,
            allowed.join(", ")
        )));
    }
    let name = flist_name_for_image(&req.image);
    names::validate_flist(&name)?;
    // Only registry references: a path or `docker-archive:` would read the server's files.
    let source = ImageSource::Registry(reference);
    let job = st.jobs.start("docker", &actor.user).await?;
    let asynchronous = req.asynchronous;
    let (done_tx, done_rx) = oneshot::channel();
    let limit = st.docker_slots.clone();
    let (st2, job2, name2) = (st.clone(), job.clone(), name.clone());
    tokio::spawn(async move {
        let r = run(st2, actor, req, source, name2, job2.clone(), limit).await;
        match &r {
            Ok(info) => job2.finish_async(info.clone()).await,
            Err(e) => job2.fail_async(e.message.clone()).await,
        }
        let _ = done_tx.send(r);
    });
    Ok(Started {
        name,
        job: job.id.clone(),
        asynchronous,
        done: done_rx,
    })
}

/// `POST /api/flist/me/docker` (form `image`, optional `platform`, `username`, `password`,
/// `async`).
pub async fn docker(
    State(st): State<Shared>,
    Caller(actor): Caller,
    req: Request,
) -> ApiResult<Json<Success>> {
    ensure_enabled(&st)?;
    actor.check_write(&actor.active)?;
    let fields = read_fields(&st, req).await?;
    let started = start(&st, actor, fields).await?;
    if started.asynchronous {
        return Ok(Json(render::success(Some(
            json!({"name": started.name, "job": started.job}),
        ))));
    }
    let mut payload = started
        .done
        .await
        .map_err(|_| ApiError::internal("the conversion task stopped"))??;
    payload["job"] = json!(started.job);
    Ok(Json(render::success(Some(payload))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_reference_hub() {
        assert_eq!(flist_name_for_image("ubuntu:22.04"), "ubuntu-22.04.flist");
        assert_eq!(
            flist_name_for_image("localhost:5000/team/app:v1"),
            "localhost-5000-team-app-v1.flist"
        );
    }

    #[test]
    fn credentials_need_both_parts() {
        let f = |pairs: &[(&str, &str)]| {
            parse_request(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        assert!(f(&[("image", "a"), ("username", "u")]).is_err());
        assert!(f(&[("image", "a"), ("password", "p")]).is_err());
        assert!(f(&[("image", " ")]).is_err());
        let r = f(&[
            ("image", "a"),
            ("username", "u"),
            ("password", "p"),
            ("async", "1"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(r.asynchronous && r.credentials.is_some());
    }
}
