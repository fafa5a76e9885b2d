//! Import of an old hub's tree: `<root>/<repo>/<name>.flist` files, same- and cross-repository
//! symlinks (also links to links, in any repository), `.tag-<tag>/` directories of links
//! (also empty ones), taglinks (`<name>` → `../<repo>/.tag-<tag>`) and empty repositories.
//!
//! Everything the old hub listed is kept, with its times: a regular entry's `updated` is the
//! file's mtime; a link's `linktime` is the link's own mtime (lstat) and its `updated` the
//! mtime of what it points to (stat), as the old hub reported them; a tag's and a
//! repository's `updated` are their folder's mtime. Links are imported in dependency order
//! (a link after its target, whatever the names' order). What cannot be imported (a dangling
//! link, a loop, a name the hub refuses) is reported with its reason; files the old hub did
//! not serve as entries (stray files, plain folders) are reported as ignored.
//!
//! The import is idempotent: an item already in the catalog as it is on disk is left alone,
//! so a second run writes nothing and reports nothing imported.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::db::sql::{params, OptionalExtension};
use serde::Serialize;
use serde_json::json;

use crate::error::SqlContext;
use crate::model::{EntryKind, FlistInfo};
use crate::names::{validate_flist, validate_repo, validate_tag, validate_taglink};
use crate::{Actor, Hub, RepoError};

/// What an import did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ImportReport {
    /// What this run added or changed: `repo`, `repo/name`, `repo/tags/tag`,
    /// `repo/tags/tag/name`.
    pub imported: Vec<String>,
    /// Items already in the catalog exactly as on disk (left alone).
    pub unchanged: usize,
    /// Items the old hub listed that cannot be imported (`repo/name` and why): dangling
    /// links, link loops, names this hub refuses.
    pub unimportable: Vec<(String, String)>,
    /// Paths that are no hub items (stray files, plain folders, md5 sidecars), and why.
    pub ignored: Vec<(String, String)>,
    /// Imported, but with something to note (e.g. an flist our reader cannot parse).
    pub warnings: Vec<String>,
}

impl ImportReport {
    /// True when the run changed nothing in the catalog.
    pub fn is_noop(&self) -> bool {
        self.imported.is_empty()
    }
}

/// mtime (seconds) of `path` itself (lstat: a link's own time).
fn lmtime(path: &Path) -> Option<i64> {
    fs::symlink_metadata(path).ok().map(|m| m.mtime())
}

/// mtime (seconds) of what `path` points to (stat), or of the link itself when dangling.
fn mtime(path: &Path) -> Option<i64> {
    fs::metadata(path)
        .ok()
        .map(|m| m.mtime())
        .or_else(|| lmtime(path))
}

/// Interprets a link target found in the directory `base` (components below `root`):
/// `x.flist` → (repo, x.flist), `../other/x.flist` → (other, x.flist),
/// `../other/.tag-v1` → (other, .tag-v1), an absolute path under `root` likewise.
fn link_target(root: &Path, base: &[&str], target: &Path) -> Option<(String, String)> {
    let rel: PathBuf = if target.is_absolute() {
        let canon_root = root.canonicalize().ok()?;
        target
            .strip_prefix(&canon_root)
            .or_else(|_| target.strip_prefix(root))
            .ok()?
            .to_path_buf()
    } else {
        let mut parts: Vec<String> = base.iter().map(|s| s.to_string()).collect();
        for c in target.components() {
            match c {
                Component::ParentDir => {
                    parts.pop()?;
                }
                Component::Normal(s) => parts.push(s.to_str()?.to_string()),
                Component::CurDir => {}
                _ => return None,
            }
        }
        parts.iter().collect()
    };
    let parts: Vec<&str> = rel.iter().map(|s| s.to_str()).collect::<Option<Vec<_>>>()?;
    match parts.as_slice() {
        [r, n] => Some((r.to_string(), n.to_string())),
        _ => None,
    }
}

/// One item of a repository folder.
#[derive(Debug)]
enum Item {
    /// A regular flist file.
    Regular { path: PathBuf },
    /// A link to `(repo, name)` (an flist or a link).
    Link {
        path: PathBuf,
        target: (String, String),
    },
    /// A taglink to `repo`'s tag.
    Taglink {
        path: PathBuf,
        target: (String, String),
    },
}

/// A `.tag-<tag>/` folder.
#[derive(Debug)]
struct TagDir {
    repo: String,
    tag: String,
    path: PathBuf,
}

type Key = (String, String);

fn show(k: &Key) -> String {
    format!("{}/{}", k.0, k.1)
}

/// The scanned tree.
#[derive(Default)]
struct Scan {
    /// Importable repositories with their folder and mtime.
    repos: Vec<(String, PathBuf, i64)>,
    /// Entries by (repo, name), in byte order.
    items: BTreeMap<Key, Item>,
    tags: Vec<TagDir>,
}

impl Hub {
    /// Imports an old hub tree (the directory holding one directory per repository); see the
    /// module documentation. Nothing outside `root` is followed.
    pub fn import_legacy(&self, root: &Path) -> Result<ImportReport, RepoError> {
        let mut rep = ImportReport::default();
        let scan = scan(root, &mut rep)?;
        let mut imp = Importer {
            hub: self,
            root,
            actor: Actor::system("import-legacy"),
            scan: &scan,
            done: HashMap::new(),
            rep,
        };
        for (repo, _, time) in &scan.repos {
            imp.repository(repo, *time, true)?;
        }
        for (key, item) in &scan.items {
            if let Item::Regular { path } = item {
                let r = imp.regular(key, path);
                imp.record(key, r);
            }
        }
        let keys: Vec<Key> = scan.items.keys().cloned().collect();
        for key in &keys {
            if matches!(scan.items.get(key), Some(Item::Link { .. })) {
                // The outcome is recorded in the report.
                let _ = imp.visit(key, &mut Vec::new());
            }
        }
        for td in &scan.tags {
            imp.tag(td)?;
        }
        for (key, item) in &scan.items {
            if let Item::Taglink { path, target } = item {
                let r = imp.taglink(key, path, target);
                imp.record(key, r);
            }
        }
        // Writes bumped repositories to "now": put back the folders' times.
        for (repo, _, time) in &scan.repos {
            imp.repository(repo, *time, false)?;
        }
        Ok(imp.rep)
    }
}

fn scan(root: &Path, rep: &mut ImportReport) -> Result<Scan, RepoError> {
    let mut s = Scan::default();
    let mut top: Vec<_> = fs::read_dir(root)
        .map_err(|e| RepoError::io("read directory", root, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| RepoError::io("read directory", root, e))?;
    top.sort_by_key(|e| e.file_name());
    for e in top {
        let p = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        let meta = fs::symlink_metadata(&p).map_err(|e| RepoError::io("stat", &p, e))?;
        if !meta.is_dir() {
            rep.ignored
                .push((p.display().to_string(), "not a repository folder".into()));
            continue;
        }
        if let Err(err) = validate_repo(&name) {
            rep.unimportable.push((name, err.to_string()));
            continue;
        }
        if crate::names::is_reserved(&name) {
            rep.unimportable.push((
                name,
                "reserved: the hub's web routes use this name, it cannot be a repository".into(),
            ));
            continue;
        }
        s.repos.push((name.clone(), p.clone(), meta.mtime()));
        let mut items: Vec<_> = fs::read_dir(&p)
            .map_err(|e| RepoError::io("read directory", &p, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| RepoError::io("read directory", &p, e))?;
        items.sort_by_key(|e| e.file_name());
        for it in items {
            let ip = it.path();
            let Some(iname) = it.file_name().to_str().map(str::to_string) else {
                rep.unimportable.push((
                    format!("{name}/{}", it.file_name().to_string_lossy()),
                    "the name is not UTF-8".into(),
                ));
                continue;
            };
            let shown = format!("{name}/{iname}");
            let m = fs::symlink_metadata(&ip).map_err(|e| RepoError::io("stat", &ip, e))?;
            if m.file_type().is_symlink() {
                let raw = fs::read_link(&ip).map_err(|e| RepoError::io("read link", &ip, e))?;
                let Some(target) = link_target(root, &[name.as_str()], &raw) else {
                    rep.unimportable.push((
                        shown,
                        format!(
                            "link to {} points outside the hub's repositories",
                            raw.display()
                        ),
                    ));
                    continue;
                };
                if let Some(tag) = target.1.strip_prefix(".tag-") {
                    if let Err(err) = validate_taglink(&iname) {
                        rep.unimportable.push((shown, err.to_string()));
                        continue;
                    }
                    let target = (target.0.clone(), tag.to_string());
                    s.items
                        .insert((name.clone(), iname), Item::Taglink { path: ip, target });
                } else {
                    if let Err(err) = validate_flist(&iname) {
                        rep.unimportable.push((shown, err.to_string()));
                        continue;
                    }
                    s.items
                        .insert((name.clone(), iname), Item::Link { path: ip, target });
                }
            } else if m.is_dir() {
                match iname.strip_prefix(".tag-") {
                    Some(tag) => {
                        if let Err(err) = validate_tag(tag) {
                            rep.unimportable
                                .push((format!("{name}/tags/{tag}"), err.to_string()));
                            continue;
                        }
                        s.tags.push(TagDir {
                            repo: name.clone(),
                            tag: tag.to_string(),
                            path: ip,
                        });
                    }
                    None => rep
                        .ignored
                        .push((shown, "a plain folder, not a tag".into())),
                }
            } else if m.is_file() && iname.ends_with(".flist") {
                if let Err(err) = validate_flist(&iname) {
                    rep.unimportable.push((shown, err.to_string()));
                    continue;
                }
                s.items
                    .insert((name.clone(), iname), Item::Regular { path: ip });
            } else if iname.ends_with(".md5") {
                rep.ignored
                    .push((shown, "md5 sidecar (the hub computes md5s)".into()));
            } else {
                rep.ignored
                    .push((shown, "not an flist, a link or a tag".into()));
            }
        }
    }
    Ok(s)
}

struct Importer<'a> {
    hub: &'a Hub,
    root: &'a Path,
    actor: Actor,
    scan: &'a Scan,
    /// Outcome per entry: `Ok` imported (or unchanged), `Err(reason)` unimportable.
    done: HashMap<Key, Result<(), String>>,
    rep: ImportReport,
}

/// Whether a step wrote something.
enum Step {
    Imported,
    Unchanged,
}

impl Importer<'_> {
    fn record(&mut self, key: &Key, r: Result<Step, String>) {
        match &r {
            Ok(Step::Imported) => self.rep.imported.push(show(key)),
            Ok(Step::Unchanged) => self.rep.unchanged += 1,
            Err(why) => self.rep.unimportable.push((show(key), why.clone())),
        }
        self.done.insert(key.clone(), r.map(|_| ()));
    }

    /// Creates `repo` or sets its time (`count`: report it; the final pass only restores
    /// times that writes moved).
    fn repository(&mut self, repo: &str, time: i64, count: bool) -> Result<(), RepoError> {
        let current: Option<i64> = self.hub.db.read(|c| {
            c.prepare_cached("SELECT updated FROM repositories WHERE name = ?1")
                .and_then(|mut s| s.query_row(params![repo], |r| r.get(0)).optional())
                .ctx("read repository")
        })?;
        if current == Some(time) {
            if count {
                self.rep.unchanged += 1;
            }
            return Ok(());
        }
        self.hub.db.write(|tx| {
            tx.execute(
                "INSERT INTO repositories(name, created, updated) VALUES (?1, ?2, ?2) \
                 ON CONFLICT(name) DO UPDATE SET updated = excluded.updated",
                params![repo, time],
            )
            .ctx("import repository")?;
            Ok(())
        })?;
        self.hub.db.bump_generation();
        if count {
            self.rep.imported.push(repo.to_string());
        }
        Ok(())
    }

    fn regular(&mut self, key: &Key, path: &Path) -> Result<Step, String> {
        let (repo, name) = (key.0.as_str(), key.1.as_str());
        let time = mtime(path);
        let (sha, _, _) = crate::files::hash_file(path).map_err(|e| e.to_string())?;
        if let Ok(Some(e)) = self.hub.catalog().entry(repo, name) {
            if matches!(&e.kind, EntryKind::Regular { sha256, .. } if *sha256 == sha)
                && Some(e.updated) == time
                && e.uploader.as_deref() == Some(repo)
            {
                return Ok(Step::Unchanged);
            }
        }
        let f = fs::File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
        let staged = self
            .hub
            .catalog()
            .stage_reader(f)
            .map_err(|e| e.to_string())?;
        let info = match crate::inspect::open_flist(staged.path()) {
            Ok(fl) => crate::inspect::info_of(&fl, Some("legacy import".into())),
            Err(e) => {
                self.rep.warnings.push(format!(
                    "{repo}/{name}: imported, but not readable here: {e}"
                ));
                FlistInfo {
                    source: Some("legacy import".into()),
                    ..Default::default()
                }
            }
        };
        self.hub
            .catalog()
            .put_flist_checked(
                &self.actor,
                "import",
                repo,
                name,
                staged,
                info,
                json!({"path": path.display().to_string()}),
                &|| true,
            )
            .map_err(|e| e.to_string())?;
        self.set_entry_times(repo, name, time, None)
            .map_err(|e| e.to_string())?;
        Ok(Step::Imported)
    }

    /// Imports the link `key` after what it points to; `stack` holds the links being
    /// followed (to name a loop).
    fn visit(&mut self, key: &Key, stack: &mut Vec<Key>) -> Result<(), String> {
        if let Some(r) = self.done.get(key) {
            return r.clone();
        }
        if let Some(pos) = stack.iter().position(|k| k == key) {
            let mut chain: Vec<String> = stack[pos..].iter().map(show).collect();
            chain.push(show(key));
            return Err(format!("symlink loop: {}", chain.join(" -> ")));
        }
        let scan = self.scan;
        let Some(item) = scan.items.get(key) else {
            // Not in the tree: fine if the catalog already holds an flist of that name.
            return match self.hub.catalog().entry(&key.0, &key.1) {
                Ok(Some(e)) if !matches!(e.kind, EntryKind::Taglink { .. }) => Ok(()),
                Ok(Some(_)) => Err(format!("{} is a taglink, not an flist", show(key))),
                _ => Err(format!("dangling link: {} does not exist", show(key))),
            };
        };
        let (path, target) = match item {
            Item::Regular { .. } => {
                return Err(format!("{} was not imported", show(key)));
            }
            Item::Taglink { .. } => {
                return Err(format!("{} is a taglink, not an flist", show(key)));
            }
            Item::Link { path, target } => (path, target),
        };
        stack.push(key.clone());
        let below = self.visit(target, stack);
        stack.pop();
        let r = match below {
            Err(why) if why.starts_with("symlink loop") || why.starts_with("dangling") => Err(why),
            Err(why) => Err(format!(
                "its target {} cannot be imported: {why}",
                show(target)
            )),
            Ok(()) => self.link(key, path, target),
        };
        let out = r.as_ref().map(|_| ()).map_err(String::clone);
        self.record(key, r);
        out
    }

    fn link(&mut self, key: &Key, path: &Path, target: &Key) -> Result<Step, String> {
        let (repo, name) = (key.0.as_str(), key.1.as_str());
        let (linktime, updated) = (lmtime(path), mtime(path));
        // The old hub stored a crosslink as `../<repo>/<name>` even into its own
        // repository, a plain link as `<name>`.
        let cross =
            target.0 != repo || fs::read_link(path).is_ok_and(|t| t.components().count() > 1);
        if let Ok(Some(e)) = self.hub.catalog().entry(repo, name) {
            if matches!(&e.kind, EntryKind::Symlink { target_repo, target_name, crosslink }
                if *target_repo == target.0 && *target_name == target.1 && *crosslink == cross)
                && e.linktime == linktime
                && Some(e.updated) == updated
            {
                return Ok(Step::Unchanged);
            }
        }
        let res = if !cross {
            self.hub.catalog().link(&self.actor, repo, &target.1, name)
        } else {
            self.hub
                .catalog()
                .crosslink(&self.actor, repo, name, &target.0, &target.1)
        };
        res.map_err(|e| e.to_string())?;
        self.set_entry_times(repo, name, updated, linktime)
            .map_err(|e| e.to_string())?;
        Ok(Step::Imported)
    }

    fn tag(&mut self, td: &TagDir) -> Result<(), RepoError> {
        let (repo, tag) = (td.repo.as_str(), td.tag.as_str());
        let shown_tag = format!("{repo}/tags/{tag}");
        let time = lmtime(&td.path).unwrap_or_else(crate::clock::now);
        let current: Option<i64> = self.hub.db.read(|c| {
            c.prepare_cached("SELECT updated FROM tags WHERE repo = ?1 AND tag = ?2")
                .and_then(|mut s| s.query_row(params![repo, tag], |r| r.get(0)).optional())
                .ctx("read tag")
        })?;
        let mut changed = current.is_none();
        if current.is_none() {
            self.hub.db.write(|tx| {
                tx.execute(
                    "INSERT INTO tags(repo, tag, updated) VALUES (?1, ?2, ?3)",
                    params![repo, tag, time],
                )
                .ctx("import tag")?;
                Ok(())
            })?;
            self.hub.db.bump_generation();
            self.rep.imported.push(shown_tag.clone());
        }
        let mut links: Vec<_> = match fs::read_dir(&td.path) {
            Ok(rd) => rd.flatten().collect(),
            Err(e) => {
                self.rep
                    .unimportable
                    .push((shown_tag, format!("cannot read the tag folder: {e}")));
                return Ok(());
            }
        };
        links.sort_by_key(|e| e.file_name());
        let tagdir = format!(".tag-{tag}");
        for e in links {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            let shown = format!("{repo}/tags/{tag}/{name}");
            let is_link = fs::symlink_metadata(&p)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false);
            if !is_link {
                self.rep
                    .ignored
                    .push((shown, "not a link (a tag holds links)".into()));
                continue;
            }
            if let Err(err) = validate_flist(&name) {
                self.rep.unimportable.push((shown, err.to_string()));
                continue;
            }
            let raw = fs::read_link(&p).map_err(|e| RepoError::io("read link", &p, e))?;
            let Some(target) = link_target(self.root, &[repo, tagdir.as_str()], &raw) else {
                self.rep.unimportable.push((
                    shown,
                    format!(
                        "link to {} points outside the hub's repositories",
                        raw.display()
                    ),
                ));
                continue;
            };
            if let Err(why) = self.visit_target(&target) {
                self.rep.unimportable.push((shown, why));
                continue;
            }
            let linktime = lmtime(&p).unwrap_or(time);
            let existing: Option<(String, String, i64)> = self.hub.db.read(|c| {
                c.prepare_cached(
                    "SELECT target_repo, target_name, linktime FROM tag_links \
                     WHERE repo = ?1 AND tag = ?2 AND name = ?3",
                )
                .and_then(|mut s| {
                    s.query_row(params![repo, tag, name], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .optional()
                })
                .ctx("read tag link")
            })?;
            if existing == Some((target.0.clone(), target.1.clone(), linktime)) {
                self.rep.unchanged += 1;
                continue;
            }
            if let Err(err) =
                self.hub
                    .catalog()
                    .tag_add(&self.actor, repo, tag, &name, &target.0, &target.1)
            {
                self.rep.unimportable.push((shown, err.to_string()));
                continue;
            }
            self.hub.db.write(|tx| {
                tx.execute(
                    "UPDATE tag_links SET linktime = ?4 WHERE repo = ?1 AND tag = ?2 AND name = ?3",
                    params![repo, tag, name, linktime],
                )
                .ctx("set imported tag link time")?;
                Ok(())
            })?;
            changed = true;
            self.rep.imported.push(shown);
        }
        if changed || current != Some(time) {
            self.hub.db.write(|tx| {
                tx.execute(
                    "UPDATE tags SET updated = ?3 WHERE repo = ?1 AND tag = ?2",
                    params![repo, tag, time],
                )
                .ctx("set imported tag time")?;
                Ok(())
            })?;
            self.hub.db.bump_generation();
        } else {
            self.rep.unchanged += 1;
        }
        Ok(())
    }

    /// A link's target is usable when it is (or becomes) an imported flist or link.
    fn visit_target(&mut self, target: &Key) -> Result<(), String> {
        match self.scan.items.get(target) {
            Some(Item::Link { .. }) => self.visit(target, &mut Vec::new()),
            Some(Item::Regular { .. }) => self
                .done
                .get(target)
                .cloned()
                .unwrap_or_else(|| Err(format!("{} was not imported", show(target)))),
            Some(Item::Taglink { .. }) => {
                Err(format!("{} is a taglink, not an flist", show(target)))
            }
            None => match self.hub.catalog().entry(&target.0, &target.1) {
                Ok(Some(e)) if !matches!(e.kind, EntryKind::Taglink { .. }) => Ok(()),
                _ => Err(format!("dangling link: {} does not exist", show(target))),
            },
        }
    }

    fn taglink(&mut self, key: &Key, path: &Path, target: &Key) -> Result<Step, String> {
        let (repo, name) = (key.0.as_str(), key.1.as_str());
        let (linktime, updated) = (lmtime(path), mtime(path));
        if let Ok(Some(e)) = self.hub.catalog().entry(repo, name) {
            if matches!(&e.kind, EntryKind::Taglink { target_repo, tag }
                if *target_repo == target.0 && *tag == target.1)
                && e.linktime == linktime
                && Some(e.updated) == updated
            {
                return Ok(Step::Unchanged);
            }
        }
        self.hub
            .catalog()
            .crosstag(&self.actor, repo, name, &target.0, &target.1)
            .map_err(|e| match e {
                RepoError::NotFound(_) => {
                    format!(
                        "dangling taglink: tag {}/tags/{} does not exist",
                        target.0, target.1
                    )
                }
                other => other.to_string(),
            })?;
        self.set_entry_times(repo, name, updated, linktime)
            .map_err(|e| e.to_string())?;
        Ok(Step::Imported)
    }

    /// Sets an imported entry's times (and, for regular entries, the repository as uploader).
    fn set_entry_times(
        &self,
        repo: &str,
        name: &str,
        updated: Option<i64>,
        linktime: Option<i64>,
    ) -> Result<(), RepoError> {
        self.hub.db.write(|tx| {
            tx.execute(
                "UPDATE entries SET updated = coalesce(?3, updated), \
                 linktime = CASE WHEN kind = 'regular' THEN NULL ELSE coalesce(?4, ?3, linktime) END, \
                 uploader = CASE WHEN kind = 'regular' THEN ?1 ELSE uploader END \
                 WHERE repo = ?1 AND name = ?2",
                params![repo, name, updated, linktime],
            )
            .ctx("set imported times")?;
            Ok(())
        })?;
        self.hub.db.bump_generation();
        Ok(())
    }
}
