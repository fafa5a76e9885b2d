//! What the operator sees: one log line per request, Prometheus metrics, a chunk store that
//! counts its operations.
//!
//! [`log_requests`] (outermost layer) times each request, counts the bytes of both bodies
//! and, when the response body ends, emits one `tracing` event (`target: "hub::request"`)
//! with method, path, status, bytes, duration, user and job id, and records the request in
//! [`Metrics`]. Handlers add the user and the job id through [`note_user`] / [`note_job`]
//! (a task-local slot: they run inside the request's task).

use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use flist_store::{SetOutcome, Store, StoreError};
use http_body::{Body as HttpBody, Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::state::Shared;

/// Labels of request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// HTTP method.
    pub method: String,
    /// The route template (`/api/flist/{repo}/{name}`), or `unmatched`.
    pub route: String,
    /// Response status.
    pub status: u16,
}

/// Labels of conversion metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// Job kind (`upload`, `docker`, ...).
    pub kind: String,
    /// `done` or `failed`.
    pub outcome: String,
}

/// Labels of chunk-store metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    /// `get`, `exists`, `set` (batched calls count once per key).
    pub op: String,
}

/// One label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NameLabel {
    /// Value.
    pub name: String,
}

fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.5, 14))
}

fn slow_latency() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 3.0, 14))
}

/// The hub's metrics, exported at `GET /metrics` in the Prometheus text format.
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    request_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    bytes_received: Counter,
    bytes_sent: Counter,
    conversions: Family<JobLabels, Counter>,
    conversion_seconds: Family<JobLabels, Histogram, fn() -> Histogram>,
    store_ops: Family<StoreLabels, Counter>,
    chunk_requests: Family<RouteLabels, Counter>,
    store_errors: Family<StoreLabels, Counter>,
    jobs: Family<NameLabel, Gauge>,
    entries: Family<NameLabel, Gauge>,
    repositories: Gauge,
    files: Gauge,
    file_bytes: Gauge,
    users: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("hub");
        let m = Metrics {
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(latency as fn() -> Histogram),
            bytes_received: Counter::default(),
            bytes_sent: Counter::default(),
            conversions: Family::default(),
            conversion_seconds: Family::new_with_constructor(slow_latency as fn() -> Histogram),
            store_ops: Family::default(),
            chunk_requests: Family::default(),
            store_errors: Family::default(),
            jobs: Family::default(),
            entries: Family::default(),
            repositories: Gauge::default(),
            files: Gauge::default(),
            file_bytes: Gauge::default(),
            users: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            m.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency (until the response body ends)",
            m.request_seconds.clone(),
        );
        registry.register(
            "http_received_bytes",
            "Bytes of request bodies (uploads)",
            m.bytes_received.clone(),
        );
        registry.register(
            "http_sent_bytes",
            "Bytes of response bodies (downloads)",
            m.bytes_sent.clone(),
        );
        registry.register(
            "conversions",
            "Finished conversions (uploads, images) by kind and outcome",
            m.conversions.clone(),
        );
        registry.register(
            "conversion_duration_seconds",
            "Conversion duration by kind and outcome",
            m.conversion_seconds.clone(),
        );
        registry.register(
            "store_operations",
            "Chunk-store operations (keys) by operation",
            m.store_ops.clone(),
        );
        registry.register(
            "chunk_requests",
            "Chunk requests (`/chunks/…`, `/api/chunks/…`) by method, route and status: logged at debug level, not one INFO line each",
            m.chunk_requests.clone(),
        );
        registry.register(
            "store_errors",
            "Failed chunk-store calls by operation",
            m.store_errors.clone(),
        );
        registry.register("jobs", "Jobs in the catalog by state", m.jobs.clone());
        registry.register(
            "catalog_entries",
            "Catalog entries by kind",
            m.entries.clone(),
        );
        registry.register(
            "catalog_repositories",
            "Repositories in the catalog",
            m.repositories.clone(),
        );
        registry.register(
            "catalog_files",
            "Distinct flist files stored",
            m.files.clone(),
        );
        registry.register(
            "catalog_file_bytes",
            "Total size of stored flist files",
            m.file_bytes.clone(),
        );
        registry.register("users", "Local accounts", m.users.clone());
        Metrics { registry, ..m }
    }

    /// Records one finished request.
    pub fn request(&self, labels: RouteLabels, seconds: f64, received: u64, sent: u64) {
        if is_chunk_route(&labels.route) {
            self.chunk_requests.get_or_create(&labels).inc();
        }
        self.requests.get_or_create(&labels).inc();
        self.request_seconds.get_or_create(&labels).observe(seconds);
        self.bytes_received.inc_by(received);
        self.bytes_sent.inc_by(sent);
    }

    /// The counter and the latency histogram of `labels` (shared handles: the fast path keeps
    /// them instead of looking the labels up per request).
    pub(crate) fn request_handles(&self, labels: &RouteLabels) -> (Counter, Histogram) {
        (
            self.requests.get_or_create(labels).clone(),
            self.request_seconds.get_or_create(labels).clone(),
        )
    }

    /// Counts `n` bytes of response bodies.
    pub(crate) fn sent(&self, n: u64) {
        self.bytes_sent.inc_by(n);
    }

    /// Records one finished conversion job.
    pub fn conversion(&self, kind: &str, ok: bool, seconds: f64) {
        let l = JobLabels {
            kind: kind.to_string(),
            outcome: if ok { "done" } else { "failed" }.to_string(),
        };
        self.conversions.get_or_create(&l).inc();
        self.conversion_seconds.get_or_create(&l).observe(seconds);
    }

    fn store(&self, op: &str, keys: usize, failed: bool) {
        let l = StoreLabels { op: op.to_string() };
        self.store_ops.get_or_create(&l).inc_by(keys as u64);
        if failed {
            self.store_errors.get_or_create(&l).inc();
        }
    }

    /// The text exposition, with catalog figures refreshed from `stats`.
    pub fn render(&self, stats: Option<&hub_repo::CatalogStats>) -> String {
        if let Some(s) = stats {
            for (k, n) in &s.jobs {
                self.jobs
                    .get_or_create(&NameLabel { name: k.clone() })
                    .set(*n as i64);
            }
            for (k, n) in &s.entries {
                self.entries
                    .get_or_create(&NameLabel { name: k.clone() })
                    .set(*n as i64);
            }
            self.repositories.set(s.repositories as i64);
            self.files.set(s.files as i64);
            self.file_bytes.set(s.file_bytes as i64);
            self.users.set(s.users as i64);
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            let _ = writeln!(out, "# encoding error: {e}");
        }
        out
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(st): State<Shared>) -> Response {
    let stats = st.blocking(|hub| Ok(hub.stats()?)).await;
    if let Err(e) = &stats {
        tracing::warn!("metrics: catalog statistics: {}", e.message);
    }
    let mut body = st.metrics.render(stats.as_ref().ok());
    let extra = [
        st.mirror
            .get()
            .map(|m| crate::mirror::metrics_text(&m.status())),
        st.zdb.get().map(|ep| crate::zdb::metrics_text(ep.stats())),
    ];
    for text in extra.into_iter().flatten() {
        // One exposition: each part's families before the single `# EOF`.
        let cut = body.rfind("# EOF").unwrap_or(body.len());
        body.truncate(cut);
        body.push_str(&text);
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

// ----- request log ---------------------------------------------------------------------

/// What the log line of a request says beyond method and path.
#[derive(Default, Debug)]
struct Fields {
    route: Option<String>,
    user: Option<String>,
    job: Option<String>,
}

tokio::task_local! {
    static SLOT: Arc<Mutex<Fields>>;
}

fn with_slot(f: impl FnOnce(&mut Fields)) {
    let _ = SLOT.try_with(|s| f(&mut s.lock().unwrap_or_else(|p| p.into_inner())));
}

/// Names the authenticated user in the request's log line.
pub fn note_user(user: &str) {
    with_slot(|f| f.user = Some(user.to_string()));
}

/// Names the job a request started in its log line.
pub fn note_job(id: &str) {
    with_slot(|f| f.job = Some(id.to_string()));
}

/// Route layer: records the matched route template for the log line and the metrics.
pub async fn note_route(req: Request, next: Next) -> Response {
    if let Some(p) = req.extensions().get::<MatchedPath>() {
        let p = p.as_str().to_string();
        with_slot(|f| f.route = Some(p));
    }
    next.run(req).await
}

/// Is the request log (`target: "hub::request"`, level INFO) enabled? Callers skip the work
/// of preparing a line nobody reads.
pub(crate) fn log_enabled() -> bool {
    tracing::enabled!(target: "hub::request", tracing::Level::INFO)
}

/// Routes of single chunks: a push or an extract makes one request per chunk (hundreds of
/// thousands), so they are logged at debug level and counted in `hub_chunk_requests`.
pub fn is_chunk_route(route: &str) -> bool {
    route.starts_with("/chunks/") || route.starts_with("/api/chunks/")
}

/// Emits the log line of one finished request (at debug level for a chunk route, see
/// [`is_chunk_route`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn log_line(
    method: &str,
    path: &str,
    status: u16,
    sent: u64,
    received: u64,
    secs: f64,
    user: Option<&str>,
    job: Option<&str>,
    chunk: bool,
) {
    macro_rules! line {
        ($level:ident) => {
            tracing::$level!(
                target: "hub::request",
                method = %method,
                path = %path,
                status = status,
                bytes = sent,
                received,
                duration_ms = (secs * 1000.0 * 10.0).round() / 10.0,
                user = user.unwrap_or("-"),
                job = job.unwrap_or("-"),
                "request"
            )
        };
    }
    if chunk {
        line!(debug);
    } else {
        line!(info);
    }
}

/// Everything needed to emit the line when the response body ends.
struct Pending {
    st: Shared,
    fields: Arc<Mutex<Fields>>,
    method: String,
    path: String,
    status: u16,
    started: Instant,
    received: Arc<std::sync::atomic::AtomicU64>,
    sent: u64,
}

impl Pending {
    fn finish(&mut self) {
        let secs = self.started.elapsed().as_secs_f64();
        let f = self.fields.lock().unwrap_or_else(|p| p.into_inner());
        let received = self.received.load(std::sync::atomic::Ordering::Relaxed);
        let route = f.route.clone().unwrap_or_else(|| "unmatched".into());
        log_line(
            &self.method,
            &self.path,
            self.status,
            self.sent,
            received,
            secs,
            f.user.as_deref(),
            f.job.as_deref(),
            is_chunk_route(&route),
        );
        self.st.metrics.request(
            RouteLabels {
                method: self.method.clone(),
                route,
                status: self.status,
            },
            secs,
            received,
            self.sent,
        );
    }
}

pin_project_lite::pin_project! {
    /// A body that counts its bytes and calls back when it ends or is dropped.
    struct Counted<B> {
        #[pin]
        inner: B,
        pending: Option<Pending>,
        counter: Option<Arc<std::sync::atomic::AtomicU64>>,
    }

    impl<B> PinnedDrop for Counted<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(mut p) = this.pending.take() {
                p.finish();
            }
        }
    }
}

impl<B: HttpBody<Data = Bytes>> HttpBody for Counted<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let r = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &r {
            if let Some(d) = frame.data_ref() {
                let n = d.len() as u64;
                if let Some(p) = this.pending.as_mut() {
                    p.sent += n;
                }
                if let Some(c) = this.counter {
                    c.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        if let Poll::Ready(None) = &r {
            if let Some(mut p) = this.pending.take() {
                p.finish();
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Outermost layer: one log line and the request metrics per request.
pub async fn log_requests(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (parts, body) = req.into_parts();
    let body = Body::new(Counted {
        inner: body,
        pending: None,
        counter: Some(received.clone()),
    });
    let req = Request::from_parts(parts, body);
    let fields = Arc::new(Mutex::new(Fields::default()));
    let resp = SLOT.scope(fields.clone(), next.run(req)).await;
    let status = resp.status().as_u16();
    let (parts, body) = resp.into_parts();
    let pending = Pending {
        st,
        fields,
        method,
        path,
        status,
        started,
        received,
        sent: 0,
    };
    let body = Body::new(Counted {
        inner: body,
        pending: Some(pending),
        counter: None,
    });
    Response::from_parts(parts, body)
}

// ----- chunk store -----------------------------------------------------------------------

/// A chunk store that counts its operations and errors in [`Metrics`].
#[derive(Debug)]
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    writes: Arc<crate::health::StoreWrites>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl MeteredStore {
    /// Wraps `inner`; the outcome of every write goes to `writes` too.
    pub fn new(
        inner: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        writes: Arc<crate::health::StoreWrites>,
    ) -> Self {
        MeteredStore {
            inner,
            metrics,
            writes,
        }
    }
}

impl std::fmt::Display for MeteredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait]
impl Store for MeteredStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        let r = self.inner.get(key).await;
        self.metrics.store("get", 1, r.is_err());
        r
    }
    async fn exists(&self, key: &[u8]) -> Result<bool, StoreError> {
        let r = self.inner.exists(key).await;
        self.metrics.store("exists", 1, r.is_err());
        r
    }
    async fn set(&self, key: &[u8], value: Bytes) -> Result<SetOutcome, StoreError> {
        let r = self.inner.set(key, value).await;
        self.metrics.store("set", 1, r.is_err());
        self.writes.note(r.as_ref().map(|_| ()));
        r
    }
    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Bytes>>, StoreError> {
        let r = self.inner.get_many(keys).await;
        self.metrics.store("get", keys.len(), r.is_err());
        r
    }
    async fn exists_many(&self, keys: &[Vec<u8>]) -> Result<Vec<bool>, StoreError> {
        let r = self.inner.exists_many(keys).await;
        self.metrics.store("exists", keys.len(), r.is_err());
        r
    }
    async fn set_many(&self, items: &[(Vec<u8>, Bytes)]) -> Result<Vec<SetOutcome>, StoreError> {
        let r = self.inner.set_many(items).await;
        self.metrics.store("set", items.len(), r.is_err());
        if !items.is_empty() {
            self.writes.note(r.as_ref().map(|_| ()));
        }
        r
    }
    async fn key_count(&self) -> Result<Option<u64>, StoreError> {
        self.inner.key_count().await
    }
    fn is_writable(&self) -> bool {
        self.inner.is_writable()
    }
}
