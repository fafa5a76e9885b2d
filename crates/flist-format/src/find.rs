//! The `zflist find` listing: every entry below the root in walk order (depth-first,
//! children in stored order), with counts, in the shape of the reference JSON response.

use serde_json::{json, Value};

use crate::tree::Tree;

/// One line of the listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FindEntry {
    /// Absolute path (`/dir/file`).
    pub path: String,
    /// Recorded size (`Inode.size`).
    pub size: u64,
    /// The node, for callers that list more of it.
    pub node: crate::tree::NodeId,
}

/// Every entry below the root, in walk order, with absolute paths.
pub fn find_entries(tree: &Tree) -> Vec<FindEntry> {
    let mut out = Vec::with_capacity(tree.len());
    // (node, absolute path of its parent)
    let mut stack: Vec<(crate::tree::NodeId, String)> = Vec::new();
    let push_children = |stack: &mut Vec<_>, id, base: &str| {
        let kids: Vec<_> = tree.children(id).map(|(_, c)| c).collect();
        for c in kids.into_iter().rev() {
            stack.push((c, base.to_string()));
        }
    };
    push_children(&mut stack, Tree::ROOT, "");
    while let Some((id, parent)) = stack.pop() {
        let n = tree.node(id);
        let path = format!("{parent}/{}", n.name);
        out.push(FindEntry {
            path: path.clone(),
            size: n.kind.size(),
            node: id,
        });
        if n.kind.is_dir() {
            push_children(&mut stack, id, &path);
        }
    }
    out
}

/// The `response` object of `ZFLIST_JSON=1 zflist find`:
/// `{"content": [{"size", "path"}...], "regular", "symlink", "directory", "special",
/// "failure", "fullsize"}`.
pub fn find_response(tree: &Tree) -> Value {
    let s = tree.stats();
    let content: Vec<Value> = find_entries(tree)
        .into_iter()
        .map(|e| json!({"size": e.size, "path": e.path}))
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
