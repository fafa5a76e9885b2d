//! `--override /path=@file|content`: files replaced or added for one mount only.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use flist_format::{Kind, Meta, NodeId, Tree};

use crate::error::MountError;

/// One file replaced or added for a mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Override {
    /// Absolute path inside the flist.
    pub path: String,
    /// The file's content.
    pub content: Vec<u8>,
}

impl Override {
    /// Parses `/path=@FILE` (content read from a local file) or `/path=CONTENT` (the text
    /// itself). The path must be absolute.
    pub fn parse(spec: &str) -> Result<Override, MountError> {
        let bad = |reason: &str| MountError::Override {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let (path, value) = spec
            .split_once('=')
            .ok_or_else(|| bad("expected /path=@file or /path=content"))?;
        if !path.starts_with('/') {
            return Err(bad("the path must be absolute"));
        }
        if flist_format::tree::components(path).is_err() || path.trim_matches('/').is_empty() {
            return Err(bad("the path must name a file (no '.' or '..' components)"));
        }
        let content = match value.strip_prefix('@') {
            Some(file) => std::fs::read(file).map_err(|e| MountError::Override {
                spec: spec.to_string(),
                reason: format!("reading {file}: {e}"),
            })?,
            None => value.as_bytes().to_vec(),
        };
        Ok(Override {
            path: path.to_string(),
            content,
        })
    }

    /// An override from a path and bytes.
    pub fn new(path: impl Into<String>, content: impl Into<Vec<u8>>) -> Self {
        Override {
            path: path.into(),
            content: content.into(),
        }
    }
}

/// Applies overrides to `tree`: each becomes a regular file node (missing parent
/// directories are created root:root 0755; a replaced file keeps its owner and mode, a new
/// one is root:root 0644). Returns the content of each overridden node.
pub fn apply(
    tree: &mut Tree,
    overrides: &[Override],
    now: u32,
) -> Result<HashMap<NodeId, Arc<Vec<u8>>>, MountError> {
    let mut out = HashMap::new();
    for o in overrides {
        let bad = |reason: String| MountError::Override {
            spec: o.path.clone(),
            reason,
        };
        let path = Path::new(&o.path);
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| bad("no file name".into()))?;
        let parent = path
            .parent()
            .and_then(|p| p.to_str())
            .ok_or_else(|| bad("no parent directory".into()))?;
        let dir = tree
            .mkdir_p(parent, &Meta::root(0o755, now))
            .map_err(|e| bad(e.to_string()))?;
        let meta = match tree.child(dir, name).map(|id| tree.node(id)) {
            Some(n) if n.kind.is_dir() => {
                return Err(bad("is a directory in the flist".into()));
            }
            Some(n) => Meta {
                mtime: now,
                ctime: now,
                ..n.meta.clone()
            },
            None => Meta::root(0o644, now),
        };
        let id = tree
            .set(
                dir,
                name,
                meta,
                Kind::File {
                    size: o.content.len() as u64,
                    blocks: Vec::new(),
                },
            )
            .map_err(|e| bad(e.to_string()))?;
        out.insert(id, Arc::new(o.content.clone()));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parse_forms() {
        let o = Override::parse("/root/.ssh/authorized_keys=ssh-ed25519 AAAA x=y").unwrap();
        assert_eq!(o.path, "/root/.ssh/authorized_keys");
        assert_eq!(o.content, b"ssh-ed25519 AAAA x=y");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c");
        std::fs::write(&f, b"from file").unwrap();
        let o = Override::parse(&format!("/etc/motd=@{}", f.display())).unwrap();
        assert_eq!(o.content, b"from file");
        for bad in [
            "etc/motd=x",
            "/etc/motd",
            "/=x",
            "/a/../b=x",
            "/etc/m=@/nonexistent/x",
        ] {
            assert!(Override::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn apply_replaces_and_adds() {
        let mut tree = Tree::new(Meta::root(0o755, 1));
        let etc = tree.mkdir_p("etc", &Meta::root(0o755, 1)).unwrap();
        tree.insert(
            etc,
            "hostname",
            Meta::numeric(0o600, 5, 6, 1),
            Kind::File {
                size: 3,
                blocks: vec![],
            },
        )
        .unwrap();
        let map = apply(
            &mut tree,
            &[
                Override::new("/etc/hostname", "vm1\n"),
                Override::new("/root/.ssh/authorized_keys", "key"),
            ],
            9,
        )
        .unwrap();
        let h = tree.lookup("/etc/hostname").unwrap();
        assert_eq!(tree.node(h).meta.uid, 5, "owner kept");
        assert_eq!(tree.node(h).kind.size(), 4);
        assert_eq!(map[&h].as_slice(), b"vm1\n");
        let k = tree.lookup("/root/.ssh/authorized_keys").unwrap();
        assert_eq!(tree.node(k).meta.mode, 0o644);
        assert!(apply(&mut tree, &[Override::new("/etc", "x")], 9).is_err());
    }
}
