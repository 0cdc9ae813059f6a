//! An in-memory store: for tests, and for state that need not outlive the process.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectKey, ObjectMeta, ObjectStore, PutMode, StoreError, StoreName, Version};

/// Objects in a map. Versions are a counter, so compare-and-swap is exact.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    objects: BTreeMap<ObjectKey, (Bytes, Version)>,
    next_version: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// An independent copy: the same objects under the same versions (so a landing index or
    /// a compare-and-swap made against this store holds against the copy too). The bytes are
    /// shared, not copied; later changes to either store do not show in the other.
    pub fn snapshot(&self) -> MemoryStore {
        let inner = self.lock();
        MemoryStore {
            inner: Mutex::new(Inner {
                objects: inner.objects.clone(),
                next_version: inner.next_version,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-changed: every change
        // is a single insert or remove.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn not_found(&self, key: &ObjectKey) -> StoreError {
        StoreError::NotFound {
            store: self.describe(),
            key: key.clone(),
        }
    }
}

fn meta(key: &ObjectKey, bytes: &Bytes, version: &Version) -> ObjectMeta {
    ObjectMeta {
        key: key.clone(),
        size: bytes.len() as u64,
        version: version.clone(),
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    fn describe(&self) -> String {
        "memory".into()
    }

    fn name(&self) -> StoreName {
        StoreName {
            kind: "memory".into(),
            ..StoreName::default()
        }
    }

    async fn put(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        mode: PutMode,
    ) -> Result<ObjectMeta, StoreError> {
        let mut inner = self.lock();
        let current = inner.objects.get(key).map(|(_, v)| v);
        match (&mode, current) {
            (PutMode::Create, Some(_)) => {
                return Err(StoreError::AlreadyExists {
                    store: self.describe(),
                    key: key.clone(),
                });
            }
            (PutMode::Update(expected), current) if current != Some(expected) => {
                return Err(StoreError::Precondition {
                    store: self.describe(),
                    key: key.clone(),
                    expected: expected.clone(),
                });
            }
            _ => {}
        }
        inner.next_version += 1;
        let version = Version(inner.next_version.to_string());
        let meta = meta(key, &bytes, &version);
        inner.objects.insert(key.clone(), (bytes, version));
        Ok(meta)
    }

    async fn get(&self, key: &ObjectKey) -> Result<(Bytes, ObjectMeta), StoreError> {
        let inner = self.lock();
        let (bytes, version) = inner.objects.get(key).ok_or_else(|| self.not_found(key))?;
        Ok((bytes.clone(), meta(key, bytes, version)))
    }

    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes, StoreError> {
        let (bytes, _) = self.get(key).await?;
        let size = bytes.len() as u64;
        if range.start > range.end || range.end > size {
            return Err(StoreError::InvalidRange {
                store: self.describe(),
                key: key.clone(),
                start: range.start,
                end: range.end,
                size,
            });
        }
        Ok(bytes.slice(range.start as usize..range.end as usize))
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        self.get(key).await.map(|(_, meta)| meta)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .objects
            .iter()
            .filter(|(k, _)| k.as_str().starts_with(prefix))
            .map(|(k, (bytes, version))| meta(k, bytes, version))
            .collect())
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.lock().objects.remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::block_on;

    #[test]
    fn a_snapshot_keeps_versions_and_is_independent() {
        let store = MemoryStore::new();
        let a = ObjectKey::new("a").unwrap();
        let b = ObjectKey::new("b").unwrap();
        block_on(store.put(&b, Bytes::from_static(b"1"), PutMode::Overwrite)).unwrap();
        let first = block_on(store.put(&a, Bytes::from_static(b"2"), PutMode::Overwrite)).unwrap();
        let copy = store.snapshot();
        assert_eq!(block_on(copy.head(&a)).unwrap().version, first.version);
        // A compare-and-swap made against the original holds against the copy.
        block_on(copy.put(
            &a,
            Bytes::from_static(b"3"),
            PutMode::Update(first.version.clone()),
        ))
        .unwrap();
        assert_eq!(&block_on(store.get(&a)).unwrap().0[..], b"2");
        block_on(store.delete(&b)).unwrap();
        assert!(block_on(copy.head(&b)).is_ok());
        // Versions never repeat within either store.
        let next = block_on(store.put(&a, Bytes::new(), PutMode::Overwrite)).unwrap();
        assert_ne!(next.version, first.version);
    }
}
