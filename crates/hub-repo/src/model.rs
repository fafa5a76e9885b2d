//! Plain data types returned by the catalog.

use serde::Serialize;

/// What an entry of a repository is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum EntryKind {
    /// An uploaded or built flist file, stored by content.
    Regular {
        /// Hex sha256 of the file (its content address).
        sha256: String,
        /// Hex md5 of the file.
        md5: String,
        /// Size in bytes.
        size: u64,
    },
    /// A link to an entry of the same repository or (crosslink) of another one.
    Symlink {
        /// Repository of the target.
        target_repo: String,
        /// Entry name of the target.
        target_name: String,
        /// Made by `crosslink`: the old hub stored such a link as `../<repo>/<name>` even
        /// inside its own repository, and `/light` answers that raw form (listings show
        /// `<repo>/<name>`); a `link` is stored as the bare `<name>`.
        crosslink: bool,
    },
    /// A name pointing at a tag of some repository.
    Taglink {
        /// Repository holding the tag.
        target_repo: String,
        /// The tag.
        tag: String,
    },
}

/// One entry of a repository, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Repository.
    pub repo: String,
    /// Entry name.
    pub name: String,
    /// Kind and its data.
    pub kind: EntryKind,
    /// Unix time of the last change of the entry.
    pub updated: i64,
    /// Unix time the link was made (links only).
    pub linktime: Option<i64>,
    /// Who uploaded it (regular entries).
    pub uploader: Option<String>,
    /// Where it came from (archive name, image, merge sources ...).
    pub source: Option<String>,
}

/// A repository and when it last changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RepoInfo {
    /// Repository name.
    pub name: String,
    /// Unix time of its last change.
    pub updated: i64,
}

/// Kinds of listed items.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ListedKind {
    /// A regular flist.
    Regular,
    /// A link (same or cross repository).
    Symlink,
    /// A link to a tag.
    Taglink,
    /// A tag of the repository.
    Tag,
}

/// One item of a repository listing, links already resolved for size and time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Listed {
    /// Entry or tag name.
    pub name: String,
    /// What it is.
    pub kind: ListedKind,
    /// Size in bytes of the (resolved) flist; 0 for tags, taglinks and broken links.
    pub size: u64,
    /// Unix time of the (resolved) flist's last change.
    pub updated: i64,
    /// When the link was made (links only).
    pub linktime: Option<i64>,
    /// Link target as clients see it: `x.flist`, `other/x.flist`, `repo/tags/tag`.
    pub target: Option<String>,
    /// True when a link does not resolve (dangling or cyclic).
    pub broken: bool,
    /// The repositories a link or taglink reaches (for a tag, a taglink or a link of a tag:
    /// every repository its chain passes through, the listed repository excepted); empty
    /// for regular entries and tags. A reader sees the item only if it may read them all.
    #[serde(skip)]
    pub via: Vec<String>,
}

/// A name resolved through links down to a stored flist file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Resolved {
    /// Repository of the regular entry reached.
    pub repo: String,
    /// Name of the regular entry reached.
    pub name: String,
    /// Content address.
    pub sha256: String,
    /// Hex md5.
    pub md5: String,
    /// Size in bytes.
    pub size: u64,
    /// Unix time of the regular entry's last change.
    pub updated: i64,
    /// Uploader of the regular entry.
    pub uploader: Option<String>,
    /// Source of the regular entry.
    pub source: Option<String>,
    /// Every repository the resolution passed through (the one named first, the links'
    /// and taglinks' repositories, the entry's): a reader must be allowed to read each.
    #[serde(skip)]
    pub via: Vec<String>,
}

/// One record of the append-only audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Monotonic id (order of commits).
    pub id: i64,
    /// Unix time.
    pub ts: i64,
    /// Authenticated user.
    pub actor: String,
    /// Identity it acted as.
    pub acting_as: String,
    /// Operation (`upload`, `link`, `crosslink`, `rename`, `delete`, `promote`, `tag-add`,
    /// `tag-remove`, `crosstag`, `crosstag-remove`, `merge`, `import`).
    pub action: String,
    /// Repository written.
    pub repo: String,
    /// Entry (or tag) name written.
    pub name: String,
    /// Operation parameters as JSON.
    pub detail: serde_json::Value,
}

/// What the uploader provides along with a flist file.
#[derive(Clone, Debug, Default)]
pub struct FlistInfo {
    /// Where the flist came from (original archive name, image, ...).
    pub source: Option<String>,
    /// Flist metadata as a JSON object of strings, when already known.
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// The `find`-style dump as JSON, when already known.
    pub dump: Option<serde_json::Value>,
}

/// Result of [`crate::Hub::integrity_check`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct IntegrityReport {
    /// Output of `PRAGMA integrity_check` and `foreign_key_check` when not clean.
    pub sqlite: Vec<String>,
    /// Missing or corrupt flist files, by entry.
    pub problems: Vec<String>,
    /// Regular entries checked.
    pub entries_checked: u64,
    /// Distinct files hashed.
    pub blobs_checked: u64,
}

impl IntegrityReport {
    /// True when nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.sqlite.is_empty() && self.problems.is_empty()
    }
}
