//! A store in a local folder: one plain file per object, at the key's path under the root,
//! so the objects can be read with any tool.
//!
//! ```text
//! root/<key segments>                   the objects
//! root/.cipherflow/tmp/put-*            puts in progress; a crash may leave one, never an object
//! root/.cipherflow/locks/<sha256(key)>  one per key ever written: its lock and last version stamp
//! ```
//!
//! Keys whose first segment is `.cipherflow` (in any ASCII case, for case-insensitive file
//! systems) are refused and `list` never descends there, so no key can reach the internals.
//!
//! **Atomic puts.** A put writes the whole object to a temporary file, fsyncs it and renames it
//! onto the key's path (Create: links it there, which fails if the key exists), then fsyncs
//! the directory. A file is never changed in place, so a reader sees the old object or the
//! new one, and an open handle's bytes always match its metadata.
//!
//! **Versions** are `<mtime ns>-<inode>-<size>` of the object's file, so head and list get
//! them from one stat. Holding the key's lock, a put stamps its new file with a modification
//! time strictly above every stamp the key has had: above the current file's and the last
//! one recorded in the lock file (which outlives deletes), coarser if the file system rounds.
//! So a key's versions never repeat, not for identical bytes, not after delete and re-create.
//!
//! **Compare-and-swap is sound** because every put and delete of a key holds its exclusive
//! lock (`File::lock`, an OS advisory lock, so threads and processes alike wait) from reading
//! the current version to the rename: no other writer of this store can come in between.
//! Programs that write the folder without this store are not held off.
//!
//! **Symlinks** are never followed below the root: an operation whose path passes through one
//! fails. The check precedes the open, so the folder must not be writable by untrusted users.
//!
//! **Blocking.** The async methods do blocking file I/O and need no runtime: synchronous code
//! drives them with [`block_on`](super::block_on); inside an async runtime call them from
//! `spawn_blocking`.
//!
//! **Limit.** A key cannot be both an object and a folder (`a` and `a/b`), which S3 allows: the
//! second put fails.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::key::MAX_KEY_LEN;
use super::{ObjectKey, ObjectMeta, ObjectStore, PutMode, StoreError, StoreName, Version};

/// Objects as files under a root folder. See the module documentation.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// The first key segment reserved for the store's temporary and lock files.
    pub const RESERVED_SEGMENT: &'static str = ".cipherflow";

    /// A store in `root`, creating the folder (and its internal folders) if needed.
    pub fn new(root: impl Into<PathBuf>) -> Result<LocalStore, StoreError> {
        let root = root.into();
        let root = std::path::absolute(&root).unwrap_or(root);
        let store = LocalStore { root };
        // Only the root: the store's own folders are made by the first write, so a reader
        // can open a folder it may not write (a read-only share).
        fs::create_dir_all(&store.root).map_err(|e| store.io("open", "", e))?;
        Ok(store)
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of puts in progress, made if missing.
    fn tmp_dir(&self) -> io::Result<PathBuf> {
        let dir = self.root.join(Self::RESERVED_SEGMENT).join("tmp");
        fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// The folder of per-key locks, made if missing.
    fn lock_dir(&self) -> io::Result<PathBuf> {
        let dir = self.root.join(Self::RESERVED_SEGMENT).join("locks");
        fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    fn io(&self, operation: &'static str, key: &str, error: io::Error) -> StoreError {
        StoreError::Backend {
            store: self.describe(),
            operation,
            key: key.to_owned(),
            message: error.to_string(),
            source: Some(Box::new(error)),
        }
    }

    fn not_found(&self, key: &ObjectKey) -> StoreError {
        StoreError::NotFound {
            store: self.describe(),
            key: key.clone(),
        }
    }

    /// The key's path and the metadata of what is there (`None`: nothing, or a parent is
    /// missing or a file). Fails if the key is reserved or the path passes through a symlink.
    /// `create` makes the missing parent folders (for a put).
    fn locate(
        &self,
        key: &ObjectKey,
        operation: &'static str,
        create: bool,
    ) -> Result<(PathBuf, Option<Metadata>), StoreError> {
        let first = key.segments().next().unwrap_or_default();
        if first.eq_ignore_ascii_case(Self::RESERVED_SEGMENT) {
            return Err(StoreError::InvalidKey {
                key: key.as_str().to_owned(),
                reason: "its first segment `.cipherflow` is reserved for a local store's own files",
            });
        }
        let fail = |e| self.io(operation, key.as_str(), e);
        // A delete elsewhere in the folder may remove one just seen or made: walk again.
        for _ in 0..10 {
            if let Some(found) = self.walk(key, create).map_err(fail)? {
                return Ok(found);
            }
        }
        Err(fail(io::Error::other(
            "its folder kept being removed by concurrent deletes",
        )))
    }

    /// One walk for [`locate`](Self::locate); `None` if a folder vanished while creating.
    fn walk(
        &self,
        key: &ObjectKey,
        create: bool,
    ) -> io::Result<Option<(PathBuf, Option<Metadata>)>> {
        let mut path = self.root.clone();
        let mut segments = key.segments().peekable();
        while let Some(segment) = segments.next() {
            path.push(segment);
            let last = segments.peek().is_none();
            let mut meta = lstat(&path)?;
            if create && !last && meta.is_none() {
                match fs::create_dir(&path).and_then(|()| sync_dir(path.parent())) {
                    Err(e) if is_absent(&e) => return Ok(None),
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                    _ => {}
                }
                meta = lstat(&path)?;
                if meta.is_none() {
                    return Ok(None);
                }
            }
            match meta {
                Some(m) if m.file_type().is_symlink() => {
                    return Err(io::Error::other(format!(
                        "{} is a symbolic link; a local store never follows links",
                        path.display()
                    )));
                }
                meta if last => return Ok(Some((path, meta))),
                Some(m) if m.is_dir() => {}
                Some(_) if create => {
                    return Err(io::Error::other(format!(
                        "{} is an object, not a folder",
                        path.display()
                    )));
                }
                _ => break,
            }
        }
        Ok(Some((self.root.join(key.as_str()), None)))
    }

    /// Opens the key's file; its handle's metadata is the version of the bytes it reads.
    fn open(
        &self,
        key: &ObjectKey,
        operation: &'static str,
    ) -> Result<(File, Metadata), StoreError> {
        let (path, meta) = self.locate(key, operation, false)?;
        if !meta.is_some_and(|m| m.is_file()) {
            return Err(self.not_found(key));
        }
        let fail = |e: io::Error| {
            if is_absent(&e) {
                self.not_found(key) // deleted meanwhile
            } else {
                self.io(operation, key.as_str(), e)
            }
        };
        let file = File::open(&path).map_err(fail)?;
        let meta = file.metadata().map_err(fail)?;
        if !meta.is_file() {
            return Err(self.not_found(key)); // replaced by a folder meanwhile
        }
        Ok((file, meta))
    }

    /// The key's exclusive lock, held until the returned file is dropped.
    fn lock(&self, key: &ObjectKey, operation: &'static str) -> Result<File, StoreError> {
        let digest: [u8; 32] = Sha256::digest(key.as_str().as_bytes()).into();
        let file = self
            .lock_dir()
            .map(|dir| dir.join(hex::encode(digest)))
            .and_then(|path| {
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(path)
            })
            .and_then(|file| file.lock().map(|()| file));
        file.map_err(|e| self.io(operation, key.as_str(), e))
    }

    fn meta(
        &self,
        key: &ObjectKey,
        meta: &Metadata,
        operation: &'static str,
    ) -> Result<ObjectMeta, StoreError> {
        Ok(ObjectMeta {
            key: key.clone(),
            size: meta.len(),
            version: version(meta).map_err(|e| self.io(operation, key.as_str(), e))?,
        })
    }

    fn list_dir(
        &self,
        dir: &Path,
        at: &str,
        prefix: &str,
        out: &mut Vec<ObjectMeta>,
    ) -> io::Result<()> {
        let entries = match fs::read_dir(dir) {
            Err(e) if is_absent(&e) => return Ok(()), // removed meanwhile
            entries => entries?,
        };
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue; // not UTF-8: no key names it
            };
            if at.is_empty() && name.eq_ignore_ascii_case(Self::RESERVED_SEGMENT) {
                continue;
            }
            let key = if at.is_empty() {
                name
            } else {
                format!("{at}/{name}")
            };
            let file_type = entry.file_type()?; // of the entry itself: links are not objects
            if file_type.is_dir() && key.len() < MAX_KEY_LEN {
                let folder = format!("{key}/");
                if folder.starts_with(prefix) || prefix.starts_with(&folder) {
                    self.list_dir(&entry.path(), &key, prefix, out)?;
                }
            } else if file_type.is_file() && key.starts_with(prefix) {
                let (Ok(key), Some(meta)) = (ObjectKey::new(key), lstat(&entry.path())?) else {
                    continue; // a name no key can have, or deleted meanwhile
                };
                out.push(ObjectMeta {
                    size: meta.len(),
                    version: version(&meta)?,
                    key,
                });
            }
        }
        Ok(())
    }

    fn remove_empty_folders(&self, mut dir: Option<&Path>) {
        while let Some(d) = dir.filter(|d| *d != self.root && d.starts_with(&self.root)) {
            if fs::remove_dir(d).is_err() {
                break; // not empty (or already gone): best effort
            }
            dir = d.parent();
        }
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    fn describe(&self) -> String {
        format!("local:{}", self.root.display())
    }

    fn name(&self) -> StoreName {
        StoreName {
            kind: "local".into(),
            bucket: self.root.display().to_string(),
            prefix: String::new(),
        }
    }

    async fn put(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        mode: PutMode,
    ) -> Result<ObjectMeta, StoreError> {
        let fail = |e| self.io("put", key.as_str(), e);
        let (path, _) = self.locate(key, "put", true)?;
        let mut tmp = tempfile::Builder::new()
            .prefix("put-")
            .tempfile_in(self.tmp_dir().map_err(fail)?)
            .map_err(fail)?;
        tmp.write_all(&bytes).map_err(fail)?;

        let mut lock = self.lock(key, "put")?;
        let current = lstat(&path).map_err(fail)?;
        if current.as_ref().is_some_and(|m| !m.is_file()) {
            return Err(fail(io::Error::other(format!(
                "{} is a folder or link, not an object",
                path.display()
            ))));
        }
        let current_version = current.as_ref().map(version).transpose().map_err(fail)?;
        match (&mode, &current_version) {
            (PutMode::Create, Some(_)) => {
                return Err(StoreError::AlreadyExists {
                    store: self.describe(),
                    key: key.clone(),
                });
            }
            (PutMode::Update(expected), current) if current.as_ref() != Some(expected) => {
                return Err(StoreError::Precondition {
                    store: self.describe(),
                    key: key.clone(),
                    expected: expected.clone(),
                });
            }
            _ => {}
        }
        let current_mtime = current
            .map(|m| m.modified().map(nanos))
            .transpose()
            .map_err(fail)?;
        let floor = last_stamp(&mut lock).max(current_mtime.unwrap_or(0));
        let stamp = stamp(tmp.as_file(), floor).map_err(fail)?;
        tmp.as_file().sync_all().map_err(fail)?;
        record_stamp(&mut lock, stamp).map_err(fail)?;

        let mut retries = 0;
        let file = loop {
            let persisted = match mode {
                PutMode::Create => tmp.persist_noclobber(&path),
                _ => tmp.persist(&path),
            };
            match persisted {
                Ok(file) => break file,
                // A delete of a sibling removed the emptied parent folder meanwhile.
                Err(e) if is_absent(&e.error) && retries < 10 => {
                    retries += 1;
                    tmp = e.file;
                    self.locate(key, "put", true)?;
                }
                Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(StoreError::AlreadyExists {
                        store: self.describe(),
                        key: key.clone(),
                    });
                }
                Err(e) => return Err(fail(e.error)),
            }
        };
        sync_dir(path.parent()).map_err(fail)?;
        let meta = file.metadata().map_err(fail)?;
        drop(lock);
        self.meta(key, &meta, "put")
    }

    async fn get(&self, key: &ObjectKey) -> Result<(Bytes, ObjectMeta), StoreError> {
        let (mut file, meta) = self.open(key, "get")?;
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        file.read_to_end(&mut bytes)
            .map_err(|e| self.io("get", key.as_str(), e))?;
        Ok((Bytes::from(bytes), self.meta(key, &meta, "get")?))
    }

    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes, StoreError> {
        let (mut file, meta) = self.open(key, "get")?;
        let size = meta.len();
        if range.start > range.end || range.end > size {
            return Err(StoreError::InvalidRange {
                store: self.describe(),
                key: key.clone(),
                start: range.start,
                end: range.end,
                size,
            });
        }
        let fail = |e| self.io("get", key.as_str(), e);
        let len = usize::try_from(range.end - range.start)
            .map_err(|_| fail(io::Error::other("range larger than memory")))?;
        let mut bytes = vec![0; len];
        file.seek(SeekFrom::Start(range.start)).map_err(fail)?;
        file.read_exact(&mut bytes).map_err(fail)?;
        Ok(Bytes::from(bytes))
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        match self.locate(key, "head", false)? {
            (_, Some(meta)) if meta.is_file() => self.meta(key, &meta, "head"),
            _ => Err(self.not_found(key)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let mut out = Vec::new();
        self.list_dir(&self.root, "", prefix, &mut out)
            .map_err(|e| self.io("list", prefix, e))?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        let (path, meta) = self.locate(key, "delete", false)?;
        if !meta.is_some_and(|m| m.is_file()) {
            return Ok(()); // absent (a folder is not an object)
        }
        let lock = self.lock(key, "delete")?;
        match fs::remove_file(&path) {
            // The folder may be gone already, removed by another delete's cleanup.
            Ok(()) => match sync_dir(path.parent()) {
                Err(e) if !is_absent(&e) => return Err(self.io("delete", key.as_str(), e)),
                _ => {}
            },
            Err(e) if is_absent(&e) => {}
            Err(e) => return Err(self.io("delete", key.as_str(), e)),
        }
        drop(lock);
        self.remove_empty_folders(path.parent());
        Ok(())
    }
}

/// The metadata of `path` itself (not a link's target); `None` if absent.
fn lstat(path: &Path) -> io::Result<Option<Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if is_absent(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

fn is_absent(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

fn version(meta: &Metadata) -> io::Result<Version> {
    let mtime = nanos(meta.modified()?);
    Ok(Version(format!("{mtime}-{}-{}", inode(meta), meta.len())))
}

#[cfg(unix)]
fn inode(meta: &Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_: &Metadata) -> u64 {
    0
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Gives `file` a modification time above `floor` (ns since the epoch) and returns it as
/// stored: file systems round (ext4 keeps ns, FAT 2 s), so coarser steps follow.
fn stamp(file: &File, floor: u64) -> io::Result<u64> {
    let now = nanos(SystemTime::now());
    for step in [1, 1_000, 1_000_000, 1_000_000_000, 4_000_000_000] {
        let wanted = now.max(floor.saturating_add(step));
        file.set_modified(UNIX_EPOCH + Duration::from_nanos(wanted))?;
        let stored = nanos(file.metadata()?.modified()?);
        if stored > floor {
            return Ok(stored);
        }
    }
    Err(io::Error::other(
        "the file system does not keep modification times apart",
    ))
}

/// The last stamp recorded in a lock file (0 if none yet).
fn last_stamp(lock: &mut File) -> u64 {
    let mut text = String::new();
    let read = lock
        .seek(SeekFrom::Start(0))
        .and_then(|_| lock.read_to_string(&mut text));
    read.ok()
        .and_then(|_| text.trim().parse().ok())
        .unwrap_or(0)
}

/// Records a stamp: fixed width, so each write replaces the last whole.
fn record_stamp(lock: &mut File, stamp: u64) -> io::Result<()> {
    lock.seek(SeekFrom::Start(0))?;
    lock.write_all(format!("{stamp:020}\n").as_bytes())
}

/// Makes a rename or removal in `dir` durable.
fn sync_dir(dir: Option<&Path>) -> io::Result<()> {
    #[cfg(unix)]
    if let Some(dir) = dir {
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::block_on;

    #[test]
    fn a_stamp_lands_above_its_floor() {
        let file = tempfile::tempfile().unwrap();
        let far_future = nanos(SystemTime::now()) + 3_600_000_000_000;
        let stamped = stamp(&file, far_future).unwrap();
        assert!(stamped > far_future);
        assert_eq!(nanos(file.metadata().unwrap().modified().unwrap()), stamped);
    }

    #[test]
    fn the_lock_file_keeps_the_last_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        let key = ObjectKey::new("k").unwrap();
        let first =
            block_on(store.put(&key, Bytes::from_static(b"x"), PutMode::Overwrite)).unwrap();
        let mut lock = store.lock(&key, "test").unwrap();
        let recorded = last_stamp(&mut lock);
        assert_eq!(
            first.version.0,
            format!(
                "{recorded}-{}-1",
                inode(&lstat(&dir.path().join("k")).unwrap().unwrap())
            )
        );
    }

    #[test]
    fn opening_and_reading_write_nothing_so_a_read_only_share_opens() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("obj"), b"x").unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        let key = ObjectKey::new("obj").unwrap();
        assert_eq!(&block_on(store.get(&key)).unwrap().0[..], b"x");
        assert_eq!(block_on(store.list("")).unwrap().len(), 1);
        assert!(!dir.path().join(LocalStore::RESERVED_SEGMENT).exists());
        // The first write makes the store's own folders.
        block_on(store.put(&key, Bytes::from_static(b"y"), PutMode::Overwrite)).unwrap();
        assert!(dir.path().join(".cipherflow/locks").is_dir());
    }

    #[test]
    fn deleting_the_last_object_removes_its_folders_but_not_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("root")).unwrap();
        let key = ObjectKey::new("a/b/c").unwrap();
        block_on(store.put(&key, Bytes::new(), PutMode::Overwrite)).unwrap();
        assert!(dir.path().join("root/a/b").is_dir());
        block_on(store.delete(&key)).unwrap();
        assert!(!dir.path().join("root/a").exists());
        assert!(dir.path().join("root").is_dir());
    }
}
