//! Ingestion: one object (an uploaded file, an HTTP body) validated and written to a
//! [`RecordSink`], its rejects stored, and the object recorded in the ledger. The command
//! line, the Lambda handlers and the benchmarks all go through [`Ingest::object`], so they
//! refuse, reject and record alike (`docs/RECORDS.md`, section "Ingestion").

use std::sync::Arc;

use async_trait::async_trait;

use super::RecordsError;
use super::read::{Format, ReadOptions, Record, Records, read_records, write_rejects};
use super::schema::RecordSchema;
use crate::ledger::{Actor, Kind, Ledger, ObjectRef, Record as LedgerRecord};
use crate::store::{ObjectKey, ObjectStore, PutMode};

/// Where validated records go: a DynamoDB table, a pipeline's landing store.
///
/// A sink writes idempotently: a record whose item already holds the same or a newer
/// `version` (or, without a version field, the same values) is skipped, so writing a file
/// twice writes nothing the second time.
#[async_trait]
pub trait RecordSink: Send + Sync {
    /// Where the sink writes, for messages (`dynamodb://table`, `local:/path`).
    fn describe(&self) -> String;

    /// Writes `records` (validated against `schema`, unique by key) of `object`.
    async fn write(
        &self,
        object: &str,
        schema: &RecordSchema,
        records: &[Record],
    ) -> Result<SinkReport, SinkError>;
}

/// What a sink did with one call's records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkReport {
    /// [`Record::index`] of each record written, in input order.
    pub written: Vec<u64>,
    /// Records not written because their item already held the same or a newer version.
    pub skipped: u64,
}

/// A sink failed. Sinks are idempotent, so the caller may run the whole object again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{sink}: {reason}")]
pub struct SinkError {
    /// [`RecordSink::describe`].
    pub sink: String,
    /// What went wrong, naming the records concerned where there are some.
    pub reason: String,
}

/// Why an object was not ingested.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// The object was refused (or too large): nothing was written.
    #[error(transparent)]
    Records(#[from] RecordsError),
    /// The sink failed part way; what it wrote stays (it is idempotent: run the object again).
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The reject object or the ledger record could not be written.
    #[error(transparent)]
    Store(#[from] crate::Error),
}

/// Where refused records go in reject mode: one JSON-lines object per input object,
/// `PREFIX<object>.rejects.jsonl` (see [`write_rejects`]).
#[derive(Debug, Clone)]
pub struct RejectTarget {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// Prepended to the object's name; empty or ending in `/`.
    pub prefix: String,
}

/// What [`Ingest::object`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Records read (valid and rejected).
    pub read: u64,
    /// Records written by the sink ([`SinkReport::written`]).
    pub written: Vec<u64>,
    /// Records skipped as not newer.
    pub skipped: u64,
    /// Records rejected (reject mode).
    pub rejected: u64,
    /// The reject object written, if any.
    pub reject_object: Option<String>,
    /// The ledger index of the object's `landed` record, if a ledger is kept.
    pub ledger_index: Option<u64>,
}

/// The ingestion of objects under one schema into one sink.
pub struct Ingest<'a> {
    /// The schema every record is validated against.
    pub schema: &'a RecordSchema,
    /// Where valid records go.
    pub sink: &'a dyn RecordSink,
    /// Reject mode when set: bad records go here and the rest is written. Unset, an object
    /// with any bad record is refused whole.
    pub rejects: Option<RejectTarget>,
    /// The size limit ([`ReadOptions::max_bytes`]).
    pub max_bytes: Option<u64>,
    /// The ledger that records each ingested object, if one is kept.
    pub ledger: Option<IngestLedger<'a>>,
}

/// The ledger an [`Ingest`] records objects in, and how its records name them.
pub struct IngestLedger<'a> {
    /// The ledger.
    pub ledger: &'a mut Ledger,
    /// Where the objects came from ([`ObjectRef::store`], [`ObjectRef::bucket`]).
    pub store: String,
    /// The bucket, or `""`.
    pub bucket: String,
    /// Who ingests.
    pub actor: Actor,
    /// The step that ingests (`cipherflow ingest`, `lambda records`).
    pub step: String,
}

/// An object [`Ingest::read`] validated, ready for [`Ingest::write`]. Only `read` makes one,
/// so what `write` stores has been validated.
#[derive(Debug, Clone)]
pub struct Validated {
    records: Records,
    size: u64,
}

impl Validated {
    /// The object's records (and, in reject mode, its rejects).
    pub fn records(&self) -> &Records {
        &self.records
    }

    /// The object's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Ingest<'_> {
    /// Validates `bytes` (the whole object `object`, in `format`), writes the rejects (reject
    /// mode), writes the valid records to the sink, then appends a `landed` record for the
    /// object to the ledger. A refused object writes nothing anywhere. This is
    /// [`Ingest::read`] then [`Ingest::write`].
    pub async fn object(
        &mut self,
        object: &str,
        bytes: &[u8],
        format: Format,
    ) -> Result<IngestReport, IngestError> {
        let validated = self.read(object, bytes, format)?;
        self.write(&validated).await
    }

    /// Validates `bytes` (the whole object `object`, in `format`) against the schema, in
    /// reject mode when rejects are kept, within the size limit; writes nothing. A caller
    /// that must see the records before anything is stored (the HTTP handler stores only
    /// accepted bodies) validates once here and passes the result to [`Ingest::write`].
    pub fn read(
        &self,
        object: &str,
        bytes: &[u8],
        format: Format,
    ) -> Result<Validated, RecordsError> {
        let options = ReadOptions {
            reject: self.rejects.is_some(),
            max_bytes: self.max_bytes,
        };
        // `read_records` refuses an object over `max_bytes` before parsing it.
        let records = read_records(object, bytes, format, self.schema, &options)?;
        Ok(Validated {
            records,
            size: bytes.len() as u64,
        })
    }

    /// Writes an object [`Ingest::read`] validated: its rejects (reject mode), its valid
    /// records to the sink, then a `landed` record for it to the ledger.
    pub async fn write(&mut self, validated: &Validated) -> Result<IngestReport, IngestError> {
        let Validated { records, size } = validated;
        let object = &*records.object;
        let mut report = IngestReport {
            read: (records.records.len() + records.rejects.len()) as u64,
            rejected: records.rejects.len() as u64,
            ..IngestReport::default()
        };
        if let (Some(target), false) = (&self.rejects, records.rejects.is_empty()) {
            let mut body = Vec::new();
            write_rejects(object, &records.rejects, &mut body).map_err(crate::Error::from)?;
            let name = format!("{}{object}.rejects.jsonl", target.prefix);
            let key = ObjectKey::new(name.as_str()).map_err(crate::Error::from)?;
            target
                .store
                .put(&key, body.into(), PutMode::Overwrite)
                .await
                .map_err(crate::Error::from)?;
            report.reject_object = Some(name);
        }
        if !records.records.is_empty() {
            let sunk = self
                .sink
                .write(object, self.schema, &records.records)
                .await?;
            report.written = sunk.written;
            report.skipped = sunk.skipped;
        }
        if let Some(l) = &mut self.ledger {
            let time_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let record = LedgerRecord {
                sequence: 0,
                kind: Kind::Landed,
                time_ms,
                object: ObjectRef {
                    size: *size,
                    sha256: records.sha256,
                    ..ObjectRef::of_bytes(&l.store, &l.bucket, object, b"")
                },
                actor: l.actor.clone(),
                step: l.step.clone(),
                tool_version: concat!("cipherflow ", env!("CARGO_PKG_VERSION")).into(),
                inputs: Vec::new(),
            };
            let (index, _) = l.ledger.append(record).await?;
            report.ledger_index = Some(index);
        }
        Ok(report)
    }
}
