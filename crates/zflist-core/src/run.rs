//! `zflist run`: start the container an flist describes, locally, the way a node would:
//! the flist mounted lazily (chunks fetched as they are read, through the shared chunk
//! cache), a writable overlay on top (writes never reach the flist or the cache), and the
//! recorded entrypoint as PID 1 of new namespaces with the flist as root (see
//! [`flist_run::container`]). The entrypoint's exit code is the command's.

use std::path::PathBuf;
use std::time::Instant;

use flist_format::{Flist, Kind};
use flist_mount::Override;
use flist_run::entrypoint::{find_program, Entrypoint, STARTUP_TOML};
use flist_run::{ContainerSpec, Layer, Net};
use flist_store::BlockingStore;
use serde_json::json;

use crate::backend::StoreConfig;
use crate::error::{Context, Error, Result};
use crate::failover::Hubs;
use crate::mount::{flist_bytes, parse_flist, ChunkCacheArgs};
use crate::response::Response;

/// `--net`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NetArg {
    /// The host's network (default).
    #[default]
    Host,
    /// A new, empty network namespace.
    None,
}

/// `zflist run <FLIST|URL> [--env K=V]... [--entrypoint PROGRAM] [--net host|none] [--keep]
/// [-- ARGS]`
#[derive(clap::Args, Clone, Debug, Default)]
pub struct RunArgs {
    /// `.flist` file or `http(s)://` URL of one.
    pub flist: String,
    /// Hubs to fail over to.
    #[command(flatten)]
    pub hubs: Hubs,
    /// Set an environment variable (repeatable): NAME=VALUE, or NAME to pass this shell's
    /// value. Overrides the flist's recorded environment.
    #[arg(long = "env", short = 'e', value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Run PROGRAM (a path in the flist, or a name in its PATH) instead of the recorded
    /// entrypoint; ARGS after `--` follow it.
    #[arg(long, value_name = "PROGRAM")]
    pub entrypoint: Option<String>,
    /// Network: `host` (the host's, default) or `none` (an empty namespace).
    #[arg(long, value_enum, default_value = "host")]
    pub net: NetArg,
    /// Keep the writable layer (what the container wrote) instead of removing it; its
    /// directory is printed.
    #[arg(long)]
    pub keep: bool,
    /// The chunk cache.
    #[command(flatten)]
    pub cache: ChunkCacheArgs,
    /// Command and arguments replacing the recorded command (with --entrypoint: its
    /// arguments).
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

/// An flist opened for running: parsed, with its store.
pub(crate) struct Opened {
    pub flist: Flist,
    pub store: BlockingStore,
}

/// Checks for root, then loads the flist argument and opens its store.
pub(crate) fn open(
    function: &str,
    what: &str,
    flist: &str,
    stores: &StoreConfig,
) -> Result<Opened> {
    flist_run::require_root(what).ctx(function)?;
    let bytes = flist_bytes(function, flist)?;
    let flist_parsed = parse_flist(function, &bytes, flist)?;
    let store = stores.open_read(function, &flist_parsed.metadata)?;
    Ok(Opened {
        flist: flist_parsed,
        store,
    })
}

/// Distinct chunks of the tree (what "all of the flist" means in the fetched share).
pub(crate) fn chunk_count(flist: &Flist) -> u64 {
    let mut keys = std::collections::HashSet::new();
    for id in flist.tree.walk() {
        if let Kind::File { blocks, .. } = &flist.tree.node(id).kind {
            for b in blocks {
                keys.insert(b.id().to_vec());
            }
        }
    }
    keys.len() as u64
}

/// A new [`Layer`] (kept afterwards with `keep`) and the flist mounted at its `lower/`
/// with `cache`'s options and `overrides`; `store` (and its runtime) must live as long as
/// the mount.
pub(crate) fn mount_lower(
    function: &str,
    flist: Flist,
    store: &BlockingStore,
    name: &str,
    keep: bool,
    cache: &ChunkCacheArgs,
    overrides: Vec<Override>,
) -> Result<(Layer, flist_mount::Mounted)> {
    let layer = Layer::create(None, keep).ctx(function)?;
    let options = flist_mount::MountOptions {
        // the entrypoint may switch to another user, and QEMU serves it as root
        allow_other: true,
        ..cache.mount_options(function, name, overrides)?
    };
    let mounted = flist_mount::mount(
        flist,
        store.store().clone(),
        store.handle().clone(),
        &layer.lower(),
        &options,
    )
    .ctx(function)?;
    Ok((layer, mounted))
}

/// The content of `/.startup.toml`, when the flist has one (read from the store).
fn startup_toml(function: &str, opened: &Opened) -> Result<Option<String>> {
    let tree = &opened.flist.tree;
    let Ok(id) = tree.resolve(STARTUP_TOML) else {
        return Ok(None);
    };
    let reader = flist_convert::vmcheck::FileReader::new(tree, &opened.store);
    let bytes = reader
        .head(id, 1 << 20)
        .map_err(|e| Error::usage(function, format!("reading {STARTUP_TOML}: {e}")))?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Unmounts the flist and removes (or keeps) the layer; the stats and the kept directory.
pub(crate) fn finish(
    function: &str,
    mounted: flist_mount::Mounted,
    layer: Layer,
) -> Result<(flist_mount::StatsSnapshot, Option<PathBuf>)> {
    let stats = mounted.unmount().ctx(function)?;
    let kept = layer.finish().ctx(function)?;
    Ok((stats, kept))
}

/// `run`: see the module doc. `notice` receives lines for the user's terminal (stderr):
/// the summary at the end, the kept layer, signal handling.
pub fn run(args: &RunArgs, stores: &StoreConfig, notice: &dyn Fn(&str)) -> Result<Response> {
    let f = "run";
    let opened = open(f, "zflist run", &args.flist, stores)?;
    let recorded =
        Entrypoint::recorded(&opened.flist.metadata, startup_toml(f, &opened)?.as_deref())
            .ctx(f)?;
    let entry =
        Entrypoint::with_overrides(recorded, args.entrypoint.as_deref(), &args.args, &args.env)
            .ctx(f)?;
    let program = find_program(
        &opened.flist.tree,
        &entry.argv[0],
        &entry.workdir,
        entry.path_var(),
    )
    .ctx(f)?;
    let hostname = flist_run::hostname_for(&args.flist);
    let total_chunks = chunk_count(&opened.flist);
    let Opened { flist, store } = opened;
    // from here on SIGINT/SIGTERM... are caught, so the mount and the layer are cleaned up
    let signals = flist_run::container::Forwarded::install(store.handle()).ctx(f)?;
    let (layer, mounted) = mount_lower(
        f,
        flist,
        &store,
        &args.flist,
        args.keep,
        &args.cache,
        Vec::new(),
    )?;
    let spec = ContainerSpec {
        lower: layer.lower(),
        upper: layer.upper(),
        work: layer.work(),
        root: layer.root(),
        program,
        argv: entry.argv.clone(),
        env: entry.process_env(&hostname),
        workdir: entry.workdir.clone(),
        hostname: hostname.clone(),
        net: match args.net {
            NetArg::Host => Net::Host,
            NetArg::None => Net::None,
        },
    };
    let started = Instant::now();
    let exe = std::env::current_exe()
        .map_err(|e| Error::usage(f, format!("finding the zflist program: {e}")))?;
    let outcome = flist_run::container::start(&spec, &exe)
        .and_then(|c| c.wait(store.handle(), signals, notice))
        .ctx(f);
    let elapsed = started.elapsed();
    let (stats, kept) = finish(f, mounted, layer)?;
    let code = outcome?;
    if let Some(k) = &kept {
        notice(&format!("kept the writable layer at {}", k.display()));
    }
    notice(&format!(
        "exited with code {code} after {:.2} s; fetched {} of the flist's {total_chunks} chunks ({} bytes) from the store, {} from the disk cache",
        elapsed.as_secs_f64(),
        stats.fetched_chunks,
        stats.fetched_bytes,
        stats.disk_hits
    ));
    let json = json!({
        "exit_code": code,
        "hostname": hostname,
        "entrypoint": entry.argv,
        "seconds": elapsed.as_secs_f64(),
        "fetched_chunks": stats.fetched_chunks,
        "fetched_bytes": stats.fetched_bytes,
        "disk_hits": stats.disk_hits,
        "flist_chunks": total_chunks,
        "kept_layer": kept.map(|k| k.display().to_string()),
    });
    let mut r = Response::new(json, String::new());
    r.exit_code = Some(u8::try_from(code).unwrap_or(255));
    Ok(r)
}
