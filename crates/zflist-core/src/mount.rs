//! `mount` and `umount`: serve an flist (a file or a hub URL) through FUSE with
//! [`flist_mount`], until a signal or an outside unmount.

use std::path::{Path, PathBuf};

use flist_format::Flist;
use flist_mount::{MountOptions, Override, Unmounted};
use serde_json::json;

use crate::backend::StoreConfig;
use crate::error::{Context, Error, ErrorKind, Result};
use crate::response::{NoProgress, Response};

/// `zflist mount <FLIST|URL> <MOUNTPOINT> ...`
#[derive(clap::Args, Clone, Debug, Default)]
pub struct MountArgs {
    /// `.flist` file or `http(s)://` URL of one (e.g. `http://hub/repo/name.flist`).
    pub flist: String,
    /// Hubs to fail over to.
    #[command(flatten)]
    pub hubs: crate::failover::Hubs,
    /// Directory to mount on.
    pub mountpoint: PathBuf,
    /// The chunk cache.
    #[command(flatten)]
    pub cache: ChunkCacheArgs,
    /// Let other users access the mount.
    #[arg(long)]
    pub allow_other: bool,
    /// Replace or add a file for this mount only: `/path=@local-file` or `/path=content`.
    #[arg(long = "override", value_name = "/PATH=@FILE|CONTENT")]
    pub overrides: Vec<String>,
    /// Refuse to mount unless `<FLIST>.sig` signs these bytes and this name with KEY
    /// (base64 public key, or a file holding it).
    #[arg(long, value_name = "KEY")]
    pub require_signature: Option<String>,
    /// Record the files opened through the mount and, once unmounted, store them in the
    /// flist file (metadata `prefetch`, in first-access order): later mounts load them
    /// before they are asked for. Needs a local flist file; a signature of it no longer
    /// matches afterwards.
    #[arg(long)]
    pub record_access: bool,
    /// Do not load the flist's prefetch list ahead.
    #[arg(long)]
    pub no_prefetch: bool,
}

/// `--cache DIR`, `--no-cache`, `--cache-size SIZE` of the commands that mount flists.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ChunkCacheArgs {
    /// Chunk cache directory, shared by mounts (default: $XDG_CACHE_HOME/zflist/chunks).
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache: Option<PathBuf>,
    /// Do not cache chunks on disk.
    #[arg(long)]
    pub no_cache: bool,
    /// Bound of the chunk cache (e.g. 512M, 4G; default 4G); least recently used chunks go.
    #[arg(long, value_name = "SIZE")]
    pub cache_size: Option<String>,
}

impl ChunkCacheArgs {
    /// The chunk cache directory: `--cache`, else the default one, none with `--no-cache`.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            None
        } else {
            self.cache
                .clone()
                .or_else(|| crate::dirs::cache_dir("chunks"))
        }
    }

    /// `--cache-size` in bytes (default 4 GiB).
    pub fn size(&self, function: &str) -> Result<u64> {
        match &self.cache_size {
            Some(s) => flist_mount::parse_size(s).ok_or_else(|| {
                Error::usage(
                    function,
                    format!("--cache-size {s:?}: expected a size such as 512M or 4G"),
                )
            }),
            None => Ok(flist_mount::DEFAULT_CACHE_SIZE),
        }
    }

    /// Mount options with this cache, `overrides` and the mount's source named after
    /// `flist` (its last path component).
    pub fn mount_options(
        &self,
        function: &str,
        flist: &str,
        overrides: Vec<Override>,
    ) -> Result<MountOptions> {
        let name = flist
            .rsplit('/')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("flist")
            .chars()
            .filter(|c| !c.is_whitespace() && *c != ',')
            .collect::<String>();
        Ok(MountOptions {
            cache_dir: self.cache_dir(),
            cache_size: self.size(function)?,
            overrides,
            fs_name: name,
            ..Default::default()
        })
    }
}

/// The bytes of the flist argument of `function`: a file, or an `http(s)://` URL
/// downloaded with failover to the other hubs given with `--hub` (see `crate::failover`).
pub fn flist_bytes(function: &str, flist: &str) -> Result<Vec<u8>> {
    if crate::remote::is_url(Path::new(flist)) {
        let arg = crate::remote::resolve(function, Path::new(flist), &NoProgress)?;
        std::fs::read(arg.path()).map_err(|e| Error::io(function, "reading", arg.path(), e))
    } else {
        load_flist_bytes(function, flist)
    }
}

/// The bytes of an flist given as a path or an `http(s)://` URL.
pub fn load_flist_bytes(function: &str, what: &str) -> Result<Vec<u8>> {
    if what.starts_with("http://") || what.starts_with("https://") {
        return download(function, what);
    }
    std::fs::read(what).map_err(|e| Error::io(function, "reading", Path::new(what), e))
}

fn download(function: &str, url: &str) -> Result<Vec<u8>> {
    let fail = |m: String| Error::new(function, ErrorKind::Convert(m));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(format!("starting a runtime: {e}")))?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| fail(format!("HTTP client: {e}")))?;
        let resp = client
            .get(url)
            .send()
            .await
            .map_err(|e| fail(format!("downloading {url}: {e}")))?;
        if !resp.status().is_success() {
            return Err(fail(format!("downloading {url}: HTTP {}", resp.status())));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| fail(format!("downloading {url}: {e}")))?;
        Ok(body.to_vec())
    })
}

/// Parses the flist bytes.
pub fn parse_flist(function: &str, bytes: &[u8], what: &str) -> Result<Flist> {
    Flist::from_reader(bytes, what).ctx(function)
}

/// `mount`: mounts, calls `ready` once the mount is in place, serves until SIGINT/SIGTERM
/// or an outside unmount, and reports the chunk traffic.
pub fn mount(
    args: &MountArgs,
    stores: &StoreConfig,
    ready: impl FnOnce(&Path),
) -> Result<Response> {
    if args.record_access && crate::remote::is_url(Path::new(&args.flist)) {
        return Err(Error::usage(
            "mount",
            format!(
                "--record-access stores the list in the flist file: download {} first and mount the file",
                args.flist
            ),
        ));
    }
    let bytes = flist_bytes("mount", &args.flist)?;
    if let Some(key) = &args.require_signature {
        let trusted = crate::signing::load_public_key("mount", key)?;
        crate::signing::check_signature("mount", &args.flist, &bytes, None, &trusted)?;
    }
    mount_bytes(args, &bytes, stores, ready)
}

/// [`mount`] of flist bytes already loaded (and possibly checked).
pub fn mount_bytes(
    args: &MountArgs,
    bytes: &[u8],
    stores: &StoreConfig,
    ready: impl FnOnce(&Path),
) -> Result<Response> {
    let f = "mount";
    let flist = parse_flist(f, bytes, &args.flist)?;
    let overrides = args
        .overrides
        .iter()
        .map(|s| Override::parse(s))
        .collect::<std::result::Result<Vec<_>, _>>()
        .ctx(f)?;
    let store = stores.open_read(f, &flist.metadata)?;
    let options = MountOptions {
        allow_other: args.allow_other,
        record_access: args.record_access,
        prefetch_list: !args.no_prefetch,
        ..args.cache.mount_options(f, &args.flist, overrides)?
    };
    let signals = flist_mount::Signals::install(store.handle()).ctx(f)?;
    let mounted = flist_mount::mount(
        flist,
        store.store().clone(),
        store.handle().clone(),
        &args.mountpoint,
        &options,
    )
    .ctx(f)?;
    ready(&args.mountpoint);
    let log = mounted.access_log();
    let (ended, stats) = mounted.wait_until_signal(store.handle(), signals).ctx(f)?;
    let recorded = match log {
        Some(log) => Some(record_access(f, &args.flist, bytes, &log.paths())?),
        None => None,
    };
    let how = match ended {
        flist_mount::Ended::Signal => "signal",
        flist_mount::Ended::Unmounted => "unmounted",
    };
    let json = json!({
        "mountpoint": args.mountpoint.display().to_string(),
        "ended": how,
        "fetched_chunks": stats.fetched_chunks,
        "fetched_bytes": stats.fetched_bytes,
        "disk_hits": stats.disk_hits,
        "memory_hits": stats.memory_hits,
        "prefetched": stats.prefetched,
        "recorded_files": recorded,
    });
    let mut text = format!(
        "unmounted {} ({how}): fetched {} chunks ({} bytes) from the store, {} from the disk cache, {} prefetched\n",
        args.mountpoint.display(),
        stats.fetched_chunks,
        stats.fetched_bytes,
        stats.disk_hits,
        stats.prefetched
    );
    if let Some(n) = recorded {
        text.push_str(&format!(
            "recorded {n} files opened as the prefetch list of {}\n",
            args.flist
        ));
    }
    Ok(Response::new(json, text))
}

/// Stores `paths` as the prefetch list of the flist file `path` (whose content was
/// `bytes`), atomically, in the file's own format; returns how many paths.
fn record_access(function: &str, path: &str, bytes: &[u8], paths: &[String]) -> Result<usize> {
    let mut flist = parse_flist(function, bytes, path)?;
    flist.metadata.set_prefetch(paths);
    let format = flist_format::Format::of_file(path).ctx(function)?;
    flist.write_as(path, format).ctx(function)?;
    Ok(paths.len())
}

/// `umount`: unmounts a live mount, or clears a stale one left by a killed process.
pub fn umount(mountpoint: &Path) -> Result<Response> {
    let what = flist_mount::unmount(mountpoint).ctx("umount")?;
    let (state, text) = match what {
        Unmounted::Live => ("unmounted", format!("unmounted {}\n", mountpoint.display())),
        Unmounted::Stale => (
            "stale",
            format!(
                "{}: stale mount (its process is gone): cleared\n",
                mountpoint.display()
            ),
        ),
    };
    Ok(Response::new(
        json!({"mountpoint": mountpoint.display().to_string(), "state": state}),
        text,
    ))
}
