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
struct RuntimeThread {
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

    /// Builds a store with `make` on a private two-thread runtime and wraps it.
    pub fn with_private_runtime<F, Fut>(make: F) -> Result<Self, StoreError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Arc<dyn Store>, StoreError>> + Send + 'static,
    {
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
}

/// Runs `fut` on the runtime behind `handle` and waits for it on this (non-async) thread.
fn run<R, Fut>(handle: &Handle, fut: Fut) -> Result<R, StoreError>
where
    R: Send + 'static,
    Fut: std::future::Future<Output = Result<R, StoreError>> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().map_err(|_| StoreError::Other {
        store: "(runtime)".into(),
        message: "the runtime stopped before the operation finished".into(),
    })?
}
