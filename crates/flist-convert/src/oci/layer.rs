//! One layer: its tar stream through the archive converter (with a placement hook that
//! turns OCI whiteouts and hard links to lower layers into changes), the resulting
//! [`LayerFile`] (the layer's changes, its entries one JSON line each in a gzip'd file:
//! the layer cache's format), and applying it onto the flattened tree staged on disk.
//! Neither a layer's entries nor the image's tree are ever held whole in memory.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::sync::{Arc, Mutex};

use flist_format::{Block, Kind, Meta, SpecialKind};
use flist_store::BlockingStore;
use serde::{Deserialize, Serialize};

use crate::builder::TreeBuilder;
use crate::error::{ConvertError, Result};
use crate::options::{ConvertOptions, Counters, Stats};
use crate::stage::{Shape, Stage};
use crate::{pipeline, tarball};

/// Version of the serialized form (cache files of another version are ignored).
pub(crate) const FORMAT_VERSION: u32 = 2;

/// What one layer does to the layers below it, besides its entries: the first line of a
/// [`LayerFile`].
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct LayerHeader {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// Layer (blob) digest.
    pub digest: String,
    /// Directories whose lower-layer content is hidden (`.wh..wh..opq`).
    pub opaque: Vec<String>,
    /// Paths of lower layers deleted (`.wh.<name>`).
    pub whiteouts: Vec<String>,
    /// Hard links whose target is in a lower layer: `(path, target)`.
    pub links: Vec<(String, String)>,
}

/// A layer's changes on disk: gzip'd JSON lines, the [`LayerHeader`] then one
/// [`EntryRec`] per entry in pre-order (parents first).
pub(crate) struct LayerFile {
    pub header: LayerHeader,
    file: File,
    /// Removes a temporary file (no layer cache) when dropped.
    _temp: Option<tempfile::TempPath>,
}

impl LayerFile {
    /// Opens a layer file, checking its header against `digest` (`None`: not a layer file
    /// of this version for this digest).
    pub(crate) fn open(file: File, digest: &str, temp: Option<tempfile::TempPath>) -> Option<Self> {
        let mut lf = LayerFile {
            header: LayerHeader::default(),
            file,
            _temp: temp,
        };
        let mut lines = lf.lines().ok()?;
        let first = lines.next()?.ok()?;
        let header: LayerHeader = serde_json::from_str(&first).ok()?;
        if header.version != FORMAT_VERSION || header.digest != digest {
            return None;
        }
        drop(lines);
        lf.header = header;
        Some(lf)
    }

    /// The decompressed lines, from the start.
    fn lines(&mut self) -> std::io::Result<impl Iterator<Item = std::io::Result<String>> + '_> {
        self.file.rewind()?;
        let gz = flate2::read::GzDecoder::new(&self.file);
        Ok(BufReader::with_capacity(64 << 10, gz.take(MAX_LAYER_FILE)).lines())
    }

    /// Calls `f` with every entry, in order.
    pub(crate) fn for_each_entry(
        &mut self,
        mut f: impl FnMut(EntryRec) -> std::result::Result<(), String>,
    ) -> std::result::Result<(), String> {
        let mut lines = self.lines().map_err(|e| format!("layer file: {e}"))?;
        // the header
        lines.next();
        for line in lines {
            let line = line.map_err(|e| format!("layer file: {e}"))?;
            let e: EntryRec =
                serde_json::from_str(&line).map_err(|e| format!("layer file entry: {e}"))?;
            f(e)?;
        }
        Ok(())
    }
}

/// Largest layer file read (decompressed).
const MAX_LAYER_FILE: u64 = 8 << 30;

/// Writes a layer file: the header, then entries.
pub(crate) struct LayerWriter<W: Write> {
    gz: flate2::write::GzEncoder<std::io::BufWriter<W>>,
}

impl<W: Write> LayerWriter<W> {
    pub(crate) fn new(out: W, header: &LayerHeader) -> std::io::Result<Self> {
        let mut w = LayerWriter {
            gz: flate2::write::GzEncoder::new(
                std::io::BufWriter::with_capacity(64 << 10, out),
                flate2::Compression::fast(),
            ),
        };
        w.line(header)?;
        Ok(w)
    }

    fn line<T: Serialize>(&mut self, v: &T) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.gz, v).map_err(std::io::Error::other)?;
        self.gz.write_all(b"\n")
    }

    pub(crate) fn entry(&mut self, e: &EntryRec) -> std::io::Result<()> {
        self.line(e)
    }

    pub(crate) fn finish(self) -> std::io::Result<W> {
        let buf = self.gz.finish()?;
        buf.into_inner().map_err(|e| e.into_error())
    }
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
        bytes_encoded: counters
            .bytes_encoded
            .load(std::sync::atomic::Ordering::Relaxed),
        warnings,
        ..Stats::default()
    }
}

fn entry_rec(path: String, implicit: bool, meta: &Meta, kind: &Kind) -> EntryRec {
    EntryRec {
        explicit: !implicit,
        mode: meta.mode,
        uid: meta.uid,
        gid: meta.gid,
        uname: meta.uname.clone(),
        gname: meta.gname.clone(),
        mtime: meta.mtime,
        ctime: meta.ctime,
        kind: KindRec::from_kind(kind),
        path,
    }
}

/// Reads one layer's tar stream (gzip, zstd or plain; detected by the converter) into a
/// layer file written to `out` (its changes), storing file chunks in `store` as they are
/// read. Returns `out` and the statistics.
pub(crate) fn read_layer<W: Write>(
    input: &mut (dyn Read + Send),
    digest: &str,
    store: &BlockingStore,
    opts: &ConvertOptions,
    out: W,
) -> Result<(W, Stats)> {
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
            Ok(true)
        },
    ));
    let ((), results) = pipeline::run(Some(store), opts, &counters, |sender| {
        tarball::read_archive(
            input,
            opts,
            &counters,
            sender,
            &mut builder,
            // the layer's digest, checked while reading, vouches for its end
            tarball::TarEnd::Optional,
        )
    })?;
    builder.hook = None;
    if let Some(p) = &opts.progress {
        p.progress(&counters.report());
    }
    let mut staged = builder.finish(results)?;
    let (warnings, hard_links) = (std::mem::take(&mut staged.warnings), staged.hard_links);
    let st = std::mem::take(
        &mut *state
            .lock()
            .map_err(|_| ConvertError::Internal("layer hook state poisoned".into()))?,
    );
    let header = LayerHeader {
        version: FORMAT_VERSION,
        digest: digest.to_string(),
        opaque: st.opaque,
        whiteouts: st.whiteouts,
        links: st.links,
    };
    let io = |e: std::io::Error| ConvertError::Io {
        path: "layer file".into(),
        source: e,
    };
    let mut w = LayerWriter::new(out, &header).map_err(io)?;
    // The root, when a member described it, then every directory's entries, parents first.
    if staged.root_set {
        let root = staged.stage.row(Stage::ROOT)?;
        w.entry(&entry_rec(String::new(), false, &root.meta, &root.kind))
            .map_err(io)?;
    }
    staged.for_each_dir(&opts.cancel, |path, _, _, children| {
        for (_, name, row) in children {
            let p = if path.is_empty() {
                name
            } else {
                format!("{path}/{name}")
            };
            w.entry(&entry_rec(p, row.implicit, &row.meta, &row.kind))
                .map_err(io)?;
        }
        Ok(())
    })?;
    let out = w.finish().map_err(io)?;
    let stats = layer_stats(&counters, hard_links, warnings.into_vec());
    Ok((out, stats))
}

fn comps(path: &str) -> std::result::Result<Vec<&str>, String> {
    flist_format::tree::components(path).map_err(|e| e.to_string())
}

fn split_parent(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((p, n)) => (p, n),
        None => ("", path),
    }
}

/// Applies a layer onto the image's tree staged below it: opaque directories are emptied
/// and whiteouts removed first (they hide lower content only), then entries are set (a
/// directory over a directory keeps the children; anything else replaces), then hard links
/// to lower-layer files are resolved.
pub(crate) fn apply(stage: &mut Stage, layer: &mut LayerFile) -> std::result::Result<(), String> {
    let e2s = |e: ConvertError| e.to_string();
    let header = layer.header.clone();
    for d in &header.opaque {
        if let Some(id) = stage.lookup(&comps(d)?).map_err(e2s)? {
            if stage.row(id).map_err(e2s)?.kind.is_dir() {
                stage.clear_children(id).map_err(e2s)?;
            }
        }
    }
    for w in &header.whiteouts {
        if let Some(id) = stage.lookup(&comps(w)?).map_err(e2s)? {
            if id != Stage::ROOT {
                stage.remove(id).map_err(e2s)?;
            }
        }
    }
    layer.for_each_entry(|e| {
        let kind = e.kind.to_kind().map_err(|r| format!("{}: {r}", e.path))?;
        if e.path.is_empty() {
            if e.explicit {
                let size = stage.row(Stage::ROOT).map_err(e2s)?.kind.size();
                stage
                    .set_dir_meta(Stage::ROOT, &e.meta(), size)
                    .map_err(e2s)?;
            }
            return Ok(());
        }
        let (parent_path, name) = split_parent(&e.path);
        flist_format::tree::validate_name(name).map_err(|err| format!("{}: {err}", e.path))?;
        let parent = stage.ensure_dir(&comps(parent_path)?, 0).map_err(e2s)?;
        let existing = stage.child(parent, name).map_err(e2s)?;
        let keep_lower_dir =
            !e.explicit && kind.is_dir() && matches!(existing, Some((_, Shape::Dir)));
        if keep_lower_dir {
            return Ok(());
        }
        stage
            .set(parent, name, &e.meta(), &kind, None)
            .map_err(|err| format!("{}: {err}", e.path))?;
        Ok(())
    })?;
    for d in &header.opaque {
        stage.ensure_dir(&comps(d)?, 0).map_err(e2s)?;
    }
    for (path, target) in &header.links {
        let tid = stage.lookup(&comps(target)?).map_err(e2s)?.ok_or_else(|| {
            format!(
                "hard link {path:?} -> {target:?}: target is in neither this layer nor a lower one"
            )
        })?;
        let row = stage.row(tid).map_err(e2s)?;
        if row.kind.is_dir() {
            return Err(format!(
                "hard link {path:?} -> {target:?}: target is a directory"
            ));
        }
        let (parent_path, name) = split_parent(path);
        flist_format::tree::validate_name(name).map_err(|err| format!("{path}: {err}"))?;
        let parent = stage.ensure_dir(&comps(parent_path)?, 0).map_err(e2s)?;
        stage
            .set(parent, name, &row.meta, &row.kind, None)
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

    fn layer(header: LayerHeader, entries: &[EntryRec]) -> LayerFile {
        let mut w = LayerWriter::new(tempfile::tempfile().unwrap(), &header).unwrap();
        for e in entries {
            w.entry(e).unwrap();
        }
        let f = w.finish().unwrap();
        LayerFile::open(f, &header.digest, None).unwrap()
    }

    fn file() -> Kind {
        Kind::File {
            size: 0,
            blocks: vec![],
        }
    }

    #[test]
    fn overlay_rules() {
        let m = Meta::root(0o700, 1);
        let mut t = Stage::new(&m).unwrap();
        let etc = t.ensure_dir(&["etc"], 1).unwrap();
        t.set_dir_meta(etc, &m, 4096).unwrap();
        t.set(etc, "a", &m, &file(), None).unwrap();
        t.set(etc, "b", &m, &file(), None).unwrap();
        let opt = t.ensure_dir(&["opt", "x"], 1).unwrap();
        t.set(opt, "old", &m, &file(), None).unwrap();
        t.set(Stage::ROOT, "f", &m, &file(), None).unwrap();
        let header = LayerHeader {
            version: FORMAT_VERSION,
            digest: "d".into(),
            opaque: vec!["opt/x".into()],
            whiteouts: vec!["etc/a".into(), "nothing/here".into()],
            links: vec![("etc/hl".into(), "etc/b".into())],
        };
        let entries = [
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
        ];
        apply(&mut t, &mut layer(header, &entries)).unwrap();
        let find = |t: &mut Stage, p: &str| t.lookup(&comps(p).unwrap()).unwrap();
        assert!(find(&mut t, "etc/a").is_none());
        let etc = find(&mut t, "etc").unwrap();
        assert_eq!(t.row(etc).unwrap().meta.mode, 0o700);
        assert!(find(&mut t, "etc/c").is_some());
        assert!(find(&mut t, "opt/x/old").is_none());
        assert!(find(&mut t, "opt/x/new").is_some());
        let f = find(&mut t, "f").unwrap();
        assert!(t.row(f).unwrap().kind.is_dir());
        let hl = find(&mut t, "etc/hl").unwrap();
        assert!(matches!(t.row(hl).unwrap().kind, Kind::File { .. }));
        let bad = LayerHeader {
            version: FORMAT_VERSION,
            digest: "e".into(),
            links: vec![("x".into(), "missing".into())],
            ..Default::default()
        };
        assert!(apply(&mut t, &mut layer(bad, &[])).is_err());
    }
}
