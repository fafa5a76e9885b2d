//! `zflist diff A B`: what differs between two flists (`.flist` or `.fl`, files or URLs).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use flist_format::tree::{diff as tree_diff, DiffOptions};
use flist_format::{Flist, Kind};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::backend::StoreConfig;
use crate::error::{Context, Error, ErrorKind, Result};
use crate::response::{NoProgress, Progress, Response};

/// `zflist diff`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct DiffArgs {
    /// The first flist (.flist or .fl, file or http(s):// URL).
    pub a: String,
    /// The second flist.
    pub b: String,
    /// Also compare the bytes of every file present in both (read from the stores: each
    /// flist's own routes or backend, else --store): needed when the two use different
    /// formats, whose chunk keys cannot be compared.
    #[arg(long)]
    pub content: bool,
}

/// `diff A B`: entries only in one, and differences of kind, mode, owner, times, size,
/// link target and content. Without `--content`, content is compared by chunk keys when
/// both flists use the same format; otherwise it is reported as not compared. Owner names
/// and the order of directory entries are not compared (`.fl` records neither).
pub fn diff(args: &DiffArgs, stores: &StoreConfig, progress: &dyn Progress) -> Result<Response> {
    let f = "diff";
    let open = |what: &str| -> Result<Flist> {
        let arg = crate::remote::resolve(f, Path::new(what), progress)?;
        Flist::open(arg.path()).ctx(f)
    };
    let (a, b) = (open(&args.a)?, open(&args.b)?);
    let same_codec = a.codecs().is_empty()
        || b.codecs().is_empty()
        || (a.codecs() == b.codecs() && a.codecs().len() == 1);
    let opts = DiffOptions {
        ignore_owner_names: true,
        ignore_order: true,
        ignore_blocks: !same_codec || args.content,
        ..Default::default()
    };
    let mut differences = tree_diff(&a.tree, &b.tree, &opts);
    let mut note = None;
    if args.content {
        differences.extend(content_differences(&a, &b, stores)?);
    } else if !same_codec {
        note = Some(
            "file contents not compared: the two flists use different chunk formats (give --content)"
                .to_string(),
        );
    }
    let mut text = String::new();
    for d in &differences {
        let _ = writeln!(text, "{d}");
    }
    if differences.is_empty() {
        text.push_str("no differences\n");
    }
    let notes: Vec<String> = note.iter().map(|n| format!("note: {n}")).collect();
    let json = json!({
        "a": args.a,
        "b": args.b,
        "differences": differences,
        "content_compared": same_codec || args.content,
    });
    let mut r = Response::new(json, text).with_notes(notes);
    if !differences.is_empty() {
        r.failure = Some(format!("{} difference(s)", differences.len()));
    }
    Ok(r)
}

/// The sha256 of every regular file's content, by absolute path.
fn contents(flist: &Flist, stores: &StoreConfig) -> Result<BTreeMap<String, String>> {
    let f = "diff";
    let store = stores.open_read(f, &flist.metadata)?;
    let mut out = BTreeMap::new();
    for id in flist.tree.walk() {
        let Kind::File { size, blocks } = &flist.tree.node(id).kind else {
            continue;
        };
        let path = format!("/{}", flist.tree.path_of(id));
        let mut h = HashWriter(Sha256::new());
        crate::chunks::fetch_file(&store, blocks, *size, &mut h, &NoProgress)
            .map_err(|e| Error::new(f, ErrorKind::Convert(format!("{path}: {e}"))))?;
        out.insert(path, hex::encode(h.0.finalize()));
    }
    Ok(out)
}

fn content_differences(a: &Flist, b: &Flist, stores: &StoreConfig) -> Result<Vec<String>> {
    let (ca, cb) = (contents(a, stores)?, contents(b, stores)?);
    Ok(ca
        .iter()
        .filter_map(|(path, ha)| match cb.get(path) {
            Some(hb) if hb != ha => Some(format!("{path}: content differs")),
            _ => None,
        })
        .collect())
}

struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
