//! The in-memory filesystem tree an flist describes.
//!
//! Nodes live in an arena (`Vec`) and refer to each other by [`NodeId`], so that very large
//! or very deep trees are walked and dropped without recursion. A directory keeps its
//! children in insertion order (the order the flist stores them, which `find` reproduces).
//!
//! Paths given to this module are relative to the root, with `/` separators; a leading `/`
//! and empty components are ignored, so `"/usr/bin"`, `"usr/bin"` and `"usr//bin/"` name the
//! same node and `""` or `"/"` is the root. `.` and `..` components are refused: this
//! module never resolves them.

use indexmap::IndexMap;

use crate::error::TreeError;

pub use crate::diff::{diff, DiffOptions};

/// Index of a node in its [`Tree`].
pub type NodeId = usize;

/// Size recorded for directories unless something else is known.
pub const DEFAULT_DIR_SIZE: u64 = 4096;

/// Ownership, permissions and times of an entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Meta {
    /// Permission bits including setuid, setgid and sticky (`& 0o7777`); never file-type bits.
    pub mode: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Owner name (the decimal uid when unknown).
    pub uname: String,
    /// Group name (the decimal gid when unknown).
    pub gname: String,
    /// Modification time, seconds since the epoch.
    pub mtime: u32,
    /// Change time, seconds since the epoch.
    pub ctime: u32,
}

impl Meta {
    /// root:root with the given permission bits and time.
    pub fn root(mode: u32, time: u32) -> Self {
        Meta {
            mode: mode & 0o7777,
            uid: 0,
            gid: 0,
            uname: "root".into(),
            gname: "root".into(),
            mtime: time,
            ctime: time,
        }
    }

    /// Owner and group with names derived from the numeric ids.
    pub fn numeric(mode: u32, uid: u32, gid: u32, mtime: u32) -> Self {
        Meta {
            mode: mode & 0o7777,
            uid,
            gid,
            uname: if uid == 0 {
                "root".into()
            } else {
                uid.to_string()
            },
            gname: if gid == 0 {
                "root".into()
            } else {
                gid.to_string()
            },
            mtime,
            ctime: mtime,
        }
    }
}

/// One chunk of a regular file: the key it is stored under and the key that decrypts it.
///
/// The variant is the chunk codec (see [`crate::codec::Codec`]): a tree read from an
/// `.flist` holds [`Block::Flist`] chunks, one read from an rfs `.fl` holds [`Block::Rfs`]
/// blocks. Both formats describe files the same way; only the chunks differ, and a writer
/// refuses chunks of the other codec (converting re-encodes them, see `flist-convert`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Block {
    /// A chunk of the 0-flist codec (`.flist`).
    Flist {
        /// BLAKE2b-128 of the encrypted chunk: the key in the chunk store (`FileBlock.hash`).
        hash: [u8; 16],
        /// BLAKE2b-128 of the plaintext chunk: the decryption key (`FileBlock.key`).
        key: [u8; 16],
    },
    /// A block of the rfs codec (`.fl`).
    Rfs {
        /// BLAKE2b-256 of the encrypted block: the key in the chunk store (`block.id`).
        id: [u8; 32],
        /// BLAKE2b-256 of the plaintext block: the AES-256-GCM key (`block.key`).
        key: [u8; 32],
    },
}

impl Block {
    /// The codec this chunk was encoded with.
    pub fn codec(&self) -> crate::codec::Codec {
        match self {
            Block::Flist { .. } => crate::codec::Codec::Flist,
            Block::Rfs { .. } => crate::codec::Codec::Rfs,
        }
    }

    /// The store key (16 bytes for `.flist` chunks, 32 for `.fl` blocks).
    pub fn id(&self) -> &[u8] {
        match self {
            Block::Flist { hash, .. } => hash,
            Block::Rfs { id, .. } => id,
        }
    }

    /// The decryption key (the hash of the plaintext).
    pub fn key(&self) -> &[u8] {
        match self {
            Block::Flist { key, .. } => key,
            Block::Rfs { key, .. } => key,
        }
    }

    /// The store key as lowercase hex (how stores and errors name a chunk).
    pub fn id_hex(&self) -> String {
        hex::encode(self.id())
    }

    /// True when `plain` is this chunk's plaintext (its hash is the decryption key).
    pub fn matches_plain(&self, plain: &[u8]) -> bool {
        match self {
            Block::Flist { key, .. } => crate::codec::blake2b::<16>(plain) == *key,
            Block::Rfs { key, .. } => crate::codec::blake2b::<32>(plain) == *key,
        }
    }

    /// Store key then decryption key: 32 bytes for an `.flist` chunk, 64 for an `.fl`
    /// block (the length tells the codec; see [`Block::from_bytes`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        [self.id(), self.key()].concat()
    }

    /// Reverses [`Block::to_bytes`]; `None` for any other length.
    pub fn from_bytes(raw: &[u8]) -> Option<Block> {
        match raw.len() {
            32 => Some(Block::Flist {
                hash: raw[..16].try_into().ok()?,
                key: raw[16..].try_into().ok()?,
            }),
            64 => Some(Block::Rfs {
                id: raw[..32].try_into().ok()?,
                key: raw[32..].try_into().ok()?,
            }),
            _ => None,
        }
    }

    /// Appends a self-delimiting form (a codec byte, then [`Block::to_bytes`]) for lists
    /// of blocks in temporary files; read back by [`Block::read_tagged`].
    pub fn push_tagged(&self, out: &mut Vec<u8>) {
        out.push(match self {
            Block::Flist { .. } => 0,
            Block::Rfs { .. } => 1,
        });
        out.extend_from_slice(self.id());
        out.extend_from_slice(self.key());
    }

    /// Reads one block written by [`Block::push_tagged`] from the front of `raw`,
    /// advancing it; `None` at the end or on malformed bytes.
    pub fn read_tagged(raw: &mut &[u8]) -> Option<Block> {
        let (&tag, rest) = raw.split_first()?;
        let len = match tag {
            0 => 32,
            1 => 64,
            _ => return None,
        };
        let b = Block::from_bytes(rest.get(..len)?)?;
        *raw = &rest[len..];
        Some(b)
    }
}

/// Kinds of special file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpecialKind {
    /// Unix socket (also what the reference writer records for every special file).
    Socket,
    /// Block device.
    Block,
    /// Character device.
    Chardev,
    /// Named pipe.
    Fifo,
    /// Unknown.
    Unknown,
}

/// What an entry is, with the data that depends on its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory; children in stored order, by name.
    Dir {
        /// Children by name, in order.
        children: IndexMap<String, NodeId>,
        /// Recorded size (4096 unless the source said otherwise).
        size: u64,
    },
    /// A regular file.
    File {
        /// Size in bytes.
        size: u64,
        /// Chunks in order; empty for an empty file.
        blocks: Vec<Block>,
    },
    /// A symbolic link.
    Symlink {
        /// Raw link text (may be relative).
        target: String,
    },
    /// A fifo, socket or device.
    Special {
        /// Which kind of special file.
        kind: SpecialKind,
        /// Device numbers (major, minor) for block and character devices.
        rdev: Option<(u32, u32)>,
    },
}

impl Kind {
    /// An empty directory of the default size.
    pub fn empty_dir() -> Self {
        Kind::Dir {
            children: IndexMap::new(),
            size: DEFAULT_DIR_SIZE,
        }
    }

    /// The `S_IFMT` file-type bits of the kind (`stat`'s mode is these plus the permission
    /// bits; 0 for a special file of unknown kind). The one mapping of kinds to type bits.
    pub fn type_bits(&self) -> u32 {
        use crate::catalog::mode_bits::*;
        match self {
            Kind::Dir { .. } => S_IFDIR,
            Kind::File { .. } => S_IFREG,
            Kind::Symlink { .. } => S_IFLNK,
            Kind::Special { kind, .. } => crate::catalog::special_type_bits(*kind),
        }
    }

    /// A short name for the kind: `directory`, `regular`, `symlink` or `special`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Kind::Dir { .. } => "directory",
            Kind::File { .. } => "regular",
            Kind::Symlink { .. } => "symlink",
            Kind::Special { .. } => "special",
        }
    }

    /// The `Inode.size` the format records for this entry.
    pub fn size(&self) -> u64 {
        match self {
            Kind::Dir { size, .. } => *size,
            Kind::File { size, .. } => *size,
            Kind::Symlink { target } => target.len() as u64,
            Kind::Special { .. } => 0,
        }
    }

    /// True for directories.
    pub fn is_dir(&self) -> bool {
        matches!(self, Kind::Dir { .. })
    }
}

/// One entry of the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Last path component (`""` for the root).
    pub name: String,
    /// Parent directory (the root is its own parent).
    pub parent: NodeId,
    /// Owner, permissions, times.
    pub meta: Meta,
    /// Kind-specific data.
    pub kind: Kind,
}

/// Counts over a tree, in the shape `zflist find` reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Regular files.
    pub regular: u64,
    /// Symbolic links.
    pub symlink: u64,
    /// Directories, not counting the root.
    pub directory: u64,
    /// Fifos, sockets and devices.
    pub special: u64,
    /// Sum of regular file sizes.
    pub fullsize: u64,
}

/// A filesystem tree: an arena of nodes whose index 0 is the root directory.
#[derive(Clone, Debug)]
pub struct Tree {
    nodes: Vec<Option<Node>>,
    live: usize,
}

/// Checks that `name` can be one path component.
pub fn validate_name(name: &str) -> Result<(), TreeError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(TreeError::InvalidName(name.to_string()));
    }
    Ok(())
}

/// Splits a path into its components, ignoring a leading `/` and empty components.
pub fn components(path: &str) -> Result<Vec<&str>, TreeError> {
    let mut out = Vec::new();
    for c in path.split('/') {
        if c.is_empty() {
            continue;
        }
        if c == "." || c == ".." || c.contains('\0') {
            return Err(TreeError::InvalidPath(path.to_string()));
        }
        out.push(c);
    }
    Ok(out)
}

impl Tree {
    /// The root directory's id.
    pub const ROOT: NodeId = 0;

    /// A tree holding only a root directory with the given metadata.
    pub fn new(root_meta: Meta) -> Self {
        Tree {
            nodes: vec![Some(Node {
                name: String::new(),
                parent: Self::ROOT,
                meta: root_meta,
                kind: Kind::empty_dir(),
            })],
            live: 1,
        }
    }

    /// The root directory's id.
    pub fn root(&self) -> NodeId {
        Self::ROOT
    }

    /// Number of entries, the root included.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when the tree holds only its root.
    pub fn is_empty(&self) -> bool {
        self.live <= 1
    }

    /// The node with this id. Panics on an id that is not live: ids come from this tree.
    pub fn node(&self, id: NodeId) -> &Node {
        self.get(id)
            .expect("NodeId from another tree or a removed node")
    }

    /// The node with this id, mutable. Changing `kind` between directory and non-directory
    /// here would orphan children: use [`Tree::set`] for that.
    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.nodes
            .get_mut(id)
            .and_then(Option::as_mut)
            .expect("NodeId from another tree or a removed node")
    }

    /// The node with this id, if it is live.
    pub fn get(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id).and_then(Option::as_ref)
    }

    /// Finds a node by path, without following symlinks.
    pub fn lookup(&self, path: &str) -> Option<NodeId> {
        let comps = components(path).ok()?;
        let mut cur = Self::ROOT;
        for c in comps {
            cur = self.child(cur, c)?;
        }
        Some(cur)
    }

    /// Finds a node by path inside the tree, following symbolic links the way a process
    /// whose root is this tree would (absolute targets from the root, relative ones from the
    /// link's directory, `..` stopping at the root), at most 40 of them. The error names
    /// the missing component or the link loop.
    pub fn resolve(&self, path: &str) -> Result<NodeId, String> {
        const MAX_LINKS: usize = 40;
        let mut comps: Vec<String> = Vec::new();
        let mut pending: Vec<String> = path.split('/').rev().map(str::to_string).collect();
        let mut hops = 0;
        let mut cur = Self::ROOT;
        let join = |comps: &[String], last: &str| {
            let mut v = comps.to_vec();
            v.push(last.to_string());
            v.join("/")
        };
        while let Some(c) = pending.pop() {
            match c.as_str() {
                "" | "." => continue,
                ".." => {
                    comps.pop();
                    cur = self.node(cur).parent;
                    continue;
                }
                _ => {}
            }
            let child = self
                .child(cur, &c)
                .ok_or_else(|| match &self.node(cur).kind {
                    Kind::Dir { .. } => format!("/{} does not exist", join(&comps, &c)),
                    _ => format!("/{} is not a directory", comps.join("/")),
                })?;
            match &self.node(child).kind {
                Kind::Symlink { target } => {
                    hops += 1;
                    if hops > MAX_LINKS {
                        return Err(format!("too many symbolic links at /{}", join(&comps, &c)));
                    }
                    if target.starts_with('/') {
                        comps.clear();
                        cur = Self::ROOT;
                    }
                    pending.extend(target.split('/').rev().map(str::to_string));
                }
                _ => {
                    comps.push(c);
                    cur = child;
                }
            }
        }
        Ok(cur)
    }

    /// The child of directory `dir` called `name`.
    pub fn child(&self, dir: NodeId, name: &str) -> Option<NodeId> {
        match &self.get(dir)?.kind {
            Kind::Dir { children, .. } => children.get(name).copied(),
            _ => None,
        }
    }

    /// Children of a directory in stored order (empty for non-directories).
    pub fn children(&self, dir: NodeId) -> impl Iterator<Item = (&str, NodeId)> + '_ {
        let list = match self.get(dir).map(|n| &n.kind) {
            Some(Kind::Dir { children, .. }) => Some(children),
            _ => None,
        };
        list.into_iter()
            .flat_map(|c| c.iter().map(|(k, v)| (k.as_str(), *v)))
    }

    /// Relative path of a node (`""` for the root, `"usr/bin"` otherwise).
    pub fn path_of(&self, id: NodeId) -> String {
        let mut parts = Vec::new();
        let mut cur = id;
        while cur != Self::ROOT {
            let n = self.node(cur);
            parts.push(n.name.as_str());
            cur = n.parent;
        }
        parts.reverse();
        parts.join("/")
    }

    /// Depth of a node (root 0).
    pub fn depth(&self, id: NodeId) -> usize {
        let mut d = 0;
        let mut cur = id;
        while cur != Self::ROOT {
            cur = self.node(cur).parent;
            d += 1;
        }
        d
    }

    /// Adds a new entry `name` in directory `parent`. Fails if the name exists or `parent`
    /// is not a directory.
    pub fn insert(
        &mut self,
        parent: NodeId,
        name: &str,
        meta: Meta,
        kind: Kind,
    ) -> Result<NodeId, TreeError> {
        validate_name(name)?;
        if self.child(parent, name).is_some() {
            return Err(TreeError::Exists(self.join(parent, name)));
        }
        self.attach(parent, name, meta, kind)
    }

    /// Sets entry `name` in `parent`, replacing what was there as extracting a later archive
    /// member over an earlier one would: a directory over a directory keeps the children and
    /// takes the new metadata; anything else replaces the old entry (and its subtree).
    pub fn set(
        &mut self,
        parent: NodeId,
        name: &str,
        meta: Meta,
        kind: Kind,
    ) -> Result<NodeId, TreeError> {
        validate_name(name)?;
        if let Some(old) = self.child(parent, name) {
            if self.node(old).kind.is_dir() {
                if let Kind::Dir { size, .. } = kind {
                    let n = self.node_mut(old);
                    n.meta = meta;
                    if let Kind::Dir { size: s, .. } = &mut n.kind {
                        *s = size;
                    }
                    return Ok(old);
                }
            }
            // Replace in place so the entry keeps its position among its siblings.
            self.remove_children(old);
            let n = self.node_mut(old);
            n.meta = meta;
            n.kind = kind;
            return Ok(old);
        }
        self.attach(parent, name, meta, kind)
    }

    /// Makes sure directory `path` exists, creating missing parents with `meta`.
    /// Fails if a component exists and is not a directory.
    pub fn mkdir_p(&mut self, path: &str, meta: &Meta) -> Result<NodeId, TreeError> {
        let mut cur = Self::ROOT;
        for c in components(path)? {
            cur = match self.child(cur, c) {
                Some(id) if self.node(id).kind.is_dir() => id,
                Some(_) => return Err(TreeError::NotADirectory(self.join(cur, c))),
                None => self.attach(cur, c, meta.clone(), Kind::empty_dir())?,
            };
        }
        Ok(cur)
    }

    /// Removes a node and everything below it. Removing the root empties it instead.
    pub fn remove(&mut self, id: NodeId) {
        self.remove_children(id);
        if id == Self::ROOT {
            return;
        }
        let (parent, name) = {
            let n = self.node(id);
            (n.parent, n.name.clone())
        };
        if let Some(Node {
            kind: Kind::Dir { children, .. },
            ..
        }) = self.nodes.get_mut(parent).and_then(Option::as_mut)
        {
            children.shift_remove(&name);
        }
        self.nodes[id] = None;
        self.live -= 1;
    }

    /// Renames or moves `id` to `new_parent/new_name`; fails if the destination exists or is
    /// inside `id` itself.
    pub fn rename(
        &mut self,
        id: NodeId,
        new_parent: NodeId,
        new_name: &str,
    ) -> Result<(), TreeError> {
        validate_name(new_name)?;
        if id == Self::ROOT {
            return Err(TreeError::InvalidPath("/".into()));
        }
        if !self.get(new_parent).is_some_and(|n| n.kind.is_dir()) {
            return Err(TreeError::NotADirectory(self.path_of(new_parent)));
        }
        let mut cur = new_parent;
        loop {
            if cur == id {
                return Err(TreeError::InvalidPath(self.join(new_parent, new_name)));
            }
            if cur == Self::ROOT {
                break;
            }
            cur = self.node(cur).parent;
        }
        if self.child(new_parent, new_name).is_some() {
            return Err(TreeError::Exists(self.join(new_parent, new_name)));
        }
        let (old_parent, old_name) = {
            let n = self.node(id);
            (n.parent, n.name.clone())
        };
        if let Kind::Dir { children, .. } = &mut self.node_mut(old_parent).kind {
            children.shift_remove(&old_name);
        }
        if let Kind::Dir { children, .. } = &mut self.node_mut(new_parent).kind {
            children.insert(new_name.to_string(), id);
        }
        let n = self.node_mut(id);
        n.parent = new_parent;
        n.name = new_name.to_string();
        Ok(())
    }

    /// Every node in depth-first pre-order, children in stored order, root first.
    pub fn walk(&self) -> Walk<'_> {
        Walk {
            tree: self,
            stack: vec![Self::ROOT],
        }
    }

    /// Every node below `id` (excluded) in depth-first pre-order.
    pub fn walk_from(&self, id: NodeId) -> Walk<'_> {
        let mut stack: Vec<NodeId> = self.children(id).map(|(_, c)| c).collect();
        stack.reverse();
        Walk { tree: self, stack }
    }

    /// Counts entries by kind, as `zflist find` does (the root is not counted).
    pub fn stats(&self) -> TreeStats {
        let mut s = TreeStats::default();
        for id in self.walk() {
            if id == Self::ROOT {
                continue;
            }
            match &self.node(id).kind {
                Kind::Dir { .. } => s.directory += 1,
                Kind::File { size, .. } => {
                    s.regular += 1;
                    s.fullsize += size;
                }
                Kind::Symlink { .. } => s.symlink += 1,
                Kind::Special { .. } => s.special += 1,
            }
        }
        s
    }

    fn join(&self, parent: NodeId, name: &str) -> String {
        let p = self.path_of(parent);
        if p.is_empty() {
            name.to_string()
        } else {
            format!("{p}/{name}")
        }
    }

    fn attach(
        &mut self,
        parent: NodeId,
        name: &str,
        meta: Meta,
        kind: Kind,
    ) -> Result<NodeId, TreeError> {
        let id = self.nodes.len();
        match self.nodes.get_mut(parent).and_then(Option::as_mut) {
            Some(Node {
                kind: Kind::Dir { children, .. },
                ..
            }) => {
                children.insert(name.to_string(), id);
            }
            Some(_) => return Err(TreeError::NotADirectory(self.path_of(parent))),
            None => return Err(TreeError::InvalidPath(format!("#{parent}"))),
        }
        self.nodes.push(Some(Node {
            name: name.to_string(),
            parent,
            meta,
            kind,
        }));
        self.live += 1;
        Ok(id)
    }

    /// Frees every node below `id` (iteratively) and empties its child list.
    fn remove_children(&mut self, id: NodeId) {
        let mut stack: Vec<NodeId> = match self.nodes.get_mut(id).and_then(Option::as_mut) {
            Some(Node {
                kind: Kind::Dir { children, .. },
                ..
            }) => children.drain(..).map(|(_, c)| c).collect(),
            _ => return,
        };
        while let Some(c) = stack.pop() {
            if let Some(n) = self.nodes.get_mut(c).and_then(Option::take) {
                self.live -= 1;
                if let Kind::Dir { children, .. } = n.kind {
                    stack.extend(children.into_values());
                }
            }
        }
    }
}

/// Depth-first pre-order iterator over node ids; see [`Tree::walk`].
pub struct Walk<'a> {
    tree: &'a Tree,
    stack: Vec<NodeId>,
}

impl Iterator for Walk<'_> {
    type Item = NodeId;

    fn next(&mut self) -> Option<NodeId> {
        let id = self.stack.pop()?;
        if let Kind::Dir { children, .. } = &self.tree.node(id).kind {
            self.stack.extend(children.values().rev().copied());
        }
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(size: u64) -> Kind {
        Kind::File {
            size,
            blocks: vec![],
        }
    }

    #[test]
    fn insert_lookup_walk_in_order() {
        let m = Meta::root(0o755, 0);
        let mut t = Tree::new(m.clone());
        let etc = t
            .insert(Tree::ROOT, "etc", m.clone(), Kind::empty_dir())
            .unwrap();
        t.insert(etc, "b", m.clone(), file(1)).unwrap();
        t.insert(etc, "a", m.clone(), file(2)).unwrap();
        t.insert(Tree::ROOT, "zz", m.clone(), file(3)).unwrap();
        assert_eq!(t.lookup("/etc/a"), t.lookup("etc//a/"));
        assert!(t.lookup("etc/c").is_none());
        assert!(t.lookup("etc/../etc").is_none());
        let paths: Vec<String> = t.walk().map(|id| t.path_of(id)).collect();
        assert_eq!(paths, ["", "etc", "etc/b", "etc/a", "zz"]);
        assert_eq!(t.stats().regular, 3);
        assert_eq!(t.stats().fullsize, 6);
        assert!(
            matches!(t.insert(etc, "a", m.clone(), file(0)), Err(TreeError::Exists(p)) if p == "etc/a")
        );
        assert!(t.insert(etc, "..", m, file(0)).is_err());
    }

    #[test]
    fn set_replaces_and_remove_frees_subtree() {
        let m = Meta::root(0o755, 0);
        let mut t = Tree::new(m.clone());
        let d = t.mkdir_p("a/b/c", &m).unwrap();
        t.insert(d, "f", m.clone(), file(1)).unwrap();
        assert_eq!(t.len(), 5);
        let b = t.lookup("a/b").unwrap();
        // directory over directory keeps children
        t.set(
            t.lookup("a").unwrap(),
            "b",
            Meta::root(0o700, 5),
            Kind::empty_dir(),
        )
        .unwrap();
        assert_eq!(t.node(b).meta.mode, 0o700);
        assert_eq!(t.len(), 5);
        // file over directory drops the subtree
        t.set(t.lookup("a").unwrap(), "b", m.clone(), file(9))
            .unwrap();
        assert_eq!(t.len(), 3);
        assert!(t.lookup("a/b/c").is_none());
        assert!(t.mkdir_p("a/b/x", &m).is_err());
        t.remove(t.lookup("a").unwrap());
        assert_eq!(t.len(), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn deep_trees_walk_and_drop_without_recursion() {
        let m = Meta::root(0o755, 0);
        let mut t = Tree::new(m.clone());
        let mut cur = Tree::ROOT;
        for _ in 0..200_000 {
            cur = t.insert(cur, "d", m.clone(), Kind::empty_dir()).unwrap();
        }
        assert_eq!(t.walk().count(), 200_001);
        assert_eq!(t.depth(cur), 200_000);
        drop(t);
    }

    #[test]
    fn rename_refuses_cycles_and_overwrites() {
        let m = Meta::root(0o755, 0);
        let mut t = Tree::new(m.clone());
        let a = t.mkdir_p("a/b", &m).unwrap();
        let f = t.insert(Tree::ROOT, "f", m.clone(), file(1)).unwrap();
        let top = t.lookup("a").unwrap();
        assert!(t.rename(top, a, "x").is_err());
        assert!(t.rename(f, Tree::ROOT, "a").is_err());
        t.rename(f, a, "g").unwrap();
        assert_eq!(t.path_of(f), "a/b/g");
        assert_eq!(t.lookup("a/b/g"), Some(f));
        assert!(t.lookup("f").is_none());
    }
}
