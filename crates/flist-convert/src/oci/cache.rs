//! The layer cache: each converted layer's [`LayerFile`] (its entries with chunk keys,
//! whiteouts, opaque directories, links to lower layers; gzip'd JSON lines) keyed by layer
//! digest, `<dir>/layers/sha256/<hex>.layer.gz` (`<hex>.rfs.layer.gz` for layers encoded
//! with the `.fl` codec), written atomically. A cached layer is reused only when every
//! chunk it references is still in the target store (checked with batched `exists_many`
//! while its entries stream by), so a cache shared between stores stays sound.

use std::path::PathBuf;

use flist_store::BlockingStore;

use super::layer::LayerFile;
use super::OciError;

/// Keys per `exists_many` call when validating a cached layer.
const EXISTS_BATCH: usize = 2048;

/// An on-disk layer cache.
#[derive(Clone, Debug)]
pub(crate) struct LayerCache {
    dir: PathBuf,
    codec: flist_format::Codec,
}

impl LayerCache {
    /// The cache under `dir` of layers encoded with `codec`.
    pub(crate) fn new(dir: PathBuf, codec: flist_format::Codec) -> Self {
        LayerCache { dir, codec }
    }

    fn path(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix("sha256:")?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(self.dir.join("layers/sha256").join(match self.codec {
            flist_format::Codec::Flist => format!("{hex}.layer.gz"),
            flist_format::Codec::Rfs => format!("{hex}.rfs.layer.gz"),
        }))
    }

    /// The cached layer `digest`, if present and readable (a damaged entry is ignored,
    /// and overwritten by the next conversion).
    pub(crate) fn load(&self, digest: &str) -> Option<LayerFile> {
        let path = self.path(digest)?;
        let f = std::fs::File::open(&path).ok()?;
        let lf = LayerFile::open(f, digest, None);
        if lf.is_none() {
            tracing::warn!("layer cache {}: unreadable, ignored", path.display());
        }
        lf
    }

    /// A temporary file in the cache's directory for layer `digest`, to
    /// [`LayerCache::persist`] once written (`None` for a digest the cache does not keep).
    pub(crate) fn temp(&self, digest: &str) -> Result<Option<tempfile::NamedTempFile>, OciError> {
        let Some(path) = self.path(digest) else {
            return Ok(None);
        };
        let dir = path.parent().unwrap_or(&self.dir).to_path_buf();
        let io = |source| OciError::Io {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        tempfile::NamedTempFile::new_in(&dir).map(Some).map_err(io)
    }

    /// Puts a written layer file in place (atomically: rename).
    pub(crate) fn persist(
        &self,
        digest: &str,
        tmp: tempfile::NamedTempFile,
    ) -> Result<(), OciError> {
        let Some(path) = self.path(digest) else {
            return Ok(());
        };
        tmp.persist(&path).map_err(|e| OciError::Io {
            path,
            source: e.error,
        })?;
        Ok(())
    }
}

/// True when every chunk the layer references is in `store` (blocking).
pub(crate) fn chunks_present(
    store: &BlockingStore,
    layer: &mut LayerFile,
) -> Result<bool, OciError> {
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(EXISTS_BATCH);
    let mut all = true;
    let mut failed: Option<OciError> = None;
    let check = |batch: &mut Vec<Vec<u8>>| -> Result<bool, OciError> {
        batch.sort_unstable();
        batch.dedup();
        let found = store.exists_many(batch).map_err(|source| OciError::Store {
            store: store.to_string(),
            source,
        })?;
        batch.clear();
        Ok(found.iter().all(|f| *f))
    };
    let walked = layer.for_each_entry(|e| {
        batch.extend(e.kind.chunk_keys());
        if batch.len() >= EXISTS_BATCH {
            match check(&mut batch) {
                Ok(true) => {}
                Ok(false) => {
                    all = false;
                    return Err("missing".into());
                }
                Err(e) => {
                    failed = Some(e);
                    return Err("store".into());
                }
            }
        }
        Ok(())
    });
    if let Some(e) = failed {
        return Err(e);
    }
    if walked.is_err() {
        // a chunk is missing, or the file is unreadable: convert the layer again
        return Ok(false);
    }
    Ok(all && (batch.is_empty() || check(&mut batch)?))
}
