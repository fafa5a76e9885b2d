//! A real OCI registry for tests: the Debian `docker-registry` (distribution `registry:2`)
//! server on a free loopback port, images built by the test as OCI layouts (layer tars,
//! config, manifests and indexes all written here), and `skopeo` to push and re-package them.
//!
//! Both programs must be installed (`apt-get install -y docker-registry skopeo`); when they
//! are missing the harness panics with that instruction instead of skipping.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// OCI media types used by the builders.
pub mod media {
    /// OCI image manifest.
    pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image config.
    pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// Uncompressed layer.
    pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    /// Gzip layer.
    pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
}

fn require(prog: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(prog))
        .find(|p| p.is_file());
    match found {
        Some(p) => p,
        None => panic!(
            "`{prog}` is not on PATH: the OCI tests run a real registry and push with skopeo.\n\
             Install them: apt-get install -y docker-registry skopeo"
        ),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding a free loopback port")
}

/// A running `docker-registry` on `127.0.0.1:<port>`, storage in a temporary directory;
/// stopped (killed and reaped) on drop.
pub struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    creds: Option<(String, String)>,
}

impl Registry {
    /// Starts an open (anonymous) registry.
    pub fn start() -> Registry {
        Self::spawn(None)
    }

    /// Starts a registry requiring HTTP basic auth (htpasswd, bcrypt) for `user`/`password`.
    pub fn start_with_auth(user: &str, password: &str) -> Registry {
        Self::spawn(Some((user.to_string(), password.to_string())))
    }

    fn spawn(creds: Option<(String, String)>) -> Registry {
        let bin = require("docker-registry");
        let dir = tempfile::tempdir().expect("temp dir for the registry");
        let port = free_port();
        let mut auth = String::new();
        if let Some((user, password)) = &creds {
            let hash = bcrypt::hash_with_result(password, 4)
                .expect("bcrypt hash")
                .format_for_version(bcrypt::Version::TwoY);
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{user}:{hash}\n")).expect("writing htpasswd");
            auth = format!(
                "auth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n",
                htpasswd.display()
            );
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: test-secret\n{auth}",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("writing registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let log2 = log.try_clone().expect("registry log");
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .expect("starting docker-registry");
        let mut reg = Registry {
            child,
            port,
            dir,
            creds,
        };
        reg.wait_ready();
        reg
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "docker-registry exited ({status}) before listening:\n{}",
                    self.log()
                );
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "docker-registry did not listen on port {} within 20 s:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log so far (includes an access log line per request).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Number of `GET` requests for blob `digest` (`sha256:...`) seen in the access log.
    pub fn blob_gets(&self, digest: &str) -> usize {
        let needle = format!("/blobs/{digest}");
        self.log()
            .lines()
            .filter(|l| l.contains("\"GET ") && l.contains(&needle))
            .count()
    }

    /// The file holding blob `digest` in the registry's storage (to corrupt it in tests).
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Pushes `<layout>:<tag>` to `<this registry>/<name>:<tag>` with skopeo (`all`: every
    /// platform of an index, not just the host's).
    pub fn push(&self, layout: &Path, tag: &str, name: &str, all: bool) {
        let dest = format!("docker://{}/{name}:{tag}", self.host());
        let src = format!("oci:{}:{tag}", layout.display());
        // --preserve-digests: push the blobs as built (no recompression of plain layers)
        let mut args: Vec<String> = vec![
            "copy".into(),
            "--dest-tls-verify=false".into(),
            "--preserve-digests".into(),
        ];
        if all {
            args.push("--all".into());
        }
        if let Some((u, p)) = &self.creds {
            args.push("--dest-creds".into());
            args.push(format!("{u}:{p}"));
        }
        args.push(src);
        args.push(dest);
        skopeo(&args);
    }

    /// Copies `<this registry>/<name>:<tag>` to a `skopeo` destination such as
    /// `docker-archive:/x.tar:name:tag`, `oci-archive:/x.tar` or `dir:/x`.
    pub fn pull_to(&self, name: &str, tag: &str, dest: &str) {
        let src = format!("docker://{}/{name}:{tag}", self.host());
        let mut args: Vec<String> = vec!["copy".into(), "--src-tls-verify=false".into()];
        if let Some((u, p)) = &self.creds {
            args.push("--src-creds".into());
            args.push(format!("{u}:{p}"));
        }
        args.push(src);
        args.push(dest.to_string());
        skopeo(&args);
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `skopeo --insecure-policy <args>`, panicking with its output on failure.
pub fn skopeo<S: AsRef<std::ffi::OsStr>>(args: &[S]) {
    let bin = require("skopeo");
    let out = Command::new(bin)
        .arg("--insecure-policy")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running skopeo");
    if !out.status.success() {
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        panic!(
            "skopeo {} failed ({}):\n{}{}",
            shown.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Builds a layer tar: directories, files, symlinks, hard links and OCI whiteouts, in the
/// order they are added.
pub struct LayerTar {
    builder: tar::Builder<Vec<u8>>,
    mtime: u64,
}

impl Default for LayerTar {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerTar {
    /// An empty layer; entries get mtime 1 600 000 000 and root ownership.
    pub fn new() -> Self {
        let mut builder = tar::Builder::new(Vec::new());
        builder.mode(tar::HeaderMode::Complete);
        LayerTar {
            builder,
            mtime: 1_600_000_000,
        }
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(self.mtime);
        h.set_uid(0);
        h.set_gid(0);
        h.set_username("root").expect("short name");
        h.set_groupname("root").expect("short name");
        h
    }

    /// A directory.
    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut h = self.header(tar::EntryType::Directory, mode, 0);
        self.builder
            .append_data(&mut h, path, std::io::empty())
            .expect("tar dir");
        self
    }

    /// A regular file owned by `uid:gid`.
    pub fn file_owned(mut self, path: &str, data: &[u8], mode: u32, uid: u64, gid: u64) -> Self {
        let mut h = self.header(tar::EntryType::Regular, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_username("").expect("empty");
        h.set_groupname("").expect("empty");
        self.builder
            .append_data(&mut h, path, data)
            .expect("tar file");
        self
    }

    /// A regular root-owned file.
    pub fn file(mut self, path: &str, data: &[u8], mode: u32) -> Self {
        let mut h = self.header(tar::EntryType::Regular, mode, data.len() as u64);
        self.builder
            .append_data(&mut h, path, data)
            .expect("tar file");
        self
    }

    /// A regular file whose member name is written as given, unchecked (hostile names such
    /// as `../x`, at most 100 bytes).
    pub fn file_raw_name(mut self, name: &str, data: &[u8], mode: u32) -> Self {
        let mut h = self.header(tar::EntryType::Regular, mode, data.len() as u64);
        let field = &mut h.as_old_mut().name;
        assert!(name.len() <= field.len(), "raw names are at most 100 bytes");
        field.fill(0);
        field[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        self.builder.append(&h, data).expect("tar file");
        self
    }

    /// A symbolic link.
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = self.header(tar::EntryType::Symlink, 0o777, 0);
        self.builder
            .append_link(&mut h, path, target)
            .expect("tar symlink");
        self
    }

    /// A hard link to `target` (a path in this or a lower layer).
    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = self.header(tar::EntryType::Link, 0o644, 0);
        self.builder
            .append_link(&mut h, path, target)
            .expect("tar hard link");
        self
    }

    /// An OCI whiteout deleting `path` of the lower layers (`dir/.wh.name`).
    pub fn whiteout(self, path: &str) -> Self {
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (format!("{d}/"), n),
            None => (String::new(), path),
        };
        self.file(&format!("{dir}.wh.{name}"), b"", 0o644)
    }

    /// An opaque whiteout: the lower layers' content of `dir` is hidden.
    pub fn opaque(self, dir: &str) -> Self {
        self.file(
            &format!("{}/.wh..wh..opq", dir.trim_end_matches('/')),
            b"",
            0o644,
        )
    }

    /// The tar bytes.
    pub fn finish(self) -> Vec<u8> {
        self.builder.into_inner().expect("finishing tar")
    }
}

/// Gzip-compresses `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

/// A layer as stored in an image: its blob bytes and media type.
#[derive(Clone, Debug)]
pub struct Layer {
    /// Blob bytes (compressed or not, per `media_type`).
    pub blob: Vec<u8>,
    /// Layer media type.
    pub media_type: String,
    /// Digest of the uncompressed tar (the config's `diff_id`).
    pub diff_id: String,
}

impl Layer {
    /// A gzip-compressed layer from tar bytes.
    pub fn gzip(tar: &[u8]) -> Layer {
        Layer {
            blob: gzip(tar),
            media_type: media::LAYER_GZIP.into(),
            diff_id: sha256_digest(tar),
        }
    }

    /// An uncompressed layer.
    pub fn plain(tar: &[u8]) -> Layer {
        Layer {
            blob: tar.to_vec(),
            media_type: media::LAYER_TAR.into(),
            diff_id: sha256_digest(tar),
        }
    }

    /// A layer with an explicit media type (blob stored as given).
    pub fn with_media_type(blob: Vec<u8>, media_type: &str, diff_id: &str) -> Layer {
        Layer {
            blob,
            media_type: media_type.into(),
            diff_id: diff_id.into(),
        }
    }

    /// `sha256:` digest of the blob.
    pub fn digest(&self) -> String {
        sha256_digest(&self.blob)
    }
}

/// Digests of an image written by [`OciLayout::add_image`].
#[derive(Clone, Debug)]
pub struct ImageDigests {
    /// Manifest digest.
    pub manifest: String,
    /// Manifest size.
    pub manifest_size: usize,
    /// Config digest.
    pub config: String,
    /// Layer blob digests, in order.
    pub layers: Vec<String>,
}

/// An OCI image layout directory written by the test (`oci-layout`, `index.json`, `blobs/`).
pub struct OciLayout {
    dir: PathBuf,
    index: Vec<Value>,
}

impl OciLayout {
    /// Creates (or reuses) the layout directory.
    pub fn new(dir: &Path) -> OciLayout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).expect("creating layout");
        std::fs::write(
            dir.join("oci-layout"),
            br#"{"imageLayoutVersion": "1.0.0"}"#,
        )
        .expect("oci-layout");
        let layout = OciLayout {
            dir: dir.to_path_buf(),
            index: Vec::new(),
        };
        layout.write_index();
        layout
    }

    /// The layout directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes a blob, returning its digest.
    pub fn add_blob(&self, data: &[u8]) -> String {
        let digest = sha256_digest(data);
        let hex = &digest["sha256:".len()..];
        std::fs::write(self.dir.join("blobs/sha256").join(hex), data).expect("writing blob");
        digest
    }

    /// Writes an image (config, layers, manifest) for `os/arch`; `tag` (if any) names it
    /// in `index.json`. `config` is the `config` object of the image config (`Entrypoint`,
    /// `Cmd`, `Env`, ...).
    pub fn add_image(
        &mut self,
        tag: Option<&str>,
        os: &str,
        arch: &str,
        config: Value,
        layers: &[Layer],
    ) -> ImageDigests {
        let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
        let cfg = json!({
            "created": "2020-09-13T12:26:40Z",
            "architecture": arch,
            "os": os,
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let cfg_bytes = serde_json::to_vec(&cfg).expect("config json");
        let config_digest = self.add_blob(&cfg_bytes);
        let mut layer_descs = Vec::new();
        let mut layer_digests = Vec::new();
        for l in layers {
            let d = self.add_blob(&l.blob);
            layer_descs.push(json!({"mediaType": l.media_type, "digest": d, "size": l.blob.len()}));
            layer_digests.push(d);
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": media::MANIFEST,
            "config": {"mediaType": media::CONFIG, "digest": config_digest, "size": cfg_bytes.len()},
            "layers": layer_descs,
        });
        let m_bytes = serde_json::to_vec(&manifest).expect("manifest json");
        let m_digest = self.add_blob(&m_bytes);
        if let Some(tag) = tag {
            self.index.push(json!({
                "mediaType": media::MANIFEST,
                "digest": m_digest,
                "size": m_bytes.len(),
                "platform": {"os": os, "architecture": arch},
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }));
            self.write_index();
        }
        ImageDigests {
            manifest: m_digest,
            manifest_size: m_bytes.len(),
            config: config_digest,
            layers: layer_digests,
        }
    }

    /// Writes an image index over `(image, os, arch, variant)` entries, tagged `tag`.
    pub fn add_index(
        &mut self,
        tag: &str,
        images: &[(&ImageDigests, &str, &str, Option<&str>)],
    ) -> String {
        let manifests: Vec<Value> = images
            .iter()
            .map(|(img, os, arch, variant)| {
                let mut platform = json!({"os": os, "architecture": arch});
                if let Some(v) = variant {
                    platform["variant"] = json!(v);
                }
                json!({"mediaType": media::MANIFEST, "digest": img.manifest, "size": img.manifest_size, "platform": platform})
            })
            .collect();
        let index = json!({"schemaVersion": 2, "mediaType": media::INDEX, "manifests": manifests});
        let bytes = serde_json::to_vec(&index).expect("index json");
        let digest = self.add_blob(&bytes);
        self.index.push(json!({
            "mediaType": media::INDEX,
            "digest": digest,
            "size": bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }));
        self.write_index();
        digest
    }

    fn write_index(&self) {
        let index = json!({"schemaVersion": 2, "manifests": self.index});
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec_pretty(&index).expect("json"),
        )
        .expect("writing index.json");
    }
}
