//! A router: ranges of the first key byte mapped to stores, with replication where ranges
//! overlap.
//!
//! Semantics (for a key covered by several stores, its *replicas*):
//! - writes go to every replica and must succeed on all of them; the outcome is
//!   [`SetOutcome::Written`] when any replica wrote it;
//! - reads try the replicas in route order and return the first value found; a replica
//!   that fails or lacks the key is skipped. A key is absent (`None`) only when every
//!   replica answered that it is absent; if none has it and one failed, the failure is
//!   returned (absence cannot be told);
//! - `exists` is true when any replica has the key, false when all answered no, and an
//!   error when none has it and one failed. (Since `exists` is "any replica", an uploader
//!   that must fill every replica should call `set`, which is idempotent, rather than skip
//!   on `exists`.)

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::hex_key;
use crate::{SetOutcome, Store, StoreError};

/// A store routing keys by their first byte.
#[derive(Debug)]
pub struct RouterStore {
    routes: Vec<(u8, u8, Arc<dyn Store>)>,
    name: String,
}

impl std::fmt::Display for RouterStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl RouterStore {
    /// A router over `(first, last, store)` ranges (inclusive). Every first byte must be
    /// covered by at least one route.
    pub fn new(routes: Vec<(u8, u8, Arc<dyn Store>)>) -> Result<Self, StoreError> {
        let name = routes
            .iter()
            .map(|(a, b, s)| format!("{a:02x}-{b:02x}={s}"))
            .collect::<Vec<_>>()
            .join(",");
        for byte in 0..=255u8 {
            if !routes.iter().any(|(a, b, _)| (*a..=*b).contains(&byte)) {
                return Err(StoreError::InvalidUrl {
                    url: name,
                    reason: format!("no store covers keys starting with {byte:02x}"),
                });
            }
        }
        Ok(RouterStore { routes, name })
    }

    /// Route indices covering `key`, in route order.
    fn replicas(&self, key: &[u8]) -> Result<Vec<usize>, StoreError> {
        let Some(&first) = key.first() else {
            return Err(StoreError::InvalidKey {
                store: self.name.clone(),
                key: String::new(),
                reason: "empty key".into(),
            });
        };
        Ok(self
            .routes
            .iter()
            .enumerate()
            .filter(|(_, (a, b, _))| (*a..=*b).contains(&first))
            .map(|(i, _)| i)
            .collect())
    }

    /// Reads with fallback over replicas. `probe` runs a batch on one store; `found` says
    /// whether a result settles the key.
    async fn read_with_fallback<T, P, Fut>(
        &self,
        keys: &[Vec<u8>],
        probe: P,
        found: impl Fn(&T) -> bool,
    ) -> Result<Vec<Option<T>>, StoreError>
    where
        T: Clone,
        P: Fn(Arc<dyn Store>, Vec<Vec<u8>>) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<T>, StoreError>>,
    {
        let replicas: Vec<Vec<usize>> = keys
            .iter()
            .map(|k| self.replicas(k))
            .collect::<Result<_, _>>()?;
        let mut result: Vec<Option<T>> = vec![None; keys.len()];
        let mut failure: Vec<Option<usize>> = vec![None; keys.len()];
        let mut errors: Vec<StoreError> = Vec::new();
        let depth = replicas.iter().map(Vec::len).max().unwrap_or(0);
        for level in 0..depth {
            // Keys not settled yet, grouped by their replica at this level.
            let mut groups: Vec<Vec<usize>> = vec![Vec::new(); self.routes.len()];
            for (i, reps) in replicas.iter().enumerate() {
                let settled = result[i].as_ref().is_some_and(&found);
                if !settled {
                    if let Some(&r) = reps.get(level) {
                        groups[r].push(i);
                    }
                }
            }
            let calls = groups
                .iter()
                .enumerate()
                .filter(|(_, g)| !g.is_empty())
                .map(|(r, g)| {
                    let ks: Vec<Vec<u8>> = g.iter().map(|&i| keys[i].clone()).collect();
                    let fut = probe(self.routes[r].2.clone(), ks);
                    async move { (r, fut.await) }
                });
            for (r, outcome) in futures::future::join_all(calls).await {
                match outcome {
                    Ok(values) => {
                        for (&i, v) in groups[r].iter().zip(values) {
                            if !result[i].as_ref().is_some_and(&found) {
                                result[i] = Some(v);
                            }
                        }
                    }
                    Err(e) => {
                        tracing::debug!(store = %self.routes[r].2, error = %e, "replica failed");
                        for &i in &groups[r] {
                            failure[i] = Some(errors.len());
                        }
                        errors.push(e);
                    }
                }
            }
        }
        // Unsettled keys with a failed replica: the failure decides.
        for i in 0..keys.len() {
            if !result[i].as_ref().is_some_and(&found) {
                if let Some(e) = failure[i] {
                    return Err(errors.swap_remove(e));
                }
            }
        }
        Ok(result)
    }
}

#[async_trait]
impl Store for RouterStore {
    async fn set(&self, key: &[u8], value: Bytes) -> Result<SetOutcome, StoreError> {
        self.set_many(&[(key.to_vec(), value)])
            .await?
            .pop()
            .ok_or_else(|| StoreError::Other {
                store: self.name.clone(),
                message: format!("no outcome for key {}", hex_key(key)),
            })
    }

    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Bytes>>, StoreError> {
        let r = self
            .read_with_fallback(
                keys,
                |s, ks| async move { s.get_many(&ks).await },
                |v: &Option<Bytes>| v.is_some(),
            )
            .await?;
        Ok(r.into_iter().map(Option::flatten).collect())
    }

    async fn exists_many(&self, keys: &[Vec<u8>]) -> Result<Vec<bool>, StoreError> {
        let r = self
            .read_with_fallback(
                keys,
                |s, ks| async move { s.exists_many(&ks).await },
                |v| *v,
            )
            .await?;
        Ok(r.into_iter().map(|v| v.unwrap_or(false)).collect())
    }

    async fn set_many(&self, items: &[(Vec<u8>, Bytes)]) -> Result<Vec<SetOutcome>, StoreError> {
        let mut groups: Vec<Vec<usize>> = vec![Vec::new(); self.routes.len()];
        for (i, (k, _)) in items.iter().enumerate() {
            for r in self.replicas(k)? {
                groups[r].push(i);
            }
        }
        let calls = groups
            .iter()
            .enumerate()
            .filter(|(_, g)| !g.is_empty())
            .map(|(r, g)| {
                let part: Vec<(Vec<u8>, Bytes)> = g.iter().map(|&i| items[i].clone()).collect();
                let store = self.routes[r].2.clone();
                async move { (r, store.set_many(&part).await) }
            });
        let mut out = vec![SetOutcome::AlreadyPresent; items.len()];
        for (r, outcome) in futures::future::join_all(calls).await {
            for (&i, o) in groups[r].iter().zip(outcome?) {
                if o == SetOutcome::Written {
                    out[i] = SetOutcome::Written;
                }
            }
        }
        Ok(out)
    }

    fn is_writable(&self) -> bool {
        self.routes.iter().all(|(_, _, s)| s.is_writable())
    }
}
