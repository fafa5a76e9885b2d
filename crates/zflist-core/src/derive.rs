//! `derive BASE -o NEW --set /path=@file|content --rm /path`: a new flist sharing the base's
//! chunks, with only the set files' chunks written to the store.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use flist_convert::derive::{derive_from_flist, Change};
use flist_mount::Override;
use serde_json::json;

use crate::backend::{open_store, StoreConfig};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::mount::{load_flist_bytes, parse_flist};
use crate::response::Response;

/// `zflist derive BASE -o NEW --set /path=@file|content --rm /path`
#[derive(clap::Args, Clone, Debug, Default)]
pub struct DeriveArgs {
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

/// `derive`: writes the new flist atomically; the base's metadata (backend, entrypoint...)
/// is kept.
pub fn derive(args: &DeriveArgs, stores: &StoreConfig) -> Result<Response> {
    let f = "derive";
    if args.set.is_empty() && args.remove.is_empty() {
        return Err(Error::usage(f, "nothing to change: give --set and/or --rm"));
    }
    let bytes = load_flist_bytes(f, &args.base)?;
    let base = parse_flist(f, &bytes, &args.base)?;
    let mut changes: Vec<Change> = args
        .remove
        .iter()
        .map(|p| Change::Remove { path: p.clone() })
        .collect();
    for s in &args.set {
        let o = Override::parse(s).ctx(f)?;
        changes.push(Change::Set {
            path: o.path,
            content: o.content,
        });
    }
    let url = stores.require_write_url(f)?;
    let store = open_store(&url).map_err(|e| Error::new(f, e))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0);
    // The output's format: its extension, else the base's (told from its chunks).
    let format = flist_format::Format::from_path(&args.output).unwrap_or_else(|| {
        if base.codecs().contains(&flist_format::Codec::Rfs) || !base.metadata.routes.is_empty() {
            flist_format::Format::Fl
        } else {
            flist_format::Format::Flist
        }
    });
    let opts = flist_convert::ConvertOptions {
        codec: format.codec(),
        ..Default::default()
    };
    let convert_err = |e: String| Error::new(f, ErrorKind::Convert(e));
    let (derived, stats) =
        derive_from_flist(&base, &changes, &store, now, &opts, Some(format.codec()))
            .map_err(|e| convert_err(e.to_string()))?;
    derived
        .write_flist(&args.output)
        .map_err(|e| convert_err(e.to_string()))?;
    let json = json!({
        "base": args.base,
        "output": args.output.display().to_string(),
        "files_set": stats.files_set,
        "removed": stats.removed,
        "chunks_written": stats.chunks_written,
        "chunks_present": stats.chunks_present,
        "bytes": stats.bytes,
    });
    let text = format!(
        "{}: {} file(s) set, {} removed; {} chunk(s) written, {} already in the store\n",
        args.output.display(),
        stats.files_set,
        stats.removed,
        stats.chunks_written,
        stats.chunks_present
    );
    Ok(Response::new(json, text))
}
