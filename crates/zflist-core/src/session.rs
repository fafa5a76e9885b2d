//! The editing session: an flist's catalog database unpacked in a temporary point
//! (`<mnt>/flistdb.sqlite3`, like the reference), loaded for each command and rewritten
//! atomically after each edit. A session opened from an rfs `.fl` holds the `.fl`
//! database itself (same file name): it keeps its format, so new files get rfs blocks.

use std::path::{Path, PathBuf};

use flist_format::{Format, Meta, Tree};

use crate::error::{Context, Error, ErrorKind, Result};
use flist_format::Flist;

/// File name of the session database inside the temporary point.
pub const SESSION_DB: &str = "flistdb.sqlite3";

/// `--mnt DIR`: the temporary point of a session command.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct At {
    /// Temporary point holding the session (default: $ZFLIST_MNT; the reference form
    /// `zflist <DIR> <command>` also works).
    #[arg(long, value_name = "DIR")]
    pub mnt: Option<PathBuf>,
}

impl At {
    /// The session: `--mnt`, else `ZFLIST_MNT`, else an error naming `function`.
    pub fn session(&self, function: &str) -> Result<Session> {
        self.mnt
            .clone()
            .or_else(|| {
                std::env::var_os("ZFLIST_MNT")
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
            })
            .map(Session::new)
            .ok_or_else(|| Error::new(function, ErrorKind::NoMountpoint))
    }
}

/// A temporary point.
#[derive(Clone, Debug)]
pub struct Session {
    mnt: PathBuf,
}

/// Seconds since the epoch, clamped to the format's u32.
pub(crate) fn now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

impl Session {
    /// The session in temporary point `mnt`.
    pub fn new(mnt: impl Into<PathBuf>) -> Self {
        Session { mnt: mnt.into() }
    }

    /// The temporary point.
    pub fn mountpoint(&self) -> &Path {
        &self.mnt
    }

    /// Path of the session database.
    pub fn db_path(&self) -> PathBuf {
        self.mnt.join(SESSION_DB)
    }

    /// True when an flist is open here.
    pub fn is_open(&self) -> bool {
        self.db_path().is_file()
    }

    fn prepare_new(&self, function: &str) -> Result<()> {
        if self.is_open() {
            return Err(Error::new(
                function,
                ErrorKind::SessionExists(self.mnt.display().to_string()),
            ));
        }
        std::fs::create_dir_all(&self.mnt)
            .map_err(|e| Error::io(function, "creating the temporary point", &self.mnt, e))
    }

    /// `init`: a new session holding an empty root directory (root:root 0755).
    pub fn init(&self) -> Result<()> {
        self.prepare_new("init")?;
        let flist = Flist {
            tree: Tree::new(Meta::root(0o755, now())),
            metadata: Default::default(),
        };
        self.save_as("init", &flist, Format::Flist)
    }

    /// `open`: a new session holding the flist at `path`.
    pub fn open(&self, path: &Path) -> Result<()> {
        self.prepare_new("open")?;
        let arg = crate::remote::resolve("open", path, &crate::response::NoProgress)?;
        let flist = Flist::open(arg.path()).ctx("open")?;
        let format = Format::of_file(arg.path()).ctx("open")?;
        self.save_as("open", &flist, format)
    }

    /// The format of the open session (that of the flist it was opened from).
    pub fn format(&self, function: &str) -> Result<Format> {
        if !self.is_open() {
            return Err(Error::new(
                function,
                ErrorKind::NoSession(self.mnt.display().to_string()),
            ));
        }
        Format::of_file(self.db_path()).ctx(function)
    }

    /// `close`: discards the session.
    pub fn close(&self) -> Result<()> {
        let db = self.db_path();
        if !db.is_file() {
            return Err(Error::new(
                "close",
                ErrorKind::NoSession(self.mnt.display().to_string()),
            ));
        }
        std::fs::remove_file(&db).map_err(|e| Error::io("close", "removing", &db, e))
    }

    /// Loads the session for command `function`.
    pub fn load(&self, function: &str) -> Result<Flist> {
        if !self.is_open() {
            return Err(Error::new(
                function,
                ErrorKind::NoSession(self.mnt.display().to_string()),
            ));
        }
        Flist::from_sqlite(self.db_path()).ctx(function)
    }

    /// Rewrites the session database atomically, in the session's format.
    pub fn save(&self, function: &str, flist: &Flist) -> Result<()> {
        let format = self.format(function)?;
        self.save_as(function, flist, format)
    }

    fn save_as(&self, function: &str, flist: &Flist, format: Format) -> Result<()> {
        match format {
            Format::Flist => flist.write_sqlite(self.db_path()).ctx(function),
            Format::Fl => flist.write_fl(self.db_path()).ctx(function),
        }
    }

    /// `commit`: writes the session as a new flist at `out` (the session stays open), in
    /// the format `out`'s extension names (`.fl` or `.flist`), else the session's. Chunks of
    /// the other format cannot be written: `zflist convert` re-encodes them.
    pub fn commit(&self, out: &Path) -> Result<()> {
        let flist = self.load("commit")?;
        let format = match Format::from_path(out) {
            Some(f) => f,
            None => self.format("commit")?,
        };
        flist.write_as(out, format).ctx("commit")
    }
}
