//! OCI image conversion against a real registry (`docker-registry`), images built here as
//! OCI layouts and pushed with `skopeo`; `docker save` tarballs and OCI layouts as inputs.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use flist_convert::oci::{Credentials, ImageSource, OciError, OciOptions};
use flist_format::codec::decode_chunk;
use flist_format::{Flist, Kind, Tree};
use flist_store::Store;
use serde_json::json;
use test_support::registry::{sha256_digest, Layer, LayerTar, OciLayout, Registry};

/// The conversions, with the result read back into memory for the checks.
mod oci {
    use super::*;
    pub use flist_convert::oci::*;

    pub async fn convert(
        src: &ImageSource,
        opts: &OciOptions,
        store: Arc<dyn Store>,
    ) -> Result<(Flist, OciStats), OciError> {
        let (c, s) = flist_convert::oci::convert(src, opts, store).await?;
        Ok((c.into_flist().expect("staged tree reads back"), s))
    }

    pub async fn convert_reference(
        image: &str,
        opts: &OciOptions,
        store: Arc<dyn Store>,
    ) -> Result<(Flist, OciStats), OciError> {
        let (c, s) = flist_convert::oci::convert_reference(image, opts, store).await?;
        Ok((c.into_flist().expect("staged tree reads back"), s))
    }
}

async fn dir_store(dir: &Path) -> Arc<dyn Store> {
    flist_store::open(&format!("dir://{}", dir.display()))
        .await
        .expect("dir store")
}

/// Deterministic pseudo-random bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn zstd_layer(tar: &[u8]) -> Layer {
    let blob = zstd::encode_all(tar, 3).expect("zstd");
    Layer::with_media_type(
        blob,
        "application/vnd.oci.image.layer.v1.tar+zstd",
        &sha256_digest(tar),
    )
}

/// A file's content read back from the store (every chunk decoded and verified).
async fn content(store: &Arc<dyn Store>, kind: &Kind) -> Vec<u8> {
    let Kind::File { blocks, .. } = kind else {
        panic!("not a file")
    };
    let mut out = Vec::new();
    for b in blocks {
        let data = store
            .get(b.id())
            .await
            .expect("store get")
            .expect("chunk present");
        out.extend(decode_chunk(b, &data).expect("chunk decodes"));
    }
    out
}

/// path → "dir MODE" | "file MODE <content>" | "link -> target" (content shown as text when
/// short, else as its sha256).
async fn listing(tree: &Tree, store: &Arc<dyn Store>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for id in tree.walk() {
        if id == Tree::ROOT {
            continue;
        }
        let n = tree.node(id);
        let v = match &n.kind {
            Kind::Dir { .. } => format!("dir {:o}", n.meta.mode),
            Kind::File { .. } => {
                let c = content(store, &n.kind).await;
                let shown = if c.len() <= 64 {
                    String::from_utf8_lossy(&c).into_owned()
                } else {
                    sha256_digest(&c)
                };
                format!("file {:o} {shown}", n.meta.mode)
            }
            Kind::Symlink { target } => format!("link -> {target}"),
            Kind::Special { .. } => "special".into(),
        };
        out.insert(tree.path_of(id), v);
    }
    out
}

fn file(mode: u32, c: &[u8]) -> String {
    let shown = if c.len() <= 64 {
        String::from_utf8_lossy(c).into_owned()
    } else {
        sha256_digest(c)
    };
    format!("file {mode:o} {shown}")
}

struct ThreeLayers {
    layers: Vec<Layer>,
    config: serde_json::Value,
    expected: BTreeMap<String, String>,
}

/// The 3-layer image (layers gzip, plain, and zstd or gzip) and, computed independently of
/// the converter, the overlay of its layers (without `/.startup.toml`).
fn three_layers(zstd: bool) -> ThreeLayers {
    let tool = noise(600_000, 1);
    let big = noise(1_200_000, 2);
    let l1 = LayerTar::new()
        .dir("etc", 0o755)
        .file("etc/hosts", b"127.0.0.1 localhost\n", 0o644)
        .file("etc/remove-me", b"bye", 0o644)
        .dir("etc/app", 0o750)
        .file("etc/app/conf", b"v1", 0o640)
        .dir("usr", 0o755)
        .dir("usr/bin", 0o755)
        .file("usr/bin/tool", &tool, 0o755)
        .symlink("usr/bin/t", "tool")
        .dir("data", 0o755)
        .dir("data/old", 0o755)
        .file("data/old/a", b"a", 0o644)
        .file("data/old/b", b"b", 0o644)
        .file("swap", b"a file at first", 0o644)
        .dir("flip", 0o755)
        .file("flip/x", b"x", 0o644)
        .finish();
    let l2 = LayerTar::new()
        .dir("etc", 0o755)
        .whiteout("etc/remove-me")
        .file("etc/hosts", b"127.0.0.1 localhost\n10.0.0.1 db\n", 0o644)
        .hardlink("etc/hosts-link", "etc/hosts")
        .dir("usr", 0o755)
        .dir("usr/bin", 0o755)
        // a hard link to a file of the base layer
        .hardlink("usr/bin/tool-link", "usr/bin/tool")
        .dir("data", 0o755)
        .dir("data/old", 0o700)
        .opaque("data/old")
        .file("data/old/c", b"c", 0o644)
        .dir("swap", 0o755)
        .file("swap/inner", b"i", 0o644)
        .file("flip", b"now a file", 0o600)
        .finish();
    let l3 = LayerTar::new()
        .dir("opt", 0o755)
        .dir("opt/new", 0o755)
        .file("opt/new/file1", b"n1", 0o644)
        .file("opt/new/big", &big, 0o644)
        .file_owned("etc/app/extra", b"e", 0o600, 1000, 1000)
        .finish();
    let top = if zstd {
        zstd_layer(&l3)
    } else {
        Layer::gzip(&l3)
    };
    let layers = vec![Layer::gzip(&l1), Layer::plain(&l2), top];
    let config = json!({
        "Entrypoint": ["/usr/bin/tool", "--serve"],
        "Cmd": ["--port", "8080"],
        "Env": ["PATH=/usr/bin:/bin", "MODE=prod"],
        "WorkingDir": "/data",
        "ExposedPorts": {"8080/tcp": {}, "53/udp": {}},
        "Volumes": {"/data": {}},
    });
    let mut e = BTreeMap::new();
    let mut put = |p: &str, v: String| {
        e.insert(p.to_string(), v);
    };
    put("etc", "dir 755".into());
    put(
        "etc/hosts",
        file(0o644, b"127.0.0.1 localhost\n10.0.0.1 db\n"),
    );
    put(
        "etc/hosts-link",
        file(0o644, b"127.0.0.1 localhost\n10.0.0.1 db\n"),
    );
    put("etc/app", "dir 750".into());
    put("etc/app/conf", file(0o640, b"v1"));
    put("etc/app/extra", file(0o600, b"e"));
    put("usr", "dir 755".into());
    put("usr/bin", "dir 755".into());
    put("usr/bin/tool", file(0o755, &tool));
    put("usr/bin/tool-link", file(0o755, &tool));
    put("usr/bin/t", "link -> tool".into());
    put("data", "dir 755".into());
    put("data/old", "dir 700".into());
    put("data/old/c", file(0o644, b"c"));
    put("swap", "dir 755".into());
    put("swap/inner", file(0o644, b"i"));
    put("flip", file(0o600, b"now a file"));
    put("opt", "dir 755".into());
    put("opt/new", "dir 755".into());
    put("opt/new/file1", file(0o644, b"n1"));
    put("opt/new/big", file(0o644, &big));
    ThreeLayers {
        layers,
        config,
        expected: e,
    }
}

fn reg_opts() -> OciOptions {
    OciOptions {
        retries: 1,
        retry_delay: std::time::Duration::from_millis(50),
        ..OciOptions::default()
    }
}

async fn check_three_layer_result(
    flist: &Flist,
    store: &Arc<dyn Store>,
    expected: &BTreeMap<String, String>,
) {
    let mut got = listing(&flist.tree, store).await;
    let startup = got
        .remove(".startup.toml")
        .expect("/.startup.toml in the tree");
    assert!(startup.starts_with("file 644"), "{startup}");
    assert_eq!(
        &got, expected,
        "flattened tree differs from the overlay of the layers"
    );

    let md = &flist.metadata;
    assert_eq!(
        md.entrypoint().unwrap().unwrap(),
        ["/usr/bin/tool", "--serve", "--port", "8080"],
        "Entrypoint followed by Cmd"
    );
    let env = md.environ().unwrap().unwrap();
    assert_eq!(env.get("PATH").map(String::as_str), Some("/usr/bin:/bin"));
    assert_eq!(env.get("MODE").map(String::as_str), Some("prod"));
    let ports = md.ports().unwrap().unwrap();
    assert_eq!(ports.get("tcp/8080"), Some(&8080));
    assert_eq!(ports.get("udp/53"), Some(&53));
    let vols = md.volumes().unwrap().unwrap();
    assert_eq!(vols.keys().collect::<Vec<_>>(), ["/data"]);
    assert_eq!(md.get("workdir"), Some("/data"));

    let id = flist.tree.lookup(".startup.toml").expect("startup file");
    let text = String::from_utf8(content(store, &flist.tree.node(id).kind).await).expect("utf-8");
    let v: toml::Value = toml::from_str(&text).expect("startup.toml parses as TOML");
    let entry = &v["startup"]["entry"];
    assert_eq!(entry["name"].as_str(), Some("core.system"));
    let args = &entry["args"];
    assert_eq!(args["name"].as_str(), Some("/usr/bin/tool"));
    let a: Vec<&str> = args["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert_eq!(a, ["--serve", "--port", "8080"]);
    assert_eq!(args["dir"].as_str(), Some("/data"));
    assert_eq!(args["env"]["PATH"].as_str(), Some("/usr/bin:/bin"));
    assert_eq!(args["env"]["MODE"].as_str(), Some("prod"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_layer_image_flattens_like_an_overlay() {
    let reg = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let img = three_layers(true);
    let mut layout = OciLayout::new(&work.path().join("layout"));
    let digests = layout.add_image(
        Some("v1"),
        "linux",
        "amd64",
        img.config.clone(),
        &img.layers,
    );
    reg.push(layout.path(), "v1", "team/app", false);

    let store = dir_store(&work.path().join("store")).await;
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let ev = events.clone();
    let opts = OciOptions {
        progress: Some(Arc::new(move |e: &oci::OciEvent| {
            ev.lock().unwrap().push(format!("{e:?}"))
        })),
        ..reg_opts()
    };
    let (flist, stats) =
        oci::convert_reference(&format!("{}/team/app:v1", reg.host()), &opts, store.clone())
            .await
            .expect("converts");
    check_three_layer_result(&flist, &store, &img.expected).await;
    assert_eq!(stats.layers, digests.layers);
    assert_eq!(stats.layers_downloaded, digests.layers);
    assert!(stats.layers_reused.is_empty());
    assert_eq!(stats.manifest_digest, digests.manifest);
    assert_eq!(stats.platform, "linux/amd64");
    assert_eq!(stats.convert.files, 12);
    assert!(stats.convert.chunks_written >= 6, "{:?}", stats.convert);

    let ev = events.lock().unwrap().join("\n");
    for needle in [
        "Resolved",
        "LayerStart { index: 2",
        "Download { index: 0",
        "Apply { index: 1",
        "LayerDone { index: 2",
        "Packing",
    ] {
        assert!(ev.contains(needle), "no {needle} event in:\n{ev}");
    }

    // the result is a valid flist
    let out = work.path().join("app.flist");
    flist.write(&out).expect("writes");
    let back = Flist::open(&out).expect("reads back");
    assert_eq!(
        listing(&back.tree, &store).await,
        listing(&flist.tree, &store).await
    );
    assert_eq!(back.metadata, flist.metadata);
}

/// Two single-layer images for amd64 and arm64 under one index.
fn two_platforms(
    layout: &mut OciLayout,
) -> (
    test_support::registry::ImageDigests,
    test_support::registry::ImageDigests,
) {
    let amd = Layer::gzip(&LayerTar::new().file("arch", b"amd64", 0o644).finish());
    let arm = Layer::gzip(&LayerTar::new().file("arch", b"arm64", 0o644).finish());
    let a = layout.add_image(None, "linux", "amd64", json!({"Cmd": ["/amd"]}), &[amd]);
    let b = layout.add_image(None, "linux", "arm64", json!({"Cmd": ["/arm"]}), &[arm]);
    layout.add_index(
        "multi",
        &[
            (&a, "linux", "amd64", None),
            (&b, "linux", "arm64", Some("v8")),
        ],
    );
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_selection_downloads_only_the_chosen_platform() {
    let reg = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let mut layout = OciLayout::new(&work.path().join("layout"));
    let (amd, arm) = two_platforms(&mut layout);
    reg.push(layout.path(), "multi", "multi", true);
    let store = dir_store(&work.path().join("store")).await;
    let image = format!("{}/multi:multi", reg.host());

    let opts = OciOptions {
        platform: Some("linux/arm64".parse().unwrap()),
        ..reg_opts()
    };
    let (flist, stats) = oci::convert_reference(&image, &opts, store.clone())
        .await
        .expect("arm64 converts");
    let l = listing(&flist.tree, &store).await;
    assert_eq!(l.get("arch").map(String::as_str), Some("file 644 arm64"));
    assert_eq!(stats.platform, "linux/arm64");
    assert_eq!(stats.manifest_digest, arm.manifest);
    assert_eq!(
        stats.blobs_fetched,
        [arm.config.clone(), arm.layers[0].clone()]
    );
    // the registry itself saw no request for the amd64 blobs
    assert_eq!(reg.blob_gets(&amd.layers[0]), 0);
    assert_eq!(reg.blob_gets(&amd.config), 0);
    assert_eq!(reg.blob_gets(&arm.layers[0]), 1);
    assert_eq!(flist.metadata.entrypoint().unwrap().unwrap(), ["/arm"]);

    // default platform: linux/amd64
    let (flist, stats) = oci::convert_reference(&image, &reg_opts(), store.clone())
        .await
        .expect("amd64 converts");
    assert_eq!(
        stats.blobs_fetched,
        [amd.config.clone(), amd.layers[0].clone()]
    );
    assert_eq!(
        listing(&flist.tree, &store)
            .await
            .get("arch")
            .map(String::as_str),
        Some("file 644 amd64")
    );

    // a platform the index lacks
    let opts = OciOptions {
        platform: Some("linux/s390x".parse().unwrap()),
        ..reg_opts()
    };
    let err = oci::convert_reference(&image, &opts, store.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, OciError::NoPlatform { .. }), "{err}");
    assert!(err.to_string().contains("linux/arm64/v8"), "{err}");
}

fn single_layer_image(
    layout: &mut OciLayout,
    tag: &str,
    content: &[u8],
) -> test_support::registry::ImageDigests {
    let l = Layer::gzip(
        &LayerTar::new()
            .dir("srv", 0o755)
            .file("srv/data", content, 0o644)
            .finish(),
    );
    layout.add_image(
        Some(tag),
        "linux",
        "amd64",
        json!({"Entrypoint": ["/srv/data"]}),
        &[l],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_registry_requires_credentials() {
    let reg = Registry::start_with_auth("alice", "s3cret");
    let work = tempfile::tempdir().unwrap();
    let mut layout = OciLayout::new(&work.path().join("layout"));
    single_layer_image(&mut layout, "v1", b"private data");
    reg.push(layout.path(), "v1", "alice/private", false);
    let store = dir_store(&work.path().join("store")).await;
    let image = format!("{}/alice/private:v1", reg.host());

    let err = oci::convert_reference(&image, &reg_opts(), store.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, OciError::Auth { .. }), "{err:?}");
    assert!(err.to_string().contains("username and password"), "{err}");

    let wrong = OciOptions {
        credentials: Some(Credentials {
            username: "alice".into(),
            password: "nope".into(),
        }),
        ..reg_opts()
    };
    let err = oci::convert_reference(&image, &wrong, store.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, OciError::Auth { .. }), "{err:?}");
    assert!(err.to_string().contains("refused"), "{err}");
    assert!(!err.to_string().contains("nope"), "password leaked: {err}");

    let right = OciOptions {
        credentials: Some(Credentials {
            username: "alice".into(),
            password: "s3cret".into(),
        }),
        ..reg_opts()
    };
    let (flist, _) = oci::convert_reference(&image, &right, store.clone())
        .await
        .expect("converts with credentials");
    assert_eq!(
        listing(&flist.tree, &store)
            .await
            .get("srv/data")
            .map(String::as_str),
        Some("file 644 private data")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_unreachable_and_corrupt_layers_are_clear_errors() {
    let reg = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let store = dir_store(&work.path().join("store")).await;

    // unknown image
    let err = oci::convert_reference(
        &format!("{}/nobody/nothing:v1", reg.host()),
        &reg_opts(),
        store.clone(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, OciError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("nobody/nothing"), "{err}");

    // corrupt layer: same size, one byte changed in the registry's storage
    let mut layout = OciLayout::new(&work.path().join("layout"));
    let tar = LayerTar::new()
        .file("hello", b"hello world", 0o644)
        .finish();
    let layer = Layer::plain(&tar);
    let img = layout.add_image(
        Some("v1"),
        "linux",
        "amd64",
        json!({}),
        std::slice::from_ref(&layer),
    );
    reg.push(layout.path(), "v1", "corrupt", false);
    let blob = reg.blob_data_path(&img.layers[0]);
    let mut data = std::fs::read(&blob).expect("blob in registry storage");
    let pos = data
        .windows(11)
        .position(|w| w == b"hello world")
        .expect("content in the layer");
    data[pos] = b'j';
    std::fs::write(&blob, &data).unwrap();
    let cache = work.path().join("cache");
    let opts = OciOptions {
        cache_dir: Some(cache.clone()),
        ..reg_opts()
    };
    let err = oci::convert_reference(&format!("{}/corrupt:v1", reg.host()), &opts, store.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, OciError::DigestMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains(&img.layers[0]), "{err}");
    // a refused layer is not cached
    let hex = img.layers[0].trim_start_matches("sha256:");
    assert!(!cache.join(format!("layers/sha256/{hex}.layer.gz")).exists());

    // registry down
    let host = reg.host();
    drop(reg);
    let err = oci::convert_reference(&format!("{host}/team/app:v1"), &reg_opts(), store.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, OciError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains(&host), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_base_layer_is_not_downloaded_twice() {
    let reg = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let mut layout = OciLayout::new(&work.path().join("layout"));
    let base = Layer::gzip(
        &LayerTar::new()
            .dir("lib", 0o755)
            .file("lib/base.so", &noise(700_000, 9), 0o755)
            .finish(),
    );
    let one = Layer::gzip(&LayerTar::new().file("one", b"1", 0o644).finish());
    let two = Layer::gzip(
        &LayerTar::new()
            .file("two", b"2", 0o644)
            .whiteout("lib/base.so")
            .finish(),
    );
    layout.add_image(Some("a"), "linux", "amd64", json!({}), &[base.clone(), one]);
    let b = layout.add_image(
        Some("b"),
        "linux",
        "amd64",
        json!({}),
        &[base.clone(), two.clone()],
    );
    reg.push(layout.path(), "a", "app", false);
    reg.push(layout.path(), "b", "app", false);
    let store = dir_store(&work.path().join("store")).await;
    let opts = OciOptions {
        cache_dir: Some(work.path().join("cache")),
        ..reg_opts()
    };

    let (fa, sa) = oci::convert_reference(&format!("{}/app:a", reg.host()), &opts, store.clone())
        .await
        .unwrap();
    assert_eq!(sa.layers_downloaded.len(), 2);
    let (fb, sb) = oci::convert_reference(&format!("{}/app:b", reg.host()), &opts, store.clone())
        .await
        .unwrap();
    assert_eq!(sb.layers_reused, [base.digest()]);
    assert_eq!(sb.layers_downloaded, [two.digest()]);
    assert_eq!(sb.blobs_fetched, [b.config.clone(), two.digest()]);
    assert_eq!(
        reg.blob_gets(&base.digest()),
        1,
        "base layer fetched once over both conversions"
    );

    let la = listing(&fa.tree, &store).await;
    let lb = listing(&fb.tree, &store).await;
    assert_eq!(
        la.get("lib/base.so"),
        Some(&file(0o755, &noise(700_000, 9)))
    );
    assert!(la.contains_key("one"));
    assert!(
        !lb.contains_key("lib/base.so"),
        "whiteout applied over the cached base"
    );
    assert_eq!(lb.get("two").map(String::as_str), Some("file 644 2"));

    // a cache entry whose chunks are gone from the store is not trusted
    let other = dir_store(&work.path().join("other-store")).await;
    let (fc, sc) = oci::convert_reference(&format!("{}/app:a", reg.host()), &opts, other.clone())
        .await
        .unwrap();
    assert!(sc.layers_reused.is_empty());
    assert_eq!(listing(&fc.tree, &other).await, la);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_save_tarball_and_oci_layouts_convert() {
    let reg = Registry::start();
    let work = tempfile::tempdir().unwrap();
    // docker archives cannot hold zstd layers
    let img = three_layers(false);
    let mut layout = OciLayout::new(&work.path().join("layout"));
    layout.add_image(
        Some("v1"),
        "linux",
        "amd64",
        img.config.clone(),
        &img.layers,
    );
    let store = dir_store(&work.path().join("store")).await;
    let opts = reg_opts();

    // OCI layout directory written by this test
    let src = ImageSource::parse(&format!("oci:{}:v1", layout.path().display())).unwrap();
    let (flist, stats) = oci::convert(&src, &opts, store.clone())
        .await
        .expect("OCI layout converts");
    check_three_layer_result(&flist, &store, &img.expected).await;
    assert_eq!(stats.layers_downloaded.len(), 3);

    // docker save format, written by skopeo from the registry
    reg.push(layout.path(), "v1", "team/app", false);
    let archive = work.path().join("saved.tar");
    reg.pull_to(
        "team/app",
        "v1",
        &format!("docker-archive:{}:team/app:v1", archive.display()),
    );
    let src = ImageSource::parse(archive.to_str().unwrap()).unwrap();
    assert!(matches!(src, ImageSource::DockerArchive { .. }));
    let (flist, _) = oci::convert(&src, &opts, store.clone())
        .await
        .expect("docker save tarball converts");
    check_three_layer_result(&flist, &store, &img.expected).await;

    // OCI layout as a tar (oci-archive)
    let oci_tar = work.path().join("image-oci.tar");
    reg.pull_to(
        "team/app",
        "v1",
        &format!("oci-archive:{}:v1", oci_tar.display()),
    );
    let src = ImageSource::OciLayout {
        path: oci_tar,
        tag: Some("v1".into()),
    };
    let (flist, _) = oci::convert(&src, &opts, store.clone())
        .await
        .expect("OCI archive converts");
    check_three_layer_result(&flist, &store, &img.expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_layout_platforms_media_types_and_hostile_layers() {
    let work = tempfile::tempdir().unwrap();
    let store = dir_store(&work.path().join("store")).await;
    let mut layout = OciLayout::new(&work.path().join("layout"));
    two_platforms(&mut layout);
    single_layer_image(&mut layout, "amd-only", b"x");
    let bad_media = Layer::with_media_type(
        b"{}".to_vec(),
        "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
        "sha256:00",
    );
    layout.add_image(Some("helm"), "linux", "amd64", json!({}), &[bad_media]);
    let escape = Layer::plain(
        &LayerTar::new()
            .file_raw_name("../../etc/passwd", b"x", 0o644)
            .finish(),
    );
    layout.add_image(Some("escape"), "linux", "amd64", json!({}), &[escape]);
    let src = |tag: &str| ImageSource::OciLayout {
        path: layout.path().to_path_buf(),
        tag: Some(tag.into()),
    };

    // index in a layout: the platform picks the manifest
    let arm = OciOptions {
        platform: Some("linux/arm64/v8".parse().unwrap()),
        ..reg_opts()
    };
    let (flist, _) = oci::convert(&src("multi"), &arm, store.clone())
        .await
        .unwrap();
    assert_eq!(
        listing(&flist.tree, &store)
            .await
            .get("arch")
            .map(String::as_str),
        Some("file 644 arm64")
    );

    // an explicitly requested platform must match a single-platform image
    let err = oci::convert(&src("amd-only"), &arm, store.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, OciError::NoPlatform { .. }), "{err:?}");
    oci::convert(&src("amd-only"), &reg_opts(), store.clone())
        .await
        .expect("any platform by default");

    let err = oci::convert(&src("helm"), &reg_opts(), store.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(err, OciError::UnsupportedMediaType { .. }),
        "{err:?}"
    );

    let err = oci::convert(&src("escape"), &reg_opts(), store.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, OciError::Layer { index: 0, .. }), "{err:?}");
    assert!(err.to_string().contains("'..'"), "{err}");

    let err = oci::convert(&src("no-such-tag"), &reg_opts(), store.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, OciError::NotFound { .. }), "{err:?}");
}
