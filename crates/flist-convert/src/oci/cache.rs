//! The layer cache: each converted layer's [`LayerChanges`] (entries with chunk keys,
//! whiteouts, opaque directories, lower-layer links) as a gzip'd JSON file keyed by layer
//! digest, `<dir>/layers/sha256/<hex>.json.gz` (`<hex>.rfs.json.gz` for layers encoded with
//! the `.fl` codec), written atomically. A cached layer is reused
//! only when every chunk it references is still in the target store (checked with batched
//! `exists_many`), so a cache shared between stores stays sound.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use flist_store::Store;

use super::layer::{LayerChanges, FORMAT_VERSION};
use super::OciError;

/// Keys per `exists_many` call when validating a cached layer.
const EXISTS_BATCH: usize = 2048;
/// Largest cache file read (decompressed).
const MAX_CACHE_FILE: u64 = 2 << 30;

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
            flist_format::Codec::Flist => format!("{hex}.json.gz"),
            flist_format::Codec::Rfs => format!("{hex}.rfs.json.gz"),
        }))
    }

    /// The cached changes of `digest`, if present and readable (a damaged entry is
    /// ignored, and overwritten by the next conversion).
    pub(crate) fn load(&self, digest: &str) -> Option<LayerChanges> {
        let path = self.path(digest)?;
        let f = std::fs::File::open(&path).ok()?;
        let mut text = Vec::new();
        let read = flate2::read::GzDecoder::new(f)
            .take(MAX_CACHE_FILE)
            .read_to_end(&mut text);
        if let Err(e) = read {
            tracing::warn!("layer cache {}: unreadable, ignored: {e}", path.display());
            return None;
        }
        match serde_json::from_slice::<LayerChanges>(&text) {
            Ok(ch) if ch.version == FORMAT_VERSION && ch.digest == digest => Some(ch),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!("layer cache {}: invalid, ignored: {e}", path.display());
                None
            }
        }
    }

    /// Stores the changes of a layer (atomically: temp file and rename).
    pub(crate) fn save(&self, ch: &LayerChanges) -> Result<(), OciError> {
        let Some(path) = self.path(&ch.digest) else {
            return Ok(());
        };
        let io = |p: &std::path::Path| {
            let p = p.to_path_buf();
            move |source| OciError::Io { path: p, source }
        };
        let dir = path.parent().unwrap_or(&self.dir).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io(&dir))?;
        {
            let mut gz =
                flate2::write::GzEncoder::new(tmp.as_file_mut(), flate2::Compression::fast());
            serde_json::to_writer(&mut gz, ch).map_err(|e| OciError::Io {
                path: path.clone(),
                source: std::io::Error::other(e),
            })?;
            gz.finish().map_err(io(&path))?.flush().map_err(io(&path))?;
        }
        tmp.persist(&path).map_err(|e| OciError::Io {
            path: path.clone(),
            source: e.error,
        })?;
        Ok(())
    }
}

/// True when every chunk the changes reference is in `store`.
pub(crate) async fn chunks_present(
    store: &Arc<dyn Store>,
    ch: &LayerChanges,
) -> Result<bool, OciError> {
    let mut keys: Vec<Vec<u8>> = ch
        .entries
        .iter()
        .flat_map(|e| e.kind.chunk_keys())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    for batch in keys.chunks(EXISTS_BATCH) {
        let found = store
            .exists_many(batch)
            .await
            .map_err(|source| OciError::Store {
                store: store.to_string(),
                source,
            })?;
        if found.iter().any(|f| !f) {
            return Ok(false);
        }
    }
    Ok(true)
}
