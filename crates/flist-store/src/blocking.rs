//! A synchronous facade over an async [`Store`], for callers on plain threads.

use std::sync::Arc;

use bytes::Bytes;
use tokio::runtime::Handle;

use crate::{SetOutcome, Store, StoreError};

/// A [`Store`] usable from synchronous code (converter worker threads, `spawn_blocking`
/// closures).
///
/// Each call spawns the operation onto a tokio runtime and waits for it on the calling
/// thread. Do **not** call it from inside an async task (it would block an executor
/// thread); from async code use the [`Store`] directly.
///
/// Either wrap a store opened on your runtime with [`BlockingStore::new`] (passing
/// `Handle::current()` captured in async code), or let [`BlockingStore::open`] run a small
/// private runtime on a background thread, which stops when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct BlockingStore {
    store: Arc<dyn Store>,
    handle: Handle,
    _runtime: Option<Arc<RuntimeThread>>,
}

/// A private runtime driven by a background thread; dropping it stops the thread.
#[derive(Debug)]
pub(crate) struct RuntimeThread {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for RuntimeThread {
    fn drop(&mut self) {
        drop(self.shutdown.take());
        if let Some(t) = self.thread.take() {
            // Joining from inside a runtime would block it; the thread exits on its own.
            if Handle::try_current().is_err() {
                let _ = t.join();
            }
        }
    }
}

impl std::fmt::Display for BlockingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.store.fmt(f)
    }
}

impl BlockingStore {
    /// Wraps `store`, running its operations on the runtime behind `handle` (the runtime
    /// the store's connections were made on).
    pub fn new(store: Arc<dyn Store>, handle: Handle) -> Self {
        BlockingStore {
            store,
            handle,
            _runtime: None,
        }
    }

    /// Opens a store URL (see [`crate::open`]) on a private two-thread runtime.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let url = url.to_owned();
        Self::with_private_runtime(move || async move { crate::open(&url).await })
    }

    /// Wraps a store that is not tied to a runtime (a [`crate::DirStore`]; or one whose
    /// connections are made lazily) on a private two-thread runtime.
    pub fn on_private_runtime(store: Arc<dyn Store>) -> Result<Self, StoreError> {
        Self::with_private_runtime(move || async move { Ok(store) })
    }

    /// Builds a store with `make` on a private two-thread runtime and wraps it.
    pub fn with_private_runtime<F, Fut>(make: F) -> Result<Self, StoreError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Arc<dyn Store>, StoreError>> + Send + 'static,
    {
        let (handle, rt) = private_runtime()?;
        let store = run(&handle, make())?;
        Ok(BlockingStore {
            store,
            handle,
            _runtime: Some(rt),
        })
    }

    /// The wrapped async store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// A handle of the runtime the operations run on.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    fn call<R, F, Fut>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(Arc<dyn Store>) -> Fut,
        Fut: std::future::Future<Output = Result<R, StoreError>> + Send + 'static,
    {
        run(&self.handle, f(self.store.clone()))
    }

    /// See [`Store::get`].
    pub fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        let key = key.to_vec();
        self.call(|s| async move { s.get(&key).await })
    }

    /// See [`Store::get_required`].
    pub fn get_required(&self, key: &[u8]) -> Result<Bytes, StoreError> {
        let key = key.to_vec();
        self.call(|s| async move { s.get_required(&key).await })
    }

    /// See [`Store::exists`].
    pub fn exists(&self, key: &[u8]) -> Result<bool, StoreError> {
        let key = key.to_vec();
        self.call(|s| async move { s.exists(&key).await })
    }

    /// See [`Store::set`].
    pub fn set(&self, key: &[u8], value: Bytes) -> Result<SetOutcome, StoreError> {
        let key = key.to_vec();
        self.call(|s| async move { s.set(&key, value).await })
    }

    /// See [`Store::get_many`].
    pub fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Bytes>>, StoreError> {
        let keys = keys.to_vec();
        self.call(|s| async move { s.get_many(&keys).await })
    }

    /// See [`Store::get_many_required`].
    pub fn get_many_required(&self, keys: &[Vec<u8>]) -> Result<Vec<Bytes>, StoreError> {
        let keys = keys.to_vec();
        self.call(|s| async move { s.get_many_required(&keys).await })
    }

    /// See [`Store::exists_many`].
    pub fn exists_many(&self, keys: &[Vec<u8>]) -> Result<Vec<bool>, StoreError> {
        let keys = keys.to_vec();
        self.call(|s| async move { s.exists_many(&keys).await })
    }

    /// See [`Store::set_many`]. Takes the items by value to avoid a copy.
    pub fn set_many(&self, items: Vec<(Vec<u8>, Bytes)>) -> Result<Vec<SetOutcome>, StoreError> {
        self.call(|s| async move { s.set_many(&items).await })
    }

    /// Starts [`Store::get_many`] and returns at once: several requests can be in flight
    /// while the caller works; [`Pending::wait`] collects the result.
    pub fn start_get_many(&self, keys: Vec<Vec<u8>>) -> Pending<Vec<Option<Bytes>>> {
        self.start(|s| async move { s.get_many(&keys).await })
    }

    /// Starts [`Store::exists_many`]; see [`BlockingStore::start_get_many`].
    pub fn start_exists_many(&self, keys: Vec<Vec<u8>>) -> Pending<Vec<bool>> {
        self.start(|s| async move { s.exists_many(&keys).await })
    }

    /// Starts [`Store::set_many`]; see [`BlockingStore::start_get_many`].
    pub fn start_set_many(&self, items: Vec<(Vec<u8>, Bytes)>) -> Pending<Vec<SetOutcome>> {
        self.start(|s| async move { s.set_many(&items).await })
    }

    /// Starts `f` (async code over the wrapped store, e.g. a presence check followed by
    /// a write of what is missing) on the store's runtime and returns at once.
    pub fn start<R, F, Fut>(&self, f: F) -> Pending<R>
    where
        R: Send + 'static,
        F: FnOnce(Arc<dyn Store>) -> Fut,
        Fut: std::future::Future<Output = Result<R, StoreError>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let fut = f(self.store.clone());
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        Pending { rx }
    }
}

/// A store operation running on the store's runtime, started by one of the
/// `BlockingStore::start_*` methods. Dropping it does not cancel the operation.
#[derive(Debug)]
#[must_use = "an operation's outcome is only known by waiting for it"]
pub struct Pending<T> {
    rx: std::sync::mpsc::Receiver<Result<T, StoreError>>,
}

impl<T> Pending<T> {
    /// Waits (blocking this thread) for the operation's result.
    pub fn wait(self) -> Result<T, StoreError> {
        self.rx.recv().map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Other {
        store: "(runtime)".into(),
        message: "the runtime stopped before the operation finished".into(),
    }
}

/// Starts a two-thread runtime driven by a background thread, which stops when the
/// returned [`RuntimeThread`] is dropped.
pub(crate) fn private_runtime() -> Result<(Handle, Arc<RuntimeThread>), StoreError> {
    let other = |message: String| StoreError::Other {
        store: "(runtime)".into(),
        message,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("flist-store")
        .enable_all()
        .build()
        .map_err(|e| other(format!("cannot start a tokio runtime: {e}")))?;
    let handle = runtime.handle().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("flist-store-rt".into())
        .spawn(move || {
            runtime.block_on(async {
                let _ = rx.await;
            });
        })
        .map_err(|e| other(format!("cannot start the runtime thread: {e}")))?;
    let rt = Arc::new(RuntimeThread {
        shutdown: Some(tx),
        thread: Some(thread),
    });
    Ok((handle, rt))
}

/// Runs `fut` on the runtime behind `handle` and waits for it on this (non-async) thread.
pub(crate) fn run<R, Fut>(handle: &Handle, fut: Fut) -> Result<R, StoreError>
where
    R: Send + 'static,
    Fut: std::future::Future<Output = Result<R, StoreError>> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().map_err(|_| stopped())?
}
