//! Derived flists: a base flist with some files set or removed, sharing every chunk of the
//! base. Only the new files' chunks are written (and only those the store lacks). The base
//! is read one directory row at a time into a tree staged on disk (as conversions are), so
//! memory does not grow with its entries.

use bytes::Bytes;
use flist_format::codec::CHUNK_SIZE;
use flist_format::{Codec, Kind, Meta, Metadata, ReadOptions};
use flist_store::BlockingStore;

use crate::builder::Staged;
use crate::error::ConvertError;
use crate::merge::{open_catalog, Input};
use crate::options::{ConvertOptions, Counters};
use crate::stage::{Import, Shape, Stage};
use crate::Converted;

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
    /// Reading the base or staging the result failed (also: a limit, a cancellation).
    #[error(transparent)]
    Convert(#[from] ConvertError),
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

/// Applies `changes` to the flist file `base` (removals first, then sets, in order),
/// writing the new files' chunks to `store`. A set file keeps the owner and mode of the file
/// it replaces; a new one is root:root 0644 with missing parents created root:root 0755.
/// Nothing is written to the store unless every change is valid. The result carries the
/// base's metadata; `opts` bounds the base's entries (`limits.max_entries`) and may cancel.
/// New chunks use the codec of the base's chunks (the `.flist` codec when it has none or
/// both); see [`derive_with`].
pub fn derive(
    base: Input<'_>,
    read: &ReadOptions,
    changes: &[Change],
    store: &BlockingStore,
    now: u32,
    opts: &ConvertOptions,
) -> Result<(Converted, DeriveStats), DeriveError> {
    derive_with(base, read, changes, store, now, opts, None)
}

/// [`derive()`] encoding the new files' chunks with `codec` (that of the format the result
/// is written in; `None`: the base's).
pub fn derive_with(
    base: Input<'_>,
    read: &ReadOptions,
    changes: &[Change],
    store: &BlockingStore,
    now: u32,
    opts: &ConvertOptions,
    codec: Option<Codec>,
) -> Result<(Converted, DeriveStats), DeriveError> {
    // Validate everything first: no chunk is written for a refused derivation.
    for c in changes {
        match c {
            Change::Set { path, .. } | Change::Remove { path } => check_path(path)?,
        }
    }
    let mut stage = Stage::new(&Meta::root(0o755, 0))?;
    let metadata = {
        let (_db, conn) = open_catalog(base, read)?;
        let mut import = Import {
            stage: &mut stage,
            first: true,
            entries: 0,
            limit: opts.limits.max_entries,
            cancel: opts.cancel.clone(),
            error: None,
        };
        import.catalog(&conn, base.what)?;
        Metadata::read(&conn, base.what).map_err(ConvertError::from)?
    };
    apply(stage, metadata, changes, store, now, opts, codec)
}

/// [`derive_with`] from an flist already in memory (of either format), for a caller that
/// has one; the result is staged on disk all the same.
pub fn derive_from_flist(
    base: &flist_format::Flist,
    changes: &[Change],
    store: &BlockingStore,
    now: u32,
    opts: &ConvertOptions,
    codec: Option<Codec>,
) -> Result<(Converted, DeriveStats), DeriveError> {
    for c in changes {
        match c {
            Change::Set { path, .. } | Change::Remove { path } => check_path(path)?,
        }
    }
    let mut stage = Stage::new(&base.tree.node(flist_format::Tree::ROOT).meta)?;
    stage.import_tree(&base.tree)?;
    apply(
        stage,
        base.metadata.clone(),
        changes,
        store,
        now,
        opts,
        codec,
    )
}

/// Applies `changes` to the base staged in `stage` (see [`derive_with`]).
fn apply(
    mut stage: Stage,
    metadata: Metadata,
    changes: &[Change],
    store: &BlockingStore,
    now: u32,
    opts: &ConvertOptions,
    codec: Option<Codec>,
) -> Result<(Converted, DeriveStats), DeriveError> {
    let mut stats = DeriveStats::default();
    for c in changes {
        if let Change::Remove { path } = c {
            let comps = components(path)?;
            let id = stage
                .lookup(&comps)?
                .ok_or_else(|| DeriveError::Missing(path.clone()))?;
            stage.remove(id)?;
            stats.removed += 1;
        }
    }
    let codec = match codec {
        Some(c) => c,
        None => {
            let mut seen = std::collections::BTreeSet::new();
            stage.for_each_file(|row| {
                if let Kind::File { blocks, .. } = &row.kind {
                    seen.extend(blocks.iter().map(flist_format::Block::codec));
                }
                Ok(())
            })?;
            match seen.into_iter().collect::<Vec<_>>()[..] {
                [one] => one,
                _ => Codec::Flist,
            }
        }
    };
    let mut pending = Vec::new();
    for c in changes {
        let Change::Set { path, content } = c else {
            continue;
        };
        let comps = components(path)?;
        let Some((name, parents)) = comps.split_last() else {
            return Err(DeriveError::Path {
                path: path.clone(),
                reason: "names the root".into(),
            });
        };
        // Missing parents are made; a non-directory on the way is refused.
        let mut dir = Stage::ROOT;
        for (i, p) in parents.iter().enumerate() {
            dir = match stage.child(dir, p)? {
                Some((id, Shape::Dir)) => id,
                Some(_) => {
                    return Err(DeriveError::Path {
                        path: path.clone(),
                        reason: format!("not a directory: /{}", parents[..=i].join("/")),
                    })
                }
                None => stage.insert(dir, p, &Meta::root(0o755, now), &Kind::empty_dir(), None)?,
            };
        }
        let meta = match stage.child(dir, name)? {
            Some((_, Shape::Dir)) => return Err(DeriveError::IsDirectory(path.clone())),
            Some((id, _)) => Meta {
                mtime: now,
                ctime: now,
                ..stage.row(id)?.meta
            },
            None => Meta::root(0o644, now),
        };
        let mut blocks = Vec::new();
        for piece in content.chunks(CHUNK_SIZE) {
            let enc = codec.encode(piece);
            blocks.push(enc.block);
            pending.push((enc.block.id().to_vec(), Bytes::from(enc.data)));
        }
        let kind = Kind::File {
            size: content.len() as u64,
            blocks,
        };
        stage.set(dir, name, &meta, &kind, None)?;
        stats.files_set += 1;
        stats.bytes += content.len() as u64;
    }
    crate::options::check_cancel(&opts.cancel)?;
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
    let mut converted = Converted::new(Staged::from_stage(stage), &Counters::default(), opts)?;
    converted.metadata = metadata;
    Ok((converted, stats))
}

fn components(path: &str) -> Result<Vec<&str>, DeriveError> {
    flist_format::tree::components(path).map_err(|e| DeriveError::Path {
        path: path.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use flist_format::{Flist, Tree};

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
        let mut metadata = Metadata::new();
        metadata.set("readme", "kept");
        let base = Flist { tree, metadata };
        let path = dir.path().join("base.flist");
        base.write(&path).unwrap();
        let input = Input {
            path: &path,
            what: "base",
        };
        let run = |changes: &[Change], now| {
            derive(
                input,
                &ReadOptions::default(),
                changes,
                &store,
                now,
                &ConvertOptions::default(),
            )
        };
        let (new, stats) = run(
            &[
                Change::Set {
                    path: "/root/.ssh/authorized_keys".into(),
                    content: vec![b'k'; 1024],
                },
                Change::Remove {
                    path: "/etc/gone".into(),
                },
            ],
            5,
        )
        .unwrap();
        assert_eq!(stats.chunks_written, 1);
        assert_eq!(stats.removed, 1);
        assert_eq!(new.metadata.get("readme"), Some("kept"));
        let new = new.into_packed().unwrap().tree;
        assert!(new.lookup("/etc/gone").is_none());
        let big_id = new.lookup("/etc/big").unwrap();
        assert_eq!(
            new.node(big_id).kind,
            base.tree.node(base.tree.lookup("/etc/big").unwrap()).kind
        );
        assert_eq!(new.node(big_id).meta.uid, 3);
        let keys = new.lookup("/root/.ssh/authorized_keys").unwrap();
        assert_eq!(new.node(keys).meta, Meta::root(0o644, 5));
        // The same derivation again writes nothing new.
        let (_, again) = run(
            &[Change::Set {
                path: "/root/.ssh/authorized_keys".into(),
                content: vec![b'k'; 1024],
            }],
            6,
        )
        .unwrap();
        assert_eq!((again.chunks_written, again.chunks_present), (0, 1));
        // Refusals name the problem and write nothing.
        let err = run(
            &[
                Change::Set {
                    path: "/new".into(),
                    content: b"x".to_vec(),
                },
                Change::Remove {
                    path: "/nope".into(),
                },
            ],
            7,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "/nope: no such entry in the base flist");
        assert!(matches!(
            run(
                &[Change::Set {
                    path: "/etc".into(),
                    content: vec![]
                }],
                7
            ),
            Err(DeriveError::IsDirectory(_))
        ));
        assert!(matches!(
            run(
                &[Change::Set {
                    path: "rel".into(),
                    content: vec![]
                }],
                7
            ),
            Err(DeriveError::Path { .. })
        ));
        assert!(matches!(
            run(
                &[Change::Set {
                    path: "/etc/big/under".into(),
                    content: vec![]
                }],
                7
            ),
            Err(DeriveError::Path { .. })
        ));
    }
}
