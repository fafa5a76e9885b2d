//! The conversion itself: resolve the image, then per layer (cache or download + convert),
//! apply in order, and pack config metadata and `/.startup.toml`.

use std::io::{self, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flist_format::codec::encode_chunk;
use flist_format::{Kind, Meta, Metadata};
use flist_store::{BlockingStore, SetOutcome, Store};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::cache::{chunks_present, LayerCache};
use super::config::{self, RuntimeConfigView, STARTUP_PATH};
use super::layer::{self, LayerFile};
use super::local::{self, LocalImage};
use super::manifest::{
    layer_media_ok, parse_manifest, Descriptor, ImageConfig, ImageManifest, ManifestDoc,
};
use super::reference::validate_digest;
use super::registry::RegistryClient;
use super::{ImageSource, OciError, OciEvent, OciOptions, OciStats};
use crate::builder::Staged;
use crate::options::{Counters, ProgressReport, Stats};
use crate::stage::Stage;
use crate::{ChannelReader, Converted};

/// Where layer blobs come from.
enum Blobs {
    Registry(Arc<RegistryClient>),
    Local(Arc<LocalImage>),
}

/// Hashes and counts a blob as it is read; at its end compares digest and size. A
/// mismatch is reported as a read error (so the converter stops) and kept as the verdict.
struct Verifier<'a> {
    inner: Box<dyn Read + Send>,
    hasher: Sha256,
    count: u64,
    expected: String,
    size: u64,
    what: String,
    eof: bool,
    verdict: Option<OciError>,
    progress: &'a (dyn Fn(u64) + Send + Sync),
    last: Instant,
}

impl Read for Verifier<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.eof {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.hasher.update(&buf[..n]);
            self.count += n as u64;
            if self.size > 0 && self.count > self.size {
                let e = OciError::SizeMismatch {
                    what: self.what.clone(),
                    expected: self.size,
                    actual: self.count,
                };
                let msg = e.to_string();
                self.verdict = Some(e);
                self.eof = true;
                return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
            }
            if self.last.elapsed() >= Duration::from_millis(200) {
                self.last = Instant::now();
                (self.progress)(self.count);
            }
            return Ok(n);
        }
        self.eof = true;
        (self.progress)(self.count);
        let actual = format!("sha256:{}", hex::encode(self.hasher.clone().finalize()));
        if actual != self.expected {
            let e = OciError::DigestMismatch {
                what: self.what.clone(),
                expected: self.expected.clone(),
                actual,
            };
            let msg = e.to_string();
            self.verdict = Some(e);
            return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
        }
        if self.size > 0 && self.count != self.size {
            let e = OciError::SizeMismatch {
                what: self.what.clone(),
                expected: self.size,
                actual: self.count,
            };
            let msg = e.to_string();
            self.verdict = Some(e);
            return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
        }
        Ok(0)
    }
}

/// The resolved image.
struct Resolved {
    manifest: ImageManifest,
    manifest_digest: String,
    config: Vec<u8>,
}

async fn resolve_registry(
    c: &RegistryClient,
    reference: &super::Reference,
    opts: &OciOptions,
    stats: &mut OciStats,
) -> Result<Resolved, OciError> {
    let image = reference.to_string();
    let (body, ctype, digest) = c.manifest(reference.manifest_ref()).await?;
    let (manifest, manifest_digest) = match parse_manifest(&body, ctype.as_deref(), &image)? {
        ManifestDoc::Image(m) => (m, digest),
        ManifestDoc::Index(idx) => {
            let want = opts.platform.clone().unwrap_or_default();
            let d = want.select(&idx, &image)?;
            let (b2, ct2, d2) = c.manifest(&d.digest).await?;
            match parse_manifest(&b2, ct2.as_deref(), &format!("{image} ({want})"))? {
                ManifestDoc::Image(m) => (m, d2),
                ManifestDoc::Index(_) => {
                    return Err(OciError::InvalidManifest {
                        what: format!("{image} ({want})"),
                        reason: "platform entry is itself an index".into(),
                    })
                }
            }
        }
    };
    validate_digest(&manifest.config.digest).map_err(|r| OciError::InvalidManifest {
        what: format!("{image} config"),
        reason: r,
    })?;
    stats.blobs_fetched.push(manifest.config.digest.clone());
    let config = c
        .small_blob(
            &manifest.config,
            &format!("{image} config {}", manifest.config.digest),
        )
        .await?;
    Ok(Resolved {
        manifest,
        manifest_digest,
        config,
    })
}

fn join_err(e: tokio::task::JoinError) -> OciError {
    OciError::Internal(format!("conversion task: {e}"))
}

/// Downloads (or reads) and converts one layer into a layer file (kept in the layer cache
/// when there is one).
#[allow(clippy::too_many_arguments)]
async fn convert_layer(
    blobs: &Blobs,
    index: usize,
    desc: &Descriptor,
    store: &Arc<dyn Store>,
    opts: &OciOptions,
    image: &str,
    cache: Option<&LayerCache>,
) -> Result<(LayerFile, Stats, u64), OciError> {
    let handle = tokio::runtime::Handle::current();
    type Download = Option<tokio::task::JoinHandle<Result<(), OciError>>>;
    let (reader, download): (Box<dyn Read + Send>, Download) = match blobs {
        Blobs::Registry(c) => {
            let (tx, rx) = mpsc::channel(16);
            let c = c.clone();
            let digest = desc.digest.clone();
            let task = tokio::spawn(async move { c.stream_blob(&digest, tx).await });
            (Box::new(ChannelReader::new(rx)), Some(task))
        }
        Blobs::Local(img) => {
            let img = img.clone();
            let d = desc.clone();
            let r = tokio::task::spawn_blocking(move || img.open_layer(&d))
                .await
                .map_err(join_err)??;
            (r, None)
        }
    };
    let mut copts = opts.convert.clone();
    let events = opts.progress.clone();
    let inner = opts.convert.progress.clone();
    if events.is_some() || inner.is_some() {
        let (ev, inner) = (events.clone(), inner.clone());
        copts.progress = Some(Arc::new(move |r: &ProgressReport| {
            if let Some(i) = &inner {
                i.progress(r);
            }
            if let Some(e) = &ev {
                e(&OciEvent::Apply { index, report: *r });
            }
        }));
    }
    let store = BlockingStore::new(store.clone(), handle);
    let desc2 = desc.clone();
    let what = format!("{image} layer {index} ({})", desc.digest);
    // The layer file: in the cache's directory (renamed into place when complete), or a
    // private temporary file.
    let out = match cache.map(|c| c.temp(&desc.digest)).transpose()?.flatten() {
        Some(t) => t,
        None => tempfile::NamedTempFile::new().map_err(|source| OciError::Io {
            path: std::env::temp_dir(),
            source,
        })?,
    };
    let result = tokio::task::spawn_blocking(move || {
        let total = desc2.size;
        let progress = move |bytes: u64| {
            if let Some(e) = &events {
                e(&OciEvent::Download {
                    index,
                    bytes,
                    total,
                });
            }
        };
        let mut v = Verifier {
            inner: reader,
            hasher: Sha256::new(),
            count: 0,
            expected: desc2.digest.clone(),
            size: desc2.size,
            what,
            eof: false,
            verdict: None,
            progress: &progress,
            last: Instant::now(),
        };
        let converted = out
            .reopen()
            .map_err(|source| crate::error::ConvertError::Io {
                path: out.path().to_path_buf(),
                source,
            })
            .and_then(|f| layer::read_layer(&mut v, &desc2.digest, &store, &copts, f))
            .map(|(_, stats)| (out, stats));
        if converted.is_ok() && !v.eof {
            // The archive ended before the blob: read the rest so the digest covers it all.
            if let Err(e) = io::copy(&mut v, &mut io::sink()) {
                if v.verdict.is_none() {
                    return (
                        Err(OciError::Layer {
                            index,
                            digest: desc2.digest.clone(),
                            source: Box::new(crate::error::ConvertError::Input(e)),
                        }),
                        v.count,
                    );
                }
            }
        }
        if let Some(verdict) = v.verdict.take() {
            return (Err(verdict), v.count);
        }
        let count = v.count;
        (
            converted.map_err(|e| OciError::Layer {
                index,
                digest: desc2.digest.clone(),
                source: Box::new(e),
            }),
            count,
        )
    })
    .await
    .map_err(join_err)?;
    let (converted, count) = result;
    if let Some(task) = download {
        // A failed download explains a failed conversion better than the converter does.
        let dl = task.await.map_err(join_err)?;
        if converted.is_err() {
            dl?;
        }
    }
    let (out, stats) = converted?;
    let io = |path: std::path::PathBuf| move |source| OciError::Io { path, source };
    let file = match cache {
        Some(c) => {
            let f = out.reopen().map_err(io(out.path().to_path_buf()))?;
            if let Err(e) = c.persist(&desc.digest, out) {
                tracing::warn!("layer cache: could not save {}: {e}", desc.digest);
            }
            LayerFile::open(f, &desc.digest, None)
        }
        None => {
            let f = out.reopen().map_err(io(out.path().to_path_buf()))?;
            LayerFile::open(f, &desc.digest, Some(out.into_temp_path()))
        }
    };
    let file = file.ok_or_else(|| {
        OciError::Internal(format!(
            "layer {index}: the converted layer file is unreadable"
        ))
    })?;
    Ok((file, stats, count))
}

fn add_stats(total: &mut Stats, s: Stats) {
    total.hard_links += s.hard_links;
    total.bytes_encoded += s.bytes_encoded;
    total.bytes_read += s.bytes_read;
    total.bytes_expanded += s.bytes_expanded;
    total.entries += s.entries;
    total.chunks_written += s.chunks_written;
    total.chunks_present += s.chunks_present;
    total.chunks_deduplicated += s.chunks_deduplicated;
    for w in s.warnings {
        match total.warnings.iter_mut().find(|x| x.message == w.message) {
            Some(x) => x.count += w.count,
            None => total.warnings.push(w),
        }
    }
}

/// Seconds since the epoch of an RFC 3339 time (`2020-09-13T12:26:40Z`, fraction and
/// offset ignored); `None` when unparsable.
fn parse_created(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    // days from civil (Howard Hinnant)
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u32::try_from(days * 86_400 + h * 3600 + mi * 60 + se).ok()
}

pub(crate) async fn convert(
    source: &ImageSource,
    opts: &OciOptions,
    store: Arc<dyn Store>,
) -> Result<(Converted, OciStats), OciError> {
    let mut stats = OciStats {
        image: source.to_string(),
        ..OciStats::default()
    };
    let max = opts.max_manifest_bytes;
    let (blobs, resolved) = match source {
        ImageSource::Registry(r) => {
            let c = Arc::new(RegistryClient::new(r, opts)?);
            let res = resolve_registry(&c, r, opts, &mut stats).await?;
            (Blobs::Registry(c), res)
        }
        ImageSource::DockerArchive { path, image }
        | ImageSource::OciLayout { path, tag: image } => {
            let docker = matches!(source, ImageSource::DockerArchive { .. });
            let (path, name, platform) = (path.clone(), image.clone(), opts.platform.clone());
            let (img, res) = tokio::task::spawn_blocking(move || {
                local::open(&path, docker, name.as_deref(), platform.as_ref(), max)
            })
            .await
            .map_err(join_err)??;
            stats.blobs_fetched.push(res.manifest.config.digest.clone());
            (
                Blobs::Local(Arc::new(img)),
                Resolved {
                    manifest: res.manifest,
                    manifest_digest: res.manifest_digest,
                    config: res.config,
                },
            )
        }
    };
    let image = stats.image.clone();
    let cfg: ImageConfig =
        serde_json::from_slice(&resolved.config).map_err(|e| OciError::InvalidManifest {
            what: format!("{image} config"),
            reason: e.to_string(),
        })?;
    let platform = match &cfg.os {
        os if os.is_empty() => String::new(),
        os => format!("{os}/{}", cfg.architecture),
    };
    if let Some(want) = &opts.platform {
        if !cfg.os.is_empty()
            && !want.matches(&super::manifest::PlatformJson {
                architecture: cfg.architecture.clone(),
                os: cfg.os.clone(),
                variant: want.variant.clone(),
            })
        {
            return Err(OciError::NoPlatform {
                image: image.clone(),
                wanted: want.to_string(),
                available: vec![platform],
            });
        }
    }
    stats.manifest_digest = resolved.manifest_digest.clone();
    stats.config_digest = resolved.manifest.config.digest.clone();
    stats.platform = platform.clone();
    let layers = resolved.manifest.layers.clone();
    stats.layers = layers.iter().map(|l| l.digest.clone()).collect();
    opts.emit(OciEvent::Resolved {
        manifest: stats.manifest_digest.clone(),
        platform,
        layers: layers.len(),
        bytes: layers.iter().map(|l| l.size).sum(),
    });

    let cache = opts
        .cache_dir
        .clone()
        .map(|d| LayerCache::new(d, opts.convert.codec));
    // The flattened image, staged on disk.
    let mut tree = tokio::task::spawn_blocking(|| Stage::new(&Meta::root(0o755, 0)))
        .await
        .map_err(join_err)?
        .map_err(|e| OciError::Output(e.to_string()))?;
    let mut totals = Stats::default();
    let blocking = BlockingStore::new(store.clone(), tokio::runtime::Handle::current());
    for (index, desc) in layers.iter().enumerate() {
        if opts
            .convert
            .cancel
            .as_ref()
            .is_some_and(|c| c.is_cancelled())
        {
            return Err(OciError::Cancelled);
        }
        validate_digest(&desc.digest).map_err(|r| OciError::InvalidManifest {
            what: format!("{image} layer {index}"),
            reason: r,
        })?;
        if !layer_media_ok(&desc.media_type) {
            return Err(OciError::UnsupportedMediaType {
                what: format!("{image} layer {index} ({})", desc.digest),
                media_type: desc.media_type.clone(),
            });
        }
        let cached = match &cache {
            Some(c) => {
                let (c, d, s) = (c.clone(), desc.digest.clone(), blocking.clone());
                tokio::task::spawn_blocking(move || match c.load(&d) {
                    Some(mut lf) => match chunks_present(&s, &mut lf) {
                        Ok(true) => Ok(Some(lf)),
                        Ok(false) => Ok(None),
                        Err(e) => Err(e),
                    },
                    None => Ok(None),
                })
                .await
                .map_err(join_err)??
            }
            None => None,
        };
        opts.emit(OciEvent::LayerStart {
            index,
            digest: desc.digest.clone(),
            size: desc.size,
            cached: cached.is_some(),
        });
        let was_cached = cached.is_some();
        let mut changes = match cached {
            Some(ch) => {
                stats.layers_reused.push(desc.digest.clone());
                ch
            }
            None => {
                stats.blobs_fetched.push(desc.digest.clone());
                let (ch, s, bytes) =
                    convert_layer(&blobs, index, desc, &store, opts, &image, cache.as_ref())
                        .await?;
                stats.bytes_downloaded += bytes;
                stats.layers_downloaded.push(desc.digest.clone());
                add_stats(&mut totals, s);
                ch
            }
        };
        let (t, applied) = tokio::task::spawn_blocking(move || {
            let r = layer::apply(&mut tree, &mut changes);
            (tree, r)
        })
        .await
        .map_err(join_err)?;
        tree = t;
        applied.map_err(|reason| OciError::Apply {
            index,
            digest: desc.digest.clone(),
            reason,
        })?;
        opts.emit(OciEvent::LayerDone {
            index,
            cached: was_cached,
        });
    }

    opts.emit(OciEvent::Packing);
    let runtime = cfg.config.clone().unwrap_or_default();
    let mut metadata = Metadata::new();
    config::to_metadata(&runtime, &mut metadata);
    let argv = config::argv(&runtime);
    let env = config::environ(&runtime);
    let startup = config::startup_toml(&RuntimeConfigView {
        argv: &argv,
        env: &env,
        dir: runtime.working_dir.as_deref(),
    });
    let chunk = encode_chunk(startup.as_bytes());
    let outcome = store
        .set(chunk.block.id(), Bytes::from(chunk.data))
        .await
        .map_err(|source| OciError::Store {
            store: store.to_string(),
            source,
        })?;
    match outcome {
        SetOutcome::Written => totals.chunks_written += 1,
        SetOutcome::AlreadyPresent => totals.chunks_present += 1,
    }
    let created = cfg.created.as_deref().and_then(parse_created).unwrap_or(0);
    let startup_kind = Kind::File {
        size: startup.len() as u64,
        blocks: vec![chunk.block],
    };
    let convert_opts = opts.convert.clone();
    let mut converted = tokio::task::spawn_blocking(move || {
        tree.set(
            Stage::ROOT,
            STARTUP_PATH,
            &Meta::root(0o644, created),
            &startup_kind,
            None,
        )?;
        Converted::new(
            Staged::from_stage(tree),
            &Counters::default(),
            &convert_opts,
        )
    })
    .await
    .map_err(join_err)?
    .map_err(|e| OciError::Output(e.to_string()))?;
    let counted = &converted.stats;
    totals.files = counted.files;
    totals.directories = counted.directories;
    totals.symlinks = counted.symlinks;
    totals.specials = counted.specials;
    totals.bytes = counted.bytes;
    converted.stats = totals.clone();
    converted.metadata = metadata;
    stats.convert = totals;
    Ok((converted, stats))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::parse_created;

    #[test]
    fn created_times() {
        assert_eq!(parse_created("2020-09-13T12:26:40Z"), Some(1_600_000_000));
        assert_eq!(parse_created("1970-01-01T00:00:00.123456789Z"), Some(0));
        assert_eq!(parse_created("garbage"), None);
        assert_eq!(parse_created("2020-13-13T12:26:40Z"), None);
    }
}
