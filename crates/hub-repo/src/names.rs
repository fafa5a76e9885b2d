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
//!
//! Look-alikes, checked when a name is created (not on reads, so nothing stored becomes
//! unreachable):
//! - users, organisations and repositories are unique regardless of ASCII case: `Alice` is
//!   refused beside `alice` ([`fold_repo`]);
//! - flist, tag and taglink names (which may hold non-ASCII letters) follow a conservative
//!   rule against homographs ([`check_new_entry_name`]): a name with a word whose letters
//!   mix Latin with Cyrillic or Greek (`аpp` with a Cyrillic `а`) is refused (`café-кафе`,
//!   one script a word, is fine), and a new name whose
//!   [`skeleton`] (case folded, Cyrillic and Greek letters that look like Latin ones mapped
//!   to them) equals the skeleton of another entry of the same repository is refused
//!   (`ехе.flist` in Cyrillic beside `exe.flist`). Other scripts (CJK, Arabic ...) are
//!   untouched: they have no Latin look-alikes in common fonts.

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
    "callback_link",
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

/// The case-folded form under which users, organisations and repositories must be unique.
pub fn fold_repo(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// Cyrillic and Greek letters drawn like a Latin letter in common fonts, and that letter.
const LOOKALIKES: &[(char, char)] = &[
    // Cyrillic
    ('а', 'a'),
    ('в', 'b'),
    ('е', 'e'),
    ('ё', 'e'),
    ('һ', 'h'),
    ('і', 'i'),
    ('ї', 'i'),
    ('ј', 'j'),
    ('к', 'k'),
    ('м', 'm'),
    ('н', 'h'),
    ('о', 'o'),
    ('р', 'p'),
    ('с', 'c'),
    ('ѕ', 's'),
    ('т', 't'),
    ('у', 'y'),
    ('х', 'x'),
    ('ԁ', 'd'),
    ('ԛ', 'q'),
    ('ԝ', 'w'),
    ('ӏ', 'l'),
    ('ү', 'y'),
    ('ɡ', 'g'),
    // Greek
    ('α', 'a'),
    ('β', 'b'),
    ('ε', 'e'),
    ('η', 'n'),
    ('ι', 'i'),
    ('κ', 'k'),
    ('ν', 'v'),
    ('ο', 'o'),
    ('ρ', 'p'),
    ('τ', 't'),
    ('υ', 'u'),
    ('χ', 'x'),
    ('ζ', 'z'),
    ('μ', 'u'),
];

/// Which family of look-alike letters a character belongs to.
fn script(c: char) -> u8 {
    match c {
        'a'..='z' | 'A'..='Z' => 1,
        '\u{0400}'..='\u{052F}' => 2, // Cyrillic (and supplement)
        '\u{0370}'..='\u{03FF}' => 3, // Greek
        _ => 0,
    }
}

/// The form under which entry names of a repository must differ: lower case, with Cyrillic
/// and Greek letters that look like Latin ones replaced by them. One character for one (a
/// letter whose lower case is longer, `İ`, stays), so only names as long can collide.
pub fn skeleton(name: &str) -> String {
    name.chars()
        .map(|c| {
            let mut l = c.to_lowercase();
            match (l.next(), l.next()) {
                (Some(one), None) => one,
                _ => c,
            }
        })
        .map(|c| {
            LOOKALIKES
                .iter()
                .find(|(from, _)| *from == c)
                .map_or(c, |(_, to)| *to)
        })
        .collect()
}

/// The homograph rule for a new flist, tag or taglink name (see the module notes): refuses
/// a name with a word (a run of letters) that mixes Latin letters with Cyrillic or Greek
/// ones. `existing` are the names already in the repository; a different name with the
/// same [`skeleton`] is refused.
pub fn check_new_entry_name<'a>(
    what: &'static str,
    name: &str,
    existing: impl IntoIterator<Item = &'a str>,
) -> Result<(), RepoError> {
    // (the `.flist` suffix is the format's, not part of the name's spelling)
    let stem = name.strip_suffix(".flist").unwrap_or(name);
    // Word by word (`café-кафе` is two honest words), letters of one family only.
    for word in stem.split(|c: char| !c.is_alphabetic()) {
        let mut scripts = word.chars().map(script).filter(|s| *s != 0);
        if let Some(first) = scripts.next() {
            if scripts.any(|s| s != first) {
                return Err(invalid(
                    what,
                    name,
                    "has a word mixing Latin letters with Cyrillic or Greek ones (a look-alike of another name)",
                ));
            }
        }
    }
    let sk = skeleton(name);
    if existing.into_iter().any(|e| e != name && skeleton(e) == sk) {
        return Err(invalid(
            what,
            name,
            "looks like another name of the repository (differs only by case or look-alike letters)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alikes_are_refused() {
        // `аpp` with a Cyrillic а mixes scripts.
        assert!(check_new_entry_name("flist", "\u{430}pp.flist", []).is_err());
        // all-Cyrillic `ехе` looks like `exe` beside it, but not alone
        let exe = "\u{435}\u{445}\u{435}.flist";
        assert!(check_new_entry_name("flist", exe, ["exe.flist"]).is_err());
        assert!(check_new_entry_name("flist", exe, ["app.flist"]).is_ok());
        assert!(check_new_entry_name("flist", "exe.flist", [exe]).is_err());
        // case only
        assert!(check_new_entry_name("flist", "App.flist", ["app.flist"]).is_err());
        // the same name again (a replacement) and other scripts are fine
        assert!(check_new_entry_name("flist", "app.flist", ["app.flist"]).is_ok());
        assert!(check_new_entry_name("flist", "\u{5e94}\u{7528}.flist", ["app.flist"]).is_ok());
        // ordinary non-ASCII names, one script a word
        assert!(check_new_entry_name("flist", "caf\u{e9}.flist", ["app.flist"]).is_ok());
        let two = "caf\u{e9}-\u{43a}\u{430}\u{444}\u{435}.flist";
        assert!(check_new_entry_name("flist", two, ["app.flist"]).is_ok());
        assert!(check_new_entry_name("flist", "x-\u{430}pp.flist", []).is_err());
        assert_eq!(fold_repo("Alice"), "alice");
    }

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
