//! Reading stored flists through the format crate: metadata, dumps, chunk lists, merges.

use std::collections::BTreeSet;
use std::path::Path;

use flist_format::{Flist, FormatError, Kind, Metadata, ReadOptions, Tree};
use serde_json::{json, Map, Value};

use crate::model::{Entry, FlistInfo, Resolved};
use crate::names::validate_flist;
use crate::{Actor, Hub, RepoError};

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
            RepoError::Invalid(format!(
                "{what} is not a readable flist: {}",
                m.strip_prefix(&prefix).unwrap_or(&m)
            ))
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

/// Distinct chunk store keys (BLAKE2b-16 of the encrypted chunk) of every file.
pub fn chunk_keys(tree: &Tree) -> Vec<[u8; 16]> {
    let mut set = BTreeSet::new();
    for id in tree.walk() {
        if let Kind::File { blocks, .. } = &tree.node(id).kind {
            set.extend(blocks.iter().map(|b| b.hash));
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

impl Hub {
    fn ensure_info(&self, r: &Resolved) -> Result<(Option<String>, Option<String>), RepoError> {
        let (md, dump) = (self.blob_metadata(&r.sha256)?, self.blob_dump(&r.sha256)?);
        if md.is_some() && dump.is_some() {
            return Ok((md, dump));
        }
        let path = self.blob_path(&r.sha256);
        let flist = open_flist(&path)?;
        let md = Value::Object(metadata_json(&flist.metadata)).to_string();
        let dump = dump_json(&flist.tree).to_string();
        self.set_blob_info(&r.sha256, Some(&md), Some(&dump))?;
        Ok((Some(md), Some(dump)))
    }

    /// The dump (JSON text) of a resolved flist, computed once and cached in the catalog.
    pub fn dump(&self, r: &Resolved) -> Result<String, RepoError> {
        match self.blob_dump(&r.sha256)? {
            Some(d) => Ok(d),
            None => self
                .ensure_info(r)?
                .1
                .ok_or_else(|| RepoError::NotFound(format!("dump of {}/{}", r.repo, r.name))),
        }
    }

    /// The metadata (JSON object of raw strings) of a resolved flist, cached like [`Hub::dump`].
    pub fn metadata(&self, r: &Resolved) -> Result<Map<String, Value>, RepoError> {
        let text = match self.blob_metadata(&r.sha256)? {
            Some(m) => m,
            None => self.ensure_info(r)?.0.unwrap_or_else(|| "{}".into()),
        };
        match serde_json::from_str(&text) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Ok(Map::new()),
        }
    }

    /// Merges `sources` (`(repo, name)`, resolved; first wins) into `repo/target`, with
    /// `metadata` as the result's metadata (the format does not merge metadata).
    pub fn merge(
        &self,
        actor: &Actor,
        repo: &str,
        target: &str,
        sources: &[(String, String)],
        metadata: Metadata,
    ) -> Result<Entry, RepoError> {
        validate_flist(target)?;
        actor.check_write(repo)?;
        if sources.is_empty() {
            return Err(RepoError::Invalid("nothing to merge".into()));
        }
        let mut tree: Option<Tree> = None;
        let mut names = Vec::new();
        for (r, n) in sources {
            let res = self.resolve(r, n)?;
            let f = open_flist(&self.blob_path(&res.sha256))?;
            match tree.as_mut() {
                None => tree = Some(f.tree),
                Some(t) => flist_format::merge(t, &f.tree),
            }
            names.push(format!("{r}/{n}"));
        }
        let tree = tree.ok_or_else(|| RepoError::Invalid("nothing to merge".into()))?;
        let merged = Flist { tree, metadata };
        self.store_flist_as(
            actor,
            "merge",
            repo,
            target,
            &merged,
            Some(names.join(", ")),
            json!({"sources": names}),
        )
    }
}
