//! One pipeline step, and the consumer's pull: the path from landed CDC files to sealed,
//! signed, ledgered snapshot pieces that outside parties open.
//!
//! A step ([`Pipeline::run_once`]):
//! 1. reads the current [`Pointer`] from the share store (remembering its version) and the
//!    pipeline's own copy of the [`Manifest`] it names, from the state store;
//! 2. lists the landing prefix and reads the objects not yet applied (by key and SHA-256);
//!    any bad record refuses the step, naming object, line and column, and nothing is written;
//! 3. splits their changes by key partition and writes each partition's changes as one
//!    delta run (merge-on-read: the table is never read), sealed for every recipient and
//!    signed into the share store, and sealed for the pipeline's own key into the state store;
//!    a partition with too many runs is compacted from the state copies into a new base;
//! 4. appends ledger records: each landed object, the batch applied, each object written;
//! 5. writes the new manifest (both copies), then swaps the pointer with compare-and-swap.
//!
//! Every object but the pointer is written once under a name derived from its plaintext
//! (`runs/<partition>/<sha256>.cfe`), so a step that crashed and is run again writes the same
//! names and publishes the same manifest; a reader following the pointer only ever finds
//! complete objects. Two steps racing both write, one wins the swap, the other re-reads and
//! retries: no batch is lost. The layout is specified in `docs/PIPELINE.md`.

mod config;
mod error;
mod gc;
mod landing;
mod manifest;
mod pull;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

pub use config::{
    FormatName, PipelineConfig, ResolvedSigner, Resolver, load_private_key, load_public_key,
    local_principal,
};
pub use error::PipelineError;
pub use gc::GcReport;
pub use landing::{LandingSink, landing_name};
pub use manifest::{
    Applied, Base, MANIFEST_FORMAT, Manifest, POINTER_FORMAT, Partition, Pointer, RunRef,
};
pub use pull::{Consumer, PullReport, published_tables};

use crate::cdc::{
    Cell, Change, ChangeBatch, DebeziumOptions, DmsOptions, Op, TableSchema, read_debezium,
    read_dms,
};
use crate::ledger::{Actor, Kind, Ledger, Link, ObjectRef, Record};
use crate::merge::{MergeState, decode_run, encode_run, partition_of};
use crate::records::{Format, ReadOptions, RecordSchema, read_records};
use crate::store::{Bytes, ObjectKey, ObjectMeta, ObjectStore, PutMode, StoreError, Version};
use crate::{Error, KeyUnwrapper, KeyWrapper, Opener, Sealer, Signer, Verifier};

/// How many times a step re-reads and retries after another run published first.
pub const MAX_ATTEMPTS: u32 = 16;

/// A store and a key prefix inside it (`""`, or ending in `/`).
#[derive(Clone, Debug)]
pub struct Location {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// Prepended to every key.
    pub prefix: String,
}

impl Location {
    /// `store` under `prefix` (a `/` is appended if missing).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Location {
        let mut prefix = prefix.trim_start_matches('/').to_owned();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Location { store, prefix }
    }

    /// The full key of `rel`.
    pub fn key(&self, rel: &str) -> Result<ObjectKey, StoreError> {
        ObjectKey::new(format!("{}{rel}", self.prefix))
    }

    async fn get(&self, rel: &str) -> Result<(Bytes, Version), Error> {
        let (bytes, meta) = self.store.get(&self.key(rel)?).await?;
        Ok((bytes, meta.version))
    }

    /// Writes `bytes` at `rel` unless an object is there already (written by an earlier,
    /// interrupted attempt of the same step: its plaintext is the same by construction).
    /// Returns the stored bytes' reference for the ledger.
    async fn put_once(&self, rel: &str, bytes: Vec<u8>) -> Result<ObjectRef, Error> {
        let key = self.key(rel)?;
        let bytes = Bytes::from(bytes);
        match self.store.put(&key, bytes.clone(), PutMode::Create).await {
            Ok(meta) => Ok(self.object_ref(&key, &bytes, &meta.version)),
            Err(StoreError::AlreadyExists { .. }) => {
                let (stored, meta) = self.store.get(&key).await?;
                Ok(self.object_ref(&key, &stored, &meta.version))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// How the ledger names an object of this location: (store kind, bucket or folder, key).
    fn object_ref(&self, key: &ObjectKey, bytes: &[u8], version: &Version) -> ObjectRef {
        let name = self.store.name();
        let mut object = ObjectRef::of_bytes(&name.kind, &name.bucket, &name.full_key(key), bytes);
        object.version_id = Some(version.0.clone());
        object
    }
}

/// The table a pipeline maintains.
#[derive(Clone, Debug)]
pub struct Table {
    /// Its name (a single object-key segment).
    pub name: String,
    /// Columns, key and null.
    pub schema: TableSchema,
    /// The key as `name:type,...`, as written in manifests.
    pub key: String,
    /// Number of key partitions (fixed when the table is first published).
    pub partitions: u32,
}

/// Where a pipeline reads and writes.
#[derive(Clone, Debug)]
pub struct Stores {
    /// Landed CDC files (read only).
    pub landing: Location,
    /// The pipeline's private state: runs, bases and manifests sealed for its own key.
    pub state: Location,
    /// What consumers read: the same, sealed for them, and the pointer.
    pub share: Location,
    /// The provenance ledger.
    pub ledger: Location,
}

/// The keys a pipeline holds: public keys of its consumers, its own state key pair, and
/// optionally a signing key. Never a consumer's private key.
#[derive(Clone)]
pub struct Keys {
    /// Who the share is for.
    pub recipients: Vec<Arc<dyn KeyWrapper>>,
    /// Seals the private state.
    pub state_seal: Arc<dyn KeyWrapper>,
    /// Opens the private state (for compaction and for reading its own manifest).
    pub state_open: Arc<dyn KeyUnwrapper>,
    /// Signs every object written; consumers may require it.
    pub signer: Option<Arc<dyn Signer>>,
    /// Verifies the state's signatures (the signer's public key), when there is a signer.
    pub state_verifier: Option<Arc<dyn Verifier>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field(
                "recipients",
                &self
                    .recipients
                    .iter()
                    .map(|r| r.key_id())
                    .collect::<Vec<_>>(),
            )
            .field("state", &self.state_seal.key_id())
            .field("signer", &self.signer.as_ref().map(|s| s.key_id()))
            .finish()
    }
}

/// A configured pipeline for one table.
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// The table.
    pub table: Table,
    /// Its stores.
    pub stores: Stores,
    /// Its keys.
    pub keys: Keys,
    /// What the landed files are, and how they are read.
    pub input: InputFormat,
    /// A partition with more runs than this is compacted into a new base.
    pub compact_after: usize,
    /// Who the ledger says did it.
    pub actor: Actor,
}

/// The format of the landed change files.
#[derive(Clone, Debug)]
pub enum InputFormat {
    /// AWS DMS CSV (full-load and CDC files; plain or gzip).
    Dms(DmsOptions),
    /// Debezium JSON change events, one per line (plain or gzip).
    Debezium(DebeziumOptions),
    /// Records validated against this schema, read by the object name's extension (`.json`,
    /// `.jsonl`/`.ndjson`, `.csv`); each an upsert ordered by the schema's version field
    /// ([`Records::to_batch`](crate::records::Records::to_batch)). A bad record refuses the
    /// step, like a bad DMS row.
    Records(Arc<RecordSchema>),
}

impl InputFormat {
    fn read(&self, object: &str, bytes: &[u8], schema: &TableSchema) -> Result<ChangeBatch, Error> {
        Ok(match self {
            InputFormat::Dms(options) => read_dms(object, bytes, schema, options)?,
            InputFormat::Debezium(options) => read_debezium(object, bytes, schema, options)?,
            InputFormat::Records(records) => {
                let format = Format::from_name(object).ok_or_else(|| PipelineError::Input {
                    object: object.into(),
                    reason: "a records input's name must end in .json, .jsonl, .ndjson or .csv"
                        .into(),
                })?;
                read_records(object, bytes, format, records, &ReadOptions::default())?
                    .to_batch(records)
            }
        })
    }
}

/// What a step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepReport {
    /// The generation published (unchanged if there was nothing new).
    pub generation: u64,
    /// Landed objects applied by this step.
    pub applied: Vec<String>,
    /// Landed objects skipped because they were applied before.
    pub skipped: usize,
    /// Changes applied.
    pub changes: u64,
    /// Partitions that got a new run, in order.
    pub partitions_touched: Vec<u32>,
    /// Partitions compacted.
    pub compacted: Vec<u32>,
    /// Plaintext bytes sealed (runs, bases, manifest; once per copy).
    pub bytes_sealed: u64,
    /// Ledger records appended.
    pub ledger_records: u64,
    /// Attempts (more than 1 when a concurrent run published first).
    pub attempts: u32,
    /// Wall time of the step in milliseconds.
    pub millis: u64,
}

/// What a step does: apply newly landed files, or compact one partition.
#[derive(Clone, Copy)]
enum Step {
    Land,
    Compact(u32),
}

/// A sealed object of a step, before it is written.
struct Piece {
    rel: String,
    kind: &'static str,
    partition: Option<u32>,
    plaintext: Vec<u8>,
}

impl Pipeline {
    /// Object key of the pointer, relative to the share location.
    fn pointer_rel(&self) -> String {
        format!("{}/_latest", self.table.name)
    }

    /// Runs one step (see the module documentation), retrying when a concurrent run
    /// published first. Nothing new under the landing prefix is not an error: the report
    /// says so and nothing is written.
    pub async fn run_once(&self) -> Result<StepReport, Error> {
        self.retrying(Step::Land).await
    }

    /// Compacts partition `p` now, whatever its run count: its base and runs merge into a new
    /// base, and a manifest naming it is published (the table's contents do not change). The
    /// per-partition entry point of a fan-out, one invocation per partition. A partition with
    /// no runs is left as it is and nothing is written, so a repeated request is harmless;
    /// like [`Pipeline::run_once`] it re-reads and retries when another step publishes first.
    pub async fn compact_partition(&self, p: u32) -> Result<StepReport, Error> {
        if p >= self.table.partitions {
            return Err(PipelineError::NoPartition {
                table: self.table.name.clone(),
                partition: p,
                last: self.table.partitions - 1,
            }
            .into());
        }
        self.retrying(Step::Compact(p)).await
    }

    async fn retrying(&self, step: Step) -> Result<StepReport, Error> {
        let started = Instant::now();
        for attempt in 1..=MAX_ATTEMPTS {
            let result = match step {
                Step::Land => self.attempt().await,
                Step::Compact(p) => self.compact_attempt(p).await,
            };
            match result {
                Ok(mut report) => {
                    report.attempts = attempt;
                    report.millis = started.elapsed().as_millis() as u64;
                    return Ok(report);
                }
                Err(Error::Store(e))
                    if matches!(
                        *e,
                        StoreError::Precondition { .. } | StoreError::AlreadyExists { .. }
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        Err(PipelineError::Contended {
            attempts: MAX_ATTEMPTS,
        }
        .into())
    }

    /// The current manifest (the pipeline's own copy) and the pointer's version.
    async fn current(&self) -> Result<(Manifest, Option<Version>), Error> {
        let pointer_rel = self.pointer_rel();
        let (bytes, version) = match self.stores.share.get(&pointer_rel).await {
            Ok(found) => found,
            Err(Error::Store(e)) if matches!(*e, StoreError::NotFound { .. }) => {
                let t = &self.table;
                return Ok((
                    Manifest::empty(&t.name, &t.schema, &t.key, t.partitions),
                    None,
                ));
            }
            Err(e) => return Err(e),
        };
        let pointer = Pointer::decode(&pointer_rel, &bytes)?;
        let rel = manifest_rel(&self.table.name, pointer.generation, &pointer.manifest);
        let (sealed, _) = self.stores.state.get(&rel).await?;
        let plaintext = self.open_state(&sealed)?;
        let manifest = Manifest::decode(&rel, &plaintext, &pointer.manifest)?;
        if manifest.generation != pointer.generation
            || manifest.table != self.table.name
            || manifest.partitions.len() != self.table.partitions as usize
            || !manifest.columns.starts_with(self.table.schema.columns())
            || manifest.key != self.table.key
        {
            return Err(PipelineError::Manifest {
                object: rel,
                reason: "does not match the pointer's generation or this pipeline's table".into(),
            }
            .into());
        }
        Ok((manifest, Some(version)))
    }

    /// The table as `manifest` has it: the configured columns, then any that change files
    /// added mid-stream (`docs/MERGE.md` §2.5).
    fn schema_of(&self, manifest: &Manifest) -> TableSchema {
        let configured = self.table.schema.columns().len();
        self.table
            .schema
            .clone()
            .with_added_columns(&manifest.columns[configured..])
    }

    fn open_state(&self, sealed: &[u8]) -> Result<Vec<u8>, Error> {
        let mut opener = Opener::new(&*self.keys.state_open);
        if let Some(verifier) = &self.keys.state_verifier {
            opener = opener.require_signer(&**verifier);
        }
        opener.open_bytes(sealed)
    }

    async fn attempt(&self) -> Result<StepReport, Error> {
        let table = &self.table;
        let (mut manifest, pointer_version) = self.current().await?;
        let mut report = StepReport {
            generation: manifest.generation,
            ..StepReport::default()
        };

        // 2. New landed objects, read and validated whole before anything is written.
        let listing = self
            .stores
            .landing
            .store
            .list(&self.stores.landing.prefix)
            .await?;
        let mut index = LandingIndex::load(&self.stores.state, &table.name).await;
        // A file may add columns; the files read after it are read against the wider table.
        let mut schema = self.schema_of(&manifest);
        let mut batches = Vec::new();
        let mut landed = Vec::new();
        let mut applied = Vec::new();
        for meta in listing {
            if let Some(sha) = index.known(&meta)
                && manifest.is_applied(meta.key.as_str(), sha)
            {
                report.skipped += 1;
                continue;
            }
            let (bytes, meta) = self.stores.landing.store.get(&meta.key).await?;
            let sha = hex::encode(Sha256::digest(&bytes));
            index.insert(&meta, &sha);
            if manifest.is_applied(meta.key.as_str(), &sha) {
                report.skipped += 1;
                continue;
            }
            let batch = self.input.read(meta.key.as_str(), &bytes, &schema)?;
            schema = schema.with_added_columns(&batch.added_columns);
            landed.push(
                self.stores
                    .landing
                    .object_ref(&meta.key, &bytes, &meta.version),
            );
            applied.push(Applied {
                object: meta.key.to_string(),
                sha256: sha,
                size: meta.size,
            });
            report.applied.push(meta.key.to_string());
            batches.push(batch);
        }
        if batches.is_empty() {
            index.save(&self.stores.state, &table.name).await;
            return Ok(report);
        }
        manifest.applied.extend(applied);
        manifest.applied.sort();
        manifest.columns = schema.columns().to_vec();
        let width = manifest.columns.len();

        // 3. One delta run per touched partition; compaction where runs piled up.
        let mut by_partition: BTreeMap<u32, Vec<Change>> = BTreeMap::new();
        for batch in batches {
            report.changes += batch.changes.len() as u64;
            for mut change in batch.changes {
                // A file read before another added columns keeps them (§2.5).
                if change.op != Op::Delete {
                    change.cells.resize(width, Cell::Keep);
                }
                by_partition
                    .entry(partition_of(&change.key, table.partitions))
                    .or_default()
                    .push(change);
            }
        }
        let mut pieces = Vec::new();
        for (p, changes) in &by_partition {
            let run = encode_run(&schema, changes);
            let id = hex::encode(Sha256::digest(&run));
            let partition = &mut manifest.partitions[*p as usize];
            let seq = partition
                .runs
                .last()
                .map(|r| r.seq)
                .or(partition.base.as_ref().map(|b| b.through))
                .unwrap_or(0)
                + 1;
            partition.runs.push(RunRef {
                seq,
                id: id.clone(),
                size: run.len() as u64,
            });
            report.partitions_touched.push(*p);
            pieces.push(Piece {
                rel: run_rel(&table.name, p, &id),
                kind: "run",
                partition: Some(*p),
                plaintext: run,
            });
        }
        for p in report.partitions_touched.clone() {
            if manifest.partitions[p as usize].runs.len() > self.compact_after {
                self.compact_into(&mut manifest, p, &mut pieces, &mut report)
                    .await?;
            }
        }
        self.publish(manifest, pieces, landed, pointer_version, &mut report)
            .await?;
        index.save(&self.stores.state, &table.name).await;
        Ok(report)
    }

    /// One attempt of [`Pipeline::compact_partition`].
    async fn compact_attempt(&self, p: u32) -> Result<StepReport, Error> {
        let (mut manifest, pointer_version) = self.current().await?;
        let mut report = StepReport {
            generation: manifest.generation,
            ..StepReport::default()
        };
        if manifest.partitions[p as usize].runs.is_empty() {
            return Ok(report);
        }
        let mut pieces = Vec::new();
        self.compact_into(&mut manifest, p, &mut pieces, &mut report)
            .await?;
        self.publish(manifest, pieces, Vec::new(), pointer_version, &mut report)
            .await?;
        Ok(report)
    }

    /// Compacts partition `p` of `manifest` into a new base piece, replacing this step's own
    /// run of it (if any) in `pieces`.
    async fn compact_into(
        &self,
        manifest: &mut Manifest,
        p: u32,
        pieces: &mut Vec<Piece>,
        report: &mut StepReport,
    ) -> Result<(), Error> {
        let piece = self.compact(manifest, p, pieces).await?;
        let partition = &mut manifest.partitions[p as usize];
        let through = partition.runs.last().map(|r| r.seq).unwrap_or(0);
        partition.base = Some(Base {
            id: hex::encode(Sha256::digest(&piece.plaintext)),
            through,
            size: piece.plaintext.len() as u64,
        });
        partition.runs.clear();
        report.compacted.push(p);
        // This step's own run of the partition is in the base: never written.
        pieces.retain(|other| !(other.kind == "run" && other.partition == Some(p)));
        pieces.push(piece);
        Ok(())
    }

    /// Seals and writes `pieces` and the next generation's manifest, records them in the
    /// ledger, and swaps the pointer (compare-and-swap from `pointer_version`).
    async fn publish(
        &self,
        mut manifest: Manifest,
        mut pieces: Vec<Piece>,
        landed: Vec<ObjectRef>,
        pointer_version: Option<Version>,
        report: &mut StepReport,
    ) -> Result<(), Error> {
        let table = &self.table;
        manifest.generation += 1;
        report.generation = manifest.generation;
        let (manifest_bytes, manifest_hash) = manifest.encode();
        pieces.push(Piece {
            rel: manifest_rel(&table.name, manifest.generation, &manifest_hash),
            kind: "manifest",
            partition: None,
            plaintext: manifest_bytes,
        });

        // Write every piece twice: sealed for the consumers, and for the pipeline itself.
        let mut written = Vec::new();
        for piece in &pieces {
            let share = self.seal(piece, &self.keys.recipients)?;
            let state = self.seal(piece, std::slice::from_ref(&self.keys.state_seal))?;
            report.bytes_sealed += 2 * piece.plaintext.len() as u64;
            written.push(self.stores.share.put_once(&piece.rel, share).await?);
            written.push(self.stores.state.put_once(&piece.rel, state).await?);
        }

        // 4. The ledger, before the swap: whatever a reader can reach has its records.
        report.ledger_records = self.record(landed, written).await?;

        // 5. Publish.
        let pointer = Pointer {
            format: POINTER_FORMAT.into(),
            generation: manifest.generation,
            manifest: manifest_hash,
        };
        let mode = match pointer_version {
            Some(version) => PutMode::Update(version),
            None => PutMode::Create,
        };
        let key = self.stores.share.key(&self.pointer_rel())?;
        self.stores
            .share
            .store
            .put(&key, pointer.encode().into(), mode)
            .await?;
        Ok(())
    }

    /// Merges partition `p`'s base and runs (read back from the state store, or from this
    /// step's own pieces) into a new base.
    async fn compact(&self, manifest: &Manifest, p: u32, pieces: &[Piece]) -> Result<Piece, Error> {
        let table = &self.table;
        let partition = &manifest.partitions[p as usize];
        let schema = self.schema_of(manifest);
        let mut state = MergeState::new(schema.clone());
        let mut parts: Vec<(String, String)> = Vec::new();
        if let Some(base) = &partition.base {
            parts.push((base_rel(&table.name, p, &base.id), base.id.clone()));
        }
        for run in &partition.runs {
            parts.push((run_rel(&table.name, p, &run.id), run.id.clone()));
        }
        for (rel, id) in parts {
            let plaintext = match pieces.iter().find(|piece| piece.rel == rel) {
                Some(piece) => piece.plaintext.clone(),
                None => {
                    let (sealed, _) = self.stores.state.get(&rel).await?;
                    self.open_state(&sealed)?
                }
            };
            check_hash(&rel, &plaintext, &id)?;
            for change in decode_run(&rel, &schema, &plaintext)? {
                state.apply_change(&change);
            }
        }
        let base = encode_run(&schema, &state.to_changes());
        let id = hex::encode(Sha256::digest(&base));
        Ok(Piece {
            rel: base_rel(&table.name, p, &id),
            kind: "base",
            partition: Some(p),
            plaintext: base,
        })
    }

    fn seal(&self, piece: &Piece, recipients: &[Arc<dyn KeyWrapper>]) -> Result<Vec<u8>, Error> {
        let recipients: Vec<&dyn KeyWrapper> = recipients.iter().map(|r| &**r).collect();
        let mut sealer = Sealer::new(&recipients)
            .metadata("cipherflow.table", &self.table.name)
            .metadata("cipherflow.kind", piece.kind);
        if let Some(p) = piece.partition {
            sealer = sealer.metadata("cipherflow.partition", p.to_string());
        }
        if let Some(signer) = &self.keys.signer {
            sealer = sealer.signer(&**signer);
        }
        sealer.seal_bytes(&piece.plaintext)
    }

    /// Appends the step's records: each landed object, one batch-applied record linking
    /// them, and one record per object written linking the batch.
    async fn record(&self, landed: Vec<ObjectRef>, written: Vec<ObjectRef>) -> Result<u64, Error> {
        let mut ledger = self.open_ledger().await?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let step = format!("pipeline run {}", self.table.name);
        let record = |kind, object, inputs| Record {
            sequence: 0,
            kind,
            time_ms: now,
            object,
            actor: self.actor.clone(),
            step: step.clone(),
            tool_version: concat!("cipherflow ", env!("CARGO_PKG_VERSION")).into(),
            inputs,
        };
        let count = (landed.len() + 1 + written.len()) as u64;
        let landed_links = links(
            ledger
                .append_all(
                    landed
                        .iter()
                        .cloned()
                        .map(|o| record(Kind::Landed, o, vec![]))
                        .collect(),
                )
                .await?,
        );
        let manifest = written.last().cloned().expect("a step writes its manifest");
        let applied = links(
            ledger
                .append_all(vec![record(Kind::BatchApplied, manifest, landed_links)])
                .await?,
        );
        ledger
            .append_all(
                written
                    .into_iter()
                    .map(|o| record(Kind::SnapshotSealed, o, applied.clone()))
                    .collect(),
            )
            .await?;
        if let Some(signer) = &self.keys.signer {
            match ledger.checkpoint(&**signer, now / 1000).await {
                Ok(_) => {}
                // A concurrent run signed a checkpoint at this size or later first: it covers
                // these records.
                Err(_) if ledger.latest_size().await? >= ledger.len() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(count)
    }

    /// Opens the ledger, creating it (origin `cipherflow/TABLE`) on first use.
    async fn open_ledger(&self) -> Result<Ledger, Error> {
        let location = &self.stores.ledger;
        let prefix = location.prefix.trim_end_matches('/');
        let origin_key = location.key("origin")?;
        if let Err(StoreError::NotFound { .. }) = location.store.head(&origin_key).await {
            let origin = format!("cipherflow/{}", self.table.name);
            match Ledger::init(location.store.clone(), prefix, &origin).await {
                Ok(ledger) => return Ok(ledger),
                // Another run created it first.
                Err(_) if location.store.head(&origin_key).await.is_ok() => {}
                Err(e) => return Err(e),
            }
        }
        Ledger::open(location.store.clone(), prefix).await
    }
}

/// A cache, in the state store, of the SHA-256 of each landed object at the version it was
/// read, so a step reads only objects it has not seen: its cost follows the new batch, not
/// the landing prefix's history. Outside the manifest (store versions differ between stores
/// and between a crashed run and its rerun; the manifest must not). Losing it only costs
/// re-reading: it is saved on a best-effort basis and a bad one is ignored.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct LandingIndex {
    /// Object key → (version, hex SHA-256).
    objects: BTreeMap<String, (String, String)>,
    #[serde(skip)]
    changed: bool,
}

impl LandingIndex {
    fn rel(table: &str) -> String {
        format!("{table}/landing-index.json")
    }

    async fn load(state: &Location, table: &str) -> LandingIndex {
        match state.get(&LandingIndex::rel(table)).await {
            Ok((bytes, _)) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(_) => LandingIndex::default(),
        }
    }

    fn known(&self, meta: &ObjectMeta) -> Option<&str> {
        match self.objects.get(meta.key.as_str()) {
            Some((version, sha)) if *version == meta.version.0 => Some(sha),
            _ => None,
        }
    }

    fn insert(&mut self, meta: &ObjectMeta, sha: &str) {
        self.objects.insert(
            meta.key.to_string(),
            (meta.version.0.clone(), sha.to_owned()),
        );
        self.changed = true;
    }

    async fn save(&self, state: &Location, table: &str) {
        if !self.changed {
            return;
        }
        let bytes = serde_json::to_vec(self).expect("serialises");
        if let Ok(key) = state.key(&LandingIndex::rel(table)) {
            // Best effort (see the type's documentation).
            let _ = state
                .store
                .put(&key, bytes.into(), PutMode::Overwrite)
                .await;
        }
    }
}

fn links(appended: Vec<(u64, crate::ledger::Hash)>) -> Vec<Link> {
    appended
        .into_iter()
        .map(|(index, leaf_hash)| Link { index, leaf_hash })
        .collect()
}

/// The manifest of `generation` with plaintext hash `hash`, relative to a location.
fn manifest_rel(table: &str, generation: u64, hash: &str) -> String {
    format!("{table}/manifests/{generation:012}-{hash}.cfe")
}

/// Delta run `id` (its plaintext's hex SHA-256) of partition `p`, relative to a location.
fn run_rel(table: &str, p: impl std::fmt::Display, id: &str) -> String {
    format!("{table}/runs/{p}/{id}.cfe")
}

/// Compacted base `id` of partition `p`, relative to a location.
fn base_rel(table: &str, p: impl std::fmt::Display, id: &str) -> String {
    format!("{table}/base/{p}/{id}.cfe")
}

/// Checks that `plaintext` hashes to `expected` (hex), as the manifest promised.
fn check_hash(object: &str, plaintext: &[u8], expected: &str) -> Result<(), Error> {
    let found = hex::encode(Sha256::digest(plaintext));
    if found != expected {
        return Err(PipelineError::Mismatch {
            object: object.into(),
            expected: expected.into(),
            found,
        }
        .into());
    }
    Ok(())
}
