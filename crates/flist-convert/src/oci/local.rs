//! Local images: `docker save` tarballs and OCI image layouts (directory or tar). Tarballs
//! are indexed once (member → offset, size) and read in place; a gzip'd tarball is first
//! decompressed to a temporary file.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::manifest::{
    parse_manifest, Descriptor, ImageIndex, ImageManifest, ManifestDoc, Platform, OCI_MANIFEST,
};
use super::reference::validate_digest;
use super::OciError;

/// Where the files of a local image are.
enum Files {
    Dir(PathBuf),
    Tar {
        path: PathBuf,
        members: HashMap<String, (u64, u64)>,
        _tmp: Option<tempfile::NamedTempFile>,
    },
}

/// A local image, ready to have its layers read.
pub(crate) struct LocalImage {
    what: PathBuf,
    files: Files,
    /// Layer digest → file (member) name.
    layer_files: HashMap<String, String>,
}

/// An image resolved to one manifest.
pub(crate) struct Resolved {
    pub manifest: ImageManifest,
    pub manifest_digest: String,
    pub config: Vec<u8>,
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn clean(name: &str) -> String {
    let mut n = name;
    while let Some(r) = n.strip_prefix("./") {
        n = r;
    }
    n.trim_start_matches('/').to_string()
}

impl LocalImage {
    fn err(&self, reason: impl Into<String>) -> OciError {
        OciError::LocalImage {
            path: self.what.clone(),
            reason: reason.into(),
        }
    }

    /// Opens a directory or a (possibly gzip'd) tarball.
    fn open(path: &Path) -> Result<LocalImage, OciError> {
        let io = |source| OciError::Io {
            path: path.to_path_buf(),
            source,
        };
        if path.is_dir() {
            return Ok(LocalImage {
                what: path.to_path_buf(),
                files: Files::Dir(path.to_path_buf()),
                layer_files: HashMap::new(),
            });
        }
        let mut f = File::open(path).map_err(io)?;
        let mut magic = [0u8; 2];
        let n = f.read(&mut magic).map_err(io)?;
        f.seek(SeekFrom::Start(0)).map_err(io)?;
        let (tar_path, tmp) = if n == 2 && magic == [0x1f, 0x8b] {
            let mut tmp = tempfile::NamedTempFile::new().map_err(io)?;
            std::io::copy(&mut flate2::read::MultiGzDecoder::new(f), tmp.as_file_mut())
                .map_err(io)?;
            (tmp.path().to_path_buf(), Some(tmp))
        } else {
            (path.to_path_buf(), None)
        };
        let file = File::open(&tar_path).map_err(io)?;
        let mut ar = tar::Archive::new(file);
        let mut members = HashMap::new();
        let bad = |e: std::io::Error| OciError::LocalImage {
            path: path.to_path_buf(),
            reason: format!("not a readable tar archive: {e}"),
        };
        for entry in ar.entries().map_err(bad)? {
            let entry = entry.map_err(bad)?;
            let t = entry.header().entry_type();
            if !(t.is_file() || t == tar::EntryType::Continuous) {
                continue;
            }
            let name = clean(&String::from_utf8_lossy(&entry.path_bytes()));
            members.insert(name, (entry.raw_file_position(), entry.size()));
        }
        Ok(LocalImage {
            what: path.to_path_buf(),
            files: Files::Tar {
                path: tar_path,
                members,
                _tmp: tmp,
            },
            layer_files: HashMap::new(),
        })
    }

    fn exists(&self, name: &str) -> bool {
        match &self.files {
            Files::Dir(d) => d.join(name).is_file(),
            Files::Tar { members, .. } => members.contains_key(name),
        }
    }

    /// Opens a file of the image for streaming, with its size.
    fn open_file(&self, name: &str) -> Result<(Box<dyn Read + Send>, u64), OciError> {
        let name = clean(name);
        if name.split('/').any(|c| c == "..") {
            return Err(self.err(format!("refusing path {name:?}")));
        }
        match &self.files {
            Files::Dir(d) => {
                let p = d.join(&name);
                let f = File::open(&p).map_err(|source| OciError::Io {
                    path: p.clone(),
                    source,
                })?;
                let size = f
                    .metadata()
                    .map_err(|source| OciError::Io {
                        path: p.clone(),
                        source,
                    })?
                    .len();
                Ok((Box::new(f), size))
            }
            Files::Tar { path, members, .. } => {
                let &(off, size) = members
                    .get(&name)
                    .ok_or_else(|| self.err(format!("{name}: no such member")))?;
                let io = |source| OciError::Io {
                    path: path.clone(),
                    source,
                };
                let mut f = File::open(path).map_err(io)?;
                f.seek(SeekFrom::Start(off)).map_err(io)?;
                Ok((Box::new(f.take(size)), size))
            }
        }
    }

    fn read_small(&self, name: &str, max: u64) -> Result<Vec<u8>, OciError> {
        let (r, size) = self.open_file(name)?;
        if size > max {
            return Err(self.err(format!(
                "{name}: {size} bytes is too large for a manifest or config"
            )));
        }
        let mut out = Vec::new();
        r.take(max)
            .read_to_end(&mut out)
            .map_err(|source| OciError::Io {
                path: self.what.join(name),
                source,
            })?;
        Ok(out)
    }

    fn blob_name(digest: &str) -> Result<String, OciError> {
        validate_digest(digest).map_err(|r| OciError::InvalidManifest {
            what: digest.into(),
            reason: r,
        })?;
        Ok(format!("blobs/{}", digest.replacen(':', "/", 1)))
    }

    /// A blob of an OCI layout, whole, with its digest checked.
    fn read_blob(&self, digest: &str, max: u64) -> Result<Vec<u8>, OciError> {
        let data = self.read_small(&Self::blob_name(digest)?, max)?;
        let actual = sha256(&data);
        if actual != digest {
            return Err(OciError::DigestMismatch {
                what: format!("{}: blob", self.what.display()),
                expected: digest.into(),
                actual,
            });
        }
        Ok(data)
    }

    /// Opens the (compressed) stream of a layer of the resolved manifest.
    pub(crate) fn open_layer(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send>, OciError> {
        let name = match self.layer_files.get(&desc.digest) {
            Some(n) => n.clone(),
            None => Self::blob_name(&desc.digest)?,
        };
        Ok(self.open_file(&name)?.0)
    }

    /// Resolves an OCI layout to one image manifest.
    fn resolve_oci(
        &self,
        tag: Option<&str>,
        platform: Option<&Platform>,
        max: u64,
    ) -> Result<Resolved, OciError> {
        let index_bytes = self.read_small("index.json", max)?;
        let index: ImageIndex = serde_json::from_slice(&index_bytes)
            .map_err(|e| self.err(format!("index.json: {e}")))?;
        let chosen: Vec<&Descriptor> = match tag {
            Some(t) => index
                .manifests
                .iter()
                .filter(|d| {
                    d.annotations
                        .get("org.opencontainers.image.ref.name")
                        .is_some_and(|n| n == t)
                        || d.annotations
                            .get("io.containerd.image.name")
                            .is_some_and(|n| n == t || n.ends_with(&format!(":{t}")))
                })
                .collect(),
            None => index.manifests.iter().collect(),
        };
        let mut desc = match chosen.as_slice() {
            [] => {
                return Err(OciError::NotFound {
                    what: format!(
                        "image {} in OCI layout {}",
                        tag.unwrap_or("(any)"),
                        self.what.display()
                    ),
                })
            }
            [one] => (*one).clone(),
            many => {
                // Several platform manifests directly in index.json: choose by platform.
                let idx = ImageIndex {
                    schema_version: 2,
                    media_type: None,
                    manifests: many.iter().map(|d| (*d).clone()).collect(),
                };
                platform
                    .cloned()
                    .unwrap_or_default()
                    .select(&idx, &self.what.display().to_string())?
                    .clone()
            }
        };
        for _ in 0..4 {
            let bytes = self.read_blob(&desc.digest, max)?;
            let what = format!("{}@{}", self.what.display(), desc.digest);
            match parse_manifest(&bytes, Some(&desc.media_type), &what)? {
                ManifestDoc::Image(m) => {
                    let config = self.read_blob(&m.config.digest, max)?;
                    return Ok(Resolved {
                        manifest: m,
                        manifest_digest: desc.digest.clone(),
                        config,
                    });
                }
                ManifestDoc::Index(idx) => {
                    desc = platform
                        .cloned()
                        .unwrap_or_default()
                        .select(&idx, &what)?
                        .clone();
                }
            }
        }
        Err(self.err("image indexes nested too deeply"))
    }

    /// Resolves a `docker save` tarball (its `manifest.json`) to one image.
    fn resolve_docker(&mut self, image: Option<&str>, max: u64) -> Result<Resolved, OciError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            config: String,
            #[serde(default)]
            repo_tags: Option<Vec<String>>,
            layers: Vec<String>,
        }
        let bytes = self.read_small("manifest.json", max)?;
        let entries: Vec<Entry> =
            serde_json::from_slice(&bytes).map_err(|e| self.err(format!("manifest.json: {e}")))?;
        let entry = match image {
            Some(want) => entries
                .iter()
                .find(|e| {
                    e.repo_tags.iter().flatten().any(|t| {
                        t == want
                            || t.strip_prefix("docker.io/").is_some_and(|s| {
                                s == want || s.strip_prefix("library/") == Some(want)
                            })
                    })
                })
                .ok_or_else(|| OciError::NotFound {
                    what: format!("image {want} in {}", self.what.display()),
                })?,
            None => match entries.as_slice() {
                [] => return Err(self.err("manifest.json lists no image")),
                [one] => one,
                many => {
                    let tags: Vec<String> = many
                        .iter()
                        .flat_map(|e| e.repo_tags.clone().unwrap_or_default())
                        .collect();
                    return Err(self.err(format!(
                        "holds {} images; choose one of: {}",
                        many.len(),
                        tags.join(", ")
                    )));
                }
            },
        };
        let config = self.read_small(&entry.config, max)?;
        let config_digest = sha256(&config);
        let cfg: super::manifest::ImageConfig = serde_json::from_slice(&config)
            .map_err(|e| self.err(format!("{}: {e}", entry.config)))?;
        let diff_ids = cfg.rootfs.map(|r| r.diff_ids).unwrap_or_default();
        let mut layers = Vec::new();
        for (i, l) in entry.layers.iter().enumerate() {
            let name = clean(l);
            if !self.exists(&name) {
                return Err(self.err(format!("layer {name} listed in manifest.json is missing")));
            }
            // `blobs/sha256/<hex>` names its digest; older `<id>/layer.tar` files are
            // uncompressed, so their digest is the config's diff_id.
            let digest = match name.strip_prefix("blobs/sha256/") {
                Some(hex) => format!("sha256:{hex}"),
                None => diff_ids.get(i).cloned().ok_or_else(|| {
                    self.err(format!(
                        "layer {name}: no diff_id in the config to check it against"
                    ))
                })?,
            };
            validate_digest(&digest).map_err(|r| self.err(format!("layer {name}: {r}")))?;
            let size = self.open_file(&name)?.1;
            self.layer_files.insert(digest.clone(), name);
            layers.push(Descriptor {
                media_type: String::new(),
                digest,
                size,
                platform: None,
                annotations: Default::default(),
            });
        }
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            config: Descriptor {
                media_type: String::new(),
                digest: config_digest,
                size: config.len() as u64,
                platform: None,
                annotations: Default::default(),
            },
            layers,
        };
        Ok(Resolved {
            manifest,
            manifest_digest: sha256(&bytes),
            config,
        })
    }
}

/// Opens and resolves a local image: `docker` selects `docker save` format first (falling
/// back to an OCI layout inside the tarball), otherwise OCI layout first.
pub(crate) fn open(
    path: &Path,
    docker: bool,
    name: Option<&str>,
    platform: Option<&Platform>,
    max: u64,
) -> Result<(LocalImage, Resolved), OciError> {
    let mut img = LocalImage::open(path)?;
    let has_docker = img.exists("manifest.json");
    let has_oci = img.exists("index.json");
    let resolved = if has_docker && (docker || !has_oci) {
        img.resolve_docker(name, max)?
    } else if has_oci {
        img.resolve_oci(name, platform, max)?
    } else {
        return Err(img.err(
            "neither a docker save tarball (manifest.json) nor an OCI image layout (index.json)",
        ));
    };
    Ok((img, resolved))
}
