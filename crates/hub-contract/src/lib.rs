//! The flist hub's wire contract, written once: the JSON answers and request bodies of its
//! HTTP API (`../shared/spec/hub-api.md`) as serde types with their OpenAPI schemas.
//!
//! - the server (`hub-http`) builds its answers with these types, and generates
//!   `GET /api/openapi.json` from them (`utoipa::ToSchema`);
//! - the typed hub client of `zflist` (`zflist-core`) reads the answers through them.
//!
//! The field order of each type is the order on the wire: existing clients compare the
//! answers byte for byte. Optional fields an answer leaves out are `None` and absent from
//! the JSON (never `null`).
//!
//! ```
//! use hub_contract::{ErrorBody, MePayload, Success};
//!
//! let answer = Success::with(MePayload { username: "alice".into() });
//! let wire = serde_json::to_string(&answer)?;
//! assert_eq!(wire, r#"{"status":"success","payload":{"username":"alice"}}"#);
//! let back: Success<MePayload> = serde_json::from_str(&wire)?;
//! assert_eq!(back.payload.map(|p| p.username).as_deref(), Some("alice"));
//!
//! // errors: `{"status":"error","message":...}`, `message` first for 401 as the old hub did
//! let e = ErrorBody::new("no such flist");
//! assert_eq!(serde_json::to_string(&e)?, r#"{"status":"error","message":"no such flist"}"#);
//! let e = ErrorBody::unauthorized("bad token");
//! assert_eq!(serde_json::to_string(&e)?, r#"{"message":"bad token","status":"error"}"#);
//! # Ok::<(), serde_json::Error>(())
//! ```

use std::collections::BTreeMap;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use utoipa::ToSchema;

/// Routes of the contract whose path is also a key of the server's answer caches: built in
/// one place, so that every reader of a cache (the router, the fast path) uses the same key.
pub mod routes {
    /// `GET /api/flist/<repo>`: the path.
    pub fn listing(repo: &str) -> String {
        format!("/api/flist/{repo}")
    }

    /// The cache key of `GET /api/flist/<repo>`'s answer.
    pub fn listing_key(repo: &str) -> String {
        format!("repo/{repo}")
    }

    /// The cache key of a download's name resolution: `<repo>/<name>`, which is also the
    /// path of the download without its leading `/` (the fast path borrows it from the
    /// request's path).
    pub fn download_key(repo: &str, name: &str) -> String {
        format!("{repo}/{name}")
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn keys_are_the_paths_the_fast_path_borrows() {
            assert_eq!(super::listing("alice"), "/api/flist/alice");
            assert_eq!(super::listing_key("alice"), "repo/alice");
            let path = "/alice/app.flist";
            assert_eq!(super::download_key("alice", "app.flist"), path[1..]);
        }
    }
}

// ----- envelopes -----------------------------------------------------------------------------

/// The `status` of an envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The request did what it asked.
    Success,
    /// It did not (`message` says why).
    Error,
}

/// `{"status":"success"}`, with a `payload` where the route has one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Success<P = Value> {
    /// Always `success`.
    pub status: Status,
    /// The answer of the route, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<P>,
}

impl Success<Value> {
    /// `{"status":"success"}`.
    pub fn done() -> Self {
        Success {
            status: Status::Success,
            payload: None,
        }
    }
}

impl<P> Success<P> {
    /// `{"status":"success","payload":...}`.
    pub fn with(payload: P) -> Self {
        Success {
            status: Status::Success,
            payload: Some(payload),
        }
    }
}

/// The 401 message for a bearer token the hub does not know, in the old hub's words: deployed
/// clients compare it, so it stays; `zflist` explains it to its user.
pub const UNKNOWN_TOKEN: &str = "invalid signature";

/// An error answer on `/api/*` (always JSON, with a real status code).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Always `error`.
    pub status: Status,
    /// What went wrong.
    pub message: String,
    /// Written `message` first (the old hub's 401 answers, which clients compare).
    #[serde(skip)]
    #[schema(ignore)]
    pub message_first: bool,
}

impl ErrorBody {
    /// `{"status":"error","message":...}`.
    pub fn new(message: impl Into<String>) -> Self {
        ErrorBody {
            status: Status::Error,
            message: message.into(),
            message_first: false,
        }
    }

    /// `{"message":...,"status":"error"}`: an authentication failure, as the old hub wrote it.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ErrorBody {
            message_first: true,
            ..ErrorBody::new(message)
        }
    }
}

impl Serialize for ErrorBody {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("ErrorBody", 2)?;
        if self.message_first {
            st.serialize_field("message", &self.message)?;
            st.serialize_field("status", &self.status)?;
        } else {
            st.serialize_field("status", &self.status)?;
            st.serialize_field("message", &self.message)?;
        }
        st.end()
    }
}

// ----- reading -------------------------------------------------------------------------------

/// A repository in `GET /api/repositories`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Repository {
    /// The repository (user or organisation) name.
    pub name: String,
    /// Listed among the official repositories.
    pub official: bool,
    /// Last change, unix seconds.
    pub updated: i64,
}

/// What an entry of a repository is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EntryType {
    /// An uploaded or built flist.
    Regular,
    /// A link to an flist of this or another repository.
    Symlink,
    /// A name pointing to a tag.
    Taglink,
    /// A tag (a set of links).
    Tag,
}

/// An entry in a repository listing (`GET /api/flist/<repo>`, `/api/fileslist`, a tag).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Entry {
    /// `app-1.0.flist` (or the tag name).
    pub name: String,
    /// Size as old clients parse it: `"12.34 KB"`.
    pub size: String,
    /// Last change, unix seconds.
    pub updated: i64,
    /// When the link was made (links only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linktime: Option<i64>,
    /// What the entry is.
    #[serde(rename = "type")]
    pub kind: EntryType,
    /// Where a link points: `x.flist`, `../other/x.flist` or `repo/tags/tag`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The link's target is gone (links only, present only when true).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub broken: bool,
}

/// One path in a dump.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DumpItem {
    /// Size in bytes.
    pub size: u64,
    /// Absolute path in the flist.
    pub path: String,
    /// `regular`, `dir`, `link`, `special`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Permission bits in octal, as the old hub wrote them (`"644"`, `"4755"`).
    pub mode: String,
    /// A symlink's target (links only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// The full contents of an flist (`GET /api/flist/<repo>/<name>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Dump {
    /// Every path.
    pub content: Vec<DumpItem>,
    /// Count of regular files.
    pub regular: u64,
    /// Count of symlinks.
    pub symlink: u64,
    /// Count of directories.
    pub directory: u64,
    /// Count of special files.
    pub special: u64,
    /// Always 0.
    pub failure: u64,
    /// Sum of the file sizes.
    pub fullsize: u64,
}

/// An author signature kept from `upload-flist`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuthorSignature {
    /// The author's public key.
    pub key: String,
    /// Where the signature downloads (`/<repo>/<name>.author.sig`; absent in an upload's
    /// answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// `GET /api/flist/<repo>/<name>/light` (and `INFO`): size, date, type and MD5 of an entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Light {
    /// The entry name.
    pub name: String,
    /// Size of the flist file in bytes.
    pub size: u64,
    /// Last change, unix seconds.
    pub updated: i64,
    /// `regular` or `symlink`.
    #[serde(rename = "type")]
    pub kind: EntryType,
    /// MD5 of the flist file.
    pub md5: String,
    /// When the link was made (links only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linktime: Option<i64>,
    /// The raw link target (links only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Whether the hub signed this flist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed: Option<bool>,
    /// Where the hub's signature downloads (`/<repo>/<name>.sig`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The author's signature, when the flist was uploaded signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_signature: Option<AuthorSignature>,
    /// What a VM boot of the flist would need (kernel, init), as the hub checked it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<Value>,
    /// The formats the entry downloads in: the `.flist` (`size` and `md5` above are its)
    /// and the rfs `.fl` made from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formats: Option<Vec<FormatLink>>,
}

impl Light {
    /// The keys this hub adds to the old hub's `/light` and `INFO` answers (signatures and
    /// VM checks, issue 14; downloadable formats, issue 30): optional, and ignored by old
    /// clients, which read only the keys they know.
    pub const ADDITIONS: &'static [&'static str] =
        &["signed", "signature", "author_signature", "vm", "formats"];
}

/// One format an entry downloads in (`/light`'s `formats`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FormatLink {
    /// `flist` (0-flist: tar.gz of SQLite, 0-db chunks) or `fl` (rfs: SQLite, rfs blocks).
    pub format: String,
    /// Where it downloads (`/<repo>/<name>.flist`, `/<repo>/<name>.fl`).
    pub href: String,
    /// Where its MD5 downloads (`<href>.md5`).
    pub md5_href: String,
}

/// `GET /api/flist/<repo>/<name>/taglink`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TagLink {
    /// `repo/tags/tag`.
    pub target: String,
}

/// The flist's metadata (`backend`, `entrypoint`, `readme`, ...). Never holds passwords.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Metadata(pub BTreeMap<String, Value>);

/// The payload of `GET /api/flist/me`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MePayload {
    /// The active identity.
    pub username: String,
}

/// `GET /healthz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok` (the process answers).
    pub status: String,
}

/// `GET /readyz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// `ok` or `error`.
    pub status: String,
    /// `catalog`, `chunk_store` and `chunk_store_writes`: `ok` or what is wrong; only for
    /// administrators and clients on the hub's machine (absent for others).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<String, String>,
}

// ----- writing -------------------------------------------------------------------------------

/// The payload of an upload's answer (`upload`, `upload-flist`, `docker`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Published {
    /// The stored entry's name.
    pub name: String,
    /// What the flist holds (`regular`, `directory`, `symlink`, `special`, `size`, ...;
    /// absent from an asynchronous conversion's first answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Value>,
    /// The job to follow (`/listen/<job>`), for conversions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// The author signature kept with a signed `upload-flist`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_signature: Option<AuthorSignature>,
}

/// Body of `POST /api/chunks/missing`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MissingKeys {
    /// Chunk keys, 32 hex digits.
    pub keys: Vec<String>,
}

/// The payload of `POST /api/chunks/missing`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Missing {
    /// The keys the hub's store lacks (to upload).
    pub missing: Vec<String>,
}

/// The payload of `PUT /api/chunks/<key>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChunkStored {
    /// The chunk key, hex.
    pub key: String,
    /// False when the store had the chunk already (it is not rewritten).
    pub written: bool,
}

/// Multipart body of the uploads.
#[derive(Deserialize, ToSchema)]
pub struct UploadForm {
    /// The archive (`.tar.gz`, `.tar`, `.tar.zst`, `.tar.xz`, `.tar.bz2`) or `.flist`.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// Form of `POST /api/flist/me/docker`.
#[derive(Deserialize, ToSchema)]
pub struct DockerForm {
    /// The image reference (`alpine:3.19`, `registry/repo@sha256:...`).
    pub image: String,
    /// `linux/amd64`-style platform.
    pub platform: Option<String>,
    /// Registry user name.
    pub username: Option<String>,
    /// Registry password (never stored).
    pub password: Option<String>,
    /// Answer at once with the job id instead of waiting.
    #[serde(rename = "async")]
    pub run_async: Option<bool>,
}

/// Form of `POST /login`.
#[derive(Deserialize, ToSchema)]
pub struct LoginForm {
    /// Local account name (with `password`).
    pub username: Option<String>,
    /// Its password.
    pub password: Option<String>,
    /// Or an API token.
    pub token: Option<String>,
    /// The local path to go back to.
    pub next: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// [`Light::ADDITIONS`] is exactly what a full answer has beyond the old hub's keys.
    #[test]
    fn light_additions_are_the_keys_beyond_the_old_answer() {
        let full = Light {
            name: "a.flist".into(),
            size: 1,
            updated: 2,
            kind: EntryType::Symlink,
            md5: "m".into(),
            linktime: Some(3),
            target: Some("b.flist".into()),
            signed: Some(true),
            signature: Some("/r/a.flist.sig".into()),
            author_signature: Some(AuthorSignature {
                key: "k".into(),
                signature: None,
            }),
            vm: Some(json!({})),
            formats: Some(vec![]),
        };
        let v = serde_json::to_value(&full).expect("serialises");
        let old = [
            "name", "size", "updated", "type", "md5", "linktime", "target",
        ];
        let added: Vec<&str> = v
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .filter(|k| !old.contains(k))
            .collect();
        assert_eq!(added, Light::ADDITIONS);
    }

    #[test]
    fn optional_fields_are_absent_not_null() {
        let e = Entry {
            name: "a.flist".into(),
            size: "1.00 KB".into(),
            updated: 1,
            linktime: None,
            kind: EntryType::Regular,
            target: None,
            broken: false,
        };
        assert_eq!(
            serde_json::to_string(&e).expect("json"),
            r#"{"name":"a.flist","size":"1.00 KB","updated":1,"type":"regular"}"#
        );
        let l = Entry {
            linktime: Some(2),
            kind: EntryType::Symlink,
            target: Some("b.flist".into()),
            broken: true,
            ..e
        };
        assert_eq!(
            serde_json::to_value(&l).expect("json"),
            json!({"name":"a.flist","size":"1.00 KB","updated":1,"linktime":2,"type":"symlink","target":"b.flist","broken":true})
        );
        assert_eq!(
            serde_json::to_string(&Success::done()).expect("json"),
            r#"{"status":"success"}"#
        );
    }
}
