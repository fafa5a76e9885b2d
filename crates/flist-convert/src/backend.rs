//! The one place where an flist's `backend` metadata and store URLs meet.
//!
//! [`store_url`] turns a [`Backend`] into the [`StoreUrl`] a reader opens;
//! [`public_backend`] turns the store a writer used (or a URL given as the public address)
//! into the `backend` to record, never with a password.

use flist_format::Backend;
use flist_store::{Endpoint, StoreUrl};

/// Why a store URL cannot be recorded as an flist backend.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{url} cannot be recorded as an flist backend: {reason}")]
pub struct NotABackend {
    /// The store (redacted).
    pub url: String,
    /// Why.
    pub reason: String,
}

/// The store a reader opens for `backend`: a 0-db over TCP or a socket (namespace
/// `default` when none is named, with the backend's read password), or a read-only HTTP(S)
/// store.
pub fn store_url(backend: &Backend) -> StoreUrl {
    match backend {
        Backend::Zdb {
            host,
            port,
            namespace,
            password,
            ..
        } => StoreUrl::Zdb {
            endpoint: Endpoint::Tcp {
                host: host.clone(),
                port: *port,
            },
            namespace: namespace.clone().unwrap_or_else(|| "default".into()),
            password: password.clone(),
        },
        Backend::ZdbSocket {
            socket,
            namespace,
            password,
            ..
        } => StoreUrl::Zdb {
            endpoint: Endpoint::Unix {
                path: socket.into(),
            },
            namespace: namespace.clone().unwrap_or_else(|| "default".into()),
            password: password.clone(),
        },
        Backend::Http { url } => StoreUrl::Http { base: url.clone() },
    }
}

/// The public `backend` for a store: its address without any password. Readers of the
/// reference tools understand 0-db backends only; `http(s)://` stores give the `{"url"}`
/// form. Local directories, Redis, S3 and routers cannot be recorded.
pub fn public_backend(url: &StoreUrl) -> Result<Backend, NotABackend> {
    let refuse = |reason: &str| NotABackend {
        url: url.to_string(),
        reason: reason.into(),
    };
    match url {
        StoreUrl::Zdb {
            endpoint: Endpoint::Tcp { host, port },
            namespace,
            ..
        } => Ok(Backend::zdb(host.clone(), *port, Some(namespace.clone()))),
        StoreUrl::Zdb {
            endpoint: Endpoint::Unix { path },
            namespace,
            ..
        } => Ok(Backend::ZdbSocket {
            socket: path.display().to_string(),
            namespace: Some(namespace.clone()),
            password: None,
            host: String::new(),
        }),
        StoreUrl::Http { base } => {
            // Drop any `user:password@` from the recorded URL.
            let clean = match base.split_once("://") {
                Some((scheme, rest)) => {
                    let end = rest.find('/').unwrap_or(rest.len());
                    let (auth, path) = rest.split_at(end);
                    let host = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
                    format!("{scheme}://{host}{path}")
                }
                None => base.clone(),
            };
            Backend::http(&clean).map_err(|e| refuse(&e.to_string()))
        }
        StoreUrl::Dir { .. } => Err(refuse(
            "a local directory is not reachable by readers (serve it over HTTP and give that URL)",
        )),
        StoreUrl::Redis { .. } => Err(refuse("readers speak 0-db or HTTP, not Redis")),
        StoreUrl::S3 { .. } => Err(refuse(
            "an S3 bucket is private to its key holders (serve its chunks over HTTP, e.g. a \
             hub's /chunks, and give that URL)",
        )),
        StoreUrl::Router(_) => Err(refuse(
            "a router of several stores cannot be one backend (give --public-backend URL)",
        )),
    }
}

/// Like [`public_backend`], `None` for stores that cannot be recorded.
pub fn public_backend_opt(url: &StoreUrl) -> Option<Backend> {
    public_backend(url).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_backend_shape_opens_the_right_store() {
        let cases = [
            (
                r#"{"host": "hub.grid.tf", "port": 9900, "namespace": "default"}"#,
                "zdb://hub.grid.tf:9900/default",
            ),
            (r#"{"host": "h", "port": "9901"}"#, "zdb://h:9901/default"),
            (
                r#"{"host": "h", "port": 1, "namespace": "n", "password": "pw"}"#,
                "zdb://:***@h:1/n",
            ),
            (r#"{"host": "[::1]", "port": 1}"#, "zdb://[::1]:1/default"),
            (
                r#"{"socket": "/run/z.sock", "namespace": "n", "host": "x", "port": 0}"#,
                "zdb+unix:///run/z.sock?ns=n",
            ),
            (
                r#"{"url": "http://127.0.0.1:5555/chunks"}"#,
                "http://127.0.0.1:5555/chunks",
            ),
        ];
        for (json, url) in cases {
            let b = Backend::parse(json).expect(json);
            let u = store_url(&b);
            assert_eq!(u.to_string(), url, "{json}");
            // the URL parses back to the same store
            assert_eq!(
                StoreUrl::parse(&u.to_string().replace("***", "pw")).ok(),
                Some(u.clone())
            );
            // and records back as the public form of the same backend
            let back = public_backend(&u).expect("recordable");
            assert_eq!(store_url(&back), store_url(&b.public()), "{json}");
        }
        let pw = store_url(&Backend::parse(r#"{"host":"h","password":"pw"}"#).expect("b"));
        assert!(matches!(pw, StoreUrl::Zdb { password: Some(p), .. } if p == "pw"));
    }

    #[test]
    fn public_backends_never_carry_a_password() {
        let u = StoreUrl::parse("zdb://:secret@10.0.0.1:9900/ns").expect("url");
        let b = public_backend(&u).expect("ok");
        assert_eq!(
            b.to_json(),
            r#"{"host": "10.0.0.1", "port": 9900, "namespace": "ns"}"#
        );
        let u = StoreUrl::parse("http://user:secret@hub/chunks").expect("url");
        let b = public_backend(&u).expect("ok");
        assert_eq!(b.to_json(), r#"{"url": "http://hub/chunks"}"#);
        for refused in [
            "dir:///tmp/x",
            "redis://127.0.0.1:6379",
            "00-7f=zdb://a,80-ff=zdb://b",
        ] {
            let u = StoreUrl::parse(refused).expect("url");
            let e = public_backend(&u).expect_err(refused);
            assert!(e.to_string().contains("cannot be recorded"), "{e}");
        }
    }
}
