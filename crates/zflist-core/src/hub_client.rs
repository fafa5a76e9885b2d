//! `zflist hub ...`: the hub client, compatible with the reference `zflist hub` (2.3).
//!
//! Same subcommands, argument order and environment as the reference client
//! (`shared/spec/zflist-hub-client.md`): `ZFLIST_HUB` (base URL, default
//! `https://hub.grid.tf`), `ZFLIST_HUB_TOKEN` (sent as `Authorization: Bearer`),
//! `ZFLIST_HUB_USER` (sent as the cookie `active-user`). Every subcommand but `readlink` and
//! `taglink` first checks `GET /api/flist/me` answers
//! `{"status":"success","payload":{"username"}}` ("hub authentication failed" otherwise).
//! Arguments are pasted into paths as given, like the reference (names with `:` reach the
//! server raw).
//!
//! Additions: `--hub` / `--token` flags, and `hub login --token-stdin`, which checks a token
//! and keeps it (mode 0600) in the user's configuration directory
//! (`$XDG_CONFIG_HOME/zflist/hub-tokens.json`, one token per hub URL) for when neither the
//! flag nor the environment gives one; `hub logout` forgets it.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use hub_contract::{EntryType, ErrorBody, Light, MePayload, Status, Success, TagLink};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::error::{Error, ErrorKind, Result};
use crate::response::Response;

/// The hub used when neither `--hub` nor `ZFLIST_HUB` names one.
pub const DEFAULT_HUB: &str = "https://hub.grid.tf";

/// The user agent: the reference's product token first (servers that look for
/// `zflist/2.3.0` treat us the same), then ours.
pub const USER_AGENT: &str = concat!("zflist/2.3.0 zflist-rs/", env!("CARGO_PKG_VERSION"));

/// File, in the configuration directory, holding tokens stored by `hub login --token-stdin`.
pub const TOKEN_FILE: &str = "hub-tokens.json";

const FUNCTION: &str = "hub";

/// Where the hub is and who talks to it: the flags, completed from the environment by
/// [`HubOptions::with_env`].
// the fields' docs are clap's help text, printed in a terminal
#[allow(rustdoc::bare_urls)]
#[derive(clap::Args, Clone, Debug, Default)]
pub struct HubOptions {
    /// Hub base URL (default: $ZFLIST_HUB, else https://hub.grid.tf).
    #[arg(long = "hub", value_name = "URL")]
    pub hub: Option<String>,
    /// API token (default: $ZFLIST_HUB_TOKEN, else the one `hub login --token-stdin` stored).
    #[arg(long, value_name = "TOKEN", allow_hyphen_values = true)]
    pub token: Option<String>,
    /// `ZFLIST_HUB_USER` (or `push --repo`): sent as the cookie `active-user`.
    #[arg(skip)]
    pub user: Option<String>,
    /// Directory of the token file (default: [`default_config_dir`]).
    #[arg(skip)]
    pub config_dir: Option<PathBuf>,
}

/// `$XDG_CONFIG_HOME/zflist`, else `$HOME/.config/zflist`.
pub fn default_config_dir() -> Option<PathBuf> {
    crate::dirs::config_dir()
}

impl HubOptions {
    /// Fills what the flags left out from `ZFLIST_HUB` (its first entry: it may list
    /// mirrors, comma-separated), `ZFLIST_HUB_TOKEN` and `ZFLIST_HUB_USER`.
    pub fn with_env(mut self) -> Self {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if self.hub.is_none() {
            self.hub = env("ZFLIST_HUB").and_then(|v| {
                v.split(',')
                    .map(str::trim)
                    .find(|h| !h.is_empty())
                    .map(str::to_string)
            });
        }
        if self.token.is_none() {
            self.token = env("ZFLIST_HUB_TOKEN");
        }
        if self.user.is_none() {
            self.user = env("ZFLIST_HUB_USER");
        }
        self
    }

    /// The hub base URL, without a trailing slash.
    pub fn base(&self) -> String {
        let b = self
            .hub
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_HUB);
        b.trim_end_matches('/').to_string()
    }

    fn config_dir(&self) -> Option<PathBuf> {
        self.config_dir.clone().or_else(default_config_dir)
    }

    /// The token to send: the given one, else the one stored for this hub; "missing hub
    /// token" when there is none.
    pub fn token(&self, function: &str) -> Result<String> {
        if let Some(t) = self
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            return Ok(t.to_string());
        }
        if let Some(dir) = self.config_dir() {
            if let Some(t) = TokenStore::new(&dir).get(&self.base(), function)? {
                return Ok(t);
            }
        }
        Err(Error::usage(function, "missing hub token"))
    }
}

/// Tokens kept per hub URL in `<config dir>/hub-tokens.json` (mode 0600, written atomically).
#[derive(Clone, Debug)]
pub struct TokenStore {
    path: PathBuf,
}

impl TokenStore {
    /// The token file in `config_dir`.
    pub fn new(config_dir: &Path) -> Self {
        TokenStore {
            path: config_dir.join(TOKEN_FILE),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self, function: &str) -> Result<BTreeMap<String, String>> {
        match std::fs::read(&self.path) {
            Ok(raw) => {
                let v: Value = serde_json::from_slice(&raw).map_err(|e| {
                    Error::usage(
                        function,
                        format!("{}: not a token file: {e}", self.path.display()),
                    )
                })?;
                let mut out = BTreeMap::new();
                if let Some(hubs) = v.get("hubs").and_then(Value::as_object) {
                    for (hub, entry) in hubs {
                        if let Some(t) = entry.get("token").and_then(Value::as_str) {
                            out.insert(hub.clone(), t.to_string());
                        }
                    }
                }
                Ok(out)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(Error::io(function, "reading", &self.path, e)),
        }
    }

    /// The token stored for `hub`.
    pub fn get(&self, hub: &str, function: &str) -> Result<Option<String>> {
        Ok(self.read(function)?.remove(hub))
    }

    /// Stores (`Some`) or forgets (`None`) the token of `hub`.
    pub fn set(&self, hub: &str, token: Option<&str>, function: &str) -> Result<()> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        let mut all = self.read(function)?;
        match token {
            Some(t) => {
                all.insert(hub.to_string(), t.to_string());
            }
            None => {
                all.remove(hub);
            }
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(function, "creating", dir, e))?;
        let hubs: serde_json::Map<String, Value> = all
            .into_iter()
            .map(|(h, t)| (h, json!({ "token": t })))
            .collect();
        let body = serde_json::to_vec_pretty(&json!({ "hubs": hubs }))
            .map_err(|e| Error::usage(function, format!("encoding the token file: {e}")))?;
        let tmp = dir.join(format!(".{TOKEN_FILE}.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let _ = std::fs::remove_file(&tmp);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&body)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            // an existing file with looser permissions is replaced, not kept
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(function, "writing", &self.path, e)
        })
    }
}

/// An HTTP answer of the hub.
#[derive(Clone, Debug)]
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body as a contract answer, if it is one.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The hub's error message: `message` of a JSON error body, else the text.
    pub fn message(&self) -> String {
        error_message(&self.body)
    }
}

/// The hub's error message in an answer's body: `message` of an [`ErrorBody`], else the text.
/// The old hub's terse words for an unknown token are explained.
pub(crate) fn error_message(body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) if e.message == hub_contract::UNKNOWN_TOKEN => format!(
            "token not recognised or expired (the hub says \"{}\"): create a new one on the hub's /token page or with `hub-server token create`",
            e.message
        ),
        Ok(e) => e.message,
        Err(_) => String::from_utf8_lossy(body).trim().to_string(),
    }
}

/// A connection to one hub, as one identity (async; cheap to clone).
#[derive(Clone, Debug)]
pub struct HubClient {
    base: String,
    http: reqwest::Client,
}

/// A request the client could not complete (no HTTP answer).
fn transport(function: &str, what: &str, e: reqwest::Error) -> Error {
    // reqwest errors name the URL, which never holds the token
    let mut msg = format!("{what}: {e}");
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = std::error::Error::source(s);
    }
    Error::new(function, ErrorKind::Hub(msg))
}

impl HubClient {
    /// A client of `base` sending `token` (none when empty: public reads) and
    /// `active-user=<user>` when given.
    pub fn new(base: &str, token: &str, user: Option<&str>, function: &str) -> Result<Self> {
        let mut headers = HeaderMap::new();
        if !token.is_empty() {
            let mut auth = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| Error::usage(function, "the hub token holds invalid characters"))?;
            auth.set_sensitive(true);
            headers.insert(AUTHORIZATION, auth);
        }
        if let Some(u) = user.filter(|u| !u.is_empty()) {
            let c = HeaderValue::from_str(&format!("active-user={u}"))
                .map_err(|_| Error::usage(function, "ZFLIST_HUB_USER holds invalid characters"))?;
            headers.insert(COOKIE, c);
        }
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(15))
            .tcp_nodelay(true)
            .pool_max_idle_per_host(32)
            .build()
            .map_err(|e| transport(function, "starting the HTTP client", e))?;
        Ok(HubClient {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `<base><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The underlying HTTP client (its default headers carry the identity).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends `method path` with an optional JSON body.
    pub async fn request(
        &self,
        function: &str,
        method: Method,
        path: &str,
        json_body: Option<&Value>,
    ) -> Result<Reply> {
        let url = self.url(path);
        let mut rb = self.http.request(method.clone(), &url);
        if let Some(b) = json_body {
            rb = rb
                .header(CONTENT_TYPE, "application/json")
                .header("Accept", "application/json")
                .body(b.to_string());
        }
        let what = format!("{method} {url}");
        let resp = rb.send().await.map_err(|e| transport(function, &what, e))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| transport(function, &what, e))?;
        Ok(Reply { status, body })
    }

    /// `GET /api/flist/me`: the username, when the answer is exactly the shape the
    /// reference expects; "hub authentication failed" (with the hub's reason) otherwise.
    pub async fn whoami(&self, function: &str) -> Result<String> {
        let r = self
            .request(function, Method::GET, "/api/flist/me", None)
            .await?;
        let user = (r.status == StatusCode::OK)
            .then(|| r.parse::<Success<MePayload>>())
            .flatten()
            .filter(|s| s.status == Status::Success)
            .and_then(|s| s.payload)
            .map(|p| p.username);
        user.ok_or_else(|| {
            let why = r.message();
            let why = if why.is_empty() {
                format!("HTTP {}", r.status)
            } else {
                format!("HTTP {}: {why}", r.status)
            };
            Error::new(function, ErrorKind::HubAuth(why))
        })
    }

    /// `POST path` with the multipart field `file` streamed from `local`, the header
    /// `X-Original-Name: <original>`.
    pub async fn upload_file(
        &self,
        function: &str,
        path: &str,
        local: &Path,
        original: &str,
    ) -> Result<Reply> {
        let f = tokio::fs::File::open(local)
            .await
            .map_err(|e| Error::io(function, "opening", local, e))?;
        let len = f
            .metadata()
            .await
            .map_err(|e| Error::io(function, "reading", local, e))?
            .len();
        let file_name = Path::new(original)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| original.to_string());
        let part = reqwest::multipart::Part::stream_with_length(reqwest::Body::from(f), len)
            .file_name(file_name)
            .mime_str("application/octet-stream")
            .map_err(|e| transport(function, "building the upload", e))?;
        let mut form = reqwest::multipart::Form::new().part("file", part);
        // An author signature next to an flist (`zflist sign`) goes with it: the hub keeps it.
        if path.ends_with("/upload-flist") {
            let mut sig = local.as_os_str().to_owned();
            sig.push(".sig");
            let sig = std::path::PathBuf::from(sig);
            if sig.is_file() {
                let doc = tokio::fs::read(&sig)
                    .await
                    .map_err(|e| Error::io(function, "reading", &sig, e))?;
                let part = reqwest::multipart::Part::bytes(doc)
                    .file_name("signature.json")
                    .mime_str("application/json")
                    .map_err(|e| transport(function, "building the upload", e))?;
                form = form.part("signature", part);
            }
        }
        let url = self.url(path);
        let orig = HeaderValue::from_str(original)
            .map_err(|_| Error::usage(function, "the file name holds invalid characters"))?;
        let what = format!("POST {url}");
        let resp = self
            .http
            .post(&url)
            .header("X-Original-Name", orig)
            .multipart(form)
            .send()
            .await
            .map_err(|e| transport(function, &what, e))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| transport(function, &what, e))?;
        Ok(Reply { status, body })
    }
}

/// `zflist hub [--hub URL] [--token T] <command>`.
#[derive(clap::Args, Clone, Debug)]
pub struct HubArgs {
    /// The hub and the token.
    #[command(flatten)]
    pub conn: HubOptions,
    /// The subcommand.
    #[command(subcommand)]
    pub cmd: HubCommand,
}

/// A `zflist hub` subcommand, with its arguments as the reference takes them.
// the variants' docs are clap's help text, where `<repository>` is a placeholder, not HTML
#[allow(rustdoc::invalid_html_tags)]
#[derive(clap::Subcommand, Clone, Debug, PartialEq, Eq)]
pub enum HubCommand {
    /// Check the token; with --token-stdin, check the token read from stdin and store it
    /// (mode 0600) in $XDG_CONFIG_HOME/zflist/hub-tokens.json for this hub.
    Login {
        /// Read the token from stdin and store it.
        #[arg(long)]
        token_stdin: bool,
    },
    /// Forget the token stored for this hub.
    Logout,
    /// Print the user name the token authenticates.
    Username,
    /// List a repository's entries (type, size, name, link target); without REPO, yours
    /// (the token's user, or ZFLIST_HUB_USER). No token needed for a public repository.
    Ls {
        /// The repository (default: yours).
        repo: Option<String>,
    },
    /// Upload a .tar.gz (the hub builds the flist) or a .flist (its chunks must be on the
    /// hub); prints the published flist's URL and md5.
    Upload {
        #[allow(missing_docs)]
        file: String,
    },
    /// Copy <repo>/<file> of another repository into yours as <localname>.
    #[allow(missing_docs)]
    Promote { source: String, localname: String },
    /// Make <linkname> point to <source> in your repository.
    #[allow(missing_docs)]
    Symlink { source: String, linkname: String },
    /// Make <linkname> point to <sourcename> of <repository>.
    #[allow(missing_docs)]
    Crosslink {
        linkname: String,
        repository: String,
        sourcename: String,
    },
    /// Rename <source> to <newname>.
    #[allow(missing_docs)]
    Rename { source: String, newname: String },
    /// Delete an entry of your repository.
    #[allow(missing_docs)]
    Delete { source: String },
    /// Merge flists (`repo/name.flist`, first wins) into <target>.
    #[allow(missing_docs)]
    Merge {
        target: String,
        base: String,
        #[arg(required = true)]
        others: Vec<String>,
    },
    /// Print the target of <repository>/<linkname> (a symlink).
    #[allow(missing_docs)]
    Readlink { link: String },
    /// Print the target of <repository>/<linkname> (a taglink).
    #[allow(missing_docs)]
    Taglink { link: String },
    /// Add <name> -> <repository>/<target> to your tag <tagname>.
    #[allow(missing_docs)]
    Tag {
        tagname: String,
        name: String,
        repository: String,
        target: String,
    },
    /// Remove <name> -> <repository>/<target> from your tag <tagname>.
    #[allow(missing_docs)]
    Untag {
        tagname: String,
        name: String,
        repository: String,
        target: String,
    },
    /// Make <linkname> a taglink to <repository>'s tag <tagname>.
    #[allow(missing_docs)]
    Crosstag {
        linkname: String,
        repository: String,
        tagname: String,
    },
    /// Refresh an itsyou.online token (that service is gone: not supported).
    Refresh,
}

/// The first line of stdin, without its line ending; an error when empty.
fn read_secret_line(what: &str) -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| Error::usage(FUNCTION, format!("reading {what} from stdin: {e}")))?;
    let v = line.trim().to_string();
    if v.is_empty() {
        return Err(Error::usage(FUNCTION, format!("no {what} on stdin")));
    }
    Ok(v)
}

/// Runs a `zflist hub` subcommand.
///
/// Text mode prints nothing on success except for `username`, `readlink`, `taglink` and
/// `login --token-stdin` (like the reference); on an HTTP status other than 200 the hub's
/// body is printed and the command fails. The JSON response is the hub's answer.
pub fn hub(opts: &HubOptions, cmd: &HubCommand) -> Result<Response> {
    let stored = match cmd {
        HubCommand::Login { token_stdin: true } => Some(read_secret_line("the token")?),
        _ => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::usage(FUNCTION, format!("cannot start a tokio runtime: {e}")))?;
    rt.block_on(run(opts, cmd, stored))
}

/// `stored`: the token `login --token-stdin` read, to check and store.
async fn run(opts: &HubOptions, cmd: &HubCommand, stored: Option<String>) -> Result<Response> {
    let base = opts.base();
    if *cmd == HubCommand::Logout {
        let dir = opts
            .config_dir()
            .ok_or_else(|| Error::usage(FUNCTION, "no configuration directory (set HOME)"))?;
        let store = TokenStore::new(&dir);
        let had = store.get(&base, FUNCTION)?.is_some();
        if had {
            store.set(&base, None, FUNCTION)?;
        }
        return Ok(Response::new(
            json!({"hub": base, "removed": had}),
            if had {
                format!("forgot the token of {base}\n")
            } else {
                format!("no token stored for {base}\n")
            },
        ));
    }
    if *cmd == HubCommand::Refresh {
        return Err(Error::usage(
            FUNCTION,
            "token refresh (itsyou.online) is not supported: create a new token on the hub's /token page",
        ));
    }
    if let HubCommand::Ls { repo: Some(repo) } = cmd {
        // A listing is a public read: the token (when there is one) only opens private
        // repositories.
        let token = opts.token(FUNCTION).unwrap_or_default();
        let client = HubClient::new(&base, &token, opts.user.as_deref(), FUNCTION)?;
        return list_repo(&client, repo).await;
    }
    let token = match &stored {
        Some(t) => t.trim().to_string(),
        None => opts.token(FUNCTION)?,
    };
    if token.is_empty() {
        return Err(Error::usage(FUNCTION, "missing hub token"));
    }
    let client = HubClient::new(&base, &token, opts.user.as_deref(), FUNCTION)?;
    match cmd {
        HubCommand::Readlink { link } => return read_link(&client, "readlink", link).await,
        HubCommand::Taglink { link } => return read_link(&client, "taglink", link).await,
        _ => {}
    }
    let username = client.whoami(FUNCTION).await?;
    use HubCommand as C;
    let (method, path, body): (Method, String, Option<Value>) = match cmd {
        C::Login { .. } => {
            let mut text = String::new();
            if stored.is_some() {
                let dir = opts.config_dir().ok_or_else(|| {
                    Error::usage(FUNCTION, "no configuration directory (set HOME)")
                })?;
                let store = TokenStore::new(&dir);
                store.set(&base, Some(&token), FUNCTION)?;
                text = format!(
                    "logged in to {base} as {username} (token stored in {})\n",
                    store.path().display()
                );
            }
            return Ok(Response::new(
                json!({"username": username, "hub": base}),
                text,
            ));
        }
        C::Username => {
            return Ok(Response::new(
                json!({ "username": username }),
                format!("{username}\n"),
            ))
        }
        C::Ls { .. } => return list_repo(&client, &username).await,
        C::Upload { file } => {
            let path = if file.ends_with(".flist") {
                "/api/flist/me/upload-flist"
            } else {
                "/api/flist/me/upload"
            };
            let r = client
                .upload_file(FUNCTION, path, Path::new(file), file)
                .await?;
            return published(&client, &username, r).await;
        }
        C::Promote { source, localname } => {
            let (repo, name) = source.rsplit_once('/').ok_or_else(|| {
                Error::usage(
                    FUNCTION,
                    "malformed source argument, should be: repository/filename",
                )
            })?;
            (
                Method::GET,
                format!("/api/flist/me/promote/{repo}/{name}/{localname}"),
                None,
            )
        }
        C::Symlink { source, linkname } => (
            Method::GET,
            format!("/api/flist/me/{source}/link/{linkname}"),
            None,
        ),
        C::Crosslink {
            linkname,
            repository,
            sourcename,
        } => (
            Method::GET,
            format!("/api/flist/me/{linkname}/crosslink/{repository}/{sourcename}"),
            None,
        ),
        C::Rename { source, newname } => (
            Method::GET,
            format!("/api/flist/me/{source}/rename/{newname}"),
            None,
        ),
        C::Delete { source } => (Method::DELETE, format!("/api/flist/me/{source}"), None),
        C::Merge {
            target,
            base,
            others,
        } => (
            Method::POST,
            format!("/api/flist/me/merge/{target}"),
            Some(json!(std::iter::once(base)
                .chain(others)
                .collect::<Vec<_>>())),
        ),
        C::Tag {
            tagname: tag,
            name,
            repository,
            target,
        } => (
            Method::GET,
            format!("/api/flist/me/{tag}/{name}/tag/{repository}/{target}"),
            None,
        ),
        C::Untag {
            tagname: tag,
            name,
            repository,
            target,
        } => (
            Method::DELETE,
            format!("/api/flist/me/{tag}/{name}/tag/{repository}/{target}"),
            None,
        ),
        C::Crosstag {
            linkname,
            repository,
            tagname: tag,
        } => (
            Method::GET,
            format!("/api/flist/me/{linkname}/crosstag/{repository}/{tag}"),
            None,
        ),
        C::Readlink { .. } | C::Taglink { .. } | C::Logout | C::Refresh => {
            return Err(Error::usage(FUNCTION, "internal: command handled above"))
        }
    };
    let r = client
        .request(FUNCTION, method, &path, body.as_ref())
        .await?;
    answer(r)
}

/// 200: the hub's JSON as the response, nothing printed; otherwise the body is printed and
/// the command fails with the hub's message.
fn answer(r: Reply) -> Result<Response> {
    let json = r.json().unwrap_or_else(|| json!({}));
    if r.status == StatusCode::OK {
        return Ok(Response::new(json, String::new()));
    }
    let mut text = r.text();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    let msg = r.message();
    let msg = if msg.is_empty() {
        format!("HTTP {}", r.status)
    } else {
        format!("HTTP {}: {msg}", r.status)
    };
    Ok(Response::new(json, text).failed(msg))
}

/// An upload's answer: on success the published flist's URL (`<hub>/<repo>/<name>`, the
/// repository being the acting identity) and md5 (its `.md5`, as the hub serves it) are
/// printed and added to the hub's JSON answer (`url`, `md5`); otherwise as [`answer`].
async fn published(client: &HubClient, repo: &str, r: Reply) -> Result<Response> {
    if r.status != StatusCode::OK {
        return answer(r);
    }
    let mut json = r.json().unwrap_or_else(|| json!({}));
    let Some(name) = r
        .parse::<Success<hub_contract::Published>>()
        .and_then(|s| s.payload)
        .map(|p| p.name)
    else {
        return Ok(Response::new(json, String::new()));
    };
    let path = format!("/{repo}/{name}");
    let url = client.url(&path);
    let m = client
        .request(FUNCTION, Method::GET, &format!("{path}.md5"), None)
        .await?;
    let md5 = m.text().trim().to_string();
    let md5_ok =
        m.status == StatusCode::OK && md5.len() == 32 && md5.bytes().all(|b| b.is_ascii_hexdigit());
    if let Value::Object(o) = &mut json {
        o.insert("url".into(), json!(url));
        if md5_ok {
            o.insert("md5".into(), json!(md5));
        }
    }
    let text = if md5_ok {
        format!("url: {url}\nmd5: {md5}\n")
    } else {
        // published, but its checksum could not be read back (a mirror lagging, a proxy)
        format!(
            "url: {url}\nmd5: unknown (GET {url}.md5 answered HTTP {})\n",
            m.status
        )
    };
    Ok(Response::new(json, text))
}

/// `ls [repo]`: `GET /api/flist/<repo>`, one line per entry: type, size, name, and where a
/// link points (`-> target`, `(broken)` when its target is gone).
async fn list_repo(client: &HubClient, repo: &str) -> Result<Response> {
    const LS: &str = "ls";
    let r = client
        .request(LS, Method::GET, &format!("/api/flist/{repo}"), None)
        .await?;
    if r.status != StatusCode::OK {
        let msg = r.message();
        return Err(Error::new(
            LS,
            ErrorKind::Hub(if msg.is_empty() {
                format!("{repo}: HTTP {}", r.status)
            } else {
                format!("{repo}: HTTP {}: {msg}", r.status)
            }),
        ));
    }
    let entries: Vec<hub_contract::Entry> = r.parse().ok_or_else(|| {
        Error::new(
            LS,
            ErrorKind::Hub(format!(
                "{repo}: the hub's listing is not a list of entries"
            )),
        )
    })?;
    let kind = |e: &hub_contract::Entry| match e.kind {
        EntryType::Regular => "regular",
        EntryType::Symlink => "symlink",
        EntryType::Taglink => "taglink",
        EntryType::Tag => "tag",
    };
    let size_w = entries.iter().map(|e| e.size.len()).max().unwrap_or(0);
    let mut text = String::new();
    for e in &entries {
        let size = if e.kind == EntryType::Regular {
            e.size.as_str()
        } else {
            ""
        };
        let name = crate::display::escape(&e.name);
        text.push_str(&format!("{:<8} {size:>size_w$}  {name}", kind(e)));
        if let Some(t) = &e.target {
            text.push_str(&format!(" -> {}", crate::display::escape(t)));
        }
        if e.broken {
            text.push_str(" (broken)");
        }
        text.push('\n');
    }
    let list: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut v = json!({"name": e.name, "type": kind(e), "size": e.size,
                               "updated": e.updated});
            if let Some(t) = &e.target {
                v["target"] = json!(t);
            }
            if e.broken {
                v["broken"] = json!(true);
            }
            v
        })
        .collect();
    Ok(Response::new(
        json!({"repository": repo, "entries": list}),
        text,
    ))
}

/// `readlink` / `taglink`: `GET /api/flist/<link>/light|taglink`, prints `target`.
async fn read_link(client: &HubClient, function: &str, link: &str) -> Result<Response> {
    let suffix = if function == "readlink" {
        "light"
    } else {
        "taglink"
    };
    let r = client
        .request(
            function,
            Method::GET,
            &format!("/api/flist/{link}/{suffix}"),
            None,
        )
        .await?;
    let fail = |m: String| Error::new(function, ErrorKind::Hub(m));
    if r.json().is_none() {
        return Err(fail("could not parse server response".into()));
    }
    if let Some(e) = r.parse::<ErrorBody>() {
        return Err(fail(e.message));
    }
    if !r.status.is_success() {
        return Err(fail(format!("HTTP {}", r.status)));
    }
    let target = if function == "readlink" {
        let light = r
            .parse::<Light>()
            .ok_or_else(|| fail("could not load type information".into()))?;
        if light.kind != EntryType::Symlink {
            return Err(fail(
                "requested flist is not a symlink, could not readlink".into(),
            ));
        }
        light.target
    } else {
        r.parse::<TagLink>().map(|t| t.target)
    };
    let target = target.ok_or_else(|| fail("could not read link target".into()))?;
    Ok(Response::new(
        json!({ "target": target }),
        format!("{target}\n"),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn base_defaults_and_loses_trailing_slash() {
        let mut o = HubOptions::default();
        assert_eq!(o.base(), DEFAULT_HUB);
        o.hub = Some("http://127.0.0.1:5555/".into());
        assert_eq!(o.base(), "http://127.0.0.1:5555");
    }

    #[test]
    fn token_file_is_private_and_per_hub() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("cfg");
        let s = TokenStore::new(&cfg);
        s.set("http://a", Some("ta"), "t").unwrap();
        s.set("http://b", Some("tb"), "t").unwrap();
        let mode = std::fs::metadata(s.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = std::fs::metadata(&cfg).unwrap().permissions().mode();
        assert_eq!(dmode & 0o777, 0o700);
        let o = HubOptions {
            hub: Some("http://a/".into()),
            config_dir: Some(cfg.clone()),
            ..Default::default()
        };
        assert_eq!(o.token("t").unwrap(), "ta");
        // flag/env wins over the file
        let o2 = HubOptions {
            token: Some("flag".into()),
            ..o.clone()
        };
        assert_eq!(o2.token("t").unwrap(), "flag");
        s.set("http://a", None, "t").unwrap();
        let e = o.token("t").unwrap_err();
        assert_eq!(e.message(), "missing hub token");
        assert_eq!(s.get("http://b", "t").unwrap().as_deref(), Some("tb"));
    }
}
