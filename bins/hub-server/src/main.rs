//! `hub-server`: the flist hub. Thin wiring over `hub-http` and `hub-repo`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
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
        /// TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address (default 127.0.0.1:5555).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Data directory (default ./hub-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Chunk store URL (default dir://<data-dir>/chunks).
        #[arg(long)]
        store: Option<String>,
        /// Public backend announced in flists (zdb://host:port/namespace).
        #[arg(long)]
        public_backend: Option<String>,
        /// Run as a read-only mirror of this hub (base URL), kept in sync.
        #[arg(long)]
        mirror_of: Option<String>,
        /// Time between mirror syncs: 30s, 5m ...
        #[arg(long)]
        sync_interval: Option<String>,
    },
    /// API tokens.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Import an old hub's tree (`public/users`).
    ImportLegacy {
        /// Data directory.
        #[arg(long, default_value = "./hub-data")]
        data_dir: PathBuf,
        /// The old tree: one directory per repository.
        path: PathBuf,
    },
    /// Check the catalog and every stored flist file; report unreferenced files.
    Check {
        /// Data directory.
        #[arg(long, default_value = "./hub-data")]
        data_dir: PathBuf,
    },
    /// Remove flist files no entry references (safe while the server runs).
    Gc {
        /// Data directory.
        #[arg(long, default_value = "./hub-data")]
        data_dir: PathBuf,
        /// Keep files without a catalog row younger than this: 1h, 10m, 0s.
        #[arg(long, default_value = "1h")]
        grace: String,
        /// Only report what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Issue a token and print it.
    Create {
        /// Data directory.
        #[arg(long, default_value = "./hub-data")]
        data_dir: PathBuf,
        /// The user it authenticates.
        #[arg(long)]
        user: String,
        /// Organisations the user may act as (repeatable).
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
        /// Data directory.
        #[arg(long, default_value = "./hub-data")]
        data_dir: PathBuf,
        /// The token value.
        token: Option<String>,
        /// The token's catalog id instead.
        #[arg(long)]
        id: Option<i64>,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Serve {
            config,
            listen,
            data_dir,
            store,
            public_backend,
            mirror_of,
            sync_interval,
        } => {
            let mut cfg = match &config {
                Some(p) => HubConfig::from_file(p)?,
                None => HubConfig::default(),
            };
            cfg.apply_env(std::env::vars())?;
            if let Some(l) = listen {
                cfg.listen = l;
            }
            if let Some(d) = data_dir {
                cfg.data_dir = d;
            }
            if store.is_some() {
                cfg.store = store;
            }
            if let Some(b) = public_backend {
                cfg.public_backend = b;
            }
            if mirror_of.is_some() {
                cfg.mirror.of = mirror_of;
            }
            if let Some(i) = sync_interval {
                let secs = parse_duration_secs(&i)
                    .filter(|s| *s > 0)
                    .with_context(|| format!("bad --sync-interval {i:?} (use 30s, 5m)"))?;
                cfg.mirror.sync_interval_secs = secs as u64;
            }
            serve(cfg)
        }
        Cmd::Token {
            cmd:
                TokenCmd::Create {
                    data_dir,
                    user,
                    member_of,
                    ttl,
                    label,
                },
        } => {
            let secs = parse_duration_secs(&ttl)
                .with_context(|| format!("bad --ttl {ttl:?} (use 30d, 12h, 15m, 90s)"))?;
            let hub = Hub::open(&data_dir)?;
            let (token, info) = hub.create_token(&user, &member_of, secs, label.as_deref())?;
            eprintln!(
                "token #{} for {} expires at unix time {}",
                info.id, info.user, info.expires
            );
            println!("{token}");
            Ok(())
        }
        Cmd::Token {
            cmd:
                TokenCmd::Revoke {
                    data_dir,
                    token,
                    id,
                },
        } => {
            let hub = Hub::open(&data_dir)?;
            let done = match (token, id) {
                (Some(t), None) => hub.revoke_token(&t)?,
                (None, Some(i)) => hub.revoke_token_id(i)?,
                _ => bail!("give either the token or --id"),
            };
            if !done {
                bail!("no such active token");
            }
            eprintln!("revoked");
            Ok(())
        }
        Cmd::ImportLegacy { data_dir, path } => {
            let hub = Hub::open(&data_dir)
                .with_context(|| format!("opening the hub data in {}", data_dir.display()))?;
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
        Cmd::Check { data_dir } => {
            let hub = Hub::open(&data_dir)?;
            let rep = hub.integrity_check()?;
            for p in rep.sqlite.iter().chain(&rep.problems) {
                eprintln!("{p}");
            }
            println!(
                "{} entries, {} files checked: {}",
                rep.entries_checked,
                rep.blobs_checked,
                if rep.is_clean() { "clean" } else { "PROBLEMS" }
            );
            let orphans = hub.gc(GcOptions {
                grace: std::time::Duration::ZERO,
                dry_run: true,
            })?;
            print_gc(&orphans, "to collect");
            if !orphans.is_empty() {
                println!("run `hub-server gc` to remove them");
            }
            if !rep.is_clean() {
                std::process::exit(1);
            }
            Ok(())
        }
        Cmd::Gc {
            data_dir,
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
            let hub = Hub::open(&data_dir)
                .with_context(|| format!("opening the hub data in {}", data_dir.display()))?;
            let rep = hub.gc(GcOptions {
                grace: std::time::Duration::from_secs(grace),
                dry_run,
            })?;
            print_gc(&rep, if dry_run { "to collect" } else { "collected" });
            Ok(())
        }
    }
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

#[tokio::main]
async fn serve(cfg: HubConfig) -> Result<()> {
    let server = hub_http::start(cfg).await?;
    println!("listening on http://{}", server.addr);
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
