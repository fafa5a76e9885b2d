//! Building a [`Tree`] from archive members or directory entries, safely: path
//! normalisation, limits, symlink and hard-link rules, and the final child order.

use std::collections::HashMap;

use flist_format::{Block, Kind, Meta, NodeId, Tree};

use crate::error::{ConvertError, LimitKind, Result};
use crate::options::{warn, Limits, OwnerNames, PathPolicy, Warnings};

/// Identifies the content of one regular file in the chunk pipeline.
pub(crate) type FileId = u64;

/// Normalises a member path: UTF-8, no absolute path or `..` (by policy), `.` and empty
/// components dropped, limits checked. Returns the components (empty for the root).
pub(crate) fn normalise_path(
    raw: &[u8],
    policy: PathPolicy,
    limits: &Limits,
    warnings: &mut Warnings,
) -> Result<Vec<String>> {
    let text = std::str::from_utf8(raw).map_err(|_| ConvertError::NonUtf8Name {
        path: String::from_utf8_lossy(raw).into_owned(),
        hex: hex::encode(raw),
    })?;
    if text.contains('\0') {
        return Err(ConvertError::InvalidPath {
            path: text.replace('\0', "\\0"),
        });
    }
    if text.starts_with('/') {
        match policy {
            PathPolicy::Reject => return Err(ConvertError::AbsolutePath { path: text.into() }),
            PathPolicy::Strip => warnings.add(warn::ABSOLUTE),
        }
    }
    let mut comps: Vec<&str> = Vec::new();
    let mut dotdot = false;
    for c in text.split('/') {
        match c {
            "" | "." => {}
            ".." => match policy {
                PathPolicy::Reject => return Err(ConvertError::PathEscape { path: text.into() }),
                PathPolicy::Strip => {
                    dotdot = true;
                    comps.pop();
                }
            },
            c => {
                if comps.len() >= limits.max_depth {
                    return Err(limit(
                        LimitKind::Depth,
                        comps.len() as u64 + 1,
                        limits.max_depth as u64,
                        text,
                    ));
                }
                if c.len() > limits.max_name_len {
                    return Err(limit(
                        LimitKind::NameLength,
                        c.len() as u64,
                        limits.max_name_len as u64,
                        text,
                    ));
                }
                comps.push(c);
            }
        }
    }
    if dotdot {
        warnings.add(warn::DOTDOT);
    }
    let len = comps
        .iter()
        .map(|c| c.len() + 1)
        .sum::<usize>()
        .saturating_sub(1);
    if len > limits.max_path_len {
        return Err(limit(
            LimitKind::PathLength,
            len as u64,
            limits.max_path_len as u64,
            text,
        ));
    }
    Ok(comps.into_iter().map(str::to_string).collect())
}

fn limit(what: LimitKind, value: u64, limit: u64, entry: &str) -> ConvertError {
    let mut e = entry.to_string();
    if e.len() > 200 {
        let mut cut = 200;
        while !e.is_char_boundary(cut) {
            cut -= 1;
        }
        e.truncate(cut);
        e.push_str("...");
    }
    ConvertError::Limit {
        what,
        value,
        limit,
        entry: Some(e),
    }
}

/// Owner and group names by id, looked up once each.
pub(crate) struct NameCache {
    mode: OwnerNames,
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

fn numeric_name(id: u32) -> String {
    if id == 0 {
        "root".into()
    } else {
        id.to_string()
    }
}

impl NameCache {
    pub(crate) fn new(mode: OwnerNames) -> Self {
        NameCache {
            mode,
            users: HashMap::new(),
            groups: HashMap::new(),
        }
    }

    /// The name of user `uid`.
    pub(crate) fn user(&mut self, uid: u32) -> String {
        let mode = self.mode;
        self.users
            .entry(uid)
            .or_insert_with(|| {
                let local = match mode {
                    OwnerNames::Local => {
                        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                            .ok()
                            .flatten()
                            .map(|u| u.name)
                    }
                    OwnerNames::Numeric => None,
                };
                local.unwrap_or_else(|| numeric_name(uid))
            })
            .clone()
    }

    /// The name of group `gid`.
    pub(crate) fn group(&mut self, gid: u32) -> String {
        let mode = self.mode;
        self.groups
            .entry(gid)
            .or_insert_with(|| {
                let local = match mode {
                    OwnerNames::Local => {
                        nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
                            .ok()
                            .flatten()
                            .map(|g| g.name)
                    }
                    OwnerNames::Numeric => None,
                };
                local.unwrap_or_else(|| numeric_name(gid))
            })
            .clone()
    }
}

/// Clamps a time in seconds to `u32`, counting a warning when it does not fit.
pub(crate) fn clamp_time(t: i128, warnings: &mut Warnings) -> u32 {
    if t < 0 {
        warnings.add(warn::TIME_RANGE);
        0
    } else if t > u32::MAX as i128 {
        warnings.add(warn::TIME_RANGE);
        u32::MAX
    } else {
        t as u32
    }
}

/// Clamps a uid/gid to `u32`, counting a warning when it does not fit.
pub(crate) fn clamp_id(id: u64, warnings: &mut Warnings) -> u32 {
    u32::try_from(id).unwrap_or_else(|_| {
        warnings.add(warn::ID_RANGE);
        u32::MAX
    })
}

/// A hook asked before each member is placed, with the tree so far, the member's path and,
/// for a hard link, its target; `Ok(false)` skips the member. The OCI layer reader uses it
/// to turn whiteouts and hard links to lower layers into layer changes.
pub(crate) type PlaceHook =
    Box<dyn FnMut(&Tree, &[String], Option<&[String]>) -> Result<bool> + Send>;

/// Accumulates a tree, remembering which regular files carry which content.
pub(crate) struct TreeBuilder {
    /// Placement hook (OCI layers), `None` for plain archives.
    pub hook: Option<PlaceHook>,
    pub tree: Tree,
    /// Regular-file nodes and the content they carry.
    file_of: HashMap<NodeId, FileId>,
    pub warnings: Warnings,
    pub hard_links: u64,
    /// Whether a member described the root itself.
    root_set: bool,
    /// Time of the first member placed (the root's time when no member describes it).
    first_time: Option<u32>,
}

impl TreeBuilder {
    /// A builder whose root is root:root 0755 at `time`.
    pub(crate) fn new(time: u32) -> Self {
        TreeBuilder {
            hook: None,
            tree: Tree::new(Meta::root(0o755, time)),
            file_of: HashMap::new(),
            warnings: Warnings::default(),
            hard_links: 0,
            root_set: false,
            first_time: None,
        }
    }

    /// The parent directory of `comps`, creating missing (implicit) directories as
    /// root:root 0755 with `time`. Refuses to go through symlinks and non-directories.
    fn parent_of(&mut self, comps: &[String], time: u32) -> Result<NodeId> {
        let mut cur = Tree::ROOT;
        let parents = &comps[..comps.len().saturating_sub(1)];
        for (i, c) in parents.iter().enumerate() {
            cur = match self.tree.child(cur, c) {
                Some(id) => match &self.tree.node(id).kind {
                    Kind::Dir { .. } => id,
                    Kind::Symlink { .. } => {
                        return Err(ConvertError::BeneathSymlink {
                            path: comps.join("/"),
                            symlink: comps[..=i].join("/"),
                        })
                    }
                    _ => {
                        return Err(ConvertError::NotADirectory {
                            path: comps.join("/"),
                            parent: comps[..=i].join("/"),
                        })
                    }
                },
                None => self
                    .tree
                    .insert(cur, c, Meta::root(0o755, time), Kind::empty_dir())?,
            };
        }
        Ok(cur)
    }

    /// Asks the placement hook (if any) whether to place the member at `comps`.
    fn hooked(&mut self, comps: &[String], link_target: Option<&[String]>) -> Result<bool> {
        match self.hook.as_mut() {
            Some(h) => h(&self.tree, comps, link_target),
            None => Ok(true),
        }
    }

    /// Places an entry at `comps`, replacing an earlier one as extraction would. Returns
    /// `None` when the hook skipped it.
    pub(crate) fn place(
        &mut self,
        comps: &[String],
        meta: Meta,
        kind: Kind,
    ) -> Result<Option<NodeId>> {
        if !self.hooked(comps, None)? {
            return Ok(None);
        }
        self.place_inner(comps, meta, kind).map(Some)
    }

    fn place_inner(&mut self, comps: &[String], meta: Meta, kind: Kind) -> Result<NodeId> {
        self.first_time.get_or_insert(meta.mtime);
        let Some(name) = comps.last() else {
            self.root_set = true;
            // The root itself ("./"): only a directory may describe it.
            if let Kind::Dir { size, .. } = kind {
                let root = self.tree.node_mut(Tree::ROOT);
                root.meta = meta;
                if let Kind::Dir { size: s, .. } = &mut root.kind {
                    *s = size;
                }
                return Ok(Tree::ROOT);
            }
            return Err(ConvertError::RootNotADirectory { path: "/".into() });
        };
        let parent = self.parent_of(comps, meta.mtime)?;
        let id = self.tree.set(parent, name, meta, kind)?;
        self.file_of.remove(&id);
        Ok(id)
    }

    /// Places a regular file whose content is `file` (`None` when the hook skipped it).
    pub(crate) fn place_file(
        &mut self,
        comps: &[String],
        meta: Meta,
        size: u64,
        file: FileId,
    ) -> Result<Option<NodeId>> {
        let Some(id) = self.place(
            comps,
            meta,
            Kind::File {
                size,
                blocks: Vec::new(),
            },
        )?
        else {
            return Ok(None);
        };
        self.file_of.insert(id, file);
        Ok(Some(id))
    }

    /// Places a hard link to the entry at `target`: a regular file shares its content, a
    /// symlink or special is copied. Metadata is the target's (they share an inode).
    /// `None` when the hook skipped it.
    pub(crate) fn place_hard_link(
        &mut self,
        comps: &[String],
        target: &[String],
    ) -> Result<Option<NodeId>> {
        if !self.hooked(comps, Some(target))? {
            return Ok(None);
        }
        let missing = || ConvertError::HardLinkTargetMissing {
            path: comps.join("/"),
            target: target.join("/"),
        };
        if target.is_empty() {
            return Err(ConvertError::HardLinkToDirectory {
                path: comps.join("/"),
                target: "/".into(),
            });
        }
        let tid = self.tree.lookup(&target.join("/")).ok_or_else(missing)?;
        let node = self.tree.node(tid);
        if node.kind.is_dir() {
            return Err(ConvertError::HardLinkToDirectory {
                path: comps.join("/"),
                target: target.join("/"),
            });
        }
        if comps == target {
            // A link to itself changes nothing.
            return Ok(Some(tid));
        }
        let (meta, kind) = (node.meta.clone(), node.kind.clone());
        let file = self.file_of.get(&tid).copied();
        let id = self.place_inner(comps, meta, kind)?;
        if let Some(f) = file {
            self.file_of.insert(id, f);
        }
        self.hard_links += 1;
        self.warnings.add(warn::HARDLINK);
        Ok(Some(id))
    }

    /// Fills in file blocks from the pipeline results, orders children, and returns the
    /// tree. `blocks` maps file ids to their chunks in order.
    pub(crate) fn finish(mut self, blocks: &mut ChunkResults) -> Result<(Tree, Warnings, u64)> {
        for (&id, &file) in &self.file_of {
            let Some(node) = self.tree.get(id) else {
                continue;
            };
            if !matches!(node.kind, Kind::File { .. }) {
                continue;
            }
            let list = blocks.take(file)?;
            if let Kind::File { blocks: b, size } = &mut self.tree.node_mut(id).kind {
                let expected = flist_format::codec::chunk_count(*size);
                if list.len() as u64 != expected {
                    return Err(ConvertError::Internal(format!(
                        "file {id}: {} chunks for {size} bytes",
                        list.len()
                    )));
                }
                *b = list;
            }
        }
        if !self.root_set {
            if let Some(t) = self.first_time {
                let m = &mut self.tree.node_mut(Tree::ROOT).meta;
                m.mtime = t;
                m.ctime = t;
            }
        }
        sort_children(&mut self.tree);
        Ok((self.tree, self.warnings, self.hard_links))
    }
}

/// Chunks produced by the pipeline, by file id and chunk index.
#[derive(Default)]
pub(crate) struct ChunkResults {
    files: HashMap<FileId, Vec<Option<Block>>>,
}

impl ChunkResults {
    pub(crate) fn put(&mut self, file: FileId, index: u32, block: Block) {
        let v = self.files.entry(file).or_default();
        let i = index as usize;
        if v.len() <= i {
            v.resize(i + 1, None);
        }
        v[i] = Some(block);
    }

    /// The blocks of a file in order (cloned: hard links share them).
    fn take(&mut self, file: FileId) -> Result<Vec<Block>> {
        match self.files.get(&file) {
            None => Ok(Vec::new()),
            Some(v) => v
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    b.ok_or_else(|| {
                        ConvertError::Internal(format!("file {file}: chunk {i} missing"))
                    })
                })
                .collect(),
        }
    }
}

/// Orders every directory's children as the reference writer does: directories first, then
/// everything else, each group by name (byte order).
pub fn sort_children(tree: &mut Tree) {
    let dirs: Vec<NodeId> = tree
        .walk()
        .filter(|&id| tree.node(id).kind.is_dir())
        .collect();
    for d in dirs {
        let mut kids: Vec<(bool, String, NodeId)> = tree
            .children(d)
            .map(|(n, c)| (!tree.node(c).kind.is_dir(), n.to_string(), c))
            .collect();
        if kids.len() < 2 {
            continue;
        }
        kids.sort_by(|a, b| (a.0, a.1.as_bytes()).cmp(&(b.0, b.1.as_bytes())));
        if let Kind::Dir { children, .. } = &mut tree.node_mut(d).kind {
            *children = kids.into_iter().map(|(_, n, c)| (n, c)).collect();
        }
    }
}
