//! `hub-server`: the flist hub. Thin wiring over `hub-http` and `hub-repo`.

// The doc comments of the argument types are clap's help text, read in a terminal where
// `<data-dir>` is the usual placeholder, not HTML.
#![allow(rustdoc::invalid_html_tags)]

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use hub_http::admin;
use hub_http::config::{parse_duration_secs, HubConfig};
use hub_repo::{GcOptions, GcReport, Hub};

#[derive(Parser)]
#[command(name = "hub-server", version, about = "The flist hub server")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the hub (config: TOML file, then HUB_* variables, then these flags).
    Serve {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Run as a read-only mirror of this hub (base URL), kept in sync.
        #[arg(long)]
        mirror_of: Option<String>,
        /// Time between mirror syncs: 30s, 5m ...
        #[arg(long)]
        sync_interval: Option<String>,
        /// With --mirror-of: also copy every mirrored flist's chunks into this hub's store
        /// and serve the flists with this hub's public backend.
        #[arg(long)]
        mirror_chunks: bool,
        /// Log format: text (no colour unless a terminal) or json.
        #[arg(long)]
        log_format: Option<String>,
    },
    /// Point flists stamped with a former backend of this hub (an old public URL, an old
    /// 0-db endpoint host) to the current one, atomically per flist; links, tags and history
    /// are kept, signed flists are reported and left as they are. Reads the same
    /// configuration as `serve` (safe while it runs).
    Restamp {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Only list what would change.
        #[arg(long)]
        dry_run: bool,
    },
    /// Local accounts (sign in on the web with a user name and password).
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// API tokens.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Organisations: members and their roles (owner: manages members and the
    /// repository's visibility; member: writes into the organisation's repository).
    Org {
        #[command(subcommand)]
        cmd: OrgCmd,
    },
    /// Repositories: visibility.
    Repo {
        #[command(subcommand)]
        cmd: RepoCmd,
    },
    /// Import an old hub's tree (`public/users`).
    ImportLegacy {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// The old tree: one directory per repository.
        path: PathBuf,
    },
    /// Check the catalog, every stored flist file, and that readers can reach the backend
    /// each flist announces; report what `gc` would collect (flist files no entry references
    /// any more: expected after deletes, not a problem). Exits 1 on a problem.
    Check {
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Move this hub into a cluster: copy its catalog into a PostgreSQL database and its
    /// flist files and chunks into the object store the replicas share. Resumable and
    /// idempotent: run it again after an interruption (or to catch up, with the old server
    /// stopped, before switching over); then run `hub-server check` against the cluster.
    Migrate {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// The cluster's catalog: postgres://user:pass@host:port/db.
        #[arg(long)]
        to_catalog: String,
        /// The cluster's store for flist files and chunks: s3://KEY:SECRET@host:port/bucket
        /// (without it the chunks stay where they are and the files go to --to-data-dir).
        #[arg(long)]
        to_store: Option<String>,
        /// A data directory for the destination's local files (default
        /// <data-dir>/migrated).
        #[arg(long)]
        to_data_dir: Option<PathBuf>,
    },
    /// Remove flist files no entry references (safe while the server runs).
    Gc {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Keep files without a catalog row younger than this: 1h, 10m, 0s.
        #[arg(long, default_value = "1h")]
        grace: String,
        /// Only report what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
}

/// The configuration `serve` reads: TOML file, then HUB_* variables, then these flags.
#[derive(clap::Args)]
struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen address (default 127.0.0.1:5555).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory (default ./hub-data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Chunk store URL (default dir://<data-dir>/chunks, served at /chunks/).
    #[arg(long)]
    store: Option<String>,
    /// Catalog: a PostgreSQL URL (postgres://user:pass@host:port/db, shared by replicas)
    /// or a SQLite file (default <data-dir>/catalog.sqlite3). Also HUB_CATALOG.
    #[arg(long)]
    catalog: Option<String>,
    /// Public backend announced in flists (zdb://host:port/namespace); default: the hub's
    /// 0-db endpoint with --zdb-listen, else its own /chunks/ for a dir:// store, the store
    /// itself for a 0-db.
    #[arg(long)]
    public_backend: Option<String>,
    /// Public base URL (flist backends, .txt, pages, 3Bot redirects); default
    /// http://<listen>.
    #[arg(long)]
    public_url: Option<String>,
    /// Also serve chunks read-only over the 0-db protocol on this address (e.g.
    /// 0.0.0.0:9900), for ZOS nodes and the reference readers; new flists then announce it
    /// unless the store is itself a 0-db on another host.
    #[arg(long)]
    zdb_listen: Option<SocketAddr>,
}

impl ConfigArgs {
    /// The file and environment, with these flags on top.
    fn load(self) -> Result<HubConfig> {
        let mut cfg = load_config(self.config.as_ref())?;
        if let Some(l) = self.listen {
            cfg.listen = l;
        }
        if let Some(d) = self.data_dir {
            cfg.data_dir = d;
        }
        if self.store.is_some() {
            cfg.store = self.store;
        }
        if self.catalog.is_some() {
            cfg.catalog = self.catalog;
        }
        if let Some(b) = self.public_backend {
            cfg.public_backend = b;
        }
        if let Some(u) = self.public_url {
            cfg.public_url = u;
        }
        if self.zdb_listen.is_some() {
            cfg.zdb_listen = self.zdb_listen;
        }
        Ok(cfg)
    }
}

#[derive(Subcommand)]
enum UserCmd {
    /// Create a local account (password: first line of stdin).
    Add {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// User name (also its repository).
        name: String,
        /// Read the password from stdin (required: passwords never go on the command line).
        #[arg(long)]
        password_stdin: bool,
        /// Administrator.
        #[arg(long)]
        admin: bool,
    },
    /// List local accounts.
    List {
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Change a password (first line of stdin); ends the user's web sessions.
    Passwd {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// User name.
        name: String,
        /// Read the password from stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a local account (its repository stays); ends its web sessions.
    Remove {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// User name.
        name: String,
    },
}

#[derive(Subcommand)]
enum OrgCmd {
    /// Create an organisation with its first owner (an existing account).
    Create {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Organisation name (also its repository).
        name: String,
        /// Its first owner.
        #[arg(long)]
        owner: String,
    },
    /// Add an account to an organisation, or change its role.
    Add {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Organisation.
        name: String,
        /// The account.
        user: String,
        /// owner or member.
        #[arg(long, default_value = "member")]
        role: String,
    },
    /// Remove an account from an organisation (its tokens stop acting for it at once).
    Remove {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Organisation.
        name: String,
        /// The account.
        user: String,
    },
    /// List organisations, or one organisation's members.
    List {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Organisation whose members to list.
        name: Option<String>,
    },
}

#[derive(Subcommand)]
enum RepoCmd {
    /// Make a repository private (readable by its user or organisation only; others get
    /// 404) or public. A repository not created yet is created, so it can be private
    /// before its first flist.
    Visibility {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// The repository.
        repo: String,
        /// private or public.
        visibility: String,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Issue a token and print it.
    Create {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// The user it authenticates.
        #[arg(long)]
        user: String,
        /// Organisations the user may act as (repeatable): the user is added to each as a
        /// member (the organisation created if new). A token acts for the organisations its
        /// user belongs to when it is used: `org remove` takes effect at once.
        #[arg(long = "member-of")]
        member_of: Vec<String>,
        /// Lifetime: 30d, 12h, 15m, 90s.
        #[arg(long, default_value = "30d")]
        ttl: String,
        /// Free-form label.
        #[arg(long)]
        label: Option<String>,
    },
    /// Revoke a token (its value, or `--id`).
    Revoke {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// The token value (may start with `-`).
        #[arg(allow_hyphen_values = true)]
        token: Option<String>,
        /// The token's catalog id instead.
        #[arg(long)]
        id: Option<i64>,
    },
}

fn init_logging(format: &str) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,tower_http=warn".into());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let done = match format {
        "json" => b.json().with_current_span(false).try_init(),
        "text" => b
            .with_ansi(std::io::stdout().is_terminal() && std::io::stderr().is_terminal())
            .try_init(),
        other => bail!("unknown log format {other:?} (use text or json)"),
    };
    done.map_err(|e| anyhow::anyhow!("logging: {e}"))
}

fn password(stdin_flag: bool) -> Result<String> {
    if !stdin_flag {
        bail!("give the password on stdin with --password-stdin (e.g. `printf '%s\\n' \"$PW\" | hub-server user add alice --password-stdin`)");
    }
    admin::read_password(&mut std::io::stdin().lock()).map_err(anyhow::Error::msg)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "hub-server: {}",
                admin::one_line(e.chain().map(|c| c.to_string()))
            );
            ExitCode::FAILURE
        }
    }
}

fn load_config(config: Option<&PathBuf>) -> Result<HubConfig> {
    let mut cfg = match config {
        Some(p) => HubConfig::from_file(p)?,
        None => HubConfig::default(),
    };
    cfg.apply_env(std::env::vars())?;
    Ok(cfg)
}

/// Opens the hub `cfg` describes (data directory and catalog) for an admin command beside a
/// running server: refuses a data directory holding no SQLite catalog (a command pointed at
/// the wrong place); a PostgreSQL catalog is taken as it is.
fn open_admin(cfg: &HubConfig) -> Result<Hub> {
    let hub = Hub::open_existing_on(&cfg.data_dir, cfg.catalog.as_deref()).with_context(|| {
        format!(
            "opening the hub data in {} (catalog {})",
            cfg.data_dir.display(),
            cfg.catalog_shown()
        )
    })?;
    share_files(cfg, &hub)?;
    Ok(hub)
}

/// On a cluster, the flist files the replicas share (see `HubConfig::shared_files_url`).
fn share_files(cfg: &HubConfig, hub: &Hub) -> Result<()> {
    cfg.share_files(hub)
        .context("opening the store the replicas share their flist files through")
}

fn run(cli: Cli) -> Result<()> {
    if !matches!(cli.cmd, Cmd::Serve { .. }) {
        init_logging("text")?;
    }
    match cli.cmd {
        Cmd::Serve {
            cfg,
            log_format,
            mirror_of,
            sync_interval,
            mirror_chunks,
        } => {
            let mut cfg = cfg.load()?;
            if let Some(f) = log_format {
                cfg.log_format = f;
            }
            init_logging(&cfg.log_format)?;
            if mirror_of.is_some() {
                cfg.mirror.of = mirror_of;
            }
            if mirror_chunks {
                cfg.mirror.chunks = true;
            }
            if let Some(i) = sync_interval {
                let secs = parse_duration_secs(&i)
                    .filter(|s| *s > 0)
                    .with_context(|| format!("bad --sync-interval {i:?} (use 30s, 5m)"))?;
                cfg.mirror.sync_interval_secs = secs as u64;
            }
            serve(cfg)
        }
        Cmd::Restamp { cfg, dry_run } => restamp(cfg.load()?, dry_run),
        Cmd::User { cmd } => user(cmd),
        Cmd::Org { cmd } => org(cmd),
        Cmd::Repo {
            cmd:
                RepoCmd::Visibility {
                    cfg,
                    repo,
                    visibility,
                },
        } => {
            let private = match visibility.as_str() {
                "private" => true,
                "public" => false,
                other => bail!("visibility {other:?}: expected private or public"),
            };
            let hub = open_admin(&cfg.load()?)?;
            let changed =
                hub.catalog()
                    .set_visibility(&hub_repo::Actor::system("admin"), &repo, private)?;
            eprintln!(
                "{repo} {} {visibility}{}",
                if changed { "is now" } else { "was already" },
                if private {
                    ": only its user or its organisation's members can read it"
                } else {
                    ""
                }
            );
            Ok(())
        }
        Cmd::Token {
            cmd:
                TokenCmd::Create {
                    cfg,
                    user,
                    member_of,
                    ttl,
                    label,
                },
        } => {
            let secs = parse_duration_secs(&ttl)
                .with_context(|| format!("bad --ttl {ttl:?} (use 30d, 12h, 15m, 90s)"))?;
            let hub = open_admin(&cfg.load()?)?;
            let (token, info) =
                hub.accounts()
                    .create_token(&user, &member_of, secs, label.as_deref())?;
            eprintln!(
                "token #{} for {} expires {}",
                info.id,
                info.user,
                admin::format_expiry(info.expires, hub_repo::now())
            );
            println!("{token}");
            Ok(())
        }
        Cmd::Token {
            cmd: TokenCmd::Revoke { cfg, token, id },
        } => {
            let hub = open_admin(&cfg.load()?)?;
            let done = match (token, id) {
                (Some(t), None) => hub.accounts().revoke_token(&t)?,
                (None, Some(i)) => hub.accounts().revoke_token_id(i)?,
                _ => bail!("give either the token or --id"),
            };
            if !done {
                bail!("no such active token");
            }
            eprintln!("revoked");
            Ok(())
        }
        Cmd::ImportLegacy { cfg, path } => {
            let cfg = cfg.load()?;
            let hub = Hub::open_on(&cfg.data_dir, cfg.catalog.as_deref()).with_context(|| {
                format!(
                    "opening the hub data in {} (catalog {})",
                    cfg.data_dir.display(),
                    cfg.catalog_shown()
                )
            })?;
            share_files(&cfg, &hub)?;
            let rep = hub
                .import_legacy(&path)
                .with_context(|| format!("importing the old hub tree {}", path.display()))?;
            for (item, why) in &rep.unimportable {
                eprintln!("not importable: {item}: {why}");
            }
            for (p, why) in &rep.ignored {
                eprintln!("ignored: {p}: {why}");
            }
            for w in &rep.warnings {
                eprintln!("warning: {w}");
            }
            for i in &rep.imported {
                println!("imported {i}");
            }
            if rep.is_noop() {
                println!(
                    "nothing new: {} items already imported, {} not importable",
                    rep.unchanged,
                    rep.unimportable.len()
                );
            } else {
                println!(
                    "imported {} items ({} unchanged), {} not importable",
                    rep.imported.len(),
                    rep.unchanged,
                    rep.unimportable.len()
                );
            }
            Ok(())
        }
        Cmd::Check { cfg } => {
            let mut cfg = cfg.load()?;
            if cfg.public_url.trim().is_empty() {
                if let Some(u) = hub_http::reach::recorded_public_url(&cfg.data_dir) {
                    cfg.public_url = u;
                }
            }
            let hub = std::sync::Arc::new(open_admin(&cfg)?);
            let rep = hub.integrity_check()?;
            for p in rep.sqlite.iter().chain(&rep.problems) {
                eprintln!("{p}");
            }
            let unreachable = tokio::runtime::Runtime::new()
                .context("starting the runtime")?
                .block_on(hub_http::reach::unreachable_backends(hub.clone(), &cfg))?;
            for p in &unreachable {
                eprintln!(
                    "{} flist(s) announce a backend no reader can reach: {} ({})",
                    p.entries.len(),
                    p.backend,
                    p.why
                );
                for e in p.entries.iter().take(20) {
                    eprintln!("  {e}");
                }
                if p.entries.len() > 20 {
                    eprintln!("  ... and {} more", p.entries.len() - 20);
                }
            }
            if let Ok(plan) = hub_http::restamp::plan(&hub, &cfg) {
                let n: usize = plan
                    .files
                    .iter()
                    .chain(&plan.signed)
                    .map(|f| f.entries.len())
                    .sum();
                if n > 0 {
                    eprintln!(
                        "{n} flist(s) announce a former backend of this hub ({}) instead of {}: \
                         run `hub-server restamp` with the server's configuration to fix them \
                         (--dry-run lists them)",
                        plan.former.join(", "),
                        plan.current
                    );
                }
            }
            let orphans = hub.gc(GcOptions {
                grace: std::time::Duration::ZERO,
                dry_run: true,
            })?;
            let sound = rep.is_clean() && unreachable.is_empty();
            println!(
                "{} entries, {} files checked, {} unreachable backends: {}",
                rep.entries_checked,
                rep.blobs_checked,
                unreachable.len(),
                if sound { "clean" } else { "PROBLEMS" }
            );
            print_gc(&orphans, "garbage to collect");
            let fl = hub_http::formats::prune_cache(&hub, &orphans.unreferenced, true)
                .context("looking at the .fl cache")?;
            print_fl_prune(&fl, "garbage to collect");
            if !orphans.is_empty() {
                // Deleting or replacing an flist leaves its file for `gc` (a download may
                // still be reading it); an interrupted upload leaves an unrecorded one.
                println!(
                    "this garbage is expected after deletes and interrupted uploads, not a \
                     problem: run `hub-server gc` to remove it"
                );
            }
            // Problems fail the check (scripts and monitoring see it); garbage does not.
            if !sound {
                std::process::exit(1);
            }
            Ok(())
        }
        Cmd::Migrate {
            cfg,
            to_catalog,
            to_store,
            to_data_dir,
        } => {
            let cfg = cfg.load()?;
            let hub = std::sync::Arc::new(open_admin(&cfg)?);
            let dest = hub_http::migrate::Destination {
                data_dir: to_data_dir.unwrap_or_else(|| cfg.data_dir.join("migrated")),
                catalog: to_catalog,
                store: to_store,
            };
            let shown = hub_repo::redact_catalog(&dest.catalog);
            let rt = tokio::runtime::Runtime::new().context("starting the runtime")?;
            let rep = rt
                .block_on(hub_http::migrate::migrate(
                    hub,
                    &cfg.store_url(),
                    &dest,
                    |step| eprintln!("{step}..."),
                ))
                .with_context(|| {
                    format!("moving the hub to {shown} (what was copied stays: run it again)")
                })?;
            for t in &rep.tables {
                println!("{:<14} {:>8} rows, {:>8} copied", t.table, t.rows, t.copied);
            }
            println!(
                "flist files    {:>8} files, {:>7} copied ({} bytes)",
                rep.files.files, rep.files.copied, rep.files.bytes
            );
            if let Some(c) = &rep.chunks {
                println!(
                    "chunks         {:>8} keys in {} flists, {} copied, {} kept elsewhere \
                     (their flists' backend)",
                    c.chunks, c.flists, c.copied, c.elsewhere
                );
            }
            println!("done: run `hub-server check --catalog {shown} ...` against the cluster");
            Ok(())
        }
        Cmd::Gc {
            cfg,
            grace,
            dry_run,
        } => {
            let zero = matches!(grace.trim(), "0" | "0s" | "0m" | "0h");
            let grace = (if zero {
                Some(0)
            } else {
                parse_duration_secs(&grace)
            })
            .and_then(|s| u64::try_from(s).ok())
            .with_context(|| format!("bad --grace {grace:?} (use 1h, 10m, 0s)"))?;
            let hub = open_admin(&cfg.load()?)?;
            let rep = hub.gc(GcOptions {
                grace: std::time::Duration::from_secs(grace),
                dry_run,
            })?;
            let verb = if dry_run { "to collect" } else { "collected" };
            print_gc(&rep, verb);
            // The .fl files converted from flist files now gone go with them.
            let fl = hub_http::formats::prune_cache(&hub, &rep.unreferenced, dry_run)
                .context("pruning the .fl cache")?;
            print_fl_prune(&fl, verb);
            Ok(())
        }
    }
}

/// `hub-server restamp [--dry-run]`.
fn restamp(mut cfg: HubConfig, dry_run: bool) -> Result<()> {
    use hub_http::restamp;
    if cfg.public_url.trim().is_empty() {
        if let Some(u) = hub_http::reach::recorded_public_url(&cfg.data_dir) {
            cfg.public_url = u;
        }
    }
    let hub = open_admin(&cfg)?;
    let plan = restamp::plan(&hub, &cfg)?;
    println!("this hub announces {}", plan.current);
    if let Some(last) = hub.own_backends()?.first() {
        if !hub_repo::same_backend(&last.backend, &plan.current) {
            println!(
                "note: the server last announced {}; give restamp the configuration the server \
                 runs with (--config, --public-url, --zdb-listen ...) if that is not this one",
                last.backend
            );
        }
    }
    if plan.former.is_empty() {
        println!("no former backend of this hub is recorded");
    } else {
        println!("former backends of this hub: {}", plan.former.join(", "));
    }
    let signed = |verb: &str| {
        for f in &plan.signed {
            println!(
                "signed, {verb}: {} ({}): its author signature covers the file; re-sign it \
                 with the new backend and upload it again",
                restamp::names(f),
                f.backend.as_deref().unwrap_or("")
            );
        }
    };
    if plan.files.is_empty() {
        signed("left as is");
        println!(
            "nothing to change: no flist announces a former backend of this hub{}",
            if plan.signed.is_empty() {
                String::new()
            } else {
                format!(" except {} signed one(s)", plan.signed.len())
            }
        );
        return Ok(());
    }
    if dry_run {
        for f in &plan.files {
            println!(
                "would restamp {} ({})",
                restamp::names(f),
                f.backend.as_deref().unwrap_or("")
            );
        }
        signed("would be left as is");
        println!(
            "dry run: {} flist file(s) ({} entries) would be re-stamped to {}; nothing changed",
            plan.files.len(),
            plan.entries(),
            plan.current
        );
        return Ok(());
    }
    let done = restamp::apply(&hub, &cfg, &plan)?;
    for f in &done.done {
        println!(
            "restamped {} (was {})",
            restamp::names(f),
            f.backend.as_deref().unwrap_or("")
        );
    }
    signed("left as is");
    for (f, why) in &done.failed {
        eprintln!("not restamped: {}: {why}", restamp::names(f));
    }
    println!(
        "restamped {} flist file(s) ({} entries) to {}; the old files go with `hub-server gc`",
        done.done.len(),
        done.done.iter().map(|f| f.entries.len()).sum::<usize>(),
        plan.current
    );
    if !done.failed.is_empty() {
        bail!(
            "{} flist file(s) could not be re-stamped",
            done.failed.len()
        );
    }
    Ok(())
}

fn print_fl_prune(p: &hub_http::formats::Pruned, verb: &str) {
    for f in &p.files {
        println!("converted .fl of a gone flist {f}");
    }
    println!(
        "{verb}: {} cached .fl files of gone flists, {} temp files ({} bytes)",
        p.files.len(),
        p.temp_files,
        p.bytes
    );
}

fn print_gc(rep: &GcReport, verb: &str) {
    for sha in &rep.unreferenced {
        println!("unreferenced flist file {sha}");
    }
    for p in &rep.unrecorded {
        println!("unrecorded file {p}");
    }
    for p in &rep.foreign {
        eprintln!("not a flist file (left alone): {p}");
    }
    println!(
        "{verb}: {} unreferenced, {} unrecorded flist files ({} bytes), {} path indexes, \
         {} temp files; {} young files kept",
        rep.unreferenced.len(),
        rep.unrecorded.len(),
        rep.bytes,
        rep.path_index,
        rep.temp_files,
        rep.kept_young
    );
}

fn user(cmd: UserCmd) -> Result<()> {
    match cmd {
        UserCmd::Add {
            cfg,
            name,
            password_stdin,
            admin,
        } => {
            let pw = password(password_stdin)?;
            let hub = open_admin(&cfg.load()?)?;
            let u = hub.accounts().user_add(&name, &pw, admin)?;
            eprintln!(
                "created {}{}: sign in on the web page with this name and password",
                u.name,
                if u.admin { " (admin)" } else { "" }
            );
            Ok(())
        }
        UserCmd::List { cfg } => {
            let hub = open_admin(&cfg.load()?)?;
            for u in hub.accounts().user_list()? {
                println!(
                    "{}\t{}\tcreated {}{}",
                    u.name,
                    if u.admin { "admin" } else { "user" },
                    admin::format_utc(u.created),
                    if u.disabled { "\tdisabled" } else { "" }
                );
            }
            Ok(())
        }
        UserCmd::Passwd {
            cfg,
            name,
            password_stdin,
        } => {
            let pw = password(password_stdin)?;
            let hub = open_admin(&cfg.load()?)?;
            hub.accounts().user_passwd(&name, &pw)?;
            eprintln!("password of {name} changed; its web sessions ended");
            Ok(())
        }
        UserCmd::Remove { cfg, name } => {
            let hub = open_admin(&cfg.load()?)?;
            let tokens = hub.accounts().user_remove(&name)?;
            eprintln!(
                "removed {name}: its web sessions ended, {tokens} API token(s) revoked, its \
                 unfinished jobs failed (its repository stays)"
            );
            Ok(())
        }
    }
}

fn org(cmd: OrgCmd) -> Result<()> {
    match cmd {
        OrgCmd::Create { cfg, name, owner } => {
            let hub = open_admin(&cfg.load()?)?;
            hub.accounts().org_create(&name, &owner)?;
            eprintln!("created organisation {name}, owned by {owner}");
        }
        OrgCmd::Add {
            cfg,
            name,
            user,
            role,
        } => {
            let role: hub_repo::OrgRole = role.parse()?;
            let hub = open_admin(&cfg.load()?)?;
            hub.accounts().org_add(&name, &user, role)?;
            eprintln!("{user} is {role} of {name}");
        }
        OrgCmd::Remove { cfg, name, user } => {
            let hub = open_admin(&cfg.load()?)?;
            if !hub.accounts().org_remove(&name, &user)? {
                bail!("{user} is not a member of {name}");
            }
            eprintln!(
                "removed {user} from {name}: its sessions and tokens no longer act for {name}"
            );
        }
        OrgCmd::List { cfg, name } => {
            let hub = open_admin(&cfg.load()?)?;
            match name {
                None => {
                    for o in hub.accounts().org_list()? {
                        println!("{o}");
                    }
                }
                Some(o) => {
                    let members = hub
                        .accounts()
                        .org_members(&o)?
                        .with_context(|| format!("no organisation {o}"))?;
                    for m in members {
                        println!("{}\t{}", m.user, m.role);
                    }
                }
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn serve(cfg: HubConfig) -> Result<()> {
    let data_dir = cfg.data_dir.clone();
    let server = hub_http::start(cfg).await?;
    let st = server.state.clone();
    let users = st.hub.accounts().user_count().unwrap_or(0);
    let catalog = match &st.config.catalog {
        Some(_) => format!(", catalog {}", st.config.catalog_shown()),
        None => String::new(),
    };
    println!(
        "flist hub listening on http://{} (public URL {}, data in {}{catalog})",
        server.addr,
        st.config.public_url(),
        data_dir.display()
    );
    if let Some(z) = server.zdb_addr {
        println!(
            "0-db endpoint (read-only chunks for ZOS nodes and 0-db readers) on {z}; new flists \
             carry the backend {}",
            st.public_backend.as_deref().unwrap_or("(none)")
        );
    }
    if users == 0 {
        let dd = if data_dir == Path::new("./hub-data") {
            String::new()
        } else {
            format!(" --data-dir {}", data_dir.display())
        };
        println!(
            "No account yet. Create the first one (password on stdin):\n  \
             hub-server user add NAME --password-stdin --admin{dd}\n\
             then sign in at {}/login",
            st.config.public_url()
        );
    }
    server
        .run_until(async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!("shutting down");
        })
        .await?;
    Ok(())
}
