//! `zflist`: build, inspect, edit and check flists.
//!
//! This binary only parses arguments, calls `zflist-core` and prints. Session commands use
//! the reference tool's syntax (`zflist [temporary-point] <action> ...`, or `ZFLIST_MNT`);
//! `ZFLIST_JSON=1` (or `--json`) prints the reference's JSON envelope, `ZFLIST_PROGRESS=1`
//! its progress lines; otherwise a progress bar is drawn when stderr is a terminal.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use zflist_core::hub_client::HubOptions;
use zflist_core::progress::{ProgressChoice, Reporter};
use zflist_core::{commands, oneshot, MetadataCmd, Progress, Response, Session, StoreConfig};

mod mount_args;

/// Build, inspect, edit, check, extract and publish flists.
///
/// One-shot commands work on .flist files (or http(s):// URLs of flists): pack, docker,
/// inspect, verify, extract. Session commands edit an flist in a temporary point
/// (--mnt DIR, ZFLIST_MNT, or the reference form `zflist <DIR> <command>`): open or init,
/// edit, then commit to a new flist.
#[derive(Parser, Debug)]
#[command(
    name = "zflist",
    version,
    about,
    long_about = None,
    after_help = "EXAMPLES:\n  zflist pack ./rootfs -o app.flist --store zdb://127.0.0.1:9900/ns\n  zflist inspect https://hub.example/alice/app.flist\n  zflist extract https://hub.example/alice/app.flist ./out\n  zflist --mnt /tmp/edit open app.flist && zflist --mnt /tmp/edit ls /\n\nENVIRONMENT:\n  ZFLIST_MNT       temporary point of session commands\n  ZFLIST_BACKEND   chunk store (URL or the reference's JSON backend object)\n  ZFLIST_JSON=1    print the reference JSON envelope\n  ZFLIST_PROGRESS=1  print the reference progress lines on stdout"
)]
struct Cli {
    /// Print the reference JSON envelope instead of text (same as ZFLIST_JSON=1); no
    /// progress bar.
    #[arg(long, global = true)]
    json: bool,
    /// Draw no progress bar (one is drawn on stderr when it is a terminal).
    #[arg(long, short = 'q', global = true)]
    quiet: bool,
    /// Chunk store URL: zdb://[:pw@]host[:port][/ns], redis://, dir:///path, http(s)://,
    /// s3://KEY:SECRET@host:port/bucket[?region=R] (s3s:// over TLS; credentials also from
    /// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY); repeat with RANGE=URL items (00-7f=zdb://a) for a router, or plain URLs (copies of one
    /// store, read in order). Overrides ZFLIST_BACKEND and, for reading, the flist's backend
    /// metadata.
    #[arg(long = "store", global = true, value_name = "URL")]
    stores: Vec<String>,
    /// Seconds a connection to a hub or chunk store may take before the next one is tried
    /// (default 3; $ZFLIST_CONNECT_TIMEOUT).
    #[arg(long, global = true, value_name = "SECS")]
    connect_timeout: Option<f64>,
    #[command(subcommand)]
    cmd: Cmd,
}

/// The temporary point of a session command.
#[derive(Args, Debug, Clone, Default)]
struct At {
    /// Temporary point holding the session (default: $ZFLIST_MNT; the reference form
    /// `zflist <DIR> <command>` also works).
    #[arg(long, value_name = "DIR")]
    mnt: Option<PathBuf>,
}

/// An flist file or the http(s):// URL of one (downloaded, checked against the hub's
/// `.md5` when offered).
const FLIST_HELP: &str = "The .flist file, or an http(s):// URL of one";

#[derive(Subcommand, Debug)]
enum Cmd {
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
    /// List every file and directory of the session.
    #[command(after_help = "EXAMPLES:\n  zflist --mnt /tmp/edit find")]
    Find {
        #[command(flatten)]
        at: At,
    },
    /// Show an entry's metadata (mode, owner, times, chunks).
    #[command(after_help = "EXAMPLES:\n  zflist --mnt /tmp/edit stat /bin/sh")]
    Stat {
        #[command(flatten)]
        at: At,
        /// Path inside the flist.
        path: String,
    },
    /// Print a file's contents (reads chunks from the store).
    #[command(after_help = "EXAMPLES:\n  zflist --mnt /tmp/edit cat /etc/os-release")]
    Cat {
        #[command(flatten)]
        at: At,
        /// File inside the flist.
        path: String,
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
    Pack {
        /// Directory, tar archive (plain, gzip, bzip2, xz or zstd), or `-` for stdin.
        source: String,
        /// The .flist file to write.
        #[arg(short, long, value_name = "FLIST")]
        output: PathBuf,
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// Restore an flist into a directory, downloading its contents.
    ///
    /// Reads chunks from --store, else ZFLIST_BACKEND, else the flist's own backend. The
    /// tree is built in a hidden sibling directory and renamed into place when complete:
    /// DIR never holds half a tree.
    #[command(
        after_help = "EXAMPLES:\n  zflist extract https://hub.example/alice/app.flist ./out\n  zflist extract app.flist ./out --store dir:///var/lib/chunks\n  zflist extract app.flist ./out --force     # replace ./out\n  zflist extract app.flist ./out --resume    # continue after a store error"
    )]
    Extract {
        #[arg(help = FLIST_HELP)]
        flist: PathBuf,
        #[command(flatten)]
        hubs: mount_args::HubsCli,
        /// Directory to create (must be absent or empty, unless --force).
        dir: PathBuf,
        /// Replace DIR if it exists (only once the new tree is complete).
        #[arg(long)]
        force: bool,
        /// Continue an extraction that stopped on a store error, fetching only what is
        /// missing.
        #[arg(long)]
        resume: bool,
    },
    /// Show an flist's tree (modes like `ls -l`), counts, sizes and metadata.
    #[command(
        after_help = "EXAMPLES:\n  zflist inspect app.flist\n  zflist inspect https://hub.example/alice/app.flist --json"
    )]
    Inspect {
        #[arg(help = FLIST_HELP)]
        flist: PathBuf,
        #[command(flatten)]
        hubs: mount_args::HubsCli,
    },
    /// Convert a Docker/OCI image (registry reference, `docker save` tarball or OCI layout)
    /// into an flist, without a Docker daemon.
    #[command(
        after_help = "EXAMPLES:\n  zflist docker alpine:3.20 -o alpine.flist --store zdb://127.0.0.1:9900/ns\n  zflist docker docker-archive:app.tar -o app.flist --store dir:///var/lib/chunks --no-backend\n  echo \"$TOKEN\" | zflist docker ghcr.io/me/app:1 -u me --password-stdin -o app.flist --store zdb://hub:9900/ns"
    )]
    Docker {
        /// `ubuntu:22.04`, `registry:5000/app@sha256:...`, `docker-archive:FILE`, `oci:DIR`.
        image: String,
        /// The .flist file to write.
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
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// Mount an flist (file or URL) read-only through FUSE, fetching chunks as they are
    /// read, until SIGINT/SIGTERM or `zflist umount`.
    Mount(mount_args::MountCli),
    /// Unmount a zflist mount, or clear a stale one whose process was killed.
    Umount { mountpoint: PathBuf },
    /// Check that every chunk of an .flist exists in the store (the session command
    /// `check` does the same for an open session); --deep also decodes each chunk.
    #[command(
        after_help = "EXAMPLES:\n  zflist verify app.flist                 # store from the flist's backend\n  zflist verify app.flist --store dir:///var/lib/chunks --deep\n  zflist verify https://hub.example/alice/app.flist"
    )]
    Verify {
        #[arg(help = FLIST_HELP)]
        flist: PathBuf,
        /// Also download and decode every chunk (both hashes checked).
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
    /// Talk to a hub, like the reference `zflist hub` (ZFLIST_HUB, ZFLIST_HUB_TOKEN,
    /// ZFLIST_HUB_USER).
    Hub(HubArgs),
    /// Pack a directory, archive, image or flist and publish it on a hub, uploading only
    /// the chunks the hub lacks (an interrupted push, run again, sends only the rest).
    Push(PushArgs),
}

/// Where the hub is and who talks to it.
#[derive(Args, Debug)]
struct HubConn {
    /// Hub base URL (default: $ZFLIST_HUB, else https://hub.grid.tf).
    #[arg(long = "hub", value_name = "URL")]
    hub_url: Option<String>,
    /// API token (default: $ZFLIST_HUB_TOKEN, else the one `hub login --token-stdin` stored).
    #[arg(long, value_name = "TOKEN", allow_hyphen_values = true)]
    token: Option<String>,
}

#[derive(Args, Debug)]
struct HubArgs {
    #[command(flatten)]
    conn: HubConn,
    #[command(subcommand)]
    cmd: HubCmd,
}

#[derive(Subcommand, Debug)]
enum HubCmd {
    /// Check the token; with --token-stdin, check the token read from stdin and store it
    /// (mode 0600) in $XDG_CONFIG_HOME/zflist/hub-tokens.json for this hub.
    Login {
        /// Read the token from stdin and store it.
        #[arg(long)]
        token_stdin: bool,
    },
    /// Forget the token stored for this hub.
    Logout,
    /// Print the user name the token authenticates.
    Username,
    /// Upload a .tar.gz (the hub builds the flist) or a .flist (its chunks must be on the hub).
    Upload { file: String },
    /// Copy <repo>/<file> of another repository into yours as <localname>.
    Promote { source: String, localname: String },
    /// Make <linkname> point to <source> in your repository.
    Symlink { source: String, linkname: String },
    /// Make <linkname> point to <sourcename> of <repository>.
    Crosslink {
        linkname: String,
        repository: String,
        sourcename: String,
    },
    /// Rename <source> to <newname>.
    Rename { source: String, newname: String },
    /// Delete an entry of your repository.
    Delete { source: String },
    /// Merge flists (`repo/name.flist`, first wins) into <target>.
    Merge {
        target: String,
        base: String,
        #[arg(required = true)]
        others: Vec<String>,
    },
    /// Print the target of <repository>/<linkname> (a symlink).
    Readlink { link: String },
    /// Print the target of <repository>/<linkname> (a taglink).
    Taglink { link: String },
    /// Add <name> -> <repository>/<target> to your tag <tagname>.
    Tag {
        tagname: String,
        name: String,
        repository: String,
        target: String,
    },
    /// Remove <name> -> <repository>/<target> from your tag <tagname>.
    Untag {
        tagname: String,
        name: String,
        repository: String,
        target: String,
    },
    /// Make <linkname> a taglink to <repository>'s tag <tagname>.
    Crosstag {
        linkname: String,
        repository: String,
        tagname: String,
    },
    /// Refresh an itsyou.online token (that service is gone: not supported).
    Refresh,
}

#[derive(Args, Debug)]
struct PushArgs {
    /// Directory, archive (or `-`), `docker://REF`, `oci:DIR`, `oci-archive:FILE`,
    /// `docker-archive:FILE`, or an existing .flist (chunks read from its backend/--store).
    source: String,
    #[command(flatten)]
    conn: HubConn,
    /// Name on the hub (default: from the source; `.flist` appended when missing).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Publish into this organisation's repository (sent as `active-user`; default:
    /// $ZFLIST_HUB_USER, else your own).
    #[arg(long, value_name = "ORG")]
    repo: Option<String>,
    /// Also keep the flist in this local file.
    #[arg(short, long, value_name = "FLIST")]
    output: Option<PathBuf>,
    /// Chunk uploads in flight.
    #[arg(long, default_value_t = zflist_core::push::DEFAULT_UPLOADS, value_name = "N")]
    uploads: usize,
    /// Platform to pick from a multi-platform image (default linux/amd64).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    /// Registry (`host[:port]`) to speak plain HTTP to (loopback ones always are).
    #[arg(long = "insecure-registry", value_name = "HOST")]
    insecure_registries: Vec<String>,
}

/// Which backend `pack`/`docker` record in the flist.
#[derive(Args, Debug, Clone, Default)]
struct BackendArgs {
    /// Record no backend metadata.
    #[arg(long, conflicts_with = "public_backend")]
    no_backend: bool,
    /// Record this store as the backend instead of --store (a zdb:// or http(s):// URL, or
    /// a JSON backend object); a password in it is never recorded.
    #[arg(long, value_name = "URL")]
    public_backend: Option<String>,
}

impl BackendArgs {
    fn choice(self) -> zflist_core::backend::RecordBackend {
        use zflist_core::backend::RecordBackend;
        match (self.no_backend, self.public_backend) {
            (true, _) => RecordBackend::Nothing,
            (false, Some(u)) => RecordBackend::Public(u),
            (false, None) => RecordBackend::Store,
        }
    }
}

#[derive(Args, Debug)]
struct MetadataArgs {
    #[command(flatten)]
    at: At,
    #[command(subcommand)]
    action: Option<MetaAction>,
}

#[derive(Subcommand, Debug)]
enum MetaAction {
    /// Where readers download chunks from (public: anyone with the flist reads it, so
    /// never put write credentials here). Without options: print it.
    Backend {
        /// 0-db host (default hub.grid.tf).
        #[arg(long)]
        host: Option<String>,
        /// 0-db port (default 9900).
        #[arg(long)]
        port: Option<u16>,
        /// 0-db unix socket path (instead of host and port).
        #[arg(long)]
        socket: Option<String>,
        /// 0-db namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Namespace password for reading (visible to anyone with the flist).
        #[arg(long)]
        password: Option<String>,
        /// Remove the backend.
        #[arg(long)]
        reset: bool,
    },
    /// Command to start: `--entrypoint "CMD ARGS"` (split like a shell does) or `-- CMD
    /// ARGS...`. Without arguments: print it.
    Entrypoint {
        /// Remove the entrypoint.
        #[arg(long)]
        reset: bool,
        /// The command line as one string, split into arguments like a shell does
        /// ('single' and "double" quotes, backslash escapes).
        #[arg(
            long = "entrypoint",
            value_name = "COMMAND LINE",
            conflicts_with = "argv"
        )]
        line: Option<String>,
        /// The command and its arguments (put `--` before them).
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGV"
        )]
        argv: Vec<String>,
    },
    /// Environment variables. Without options: print them.
    Environ {
        /// Variable name.
        #[arg(long)]
        name: Option<String>,
        /// Its value.
        #[arg(long)]
        value: Option<String>,
        /// Remove the variable --name.
        #[arg(long)]
        unset: bool,
        /// Remove all variables.
        #[arg(long)]
        reset: bool,
    },
    /// Exposed ports: `--in P [--out Q]` gives `{"<protocol>/P": Q}`. Without options:
    /// print them.
    Port {
        /// Protocol (tcp or udp).
        #[arg(long, default_value = "tcp")]
        protocol: String,
        /// Incoming port (alias --host).
        #[arg(long = "in", alias = "host")]
        port_in: Option<u32>,
        /// Where it is redirected (alias --container; default: the same).
        #[arg(long = "out", alias = "container")]
        port_out: Option<u32>,
        /// Remove the port --in.
        #[arg(long)]
        unset: bool,
        /// Remove all ports.
        #[arg(long)]
        reset: bool,
    },
    /// Volumes to mount. Without options: print them.
    Volume {
        /// Mount point inside the container.
        #[arg(long)]
        target: Option<String>,
        /// Host path to mount there.
        #[arg(long)]
        host: Option<String>,
        /// Remove the volume --target.
        #[arg(long)]
        unset: bool,
        /// Remove all volumes.
        #[arg(long)]
        reset: bool,
    },
    /// Readme text and license. Without options: print them.
    Readme {
        /// File whose content becomes the readme.
        #[arg(long)]
        import: Option<PathBuf>,
        /// License name (e.g. Apache-2.0).
        #[arg(long)]
        license: Option<String>,
        /// Remove the readme.
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
    "inspect", "verify", "docker", "hub", "push", "help", "mount", "umount", "derive", "check-vm",
    "sign",
];

/// Rewrites the reference form `zflist <temporary-point> <action> ...` into
/// `zflist <action> --mnt <temporary-point> ...`, moves a `--mnt DIR` given before the
/// action after it (it belongs to the session commands), and lower-cases the action.
fn normalise_args(mut args: Vec<OsString>) -> Vec<OsString> {
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
        if COMMANDS.contains(&lower.as_str()) {
            args[i] = OsString::from(lower);
            action = Some(i);
        } else if i + 1 < args.len() {
            let next = args[i + 1].to_string_lossy().to_ascii_lowercase();
            if COMMANDS.contains(&next.as_str()) {
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

fn command_name(cmd: &Cmd) -> &'static str {
    match cmd {
        Cmd::Open { .. } => "open",
        Cmd::Init { .. } => "init",
        Cmd::Close { .. } => "close",
        Cmd::Commit { .. } => "commit",
        Cmd::Ls { .. } => "ls",
        Cmd::Find { .. } => "find",
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
        Cmd::Check { .. } => "check",
        Cmd::Chunks { .. } => "chunks",
        Cmd::Pack { .. } => "pack",
        Cmd::Extract { .. } => "extract",
        Cmd::Inspect { .. } => "inspect",
        Cmd::Verify { .. } => "verify",
        Cmd::Docker { .. } => "docker",
        Cmd::Hub(_) => "hub",
        Cmd::Push(_) => "push",
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
        Some(MetaAction::Entrypoint {
            reset: false,
            line: None,
            argv,
        }) if argv.is_empty() => MetadataCmd::Get("entrypoint".into()),
        Some(MetaAction::Entrypoint { reset, line, argv }) => {
            let argv = match line {
                Some(l) => zflist_core::metadata::split_command_line(&l)
                    .map_err(|e| usage(&format!("--entrypoint: {e}")))?,
                None => argv,
            };
            MetadataCmd::Entrypoint { argv, reset }
        }
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
    let reporter = Reporter::new(ProgressChoice::detect(
        env_is_one("ZFLIST_PROGRESS"),
        json,
        cli.quiet,
    ));
    let stores = StoreConfig {
        stores: cli.stores.clone(),
        backend_env: std::env::var("ZFLIST_BACKEND")
            .ok()
            .filter(|s| !s.trim().is_empty()),
    };
    let function = command_name(&cli.cmd);
    if let Err(e) = configure_failover(&cli.cmd, cli.connect_timeout) {
        return finish(json, function, Err(zflist_core::Error::usage(function, e)));
    }
    let result = run(cli.cmd, &stores, &reporter);
    reporter.finish("");
    finish(json, function, result)
}

/// The temporary point of a session command: `--mnt`, else `ZFLIST_MNT`.
fn session_of(function: &str, at: &At) -> zflist_core::Result<Session> {
    at.mnt
        .clone()
        .or_else(|| {
            std::env::var_os("ZFLIST_MNT")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        })
        .map(Session::new)
        .ok_or_else(|| zflist_core::Error::new(function, zflist_core::ErrorKind::NoMountpoint))
}

fn run(cmd: Cmd, stores: &StoreConfig, p: &Reporter) -> zflist_core::Result<Response> {
    let function = command_name(&cmd);
    let session = |at: &At| session_of(function, at);
    let empty = |r: zflist_core::Result<()>| r.map(|()| Response::empty());
    match cmd {
        Cmd::Open { at, file } => empty(session(&at)?.open(&file)),
        Cmd::Init { at } => empty(session(&at)?.init()),
        Cmd::Close { at } => empty(session(&at)?.close()),
        Cmd::Commit { at, file } => empty(session(&at)?.commit(&file)),
        Cmd::Ls { at, path } => commands::ls(&session(&at)?, path.as_deref().unwrap_or("/")),
        Cmd::Find { at } => commands::find(&session(&at)?),
        Cmd::Stat { at, path } => commands::stat(&session(&at)?, &path),
        Cmd::Cat { at, path } => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            commands::cat(&session(&at)?, stores, &path, &mut out)
        }
        Cmd::Get { at, path, dest } => commands::get(&session(&at)?, stores, &path, &dest, p),
        Cmd::Put { at, local, target } => commands::put(&session(&at)?, stores, &local, &target, p),
        Cmd::Putdir { at, local, target } => {
            commands::putdir(&session(&at)?, stores, &local, &target, p)
        }
        Cmd::Chmod { at, mode, path } => commands::chmod(&session(&at)?, &mode, &path),
        Cmd::Rm { at, path } => commands::rm(&session(&at)?, &path),
        Cmd::Rmdir { at, path } => commands::rmdir(&session(&at)?, &path),
        Cmd::Mkdir { at, path } => commands::mkdir(&session(&at)?, &path),
        Cmd::Metadata(args) => {
            let s = session(&args.at)?;
            zflist_core::metadata::metadata(&s, &metadata_cmd(args)?)
        }
        Cmd::Merge { at, file } => commands::merge(&session(&at)?, &file),
        Cmd::Check { at } => commands::check(&session(&at)?, stores, p),
        Cmd::Chunks { at } => commands::chunks_cmd(&session(&at)?),
        Cmd::Pack {
            source,
            output,
            backend,
        } => {
            let args = oneshot::PackArgs {
                backend: backend.choice(),
            };
            oneshot::pack_with(&source, &output, stores, &args, p)
        }
        Cmd::Extract {
            flist,
            dir,
            force,
            resume,
            ..
        } => {
            let args = oneshot::ExtractArgs { force, resume };
            oneshot::extract_with(&flist, &dir, stores, &args, p)
        }
        Cmd::Inspect { flist, .. } => oneshot::inspect_with(&flist, p),
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
            backend,
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
                backend: backend.choice(),
            };
            oneshot::docker(&image, &output, stores, &args, p)
        }
        Cmd::Hub(args) => hub_cmd(args),
        Cmd::Push(args) => {
            let mut hub = hub_options(args.conn);
            if args.repo.is_some() {
                hub.user = args.repo;
            }
            let push = zflist_core::push::PushArgs {
                name: args.name,
                output: args.output,
                uploads: args.uploads,
                docker: oneshot::DockerArgs {
                    platform: args.platform,
                    insecure_registries: args.insecure_registries,
                    cache_dir: default_cache_dir(),
                    ..Default::default()
                },
            };
            zflist_core::push::push(&args.source, &hub, stores, &push, p)
        }
    }
}

/// Flags, then ZFLIST_HUB / ZFLIST_HUB_TOKEN / ZFLIST_HUB_USER.
/// The hubs reads fail over between (`--hub` of extract/inspect/mount, else `ZFLIST_HUB`)
/// and the connect timeout (`--connect-timeout`, else `ZFLIST_CONNECT_TIMEOUT`).
fn configure_failover(cmd: &Cmd, timeout: Option<f64>) -> Result<(), String> {
    let hubs: &[String] = match cmd {
        Cmd::Extract { hubs, .. } | Cmd::Inspect { hubs, .. } => &hubs.hubs,
        Cmd::Mount(m) => &m.hubs.hubs,
        _ => &[],
    };
    let timeout =
        match timeout {
            Some(t) => Some(t),
            None => match std::env::var("ZFLIST_CONNECT_TIMEOUT") {
                Ok(v) if !v.trim().is_empty() => Some(v.trim().parse().map_err(|_| {
                    format!("ZFLIST_CONNECT_TIMEOUT={v:?} is not a number of seconds")
                })?),
                _ => None,
            },
        };
    let env = std::env::var("ZFLIST_HUB").ok();
    let f = zflist_core::failover::Failover::from_args(hubs, env.as_deref(), timeout)?;
    zflist_core::failover::configure(f);
    Ok(())
}

fn hub_options(conn: HubConn) -> HubOptions {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    // `ZFLIST_HUB` may list mirrors (comma-separated): the hub commands talk to the first.
    let first_hub = env("ZFLIST_HUB").and_then(|v| {
        v.split(',')
            .map(str::trim)
            .find(|h| !h.is_empty())
            .map(str::to_string)
    });
    HubOptions {
        hub: conn.hub_url.or(first_hub),
        token: conn.token.or_else(|| env("ZFLIST_HUB_TOKEN")),
        user: env("ZFLIST_HUB_USER"),
        config_dir: None,
    }
}

fn hub_cmd(args: HubArgs) -> zflist_core::Result<Response> {
    use zflist_core::hub_client::HubCommand as H;
    let opts = hub_options(args.conn);
    let cmd = match args.cmd {
        HubCmd::Login { token_stdin } => H::Login {
            store_token: if token_stdin {
                Some(read_secret_line("hub", "the token")?)
            } else {
                None
            },
        },
        HubCmd::Logout => H::Logout,
        HubCmd::Username => H::Username,
        HubCmd::Upload { file } => H::Upload { file },
        HubCmd::Promote { source, localname } => H::Promote { source, localname },
        HubCmd::Symlink { source, linkname } => H::Symlink { source, linkname },
        HubCmd::Crosslink {
            linkname,
            repository,
            sourcename,
        } => H::Crosslink {
            linkname,
            repository,
            sourcename,
        },
        HubCmd::Rename { source, newname } => H::Rename { source, newname },
        HubCmd::Delete { source } => H::Delete { source },
        HubCmd::Merge {
            target,
            base,
            others,
        } => H::Merge {
            target,
            sources: std::iter::once(base).chain(others).collect(),
        },
        HubCmd::Readlink { link } => H::Readlink { link },
        HubCmd::Taglink { link } => H::Taglink { link },
        HubCmd::Tag {
            tagname,
            name,
            repository,
            target,
        } => H::Tag {
            tag: tagname,
            name,
            repository,
            target,
        },
        HubCmd::Untag {
            tagname,
            name,
            repository,
            target,
        } => H::Untag {
            tag: tagname,
            name,
            repository,
            target,
        },
        HubCmd::Crosstag {
            linkname,
            repository,
            tagname,
        } => H::Crosstag {
            linkname,
            repository,
            tag: tagname,
        },
        HubCmd::Refresh => H::Refresh,
    };
    zflist_core::hub_client::hub(&opts, &cmd)
}

/// The first line of stdin, without its line ending; an error when empty.
fn read_secret_line(function: &str, what: &str) -> zflist_core::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| {
        zflist_core::Error::usage(function, format!("reading {what} from stdin: {e}"))
    })?;
    let v = line.trim().to_string();
    if v.is_empty() {
        return Err(zflist_core::Error::usage(
            function,
            format!("no {what} on stdin"),
        ));
    }
    Ok(v)
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
