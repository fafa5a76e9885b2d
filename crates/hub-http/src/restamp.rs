//! `hub-server restamp`: flists that survive a change of the hub's address.
//!
//! Every flist the hub writes carries its public backend (`{"url": "<public url>/chunks"}`,
//! `{"host": "<public host>", "port": 9900}`, ...). The hub records each backend it announces
//! ([`record_current`], at every start); when it moves (another `--public-url`, another
//! host), flists stamped earlier still send readers to the old address. [`plan`] finds the
//! stored flist files announcing one of this hub's former backends, and [`apply`] re-stamps
//! each to the current one — the metadata rows rewritten, the tree untouched
//! (`flist_format::stamp::restamp`), the new file stored and every entry using the old one
//! pointed to it in one transaction. A flist kept with an author signature is never
//! rewritten (the signature covers its bytes): it is reported.

use std::path::Path;

use hub_repo::{same_backend, Actor, FlistFile, Hub, RepoError};

use crate::config::HubConfig;

/// What re-stamping would do.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// The backend new flists carry (the target).
    pub current: String,
    /// This hub's former backends.
    pub former: Vec<String>,
    /// Files announcing a former backend, to re-stamp.
    pub files: Vec<FlistFile>,
    /// Files announcing a former backend that carry an author signature: left as they are.
    pub signed: Vec<FlistFile>,
}

impl Plan {
    /// Entries of the files to re-stamp.
    pub fn entries(&self) -> usize {
        self.files.iter().map(|f| f.entries.len()).sum()
    }
}

/// What [`apply`] did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Files re-stamped: the old file and the entries now using the new one.
    pub done: Vec<FlistFile>,
    /// Files that could not be re-stamped, and why (nothing changed for them).
    pub failed: Vec<(FlistFile, String)>,
}

/// A restamp problem.
#[derive(Debug, thiserror::Error)]
pub enum RestampError {
    /// The catalog failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The configuration announces no backend.
    #[error(
        "this hub announces no backend (its public backend {0:?} is neither a 0-db nor an HTTP \
         store): nothing to re-stamp flists to"
    )]
    NoBackend(String),
}

/// The `/chunks` backend of the public URL the server last ran under (see
/// [`crate::reach::record_public_url`]), for a `dir://` store.
fn recorded_url_backend(cfg: &HubConfig) -> Option<String> {
    if !cfg.serves_chunks() {
        return None; // only a store the hub serves is announced by its public URL
    }
    let url = crate::reach::recorded_public_url(&cfg.data_dir)?;
    Some(serde_json::json!({ "url": format!("{}/chunks", url.trim_end_matches('/')) }).to_string())
}

/// Records the backend `cfg` announces as this hub's current one. The first time (a
/// catalog of a hub that did not record its backends yet), the public URL it last ran under
/// is recorded first as a former backend, when it differs.
pub fn record_current(hub: &Hub, cfg: &HubConfig) -> Result<(), RestampError> {
    let Some(current) = cfg.announced_backend() else {
        return Ok(());
    };
    if hub.own_backends()?.is_empty() {
        if let Some(before) = recorded_url_backend(cfg) {
            if !same_backend(&before, &current) {
                hub.record_own_backend(&before)?;
            }
        }
    }
    hub.record_own_backend(&current)?;
    Ok(())
}

/// The flist files announcing a former backend of this hub.
pub fn plan(hub: &Hub, cfg: &HubConfig) -> Result<Plan, RestampError> {
    let current = cfg
        .announced_backend()
        .ok_or_else(|| RestampError::NoBackend(cfg.public_backend.clone()))?;
    let mut former: Vec<String> = hub
        .own_backends()?
        .into_iter()
        .map(|b| b.backend)
        .filter(|b| !same_backend(b, &current))
        .collect();
    if let Some(before) = recorded_url_backend(cfg) {
        if !same_backend(&before, &current) && !former.iter().any(|b| same_backend(b, &before)) {
            former.push(before);
        }
    }
    let mut plan = Plan {
        current,
        former,
        ..Plan::default()
    };
    for f in hub.flist_files()? {
        let stale = f
            .backend
            .as_deref()
            .is_some_and(|b| plan.former.iter().any(|o| same_backend(o, b)));
        if !stale {
            continue;
        }
        if crate::author_sig::has_any(&cfg.data_dir, &f.sha256) {
            plan.signed.push(f);
        } else {
            plan.files.push(f);
        }
    }
    Ok(plan)
}

/// Re-stamps the files of `plan` (each on its own: one failure leaves the others done) and
/// records the current backend.
pub fn apply(hub: &Hub, cfg: &HubConfig, plan: &Plan) -> Result<Applied, RestampError> {
    record_current(hub, cfg)?;
    let actor = Actor::system("restamp");
    let mut out = Applied::default();
    for f in &plan.files {
        match restamp_file(hub, &actor, f, &plan.current) {
            Ok(entries) => out.done.push(FlistFile {
                entries,
                ..f.clone()
            }),
            Err(e) => out.failed.push((f.clone(), e.to_string())),
        }
    }
    Ok(out)
}

fn restamp_file(
    hub: &Hub,
    actor: &Actor,
    f: &FlistFile,
    backend: &str,
) -> Result<Vec<(String, String)>, RepoError> {
    let src = hub.catalog().blob_path(&f.sha256);
    let tmp = hub.catalog().temp_path(".restamp");
    let what = format!("flist file {}", f.sha256);
    if let Err(e) = flist_format::stamp::restamp(&src, &tmp, &what, &[("backend", Some(backend))]) {
        let _ = std::fs::remove_file(&tmp);
        return Err(RepoError::Format {
            path: src,
            message: e.to_string(),
        });
    }
    let staged = hub.catalog().stage_file(&tmp)?;
    hub.replace_flist_file(actor, "restamp", &f.sha256, staged, backend)
}

/// `repo/name, ...` of a file's entries.
pub fn names(f: &FlistFile) -> String {
    f.entries
        .iter()
        .map(|(r, n)| format!("{r}/{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Counts the flists announcing a former backend and logs a warning naming the command
/// that fixes them (at `serve` start).
pub fn warn_at_start(hub: &Hub, cfg: &HubConfig, data_dir: &Path) {
    let plan = match plan(hub, cfg) {
        Ok(p) => p,
        Err(RestampError::NoBackend(_)) => return,
        Err(e) => {
            tracing::warn!("restamp check: {e}");
            return;
        }
    };
    let n = plan.files.len() + plan.signed.len();
    if n == 0 {
        return;
    }
    let entries: usize = plan
        .files
        .iter()
        .chain(&plan.signed)
        .map(|f| f.entries.len())
        .sum();
    tracing::warn!(
        "{entries} flist(s) still announce a former backend of this hub ({}), not the current \
         {}: run `hub-server restamp --data-dir {}` with this configuration (--dry-run lists \
         them){}",
        plan.former.join(", "),
        plan.current,
        data_dir.display(),
        if plan.signed.is_empty() {
            String::new()
        } else {
            format!(
                "; {} signed flist(s) must be re-signed and uploaded again",
                plan.signed.len()
            )
        }
    );
}
