//! The one place where an flist's `backend` metadata (`.flist`) or route table (`.fl`) and
//! store URLs meet.
//!
//! [`store_url`] turns a [`Backend`] into the [`StoreUrl`] a reader opens, [`routes_url`]
//! an `.fl` route table into one (a router when the routes split the key space);
//! [`public_backend`] and [`public_routes`] turn the store a writer used into what to
//! record, never with a password.

use flist_format::{Backend, Route};
use flist_store::{Endpoint, StoreError, StoreUrl};

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

/// The store a reader opens for an `.fl` route table: the one store when a single route
/// covers every key, else a router (routes covering the same byte are replicas, read in
/// route order). Route URLs use rfs's syntax, which store URLs accept (`dir://`,
/// `zdb://[user:pass@]host[:port]/ns`, `http(s)://`, `s3://`); every first byte must be
/// covered.
pub fn routes_url(routes: &[Route]) -> Result<StoreUrl, StoreError> {
    let parsed: Vec<flist_store::Route> = routes
        .iter()
        .map(|r| {
            Ok(flist_store::Route {
                first: r.start,
                last: r.end,
                store: StoreUrl::parse(&r.url)?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    if let [one] = &parsed[..] {
        if (one.first, one.last) == (0, 255) {
            return Ok(one.store.clone());
        }
    }
    let items: Vec<String> = parsed
        .iter()
        .map(|r| format!("{:02x}-{:02x}={}", r.first, r.last, r.store))
        .collect();
    let router = StoreUrl::Router(parsed);
    // The coverage check of router lists, on the redacted text (its URLs are not reused).
    if let Err(StoreError::InvalidUrl { reason, .. }) = StoreUrl::parse_list(&items) {
        if reason.contains("no store covers") {
            return Err(StoreError::InvalidUrl {
                url: router.to_string(),
                reason: format!("the flist's route table: {reason}"),
            });
        }
    }
    Ok(router)
}

/// A store's URL as an `.fl` route records it: without any password (rfs strips them too).
pub fn public_url(url: &StoreUrl) -> String {
    let mut clean = url.clone();
    match &mut clean {
        StoreUrl::Zdb { password, .. } | StoreUrl::Redis { password, .. } => *password = None,
        StoreUrl::S3 { secret, .. } => *secret = None,
        StoreUrl::Http { base } => {
            if let Some((scheme, rest)) = base.split_once("://") {
                let end = rest.find('/').unwrap_or(rest.len());
                let (auth, path) = rest.split_at(end);
                let host = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
                *base = format!("{scheme}://{host}{path}");
            }
        }
        StoreUrl::Dir { .. } | StoreUrl::Router(_) => {}
    }
    clean.to_string()
}

/// The route table to record in an `.fl` whose blocks were written to `url`: one route per
/// router entry, or `0..=255` for a single store; no passwords.
pub fn public_routes(url: &StoreUrl) -> Vec<Route> {
    match url {
        StoreUrl::Router(routes) => routes
            .iter()
            .map(|r| Route {
                start: r.first,
                end: r.last,
                url: public_url(&r.store),
            })
            .collect(),
        single => vec![Route {
            start: 0,
            end: 255,
            url: public_url(single),
        }],
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
    fn route_tables_open_routers_and_record_without_passwords() {
        let r = |start, end, url: &str| Route {
            start,
            end,
            url: url.into(),
        };
        let one = routes_url(&[r(0, 255, "dir:///fx/store")]).expect("one");
        assert_eq!(one.to_string(), "dir:///fx/store");
        let two = routes_url(&[
            r(0, 127, "dir:///fx/low"),
            r(128, 255, "zdb://u:pw@h:9900/ns"),
        ])
        .expect("two");
        assert_eq!(
            two.to_string(),
            "00-7f=dir:///fx/low,80-ff=zdb://:***@h:9900/ns"
        );
        let gap = routes_url(&[r(0, 127, "dir:///fx/low")]).expect_err("gap");
        assert!(gap.to_string().contains("80-ff"), "{gap}");
        assert!(routes_url(&[r(0, 255, "ftp://x")]).is_err());
        assert_eq!(
            public_routes(&two),
            [r(0, 127, "dir:///fx/low"), r(128, 255, "zdb://h:9900/ns")]
        );
        let http = StoreUrl::parse("https://u:pw@hub/chunks").expect("url");
        assert_eq!(public_routes(&http), [r(0, 255, "https://hub/chunks")]);
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
