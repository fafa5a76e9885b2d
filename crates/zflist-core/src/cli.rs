//! The `zflist` command line, defined once: every command, argument and flag is declared
//! here or on the argument type of the command that takes it (`PackArgs`, `MountArgs`,
//! `MetadataCmd`, `HubCommand`...), so help and shell completions come from the same
//! definition the commands run on. The binary parses ([`Cli::parse_args`]), calls
//! [`Cli::run`] and prints the [`Response`].
//!
//! ```
//! use zflist_core::cli::Cli;
//!
//! let cli = Cli::parse_args(["zflist", "/tmp/edit", "ls", "/etc"]).unwrap();
//! assert_eq!(cli.function, "ls");
//! assert!(Cli::parse_args(["zflist", "ls", "--bogus"]).is_err());
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use serde_json::json;

use crate::backend::StoreConfig;
use crate::derive::DeriveArgs;
use crate::error::{Error, Result};
use crate::failover::{Failover, Hubs};
use crate::hub_client::HubArgs;
use crate::metadata::MetadataArgs;
use crate::mount::MountArgs;
use crate::oneshot::{DockerArgs, ExtractArgs, PackArgs, VerifyArgs, FLIST_HELP};
use crate::progress::Reporter;
use crate::push::PushArgs;
use crate::response::Response;
use crate::run::RunArgs;
use crate::session::At;
use crate::vmboot::{VmArgs, VmCommand};
use crate::{commands, oneshot};

/// Build, inspect, edit, check, extract and publish flists.
///
/// One-shot commands work on .flist files (or http(s):// URLs of flists): pack, docker,
/// inspect, verify, extract. Session commands edit an flist in a temporary point
/// (--mnt DIR, ZFLIST_MNT, or the reference form `zflist <DIR> <command>`): open or init,
/// edit, then commit to a new flist.
// the fields' docs are clap's help text (`zdb://[:pw@]host` is not a link)
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Parser, Debug)]
#[command(
    name = "zflist",
    version,
    about = "Build, inspect, edit, check and publish flists",
    long_about = None,
    after_help = "EXAMPLES:\n  zflist pack ./rootfs -o app.flist --store zdb://127.0.0.1:9900/ns\n  zflist inspect https://hub.example/alice/app.flist\n  zflist extract https://hub.example/alice/app.flist ./out\n  zflist --mnt /tmp/edit open app.flist && zflist --mnt /tmp/edit ls /\n\nENVIRONMENT:\n  ZFLIST_MNT       temporary point of session commands\n  ZFLIST_BACKEND   chunk store (URL or the reference's JSON backend object)\n  ZFLIST_JSON=1    print the reference JSON envelope\n  ZFLIST_PROGRESS=1  print the reference progress lines on stdout"
)]
pub struct Cli {
    /// Print the reference JSON envelope instead of text (same as ZFLIST_JSON=1); no
    /// progress bar.
    #[arg(long, global = true)]
    pub json: bool,
    /// Draw no progress bar (one is drawn on stderr when it is a terminal).
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// Chunk store URL: zdb://[:pw@]host[:port][/ns], redis://, dir:///path, http(s)://,
    /// s3://KEY:SECRET@host:port/bucket[?region=R] (s3s:// over TLS; credentials also from
    /// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY);
    /// repeat with RANGE=URL items (00-7f=zdb://a) for a router, or plain URLs (copies of one
    /// store, read in order). Overrides ZFLIST_BACKEND and, for reading, the flist's backend
    /// metadata.
    #[arg(long = "store", global = true, value_name = "URL")]
    pub stores: Vec<String>,
    /// Seconds a connection to a hub or chunk store may take before the next one is tried
    /// (default 3; $ZFLIST_CONNECT_TIMEOUT).
    #[arg(long, global = true, value_name = "SECS")]
    pub connect_timeout: Option<f64>,
    /// The command's name as the JSON envelope and error messages give it (`check-vm`).
    #[arg(skip)]
    pub function: String,
    /// The command.
    #[command(subcommand)]
    pub cmd: Command,
}

/// Every `zflist` command.
#[derive(Subcommand, Debug)]
#[allow(missing_docs)] // the variants' fields are documented as their help
pub enum Command {
    /// Open an flist in the temporary point to edit it.
    #[command(
        after_help = "EXAMPLES:\n  zflist --mnt /tmp/edit open app.flist\n  zflist /tmp/edit open https://hub.example/alice/app.flist"
    )]
    Open {
        #[command(flatten)]
        at: At,
        #[arg(help = FLIST_HELP)]
        file: PathBuf,
    },
    /// Start an empty flist in the temporary point.
    #[command(after_help = "EXAMPLES:\n  zflist --mnt /tmp/edit init")]
    Init {
        #[command(flatten)]
        at: At,
    },
    /// Close the session and discard its changes.
    #[command(after_help = "EXAMPLES:\n  zflist --mnt /tmp/edit close")]
    Close {
        #[command(flatten)]
        at: At,
    },
    /// Write the session to a new flist (the session stays open).
    #[command(after_help = "EXAMPLES:\n  zflist --mnt /tmp/edit commit app-v2.flist")]
    Commit {
        #[command(flatten)]
        at: At,
        /// The .flist file to write.
        file: PathBuf,
    },
    /// List a directory of the session (like `ls -l`).
    #[command(after_help = "EXAMPLES:\n  zflist --mnt /tmp/edit ls /etc")]
    Ls {
        #[command(flatten)]
        at: At,
        /// Directory inside the flist (default /).
        path: Option<String>,
    },
    /// List every file and directory of the session, or of FLIST (.flist or .fl, file or
    /// URL) without a session.
    #[command(
        after_help = "EXAMPLES:\n  zflist --mnt /tmp/edit find\n  zflist find app.fl --json"
    )]
    Find {
        #[command(flatten)]
        at: At,
        /// An flist file or URL to list instead of the session.
        flist: Option<PathBuf>,
    },
    /// Show an entry's metadata (mode, owner, times, chunks).
    #[command(after_help = "EXAMPLES:\n  zflist --mnt /tmp/edit stat /bin/sh")]
    Stat {
        #[command(flatten)]
        at: At,
        /// Path inside the flist.
        path: String,
    },
    /// Print a file's contents (reads chunks from the store): of the session, or of FLIST
    /// (.flist or .fl, file or URL) without a session.
    #[command(
        after_help = "EXAMPLES:\n  zflist --mnt /tmp/edit cat /etc/os-release\n  zflist cat app.fl /etc/os-release"
    )]
    Cat {
        #[command(flatten)]
        at: At,
        /// `PATH` (a file of the session) or `FLIST PATH`.
        #[arg(num_args = 1..=2, required = true, value_names = ["FLIST", "PATH"])]
        args: Vec<String>,
    },
    /// Copy a file of the session to a local path (reads chunks from the store).
    #[command(after_help = "EXAMPLES:\n  zflist --mnt /tmp/edit get /etc/passwd ./passwd")]
    Get {
        #[command(flatten)]
        at: At,
        /// File inside the flist.
        path: String,
        /// Local file to write.
        dest: PathBuf,
    },
    /// Add a local file (chunks go to --store / ZFLIST_BACKEND when set).
    #[command(
        after_help = "EXAMPLES:\n  ZFLIST_BACKEND=zdb://127.0.0.1:9900/ns zflist --mnt /tmp/edit put ./app /usr/bin/app"
    )]
    Put {
        #[command(flatten)]
        at: At,
        /// Local file.
        local: PathBuf,
        /// Target path (or existing directory) inside the flist.
        target: String,
    },
    /// Add a local directory's contents, recursively.
    #[command(
        after_help = "EXAMPLES:\n  zflist --mnt /tmp/edit --store dir:///var/lib/chunks putdir ./www /srv/www"
    )]
    Putdir {
        #[command(flatten)]
        at: At,
        /// Local directory.
        local: PathBuf,
        /// Target directory inside the flist.
        target: String,
    },
    /// Change the mode of an entry.
    #[command(after_help = "EXAMPLES:\n  zflist --mnt /tmp/edit chmod 4755 /usr/bin/app")]
    Chmod {
        #[command(flatten)]
        at: At,
        /// Octal mode (e.g. 755, 4755).
        mode: String,
        /// Path inside the flist.
        path: String,
    },
    /// Remove a file (not a directory).
    #[command(after_help = "EXAMPLES:\n  zflist --mnt /tmp/edit rm /etc/motd")]
    Rm {
        #[command(flatten)]
        at: At,
        /// Path inside the flist.
        path: String,
    },
    /// Remove a directory and everything under it.
    #[command(after_help = "EXAMPLES:\n  zflist --mnt /tmp/edit rmdir /var/cache")]
    Rmdir {
        #[command(flatten)]
        at: At,
        /// Directory inside the flist.
        path: String,
    },
    /// Create an empty directory (its parent must exist).
    #[command(after_help = "EXAMPLES:\n  zflist --mnt /tmp/edit mkdir /data")]
    Mkdir {
        #[command(flatten)]
        at: At,
        /// Directory to create inside the flist.
        path: String,
    },
    /// Get or set metadata (backend, entrypoint, environ, port, volume, readme, any key).
    #[command(
        after_help = "EXAMPLES:\n  zflist --mnt /tmp/edit metadata\n  zflist --mnt /tmp/edit metadata entrypoint --entrypoint \"/bin/sh -c 'echo hi'\"\n  zflist --mnt /tmp/edit metadata entrypoint -- /bin/sh -c 'echo hi'\n  zflist --mnt /tmp/edit metadata environ --name LANG --value C.UTF-8\n  zflist --mnt /tmp/edit metadata backend --host hub.grid.tf --port 9900 --namespace default\n  zflist --mnt /tmp/edit metadata custom-key some-value"
    )]
    Metadata(MetadataArgs),
    /// Merge another flist into the session (entries already present win).
    #[command(
        after_help = "EXAMPLES:\n  zflist --mnt /tmp/edit init\n  zflist --mnt /tmp/edit merge base.flist\n  zflist --mnt /tmp/edit merge app.flist"
    )]
    Merge {
        #[command(flatten)]
        at: At,
        #[arg(help = FLIST_HELP)]
        file: PathBuf,
    },
    /// Check the session's chunks exist in the store (the reference's `check`; `verify`
    /// does the same on an .flist file without a session).
    #[command(
        after_help = "EXAMPLES:\n  zflist --mnt /tmp/edit check\n  zflist --mnt /tmp/edit --store zdb://127.0.0.1:9900/ns check"
    )]
    Check {
        #[command(flatten)]
        at: At,
    },
    /// List the store key of every chunk of the session.
    #[command(after_help = "EXAMPLES:\n  zflist --mnt /tmp/edit chunks")]
    Chunks {
        #[command(flatten)]
        at: At,
    },
    /// Build an flist from a directory, an archive, or `-` (an archive on stdin).
    ///
    /// Chunks go to --store (or ZFLIST_BACKEND); that store's public address (never its
    /// password) is recorded as the flist's backend, so `verify` and `extract` need no
    /// --store. A dir:// store cannot be reached by others: give --public-backend URL.
    #[command(
        after_help = "EXAMPLES:\n  zflist pack ./rootfs -o app.flist --store zdb://:secret@10.0.0.1:9900/ns\n  zflist pack image.tar.gz -o app.flist --store dir:///var/lib/chunks --public-backend http://hub.example/chunks\n  tar -C rootfs -c . | zflist pack - -o app.flist --store redis://127.0.0.1 --no-backend"
    )]
    Pack(PackArgs),
    /// Convert an flist between the two formats (.flist and rfs .fl), re-encoding every
    /// chunk into --store (default: the store it is read from).
    ///
    /// The tree, every file's bytes and the metadata are kept; what the target format
    /// cannot record (owner names in .fl, more than one route in .flist) is listed.
    #[command(
        after_help = "EXAMPLES:\n  zflist convert app.flist app.fl --store dir:///var/lib/blocks\n  zflist convert https://hub.example/alice/app.fl app.flist --store zdb://127.0.0.1:9900/ns\n  zflist convert rfs.fl app.flist --from-store dir:///srv/rfs-store --store zdb://hub:9900/ns"
    )]
    Convert(crate::formats::ConvertArgs),
    /// Show what differs between two flists (.flist or .fl, files or URLs): entries, kinds,
    /// modes, owners, times, sizes, link targets and (by chunk keys, or with --content by
    /// their bytes) file contents. Exits non-zero when they differ.
    #[command(
        after_help = "EXAMPLES:\n  zflist diff app-v1.flist app-v2.flist\n  zflist diff app.flist app.fl --content --store dir:///var/lib/chunks"
    )]
    Diff(crate::diff::DiffArgs),
    /// Restore an flist into a directory, downloading its contents.
    ///
    /// Reads chunks from --store, else ZFLIST_BACKEND, else the flist's own backend. The
    /// tree is built in a hidden sibling directory and renamed into place when complete:
    /// DIR never holds half a tree.
    #[command(
        after_help = "EXAMPLES:\n  zflist extract https://hub.example/alice/app.flist ./out\n  zflist extract app.flist ./out --store dir:///var/lib/chunks\n  zflist extract app.flist ./out --force     # replace ./out\n  zflist extract app.flist ./out --resume    # continue after a store error"
    )]
    Extract(ExtractArgs),
    /// Show an flist's tree (modes like `ls -l`), counts, sizes and metadata.
    #[command(
        after_help = "EXAMPLES:\n  zflist inspect app.flist\n  zflist inspect https://hub.example/alice/app.flist --json"
    )]
    Inspect {
        #[arg(help = FLIST_HELP)]
        flist: PathBuf,
        #[command(flatten)]
        hubs: Hubs,
    },
    /// Convert a Docker/OCI image (registry reference, `docker save` tarball or OCI layout)
    /// into an flist, without a Docker daemon.
    #[command(
        after_help = "EXAMPLES:\n  zflist docker alpine:3.20 -o alpine.flist --store zdb://127.0.0.1:9900/ns\n  zflist docker docker-archive:app.tar -o app.flist --store dir:///var/lib/chunks --no-backend\n  echo \"$TOKEN\" | zflist docker ghcr.io/me/app:1 -u me --password-stdin -o app.flist --store zdb://hub:9900/ns"
    )]
    Docker(DockerArgs),
    /// Mount an flist (file or URL) read-only through FUSE, fetching chunks as they are
    /// read, until SIGINT/SIGTERM or `zflist umount`.
    Mount(MountArgs),
    /// Run the container an flist describes: its entrypoint as PID 1 of new namespaces,
    /// on the lazily mounted flist with a writable layer (removed afterwards); exits with
    /// the entrypoint's code. Needs root.
    #[command(
        after_help = "EXAMPLES:\n  zflist run app.flist\n  zflist run https://hub.example/alice/app.flist -e MODE=dev --net none\n  zflist run app.flist --entrypoint /bin/sh -- -c 'ls /'\n  zflist run debian.flist -- cat /etc/os-release"
    )]
    Run(RunArgs),
    /// Virtual machines: `vm boot` boots the VM an flist describes under QEMU. Needs root.
    Vm(VmArgs),
    /// Unmount a zflist mount, or clear a stale one whose process was killed.
    Umount { mountpoint: PathBuf },
    /// Check that every chunk of an .flist exists in the store (the session command
    /// `check` does the same for an open session); --deep also decodes each chunk.
    #[command(
        after_help = "EXAMPLES:\n  zflist verify app.flist                 # store from the flist's backend\n  zflist verify app.flist --store dir:///var/lib/chunks --deep\n  zflist verify https://hub.example/alice/app.flist"
    )]
    Verify(VerifyArgs),
    /// A new flist from a base with files set or removed, sharing the base's chunks.
    Derive(DeriveArgs),
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
    /// Talk to a hub, like the reference `zflist hub` (ZFLIST_HUB, ZFLIST_HUB_TOKEN,
    /// ZFLIST_HUB_USER).
    Hub(HubArgs),
    /// Pack a directory, archive, image or flist and publish it on a hub, uploading only
    /// the chunks the hub lacks (an interrupted push, run again, sends only the rest).
    Push(PushArgs),
    /// Print a shell completion script (e.g. `zflist completions bash >
    /// /etc/bash_completion.d/zflist`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

impl Cli {
    /// Parses a command line (after [`normalise_args`]), filling [`Cli::function`].
    pub fn parse_args<I, T>(args: I) -> std::result::Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args = normalise_args(args.into_iter().map(Into::into).collect());
        let matches = Cli::command().try_get_matches_from(args)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        cli.function = match matches.subcommand() {
            // `vm boot`: the command is the pair
            Some(("vm", sub)) => format!("vm {}", sub.subcommand_name().unwrap_or("")),
            Some((name, _)) => name.to_string(),
            None => "usage".into(),
        };
        Ok(cli)
    }

    /// Where chunks are read and written: `--store`, else `ZFLIST_BACKEND`.
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            stores: self.stores.clone(),
            backend_env: std::env::var("ZFLIST_BACKEND")
                .ok()
                .filter(|s| !s.trim().is_empty()),
        }
    }

    /// Runs the command: the hubs reads fail over between and the connect timeout are set
    /// for the process first.
    pub fn run(self, progress: &Reporter) -> Result<Response> {
        let function = self.function.clone();
        let stores = self.store_config();
        let verify;
        let none = Hubs::default();
        let hubs: &Hubs = match &self.cmd {
            Command::Extract(a) => &a.hubs,
            Command::Inspect { hubs, .. } => hubs,
            Command::Mount(m) => &m.hubs,
            Command::Run(r) => &r.hubs,
            Command::Verify(v) => {
                verify = Hubs {
                    hubs: Vec::new(),
                    token: v.token.clone(),
                };
                &verify
            }
            Command::Vm(VmArgs {
                cmd: VmCommand::Boot(b),
            }) => &b.hubs,
            _ => &none,
        };
        let failover = Failover::from_env(&hubs.hubs, hubs.token.as_deref(), self.connect_timeout)
            .map_err(|e| Error::usage(&function, e))?;
        crate::failover::configure(failover);
        self.cmd.run(&function, &stores, progress)
    }
}

impl Command {
    fn run(self, function: &str, stores: &StoreConfig, p: &Reporter) -> Result<Response> {
        let session = |at: &At| at.session(function);
        let empty = |r: Result<()>| r.map(|()| Response::empty());
        match self {
            Command::Open { at, file } => empty(session(&at)?.open(&file)),
            Command::Init { at } => empty(session(&at)?.init()),
            Command::Close { at } => empty(session(&at)?.close()),
            Command::Commit { at, file } => empty(session(&at)?.commit(&file)),
            Command::Ls { at, path } => {
                commands::ls(&session(&at)?, path.as_deref().unwrap_or("/"))
            }
            Command::Find { flist: Some(f), .. } => commands::find_flist(&f, p),
            Command::Find { at, flist: None } => commands::find(&session(&at)?),
            Command::Stat { at, path } => commands::stat(&session(&at)?, &path),
            Command::Cat { at, args } => {
                let stdout = std::io::stdout();
                let mut out = std::io::BufWriter::new(stdout.lock());
                match &args[..] {
                    [flist, path] => commands::cat_flist(Path::new(flist), stores, path, &mut out),
                    [path] => commands::cat(&session(&at)?, stores, path, &mut out),
                    _ => Err(Error::usage(
                        function,
                        "expected `cat PATH` or `cat FLIST PATH`",
                    )),
                }
            }
            Command::Get { at, path, dest } => {
                commands::get(&session(&at)?, stores, &path, &dest, p)
            }
            Command::Put { at, local, target } => {
                commands::put(&session(&at)?, stores, &local, &target, p)
            }
            Command::Putdir { at, local, target } => {
                commands::putdir(&session(&at)?, stores, &local, &target, p)
            }
            Command::Chmod { at, mode, path } => commands::chmod(&session(&at)?, &mode, &path),
            Command::Rm { at, path } => commands::rm(&session(&at)?, &path),
            Command::Rmdir { at, path } => commands::rmdir(&session(&at)?, &path),
            Command::Mkdir { at, path } => commands::mkdir(&session(&at)?, &path),
            Command::Metadata(args) => {
                crate::metadata::metadata(&session(&args.at)?, args.action.as_ref())
            }
            Command::Merge { at, file } => commands::merge(&session(&at)?, &file),
            Command::Check { at } => commands::check(&session(&at)?, stores, p),
            Command::Chunks { at } => commands::chunks_cmd(&session(&at)?),
            Command::Pack(args) => oneshot::pack(&args, stores, p),
            Command::Convert(args) => crate::formats::convert(&args, stores, p),
            Command::Diff(args) => crate::diff::diff(&args, stores, p),
            Command::Extract(args) => oneshot::extract(&args, stores, p),
            Command::Inspect { flist, .. } => oneshot::inspect_with(&flist, p),
            Command::Verify(args) => oneshot::verify(&args, stores, p),
            Command::Derive(args) => crate::derive::derive(&args, stores),
            Command::CheckVm { flist } => crate::vm::check_vm(&flist, stores),
            Command::Sign { flist, key, name } => {
                crate::signing::sign(&flist, &key, name.as_deref())
            }
            Command::Mount(args) => crate::mount::mount(&args, stores, |mp| {
                eprintln!("zflist: mounted {} at {}", args.flist, mp.display())
            }),
            Command::Run(args) => {
                crate::run::run(&args, stores, &|m| eprintln!("zflist: run: {m}"))
            }
            Command::Vm(VmArgs {
                cmd: VmCommand::Boot(args),
            }) => crate::vmboot::boot(&args, stores, &|m| eprintln!("zflist: vm boot: {m}")),
            Command::Umount { mountpoint } => crate::mount::umount(&mountpoint),
            Command::Docker(args) => oneshot::docker(&args, stores, p),
            Command::Hub(args) => crate::hub_client::hub(&args.conn.with_env(), &args.cmd),
            Command::Push(args) => crate::push::push(&args, stores, p),
            Command::Completions { shell } => {
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut Cli::command(), "zflist", &mut script);
                Ok(Response::new(
                    json!({ "shell": shell.to_string() }),
                    String::from_utf8_lossy(&script).into_owned(),
                ))
            }
        }
    }
}

/// The command names (and `help`), from the definition.
fn command_names() -> Vec<String> {
    let mut names: Vec<String> = Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    names.push("help".into());
    names
}

/// Rewrites the reference form `zflist <temporary-point> <action> ...` into
/// `zflist <action> --mnt <temporary-point> ...`, moves a `--mnt DIR` given before the
/// action after it (it belongs to the session commands), and lower-cases the action.
pub fn normalise_args(mut args: Vec<OsString>) -> Vec<OsString> {
    let commands = command_names();
    let is_command = |s: &str| commands.iter().any(|c| c == s);
    let mut mnt: Vec<OsString> = Vec::new();
    let mut action = None;
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy().to_string();
        if a == "--mnt" && i + 1 < args.len() {
            mnt.push(args.remove(i));
            mnt.push(args.remove(i));
            continue;
        }
        if a.starts_with("--mnt=") {
            mnt.push(args.remove(i));
            continue;
        }
        if a == "--store" {
            i += 2;
            continue;
        }
        if a == "--" {
            break;
        }
        if a.starts_with('-') {
            i += 1;
            continue;
        }
        let lower = a.to_ascii_lowercase();
        if is_command(&lower) {
            args[i] = OsString::from(lower);
            action = Some(i);
        } else if i + 1 < args.len() {
            let next = args[i + 1].to_string_lossy().to_ascii_lowercase();
            if is_command(&next) {
                let point = args.remove(i);
                // `hub` and `push` use no temporary point: the reference form
                // `zflist <point> hub ...` ignores it
                if next != "hub" && next != "push" {
                    mnt.push(OsString::from("--mnt"));
                    mnt.push(point);
                }
                args[i] = OsString::from(next);
                action = Some(i);
            }
        }
        break;
    }
    let at = action.map_or(1, |a| a + 1);
    for (k, v) in mnt.into_iter().enumerate() {
        args.insert(at + k, v);
    }
    args
}
