//! A read-only mirror of another hub (`hub-server serve --mirror-of URL`), see docs/mirrors.md.
//!
//! The mirror refuses every write (403 naming the primary) and syncs in the background:
//! 1. it reads the primary's change feed from its last cursor and collects the repositories
//!    that changed (first sync: every repository);
//! 2. for each, it fetches the repository's exact catalog rows, downloads the flist files it
//!    does not hold by content address, verifies sha256, md5 and size, stores them, and only
//!    then replaces its rows for that repository in one transaction;
//! 3. it records the cursor. A crash anywhere replays from the last recorded cursor (the
//!    steps are idempotent); a failed sync keeps serving the last good state and retries with
//!    backoff.
//!
//! An upstream without a change feed (an old hub) is mirrored by full listing: every
//! repository's listing, tags and flist files, compared with what the mirror holds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::{StreamExt, TryStreamExt};
use hub_repo::{now, Hub, RepoSnapshot, SnapBlob, SnapEntry, SnapTag, SnapTagLink};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::error::{ApiError, ApiResult};
use crate::state::Shared;

/// Mirror settings (`[mirror]` in the configuration file).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MirrorConfig {
    /// Base URL of the primary hub; when set this hub is a read-only mirror of it.
    pub of: Option<String>,
    /// Seconds between syncs.
    pub sync_interval_secs: u64,
    /// Also copy the chunks of every mirrored flist into this hub's store and serve the
    /// flists stamped with this hub's public backend (`--mirror-chunks`).
    pub chunks: bool,
    /// An API token of the primary (`HUB_MIRROR_TOKEN`): its user's and organisations'
    /// private repositories are mirrored too (and stay private here). Without one, only
    /// public repositories are.
    #[serde(skip_serializing)]
    pub token: Option<MirrorToken>,
}

/// The mirror's token of its primary (never shown in `Debug` or serialised).
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct MirrorToken(pub String);

impl std::fmt::Debug for MirrorToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Default for MirrorConfig {
    fn default() -> Self {
        MirrorConfig {
            of: None,
            sync_interval_secs: 30,
            chunks: false,
            token: None,
        }
    }
}

/// What `GET /api/mirror` reports.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MirrorStatus {
    /// The primary.
    pub upstream: String,
    /// `changes` (change feed) or `full` (an old hub: full listing).
    pub mode: String,
    /// Cursor of the primary's change feed reached by the last successful sync.
    pub cursor: i64,
    /// The primary's latest cursor seen.
    pub upstream_cursor: i64,
    /// Unix time of the last successful sync.
    pub last_success: Option<i64>,
    /// Seconds since the last successful sync.
    pub lag_secs: Option<i64>,
    /// Repositories still to bring up to date in the running sync.
    pub pending_repositories: usize,
    /// Flist files still to download in the running sync.
    pub pending_files: usize,
    /// Whether chunks are mirrored too (`--mirror-chunks`).
    pub chunks: bool,
    /// Chunks still to copy in the running sync (with `--mirror-chunks`).
    pub pending_chunks: u64,
    /// Chunks copied since start (with `--mirror-chunks`).
    pub chunks_copied: u64,
    /// Successful syncs since start.
    pub syncs: u64,
    /// Failed syncs since start.
    pub failures: u64,
    /// Why the last sync failed (cleared by a successful one).
    pub last_error: Option<String>,
    /// What the primary sent that a local write would refuse (bad names, link targets,
    /// digests), skipped by the last sync while the rest synced; at most
    /// [`MAX_SKIPPED_SHOWN`].
    pub skipped: Vec<String>,
    /// Items skipped since start.
    pub skipped_total: u64,
}

/// Most skipped items [`MirrorStatus::skipped`] lists.
pub const MAX_SKIPPED_SHOWN: usize = 50;

/// A running mirror's state.
pub struct Mirror {
    upstream: String,
    interval: Duration,
    client: reqwest::Client,
    status: Mutex<MirrorStatus>,
    chunks: Option<crate::mirror_chunks::ChunkMirror>,
    /// Sent as `Authorization: bearer` to the primary (private repositories).
    token: Option<String>,
}

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Talking to the primary failed.
    #[error("{url}: {message}")]
    Upstream {
        /// What was fetched.
        url: String,
        /// Why.
        message: String,
    },
    /// The local catalog refused.
    #[error(transparent)]
    Repo(#[from] hub_repo::RepoError),
    /// Local I/O.
    #[error("{0}")]
    Io(String),
}

impl SyncError {
    /// The message shown in `/api/mirror`: the primary's URLs and answers, but never a local
    /// path or a catalog detail (those are logged).
    pub fn public(&self) -> String {
        match self {
            SyncError::Upstream { .. } => self.to_string(),
            SyncError::Repo(hub_repo::RepoError::Invalid(m)) => m.clone(),
            _ => "a local storage error (details in the hub's log)".into(),
        }
    }
}

fn up_err(url: &str, e: impl std::fmt::Display) -> SyncError {
    SyncError::Upstream {
        url: url.to_string(),
        message: e.to_string(),
    }
}

/// The answer `r` from `url` when it is a success, else an error naming the URL and status.
fn ensure_ok(url: &str, r: reqwest::Response) -> Result<reqwest::Response, SyncError> {
    if !r.status().is_success() {
        return Err(up_err(url, format!("HTTP {}", r.status())));
    }
    Ok(r)
}

#[derive(Deserialize)]
struct RawFeedPage {
    cursor: i64,
    latest: i64,
    more: bool,
    changes: Vec<hub_repo::Change>,
}

/// One page of the primary's change feed, as a mirror uses it.
#[derive(Debug, PartialEq, Eq)]
pub struct FeedPage {
    /// The cursor to ask from next.
    pub cursor: i64,
    /// The primary's latest cursor.
    pub latest: i64,
    /// More pages follow.
    pub more: bool,
    /// The repositories that changed, each a name a local write accepts.
    pub repos: BTreeSet<String>,
    /// What was skipped: repositories under a name a local write refuses.
    pub skipped: Vec<String>,
}

/// Parses a change-feed page (`GET /api/changes?since=…`) from an untrusted primary: a
/// page that is not the feed's JSON, or whose cursors are negative or past the latest, is
/// an error; a change naming a repository a local write would refuse is skipped and
/// reported, never used in a request path.
pub fn parse_feed_page(body: &[u8]) -> Result<FeedPage, String> {
    let raw: RawFeedPage =
        serde_json::from_slice(body).map_err(|e| format!("not a change feed page: {e}"))?;
    if raw.cursor < 0 || raw.latest < 0 || raw.cursor > raw.latest {
        return Err(format!(
            "change feed cursors out of order (cursor {}, latest {})",
            raw.cursor, raw.latest
        ));
    }
    let mut repos = BTreeSet::new();
    let mut skipped = Vec::new();
    for c in raw.changes {
        match hub_repo::names::validate_user(&c.repo) {
            Ok(()) => {
                repos.insert(c.repo);
            }
            Err(e) => skipped.push(format!("change {}: {e}", c.id)),
        }
    }
    Ok(FeedPage {
        cursor: raw.cursor,
        latest: raw.latest,
        more: raw.more,
        repos,
        skipped,
    })
}

/// What a mirror makes of `data` received from an untrusted primary, as a change-feed page
/// and as a repository snapshot, with the invariants checked (panics when one breaks): the
/// fuzz target `mirror_feed` and its stable regression test run it.
/// - a feed page that parses names only repositories a local write accepts, with cursors
///   in order;
/// - a snapshot that survives [`RepoSnapshot::sanitize`] holds only names, targets and
///   digests a local write accepts, and sanitizing it again drops nothing.
pub fn check_untrusted(data: &[u8]) {
    if let Ok(page) = parse_feed_page(data) {
        assert!(0 <= page.cursor && page.cursor <= page.latest);
        for r in &page.repos {
            assert!(
                hub_repo::names::validate_user(r).is_ok(),
                "{r:?} let through"
            );
        }
    }
    if let Ok(mut snap) = serde_json::from_slice::<RepoSnapshot>(data) {
        if snap.sanitize().is_ok() {
            assert!(hub_repo::names::validate_user(&snap.name).is_ok());
            for e in &snap.entries {
                assert!(
                    hub_repo::names::validate_entry(&e.name).is_ok(),
                    "{:?} let through",
                    e.name
                );
                for t in [&e.target_repo, &e.uploader].into_iter().flatten() {
                    assert!(!t.contains(['/', '\\']) && !t.contains(".."), "{t:?}");
                }
                if let Some(t) = &e.target_name {
                    assert!(
                        hub_repo::names::validate_entry(t).is_ok()
                            || hub_repo::names::validate_tag(t).is_ok()
                    );
                    assert!(!t.contains(['/', '\\']) && !t.contains(".."), "{t:?}");
                }
            }
            for b in &snap.blobs {
                assert!(hub_repo::is_hex_sha256(&b.sha256));
            }
            let again = snap.sanitize().unwrap_or_else(|e| panic!("{e}"));
            assert!(again.is_empty(), "not idempotent: {again:?}");
        }
    }
}

impl Mirror {
    /// A mirror of `upstream` syncing every `interval`.
    pub fn new(upstream: &str, interval: Duration) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(300))
            .build()
            .unwrap_or_default();
        let upstream = upstream.trim_end_matches('/').to_string();
        Mirror {
            status: Mutex::new(MirrorStatus {
                upstream: upstream.clone(),
                mode: "changes".into(),
                ..MirrorStatus::default()
            }),
            upstream,
            interval,
            client,
            chunks: None,
            token: None,
        }
    }

    /// Reads the primary with `token` (its user's private repositories are mirrored too).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.trim().is_empty());
        self
    }

    /// Also mirror chunks (`--mirror-chunks`) with `chunks`.
    pub fn with_chunks(mut self, chunks: crate::mirror_chunks::ChunkMirror) -> Self {
        self.status
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .chunks = true;
        self.chunks = Some(chunks);
        self
    }

    /// The primary's base URL.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// A copy of the status, lag computed now.
    pub fn status(&self) -> MirrorStatus {
        let mut s = self.lock().clone();
        if let Some(c) = &self.chunks {
            s.pending_chunks = c.pending();
            s.chunks_copied = c.copied();
        }
        s.lag_secs = s.last_success.map(|t| (now() - t).max(0));
        s
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MirrorStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reports items the primary sent that a local write would refuse: logged, counted and
    /// listed in the status; the sync goes on without them.
    fn skip(&self, items: impl IntoIterator<Item = String>) {
        let mut s = self.lock();
        for it in items {
            tracing::warn!("mirror: skipped from {}: {it}", self.upstream);
            s.skipped_total += 1;
            if s.skipped.len() < MAX_SKIPPED_SHOWN {
                s.skipped.push(it);
            }
        }
    }

    /// `names` without those a local write refuses (reported as skipped).
    fn valid_repos(&self, names: impl IntoIterator<Item = String>) -> Vec<String> {
        let mut bad = Vec::new();
        let good = names
            .into_iter()
            .filter(|n| match hub_repo::names::validate_user(n) {
                Ok(()) => true,
                Err(e) => {
                    bad.push(e.to_string());
                    false
                }
            })
            .collect();
        self.skip(bad);
        good
    }

    /// GETs `path` from the primary: its URL (for error messages) and the answer, whatever
    /// its status; a transport failure is an error naming the URL.
    async fn send_get(&self, path: &str) -> Result<(String, reqwest::Response), SyncError> {
        let url = format!("{}{path}", self.upstream);
        let mut req = self.client.get(&url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.map_err(|e| up_err(&url, e))?;
        Ok((url, r))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, SyncError> {
        let (url, r) = self.send_get(path).await?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let r = ensure_ok(&url, r)?;
        r.json().await.map(Some).map_err(|e| up_err(&url, e))
    }

    /// Downloads `path` from the primary into a staged file of `hub`, verifies it against
    /// `expect` and stores it by content address.
    async fn fetch_file(
        &self,
        hub: &Arc<Hub>,
        path: &str,
        expect: SnapBlob,
    ) -> Result<(), SyncError> {
        let (url, r) = self.send_get(path).await?;
        let r = ensure_ok(&url, r)?;
        let tmp = hub.catalog().temp_path(".mirror");
        let mut f = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| SyncError::Io(format!("create {}: {e}", tmp.display())))?;
        let mut body = r.bytes_stream();
        let mut n = 0u64;
        let res: Result<(), SyncError> = async {
            while let Some(chunk) = body.try_next().await.map_err(|e| up_err(&url, e))? {
                n += chunk.len() as u64;
                if n > expect.size {
                    return Err(up_err(&url, "longer than announced"));
                }
                f.write_all(&chunk)
                    .await
                    .map_err(|e| SyncError::Io(format!("write {}: {e}", tmp.display())))?;
            }
            f.flush()
                .await
                .map_err(|e| SyncError::Io(format!("write {}: {e}", tmp.display())))?;
            Ok(())
        }
        .await;
        drop(f);
        if let Err(e) = res {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        let hub = hub.clone();
        tokio::task::spawn_blocking(move || {
            let staged = hub.catalog().stage_file(&tmp)?;
            hub.replica().commit_verified_blob(&staged, &expect)
        })
        .await
        .map_err(|e| SyncError::Io(e.to_string()))??;
        Ok(())
    }

    /// Stores every missing file of `blobs` (4 downloads at once), with `--mirror-chunks`
    /// copies their chunks and stamps them, then applies `snap`.
    async fn install(
        &self,
        hub: &Arc<Hub>,
        snap: RepoSnapshot,
        paths: BTreeMap<String, String>,
    ) -> Result<(), SyncError> {
        let stamped = match &self.chunks {
            Some(c) => c.known(hub, &snap.blobs).await?,
            None => BTreeMap::new(),
        };
        let missing: Vec<SnapBlob> = snap
            .blobs
            .iter()
            .filter(|b| !stamped.contains_key(&b.sha256) && !hub.replica().has_blob(&b.sha256))
            .cloned()
            .collect();
        self.lock().pending_files += missing.len();
        futures::stream::iter(missing.into_iter().map(|b| {
            let path = paths
                .get(&b.sha256)
                .cloned()
                .unwrap_or_else(|| format!("/api/changes/file/{}", b.sha256));
            async move {
                let r = self.fetch_file(hub, &path, b).await;
                let mut s = self.lock();
                s.pending_files = s.pending_files.saturating_sub(1);
                r
            }
        }))
        .buffer_unordered(4)
        .try_collect::<Vec<()>>()
        .await?;
        let snap = match &self.chunks {
            Some(c) => c.localize(hub, snap, stamped).await?,
            None => snap,
        };
        let hub = hub.clone();
        tokio::task::spawn_blocking(move || hub.replica().apply_snapshot(&snap))
            .await
            .map_err(|e| SyncError::Io(e.to_string()))??;
        Ok(())
    }

    async fn local_repos(hub: &Arc<Hub>) -> Result<Vec<String>, SyncError> {
        let hub = hub.clone();
        let v = tokio::task::spawn_blocking(move || hub.catalog().repositories())
            .await
            .map_err(|e| SyncError::Io(e.to_string()))??;
        Ok(v.into_iter().map(|r| r.name).collect())
    }

    async fn upstream_repos(&self) -> Result<Vec<String>, SyncError> {
        let v: Vec<Value> = self
            .get_json("/api/repositories")
            .await?
            .ok_or_else(|| up_err(&self.upstream, "no /api/repositories"))?;
        Ok(self.valid_repos(
            v.iter()
                .filter_map(|r| r["name"].as_str().map(str::to_string)),
        ))
    }

    /// One sync with the primary.
    pub async fn sync_once(&self, hub: &Arc<Hub>) -> Result<(), SyncError> {
        let h = hub.clone();
        let (saved, mode) = tokio::task::spawn_blocking(move || {
            Ok::<_, hub_repo::RepoError>((
                h.replica().mirror_state("cursor")?,
                h.replica().mirror_state("chunks")?,
            ))
        })
        .await
        .map_err(|e| SyncError::Io(e.to_string()))??;
        // Turning `--mirror-chunks` on or off changes every flist served: start over.
        let chunks_mode = if self.chunks.is_some() { "1" } else { "0" };
        let start: i64 = if mode.as_deref().unwrap_or("0") == chunks_mode {
            saved.and_then(|s| s.parse().ok()).unwrap_or(0)
        } else {
            0
        };
        let mut cursor = start;
        let mut repos = BTreeSet::new();
        let mut full = start == 0;
        self.lock().skipped.clear();
        loop {
            let (url, r) = self
                .send_get(&format!("/api/changes?since={cursor}"))
                .await?;
            if r.status() == reqwest::StatusCode::NOT_FOUND {
                return self.sync_full(hub).await;
            }
            let body = ensure_ok(&url, r)?
                .bytes()
                .await
                .map_err(|e| up_err(&url, e))?;
            let page = parse_feed_page(&body).map_err(|e| up_err(&url, e))?;
            self.skip(page.skipped);
            self.lock().upstream_cursor = page.latest;
            if page.latest < cursor {
                // The primary's feed went backwards (restored or replaced): start over.
                cursor = 0;
                full = true;
                repos.clear();
                continue;
            }
            if page.more && page.cursor <= cursor {
                return Err(up_err(&url, "the change feed does not advance"));
            }
            repos.extend(page.repos);
            cursor = page.cursor;
            if !page.more {
                break;
            }
        }
        if full {
            repos.extend(self.upstream_repos().await?);
            repos.extend(Self::local_repos(hub).await?);
        }
        {
            let mut s = self.lock();
            s.mode = "changes".into();
            s.pending_repositories = repos.len();
        }
        // A repository that cannot be installed (a file or chunk the primary fails to give)
        // keeps its last good state; the others go on, and the cursor stays (retried later).
        let mut failed: Option<SyncError> = None;
        for repo in repos {
            // One a past sync took under a name a local write refuses: not asked for.
            let r = if hub_repo::names::validate_user(&repo).is_err() {
                self.skip([format!("repository {repo:?} removed: not a valid name")]);
                let (h, r) = (hub.clone(), repo.clone());
                tokio::task::spawn_blocking(move || h.replica().remove_repository(&r))
                    .await
                    .map_err(|e| SyncError::Io(e.to_string()))?
                    .map_err(SyncError::from)
            } else {
                self.sync_repo(hub, &repo).await
            };
            if let Err(e) = r {
                tracing::warn!("mirror: repository {repo} not synced: {e}");
                failed.get_or_insert(e);
            }
            let mut s = self.lock();
            s.pending_repositories = s.pending_repositories.saturating_sub(1);
        }
        if let Some(e) = failed {
            return Err(e);
        }
        let h = hub.clone();
        tokio::task::spawn_blocking(move || {
            h.replica()
                .set_mirror_state("cursor", &cursor.to_string())?;
            h.replica().set_mirror_state("chunks", chunks_mode)
        })
        .await
        .map_err(|e| SyncError::Io(e.to_string()))??;
        self.lock().cursor = cursor;
        Ok(())
    }

    /// Brings `repo` (a name a local write accepts) up to date from its snapshot.
    async fn sync_repo(&self, hub: &Arc<Hub>, repo: &str) -> Result<(), SyncError> {
        let path = format!("/api/changes/repository/{repo}");
        match self.get_json::<RepoSnapshot>(&path).await? {
            Some(mut snap) => {
                if snap.name != repo {
                    self.skip([format!("{path}: names the repository {:?}", snap.name)]);
                    return Ok(());
                }
                match snap.sanitize() {
                    Ok(dropped) => self.skip(dropped),
                    Err(e) => {
                        self.skip([format!("{path}: {e}")]);
                        return Ok(());
                    }
                }
                self.install(hub, snap, BTreeMap::new()).await
            }
            None => {
                let (h, r) = (hub.clone(), repo.to_string());
                tokio::task::spawn_blocking(move || h.replica().remove_repository(&r))
                    .await
                    .map_err(|e| SyncError::Io(e.to_string()))??;
                Ok(())
            }
        }
    }

    /// Mirrors an upstream without a change feed (an old hub): every repository's listing,
    /// tags and flist files; files are fetched only when their md5 is not held already.
    async fn sync_full(&self, hub: &Arc<Hub>) -> Result<(), SyncError> {
        let repos = self.upstream_repos().await?;
        {
            let mut s = self.lock();
            s.mode = "full".into();
            s.pending_repositories = repos.len();
        }
        let upstream_set: BTreeSet<String> = repos.iter().cloned().collect();
        let mut failed: Option<SyncError> = None;
        for repo in &repos {
            let r = match self.full_snapshot(hub, repo).await {
                Ok(Some((mut snap, paths))) => match snap.sanitize() {
                    Ok(dropped) => {
                        self.skip(dropped);
                        self.install(hub, snap, paths).await
                    }
                    Err(e) => {
                        self.skip([format!("repository {repo}: {e}")]);
                        Ok(())
                    }
                },
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                tracing::warn!("mirror: repository {repo} not synced: {e}");
                failed.get_or_insert(e);
            }
            let mut s = self.lock();
            s.pending_repositories = s.pending_repositories.saturating_sub(1);
        }
        for repo in Self::local_repos(hub).await? {
            if !upstream_set.contains(&repo) {
                let h = hub.clone();
                tokio::task::spawn_blocking(move || h.replica().remove_repository(&repo))
                    .await
                    .map_err(|e| SyncError::Io(e.to_string()))??;
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Builds a snapshot of `repo` from the old hub's public listing; regular files are
    /// identified by md5 (`/<repo>/<name>.md5`) and downloaded when not held already.
    async fn full_snapshot(
        &self,
        hub: &Arc<Hub>,
        repo: &str,
    ) -> Result<Option<(RepoSnapshot, BTreeMap<String, String>)>, SyncError> {
        let Some(items) = self
            .get_json::<Vec<Value>>(&format!("/api/flist/{repo}"))
            .await?
        else {
            return Ok(None);
        };
        let h = hub.clone();
        let r = repo.to_string();
        let held = tokio::task::spawn_blocking(move || h.replica().repo_snapshot(&r))
            .await
            .map_err(|e| SyncError::Io(e.to_string()))??;
        let mut entries = Vec::new();
        let mut tags = Vec::new();
        let mut blobs = Vec::new();
        let mut paths = BTreeMap::new();
        let mut updated = 0i64;
        for it in &items {
            let name = it["name"].as_str().unwrap_or_default().to_string();
            // Checked before it goes into a request path (the snapshot is checked whole
            // afterwards).
            if let Err(e) = hub_repo::names::validate_entry(&name) {
                self.skip([format!("{repo}: entry {name:?}: {e}")]);
                continue;
            }
            let t = it["updated"].as_i64().unwrap_or(0);
            updated = updated.max(t);
            let linktime = it["linktime"].as_i64();
            let target = it["target"].as_str().unwrap_or_default();
            match it["type"].as_str().unwrap_or_default() {
                "regular" => {
                    let url = format!("/{repo}/{name}");
                    let md5 = self.get_text(&format!("{url}.md5")).await?;
                    // Reuse a held file with this md5, else download to learn its sha256.
                    let mut known = held
                        .as_ref()
                        .and_then(|s| s.blobs.iter().find(|b| b.md5 == md5).cloned());
                    if let (None, Some(c)) = (&known, &self.chunks) {
                        // Held as a stamped copy: the primary's file is known by its md5.
                        known = c.primary_by_md5(hub, &md5).await?;
                    }
                    let blob = match known {
                        Some(b) => b,
                        None => self.download_unknown(hub, &url, &md5).await?,
                    };
                    paths.insert(blob.sha256.clone(), url);
                    entries.push(SnapEntry {
                        name,
                        kind: "regular".into(),
                        sha256: Some(blob.sha256.clone()),
                        target_repo: None,
                        target_name: None,
                        updated: t,
                        linktime: None,
                        uploader: Some(repo.to_string()),
                        source: None,
                        crosslink: false,
                    });
                    if !blobs.contains(&blob) {
                        blobs.push(blob);
                    }
                }
                "symlink" => {
                    // A listing shows `repo/x.flist` only for a crosslink (even one into
                    // its own repository), `x.flist` for a plain link.
                    let (tr, tn, cross) = match target.split_once('/') {
                        Some((r, n)) => (r.to_string(), n.to_string(), true),
                        None => (repo.to_string(), target.to_string(), false),
                    };
                    let mut e = link_entry(name, "symlink", tr, tn, t, linktime);
                    e.crosslink = cross;
                    entries.push(e);
                }
                "taglink" => {
                    if let Some((tr, tag)) = target.split_once("/tags/") {
                        entries.push(link_entry(
                            name,
                            "taglink",
                            tr.into(),
                            tag.into(),
                            t,
                            linktime,
                        ));
                    }
                }
                "tag" => {
                    let links: Vec<Value> = self
                        .get_json(&format!("/api/flist/{repo}/tags/{name}"))
                        .await?
                        .unwrap_or_default();
                    let links = links
                        .iter()
                        .filter_map(|l| {
                            let (tr, tn) = l["target"].as_str()?.split_once('/')?;
                            Some(SnapTagLink {
                                name: l["name"].as_str()?.to_string(),
                                target_repo: tr.to_string(),
                                target_name: tn.to_string(),
                                linktime: l["linktime"].as_i64().unwrap_or(t),
                            })
                        })
                        .collect();
                    tags.push(SnapTag {
                        tag: name,
                        updated: t,
                        links,
                    });
                }
                _ => {}
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let created = held.as_ref().map(|s| s.created).unwrap_or(updated);
        Ok(Some((
            RepoSnapshot {
                name: repo.to_string(),
                created,
                updated,
                entries,
                tags,
                blobs,
                // An old hub has no private repositories.
                private: false,
            },
            paths,
        )))
    }

    async fn get_text(&self, path: &str) -> Result<String, SyncError> {
        let (url, r) = self.send_get(path).await?;
        let r = ensure_ok(&url, r)?;
        let t = r.text().await.map_err(|e| up_err(&url, e))?;
        Ok(t.split_whitespace().next().unwrap_or_default().to_string())
    }

    /// Downloads a file known only by md5, stores it, and returns its identity.
    async fn download_unknown(
        &self,
        hub: &Arc<Hub>,
        path: &str,
        md5: &str,
    ) -> Result<SnapBlob, SyncError> {
        let (url, r) = self.send_get(path).await?;
        let r = ensure_ok(&url, r)?;
        let bytes = r.bytes().await.map_err(|e| up_err(&url, e))?;
        let hub = hub.clone();
        let md5 = md5.to_string();
        let blob = tokio::task::spawn_blocking(move || {
            let staged = hub.catalog().stage_reader(&bytes[..])?;
            let blob = SnapBlob {
                sha256: staged.sha256.clone(),
                md5,
                size: staged.size,
            };
            hub.replica().commit_verified_blob(&staged, &blob)?;
            Ok::<_, hub_repo::RepoError>(blob)
        })
        .await
        .map_err(|e| SyncError::Io(e.to_string()))??;
        Ok(blob)
    }

    /// Syncs forever: every interval after a success, with exponential backoff (up to 10
    /// intervals, at most 5 minutes) after failures.
    pub async fn run(self: Arc<Self>, hub: Arc<Hub>) {
        let mut failures: u32 = 0;
        loop {
            match self.sync_once(&hub).await {
                Ok(()) => {
                    failures = 0;
                    let mut s = self.lock();
                    s.last_success = Some(now());
                    s.last_error = None;
                    s.syncs += 1;
                    s.pending_repositories = 0;
                    s.pending_files = 0;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!("mirror sync with {} failed: {e}", self.upstream);
                    let mut s = self.lock();
                    s.last_error = Some(e.public());
                    s.failures += 1;
                }
            }
            let factor = 1u32 << failures.min(10).saturating_sub(1).min(3);
            let wait = (self.interval * if failures == 0 { 1 } else { factor })
                .min(Duration::from_secs(300));
            tokio::time::sleep(wait).await;
        }
    }
}

fn link_entry(
    name: String,
    kind: &str,
    target_repo: String,
    target_name: String,
    updated: i64,
    linktime: Option<i64>,
) -> SnapEntry {
    SnapEntry {
        name,
        kind: kind.into(),
        sha256: None,
        target_repo: Some(target_repo),
        target_name: Some(target_name),
        updated,
        linktime: Some(linktime.unwrap_or(updated)),
        uploader: None,
        source: None,
        crosslink: false,
    }
}

/// Starts syncing when the configuration names a primary.
pub fn spawn(st: &Shared) {
    let Some(up) = st.config.mirror.of.clone() else {
        return;
    };
    let mut m = Mirror::new(
        &up,
        Duration::from_secs(st.config.mirror.sync_interval_secs.max(1)),
    )
    .with_token(st.config.mirror.token.clone().map(|t| t.0));
    if st.config.mirror.chunks {
        match &st.public_backend {
            Some(b) => {
                m = m.with_chunks(crate::mirror_chunks::ChunkMirror::new(
                    st.store.clone(),
                    b.clone(),
                    &up,
                ))
            }
            None => tracing::error!(
                "mirror chunks: this hub announces no public backend (give --public-backend): chunks are not mirrored"
            ),
        }
    }
    let m = Arc::new(m);
    if st.mirror.set(m.clone()).is_ok() {
        tracing::info!("read-only mirror of {up}");
        tokio::spawn(m.run(st.hub.clone()));
    }
}

/// Is this request a write (or an account action) that only the primary serves?
fn is_write(method: &Method, path: &str) -> bool {
    if !matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS" | "INFO") {
        return true;
    }
    // `/api/flist/me/<name>` reads an own entry; deeper paths (link, rename, tag ...) write,
    // even over GET as the old hub allowed.
    path.strip_prefix("/api/flist/me/")
        .is_some_and(|rest| rest.trim_end_matches('/').contains('/'))
}

/// On a mirror, the 403 for a write; `None` for anything else.
pub fn refuse_write(st: &crate::state::AppState, req: &Request) -> Option<Response> {
    let up = st.config.mirror.of.as_ref()?;
    is_write(req.method(), req.uri().path()).then(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            format!("this hub is a read-only mirror of {up}: write to the primary"),
        )
        .into_response()
    })
}

/// What the web pages of a mirror show: `{upstream, synced, error}` (plain text; the
/// template escapes it).
pub fn banner(s: &MirrorStatus) -> Value {
    let synced = match s.lag_secs {
        None => "not synced yet".to_string(),
        Some(l) if l < 120 => format!("synced {l} s ago"),
        Some(l) if l < 7200 => format!("synced {} min ago", l / 60),
        Some(l) => format!("synced {} h ago", l / 3600),
    };
    let synced = if s.chunks {
        format!("{synced}, chunks included")
    } else {
        synced
    };
    json!({"upstream": s.upstream, "synced": synced, "error": s.last_error})
}

/// The mirror's figures for `/metrics` (OpenMetrics text, ending with `# EOF`).
pub fn metrics_text(s: &MirrorStatus) -> String {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;
    let mut r = prometheus_client::registry::Registry::with_prefix("hub_mirror");
    let counter = |n: u64| {
        let c: Counter = Counter::default();
        c.inc_by(n);
        c
    };
    let gauge = |n: i64| {
        let g: Gauge = Gauge::default();
        g.set(n);
        g
    };
    let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
    let u = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    r.register("syncs", "Successful syncs since start", counter(s.syncs));
    r.register("failures", "Failed syncs since start", counter(s.failures));
    r.register(
        "up",
        "1 when the last sync succeeded",
        gauge(i64::from(
            s.last_error.is_none() && s.last_success.is_some(),
        )),
    );
    r.register(
        "lag_seconds",
        "Seconds since the last successful sync (-1: none yet)",
        gauge(s.lag_secs.unwrap_or(-1)),
    );
    r.register("cursor", "Change feed cursor reached", gauge(s.cursor));
    r.register(
        "upstream_cursor",
        "The primary's latest change feed cursor",
        gauge(s.upstream_cursor),
    );
    r.register(
        "pending_repositories",
        "Repositories still to sync",
        gauge(n(s.pending_repositories)),
    );
    r.register(
        "pending_files",
        "Flist files still to download",
        gauge(n(s.pending_files)),
    );
    r.register(
        "pending_chunks",
        "Chunks still to copy (--mirror-chunks)",
        gauge(u(s.pending_chunks)),
    );
    r.register(
        "chunks_copied",
        "Chunks copied since start (--mirror-chunks)",
        counter(s.chunks_copied),
    );
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &r) {
        out = format!("# encoding error: {e}\n# EOF\n");
    }
    out
}

/// `GET /api/mirror`: the sync status (404 on a hub that is not a mirror).
pub async fn status(State(st): State<Shared>) -> ApiResult<Json<Value>> {
    match st.mirror.get() {
        Some(m) => Ok(Json(json!(m.status()))),
        None => Err(ApiError::not_found("this hub is not a mirror")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_recognised() {
        assert!(is_write(&Method::POST, "/api/flist/me/upload"));
        assert!(is_write(&Method::DELETE, "/api/flist/me/x.flist"));
        assert!(is_write(&Method::GET, "/api/flist/me/x.flist/link/y.flist"));
        assert!(!is_write(&Method::GET, "/api/flist/me/x.flist"));
        assert!(!is_write(&Method::GET, "/api/flist/alice/x.flist"));
        assert!(!is_write(&Method::HEAD, "/alice/x.flist"));
    }

    #[test]
    fn status_errors_show_no_local_paths() {
        let local = SyncError::Io("create /srv/hub/tmp/x.mirror: disk full".into());
        assert!(!local.public().contains("/srv"), "{}", local.public());
        let repo = SyncError::Repo(hub_repo::RepoError::Io {
            op: "open",
            path: "/srv/hub/flists/ab".into(),
            source: std::io::Error::other("gone"),
        });
        assert!(!repo.public().contains("/srv"), "{}", repo.public());
        let up = up_err("http://primary/api/changes", "HTTP 502");
        assert_eq!(up.public(), "http://primary/api/changes: HTTP 502");
    }
}
