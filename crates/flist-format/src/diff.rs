//! Comparing two trees, for tests and tools: a list of human-readable differences.

use crate::tree::{Kind, NodeId, Tree};

/// What [`diff`] ignores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiffOptions {
    /// Ignore recorded directory sizes.
    pub ignore_dir_size: bool,
    /// Ignore ctimes.
    pub ignore_ctime: bool,
    /// Ignore mtimes of directories (which change as entries are added).
    pub ignore_dir_mtime: bool,
    /// Treat all special kinds as equal (the reference records every special as a socket);
    /// device numbers are still compared.
    pub loose_special_kind: bool,
    /// Ignore owner and group names (numeric ids are still compared).
    pub ignore_owner_names: bool,
    /// Ignore the order of directory children.
    pub ignore_order: bool,
    /// Ignore chunk lists of regular files (sizes are still compared), e.g. when the two
    /// sides were chunked by different snappy implementations.
    pub ignore_blocks: bool,
}

fn show(p: &str) -> String {
    format!("/{p}")
}

/// Lists the differences between `a` and `b`; empty when they are equal under `opts`.
pub fn diff(a: &Tree, b: &Tree, opts: &DiffOptions) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack: Vec<(NodeId, NodeId, String)> = vec![(Tree::ROOT, Tree::ROOT, String::new())];
    while let Some((ai, bi, path)) = stack.pop() {
        let (na, nb) = (a.node(ai), b.node(bi));
        let p = show(&path);
        let ma = &na.meta;
        let mb = &nb.meta;
        if ma.mode != mb.mode {
            out.push(format!("{p}: mode {:o} != {:o}", ma.mode, mb.mode));
        }
        if (ma.uid, ma.gid) != (mb.uid, mb.gid) {
            out.push(format!(
                "{p}: owner {}:{} != {}:{}",
                ma.uid, ma.gid, mb.uid, mb.gid
            ));
        }
        if !opts.ignore_owner_names && (&ma.uname, &ma.gname) != (&mb.uname, &mb.gname) {
            out.push(format!(
                "{p}: owner names {}:{} != {}:{}",
                ma.uname, ma.gname, mb.uname, mb.gname
            ));
        }
        let is_dir = na.kind.is_dir() && nb.kind.is_dir();
        if ma.mtime != mb.mtime && !(is_dir && opts.ignore_dir_mtime) {
            out.push(format!("{p}: mtime {} != {}", ma.mtime, mb.mtime));
        }
        if ma.ctime != mb.ctime && !opts.ignore_ctime {
            out.push(format!("{p}: ctime {} != {}", ma.ctime, mb.ctime));
        }
        match (&na.kind, &nb.kind) {
            (
                Kind::Dir {
                    children: ca,
                    size: sa,
                },
                Kind::Dir {
                    children: cb,
                    size: sb,
                },
            ) => {
                if sa != sb && !opts.ignore_dir_size {
                    out.push(format!("{p}: directory size {sa} != {sb}"));
                }
                for name in ca.keys().filter(|k| !cb.contains_key(*k)) {
                    out.push(format!(
                        "{}: only in the first tree",
                        show(&join(&path, name))
                    ));
                }
                for name in cb.keys().filter(|k| !ca.contains_key(*k)) {
                    out.push(format!(
                        "{}: only in the second tree",
                        show(&join(&path, name))
                    ));
                }
                if !opts.ignore_order {
                    let oa: Vec<&String> = ca.keys().filter(|k| cb.contains_key(*k)).collect();
                    let ob: Vec<&String> = cb.keys().filter(|k| ca.contains_key(*k)).collect();
                    if oa != ob {
                        out.push(format!("{p}: children in a different order"));
                    }
                }
                let mut pairs: Vec<(NodeId, NodeId, String)> = ca
                    .iter()
                    .filter_map(|(k, &x)| cb.get(k).map(|&y| (x, y, join(&path, k))))
                    .collect();
                pairs.reverse();
                stack.extend(pairs);
            }
            (
                Kind::File {
                    size: sa,
                    blocks: ba,
                },
                Kind::File {
                    size: sb,
                    blocks: bb,
                },
            ) => {
                if sa != sb {
                    out.push(format!("{p}: size {sa} != {sb}"));
                }
                if ba != bb && !opts.ignore_blocks {
                    out.push(format!(
                        "{p}: chunks differ ({} vs {} blocks)",
                        ba.len(),
                        bb.len()
                    ));
                }
            }
            (Kind::Symlink { target: ta }, Kind::Symlink { target: tb }) => {
                if ta != tb {
                    out.push(format!("{p}: symlink target {ta:?} != {tb:?}"));
                }
            }
            (Kind::Special { kind: ka, rdev: ra }, Kind::Special { kind: kb, rdev: rb }) => {
                if ka != kb && !opts.loose_special_kind {
                    out.push(format!("{p}: special kind {ka:?} != {kb:?}"));
                }
                if ra != rb {
                    out.push(format!("{p}: device {ra:?} != {rb:?}"));
                }
            }
            (ka, kb) => out.push(format!("{p}: {} != {}", ka.type_name(), kb.type_name())),
        }
    }
    out
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}
