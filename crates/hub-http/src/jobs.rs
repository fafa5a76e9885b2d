//! Jobs: persisted in the catalog, followed live over Server-Sent Events at `/listen/<id>`.
//!
//! Event shapes (the `data:` of each SSE message):
//! `{"status":"update","message","progress":0-100}`, `{"status":"info","info":{...}}` (done),
//! `{"status":"error","message"}` (failed). A job that was running when the server stopped
//! reads as failed after a restart.
//!
//! On a cluster a job runs on the replica that took its request, and any replica follows it:
//! the one running it broadcasts its events, the others read the record again whenever the
//! catalog changes (each progress is a write every replica hears of). The running replica
//! marks its jobs alive every [`HEARTBEAT`]; a job left unmarked for [`STALE_AFTER`] (its
//! replica died) is failed by whichever replica notices first.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream, StreamExt};
use hub_repo::{Hub, JobRecord, JobState};
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

use crate::error::{ApiError, ApiResult};
use crate::state::Shared;

/// One job event.
#[derive(Clone, Debug, PartialEq)]
pub enum JobEvent {
    /// Progress.
    Update {
        /// What is happening.
        message: String,
        /// 0 to 100.
        progress: u8,
    },
    /// Finished; the result.
    Info(Value),
    /// Failed.
    Error(String),
}

impl JobEvent {
    /// The SSE `data` JSON.
    pub fn to_json(&self) -> Value {
        match self {
            JobEvent::Update { message, progress } => {
                json!({"status": "update", "message": message, "progress": progress})
            }
            JobEvent::Info(info) => json!({"status": "info", "info": info}),
            JobEvent::Error(message) => json!({"status": "error", "message": message}),
        }
    }

    fn is_final(&self) -> bool {
        !matches!(self, JobEvent::Update { .. })
    }

    fn of_record(r: &JobRecord) -> Self {
        match r.state {
            JobState::Done => JobEvent::Info(r.info.clone().unwrap_or(Value::Null)),
            JobState::Failed => JobEvent::Error(r.message.clone()),
            _ => JobEvent::Update {
                message: r.message.clone(),
                progress: r.progress,
            },
        }
    }
}

/// How often a replica marks its running jobs alive.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(10);
/// An unfinished job not marked alive for this long is failed (on a shared catalog).
pub const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// Live jobs of this process.
pub struct Jobs {
    hub: Arc<Hub>,
    live: Mutex<HashMap<String, broadcast::Sender<JobEvent>>>,
    metrics: Option<Arc<crate::observe::Metrics>>,
}

/// A running job: report progress, then finish or fail. Methods block (catalog writes): use
/// them from blocking threads, or through the async wrappers.
#[derive(Clone)]
pub struct JobHandle {
    /// The job id.
    pub id: String,
    hub: Arc<Hub>,
    tx: broadcast::Sender<JobEvent>,
    jobs: Arc<Jobs>,
    kind: String,
    started: std::time::Instant,
}

impl Jobs {
    /// No live jobs yet.
    pub fn new(hub: Arc<Hub>) -> Self {
        Jobs {
            hub,
            live: Mutex::new(HashMap::new()),
            metrics: None,
        }
    }

    /// Counts finished jobs and their duration in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::observe::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Starts a job (persisted as running).
    pub async fn start(self: &Arc<Self>, kind: &str, owner: &str) -> ApiResult<JobHandle> {
        let (hub, kind2, owner2) = (self.hub.clone(), kind.to_string(), owner.to_string());
        let rec = tokio::task::spawn_blocking(move || hub.jobs().create(&kind2, &owner2)).await??;
        let (tx, _) = broadcast::channel(64);
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(rec.id.clone(), tx.clone());
        crate::observe::note_job(&rec.id);
        Ok(JobHandle {
            id: rec.id,
            hub: self.hub.clone(),
            tx,
            jobs: self.clone(),
            kind: kind.to_string(),
            started: std::time::Instant::now(),
        })
    }

    fn subscribe(&self, id: &str) -> Option<broadcast::Receiver<JobEvent>> {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .map(|tx| tx.subscribe())
    }

    /// The ids of the jobs running in this process.
    fn live_ids(&self) -> Vec<String> {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Every [`HEARTBEAT`], marks this process's running jobs alive and (on a shared
    /// catalog) fails the jobs of replicas that stopped; ends when `jobs` is dropped.
    pub fn keep_alive(jobs: &Arc<Jobs>) {
        let weak = Arc::downgrade(jobs);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(jobs) = weak.upgrade() else { return };
                let (hub, ids) = (jobs.hub.clone(), jobs.live_ids());
                drop(jobs);
                let done = tokio::task::spawn_blocking(move || {
                    hub.jobs().touch(&ids)?;
                    if hub.catalog_is_shared() {
                        let n = hub.jobs().fail_stale(STALE_AFTER)?;
                        if n > 0 {
                            tracing::warn!("{n} job(s) of a stopped replica marked failed");
                        }
                    }
                    Ok::<_, hub_repo::RepoError>(())
                })
                .await;
                match done {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!("job heartbeat: {e}"),
                    Err(_) => return,
                }
            }
        });
    }

    fn forget(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

impl JobHandle {
    /// Records and broadcasts progress (blocking).
    pub fn progress(&self, progress: u8, message: &str) {
        if let Err(e) = self.hub.jobs().progress(&self.id, progress, message) {
            tracing::warn!("job {}: {e}", self.id);
        }
        let _ = self.tx.send(JobEvent::Update {
            message: message.to_string(),
            progress,
        });
    }

    /// Records success with its result (blocking).
    pub fn finish(&self, info: &Value) {
        if let Err(e) = self.hub.jobs().finish(&self.id, info) {
            tracing::warn!("job {}: {e}", self.id);
        }
        let _ = self.tx.send(JobEvent::Info(info.clone()));
        self.jobs.forget(&self.id);
        self.count(true);
    }

    /// Records failure (blocking).
    pub fn fail(&self, message: &str) {
        if let Err(e) = self.hub.jobs().fail(&self.id, message) {
            tracing::warn!("job {}: {e}", self.id);
        }
        let _ = self.tx.send(JobEvent::Error(message.to_string()));
        self.jobs.forget(&self.id);
        self.count(false);
    }

    fn count(&self, ok: bool) {
        if let Some(m) = &self.jobs.metrics {
            m.conversion(&self.kind, ok, self.started.elapsed().as_secs_f64());
        }
    }

    /// [`JobHandle::finish`] from async code.
    pub async fn finish_async(&self, info: Value) {
        let h = self.clone();
        let _ = tokio::task::spawn_blocking(move || h.finish(&info)).await;
    }

    /// [`JobHandle::fail`] from async code.
    pub async fn fail_async(&self, message: String) {
        let h = self.clone();
        let _ = tokio::task::spawn_blocking(move || h.fail(&message)).await;
    }

    /// [`JobHandle::progress`] from async code.
    pub async fn progress_async(&self, progress: u8, message: String) {
        let h = self.clone();
        let _ = tokio::task::spawn_blocking(move || h.progress(progress, &message)).await;
    }
}

/// The events of a job another replica runs: its record read again whenever the catalog
/// generation moves (this replica hears of every commit; at least every 2 s), each change
/// sent once, until the final event.
fn follow_record(state: Shared, id: String, last: JobEvent) -> impl Stream<Item = JobEvent> {
    stream::unfold(
        (state, id, Some(last), 0u64),
        |(state, id, last, seen)| async move {
            let last = last?;
            let mut seen = seen;
            let mut waited = std::time::Duration::ZERO;
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                waited += std::time::Duration::from_millis(100);
                let generation = state.hub.generation();
                if generation == seen && waited < std::time::Duration::from_secs(2) {
                    continue;
                }
                seen = generation;
                waited = std::time::Duration::ZERO;
                let id2 = id.clone();
                let rec = state
                    .blocking(move |hub| Ok(hub.jobs().get(&id2)?))
                    .await
                    .ok()
                    .flatten();
                let rec = rec?;
                let ev = JobEvent::of_record(&rec);
                if ev != last {
                    let next = (!ev.is_final()).then(|| ev.clone());
                    return Some((ev, (state, id, next, seen)));
                }
            }
        },
    )
}

fn sse_event(e: &JobEvent) -> Result<Event, Infallible> {
    Ok(Event::default().data(e.to_json().to_string()))
}

/// `GET /listen/<id>`: the job's events until it ends.
pub async fn listen(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request("invalid job id"));
    }
    // Subscribe before reading the record so no event falls in between.
    let rx = state.jobs.subscribe(&id);
    let rec = state
        .blocking({
            let id = id.clone();
            move |hub| Ok(hub.jobs().get(&id)?)
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
    let first = JobEvent::of_record(&rec);
    let live = match rx {
        Some(rx) if !first.is_final() => Some(rx),
        _ => None,
    };
    let head_ev = first.clone();
    let head = stream::once(async move { head_ev });
    // Ends right after the final event, even while the job's sender is still alive.
    let tail = match live {
        Some(rx) => stream::unfold(
            (BroadcastStream::new(rx), false),
            |(mut rx, done)| async move {
                if done {
                    return None;
                }
                loop {
                    match rx.next().await {
                        Some(Ok(ev)) => {
                            let fin = ev.is_final();
                            return Some((ev, (rx, fin)));
                        }
                        Some(Err(_lagged)) => continue,
                        None => return None,
                    }
                }
            },
        )
        .boxed(),
        // Running on another replica: followed through the catalog. (On SQLite only this
        // process runs jobs: one it does not run is an orphan, sent as it stands.)
        None if !first.is_final() && state.hub.catalog_is_shared() => {
            follow_record(state.clone(), id, first.clone()).boxed()
        }
        None => stream::empty().boxed(),
    };
    let events = head.chain(tail).map(|e| sse_event(&e));
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
