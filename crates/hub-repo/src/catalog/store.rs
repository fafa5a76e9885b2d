//! Flist files: staging, content-addressed storage, the cached metadata and dump, and the one
//! path that stores a flist as an entry ([`Catalog::put_flist`], [`Catalog::store_file`]).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::db::sql::{params, OptionalExtension};
use flist_format::Flist;
use serde_json::{json, Map, Value};

use super::sql::{audit, bump_repo, get_entry, upsert_regular};
use super::Catalog;
use crate::clock::now;
use crate::error::SqlContext;
use crate::files::StagedFlist;
use crate::inspect::{dump_text, metadata_json, open_flist};
use crate::model::*;
use crate::names::{validate_flist, validate_repo};
use crate::{Actor, RepoError};

impl Catalog {
    // ----- staging -------------------------------------------------------------------------

    /// A fresh path in the hub's temp area (same filesystem as the store), e.g. for a
    /// converter to write a flist into before [`Catalog::stage_file`].
    pub fn temp_path(&self, suffix: &str) -> PathBuf {
        self.blobs.temp_path(suffix)
    }

    /// The hub's temp directory.
    pub fn tmp_dir(&self) -> &Path {
        self.blobs.tmp_dir()
    }

    /// Streams `input` into a staged (fsynced, hashed, unreferenced) flist file.
    pub fn stage_reader(&self, input: impl Read) -> Result<StagedFlist, RepoError> {
        self.blobs.stage_reader(input)
    }

    /// Stages an existing file (moved into the temp area).
    pub fn stage_file(&self, path: &Path) -> Result<StagedFlist, RepoError> {
        self.blobs.stage_file(path)
    }

    /// Path of the stored file for a content address. A replica that shares its files with
    /// others ([`crate::Hub::share_files`]) downloads a file another replica stored on first
    /// use; when that fails (logged) the path names no file and reading it fails.
    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.blobs.fetched(sha256).unwrap_or_else(|e| {
            tracing::warn!("flist file {sha256}: {e}");
            self.blobs.path_of(sha256)
        })
    }

    /// The content addresses of every recorded flist file, sorted.
    pub fn blob_shas(&self) -> Result<Vec<String>, RepoError> {
        self.db.read(|c| {
            let mut st = c
                .prepare("SELECT sha256 FROM blobs ORDER BY sha256")
                .ctx("list flist files")?;
            st.query_map((), |r| r.get::<_, String>(0))
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .ctx("list flist files")
        })
    }

    /// The local file of a stored flist file ([`Catalog::blob_path`] with its errors): `None`
    /// when it is stored nowhere.
    pub fn flist_file(&self, sha256: &str) -> Result<Option<PathBuf>, RepoError> {
        self.blobs.local(sha256)
    }

    // ----- writes --------------------------------------------------------------------------

    /// Creates or replaces the regular entry `repo/name` with a staged flist file.
    ///
    /// The file is moved to its content address first, then one transaction records the blob,
    /// the entry and the audit record: a crash in between leaves the previous state.
    pub fn put_flist(
        &self,
        actor: &Actor,
        repo: &str,
        name: &str,
        staged: StagedFlist,
        info: FlistInfo,
    ) -> Result<Entry, RepoError> {
        self.put_flist_checked(
            actor,
            "upload",
            repo,
            name,
            staged,
            info,
            json!({}),
            &|| true,
        )
    }

    /// [`Catalog::put_flist`] audited as `action` with extra `detail`; `wanted` is asked inside
    /// the transaction, right before anything is recorded: `false` (the request behind it
    /// was cancelled) records nothing and fails with [`RepoError::Cancelled`].
    #[allow(clippy::too_many_arguments)]
    pub fn put_flist_checked(
        &self,
        actor: &Actor,
        action: &str,
        repo: &str,
        name: &str,
        staged: StagedFlist,
        info: FlistInfo,
        mut detail: Value,
        wanted: &dyn Fn() -> bool,
    ) -> Result<Entry, RepoError> {
        validate_repo(repo)?;
        validate_flist(name)?;
        actor.check_write(repo)?;
        if let Value::Object(m) = &mut detail {
            m.insert("sha256".into(), json!(staged.sha256));
            m.insert("source".into(), json!(info.source));
        }
        let metadata = info.metadata.map(|m| Value::Object(m).to_string());
        let dump = info.dump.map(|d| d.to_string());
        let uploader = actor.user.clone();
        // The upload to a shared store happens here, outside the write lock.
        self.blobs.upload(&staged)?;
        let entry = self.audited(actor, action, repo, name, detail, |tx, ts| {
            if !wanted() {
                return Err(RepoError::Cancelled);
            }
            // Placed under the write lock, so a concurrent `gc` cannot remove the file
            // between placing and recording it.
            self.blobs.commit(&staged)?;
            tx.prepare_cached(
                "INSERT INTO blobs(sha256, md5, size, metadata, dump, created) VALUES (?1,?2,?3,?4,?5,?6) \
                 ON CONFLICT(sha256) DO UPDATE SET metadata = coalesce(blobs.metadata, excluded.metadata), \
                 dump = coalesce(blobs.dump, excluded.dump)",
            )
            .and_then(|mut s| {
                s.execute(params![staged.sha256, staged.md5, staged.size as i64, metadata, dump, ts])
            })
            .ctx("record flist file")?;
            upsert_regular(tx, repo, name, &staged.sha256, &uploader, info.source.as_deref(), ts)?;
            get_entry(tx, repo, name)?.ok_or_else(|| RepoError::NotFound(format!("{repo}/{name}")))
        })?;
        self.index_stored(&staged.sha256);
        Ok(entry)
    }

    /// Stores the flist file at `path` (written by a converter, ideally under
    /// [`Catalog::temp_path`]: it is moved) as the regular entry `repo/name`, audited as an
    /// upload. Its metadata is recorded; its dump is made on first request; its path index is
    /// built from the file one directory at a time. The one path every producer of a flist
    /// (archive upload, image conversion, merge, derive) goes through; see
    /// [`Catalog::store_file_checked`] for producers a client may abandon.
    pub fn store_file(
        &self,
        actor: &Actor,
        repo: &str,
        name: &str,
        path: &Path,
        source: Option<String>,
    ) -> Result<Entry, RepoError> {
        self.store_file_checked(
            actor,
            "upload",
            repo,
            name,
            path,
            source,
            json!({}),
            &|| true,
        )
    }

    /// [`Catalog::store_file`] audited as `action` with extra `detail`, recording nothing unless
    /// `wanted()` still holds inside the catalog transaction (else [`RepoError::Cancelled`]).
    #[allow(clippy::too_many_arguments)]
    pub fn store_file_checked(
        &self,
        actor: &Actor,
        action: &str,
        repo: &str,
        name: &str,
        path: &Path,
        source: Option<String>,
        detail: Value,
        wanted: &dyn Fn() -> bool,
    ) -> Result<Entry, RepoError> {
        validate_repo(repo)?;
        validate_flist(name)?;
        actor.check_write(repo)?;
        if !wanted() {
            let _ = std::fs::remove_file(path);
            return Err(RepoError::Cancelled);
        }
        let metadata = match flist_format::Flist::open_metadata(path) {
            Ok(md) => md,
            Err(e) => {
                let _ = std::fs::remove_file(path);
                return Err(RepoError::Format {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                });
            }
        };
        let staged = self.stage_file(path)?;
        let info = FlistInfo {
            source,
            metadata: Some(metadata_json(&metadata)),
            dump: None,
        };
        self.put_flist_checked(actor, action, repo, name, staged, info, detail, wanted)
    }

    /// Stores the in-memory `flist` as the regular entry `repo/name` (audited as an upload):
    /// written to the temp area, then stored by [`Catalog::store_file`].
    pub fn store_flist(
        &self,
        actor: &Actor,
        repo: &str,
        name: &str,
        flist: &Flist,
        source: Option<String>,
    ) -> Result<Entry, RepoError> {
        validate_repo(repo)?;
        validate_flist(name)?;
        actor.check_write(repo)?;
        let out = self.temp_path(".flist");
        if let Err(e) = flist.write(&out) {
            let _ = std::fs::remove_file(&out);
            return Err(match e {
                flist_format::FormatError::Io { source, .. } => {
                    RepoError::io("write flist", &out, source)
                }
                e => RepoError::Format {
                    path: out,
                    message: e.to_string(),
                },
            });
        }
        self.store_file(actor, repo, name, &out, source)
    }

    /// Records one staged flist under many `(repo, name)` entries in a single transaction
    /// (seeding, mirroring, benchmarks); each entry is audited like an upload.
    pub fn put_flist_many(
        &self,
        actor: &Actor,
        targets: &[(String, String)],
        staged: StagedFlist,
        info: FlistInfo,
    ) -> Result<usize, RepoError> {
        for (repo, name) in targets {
            validate_repo(repo)?;
            validate_flist(name)?;
            actor.check_write(repo)?;
        }
        let metadata = info.metadata.map(|m| Value::Object(m).to_string());
        let dump = info.dump.map(|d| d.to_string());
        let detail = json!({"sha256": staged.sha256, "source": info.source});
        self.blobs.upload(&staged)?;
        let n = self.db.write(|tx| {
            let ts = now();
            self.blobs.commit(&staged)?;
            tx.prepare_cached(
                "INSERT INTO blobs(sha256, md5, size, metadata, dump, created) VALUES (?1,?2,?3,?4,?5,?6) \
                 ON CONFLICT(sha256) DO UPDATE SET metadata = coalesce(blobs.metadata, excluded.metadata), \
                 dump = coalesce(blobs.dump, excluded.dump)",
            )
            .and_then(|mut s| s.execute(params![staged.sha256, staged.md5, staged.size as i64, metadata, dump, ts]))
            .ctx("record flist file")?;
            for (repo, name) in targets {
                bump_repo(tx, repo, ts)?;
                upsert_regular(tx, repo, name, &staged.sha256, &actor.user, info.source.as_deref(), ts)?;
                audit(tx, actor, "upload", repo, name, &detail, ts)?;
            }
            Ok(targets.len())
        })?;
        self.db.bump_generation();
        self.index_stored(&staged.sha256);
        Ok(n)
    }

    /// The cached metadata (JSON object text) of a stored file, if recorded.
    pub fn blob_metadata(&self, sha256: &str) -> Result<Option<String>, RepoError> {
        self.db.read(|c| {
            c.prepare_cached("SELECT metadata FROM blobs WHERE sha256 = ?1")
                .and_then(|mut s| {
                    s.query_row(params![sha256], |r| r.get::<_, Option<String>>(0))
                        .optional()
                })
                .map(Option::flatten)
                .ctx("read metadata")
        })
    }

    /// The cached dump (JSON text) of a stored file, if recorded.
    pub fn blob_dump(&self, sha256: &str) -> Result<Option<String>, RepoError> {
        self.db.read(|c| {
            c.prepare_cached("SELECT dump FROM blobs WHERE sha256 = ?1")
                .and_then(|mut s| {
                    s.query_row(params![sha256], |r| r.get::<_, Option<String>>(0))
                        .optional()
                })
                .map(Option::flatten)
                .ctx("read dump")
        })
    }

    /// Records the metadata and dump computed for a stored file (not audited: derived data).
    pub fn set_blob_info(
        &self,
        sha256: &str,
        metadata: Option<&str>,
        dump: Option<&str>,
    ) -> Result<(), RepoError> {
        self.db.write(|tx| {
            tx.prepare_cached(
                "UPDATE blobs SET metadata = coalesce(?2, metadata), dump = coalesce(?3, dump) WHERE sha256 = ?1",
            )
            .and_then(|mut s| s.execute(params![sha256, metadata, dump]))
            .ctx("record flist info")?;
            Ok(())
        })
    }
}

/// One flist parsed for its dump at a time: a parse holds the whole tree in memory.
static PARSING: Mutex<()> = Mutex::new(());

impl Catalog {
    fn ensure_info(&self, r: &Resolved) -> Result<(Option<String>, Option<String>), RepoError> {
        let (md, dump) = (self.blob_metadata(&r.sha256)?, self.blob_dump(&r.sha256)?);
        if md.is_some() && dump.is_some() {
            return Ok((md, dump));
        }
        let _one = PARSING.lock().unwrap_or_else(|p| p.into_inner());
        let (md, dump) = (self.blob_metadata(&r.sha256)?, self.blob_dump(&r.sha256)?);
        if md.is_some() && dump.is_some() {
            return Ok((md, dump));
        }
        let path = self.blob_path(&r.sha256);
        let flist = open_flist(&path)?;
        let md = Value::Object(metadata_json(&flist.metadata)).to_string();
        let dump = dump_text(&flist.tree);
        drop(flist);
        self.set_blob_info(&r.sha256, Some(&md), Some(&dump))?;
        Ok((Some(md), Some(dump)))
    }

    /// The dump (JSON text) of a resolved flist, computed once and cached in the catalog.
    pub fn dump(&self, r: &Resolved) -> Result<String, RepoError> {
        match self.blob_dump(&r.sha256)? {
            Some(d) => Ok(d),
            None => self
                .ensure_info(r)?
                .1
                .ok_or_else(|| RepoError::NotFound(format!("dump of {}/{}", r.repo, r.name))),
        }
    }

    /// The metadata (JSON object of raw strings) of a resolved flist, cached like [`Catalog::dump`].
    pub fn metadata(&self, r: &Resolved) -> Result<Map<String, Value>, RepoError> {
        let text = match self.blob_metadata(&r.sha256)? {
            Some(m) => m,
            None => self.ensure_info(r)?.0.unwrap_or_else(|| "{}".into()),
        };
        match serde_json::from_str(&text) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Ok(Map::new()),
        }
    }
}
