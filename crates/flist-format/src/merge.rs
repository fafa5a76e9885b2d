//! Merging trees the way `zflist init; merge A; merge B` does: an entry already present
//! wins, directories present on both sides are merged recursively (done iteratively here),
//! and a name never ends up twice in a directory (file against directory: the present side
//! wins). Metadata is not merged.

use crate::tree::{Kind, NodeId, Tree};

/// Merges `other` into `base`. New entries are appended after the existing ones, in
/// `other`'s order; the metadata of directories present on both sides is `base`'s.
pub fn merge(base: &mut Tree, other: &Tree) {
    let mut stack: Vec<(NodeId, NodeId)> = vec![(Tree::ROOT, Tree::ROOT)];
    while let Some((bdir, odir)) = stack.pop() {
        let kids: Vec<(String, NodeId)> = other
            .children(odir)
            .map(|(n, id)| (n.to_string(), id))
            .collect();
        for (name, oid) in kids {
            match base.child(bdir, &name) {
                Some(bid) => {
                    if base.node(bid).kind.is_dir() && other.node(oid).kind.is_dir() {
                        stack.push((bid, oid));
                    }
                    // otherwise the present entry wins
                }
                None => copy_subtree(base, bdir, &name, other, oid),
            }
        }
    }
}

/// Copies `src`'s node `sid` (and everything below it) into `dst` as `name` in `dparent`,
/// which must not have that name yet.
pub fn copy_subtree(dst: &mut Tree, dparent: NodeId, name: &str, src: &Tree, sid: NodeId) {
    let mut stack: Vec<(NodeId, NodeId, String)> = vec![(sid, dparent, name.to_string())];
    while let Some((sid, dparent, name)) = stack.pop() {
        let n = src.node(sid);
        let kind = match &n.kind {
            Kind::Dir { size, .. } => Kind::Dir {
                children: Default::default(),
                size: *size,
            },
            k => k.clone(),
        };
        // Names come from a valid tree and the destination slot is free (checked by the
        // caller for the top entry; fresh directories below it are empty).
        let Ok(did) = dst.insert(dparent, &name, n.meta.clone(), kind) else {
            continue;
        };
        let kids: Vec<(String, NodeId)> = src
            .children(sid)
            .map(|(k, id)| (k.to_string(), id))
            .collect();
        // push in reverse so children are inserted in their stored order
        for (k, cid) in kids.into_iter().rev() {
            stack.push((cid, did, k));
        }
    }
}
