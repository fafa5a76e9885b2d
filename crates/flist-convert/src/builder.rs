//! Building a [`Tree`] from archive members or directory entries, safely: path
//! normalisation, limits, symlink and hard-link rules, and the final child order.

use std::collections::HashMap;

use flist_format::writer::{ChildEntry, DirSink};
use flist_format::{Block, Kind, Meta, NodeId, Tree};

use crate::error::{ConvertError, LimitKind, Result};
use crate::options::{warn, Limits, OwnerNames, PathPolicy, Warnings};
pub(crate) use crate::stage::FileId;
use crate::stage::{join, Counts, EntryId, Row, Shape, Stage};

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

/// A hook asked before each member is placed, with the member's path and, for a hard
/// link, its target and whether the target is in the tree so far; `Ok(false)` skips the
/// member. The OCI layer reader uses it to turn whiteouts and hard links to lower layers
/// into layer changes.
pub(crate) type PlaceHook =
    Box<dyn FnMut(&[String], Option<(&[String], bool)>) -> Result<bool> + Send>;

/// Accumulates a tree in a [`Stage`] (on disk), remembering which regular files carry
/// which content.
pub(crate) struct TreeBuilder {
    /// Placement hook (OCI layers), `None` for plain archives.
    pub hook: Option<PlaceHook>,
    stage: Stage,
    pub warnings: Warnings,
    pub hard_links: u64,
    /// Whether a member described the root itself.
    root_set: bool,
    /// Time of the first member placed (the root's time when no member describes it).
    first_time: Option<u32>,
}

impl TreeBuilder {
    /// A builder whose root is root:root 0755 at `time`.
    pub(crate) fn new(time: u32) -> Result<Self> {
        Ok(TreeBuilder {
            hook: None,
            stage: Stage::new(&Meta::root(0o755, time))?,
            warnings: Warnings::default(),
            hard_links: 0,
            root_set: false,
            first_time: None,
        })
    }

    /// The parent directory of `comps`, creating missing (implicit) directories as
    /// root:root 0755 with `time`. Refuses to go through symlinks and non-directories.
    fn parent_of(&mut self, comps: &[String], time: u32) -> Result<EntryId> {
        let parents = &comps[..comps.len().saturating_sub(1)];
        let parent_path = join(parents);
        if let Some(id) = self.stage.cached_dir(&parent_path) {
            return Ok(id);
        }
        let mut cur = Stage::ROOT;
        for (i, c) in parents.iter().enumerate() {
            cur = match self.stage.child(cur, c)? {
                Some((id, Shape::Dir)) => id,
                Some((_, Shape::Symlink)) => {
                    return Err(ConvertError::BeneathSymlink {
                        path: comps.join("/"),
                        symlink: comps[..=i].join("/"),
                    })
                }
                Some(_) => {
                    return Err(ConvertError::NotADirectory {
                        path: comps.join("/"),
                        parent: comps[..=i].join("/"),
                    })
                }
                None => {
                    let id = self.stage.insert(
                        cur,
                        c,
                        &Meta::root(0o755, time),
                        &Kind::empty_dir(),
                        None,
                    )?;
                    self.stage.mark_implicit(id)?;
                    id
                }
            };
        }
        self.stage.cache_dir(&parent_path, cur);
        Ok(cur)
    }

    /// Asks the placement hook (if any) whether to place the member at `comps`.
    fn hooked(&mut self, comps: &[String], link_target: Option<(&[String], bool)>) -> Result<bool> {
        match self.hook.as_mut() {
            Some(h) => h(comps, link_target),
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
    ) -> Result<Option<EntryId>> {
        if !self.hooked(comps, None)? {
            return Ok(None);
        }
        self.place_inner(comps, &meta, &kind, None).map(Some)
    }

    fn place_inner(
        &mut self,
        comps: &[String],
        meta: &Meta,
        kind: &Kind,
        file: Option<FileId>,
    ) -> Result<EntryId> {
        self.first_time.get_or_insert(meta.mtime);
        let Some(name) = comps.last() else {
            self.root_set = true;
            // The root itself ("./"): only a directory may describe it.
            if let Kind::Dir { size, .. } = kind {
                self.stage.set_dir_meta(Stage::ROOT, meta, *size)?;
                return Ok(Stage::ROOT);
            }
            return Err(ConvertError::RootNotADirectory { path: "/".into() });
        };
        flist_format::tree::validate_name(name)?;
        let parent = self.parent_of(comps, meta.mtime)?;
        self.stage.set(parent, name, meta, kind, file)
    }

    /// Places a regular file whose content is `file` (`None` when the hook skipped it).
    pub(crate) fn place_file(
        &mut self,
        comps: &[String],
        meta: Meta,
        size: u64,
        file: FileId,
    ) -> Result<Option<EntryId>> {
        if !self.hooked(comps, None)? {
            return Ok(None);
        }
        let kind = Kind::File {
            size,
            blocks: Vec::new(),
        };
        self.place_inner(comps, &meta, &kind, Some(file)).map(Some)
    }

    /// Places a hard link to the entry at `target`: a regular file shares its content, a
    /// symlink or special is copied. Metadata is the target's (they share an inode).
    /// `None` when the hook skipped it.
    pub(crate) fn place_hard_link(
        &mut self,
        comps: &[String],
        target: &[String],
    ) -> Result<Option<EntryId>> {
        let tid = self.stage.lookup(target)?;
        if !self.hooked(comps, Some((target, tid.is_some())))? {
            return Ok(None);
        }
        if target.is_empty() {
            return Err(ConvertError::HardLinkToDirectory {
                path: comps.join("/"),
                target: "/".into(),
            });
        }
        let tid = tid.ok_or_else(|| ConvertError::HardLinkTargetMissing {
            path: comps.join("/"),
            target: target.join("/"),
        })?;
        let row = self.stage.row(tid)?;
        if row.kind.is_dir() {
            return Err(ConvertError::HardLinkToDirectory {
                path: comps.join("/"),
                target: target.join("/"),
            });
        }
        if comps == target {
            // A link to itself changes nothing.
            return Ok(Some(tid));
        }
        let id = self.place_inner(comps, &row.meta, &row.kind, row.file)?;
        self.hard_links += 1;
        self.warnings.add(warn::HARDLINK);
        Ok(Some(id))
    }

    /// Completes the tree with the pipeline's chunk results (the root takes the first
    /// member's time when no member described it).
    pub(crate) fn finish(mut self, mut results: ChunkResults) -> Result<Staged> {
        if !self.root_set {
            if let Some(t) = self.first_time {
                let mut root = self.stage.row(Stage::ROOT)?;
                root.meta.mtime = t;
                root.meta.ctime = t;
                self.stage
                    .set_dir_meta(Stage::ROOT, &root.meta, root.kind.size())?;
            }
        }
        results.flush();
        Ok(Staged {
            stage: self.stage,
            results,
            warnings: self.warnings,
            hard_links: self.hard_links,
            root_set: self.root_set,
        })
    }
}

/// A converted tree, still on disk, with the chunks of its files.
pub(crate) struct Staged {
    pub stage: Stage,
    results: ChunkResults,
    pub warnings: Warnings,
    pub hard_links: u64,
    /// Whether a member described the root itself.
    pub root_set: bool,
}

impl Staged {
    /// A tree built directly in a stage (files carry their blocks).
    pub(crate) fn from_stage(stage: Stage) -> Staged {
        Staged {
            stage,
            results: ChunkResults::default(),
            warnings: Warnings::default(),
            hard_links: 0,
            root_set: true,
        }
    }

    /// Counts by kind (root not counted) and the sum of file sizes.
    pub(crate) fn counts(&self) -> Result<Counts> {
        self.stage.counts()
    }

    /// Fills in `row`'s file blocks from the chunk results.
    fn fill_blocks(&self, row: &mut Row) -> Result<()> {
        if let (Some(file), Kind::File { size, blocks }) = (row.file, &mut row.kind) {
            if blocks.is_empty() {
                *blocks = self
                    .results
                    .blocks(file, flist_format::codec::chunk_count(*size))?;
            }
        }
        Ok(())
    }

    /// Visits every directory depth first (the last child directory first, as the flist
    /// writer always did): its path, entry, own row and its children in the reference
    /// order (directories first, then by name), files with their blocks.
    pub(crate) fn for_each_dir(
        &self,
        cancel: &Option<crate::options::Cancel>,
        mut f: impl FnMut(&str, EntryId, Row, Vec<(EntryId, String, Row)>) -> Result<()>,
    ) -> Result<()> {
        let mut stack: Vec<(EntryId, String)> = vec![(Stage::ROOT, String::new())];
        while let Some((id, path)) = stack.pop() {
            crate::options::check_cancel(cancel)?;
            let row = self.stage.row(id)?;
            let mut children = self.stage.children(id)?;
            for (cid, name, crow) in children.iter_mut() {
                if crow.kind.is_dir() {
                    let cpath = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}/{name}")
                    };
                    stack.push((*cid, cpath));
                } else {
                    self.fill_blocks(crow)?;
                }
            }
            f(&path, id, row, children)?;
        }
        Ok(())
    }

    /// The distinct chunk store keys of every file, in batches of at most `batch`; returns
    /// how many there are (the set is kept on disk).
    pub(crate) fn chunk_keys(
        &self,
        batch: usize,
        f: &mut dyn FnMut(&[Vec<u8>]) -> Result<()>,
    ) -> Result<u64> {
        self.stage.distinct_keys(
            |add| {
                self.stage.for_each_file(|mut row| {
                    self.fill_blocks(&mut row)?;
                    if let Kind::File { blocks, .. } = &row.kind {
                        for b in blocks {
                            add(b.id())?;
                        }
                    }
                    Ok(())
                })
            },
            batch,
            f,
        )
    }

    /// Writes every directory into a writer of either format, one at a time.
    pub(crate) fn write_catalog(
        &self,
        w: &mut dyn DirSink,
        cancel: &Option<crate::options::Cancel>,
    ) -> Result<()> {
        self.for_each_dir(cancel, |path, _, row, children| {
            let kids: Vec<ChildEntry> = children
                .into_iter()
                .map(|(_, name, r)| (name, r.meta, r.kind))
                .collect();
            w.dir(path, &row.meta, row.kind.size(), &kids)
                .map_err(|e| ConvertError::Flist(e.to_string()))
        })
    }

    /// The whole tree in memory (children in the reference order).
    pub(crate) fn into_tree(self) -> Result<Tree> {
        let root = self.stage.row(Stage::ROOT)?;
        let mut tree = Tree::new(root.meta);
        if let Kind::Dir { size: s, .. } = &mut tree.node_mut(Tree::ROOT).kind {
            *s = root.kind.size();
        }
        let mut nodes: HashMap<EntryId, NodeId> = HashMap::new();
        nodes.insert(Stage::ROOT, Tree::ROOT);
        self.for_each_dir(&None, |_, id, _, children| {
            let parent = nodes.remove(&id).ok_or_else(|| {
                ConvertError::Internal(format!("staged directory {id} visited twice"))
            })?;
            for (cid, name, r) in children {
                let is_dir = r.kind.is_dir();
                let nid = tree.insert(parent, &name, r.meta, r.kind)?;
                if is_dir {
                    nodes.insert(cid, nid);
                }
            }
            Ok(())
        })?;
        Ok(tree)
    }
}

/// Chunks produced by the pipeline: the block of chunk `index` of the file whose content
/// starts at slot `file` is at slot `file + index` of an unnamed temporary file (32 bytes
/// each for `.flist` chunks, 64 for `.fl` blocks), so that memory does not grow with the
/// number of files. Writes are gathered and written in runs of consecutive slots.
#[derive(Default)]
pub(crate) struct ChunkResults {
    codec: flist_format::Codec,
    file: Option<std::fs::File>,
    pending: Vec<(u64, Block)>,
    error: Option<String>,
}

/// Blocks gathered before they are written out.
const PENDING_BLOCKS: usize = 4096;
impl ChunkResults {
    /// Results of blocks of `codec`.
    pub(crate) fn new(codec: flist_format::Codec) -> Self {
        ChunkResults {
            codec,
            ..Default::default()
        }
    }

    /// Bytes per block in the results file.
    fn slot_bytes(&self) -> u64 {
        2 * self.codec.id_len() as u64
    }

    pub(crate) fn put(&mut self, file: FileId, index: u32, block: Block) {
        self.pending.push((file + u64::from(index), block));
        if self.pending.len() >= PENDING_BLOCKS {
            self.flush();
        }
    }

    /// Writes the gathered blocks out (an error is kept and reported by [`Self::blocks`]).
    pub(crate) fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        if self.error.is_some() {
            self.pending.clear();
            return;
        }
        if let Err(e) = self.write_pending() {
            self.error = Some(e.to_string());
        }
        self.pending.clear();
    }

    fn write_pending(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let slot_bytes = self.slot_bytes();
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(tempfile::tempfile()?),
        };
        self.pending.sort_unstable_by_key(|(slot, _)| *slot);
        let mut buf: Vec<u8> = Vec::with_capacity(self.pending.len() * slot_bytes as usize);
        let mut start = 0u64;
        let mut next = 0u64;
        for (slot, b) in &self.pending {
            if buf.is_empty() || *slot != next {
                if !buf.is_empty() {
                    file.write_all_at(&buf, start * slot_bytes)?;
                    buf.clear();
                }
                start = *slot;
            }
            if b.codec() != self.codec {
                return Err(std::io::Error::other(format!(
                    "a {} block among {} blocks",
                    b.codec(),
                    self.codec
                )));
            }
            buf.extend_from_slice(b.id());
            buf.extend_from_slice(b.key());
            next = slot + 1;
        }
        if !buf.is_empty() {
            file.write_all_at(&buf, start * slot_bytes)?;
        }
        Ok(())
    }

    /// The `count` blocks of the file whose content starts at slot `file`.
    fn blocks(&self, file: FileId, count: u64) -> Result<Vec<Block>> {
        use std::os::unix::fs::FileExt;
        if count == 0 {
            return Ok(Vec::new());
        }
        if let Some(e) = &self.error {
            return Err(ConvertError::Io {
                path: std::env::temp_dir(),
                source: std::io::Error::other(format!("chunk list file: {e}")),
            });
        }
        let missing = || ConvertError::Internal(format!("file {file}: chunks missing"));
        let f = self.file.as_ref().ok_or_else(missing)?;
        let slot_bytes = self.slot_bytes();
        let len = usize::try_from(count * slot_bytes).map_err(|_| missing())?;
        let mut raw = vec![0u8; len];
        f.read_exact_at(&mut raw, file * slot_bytes)
            .map_err(|_| missing())?;
        raw.chunks_exact(slot_bytes as usize)
            .map(|c| {
                // Never written (a hole): no real chunk has an all-zero hash and key.
                if c.iter().all(|b| *b == 0) {
                    Err(missing())
                } else {
                    Block::from_bytes(c).ok_or_else(missing)
                }
            })
            .collect()
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn block(n: u64) -> Block {
        let mut hash = [0u8; 16];
        hash[..8].copy_from_slice(&n.to_le_bytes());
        Block::Flist { hash, key: [7; 16] }
    }

    #[test]
    fn chunk_results_spill_out_of_order_and_holes_are_errors() {
        let mut r = ChunkResults::default();
        // files of 3 chunks at slots 0, 3, 6, ...; chunks arrive in reverse order, over
        // several flushes of the pending buffer
        let files = PENDING_BLOCKS as u64;
        for f in (0..files).rev() {
            for i in (0..3u32).rev() {
                r.put(f * 3, i, block(f * 3 + u64::from(i)));
            }
        }
        r.flush();
        for f in [0, 1, files / 2, files - 1] {
            let got = r.blocks(f * 3, 3).unwrap();
            let want: Vec<Block> = (0..3).map(|i| block(f * 3 + i)).collect();
            assert_eq!(got, want, "file {f}");
        }
        assert!(r.blocks(5, 0).unwrap().is_empty());
        // a chunk never recorded: an error, not a zero block
        let mut r = ChunkResults::default();
        r.put(0, 0, block(1));
        r.put(0, 2, block(3));
        r.flush();
        assert!(r.blocks(0, 3).is_err());
        assert!(r.blocks(0, 4).is_err(), "past the end");
        assert!(ChunkResults::default().blocks(0, 1).is_err());
    }
}
