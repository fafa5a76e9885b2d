//! Manifests, indexes, image configs and platform selection.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::OciError;

/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The `Accept` header for manifest requests.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// A content descriptor.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// Digest (`sha256:...`).
    pub digest: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Platform (index entries).
    #[serde(default)]
    pub platform: Option<PlatformJson>,
    /// Annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// The platform object of an index entry.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct PlatformJson {
    /// CPU architecture (`amd64`, `arm64`, ...).
    #[serde(default)]
    pub architecture: String,
    /// Operating system (`linux`).
    #[serde(default)]
    pub os: String,
    /// CPU variant (`v7`, `v8`).
    #[serde(default)]
    pub variant: Option<String>,
}

/// An image manifest (Docker schema 2 or OCI).
#[derive(Clone, Debug, Deserialize)]
pub struct ImageManifest {
    /// Must be 2.
    #[serde(rename = "schemaVersion", default)]
    pub schema_version: u32,
    /// Media type, if written.
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// Layer blobs, base first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// A manifest list or OCI index.
#[derive(Clone, Debug, Deserialize)]
pub struct ImageIndex {
    /// Must be 2.
    #[serde(rename = "schemaVersion", default)]
    pub schema_version: u32,
    /// Media type, if written.
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    /// The platform manifests.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// Either kind of manifest document.
#[derive(Clone, Debug)]
pub enum ManifestDoc {
    /// A single image.
    Image(ImageManifest),
    /// A list of images by platform.
    Index(ImageIndex),
}

/// Parses a manifest document; `content_type` is the response's `Content-Type` (if any),
/// `what` names the document in errors.
pub fn parse_manifest(
    bytes: &[u8],
    content_type: Option<&str>,
    what: &str,
) -> Result<ManifestDoc, OciError> {
    let bad = |reason: String| OciError::InvalidManifest {
        what: what.to_string(),
        reason,
    };
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    let declared = v
        .get("mediaType")
        .and_then(|m| m.as_str())
        .map(str::to_string)
        .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_string()))
        .unwrap_or_default();
    if v.get("schemaVersion").and_then(|s| s.as_u64()) == Some(1)
        || declared.contains("manifest.v1+") && declared.contains("docker")
    {
        return Err(OciError::UnsupportedMediaType {
            what: what.to_string(),
            media_type:
                "Docker schema 1 manifest (deprecated; re-push the image with a current client)"
                    .into(),
        });
    }
    let is_index = match declared.as_str() {
        OCI_INDEX | DOCKER_MANIFEST_LIST => true,
        OCI_MANIFEST | DOCKER_MANIFEST => false,
        _ => v.get("manifests").is_some(),
    };
    if is_index {
        let idx: ImageIndex =
            serde_json::from_value(v).map_err(|e| bad(format!("invalid index: {e}")))?;
        Ok(ManifestDoc::Index(idx))
    } else {
        if v.get("config").is_none() {
            return Err(bad(format!(
                "neither an image manifest nor an index (media type {declared:?})"
            )));
        }
        let m: ImageManifest =
            serde_json::from_value(v).map_err(|e| bad(format!("invalid manifest: {e}")))?;
        if m.schema_version != 2 {
            return Err(bad(format!(
                "schemaVersion {} (2 expected)",
                m.schema_version
            )));
        }
        Ok(ManifestDoc::Image(m))
    }
}

/// A wanted platform: `os/arch[/variant]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    /// Operating system.
    pub os: String,
    /// Architecture (normalised: `amd64`, `arm64`, `arm`, ...).
    pub arch: String,
    /// Variant, if required.
    pub variant: Option<String>,
}

impl Default for Platform {
    fn default() -> Self {
        Platform {
            os: "linux".into(),
            arch: "amd64".into(),
            variant: None,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

fn normalise_arch(arch: &str) -> &str {
    match arch {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "armhf" | "armel" => "arm",
        "i386" | "i686" => "386",
        a => a,
    }
}

impl std::str::FromStr for Platform {
    type Err = OciError;

    /// Parses `os/arch[/variant]` (e.g. `linux/arm64`, `linux/arm/v7`).
    fn from_str(s: &str) -> Result<Platform, OciError> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || OciError::InvalidPlatform {
            platform: s.to_string(),
        };
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            arch: normalise_arch(&parts[1].to_ascii_lowercase()).to_string(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }
}

impl Platform {
    /// True when an index entry's platform satisfies this one.
    pub fn matches(&self, p: &PlatformJson) -> bool {
        if p.os != self.os || normalise_arch(&p.architecture) != self.arch {
            return false;
        }
        match (&self.variant, &p.variant) {
            (None, _) => true,
            (Some(w), Some(v)) => w == v,
            // arm64 images rarely write their (only) variant v8.
            (Some(w), None) => self.arch == "arm64" && w == "v8",
        }
    }

    /// Picks this platform's manifest from an index: the first match, preferring an exact
    /// variant match.
    pub fn select<'a>(
        &self,
        index: &'a ImageIndex,
        what: &str,
    ) -> Result<&'a Descriptor, OciError> {
        let candidates: Vec<&Descriptor> = index
            .manifests
            .iter()
            .filter(|d| d.platform.as_ref().is_some_and(|p| self.matches(p)))
            .collect();
        candidates
            .first()
            .copied()
            .ok_or_else(|| OciError::NoPlatform {
                image: what.to_string(),
                wanted: self.to_string(),
                available: index
                    .manifests
                    .iter()
                    .filter_map(|d| d.platform.as_ref())
                    .filter(|p| p.os != "unknown")
                    .map(|p| match &p.variant {
                        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                        None => format!("{}/{}", p.os, p.architecture),
                    })
                    .collect(),
            })
    }
}

/// The parts of an image config this converter uses.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ImageConfig {
    /// Architecture.
    #[serde(default)]
    pub architecture: String,
    /// Operating system.
    #[serde(default)]
    pub os: String,
    /// Creation time (RFC 3339).
    #[serde(default)]
    pub created: Option<String>,
    /// Runtime configuration.
    #[serde(default)]
    pub config: Option<RuntimeConfig>,
    /// Root filesystem: the uncompressed layer digests.
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

/// `config` of an image config.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RuntimeConfig {
    /// Entrypoint argv.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Command argv (arguments of the entrypoint when one is set).
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// `NAME=value` environment.
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// Working directory.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// Exposed ports (`"80/tcp": {}`).
    #[serde(default)]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    /// Volumes (`"/data": {}`).
    #[serde(default)]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    /// User.
    #[serde(default)]
    pub user: Option<String>,
}

/// `rootfs` of an image config.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RootFs {
    /// Digests of the uncompressed layers.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// Compression of a layer by media type; `Ok(None)` for media types that are not layers
/// this converter can read.
pub fn layer_media_ok(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.diff.tar"
            // docker save / some tools leave it empty
            | ""
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn platform_parsing_and_matching() {
        let p: Platform = "linux/aarch64".parse().unwrap();
        assert_eq!(p.arch, "arm64");
        let j = |a: &str, v: Option<&str>| PlatformJson {
            architecture: a.into(),
            os: "linux".into(),
            variant: v.map(Into::into),
        };
        assert!(p.matches(&j("arm64", Some("v8"))));
        assert!(!p.matches(&j("amd64", None)));
        let v7: Platform = "linux/arm/v7".parse().unwrap();
        assert!(v7.matches(&j("arm", Some("v7"))));
        assert!(!v7.matches(&j("arm", Some("v6"))));
        let v8: Platform = "linux/arm64/v8".parse().unwrap();
        assert!(v8.matches(&j("arm64", None)));
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux//".parse::<Platform>().is_err());
    }

    #[test]
    fn manifest_kinds() {
        let idx = br#"{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"sha256:00","size":1,"platform":{"os":"linux","architecture":"amd64"}}]}"#;
        assert!(matches!(
            parse_manifest(idx, None, "t").unwrap(),
            ManifestDoc::Index(_)
        ));
        let m = br#"{"schemaVersion":2,"config":{"mediaType":"c","digest":"sha256:00","size":1},"layers":[]}"#;
        assert!(matches!(
            parse_manifest(m, Some(DOCKER_MANIFEST), "t").unwrap(),
            ManifestDoc::Image(_)
        ));
        let v1 = br#"{"schemaVersion":1,"fsLayers":[]}"#;
        assert!(matches!(
            parse_manifest(v1, None, "t"),
            Err(OciError::UnsupportedMediaType { .. })
        ));
        assert!(parse_manifest(b"nope", None, "t").is_err());
    }
}
