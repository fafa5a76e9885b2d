//! Merging flist files into one tree staged on disk, the way `zflist init; merge A;
//! merge B` does: an entry already present wins, directories present in several sources
//! are merged, the root keeps the first source's metadata. The sources are read one
//! directory row at a time and the result is staged like a conversion, so memory does not
//! grow with the entries merged; [`ConvertOptions::limits`]`.max_entries` bounds the
//! entries met over all sources and [`ConvertOptions::cancel`] stops the merge.

use std::path::Path;

use flist_format::ReadOptions;

use crate::builder::Staged;
use crate::error::{ConvertError, LimitKind, Result};
use crate::options::{check_cancel, ConvertOptions, Counters};
use crate::stage::{Import, Stage};
use crate::Converted;

/// An flist file to read: where it is and how errors name it (never a server path when
/// `what` says otherwise).
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    /// The `.flist` file (gzip tar, plain tar or bare database).
    pub path: &'a Path,
    /// Its name in errors.
    pub what: &'a str,
}

/// Opens the catalog database of `input` (unpacked into a private temporary file); a
/// database over `read.max_database_bytes` is a [`LimitKind::DatabaseSize`] limit.
pub(crate) fn open_catalog(
    input: Input<'_>,
    read: &ReadOptions,
) -> Result<(tempfile::NamedTempFile, rusqlite::Connection)> {
    let f = std::fs::File::open(input.path).map_err(|e| ConvertError::Io {
        path: input.what.into(),
        source: e,
    })?;
    let db =
        flist_format::reader::extract_database_with(f, input.what, read).map_err(|e| match e {
            flist_format::FormatError::DatabaseTooLarge { limit, .. } => ConvertError::Limit {
                what: LimitKind::DatabaseSize,
                value: limit.saturating_add(1),
                limit,
                entry: Some(input.what.to_string()),
            },
            e => ConvertError::from(e),
        })?;
    let conn = flist_format::reader::open_database(db.path())?;
    Ok((db, conn))
}

/// Reads the flist `input` into a tree staged on disk, with its metadata: what an flist
/// received from elsewhere becomes once checked (every directory reached once, names
/// valid, a name repeated in a directory kept once) and ready to be written again in the
/// canonical form. Bounded and cancelled like [`merge`].
pub fn rewrite(input: Input<'_>, read: &ReadOptions, opts: &ConvertOptions) -> Result<Converted> {
    let mut stage = Stage::new(&flist_format::Meta::root(0o755, 0))?;
    let (_db, conn) = open_catalog(input, read)?;
    let mut import = Import {
        stage: &mut stage,
        first: true,
        entries: 0,
        limit: opts.limits.max_entries,
        cancel: opts.cancel.clone(),
        error: None,
    };
    import.catalog(&conn, input.what)?;
    let counters = Counters::default();
    counters
        .entries
        .store(import.entries, std::sync::atomic::Ordering::Relaxed);
    let metadata = flist_format::Metadata::read(&conn, input.what)?;
    let mut c = Converted::new(Staged::from_stage(stage), &counters, opts)?;
    c.metadata = metadata;
    Ok(c)
}

/// Merges `sources` (first wins) into a tree staged on disk. The result's metadata is
/// empty (the format does not merge metadata): set it before writing.
pub fn merge(
    sources: &[Input<'_>],
    read: &ReadOptions,
    opts: &ConvertOptions,
) -> Result<Converted> {
    let mut stage = Stage::new(&flist_format::Meta::root(0o755, 0))?;
    let mut import = Import {
        stage: &mut stage,
        first: true,
        entries: 0,
        limit: opts.limits.max_entries,
        cancel: opts.cancel.clone(),
        error: None,
    };
    for input in sources {
        check_cancel(&opts.cancel)?;
        let (_db, conn) = open_catalog(*input, read)?;
        import.catalog(&conn, input.what)?;
    }
    let entries = import.entries;
    let counters = Counters::default();
    counters
        .entries
        .store(entries, std::sync::atomic::Ordering::Relaxed);
    Converted::new(Staged::from_stage(stage), &counters, opts)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use flist_format::{Flist, Kind, Meta, Tree};

    fn file(size: u64) -> Kind {
        Kind::File {
            size,
            blocks: vec![],
        }
    }

    #[test]
    fn first_wins_directories_merge_and_limits_hold() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Tree::new(Meta::root(0o700, 1));
        let etc = a.mkdir_p("etc", &Meta::root(0o755, 1)).unwrap();
        a.insert(etc, "x", Meta::root(0o644, 1), file(1)).unwrap();
        a.insert(Tree::ROOT, "f", Meta::root(0o644, 1), file(1))
            .unwrap();
        let mut b = Tree::new(Meta::root(0o755, 2));
        let etc = b.mkdir_p("etc", &Meta::root(0o700, 2)).unwrap();
        b.insert(etc, "x", Meta::root(0o600, 2), file(2)).unwrap();
        b.insert(etc, "y", Meta::root(0o600, 2), file(2)).unwrap();
        b.mkdir_p("f/under", &Meta::root(0o755, 2)).unwrap();
        let (pa, pb) = (dir.path().join("a.flist"), dir.path().join("b.flist"));
        Flist {
            tree: a.clone(),
            metadata: Default::default(),
        }
        .write(&pa)
        .unwrap();
        Flist {
            tree: b.clone(),
            metadata: Default::default(),
        }
        .write(&pb)
        .unwrap();
        let inputs = [
            Input {
                path: &pa,
                what: "a",
            },
            Input {
                path: &pb,
                what: "b",
            },
        ];
        let merged = merge(&inputs, &ReadOptions::default(), &ConvertOptions::default())
            .unwrap()
            .into_packed()
            .unwrap()
            .tree;
        let mut want = a.clone();
        flist_format::merge(&mut want, &b);
        crate::sort_children(&mut want);
        let d = flist_format::tree::diff(&merged, &want, &Default::default());
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(merged.node(Tree::ROOT).meta.mode, 0o700);
        // Entries met over all sources are bounded.
        let mut opts = ConvertOptions::default();
        opts.limits.max_entries = 5;
        let err = merge(&inputs, &ReadOptions::default(), &opts).unwrap_err();
        assert!(matches!(err, ConvertError::Limit { limit: 5, .. }), "{err}");
        // A cancelled merge stops.
        let opts = ConvertOptions {
            cancel: Some(crate::Cancel::new()),
            ..Default::default()
        };
        opts.cancel.as_ref().unwrap().cancel();
        assert!(matches!(
            merge(&inputs, &ReadOptions::default(), &opts),
            Err(ConvertError::Cancelled)
        ));
    }
}
