//! Which network addresses the registry client may reach ([`NetworkPolicy`]).
//!
//! A server converting images for its callers must not become a proxy into its own network:
//! with [`NetworkPolicy::public_only`], every host the client connects to — the registry,
//! its token realm, every redirect hop — must resolve only to public addresses (checked after
//! DNS resolution, on the addresses actually dialled), unless the operator listed the host
//! in [`NetworkPolicy::trusted_hosts`]. The command line keeps the permissive default.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Address restrictions of the registry client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// Refuse hosts resolving to loopback, private, link-local, unique-local, shared (CGNAT),
    /// multicast or unspecified addresses.
    pub public_only: bool,
    /// Hosts (`host` or `host:port`) exempt from `public_only`: the operator trusts them.
    pub trusted_hosts: Vec<String>,
}

/// Why a connection was refused by the policy.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{host} resolves to the non-public address {addr}: refused (not a trusted host)")]
pub struct Blocked {
    /// The host name or address as written in the URL.
    pub host: String,
    /// The offending address.
    pub addr: IpAddr,
}

/// Is `ip` a public unicast address?
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let seg = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (seg[0] & 0xffc0) == 0xfe80 // link local fe80::/10
                || (seg[0] & 0xffc0) == 0xfec0 // site local (deprecated)
                || (seg[0] == 0x64 && seg[1] == 0xff9b) // NAT64 64:ff9b::/96 (maps IPv4)
                || (seg[0] == 0x2001 && seg[1] == 0x0db8)) // documentation
        }
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    let o = v4.octets();
    !(v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || o[0] == 0 // "this network"
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // shared address space 100.64.0.0/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18.0.0/15
        || o[0] >= 240) // reserved
}

impl NetworkPolicy {
    /// Is `host` (with `port`, when known) listed by the operator? An entry without a port
    /// trusts every port; with `port` unknown (`None`, the resolver's view), any entry of
    /// the host matches, which is why [`NetworkPolicy::check_url`] checks the port first.
    pub fn is_trusted(&self, host: &str, port: Option<u16>) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.trusted_hosts.iter().any(|t| {
            let (th, tp) = split_host_port(t);
            th.eq_ignore_ascii_case(host)
                && match (tp, port) {
                    (None, _) => true,
                    (Some(tp), Some(p)) => tp == p,
                    (Some(_), None) => true,
                }
        })
    }

    /// Checks a URL (the request's, every redirect hop's, a token realm's) before it is
    /// dialled: an IP-literal host must be public or trusted with this port. A host name is
    /// checked on the addresses it resolves to when connecting (`GuardedResolver`), which
    /// does not see the port: so a name the operator trusts only on other ports
    /// (`localhost:5000` listed, `localhost:5001` asked) is resolved here and must be
    /// public, as any untrusted name.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), Blocked> {
        if !self.public_only {
            return Ok(());
        }
        let port = url.port_or_known_default();
        let host = url.host_str().unwrap_or_default().to_string();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if self.is_trusted(bare, port) {
            return Ok(());
        }
        match bare.parse::<IpAddr>() {
            Ok(ip) if is_public(ip) => Ok(()),
            Ok(ip) => Err(Blocked { host, addr: ip }),
            // A name the resolver would let through for any port: check its addresses.
            Err(_) if self.is_trusted(bare, None) => {
                use std::net::ToSocketAddrs;
                let addrs = (bare, port.unwrap_or(0)).to_socket_addrs();
                match addrs.ok().and_then(|mut a| a.find(|a| !is_public(a.ip()))) {
                    Some(bad) => Err(Blocked {
                        host: format!("{host}:{}", port.unwrap_or(0)),
                        addr: bad.ip(),
                    }),
                    None => Ok(()),
                }
            }
            Err(_) => Ok(()),
        }
    }

    /// A DNS resolver enforcing the policy on every resolved address.
    pub(crate) fn resolver(&self) -> Arc<GuardedResolver> {
        Arc::new(GuardedResolver {
            policy: Arc::new(self.clone()),
        })
    }

    /// A redirect policy checking every hop (at most 10).
    pub(crate) fn redirects(&self) -> reqwest::redirect::Policy {
        let policy = self.clone();
        reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 10 {
                return attempt.error("too many redirects");
            }
            match policy.check_url(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(b) => attempt.error(b),
            }
        })
    }
}

fn split_host_port(s: &str) -> (&str, Option<u16>) {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((h, tail)) = rest.split_once(']') {
            return (h, tail.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(p) => (h, Some(p)),
            Err(_) => (s, None),
        },
        _ => (s, None),
    }
}

/// Resolves with the system resolver, then refuses non-public answers for untrusted names.
pub(crate) struct GuardedResolver {
    policy: Arc<NetworkPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if policy.public_only && !policy.is_trusted(&host, None) {
                if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
                    return Err(Box::new(Blocked {
                        host,
                        addr: bad.ip(),
                    })
                        as Box<dyn std::error::Error + Send + Sync>);
                }
            }
            let it: Addrs = Box::new(addrs.into_iter());
            Ok(it)
        })
    }
}

/// The [`Blocked`] refusal inside an error's source chain, if any.
pub(crate) fn find_blocked(e: &(dyn std::error::Error + 'static)) -> Option<Blocked> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(b) = err.downcast_ref::<Blocked>() {
            return Some(b.clone());
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn address_classes() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["1.1.1.1", "8.8.8.8", "2606:4700::1111", "151.101.1.1"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn urls_and_trusted_hosts() {
        let p = NetworkPolicy {
            public_only: true,
            trusted_hosts: vec!["127.0.0.1:5000".into(), "registry.lan".into()],
        };
        let u = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(p.check_url(&u("http://127.0.0.1:5000/v2/")).is_ok());
        assert!(p.check_url(&u("http://127.0.0.1:5001/v2/")).is_err());
        assert!(p.check_url(&u("http://[::1]:5000/v2/")).is_err());
        assert!(p.check_url(&u("http://169.254.169.254/latest")).is_err());
        assert!(p.check_url(&u("https://1.1.1.1/")).is_ok());
        assert!(p.check_url(&u("https://registry.lan/")).is_ok());
        assert!(p.is_trusted("registry.lan", Some(443)));
        assert!(!p.is_trusted("other.lan", None));
        // A trusted name on another port is checked as any name: localhost is private.
        let p = NetworkPolicy {
            public_only: true,
            trusted_hosts: vec!["localhost:5000".into()],
        };
        assert!(p.check_url(&u("http://localhost:5000/v2/")).is_ok());
        let e = p.check_url(&u("http://localhost:5001/v2/")).unwrap_err();
        assert!(e.to_string().contains("localhost:5001"), "{e}");
        assert!(p.check_url(&u("http://localhost/v2/")).is_err());
        let open = NetworkPolicy::default();
        assert!(open.check_url(&u("http://127.0.0.1:9/")).is_ok());
    }
}
