//! `s3://` and `s3s://` — an S3-compatible object store (AWS S3, SeaweedFS, Garage, MinIO).
//!
//! Chunks are objects named by the lower-case hex of their key at the bucket's root, the
//! layout rfs uses, so the two tools share buckets. Requests are path-style
//! (`http://host:port/bucket/key`), signed with AWS SigV4 by the `object_store` crate, which
//! also retries 5xx answers, dropped connections and timeouts with exponential backoff.
//!
//! Pipelining: an S3 request is one HTTP exchange, so "many in flight" means many
//! keep-alive connections. A batch runs up to `OpenOptions::requests_in_flight` (32)
//! requests at once, and one semaphore per store bounds the requests of all its batches
//! together (a converter keeps several batches running). Writes are conditional (`If-None-Match: *`): one round trip
//! gives the exact [`SetOutcome`]. Values over [`MULTIPART_OVER`] go up as multipart uploads
//! of [`PART_SIZE`] parts, [`PARTS_IN_FLIGHT`] at once.
//!
//! The bucket is created on the first write that finds it missing (`404` on `PUT`), so a
//! read-only user never needs the right to create buckets. Credentials come from the URL or
//! from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`; with none,
//! requests are anonymous (a public bucket). The secret never appears in `Display`, errors
//! or logs: messages are built here from the failure's kind, the HTTP status and the S3
//! error code, and any text taken from a server answer is scrubbed of the secret.

use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig, WriteMultipart,
};
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;

use crate::blobs::{check_name, BlobInfo, BlobStore};
use crate::error::hex_key;
use crate::url::StoreUrl;
use crate::{OpenOptions, SetOutcome, Store, StoreError};

/// Values larger than this are uploaded in parts.
pub(crate) const MULTIPART_OVER: usize = 16 * 1024 * 1024;
/// Size of one part of a multipart upload (S3's minimum is 5 MiB).
pub(crate) const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one multipart upload in flight at once.
const PARTS_IN_FLIGHT: usize = 4;
/// Longest chunk key, as for 0-db (the object name is twice as long in hex).
const MAX_KEY: usize = 255;

/// A chunk store (and a [`BlobStore`]) on an S3-compatible object store.
#[derive(Clone, Debug)]
pub struct S3Store {
    inner: Arc<Inner>,
}

struct Inner {
    client: AmazonS3,
    /// For the one request `object_store` does not make: `CreateBucket`.
    http: reqwest::Client,
    name: String,
    bucket: String,
    /// `<endpoint>/<bucket>/`.
    bucket_url: String,
    region: String,
    anonymous: bool,
    /// Scrubbed from every message taken from a server answer.
    secret: Option<String>,
    /// Set once the bucket is known to exist (created here or found).
    bucket_made: tokio::sync::Mutex<bool>,
    permits: Semaphore,
    in_flight: usize,
    timeout: Duration,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store").field("url", &self.name).finish()
    }
}

impl std::fmt::Display for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.inner.name)
    }
}

/// First non-empty value of the named environment variables.
fn env_first(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

/// What went wrong with one request, as far as a caller can act on it.
enum Failure {
    NotFound,
    Exists,
    Auth(String),
    Timeout,
    Connection(String),
    Server(String),
    Other(String),
}

impl S3Store {
    /// A store for an `s3://` / `s3s://` URL. Makes no request: the first operation
    /// connects.
    pub(crate) fn new(url: &StoreUrl, opts: &OpenOptions) -> Result<Self, StoreError> {
        let StoreUrl::S3 {
            tls,
            host,
            port,
            bucket,
            region,
            key,
            secret,
        } = url
        else {
            return Err(StoreError::InvalidUrl {
                url: url.to_string(),
                reason: "not an s3:// URL".into(),
            });
        };
        let name = url.to_string();
        // Credentials from the URL, else from the environment (a session token only goes
        // with credentials from the environment).
        let from_env = key.is_none() && secret.is_none();
        let key = key.clone().or_else(|| env_first(&["AWS_ACCESS_KEY_ID"]));
        let secret = secret
            .clone()
            .or_else(|| env_first(&["AWS_SECRET_ACCESS_KEY"]));
        let token = if from_env {
            env_first(&["AWS_SESSION_TOKEN"])
        } else {
            None
        };
        let region = region
            .clone()
            .or_else(|| env_first(&["AWS_REGION", "AWS_DEFAULT_REGION"]))
            .unwrap_or_else(|| "us-east-1".into());
        let scheme = if *tls { "https" } else { "http" };
        let endpoint = format!(
            "{scheme}://{}",
            crate::url::Endpoint::Tcp {
                host: host.clone(),
                port: *port
            }
        );
        let in_flight = opts.requests_in_flight.max(1);
        let client_options = ClientOptions::new()
            .with_allow_http(!tls)
            .with_timeout(opts.timeout)
            .with_connect_timeout(opts.connect_timeout)
            .with_pool_max_idle_per_host(in_flight);
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: opts.retries as usize,
            retry_timeout: opts.timeout,
        };
        let mut builder = AmazonS3Builder::new()
            .with_endpoint(&endpoint)
            .with_bucket_name(bucket)
            .with_region(&region)
            .with_virtual_hosted_style_request(false)
            // Bodies are not hashed into the signature: chunks are verified by their
            // content hash when read, and TLS protects s3s://. Saves a SHA-256 pass over
            // every value on the client.
            .with_unsigned_payload(true)
            .with_allow_http(!tls)
            .with_client_options(client_options)
            .with_retry(retry);
        let anonymous = match (&key, &secret) {
            (Some(k), Some(s)) => {
                builder = builder.with_access_key_id(k).with_secret_access_key(s);
                if let Some(t) = token {
                    builder = builder.with_token(t);
                }
                false
            }
            (Some(_), None) => {
                return Err(StoreError::Auth {
                    store: name,
                    message: "an access key without a secret: give it in the URL \
                              (s3://KEY:SECRET@host/bucket) or AWS_SECRET_ACCESS_KEY"
                        .into(),
                })
            }
            (None, Some(_)) => {
                return Err(StoreError::Auth {
                    store: name,
                    message: "a secret without an access key: give it in the URL \
                              (s3://KEY:SECRET@host/bucket) or AWS_ACCESS_KEY_ID"
                        .into(),
                })
            }
            // Never the instance-metadata credential chain: anonymous requests.
            (None, None) => {
                builder = builder.with_skip_signature(true);
                true
            }
        };
        let other = |what: &str, e: &dyn std::fmt::Display| StoreError::Other {
            store: name.clone(),
            message: scrub(&format!("{what}: {e}"), secret.as_deref()),
        };
        let client = builder
            .build()
            .map_err(|e| other("cannot configure the S3 client", &e))?;
        let http = reqwest::Client::builder()
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.timeout)
            .build()
            .map_err(|e| other("cannot build the HTTP client", &e))?;
        Ok(S3Store {
            inner: Arc::new(Inner {
                client,
                http,
                name,
                bucket: bucket.clone(),
                bucket_url: format!("{endpoint}/{bucket}/"),
                region,
                anonymous,
                secret,
                bucket_made: tokio::sync::Mutex::new(false),
                permits: Semaphore::new(in_flight),
                in_flight,
                timeout: opts.timeout,
            }),
        })
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.inner.bucket
    }

    fn path_of(&self, key: &[u8]) -> Result<Path, StoreError> {
        if key.is_empty() || key.len() > MAX_KEY {
            return Err(StoreError::InvalidKey {
                store: self.inner.name.clone(),
                key: hex_key(key),
                reason: format!(
                    "keys must be 1 to {MAX_KEY} bytes, this one is {}",
                    key.len()
                ),
            });
        }
        Ok(Path::from(hex::encode(key)))
    }

    fn blob_path(&self, name: &str) -> Result<Path, StoreError> {
        check_name(&self.inner.name, name)?;
        Path::parse(name).map_err(|e| StoreError::InvalidKey {
            store: self.inner.name.clone(),
            key: name.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Sorts an `object_store` failure into what callers act on.
    fn classify(&self, e: &object_store::Error) -> Failure {
        use object_store::Error as E;
        let secret = self.inner.secret.as_deref();
        match e {
            E::NotFound { .. } => Failure::NotFound,
            E::AlreadyExists { .. } | E::Precondition { .. } => Failure::Exists,
            E::PermissionDenied { source, .. } | E::Unauthenticated { source, .. } => {
                Failure::Auth(scrub(&request_summary(source.as_ref()), secret))
            }
            E::Generic { source, .. } => {
                let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
                while let Some(c) = cause {
                    if let Some(h) = c.downcast_ref::<object_store::client::HttpError>() {
                        use object_store::client::HttpErrorKind as K;
                        return match h.kind() {
                            K::Timeout => Failure::Timeout,
                            K::Connect | K::Request | K::Interrupted => {
                                Failure::Connection(scrub(&root_cause(h), secret))
                            }
                            _ => Failure::Other(scrub(&root_cause(h), secret)),
                        };
                    }
                    cause = c.source();
                }
                let summary = scrub(&request_summary(source.as_ref()), secret);
                if summary.contains("status code: 404") {
                    Failure::NotFound
                } else if summary.contains("status code: 5") {
                    Failure::Server(summary)
                } else {
                    Failure::Other(summary)
                }
            }
            other => Failure::Other(scrub(&other.to_string(), secret)),
        }
    }

    /// The [`StoreError`] for a failed `op` on `what` (a hex key or a blob name).
    fn error(&self, op: &str, what: &str, e: &object_store::Error) -> StoreError {
        let store = self.inner.name.clone();
        let key = Some(what.to_owned());
        match self.classify(e) {
            Failure::NotFound => StoreError::NotFound {
                store,
                key: what.to_owned(),
            },
            Failure::Exists => StoreError::Other {
                store,
                message: format!("{op} {what}: already exists"),
            },
            Failure::Auth(m) => {
                let hint = if self.inner.anonymous {
                    "no credentials were given (s3://KEY:SECRET@host/bucket, or \
                     AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
                } else {
                    "check the access key, the secret and the key's rights on the bucket"
                };
                StoreError::Auth {
                    store,
                    message: format!("{op} {what}: {m}; {hint}"),
                }
            }
            Failure::Timeout => StoreError::Timeout {
                store,
                key,
                operation: op.into(),
                after: self.inner.timeout,
            },
            Failure::Connection(m) => StoreError::Connection {
                store,
                key,
                message: format!("{op}: {m}"),
            },
            Failure::Server(m) => StoreError::Server {
                store,
                key,
                message: format!("{op}: {m}"),
            },
            Failure::Other(m) => StoreError::Protocol {
                store,
                key,
                message: format!("{op}: {m}"),
            },
        }
    }

    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, StoreError> {
        self.inner
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Other {
                store: self.inner.name.clone(),
                message: "the store is closed".into(),
            })
    }

    async fn get_object(&self, path: &Path) -> Result<Option<Bytes>, StoreError> {
        let _permit = self.permit().await?;
        let what = path.as_ref();
        let got = match self.inner.client.get(path).await {
            Ok(got) => got,
            Err(e) => {
                return match self.classify(&e) {
                    Failure::NotFound => Ok(None),
                    _ => Err(self.error("GET", what, &e)),
                }
            }
        };
        got.bytes()
            .await
            .map(Some)
            .map_err(|e| self.error("GET", what, &e))
    }

    async fn head_object(&self, path: &Path) -> Result<Option<u64>, StoreError> {
        let _permit = self.permit().await?;
        match self.inner.client.head(path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(e) => match self.classify(&e) {
                Failure::NotFound => Ok(None),
                _ => Err(self.error("HEAD", path.as_ref(), &e)),
            },
        }
    }

    /// Writes `value` unless `path` exists; creates the bucket when the write finds it
    /// missing.
    async fn put_object(&self, path: &Path, value: Bytes) -> Result<SetOutcome, StoreError> {
        for attempt in 0..2 {
            let outcome = if value.len() > MULTIPART_OVER {
                if self.head_object(path).await?.is_some() {
                    return Ok(SetOutcome::AlreadyPresent);
                }
                let parts = (0..value.len())
                    .step_by(PART_SIZE)
                    .map(|at| Ok(value.slice(at..(at + PART_SIZE).min(value.len()))));
                return match self.upload_parts(path, futures::stream::iter(parts)).await {
                    Ok(()) => Ok(SetOutcome::Written),
                    Err(e) => Err(e.into_store_error(self, path.as_ref())),
                };
            } else {
                let _permit = self.permit().await?;
                let opts = PutOptions {
                    mode: PutMode::Create,
                    ..PutOptions::default()
                };
                self.inner
                    .client
                    .put_opts(path, PutPayload::from_bytes(value.clone()), opts)
                    .await
                    .map(|_| ())
            };
            match outcome {
                Ok(()) => return Ok(SetOutcome::Written),
                Err(e) => match self.classify(&e) {
                    Failure::Exists => return Ok(SetOutcome::AlreadyPresent),
                    Failure::NotFound if attempt == 0 => self.make_bucket().await?,
                    _ => return Err(self.error("PUT", path.as_ref(), &e)),
                },
            }
        }
        Err(StoreError::Other {
            store: self.inner.name.clone(),
            message: format!(
                "PUT {}: the bucket {} is missing right after it was created",
                path.as_ref(),
                self.inner.bucket
            ),
        })
    }

    /// A multipart upload of `parts` (each but the last at least 5 MiB), [`PARTS_IN_FLIGHT`]
    /// parts at once; aborted (parts removed) when anything fails. Creates the bucket when
    /// it is missing.
    async fn upload_parts<S>(&self, path: &Path, mut parts: S) -> Result<(), UploadError>
    where
        S: futures::Stream<Item = std::io::Result<Bytes>> + Unpin + Send,
    {
        let mut upload = None;
        for attempt in 0..2 {
            let begun = {
                let _permit = self.permit().await.map_err(UploadError::Store)?;
                self.inner.client.put_multipart(path).await
            };
            match begun {
                Ok(u) => {
                    upload = Some(u);
                    break;
                }
                Err(e) => match self.classify(&e) {
                    Failure::NotFound if attempt == 0 => {
                        self.make_bucket().await.map_err(UploadError::Store)?
                    }
                    _ => return Err(UploadError::Remote(e)),
                },
            }
        }
        let Some(upload) = upload else {
            return Err(UploadError::Store(StoreError::Other {
                store: self.inner.name.clone(),
                message: format!(
                    "PUT {}: the bucket {} is missing right after it was created",
                    path.as_ref(),
                    self.inner.bucket
                ),
            }));
        };
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let fed = async {
            while let Some(part) = parts.next().await {
                let part = part.map_err(UploadError::Read)?;
                writer
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(UploadError::Remote)?;
                writer.put(part);
            }
            Ok(())
        }
        .await;
        match fed {
            Ok(()) => writer
                .finish()
                .await
                .map(|_| ())
                .map_err(UploadError::Remote),
            Err(e) => {
                let _ = writer.abort().await;
                Err(e)
            }
        }
    }

    /// Creates the bucket (once per store; "already exists" is success).
    async fn make_bucket(&self) -> Result<(), StoreError> {
        let mut made = self.inner.bucket_made.lock().await;
        if *made {
            return Ok(());
        }
        let inner = &self.inner;
        let fail = |message: String| StoreError::Server {
            store: inner.name.clone(),
            key: None,
            message: format!("cannot create the bucket {}: {message}", inner.bucket),
        };
        let url = if inner.anonymous {
            // No credentials: an unsigned request (never the credential chain).
            reqwest::Url::parse(&inner.bucket_url).map_err(|e| fail(e.to_string()))?
        } else {
            inner
                .client
                .signed_url(
                    reqwest::Method::PUT,
                    &Path::from(""),
                    Duration::from_secs(300),
                )
                .await
                .map_err(|e| fail(scrub(&e.to_string(), inner.secret.as_deref())))?
        };
        let mut req = inner.http.put(url);
        if inner.region != "us-east-1" {
            req = req.body(format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                inner.region
            ));
        }
        // The signed URL carries a signature: errors are reported without it.
        let resp = req.send().await.map_err(|e| {
            let e = e.without_url();
            if e.is_timeout() {
                StoreError::Timeout {
                    store: inner.name.clone(),
                    key: None,
                    operation: "create bucket".into(),
                    after: inner.timeout,
                }
            } else {
                StoreError::Connection {
                    store: inner.name.clone(),
                    key: None,
                    message: format!("create bucket: {}", root_cause(&e)),
                }
            }
        })?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        let code = xml_code(&body);
        let exists = matches!(
            code.as_deref(),
            Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")
        );
        if status.is_success() || exists {
            tracing::info!(store = %inner.name, "created bucket {}", inner.bucket);
            *made = true;
            return Ok(());
        }
        let what = format!(
            "HTTP {status}{}",
            code.map(|c| format!(" {c}")).unwrap_or_default()
        );
        match status.as_u16() {
            401 | 403 => Err(StoreError::Auth {
                store: inner.name.clone(),
                message: format!("cannot create the bucket {}: {what}", inner.bucket),
            }),
            _ => Err(fail(scrub(&what, inner.secret.as_deref()))),
        }
    }

    /// Runs `op` for every key, up to `requests_in_flight` at once, results in key order.
    async fn pipelined<T, F, Fut>(&self, keys: &[Vec<u8>], op: F) -> Result<Vec<T>, StoreError>
    where
        F: Fn(S3Store, Path) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let paths = keys
            .iter()
            .map(|k| self.path_of(k))
            .collect::<Result<Vec<_>, _>>()?;
        futures::stream::iter(paths.into_iter().map(|p| op(self.clone(), p)))
            .buffered(self.inner.in_flight)
            .try_collect()
            .await
    }

    async fn delete_object(&self, path: &Path) -> Result<bool, StoreError> {
        if self.head_object(path).await?.is_none() {
            return Ok(false);
        }
        let _permit = self.permit().await?;
        match self.inner.client.delete(path).await {
            Ok(()) => Ok(true),
            Err(e) => match self.classify(&e) {
                Failure::NotFound => Ok(false),
                _ => Err(self.error("DELETE", path.as_ref(), &e)),
            },
        }
    }
}

/// Why a multipart upload failed.
enum UploadError {
    /// Reading the source failed.
    Read(std::io::Error),
    /// The object store refused or failed.
    Remote(object_store::Error),
    /// Already a store error (bucket creation, closed store).
    Store(StoreError),
}

impl UploadError {
    fn into_store_error(self, store: &S3Store, what: &str) -> StoreError {
        match self {
            UploadError::Read(e) => StoreError::Io {
                store: store.inner.name.clone(),
                key: Some(what.to_owned()),
                path: what.to_owned(),
                source: e,
            },
            UploadError::Remote(e) => store.error("PUT", what, &e),
            UploadError::Store(e) => e,
        }
    }
}

/// The message of the innermost error (reqwest's "error sending request" says little).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        last = c.to_string();
        cause = c.source();
    }
    last
}

/// A short account of a failed request: the status and the S3 error code and message of
/// the answer when there is one, and the retries made, without the request's URL.
fn request_summary(e: &(dyn std::error::Error + 'static)) -> String {
    // `object_store` nests "Error performing PUT <url> in 1ms, after N retries ... -
    // <cause>" somewhere in the chain; the cause reads "Server returned ...".
    let mut texts = vec![e.to_string()];
    let mut cause = e.source();
    while let Some(c) = cause {
        texts.push(c.to_string());
        cause = c.source();
    }
    let retries = texts
        .iter()
        .find_map(|t| {
            let i = t.find(", after ")?;
            t[i + 2..]
                .split(',')
                .next()
                .map(|s| format!(" ({})", s.trim()))
        })
        .unwrap_or_default();
    let cause = texts
        .iter()
        .find_map(|t| t.find("Server returned").map(|i| &t[i..]))
        .or(texts.last().map(String::as_str))
        .unwrap_or_default();
    let head = cause.split(": <").next().unwrap_or(cause).trim();
    let head = head
        .split(" - ")
        .last()
        .unwrap_or(head)
        .trim_end_matches(':')
        .trim();
    match (xml_code(cause), xml_message(cause)) {
        (Some(code), Some(msg)) => format!("{head}: {code}: {msg}{retries}"),
        (Some(code), None) => format!("{head}: {code}{retries}"),
        _ => format!("{head}{retries}"),
    }
}

fn xml_field(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{tag}>"))? + start;
    Some(body[start..end].trim().to_owned()).filter(|s| !s.is_empty())
}

fn xml_code(body: &str) -> Option<String> {
    xml_field(body, "Code")
}

fn xml_message(body: &str) -> Option<String> {
    xml_field(body, "Message")
}

/// Removes the secret from a message (servers may echo parts of a request).
fn scrub(message: &str, secret: Option<&str>) -> String {
    let mut out = message.to_owned();
    if let Some(s) = secret.filter(|s| !s.is_empty()) {
        out = out.replace(s, "***");
    }
    // Signed URLs carry a signature and the access key in their query.
    if let Some(i) = out.find("X-Amz-") {
        let end = out[i..]
            .find(char::is_whitespace)
            .map_or(out.len(), |n| i + n);
        out.replace_range(i..end, "***");
    }
    out
}

#[async_trait]
impl Store for S3Store {
    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        let path = self.path_of(key)?;
        self.get_object(&path).await
    }

    async fn exists(&self, key: &[u8]) -> Result<bool, StoreError> {
        let path = self.path_of(key)?;
        Ok(self.head_object(&path).await?.is_some())
    }

    async fn set(&self, key: &[u8], value: Bytes) -> Result<SetOutcome, StoreError> {
        let path = self.path_of(key)?;
        self.put_object(&path, value).await
    }

    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Bytes>>, StoreError> {
        self.pipelined(keys, |me, p| async move { me.get_object(&p).await })
            .await
    }

    async fn exists_many(&self, keys: &[Vec<u8>]) -> Result<Vec<bool>, StoreError> {
        let sizes = self
            .pipelined(keys, |me, p| async move { me.head_object(&p).await })
            .await?;
        Ok(sizes.into_iter().map(|s| s.is_some()).collect())
    }

    async fn set_many(&self, items: &[(Vec<u8>, Bytes)]) -> Result<Vec<SetOutcome>, StoreError> {
        let paths = items
            .iter()
            .map(|(k, _)| self.path_of(k))
            .collect::<Result<Vec<_>, _>>()?;
        let values: Vec<Bytes> = items.iter().map(|(_, v)| v.clone()).collect();
        futures::stream::iter(paths.into_iter().zip(values).map(|(p, v)| {
            let me = self.clone();
            async move { me.put_object(&p, v).await }
        }))
        .buffered(self.inner.in_flight)
        .try_collect()
        .await
    }
}

#[async_trait]
impl BlobStore for S3Store {
    async fn put(&self, name: &str, data: Bytes) -> Result<SetOutcome, StoreError> {
        let path = self.blob_path(name)?;
        self.put_object(&path, data).await
    }

    async fn put_file(&self, name: &str, file: &FsPath) -> Result<SetOutcome, StoreError> {
        let path = self.blob_path(name)?;
        let io = |e: std::io::Error| StoreError::Io {
            store: self.inner.name.clone(),
            key: Some(name.to_owned()),
            path: file.display().to_string(),
            source: e,
        };
        let size = tokio::fs::metadata(file).await.map_err(io)?.len();
        if size <= MULTIPART_OVER as u64 {
            let data = tokio::fs::read(file).await.map_err(io)?;
            return self.put_object(&path, Bytes::from(data)).await;
        }
        if self.head_object(&path).await?.is_some() {
            return Ok(SetOutcome::AlreadyPresent);
        }
        let f = tokio::fs::File::open(file).await.map_err(io)?;
        let parts = futures::stream::try_unfold(f, |mut f| async move {
            let mut buf = vec![0u8; PART_SIZE];
            let mut filled = 0;
            while filled < PART_SIZE {
                match f.read(&mut buf[filled..]).await? {
                    0 => break,
                    n => filled += n,
                }
            }
            if filled == 0 {
                return Ok(None);
            }
            buf.truncate(filled);
            Ok(Some((Bytes::from(buf), f)))
        });
        match self.upload_parts(&path, Box::pin(parts)).await {
            Ok(()) => Ok(SetOutcome::Written),
            Err(UploadError::Read(e)) => Err(io(e)),
            Err(e) => Err(e.into_store_error(self, name)),
        }
    }

    async fn get(&self, name: &str) -> Result<Option<Bytes>, StoreError> {
        let path = self.blob_path(name)?;
        self.get_object(&path).await
    }

    async fn get_to_file(&self, name: &str, dest: &FsPath) -> Result<Option<u64>, StoreError> {
        let path = self.blob_path(name)?;
        let got = {
            let _permit = self.permit().await?;
            match self.inner.client.get(&path).await {
                Ok(got) => got,
                Err(e) => {
                    return match self.classify(&e) {
                        Failure::NotFound => Ok(None),
                        _ => Err(self.error("GET", name, &e)),
                    }
                }
            }
        };
        let mut stream = got.into_stream();
        crate::blobs::write_atomically(&self.inner.name, name, dest, |file| {
            Box::pin(async move {
                use tokio::io::AsyncWriteExt;
                let mut n = 0u64;
                while let Some(part) = stream.next().await {
                    let part = part
                        .map_err(|e| std::io::Error::other(format!("download interrupted: {e}")))?;
                    file.write_all(&part).await?;
                    n += part.len() as u64;
                }
                Ok(n)
            })
        })
        .await
        .map(Some)
    }

    async fn size(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let path = self.blob_path(name)?;
        self.head_object(&path).await
    }

    async fn delete(&self, name: &str) -> Result<bool, StoreError> {
        let path = self.blob_path(name)?;
        self.delete_object(&path).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, StoreError> {
        let prefix = prefix.trim_end_matches('/');
        let p = if prefix.is_empty() {
            None
        } else {
            Some(self.blob_path(prefix)?)
        };
        let _permit = self.permit().await?;
        let mut out = Vec::new();
        let mut listing = self.inner.client.list(p.as_ref());
        while let Some(meta) = listing.next().await {
            match meta {
                Ok(m) => out.push(BlobInfo {
                    name: m.location.to_string(),
                    size: m.size,
                    modified: Some(std::time::SystemTime::from(m.last_modified)),
                }),
                Err(e) => match self.classify(&e) {
                    // No bucket yet: nothing stored.
                    Failure::NotFound => return Ok(Vec::new()),
                    _ => return Err(self.error("LIST", prefix, &e)),
                },
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}
