//! The two flist formats on the command line: `--format`, the format of an output path,
//! where each records its chunk store, and `zflist convert IN OUT` between them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use flist_format::{Flist, Format, Metadata};
use flist_store::StoreUrl;
use serde_json::json;

use crate::backend::{open_store, BackendArgs, StoreConfig};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::response::{Progress, Response};

/// `--format`: which flist format to write.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatArg {
    /// `.flist`: the ZOS flist (0-flist chunks), read by ZOS nodes, 0-fs and the
    /// reference `zflist`.
    Flist,
    /// `.fl`: the rfs flist (rfs blocks), read by `rfs`.
    Fl,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Flist => Format::Flist,
            FormatArg::Fl => Format::Fl,
        }
    }
}

/// The format to write at `out`: `--format` when given, else the extension (`.fl`), else
/// `.flist`.
pub fn output_format(arg: Option<FormatArg>, out: &Path) -> Format {
    arg.map(Format::from)
        .or_else(|| Format::from_path(out))
        .unwrap_or(Format::Flist)
}

/// Records where the chunks of an flist in `format` are, for chunks written to `store`:
/// the `backend` of an `.flist` (see [`crate::backend::recorded_backend`]), the route table
/// of an `.fl` (the store, or `--public-backend`, without password; `dir://` included,
/// as rfs records it). Returns what was recorded, for the user, or a note.
pub fn record_location(
    function: &str,
    format: Format,
    choice: &BackendArgs,
    store: &StoreUrl,
    metadata: &mut Metadata,
) -> Result<(Option<String>, Option<String>)> {
    match format {
        Format::Flist => {
            metadata.routes.clear();
            let (backend, note) = crate::backend::recorded_backend(function, choice, store)?;
            metadata.remove(flist_format::metadata::KEY_BACKEND);
            if let Some(b) = &backend {
                metadata.set_backend(b);
            }
            Ok((backend.map(|b| format!("backend: {b}")), note))
        }
        Format::Fl => {
            // The route table says where the blocks are; a `backend` tag would be stale.
            metadata.remove(flist_format::metadata::KEY_BACKEND);
            if choice.no_backend {
                metadata.routes.clear();
                return Ok((None, None));
            }
            let url = match &choice.public_backend {
                Some(s) => crate::backend::parse_backend_value(s)
                    .map_err(|e| Error::usage(function, format!("--public-backend: {e}")))?,
                None => store.clone(),
            };
            metadata.routes = flist_convert::backend::public_routes(&url);
            let text = metadata
                .routes
                .iter()
                .map(|r| format!("{:02x}-{:02x}={}", r.start, r.end, r.url))
                .collect::<Vec<_>>()
                .join(", ");
            Ok((Some(format!("routes: {text}")), None))
        }
    }
}

/// `zflist convert IN OUT`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ConvertArgs {
    /// The flist to convert: an .flist or .fl file, or an http(s):// URL of one.
    pub input: String,
    /// The flist to write; its format is told by its extension (.fl or .flist) unless
    /// --format is given.
    pub output: PathBuf,
    /// Format to write (default: from OUT's extension).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Store to read IN's chunks from (default: IN's routes or backend, or ZFLIST_BACKEND).
    #[arg(long, value_name = "URL")]
    pub from_store: Vec<String>,
    /// Which backend or routes OUT records (default: the --store the blocks went to).
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// `convert IN OUT [--store URL]`: re-encodes every chunk of IN into OUT's codec, into
/// `--store` (default: the store IN is read from), and writes OUT (atomically) with the
/// same tree and metadata; what OUT's format cannot record is listed.
pub fn convert(
    args: &ConvertArgs,
    stores: &StoreConfig,
    progress: &dyn Progress,
) -> Result<Response> {
    let f = "convert";
    let out = args.output.as_path();
    let format = output_format(args.format, out);
    let arg = crate::remote::resolve(f, Path::new(&args.input), progress)?;
    let src = Flist::open(arg.path()).ctx(f)?;
    // Reading: --from-store, else the flist's own routes/backend, else ZFLIST_BACKEND.
    let read_cfg = StoreConfig {
        stores: args.from_store.clone(),
        backend_env: None,
    };
    let from_url = match read_cfg
        .read_url(&src.metadata)
        .map_err(|e| Error::new(f, e))?
    {
        Some(u) => u,
        None => stores
            .write_url()
            .map_err(|e| Error::new(f, e))?
            .ok_or_else(|| {
                Error::new(
                    f,
                    ErrorKind::NoStore(
                        "give --from-store URL (the flist has no backend metadata or routes)"
                            .into(),
                    ),
                )
            })?,
    };
    // Writing: --store / ZFLIST_BACKEND, else the store IN is read from.
    let to_url = stores
        .write_url()
        .map_err(|e| Error::new(f, e))?
        .unwrap_or_else(|| from_url.clone());
    let from = open_store(&from_url).map_err(|e| Error::new(f, e))?;
    let to = if to_url == from_url {
        from.clone()
    } else {
        open_store(&to_url).map_err(|e| Error::new(f, e))?
    };
    if !to.store().is_writable() {
        return Err(Error::new(
            f,
            ErrorKind::NoStore(format!(
                "{to_url} is read-only: give --store URL for the re-encoded chunks"
            )),
        ));
    }
    let losses = src.losses(format);
    let opts = flist_convert::ReencodeOptions {
        codec: format.codec(),
        ..Default::default()
    };
    let total: u64 = src.tree.stats().fullsize;
    let (tree, stats) = crate::convert::with_reencode_progress(progress, total, opts, |o| {
        flist_convert::reencode(&src.tree, &from, &to, &o)
    })
    .map_err(|e| Error::new(f, ErrorKind::Convert(e.to_string())))?;
    let mut metadata = src.metadata.clone();
    let (recorded, note) = record_location(f, format, &args.backend, &to_url, &mut metadata)?;
    let result = Flist { tree, metadata };
    result.write_as(out, format).ctx(f)?;

    let json = json!({
        "input": args.input,
        "output": out.display().to_string(),
        "format": format.extension(),
        "store": to_url.to_string(),
        "chunks": stats.chunks,
        "bytes": stats.bytes,
        "chunks_written": stats.chunks_written,
        "chunks_present": stats.chunks_present,
        "chunks_kept": stats.chunks_kept,
        "recorded": recorded,
        "not_carried": losses.iter().map(|l| json!({
            "what": l.what, "count": l.count, "example": l.example,
        })).collect::<Vec<_>>(),
    });
    let mut text = format!(
        "{} ({}): {} chunks ({} bytes) re-encoded into {}: {} written, {} already there\n",
        out.display(),
        format,
        stats.chunks,
        stats.bytes,
        to_url,
        stats.chunks_written,
        stats.chunks_present,
    );
    if let Some(r) = &recorded {
        let _ = writeln!(text, "{r}");
    }
    let mut notes: Vec<String> = note.iter().map(|n| format!("note: {n}")).collect();
    for l in &losses {
        notes.push(format!("warning: not carried by {format}: {l}"));
    }
    Ok(Response::new(json, text).with_notes(notes))
}
