//! Failing over between hubs and chunk stores (issue 16: no single point of failure).
//!
//! - Hubs: `--hub URL` (repeated) or `ZFLIST_HUB` (comma-separated) lists the hub and its
//!   mirrors in order. An flist URL is fetched from its own hub first, then the same path
//!   on every other listed hub; a hub that refuses the connection, times out or answers 5xx
//!   is skipped (`remote::resolve`).
//! - Chunks: an flist's `backend` is tried first, then the alternatives it lists in
//!   `backend-mirrors` (a JSON array of public backends, written by mirrors), then each
//!   listed hub's `/chunks/` route. [`FailoverStore`] moves to the next store on a
//!   connection error, a timeout or a server error and stays there; keys a store lacks are
//!   asked of the others.
//! - A dead hub or store costs at most the connect timeout (`--connect-timeout`,
//!   `ZFLIST_CONNECT_TIMEOUT`, seconds; default [`DEFAULT_CONNECT_TIMEOUT`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use flist_format::Metadata;
use flist_store::{SetOutcome, Store, StoreError, StoreUrl};

/// Default limit for establishing a connection to a hub or a store.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Metadata key listing alternative public backends.
pub const KEY_BACKEND_MIRRORS: &str = "backend-mirrors";

/// The hubs to try in order, the connect timeout and the token of private flists.
#[derive(Clone)]
pub struct Failover {
    /// Hub base URLs, in the order to try them (no trailing `/`).
    pub hubs: Vec<String>,
    /// Limit for establishing one connection.
    pub connect_timeout: Duration,
    /// A hub API token sent (`Authorization: bearer`) with flist downloads by URL, for
    /// flists of private repositories (`--token`, else `ZFLIST_HUB_TOKEN`). Chunks need
    /// none: they are public by content key.
    pub token: Option<String>,
}

impl Default for Failover {
    fn default() -> Self {
        Failover {
            hubs: Vec::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            token: None,
        }
    }
}

impl std::fmt::Debug for Failover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failover")
            .field("hubs", &self.hubs)
            .field("connect_timeout", &self.connect_timeout)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

static CONFIG: OnceLock<Failover> = OnceLock::new();

/// Sets the process-wide configuration (once, from the command line; later calls are
/// ignored).
pub fn configure(f: Failover) {
    let _ = CONFIG.set(f);
}

/// The process-wide configuration (defaults when [`configure`] was not called).
pub fn config() -> Failover {
    CONFIG.get().cloned().unwrap_or_default()
}

/// `--hub URL` (repeated) of the commands that read flists and chunks.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Hubs {
    /// A hub or mirror to fail over to, in order (repeat, or a comma list; default
    /// $ZFLIST_HUB): an flist URL is also fetched under the same path from the others, and
    /// chunks from their /chunks/ when the flist's backend cannot be reached.
    #[arg(long = "hub", value_name = "URL")]
    pub hubs: Vec<String>,
    /// Hub API token for an flist of a private repository, sent as `Authorization: bearer`
    /// when the flist is downloaded by URL (default $ZFLIST_HUB_TOKEN); chunks need none.
    #[arg(long = "token", value_name = "TOKEN")]
    pub token: Option<String>,
}

impl Failover {
    /// From the command line: `--hub` values (else `ZFLIST_HUB`) and `--connect-timeout`
    /// (else `ZFLIST_CONNECT_TIMEOUT`).
    pub fn from_env(
        hubs: &[String],
        token: Option<&str>,
        timeout_secs: Option<f64>,
    ) -> Result<Self, String> {
        let timeout = match timeout_secs {
            Some(t) => Some(t),
            None => match std::env::var("ZFLIST_CONNECT_TIMEOUT") {
                Ok(v) if !v.trim().is_empty() => Some(v.trim().parse().map_err(|_| {
                    format!("ZFLIST_CONNECT_TIMEOUT={v:?} is not a number of seconds")
                })?),
                _ => None,
            },
        };
        let env = std::env::var("ZFLIST_HUB").ok();
        let mut f = Failover::from_args(hubs, env.as_deref(), timeout)?;
        f.token = token
            .map(str::to_string)
            .or_else(|| std::env::var("ZFLIST_HUB_TOKEN").ok())
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        Ok(f)
    }

    /// From `--hub` values (each may itself be a comma list) or, when none, `ZFLIST_HUB`
    /// (comma-separated; entries that are not http(s) URLs are ignored there, as the
    /// variable also serves `zflist hub`); and `--connect-timeout` /
    /// `ZFLIST_CONNECT_TIMEOUT` seconds.
    pub fn from_args(
        hubs: &[String],
        env_hubs: Option<&str>,
        timeout_secs: Option<f64>,
    ) -> Result<Self, String> {
        let is_http = |h: &String| {
            let l = h.to_ascii_lowercase();
            l.starts_with("http://") || l.starts_with("https://")
        };
        let list: Vec<String> = if hubs.is_empty() {
            split_list(env_hubs.unwrap_or_default())
                .into_iter()
                .filter(is_http)
                .collect()
        } else {
            hubs.iter().flat_map(|h| split_list(h)).collect()
        };
        if let Some(h) = list.iter().find(|h| !is_http(h)) {
            return Err(format!("--hub {h:?} is not an http(s):// URL"));
        }
        let connect_timeout = match timeout_secs {
            None => DEFAULT_CONNECT_TIMEOUT,
            Some(s) if s.is_finite() && s > 0.0 && s <= 3600.0 => Duration::from_secs_f64(s),
            Some(s) => {
                return Err(format!(
                    "connect timeout {s} s: expected 0 < seconds <= 3600"
                ))
            }
        };
        Ok(Failover {
            hubs: list,
            connect_timeout,
            token: None,
        })
    }

    /// The URLs to try for an flist `url`: itself, then the same path on every other hub.
    /// The path is what follows the hub's base when `url` is under a listed hub, else
    /// everything after the host.
    pub fn candidates(&self, url: &str) -> Vec<String> {
        let mut out = vec![url.to_string()];
        let own = self
            .hubs
            .iter()
            .find(|h| url.starts_with(h.as_str()) && url[h.len()..].starts_with('/'));
        let path = match own {
            Some(h) => url[h.len()..].to_string(),
            None => match url.split_once("://") {
                Some((_, rest)) => rest
                    .find('/')
                    .map(|i| rest[i..].to_string())
                    .unwrap_or_default(),
                None => return out,
            },
        };
        if path.is_empty() {
            return out;
        }
        for h in &self.hubs {
            let c = format!("{h}{path}");
            if !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }

    /// The chunk stores to read an flist's chunks from after `first`: its
    /// `backend-mirrors`, then each hub's `/chunks/` route (each once, `first` excluded).
    pub fn alternatives(&self, first: &StoreUrl, metadata: &Metadata) -> Vec<StoreUrl> {
        let mut out: Vec<StoreUrl> = Vec::new();
        let listed = metadata
            .get(KEY_BACKEND_MIRRORS)
            .and_then(|s| serde_json::from_str::<Vec<serde_json::Value>>(s).ok())
            .unwrap_or_default();
        let from_metadata = listed
            .iter()
            .filter_map(|v| flist_format::Backend::parse(&v.to_string()).ok())
            .map(|b| flist_convert::backend::store_url(&b));
        let from_hubs = self
            .hubs
            .iter()
            .filter_map(|h| StoreUrl::parse(&format!("{h}/chunks")).ok());
        for u in from_metadata.chain(from_hubs) {
            if &u != first && !out.contains(&u) {
                out.push(u);
            }
        }
        out
    }

    /// Store options with this connect timeout.
    pub fn open_options(&self) -> flist_store::OpenOptions {
        flist_store::OpenOptions {
            connect_timeout: self.connect_timeout,
            ..Default::default()
        }
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|h| h.trim().trim_end_matches('/').to_string())
        .filter(|h| !h.is_empty())
        .collect()
}

/// True for a failure another store might not have: the store is unreachable, slow or
/// broken (not a bad key or a refused credential).
fn worth_another(e: &StoreError) -> bool {
    e.is_transient()
        || matches!(
            e,
            StoreError::Server { .. }
                | StoreError::Protocol { .. }
                | StoreError::Io { .. }
                | StoreError::Other { .. }
        )
}

/// A read-only store over several stores holding the same chunks: reads go to the current
/// store; an unreachable one is left for the next (for the rest of the run); keys the
/// current one lacks are asked of the others.
#[derive(Debug)]
pub struct FailoverStore {
    stores: Vec<Arc<dyn Store>>,
    current: AtomicUsize,
    /// Stores that failed once: asked again only when every other one failed too, so a
    /// dead store costs its connect timeout once per run.
    dead: Vec<AtomicBool>,
    name: String,
}

impl std::fmt::Display for FailoverStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl FailoverStore {
    /// Over `stores`, tried in order (at least one).
    pub fn new(stores: Vec<Arc<dyn Store>>) -> Self {
        let name = stores
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(" | ");
        FailoverStore {
            dead: stores.iter().map(|_| AtomicBool::new(false)).collect(),
            stores,
            current: AtomicUsize::new(0),
            name,
        }
    }

    /// Index of the store reads go to now.
    pub fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    /// Runs `op` on the current store, moving on while stores fail; then asks the other
    /// stores for the results `found` says are missing.
    async fn read<T, F, Fut>(
        &self,
        keys: &[Vec<u8>],
        op: F,
        found: impl Fn(&T) -> bool,
    ) -> Result<Vec<T>, StoreError>
    where
        F: Fn(Arc<dyn Store>, Vec<Vec<u8>>) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<T>, StoreError>>,
    {
        let n = self.stores.len();
        let start = self.current();
        let mut last = None;
        let mut result: Option<(usize, Vec<T>)> = None;
        // Live stores first (from the current one), then the dead ones as a last resort.
        let order: Vec<usize> = (0..n)
            .map(|step| (start + step) % n)
            .filter(|&i| !self.is_dead(i))
            .chain(
                (0..n)
                    .map(|step| (start + step) % n)
                    .filter(|&i| self.is_dead(i)),
            )
            .collect();
        for (step, &i) in order.iter().enumerate() {
            match op(self.stores[i].clone(), keys.to_vec()).await {
                Ok(v) => {
                    if step > 0 {
                        // Later batches go straight to the store that answered.
                        let _ = self.current.compare_exchange(
                            start,
                            i,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                    }
                    self.dead[i].store(false, Ordering::Relaxed);
                    result = Some((i, v));
                    break;
                }
                Err(e) if worth_another(&e) => {
                    self.dead[i].store(true, Ordering::Relaxed);
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        let Some((used, mut values)) = result else {
            return Err(last.unwrap_or_else(|| StoreError::Other {
                store: self.name.clone(),
                message: "no store".into(),
            }));
        };
        // Keys the answering store lacks: ask the other live stores (best effort).
        for step in 1..n {
            let missing: Vec<usize> = (0..values.len()).filter(|&k| !found(&values[k])).collect();
            if missing.is_empty() {
                break;
            }
            let i = (used + step) % n;
            if self.is_dead(i) {
                continue;
            }
            let ks: Vec<Vec<u8>> = missing.iter().map(|&k| keys[k].clone()).collect();
            match op(self.stores[i].clone(), ks).await {
                Ok(more) => {
                    for (k, v) in missing.into_iter().zip(more) {
                        if found(&v) {
                            values[k] = v;
                        }
                    }
                }
                Err(e) if worth_another(&e) => self.dead[i].store(true, Ordering::Relaxed),
                Err(_) => {}
            }
        }
        Ok(values)
    }

    fn is_dead(&self, i: usize) -> bool {
        self.dead[i].load(Ordering::Relaxed)
    }

    fn read_only(&self) -> StoreError {
        StoreError::Unsupported {
            store: self.name.clone(),
            operation: "set".into(),
            reason: "a failover store is read-only".into(),
        }
    }
}

#[async_trait]
impl Store for FailoverStore {
    async fn set(&self, _key: &[u8], _value: Bytes) -> Result<SetOutcome, StoreError> {
        Err(self.read_only())
    }

    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Bytes>>, StoreError> {
        self.read(
            keys,
            |s, ks| async move { s.get_many(&ks).await },
            |v: &Option<Bytes>| v.is_some(),
        )
        .await
    }

    async fn exists_many(&self, keys: &[Vec<u8>]) -> Result<Vec<bool>, StoreError> {
        self.read(
            keys,
            |s, ks| async move { s.exists_many(&ks).await },
            |v: &bool| *v,
        )
        .await
    }

    async fn set_many(&self, _items: &[(Vec<u8>, Bytes)]) -> Result<Vec<SetOutcome>, StoreError> {
        Err(self.read_only())
    }

    fn is_writable(&self) -> bool {
        false
    }
}

/// Opens `first` and, when there are `alternatives`, a [`FailoverStore`] over all of them,
/// with the configured connect timeout, on a private runtime.
pub fn open_with_alternatives(
    first: &StoreUrl,
    alternatives: Vec<StoreUrl>,
) -> Result<flist_store::BlockingStore, StoreError> {
    let opts = config().open_options();
    let mut urls = vec![first.clone()];
    urls.extend(alternatives);
    flist_store::BlockingStore::with_private_runtime(move || async move {
        let mut stores = Vec::with_capacity(urls.len());
        for u in &urls {
            stores.push(flist_store::open_url_with(u, &opts).await?);
        }
        if stores.len() == 1 {
            return Ok(stores.remove(0));
        }
        Ok(Arc::new(FailoverStore::new(stores)) as Arc<dyn Store>)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hubs_from_arguments_or_environment() {
        let f = Failover::from_args(&[], Some("http://a/, https://b"), None).unwrap();
        assert_eq!(f.hubs, ["http://a", "https://b"]);
        assert_eq!(f.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        let f = Failover::from_args(&["http://c".into()], Some("http://a"), Some(0.5)).unwrap();
        assert_eq!(f.hubs, ["http://c"]);
        assert_eq!(f.connect_timeout, Duration::from_millis(500));
        assert!(Failover::from_args(&["ftp://x".into()], None, None).is_err());
        let f = Failover::from_args(&[], Some("hub.example,http://m"), None).unwrap();
        assert_eq!(f.hubs, ["http://m"]);
        assert!(Failover::from_args(&[], None, Some(0.0)).is_err());
    }

    #[test]
    fn candidates_keep_the_path_under_each_hub() {
        let f =
            Failover::from_args(&["http://a:1".into(), "http://m/hub".into()], None, None).unwrap();
        assert_eq!(
            f.candidates("http://a:1/alice/x.flist"),
            ["http://a:1/alice/x.flist", "http://m/hub/alice/x.flist"]
        );
        assert_eq!(
            f.candidates("http://m/hub/alice/x.flist"),
            ["http://m/hub/alice/x.flist", "http://a:1/alice/x.flist"]
        );
        assert_eq!(
            f.candidates("http://other/alice/x.flist"),
            [
                "http://other/alice/x.flist",
                "http://a:1/alice/x.flist",
                "http://m/hub/alice/x.flist"
            ]
        );
        assert_eq!(Failover::default().candidates("http://z/y"), ["http://z/y"]);
    }

    #[tokio::test]
    async fn failover_store_skips_a_dead_store_and_fills_missing_keys() {
        let dir = tempfile::tempdir().unwrap();
        let a: Arc<dyn Store> = Arc::new(flist_store::DirStore::new(dir.path().join("a")).unwrap());
        let b: Arc<dyn Store> = Arc::new(flist_store::DirStore::new(dir.path().join("b")).unwrap());
        a.set(b"k1", Bytes::from_static(b"v1")).await.unwrap();
        b.set(b"k2", Bytes::from_static(b"v2")).await.unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = StoreUrl::parse(&format!("http://127.0.0.1:{port}/chunks")).unwrap();
        let dead = flist_store::open_url_with(&url, &Failover::default().open_options())
            .await
            .unwrap();
        let f = FailoverStore::new(vec![dead, a, b]);
        let keys = [b"k1".to_vec(), b"k2".to_vec(), b"k3".to_vec()];
        let got = f.get_many(&keys).await.unwrap();
        assert_eq!(
            got,
            [
                Some(Bytes::from_static(b"v1")),
                Some(Bytes::from_static(b"v2")),
                None
            ]
        );
        assert_eq!(f.current(), 1);
        assert!(f.is_dead(0) && !f.is_dead(1) && !f.is_dead(2));
        assert_eq!(f.exists_many(&keys).await.unwrap(), [true, true, false]);
        assert!(f.set(b"k4", Bytes::from_static(b"x")).await.is_err());
        assert!(!f.is_writable());
    }

    #[test]
    fn alternatives_from_metadata_then_hubs() {
        let f = Failover::from_args(&["http://a".into(), "http://m".into()], None, None).unwrap();
        let mut md = Metadata::new();
        md.set(
            KEY_BACKEND_MIRRORS,
            r#"[{"url": "http://p/chunks"}, {"url": "http://m/chunks"}]"#,
        );
        let first = StoreUrl::parse("http://a/chunks").unwrap();
        let alts: Vec<String> = f
            .alternatives(&first, &md)
            .iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(alts.len(), 2, "{alts:?}");
        assert!(
            alts[0].contains("//p/") && alts[1].contains("//m/"),
            "{alts:?}"
        );
    }
}
