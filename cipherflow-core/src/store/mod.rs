//! Object stores: where landed CDC files, the pipeline's private state, sealed snapshots and
//! the ledger live. One small trait, [`ObjectStore`], with an in-memory store, a local-folder
//! store (the default) and, in `cipherflow-aws`, S3.
//!
//! The trait is async so that the S3 store never blocks an async runtime (a Lambda handler
//! awaits it); the local stores do plain file I/O and need no runtime: a synchronous caller
//! drives them with [`block_on`]. Every store passes the one conformance suite in
//! [`conformance`].
//!
//! Concurrency is handled by conditional puts, as S3 does it: [`PutMode::Create`] writes only
//! if the key is absent (`If-None-Match: *`), [`PutMode::Update`] only if the object is still
//! at the [`Version`] the caller read (`If-Match`). Two writers racing on one key: one wins,
//! the other gets [`StoreError::Precondition`] and must re-read.

pub mod conformance;
mod failing;
mod key;
mod local;
mod memory;

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
pub use bytes::Bytes;

pub use failing::FailingStore;
pub use key::ObjectKey;
pub use local::LocalStore;
pub use memory::MemoryStore;

/// An object's version as its store names it (an S3 ETag, a local generation): opaque,
/// compared only for equality, used for compare-and-swap.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version(pub String);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a store knows about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's key.
    pub key: ObjectKey,
    /// Its size in bytes.
    pub size: u64,
    /// Its current version.
    pub version: Version,
}

/// How a store is named in ledger records: the kind of store, its bucket (or folder), and the
/// key prefix the store adds to every key, so that a record names the object as its backend
/// does (`s3`, `my-bucket`, `state/` + key). Typed, so the ledger never parses
/// [`ObjectStore::describe`]'s free text.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct StoreName {
    /// `s3`, `local`, `memory`, ...
    pub kind: String,
    /// The bucket, or the folder of a local store; empty where there is none.
    pub bucket: String,
    /// Prepended by the store to every key (`""`, or ending in `/`).
    pub prefix: String,
}

impl StoreName {
    /// The key of `key` as the backend names it: the store's prefix, then the key.
    pub fn full_key(&self, key: &ObjectKey) -> String {
        format!("{}{}", self.prefix, key)
    }
}

/// When a put may happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutMode {
    /// Always: create or replace.
    Overwrite,
    /// Only if no object has this key (S3 `If-None-Match: *`); else
    /// [`StoreError::AlreadyExists`].
    Create,
    /// Only if the object exists at exactly this version (S3 `If-Match`); else
    /// [`StoreError::Precondition`] (also when it was deleted meanwhile).
    Update(Version),
}

/// Why a store operation failed. Every variant names the key (or prefix) it was about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The key is not valid (see [`ObjectKey`]): it could escape the store, or is malformed.
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey {
        /// The key as given.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No object has this key.
    #[error("{store}: no object {key}")]
    NotFound {
        /// The store's description.
        store: String,
        /// The key.
        key: ObjectKey,
    },
    /// A create-only put found the key taken.
    #[error("{store}: object {key} already exists")]
    AlreadyExists {
        /// The store's description.
        store: String,
        /// The key.
        key: ObjectKey,
    },
    /// A compare-and-swap put found the object at another version (or gone).
    #[error("{store}: object {key} changed since it was read (expected version {expected})")]
    Precondition {
        /// The store's description.
        store: String,
        /// The key.
        key: ObjectKey,
        /// The version the caller expected.
        expected: Version,
    },
    /// A byte range outside the object.
    #[error("{store}: range {start}..{end} is outside object {key} of {size} bytes")]
    InvalidRange {
        /// The store's description.
        store: String,
        /// The key.
        key: ObjectKey,
        /// Range start.
        start: u64,
        /// Range end (exclusive).
        end: u64,
        /// The object's size.
        size: u64,
    },
    /// The store itself failed (I/O, network, service error); `key` is what it was doing.
    #[error("{store}: {operation} {key}: {message}")]
    Backend {
        /// The store's description.
        store: String,
        /// `put`, `get`, `head`, `list`, `delete`.
        operation: &'static str,
        /// The key or prefix.
        key: String,
        /// What went wrong (an S3 store includes the request id).
        message: String,
        /// The underlying error, where there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// A place that holds objects by key. See the module documentation for the contract; the
/// [`conformance`] suite is its executable form.
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// A short description for errors and ledger records: `local:/path`, `memory`,
    /// `s3://bucket/prefix`.
    fn describe(&self) -> String;

    /// How ledger records name this store. The default is the description as the kind, with
    /// no bucket and no prefix; stores with a bucket or folder say so.
    fn name(&self) -> StoreName {
        StoreName {
            kind: self.describe(),
            ..StoreName::default()
        }
    }

    /// Writes `bytes` at `key` if `mode` allows, atomically: a reader sees the old object or
    /// the new one, never a part. Returns the new object's metadata.
    async fn put(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        mode: PutMode,
    ) -> Result<ObjectMeta, StoreError>;

    /// Reads a whole object, with the metadata of the version read.
    async fn get(&self, key: &ObjectKey) -> Result<(Bytes, ObjectMeta), StoreError>;

    /// Reads `range` of an object. A range reaching past the end is
    /// [`StoreError::InvalidRange`]; an empty range inside the object is empty bytes.
    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes, StoreError>;

    /// The object's metadata.
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError>;

    /// Every object whose key starts with `prefix` (a plain string prefix, `""` for all),
    /// sorted by key bytes.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError>;

    /// Removes an object. Removing an absent object is not an error (as in S3).
    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError>;
}

/// A shared store is a store, so `Arc<dyn ObjectStore>` can be passed (and wrapped, as by
/// [`FailingStore`]) wherever a store is expected.
#[async_trait]
impl<T: ObjectStore + ?Sized> ObjectStore for Arc<T> {
    fn describe(&self) -> String {
        (**self).describe()
    }

    fn name(&self) -> StoreName {
        (**self).name()
    }

    async fn put(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        mode: PutMode,
    ) -> Result<ObjectMeta, StoreError> {
        (**self).put(key, bytes, mode).await
    }

    async fn get(&self, key: &ObjectKey) -> Result<(Bytes, ObjectMeta), StoreError> {
        (**self).get(key).await
    }

    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes, StoreError> {
        (**self).get_range(key, range).await
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        (**self).head(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        (**self).list(prefix).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        (**self).delete(key).await
    }
}

/// Runs a store future to completion on the current thread: how synchronous code (the
/// command line, tests) drives the local stores without an async runtime. Do not use it
/// inside an async runtime; await there instead.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    pollster::block_on(future)
}
