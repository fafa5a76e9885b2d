//! Import of an old hub's tree: `<root>/<repo>/<name>.flist` files, same- and cross-repository
//! symlinks, `.tag-<tag>/` directories of links, and taglinks (`<name>` → `../<repo>/.tag-<tag>`).

use std::fs;
use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

use rusqlite::params;
use serde::Serialize;
use serde_json::json;

use crate::error::SqlContext;
use crate::model::FlistInfo;
use crate::names::{validate_flist, validate_repo, validate_tag, validate_taglink};
use crate::{Actor, Hub, RepoError};

/// What an import did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ImportReport {
    /// `repo/name` (or `repo/tags/tag/name`) of everything imported.
    pub imported: Vec<String>,
    /// Paths not imported, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Imported, but with something to note (e.g. an flist our reader cannot parse).
    pub warnings: Vec<String>,
}

fn mtime(path: &Path) -> Option<i64> {
    fs::symlink_metadata(path)
        .ok()?
        .modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs() as i64)
}

/// Interprets a link target relative to `repo`'s directory: `x.flist` → (repo, x.flist),
/// `../other/x.flist` → (other, x.flist), `../other/.tag-v1` → (other, .tag-v1), and an
/// absolute path under `root` likewise. `base` is the link's directory below `root`.
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
        // `.tag-x/` followed by nothing else; tolerate a trailing name inside a tag dir
        _ => None,
    }
}

impl Hub {
    /// Imports an old hub tree (the directory holding one directory per repository).
    /// Existing catalog entries of the same names are replaced. Unreadable or invalid
    /// items are reported as skipped; nothing outside `root` is followed.
    pub fn import_legacy(&self, root: &Path) -> Result<ImportReport, RepoError> {
        let actor = Actor::system("import-legacy");
        let mut rep = ImportReport::default();
        let repos = fs::read_dir(root).map_err(|e| RepoError::io("read directory", root, e))?;
        let mut repo_dirs: Vec<(String, PathBuf)> = Vec::new();
        for e in repos.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if !is_dir {
                rep.skipped
                    .push((p.display().to_string(), "not a repository directory".into()));
                continue;
            }
            if let Err(err) = validate_repo(&name) {
                rep.skipped.push((p.display().to_string(), err.to_string()));
                continue;
            }
            repo_dirs.push((name, p));
        }
        repo_dirs.sort();
        // Pass 1: regular files. Pass 2: symlinks. Pass 3: tags. Pass 4: taglinks.
        let mut links = Vec::new();
        let mut tagdirs = Vec::new();
        for (repo, dir) in &repo_dirs {
            let rd = match fs::read_dir(dir) {
                Ok(rd) => rd,
                Err(e) => {
                    rep.skipped.push((dir.display().to_string(), e.to_string()));
                    continue;
                }
            };
            let mut items: Vec<_> = rd.flatten().collect();
            items.sort_by_key(|e| e.file_name());
            for e in items {
                let p = e.path();
                let name = e.file_name().to_string_lossy().to_string();
                let Ok(ft) = e.file_type() else { continue };
                if ft.is_symlink() {
                    links.push((repo.clone(), name, p));
                } else if ft.is_dir() && name.starts_with(".tag-") {
                    tagdirs.push((repo.clone(), name[5..].to_string(), p));
                } else if ft.is_file() && name.ends_with(".flist") {
                    match self.import_file(&actor, repo, &name, &p) {
                        Ok(warning) => {
                            rep.imported.push(format!("{repo}/{name}"));
                            rep.warnings.extend(warning);
                        }
                        Err(err) => rep.skipped.push((p.display().to_string(), err.to_string())),
                    }
                } else if name.ends_with(".md5") {
                    rep.skipped
                        .push((p.display().to_string(), "md5 sidecar (recomputed)".into()));
                } else {
                    rep.skipped
                        .push((p.display().to_string(), "not an flist, link or tag".into()));
                }
            }
        }
        let mut taglinks = Vec::new();
        for (repo, name, p) in links {
            let target = match fs::read_link(&p) {
                Ok(t) => t,
                Err(e) => {
                    rep.skipped.push((p.display().to_string(), e.to_string()));
                    continue;
                }
            };
            let Some((trepo, tname)) = link_target(root, &[repo.as_str()], &target) else {
                rep.skipped.push((
                    p.display().to_string(),
                    format!("link target {} is outside the hub", target.display()),
                ));
                continue;
            };
            if let Some(tag) = tname.strip_prefix(".tag-") {
                taglinks.push((repo, name, trepo, tag.to_string(), p));
                continue;
            }
            let time = mtime(&p);
            let res = if trepo == repo {
                self.link(&actor, &repo, &tname, &name)
            } else {
                self.crosslink(&actor, &repo, &name, &trepo, &tname)
            };
            match res.and_then(|_| self.set_times(&repo, &name, time)) {
                Ok(()) => rep.imported.push(format!("{repo}/{name}")),
                Err(err) => rep.skipped.push((p.display().to_string(), err.to_string())),
            }
        }
        for (repo, tag, dir) in tagdirs {
            if let Err(err) = validate_tag(&tag) {
                rep.skipped
                    .push((dir.display().to_string(), err.to_string()));
                continue;
            }
            let mut items: Vec<_> = match fs::read_dir(&dir) {
                Ok(rd) => rd.flatten().collect(),
                Err(e) => {
                    rep.skipped.push((dir.display().to_string(), e.to_string()));
                    continue;
                }
            };
            items.sort_by_key(|e| e.file_name());
            for e in items {
                let p = e.path();
                let name = e.file_name().to_string_lossy().to_string();
                // links inside `.tag-x/` are relative to the tag directory
                let tagdir = format!(".tag-{tag}");
                let parsed = fs::read_link(&p)
                    .ok()
                    .and_then(|t| link_target(root, &[repo.as_str(), tagdir.as_str()], &t));
                let Some((trepo, tname)) = parsed else {
                    rep.skipped.push((
                        p.display().to_string(),
                        "not a link to an flist of this hub".into(),
                    ));
                    continue;
                };
                match self.tag_add(&actor, &repo, &tag, &name, &trepo, &tname) {
                    Ok(()) => rep.imported.push(format!("{repo}/tags/{tag}/{name}")),
                    Err(err) => rep.skipped.push((p.display().to_string(), err.to_string())),
                }
            }
        }
        for (repo, name, trepo, tag, p) in taglinks {
            let res = validate_taglink(&name)
                .and_then(|_| self.crosstag(&actor, &repo, &name, &trepo, &tag));
            match res {
                Ok(()) => rep.imported.push(format!("{repo}/{name}")),
                Err(err) => rep.skipped.push((p.display().to_string(), err.to_string())),
            }
        }
        Ok(rep)
    }

    fn import_file(
        &self,
        actor: &Actor,
        repo: &str,
        name: &str,
        path: &Path,
    ) -> Result<Option<String>, RepoError> {
        validate_flist(name)?;
        let f = fs::File::open(path).map_err(|e| RepoError::io("open", path, e))?;
        let staged = self.stage_reader(f)?;
        let (info, warning) = match crate::inspect::open_flist(staged.path()) {
            Ok(fl) => (
                crate::inspect::info_of(&fl, Some("legacy import".into())),
                None,
            ),
            Err(e) => (
                FlistInfo {
                    source: Some("legacy import".into()),
                    ..Default::default()
                },
                Some(format!(
                    "{repo}/{name}: imported, but not readable here: {e}"
                )),
            ),
        };
        self.put_flist_as(
            actor,
            "import",
            repo,
            name,
            staged,
            info,
            json!({"path": path.display().to_string()}),
        )?;
        self.set_times(repo, name, mtime(path))?;
        Ok(warning)
    }

    /// Sets an imported entry's times to the original file's mtime.
    fn set_times(&self, repo: &str, name: &str, time: Option<i64>) -> Result<(), RepoError> {
        let Some(t) = time else { return Ok(()) };
        self.db.write(|tx| {
            tx.execute(
                "UPDATE entries SET updated = ?3, linktime = CASE WHEN kind = 'regular' THEN NULL ELSE ?3 END \
                 WHERE repo = ?1 AND name = ?2",
                params![repo, name, t],
            )
            .ctx("set imported times")?;
            Ok(())
        })?;
        self.bump_generation();
        Ok(())
    }
}
