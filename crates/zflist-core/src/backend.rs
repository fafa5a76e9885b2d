//! Which chunk store a command talks to.
//!
//! - Writing (`put`, `putdir`, `pack`): the `--store` arguments (several make a router),
//!   else `ZFLIST_BACKEND` (the reference's JSON backend object, or a store URL). Without
//!   either, `put`/`putdir` compute the chunk keys but upload nothing (reference behaviour).
//! - Reading (`cat`, `get`, `check`, `extract`, `verify`): the same, falling back to the
//!   flist's route table (`.fl`: one store, or a router over several) or its public
//!   `backend` metadata (`.flist`).

use flist_format::metadata::Metadata;
use flist_store::{BlockingStore, StoreError, StoreUrl};

use crate::error::{Error, ErrorKind, Result};

/// Where stores come from, as given on the command line and in the environment.
#[derive(Clone, Debug, Default)]
pub struct StoreConfig {
    /// `--store` arguments (a router when more than one).
    pub stores: Vec<String>,
    /// The `ZFLIST_BACKEND` environment value, if set and not empty.
    pub backend_env: Option<String>,
}

impl StoreConfig {
    /// A configuration with explicit store URLs only.
    pub fn with_stores<S: Into<String>>(stores: impl IntoIterator<Item = S>) -> Self {
        StoreConfig {
            stores: stores.into_iter().map(Into::into).collect(),
            backend_env: None,
        }
    }

    /// The store to write to, if one is configured.
    pub fn write_url(&self) -> Result<Option<StoreUrl>, StoreError> {
        if !self.stores.is_empty() {
            return StoreUrl::parse_list(&self.stores).map(Some);
        }
        match self.backend_env.as_deref().map(str::trim) {
            Some(s) if !s.is_empty() => parse_backend_value(s).map(Some),
            _ => Ok(None),
        }
    }

    /// The store to read from: the configured one, else the flist's route table (`.fl`),
    /// else its `backend` metadata (`.flist`).
    pub fn read_url(&self, metadata: &Metadata) -> Result<Option<StoreUrl>, StoreError> {
        if let Some(u) = self.write_url()? {
            return Ok(Some(u));
        }
        if !metadata.routes.is_empty() {
            return flist_convert::backend::routes_url(&metadata.routes).map(Some);
        }
        match metadata.backend() {
            Ok(Some(b)) => Ok(Some(flist_convert::backend::store_url(&b))),
            Ok(None) => Ok(None),
            Err(e) => Err(StoreError::InvalidUrl {
                url: "(the flist's backend metadata)".into(),
                reason: e.to_string(),
            }),
        }
    }

    /// The store to write to; an error naming the options when none is configured (for
    /// commands that cannot work without one).
    pub fn require_write_url(&self, function: &str) -> Result<StoreUrl> {
        self.write_url()
            .map_err(|e| Error::new(function, e))?
            .ok_or_else(|| {
                Error::new(
                    function,
                    ErrorKind::NoStore("give --store URL (or set ZFLIST_BACKEND)".into()),
                )
            })
    }

    /// Opens the store to write to (`None` when none is configured).
    pub fn open_write(&self, function: &str) -> Result<Option<BlockingStore>> {
        let url = self.write_url().map_err(|e| Error::new(function, e))?;
        url.map(|u| open_store(&u).map_err(|e| Error::new(function, e)))
            .transpose()
    }

    /// Several plain `--store` URLs (no `RANGE=`): copies of one store, read with failover.
    fn failover_list(&self) -> Option<Vec<StoreUrl>> {
        if self.stores.len() < 2 {
            return None;
        }
        self.stores
            .iter()
            .map(|s| match StoreUrl::parse(s) {
                Ok(StoreUrl::Router(_)) | Err(_) => None,
                Ok(u) => Some(u),
            })
            .collect()
    }

    /// Opens the store to read from; an error when nothing is configured. Several plain
    /// `--store` URLs are tried in order; a store taken from the flist's `backend` fails over
    /// to its `backend-mirrors` and the `/chunks/` of the hubs given with `--hub` (see
    /// [`crate::failover`]).
    pub fn open_read(&self, function: &str, metadata: &Metadata) -> Result<BlockingStore> {
        if let Some(mut list) = self.failover_list() {
            let first = list.remove(0);
            return crate::failover::open_with_alternatives(&first, list)
                .map_err(|e| Error::new(function, e));
        }
        let url = self.read_url(metadata).map_err(|e| Error::new(function, e))?.ok_or_else(|| {
            Error::new(
                function,
                ErrorKind::NoStore(
                    "give --store URL or set ZFLIST_BACKEND (the flist has no backend metadata or routes)".into(),
                ),
            )
        })?;
        let configured = self
            .write_url()
            .map_err(|e| Error::new(function, e))?
            .is_some();
        if configured {
            return open_store(&url).map_err(|e| Error::new(function, e));
        }
        let alternatives = crate::failover::config().alternatives(&url, metadata);
        crate::failover::open_with_alternatives(&url, alternatives)
            .map_err(|e| Error::new(function, e))
    }
}

/// Parses a `ZFLIST_BACKEND` value: a JSON backend object (`{"host", "port", "namespace",
/// "password"}`) or a store URL.
pub fn parse_backend_value(s: &str) -> Result<StoreUrl, StoreError> {
    if s.trim_start().starts_with('{') {
        flist_format::Backend::parse(s)
            .map(|b| flist_convert::backend::store_url(&b))
            .map_err(|e| StoreError::InvalidUrl {
                url: "(ZFLIST_BACKEND)".into(),
                reason: e.to_string(),
            })
    } else {
        StoreUrl::parse(s)
    }
}

/// Opens a store on a private runtime for synchronous use.
pub fn open_store(url: &StoreUrl) -> Result<BlockingStore, StoreError> {
    let url = url.clone();
    BlockingStore::with_private_runtime(move || async move { flist_store::open_url(&url).await })
}

/// Which `backend` a command that writes an flist (`pack`, `docker`) records in it. The
/// default is the store the chunks were written to, without its password; a store readers
/// cannot reach the same way (`dir://`, Redis, a router) records nothing.
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendArgs {
    /// Record no backend metadata.
    #[arg(long, conflicts_with = "public_backend")]
    pub no_backend: bool,
    /// Record this store as the backend instead of --store (a zdb:// or http(s):// URL, or
    /// a JSON backend object); a password in it is never recorded.
    #[arg(long, value_name = "URL")]
    pub public_backend: Option<String>,
}

/// The backend to record for chunks written to `store`, and a note for the user when the
/// store cannot be recorded.
pub fn recorded_backend(
    function: &str,
    choice: &BackendArgs,
    store: &StoreUrl,
) -> Result<(Option<flist_format::Backend>, Option<String>)> {
    match (choice.no_backend, &choice.public_backend) {
        (true, _) => Ok((None, None)),
        (false, None) => match flist_convert::backend::public_backend(store) {
            Ok(b) => Ok((Some(b), None)),
            Err(e) => Ok((
                None,
                Some(format!(
                    "no backend recorded: {e}; readers will need --store (or give --public-backend URL)"
                )),
            )),
        },
        (false, Some(s)) => {
            let b = if s.trim_start().starts_with('{') {
                flist_format::Backend::parse(s).map_err(|e| {
                    Error::usage(function, format!("--public-backend: {e}"))
                })?
            } else {
                let url = StoreUrl::parse(s)
                    .map_err(|e| Error::usage(function, format!("--public-backend: {e}")))?;
                flist_convert::backend::public_backend(&url)
                    .map_err(|e| Error::usage(function, format!("--public-backend: {e}")))?
            };
            Ok((Some(b.public()), None))
        }
    }
}
