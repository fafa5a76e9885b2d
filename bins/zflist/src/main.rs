//! `zflist`: build, inspect, edit and check flists.
//!
//! This binary only parses arguments, calls `zflist-core` and prints. Session commands use
//! the reference tool's syntax (`zflist [temporary-point] <action> ...`, or `ZFLIST_MNT`);
//! `ZFLIST_JSON=1` (or `--json`) prints the reference's JSON envelope, `ZFLIST_PROGRESS=1`
//! its progress lines; otherwise a progress bar is drawn when stderr is a terminal.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use zflist_core::{commands, oneshot, MetadataCmd, Progress, Response, Session, StoreConfig};

mod mount_args;

/// Build, inspect, edit and check flists.
///
/// Session commands work on a temporary point (ZFLIST_MNT, --mnt, or the first argument):
/// `open`/`init` a session, edit it, then `commit` it to a new flist.
#[derive(Parser, Debug)]
#[command(name = "zflist", version, about, long_about = None)]
struct Cli {
    /// Temporary point holding the session (default: $ZFLIST_MNT).
    #[arg(long, global = true, value_name = "DIR")]
    mnt: Option<PathBuf>,
    /// Print the JSON envelope (same as ZFLIST_JSON=1).
    #[arg(long, global = true)]
    json: bool,
    /// Chunk store URL (repeat with RANGE=URL items for a router); overrides ZFLIST_BACKEND
    /// and the flist's backend metadata.
    #[arg(long = "store", global = true, value_name = "URL")]
    stores: Vec<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Open an flist to enable editing.
    Open { file: PathBuf },
    /// Initialize an empty flist to enable editing.
    Init,
    /// Close the session and discard its files.
    Close,
    /// Write the session to a new flist.
    Commit { file: PathBuf },
    /// List the content of a directory.
    Ls { path: Option<String> },
    /// List every file and directory.
    Find,
    /// Dump an entry's metadata.
    Stat { path: String },
    /// Print a file's contents (needs a backend).
    Cat { path: String },
    /// Download a file to a local path (needs a backend).
    Get { path: String, dest: PathBuf },
    /// Insert a local file (uploads to ZFLIST_BACKEND / --store).
    Put { local: PathBuf, target: String },
    /// Insert the contents of a local directory, recursively.
    Putdir { local: PathBuf, target: String },
    /// Change the mode of an entry (octal).
    Chmod { mode: String, path: String },
    /// Remove a file (not a directory).
    Rm { path: String },
    /// Remove a directory recursively.
    Rmdir { path: String },
    /// Create an empty directory (non-recursive).
    Mkdir { path: String },
    /// Get or set metadata.
    Metadata(MetadataArgs),
    /// Merge another flist into the session (entries already present win).
    Merge { file: PathBuf },
    /// Check that every chunk exists in the backend.
    Check,
    /// List the store key of every chunk.
    Chunks,
    /// Build an flist from a directory, an archive, or `-` (archive on stdin).
    Pack {
        /// Directory, tar archive (optionally gzip/bzip2/xz/zstd compressed), or `-`.
        source: String,
        /// Output .flist.
        #[arg(short, long, value_name = "FLIST")]
        output: PathBuf,
    },
    /// Materialise an flist into a directory, downloading its contents.
    Extract { flist: PathBuf, dir: PathBuf },
    /// Show an flist's tree, counts, sizes and metadata.
    Inspect { flist: PathBuf },
    /// Convert a Docker/OCI image (registry reference, `docker save` tarball or OCI layout)
    /// into an flist, without a Docker daemon.
    Docker {
        /// `ubuntu:22.04`, `registry:5000/app@sha256:...`, `docker-archive:FILE`, `oci:DIR`.
        image: String,
        /// Output .flist.
        #[arg(short, long, value_name = "FLIST")]
        output: PathBuf,
        /// Platform to pick from a multi-platform image (default linux/amd64).
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Option<String>,
        /// Registry user name (the password is read from stdin with --password-stdin).
        #[arg(long, short = 'u', requires = "password_stdin")]
        username: Option<String>,
        /// Read the registry password (or token) from stdin.
        #[arg(long, requires = "username")]
        password_stdin: bool,
        /// Registry (`host[:port]`) to speak plain HTTP to (loopback ones always are).
        #[arg(long = "insecure-registry", value_name = "HOST")]
        insecure_registries: Vec<String>,
        /// Layer cache directory (default: $XDG_CACHE_HOME/zflist/layers).
        #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
        cache: Option<PathBuf>,
        /// Do not use the layer cache.
        #[arg(long)]
        no_cache: bool,
    },
    /// Mount an flist (file or URL) read-only through FUSE, fetching chunks as they are
    /// read, until SIGINT/SIGTERM or `zflist umount`.
    Mount(mount_args::MountCli),
    /// Unmount a zflist mount, or clear a stale one whose process was killed.
    Umount { mountpoint: PathBuf },
    /// Check that every chunk of an flist exists in the store (or, with --signature, that
    /// it is signed).
    Verify {
        flist: PathBuf,
        /// Also download and decode every chunk.
        #[arg(long)]
        deep: bool,
        #[command(flatten)]
        sig: mount_args::SignatureCli,
    },
    /// A new flist from a base with files set or removed, sharing the base's chunks.
    Derive(mount_args::DeriveCli),
    /// Check that an flist is a bootable VM image (/boot/boot.yaml, kernel, initrd).
    CheckVm { flist: String },
    /// Sign an flist (writes FLIST.sig); the key file is created if missing.
    Sign {
        flist: PathBuf,
        /// Private key file (base64 seed).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Sign as `repo/name.flist` (default: the file name).
        #[arg(long, value_name = "REPO/NAME")]
        name: Option<String>,
    },
}

#[derive(Args, Debug)]
struct MetadataArgs {
    #[command(subcommand)]
    action: Option<MetaAction>,
}

#[derive(Subcommand, Debug)]
enum MetaAction {
    /// Where readers download chunks from (public: no write credentials).
    Backend {
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        port: Option<u16>,
        #[arg(long)]
        socket: Option<String>,
        #[arg(long)]
        namespace: Option<String>,
        #[arg(long)]
        password: Option<String>,
        #[arg(long)]
        reset: bool,
    },
    /// Command line to start (use `--` before it).
    Entrypoint {
        #[arg(long)]
        reset: bool,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        argv: Vec<String>,
    },
    /// Environment variables.
    Environ {
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        value: Option<String>,
        #[arg(long)]
        unset: bool,
        #[arg(long)]
        reset: bool,
    },
    /// Exposed ports: `--in P [--out Q]` gives `{"<protocol>/P": Q}`.
    Port {
        #[arg(long, default_value = "tcp")]
        protocol: String,
        /// Incoming port (alias --host).
        #[arg(long = "in", alias = "host")]
        port_in: Option<u32>,
        /// Where it is redirected (alias --container; default: the same).
        #[arg(long = "out", alias = "container")]
        port_out: Option<u32>,
        #[arg(long)]
        unset: bool,
        #[arg(long)]
        reset: bool,
    },
    /// Volumes to mount.
    Volume {
        #[arg(long)]
        target: Option<String>,
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        unset: bool,
        #[arg(long)]
        reset: bool,
    },
    /// Readme text and license.
    Readme {
        #[arg(long)]
        import: Option<PathBuf>,
        #[arg(long)]
        license: Option<String>,
        #[arg(long)]
        reset: bool,
    },
    /// `metadata <key>` prints a value, `metadata <key> <value>` sets it.
    #[command(external_subcommand)]
    Other(Vec<String>),
}

const COMMANDS: &[&str] = &[
    "open", "init", "close", "commit", "ls", "find", "stat", "cat", "get", "put", "putdir",
    "chmod", "rm", "rmdir", "mkdir", "metadata", "merge", "check", "chunks", "pack", "extract",
    "inspect", "verify", "docker", "help", "mount", "umount", "derive", "check-vm", "sign",
];

/// Rewrites the reference form `zflist <temporary-point> <action> ...` into
/// `zflist --mnt <temporary-point> <action> ...`, and lower-cases the action.
fn normalise_args(mut args: Vec<OsString>) -> Vec<OsString> {
    let takes_value = ["--mnt", "--store"];
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy().to_string();
        if takes_value.contains(&a.as_str()) {
            i += 2;
            continue;
        }
        if a.starts_with('-') {
            i += 1;
            continue;
        }
        let lower = a.to_ascii_lowercase();
        if COMMANDS.contains(&lower.as_str()) {
            args[i] = OsString::from(lower);
        } else if i + 1 < args.len() {
            let next = args[i + 1].to_string_lossy().to_ascii_lowercase();
            if COMMANDS.contains(&next.as_str()) {
                let mnt = args.remove(i);
                args[i] = OsString::from(next);
                args.insert(1, OsString::from("--mnt"));
                args.insert(2, mnt);
            }
        }
        break;
    }
    args
}

fn command_name(cmd: &Cmd) -> &'static str {
    match cmd {
        Cmd::Open { .. } => "open",
        Cmd::Init => "init",
        Cmd::Close => "close",
        Cmd::Commit { .. } => "commit",
        Cmd::Ls { .. } => "ls",
        Cmd::Find => "find",
        Cmd::Stat { .. } => "stat",
        Cmd::Cat { .. } => "cat",
        Cmd::Get { .. } => "get",
        Cmd::Put { .. } => "put",
        Cmd::Putdir { .. } => "putdir",
        Cmd::Chmod { .. } => "chmod",
        Cmd::Rm { .. } => "rm",
        Cmd::Rmdir { .. } => "rmdir",
        Cmd::Mkdir { .. } => "mkdir",
        Cmd::Metadata(_) => "metadata",
        Cmd::Merge { .. } => "merge",
        Cmd::Check => "check",
        Cmd::Chunks => "chunks",
        Cmd::Pack { .. } => "pack",
        Cmd::Extract { .. } => "extract",
        Cmd::Inspect { .. } => "inspect",
        Cmd::Verify { .. } => "verify",
        Cmd::Docker { .. } => "docker",
        Cmd::Mount(_) => "mount",
        Cmd::Umount { .. } => "umount",
        Cmd::Derive(_) => "derive",
        Cmd::CheckVm { .. } => "check-vm",
        Cmd::Sign { .. } => "sign",
    }
}

fn metadata_cmd(args: MetadataArgs) -> Result<MetadataCmd, zflist_core::Error> {
    let usage = |m: &str| zflist_core::Error::usage("metadata", m);
    Ok(match args.action {
        None => MetadataCmd::List,
        Some(MetaAction::Backend {
            host: None,
            port: None,
            socket: None,
            namespace: None,
            password: None,
            reset: false,
        }) => MetadataCmd::Get("backend".into()),
        Some(MetaAction::Backend {
            host,
            port,
            socket,
            namespace,
            password,
            reset,
        }) => MetadataCmd::Backend {
            host: host.unwrap_or_else(|| "hub.grid.tf".into()),
            port: if socket.is_some() {
                0
            } else {
                port.unwrap_or(9900)
            },
            socket,
            namespace,
            password,
            reset,
        },
        Some(MetaAction::Entrypoint { reset: false, argv }) if argv.is_empty() => {
            MetadataCmd::Get("entrypoint".into())
        }
        Some(MetaAction::Entrypoint { reset, argv }) => MetadataCmd::Entrypoint { argv, reset },
        Some(MetaAction::Environ {
            name: None,
            value: None,
            unset: false,
            reset: false,
        }) => MetadataCmd::Get("environ".into()),
        Some(MetaAction::Environ {
            name,
            value,
            unset,
            reset,
        }) => MetadataCmd::Environ {
            name,
            value,
            unset,
            reset,
        },
        Some(MetaAction::Port {
            port_in: None,
            port_out: None,
            unset: false,
            reset: false,
            ..
        }) => MetadataCmd::Get("port".into()),
        Some(MetaAction::Port {
            protocol,
            port_in,
            port_out,
            unset,
            reset,
        }) => MetadataCmd::Port {
            protocol,
            port_in,
            port_out,
            unset,
            reset,
        },
        Some(MetaAction::Volume {
            target: None,
            host: None,
            unset: false,
            reset: false,
        }) => MetadataCmd::Get("volume".into()),
        Some(MetaAction::Volume {
            target,
            host,
            unset,
            reset,
        }) => MetadataCmd::Volume {
            target,
            host,
            unset,
            reset,
        },
        Some(MetaAction::Readme {
            import: None,
            license: None,
            reset: false,
        }) => MetadataCmd::Get("readme".into()),
        Some(MetaAction::Readme {
            import,
            license,
            reset,
        }) => MetadataCmd::Readme {
            import,
            license,
            reset,
        },
        Some(MetaAction::Other(v)) => match v.as_slice() {
            [key] => MetadataCmd::Get(key.clone()),
            [key, value] => MetadataCmd::Set {
                key: key.clone(),
                value: value.clone(),
            },
            _ => {
                return Err(usage(
                    "expected `metadata <key>` or `metadata <key> <value>`",
                ))
            }
        },
    })
}

/// Progress as `ZFLIST_PROGRESS=1` JSON lines on stdout, a bar on a terminal, or nothing.
enum Reporter {
    Lines,
    Bar(Mutex<Option<ProgressBar>>),
    Quiet,
}

impl Progress for Reporter {
    fn update(&self, message: &str, current: u64, total: u64) {
        match self {
            Reporter::Lines => {
                let line = zflist_core::progress_line(message, current, total);
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{}", flist_json(&line));
                let _ = out.flush();
            }
            Reporter::Bar(slot) => {
                let Ok(mut slot) = slot.lock() else { return };
                let bar = slot.get_or_insert_with(|| {
                    let b = ProgressBar::new(total);
                    let style = if total > 0 {
                        ProgressStyle::with_template("{msg:20} [{bar:40}] {pos}/{len} ({eta})")
                    } else {
                        ProgressStyle::with_template("{spinner} {msg:20} {pos}")
                    };
                    if let Ok(s) = style {
                        b.set_style(s.progress_chars("=> "));
                    }
                    b
                });
                if bar.length() != Some(total) && total > 0 {
                    bar.set_length(total);
                }
                bar.set_message(message.to_string());
                bar.set_position(current);
            }
            Reporter::Quiet => {}
        }
    }

    fn finish(&self, _message: &str) {
        if let Reporter::Bar(slot) = self {
            if let Ok(mut slot) = slot.lock() {
                if let Some(b) = slot.take() {
                    b.finish_and_clear();
                }
            }
        }
    }

    fn warn(&self, message: &str) {
        eprintln!("zflist: warning: {message}");
    }
}

/// JSON formatted like the reference (jansson: `", "` and `": "` separators).
fn flist_json(v: &serde_json::Value) -> String {
    zflist_core::response::to_reference_json(v)
}

fn env_is_one(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

fn main() -> ExitCode {
    let args = normalise_args(std::env::args_os().collect());
    let json_env = env_is_one("ZFLIST_JSON");
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind as K;
            if matches!(
                e.kind(),
                K::DisplayHelp | K::DisplayVersion | K::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return if e.kind() == K::DisplayHelpOnMissingArgumentOrSubcommand {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                };
            }
            let rendered = e.render().to_string();
            // clap's message without its usage block, on one line
            let first = rendered
                .lines()
                .take_while(|l| !l.starts_with("Usage:"))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
                .trim_start_matches("error: ")
                .to_string();
            let err = zflist_core::Error::usage("usage", format!("{first} (see zflist --help)"));
            return finish(
                json_env || std::env::args_os().any(|a| a == "--json"),
                "usage",
                Err(err),
            );
        }
    };
    let json = json_env || cli.json;
    let reporter = if env_is_one("ZFLIST_PROGRESS") {
        Reporter::Lines
    } else if !json && std::io::stderr().is_terminal() {
        Reporter::Bar(Mutex::new(None))
    } else {
        Reporter::Quiet
    };
    let stores = StoreConfig {
        stores: cli.stores.clone(),
        backend_env: std::env::var("ZFLIST_BACKEND")
            .ok()
            .filter(|s| !s.trim().is_empty()),
    };
    let mnt = cli.mnt.clone().or_else(|| {
        std::env::var_os("ZFLIST_MNT")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    });
    let function = command_name(&cli.cmd);
    let result = run(cli.cmd, mnt, &stores, &reporter);
    reporter.finish("");
    finish(json, function, result)
}

fn run(
    cmd: Cmd,
    mnt: Option<PathBuf>,
    stores: &StoreConfig,
    p: &Reporter,
) -> zflist_core::Result<Response> {
    let function = command_name(&cmd);
    let session = || -> zflist_core::Result<Session> {
        mnt.clone()
            .map(Session::new)
            .ok_or_else(|| zflist_core::Error::new(function, zflist_core::ErrorKind::NoMountpoint))
    };
    let empty = |r: zflist_core::Result<()>| r.map(|()| Response::empty());
    match cmd {
        Cmd::Open { file } => empty(session()?.open(&file)),
        Cmd::Init => empty(session()?.init()),
        Cmd::Close => empty(session()?.close()),
        Cmd::Commit { file } => empty(session()?.commit(&file)),
        Cmd::Ls { path } => commands::ls(&session()?, path.as_deref().unwrap_or("/")),
        Cmd::Find => commands::find(&session()?),
        Cmd::Stat { path } => commands::stat(&session()?, &path),
        Cmd::Cat { path } => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            commands::cat(&session()?, stores, &path, &mut out)
        }
        Cmd::Get { path, dest } => commands::get(&session()?, stores, &path, &dest, p),
        Cmd::Put { local, target } => commands::put(&session()?, stores, &local, &target, p),
        Cmd::Putdir { local, target } => commands::putdir(&session()?, stores, &local, &target, p),
        Cmd::Chmod { mode, path } => commands::chmod(&session()?, &mode, &path),
        Cmd::Rm { path } => commands::rm(&session()?, &path),
        Cmd::Rmdir { path } => commands::rmdir(&session()?, &path),
        Cmd::Mkdir { path } => commands::mkdir(&session()?, &path),
        Cmd::Metadata(args) => zflist_core::metadata::metadata(&session()?, &metadata_cmd(args)?),
        Cmd::Merge { file } => commands::merge(&session()?, &file),
        Cmd::Check => commands::check(&session()?, stores, p),
        Cmd::Chunks => commands::chunks_cmd(&session()?),
        Cmd::Pack { source, output } => oneshot::pack(&source, &output, stores, p),
        Cmd::Extract { flist, dir } => oneshot::extract(&flist, &dir, stores, p),
        Cmd::Inspect { flist } => oneshot::inspect(&flist),
        Cmd::Verify { flist, sig, .. } if sig.signature => zflist_core::signing::verify_signature(
            &flist.to_string_lossy(),
            sig.key.as_deref(),
            sig.hub.as_deref(),
            sig.name.as_deref(),
        ),
        Cmd::Verify { flist, deep, .. } => oneshot::verify(&flist, stores, deep, p),
        Cmd::Derive(d) => zflist_core::derive::derive(&d.into_args(), stores),
        Cmd::CheckVm { flist } => zflist_core::vm::check_vm(&flist, stores),
        Cmd::Sign { flist, key, name } => zflist_core::signing::sign(&flist, &key, name.as_deref()),
        Cmd::Mount(m) => {
            let args =
                m.into_args(default_cache_dir().and_then(|d| Some(d.parent()?.join("chunks"))));
            zflist_core::mount::mount(&args, stores, |mp| {
                eprintln!("zflist: mounted {} at {}", args.flist, mp.display())
            })
        }
        Cmd::Umount { mountpoint } => zflist_core::mount::umount(&mountpoint),
        Cmd::Docker {
            image,
            output,
            platform,
            username,
            password_stdin,
            insecure_registries,
            cache,
            no_cache,
        } => {
            let credentials = match (username, password_stdin) {
                (Some(username), true) => Some(oneshot::Credentials {
                    username,
                    password: read_password()?,
                }),
                _ => None,
            };
            let cache_dir = if no_cache {
                None
            } else {
                cache.or_else(default_cache_dir)
            };
            let args = oneshot::DockerArgs {
                platform,
                credentials,
                insecure_registries,
                cache_dir,
            };
            oneshot::docker(&image, &output, stores, &args, p)
        }
    }
}

/// The registry password from stdin: the first line, without its line ending.
fn read_password() -> zflist_core::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| {
        zflist_core::Error::usage("docker", format!("reading the password from stdin: {e}"))
    })?;
    let pw = line.trim_end_matches(['\n', '\r']).to_string();
    if pw.is_empty() {
        return Err(zflist_core::Error::usage(
            "docker",
            "--password-stdin: no password on stdin",
        ));
    }
    Ok(pw)
}

/// `$XDG_CACHE_HOME/zflist/layers`, else `$HOME/.cache/zflist/layers`.
fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|s| !s.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("zflist").join("layers"))
}

fn finish(json: bool, function: &str, result: zflist_core::Result<Response>) -> ExitCode {
    let failed = match &result {
        Ok(r) => r.failure.is_some(),
        Err(_) => true,
    };
    let mut out = std::io::stdout().lock();
    if json {
        let env = zflist_core::envelope(function, &result);
        let _ = writeln!(out, "{}", flist_json(&env));
    } else {
        match &result {
            Ok(r) => {
                let _ = out.write_all(r.text.as_bytes());
                if let Some(m) = &r.failure {
                    eprintln!("zflist: {function}: {m}");
                }
            }
            Err(e) => eprintln!("zflist: {}: {}", e.function, e.message()),
        }
    }
    let _ = out.flush();
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
