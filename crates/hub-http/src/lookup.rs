//! How paths name entries, as the old hub answered them: on a read path a name without
//! `.flist` finds `<name>.flist`, an unknown repository is "user not found", an unknown entry
//! (or one that resolves to nothing) is "source not found"; on a write path every flist name
//! given bare means `<name>.flist` ([`flist_name`], [`entry_name`], [`merge_source`]).
//!
//! An `<name>.fl` name, read or write, means the entry `<name>.flist`: the catalog holds
//! `.flist` entries only and serves each also as an rfs `.fl` (see [`crate::formats`]), so
//! `zflist hub symlink app.fl lnk.fl` links the entry `app.flist` as `lnk.flist`.

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

/// The flist a write names: `name` when it ends in `.flist`, else `<name>.flist`. The old hub
/// passed every flist name of every write (link name and source, rename, promote, delete,
/// merge target and sources, tag link name and target) through this rule, and the reference
/// client pastes names as typed (`zflist hub symlink app lnk`). Nothing is validated here:
/// the catalog validates the result as before (`..`, `/`, NUL, control characters refused).
/// An `.fl` name is its entry's `.flist` name (`app.fl` → `app.flist`).
pub fn flist_name(name: &str) -> String {
    if name.ends_with(".flist") {
        return name.to_string();
    }
    let of_fl = crate::formats::flist_name_of(name);
    if of_fl != name {
        return of_fl;
    }
    format!("{name}.flist")
}

/// The entry a `delete` or `rename` of `repo/name` means: `<name>.flist` when that exists or
/// `name` is no entry either, else `name` as given (a taglink, whose name is no flist name).
/// The old hub tried the flist first too.
pub fn entry_name(hub: &Hub, repo: &str, name: &str) -> Result<String, ApiError> {
    let flist = flist_name(name);
    if flist == name {
        return Ok(flist);
    }
    if names::validate_flist(&flist).is_err() {
        return Ok(name.to_string()); // refused by the catalog, under the name given
    }
    if hub.catalog().entry(repo, &flist)?.is_none()
        && names::validate_taglink(name).is_ok()
        && hub.catalog().entry(repo, name)?.is_some()
    {
        return Ok(name.to_string());
    }
    Ok(flist)
}

/// A merge source `"repo/name"` (`name` may be bare): its repository and flist name, both
/// validated.
pub fn merge_source(s: &str) -> Result<(String, String), ApiError> {
    let (r, n) = s
        .split_once('/')
        .ok_or_else(|| ApiError::bad_request(format!("{s:?} is not repo/name.flist")))?;
    let n = flist_name(n);
    names::validate_repo(r)?;
    names::validate_flist(&n)?;
    Ok((r.to_string(), n))
}

/// The entry `repo/name` names on a read path: `name` itself, or its flist name
/// ([`flist_name`]: `name.flist`, or `x.flist` for `x.fl`) when `name` has no `.flist`
/// suffix and is no entry. Invalid names are 400.
pub fn find_entry(hub: &Hub, repo: &str, name: &str) -> Result<Entry, ApiError> {
    names::validate_repo(repo)?;
    names::validate_entry(name)?;
    if let Some(e) = hub.catalog().entry(repo, name)? {
        return Ok(e);
    }
    if !name.ends_with(".flist") {
        let with = flist_name(name);
        if names::validate_flist(&with).is_ok() {
            if let Some(e) = hub.catalog().entry(repo, &with)? {
                return Ok(e);
            }
        }
    }
    if !hub.catalog().repository_exists(repo)? {
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
    match hub.catalog().resolve(&e.repo, &e.name) {
        Ok(r) => Ok((e, r)),
        Err(RepoError::NotFound(_) | RepoError::Cycle(_) | RepoError::Invalid(_)) => {
            Err(source_not_found())
        }
        Err(other) => Err(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::flist_name;

    #[test]
    fn write_names_are_flist_names() {
        assert_eq!(flist_name("app"), "app.flist");
        assert_eq!(flist_name("app.flist"), "app.flist");
        // An .fl name is the same entry's .flist.
        assert_eq!(flist_name("app.fl"), "app.flist");
        assert_eq!(flist_name("zos:v1.FL"), "zos:v1.flist");
        assert_eq!(flist_name("fl"), "fl.flist");
        assert_eq!(flist_name("app.flx"), "app.flx.flist");
    }
}
