//! One layer: its tar stream through the archive converter (with a placement hook that
//! turns OCI whiteouts and hard links to lower layers into changes), the resulting
//! [`LayerChanges`], and applying changes onto the flattened tree.

use std::collections::HashSet;
use std::io::Read;
use std::sync::{Arc, Mutex};

use flist_format::{Block, Kind, Meta, SpecialKind, Tree};
use flist_store::BlockingStore;
use serde::{Deserialize, Serialize};

use crate::builder::TreeBuilder;
use crate::error::{ConvertError, Result};
use crate::options::{ConvertOptions, Counters, Stats};
use crate::{pipeline, tarball};

/// Version of the serialized form (cache files of another version are ignored).
pub(crate) const FORMAT_VERSION: u32 = 1;

/// What one layer does to the layers below it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct LayerChanges {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// Layer (blob) digest.
    pub digest: String,
    /// Directories whose lower-layer content is hidden (`.wh..wh..opq`).
    pub opaque: Vec<String>,
    /// Paths of lower layers deleted (`.wh.<name>`).
    pub whiteouts: Vec<String>,
    /// The layer's entries in pre-order (parents first).
    pub entries: Vec<EntryRec>,
    /// Hard links whose target is in a lower layer: `(path, target)`.
    pub links: Vec<(String, String)>,
}

/// One entry of a layer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct EntryRec {
    /// Path relative to the root (`""` for the root).
    pub path: String,
    /// Whether the layer has a member for it (else it is an implicit parent directory,
    /// which must not change a lower layer's directory).
    pub explicit: bool,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Owner name.
    pub uname: String,
    /// Group name.
    pub gname: String,
    /// Modification time.
    pub mtime: u32,
    /// Change time.
    pub ctime: u32,
    /// Kind and content.
    pub kind: KindRec,
}

/// Serializable [`Kind`] (blocks as 64 hex digits: store key then decryption key).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) enum KindRec {
    /// Directory.
    Dir {
        /// Recorded size.
        size: u64,
    },
    /// Regular file.
    File {
        /// Size.
        size: u64,
        /// Chunks.
        blocks: Vec<String>,
    },
    /// Symlink.
    Symlink {
        /// Target.
        target: String,
    },
    /// Special file.
    Special {
        /// `socket`, `block`, `chardev`, `fifo` or `unknown`.
        kind: String,
        /// Device numbers.
        rdev: Option<(u32, u32)>,
    },
}

fn block_hex(b: &Block) -> String {
    hex::encode(b.to_bytes())
}

fn block_from_hex(s: &str) -> Option<Block> {
    Block::from_bytes(&hex::decode(s).ok()?)
}

impl KindRec {
    fn from_kind(k: &Kind) -> KindRec {
        match k {
            Kind::Dir { size, .. } => KindRec::Dir { size: *size },
            Kind::File { size, blocks } => KindRec::File {
                size: *size,
                blocks: blocks.iter().map(block_hex).collect(),
            },
            Kind::Symlink { target } => KindRec::Symlink {
                target: target.clone(),
            },
            Kind::Special { kind, rdev } => KindRec::Special {
                kind: match kind {
                    SpecialKind::Socket => "socket",
                    SpecialKind::Block => "block",
                    SpecialKind::Chardev => "chardev",
                    SpecialKind::Fifo => "fifo",
                    SpecialKind::Unknown => "unknown",
                }
                .into(),
                rdev: *rdev,
            },
        }
    }

    fn to_kind(&self) -> std::result::Result<Kind, String> {
        Ok(match self {
            KindRec::Dir { size } => Kind::Dir {
                children: Default::default(),
                size: *size,
            },
            KindRec::File { size, blocks } => Kind::File {
                size: *size,
                blocks: blocks
                    .iter()
                    .map(|b| block_from_hex(b).ok_or_else(|| format!("bad block {b:?}")))
                    .collect::<std::result::Result<_, _>>()?,
            },
            KindRec::Symlink { target } => Kind::Symlink {
                target: target.clone(),
            },
            KindRec::Special { kind, rdev } => Kind::Special {
                kind: match kind.as_str() {
                    "socket" => SpecialKind::Socket,
                    "block" => SpecialKind::Block,
                    "chardev" => SpecialKind::Chardev,
                    "fifo" => SpecialKind::Fifo,
                    _ => SpecialKind::Unknown,
                },
                rdev: *rdev,
            },
        })
    }

    /// Store keys of a file's chunks.
    pub(crate) fn chunk_keys(&self) -> Vec<Vec<u8>> {
        match self {
            KindRec::File { blocks, .. } => blocks
                .iter()
                .filter_map(|b| block_from_hex(b))
                .map(|b| b.id().to_vec())
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl EntryRec {
    fn meta(&self) -> Meta {
        Meta {
            mode: self.mode & 0o7777,
            uid: self.uid,
            gid: self.gid,
            uname: self.uname.clone(),
            gname: self.gname.clone(),
            mtime: self.mtime,
            ctime: self.ctime,
        }
    }
}

/// What the placement hook collects while a layer is read.
#[derive(Default)]
struct HookState {
    opaque: Vec<String>,
    whiteouts: Vec<String>,
    links: Vec<(String, String)>,
    explicit: HashSet<String>,
}

/// Converter statistics of one layer.
pub(crate) fn layer_stats(
    counters: &Counters,
    hard_links: u64,
    warnings: Vec<crate::options::Warning>,
) -> Stats {
    let r = counters.report();
    Stats {
        hard_links,
        bytes_read: r.bytes_read,
        bytes_expanded: r.bytes_expanded,
        entries: r.entries,
        chunks_written: r.chunks_new,
        chunks_present: counters
            .chunks_present
            .load(std::sync::atomic::Ordering::Relaxed),
        chunks_deduplicated: counters
            .chunks_dedup
            .load(std::sync::atomic::Ordering::Relaxed),
        warnings,
        ..Stats::default()
    }
}

/// Reads one layer's tar stream (gzip, zstd or plain; detected by the converter) into
/// changes, storing file chunks in `store` as they are read.
pub(crate) fn read_layer(
    input: &mut (dyn Read + Send),
    digest: &str,
    store: &BlockingStore,
    opts: &ConvertOptions,
) -> Result<(LayerChanges, Stats)> {
    let counters = Counters::default();
    let state = Arc::new(Mutex::new(HookState::default()));
    let mut builder = TreeBuilder::new(0)?;
    let hook_state = state.clone();
    builder.hook = Some(Box::new(
        move |comps: &[String], link: Option<(&[String], bool)>| {
            let mut st = hook_state
                .lock()
                .map_err(|_| ConvertError::Internal("layer hook state poisoned".into()))?;
            if let Some(name) = comps.last() {
                if let Some(rest) = name.strip_prefix(".wh.") {
                    let parent = comps[..comps.len() - 1].join("/");
                    if rest == ".wh..opq" {
                        st.opaque.push(parent);
                    } else if !rest.starts_with(".wh.") && !rest.is_empty() {
                        // (other `.wh..wh.` names are aufs bookkeeping: dropped)
                        st.whiteouts.push(if parent.is_empty() {
                            rest.to_string()
                        } else {
                            format!("{parent}/{rest}")
                        });
                    }
                    return Ok(false);
                }
            }
            if let Some((target, in_layer)) = link {
                if !in_layer {
                    // A link to a file of a lower layer: resolved when the layer is applied.
                    st.links.push((comps.join("/"), target.join("/")));
                    return Ok(false);
                }
            }
            st.explicit.insert(comps.join("/"));
            Ok(true)
        },
    ));
    let ((), results) = pipeline::run(Some(store), opts, &counters, |sender| {
        tarball::read_archive(input, opts, &counters, sender, &mut builder)
    })?;
    builder.hook = None;
    if let Some(p) = &opts.progress {
        p.progress(&counters.report());
    }
    let mut staged = builder.finish(results)?;
    let (warnings, hard_links) = (std::mem::take(&mut staged.warnings), staged.hard_links);
    let tree = staged.into_tree()?;
    let st = std::mem::take(
        &mut *state
            .lock()
            .map_err(|_| ConvertError::Internal("layer hook state poisoned".into()))?,
    );
    let mut entries = Vec::with_capacity(tree.len());
    for id in tree.walk() {
        let n = tree.node(id);
        let path = tree.path_of(id);
        let explicit = st.explicit.contains(&path);
        if id == Tree::ROOT && !explicit {
            continue;
        }
        entries.push(EntryRec {
            explicit,
            mode: n.meta.mode,
            uid: n.meta.uid,
            gid: n.meta.gid,
            uname: n.meta.uname.clone(),
            gname: n.meta.gname.clone(),
            mtime: n.meta.mtime,
            ctime: n.meta.ctime,
            kind: KindRec::from_kind(&n.kind),
            path,
        });
    }
    let changes = LayerChanges {
        version: FORMAT_VERSION,
        digest: digest.to_string(),
        opaque: st.opaque,
        whiteouts: st.whiteouts,
        entries,
        links: st.links,
    };
    let stats = layer_stats(&counters, hard_links, warnings.into_vec());
    Ok((changes, stats))
}

/// The directory at `path`, created (root:root 0755) where missing and replacing
/// non-directories on the way, as extracting a member beneath them would.
fn ensure_dir(tree: &mut Tree, path: &str) -> std::result::Result<usize, String> {
    let comps = flist_format::tree::components(path).map_err(|e| e.to_string())?;
    let mut cur = Tree::ROOT;
    for c in comps {
        cur = match tree.child(cur, c) {
            Some(id) if tree.node(id).kind.is_dir() => id,
            _ => tree
                .set(cur, c, Meta::root(0o755, 0), Kind::empty_dir())
                .map_err(|e| e.to_string())?,
        };
    }
    Ok(cur)
}

fn split_parent(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((p, n)) => (p, n),
        None => ("", path),
    }
}

/// Applies a layer's changes onto the tree of the layers below it: opaque directories are
/// emptied and whiteouts removed first (they hide lower content only), then entries are set
/// (a directory over a directory keeps the children; anything else replaces), then hard
/// links to lower-layer files are resolved.
pub(crate) fn apply(tree: &mut Tree, ch: &LayerChanges) -> std::result::Result<(), String> {
    for d in &ch.opaque {
        if let Some(id) = tree.lookup(d) {
            if tree.node(id).kind.is_dir() {
                let kids: Vec<usize> = tree.children(id).map(|(_, c)| c).collect();
                for k in kids {
                    tree.remove(k);
                }
            }
        }
    }
    for w in &ch.whiteouts {
        if let Some(id) = tree.lookup(w) {
            if id != Tree::ROOT {
                tree.remove(id);
            }
        }
    }
    for e in &ch.entries {
        let kind = e.kind.to_kind().map_err(|r| format!("{}: {r}", e.path))?;
        if e.path.is_empty() {
            if e.explicit {
                tree.node_mut(Tree::ROOT).meta = e.meta();
            }
            continue;
        }
        let (parent_path, name) = split_parent(&e.path);
        let parent = ensure_dir(tree, parent_path)?;
        let existing = tree.child(parent, name);
        let keep_lower_dir =
            !e.explicit && kind.is_dir() && existing.is_some_and(|id| tree.node(id).kind.is_dir());
        if keep_lower_dir {
            continue;
        }
        tree.set(parent, name, e.meta(), kind)
            .map_err(|err| format!("{}: {err}", e.path))?;
    }
    for d in &ch.opaque {
        ensure_dir(tree, d)?;
    }
    for (path, target) in &ch.links {
        let tid = tree.lookup(target).ok_or_else(|| {
            format!(
                "hard link {path:?} -> {target:?}: target is in neither this layer nor a lower one"
            )
        })?;
        let node = tree.node(tid);
        if node.kind.is_dir() {
            return Err(format!(
                "hard link {path:?} -> {target:?}: target is a directory"
            ));
        }
        let (meta, kind) = (node.meta.clone(), node.kind.clone());
        let (parent_path, name) = split_parent(path);
        let parent = ensure_dir(tree, parent_path)?;
        tree.set(parent, name, meta, kind)
            .map_err(|err| format!("{path}: {err}"))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rec(path: &str, explicit: bool, kind: KindRec) -> EntryRec {
        EntryRec {
            path: path.into(),
            explicit,
            mode: 0o755,
            uid: 0,
            gid: 0,
            uname: "root".into(),
            gname: "root".into(),
            mtime: 7,
            ctime: 7,
            kind,
        }
    }

    #[test]
    fn overlay_rules() {
        let m = Meta::root(0o700, 1);
        let mut t = Tree::new(m.clone());
        let etc = t.mkdir_p("etc", &m).unwrap();
        t.insert(
            etc,
            "a",
            m.clone(),
            Kind::File {
                size: 0,
                blocks: vec![],
            },
        )
        .unwrap();
        t.insert(
            etc,
            "b",
            m.clone(),
            Kind::File {
                size: 0,
                blocks: vec![],
            },
        )
        .unwrap();
        let opt = t.mkdir_p("opt/x", &m).unwrap();
        t.insert(
            opt,
            "old",
            m.clone(),
            Kind::File {
                size: 0,
                blocks: vec![],
            },
        )
        .unwrap();
        t.insert(
            Tree::ROOT,
            "f",
            m.clone(),
            Kind::File {
                size: 0,
                blocks: vec![],
            },
        )
        .unwrap();
        let ch = LayerChanges {
            version: FORMAT_VERSION,
            digest: "d".into(),
            opaque: vec!["opt/x".into()],
            whiteouts: vec!["etc/a".into(), "nothing/here".into()],
            entries: vec![
                // implicit parent: lower etc keeps its metadata
                rec("etc", false, KindRec::Dir { size: 4096 }),
                rec("etc/c", true, KindRec::Symlink { target: "b".into() }),
                rec(
                    "opt/x/new",
                    true,
                    KindRec::File {
                        size: 0,
                        blocks: vec![],
                    },
                ),
                // a directory replaces the file f
                rec("f", true, KindRec::Dir { size: 4096 }),
            ],
            links: vec![("etc/hl".into(), "etc/b".into())],
        };
        apply(&mut t, &ch).unwrap();
        assert!(t.lookup("etc/a").is_none());
        assert_eq!(t.node(t.lookup("etc").unwrap()).meta.mode, 0o700);
        assert!(t.lookup("etc/c").is_some());
        assert!(t.lookup("opt/x/old").is_none());
        assert!(t.lookup("opt/x/new").is_some());
        assert!(t.node(t.lookup("f").unwrap()).kind.is_dir());
        assert!(matches!(
            t.node(t.lookup("etc/hl").unwrap()).kind,
            Kind::File { .. }
        ));
        let bad = LayerChanges {
            links: vec![("x".into(), "missing".into())],
            ..Default::default()
        };
        assert!(apply(&mut t, &bad).is_err());
    }
}
