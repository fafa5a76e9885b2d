//! One-shot commands that work on `.flist` files directly: `pack`, `extract`, `inspect`,
//! `verify`.

use std::fmt::Write as _;
use std::path::Path;

use flist_format::{Flist, Kind};
use serde_json::{json, Value};

use crate::backend::StoreConfig;
use crate::chunks;
use crate::commands::{perm_string, type_bits, type_char};
use crate::error::{Context, Error, Result};
use crate::response::{Progress, Response};

fn open_flist(function: &str, path: &Path) -> Result<Flist> {
    Flist::open(path).ctx(function)
}

/// `inspect <flist>`: the tree, counts, sizes and metadata.
pub fn inspect(path: &Path) -> Result<Response> {
    let flist = open_flist("inspect", path)?;
    let file_size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let tree = &flist.tree;
    let stats = tree.stats();
    let refs = chunks::chunk_refs(tree);
    let unique = chunks::unique_keys(&refs).len();
    let mut entries = Vec::with_capacity(tree.len());
    let mut listing = String::new();
    for id in tree.walk() {
        let n = tree.node(id);
        let path = format!("/{}", tree.path_of(id));
        let mut e = serde_json::Map::new();
        e.insert("path".into(), json!(path));
        e.insert("type".into(), json!(n.kind.type_name()));
        e.insert(
            "mode".into(),
            json!(format!("{:o}", type_bits(&n.kind) | n.meta.mode)),
        );
        e.insert("user".into(), json!(n.meta.uname));
        e.insert("group".into(), json!(n.meta.gname));
        e.insert("uid".into(), json!(n.meta.uid));
        e.insert("gid".into(), json!(n.meta.gid));
        e.insert("size".into(), json!(n.kind.size()));
        e.insert("mtime".into(), json!(n.meta.mtime));
        let mut extra = String::new();
        match &n.kind {
            Kind::Symlink { target } => {
                e.insert("target".into(), json!(target));
                extra = format!(" -> {target}");
            }
            Kind::Special { kind, rdev } => {
                e.insert("special".into(), json!(format!("{kind:?}").to_lowercase()));
                if let Some((a, b)) = rdev {
                    e.insert("device".into(), json!([a, b]));
                    extra = format!(" [{a},{b}]");
                }
            }
            Kind::File { blocks, .. } => {
                e.insert("chunks".into(), json!(blocks.len()));
            }
            Kind::Dir { .. } => {}
        }
        let _ = writeln!(
            listing,
            "{}{} {:>5}:{:<5} {:>10}  {}{}",
            type_char(&n.kind),
            perm_string(n.meta.mode),
            n.meta.uid,
            n.meta.gid,
            n.kind.size(),
            path,
            extra
        );
        entries.push(Value::Object(e));
    }
    let metadata = crate::metadata::metadata_json(&flist.metadata);
    let json = json!({
        "file": path.display().to_string(),
        "size": file_size,
        "regular": stats.regular,
        "symlink": stats.symlink,
        "directory": stats.directory,
        "special": stats.special,
        "fullsize": stats.fullsize,
        "chunks": refs.len(),
        "unique_chunks": unique,
        "metadata": metadata,
        "entries": entries,
    });
    let mut text = format!(
        "{}: {} bytes\n  regular files  : {}\n  symbolic links : {}\n  directories    : {}\n  special files  : {}\n  content size   : {} bytes\n  chunks         : {} ({} distinct)\n",
        path.display(),
        file_size,
        stats.regular,
        stats.symlink,
        stats.directory,
        stats.special,
        stats.fullsize,
        refs.len(),
        unique
    );
    if !flist.metadata.is_empty() {
        text.push_str("metadata:\n");
        if let Value::Object(m) = &metadata {
            for (k, v) in m {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let _ = writeln!(text, "  {k}: {v}");
            }
        }
    }
    text.push_str("tree:\n");
    text.push_str(&listing);
    Ok(Response::new(json, text))
}

/// `verify <flist> [--deep]`: every chunk must exist in the store (batched EXISTS); with
/// `deep`, every distinct chunk is also downloaded and decoded (both hashes checked).
pub fn verify(
    path: &Path,
    stores: &StoreConfig,
    deep: bool,
    progress: &dyn Progress,
) -> Result<Response> {
    let flist = open_flist("verify", path)?;
    let store = stores.open_read("verify", &flist.metadata)?;
    crate::commands::check_flist("verify", &flist, &store, deep, progress)
}

/// `pack <source> -o <out>`: builds an flist from a directory or a tar archive (any
/// compression; `-`: read from stdin), storing chunks in the configured store. When that
/// store is a single TCP 0-db, its public address (no password) becomes the flist's
/// `backend` metadata.
pub fn pack(
    source: &str,
    out: &Path,
    stores: &StoreConfig,
    progress: &dyn Progress,
) -> Result<Response> {
    let url = stores.require_write_url("pack")?;
    let store = crate::backend::open_store(&url).ctx("pack")?;
    let opts = flist_convert::ConvertOptions {
        runtime: Some(store.handle().clone()),
        ..Default::default()
    };
    let arc = store.store().clone();
    let conv = |e: flist_convert::ConvertError| {
        Error::new(
            "pack",
            crate::error::ErrorKind::Convert(format!("{source}: {e}")),
        )
    };
    let packed = if source == "-" {
        crate::convert::with_progress("packing", progress, opts, |o| {
            flist_convert::pack_archive(
                std::io::BufReader::with_capacity(1 << 20, std::io::stdin()),
                Some(&arc),
                &o,
            )
        })
    } else {
        let p = Path::new(source);
        let md = std::fs::metadata(p).map_err(|e| Error::io("pack", "reading", p, e))?;
        if md.is_dir() {
            crate::convert::with_progress("packing", progress, opts, |o| {
                flist_convert::pack_dir(p, Some(&arc), &o)
            })
        } else {
            let f = std::fs::File::open(p).map_err(|e| Error::io("pack", "opening", p, e))?;
            crate::convert::with_progress("packing", progress, opts, |o| {
                flist_convert::pack_archive(
                    std::io::BufReader::with_capacity(1 << 20, f),
                    Some(&arc),
                    &o,
                )
            })
        }
    }
    .map_err(conv)?;
    let mut metadata = flist_format::Metadata::new();
    if let Some(b) = url.to_backend_json() {
        metadata.set(flist_format::metadata::KEY_BACKEND, b);
    }
    let flist = Flist {
        tree: packed.tree,
        metadata,
    };
    flist.write(out).ctx("pack")?;
    let st = &packed.stats;
    let warnings: Vec<Value> = st
        .warnings
        .iter()
        .map(|w| json!({"message": w.message, "count": w.count}))
        .collect();
    let json = json!({
        "flist": out.display().to_string(),
        "store": url.to_string(),
        "regular": st.files,
        "symlink": st.symlinks,
        "directory": st.directories,
        "special": st.specials,
        "hardlink": st.hard_links,
        "failure": 0,
        "fullsize": st.bytes,
        "entries": st.entries,
        "bytes_read": st.bytes_read,
        "chunks_written": st.chunks_written,
        "chunks_present": st.chunks_present,
        "chunks_deduplicated": st.chunks_deduplicated,
        "warnings": warnings,
    });
    let mut text = format!(
        "{}: {} files, {} directories, {} symlinks, {} special files, {} bytes\nchunks: {} written, {} already in {}, {} repeated\n",
        out.display(),
        st.files,
        st.directories,
        st.symlinks,
        st.specials,
        st.bytes,
        st.chunks_written,
        st.chunks_present,
        url,
        st.chunks_deduplicated
    );
    for w in &st.warnings {
        let _ = writeln!(text, "warning: {} ({} entries)", w.message, w.count);
    }
    Ok(Response::new(json, text))
}

/// `extract <flist> <dir>`: materialises the tree under `dir` (created if absent, must be
/// empty), downloading contents from the store.
pub fn extract(
    path: &Path,
    dest: &Path,
    stores: &StoreConfig,
    progress: &dyn Progress,
) -> Result<Response> {
    let flist = open_flist("extract", path)?;
    let store = stores.open_read("extract", &flist.metadata)?;
    let opts = flist_convert::ExtractOptions {
        runtime: Some(store.handle().clone()),
        ..Default::default()
    };
    progress.update("extracting", 0, 0);
    let st = flist_convert::extract(&flist.tree, dest, store.store(), &opts)
        .map_err(|e| Error::new("extract", crate::error::ErrorKind::Convert(e.to_string())))?;
    progress.finish("extracted");
    let json = json!({
        "destination": dest.display().to_string(),
        "regular": st.files,
        "directory": st.directories,
        "symlink": st.symlinks,
        "special": st.specials,
        "special_skipped": st.specials_skipped,
        "fullsize": st.bytes,
        "chunks_fetched": st.chunks_fetched,
        "owners_restored": st.owners_restored,
    });
    let mut text = format!(
        "{}: {} files, {} directories, {} symlinks, {} special files, {} bytes ({} chunks from {store})\n",
        dest.display(),
        st.files,
        st.directories,
        st.symlinks,
        st.specials,
        st.bytes,
        st.chunks_fetched
    );
    if st.specials_skipped > 0 {
        let _ = writeln!(
            text,
            "warning: {} special files not created (devices need root; sockets cannot be created)",
            st.specials_skipped
        );
    }
    Ok(Response::new(json, text))
}

pub use flist_convert::oci::Credentials;

/// Options of `zflist docker`.
#[derive(Clone, Debug, Default)]
pub struct DockerArgs {
    /// `os/arch[/variant]` to pick from a multi-platform image.
    pub platform: Option<String>,
    /// Registry credentials.
    pub credentials: Option<flist_convert::oci::Credentials>,
    /// Registries spoken to in plain HTTP besides loopback ones.
    pub insecure_registries: Vec<String>,
    /// Layer cache directory (`None`: no cache).
    pub cache_dir: Option<std::path::PathBuf>,
}

/// Converts `image` (registry reference, `docker save` tarball or OCI layout) into an
/// flist, sending its chunks to `store`; errors are reported as `function`'s.
pub(crate) fn convert_image(
    function: &str,
    image: &str,
    store: &flist_store::BlockingStore,
    args: &DockerArgs,
    progress: &dyn Progress,
) -> Result<(Flist, flist_convert::oci::OciStats)> {
    use flist_convert::oci::{self, ImageSource, OciEvent, OciOptions};
    let err = |e: oci::OciError| {
        Error::new(
            function,
            crate::error::ErrorKind::Convert(format!("{image}: {e}")),
        )
    };
    let source = ImageSource::parse(image).map_err(err)?;
    let platform = args
        .platform
        .as_deref()
        .map(str::parse::<oci::Platform>)
        .transpose()
        .map_err(err)?;

    // Events come from converter threads; forward them to `progress` on this thread.
    let (tx, rx) = std::sync::mpsc::channel::<(String, u64, u64)>();
    let tx = std::sync::Mutex::new(tx);
    let send = move |m: String, cur: u64, total: u64| {
        if let Ok(tx) = tx.lock() {
            let _ = tx.send((m, cur, total));
        }
    };
    let opts = OciOptions {
        platform,
        credentials: args.credentials.clone(),
        insecure_registries: args.insecure_registries.clone(),
        cache_dir: args.cache_dir.clone(),
        convert: flist_convert::ConvertOptions {
            runtime: Some(store.handle().clone()),
            ..Default::default()
        },
        progress: Some(std::sync::Arc::new(move |e: &OciEvent| match e {
            OciEvent::Resolved { layers, bytes, .. } => {
                send(format!("resolved: {layers} layers"), 0, *bytes)
            }
            OciEvent::Download {
                index,
                bytes,
                total,
            } => send(format!("layer {}", index + 1), *bytes, *total),
            OciEvent::LayerStart {
                index,
                cached: true,
                ..
            } => send(format!("layer {} (cached)", index + 1), 0, 0),
            OciEvent::Packing => send("packing".into(), 0, 0),
            _ => {}
        })),
        ..OciOptions::default()
    };
    let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
    let arc = store.store().clone();
    store.handle().spawn(async move {
        let r = oci::convert(&source, &opts, arc).await;
        // `opts` (and with it the progress sender) is dropped before the result is sent
        drop(opts);
        let _ = done_tx.send(r);
    });
    for (m, cur, total) in rx {
        progress.update(&m, cur, total);
    }
    progress.finish("converted");
    done_rx
        .recv()
        .map_err(|_| {
            err(oci::OciError::Internal(
                "the conversion task stopped".into(),
            ))
        })?
        .map_err(err)
}

/// `docker <image> -o <out>`: converts a registry image, a `docker save` tarball or an OCI
/// layout into an flist, storing chunks in the configured store; the store's public address
/// becomes the `backend` metadata, next to the image's entrypoint/environ/port/volume.
pub fn docker(
    image: &str,
    out: &Path,
    stores: &StoreConfig,
    args: &DockerArgs,
    progress: &dyn Progress,
) -> Result<Response> {
    let url = stores.require_write_url("docker")?;
    let store = crate::backend::open_store(&url).ctx("docker")?;
    let (mut flist, stats) = convert_image("docker", image, &store, args, progress)?;
    if let Some(b) = url.to_backend_json() {
        flist.metadata.set(flist_format::metadata::KEY_BACKEND, b);
    }
    flist.write(out).ctx("docker")?;
    let st = &stats.convert;
    let json = json!({
        "flist": out.display().to_string(),
        "image": stats.image,
        "manifest": stats.manifest_digest,
        "platform": stats.platform,
        "layers": stats.layers,
        "layers_downloaded": stats.layers_downloaded.len(),
        "layers_reused": stats.layers_reused.len(),
        "bytes_downloaded": stats.bytes_downloaded,
        "regular": st.files,
        "symlink": st.symlinks,
        "directory": st.directories,
        "special": st.specials,
        "fullsize": st.bytes,
        "chunks_written": st.chunks_written,
        "chunks_present": st.chunks_present,
        "store": url.to_string(),
    });
    let text = format!(
        "{}: {} ({}), {} layers ({} downloaded, {} from cache, {} bytes)\n  {} files, {} directories, {} symlinks, {} special files, {} bytes\n  chunks: {} written, {} already in {}\n",
        out.display(),
        stats.image,
        stats.platform,
        stats.layers.len(),
        stats.layers_downloaded.len(),
        stats.layers_reused.len(),
        stats.bytes_downloaded,
        st.files,
        st.directories,
        st.symlinks,
        st.specials,
        st.bytes,
        st.chunks_written,
        st.chunks_present,
        url
    );
    Ok(Response::new(json, text))
}
