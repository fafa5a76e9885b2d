//! Arguments of `zflist mount` (kept apart from the other commands' definitions).

use std::path::PathBuf;

use clap::Args;

/// `--hub URL` (repeated) of the commands that read flists and chunks.
#[derive(Args, Debug, Default)]
pub struct HubsCli {
    /// A hub or mirror to fail over to, in order (repeat, or a comma list; default
    /// $ZFLIST_HUB): an flist URL is also fetched under the same path from the others, and
    /// chunks from their /chunks/ when the flist's backend cannot be reached.
    #[arg(long = "hub", value_name = "URL")]
    pub hubs: Vec<String>,
}

/// `zflist mount <FLIST|URL> <MOUNTPOINT> ...`
#[derive(Args, Debug)]
pub struct MountCli {
    /// `.flist` file or `http(s)://` URL of one (e.g. `http://hub/repo/name.flist`).
    pub flist: String,
    #[command(flatten)]
    pub hubs: HubsCli,
    /// Directory to mount on.
    pub mountpoint: PathBuf,
    /// Chunk cache directory, shared by mounts (default: $XDG_CACHE_HOME/zflist/chunks).
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache: Option<PathBuf>,
    /// Do not cache chunks on disk.
    #[arg(long)]
    pub no_cache: bool,
    /// Bound of the chunk cache (e.g. 512M, 4G; default 4G); least recently used chunks go.
    #[arg(long, value_name = "SIZE")]
    pub cache_size: Option<String>,
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
}

/// `zflist derive BASE -o NEW --set /path=@file|content --rm /path`
#[derive(Args, Debug)]
pub struct DeriveCli {
    /// Base `.flist` file or URL.
    pub base: String,
    /// The new flist.
    #[arg(short, long, value_name = "FLIST")]
    pub output: PathBuf,
    /// Set a file: `/path=@local-file` or `/path=content` (repeatable).
    #[arg(long = "set", value_name = "/PATH=@FILE|CONTENT")]
    pub set: Vec<String>,
    /// Remove an entry (repeatable).
    #[arg(long = "rm", value_name = "/PATH")]
    pub remove: Vec<String>,
}

impl DeriveCli {
    /// The core arguments.
    pub fn into_args(self) -> zflist_core::derive::DeriveArgs {
        zflist_core::derive::DeriveArgs {
            base: self.base,
            output: self.output,
            set: self.set,
            remove: self.remove,
        }
    }
}

/// Signature options of `zflist verify`.
#[derive(Args, Debug)]
pub struct SignatureCli {
    /// Check `<FLIST>.sig` instead of the chunks: the bytes and name must be the signed ones.
    #[arg(long)]
    pub signature: bool,
    /// Trusted public key (base64, or a file holding it).
    #[arg(
        long,
        value_name = "KEY",
        requires = "signature",
        conflicts_with = "hub"
    )]
    pub key: Option<String>,
    /// Trust the key the hub publishes at URL/api/signing-key.
    #[arg(long, value_name = "URL", requires = "signature")]
    pub hub: Option<String>,
    /// The `repo/name.flist` the flist must be signed as (default: from its URL, or its
    /// file name).
    #[arg(long, value_name = "REPO/NAME", requires = "signature")]
    pub name: Option<String>,
}

impl MountCli {
    /// The core arguments, with the default cache directory filled in.
    pub fn into_args(self, default_cache: Option<PathBuf>) -> zflist_core::mount::MountArgs {
        zflist_core::mount::MountArgs {
            flist: self.flist,
            mountpoint: self.mountpoint,
            cache_dir: if self.no_cache {
                None
            } else {
                self.cache.or(default_cache)
            },
            cache_size: self.cache_size,
            allow_other: self.allow_other,
            overrides: self.overrides,
            require_signature: self.require_signature,
        }
    }
}
