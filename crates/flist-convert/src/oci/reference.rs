//! Image references (`[registry/]repository[:tag][@digest]`) with Docker Hub defaults.

use super::OciError;

/// Docker Hub's registry name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's API host.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A parsed image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// Registry host (and port) as written, `docker.io` by default.
    pub registry: String,
    /// Repository path, `library/` added for official Docker Hub images.
    pub repository: String,
    /// Tag (`latest` when neither tag nor digest is given).
    pub tag: Option<String>,
    /// Digest (`sha256:...`), which wins over the tag when both are given.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses `nginx`, `nginx:1.25`, `ghcr.io/org/app@sha256:...`,
    /// `localhost:5000/team/app:v1`, ...
    pub fn parse(input: &str) -> Result<Reference, OciError> {
        let bad = |reason: &str| OciError::InvalidReference {
            reference: input.to_string(),
            reason: reason.into(),
        };
        let s = input.trim();
        let s = s.strip_prefix("docker://").unwrap_or(s);
        if s.is_empty() {
            return Err(bad("empty reference"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                validate_digest(d).map_err(|e| bad(&e))?;
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let t = &rest[last_slash + i + 1..];
                (&rest[..last_slash + i], Some(t.to_string()))
            }
            None => (rest, None),
        };
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
                && !t.starts_with(['.', '-']);
            if !ok {
                return Err(bad("invalid tag"));
            }
        }
        let (registry, repo) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.starts_with('[') =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
            _ => registry,
        };
        validate_registry(&registry).map_err(|e| bad(&e))?;
        if repo.is_empty() {
            return Err(bad("empty repository"));
        }
        for comp in repo.split('/') {
            let ok = !comp.is_empty()
                && comp.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
                })
                && comp.starts_with(|c: char| c.is_ascii_alphanumeric());
            if !ok {
                return Err(bad(
                    "repository components are lower-case letters, digits and . _ -",
                ));
            }
        }
        let repository = if registry == DOCKER_HUB && !repo.contains('/') {
            format!("library/{repo}")
        } else {
            repo
        };
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The host the registry API is served on (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What the manifest is fetched by: the digest if given, else the tag.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// True when the registry is on the loopback (`localhost`, `127.0.0.0/8`, `[::1]`),
    /// which is spoken to in plain HTTP.
    pub fn is_loopback(&self) -> bool {
        let host = host_part(&self.registry);
        host == "localhost" || host == "::1" || host.starts_with("127.")
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// The host of `host[:port]` (brackets of an IPv6 literal removed).
pub(crate) fn host_part(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.split(':').next().unwrap_or(registry)
}

/// Checks `host[:port]`: a DNS name or IPv4 address (or a bracketed IPv6 literal) and an
/// optional numeric port.
fn validate_registry(registry: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("registry {registry:?}: unclosed '['"))?;
        if h.is_empty() || !h.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(format!("registry {registry:?}: invalid IPv6 address"));
        }
        match after {
            "" => return Ok(()),
            a => (
                "",
                a.strip_prefix(':')
                    .ok_or_else(|| format!("registry {registry:?}: invalid port"))?,
            ),
        }
    } else {
        match registry.split_once(':') {
            Some((h, p)) => (h, p),
            None => (registry, "1"),
        }
    };
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("registry {registry:?}: invalid port"));
    }
    if !registry.starts_with('[') {
        let ok = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !ok {
            return Err(format!("registry {registry:?}: invalid host name"));
        }
    }
    Ok(())
}

/// Checks `sha256:<64 hex>` (the only algorithm verified here).
pub(crate) fn validate_digest(d: &str) -> Result<(), String> {
    let Some((alg, hex)) = d.split_once(':') else {
        return Err(format!("digest {d:?} has no algorithm"));
    };
    if alg != "sha256" {
        return Err(format!(
            "digest algorithm {alg:?} is not supported (sha256 only)"
        ));
    }
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!("digest {d:?} is not 64 lower-case hex digits"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_defaults() {
        let r = Reference::parse("nginx").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("docker.io", "library/nginx", Some("latest"))
        );
        assert_eq!(r.api_host(), "registry-1.docker.io");
        let r = Reference::parse("docker.io/user/app:1.2").unwrap();
        assert_eq!(
            (r.repository.as_str(), r.tag.as_deref()),
            ("user/app", Some("1.2"))
        );
        let r = Reference::parse("index.docker.io/busybox").unwrap();
        assert_eq!(r.repository, "library/busybox");
    }

    #[test]
    fn malformed_registries_are_refused() {
        for bad in [
            "docker-archive:/etc/passwd",
            "oci:/etc",
            "host:port/app",
            "exa_mple.com/app",
            "[zz]/app",
            "-bad.com/app",
            "host:123456/app",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
        for good in [
            "[::1]:5000/app",
            "127.0.0.1:5000/a/b:1",
            "my-reg.example.com/x",
        ] {
            assert!(Reference::parse(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn registries_ports_and_digests() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("localhost:5000/team/app@{d}")).unwrap();
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_ref(), d);
        assert!(r.is_loopback());
        let r = Reference::parse("127.0.0.1:39999/x:v1").unwrap();
        assert!(r.is_loopback());
        assert_eq!(r.to_string(), "127.0.0.1:39999/x:v1");
        assert!(!Reference::parse("ghcr.io/o/a").unwrap().is_loopback());
    }

    #[test]
    fn invalid_references_are_refused() {
        for bad in [
            "",
            "UPPER/case",
            "a:",
            "a@sha256:zz",
            "a@md5:00",
            "host.io/",
            "a:b c",
            "a//b",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
