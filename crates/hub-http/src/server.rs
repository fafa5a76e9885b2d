//! The router, server start-up and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, on, post, MethodFilter};
use axum::Router;
use hub_repo::Hub;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tower_http::timeout::TimeoutLayer;

use crate::auth::Identity;
use crate::config::HubConfig;
use crate::error::ApiError;
use crate::state::{AppState, Shared};
use crate::{
    api, changes, chunks, chunks_api, compat, derive, docker, guard, health, jobs, login, mirror,
    observe, openapi, signing, threebot, ui, upload, web,
};

/// A start-up failure.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The catalog could not be opened.
    #[error("opening the hub data in {dir}: {source}")]
    Repo {
        /// The data directory.
        dir: String,
        /// Why.
        #[source]
        source: hub_repo::RepoError,
    },
    /// The chunk store could not be opened.
    #[error("chunk store: {0}")]
    Store(#[from] flist_store::StoreError),
    /// Identity keys are bad.
    #[error("identity: {0}")]
    Identity(#[from] crate::auth::IdentityError),
    /// Binding or serving failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A blocking start-up task died.
    #[error("start-up task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

const WRITE: MethodFilter = MethodFilter::GET
    .or(MethodFilter::POST)
    .or(MethodFilter::PUT);

async fn info_fallback(
    method: Method,
    st: State<Shared>,
    viewer: crate::visibility::Viewer,
    path: Path<(String, String)>,
) -> Response {
    if method.as_str() == "INFO" {
        api::light(st, viewer, path).await.into_response()
    } else {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {method} not allowed"),
        )
        .into_response()
    }
}

async fn fallback(req: Request) -> Response {
    if req.uri().path().starts_with("/api/") || req.uri().path() == "/api" {
        ApiError::not_found(format!("no endpoint {} {}", req.method(), req.uri().path()))
            .into_response()
    } else {
        web::not_found().await.into_response()
    }
}

/// The complete router over `state`.
pub fn router(state: Shared) -> Router {
    let cfg = &state.config;
    let max_upload = cfg.max_upload_bytes;
    let uploads = Router::new()
        .route("/api/flist/me/upload", post(upload::upload))
        .route("/api/flist/me/upload-flist", post(upload::upload_flist))
        .route("/api/flist/me/docker", post(docker::docker))
        .route(
            "/upload",
            get(ui::forms::upload_page).post(ui::forms::upload_post),
        )
        .route(
            "/upload-flist",
            get(ui::forms::upload_flist_page).post(ui::forms::upload_flist_post),
        )
        .layer(DefaultBodyLimit::max(
            usize::try_from(cfg.max_upload_bytes).unwrap_or(usize::MAX),
        ))
        .layer(axum::middleware::from_fn(move |req, next| {
            guard::declared_length(max_upload, req, next)
        }))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(cfg.upload_timeout_secs),
        ));
    let api = Router::new()
        .route("/api/repositories", get(api::repositories))
        .route("/api/flist", get(api::all_flists))
        .route("/api/changes", get(changes::changes))
        .route("/api/changes/repository/{repo}", get(changes::repository))
        .route("/api/changes/file/{sha256}", get(changes::file))
        .route("/api/mirror", get(mirror::status))
        .route("/api/fileslist", get(api::fileslist))
        .route("/api/flist/{repo}", get(api::repo_listing))
        .route("/api/flist/{repo}/tags/{tag}", get(api::tag_listing))
        .route(
            "/api/flist/{repo}/{name}",
            get(api::dump).fallback(info_fallback),
        )
        .route("/api/flist/{repo}/{name}/light", get(api::light))
        .route("/api/flist/{repo}/{name}/taglink", get(api::taglink))
        .route("/api/flist/{repo}/{name}/metadata", get(api::metadata))
        .route("/api/flist/me", get(api::me))
        .route(
            "/api/flist/me/{a}",
            get(api::me_dump).delete(api::me_delete),
        )
        .route("/api/flist/me/{a}/link/{b}", on(WRITE, api::me_link))
        .route(
            "/api/flist/me/{a}/crosslink/{b}/{c}",
            on(WRITE, api::me_crosslink),
        )
        .route("/api/flist/me/{a}/rename/{b}", on(WRITE, api::me_rename))
        .route(
            "/api/flist/me/promote/{a}/{b}/{c}",
            on(WRITE, api::me_promote),
        )
        .route(
            "/api/flist/me/{a}/{b}/tag/{c}/{d}",
            on(WRITE, api::me_tag_add).delete(api::me_tag_remove),
        )
        .route(
            "/api/flist/me/{a}/crosstag/{b}/{c}",
            on(WRITE, api::me_crosstag).delete(api::me_crosstag_remove),
        )
        .route(
            "/api/flist/me/merge/{a}",
            on(MethodFilter::POST.or(MethodFilter::PUT), api::me_merge),
        )
        .route("/api/flist/me/derive/{a}", post(derive::me_derive))
        .route("/api/signing-key", get(signing::signing_key))
        .route("/listen/{id}", get(jobs::listen))
        .route("/", get(ui::pages::home))
        .route("/search", get(ui::pages::search))
        .route("/upload/job", post(ui::forms::upload_job))
        .route(
            "/merge",
            get(ui::forms::merge_page).post(ui::forms::merge_post),
        )
        .route(
            "/docker-convert",
            get(ui::forms::docker_page).post(ui::jobs::docker_post),
        )
        .route("/docker-convert/{job}", get(ui::jobs::job_page))
        .route(
            "/token",
            get(ui::account::tokens).post(ui::account::token_create),
        )
        .route("/token/revoke", post(ui::account::token_revoke))
        .route("/account", get(ui::users::account))
        .route("/account/password", post(ui::users::change_password))
        .route(
            "/signup",
            get(ui::users::signup_page).post(ui::users::signup),
        )
        .route("/admin", get(ui::users::admin))
        .route("/admin/disable", post(ui::users::admin_disable))
        .route("/admin/password", post(ui::users::admin_password))
        .route("/admin/invite", post(ui::users::admin_invite))
        .route("/login-method", get(login::login_page))
        .route("/login-token", post(ui::account::login_token))
        .route("/me/active-user", post(ui::account::switch))
        .route("/logout", get(web::logout).post(web::logout))
        .route("/login", get(login::login_page).post(login::login))
        .route("/chunks/{prefix}/{hex}", get(chunks::chunk))
        .route("/metrics", get(observe::metrics))
        .route("/api/openapi.json", get(openapi::openapi_json))
        .route("/api/docs", get(openapi::api_docs))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/readonly", get(web::readonly))
        .route("/login-threebot", get(threebot::login))
        .route("/callback_threebot", get(threebot::callback_web))
        .route("/callback_token", get(threebot::callback_token))
        .route("/callback_link", get(threebot::callback_link))
        .route("/{repo}", get(ui::pages::repo).post(ui::pages::repo_action))
        .route("/{repo}/{file}", get(web::repo_file))
        .route("/{repo}/{file}/files/{*path}", get(web::flist_member))
        .route("/{repo}/tags/{tag}", get(ui::pages::tag))
        .route("/{repo}/tags/{tag}/{file}", get(web::tag_file))
        .route("/static/{*file}", get(ui::assets::serve))
        .route("/favicon.ico", get(ui::assets::favicon))
        .layer(axum::middleware::from_fn(|req, next| {
            guard::declared_length(guard::SMALL_BODY_LIMIT, req, next)
        }))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(cfg.request_timeout_secs),
        ));
    uploads
        .merge(chunks_api::routes(&state))
        .merge(api)
        .route_layer(axum::middleware::from_fn(observe::note_route))
        .fallback(fallback)
        // Private repositories: hidden paths, and the reader for the handlers.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::visibility::guard,
        ))
        // CORS, request id, CSRF, body rate, heavy-request slots, mirror writes: one layer.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::gate::gate,
        ))
        .with_state(state.clone())
        .layer(axum::middleware::from_fn_with_state(
            state,
            observe::log_requests,
        ))
}

/// Opens the catalog, the chunk store and the identity keys.
pub async fn build_state(config: HubConfig) -> Result<Shared, ServerError> {
    if !config.authentication {
        tracing::warn!("authentication is DISABLED by configuration: every caller may write (development only)");
    }
    let dir = config.data_dir.clone();
    let catalog = config.catalog.clone();
    let c2 = config.clone();
    let hub = tokio::task::spawn_blocking(move || {
        let hub = Hub::open_on(&dir, catalog.as_deref())?;
        c2.share_files(&hub)?;
        Ok::<_, hub_repo::RepoError>(hub)
    })
    .await?
    .map_err(|source| ServerError::Repo {
        dir: match &config.catalog {
            Some(_) => format!(
                "{} (catalog {})",
                config.data_dir.display(),
                config.catalog_shown()
            ),
            None => config.data_dir.display().to_string(),
        },
        source,
    })?;
    let hub = Arc::new(hub);
    let store = flist_store::open(&config.store_url()).await?;
    // A dead store is said at start, not found out at the first upload.
    if let Err(why) = crate::health::probe_store(store.as_ref()).await {
        tracing::warn!(
            "the chunk store does not answer: {why}; uploads, pushes and chunk reads fail \
             until it does (/readyz reports it)"
        );
    }
    let public_backend = config.announced_backend();
    match &public_backend {
        Some(b) => tracing::info!("new flists carry the backend {b}"),
        None => tracing::warn!(
            "public backend {:?} is neither a TCP 0-db nor an HTTP store: flists will carry no backend",
            config.public_backend
        ),
    }
    let h2 = hub.clone();
    // Flists stored before the path index existed are indexed in the background.
    tokio::task::spawn_blocking(move || match h2.paths().backfill() {
        Ok(0) => {}
        Ok(n) => tracing::info!("path index: {n} flists indexed"),
        Err(e) => tracing::warn!("path index backfill: {e}"),
    });
    let data = config.data_dir.clone();
    tokio::task::spawn_blocking(move || signing::load_or_create_key(&data))
        .await?
        .map_err(|e| ServerError::Io {
            what: "signing key".into(),
            source: std::io::Error::other(e),
        })?;
    let c2 = config.clone();
    let identity = tokio::task::spawn_blocking(move || Identity::from_config(&c2)).await??;
    Ok(Arc::new(AppState::new(
        hub,
        store,
        config,
        public_backend,
        identity,
    )))
}

/// A running server.
pub struct Server {
    /// The bound address.
    pub addr: SocketAddr,
    /// The bound address of the read-only 0-db endpoint, when `zdb_listen` is set.
    pub zdb_addr: Option<SocketAddr>,
    /// The shared state (tests use the catalog directly).
    pub state: Shared,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    zdb: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
}

impl Server {
    /// Stops accepting, lets in-flight requests finish, and waits.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some((tx, task)) = self.zdb.take() {
            let _ = tx.send(());
            task.await?;
        }
        self.task.await?.map_err(|source| ServerError::Io {
            what: "serving".into(),
            source,
        })
    }

    /// Runs until `signal` completes, then shuts down gracefully.
    pub async fn run_until(
        self,
        signal: impl std::future::Future<Output = ()>,
    ) -> Result<(), ServerError> {
        signal.await;
        self.shutdown().await
    }
}

/// Notices catalog writes committed by another process (`hub-server restamp`,
/// `import-legacy`, account commands; the other replicas on a PostgreSQL catalog) so that
/// the in-memory caches keyed on the catalog generation are refreshed: on PostgreSQL as soon
/// as the write's notification arrives (and every 2 s regardless), on SQLite every 2 s. Runs
/// on a plain thread of its own, which ends once the state is dropped.
fn watch_external_writes(state: &Shared) {
    const EVERY: Duration = Duration::from_secs(2);
    let hub = Arc::downgrade(&state.hub);
    let spawned = std::thread::Builder::new()
        .name("catalog-watch".into())
        .spawn(move || loop {
            // PostgreSQL: woken by the next write's notification (the hub is held meanwhile,
            // at most `EVERY`); SQLite: a plain tick.
            // Never hold the hub while sleeping: a stopped server's catalog must close (a
            // restart in the same data directory recovers its jobs only when alone).
            match hub.upgrade() {
                Some(h) if h.catalog_is_shared() => {
                    h.wait_for_writes(EVERY);
                }
                Some(h) => {
                    drop(h);
                    std::thread::sleep(EVERY);
                }
                None => return,
            }
            let Some(h) = hub.upgrade() else { return };
            match h.notice_external_writes() {
                Ok(true) => tracing::debug!("catalog changed by another process"),
                Ok(false) => {}
                Err(e) => tracing::debug!("watching the catalog: {e}"),
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot watch the catalog for other writers: {e}");
    }
}

/// On a cluster, keeps the replica's local copies of flist files under `files_cache_mb`
/// (checked every minute); ends once the state is dropped.
fn trim_files_cache(state: &Shared) {
    if state.hub.shared_files().is_none() {
        return;
    }
    let max = state.config.files_cache_mb.saturating_mul(1 << 20);
    let hub = Arc::downgrade(&state.hub);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(h) = hub.upgrade() else { return };
            match tokio::task::spawn_blocking(move || h.trim_files_cache(max)).await {
                Ok(Ok((0, _, _))) => {}
                Ok(Ok((n, bytes, _))) => {
                    tracing::info!("flist file cache: {n} copies ({bytes} bytes) dropped")
                }
                Ok(Err(e)) => tracing::warn!("flist file cache: {e}"),
                Err(_) => return,
            }
        }
    });
}

/// Binds `config.listen` and serves in the background.
pub async fn start(config: HubConfig) -> Result<Server, ServerError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Io {
            what: format!("binding {}", config.listen),
            source,
        })?;
    start_on(listener, config).await
}

/// Serves on an already bound listener in the background. Without a configured
/// `public_url`, the hub's public URL is derived from the bound address.
pub async fn start_on(listener: TcpListener, config: HubConfig) -> Result<Server, ServerError> {
    let addr = listener.local_addr().map_err(|source| ServerError::Io {
        what: "local address".into(),
        source,
    })?;
    let limits = config.limits.clone();
    let mut config = config;
    if config.public_url.trim().is_empty() {
        config.listen = addr;
        config.public_url = config.public_url();
    }
    // The 0-db endpoint is bound first: flists announce its real port.
    let zdb_listener = match config.zdb_listen {
        Some(at) => {
            let l = TcpListener::bind(at)
                .await
                .map_err(|source| ServerError::Io {
                    what: format!("binding the 0-db endpoint {at}"),
                    source,
                })?;
            config.zdb_listen = Some(l.local_addr().map_err(|source| ServerError::Io {
                what: "local address of the 0-db endpoint".into(),
                source,
            })?);
            Some(l)
        }
        None => None,
    };
    let state = build_state(config).await?;
    let zdb_addr = state.config.zdb_listen;
    let zdb = zdb_listener.map(|l| crate::zdb::spawn(&state, l));
    // The backend flists get now is one of this hub's (before the public URL file moves on).
    let (h, cfg) = (state.hub.clone(), state.config.clone());
    if let Err(e) = tokio::task::spawn_blocking(move || {
        crate::restamp::record_current(&h, &cfg)?;
        Ok::<_, crate::restamp::RestampError>(())
    })
    .await?
    {
        tracing::warn!("recording the hub's public backend: {e}");
    }
    crate::reach::record_public_url(&state.config.data_dir, &state.config.public_url());
    let (h, cfg) = (state.hub.clone(), state.config.clone());
    tokio::task::spawn_blocking(move || {
        crate::restamp::warn_at_start(&h, &cfg, &cfg.data_dir);
    });
    watch_external_writes(&state);
    crate::jobs::Jobs::keep_alive(&state.jobs);
    trim_files_cache(&state);
    mirror::spawn(&state);
    // A trailing `/` is accepted everywhere: it is trimmed before routing.
    let app = tower::ServiceExt::map_request(router(state.clone()), compat::trim_trailing_slash);
    // Hot public reads whose answer is in memory skip the router (see `fastpath`).
    let app = crate::fastpath::Service::new(state.clone(), app);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(guard::serve(listener, app, limits, async move {
        let _ = rx.await;
    }));
    tracing::info!("hub listening on http://{addr}");
    Ok(Server {
        addr,
        zdb_addr,
        state,
        shutdown: Some(tx),
        task,
        zdb,
    })
}
