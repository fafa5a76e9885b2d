//! Private repositories on the read side: who is reading ([`Viewer`]) and what they may see.
//!
//! A private repository (`hub_repo::Catalog::set_visibility`) reads, to anyone but its user
//! and its organisation's members, exactly as a repository that does not exist: 404, never
//! 403. Three pieces enforce it:
//! - [`guard`], a middleware on every routed request: a path naming a private repository
//!   (`/<repo>/...`, `/api/flist/<repo>/...`) is answered "not found" unless the reader may
//!   read it; it also hands the handlers the [`Viewer`];
//! - the handlers: an answer reached through links or tags is checked against every
//!   repository its resolution passed through ([`Viewer::check`] on `Resolved::via`), and
//!   listings, search, the change feed and the home page drop what the reader may not see
//!   ([`Viewer::sees_item`]); the change feed (mirrors) judges by the catalog's state read
//!   with its answer, never by the cached set, which may lag another process's write;
//! - the fast path ([`crate::fastpath`]) answers only requests without credentials for
//!   names whose whole chain is public, and the response cache keeps the anonymous answers.
//!
//! The private set is read once per catalog generation ([`crate::state::AppState::private_repos`]):
//! a hub without private repositories pays one set lookup per request.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hub_repo::{names, Actor, Listed, Resolved};

use crate::error::ApiError;
use crate::state::Shared;

/// Who is reading, and the private repositories of the catalog they read.
#[derive(Clone, Debug)]
pub struct Viewer {
    private: Arc<BTreeSet<String>>,
    /// The authenticated reader, if any (its own repository and its organisations').
    reader: Option<Actor>,
}

impl Viewer {
    /// A reader without credentials.
    pub fn anonymous(private: Arc<BTreeSet<String>>) -> Self {
        Viewer {
            private,
            reader: None,
        }
    }

    /// `actor` reading.
    pub fn actor(private: Arc<BTreeSet<String>>, actor: Actor) -> Self {
        Viewer {
            private,
            reader: Some(actor),
        }
    }

    /// `actor` reading now (a write that reads sources: merge, derive).
    pub async fn of_actor(st: &Shared, actor: &Actor) -> Result<Self, ApiError> {
        Ok(Viewer::actor(st.private_repos().await?, actor.clone()))
    }

    /// May this reader see `repo`?
    pub fn sees(&self, repo: &str) -> bool {
        !self.private.contains(repo) || self.reader.as_ref().is_some_and(|a| a.may_read(repo))
    }

    /// May this reader read `repo` were it private (its own, its organisations')?
    pub fn reads(&self, repo: &str) -> bool {
        self.reader.as_ref().is_some_and(|a| a.may_read(repo))
    }

    /// May this reader see every one of `repos`?
    pub fn sees_all<'a>(&self, repos: impl IntoIterator<Item = &'a String>) -> bool {
        repos.into_iter().all(|r| self.sees(r))
    }

    /// May this reader see a listed item (a link's or taglink's whole chain)?
    pub fn sees_item(&self, item: &Listed) -> bool {
        self.sees_all(&item.via)
    }

    /// `items` without what this reader may not see.
    pub fn filter(&self, items: Vec<Listed>) -> Vec<Listed> {
        if self.private.is_empty() {
            return items;
        }
        items.into_iter().filter(|l| self.sees_item(l)).collect()
    }

    /// True when this reader sees exactly what a reader without credentials sees (no
    /// private repository, or none it may read): its answers may be cached and shared.
    pub fn sees_as_anonymous(&self) -> bool {
        match &self.reader {
            None => true,
            Some(a) => !self.private.iter().any(|r| a.may_read(r)),
        }
    }

    /// A resolution's answer is this reader's only if it may see every repository the
    /// resolution passed through; otherwise "source not found", as the API answers for a
    /// missing name.
    pub fn check(&self, r: &Resolved) -> Result<(), ApiError> {
        if self.sees_all(&r.via) {
            Ok(())
        } else {
            Err(crate::lookup::source_not_found())
        }
    }

    /// [`Viewer::check`] for a download or page of `repo/name`: "not found: repo/name", as
    /// the resolution of a missing name answers there.
    pub fn check_page(&self, r: &Resolved, repo: &str, name: &str) -> Result<(), ApiError> {
        if self.sees_all(&r.via) {
            Ok(())
        } else {
            Err(hub_repo::RepoError::NotFound(format!("{repo}/{name}")).into())
        }
    }

    /// The private repositories this reader may read, or `None` when the catalog has no
    /// private repository (nothing to leave out of a search).
    pub fn readable(&self) -> Option<Vec<String>> {
        if self.private.is_empty() {
            return None;
        }
        Some(
            self.private
                .iter()
                .filter(|r| self.reader.as_ref().is_some_and(|a| a.may_read(r)))
                .cloned()
                .collect(),
        )
    }

    /// The private repositories of the catalog read.
    pub fn private(&self) -> &BTreeSet<String> {
        &self.private
    }
}

/// The reader of a request: its credentials checked when it presents some and the catalog
/// has private repositories (a bad or expired credential reads as no credential: public
/// reads never fail on one).
pub async fn viewer(st: &Shared, headers: &HeaderMap) -> Result<Viewer, ApiError> {
    let private = st.private_repos().await?;
    if private.is_empty() {
        return Ok(Viewer::anonymous(private));
    }
    Ok(identified(st, headers, private).await)
}

/// The reader of a request judged against `private` (a set read with the answer it
/// filters: the change feed), its credentials checked whenever it presents some, even when
/// the cached private set is empty (it may lag another process's write).
pub async fn identified(
    st: &Shared,
    headers: &HeaderMap,
    private: Arc<BTreeSet<String>>,
) -> Viewer {
    if st.config.authentication && !crate::auth::presents_credentials(headers) {
        return Viewer::anonymous(private);
    }
    match crate::auth::identify(st, headers).await {
        Ok(actor) => Viewer::actor(private, actor),
        Err(_) => Viewer::anonymous(private),
    }
}

impl FromRequestParts<Shared> for Viewer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &Shared) -> Result<Self, ApiError> {
        if let Some(v) = parts.extensions.get::<Viewer>() {
            return Ok(v.clone());
        }
        viewer(st, &parts.headers).await
    }
}

/// The repository a request path names, and whether it is an `/api/` path: `/<repo>/...`
/// (the pages and downloads; not a route's literal segment), `/api/flist/<repo>/...` (not
/// `me`). (`/api/changes/repository/<repo>` checks the snapshot's own flag.)
fn repo_of(path: &str) -> Option<(&str, bool)> {
    let rest = path.strip_prefix('/')?;
    if let Some(api) = rest.strip_prefix("api/") {
        let r = api.strip_prefix("flist/")?;
        let repo = r.split('/').next()?;
        return (repo != "me").then_some((repo, true));
    }
    let repo = rest.split('/').next()?;
    (!names::is_reserved(repo)).then_some((repo, false))
}

/// The middleware: a path naming a private repository the reader may not read answers
/// "not found" (as the same path under a repository that does not exist would); every
/// request carries its [`Viewer`] to the handlers.
pub async fn guard(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let v = match viewer(&st, req.headers()).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let decoded = percent_encoding::percent_decode_str(&path).decode_utf8_lossy();
    if let Some((repo, api)) = repo_of(&decoded) {
        if !v.sees(repo) && (api || page_hidden(&decoded)) {
            return hidden(&st, &mut parts, &decoded, repo, api).await;
        }
    }
    parts.extensions.insert(v);
    next.run(Request::from_parts(parts, body)).await
}

/// What the same path under a repository that does not exist answers (the private
/// repository's name, and those of its flists and tags, do not leak).
async fn hidden(st: &Shared, parts: &mut Parts, path: &str, repo: &str, api: bool) -> Response {
    if api {
        // `/api/flist/<repo>/...`: the handlers validate the names first.
        let rest: Vec<&str> = path.splitn(5, '/').skip(4).collect();
        let rest = rest.first().map(|r| r.split('/').collect::<Vec<_>>());
        let e = match rest.as_deref() {
            Some(["tags", tag]) => match names::validate_tag(tag) {
                Ok(()) => hub_repo::RepoError::NotFound(format!("{repo}/tags/{tag}")).into(),
                Err(e) => e.into(),
            },
            Some([name, ..]) if !name.is_empty() => match names::validate_entry(name) {
                Ok(()) => crate::lookup::user_not_found(),
                Err(e) => e.into(),
            },
            _ => crate::lookup::user_not_found(),
        };
        return e.into_response();
    }
    let Ok(ctx) = crate::ui::Ctx::from_request_parts(parts, st).await;
    let e = match below_repo(path).as_slice() {
        [] => ApiError::not_found(format!("There is no repository {repo}.")),
        ["tags", tag] => match names::validate_tag(tag) {
            Ok(()) => hub_repo::RepoError::NotFound(format!("{repo}/tags/{tag}")).into(),
            Err(e) => ApiError::not_found(e.to_string()),
        },
        // Not reached: `page_hidden` lets only the two shapes above through.
        _ => ApiError::not_found("no such page"),
    };
    ctx.error(&e)
}

/// Does the guard answer this page path itself (`/<repo>`, `/<repo>/tags/<tag>`)? Deeper
/// paths resolve a name, and their handlers answer "not found" as for a missing one
/// ([`Viewer::check_page`]).
fn page_hidden(path: &str) -> bool {
    matches!(below_repo(path).as_slice(), [] | ["tags", _])
}

/// The segments of a page path after its repository.
fn below_repo(path: &str) -> Vec<&str> {
    path.trim_start_matches('/')
        .split('/')
        .skip(1)
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_repository() {
        assert_eq!(repo_of("/alice"), Some(("alice", false)));
        assert_eq!(repo_of("/alice/app.flist"), Some(("alice", false)));
        assert_eq!(repo_of("/alice/tags/v1/app.flist"), Some(("alice", false)));
        assert_eq!(repo_of("/api/flist/alice"), Some(("alice", true)));
        assert_eq!(
            repo_of("/api/flist/alice/app.flist/light"),
            Some(("alice", true))
        );
        assert_eq!(repo_of("/api/changes/repository/alice"), None);
        assert_eq!(repo_of("/api/flist/me/app.flist"), None);
        assert_eq!(repo_of("/api/repositories"), None);
        assert_eq!(repo_of("/static/app.css"), None);
        assert_eq!(repo_of("/search"), None);
    }

    #[test]
    fn a_member_sees_its_organisation() {
        let private: Arc<BTreeSet<String>> =
            Arc::new(["acme".to_string(), "bob".to_string()].into());
        let anon = Viewer::anonymous(private.clone());
        assert!(anon.sees("alice") && !anon.sees("acme") && !anon.sees("bob"));
        assert!(anon.sees_as_anonymous());
        let carol = Viewer::actor(private.clone(), Actor::new("carol", vec!["acme".into()]));
        assert!(carol.sees("acme") && !carol.sees("bob"));
        assert!(!carol.sees_as_anonymous());
        let dave = Viewer::actor(private, Actor::new("dave", vec![]));
        assert!(dave.sees_as_anonymous());
    }
}
