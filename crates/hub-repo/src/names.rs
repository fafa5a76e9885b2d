//! Name validation for repositories, flists, tags and taglinks (the grammar of
//! `hub-api.md`, "Concepts").
//!
//! - Repositories: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}` (`alice`, `bob.3bot`, `tf-zos`)
//!   (route names such as `me` or `api` are refused where users and repositories are created).
//! - Flists: 1–255 bytes of UTF-8 ending in `.flist`, made of letters, digits and
//!   `. _ - + : @ ,` (`zos:production-3:latest.flist`, `base:latest.flist`).
//! - Tags and taglinks: the same characters, at most 255 bytes; a taglink name does not end
//!   in `.flist` (taglinks live in the same namespace as flists).
//!
//! Everywhere: never `.`, `..`, `/`, `\`, NUL or another control character, so a name can
//! never walk a path.

use crate::RepoError;

/// Longest flist, tag or taglink name in bytes.
pub const MAX_NAME: usize = 255;

fn invalid(what: &'static str, name: &str, reason: &'static str) -> RepoError {
    RepoError::InvalidName {
        what,
        name: name.to_string(),
        reason,
    }
}

fn check_repo(what: &'static str, name: &str) -> Result<(), RepoError> {
    let bytes = name.as_bytes();
    let Some(first) = bytes.first() else {
        return Err(invalid(what, name, "empty"));
    };
    if bytes.len() > 64 {
        return Err(invalid(what, name, "too long (64 bytes at most)"));
    }
    if !first.is_ascii_alphanumeric() {
        return Err(invalid(what, name, "must start with a letter or digit"));
    }
    if name.contains("..") {
        return Err(invalid(what, name, "`..` is not allowed"));
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(invalid(
            what,
            name,
            "only letters, digits and . _ - are allowed",
        ));
    }
    Ok(())
}

/// The flist/tag/taglink character rules.
fn check_name(what: &'static str, name: &str) -> Result<(), RepoError> {
    if name.is_empty() {
        return Err(invalid(what, name, "empty"));
    }
    if name.len() > MAX_NAME {
        return Err(invalid(what, name, "too long (255 bytes at most)"));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(what, name, "control characters are not allowed"));
    }
    if name.contains(['/', '\\']) {
        return Err(invalid(what, name, "`/` and `\\` are not allowed"));
    }
    if name.contains("..") {
        return Err(invalid(what, name, "`..` is not allowed"));
    }
    if name == "." {
        return Err(invalid(what, name, "`.` is not a name"));
    }
    if !name
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | ':' | '@' | ','))
    {
        return Err(invalid(
            what,
            name,
            "only letters, digits and . _ - + : @ , are allowed",
        ));
    }
    Ok(())
}

/// Validates a repository (user or organisation) name.
pub fn validate_repo(name: &str) -> Result<(), RepoError> {
    check_repo("repository", name)
}

/// Validates a tag name.
pub fn validate_tag(name: &str) -> Result<(), RepoError> {
    check_name("tag", name)
}

/// Validates a flist entry name (must end in `.flist`).
pub fn validate_flist(name: &str) -> Result<(), RepoError> {
    check_name("flist", name)?;
    if !name.ends_with(".flist") || name.len() == ".flist".len() {
        return Err(invalid("flist", name, "must end in .flist"));
    }
    Ok(())
}

/// Validates a taglink name (like a tag, and not ending in `.flist`).
pub fn validate_taglink(name: &str) -> Result<(), RepoError> {
    check_name("taglink", name)?;
    if name.ends_with(".flist") {
        return Err(invalid(
            "taglink",
            name,
            "a taglink name must not end in .flist",
        ));
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

/// Names the web routes use, refused as user (and new repository) names: every literal first
/// path segment of the route table (`hub-http/tests/hostile.rs` checks it) and a few kept for
/// routes to come.
pub const RESERVED: &[&str] = &[
    "account",
    "admin",
    "api",
    "api-docs",
    "auth",
    "callback_threebot",
    "callback_token",
    "chunks",
    "docker-convert",
    "favicon.ico",
    "health",
    "healthz",
    "listen",
    "login",
    "login-method",
    "login-threebot",
    "login-token",
    "logout",
    "me",
    "merge",
    "metrics",
    "readonly",
    "readyz",
    "register",
    "robots.txt",
    "search",
    "session",
    "sessions",
    "settings",
    "signin",
    "signup",
    "static",
    "tags",
    "token",
    "tokens",
    "upload",
    "upload-flist",
    "user",
    "users",
];

/// True for a name the web routes use (compared case-insensitively).
pub fn is_reserved(name: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name))
}

/// Validates a new user name: a repository name that is not [`RESERVED`]. Also used for
/// organisations and for a repository's first write: no repository is ever created under a
/// route name.
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
        for n in ["alice", "bob.3bot", "official-apps", "a_b", "A9", "tf-zos"] {
            validate_repo(n).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
        let max = format!("{}.flist", "a".repeat(249));
        for n in [
            "app-1.0.flist",
            "c++.flist",
            "x_y.flist",
            "ubuntu-22.04.flist",
            "zos:production-3:latest.flist",
            "base:latest.flist",
            "threefoldtech-ubuntu-22.04.flist",
            "user@host,v1.flist",
            "-x.flist",
            "ünïcødé.flist",
            max.as_str(),
        ] {
            validate_flist(n).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
        validate_taglink("latest").expect("taglink name");
        validate_taglink("prod:3").expect("taglink name with :");
        validate_tag("v3.1.0").expect("tag");
        validate_tag("v1:latest").expect("tag with :");
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
            "a:b",
        ] {
            assert!(validate_repo(n).is_err(), "{n:?} accepted");
        }
        let too_long = format!("{}.flist", "a".repeat(250));
        for n in [
            "x",
            ".flist",
            "<script>alert(1)</script>.flist",
            "../x.flist",
            "..",
            "a/b.flist",
            "a\\b.flist",
            "a\u{7}.flist",
            "a\tb.flist",
            "a\0.flist",
            "a\n.flist",
            "a\u{85}.flist",
            "a..flist",
            "a b.flist",
            ".",
            "a%2f.flist",
            "a;b.flist",
            too_long.as_str(),
        ] {
            assert!(validate_flist(n).is_err(), "{n:?} accepted");
        }
        for n in [
            "me",
            "api",
            "static",
            "listen",
            "Login",
            "TOKEN",
            "upload-flist",
        ] {
            validate_repo(n).unwrap_or_else(|e| panic!("{n}: {e}"));
            let e = validate_user(n).expect_err(n).to_string();
            assert!(e.contains("reserved"), "{n}: {e}");
        }
        validate_user("alice").expect("an ordinary name");
        validate_user("memo").expect("a name that only starts like a route");
        assert!(validate_taglink("x.flist").is_err());
        assert!(validate_tag("..").is_err());
        assert!(validate_tag("a/b").is_err());
    }
}
