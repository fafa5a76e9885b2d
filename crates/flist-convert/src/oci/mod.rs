//! Docker/OCI images to flists, without a Docker daemon.
//!
//! An image is taken from a registry (Docker Hub defaults, anonymous / bearer-token / basic
//! auth, plain HTTP for loopback and configured insecure hosts), a `docker save` tarball or
//! an OCI image layout (directory or tar). The platform's manifest is chosen from an index,
//! its layers are streamed (digest checked while streaming; a mismatch refuses the layer)
//! through the archive converter's tar handling, chunks go to the store as they are read,
//! and the layers are applied in order with OCI whiteouts into one flattened tree, staged on
//! disk like an archive's (memory does not grow with the image's entries). The image config
//! becomes flist metadata and a `/.startup.toml` (ZOS container entry).
//!
//! Each converted layer's changes (entries with their chunk keys, whiteouts, opaque
//! directories, links to lower layers) are cached on disk by layer digest when a cache
//! directory is given, so a later image sharing layers downloads only its new layers (after
//! checking that the cached chunks are still in the store).
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<dyn flist_store::Store>) -> Result<(), flist_convert::oci::OciError> {
//! use flist_convert::oci::{self, ImageSource, OciOptions};
//! let opts = OciOptions { platform: Some("linux/arm64".parse()?), ..OciOptions::default() };
//! let (image, stats) = oci::convert(&ImageSource::parse("alpine:3.20")?, &opts, store).await?;
//! println!("{} files, {} layers downloaded", stats.convert.files, stats.layers_downloaded.len());
//! image
//!     .write_flist(std::path::Path::new("alpine.flist"))
//!     .map_err(|e| oci::OciError::Output(e.to_string()))?;
//! # Ok(()) }
//! ```

mod cache;
mod config;
mod layer;
mod local;
pub mod manifest;
pub mod net;
pub mod reference;
mod registry;
mod source;

use std::path::PathBuf;
use std::sync::Arc;

use flist_store::{Store, StoreError};
use thiserror::Error;

use crate::error::ConvertError;
use crate::options::{ConvertOptions, ProgressReport, Stats};
use crate::Converted;

pub use config::{startup_toml, STARTUP_PATH};
pub use manifest::Platform;
pub use net::NetworkPolicy;
pub use reference::Reference;

/// Registry credentials (basic auth, or exchanged for a bearer token).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or access token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Where an image comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageSource {
    /// A registry reference.
    Registry(Reference),
    /// A `docker save` tarball; `image` picks one of several images (`name:tag`).
    DockerArchive {
        /// The tarball (plain or gzip-compressed).
        path: PathBuf,
        /// Which image, if it holds several.
        image: Option<String>,
    },
    /// An OCI image layout, as a directory or a tar of one; `tag` picks the image by its
    /// `org.opencontainers.image.ref.name` annotation.
    OciLayout {
        /// The directory or tar file.
        path: PathBuf,
        /// Which image, if the layout holds several.
        tag: Option<String>,
    },
}

impl ImageSource {
    /// Parses a source: `docker-archive:PATH[:name:tag]`, `oci:DIR[:tag]`,
    /// `oci-archive:PATH[:tag]`, `docker://REF`, an existing local path (a directory is an OCI
    /// layout; a file a `docker save` tarball or an OCI layout tar, told apart by content),
    /// or else a registry reference.
    pub fn parse(s: &str) -> Result<ImageSource, OciError> {
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            let (path, image) = split_path_suffix(rest, true);
            return Ok(ImageSource::DockerArchive { path, image });
        }
        if let Some(rest) = s
            .strip_prefix("oci-archive:")
            .or_else(|| s.strip_prefix("oci:"))
        {
            let (path, tag) = split_path_suffix(rest, false);
            return Ok(ImageSource::OciLayout { path, tag });
        }
        if let Some(r) = s.strip_prefix("docker://") {
            return Ok(ImageSource::Registry(Reference::parse(r)?));
        }
        let p = std::path::Path::new(s);
        if p.is_dir() {
            return Ok(ImageSource::OciLayout {
                path: p.to_path_buf(),
                tag: None,
            });
        }
        if p.is_file() {
            return Ok(ImageSource::DockerArchive {
                path: p.to_path_buf(),
                image: None,
            });
        }
        Ok(ImageSource::Registry(Reference::parse(s)?))
    }
}

impl std::fmt::Display for ImageSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageSource::Registry(r) => write!(f, "{r}"),
            ImageSource::DockerArchive { path, image } => {
                write!(f, "docker-archive:{}", path.display())?;
                image.as_ref().map_or(Ok(()), |i| write!(f, ":{i}"))
            }
            ImageSource::OciLayout { path, tag } => {
                write!(f, "oci:{}", path.display())?;
                tag.as_ref().map_or(Ok(()), |t| write!(f, ":{t}"))
            }
        }
    }
}

/// Splits `PATH[:suffix]` where the path exists; `two` allows a `name:tag` suffix.
fn split_path_suffix(s: &str, two: bool) -> (PathBuf, Option<String>) {
    if std::path::Path::new(s).exists() {
        return (PathBuf::from(s), None);
    }
    let mut cut = s.len();
    for _ in 0..if two { 2 } else { 1 } {
        match s[..cut].rfind(':') {
            Some(i) => {
                cut = i;
                if std::path::Path::new(&s[..cut]).exists() {
                    return (PathBuf::from(&s[..cut]), Some(s[cut + 1..].to_string()));
                }
            }
            None => break,
        }
    }
    (PathBuf::from(s), None)
}

/// A progress event of an image conversion.
#[derive(Clone, Debug)]
pub enum OciEvent {
    /// The image was resolved: manifest chosen, layer count and total compressed size known.
    Resolved {
        /// Manifest digest.
        manifest: String,
        /// Platform of the chosen manifest.
        platform: String,
        /// Number of layers.
        layers: usize,
        /// Sum of the layers' compressed sizes.
        bytes: u64,
    },
    /// Layer `index` starts (`cached`: its changes come from the layer cache).
    LayerStart {
        /// Position, base layer 0.
        index: usize,
        /// Layer digest.
        digest: String,
        /// Compressed size.
        size: u64,
        /// Taken from the cache (no download).
        cached: bool,
    },
    /// Bytes of layer `index` downloaded (read) so far.
    Download {
        /// Position.
        index: usize,
        /// Bytes so far.
        bytes: u64,
        /// Expected size.
        total: u64,
    },
    /// The converter's counters while layer `index` is unpacked and its chunks stored.
    Apply {
        /// Position.
        index: usize,
        /// The converter's report (entries, chunks written/reused, ...).
        report: ProgressReport,
    },
    /// Layer `index` has been applied to the tree.
    LayerDone {
        /// Position.
        index: usize,
        /// Taken from the cache.
        cached: bool,
    },
    /// Every layer is applied; the config and `/.startup.toml` are being packed.
    Packing,
}

/// Receives [`OciEvent`]s (from the converting threads).
pub type OciProgress = Arc<dyn Fn(&OciEvent) + Send + Sync>;

/// Options of an image conversion.
#[derive(Clone)]
pub struct OciOptions {
    /// Platform to pick from an index (`None`: `linux/amd64`, and a single-platform image is
    /// accepted whatever its platform). When given, a single-platform image must match.
    pub platform: Option<Platform>,
    /// Registry credentials.
    pub credentials: Option<Credentials>,
    /// Registries (`host[:port]`) spoken to in plain HTTP besides loopback ones.
    pub insecure_registries: Vec<String>,
    /// Which addresses may be contacted (registry, token realm, redirects). Default: any.
    pub network: NetworkPolicy,
    /// Layer cache directory (`None`: no cache).
    pub cache_dir: Option<PathBuf>,
    /// Retries of a failed request (connection error, 429, 5xx).
    pub retries: u32,
    /// First retry delay (doubled each time).
    pub retry_delay: std::time::Duration,
    /// Largest manifest or config accepted, in bytes.
    pub max_manifest_bytes: u64,
    /// Converter options (limits, workers, upload strategy). Its `progress` callback, if
    /// any, receives the converter's counters of each layer.
    pub convert: ConvertOptions,
    /// Image conversion events.
    pub progress: Option<OciProgress>,
}

impl Default for OciOptions {
    fn default() -> Self {
        OciOptions {
            platform: None,
            credentials: None,
            insecure_registries: Vec::new(),
            network: NetworkPolicy::default(),
            cache_dir: None,
            retries: 3,
            retry_delay: std::time::Duration::from_millis(250),
            max_manifest_bytes: 8 << 20,
            convert: ConvertOptions::default(),
            progress: None,
        }
    }
}

impl std::fmt::Debug for OciOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciOptions")
            .field("platform", &self.platform)
            .field("credentials", &self.credentials)
            .field("insecure_registries", &self.insecure_registries)
            .field("network", &self.network)
            .field("cache_dir", &self.cache_dir)
            .field("retries", &self.retries)
            .field("convert", &self.convert)
            .finish()
    }
}

impl OciOptions {
    pub(crate) fn emit(&self, e: OciEvent) {
        if let Some(p) = &self.progress {
            p(&e);
        }
    }
}

/// Statistics of an image conversion.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OciStats {
    /// The image as given.
    pub image: String,
    /// Digest of the chosen image manifest.
    pub manifest_digest: String,
    /// Digest of the image config.
    pub config_digest: String,
    /// Platform of the converted image (`os/arch[/variant]`).
    pub platform: String,
    /// Layer digests, base first.
    pub layers: Vec<String>,
    /// Layers downloaded and converted in this run.
    pub layers_downloaded: Vec<String>,
    /// Layers taken from the layer cache (not downloaded).
    pub layers_reused: Vec<String>,
    /// Every blob digest fetched (configs and layers), in order.
    pub blobs_fetched: Vec<String>,
    /// Compressed layer bytes downloaded (or read from a local file).
    pub bytes_downloaded: u64,
    /// Totals over the converted layers, with the final tree's counts (`files`,
    /// `directories`, `bytes`, ... describe the flattened image).
    pub convert: Stats,
}

/// An image conversion error.
#[derive(Debug, Error)]
pub enum OciError {
    /// The image reference cannot be parsed.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// As given.
        reference: String,
        /// Why.
        reason: String,
    },
    /// The platform is not `os/arch[/variant]`.
    #[error("invalid platform {platform:?}: expected os/arch[/variant], e.g. linux/arm64")]
    InvalidPlatform {
        /// As given.
        platform: String,
    },
    /// The registry cannot be reached.
    #[error("registry {registry} is unreachable: {reason}")]
    Unreachable {
        /// Registry host.
        registry: String,
        /// The connection error.
        reason: String,
    },
    /// The network policy refused to contact a host (see [`NetworkPolicy`]).
    #[error("registry {registry}: {blocked}")]
    Blocked {
        /// Registry host of the image.
        registry: String,
        /// The refused host and address.
        blocked: net::Blocked,
    },
    /// The registry refused access.
    #[error("registry {registry}: access to {repository} denied: {reason}")]
    Auth {
        /// Registry host.
        registry: String,
        /// Repository.
        repository: String,
        /// What the registry said / what is missing.
        reason: String,
    },
    /// The image, manifest or blob does not exist.
    #[error("not found: {what}")]
    NotFound {
        /// What was looked up.
        what: String,
    },
    /// The registry answered with an unexpected status.
    #[error("registry {registry}: {request} failed with HTTP {status}: {message}")]
    Registry {
        /// Registry host.
        registry: String,
        /// The request (method and path).
        request: String,
        /// HTTP status.
        status: u16,
        /// Error text from the registry.
        message: String,
    },
    /// Content does not match its digest.
    #[error("{what}: digest mismatch (expected {expected}, got {actual}); refused")]
    DigestMismatch {
        /// The blob or manifest.
        what: String,
        /// Digest from the manifest.
        expected: String,
        /// Digest of what was received.
        actual: String,
    },
    /// Content is not of the size its descriptor says.
    #[error("{what}: size mismatch (expected {expected} bytes, got {actual}); refused")]
    SizeMismatch {
        /// The blob.
        what: String,
        /// Size from the descriptor.
        expected: u64,
        /// Bytes received (at least).
        actual: u64,
    },
    /// A media type this converter cannot handle.
    #[error("{what}: unsupported media type {media_type}")]
    UnsupportedMediaType {
        /// The manifest or layer.
        what: String,
        /// Its media type.
        media_type: String,
    },
    /// No manifest for the wanted platform.
    #[error("{image}: no image for platform {wanted} (available: {})", if available.is_empty() { "none".to_string() } else { available.join(", ") })]
    NoPlatform {
        /// The image.
        image: String,
        /// Wanted platform.
        wanted: String,
        /// Platforms the index lists.
        available: Vec<String>,
    },
    /// A manifest, index or config is malformed.
    #[error("{what}: invalid: {reason}")]
    InvalidManifest {
        /// Which document.
        what: String,
        /// Why.
        reason: String,
    },
    /// A local image (docker save tarball or OCI layout) is malformed.
    #[error("{}: {reason}", path.display())]
    LocalImage {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Converting a layer failed.
    #[error("layer {index} ({digest}): {source}")]
    Layer {
        /// Position, base 0.
        index: usize,
        /// Layer digest.
        digest: String,
        /// The converter's error.
        #[source]
        source: Box<ConvertError>,
    },
    /// Applying a layer's changes to the tree failed.
    #[error("layer {index} ({digest}): {reason}")]
    Apply {
        /// Position.
        index: usize,
        /// Layer digest.
        digest: String,
        /// Why.
        reason: String,
    },
    /// A chunk store operation failed (the store's error names the store).
    #[error("{source}")]
    Store {
        /// The store (credentials redacted).
        store: String,
        /// The error.
        #[source]
        source: StoreError,
    },
    /// Local I/O failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the result failed.
    #[error("output: {0}")]
    Output(String),
    /// The conversion was cancelled (`convert.cancel`).
    #[error("cancelled")]
    Cancelled,
    /// An internal task failed.
    #[error("internal failure: {0}")]
    Internal(String),
}

impl From<flist_format::TreeError> for OciError {
    fn from(e: flist_format::TreeError) -> Self {
        OciError::Internal(format!("tree: {e}"))
    }
}

/// Converts an image into a tree staged on disk with its metadata, storing file chunks in
/// `store`; [`Converted::write_flist`] writes the flist.
///
/// The tree is the image's layers applied in order (whiteouts honoured) plus
/// `/.startup.toml`; the metadata holds `entrypoint`, `environ`, `port`, `volume` and
/// `workdir` from the image config. No flist is produced when any layer fails.
pub async fn convert(
    source: &ImageSource,
    opts: &OciOptions,
    store: Arc<dyn Store>,
) -> Result<(Converted, OciStats), OciError> {
    source::convert(source, opts, store).await
}

/// Converts a registry image given as a reference string (`alpine:3.20`,
/// `localhost:5000/app@sha256:...`); see [`convert`].
pub async fn convert_reference(
    image: &str,
    opts: &OciOptions,
    store: Arc<dyn Store>,
) -> Result<(Converted, OciStats), OciError> {
    let src = ImageSource::Registry(Reference::parse(image)?);
    convert(&src, opts, store).await
}
