//! The session commands that read or edit the tree: `ls`, `find`, `stat`, `cat`, `get`,
//! `put`, `putdir`, `chmod`, `rm`, `rmdir`, `mkdir`, `merge`, `chunks`, `check`.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use flist_format::{Kind, Node, NodeId, SpecialKind, Tree};
use serde_json::{json, Value};

use crate::backend::StoreConfig;
use crate::chunks::{self, Uploader};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::local;
use crate::response::{Progress, Response};
use crate::session::Session;
use flist_format::Flist;

/// The reference's type names (`ls` JSON).
pub fn type_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Dir { .. } => "directory",
        Kind::File { .. } => "regular file",
        Kind::Symlink { .. } => "symlink",
        Kind::Special { kind, .. } => match kind {
            SpecialKind::Socket => "unix socket",
            SpecialKind::Block => "block device",
            SpecialKind::Chardev => "character device",
            SpecialKind::Fifo => "fifo",
            SpecialKind::Unknown => "unknown",
        },
    }
}

fn abs(tree: &Tree, id: NodeId) -> String {
    format!("/{}", tree.path_of(id))
}

/// Splits `path` into (parent path, last name); `None` for the root.
fn split_parent(path: &str) -> Option<(&str, &str)> {
    let t = path.trim_end_matches('/');
    if t.is_empty() {
        return None;
    }
    match t.rfind('/') {
        Some(i) => Some((&t[..i], &t[i + 1..])),
        None => Some(("", t)),
    }
}

fn lookup(tree: &Tree, function: &str, path: &str) -> Result<NodeId> {
    flist_format::tree::components(path).map_err(|e| Error::new(function, e))?;
    tree.lookup(path)
        .ok_or_else(|| Error::entry(function, path, "no such file or directory"))
}

fn lookup_dir(tree: &Tree, function: &str, path: &str) -> Result<NodeId> {
    let id = lookup(tree, function, path)?;
    if !tree.node(id).kind.is_dir() {
        return Err(Error::entry(function, path, "not a directory"));
    }
    Ok(id)
}

/// `ls [dir]`.
pub fn ls(session: &Session, path: &str) -> Result<Response> {
    let flist = session.load("ls")?;
    let tree = &flist.tree;
    let dir = lookup_dir(tree, "ls", path)?;
    let mut list = Vec::new();
    let mut text = String::new();
    for (name, id) in tree.children(dir) {
        let n = tree.node(id);
        list.push(json!({
            "name": name,
            "type": type_name(&n.kind),
            "size": n.kind.size(),
            "user": n.meta.uname,
            "uid": n.meta.uid,
            "group": n.meta.gname,
            "gid": n.meta.gid,
        }));
        let _ = writeln!(
            text,
            "{} {:<8} {:<8}   {:>8}  {}",
            crate::display::mode_string(&n.kind, n.meta.mode),
            crate::display::escape(&n.meta.uname),
            crate::display::escape(&n.meta.gname),
            n.kind.size(),
            crate::display::escape(name)
        );
    }
    Ok(Response::new(Value::Array(list), text))
}

/// The text summary `find` and `check` print after the listing.
fn summary_text(resp: &Value) -> String {
    let n = |k: &str| resp.get(k).and_then(Value::as_u64).unwrap_or(0);
    format!(
        "\nContent summary:\n  Regular files  : {}\n  Symbolic links : {}\n  Directories    : {}\n  Special files  : {}\n  Total size     : {:.2} MB\n",
        n("regular"),
        n("symlink"),
        n("directory"),
        n("special"),
        n("fullsize") as f64 / (1024.0 * 1024.0)
    )
}

/// The `find` response object and text for a tree.
pub fn find_tree(tree: &Tree) -> Response {
    let json = flist_format::find::find_response(tree);
    let mut text = String::new();
    if let Some(content) = json.get("content").and_then(Value::as_array) {
        for e in content {
            if let Some(p) = e.get("path").and_then(Value::as_str) {
                text.push_str(&crate::display::escape(p));
                text.push('\n');
            }
        }
    }
    text.push_str(&summary_text(&json));
    Response::new(json, text)
}

/// `find`.
pub fn find(session: &Session) -> Result<Response> {
    let flist = session.load("find")?;
    Ok(find_tree(&flist.tree))
}

/// `find FLIST`: the same listing for an flist file or URL (`.flist` or `.fl`), without a
/// session.
pub fn find_flist(flist: &Path, progress: &dyn Progress) -> Result<Response> {
    let arg = crate::remote::resolve("find", flist, progress)?;
    let flist = Flist::open(arg.path()).ctx("find")?;
    Ok(find_tree(&flist.tree))
}

/// The `stat` data of one node.
pub fn stat_node(tree: &Tree, id: NodeId) -> Response {
    let n: &Node = tree.node(id);
    let path = abs(tree, id);
    let mode = n.kind.type_bits() | n.meta.mode;
    let mut j = serde_json::Map::new();
    j.insert("file".into(), json!(path));
    j.insert("size".into(), json!(n.kind.size()));
    j.insert("mode".into(), json!(mode));
    j.insert("user".into(), json!(n.meta.uname));
    j.insert("group".into(), json!(n.meta.gname));
    j.insert("uid".into(), json!(n.meta.uid));
    j.insert("gid".into(), json!(n.meta.gid));
    j.insert("created".into(), json!(n.meta.ctime));
    j.insert("modified".into(), json!(n.meta.mtime));
    let mut text = format!(
        "  File: {}\n  Size: {} bytes\nAccess: ({mode:o}/{})  UID: {}, GID: {}\nAccess: {}\nCreate: {}\n",
        crate::display::escape(&path),
        n.kind.size(),
        crate::display::mode_string(&n.kind, n.meta.mode),
        crate::display::escape(&n.meta.uname),
        crate::display::escape(&n.meta.gname),
        n.meta.mtime,
        n.meta.ctime
    );
    let mut chunks = Vec::new();
    match &n.kind {
        Kind::Symlink { target } => {
            j.insert("linkto".into(), json!(target));
            let _ = writeln!(text, "Target: {}", crate::display::escape(target));
        }
        Kind::Special { rdev, .. } => {
            let dev = rdev.map(|(a, b)| format!("{a},{b}")).unwrap_or_default();
            let _ = writeln!(text, "Device: {dev}");
            j.insert("device".into(), json!(dev));
        }
        Kind::File { blocks, .. } => {
            for b in blocks {
                chunks.push(json!({"key": b.id_hex(), "decipher": hex::encode(b.key())}));
            }
        }
        Kind::Dir { .. } => {}
    }
    text.push_str("Chunks: ");
    if chunks.is_empty() {
        text.push_str("(empty set)\n");
    }
    for (i, c) in chunks.iter().enumerate() {
        if i > 0 {
            text.push_str("        ");
        }
        let _ = writeln!(
            text,
            "key: {}, decipher: {}",
            c["key"].as_str().unwrap_or_default(),
            c["decipher"].as_str().unwrap_or_default()
        );
    }
    j.insert("chunks".into(), Value::Array(chunks));
    Response::new(Value::Object(j), text)
}

/// `stat <path>`.
pub fn stat(session: &Session, path: &str) -> Result<Response> {
    let flist = session.load("stat")?;
    let id = lookup(&flist.tree, "stat", path)?;
    Ok(stat_node(&flist.tree, id))
}

fn regular_file<'t>(
    tree: &'t Tree,
    function: &str,
    path: &str,
) -> Result<(&'t [flist_format::Block], u64)> {
    let id = lookup(tree, function, path)?;
    match &tree.node(id).kind {
        Kind::File { blocks, size } => Ok((blocks, *size)),
        _ => Err(Error::entry(function, path, "not a regular file")),
    }
}

fn fetch(
    function: &str,
    flist: &Flist,
    stores: &StoreConfig,
    path: &str,
    out: &mut dyn Write,
    progress: &dyn Progress,
) -> Result<()> {
    let (blocks, size) = regular_file(&flist.tree, function, path)?;
    if blocks.is_empty() && size == 0 {
        return Ok(());
    }
    let store = stores.open_read(function, &flist.metadata)?;
    chunks::fetch_file(&store, blocks, size, out, progress).map_err(|e| {
        Error::new(
            function,
            ErrorKind::Convert(format!("{}: {e}", abs_path(path))),
        )
    })
}

fn abs_path(p: &str) -> String {
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

/// `cat <file>`: writes the file's contents to `out`.
pub fn cat(
    session: &Session,
    stores: &StoreConfig,
    path: &str,
    out: &mut dyn Write,
) -> Result<Response> {
    let flist = session.load("cat")?;
    cat_from(&flist, stores, path, out)
}

/// `cat FLIST PATH`: prints a file of an flist file or URL (`.flist` or `.fl`) without a
/// session.
pub fn cat_flist(
    flist: &Path,
    stores: &StoreConfig,
    path: &str,
    out: &mut dyn Write,
) -> Result<Response> {
    let arg = crate::remote::resolve("cat", flist, &crate::response::NoProgress)?;
    let flist = Flist::open(arg.path()).ctx("cat")?;
    cat_from(&flist, stores, path, out)
}

fn cat_from(
    flist: &Flist,
    stores: &StoreConfig,
    path: &str,
    out: &mut dyn Write,
) -> Result<Response> {
    fetch(
        "cat",
        flist,
        stores,
        path,
        out,
        &crate::response::NoProgress,
    )?;
    out.flush().map_err(|e| {
        Error::new(
            "cat",
            ErrorKind::Io {
                what: "writing to stdout".into(),
                source: e,
            },
        )
    })?;
    Ok(Response::empty())
}

/// `get <file> <local-dest>`: downloads a file to a local path (atomically).
pub fn get(
    session: &Session,
    stores: &StoreConfig,
    path: &str,
    dest: &Path,
    progress: &dyn Progress,
) -> Result<Response> {
    let flist = session.load("get")?;
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| Error::io("get", "creating a file in", dir, e))?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        progress.update("fetching file", 0, 0);
        fetch("get", &flist, stores, path, &mut w, progress)?;
        w.flush()
            .map_err(|e| Error::io("get", "writing", dest, e))?;
    }
    tmp.persist(dest)
        .map_err(|e| Error::io("get", "writing", dest, e.error))?;
    progress.finish("file downloaded");
    Ok(Response::empty())
}

/// Where `put` places a file: (directory node, entry name).
fn put_target(tree: &Tree, local: &Path, target: &str) -> Result<(NodeId, String)> {
    let local_name = local
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::usage("put", format!("{}: no usable file name", local.display())))?
        .to_string();
    if let Some(id) = tree.lookup(target) {
        if tree.node(id).kind.is_dir() {
            return Ok((id, local_name));
        }
    }
    if target.ends_with('/') {
        return Err(Error::entry("put", target, "no such directory"));
    }
    let (parent, name) =
        split_parent(target).ok_or_else(|| Error::entry("put", target, "invalid target"))?;
    let dir = tree
        .lookup(parent)
        .ok_or_else(|| Error::entry("put", parent, "no such parent directory"))?;
    if !tree.node(dir).kind.is_dir() {
        return Err(Error::entry("put", parent, "not a directory"));
    }
    Ok((dir, name.to_string()))
}

fn no_upload_warning(function: &str, up: &Uploader, progress: &dyn Progress) {
    if !up.uploads() {
        progress.warn(&format!(
            "{function}: no backend (ZFLIST_BACKEND or --store): chunk keys are recorded but nothing is uploaded"
        ));
    }
}

/// `put <local-file> <target>`.
pub fn put(
    session: &Session,
    stores: &StoreConfig,
    local_path: &Path,
    target: &str,
    progress: &dyn Progress,
) -> Result<Response> {
    let mut flist = session.load("put")?;
    let md = std::fs::symlink_metadata(local_path)
        .map_err(|e| Error::io("put", "reading", local_path, e))?;
    if md.is_dir() {
        return Err(Error::usage(
            "put",
            format!("{} is a directory (use putdir)", local_path.display()),
        ));
    }
    let (dir, name) = put_target(&flist.tree, local_path, target)?;
    if let Some(old) = flist.tree.child(dir, &name) {
        if flist.tree.node(old).kind.is_dir() {
            return Err(Error::entry(
                "put",
                &flist.tree.path_of(old),
                "is a directory",
            ));
        }
    }
    let mut up =
        Uploader::new(stores.open_write("put")?).with_codec(session.format("put")?.codec());
    no_upload_warning("put", &up, progress);
    let (meta, kind) = local::entry_of(local_path, &mut up)
        .map_err(|e| Error::new("put", ErrorKind::Convert(e.to_string())))?;
    up.flush()
        .map_err(|e| Error::new("put", ErrorKind::Convert(e.to_string())))?;
    flist.tree.set(dir, &name, meta, kind).ctx("put")?;
    session.save("put", &flist)?;
    Ok(Response::empty())
}

/// `putdir <local-dir> <target-dir>`: adds the contents of a local directory (converted
/// by `flist-convert`'s directory packer, chunks uploaded to the write store).
pub fn putdir(
    session: &Session,
    stores: &StoreConfig,
    local_dir: &Path,
    target: &str,
    progress: &dyn Progress,
) -> Result<Response> {
    if local_dir == Path::new("/") {
        return Err(Error::usage(
            "putdir",
            "adding your own root directory is not allowed",
        ));
    }
    let md =
        std::fs::metadata(local_dir).map_err(|e| Error::io("putdir", "reading", local_dir, e))?;
    if !md.is_dir() {
        return Err(Error::usage(
            "putdir",
            format!("{} is not a directory", local_dir.display()),
        ));
    }
    let mut flist = session.load("putdir")?;
    let dir = lookup_dir(&flist.tree, "putdir", target)?;
    let store = stores.open_write("putdir")?;
    if store.is_none() {
        progress.warn("putdir: no backend (ZFLIST_BACKEND or --store): chunk keys are recorded but nothing is uploaded");
    }
    let opts = flist_convert::ConvertOptions {
        codec: session.format("putdir")?.codec(),
        ..Default::default()
    };
    let packed = crate::convert::with_progress("adding files", progress, opts, |o| {
        flist_convert::convert(flist_convert::Source::dir(local_dir), store.as_ref(), &o)
            .and_then(|c| c.into_packed())
    })
    .map_err(|e| {
        Error::new(
            "putdir",
            ErrorKind::Convert(format!("{}: {e}", local_dir.display())),
        )
    })?;
    crate::convert::graft(&mut flist.tree, dir, &packed.tree);
    session.save("putdir", &flist)?;
    let st = &packed.stats;
    let json = json!({
        "regular": st.files,
        "symlink": st.symlinks,
        "directory": st.directories,
        "special": st.specials,
        "failure": 0,
        "fullsize": st.bytes,
    });
    let text = format!(
        "Added: {} regular files, {} symlinks, {} directories, {} special files, {} bytes; chunks: {} written, {} already present, {} repeated\n",
        st.files, st.symlinks, st.directories, st.specials, st.bytes, st.chunks_written, st.chunks_present, st.chunks_deduplicated
    );
    let notes = st
        .warnings
        .iter()
        .map(|w| format!("warning: {} ({} entries)", w.message, w.count))
        .collect();
    Ok(Response::new(json, text).with_notes(notes))
}

/// `chmod <octal-mode> <path>`: a mode up to `777` replaces the nine permission bits and
/// keeps setuid/setgid/sticky; a longer mode (e.g. `4755`) replaces all twelve.
pub fn chmod(session: &Session, mode: &str, path: &str) -> Result<Response> {
    let m = u32::from_str_radix(mode.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| {
            Error::usage(
                "chmod",
                format!("invalid mode {mode:?} (octal, at most 7777)"),
            )
        })?;
    let mut flist = session.load("chmod")?;
    let id = lookup(&flist.tree, "chmod", path)?;
    let meta = &mut flist.tree.node_mut(id).meta;
    meta.mode = if m <= 0o777 {
        (meta.mode & !0o777) | m
    } else {
        m
    };
    session.save("chmod", &flist)?;
    Ok(Response::empty())
}

/// `rm <path>`: removes a non-directory entry.
pub fn rm(session: &Session, path: &str) -> Result<Response> {
    let mut flist = session.load("rm")?;
    let id = lookup(&flist.tree, "rm", path)?;
    if flist.tree.node(id).kind.is_dir() {
        return Err(Error::entry("rm", path, "is a directory (use rmdir)"));
    }
    flist.tree.remove(id);
    session.save("rm", &flist)?;
    Ok(Response::empty())
}

/// `rmdir <dir>`: removes a directory and everything below it.
pub fn rmdir(session: &Session, path: &str) -> Result<Response> {
    if split_parent(path).is_none() {
        return Err(Error::usage("rmdir", "cannot remove root directory"));
    }
    let mut flist = session.load("rmdir")?;
    let id = lookup_dir(&flist.tree, "rmdir", path)?;
    flist.tree.remove(id);
    session.save("rmdir", &flist)?;
    Ok(Response::empty())
}

/// `mkdir <dir>`: creates one directory (root:root 0755, now); the parent must exist.
pub fn mkdir(session: &Session, path: &str) -> Result<Response> {
    let (parent, name) = split_parent(path)
        .ok_or_else(|| Error::entry("mkdir", "/", "cannot create directory: file exists"))?;
    let mut flist = session.load("mkdir")?;
    if flist.tree.lookup(path).is_some() {
        return Err(Error::entry(
            "mkdir",
            path,
            "cannot create directory: file exists",
        ));
    }
    let dir = flist
        .tree
        .lookup(parent)
        .ok_or_else(|| Error::entry("mkdir", parent, "parent directory doesn't exist"))?;
    if !flist.tree.node(dir).kind.is_dir() {
        return Err(Error::entry("mkdir", parent, "not a directory"));
    }
    let meta = flist_format::Meta::root(0o755, crate::session::now());
    flist
        .tree
        .insert(dir, name, meta, Kind::empty_dir())
        .ctx("mkdir")?;
    session.save("mkdir", &flist)?;
    Ok(Response::empty())
}

/// `merge <other.flist>`: entries already present win; metadata is not merged.
pub fn merge(session: &Session, other: &Path) -> Result<Response> {
    let mut flist = session.load("merge")?;
    let arg = crate::remote::resolve("merge", other, &crate::response::NoProgress)?;
    let o = Flist::open(arg.path()).ctx("merge")?;
    let format = session.format("merge")?;
    if o.codecs().iter().any(|c| *c != format.codec()) {
        return Err(Error::usage(
            "merge",
            format!(
                "{} holds chunks of the other format than this {format} session: convert it \
                 first (zflist convert {} OUT{format})",
                other.display(),
                other.display()
            ),
        ));
    }
    flist_format::merge::merge(&mut flist.tree, &o.tree);
    session.save("merge", &flist)?;
    Ok(Response::empty())
}

/// `chunks`: every chunk key of every file.
pub fn chunks_cmd(session: &Session) -> Result<Response> {
    let flist = session.load("chunks")?;
    let refs = chunks::chunk_refs(&flist.tree);
    let unique = chunks::unique_keys(&refs).len();
    let keys: Vec<String> = refs.iter().map(|(_, b)| b.id_hex()).collect();
    let mut text = String::with_capacity(keys.len() * 33);
    for k in &keys {
        text.push_str(k);
        text.push('\n');
    }
    let json = json!({"chunks": keys, "count": refs.len(), "unique": unique});
    Ok(Response::new(json, text))
}

/// Checks every chunk of `flist` in `store` with batched EXISTS (and, with `deep`, by
/// downloading and decoding each one): a `find`-shaped response whose `failure` counts the
/// files with a missing or corrupt chunk, plus `missing` (and `corrupt`) key lists.
pub fn check_flist(
    function: &str,
    flist: &Flist,
    store: &flist_store::BlockingStore,
    deep: bool,
    progress: &dyn Progress,
) -> Result<Response> {
    progress.update(
        if deep {
            "verifying chunks"
        } else {
            "checking chunks"
        },
        0,
        0,
    );
    let report = flist_convert::verify(&flist.tree, store, deep)
        .map_err(|e| Error::new(function, ErrorKind::Convert(e.to_string())))?;
    progress.finish("chunks checked");
    let bad: std::collections::HashSet<&str> = report
        .missing
        .iter()
        .chain(&report.corrupt)
        .map(|b| b.key.as_str())
        .collect();
    let mut bad_files: Vec<NodeId> = chunks::chunk_refs(&flist.tree)
        .into_iter()
        .filter(|(_, b)| bad.contains(b.id_hex().as_str()))
        .map(|(id, _)| id)
        .collect();
    bad_files.dedup();
    let missing: Vec<&str> = report.missing.iter().map(|b| b.key.as_str()).collect();
    let corrupt: Vec<&str> = report.corrupt.iter().map(|b| b.key.as_str()).collect();
    let mut resp = find_tree(&flist.tree);
    if let Some(obj) = resp.json.as_object_mut() {
        obj.insert("failure".into(), json!(bad_files.len()));
        obj.insert("chunks".into(), json!(report.chunks));
        obj.insert("missing".into(), json!(missing));
        if deep {
            obj.insert("corrupt".into(), json!(corrupt));
        }
    }
    let mut text = format!(
        "{} chunks checked in {store}: {} missing",
        report.chunks,
        missing.len()
    );
    if deep {
        let _ = write!(text, ", {} corrupt", corrupt.len());
    }
    text.push('\n');
    for id in &bad_files {
        let _ = writeln!(text, "damaged file: {}", abs(&flist.tree, *id));
    }
    for b in &report.missing {
        let _ = writeln!(text, "missing: {} ({})", b.key, b.path);
    }
    for b in &report.corrupt {
        let _ = writeln!(text, "corrupt: {} ({}): {}", b.key, b.path, b.reason);
    }
    resp.text = text;
    if !report.is_ok() {
        let mut m = format!("{} of {} chunks missing", missing.len(), report.chunks);
        if deep {
            let _ = write!(m, ", {} corrupt", corrupt.len());
        }
        let _ = write!(m, " in {store} ({} files affected)", bad_files.len());
        resp = resp.failed(m);
    }
    Ok(resp)
}

/// `check`: tests every chunk of the session in the backend.
pub fn check(session: &Session, stores: &StoreConfig, progress: &dyn Progress) -> Result<Response> {
    let flist = session.load("check")?;
    let store = stores.open_read("check", &flist.metadata)?;
    check_flist("check", &flist, &store, false, progress)
}
