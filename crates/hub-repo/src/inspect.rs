//! Reading stored flists through the format crate: metadata, dumps, chunk lists, merges.

use std::collections::BTreeSet;
use std::path::Path;

use flist_format::{Flist, FormatError, Kind, Metadata, ReadOptions, Tree};
use serde_json::{json, Map, Value};

use crate::model::FlistInfo;
use crate::RepoError;

fn fmt_err(path: &Path, e: impl std::fmt::Display) -> RepoError {
    RepoError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Reads an flist file.
pub fn open_flist(path: &Path) -> Result<Flist, RepoError> {
    Flist::open(path).map_err(|e| fmt_err(path, e))
}

/// Reads an flist file received from a client: errors name it `what` (never a server path),
/// the inflated database is capped and kept in `opts.temp_dir`; a database over the cap is
/// [`RepoError::TooLarge`].
pub fn read_client_flist(path: &Path, what: &str, opts: &ReadOptions) -> Result<Flist, RepoError> {
    let f = std::fs::File::open(path).map_err(|e| RepoError::io("open", path, e))?;
    Flist::from_reader_with(f, what, opts).map_err(|e| match e {
        FormatError::DatabaseTooLarge { limit, .. } => RepoError::TooLarge(format!(
            "{what}: the flist database inflates beyond the hub's limit of {limit} bytes"
        )),
        FormatError::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
            RepoError::io("inflate the flist database of", what, source)
        }
        other => {
            let m = other.to_string();
            let prefix = format!("{what}: ");
            let m = m.strip_prefix(&prefix).unwrap_or(&m);
            RepoError::Invalid(if m.starts_with("not an flist") {
                format!("{what}: {m}")
            } else {
                format!("{what} is not a readable flist: {m}")
            })
        }
    })
}

/// Metadata as a JSON object of raw string values.
pub fn metadata_json(md: &Metadata) -> Map<String, Value> {
    md.iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect()
}

/// The full dump: `{"content":[{"size","path","type","mode"[,"target"]}...], "regular",
/// "symlink", "directory", "special", "failure":0, "fullsize"}` in walk order.
pub fn dump_json(tree: &Tree) -> Value {
    let s = tree.stats();
    let content: Vec<Value> = flist_format::find_entries(tree)
        .into_iter()
        .map(|f| {
            let n = tree.node(f.node);
            let mut e = json!({
                "size": f.size,
                "path": f.path,
                "type": n.kind.type_name(),
                "mode": format!("{:o}", n.meta.mode & 0o7777),
            });
            if let (Kind::Symlink { target }, Value::Object(m)) = (&n.kind, &mut e) {
                m.insert("target".into(), Value::String(target.clone()));
            }
            e
        })
        .collect();
    json!({
        "content": content,
        "regular": s.regular,
        "symlink": s.symlink,
        "directory": s.directory,
        "special": s.special,
        "failure": 0,
        "fullsize": s.fullsize,
    })
}

/// [`dump_json`] as JSON text, written entry by entry (no JSON tree of the whole listing in
/// memory: a 200,000-entry flist costs its text and its paths, not a map per entry).
pub fn dump_text(tree: &Tree) -> String {
    #[derive(serde::Serialize)]
    struct Item<'a> {
        size: u64,
        path: &'a str,
        #[serde(rename = "type")]
        kind: &'a str,
        mode: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        target: Option<&'a str>,
    }
    let s = tree.stats();
    let entries = flist_format::find_entries(tree);
    let mut out: Vec<u8> = Vec::with_capacity(entries.len() * 80 + 128);
    out.extend_from_slice(b"{\"content\":[");
    for (i, f) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let n = tree.node(f.node);
        let item = Item {
            size: f.size,
            path: &f.path,
            kind: n.kind.type_name(),
            mode: format!("{:o}", n.meta.mode & 0o7777),
            target: match &n.kind {
                Kind::Symlink { target } => Some(target.as_str()),
                _ => None,
            },
        };
        // Writing to memory cannot fail; the item has only strings and numbers.
        let _ = serde_json::to_writer(&mut out, &item);
    }
    out.extend_from_slice(
        format!(
            "],\"regular\":{},\"symlink\":{},\"directory\":{},\"special\":{},\"failure\":0,\"fullsize\":{}}}",
            s.regular, s.symlink, s.directory, s.special, s.fullsize
        )
        .as_bytes(),
    );
    String::from_utf8(out).unwrap_or_default()
}

/// Distinct chunk store keys (the hash of the encrypted chunk: 16 bytes for an `.flist`,
/// 32 for an `.fl`) of every file.
pub fn chunk_keys(tree: &Tree) -> Vec<Vec<u8>> {
    let mut set = BTreeSet::new();
    for id in tree.walk() {
        if let Kind::File { blocks, .. } = &tree.node(id).kind {
            set.extend(blocks.iter().map(|b| b.id().to_vec()));
        }
    }
    set.into_iter().collect()
}

/// The [`FlistInfo`] (metadata and dump) of an flist in memory.
pub fn info_of(flist: &Flist, source: Option<String>) -> FlistInfo {
    FlistInfo {
        source,
        metadata: Some(metadata_json(&flist.metadata)),
        dump: Some(dump_json(&flist.tree)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use flist_format::Meta;

    #[test]
    fn dump_text_is_the_dump_json() {
        let mut tree = Tree::new(Meta::root(0o755, 1));
        let bin = tree.mkdir_p("usr/bin", &Meta::root(0o755, 1)).unwrap();
        tree.insert(
            bin,
            "tool \"x\"\n",
            Meta::root(0o4755, 1),
            Kind::File {
                size: 12,
                blocks: vec![],
            },
        )
        .unwrap();
        tree.insert(
            bin,
            "sh",
            Meta::root(0o777, 1),
            Kind::Symlink {
                target: "busybox".into(),
            },
        )
        .unwrap();
        let text = dump_text(&tree);
        assert_eq!(text, dump_json(&tree).to_string());
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["content"].as_array().unwrap().len(), 4);
        let empty = Tree::new(Meta::root(0o755, 1));
        assert_eq!(dump_text(&empty), dump_json(&empty).to_string());
    }
}
