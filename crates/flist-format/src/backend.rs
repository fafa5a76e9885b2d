//! The flist `backend` metadata: where readers download chunks from.
//!
//! One typed [`Backend`] for every shape found in flists:
//! - `{"host": "hub.grid.tf", "port": 9900, "namespace"?: "ns", "password"?: "..",
//!   "token"?: ".."}` — a 0-db over TCP, as the reference `zflist metadata backend` and the
//!   old hub write it. `port` may be a number or a numeric string (some tools wrote
//!   `"9900"`); a missing port means 9900. The host may be given in brackets (`[::1]`).
//! - `{"socket": "/path", "namespace"?, "password"?, "host", "port": 0}` — a 0-db over a
//!   unix socket (`zflist metadata backend --socket`).
//! - `{"url": "http://hub/chunks"}` — a read-only HTTP(S) chunk store laid out as
//!   `<url>/<hex[0..2]>/<hex>`, what a hub serving its own chunks stamps. The reference C
//!   tools only read 0-db backends.
//!
//! A password (or token) is part of the stored value only: [`Backend::public`] drops it,
//! `Display` and `Debug` never show it, and [`Backend::to_public_value`] is what pages and
//! API answers render. Converting a backend to a store URL is not this crate's business
//! (`flist-convert::backend` does it, in one place).

use std::fmt;

use serde_json::{Map, Value};

use crate::error::FormatError;
use crate::metadata::{to_reference_json, KEY_BACKEND};

/// Default 0-db port when a backend names none.
pub const DEFAULT_ZDB_PORT: u16 = 9900;

/// Where readers download an flist's chunks from (the `backend` metadata).
#[derive(Clone, PartialEq, Eq)]
pub enum Backend {
    /// A 0-db over TCP.
    Zdb {
        /// Host name or address (IPv6 without brackets).
        host: String,
        /// TCP port.
        port: u16,
        /// Namespace (`None`: the server's `default`).
        namespace: Option<String>,
        /// Namespace password (read access; readable by anyone who has the flist).
        password: Option<String>,
        /// Access token, if any (never rendered).
        token: Option<String>,
    },
    /// A 0-db over a unix socket.
    ZdbSocket {
        /// Socket path.
        socket: String,
        /// Namespace (`None`: `default`).
        namespace: Option<String>,
        /// Namespace password.
        password: Option<String>,
        /// The `host` the reference writes next to the socket (ignored by readers).
        host: String,
    },
    /// A read-only HTTP(S) chunk store: `GET <url>/<hex[0..2]>/<hex>`.
    Http {
        /// Base URL (`http://` or `https://`), without trailing slash or credentials.
        url: String,
    },
}

fn bad(reason: impl Into<String>) -> FormatError {
    FormatError::Metadata {
        key: KEY_BACKEND.into(),
        reason: reason.into(),
    }
}

impl Backend {
    /// A TCP 0-db backend without credentials.
    pub fn zdb(host: impl Into<String>, port: u16, namespace: Option<String>) -> Backend {
        Backend::Zdb {
            host: host.into(),
            port,
            namespace,
            password: None,
            token: None,
        }
    }

    /// An HTTP(S) backend; the URL must be `http(s)://host/...` without credentials.
    pub fn http(url: &str) -> Result<Backend, FormatError> {
        let url = url.trim().trim_end_matches('/');
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| bad(format!("{url:?} is not an http:// or https:// URL")))?;
        let host = rest.split('/').next().unwrap_or_default();
        if host.is_empty() {
            return Err(bad(format!("{url:?} names no host")));
        }
        if host.contains('@') {
            return Err(bad("an http backend URL must not carry credentials"));
        }
        if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(bad(
                "an http backend URL must not contain spaces or control characters",
            ));
        }
        Ok(Backend::Http {
            url: url.to_string(),
        })
    }

    /// Parses the metadata value (JSON text).
    pub fn parse(text: &str) -> Result<Backend, FormatError> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        Backend::from_value(&v)
    }

    /// Parses an already-decoded metadata value.
    pub fn from_value(v: &Value) -> Result<Backend, FormatError> {
        let obj = v.as_object().ok_or_else(|| bad("not a JSON object"))?;
        let opt = |k: &str| -> Result<Option<String>, FormatError> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(bad(format!("\"{k}\" is not a string"))),
            }
        };
        let namespace = opt("namespace")?;
        if let Some(ns) = &namespace {
            if ns.len() > 128 || ns.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(bad(format!("bad namespace name {ns:?}")));
            }
        }
        if let Some(url) = opt("url")? {
            if obj.contains_key("host") || obj.contains_key("socket") {
                return Err(bad(
                    "\"url\" cannot be combined with \"host\" or \"socket\"",
                ));
            }
            return Backend::http(&url);
        }
        if let Some(socket) = opt("socket")? {
            return Ok(Backend::ZdbSocket {
                socket,
                namespace,
                password: opt("password")?,
                host: opt("host")?.unwrap_or_default(),
            });
        }
        let host = opt("host")?.ok_or_else(|| bad("no \"host\", \"socket\" or \"url\""))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&host)
            .to_string();
        if host
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '/')
        {
            return Err(bad(format!("bad host {host:?}")));
        }
        let port = match obj.get("port") {
            None | Some(Value::Null) => DEFAULT_ZDB_PORT,
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| bad(format!("port {n} is not in 0..=65535")))?,
            Some(Value::String(s)) => s
                .trim()
                .parse::<u16>()
                .map_err(|_| bad(format!("port {s:?} is not a number in 0..=65535")))?,
            Some(other) => return Err(bad(format!("port {other} is not a number"))),
        };
        Ok(Backend::Zdb {
            host,
            port,
            namespace,
            password: opt("password")?,
            token: opt("token")?,
        })
    }

    /// The stored JSON value, credentials included (what goes into the flist).
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        match self {
            Backend::Zdb {
                host,
                port,
                namespace,
                password,
                token,
            } => {
                m.insert("host".into(), Value::from(host.clone()));
                m.insert("port".into(), Value::from(*port));
                for (k, v) in [
                    ("namespace", namespace),
                    ("password", password),
                    ("token", token),
                ] {
                    if let Some(v) = v {
                        m.insert(k.into(), Value::from(v.clone()));
                    }
                }
            }
            Backend::ZdbSocket {
                socket,
                namespace,
                password,
                host,
            } => {
                m.insert("socket".into(), Value::from(socket.clone()));
                if let Some(n) = namespace {
                    m.insert("namespace".into(), Value::from(n.clone()));
                }
                if let Some(p) = password {
                    m.insert("password".into(), Value::from(p.clone()));
                }
                m.insert("host".into(), Value::from(host.clone()));
                m.insert("port".into(), Value::from(0));
            }
            Backend::Http { url } => {
                m.insert("url".into(), Value::from(url.clone()));
            }
        }
        Value::Object(m)
    }

    /// The stored JSON text, formatted like the reference tool (credentials included).
    pub fn to_json(&self) -> String {
        to_reference_json(&self.to_value())
    }

    /// The same backend without password or token.
    pub fn public(&self) -> Backend {
        match self.clone() {
            Backend::Zdb {
                host,
                port,
                namespace,
                ..
            } => Backend::Zdb {
                host,
                port,
                namespace,
                password: None,
                token: None,
            },
            Backend::ZdbSocket {
                socket,
                namespace,
                host,
                ..
            } => Backend::ZdbSocket {
                socket,
                namespace,
                password: None,
                host,
            },
            h @ Backend::Http { .. } => h,
        }
    }

    /// The JSON value to show anyone (pages, API answers, `inspect`): no credentials.
    pub fn to_public_value(&self) -> Value {
        self.public().to_value()
    }

    /// True when the stored value carries a password or a token.
    pub fn has_credentials(&self) -> bool {
        match self {
            Backend::Zdb {
                password, token, ..
            } => password.is_some() || token.is_some(),
            Backend::ZdbSocket { password, .. } => password.is_some(),
            Backend::Http { .. } => false,
        }
    }

    /// The `Storage:` line of the hub's `.txt`/`.json` description: `zdb://host:port` for a
    /// TCP 0-db (the old hub's form), the URL for an HTTP store, `zdb+unix://path` for a
    /// socket.
    pub fn storage_line(&self) -> String {
        match self {
            Backend::Zdb { host, port, .. } if host.contains(':') => {
                format!("zdb://[{host}]:{port}")
            }
            Backend::Zdb { host, port, .. } => format!("zdb://{host}:{port}"),
            Backend::ZdbSocket { socket, .. } => format!("zdb+unix://{socket}"),
            Backend::Http { url } => url.clone(),
        }
    }
}

/// Redacted: `zdb://host:port/namespace` (a password shown as `***`), the socket, or the URL.
impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pw = |p: &Option<String>| if p.is_some() { ":***@" } else { "" };
        match self {
            Backend::Zdb {
                host,
                port,
                namespace,
                password,
                ..
            } => {
                let ns = namespace.as_deref().unwrap_or("default");
                if host.contains(':') {
                    write!(f, "zdb://{}[{host}]:{port}/{ns}", pw(password))
                } else {
                    write!(f, "zdb://{}{host}:{port}/{ns}", pw(password))
                }
            }
            Backend::ZdbSocket {
                socket,
                namespace,
                password,
                ..
            } => {
                let ns = namespace.as_deref().unwrap_or("default");
                write!(f, "zdb+unix://{socket}?ns={ns}")?;
                if password.is_some() {
                    f.write_str("&password=***")?;
                }
                Ok(())
            }
            Backend::Http { url } => f.write_str(url),
        }
    }
}

/// Same as `Display`: credentials never appear in debug output either.
impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Backend({self})")
    }
}
