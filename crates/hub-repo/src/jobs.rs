//! Long-running jobs (uploads, conversions), persisted so none is lost across restarts.

use crate::db::sql::{params, OptionalExtension, Row};
use serde::Serialize;
use serde_json::Value;

use std::sync::Arc;

use crate::clock::now;
use crate::db::Db;
use crate::error::SqlContext;
use crate::RepoError;

/// The jobs of a hub (cheap to clone: a handle on the shared database).
#[derive(Clone, Debug)]
pub struct Jobs {
    db: Arc<Db>,
}

/// Lifecycle of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Accepted, not started.
    Queued,
    /// In progress.
    Running,
    /// Finished successfully.
    Done,
    /// Finished with an error (or interrupted by a restart).
    Failed,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "done" => JobState::Done,
            _ => JobState::Failed,
        }
    }

    /// Done or failed.
    pub fn is_finished(self) -> bool {
        matches!(self, JobState::Done | JobState::Failed)
    }
}

/// A job as persisted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobRecord {
    /// Random id (hex).
    pub id: String,
    /// What it does (`upload`, `upload-flist`, `merge`, `docker`).
    pub kind: String,
    /// Who started it.
    pub owner: String,
    /// Current state.
    pub state: JobState,
    /// 0 to 100.
    pub progress: u8,
    /// Last progress or error message.
    pub message: String,
    /// Final result (`info`) when done.
    pub info: Option<Value>,
    /// Unix time created.
    pub created: i64,
    /// Unix time of the last change.
    pub updated: i64,
}

fn job_from_row(r: &Row<'_>) -> crate::db::sql::Result<JobRecord> {
    let state: String = r.get(3)?;
    let info: Option<String> = r.get(6)?;
    Ok(JobRecord {
        id: r.get(0)?,
        kind: r.get(1)?,
        owner: r.get(2)?,
        state: JobState::parse(&state),
        progress: r.get::<_, i64>(4)?.clamp(0, 100) as u8,
        message: r.get(5)?,
        info: info.and_then(|s| serde_json::from_str(&s).ok()),
        created: r.get(7)?,
        updated: r.get(8)?,
    })
}

impl Jobs {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        Jobs { db }
    }

    pub(crate) fn fail_interrupted(&self) -> Result<(), RepoError> {
        self.db.write(|tx| {
            tx.execute(
                "UPDATE jobs SET state = 'failed', message = 'interrupted: the server restarted', updated = ?1 \
                 WHERE state IN ('queued', 'running')",
                params![now()],
            )
            .ctx("fail interrupted jobs")?;
            Ok(())
        })
    }

    /// Marks the running jobs `ids` alive (the replica running them says so every few
    /// seconds, see [`Jobs::fail_stale`]).
    pub fn touch(&self, ids: &[String]) -> Result<(), RepoError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ts = now();
        self.db.write(|tx| {
            for id in ids {
                tx.prepare_cached(
                    "UPDATE jobs SET updated = ?2 WHERE id = ?1 AND state IN ('queued', 'running')",
                )
                .and_then(|mut s| s.execute(params![id, ts]))
                .ctx("mark job alive")?;
            }
            Ok(())
        })
    }

    /// Fails the unfinished jobs nobody touched for `max_age` (their replica died: a cluster
    /// has no restart of the same data directory to recover them); how many. Reads first, so
    /// a cluster where every job is alive writes nothing.
    pub fn fail_stale(&self, max_age: std::time::Duration) -> Result<usize, RepoError> {
        let cutoff = now() - i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
        let stale = "state IN ('queued', 'running') AND updated <= ?1";
        let any: bool = self.db.read(|c| {
            c.query_row(
                &format!("SELECT EXISTS(SELECT 1 FROM jobs WHERE {stale})"),
                params![cutoff],
                |r| r.get(0),
            )
            .ctx("look for stale jobs")
        })?;
        if !any {
            return Ok(0);
        }
        self.db.write(|tx| {
            tx.execute(
                &format!(
                    "UPDATE jobs SET state = 'failed', \
                     message = 'interrupted: the hub replica running it stopped', updated = ?2 \
                     WHERE {stale}"
                ),
                params![cutoff, now()],
            )
            .ctx("fail stale jobs")
        })
    }

    /// Records a new running job.
    pub fn create(&self, kind: &str, owner: &str) -> Result<JobRecord, RepoError> {
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw).map_err(|e| RepoError::Invalid(format!("no randomness: {e}")))?;
        let id = hex::encode(raw);
        let ts = now();
        self.db.write(|tx| {
            tx.execute(
                "INSERT INTO jobs(id, kind, owner, state, progress, message, created, updated) \
                 VALUES (?1, ?2, ?3, 'running', 0, 'started', ?4, ?4)",
                params![id, kind, owner, ts],
            )
            .ctx("create job")?;
            Ok(())
        })?;
        Ok(JobRecord {
            id,
            kind: kind.into(),
            owner: owner.into(),
            state: JobState::Running,
            progress: 0,
            message: "started".into(),
            info: None,
            created: ts,
            updated: ts,
        })
    }

    /// Records progress of a running job.
    pub fn progress(&self, id: &str, progress: u8, message: &str) -> Result<(), RepoError> {
        self.db.write(|tx| {
            tx.execute(
                "UPDATE jobs SET progress = ?2, message = ?3, updated = ?4 WHERE id = ?1 AND state = 'running'",
                params![id, progress.min(100), message, now()],
            )
            .ctx("update job")?;
            Ok(())
        })
    }

    /// Marks a job done with its result.
    pub fn finish(&self, id: &str, info: &Value) -> Result<(), RepoError> {
        self.set_job_end(id, JobState::Done, "done", Some(info))
    }

    /// Marks a job failed. A job that ended already (failed by
    /// [`crate::Accounts::user_remove`], say) keeps its end, as [`Jobs::finish`] does.
    pub fn fail(&self, id: &str, message: &str) -> Result<(), RepoError> {
        self.set_job_end(id, JobState::Failed, message, None)
    }

    fn set_job_end(
        &self,
        id: &str,
        state: JobState,
        message: &str,
        info: Option<&Value>,
    ) -> Result<(), RepoError> {
        let info = info.map(Value::to_string);
        self.db.write(|tx| {
            tx.execute(
                "UPDATE jobs SET state = ?2, message = ?3, info = ?4, progress = CASE WHEN ?2 = 'done' THEN 100 ELSE progress END, updated = ?5 WHERE id = ?1 AND state IN ('queued', 'running')",
                params![id, state.as_str(), message, info, now()],
            )
            .ctx("finish job")?;
            Ok(())
        })
    }

    /// Reads a job.
    pub fn get(&self, id: &str) -> Result<Option<JobRecord>, RepoError> {
        self.db.read(|c| {
            c.prepare_cached(
                "SELECT id, kind, owner, state, progress, message, info, created, updated FROM jobs WHERE id = ?1",
            )
            .and_then(|mut s| s.query_row(params![id], job_from_row).optional())
            .ctx("read job")
        })
    }
}
