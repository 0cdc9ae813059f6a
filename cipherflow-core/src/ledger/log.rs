//! The append-only log, stored as write-once files in a local folder, and its verification.
//!
//! ```text
//! DIR/origin                                  the log's origin line (written by `init`)
//! DIR/records/000000000/000000000000.rec      record i at records/{i/1000:09}/{i:012}.rec
//! DIR/leaves/000000000000-000000000100.bin    leaf hashes of records [start, end), 32 bytes each
//! DIR/checkpoints/000000000100.note           the signed checkpoint at tree size 100
//! ```
//!
//! Every file is written to a temporary name and linked into place only if the name is
//! free, so appends never rewrite and two concurrent appenders cannot both claim an index.
//! (No `ObjectStore` trait exists in the workspace yet; this layout maps onto one with
//! conditional puts.) The leaf-hash pieces are written with each checkpoint: once a signed
//! root authenticates them, comparing each record's hash with its committed leaf hash names
//! the first altered record instead of only saying "the root differs".

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::LedgerError;
use super::checkpoint::{Checkpoint, TrustedKeys, check_origin};
use super::merkle::{Hash, Tree, leaf_hash};
use super::proof::{Bundle, verify_consistency};
use super::record::Record;
use crate::{Error, Signer};

const RECORDS: &str = "records";
const LEAVES: &str = "leaves";
const CHECKPOINTS: &str = "checkpoints";
const ORIGIN: &str = "origin";
/// Records per subfolder of `records/`.
const PER_DIR: u64 = 1000;
/// Largest record file read back.
const MAX_RECORD_FILE: u64 = 1 << 22;

fn storage(reason: impl Into<String>) -> Error {
    LedgerError::Storage(reason.into()).into()
}

/// An open ledger folder, ready to append.
#[derive(Debug)]
pub struct Ledger {
    dir: PathBuf,
    origin: String,
    tree: Tree,
    /// Records covered by leaf-hash pieces.
    pieces_end: u64,
    /// Size and note text of the latest checkpoint.
    latest: Option<(u64, String)>,
}

/// What [`Ledger::verify`] checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The log's origin.
    pub origin: String,
    /// Records checked.
    pub records: u64,
    /// Signed checkpoints checked.
    pub checkpoints: u64,
    /// Size of the latest signed checkpoint: records below it are authenticated by a trusted
    /// signature; records at or above it are only checked for form, order and links.
    pub signed_size: u64,
    /// The latest checkpoint, as verified.
    pub latest: Option<Checkpoint>,
}

impl Ledger {
    /// Creates a new, empty ledger in `dir` (created if missing; must be empty).
    pub fn init(dir: &Path, origin: &str) -> Result<Ledger, Error> {
        check_origin(origin)?;
        fs::create_dir_all(dir)?;
        if fs::read_dir(dir)?.next().is_some() {
            return Err(storage(format!("{} is not empty", dir.display())));
        }
        for sub in [RECORDS, LEAVES, CHECKPOINTS] {
            fs::create_dir(dir.join(sub))?;
        }
        write_once(&dir.join(ORIGIN), format!("{origin}\n").as_bytes())?;
        Ledger::open(dir)
    }

    /// Opens an existing ledger, reading every record's hash (but not verifying signatures;
    /// see [`Ledger::verify`]). Fails if a record is missing in the middle.
    pub fn open(dir: &Path) -> Result<Ledger, Error> {
        let origin = read_origin(dir)?;
        let indices = list_records(dir)?;
        if let Some(pos) = indices.iter().enumerate().position(|(i, &x)| i as u64 != x) {
            return Err(storage(format!("record {pos} is missing")));
        }
        let mut tree = Tree::new();
        for i in 0..indices.len() as u64 {
            tree.push(leaf_hash(&read_record_file(dir, i)?));
        }
        let pieces_end = list_pieces(dir)?.last().map_or(0, |p| p.1);
        let latest = match list_checkpoints(dir)?.last() {
            Some(&size) => Some((size, read_text(&checkpoint_path(dir, size))?)),
            None => None,
        };
        Ok(Ledger {
            dir: dir.to_owned(),
            origin,
            tree,
            pieces_end,
            latest,
        })
    }

    /// The log's origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Number of records.
    pub fn len(&self) -> u64 {
        self.tree.len()
    }

    /// Whether the log has no records.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// The Merkle tree over the records' leaf hashes.
    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// The latest checkpoint note, if any.
    pub fn latest_checkpoint(&self) -> Option<&str> {
        self.latest.as_ref().map(|(_, note)| note.as_str())
    }

    /// Appends `record` as the next index (its `sequence` is set here) after checking that
    /// each input link names an existing record by its leaf hash. Returns index and leaf hash.
    pub fn append(&mut self, mut record: Record) -> Result<(u64, Hash), Error> {
        let index = self.tree.len();
        record.sequence = index;
        for link in &record.inputs {
            if self.tree.leaf(link.index) != Some(link.leaf_hash) {
                return Err(LedgerError::InvalidRecord(format!(
                    "input link to record {} does not match its leaf hash",
                    link.index
                ))
                .into());
            }
        }
        let bytes = record.encode()?;
        let path = record_path(&self.dir, index);
        if index.is_multiple_of(PER_DIR) {
            fs::create_dir_all(path.parent().expect("has a parent"))?;
        }
        write_once(&path, &bytes)?;
        let hash = leaf_hash(&bytes);
        self.tree.push(hash);
        Ok((index, hash))
    }

    /// Signs a checkpoint of the whole log as of `time` (Unix seconds) and stores it, after
    /// storing the leaf hashes it newly covers. Returns the note text.
    pub fn checkpoint(&mut self, signer: &dyn Signer, time: u64) -> Result<String, Error> {
        let size = self.tree.len();
        if self.latest.as_ref().is_some_and(|(s, _)| *s == size) {
            return Err(storage(format!(
                "there is already a checkpoint at size {size}"
            )));
        }
        let note = Checkpoint {
            origin: self.origin.clone(),
            size,
            root: self.tree.root(),
            time,
        }
        .sign(signer)?;
        if self.pieces_end < size {
            let mut piece = Vec::with_capacity(((size - self.pieces_end) * 32) as usize);
            for i in self.pieces_end..size {
                piece.extend_from_slice(&self.tree.leaf(i).expect("below size"));
            }
            write_once(&piece_path(&self.dir, self.pieces_end, size), &piece)?;
            self.pieces_end = size;
        }
        write_once(&checkpoint_path(&self.dir, size), note.as_bytes())?;
        self.latest = Some((size, note.clone()));
        Ok(note)
    }

    /// Reads record `index` and its leaf hash.
    pub fn record(&self, index: u64) -> Result<(Record, Hash), Error> {
        if index >= self.len() {
            return Err(storage(format!(
                "no record {index}: the log has {}",
                self.len()
            )));
        }
        let bytes = read_record_file(&self.dir, index)?;
        Ok((Record::decode(&bytes)?, leaf_hash(&bytes)))
    }

    /// An offline bundle for record `index` under the latest checkpoint.
    pub fn prove(&self, index: u64) -> Result<Bundle, Error> {
        let Some((size, note)) = &self.latest else {
            return Err(storage("the log has no checkpoint yet"));
        };
        if index >= *size {
            return Err(storage(format!(
                "record {index} is not covered by the latest checkpoint (size {size})"
            )));
        }
        let (checkpoint, _) = Checkpoint::parse_unverified(note)?;
        if self.tree.root_at(*size) != Some(checkpoint.root) {
            return Err(LedgerError::Verify(format!(
                "the records do not match the checkpoint at size {size}"
            ))
            .into());
        }
        let bytes = read_record_file(&self.dir, index)?;
        let proof = self.tree.inclusion_proof(index, *size)?;
        Ok(Bundle::new(note.clone(), index, &bytes, &proof))
    }

    /// Checks everything in `dir` against `trusted`: every checkpoint's signature, origin and
    /// consistency with the one before; the leaf-hash pieces against the signed roots; every
    /// record's presence, form, position and input links, and its bytes against the signed
    /// leaf hashes. Fails at the first bad record index (or checkpoint).
    pub fn verify(dir: &Path, trusted: &TrustedKeys) -> Result<VerifyReport, Error> {
        let origin = read_origin(dir)?;

        // Leaf hashes, authenticated below by the signed roots.
        let mut signed = Tree::new();
        let mut expected_start = 0;
        for (start, end) in list_pieces(dir)? {
            if start != expected_start {
                return Err(LedgerError::Verify(format!(
                    "leaf-hash pieces are not contiguous at record {expected_start}"
                ))
                .into());
            }
            let bytes = fs::read(piece_path(dir, start, end))?;
            if bytes.len() as u64 != (end - start) * 32 {
                return Err(LedgerError::Verify(format!(
                    "leaf-hash piece {start}-{end} has the wrong length"
                ))
                .into());
            }
            for chunk in bytes.chunks_exact(32) {
                signed.push(chunk.try_into().expect("32 bytes"));
            }
            expected_start = end;
        }

        let mut checkpoints = 0;
        let mut latest: Option<Checkpoint> = None;
        for size in list_checkpoints(dir)? {
            let checkpoint = trusted.verify(&read_text(&checkpoint_path(dir, size))?)?;
            let bad = |reason: String| -> Error {
                LedgerError::Verify(format!("checkpoint at size {size}: {reason}")).into()
            };
            if checkpoint.origin != origin {
                return Err(bad(format!(
                    "origin {:?} is not the log's",
                    checkpoint.origin
                )));
            }
            if checkpoint.size != size {
                return Err(bad(format!("it says size {}", checkpoint.size)));
            }
            if signed.root_at(size) != Some(checkpoint.root) {
                return Err(bad(
                    "the stored leaf hashes do not match its signed root".into()
                ));
            }
            if let Some(previous) = &latest {
                let proof = signed.consistency_proof(previous.size, size)?;
                verify_consistency(
                    previous.size,
                    size,
                    &previous.root,
                    &checkpoint.root,
                    &proof,
                )?;
            }
            checkpoints += 1;
            latest = Some(checkpoint);
        }
        let signed_size = latest.as_ref().map_or(0, |c| c.size);

        let indices = list_records(dir)?;
        let total = indices.last().map_or(0, |&m| m + 1).max(signed_size);
        let mut present = indices.into_iter().peekable();
        let mut leaves: Vec<Hash> = Vec::with_capacity(total as usize);
        for index in 0..total {
            let bad = |reason: String| -> Error { LedgerError::BadRecord { index, reason }.into() };
            if present.next_if_eq(&index).is_none() {
                return Err(bad(if index < signed_size {
                    format!("missing (the checkpoint at size {signed_size} covers it)")
                } else {
                    "missing".into()
                }));
            }
            let bytes = read_record_file(dir, index)?;
            let record = Record::decode(&bytes).map_err(|e| bad(format!("{e}")))?;
            if record.sequence != index {
                return Err(bad(format!(
                    "holds record number {}: moved or reordered",
                    record.sequence
                )));
            }
            let hash = leaf_hash(&bytes);
            if index < signed_size && signed.leaf(index) != Some(hash) {
                return Err(bad(format!(
                    "its bytes differ from those the checkpoint at size {signed_size} commits to"
                )));
            }
            for link in &record.inputs {
                if leaves[link.index as usize] != link.leaf_hash {
                    return Err(bad(format!(
                        "input link to record {} does not match that record's leaf hash",
                        link.index
                    )));
                }
            }
            leaves.push(hash);
        }
        Ok(VerifyReport {
            origin,
            records: total,
            checkpoints,
            signed_size,
            latest,
        })
    }
}

fn record_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(RECORDS)
        .join(format!("{:09}", index / PER_DIR))
        .join(format!("{index:012}.rec"))
}

fn piece_path(dir: &Path, start: u64, end: u64) -> PathBuf {
    dir.join(LEAVES).join(format!("{start:012}-{end:012}.bin"))
}

fn checkpoint_path(dir: &Path, size: u64) -> PathBuf {
    dir.join(CHECKPOINTS).join(format!("{size:012}.note"))
}

/// Creates `path` with `contents`, failing if it exists: a temporary file, then a link.
fn write_once(path: &Path, contents: &[u8]) -> Result<(), Error> {
    let parent = path.parent().expect("ledger paths have a parent");
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(parent)?;
    tmp.write_all(contents)?;
    tmp.persist_noclobber(path).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            storage(format!(
                "{} already exists (ledger pieces are write-once)",
                path.display()
            ))
        } else {
            Error::Io(e.error)
        }
    })?;
    Ok(())
}

fn read_text(path: &Path) -> Result<String, Error> {
    String::from_utf8(fs::read(path)?)
        .map_err(|_| storage(format!("{} is not UTF-8", path.display())))
}

fn read_origin(dir: &Path) -> Result<String, Error> {
    let text = read_text(&dir.join(ORIGIN)).map_err(|e| match e {
        Error::Io(_) => storage(format!(
            "{} is not a ledger (no origin file)",
            dir.display()
        )),
        other => other,
    })?;
    let origin = text
        .strip_suffix('\n')
        .ok_or_else(|| storage("origin file does not end in a newline"))?;
    check_origin(origin)?;
    Ok(origin.to_owned())
}

fn read_record_file(dir: &Path, index: u64) -> Result<Vec<u8>, Error> {
    let path = record_path(dir, index);
    let file = fs::File::open(&path)?;
    if file.metadata()?.len() > MAX_RECORD_FILE {
        return Err(LedgerError::BadRecord {
            index,
            reason: "record file is too large".into(),
        }
        .into());
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut &file, &mut bytes)?;
    Ok(bytes)
}

/// Names in `dir` other than temporary files (`.`-prefixed).
fn names(dir: &Path) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name
            .to_str()
            .ok_or_else(|| storage(format!("a non-UTF-8 name in {}", dir.display())))?;
        if !name.starts_with('.') {
            out.push(name.to_owned());
        }
    }
    Ok(out)
}

fn parse_index(s: &str, digits: usize) -> Option<u64> {
    (s.len() == digits && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Record indices present, sorted; fails on a name that is not a record's.
fn list_records(dir: &Path) -> Result<Vec<u64>, Error> {
    let records = dir.join(RECORDS);
    let mut out = Vec::new();
    for sub in names(&records)? {
        let bucket =
            parse_index(&sub, 9).ok_or_else(|| storage(format!("unexpected {RECORDS}/{sub}")))?;
        for name in names(&records.join(&sub))? {
            let index = name
                .strip_suffix(".rec")
                .and_then(|n| parse_index(n, 12))
                .filter(|i| i / PER_DIR == bucket)
                .ok_or_else(|| storage(format!("unexpected {RECORDS}/{sub}/{name}")))?;
            out.push(index);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Leaf-hash pieces as (start, end), sorted.
fn list_pieces(dir: &Path) -> Result<Vec<(u64, u64)>, Error> {
    let mut out = Vec::new();
    for name in names(&dir.join(LEAVES))? {
        let piece = name
            .strip_suffix(".bin")
            .and_then(|n| n.split_once('-'))
            .and_then(|(a, b)| Some((parse_index(a, 12)?, parse_index(b, 12)?)))
            .filter(|(a, b)| a < b)
            .ok_or_else(|| storage(format!("unexpected {LEAVES}/{name}")))?;
        out.push(piece);
    }
    out.sort_unstable();
    Ok(out)
}

/// Checkpoint sizes, sorted.
fn list_checkpoints(dir: &Path) -> Result<Vec<u64>, Error> {
    let mut out = Vec::new();
    for name in names(&dir.join(CHECKPOINTS))? {
        let size = name
            .strip_suffix(".note")
            .and_then(|n| parse_index(n, 12))
            .ok_or_else(|| storage(format!("unexpected {CHECKPOINTS}/{name}")))?;
        out.push(size);
    }
    out.sort_unstable();
    Ok(out)
}
