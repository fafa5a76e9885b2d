//! Server configuration: TOML file, then `HUB_*` environment variables, then flags (applied
//! by the binary on top of [`HubConfig`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Everything the server needs to know.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Data directory: catalog, flist files, and (by default) the chunk store.
    pub data_dir: PathBuf,
    /// Chunk store URL the hub writes chunks to and checks uploads against. Default:
    /// `dir://<data_dir>/chunks`.
    pub store: Option<String>,
    /// The catalog: a PostgreSQL URL (`postgres://user:pass@host:port/db`, shared by
    /// several replicas) or the path of a SQLite file. Default: `catalog.sqlite3` in the
    /// data directory. Its password is never logged ([`HubConfig::catalog_shown`]).
    pub catalog: Option<String>,
    /// Public backend announced in the `backend` metadata of flists the hub writes, as a
    /// store URL (`zdb://host:port/namespace`); any password in it is never published.
    /// Empty (the default): a `dir://` store is announced as `{"url": "<public_url>/chunks"}`
    /// (the hub serves it), a 0-db store as itself without its password.
    pub public_backend: String,
    /// Public base URL of the hub (flist backends, `.txt`/`.json`, pages, 3Bot redirects).
    /// Empty (the default): `http://<listen address>`.
    pub public_url: String,
    /// Address of the hub's read-only 0-db endpoint (`0.0.0.0:9900`), where ZOS nodes and
    /// the reference readers fetch chunks with `GET` over the 0-db protocol; off when unset.
    /// When on and the store is not itself a TCP 0-db, new flists announce
    /// `{"host": "<public host>", "port": <its port>}`.
    pub zdb_listen: Option<SocketAddr>,
    /// Connections the 0-db endpoint serves at once.
    pub zdb_max_connections: usize,
    /// Lifetime of web sessions (after signing in), in seconds.
    pub session_ttl_secs: i64,
    /// Log format of `hub-server serve`: `text` (no colour unless stdout is a terminal) or
    /// `json` (one object per line, for log shippers).
    pub log_format: String,
    /// Official repositories, listed first on the home page.
    pub official: Vec<String>,
    /// Maximum upload body in bytes (larger answers 413).
    pub max_upload_bytes: u64,
    /// Time limit for ordinary requests, in seconds.
    pub request_timeout_secs: u64,
    /// On a cluster (an `s3://` store), the most this replica keeps of flist files in its
    /// data directory, in MiB (least recently used dropped; fetched again from the store).
    pub files_cache_mb: u64,
    /// Time limit for upload requests (streaming and conversion), in seconds.
    pub upload_timeout_secs: u64,
    /// Require authentication for writes. Turning it off makes every caller `anonymous`
    /// (or the user named by `X-Hub-User`), for local development only.
    pub authentication: bool,
    /// Lifetime of API tokens issued by the hub, in seconds.
    pub token_ttl_secs: i64,
    /// Anyone may create an account at `/signup` (off by default: then only with an
    /// invitation an admin made on `/admin`).
    pub signup: bool,
    /// Directory served under `/static/`. Default: `<data_dir>/static`.
    pub static_dir: Option<PathBuf>,
    /// 3Bot (ThreeFold Connect) login.
    pub threebot: ThreebotConfig,
    /// External JWT identity provider.
    pub jwt: JwtConfig,
    /// Docker/OCI image conversion (`POST /api/flist/me/docker`).
    pub docker: DockerConfig,
    /// Read-only mirror of another hub (`[mirror]`).
    pub mirror: crate::mirror::MirrorConfig,
    /// Chunk uploads (`/api/chunks/...`, used by `zflist push`).
    pub chunks: ChunksConfig,
    /// Bytes of flist files kept in memory for downloads (content-addressed, so never
    /// stale); a file larger than a quarter of it is streamed from disk. `0`: no cache.
    pub download_cache_bytes: u64,
    /// Bytes of flist contents (dumps, metadata; keyed by the file's content address) kept
    /// in memory for the public read routes; a value over half of it is not kept.
    pub contents_cache_bytes: u64,
    /// Limits against slow or hostile clients.
    pub limits: LimitsConfig,
}

/// Limits against slow or hostile clients.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Time a client has to send a request's headers, in seconds (then the connection is
    /// closed).
    pub header_timeout_secs: u64,
    /// An idle keep-alive connection is closed after this many seconds.
    pub idle_timeout_secs: u64,
    /// Slowest accepted request body, in bytes per second, measured over
    /// `body_rate_window_secs` (a slower upload is cut with 408).
    pub min_body_bytes_per_sec: u64,
    /// Window of the body rate check, in seconds.
    pub body_rate_window_secs: u64,
    /// Largest flist database inflated from an uploaded `.flist` (413 beyond).
    pub max_flist_database_bytes: u64,
    /// Archive conversions (uploads) running at once; more wait in a queue, their job
    /// saying so.
    pub max_concurrent_conversions: usize,
    /// Most entries an archive upload, a merge (over all its sources), a derivation's base
    /// or an uploaded flist may have.
    pub max_entries: u64,
    /// Most flists one merge may name.
    pub max_merge_sources: usize,
    /// Largest file served as a single download from inside an flist
    /// (`/<repo>/<name>.flist/files/<path>`; 413 beyond).
    pub max_file_download_bytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            header_timeout_secs: 30,
            idle_timeout_secs: 120,
            min_body_bytes_per_sec: 1024,
            body_rate_window_secs: 30,
            max_flist_database_bytes: flist_format::DEFAULT_MAX_DATABASE_BYTES,
            max_concurrent_conversions: 2,
            max_entries: 10_000_000,
            max_merge_sources: 64,
            max_file_download_bytes: 1 << 30,
        }
    }
}

/// Chunk upload settings (`POST /api/chunks/missing`, `PUT /api/chunks/<hex>`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChunksConfig {
    /// Largest chunk body accepted (an encoded 512 KiB chunk is at most ~612 KiB).
    pub max_chunk_bytes: u64,
    /// Bytes of new chunks one user may store per window.
    pub user_quota_bytes: u64,
    /// The quota window, in seconds.
    pub quota_window_secs: u64,
    /// Keys accepted in one `missing` request.
    pub max_keys: usize,
}

impl Default for ChunksConfig {
    fn default() -> Self {
        ChunksConfig {
            max_chunk_bytes: 1 << 20,
            user_quota_bytes: 64 << 30,
            quota_window_secs: 24 * 3600,
            max_keys: 10_000,
        }
    }
}

/// Docker/OCI image conversion settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DockerConfig {
    /// Accept conversion requests at all.
    pub enabled: bool,
    /// Registries (`host[:port]`, `docker.io` for Docker Hub) images may come from. Default:
    /// the public registries of [`DEFAULT_REGISTRIES`]; `*` (or an empty list): any registry
    /// on a public address. Whatever the list, the hub contacts (registry, token service,
    /// redirect hops) only public addresses, except the hosts listed here by name and in
    /// `trusted_hosts`.
    pub registries: Vec<String>,
    /// Further hosts (`host[:port]`: token services, mirrors) the hub may contact although they
    /// resolve to loopback or private addresses.
    pub trusted_hosts: Vec<String>,
    /// Registries spoken to in plain HTTP besides loopback ones.
    pub insecure_registries: Vec<String>,
    /// Keep converted layers in `<data_dir>/cache/layers` so images sharing base layers
    /// download only their new layers.
    pub layer_cache: bool,
    /// Conversions running at once; more wait their turn.
    pub max_concurrent: usize,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            enabled: true,
            registries: DEFAULT_REGISTRIES.iter().map(|s| s.to_string()).collect(),
            trusted_hosts: Vec::new(),
            insecure_registries: Vec::new(),
            layer_cache: true,
            max_concurrent: 2,
        }
    }
}

/// Registries a hub converts images from unless configured otherwise.
pub const DEFAULT_REGISTRIES: &[&str] = &[
    "docker.io",
    "ghcr.io",
    "quay.io",
    "gcr.io",
    "registry.k8s.io",
];

impl DockerConfig {
    /// May images come from `registry` (as in the parsed reference, `docker.io` for Docker
    /// Hub)?
    pub fn allows_registry(&self, registry: &str) -> bool {
        self.registries.is_empty()
            || self
                .registries
                .iter()
                .any(|r| r == "*" || r.eq_ignore_ascii_case(registry))
    }

    /// The network policy of conversions: public addresses only, except the registries and
    /// hosts the operator listed.
    pub fn network_policy(&self) -> flist_convert::oci::NetworkPolicy {
        flist_convert::oci::NetworkPolicy {
            public_only: true,
            trusted_hosts: self
                .registries
                .iter()
                .chain(&self.trusted_hosts)
                .filter(|h| h.as_str() != "*")
                .cloned()
                .collect(),
        }
    }
}

/// 3Bot login settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThreebotConfig {
    /// Offer 3Bot login (needs the provider reachable from users' browsers and the hub).
    pub enabled: bool,
    /// Provider base URL (`https://login.threefold.me`).
    pub provider_url: String,
    /// The hub's app id (usually its host name).
    pub app_id: String,
    /// The hub's X25519 private key, base64 (32 bytes). When absent, one is generated and
    /// kept in `<data_dir>/threebot.key`.
    pub private_key: Option<String>,
}

/// External JWT settings (ES384 only): `exp` required, `nbf` honoured, `iss` required when an
/// issuer is configured.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// PEM public key of the provider (P-384). JWTs are refused when absent.
    pub public_key_pem: Option<String>,
    /// Path to the PEM public key (alternative to `public_key_pem`).
    pub public_key_file: Option<PathBuf>,
    /// Accepted issuer, if set: a JWT must then carry this `iss`.
    pub issuer: Option<String>,
    /// Accepted clock skew when checking `exp` and `nbf`, in seconds (at most
    /// [`MAX_JWT_LEEWAY_SECS`]).
    pub leeway_secs: u64,
}

/// Largest accepted JWT clock skew (larger configured values are clamped).
pub const MAX_JWT_LEEWAY_SECS: u64 = 300;

/// Default JWT clock skew.
pub const DEFAULT_JWT_LEEWAY_SECS: u64 = 30;

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            public_key_pem: None,
            public_key_file: None,
            issuer: None,
            leeway_secs: DEFAULT_JWT_LEEWAY_SECS,
        }
    }
}

impl Default for ThreebotConfig {
    fn default() -> Self {
        ThreebotConfig {
            enabled: false,
            provider_url: "https://login.threefold.me".into(),
            app_id: "localhost".into(),
            private_key: None,
        }
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5555)),
            data_dir: PathBuf::from("./hub-data"),
            store: None,
            catalog: None,
            public_backend: String::new(),
            public_url: String::new(),
            zdb_listen: None,
            zdb_max_connections: 4096,
            session_ttl_secs: 7 * 24 * 3600,
            log_format: "text".into(),
            official: Vec::new(),
            max_upload_bytes: 2 << 30,
            request_timeout_secs: 60,
            files_cache_mb: 1024,
            upload_timeout_secs: 3 * 3600,
            authentication: true,
            token_ttl_secs: 30 * 24 * 3600,
            signup: false,
            static_dir: None,
            threebot: ThreebotConfig::default(),
            jwt: JwtConfig::default(),
            docker: DockerConfig::default(),
            mirror: crate::mirror::MirrorConfig::default(),
            limits: LimitsConfig::default(),
            chunks: ChunksConfig::default(),
            download_cache_bytes: 256 << 20,
            contents_cache_bytes: 64 << 20,
        }
    }
}

/// A configuration problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("parsing {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// An environment variable has a bad value.
    #[error("environment variable {name}: {message}")]
    Env {
        /// The variable.
        name: String,
        /// Why.
        message: String,
    },
}

impl HubConfig {
    /// Reads a TOML file (missing keys take defaults).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Applies `HUB_*` variables from `vars` (e.g. `std::env::vars()`): `HUB_LISTEN`,
    /// `HUB_DATA_DIR`, `HUB_STORE`, `HUB_CATALOG`, `HUB_PUBLIC_BACKEND`, `HUB_PUBLIC_URL`,
    /// `HUB_ZDB_LISTEN`, `HUB_ZDB_MAX_CONNECTIONS`, `HUB_OFFICIAL`
    /// (comma-separated), `HUB_MAX_UPLOAD_BYTES`, `HUB_REQUEST_TIMEOUT_SECS`,
    /// `HUB_FILES_CACHE_MB`,
    /// `HUB_UPLOAD_TIMEOUT_SECS`, `HUB_AUTHENTICATION`, `HUB_TOKEN_TTL_SECS`,
    /// `HUB_SESSION_TTL_SECS`, `HUB_LOG_FORMAT`, `HUB_STATIC_DIR`, `HUB_THREEBOT_ENABLED`,
    /// `HUB_THREEBOT_PROVIDER_URL`, `HUB_THREEBOT_APP_ID`,
    /// `HUB_THREEBOT_PRIVATE_KEY`, `HUB_JWT_PUBLIC_KEY_FILE`, `HUB_JWT_ISSUER`,
    /// `HUB_DOCKER_REGISTRIES` (comma-separated allow-list), `HUB_MIRROR_OF`,
    /// `HUB_MIRROR_SYNC_INTERVAL_SECS`, `HUB_MIRROR_CHUNKS`, `HUB_MIRROR_TOKEN` (an API token
    /// of the primary: private repositories it may read are mirrored, and stay private),
    /// `HUB_CHUNKS_MAX_CHUNK_BYTES`,
    /// `HUB_CHUNKS_USER_QUOTA_BYTES`, `HUB_CHUNKS_QUOTA_WINDOW_SECS`,
    /// `HUB_DOWNLOAD_CACHE_BYTES`.
    /// `HUB_MIRROR_SYNC_INTERVAL_SECS`, `HUB_MAX_FLIST_DATABASE_BYTES`,
    /// `HUB_HEADER_TIMEOUT_SECS`, `HUB_CHUNKS_MAX_CHUNK_BYTES`,
    /// `HUB_CHUNKS_USER_QUOTA_BYTES`, `HUB_CHUNKS_QUOTA_WINDOW_SECS`.
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        fn num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, ConfigError> {
            v.parse().map_err(|_| ConfigError::Env {
                name: name.into(),
                message: format!("not a number: {v:?}"),
            })
        }
        fn boolean(name: &str, v: &str) -> Result<bool, ConfigError> {
            match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(ConfigError::Env {
                    name: name.into(),
                    message: format!("not a boolean: {v:?}"),
                }),
            }
        }
        for (k, v) in vars {
            match k.as_str() {
                "HUB_LISTEN" => {
                    self.listen = v.parse().map_err(|e| ConfigError::Env {
                        name: k.clone(),
                        message: format!("{e}"),
                    })?
                }
                "HUB_DATA_DIR" => self.data_dir = v.into(),
                "HUB_MIRROR_OF" => self.mirror.of = Some(v),
                "HUB_MIRROR_SYNC_INTERVAL_SECS" => self.mirror.sync_interval_secs = num(&k, &v)?,
                "HUB_MIRROR_CHUNKS" => self.mirror.chunks = boolean(&k, &v)?,
                "HUB_MIRROR_TOKEN" => {
                    self.mirror.token = Some(crate::mirror::MirrorToken(v.trim().to_string()))
                }
                "HUB_STORE" => self.store = Some(v),
                "HUB_CATALOG" => self.catalog = Some(v).filter(|v| !v.trim().is_empty()),
                "HUB_PUBLIC_BACKEND" => self.public_backend = v,
                "HUB_PUBLIC_URL" => self.public_url = v,
                "HUB_ZDB_LISTEN" => {
                    self.zdb_listen = if v.trim().is_empty() {
                        None
                    } else {
                        Some(v.trim().parse().map_err(|e| ConfigError::Env {
                            name: k.clone(),
                            message: format!("{e} (use an address like 0.0.0.0:9900)"),
                        })?)
                    }
                }
                "HUB_ZDB_MAX_CONNECTIONS" => self.zdb_max_connections = num(&k, &v)?,
                "HUB_OFFICIAL" => {
                    self.official = v
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                }
                "HUB_MAX_UPLOAD_BYTES" => self.max_upload_bytes = num(&k, &v)?,
                "HUB_REQUEST_TIMEOUT_SECS" => self.request_timeout_secs = num(&k, &v)?,
                "HUB_FILES_CACHE_MB" => self.files_cache_mb = num(&k, &v)?,
                "HUB_UPLOAD_TIMEOUT_SECS" => self.upload_timeout_secs = num(&k, &v)?,
                "HUB_AUTHENTICATION" => self.authentication = boolean(&k, &v)?,
                "HUB_SIGNUP" => self.signup = boolean(&k, &v)?,
                "HUB_THREEBOT_ENABLED" => self.threebot.enabled = boolean(&k, &v)?,
                "HUB_SESSION_TTL_SECS" => self.session_ttl_secs = num(&k, &v)?,
                "HUB_LOG_FORMAT" => self.log_format = v,
                "HUB_TOKEN_TTL_SECS" => self.token_ttl_secs = num(&k, &v)?,
                "HUB_STATIC_DIR" => self.static_dir = Some(v.into()),
                "HUB_THREEBOT_PROVIDER_URL" => self.threebot.provider_url = v,
                "HUB_THREEBOT_APP_ID" => self.threebot.app_id = v,
                "HUB_THREEBOT_PRIVATE_KEY" => self.threebot.private_key = Some(v),
                "HUB_JWT_PUBLIC_KEY_FILE" => self.jwt.public_key_file = Some(v.into()),
                "HUB_JWT_ISSUER" => self.jwt.issuer = Some(v),
                "HUB_JWT_LEEWAY_SECS" => self.jwt.leeway_secs = num(&k, &v)?,
                "HUB_MAX_FLIST_DATABASE_BYTES" => {
                    self.limits.max_flist_database_bytes = num(&k, &v)?
                }
                "HUB_HEADER_TIMEOUT_SECS" => self.limits.header_timeout_secs = num(&k, &v)?,
                "HUB_MAX_CONCURRENT_CONVERSIONS" => {
                    self.limits.max_concurrent_conversions = num(&k, &v)?
                }
                "HUB_MAX_ENTRIES" => self.limits.max_entries = num(&k, &v)?,
                "HUB_MAX_FILE_DOWNLOAD_BYTES" => self.limits.max_file_download_bytes = num(&k, &v)?,
                "HUB_DOCKER_REGISTRIES" => {
                    self.docker.registries = v
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                }
                "HUB_CHUNKS_MAX_CHUNK_BYTES" => self.chunks.max_chunk_bytes = num(&k, &v)?,
                "HUB_CHUNKS_USER_QUOTA_BYTES" => self.chunks.user_quota_bytes = num(&k, &v)?,
                "HUB_CHUNKS_QUOTA_WINDOW_SECS" => self.chunks.quota_window_secs = num(&k, &v)?,
                "HUB_DOWNLOAD_CACHE_BYTES" => self.download_cache_bytes = num(&k, &v)?,
                "HUB_CONTENTS_CACHE_BYTES" => self.contents_cache_bytes = num(&k, &v)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// The catalog as it may be shown: the PostgreSQL URL without its password, or the
    /// SQLite file.
    pub fn catalog_shown(&self) -> String {
        match &self.catalog {
            Some(c) => hub_repo::redact_catalog(c),
            None => self.data_dir.join("catalog.sqlite3").display().to_string(),
        }
    }

    /// The chunk store URL (default: a `dir://` store inside the data directory).
    pub fn store_url(&self) -> String {
        match &self.store {
            Some(s) => s.clone(),
            None => format!(
                "dir://{}",
                absolute(&self.data_dir.join("chunks")).display()
            ),
        }
    }

    /// The store replicas share their flist files through: the chunk store when it is an
    /// object store (`s3://`, `s3s://`: a cluster's), else none (the data directory holds
    /// them, as on one machine).
    pub fn shared_files_url(&self) -> Option<String> {
        let url = self.store.as_deref()?.trim();
        is_object_store(url).then(|| url.to_string())
    }

    /// Attaches the shared store of flist files ([`HubConfig::shared_files_url`]) to `hub`.
    /// Blocks (opens the store's client on its own runtime).
    pub fn share_files(&self, hub: &hub_repo::Hub) -> Result<(), hub_repo::RepoError> {
        match self.shared_files_url() {
            Some(url) => hub.share_files_at(&url),
            None => Ok(()),
        }
    }

    /// The public base URL without a trailing `/`: `public_url`, or `http://<listen>` (a
    /// wildcard listen address reads as `127.0.0.1`; set `public_url` for other machines).
    pub fn public_url(&self) -> String {
        if !self.public_url.trim().is_empty() {
            return self.public_url.trim().trim_end_matches('/').to_string();
        }
        let mut addr = self.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::IpAddr::from([127, 0, 0, 1]));
        }
        format!("http://{addr}")
    }

    /// True when chunks live in a local directory the hub serves at `/chunks/`.
    pub fn store_is_dir(&self) -> bool {
        self.store_url().starts_with("dir://")
    }

    /// Whether the hub serves its store's chunks itself at `/chunks/` (and announces that):
    /// a `dir://` store, or an object store (`s3://`, `s3s://`: the bucket stays private).
    /// A 0-db or another server is read directly by readers.
    pub fn serves_chunks(&self) -> bool {
        let url = self.store_url();
        url.starts_with("dir://") || is_object_store(&url)
    }

    /// The host name (or address) of the public URL, without brackets.
    pub fn public_host(&self) -> Option<String> {
        let url = self.public_url();
        let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => authority.split(':').next().unwrap_or(""),
        };
        (!host.is_empty()).then(|| host.to_string())
    }

    /// Whether the store is a 0-db readers can be pointed at directly: over TCP, on a host
    /// other than this machine's loopback (a 0-db on `127.0.0.1` behind the hub is private).
    pub fn store_is_public_zdb(&self) -> bool {
        match flist_store::StoreUrl::parse(&self.store_url()) {
            Ok(flist_store::StoreUrl::Zdb {
                endpoint: flist_store::Endpoint::Tcp { host, .. },
                ..
            }) => {
                let loopback = host.eq_ignore_ascii_case("localhost")
                    || host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                !loopback
            }
            _ => false,
        }
    }

    /// The hub's own 0-db endpoint as a `backend` (`{"host": "<public host>", "port": p}`),
    /// when it is on.
    pub fn zdb_endpoint_backend(&self) -> Option<String> {
        let addr = self.zdb_listen?;
        let backend = flist_format::Backend::Zdb {
            host: self.public_host()?,
            port: addr.port(),
            namespace: None,
            password: None,
            token: None,
        };
        Some(backend.to_json())
    }

    /// The `backend` metadata JSON announced in new flists (never a password): the configured
    /// `public_backend`; or, when it is empty: the hub's 0-db endpoint (`{"host": "<public
    /// host>", "port": <zdb_listen port>}`) when `zdb_listen` is set and the store is not
    /// itself a public 0-db ([`HubConfig::store_is_public_zdb`]); else the store itself for a
    /// TCP 0-db store, `{"url": "<public url>/chunks"}` for a `dir://` store. `None` when no
    /// reader could reach the chunks from the metadata alone.
    pub fn announced_backend(&self) -> Option<String> {
        let configured = self.public_backend.trim();
        if configured.is_empty() && !self.store_is_public_zdb() {
            if let Some(b) = self.zdb_endpoint_backend() {
                return Some(b);
            }
        }
        if configured.is_empty() && self.serves_chunks() {
            return Some(
                serde_json::json!({ "url": format!("{}/chunks", self.public_url()) }).to_string(),
            );
        }
        let url = if configured.is_empty() {
            self.store_url()
        } else {
            configured.to_string()
        };
        flist_store::StoreUrl::parse(&url)
            .ok()
            .and_then(|u| flist_convert::backend::public_backend_opt(&u))
            .map(|b| b.to_json())
    }

    /// The directory served under `/static/`.
    pub fn static_dir(&self) -> PathBuf {
        self.static_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("static"))
    }
}

/// An S3 object store URL (`s3://`, `s3s://`).
fn is_object_store(url: &str) -> bool {
    url.starts_with("s3://") || url.starts_with("s3s://")
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

/// Parses a duration like `30d`, `12h`, `15m`, `90s` or a plain number of seconds.
pub fn parse_duration_secs(s: &str) -> Option<i64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'd' => (&s[..s.len() - 1], 86_400),
        'h' => (&s[..s.len() - 1], 3_600),
        'm' => (&s[..s.len() - 1], 60),
        's' => (&s[..s.len() - 1], 1),
        _ => (s, 1),
    };
    num.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .and_then(|n| n.checked_mul(mult))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_env_overrides() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deployment/hub.example.toml");
        let mut c = HubConfig::from_file(&path).expect("example config");
        assert_eq!(c.official, ["tf-official-apps"]);
        assert_eq!(c.threebot.app_id, "hub.example.org");
        c.apply_env([
            ("HUB_LISTEN".to_string(), "127.0.0.1:1".to_string()),
            ("HUB_OFFICIAL".into(), "a, b".into()),
            ("HUB_AUTHENTICATION".into(), "off".into()),
            ("OTHER".into(), "x".into()),
        ])
        .expect("env");
        assert_eq!(
            (c.listen.port(), c.official.len(), c.authentication),
            (1, 2, false)
        );
        assert!(c
            .apply_env([("HUB_MAX_UPLOAD_BYTES".to_string(), "lots".to_string())])
            .is_err());
        // the catalog: the SQLite file by default, a PostgreSQL URL shown without password
        assert!(c.catalog_shown().ends_with("catalog.sqlite3"));
        c.apply_env([(
            "HUB_CATALOG".to_string(),
            "postgres://hub:pw-x9@db:5432/hub".to_string(),
        )])
        .expect("catalog");
        assert_eq!(
            c.catalog.as_deref(),
            Some("postgres://hub:pw-x9@db:5432/hub")
        );
        assert_eq!(c.catalog_shown(), "postgres://hub:***@db:5432/hub");
        let toml: HubConfig =
            toml::from_str("catalog = \"postgres://u:p@h/db\"").expect("catalog key");
        assert_eq!(toml.catalog.as_deref(), Some("postgres://u:p@h/db"));
        let bad = std::env::temp_dir().join(format!("hub-bad-{}.toml", std::process::id()));
        std::fs::write(&bad, "listen = 5\nunknown_key = 1\n").expect("write");
        assert!(HubConfig::from_file(&bad).is_err());
        let _ = std::fs::remove_file(&bad);
    }

    #[test]
    fn announced_backend_with_and_without_the_zdb_endpoint() {
        let mut c = HubConfig {
            public_url: "https://hub.example.org/".into(),
            ..HubConfig::default()
        };
        assert_eq!(
            c.announced_backend().as_deref(),
            Some(r#"{"url":"https://hub.example.org/chunks"}"#)
        );
        // A cluster's private bucket: served at /chunks too, the credentials never stamped.
        c.store = Some("s3://KEY:SECRET@s3.internal:8333/hub?region=us-east-1".into());
        assert!(c.serves_chunks());
        assert_eq!(c.shared_files_url().as_deref(), c.store.as_deref());
        assert_eq!(
            c.announced_backend().as_deref(),
            Some(r#"{"url":"https://hub.example.org/chunks"}"#)
        );
        c.store = None;
        assert_eq!(c.shared_files_url(), None);
        c.zdb_listen = Some(SocketAddr::from(([0, 0, 0, 0], 9900)));
        let endpoint = r#"{"host": "hub.example.org", "port": 9900}"#;
        assert_eq!(c.announced_backend().as_deref(), Some(endpoint));
        // A private 0-db behind the hub: the endpoint.
        c.store = Some("zdb://:pw@127.0.0.1:9901/hub".into());
        assert!(!c.store_is_public_zdb());
        assert_eq!(c.announced_backend().as_deref(), Some(endpoint));
        // Redis, or a router: the endpoint.
        c.store = Some("redis://127.0.0.1:6379/0".into());
        assert_eq!(c.announced_backend().as_deref(), Some(endpoint));
        // A public 0-db: readers go to it directly.
        c.store = Some("zdb://:pw@zdb.example.org:9900/hub".into());
        assert!(c.store_is_public_zdb());
        assert_eq!(
            c.announced_backend().as_deref(),
            Some(r#"{"host": "zdb.example.org", "port": 9900, "namespace": "hub"}"#)
        );
        // An explicit public backend always wins.
        c.store = None;
        c.public_backend = "zdb://other.example.org:9900/pub".into();
        assert_eq!(
            c.announced_backend().as_deref(),
            Some(r#"{"host": "other.example.org", "port": 9900, "namespace": "pub"}"#)
        );
        // The public host of various public URLs.
        for (url, host) in [
            ("http://hub.lan:5555", "hub.lan"),
            ("https://user@hub.example.org/x", "hub.example.org"),
            ("http://[2001:db8::1]:5555", "2001:db8::1"),
            ("http://10.0.0.7", "10.0.0.7"),
        ] {
            c.public_url = url.into();
            assert_eq!(c.public_host().as_deref(), Some(host), "{url}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("30d"), Some(30 * 86_400));
        assert_eq!(parse_duration_secs("90"), Some(90));
        assert_eq!(parse_duration_secs("0s"), None);
        assert_eq!(parse_duration_secs("x"), None);
        assert_eq!(parse_duration_secs(""), None);
    }
}
