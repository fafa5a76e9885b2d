//! One-shot commands that work on `.flist` files directly: `pack`, `extract`, `inspect`,
//! `verify`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use flist_format::{Flist, Kind};
use serde_json::{json, Value};

use crate::backend::{BackendArgs, StoreConfig};
use crate::chunks;
use crate::display::{escape, mode_string};
use crate::error::{Context, Error, Result};
use crate::failover::Hubs;
use crate::remote::FlistArg;
use crate::response::{NoProgress, Progress, Response};

/// Opens an flist argument: a local file, or an `http(s)://` URL downloaded first (see
/// [`crate::remote`]).
fn open_flist(function: &str, path: &Path, progress: &dyn Progress) -> Result<(Flist, FlistArg)> {
    let arg = crate::remote::resolve(function, path, progress)?;
    let flist = Flist::open(arg.path()).ctx(function)?;
    Ok((flist, arg))
}

/// `inspect <flist>`: the tree, counts, sizes and metadata.
pub fn inspect(path: &Path) -> Result<Response> {
    inspect_with(path, &NoProgress)
}

/// `inspect <flist|URL>` with download progress. The listing shows modes like `ls -l`
/// (setuid/setgid/sticky, fifos, devices, sockets) and names with control characters
/// escaped.
pub fn inspect_with(path: &Path, progress: &dyn Progress) -> Result<Response> {
    let (flist, arg) = open_flist("inspect", path, progress)?;
    let path_shown = arg.display();
    let file_size = std::fs::metadata(arg.path()).map(|m| m.len()).unwrap_or(0);
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
            json!(format!("{:o}", n.kind.type_bits() | n.meta.mode)),
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
                extra = format!(" -> {}", escape(target));
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
        e.insert(
            "mode_string".into(),
            json!(mode_string(&n.kind, n.meta.mode)),
        );
        let _ = writeln!(
            listing,
            "{} {:>5}:{:<5} {:>10}  {}{}",
            mode_string(&n.kind, n.meta.mode),
            n.meta.uid,
            n.meta.gid,
            n.kind.size(),
            escape(&path),
            extra
        );
        entries.push(Value::Object(e));
    }
    let metadata = crate::metadata::metadata_json(&flist.metadata);
    let format = flist_format::Format::of_file(arg.path()).ctx("inspect")?;
    let routes: Vec<Value> = flist
        .metadata
        .routes
        .iter()
        .map(|r| json!({"start": r.start, "end": r.end, "url": r.url}))
        .collect();
    let json = json!({
        "file": path_shown,
        "format": format.extension(),
        "md5_checked": arg.md5_checked(),
        "size": file_size,
        "regular": stats.regular,
        "symlink": stats.symlink,
        "directory": stats.directory,
        "special": stats.special,
        "fullsize": stats.fullsize,
        "chunks": refs.len(),
        "unique_chunks": unique,
        "metadata": metadata,
        "routes": routes,
        "entries": entries,
    });
    let mut text = format!(
        "{}: {} bytes ({format} flist)\n  regular files  : {}\n  symbolic links : {}\n  directories    : {}\n  special files  : {}\n  content size   : {} bytes\n  chunks         : {} ({} distinct)\n",
        escape(&path_shown),
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
                let _ = writeln!(text, "  {}: {}", escape(k), escape(&v));
            }
        }
    }
    if !flist.metadata.routes.is_empty() {
        text.push_str("routes:\n");
        for r in &flist.metadata.routes {
            let _ = writeln!(text, "  {:02x}-{:02x} {}", r.start, r.end, escape(&r.url));
        }
    }
    text.push_str("tree:\n");
    text.push_str(&listing);
    Ok(Response::new(json, text))
}

/// `zflist verify`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct VerifyArgs {
    #[arg(help = FLIST_HELP)]
    #[allow(missing_docs)]
    pub flist: PathBuf,
    /// Also download and decode every chunk (both hashes checked).
    #[arg(long)]
    pub deep: bool,
    /// `--signature`: check the flist's signature instead of its chunks.
    #[command(flatten)]
    pub sig: crate::signing::SignatureArgs,
    /// Hub API token for an flist of a private repository, sent as `Authorization: bearer`
    /// when the flist is downloaded by URL (default $ZFLIST_HUB_TOKEN).
    #[arg(long = "token", value_name = "TOKEN")]
    pub token: Option<String>,
}

/// `verify <flist>`: every chunk exists in the store (decoded too with `deep`); with
/// `--signature`, the flist's signature instead.
pub fn verify(
    args: &VerifyArgs,
    stores: &StoreConfig,
    progress: &dyn Progress,
) -> Result<Response> {
    if args.sig.signature {
        return crate::signing::verify_signature(
            &args.flist.to_string_lossy(),
            args.sig.key.as_deref(),
            args.sig.hub.as_deref(),
            args.sig.name.as_deref(),
        );
    }
    let (flist, _arg) = open_flist("verify", &args.flist, progress)?;
    let store = stores.open_read("verify", &flist.metadata)?;
    crate::commands::check_flist("verify", &flist, &store, args.deep, progress)
}

/// `zflist pack`: build an flist from a directory, an archive, or `-` (an archive on
/// stdin).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct PackArgs {
    /// Directory, tar archive (plain, gzip, bzip2, xz or zstd), or `-` for stdin.
    pub source: String,
    /// The flist to write (.flist, or .fl for the rfs format).
    #[arg(short, long, value_name = "FLIST")]
    pub output: PathBuf,
    /// Format to write: flist (ZOS nodes, 0-fs) or fl (rfs); default: from the output's
    /// extension (.fl), else flist.
    #[arg(long, value_enum)]
    pub format: Option<crate::formats::FormatArg>,
    /// Which backend to record.
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// `pack <source> -o <out>`: builds an flist from a directory or a tar archive (any
/// compression; `-`: read from stdin), storing chunks in the configured store. The store's
/// public address (no password) becomes the flist's `backend` metadata (the route table of
/// an `.fl`), so `verify` and `extract` need no `--store` (unless `args` say otherwise).
pub fn pack(args: &PackArgs, stores: &StoreConfig, progress: &dyn Progress) -> Result<Response> {
    let (source, out) = (args.source.as_str(), args.output.as_path());
    let format = crate::formats::output_format(args.format, out);
    let url = stores.require_write_url("pack")?;
    let mut metadata = flist_format::Metadata::new();
    let (recorded, note) =
        crate::formats::record_location("pack", format, &args.backend, &url, &mut metadata)?;
    let store = crate::backend::open_store(&url).ctx("pack")?;
    let recorded_json = json!({
        "backend": metadata.backend().ok().flatten().map(|b| b.to_public_value()),
        "routes": metadata.routes.iter().map(|r| json!({"start": r.start, "end": r.end, "url": r.url})).collect::<Vec<_>>(),
    });
    let opts = flist_convert::ConvertOptions {
        codec: format.codec(),
        ..Default::default()
    };
    let conv = |e: flist_convert::ConvertError| {
        Error::new(
            "pack",
            crate::error::ErrorKind::Convert(format!("{source}: {e}")),
        )
    };
    // The flist is written as the conversion ends, one directory at a time (the tree is
    // staged on disk, never whole in memory).
    let src = flist_convert::Source::from_arg(source).map_err(conv)?;
    let measure = crate::convert::measure_of(&src);
    let stats = crate::convert::with_progress_of("packing", progress, measure, opts, |o| {
        let mut c = flist_convert::convert(src, Some(&store), &o)?;
        c.metadata = metadata;
        c.write_flist(out)?;
        Ok(c.stats)
    })
    .map_err(conv)?;
    let st = &stats;
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
        "format": format.extension(),
        "backend": recorded_json["backend"],
        "routes": recorded_json["routes"],
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
    let mut notes = Vec::new();
    match (&recorded, &note) {
        (Some(r), _) => {
            let _ = writeln!(text, "{r}");
        }
        (None, Some(n)) => notes.push(format!("note: {n}")),
        (None, None) => {}
    }
    for w in &st.warnings {
        notes.push(format!("warning: {} ({} entries)", w.message, w.count));
    }
    Ok(Response::new(json, text).with_notes(notes))
}

/// The help of an flist argument.
pub(crate) const FLIST_HELP: &str = "The .flist file, or an http(s):// URL of one";

/// `zflist extract`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ExtractArgs {
    #[arg(help = FLIST_HELP)]
    #[allow(missing_docs)]
    pub flist: PathBuf,
    /// Hubs to fail over to.
    #[command(flatten)]
    pub hubs: Hubs,
    /// Directory to create (must be absent or empty, unless --force).
    pub dir: PathBuf,
    /// Replace DIR if it exists (only once the new tree is complete).
    #[arg(long)]
    pub force: bool,
    /// Continue an extraction that stopped on a store error, fetching only what is
    /// missing.
    #[arg(long)]
    pub resume: bool,
}

/// Where an extraction into `dest` stages its tree: `.<name>.zflist-partial` next to it.
pub fn staging_dir(dest: &Path) -> Option<std::path::PathBuf> {
    let name = dest.file_name()?.to_str()?;
    if name == ".." || name == "." {
        return None;
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    Some(parent.join(format!(".{name}.zflist-partial")))
}

fn remove_any(p: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// `extract <flist|URL> <dir>`: materialises the tree, downloading contents from the
/// store. The tree is built in a hidden sibling (`.<dir>.zflist-partial`) and renamed into
/// place when complete, so `dir` never holds half a tree. An existing non-empty `dir` is
/// refused unless `force` (then replaced only once the new tree is complete). When the
/// store fails, the partial tree is kept and `resume` continues it, fetching only the
/// chunks not yet written.
pub fn extract(
    args: &ExtractArgs,
    stores: &StoreConfig,
    progress: &dyn Progress,
) -> Result<Response> {
    let (path, dest) = (args.flist.as_path(), args.dir.as_path());
    use crate::error::ErrorKind;
    let f = "extract";
    let usage = |m: String| Error::usage(f, m);
    let staging = staging_dir(dest).ok_or_else(|| {
        usage(format!(
            "{}: give a directory name to extract into",
            dest.display()
        ))
    })?;
    let existing = match std::fs::symlink_metadata(dest) {
        Ok(m) if m.is_dir() => {
            let empty = std::fs::read_dir(dest)
                .map_err(|e| Error::io(f, "reading", dest, e))?
                .next()
                .is_none();
            if !empty && !args.force {
                return Err(usage(format!(
                    "{} exists and is not empty (give --force to replace it)",
                    dest.display()
                )));
            }
            true
        }
        Ok(_) if !args.force => {
            return Err(usage(format!(
                "{} exists and is not a directory (give --force to replace it)",
                dest.display()
            )))
        }
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(Error::io(f, "checking", dest, e)),
    };
    let resuming = match std::fs::symlink_metadata(&staging) {
        Ok(m) if m.is_dir() && args.resume => true,
        Ok(_) if args.force || args.resume => {
            remove_any(&staging).map_err(|e| Error::io(f, "removing", &staging, e))?;
            false
        }
        Ok(_) => {
            return Err(usage(format!(
                "an earlier extraction into {} stopped and left {}: give --resume to continue it or --force to start again",
                dest.display(),
                staging.display()
            )))
        }
        Err(_) => false,
    };
    if let Some(parent) = staging.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(f, "creating", parent, e))?;
    }

    let (flist, arg) = open_flist(f, path, progress)?;
    let store = stores.open_read(f, &flist.metadata)?;
    let total_bytes = flist.tree.stats().fullsize;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let chunks_total = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let opts = flist_convert::ExtractOptions {
        resume: resuming,
        progress: Some({
            let done = done.clone();
            let chunks_total = chunks_total.clone();
            std::sync::Arc::new(move |n: u64, total: u64| {
                use std::sync::atomic::Ordering::Relaxed;
                done.store(n, Relaxed);
                chunks_total.store(total, Relaxed);
            })
        }),
        ..Default::default()
    };
    let result = std::thread::scope(|s| {
        let h = s.spawn(|| flist_convert::extract(&flist.tree, &staging, &store, &opts));
        use std::sync::atomic::Ordering::Relaxed;
        let mut shown = None;
        while !h.is_finished() {
            let total = chunks_total.load(Relaxed);
            let n = done.load(Relaxed);
            if shown == Some(n) {
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
            shown = Some(n);
            // chunks are 512 KiB of content, the last of a file shorter: estimate bytes
            let bytes = total_bytes
                .saturating_mul(n)
                .checked_div(total)
                .unwrap_or(0);
            progress.transfer("extracting", bytes, total_bytes, n);
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        h.join().unwrap_or_else(|_| {
            Err(flist_convert::ConvertError::Internal(
                "extraction panicked".into(),
            ))
        })
    });
    progress.finish("extracted");
    let st = match result {
        Ok(st) => st,
        Err(e) => {
            let store_failed = matches!(
                e,
                flist_convert::ConvertError::Store { .. }
                    | flist_convert::ConvertError::MissingChunk { .. }
                    | flist_convert::ConvertError::Codec { .. }
            );
            let message = if store_failed {
                format!(
                    "{e}; nothing was written to {}: the partial tree is kept in {} (run again with --resume to fetch only what is missing)",
                    dest.display(),
                    staging.display()
                )
            } else {
                let _ = remove_any(&staging);
                format!("{e}; nothing was written to {}", dest.display())
            };
            return Err(Error::new(f, ErrorKind::Convert(message)));
        }
    };
    // Into place: the old destination moves aside first and is removed once the new tree
    // is in place (or put back if the rename fails).
    let aside = staging.with_file_name(format!(
        "{}.old-{}",
        staging
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(".zflist"),
        std::process::id()
    ));
    if existing {
        std::fs::rename(dest, &aside).map_err(|e| Error::io(f, "moving aside", dest, e))?;
    }
    if let Err(e) = std::fs::rename(&staging, dest) {
        if existing {
            let _ = std::fs::rename(&aside, dest);
        }
        return Err(Error::io(f, "renaming the extracted tree to", dest, e));
    }
    if existing {
        remove_any(&aside).map_err(|e| Error::io(f, "removing the replaced", &aside, e))?;
    }
    let json = json!({
        "flist": arg.display(),
        "destination": dest.display().to_string(),
        "regular": st.files,
        "directory": st.directories,
        "symlink": st.symlinks,
        "special": st.specials,
        "socket": st.sockets,
        "special_skipped": st.specials_skipped,
        "fullsize": st.bytes,
        "chunks_fetched": st.chunks_fetched,
        "chunks_reused": st.chunks_reused,
        "resumed": resuming,
        "replaced": existing,
        "owners_restored": st.owners_restored,
        "store": store.to_string(),
    });
    let mut text = format!(
        "{}: {} files, {} directories, {} symlinks, {} special files, {} bytes ({} chunks from {store})\n",
        escape(&dest.display().to_string()),
        st.files,
        st.directories,
        st.symlinks,
        st.specials,
        st.bytes,
        st.chunks_fetched
    );
    if resuming {
        let _ = writeln!(
            text,
            "resumed: {} chunks were already written",
            st.chunks_reused
        );
    }
    let mut notes = Vec::new();
    if st.sockets > 0 {
        notes.push(format!(
            "note: {} socket nodes created (the reference tool records fifos and devices as sockets)",
            st.sockets
        ));
    }
    if st.specials_skipped > 0 {
        notes.push(format!(
            "warning: {} device files not created (creating devices needs root)",
            st.specials_skipped
        ));
    }
    Ok(Response::new(json, text).with_notes(notes))
}

pub use flist_convert::oci::Credentials;

/// How images are fetched (`docker`, `push`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ImageArgs {
    /// Platform to pick from a multi-platform image (default linux/amd64).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Registry (`host[:port]`) to speak plain HTTP to (loopback ones always are).
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
}

/// `zflist docker`: convert an image without a Docker daemon.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct DockerArgs {
    /// `ubuntu:22.04`, `registry:5000/app@sha256:...`, `docker-archive:FILE`, `oci:DIR`.
    pub image: String,
    /// The .flist file to write.
    #[arg(short, long, value_name = "FLIST")]
    pub output: PathBuf,
    /// Platform and registries.
    #[command(flatten)]
    pub fetch: ImageArgs,
    /// Registry user name (the password is read from stdin with --password-stdin).
    #[arg(long, short = 'u', requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the registry password (or token) from stdin.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// Registry credentials given by an embedding program (the command line reads them
    /// with --username and --password-stdin).
    #[arg(skip)]
    pub credentials: Option<Credentials>,
    /// Layer cache directory (default: $XDG_CACHE_HOME/zflist/layers).
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache: Option<PathBuf>,
    /// Do not use the layer cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Which backend to record.
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// `docker <image> -o <out>`: converts a registry image, a `docker save` tarball or an OCI
/// layout into an flist, storing chunks in the configured store; the store's public address
/// becomes the `backend` metadata, next to the image's entrypoint/environ/port/volume.
pub fn docker(
    args: &DockerArgs,
    stores: &StoreConfig,
    progress: &dyn Progress,
) -> Result<Response> {
    let (image, out) = (args.image.as_str(), args.output.as_path());
    let credentials = match (&args.credentials, &args.username, args.password_stdin) {
        (Some(c), _, _) => Some(c.clone()),
        (None, Some(username), true) => Some(Credentials {
            username: username.clone(),
            password: read_password()?,
        }),
        _ => None,
    };
    let url = stores.require_write_url("docker")?;
    let (backend, note) = crate::backend::recorded_backend("docker", &args.backend, &url)?;
    let store = crate::backend::open_store(&url).ctx("docker")?;
    let cache = if args.no_cache {
        None
    } else {
        args.cache
            .clone()
            .or_else(|| crate::dirs::cache_dir("layers"))
    };
    let (mut image_tree, stats) = convert_image(
        "docker",
        image,
        &store,
        &ImageJob {
            fetch: &args.fetch,
            credentials,
            cache_dir: cache,
        },
        progress,
    )?;
    match &backend {
        Some(b) => image_tree.metadata.set_backend(b),
        None => {
            image_tree
                .metadata
                .remove(flist_format::metadata::KEY_BACKEND);
        }
    }
    image_tree.write_flist(out).map_err(|e| {
        Error::new(
            "docker",
            crate::error::ErrorKind::Convert(format!("{image}: {e}")),
        )
    })?;
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
        "backend": backend.as_ref().map(flist_format::Backend::to_public_value),
    });
    let mut text = format!(
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
    let mut notes = Vec::new();
    match (&backend, &note) {
        (Some(b), _) => {
            let _ = writeln!(text, "  backend: {b}");
        }
        (None, Some(n)) => notes.push(format!("note: {n}")),
        (None, None) => {}
    }
    Ok(Response::new(json, text).with_notes(notes))
}
/// The registry password from stdin: the first line, without its line ending.
fn read_password() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| Error::usage("docker", format!("reading the password from stdin: {e}")))?;
    let pw = line.trim_end_matches(['\n', '\r']).to_string();
    if pw.is_empty() {
        return Err(Error::usage(
            "docker",
            "--password-stdin: no password on stdin",
        ));
    }
    Ok(pw)
}

/// One image conversion's options.
pub(crate) struct ImageJob<'a> {
    /// Platform and registries.
    pub fetch: &'a ImageArgs,
    /// Registry credentials.
    pub credentials: Option<Credentials>,
    /// Layer cache (`None`: none).
    pub cache_dir: Option<PathBuf>,
}

/// Converts `image` (registry reference, `docker save` tarball or OCI layout) into a tree
/// staged on disk with its metadata, sending its chunks to `store`; errors are reported as
/// `function`'s.
pub(crate) fn convert_image(
    function: &str,
    image: &str,
    store: &flist_store::BlockingStore,
    args: &ImageJob<'_>,
    progress: &dyn Progress,
) -> Result<(flist_convert::Converted, flist_convert::oci::OciStats)> {
    use flist_convert::oci::{self, ImageSource, OciEvent, OciOptions};
    let err = |e: oci::OciError| {
        Error::new(
            function,
            crate::error::ErrorKind::Convert(format!("{image}: {e}")),
        )
    };
    let source = ImageSource::parse(image).map_err(err)?;
    let platform = args
        .fetch
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
        insecure_registries: args.fetch.insecure_registries.clone(),
        cache_dir: args.cache_dir.clone(),
        convert: flist_convert::ConvertOptions::default(),
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
        if m.starts_with("layer ") && total > 0 {
            progress.transfer(&m, cur, total, 0);
        } else {
            progress.update(&m, cur, total);
        }
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
