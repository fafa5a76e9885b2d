//! The zflist command implementations: the reference tool's editing session (`open`,
//! `init`, `ls`, `find`, `stat`, `cat`, `get`, `put`, `putdir`, `chmod`, `rm`, `rmdir`,
//! `mkdir`, `metadata`, `merge`, `check`, `chunks`, `commit`, `close`) and the one-shot
//! commands (`pack`, `extract`, `inspect`, `verify`).
//!
//! Every command returns a [`Response`] (JSON data for the `ZFLIST_JSON=1` envelope plus its
//! text rendering) or an [`Error`] naming the command ("function") and what failed. The
//! `zflist` binary only parses arguments, calls these functions and prints; see
//! `REFERENCE.md` for the reference tool's syntax and output shapes.
//!
//! # Example
//! ```
//! use zflist_core::{commands, Session};
//!
//! let mnt = tempfile::tempdir().unwrap();
//! let session = Session::new(mnt.path());
//! session.init().unwrap();
//! commands::mkdir(&session, "/etc").unwrap();
//! let listing = commands::find(&session).unwrap();
//! assert_eq!(listing.json["content"][0]["path"], "/etc");
//! assert_eq!(listing.json["directory"], 1);
//! ```

#![warn(missing_docs)]

pub mod backend;
pub mod chunks;
pub mod cli;
pub mod commands;
pub mod convert;
pub mod derive;
pub mod diff;
pub mod dirs;
pub mod display;
pub mod error;
pub mod failover;
pub mod formats;
pub mod hub_client;
pub mod local;
pub mod metadata;
pub mod mount;
pub mod oneshot;
pub mod progress;
pub mod push;
pub mod remote;
pub mod response;
pub mod run;
pub mod session;
pub mod signing;
pub mod vm;
pub mod vmboot;

pub use backend::StoreConfig;
pub use error::{Error, ErrorKind, Result};
pub use metadata::MetadataCmd;
pub use response::{envelope, progress_line, NoProgress, Progress, Response};
pub use session::Session;

/// The argument with which `zflist run` starts the `zflist` program again as a container's
/// init: the binary calls [`container_init`] when it sees it first.
pub const INIT_ARG: &str = flist_run::container::INIT_ARG;

/// Sets up the container `zflist run` described and becomes its entrypoint (never returns;
/// see [`flist_run::container::init_main`]).
pub fn container_init() -> ! {
    flist_run::container::init_main()
}
