//! A small registry (distribution API v2) client on reqwest/rustls: manifests and blobs,
//! anonymous / bearer-token / basic auth, retries with backoff, resumed blob downloads.

use std::io;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RANGE, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Mutex};

use super::manifest::{Descriptor, MANIFEST_ACCEPT};
use super::net::{find_blocked, NetworkPolicy};
use super::reference::{host_part, Reference};
use super::{Credentials, OciError, OciOptions};

/// A client for one repository of one registry.
pub(crate) struct RegistryClient {
    http: reqwest::Client,
    base: String,
    registry: String,
    repository: String,
    creds: Option<Credentials>,
    auth: Mutex<Option<String>>,
    retries: u32,
    retry_delay: Duration,
    max_manifest: u64,
    network: NetworkPolicy,
}

/// Walks an error's source chain into one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    fn param(&self, k: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses `Bearer realm="...",service="...",scope="..."` (or `Basic realm="..."`).
pub(crate) fn parse_challenge(h: &str) -> Option<Challenge> {
    let h = h.trim();
    let (scheme, rest) = match h.split_once(' ') {
        Some((s, r)) => (s, r),
        None => (h, ""),
    };
    if scheme.is_empty() {
        return None;
    }
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next().is_none() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            val.push(n)
                        }
                    }
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                val.push(c);
                chars.next();
            }
        }
        params.push((key.trim().to_string(), val.trim().to_string()));
    }
    Some(Challenge {
        scheme: scheme.to_string(),
        params,
    })
}

impl RegistryClient {
    /// A client for `reference`'s repository.
    pub(crate) fn new(
        reference: &Reference,
        opts: &OciOptions,
    ) -> Result<RegistryClient, OciError> {
        let host = reference.api_host().to_string();
        let insecure = reference.is_loopback()
            || opts
                .insecure_registries
                .iter()
                .any(|h| h == &reference.registry || h == host_part(&reference.registry));
        let scheme = if insecure { "http" } else { "https" };
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(Duration::from_secs(20))
            .read_timeout(Duration::from_secs(120))
            .user_agent(concat!("flist-convert/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(opts.network.resolver())
            .redirect(opts.network.redirects())
            .build()
            .map_err(|e| OciError::Internal(format!("building the HTTP client: {}", chain(&e))))?;
        Ok(RegistryClient {
            http,
            base: format!("{scheme}://{host}"),
            registry: reference.registry.clone(),
            repository: reference.repository.clone(),
            creds: opts.credentials.clone(),
            auth: Mutex::new(None),
            retries: opts.retries,
            retry_delay: opts.retry_delay,
            max_manifest: opts.max_manifest_bytes,
            network: opts.network.clone(),
        })
    }

    /// A transport error: the policy's refusal when that is the cause (never retried),
    /// else unreachable.
    fn send_err(&self, e: &reqwest::Error) -> (OciError, bool) {
        match find_blocked(e) {
            Some(blocked) => (
                OciError::Blocked {
                    registry: self.registry.clone(),
                    blocked,
                },
                false,
            ),
            None => (
                OciError::Unreachable {
                    registry: self.registry.clone(),
                    reason: chain(e),
                },
                true,
            ),
        }
    }

    /// Refuses a URL whose IP-literal host the policy does not allow.
    fn check_url(&self, url: &str) -> Result<(), OciError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| self.auth_err(format!("malformed URL from the registry: {e}")))?;
        self.network
            .check_url(&parsed)
            .map_err(|blocked| OciError::Blocked {
                registry: self.registry.clone(),
                blocked,
            })
    }

    fn auth_err(&self, reason: impl Into<String>) -> OciError {
        OciError::Auth {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            reason: reason.into(),
        }
    }

    /// Performs a GET with auth, retries and backoff. Returns the response for any status
    /// other than 401/429/5xx (which are handled here).
    async fn get(&self, path: &str, headers: HeaderMap) -> Result<Response, OciError> {
        let url = format!("{}{path}", self.base);
        self.check_url(&url)?;
        let mut attempt = 0u32;
        let mut authed = false;
        loop {
            let mut req = self.http.get(&url).headers(headers.clone());
            if let Some(a) = self.auth.lock().await.clone() {
                req = req.header(AUTHORIZATION, a);
            }
            let retry_in = self.retry_delay * 2u32.saturating_pow(attempt.min(16));
            match req.send().await {
                Err(e) => {
                    let (err, retry) = self.send_err(&e);
                    if retry && attempt < self.retries {
                        attempt += 1;
                        tracing::debug!("GET {url}: {}; retrying", chain(&e));
                        tokio::time::sleep(retry_in).await;
                        continue;
                    }
                    return Err(err);
                }
                Ok(resp) => {
                    let status = resp.status();
                    if status == StatusCode::UNAUTHORIZED {
                        if authed {
                            let msg = error_message(resp).await;
                            return Err(self.auth_err(if self.creds.is_some() {
                                format!("credentials refused ({msg})")
                            } else {
                                format!(
                                    "authentication required: give a username and password ({msg})"
                                )
                            }));
                        }
                        let challenge = resp
                            .headers()
                            .get(WWW_AUTHENTICATE)
                            .and_then(|v| v.to_str().ok())
                            .and_then(parse_challenge)
                            .ok_or_else(|| {
                                self.auth_err(
                                    "HTTP 401 without a usable WWW-Authenticate challenge",
                                )
                            })?;
                        self.authenticate(&challenge).await?;
                        authed = true;
                        continue;
                    }
                    if status == StatusCode::FORBIDDEN {
                        let msg = error_message(resp).await;
                        return Err(self.auth_err(format!("forbidden ({msg})")));
                    }
                    if (status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error())
                        && attempt < self.retries
                    {
                        attempt += 1;
                        tokio::time::sleep(retry_in).await;
                        continue;
                    }
                    return Ok(resp);
                }
            }
        }
    }

    /// Answers a challenge: basic credentials, or a bearer token from the realm.
    async fn authenticate(&self, ch: &Challenge) -> Result<(), OciError> {
        if ch.scheme.eq_ignore_ascii_case("basic") {
            let Some(c) = &self.creds else {
                return Err(self.auth_err(
                    "authentication required: the registry asks for a username and password",
                ));
            };
            let v = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", c.username, c.password));
            *self.auth.lock().await = Some(format!("Basic {v}"));
            return Ok(());
        }
        if !ch.scheme.eq_ignore_ascii_case("bearer") {
            return Err(self.auth_err(format!("unsupported auth scheme {:?}", ch.scheme)));
        }
        let realm = ch
            .param("realm")
            .ok_or_else(|| self.auth_err("bearer challenge without a realm"))?;
        self.check_url(realm)?;
        let default_scope = format!("repository:{}:pull", self.repository);
        let scope = ch.param("scope").unwrap_or(&default_scope);
        let mut query: Vec<(&str, &str)> = vec![("scope", scope)];
        if let Some(s) = ch.param("service") {
            query.push(("service", s));
        }
        let mut last_err = String::new();
        for attempt in 0..=self.retries {
            let mut req = self.http.get(realm).query(&query);
            if let Some(c) = &self.creds {
                req = req.basic_auth(&c.username, Some(&c.password));
            }
            match req.send().await {
                Err(e) => {
                    let (err, retry) = self.send_err(&e);
                    if !retry {
                        return Err(err);
                    }
                    last_err = chain(&e);
                }
                Ok(resp) => {
                    let status = resp.status();
                    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                        let msg = error_message(resp).await;
                        return Err(
                            self.auth_err(format!("token service refused the credentials ({msg})"))
                        );
                    }
                    if status.is_success() {
                        let text = resp.bytes().await.map_err(|e| {
                            self.auth_err(format!("reading the token response: {}", chain(&e)))
                        })?;
                        let body: serde_json::Value =
                            serde_json::from_slice(&text).map_err(|e| {
                                self.auth_err(format!("token response is not JSON: {e}"))
                            })?;
                        let token = body
                            .get("token")
                            .or_else(|| body.get("access_token"))
                            .and_then(|t| t.as_str())
                            .ok_or_else(|| self.auth_err("token response holds no token"))?;
                        *self.auth.lock().await = Some(format!("Bearer {token}"));
                        return Ok(());
                    }
                    last_err = format!("HTTP {status}: {}", error_message(resp).await);
                }
            }
            if attempt < self.retries {
                tokio::time::sleep(self.retry_delay * 2u32.saturating_pow(attempt)).await;
            }
        }
        Err(self.auth_err(format!("token service: {last_err}")))
    }

    fn not_found(&self, what: &str) -> OciError {
        OciError::NotFound {
            what: format!("{what} in {}/{}", self.registry, self.repository),
        }
    }

    async fn status_err(&self, request: String, resp: Response) -> OciError {
        let status = resp.status().as_u16();
        OciError::Registry {
            registry: self.registry.clone(),
            request,
            status,
            message: error_message(resp).await,
        }
    }

    /// Fetches a manifest by tag or digest: its bytes, content type and digest (verified
    /// when `reference` is a digest).
    pub(crate) async fn manifest(
        &self,
        reference: &str,
    ) -> Result<(Vec<u8>, Option<String>, String), OciError> {
        let mut h = HeaderMap::new();
        h.insert(
            ACCEPT,
            MANIFEST_ACCEPT
                .parse()
                .map_err(|_| OciError::Internal("accept header".into()))?,
        );
        let path = format!("/v2/{}/manifests/{reference}", self.repository);
        let resp = self.get(&path, h).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(self.not_found(&format!("manifest {reference}")));
        }
        if !resp.status().is_success() {
            return Err(self.status_err(format!("GET {path}"), resp).await);
        }
        let ctype = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = self
            .read_small(resp, &format!("manifest {reference}"))
            .await?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        if reference.starts_with("sha256:") && digest != reference {
            return Err(OciError::DigestMismatch {
                what: format!("manifest {}/{}@{reference}", self.registry, self.repository),
                expected: reference.to_string(),
                actual: digest,
            });
        }
        Ok((body, ctype, digest))
    }

    async fn read_small(&self, resp: Response, what: &str) -> Result<Vec<u8>, OciError> {
        let mut out = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(b) = stream.next().await {
            let b = b.map_err(|e| OciError::Unreachable {
                registry: self.registry.clone(),
                reason: chain(&e),
            })?;
            out.extend_from_slice(&b);
            if out.len() as u64 > self.max_manifest {
                return Err(OciError::InvalidManifest {
                    what: what.to_string(),
                    reason: format!("larger than {} bytes", self.max_manifest),
                });
            }
        }
        Ok(out)
    }

    /// Fetches a small blob (config) whole, verifying its digest.
    pub(crate) async fn small_blob(
        &self,
        desc: &Descriptor,
        what: &str,
    ) -> Result<Vec<u8>, OciError> {
        let resp = self.blob_response(&desc.digest, 0).await?;
        let body = self.read_small(resp, what).await?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        if digest != desc.digest {
            return Err(OciError::DigestMismatch {
                what: what.to_string(),
                expected: desc.digest.clone(),
                actual: digest,
            });
        }
        Ok(body)
    }

    async fn blob_response(&self, digest: &str, from: u64) -> Result<Response, OciError> {
        let mut h = HeaderMap::new();
        if from > 0 {
            h.insert(
                RANGE,
                format!("bytes={from}-")
                    .parse()
                    .map_err(|_| OciError::Internal("range header".into()))?,
            );
        }
        let path = format!("/v2/{}/blobs/{digest}", self.repository);
        let resp = self.get(&path, h).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(self.not_found(&format!("blob {digest}")));
        }
        if from > 0 && resp.status() != StatusCode::PARTIAL_CONTENT {
            return Err(self
                .status_err(format!("GET {path} (resume at byte {from})"), resp)
                .await);
        }
        if !resp.status().is_success() {
            return Err(self.status_err(format!("GET {path}"), resp).await);
        }
        Ok(resp)
    }

    /// Streams blob `digest` into `tx` (resuming with a range request after a dropped
    /// connection, up to the retry count). The receiver checks the digest. Stops quietly
    /// when the receiver goes away.
    pub(crate) async fn stream_blob(
        &self,
        digest: &str,
        tx: mpsc::Sender<io::Result<Bytes>>,
    ) -> Result<(), OciError> {
        let mut sent = 0u64;
        let mut resumes = 0u32;
        'outer: loop {
            let resp = match self.blob_response(digest, sent).await {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
                    return Err(e);
                }
            };
            let mut stream = resp.bytes_stream();
            while let Some(item) = stream.next().await {
                match item {
                    Ok(b) => {
                        sent += b.len() as u64;
                        if tx.send(Ok(b)).await.is_err() {
                            return Ok(());
                        }
                    }
                    Err(e) => {
                        if resumes < self.retries {
                            resumes += 1;
                            tracing::debug!(
                                "blob {digest}: {} after {sent} bytes; resuming",
                                chain(&e)
                            );
                            tokio::time::sleep(self.retry_delay).await;
                            continue 'outer;
                        }
                        let err = OciError::Unreachable {
                            registry: self.registry.clone(),
                            reason: chain(&e),
                        };
                        let _ = tx.send(Err(io::Error::other(err.to_string()))).await;
                        return Err(err);
                    }
                }
            }
            return Ok(());
        }
    }
}

/// What a registry's error response says, without echoing its body: the status and the
/// distribution-spec error codes (`MANIFEST_UNKNOWN`, `DENIED`, ...) when the body is a
/// standard error document. A hostile or internal server's text never reaches the caller.
async fn error_message(resp: Response) -> String {
    let status = resp.status();
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(Ok(b)) = stream.next().await {
        body.extend_from_slice(&b);
        if body.len() > 64 * 1024 {
            break;
        }
    }
    let mut codes = Vec::new();
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
        if let Some(errs) = v.get("errors").and_then(|e| e.as_array()) {
            for e in errs.iter().take(4) {
                if let Some(c) = e.get("code").and_then(|c| c.as_str()) {
                    if !c.is_empty()
                        && c.len() <= 64
                        && c.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
                    {
                        codes.push(c.to_string());
                    }
                }
            }
        }
    }
    if codes.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {}", codes.join(", "))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "Bearer");
        assert_eq!(c.param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c.param("service"), Some("registry.docker.io"));
        assert_eq!(c.param("scope"), Some("repository:library/alpine:pull"));
        let b = parse_challenge(r#"Basic realm="test-realm""#).unwrap();
        assert_eq!(b.scheme, "Basic");
        assert_eq!(b.param("REALM"), Some("test-realm"));
        assert!(parse_challenge("").is_none());
        // hostile: unterminated quote does not panic
        let h = parse_challenge(r#"Bearer realm="abc, service=x"#).unwrap();
        assert_eq!(h.param("realm"), Some("abc, service=x"));
    }
}
