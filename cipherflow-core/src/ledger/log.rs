//! The append-only log, stored through the [`ObjectStore`] trait in write-once objects, and
//! its verification.
//!
//! ```text
//! PREFIX/origin                              the log's origin line (written by `init`)
//! PREFIX/segments/000000000000.seg           records [0, n) appended by one `append_all`
//! PREFIX/segments/000000001000.seg           the next run, named by its first index
//! PREFIX/leaves/000000000000-000000010000.bin leaf hashes of records [start, end), 32 bytes each
//! PREFIX/checkpoints/000000010000.note       the signed checkpoint at tree size 10000
//! ```
//!
//! Every object is written with [`PutMode::Create`], so nothing is ever rewritten and the
//! segment named by index `i` can be written once: an appender that loses the race for `i`
//! (another process appended first) reloads the new tail, renumbers its records and tries
//! again at the new end, so concurrent appenders all succeed without losing or duplicating an
//! index. The same layout works on a local folder and on S3 (`If-None-Match: *`). The
//! leaf-hash pieces are written with each checkpoint: once a signed root authenticates them,
//! comparing each record's hash with its committed leaf hash names the first altered record
//! instead of only saying "the root differs".

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use super::LedgerError;
use super::checkpoint::{Checkpoint, TrustedKeys, check_origin};
use super::merkle::{Hash, Tree, leaf_hash};
use super::proof::{Bundle, verify_consistency};
use super::record::Record;
use super::segment::{self, SegmentError};
use crate::store::{ObjectKey, ObjectStore, PutMode, StoreError};
use crate::{Error, Signer};

const SEGMENTS: &str = "segments";
const LEAVES: &str = "leaves";
const CHECKPOINTS: &str = "checkpoints";
const ORIGIN: &str = "origin";
/// How many times an append re-sequences after losing an index range to another appender.
/// Each loss means another append succeeded, so this bounds only pathological contention.
pub const MAX_APPEND_ATTEMPTS: usize = 64;

fn storage(reason: impl Into<String>) -> Error {
    LedgerError::Storage(reason.into()).into()
}

fn bad_record(index: u64, object: Option<&ObjectKey>, reason: impl Into<String>) -> Error {
    LedgerError::BadRecord {
        index,
        object: object.map(ObjectKey::to_string),
        reason: reason.into(),
    }
    .into()
}

fn segment_error(object: &ObjectKey, e: SegmentError) -> Error {
    bad_record(e.index, Some(object), e.reason)
}

/// Where a ledger's objects live: a store and a key prefix (`""` for the store's root).
#[derive(Debug, Clone)]
struct Place {
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

impl Place {
    fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Result<Place, Error> {
        if !prefix.is_empty() {
            ObjectKey::new(prefix)?;
        }
        Ok(Place {
            store,
            prefix: prefix.to_owned(),
        })
    }

    fn key(&self, rest: &str) -> Result<ObjectKey, Error> {
        Ok(if self.prefix.is_empty() {
            ObjectKey::new(rest)?
        } else {
            ObjectKey::new(format!("{}/{rest}", self.prefix))?
        })
    }

    fn segment_key(&self, first: u64) -> Result<ObjectKey, Error> {
        self.key(&format!("{SEGMENTS}/{first:012}.seg"))
    }

    fn piece_key(&self, start: u64, end: u64) -> Result<ObjectKey, Error> {
        self.key(&format!("{LEAVES}/{start:012}-{end:012}.bin"))
    }

    fn checkpoint_key(&self, size: u64) -> Result<ObjectKey, Error> {
        self.key(&format!("{CHECKPOINTS}/{size:012}.note"))
    }

    /// The names (after `dir/`) of the objects under `dir`.
    async fn names(&self, dir: &str) -> Result<Vec<String>, Error> {
        let full = if self.prefix.is_empty() {
            format!("{dir}/")
        } else {
            format!("{}/{dir}/", self.prefix)
        };
        let listed = self.store.list(&full).await?;
        Ok(listed
            .into_iter()
            .map(|meta| meta.key.as_str()[full.len()..].to_owned())
            .collect())
    }

    /// Creates `key`, failing if it exists (every ledger object is written once).
    async fn create(&self, key: &ObjectKey, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.store
            .put(key, Bytes::from(bytes), PutMode::Create)
            .await
            .map(|_| ())
    }

    async fn get(&self, key: &ObjectKey) -> Result<Bytes, Error> {
        Ok(self.store.get(key).await?.0)
    }

    async fn text(&self, key: &ObjectKey) -> Result<String, Error> {
        String::from_utf8(self.get(key).await?.to_vec())
            .map_err(|_| storage(format!("{key} is not UTF-8")))
    }

    async fn origin(&self) -> Result<String, Error> {
        let key = self.key(ORIGIN)?;
        let text = self.text(&key).await.map_err(|e| match e {
            Error::Store(e) if matches!(*e, StoreError::NotFound { .. }) => storage(format!(
                "{} is not a ledger (no {key})",
                self.store.describe()
            )),
            other => other,
        })?;
        let origin = text
            .strip_suffix('\n')
            .ok_or_else(|| storage(format!("{key} does not end in a newline")))?;
        check_origin(origin)?;
        Ok(origin.to_owned())
    }

    /// Segment first indices, sorted; fails on a name that is not a segment's.
    async fn segments(&self) -> Result<Vec<u64>, Error> {
        let mut out = Vec::new();
        for name in self.names(SEGMENTS).await? {
            let first = name
                .strip_suffix(".seg")
                .and_then(|n| parse_index(n, 12))
                .ok_or_else(|| storage(format!("unexpected object {SEGMENTS}/{name}")))?;
            out.push(first);
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Leaf-hash pieces as (start, end), sorted.
    async fn pieces(&self) -> Result<Vec<(u64, u64)>, Error> {
        let mut out = Vec::new();
        for name in self.names(LEAVES).await? {
            let piece = name
                .strip_suffix(".bin")
                .and_then(|n| n.split_once('-'))
                .and_then(|(a, b)| Some((parse_index(a, 12)?, parse_index(b, 12)?)))
                .filter(|(a, b)| a < b)
                .ok_or_else(|| storage(format!("unexpected object {LEAVES}/{name}")))?;
            out.push(piece);
        }
        out.sort_unstable();
        Ok(out)
    }

    /// The leaf hashes the pieces hold for `[0, n)`, as far as they are contiguous from 0.
    /// Overlapping pieces (two checkpoints written at once) are read once each; where they
    /// overlap, the first read wins here and [`Ledger::verify`] checks that they agree.
    async fn committed_leaves(&self) -> Result<Vec<Hash>, Error> {
        let mut leaves: Vec<Hash> = Vec::new();
        for (start, end) in self.pieces().await? {
            let have = leaves.len() as u64;
            if start > have {
                break;
            }
            if end <= have {
                continue;
            }
            let key = self.piece_key(start, end)?;
            let bytes = self.get(&key).await?;
            if bytes.len() as u64 != (end - start) * 32 {
                return Err(storage(format!("{key} has the wrong length")));
            }
            let skip = ((have - start) * 32) as usize;
            leaves.extend(
                bytes[skip..]
                    .chunks_exact(32)
                    .map(|c| Hash::try_from(c).expect("32 bytes")),
            );
        }
        Ok(leaves)
    }

    /// Checkpoint sizes, sorted.
    async fn checkpoints(&self) -> Result<Vec<u64>, Error> {
        let mut out = Vec::new();
        for name in self.names(CHECKPOINTS).await? {
            let size = name
                .strip_suffix(".note")
                .and_then(|n| parse_index(n, 12))
                .ok_or_else(|| storage(format!("unexpected object {CHECKPOINTS}/{name}")))?;
            out.push(size);
        }
        out.sort_unstable();
        Ok(out)
    }
}

fn parse_index(s: &str, digits: usize) -> Option<u64> {
    (s.len() == digits && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// One non-empty segment the handle knows: records `[first, end)`.
#[derive(Debug, Clone, Copy)]
struct Span {
    first: u64,
    end: u64,
}

/// An open ledger, ready to append. Several handles (in one process or many) may append to
/// the same ledger at once; each sees the others' records when it next appends.
#[derive(Debug)]
pub struct Ledger {
    place: Place,
    origin: String,
    tree: Tree,
    /// The non-empty segments, in index order, tiling `[0, tree.len())`.
    spans: Vec<Span>,
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
    /// Creates a new, empty ledger under `prefix` (`""`: the store's root) in `store`; no
    /// object may exist under the prefix yet.
    pub async fn init(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        origin: &str,
    ) -> Result<Ledger, Error> {
        check_origin(origin)?;
        let place = Place::new(store, prefix)?;
        let under = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        if let Some(meta) = place.store.list(&under).await?.first() {
            return Err(storage(format!(
                "{} already holds {} under the ledger's prefix",
                place.store.describe(),
                meta.key
            )));
        }
        let key = place.key(ORIGIN)?;
        place
            .create(&key, format!("{origin}\n").into_bytes())
            .await?;
        Ledger::open(place.store, prefix).await
    }

    /// Opens an existing ledger. The checkpointed prefix comes from the leaf-hash pieces (32
    /// bytes a record, no record read or hashed) and only the segments after it are read
    /// (framing and leaf hashes, not signatures; see [`Ledger::verify`]), so opening costs
    /// one listing, the pieces and the new data. Fails, naming the object, if segments leave
    /// a gap, overlap or are malformed, or if the pieces do not give the latest checkpoint's
    /// root; a segment with no records is ignored.
    pub async fn open(store: Arc<dyn ObjectStore>, prefix: &str) -> Result<Ledger, Error> {
        let place = Place::new(store, prefix)?;
        let origin = place.origin().await?;
        let mut ledger = Ledger {
            place,
            origin,
            tree: Tree::new(),
            spans: Vec::new(),
            pieces_end: 0,
            latest: None,
        };
        let committed = ledger.place.committed_leaves().await?;
        let names = ledger.place.segments().await?;
        // Segments wholly inside the committed prefix: their span ends where the next one
        // starts, and their leaf hashes are the committed ones. The segment reaching the end
        // of the prefix (and everything after it) is read below.
        let mut rest = &names[..];
        while let [first, next, ..] = *rest {
            let end = ledger.tree.len();
            if first != end || next <= first || next > committed.len() as u64 {
                break;
            }
            for &hash in &committed[first as usize..next as usize] {
                ledger.tree.push(hash);
            }
            ledger.spans.push(Span { first, end: next });
            rest = &rest[1..];
        }
        let committed_len = committed.len() as u64;
        drop(committed);
        ledger.read_segments(rest).await?;
        if ledger.tree.len() < committed_len {
            // The names did not tile the committed prefix as appenders write them (an empty
            // segment planted inside another's range, say): read every segment instead.
            ledger.tree = Tree::new();
            ledger.spans.clear();
            ledger.read_segments(&names).await?;
        }
        ledger.reload_checkpoints().await?;
        if let Some((size, note)) = &ledger.latest {
            let (checkpoint, _) = Checkpoint::parse_unverified(note)?;
            if ledger
                .tree
                .root_at(*size)
                .is_some_and(|root| root != checkpoint.root)
            {
                return Err(LedgerError::Verify(format!(
                    "the stored leaf hashes do not give the root of the checkpoint at size {size}"
                ))
                .into());
            }
        }
        Ok(ledger)
    }

    /// Reads the segments named by these first indices (sorted) and hashes their records
    /// onto the tree, which must end where the first non-empty one starts.
    async fn read_segments(&mut self, names: &[u64]) -> Result<(), Error> {
        for &first in names {
            let key = self.place.segment_key(first)?;
            let bytes = self.place.get(&key).await?;
            let (header, frames) =
                segment::frames(&bytes, first).map_err(|e| segment_error(&key, e))?;
            if header.count == 0 {
                continue;
            }
            let end = self.tree.len();
            if first != end {
                return Err(bad_record(
                    first.min(end),
                    Some(&key),
                    if first > end {
                        format!("records {end}..{first} are missing (a gap before this segment)")
                    } else {
                        format!(
                            "segment starts at record {first}, which an earlier segment holds (segments overlap)"
                        )
                    },
                ));
            }
            for frame in frames {
                let (_, record) = frame.map_err(|e| segment_error(&key, e))?;
                self.tree.push(leaf_hash(record));
            }
            self.spans.push(Span {
                first,
                end: header.end(),
            });
        }
        Ok(())
    }

    /// The log's origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Number of records this handle knows (others may have appended since).
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

    /// The size of the latest checkpoint in the store, read again (another appender may have
    /// signed one since); 0 if there is none.
    pub async fn latest_size(&mut self) -> Result<u64, Error> {
        self.reload_checkpoints().await?;
        Ok(self.latest.as_ref().map_or(0, |(size, _)| *size))
    }

    /// Appends `record` as the next index; see [`Ledger::append_all`].
    pub async fn append(&mut self, record: Record) -> Result<(u64, Hash), Error> {
        let mut out = self.append_all(vec![record]).await?;
        Ok(out.pop().expect("one record in, one out"))
    }

    /// Appends `records` as one segment at the end of the log, numbering them (their
    /// `sequence` is set here) and checking that each input link names an existing record by
    /// its leaf hash. If another appender claimed that index first, reloads the new tail and
    /// retries at the new end (at most [`MAX_APPEND_ATTEMPTS`] times). Returns each record's
    /// index and leaf hash, in order. An empty batch writes nothing.
    pub async fn append_all(
        &mut self,
        mut records: Vec<Record>,
    ) -> Result<Vec<(u64, Hash)>, Error> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        if u32::try_from(records.len()).is_err() {
            return Err(LedgerError::InvalidRecord(
                "a batch holds at most 2^32 - 1 records".into(),
            )
            .into());
        }
        for _ in 0..MAX_APPEND_ATTEMPTS {
            let first = self.tree.len();
            let mut builder = segment::Builder::new(first, records.len() * 256);
            let mut hashes: Vec<Hash> = Vec::with_capacity(records.len());
            for (index, record) in (first..).zip(records.iter_mut()) {
                record.sequence = index;
                for link in &record.inputs {
                    let known = if link.index < first {
                        self.tree.leaf(link.index)
                    } else {
                        hashes.get((link.index - first) as usize).copied()
                    };
                    if known != Some(link.leaf_hash) {
                        return Err(LedgerError::InvalidRecord(format!(
                            "record {index}: input link to record {} does not match its leaf hash",
                            link.index
                        ))
                        .into());
                    }
                }
                let bytes = builder.push(|out| record.encode_into(out))?;
                hashes.push(leaf_hash(bytes));
            }
            let key = self.place.segment_key(first)?;
            let body = builder.finish();
            match self.place.create(&key, body).await {
                Ok(()) => {
                    for &hash in &hashes {
                        self.tree.push(hash);
                    }
                    self.spans.push(Span {
                        first,
                        end: self.tree.len(),
                    });
                    return Ok((first..).zip(hashes).collect());
                }
                Err(StoreError::AlreadyExists { .. }) => {
                    if !self.reload_tail().await? {
                        return Err(storage(format!(
                            "{key} exists but holds no records, so record {first} cannot be appended"
                        )));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(storage(format!(
            "gave up appending after {MAX_APPEND_ATTEMPTS} attempts: other appenders kept \
             claiming the next index"
        )))
    }

    /// Reads the segments other appenders added after this handle's end. Returns whether
    /// any record was added.
    async fn reload_tail(&mut self) -> Result<bool, Error> {
        let start = self.tree.len();
        loop {
            let first = self.tree.len();
            let key = self.place.segment_key(first)?;
            let bytes = match self.place.store.get(&key).await {
                Ok((bytes, _)) => bytes,
                Err(StoreError::NotFound { .. }) => break,
                Err(e) => return Err(e.into()),
            };
            let (header, frames) =
                segment::frames(&bytes, first).map_err(|e| segment_error(&key, e))?;
            if header.count == 0 {
                break;
            }
            let mut hashes = Vec::with_capacity(header.count as usize);
            for frame in frames {
                hashes.push(leaf_hash(frame.map_err(|e| segment_error(&key, e))?.1));
            }
            for hash in hashes {
                self.tree.push(hash);
            }
            self.spans.push(Span {
                first,
                end: header.end(),
            });
        }
        Ok(self.tree.len() > start)
    }

    /// Learns the leaf-hash pieces and the latest checkpoint from the store.
    async fn reload_checkpoints(&mut self) -> Result<(), Error> {
        self.pieces_end = self
            .place
            .pieces()
            .await?
            .iter()
            .map(|p| p.1)
            .max()
            .unwrap_or(0);
        self.latest = match self.place.checkpoints().await?.last() {
            Some(&size) => Some((
                size,
                self.place.text(&self.place.checkpoint_key(size)?).await?,
            )),
            None => None,
        };
        Ok(())
    }

    /// Signs a checkpoint of the whole log as stored now (other appenders' records
    /// included) as of `time` (Unix seconds) and stores it, after storing the leaf hashes it
    /// newly covers. Returns the note text.
    pub async fn checkpoint(&mut self, signer: &dyn Signer, time: u64) -> Result<String, Error> {
        self.reload_tail().await?;
        self.reload_checkpoints().await?;
        let size = self.tree.len();
        if self.latest.as_ref().is_some_and(|(s, _)| *s >= size) {
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
            let key = self.place.piece_key(self.pieces_end, size)?;
            self.place.create(&key, piece).await?;
            self.pieces_end = size;
        }
        let key = self.place.checkpoint_key(size)?;
        self.place.create(&key, note.clone().into_bytes()).await?;
        self.latest = Some((size, note.clone()));
        Ok(note)
    }

    /// Reads one known segment object.
    async fn read_span(&self, span: Span) -> Result<(ObjectKey, Bytes), Error> {
        let key = self.place.segment_key(span.first)?;
        let bytes = self.place.get(&key).await?;
        Ok((key, bytes))
    }

    /// Reads records `range` (clamped to the known log) with their leaf hashes, one segment
    /// read per segment touched.
    pub async fn records(&self, range: Range<u64>) -> Result<Vec<(Record, Hash)>, Error> {
        let range = range.start..range.end.min(self.len());
        let mut out = Vec::with_capacity(range.end.saturating_sub(range.start) as usize);
        if range.is_empty() {
            return Ok(out);
        }
        let start = self.spans.partition_point(|s| s.end <= range.start);
        for &span in self.spans[start..]
            .iter()
            .take_while(|s| s.first < range.end)
        {
            let (key, bytes) = self.read_span(span).await?;
            let (header, frames) =
                segment::frames(&bytes, span.first).map_err(|e| segment_error(&key, e))?;
            if header.end() != span.end {
                return Err(bad_record(
                    header.end().min(span.end),
                    Some(&key),
                    format!(
                        "the segment holds records {}..{}, not {}..{} as the ledger's layout says",
                        header.first,
                        header.end(),
                        span.first,
                        span.end
                    ),
                ));
            }
            for frame in frames {
                let (index, bytes) = frame.map_err(|e| segment_error(&key, e))?;
                if !range.contains(&index) {
                    continue;
                }
                let hash = leaf_hash(bytes);
                if self.tree.leaf(index) != Some(hash) {
                    return Err(bad_record(
                        index,
                        Some(&key),
                        "its leaf hash differs from the one this handle holds (committed in \
                         the leaf-hash pieces, or read when the ledger was opened)",
                    ));
                }
                let record = Record::decode(bytes)
                    .map_err(|e| bad_record(index, Some(&key), e.to_string()))?;
                out.push((record, hash));
            }
        }
        Ok(out)
    }

    /// Reads record `index` and its leaf hash.
    pub async fn record(&self, index: u64) -> Result<(Record, Hash), Error> {
        if index >= self.len() {
            return Err(storage(format!(
                "no record {index}: the log has {}",
                self.len()
            )));
        }
        let mut one = self.records(index..index + 1).await?;
        Ok(one.pop().expect("the index is inside the log"))
    }

    /// An offline bundle for record `index` under the latest checkpoint.
    pub async fn prove(&self, index: u64) -> Result<Bundle, Error> {
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
        let (record, _) = self.record(index).await?;
        let proof = self.tree.inclusion_proof(index, *size)?;
        Ok(Bundle::new(note.clone(), index, &record.encode()?, &proof))
    }

    /// Checks everything under `prefix` in `store` against `trusted`: every checkpoint's
    /// signature, origin and consistency with the one before; the leaf-hash pieces against
    /// the signed roots; the segments' framing and tiling; every record's form, position and
    /// input links, and its bytes against the signed leaf hashes. Fails at the first bad
    /// record index (naming its segment object), or checkpoint.
    pub async fn verify(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        trusted: &TrustedKeys,
    ) -> Result<VerifyReport, Error> {
        let place = Place::new(store, prefix)?;
        let origin = place.origin().await?;

        // Leaf hashes, authenticated below by the signed roots.
        // Two appenders that checkpoint at once may each write a piece from the same start:
        // pieces may overlap (sorted by start, then end), and must agree where they do.
        let mut signed = Tree::new();
        for (start, end) in place.pieces().await? {
            let have = signed.len();
            if start > have {
                return Err(LedgerError::Verify(format!(
                    "leaf-hash pieces are not contiguous at record {have}"
                ))
                .into());
            }
            let bytes = place.get(&place.piece_key(start, end)?).await?;
            if end < start || bytes.len() as u64 != (end - start) * 32 {
                return Err(LedgerError::Verify(format!(
                    "leaf-hash piece {start}-{end} has the wrong length"
                ))
                .into());
            }
            for (i, chunk) in (start..).zip(bytes.chunks_exact(32)) {
                let hash: Hash = chunk.try_into().expect("32 bytes");
                if i < have {
                    if signed.leaf(i) != Some(hash) {
                        return Err(LedgerError::Verify(format!(
                            "leaf-hash pieces disagree at record {i}"
                        ))
                        .into());
                    }
                } else {
                    signed.push(hash);
                }
            }
        }

        let mut checkpoints = 0;
        let mut latest: Option<Checkpoint> = None;
        for size in place.checkpoints().await? {
            let checkpoint = trusted.verify(&place.text(&place.checkpoint_key(size)?).await?)?;
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
        let missing = |index: u64| {
            if index < signed_size {
                format!("missing (the checkpoint at size {signed_size} covers it)")
            } else {
                "missing".to_owned()
            }
        };

        // Records below the signed size must equal the signed leaf hashes, so only the
        // unsigned tail's hashes are kept apart (for its input links).
        let mut next: u64 = 0;
        let mut tail: Vec<Hash> = Vec::new();
        for first in place.segments().await? {
            let key = place.segment_key(first)?;
            let bytes = place.get(&key).await?;
            let (header, frames) = segment::frames(&bytes, first).map_err(|e| {
                // A segment whose header is bad cannot claim its range: its records are
                // missing unless earlier segments already hold them.
                if first > next {
                    bad_record(next, Some(&key), missing(next))
                } else {
                    segment_error(&key, e)
                }
            })?;
            if header.count == 0 {
                continue;
            }
            if first > next {
                return Err(bad_record(
                    next,
                    Some(&key),
                    format!(
                        "{} (the next segment starts at record {first})",
                        missing(next)
                    ),
                ));
            }
            if first < next {
                return Err(bad_record(
                    first,
                    Some(&key),
                    format!(
                        "held by an earlier segment too (segments overlap up to record {next})"
                    ),
                ));
            }
            for frame in frames {
                let (index, bytes) = frame.map_err(|e| segment_error(&key, e))?;
                let bad = |reason: String| bad_record(index, Some(&key), reason);
                let record = Record::decode(bytes).map_err(|e| bad(format!("{e}")))?;
                if record.sequence != index {
                    return Err(bad(format!(
                        "holds record number {}: moved or reordered",
                        record.sequence
                    )));
                }
                let hash = leaf_hash(bytes);
                if index < signed_size && signed.leaf(index) != Some(hash) {
                    return Err(bad(format!(
                        "its bytes differ from those the checkpoint at size {signed_size} commits to"
                    )));
                }
                for link in &record.inputs {
                    let linked = if link.index < signed_size {
                        signed.leaf(link.index)
                    } else {
                        tail.get((link.index - signed_size) as usize).copied()
                    };
                    if linked != Some(link.leaf_hash) {
                        return Err(bad(format!(
                            "input link to record {} does not match that record's leaf hash",
                            link.index
                        )));
                    }
                }
                if index >= signed_size {
                    tail.push(hash);
                }
                next = index + 1;
            }
        }
        let records = next;
        if records < signed_size {
            return Err(bad_record(records, None, missing(records)));
        }
        Ok(VerifyReport {
            origin,
            records,
            checkpoints,
            signed_size,
            latest,
        })
    }
}
