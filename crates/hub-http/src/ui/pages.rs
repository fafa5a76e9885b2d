//! Home, repository (with its owner forms), tag and search pages.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Form;
use hub_repo::{names, ListedKind, RepoError};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{page_result, redirect_with, seg, Ctx};
use crate::error::ApiError;
use crate::lookup;
use crate::state::Shared;
use crate::visibility::Viewer;

/// Results per page of search.
const SEARCH_PAGE: u64 = 50;

/// `GET /`
pub async fn home(State(st): State<Shared>, viewer: Viewer, ctx: Ctx) -> Response {
    let r = async {
        let (mut repos, mut recent) = st
            .blocking(|hub| Ok((hub.catalog().repo_summaries()?, hub.catalog().recent_flists(50)?)))
            .await?;
        repos.retain(|r| viewer.sees(&r.name));
        recent.retain(|f| viewer.sees(&f.repo));
        recent.truncate(10);
        let official = &st.config.official;
        let row = |r: &hub_repo::browse::RepoSummary| {
            json!({"name": r.name, "updated": r.updated, "entries": r.entries, "tags": r.tags})
        };
        let off: Vec<Value> = official
            .iter()
            .filter_map(|o| repos.iter().find(|r| &r.name == o))
            .map(row)
            .collect();
        let others: Vec<Value> = repos
            .iter()
            .filter(|r| !official.contains(&r.name))
            .map(row)
            .collect();
        let flists: u64 = repos.iter().map(|r| r.entries).sum();
        Ok(ctx.render(
            "home.html",
            "Zero-OS flist hub",
            json!({
                "official": off, "others": others, "recent": recent,
                "repo_count": repos.len(), "flist_count": flists,
                "public_url": st.config.public_url.trim_end_matches('/'),
            }),
        ))
    }
    .await;
    page_result(&ctx, r)
}

/// On page paths an invalid name is a page that does not exist (404), as on the old hub.
fn not_found(e: RepoError) -> ApiError {
    ApiError::not_found(e.to_string())
}

fn api_guard(repo: &str) -> Result<(), ApiError> {
    if repo == "api" {
        return Err(ApiError::not_found("no such endpoint"));
    }
    Ok(())
}

/// `GET /<repo>`
pub async fn repo(
    State(st): State<Shared>,
    Path(repo): Path<String>,
    viewer: Viewer,
    ctx: Ctx,
) -> Response {
    let r = async {
        api_guard(&repo)?;
        names::validate_repo(&repo).map_err(not_found)?;
        let r2 = repo.clone();
        let v2 = viewer.clone();
        let me = ctx.actor.as_ref().map(|a| a.user.clone());
        let (items, md5s) = st
            .blocking(move |hub| {
                let listed = hub.catalog().list(&r2)?.filter(|_| v2.sees(&r2));
                // A signed-in user's own page and an organisation's page exist before their
                // first flist (to create organisations, manage members, set visibility).
                let items = match listed {
                    Some(items) => items,
                    None if me.as_deref() == Some(r2.as_str())
                        || hub.accounts().org_exists(&r2)? && v2.sees(&r2) =>
                    {
                        Vec::new()
                    }
                    None => {
                        return Err(ApiError::not_found(format!("There is no repository {r2}.")))
                    }
                };
                let items = v2.filter(items);
                let mut md5s = HashMap::new();
                for l in &items {
                    if matches!(l.kind, ListedKind::Regular | ListedKind::Symlink) && !l.broken {
                        if let Ok(res) = hub.catalog().resolve(&r2, &l.name) {
                            md5s.insert(l.name.clone(), res.md5);
                        }
                    }
                }
                Ok((items, md5s))
            })
            .await?;
        let base = st.config.public_url.trim_end_matches('/');
        let mut entries = Vec::new();
        let mut tags = Vec::new();
        let mut flists = Vec::new();
        for l in &items {
            let kind = match l.kind {
                ListedKind::Regular => "regular",
                ListedKind::Symlink => "symlink",
                ListedKind::Taglink => "taglink",
                ListedKind::Tag => "tag",
            };
            if l.kind == ListedKind::Tag {
                tags.push(json!({"name": l.name, "updated": l.updated,
                    "href": format!("/{}/tags/{}", seg(&repo), seg(&l.name))}));
                continue;
            }
            let target_href = l.target.as_deref().map(|t| match l.kind {
                ListedKind::Taglink => match t.split_once("/tags/") {
                    Some((r, tag)) => format!("/{}/tags/{}", seg(r), seg(tag)),
                    None => format!("/{}", seg(t)),
                },
                _ => match t.split_once('/') {
                    Some((r, n)) => format!("/{}/{}.md", seg(r), seg(n)),
                    None => format!("/{}/{}.md", seg(&repo), seg(t)),
                },
            });
            let is_flist = matches!(l.kind, ListedKind::Regular | ListedKind::Symlink);
            if is_flist {
                flists.push(l.name.clone());
            }
            entries.push(json!({
                "name": l.name, "kind": kind, "size": l.size, "updated": l.updated,
                "target": l.target, "target_href": target_href, "broken": l.broken,
                "href": if is_flist { format!("/{}/{}.md", seg(&repo), seg(&l.name)) }
                        else { target_href.clone().unwrap_or_default() },
                "url": if is_flist { format!("{base}/{repo}/{}", l.name) } else { String::new() },
                "download": if is_flist { format!("/{}/{}", seg(&repo), seg(&l.name)) } else { String::new() },
                "md5": md5s.get(&l.name),
            }));
        }
        let owner = ctx.actor.as_ref().is_some_and(|a| a.may_write(&repo));
        // Visibility and organisation management (owners; members see the members).
        let (r2, actor) = (repo.clone(), ctx.actor.clone());
        let (manage, members) = st
            .blocking(move |hub| {
                let manage = match &actor {
                    Some(a) => hub.catalog().may_manage(a, &r2)?,
                    None => false,
                };
                let members = match &actor {
                    Some(a) if a.may_read(&r2) => hub.accounts().org_members(&r2)?,
                    _ => None,
                };
                Ok((manage, members))
            })
            .await?;
        let own = ctx.actor.as_ref().is_some_and(|a| a.user == repo);
        Ok(ctx.render(
            "repo.html",
            &repo,
            json!({"repo": repo, "entries": entries, "tags": tags, "flists": flists,
                   "owner": owner, "acting": ctx.actor.as_ref().map(|a| a.active.clone()),
                   "private": viewer.private().contains(&repo), "manage": manage,
                   "is_org": members.is_some(), "members": members, "own": own}),
        ))
    }
    .await;
    page_result(&ctx, r)
}

/// The owner forms of the repository page.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RepoAction {
    op: String,
    name: String,
    to: String,
    confirm: String,
    source: String,
    linkname: String,
    target: String,
    tag: String,
}

/// `repository/name[.flist]` typed in a form: the repository and the flist name.
fn split_target(t: &str) -> Result<(String, String), ApiError> {
    let t = t.trim().trim_start_matches('/');
    let (r, n) = t
        .split_once('/')
        .ok_or_else(|| ApiError::bad_request(format!("{t:?} is not repository/name.flist")))?;
    names::validate_repo(r)?;
    Ok((r.to_string(), lookup::flist_name(n)))
}

/// `POST /<repo>`: rename, delete, link, crosslink, tag, untag, crosstag, promote.
pub async fn repo_action(
    State(st): State<Shared>,
    Path(repo): Path<String>,
    ctx: Ctx,
    headers: HeaderMap,
    Form(f): Form<RepoAction>,
) -> Response {
    let back = format!("/{}", seg(&repo));
    let actor = match ctx.require_form(&headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    if let Err(e) = names::validate_repo(&repo) {
        return ctx.error(&e.into());
    }
    if matches!(
        f.op.as_str(),
        "visibility" | "member-add" | "member-remove" | "org-create"
    ) {
        return manage_action(&st, &ctx, actor, repo, f).await;
    }
    if !actor.may_write(&repo) {
        return ctx.error(&ApiError::forbidden(format!(
            "You act as {} and cannot change repository {repo}.",
            actor.active
        )));
    }
    let r2 = repo.clone();
    let result: Result<String, ApiError> = st
        .blocking(move |hub| {
            let a = &actor;
            let msg = match f.op.as_str() {
                "rename" => {
                    let name = lookup::entry_name(hub, &r2, &f.name)?;
                    let to = match f.to.trim() {
                        t if name.ends_with(".flist") => lookup::flist_name(t),
                        t => t.to_string(),
                    };
                    hub.catalog().rename(a, &r2, &name, &to)?;
                    format!("Renamed {name} to {to}.")
                }
                "delete" => {
                    if f.confirm != "yes" {
                        return Err(ApiError::bad_request(format!(
                            "Not deleted: tick “yes, delete {}” to confirm.",
                            f.name
                        )));
                    }
                    let name = lookup::entry_name(hub, &r2, &f.name)?;
                    hub.catalog().delete(a, &r2, &name)?;
                    format!("Deleted {name}.")
                }
                "link" => {
                    let (source, link) = (
                        lookup::flist_name(&f.source),
                        lookup::flist_name(f.linkname.trim()),
                    );
                    hub.catalog().link(a, &r2, &source, &link)?;
                    format!("{link} now points to {source}.")
                }
                "crosslink" => {
                    let (tr, tn) = split_target(&f.target)?;
                    let link = lookup::flist_name(f.linkname.trim());
                    hub.catalog().crosslink(a, &r2, &link, &tr, &tn)?;
                    format!("{link} now points to {tr}/{tn}.")
                }
                "tag" => {
                    let (tr, tn) = split_target(&f.target)?;
                    let link = if f.linkname.trim().is_empty() {
                        tn.clone()
                    } else {
                        lookup::flist_name(f.linkname.trim())
                    };
                    hub.catalog()
                        .tag_add(a, &r2, f.tag.trim(), &link, &tr, &tn)?;
                    format!("Tag {} now holds {link} → {tr}/{tn}.", f.tag.trim())
                }
                "untag" => {
                    let links = hub.catalog().tag_links(&r2, f.tag.trim())?;
                    let l = links.iter().find(|l| l.name == f.linkname).ok_or_else(|| {
                        RepoError::NotFound(format!("{} in tag {}", f.linkname, f.tag))
                    })?;
                    let (tr, tn) = split_target(l.target.as_deref().unwrap_or_default())?;
                    hub.catalog()
                        .tag_remove(a, &r2, f.tag.trim(), &f.linkname, &tr, &tn)?;
                    format!("Removed {} from tag {}.", f.linkname, f.tag.trim())
                }
                "crosstag" => {
                    let (tr, tag) = f
                        .target
                        .trim()
                        .split_once("/tags/")
                        .map(|(r, t)| (r.to_string(), t.to_string()))
                        .ok_or_else(|| {
                            ApiError::bad_request("the target tag is written repository/tags/tag")
                        })?;
                    hub.catalog()
                        .crosstag(a, &r2, f.linkname.trim(), &tr, &tag)?;
                    format!("{} now points to {tr}/tags/{tag}.", f.linkname.trim())
                }
                "promote" => {
                    let (sr, sn) = split_target(&f.source)?;
                    let local = if f.name.trim().is_empty() {
                        sn.clone()
                    } else {
                        lookup::flist_name(f.name.trim())
                    };
                    hub.catalog().promote(a, &r2, &sr, &sn, &local)?;
                    format!("Copied {sr}/{sn} here as {local}.")
                }
                other => return Err(ApiError::bad_request(format!("unknown action {other:?}"))),
            };
            Ok(msg)
        })
        .await;
    match result {
        Ok(msg) => redirect_with(&back, "ok", &msg),
        Err(e) if e.status.is_client_error() => redirect_with(&back, "error", &e.message),
        Err(e) => ctx.error(&e),
    }
}

/// The repository page's forms of its user and organisation owners: visibility, members,
/// a new organisation (on the user's own page).
async fn manage_action(
    st: &Shared,
    ctx: &Ctx,
    actor: hub_repo::Actor,
    repo: String,
    f: RepoAction,
) -> Response {
    let back = format!("/{}", seg(&repo));
    let r2 = repo.clone();
    let result: Result<(String, String), ApiError> = st
        .blocking(move |hub| {
            let a = &actor;
            if f.op == "org-create" {
                if a.user != r2 {
                    return Err(ApiError::forbidden("Create organisations from your own page."));
                }
                let name = f.name.trim();
                hub.accounts().org_create(name, &a.user)?;
                return Ok((
                    format!("/{}", seg(name)),
                    format!("Created organisation {name}: you own it. Act for it with the identity selector."),
                ));
            }
            if !hub.catalog().may_manage(a, &r2)? {
                return Err(ApiError::forbidden(format!(
                    "Only {r2} or an owner of the organisation {r2} can do this."
                )));
            }
            let msg = match f.op.as_str() {
                "visibility" => {
                    let private = match f.to.as_str() {
                        "private" => true,
                        "public" => false,
                        other => {
                            return Err(ApiError::bad_request(format!(
                                "visibility {other:?}: private or public"
                            )))
                        }
                    };
                    hub.catalog().set_visibility(a, &r2, private)?;
                    if private {
                        format!("{r2} is private: only its members see it.")
                    } else {
                        format!("{r2} is public.")
                    }
                }
                "member-add" => {
                    let role: hub_repo::OrgRole = f.to.parse()?;
                    let user = f.name.trim();
                    hub.accounts().org_add(&r2, user, role)?;
                    format!("{user} is {role} of {r2}.")
                }
                _ => {
                    let user = f.name.trim();
                    if !hub.accounts().org_remove(&r2, user)? {
                        return Err(ApiError::not_found(format!("{user} is not a member of {r2}.")));
                    }
                    format!("Removed {user} from {r2}.")
                }
            };
            Ok((format!("/{}", seg(&r2)), msg))
        })
        .await;
    match result {
        Ok((to, msg)) => redirect_with(&to, "ok", &msg),
        Err(e) if e.status.is_client_error() => redirect_with(&back, "error", &e.message),
        Err(e) => ctx.error(&e),
    }
}

/// `GET /<repo>/tags/<tag>`
pub async fn tag(
    State(st): State<Shared>,
    Path((repo, tag)): Path<(String, String)>,
    viewer: Viewer,
    ctx: Ctx,
) -> Response {
    let r = async {
        api_guard(&repo)?;
        names::validate_repo(&repo).map_err(not_found)?;
        names::validate_tag(&tag).map_err(not_found)?;
        let (r2, t2) = (repo.clone(), tag.clone());
        let links = st
            .blocking(move |hub| Ok(hub.catalog().tag_links(&r2, &t2)?))
            .await?;
        let links: Vec<Value> = viewer
            .filter(links)
            .iter()
            .map(|l| {
                let target = l.target.clone().unwrap_or_default();
                let href = match target.split_once('/') {
                    Some((r, n)) => format!("/{}/{}.md", seg(r), seg(n)),
                    None => String::new(),
                };
                json!({"name": l.name, "target": target, "href": href, "size": l.size,
                       "updated": l.updated, "broken": l.broken,
                       "download": format!("/{}/tags/{}/{}", seg(&repo), seg(&tag), seg(&l.name))})
            })
            .collect();
        let owner = ctx.actor.as_ref().is_some_and(|a| a.may_write(&repo));
        Ok(ctx.render(
            "tag.html",
            &format!("{repo} · tag {tag}"),
            json!({"repo": repo, "tag": tag, "links": links, "owner": owner}),
        ))
    }
    .await;
    page_result(&ctx, r)
}

/// Query of `/search`.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SearchQuery {
    q: String,
    page: u64,
}

/// Splits `path` around the part matched by `q` (prefix of the path, or of its base name).
fn highlight(path: &str, q: &str) -> (String, String, String) {
    let start = if q.starts_with('/') {
        0
    } else {
        path.rfind('/').map(|i| i + 1).unwrap_or(0)
    };
    let end = (start + q.len()).min(path.len());
    if path.is_char_boundary(start) && path.is_char_boundary(end) && path[start..end] == *q {
        (
            path[..start].to_string(),
            path[start..end].to_string(),
            path[end..].to_string(),
        )
    } else {
        (path.to_string(), String::new(), String::new())
    }
}

/// `GET /search?q=&page=`: flists by name and files by path inside any flist.
pub async fn search(
    State(st): State<Shared>,
    Query(q): Query<SearchQuery>,
    viewer: Viewer,
    ctx: Ctx,
) -> Response {
    let needle: String = q.q.trim().chars().take(256).collect();
    let page = q.page.min(1000);
    let r = async {
        if needle.is_empty() {
            return Ok(ctx.render("search.html", "Search", json!({"q": ""})));
        }
        let n2 = needle.clone();
        let v2 = viewer.clone();
        let (names_hit, paths) = st
            .blocking(move |hub| {
                let mut names_hit = if page == 0 {
                    hub.catalog().search(&n2, 100)?
                } else {
                    Vec::new()
                };
                // Private repositories: only those this reader may read, and no link
                // whose chain passes through another.
                let readable = v2.readable();
                if readable.is_some() {
                    names_hit.retain(|(r, n)| {
                        v2.sees(r)
                            && match hub.catalog().resolve(r, n) {
                                Ok(res) => v2.sees_all(&res.via),
                                Err(_) => true,
                            }
                    });
                }
                let paths = hub.paths().search_visible(
                    &n2,
                    page * SEARCH_PAGE,
                    SEARCH_PAGE + 1,
                    readable.as_deref(),
                )?;
                Ok((names_hit, paths))
            })
            .await?;
        let more = paths.len() as u64 > SEARCH_PAGE;
        let flists: Vec<Value> = names_hit
            .iter()
            .map(|(r, n)| {
                let (pre, hit, post) = match n.to_lowercase().find(&needle.to_lowercase()) {
                    Some(i) if n.is_char_boundary(i) && n.is_char_boundary(i + needle.len()) => (
                        n[..i].to_string(),
                        n[i..i + needle.len()].to_string(),
                        n[i + needle.len()..].to_string(),
                    ),
                    _ => (n.clone(), String::new(), String::new()),
                };
                json!({"repo": r, "name": n, "pre": pre, "hit": hit, "post": post,
                       "href": format!("/{}/{}.md", seg(r), seg(n))})
            })
            .collect();
        let files: Vec<Value> = paths
            .iter()
            .take(SEARCH_PAGE as usize)
            .map(|h| {
                let (pre, hit, post) = highlight(&h.path, &needle);
                let dir = match h.path.rfind('/') {
                    Some(0) | None => "/".to_string(),
                    Some(i) => h.path[..i].to_string(),
                };
                json!({"repo": h.repo, "name": h.name, "path": h.path, "kind": h.kind,
                       "pre": pre, "hit": hit, "post": post,
                       "href": format!("/{}/{}.md?dir={}#contents", seg(&h.repo), seg(&h.name), super::qv(&dir))})
            })
            .collect();
        let q_enc = super::qv(&needle);
        Ok(ctx.render(
            "search.html",
            &format!("Search: {needle}"),
            json!({
                "q": needle, "flists": flists, "files": files, "page": page,
                "prev": (page > 0).then(|| format!("/search?q={q_enc}&page={}", page - 1)),
                "next": more.then(|| format!("/search?q={q_enc}&page={}", page + 1)),
                "first": page * SEARCH_PAGE + 1,
                "path_mode": needle.starts_with('/'),
            }),
        ))
    }
    .await;
    page_result(&ctx, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highlights_prefixes() {
        assert_eq!(
            highlight("/usr/bin/python3.11", "/usr/bin/py"),
            ("".into(), "/usr/bin/py".into(), "thon3.11".into())
        );
        assert_eq!(
            highlight("/usr/bin/python3.11", "python"),
            ("/usr/bin/".into(), "python".into(), "3.11".into())
        );
    }
}
