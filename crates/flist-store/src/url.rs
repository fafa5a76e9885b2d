//! Store URLs: parsing, redacted display, and [`open`]. (Flist `backend` metadata is not
//! this crate's business: `flist-convert::backend` maps it to a [`StoreUrl`].)
//!
//! Syntax (see `spec/zero-db.md`):
//! - `zdb://[:password@]host[:port][/namespace]` — 0-db over TCP (port 9900, namespace
//!   `default`)
//! - `zdb+unix:///path/to/socket[?ns=name][&password=...]` — 0-db over a unix socket
//! - `redis://[[user]:password@]host[:port][/db]` — plain Redis (port 6379, db 0)
//! - `redis+unix:///path/to/socket[?db=n][&password=...]` — Redis over a unix socket
//! - `dir:///path[?fsync=1]` — one file per chunk under `<root>/<hex[0..2]>/<hex>`
//! - `http(s)://host[:port]/base` — read-only
//! - `s3://[key[:secret]@]host[:port]/bucket[?region=R]` — an S3-compatible object store
//!   over plain HTTP (port 80 by default); `s3s://` (or `s3+tls://`, as rfs also accepts)
//!   over TLS (port 443). Missing credentials come from `AWS_ACCESS_KEY_ID` /
//!   `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`), a missing region from `AWS_REGION` /
//!   `AWS_DEFAULT_REGION`, else `us-east-1`. Chunks are objects named by the hex key at the
//!   bucket's root (the layout rfs uses).
//! - a router: `RANGE=URL` items separated by commas (or given separately to
//!   [`open_many`]), `RANGE` being `hh` or `hh-hh` over the first key byte, e.g.
//!   `00-7f=zdb://a,80-ff=zdb://b`. Overlapping ranges replicate.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::{Store, StoreError};

/// Where a RESP server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// TCP `host:port` (IPv6 hosts without brackets).
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// A unix socket path.
    Unix {
        /// Socket path.
        path: PathBuf,
    },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Endpoint::Tcp { host, port } => write!(f, "{host}:{port}"),
            Endpoint::Unix { path } => write!(f, "{}", path.display()),
        }
    }
}

/// One router entry: the stores for keys whose first byte is in `first..=last`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// First key byte covered.
    pub first: u8,
    /// Last key byte covered (inclusive).
    pub last: u8,
    /// The store.
    pub store: StoreUrl,
}

/// A parsed store URL. `Display` writes it back with any password shown as `***`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// A 0-db server.
    Zdb {
        /// Where it listens.
        endpoint: Endpoint,
        /// Namespace name.
        namespace: String,
        /// Namespace password (none: public read-only access, or an open namespace).
        password: Option<String>,
    },
    /// A Redis server.
    Redis {
        /// Where it listens.
        endpoint: Endpoint,
        /// Database number.
        db: u32,
        /// ACL user name (`AUTH user password`), if any.
        username: Option<String>,
        /// Password.
        password: Option<String>,
    },
    /// A local directory.
    Dir {
        /// Root directory.
        path: PathBuf,
        /// Whether writes are fsynced.
        fsync: bool,
    },
    /// A read-only HTTP(S) store: `GET <base>/<hex[0..2]>/<hex>`.
    Http {
        /// Base URL, without trailing slash.
        base: String,
    },
    /// An S3-compatible object store (path-style requests).
    S3 {
        /// TLS (`s3s://`) or plain HTTP (`s3://`).
        tls: bool,
        /// Host name or address (IPv6 without brackets).
        host: String,
        /// Port (default 80, or 443 with TLS).
        port: u16,
        /// Bucket (created on the first write when missing).
        bucket: String,
        /// Region (`?region=`); `None`: from the environment, else `us-east-1`.
        region: Option<String>,
        /// Access key id; `None`: `AWS_ACCESS_KEY_ID`, or anonymous requests.
        key: Option<String>,
        /// Secret key; `None`: `AWS_SECRET_ACCESS_KEY`. Never displayed.
        secret: Option<String>,
    },
    /// Ranges of the first key byte mapped to stores.
    Router(Vec<Route>),
}

fn redact_pw(pw: &Option<String>) -> &'static str {
    if pw.is_some() {
        ":***@"
    } else {
        ""
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Zdb {
                endpoint: ep @ Endpoint::Tcp { .. },
                namespace,
                password,
            } => {
                write!(f, "zdb://{}{ep}/{namespace}", redact_pw(password))
            }
            StoreUrl::Zdb {
                endpoint: Endpoint::Unix { path },
                namespace,
                password,
            } => {
                write!(f, "zdb+unix://{}?ns={namespace}", path.display())?;
                if password.is_some() {
                    f.write_str("&password=***")?;
                }
                Ok(())
            }
            StoreUrl::Redis {
                endpoint: ep @ Endpoint::Tcp { .. },
                db,
                username,
                password,
            } => {
                let user = username.as_deref().unwrap_or("");
                if password.is_some() {
                    write!(f, "redis://{user}:***@{ep}/{db}")
                } else if !user.is_empty() {
                    write!(f, "redis://{user}@{ep}/{db}")
                } else {
                    write!(f, "redis://{ep}/{db}")
                }
            }
            StoreUrl::Redis {
                endpoint: Endpoint::Unix { path },
                db,
                password,
                ..
            } => {
                write!(f, "redis+unix://{}?db={db}", path.display())?;
                if password.is_some() {
                    f.write_str("&password=***")?;
                }
                Ok(())
            }
            StoreUrl::Dir { path, fsync } => {
                write!(f, "dir://{}", path.display())?;
                if *fsync {
                    f.write_str("?fsync=1")?;
                }
                Ok(())
            }
            StoreUrl::Http { base } => f.write_str(&redact_http(base)),
            StoreUrl::S3 {
                tls,
                host,
                port,
                bucket,
                region,
                key,
                secret,
            } => {
                f.write_str(if *tls { "s3s://" } else { "s3://" })?;
                // The access key id is an identifier (S3 servers log it); the secret is not
                // shown.
                match (key, secret) {
                    (Some(k), Some(_)) => write!(f, "{k}:***@")?,
                    (Some(k), None) => write!(f, "{k}@")?,
                    (None, Some(_)) => f.write_str(":***@")?,
                    (None, None) => {}
                }
                let ep = Endpoint::Tcp {
                    host: host.clone(),
                    port: *port,
                };
                write!(f, "{ep}/{bucket}")?;
                if let Some(r) = region {
                    write!(f, "?region={r}")?;
                }
                Ok(())
            }
            StoreUrl::Router(routes) => {
                for (i, r) in routes.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{:02x}-{:02x}={}", r.first, r.last, r.store)?;
                }
                Ok(())
            }
        }
    }
}

/// `http://user:pw@host/x` → `http://user:***@host/x`.
fn redact_http(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let auth_end = rest.find('/').unwrap_or(rest.len());
    let (auth, path) = rest.split_at(auth_end);
    match auth.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// Decodes `%XX` escapes.
fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or("truncated %-escape")?;
            let v = u8::from_str_radix(hex, 16).map_err(|_| format!("bad %-escape %{hex}"))?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "%-escapes do not decode to UTF-8".to_owned())
}

/// Parses `a=b&c=d`.
fn query_pairs(q: &str) -> Result<Vec<(String, String)>, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

/// Parses `[userinfo@]host[:port]`: (user, password, host, port).
type Authority = (Option<String>, Option<String>, String, Option<u16>);

fn parse_authority(auth: &str) -> Result<Authority, String> {
    let (userinfo, hostport) = match auth.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, auth),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(u) => match u.split_once(':') {
            Some((user, pw)) => {
                let user = percent_decode(user)?;
                (
                    if user.is_empty() { None } else { Some(user) },
                    Some(percent_decode(pw)?),
                )
            }
            // `zdb://secret@host`: a lone userinfo is the password.
            None => (None, Some(percent_decode(u)?)),
        },
    };
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or("unclosed [ in host")?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(format!("unexpected {after:?} after host")),
        };
        (h.to_owned(), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (hostport.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err("missing host".into());
    }
    let port = port
        .map(|p| p.parse::<u16>().map_err(|_| format!("bad port {p:?}")))
        .transpose()?;
    Ok((user, password, host, port))
}

/// A router item prefix `hh=` or `hh-hh=`: returns (first, last, rest).
fn split_range(item: &str) -> Option<(u8, u8, &str)> {
    let (range, rest) = item.split_once('=')?;
    if range.contains("://") {
        return None;
    }
    let (a, b) = range.split_once('-').unwrap_or((range, range));
    if a.len() != 2 || b.len() != 2 {
        return None;
    }
    let first = u8::from_str_radix(a, 16).ok()?;
    let last = u8::from_str_radix(b, 16).ok()?;
    Some((first, last, rest))
}

impl StoreUrl {
    /// Parses a store URL or a comma-separated router list.
    pub fn parse(url: &str) -> Result<StoreUrl, StoreError> {
        let url = url.trim();
        if split_range(url).is_some() {
            // Split on commas that start a new `RANGE=` item (URLs may contain commas).
            let mut items: Vec<&str> = Vec::new();
            let mut start = 0;
            for (i, _) in url.match_indices(',') {
                if split_range(&url[i + 1..]).is_some() {
                    items.push(&url[start..i]);
                    start = i + 1;
                }
            }
            items.push(&url[start..]);
            return Self::parse_list(&items);
        }
        Self::parse_single(url).map_err(|reason| StoreError::InvalidUrl {
            url: redact_raw(url),
            reason,
        })
    }

    /// Parses several store arguments (e.g. repeated `--store` values) into one store: a
    /// single plain URL stays itself; otherwise every item must be `RANGE=URL` (an item may
    /// itself be a comma-separated list) and the result is a router.
    pub fn parse_list<S: AsRef<str>>(items: &[S]) -> Result<StoreUrl, StoreError> {
        if let [one] = items {
            if split_range(one.as_ref()).is_none() {
                return Self::parse(one.as_ref());
            }
        }
        let mut routes = Vec::new();
        for item in items {
            let item = item.as_ref().trim();
            let Some((first, last, rest)) = split_range(item) else {
                return Err(StoreError::InvalidUrl {
                    url: redact_raw(item),
                    reason: "router items must be RANGE=URL, e.g. 00-7f=zdb://host".into(),
                });
            };
            if rest.contains(',') && split_range(rest.split_once(',').map_or("", |x| x.1)).is_some()
            {
                match Self::parse(item)? {
                    StoreUrl::Router(r) => routes.extend(r),
                    other => routes.push(Route {
                        first,
                        last,
                        store: other,
                    }),
                }
                continue;
            }
            if first > last {
                return Err(StoreError::InvalidUrl {
                    url: redact_raw(item),
                    reason: format!("empty range {first:02x}-{last:02x}"),
                });
            }
            let store = Self::parse_single(rest).map_err(|reason| StoreError::InvalidUrl {
                url: redact_raw(item),
                reason,
            })?;
            routes.push(Route { first, last, store });
        }
        let router = StoreUrl::Router(routes);
        let mut covered = [false; 256];
        if let StoreUrl::Router(routes) = &router {
            for r in routes {
                for b in r.first..=r.last {
                    covered[b as usize] = true;
                }
            }
        }
        if let Some(gap) = covered.iter().position(|c| !c) {
            let end = covered[gap..]
                .iter()
                .position(|c| *c)
                .map_or(255, |n| gap + n - 1);
            return Err(StoreError::InvalidUrl {
                url: router.to_string(),
                reason: format!("no store covers keys starting with {gap:02x}-{end:02x}"),
            });
        }
        Ok(router)
    }

    fn parse_single(url: &str) -> Result<StoreUrl, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or("missing scheme (zdb://, redis://, dir://, ...)")?;
        let scheme = scheme.to_ascii_lowercase();
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let query = query_pairs(query.unwrap_or(""))?;
        let q = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        match scheme.as_str() {
            "zdb" | "redis" => {
                let (auth, path) = rest.split_once('/').unwrap_or((rest, ""));
                let (user, password, host, port) = parse_authority(auth)?;
                let password = password.or_else(|| q("password"));
                if scheme == "zdb" {
                    let ns = percent_decode(path.trim_end_matches('/'))?;
                    let namespace = match (ns.is_empty(), q("ns")) {
                        (false, _) => ns,
                        (true, Some(n)) => n,
                        (true, None) => "default".to_owned(),
                    };
                    check_ns(&namespace)?;
                    Ok(StoreUrl::Zdb {
                        endpoint: Endpoint::Tcp {
                            host,
                            port: port.unwrap_or(9900),
                        },
                        namespace,
                        password,
                    })
                } else {
                    let db = path.trim_end_matches('/');
                    let db = if db.is_empty() {
                        q("db").unwrap_or_default()
                    } else {
                        db.into()
                    };
                    let db = if db.is_empty() {
                        0
                    } else {
                        db.parse()
                            .map_err(|_| format!("bad redis db number {db:?}"))?
                    };
                    Ok(StoreUrl::Redis {
                        endpoint: Endpoint::Tcp {
                            host,
                            port: port.unwrap_or(6379),
                        },
                        db,
                        username: user,
                        password,
                    })
                }
            }
            "zdb+unix" | "redis+unix" => {
                if rest.is_empty() || !rest.starts_with('/') {
                    return Err("expected an absolute socket path: zdb+unix:///path".into());
                }
                let endpoint = Endpoint::Unix {
                    path: PathBuf::from(percent_decode(rest)?),
                };
                if scheme == "zdb+unix" {
                    let namespace = q("ns").unwrap_or_else(|| "default".into());
                    check_ns(&namespace)?;
                    Ok(StoreUrl::Zdb {
                        endpoint,
                        namespace,
                        password: q("password"),
                    })
                } else {
                    let db = match q("db") {
                        Some(d) => d
                            .parse()
                            .map_err(|_| format!("bad redis db number {d:?}"))?,
                        None => 0,
                    };
                    Ok(StoreUrl::Redis {
                        endpoint,
                        db,
                        username: None,
                        password: q("password"),
                    })
                }
            }
            "dir" => {
                if rest.is_empty() {
                    return Err("missing directory path: dir:///path".into());
                }
                let fsync = matches!(q("fsync").as_deref(), Some("1" | "true" | "yes"));
                Ok(StoreUrl::Dir {
                    path: PathBuf::from(percent_decode(rest)?),
                    fsync,
                })
            }
            "http" | "https" => {
                if rest.is_empty() || rest.starts_with('/') {
                    return Err("missing host".into());
                }
                let base = url.trim_end_matches('/').to_owned();
                Ok(StoreUrl::Http { base })
            }
            "s3" | "s3s" | "s3+tls" => {
                let tls = scheme != "s3";
                let (auth, bucket) = rest.split_once('/').unwrap_or((rest, ""));
                let (key, secret, host, port) = parse_authority(auth)?;
                // `s3://KEY@host`: a lone userinfo is the access key (the secret then comes
                // from the environment), unlike `zdb://secret@host`.
                let (key, secret) = match auth.rsplit_once('@') {
                    Some((userinfo, _)) if !userinfo.contains(':') => (secret, None),
                    _ => (key, secret),
                };
                let bucket = percent_decode(bucket.trim_end_matches('/'))?;
                check_bucket(&bucket)?;
                let region = q("region").filter(|r| !r.is_empty());
                Ok(StoreUrl::S3 {
                    tls,
                    host,
                    port: port.unwrap_or(if tls { 443 } else { 80 }),
                    bucket,
                    region,
                    key: key.filter(|k| !k.is_empty()),
                    secret: secret.filter(|s| !s.is_empty()),
                })
            }
            other => Err(format!(
                "unknown scheme {other:?} (expected zdb, zdb+unix, redis, redis+unix, dir, \
                 http, https, s3, s3s, or RANGE=URL items)"
            )),
        }
    }
}

impl std::str::FromStr for StoreUrl {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StoreUrl::parse(s)
    }
}

fn check_ns(ns: &str) -> Result<(), String> {
    if ns.is_empty() || ns.len() > 128 || ns.bytes().any(|b| b.is_ascii_whitespace() || b < 0x20) {
        return Err(format!("bad namespace name {ns:?}"));
    }
    Ok(())
}

/// S3 bucket naming rules: 3 to 63 lower-case letters, digits, dots and hyphens, starting and
/// ending with a letter or digit.
fn check_bucket(bucket: &str) -> Result<(), String> {
    if bucket.is_empty() {
        return Err("missing bucket: s3://key:secret@host:port/bucket".into());
    }
    let ok_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ends = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !(3..=63).contains(&bucket.len())
        || !ok_chars
        || !ends(bucket.bytes().next())
        || !ends(bucket.bytes().last())
    {
        return Err(format!(
            "bad bucket name {bucket:?} (3 to 63 characters: a-z, 0-9, '.', '-')"
        ));
    }
    Ok(())
}

/// Redacts the password of an unparsed URL for error messages (best effort).
fn redact_raw(url: &str) -> String {
    let mut out = String::new();
    let mut first = true;
    for part in url.split(',') {
        if !first {
            out.push(',');
        }
        first = false;
        let (prefix, u) = match part.split_once('=') {
            Some((p, u)) if !p.contains("://") => (format!("{p}="), u),
            _ => (String::new(), part),
        };
        out.push_str(&prefix);
        let u = match u.split_once("password=") {
            Some((a, _)) => format!("{a}password=***"),
            None => u.to_owned(),
        };
        out.push_str(&redact_http(&u));
    }
    out
}

/// Opens a store from a URL (or a comma-separated router list). See the module docs of
/// [`StoreUrl`] for the syntax.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    open_url(&StoreUrl::parse(url)?).await
}

/// Opens a store from several `--store` arguments (a router when more than one).
pub async fn open_many<S: AsRef<str>>(items: &[S]) -> Result<Arc<dyn Store>, StoreError> {
    open_url(&StoreUrl::parse_list(items)?).await
}

/// Opens a parsed store URL. Network stores connect lazily: the first operation connects.
pub async fn open_url(url: &StoreUrl) -> Result<Arc<dyn Store>, StoreError> {
    crate::open_url_with(url, &crate::OpenOptions::default()).await
}
