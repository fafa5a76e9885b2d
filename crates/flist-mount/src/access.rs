//! The prefetch list: which files a run touches, recorded by one mount
//! ([`AccessLog`], `MountOptions::record_access`) and loaded ahead by the next ones
//! ([`prefetch_blocks`]).
//!
//! The list is kept in the flist's metadata under
//! [`flist_format::metadata::KEY_PREFETCH`] (a JSON array of paths, in the order the files
//! were first opened); readers that do not know the key see one more raw string.

use std::collections::HashSet;
use std::sync::Mutex;

use flist_format::{Block, Kind, NodeId, Tree};

/// The files opened through a mount, each once, in the order of their first opening.
#[derive(Debug, Default)]
pub struct AccessLog {
    seen: Mutex<(Vec<String>, HashSet<NodeId>)>,
}

impl AccessLog {
    /// Records an opening of node `id` of `tree` (only its first counts).
    pub(crate) fn opened(&self, tree: &Tree, id: NodeId) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.1.insert(id) {
            seen.0.push(format!("/{}", tree.path_of(id)));
        }
    }

    /// The paths recorded so far (absolute, from the flist's root), in first-access order.
    pub fn paths(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }
}

/// The chunks of the files of `paths` in `tree`, in list order then file order, each once,
/// at most `limit` of them. Paths that are not regular files of the tree are skipped (the
/// list was recorded on another version of the flist, or edited by hand).
pub fn prefetch_blocks(tree: &Tree, paths: &[String], limit: usize) -> Vec<Block> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for path in paths {
        let Some(Kind::File { blocks, .. }) = tree.lookup(path).map(|id| &tree.node(id).kind)
        else {
            continue;
        };
        for b in blocks {
            if out.len() >= limit {
                return out;
            }
            if seen.insert(*b) {
                out.push(*b);
            }
        }
    }
    out
}
