//! How read paths name entries, as the old hub answered them: a name without `.flist`
//! finds `<name>.flist`, an unknown repository is "user not found", an unknown entry (or one
//! that resolves to nothing) is "source not found".

use hub_repo::{names, Entry, EntryKind, Hub, RepoError, Resolved};

use crate::error::ApiError;

/// 404 `{"status":"error","message":"source not found"}` (the old hub's words).
pub fn source_not_found() -> ApiError {
    ApiError::not_found("source not found")
}

/// 404 `{"status":"error","message":"user not found"}` (the old hub's words).
pub fn user_not_found() -> ApiError {
    ApiError::not_found("user not found")
}

/// The entry `repo/name` names on a read path: `name` itself, or `name.flist` when `name`
/// has no `.flist` suffix and is no entry. Invalid names are 400.
pub fn find_entry(hub: &Hub, repo: &str, name: &str) -> Result<Entry, ApiError> {
    names::validate_repo(repo)?;
    names::validate_entry(name)?;
    if let Some(e) = hub.entry(repo, name)? {
        return Ok(e);
    }
    if !name.ends_with(".flist") {
        let with = format!("{name}.flist");
        if names::validate_flist(&with).is_ok() {
            if let Some(e) = hub.entry(repo, &with)? {
                return Ok(e);
            }
        }
    }
    if !hub.repository_exists(repo)? {
        return Err(user_not_found());
    }
    Err(source_not_found())
}

/// Like [`find_entry`], for an flist (regular or link) resolved down to its stored file.
/// Taglinks and links that resolve to nothing are "source not found".
pub fn find_flist(hub: &Hub, repo: &str, name: &str) -> Result<(Entry, Resolved), ApiError> {
    let e = find_entry(hub, repo, name)?;
    if matches!(e.kind, EntryKind::Taglink { .. }) {
        return Err(source_not_found());
    }
    match hub.resolve(&e.repo, &e.name) {
        Ok(r) => Ok((e, r)),
        Err(RepoError::NotFound(_) | RepoError::Cycle(_) | RepoError::Invalid(_)) => {
            Err(source_not_found())
        }
        Err(other) => Err(other.into()),
    }
}
