//! `hub-server migrate`: moves a single-machine hub into a cluster: its catalog into
//! PostgreSQL, its flist files and chunks into the object store the replicas share.
//! Resumable and idempotent (every step skips what the destination holds), so an
//! interrupted move is finished by running it again; `hub-server check` on the cluster then
//! reports clean.

use std::path::PathBuf;
use std::sync::Arc;

use hub_repo::{FilesCopy, Hub, TableCopy};
use serde::Serialize;

use crate::mirror_chunks::{copy_chunks, ChunksCopy};

/// Where a hub moves to.
#[derive(Clone, Debug)]
pub struct Destination {
    /// The catalog: a PostgreSQL URL (or a SQLite file).
    pub catalog: String,
    /// The store for flist files and chunks (`s3://…`; `None`: the chunks stay where they
    /// are and the files go to `data_dir`).
    pub store: Option<String>,
    /// The destination's data directory (its local cache of flist files).
    pub data_dir: PathBuf,
}

/// What a move copied.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MigrateReport {
    /// Per catalog table.
    pub tables: Vec<TableCopy>,
    /// The flist files.
    pub files: FilesCopy,
    /// The chunks (none without a destination store).
    pub chunks: Option<ChunksCopy>,
}

/// Why a move stopped (what was copied so far stays; run it again).
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The catalog or the flist files.
    #[error("{0}")]
    Repo(#[from] hub_repo::RepoError),
    /// Opening a chunk store.
    #[error("{0}")]
    Store(#[from] flist_store::StoreError),
    /// Copying chunks.
    #[error("copying chunks: {0}")]
    Chunks(#[from] crate::mirror::SyncError),
    /// A worker thread died.
    #[error("{0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Copies `source` (its chunks in `source_store`) into `dest`; `progress` hears of each step.
pub async fn migrate(
    source: Arc<Hub>,
    source_store: &str,
    dest: &Destination,
    progress: impl Fn(&str),
) -> Result<MigrateReport, MigrateError> {
    let d = dest.clone();
    progress("opening the destination");
    let target = tokio::task::spawn_blocking(move || {
        let hub = Hub::open_existing_on(&d.data_dir, Some(&d.catalog))?;
        if let Some(url) = &d.store {
            hub.share_files_at(url)?;
        }
        Ok::<_, hub_repo::RepoError>(hub)
    })
    .await??;
    let target = Arc::new(target);
    progress("copying the catalog");
    let (s, t) = (source.clone(), target.clone());
    let tables = tokio::task::spawn_blocking(move || s.copy_catalog_to(&t)).await??;
    progress("copying the flist files");
    let (s, t) = (source.clone(), target.clone());
    let files = tokio::task::spawn_blocking(move || s.copy_files_to(&t)).await??;
    let chunks = match &dest.store {
        Some(url) => {
            progress("copying the chunks");
            let from = flist_store::open(source_store).await?;
            let to = flist_store::open(url).await?;
            Some(copy_chunks(&source, from, to).await?)
        }
        None => None,
    };
    Ok(MigrateReport {
        tables,
        files,
        chunks,
    })
}
