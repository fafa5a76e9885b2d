//! Shared server state.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use flist_store::Store;
use hub_repo::{Hub, Resolved};

use crate::auth::Identity;
use crate::config::HubConfig;
use crate::error::{ApiError, ApiResult};
use crate::jobs::Jobs;

/// Everything handlers share, behind an `Arc`.
pub struct AppState {
    /// The repository model.
    pub hub: Arc<Hub>,
    /// The chunk store the hub writes to and checks uploads against.
    pub store: Arc<dyn Store>,
    /// Configuration.
    pub config: HubConfig,
    /// `backend` metadata JSON announced in flists (no credentials), if the public backend is
    /// a TCP 0-db.
    pub public_backend: Option<String>,
    /// Jobs and their live listeners.
    pub jobs: Arc<Jobs>,
    /// Token, JWT and 3Bot verification.
    pub identity: Identity,
    /// Request, conversion and chunk-store metrics (`GET /metrics`).
    pub metrics: Arc<crate::observe::Metrics>,
    /// Failed sign-in attempts by account and address.
    pub login_limiter: crate::login::LoginLimiter,
    /// Web app state (per-client limits, pending upload jobs).
    pub web: crate::ui::WebState,
    /// Slots for docker conversions running at once.
    pub docker_slots: Arc<tokio::sync::Semaphore>,
    /// Slots for archive conversions (uploads) running at once.
    pub conversion_slots: Arc<tokio::sync::Semaphore>,
    /// Flist files and name resolutions kept in memory for downloads.
    pub downloads: crate::downloads::Downloads,
    /// The in-memory answers ahead of the router (see [`crate::fastpath`]).
    pub fastpath: crate::fastpath::FastPath,
    /// Flist dumps and metadata kept in memory for the public read routes.
    pub contents: crate::contents::Contents,
    /// The mirror's sync state, when this hub mirrors another.
    pub mirror: std::sync::OnceLock<Arc<crate::mirror::Mirror>>,
    /// Whether the chunk store takes writes (for `/readyz`).
    pub store_writes: Arc<crate::health::StoreWrites>,
    /// The read-only 0-db endpoint, when `zdb_listen` is set.
    pub zdb: std::sync::OnceLock<flist_store::ZdbEndpoint>,
    /// Responses cached until the next catalog write (key → (generation, body)).
    cache: RwLock<HashMap<String, (u64, Bytes)>>,
    /// Name resolutions cached until the next catalog write.
    resolved: Mutex<HashMap<(String, String), (u64, Resolved)>>,
    /// The private repositories at a catalog generation (see [`crate::visibility`]).
    private: RwLock<(u64, Arc<BTreeSet<String>>)>,
}

/// Largest response body kept by [`AppState::cached`].
const CACHE_ENTRY_MAX: usize = 4 << 20;
/// Bytes [`AppState::cached`] holds at most (it starts over beyond).
const CACHE_BYTES_MAX: usize = 64 << 20;

/// The state as handlers receive it.
pub type Shared = Arc<AppState>;

impl AppState {
    /// Assembles the state (the store is wrapped to count its operations in `metrics`).
    pub fn new(
        hub: Arc<Hub>,
        store: Arc<dyn Store>,
        config: HubConfig,
        public_backend: Option<String>,
        identity: Identity,
    ) -> Self {
        let metrics = Arc::new(crate::observe::Metrics::new());
        let store_writes = Arc::new(crate::health::StoreWrites::default());
        let store: Arc<dyn Store> = Arc::new(crate::observe::MeteredStore::new(
            store,
            metrics.clone(),
            store_writes.clone(),
        ));
        let jobs = Arc::new(Jobs::new(hub.clone()).with_metrics(metrics.clone()));
        let docker_slots = Arc::new(tokio::sync::Semaphore::new(
            config.docker.max_concurrent.max(1),
        ));
        let conversion_slots = Arc::new(tokio::sync::Semaphore::new(
            config.limits.max_concurrent_conversions.max(1),
        ));
        AppState {
            conversion_slots,
            downloads: crate::downloads::Downloads::new(config.download_cache_bytes),
            contents: crate::contents::Contents::new(config.contents_cache_bytes),
            fastpath: crate::fastpath::FastPath::default(),
            metrics,
            login_limiter: crate::login::LoginLimiter::default(),
            web: crate::ui::WebState::default(),
            docker_slots,
            hub,
            store,
            config,
            public_backend,
            jobs,
            identity,
            mirror: std::sync::OnceLock::new(),
            store_writes,
            zdb: std::sync::OnceLock::new(),
            cache: RwLock::new(HashMap::new()),
            resolved: Mutex::new(HashMap::new()),
            private: RwLock::new((0, Arc::default())),
        }
    }

    /// Runs blocking catalog work on the blocking pool.
    pub async fn blocking<T, F>(&self, f: F) -> ApiResult<T>
    where
        F: FnOnce(&Hub) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        let hub = self.hub.clone();
        tokio::task::spawn_blocking(move || f(&hub)).await?
    }

    /// A response body for `key`, computed by `f` at most once per catalog generation.
    pub async fn cached<F>(&self, key: &str, f: F) -> ApiResult<Bytes>
    where
        F: FnOnce(&Hub) -> Result<Bytes, ApiError> + Send + 'static,
    {
        let generation = self.hub.generation();
        if let Some(b) = self.cached_at(key, generation) {
            return Ok(b);
        }
        let body = match self.blocking(f).await {
            Ok(b) => b,
            // The catalog is down: the last answer known beats none (reads go on).
            Err(e) if is_unavailable(&e) => {
                let stale = self
                    .cache
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(key)
                    .map(|(_, b)| b.clone());
                return stale.ok_or(e);
            }
            Err(e) => return Err(e),
        };
        if body.len() > CACHE_ENTRY_MAX {
            return Ok(body);
        }
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        let held: usize = cache.values().map(|(_, b)| b.len()).sum();
        if cache.len() > 4096 || held + body.len() > CACHE_BYTES_MAX {
            cache.clear();
        }
        cache.insert(key.to_string(), (generation, body.clone()));
        Ok(body)
    }

    /// The body [`AppState::cached`] holds for `key` if it was computed at `generation`.
    pub(crate) fn cached_at(&self, key: &str, generation: u64) -> Option<Bytes> {
        at_generation(&self.cache, key, generation)
    }

    /// The private repositories, read once per catalog generation.
    pub async fn private_repos(&self) -> ApiResult<Arc<BTreeSet<String>>> {
        let generation = self.hub.generation();
        if let Some(p) = self.private_repos_at(generation) {
            return Ok(p);
        }
        let p = match self
            .blocking(|hub| Ok(hub.catalog().private_repositories()?))
            .await
        {
            Ok(p) => Arc::new(p),
            Err(e) if is_unavailable(&e) => {
                let m = self.private.read().unwrap_or_else(|e| e.into_inner());
                // Never read yet (generation 0): nothing to fall back on.
                return if m.0 > 0 { Ok(m.1.clone()) } else { Err(e) };
            }
            Err(e) => return Err(e),
        };
        let mut m = self.private.write().unwrap_or_else(|e| e.into_inner());
        if m.0 <= generation {
            *m = (generation, p.clone());
        }
        Ok(p)
    }

    /// The private repositories if already read at `generation` (the fast path's check).
    pub(crate) fn private_repos_at(&self, generation: u64) -> Option<Arc<BTreeSet<String>>> {
        let m = self.private.read().unwrap_or_else(|e| e.into_inner());
        (m.0 == generation).then(|| m.1.clone())
    }

    /// [`AppState::resolve`] for `viewer`: "not found", as for a missing name, when the
    /// resolution passes through a repository it may not read.
    pub async fn resolve_for(
        &self,
        viewer: &crate::visibility::Viewer,
        repo: &str,
        name: &str,
    ) -> ApiResult<Resolved> {
        let r = self.resolve(repo, name).await?;
        viewer.check_page(&r, repo, name)?;
        Ok(r)
    }

    /// [`hub_repo::Catalog::resolve`], served from memory while the catalog is unchanged.
    /// Readers' answers go through [`AppState::resolve_for`].
    pub async fn resolve(&self, repo: &str, name: &str) -> ApiResult<Resolved> {
        let generation = self.hub.generation();
        let key = (repo.to_string(), name.to_string());
        if let Some((g, r)) = self
            .resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            if *g == generation {
                return Ok(r.clone());
            }
        }
        let (r2, n2) = key.clone();
        let r = match self
            .blocking(move |hub| Ok(hub.catalog().resolve(&r2, &n2)?))
            .await
        {
            Ok(r) => r,
            Err(e) if is_unavailable(&e) => {
                let m = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
                return m.get(&key).map(|(_, r)| r.clone()).ok_or(e);
            }
            Err(e) => return Err(e),
        };
        let mut m = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() > 65_536 {
            m.clear();
        }
        m.insert(key, (generation, r.clone()));
        Ok(r)
    }
}

/// The catalog (or a store) could not be reached: a memo may answer with what it last knew.
fn is_unavailable(e: &ApiError) -> bool {
    e.status == axum::http::StatusCode::SERVICE_UNAVAILABLE
}

/// The value a generation-tagged memo holds for `key` if it was made at `generation` (the
/// catalog's write counter): a stale entry counts as absent.
pub(crate) fn at_generation<V: Clone>(
    map: &RwLock<HashMap<String, (u64, V)>>,
    key: &str,
    generation: u64,
) -> Option<V> {
    match map.read().unwrap_or_else(|p| p.into_inner()).get(key) {
        Some((g, v)) if *g == generation => Some(v.clone()),
        _ => None,
    }
}
