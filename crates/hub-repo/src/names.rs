//! Name validation for repositories, flists, tags and taglinks.
//!
//! Repositories and tags: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`. Flists:
//! `[A-Za-z0-9][A-Za-z0-9._+-]{0,127}` ending in `.flist`. `..` is refused everywhere so a
//! name can never walk a path, and taglink names must not end in `.flist` (they live in the
//! same namespace as flists).

use crate::RepoError;

fn check(what: &'static str, name: &str, max: usize, extra: &[u8]) -> Result<(), RepoError> {
    let bad = |reason| {
        Err(RepoError::InvalidName {
            what,
            name: name.to_string(),
            reason,
        })
    };
    let bytes = name.as_bytes();
    let Some(first) = bytes.first() else {
        return bad("empty");
    };
    if bytes.len() > max {
        return bad("too long");
    }
    if !first.is_ascii_alphanumeric() {
        return bad("must start with a letter or digit");
    }
    if bytes.iter().any(|b| b.is_ascii_control()) {
        return bad("control characters are not allowed");
    }
    if name.contains("..") {
        return bad("`..` is not allowed");
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') || extra.contains(b))
    {
        return bad("only letters, digits and . _ - are allowed");
    }
    Ok(())
}

/// Validates a repository (user or organisation) name.
pub fn validate_repo(name: &str) -> Result<(), RepoError> {
    check("repository", name, 64, &[])
}

/// Validates a tag name.
pub fn validate_tag(name: &str) -> Result<(), RepoError> {
    check("tag", name, 64, &[])
}

/// Validates a flist entry name (must end in `.flist`).
pub fn validate_flist(name: &str) -> Result<(), RepoError> {
    check("flist", name, 128, b"+")?;
    if !name.ends_with(".flist") || name.len() == ".flist".len() {
        return Err(RepoError::InvalidName {
            what: "flist",
            name: name.to_string(),
            reason: "must end in .flist",
        });
    }
    Ok(())
}

/// Validates a taglink name (like a tag, and not ending in `.flist`).
pub fn validate_taglink(name: &str) -> Result<(), RepoError> {
    check("taglink", name, 64, &[])?;
    if name.ends_with(".flist") {
        return Err(RepoError::InvalidName {
            what: "taglink",
            name: name.to_string(),
            reason: "a taglink name must not end in .flist",
        });
    }
    Ok(())
}

/// Validates any entry name: a flist name or a taglink name.
pub fn validate_entry(name: &str) -> Result<(), RepoError> {
    if name.ends_with(".flist") {
        validate_flist(name)
    } else {
        validate_taglink(name)
    }
}

/// Names the web routes use, refused as user (and new repository) names.
pub const RESERVED: &[&str] = &[
    "api",
    "api-docs",
    "callback_threebot",
    "callback_token",
    "chunks",
    "docker-convert",
    "healthz",
    "listen",
    "login",
    "login-method",
    "login-threebot",
    "logout",
    "me",
    "merge",
    "metrics",
    "readyz",
    "search",
    "static",
    "tags",
    "token",
    "upload",
    "upload-flist",
];

/// True for a name the web routes use (compared case-insensitively).
pub fn is_reserved(name: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name))
}

/// Validates a new user name: a repository name that is not [`RESERVED`].
pub fn validate_user(name: &str) -> Result<(), RepoError> {
    validate_repo(name)?;
    if is_reserved(name) {
        return Err(RepoError::InvalidName {
            what: "user",
            name: name.to_string(),
            reason: "reserved for the hub's own pages",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_good_names() {
        for n in ["alice", "bob.3bot", "official-apps", "a_b", "A9"] {
            validate_repo(n).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
        for n in [
            "app-1.0.flist",
            "c++.flist",
            "x_y.flist",
            "ubuntu-22.04.flist",
        ] {
            validate_flist(n).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
        validate_taglink("latest").expect("taglink name");
    }

    #[test]
    fn refuses_hostile_names() {
        let long = "a".repeat(65);
        for n in [
            "",
            "<script>",
            "..",
            "a/b",
            "a\nb",
            "a\0b",
            ".hidden",
            "-x",
            "a..b",
            long.as_str(),
            "é",
        ] {
            assert!(validate_repo(n).is_err(), "{n:?} accepted");
        }
        for n in [
            "x",
            ".flist",
            "<script>alert(1)</script>.flist",
            "../x.flist",
            "a/b.flist",
            "a\u{7}.flist",
            "a\tb.flist",
            "a..flist",
            "a b.flist",
        ] {
            assert!(validate_flist(n).is_err(), "{n:?} accepted");
        }
        assert!(validate_taglink("x.flist").is_err());
    }
}
