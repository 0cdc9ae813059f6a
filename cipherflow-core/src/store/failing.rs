//! A fault-injecting wrapper, for tests of crash safety: run a job once unfailed to count its
//! store operations, then once per operation with that one failing, and check that every
//! run either finishes or leaves state a rerun can recover from.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectKey, ObjectMeta, ObjectStore, PutMode, StoreError, StoreName};

/// Wraps a store, counting every operation (put, get, get_range, head, list, delete; 1-based)
/// and failing the chosen one with [`StoreError::Backend`] "injected fault at operation k".
#[derive(Debug)]
pub struct FailingStore<S> {
    inner: S,
    fault: Fault,
    operations: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Never,
    /// Operation k and every later one fail before reaching the store: the process died.
    Crash(u64),
    /// Only operation k fails, before reaching the store: a transient error.
    Once(u64),
    /// Operation k reaches the store, then reports failure: the reply was lost.
    LoseReply(u64),
}

impl<S: ObjectStore> FailingStore<S> {
    /// Never fails; counts operations.
    pub fn new(inner: S) -> FailingStore<S> {
        FailingStore::with(inner, Fault::Never)
    }

    /// Fails operation `k` and every one after it, without reaching the store: a crash.
    pub fn crash_at(inner: S, k: u64) -> FailingStore<S> {
        FailingStore::with(inner, Fault::Crash(k))
    }

    /// Fails only operation `k`, without reaching the store.
    pub fn fail_once_at(inner: S, k: u64) -> FailingStore<S> {
        FailingStore::with(inner, Fault::Once(k))
    }

    /// Performs operation `k` on the store, then reports failure: a put that was written
    /// although its caller sees an error (S3's "request succeeded, response lost").
    pub fn lose_reply_at(inner: S, k: u64) -> FailingStore<S> {
        FailingStore::with(inner, Fault::LoseReply(k))
    }

    fn with(inner: S, fault: Fault) -> FailingStore<S> {
        FailingStore {
            inner,
            fault,
            operations: AtomicU64::new(0),
        }
    }

    /// How many operations were asked of this wrapper so far, failed ones included.
    pub fn operations(&self) -> u64 {
        self.operations.load(Ordering::SeqCst)
    }

    /// The wrapped store, to inspect what was really written.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Unwraps the store.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn fault(&self, k: u64, operation: &'static str, key: &str) -> StoreError {
        StoreError::Backend {
            store: self.describe(),
            operation,
            key: key.to_owned(),
            message: format!("injected fault at operation {k}"),
            source: None,
        }
    }

    /// Counts one operation and runs it, unless it is to fail.
    async fn run<T, F, Fut>(
        &self,
        operation: &'static str,
        key: &str,
        op: F,
    ) -> Result<T, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let k = self.operations.fetch_add(1, Ordering::SeqCst) + 1;
        match self.fault {
            Fault::Crash(at) if k >= at => Err(self.fault(k, operation, key)),
            Fault::Once(at) if k == at => Err(self.fault(k, operation, key)),
            Fault::LoseReply(at) if k == at => {
                // The outcome is dropped, as a lost reply would be.
                let _ = op().await;
                Err(self.fault(k, operation, key))
            }
            _ => op().await,
        }
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for FailingStore<S> {
    fn describe(&self) -> String {
        format!("failing:{}", self.inner.describe())
    }

    /// The wrapped store's: fault injection does not change what the ledger names.
    fn name(&self) -> StoreName {
        self.inner.name()
    }

    async fn put(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        mode: PutMode,
    ) -> Result<ObjectMeta, StoreError> {
        self.run("put", key.as_str(), || self.inner.put(key, bytes, mode))
            .await
    }

    async fn get(&self, key: &ObjectKey) -> Result<(Bytes, ObjectMeta), StoreError> {
        self.run("get", key.as_str(), || self.inner.get(key)).await
    }

    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.run("get", key.as_str(), || self.inner.get_range(key, range))
            .await
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        self.run("head", key.as_str(), || self.inner.head(key))
            .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.run("list", prefix, || self.inner.list(prefix)).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.run("delete", key.as_str(), || self.inner.delete(key))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, block_on};

    #[test]
    fn the_fault_names_its_operation_number() {
        let store = FailingStore::fail_once_at(MemoryStore::new(), 2);
        let key = ObjectKey::new("k").unwrap();
        block_on(store.delete(&key)).unwrap();
        let err = block_on(store.head(&key)).unwrap_err();
        assert!(
            matches!(&err, StoreError::Backend { message, operation: "head", .. } if message == "injected fault at operation 2"),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with("failing:memory: head k:"),
            "{err}"
        );
        assert!(matches!(
            block_on(store.head(&key)),
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(store.operations(), 3);
    }
}
