//! Derived flists: a base flist with some files set or removed, sharing every chunk of the
//! base. Only the new files' chunks are written (and only those the store lacks).

use bytes::Bytes;
use flist_format::codec::CHUNK_SIZE;
use flist_format::{Codec, Flist, Kind, Meta};
use flist_store::BlockingStore;

/// A change to apply to the base.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Set (replace or add) the file at an absolute path with this content.
    Set {
        /// Absolute path inside the flist.
        path: String,
        /// Content of the file.
        content: Vec<u8>,
    },
    /// Remove the entry (and what is below it) at an absolute path.
    Remove {
        /// Absolute path inside the flist.
        path: String,
    },
}

/// What a derivation did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeriveStats {
    /// Files set.
    pub files_set: u64,
    /// Entries removed.
    pub removed: u64,
    /// Chunks written to the store.
    pub chunks_written: u64,
    /// Chunks of the new files the store already had.
    pub chunks_present: u64,
    /// Bytes of new file content.
    pub bytes: u64,
}

/// Why a derivation was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeriveError {
    /// A path is not absolute or has `.`/`..` components.
    #[error("{path:?}: {reason}")]
    Path {
        /// The path as given.
        path: String,
        /// Why.
        reason: String,
    },
    /// `remove` names an entry the base does not have.
    #[error("{0}: no such entry in the base flist")]
    Missing(String),
    /// `set` targets a directory.
    #[error("{0}: is a directory in the base flist; only files can be set")]
    IsDirectory(String),
    /// Writing chunks failed.
    #[error(transparent)]
    Store(#[from] flist_store::StoreError),
}

fn check_path(path: &str) -> Result<(), DeriveError> {
    let bad = |reason: &str| DeriveError::Path {
        path: path.to_string(),
        reason: reason.to_string(),
    };
    if !path.starts_with('/') {
        return Err(bad("must be absolute"));
    }
    match flist_format::tree::components(path) {
        Ok(c) if !c.is_empty() => Ok(()),
        Ok(_) => Err(bad("names the root")),
        Err(e) => Err(bad(&e.to_string())),
    }
}

/// Applies `changes` to `base` (removals first, then sets, in order), writing the new
/// files' chunks to `store`. A set file keeps the owner and mode of the file it replaces;
/// a new one is root:root 0644 with missing parents created root:root 0755. Nothing is
/// written to the store unless every change is valid. New chunks use the codec of the
/// base's chunks (the `.flist` codec when it has none); see [`derive_with`].
pub fn derive(
    base: &Flist,
    changes: &[Change],
    store: &BlockingStore,
    now: u32,
) -> Result<(Flist, DeriveStats), DeriveError> {
    let codec = match base.codecs().into_iter().collect::<Vec<_>>()[..] {
        [one] => one,
        _ => Codec::Flist,
    };
    derive_with(base, changes, store, now, codec)
}

/// [`derive()`] encoding the new files' chunks with `codec` (that of the format the result
/// is written in).
pub fn derive_with(
    base: &Flist,
    changes: &[Change],
    store: &BlockingStore,
    now: u32,
    codec: Codec,
) -> Result<(Flist, DeriveStats), DeriveError> {
    let mut flist = base.clone();
    let mut stats = DeriveStats::default();
    // Validate everything first: no chunk is written for a refused derivation.
    for c in changes {
        match c {
            Change::Set { path, .. } | Change::Remove { path } => check_path(path)?,
        }
    }
    for c in changes {
        if let Change::Remove { path } = c {
            let id = flist
                .tree
                .lookup(path)
                .ok_or_else(|| DeriveError::Missing(path.clone()))?;
            flist.tree.remove(id);
            stats.removed += 1;
        }
    }
    let tree = &mut flist.tree;
    let mut pending = Vec::new();
    for c in changes {
        let Change::Set { path, content } = c else {
            continue;
        };
        let (parent, name) = path
            .trim_end_matches('/')
            .rsplit_once('/')
            .unwrap_or(("", path.as_str()));
        if let Some(id) = tree.lookup(path) {
            if tree.node(id).kind.is_dir() {
                return Err(DeriveError::IsDirectory(path.clone()));
            }
        }
        let dir = tree
            .mkdir_p(parent, &Meta::root(0o755, now))
            .map_err(|e| DeriveError::Path {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        let meta = match tree.child(dir, name).map(|id| tree.node(id)) {
            Some(n) => Meta {
                mtime: now,
                ctime: now,
                ..n.meta.clone()
            },
            None => Meta::root(0o644, now),
        };
        let mut blocks = Vec::new();
        for piece in content.chunks(CHUNK_SIZE) {
            let enc = codec.encode(piece);
            blocks.push(enc.block);
            pending.push((enc.block.id().to_vec(), Bytes::from(enc.data)));
        }
        tree.set(
            dir,
            name,
            meta,
            Kind::File {
                size: content.len() as u64,
                blocks,
            },
        )
        .map_err(|e| DeriveError::Path {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        stats.files_set += 1;
        stats.bytes += content.len() as u64;
    }
    pending.sort_by(|a, b| a.0.cmp(&b.0));
    pending.dedup_by(|a, b| a.0 == b.0);
    if !pending.is_empty() {
        let keys: Vec<Vec<u8>> = pending.iter().map(|(k, _)| k.clone()).collect();
        let present = store.exists_many(&keys)?;
        let missing: Vec<(Vec<u8>, Bytes)> = pending
            .into_iter()
            .zip(present)
            .filter(|(_, p)| !p)
            .map(|(item, _)| item)
            .collect();
        stats.chunks_present = keys.len() as u64 - missing.len() as u64;
        stats.chunks_written = missing.len() as u64;
        if !missing.is_empty() {
            store.set_many(missing)?;
        }
    }
    Ok((flist, stats))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use flist_format::Tree;

    #[test]
    fn set_and_remove_share_the_base() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockingStore::open(&format!("dir://{}", dir.path().display())).unwrap();
        let big = vec![7u8; CHUNK_SIZE * 2];
        let enc = flist_format::codec::encode_chunk(&big[..CHUNK_SIZE]);
        store
            .set(enc.block.id(), Bytes::from(enc.data.clone()))
            .unwrap();
        let mut tree = Tree::new(Meta::root(0o755, 1));
        let etc = tree.mkdir_p("etc", &Meta::root(0o755, 1)).unwrap();
        tree.insert(
            etc,
            "big",
            Meta::numeric(0o600, 3, 3, 1),
            Kind::File {
                size: big.len() as u64,
                blocks: vec![enc.block, enc.block],
            },
        )
        .unwrap();
        tree.insert(
            etc,
            "gone",
            Meta::root(0o644, 1),
            Kind::File {
                size: 0,
                blocks: vec![],
            },
        )
        .unwrap();
        let base = Flist {
            tree,
            metadata: Default::default(),
        };
        let (new, stats) = derive(
            &base,
            &[
                Change::Set {
                    path: "/root/.ssh/authorized_keys".into(),
                    content: vec![b'k'; 1024],
                },
                Change::Remove {
                    path: "/etc/gone".into(),
                },
            ],
            &store,
            5,
        )
        .unwrap();
        assert_eq!(stats.chunks_written, 1);
        assert_eq!(stats.removed, 1);
        assert!(new.tree.lookup("/etc/gone").is_none());
        let big_id = new.tree.lookup("/etc/big").unwrap();
        assert_eq!(
            new.tree.node(big_id).kind,
            base.tree.node(base.tree.lookup("/etc/big").unwrap()).kind
        );
        // The same derivation again writes nothing new.
        let (_, again) = derive(
            &base,
            &[Change::Set {
                path: "/root/.ssh/authorized_keys".into(),
                content: vec![b'k'; 1024],
            }],
            &store,
            6,
        )
        .unwrap();
        assert_eq!((again.chunks_written, again.chunks_present), (0, 1));
        // Refusals name the problem and write nothing.
        let err = derive(
            &base,
            &[
                Change::Set {
                    path: "/new".into(),
                    content: b"x".to_vec(),
                },
                Change::Remove {
                    path: "/nope".into(),
                },
            ],
            &store,
            7,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "/nope: no such entry in the base flist");
        assert!(matches!(
            derive(
                &base,
                &[Change::Set {
                    path: "/etc".into(),
                    content: vec![]
                }],
                &store,
                7
            ),
            Err(DeriveError::IsDirectory(_))
        ));
        assert!(matches!(
            derive(
                &base,
                &[Change::Set {
                    path: "rel".into(),
                    content: vec![]
                }],
                &store,
                7
            ),
            Err(DeriveError::Path { .. })
        ));
    }
}
